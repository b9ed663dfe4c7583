"""What the app asks its worker threads to do, and what comes back: plain dataclasses.

No Qt here, so the session model (:mod:`rbqe_studio.session_model`) that builds jobs and
reads their results is tested without a ``QApplication``. Pictures (:class:`Picture`,
``QImage``) only pass through :class:`ViewData` as values made by the worker.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rbqe.batch import BatchOptions, BatchSummary, ItemReport
from rbqe.engine import EnhanceResult, ExitResult
from rbqe.exit_policy import ExitMode, ExitPolicy
from rbqe.io import LoadedImage
from rbqe.model import NUM_EXITS
from rbqe.weights import WeightsInfo
from rbqe_studio.state import other_ms

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
class Stage:
    """One exit's stage within a run: its network and scoring time (ms) and the
    cumulative GMACs to it."""

    time_ms: float
    iqa_ms: float
    gmacs: float

    @classmethod
    def of(cls, e: ExitResult) -> Stage:
        return cls(e.time_ms, e.iqa_ms, e.gmacs)


@dataclass(frozen=True)
class Cost:
    """What a run spent up to one of its exits: its stages' network and scoring time,
    its other time (the input made ready, the output finished; ms) and the GMACs."""

    network_ms: float
    iqa_ms: float
    other_ms: float
    gmacs: float

    @property
    def stages_ms(self) -> float:
        """Network and scoring: an exit card's Σ."""
        return self.network_ms + self.iqa_ms

    @property
    def ms(self) -> float:
        return self.stages_ms + self.other_ms


def cost_to(stages: Mapping[int, Stage], k: int, other: float) -> Cost:
    """What one run (``stages``: its exits' stages, by exit; ``other``: its other time)
    spent up to exit ``k``: never the exits it computed beyond it."""
    upto = [s for j, s in stages.items() if j <= k]
    return Cost(sum(s.time_ms for s in upto), sum(s.iqa_ms for s in upto), other,
                max(s.gmacs for s in upto))


@dataclass(frozen=True)
class ExtraRun:
    """A new run of the whole picture from exit 1 that added exits its result lacked: a
    tiled picture (or one whose network state was let go) has no other way to them.

    Its exits join the result, but the result's own stay (a tiled picture's chosen exit
    under per-tile exits blends tiles at different exits: no other run makes it again),
    so the runs' costs are kept apart: an exit cost what the run that made it spent.

    Attributes:
        stages: Every exit the run computed -> its stage (not only those it added: an
            added exit 5 cost that run's stages 1-5); never its images.
        added: The exits it added to the result.
        total_ms: The run's wall time.
        other_ms: Its time besides its stages (the input made ready, the outputs finished).
    """

    stages: dict[int, Stage]
    added: tuple[int, ...]
    total_ms: float
    other_ms: float

    @classmethod
    def of(cls, fresh: EnhanceResult, added: Iterable[int]) -> ExtraRun:
        """The run ``fresh``, of which the exits ``added`` joined the result."""
        return cls({e.exit: Stage.of(e) for e in fresh.exits}, tuple(sorted(added)),
                   fresh.total_ms, other_ms(fresh))

    @property
    def exits(self) -> list[int]:
        return list(self.added)

    @property
    def gmacs(self) -> float:
        """What it spent: its deepest exit's cumulative GMACs."""
        return max(s.gmacs for s in self.stages.values())


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
            other_ms`), kept for :meth:`cost_to`: later exits add to the result's
            total (None: not computed here).
        source_id: The source as it was when ``loaded`` was read from it
            (:func:`rbqe.io.source_identity`, taken before the read), kept in the notes
            of its saves so that a later batch can tell whether it has changed since;
            None: it could not be read.
        saved_from: For the exits in ``saved``, the source as their batch's notes say
            they were made from it (None: not said).
        extra_runs: The later runs of the whole picture that added exits to ``result``
            (:class:`ExtraRun`), in order; empty when its exits all came from its own
            run (continued from its kept state, say).
        stopped_after: The exit the user stopped its run after (set by the session in
            the GUI thread, as it keeps the exits the worker sent with the cancel):
            ``result`` then holds the exits computed before it, no exit was chosen
            (``result.decision`` is None, and ``result.chosen`` is that last exit, which
            Save names as itself, never as auto's choice). None: not stopped, or chosen
            since (a new mode or threshold).
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
    stopped_after: int | None = None

    @property
    def run_of(self) -> dict[int, int]:
        """Which later run made each exit one of them added (1: the second run, 2: the
        third...); the result's own exits are not in it."""
        return {k: n for n, run in enumerate(self.extra_runs, 1) for k in run.added}

    def run_making(self, k: int, exits: Iterable[ExitResult] | None = None
                   ) -> tuple[dict[int, Stage], float]:
        """The run that made exit ``k``: its stages, by exit, and its other time. The
        result's own run is read from ``exits`` (None: the result's; or those shown
        while it is computed), without the exits later runs added."""
        for run in self.extra_runs:
            if k in run.added:
                return run.stages, run.other_ms
        added = self.run_of
        r = self.result
        if exits is None:
            assert r is not None
            exits = r.exits
        own = {e.exit: Stage.of(e) for e in exits if e.exit not in added}
        # The first run's other time as it was kept: "Compute all" from the kept state
        # adds to the result's total (a result read 402 ms, then 368 ms).
        other = self.other_ms
        if other is None:
            other = other_ms(r, added) if r is not None else 0.0
        return own, other

    def cost_to(self, k: int, exits: Iterable[ExitResult] | None = None) -> Cost:
        """What exit ``k`` cost in the run that made it (:meth:`run_making`): that run's
        stages up to it and its other time, never summed across runs."""
        stages, other = self.run_making(k, exits)
        return cost_to(stages, k, other)

    def cum_ms(self, k: int, exits: Iterable[ExitResult]) -> float:
        """Exit ``k``'s Σ time (ms, network and scoring) as its card shows it."""
        return self.cost_to(k, exits).stages_ms

    def stage_gmacs(self, k: int) -> float:
        """Exit ``k``'s own stage's GMACs in the run that made it (the result's are
        cumulative); NaN where not known: read from a saved output, its run lacks exit
        ``k - 1`` (a tiled picture's chosen exit under auto), or not more than it (a
        tiled image's chosen exit counts each tile to its own exit)."""
        stages, _ = self.run_making(k)
        start = 0.0 if k == 1 else stages[k - 1].gmacs if k - 1 in stages else math.nan
        own = stages[k].gmacs - start
        return own if own >= 0 else math.nan

    def add_run(self, fresh: EnhanceResult, up_to: int = NUM_EXITS,
                prepare: Callable[[ExitResult], None] | None = None) -> list[ExitResult]:
        """Adds to ``result`` the exits up to ``up_to`` it lacks from ``fresh``, a new run
        of the whole picture (its own exits stay), noting what that run cost in
        :attr:`extra_runs`; returns the exits added. ``prepare`` makes each one ready
        (its pictures) before it joins ``result.exits``: the window may read them at
        any time (a view selected again shows every exit of its result). The engine's
        ``continue_exits`` appends first, one exit at a time: the compare strip skips an
        exit whose thumbnail is not made yet."""
        r = self.result
        assert r is not None
        have = {e.exit for e in r.exits}
        added = [e for e in fresh.exits if e.exit not in have and e.exit <= up_to]
        if added:
            if prepare is not None:
                for e in added:
                    prepare(e)
            self.extra_runs.append(ExtraRun.of(fresh, [e.exit for e in added]))
            r.exits = sorted(r.exits + added, key=lambda e: e.exit)
        return added

    def chosen_cost(self) -> tuple[float, float]:
        """What the chosen exit cost (ms, GMAC) in the run that made it: not the exits
        computed beyond it (a forced exit 2 after "compute all" cost exits 1 and 2), nor
        those another run made (51.9 s was read of a 32 s tiled result)."""
        assert self.result is not None
        cost = self.cost_to(self.result.chosen)
        return cost.ms, cost.gmacs

    @property
    def missing_exits(self) -> list[int]:
        """The exits its result lacks (a tiled picture under auto has its chosen one only)."""
        have = {e.exit for e in self.result.exits} if self.result is not None else set()
        return [k for k in range(1, NUM_EXITS + 1) if k not in have]

    def made_from(self, k: int) -> dict[str, Any] | None:
        """The source as exit ``k`` was made from it, for the note of a save of it:
        as read here, or, for an exit read back from a batch's output, as that batch
        read it (None: not known; a later batch then does not ask if it has changed)."""
        return self.saved_from.get(k) if k in self.saved else self.source_id

    @property
    def cost(self) -> float:
        """Rough bytes held, for the result cache: the pixels, the pictures made of them
        for the screen, and their thumbnails (seven per photo, 80 KB each)."""
        total = self.input_pic.nbytes + self.loaded.pixels.nbytes
        total += sum(p.nbytes for p in self.pictures.values())
        total += sum(image_bytes(t) for t in (self.input_thumb, *self.thumbs.values()))
        if self.result is not None:
            total += sum(e.image.nbytes for e in self.result.exits)
            # Not its kept network state (result.can_continue; about 0.5 KB a pixel in
            # bf16, 1 KB in f32): only the view on screen keeps one, and a view left while
            # a job still computes its exits until that job ends (SessionModel.
            # _drop_session), so it is bounded apart from the cache's budget. Counted, a
            # 2 MP photo's alone passed the budget and pushed out every other view.
        return float(total)

    @property
    def can_rechoose(self) -> bool:
        """Whether another mode or policy can be applied without a new network run from
        exit 1: every computed exit kept its signals (not a tiled image, whose exits
        were chosen on sample tiles, nor one read from saved outputs)."""
        r = self.result
        return (r is not None and not r.tiled and not self.saved
                and all(e.signals is not None for e in r.exits))


def image_bytes(image: QImage | None) -> int:
    """The bytes ``image``'s pixels take (0: no image)."""
    return 0 if image is None else image.sizeInBytes()


@dataclass(frozen=True)
class TilePatch:
    """One finished tile of a tiled run, made by the worker ready to paint over the input
    shown (:meth:`rbqe_studio.convert.Picture.paste`): the window's preview of the result
    while the tiles come in.

    Attributes:
        box: ``(y0, y1, x0, x1)`` in the photo's pixels (its overlap included).
        exit: The exit its pixels come from.
        levels: Its pixels as shown (the photo's display conversion), halved as often as
            the photo's picture is (:func:`rbqe_studio.convert.pyramid`).
        done: Tiles done so far, this one included; ``total``: tiles in all.
        base: With the first tile converted while the photo is on screen (a run's
            first, a retry's first after running out of memory, or the first after the
            photo was viewed again mid-run), a copy of the input's picture to paste the
            tiles over, made off the GUI thread (a 12 MP one took it 0.04-0.17 s): the
            window starts a new preview over it. None for the others.
    """

    box: tuple[int, int, int, int]
    exit: int
    levels: list[QImage]
    done: int
    total: int
    base: Picture | None = None


@dataclass
class Job:
    """One request to a worker; ``gen`` tags every signal it causes."""

    gen: int = field(default_factory=next_gen)
    cancel: threading.Event = field(default_factory=threading.Event)
    spec: EngineSpec = field(default_factory=EngineSpec)
    policy: PolicyChoice = field(default_factory=PolicyChoice)


class Shown(threading.Event):
    """Set while a job's photo is the one on screen (its generation is the session's
    viewed one): the session sets and clears it in the GUI thread, the worker reads it
    before it converts a tile for the preview (a background photo's are not made).
    ``times`` counts how often it was set from clear: a tile converted under a newer
    showing than the last tile sent brings a new base (:attr:`TilePatch.base`), since the
    window dropped what it painted when the photo was left."""

    def __init__(self) -> None:
        super().__init__()
        self.times = 0

    def set(self) -> None:
        if not self.is_set():
            self.times += 1
        super().set()


@dataclass
class ProcessJob(Job):
    """Load an image and run the network on it; ``shown``: see :class:`Shown`."""

    path: Path = Path()
    mode: ExitMode = "auto"
    max_pixels: int | None = 200_000_000
    shown: Shown = field(default_factory=Shown)


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
    """The outputs of a batch report entry whose exit is known, by exit: an ``auto``
    output skipped because it existed is under the exit its output-log note says it
    holds (``report.exit``); one noted by an older version names none."""
    saved = {int(k): Path(p) for k, p in report.outputs.items() if str(k).isdigit()}
    auto = report.outputs.get("auto")
    if auto is not None and report.exit is not None:
        saved.setdefault(report.exit, Path(auto))
    return saved

