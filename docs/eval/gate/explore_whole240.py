"""The shipped weights' gate (60 train photos) against one fitted on 240 (issue 11), each
with its operating point chosen on the val crops, measured on the crops and on the whole
gray val photos. TRAIN240: the 240-photo train records of the shipped weights (calibrate
--train-limit 240 --records-dir DIR; not committed, 4 MB).

    TRAIN240=DIR/train.npz python docs/eval/gate/explore_whole240.py
"""
import sys

sys.path.insert(0, 'docs/eval/gate')
import os

os.environ['GATE_RECORDS'] = 'docs/eval/rgb_5450k/gate'
from explore_common import TOL, line, on, va

from rbqe.train import gate

whole = gate.GateRecords.load('docs/eval/rgb_5450k_whole/val_whole.npz')[0]
for name, path in (("shipped (60 photos)", 'docs/eval/rgb_5450k/gate/train.npz'), ("240 photos", os.environ['TRAIN240'])):
    tr = gate.GateRecords.load(path)[0]
    params = gate.fit(tr)
    point = gate.choose_operating_point(params, va, TOL, 0.1)
    m = on(whole, params, point)
    print(f"{name}: tau {point['tau']} from exit {point['min_exit']}\n  crops {line(on(va, params, point))}\n  whole {line(m)}, exits {m['histogram']}")
    for q, v in m['per_qf'].items():
        print('   ', q, f"{v['macs']:.3f} {v['loss_db']:.3f} {v['histogram']}")
