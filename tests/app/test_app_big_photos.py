"""Defects met driving the app with 12-24 megapixel photos: what ran on the GUI thread,
what the progress said, how long a cancel took, what memory was kept."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from rbqe.model import NUM_EXITS
from rbqe_studio import viewer
from rbqe_studio.convert import Picture
from rbqe_studio.viewer import DIFF, CompareView
from tests.helpers import tiny_enhancer

TIMEOUT = 120_000  # generous: a loaded CI machine can be very slow


def pictures(h: int = 48, w: int = 64) -> tuple[Picture, Picture]:
    a = np.zeros((h, w, 3), np.float32)
    return Picture.from_array(a), Picture.from_array(a + 0.1)


def test_the_difference_is_made_off_the_gui_thread(qtbot, monkeypatch) -> None:
    """A 12 MP heat map took the GUI thread 1.2 s: the window froze on "Difference"."""
    threads = []
    real = viewer.difference

    def spy(a: Picture, b: Picture) -> tuple[Picture, int]:
        threads.append(threading.current_thread())
        return real(a, b)

    monkeypatch.setattr(viewer, "difference", spy)
    view = CompareView()
    qtbot.addWidget(view)
    a, b = pictures()
    view.set_pictures(a, "A", b, "B")
    view.set_mode(DIFF)
    pane = view.panes[0]
    assert pane.a is None and pane.a_label == "Difference: computing…"
    qtbot.waitUntil(lambda: pane.a is not None)
    assert "largest 26/255" in pane.a_label
    assert threads and threading.main_thread() not in threads
    view.set_mode(DIFF)  # shown again: made once per pair
    assert len(threads) == 1


def test_a_difference_of_pictures_no_longer_shown_is_dropped(qtbot) -> None:
    view = CompareView()
    qtbot.addWidget(view)
    a, b = pictures()
    view.set_pictures(a, "A", b, "B")
    view.set_mode(DIFF)
    c, d = pictures()
    view.set_pictures(c, "A", d, "B")  # before the first heat map is back
    pane = view.panes[0]
    qtbot.waitUntil(lambda: pane.a is not None)
    assert view._diff is not None and view._diff[0] is c and view._diff[1] is d


# -- progress ------------------------------------------------------------------------------
@pytest.mark.parametrize("tile_exits", ["shared", "per-tile"])
def test_a_tiled_image_says_how_far_it_is_and_about_how_long_is_left(qtbot, store, jpeg,
                                                                      tmp_path,
                                                                      tile_exits) -> None:
    """The status said "sample pass 4 of 24" through the samples' whole walk, then counted
    the samples as tiles and ended on "tile pass 25 of 24"; the queue row said "Running…"
    from start to end."""
    from rbqe_studio.main_window import MainWindow
    from rbqe_studio.queue_panel import status_text

    win = MainWindow(store, lambda _spec: tiny_enhancer(tile=128, tile_exits=tile_exits),
                     check_weights=False)
    qtbot.addWidget(win)
    seen: list[tuple[str, int, int, str, str]] = []
    running: list[int] = []  # cards that said "computing…" (exit 1 did, all along)

    def record(stage: str, done: int, total: int, _left: object = None) -> None:
        item = win.session.current
        seen.append((stage, done, total, win.status.text(),
                     status_text(item) if item is not None else ""))
        if stage not in ("load", "engine"):  # before the picture is known to be tiled
            running.extend(c.index for c in win.compare.strip.cards
                           if c.data.state == "running")

    win.session.progress.connect(record)  # after the window's own slot
    with qtbot.waitSignal(win.session.view_finished, timeout=TIMEOUT):
        win.open_paths([jpeg(tmp_path / "big.jpg", size=(256, 200))])
    assert seen[0][0] == "load"
    assert seen.pop(1)[0] == "engine"  # the model made ready, once the photo is read
    tiles = [s for s in seen if s[0] == "tile"]
    # A step per exit the sample tiles walked (shared exits: until the policy stopped them);
    # the tiles' steps count on from the mode's last exit.
    walk = seen[1 : len(seen) - len(tiles)]
    assert walk and {s[0] for s in walk} == {"sample"} and tiles[0][1] == NUM_EXITS
    if tile_exits == "per-tile":  # the samples' nodes go on to exit 5, a step each
        assert len(walk) > 1
    assert all(s[3].startswith("Tiled image: trying the exits") for s in seen if
               s[0] == "sample")
    assert all(s[3].startswith("Tiled image: enhancing tile by tile · ") for s in tiles[:-1])
    assert any(s[3].endswith(" left") for s in tiles[:-1])  # once a tile has run
    assert tiles[-1][1] == tiles[-1][2] and "putting the tiles together" in tiles[-1][3]
    assert not running
    shares = [s[4] for s in seen[1:]]
    assert shares[0] == "Running… 0%" and shares[-1] == "Running… 100%"
    win.close()


# -- memory --------------------------------------------------------------------------------
def test_the_exits_are_kept_at_the_depth_they_are_saved_at(qtbot, window, jpeg,
                                                            tmp_path) -> None:
    """Each exit was kept as float32 beside its display copy: five of a 24 MP photo held
    1.4 GB. Kept as uint8 they hold a quarter of that, and save the same file."""
    from rbqe.io import load_image

    path = jpeg(tmp_path / "photo.jpg", size=(96, 64))
    window.session.mode_override = "all"
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT) as done:
        window.open_paths([path])
    view = done.args[0]
    assert [e.exit for e in view.result.exits] == list(range(1, NUM_EXITS + 1))
    assert all(e.image.dtype == np.uint8 and e.image.shape == (64, 96, 3)
               for e in view.result.exits)
    # Less than the five float32 exits alone (besides the thumbnails, which the cost
    # counts too: a small photo's are larger than it is)
    thumbs = sum(t.sizeInBytes() for t in (view.input_thumb, *view.thumbs.values()))
    assert view.cost - thumbs < 5 * 96 * 64 * 3 * 4
    target = tmp_path / "exit3.png"
    with qtbot.waitSignal(window.session.saved, timeout=TIMEOUT):
        window.session.save([3], targets={3: target})
    fresh = tiny_enhancer().enhance(load_image(path).pixels, "all").exit_result(3).image
    saved = load_image(target).pixels
    assert np.array_equal(np.round(saved * 255), np.floor(fresh.clip(0, 1) * 255 + 0.5))


# -- cancel --------------------------------------------------------------------------------
def test_stop_ends_the_viewed_images_run_and_the_background_leaves_it(qtbot, store, jpeg,
                                                                       tmp_path) -> None:
    """There was no way to stop a photo that takes minutes but to clear the whole queue
    (viewing another image only queued it again)."""
    from rbqe_studio.main_window import MainWindow
    from rbqe_studio.queue_panel import status_text
    from rbqe_studio.state import DONE, WAITING

    win = MainWindow(store, lambda _spec: tiny_enhancer(tile=128), check_weights=False)
    qtbot.addWidget(win)
    big, small = jpeg(tmp_path / "big.jpg", size=(256, 200)), jpeg(tmp_path / "small.jpg")
    assert not win.acts.stop.isEnabled()

    def stop_at_first_tile(stage: str, *_: object) -> None:
        if stage == "tile" and win.acts.stop.isEnabled():
            win.acts.stop.trigger()

    win.session.progress.connect(stop_at_first_tile)
    with qtbot.waitSignal(win.session.view_busy, timeout=TIMEOUT,
                          check_params_cb=lambda busy: not busy):
        win.open_paths([big, small])
    win.session.progress.disconnect(stop_at_first_tile)
    item, other = win.session.queue.items
    assert win.session.current is item and item.stopped and item.status == WAITING
    assert status_text(item) == "Stopped" and not win.acts.stop.isEnabled()
    assert win.compare.view.b is None and win.compare.view.b_label.startswith("Stopped")
    qtbot.waitUntil(lambda: other.status == DONE, timeout=TIMEOUT)  # the rest goes on
    qtbot.wait(200)
    assert item.status == WAITING and win.session.view.result is None  # not run again
    with qtbot.waitSignal(win.session.view_finished, timeout=TIMEOUT):
        win.acts.redo.trigger()  # Process again
    assert item.status == DONE and not item.stopped
    win.close()


def test_stopping_process_again_keeps_the_earlier_result(qtbot, store, jpeg, tmp_path) -> None:
    """Process again threw the finished result away at once; stopping the new run then
    left a blank "Stopped" image, Save disabled, though the result had been good."""
    from rbqe_studio.main_window import MainWindow
    from rbqe_studio.queue_panel import status_text
    from rbqe_studio.state import DONE

    win = MainWindow(store, lambda _spec: tiny_enhancer(tile=128), check_weights=False)
    qtbot.addWidget(win)
    big = jpeg(tmp_path / "big.jpg", size=(256, 200))
    with qtbot.waitSignal(win.session.view_finished, timeout=TIMEOUT) as first:
        win.open_paths([big])
    item = win.session.current
    before = (item.exit, item.score, item.time_ms)
    shown = first.args[0]

    def stop_at_first_tile(stage: str, *_: object) -> None:
        if stage == "tile" and win.acts.stop.isEnabled():
            win.acts.stop.trigger()

    win.session.progress.connect(stop_at_first_tile)
    with qtbot.waitSignal(win.session.view_finished, timeout=TIMEOUT) as again:
        win.acts.redo.trigger()  # Process again, stopped at its first tile
    win.session.progress.disconnect(stop_at_first_tile)
    assert again.args[0] is shown and win.session.view is shown
    assert item.status == DONE and (item.exit, item.score, item.time_ms) == before
    assert status_text(item).startswith(f"Exit {item.exit}")
    assert win.acts.save.isEnabled() and win.compare.view.b is not None
    assert "keeps its earlier result" in win.status.text()
    win.close()


def test_two_quick_setting_changes_show_the_newest(qtbot, store, jpeg, tmp_path) -> None:
    """A tiled photo runs again on a new exit mode; a second change while it ran stopped
    that run as if the user had pressed Stop: the result from before the first change
    came back ("Stopped: … keeps its earlier result") under the newest mode's label, with
    the progress bar up, and nothing ran again."""
    from rbqe_studio.main_window import MainWindow
    from rbqe_studio.state import DONE

    win = MainWindow(store, lambda _spec: tiny_enhancer(tile=128), check_weights=False)
    qtbot.addWidget(win)
    big = jpeg(tmp_path / "big.jpg", size=(256, 200))
    with qtbot.waitSignal(win.session.view_finished, timeout=TIMEOUT):
        win.open_paths([big])
    assert not win.session.view.can_rechoose  # tiled: a new mode runs it again
    mode = win.settings_panel.mode
    for first, second in (("2", "4"), ("4", "2")):
        mode.setCurrentIndex(mode.findData(first))
        mode.setCurrentIndex(mode.findData(second))  # before the first rerun's end
        qtbot.waitUntil(lambda: not win.session.view_running and win.session.view is not None
                        and win.session.view.result is not None, timeout=TIMEOUT)
        assert win.session.view.result.chosen == int(second)
        assert win.session.current.status == DONE and win.session.current.exit == int(second)
        assert "earlier result" not in win.status.text()
        qtbot.waitUntil(lambda: not win.progress.isVisible())
    win.close()
