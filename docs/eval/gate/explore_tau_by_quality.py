"""Would a gate threshold per JPEG quality band (read from the file's tables) save more
than one threshold for all? Offline, on the saved records (shipped RGB weights).

    python docs/eval/gate/explore_tau_by_quality.py

For each band, the cheapest (tau, min_exit) keeping every QF of the band within 0.05 dB
of exit 5 on val (the 'tables' view); a 2-fold check chooses on half the val photos and
measures on the other half.
"""
import numpy as np

from rbqe.model import NUM_EXITS
from rbqe.train import gate

TOL = 0.05
tr, _ = gate.GateRecords.load("docs/eval/gate/train.npz")
va, _ = gate.GateRecords.load("docs/eval/gate/val.npz")
params = gate.fit(tr)
pred = gate.predictions(params, va.view("tables"))
loss_all = va.psnr[:, -1:] - va.psnr
macs_all = va.gmacs / va.gmacs[:, -1:]


def best_for(rows: np.ndarray) -> tuple[float, int]:
    """Cheapest (tau, min_exit) with every QF among ``rows`` within TOL."""
    best = None
    for m in range(1, NUM_EXITS):
        for tau in gate.TAU_GRID:
            ch = gate.gate_exits(pred[rows], tau, m)
            loss = loss_all[rows, ch]
            if max(loss[va.qf[rows] == q].mean() for q in set(va.qf[rows].tolist())) > TOL:
                continue
            cost = va.gmacs[rows, ch].sum()
            if best is None or cost < best[0]:
                best = (cost, float(tau), m)
    return (best[1], best[2]) if best else (-1e9, NUM_EXITS - 1)


def evaluate(bands: list[tuple[int, int]], fit_rows: np.ndarray, test_rows: np.ndarray):
    chosen = np.full(len(va.qf), NUM_EXITS - 1)
    taus = {}
    for lo, hi in bands:
        band = (va.qf >= lo) & (va.qf <= hi)
        tau, m = best_for(np.flatnonzero(band & fit_rows))
        taus[(lo, hi)] = (tau, m)
        idx = np.flatnonzero(band & test_rows)
        chosen[idx] = gate.gate_exits(pred[idx], tau, m)
    idx = np.flatnonzero(test_rows)
    ch = chosen[idx]
    macs = va.gmacs[idx, ch].sum() / va.gmacs[idx, -1].sum()
    per_qf = {q: loss_all[idx[va.qf[idx] == q], ch[va.qf[idx] == q]].mean()
              for q in sorted(set(va.qf.tolist()))}
    return macs, max(per_qf.values()), taus


every = np.ones(len(va.qf), bool)
names = sorted(set(va.names.tolist()))
half = np.isin(va.names, names[::2])
for label, bands in [("one tau", [(0, 100)]),
                     ("3 bands", [(0, 30), (31, 60), (61, 100)]),
                     ("5 bands", [(0, 20), (21, 40), (41, 60), (61, 80), (81, 100)]),
                     ("per QF", [(q, q) for q in sorted(set(va.qf.tolist()))])]:
    macs, worst, taus = evaluate(bands, every, every)
    h1 = evaluate(bands, half, ~half)
    h2 = evaluate(bands, ~half, half)
    print(f"{label:8} fitted on all val: MACs {macs:.1%}, worst QF loss {worst:.3f} dB | "
          f"2-fold held out: MACs {h1[0]:.1%} / {h2[0]:.1%}, worst QF loss {h1[1]:.3f} / "
          f"{h2[1]:.3f} dB")
    print("         ", {f"{lo}-{hi}": (round(t, 3), m) for (lo, hi), (t, m) in taus.items()})
orc = gate.oracle(va, TOL)
print(f"oracle: MACs {va.gmacs[np.arange(len(orc)), orc].sum() / va.gmacs[:, -1].sum():.1%}")
