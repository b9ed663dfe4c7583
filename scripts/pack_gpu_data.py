"""Pack training photos (and the quick-val photos) for a GPU session, sized to what travels.

    python scripts/pack_gpu_data.py [--src ../shared/datasets] [--out runs/gpu_data]
                                    [--quality 95] [--val-images 8] [--max-mib M]
                                    [--sources bsds500 wikipedia [debian]]

Only the project's working tree travels to a lent GPU machine, 64 MiB in all with the
repository's tracked files (about 33 MiB in 2026-12, the training checkpoint included), so
the photos go as JPEG with 4:4:4 chroma. Photos that are not already JPEGs of BSDS500
(the Wikipedia PNGs; Debian's q97 ones with ``--sources ... debian``) are re-saved at
``--quality``; BSDS500 files (already q95) are copied byte for byte, as many as fit,
spread evenly over the sorted list. ``--max-mib`` defaults to 64 MiB less the tracked
files less 1 MiB.

Why q95 and no Debian by default: on 2026-12-04 an H200 run on a q90 pack (Wikipedia and
Debian re-saved at q90, 187 BSDS500) gained 0.012 dB at QF 10 on the full val but lost
0.058 dB at QF 90, as if it had learned to keep q90's own artefacts: a target that is
itself a q90 JPEG teaches that light JPEGs are clean. Wikipedia at q95 costs 8 MiB and
leaves room for ~330 BSDS500 photos.

The full val evaluation runs here, on the weights the session brings back. ``runs/`` is
ignored by git: the photos are carried (``run``'s ``carry``), never committed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

from rbqe.io import is_image_file
from rbqe.train.data import quick_val_pick

MIB = 2**20


def images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p))


def resave(path: Path, out: Path, quality: int) -> int:
    out.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(path) as img:
        img.convert("RGB").save(out.with_suffix(".jpg"), quality=quality, subsampling=0)
    return out.with_suffix(".jpg").stat().st_size


def copy(path: Path, out: Path) -> int:
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, out)
    return out.stat().st_size


def tracked_bytes() -> int:
    names = subprocess.run(["git", "ls-files", "-z"], capture_output=True, check=True).stdout
    return sum(Path(n).stat().st_size for n in names.decode().split("\0") if n and Path(n).exists())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--src", type=Path, default=Path("../shared/datasets"))
    p.add_argument("--out", type=Path, default=Path("runs/gpu_data"))
    p.add_argument("--quality", type=int, default=95)
    p.add_argument("--val-images", type=int, default=8)
    p.add_argument("--max-mib", type=float, default=0.0)
    p.add_argument("--sources", nargs="+", default=["bsds500", "wikipedia"], metavar="NAME",
                   help="train/ subfolders to pack (default: bsds500 wikipedia)")
    args = p.parse_args()
    limit = int(args.max_mib * MIB) if args.max_mib else 64 * MIB - tracked_bytes() - MIB
    shutil.rmtree(args.out, ignore_errors=True)
    train, val = args.src / "train", args.src / "val" / "bsds500_val"
    # The photos the committed run's quick validation uses, so that its curve goes on.
    vals = images(val)
    size = sum(copy(vals[i], args.out / "val" / vals[i].name)
               for i in quick_val_pick(len(vals), args.val_images))
    chosen = [q for q in images(train) if q.relative_to(train).parts[0] in args.sources]
    bsds = [q for q in chosen if q.relative_to(train).parts[0] == "bsds500"]
    others = [q for q in chosen if q not in bsds]
    size += sum(resave(q, args.out / "train" / q.relative_to(train), args.quality)
                for q in others)
    # BSDS500 last, evenly spread, until the limit: the other sources are the scarcer ones.
    mean = sum(q.stat().st_size for q in bsds) / len(bsds) if bsds else 1.0
    count = min(len(bsds), max(0, int((limit - size) / mean)))
    kept = 0
    for i in np.linspace(0, len(bsds) - 1, count).round().astype(int) if count else []:
        nbytes = bsds[i].stat().st_size
        if size + nbytes > limit:
            break
        size += copy(bsds[i], args.out / "train" / bsds[i].relative_to(train))
        kept += 1
    print(f"{args.out}: {size / MIB:.1f} MiB (limit {limit / MIB:.1f}); BSDS500 "
          f"{kept}/{len(bsds)}, {len(others)} others re-saved at q{args.quality} 4:4:4")


if __name__ == "__main__":
    main()
