"""What does a geometric self-ensemble buy (the eight flips and transposes of a photo,
each enhanced and turned back, averaged), and at what cost?

Gray val photos, libjpeg at each QF, all five exits (torch f32). Each photo is padded at
the bottom and right to a multiple of 16 first, so that the flipped copies keep the JPEG's
8x8 grid (and a 4:2:0 colour file's 16x16 one) where the network saw it in training.
Prints, per exit: the plain output, the mean of the 4 flips, the mean of all 8, as dB
over the JPEG.

    python docs/train/twentysecond/ensemble_probe.py WEIGHTS|- N QF[,QF...]
"""

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from rbqe.engine import Enhancer  # noqa: E402
from rbqe.train.data import jpeg_roundtrip_with_tables  # noqa: E402
from rbqe.train.evaluate import list_clean_images, read_clean  # noqa: E402
from rbqe.train.metrics import psnr, to_uint8  # noqa: E402

VAL = ROOT.parent / "shared" / "datasets" / "val" / "bsds500_val"


def turn(a: np.ndarray, t: int, back: bool = False) -> np.ndarray:
    """Dihedral transform ``t`` (bit 2: transpose, bit 0: flip columns, bit 1: flip rows)
    of an ``(H, W[, C])`` array, or its inverse."""
    steps = [(4, lambda z: z.swapaxes(0, 1)), (1, lambda z: z[:, ::-1]), (2, lambda z: z[::-1])]
    for bit, op in reversed(steps) if back else steps:
        if t & bit:
            a = op(a)
    return np.ascontiguousarray(a)


def main() -> None:
    weights = None if sys.argv[1] == "-" else sys.argv[1]
    count, qualities = int(sys.argv[2]), [int(q) for q in sys.argv[3].split(",")]
    enhancer = Enhancer(weights, device="cpu", backend="torch", precision="f32")
    sums = {q: np.zeros((5, 3)) for q in qualities}
    paths = list_clean_images([VAL])[:count]
    for path in paths:
        clean, _ = read_clean(path, True)
        h, w = clean.shape
        for q in qualities:
            comp, _ = jpeg_roundtrip_with_tables(clean, q)
            x = np.pad(comp.astype(np.float32) / 255.0,
                       ((0, -h % 16), (0, -w % 16)), mode="edge")
            outs = []
            for t in range(8):
                exits = enhancer.enhance(turn(x, t), "all").exits
                outs.append([turn(np.squeeze(e.image), t, back=True)[:h, :w] for e in exits])
            base = psnr(clean, comp)
            for e in range(5):
                images = [o[e] for o in outs]
                sums[q][e] += [psnr(clean, to_uint8(m)) - base for m in
                               (images[0], np.mean(images[:4], 0), np.mean(images, 0))]
    print(f"{weights or 'shipped weights'}, {len(paths)} gray val photos; per exit: "
          "dB over the JPEG, plain / 4 flips / all 8")
    for q in qualities:
        m = sums[q] / len(paths)
        print(f"QF {q}:  " + "  ".join(f"e{e + 1} {m[e, 0]:+.4f} / {m[e, 1]:+.4f} / "
                                       f"{m[e, 2]:+.4f}" for e in range(5)))


if __name__ == "__main__":
    main()
