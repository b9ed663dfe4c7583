"""One gate threshold for every exit against one per exit (``choose_operating_point(...,
per_exit=True)``), each on the plain and on the clipped fit, with held-out checks.

    GATE_RECORDS=docs/eval/rgb_5450k/gate WHOLE=docs/eval/rgb_5450k_per_exit/val_whole.npz \\
        python docs/eval/gate/explore_per_exit_tau.py

The operating point is chosen on the calibration's val records (192 px crops), as the
release does; it is then measured (1) on those records, (2) in a 2-fold check over the
val photos (chosen on one half, measured on the other) and (3), when ``WHOLE`` names
them, on records of the whole gray val photos (``rbqe eval --save-gate-records``), which
no choice has seen: MACs against exit 5, the worst quality's mean loss, the loss per
quality, and the share of the oracle's saving on the same records at the same tolerance.
Last, with ``WHOLE``: the operating point chosen on the whole photos themselves, at 0.045
and 0.05 dB, in a 2-fold check over those photos.
"""
import os

import numpy as np
from explore_common import TOL, line, on, tr, two_folds, va

from rbqe.train import gate

whole = gate.GateRecords.load(os.environ["WHOLE"])[0] if os.environ.get("WHOLE") else None


folds = two_folds(va)
fits = {"plain": gate.fit(tr), "clipped [-0.2, 0.5]": gate.fit(tr, clip=gate.GAIN_CLIP)}
print(f"tolerance {TOL} dB (blind and lying views 0.1); oracle on each set at {TOL} dB")
for fname, params in fits.items():
    for per_exit in (False, True):
        point = gate.choose_operating_point(params, va, TOL, 0.1, per_exit=per_exit)
        taus = "/".join(f"{t:g}" for t in point["taus"][point["min_exit"] - 1:])
        print(f"\n{fname} fit, {'a tau per exit' if per_exit else 'one tau'}: from exit "
              f"{point['min_exit']}, tau {taus} dB")
        print(f"  crops, all val:  {line(on(va, params, point))}")
        held = []
        for choose_on, check_on in folds:
            p = gate.choose_operating_point(params, choose_on, TOL, 0.1, per_exit=per_exit)
            m = on(check_on, params, p)
            held.append(f"{m['macs']:.1%} / {m['worst_qf_loss_db']:.3f} dB")
        print(f"  crops, held out: {'; '.join(held)}")
        if whole is not None:
            m = on(whole, params, point)
            print(f"  whole photos:    {line(m)}, exits {'/'.join(map(str, m['histogram']))}")
            print("    per QF (MACs / loss dB): " + "  ".join(
                f"{q}: {v['macs']:.2f}/{v['loss_db']:.3f}" for q, v in m["per_qf"].items()))
if whole is not None:
    o = gate.measure(whole, gate.oracle(whole, TOL))
    print(f"\nwhole photos, oracle: {o['macs']:.1%}, exits {'/'.join(map(str, o['histogram']))}")
    for k in (3, 4):
        f = gate.measure(whole, np.full(len(whole.qf), k - 1))
        print(f"whole photos, fixed exit {k}: {f['macs']:.1%}, worst QF {f['worst_qf_loss_db']:.3f} dB")
    print("\noperating point chosen on whole photos: all of them | 2-fold held out "
          "(MACs, share of the oracle's saving, worst QF loss)")
    wfolds = two_folds(whole)
    for tol in (0.045, 0.05):
        for fname, params in fits.items():
            for per_exit in (False, True):
                point = gate.choose_operating_point(params, whole, tol, 0.1, per_exit=per_exit)
                m = on(whole, params, point, tol)
                held = []
                for choose_on, check_on in wfolds:
                    p = gate.choose_operating_point(params, choose_on, tol, 0.1,
                                                    per_exit=per_exit)
                    h = on(check_on, params, p, tol)
                    held.append(f"{h['macs']:.1%} ({h['share']:.0%}) / "
                                f"{h['worst_qf_loss_db']:.3f} dB")
                taus = "/".join(f"{t:g}" for t in point["taus"][point["min_exit"] - 1:])
                print(f"  {tol} dB, {fname}, {'per exit' if per_exit else 'one tau':<8} from "
                      f"exit {point['min_exit']}, tau {taus}: {line(m)}, exits "
                      f"{'/'.join(map(str, m['histogram']))} | {'; '.join(held)}")
