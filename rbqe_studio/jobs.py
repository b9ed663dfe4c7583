"""What the app asks its worker threads to do, and what comes back: plain dataclasses.

No Qt here, so the session model (:mod:`rbqe_studio.session_model`) that builds jobs and
reads their results is tested without a ``QApplication``. Pictures (:class:`Picture`,
``QImage``) only pass through :class:`ViewData` as values made by the worker.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rbqe.batch import BatchOptions, BatchSummary, ItemReport
from rbqe.engine import EnhanceResult, ExitResult
from rbqe.exit_policy import ExitMode, ExitPolicy
from rbqe.io import LoadedImage
from rbqe.model import NUM_EXITS
from rbqe.weights import WeightsInfo
from rbqe_studio.state import chosen_cost

if TYPE_CHECKING:
    from PySide6.QtGui import QImage

    from rbqe_studio.convert import Display, Picture

_gens = itertools.count(1)


def next_gen() -> int:
    return next(_gens)


@dataclass(frozen=True)
class EngineSpec:
    """Which enhancer to build: weights file (None: the default), device and backend."""

    weights: str | None = None
    device: str = "auto"
    backend: str = "auto"


@dataclass(frozen=True)
class PolicyChoice:
    """The exit policy a job runs under, as the user chose it: the weights' own default
    policy (``threshold`` None; it may be the learned gate), or the assessor rule with a
    threshold of their own. Resolved against the weights by the worker, which knows them."""

    threshold: float | None = None

    def resolve(self, info: WeightsInfo) -> ExitPolicy:
        return info.policy_for(None, self.threshold)


@dataclass(frozen=True)
class Choice:
    """How an image's exit is chosen: the exit mode and the policy."""

    mode: ExitMode = "auto"
    policy: PolicyChoice = PolicyChoice()


@dataclass(frozen=True)
class ExtraRun:
    """A new run of the whole picture from exit 1 that added exits its result lacked: a
    tiled picture (or one whose network state was let go) has no other way to them.

    Its exits join the result, but the result's own stay (a tiled picture's chosen exit
    under per-tile exits blends tiles at different exits: no other run makes it again),
    so the two runs' costs are kept apart: the chosen exit cost what its own run spent.

    Attributes:
        cum_ms: Each exit it added -> its Σ: the network and scoring time of this run's
            stages up to it (ms), as an exit card shows it.
        total_ms: The run's wall time.
        gmacs: What it spent: its deepest exit's cumulative GMACs.
    """

    cum_ms: dict[int, float]
    total_ms: float
    gmacs: float

    @classmethod
    def of(cls, fresh: EnhanceResult, added: Iterable[int]) -> ExtraRun:
        """The run ``fresh``, of which the exits ``added`` joined the result."""
        return cls({k: sum(e.time_ms + e.iqa_ms for e in fresh.exits if e.exit <= k)
                    for k in added},
                   fresh.total_ms, max(e.gmacs for e in fresh.exits))

    @property
    def exits(self) -> list[int]:
        return sorted(self.cum_ms)


@dataclass
class ViewData:
    """Everything the window shows for one image.

    Attributes:
        result: What the network made; its exits' images are kept quantised to the
            source's depth (uint8 or uint16, :func:`rbqe.io.quantize`), as they are saved.
        choice: The mode and policy ``result.chosen`` was chosen under (None: not yet).
        saved: Exit -> file, when the exits were read from saved outputs (a batch's)
            instead of computed; their timings are then unknown.
        display: How the input and every exit are made ready for the screen (colour
            profile, transparency); None: shown as they are.
        other_ms: The first run's time besides its exits (:func:`rbqe_studio.state.
            other_ms`), kept for :func:`~rbqe_studio.state.chosen_cost`: later exits
            add to the result's total (None: not computed here).
        source_id: The source as it was when ``loaded`` was read from it
            (:func:`rbqe.io.source_identity`, taken before the read), kept in the notes
            of its saves so that a later batch can tell whether it has changed since;
            None: it could not be read.
        saved_from: For the exits in ``saved``, the source as their batch's notes say
            they were made from it (None: not said).
        extra_runs: The later runs of the whole picture that added exits to ``result``
            (:class:`ExtraRun`), in order; empty when its exits all came from its own
            run (continued from its kept state, say).
    """

    path: Path
    loaded: LoadedImage
    input_pic: Picture
    input_thumb: QImage
    result: EnhanceResult | None = None
    pictures: dict[int, Picture] = field(default_factory=dict)
    thumbs: dict[int, QImage] = field(default_factory=dict)
    choice: Choice | None = None
    saved: dict[int, Path] = field(default_factory=dict)
    display: Display | None = None
    other_ms: float | None = None
    source_id: dict[str, Any] | None = None
    saved_from: dict[int, dict[str, Any] | None] = field(default_factory=dict)
    extra_runs: list[ExtraRun] = field(default_factory=list)

    @property
    def run_of(self) -> dict[int, int]:
        """Which later run made each exit one of them added (1: the second run, 2: the
        third...); the result's own exits are not in it."""
        return {k: n for n, run in enumerate(self.extra_runs, 1) for k in run.cum_ms}

    def cum_ms(self, k: int, exits: Iterable[ExitResult]) -> float:
        """Exit ``k``'s Σ time (ms, network and scoring): the stages up to it of the run
        that made it, never summed across runs. ``exits``: those known so far (the
        result's, or those shown while it is computed)."""
        for run in self.extra_runs:
            if k in run.cum_ms:
                return run.cum_ms[k]
        added = self.run_of
        return sum(e.time_ms + e.iqa_ms for e in exits if e.exit <= k and e.exit not in added)

    def add_run(self, fresh: EnhanceResult, up_to: int = NUM_EXITS) -> list[ExitResult]:
        """Adds to ``result`` the exits up to ``up_to`` it lacks from ``fresh``, a new run
        of the whole picture (its own exits stay), noting what that run cost in
        :attr:`extra_runs`; returns the exits added."""
        r = self.result
        assert r is not None
        have = {e.exit for e in r.exits}
        added = [e for e in fresh.exits if e.exit not in have and e.exit <= up_to]
        if added:
            self.extra_runs.append(ExtraRun.of(fresh, [e.exit for e in added]))
            r.exits = sorted(r.exits + added, key=lambda e: e.exit)
        return added

    def chosen_cost(self) -> tuple[float, float]:
        """What the chosen exit cost (ms, GMAC) in the run that made it
        (:func:`rbqe_studio.state.chosen_cost`)."""
        assert self.result is not None
        return chosen_cost(self.result, self.other_ms, self.run_of)

    def made_from(self, k: int) -> dict[str, Any] | None:
        """The source as exit ``k`` was made from it, for the note of a save of it:
        as read here, or, for an exit read back from a batch's output, as that batch
        read it (None: not known; a later batch then does not ask if it has changed)."""
        return self.saved_from.get(k) if k in self.saved else self.source_id

    @property
    def cost(self) -> float:
        """Rough bytes held, for the result cache."""
        total = self.input_pic.nbytes + self.loaded.pixels.nbytes
        total += sum(p.nbytes for p in self.pictures.values())
        if self.result is not None:
            total += sum(e.image.nbytes for e in self.result.exits)
            if self.result.can_continue:  # cached network stages, about 6 feature maps
                total += self.loaded.pixels.shape[0] * self.loaded.pixels.shape[1] * 4 * 32 * 6
        return float(total)

    @property
    def can_rechoose(self) -> bool:
        """Whether another mode or policy can be applied without a new network run from
        exit 1: every computed exit kept its signals (not a tiled image, whose exits
        were chosen on sample tiles, nor one read from saved outputs)."""
        r = self.result
        return (r is not None and not r.tiled and not self.saved
                and all(e.signals is not None for e in r.exits))


@dataclass
class Job:
    """One request to a worker; ``gen`` tags every signal it causes."""

    gen: int = field(default_factory=next_gen)
    cancel: threading.Event = field(default_factory=threading.Event)
    spec: EngineSpec = field(default_factory=EngineSpec)
    policy: PolicyChoice = field(default_factory=PolicyChoice)


@dataclass
class ProcessJob(Job):
    """Load an image and run the network on it."""

    path: Path = Path()
    mode: ExitMode = "auto"
    max_pixels: int | None = 200_000_000


@dataclass
class LoadOutputsJob(Job):
    """Load an image and the outputs a batch saved for it, instead of running the network."""

    path: Path = Path()
    report: ItemReport | None = None
    outputs: dict[int, Path] = field(default_factory=dict)  # exit -> saved file
    max_pixels: int | None = 200_000_000


@dataclass
class ContinueJob(Job):
    """Compute the exits a view lacks, up to exit 5, from its cached stages."""

    view: ViewData | None = None


@dataclass
class RechooseJob(Job):
    """Choose a view's exit again under another mode or policy; the network runs only
    for exits beyond those computed, continuing from the cached stages."""

    view: ViewData | None = None
    mode: ExitMode = "auto"


@dataclass
class SaveJob(Job):
    view: ViewData | None = None
    exits: list[int] = field(default_factory=list)
    targets: dict[int, Path] = field(default_factory=dict)  # exit -> file (single save)
    folder: Path | None = None  # save every exit here (save all)
    agreed: frozenset[Path] = frozenset()  # other files the user agreed to replace
    had: int = 0  # exits the view had when asked: more when done, and it computed them
    suffix: str = ""
    fmt: str = "png"
    quality: int = 95
    keep_metadata: bool = True
    strip_gps: bool = False


@dataclass
class BatchJob(Job):
    inputs: list[Path] = field(default_factory=list)
    options: BatchOptions | None = None


@dataclass
class SaveOutcome:
    """What a save wrote, and what the files could not keep.

    Attributes:
        paths: The files written, in order.
        warnings: What writing them warned of (a JPEG drops the alpha channel, a WebP
            the captions), each once, without the leading ``<file>: `` of a written file.
    """

    paths: list[Path]
    warnings: list[str] = field(default_factory=list)


@dataclass
class BatchOutcome:
    """What a batch ended with.

    Attributes:
        summary: The library's summary; None when the batch was cancelled by an
            exception before it could return one (``reports`` then holds what was done).
        reports: One entry per image reached, as they arrived.
        cancelled: Whether it stopped before the end.
        total: Images in the batch.
    """

    summary: BatchSummary | None
    reports: list[ItemReport]
    cancelled: bool
    total: int

    @property
    def items(self) -> list[ItemReport]:
        """The per-image reports: the summary's when there is one."""
        return self.summary.items if self.summary is not None else self.reports


def saved_exits(report: ItemReport) -> dict[int, Path]:
    """The outputs of a batch report entry whose exit is known, by exit (an ``auto``
    output skipped because it existed names no exit)."""
    return {int(k): Path(p) for k, p in report.outputs.items() if str(k).isdigit()}

