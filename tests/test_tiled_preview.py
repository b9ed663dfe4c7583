"""A tiled image's tiles reported as they are done (``Enhancer.enhance(on_tile=...)``,
:class:`rbqe.results.TileDone`): once per tile, at the exit the result shows there, its
pixels finished as the result's are, and the result the same with or without a listener.

Tiny random networks: what is pinned is the mechanism, not what the weights learned.
"""

from __future__ import annotations

import numpy as np
import pytest

from rbqe.arch import NUM_EXITS
from rbqe.engine import Enhancer, EnhanceResult
from rbqe.errors import Cancelled
from rbqe.results import TileDone
from rbqe.tiling import TILE_OVERLAP, tiles
from tests.helpers import SmoothStopsEarly

pytestmark = pytest.mark.usefixtures("one_thread", "fast_everywhere")

# 256-pixel tiles on a 520 x 600 picture: a 3 x 3 grid in which every tile, the middle one
# too, has pixels no neighbour overlaps (128-pixel tiles overlap each other everywhere).
TILE = 256
H, W = 520, 600


def enhancer(net, **kw) -> Enhancer:
    kw.setdefault("tile", TILE)
    return Enhancer(net=net, device="cpu", **kw)


@pytest.fixture
def picture(make_jpeg) -> np.ndarray:
    return make_jpeg(H, W, seed=3).astype(np.float32) / 255


def half_smooth(h: int, w: int) -> np.ndarray:
    """A grey picture: a gentle gradient on the left half, noise on the right (tiles of
    each half stop at different exits under :class:`SmoothStopsEarly`)."""
    rng = np.random.default_rng(3)
    img = np.empty((h, w, 1), np.float32)
    img[:, : w // 2, 0] = np.linspace(0.3, 0.6, w // 2)[None, :]
    img[:, w // 2 :, 0] = rng.random((h, w - w // 2))
    return img


def enhanced(enh: Enhancer, img: np.ndarray, mode="auto") -> tuple[EnhanceResult,
                                                                   list[TileDone]]:
    done: list[TileDone] = []
    return enh.enhance(img, mode, on_tile=done.append), done


def own_pixels(box: tuple[int, int, int, int], h: int, w: int) -> np.ndarray:
    """The pixels of tile ``box`` (a mask of its shape) that no other tile overlaps: there
    the result is the tile's output alone."""
    cover = np.zeros((h, w), np.int32)
    for (y0, y1, x0, x1), _, _ in tiles(h, w, TILE, TILE_OVERLAP):
        cover[y0:y1, x0:x1] += 1
    y0, y1, x0, x1 = box
    return cover[y0:y1, x0:x1] == 1


def check_tiles(done: list[TileDone], res: EnhanceResult, image: np.ndarray) -> None:
    """Once per tile, counted 1..total, the boxes the grid's, pixels of the result's
    channels that are the result's own (``image``) where no neighbour overlaps."""
    h, w = image.shape[:2]
    grid = [box for box, _, _ in tiles(h, w, TILE, TILE_OVERLAP)]
    assert res.tiled and len(done) == res.tiles == len(grid) > 1
    assert [t.done for t in done] == list(range(1, len(grid) + 1))
    assert {t.total for t in done} == {len(grid)}
    assert sorted(t.box for t in done) == sorted(grid)
    for t in done:
        y0, y1, x0, x1 = t.box
        assert t.image.shape == (y1 - y0, x1 - x0, image.shape[2])
        assert t.image.dtype == np.float32 and t.image.flags.owndata  # a copy, not a view
        own = own_pixels(t.box, h, w)
        assert own.any()
        np.testing.assert_array_equal(t.image[own], image[y0:y1, x0:x1][own])


def test_per_tile_exits_report_each_tile_at_its_own_exit(make_net, monkeypatch):
    monkeypatch.setattr("rbqe.tile_exits.FLOOR_DROP", None)  # tiles of both halves differ
    img = half_smooth(H, W)
    enh = enhancer(make_net(1, seed=7), tile_exits="per-tile",
                   policy=SmoothStopsEarly("assessor", {"threshold": 0.0, "min_exit": 1}))
    res, done = enhanced(enh, img)
    assert res.tile_exits is not None
    grid = [box for box, _, _ in tiles(H, W, TILE, TILE_OVERLAP)]
    exits = dict(zip(grid, res.tile_exits.exits, strict=True))
    assert len(set(exits.values())) > 1  # tiles stopped at different exits
    assert {t.box: t.exit for t in done} == exits
    check_tiles(done, res, res.image)


def test_shared_exits_report_the_exit_computed(make_net, picture):
    enh = enhancer(make_net(1, seed=1), threshold=0.0, min_exit=2, tile_exits="shared")
    res, done = enhanced(enh, picture)
    assert res.tile_exits is None and res.chosen == 2
    assert {t.exit for t in done} == {2}
    check_tiles(done, res, res.image)


def test_a_forced_exit_reports_that_exit(make_net, picture):
    res, done = enhanced(enhancer(make_net(1, seed=1)), picture, 3)
    assert res.chosen == 3 and {t.exit for t in done} == {3}
    check_tiles(done, res, res.image)


def test_all_exits_report_the_exit_auto_chooses(make_net, picture):
    enh = enhancer(make_net(1, seed=1), threshold=0.0, min_exit=2)
    res, done = enhanced(enh, picture, "all")
    assert len(res.exits) == NUM_EXITS and res.chosen == 2
    assert {t.exit for t in done} == {2}
    check_tiles(done, res, res.exit_result(2).image)


def test_an_rgb_model_on_a_grey_picture_reports_grey_tiles(make_net, picture):
    grey = np.ascontiguousarray(picture.mean(axis=2, keepdims=True))
    res, done = enhanced(enhancer(make_net(3, seed=2)), grey, 2)
    assert res.image.shape[2] == 1
    check_tiles(done, res, res.image)


@pytest.mark.parametrize("tile_exits", ["per-tile", "shared"])
def test_the_result_is_the_same_with_or_without_a_listener(make_net, picture, tile_exits):
    enh = enhancer(make_net(1, seed=1), tile_exits=tile_exits)
    plain = enh.enhance(picture)
    heard, done = enhanced(enh, picture)
    assert done and heard.chosen == plain.chosen
    assert [e.exit for e in heard.exits] == [e.exit for e in plain.exits]
    for a, b in zip(heard.exits, plain.exits, strict=True):
        np.testing.assert_array_equal(a.image, b.image)
        assert a.score == b.score
    assert (heard.tile_exits is None) == (plain.tile_exits is None)
    if plain.tile_exits is not None:
        assert heard.tile_exits is not None
        assert heard.tile_exits.exits == plain.tile_exits.exits


@pytest.mark.parametrize("tile_exits", ["per-tile", "shared"])
def test_a_tile_not_looked_at_is_not_finished(make_net, picture, tile_exits, monkeypatch):
    """The app skips the tiles of a photo not on screen: they cost no finishing (~30 ms a
    12 MP tile); one looked at later is as it would have been."""
    enh = enhancer(make_net(1, seed=1), tile_exits=tile_exits)
    finished: list[tuple[int, ...]] = []
    plain_finish = enh._finish
    monkeypatch.setattr(enh, "_finish", lambda frame, img: (finished.append(frame.shape),
                                                            plain_finish(frame, img))[1])
    res, done = enhanced(enh, picture)
    assert len(done) == 9 and finished == [(H, W, 3)] * len(res.exits)  # the result's only
    check_tiles(done, res, res.exit_result(res.chosen).image)  # each made when read


def test_an_untiled_image_reports_no_tiles(make_net, picture):
    res, done = enhanced(enhancer(make_net(1, seed=1), tile=0), picture)
    assert not res.tiled and done == []


@pytest.mark.parametrize("tile_exits", ["per-tile", "shared"])
def test_a_cancel_after_a_tile_stops_before_the_next(make_net, picture, tile_exits):
    enh = enhancer(make_net(1, seed=1), tile_exits=tile_exits)
    done: list[TileDone] = []
    with pytest.raises(Cancelled):
        enh.enhance(picture, on_tile=done.append, cancel=lambda: bool(done))
    assert len(done) == 1


@pytest.mark.parametrize("tile_exits", ["per-tile", "shared"])
def test_tiles_walking_together_are_each_reported(make_net, picture, tile_exits):
    """On the path a GPU takes (tiles of one shape batched on one run), each tile of a
    group is reported, at its own exit, with its own pixels."""
    enh = enhancer(make_net(1, seed=1), tile_exits=tile_exits, backend="torch")
    enh.fast = False  # the module path, which batches tiles as on a GPU
    assert enh.tile_batch > 1
    res, done = enhanced(enh, picture)
    check_tiles(done, res, res.image)
    if res.tile_exits is not None:
        grid = [box for box, _, _ in tiles(H, W, TILE, TILE_OVERLAP)]
        assert {t.box: t.exit for t in done} == dict(zip(grid, res.tile_exits.exits,
                                                         strict=True))
