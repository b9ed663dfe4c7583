"""What the engine returns (:class:`ExitResult`, :class:`EnhanceResult`), what it reports on
the way (:class:`TileDone`), and the state a progressive run keeps between exits
(:class:`Walk`, :class:`Session`).

Importable from :mod:`rbqe.engine` as well; plain data, no computation."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from rbqe.arch import NUM_EXITS
from rbqe.backends import Run
from rbqe.errors import Cancelled
from rbqe.exit_policy import Decision, ExitMode, ExitPolicy, ExitSignals, JpegPrior
from rbqe.model import EcaStats


@dataclass
class ExitResult:
    """One computed exit.

    Attributes:
        exit: 1..5.
        image: ``(H, W, C)`` float32 in ``[0, 1]``, the input's layout.
        score: IQA score of this exit (for a tiled image: of the assembled image).
        time_ms: Network time of this stage alone.
        iqa_ms: Time spent scoring it.
        gmacs: Cumulative GMACs to reach this exit (for a tiled image with per-tile exits:
            the GMACs spent, each tile to its own exit, the sample tiles' walk included).
        signals: What the exit policy reads at this exit (for a tiled image: the sample
            tiles' mean; None for exits computed only for the whole picture).
    """

    exit: int
    image: np.ndarray
    score: float
    time_ms: float
    iqa_ms: float
    gmacs: float
    signals: ExitSignals | None = None
    decision: Decision | None = None  # the policy's verdict at this exit, stop or go on


@dataclass(frozen=True, eq=False)
class TileDone:
    """One tile of a tiled image, finished: what :meth:`rbqe.engine.Enhancer.enhance`'s
    ``on_tile`` is called with, so that a caller can show the result fill in tile by tile.

    Attributes:
        box: The tile's ``(y0, y1, x0, x1)`` in image coordinates, as the grid cut it
            (its overlap with its neighbours included).
        exit: The exit its pixels come from: with per-tile exits the one the tile stopped
            at; else the exit computed (forced), or for ``all`` the one auto chooses.
        image: ``(y1 - y0, x1 - x0, C)`` float32 in ``[0, 1]``, finished as the result's
            image is (``C`` is the result's). The caller's own copy. Where tiles overlap,
            the result blends them; this is the tile alone. Made when first read (a
            caller that skips a tile, as the app does for a photo not on screen, does not
            pay for finishing it; 12 MP: ~30 ms a tile); until then the tile holds its
            network output.
        done: Tiles finished so far, this one included (1..``total``).
        total: Tiles in the grid.
    """

    box: tuple[int, int, int, int]
    exit: int
    make_image: Callable[[], np.ndarray] = field(repr=False)
    done: int
    total: int

    @functools.cached_property
    def image(self) -> np.ndarray:
        return self.make_image()


@dataclass
class TileExits:
    """Which exit each tile of a tiled image got (auto with per-tile exits), and what that
    cost against the alternatives. GMACs include the sample tiles' walk, which each
    alternative needs too (to the exit it computes).

    Attributes:
        exits: Each tile's exit, in grid order (row of tiles by row, left to right).
        grid: ``(rows, columns)`` of tiles.
        floor: The earliest exit a tile could stop at (:func:`rbqe.tile_exits.floor_exit`).
        reasons: What decided each tile's exit (a :attr:`rbqe.exit_policy.Decision.signal`).
        gmacs: Spent: every tile to its own exit, and the sample tiles to exit 5.
        gmacs_shared: The shared mode: every tile (and sample) to the whole-picture
            decision.
        gmacs_exit5: Every tile to exit 5 (``--exit 5``).
    """

    exits: list[int]
    grid: tuple[int, int]
    floor: int
    reasons: list[str]
    gmacs: float
    gmacs_shared: float
    gmacs_exit5: float

    @property
    def histogram(self) -> dict[int, int]:
        """How many tiles stopped at each exit 1..5."""
        return {k: self.exits.count(k) for k in range(1, NUM_EXITS + 1)}

    def to_json(self) -> dict[str, Any]:
        """The report's ``tile_exits`` entry."""
        return {
            "histogram": {str(k): v for k, v in self.histogram.items()},
            "exits": [self.exits[r * self.grid[1]:(r + 1) * self.grid[1]]
                      for r in range(self.grid[0])],
            "floor": self.floor,
            "reasons": {r: self.reasons.count(r) for r in sorted(set(self.reasons))},
            "gmacs": round(self.gmacs, 3),
            "gmacs_shared": round(self.gmacs_shared, 3),
            "gmacs_exit5": round(self.gmacs_exit5, 3),
            "saved_vs_exit5": round(1 - self.gmacs / self.gmacs_exit5, 4),
            "saved_vs_shared": round(1 - self.gmacs / self.gmacs_shared, 4),
        }


@dataclass
class EnhanceResult:
    """What :meth:`rbqe.engine.Enhancer.enhance` returns.

    Attributes:
        exits: Computed exits, in order.
        chosen: The exit auto chose (or the forced one). For a tiled image under auto it
            is the sample tiles' decision for the whole picture in either tile-exits mode;
            with per-tile exits, that exit's image holds each tile at its own exit
            (:attr:`tile_exits`).
        threshold: Threshold used.
        mode: The exit mode asked for.
        device: Torch device string.
        size: ``(width, height)``.
        total_ms: Wall time of the whole call.
        tiled: Whether tiling was used, and ``tiles`` how many.
        full_score: For tiled images, the chosen exit's score on the assembled image.
        sampled_scores: For tiled images, the sample tiles' mean score at each exit walked.
        tile_size: Tile side used (0: untiled); smaller than the Enhancer's after an
            out-of-memory retry.
        oom_retries: How many times the image was started again with smaller tiles after
            running out of device memory.
        min_exit: The earliest exit auto could stop at.
        policy: The exit policy used.
        decision: Why auto stopped where it did (for ``all``: where it would stop; for a
            forced exit: why it is that exit); :attr:`exit_reason` is its JSON.
        prior: The input file's JPEG tables, when given.
        tile_exits: Each tile's exit and the compute spent, for a tiled image under auto
            with per-tile exits; None otherwise.
        gmacs_exit5: What ``--exit 5`` costs for this image, run the same way (tiled:
            every tile, overlaps included, and the sample tiles to exit 5): the baseline
            that compute saved is measured against.
    """

    exits: list[ExitResult]
    chosen: int
    threshold: float | None
    mode: ExitMode
    device: str
    size: tuple[int, int]
    total_ms: float = 0.0
    tiled: bool = False
    tiles: int = 1
    full_score: float | None = None
    sampled_scores: list[float] = field(default_factory=list)
    tile_size: int = 0
    oom_retries: int = 0
    min_exit: int = 1
    policy: ExitPolicy | None = None
    decision: Decision | None = None
    prior: JpegPrior | None = None
    gray_input: bool = False
    tile_exits: TileExits | None = None
    gmacs_exit5: float = 0.0
    _session: Session | None = field(default=None, repr=False)

    @property
    def exit_reason(self) -> dict | None:
        return None if self.decision is None else self.decision.to_json()

    @property
    def image(self) -> np.ndarray:
        return self.exit_result(self.chosen).image

    def exit_result(self, k: int) -> ExitResult:
        for e in self.exits:
            if e.exit == k:
                return e
        raise KeyError(f"exit {k} was not computed")

    @property
    def scores(self) -> dict[int, float]:
        """The IQA score of every exit computed, by exit in order: each exit's own; for a
        tiled image, the sample tiles' mean at the exits only the samples walked (auto
        and a forced exit assemble only the last one)."""
        walked = dict(enumerate(self.sampled_scores, start=1))
        walked.update({e.exit: e.score for e in self.exits})
        return dict(sorted(walked.items()))

    @property
    def can_continue(self) -> bool:
        return self._session is not None and self._session.run.exits_done < NUM_EXITS

    def drop_session(self) -> None:
        """Frees the network state kept for :meth:`rbqe.engine.Enhancer.continue_exits`
        (``keep_session``; about 0.5 KB a pixel in bf16); later exits then need a new run."""
        self._session = None

    @property
    def iqa_ms(self) -> float:
        return sum(e.iqa_ms for e in self.exits)


@dataclass
class Walk:
    """What one progressive run keeps between exits for the exit policy's signals."""

    stats: EcaStats  # records the ECA means as the nodes are computed
    prev_luma: torch.Tensor  # the previous exit's luma (the input's at first)
    signals: list[ExitSignals] = field(default_factory=list)


@dataclass
class Session:
    """Cached progressive state of an untiled image, to compute later exits cheaply."""

    run: Run
    x: torch.Tensor  # the padded network input
    img: np.ndarray  # the input pixels, which finishing reads (a luma model's chroma)
    walk: Walk


Progress = Callable[[str, int, int], None]  # (stage, done, total)
OnExit = Callable[[ExitResult], None]
OnTile = Callable[[TileDone], None]
CancelCheck = Callable[[], bool]


@dataclass(frozen=True)
class Hooks:
    """The caller's callbacks of one enhance call, each optional (see
    :meth:`rbqe.engine.Enhancer.enhance`)."""

    on_exit: OnExit | None = None
    progress: Progress | None = None
    cancel: CancelCheck | None = None
    on_tile: OnTile | None = None

    def step(self, stage: str, done: int, total: int) -> None:
        """Between stages and tiles: stops if the caller asks (:meth:`check_cancel`),
        then reports the progress."""
        self.check_cancel()
        self.report(stage, done, total)

    def check_cancel(self) -> None:
        check_cancel(self.cancel)

    def report(self, stage: str, done: int, total: int) -> None:
        if self.progress:
            self.progress(stage, done, total)

    def exit_done(self, e: ExitResult) -> None:
        if self.on_exit:
            self.on_exit(e)

    def tile_done(self, tile: TileDone) -> None:
        if self.on_tile:
            self.on_tile(tile)


def check_cancel(cancel: CancelCheck | None) -> None:
    """Raises :class:`rbqe.errors.Cancelled` when ``cancel`` says so (polled between
    stages and tiles)."""
    if cancel is not None and cancel():
        raise Cancelled("cancelled")
