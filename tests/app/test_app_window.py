"""The main window end to end, with a tiny random model on the CPU."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDropEvent

from rbqe.engine import Enhancer
from rbqe.errors import RBQEError
from rbqe_studio.exits import INPUT
from rbqe_studio.queue_panel import status_text
from rbqe_studio.state import DONE, FAILED
from rbqe_studio.viewer import SIDE, SPLIT, TOGGLE
from tests.helpers import tiny_enhancer

TIMEOUT = 120_000  # generous: a loaded CI machine can be very slow


def drop(window, paths: list[Path]) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    event = QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    assert event.isAccepted()


def wait_done(qtbot, window, n: int | None = None) -> None:
    items = window.session.queue.items
    qtbot.waitUntil(lambda: all(i.status in (DONE, FAILED) for i in items[:n]), timeout=TIMEOUT)


def test_drop_files_and_folder_queues_them(qtbot, window, images, tmp_path) -> None:
    drop(window, [images[0]])
    assert [i.path for i in window.session.queue.items] == [images[0]]
    assert window.stack.currentWidget() is window.compare
    drop(window, [images[0].parent])  # the folder: the two others join, no duplicate
    assert sorted(i.path.name for i in window.session.queue.items) == [p.name for p in images]
    assert window.queue.list.count() == 3
    wait_done(qtbot, window)  # the queue runs in the background
    # the counts are recounted on the event loop's next turn (coalesced), not at once
    qtbot.waitUntil(lambda: "3/3 done" in window.queue.counts.text(), timeout=TIMEOUT)


def test_folder_scan_leaves_out_earlier_outputs(qtbot, window, images) -> None:
    from rbqe.io import record_output

    folder = images[0].parent
    earlier = folder / "photo0_rbqe.png"  # what a batch into the input folder wrote
    record_output(earlier, images[0])
    earlier.write_bytes(images[0].read_bytes())
    window.session.add_paths([folder])
    assert sorted(i.path.name for i in window.session.queue.items) == [p.name for p in images]
    window.session.add_paths([earlier])  # named directly: the user wants to see it
    assert earlier in [i.path for i in window.session.queue.items]
    wait_done(qtbot, window)


def test_exits_arrive_in_order_and_chosen_is_marked(qtbot, window, images) -> None:
    window.session.mode_override = "all"
    arrived: list[int] = []
    window.session.exit_ready.connect(lambda e, _v: arrived.append(e.exit))
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT) as blocker:
        window.open_paths([images[0]])
    assert arrived == [1, 2, 3, 4, 5]
    strip = window.compare.strip
    result = blocker.args[0].result
    assert strip.computed == [1, 2, 3, 4, 5]
    assert strip.chosen == result.chosen
    assert [c.data.chosen for c in strip.cards[1:]] == [k == result.chosen for k in range(1, 6)]
    assert f"{result.threshold:.3f}" in strip.threshold_label.text()
    assert window.compare.b == result.chosen and window.compare.a == INPUT
    item = window.session.queue.items[0]
    assert item.status == DONE and item.exit == result.chosen
    assert window.info.fields["Chosen exit"].text().startswith(f"Exit {result.chosen}")
    assert "estimate" in window.info.fields["JPEG quality"].text()


def test_weights_with_an_earliest_exit_show_it(qtbot, store, images) -> None:
    """Calibrated weights may forbid auto to stop before exit 3: the strip, the cards,
    the info panel and the settings all say so."""
    from rbqe_studio.main_window import MainWindow

    def factory(_spec):
        enh = tiny_enhancer(min_exit=3)
        enh.info.threshold = 0.0  # every score passes: only min_exit holds auto back
        return enh

    win = MainWindow(store, factory, check_weights=False)
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.session.view_finished, timeout=TIMEOUT) as blocker:
        win.open_paths([images[0]])
    result = blocker.args[0].result
    assert result.chosen == 3 and result.min_exit == 3
    strip = win.compare.strip
    assert "from exit 3" in strip.threshold_label.text()
    assert [c.min_exit for c in strip.cards[1:]] == [3] * 5
    assert "from exit 3" in win.info.fields["Threshold"].text()
    assert "reached" in win.info.fields["Threshold"].text()
    assert "from exit 3" in win.settings_panel.threshold_note.text()
    win.close()


def test_switch_exits_and_modes_keeps_zoom_in_sync(qtbot, window, images) -> None:
    window.session.mode_override = "all"
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths([images[0]])
    cp = window.compare
    cp.view.set_mode(SIDE)
    qtbot.waitUntil(lambda: cp.view.panes[1].isVisible())
    cp.view.zoom(3.0)
    cp.view.state.pan(12, -7)
    scale, center = cp.view.state.scale, QPointF(cp.view.state.center)
    cp.strip.cards[4].picked.emit(4, "b")  # click on exit 4
    cp.pick(2, "a")  # right-click on exit 2
    assert (cp.a, cp.b) == (2, 4)
    left, right = cp.view.panes
    assert left.a is window.session.view.pictures[2]
    assert right.a is window.session.view.pictures[4]
    assert cp.combo_a.currentIndex() == 2 and cp.combo_b.currentIndex() == 4
    for p in (QPointF(10.5, 20.25), QPointF(0, 0)):
        assert left.state.to_widget(p, left.view_size()) == \
            right.state.to_widget(p, right.view_size())
    for mode in (SPLIT, TOGGLE, SIDE):
        cp.view.set_mode(mode)
        assert cp.view.state.scale == scale and cp.view.state.center == center
    qtbot.keyClick(window, Qt.Key.Key_0)  # keyboard: input on the B side
    assert cp.b == INPUT
    cp.combo_b.activated.emit(5)
    assert cp.b == 5 and cp.view.state.scale == scale


def test_forced_mode_and_compute_all_continue_from_cache(qtbot, window, images,
                                                          monkeypatch) -> None:
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
    window.settings.exit_mode = "2"
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT) as blocker:
        window.open_paths([images[0]])
    assert [e.exit for e in blocker.args[0].result.exits] == [1, 2]
    assert window.compare.strip.chosen == 2
    assert window.acts.compute_all.isEnabled()
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT) as blocker:
        window.compare.strip.compute_button.click()
        # While it runs: said, and not offered again (it looked as if it did nothing).
        assert window.status.text() == f"Computing exits 3–5 of {images[0].name}…"
        assert not window.acts.compute_all.isEnabled()
        assert not window.compare.strip.compute_button.isEnabled()
    assert [e.exit for e in blocker.args[0].result.exits] == [1, 2, 3, 4, 5]
    assert calls == {"enhance": 1, "continue": 1}  # continued, not recomputed
    assert window.compare.strip.computed == [1, 2, 3, 4, 5]
    assert not window.acts.compute_all.isEnabled()

    # Changing the mode in the settings panel re-runs the viewed image.
    panel = window.settings_panel
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT) as blocker:
        panel.mode.setCurrentIndex(panel.mode.findData("4"))
    assert blocker.args[0].result.chosen == 4
    assert window.compare.strip.chosen == 4


def test_bad_file_fails_with_a_readable_reason(qtbot, window, images, tmp_path) -> None:
    bad = tmp_path / "in" / "broken.jpg"
    bad.write_bytes(b"not a jpeg at all")
    with qtbot.waitSignal(window.session.view_failed, timeout=TIMEOUT) as blocker:
        window.open_paths([bad])
    item = window.session.queue.get(bad)
    assert item.status == FAILED and "broken.jpg" in item.error
    assert "Traceback" not in blocker.args[0] and "\n" not in blocker.args[0]
    assert "broken.jpg" in window.status.text()


def test_save_result_and_all_exits(qtbot, window, images, tmp_path, monkeypatch) -> None:
    window.session.mode_override = "all"
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths([images[0]])
    target = tmp_path / "out" / "result.jpg"  # the suffix picks the format
    monkeypatch.setattr(window, "_save_dialog", lambda suggested: str(target))
    with qtbot.waitSignal(window.session.saved, timeout=TIMEOUT):
        window.acts.save.trigger()
    assert target.read_bytes()[:2] == b"\xff\xd8"  # a JPEG, as its name says
    folder = tmp_path / "all"
    folder.mkdir()
    monkeypatch.setattr(window, "_folder_dialog", lambda *a: str(folder))
    with qtbot.waitSignal(window.session.saved, timeout=TIMEOUT) as blocker:
        window.acts.save_all.trigger()
    assert len(blocker.args[0]) == 5
    assert sorted(p.name for p in folder.iterdir()) == \
        [".rbqe-outputs.jsonl", *(f"photo0_rbqe.exit{k}.png" for k in range(1, 6))]


def test_settings_and_layout_persist(qtbot, store, factory, window) -> None:
    from rbqe_studio.main_window import MainWindow
    from rbqe_studio.settings import load_state

    panel = window.settings_panel
    panel.device.setCurrentIndex(panel.device.findData("cpu"))
    panel.format.setCurrentIndex(panel.format.findData("webp"))
    panel.quality.setValue(77)
    panel.threshold.setValue(0.9)
    window.resize(window.width(), 700)  # the offscreen screen is small: stay inside it
    window.splitter.setSizes([230, 600, 370])
    sizes, width = window.splitter.sizes(), window.width()
    window.tabs.setCurrentWidget(window.batch)
    window.close()
    assert load_state(store, "geometry") is not None
    again = MainWindow(store, factory, check_weights=False)
    qtbot.addWidget(again)
    s = again.settings
    assert (s.device, s.output_format, s.quality, s.threshold) == ("cpu", "webp", 77, 0.9)
    assert again.settings_panel.quality.value() == 77
    assert again.settings_panel.threshold.value() == 0.9
    assert again.height() == 700
    again.show()
    again.resize(width, 700)  # restoreGeometry clamps the width to the small test screen
    qtbot.waitUntil(lambda: again.splitter.width() > 1000)
    assert again.splitter.sizes() == sizes
    assert again.tabs.currentWidget() is again.batch
    again.settings_panel.reset.click()
    assert again.settings.threshold is None
    again.close()


def test_missing_weights_is_shown_and_the_app_still_opens(qtbot, store, images,
                                                           tmp_path) -> None:
    from rbqe_studio.main_window import MainWindow

    win = MainWindow(store, weights=str(tmp_path / "none.safetensors"))
    qtbot.addWidget(win)
    win.show()
    assert win.banner.isVisible() and "none.safetensors" in win.banner.text()
    with qtbot.waitSignal(win.session.engine_error, timeout=TIMEOUT) as blocker:
        win.open_paths([images[0]])
    assert "none.safetensors" in blocker.args[0]
    item = win.session.queue.items[0]
    # (The first failure may be the background job's, before the image was selected.)
    pane = win.compare.view.panes[0]
    qtbot.waitUntil(lambda: item.status == "blocked" and "Not enhanced" in pane.b_label,
                    timeout=TIMEOUT)
    # Not blamed on the image, and not "Waiting" / "Enhancing…" for ever.
    assert status_text(item).startswith("Not enhanced")
    assert win.session.view is not None  # the input is still shown
    assert pane.a is win.session.view.input_pic
    assert "Not enhanced" in pane.b_label and "Enhancing" not in pane.b_label
    # The fix is one a GUI user can follow: a button, Settings; no command line.
    assert "Choose weights file" in win.banner.text() and "rbqe train" not in win.banner.text()
    assert "Not enhanced" in win.status.text() and "rbqe train" not in win.status.text()
    assert win.banner.button.isVisible()
    win.close()


def test_event_loop_latency_during_a_job(qtbot, window, tmp_path, jpeg) -> None:
    big = jpeg(tmp_path / "big.jpg", size=(768, 512))
    window.session.mode_override = "all"
    gaps: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append((now - last[0]) * 1000)
        last[0] = now

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    timer.start()
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths([big])
    timer.stop()
    assert len(gaps) > 5
    assert max(gaps[1:]) < 250, f"GUI blocked for {max(gaps[1:]):.0f} ms"


def test_keyboard_shortcuts(qtbot, window, images) -> None:
    window.session.mode_override = "all"
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths(images[:2])
    window.activateWindow()
    cp = window.compare
    first = window.queue.current()
    qtbot.keyClick(window, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)  # 1:1
    assert cp.view.state.scale == 1.0 and not cp.view.state.fitting
    qtbot.keyClick(window, Qt.Key.Key_F)  # fit
    assert cp.view.state.fitting
    qtbot.keyClick(window, Qt.Key.Key_B)  # toggle before/after
    assert cp.view.mode == TOGGLE and cp.view.showing_a
    qtbot.keyClick(window, Qt.Key.Key_B)
    assert not cp.view.showing_a
    qtbot.keyPress(window, Qt.Key.Key_Space)  # hold Space: A while held
    assert cp.view.holding and cp.view.panes[0].b is None
    qtbot.keyRelease(window, Qt.Key.Key_Space)
    assert not cp.view.holding
    qtbot.keyClick(window, Qt.Key.Key_S)
    assert cp.view.mode == SPLIT
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        qtbot.keyClick(window, Qt.Key.Key_Right)  # next image
    assert window.queue.current() is not first
    qtbot.keyClick(window, Qt.Key.Key_Left)  # previous: cached, shown at once
    assert window.queue.current() is first
    assert window.session.view is not None and window.session.view.path == first.path


def test_stale_results_are_dropped_when_switching_images(qtbot, window, tmp_path, jpeg) -> None:
    slow = jpeg(tmp_path / "a_slow.jpg", size=(512, 384))
    fast = jpeg(tmp_path / "b_fast.jpg", size=(64, 48), seed=5)
    window.session.mode_override = "all"
    with qtbot.waitSignal(window.session.view_loaded, timeout=TIMEOUT):
        window.open_paths([slow, fast])  # the slow one is selected and starts
    shown: list[Path] = []
    window.session.exit_ready.connect(lambda _e, view: shown.append(view.path))
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT) as blocker:
        window.queue.select(window.session.queue.get(fast))  # switch before it finishes
    assert blocker.args[0].path == fast
    assert set(shown) == {fast}  # nothing of the slow image reached the view
    assert window.compare.data.path == fast
    assert [e.exit for e in blocker.args[0].result.exits] == [1, 2, 3, 4, 5]
    # The slow image went back to the queue and is finished in the background.
    slow_item = window.session.queue.get(slow)
    qtbot.waitUntil(lambda: slow_item.status == DONE, timeout=TIMEOUT)
    assert window.compare.data.path == fast  # still showing what the user chose


def test_the_shipped_model_loads_and_an_old_model_setting_is_ignored(qtbot, store,
                                                                     monkeypatch) -> None:
    """One model ships; a settings file from a release that shipped two (model=y) loads
    without error and the shipped RGB model is used."""
    from rbqe.weights import PACKAGE_WEIGHTS, read_info
    from rbqe_studio.main_window import MainWindow

    monkeypatch.delenv("RBQE_WEIGHTS", raising=False)
    store.setValue("settings/model", "y")
    store.setValue("settings/exit_mode", "3")
    store.sync()

    def factory(spec):
        raise RBQEError("not needed here")

    win = MainWindow(store, factory)
    qtbot.addWidget(win)
    panel = win.settings_panel
    assert win.settings.exit_mode == "3"  # the rest of the old file still counts
    assert win.session.weights == str(PACKAGE_WEIGHTS)
    assert win.batch.engine()[0].weights == str(PACKAGE_WEIGHTS)  # batch and view agree
    info = read_info(PACKAGE_WEIGHTS)
    assert info.config.in_channels == 3
    assert panel.effective_threshold() == pytest.approx(info.threshold)
    assert panel.weights_min_exit == info.min_exit
    assert not panel.model.isVisibleTo(panel)  # nothing to choose: no Model row
    assert not win.banner.isVisible()
    win.close()


def test_weights_on_the_command_line_fix_the_model(qtbot, store, tmp_path) -> None:
    from rbqe_studio.main_window import MainWindow

    win = MainWindow(store, weights=str(tmp_path / "mine.safetensors"), check_weights=False)
    qtbot.addWidget(win)
    panel = win.settings_panel
    assert panel.model.isVisibleTo(panel) and not panel.model.isEnabled()
    assert panel.model.currentText() == "File: mine.safetensors"
    assert "mine.safetensors" in panel.model.toolTip()
    assert win.session.weights == str(tmp_path / "mine.safetensors")
    win.close()


def test_a_score_is_headlined_only_where_it_decided(qtbot, window, images) -> None:
    """The assessor's score ranks the exits of a heavily compressed photo backwards
    (exit 1 highest, the chosen exit 5 lowest): beside a forced exit, or the learned
    gate's choice, "exit 5 of 5, score 0.562" read as "the app picked the worst". The
    status line, the queue row and the Info panel show it where a score threshold chose."""
    from rbqe_studio.queue_panel import status_text

    panel = window.settings_panel
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        panel.mode.setCurrentIndex(panel.mode.findData("2"))
        window.open_paths([images[0]])
    item = window.session.current
    assert item.exit == 2 and item.score is None
    assert window.status.text().startswith(f"{images[0].name}: exit 2 of 5")
    assert "score" not in window.status.text() and "score" not in status_text(item)
    assert window.info.fields["Chosen exit"].text() == "Exit 2"
    assert window.compare.label(2) == "Exit 2"  # the picture's label too
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        panel.mode.setCurrentIndex(panel.mode.findData("auto"))  # the threshold rule
    result = window.session.view.result
    assert result.threshold is not None and item.score is not None
    score = f"score {result.exit_result(result.chosen).score:.3f}"
    assert score in window.status.text() and score in status_text(item)
    assert window.info.fields["Chosen exit"].text().endswith(score)
    assert window.compare.label(result.chosen).endswith(score[6:])


def test_preparing_the_model_is_said(qtbot, window, images) -> None:
    """Building the model (OpenVINO's first use: a minute of export and compile) showed a
    busy bar and nothing else."""
    from rbqe_studio.state import engine_text

    said: list[str] = []
    window.session.progress.connect(
        lambda stage, *_: said.append(window.status.text()) if stage == "engine" else None)
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths([images[0]])
    assert said == [engine_text(False)]  # the tests' factory exports no OpenVINO
    assert engine_text(False) == "Preparing the model…"
    assert "about a minute" in engine_text(True)


def test_save_starts_where_the_last_save_went(qtbot, window, images, tmp_path,
                                              monkeypatch) -> None:
    """Save and Save all opened the photo's folder (or Settings' output folder) every
    time, however often the user had gone to another."""
    window.session.mode_override = 3
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths([images[0]])
    asked: list[Path] = []
    elsewhere = tmp_path / "elsewhere"

    def dialog(suggested: Path) -> str:
        asked.append(suggested)
        return str(elsewhere / suggested.name)

    monkeypatch.setattr(window, "_save_dialog", dialog)
    for _ in range(2):
        with qtbot.waitSignal(window.session.saved, timeout=TIMEOUT):
            window.acts.save.trigger()
    assert asked[0].parent == images[0].parent and asked[1].parent == elsewhere
    started: list[str] = []
    monkeypatch.setattr(window, "_folder_dialog", lambda title, start: started.append(start))
    window.acts.save_all.trigger()
    assert started == [str(elsewhere)]
    chosen = tmp_path / "chosen"  # Settings' output folder, chosen since: saves start there
    window.settings_panel.output.set_text(str(chosen))
    window.settings_panel.output.changed.emit(str(chosen))
    window.acts.save_all.trigger()
    assert started[-1] == str(chosen)
