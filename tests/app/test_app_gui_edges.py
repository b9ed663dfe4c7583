"""Rough edges a user saw in the themed window: words cut at the widths people use, a
stale zoom beside a file that could not be read, a cancelled batch's figures."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QLabel,
    QLineEdit,
    QScrollArea,
    QStyle,
    QStyleOptionComboBox,
    QStyleOptionFrame,
)

from rbqe.batch import BatchSummary, ItemReport
from rbqe_studio.batch_panel import summary_html, summary_line
from rbqe_studio.jobs import BatchOutcome
from rbqe_studio.queue_panel import row_texts, status_text
from rbqe_studio.settings_panel import AUTO_TEXT
from rbqe_studio.state import DONE, FAILED, QueueItem, fmt_ms

TIMEOUT = 120_000  # generous: a loaded CI machine can be very slow
MIN_WIDTH = 882  # the window's narrowest, themed
WIDTHS = (MIN_WIDTH, 900, 1280, 1366)


def settle(qtbot, window, width: int) -> None:
    window.resize(max(width, window.minimumSizeHint().width()), 700)
    qtbot.waitUntil(lambda: window.width() >= width)
    for _ in range(3):  # a move of the rule to its own line asks for one more layout
        QApplication.processEvents()
        qtbot.wait(20)


def reads_in_full(label: QLabel) -> bool:
    return label.fontMetrics().horizontalAdvance(label.text()) <= label.contentsRect().width()


# -- 1: the exit rule in a narrow window --------------------------------------------------
@pytest.mark.parametrize("width", WIDTHS)
def test_the_exit_rule_reads_in_full_at_every_width(qtbot, themed, window, images,
                                                    width) -> None:
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths([images[0]])  # the strip shows once there is an image
    strip = window.compare.strip
    assert strip.isVisible()
    strip.set_mode_text("Mode: auto (from the weights)")
    for show in (lambda: strip.set_policy("a learned gate", "Learned exit gate"),
                 lambda: strip.set_threshold(0.855, "from the weights", 3)):
        show()
        settle(qtbot, window, width)
        assert reads_in_full(strip.threshold_label), (
            f"{strip.threshold_label.text()!r} cut at {window.width()} px")
        assert window.width() == max(width, window.minimumSizeHint().width())
        # A line spent on the rule is the strip's: the cards below are not cut.
        scroll = strip.findChild(QScrollArea, "cardScroll")
        assert scroll.geometry().bottom() < strip.height()
    assert window.minimumSizeHint().width() <= MIN_WIDTH  # the new line widened nothing
    if width >= 1280:  # room for everything on one line: no line spent on it
        strip.set_policy("a learned gate", "Learned exit gate")
        settle(qtbot, window, width)
        assert not strip.rule_below and reads_in_full(strip.mode_label)


# -- 2: no zoom without a picture ---------------------------------------------------------
def test_no_zoom_is_shown_while_an_unreadable_file_is_selected(qtbot, window, images,
                                                               tmp_path) -> None:
    label = window.compare.zoom_label
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths([images[0]])
    assert label.text().endswith("%")
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(images[0].read_bytes()[:300])  # a truncated JPEG
    with qtbot.waitSignal(window.session.view_failed, timeout=TIMEOUT):
        window.open_paths([bad])
    # The panes re-fit on any resize, and Fit may be pressed: still no old image's zoom.
    window.resize(window.width() - 40, window.height())
    window.compare.view.fit()
    QApplication.processEvents()
    assert label.text() == ""
    # Back to the photo (same size as the zoom the view kept): its zoom shows again.
    good = window.session.queue.items[0]
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.queue.select(good)
    assert label.text().endswith("%")


# -- 3: the queue's counts ----------------------------------------------------------------
@pytest.mark.parametrize("width", (MIN_WIDTH, 1280))
def test_the_queue_count_reads_in_full(qtbot, themed, window, images, tmp_path,
                                       width) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image at all")
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths([images[0]])
    with qtbot.waitSignal(window.session.view_failed, timeout=TIMEOUT):
        window.open_paths([bad])
    counts = window.queue.counts
    settle(qtbot, window, width)
    assert counts.text() == "1/2 done · 1 failed" and reads_in_full(counts)
    counts.setText("1204/3400 done · 17 failed")  # a big folder's
    assert reads_in_full(counts)


def test_an_empty_queue_spends_no_line_on_its_count(qtbot, window) -> None:
    assert window.queue.counts.isHidden()


# -- 4: a cancelled batch's summary -------------------------------------------------------
def cancelled_outcome() -> BatchOutcome:
    """Cancelled during its second of four images: one finished in 12.31 s, the batch
    ran 21.53 s in all."""
    done = [ItemReport(Path("a.jpg"), "ok", exit=5, times_ms={"total": 12310.0},
                       gmacs=13.9, gmacs_exit5=13.9)]
    return BatchOutcome(BatchSummary(done, 21530.0, True, total=4), done, True, 4)


def test_a_cancelled_batch_says_what_its_figures_count() -> None:
    text = summary_html(cancelled_outcome())
    assert "<b>3</b> not done" in text  # the stopped image and the two never reached
    # The total runs up to the cancel; the average is over the finished images, said so.
    assert "Time: 21.5&nbsp;s in all, up to the cancel" in text
    assert "Average: 12.3&nbsp;s per processed image (1 of 4 images done)" in text
    assert "per image<" not in text
    assert summary_line(cancelled_outcome()) == (
        "Batch cancelled: 1 processed, 0 failed, 0 skipped, 3 not done")


def test_a_finished_batch_reads_the_same_way() -> None:
    done = [ItemReport(Path(f"{n}.jpg"), "ok", exit=3, times_ms={"total": 5000.0})
            for n in "ab"]
    outcome = BatchOutcome(BatchSummary(done, 12000.0, False, total=2), done, False, 2)
    text = summary_html(outcome)
    assert "not done" not in text and "up to" not in text
    assert "Time: 12.0&nbsp;s in all · average 5.00&nbsp;s per processed image" in text
    assert summary_line(outcome) == "Batch finished: 2 processed, 0 failed, 0 skipped"


# -- 5: a big photo's result in the Info panel and the queue ------------------------------
def long_result(view):
    """``view``'s result as a 12 MP photo's reads: stages of a minute, a long reason."""
    r = view.result
    for e in r.exits:
        e.time_ms = 64_000 + 1000 * e.exit
    r.decision = dataclasses.replace(
        r.decision, text="JPEG quality ≈ 15 and the gate predicts < 0.065 dB more from "
                         "going on (+0.04 dB)")
    r.threshold = None  # "– (the learned gate decides)": two lines in the panel
    return r


def cell_reads_in_full(table, row: int, col: int) -> bool:
    item = table.item(row, col)
    return table.fontMetrics().horizontalAdvance(item.text()) + 8 <= table.columnWidth(col)


@pytest.mark.parametrize("width", (MIN_WIDTH, 1280))
def test_a_big_photos_result_reads_in_full_in_the_info_panel(qtbot, themed, window, images,
                                                             width) -> None:
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths([images[0]])
    settle(qtbot, window, width)
    view = window.session.view
    long_result(view)
    window.info.show_result(view)  # new words in a panel already laid out
    for _ in range(3):
        QApplication.processEvents()
        qtbot.wait(20)
    info = window.info
    assert info.verticalScrollBar().isVisible()  # what made the form lay out stale heights
    for name, label in info.fields.items():
        assert label.height() >= label.heightForWidth(label.width()), (
            f"{name}: {label.text()!r} cut at {window.width()} px")
    assert info.fields["Why this exit"].text().endswith("(+0.04 dB).")
    for row in range(len(view.result.exits)):
        assert info.table.item(row, 0).text() == f"{65 + row}.0 s"
        assert cell_reads_in_full(info.table, row, 0), info.table.item(row, 0).text()


def test_a_big_photos_queue_row_keeps_its_time(qtbot, themed, window, images) -> None:
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths([images[0]])
    settle(qtbot, window, 1280)
    item = window.session.queue.items[0]
    item.time_ms = 64_000.0
    lst = window.queue.list
    rect = lst.visualItemRect(lst.item(0))
    fm = lst.fontMetrics()
    bold = QFont(lst.font())
    bold.setBold(True)
    _, line = row_texts(item, QFontMetrics(bold), fm, rect.width() - 36)
    assert line == status_text(item) and line.endswith("· 64.0 s"), line


def test_a_narrow_queue_row_keeps_its_exit(qapp) -> None:
    # A 900 px window leaves the queue ~130 px: "Exit 5 · 419 ms", cut in the middle,
    # read "Exit …19 ms". The time goes before the exit is cut.
    item = QueueItem(Path("/photos/garden.jpg"), status=DONE, exit=5, score=0.805,
                     time_ms=419.0)
    fm = QFontMetrics(qapp.font())
    bold = QFont(qapp.font())
    bold.setBold(True)
    width = fm.horizontalAdvance("Exit 5 · 419") - 1  # a little too narrow for the time
    _, line = row_texts(item, QFontMetrics(bold), fm, width)
    assert line == "Exit 5", line
    wide = fm.horizontalAdvance(status_text(item)) + 1
    assert row_texts(item, QFontMetrics(bold), fm, wide)[1] == "Exit 5 · score 0.805 · 419 ms"


def test_a_failed_rows_cause_is_cut_at_its_end(qapp) -> None:
    # Cut in the middle it read "Failed: trunc…pt image data" at every window size.
    item = QueueItem(Path("/photos/broken.jpg"), status=FAILED,
                     error="/photos/broken.jpg: truncated or corrupt image data")
    fm = QFontMetrics(qapp.font())
    bold = QFont(qapp.font())
    bold.setBold(True)
    width = fm.horizontalAdvance("Failed: truncated or corrupt")
    _, line = row_texts(item, QFontMetrics(bold), fm, width)
    assert line.startswith("Failed: truncated") and line.endswith("…"), line


def test_short_times_for_narrow_places() -> None:
    assert [fmt_ms(ms) for ms in (305, 1500, 12_480, 64_000, 184_400, 1_260_000)] == \
        ["305 ms", "1.50 s", "12.5 s", "64.0 s", "184 s", "21 min"]
    assert fmt_ms(float("nan")) == fmt_ms(None) == "–"


# -- 6: the side panel's own words at the widths people use -------------------------------
def combo_reads_in_full(combo: QComboBox) -> bool:
    opt = QStyleOptionComboBox()
    combo.initStyleOption(opt)
    field = combo.style().subControlRect(QStyle.ComplexControl.CC_ComboBox, opt,
                                         QStyle.SubControl.SC_ComboBoxEditField, combo)
    return combo.fontMetrics().horizontalAdvance(combo.currentText()) <= field.width()


def placeholder_reads_in_full(edit: QLineEdit) -> bool:
    opt = QStyleOptionFrame()
    edit.initStyleOption(opt)  # the theme's padding is the style's, not the contents rect's
    rect = edit.style().subElementRect(QStyle.SubElement.SE_LineEditContents, opt, edit)
    margins = edit.textMargins()
    room = rect.width() - margins.left() - margins.right() - 4  # QLineEdit's own 2 px a side
    return edit.fontMetrics().horizontalAdvance(edit.placeholderText()) <= room


@pytest.mark.parametrize("width", (MIN_WIDTH, 1280))
def test_the_settings_and_batch_tabs_read_in_full(qtbot, themed, window, width) -> None:
    panel, batch = window.settings_panel, window.batch
    for tab in (panel, batch):
        window.tabs.setCurrentWidget(tab)
        settle(qtbot, window, width)
    for combo in (panel.device, panel.backend, panel.mode, panel.format):
        for i in range(combo.count()):
            combo.setCurrentIndex(i)
            assert combo_reads_in_full(combo), f"{combo.currentText()!r} at {width} px"
    panel.mode.setCurrentIndex(0)
    for rule, text in AUTO_TEXT.items():  # the Auto item says the weights' rule once known
        panel.mode.setItemText(0, text)
        assert combo_reads_in_full(panel.mode), f"{rule or 'loading'}: {text!r} at {width} px"
    for edit in (panel.output.edit, batch.input.edit, batch.output.edit):
        assert placeholder_reads_in_full(edit), f"{edit.placeholderText()!r} at {width} px"
    summary = batch.summary
    room = summary.viewport().width() - 2 * summary.document().documentMargin()
    assert summary.fontMetrics().horizontalAdvance(summary.placeholderText()) <= room


# -- 7: a batch's time left when files fail -------------------------------------------------
@pytest.fixture
def timed_batch(window):
    """The batch panel on a clock of the test's own (``clock[0]``), as if a batch of
    ``start(n)`` images ran; ``done(index, status)`` finishes one."""
    from types import SimpleNamespace

    panel = window.batch
    clock = [100.0]
    panel.clock = lambda: clock[0]
    panel.job = SimpleNamespace(gen=77, cancel=threading.Event())
    yield SimpleNamespace(
        panel=panel, clock=clock, start=lambda n: panel._on_started(77, n),
        done=lambda i, status="ok": panel._on_item_done(77, i, SimpleNamespace(status=status)))
    panel.job = None


def test_a_failed_file_does_not_set_the_batchs_pace(timed_batch) -> None:
    """A broken first file (done in no time) made the panel say "about 0 s left" through
    the next photo's ten seconds."""
    b = timed_batch
    b.start(3)
    b.clock[0] += 0.01
    b.done(0, "failed")
    assert b.panel.eta.text() == ""  # no pace yet: no figure rather than "0 s"
    b.clock[0] += 10.0
    b.done(1)
    assert b.panel.eta.text() == "about 10 s left"  # one photo left, ten seconds each


def test_small_photos_left_read_a_second_not_none(timed_batch) -> None:
    # Photos of a tenth of a second each: "about 0 s left" with two still to do.
    b = timed_batch
    b.start(4)
    for n in range(4):
        b.clock[0] += 0.1
        b.done(n)
        if n == 1:
            assert b.panel.eta.text() == "about 1 s left"
    assert b.panel.eta.text() == ""  # all done: nothing left to estimate


# -- 8: opening an image that is already queued --------------------------------------------
def test_opening_a_queued_image_again_shows_it(qtbot, window, images) -> None:
    """It said "No new images found there" and left another image on screen."""
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths(images[:2])
    assert window.session.current.path == images[0]
    assert window.open_paths([images[1]]) == 0
    assert window.session.current.path == images[1]
    assert window.status.text() == f"{images[1].name} is already in the queue"


def test_opening_a_photo_changed_since_its_result_enhances_it_again(qtbot, window, images
                                                                    ) -> None:
    """A photo replaced on disk kept its old result: opened again it was "already in the
    queue", showing the old picture (and Save wrote that under the photo's name)."""
    import numpy as np
    from PIL import Image

    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT) as first:
        window.open_paths([images[0]])
    old_size = first.args[0].loaded.pixels.shape[:2]
    h, w = old_size[0] + 8, old_size[1] + 16  # another picture, another size
    Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(images[0], quality=40)
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT) as again:
        assert window.open_paths([images[0]]) == 0
        assert window.status.text() == (f"{images[0].name} changed on disk since it was "
                                        f"enhanced: enhanced again")
    assert again.args[0].loaded.pixels.shape[:2] == (h, w)
    assert window.session.current.path == images[0]


def test_delete_takes_one_image_out_of_the_queue(qtbot, window, images) -> None:
    """Only Clear took images out of the queue: an unwanted photo stayed, and ran."""
    from PySide6.QtCore import Qt

    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths(images[:2])
    assert window.session.current.path == images[0]
    window.queue.list.setFocus()
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        qtbot.keyClick(window.queue.list, Qt.Key.Key_Delete)
    assert [i.path for i in window.session.queue.items] == [images[1]]
    assert window.queue.list.count() == 1 and window.session.current.path == images[1]
    assert "Remove from queue" in [a.text() for a in window.queue.list.actions()]
    window.queue.remove_action.trigger()  # the last one: back to the drop zone
    assert window.session.queue.items == [] and window.stack.currentWidget() is \
        window.drop_zone


def test_a_message_is_not_replaced_at_once_by_progress(qtbot, window) -> None:
    """"Nothing saved: … changed on disk" was replaced by "Computing exit 1…" within 70
    ms, in the error's red."""
    window.show_message("Nothing saved: photo.jpg changed on disk", error=True)
    window._on_progress("exit", 0, 5, None)
    assert window.status.text() == "Nothing saved: photo.jpg changed on disk"
    window._message_until = 0.0  # read by now
    window._on_progress("exit", 1, 5, None)
    assert window.status.text() == "Computing exit 2…" and window.status.styleSheet() == ""
    # Another photo shown: the last one's message does not hold its progress.
    window.show_message("photo.jpg: truncated or corrupt image data", error=True)
    window._on_current(None)
    window._on_progress("exit", 0, 5, None)
    assert window.status.text() == "Computing exit 1…"


def test_showing_a_done_photo_leaves_no_busy_bar_from_another(qtbot, window, images
                                                              ) -> None:
    """The bar of a photo still computing (Compute all) stayed up over a done photo
    selected after it, and after every job had ended."""
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths(images[:2])
    first, second = window.session.queue.items
    qtbot.waitUntil(lambda: second.status == "done", timeout=TIMEOUT)
    window.session.compute_all()  # the first photo, on screen, busy
    assert window.progress.isVisible()
    window.queue.select(second)
    assert not window.progress.isVisible() and not window.compare.busy
    assert window.windowTitle() == f"{second.name} – RBQE Studio"


# -- 9: the Info panel's times add up --------------------------------------------------------
def test_the_info_panels_times_add_up_to_the_total(qtbot, window, images) -> None:
    """The exit card said "Σ 11.53 s" (network and IQA), Info and the status bar 11.76 s:
    the rest of the run (the input made ready, the output finished) was nowhere."""
    from rbqe_studio.state import fmt_ms

    window.session.mode_override = "all"
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT) as done:
        window.open_paths([images[0]])
    r = done.args[0].result
    ms, _ = done.args[0].chosen_cost()
    upto = [e for e in r.exits if e.exit <= r.chosen]
    network, iqa = sum(e.time_ms for e in upto), sum(e.iqa_ms for e in upto)
    fields = window.info.fields
    assert fields["Network"].text() == fmt_ms(network) and fields["IQA"].text() == fmt_ms(iqa)
    other = ms - network - iqa
    assert other >= 0
    assert fields["Other"].text() == (f"{fmt_ms(other)} (input and output)" if other >= 1
                                      else "–")
    assert fields["Total"].text().startswith(fmt_ms(ms))


# -- 10: rows done under an earlier mode ---------------------------------------------------
def test_rows_done_under_an_earlier_mode_say_so_until_viewed(qtbot, window, images) -> None:
    """Images not on screen kept the old mode's exit in their rows without a word (a
    photo said "Exit 4" until viewed, then "Exit 2")."""
    from rbqe_studio.queue_panel import status_text
    from rbqe_studio.state import DONE

    window.session.background = True
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths(images[:2])
    other = window.session.queue.items[1]
    qtbot.waitUntil(lambda: other.status == DONE, timeout=TIMEOUT)
    assert not status_text(other).endswith("earlier mode")
    panel = window.settings_panel
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        panel.mode.setCurrentIndex(panel.mode.findData("2"))
    assert status_text(other).endswith(" · earlier mode")
    assert not window.session.current.stale  # the viewed one is chosen again at once
    window.queue.select(other)  # shown at once as cached, then chosen again
    qtbot.waitUntil(lambda: not other.stale, timeout=TIMEOUT)
    assert other.exit == 2
    assert not status_text(other).endswith("earlier mode")


def test_removing_an_image_under_a_link_moved_since_takes_it_out(qtbot, window, images,
                                                                  tmp_path) -> None:
    """Re-pointed after the image was queued, the card's folder link gave its path
    another key: the row went and "removed" was said, but the image stayed queued."""
    card = tmp_path / "card"
    card.symlink_to(images[0].parent, target_is_directory=True)
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths([card / images[0].name, images[1]])
    moved = tmp_path / "disk2"
    moved.mkdir()
    card.unlink()
    card.symlink_to(moved, target_is_directory=True)
    item = window.session.current
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.remove_from_queue(item)
    assert [i.path for i in window.session.queue.items] == [images[1]]
    assert window.queue.list.count() == 1 and window.session.current.path == images[1]
    window.remove_from_queue(item)  # already out: nothing more goes, nothing is said
    assert window.queue.list.count() == 1
    assert window.status.text() != f"{item.name} removed from the queue"


def test_the_queues_menu_acts_on_the_row_right_clicked(qtbot) -> None:
    """Right-clicking a row made it current (which started enhancing it and stopped the
    background job), and Remove was offered on empty space, for the current row."""
    from PySide6.QtCore import QPoint, Qt

    from rbqe_studio.queue_panel import QueuePanel

    panel = QueuePanel()
    qtbot.addWidget(panel)
    panel.resize(260, 400)
    panel.show()
    qtbot.waitExposed(panel)
    items = [QueueItem(Path(f"/photos/{n}.jpg")) for n in "abc"]
    panel.add_items(items)
    panel.select(items[0])
    lst = panel.list
    centre = lst.visualItemRect(lst.item(1)).center()
    qtbot.mouseClick(lst.viewport(), Qt.MouseButton.RightButton, pos=centre)
    assert panel.current() is items[0]
    menu = panel.row_menu(centre)
    assert menu is not None and [a.text() for a in menu.actions()] == ["Remove from queue"]
    with qtbot.waitSignal(panel.remove_requested) as asked:
        menu.actions()[0].trigger()
    assert asked.args == [items[1]]
    empty = QPoint(10, lst.viewport().height() - 5)
    assert lst.itemAt(empty) is None and panel.row_menu(empty) is None
    # The keys still act on the current row.
    with qtbot.waitSignal(panel.remove_requested) as asked:
        panel.remove_action.trigger()
    assert asked.args == [items[0]]


def test_a_failed_photo_repaired_and_opened_again_is_enhanced(qtbot, window, images,
                                                             tmp_path) -> None:
    """It stayed failed, "already in the queue", however often it was opened."""
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(images[0].read_bytes()[:300])  # a truncated JPEG
    with qtbot.waitSignal(window.session.view_failed, timeout=TIMEOUT):
        window.open_paths([bad])
    bad.write_bytes(images[0].read_bytes())  # the copy finished
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT) as done:
        assert window.open_paths([bad]) == 0
        assert window.status.text() == "broken.jpg could not be enhanced before: trying it again"
    assert done.args[0].path == bad and window.session.current.status == DONE


def test_a_folder_opened_again_tries_its_failed_and_changed_photos_again(
        qtbot, window, images, tmp_path) -> None:
    """Opened again, a folder said "No new images found in …": its repaired photo stayed
    failed, its changed one kept its old result."""
    folder = tmp_path / "card"
    folder.mkdir()
    bad, good = folder / "a_broken.jpg", folder / "b_good.jpg"
    bad.write_bytes(images[0].read_bytes()[:300])  # a truncated JPEG
    good.write_bytes(images[1].read_bytes())
    with qtbot.waitSignal(window.session.view_failed, timeout=TIMEOUT):
        window.open_paths([folder])
    item_bad, item_good = window.session.queue.items
    qtbot.waitUntil(lambda: item_good.status == DONE, timeout=TIMEOUT)
    bad.write_bytes(images[0].read_bytes())  # repaired
    good.write_bytes(images[2].read_bytes())  # replaced
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        assert window.open_paths([folder]) == 0
        assert window.status.text() == ("2 images enhanced again (changed on disk, or "
                                         "failed before)")
    qtbot.waitUntil(lambda: item_bad.status == DONE and item_good.status == DONE,
                    timeout=TIMEOUT)
    assert window.open_paths([folder]) == 0  # nothing changed since: nothing to do
    assert window.status.text() == f"No new images found in {folder}"


def test_save_says_a_changed_photo_is_enhanced_again_before_any_dialog(qtbot, window,
                                                                      images) -> None:
    """Save and Save all asked for a name or a folder (and whether to replace files),
    and only then said "Nothing saved: … changed on disk"."""
    import numpy as np
    from PIL import Image

    def asked(*_args) -> str:
        raise AssertionError("a dialog was opened")

    window._save_dialog = window._folder_dialog = asked
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths([images[0]])
    for save in (window.save_result, window.save_all_exits):
        Image.fromarray(np.full((40, 56, 3), 90 if save == window.save_result else 150,
                                np.uint8)).save(images[0], quality=40)
        with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
            save()
            assert window.status.text() == (
                f"Nothing saved: {images[0].name} changed on disk since it was enhanced, "
                f"so it is enhanced again; save it then")
            assert not window.acts.save.isEnabled()
        # The new run of a small photo ends within a second: its line follows the
        # message instead of replacing it (it was gone at once).
        assert window.status.text().startswith(f"Nothing saved: {images[0].name} changed")
        assert f"{images[0].name}: exit " in window.status.text()
        window._message_until = 0.0  # read by the next save
