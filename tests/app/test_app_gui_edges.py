"""Rough edges a user saw in the themed window: words cut at the widths people use, a
stale zoom beside a file that could not be read, a cancelled batch's figures."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication, QLabel, QScrollArea

from rbqe.batch import BatchSummary, ItemReport
from rbqe_studio.batch_panel import summary_html, summary_line
from rbqe_studio.jobs import BatchOutcome

TIMEOUT = 120_000  # generous: a loaded CI machine can be very slow
MIN_WIDTH = 882  # the window's narrowest, themed
WIDTHS = (MIN_WIDTH, 900, 1280, 1366)


@pytest.fixture
def themed(qapp):
    """The app's own theme (its bold 11 pt rule, its paddings), as users see it; undone
    after the test so other tests keep the plain style."""
    from rbqe_studio import theme

    saved = qapp.style().name(), qapp.palette(), qapp.font(), qapp.styleSheet()
    theme.apply(qapp)
    yield
    style, palette, font, sheet = saved
    qapp.setStyleSheet(sheet)
    qapp.setStyle(style)
    qapp.setPalette(palette)
    qapp.setFont(font)


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
    assert "Time: 21.53&nbsp;s in all, up to the cancel" in text
    assert "Average: 12.31&nbsp;s per processed image (1 of 4 images done)" in text
    assert "per image<" not in text
    assert summary_line(cancelled_outcome()) == (
        "Batch cancelled: 1 processed, 0 failed, 0 skipped, 3 not done")


def test_a_finished_batch_reads_the_same_way() -> None:
    done = [ItemReport(Path(f"{n}.jpg"), "ok", exit=3, times_ms={"total": 5000.0})
            for n in "ab"]
    outcome = BatchOutcome(BatchSummary(done, 12000.0, False, total=2), done, False, 2)
    text = summary_html(outcome)
    assert "not done" not in text and "up to" not in text
    assert "Time: 12.00&nbsp;s in all · average 5.00&nbsp;s per processed image" in text
    assert summary_line(outcome) == "Batch finished: 2 processed, 0 failed, 0 skipped"
