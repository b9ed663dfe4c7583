"""How unevenly `--relative-exits` weighs a batch, with and without `--relative-cap`.

For batches of the committed recipe (seed, patch, batch, quality mix from the training
state), the relative weights of the early exits: the effective batch size
(sum w)^2 / sum w^2 and the share of the largest weight, uncapped and under each cap; and
how much of the uncapped weight goes to patches whose input is within the floor (better
than 48 dB: mostly the quality-95 BSDS500 sources re-saved at QF 90-95, nearly lossless).

    python docs/train/relative_cap/batch_weights.py [BATCHES] [CAP ...]
"""
import sys

import numpy as np
import torch

from rbqe.train.data import PatchSampler, load_folder_images
from rbqe.train.loop import RELATIVE_FLOOR, mse, relative_weights, stored_config

torch.set_num_threads(1)
n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
caps = [float(c) for c in sys.argv[2:]] or [4.0]
cfg = stored_config("weights/training")
sampler = PatchSampler(load_folder_images(cfg["train_dirs"]), cfg["channels"], cfg["patch"],
                       cfg["batch"], cfg["seed"], cfg["light_share"], cfg["gray_share"])
rows: dict[float, list[tuple[float, float]]] = {c: [] for c in [0.0, *caps]}
top_qf, floor_share, floor_count = [], [], []
for step in range(1_000_000, 1_000_000 + n):  # batches the run has not reached
    x, y, q = sampler.batch_at(step)
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    for cap in rows:
        w = relative_weights(x, y, cap=cap).double()
        rows[cap].append((float(w.sum() ** 2 / (w ** 2).sum()), float(w.max() / w.sum())))
    free = relative_weights(x, y)
    top_qf.append(int(q[int(free.argmax())]))
    at_floor = mse(x, y) <= RELATIVE_FLOOR
    floor_share.append(float(free[at_floor].sum() / free.sum()))
    floor_count.append(int(at_floor.sum()))
print(f"{n} batches of {cfg['batch']} at {cfg['patch']} px; quality of the top patch "
      f"(uncapped): median {np.median(top_qf):.0f}; patches at the floor: "
      f"{np.mean(floor_count):.2f} a batch, carrying {np.mean(floor_share):.0%} of the weight")
print("cap    effective batch: median  p10    top patch's share: median  p90   max")
for cap, v in rows.items():
    eff, top = np.array(v).T
    print(f"{cap or 'none':>5}  {np.median(eff):22.1f} {np.percentile(eff, 10):5.1f}"
          f"  {np.median(top):27.0%} {np.percentile(top, 90):5.0%} {top.max():5.0%}")
