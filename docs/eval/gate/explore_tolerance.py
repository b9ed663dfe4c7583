"""The gate's tolerance against the release's auto, per QF, on the whole gray val photos.

    GATE_RECORDS=docs/eval/rgb_5684k/gate WHOLE=docs/eval/rgb_5684k/gray_gate_records.npz \\
    CANDIDATE=docs/eval/rgb_5684k/gray.json BASE=docs/eval/rgb_5450k/gray.json \\
        python docs/eval/gate/explore_tolerance.py

For each ``calibrate --tolerance`` the gate is fitted on the train records and its operating
point chosen on the val crops, as ``rbqe calibrate --policy gate`` does; it is then measured
on the whole photos' records (``rbqe eval --save-gate-records``): MACs, share of the
oracle's saving (at 0.045 dB and at the same tolerance), the worst QF, and per QF the
candidate's auto (its exit 5 less the gate's loss) minus the release's auto, with the auto
MACs of each (shares of their exit 5). A release must be better at every QF, auto included.
"""
import json
import os

from explore_common import line, on, tr, va

from rbqe.train import gate

whole = gate.GateRecords.load(os.environ["WHOLE"])[0]
cand = json.load(open(os.environ["CANDIDATE"]))["per_qf"]
base = json.load(open(os.environ["BASE"]))["per_qf"]
params = gate.fit(tr)


def gain(r, key):
    return (r["auto"] if key == "auto" else r["exits"][key])["psnr"] - r["input"]["psnr"]


for tol in (0.045, 0.04, 0.039, 0.038, 0.037, 0.035, 0.03):
    point = gate.choose_operating_point(params, va, tol, 0.1)
    m = on(whole, params, point)
    own = gate.measure(whole, gate.oracle(whole, tol))["macs"]
    print(f"tolerance {tol}: from exit {point['min_exit']}, tau {point['taus'][-1]:g} dB")
    print(f"  crops {line(on(va, params, point))}")
    print(f"  whole {line(m)}; {(1 - m['macs']) / (1 - own):.0%} of the oracle's at {tol} dB; "
          f"exits {'/'.join(map(str, m['histogram']))}")
    worse = []
    cells = []
    for q, v in m["per_qf"].items():
        c, b = cand[str(q)], base[str(q)]
        d = gain(c, "5") - v["loss_db"] - gain(b, "auto")
        worse += [q] if d < 0 else []
        cells.append(f"{q}: {d:+.3f} ({v['macs']:.2f}/{b['auto']['gmacs'] / b['exits']['5']['gmacs']:.2f})")
    print("  auto - release's auto, dB (MACs): " + "  ".join(cells))
    print(f"  worse than the release at QF {worse}" if worse else "  not worse at any QF")
