"""All inference off the GUI thread: a QObject worker living in a QThread.

Every job carries a generation id (``gen``) and its own cancel flag. The worker emits
``progress``, ``exit_computed``, ``finished`` and ``failed`` (plus ``cancelled``) tagged
with that id; receivers drop what belongs to a generation they no longer want. Pixels
are converted to :class:`rbqe_studio.convert.Picture` here, in the worker thread, so the GUI
thread only ever paints.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QSize, QThread, Signal, Slot
from PySide6.QtGui import QImage

from rbqe_studio.convert import Picture
from rbqe.batch import BatchEvents, BatchOptions, run_batch
from rbqe.engine import Enhancer, EnhanceResult, ExitResult
from rbqe.errors import Cancelled, RBQEError
from rbqe.exit_policy import JpegPrior
from rbqe.io import LoadedImage, load_image, output_path_for, save_like

log = logging.getLogger(__name__)

THUMB = QSize(176, 118)
_gens = itertools.count(1)


def next_gen() -> int:
    return next(_gens)


@dataclass(frozen=True)
class EngineSpec:
    """Which enhancer to build: weights file (None: the default), device and backend."""

    weights: str | None = None
    device: str = "auto"
    backend: str = "auto"


EnhancerFactory = Callable[[EngineSpec], Enhancer]


def default_factory(spec: EngineSpec) -> Enhancer:
    return Enhancer(spec.weights, device=spec.device, backend=spec.backend)


@dataclass
class ViewData:
    """Everything the window shows for one processed image."""

    path: Path
    loaded: LoadedImage
    input_pic: Picture
    input_thumb: QImage
    result: EnhanceResult | None = None
    pictures: dict[int, Picture] = field(default_factory=dict)
    thumbs: dict[int, QImage] = field(default_factory=dict)

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


@dataclass
class Job:
    gen: int = field(default_factory=next_gen)
    cancel: threading.Event = field(default_factory=threading.Event)
    spec: EngineSpec = field(default_factory=EngineSpec)
    threshold: float | None = None


@dataclass
class ProcessJob(Job):
    path: Path = Path()
    mode: str | int = "auto"
    max_pixels: int | None = 200_000_000


@dataclass
class ContinueJob(Job):
    view: ViewData | None = None


@dataclass
class SaveJob(Job):
    view: ViewData | None = None
    exits: list[int] = field(default_factory=list)
    targets: dict[int, Path] = field(default_factory=dict)  # exit -> file (single save)
    folder: Path | None = None  # save every exit here (save all)
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
class BatchOutcome:
    """What a batch ended with; ``summary`` is None when it was cancelled by exception."""

    summary: Any
    reports: list[Any]
    cancelled: bool
    total: int


class EngineUnavailable(Exception):
    """The enhancer could not be built (missing weights, unusable device...)."""


class Worker(QObject):
    """Runs jobs one after another in its thread."""

    progress = Signal(int, str, int, int)  # gen, stage, done, total
    loaded = Signal(int, object)  # gen, ViewData (input only)
    exit_computed = Signal(int, object, object)  # gen, ExitResult, ViewData
    finished = Signal(int, object)  # gen, ViewData | list[Path] | BatchOutcome
    failed = Signal(int, str)  # gen, one-line message
    cancelled = Signal(int)
    engine_failed = Signal(int, str)  # gen, why the enhancer could not be built
    engine_ready = Signal(object)  # dict: device, weights, threshold
    batch_started = Signal(int, int)  # gen, total
    batch_item_started = Signal(int, int, object)  # gen, index, Path
    batch_item_done = Signal(int, int, object)  # gen, index, ItemReport

    def __init__(self, factory: EnhancerFactory = default_factory) -> None:
        super().__init__()
        self._factory = factory
        self._enhancer: Enhancer | None = None
        self._spec: EngineSpec | None = None

    def enhancer(self, job: Job) -> Enhancer:
        if self._enhancer is None or self._spec != job.spec:
            self._enhancer = None  # free the old one before building the new one
            try:
                self._enhancer = self._factory(job.spec)
            except Exception as exc:
                if not isinstance(exc, RBQEError):
                    log.exception("could not build the enhancer")
                raise EngineUnavailable(str(exc) or type(exc).__name__) from exc
            self._spec = job.spec
            info = self._enhancer.info
            backend = self._enhancer.backend
            self.engine_ready.emit({"device": str(self._enhancer.device),
                                    "backend": f"{backend.name} {backend.precision}",
                                    "weights": str(info.path) if info.path else "built-in test model",
                                    "threshold": float(info.threshold),
                                    "min_exit": int(self._enhancer.min_exit),
                                    "policy": info.policy.describe()})
        enh = self._enhancer
        # The job carries the policy: a custom threshold means the assessor rule with it,
        # none the weights' default policy (which may be the learned gate).
        enh.policy = enh.info.policy_for(None, job.threshold)
        return enh

    @Slot(object)
    def run(self, job: Job) -> None:
        if job.cancel.is_set():
            self.cancelled.emit(job.gen)
            return
        try:
            if isinstance(job, ProcessJob):
                payload: Any = self._process(job)
            elif isinstance(job, ContinueJob):
                payload = self._continue(job)
            elif isinstance(job, SaveJob):
                payload = self._save(job)
            elif isinstance(job, BatchJob):
                payload = self._batch(job)
            else:  # pragma: no cover
                raise TypeError(type(job).__name__)
        except Cancelled:
            self.cancelled.emit(job.gen)
        except EngineUnavailable as exc:  # missing weights, bad device: the app stays usable
            self.engine_failed.emit(job.gen, str(exc))
        except RBQEError as exc:
            log.warning("%s", exc)
            self.failed.emit(job.gen, str(exc))
        except MemoryError:
            log.exception("out of memory")
            self.failed.emit(job.gen, "Not enough memory for this image.")
        except Exception as exc:  # a bug must reach the UI as a message, not kill the thread
            log.exception("unexpected error in %s", type(job).__name__)
            self.failed.emit(job.gen, f"Unexpected error: {type(exc).__name__}: {exc} "
                                      "(details in the log file)")
        else:
            self.finished.emit(job.gen, payload)

    # -- jobs ------------------------------------------------------------------------
    def _exit_cb(self, job: Job, view: ViewData) -> Callable[[ExitResult], None]:
        def on_exit(e: ExitResult) -> None:
            pic = Picture.from_array(e.image)
            view.pictures[e.exit] = pic
            view.thumbs[e.exit] = pic.thumbnail(THUMB)
            self.exit_computed.emit(job.gen, e, view)
        return on_exit

    def _process(self, job: ProcessJob) -> ViewData:
        self.progress.emit(job.gen, "load", 0, 1)
        loaded = load_image(job.path, max_pixels=job.max_pixels)
        if job.cancel.is_set():
            raise Cancelled("cancelled")
        pic = Picture.from_array(loaded.pixels)
        view = ViewData(job.path, loaded, pic, pic.thumbnail(THUMB))
        self.loaded.emit(job.gen, view)  # the input is shown even if the model is missing
        enh = self.enhancer(job)
        view.result = enh.enhance(
            loaded.pixels, job.mode, on_exit=self._exit_cb(job, view),
            progress=lambda stage, done, total: self.progress.emit(job.gen, stage, done, total),
            cancel=job.cancel.is_set, keep_session=True, prior=JpegPrior.of(loaded))
        return view

    def _continue(self, job: ContinueJob) -> ViewData:
        view = job.view
        assert view is not None and view.result is not None
        enh = self.enhancer(job)
        on_exit = self._exit_cb(job, view)
        if view.result.can_continue:
            enh.continue_exits(view.result, on_exit=on_exit, cancel=job.cancel.is_set)
        else:  # tiled (or evicted session): the only way to the other exits is a new pass
            done = {e.exit for e in view.result.exits}
            fresh = enh.enhance(view.loaded.pixels, "all", cancel=job.cancel.is_set,
                                progress=lambda s, d, t: self.progress.emit(job.gen, s, d, t),
                                prior=JpegPrior.of(view.loaded))
            for e in fresh.exits:
                if e.exit not in done:
                    view.result.exits.append(e)
                    on_exit(e)
            view.result.exits.sort(key=lambda e: e.exit)
        return view

    def _save(self, job: SaveJob) -> list[Path]:
        view = job.view
        assert view is not None and view.result is not None
        have = {e.exit for e in view.result.exits}
        if any(k not in have for k in job.exits):
            self._continue(ContinueJob(job.gen, job.cancel, job.spec, job.threshold, view=view))
        written = []
        for n, k in enumerate(job.exits):
            if job.cancel.is_set():
                raise Cancelled("cancelled")
            self.progress.emit(job.gen, "save", n, len(job.exits))
            target = job.targets.get(k)
            fmt = None if target is not None else job.fmt  # a chosen name sets the format
            if target is None:
                target = output_path_for(view.path, job.folder or view.path.parent,
                                         suffix=job.suffix, exit_tag=f"exit{k}", fmt=job.fmt)
            written.append(save_like(target, view.result.exit_result(k).image, view.loaded,
                                     fmt=fmt, quality=job.quality,
                                     keep_metadata=job.keep_metadata,
                                     strip_gps=job.strip_gps))
        return written

    def _batch(self, job: BatchJob) -> BatchOutcome:
        assert job.options is not None
        enh = self.enhancer(job)
        reports: list[Any] = []
        total = [0]

        def on_start(n: int) -> None:
            total[0] = n
            self.batch_started.emit(job.gen, n)

        def on_done(i: int, item: Any) -> None:
            reports.append(item)
            self.batch_item_done.emit(job.gen, i, item)

        events = BatchEvents(
            on_start=on_start,
            on_item_start=lambda i, p: self.batch_item_started.emit(job.gen, i, p),
            on_item_done=on_done,
            on_progress=lambda i, s, d, t: self.progress.emit(job.gen, s, d, t),
        )
        try:
            summary = run_batch(enh, job.inputs, job.options, events=events,
                                cancel=job.cancel.is_set)
        except Cancelled:
            return BatchOutcome(None, reports, True, total[0])
        cancelled = bool(getattr(summary, "cancelled", False)) or job.cancel.is_set()
        return BatchOutcome(summary, reports, cancelled, total[0])


class WorkerHost(QObject):
    """Owns a worker and its thread; tracks live jobs so they can all be cancelled."""

    _submit = Signal(object)

    def __init__(self, factory: EnhancerFactory = default_factory, name: str = "worker",
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.thread = QThread()
        self.thread.setObjectName(name)
        self.worker = Worker(factory)
        self.worker.moveToThread(self.thread)
        self._submit.connect(self.worker.run)
        self.jobs: dict[int, Job] = {}
        for sig in (self.worker.finished, self.worker.failed, self.worker.cancelled,
                    self.worker.engine_failed):
            sig.connect(self._forget)
        self.thread.start()

    def submit(self, job: Job) -> Job:
        self.jobs[job.gen] = job
        self._submit.emit(job)
        return job

    def cancel(self, gen: int | None = None) -> None:
        """Cancel one job, or all of them."""
        for g, job in self.jobs.items():
            if gen is None or g == gen:
                job.cancel.set()

    @property
    def busy(self) -> bool:
        return bool(self.jobs)

    def _forget(self, gen: int, *_: object) -> None:
        self.jobs.pop(gen, None)

    def shutdown(self) -> None:
        """Cancel everything, stop the thread and join it (one stage at most)."""
        self.cancel()
        self.thread.quit()
        self.thread.wait()
