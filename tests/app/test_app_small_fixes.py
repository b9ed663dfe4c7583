"""Small things a tester met: keyboard focus that did not show, Qt's own command-line
options and --help, the JPEG note beside a PNG, the Settings fields out of line."""

from __future__ import annotations

import pytest
from PIL import Image
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QApplication, QWidget

from rbqe_studio import launch
from tests.helpers import photo

TIMEOUT = 120_000  # generous: a loaded CI machine can be very slow


def looks_focused(qtbot, widget: QWidget) -> bool:
    """Whether ``widget`` is drawn differently with the keyboard focus than without."""
    widget.setFocus(Qt.FocusReason.TabFocusReason)
    qtbot.waitUntil(lambda: QApplication.focusWidget() is widget)
    focused = widget.grab().toImage()
    widget.clearFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is not widget)
    return focused != widget.grab().toImage()


def test_keyboard_focus_shows(qtbot, themed, window, images) -> None:
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths(images[:2])
    window.activateWindow()
    cp = window.compare
    window.tabs.setCurrentWidget(window.batch)
    for widget in (cp.mode_buttons["side"], cp.strip.compute_button, window.queue.list,
                   cp.view.panes[0], window.batch.start, window.batch.recursive,
                   window.tabs.tabBar()):
        assert looks_focused(qtbot, widget), type(widget).__name__


def test_help_needs_no_display(monkeypatch, capsys) -> None:
    monkeypatch.setattr(launch, "check_environment", lambda: "rbqe-studio: no display here")
    with pytest.raises(SystemExit) as stop:
        launch.main(["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr()
    assert "usage: rbqe-studio" in out.out and "-style" in out.out and not out.err


def test_qt_options_go_to_qt() -> None:
    args = launch.parse_args(["-style", "windows", "--platform=offscreen", "-reverse",
                              "--device", "cpu", "a.jpg"])
    assert args.paths == ["a.jpg"] and args.device == "cpu"
    assert args.qt_options == ["-style", "windows", "--platform=offscreen", "-reverse"]
    assert launch.split_qt_options(["--", "-reverse"]) == ([], ["--", "-reverse"])
    assert launch.chooses_style(args.qt_options)
    assert not launch.chooses_style(["-stylesheet", "x.qss"])


def test_the_jpeg_note_shows_for_jpegs_only(qtbot, window, images, tmp_path) -> None:
    png = tmp_path / "photo.png"
    Image.fromarray(photo(48, 64, seed=3)).save(png)
    info = window.info
    window.tabs.setCurrentWidget(info)
    for path, jpeg in ((png, False), (images[0], True)):
        with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
            window.open_paths([path])
        assert info.jpeg_note.isVisibleTo(info) == jpeg, path.name
        assert (info.fields["JPEG quality"].text() == "not a JPEG") != jpeg


def test_the_settings_fields_line_up(qtbot, themed, window) -> None:
    panel = window.settings_panel
    window.tabs.setCurrentWidget(panel)
    qtbot.waitUntil(panel.isVisible)
    lefts = {w.mapTo(panel, QPoint(0, 0)).x() for w in (
        panel.device, panel.backend, panel.mode, panel.format, panel.suffix, panel.output)}
    assert len(lefts) == 1, lefts
