"""Batch throughput and peak memory for 12-megapixel photos on CPU, through run_batch.

What it measures: ``rbqe.batch.run_batch`` (load -> enhance -> save, exactly what
``rbqe enhance`` does) over synthetic JPEG-compressed 4000 x 3000 photos. The batch runs
in a fresh child process so that its peak RSS (``resource.getrusage``) covers only the
library, the model and the batch, not the generation of the test photos.

Model: ``weights/rbqe_jpeg.safetensors`` when it exists, else the real architecture
(``ModelConfig(1, 1, 32)``) with random weights. With random weights the exit that
``--exit auto`` picks is arbitrary (whatever the IQA score of noise-like output says;
the per-image lines show it), so pass ``--exit 1..5`` to time a fixed depth.

Usage::

    python benchmarks/bench_batch.py                 # 3 x 12 MP, exit auto
    python benchmarks/bench_batch.py --exit 3 --json results.json
    python benchmarks/bench_batch.py --quick         # 2 x 1 MP smoke run (seconds)

Figures are only meaningful on an otherwise idle machine: the script warns when a
training run (``start_train.py``) or a high load average is detected.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "weights" / "rbqe_jpeg.safetensors"


# --------------------------------------------------------------------------------------
# Test photos
# --------------------------------------------------------------------------------------


def make_photo(path: Path, width: int, height: int, seed: int, quality: int) -> None:
    """A photo-like RGB picture (gradients, texture, hard edges, noise), JPEG-compressed.

    Built in row bands so generating 12 MP needs little memory.
    """
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    img = np.empty((height, width, 3), np.uint8)
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    fx, fy, phase = rng.uniform(20, 60), rng.uniform(15, 45), rng.uniform(0, 6.28)
    band = 500
    for top in range(0, height, band):
        rows = min(band, height - top)
        y = (np.arange(top, top + rows, dtype=np.float32) / height)[:, None]
        sky = 0.25 + 0.5 * (0.6 * x + 0.4 * y)
        texture = 0.08 * np.sin(fx * x * 6.28 + phase) * np.cos(fy * y * 6.28)
        edges = 0.2 * ((np.floor(x * 9) + np.floor(y * 7)) % 2)  # blocks: hard edges
        noise = rng.normal(0, 0.02, (rows, width)).astype(np.float32)
        base = sky + texture + edges + noise
        for c, gain in enumerate((1.0, 0.85, 0.7)):
            img[top : top + rows, :, c] = np.clip(base * gain * 255, 0, 255).astype(np.uint8)
    Image.fromarray(img).save(path, "JPEG", quality=quality)


# --------------------------------------------------------------------------------------
# Child: the measured batch
# --------------------------------------------------------------------------------------


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(args: argparse.Namespace) -> None:
    import torch

    from rbqe.batch import BatchEvents, BatchOptions, run_batch
    from rbqe.engine import Enhancer
    from rbqe.model import ModelConfig, RBQENet

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.weights:
        enhancer = Enhancer(args.weights, device="cpu", tile=args.tile)
        weights = str(args.weights)
    else:
        torch.manual_seed(0)
        enhancer = Enhancer(net=RBQENet(ModelConfig(1, 1, 32)), device="cpu", tile=args.tile)
        weights = "random ModelConfig(1, 1, 32)"
    rss_ready = _rss_mb()

    starts: dict[int, float] = {}
    wall: dict[int, float] = {}

    def item_done(i: int, item) -> None:
        wall[i] = time.perf_counter() - starts[i]
        print(f"  [{i + 1}] {item.input.name}: {item.status}, exit {item.exit}, "
              f"{wall[i]:.1f} s, peak RSS so far {_rss_mb():.0f} MB", file=sys.stderr, flush=True)

    events = BatchEvents(on_item_start=lambda i, p: starts.__setitem__(i, time.perf_counter()),
                         on_item_done=item_done)
    mode = args.exit if args.exit in ("auto", "all") else int(args.exit)
    options = BatchOptions(out_dir=Path(args.out), mode=mode, overwrite=True)
    t0 = time.perf_counter()
    summary = run_batch(enhancer, [Path(args.inputs)], options, events=events)
    total_s = time.perf_counter() - t0
    ok = [i for i in summary.items if i.status == "ok"]
    result = {
        "weights": weights,
        "mode": args.exit,
        "tile": enhancer.tile,
        "torch_threads": torch.get_num_threads(),
        "images": len(summary.items),
        "ok": len(ok),
        "failed": [i.error for i in summary.items if i.status == "failed"],
        "total_s": round(total_s, 2),
        "images_per_min": round(len(ok) / total_s * 60, 3) if ok and total_s else 0.0,
        "per_image_s": [round(wall[i], 2) for i in sorted(wall)],
        "per_image": [
            {"file": i.input.name, "size": list(i.size or ()), "exit": i.exit,
             "stages_ms": i.times_ms.get("stages"), "iqa_ms": i.times_ms.get("iqa"),
             "total_ms": i.times_ms.get("total"), "gmacs": round(i.gmacs or 0.0, 1)}
            for i in ok
        ],
        "exit_histogram": summary.exit_histogram,
        "rss_after_model_load_mb": round(rss_ready),
        "peak_rss_mb": round(_rss_mb()),
    }
    print("BENCH_RESULT " + json.dumps(result), flush=True)


# --------------------------------------------------------------------------------------
# Parent: photos, environment, report
# --------------------------------------------------------------------------------------


def busy_warning() -> str | None:
    notes = []
    pgrep = shutil.which("pgrep")
    if pgrep:
        found = subprocess.run([pgrep, "-f", "start_train.py"], capture_output=True, text=True,
                               check=False).stdout.split()
        if found:
            notes.append(f"a training run is active (pid {', '.join(found)})")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    cpus = os.cpu_count() or 1
    if load > 0.5 * cpus:
        notes.append(f"load average {load:.1f} on {cpus} CPUs")
    return "; ".join(notes) or None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=3, help="number of photos (default 3)")
    p.add_argument("--size", default="4000x3000", help="WIDTHxHEIGHT (default 4000x3000)")
    p.add_argument("--quality", type=int, default=40, help="JPEG quality of the inputs")
    p.add_argument("--exit", default="auto", help="auto, all or 1-5 (default auto)")
    p.add_argument("--tile", type=int, default=None, help="tile side (default: engine's)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    p.add_argument("--weights", type=Path, default=None,
                   help=f"weights file (default: {SHIPPED.relative_to(ROOT)} if present, "
                        "else random ModelConfig(1, 1, 32))")
    p.add_argument("--quick", action="store_true", help="2 photos of 1200x900: a smoke run")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--keep", action="store_true", help="keep the temp folder")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--inputs", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.weights is None and SHIPPED.is_file():
        args.weights = SHIPPED
    if args.child:
        child(args)
        return 0
    if args.quick:
        args.count, args.size = 2, "1200x900"
    width, height = (int(v) for v in args.size.lower().split("x"))

    warning = busy_warning()
    tmp = Path(tempfile.mkdtemp(prefix="rbqe-bench-"))
    try:
        inputs = tmp / "in"
        inputs.mkdir()
        t0 = time.perf_counter()
        for i in range(args.count):
            make_photo(inputs / f"photo{i:02d}.jpg", width, height, seed=i, quality=args.quality)
        print(f"generated {args.count} x {width}x{height} JPEG q{args.quality} photos in "
              f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
        cmd = [sys.executable, __file__, "--child", "--inputs", str(inputs),
               "--out", str(tmp / "out"), "--exit", args.exit, "--threads", str(args.threads)]
        if args.tile is not None:
            cmd += ["--tile", str(args.tile)]
        if args.weights is not None:
            cmd += ["--weights", str(args.weights)]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_RESULT ")]
        if proc.returncode or not lines:
            print(f"benchmark child failed (exit {proc.returncode})", file=sys.stderr)
            return 1
        result = json.loads(lines[-1].split(" ", 1)[1])
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    result.update({
        "photo_size": [width, height],
        "input_quality": args.quality,
        "quick": args.quick,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "busy": warning,
    })
    mp = width * height / 1e6
    print(f"\nrbqe batch benchmark: {result['ok']}/{result['images']} photos of "
          f"{width}x{height} ({mp:.1f} MP), exit {result['mode']}, {result['weights']}, "
          f"tile {result['tile']}, {result['torch_threads']} torch threads, CPU")
    for entry, wall in zip(result["per_image"], result["per_image_s"], strict=True):
        stages = ", ".join(f"{s / 1000:.1f}" for s in entry["stages_ms"] or [])
        print(f"  {entry['file']}: {wall:.1f} s (exit {entry['exit']}; stages {stages} s; "
              f"{entry['gmacs']:.0f} GMACs)")
    print(f"  throughput: {result['images_per_min']:.2f} images/min "
          f"({result['total_s']:.1f} s for {result['ok']} photos, load + enhance + save)")
    print(f"  peak RSS: {result['peak_rss_mb']} MB "
          f"(after loading the model: {result['rss_after_model_load_mb']} MB)")
    if result["failed"]:
        print(f"  failed: {result['failed']}")
    if warning:
        print(f"  WARNING: machine busy ({warning}): timings are not representative")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0 if not result["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
