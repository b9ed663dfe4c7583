"""All inference off the GUI thread: a QObject worker living in a QThread.

Every job carries a generation id (``gen``) and its own cancel flag. The worker emits
``progress``, ``exit_computed``, ``finished`` and ``failed`` (plus ``cancelled``) tagged
with that id; receivers drop what belongs to a generation they no longer want. Pixels
are converted to :class:`rbqe_studio.convert.Picture` here, in the worker thread, so the GUI
thread only ever paints; so are a tiled photo's tiles as each is done (``tile_done``, a
:class:`rbqe_studio.jobs.TilePatch`), which the window pastes over the input shown.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QSize, QThread, Signal, Slot

from rbqe.backends import openvino_installed, recorded_auto_choice
from rbqe.batch import BatchEvents, ItemReport, run_batch, weights_identity
from rbqe.engine import Enhancer, EnhanceResult, ExitResult, TileDone, pick_device
from rbqe.errors import Cancelled, RBQEError
from rbqe.exit_policy import Decision, ExitMode, ExitPolicy, JpegPrior, parse_exit_mode
from rbqe.io import (
    OutputNotes,
    load_image,
    made_with,
    quantize,
    retract_output,
    save_like,
    source_identity,
    write_noted,
)
from rbqe.io.diagnostics import said_once, said_while
from rbqe.jpeg_constraint import consistent
from rbqe.model import NUM_EXITS, RBQENet
from rbqe.weights import default_weights_path, load_weights
from rbqe_studio.choice import MoreExits, rechoose
from rbqe_studio.convert import Display, Picture, pyramid, to_qimage
from rbqe_studio.jobs import (
    BatchJob,
    BatchOutcome,
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
)
from rbqe_studio.saving import may_replace, plan, refuse_others, source_noted
from rbqe_studio.state import other_ms

log = logging.getLogger(__name__)

THUMB = QSize(176, 118)
EnhancerFactory = Callable[[EngineSpec], Enhancer]


def default_factory(spec: EngineSpec) -> Enhancer:
    return Enhancer(spec.weights, device=spec.device, backend=spec.backend)


def exports_openvino(spec: EngineSpec) -> bool:
    """Whether :func:`default_factory` exports OpenVINO's stages for ``spec`` (about a
    minute on a 2-core CPU, once per weights file): OpenVINO asked for, or ``auto`` on the
    CPU with no choice measured yet (it times OpenVINO too) or OpenVINO measured fastest
    (:mod:`rbqe.backends.choose`); and not exported for these weights before. False when
    unsure: building the enhancer then says what is wrong."""
    if spec.backend == "torch" or not openvino_installed():
        return False
    try:
        if pick_device(spec.device).type != "cpu":
            return False
        net, _ = load_weights(spec.weights or default_weights_path())
        if spec.backend == "auto":
            choice = recorded_auto_choice(net)
            if choice is not None and choice.get("backend") != "openvino":
                return False  # torch, as measured before: OpenVINO is not built
        return not openvino_exported(net)
    except (RBQEError, OSError, ValueError):
        return False


def openvino_exported(net: RBQENet) -> bool:
    """Whether ``net``'s stages are in OpenVINO's cache, where
    :class:`rbqe.backends.openvino.OpenVINOBackend` exports them on its first use."""
    from rbqe.backends.openvino import stages_exported  # OpenVINO is an optional extra

    return stages_exported(net)


def with_policy(enh: Enhancer, policy: ExitPolicy) -> Enhancer:
    """``enh`` under another exit policy, for one job: a shallow copy sharing the network
    and backend, so the long-lived enhancer is never changed per job."""
    job_enh = copy.copy(enh)
    job_enh.policy = policy
    return job_enh


class EngineUnavailable(Exception):
    """The enhancer could not be built (missing weights, unusable device...)."""


class StoppedRun(Cancelled):
    """A run cancelled after some of its exits: ``partial`` holds them
    (:func:`stopped_result`), sent with the ``cancelled`` signal."""

    def __init__(self, partial: EnhanceResult) -> None:
        super().__init__("cancelled")
        self.partial = partial


class Worker(QObject):
    """Runs jobs one after another in its thread."""

    progress = Signal(int, str, int, int)  # gen, stage, done, total
    loaded = Signal(int, object)  # gen, ViewData (input only)
    exit_computed = Signal(int, object, object)  # gen, ExitResult, ViewData
    tile_done = Signal(int, object)  # gen, TilePatch: a tiled photo's tile, as it is done
    finished = Signal(int, object)  # gen, ViewData | SaveOutcome | BatchOutcome
    failed = Signal(int, str)  # gen, one-line message
    # gen, and the exits a run made before it was cancelled (an EnhanceResult,
    # :func:`stopped_result`) or None: the session keeps them for a Stop only. Sent, not
    # written on the job's view, which the GUI thread may be showing by then.
    cancelled = Signal(int, object)
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
        """The enhancer for ``job``: built once per engine spec, under the job's policy."""
        if self._enhancer is None or self._spec != job.spec:
            self._enhancer = None  # free the old one before building the new one
            # Seconds (the weights, a first timing of the backends) or, for OpenVINO's
            # first use, a minute or two of export and compile: said, not a silent stall
            # ("export": said with the minute). Another factory (tests') builds no OpenVINO.
            export = self._factory is default_factory and exports_openvino(job.spec)
            self.progress.emit(job.gen, "export" if export else "engine", 0, 0)
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
                                    # the threshold rule's, which the app shows with
                                    # it (the default policy's, a gate's, said "from
                                    # exit 2" of a threshold applied from exit 3)
                                    "min_exit": int(info.min_exit),
                                    "policy": info.policy.describe(),
                                    "rule": info.policy.rule})
        # The job carries the policy: a custom threshold means the assessor rule with it,
        # none the weights' default policy (which may be the learned gate).
        return with_policy(self._enhancer, job.policy.resolve(self._enhancer.info))

    @Slot(object)
    def run(self, job: Job) -> None:
        if job.cancel.is_set():
            self.cancelled.emit(job.gen, None)
            return
        try:
            if isinstance(job, ProcessJob):
                payload: Any = self._process(job)
            elif isinstance(job, LoadOutputsJob):
                payload = self._load_outputs(job)
            elif isinstance(job, ContinueJob):
                payload = self._continue(job)
            elif isinstance(job, RechooseJob):
                payload = self._rechoose(job)
            elif isinstance(job, SaveJob):
                payload = self._save(job)
            elif isinstance(job, BatchJob):
                payload = self._batch(job)
            else:  # pragma: no cover
                raise TypeError(type(job).__name__)
        except Cancelled as exc:
            self.cancelled.emit(job.gen, exc.partial if isinstance(exc, StoppedRun) else None)
        except EngineUnavailable as exc:  # missing weights, bad device: the app stays usable
            self.engine_failed.emit(job.gen, str(exc))
        except RBQEError as exc:
            # INFO: the log file keeps every failure; the window says (and logs as a
            # warning) those it shows, so a failed photo was on stderr twice.
            log.info("%s", exc)
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
            prepare_exit(view, e)
            self.exit_computed.emit(job.gen, e, view)
        return on_exit

    def _load_input(self, job: ProcessJob | LoadOutputsJob) -> ViewData:
        self.progress.emit(job.gen, "load", 0, 1)
        # Before the read, as a batch takes it: what its saves note is then never a newer
        # version than the one enhanced (not at save time: the file may change meanwhile).
        source_id = source_identity(job.path)
        loaded = load_image(job.path, max_pixels=job.max_pixels)
        if job.cancel.is_set():
            raise Cancelled("cancelled")
        display = Display.of(loaded.icc_profile, loaded.pixels.shape[2], loaded.alpha,
                             job.path.name)
        pic = Picture.from_array(loaded.pixels, display)
        view = ViewData(job.path, loaded, pic, pic.thumbnail(THUMB), display=display,
                        source_id=source_id)
        self.loaded.emit(job.gen, view)  # the input is shown even if the model is missing
        return view

    def _process(self, job: ProcessJob) -> ViewData:
        view = self._load_input(job)
        enh = self.enhancer(job)
        computed: dict[int, ExitResult] = {}  # by exit: an out-of-memory retry reports again
        shown = self._exit_cb(job, view)

        def on_exit(e: ExitResult) -> None:
            shown(e)
            computed[e.exit] = e

        started = time.perf_counter()
        try:
            view.result = enh.enhance(
                view.loaded.pixels, job.mode, on_exit=on_exit,
                progress=lambda stage, done, total: self.progress.emit(job.gen, stage, done,
                                                                       total),
                cancel=job.cancel.is_set, keep_session=True, prior=JpegPrior.of(view.loaded),
                full_precision=view.loaded.bit_depth == 16,
                on_tile=self._tile_cb(job, view))
        except Cancelled as exc:
            if computed:  # the exits made before a Stop stay saveable (SessionModel.on_cancelled)
                raise StoppedRun(stopped_result(enh, view, job.mode, list(computed.values()),
                                                (time.perf_counter() - started) * 1000)) from exc
            raise
        view.other_ms = other_ms(view.result)
        view.choice = Choice(job.mode, job.policy)
        return view

    def _tile_cb(self, job: ProcessJob, view: ViewData) -> Callable[[TileDone], None]:
        """What a tiled run of ``job`` does with each tile done: converted for the preview
        and sent (``tile_done``) only while its photo is on screen (``job.shown``), with
        a base to paste over when it is the first since the photo was put on screen (or
        the run's first, or a retry's). A failure here never fails the photo: it is
        logged once and the run goes on without previews."""
        sent_in = [0]  # the showing (Shown.times) the last tile sent belongs to; 0: none
        off = [False]

        def on_tile(t: TileDone) -> None:
            times = job.shown.times  # read first: a showing begun after it only costs a base
            if off[0] or not job.shown.is_set():
                return
            try:
                patch = tile_patch(view, t, base=t.done == 1 or sent_in[0] != times)
                self.tile_done.emit(job.gen, patch)
            except Exception:
                off[0] = True
                log.exception("no more preview of %s: its tile %d could not be shown (the "
                              "photo is still enhanced)", job.path.name, t.done)
                return
            sent_in[0] = times
        return on_tile

    def _load_outputs(self, job: LoadOutputsJob) -> ViewData:
        """The input and the outputs a batch saved, read back instead of computed."""
        assert job.report is not None and job.outputs
        view = self._load_input(job)
        notes = OutputNotes()  # the outputs' notes read before the outputs are
        view.saved_from = {k: source_noted(p, job.path, notes) for k, p in job.outputs.items()}
        result = result_from_report(job.report, view, {
            k: load_image(p, max_pixels=job.max_pixels).pixels for k, p in job.outputs.items()})
        view.saved = dict(job.outputs)
        on_exit = self._exit_cb(job, view)
        for e in result.exits:
            on_exit(e)
        view.result = result
        return view

    def _continue(self, job: ContinueJob, up_to: int = 5) -> ViewData:
        view = job.view
        assert view is not None and view.result is not None
        enh = self.enhancer(job)
        self._more_exits(job, view, enh, up_to)
        if view.stopped_after is not None and not view.missing_exits and view.can_rechoose:
            choose_stopped(view, enh.policy, job.policy)
        return view

    def _more_exits(self, job: Job, view: ViewData, enh: Enhancer, up_to: int) -> None:
        """Compute the exits ``view`` lacks, up to ``up_to``: those after its last one
        from its kept state, or else every one it lacks by a new run of the whole
        picture (noted in :attr:`ViewData.extra_runs`, with what that run cost)."""
        result = view.result
        assert result is not None
        if result.can_continue:
            started = time.perf_counter()
            try:
                enh.continue_exits(result, up_to, on_exit=self._exit_cb(job, view),
                                   cancel=job.cancel.is_set)
            except Cancelled:
                # continue_exits adds its time to the result's only when it ends; the
                # exits it made before a Stop stay, and so does what they cost (Computed
                # read "exits 1–5: 97 ms" beside exit 5's card "Σ 136 ms")
                result.total_ms += (time.perf_counter() - started) * 1000
                raise
            return
        # Tiled (or no kept state): the only way to the other exits is a new pass.
        fresh = enh.enhance(view.loaded.pixels, "all" if up_to >= 5 else up_to,
                            cancel=job.cancel.is_set,
                            progress=lambda s, d, t: self.progress.emit(job.gen, s, d, t),
                            prior=JpegPrior.of(view.loaded),
                            full_precision=view.loaded.bit_depth == 16)
        # Each exit's pictures made before it joins the result (the window may show the
        # result's exits at any time), and the run noted before they are shown: their Σ
        # are this run's.
        for e in view.add_run(fresh, up_to, prepare=lambda e: prepare_exit(view, e)):
            self.exit_computed.emit(job.gen, e, view)

    def _rechoose(self, job: RechooseJob) -> ViewData:
        view = job.view
        assert view is not None and view.result is not None
        enh = self.enhancer(job)
        r = view.result
        walks = isinstance(parse_exit_mode(job.mode), str)  # auto or all: exit by exit

        def more(k: int) -> None:
            # Without a kept state each call is a new run from exit 1 (three runs for
            # exits 3-5): a walk gets every exit in one run; a forced exit needs one anyway.
            again = not r.can_continue and not r.tiled
            self._more_exits(job, view, enh, NUM_EXITS if walks and again else k)

        choose(view, enh.policy, Choice(job.mode, job.policy), more)
        return view

    def _save(self, job: SaveJob) -> SaveOutcome:
        """Writes the exits, each noted in its folder's output log (:mod:`rbqe_studio.saving`),
        with what the files could not keep (the library's warnings, said once each).

        Save all (no ``targets``) first makes sure it replaces no file that is not its
        own or agreed to (``job.agreed``); a single Save writes the name the user chose
        (the dialog asked).
        """
        view = job.view
        assert view is not None and view.result is not None
        have = {e.exit for e in view.result.exits}
        if any(k not in have for k in job.exits):
            self._more_exits(job, view, self.enhancer(job), max(job.exits))
        notes = OutputNotes()
        planned = plan(job, notes)
        # A name the user chose in the file dialog (which asked before replacing) is
        # written as it is; names of ours replace only our own files, or those the user
        # agreed to replace when asked.
        refuse_others(view.path, [(t, r) for k, t, r in planned if k not in job.targets],
                      notes, job.agreed)
        written = []
        # In this thread, where the files are written (said_while keeps its own thread's
        # lines): the window tells the user, as the batch's report does
        with said_while() as said:
            for n, (k, target, result) in enumerate(planned):
                if job.cancel.is_set():
                    raise Cancelled("cancelled")
                self.progress.emit(job.gen, "save", n, len(job.exits))
                replace = (k in job.targets or target in job.agreed
                           or may_replace(target, view.path, result, notes))
                written.append(self._save_one(job, view, k, target, result, notes,
                                              replace=replace))
        return SaveOutcome(written, said_once(said, [t for _, t, _ in planned] + written))

    def _save_one(self, job: SaveJob, view: ViewData, k: int, target: Path, result: str | None,
                  notes: OutputNotes, *, replace: bool) -> Path:
        """Saves exit ``k`` at ``target``, noted as ``result`` (None: not noted, and an
        earlier note of the name taken back, so that it cannot vouch for this file)."""
        assert view.result is not None
        earlier = notes.get(target) if os.path.lexists(target) else None

        def save() -> Path:
            assert view.result is not None
            return save_like(target, view.result.exit_result(k).image, view.loaded,
                             fmt=None if k in job.targets else job.fmt,  # a chosen name sets it
                             quality=job.quality, keep_metadata=job.keep_metadata,
                             strip_gps=job.strip_gps, replace=replace)

        if result is not None:  # the save matters more than its note: a folder's log
            # that cannot be written leaves the file unnoted (a later batch then calls it
            # someone else's) rather than unsaved
            policy = view.result.policy
            rule = (policy.words_beside(self.enhancer(job).info.policy)
                    if result == "auto" and policy else None)
            made = made_with(keep_metadata=job.keep_metadata, strip_gps=job.strip_gps,
                             fmt=target.suffix if k in job.targets else job.fmt,
                             quality=job.quality, rule=rule,
                             weights=weights_identity(self.enhancer(job)))
            return write_noted(target, view.path, result, save, earlier=earlier,
                               must_note=False, made=made, source_id=view.made_from(k))
        path = save()
        if earlier is not None and earlier.token is not None:
            retract_output(target, earlier.source, earlier.token)
        return path

    def _batch(self, job: BatchJob) -> BatchOutcome:
        assert job.options is not None
        enh = self.enhancer(job)
        reports: list[ItemReport] = []
        total = [0]

        def on_start(n: int) -> None:
            total[0] = n
            self.batch_started.emit(job.gen, n)

        def on_done(i: int, item: ItemReport) -> None:
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
        return BatchOutcome(summary, reports, summary.cancelled or job.cancel.is_set(), total[0])


def prepare_exit(view: ViewData, e: ExitResult) -> None:
    """Makes exit ``e``'s pictures for ``view`` (its card's thumbnail too), and keeps
    its image quantised as it is saved."""
    e.image = consistent(e.image, view.loaded)  # a 4:4:4 JPEG's: as saved
    pic = Picture.from_array(e.image, view.display)  # shown as the input is
    view.pictures[e.exit] = pic
    view.thumbs[e.exit] = pic.thumbnail(THUMB)
    # Kept at the depth it is saved at, which writes the same file: a 24 MP exit is
    # 72 MB as uint8, 288 MB as float32 (five of them with "all exits").
    e.image = quantize(e.image, view.loaded.bit_depth)


def tile_patch(view: ViewData, tile: TileDone, *, base: bool = False) -> TilePatch:
    """``tile`` of ``view``'s photo, ready to paste over its input as shown: through the
    display conversion its exits go through (colour profile, transparency: its colours do
    not change when the result replaces it), halved as often as the input's picture;
    with ``base``, a copy of that picture to paste it over. (Not made consistent with a
    4:4:4 JPEG's blocks as an exit is: :func:`prepare_exit` does that on the whole.)"""
    y0, _, x0, _ = tile.box
    image = to_qimage(tile.image, view.display, origin=(y0, x0))
    return TilePatch(tile.box, tile.exit, pyramid(image, len(view.input_pic.levels)),
                     tile.done, tile.total, view.input_pic.copy() if base else None)


def stopped_result(enh: Enhancer, view: ViewData, mode: ExitMode,
                   exits: list[ExitResult], total_ms: float) -> EnhanceResult:
    """An :class:`EnhanceResult` holding the ``exits`` a run of ``view``'s picture made
    before it was stopped (each with the policy's verdict there, go on). No exit was
    chosen: ``decision`` is None and ``chosen`` the last exit computed, the one shown,
    which a save names as itself (:func:`rbqe_studio.saving.result_held`). Its network
    state is gone with the run: later exits need a new run from exit 1.

    (A tiled picture's exits come at its end, after its last cancel check: a Stop leaves
    it none, as before.)"""
    h, w = view.loaded.pixels.shape[:2]
    exits = sorted(exits, key=lambda e: e.exit)
    return EnhanceResult(exits, exits[-1].exit, enh.threshold, parse_exit_mode(mode),
                         str(enh.device), (w, h), total_ms=total_ms, min_exit=enh.min_exit,
                         policy=enh.policy, prior=JpegPrior.of(view.loaded),
                         gray_input=view.loaded.pixels.shape[2] == 1)


def choose(view: ViewData, policy: ExitPolicy, choice: Choice, more: MoreExits) -> None:
    """Chooses ``view``'s exit again under ``choice`` (``policy``: its policy as
    resolved) from its exits' signals, ``more`` computing those it lacks
    (:func:`rbqe_studio.choice.rechoose`): the one place a computed view's choice is
    changed (a new mode or threshold; a stopped run's, chosen once Compute all has made
    its exits), on the result and the view together and only once it is whole. A Stop
    meanwhile leaves the view's choice as it was, all of it."""
    assert view.result is not None
    rechoose(view.result, policy, choice.mode, more)
    view.choice = choice
    view.stopped_after = None


def choose_stopped(view: ViewData, policy: ExitPolicy, choice: PolicyChoice) -> None:
    """The exit of ``view``, stopped before one was chosen, chosen now that all its exits
    are computed (Compute all): as a run under its mode chooses, from the exits' signals
    (under ``all``, where auto would stop), with no network run. Its kept exits and
    those a new run added are of the same picture and network (:meth:`ViewData.add_run`)."""
    r = view.result
    assert r is not None
    # Every exit is there: nothing to compute
    choose(view, policy, Choice(r.mode, choice), lambda _k: None)


def result_from_report(report: ItemReport, view: ViewData,
                       images: dict[int, Any]) -> EnhanceResult:
    """An :class:`EnhanceResult` holding saved outputs (``images``: exit -> pixels) with
    what the batch report says of them: scores, the chosen exit and why. Timings are
    not known (NaN): nothing was computed here."""
    nan = float("nan")
    h, w = view.loaded.pixels.shape[:2]
    reason = report.exit_reason
    decision = None if reason is None else Decision(
        True, int(reason["exit"]), str(reason["signal"]), dict(reason.get("values", {})),
        str(reason["text"]))
    exits = []
    for k in sorted(images):
        image = images[k]
        if image.shape[:2] != (h, w):
            raise RBQEError(f"{report.outputs.get(str(k))}: the saved output is "
                            f"{image.shape[1]} x {image.shape[0]}, the input {w} x {h}")
        score = report.scores.get(str(k), nan)
        # The chosen exit carries the batch's verdict, as a computed one does: its card
        # then colours the score by the rule (it was orange where the app drew green).
        exits.append(ExitResult(k, image, score, nan, nan,
                                # a skipped output's row (its exit from its note) has none
                                report.gmacs if k == report.exit and report.gmacs is not None
                                else nan, None,
                                decision if decision is not None and k == decision.exit
                                else None))
    forced = decision is not None and decision.signal == "forced"
    chosen = report.exit if report.exit in images else max(images)
    return EnhanceResult(exits, chosen, nan, chosen if forced else "auto", "saved file",
                         (w, h), decision=decision, prior=JpegPrior.of(view.loaded))


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

    def _forget(self, gen: int, *_: object) -> None:
        self.jobs.pop(gen, None)

    def shutdown(self) -> None:
        """Cancel everything, stop the thread and join it (one stage at most)."""
        self.cancel()
        self.thread.quit()
        self.thread.wait()
