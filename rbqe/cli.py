"""The ``rbqe`` command line.

Exit codes: 0 all succeeded, 1 some inputs failed (or none held an image), 2 usage errors
(argparse) and setup errors such as a missing weights file, 130 stopped with Ctrl-C (143
with SIGTERM, 129 with SIGHUP: 128 + the signal's number).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from rbqe import __version__
from rbqe.arch import DEFAULT_TILE_EXITS, MULTIPLE, NUM_EXITS, TILE_EXITS
from rbqe.console import signal_note
from rbqe.errors import show_path
from rbqe.exit_policy import parse_exit_mode

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C


def _exit_mode(value: str) -> str | int:
    try:
        return parse_exit_mode(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _tile(value: str) -> int:
    """--tile: 0 (never tile) or a side the engine can use; it used to turn 1-127 into 128
    without a word (and five times the work of a normal tile)."""
    smallest = 4 * MULTIPLE  # rbqe.tiling.tile_side's floor
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of pixels, not {value!r}") from None
    if n != 0 and n < smallest:
        raise argparse.ArgumentTypeError(f"must be 0 (never tile) or at least {smallest} "
                                         f"pixels, not {n}")
    return n


def _int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer >= ``low`` (and <= ``high``), else one clear line."""
    span = f">= {low}" if high is None else f"{low}-{high}"

    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer {span}, not {value!r}") from None
        if n < low or (high is not None and n > high):
            raise argparse.ArgumentTypeError(f"must be {span}, not {n}")
        return n

    return parse


_count = _int_in(1)
# Checked here: an out-of-range value would otherwise fail every image at save time.
_quality = _int_in(1, 100)


def _score(value: str) -> float:
    """--threshold: an assessor score, 0-1. Outside that range it would force exit 5 (or
    the first exit allowed) on every image, most likely a typo (30 for 0.30)."""
    try:
        t = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a score 0-1, not {value!r}") from None
    if not 0.0 <= t <= 1.0:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"must be a score 0-1, not {value}")
    return t


def _amount(value: str, unit: str, zero: str) -> float:
    """A finite number of ``unit`` >= 0 (0 means ``zero``), else one clear line."""
    try:
        amount = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of {unit}, not {value!r}") from None
    if not math.isfinite(amount) or amount < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 {unit} (0 = {zero}), not {value}")
    return amount


def _megapixels(value: str) -> float:
    # --max-pixels: NaN and negatives used to turn the decompression-bomb guard off
    # without a word.
    return _amount(value, "megapixels", "no limit")


def _gpus(value: str) -> float:
    # --gpus-per-worker (a fraction shares a GPU): NaN reached Ray and failed there,
    # after its start-up.
    return _amount(value, "GPUs", "CPU workers")


def _suffix(value: str) -> str:
    # Output names are planned inside OUTDIR; a separator would escape it (and makes
    # rbqe.io.plan_outputs raise ValueError, which used to surface as a traceback).
    if any(sep and sep in value for sep in (os.sep, os.altsep, "/")) or value in (".", ".."):
        raise argparse.ArgumentTypeError(f"must not contain path separators: {value!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rbqe", description="RBQE: early-exit JPEG artifact removal")
    p.add_argument("--version", action="version", version=f"rbqe {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("enhance", help="enhance images or folders of images")
    e.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    e.add_argument("-o", "--out", required=True, metavar="OUTDIR", help="output folder")
    e.add_argument("--exit", dest="exit_mode", type=_exit_mode, default="auto",
                   metavar="|".join(["auto", *map(str, range(1, NUM_EXITS + 1)), "all"]),
                   help="exit mode (default auto)")
    e.add_argument("--policy", choices=["default", "assessor", "gate"], default="default",
                   help="how auto chooses the exit: the weights' default policy, the "
                        "assessor's threshold, or the learned gate (see 'rbqe info')")
    e.add_argument("--threshold", type=_score,
                   help="use the assessor rule: auto stops at the first exit whose quality "
                        "score reaches this (0-1), instead of the weights' default rule")
    e.add_argument("--min-exit", type=int, choices=range(1, NUM_EXITS + 1),
                   metavar=f"1..{NUM_EXITS}",
                   help="use the assessor rule, stopping no earlier than this exit "
                        "(default threshold and exit: from the weights)")
    e.add_argument("--device", default="auto", help="auto|cpu|cuda|cuda:N|mps")
    e.add_argument("--tile", type=_tile,
                   help=f"tile side in pixels, at least {4 * MULTIPLE} and rounded down to a "
                        f"multiple of {MULTIPLE}; images of more pixels than one tile are "
                        f"tiled (0 = never tile; default 1024, 512 under OpenVINO; torch in bf16 "
                        f"on the CPU then runs images of up to 2.1 MP whole)")
    e.add_argument("--tile-exits", choices=TILE_EXITS, default=DEFAULT_TILE_EXITS,
                   help="how auto chooses the exit of a tiled image: "
                        "per-tile (each tile stops where it needs to) or shared (one exit "
                        f"for the whole picture, from sample tiles); default "
                        f"{DEFAULT_TILE_EXITS}")
    e.add_argument("--backend", choices=["auto", "torch", "openvino"], default="auto",
                   help="who runs the network (default auto: on the CPU the fastest of "
                        "torch and OpenVINO, timed once per computer; torch on a GPU)")
    e.add_argument("--precision", choices=["auto", "f32", "bf16"], default="auto",
                   help="network precision (default auto: bf16 on CPUs with native bf16 if "
                        "it times faster, fp16 on CUDA, else f32)")
    # As typed, not a Path: Path("r/") drops the "/" that says it names a folder.
    e.add_argument("--report", metavar="FILE.json", help="write a JSON report")
    e.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    e.add_argument("--weights", type=Path, help="weights file (default: $RBQE_WEIGHTS if set, else the shipped one)")
    e.add_argument("-r", "--recursive", action="store_true", help="also scan sub-folders")
    e.add_argument("--format", dest="fmt", choices=["png", "jpeg", "webp"], default="png",
                   help="output format (default: lossless png)")
    e.add_argument("--quality", type=_quality,
                   help="JPEG/WebP quality 1-100 (default 95)")
    e.add_argument("--suffix", type=_suffix, default="", help="appended to output file names")
    e.add_argument("--strip-metadata", action="store_true",
                   help="leave EXIF, XMP, IPTC, PNG text and the comment out of outputs "
                        "(the ICC colour profile and the resolution are kept: they "
                        "describe the pixels)")
    e.add_argument("--strip-gps", action="store_true",
                   help="copy EXIF without the GPS location (camera, date etc. are kept)")
    e.add_argument("--max-pixels", type=_megapixels, default=200.0, metavar="MEGAPIXELS",
                   help="refuse images larger than this (decompression bombs; default 200; "
                        "0 = no limit)")
    c = e.add_argument_group("cluster (--engine ray, needs the [cluster] extra)")
    c.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: this process (default); ray: a Ray cluster or local instance")
    c.add_argument("--address", help="Ray cluster to join: auto, HOST:PORT of its head, or ray://HOST:PORT "
                   "(Ray Client: pip install 'ray[client]') (default: start a local "
                   "instance)")
    c.add_argument("--workers", type=_count, help="Ray workers, each loading the model once "
                   "(default: all CPUs, or GPUs / --gpus-per-worker)")
    c.add_argument("--gpus-per-worker", type=_gpus, default=0.0, metavar="F",
                   help="GPUs per Ray worker, e.g. 1 or 0.5 (default 0: CPU workers)")
    c.add_argument("--batch-size", type=_count, default=1, metavar="B",
                   help="images per Ray task (default 1)")

    i = sub.add_parser("info", help="print version, device and weights as JSON")
    i.add_argument("--weights", type=Path, help="weights file (default: $RBQE_WEIGHTS if "
                                                "set, else the shipped one)")
    i.add_argument("--device", default="auto",
                   help="auto|cpu|cuda|cuda:N|mps: the device to report (default auto)")

    from rbqe.train import commands  # training tools live apart; they add their parsers

    commands.add_parsers(sub)
    # -v also after the command (`rbqe enhance ... -v`), where users put it; SUPPRESS
    # keeps a -v given before the command when the subcommand has none.
    for parser in sub.choices.values():
        parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                            help="log details to stderr")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from rbqe.io.diagnostics import keep_python_stderr

    keep_python_stderr()  # before logging takes sys.stderr: decoders borrow fd 2
    handler = logging.StreamHandler()
    handler.setFormatter(_LineFormatter())
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        handlers=[handler])
    from rbqe.errors import RBQEError

    try:
        if args.command == "enhance":
            # argv not given: this is the program (the console script, python -m rbqe)
            return cmd_enhance(args, program=argv is None)
        if args.command == "info":
            return cmd_info(args)
        from rbqe.train import commands

        return commands.run(args)
    except RBQEError as exc:
        print(f"rbqe: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        # Second Ctrl-C (or one outside a batch): stop at once, one line, no traceback.
        # Outputs are written atomically, so nothing partial is left under a final name.
        print("\nrbqe: aborted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`rbqe info | head -1`): stop quietly, as Unix tools do.
        # stdout points at /dev/null so that the interpreter's final flush cannot fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED


class _LineFormatter(logging.Formatter):
    """``rbqe: warning: ...``, like the tool's other lines (``rbqe: error: ...``)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        return f"rbqe: {record.levelname.lower()}: {record.message}"


def _cpu_backend_info(net: Any) -> dict[str, Any]:
    """This CPU, and what ``--backend auto`` chose on it (measured on first use)."""
    from rbqe.backends import openvino_installed, recorded_auto_choice
    from rbqe.backends.choose import choice_path, cpu_model
    from rbqe.fastpath import native_bf16

    choice = recorded_auto_choice(net)
    return {"cpu": cpu_model(), "native_bf16": native_bf16(),
            "openvino_installed": openvino_installed(),
            "auto": choice if choice is not None else "not measured yet: chosen on first use",
            "choice_file": str(choice_path())}


def cmd_info(args: argparse.Namespace) -> int:
    from rbqe.engine import pick_device
    from rbqe.errors import RBQEError
    from rbqe.model import RBQENet, count_parameters, gmacs_per_exit
    from rbqe.weights import default_weights_path, file_identity, missing_weights_message, read_info

    path = args.weights or default_weights_path()
    out: dict[str, Any] = {"version": __version__, "device": str(pick_device(args.device))}
    info = None
    try:
        info = read_info(path) if path.is_file() else None
        error = None if info is not None else missing_weights_message(path)
    except RBQEError as exc:  # a file that is not weights: said as a missing one is
        error = str(exc)
    if info is not None:
        net = RBQENet(info.config)
        out.update({
            "weights": str(path),
            "weights_file": file_identity(info),
            "architecture": {
                "name": "rbqe-unetpp",
                "in_channels": info.config.in_channels,
                "out_channels": info.config.out_channels,
                "width": info.config.width,
                "refine_blocks": info.config.refine,
                "parameters": count_parameters(net),
            },
            # The rules auto can use (the assessor's threshold is in its params); top-level
            # "threshold" and "min_exit" read as if auto used them under the gate.
            "exit_policy": {
                "default": info.policies.default,
                "policies": {name: p.summary() for name, p in info.policies.policies.items()},
            },
            "gmacs_512": [round(g, 3) for g in gmacs_per_exit(net, 512, 512)],
            "cpu_backend": _cpu_backend_info(net),
        })
    else:
        out.update({"weights": None, "error": error})
    print(json.dumps(out, indent=2))
    return EXIT_OK if info is not None else EXIT_USAGE


class _Interrupt:
    """First Ctrl-C (or SIGTERM, SIGHUP): stop after the current stage. Second: stop at
    once. The exit code is 128 + the first signal's number, as shells report it.

    Once the images are done or left (:meth:`finish`), a signal stops nothing more: the
    report is written whole and the run ends with that code. A second Ctrl-C there used to
    cut the report short (a SIGTERM ended the process by the signal, without it)."""

    def __init__(self) -> None:
        self.requested = False
        self.signum: int = signal.SIGINT
        self.finishing = False
        self._then: str | None = None  # what a signal while finishing is told, once

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.requested and not self.finishing:
            raise KeyboardInterrupt
        first = not self.requested
        if first:
            self.requested, self.signum = True, signum
        ctrl_c = signum == signal.SIGINT
        how = "" if ctrl_c else f"{signal.Signals(signum).name}: "
        if not self.finishing:
            again = "Ctrl-C again" if ctrl_c else "send it again"
            signal_note(f"\nrbqe: {how}stopping after the current stage ({again} to abort)")
        elif self._then is not None:
            if first or self._then:  # a second "stopping" only where there is a wait
                signal_note(f"\nrbqe: {how}stopping{self._then}")
            self._then = None

    def finish(self, report: bool) -> None:
        """No image is in hand any more: from now on a signal only sets the exit code
        (and is told, once, that the ``report`` is written first)."""
        if not self.finishing:
            self.finishing = True
            self._then = " once the report is written" if report else ""

    def reported(self) -> None:
        """The report is written: a signal from now on is told nothing more is waited for."""
        if self._then:
            self._then = ""

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _restore(handlers: dict[signal.Signals, Any], *, for_good: bool) -> None:
    """Puts the caller's signal handlers back; ``for_good`` (the program itself, after a
    run a signal stopped: its exit code is decided and its report written), Python's own
    default ones become "ignore" instead. Another Ctrl-C while the interpreter shut down
    (most of a second, with torch) ended the process by the signal, with a traceback;
    a SIGTERM ended it as killed."""
    for sig, handler in handlers.items():
        if for_good and handler in (signal.SIG_DFL, signal.default_int_handler):
            handler = signal.SIG_IGN
        signal.signal(sig, handler)


def _stop_signals() -> list[signal.Signals]:
    """The signals that stop a batch as Ctrl-C does. SIGTERM (timeout, systemd, Slurm,
    kill) and SIGHUP used to kill it without its report, leaving a claim file behind.
    One ignored (nohup) or held by native code (Python could not put it back) is left
    alone."""
    stops = [signal.SIGINT]
    for name in ("SIGTERM", "SIGHUP"):  # no SIGHUP on Windows
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) not in (signal.SIG_IGN, None):
            stops.append(sig)
    return stops


def _quiet_opencv() -> None:
    """Stops OpenCV's native logger writing to stderr (e.g. ``[ WARN:0@0.6] ...
    PNG input buffer is incomplete`` for a truncated 16-bit PNG): rbqe.io already turns
    such a file into the one error line the CLI prints. ``-v`` keeps OpenCV's output."""
    try:
        import cv2

        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except (ImportError, AttributeError):  # pragma: no cover - very old/odd OpenCV builds
        pass


def cmd_enhance(args: argparse.Namespace, *, program: bool = False) -> int:
    """``rbqe enhance``; ``program``: run as the program itself (not called in-process),
    which ends with this run."""
    from rbqe.batch import BatchOptions
    from rbqe.engine import Enhancer
    from rbqe.io import SUPPORTED_SUFFIXES

    if not args.verbose:
        _quiet_opencv()

    ray_only = [f for f, given in (("--address", args.address), ("--workers", args.workers),
                                   ("--gpus-per-worker", args.gpus_per_worker),
                                   ("--batch-size", args.batch_size != 1)) if given]
    if args.engine == "local" and ray_only:
        _eprint(f"rbqe: error: {', '.join(ray_only)} only apply with --engine ray")
        return EXIT_USAGE
    assessor_only = [f for f, given in (("--threshold", args.threshold is not None),
                                        ("--min-exit", args.min_exit is not None)) if given]
    if args.policy == "gate" and assessor_only:
        # They used to replace the gate without a word (the report then said "assessor").
        one = len(assessor_only) == 1
        _eprint(f"rbqe: error: {' and '.join(assessor_only)} "
                f"{'sets' if one else 'set'} the assessor rule, so {'it' if one else 'they'} "
                f"cannot be used with --policy gate (leave out one or the other)")
        return EXIT_USAGE
    if "-" in args.inputs and not os.path.lexists("-"):
        # Read as a file named "-", it failed as "file not found" (after making -o).
        _eprint("rbqe: error: -: images are not read from standard input; give image "
                "files or folders")
        return EXIT_USAGE
    if args.quality is not None and args.fmt == "png":  # given (its default is None)
        _eprint("rbqe: warning: --quality applies to --format jpeg and webp only; "
                "PNG is lossless")
    out = Path(args.out)
    if not out.exists() and out.suffix.lower() in SUPPORTED_SUFFIXES:
        # `-o result.png` would otherwise make a folder of that name: say so before any work.
        _eprint(f"rbqe: error: -o {show_path(out)}: -o takes a folder (results keep their "
                f"input's name inside it), not an image file name")
        return EXIT_USAGE
    problem = _report_problem(args.report, out, args.inputs) if args.report else None
    if problem:
        _eprint(f"rbqe: error: --report {show_path(args.report)}: {problem}")
        return EXIT_USAGE
    report = Path(args.report) if args.report else None
    enhancer_kwargs = dict(weights=args.weights, device=args.device, threshold=args.threshold,
                           min_exit=args.min_exit, tile=args.tile,
                           tile_exits=args.tile_exits,
                           policy=None if args.policy == "default" else args.policy,
                           backend=args.backend, precision=args.precision)
    # The Ray engine loads the model on its workers (and checks the weights on its own).
    enhancer = Enhancer(**enhancer_kwargs) if args.engine == "local" else None
    options = BatchOptions(
        out_dir=Path(args.out), mode=args.exit_mode, recursive=args.recursive,
        overwrite=args.overwrite, fmt=args.fmt,
        quality=95 if args.quality is None else args.quality, suffix=args.suffix,
        keep_metadata=not args.strip_metadata, strip_gps=args.strip_gps,
        max_pixels=int(args.max_pixels * 1e6) if args.max_pixels > 0 else None,
    )
    interrupt = _Interrupt()
    old = {sig: signal.signal(sig, interrupt) for sig in _stop_signals()}
    try:  # rbqe's handlers until the report is written and the last line said
        return _enhance_and_report(args, enhancer, enhancer_kwargs, report, options, interrupt)
    finally:
        _restore(old, for_good=program and interrupt.requested)


def _enhance_and_report(args: argparse.Namespace, enhancer: Any,
                        enhancer_kwargs: dict[str, Any], report: Path | None, options: Any,
                        interrupt: _Interrupt) -> int:
    """Runs the batch (``enhancer`` None: on Ray), writes its report, says its summary;
    returns the exit code."""
    from tqdm import tqdm

    from rbqe.batch import BatchEvents, BatchSummary, report_json, run_batch, stopped_item

    bar: Any = None
    progress = _ProgressLines()  # when stderr is not a terminal (a pipe, a log file)
    done_items: list[Any] = []
    in_hand: dict[int, Path] = {}  # started, not done: what a second Ctrl-C leaves

    def on_start(total: int) -> None:
        nonlocal bar
        progress.start(total)
        bar = tqdm(total=total, unit="img", disable=not sys.stderr.isatty(), file=sys.stderr,
                   dynamic_ncols=True)

    def on_item_start(index: int, path: Path) -> None:
        in_hand[index] = path
        if bar is not None:
            with _on_stderr():
                bar.set_postfix_str(show_path(path.name), refresh=True)

    failures = 0

    def on_item_done(index: int, item: Any) -> None:
        nonlocal failures
        in_hand.pop(index, None)
        done_items.append(item)
        if item.status == "failed":
            failures += 1
        with _on_stderr():
            _show_done(item)

    def _show_done(item: Any) -> None:
        if item.status == "failed":
            if bar is not None and enhancer is None:  # Ray: rows come in any order, no name
                bar.set_postfix_str(f"{failures} failed", refresh=False)
            msg = f"rbqe: error: {item.error}"
            if bar is not None and not bar.disable:
                # tqdm.write prints to stdout unless told otherwise; errors belong on
                # stderr, above the bar.
                bar.write(msg, file=sys.stderr)
            else:
                _eprint(msg)
        if bar is not None:
            bar.update(1)
            line = progress.line(item)
            if bar.disable and item.status != "failed":  # a failure has its error line
                _eprint(line)

    events = BatchEvents(on_start=on_start, on_item_start=on_item_start,
                         on_item_done=on_item_done,
                         on_finish=lambda: interrupt.finish(report is not None))
    report_failed = False
    t0 = time.perf_counter()
    aborted = False
    try:
        if enhancer is None:
            summary = _run_ray(args, enhancer_kwargs, report, options, events,
                               lambda: interrupt.requested)
        else:
            summary = run_batch(enhancer, args.inputs, options, events=events,
                                cancel=lambda: interrupt.requested)
    except KeyboardInterrupt:
        # Second Ctrl-C: stop at once, but keep the report of what was done, and of the
        # images it caught in hand.
        interrupt.finish(report is not None)
        aborted = True
        summary = BatchSummary(done_items, (time.perf_counter() - t0) * 1000, cancelled=True,
                               total=progress.total, mode=options.mode,
                               stopped_at=[stopped_item(path) for path in in_hand.values()])
    finally:
        interrupt.finish(report is not None)  # a signal now cuts nothing short
        if bar is not None:
            with _on_stderr():
                bar.close()
    # The Ray engine writes its own report; after a second Ctrl-C the summary is the
    # local one made here, which has no report_error (that was an AttributeError).
    report_error = getattr(summary, "report_error", None) if enhancer is None else None
    if report_error:
        report_failed = True
        _eprint(f"rbqe: error: {report_error}")
    if report and enhancer is not None:
        try:
            _write_json(report, report_json(enhancer, summary))
        except OSError as exc:
            report_failed = True
            _eprint(f"rbqe: error: {report}: cannot write report: "
                    f"{exc.strerror or exc}")
    interrupt.reported()
    if aborted:
        _eprint("\nrbqe: aborted")
        return interrupt.exit_code
    n = summary.total if summary.total is not None else len(summary.items)
    if n == 0:  # "0 enhanced, 0 skipped, 0 failed of 0" said nothing more
        _eprint(_nothing_found(args.inputs, args.recursive))
    else:
        _eprint(f"rbqe: {summary.processed} enhanced, {summary.skipped} skipped, "
                f"{summary.failed} failed of {n}"
                + (" (interrupted)" if summary.cancelled else ""))
    if summary.stopped:
        _eprint(f"rbqe: error: {summary.stopped}")
    if summary.cancelled or interrupt.requested:
        # Also when the stop came after the last image's last check (or, with Ray, while
        # the last ones finished): "stopping" was said, and a wrapper (timeout, Slurm)
        # reads the exit code as the signal's, whatever was left to do.
        return interrupt.exit_code
    # Nothing found fails as a missing input file does: a script must not go on as if
    # the photos were enhanced (an empty folder used to exit 0).
    return EXIT_FAILED if summary.failed or report_failed or n == 0 else EXIT_OK


def _run_ray(args: argparse.Namespace, enhancer_kwargs: dict[str, Any], report: Path | None,
             options: Any, events: Any, cancel: Any) -> Any:
    from rbqe.cluster import RayOptions, run_ray_batch

    ray_options = RayOptions(address=args.address, workers=args.workers,
                             gpus_per_worker=args.gpus_per_worker, batch_size=args.batch_size)
    return run_ray_batch(enhancer_kwargs, args.inputs, options, ray_options,
                         report=report, events=events, cancel=cancel)


class _ProgressLines:
    """One stderr line per image, with the count and an ETA, for when no bar is shown."""

    def __init__(self) -> None:
        self.total = 0
        self.done = 0
        self.t0 = time.perf_counter()

    def start(self, total: int) -> None:
        self.total, self.done, self.t0 = total, 0, time.perf_counter()

    def line(self, item: Any) -> str:
        self.done += 1
        elapsed = time.perf_counter() - self.t0
        what = {"ok": _exit_words(item), "skipped": "skipped (output exists)",
                "failed": "failed"}.get(item.status, item.status)
        text = f"rbqe: [{self.done}/{self.total}] {show_path(item.input)}: {what}"
        left = self.total - self.done
        if left and item.status != "skipped":
            eta = elapsed / self.done * left
            text += f"; ETA {int(eta // 60)}:{int(eta % 60):02d}"
        return text


def _exit_words(item: Any) -> str:
    """``exit 3``, or for per-tile exits where the tiles went elsewhere than the sample
    tiles' decision (the report's ``exit``), where they went: ``exit 3 (tiles: 21 at 4)``;
    under ``--exit all``, ``exits 1-5 written (auto: exit 3)``."""
    if len(item.outputs) > 1:  # every exit written: "exit 3" read as if only one was
        return f"exits 1-{len(item.outputs)} written (auto: exit {item.exit})"
    words = f"exit {item.exit}"
    histogram = (item.tile_exits or {}).get("histogram") or {}
    counts = {int(k): n for k, n in histogram.items() if n}
    if counts and set(counts) != {item.exit}:
        words += " (tiles: " + ", ".join(f"{n} at {k}" for k, n in sorted(counts.items())) + ")"
    return words


def _eprint(msg: str) -> None:
    try:
        print(msg, file=sys.stderr, flush=True)
    except OSError:
        _stderr_gone()


@contextlib.contextmanager
def _on_stderr() -> Iterator[None]:
    """Progress drawn on stderr: a write that fails there must not stop the batch."""
    try:
        yield
    except OSError:
        _stderr_gone()


def _stderr_gone() -> None:
    """After a write to stderr failed (a hung-up terminal: EIO; a closed pipe: EPIPE),
    stderr goes nowhere, so that no later progress or summary line stops the batch
    with a traceback: the report still says what was done."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stderr.fileno())
        os.close(devnull)


def _nothing_found(inputs: Sequence[str], recursive: bool) -> str:
    """The line for a run that found no image, with the likely reason."""
    folders = [Path(p) for p in inputs if Path(p).is_dir()]
    if not recursive and any(_has_subfolder(f) for f in folders):
        return "rbqe: error: no images found; their sub-folders were not scanned (add -r)"
    return "rbqe: error: no images found in the inputs"


def _has_subfolder(folder: Path) -> bool:
    try:
        with os.scandir(folder) as entries:
            return any(e.is_dir() and not e.name.startswith(".") for e in entries)
    except OSError:
        return False


def _report_problem(typed: str, out: Path, inputs: Sequence[str]) -> str | None:
    """Why the JSON report must not go to ``typed`` (--report as given), or None; checked
    before any image is enhanced. ``--report IMG_1.jpg IMG_2.jpg`` takes the first photo
    for the report's name: it used to be written over. And a report that cannot be
    written used to be found out only after hours of work. Creates the report's folder
    (as ``-o`` does)."""
    from rbqe.io import SUPPORTED_SUFFIXES
    from rbqe.io.atomic import names_folder, unwritable_file
    from rbqe.io.diagnostics import _os_reason
    from rbqe.io.identity import path_key

    report = Path(typed)
    # `--report runs/` that does not exist yet used to become a report file named runs.
    if names_folder(typed):
        return "is a folder; give a file name inside it (report.json)"
    if report.suffix.lower() in SUPPORTED_SUFFIXES:
        return "that is an image's name, and the report is JSON (say --report report.json)"
    if report.name.startswith(".rbqe-"):  # the output log, a temp or a claim
        return "that name is rbqe's own bookkeeping; choose another (report.json)"
    # os.path, not Path: Path.is_dir raises on a name too long for the file system.
    if os.path.isdir(report) or path_key(report) == path_key(out):
        return "is a folder; give a file name inside it (report.json)"
    if os.path.exists(report):
        if path_key(report) in {path_key(p) for p in inputs}:
            return "is one of the inputs"
        if not _is_report(report):
            return ("exists and is not an rbqe JSON report; rbqe does not write over it "
                    "(remove it, or choose another name)")
    problem = unwritable_file(report)
    if problem:
        return problem
    if not os.path.exists(report):
        try:  # the name itself (too long for the file system, say)
            with open(report, "x"):
                pass
            os.unlink(report)
        except OSError as exc:
            return f"cannot be written: {_os_reason(exc)}"
    return None


def _is_report(path: Path) -> bool:
    """Whether ``path`` is empty or an earlier rbqe report: both engines write
    ``{"device": ...`` first. Any JSON used to pass, so a catalogue's ``photos.json`` or
    a ``package.json`` given to --report was replaced without a word."""
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:
        return False
    return not head.strip() or re.match(rb'\s*\{\s*"device"\s*:', head) is not None


def _write_json(path: Path, data: Any) -> None:
    """Atomic JSON write, so a report is either complete or absent; it gets the file mode
    of the outputs (rbqe.io's atomic write)."""
    from rbqe.io import write_bytes_atomic

    write_bytes_atomic(path, (json.dumps(data, indent=2) + "\n").encode())


if __name__ == "__main__":
    sys.exit(main())
