"""Per-tile exits of a tiled image (:mod:`rbqe.tile_exits`): who gets which exit, that a
uniform exit is the shared path's, that no seam appears where neighbours differ, the
report, and that only one tile's network state is alive at a time.

Tiny random networks where the weights do not matter (the mechanism); the shipped weights
for the one question that is about them: does a badly compressed half of a picture get
later exits than a lightly compressed half under the shipped policy?
"""

from __future__ import annotations

import json
import weakref
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rbqe import iqa
from rbqe.arch import NUM_EXITS
from rbqe.cli import main
from rbqe.engine import Enhancer
from rbqe.errors import RBQEError
from rbqe.exit_policy import ExitPolicy, ExitSignals
from rbqe.tile_exits import floor_exit
from rbqe.tiling import TILE_OVERLAP, blend_weight, sample_boxes, tiles
from rbqe.weights import PACKAGE_WEIGHTS
from tests.helpers import SmoothStopsEarly, jpeg_compress, photo, psnr, tile_edge_mask

pytestmark = pytest.mark.usefixtures("one_thread", "fast_everywhere")


def enhancer(net, **kw) -> Enhancer:
    kw.setdefault("tile", 128)
    kw.setdefault("tile_exits", "per-tile")  # the mode under test; shared is the default
    return Enhancer(net=net, device="cpu", **kw)


def split_policy() -> SmoothStopsEarly:
    return SmoothStopsEarly("assessor", {"threshold": 0.0, "min_exit": 1})


def half_smooth(h: int, w: int) -> np.ndarray:
    """A grey picture: a gentle gradient on the left half, noise on the right."""
    rng = np.random.default_rng(3)
    img = np.empty((h, w, 1), np.float32)
    img[:, : w // 2, 0] = np.linspace(0.3, 0.6, w // 2)[None, :]
    img[:, w // 2 :, 0] = rng.random((h, w - w // 2))
    return img


def test_floor_is_the_policy_min_exit_or_below_the_samples_decision():
    assert floor_exit(2, 4, None) == 2
    assert floor_exit(2, 4, 1) == 3
    assert floor_exit(3, 4, 2) == 3  # never before the policy's own min_exit
    assert floor_exit(1, 5, 0) == 5


def test_a_bad_tile_exits_mode_is_one_clear_error(make_net):
    with pytest.raises(RBQEError, match="per-tile, shared"):
        enhancer(make_net(1), tile_exits="each")


@pytest.mark.skipif(not PACKAGE_WEIGHTS.is_file(), reason="no shipped weights")
def test_shipped_policy_walks_each_tile():
    # Left: a photo at JPEG quality 10; right: another at quality 90. With the shipped
    # weights and per-tile exits (asked for: shared is the default) every tile is decided by the shipped gate on its own
    # signals, never before the samples' decision. (Which half goes further depends on the
    # weights: the 249k-patch weights took the QF 10 half further, the 477k ones send both
    # to exit 3, since their early exits are weakest at light compression, the 5.45M ones
    # sent these generated photos to exit 5, where the walk ends at the last exit, the 5.68M
    # ones stop every tile at exit 3. That a tile needing more gets a later exit is tested
    # below with a policy of known behaviour.)
    left = jpeg_compress(photo(256, 384, seed=1), 10)
    right = jpeg_compress(photo(256, 384, seed=2), 90)
    img = np.concatenate([left, right], axis=1).astype(np.float32) / 255
    enh = Enhancer(PACKAGE_WEIGHTS, device="cpu", backend="torch", tile=256,
                   tile_exits="per-tile")
    res = enh.enhance(img)
    te = res.tile_exits
    assert te is not None and te.grid == (1, 4) and len(te.exits) == res.tiles == 4
    assert te.floor == res.chosen and all(k >= te.floor for k in te.exits)
    # each tile stopped by the gate itself, or walked on to the last exit
    assert all(r == ("last exit" if k == NUM_EXITS else enh.policy.rule)
               for k, r in zip(te.exits, te.reasons, strict=True))
    assert te.gmacs_shared <= te.gmacs <= te.gmacs_exit5
    assert (te.gmacs < te.gmacs_exit5) == (min(te.exits) < NUM_EXITS)
    assert res.exit_result(res.chosen).gmacs == te.gmacs


def test_shared_is_the_default(make_net, make_jpeg):
    """Auto puts every tile of a tiled image at the samples' exit unless per-tile exits
    are asked for: the result is then exactly that exit's image (the exit cards show what
    Save writes), with no per-tile record."""
    net = make_net(1, seed=5)
    img = make_jpeg(200, 260, seed=5).astype(np.float32) / 255
    enh = Enhancer(net=net, device="cpu", tile=128)
    assert enh.tile_exits == "shared"
    res = enh.enhance(img)
    assert res.tiled and res.tile_exits is None
    forced = enh.enhance(img, res.chosen)
    np.testing.assert_array_equal(res.image, forced.image)


@pytest.mark.parametrize("k", [2, 4])
def test_a_uniform_exit_is_the_shared_path(make_net, make_jpeg, k):
    net = make_net(1, seed=5)
    img = make_jpeg(200, 260, seed=5).astype(np.float32) / 255
    fixed = ExitPolicy.fixed(k)
    per_tile = enhancer(net, policy=fixed).enhance(img)
    shared = enhancer(net, policy=fixed, tile_exits="shared").enhance(img)
    te = per_tile.tile_exits
    assert shared.tile_exits is None and te is not None
    assert per_tile.chosen == shared.chosen == k and te.exits == [k] * per_tile.tiles
    assert te.histogram[k] == per_tile.tiles
    np.testing.assert_allclose(per_tile.image, shared.image, rtol=0, atol=1e-6)
    # The compute: the shared mode's is what it spent; per-tile paid the samples' walk
    # on to exit 5 on top; exit 5 is what --exit 5 spends.
    assert te.gmacs_shared == pytest.approx(shared.exits[0].gmacs)
    assert te.gmacs > te.gmacs_shared
    assert te.gmacs_exit5 == pytest.approx(enhancer(net).enhance(img, 5).exits[0].gmacs)


def test_forced_exits_and_all_do_not_depend_on_tile_exits(make_net, make_jpeg):
    net = make_net(1, seed=2)
    img = make_jpeg(200, 260, seed=1).astype(np.float32) / 255
    for mode in (3, "all"):
        a = enhancer(net).enhance(img, mode)
        b = enhancer(net, tile_exits="shared").enhance(img, mode)
        assert a.tile_exits is None and b.tile_exits is None
        for ea, eb in zip(a.exits, b.exits, strict=True):
            assert ea.exit == eb.exit and ea.gmacs == eb.gmacs
            np.testing.assert_array_equal(ea.image, eb.image)


def test_the_floor_keeps_tiles_from_stopping_before_the_samples(make_net, monkeypatch):
    # Mostly noise: the samples' mean asks for exit 4, the smooth quarter for exit 1.
    net = make_net(1, seed=7)
    img = half_smooth(288, 512)[:, 128:]
    enh = enhancer(net, policy=split_policy())
    res = enh.enhance(img)
    assert res.chosen == 4 and res.tile_exits is not None
    assert res.tile_exits.floor == 4 and set(res.tile_exits.exits) == {4}
    monkeypatch.setattr("rbqe.tile_exits.FLOOR_DROP", None)  # no floor but the policy's
    free = enh.enhance(img).tile_exits
    assert free is not None and free.floor == 1 and set(free.exits) == {1, 4}
    assert free.gmacs < res.tile_exits.gmacs


def test_below_the_floor_a_tile_is_neither_asked_nor_assessed(make_net, monkeypatch):
    # The samples ask for exit 4, so every tile's floor is 4: its exits 1-3 are computed
    # for the change signal only, and the policy first hears of the tile at exit 4.
    net = make_net(1, seed=7)
    img = half_smooth(288, 512)[:, 128:]
    enh = enhancer(net, policy=split_policy())
    asked: list[ExitSignals] = []  # the last exit's signals at each verdict, in order
    real_decision = enh._decision
    monkeypatch.setattr(enh, "_decision",
                        lambda signals, result: asked.append(signals[-1])
                        or real_decision(signals, result))
    assessed = []
    real_assess = iqa.assess
    monkeypatch.setattr("rbqe.engine.iqa.assess",
                        lambda y: assessed.append(tuple(y.shape)) or real_assess(y))
    res = enh.enhance(img)
    assert res.tile_exits is not None and res.tile_exits.floor == 4
    n = len(res.tile_exits.exits)
    assert set(res.tile_exits.exits) == {4}
    # The samples' verdicts come first; then one per tile, at its floor, on real scores.
    assert [s.exit for s in asked[-n:]] == [4] * n
    assert all(np.isfinite([s.score, s.blockiness, s.blur, s.change]).all() for s in asked)
    # A tile is assessed once (at exit 4), not at every exit it walked.
    tile_shapes = {(1, 1, y1 - y0, x1 - x0) for (y0, y1, x0, x1), _, _ in tiles(288, 384, 128)}
    tile_assessments = sum(shape in tile_shapes for shape in assessed)
    assert n <= tile_assessments < 2 * n


def test_neighbours_at_different_exits_blend_without_a_seam(make_net, monkeypatch):
    # The per-tile picture against the untiled picture's exits blended with the same
    # weights: what an ideal, seamless per-tile result is.
    monkeypatch.setattr("rbqe.tile_exits.FLOOR_DROP", None)  # let the smooth half stop early
    net = make_net(1, seed=7)
    img = half_smooth(288, 320)
    res = enhancer(net, policy=split_policy()).enhance(img)
    te = res.tile_exits
    assert te is not None and set(te.exits) == {1, 4}  # the policy split the tiles
    whole = enhancer(net, tile=0).enhance(img, "all")
    expected = np.zeros_like(img)
    grid = tiles(288, 320, 128, TILE_OVERLAP)
    for ((y0, y1, x0, x1), wy, wx), k in zip(grid, te.exits, strict=True):
        expected[y0:y1, x0:x1] += whole.exit_result(k).image[y0:y1, x0:x1] * blend_weight(wy, wx)
    assert psnr(res.image, expected) >= 40
    err = np.abs(res.image - expected)[..., 0]
    edge = tile_edge_mask(288, 320, 128)
    assert err[edge].mean() <= 3 * err[~edge].mean() + 1e-4
    assert err.max() < 0.05


def test_only_one_tile_is_alive_at_a_time(make_net, monkeypatch):
    monkeypatch.setattr("rbqe.tile_exits.FLOOR_DROP", None)
    net = make_net(1, seed=7)
    img = half_smooth(288, 320)
    enh = enhancer(net, policy=split_policy())
    samples = len(sample_boxes([b for b, _, _ in tiles(288, 320, 128, TILE_OVERLAP)]))
    runs: list[weakref.ref] = []
    alive_at_start: list[int] = []
    start = enh.backend.start

    def tracked(*args, **kwargs):
        if len(runs) >= samples:  # a tile: every run before it must be gone
            alive_at_start.append(sum(r() is not None for r in runs))
        run = start(*args, **kwargs)
        runs.append(weakref.ref(run))
        return run

    enh.backend.start = tracked  # type: ignore[method-assign]
    res = enh.enhance(img)
    assert res.tile_exits is not None and len(runs) == samples + res.tiles
    assert alive_at_start == [0] * res.tiles


def test_sample_tiles_are_sized_to_the_picture() -> None:
    # Four 512-pixel crops were 43 % of a 2.5 MP picture's pixels (8 % of 12 MP): its
    # sample walk cost as much as a third of its tiles' work.
    from rbqe.tiling import sample_side

    def crops(w: int, h: int) -> list[tuple[int, int, int, int]]:
        return sample_boxes([b for b, _, _ in tiles(h, w, 1024, TILE_OVERLAP)])

    for (w, h), side in (((1920, 1280), 256), ((2400, 1600), 288), ((3000, 2000), 384),
                         ((4000, 3000), 512), ((8000, 6000), 512)):
        assert sample_side(w * h) == side
        boxes = crops(w, h)
        assert len(boxes) == 4 and {(y1 - y0, x1 - x0) for y0, y1, x0, x1 in boxes} == {
            (side, side)}
        assert all(y0 % 8 == 0 and x0 % 8 == 0 for y0, _, x0, _ in boxes)  # on the JPEG grid
    y0, y1, x0, x1 = sample_boxes([b for b, _, _ in tiles(1280, 1920, 1024, TILE_OVERLAP)],
                                  512)[0]
    assert (y1 - y0, x1 - x0) == (512, 512)  # a side given is kept


def test_the_report_says_which_exit_each_tile_got(capsys, tiny_weights, monkeypatch,
                                                   make_jpeg, tmp_path):
    monkeypatch.setenv("RBQE_WEIGHTS", str(tiny_weights))
    big, small = tmp_path / "in" / "big.jpg", tmp_path / "in" / "small.jpg"
    big.parent.mkdir()
    Image.fromarray(make_jpeg(200, 260, seed=4)).save(big, "JPEG", quality=20)
    Image.fromarray(make_jpeg(64, 64, seed=4)).save(small, "JPEG", quality=20)
    docs = {}
    for mode in ("per-tile", "shared"):
        report = tmp_path / f"{mode}.json"
        code = main(["enhance", str(big.parent), "-o", str(tmp_path / mode), "--tile", "128",
                     "--backend", "torch", "--tile-exits", mode, "--report", str(report)])
        assert code == 0, capsys.readouterr().err
        docs[mode] = json.loads(report.read_text())
    per_tile, shared = docs["per-tile"], docs["shared"]
    assert per_tile["tile_exits"] == "per-tile" and shared["tile_exits"] == "shared"
    entries = {e["input"].rsplit("/", 1)[-1]: e for e in per_tile["images"]}
    te = entries["big.jpg"]["tile_exits"]
    n = len(tiles(200, 260, 128, TILE_OVERLAP))
    assert sum(te["histogram"].values()) == n == sum(len(row) for row in te["exits"])
    assert {k for k, v in te["histogram"].items() if v} == {str(k) for row in te["exits"]
                                                           for k in row}
    assert entries["big.jpg"]["gmacs"] == te["gmacs"] <= te["gmacs_exit5"]
    assert te["saved_vs_exit5"] == pytest.approx(1 - te["gmacs"] / te["gmacs_exit5"], abs=1e-3)
    assert sum(te["reasons"].values()) == n
    assert "tile_exits" not in entries["small.jpg"]  # one tile: nothing to tell
    # How each picture was cut, whole or tiled, said outright (not only by tile_exits).
    assert entries["big.jpg"]["tiling"] == {"tiles": n, "tile": 128}
    assert entries["small.jpg"]["tiling"] == {"tiles": 1}
    assert all(e["tiling"] == entries[e["input"].rsplit("/", 1)[-1]]["tiling"]
               for e in shared["images"])
    assert per_tile["summary"]["tile_exit_histogram"] == te["histogram"]
    assert all("tile_exits" not in e for e in shared["images"])
    assert "tile_exit_histogram" not in shared["summary"]
    # The exit is still the whole-picture decision, in both modes.
    assert [e["exit"] for e in per_tile["images"]] == [e["exit"] for e in shared["images"]]


def test_the_ray_summary_counts_tiles_like_the_local_one():
    from rbqe.batch import BatchSummary, ItemReport
    from rbqe.cluster import RaySummary

    hist = {"1": 0, "2": 1, "3": 4, "4": 1, "5": 0}
    items = [ItemReport(Path("a.jpg"), "ok", exit=3, gmacs=1.0, gmacs_exit5=2.0,
                        tile_exits={"histogram": hist}),
             ItemReport(Path("b.jpg"), "ok", exit=3, gmacs=1.0, gmacs_exit5=2.0)]
    ray = RaySummary()
    for item in items:
        ray.add(item.to_json(), (item.gmacs, item.gmacs_exit5))
    local = BatchSummary(items, 0.0)
    assert ray.to_json()["tile_exit_histogram"] == hist
    assert local.tile_exit_histogram == {int(k): v for k, v in hist.items()}
    assert "tile_exit_histogram" not in RaySummary().to_json()


def test_the_cli_refuses_an_unknown_tile_exits_mode(capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["enhance", str(tmp_path), "-o", str(tmp_path / "o"), "--tile-exits", "each"])
    assert info.value.code == 2
    assert "--tile-exits: invalid choice" in capsys.readouterr().err
