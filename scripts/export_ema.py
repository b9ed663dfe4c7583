"""Export the EMA weights of a training checkpoint, e.g. of a run still going on, as a
weights file to measure (``scripts/ship_candidate.sh``) or ship; the file records the step
and patches it was taken at, as a finished run's ``ema.safetensors`` does.

    python scripts/export_ema.py weights/training/checkpoint.pt OUT.safetensors [--slow]
"""
import argparse

import torch

from rbqe.errors import UsageError
from rbqe.train.loop import checkpoint_ema
from rbqe.weights import save_weights

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("checkpoint")
parser.add_argument("out")
parser.add_argument("--slow", action="store_true", help="the slow EMA (ema_slow) instead")
args = parser.parse_args()

state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
try:
    net = checkpoint_ema(state, slow=args.slow)
except UsageError as e:
    parser.error(f"{args.checkpoint}: {e}")
meta = {"step": str(state["step"]), "patches": str(state["patches"])}
print(save_weights(net, args.out, extra=meta), f"step {meta['step']}, {meta['patches']} patches")
