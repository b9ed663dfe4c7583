"""How much "the share of the oracle's saving" moves with the photos it is measured on.

    GATE_RECORDS=docs/eval/rgb_5684k/gate python docs/eval/gate/explore_share_noise.py

The shipped gate (ridge 3 on the train records, tolerance 0.038 dB, operating point chosen
on the val crops) measured on random halves of the 100 whole gray val photos
(``docs/eval/rgb_5684k/gray_gate_records.npz``, 450 records each), against the oracle at the
same tolerance on the same half. Issue 11's goal is 95 % of the oracle's saving; the gate has
94 % on all 100 photos. If halves of the same photos spread by several points, that one
point is within what the photos alone decide.
"""
import numpy as np
from explore_common import on, subset, tr, va

from rbqe.train import gate

TOL = 0.038
whole, _ = gate.GateRecords.load('docs/eval/rgb_5684k/gray_gate_records.npz')
params = gate.fit(tr)
point = gate.choose_operating_point(params, va, TOL, 0.1)
print(f"operating point (val crops): tau {point['tau']}, from exit {point['min_exit']}")
m = on(whole, params, point, TOL)
print(f"all 100 photos: {m['macs']:.1%}, {m['share']:.1%} of the oracle's saving, "
      f"worst QF {m['worst_qf_loss_db']:.3f} dB")
names = np.unique(whole.names)
shares = []
for seed in range(20):
    half = set(np.random.default_rng(seed).permutation(names)[:len(names) // 2])
    mask = np.isin(whole.names, list(half))
    for part in (mask, ~mask):
        shares.append(on(subset(whole, part), params, point, TOL)["share"])
s = np.array(shares)
print(f"40 halves (20 random splits): share {s.mean():.1%} mean, {s.std():.1%} s.d., "
      f"{s.min():.1%} to {s.max():.1%}; at or above 95 % in {(s >= 0.95).sum()} of 40")
