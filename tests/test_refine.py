"""Refine blocks on exit 5 (rbqe.model.RefineBlock, rbqe.train.refine): a state gains them
without its outputs moving, trains on, and every path that runs a network runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from rbqe.backends import openvino_installed
from rbqe.backends.choose import machine_key
from rbqe.backends.stages import Stage, stage_io
from rbqe.cli import main
from rbqe.engine import Enhancer
from rbqe.errors import WeightsError
from rbqe.fastpath import FastProgressiveRun
from rbqe.model import NUM_EXITS, ModelConfig, RBQENet, _macs_per_px, gmacs_per_exit
from rbqe.train.loop import TrainConfig, Trainer, checkpoint_ema
from rbqe.train.refine import add_refine
from rbqe.weights import load_weights, read_info, save_weights
from tests.test_train import _photo


def refined_net(channels: int = 1, blocks: int = 1, seed: int = 0) -> RBQENet:
    """A random width-8 net whose refine blocks are not the identity (as after training)."""
    torch.manual_seed(seed)
    net = RBQENet(ModelConfig(channels, channels, 8, blocks)).eval()
    with torch.no_grad():
        for block in net.refine:
            torch.nn.init.normal_(block.conv2.weight, std=0.05)
    return net


def _trained_state(tmp_path: Path) -> dict:
    cfg = TrainConfig(train_dirs=[], out_dir=str(tmp_path / "plain"), channels=1, width=8,
                      patch=64, batch=2, steps=3, threads=1, checkpoint_every_s=1e9, seed=3,
                      ema_slow_decay=0.99)
    Trainer(cfg, [_photo(s) for s in range(3)]).run()
    return torch.load(tmp_path / "plain" / "checkpoint.pt", weights_only=True)


def test_a_new_block_changes_nothing_and_only_exit_5_pays_for_it():
    torch.manual_seed(0)
    plain = RBQENet(ModelConfig(1, 1, 8)).eval()
    refined = RBQENet(ModelConfig(1, 1, 8, 2)).eval()
    missing, unexpected = refined.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("refine.") for k in missing)
    x = torch.rand(1, 1, 64, 96)
    with torch.no_grad():
        for a, b in zip(plain(x), refined(x), strict=True):
            assert torch.equal(a, b)  # second convs start at zero: the identity
    a, b = gmacs_per_exit(plain, 64, 64), gmacs_per_exit(refined, 64, 64)
    assert a[:-1] == b[:-1]
    assert b[-1] - a[-1] == pytest.approx(_macs_per_px(refined.refine, 0) * 64 * 64 / 1e9)
    assert _macs_per_px(refined.refine, 0) == 2 * 2 * 8 * 8 * 9  # two blocks, two 3x3 convs


@pytest.mark.usefixtures("one_thread", "fast_everywhere")
def test_the_fast_path_runs_the_blocks_as_the_module_path_does():
    net = refined_net(3).to(memory_format=torch.channels_last)
    x = torch.rand(1, 3, 96, 128).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref = net(x)
        run = net.start(x, fast=True)
        assert isinstance(run, FastProgressiveRun)
        fast = [run.next_exit() for _ in range(NUM_EXITS)]
    for a, b in zip(ref, fast, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-5)
    with torch.no_grad():  # and the blocks do something: exit 5 differs from the plain net
        plain = RBQENet(ModelConfig(3, 3, 8)).eval()
        plain.load_state_dict(net.state_dict(), strict=False)
        assert (plain(x)[-1] - ref[-1]).abs().max() > 1e-3


def test_stage_5_graph_runs_the_blocks():
    net = refined_net()
    x = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = net(x)
        nodes: dict = {}
        for k in range(1, NUM_EXITS + 1):
            io = stage_io(k)
            out = Stage(net, k, False)(x, *(nodes[n] for n in io.nodes_in))
            nodes.update(zip(io.nodes_out, out[1 : 1 + len(io.nodes_out)], strict=True))
    assert torch.equal(out[0], ref[-1])


@pytest.mark.skipif(not openvino_installed(), reason="openvino not installed")
def test_the_openvino_backend_runs_the_blocks(make_jpeg):
    net = refined_net()
    img = (make_jpeg(96, 128, seed=2).mean(axis=2, keepdims=True) / 255).astype(np.float32)
    ref = Enhancer(net=net, device="cpu", tile=0, backend="torch").enhance(img, "all")
    ov = Enhancer(net=net, device="cpu", tile=0, backend="openvino", precision="f32")
    assert ov.backend.name == "openvino"
    got = ov.enhance(img, "all")
    for a, b in zip(ref.exits, got.exits, strict=True):
        assert np.abs(a.image - b.image).max() <= 1e-4


def test_weights_keep_their_blocks_and_old_files_have_none(tmp_path):
    net = refined_net(blocks=2)
    path = save_weights(net, tmp_path / "r.safetensors")
    loaded, info = load_weights(path)
    assert info.config.refine == 2 and "refine" not in info.extra
    enhancer = Enhancer(net=net, device="cpu", tile=0)
    img = np.random.default_rng(0).random((64, 64), dtype=np.float32)
    again = Enhancer(path, device="cpu", tile=0, backend="torch", precision="f32")
    a, b = enhancer.enhance(img, 5).image, again.enhance(img, 5).image
    np.testing.assert_array_equal(a, b)
    plain = save_weights(RBQENet(ModelConfig(1, 1, 8)), tmp_path / "p.safetensors")
    assert read_info(plain).config.refine == 0  # no "refine" key written, none read


def test_info_shows_the_blocks_and_what_they_cost(tmp_path, capsys):
    docs = {}
    for blocks in (0, 1):
        torch.manual_seed(0)
        path = save_weights(RBQENet(ModelConfig(1, 1, 8, blocks)), tmp_path / f"{blocks}.safetensors")
        assert main(["info", "--weights", str(path)]) == 0
        docs[blocks] = json.loads(capsys.readouterr().out)
    assert [d["architecture"]["refine_blocks"] for d in docs.values()] == [0, 1]
    plain, refined = docs[0]["gmacs_512"], docs[1]["gmacs_512"]
    assert plain[:4] == refined[:4] and refined[4] > plain[4]


def test_a_state_gains_blocks_resumes_and_trains_them(tmp_path):
    state = _trained_state(tmp_path)
    refined = add_refine(state, 1, seed=1)
    assert refined["config"]["refine"] == 1 and refined["step"] == 3
    assert state["config"]["refine"] == 0 and "refine.0.conv1.weight" not in state["model"]
    before, after = checkpoint_ema(state).eval(), checkpoint_ema(refined).eval()
    slow = checkpoint_ema(refined, slow=True)
    assert slow.config.refine == 1
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(before(x)[-1], after(x)[-1])
    (tmp_path / "refined").mkdir()
    torch.save(refined, tmp_path / "refined" / "checkpoint.pt")
    cfg = TrainConfig(train_dirs=[], out_dir=str(tmp_path / "refined"), channels=1, width=8,
                      refine=1, patch=64, batch=2, steps=6, threads=1,
                      checkpoint_every_s=1e9, seed=3, ema_slow_decay=0.99)
    resumed = Trainer(cfg, [_photo(s) for s in range(3)])
    assert resumed.step == 3
    resumed.run()
    assert resumed.step == 6
    assert resumed.net.refine[0].conv2.weight.abs().sum() > 0  # the zero conv is learning
    with pytest.raises(WeightsError, match="width-8 with 1 refine block training state cannot resume as 1-channel width-8$"):
        Trainer(replace(cfg, refine=0), [_photo(0)])
    with pytest.raises(ValueError, match="already has 1"):
        add_refine(refined, 1)


def test_new_blocks_come_from_their_seed_and_leave_the_global_rng_alone(tmp_path):
    state = _trained_state(tmp_path)
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    one = add_refine(state, 1, seed=5)
    assert torch.equal(torch.rand(4), expected)  # the caller's random stream goes on as before
    two = add_refine(state, 1, seed=5)
    other = add_refine(state, 1, seed=6)
    name = "refine.0.conv1.weight"
    assert torch.equal(one["model"][name], two["model"][name])
    assert not torch.equal(one["model"][name], other["model"][name])


def test_the_script_adds_blocks_once(tmp_path):
    _trained_state(tmp_path)
    script = Path(__file__).resolve().parents[1] / "scripts" / "add_refine.py"
    args = [sys.executable, str(script), str(tmp_path / "plain" / "checkpoint.pt"),
            str(tmp_path / "refined"), "--blocks", "2"]
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    assert "2 refine blocks on exit 5" in done.stdout
    assert torch.load(tmp_path / "refined" / "checkpoint.pt",
                      weights_only=True)["config"]["refine"] == 2
    again = subprocess.run(args, capture_output=True, text=True)
    assert again.returncode != 0 and "exists" in again.stderr


def test_a_backend_choice_is_not_reused_across_refine_blocks():
    torch.manual_seed(0)
    plain, refined = RBQENet(ModelConfig(1, 1, 8)), RBQENet(ModelConfig(1, 1, 8, 1))
    assert "refine" not in machine_key(plain, [])  # the keys stored so far still match
    assert machine_key(refined, []) != machine_key(plain, [])
