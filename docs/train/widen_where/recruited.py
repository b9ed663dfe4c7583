"""How far training has let the new channels of a widened state in, by scale: the norm of
the weights through which old channels read new ones, against the norm of those through
which they read old ones (per weight, RMS), for the training state and its EMA.

    python docs/train/widen_where/recruited.py weights/training/checkpoint.pt --old-width 32
"""
import argparse
import re
from collections import defaultdict

import torch

from rbqe.model import ModelConfig, RBQENet
from rbqe.train.widen import _roles

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("checkpoint")
parser.add_argument("--old-width", type=int, default=32)
args = parser.parse_args()

state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
width, old = int(state["config"]["width"]), args.old_width
roles = _roles(RBQENet(ModelConfig(3, 3, width)))


def node_scale(name: str) -> str:
    """Where the channels a weight reads sit, and through what kind of layer."""
    if name.startswith("heads"):
        return "0 head"
    if m := re.match(r"(inc|down)\.?(\d)?", name):
        return f"{0 if m[1] == 'inc' else m[2]} encoder"
    m = re.match(r"up\.(\d)_\d\.(up|conv)", name)
    return f"{int(m[1]) + 1} transposed" if m[2] == "up" else f"{m[1]} decoder"


print(f"step {state['step']}, width {old} -> {width}: RMS of old<-new weights / RMS of "
      "old<-old weights")
for key in ("model", "ema"):
    sums = defaultdict(lambda: [0.0, 0, 0.0, 0])
    sd = {k.removeprefix("module."): v for k, v in state[key].items()}
    for name, (d_out, d_in) in roles.items():
        w = sd[name].float().movedim((d_out, d_in), (0, 1))
        if w.shape[1] == 1 or name == "inc.0.weight":  # depthwise, or the image
            continue
        new_in = torch.arange(w.shape[1]) % width >= old
        old_out = torch.arange(w.shape[0]) % width < old
        s = sums[node_scale(name)]
        s[0] += float(w[old_out][:, new_in].square().sum())
        s[1] += int(old_out.sum() * new_in.sum()) * w[0, 0].numel()
        s[2] += float(w[old_out][:, ~new_in].square().sum())
        s[3] += int(old_out.sum() * (~new_in).sum()) * w[0, 0].numel()
    print(f"{key}:")
    for where, (a, n, b, m) in sorted(sums.items()):
        print(f"  scale {where:12s} {(a / n) ** 0.5 / (b / m) ** 0.5:6.3f}")
