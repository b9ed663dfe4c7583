"""``rbqe enhance --engine ray``: the batch engine scaled out on Ray Data.

The driver plans exactly like the local engine (:func:`rbqe.batch.plan_batch`: listing,
output names, the same-folder rules) and reports inputs whose outputs all exist as
``skipped`` without sending them anywhere. The rest become a Ray Data dataset, one row
per image, mapped by :class:`EnhanceWorker`, an actor that loads the
:class:`~rbqe.engine.Enhancer` once and enhances, writes (atomically, through
:func:`rbqe.batch.process_items`; on a GPU the images of one size in a Ray batch walk
the exits together) and returns one report row per image. The driver
streams those rows into the report as they arrive, so its memory does not grow with
the report.

Faults: Ray Data restarts an actor whose process dies and retries its batch. A retried
batch writes the outputs that the driver planned as missing, again, whole and through
a temp file, so an output is never half-written; its rows come back only once, from
the retry. Paths are plain strings in the dataset, so that object-store URIs can take
their place later.

Storage: the driver and every worker must see the inputs, the output folder and the
weights under the same paths (a shared folder, NFS, a mounted bucket); :func:`check_storage`
checks this on a worker before the run.

Ray is optional (``pip install 'rbqe-studio[cluster]'``); it is imported only here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import signal
import socket
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import numpy as np

from rbqe.batch import (
    BatchEvents,
    BatchOptions,
    ItemReport,
    existing_conflict,
    pending_outputs,
    plan_batch,
    process_items,
    skipped_item,
    stops_batch,
    with_enhancer,
)
from rbqe.engine import Enhancer
from rbqe.errors import RBQEError
from rbqe.io.atomic import atomic_write, probe_writable
from rbqe.io.diagnostics import _os_reason
from rbqe.model import NUM_EXITS

log = logging.getLogger(__name__)
io_log = logging.getLogger("rbqe.io")  # the logger of the warnings of reading and writing


class ClusterError(RBQEError):
    """Ray is missing, cannot start, or the storage is not shared with the workers."""


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide the Ray engine runs.

    Attributes:
        address: ``None`` starts a local Ray instance; ``"auto"`` or ``"ray://host:10001"``
            joins a running cluster.
        workers: Number of actors, each holding one Enhancer; default: all the cluster's
            CPUs (or GPUs) divided by what one worker takes.
        gpus_per_worker: GPUs per actor (0.5 puts two actors on one GPU).
        cpus_per_worker: CPUs per actor; also its number of torch threads.
        batch_size: Images per Ray task. A dead actor costs its batch's work again.
        num_cpus: CPUs of the local instance (``address=None`` only; default: all).
    """

    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    batch_size: int = 1
    num_cpus: int | None = None


@dataclass
class RaySummary:
    """Running totals of a Ray batch; the fields of the report's ``summary``."""

    total: int = 0
    processed: int = 0
    failed: int = 0
    skipped: int = 0
    cancelled: bool = False
    total_ms: float = 0.0
    gmacs: float = 0.0
    gmacs_exit5: float = 0.0
    exit_histogram: dict[int, int] = field(
        default_factory=lambda: {k: 0 for k in range(1, NUM_EXITS + 1)})
    tile_exit_histogram: dict[int, int] | None = None  # tiles per exit, per-tile images only
    devices: set[str] = field(default_factory=set)
    backends: set[tuple[str, str]] = field(default_factory=set)  # (backend, precision)
    report_error: str | None = None
    stopped: str | None = None  # why the batch stopped early (the output folder failed)

    def add(self, entry: dict[str, Any], gmacs: tuple[float | None, float | None]) -> None:
        """Counts one report row; ``gmacs`` is (spent, exit 5's), unrounded."""
        status = entry["status"]
        if status == "ok":
            self.processed += 1
            if entry["exit"]:
                self.exit_histogram[entry["exit"]] += 1
            self.gmacs += gmacs[0] or 0.0
            self.gmacs_exit5 += gmacs[1] or 0.0
            if entry.get("tile_exits"):
                hist = self.tile_exit_histogram or {k: 0 for k in range(1, NUM_EXITS + 1)}
                for k, n in entry["tile_exits"]["histogram"].items():
                    hist[int(k)] += n
                self.tile_exit_histogram = hist
        elif status == "failed":
            self.failed += 1
        else:
            self.skipped += 1

    @property
    def saved_fraction(self) -> float:
        return 1.0 - self.gmacs / self.gmacs_exit5 if self.gmacs_exit5 else 0.0

    def to_json(self) -> dict[str, Any]:
        """The report's ``summary`` (same keys as :func:`rbqe.batch.report_json`)."""
        summary: dict[str, Any] = {
            "processed": self.processed,
            "failed": self.failed,
            "skipped": self.skipped,
            "cancelled": self.cancelled,
            "total": self.total,
            "stopped": self.stopped,
            "exit_histogram": {str(k): v for k, v in self.exit_histogram.items()},
            "total_ms": round(self.total_ms, 1),
            "gmacs": round(self.gmacs, 3),
            "gmacs_exit5": round(self.gmacs_exit5, 3),
            "saved_fraction": round(self.saved_fraction, 4),
        }
        if self.tile_exit_histogram is not None:
            summary["tile_exit_histogram"] = {str(k): v
                                              for k, v in self.tile_exit_histogram.items()}
        return summary


class _ReportStream:
    """The JSON report, written as rows arrive: entries go to an anonymous temp file
    (gone with the process if it is killed), and :meth:`finish` writes the document
    atomically, so a report is either complete or absent."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._rows: IO[str] | None = None
        if path is not None:
            try:  # before any work: a report that cannot be written is a setup error
                path.parent.mkdir(parents=True, exist_ok=True)
                self._rows = tempfile.TemporaryFile("w+", encoding="utf-8", dir=path.parent)
            except OSError as exc:
                raise ClusterError(_report_problem(path, exc)) from None

    def add(self, entry: dict[str, Any]) -> None:
        if self._rows is not None:
            self._rows.write(json.dumps(entry) + "\n")

    def finish(self, header: dict[str, Any], summary: dict[str, Any]) -> None:
        if self.path is None or self._rows is None:
            return
        rows = self._rows
        rows.seek(0)

        def write(fh: IO[bytes]) -> None:
            head = json.dumps(header, indent=2)[:-2]  # drop "\n}": the images follow
            fh.write(f'{head},\n  "images": [\n'.encode())
            for i, line in enumerate(rows):
                fh.write(((",\n" if i else "") + "    " + line.rstrip("\n")).encode())
            fh.write(f'\n  ],\n  "summary": {json.dumps(summary)}\n}}\n'.encode())

        atomic_write(self.path, write)


    def close(self) -> None:
        if self._rows is not None:
            self._rows.close()


def _report_problem(path: Path, exc: OSError) -> str:
    return f"{path}: cannot write report: {exc.strerror or exc}"


# --------------------------------------------------------------------------------------
# Worker side
# --------------------------------------------------------------------------------------


def _probe_storage(out_dir: str, sample_input: str | None) -> str | None:
    """On a worker: None if ``out_dir`` is writable and ``sample_input`` readable, else why."""
    try:
        probe_writable(out_dir)
    except OSError as exc:
        return f"{out_dir}: not writable from a Ray worker ({exc.strerror or exc})"
    if sample_input is not None and not os.access(sample_input, os.R_OK):
        return (f"{sample_input}: not readable from a Ray worker; inputs and outputs must be "
                "on storage that every worker sees under the same path")
    return None


class EnhanceWorker:
    """The Ray Data actor: one Enhancer per worker process, one report row per image.

    Input batches hold ``item`` (JSON of a planned image, see :func:`_work_item`); the
    output batches hold ``row`` (JSON of ``{"entry", "gmacs", "device"}``).
    """

    def __init__(self, enhancer_kwargs: dict[str, Any], options: BatchOptions,
                 threads: int, stop: Any = None) -> None:
        import ray
        import torch

        torch.set_num_threads(max(1, threads))
        problem = _probe_storage(str(options.out_dir), None)
        if problem:
            raise ClusterError(problem)
        self.options = options
        self.enhancer = Enhancer(**enhancer_kwargs)
        self.device = str(self.enhancer.device)
        self.stop, self.stopped = stop, False  # the driver's _StopFlag (a cancel)
        self.looked = 0.0  # when the flag was last read
        self.actor = ray.get_runtime_context().get_actor_id() or str(os.getpid())

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # An empty row: an image left alone because the run is stopping.
        items = [json.loads(str(text)) for text in batch["item"]]
        if self.enhancer.batches:  # a GPU: the batch's images of one size walk together
            rows = [""] * len(items) if self._stopping() else self.enhance_many(items)
        else:
            rows = ["" if self._stopping() else self.enhance_one(item) for item in items]
        return {"row": np.array(rows, dtype=object),
                "actor": np.array([self.actor] * len(rows), dtype=object)}

    def _stopping(self) -> bool:
        # At most once a second per worker: one flag actor serves the whole pool.
        if not self.stopped and self.stop is not None and time.monotonic() - self.looked >= 1:
            import ray

            self.stopped = bool(ray.get(self.stop.is_set.remote()))
            self.looked = time.monotonic()
        return self.stopped

    def enhance_one(self, item: dict[str, Any]) -> str:
        return self.enhance_many([item])[0]

    def enhance_many(self, items: list[dict[str, Any]]) -> list[str]:
        """The report rows of planned images (:func:`rbqe.batch.process_items`)."""
        planned = []
        for item in items:
            targets = {_tag(t): Path(p) for t, p, _ in item["targets"]}
            todo = {t: p for t, p in targets.items() if _untag(t) in item["todo"]}
            planned.append((Path(item["input"][0]), targets, todo,
                            {Path(f) for f in item["noted"]}))
        reports = process_items(self.enhancer, planned, self.options)
        return [self._row(item, report) for item, report in zip(items, reports, strict=True)]

    def _row(self, item: dict[str, Any], report: ItemReport) -> str:
        path, shown = item["input"]
        # The report shows paths as the driver's planning named them, like the local engine.
        entry = report.to_json()
        entry["input"] = shown
        as_shown = {p: s for _, p, s in item["targets"]}
        entry["outputs"] = {k: as_shown.get(v, v) for k, v in entry["outputs"].items()}
        pairs = [(path, shown), *as_shown.items()]
        # ... and their folders, which a read-only sub-folder's error names
        pairs += [(str(Path(p).parent), str(Path(n).parent)) for p, n in pairs]
        if "error" in entry:
            entry["error"] = _as_shown(entry["error"], pairs)
        return json.dumps({"entry": entry, "gmacs": [report.gmacs, report.gmacs_exit5],
                           # what its reading and writing said, for the driver's stderr
                           "said": [_as_shown(line, pairs) for line in report.said],
                           "write_errno": report.write_errno,
                           "write_path": (None if report.write_path is None
                                          else str(report.write_path)),
                           "device": self.device,
                           "backend": [self.enhancer.backend.name,
                                       self.enhancer.backend.precision]})


def _as_shown(text: str, pairs: list[tuple[str, str]]) -> str:
    """``text`` with each planned path of ``pairs`` as the user named it: whole paths only,
    the longest first (a folder ``/p`` must not turn ``/p_out/x.png`` into ``._out/…``)."""
    for planned, named in sorted(set(pairs), key=lambda pair: -len(pair[0])):
        if planned != named:
            whole = r"(?<![\w/.~-])" + re.escape(planned) + r"(?![^/\\:\s])"
            text = re.sub(whole, named.replace("\\", "\\\\"), text)  # a literal path
    return text


def _untag(tag: str | None) -> str:
    return "" if tag is None else tag


def _tag(text: str) -> str | None:
    return text or None


def _work_item(path: Path, targets: dict[str | None, Path], todo: dict[str | None, Path],
               noted: set[Path]) -> str:
    """One dataset row: a planned image as JSON. Paths go as ``[absolute, as planned]``
    (workers have another working folder; the report shows the planned form); exit tags
    as '' for None."""
    return json.dumps({
        "input": [str(path.absolute()), str(path)],
        "targets": [[_untag(t), str(p.absolute()), str(p)] for t, p in targets.items()],
        "todo": [_untag(t) for t in todo],
        "noted": sorted({str(p.parent.absolute()) for p in todo.values() if p.parent in noted}),
    })


# --------------------------------------------------------------------------------------
# Driver side
# --------------------------------------------------------------------------------------


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401  (the [data] extra)
    except ImportError:
        raise ClusterError(
            "--engine ray needs Ray Data: pip install 'rbqe-studio[cluster]'") from None
    return ray


REACH_TIMEOUT_S = 10.0


def unreachable(address: str, timeout: float = REACH_TIMEOUT_S) -> str | None:
    """Why nothing answers at a Ray ``address`` of the form HOST:PORT or ray://HOST:PORT,
    or None (also for ``auto`` and other forms, which are left to Ray).

    Ray itself retries an address where nothing listens for as long as one waits (over
    5 minutes, printing a warning every 30 s), so the port is tried first.
    """
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return None
    except socket.gaierror:
        return f"no host is called {host}"
    except TimeoutError:
        return f"nothing answered within {timeout:g} s"
    except OSError as exc:
        return (exc.strerror or str(exc)).lower()  # connection refused, no route to host...


def _worker_fits(ray: Any, opts: RayOptions) -> None:
    """Raises :class:`ClusterError` when no live node has the CPUs and GPUs one worker
    takes: Ray would wait for such a node for ever."""
    need = {"CPU": opts.cpus_per_worker, "GPU": opts.gpus_per_worker}
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if any(all(res.get(k, 0) >= v for k, v in need.items()) for res in nodes):
        return
    def amount(res: dict[str, float]) -> str:
        return " and ".join(f"{res.get(k, 0):g} {k}{'' if res.get(k, 0) == 1 else 's'}"
                            for k in ("CPU", "GPU"))

    have = "; ".join(amount(res) for res in nodes) or "none"
    raise ClusterError(f"no node of the Ray cluster can hold a worker, which takes "
                       f"{amount(need)} (--gpus-per-worker); its nodes have: {have}")


@contextlib.contextmanager
def _connected(ray: Any, opts: RayOptions) -> Iterator[bool]:
    """Joins ``opts.address`` or starts a local instance, unless this process already
    has one (then it is left running). Yields whether this call started it."""
    problem = opts.address and unreachable(opts.address)
    if problem:
        raise ClusterError(f"cannot join the Ray cluster at {opts.address}: {problem} (is "
                           "`ray start --head` running there? its port is 6379, or 10001 "
                           "for ray://)")
    if ray.is_initialized():
        yield False
        return
    # ray.init puts its own SIGTERM handler (exit at once, a stack dump, no report) in
    # place of the caller's (the CLI's: stop after the images in hand, as Ctrl-C): kept.
    main = threading.current_thread() is threading.main_thread()
    term = signal.getsignal(signal.SIGTERM) if main else None
    try:
        quiet = not log.isEnabledFor(logging.INFO)  # 'rbqe -v' shows Ray's own logging
        ray.init(address=opts.address, num_cpus=opts.num_cpus if opts.address is None else None,
                 include_dashboard=False, log_to_driver=not quiet,
                 logging_level=logging.ERROR if quiet else logging.INFO)
        if callable(term) or term is signal.SIG_IGN:  # a caller's own; SIG_DFL: Ray's stays
            signal.signal(signal.SIGTERM, term)
        if quiet:
            logging.getLogger("ray.data").setLevel(logging.ERROR)
    except Exception as exc:  # ConnectionError, ValueError...: one line, not a traceback
        where = opts.address or "a local Ray instance"
        raise ClusterError(f"cannot start or join {where}: {exc}") from exc
    try:
        yield True
    finally:
        ray.shutdown()


def _pool_size(ray: Any, opts: RayOptions) -> int:
    if opts.workers:
        return opts.workers
    res = ray.cluster_resources()
    if opts.gpus_per_worker > 0:
        return max(1, int(res.get("GPU", 0) / opts.gpus_per_worker))
    return max(1, int(res.get("CPU", 1) / opts.cpus_per_worker))


def check_storage(ray: Any, opts: RayOptions, out_dir: Path, sample_input: Path | None) -> None:
    """Runs :func:`_probe_storage` on a worker (with a worker's resources) and raises
    :class:`ClusterError` naming the folder when the storage is not shared."""
    probe = ray.remote(num_cpus=opts.cpus_per_worker, num_gpus=opts.gpus_per_worker or None)(
        _probe_storage)
    problem = ray.get(probe.remote(str(out_dir.absolute()),
                                   None if sample_input is None else str(sample_input.absolute())))
    if problem:
        raise ClusterError(problem)


def run_ray_batch(
    enhancer_kwargs: dict[str, Any],
    inputs: Sequence[str | Path],
    options: BatchOptions,
    ray_options: RayOptions | None = None,
    *,
    report: Path | None = None,
    events: BatchEvents | None = None,
    cancel: Callable[[], bool] | None = None,
    worker: type[EnhanceWorker] = EnhanceWorker,
) -> RaySummary:
    """Enhances ``inputs`` into ``options.out_dir`` on Ray; the local engine's semantics.

    Args:
        enhancer_kwargs: Keyword arguments of :class:`~rbqe.engine.Enhancer` (weights,
            device, threshold, min_exit, tile), used on every worker.
        inputs: Files and folders, as for :func:`rbqe.batch.run_batch`.
        options: The batch options (output folder, exit mode, format...).
        ray_options: Cluster address and pool shape.
        report: Where to write the JSON report (rows in completion order).
        events: ``on_start(total)``, ``on_item_done(index, item)`` and ``on_finish()``
            (before the report is written) are called on the driver; ``index`` counts
            rows as they arrive.
        cancel: Polled five times a second; when true, the workers finish the image in
            hand and leave the rest, and the rows so far are reported with ``cancelled`` set.
        worker: The actor class (a subclass of :class:`EnhanceWorker`; tests use one
            that kills its own process).

    Raises:
        ClusterError: Ray missing or unreachable, or storage not shared.
        WeightsError: Bad weights (checked on the driver before Ray starts).
    """
    opts = ray_options or RayOptions()
    ev = events or BatchEvents()
    t0 = time.perf_counter()
    if enhancer_kwargs.get("weights"):  # workers run in another working folder
        enhancer_kwargs = {**enhancer_kwargs,
                           "weights": str(Path(enhancer_kwargs["weights"]).absolute())}
    # Checked here, on the driver: a bad weights file is one error before any worker starts.
    # (torch: an OpenVINO export here would cost a minute the workers pay anyway)
    local = Enhancer(**{**enhancer_kwargs, "device": "cpu", "backend": "torch",
                        "precision": "auto"})
    options = with_enhancer(options, local)  # the workers' outputs are noted as the driver's
    plan = plan_batch(inputs, options)
    summary = RaySummary(total=plan.total)
    stream = _ReportStream(report)
    index = 0

    def emit(entry: dict[str, Any], gmacs: tuple[float | None, float | None],
             item: ItemReport | None, said: Sequence[str] = ()) -> None:
        nonlocal index
        # A worker's warnings (a lost frame, a CMYK conversion, XMP left out) were logged
        # in its own process: said here, on the driver's stderr, as the local engine said
        # them ("in/a.png: ...", "in/a.png -> out/a.jpg: ..." of writing).
        for line in said:
            io_log.warning("%s", line)
        planned = plan.warnings.get(Path(entry["input"]))
        if planned:  # what planning warned of (a name taken by an input), as the local engine
            entry = {**entry, "warnings": list(dict.fromkeys([*planned,
                                                              *entry.get("warnings", [])]))}
            item = plan.with_warnings(item) if item is not None else None
        summary.add(entry, gmacs)
        stream.add(entry)
        if ev.on_item_done:
            ev.on_item_done(index, item or _item_from_json(entry))
        index += 1

    try:
        if ev.on_start:
            ev.on_start(plan.total)
        for failed in plan.unscanned:  # unreadable folders: failed rows, like the local engine
            emit(failed.to_json(), (None, None), failed)
        work: list[str] = []
        for path, _root in plan.files:
            targets = plan.targets[path]
            conflict = existing_conflict(path, targets, options, plan.notes)
            todo = {} if conflict else pending_outputs(targets, options)
            if not todo:
                item = conflict or skipped_item(path, targets, options.mode, plan.notes)
                emit(item.to_json(), (None, None), item)
            else:
                work.append(_work_item(path, targets, todo, plan.noted))
        aborted = False
        try:
            if work and not (cancel and cancel()):
                worker_options = replace(options, out_dir=Path(options.out_dir).absolute())
                summary.cancelled = _run_on_ray(worker, enhancer_kwargs, worker_options,
                                                opts, work, plan.files, summary, emit, cancel)
        except KeyboardInterrupt:  # a second Ctrl-C: at once, but the rows so far reported
            summary.cancelled = aborted = True
        if ev.on_finish:  # the report now: a later stop must not cut it short
            ev.on_finish()
        summary.total_ms = (time.perf_counter() - t0) * 1000
        device = ", ".join(sorted(summary.devices)) or str(local.device)
        backends = sorted(summary.backends)
        policy = local.policy
        try:
            stream.finish({"device": device,
                           "backend": ", ".join(b for b, _ in backends) or None,
                           "precision": ", ".join(p for _, p in backends) or None,
                           "weights": str(local.info.path) if local.info.path else None,
                           "threshold": local.threshold, "min_exit": local.min_exit,
                           "policy": policy.summary(),
                           "tile_exits": local.tile_exits},
                          summary.to_json())
        except OSError as exc:  # the outputs are done; the front end reports this
            summary.report_error = _report_problem(report or Path(), exc)
        if aborted:
            raise KeyboardInterrupt
    finally:
        stream.close()
    return summary


class _StopFlag:
    """A Ray actor the driver sets on a cancel; workers read it before each image."""

    def __init__(self) -> None:
        self.stopped = False

    def set(self) -> None:
        self.stopped = True

    def is_set(self) -> bool:
        return self.stopped


def _run_on_ray(worker: type[EnhanceWorker], enhancer_kwargs: dict[str, Any],
                options: BatchOptions, opts: RayOptions,
                work: list[str], files: list[tuple[Path, Path | None]], summary: RaySummary,
                emit: Callable[[dict[str, Any], Any, ItemReport | None, Sequence[str]], None],
                cancel: Callable[[], bool] | None) -> bool:
    """Maps ``work`` on a pool of :class:`EnhanceWorker`; returns whether it was cancelled."""
    ray = _import_ray()
    with _connected(ray, opts):
        _worker_fits(ray, opts)
        check_storage(ray, opts, options.out_dir, files[0][0] if files else None)
        with warnings.catch_warnings():  # Ray 2.60's own defaults trip its deprecations
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the CLI draws its own (count, ETA, failures)
        ctx.print_on_execution_start = False
        batch = max(1, opts.batch_size)
        blocks = math.ceil(len(work) / batch)
        size = min(_pool_size(ray, opts), blocks)  # no idle actors loading a model for nothing
        # One block per batch: a block is the unit a task takes, so small blocks spread the
        # images over the pool and a dead actor costs one batch.
        ds = ray.data.from_items([{"item": w} for w in work],
                                 override_num_blocks=blocks)
        stop = ray.remote(num_cpus=0)(_StopFlag).remote()
        mapped = ds.map_batches(
            worker,
            fn_constructor_kwargs={"enhancer_kwargs": enhancer_kwargs, "options": options,
                                   "threads": int(max(1, opts.cpus_per_worker)),
                                   "stop": stop},
            batch_size=batch,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=size),
            num_cpus=opts.cpus_per_worker,
            num_gpus=opts.gpus_per_worker or None,
            # A dead actor is restarted and its batch retried: Ray Data's defaults for
            # actor pools (max_restarts=-1, max_task_retries=-1); tests/test_cluster.py
            # kills one to hold this.
        )
        # A cancel stops gracefully, like the local engine's: the workers finish the image
        # in hand and leave the rest. Once every actor has left one alone, none is writing,
        # and the pool can be shut down without leaving a temp file or losing a row.
        stopping, idle = False, set()
        try:
            with _watch_cancel(cancel, stop):
                for out in mapped.iter_batches(batch_size=None, batch_format="numpy"):
                    for text, actor in zip(out["row"], out["actor"], strict=True):
                        if not text:
                            idle.add(str(actor))
                            continue
                        row = json.loads(str(text))
                        summary.devices.add(row["device"])
                        summary.backends.add(tuple(row["backend"]))
                        emit(row["entry"], tuple(row["gmacs"]), None, row.get("said", ()))
                        if summary.stopped is None and _stops(row, options.out_dir):
                            # A full disk fails every image in turn: stop, as the local engine.
                            reason = _os_reason(OSError(row["write_errno"], ""))
                            summary.stopped = (f"{options.out_dir}: cannot write to the output "
                                               f"folder ({reason}); batch stopped")
                    if not stopping and ((cancel is not None and cancel()) or summary.stopped):
                        stopping = True
                        stop.set.remote()
                    if stopping and len(idle) >= size:
                        break
        except ray.exceptions.RayError as exc:  # e.g. a worker that cannot load the model
            raise ClusterError(f"a Ray worker failed: {_last_line(exc)}") from exc
        finally:  # a driver that joined a running Ray keeps it: leave no actor behind
            ray.kill(stop)
    # Some images were left: cancelled (not when the last ones finished, nor when the
    # output folder stopped the batch: that is said in ``stopped``).
    return bool(idle) and summary.stopped is None


def _stops(row: dict[str, Any], out_dir: Path) -> bool:
    """Whether a worker's row is a write that stops the batch (:func:`rbqe.batch.
    stops_batch`: a full disk, or the output folder itself read-only; a read-only
    sub-folder fails its own images only)."""
    if row.get("write_errno") is None:
        return False
    item = ItemReport(Path(row["entry"]["input"]), "failed")
    item.write_errno = row["write_errno"]
    item.write_path = Path(row["write_path"]) if row.get("write_path") else None
    return stops_batch(item, out_dir)


@contextlib.contextmanager
def _watch_cancel(cancel: Callable[[], bool] | None, stop: Any) -> Iterator[None]:
    """Sets the workers' ``stop`` flag as soon as ``cancel()`` is true, polled five times a
    second while the block runs (and not after: the flag actor is killed then).

    The driver's loop sees a cancel only when a batch comes back: with ``--batch-size``
    8 and one worker that could be eight images later (Ctrl-C waited minutes). A CPU
    worker reads the flag before each image; a GPU worker before each batch, whose
    images walk the exits together.
    """
    if cancel is None:
        yield
        return
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.2):
            try:
                if cancel():
                    stop.set.remote()
                    return
            except KeyboardInterrupt:  # a cancel check that stops at once: stop the workers
                stop.set.remote()
                return
            except Exception:  # noqa: BLE001 - the loop's own check still stops the run
                log.debug("cancel watch failed", exc_info=True)
                return

    thread = threading.Thread(target=watch, name="rbqe-cancel-watch", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(2)


def _last_line(exc: BaseException) -> str:
    """The gist of a Ray error: its message ends with the worker's own exception line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _item_from_json(entry: dict[str, Any]) -> ItemReport:
    """The :class:`ItemReport` of a report row, for the front end's callbacks."""
    return ItemReport(
        Path(entry["input"]), entry["status"],
        outputs={k: Path(v) for k, v in entry["outputs"].items()},
        exit=entry["exit"], scores=entry["scores"], times_ms=entry["times_ms"],
        gmacs=entry["gmacs"], size=tuple(entry["size"]) if entry["size"] else None,
        error=entry.get("error"), tile_exits=entry.get("tile_exits"),
        tiling=entry.get("tiling"),
        warnings=entry.get("warnings", []))
