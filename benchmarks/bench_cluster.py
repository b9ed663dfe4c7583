"""Throughput of the local engine against the Ray engine with 1 and 2 workers, in one run.

What it measures, on the same synthetic JPEG photos (``bench_batch.make_photo``), each
engine writing into its own fresh folder:

* ``local``: :func:`rbqe.batch.run_batch` in this process, torch on ``--threads``
  threads (the model is loaded before the clock starts).
* ``ray xN``: :func:`rbqe.cluster.run_ray_batch` on a local Ray instance with N workers
  of one CPU and ``--threads`` torch threads each. The clock includes the actors' start
  and model load, not ``ray.init`` (timed apart, once).

Figures per engine: images/min, the mean time of one image's load + enhance + save
(``times_ms.total`` of the report rows) and the overhead per image,
``(wall x workers - sum of per-image times) / images``: everything else, start-up
included. For Ray, the actors also note when each batch starts and ends, which splits
that overhead into ``startup_s`` (run start to an actor's first batch: actor process,
imports, model load, dataset set-up), ``gap_between_tasks_ms`` (an actor's idle time
between two batches: Ray's cost per task in a long run) and the tail after the last batch.

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

from rbqe.cluster import EnhanceWorker  # noqa: E402


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


class _TimedWorker(EnhanceWorker):
    """Notes when each of its batches starts and ends (this machine's clock), per process."""

    log = ""

    def __call__(self, batch):
        start = time.time()
        out = super().__call__(batch)
        with open(self.log, "a") as fh:
            fh.write(f"{os.getpid()} {start} {time.time()}\n")
        return out


def run_ray(inputs: Path, out: Path, weights: Path, workers: int, threads: int,
            report: Path) -> dict:
    from rbqe.batch import BatchOptions
    from rbqe.cluster import RayOptions, run_ray_batch

    log = out.with_name(out.name + "-calls.log")
    timed = type("TimedWorker", (_TimedWorker,), {"log": str(log)})
    t0 = time.time()
    run_ray_batch({"weights": str(weights), "device": "cpu"}, [inputs],
                  BatchOptions(out_dir=out),
                  RayOptions(workers=workers, cpus_per_worker=threads), report=report,
                  worker=timed)
    wall = time.time() - t0
    rows = [r for r in json.loads(report.read_text())["images"] if r["status"] == "ok"]
    item_ms = [r["times_ms"]["total"] for r in rows]
    fig = _figures(f"ray x{workers}", wall, workers, item_ms, [r["exit"] for r in rows])
    # Per actor: start-up until its first batch, then the gaps between its batches (Ray's
    # cost per task: scheduling, moving rows in and out), then the tail after its last.
    calls: dict[str, list[tuple[float, float]]] = {}
    for line in log.read_text().splitlines():
        pid, start, end = line.split()
        calls.setdefault(pid, []).append((float(start), float(end)))
    gaps = [b[0] - a[1] for c in calls.values() for a, b in zip(sorted(c), sorted(c)[1:], strict=False)]
    fig["startup_s"] = round(sum(min(c)[0] - t0 for c in calls.values()) / len(calls), 2)
    fig["gap_between_tasks_ms"] = round(sum(gaps) / len(gaps) * 1000, 1) if gaps else None
    fig["tail_after_last_task_s"] = round(t0 + wall - max(max(c)[1] for c in calls.values()), 2)
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
    p.add_argument("--repeat", type=int, default=1, help="rounds; the best is reported")
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
        t0 = time.perf_counter()
        ray.init(num_cpus=max(args.workers) * args.threads, include_dashboard=False,
                 log_to_driver=False, logging_level="ERROR")
        ray_init_s = time.perf_counter() - t0
        runs: list[dict] = []
        try:
            # Rounds interleave the engines, so that a burst of load elsewhere does not
            # fall on one engine only; each engine's best round is reported.
            for r in range(args.repeat):
                runs.append(run_local(inputs, tmp / f"local{r}", args.weights, args.threads))
                print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
                for n in args.workers:
                    runs.append(run_ray(inputs, tmp / f"ray{n}-{r}", args.weights, n,
                                        args.threads, tmp / f"ray{n}-{r}.json"))
                    print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
        finally:
            ray.shutdown()
        results = []
        for name in dict.fromkeys(run["engine"] for run in runs):
            mine = [run for run in runs if run["engine"] == name]
            best = max(mine, key=lambda run: run["images_per_min"])
            results.append({**best, "wall_s_all_rounds": [run["wall_s"] for run in mine]})
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
