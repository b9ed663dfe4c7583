"""From user trials: at 900 x 600 the compact strip's cards were 108 px wide with a 27-px
thumbnail that showed nothing, the AUTO badge over most of it, and the row scrolled. A
compact card is now text only (name, score, time; the badges on a line of their own) and
narrower, so all six fit. And the strip's height, as the user drags it, outlives a
restart, bounded by the window it opens in."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QColor

from rbqe_studio import exits
from rbqe_studio.exits import CARD_HEIGHT, CARD_MIN_HEIGHT, CardData, ExitCard
from tests.app.test_app_small_window import (
    SHARE,
    drag_handle,
    open_window,
    photo_share,
    resize,
)

THUMB_BACKGROUND = QColor("#141518").rgb()  # behind a normal card's thumbnail


def parts_apart(card: ExitCard) -> None:
    """Each part of a compact card inside it, none over another."""
    parts = card.compact_parts()
    inside = card.rect().adjusted(1, 1, -1, -1)
    for i, part in enumerate(parts):
        assert inside.contains(part.box.toAlignedRect()), (part.kind, part.box, card.rect())
        for other in parts[i + 1:]:
            assert not part.box.intersects(other.box), (part.kind, part.text, other.kind,
                                                        other.text)


def drawn_thumbnail(card: ExitCard) -> bool:
    image = card.grab().toImage()
    return any(image.pixel(x, y) == THUMB_BACKGROUND
               for y in range(0, image.height(), 2) for x in range(0, image.width(), 2))


def test_a_compact_strip_shows_all_six_cards_in_text(qtbot, themed, store, factory,
                                                     tmp_path) -> None:
    win = open_window(qtbot, store, factory, tmp_path, 900, 600)
    strip = win.compare.strip
    assert strip.compact and photo_share(win) >= SHARE - 0.005
    # All six whole, without scrolling.
    for card in strip.cards:
        qtbot.waitUntil(lambda c=card: c.visibleRegion().boundingRect() == c.rect())
    assert strip.scroll.horizontalScrollBar().maximum() == 0
    for card in strip.cards:
        assert card.compact and CARD_MIN_HEIGHT <= card.height() < CARD_HEIGHT
        assert not drawn_thumbnail(card), card.data.title
        parts_apart(card)
        texts = [p.text for p in card.compact_parts()]
        assert [p.text for p in card.compact_parts() if p.kind == "title"] == [
            card.data.title]
        if card.index:
            assert f"{card.data.score:.3f}" in texts and card.data.lines[0] in texts
    chosen = strip.cards[strip.chosen]
    badges = [p.text for p in chosen.compact_parts() if p.kind == "badge"]
    assert badges == ["AUTO", "B"]  # on one line, at the card's bottom
    assert len({p.box.top() for p in chosen.compact_parts() if p.kind == "badge"}) == 1
    # Roomy again: the cards as they were, thumbnails and all.
    resize(qtbot, win, 1280, 800)
    assert not strip.compact
    assert all(not c.compact and c.height() == CARD_HEIGHT for c in strip.cards)
    assert drawn_thumbnail(strip.cards[1])
    win.close()


@pytest.mark.parametrize("chosen, auto, side", ((True, False, "ab"), (True, True, "b"),
                                                 (False, True, "")))
def test_a_narrow_compact_cards_badges_wrap_clear_of_its_text(qtbot, themed, chosen, auto,
                                                             side) -> None:
    card = ExitCard(3)
    qtbot.addWidget(card)
    card.set_compact(True)
    card.setFixedSize(exits.COMPACT_MIN_WIDTH, CARD_MIN_HEIGHT)
    card.set_data(CardData("Exit 3", None, ("Σ 12.40 s", "Σ 11.1 GMAC"), 0.833, "ready",
                           chosen, reason="stopped: score ≥ 0.800"))
    card.chosen_by_auto, card.side = auto, side
    parts_apart(card)
    kinds = [p.kind for p in card.compact_parts()]
    assert {"title", "score", "line"} <= set(kinds)
    assert kinds.count("badge") == (chosen + len(side))
    assert not drawn_thumbnail(card)


def test_the_dragged_strip_height_outlives_a_restart(qtbot, themed, store, factory,
                                                     tmp_path) -> None:
    win = open_window(qtbot, store, factory, tmp_path, 1280, 800)
    compare = win.compare
    full = compare.strip.height()
    drag_handle(qtbot, compare.splitter, 50)
    qtbot.waitUntil(lambda: compare.strip.height() < full)
    dragged = compare.strip.height()
    resize(qtbot, win, 1300, 840)  # a resize keeps it
    assert compare.strip.height() == dragged
    resize(qtbot, win, 1280, 800)
    win.close()

    again = open_window(qtbot, store, factory, tmp_path, 1280, 800)
    assert again.compare.strip.height() == dragged
    assert again.compare.strip.compact
    # Dragged back up to its full height: no wish stored, the next start opens it full.
    drag_handle(qtbot, again.compare.splitter, -600)
    qtbot.waitUntil(lambda: not again.compare.strip.compact)
    again.close()
    assert store.value("window/strip_height") is None


def test_a_stored_strip_height_is_bounded_by_the_window(qtbot, themed, store, factory,
                                                        tmp_path) -> None:
    """A height from a bigger screen (or a hand-edited file) never takes the photo's
    share, nor shrinks the strip below its compact least."""
    for stored, size in ((200, (1280, 800)), (2000, (1280, 800)), (2000, (900, 600)),
                         (30, (1280, 800)), ("junk", (1280, 800))):
        store.setValue("window/strip_height", stored)
        win = open_window(qtbot, store, factory, tmp_path, *size)
        strip = win.compare.strip
        compare = win.compare
        least = strip.minimumHeight()
        most = max(least, min(strip.full_height(), sum(compare.splitter.sizes())
                              - round(SHARE * compare.height())))
        assert photo_share(win) >= SHARE - 0.005, stored
        expected = {200: 200, 2000: most, 30: least, "junk": strip.full_height()}[stored]
        assert strip.height() == expected, (stored, size)
        assert strip.scroll.geometry().bottom() < strip.height()
        win.close()


def test_the_strip_drags_no_higher_than_the_photos_share(qtbot, themed, store, factory,
                                                        tmp_path) -> None:
    win = open_window(qtbot, store, factory, tmp_path, 1280, 800)
    compare = win.compare
    drag_handle(qtbot, compare.splitter, -600)
    assert photo_share(win) >= SHARE - 0.005
    assert compare.strip.height() <= compare.strip.full_height()
    win.close()
