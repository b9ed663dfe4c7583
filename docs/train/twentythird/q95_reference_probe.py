"""How much of a light-JPEG score on BSDS500 measures the reference's own JPEG?

The BSDS500 photos of val are themselves quality-95 JPEGs, so at QF 90 the "clean"
reference carries artifacts of about the size of the ones being removed. This probe
rebuilds that situation from lossless photos (McMaster, PNG): each photo is saved as a
colour JPEG at quality 95 (OpenCV, 4:2:0, as BSDS500 was distributed) and read back as
gray; that is the stand-in reference. It is then compressed at each QF and enhanced at all
five exits. The gain over the JPEG is measured twice: against the stand-in (what the val
table measures on BSDS500) and against the lossless photo (what a user gets).

    python docs/train/twentythird/q95_reference_probe.py QF[,QF...] SHIFT WEIGHTS|- [...]

``-`` is the shipped weights. SHIFT (pixels, 0-7) crops that many rows and columns off the
top left of the stand-in before the second compression, so that its 8x8 grid no longer
meets the first one's (0: the grids meet, as when a JPEG is re-saved as it is). Prints,
per weights file and QF, exits 1-5 both ways.
"""

import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from rbqe.engine import Enhancer  # noqa: E402
from rbqe.train.data import jpeg_roundtrip_with_tables  # noqa: E402
from rbqe.train.evaluate import list_clean_images, read_clean  # noqa: E402
from rbqe.train.metrics import psnr, to_uint8  # noqa: E402

LOSSLESS = ROOT.parent / "shared" / "datasets" / "val" / "mcmaster"


def q95_gray(path: Path) -> np.ndarray:
    """The photo saved as a colour quality-95 JPEG, decoded as gray (libjpeg's Y)."""
    ok, buf = cv2.imencode(".jpg", cv2.imread(str(path), cv2.IMREAD_COLOR),
                           [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok, path
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)


def main() -> None:
    qualities = [int(q) for q in sys.argv[1].split(",")]
    shift = int(sys.argv[2])
    paths = list_clean_images([LOSSLESS])
    truths = [read_clean(p, True)[0][shift:, shift:] for p in paths]
    stand_ins = [q95_gray(p)[shift:, shift:] for p in paths]
    ref_gap = np.mean([psnr(t, s) for t, s in zip(truths, stand_ins, strict=True)])
    print(f"{len(paths)} McMaster photos, gray; the q95 stand-in is {ref_gap:.2f} dB "
          f"from the lossless photo; second compression shifted by {shift} px")
    for name in sys.argv[3:]:
        enhancer = Enhancer(None if name == "-" else name, device="cpu", backend="torch",
                            precision="f32")
        for q in qualities:
            vs_ref, vs_truth = np.zeros(5), np.zeros(5)
            for truth, ref in zip(truths, stand_ins, strict=True):
                comp, _ = jpeg_roundtrip_with_tables(ref, q)
                exits = enhancer.enhance(comp.astype(np.float32) / 255.0, "all").exits
                base_ref, base_truth = psnr(ref, comp), psnr(truth, comp)
                for e, out in enumerate(exits):
                    img = to_uint8(np.squeeze(out.image))
                    vs_ref[e] += psnr(ref, img) - base_ref
                    vs_truth[e] += psnr(truth, img) - base_truth
            n = len(paths)
            print(f"{'shipped' if name == '-' else name}  QF {q}")
            print("  against the q95 stand-in: " + " ".join(f"{v / n:+.4f}" for v in vs_ref))
            print("  against the lossless photo: " + " ".join(f"{v / n:+.4f}" for v in vs_truth))


if __name__ == "__main__":
    main()
