"""The previews of the photo on screen are in the result cache's memory budget: a tiled
run's preview (a copy of the input's picture, tiles pasted over it), the difference heat
map and the thumbnails. The cache counted only its photos' pixels and pictures, so a big
photo's previews (128 MB each at 24 MP) came on top of its 1.5 GB; and the heat map
kept the pictures it was made of after they were left (a photo the cache had let go)."""

from __future__ import annotations

import gc
import weakref

import pytest

from rbqe_studio.state import ResultCache, path_key
from rbqe_studio.viewer import DIFF, SPLIT
from tests.app.test_app_tile_preview import BIG, TIMEOUT
from tests.app.test_app_tile_preview import factory as tiled_factory  # noqa: F401
from tests.helpers import write_jpeg


@pytest.fixture
def factory(tiled_factory):  # noqa: F811 - the tiny model tiling at 128 px, gated
    return tiled_factory


def test_what_is_held_outside_counts_against_the_budget() -> None:
    cache: ResultCache[str, int] = ResultCache(100.0)
    for key, cost in (("a", 40.0), ("b", 40.0), ("c", 10.0)):
        assert cache.put(key, 0, cost) == []
    assert cache.hold(30.0) == ["a"]  # 90 + 30 > 100: the oldest makes room
    assert cache.total + cache.held <= cache.budget and cache.held == 30.0
    assert cache.put("d", 0, 25.0) == ["b"]  # and stays made while it is held
    assert cache.total + cache.held <= cache.budget
    assert cache.hold(0.0) == [] and cache.held == 0.0  # let go: nothing more goes
    assert cache.hold(500.0) == ["c"]  # never the most recent, however large
    assert list(cache._entries) == ["d"]
    # The exits a Stop kept go only when they and what is held pass the budget alone.
    pinned: ResultCache[str, int] = ResultCache(100.0, lambda k: k == "p")
    pinned.put("p", 0, 60.0)
    pinned.put("q", 0, 10.0)
    assert pinned.hold(35.0) == []  # 95: beside the most recent, over, as before
    assert pinned.hold(45.0) == ["p"]  # 105
    assert pinned.total + pinned.held <= pinned.budget


def done(qtbot, window, paths) -> None:
    for path in paths:
        with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
            window.open_paths([path])
    qtbot.waitUntil(lambda: not window.session.view_running, timeout=TIMEOUT)


def test_a_views_cost_counts_its_thumbnails(qtbot, window, tmp_path) -> None:
    photo = write_jpeg(tmp_path / "a.jpg", size=(96, 64))
    done(qtbot, window, [photo])
    view = window.session.view
    pictures = view.input_pic.nbytes + sum(p.nbytes for p in view.pictures.values())
    thumbs = sum(t.sizeInBytes() for t in (view.input_thumb, *view.thumbs.values()))
    assert thumbs > 0 and len(view.thumbs) == len(view.result.exits)
    assert view.cost == (pictures + thumbs + view.loaded.pixels.nbytes
                         + sum(e.image.nbytes for e in view.result.exits))
    assert window.session.model.cache.total == view.cost


def test_the_difference_map_is_in_the_budget_and_goes_with_its_pictures(
        qtbot, window, tmp_path, gate) -> None:
    gate.free.set()
    first, second = (write_jpeg(tmp_path / f"{n}.jpg", size=(96, 64), seed=n)
                     for n in (1, 2))
    done(qtbot, window, [first, second])  # both cached; the second on screen
    model, view = window.session.model, window.compare.view
    assert len(model.cache) == 2
    model.cache.budget = model.cache.total + 1  # full: nothing more fits beside them
    shown = window.session.view
    view.set_mode(DIFF)
    qtbot.waitUntil(lambda: view._diff is not None, timeout=TIMEOUT)
    heat = view._diff[2]
    assert heat is not None and heat.nbytes > 0
    # The other photo made room for the heat map; the one on screen stays.
    assert model.cache.total + heat.nbytes <= model.cache.budget
    assert model.cache.held == heat.nbytes
    assert model.cache.peek(path_key(second)) is shown
    assert model.cache.peek(path_key(first)) is None
    # Left (back to split, and another photo shown): the map goes, and with it what it
    # held of the photo it was made of; nothing is held outside the cache any more.
    view.set_mode(SPLIT)
    heat_ref = weakref.ref(heat)
    del heat
    window.open_paths([write_jpeg(tmp_path / "3.jpg", size=(96, 64), seed=3)])
    gc.collect()
    assert heat_ref() is None and view._diff is None and model.cache.held == 0


def test_a_tiled_runs_preview_is_in_the_budget(qtbot, window, tmp_path, gate) -> None:
    small = [write_jpeg(tmp_path / f"{n}.jpg", size=(96, 64), seed=n) for n in (1, 2)]
    done(qtbot, window, small)
    model = window.session.model
    assert len(model.cache) == 2
    model.cache.budget = model.cache.total + 1
    big = write_jpeg(tmp_path / "big.jpg", size=BIG, seed=4)
    with qtbot.waitSignal(window.session.tile_ready, timeout=TIMEOUT):
        window.open_paths([big])  # shown, held after its first tile
    cp = window.compare
    assert cp.preview is not None
    preview = cp.preview.picture.nbytes
    assert model.cache.total + preview <= model.cache.budget  # the oldest made room
    assert model.cache.held == preview > 0
    assert model.cache.peek(path_key(small[0])) is None
    assert model.cache.peek(path_key(small[1])) is not None
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        gate.free.set()
    assert cp.preview is None and model.cache.held == 0  # the result instead
