"""The assessor before and after a change, timed side by side on the same inputs.

    python docs/bench/assessor/ab.py [--base COMMIT] [--photos DIR] [--count 8] [--repeat 15]

Loads ``rbqe/iqa.py`` as it was at ``--base`` (``git show``) beside the working tree's,
and times ``iqa.assess`` of both, interleaved (best of ``--repeat``, three rounds), on the
luma of ``--count`` photos at 512x512 (cut or mirrored, JPEG q30) and on a 12 MP image of
smooth noise. Prints each input's smooth-block share, both times, their ratio and the
largest difference between the two Assessments. Pause other jobs while it runs.
"""
from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_policy import jpeg_photos  # noqa: E402

from rbqe import iqa  # noqa: E402


def load_base(commit: str):
    """``rbqe/iqa.py`` at ``commit``, imported as a module of its own."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:rbqe/iqa.py"],
                            check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "iqa_base.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("iqa_base", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["iqa_base"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def best_ms(fn, y: torch.Tensor, repeat: int) -> float:
    fn(y)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(y)
        times.append(time.perf_counter() - t0)
    return min(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="HEAD")
    ap.add_argument("--photos", type=Path, default=ROOT / ".." / "shared" / "datasets" / "val"
                    / "bsds500_val")
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    base = load_base(args.base)
    inputs = [(f"photo {i + 1} 512x512", iqa.luma(torch.from_numpy(p)[None]))
              for i, p in enumerate(jpeg_photos(args.photos, args.count, 512, 30, 3))]
    gen = torch.Generator().manual_seed(0)
    noise = torch.rand(1, 1, 3000, 4000, generator=gen)
    inputs.append(("smooth noise 4000x3000", torch.nn.functional.avg_pool2d(noise, 5, 1, 2)))
    print(f"iqa.assess: {args.base} against the working tree, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; best of {args.repeat}, 3 interleaved rounds")
    ratios = []
    for name, y in inputs:
        rounds = [(best_ms(base.assess, y, args.repeat), best_ms(iqa.assess, y, args.repeat))
                  for _ in range(3)]
        old, new = min(r[0] for r in rounds), min(r[1] for r in rounds)
        a, b = base.assess(y), iqa.assess(y)
        fields = ("score", "blockiness", "blur", "smooth_share")
        diff = max(abs(getattr(a, f) - getattr(b, f)) for f in fields)
        ratios.append(new / old)
        print(f"  {name:<24} smooth {b.smooth_share:4.0%}  {old:8.2f} ms -> {new:8.2f} ms "
              f"({new / old:.2f}x)  max |diff| {diff:.1e}")
    print(f"  ratio new/old: median {sorted(ratios)[len(ratios) // 2]:.2f}, "
          f"range {min(ratios):.2f}-{max(ratios):.2f}")


if __name__ == "__main__":
    main()
