"""What a wider network costs on this CPU (a script, not a test): the inference fast path
(``RBQENet.start(fast=True)``, bf16 where the CPU has it) through all five exits, for
each width, interleaved in one process so that the ratios share the machine's state.

    python benchmarks/bench_width.py --widths 32 40 --size 512 --repeat 7 --threads 2

Weights are random (the time does not depend on their values). Prints per width: GMACs
to exit 5, weights, best and median ms for all five exits, and the ratio to the first.
"""
import argparse
import statistics
import time

import torch

from rbqe.fastpath import native_bf16
from rbqe.heap import reuse_freed_memory
from rbqe.model import NUM_EXITS, ModelConfig, RBQENet, count_parameters, gmacs_per_exit

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--widths", type=int, nargs="+", default=[32, 40])
parser.add_argument("--size", type=int, default=512, help="square input side (multiple of 32)")
parser.add_argument("--repeat", type=int, default=7)
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--f32", action="store_true", help="float32 even where bf16 is native")
args = parser.parse_args()

torch.set_num_threads(args.threads)
reuse_freed_memory()
dtype = torch.float32 if args.f32 or not native_bf16() else torch.bfloat16
nets = {w: RBQENet(ModelConfig(3, 3, w)).eval() for w in args.widths}
x = torch.rand(1, 3, args.size, args.size)


def all_exits(net: RBQENet) -> float:
    t = time.perf_counter()
    with torch.inference_mode():
        run = net.start(x, fast=True, dtype=dtype)
        for _ in range(NUM_EXITS):
            run.next_exit()
    return (time.perf_counter() - t) * 1000


for net in nets.values():  # warm-up: allocator, bf16 weight casts
    all_exits(net)
times: dict[int, list[float]] = {w: [] for w in nets}
for _ in range(args.repeat):
    for w, net in nets.items():
        times[w].append(all_exits(net))
print(f"{args.size}x{args.size}, all five exits, fast path {str(dtype).removeprefix('torch.')}, "
      f"{args.threads} threads, best / median of {args.repeat} interleaved runs")
base = min(times[args.widths[0]])
for w, net in nets.items():
    g = gmacs_per_exit(net, args.size, args.size)[-1]
    print(f"width {w:3d}: {g:6.1f} GMACs, {count_parameters(net):9,} weights, "
          f"{min(times[w]):8.1f} / {statistics.median(times[w]):8.1f} ms, "
          f"x{min(times[w]) / base:.2f}")
