"""What the gate explorations share: the records and the operating-point search.

Run the explore_*.py scripts from the repository root, e.g.
``python docs/eval/gate/explore_mlp.py``; they read the records in docs/eval/gate/*.npz, or
in the folder ``GATE_RECORDS`` names.
"""
import os

import numpy as np

from rbqe.train import gate

# GATE_RECORDS: another weights' records, e.g. docs/eval/rgb_5450k/gate.
RECORDS = os.environ.get('GATE_RECORDS', 'docs/eval/gate')
TOL = 0.045  # the release's tolerance (calibrate --tolerance)
tr, _ = gate.GateRecords.load(f'{RECORDS}/train.npz')
va, _ = gate.GateRecords.load(f'{RECORDS}/val.npz')


def gains(recs):
    """What exit 5 gains over each of exits 1-4, dB, ``(N, 4)``."""
    return recs.psnr[:, -1:] - recs.psnr[:, :-1]


def evaluate(predf, name):
    """Print the cheapest (MACs, tau, min_exit, MACs per view, exit histogram) on val within
    the loss limits, and the correlations of the predicted with the true gain per exit.

    ``predf`` maps one view's features to predicted gains of exit 5 over exits 1-4.
    """
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
                best = (round(views['tables']['macs'], 4), tau, m,
                        {v: round(views[v]['macs'], 3) for v in views},
                        views['tables']['histogram'])
    g = gains(va)
    p = preds['tables']
    print(name, [round(np.corrcoef(p[:, k], g[:, k])[0, 1], 3) for k in range(4)], best)


def subset(recs, mask):
    """The records where ``mask`` holds (e.g. one half of the val photos)."""
    return gate.GateRecords(**{k: getattr(recs, k)[mask] for k in recs.__dataclass_fields__})


def every_nth_photo(recs, step):
    """Where the record is of every ``step``-th photo by name (a mask over ``recs``)."""
    return np.isin(recs.names, np.unique(recs.names)[::step])


def two_folds(recs):
    """A 2-fold split over the photos (every other one by name): ``[(a, b), (b, a)]``, the
    records to choose an operating point on and those to measure it on."""
    half = every_nth_photo(recs, 2)
    a, b = subset(recs, half), subset(recs, ~half)
    return [(a, b), (b, a)]


def on(recs, params, point, tol=TOL):
    """The gate at ``point`` measured on ``recs`` (the file's tables); the oracle's share at
    ``tol``."""
    pred = gate.predictions(params, recs.view("tables"))
    m = gate.measure(recs, gate.gate_exits(pred, point["taus"], point["min_exit"]))
    orc = gate.measure(recs, gate.oracle(recs, tol))["macs"]
    m["share"] = (1 - m["macs"]) / (1 - orc)
    return m


def line(m):
    return f"{m['macs']:.1%} ({m['share']:.0%} of the oracle's saving), worst QF {m['worst_qf_loss_db']:.3f} dB"
