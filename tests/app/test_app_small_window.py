"""The photo in a short window: at 900 x 600 the compare view was 487 x 198 px, shorter
than the exit strip below it (its header on two lines and 190-px cards). A short compare
panel now gets a compact strip; a tall one keeps the strip as it was."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, QRectF, Qt
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from rbqe_studio.exits import (
    CARD_HEIGHT,
    CARD_MIN_HEIGHT,
    LINE,
    THUMB_MIN,
    fit_text,
    text_room,
)
from tests.helpers import write_jpeg

TIMEOUT = 120_000  # generous: a loaded CI machine can be very slow
SHARE = 0.55  # of the compare panel's height, the photo's at least in a short window


def open_window(qtbot, store, factory, folder: Path, width: int, height: int):
    """A window as a user first opens it (no stored layout), showing a photo's five
    exits."""
    from rbqe_studio.main_window import MainWindow

    win = MainWindow(store, factory, check_weights=False)
    win._confirm_quit = lambda: True
    qtbot.addWidget(win)
    win.resize(width, height)
    win.show()
    qtbot.waitExposed(win)
    path = write_jpeg(folder / "in" / "photo.jpg", size=(96, 64))
    win.session.mode_override = "all"  # every card filled, to click
    with qtbot.waitSignal(win.session.view_finished, timeout=TIMEOUT):
        win.open_paths([path])
    resize(qtbot, win, width, height)
    return win


def resize(qtbot, win, width: int, height: int) -> None:
    win.resize(width, height)
    qtbot.waitUntil(lambda: (win.width(), win.height()) == (width, height))
    for _ in range(3):  # a new header line asks for one more layout (queued)
        QApplication.processEvents()
        qtbot.wait(20)


def photo_share(win) -> float:
    compare = win.compare
    return compare.view.height() / compare.height()


def drag_handle(qtbot, splitter, dy: int) -> None:
    handle = splitter.handle(1)
    start = handle.rect().center()
    QTest.mousePress(handle, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     start)
    for i in range(1, 11):
        QTest.mouseMove(handle, QPoint(start.x(), start.y() + dy * i // 10))
    QTest.mouseRelease(handle, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                       QPoint(start.x(), start.y() + dy))
    QApplication.processEvents()


def header_clear_of_cards(strip) -> bool:
    """The header's shown widgets sit above the cards, none over another."""
    top = strip.scroll.geometry().top()
    shown = [w for w in (strip.title, strip.threshold_label, strip.compute_button)
             if w.isVisible()]
    rects = [w.geometry().translated(w.parentWidget().mapTo(strip, QPoint(0, 0)))
             for w in shown]
    return all(r.bottom() < top for r in rects) and not any(
        a.intersects(b) for i, a in enumerate(rects) for b in rects[i + 1:])


def test_a_short_window_gives_the_photo_most_of_the_height(qtbot, themed, store, factory,
                                                           tmp_path) -> None:
    win = open_window(qtbot, store, factory, tmp_path, 900, 600)
    compare, strip = win.compare, win.compare.strip
    assert photo_share(win) >= SHARE - 0.005, compare.splitter.sizes()
    assert compare.view.height() > strip.height()
    # The strip still works: every card whole in height, the chosen one in view and
    # clickable, the rule in full, nothing drawn over anything else.
    assert strip.compact
    assert all(CARD_MIN_HEIGHT <= c.height() < CARD_HEIGHT for c in strip.cards)
    assert strip.scroll.geometry().bottom() < strip.height()
    chosen = strip.cards[strip.chosen]
    qtbot.waitUntil(lambda: chosen.visibleRegion().boundingRect() == chosen.rect())
    label = strip.threshold_label
    assert label.fontMetrics().horizontalAdvance(label.text()) <= label.width()
    assert strip.compute_button.isVisible() and header_clear_of_cards(strip)
    other = next(k for k in compare.exits if k != compare.b)
    qtbot.mouseClick(strip.cards[other], Qt.MouseButton.LeftButton)
    assert compare.b == other
    win.close()


def test_the_strip_is_as_before_in_a_roomy_window(qtbot, themed, store, factory,
                                                  tmp_path) -> None:
    win = open_window(qtbot, store, factory, tmp_path, 1280, 800)
    strip = win.compare.strip

    def as_before() -> None:  # (this test passes on the strip before compact ones too)
        assert not strip.rule_below and strip.title.isVisible()
        assert all(c.height() == CARD_HEIGHT for c in strip.cards)
        assert strip.scroll.height() == CARD_HEIGHT + 16
        assert strip.height() == strip.sizeHint().height()
        assert header_clear_of_cards(strip)
        assert photo_share(win) > SHARE

    as_before()
    resize(qtbot, win, 900, 600)  # smaller and back: as it was
    resize(qtbot, win, 1280, 800)
    as_before()
    win.close()


def test_the_strip_drags_down_to_compact_never_to_nothing(qtbot, themed, store, factory,
                                                          tmp_path) -> None:
    win = open_window(qtbot, store, factory, tmp_path, 1280, 800)
    compare, strip = win.compare, win.compare.strip
    full = strip.height()
    drag_handle(qtbot, compare.splitter, 60)
    qtbot.waitUntil(lambda: strip.height() < full)
    assert strip.compact and strip.cards[1].height() < CARD_HEIGHT
    drag_handle(qtbot, compare.splitter, 600)  # all the way down: its compact least
    qtbot.waitUntil(lambda: strip.cards[1].height() == CARD_MIN_HEIGHT)
    assert not compare.splitter.isCollapsible(1)
    assert strip.height() == strip.minimumHeight() > CARD_MIN_HEIGHT
    assert strip.scroll.geometry().bottom() < strip.height()
    drag_handle(qtbot, compare.splitter, -600)  # and back up: full again
    qtbot.waitUntil(lambda: not strip.compact)
    assert all(c.height() == CARD_HEIGHT for c in strip.cards)
    win.close()


@pytest.mark.parametrize("height, reasons", ((CARD_HEIGHT - 3, 3), (140, 2),
                                             (CARD_MIN_HEIGHT - 3, 1)))
def test_a_shorter_card_gives_up_reason_lines_before_its_thumbnail(height, reasons) -> None:
    """(``height``: inside the card's border.) A full card keeps its 112 px below the
    thumbnail, as before: title, two lines and three lines of the chosen card's reason."""
    room = text_room(height)
    assert room == text_room(CARD_HEIGHT - 3) - LINE * (3 - reasons)
    assert height - room >= THUMB_MIN or reasons == 1
    assert text_room(CARD_HEIGHT - 3) == 112


def test_a_long_reason_keeps_the_lines_that_fit() -> None:
    """Cut to its first line's worth ("last exit: the g…") where three lines had room."""
    fm = QFontMetrics(QFont())
    reason = "last exit: the gate saw more to gain at each before"
    box = QRectF(0, 0, 12 * fm.averageCharWidth(), 3 * fm.lineSpacing())
    shown = fit_text(fm, reason, box).split("\n")
    assert len(shown) == 3 and shown[-1].endswith("…")
    assert all(fm.horizontalAdvance(line) <= box.width() for line in shown)
    assert " ".join(shown).startswith("last exit: the gate")
