"""How many 12 MP photos a minute this CPU could do at best: the compute ceiling behind
issue 12's bar (>= 6 a minute under auto), measured on the machine it runs on.

Prints, in one run (the network's threads as given, training or other jobs paused):

1. The dense-conv rate of this CPU: one 3x3 convolution, 32 channels in and out, at each
   resolution of the network's encoder for one tile (1024 down to 64 pixels), float32 and,
   where the CPU has native bf16, bf16; GMAC/s, best of ``--repeat``. Their best is the
   ceiling: the encoder's dense convs are the network's fastest layers (the decoder's
   separable convs are memory-bound), so no part of it runs faster. Two wider convs are
   printed for reference (what a network shaped for this CPU could reach), not counted.
2. The network itself on one default 1024x1024 tile (the engine's torch path, the tile
   ``rbqe enhance`` uses on the CPU), forced to exit 3 and to exit 5: ms and GMAC/s, i.e.
   how close the whole network comes to that ceiling.
3. The 12 MP projection: a 4000x3000 photo's MACs at exit 3 (where auto sends most tiles),
   divided by the ceiling and by the network's own rate, as images a minute. If even the
   ceiling is under the bar, no engine work reaches it on this CPU: only fewer MACs would.

Usage::

    python benchmarks/bench_floor.py                # 2 threads, best of 3
    python benchmarks/bench_floor.py --threads 1 --repeat 5
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rbqe.engine import Enhancer  # noqa: E402 (after the sys.path line)
from rbqe.fastpath import native_bf16  # noqa: E402
from rbqe.weights import PACKAGE_WEIGHTS, load_weights  # noqa: E402

TILE = 1024
BAR_PER_MIN = 6.0
TWELVE_MP = (3000, 4000)
WIDTH = 32  # every node of the shipped network has 32 channels, at every level
LEVELS = [(WIDTH, TILE >> k) for k in range(5)]  # the encoder's resolutions for one tile
WIDER = [(64, TILE // 2), (128, TILE // 4)]  # reference only


def best_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up: allocations, oneDNN's kernel choice
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return min(times)


def conv_rates(shapes: list[tuple[int, int]], dtype: torch.dtype, repeat: int
               ) -> list[tuple[int, int, float, float]]:
    """(channels, side, ms, GMAC/s) of one dense 3x3 conv, channels in and out, NHWC."""
    rows = []
    for ch, side in shapes:
        x = torch.rand(1, ch, side, side).to(memory_format=torch.channels_last, dtype=dtype)
        w = (torch.rand(ch, ch, 3, 3) - 0.5).to(memory_format=torch.channels_last, dtype=dtype)
        with torch.inference_mode():
            ms = best_ms(lambda x=x, w=w: F.conv2d(x, w, padding=1), repeat)
        gmacs = side * side * ch * ch * 9 / 1e9
        rows.append((ch, side, ms, gmacs / ms * 1000))
    return rows


def network_rates(enh: Enhancer, repeat: int) -> dict[int, tuple[float, float]]:
    """exit -> (ms, GMAC/s) of one 1024x1024 tile through the engine's torch path."""
    rng = np.random.default_rng(0)
    img = np.clip(0.5 + 0.2 * rng.standard_normal((TILE, TILE, 3)), 0, 1).astype(np.float32)
    gmacs = enh.gmacs(TILE, TILE)
    out = {}
    for k in (3, 5):
        ms = best_ms(lambda k=k: enh.enhance(img, k), repeat)
        out[k] = (ms, gmacs[k - 1] / ms * 1000)
    return out


def per_minute(gmacs: float, rate: float) -> float:
    return 60.0 / (gmacs / rate)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in flags]
    print(f"CPU: {platform.processor() or platform.machine()}, {args.threads} threads, "
          f"ISA: {' '.join(isa) or 'unknown'}; torch {torch.__version__}")

    dtypes = [torch.float32] + ([torch.bfloat16] if native_bf16() else [])
    ceiling = 0.0
    for dt in dtypes:
        print(f"\nDense 3x3 conv, {str(dt).removeprefix('torch.')}, channels_last, "
              f"best of {args.repeat}")
        for ch, side, ms, rate in conv_rates(LEVELS + WIDER, dt, args.repeat):
            wider = (ch, side) in WIDER
            print(f"  {ch:>3} ch at {side:>4}x{side:<4} {ms:8.1f} ms  {rate:6.1f} GMAC/s"
                  f"{'  (wider, reference)' if wider else ''}")
            ceiling = ceiling if wider else max(ceiling, rate)
    print(f"ceiling (the best 32-channel conv): {ceiling:.1f} GMAC/s")

    weights, _ = load_weights(PACKAGE_WEIGHTS)
    enh = Enhancer(net=weights, device="cpu", tile=0, backend="torch")
    net = network_rates(enh, args.repeat)
    print(f"\nThe network, one {TILE}x{TILE} tile, engine torch path, best of {args.repeat}")
    for k, (ms, rate) in net.items():
        print(f"  exit {k}: {ms:8.1f} ms  {rate:6.1f} GMAC/s ({rate / ceiling:.0%} of the ceiling)")

    # Untiled MACs: the tiles' overlap adds some, so these are upper bounds on images/min.
    g12 = enh.gmacs(*TWELVE_MP)
    print(f"\n12 MP (4000x3000) at exit 3: {g12[2]:,.0f} GMACs (exit 5 {g12[4]:,.0f}); "
          f"issue 12's bar {BAR_PER_MIN:g} a minute")
    for label, rate in [("at the dense-conv ceiling", ceiling),
                        ("at the network's exit-3 rate", net[3][1])]:
        n = per_minute(g12[2], rate)
        print(f"  {label:<30} {n:5.1f} images/min, network only "
              f"[{'reachable' if n >= BAR_PER_MIN else 'below the bar'}]")


if __name__ == "__main__":
    main()
