"""The interactive session as plain Python: which image is viewed, what runs next, what
is cached, and what a changed setting means.

The queue is processed in the background one image at a time; the image on screen always
goes first (a background job for another image is cancelled to make room). Each job's
generation id decides whether its reports still matter: anything from a job that is no
longer the one feeding the view is dropped.

As ndv's controllers do, :class:`SessionModel` takes commands (methods) and returns the
events the window should show (a list of small dataclasses); jobs go to the ``submit``
callable it is given, and the worker's reports come back through its ``on_*`` methods,
which return events too. It imports no Qt: tests drive it with a list as ``submit`` and
hand-made reports. :class:`rbqe_studio.session.Session` adapts it to Qt signals.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rbqe.batch import ItemReport
from rbqe.engine import EnhanceResult, ExitResult
from rbqe.errors import RBQEError
from rbqe.io import OutputNotes, list_images, source_changed
from rbqe.model import NUM_EXITS
from rbqe.weights import PACKAGE_WEIGHTS, load_weights
from rbqe_studio import saving
from rbqe_studio.jobs import (
    Choice,
    ContinueJob,
    EngineSpec,
    Job,
    LoadOutputsJob,
    PolicyChoice,
    ProcessJob,
    RechooseJob,
    SaveJob,
    SaveOutcome,
    TilePatch,
    ViewData,
    saved_exits,
)
from rbqe_studio.session_events import (
    ChoiceChanged,
    EngineError,
    EngineInfo,
    Event,
    ExitReady,
    ItemChanged,
    ItemsAdded,
    Message,
    PreviewDropped,
    Progress,
    Saved,
    SelectItem,
    TileReady,
    ViewBusy,
    ViewFailed,
    ViewFinished,
    ViewLoaded,
    WeightsChanged,
)
from rbqe_studio.settings import AppSettings
from rbqe_studio.state import (
    BLOCKED,
    DEVICE,
    DONE,
    FAILED,
    MODEL,
    RUNNING,
    WAITING,
    Queue,
    QueueItem,
    ResultCache,
    TilePace,
    exits_text,
    other_ms,
    path_key,
    score_decides,
)

log = logging.getLogger(__name__)

# Bytes of pictures and exit arrays kept for quick re-viewing, and of the window's
# previews of the photo on screen (:meth:`SessionModel.hold_previews`)
CACHE_BUDGET = 1.5e9
ENGINE_SETTINGS = ("weights_file", "device", "backend")
CHOICE_SETTINGS = ("exit_mode", "threshold")


def engine_blame(weights: str) -> str:
    """Why a model could not be built: MODEL when its weights file is missing or
    unusable (its tensors too: a file whose metadata reads well may not load; a few MB,
    on the CPU, only after a failure), else DEVICE (the device or backend failed)."""
    try:
        load_weights(weights)
    except RBQEError:
        return MODEL
    return DEVICE


@dataclass
class Running:
    """The one job that makes an item's view (network run or saved outputs read)."""

    job: ProcessJob | LoadOutputsJob
    item: QueueItem
    old_status: str  # what the item goes back to when the job is cancelled
    view: ViewData | None = None  # its input, once loaded
    # Cancelled to run the item again (a second setting change while it reran for the
    # first): its end is not a Stop, so the result from before is not brought back.
    superseded: bool = False
    exits: list[ExitResult] = field(default_factory=list)  # arrived so far


def computing_text(view: ViewData) -> str:
    """What "Compute all exits" says it does for ``view``: the exits it lacks, and, when
    they cannot continue from its kept state, that the picture runs again from exit 1
    (a tiled one, after auto, has only its chosen exit: those before it are missing too;
    a stopped run's state went with it, and its exit is chosen once all are there)."""
    r = view.result
    assert r is not None
    which = exits_text(view.missing_exits)
    if r.can_continue:
        again = ""
    elif view.stopped_after is not None:
        again = " (its run was stopped: it runs again from exit 1, then an exit is chosen)"
    else:
        again = (" (a tiled picture runs again from exit 1)" if r.tiled
                 else " (it runs again from exit 1)")
    return f"Computing {which} of {view.path.name}{again}…"


_CHANGED = "{} changed on disk since it was enhanced: enhanced again"
_NOT_SAVED = ("Nothing saved: {} changed on disk since it was enhanced, so it is enhanced "
              "again; save it then")
_RETRIED = "{} could not be enhanced before: trying it again"


def changed(view: ViewData) -> bool:
    """Whether ``view``'s photo is no longer the file its result was made from (replaced
    or edited since; a stat, and a read only where the mtime alone changed). Exits read
    from a batch's outputs were made from the photo as that batch read it (``saved_from``),
    not as the viewer did."""
    if view.result is None:
        return False
    made_from = [view.source_id, *(view.saved_from.get(k) for k in view.saved)]
    return any(source_changed(noted, view.path) for noted in made_from if noted)


class SessionModel:
    """Scheduling, generation filtering and job state of the interactive session.

    Args:
        settings: The user's settings (read when a job is made, never written here).
        submit: Hands a job to the worker.
        weights: Weights fixed by ``--weights`` / ``RBQE_WEIGHTS`` (None: the model
            chosen in the settings).
    """

    def __init__(self, settings: AppSettings, submit: Callable[[Job], object],
                 weights: str | None = None) -> None:
        self.settings = settings
        self.submit = submit
        self.fixed_weights = weights
        self.weights = self._weights()
        self.queue = Queue()
        self.cache: ResultCache[str, ViewData] = ResultCache(CACHE_BUDGET, self._holds_stop)
        self.current: QueueItem | None = None
        self.view: ViewData | None = None
        self.background = True  # process waiting items when nothing else runs
        self.mode_override: str | int | None = None  # --exit on the command line
        self.engine_broken = False
        self._running: Running | None = None
        self._aux: dict[int, ContinueJob | RechooseJob | SaveJob] = {}
        self._gen_viewed = 0
        self.pace = TilePace()
        # Process again: the image's result before it, shown again if the user stops the
        # new run (it was thrown away at once: Stop then left a blank "Stopped" image).
        self._before: tuple[QueueItem, QueueItem, ViewData] | None = None

    @property
    def _view_gen(self) -> int:
        """The generation of the job whose reports feed the view (0: none)."""
        return self._gen_viewed

    @_view_gen.setter
    def _view_gen(self, gen: int) -> None:
        self._gen_viewed = gen
        self._sync_shown()

    def _sync_shown(self) -> None:
        """The running ProcessJob's ``shown`` set while it feeds the view, else cleared:
        the worker converts a tiled photo's tiles for the preview only then."""
        run = self._running
        if run is not None and isinstance(run.job, ProcessJob):
            if run.job.gen == self._gen_viewed:
                run.job.shown.set()
            else:
                run.job.shown.clear()

    # -- what jobs are made with -------------------------------------------------------
    @property
    def spec(self) -> EngineSpec:
        return EngineSpec(self.weights, self.settings.device, self.settings.backend)

    @property
    def mode(self) -> str | int:
        return self.mode_override if self.mode_override is not None else self.settings.mode

    @property
    def policy(self) -> PolicyChoice:
        return PolicyChoice(self.settings.threshold)

    @property
    def choice(self) -> Choice:
        return Choice(self.mode, self.policy)

    def _weights(self) -> str:
        s = self.settings
        return self.fixed_weights or s.weights_file or str(PACKAGE_WEIGHTS)

    # -- commands --------------------------------------------------------------------
    def add_paths(self, paths: Iterable[str | Path], recursive: bool = False) -> list[Event]:
        added = self._add(paths, recursive)
        return [ItemsAdded(added), *self._pump()] if added else []

    def _add(self, paths: Iterable[str | Path], recursive: bool = False) -> list[QueueItem]:
        paths = [Path(p) for p in paths]
        # Folder scans leave out the outputs rbqe wrote next to their sources, as a batch
        # does; a file the user names directly is always shown.
        folders = [p for p in paths if p.is_dir()]
        named = [p for p in paths if not p.is_dir()]
        listed = list_images(folders, recursive=recursive, skip_outputs=True) if folders else []
        files = [f for f, _ in listed + (list_images(named) if named else [])]
        return self.queue.add(files)

    def select(self, item: QueueItem | None) -> list[Event]:
        if item is self.current:
            return []
        left = self.current
        if left is None or not self._kept_stop(left) or \
                self.cache.peek(path_key(left.path)) is not None:
            return self._select(item)
        # Its kept exits were let go while on screen (:meth:`_let_go`): gone with it
        return [*self._unstop(left), *self._select(item), *self._pump()]

    def _select(self, item: QueueItem | None) -> list[Event]:
        self.current = item
        old, self.view = self.view, None
        self._drop_session(old)
        self._view_gen = 0
        if item is None:
            return []
        cached = self.cache.get(path_key(item.path))
        if cached is None or cached.result is None:
            # Stopped before its first exit (or its stopped exits since let go): viewed
            # again, it runs. Stopped later, its exits are shown as they were.
            item.stopped, item.kept = False, ()
        if cached is not None and cached.result is not None and changed(cached):
            events = self._forget_changed(item, cached)
            self._make_room()
            return [*events, *self._pump()]
        if cached is not None and cached.result is not None:
            self.view = cached
            events: list[Event] = [ViewLoaded(cached)]
            events += [ExitReady(e, cached) for e in cached.result.exits]
            events.append(ViewFinished(cached))
            job = self._computing(cached)
            if job is not None:  # left while it ran: its exits still to come are shown
                self._view_gen = job.gen
                events.append(ViewBusy(True))
            # Made under an older mode or threshold: choose again, unless a re-choice
            # under the current one is already on its way (the view's choice is set when
            # it ends; starting it over threw away its run).
            pending = isinstance(job, RechooseJob) and \
                Choice(job.mode, job.policy) == self.choice
            if cached.choice is not None and cached.choice != self.choice and not pending:
                events += self.apply_choice()
            return events
        if item.status == FAILED and not self.engine_broken:
            return [ViewFailed(item.error)]
        run = self._running
        if run is not None and run.item is item:
            self._view_gen = run.job.gen  # already on its way: catch up
            events = [ViewBusy(True)]
            if run.view is not None:
                self.view = run.view
                events.append(ViewLoaded(run.view))
                events += [ExitReady(e, run.view) for e in run.exits]
            return events
        self._make_room()
        return self._pump()

    def enhance_if_changed(self, item: QueueItem) -> list[Event]:
        """``item``, opened again: if its photo changed on disk since its result was made
        (replaced, or edited and saved), that result is dropped and the photo enhanced
        again when shown (at once, when it is on screen); a photo that failed is tried
        again (the user may have repaired it); [] when neither."""
        if item.status == FAILED:
            return self._retry(item)
        if item is self.current:
            view = self.view
            return self._enhance_again(view) if view is not None and changed(view) else []
        cached = self.cache.peek(path_key(item.path))
        if cached is None or not changed(cached):
            return []
        return [*self._forget_changed(item, cached), *self._pump()]  # runs in its turn

    def _retry(self, item: QueueItem) -> list[Event]:
        """``item``, which failed, back to waiting and run again: at once when it is on
        screen, as Process again does (it stayed failed, "already in the queue")."""
        said = Message(_RETRIED.format(item.name))
        if item is self.current:
            return [said, *self.reprocess_current()]
        item.reset()
        return [ItemChanged(item), said, *self._pump()]

    def _forget_changed(self, item: QueueItem, view: ViewData) -> list[Event]:
        """Drops ``item``'s cached ``view``, made from the photo before it changed."""
        self.cache.pop(path_key(item.path))
        self._cancel_jobs_of(view)
        self._drop_session(view)
        item.reset()
        return [ItemChanged(item), Message(_CHANGED.format(item.name))]

    def _enhance_again(self, view: ViewData, said: str = "") -> list[Event]:
        """The viewed photo, changed on disk since ``view`` was made, enhanced again (its
        old result is not kept for a Stop to bring back: it is of another picture)."""
        events = self.reprocess_current()  # which stops the view's other jobs too
        self._before = None
        return [Message(said or _CHANGED.format(view.path.name), error=bool(said)), *events]

    def reprocess_current(self) -> list[Event]:
        """Run the viewed image again from exit 1 (the engine changed, or on request)."""
        item = self.current
        if item is None:
            return []
        shown = self.cache.pop(path_key(item.path))
        self._cancel_jobs_of(shown or self.view)  # its Compute all, re-choice: replaced
        if shown is not None and shown.result is not None and (
                item.status == DONE or self._kept_stop(item)):  # a Stop's exits too
            self._before = (item, copy.copy(item), shown)
        run = self._running
        previewed = run is not None and run.job.gen == self._view_gen  # its tiles shown
        if run is not None and run.item is item:
            run.job.cancel.set()
            run.superseded = True
        item.reset()
        self.view, self._view_gen = None, 0
        if shown is not None:
            self._drop_session(shown)
        self._make_room()  # the viewed photo first, as when it is selected
        # The old run's preview goes now, not at the new run's input (its label counted
        # the tiles of a run superseded meanwhile).
        dropped: list[Event] = [PreviewDropped()] if previewed else []
        return [ItemChanged(item), *dropped, *self._pump()]

    def _cancel_jobs_of(self, view: ViewData | None) -> None:
        """Stops the jobs computing ``view``'s exits or choosing its exit again (Compute
        all, a new mode or threshold): it is dropped, and off screen they ran on for
        nothing. A save in hand still ends."""
        for job in self._aux.values():
            if view is not None and job.view is view and not isinstance(job, SaveJob):
                job.cancel.set()

    def check_before_save(self) -> list[Event]:
        """Before Save asks where: if the viewed photo changed on disk since its result,
        that result is not saved under its name; the photo is enhanced again, and said so
        before any dialog ([] when it did not change; :meth:`save` checks again)."""
        view = self.view
        if view is None or not changed(view):
            return []
        return self._enhance_again(view, _NOT_SAVED.format(view.path.name))

    def _pop_aux(self, gen: int) -> ContinueJob | RechooseJob | SaveJob | None:
        """The view's job ``gen``, which has ended; its view's kept network state goes
        with it when the view is off screen by then."""
        aux = self._aux.pop(gen, None)
        if aux is not None:
            self._drop_session(aux.view)
        return aux

    def _drop_session(self, view: ViewData | None) -> None:
        """Frees the network state ``view`` keeps for computing its later exits quickly
        (about 1 GB for a 2 MP photo) once it is not on screen: a cached view shown again
        computes them with a new run. Kept while a job still works on the view."""
        if view is None or view is self.view or view.result is None \
                or not view.result.can_continue:
            return
        if any(job.view is view for job in self._aux.values()):
            return
        view.result.drop_session()  # not in its cache cost (ViewData.cost): nothing to update

    def _update_cost(self, view: ViewData) -> list[Event]:
        """``view``'s cache cost, after its exits changed, if the cache still holds it
        (after Process again its path's entry is another view: the new run's)."""
        key = path_key(view.path)
        if self.cache.peek(key) is view:
            return self._let_go(self.cache.update_cost(key, view.cost))
        return []

    def _cache_view(self, item: QueueItem, view: ViewData) -> list[Event]:
        """Caches ``view`` as ``item``'s."""
        return self._let_go(self.cache.put(path_key(item.path), view, view.cost))

    @staticmethod
    def _kept_stop(item: QueueItem) -> bool:
        """Whether ``item`` holds the exits a Stop kept (:meth:`_keep_stopped`)."""
        return item.stopped and bool(item.kept)

    def _holds_stop(self, key: str) -> bool:
        """Whether the cache's entry ``key`` is the exits a Stop kept: pinned. The user
        stopped the run to keep them, and the row says they are kept: browsing, or the
        background going on with the folder, must not drop them behind its back. Bounded:
        only these are pinned, one per Stop pressed, and they go (the oldest first) when
        they alone pass the cache's budget (:meth:`_let_go`)."""
        item = self.queue.at_key(key)
        return item is not None and self._kept_stop(item)

    def _let_go(self, evicted: list[str]) -> list[Event]:
        """The rows of the stopped photos whose kept exits the cache ``evicted`` no longer
        say they are kept; each stays stopped (the user stopped it: the background does
        not run it behind their back), as one stopped before its first exit. One on
        screen keeps them there until it is left (:meth:`select`)."""
        events: list[Event] = []
        for key in evicted:
            item = self.queue.at_key(key)
            if item is not None and item is not self.current and self._kept_stop(item):
                events += self._unstop(item)
        return events + self._pump() if events else []

    @staticmethod
    def _unstop(item: QueueItem) -> list[Event]:
        """``item``'s kept exits let go: stopped as before its first exit (viewed again,
        or Process again, it runs)."""
        item.kept = ()
        item.exit = item.score = item.time_ms = None
        return [ItemChanged(item)]

    def _forget_before(self, item: QueueItem) -> None:
        if self._before is not None and self._before[0] is item:
            self._before = None

    def _restore_before(self, item: QueueItem) -> list[Event]:
        """``item``'s result from before Process again, back on screen after the user
        stopped the new run; [] when there is none."""
        before = self._before
        if before is None or before[0] is not item:
            return []  # another photo's run ended (the background's): not this one's
        self._before = None
        _, fields, view = before
        for f in dataclasses.fields(item):
            setattr(item, f.name, getattr(fields, f.name))
        events: list[Event] = [ItemChanged(item), *self._cache_view(item, view)]
        if item is self.current:
            assert view.result is not None
            self.view, self._view_gen = view, 0
            events += [ViewLoaded(view), *(ExitReady(e, view) for e in view.result.exits),
                       ViewFinished(view), Message(f"Stopped: {item.name} keeps its earlier "
                                                   f"result")]
        return events

    def _computing(self, view: ViewData) -> ContinueJob | RechooseJob | None:
        """The newest job still computing ``view``'s exits (or waiting to), if any."""
        jobs = [j for j in self._aux.values() if isinstance(j, (ContinueJob, RechooseJob))
                and j.view is view and not j.cancel.is_set()]
        return jobs[-1] if jobs else None

    @property
    def view_running(self) -> bool:
        """Whether a job that makes the viewed image's exits runs (or waits to)."""
        run = self._running
        return (run is not None and run.item is self.current) or any(
            isinstance(j, (ContinueJob, RechooseJob)) and j.view is self.view
            for j in self._aux.values())

    def stop(self) -> list[Event]:
        """Stop computing the viewed image, after the step under way (a tile's exit, at
        most). The background leaves it alone; it runs again when the user asks (Process
        again, or, when no exit was made before the Stop, viewing it anew). The exits made
        before it are kept, shown and saveable (:meth:`_keep_stopped`). Other images go
        on."""
        if not self.view_running:
            return []
        run = self._running
        if run is not None and run.item is self.current:
            run.job.cancel.set()
            run.item.stopped = True
        for job in self._aux.values():
            if isinstance(job, (ContinueJob, RechooseJob)) and job.view is self.view:
                job.cancel.set()
        return [Message("Stopping after the current step…")]

    def engine_changed(self) -> list[Event]:
        """Device, backend or weights changed: forget the broken state and try again."""
        self.engine_broken = False
        for item in self.queue.items:
            if item.status == BLOCKED:
                item.status = WAITING
        return self.reprocess_current() + self._pump()

    def apply_choice(self) -> list[Event]:
        """Show the viewed image under the current exit mode and policy.

        No network run from exit 1: the exit is chosen again from the computed exits'
        signals, and the network continues from the cached stages only for exits beyond
        them (:mod:`rbqe_studio.choice`). A tiled image, or one read from saved outputs,
        has no signals for that and runs again.
        """
        view = self.view
        if view is None or view.result is None:
            run = self._running
            if self.current is not None and run is not None and run.item is self.current \
                    and isinstance(run.job, ProcessJob):
                return self.reprocess_current()  # running under the old choice: restart
            return []
        if not view.can_rechoose:
            return self.reprocess_current()
        for old in list(self._aux.values()):
            if isinstance(old, RechooseJob) and old.view is view:
                old.cancel.set()  # the newest choice wins; its job runs after this one
        self._make_room()
        job = RechooseJob(spec=self.spec, policy=self.policy, view=view, mode=self.mode)
        self._aux[job.gen] = job
        self._view_gen = job.gen
        self.submit(job)
        return [ViewBusy(True)]

    def setting_changed(self, name: str) -> list[Event]:
        """What a changed setting means for the session (the window has stored it)."""
        events: list[Event] = []
        if name == "weights_file":
            self.weights = self._weights()
            events.append(WeightsChanged(self.weights))
        if name in ENGINE_SETTINGS:
            events += self.engine_changed()
        elif name in CHOICE_SETTINGS:
            if name == "exit_mode":
                self.mode_override = None  # the user's choice beats --exit
            events.append(ChoiceChanged(self.choice))
            events += self._mark_stale()
            events += self.apply_choice()
        return events

    def _mark_stale(self) -> list[Event]:
        """Rows of images done under another choice say so: their exit is that choice's
        until they are viewed (they kept the old mode's exit without a word)."""
        events: list[Event] = []
        for item in self.queue.items:
            if item is self.current or item.status != DONE or item.report is not None:
                continue
            cached = self.cache.peek(path_key(item.path))
            stale = cached is None or cached.choice != self.choice
            if stale != item.stale:
                item.stale = stale
                events.append(ItemChanged(item))
        return events

    def compute_all(self) -> list[Event]:
        view = self.view
        if view is None or view.result is None or len(view.result.exits) >= NUM_EXITS:
            return []
        if any(isinstance(j, ContinueJob) for j in self._aux.values()):
            return []
        said = computing_text(view)  # before the job starts adding to the exits it names
        self._make_room()
        job = ContinueJob(spec=self.spec, policy=self.policy, view=view)
        self._aux[job.gen] = job
        self._view_gen = job.gen
        self.submit(job)
        return [ViewBusy(True), Message(said)]

    def save_job(self, exits: list[int], targets: dict[int, Path] | None = None,
                 folder: Path | None = None, agreed: frozenset[Path] = frozenset()
                 ) -> SaveJob | None:
        """The job that saves the viewed image's ``exits`` (None: no result to save)."""
        view = self.view
        if view is None or view.result is None:
            return None
        s = self.settings
        return SaveJob(spec=self.spec, policy=self.policy, view=view, exits=exits,
                       had=len(view.result.exits),
                       targets=targets or {}, folder=folder, agreed=agreed, suffix=s.suffix,
                       fmt=s.output_format, quality=s.quality, keep_metadata=s.keep_metadata,
                       strip_gps=s.strip_gps)

    def others_at(self, exits: list[int], folder: Path) -> list[Path]:
        """The files that saving ``exits`` into ``folder`` would replace and that are not
        rbqe's same result of the viewed photo (:func:`rbqe_studio.saving.others`)."""
        job = self.save_job(exits, folder=folder)
        return [] if job is None else saving.others(job, OutputNotes())

    def save(self, exits: list[int], targets: dict[int, Path] | None = None,
             folder: Path | None = None, agreed: frozenset[Path] = frozenset()
             ) -> list[Event]:
        job = self.save_job(exits, targets, folder, agreed)
        if job is None:
            return []
        if changed(job.view):  # its pixels are of the photo as it was: not under its name
            return self._enhance_again(job.view, _NOT_SAVED.format(job.view.path.name))
        self._make_room()
        self._aux[job.gen] = job
        self.submit(job)
        return [Message(f"Saving exit {exits[0]}…" if len(exits) == 1
                        else f"Saving {len(exits)} exits…")]

    def open_batch_results(self, reports: Sequence[ItemReport]) -> list[Event]:
        """Queue a batch's images, marked with what the batch did; the viewer then reads
        their saved outputs instead of running the network again."""
        if not reports:
            return []
        added = self._add([r.input for r in reports])
        events: list[Event] = [ItemsAdded(added)] if added else []
        for r in reports:
            item = self.queue.get(Path(r.input))
            if item is None:
                continue
            item.outputs = [Path(p) for p in r.outputs.values()]
            if item.status in (WAITING, BLOCKED, FAILED) and saved_exits(r):
                if self._forget_stopped(item):  # the batch's whole result instead, at once
                    self._make_room()
                    events += [ViewBusy(True), Message(f"Reading the batch's outputs of "
                                                       f"{item.name}…")]
                item.status, item.error, item.report = DONE, "", r
                item.exit = r.exit
                item.score = r.scores.get(str(r.exit)) \
                    if r.exit and score_decides(r.exit_reason) else None
                item.time_ms = r.times_ms.get("total") if r.times_ms else None
            events.append(ItemChanged(item))
        events += self._pump()
        first = self.queue.get(Path(reports[0].input))
        if first is not None:
            events.append(SelectItem(first))
        return events

    def _forget_stopped(self, item: QueueItem) -> bool:
        """Lets go of the exits ``item`` kept from a Stop (:meth:`_keep_stopped`), and of
        its stop: its view is made anew (from a batch's outputs, say). Returns whether
        they were the view on screen (the window still shows them)."""
        if not item.stopped:
            return False
        item.stopped, item.kept = False, ()
        key = path_key(item.path)
        kept = self.cache.peek(key)
        if kept is None or kept.stopped_after is None:
            return False
        self.cache.pop(key)
        self._cancel_jobs_of(kept)  # its Compute all
        if kept is not self.view:
            return False
        self.view, self._view_gen = None, 0
        return True

    def hold_previews(self, nbytes: float) -> list[Event]:
        """What the window's previews of the photo on screen hold now (``nbytes``: a
        tiled run's preview, the difference heat map; 0: none), counted in the cache's
        budget: a 24 MP photo's are 128 MB each, which the budget did not see, so the
        cache kept its 1.5 GB of other photos beside them. Older photos make room (their
        rows as when the cache lets them go: :meth:`_let_go`)."""
        return self._let_go(self.cache.hold(nbytes))

    def set_background(self, on: bool) -> list[Event]:
        """Process waiting images when nothing else runs (off while a batch has the CPU)."""
        self.background = on
        return self._pump() if on else []

    def remove(self, item: QueueItem) -> list[Event]:
        """Takes ``item`` out of the queue: its run stopped (a save in hand still ends), its
        result forgotten; the next image waiting goes on. [] also when it is not queued
        (:meth:`Queue.key_of` tells)."""
        key = self.queue.key_of(item)  # its path's key now may be another (a link moved)
        if key is None:
            return []
        run = self._running
        if run is not None and run.item is item:
            run.job.cancel.set()
        events: list[Event] = []
        view = self.view if item is self.current else None
        if item is self.current:
            self.current, self.view, self._view_gen = None, None, 0
            events.append(ViewBusy(False))
        self._forget_before(item)
        cached = self.cache.pop(key)
        for old in {id(v): v for v in (view, cached) if v is not None}.values():
            self._cancel_jobs_of(old)  # off screen too: its Compute all, its re-choice
            self._drop_session(old)
        self.queue.remove(item)
        return events + self._pump()

    def remove_all(self) -> list[Event]:
        self._cancel_all()
        self._before = None
        self.queue.clear()
        self.cache.clear()
        self.current, self.view, self._view_gen = None, None, 0
        # Nothing feeds the view any more, and the cancelled jobs' ends are dropped: the
        # view is not busy from now on (or the progress bar would stay up for ever).
        return [ViewBusy(False)]

    def _cancel_all(self) -> None:
        if self._running is not None:
            self._running.job.cancel.set()
        for job in self._aux.values():
            job.cancel.set()

    # -- scheduling ----------------------------------------------------------------
    def _make_room(self) -> None:
        """Cancel a background job so that work for the viewed image starts sooner."""
        if self._running is not None and self._running.item is not self.current:
            self._running.job.cancel.set()

    def _pump(self) -> list[Event]:
        if self._running is not None:
            return []
        item = self.current
        if item is not None and (self.view is None or self.view.result is None) and \
                item.status in (WAITING, DONE, BLOCKED) and not item.stopped:
            if self.engine_broken and self.view is not None and item.report is None:
                return []  # its input is on screen; the model is what is missing
            target: QueueItem | None = item
        elif self.background and not self.engine_broken and len(self.queue):
            start = self.queue.index(item) + 1 if item is not None else 0
            target = self.queue.next_waiting(start)
        else:
            target = None
        if target is None:
            return []
        outputs = saved_exits(target.report) if target.report is not None else {}
        job: ProcessJob | LoadOutputsJob
        if outputs and all(p.is_file() for p in outputs.values()):
            job = LoadOutputsJob(spec=self.spec, policy=self.policy, path=target.path,
                                 report=target.report, outputs=outputs)
        else:
            job = ProcessJob(spec=self.spec, policy=self.policy, path=target.path,
                             mode=self.mode)
        self._running = Running(job, target, target.status)
        target.status, target.progress = RUNNING, None
        events: list[Event] = [ItemChanged(target)]
        if target is self.current:
            self._view_gen = job.gen
            events.append(ViewBusy(True))
        self.submit(job)
        return events

    def _job_done(self) -> list[Event]:
        self._running = None
        return self._pump()

    def _mine(self, gen: int) -> Running | None:
        run = self._running
        return run if run is not None and run.job.gen == gen else None

    # -- worker reports --------------------------------------------------------------
    def on_loaded(self, gen: int, view: ViewData) -> list[Event]:
        run = self._mine(gen)
        if run is not None:
            run.view = view
        if gen == self._view_gen:
            self.view = view
            return [ViewLoaded(view)]
        return []

    def on_exit(self, gen: int, e: ExitResult, view: ViewData) -> list[Event]:
        run = self._mine(gen)
        if run is not None:
            run.exits.append(e)
        return [ExitReady(e, view)] if gen == self._view_gen else []

    def on_tile(self, gen: int, patch: TilePatch) -> list[Event]:
        """A tile of job ``gen``'s tiled run is done: shown only while that run makes the
        viewed photo's view (a background photo's, or one the user left, is dropped)."""
        run = self._mine(gen)
        if run is None or run.view is None or gen != self._view_gen:
            return []
        return [TileReady(patch, run.view)]

    def on_progress(self, gen: int, stage: str, done: int, total: int) -> list[Event]:
        events: list[Event] = []
        run = self._mine(gen)
        if run is not None and total > 0:  # the queue row says how far, in the background too
            run.item.progress = done / total
            events.append(ItemChanged(run.item))
        if gen == self._view_gen:
            events.append(Progress(stage, done, total, self.pace.left_s(gen, stage, done, total),
                                   self._again(gen)))
        return events

    def _again(self, gen: int) -> str:
        """The exits job ``gen`` makes by running a tiled picture again ("exits 1–4"), so
        that its progress line does not read as the first run's; "" for any other job."""
        job = self._aux.get(gen)
        if not isinstance(job, (ContinueJob, RechooseJob)) or job.view is None:
            return ""
        r = job.view.result
        if r is None or not r.tiled:
            return ""
        missing = job.view.missing_exits
        return exits_text(missing) if missing else ""

    def on_finished(self, gen: int, payload: object) -> list[Event]:
        aux = self._pop_aux(gen)
        if isinstance(aux, SaveJob):
            assert isinstance(payload, SaveOutcome)
            return self._saved(aux, payload)
        if aux is not None:  # continued or chosen again: the same view, more or re-chosen
            assert isinstance(payload, ViewData) and payload.result is not None
            events = self._update_cost(payload)
            item = self.queue.get(payload.path)
            key = path_key(payload.path)
            kept = item is not None and self._kept_stop(item) and (
                self.cache.peek(key) is payload or payload is self.view)  # a Stop's exits
            if kept and payload.stopped_after is None:  # chosen now: a new mode, threshold
                assert item is not None
                item.stopped, item.kept = False, ()
                self._mark_done(item, payload)
                events.append(ItemChanged(item))
                if self.cache.peek(key) is not payload:  # let go while on screen: back
                    events += self._cache_view(item, payload)
            elif kept:  # Compute all: more exits, still none chosen
                assert item is not None
                item.kept = tuple(e.exit for e in payload.result.exits)
                events.append(ItemChanged(item))
            elif item is not None and item.status == DONE:
                self._mark_done(item, payload)
                events.append(ItemChanged(item))
            if gen == self._view_gen:
                events += [ViewBusy(False), ViewFinished(payload)]
            return events
        run = self._mine(gen)
        if run is None:
            return []
        assert isinstance(payload, ViewData) and payload.result is not None
        item = run.item
        if run.superseded:  # ended before it saw its cancel: of the choice before the newest
            return self._superseded_end(item)
        if isinstance(run.job, LoadOutputsJob) and changed(payload):
            # A batch's outputs of the photo as it was (replaced since): the photo as it is
            # is enhanced instead; they were shown beside it, and saved under its name.
            log.info("%s changed since its batch; enhancing it again", item.path)
            return self._compute_instead(item, gen, _CHANGED.format(item.name))
        self._forget_before(item)
        self._mark_done(item, payload)
        item.stopped = False  # a Stop that came after the run's last cancel check: moot
        events = [ItemChanged(item)]
        if gen != self._view_gen:
            self._drop_session(payload)  # done in the background: not on screen
        if self.queue.get(item.path) is item:  # not taken out of the queue meanwhile
            events += self._cache_view(item, payload)
        if gen == self._view_gen:
            self.view = payload
            events += [ViewBusy(False), ViewFinished(payload)]
        return events + self._job_done()

    def _compute_instead(self, item: QueueItem, gen: int, said: str) -> list[Event]:
        """``item``'s batch outputs, read back by job ``gen``, not shown (unreadable, or
        of the photo as it was): the photo is enhanced instead, ``said``."""
        item.reset()
        events = [ItemChanged(item), Message(said)]
        if gen == self._view_gen:
            self.view, self._view_gen = None, 0
        return events + self._job_done()

    @staticmethod
    def _mark_done(item: QueueItem, view: ViewData) -> None:
        r = view.result
        assert r is not None
        item.status, item.error, item.stale = DONE, "", False
        item.exit = r.chosen
        item.score = r.exit_result(r.chosen).score if score_decides(r.exit_reason) else None
        if not view.saved:  # read back from a batch: its report has the time
            item.time_ms = view.chosen_cost()[0]

    def _saved(self, job: SaveJob, outcome: SaveOutcome) -> list[Event]:
        view = job.view
        assert view is not None and view.result is not None
        paths = outcome.paths
        events: list[Event] = []
        item = self.queue.get(view.path)
        if len(view.result.exits) > job.had:  # Save all computed the exits it lacked
            events += self._update_cost(view)
            if item is not None and self._kept_stop(item) and view.stopped_after is not None:
                item.kept = tuple(e.exit for e in view.result.exits)  # a Stop's, and these
            if view is self.view:  # shown, as Compute all would (the cards said "not needed")
                events.append(ViewFinished(view))
        # After the view's own line ("exit 3 of 5..."), so that the status bar is left
        # saying where the files went and what they could not keep
        events.append(Saved(paths, outcome.warnings))
        if item is not None:
            item.outputs = [*item.outputs, *(p for p in paths if p not in item.outputs)]
            events.append(ItemChanged(item))
        return events

    def on_failed(self, gen: int, message: str) -> list[Event]:
        aux = self._pop_aux(gen)
        if aux is not None:
            events: list[Event] = [ViewBusy(False)] if gen == self._view_gen else []
            what = "Could not save: " if isinstance(aux, SaveJob) else ""
            return events + [Message(what + message, error=True)]
        run = self._mine(gen)
        if run is None:
            return []
        item = run.item
        if run.superseded:  # the newest choice's run will say, if the file is at fault
            return self._superseded_end(item)
        if isinstance(run.job, LoadOutputsJob):
            # The saved outputs are gone or unreadable: compute the image instead.
            log.info("could not read the saved outputs of %s: %s", item.path, message)
            return self._compute_instead(item, gen, f"{item.name}: the saved output could "
                                                    f"not be read ({message}); enhancing "
                                                    f"it again")
        self._forget_before(item)  # the file changed since: its new state stands
        item.status, item.error = FAILED, message
        events = [ItemChanged(item)]
        if gen == self._view_gen:
            events += [ViewBusy(False), ViewFailed(message)]
        return events + self._job_done()

    def on_cancelled(self, gen: int, partial: EnhanceResult | None = None) -> list[Event]:
        """Job ``gen`` ended cancelled; ``partial``: the exits its run made before (the
        worker's :func:`rbqe_studio.worker.stopped_result`), kept only when the user
        stopped it (:meth:`_keep_stopped`)."""
        aux = self._pop_aux(gen)
        if aux is not None:
            return self._stopped_more(aux) if gen == self._view_gen else []
        run = self._mine(gen)
        if run is None:
            return []
        item = run.item
        if run.superseded:
            return self._superseded_end(item)
        item.status = run.old_status if run.old_status in (WAITING, DONE, BLOCKED) else WAITING
        events: list[Event] = [ItemChanged(item)]
        if gen == self._view_gen:
            events.append(ViewBusy(False))
        restored = self._restore_before(item)  # Process again stopped: the earlier result
        if not restored and item.stopped and run.view is not None and partial is not None:
            events += self._keep_stopped(item, run.view, partial, gen)
        elif not restored and item.status == WAITING:
            item.exit = item.score = item.time_ms = None  # an earlier Stop's, let go since
            item.kept = ()
        return events + restored + self._job_done()

    def _keep_stopped(self, item: QueueItem, view: ViewData, partial: EnhanceResult,
                      gen: int) -> list[Event]:
        """The exits job ``gen`` made of ``item`` before the user stopped it (``partial``),
        kept as its ``view``'s result (:attr:`ViewData.stopped_after`: no exit chosen),
        cached and shown as a finished result is, so that they can be viewed and saved.
        The item stays stopped: the background leaves it; Process again runs it from
        exit 1. (Another cancel, a background job making room or a photo left while it
        ran, keeps nothing: the view gets no result, and the image runs again in its
        turn.) Set here, in the GUI thread: the worker never writes a cancelled run's
        exits on its view, which may be on screen by then (viewed again meanwhile)."""
        view.result, view.other_ms = partial, other_ms(partial)
        view.stopped_after = partial.chosen
        item.status, item.exit, item.score = WAITING, view.stopped_after, None
        item.kept = tuple(e.exit for e in partial.exits)
        item.time_ms = view.chosen_cost()[0]
        events: list[Event] = []
        if self.queue.get(item.path) is item:
            events += self._cache_view(item, view)
        if gen != self._view_gen:
            return events
        self.view = view
        return [*events, ViewFinished(view)]

    def _stopped_more(self, job: ContinueJob | RechooseJob | SaveJob) -> list[Event]:
        """The end of ``job``, which fed the view, cancelled: the user pressed Stop (any
        other cancel has moved the view on first). Said so ("Stopping…" stayed for good),
        and its result shown again as it is: the choice it had (a new mode's or
        threshold's is set whole or not at all: :func:`rbqe_studio.worker.choose`), with
        the exits computed before the Stop (the cards said "not computed" where they
        said "not needed", and a re-choice's exits were left out of the cache's cost and
        the stopped row's kept exits)."""
        view = job.view
        if view is None or view.result is None or view is not self.view:
            return [ViewBusy(False)]
        r = view.result
        if view.stopped_after is not None:
            kept = f"keeps {exits_text(e.exit for e in r.exits)}, none chosen"
        elif isinstance(job, RechooseJob):  # the new choice needed exits not made yet
            kept = f"keeps exit {r.chosen}, as chosen before"
        else:
            kept = f"keeps exit {r.chosen}"
        events = self._update_cost(view)
        item = self.queue.get(view.path)
        if item is not None and self._kept_stop(item) and view.stopped_after is not None:
            item.kept = tuple(e.exit for e in r.exits)
            events.append(ItemChanged(item))
        return [*events, ViewBusy(False), ViewFinished(view),
                Message(f"Stopped: {view.path.name} {kept}")]

    def _superseded_end(self, item: QueueItem) -> list[Event]:
        """The end of ``item``'s run cancelled to run it again under the newest choice
        (reprocess_current reset it): the next run starts. Unless the user pressed Stop
        meanwhile: then as a Stop of that rerun, the result from before back on screen
        (the busy bar stayed up for good, and the view blank)."""
        events: list[Event] = [ItemChanged(item)]
        if item.stopped:
            if item is self.current:
                events.append(ViewBusy(False))
            events += self._restore_before(item)
        return events + self._job_done()

    def on_engine_ready(self, info: dict) -> list[Event]:
        self.engine_broken = False
        return [EngineInfo(info)]

    def on_engine_failed(self, gen: int, message: str) -> list[Event]:
        """The model could not be built: the image is not to blame. Its input stays on
        screen and it waits, marked BLOCKED, until the model or device changes."""
        self.engine_broken = True
        self._pop_aux(gen)
        events: list[Event] = []
        run = self._mine(gen)
        if run is not None:
            run.item.status, run.item.error = BLOCKED, message
            run.item.blocked_by = engine_blame(self.weights)
            events.append(ItemChanged(run.item))
            self._running = None
        return events + [ViewBusy(False), EngineError(message)]
