import numpy as np
import torch

from rbqe.train import gate

torch.set_num_threads(1)
tr, _ = gate.GateRecords.load('docs/eval/gate/train.npz')
va, _ = gate.GateRecords.load('docs/eval/gate/val.npz')


def fit_mlp(recs, hidden=16, wd=1e-3, steps=1500, clip=(-0.2, 1.5), seed=0):
    """One small MLP per exit 1-4, predicting the (clipped) gain of exit 5 over it."""
    torch.manual_seed(seed)
    tgt = recs.psnr[:, -1:] - recs.psnr[:, :-1]
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


def evaluate(predf, name):
    """The cheapest (tau, min_exit) on val within the loss limits, and the correlations."""
    preds = {v: predf(va.view(v)) for v in gate.VIEWS}
    best = None
    for m in range(1, 5):
        for tau in gate.TAU_GRID:
            views = {v: gate.measure(va, gate.gate_exits(preds[v], tau, m)) for v in gate.VIEWS}
            if views['tables']['worst_qf_loss_db'] > 0.05:
                continue
            if max(views[v]['worst_qf_loss_db'] for v in ('blind', 'lying')) > 0.1:
                continue
            if best is None or views['tables']['macs'] < best[0]:
                best = (views['tables']['macs'], tau, m,
                        {v: round(views[v]['macs'], 3) for v in views},
                        views['tables']['histogram'])
    g = va.psnr[:, -1:] - va.psnr[:, :-1]
    p = preds['tables']
    print(name, [round(np.corrcoef(p[:, k], g[:, k])[0, 1], 3) for k in range(4)], best)


for clip in ((-0.2, 1.5), (-0.2, 0.5)):
    for hidden, wd in ((8, 1e-3), (16, 1e-3), (16, 1e-2), (32, 1e-2)):
        ms = fit_mlp(tr, hidden, wd, clip=clip)
        evaluate(lambda x, ms=ms: pred(ms, x), f'mlp h{hidden} wd{wd} clip{clip}')
p = gate.fit(tr)
evaluate(lambda x: gate.predictions(p, x), 'ridge')
