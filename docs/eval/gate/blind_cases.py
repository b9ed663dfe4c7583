import numpy as np, torch, sys
from pathlib import Path
sys.path.insert(0,'.')
torch.set_num_threads(1)
from tests.test_exit_policy import _blind_cases, _psnr
from rbqe.engine import Enhancer
from rbqe.exit_policy import JpegPrior
from rbqe.io import load_image
from rbqe.weights import PACKAGE_WEIGHTS
# usage: python docs/eval/gate/blind_cases.py [WEIGHTS]   (default: the shipped model;
# the retired Y model's figures came from its file, now in git history)
weights = Path(sys.argv[1]) if len(sys.argv) > 1 else PACKAGE_WEIGHTS
import tempfile
tmp=Path(tempfile.mkdtemp())
for name in ("assessor","gate"):
    enh=Enhancer(weights,device="cpu",tile=0,policy=name)
    out={}
    for seed in range(3):
        for case,(path,clean) in _blind_cases(tmp,seed).items():
            src=load_image(path); r=enh.enhance(src.pixels,"all",prior=JpegPrior.of(src))
            out.setdefault(case,[]).append((_psnr(clean,r.exit_result(5).image)-_psnr(clean,r.image), r.chosen))
    for case,v in out.items(): print(name, case, "mean loss %.3f dB"%np.mean([a for a,_ in v]), "exits", [c for _,c in v])
