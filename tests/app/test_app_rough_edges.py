"""GUI rough edges a user met (issue 13, items 16-21)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QMenu

from rbqe_studio.viewer import SPLIT, TOGGLE

TIMEOUT = 60_000


def test_opening_a_file_shows_it_not_the_old_image(qtbot, window, images) -> None:
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths([images[0]])
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths([images[1]])
    assert window.session.view.path == images[1]
    assert window.windowTitle() == f"{images[1].name} – RBQE Studio"


def test_clear_resets_title_and_status(qtbot, window, images) -> None:
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths([images[0]])
    window.clear_queue()
    assert window.windowTitle() == "RBQE Studio"
    assert window.status.text() == ""


def test_mode_buttons_show_the_active_layout_and_b_flips(qtbot, window, images) -> None:
    view = window.compare.view
    buttons = window.compare.mode_buttons
    assert buttons[SPLIT].isChecked() and not buttons[TOGGLE].isChecked()
    flip = window.acts.toggle
    assert flip.text() == "Flip A/B"
    assert [k.toString() for k in flip.shortcuts()] == ["B", "T"]
    flip.trigger()  # into the one-pane layout, flipped
    assert view.mode == TOGGLE and buttons[TOGGLE].isChecked()
    shown = view.showing_a
    flip.trigger()
    assert view.showing_a is not shown


def test_forced_exit_card_is_not_badged_auto(qtbot, window, images) -> None:
    window.session.mode_override = 5
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths([images[0]])
    card = window.compare.strip.cards[5]
    assert card.data.chosen and not card.chosen_by_auto  # badge reads FORCED


def test_save_result_suggests_a_name_with_the_exit(qtbot, window, images, monkeypatch) -> None:
    window.session.mode_override = 2
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths([images[0]])
    seen: list[Path] = []
    monkeypatch.setattr(window, "_save_dialog", lambda suggested: seen.append(suggested))
    window.acts.save.trigger()
    assert [p.name for p in seen] == ["photo0_rbqe_exit2.png"]


def test_help_lists_the_shortcuts(qtbot, window) -> None:
    help_menu = [m for m in window.menuBar().findChildren(QMenu) if m.title() == "&Help"][0]
    (act,) = [a for a in help_menu.actions() if a.text() == "Keyboard shortcuts"]
    act.trigger()
    text = window._shortcuts_box.text()
    assert "Flip A/B" in text and "<b>B, T</b>" in text and "Space" in text
    window._shortcuts_box.close()
