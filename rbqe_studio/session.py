"""Qt face of the interactive session: worker reports in, signals out.

All decisions are :class:`rbqe_studio.session_model.SessionModel`'s; this adapter owns the
worker thread, feeds the worker's signals to the model and turns the events the model
returns into Qt signals for the window.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot

from rbqe.batch import ItemReport
from rbqe.engine import EnhanceResult
from rbqe_studio import session_events as ev
from rbqe_studio.jobs import EngineSpec, PolicyChoice, TilePatch, ViewData
from rbqe_studio.session_model import SessionModel
from rbqe_studio.settings import AppSettings
from rbqe_studio.state import Queue, QueueItem
from rbqe_studio.worker import EnhancerFactory, WorkerHost, default_factory


class Session(QObject):
    item_changed = Signal(object)  # QueueItem
    items_added = Signal(list)  # list[QueueItem]
    select_item = Signal(object)  # QueueItem the queue should select
    view_loaded = Signal(object)  # ViewData (input only so far)
    exit_ready = Signal(object, object)  # ExitResult, ViewData
    tile_ready = Signal(object, object)  # TilePatch, ViewData
    preview_dropped = Signal()  # the run the tile preview belongs to is superseded
    view_finished = Signal(object)  # ViewData with its result
    view_failed = Signal(str)
    view_busy = Signal(bool)
    # stage, done, total, seconds left or None, the exits a tiled picture's later run makes
    progress = Signal(str, int, int, object, str)
    engine_info = Signal(dict)
    engine_error = Signal(str)
    message = Signal(str, bool)  # something to tell the user, one line; is it an error
    saved = Signal(list, list)  # list[Path], what they could not keep: list[str]
    weights_changed = Signal(str)
    choice_changed = Signal(object)  # Choice

    def __init__(self, settings: AppSettings, factory: EnhancerFactory = default_factory,
                 weights: str | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.host = WorkerHost(factory, "rbqe-interactive", self)
        self.model = SessionModel(settings, self.host.submit, weights)
        # Bound methods of this QObject, not lambdas: a lambda would run in the worker's
        # thread; a method of an object living in the GUI thread is queued to it.
        w = self.host.worker
        w.loaded.connect(self._on_loaded)
        w.exit_computed.connect(self._on_exit)
        w.tile_done.connect(self._on_tile)
        w.progress.connect(self._on_progress)
        w.finished.connect(self._on_finished)
        w.failed.connect(self._on_failed)
        w.cancelled.connect(self._on_cancelled)
        w.engine_ready.connect(self._on_engine_ready)
        w.engine_failed.connect(self._on_engine_failed)
        self._signals: dict[type, Callable[[object], None]] = {
            ev.ItemsAdded: lambda e: self.items_added.emit(e.items),
            ev.ItemChanged: lambda e: self.item_changed.emit(e.item),
            ev.SelectItem: lambda e: self.select_item.emit(e.item),
            ev.ViewLoaded: lambda e: self.view_loaded.emit(e.view),
            ev.ExitReady: lambda e: self.exit_ready.emit(e.exit, e.view),
            ev.TileReady: lambda e: self.tile_ready.emit(e.patch, e.view),
            ev.PreviewDropped: lambda e: self.preview_dropped.emit(),
            ev.ViewFinished: lambda e: self.view_finished.emit(e.view),
            ev.ViewFailed: lambda e: self.view_failed.emit(e.message),
            ev.ViewBusy: lambda e: self.view_busy.emit(e.busy),
            ev.Progress: lambda e: self.progress.emit(e.stage, e.done, e.total, e.left_s,
                                                      e.again),
            ev.EngineInfo: lambda e: self.engine_info.emit(e.info),
            ev.EngineError: lambda e: self.engine_error.emit(e.message),
            ev.Message: lambda e: self.message.emit(e.text, e.error),
            ev.Saved: lambda e: self.saved.emit(e.paths, e.warnings),
            ev.WeightsChanged: lambda e: self.weights_changed.emit(e.weights),
            ev.ChoiceChanged: lambda e: self.choice_changed.emit(e.choice),
        }

    def _emit(self, events: list[ev.Event]) -> list[ev.Event]:
        for event in events:
            self._signals[type(event)](event)
        return events

    # -- worker reports, in the GUI thread --------------------------------------------
    @Slot(int, object)
    def _on_loaded(self, gen: int, view: ViewData) -> None:
        self._emit(self.model.on_loaded(gen, view))

    @Slot(int, object, object)
    def _on_exit(self, gen: int, e: object, view: ViewData) -> None:
        self._emit(self.model.on_exit(gen, e, view))  # type: ignore[arg-type]

    @Slot(int, object)
    def _on_tile(self, gen: int, patch: TilePatch) -> None:
        self._emit(self.model.on_tile(gen, patch))

    @Slot(int, str, int, int)
    def _on_progress(self, gen: int, stage: str, done: int, total: int) -> None:
        self._emit(self.model.on_progress(gen, stage, done, total))

    @Slot(int, object)
    def _on_finished(self, gen: int, payload: object) -> None:
        self._emit(self.model.on_finished(gen, payload))

    @Slot(int, str)
    def _on_failed(self, gen: int, message: str) -> None:
        self._emit(self.model.on_failed(gen, message))

    @Slot(int, object)
    def _on_cancelled(self, gen: int, partial: EnhanceResult | None) -> None:
        self._emit(self.model.on_cancelled(gen, partial))

    @Slot(object)
    def _on_engine_ready(self, info: dict) -> None:
        self._emit(self.model.on_engine_ready(info))

    @Slot(int, str)
    def _on_engine_failed(self, gen: int, message: str) -> None:
        self._emit(self.model.on_engine_failed(gen, message))

    # -- the model's state, read by the window ------------------------------------------
    @property
    def settings(self) -> AppSettings:
        return self.model.settings

    @property
    def queue(self) -> Queue:
        return self.model.queue

    @property
    def current(self) -> QueueItem | None:
        return self.model.current

    @property
    def view(self) -> ViewData | None:
        return self.model.view

    @property
    def weights(self) -> str:
        return self.model.weights

    @property
    def spec(self) -> EngineSpec:
        return self.model.spec

    @property
    def policy(self) -> PolicyChoice:
        return self.model.policy

    @property
    def mode(self) -> str | int:
        return self.model.mode

    @property
    def mode_override(self) -> str | int | None:
        return self.model.mode_override

    @mode_override.setter
    def mode_override(self, value: str | int | None) -> None:
        self.model.mode_override = value

    @property
    def background(self) -> bool:
        return self.model.background

    @background.setter
    def background(self, on: bool) -> None:
        self._emit(self.model.set_background(on))

    @property
    def engine_broken(self) -> bool:
        return self.model.engine_broken

    # -- commands --------------------------------------------------------------------
    def add_paths(self, paths: Iterable[str | Path], recursive: bool = False) -> list[QueueItem]:
        events = self._emit(self.model.add_paths(paths, recursive))
        return next((e.items for e in events if isinstance(e, ev.ItemsAdded)), [])

    def select(self, item: QueueItem | None) -> None:
        self._emit(self.model.select(item))

    def reprocess_current(self) -> None:
        self._emit(self.model.reprocess_current())

    def enhance_if_changed(self, item: QueueItem) -> bool:
        """Whether ``item``, opened again, runs again (said): its photo changed on disk
        since its result, which is dropped, or it had failed
        (:meth:`SessionModel.enhance_if_changed`)."""
        return bool(self._emit(self.model.enhance_if_changed(item)))

    def check_before_save(self) -> bool:
        """Whether the viewed photo changed on disk since its result: then nothing is to
        be saved, and it is enhanced again (said; :meth:`SessionModel.check_before_save`)."""
        return bool(self._emit(self.model.check_before_save()))

    @property
    def view_running(self) -> bool:
        return self.model.view_running

    def stop(self) -> None:
        self._emit(self.model.stop())

    def engine_changed(self) -> None:
        self._emit(self.model.engine_changed())

    def apply_choice(self) -> None:
        self._emit(self.model.apply_choice())

    def setting_changed(self, name: str) -> None:
        self._emit(self.model.setting_changed(name))

    def compute_all(self) -> bool:
        return bool(self._emit(self.model.compute_all()))

    def save(self, exits: list[int], targets: dict[int, Path] | None = None,
             folder: Path | None = None, agreed: frozenset[Path] = frozenset()) -> bool:
        return bool(self._emit(self.model.save(exits, targets, folder, agreed)))

    def others_at(self, exits: list[int], folder: Path) -> list[Path]:
        return self.model.others_at(exits, folder)

    def hold_previews(self, nbytes: float) -> None:
        """The bytes the window's previews hold, counted in the result cache's budget
        (:meth:`SessionModel.hold_previews`)."""
        self._emit(self.model.hold_previews(nbytes))

    def open_batch_results(self, reports: Sequence[ItemReport]) -> None:
        self._emit(self.model.open_batch_results(reports))

    def remove(self, item: QueueItem) -> bool:
        """Takes ``item`` out of the queue; whether it was in it (its row goes only then)."""
        if self.queue.key_of(item) is None:
            return False
        self._emit(self.model.remove(item))
        return True

    def remove_all(self) -> None:
        self._emit(self.model.remove_all())

    def shutdown(self) -> None:
        self.model.background = False
        self.host.shutdown()
