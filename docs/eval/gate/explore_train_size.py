"""Does the gate predict better from more train photos? (issue 11: the gap to the oracle
is in what the features predict.)

    GATE_RECORDS=docs/eval/rgb_XXXk/gate BIG=path/train240.npz WHOLE=path/gray_gate_records.npz \\
        python docs/eval/gate/explore_train_size.py

``BIG``: train records of more photos (``rbqe calibrate --policy gate --train-limit 240
--crop 192 --dry-run --records-dir DIR``, same weights). The gate is fitted on every
``STEP``-th photo of them (fewer photos first) and on the release's own train records;
each fit's operating point is chosen on the calibration's val crops as the release does,
then measured there, in a 2-fold check over the val photos and on the whole gray val
photos (``WHOLE``), which no choice has seen.
"""
import os

import numpy as np
from explore_common import TOL, every_nth_photo, gains, line, on, subset, tr, two_folds, va

from rbqe.train import gate

big = gate.GateRecords.load(os.environ["BIG"])[0]
whole = gate.GateRecords.load(os.environ["WHOLE"])[0] if os.environ.get("WHOLE") else None


folds = two_folds(va)
fits = {f"release's train records ({len(np.unique(tr.names))} photos)": tr}
for step in (4, 2, 1):
    sub = subset(big, every_nth_photo(big, step))
    fits[f"BIG, every {step}. photo ({len(np.unique(sub.names))} photos)"] = sub
print(f"tolerance {TOL} dB (blind and lying views 0.1); oracle on each set at {TOL} dB")
for fname, recs in fits.items():
    params = gate.fit(recs)
    point = gate.choose_operating_point(params, va, TOL, 0.1)
    print(f"\n{fname}: from exit {point['min_exit']}, tau {point['tau']:g} dB")
    print(f"  crops, all val:  {line(on(va, params, point))}")
    held = []
    for choose_on, check_on in folds:
        m = on(check_on, params, gate.choose_operating_point(params, choose_on, TOL, 0.1))
        held.append(f"{m['macs']:.1%} / {m['worst_qf_loss_db']:.3f} dB")
    print(f"  crops, held out: {'; '.join(held)}")
    if whole is not None:
        m = on(whole, params, point)
        print(f"  whole photos:    {line(m)}, exits {'/'.join(map(str, m['histogram']))}")
    pred = gate.predictions(params, va.view("tables"))
    gain = gains(va)
    print("  val crops, correlation of predicted and true gain at exits 1-4: "
          + " ".join(f"{np.corrcoef(pred[:, k], gain[:, k])[0, 1]:.3f}" for k in range(4)))
