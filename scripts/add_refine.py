"""Give a training state (``rbqe train``'s checkpoint) refine blocks on exit 5, keeping
everything it learnt (:mod:`rbqe.train.refine`):

    python scripts/add_refine.py weights/training/checkpoint.pt OUT_DIR [--blocks 1]

OUT_DIR/checkpoint.pt then resumes with ``rbqe train --out OUT_DIR ...`` (the blocks come
from the state). An existing OUT_DIR/checkpoint.pt is not overwritten.
"""
import argparse
import sys
from pathlib import Path

import torch

from rbqe.io.atomic import atomic_write
from rbqe.train.refine import PREFIX, add_refine

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("checkpoint")
parser.add_argument("out_dir")
parser.add_argument("--blocks", type=int, default=1)
parser.add_argument("--seed", type=int, default=0, help="for the new convs' weights")
args = parser.parse_args()

target = Path(args.out_dir) / "checkpoint.pt"
if target.exists():
    sys.exit(f"{target}: exists; add blocks into an empty folder")
state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
try:
    refined = add_refine(state, args.blocks, seed=args.seed)
except ValueError as exc:
    sys.exit(f"{args.checkpoint}: {exc}")
target.parent.mkdir(parents=True, exist_ok=True)
atomic_write(target, lambda fh: torch.save(refined, fh))
added = sum(v.numel() for k, v in refined["model"].items() if k.startswith(PREFIX))
print(f"{target}: width {refined['config']['width']}, {args.blocks} refine blocks on exit 5 "
      f"(+{added:,} weights), step {refined['step']}")
