"""The Enhancer: exit modes, continuing, cancelling, progress, colour and tiling.

Random tiny networks (width 8): the exit logic, the colour handling and the tile
assembly do not depend on what the weights learned. For tiling this means the seam and
ECA figures are a lower bound on the effects: random ECA gates vary less between tiles
than trained ones. The tests still pin the mechanism (shared statistics, blend weights).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from rbqe import iqa
from rbqe.bands import row_bands
from rbqe.color import luma_of, split_ycbcr, ycbcr_to_rgb
from rbqe.engine import Enhancer
from rbqe.errors import Cancelled, RBQEError
from rbqe.fastpath import FastProgressiveRun
from rbqe.model import NUM_EXITS, ProgressiveRun
from rbqe.tiling import (
    MIN_TILE,
    TILE_OVERLAP,
    axis_segments,
    blend_weight,
    pad_to_multiple,
    padded_box,
    padded_size,
    tiles,
)
from tests.helpers import psnr, tile_edge_mask

# One torch thread (a busy box), and the fast path even on the small test images.
pytestmark = pytest.mark.usefixtures("one_thread", "fast_everywhere")


def enhancer(net, **kw) -> Enhancer:
    kw.setdefault("tile", 0)
    return Enhancer(net=net, device="cpu", **kw)


@pytest.fixture
def net(make_net):
    return make_net(1, seed=1)


@pytest.fixture
def gray(jpeg_image) -> np.ndarray:
    return np.ascontiguousarray(jpeg_image.mean(axis=2))


# -- exit modes --------------------------------------------------------------------------------
def test_auto_stops_at_first_exit_reaching_threshold(net, gray):
    low = enhancer(net, threshold=0.0).enhance(gray)
    assert [e.exit for e in low.exits] == [1] and low.chosen == 1
    high = enhancer(net, threshold=1.01).enhance(gray)  # scores are <= 1: never reached
    assert [e.exit for e in high.exits] == [1, 2, 3, 4, 5] and high.chosen == 5
    assert low.threshold == 0.0 and high.threshold == 1.01
    assert low.device == "cpu" and low.size == (gray.shape[1], gray.shape[0])


def test_auto_picks_the_first_exit_over_threshold(net, gray):
    scores = [e.score for e in enhancer(net).enhance(gray, "all").exits]
    for target in range(NUM_EXITS):
        threshold = scores[target]
        expected = next(k for k, s in enumerate(scores, 1) if s >= threshold)
        auto = enhancer(net, threshold=threshold).enhance(gray)
        assert auto.chosen == expected == len(auto.exits)
        assert [e.score for e in auto.exits] == scores[:expected]
        every = enhancer(net, threshold=threshold).enhance(gray, "all")
        assert len(every.exits) == NUM_EXITS and every.chosen == expected


@pytest.mark.parametrize("k", range(1, NUM_EXITS + 1))
def test_forced_exit_computes_exactly_k_exits(net, gray, k):
    calls = []
    res = enhancer(net, threshold=0.0).enhance(gray, k, on_exit=calls.append)
    assert [e.exit for e in res.exits] == list(range(1, k + 1))
    assert calls == res.exits
    assert res.chosen == k and res.image is res.exits[-1].image
    g = enhancer(net).gmacs(96, 96)  # 96x80 pads to 96x96
    assert [e.gmacs for e in res.exits] == pytest.approx(g[:k])
    assert all(e.time_ms > 0 and e.iqa_ms > 0 for e in res.exits)
    assert res.total_ms >= sum(e.time_ms for e in res.exits)


def test_string_digits_and_bad_modes(net, gray):
    assert enhancer(net).enhance(gray, "2").chosen == 2
    for bad in (0, 6, "best", "1.5"):
        with pytest.raises(ValueError, match="exit mode"):
            enhancer(net).enhance(gray, bad)


def test_all_gives_five_exits_identical_to_forced(net, gray):
    e = enhancer(net, threshold=1.01)
    every = e.enhance(gray, "all")
    assert [x.exit for x in every.exits] == [1, 2, 3, 4, 5]
    forced = e.enhance(gray, 3)
    for a, b in zip(every.exits[:3], forced.exits, strict=True):
        np.testing.assert_array_equal(a.image, b.image)
        assert a.score == b.score


# -- continuing --------------------------------------------------------------------------------
def test_continue_after_auto_reuses_cached_state(net, gray, monkeypatch):
    e = enhancer(net, threshold=0.0)
    steps = []
    original = FastProgressiveRun._nodes

    def counting(self):
        steps.append(self.exits_done + 1)
        return original(self)

    monkeypatch.setattr(FastProgressiveRun, "_nodes", counting)
    res = e.enhance(gray, keep_session=True)
    assert res.chosen == 1 and res.can_continue
    assert isinstance(res._session.run, FastProgressiveRun)  # the CPU fast path is used
    seen = []
    e.continue_exits(res, 3, on_exit=seen.append)
    assert [x.exit for x in res.exits] == [1, 2, 3] and [x.exit for x in seen] == [2, 3]
    assert res.can_continue
    e.continue_exits(res)
    assert not res.can_continue and res._session is None
    assert steps == [1, 2, 3, 4, 5]  # each exit's nodes computed once, none recomputed
    assert res.chosen == 1  # continuing adds exits; the auto choice stands

    every = e.enhance(gray, "all")
    for a, b in zip(res.exits, every.exits, strict=True):
        assert a.exit == b.exit
        np.testing.assert_array_equal(a.image, b.image)
        assert a.score == pytest.approx(b.score, abs=1e-7)
    with pytest.raises(RBQEError, match="no network state"):
        e.continue_exits(every)


def test_no_session_unless_asked(net, gray):
    res = enhancer(net, threshold=0.0).enhance(gray)
    assert not res.can_continue
    done = enhancer(net, threshold=0.0).enhance(gray, "all", keep_session=True)
    assert not done.can_continue  # all five computed: nothing left to keep


# -- cancel and progress -------------------------------------------------------------------
def test_cancel_between_stages(net, gray):
    seen = []
    with pytest.raises(Cancelled):
        enhancer(net, threshold=1.01).enhance(gray, on_exit=seen.append,
                                              cancel=lambda: len(seen) >= 2)
    assert [e.exit for e in seen] == [1, 2]
    with pytest.raises(Cancelled):
        enhancer(net).enhance(gray, "all", cancel=lambda: True, on_exit=seen.append)
    assert len(seen) == 2


def test_cancel_during_continue(net, gray):
    e = enhancer(net, threshold=0.0)
    res = e.enhance(gray, keep_session=True)
    with pytest.raises(Cancelled):
        e.continue_exits(res, cancel=lambda: len(res.exits) >= 2)
    assert [x.exit for x in res.exits] == [1, 2]


def test_cancel_tiled(net, make_jpeg):
    img = make_jpeg(200, 200, seed=4).astype(np.float32) / 255
    calls = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) > 6

    with pytest.raises(Cancelled):
        enhancer(net, tile=128).enhance(img, "all", cancel=cancel)


def test_progress_order_untiled(net, gray):
    events = []
    order = []
    enhancer(net).enhance(gray, "all", progress=lambda *a: (events.append(a), order.append("p")),
                          on_exit=lambda e: order.append(e.exit))
    assert events == [("exit", k, 5) for k in range(6)]
    assert order == ["p", 1, "p", 2, "p", 3, "p", 4, "p", 5, "p"]
    events.clear()
    enhancer(net, threshold=0.0).enhance(gray, progress=lambda *a: events.append(a))
    assert events[0] == ("exit", 0, 5) and events[-1] == ("exit", 5, 5)


def test_progress_order_tiled(net, make_jpeg):
    img = make_jpeg(256, 200, seed=2).astype(np.float32) / 255
    events = []
    res = enhancer(net, tile=128).enhance(img, 2, progress=lambda *a: events.append(a))
    assert res.tiled and res.tiles > 1
    stages = [s for s, _, _ in events]
    n_sample = stages.count("sample")
    assert stages == ["sample"] * n_sample + ["tile"] * (len(stages) - n_sample)
    total = events[0][2]
    assert all(t == total for _, _, t in events)
    done = [d for _, d, _ in events]
    assert done == sorted(done) and done[0] == 0 and events[-1] == ("tile", total, total)
    assert total == n_sample + res.tiles


def test_tiled_progress_steps_through_the_sample_walk(net, make_jpeg):
    """The sample tiles' walk (minutes for a 12 MP photo on a CPU) reports a step per exit
    walked, between its network stages; it was one silent step after four quick ones."""
    img = make_jpeg(256, 200, seed=2).astype(np.float32) / 255
    enh = enhancer(net, tile=128, threshold=1.01)  # scores are <= 1: walks to exit 5
    order: list[object] = []
    stage = enh._stage
    enh._stage = lambda *a, **kw: (order.append("net"), stage(*a, **kw))[1]
    res = enh.enhance(img, progress=lambda *a: order.append(a))
    steps = [x for x in order if isinstance(x, tuple)]
    walk = [d for s, d, _ in steps if s == "sample"]
    assert walk == list(range(NUM_EXITS))
    first_tile = order.index(("tile", NUM_EXITS, NUM_EXITS + res.tiles))
    for a, b in zip(order[:first_tile], order[1:first_tile], strict=False):
        assert not (isinstance(a, tuple) and isinstance(b, tuple))  # a stage between


def test_a_cancel_stops_a_tile_between_its_exits(net, make_jpeg):
    """A 1024-pixel tile to exit 5 takes up to a minute on a loaded CPU: a cancel waits
    for one of its exits, not for the whole tile."""
    img = make_jpeg(256, 200, seed=2).astype(np.float32) / 255
    # every tile walks to exit 5, each exit's output made (per-tile exits)
    enh = enhancer(net, tile=128, threshold=1.01, tile_exits="per-tile")
    asked: list[int] = []  # network stages run since the cancel
    stage = enh._stage
    enh._stage = lambda *a, **kw: (asked and asked.append(1), stage(*a, **kw))[1]

    def progress(stage_name: str, done: int, total: int) -> None:
        if stage_name == "tile" and not asked:
            asked.append(0)  # cancelled as the first tile starts

    with pytest.raises(Cancelled):
        enh.enhance(img, progress=progress, cancel=lambda: bool(asked))
    assert sum(asked) == 1  # the first tile's exit 1, then it stopped


# -- colour -----------------------------------------------------------------------------------
def test_luma_model_keeps_chroma(net, jpeg_image):
    res = enhancer(net).enhance(jpeg_image, 5)
    out = res.image
    assert out.shape == jpeg_image.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    # Compare where no channel was clipped: there only the conversion rounding remains.
    inside = np.all((out > 1e-4) & (out < 1 - 1e-4), axis=2)
    assert inside.mean() > 0.9
    (yin, cin), (yout, cout) = split_ycbcr(jpeg_image), split_ycbcr(out)
    assert np.abs(cin - cout)[inside].max() < 2e-3
    # ... while the luma did change.
    assert np.abs(yin - yout).max() > 1e-3


def test_one_luma_for_numpy_torch_and_saving():
    # Every luma in the package is rbqe.color.luma: the engine's numpy frames, the IQA's
    # tensors and the saver's fold give the same float32 bits (pinned so that a rewrite of
    # one of them cannot drift the outputs).
    rng = np.random.default_rng(11)
    rgb = rng.random((37, 29, 3), dtype=np.float32)
    r, g, b = (rgb[..., c] for c in range(3))
    y = luma_of(rgb)
    assert y.dtype == np.float32
    expected = np.float32(0.299) * r + np.float32(0.587) * g
    expected += np.float32(0.114) * b
    np.testing.assert_array_equal(y, expected)
    t = torch.from_numpy(rgb).permute(2, 0, 1)[None].contiguous()
    np.testing.assert_array_equal(iqa.luma(t)[0, 0].numpy(), y)
    from rbqe.io.pixels import _fit_channels

    np.testing.assert_array_equal(_fit_channels(rgb.astype(np.float64), 1)[..., 0], y)
    # float64 (the training metrics) and a gray image's own channel
    assert luma_of(rgb, np.float64).dtype == np.float64
    np.testing.assert_array_equal(luma_of(rgb[..., :1]), rgb[..., 0])


def test_gray_stays_gray(net, gray):
    for img in (gray, gray[..., None]):
        res = enhancer(net).enhance(img, 1)
        assert res.image.shape == (*gray.shape, 1)


def test_rgb_model_on_gray_returns_gray(make_net, gray, jpeg_image):
    rgb_net = make_net(3, seed=2)
    res = enhancer(rgb_net).enhance(gray, 2)
    assert res.image.shape == (*gray.shape, 1)
    assert np.isfinite(res.image).all()
    colour = enhancer(rgb_net).enhance(jpeg_image, 2)
    assert colour.image.shape == jpeg_image.shape


def test_bad_pixel_arrays(net):
    with pytest.raises(ValueError, match="expected"):
        enhancer(net).enhance(np.zeros((8, 8, 2), np.float32))
    with pytest.raises(ValueError, match="empty"):
        enhancer(net).enhance(np.zeros((0, 8), np.float32))


# -- tiling -----------------------------------------------------------------------------------
def _assemble_per_tile_eca(net, img: np.ndarray, tile: int, k: int) -> np.ndarray:
    """Tiles as the engine blends them, but each tile pooling its own ECA statistics."""
    h, w = img.shape[:2]
    src = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]
    acc = np.zeros((h, w, 1), np.float32)
    with torch.no_grad():
        for (y0, y1, x0, x1), wy, wx in tiles(h, w, tile, TILE_OVERLAP):
            run = net.start(pad_to_multiple(src[..., y0:y1, x0:x1]), fast=True)
            for _ in range(k):
                out = run.next_exit()
            acc[y0:y1, x0:x1] += (out[0, :, : y1 - y0, : x1 - x0].clamp(0, 1).permute(1, 2, 0)
                                  .numpy() * blend_weight(wy, wx))
    return acc


@pytest.mark.parametrize("k", [2, 5])
def test_tiled_matches_untiled_without_seams(make_net, make_jpeg, k):
    net = make_net(1, seed=7)
    img = (make_jpeg(288, 320, seed=3).mean(axis=2, keepdims=True) / 255).astype(np.float32)
    whole = enhancer(net, tile=0).enhance(img, k).image
    tiled_res = enhancer(net, tile=128).enhance(img, k)
    assert tiled_res.tiled and tiled_res.chosen == k
    assert tiled_res.tiles == len(tiles(288, 320, 128, TILE_OVERLAP)) == 16
    tiled = tiled_res.image
    assert tiled.shape == whole.shape
    shared = psnr(tiled, whole)
    own = psnr(_assemble_per_tile_eca(net, img, 128, k), whole)
    print(f"\nexit {k}: tiled vs whole PSNR shared ECA stats {shared:.1f} dB, "
          f"per-tile ECA {own:.1f} dB")
    assert shared >= 40
    assert shared >= own - 0.5  # sharing the statistics never costs accuracy
    err = np.abs(tiled - whole)[..., 0]
    edge = tile_edge_mask(*img.shape[:2], 128)
    assert edge.any() and (~edge).any()
    # No visible seam: the error along tile edges is not much above the error elsewhere.
    assert err[edge].mean() <= 3 * err[~edge].mean() + 1e-4
    assert err.max() < 0.05


def test_tiled_all_and_auto_agree(net, make_jpeg):
    img = make_jpeg(200, 260, seed=5).astype(np.float32) / 255
    every = enhancer(net, tile=128).enhance(img, "all")
    assert [e.exit for e in every.exits] == [1, 2, 3, 4, 5]
    assert len(every.sampled_scores) == NUM_EXITS
    threshold = every.sampled_scores[2]
    expected = next(k for k, s in enumerate(every.sampled_scores, 1) if s >= threshold)
    # The samples' one exit for every tile (per-tile exits: tests/test_tile_exits.py).
    e = enhancer(net, tile=128, threshold=threshold, tile_exits="shared")
    auto = e.enhance(img)
    assert auto.chosen == expected and [x.exit for x in auto.exits] == [expected]
    assert e.enhance(img, "all").chosen == expected
    assert auto.full_score == auto.exits[0].score
    assert auto.image.shape == img.shape
    np.testing.assert_allclose(auto.image, every.exit_result(expected).image, atol=1e-6)


def test_auto_never_stops_before_min_exit(net, gray):
    scores = [e.score for e in enhancer(net).enhance(gray, "all").exits]
    e = enhancer(net, threshold=0.0, min_exit=3)
    auto = e.enhance(gray)
    # Every score passes a zero threshold, yet exits 1-2 may not end the walk.
    assert auto.chosen == 3 and [x.exit for x in auto.exits] == [1, 2, 3]
    assert auto.min_exit == 3 and e.enhance(gray, "all").chosen == 3
    # Above min_exit the threshold decides as before.
    threshold = max(scores[2:]) + 1e-6 if max(scores[2:]) < 1 else 1.01
    assert enhancer(net, threshold=threshold, min_exit=3).enhance(gray).chosen == 5
    assert e.enhance(gray, 2).chosen == 2  # a forced exit ignores the rule
    assert [e.passes(k, 0.5) for k in range(1, 6)] == [False, False, True, True, True]


def test_min_exit_in_tiled_images(net, make_jpeg):
    img = make_jpeg(200, 260, seed=5).astype(np.float32) / 255
    auto = enhancer(net, tile=128, threshold=0.0, min_exit=4).enhance(img)
    # The sample tiles walked exits 1-4 (all passing a zero threshold) and stopped at 4.
    assert auto.tiled and auto.chosen == 4 and len(auto.sampled_scores) == 4


def test_min_exit_comes_from_the_weights(net, tmp_path):
    from rbqe.weights import read_info, save_weights, set_threshold

    path = save_weights(net, tmp_path / "w.safetensors", threshold=0.4)
    assert read_info(path).min_exit == 1  # the paper's rule unless calibration says more
    set_threshold(path, 0.3, min_exit=3)
    assert (read_info(path).threshold, read_info(path).min_exit) == (0.3, 3)
    set_threshold(path, 0.35)  # the earliest exit stays
    assert read_info(path).min_exit == 3
    e = Enhancer(path, device="cpu", tile=0)
    assert (e.threshold, e.min_exit) == (0.35, 3)
    assert Enhancer(path, device="cpu", tile=0, min_exit=1).min_exit == 1
    with pytest.raises(ValueError, match="min_exit"):
        Enhancer(path, device="cpu", min_exit=6)


def test_bad_min_exit_in_a_weights_file_is_one_clear_error(net, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from rbqe.errors import WeightsError
    from rbqe.weights import read_info, save_weights

    path = save_weights(net, tmp_path / "w.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    save_file(load_file(str(path)), str(path), metadata={**meta, "min_exit": "7"})
    with pytest.raises(WeightsError, match=r"w\.safetensors: bad metadata .*min_exit"):
        read_info(path)


@pytest.mark.parametrize(
    "n, tile, overlap",
    [(100, 128, 64), (129, 128, 64), (200, 128, 64), (1000, 256, 64), (3000, 1024, 64),
     (6000, 1024, 64), (1025, 1024, 64)],
)
def test_blend_weights_are_a_partition_of_unity(n, tile, overlap):
    segs = axis_segments(n, tile, overlap)
    total = np.zeros(n, np.float64)
    for s0, s1, wgt in segs:
        assert 0 <= s0 < s1 <= n and s1 - s0 <= tile and s0 % 8 == 0
        assert wgt.shape == (s1 - s0,) and wgt.min() > 0
        total[s0:s1] += wgt
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    assert segs[0][0] == 0 and segs[-1][1] == n


def test_blend_weights_2d():
    h, w = 300, 260
    total = np.zeros((h, w, 1), np.float64)
    for (y0, y1, x0, x1), wy, wx in tiles(h, w, 128, TILE_OVERLAP):
        wgt = blend_weight(wy, wx)
        assert wgt.shape == (y1 - y0, x1 - x0, 1)
        total[y0:y1, x0:x1] += wgt
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_plain_path_on_other_devices_is_the_module_path(net, gray, monkeypatch):
    # Where the fast path does not apply (CUDA/MPS: Enhancer.fast is False) the module
    # path runs; force that on the CPU and compare.
    fast = enhancer(net).enhance(gray, 5)
    e = enhancer(net)
    e.fast = False
    started = []
    original = ProgressiveRun.__init__

    def spy(self, *a, **kw):
        started.append(type(self))
        original(self, *a, **kw)

    monkeypatch.setattr(ProgressiveRun, "__init__", spy)
    plain = e.enhance(gray, 5)
    assert started == [ProgressiveRun]
    for a, b in zip(fast.exits, plain.exits, strict=True):
        np.testing.assert_allclose(a.image, b.image, atol=1e-5)


def test_tiled_scores_cover_every_exit_computed(net, make_jpeg):
    # The whole-image path scores each exit it walks; a tiled image walks them on its
    # sample tiles and assembles only the chosen one: EnhanceResult.scores has both.
    img = make_jpeg(200, 260, seed=5).astype(np.float32) / 255
    e = enhancer(net, tile=128, threshold=0.0, min_exit=3)
    for mode in ("auto", 3):
        res = e.enhance(img, mode)
        assert res.tiled and res.chosen == 3 and [x.exit for x in res.exits] == [3]
        assert list(res.scores) == [1, 2, 3]
        assert [res.scores[k] for k in (1, 2)] == res.sampled_scores[:2]
        assert res.scores[3] == res.full_score == res.exits[0].score
    every = e.enhance(img, "all")
    assert every.scores == {x.exit: x.score for x in every.exits}  # all assembled
    whole = enhancer(net, tile=0, threshold=0.0, min_exit=3).enhance(img)
    assert whole.scores == {x.exit: x.score for x in whole.exits} and list(whole.scores) == [1, 2, 3]


def test_tile_size_is_reported(net, make_jpeg):
    img = make_jpeg(200, 260, seed=5).astype(np.float32) / 255
    assert enhancer(net, tile=128).enhance(img, 1).tile_size == 128
    whole = enhancer(net, tile=512).enhance(img, 1)
    assert whole.tile_size == 0 and not whole.tiled and whole.oom_retries == 0


# -- memory -----------------------------------------------------------------------------------
def test_row_bands_and_padded_sides():
    # The one row-band helper (colour, IQA, saving, the fast model path) and the one
    # pad-to-MULTIPLE rule (engine, tiles, report).
    assert row_bands(10, 4, 12) == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert row_bands(0, 4, 12) == [] and row_bands(3, 100, 10) == [(0, 1), (1, 2), (2, 3)]
    assert row_bands(100, 1000, 32 * 1024, step=2, min_rows=16) == [
        (0, 32), (32, 64), (64, 96), (96, 100)]
    assert row_bands(40, 10_000, 32 * 1024, step=2, min_rows=16) == [(0, 16), (16, 32), (32, 40)]
    assert [padded_size(n) for n in (1, 31, 32, 33, 96)] == [32, 32, 32, 64, 96]
    assert padded_box((8, 40, 0, 100)) == (32, 128)
    assert tuple(pad_to_multiple(torch.zeros(1, 1, 33, 64)).shape[-2:]) == (64, 64)


def test_colour_conversions_in_bands_match_one_band(jpeg_image, monkeypatch):
    img = np.ascontiguousarray(np.tile(jpeg_image, (3, 2, 1)))  # 288 x 160
    y, cbcr = split_ycbcr(img)
    rgb = ycbcr_to_rgb(y, cbcr)
    monkeypatch.setattr("rbqe.color.BAND_PIXELS", 1000)  # a few rows per band
    y2, cbcr2 = split_ycbcr(img)
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(cbcr2, cbcr)
    np.testing.assert_array_equal(ycbcr_to_rgb(y, cbcr), rgb)
    out = np.full_like(img, np.nan)
    assert ycbcr_to_rgb(y, cbcr, out=out) is out
    np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize(("channels", "gray_input"), [(1, False), (1, True), (3, False), (3, True)])
def test_tiled_result_is_the_same_in_bands(make_net, make_jpeg, monkeypatch, channels, gray_input):
    # The tiled path blends into the output frame and converts colour band by band; the
    # band size must not change a bit of the result, nor the full-image score.
    net = make_net(channels, seed=3)
    img = make_jpeg(200, 260, seed=6).astype(np.float32) / 255
    if gray_input:
        img = np.ascontiguousarray(img.mean(axis=2, keepdims=True))
    one = enhancer(net, tile=128).enhance(img, "all")
    monkeypatch.setattr("rbqe.color.BAND_PIXELS", 700)
    monkeypatch.setattr("rbqe.iqa.BAND_PIXELS", 700)
    many = enhancer(net, tile=128).enhance(img, "all")
    assert one.image.shape == (*img.shape[:2], 1 if gray_input else 3)
    for a, b in zip(one.exits, many.exits, strict=True):
        np.testing.assert_array_equal(a.image, b.image)
        assert b.score == pytest.approx(a.score, abs=1e-7)


# -- out of memory ----------------------------------------------------------------------------
def _out_of_memory_over(monkeypatch, enh: Enhancer, side: int,
                        error: BaseException | None = None) -> list[tuple[int, int]]:
    """Makes ``enh``'s network run out of memory at its second exit on inputs with a side
    over ``side``, as CUDA would (some work done, then an allocation fails). Returns the
    input sizes it was started on."""
    started = []
    start = enh.net.start

    def limited_start(x, *args, **kwargs):
        started.append(tuple(x.shape[-2:]))
        run = start(x, *args, **kwargs)
        if max(x.shape[-2:]) > side:
            next_exit, calls = run.next_exit, []

            def failing_next_exit():
                calls.append(1)
                if len(calls) == 2:
                    raise error or torch.OutOfMemoryError(
                        "CUDA out of memory. Tried to allocate 2 GiB")
                return next_exit()

            def failing_advance():  # advance computes the exit's nodes, not its output
                failing_next_exit()

            run.next_exit = failing_next_exit
            run.advance = failing_advance
        return run

    monkeypatch.setattr(enh.net, "start", limited_start)
    return started


def test_out_of_memory_retries_with_half_the_tile(net, make_jpeg, monkeypatch, caplog):
    img = make_jpeg(600, 700, seed=4).astype(np.float32) / 255
    enh = enhancer(net, tile=512)
    started = _out_of_memory_over(monkeypatch, enh, 288)
    with caplog.at_level("WARNING", logger="rbqe.engine"):
        res = enh.enhance(img, 3)
    assert res.oom_retries == 1 and res.tile_size == 256 and res.tiled
    assert "out of CPU memory with 512-pixel tiles; retrying with 256-pixel tiles" in caplog.text
    assert max(max(s) for s in started) > 288  # the first attempt ran on big tiles
    expected = enhancer(net, tile=256).enhance(img, 3)
    assert res.tiles == expected.tiles and res.chosen == expected.chosen == 3
    np.testing.assert_array_equal(res.image, expected.image)
    assert res.exits[0].score == expected.exits[0].score
    # The next image starts with the tile that worked instead of running out again.
    assert enh.tile == 256
    assert enh.enhance(img, 3).oom_retries == 0


def test_out_of_memory_untiled_switches_to_tiling(net, make_jpeg, monkeypatch):
    img = make_jpeg(300, 420, seed=8).astype(np.float32) / 255
    enh = enhancer(net, tile=0)  # tiling off: a retry tiles all the same
    _out_of_memory_over(monkeypatch, enh, 300)
    res = enh.enhance(img, "all", keep_session=True)
    # 420 // 2 rounds down to 192, under the floor: the retry tiles at MIN_TILE.
    assert res.oom_retries == 1 and res.tiled and res.tile_size == MIN_TILE == 256
    assert not res.can_continue
    expected = enhancer(net, tile=256).enhance(img, "all")
    for a, b in zip(res.exits, expected.exits, strict=True):
        np.testing.assert_array_equal(a.image, b.image)
    assert res.chosen == expected.chosen


def test_out_of_memory_halves_down_to_the_floor_then_fails(net, make_jpeg, monkeypatch,
                                                          caplog):
    img = make_jpeg(1000, 1100, seed=9).astype(np.float32) / 255
    enh = enhancer(net, tile=1024)
    started = _out_of_memory_over(monkeypatch, enh, 0)  # everything runs out of memory
    with caplog.at_level("WARNING", logger="rbqe.engine"), \
            pytest.raises(RBQEError, match="even with 256-pixel tiles") as info:
        enh.enhance(img, 2)
    assert "CUDA out of memory. Tried to allocate 2 GiB" in str(info.value)
    # One attempt per tile side: 1024, 512, then 256, after which it gives up.
    assert [r.getMessage().split(";")[1] for r in caplog.records] == [
        " retrying with 512-pixel tiles (CUDA out of memory. Tried to allocate 2 GiB)",
        " retrying with 256-pixel tiles (CUDA out of memory. Tried to allocate 2 GiB)",
    ]
    assert max(started[-1]) <= 256 + 32  # the last attempt's tiles (padded to 32)
    assert enh.tile == 1024  # the Enhancer's own setting is left as it was


def test_an_image_of_fewer_pixels_than_a_tile_runs_whole(net, make_jpeg) -> None:
    # By pixels (what the memory follows), not by its longer side: a 1152x768 photo was
    # two tiles and a sample walk, twice the MACs of running it whole.
    from rbqe.tiling import fits_one_tile

    assert fits_one_tile(768, 1152, 1024) and not fits_one_tile(1000, 1100, 1024)
    assert fits_one_tile(5000, 5000, 0)
    enh = enhancer(net, tile=256)
    wide = enh.enhance(make_jpeg(96, 384, seed=3).astype(np.float32) / 255, 2)
    assert not wide.tiled  # 384 > 256 a side, but 36,864 < 65,536 pixels
    big = enh.enhance(make_jpeg(288, 288, seed=4).astype(np.float32) / 255, 2)
    assert big.tiled


def _bf16_enhancer(net, monkeypatch, **kw) -> Enhancer:
    """The CPU fast path in bf16 as on a CPU with native bf16 (emulated where not)."""
    monkeypatch.setattr("rbqe.backends.native_bf16", lambda: True)
    return Enhancer(net=net, device="cpu", backend="torch", precision="bf16", **kw)


def test_the_cpu_allocator_running_out_is_retried_with_tiles(net, make_jpeg, monkeypatch,
                                                             caplog) -> None:
    # On a host that refuses an allocation (strict overcommit, a memory limit) the CPU
    # allocator raises a plain RuntimeError: a whole 2 MP photo failed where its tiles
    # would have fitted (it ran tiled before images of up to 2 MP ran whole).
    enh = _bf16_enhancer(net, monkeypatch)
    refused = RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: "
                           "can't allocate memory: you tried to allocate 1073741824 bytes. "
                           "Error code 12 (Cannot allocate memory)")
    started = _out_of_memory_over(monkeypatch, enh, 1100, refused)
    with caplog.at_level("WARNING", logger="rbqe.engine"):
        r = enh.enhance(make_jpeg(1200, 1600, seed=7).astype(np.float32) / 255, 2)
    assert started[0] == (1216, 1600) and r.tiled and r.tile_size == 1024
    assert "out of CPU memory with the whole image; retrying with 1024-pixel tiles" in caplog.text
    assert not enh.runs_whole(1200, 1600)
    # Down to the smallest tile, it says what to do on a CPU (not "use --device cpu").
    tiny = enhancer(net, tile=256)
    _out_of_memory_over(monkeypatch, tiny, 100, refused)
    with pytest.raises(RBQEError, match="close other programs to free memory"):
        tiny.enhance(make_jpeg(300, 300, seed=8).astype(np.float32) / 255, 2)


def test_the_cpu_runs_images_of_up_to_2_mp_whole_in_bf16_unless_a_tile_is_given(
        net, monkeypatch) -> None:
    # A 1600x1200 photo was four tiles and a sample walk of four 512-pixel crops: 1.4-1.6x
    # the wall time of running it whole under auto (rbqe.tiling.WHOLE_PIXELS).
    default = _bf16_enhancer(net, monkeypatch)
    assert default.tile == 1024 and default.whole_pixels == 2 * 1024 * 1024
    assert default.runs_whole(1200, 1600) and default.runs_whole(1080, 1920)
    assert not default.runs_whole(1280, 1920) and not default.runs_whole(1100, 2000)
    # float32 maps are twice the size: one tile's pixels for a 16-bit image, or in f32.
    assert not default.runs_whole(1200, 1600, full_precision=True)
    f32 = Enhancer(net=net, device="cpu", backend="torch", precision="f32")
    assert f32.whole_pixels == 1024 * 1024 and not f32.runs_whole(1200, 1600)
    # A tile given bounds the memory: one tile's pixels, as before; set later too.
    given = _bf16_enhancer(net, monkeypatch, tile=1024)
    assert given.whole_pixels == 1024 * 1024 and not given.runs_whole(1200, 1600)
    assert given.runs_whole(768, 1152)
    default.tile = 256
    assert default.whole_pixels == 256 * 256 and not default.runs_whole(300, 300)
    never = _bf16_enhancer(net, monkeypatch, tile=0)
    never.tile = 128
    assert not never.runs_whole(200, 200) and never.runs_whole(64, 64)


def test_a_2_mp_whole_image_out_of_memory_is_tiled_and_later_ones_too(net, make_jpeg,
                                                                      monkeypatch) -> None:
    enh = _bf16_enhancer(net, monkeypatch)
    job = copy.copy(enh)  # as the app's per-job copy under another policy
    started = _out_of_memory_over(monkeypatch, job, 1100)
    r = job.enhance(make_jpeg(1200, 1600, seed=6).astype(np.float32) / 255, 2)
    assert started[0] == (1216, 1600)  # first whole (padded), then tiles of at most 1024
    assert r.tiled and r.tile_size == 1024 and max(max(s) for s in started[1:]) <= 1024
    # What ran out once will again: the next such image is tiled from the start, by the
    # copy and by the Enhancer it was copied from.
    for e in (job, enh):
        assert e.whole_pixels == 1024 * 1024 and not e.runs_whole(1200, 1600)


def test_a_thin_whole_image_out_of_memory_is_cut_at_the_tile(net, make_jpeg, monkeypatch,
                                                             caplog) -> None:
    # 64 x 1024 fits one 256-pixel tile by its pixels, so it runs whole; out of memory,
    # half its side (512) became the Enhancer's tile, larger than the one it was given.
    enh = enhancer(net, tile=256)
    _out_of_memory_over(monkeypatch, enh, 600)
    with caplog.at_level("WARNING", logger="rbqe.engine"):
        r = enh.enhance(make_jpeg(64, 1024, seed=5).astype(np.float32) / 255, 2)
    assert r.tiled and r.tile_size == 256 and enh.tile == 256
    assert "retrying with 256-pixel tiles" in caplog.text


def test_a_padded_strip_counts_as_the_network_runs_it() -> None:
    from rbqe.tiling import fits_one_tile

    # 8 x 8192 runs as 32 x 8192: four 256-pixel tiles' worth, not half of one.
    assert not fits_one_tile(8, 8192, 256) and fits_one_tile(8, 2048, 256)


def test_other_errors_are_not_retried(net, gray, monkeypatch):
    enh = enhancer(net)

    def broken(*args, **kwargs):
        raise RuntimeError("not a memory problem")

    monkeypatch.setattr(enh.net, "start", broken)
    with pytest.raises(RuntimeError, match="not a memory problem"):
        enh.enhance(gray)


def test_full_precision_runs_float32_whatever_the_precision(net, gray, monkeypatch):
    # A 16-bit image in bf16 came out only 8-bit precise; enhance(full_precision=True)
    # asks the backend for float32, and only for that call (tiled or not).
    enh = enhancer(net)
    enh.backend._dtype = torch.bfloat16  # as on a CPU with native bf16
    asked = []
    real_start = enh.net.start

    def spy(x, stats=None, **kw):
        asked.append(kw["dtype"])
        return real_start(x, stats, **{**kw, "dtype": torch.float32})  # runs anywhere

    monkeypatch.setattr(enh.net, "start", spy)
    enh.enhance(gray, 3, full_precision=True)
    assert set(asked) == {torch.float32}
    asked.clear()
    enh.enhance(gray, 3)
    assert set(asked) == {torch.bfloat16}
    asked.clear()
    enh.tile = 128  # the tiled path too
    enh.enhance(np.tile(gray, (3, 3)), 3, full_precision=True)
    assert asked and set(asked) == {torch.float32}
