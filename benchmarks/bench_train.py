"""Training throughput of RBQE (a script, not a test).

    python benchmarks/bench_train.py --device cpu|cuda --json FILE [--steps N] [--data DIR]

Measures whole training steps (batch-making, forward, five-exit loss, backward, Adam and
the EMA update) through :class:`rbqe.train.loop.Trainer`, for today's baseline and for
each lever, all in one run, and writes::

    {"baseline": {"patches_per_s": ...}, "tuned": {"patches_per_s": ..., "config": {...}},
     "data_patches_per_s": ..., "levers": [...]}

* baseline: the configuration the training used before this script existed: batch 10,
  patch 96, fp32, channels_last, batches made in the training process, and the ECA gate
  multiplied into the widest tensor of each decoder node (the old ``UpBlock.forward``,
  reproduced here).
* levers: each change on its own, then the combination that ``tuned`` reports (per device,
  chosen from these measurements; see ``TUNED``).
* data_patches_per_s: batch-making alone (crop, libjpeg round trip, float conversion) in
  one process, at the tuned patch size: whether the data path could feed the device.

Each figure also has ``patches_per_cpu_s`` (patches per second of this process's CPU
time, divided by the thread count): on a shared machine wall times inflate with the load,
CPU times much less. Pause other jobs while it runs (``kill -STOP``/``-CONT``).

Photos: ``--data`` (default ``../shared/datasets/train``); generated images if missing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rbqe.model import UpBlock
from rbqe.train.data import PatchSampler, load_folder_images
from rbqe.train.loop import TrainConfig, Trainer

BASELINE = {"batch": 10, "patch": 96, "bf16": False, "channels_last": True, "workers": 0,
            "fold_gate": False, "compile": False}

# The configuration ``tuned`` reports, by device. CPU: bf16 autocast only where oneDNN has
# native bf16 kernels (AVX512-BF16 or AMX): on an AVX2-only EPYC it measured 3-15x slower,
# on an AVX512-BF16 EPYC about 2x faster per CPU-second than fp32. The folded gate, a
# worker process and 64 px patches help everywhere. CUDA: the levers of issue 10 (large
# batch, bf16, many batch-making processes).
CPU_BF16 = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
TUNED = {
    "cpu": {"batch": 32, "patch": 64, "bf16": CPU_BF16, "channels_last": True, "workers": 1,
            "fold_gate": True, "compile": False},
    "cuda": {"batch": 256, "patch": 128, "bf16": True, "channels_last": True, "workers": 14,
             "fold_gate": True, "compile": False},
}


def _unfolded_forward(self: UpBlock, lower, skips, stats=None, key=""):  # noqa: ANN001
    """``UpBlock.forward`` as it was: the gate multiplied into the concatenated input."""
    up = F.relu(self.up(lower))
    x = torch.cat([*skips, up], dim=1)
    x = self.eca(x, stats, key)
    x = F.relu(self.conv1(x))
    return F.relu(self.conv2(x))


@contextlib.contextmanager
def _gate(fold: bool) -> Iterator[None]:
    folded = UpBlock.forward
    if not fold:
        UpBlock.forward = _unfolded_forward
    try:
        yield
    finally:
        UpBlock.forward = folded


def measure(images: list[np.ndarray], device: str, steps: int, warmup: int,
            **opts: object) -> dict[str, object]:
    """Whole training steps per second for one configuration."""
    opts = {**BASELINE, **opts}
    with tempfile.TemporaryDirectory() as tmp, _gate(bool(opts["fold_gate"])):
        cfg = TrainConfig(train_dirs=[], out_dir=tmp, channels=3, batch=int(opts["batch"]),
                          patch=int(opts["patch"]), bf16=bool(opts["bf16"]),
                          channels_last=bool(opts["channels_last"]),
                          workers=int(opts["workers"]), device=device, steps=10**9,
                          checkpoint_every_s=1e9)
        trainer = Trainer(cfg, images)
        if opts["compile"]:
            trainer.net.forward = torch.compile(trainer.net.forward)
        batches = trainer._batches()
        for _ in range(warmup):
            trainer.train_step(next(batches))
        _sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(steps):
            trainer.train_step(next(batches))
        _sync(device)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        del batches  # stops the DataLoader's workers
    patches = steps * cfg.batch
    threads = torch.get_num_threads()
    return {"config": opts, "patches_per_s": round(patches / wall, 2),
            "patches_per_cpu_s": round(patches / max(cpu / threads, 1e-9), 2),
            "megapixels_per_s": round(patches * cfg.patch**2 / wall / 1e6, 4)}


def data_rate(images: list[np.ndarray], patch: int, batch: int, seconds: float = 5.0) -> float:
    sampler = PatchSampler(images, 3, patch, batch, seed=1)
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        sampler.batch_at(n)
        n += 1
    return round(n * batch / (time.perf_counter() - t0), 1)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _images(folder: Path) -> list[np.ndarray]:
    if folder.is_dir():
        return load_folder_images([folder])
    print(f"bench_train: {folder} not found, using generated images", file=sys.stderr)
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (320, 480, 3), dtype=np.uint8) for _ in range(8)]


def levers(device: str) -> list[dict[str, object]]:
    """Each lever on its own against the baseline, then the tuned combination."""
    dev = "cuda" if device.startswith("cuda") else "cpu"
    tuned = TUNED[dev]
    singles = [{"fold_gate": True}, {"channels_last": False}, {"bf16": True}, {"workers": 1},
               {"batch": tuned["batch"], "patch": tuned["patch"]}]
    if dev == "cuda":
        singles += [{"workers": tuned["workers"]}, {"compile": True}]
    return singles


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--steps", type=int, default=0, help="timed steps (default: cpu 6, cuda 60)")
    p.add_argument("--data", type=Path, default=Path("../shared/datasets/train"))
    p.add_argument("--skip", nargs="*", default=[], metavar="LEVER",
                   help="leave out levers by name (e.g. bf16 compile)")
    args = p.parse_args()
    cuda = args.device.startswith("cuda")
    steps = args.steps or (60 if cuda else 6)
    warmup = 10 if cuda else 2
    images = _images(args.data)
    run = lambda **o: measure(images, args.device, steps, warmup, **o)  # noqa: E731

    out: dict[str, object] = {"device": args.device, "torch": torch.__version__,
                              "threads": torch.get_num_threads(), "steps": steps,
                              "cpu_count": os.cpu_count()}
    out["baseline"] = run()
    print("baseline", json.dumps(out["baseline"]), flush=True)
    results = []
    for lever in levers(args.device):
        if any(k in args.skip for k in lever):
            continue
        r = run(**lever)
        r["lever"] = lever
        results.append(r)
        print("lever", json.dumps(lever), r["patches_per_s"], "patches/s",
              r["patches_per_cpu_s"], "per cpu-s", flush=True)
    tuned = TUNED["cuda" if cuda else "cpu"]
    out["tuned"] = run(**tuned)
    out["levers"] = results
    out["data_patches_per_s"] = data_rate(images, int(tuned["patch"]), int(tuned["batch"]))
    base, best = out["baseline"]["patches_per_s"], out["tuned"]["patches_per_s"]
    out["speedup"] = round(best / base, 2)
    print("tuned", json.dumps(out["tuned"]), flush=True)
    print(f"data alone: {out['data_patches_per_s']} patches/s of {tuned['patch']} px (1 process)")
    print(f"speed-up tuned / baseline: {out['speedup']}x (patches/s)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2, default=lambda o: asdict(o)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
