"""GUI rough edges a user met (issue 13, items 16-21)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMenu

from rbqe_studio.queue_panel import status_text
from rbqe_studio.viewer import SPLIT, TOGGLE

TIMEOUT = 120_000  # generous: a loaded CI machine can be very slow


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
    assert [p.name for p in seen] == ["photo0_rbqe.exit2.png"]


def test_help_lists_the_shortcuts(qtbot, window) -> None:
    help_menu = [m for m in window.menuBar().findChildren(QMenu) if m.title() == "&Help"][0]
    (act,) = [a for a in help_menu.actions() if a.text() == "Keyboard shortcuts"]
    act.trigger()
    text = window._shortcuts_box.text()
    assert "Flip A/B" in text and "<b>B, T</b>" in text and "Space" in text
    # In two columns it fits a 1280x720 screen (in one it was 751 px tall, OK off-screen).
    assert window._shortcuts_box.sizeHint().height() < 600
    window._shortcuts_box.close()


def _count_runs(monkeypatch) -> dict[str, int]:
    """Counts the network runs: from exit 1 (enhance) and continued (continue_exits)."""
    from rbqe.engine import Enhancer

    calls = {"enhance": 0, "continue": 0}
    enhance, cont = Enhancer.enhance, Enhancer.continue_exits

    def counting_enhance(self, *a, **k):
        calls["enhance"] += 1
        return enhance(self, *a, **k)

    def counting_continue(self, *a, **k):
        calls["continue"] += 1
        return cont(self, *a, **k)

    monkeypatch.setattr(Enhancer, "enhance", counting_enhance)
    monkeypatch.setattr(Enhancer, "continue_exits", counting_continue)
    return calls


def test_threshold_and_mode_changes_never_run_from_exit_1(qtbot, window, images,
                                                          monkeypatch) -> None:
    """Item 17: a threshold change only chooses again; a forced exit beyond those
    computed continues from the cached stages."""
    calls = _count_runs(monkeypatch)
    window.settings.exit_mode = "2"
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths([images[0]])
    assert calls == {"enhance": 1, "continue": 0}
    panel, strip = window.settings_panel, window.compare.strip
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT) as blocker:
        panel.mode.setCurrentIndex(panel.mode.findData("4"))
    result = blocker.args[0].result
    assert [e.exit for e in result.exits] == [1, 2, 3, 4] and result.chosen == 4
    assert calls["enhance"] == 1 and calls["continue"] >= 1  # exits 3-4 continued
    assert strip.chosen == 4 and strip.computed == [1, 2, 3, 4]

    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        panel.mode.setCurrentIndex(panel.mode.findData("auto"))
    before = dict(calls)
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT) as blocker:
        panel.threshold.setValue(0.0)  # every exit reaches it: exit 1
    result = blocker.args[0].result
    assert calls == before  # no network at all
    assert result.chosen == 1 and result.mode == "auto" and result.threshold == 0.0
    assert strip.chosen == 1 and strip.cards[1].data.chosen and strip.cards[1].chosen_by_auto
    assert not strip.cards[4].data.chosen
    assert window.session.queue.items[0].exit == 1
    assert window.info.fields["Chosen exit"].text().startswith("Exit 1")
    assert window.compare.b == 1


def test_save_names_the_exit_and_says_where_with_a_link(qtbot, window, images, tmp_path,
                                                          monkeypatch) -> None:
    """Items 18b and 20c: the saved file says its exit; the message names it, fits the
    status bar and opens its folder; File → Show in folder does too."""
    from PySide6.QtGui import QDesktopServices

    window.session.mode_override = 3
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths([images[0]])
    deep = tmp_path / ("a-rather-long-folder-name-" * 4) / "out"
    deep.mkdir(parents=True)
    monkeypatch.setattr(window, "_save_dialog", lambda suggested: str(deep / suggested.name))
    with qtbot.waitSignal(window.session.saved, timeout=TIMEOUT) as blocker:
        window.acts.save.trigger()
    (saved,) = blocker.args[0]
    assert saved.name == "photo0_rbqe.exit3.png" and saved.is_file()
    text = re.sub("<[^>]+>", "", window.status.text())  # what is shown, less the link
    assert "photo0_rbqe.exit3.png" in text and text.endswith("Show in folder")
    assert str(deep) not in text and "…" in text  # the folder is elided, not the name
    assert str(saved) in window.status.toolTip()
    opened: list = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    window.status.linkActivated.emit(str(saved))
    assert window.acts.show_in_folder.isEnabled()
    window.acts.show_in_folder.trigger()
    assert [u.toLocalFile() for u in opened] == [str(deep), str(deep)]


def test_batch_results_open_from_the_saved_outputs(qtbot, window, tmp_path, jpeg,
                                                   monkeypatch) -> None:
    """Item 19b: "Open results in viewer" reads the outputs; the network does not run."""
    from PySide6.QtGui import QDesktopServices

    from rbqe.io import load_image
    from rbqe_studio.convert import qimage_to_array

    src, out = tmp_path / "src", tmp_path / "out"
    jpeg(src / "one.jpg", seed=3)
    panel = window.batch
    panel.input.set_text(str(src))
    panel.output.set_text(str(out))
    window.settings.exit_mode = "2"
    assert panel.run()
    qtbot.waitUntil(lambda: panel.outcome is not None, timeout=TIMEOUT)
    assert "Batch finished: 1 processed" in window.status.text()  # not a stale message
    calls = _count_runs(monkeypatch)
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT) as blocker:
        panel.open_button.click()
    view = blocker.args[0]
    assert calls == {"enhance": 0, "continue": 0}
    assert view.saved == {2: out / "one_rbqe.png"}
    assert view.result.chosen == 2 and window.compare.b == 2
    saved = (load_image(out / "one_rbqe.png").pixels * 255).round()
    assert (qimage_to_array(view.pictures[2].levels[0]) == saved).all()
    assert "saved output" in window.info.fields["Mode"].text()
    assert "from the batch" in status_text(window.session.queue.items[0])
    opened: list = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    panel.folder_button.click()
    assert [u.toLocalFile() for u in opened] == [str(out)]


def test_a_weights_file_chosen_in_the_banner_fixes_a_missing_model(qtbot, store, images,
                                                                    tmp_path,
                                                                    monkeypatch) -> None:
    """Item 19c: the fix a GUI user follows: the banner's button, a file dialog."""
    import torch
    from PySide6.QtWidgets import QFileDialog

    from rbqe.model import ModelConfig, RBQENet
    from rbqe.weights import save_weights
    from rbqe_studio.main_window import MainWindow

    torch.manual_seed(0)
    weights = save_weights(RBQENet(ModelConfig(1, 1, 8)), tmp_path / "mine.safetensors")
    monkeypatch.setattr("rbqe_studio.session_model.PACKAGE_WEIGHTS", tmp_path / "gone.safetensors")
    monkeypatch.delenv("RBQE_WEIGHTS", raising=False)
    # The banner is under test, not backends: "auto" would import OpenVINO, compile and
    # time candidates inside the waits below, which on a loaded machine can take minutes.
    store.setValue("settings/backend", "torch")
    store.sync()
    win = MainWindow(store)
    assert win.settings.backend == "torch"
    qtbot.addWidget(win)
    win.show()
    assert win.banner.isVisible() and "gone.safetensors" in win.banner.text()
    with qtbot.waitSignal(win.session.engine_error, timeout=TIMEOUT):
        win.open_paths([images[0]])
    item = win.session.queue.items[0]
    qtbot.waitUntil(lambda: item.status == "blocked", timeout=TIMEOUT)
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        lambda *a, **k: (str(weights), "Model weights (*.safetensors)"))
    with qtbot.waitSignal(win.session.view_finished, timeout=TIMEOUT):
        win.banner.button.click()
    assert item.status == "done" and not win.banner.isVisible()
    assert win.settings.weights_file == str(weights)
    panel = win.settings_panel  # the Model row shows the file, and leads back
    assert panel.model.isVisibleTo(panel) and panel.model.isEnabled()
    assert panel.model.currentText() == "File: mine.safetensors"
    panel.model.setCurrentIndex(panel.model.findData("shipped"))  # the file is forgotten
    assert win.settings.weights_file == "" and win.session.weights.endswith("gone.safetensors")
    assert not panel.model.isVisibleTo(panel) and panel.model.findData("file") < 0
    win.close()


def test_difference_view_shows_what_changed(qtbot, window, images) -> None:
    """Item 20b: |A − B| amplified, as a heat map, from the View menu (V)."""
    import numpy as np

    from rbqe_studio.convert import DIFF_GAIN, heat_lut, qimage_to_array
    from rbqe_studio.viewer import DIFF

    window.session.mode_override = "all"
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths([images[0]])
    cp = window.compare
    cp.pick(4, "b")
    window.acts.difference.trigger()
    assert cp.view.mode == DIFF and cp.mode_buttons[DIFF].isChecked()
    pane = cp.view.panes[0]
    qtbot.waitUntil(lambda: pane.a is not None)  # made on a pool thread
    assert pane.a_label.startswith(f"|A − B| × {DIFF_GAIN}")
    a = qimage_to_array(cp.data.input_pic.levels[0]).astype(int)
    b = qimage_to_array(cp.data.pictures[4].levels[0]).astype(int)
    expect = heat_lut()[np.minimum(np.abs(a - b).max(axis=2) * DIFF_GAIN, 255)]
    assert (qimage_to_array(pane.a.levels[0]) == expect).all()
    assert f"largest {np.abs(a - b).max()}/255" in pane.a_label
    cp.pick(0, "b")  # A and B the same picture: nothing to compare, said so
    assert pane.a is None and "same picture" in pane.a_label


def test_queue_rows_elide_and_the_tooltip_has_it_all(qtbot, window, tmp_path) -> None:
    """Item 21: queue lines are cut with "…", never mid-letter; the tooltip is whole."""
    from PySide6.QtGui import QFont, QFontMetrics

    from rbqe_studio.queue_panel import ITEM_ROLE, row_texts
    from rbqe_studio.state import FAILED, QueueItem

    name = "a-very-long-photo-name-from-a-camera-that-likes-long-names-0001.jpg"
    item = QueueItem(tmp_path / name, FAILED,
                     error=f"{tmp_path / name}: cannot identify image file\nsecond line")
    window.queue.add_items([item])
    fm = QFontMetrics(QFont())
    first, second = row_texts(item, fm, fm, 150)
    assert "…" in first and "…" in second and "\n" not in second
    assert fm.horizontalAdvance(first) <= 150 and fm.horizontalAdvance(second) <= 150
    row = window.queue.list.item(0)
    assert row.data(ITEM_ROLE) is item
    assert name in row.toolTip() and "cannot identify image file second line" in row.toolTip()


def test_editing_the_threshold_does_not_move_the_panels(qtbot, window) -> None:
    """Item 21: the note under the threshold wraps instead of widening the panel."""
    window.settings_panel.set_weights_threshold(0.855, 2)
    window.splitter.setSizes([250, 600, 200])  # the right panel at its narrowest
    window.tabs.setCurrentWidget(window.settings_panel)
    qtbot.waitUntil(lambda: window.settings_panel.isVisible())
    sizes = window.splitter.sizes()
    width = window.tabs.minimumSizeHint().width()
    window.settings_panel.threshold.setValue(0.912)
    QApplication.processEvents()  # the layout requests the new sizes
    note = window.settings_panel.threshold_note.text()
    assert "custom (weights: 0.855)" in note and "from exit 2" in note
    assert window.tabs.minimumSizeHint().width() == width  # unwrapped it grew 2 px: the jump
    assert window.splitter.sizes() == sizes


def test_quit_during_a_batch_asks_and_otherwise_closes_at_once(qtbot, window, tmp_path,
                                                              jpeg, images) -> None:
    """Item 21: Ctrl+Q while a batch runs asks; with no batch the window goes at once."""
    src, out = tmp_path / "many", tmp_path / "out"
    for i in range(8):
        jpeg(src / f"p{i}.jpg", size=(96, 64), seed=i)
    panel = window.batch
    panel.input.set_text(str(src))
    panel.output.set_text(str(out))
    asked: list[bool] = []
    window._confirm_quit = lambda: asked.append(True) or False  # "No"
    assert panel.run()
    qtbot.waitUntil(lambda: panel.bar.maximum() == 8, timeout=TIMEOUT)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    qtbot.keyClick(window, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
    assert asked == [True] and window.isVisible() and panel.running
    window._confirm_quit = lambda: True
    window.close()
    assert not window.isVisible() and not window.batch_host.thread.isRunning()


def test_closing_while_an_image_runs_does_not_ask(qtbot, window, tmp_path, jpeg) -> None:
    big = jpeg(tmp_path / "big.jpg", size=(512, 384))
    window._confirm_quit = lambda: pytest.fail("asked without a batch")
    window.session.mode_override = "all"
    with qtbot.waitSignal(window.session.view_busy, timeout=TIMEOUT):
        window.open_paths([big])
    window.close()
    assert not window.isVisible() and not window.session.host.thread.isRunning()


def test_chosen_card_reason_wraps_or_elides_with_the_whole_in_the_tooltip(qtbot, window,
                                                                          images) -> None:
    from PySide6.QtCore import QRectF
    from PySide6.QtGui import QFont, QFontMetrics

    from rbqe_studio.exits import fit_text

    fm = QFontMetrics(QFont())
    two_lines = QRectF(0, 0, 90, 2 * fm.height() + 2)
    assert fit_text(fm, "gate: < 0.065 dB more", two_lines) == "gate: < 0.065 dB more"
    long = "gate: < 0.065 dB more from going on, as the learned gate predicted here"
    cut = fit_text(fm, long, two_lines)  # the two lines that fit, the second elided
    assert cut.endswith("…") and cut.count("\n") == 1
    assert all(fm.horizontalAdvance(line) <= 90 for line in cut.split("\n"))
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT) as blocker:
        window.open_paths([images[0]])
    r = blocker.args[0].result
    card = window.compare.strip.cards[r.chosen]
    assert card.data.reason.startswith(("stopped:", "went on:"))
    assert r.decision.text[1:] in card.toolTip()
