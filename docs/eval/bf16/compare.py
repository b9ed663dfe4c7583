"""The PSNR cost of bf16: paired per image, from two 'rbqe eval --save-records' runs.

    rbqe eval DIR --qf ... --precision f32  --save-records f32.json
    rbqe eval DIR --qf ... --precision bf16 --save-records bf16.json
    python docs/eval/bf16/compare.py f32.json bf16.json

Prints, per QF and exit, the mean PSNR difference (bf16 minus f32, dB), the worst image's,
and the exit the assessor's scores would pick changing (the scores are compared too).
"""

from __future__ import annotations

import sys
from collections import defaultdict

import numpy as np

from rbqe.arch import NUM_EXITS
from rbqe.train.evaluate import load_records


def main(ref_path: str, got_path: str) -> None:
    ref = {(r.image, r.qf): r for r in load_records(ref_path)}
    got = {(r.image, r.qf): r for r in load_records(got_path)}
    keys = sorted(ref.keys() & got.keys(), key=lambda k: (k[1], k[0]))
    by_qf: dict[int, list] = defaultdict(list)
    for k in keys:
        by_qf[k[1]].append((ref[k], got[k]))
    print(f"{len(keys)} image-quality pairs; bf16 minus f32, dB: mean (worst image) per exit; "
          "max |score difference|")
    print(f"{'QF':>4} " + " ".join(f"{'exit ' + str(e):>17}" for e in range(1, NUM_EXITS + 1))
          + f" {'score':>8}")
    worst_mean = 0.0
    for qf, pairs in sorted(by_qf.items()):
        cells = []
        for e in range(NUM_EXITS):
            d = np.array([g.exits[e]["psnr"] - r.exits[e]["psnr"] for r, g in pairs])
            worst_mean = max(worst_mean, abs(float(d.mean())))
            cells.append(f"{d.mean():+8.4f} ({d[np.argmax(np.abs(d))]:+.3f})")
        ds = max(abs(a - b) for r, g in pairs for a, b in zip(r.scores, g.scores, strict=True))
        print(f"{qf:>4} " + " ".join(f"{c:>17}" for c in cells) + f" {ds:8.5f}")
    print(f"largest |mean difference| over QFs and exits: {worst_mean:.4f} dB (target <= 0.01)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
