"""The keyboard: a focused widget keeps its own keys (Space, arrows), arrows pan a zoomed
image, the zoom keys reach 200 %, the Settings key, and the number keys of exits that are
not computed."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import QApplication, QPushButton

TIMEOUT = 120_000  # generous: a loaded CI machine can be very slow


def open_and_finish(qtbot, window, paths) -> None:
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths(paths)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)


def focus(qtbot, widget) -> None:
    widget.setFocus(Qt.FocusReason.TabFocusReason)
    qtbot.waitUntil(lambda: QApplication.focusWidget() is widget)


def test_space_presses_a_focused_button_and_peeks_at_a_elsewhere(qtbot, window,
                                                                 images) -> None:
    open_and_finish(qtbot, window, [images[0]])
    view = window.compare.view
    box = window.batch.recursive
    window.tabs.setCurrentWidget(window.batch)
    focus(qtbot, box)
    before = box.isChecked()
    qtbot.keyClick(box, Qt.Key.Key_Space)
    assert box.isChecked() != before and not view.holding
    pressed = []
    button = QPushButton("Try", window.batch)  # a button that does nothing else
    button.clicked.connect(lambda: pressed.append("click"))
    button.show()
    focus(qtbot, button)
    qtbot.keyClick(button, Qt.Key.Key_Space)
    qtbot.keyClick(button, Qt.Key.Key_Return)  # as in a dialog
    qtbot.waitUntil(lambda: len(pressed) == 2)
    pane = view.panes[0]
    focus(qtbot, pane)  # where the peek is wanted
    qtbot.keyPress(pane, Qt.Key.Key_Space)
    assert view.holding
    qtbot.keyRelease(pane, Qt.Key.Key_Space)
    assert not view.holding


def test_a_focused_tab_bar_or_combo_keeps_its_keys(qtbot, window, images) -> None:
    open_and_finish(qtbot, window, images[:2])
    first = window.session.current
    bar = window.tabs.tabBar()
    window.tabs.setCurrentWidget(window.batch)
    focus(qtbot, bar)
    qtbot.keyClick(bar, Qt.Key.Key_Left)
    assert window.tabs.currentWidget() is window.settings_panel
    assert window.session.current is first  # not the previous image
    combo = window.compare.combo_b
    focus(qtbot, combo)
    qtbot.keyClick(combo, Qt.Key.Key_PageDown)  # steps the combo, not to the next image
    assert window.session.current is first
    qtbot.keyClick(combo, Qt.Key.Key_Right)  # a combo box has no use for Right
    qtbot.waitUntil(lambda: window.session.current is not first)


def test_arrows_pan_a_zoomed_image_and_change_images_where_it_fits(qtbot, window,
                                                                   images) -> None:
    open_and_finish(qtbot, window, images[:2])
    view = window.compare.view
    pane = view.panes[0]
    focus(qtbot, pane)
    first = window.session.current
    size = view.state.image_size  # three times the zoom that fills the pane: it overflows
    view.state.set_scale(3 * max(pane.width() / size.width(), pane.height() / size.height()),
                         pane.size())
    center = QPointF(view.state.center)
    qtbot.keyClick(pane, Qt.Key.Key_Right)
    moved = (view.state.center.x() - center.x()) * view.state.scale
    assert moved == pytest.approx(pane.width() / 8)
    assert window.session.current is first
    qtbot.keyClick(pane, Qt.Key.Key_Down, Qt.KeyboardModifier.ShiftModifier)
    moved = (view.state.center.y() - center.y()) * view.state.scale
    assert moved == pytest.approx(pane.height() / 2)  # Shift: further
    view.fit()  # the picture fits: Right is the next image again
    qtbot.keyClick(pane, Qt.Key.Key_Right)
    qtbot.waitUntil(lambda: window.session.current is not first)


def test_zoom_keys_step_through_200_percent(qtbot, window, images) -> None:
    open_and_finish(qtbot, window, [images[0]])
    cp = window.compare
    cp.view.actual_size()
    seen = []
    for _ in range(3):
        qtbot.keyClick(window, Qt.Key.Key_Equal, Qt.KeyboardModifier.ControlModifier)
        seen.append(cp.zoom_label.text())
    assert seen == ["150%", "200%", "300%"]
    for _ in range(4):
        qtbot.keyClick(window, Qt.Key.Key_Minus, Qt.KeyboardModifier.ControlModifier)
    assert cp.zoom_label.text() == "67%"


def test_a_key_shows_the_settings(qtbot, window) -> None:
    window.tabs.setCurrentWidget(window.info)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    qtbot.keyClick(window, Qt.Key.Key_Comma, Qt.KeyboardModifier.ControlModifier)
    assert window.tabs.currentWidget() is window.settings_panel


def test_the_key_of_an_exit_not_computed_says_how_to_compute_it(qtbot, window,
                                                                images) -> None:
    window.settings_panel.threshold.setValue(0.0)  # auto stops at exit 1
    open_and_finish(qtbot, window, [images[0]])
    assert 4 not in window.compare.exits
    qtbot.keyClick(window, Qt.Key.Key_4)
    text = window.status.text()
    assert "Exit 4 is not computed" in text and "Ctrl+E" in text
    assert window.compare.b != 4


def test_help_tells_how_to_pan(qtbot, window) -> None:
    window.show_shortcuts()
    box = window._shortcuts_box
    assert "Pan a zoomed image" in box.text() and "Settings" in box.text()
    assert "Left and Right change the image" in box.informativeText()
    box.close()
