"""What a reviewer met in small windows (900 x 600, 1024 x 640): the chosen exit's card
scrolled out of sight, a photo a third of the window wide, a drop zone whose texts were
cut and overlapped, an Info panel that scrolled sideways, and figures that disagreed."""

from __future__ import annotations

import math

import pytest
from PySide6.QtCore import QRect
from PySide6.QtGui import QFont, QFontMetrics, QImage
from PySide6.QtWidgets import QBoxLayout, QScrollArea

from rbqe_studio.drop_zone import FLAGS, TITLE, body_text
from rbqe_studio.exits import ExitStrip
from rbqe_studio.queue_panel import row_texts, status_text
from rbqe_studio.state import DONE, QueueItem, fmt_ms
from tests.helpers import write_jpeg

TIMEOUT = 120_000  # generous: a loaded CI machine can be very slow


def finish(qtbot, window, paths) -> object:
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT) as blocker:
        window.open_paths(paths)
    return blocker.args[0]


def fresh_window(qtbot, store, factory, width: int, height: int):
    """A window opened at ``width`` x ``height`` with no stored layout, as a user's first."""
    from rbqe_studio.main_window import MainWindow

    win = MainWindow(store, factory, check_weights=False)
    qtbot.addWidget(win)
    win.resize(width, height)
    win.show()
    qtbot.waitExposed(win)
    return win


def in_view(card) -> bool:
    return card.visibleRegion().boundingRect() == card.rect()


# -- 1: the chosen card in view ------------------------------------------------------------
def test_the_chosen_exits_card_is_scrolled_into_view(qtbot, themed, window, images) -> None:
    window.resize(900, 600)
    qtbot.waitUntil(lambda: window.width() == 900)
    strip = window.compare.strip
    window.settings_panel.threshold.setValue(1.0)  # no score reaches it: exit 5
    assert finish(qtbot, window, [images[0]]).result.chosen == 5
    scroll = strip.findChild(QScrollArea, "cardScroll")
    assert scroll.horizontalScrollBar().maximum() > 0  # the row does scroll here
    qtbot.waitUntil(lambda: in_view(strip.cards[5]))
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT) as blocker:
        window.settings_panel.threshold.setValue(0.0)  # chosen again: exit 1
    assert blocker.args[0].result.chosen == 1
    qtbot.waitUntil(lambda: in_view(strip.cards[1]))



def test_a_second_result_with_the_same_exit_scrolls_its_card_into_view(qtbot, themed, window,
                                                                       images) -> None:
    window.resize(900, 600)
    window.settings_panel.threshold.setValue(1.0)  # no score reaches it: exit 5 for both
    finish(qtbot, window, images[:2])
    strip = window.compare.strip
    qtbot.waitUntil(lambda: in_view(strip.cards[5]))
    strip.scroll.horizontalScrollBar().setValue(0)  # the user looks at the input
    assert not in_view(strip.cards[5])
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT) as blocker:
        window.queue.select(window.session.queue.items[1])
    assert blocker.args[0].result.chosen == 5
    qtbot.waitUntil(lambda: in_view(strip.cards[5]))


def test_a_narrower_strip_scrolls_the_chosen_card_back_into_view(qtbot, themed, window,
                                                                 images) -> None:
    """It was scrolled into view only when a result came: a window or centre made
    narrower afterwards left it out of sight."""
    window.resize(1600, 800)  # every card fits: the row does not scroll
    window.settings_panel.threshold.setValue(1.0)
    finish(qtbot, window, [images[0]])
    strip = window.compare.strip
    bar = strip.scroll.horizontalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() == 0)
    window.resize(900, 600)
    qtbot.waitUntil(lambda: bar.maximum() > 0)
    qtbot.waitUntil(lambda: in_view(strip.cards[5]))
    queue, centre, tabs = window.splitter.sizes()  # a narrower centre, by the splitter
    window.splitter.setSizes([queue + 150, centre - 150, tabs])
    qtbot.waitUntil(lambda: strip.scroll.viewport().width() < 400)
    qtbot.waitUntil(lambda: in_view(strip.cards[5]))


def test_the_chosen_card_is_in_view_once_the_strip_is_first_laid_out(qtbot, themed) -> None:
    """Chosen before the strip had its width: the scroll used a stale layout."""
    strip = ExitStrip()
    qtbot.addWidget(strip)
    thumb = QImage(32, 24, QImage.Format.Format_RGB32)
    thumb.fill(0x808080)
    for k in range(1, 6):
        strip.set_exit(k, thumb, 0.5, 1.0, 1.0)
    strip.set_chosen(4)
    strip.resize(500, strip.sizeHint().height())
    strip.show()
    qtbot.waitExposed(strip)
    assert strip.scroll.horizontalScrollBar().maximum() > 0
    qtbot.waitUntil(lambda: in_view(strip.cards[4]))


def test_a_users_scroll_is_kept_by_other_updates(qtbot, qapp, themed, window,
                                                 images) -> None:
    """Only a new result, a new choice or a resize brings the chosen card back."""
    window.resize(900, 600)
    window.settings_panel.threshold.setValue(1.0)
    finish(qtbot, window, [images[0]])
    strip, compare = window.compare.strip, window.compare
    qtbot.waitUntil(lambda: in_view(strip.cards[5]))
    qapp.processEvents()  # the result's own deferred scroll (after its layout) first
    strip.scroll.horizontalScrollBar().setValue(0)
    window._on_progress("exit", 2, 5, None)  # what a run reports
    compare.pick(1, "a")  # a card clicked: the sides change
    strip.set_mode_text("Mode: auto (from the weights)")
    strip.set_threshold(0.5, "yours")
    strip.update()
    qtbot.wait(50)
    assert strip.scroll.horizontalScrollBar().value() == 0
    assert in_view(strip.cards[0]) and not in_view(strip.cards[5])


# -- 2: the first split follows the window's width -----------------------------------------
@pytest.mark.parametrize("width, height", ((900, 600), (1024, 640)))
def test_a_small_window_opens_with_the_photo_at_half_its_width(qtbot, themed, store, factory,
                                                               width, height) -> None:
    """The side panels opened 230 and 310 px wide whatever the window: at 900 px the
    photo had 339 px; the queue's buttons side by side kept it from being narrower."""
    win = fresh_window(qtbot, store, factory, width, height)
    queue, centre, tabs = win.splitter.sizes()
    assert centre >= 0.52 * width, win.splitter.sizes()
    assert queue < 230 and tabs < 310
    # One above the other, each whole (once the layout has settled).
    qtbot.waitUntil(lambda: all(b.width() >= b.sizeHint().width()
                                for b in win.queue.buttons.buttons))
    assert win.queue.buttons.box.direction() == QBoxLayout.Direction.TopToBottom
    win.close()


def test_the_default_window_keeps_its_layout(qtbot, themed, store, factory) -> None:
    win = fresh_window(qtbot, store, factory, 1280, 800)
    queue, _, tabs = win.splitter.sizes()
    assert (queue, tabs) == (win.queue.roomy_width(), 310)
    assert win.queue.buttons.box.direction() == QBoxLayout.Direction.LeftToRight
    win.close()


def test_a_stored_split_is_kept(qtbot, themed, store, factory) -> None:
    win = fresh_window(qtbot, store, factory, 1280, 800)
    win.splitter.setSizes([300, 600, 372])
    sizes = win.splitter.sizes()
    win.close()
    again = fresh_window(qtbot, store, factory, 1280, 800)
    assert again.splitter.sizes() == sizes
    again.close()


# -- 3: the drop zone's texts --------------------------------------------------------------
@pytest.mark.parametrize("width, height", ((900, 600), (1024, 640), (1280, 800)))
def test_the_drop_zones_texts_wrap_and_never_overlap(qtbot, themed, store, factory, width,
                                                     height) -> None:
    win = fresh_window(qtbot, store, factory, width, height)
    zone = win.drop_zone
    title, body = zone.text_rects()
    files = zone.files.geometry()
    assert title.left() >= 40 and title.right() <= zone.width() - 40  # inside the box
    assert title.bottom() <= body.top() and body.bottom() <= files.top()
    assert title.top() >= 40
    # Each box holds its text wrapped at its width.
    whole = QRect(0, 0, int(title.width()), 100_000)
    assert QFontMetrics(zone.title_font()).boundingRect(whole, FLAGS, TITLE).height() \
        <= title.height()
    assert zone.fontMetrics().boundingRect(whole, FLAGS, body_text()).height() <= body.height()
    win.close()


def test_the_drop_zone_says_how_auto_decides() -> None:
    """It said auto stops "at the first of five exits whose quality is good enough":
    untrue under the default learned gate."""
    text = body_text()
    assert "good enough" not in text and "would not gain enough" in text
    assert "learned exit gate decides by default" in text


# -- 4: a long file name in the Info panel -------------------------------------------------
def test_a_long_file_name_does_not_scroll_the_info_panel(qtbot, themed, window,
                                                         tmp_path) -> None:
    name = "second_photo_with_a_rather_long_file_name_without_any_spaces_q40.jpg"
    path = write_jpeg(tmp_path / name)
    window.resize(1280, 800)
    window.tabs.setCurrentWidget(window.info)
    finish(qtbot, window, [path])
    window.splitter.setSizes([240, 1280 - 240 - 300, 300])
    qtbot.waitUntil(lambda: window.tabs.width() == 300)
    info = window.info
    qtbot.waitUntil(lambda: info.widget().width() <= info.viewport().width())
    assert info.horizontalScrollBar().maximum() == 0
    assert info.fields["File"].text() == name and info.fields["File"].toolTip() == str(path)
    info.set_engine({"weights": str(tmp_path / "a_very_long_weights_file_name_that_goes_on"
                                                 "_and_on.safetensors"), "device": "cpu"})
    qtbot.waitUntil(lambda: info.widget().width() <= info.viewport().width())
    assert info.horizontalScrollBar().maximum() == 0


# -- 5: the per-stage table ----------------------------------------------------------------
def test_the_per_stage_table_is_per_stage_and_the_cards_cumulative(qtbot, window,
                                                                   images) -> None:
    """Its Time was each stage's own, its GMAC the cards' cumulative figure."""
    window.session.mode_override = "all"
    view = finish(qtbot, window, [images[0]])
    r = view.result
    table, cards = window.info.table, window.compare.strip.cards
    for e in r.exits:
        row = e.exit - 1
        own = e.gmacs - (r.exit_result(e.exit - 1).gmacs if e.exit > 1 else 0.0)
        assert table.item(row, 2).text() == f"{own:.1f}"
        assert table.item(row, 0).text() == fmt_ms(e.time_ms + e.iqa_ms)
        assert cards[e.exit].data.lines[1].startswith("Σ")
    # The card's Σ: the stages up to it.
    for e in r.exits:
        assert math.isclose(sum(view.stage_gmacs(k) for k in range(1, e.exit + 1)), e.gmacs)
    assert "cumulative" in table.horizontalHeaderItem(2).toolTip()


# -- 6: a result's time stays the same ------------------------------------------------------
def test_a_results_time_is_the_same_after_compute_all(qtbot, window, images) -> None:
    """402 ms before "Compute all exits", 368 ms after: the other time was dropped."""
    window.settings_panel.threshold.setValue(0.0)  # exit 1 stops: exits 2-5 to compute
    finish(qtbot, window, [images[0]])
    item = window.session.queue.items[0]
    before, total, status = item.time_ms, window.info.fields["Total"].text(), \
        window.status.text()
    assert item.exit == 1
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT) as blocker:
        window.session.compute_all()
    assert len(blocker.args[0].result.exits) == 5
    assert item.time_ms == before and item.exit == 1
    assert window.info.fields["Total"].text() == total
    assert window.status.text() == status


# -- 7: the threshold only where it applies ------------------------------------------------
def test_a_forced_exit_shows_no_threshold(qtbot, window, images) -> None:
    finish(qtbot, window, [images[0]])
    strip, panel = window.compare.strip, window.settings_panel
    assert strip.threshold_label.text().startswith("Threshold")
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        panel.mode.setCurrentIndex(panel.mode.findData("2"))
    assert strip.threshold_label.text() == "Forced exit 2"
    assert "Threshold" not in strip.mode_label.text()
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        panel.mode.setCurrentIndex(panel.mode.findData("auto"))
    assert strip.threshold_label.text().startswith("Threshold")


def test_the_settings_show_the_photos_scores(qtbot, window, images) -> None:
    window.session.mode_override = "all"
    r = finish(qtbot, window, [images[0]]).result
    panel = window.settings_panel
    scores = [e.score for e in r.exits]
    assert f"{min(scores):.3f}–{max(scores):.3f}" in panel.score_range.text()
    assert panel.score_range.isVisibleTo(panel)
    window.clear_queue()
    assert not panel.score_range.isVisibleTo(panel)


# -- smaller: a queue row keeps its end ----------------------------------------------------
def test_a_narrow_queue_row_keeps_the_end_of_its_status(tmp_path) -> None:
    item = QueueItem(tmp_path / "photo.jpg", DONE, exit=5, score=0.818, time_ms=767.0,
                     stale=True)
    fm = QFontMetrics(QFont())
    # Narrower, it drops the word "score", then the score, then the time, then is cut
    # in the middle.
    texts = [status_text(item, short) for short in (0, 1, 2, 3)]
    assert texts[1:] == ["Exit 5 · 0.818 · 767 ms · earlier mode",
                         "Exit 5 · 767 ms · earlier mode", "Exit 5 · earlier mode"]
    for text in texts:
        assert row_texts(item, fm, fm, fm.horizontalAdvance(text) + 1)[1] == text
    _, line = row_texts(item, fm, fm, fm.horizontalAdvance(texts[3]) * 4 // 5)
    assert "…" in line and line.startswith("Exit") and line.endswith("mode")


def test_the_engine_device_is_said_once_when_the_results(qtbot, window, images) -> None:
    finish(qtbot, window, [images[0]])
    info = window.info
    qtbot.waitUntil(lambda: info.fields["Engine device"].text() != "–")
    assert info.fields["Device"].text() == info.fields["Engine device"].text() == "cpu"
    assert not info.fields["Engine device"].isVisibleTo(info)
    info.set_engine({"weights": "w.safetensors", "device": "cuda:0"})
    assert info.fields["Engine device"].isVisibleTo(info)
    assert info.keys["Engine device"].isVisibleTo(info)


def test_a_long_status_is_cut_in_its_middle_not_its_end(qtbot, window, images) -> None:
    # A long file name cut the end off: the exit, the score and the time were lost.
    view = finish(qtbot, window, [images[0]])
    name = "a very long name of a scanned holiday photograph from the family archive " * 3
    window.show_message(f"{name}.jpg: exit 3 of 5, score 0.697, 55 ms")
    window.resize(700, 500)
    qtbot.waitUntil(lambda: window.status.width() < 700)
    shown = window.status.shown_text()
    assert "…" in shown and shown.endswith("score 0.697, 55 ms"), shown
    assert shown.startswith("a very long name")
    assert window.status.toolTip().endswith("score 0.697, 55 ms")  # whole, for the mouse
    assert view is not None


def test_a_multi_line_status_is_said_on_one_line(qtbot, window) -> None:
    # A torch error's message runs over lines: drawn as two half-cut lines in one.
    window.show_message("Unexpected error: RuntimeError: first line\n  second line", error=True)
    assert window.status.text() == "Unexpected error: RuntimeError: first line second line"
