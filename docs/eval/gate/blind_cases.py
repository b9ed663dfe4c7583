# usage: python docs/eval/gate/blind_cases.py [WEIGHTS]   (default: the shipped model;
# the retired Y model's figures came from its file, now in git history)
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from rbqe.engine import Enhancer
from rbqe.exit_policy import JpegPrior
from rbqe.io import load_image
from rbqe.weights import PACKAGE_WEIGHTS

sys.path.insert(0, '.')  # run from the repository root: the blind cases live in tests/
from tests.test_exit_policy import _blind_cases, _psnr  # noqa: E402

torch.set_num_threads(1)
weights = Path(sys.argv[1]) if len(sys.argv) > 1 else PACKAGE_WEIGHTS
tmp = Path(tempfile.mkdtemp())
for name in ("assessor", "gate"):
    enh = Enhancer(weights, device="cpu", tile=0, policy=name)
    out = {}
    for seed in range(3):
        for case, (path, clean) in _blind_cases(tmp, seed).items():
            src = load_image(path)
            r = enh.enhance(src.pixels, "all", prior=JpegPrior.of(src))
            # loss against exit 5, and the exit chosen
            loss = _psnr(clean, r.exit_result(5).image) - _psnr(clean, r.image)
            out.setdefault(case, []).append((loss, r.chosen))
    for case, v in out.items():
        print(name, case, f"mean loss {np.mean([a for a, _ in v]):.3f} dB",
              "exits", [c for _, c in v])
