"""The interactive session: which image is viewed, what runs next, what is cached.

The queue is processed in the background one image at a time; the image on screen always
goes first (a background job for another image is cancelled to make room). Each job's
generation id decides whether its signals still matter: anything from a job that is no
longer the one feeding the view is dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from rbqe_studio.settings import AppSettings
from rbqe_studio.state import DONE, FAILED, RUNNING, WAITING, Queue, QueueItem, ResultCache, path_key
from rbqe_studio.worker import (
    ContinueJob,
    EngineSpec,
    EnhancerFactory,
    Job,
    ProcessJob,
    SaveJob,
    ViewData,
    WorkerHost,
    default_factory,
)
from rbqe.engine import ExitResult
from rbqe.io import list_images

log = logging.getLogger(__name__)

CACHE_BUDGET = 1.5e9  # bytes of pictures and exit arrays kept for quick re-viewing


class Session(QObject):
    item_changed = Signal(object)  # QueueItem
    items_added = Signal(list)  # list[QueueItem]
    view_loaded = Signal(object)  # ViewData (input only so far)
    exit_ready = Signal(object, object)  # ExitResult, ViewData
    view_finished = Signal(object)  # ViewData with its result
    view_failed = Signal(str)
    view_busy = Signal(bool)
    progress = Signal(str, int, int)
    engine_info = Signal(dict)
    engine_error = Signal(str)
    message = Signal(str)  # something to tell the user, one line
    saved = Signal(list)  # list[Path]

    def __init__(self, settings: AppSettings, factory: EnhancerFactory = default_factory,
                 weights: str | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.weights = weights
        self.queue = Queue()
        self.cache: ResultCache[str, ViewData] = ResultCache(CACHE_BUDGET)
        self.host = WorkerHost(factory, "rbqe-interactive", self)
        self.current: QueueItem | None = None
        self.view: ViewData | None = None
        self.background = True  # process waiting items when nothing else runs
        self.mode_override: str | int | None = None  # --exit on the command line
        self.engine_broken = False
        self._running: tuple[ProcessJob, QueueItem, str] | None = None  # job, item, old status
        self._view_gen = 0
        self._aux: dict[int, str] = {}  # gen -> "continue" | "save"
        self._running_view: ViewData | None = None
        self._running_exits: list[ExitResult] = []
        w = self.host.worker
        w.loaded.connect(self._on_loaded)
        w.exit_computed.connect(self._on_exit)
        w.progress.connect(self._on_progress)
        w.finished.connect(self._on_finished)
        w.failed.connect(self._on_failed)
        w.cancelled.connect(self._on_cancelled)
        w.engine_ready.connect(self._on_engine_ready)
        w.engine_failed.connect(self._on_engine_failed)

    # -- public --------------------------------------------------------------------
    @property
    def spec(self) -> EngineSpec:
        return EngineSpec(self.weights, self.settings.device, self.settings.backend)

    @property
    def mode(self) -> str | int:
        return self.mode_override if self.mode_override is not None else self.settings.mode

    def add_paths(self, paths: Iterable[str | Path], recursive: bool = False) -> list[QueueItem]:
        paths = [Path(p) for p in paths]
        # Folder scans leave out the outputs rbqe wrote next to their sources, as a batch
        # does; a file the user names directly is always shown.
        folders = [p for p in paths if p.is_dir()]
        named = [p for p in paths if not p.is_dir()]
        listed = list_images(folders, recursive=recursive, skip_outputs=True) if folders else []
        files = [f for f, _ in listed + (list_images(named) if named else [])]
        added = self.queue.add(files)
        if added:
            self.items_added.emit(added)
            self._pump()
        return added

    def select(self, item: QueueItem | None) -> None:
        if item is self.current:
            return
        self.current = item
        self.view = None
        self._view_gen = 0
        if item is None:
            return
        cached = self.cache.get(path_key(item.path))
        if cached is not None and cached.result is not None:
            self.view = cached
            self.view_loaded.emit(cached)
            for e in cached.result.exits:
                self.exit_ready.emit(e, cached)
            self.view_finished.emit(cached)
            return
        if item.status == FAILED and not self.engine_broken:
            self.view_failed.emit(item.error)
            return
        if self._running and self._running[1] is item:
            self._view_gen = self._running[0].gen  # already on its way: catch up
            self.view_busy.emit(True)
            if self._running_view is not None:
                self.view = self._running_view
                self.view_loaded.emit(self._running_view)
                for e in self._running_exits:
                    self.exit_ready.emit(e, self._running_view)
            return
        self._make_room()
        self._pump()

    def reprocess_current(self) -> None:
        """Run the viewed image again (mode, threshold or device changed)."""
        item = self.current
        if item is None:
            return
        self.cache.pop(path_key(item.path))
        if self._running and self._running[1] is item:
            self.host.cancel(self._running[0].gen)
        item.reset()
        self.item_changed.emit(item)
        self.view, self._view_gen = None, 0
        self._pump()

    def engine_changed(self) -> None:
        """Device or weights changed: forget the broken state and try again."""
        self.engine_broken = False
        self.reprocess_current()
        self._pump()

    def compute_all(self) -> bool:
        view = self.view
        if view is None or view.result is None or len(view.result.exits) >= 5:
            return False
        if "continue" in self._aux.values():
            return False
        self._make_room()
        job = ContinueJob(spec=self.spec, threshold=self.settings.threshold, view=view)
        self._aux[job.gen] = "continue"
        self._view_gen = job.gen
        self.view_busy.emit(True)
        self.host.submit(job)
        return True

    def save(self, exits: list[int], targets: dict[int, Path] | None = None,
             folder: Path | None = None) -> bool:
        view = self.view
        if view is None or view.result is None:
            return False
        s = self.settings
        job = SaveJob(spec=self.spec, threshold=s.threshold, view=view, exits=exits,
                      targets=targets or {}, folder=folder, suffix=s.suffix,
                      fmt=s.output_format, quality=s.quality, keep_metadata=s.keep_metadata,
                      strip_gps=s.strip_gps)
        self._make_room()
        self._aux[job.gen] = "save"
        self.host.submit(job)
        return True

    def remove_all(self) -> None:
        self.host.cancel()
        self.queue.clear()
        self.cache.clear()
        self.current, self.view, self._view_gen = None, None, 0

    def shutdown(self) -> None:
        self.background = False
        self.host.shutdown()

    # -- scheduling ----------------------------------------------------------------
    def _make_room(self) -> None:
        """Cancel a background job so that work for the viewed image starts sooner."""
        if self._running and self._running[1] is not self.current:
            self.host.cancel(self._running[0].gen)

    def _pump(self) -> None:
        if self._running is not None:
            return
        item = self.current
        if item is not None and (self.view is None or self.view.result is None) and \
                item.status in (WAITING, DONE):
            if self.engine_broken and self.view is not None:
                return  # its input is on screen; the model is what is missing
            target: QueueItem | None = item
        elif self.background and not self.engine_broken and len(self.queue):
            start = self.queue.index(item) + 1 if item is not None else 0
            target = self.queue.next_waiting(start)
        else:
            target = None
        if target is None:
            return
        job = ProcessJob(spec=self.spec, threshold=self.settings.threshold, path=target.path,
                         mode=self.mode)
        self._running = (job, target, target.status)
        self._running_view, self._running_exits = None, []
        target.status = RUNNING
        self.item_changed.emit(target)
        if target is self.current:
            self._view_gen = job.gen
            self.view_busy.emit(True)
        self.host.submit(job)

    def _job_done(self) -> None:
        self._running, self._running_view, self._running_exits = None, None, []
        self._pump()

    # -- worker signals --------------------------------------------------------------
    def _on_loaded(self, gen: int, view: ViewData) -> None:
        if self._running is not None and self._running[0].gen == gen:
            self._running_view = view
        if gen == self._view_gen:
            self.view = view
            self.view_loaded.emit(view)

    def _on_exit(self, gen: int, e: ExitResult, view: ViewData) -> None:
        if self._running is not None and self._running[0].gen == gen:
            self._running_exits.append(e)
        if gen == self._view_gen:
            self.exit_ready.emit(e, view)

    def _on_progress(self, gen: int, stage: str, done: int, total: int) -> None:
        if gen == self._view_gen:
            self.progress.emit(stage, done, total)

    def _on_finished(self, gen: int, payload: object) -> None:
        kind = self._aux.pop(gen, None)
        if kind == "save":
            self.saved.emit(payload)
            return
        if kind == "continue":
            assert isinstance(payload, ViewData)
            self.cache.update_cost(path_key(payload.path), payload.cost)
            if gen == self._view_gen:
                self.view_busy.emit(False)
                self.view_finished.emit(payload)
            return
        if self._running is None or self._running[0].gen != gen:
            return
        _, item, _ = self._running
        assert isinstance(payload, ViewData) and payload.result is not None
        r = payload.result
        item.status, item.error = DONE, ""
        item.exit, item.score, item.time_ms = r.chosen, r.exit_result(r.chosen).score, r.total_ms
        self.item_changed.emit(item)
        self.cache.put(path_key(item.path), payload, payload.cost)
        if gen == self._view_gen:
            self.view = payload
            self.view_busy.emit(False)
            self.view_finished.emit(payload)
        self._job_done()

    def _on_failed(self, gen: int, message: str) -> None:
        kind = self._aux.pop(gen, None)
        if kind is not None:
            if gen == self._view_gen:
                self.view_busy.emit(False)
            self.message.emit(("Could not save: " if kind == "save" else "") + message)
            return
        if self._running is None or self._running[0].gen != gen:
            return
        _, item, _ = self._running
        item.status, item.error = FAILED, message
        self.item_changed.emit(item)
        if gen == self._view_gen:
            self.view_busy.emit(False)
            self.view_failed.emit(message)
        self._job_done()

    def _on_cancelled(self, gen: int) -> None:
        kind = self._aux.pop(gen, None)
        if kind is not None:
            if gen == self._view_gen:
                self.view_busy.emit(False)
            return
        if self._running is None or self._running[0].gen != gen:
            return
        _, item, old = self._running
        item.status = old if old in (WAITING, DONE) else WAITING
        self.item_changed.emit(item)
        if gen == self._view_gen:
            self.view_busy.emit(False)
        self._job_done()

    def _on_engine_ready(self, info: dict) -> None:
        self.engine_broken = False
        self.engine_info.emit(info)

    def _on_engine_failed(self, gen: int, message: str) -> None:
        self.engine_broken = True
        self._aux.pop(gen, None)
        if self._running is not None and self._running[0].gen == gen:
            _, item, old = self._running
            item.status = old if old in (WAITING, DONE) else WAITING
            self.item_changed.emit(item)
            self._running, self._running_view, self._running_exits = None, None, []
        self.view_busy.emit(False)
        self.engine_error.emit(message)

    def jobs(self) -> list[Job]:
        return list(self.host.jobs.values())
