"""Widening a trained network or training state (rbqe.train.widen)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from rbqe.model import ModelConfig, RBQENet
from rbqe.train.loop import TrainConfig, Trainer, checkpoint_ema
from rbqe.train.widen import widen_net, widen_state
from tests.test_train import _photo


def _centre_only_eca(net: RBQENet) -> RBQENet:
    """ECA gates that read only their own channel's mean: then nothing but new channels
    changes when the net widens, so the output must be the same to rounding."""
    with torch.no_grad():
        for block in net.up.values():
            block.eca.conv.weight.copy_(torch.tensor([[[0.0, 1.3, 0.0]]]))
    return net


@pytest.mark.parametrize("channels", [1, 3])
def test_a_widened_net_computes_what_the_narrow_one_did(channels: int) -> None:
    torch.manual_seed(0)
    narrow = _centre_only_eca(RBQENet(ModelConfig(channels, channels, 8))).eval()
    wide = widen_net(narrow, 12, seed=1).eval()
    assert wide.config.width == 12
    x = torch.rand(2, channels, 64, 96)
    with torch.no_grad():
        for a, b in zip(narrow(x), wide(x), strict=True):
            assert torch.allclose(a, b, atol=1e-5)


def test_new_channels_compute_features_and_feed_nothing_yet() -> None:
    torch.manual_seed(0)
    narrow = RBQENet(ModelConfig(3, 3, 8))
    wide = widen_net(narrow, 12)
    sd = wide.state_dict()
    old_out, new_out = slice(0, 8), slice(8, 12)
    w = sd["down.1.0.weight"]  # (out, in, 3, 3)
    assert w[new_out].abs().sum() > 0  # new channels read the old ones ...
    assert w[old_out, new_out].abs().sum() == 0  # ... and no old channel reads them
    assert torch.equal(w[old_out, old_out], narrow.state_dict()["down.1.0.weight"])
    # a concatenation of three width-8 nodes became three width-12 blocks
    pw = sd["up.0_2.conv1.1.weight"][:, :, 0, 0]  # (12, 36)
    for block in range(3):
        assert pw[old_out, block * 12 + 8: block * 12 + 12].abs().sum() == 0
    t = sd["up.0_1.up.weight"]  # transposed conv: (in, out, 2, 2)
    assert t[new_out, old_out].abs().sum() == 0 and t[old_out, new_out].abs().sum() > 0
    # one step of gradient reaches the zero weights that read new channels
    x = torch.rand(1, 3, 64, 64)
    sum(o.square().mean() for o in wide(x)).backward()
    grad = dict(wide.named_parameters())["down.1.0.weight"].grad
    assert grad is not None and grad[old_out, new_out].abs().sum() > 0


def test_a_narrower_width_is_refused() -> None:
    state = {"config": {"width": 32, "channels": 3}}
    with pytest.raises(ValueError, match="not wider"):
        widen_state(state, 32)


def test_a_widened_training_state_resumes_and_goes_on(tmp_path: Path) -> None:
    images = [_photo(s) for s in range(3)]
    cfg = TrainConfig(train_dirs=[], out_dir=str(tmp_path / "narrow"), channels=1, width=8,
                      patch=64, batch=2, steps=3, threads=1, checkpoint_every_s=1e9, seed=3,
                      ema_slow_decay=0.99)
    Trainer(cfg, images).run()
    state = torch.load(tmp_path / "narrow" / "checkpoint.pt", weights_only=True)
    narrow_ema = checkpoint_ema(state)
    wide_state = widen_state(state, 12)
    assert wide_state["config"]["width"] == 12 and wide_state["step"] == 3
    # the EMAs widen with the model: same new channels, old values kept
    wide_ema = checkpoint_ema(wide_state)
    assert torch.equal(wide_ema.state_dict()["inc.0.weight"][:8],
                       narrow_ema.state_dict()["inc.0.weight"])
    assert torch.equal(wide_state["ema"]["module.inc.0.weight"][8:],
                       wide_state["model"]["inc.0.weight"][8:])
    assert torch.equal(wide_state["ema_slow"]["module.inc.0.weight"][8:],
                       wide_state["model"]["inc.0.weight"][8:])
    # Adam's moments: old entries kept, new means zero; the mean square is the old entries'
    # average where an old channel reads a new one, zero for the new channels' own weights
    names = [n for n, _ in RBQENet(ModelConfig(1, 1, 12)).named_parameters()]
    i = names.index("inc.2.weight")
    old_sq = state["opt"]["state"][i]["exp_avg_sq"]
    new = wide_state["opt"]["state"][i]
    assert new["exp_avg"].shape == (12, 12, 3, 3)
    assert torch.equal(new["exp_avg_sq"][:8, :8], old_sq)
    assert new["exp_avg"][8:].abs().sum() == 0
    assert torch.allclose(new["exp_avg_sq"][:8, 8:], old_sq.mean().expand(8, 4, 3, 3))
    assert new["exp_avg_sq"][8:].abs().sum() == 0
    bias = wide_state["opt"]["state"][names.index("inc.2.bias")]["exp_avg_sq"]
    assert bias[8:].abs().sum() == 0 and bias[:8].abs().sum() > 0

    (tmp_path / "wide").mkdir()
    torch.save(wide_state, tmp_path / "wide" / "checkpoint.pt")
    # (the CLI takes the width from the state; a Trainer is told it)
    resumed = Trainer(replace(cfg, out_dir=str(tmp_path / "wide"), width=12, steps=5), images)
    assert resumed.step == 3
    resumed.run()
    assert resumed.step == 5
    trained = resumed.net.state_dict()["inc.2.weight"]
    assert trained[:8, 8:].abs().sum() > 0  # old channels have started to read new ones
    assert np.isfinite(float(trained.abs().sum()))


def test_the_script_widens_a_state_once_and_reports_the_move(tmp_path: Path) -> None:
    images = [_photo(s) for s in range(2)]
    cfg = TrainConfig(train_dirs=[], out_dir=str(tmp_path / "narrow"), channels=3, width=8,
                      patch=64, batch=2, steps=2, threads=1, checkpoint_every_s=1e9)
    Trainer(cfg, images).run()
    val = tmp_path / "val"
    val.mkdir()
    for i, img in enumerate(images):
        cv2.imwrite(str(val / f"{i}.png"), img[..., ::-1])
    script = Path(__file__).resolve().parents[1] / "scripts" / "widen_state.py"
    args = [sys.executable, str(script), str(tmp_path / "narrow" / "checkpoint.pt"),
            str(tmp_path / "wide"), "--width", "12", "--val", str(val)]
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    assert done.stdout.count("widened vs old") == 2 and "width 8 -> 12" in done.stdout
    state = torch.load(tmp_path / "wide" / "checkpoint.pt", weights_only=True)
    assert state["config"]["width"] == 12
    before = (tmp_path / "wide" / "checkpoint.pt").read_bytes()
    again = subprocess.run(args, capture_output=True, text=True)
    assert again.returncode != 0 and "exists" in again.stderr
    assert (tmp_path / "wide" / "checkpoint.pt").read_bytes() == before
