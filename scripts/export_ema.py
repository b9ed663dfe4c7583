"""Export the EMA weights of a training checkpoint, e.g. of a run still going on, as a
weights file to measure (``scripts/ship_candidate.sh``) or ship; the file records the step
and patches it was taken at, as a finished run's ``ema.safetensors`` does.

    python scripts/export_ema.py weights/training/checkpoint.pt OUT.safetensors [--slow]
"""
import argparse

import torch

from rbqe.model import ModelConfig, RBQENet
from rbqe.weights import save_weights

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("checkpoint")
parser.add_argument("out")
parser.add_argument("--slow", action="store_true", help="the slow EMA (ema_slow) instead")
args = parser.parse_args()

state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
recipe = state["config"]
key = "ema_slow" if args.slow else "ema"
if key not in state:
    parser.error(f"{args.checkpoint} holds no {key} weights")
net = RBQENet(ModelConfig(recipe["channels"], recipe["channels"], recipe["width"]))
# An AveragedModel's state: the network's tensors under "module.", plus its counter.
net.load_state_dict({k.removeprefix("module."): v for k, v in state[key].items()
                     if k.startswith("module.")})
meta = {"step": str(state["step"]), "patches": str(state["patches"])}
print(save_weights(net, args.out, extra=meta), f"step {meta['step']}, {meta['patches']} patches")
