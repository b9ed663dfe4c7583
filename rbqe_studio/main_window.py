"""Main window: menus, actions, panels and the wiring between them (no processing here)."""

from __future__ import annotations

import html
import logging
import os
import re
import time
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, QSettings, Qt, QUrl
from PySide6.QtGui import (
    QCloseEvent,
    QDesktopServices,
    QDragEnterEvent,
    QDragLeaveEvent,
    QDropEvent,
    QKeyEvent,
    QKeySequence,
    QShowEvent,
)
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QLabel,
    QMainWindow,
    QProgressBar,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from rbqe.errors import RBQEError
from rbqe.io import SUPPORTED_SUFFIXES, output_path_for, same_file
from rbqe.model import NUM_EXITS
from rbqe_studio import dialogs
from rbqe_studio import settings as settings_mod
from rbqe_studio.actions import SAVE_STOPPED_TIP, SAVE_TIP, Commands, build_actions, set_tip
from rbqe_studio.banner import Banner
from rbqe_studio.batch_panel import BatchPanel, summary_line
from rbqe_studio.compare_panel import ComparePanel
from rbqe_studio.drop_zone import DropZone
from rbqe_studio.exits import INPUT
from rbqe_studio.info_panel import InfoPanel
from rbqe_studio.jobs import BatchOutcome, TilePatch, ViewData
from rbqe_studio.keys import keeps_key, press_button
from rbqe_studio.logs import log_dir
from rbqe_studio.queue_panel import QueuePanel, short_error
from rbqe_studio.session import Session
from rbqe_studio.settings_panel import SettingsPanel
from rbqe_studio.state import (
    FAILED,
    QueueItem,
    elide_middle,
    engine_text,
    fmt_ms,
    path_key,
    score_decides,
    sentence,
    tiled_progress_text,
    warned,
)
from rbqe_studio.widgets import StatusLabel
from rbqe_studio.window_state import (
    Layout,
    restore_window,
    save_window,
    side_widths,
    weights_problem,
)
from rbqe_studio.worker import EnhancerFactory, WorkerHost, default_factory

log = logging.getLogger(__name__)
_ASK_HERE = QFileDialog.Option.DontConfirmOverwrite  # Save asks itself (_save_dialog)
SAVE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")
# The Save dialog's file types, PNG (lossless) first: the one it starts on.
SAVE_FILTERS = ("PNG (*.png)", "JPEG (*.jpg *.jpeg)", "WebP (*.webp)", "TIFF (*.tif *.tiff)",
                "BMP (*.bmp)", "All files (*)")
# A held message (an error) stays this long before progress lines may replace it.
MESSAGE_HOLD_S, ERROR_HOLD_S = 2.0, 5.0


def stopped_text(name: str, k: int, save_key: str) -> str:
    """The status line of a photo stopped after exit ``k`` (no exit chosen): what is
    shown, and what Save writes (the exit shown, named as that exit)."""
    return (f"{name}: stopped after exit {k} of {NUM_EXITS}, no exit chosen · Save "
            f"({save_key}) saves the exit shown, named as that exit")


class MainWindow(QMainWindow):
    def __init__(self, store: QSettings, factory: EnhancerFactory = default_factory,
                 weights: str | None = None, check_weights: bool = True) -> None:
        super().__init__()
        self.setWindowTitle("RBQE Studio")
        self.setAcceptDrops(True)
        self.store = store
        self.settings = settings_mod.load_settings(store)
        # Where the user last saved this session: Save and Save all start there (they
        # always opened the photo's folder, or Settings' output folder, again).
        self._saved_to: str | None = None
        self._fixed_weights = weights or os.environ.get("RBQE_WEIGHTS") or None
        # The weights' default exit policy, described: from their metadata at start-up
        # (check_weights) or the engine's info; "" until then.
        self._weights_policy = ""
        self._message_until = 0.0  # until then progress lines leave a message alone
        self._held_error = False  # the message held is an error
        self._held_failure: Path | None = None  # the photo whose failure that error says
        self.session = Session(self.settings, factory, self._fixed_weights, self)
        self.batch_host = WorkerHost(factory, "rbqe-batch", self)

        self.queue = QueuePanel()
        self.compare = ComparePanel()
        self.info = InfoPanel()
        self.settings_panel = SettingsPanel(self.settings)
        self.batch = BatchPanel(self.settings, self.batch_host,
                                lambda: (self.session.spec, self.session.policy))
        self.drop_zone = DropZone()
        self.banner = Banner()

        self.stack = QStackedWidget()
        self.stack.addWidget(self.drop_zone)
        self.stack.addWidget(self.compare)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.info, "Info")
        self.tabs.addTab(self.settings_panel, "Settings")
        self.tabs.addTab(self.batch, "Batch")
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        for w in (self.queue, self.stack, self.tabs):
            self.splitter.addWidget(w)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setCollapsible(1, False)
        central = QWidget()
        central.setObjectName("central")
        lay = QVBoxLayout(central)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.banner)
        lay.addWidget(self.splitter, 1)
        self.setCentralWidget(central)

        self.status = StatusLabel("Ready")  # long messages are elided, never widen the window
        self.status.linkActivated.connect(lambda url: self.show_in_folder(Path(url)))
        self.progress = QProgressBar()
        self.progress.setFixedWidth(180)
        self.progress.setMaximumHeight(16)
        self.progress.setTextVisible(False)
        self.progress.hide()
        self.device_label = QLabel("")
        self.statusBar().addWidget(self.status, 1)
        self.statusBar().addPermanentWidget(self.progress)
        self.statusBar().addPermanentWidget(self.device_label)

        self.acts = build_actions(self, Commands(
            self.open_files_dialog, self.open_folder_dialog, self.save_result,
            self.save_all_exits, self.show_outputs, self.open_log_folder, self.close,
            self.session.compute_all, self.session.reprocess_current, self.session.stop,
            self.start_batch, self.batch.stop, self.show_shortcuts, self.about,
            self.show_settings, self.show_exit),
            self.compare, self.queue)
        self._connect()
        self.layout_state = Layout(self, {"main_splitter": self.splitter,
                                          "center_splitter": self.compare.splitter},
                                   self.tabs, {"center_splitter": [600, 250]},
                                   self.compare)
        # No split stored: the first show fits one to the window's width (fixed widths
        # left a 900-px window's photo a third of it).
        self._fit_panels = settings_mod.load_state(store, "main_splitter") is None
        restore_window(store, self.layout_state)
        if self._fixed_weights:
            self.settings_panel.lock_model(self._fixed_weights)
        self._check_weights = check_weights
        self.check_weights()
        self.update_threshold()
        self._update_actions()
        QApplication.instance().installEventFilter(self)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._fit_panels:
            self._fit_panels = False
            self.layout().activate()  # the splitter at the window's width, not its last
            total = self.splitter.width()
            # At 1280 px: the queue with its buttons side by side, the tabs 310 px and
            # the centre room for all six exit cards, as before.
            queue, tabs = side_widths(
                total, (self.queue.minimumSizeHint().width(), self.queue.roomy_width()),
                (self._tabs_narrowest(), 310))
            self.splitter.setSizes([queue, total - queue - tabs, tabs])

    def _tabs_narrowest(self) -> int:
        """The side tabs' narrowest first width: their pages' narrowest, and wide enough
        for the Info panel's per-stage table to read in full."""
        tabs = self.tabs
        pages = max(max(page.minimumWidth(), page.minimumSizeHint().width())
                    for page in map(tabs.widget, range(tabs.count())))
        frame = tabs.minimumSizeHint().width() - pages
        return max(pages, self.info.roomy_width()) + frame

    # -- wiring ----------------------------------------------------------------------
    def _connect(self) -> None:
        s, q, cp = self.session, self.queue, self.compare
        s.items_added.connect(q.add_items)
        s.item_changed.connect(q.update_item)
        s.item_changed.connect(lambda _: self._update_actions())
        s.select_item.connect(q.select)
        q.current_changed.connect(self._on_current)
        q.open_files.connect(self.open_files_dialog)
        q.open_folder.connect(self.open_folder_dialog)
        q.clear_requested.connect(self.clear_queue)
        q.remove_requested.connect(self.remove_from_queue)
        self.drop_zone.open_files.connect(self.open_files_dialog)
        self.drop_zone.open_folder.connect(self.open_folder_dialog)
        s.view_loaded.connect(self._on_view_loaded)
        s.exit_ready.connect(cp.add_exit)
        s.tile_ready.connect(self._on_tile)
        s.preview_dropped.connect(self._on_preview_dropped)
        s.view_finished.connect(self._on_view_finished)
        s.view_failed.connect(self._on_view_failed)
        s.view_busy.connect(self._on_busy)
        s.progress.connect(self._on_progress)
        s.engine_info.connect(self._on_engine_info)
        s.engine_error.connect(self._on_engine_error)
        s.message.connect(lambda text, error: self.show_message(text, error, hold=MESSAGE_HOLD_S))
        s.saved.connect(self._on_saved)
        s.weights_changed.connect(lambda _w: (self.check_weights(), self.update_threshold()))
        s.choice_changed.connect(lambda _c: self.update_threshold())
        cp.strip.compute_all.connect(s.compute_all)
        cp.sides_changed.connect(lambda *_: self._update_actions())
        cp.held_changed.connect(s.hold_previews)  # in the result cache's budget
        self.settings_panel.changed.connect(self.setting_changed)
        self.banner.choose_weights.connect(self.choose_weights_file)
        self.banner.open_settings.connect(self.show_settings)
        self.batch.message.connect(lambda text: self.show_message(text, error=True))
        self.batch.running_changed.connect(self._on_batch_running)
        self.batch.cancelling.connect(self._on_batch_cancelling)
        self.batch.finished.connect(self._on_batch_finished)
        self.batch.open_results.connect(self.open_batch_results)
        self.batch.show_folder.connect(self.show_in_folder)
        self.batch_host.worker.engine_failed.connect(self._on_batch_engine_failed)

    # -- opening -----------------------------------------------------------------------
    def open_paths(self, paths: list[str | Path]) -> int:
        """Queue files and folders; returns how many images were added."""
        try:
            added = self.session.add_paths(paths)
        except (OSError, RBQEError) as exc:
            self.show_message(f"Could not open: {exc}", error=True)
            return 0
        queued = [item for p in paths if (item := self.session.queue.get(Path(p)))]
        again = self._opened_again(queued, paths, added)
        if added:
            self.stack.setCurrentWidget(self.compare)
            self.queue.select(added[0])  # show what was just opened, not the old image
            self.show_message(f"Added {len(added)} image{'s' * (len(added) != 1)}"
                              + (f"; {len(again)} already queued enhanced again (changed "
                                 f"on disk, or failed before)" if again else ""))
        elif paths:
            if queued or again:  # opened again: shown, rather than "No new images found"
                self.stack.setCurrentWidget(self.compare)
                self.queue.select((queued or again)[0])
                if len(again) > 1:  # one says so itself
                    self.show_message(f"{len(again)} images enhanced again (changed on "
                                      f"disk, or failed before)")
                elif not again:
                    self.show_message(f"{queued[0].name} is already in the queue" if len(
                        queued) == 1 else "These images are already in the queue")
            else:
                where = f"in {Path(paths[0])}" if len(paths) == 1 else "there"
                self.show_message(f"No new images found {where}", error=False)
        return len(added)

    def _opened_again(self, named: list[QueueItem], paths: list[str | Path],
                      added: list[QueueItem]) -> list[QueueItem]:
        """The queued images opened again (``named``, or in a folder of ``paths`` opened
        again) that are enhanced again: changed on disk since their result, or failed
        before (repaired, perhaps). A folder opened again only said "No new images found
        there"."""
        queue, new = self.session.queue, {id(item) for item in added}
        folders = {path_key(Path(p)) for p in paths if Path(p).is_dir()}
        parents: dict[Path, bool] = {}  # each parent folder resolved once, not per image

        def in_folders(item: QueueItem) -> bool:
            if item.path.parent not in parents:
                parents[item.path.parent] = path_key(item.path.parent) in folders
            return parents[item.path.parent]

        found = {id(item): item for item in named + [
            item for item in queue.items if folders and in_folders(item)]}
        return [item for key, item in found.items() if key not in new
                and self.session.enhance_if_changed(item)]

    def open_files_dialog(self) -> None:
        pattern = " ".join(f"*{s}" for s in sorted(SUPPORTED_SUFFIXES))
        files, _ = QFileDialog.getOpenFileNames(self, "Open photos", self.settings.last_open_dir,
                                                f"Images ({pattern});;All files (*)")
        if files:
            self.settings.last_open_dir = str(Path(files[0]).parent)
            self.open_paths(files)

    def open_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of photos",
                                                  self.settings.last_open_dir)
        if folder:
            self.settings.last_open_dir = folder
            self.open_paths([folder])

    def open_batch_results(self, reports: list) -> None:
        """Queue a batch's images; the viewer reads their saved outputs (no new run)."""
        self.stack.setCurrentWidget(self.compare)
        known = len(self.session.queue)
        self.session.open_batch_results(reports)
        if reports and len(self.session.queue) == known:
            # Nothing new was queued: say so, or the click seems to do nothing.
            n = len(reports)
            self.show_message("The batch's image is already in the queue; showing it" if n == 1
                              else f"The batch's {n} images are already in the queue; "
                                   f"showing the first")

    def remove_from_queue(self, item: QueueItem) -> None:
        """One image out of the queue (its run stopped, its result forgotten; saved files
        stay); the list then shows its neighbour, or the drop zone when none is left."""
        removed = self.session.remove(item)
        self.queue.remove_item(item)  # its row goes either way (none left to act on)
        if not removed:
            return  # not in the queue (already out): nothing to say
        if not self.session.queue.items:
            self.clear_queue()
        else:
            self.show_message(f"{item.name} removed from the queue")
        self._update_actions()

    def clear_queue(self) -> None:
        self.session.remove_all()
        self.queue.clear()
        self.compare.clear()
        self.info.clear()
        self.settings_panel.set_scores([])
        self.stack.setCurrentWidget(self.drop_zone)
        self.setWindowTitle("RBQE Studio")
        self.show_message("")
        self._update_actions()

    # -- drag and drop -----------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()
            self.drop_zone.set_highlight(True)

    def dragLeaveEvent(self, event: QDragLeaveEvent) -> None:
        self.drop_zone.set_highlight(False)

    def dropEvent(self, event: QDropEvent) -> None:
        self.drop_zone.set_highlight(False)
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths)

    # -- session events ----------------------------------------------------------------
    def _on_current(self, item: QueueItem | None) -> None:
        self.compare.clear()
        self.info.clear()
        self.settings_panel.set_scores([])
        # Not busy and untitled until the image shown now says otherwise: the bar stayed
        # up over a done photo, and the title named one just removed.
        self.compare.set_busy(False)
        self.progress.setVisible(False)
        self.setWindowTitle("RBQE Studio")
        self._message_until = 0.0  # another photo's message does not hold its progress
        self.session.select(item)
        if item is not None and item.status == FAILED:
            self._on_view_failed(item.error)
        self._update_actions()

    def _on_view_loaded(self, data: ViewData) -> None:
        self.compare.show_loaded(data)
        self.info.show_input(data)
        self.setWindowTitle(f"{data.path.name} – RBQE Studio")

    def _on_tile(self, patch: TilePatch, data: ViewData) -> None:
        cp = self.compare
        cp.add_tile(patch, data)
        # Pasted, and no exit shown yet (the worker may have set data.result already; a
        # second run's tiles, Compute all's, leave the result's row alone).
        if cp.preview is not None and cp.data is data and not cp.exits:
            self.info.show_tiles(cp.preview.exits, patch.done, patch.total)

    def _on_preview_dropped(self) -> None:
        self.compare.drop_preview()
        self.info.end_tiles()

    def _on_view_finished(self, data: ViewData) -> None:
        self.compare.show_finished(data)
        self.info.show_result(data)
        r = data.result
        if r is not None:
            self.settings_panel.set_scores([e.score for e in r.exits], [e.exit for e in r.exits])
            item = self.session.queue.get(data.path)
            # Read back from a batch's outputs: nothing was timed here ("0 ms" it said);
            # the batch's report has the time, as the queue row shows.
            ms = (item.time_ms if item is not None else None) if data.saved \
                else data.chosen_cost()[0]
            when = f", {fmt_ms(ms)}" + (" in the batch" if data.saved else "") \
                if ms is not None else ""
            score = f", score {r.exit_result(r.chosen).score:.3f}" \
                if score_decides(r.exit_reason) else ""
            line = f"{data.path.name}: exit {r.chosen} of {NUM_EXITS}{score}{when}"
            if data.stopped_after is not None:
                line = stopped_text(data.path.name, data.stopped_after, self._key("save"))
            if time.monotonic() < self._message_until and self._held_error and \
                    self._held_failure != data.path:
                # "Nothing saved: … changed on disk …" must not go within a second, as
                # the new run of a small photo ends: the line follows it instead. (The
                # photo's own failure, repaired and run again, is over: not kept in red.)
                self.show_message(f"{self.status.text()} · {line}", error=True)
            else:
                self.show_message(line)
        self._update_actions()

    def _on_view_failed(self, message: str) -> None:
        item = self.session.current
        name = item.path.name if item is not None else "this image"
        reason = short_error(item) if item is not None else message
        self.compare.show_unreadable(f"Could not process {name}\n{reason}")
        if item is not None:
            self.info.show_failed(item.path, reason)
            self.setWindowTitle(f"{name} – RBQE Studio")
        self.show_message(message, error=True)
        self._held_failure = item.path if item is not None else None
        self._update_actions()

    def _on_busy(self, busy: bool) -> None:
        self.compare.set_busy(busy)
        if not busy:
            self.info.end_tiles()
        current, view = self.session.current, self.session.view
        if not busy and current is not None and current.stopped and (
                view is None or view.result is None):  # else its exits so far are shown
            self.compare.set_unavailable("Stopped · Process again (Ctrl+R) enhances it")
            self.show_message(f"Stopped {current.name}")
        self.progress.setVisible(busy)
        if busy:
            self.progress.setRange(0, 0)
        self._update_actions()

    def _on_progress(self, stage: str, done: int, total: int, left_s: float | None,
                     again: str = "") -> None:
        if total > 0:
            self.progress.setRange(0, total)
            self.progress.setValue(done)
        if stage == "exit" and done < total:
            self._say_progress(f"Computing exit {done + 1}…")
            self.compare.strip.set_running(done + 1)
        elif stage in ("sample", "tile"):
            self._say_progress(tiled_progress_text(stage, done, total, left_s, again))
            self.compare.clear_running(tiles=False)  # exit 1's, not the tiles' exit's
        elif stage in ("engine", "export"):
            self._say_progress(engine_text(stage == "export"))

    def _say_progress(self, text: str) -> None:
        """A progress line, unless a message said just before is still to be read: "Nothing
        saved: … changed on disk" was replaced by "Computing exit 1…" within 70 ms."""
        if time.monotonic() >= self._message_until:
            self.status.say(text)
            self.status.setStyleSheet("")  # not an error's red

    def _on_engine_info(self, info: dict) -> None:
        self.info.set_engine(info)
        backend = f" ({info['backend']})" if info.get("backend") else ""
        self.device_label.setText(f"Device: {info['device']}{backend}")
        self.settings_panel.set_weights_threshold(info["threshold"], info.get("min_exit", 1),
                                                  str(info.get("rule", "")))
        self._weights_policy = str(info.get("policy", ""))
        self.update_threshold()
        self.banner.show_problem("")
        self.compare.note = ""

    def _on_engine_error(self, message: str) -> None:
        # A missing or broken weights file is said with its fix; anything else (device,
        # backend) with the settings that can change it.
        problem, _ = weights_problem(self.session.weights)
        if problem:
            self.banner.show_problem(problem, Banner.CHOOSE_WEIGHTS)
            short = "no usable model"
        else:
            device = self.settings.device
            problem = (f"The model could not run on device {device!r} with backend "
                       f"{self.settings.backend!r}: {message}. Choose another device or "
                       "backend in Settings.")
            self.banner.show_problem(problem, Banner.OPEN_SETTINGS)
            self.device_label.setText(f"Device: {device} (not usable)")
            short = f"device {device} not usable"
        self.compare.set_unavailable(f"Not enhanced: {short} (see above)")
        log.warning("%s", message)
        self.show_message(f"Not enhanced: {short}; the bar above says how to fix it",
                          error=True)
        self.status.setToolTip(problem)

    def _on_batch_engine_failed(self, _gen: int, message: str) -> None:
        self._on_engine_error(message)  # a method, so that Qt runs it in the GUI thread

    def _on_saved(self, paths: list, warnings: list) -> None:
        """Say where the files went, readably: the name, the folder (elided in the
        middle, whole in the tooltip) and a link that shows them in the file manager;
        then what they could not keep (a JPEG the alpha channel...), short, and whole in
        the tooltip. Not as an error: the library has logged each line already."""
        if not paths:
            return
        first = Path(paths[0])
        self._saved_to = str(first.parent)  # the next Save starts there
        what = first.name if len(paths) == 1 else f"{len(paths)} files"
        folder = elide_middle(str(first.parent), 48)
        note = (f" · <span style='color:#e8a33d'>{html.escape(warned(warnings))}</span>"
                if warnings else "")
        self.show_message(f"Saved {html.escape(what)} in {html.escape(folder)} · "
                          f"<a href='{html.escape(str(first))}' style='color:#7fb8ef'>"
                          f"Show in folder</a>{note}", rich=True)
        self.status.setToolTip("\n".join([*(str(p) for p in paths),
                                          *(f"⚠ {sentence(w)}" for w in warnings)]))
        self._update_actions()

    def _on_batch_running(self, running: bool) -> None:
        self.session.background = not running  # the batch gets the CPU; the view still works
        self._update_actions()
        if running:
            self.tabs.setCurrentWidget(self.batch)
            self.show_message(f"Batch running into {self.settings.output_dir}…")

    def _on_batch_cancelling(self) -> None:
        self._update_actions()
        self.show_message("Cancelling the batch (finishing the current stage)…")

    def _on_batch_finished(self, outcome: BatchOutcome) -> None:
        self.show_message(summary_line(outcome))  # replaces the batch's earlier messages

    def setting_changed(self, name: str) -> None:
        """A setting was changed (Settings panel, command line): store it, let the
        session decide what it means."""
        settings_mod.save_settings(self.store, self.settings)
        if name == "output_dir":
            self._saved_to = None  # the folder just chosen is where saves start
        self.session.setting_changed(name)

    def choose_weights_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose model weights",
                                              self.settings.last_open_dir,
                                              "Model weights (*.safetensors);;All files (*)")
        if path:
            self.settings_panel.choose_weights_file(path)

    def check_weights(self) -> None:
        """Show a banner when the weights in use are missing or unusable."""
        if not self._check_weights:
            return
        problem, info = weights_problem(self.session.weights)
        if info is not None:  # the metadata says the exit rule: no need to wait for torch
            self.settings_panel.set_weights_threshold(info.threshold, info.min_exit,
                                                      info.policy.rule)
            self._weights_policy = info.policy.describe()
        self.banner.show_problem(problem, Banner.CHOOSE_WEIGHTS)

    # -- actions -----------------------------------------------------------------------
    def update_threshold(self) -> None:
        """The strip's header names the rule auto uses: the weights' own (learned gate,
        threshold) or the user's threshold; until the weights are read, "loading"; in a
        forced-exit mode, the forced exit (no rule applies)."""
        panel, strip = self.settings_panel, self.compare.strip
        rule, t = panel.auto_rule(), panel.effective_threshold()
        source = "custom" if self.settings.threshold is not None else "from the weights"
        mode = self.session.mode
        if isinstance(mode, int):
            strip.set_forced(mode)
        elif rule == "assessor" and t is not None:
            strip.set_threshold(t, source, panel.weights_min_exit)
        elif rule in ("gate", "fixed"):
            strip.set_policy(self._weights_policy,
                             "Learned exit gate" if rule == "gate" else "Fixed exit")
        else:
            strip.set_rule_loading()
        self.compare.strip.set_mode_text(
            ("Mode: auto, your threshold" if source == "custom" else "Mode: auto")
            if mode == "auto" else "Mode: all exits" if mode == "all" else "")

    def _key(self, action: str) -> str:
        """The shortcut of the action ``action`` of :attr:`acts`, as the menus show it."""
        act = getattr(self.acts, action)
        return act.shortcut().toString(QKeySequence.SequenceFormat.NativeText)

    def _update_actions(self) -> None:
        data = self.session.view
        has = data is not None and data.result is not None
        n = len(data.result.exits) if has else 0
        self.acts.save.setEnabled(has)
        self.acts.save_all.setEnabled(has)
        stopped = has and data is not None and data.stopped_after is not None
        set_tip(self.acts.save, SAVE_STOPPED_TIP if stopped else SAVE_TIP)
        # Not while the viewed image's exits are being made (it looked as if it did nothing)
        more = has and n < 5 and not self.session.view_running
        self.acts.compute_all.setEnabled(more)
        current = self.session.current
        # Also for a failed file: the user may have repaired it (or finished copying it),
        # and Process again reads it afresh.
        self.acts.redo.setEnabled(current is not None)
        self.acts.stop.setEnabled(self.session.view_running)
        self.acts.show_in_folder.setEnabled(current is not None and bool(current.outputs))
        self.compare.strip.compute_button.setEnabled(more)
        self.acts.cancel_batch.setEnabled(self.batch.running and not self.batch.is_cancelling)

    def _save_dialog(self, suggested: Path) -> str:
        # The dialog does not ask before replacing: the name it returns may get a suffix
        # added ("holiday" -> "holiday.jpg"), and may be the photo itself; asked below.
        path, chosen = QFileDialog.getSaveFileName(
            self, "Save result", str(suggested), ";;".join(SAVE_FILTERS), "", _ASK_HERE)
        typed_as = path
        # "holiday." and "holiday.png." are "holiday" and "holiday.png" (they became
        # "holiday..png" and "holiday.png.png"); "..." is no name (it became ".png")
        path = path.rstrip(".") if path else path
        if typed_as and not Path(typed_as).name.strip("."):
            self.show_message("Nothing saved: the file needs a name", error=True)
            return ""
        if path and Path(path).suffix.lower() not in SAVE_SUFFIXES:
            # The format follows the suffix, so it must be one we write: the file type
            # chosen in the dialog's, else the suggested name's.
            typed = re.search(r"\(\*(\.\w+)", chosen or "")
            path += typed.group(1) if typed else suggested.suffix
            if Path(path).is_dir():  # asked "Replace?", then failed as a directory
                self.show_message(f"Nothing saved: {Path(path).name} is a folder", error=True)
                return ""
        photo = self.session.view.path if self.session.view is not None else None
        if path and photo is not None and same_file(Path(path), photo):  # before "Replace?"
            self._refuse_input(Path(path))
            self.show_message(f"Nothing saved: {Path(path).name} kept")
            return ""
        if path and Path(path).exists() and not self._confirm_overwrite(Path(path)):
            self.show_message(f"Nothing saved: {Path(path).name} kept")
            return ""
        return path

    def _folder_dialog(self, title: str, start: str) -> str:
        return QFileDialog.getExistingDirectory(self, title, start)

    def save_result(self) -> None:
        data = self.session.view
        if data is None or data.result is None or self.session.check_before_save():
            return  # changed on disk: enhanced again, said before a dialog asks a name
        k = self.compare.b if self.compare.b != INPUT else data.result.chosen
        s = self.settings
        folder = self._saved_to or s.output_dir or str(data.path.parent)
        # The name says which exit it is, as Save all and the CLI's --exit all name it:
        # photo_rbqe.exit3.png (three ways of naming exits were two too many).
        suggested = output_path_for(data.path, folder, suffix=s.suffix, exit_tag=f"exit{k}",
                                    fmt=s.output_format)
        path = self._save_dialog(suggested)
        if path:
            self.session.save([k], targets={k: Path(path)})

    def save_all_exits(self) -> None:
        data = self.session.view
        if data is None or data.result is None or self.session.check_before_save():
            return  # changed on disk: enhanced again, said before a dialog asks a folder
        folder = self._folder_dialog(
            "Save all exits to", self._saved_to or self.settings.output_dir or str(data.path.parent))
        if not folder:
            return
        exits = list(range(1, NUM_EXITS + 1))
        others = self.session.others_at(exits, Path(folder))
        if others and not self._confirm_replace(Path(folder), others):
            self.show_message(f"Nothing saved: {len(others)} file"
                              f"{'s' if len(others) > 1 else ''} in {folder} kept")
            return
        self.session.save(exits, folder=Path(folder), agreed=frozenset(others))

    def _confirm_replace(self, folder: Path, files: list[Path]) -> bool:
        return dialogs.confirm_replace(self, folder, files)

    def _confirm_overwrite(self, path: Path) -> bool:
        return dialogs.confirm_overwrite(self, path)

    def _refuse_input(self, path: Path) -> None:
        dialogs.refuse_input(self, path)

    def start_batch(self) -> None:
        self.tabs.setCurrentWidget(self.batch)
        self.batch.run()

    def show_settings(self) -> None:
        """The Settings tab, in view (its side panel too, if it was dragged shut)."""
        sizes = self.splitter.sizes()
        if sizes[2] == 0:
            self.splitter.setSizes([sizes[0], max(0, sizes[1] - 310), 310])
        self.tabs.setCurrentWidget(self.settings_panel)

    def show_exit(self, k: int) -> None:
        """A number key: exit ``k`` (0: the input) on the B side, or why it is not there."""
        cp = self.compare
        if k == INPUT or k in cp.exits or cp.data is None:
            cp.pick(k, "b")
            return
        keys = self._key("compute_all")
        # Held as an error is (a long sentence): the next progress line ("Computing exit
        # 2…") replaced it within 0.4 s.
        self.show_message(
            f"Exit {k} is not computed yet; once this image is done, Compute all exits "
            f"({keys}) computes the rest" if self.session.view_running else
            f"Exit {k} is not computed: Compute all exits ({keys}) computes it",
            hold=ERROR_HOLD_S)

    def open_log_folder(self) -> None:
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(log_dir())))

    def show_in_folder(self, path: Path) -> None:
        """Open the folder of ``path`` (or ``path``, a folder) in the file manager."""
        folder = path if path.is_dir() else path.parent
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):
            self.show_message(f"Could not open {folder} in a file manager", error=True)

    def show_outputs(self) -> None:
        """File → Show in folder: the folder of the viewed image's latest output."""
        item = self.session.current
        if item is not None and item.outputs:
            self.show_in_folder(item.outputs[-1])

    def show_shortcuts(self) -> None:
        self._shortcuts_box = dialogs.shortcuts(self, self.menuBar())  # kept: not collected

    def about(self) -> None:
        dialogs.about(self)

    def show_message(self, text: str, error: bool = False, rich: bool = False,
                     hold: float = 0.0) -> None:
        """One line in the status bar (``rich``: ``text`` is HTML, e.g. with a link). An
        error, or a message held ``hold`` seconds (the session's: "… changed on disk:
        enhanced again"), is not replaced by progress lines at once."""
        if error:
            log.warning("%s", text)
        held = max(hold, ERROR_HOLD_S) if error else hold
        self._message_until = time.monotonic() + held if text and held else 0.0
        self._held_error, self._held_failure = error, None
        self.status.say(text, rich)
        self.status.setStyleSheet("color: #f08a84;" if error else "")
        self.status.setToolTip("" if rich else text)

    # -- keys, weights, persistence ------------------------------------------------------
    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        """The focused widget keeps its own keys (:mod:`rbqe_studio.keys`); the rest
        go to the window's shortcuts, and a held Space peeks at A."""
        if not isinstance(event, QKeyEvent) or not self.isActiveWindow():
            return super().eventFilter(obj, event)
        kind, focus = event.type(), QApplication.focusWidget()
        if kind == QEvent.Type.ShortcutOverride and keeps_key(focus, event):
            event.accept()  # Qt then sends the key to the widget, not to a shortcut
            return True
        if kind == QEvent.Type.KeyPress and press_button(focus, event):
            return True
        if kind in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease) and \
                event.key() == Qt.Key.Key_Space and not event.isAutoRepeat() and \
                not keeps_key(focus, event):
            self.compare.view.set_hold(kind == QEvent.Type.KeyPress)
            return True
        return super().eventFilter(obj, event)

    def _confirm_quit(self) -> bool:
        bar = self.batch.bar
        # Busy (0 of 0, read as -1 of 0) until the batch has counted its images.
        return dialogs.confirm_quit(self, (bar.value(), bar.maximum()) if bar.maximum() else None)

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.batch.running and not self._confirm_quit():
            event.ignore()
            return
        # Gone from the screen at once; the worker threads then stop after their current
        # stage (a second or so on a large image), which the user need not watch.
        self.hide()
        QApplication.instance().removeEventFilter(self)
        save_window(self.store, self.layout_state)
        settings_mod.save_settings(self.store, self.settings)
        self.store.sync()
        self.batch.stop()
        self.session.shutdown()  # cancels, then joins: at most one stage of waiting
        self.batch_host.shutdown()
        event.accept()
