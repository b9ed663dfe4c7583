"""The linear gate fitted on clipped gains, against the plain fit, with held-out checks.

    GATE_RECORDS=docs/eval/rgb_5450k/gate python docs/eval/gate/explore_clipped_heldout.py

The same ridge regression per exit as ``rbqe calibrate`` (so the same stored format),
fitted on the train records' gains clipped to ``[-0.2, hi]`` dB: a few photos gain far
more than the rest, and a squared loss lets them pull every prediction. For each fit and
tolerance: the operating point chosen on all val records (the shipped procedure), and a
2-fold check over val photos (operating point chosen on one half, measured on the other),
with the MACs against exit 5, the worst quality's loss and the share of the oracle's
saving (the oracle at the same tolerance on the same records).
"""
from explore_common import line, on, tr, two_folds, va

from rbqe.train import gate

folds = two_folds(va)
fits = {"plain ridge 3 (shipped)": gate.fit(tr)}
for hi in (0.5, 1.0):
    for ridge in (3.0, 30.0):
        fits[f"clipped [-0.2, {hi}] ridge {ridge:g}"] = gate.fit(tr, ridge, clip=(-0.2, hi))
for tol in (0.045, 0.05):
    print(f"tolerance {tol} dB (blind and lying views: 0.1)")
    for name, params in fits.items():
        op = gate.choose_operating_point(params, va, tol, 0.1)
        held = []
        for choose_on, check_on in folds:
            m = on(check_on, params, gate.choose_operating_point(params, choose_on, tol, 0.1), tol)
            held.append(f"{m['macs']:.1%} / {m['worst_qf_loss_db']:.3f} dB")
        print(f"  {name:<28} all val: {line(on(va, params, op, tol))}, tau {op['tau']}, from "
              f"exit {op['min_exit']} | held out: {'; '.join(held)}")
