"""Folders in, enhanced images and a report out: the one batch engine of the CLI and the app.

A bad file never stops a batch: it becomes a ``failed`` item with the same one-line
message the CLI prints. Outputs that already exist are skipped unless ``overwrite``,
so an interrupted batch resumes where it stopped; a file in an output's place that is not
that result (a user's own file, another exit of the photo from an earlier run, or one made
from an earlier version of a source that has changed since) is neither taken for done nor
replaced: the image fails with the reason. Writes are atomic (see
:func:`rbqe.io.save_like`), so a cancel or a kill never leaves a partial output; the
temp file a kill can leave behind is removed by a later run (see
:func:`rbqe.io.remove_stale_temps`).

Every output is noted in its folder (:func:`rbqe.io.record_output`) before it is
written. A re-run keeps each written name with its source, so an input added later never
renames an earlier output; and the output folder may be the input folder (or hold input
sub-folders): a re-run leaves the noted outputs out of its inputs instead of enhancing
its own results again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rbqe.engine import Enhancer, EnhanceResult, ExitResult
from rbqe.errors import (
    Cancelled,
    ImageReadError,
    ImageWriteError,
    OutputFolderError,
    RBQEError,
    show_path,
)
from rbqe.exit_policy import ExitMode, JpegPrior
from rbqe.io import (
    DEFAULT_MAX_PIXELS,
    LoadedImage,
    list_images,
    load_image,
    output_path_for,
    plan_outputs,
    remove_stale_temps,
    save_like,
)
from rbqe.io.atomic import claim_output, probe_writable
from rbqe.io.diagnostics import _os_reason, said_once, said_while
from rbqe.io.diagnostics import logger as io_log
from rbqe.io.identity import path_key
from rbqe.io.output_log import (
    OUTPUT_LOG,
    OutputNotes,
    made_with,
    not_this_result,
    probe_output_log,
    source_identity,
    write_noted,
    written_outputs,
)
from rbqe.jpeg_constraint import consistent
from rbqe.model import NUM_EXITS

log = logging.getLogger(__name__)

# Write errors that concern the whole output folder, not one image: the batch stops.
FOLDER_ERRNOS = {errno.ENOSPC, errno.EROFS, getattr(errno, "EDQUOT", errno.ENOSPC)}
# Of those, a full disk or quota fails every file wherever it goes; a read-only file
# system may be one sub-folder's (a mount under the output folder): see stops_batch.
_DISK_ERRNOS = FOLDER_ERRNOS - {errno.EROFS}
_REFUSED_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS}  # a folder refusing new files


@dataclass
class BatchOptions:
    """How a batch runs.

    Attributes:
        out_dir: Output folder (created if missing).
        mode: ``"auto"``, ``"all"`` or a forced exit 1..5.
        recursive: Scan sub-folders, keeping the folder structure in the output.
        overwrite: Replace outputs that already exist (inputs are never replaced).
        fmt: ``png`` (lossless, default), ``jpeg`` or ``webp``.
        quality: JPEG/WebP quality.
        suffix: Appended to output stems.
        keep_metadata: Write EXIF/ICC back.
        strip_gps: Leave the GPS location out of the EXIF written back.
        max_pixels: Decompression-bomb limit.
        rule: Auto's exit rule (:meth:`rbqe.exit_policy.ExitPolicy.words_beside`), noted
            with auto outputs; the batch fills it in from its enhancer.
        weights: Which weights make the outputs (:func:`weights_identity`), noted with
            every output; the batch fills it in from its enhancer.
        replace_hint: How a message about a file left in place says what replaces it:
            the CLI's flag by default, the app's checkbox from the app.
    """

    out_dir: Path
    mode: ExitMode = "auto"
    recursive: bool = False
    overwrite: bool = False
    fmt: str = "png"
    quality: int = 95
    suffix: str = ""
    keep_metadata: bool = True
    strip_gps: bool = False
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    rule: str | None = None  # auto's exit rule, in words: filled in from the enhancer
    replace_hint: str = "--overwrite replaces it"
    weights: dict[str, str] | None = None  # which weights: filled in from the enhancer

    def made(self, result: str) -> dict[str, Any]:
        """What decides the bytes of the output holding ``result`` besides its source, as
        the output log notes it (:func:`rbqe.io.made_with`)."""
        return made_with(keep_metadata=self.keep_metadata, strip_gps=self.strip_gps,
                         fmt=self.fmt, quality=self.quality,
                         rule=self.rule if result == "auto" else None, weights=self.weights)


@dataclass
class ItemReport:
    """One input's outcome; :meth:`to_json` is the report's per-image entry."""

    input: Path
    status: str  # "ok", "failed", "skipped", or CANCELLED (stopped while in hand)
    outputs: dict[str, Path] = field(default_factory=dict)
    exit: int | None = None
    scores: dict[str, float] = field(default_factory=dict)
    times_ms: dict[str, Any] = field(default_factory=dict)
    gmacs: float | None = None
    gmacs_exit5: float | None = None
    size: tuple[int, int] | None = None
    error: str | None = None
    exit_reason: dict[str, Any] | None = None
    tile_exits: dict[str, Any] | None = None  # rbqe.results.TileExits.to_json()
    tiling: dict[str, int] | None = None  # {"tiles": N, "tile": side}; {"tiles": 1} whole
    warnings: list[str] = field(default_factory=list)  # rbqe.io.LoadedImage.warnings
    write_errno: int | None = field(default=None, repr=False)  # see FOLDER_ERRNOS
    write_path: Path | None = field(default=None, repr=False)  # the output it failed on
    # What was said on stderr of reading and writing it, as said there (the Ray engine's
    # driver says its workers' lines again): not in the report, whose warnings are above.
    said: list[str] = field(default_factory=list, repr=False)

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "input": str(self.input),
            "status": self.status,
            "outputs": {k: str(v) for k, v in self.outputs.items()},
            "exit": self.exit,
            "scores": {k: round(v, 6) for k, v in self.scores.items()},
            "times_ms": self.times_ms,
            "gmacs": None if self.gmacs is None else round(self.gmacs, 3),
            "size": list(self.size) if self.size else None,
        }
        if self.exit_reason is not None:
            entry["exit_reason"] = self.exit_reason
        if self.tiling is not None:
            entry["tiling"] = self.tiling
        if self.tile_exits is not None:
            entry["tile_exits"] = self.tile_exits
        if self.error is not None:
            entry["error"] = self.error
        if self.warnings:
            entry["warnings"] = list(self.warnings)
        return entry


CANCELLED = "cancelled"
"""The report status of an image a stop caught in hand: not finished, nothing partial
written (under ``--exit all``, its ``outputs`` are those written whole before the stop)."""


@dataclass
class BatchSummary:
    items: list[ItemReport]
    total_ms: float
    cancelled: bool = False
    stopped: str | None = None  # why the batch stopped early (the output folder failed)
    total: int | None = None  # images in the batch (items holds those reached)
    mode: ExitMode = "auto"
    # The images a cancel caught in hand (status CANCELLED): reported after the items,
    # not among them, which front ends count as done (the app's "not done" counts these).
    stopped_at: list[ItemReport] = field(default_factory=list)

    @property
    def processed(self) -> int:
        return sum(i.status == "ok" for i in self.items)

    @property
    def failed(self) -> int:
        return sum(i.status == "failed" for i in self.items)

    @property
    def skipped(self) -> int:
        return sum(i.status == "skipped" for i in self.items)

    @property
    def exit_histogram(self) -> dict[int, int]:
        hist = {k: 0 for k in range(1, NUM_EXITS + 1)}
        for i in self.items:
            if i.status == "ok" and i.exit:
                hist[i.exit] += 1
        return hist

    @property
    def tile_exit_histogram(self) -> dict[int, int] | None:
        """Tiles per exit over the images whose tiles chose their own exits; None when
        there are none."""
        per_tile = [i.tile_exits for i in self.items if i.status == "ok" and i.tile_exits]
        if not per_tile:
            return None
        return {k: sum(t["histogram"][str(k)] for t in per_tile)
                for k in range(1, NUM_EXITS + 1)}

    @property
    def avg_ms(self) -> float:
        done = [i.times_ms["total"] for i in self.items if i.status == "ok"]
        return sum(done) / len(done) if done else 0.0

    @property
    def gmacs(self) -> float:
        return sum(i.gmacs or 0.0 for i in self.items if i.status == "ok")

    @property
    def gmacs_exit5(self) -> float:
        return sum(i.gmacs_exit5 or 0.0 for i in self.items if i.status == "ok")

    @property
    def saved_fraction(self) -> float | None:
        """Compute saved against always running exit 5 (0.3 = 30 % fewer MACs).

        None with ``--exit all``: every exit is computed, so nothing is saved, and tiled
        images (whose overlaps cost extra) would make the figure negative.
        """
        if self.mode == "all":
            return None
        full = self.gmacs_exit5
        return 1.0 - self.gmacs / full if full else 0.0


@dataclass
class BatchEvents:
    """Optional plain callbacks; the app forwards them as Qt signals."""

    on_start: Callable[[int], None] | None = None
    on_item_start: Callable[[int, Path], None] | None = None
    on_item_done: Callable[[int, ItemReport], None] | None = None
    on_exit: Callable[[int, ExitResult], None] | None = None
    on_progress: Callable[[int, str, int, int], None] | None = None
    # No image is in hand any more (done, or left by a cancel): what follows is the
    # report, which a front end's later stop (a second Ctrl-C) must not cut short.
    on_finish: Callable[[], None] | None = None


def _tags(mode: ExitMode) -> list[str | None]:
    return [f"exit{k}" for k in range(1, NUM_EXITS + 1)] if mode == "all" else [None]


@dataclass
class BatchPlan:
    """What a batch will do, decided before any image is read (see :func:`plan_batch`).

    Attributes:
        files: ``(file, root)`` pairs from :func:`rbqe.io.list_images`, in order.
        targets: ``{file: {exit tag: output path}}`` from :func:`rbqe.io.plan_outputs`.
        protect: The input files, which no output may replace.
        noted: Output folders where outputs are noted (:func:`rbqe.io.record_output`):
            all of them, so that a re-run keeps each name with its source and leaves
            outputs out of its inputs where it scans them.
        unscanned: Folders that could not be read, and HEIC/AVIF files found in folders
            while their codec is not installed, as failed report entries: their images
            are missing, so the batch must not look complete (issue 13).
        warnings: What planning warned of about an input (its output name was taken by
            an input file), by input: its report entry keeps it
            (:meth:`with_warnings`).
    """

    files: list[tuple[Path, Path | None]]
    targets: dict[Path, dict[str | None, Path]]
    protect: list[Path]
    noted: set[Path]
    unscanned: list[ItemReport] = field(default_factory=list)
    notes: OutputNotes = field(default_factory=OutputNotes)
    warnings: dict[Path, list[str]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Report entries the batch will have: the images and the unreadable inputs."""
        return len(self.unscanned) + len(self.files)

    def with_warnings(self, item: ItemReport) -> ItemReport:
        """``item`` with what planning warned of about its input first, each line once."""
        said = self.warnings.get(item.input)
        if said:
            item.warnings = list(dict.fromkeys([*said, *item.warnings]))
        return item


def plan_batch(inputs: Sequence[str | Path], options: BatchOptions) -> BatchPlan:
    """Lists the inputs and names every output; shared by the local and the Ray engine.

    Also removes the temp files that a killed run left in the output folders.
    """
    out_dir = Path(options.out_dir)
    paths = [Path(p) for p in inputs]
    unscanned: list[ItemReport] = []

    def cannot_scan(folder: Path, reason: str) -> None:
        error = f"{folder}: cannot read this folder: {reason}"
        unscanned.append(ItemReport(folder, "failed", error=error))

    def cannot_read(file: Path, reason: str) -> None:
        # A HEIC without its codec: failed as when named directly (it used to be counted
        # in one warning, unnamed, and the batch ended "all done" with exit status 0).
        unscanned.append(ItemReport(file, "failed", error=str(ImageReadError(file, reason))))

    # An output folder inside the input tree is scanned like any folder: the user's
    # photos in it are inputs (they used to be left out without a word), and rbqe's own
    # outputs there are left out by their notes in the output log (skip_outputs).
    files = list_images(paths, recursive=options.recursive, skip_outputs=True,
                        on_error=cannot_scan, on_unreadable=cannot_read)
    tags = _tags(options.mode)
    # Outputs of earlier runs keep their names (a b.png input added beside an enhanced
    # b.jpg must not rename b.jpg's b.png), so every output is noted where it is written.
    out_folders = {output_path_for(f, out_dir, fmt=options.fmt, input_root=root).parent
                   for f, root in files}
    warnings: dict[Path, list[str]] = {}
    plan = plan_outputs(files, out_dir, suffix=options.suffix, fmt=options.fmt, exit_tags=tags,
                        written=written_outputs(out_folders),
                        on_warning=lambda f, said: warnings.setdefault(f, []).append(said))
    folders = sorted({p.parent for targets in plan.values() for p in targets.values()})
    for folder in folders:
        remove_stale_temps(folder)
    return BatchPlan(files, plan, [f for f, _ in files], set(folders), unscanned,
                     warnings=warnings)


def pending_outputs(targets: dict[str | None, Path],
                    options: BatchOptions) -> dict[str | None, Path]:
    """The outputs of one input still to write: all with ``overwrite``, else the missing."""
    # os.path.exists: Path.exists raises on a name too long for the file system, which
    # must fail that one image when it is written, not the batch here.
    return {tag: p for tag, p in targets.items() if options.overwrite or not os.path.exists(p)}


def existing_conflict(path: Path, targets: dict[str | None, Path], options: BatchOptions,
                      notes: OutputNotes) -> ItemReport | None:
    """A failed report entry when a file stands where one of ``path``'s outputs goes and
    is not that result (see :func:`rbqe.io.output_log.not_this_result`), without
    ``overwrite``; else None.

    Such a file used to be taken for done, and named in the report as this run's result.
    It is still left as it is. An output taken for its result whose source only has a new
    mtime is noted again with it (:meth:`rbqe.io.OutputNotes.renote_source`).
    """
    if options.overwrite:
        return None
    for tag, target in targets.items():
        if not os.path.lexists(target):
            continue
        result = result_name(tag, options.mode)
        why = not_this_result(target, path, result, notes, options.made(result))
        if why:
            return ItemReport(path, "failed", error=(
                f"{path}: {target} already exists and {why}; it is left as it is "
                f"({options.replace_hint}, or choose another output folder)"))
        notes.renote_source(target, path)  # its result: a moved mtime need not be read again
    return None


def result_name(tag: str | None, mode: ExitMode) -> str:
    """Which result an output holds, as the output log notes it: ``"auto"``, ``"3"``, or
    the exit tag of ``--exit all`` (``"exit3"``)."""
    return tag if tag is not None else str(mode)


def skipped_item(path: Path, targets: dict[str | None, Path], mode: ExitMode,
                 notes: OutputNotes | None = None) -> ItemReport:
    """The report entry of an input whose outputs all exist; with the ``exit`` its auto
    output holds, where ``notes`` has a note of it that still stands for it (its key
    stays ``"auto"``)."""
    forced = mode if isinstance(mode, int) else None
    auto = targets.get(None)
    held = None
    if notes is not None and auto is not None:
        noted = notes.get(auto)
        if noted is not None and noted.stands_for(auto) and \
                path_key(noted.source) == path_key(path):
            held = noted.exit
    return ItemReport(path, "skipped", exit=held if forced is None else None,
                      outputs={_key(t, forced): p for t, p in targets.items()})


def with_enhancer(options: BatchOptions, enhancer: Enhancer) -> BatchOptions:
    """``options`` with what ``enhancer`` decides of the outputs' bytes, where not given:
    auto's exit rule, in words, and the weights (:func:`weights_identity`)."""
    filled: dict[str, Any] = {}
    if options.rule is None:
        filled["rule"] = enhancer.policy.words_beside(enhancer.info.policy)
    if options.weights is None:
        filled["weights"] = weights_identity(enhancer)
    return dataclasses.replace(options, **filled) if filled else options


def weights_identity(enhancer: Enhancer) -> dict[str, str]:
    """Which weights ``enhancer`` runs, as outputs' notes keep it (:func:`rbqe.io.made_with`):
    the hash of its tensors (:func:`rbqe.backends.cache.weights_hash`; not of the file,
    whose metadata storing a policy changes) and the file's name, for messages."""
    from rbqe.backends.cache import weights_hash

    identity = {"hash": weights_hash(enhancer.net)}
    if enhancer.info.path is not None:
        identity["file"] = enhancer.info.path.name
    return identity


def stopped_item(path: Path, exc: Cancelled | None = None) -> ItemReport:
    """The report entry of an image a cancel (``exc``, if known) caught in hand, with the
    outputs it had written whole before it (``--exit all``)."""
    outputs = exc.outputs if isinstance(exc, _StoppedBetween) else {}
    return ItemReport(path, CANCELLED, outputs=dict(outputs))


class _StoppedBetween(Cancelled):
    """A cancel between an image's outputs: ``outputs`` the ones it has, by report key."""

    def __init__(self, outputs: dict[str, Path]) -> None:
        super().__init__("cancelled")
        self.outputs = dict(outputs)


def process_item(
    enhancer: Enhancer,
    path: Path,
    targets: dict[str | None, Path],
    options: BatchOptions,
    *,
    todo: dict[str | None, Path] | None = None,
    protect: Sequence[Path] = (),
    noted: set[Path] | frozenset[Path] = frozenset(),
) -> ItemReport:
    """Enhances one planned input (see :func:`plan_batch`), for engines that run items
    elsewhere (:mod:`rbqe.cluster`). ``todo`` (default :func:`pending_outputs`) names the
    outputs to write; the others in ``targets`` are only reported."""
    return _process_one(enhancer, _Job(path, targets, with_enhancer(options, enhancer),
                                       list(protect), set(noted), todo=todo))


def process_items(
    enhancer: Enhancer,
    items: Sequence[tuple[Path, dict[str | None, Path], dict[str | None, Path], set[Path]]],
    options: BatchOptions,
) -> list[ItemReport]:
    """:func:`process_item` of each ``(path, targets, todo, noted)``, in order; where
    :attr:`Enhancer.batches` (a GPU), the images of one size enhanced together."""
    options = with_enhancer(options, enhancer)
    jobs = [_Job(path, targets, options, [], set(noted), todo=todo)
            for path, targets, todo, noted in items]
    done = _process_group(enhancer, jobs)[0] if enhancer.batches and len(jobs) > 1 else {}
    # One by one: without batching, and any left after the output folder failed.
    return [done[n] if n in done else _process_one(enhancer, job) for n, job in enumerate(jobs)]


def run_batch(
    enhancer: Enhancer,
    inputs: Sequence[str | Path],
    options: BatchOptions,
    *,
    events: BatchEvents | None = None,
    cancel: Callable[[], bool] | None = None,
) -> BatchSummary:
    """Enhance every image in ``inputs`` (files or folders) into ``options.out_dir``.

    Returns the summary; when ``cancel`` turns true the current image stops after its
    current stage, nothing partial is written, and the summary so far is returned with
    ``cancelled`` set; the images it caught in hand are in its ``stopped_at`` (not passed
    to ``on_item_done``: they were not done).
    """
    ev = events or BatchEvents()
    t0 = time.perf_counter()
    options = with_enhancer(options, enhancer)
    out_dir = Path(options.out_dir)
    if not all(_missing(Path(p)) is not None for p in inputs):  # else each fails, nothing made
        check_output_folder(out_dir)
    batch_plan = plan_batch(inputs, options)
    files, plan = batch_plan.files, batch_plan.targets
    protect, noted = batch_plan.protect, batch_plan.noted
    total = batch_plan.total
    if ev.on_start:
        ev.on_start(total)
    items: list[ItemReport] = []
    for index, failed in enumerate(batch_plan.unscanned):  # first: known before any work
        if ev.on_item_start:
            ev.on_item_start(index, failed.input)
        items.append(failed)
        log.info("failed: %s", failed.error)
        if ev.on_item_done:
            ev.on_item_done(index, failed)
    cancelled = False
    stopped_at: list[ItemReport] = []
    # Where batching pays (a GPU), images walk the exits max_batch at a time.
    step = enhancer.max_batch if enhancer.batches else 1
    numbered = list(enumerate(files, start=len(items)))
    for first in range(0, len(numbered), step):
        if cancel is not None and cancel():
            cancelled = True
            break
        jobs = []
        for index, (path, _root) in numbered[first : first + step]:
            if ev.on_item_start:
                ev.on_item_start(index, path)
            jobs.append(_Job(path, plan[path], options, protect, noted, index, ev, cancel,
                             notes=batch_plan.notes))
        if len(jobs) > 1:
            done, cancelled = _process_group(enhancer, jobs)
        else:
            try:
                done, cancelled = {0: _process_one(enhancer, jobs[0])}, False
            except Cancelled as exc:
                done, cancelled = {0: stopped_item(jobs[0].path, exc)}, True
        if cancelled:  # the images in hand that the stop left unfinished
            done.update({n: stopped_item(job.path) for n, job in enumerate(jobs)
                         if n not in done})
        folder_error = None
        for n in sorted(done):
            item = batch_plan.with_warnings(done[n])
            if item.status == CANCELLED:
                stopped_at.append(item)
                continue
            items.append(item)
            if stops_batch(item, out_dir):
                folder_error = folder_error or item.write_errno
            elif item.status == "failed":
                # INFO, not ERROR: the failure is in the summary and front ends show it
                # (the CLI prints it once on stderr); an ERROR record here printed it twice.
                log.info("failed: %s", item.error)
            if ev.on_item_done:
                ev.on_item_done(jobs[n].index, item)
        if folder_error is not None:
            if ev.on_finish:
                ev.on_finish()
            stopped = (f"{out_dir}: cannot write to the output folder "
                       f"({_os_reason(OSError(folder_error, ''))}); batch stopped")
            return BatchSummary(items, (time.perf_counter() - t0) * 1000, False, stopped,
                                total, options.mode, stopped_at)
        if cancelled:
            break
    if ev.on_finish:
        ev.on_finish()
    return BatchSummary(items, (time.perf_counter() - t0) * 1000, cancelled, None, total,
                        options.mode, stopped_at)


def stops_batch(item: ItemReport, out_dir: Path) -> bool:
    """Whether ``item``'s failed write means every image would fail in turn: a full disk
    or quota, or the output folder itself refusing new files (:func:`_folder_refuses`).
    Both engines stop on it (the Ray driver, on its workers' rows)."""
    return item.write_errno in _DISK_ERRNOS or _folder_refuses(item, out_dir)


def _folder_refuses(item: ItemReport, out_dir: Path) -> bool:
    """Whether a permission error or a read-only file system writing ``item``'s output
    is the output folder's (made read-only during the batch: every image would fail in
    turn) rather than one file's. One read-only sub-folder of a ``-r`` batch (made so, or
    a read-only mount) fails the images bound there only; a read-only file system there
    stops the batch when the output folder refuses too (the disk remounted read-only)."""
    if item.write_errno not in _REFUSED_ERRNOS or item.write_path is None:
        return False
    in_root = path_key(item.write_path.parent) == path_key(out_dir)
    if item.write_errno == errno.EROFS and in_root:
        return True  # the file system's answer, for any file made there
    if not in_root and item.write_errno != errno.EROFS:
        return False  # a sub-folder's own permissions
    # A read-only file system in a sub-folder: a mount of its own, or the output disk
    # remounted read-only (errors=remount-ro), which the output folder says too.
    try:
        probe_writable(out_dir)
    except OSError:
        return True
    return False


def check_output_folder(out_dir: Path) -> None:
    """Creates ``out_dir`` and proves it writable, before any image is enhanced.

    Raises:
        OutputFolderError: It is a file, cannot be created, or refuses a new file.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputFolderError(out_dir, "output folder is an existing file")
    try:
        probe_writable(out_dir)
    except OSError as exc:
        raise OutputFolderError(out_dir, f"cannot write to the output folder: "
                                f"{_os_reason(exc)}") from None
    try:  # an output that cannot be noted could not be told from a user's file later
        probe_output_log(out_dir)
    except OSError as exc:
        raise OutputFolderError(out_dir, f"cannot note outputs in {OUTPUT_LOG} there: "
                                f"{_os_reason(exc)}") from None


@dataclass
class _Job:
    """One planned input of a batch, and what its writes answer to."""

    path: Path
    targets: dict[str | None, Path]  # every output planned for it, by exit tag
    options: BatchOptions
    protect: list[Path]  # the inputs, which no output may replace
    noted: set[Path]  # output folders whose outputs are noted for re-runs
    index: int = 0
    ev: BatchEvents = field(default_factory=BatchEvents)
    cancel: Callable[[], bool] | None = None
    todo: dict[str | None, Path] | None = None  # the outputs to write; None: the missing
    notes: OutputNotes = field(default_factory=OutputNotes)  # the output logs, read once
    source_id: dict[str, Any] | None = None  # the source as read (see _read_source)


def _process_one(enhancer: Enhancer, job: _Job) -> ItemReport:
    with contextlib.ExitStack() as claims:
        return _skip_or_claim(job, claims) or _enhance_one(enhancer, job) or _skipped(job)


def _missing(path: Path) -> FileNotFoundError | None:
    """The error of ``path`` when nothing is there; None when something is, or may be (a
    file in a folder that may not be searched says "permission denied" when read)."""
    try:
        os.lstat(path)
    except FileNotFoundError as exc:
        return exc
    except OSError:
        return None
    return None


def _skipped(job: _Job) -> ItemReport:
    return skipped_item(job.path, job.targets, job.options.mode, job.notes)


def _skip_or_claim(job: _Job, claims: contextlib.ExitStack) -> ItemReport | None:
    """The job's report when it is not to be enhanced here: ``skipped`` when its outputs
    all exist or another rbqe process holds its claim, ``failed`` when a file that is not
    its result stands in an output's place (:func:`existing_conflict`); else None, with
    the claim held until ``claims`` closes."""
    # A planned ``todo`` (the Ray engine's): only its outputs are looked at, as the
    # driver planned; a file that appeared at one since is judged like any other.
    looked_at = job.targets if job.todo is None else job.todo
    if not job.options.overwrite:
        conflict = existing_conflict(job.path, looked_at, job.options, job.notes)
        if conflict is not None:
            return conflict
        if job.todo is None and all(os.path.exists(p) for p in job.targets.values()):
            return _skipped(job)
    gone = _missing(job.path)
    if gone is not None:  # gone, or a typo: no claim (nor its folder) made
        return _failure(job.path, ImageReadError(job.path, _os_reason(gone)))
    # Another rbqe on the same output folder may be making this image right now: the
    # claim of its first output decides who does it (issue 13).
    if not claims.enter_context(claim_output(next(iter(job.targets.values())))):
        log.info("skipped %s: another rbqe process is making it", job.path)
        return _skipped(job)
    # Again with the claim held: a file may have appeared in the meantime.
    return existing_conflict(job.path, looked_at, job.options, job.notes)


def _enhance_one(enhancer: Enhancer, job: _Job) -> ItemReport | None:
    """Enhances one claimed image; None when its outputs exist (written by the claim's
    previous holder) and are not to be overwritten."""
    todo = _todo(job)
    if not todo:
        return None
    t0 = time.perf_counter()
    try:
        src = _read_source(job)
        return _enhance_loaded(enhancer, job, src, todo, t0)
    except Cancelled:
        raise
    except Exception as exc:  # noqa: BLE001  (each cause is one line: _failure)
        return _failure(job.path, exc)


def _read_source(job: _Job) -> LoadedImage:
    """Reads the job's image, noting first what its file is, for its outputs' notes."""
    # Before the read, not after it: what is noted is then never a newer version than the
    # one enhanced, so a source replaced meanwhile reads as changed next time, not as done.
    job.source_id = source_identity(job.path)
    return load_image(job.path, max_pixels=job.options.max_pixels)


def _todo(job: _Job) -> dict[str | None, Path]:
    """The outputs to write now that the claim is held: the missing ones (another rbqe
    process may have written some meanwhile), or the planned ``todo`` (a Ray batch
    retried after its worker died writes them again, over that worker's own outputs)."""
    return pending_outputs(dict(job.targets), job.options) if job.todo is None else job.todo


# The largest side each lossy format holds (libjpeg: 65,500; WebP: 16,383).
MAX_SIDE = {".jpg": ("JPEG", 65500), ".jpeg": ("JPEG", 65500), ".webp": ("WebP", 16383)}


def too_big_for(target: Path, width: int, height: int) -> str | None:
    """Why ``target``'s format cannot hold a ``width`` x ``height`` image, or None. (The
    write failed only after the enhancement, with libjpeg's own line on stderr.)"""
    kind, most = MAX_SIDE.get(target.suffix.lower(), ("", 0))
    if not most or max(width, height) <= most:
        return None
    return (f"a {kind} holds at most {most:,} pixels a side, and this image is "
            f"{width:,} x {height:,}: choose PNG (--format png)")


def _enhance_loaded(enhancer: Enhancer, job: _Job, src: LoadedImage,
                    todo: dict[str | None, Path], t0: float,
                    result: EnhanceResult | None = None) -> ItemReport:
    """Enhances a loaded image (unless its ``result`` is given) and writes ``todo``."""
    index, ev, cancel = job.index, job.ev, job.cancel
    for target in todo.values():  # before minutes of network, not after them
        too_big = too_big_for(target, *src.size)
        if too_big:
            raise ImageWriteError(target, too_big)
    if result is None:
        exit_cb, progress_cb = ev.on_exit, ev.on_progress
        on_exit = (lambda e: exit_cb(index, e)) if exit_cb else None
        on_progress = (lambda s, d, t: progress_cb(index, s, d, t)) if progress_cb else None
        result = enhancer.enhance(src.pixels, job.options.mode, on_exit=on_exit,
                                  progress=on_progress, cancel=cancel,
                                  prior=JpegPrior.of(src), full_precision=src.bit_depth == 16)
    elif ev.on_exit:  # computed in a batch: its exits are reported now
        for e in result.exits:
            ev.on_exit(index, e)
    options = job.options
    outputs: dict[str, Path] = {}
    # e.g. a JPEG output drops the alpha channel: said naming the input too
    with said_while() as writing, _naming_input(job.path, job.targets.values()):
        for tag, target in job.targets.items():
            k = result.chosen if tag is None else int(tag[4:])
            if tag in todo:
                if cancel is not None and cancel():
                    raise _StoppedBetween(outputs)  # those written are whole: reported
                save = functools.partial(
                    save_like, target, consistent(result.exit_result(k).image, src),
                    src, fmt=options.fmt,
                    quality=options.quality, keep_metadata=options.keep_metadata,
                    strip_gps=options.strip_gps, protect=job.protect)
                _write_output(job, target, result_name(tag, options.mode), save, k)
            outputs[_key(tag, k)] = target
    total = (time.perf_counter() - t0) * 1000
    item = item_from_result(job.path, result, outputs, total, enhancer)
    # e.g. only the first page of a TIFF enhanced; then what writing it warned of
    named = f"{job.path} -> "
    item.warnings = [*src.warnings, *said_once([line.removeprefix(named) for line in writing],
                                                list(job.targets.values()))]
    item.said = [*(f"{job.path}: {text}" for text in src.warnings), *writing]
    return item


@contextlib.contextmanager
def _naming_input(path: Path, targets: Iterable[Path]) -> Iterator[None]:
    """Within the block, what this thread logs about one of ``targets`` ("out/a.png: JPEG
    cannot store transparency; ...") names the input too: "in/a.jpg -> out/a.png: ...".
    With thousands of photos the output's name alone did not say which photo it was; a
    failed write's error reads the same (:func:`_failure`)."""
    thread = threading.get_ident()
    prefixes = tuple(f"{target}: " for target in targets)

    def name_input(record: logging.LogRecord) -> bool:
        if record.thread == thread:
            text = record.getMessage()
            if text.startswith(prefixes):
                record.msg, record.args = f"{path} -> {text}", ()
        return True

    io_log.addFilter(name_input)
    try:
        yield
    finally:
        io_log.removeFilter(name_input)


def _write_output(job: _Job, target: Path, result: str, save: Callable[..., object],
                  exit: int | None = None) -> None:
    """``save(replace=...)`` the output at ``target``, its note in the output log kept true.

    A file at ``target`` is replaced only with ``overwrite``, or for a planned ``todo``
    when the output log says it is this very output (a dead Ray worker's). Where the
    folder's outputs are noted, through :func:`rbqe.io.output_log.write_noted`: noted
    before the write and again once written, the note taken back if the write fails.
    """
    made = job.options.made(result)
    earlier = job.notes.get(target) if os.path.lexists(target) else None
    own = earlier is not None and not_this_result(target, job.path, result, job.notes,
                                                  made) is None
    replace = job.options.overwrite or (job.todo is not None and own)
    try:
        if target.parent not in job.noted:
            save(replace=replace)
            return
        write_noted(target, job.path, result, lambda: save(replace=replace), earlier=earlier,
                    made=made, source_id=job.source_id, exit=exit)
    except ImageWriteError as exc:
        if exc.errno != errno.EEXIST:
            raise
        # A file appeared there meanwhile and was left alone: say what replaces it.
        again = ImageWriteError(exc.path, f"{exc.reason} ({job.options.replace_hint})")
        again.errno = exc.errno
        raise again from None


def _failure(path: Path, exc: Exception) -> ItemReport:
    """The report entry of an image whose reading, enhancing or writing raised ``exc``."""
    if isinstance(exc, ImageWriteError):
        said = str(exc)
        if exc.errno == errno.EROFS:  # the folder's answer, not the file's: name it
            folder = show_path(Path(exc.path).parent)
            said = str(ImageWriteError(exc.path, f"cannot write in {folder}: read-only file "
                                                 f"system"))
        # "in/a.jpg -> out/a.png: ...": the output alone does not say which photo it was
        failed = ItemReport(path, "failed", error=f"{show_path(path)} -> {said}")
        failed.write_errno, failed.write_path = exc.errno, Path(exc.path)
        return failed
    if isinstance(exc, RBQEError):
        return ItemReport(path, "failed", error=str(exc))
    if isinstance(exc, MemoryError):
        return ItemReport(path, "failed", error=f"{path}: out of memory (try a smaller --tile)")
    # A bug must not end the batch; report it on one line. The traceback goes to the log
    # at INFO (shown by 'rbqe -v'), not to the user's stderr: the batch reports the
    # failure on one line like any other.
    log.info("unexpected error on %s", path, exc_info=exc)
    return ItemReport(path, "failed", error=f"{path}: internal error: {type(exc).__name__}: {exc}")


def _process_group(enhancer: Enhancer, jobs: list[_Job]) -> tuple[dict[int, ItemReport], bool]:
    """:func:`_process_one` of each job, the images of one size enhanced together
    (:meth:`rbqe.engine.Enhancer.enhance_many`): where :attr:`Enhancer.batches` (a GPU).
    Returns the reports of the jobs done, by their place in ``jobs``, and whether a cancel
    stopped them (the job it stopped in has a :data:`CANCELLED` report; the jobs without
    a report were not finished).

    Only images that run whole wait for the others (at most ``len(jobs)`` of them, up to
    2.1 MP each); a larger one is enhanced and written as soon as it is read.
    """
    waiting: list[tuple[int, LoadedImage, dict[str | None, Path], float]] = []
    done: dict[int, ItemReport] = {}
    n = 0  # the job in hand
    with contextlib.ExitStack() as claims:
        try:
            for n, job in enumerate(jobs):
                skipped = _skip_or_claim(job, claims)
                todo = {} if skipped else _todo(job)
                if not todo:
                    done[n] = skipped or _skipped(job)
                    continue
                t0 = time.perf_counter()
                try:
                    src = _read_source(job)
                    # Tiled images, and 16-bit ones (in float32), go on their own.
                    if not enhancer.runs_whole(src.size[1], src.size[0]) or \
                            src.bit_depth == 16:
                        done[n] = _enhance_loaded(enhancer, job, src, todo, t0)
                    else:
                        waiting.append((n, src, todo, t0))
                except Cancelled:
                    raise
                except Exception as exc:  # noqa: BLE001
                    done[n] = _failure(job.path, exc)
            results: list[EnhanceResult | None] = [None] * len(waiting)
            try:
                results = list(enhancer.enhance_many(
                    [src.pixels for _, src, _, _ in waiting], jobs[0].options.mode,
                    priors=[JpegPrior.of(src) for _, src, _, _ in waiting]))
            except Exception:  # noqa: BLE001  (each image on its own names its cause)
                log.info("a batch of %d images failed; going on one by one", len(waiting),
                         exc_info=True)
            while waiting:
                n, src, todo, t0 = waiting.pop(0)
                result = results.pop(0)
                try:
                    done[n] = _enhance_loaded(enhancer, jobs[n], src, todo, t0, result)
                except Cancelled:
                    raise
                except Exception as exc:  # noqa: BLE001
                    done[n] = _failure(jobs[n].path, exc)
                if stops_batch(done[n], Path(jobs[n].options.out_dir)):
                    break  # the output folder is full or read-only: the batch stops
        except Cancelled as exc:
            done[n] = stopped_item(jobs[n].path, exc)
            return done, True
    return done, False


def _key(tag: str | None, k: int | None = None) -> str:
    """Report key of an output: its exit number, or "auto" for a skipped auto output."""
    if tag is None:
        return str(k) if k is not None else "auto"
    return tag[4:]


def item_from_result(path: Path, result: EnhanceResult, outputs: dict[str, Path],
                     total_ms: float, enhancer: Enhancer) -> ItemReport:
    """Build the report entry of one enhanced image."""
    return ItemReport(
        path,
        "ok",
        outputs=outputs,
        exit=result.chosen,
        # Every exit computed: a tiled image's sampled exits too (EnhanceResult.scores).
        scores={str(k): s for k, s in result.scores.items()},
        times_ms={
            "stages": [round(e.time_ms, 2) for e in result.exits],
            "iqa": round(result.iqa_ms, 2),
            "total": round(total_ms, 2),
        },
        gmacs=max(e.gmacs for e in result.exits),
        gmacs_exit5=result.gmacs_exit5,
        size=result.size,
        exit_reason=result.exit_reason,
        tile_exits=None if result.tile_exits is None else result.tile_exits.to_json(),
        tiling=tiling_of(result),
    )


def tiling_of(result: EnhanceResult) -> dict[str, int]:
    """How a result's picture was cut, for its report row: whole, or N tiles of a side."""
    return {"tiles": result.tiles, "tile": result.tile_size} if result.tiled else {"tiles": 1}


def report_json(enhancer: Enhancer, summary: BatchSummary) -> dict[str, Any]:
    """The ``--report`` document."""
    info = enhancer.info
    report: dict[str, Any] = {
        "device": str(enhancer.device),
        "backend": enhancer.backend.name,
        "precision": enhancer.backend.precision,
        "weights": str(info.path) if info.path else None,
        "threshold": enhancer.threshold,
        "min_exit": enhancer.min_exit,
        "policy": enhancer.policy.summary(),
        "tile_exits": enhancer.tile_exits,
        # The images a stop caught in hand last: reported, so none goes missing.
        "images": [i.to_json() for i in [*summary.items, *summary.stopped_at]],
        "summary": {
            "processed": summary.processed,
            "failed": summary.failed,
            "skipped": summary.skipped,
            "cancelled": summary.cancelled,
            # A batch that stopped early must not read as complete: how many images it
            # had, and why it stopped (the output folder failed: a full disk, say).
            "total": summary.total if summary.total is not None else len(summary.items),
            "stopped": summary.stopped,
            "exit_histogram": {str(k): v for k, v in summary.exit_histogram.items()},
            "total_ms": round(summary.total_ms, 1),
            "gmacs": round(summary.gmacs, 3),
            "gmacs_exit5": round(summary.gmacs_exit5, 3),
            "saved_fraction": (None if summary.saved_fraction is None
                               else round(summary.saved_fraction, 4)),
        },
    }
    tiles = summary.tile_exit_histogram
    if tiles is not None:  # only with tiled images that chose per tile: old readers unchanged
        report["summary"]["tile_exit_histogram"] = {str(k): v for k, v in tiles.items()}
    return report
