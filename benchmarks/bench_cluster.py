"""Throughput of the local engine against the Ray engine with 1 and 2 workers, in one run.

What it measures, on the same synthetic JPEG photos (``bench_batch.make_photo``), each
engine writing into its own fresh folder:

* ``local``: :func:`rbqe.batch.run_batch` in this process, torch on ``--threads``
  threads (the model is loaded before the clock starts).
* ``ray xN``: :func:`rbqe.cluster.run_ray_batch` on a local Ray instance with N workers
  of one CPU and ``--threads`` torch threads each. The clock includes the actors' start
  and model load, not ``ray.init`` (timed apart, once).

Figures per engine: images/min, and Ray's overhead per image: the workers' time not spent
on an image's load + enhance + save (``times_ms.total`` of the report rows),
``(wall x workers - sum of per-image times) / images``; it holds the actor start-up,
spread over the images, plus the per-task cost.

Usage::

    python benchmarks/bench_cluster.py                       # 24 x 4 MP (long on 2 cores)
    python benchmarks/bench_cluster.py --count 8 --size 1024x1024 --json out.json

Needs the [cluster] extra. Figures only mean something on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_batch import SHIPPED, busy_warning, make_photo  # noqa: E402


def _overhead_ms(wall_s: float, workers: int, item_ms: list[float]) -> float:
    return (wall_s * 1000 * workers - sum(item_ms)) / len(item_ms)


def run_local(inputs: Path, out: Path, weights: Path, threads: int) -> dict:
    import torch

    from rbqe.batch import BatchOptions, run_batch
    from rbqe.engine import Enhancer

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        enhancer = Enhancer(weights, device="cpu")
        t0 = time.perf_counter()
        summary = run_batch(enhancer, [inputs], BatchOptions(out_dir=out))
        wall = time.perf_counter() - t0
    finally:
        torch.set_num_threads(before)
    items = [i.times_ms["total"] for i in summary.items if i.status == "ok"]
    return _figures("local", wall, 1, items, [i.exit for i in summary.items])


def run_ray(inputs: Path, out: Path, weights: Path, workers: int, threads: int,
            report: Path) -> dict:
    from rbqe.batch import BatchEvents, BatchOptions
    from rbqe.cluster import RayOptions, run_ray_batch

    arrivals: list[float] = []
    t0 = time.perf_counter()
    run_ray_batch({"weights": str(weights), "device": "cpu"}, [inputs],
                  BatchOptions(out_dir=out),
                  RayOptions(workers=workers, cpus_per_worker=threads), report=report,
                  events=BatchEvents(on_item_done=lambda i, item: arrivals.append(
                      time.perf_counter() - t0)))
    wall = time.perf_counter() - t0
    rows = [r for r in json.loads(report.read_text())["images"] if r["status"] == "ok"]
    item_ms = [r["times_ms"]["total"] for r in rows]
    fig = _figures(f"ray x{workers}", wall, workers, item_ms, [r["exit"] for r in rows])
    # Start-up: until the first row, less that row's own image time (the actors start
    # together). The overhead left after it is the per-image cost of Ray.
    startup = arrivals[0] - item_ms[0] / 1000
    fig["startup_s"] = round(startup, 2)
    fig["overhead_after_startup_ms"] = round(_overhead_ms(wall - startup, workers, item_ms), 1)
    return fig


def _figures(name: str, wall: float, workers: int, item_ms: list[float], exits: list) -> dict:
    return {
        "engine": name,
        "images": len(item_ms),
        "wall_s": round(wall, 2),
        "images_per_min": round(len(item_ms) / wall * 60, 3),
        "mean_image_s": round(sum(item_ms) / len(item_ms) / 1000, 3),
        "overhead_per_image_ms": round(_overhead_ms(wall, workers, item_ms), 1),
        "exits": {str(k): exits.count(k) for k in sorted(set(exits), key=str)},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=24, help="number of photos (default 24)")
    p.add_argument("--size", default="2304x1728", help="WIDTHxHEIGHT (default 4 MP)")
    p.add_argument("--quality", type=int, default=40, help="JPEG quality of the inputs")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                   help="Ray pool sizes to run (default 1 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per engine/worker")
    p.add_argument("--weights", type=Path, default=SHIPPED)
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)

    import ray

    width, height = (int(v) for v in args.size.lower().split("x"))
    warning = busy_warning()
    tmp = Path(tempfile.mkdtemp(prefix="rbqe-bench-cluster-"))
    try:
        inputs = tmp / "in"
        inputs.mkdir()
        for i in range(args.count):
            make_photo(inputs / f"photo{i:02d}.jpg", width, height, seed=i, quality=args.quality)
        load = os.getloadavg()[0]
        results = [run_local(inputs, tmp / "local", args.weights, args.threads)]
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        ray.init(num_cpus=max(args.workers) * args.threads, include_dashboard=False,
                 log_to_driver=False, logging_level="ERROR")
        ray_init_s = time.perf_counter() - t0
        try:
            for n in args.workers:
                results.append(run_ray(inputs, tmp / f"ray{n}", args.weights, n, args.threads,
                                       tmp / f"ray{n}.json"))
                print(json.dumps(results[-1]), file=sys.stderr, flush=True)
        finally:
            ray.shutdown()
        base = results[0]["images_per_min"]
        out = {
            "photos": f"{args.count} x {width}x{height} JPEG q{args.quality}",
            "threads_per_engine_or_worker": args.threads,
            "weights": str(args.weights),
            "cpus": os.cpu_count(),
            "load_average_at_start": round(load, 2),
            "busy_warning": warning,
            "ray_init_s": round(ray_init_s, 2),
            "results": results,
            "speedup_vs_local": {r["engine"]: round(r["images_per_min"] / base, 3)
                                 for r in results},
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
