"""Widen a training state (``rbqe train``'s checkpoint) to more channels, keeping what it
learnt (:mod:`rbqe.train.widen`), and say how far the widened EMA's output moved:

    python scripts/widen_state.py weights/training/checkpoint.pt OUT_DIR --width 40 \
        [--val ../shared/datasets/val/bsds500_val]

OUT_DIR/checkpoint.pt then resumes with ``rbqe train --out OUT_DIR ...`` (the width comes
from the state). An existing OUT_DIR/checkpoint.pt is not overwritten.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from rbqe.io.atomic import atomic_write
from rbqe.train.data import load_folder_images
from rbqe.train.loop import checkpoint_ema
from rbqe.train.widen import widen_state

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("checkpoint")
parser.add_argument("out_dir")
parser.add_argument("--width", type=int, required=True)
parser.add_argument("--seed", type=int, default=0, help="for the new channels' weights")
parser.add_argument("--val", help="a folder of photos: PSNR between old and widened EMA outputs")
parser.add_argument("--limit", type=int, default=8)
args = parser.parse_args()

target = Path(args.out_dir) / "checkpoint.pt"
if target.exists():
    sys.exit(f"{target}: exists; widen into an empty folder")
state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
wide = widen_state(state, args.width, seed=args.seed)
if args.val:
    old_net, new_net = checkpoint_ema(state).eval(), checkpoint_ema(wide).eval()
    for i, img in enumerate(load_folder_images([args.val])[: args.limit]):
        crop = np.ascontiguousarray(img[:256, :256, : old_net.config.in_channels])
        x = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            a, b = old_net(x)[-1], new_net(x)[-1]
        mse = float(((a - b) ** 2).mean())
        psnr = f"{10 * np.log10(1 / mse):.1f} dB" if mse > 0 else "identical"
        print(f"photo {i}: exit 5, widened vs old: {psnr}, "
              f"max |diff| {float((a - b).abs().max()):.4f}")
target.parent.mkdir(parents=True, exist_ok=True)
atomic_write(target, lambda fh: torch.save(wide, fh))
n_old = sum(v.numel() for v in state["model"].values())
n_new = sum(v.numel() for v in wide["model"].values())
print(f"{target}: width {state['config']['width']} -> {args.width}, step {wide['step']}, "
      f"{n_old:,} -> {n_new:,} weights")
