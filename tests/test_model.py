"""The RBQE network: shapes, the size contract, progressive == one pass, the CPU fast path.

Random tiny networks (width 8) throughout: these tests are about structure and numerics,
not about what trained weights do.
"""

from __future__ import annotations

import itertools
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rbqe.engine import Enhancer
from rbqe.io import STALE_TEMP_AGE_S, is_temp_file, remove_stale_temps
from rbqe.model import (
    MULTIPLE,
    NUM_EXITS,
    EcaStats,
    ModelConfig,
    RBQENet,
    channel_mean,
    count_parameters,
    gmacs_per_exit,
)
from rbqe.tiling import pad_to_multiple
from rbqe.weights import load_weights, save_weights
from tests.helpers import hooked_gmacs

# One torch thread (a busy box), and the fast path even on the small test images.
pytestmark = pytest.mark.usefixtures("one_thread", "fast_everywhere")


def reference_outputs(net: RBQENet, x: torch.Tensor) -> list[torch.Tensor]:
    """UNet++ written out from its definition, every node recomputed from scratch: no
    cache and no progressive bookkeeping, to check the ones in rbqe.model against."""

    def node(i: int, j: int) -> torch.Tensor:
        if j == 0:
            h = net.inc(x)
            for d in range(i):
                h = net.down[d](h)
            return h
        return net.up[f"{i}_{j}"](node(i + 1, j - 1), [node(i, c) for c in range(j)])

    return [x + net.heads[k - 1](node(0, k)) for k in range(1, NUM_EXITS + 1)]


@pytest.fixture
def net(make_net) -> RBQENet:
    return make_net(1, seed=3)


# -- sizes ----------------------------------------------------------------------------------
@pytest.mark.parametrize("hw", [(33, 17), (1, 1), (7, 9), (32, 64)])
def test_odd_sizes_through_the_engine(net, hw):
    h, w = hw
    img = np.random.default_rng(0).random((h, w), dtype=np.float32)
    res = Enhancer(net=net, device="cpu", tile=0).enhance(img, 5)
    assert res.size == (w, h)
    for e in res.exits:
        assert e.image.shape == (h, w, 1)
        assert e.image.dtype == np.float32
        assert np.isfinite(e.image).all() and e.image.min() >= 0 and e.image.max() <= 1


def test_padding_reflects_or_replicates():
    x = torch.arange(33 * 17, dtype=torch.float32).reshape(1, 1, 33, 17)
    p = pad_to_multiple(x)
    assert p.shape == (1, 1, 64, 32)
    assert torch.equal(p[..., :33, :17], x)
    assert torch.equal(p[..., 33, :17], x[..., 31, :])  # reflection, no repeated edge row
    one = pad_to_multiple(torch.full((1, 1, 1, 1), 0.25))  # too small to reflect
    assert one.shape == (1, 1, 32, 32) and torch.all(one == 0.25)
    tiny = pad_to_multiple(torch.rand(1, 1, 7, 9))
    assert torch.equal(tiny[..., 20, :9], tiny[..., 6, :9])  # replicated last row


def test_constant_image_stays_finite_and_close(net):
    # A 1x1 image is padded to a constant 32x32: the output must stay a sane number.
    res = Enhancer(net=net, device="cpu", tile=0).enhance(np.full((1, 1), 0.5, np.float32), 5)
    assert abs(float(res.image[0, 0, 0]) - 0.5) < 0.5


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("hw", [(33, 32), (32, 48), (100, 96)])
def test_model_refuses_sizes_not_multiple_of_32(net, hw, fast):
    with torch.no_grad(), pytest.raises(ValueError, match=f"not a multiple of {MULTIPLE}"):
        net.start(torch.zeros(1, 1, *hw), fast=fast)


# -- progressive computation -----------------------------------------------------------------
def test_progressive_equals_one_pass_and_reference(net):
    torch.manual_seed(0)
    x = torch.rand(2, 1, 64, 96)
    with torch.no_grad():
        one_pass = net(x)
        ref = reference_outputs(net, x)
        run = net.start(x)
        progressive = []
        for k in range(1, NUM_EXITS + 1):
            progressive.append(run.next_exit())
            assert run.exits_done == k
    assert len(one_pass) == len(progressive) == NUM_EXITS
    for a, b, c in zip(one_pass, progressive, ref, strict=True):
        assert a.shape == (2, 1, 64, 96)
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(a, c, rtol=0, atol=1e-6)
    with pytest.raises(RuntimeError, match="all exits"):
        run.next_exit()


def test_progressive_caches_and_frees_nodes(net):
    with torch.no_grad():
        run = net.start(torch.rand(1, 1, 64, 64))
        run.next_exit()
        assert set(run.nodes) == {(0, 0), (1, 0), (0, 1)}
        run.next_exit()
        assert set(run.nodes) == {(0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2)}
        for _ in range(3):
            run.next_exit()
        assert run.nodes == {}


@pytest.mark.parametrize("fast", [False, True])
def test_advance_skips_only_the_output(net, fast):
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        full = net.start(x, fast=fast)
        outs = [full.next_exit() for _ in range(NUM_EXITS)]
        run = net.start(x, fast=fast)
        run.advance()
        run.advance()
        third = run.next_exit()
        assert run.exits_done == 3
        run.advance()
        fifth = run.next_exit()
    torch.testing.assert_close(third, outs[2], rtol=0, atol=0)
    torch.testing.assert_close(fifth, outs[4], rtol=0, atol=0)


def test_batch_images_are_independent(net):
    # ECA pools per image: a batch must equal its images run one at a time.
    x = torch.rand(3, 1, 32, 64)
    with torch.no_grad():
        batch = net(x)
        single = [net(x[i : i + 1]) for i in range(3)]
    for k in range(NUM_EXITS):
        torch.testing.assert_close(batch[k], torch.cat([s[k] for s in single]), rtol=0,
                                   atol=1e-6)


def test_training_forward_backward_still_works(net):
    net.train()
    x = torch.rand(2, 1, 32, 32).to(memory_format=torch.channels_last)
    outs = net(x)
    loss = sum(o.square().mean() for o in outs)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_channel_mean_and_its_gradient_match_mean(dtype):
    # The ECA pooling's own mean: float32 out whatever the map's dtype, and the gradient
    # of plain mean (given back as a broadcast view rather than a full tensor).
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 8, 32, 48, generator=g).to(dtype).to(memory_format=torch.channels_last)
    x.requires_grad_(True)
    ref_x = x.detach().double().requires_grad_(True)
    weights = torch.rand(2, 8, generator=g, dtype=torch.float64)
    got = channel_mean(x)
    ref = ref_x.mean(dim=(2, 3))
    assert got.dtype == torch.float32
    assert torch.allclose(got.double(), ref, rtol=1e-3 if dtype == torch.bfloat16 else 1e-6)
    (got.double() * weights).sum().backward()
    (ref * weights).sum().backward()
    assert x.grad is not None and x.grad.dtype == dtype and x.grad.shape == x.shape
    assert torch.allclose(x.grad.double(), ref_x.grad, rtol=1e-2, atol=0)
    with torch.no_grad():  # inference in float32: plain mean, as a traced export keeps it
        assert torch.equal(channel_mean(x.detach().float()), x.detach().float().mean(dim=(2, 3)))


def test_saved_weights_load_bit_exactly(net, tmp_path):
    path = save_weights(net, tmp_path / "w.safetensors")
    loaded, _ = load_weights(path)
    assert list(loaded.state_dict()) == list(net.state_dict())
    for key, value in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        for a, b in zip(net(x), loaded(x), strict=True):
            assert torch.equal(a, b)


_KILLED_SAVE = """
import os, signal, sys
import rbqe.weights
from tests.helpers import tiny_net
def replace(src, dst):  # the data is written to the temp file, not yet renamed into place
    os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
rbqe.weights.save_weights(tiny_net(1), sys.argv[1])
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_killed_weights_save_leaves_a_temp_that_is_cleaned_like_an_outputs(net, tmp_path):
    # save_weights used a '.'-prefixed mkstemp name that remove_stale_temps never matched,
    # so a kill mid-save left it for ever. It now writes through rbqe.io.atomic.
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    target = tmp_path / "w.safetensors"
    proc = subprocess.run([sys.executable, "-c", _KILLED_SAVE, str(target)], env=env, cwd=root,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    (temp,) = tmp_path.iterdir()
    assert not target.exists() and is_temp_file(temp)  # the batch lister leaves it out
    assert remove_stale_temps(tmp_path) == []  # fresh: it might be a live writer's
    age = time.time() - STALE_TEMP_AGE_S - 5
    os.utime(temp, (age, age))
    # The next save into the folder removes it (its writer is dead: no lock), as the next
    # batch does in an output folder.
    saved = save_weights(net, tmp_path / "other.safetensors")
    assert list(tmp_path.iterdir()) == [saved]
    assert stat.S_IMODE(saved.stat().st_mode) == 0o644  # weights are meant to be shared
    assert load_weights(saved)[0].config == net.config


# -- size and cost ---------------------------------------------------------------------------
def test_paper_config_has_about_030m_parameters():
    n = count_parameters(RBQENet())
    assert RBQENet().config == ModelConfig(1, 1, 32)
    assert 0.25e6 <= n <= 0.35e6, n


def test_gmacs_per_exit_increase_and_scale(net):
    g = gmacs_per_exit(net, 512, 512)
    assert len(g) == NUM_EXITS
    assert all(b > a > 0 for a, b in itertools.pairwise(g))
    g2 = gmacs_per_exit(net, 1024, 512)
    assert g2 == pytest.approx([2 * v for v in g])
    paper = gmacs_per_exit(RBQENet(), 512, 512)
    assert all(b > a for a, b in itertools.pairwise(paper))
    assert 5 < paper[0] < paper[-1] < 40  # tens of GMACs at 512x512 for width 32


def test_gmacs_per_exit_counts_every_conv_the_walk_runs(monkeypatch):
    # The decoder's gated separable conv is a batched matmul that forward hooks cannot
    # see (an earlier hook-based count missed a third of the net). With the plain conv
    # put back, hooks see every conv, and the shape-based count must agree with them.
    import rbqe.model as model

    def plain(conv, x, gate):
        return conv(x * gate[:, :, None, None])

    nets = [RBQENet(), RBQENet(ModelConfig(3, 3, 32))]
    counted = [gmacs_per_exit(net, 64, 64) for net in nets]  # the shipped code path
    monkeypatch.setattr(model, "_gated_separable", plain)
    for net, count in zip(nets, counted, strict=True):
        assert count == pytest.approx(hooked_gmacs(net, 64), rel=1e-9)


# -- ECA statistics ------------------------------------------------------------------------
def test_eca_stats_record_then_fixed(net):
    a, b = torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 64) * 0.5
    with torch.no_grad():
        stats = EcaStats()
        assert stats.mode == "record"
        for x in (a, b):
            run = net.start(x, stats)
            for _ in range(2):
                run.next_exit()
        assert set(stats.sums) == {"0_1", "1_1", "0_2"}
        assert all(stats.counts[k] == 2 for k in stats.sums)
        # The recorded means are averages over both tiles: check one against its parts.
        own_a, own_b = EcaStats(), EcaStats()
        net.start(a, own_a).next_exit()
        net.start(b, own_b).next_exit()
        torch.testing.assert_close(stats.sums["0_1"] / 2,
                                   (own_a.sums["0_1"] + own_b.sums["0_1"]) / 2)

        stats.mode = "fixed"
        before = {k: v.clone() for k, v in stats.sums.items()}
        fixed_a = net.start(a, stats)
        out_fixed = [fixed_a.next_exit() for _ in range(3)]  # exit 3: keys never recorded
        assert all(torch.equal(before[k], stats.sums[k]) for k in before)
        assert set(stats.sums) == set(before)  # fixed mode records nothing
        plain = net.start(a)
        out_plain = [plain.next_exit() for _ in range(3)]
        # Exits 1-2 use the shared (a+b) means: different from a's own; exit 3's new nodes
        # fall back to a's own pooling, but they also read exit 1-2 nodes, so differ too.
        assert not torch.allclose(out_fixed[0], out_plain[0], atol=1e-7)

        # One recorded tile, then fixed on the same tile: identical to no stats at all.
        solo = EcaStats()
        net.start(a, solo).next_exit()
        solo.mode = "fixed"
        torch.testing.assert_close(net.start(a, solo).next_exit(), out_plain[0], rtol=0,
                                   atol=1e-6)
        # Fixed stats reach the fast path in the same way.
        torch.testing.assert_close(net.start(a, stats, fast=True).next_exit(), out_fixed[0],
                                   rtol=0, atol=1e-5)


def test_eca_exchange_expands_to_batch():
    stats = EcaStats()
    stats.exchange("k", torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert stats.counts["k"] == 2
    stats.mode = "fixed"
    out = stats.exchange("k", torch.zeros(3, 2))
    torch.testing.assert_close(out, torch.tensor([[2.0, 3.0]] * 3))
    new = torch.ones(1, 2)
    assert stats.exchange("other", new) is new


# -- numerics ----------------------------------------------------------------------------------
@pytest.mark.parametrize("fill", ["zeros", "ones", "noise", "checker"])
def test_no_nans(net, fill):
    x = {
        "zeros": torch.zeros(1, 1, 64, 64),
        "ones": torch.ones(1, 1, 64, 64),
        "noise": torch.rand(1, 1, 64, 64),
        "checker": (torch.arange(64)[:, None] + torch.arange(64)[None, :]).remainder(2)
        .float()[None, None],
    }[fill]
    with torch.no_grad():
        for fast in (False, True):
            run = net.start(x, fast=fast)
            for _ in range(NUM_EXITS):
                assert torch.isfinite(run.next_exit()).all()
