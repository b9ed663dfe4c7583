"""Exit gate: a small MLP per exit instead of the ridge regression (not shipped).

    python docs/eval/gate/explore_mlp.py
"""
import numpy as np
import torch
from explore_common import evaluate, gains, tr

from rbqe.train import gate

torch.set_num_threads(1)


def fit_mlp(recs, hidden=16, wd=1e-3, steps=1500, clip=(-0.2, 1.5), seed=0):
    """One small MLP per exit 1-4, predicting the (clipped) gain of exit 5 over it."""
    torch.manual_seed(seed)
    tgt = gains(recs)
    models = []
    for k in range(4):
        x = np.concatenate([recs.view(v)[:, k] for v in gate.VIEWS])
        y = np.tile(np.clip(tgt[:, k], *clip), 3)
        mu, sd = x.mean(0), x.std(0)
        sd[sd < 1e-9] = 1
        X = torch.tensor((x - mu) / sd, dtype=torch.float32)
        Y = torch.tensor(y, dtype=torch.float32)
        net = torch.nn.Sequential(torch.nn.Linear(X.shape[1], hidden), torch.nn.Tanh(),
                                  torch.nn.Linear(hidden, 1))
        opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=wd)
        for _ in range(steps):
            opt.zero_grad()
            loss = ((net(X)[:, 0] - Y) ** 2).mean()
            loss.backward()
            opt.step()
        models.append((mu, sd, net))
    return models


def pred(models, x):
    with torch.no_grad():
        return np.stack([net(torch.tensor((x[:, k] - mu) / sd, dtype=torch.float32))[:, 0].numpy()
                         for k, (mu, sd, net) in enumerate(models)], 1)


for clip in ((-0.2, 1.5), (-0.2, 0.5)):
    for hidden, wd in ((8, 1e-3), (16, 1e-3), (16, 1e-2), (32, 1e-2)):
        ms = fit_mlp(tr, hidden, wd, clip=clip)
        evaluate(lambda x, ms=ms: pred(ms, x), f'mlp h{hidden} wd{wd} clip{clip}')
p = gate.fit(tr)
evaluate(lambda x: gate.predictions(p, x), 'ridge')
