"""The exit policy's cost against exit 1's network time (issue 11's bar: each under 3 %).

    python benchmarks/bench_policy.py [--size 512] [--repeat 5] [--threads N] [--precision P]
        [--photos DIR] [--count 8] [--qf 30]

Prints, at one image size, best of ``--repeat`` (wall and process CPU time):
* exit 1's network time (the progressive run's first stage, output head included), in
  the precision ``--precision auto`` gives on the CPU (bf16 where it is native): the faster
  the network, the larger the policy's share;
* the assessor: the Tchebichef score with its block statistics (``iqa.assess``), as the
  engine runs it after every exit, on exit 1's output. Its cost depends on the content
  (smooth blocks skip the blurred moments), so it is timed on the exit-1 outputs of
  ``--count`` photos from ``--photos`` (each cut or mirrored to the size, saved as a JPEG
  at ``--qf``; the median and the dearest are printed with their share of smooth blocks)
  and on uniform noise, where every block is textured (the dearest case);
* the rest of the gate's signals: the luma of the output and the mean change from the
  previous exit, plus reading the ECA means;
* the gate's prediction itself (standardise, dot product) with a random gate of the
  shipped feature set;
and the MACs of the gate and of exit 1 (counted, not timed).
Weights: the shipped RGB weights if present (speed does not depend on weight values).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from rbqe import iqa
from rbqe.exit_policy import FEATURES, ExitPolicy, ExitSignals
from rbqe.fastpath import native_bf16
from rbqe.model import NUM_EXITS, EcaStats, ModelConfig, RBQENet, gmacs_per_exit
from rbqe.weights import PACKAGE_WEIGHTS, load_weights


def best(fn, repeat: int) -> tuple[float, float]:
    """Best wall and CPU milliseconds of ``fn()`` over ``repeat`` runs (after a warm-up)."""
    fn()
    walls, cpus = [], []
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return min(walls) * 1000, min(cpus) * 1000


def jpeg_photos(folder: Path, count: int, size: int, qf: int, channels: int) -> list[np.ndarray]:
    """The first ``count`` photos of ``folder``, cut (centre) or mirrored to ``size``
    square and round-tripped through a JPEG at ``qf``; float32 ``(C, H, W)`` in [0, 1]."""
    out = []
    for path in sorted(folder.iterdir()):
        img = cv2.imread(str(path), cv2.IMREAD_COLOR if channels == 3 else cv2.IMREAD_GRAYSCALE)
        if img is None:
            continue
        h, w = img.shape[:2]
        img = img[max(0, (h - size) // 2):][:size, max(0, (w - size) // 2):][:, :size]
        ph, pw = size - img.shape[0], size - img.shape[1]
        img = np.pad(img, ((0, ph), (0, pw)) + ((0, 0),) * (img.ndim - 2), mode="symmetric")
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, qf])
        assert ok, path
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        img = img[..., ::-1] if channels == 3 else img[..., None]  # BGR -> RGB
        out.append(np.ascontiguousarray(img.transpose(2, 0, 1), np.float32) / 255)
        if len(out) == count:
            break
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--precision", choices=["auto", "f32", "bf16"], default="auto",
                    help="exit 1's precision (auto: bf16 where the CPU has it natively)")
    ap.add_argument("--photos", type=Path, default=Path("../shared/datasets/val/bsds500_val"),
                    help="photos to time the assessor on (skipped when missing)")
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--qf", type=int, default=30)
    args = ap.parse_args()
    bf16 = args.precision == "bf16" or (args.precision == "auto" and native_bf16())
    dtype = torch.bfloat16 if bf16 else torch.float32
    if args.threads:
        torch.set_num_threads(args.threads)
    net = load_weights(PACKAGE_WEIGHTS)[0] if PACKAGE_WEIGHTS.is_file() else RBQENet(
        ModelConfig(3, 3, 32))
    net = net.eval().to(memory_format=torch.channels_last)
    c, s = net.config.in_channels, args.size
    x = torch.rand(1, c, s, s).contiguous(memory_format=torch.channels_last)
    state: dict = {}

    @torch.inference_mode()
    def exit1(inp: torch.Tensor = x) -> None:
        stats = EcaStats(mode="record")
        run = net.start(inp, stats, fast=True, dtype=dtype)
        state["out"] = run.next_exit().float().clamp_(0, 1)
        state["stats"] = stats

    def luma(t: torch.Tensor) -> torch.Tensor:
        return t if t.shape[1] == 1 else iqa.luma(t)

    def assessor() -> None:
        state["a"] = iqa.assess(luma(state["out"]))

    def assess_outputs(inputs: list[torch.Tensor]) -> list[tuple[float, float, float]]:
        """(wall ms, cpu ms, smooth share) of the assessor on exit 1's output of each."""
        rows = []
        for inp in inputs:
            exit1(inp)
            rows.append((*best(assessor, args.repeat), state["a"].smooth_share))
        return rows

    prev = luma(x)

    def signals() -> None:
        y = luma(state["out"])
        change = float((y - prev).abs().mean()) * 255
        means = state["stats"].sums["0_1"][0] / state["stats"].counts["0_1"]
        a = state["a"]
        state["signals"] = ExitSignals(1, a.score, a.blockiness, a.blur, a.smooth_share, change,
                                       means[-net.config.width:].numpy().astype(np.float64))

    rng = np.random.default_rng(0)
    n = len(FEATURES)
    gate = ExitPolicy("gate", {"features": list(FEATURES), "tau": 0.05, "min_exit": 1,
                               "mean": [rng.normal(size=n).tolist()] * 4,
                               "scale": [np.abs(rng.normal(size=n)).tolist()] * 4,
                               "coef": [rng.normal(size=n).tolist()] * 4, "bias": [0.0] * 4})

    def predict() -> None:
        gate.predict_gain([state["signals"]], None, c == 1)

    photos = [torch.from_numpy(p)[None].contiguous(memory_format=torch.channels_last)
              for p in (jpeg_photos(args.photos, args.count, s, args.qf, c)
                        if args.photos.is_dir() else [])]
    with torch.inference_mode():
        net_time = best(exit1, args.repeat)
        on_photos = sorted(assess_outputs(photos))
        on_noise = assess_outputs([x])[0]
        rows = [("exit 1 network", net_time)]
        if on_photos:
            median, dearest = on_photos[len(on_photos) // 2], on_photos[-1]
            rows += [(f"assessor, photos: median (smooth {median[2]:.0%})", median[:2]),
                     (f"assessor, photos: dearest (smooth {dearest[2]:.0%})", dearest[:2])]
        rows += [(f"assessor, noise (smooth {on_noise[2]:.0%})", on_noise[:2]),
                 ("gate signals (luma, change, ECA)", best(signals, args.repeat)),
                 ("gate prediction", best(predict, args.repeat))]
    load = open("/proc/loadavg").read().split()[0] if __import__("os").path.exists(
        "/proc/loadavg") else "?"
    print(f"{s}x{s}, {c}-channel model, exit 1 in {'bf16' if bf16 else 'f32'}, "
          f"torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load average {load}")
    if photos:
        print(f"  assessor timed on exit 1's output of {len(photos)} photos from {args.photos} "
              f"(JPEG q{args.qf}) and of uniform noise")
    base_wall, base_cpu = rows[0][1]
    for name, (wall, cpu) in rows:
        print(f"  {name:<38} {wall:9.3f} ms wall {cpu:9.3f} ms cpu   "
              f"{wall / base_wall:7.2%} / {cpu / max(base_cpu, 1e-9):7.2%} of exit 1")
    macs1 = gmacs_per_exit(net, s, s)[0] * 1e9
    gate_macs = 2 * n  # standardise (1 multiply-add per feature) + the dot product
    print(f"  MACs: exit 1 {macs1:.3e}; gate prediction {gate_macs} "
          f"({gate_macs / macs1:.1e} of exit 1); exits walked: up to {NUM_EXITS - 1}")


if __name__ == "__main__":
    main()
