"""Compare two sets of `rbqe eval --json` results, QF by QF: the gain of every exit and
of auto, candidate against baseline, and whether the candidate is better everywhere.

    python scripts/compare_eval.py BASE.json [BASE2.json ...] --candidate CAND.json [...]

Files of one side are merged (e.g. a QF 10-50 run and a QF 60-90 run). Gains are ΔPSNR
in dB against the JPEG input, averaged over the photos, as `rbqe eval` prints them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def per_qf(paths: list[Path]) -> dict[int, dict]:
    merged: dict[int, dict] = {}
    for p in paths:
        doc = json.loads(p.read_text())
        merged.update({int(q): v for q, v in doc["per_qf"].items()})
    return merged


def gains(entry: dict) -> dict[str, float]:
    row = {f"exit {k}": e["d_psnr"] for k, e in sorted(entry["exits"].items())}
    row["auto"] = entry["auto"]["d_psnr"]
    row["auto MACs"] = entry["auto"]["gmacs"] / entry["auto"]["gmacs_exit5"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", nargs="+", type=Path)
    ap.add_argument("--candidate", nargs="+", type=Path, required=True)
    args = ap.parse_args()
    base, cand = per_qf(args.base), per_qf(args.candidate)
    qfs = sorted(set(base) & set(cand))
    cols = list(gains(cand[qfs[0]]))
    print("candidate - baseline, dB (auto MACs: share of exit 5's, candidate / baseline)")
    print(f"{'QF':>4} " + " ".join(f"{c:>9}" for c in cols))
    worse = []
    for q in qfs:
        b, c = gains(base[q]), gains(cand[q])
        cells = []
        for col in cols:
            if col == "auto MACs":
                cells.append(f"{c[col]:.2f}/{b[col]:.2f}")
                continue
            d = c[col] - b[col]
            cells.append(f"{d:+9.3f}")
            if d < 0 and col in ("exit 5", "auto"):
                worse.append(f"QF {q} {col} {d:+.3f}")
        print(f"{q:>4} " + " ".join(f"{x:>9}" for x in cells))
    print("no QF where exit 5 or auto is worse" if not worse
          else "worse: " + "; ".join(worse))


if __name__ == "__main__":
    main()
