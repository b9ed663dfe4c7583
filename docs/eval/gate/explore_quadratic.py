"""Exit gate: squares and products of the non-ECA features, and a ridge fitted on clipped
gains (not shipped).

    python docs/eval/gate/explore_quadratic.py
"""
import numpy as np
from explore_common import evaluate, gains, tr

from rbqe.exit_policy import FEATURES
from rbqe.train import gate

base = [FEATURES.index(n) for n in ("score", "blockiness", "blur", "smooth_share", "change",
                                    "change1", "q_luma", "q_chroma")]


def expand(x):  # add squares and pairwise products of the base features
    b = x[..., base]
    prods = [b[..., i] * b[..., j] for i in range(len(base)) for j in range(i, len(base))]
    return np.concatenate([x, np.stack(prods, -1)], -1)


def fit_quad(recs, ridge):
    """Ridge regression per exit 1-4 on the expanded features, of the clipped gain of exit 5."""
    p = {"mean": [], "scale": [], "coef": [], "bias": []}
    tgt = gains(recs)
    for k in range(4):
        x = np.concatenate([expand(recs.view(v)[:, k]) for v in gate.VIEWS])
        y = np.tile(np.clip(tgt[:, k], -0.2, 1.0), 3)
        mu, sd = x.mean(0), x.std(0)
        sd[sd < 1e-9] = 1
        z = (x - mu) / sd
        b = y.mean()
        c = np.linalg.solve(z.T @ z + ridge * np.eye(z.shape[1]), z.T @ (y - b))
        p["mean"].append(mu)
        p["scale"].append(sd)
        p["coef"].append(c)
        p["bias"].append(b)
    return p


def pred(p, x):
    return np.stack([((expand(x[:, k]) - p["mean"][k]) / p["scale"][k]) @ p["coef"][k]
                     + p["bias"][k] for k in range(4)], 1)


for r in (1, 10, 100):
    p = fit_quad(tr, r)
    evaluate(lambda x, p=p: pred(p, x), f'quad ridge {r}')
# clipped linear
for r in (3, 30):
    p = gate.fit(tr, r, clip=(-0.2, 1.0))  # trained on the gains clipped to [-0.2, 1.0] dB
    evaluate(lambda x, p=p: gate.predictions(p, x), f'linear clipped ridge {r}')
