"""What the engine returns (:class:`ExitResult`, :class:`EnhanceResult`), and the state a
progressive run keeps between exits (:class:`Walk`, :class:`Session`).

Importable from :mod:`rbqe.engine` as well; plain data, no computation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

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
        gmacs: Cumulative GMACs to reach this exit.
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


@dataclass
class EnhanceResult:
    """What :meth:`rbqe.engine.Enhancer.enhance` returns.

    Attributes:
        exits: Computed exits, in order.
        chosen: The exit auto chose (or the forced one).
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
CancelCheck = Callable[[], bool]


@dataclass(frozen=True)
class Hooks:
    """The caller's callbacks of one enhance call, each optional (see
    :meth:`rbqe.engine.Enhancer.enhance`)."""

    on_exit: OnExit | None = None
    progress: Progress | None = None
    cancel: CancelCheck | None = None

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


def check_cancel(cancel: CancelCheck | None) -> None:
    """Raises :class:`rbqe.errors.Cancelled` when ``cancel`` says so (polled between
    stages and tiles)."""
    if cancel is not None and cancel():
        raise Cancelled("cancelled")
