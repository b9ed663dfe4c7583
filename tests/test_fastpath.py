"""The CPU fast path (rbqe.fastpath): float32 against the module path, bfloat16 against
float32 where the CPU has native bf16, and when it applies."""

from __future__ import annotations

import pytest
import torch

from rbqe import fastpath
from rbqe.fastpath import FastProgressiveRun, native_bf16
from rbqe.model import NUM_EXITS, ProgressiveRun, channel_sums
from tests.helpers import psnr

pytestmark = pytest.mark.usefixtures("one_thread", "fast_everywhere")
needs_bf16 = pytest.mark.skipif(not native_bf16(),
                                reason="this CPU has no native bf16 (AVX512-BF16 or AMX)")


def photo_like(channels: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Smooth content with some edges: closer to a photo than uniform noise."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, channels, h // 8, w // 8, generator=g)
    x = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear")
    return (x + 0.05 * torch.rand(1, channels, h, w, generator=g)).clamp(0, 1)


@pytest.fixture
def net(make_net):
    return make_net(1, seed=0)


def all_exits(net, x, **kw) -> list[torch.Tensor]:
    run = FastProgressiveRun(net, x, None, **kw)
    return [run.next_exit() for _ in range(NUM_EXITS)]


@pytest.mark.parametrize("channels", [1, 3])
def test_fast_path_matches_module_path(make_net, channels, monkeypatch):
    net = make_net(channels, seed=5)
    x = torch.rand(1, channels, 96, 64)
    with torch.no_grad():
        ref = net(x)
        run = net.start(x, fast=True)
        assert isinstance(run, FastProgressiveRun)
        fast = [run.next_exit() for _ in range(NUM_EXITS)]
        # Stripes (normally 32k pixels or more) forced small: 16-row stripes with a short
        # last one.
        monkeypatch.setattr(fastpath, "stripe_pixels", lambda l2, image_pixels, bytes_per_pixel: 18 * 64)
        striped_run = net.start(x, fast=True)
        striped = [striped_run.next_exit() for _ in range(NUM_EXITS)]
    for a, b, c in zip(ref, fast, striped, strict=True):
        assert b.shape == a.shape
        torch.testing.assert_close(b, a, rtol=0, atol=1e-5)
        torch.testing.assert_close(c, a, rtol=0, atol=1e-5)


def test_fast_path_only_where_it_applies(net, monkeypatch):
    x = torch.rand(1, 1, 32, 32)
    assert type(net.start(x, fast=True)) is ProgressiveRun  # autograd on: training path
    with torch.no_grad():
        assert type(net.start(x)) is ProgressiveRun
        assert type(net.start(torch.rand(2, 1, 32, 32), fast=True)) is ProgressiveRun
        assert type(net.start(x.double(), fast=True)) is ProgressiveRun
        assert type(net.start(x, fast=True)) is FastProgressiveRun
        monkeypatch.setattr(fastpath, "FAST_MIN_PIXELS", 128 * 128)  # the shipped setting
        assert type(net.start(x, fast=True)) is ProgressiveRun  # too small to pay
        assert type(net.start(torch.rand(1, 1, 128, 128), fast=True)) is FastProgressiveRun


def test_any_input_layout_is_computed_channels_last(make_net):
    # x[None] of a permuted HWC array is channels_last by is_contiguous() but keeps a batch
    # stride of 3; oneDNN then answered in NCHW, 1.9x slower. The run normalises it.
    net = make_net(3, seed=1)
    hwc = torch.rand(64, 96, 3)
    x = hwc.permute(2, 0, 1)[None]
    with torch.no_grad():
        run = FastProgressiveRun(net, x, None)
        out = run.next_exit()
        for node in run.nodes.values():
            assert node.stride(1) == 1  # channels_last
        torch.testing.assert_close(out, net.start(x.contiguous()).next_exit(),
                                   rtol=0, atol=1e-5)


def test_fast_path_refuses_other_dtypes(net):
    with pytest.raises(ValueError, match="float32 or bfloat16"):
        FastProgressiveRun(net, torch.rand(1, 1, 64, 64), None, dtype=torch.float16)


@needs_bf16
@pytest.mark.parametrize("striped", [False, True])
def test_bf16_is_close_to_float32(make_net, striped, monkeypatch):
    net = make_net(3, seed=2)
    x = photo_like(3, 96, 128, seed=4)
    if striped:
        monkeypatch.setattr(fastpath, "stripe_pixels", lambda l2, image_pixels, bytes_per_pixel: 16 * 128)
    with torch.no_grad():
        ref = all_exits(net, x)
        got = all_exits(net, x, dtype=torch.bfloat16)
    for a, b in zip(ref, got, strict=True):
        assert b.dtype == torch.float32 and b.shape == a.shape
        assert psnr(a.clamp(0, 1), b.clamp(0, 1)) >= 50


@needs_bf16
def test_bf16_keeps_the_input_exact_and_the_means_float32(make_net):
    # With zero output heads every exit is the input itself: the residual is added in
    # float32, so a bf16 run must give the input back bit for bit (a bf16 add would round
    # it to 1/256 near white).
    net = make_net(3, seed=3)
    with torch.no_grad():
        for head in net.heads:
            head[1].weight.zero_()
            head[1].bias.zero_()
        x = photo_like(3, 64, 64, seed=5)
        run = FastProgressiveRun(net, x, None, dtype=torch.bfloat16)
        outs = [run.next_exit() for _ in range(2)]
        assert all(m.dtype == torch.float32 for m in run.means.values())
        assert any(n.dtype == torch.bfloat16 for n in run.nodes.values())
    for out in outs:
        assert torch.equal(out, x)


def test_channel_sums_of_a_bf16_map_are_float32_and_close_to_exact():
    # A ReLU-like map of 64 rows of 512: the sums of its bf16 values, taken row by row in
    # bf16, must stay within 1e-3 (relative) of the exact sums of the same values.
    g = torch.Generator().manual_seed(7)
    t = torch.randn(1, 32, 64, 512, generator=g).relu().add_(0.5)
    t = t.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    got = channel_sums(t)
    exact = t.double().sum(dim=(2, 3))
    assert got.dtype == torch.float32 and got.shape == (1, 32)
    assert ((got.double() - exact).abs() / exact).max() < 1e-3
    f32 = t.float().contiguous(memory_format=torch.channels_last)
    assert torch.allclose(channel_sums(f32).double(), exact, rtol=1e-6)


def _cache_dir(root, entries):
    """A sysfs-like cpu0/cache folder: (level, type, size) per index."""
    for i, (level, kind, size) in enumerate(entries):
        d = root / f"index{i}"
        d.mkdir(parents=True)
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")
    return root


def test_stripes_grow_with_the_level_2_cache(tmp_path):
    xeon = _cache_dir(tmp_path / "xeon", [(1, "Data", "48K"), (1, "Instruction", "64K"),
                                          (2, "Unified", "2048K"), (3, "Unified", "491520K")])
    epyc = _cache_dir(tmp_path / "epyc", [(1, "Data", "32K"), (2, "Unified", "512K")])
    assert fastpath.l2_cache_bytes(xeon) == 2 << 20
    assert fastpath.l2_cache_bytes(epyc) == 512 << 10
    assert fastpath.l2_cache_bytes(tmp_path / "none") is None
    # The 512 KB VMs keep the stripes they were tuned with; larger caches get larger ones,
    # and from 2 MB on an input whose full-resolution map is at most 16 MB has no stripes.
    tile, photo = 1024 * 1024, 512 * 512  # input pixels
    bf16, f32 = 32 * 2, 32 * 4  # bytes per pixel of a width-32 map
    assert fastpath.stripe_pixels(512 << 10, photo, bf16) == 32 * 1024
    assert fastpath.stripe_pixels(None, photo, bf16) == 32 * 1024
    assert fastpath.stripe_pixels(1 << 20, photo, bf16) == 64 * 1024
    assert fastpath.stripe_pixels(2 << 20, tile, bf16) == 128 * 1024
    assert fastpath.stripe_pixels(64 << 20, tile, f32) == 256 * 1024
    assert fastpath.stripe_pixels(2 << 20, photo, bf16) == photo  # 16 MB: whole
    assert fastpath.stripe_pixels(2 << 20, photo, f32) == 128 * 1024  # 32 MB: stripes
