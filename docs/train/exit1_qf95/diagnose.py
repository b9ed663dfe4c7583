"""Where exit 1 loses against its input on light JPEGs (issue 10: "no exit worse than the
input"). Gray McMaster photos re-saved at one quality; per photo: PSNR of the input and
of exits 1-2, and exit 1's squared error over the input's in flat pixels (the 30 % with
the weakest gradient), in textured ones, on the 8-pixel border, and at the best and worst
of the 64 positions inside the 8x8 JPEG block.

    python docs/train/exit1_qf95/diagnose.py WEIGHTS [QF] [DIR]
"""
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from rbqe.weights import load_weights

torch.set_num_threads(1)
net, _ = load_weights(sys.argv[1])
qf = int(sys.argv[2]) if len(sys.argv) > 2 else 95
folder = Path(sys.argv[3] if len(sys.argv) > 3 else "../shared/datasets/val/mcmaster")


def psnr(a: np.ndarray, ref: np.ndarray) -> float:
    return float(10 * np.log10(1 / np.mean((np.clip(a, 0, 1) - ref) ** 2)))


def ratio(e: np.ndarray, e_in: np.ndarray, mask: np.ndarray) -> float:
    return float(np.mean(e[mask] ** 2) / np.mean(e_in[mask] ** 2))


print(f"QF {qf}: photo, PSNR input / exit 1 / exit 2, exit-1 error over input error in "
      "flat / textured / border pixels, over the 8x8 block positions min-max")
for path in sorted(folder.glob("*.png"))[:6]:
    clean = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    clean = clean[: clean.shape[0] // 32 * 32, : clean.shape[1] // 32 * 32]
    ok, buf = cv2.imencode(".jpg", clean, [cv2.IMWRITE_JPEG_QUALITY, qf])
    decoded = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE).astype(np.float64) / 255
    ref = clean.astype(np.float64) / 255
    x = torch.from_numpy(decoded).float()[None, None].repeat(1, 3, 1, 1)
    with torch.no_grad():
        run = net.start(x)
        e1, e2 = (run.next_exit()[0].mean(0).double().numpy() for _ in range(2))
    err_in, err1 = decoded - ref, np.clip(e1, 0, 1) - ref
    grad = np.abs(cv2.Sobel(ref, cv2.CV_64F, 1, 0)) + np.abs(cv2.Sobel(ref, cv2.CV_64F, 0, 1))
    flat = grad < np.percentile(grad, 30)
    border = np.zeros_like(flat)
    border[:8], border[-8:], border[:, :8], border[:, -8:] = True, True, True, True
    pos = [np.mean(err1[i::8, j::8] ** 2) / np.mean(err_in[i::8, j::8] ** 2)
           for i in range(8) for j in range(8)]
    print(f"{path.name:8} {psnr(decoded, ref):6.2f} {psnr(e1, ref):6.2f} {psnr(e2, ref):6.2f}"
          f"   {ratio(err1, err_in, flat):.2f} {ratio(err1, err_in, ~flat):.2f}"
          f" {ratio(err1, err_in, border):.2f}   {min(pos):.2f}-{max(pos):.2f}")
