"""Can exit 1's output head alone stop exit 1 from being worse than its input at QF 95?
(issue 10: "no exit worse than the input at any QF from 10 to 95").

The trunk is frozen (the EMA of a training checkpoint), so exits 2-5 are untouched; only
head 1 (a separable conv on node X[0][1]) is refit, on patches from the training photos
made as the recipe makes them (RGB, 64 px, 20 % gray, 25 % at QF 51-95), with the
recipe's exit-1 loss (relative weights, balanced exit weights) plus a no-harm hinge:
``lam * mean(relu(MSE(exit 1) / MSE(input) - 1))``. For comparison, the head as trained
with its residual scaled by ``alpha``. Each row: exit 1's gain over the input in dB, gray,
8-bit PSNR: McMaster (18) at QF 90/95 and the first 12 BSDS500-val photos at QF 10-90.

    python docs/train/exit1_qf95/head_refit.py CHECKPOINT [BATCHES]
"""
import copy
import sys
import time

import numpy as np
import torch

from rbqe.tiling import pad_to_multiple
from rbqe.train.data import PatchSampler, exit_weights, jpeg_roundtrip, load_folder_images
from rbqe.train.evaluate import list_clean_images, read_clean
from rbqe.train.loop import RELATIVE_FLOOR, checkpoint_ema, mse, relative_weights
from rbqe.train.metrics import psnr, to_uint8

LAMBDAS = (0.0, 0.003, 0.01, 0.03, 0.1)
ALPHAS = (0.75, 0.5)
VAL = (("McMaster", "../shared/datasets/val/mcmaster", 18, (90, 95)),
       ("BSDS500-val", "../shared/datasets/val/bsds500_val", 12, (10, 50, 80, 90)))
LUMA = torch.tensor([0.299, 0.587, 0.114])[:, None, None]

torch.manual_seed(0)
state = torch.load(sys.argv[1], map_location="cpu", weights_only=False)
net = checkpoint_ema(state).eval()
batches = int(sys.argv[2]) if len(sys.argv) > 2 else 150


def x01(x: torch.Tensor) -> torch.Tensor:
    """Node X[0][1], what head 1 reads (the exit's nodes, not its head)."""
    run = net.start(x, None)
    run.advance()
    return run.nodes[0, 1]


def exit1_gains(head: torch.nn.Module, alpha: float = 1.0) -> str:
    cells = []
    for name, folder, count, qfs in VAL:
        for q in qfs:
            gains = []
            for path in list_clean_images([folder])[:count]:
                clean, _ = read_clean(path, gray=True)
                jpeg = jpeg_roundtrip(clean, q).astype(np.float32) / 255
                h, w = jpeg.shape
                x = pad_to_multiple(torch.from_numpy(np.repeat(jpeg[None], 3, 0))[None])
                with torch.inference_mode():
                    out = (x + alpha * head(x01(x)))[0, :, :h, :w]
                y = (out * LUMA).sum(0).clamp(0, 1).numpy()
                gains.append(psnr(clean, to_uint8(y)) - psnr(clean, to_uint8(jpeg)))
            cells.append(f"{name} {q} {np.mean(gains):+.3f}")
    return " | ".join(cells)


t0 = time.time()
sampler = PatchSampler(load_folder_images(["../shared/datasets/train"]), channels=3,
                       patch=64, batch=32, seed=4242, light_share=0.25, gray_share=0.2)
feats, xs, ys, qs = [], [], [], []
with torch.inference_mode():
    for b in range(batches):
        x, y, q = sampler.batch_at(b)
        x = torch.from_numpy(x)
        feats.append(x01(x).half())
        xs.append(x.half())
        ys.append(torch.from_numpy(y).half())
        qs.append(torch.from_numpy(q))
feats, xs, ys, qs = torch.cat(feats), torch.cat(xs), torch.cat(ys), torch.cat(qs)
print(f"step {state['step']}: {len(xs)} training patches, features in {time.time() - t0:.0f} s")
print(f"head as trained: {exit1_gains(net.heads[0])}", flush=True)
for alpha in ALPHAS:
    print(f"residual x {alpha}: {exit1_gains(net.heads[0], alpha)}", flush=True)

for lam in LAMBDAS:
    head = copy.deepcopy(net.heads[0]).train()
    opt = torch.optim.Adam(head.parameters(), lr=1e-4)
    order_rng = np.random.default_rng(1)
    for _epoch in range(3):
        order = torch.from_numpy(order_rng.permutation(len(xs)))
        for i in range(0, len(xs) - 31, 32):
            idx = order[i : i + 32]
            f, x, y = feats[idx].float(), xs[idx].float(), ys[idx].float()
            we = torch.from_numpy(exit_weights(qs[idx].numpy(), "balanced")[:, 0])
            out = x + head(f)
            err = mse(out, y)
            ratio = err / mse(x, y).clamp_min(RELATIVE_FLOOR)
            loss = (err * relative_weights(x, y) * we).mean() / we.mean()
            loss = loss + lam * torch.relu(ratio - 1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    head.eval()
    print(f"refit, lam {lam}: {exit1_gains(head)}", flush=True)
