"""Paired A/B of two training logs over the same steps (same batches: the sampler is
seeded per step): quick-val differences, branch minus main line, EMA weights.

    python docs/train/relative_cap/compare.py MAIN_LOG.jsonl BRANCH_LOG.jsonl [FROM_STEP]
"""
import sys
from pathlib import Path

from rbqe.train.curve import read_log


def validations(path: str) -> dict[int, dict]:
    return {r["step"]: r for r in read_log(Path(path)) if "val_gain_db" in r}


main, branch = validations(sys.argv[1]), validations(sys.argv[2])
start = int(sys.argv[3]) if len(sys.argv) > 3 else 0
qfs = ("10", "30", "50", "70", "90")
print("step   EMA exit 5, branch - main, QF 10/30/50/70/90 | exit 1 QF 10/90 | exit 2 QF 10/90"
      " | raw exit 5 QF 10/90: main, branch")
for step in sorted(set(main) & set(branch)):
    if step <= start:
        continue
    a, b = main[step]["val_gain_db"], branch[step]["val_gain_db"]
    ra, rb = main[step]["val_gain_db_raw"], branch[step]["val_gain_db_raw"]
    exit5 = " ".join(f"{b[q][4] - a[q][4]:+.3f}" for q in qfs)
    early = " | ".join(f"{b['10'][e] - a['10'][e]:+.3f} {b['90'][e] - a['90'][e]:+.3f}"
                       for e in (0, 1))
    print(f"{step} {exit5} | {early} | {ra['10'][4]:.3f} {ra['90'][4]:.3f}, "
          f"{rb['10'][4]:.3f} {rb['90'][4]:.3f}")
