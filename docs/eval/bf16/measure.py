"""The PSNR cost of the bf16 CPU fast path on val photos, paired per image (a script).

    python docs/eval/bf16/measure.py ../shared/datasets/val/bsds500_val --limit 25

Each photo (RGB, the default model) is JPEG-compressed with OpenCV at each QF (4:2:0),
run through all five exits in float32 and in bf16 on the same input, rounded to 8 bits,
and scored by PSNR against the original. Prints per QF and exit the mean difference
(bf16 minus f32, dB), the worst photo's, and whether the gain over the JPEG is the same.
Needs a CPU with native bf16 (AVX512-BF16 or AMX).
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from rbqe.arch import NUM_EXITS  # noqa: E402
from rbqe.fastpath import FastProgressiveRun, native_bf16  # noqa: E402
from rbqe.tiling import pad_to_multiple  # noqa: E402
from rbqe.train.evaluate import list_clean_images  # noqa: E402
from rbqe.weights import default_weights_path, file_identity, load_weights  # noqa: E402


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / mse)


def exits(net, rgb: np.ndarray, dtype: torch.dtype) -> list[np.ndarray]:
    h, w = rgb.shape[:2]
    x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None].float() / 255
    x = pad_to_multiple(x).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        run = FastProgressiveRun(net, x, None, dtype=dtype)
        outs = [run.next_exit() for _ in range(NUM_EXITS)]
    return [np.rint(o[0, :, :h, :w].clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
            for o in outs]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--limit", type=int, default=25)
    ap.add_argument("--qf", type=int, nargs="+", default=[10, 20, 30, 40, 50, 60, 70, 80, 90])
    ap.add_argument("--weights", default=str(default_weights_path()))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if not native_bf16():
        raise SystemExit("this CPU has no native bf16 (AVX512-BF16 or AMX)")
    torch.set_num_threads(args.threads)
    net, info = load_weights(args.weights)
    net.eval()
    paths = list_clean_images([args.dir])[: args.limit]
    # Which weights, not only where they were: the shipped file's path stays the same
    # from one release to the next.
    ident = file_identity(info)
    made = ", ".join(f"{k.removeprefix('training_')} {v:,}" for k, v in ident.items()
                     if k.startswith("training_"))
    print(f"{len(paths)} photos from {args.dir}, weights {args.weights} (SHA-256 "
          f"{ident['sha256'][:16]}...{', ' + made if made else ''}; measured "
          f"{date.today().isoformat()}); bf16 minus f32, dB: mean (worst photo) per exit")
    print(f"{'QF':>4} {'f32 exit 5 gain':>16} " + " ".join(f"{'exit ' + str(e):>17}"
                                                          for e in range(1, NUM_EXITS + 1)))
    worst = 0.0
    for qf in args.qf:
        diffs, gains = [], []
        for p in paths:
            bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
            ok, enc = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, qf])
            jpeg = cv2.imdecode(enc, cv2.IMREAD_COLOR)[:, :, ::-1]
            clean = bgr[:, :, ::-1]
            f32 = [psnr(o, clean) for o in exits(net, jpeg, torch.float32)]
            b16 = [psnr(o, clean) for o in exits(net, jpeg, torch.bfloat16)]
            diffs.append(np.subtract(b16, f32))
            gains.append(f32[-1] - psnr(jpeg, clean))
        d = np.array(diffs)
        worst = max(worst, float(np.abs(d.mean(axis=0)).max()))
        cells = [f"{d[:, e].mean():+8.4f} ({d[np.argmax(np.abs(d[:, e])), e]:+.3f})"
                 for e in range(NUM_EXITS)]
        print(f"{qf:>4} {np.mean(gains):>+16.3f} " + " ".join(f"{c:>17}" for c in cells),
              flush=True)
    print(f"largest |mean difference| over QFs and exits: {worst:.4f} dB (target <= 0.01)")


if __name__ == "__main__":
    main()
