"""Compare two sets of `rbqe eval --json` results, QF by QF: the gain of every exit and
of auto, candidate against baseline, and whether the candidate is better everywhere.

    python scripts/compare_eval.py BASE.json [BASE2.json ...] --candidate CAND.json [...]

Files of one side are merged (e.g. a QF 10-50 run and a QF 60-90 run). Gains are ΔPSNR
in dB against the JPEG input, averaged over the photos, as `rbqe eval` prints them.
The two sides must be measured alike (the same number of photos, gray or colour): a
mismatch is refused unless --anyway. Exit status 0 when the candidate is nowhere worse
(exit 5 and auto), 1 when it is, 2 for a comparison that cannot be made.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def per_qf(paths: list[Path]) -> dict[int, dict]:
    merged: dict[int, dict] = {}
    for p in paths:
        doc = json.loads(p.read_text())
        merged.update({int(q): v for q, v in doc["per_qf"].items()})
    return merged


def protocol(paths: list[Path]) -> set[tuple[object, object]]:
    """``(images, gray)`` of each file: what the two sides must share."""
    return {(doc.get("images"), doc.get("gray"))
            for doc in (json.loads(p.read_text()) for p in paths)}


def gains(entry: dict) -> dict[str, float]:
    row = {f"exit {k}": e["d_psnr"] for k, e in sorted(entry["exits"].items())}
    row["auto"] = entry["auto"]["d_psnr"]
    row["auto MACs"] = entry["auto"]["gmacs"] / entry["auto"]["gmacs_exit5"]
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", nargs="+", type=Path)
    ap.add_argument("--candidate", nargs="+", type=Path, required=True)
    ap.add_argument("--anyway", action="store_true",
                    help="compare sides measured on different photo sets")
    args = ap.parse_args()
    sides = protocol(args.base), protocol(args.candidate)
    if sides[0] != sides[1] and not args.anyway:
        # 3 colour photos against 100 gray ones compared without a word.
        print(f"compare_eval: the sides were measured differently: (photos, gray) "
              f"{sorted(sides[0], key=str)} against {sorted(sides[1], key=str)} "
              "(--anyway compares them still)", file=sys.stderr)
        return 2
    base, cand = per_qf(args.base), per_qf(args.candidate)
    qfs = sorted(set(base) & set(cand))
    if not qfs:
        print(f"compare_eval: no QF in common ({sorted(base)} against {sorted(cand)})",
              file=sys.stderr)
        return 2
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
    return 1 if worse else 0


if __name__ == "__main__":
    sys.exit(main())
