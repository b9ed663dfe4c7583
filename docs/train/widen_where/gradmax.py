"""Where would more channels pay? The gradient that new channels would receive, by scale.

Widen the training state's network (rbqe.train.widen): every new channel computes a
feature and nothing reads it yet. The loss gradient on the zero weights that would read
it says how fast the loss would fall if training let it in (GradMax, Evci et al., ICLR
2022, grows networks where that gradient is largest). Summed by the scale the new
channels sit at, over training batches (the trainer's own sampler, QF mix and exit
weights), and set against what the channels cost at that scale (MACs per input pixel).

    python docs/train/widen_where/gradmax.py weights/training/checkpoint.pt \
        ../shared/datasets/train --width 40 --batches 12 --photos 300
"""
import argparse
import re
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import torch

from rbqe.model import ModelConfig, RBQENet, _macs_per_px
from rbqe.train.data import PatchSampler, exit_weights
from rbqe.train.loop import mse
from rbqe.train.widen import _roles, widen_state

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("checkpoint")
parser.add_argument("train_dir")
parser.add_argument("--width", type=int, default=40)
parser.add_argument("--batches", type=int, default=12)
parser.add_argument("--photos", type=int, default=300)
parser.add_argument("--patch", type=int, default=128)
parser.add_argument("--batch", type=int, default=8)
args = parser.parse_args()

state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
old = int(state["config"]["width"])
wide_state = widen_state(state, args.width)
net = RBQENet(ModelConfig(3, 3, args.width))
net.load_state_dict(wide_state["model"])  # the training weights (the EMA's grads are alike)
roles = _roles(net)

paths = sorted(p for p in Path(args.train_dir).rglob("*") if p.suffix.lower() in
               {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
rng = np.random.default_rng(0)
images = []
for p in rng.permutation(paths)[: args.photos]:
    bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
    if bgr is not None and min(bgr.shape[:2]) >= args.patch:
        images.append(np.ascontiguousarray(bgr[..., ::-1]))
sampler = PatchSampler(images, 3, args.patch, args.batch, seed=7)


def input_scale(name: str) -> int | None:
    """Scale of the feature map a conv weight reads (None: the image, or per channel)."""
    if m := re.fullmatch(r"inc\.(\d)\.weight", name):
        return None if m[1] == "0" else 0
    if m := re.fullmatch(r"down\.(\d)\.\d\.weight", name):
        return int(m[1])
    if m := re.fullmatch(r"up\.(\d)_(\d)\.up\.weight", name):
        return int(m[1]) + 1
    if m := re.fullmatch(r"up\.(\d)_(\d)\.conv[12]\.1\.weight", name):
        return int(m[1])
    if re.fullmatch(r"heads\.\d\.1\.weight", name):
        return 0
    return None


sq = defaultdict(float)
by_kind = defaultdict(float)  # (scale, kind of layer)
params = dict(net.named_parameters())
for b in range(args.batches):
    x_np, y_np, q_np = sampler.batch_at(b)
    x, y = torch.as_tensor(x_np), torch.as_tensor(y_np)
    w = torch.from_numpy(exit_weights(np.asarray(q_np), "balanced"))
    net.zero_grad()
    losses = torch.stack([mse(o, y) for o in net(x)], dim=1)
    ((losses * w).sum() / (len(x) * w.sum(1).mean())).backward()
    for name, (d_out, d_in) in roles.items():
        s = input_scale(name)
        if s is None:
            continue
        g = params[name].grad.movedim((d_out, d_in), (0, 1))
        n_out, n_in = g.shape[0], g.shape[1]
        new_in = torch.tensor([c % args.width >= old for c in range(n_in)])
        old_out = torch.tensor([c % args.width < old for c in range(n_out)])
        v = float(g[old_out][:, new_in].square().sum()) / args.batches
        sq[s] += v
        kind = ("head" if name.startswith("heads") else "transposed" if ".up." in name
                else "encoder" if name.startswith(("inc", "down")) else "decoder")
        by_kind[s, kind] += v

# What the new channels cost: the net's MACs per input pixel at each scale, times the
# growth of a width-w layer to width-W (about (W/w)**2 - 1 of a layer at that scale).
narrow = RBQENet(ModelConfig(3, 3, old))
per_scale = defaultdict(float)
for name, mod in narrow.named_modules():
    if not isinstance(mod, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) or name == "inc.0":
        continue
    s = input_scale(f"{name}.weight")
    if name.endswith(".0") and name.startswith(("up", "heads")):  # depthwise: scale of node
        s = int(name[3]) if name.startswith("up") else 0
    if s is None:
        continue
    out_scale = s + 1 if re.fullmatch(r"down\.\d\.4", name) else (
        s - 1 if name.endswith(".up") else s)
    per_scale[s] += _macs_per_px(mod, out_scale)
growth = (args.width / old) ** 2 - 1
total = sum(per_scale.values())
print(f"width {old} -> {args.width}, {args.batches} batches of {args.batch} x {args.patch} px "
      f"from {len(images)} photos")
print("scale  grad^2 of the weights reading new channels   share   MAC share   extra MACs/px")
g_total = sum(sq.values())
for s in sorted(sq):
    print(f"{s:5d}  {sq[s]:40.3e}  {sq[s] / g_total:6.1%}  {per_scale[s] / total:9.1%}  "
          f"{per_scale[s] * growth:13,.0f}")
print("by the layer that reads them:")
for (s, kind), v in sorted(by_kind.items()):
    print(f"  scale {s} {kind:10s} {v / g_total:6.1%}")
