"""``rbqe train``, ``rbqe eval`` and ``rbqe calibrate``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rbqe.arch import NUM_EXITS
from rbqe.errors import UsageError

DEFAULT_QF = [10, 20, 30, 40, 50]
PLOT_SUFFIXES = ("", ".png", ".pdf", ".svg")  # no suffix: PNG


def _whole(value: str, unit: str = "") -> int:
    """An option's whole number, or argparse's one-line error."""
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a whole number{unit}, not {value!r}") from None


def _patch(value: str) -> int:
    """--patch: a multiple of 32 from 32 on. 100 trained 96 px crops logged as 100 (the
    curve then counted the pixels wrong); 16 failed deep in OpenCV."""
    n = _whole(value, " of pixels")
    if n < 32 or n % 32:
        raise argparse.ArgumentTypeError(f"must be a multiple of 32 from 32 on, not {n}")
    return n


def _quality(value: str) -> int:
    """--qf: a JPEG quality, 1-100 (101 ran as 100 under the label 101)."""
    n = _whole(value)
    if not 1 <= n <= 100:
        raise argparse.ArgumentTypeError(f"a JPEG quality is 1-100, not {n}")
    return n


def _limit(value: str) -> int:
    """--limit: a number of images, 0 for all (-3 took all but the last 3)."""
    n = _whole(value)
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (all) or more, not {n}")
    return n


def add_parsers(sub: Any) -> None:
    t = sub.add_parser(
        "train", help="train RBQE weights on folders of clean photos (resumes --out)",
        description="Train, or resume the training state in --out. On resume every recipe "
                    "option not given here is taken from the stored state, so "
                    "'rbqe train --out weights/training --time-budget 3600' continues the "
                    "committed run for an hour.")
    t.add_argument("--data", nargs="+", metavar="DIR", help="clean training photos")
    t.add_argument("--val", nargs="*", metavar="DIR", help="validation photos")
    t.add_argument("--out", type=Path, default=Path("runs/rbqe"),
                   help="run folder, resumed if it holds a training state (default runs/rbqe)")
    t.add_argument("--channels", type=int, choices=[1, 3],
                   help="3 = RGB, the shipped model (default); 1 = Y (luma only)")
    t.add_argument("--width", type=int, help="base channels (default 32)")
    t.add_argument("--steps", type=int,
                   help="stop at this total step (default: no limit but the time budget)")
    t.add_argument("--patch", type=_patch, help="crop size, a multiple of 32 (default 96)")
    t.add_argument("--batch", type=int, help="patches per step (default 10)")
    t.add_argument("--lr", type=float, help="peak Adam learning rate (default 1e-3)")
    t.add_argument("--schedule", choices=("constant", "cosine"),
                   help="constant after warm-up (default; extendable) or cosine to --steps")
    t.add_argument("--cooldown", type=int, dest="cooldown_steps", metavar="STEPS",
                   help="a cool-down branch for shipping: decay the rate linearly to 1e-5 "
                        "over the next STEPS steps, then stop. Run it on a copy of the "
                        "state (cp DIR/checkpoint.pt BRANCH/), not on the main one; "
                        "--cooldown 0 makes a branch a constant-rate run again")
    t.add_argument("--ema-decay", type=float, metavar="D",
                   help="EMA of the weights for validation and export (default 0.999; 0 = off)")
    t.add_argument("--ema-slow-decay", type=float, metavar="D",
                   help="a second, slower EMA beside it (e.g. 0.9998), validated too and "
                        "exported as ema_slow.safetensors; it starts from the first EMA "
                        "when added to a running state (default 0 = off)")
    t.add_argument("--loss", choices=["mse", "charbonnier"], help="default mse")
    t.add_argument("--seed", type=int)
    t.add_argument("--device", default="auto",
                   help="auto|cpu|cuda|cuda:N|mps (default auto: a GPU when there is one)")
    t.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    t.add_argument("--bf16", action="store_true",
                   help="bf16 autocast (CUDA, and CPUs with AVX512-BF16 or AMX: about 2x; "
                        "refused on other CPUs, where it is emulated, ~15x slower)")
    t.add_argument("--no-channels-last", action="store_true")
    t.add_argument("--val-every", type=int, help="steps between validations (default 250)")
    t.add_argument("--workers", type=int, default=0,
                   help="batch-making processes per rank (default 0; like --procs and "
                        "--threads, a choice for this machine, not kept for a resume)")
    t.add_argument("--procs", type=int, default=1, metavar="N",
                   help="CPU data parallelism: N processes share each batch (default 1), "
                        "each with --threads threads (default: the cores shared out "
                        "between them). On a 2-core "
                        "CPU --procs 2 made 1.0-1.15x the steps/s of one process at batch "
                        "32 and 1.9x at batch 64")
    t.add_argument("--init", type=Path, metavar="WEIGHTS", help="start from these weights")
    t.add_argument("--init-patches", type=int, default=0, metavar="N",
                   help="patches the --init weights already saw (for the cumulative log)")
    t.add_argument("--time-budget", type=float, default=0.0, metavar="SECONDS",
                   help="stop after about this long, in wall-clock seconds (a paused "
                        "run's pause counts; cosine: size the schedule to it; default 0: "
                        "no limit)")
    t.add_argument("--light-share", type=float, metavar="FRACTION",
                   help="share of patches compressed at QF 51-95, the rest at QF 10-50 "
                        "(default 0.25; 0 = the paper's range only)")
    t.add_argument("--gray-share", type=float, metavar="FRACTION",
                   help="RGB model: share of patches turned gray (default 0.2)")
    t.add_argument("--aligned-share", type=float, metavar="FRACTION",
                   help="share of crops on the photo's own 16-pixel JPEG grid, so that a "
                        "re-saved JPEG's double compression is trained too (default 0)")
    t.add_argument("--exit-weighting", choices=["paper", "balanced", "late", "light"],
                   help="per-exit loss weights by quality: the paper's table (default), or "
                        "balanced (exit 5 weighted >= 1 up to QF 50, early exits favoured "
                        "at QF 70-90), late (balanced with exit 5 weighted 1.5x at QF "
                        "10-30) or light (balanced with exits 3-5 weighted 2x at QF 70, 4x "
                        "at QF 90-95)")
    t.add_argument("--relative-exits", type=int, choices=range(6), metavar="N",
                   help="exits 1..N weigh each patch by 1 / its input's MSE (mean 1), so "
                        "light JPEGs count as much as heavy ones there (default 0: off)")
    t.add_argument("--relative-late-power", type=float, metavar="P",
                   help="the exits after N weigh each patch by that relative weight to the "
                        "power P (mean 1): 0 plain MSE (default), 1 as exits 1..N do")
    t.add_argument("--relative-cap", type=float, metavar="C",
                   help="no relative weight above C times the batch's mean (then scaled "
                        "back to mean 1); default 0: no cap")
    t.add_argument("--no-harm", type=float, metavar="F",
                   help="where an exit's output is worse than its input, count the excess "
                        "loss 1 + F times (no exit worse than the input); default 0: off")
    t.add_argument("--no-harm-exits", type=int, choices=range(1, 6), metavar="N",
                   help="--no-harm on exits 1..N only (default 5: all)")
    t.add_argument("--checkpoint-every", type=float, default=120.0, metavar="SECONDS",
                   help="save the training state this often (default 120)")

    p = sub.add_parser("train-curve", help="plot a training log: val gain per exit vs pixels seen")
    p.add_argument("logs", nargs="+", type=Path, metavar="LOG.jsonl")
    p.add_argument("--plot", required=True, metavar="F.png")
    p.add_argument("--x", choices=("pixels", "patches"), default="pixels",
                   help="x-axis: pixels seen (each record's patch size; default) or patches")
    p.add_argument("--before-patch", type=int, metavar="PX",
                   help="size of the patches counted before the log's first record "
                        "(default: the first record's own)")

    e = sub.add_parser("eval", help="measure PSNR/SSIM/PSNR-B per exit and auto on clean photos")
    e.add_argument("dirs", nargs="+", metavar="DIR")
    e.add_argument("--qf", nargs="+", type=_quality, default=DEFAULT_QF,
                   help=f"JPEG qualities (default {' '.join(map(str, DEFAULT_QF))})")
    e.add_argument("--weights", type=Path,
                   help="weights file (default: $RBQE_WEIGHTS if set, else the shipped one)")
    e.add_argument("--policy", choices=["default", "assessor", "gate"], default="default",
                   help="how the auto column chooses: the weights' default policy (what "
                        "'rbqe enhance' uses), the assessor's threshold, or the learned gate")
    e.add_argument("--threshold", type=float,
                   help="the assessor's quality-score threshold: the assessor rule with it")
    e.add_argument("--min-exit", type=int, choices=range(1, NUM_EXITS + 1),
                   metavar=f"1..{NUM_EXITS}",
                   help="the assessor rule from this exit on (default: from the weights)")
    e.add_argument("--device", default="auto", help="auto|cpu|cuda|cuda:N|mps (default auto)")
    _add_backend_args(e)
    e.add_argument("--gray", action="store_true", help="convert images to grayscale first")
    e.add_argument("--limit", type=_limit, default=0, metavar="N",
                   help="use only the first N images (default 0: all)")
    e.add_argument("--json", help="write the full table as JSON")
    e.add_argument("--plot", help="write a dPSNR vs GMACs plot (PNG)")
    e.add_argument("--save-records", metavar="FILE",
                   help="keep per-image measurements (for calibrate --records)")
    e.add_argument("--save-gate-records", metavar="FILE.npz",
                   help="keep every exit's PSNR and the gate's features per image, in the "
                        "gate's record format, so that gates can be measured on these "
                        "photos without a rerun")
    e.add_argument("--records", type=Path, nargs="+", metavar="FILE",
                   help="summarise saved measurements instead of running the network")

    c = sub.add_parser("calibrate",
                       help="fit an exit policy (assessor threshold, or the learned gate) "
                            "and choose its operating point on val photos")
    c.add_argument("dirs", nargs="+", metavar="DIR", help="val photos")
    c.add_argument("--policy", choices=["assessor", "gate"], default="assessor",
                   help="assessor: earliest exit + IQA threshold; gate: train the learned "
                        "gate on --train photos, choose its operating point on DIR "
                        "(default assessor)")
    c.add_argument("--train", nargs="+", type=Path, default=[], metavar="DIR",
                   help="gate: train photos (never val)")
    c.add_argument("--train-limit", type=int, default=80,
                   help="gate: train photos used, spread over the sorted list (default 80)")
    c.add_argument("--crop", type=int, default=256,
                   help="gate: centred crop side of each photo, 0 = whole (default 256)")
    c.add_argument("--records-dir", type=Path, default=Path("runs/gate"),
                   help="gate: where records are saved and reused (default runs/gate)")
    c.add_argument("--blind-tolerance", type=float, default=0.1,
                   help="gate: worst-QF loss in dB allowed without tables or with lying "
                        "ones (default 0.1)")
    c.add_argument("--tau-per-exit", action="store_true",
                   help="gate: refine the one threshold into one per exit")
    c.add_argument("--make-default", action="store_true",
                   help="gate: make the fitted gate the weights' default policy")
    c.add_argument("--qf", nargs="+", type=_quality, default=DEFAULT_QF,
                   help=f"JPEG qualities (default {' '.join(map(str, DEFAULT_QF))})")
    c.add_argument("--weights", type=Path,
                   help="the weights to measure, into which the fitted exit rule is written "
                        "(required unless --dry-run: the shipped file is changed only when "
                        "named)")
    c.add_argument("--device", default="auto", help="auto|cpu|cuda|cuda:N|mps (default auto)")
    _add_backend_args(c)
    c.add_argument("--gray", action="store_true", help="convert images to grayscale first")
    c.add_argument("--limit", type=_limit, default=0, metavar="N",
                   help="use only the first N val images (default 0: all)")
    c.add_argument("--tolerance", type=float,
                   help="dB below exit 5 allowed at every QF (default 0.1 for the assessor, "
                        "0.05 for the gate)")
    c.add_argument("--plot", help="write the policies' frontier plot (PNG)")
    c.add_argument("--json", help="write the fitted rule and its table as JSON")
    c.add_argument("--dry-run", action="store_true", help="do not write the exit rule")
    c.add_argument("--records", type=Path, nargs="+", metavar="FILE",
                   help="use measurements saved by 'rbqe eval --save-records' (same weights)")


def _add_backend_args(p: argparse.ArgumentParser) -> None:
    # Measurements default to the reference network (torch, float32), not to what
    # 'enhance --backend auto' picks on this machine, so that figures compare across CPUs;
    # name a backend and precision to measure those (e.g. the PSNR cost of bf16).
    p.add_argument("--backend", choices=["auto", "torch", "openvino"], default="torch",
                   help="who runs the network (default torch: the reference)")
    p.add_argument("--precision", choices=["auto", "f32", "bf16"], default="f32",
                   help="network precision (default f32: the reference)")


# Options that name a file to write. They are parsed as typed, not as Paths: Path("p/")
# drops the "/" that says it names a folder; run() checks them, then makes them Paths.
_OUTPUT_FILES = ("plot", "json", "save_records", "save_gate_records")


def run(args: argparse.Namespace) -> int:
    from rbqe.io.atomic import names_folder

    commands = {"train": _train, "train-curve": _train_curve, "eval": _eval,
                "calibrate": _calibrate}
    for name in _OUTPUT_FILES:
        typed = getattr(args, name, None)
        if typed is not None:
            # `--json runs/` that did not exist yet used to become a file named runs.
            if names_folder(typed):
                raise UsageError(f"{typed}: is a folder; give a file name")
            setattr(args, name, Path(typed))
    if getattr(args, "plot", None):  # before minutes of measuring, not after them
        from rbqe.train.plotting import pyplot

        pyplot()
        if args.plot.suffix.lower() not in PLOT_SUFFIXES:
            raise UsageError(f"--plot {args.plot}: name the plot .png, .pdf or .svg")
    return commands[args.command](args)


# Options a resumed run takes from its stored state unless given again, with the
# defaults of a new run. (TrainConfig field -> default.)
_RECIPE = {"channels": 3, "width": 32, "refine": 0, "patch": 96, "batch": 10, "lr": 1e-3,
           "loss": "mse", "seed": 0, "schedule": "constant", "ema_decay": 0.999,
           "ema_slow_decay": 0.0,
           "val_every": 250,
           "light_share": None, "gray_share": None, "aligned_share": None,
           "train_dirs": None, "val_dirs": [],
           "val_images": 12, "exit_weighting": "paper", "cooldown_steps": 0,
           "cooldown_from": -1, "relative_exits": 0, "relative_late_power": 0.0,
           "relative_cap": 0.0, "no_harm": 0.0, "no_harm_exits": 5}


def _train(args: argparse.Namespace) -> int:
    from rbqe.train.loop import MAX_STEPS, TrainConfig, stored_config, train

    given = {"train_dirs": args.data, "val_dirs": args.val}
    given.update({k: getattr(args, k) for k in _RECIPE if hasattr(args, k)})
    stored = stored_config(args.out)
    recipe: dict[str, Any] = {}
    for key, default in _RECIPE.items():
        value: Any = given.get(key)
        if value is None:
            value = stored.get(key, default)
        if value is not None:
            recipe[key] = [str(d) for d in value] if key.endswith("_dirs") else value
    if "train_dirs" not in recipe:
        raise UsageError("--data is required for a new run "
                         f"(no training state in {args.out})")
    from rbqe.engine import pick_device

    args.device = str(pick_device(args.device))  # auto: a GPU when there is one
    if args.procs < 1 or (args.procs > 1 and args.device != "cpu"):
        raise UsageError("--procs N (N >= 1) shares CPU training between N "
                         f"processes; got --procs {args.procs} --device {args.device}")
    if recipe["batch"] < 1:
        raise UsageError(f"--batch must be 1 or more, not {recipe['batch']}")
    if not recipe["lr"] > 0:
        raise UsageError(f"--lr must be above 0, not {recipe['lr']}")
    _prepare_outputs(args.out / "checkpoint.pt")
    if recipe.get("relative_late_power", 0.0) < 0:
        raise UsageError("--relative-late-power must be >= 0, got "
                         f"{recipe['relative_late_power']}")
    cap = recipe.get("relative_cap", 0.0)
    if cap != 0 and cap < 1:  # the weights average 1: a cap below that flattens them all
        raise UsageError(f"--relative-cap must be 0 (off) or >= 1, got {cap}")
    if recipe.get("no_harm", 0.0) < 0:
        raise UsageError(f"--no-harm must be >= 0, got {recipe['no_harm']}")
    for name in ("light_share", "gray_share", "aligned_share"):
        value = recipe.get(name)
        if value is not None and not 0.0 <= value <= 1.0:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} must be in [0, 1], got {value}")
    if args.bf16 and args.device == "cpu":
        from rbqe.fastpath import native_bf16
        if not native_bf16():
            # autocast would emulate bf16: on a 2-core AVX2 EPYC 0.02 steps/s against f32's
            # 0.33 (2026-12-05), while native bf16 runs about 2x faster than f32.
            raise UsageError("--bf16: this CPU has no native bf16 (AVX512-BF16 "
                             "or AMX), so autocast would emulate it, about 15x slower than "
                             "f32 here; leave --bf16 out")
    cfg = TrainConfig(
        out_dir=str(args.out), steps=args.steps or MAX_STEPS, device=args.device, threads=args.threads,
        bf16=args.bf16, channels_last=not args.no_channels_last,
        checkpoint_every_s=args.checkpoint_every, workers=args.workers, procs=args.procs,
        init_weights=str(args.init or ""), init_patches=args.init_patches,
        time_budget_s=args.time_budget, **recipe,
    )
    if stored:
        print(f"rbqe train: resuming {args.out} (step {stored.get('step', '?')})",
              file=sys.stderr)
    train(cfg, on_line=lambda line: print(line, file=sys.stderr, flush=True))
    # What was written, and only that: "best" was named even where no file existed
    # (no --val), or held the untrained step-0 weights.
    out = Path(args.out)
    step = stored_config(out).get("step")
    print(f"rbqe train: stopped at step {step}; the training state is in "
          f"{out / 'checkpoint.pt'} (resume: rbqe train --out {out})", file=sys.stderr)
    written = {name: str(out / f) for name, f in (
        ("checkpoint", "checkpoint.pt"), ("last", "last.safetensors"),
        ("ema", "ema.safetensors"), ("best_val", "best.safetensors")) if (out / f).is_file()}
    print(json.dumps({"out": str(out), "step": step, **written}))
    return 0


def _train_curve(args: argparse.Namespace) -> int:
    from rbqe.train.curve import plot_curve

    _prepare_outputs(args.plot)  # (a folder given got a .png beside it)
    written = plot_curve(args.logs, args.plot, x=args.x, before_patch=args.before_patch)
    print(f"rbqe: wrote {written}", file=sys.stderr)
    return 0


def _records(args: argparse.Namespace, threshold: float | None = None,
             min_exit: int | None = None, policy: str = "assessor",
             skipped: list[dict[str, str]] | None = None) -> tuple[Any, list[Any]]:
    from tqdm import tqdm

    from rbqe.engine import Enhancer
    from rbqe.train.evaluate import collect, list_clean_images, load_records, records_weights

    enhancer = Enhancer(args.weights, device=args.device, threshold=threshold,
                        min_exit=min_exit, tile=0,
                        policy=None if policy == "default" else policy,
                        backend=args.backend, precision=args.precision)
    if args.records:
        from rbqe.backends.cache import weights_hash

        mine = weights_hash(enhancer.net)
        for f in args.records:
            made_by = records_weights(f)
            if made_by is not None and made_by.get("hash") != mine:
                # They used to be reported as these weights' figures.
                raise UsageError(f"{f}: these records were made with {made_by.get('path')}, "
                                 f"not with {enhancer.info.path}; run again without "
                                 "--records, or give the weights that made them")
        wanted = set(args.qf)
        records = [r for f in args.records for r in load_records(f) if r.qf in wanted]
        rule = enhancer.policy.describe()
        if enhancer.policy.rule != "assessor" and any(r.policy != rule for r in records):
            # Only the assessor can be re-decided from saved scores.
            raise UsageError(f"the records were not made under '{rule}': run again "
                             "without --records, or re-summarise with --policy assessor")
        return enhancer, records
    paths = list_clean_images(args.dirs)
    if args.limit:
        paths = paths[: args.limit]
    if not paths:
        raise UsageError(f"no images in {' '.join(map(str, args.dirs))}")
    bar = tqdm(total=len(paths) * len(args.qf), unit="run", disable=not sys.stderr.isatty(),
               file=sys.stderr)
    try:
        records = collect(enhancer, paths, args.qf, gray=args.gray,
                          features=bool(getattr(args, "save_gate_records", None)),
                          on_step=lambda d, t: bar.update(d - bar.n), skipped=skipped)
    finally:
        bar.close()
    return enhancer, records


def _prepare_outputs(*paths: Path | None) -> None:
    """Makes the folders of the files a command will write, and proves it can write there
    (a file made and removed: permissions alone passed /proc), before it measures anything.

    Raises:
        UsageError: Naming the file that is a folder, or whose folder cannot be made or
            written.
    """
    from rbqe.io.atomic import unwritable_file

    for path in paths:
        problem = unwritable_file(path) if path is not None else None
        if problem:
            raise UsageError(f"{path}: {problem}")


def _write_json(path: Path, doc: Any) -> None:
    from rbqe.io.atomic import write_bytes_atomic

    write_bytes_atomic(path, (json.dumps(doc, indent=2) + "\n").encode())


def _eval(args: argparse.Namespace) -> int:
    from rbqe.train.evaluate import plot_gain_vs_macs, save_records, summarize

    if args.save_gate_records and args.records:
        raise UsageError("--save-gate-records needs a run of the network, not --records")
    # Before the measurement (minutes): a missing folder failed only after it.
    _prepare_outputs(args.save_records, args.save_gate_records, args.json, args.plot)
    skipped: list[dict[str, str]] = []  # unreadable images, each with a warning
    enhancer, records = _records(args, args.threshold, args.min_exit, args.policy, skipped)
    if skipped and not records:
        print(f"rbqe: error: no image could be read ({len(skipped)} skipped)", file=sys.stderr)
        return 1
    if args.save_records:
        from rbqe.backends.cache import weights_hash

        save_records(records, args.save_records,
                     {"path": str(enhancer.info.path), "hash": weights_hash(enhancer.net)})
    if args.save_gate_records:
        from rbqe.train import gate

        gate.from_eval_records(records).save(args.save_gate_records, {
            "source": "rbqe eval", "weights": str(enhancer.info.path),
            "photos": len({r.image for r in records}), "qualities": list(args.qf),
            "crop": 0, "gray": args.gray})
    table = summarize(records, enhancer.threshold, enhancer.min_exit)
    doc = {
        "weights": str(enhancer.info.path) if enhancer.info.path else None,
        "policy": enhancer.policy.describe(),
        "threshold": enhancer.threshold,
        "min_exit": enhancer.min_exit,
        "device": str(enhancer.device),
        "backend": f"{enhancer.backend.name} {enhancer.backend.precision}",
        "protocol": "libjpeg (OpenCV) at quality q, 4:2:0 for colour; 8-bit outputs; "
                    "PSNR/SSIM/PSNR-B with no border crop; gray channel for gray images, "
                    "RGB and BT.601 Y for colour",
        "gray": args.gray,
        "images": len({r.image for r in records}),
        "skipped": skipped,
        "per_qf": table,
    }
    print(f"auto: {enhancer.policy.describe()}")
    print(format_table(table))
    if skipped:
        print(f"skipped {len(skipped)} unreadable image{'s' if len(skipped) > 1 else ''} "
              f"(see the warnings)")
    if args.json:
        _write_json(args.json, doc)
    if args.plot:
        plot_gain_vs_macs(table, args.plot, "rbqe eval")
    return 0


def format_table(table: dict[str, Any]) -> str:
    """A plain-text table: per QF the input PSNR and the gain of each exit and of auto."""
    exits = range(1, NUM_EXITS + 1)
    head = (f"{'QF':>4} {'input':>7} " + " ".join(f"{'exit' + str(k):>7}" for k in exits)
            + f" {'auto':>7} {'SSIM':>6} {'PSNR-B':>7}  {'auto exits':<16} {'GMACs':>11}")
    lines = [head, "-" * len(head)]
    for q, e in table.items():
        gains = " ".join(f"{e['exits'][str(k)]['d_psnr']:+7.2f}" for k in exits)
        hist = "/".join(str(e["auto"]["histogram"][str(k)]) for k in exits)
        lines.append(
            f"{q:>4} {e['input']['psnr']:7.2f} {gains} {e['auto']['d_psnr']:+7.2f} "
            f"{e['auto']['d_ssim']:+6.3f} {e['auto']['d_psnrb']:+7.2f}  {hist:<16} "
            f"{e['auto']['gmacs']:5.1f}/{e['auto']['gmacs_exit5']:5.1f}"
        )
    return "\n".join(lines)


def _calibrate(args: argparse.Namespace) -> int:
    from rbqe.train.evaluate import choose_threshold, plot_sweep
    from rbqe.weights import default_weights_path, set_threshold

    if args.weights is None and not args.dry_run:
        # It wrote the shipped weights file (or RBQE_WEIGHTS's) without a word.
        raise UsageError("calibrate writes the fitted exit rule into the weights: name "
                         "the file with --weights FILE (or measure only, with --dry-run)")
    if args.tolerance is not None and args.tolerance < 0:
        raise UsageError(f"--tolerance is a loss in dB, 0 or more, not {args.tolerance}")
    _prepare_outputs(args.json, args.plot)
    if args.policy == "gate":
        return _calibrate_gate(args)
    args.tolerance = 0.1 if args.tolerance is None else args.tolerance
    _, records = _records(args)
    cal = choose_threshold(records, args.tolerance)
    summary = {k: v for k, v in cal.items() if k != "sweep"}
    print(json.dumps(summary, indent=2))
    if args.json:
        _write_json(args.json, cal)
    if args.plot:
        plot_sweep(cal, args.plot)
    if not args.dry_run:
        path = args.weights or default_weights_path()
        set_threshold(path, cal["threshold"], extra={"calibration": summary},
                      min_exit=cal["min_exit"])
        print(f"rbqe: exit rule (from exit {cal['min_exit']}, threshold "
              f"{cal['threshold']:.4f}) written to {path}", file=sys.stderr)
    return 0


def _calibrate_gate(args: argparse.Namespace) -> int:
    """``rbqe calibrate --policy gate``: records on train and val photos (saved, reused),
    the gate fitted on train, its operating point chosen on val, every policy compared."""
    from datetime import datetime, timezone

    from tqdm import tqdm

    from rbqe.engine import Enhancer
    from rbqe.exit_policy import ExitPolicy
    from rbqe.train import gate
    from rbqe.train.evaluate import list_clean_images
    from rbqe.weights import default_weights_path, set_policy

    tolerance = 0.05 if args.tolerance is None else args.tolerance
    if not args.train:
        raise UsageError("--policy gate needs --train DIR (train photos, not val)")
    enhancer = Enhancer(args.weights, device=args.device, tile=0, policy="assessor",
                        backend=args.backend, precision=args.precision)
    train_paths = list_clean_images(args.train)
    if args.train_limit and len(train_paths) > args.train_limit:
        step = len(train_paths) / args.train_limit  # spread over all folders
        train_paths = [train_paths[int(i * step)] for i in range(args.train_limit)]
    val_paths = list_clean_images(args.dirs)[: args.limit or None]
    for flag, paths, dirs in (("--train", train_paths, args.train), ("DIR", val_paths, args.dirs)):
        if not paths:  # (an empty train set saved empty records, then failed to fit)
            raise UsageError(f"{flag}: no images in {' '.join(map(str, dirs))}")
    overlap = {p.resolve() for p in train_paths} & {p.resolve() for p in val_paths}
    if overlap:
        raise UsageError(f"{len(overlap)} photos are in both --train and DIR")

    def records(name: str, paths: list[Path], crop: int) -> gate.GateRecords:
        bar = tqdm(total=len(paths) * len(args.qf), unit="run", desc=name,
                   disable=not sys.stderr.isatty(), file=sys.stderr)
        try:
            return gate.load_or_collect(args.records_dir / f"{name}.npz", enhancer, paths,
                                        args.qf, crop=crop, on_step=lambda d, t: bar.update(1),
                                        log=lambda m: print(m, file=sys.stderr))
        finally:
            bar.close()

    train = records("train", train_paths, args.crop)
    val = records("val", val_paths, args.crop)
    params = gate.fit(train)
    point = gate.choose_operating_point(params, val, tolerance, args.blind_tolerance,
                                        per_exit=args.tau_per_exit)
    taus = {"taus": point["taus"]} if args.tau_per_exit else {}
    policy = ExitPolicy("gate", {**params, "tau": point["tau"], **taus,
                                 "min_exit": point["min_exit"]}, {
        "source": "rbqe calibrate --policy gate",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "fitted_on": f"{len(train_paths)} train photos x QF {args.qf} (crop {args.crop})",
        "operating_point_on": f"{len(val_paths)} val photos x QF {args.qf} (crop {args.crop})",
        "tolerance_db": tolerance, "blind_tolerance_db": args.blind_tolerance,
    })
    table = gate.compare(val, policy, enhancer.info.assessor, tolerance)
    print(f"gate: {policy.describe()}")
    print(gate.format_table(table))
    doc = {"policy": policy.to_json(), "table": table}
    if args.json:
        _write_json(args.json, doc)
    if args.plot:
        gate.plot_frontier(val, params, table, args.plot)
    if not args.dry_run:
        path = args.weights or default_weights_path()
        set_policy(path, "gate", policy, default=args.make_default)
        print(f"rbqe: gate policy written to {path}"
              + (" (now the default)" if args.make_default else ""), file=sys.stderr)
    return 0
