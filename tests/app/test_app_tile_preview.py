"""A tiled photo fills in tile by tile: B shows its input with each tile done pasted over
it (labelled a preview) until the result comes; a Stop drops it; a tile of a photo no
longer on screen is not painted, and a photo viewed again mid-run shows no stale tiles."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import pytest
from PySide6.QtCore import QPointF, QRect

from rbqe.tiling import TILE_OVERLAP, tiles
from rbqe_studio.convert import Display, Picture, pyramid, qimage_to_array, to_qimage
from rbqe_studio.jobs import TilePatch
from tests.helpers import tiny_enhancer, write_jpeg

TIMEOUT = 120_000
TILE = 128
BIG = (256, 200)  # width, height: 3 x 3 tiles of 128 pixels


class Gate:
    """Holds the worker after each tile until the test lets it go on (:meth:`step`), so
    that what the window does between two tiles is seen at a known point of the run."""

    def __init__(self) -> None:
        self.steps = threading.Semaphore(0)
        self.free = threading.Event()  # no more holding
        self.tiles = 0  # tiles the worker has handed on

    def after_tile(self, cancel: Callable[[], bool] | None) -> None:
        self.tiles += 1
        # A cancel lets it go too: the window's close stops the worker and waits for it.
        while not (self.free.is_set() or (cancel is not None and cancel())
                   or self.steps.acquire(timeout=0.02)):
            pass

    def step(self) -> None:
        self.steps.release()


@pytest.fixture
def gate():
    g = Gate()
    yield g
    g.free.set()


@pytest.fixture
def factory(gate):
    """The tiny model tiling at 128 pixels, held by ``gate`` after each tile."""
    def make(_spec):
        enh = tiny_enhancer(tile=TILE)
        enhance = enh.enhance

        def gated(image, mode="auto", *, on_tile=None, cancel=None, **kwargs):
            def tile(t):
                on_tile(t)
                gate.after_tile(cancel)

            return enhance(image, mode, on_tile=None if on_tile is None else tile,
                           cancel=cancel, **kwargs)

        enh.enhance = gated
        return enh
    return make


def own_pixels(box: tuple[int, int, int, int], h: int, w: int) -> np.ndarray:
    """The pixels of tile ``box`` (a mask of its shape) no other tile overlaps."""
    cover = np.zeros((h, w), np.int32)
    for (y0, y1, x0, x1), _, _ in tiles(h, w, TILE, TILE_OVERLAP):
        cover[y0:y1, x0:x1] += 1
    y0, y1, x0, x1 = box
    return cover[y0:y1, x0:x1] == 1


def test_a_tiled_photo_fills_in_tile_by_tile_then_shows_its_result(qtbot, window, gate,
                                                                   tmp_path) -> None:
    gate.free.set()
    cp, view = window.compare, window.compare.view
    zoom: list[tuple[float, float, float]] = []

    def zoom_in(_data: object) -> None:  # once the photo is shown: 2:1 on a corner
        view.state.set_scale(2.0, view.pane_size)
        view.state.pan(300, 200)
        zoom.append((view.state.scale, view.state.center.x(), view.state.center.y()))

    seen = []

    def record(patch: TilePatch, _data: object) -> None:  # after the window's own slot
        state = view.state
        seen.append((patch, view.b is not None and view.b is getattr(cp.preview, "picture", 0),
                     view.b_label, view.b_live, (state.scale, state.center.x(),
                                                 state.center.y()),
                     qimage_to_array(view.b.levels[0]) if view.b is not None else None))

    window.session.view_loaded.connect(zoom_in)
    window.session.tile_ready.connect(record)
    photo = write_jpeg(tmp_path / "big.jpg", size=BIG, seed=4)
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT) as done:
        window.open_paths([photo])
    data = done.args[0]
    w, h = BIG
    grid = [box for box, _, _ in tiles(h, w, TILE, TILE_OVERLAP)]
    assert data.result.tiled and len(seen) == len(grid) == data.result.tiles
    shown_input = qimage_to_array(data.input_pic.levels[0])
    final = qimage_to_array(data.pictures[data.result.chosen].levels[0])
    painted = np.zeros((h, w), bool)
    for n, (patch, is_preview, label, live, state, pixels) in enumerate(seen, 1):
        assert is_preview and live and state == zoom[0]  # B, at the zoom and pan set
        assert label == f"B · Preview · {n} of {len(grid)} tiles · seams blend at the end"
        y0, y1, x0, x1 = patch.box
        painted[y0:y1, x0:x1] = True
        assert np.array_equal(pixels[y0:y1, x0:x1], qimage_to_array(patch.levels[0]))
        assert np.array_equal(pixels[~painted], shown_input[~painted])  # the rest: input
        own = own_pixels(patch.box, h, w)  # where no neighbour blends in: the result's
        assert np.array_equal(pixels[y0:y1, x0:x1][own], final[y0:y1, x0:x1][own])
    assert not np.array_equal(seen[0][5], shown_input)  # a tile did change the picture
    assert cp.preview is None and not view.b_live
    assert view.b is data.pictures[data.result.chosen]
    assert view.b_label.startswith(f"B · Exit {data.result.chosen}")
    assert (view.state.scale, view.state.center.x(), view.state.center.y()) == zoom[0]


def test_stop_drops_the_preview(qtbot, window, gate, tmp_path) -> None:
    """A tiled photo keeps nothing on a Stop: B says so, as before, and the preview goes."""
    photo = write_jpeg(tmp_path / "big.jpg", size=BIG, seed=4)
    with qtbot.waitSignal(window.session.tile_ready, timeout=TIMEOUT):
        window.open_paths([photo])  # held after its first tile
    cp = window.compare
    assert cp.preview is not None and cp.view.b is cp.preview.picture
    window.acts.stop.trigger()
    with qtbot.waitSignal(window.session.view_busy, timeout=TIMEOUT,
                          check_params_cb=lambda busy: not busy):
        gate.step()
    assert window.session.current.stopped and window.session.view.result is None
    assert cp.preview is None and cp.view.b is None and not cp.view.b_live
    assert cp.view.b_label.startswith("Stopped")


def test_a_photo_left_mid_run_paints_none_of_its_tiles(qtbot, window, gate, tmp_path,
                                                       monkeypatch) -> None:
    """Its run goes on in the background, its tiles are not painted over the photo viewed
    instead, and viewed again mid-run it shows no tiles from before, only those after."""
    small = write_jpeg(tmp_path / "small.jpg", seed=1)
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths([small])
    heard: list[list] = []  # what the session made of each tile the worker sent
    on_tile = window.session.model.on_tile
    monkeypatch.setattr(window.session.model, "on_tile",
                        lambda gen, patch: heard.append(on_tile(gen, patch)) or heard[-1])
    big = write_jpeg(tmp_path / "big.jpg", size=BIG, seed=4)
    with qtbot.waitSignal(window.session.tile_ready, timeout=TIMEOUT):
        window.open_paths([big])  # shown, held after its first tile
    cp, queue = window.compare, window.session.queue
    small_item, big_item = queue.get(small), queue.get(big)
    assert cp.preview is not None and len(heard) == 1 and heard[0]

    window.queue.select(small_item)  # done: shown at once, the big one runs on
    small_view = window.session.view
    assert small_view.path == small and cp.preview is None
    gate.step()
    qtbot.waitUntil(lambda: len(heard) == 2, timeout=TIMEOUT)
    assert heard[1] == [] and cp.preview is None and cp.data is small_view
    assert cp.view.b is small_view.pictures[small_view.result.chosen]

    window.queue.select(big_item)  # still running: caught up, without the tiles before
    assert cp.preview is None and cp.view.b is None and cp.view.b_label == "Enhancing…"
    with qtbot.waitSignal(window.session.tile_ready, timeout=TIMEOUT):
        gate.step()
    assert cp.preview is not None and cp.preview.pasted == 1 and cp.preview.done == 3
    assert cp.view.b_label.startswith("B · Preview · 3 of 9 tiles (1 shown) · ")
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        gate.free.set()
    assert cp.preview is None and cp.view.b is not None and not cp.view.b_live


def test_a_part_is_shown_as_it_is_in_the_whole_and_pasted_on_every_level(qapp) -> None:
    """A tile's pixels go through the photo's display conversion at their place in it
    (the checkerboard behind transparent pixels too), and pasted over a copy of a picture
    land where they belong on each level, the picture copied from left as it was."""
    rng = np.random.default_rng(0)
    h, w = 700, 1100  # three levels: 1100, 550, 275
    pixels = rng.random((h, w, 3), dtype=np.float32)
    alpha = rng.integers(0, 256, (h, w), dtype=np.uint8)
    display = Display.of(None, 3, alpha)
    y0, y1, x0, x1 = 136, 520, 264, 777
    whole = qimage_to_array(to_qimage(pixels, display))
    part = to_qimage(pixels[y0:y1, x0:x1], display, origin=(y0, x0))
    assert np.array_equal(qimage_to_array(part), whole[y0:y1, x0:x1])

    base = Picture.from_array(np.zeros((h, w, 3), np.float32))
    before = [qimage_to_array(level) for level in base.levels]
    preview = base.copy()
    preview.paste(pyramid(part, len(base.levels)), x0, y0)
    assert all(np.array_equal(a, qimage_to_array(b))
               for a, b in zip(before, base.levels, strict=True))
    full = qimage_to_array(preview.levels[0])
    assert np.array_equal(full[y0:y1, x0:x1], whole[y0:y1, x0:x1])
    outside = np.ones((h, w), bool)
    outside[y0:y1, x0:x1] = False
    assert not full[outside].any()
    for k, level in enumerate(preview.levels[1:], 1):  # inside the part's place: painted
        small = qimage_to_array(level)
        inner = small[y0 // 2**k + 2 : y1 // 2**k - 2, x0 // 2**k + 2 : x1 // 2**k - 2]
        assert inner.all(axis=2).mean() > 0.9
        assert not small[: y0 // 2**k - 1].any() and not small[:, : x0 // 2**k - 1].any()


def test_a_tile_repaints_its_area_and_the_label_not_the_whole_view(qtbot, window, gate,
                                                                   tmp_path) -> None:
    photo = write_jpeg(tmp_path / "big.jpg", size=BIG, seed=4)
    with qtbot.waitSignal(window.session.tile_ready, timeout=TIMEOUT):
        window.open_paths([photo])  # held after its first tile
    view = window.compare.view
    view.actual_size()  # 1:1, so that a tile covers a part of the pane only
    pane = view.panes[0]
    asked: list[tuple] = []
    real = pane.update
    pane.update = lambda *area: (asked.append(area), real(*area))[1]
    with qtbot.waitSignal(window.session.tile_ready, timeout=TIMEOUT) as second:
        gate.step()
    gate.free.set()
    assert asked and all(area for area in asked)  # never the whole pane
    patch = second.args[0]
    y0, y1, x0, x1 = patch.box
    tl = view.state.to_widget(QPointF(x0, y0), pane.view_size())
    assert any(isinstance(a[0], QRect) and a[0].contains(tl.toPoint()) for a in asked)
