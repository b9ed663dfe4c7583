"""A tiled photo fills in tile by tile: B shows its input with each tile done pasted over
it (labelled a preview) until the result comes; a Stop drops it; a tile of a photo no
longer on screen is not painted, and a photo viewed again mid-run shows no stale tiles."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
from PySide6.QtCore import QPointF, QRect

from rbqe.tiling import TILE_OVERLAP, tiles
from rbqe_studio import worker as worker_mod
from rbqe_studio.compare_panel import PREVIEW_TIP
from rbqe_studio.convert import Display, Picture, pyramid, qimage_to_array, to_qimage
from rbqe_studio.jobs import TilePatch
from rbqe_studio.state import path_key
from tests.helpers import tiny_enhancer, write_jpeg

TIMEOUT = 120_000
TILE = 128
BIG = (256, 200)  # width, height: 3 x 3 tiles of 128 pixels


@pytest.fixture
def factory(gate, tile_exits):
    """The tiny model tiling at 128 pixels, held by ``gate`` after each tile."""
    def make(_spec):
        enh = tiny_enhancer(tile=TILE, tile_exits=tile_exits)
        assert enh.tile_exits == tile_exits
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


@pytest.mark.parametrize("tile_exits", ["shared", "per-tile"])
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
        assert view.toolTip() == PREVIEW_TIP  # the label's explanation
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
        assert label == f"B · Preview · {n}/{len(grid)} tiles"
        y0, y1, x0, x1 = patch.box
        painted[y0:y1, x0:x1] = True
        assert np.array_equal(pixels[y0:y1, x0:x1], qimage_to_array(patch.levels[0]))
        assert np.array_equal(pixels[~painted], shown_input[~painted])  # the rest: input
        own = own_pixels(patch.box, h, w)  # where no neighbour blends in: the result's
        assert np.array_equal(pixels[y0:y1, x0:x1][own], final[y0:y1, x0:x1][own])
    assert not np.array_equal(seen[0][5], shown_input)  # a tile did change the picture
    assert cp.preview is None and not view.b_live and not view.toolTip()
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


def spy_tile_patch(monkeypatch) -> list[tuple[str, int, bool, bool]]:
    """The worker's tile conversions, as they are made: the photo's name, the tile's
    count, whether it came with a base, and whether it was made off the GUI thread."""
    calls: list[tuple[str, int, bool, bool]] = []
    real = worker_mod.tile_patch

    def spy(view, tile, *args, **kwargs):
        patch = real(view, tile, *args, **kwargs)
        calls.append((view.path.name, tile.done, patch.base is not None,
                      threading.current_thread() is not threading.main_thread()))
        return patch

    monkeypatch.setattr(worker_mod, "tile_patch", spy)
    return calls


def test_a_photo_left_mid_run_converts_none_of_its_tiles(qtbot, window, gate, tmp_path,
                                                         monkeypatch) -> None:
    """Its run goes on in the background without converting its tiles for a preview
    nobody sees; viewed again mid-run it shows no tiles from before, only those after,
    painted over a base the worker made with the first of them."""
    small = write_jpeg(tmp_path / "small.jpg", seed=1)
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths([small])
    calls = spy_tile_patch(monkeypatch)
    big = write_jpeg(tmp_path / "big.jpg", size=BIG, seed=4)
    with qtbot.waitSignal(window.session.tile_ready, timeout=TIMEOUT):
        window.open_paths([big])  # shown, held after its first tile
    cp, queue = window.compare, window.session.queue
    small_item, big_item = queue.get(small), queue.get(big)
    assert cp.preview is not None and calls == [("big.jpg", 1, True, True)]

    window.queue.select(small_item)  # done: shown at once, the big one runs on
    small_view = window.session.view
    assert small_view.path == small and cp.preview is None
    gate.step()
    qtbot.waitUntil(lambda: gate.tiles == 2, timeout=TIMEOUT)  # its second tile: unmade
    qtbot.wait(50)
    assert len(calls) == 1 and cp.preview is None and cp.data is small_view
    assert cp.view.b is small_view.pictures[small_view.result.chosen]

    window.queue.select(big_item)  # still running: caught up, without the tiles before
    assert cp.preview is None and cp.view.b is None and cp.view.b_label == "Enhancing…"
    with qtbot.waitSignal(window.session.tile_ready, timeout=TIMEOUT) as third:
        gate.step()
    assert third.args[0].base is not None  # made in the worker, with the tile
    assert calls[1:] == [("big.jpg", 3, True, True)]
    assert cp.preview is not None and cp.preview.pasted == 1 and cp.preview.done == 3
    assert cp.preview.picture is third.args[0].base
    assert cp.view.b_label == "B · Preview · 3/9 tiles (1 shown)"
    with qtbot.waitSignal(window.session.tile_ready, timeout=TIMEOUT) as fourth:
        gate.step()
    assert fourth.args[0].base is None and calls[2] == ("big.jpg", 4, False, True)
    assert cp.view.b_label == "B · Preview · 4/9 tiles (2 shown)"
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        gate.free.set()
    assert cp.preview is None and cp.view.b is not None and not cp.view.b_live


def test_a_background_photo_converts_no_tile(qtbot, window, gate, tmp_path,
                                             monkeypatch) -> None:
    """A tiled photo the background enhances while another is viewed: none of its tiles
    is converted for the preview (nor its input copied for one)."""
    gate.free.set()
    calls = spy_tile_patch(monkeypatch)
    small = write_jpeg(tmp_path / "a_small.jpg", seed=1)
    big = write_jpeg(tmp_path / "b_big.jpg", size=BIG, seed=4)
    window.open_paths([small, big])
    queue = window.session.queue
    qtbot.waitUntil(lambda: len(queue.items) == 2
                    and all(i.status == "done" for i in queue.items), timeout=TIMEOUT)
    assert window.session.current is queue.get(small)
    big_view = window.session.model.cache.peek(path_key(big))
    assert big_view is not None and big_view.result.tiled and gate.tiles == 9
    assert calls == []


@pytest.mark.parametrize("how", ["process again", "exit mode"])
def test_a_superseded_run_takes_its_preview_with_it(qtbot, window, gate, tmp_path,
                                                    how) -> None:
    """Process again, or a new exit mode, mid-run: the old run's preview goes at once
    (it stayed, "1 of 9 tiles", until the new run's input came); the new run's tiles
    make a preview of their own."""
    photo = write_jpeg(tmp_path / "big.jpg", size=BIG, seed=4)
    with qtbot.waitSignal(window.session.tile_ready, timeout=TIMEOUT):
        window.open_paths([photo])  # held after its first tile
    cp = window.compare
    old = cp.preview
    assert old is not None and cp.view.b is old.picture
    if how == "process again":
        window.session.reprocess_current()
    else:
        window.settings.exit_mode = "3"
        window.session.setting_changed("exit_mode")
    assert cp.preview is None and cp.view.b is None and not cp.view.b_live
    assert cp.view.b_label == "Enhancing…" and not cp.view.toolTip()
    with qtbot.waitSignal(window.session.tile_ready, timeout=TIMEOUT):
        pass  # the old run sees its cancel in the gate; the new run's first tile
    assert cp.preview is not None and cp.preview is not old
    assert cp.view.b_label == "B · Preview · 1/9 tiles"
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT) as done:
        gate.free.set()
    assert cp.preview is None and done.args[0].result is not None


def test_a_preview_that_fails_fails_not_the_photo(qtbot, window, gate, tmp_path,
                                                  monkeypatch, caplog) -> None:
    """A tile that cannot be converted for the preview: said once in the log, no more
    previews for the run, and the photo is enhanced all the same."""
    gate.free.set()
    real = worker_mod.tile_patch
    made = [0]

    def fails_second(view, tile, *args, **kwargs):
        made[0] += 1
        if made[0] == 2:
            raise ValueError("no pixels today")
        return real(view, tile, *args, **kwargs)

    monkeypatch.setattr(worker_mod, "tile_patch", fails_second)
    shown: list[int] = []
    window.session.tile_ready.connect(lambda patch, _data: shown.append(patch.done))
    photo = write_jpeg(tmp_path / "big.jpg", size=BIG, seed=4)
    with caplog.at_level(logging.ERROR, logger="rbqe_studio.worker"), \
            qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT) as done:
        window.open_paths([photo])
    data = done.args[0]
    assert data.result is not None and data.result.tiled and data.result.tiles == 9
    assert window.session.current.status == "done" and not window.session.current.error
    assert shown == [1] and made[0] == 2  # none tried after the failure
    said = [r for r in caplog.records if r.name == "rbqe_studio.worker"]
    assert len(said) == 1 and "big.jpg" in said[0].getMessage()
    assert window.compare.preview is None
    assert window.compare.view.b is data.pictures[data.result.chosen]


def test_a_new_base_starts_the_preview_over(qtbot, window, gate, tmp_path) -> None:
    """A patch with a base (a retry's first tile after running out of memory, cut on a
    new grid) starts a new preview: the first attempt's tiles go."""
    photo = write_jpeg(tmp_path / "big.jpg", size=BIG, seed=4)
    with qtbot.waitSignal(window.session.tile_ready, timeout=TIMEOUT) as first:
        window.open_paths([photo])  # held after its first tile
    cp = window.compare
    data = cp.data
    shown_input = qimage_to_array(data.input_pic.levels[0])
    y0, y1, x0, x1 = first.args[0].box
    painted = qimage_to_array(cp.preview.picture.levels[0])
    assert not np.array_equal(painted[y0:y1, x0:x1], shown_input[y0:y1, x0:x1])

    box = (100, 200, 120, 256)  # the retry's first tile, on a grid of four
    part = to_qimage(np.ones((100, 136, 3), np.float32), data.display, origin=(100, 120))
    retry = TilePatch(box, 1, pyramid(part, len(data.input_pic.levels)), 1, 4,
                      data.input_pic.copy())
    cp.add_tile(retry, data)
    assert cp.preview is not None and cp.preview.picture is retry.base
    assert (cp.preview.done, cp.preview.total, cp.preview.pasted) == (1, 4, 1)
    assert cp.view.b is retry.base and cp.view.b_label == "B · Preview · 1/4 tiles"
    now = qimage_to_array(cp.view.b.levels[0])
    outside = np.ones(now.shape[:2], bool)
    outside[100:200, 120:256] = False
    assert np.array_equal(now[outside], shown_input[outside])  # the first tile: gone
    assert (now[100:200, 120:256] == 255).all()
    gate.free.set()


def test_pane_labels_fit_their_pane(qtbot, window, gate, tmp_path) -> None:
    """A label wider than its pane is elided; in a split, A's and B's never overlap."""
    photo = write_jpeg(tmp_path / "big.jpg", size=BIG, seed=4)
    with qtbot.waitSignal(window.session.tile_ready, timeout=TIMEOUT):
        window.open_paths([photo])
    gate.free.set()
    pane = window.compare.view.panes[0]
    pic = window.compare.data.input_pic
    for width in (900, 420, 200):
        pane.resize(width, 300)
        for a_label, b_label in (("A · Input", "B · Preview · 7/20 tiles (3 shown)"),
                                 ("A · Exit 2 · 0.651", "B · " + "very long " * 40),
                                 ("A · " + "long " * 60, "B · Exit 1")):
            pane.set_content(pic, a_label, pic, b_label, split=0.5)
            a_box, b_box = pane._label_boxes()
            for box in (a_box, b_box):
                assert pane.rect().contains(box), (width, box)
            assert not a_box.intersects(b_box), (width, a_label, b_label)
            pane.set_content(pic, b_label)  # one label: the pane's width
            (box,) = pane._label_boxes()
            assert pane.rect().contains(box)


# An even part lands on each level's pixels as the whole's halving puts it; an odd one
# (513 wide) is drawn half a level pixel wider than its halved copy, and on noise that
# resampling differs from the whole's (a part a pixel off differs by about 85 on average).
@pytest.mark.parametrize("x1,most,mean", [(776, 2, 0.5), (777, 255, 16)])
def test_a_part_is_shown_as_it_is_in_the_whole_and_pasted_on_every_level(
        qapp, x1, most, mean) -> None:
    """A tile's pixels go through the photo's display conversion at their place in it
    (the checkerboard behind transparent pixels too), and pasted over a copy of a picture
    land where they belong on each level, the picture copied from left as it was."""
    rng = np.random.default_rng(0)
    h, w = 700, 1100  # three levels: 1100, 550, 275
    pixels = rng.random((h, w, 3), dtype=np.float32)
    alpha = rng.integers(0, 256, (h, w), dtype=np.uint8)
    display = Display.of(None, 3, alpha)
    y0, y1, x0 = 136, 520, 264
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
    # Each level as the picture of the same composite would have it (the part over
    # black, halved as often), but for the part's rim, where the halving blends the
    # part with its neighbours in the one and not in the other.
    composite = np.zeros((h, w, 3), np.uint8)
    composite[y0:y1, x0:x1] = whole[y0:y1, x0:x1]
    expected = pyramid(to_qimage(composite.astype(np.float32) / 255), len(base.levels))
    assert len(preview.levels) == len(expected) == 3
    for k, (level, want) in enumerate(zip(preview.levels, expected, strict=True)):
        got, want_px = qimage_to_array(level), qimage_to_array(want)
        assert got.shape == want_px.shape
        s = 2**k
        rim = 1 if k else 0  # a pixel of the level each way
        inner = np.zeros(got.shape[:2], bool)
        inner[y0 // s + rim : y1 // s - rim, x0 // s + rim : x1 // s - rim] = True
        diff = np.abs(got.astype(int) - want_px.astype(int)).max(axis=2)
        assert diff[inner].max() <= most and diff[inner].mean() <= mean, \
            (k, diff[inner].max(), diff[inner].mean())
        away = np.ones_like(inner)  # and nothing painted away from it
        away[max(0, y0 // s - 1) : y1 // s + 1, max(0, x0 // s - 1) : x1 // s + 1] = False
        assert not got[away].any()


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


# -- what says which exit the tiles take ---------------------------------------------------
def combo_texts(combo) -> list[str]:
    return [combo.itemText(i) for i in range(combo.count())]


def running_cards(window) -> list[tuple[int, str]]:
    return [(c.index, c.data.state) for c in window.compare.strip.cards
            if c.data.state in ("running", "tiling")]


def test_b_combo_says_preview_while_b_shows_one(qtbot, window, gate, tmp_path) -> None:
    """It said "Input" while B showed the tiles; the user's pick of the input there
    still shows the input, and the preview item brings the preview back."""
    cp, combo = window.compare, window.compare.combo_b
    photo = write_jpeg(tmp_path / "big.jpg", size=BIG, seed=4)
    with qtbot.waitSignal(window.session.tile_ready, timeout=TIMEOUT) as first:
        window.open_paths([photo])  # held after its first tile
    k = first.args[0].exit
    assert combo.currentText() == f"Preview (exit {k})"
    assert combo_texts(combo)[-1] == f"Preview (exit {k})" and combo.count() == 7
    assert cp.strip.cards[0].side == "a"  # the input's card is not B's
    combo.activated.emit(0)  # the input, picked: it wins
    assert cp.view.b is cp.data.input_pic and cp.view.b_label == "B · Input"
    assert cp.strip.cards[0].side == "ab"
    assert combo.currentText() == "Input" and combo.count() == 7
    with qtbot.waitSignal(window.session.tile_ready, timeout=TIMEOUT):
        gate.step()
    assert cp.view.b is cp.data.input_pic and combo.currentText() == "Input"
    combo.activated.emit(6)  # the preview again
    assert cp.view.b is cp.preview.picture and cp.view.b_live
    assert combo.currentText() == f"Preview (exit {k})"
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT) as done:
        gate.free.set()
    chosen = done.args[0].result.chosen
    assert combo.currentText() == f"Exit {chosen}" and combo.count() == 6
    assert not any(t.startswith("Preview") for t in combo_texts(combo))


@pytest.mark.parametrize("how", ["stop", "process again"])
def test_b_combo_leaves_no_preview_item_behind(qtbot, window, gate, tmp_path, how) -> None:
    photo = write_jpeg(tmp_path / "big.jpg", size=BIG, seed=4)
    with qtbot.waitSignal(window.session.tile_ready, timeout=TIMEOUT):
        window.open_paths([photo])
    combo = window.compare.combo_b
    assert combo.currentText().startswith("Preview")
    if how == "stop":
        window.acts.stop.trigger()
        with qtbot.waitSignal(window.session.view_busy, timeout=TIMEOUT,
                              check_params_cb=lambda busy: not busy):
            gate.step()
    else:
        window.session.reprocess_current()
    assert combo.currentText() == "Input" and combo_texts(combo) == [
        "Input", *(f"Exit {k}" for k in range(1, 6))]
    gate.free.set()


@pytest.mark.parametrize("tile_exits", ["shared", "per-tile"])
def test_the_tiles_exit_card_says_how_far_the_run_is(qtbot, window, gate, tmp_path) -> None:
    """Every card said "not computed" for the whole run, and the Info panel's chosen exit
    "–": nothing said which exit was being computed. A tile's progress line no longer
    wipes it; its end leaves no card running."""
    gate.free.set()
    strip, info = window.compare.strip, window.info
    seen: list[tuple] = []
    after_progress: list[list[tuple[int, str]]] = []

    def record(patch: TilePatch, _data: object) -> None:  # after the window's own slot
        card = strip.cards[patch.exit]
        card.set_compact(True)
        compact = [p.text for p in card.compact_parts() if p.kind == "note"]
        card.set_compact(False)
        seen.append((patch.exit, patch.done, patch.total, card.data.state, card.data.tiles,
                     card.note(), compact, set(running_cards(window)),
                     info.fields["Chosen exit"].text()))

    def progress(stage: str, *_args: object) -> None:
        if stage == "tile" and seen:
            after_progress.append(running_cards(window))

    window.session.tile_ready.connect(record)
    window.session.progress.connect(progress)
    photo = write_jpeg(tmp_path / "big.jpg", size=BIG, seed=4)
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths([photo])
    assert len(seen) == 9
    exits: set[int] = set()
    for k, done, total, state, tiles_, note, compact, running, chosen in seen:
        exits.add(k)
        assert (state, tiles_) == ("tiling", (done, total))
        assert note == f"computing…\n{done} of {total} tiles"
        assert compact == [f"computing…\n{done}/{total} tiles"]
        assert running == {(e, "tiling") for e in exits}  # the others keep their state
        which = f"Exit {k}" if len(exits) == 1 else "Exits"
        assert chosen.startswith(which) and chosen.endswith(
            f"(tiles running: {done} of {total})")
    assert after_progress and all(after_progress)  # a tile's progress wipes none
    assert running_cards(window) == []
    assert not window.info.fields["Chosen exit"].text().endswith("tiles running")


def test_stop_leaves_no_card_running(qtbot, window, gate, tmp_path) -> None:
    photo = write_jpeg(tmp_path / "big.jpg", size=BIG, seed=4)
    with qtbot.waitSignal(window.session.tile_ready, timeout=TIMEOUT) as first:
        window.open_paths([photo])
    with qtbot.waitSignal(window.session.tile_ready, timeout=TIMEOUT):
        gate.step()
    card = window.compare.strip.cards[first.args[0].exit]
    assert card.data.state == "tiling" and card.data.tiles == (2, 9)
    assert window.info.fields["Chosen exit"].text().endswith("(tiles running: 2 of 9)")
    window.acts.stop.trigger()
    with qtbot.waitSignal(window.session.view_busy, timeout=TIMEOUT,
                          check_params_cb=lambda busy: not busy):
        gate.step()
    assert running_cards(window) == []
    assert window.info.fields["Chosen exit"].text() == "–"


def test_a_card_tiling_when_the_result_comes_says_why_not_computed(qapp) -> None:
    """Per-tile exits: a tile's exit need not be the result's; its card says it was not
    needed (after the chosen exit) or not computed, not "computing…"."""
    from rbqe_studio.exits import ExitStrip

    strip = ExitStrip()
    strip.set_tiles(3, 1, 9)
    strip.set_tiles(5, 2, 9)
    assert [c.data.tiles for c in strip.cards[3::2]] == [(2, 9), (2, 9)]  # both in step
    strip.set_chosen(4)
    assert [(c.data.state, c.data.tiles) for c in strip.cards[3::2]] == [
        ("empty", None), ("skipped", None)]
    strip.set_tiles(2, 1, 9)
    strip.set_stopped()
    assert strip.cards[2].data.state == "stopped" and strip.cards[2].data.tiles is None


def test_tiles_at_several_exits_are_named_together(qapp) -> None:
    """Per-tile exits: B's combo box and the Info panel name every exit the tiles took."""
    from rbqe_studio.compare_panel import TilePreview
    from rbqe_studio.info_panel import InfoPanel

    preview = TilePreview(Picture.from_array(np.zeros((8, 8, 3), np.float32)), exits={3, 4})
    assert preview.name == "Preview (exits 3–4)"
    info = InfoPanel()
    info.show_tiles({4, 3}, 7, 20)
    assert info.fields["Chosen exit"].text() == "Exits 3–4 (tiles running: 7 of 20)"
    info.end_tiles()
    assert info.fields["Chosen exit"].text() == "–"
