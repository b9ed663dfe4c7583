"""Average the tensors of weights files of one network (a "model soup"), e.g. the shipped
release and a later EMA of the same training line, to measure as a candidate.

    python scripts/average_weights.py OUT.safetensors A.safetensors:0.25 B.safetensors:0.75

Each input is PATH[:WEIGHT]; the weights are normalised to sum to 1 (no weight: equal
shares). Averaging points of one run's trajectory tends to land in a flatter region than
either end; the tenth session's probe (docs/train/README.md) gained 0.045 dB at QF 90
that way. The output keeps no exit policy of its inputs (a gate fitted to one network
does not fit another) and records its sources, so refit before shipping.
"""
import argparse

from rbqe.errors import WeightsError
from rbqe.weights import load_weights, save_weights


def source(arg: str) -> tuple[str, float]:
    path, sep, share = arg.rpartition(":")
    if not sep or not path:
        return arg, 1.0
    try:
        value = float(share)
    except ValueError:
        return arg, 1.0  # a colon inside the path itself
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{arg}: the weight must be positive")
    return path, value


parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("out")
parser.add_argument("inputs", nargs="+", type=source, metavar="PATH[:WEIGHT]")
args = parser.parse_args()

total = sum(share for _, share in args.inputs)
try:
    nets = [(load_weights(path), share / total) for path, share in args.inputs]
except WeightsError as e:  # it names the file and the cause
    parser.error(str(e))
(first, first_info), _ = nets[0]
for (_, info), _ in nets[1:]:
    if info.config != first_info.config:
        parser.error(f"{info.path}: network {info.config} differs from "
                     f"{first_info.path}'s {first_info.config}")
tensors = [(net.state_dict(), share) for (net, _), share in nets]
avg = {k: sum(sd[k] * share for sd, share in tensors) for k in tensors[0][0]}
first.load_state_dict(avg)
meta = {"averaged_from": [{"path": str(info.path), "share": round(share, 6),
                           "step": info.extra.get("step"), "patches": info.extra.get("patches")}
                          for (_, info), share in nets]}
print(save_weights(first, args.out, extra=meta))
