"""Defects a reviewer met driving the app: window width, the exit rule shown, costs,
errors, locked forms and the small words."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication, QLineEdit, QScrollArea

from rbqe.engine import Enhancer
from rbqe.errors import RBQEError
from rbqe.exit_policy import FEATURES, Decision, ExitPolicy
from rbqe.weights import set_policy
from rbqe_studio.queue_panel import status_text
from rbqe_studio.state import DONE, FAILED, fmt_ms
from tests.helpers import save_tiny_weights, tiny_enhancer

TIMEOUT = 120_000  # generous: a loaded CI machine can be very slow
NARROW = 1000  # a 1366-px laptop screen, with room to spare


def finish(qtbot, window, paths) -> object:
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT) as blocker:
        window.open_paths(paths)
    return blocker.args[0]


def gate_weights(path: Path) -> Path:
    """Tiny weights whose default exit rule is a learned gate (it always goes on), from
    exit 2; their threshold rule's from exit 3 (as the shipped weights')."""
    save_tiny_weights(path, threshold=0.3, min_exit=3)
    n = len(FEATURES)
    gate = ExitPolicy("gate", {"features": list(FEATURES), "tau": 0.065, "min_exit": 2,
                               "mean": [[0.0] * n] * 4, "scale": [[1.0] * n] * 4,
                               "coef": [[0.0] * n] * 4, "bias": [9.0] * 4})
    set_policy(path, "gate", gate, default=True)
    return path


# -- 1, 2: width -------------------------------------------------------------------------
def test_the_window_stays_narrow_and_never_grows_by_itself(qtbot, window, images,
                                                           tmp_path) -> None:
    window.resize(NARROW, 700)
    assert window.minimumSizeHint().width() <= NARROW
    finish(qtbot, window, [images[0]])
    assert window.minimumSizeHint().width() <= NARROW
    window.settings_panel.set_weights_threshold(0.855, 3)  # longer words in the strip
    panel = window.batch
    panel.input.set_text(str(images[0].parent))
    panel.output.set_text(str(tmp_path / "out"))
    assert panel.run()
    qtbot.waitUntil(lambda: panel.outcome is not None, timeout=TIMEOUT)
    for tab in (window.info, window.settings_panel, window.batch):
        window.tabs.setCurrentWidget(tab)
        QApplication.processEvents()
        assert window.minimumSizeHint().width() <= NARROW
        assert window.width() == NARROW


def test_all_six_cards_fit_at_the_default_width(qtbot, window, images) -> None:
    window.resize(1280, 800)
    qtbot.waitUntil(lambda: window.width() == 1280)
    finish(qtbot, window, [images[0]])
    scroll = window.compare.strip.findChild(QScrollArea, "cardScroll")
    QApplication.processEvents()
    assert scroll.horizontalScrollBar().maximum() == 0
    assert all(card.width() >= card.minimumWidth() for card in window.compare.strip.cards)


# -- 3, 4: the exit rule -------------------------------------------------------------------
def test_a_learned_gate_is_described_from_the_start(qtbot, store, images, tmp_path) -> None:
    from rbqe_studio.main_window import MainWindow

    weights = gate_weights(tmp_path / "gate.safetensors")
    win = MainWindow(store, lambda spec: Enhancer(spec.weights, device="cpu", tile=0),
                     weights=str(weights))
    qtbot.addWidget(win)
    strip, panel = win.compare.strip, win.settings_panel
    # Before the engine loads: read from the metadata, never a threshold rule.
    assert strip.threshold_label.text() == "Learned exit gate"
    assert "learned exit gate" in panel.mode.itemText(0)
    assert not panel.threshold.isEnabled() and "not used" in panel.threshold_note.text()
    assert panel.use_threshold.isVisibleTo(panel) and not panel.use_threshold.isChecked()
    r = finish(qtbot, win, [images[0]]).result
    assert strip.threshold_label.text() == "Learned exit gate" and r.chosen == 5
    card = strip.cards[5]  # the chosen card: why, in words, and still its cost
    assert card.data.reason == "last exit: the gate saw more to gain at each before"
    assert card.data.lines[1].endswith("GMAC")
    with qtbot.waitSignal(win.session.view_finished, timeout=TIMEOUT):
        panel.use_threshold.setChecked(True)  # opt in to the score threshold
    # The threshold rule's earliest exit, not the gate's (it read "from exit 2").
    assert strip.threshold_label.text() == "Threshold 0.300 · from exit 3"
    assert panel.threshold_note.text().endswith("auto stops from exit 3 on")
    assert panel.threshold.isEnabled() and "stop at the threshold" in panel.mode.itemText(0)
    win.close()


def test_the_rule_is_loading_not_guessed_before_the_engine_says(qtbot, window,
                                                                images) -> None:
    assert window.compare.strip.threshold_label.text() == "Exit rule: loading…"
    finish(qtbot, window, [images[0]])  # the tiny model: the assessor rule
    assert window.compare.strip.threshold_label.text().startswith("Threshold")


def test_the_chosen_card_says_why_and_keeps_its_gmac(qtbot, window, images) -> None:
    window.settings_panel.threshold.setValue(0.0)  # exit 1 reaches it
    r = finish(qtbot, window, [images[0]]).result
    card = window.compare.strip.cards[r.chosen]
    assert card.data.reason == "stopped: score ≥ 0.000"
    assert card.data.lines[0].startswith("Σ") and card.data.lines[1].endswith("GMAC")


def test_score_colours_follow_the_rule(qtbot) -> None:
    """Exit 5 ends the walk when no score reached the threshold: not a pass (not green)."""
    from rbqe_studio.exits import CardData, ExitCard

    card = ExitCard(5)
    qtbot.addWidget(card)
    last = Decision(True, 5, "last exit", {"score": 0.77, "threshold": 0.99}, "…")
    card.set_data(CardData("Exit 5", score=0.77, state="ready", decision=last))
    assert not card.score_passes()
    reached = Decision(True, 3, "assessor", {"score": 0.87, "threshold": 0.85}, "…")
    card.set_data(CardData("Exit 3", score=0.87, state="ready", decision=reached))
    assert card.score_passes()


def test_scores_are_coloured_only_where_they_decide(qtbot) -> None:
    """Under the learned gate the chosen exit's 0.571 was green beside exit 3's amber
    0.596, as if the lower score were the better; a score colours only under a score
    threshold, and the card's tooltip says what the number is."""
    from rbqe_studio.exits import GOOD, NEUTRAL, WEAK, CardData, ExitCard, ExitStrip

    card = ExitCard(4)
    qtbot.addWidget(card)
    gate = Decision(True, 4, "gate", {"tau_db": 0.05, "predicted_gain_db": 0.04}, "…")
    card.set_data(CardData("Exit 4", score=0.571, state="ready", decision=gate))
    assert card.threshold is None and card.score_colour() == NEUTRAL
    card.threshold = 0.5  # a score threshold in Settings: the score decides
    reached = Decision(True, 4, "assessor", {"score": 0.571, "threshold": 0.5}, "…")
    card.set_data(CardData("Exit 4", score=0.571, state="ready", decision=reached))
    assert card.score_colour() == GOOD
    below = Decision(False, 4, "assessor", {"score": 0.571, "threshold": 0.6}, "…")
    card.set_data(CardData("Exit 4", score=0.571, state="ready", decision=below))
    assert card.score_colour() == WEAK
    strip = ExitStrip()
    qtbot.addWidget(strip)
    strip.set_exit(2, QImage(8, 8, QImage.Format.Format_RGB32), 0.6, 10.0, 1.0, gate)
    assert "blind quality score" in strip.cards[2].toolTip()
    # The weights' own assessor rule is a score threshold too, not only one in Settings.
    assert "only under a score-threshold rule (the weights' own, or one set in Settings)" \
        in strip.cards[2].toolTip()


# -- 5, 6, 7: progress, device errors, costs ---------------------------------------------
def test_clear_while_an_image_runs_hides_the_progress(qtbot, window, tmp_path, jpeg) -> None:
    big = jpeg(tmp_path / "big.jpg", size=(512, 384))
    window.session.mode_override = "all"
    with qtbot.waitSignal(window.session.view_busy, timeout=TIMEOUT):
        window.open_paths([big])
    assert window.progress.isVisible()
    window.clear_queue()
    assert not window.progress.isVisible()
    assert not window.queue.clear_button.isEnabled()  # nothing left to clear


def test_a_device_error_is_not_called_a_missing_model(qtbot, store, images) -> None:
    from rbqe_studio.main_window import MainWindow

    def factory(spec):
        if spec.device == "cuda:3":
            raise RBQEError("device 'cuda:3' requested but CUDA is not available")
        return tiny_enhancer()

    store.setValue("settings/device", "cuda:3")
    win = MainWindow(store, factory, check_weights=False)
    qtbot.addWidget(win)
    win.show()
    with qtbot.waitSignal(win.session.engine_error, timeout=TIMEOUT):
        win.open_paths([images[0]])
    item = win.session.queue.items[0]
    qtbot.waitUntil(lambda: item.status == "blocked", timeout=TIMEOUT)
    assert "device" in status_text(item) and "no model" not in status_text(item)
    assert win.banner.settings_button.isVisible() and not win.banner.button.isVisible()
    assert "cuda:3" in win.banner.text() and "cuda:3" in win.device_label.text()
    assert "no usable model" not in win.status.text()
    win.banner.settings_button.click()
    assert win.tabs.currentWidget() is win.settings_panel
    with qtbot.waitSignal(win.session.view_finished, timeout=TIMEOUT):
        panel = win.settings_panel
        panel.device.setCurrentIndex(panel.device.findData("cpu"))
    assert not win.banner.isVisible() and item.status == DONE
    assert "cpu" in win.device_label.text()
    win.close()


def test_a_forced_exit_reports_what_it_cost(qtbot, window, images) -> None:
    window.session.mode_override = "all"
    finish(qtbot, window, [images[0]])
    panel = window.settings_panel
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT) as blocker:
        panel.mode.setCurrentIndex(panel.mode.findData("2"))
    r = blocker.args[0].result
    ms, gmacs = blocker.args[0].chosen_cost()
    assert r.chosen == 2 and len(r.exits) == 5 and ms < r.total_ms
    assert gmacs == r.exit_result(2).gmacs
    item = window.session.queue.items[0]
    assert item.time_ms == ms and fmt_ms(ms) in status_text(item)
    assert fmt_ms(ms) in window.status.text() and fmt_ms(r.total_ms) not in window.status.text()
    assert window.info.fields["Total"].text().startswith(fmt_ms(ms))
    assert fmt_ms(r.total_ms) in window.info.fields["Computed"].text()


# -- 8, 9: disabled fields, the batch form -------------------------------------------------
def test_disabled_fields_look_disabled(qtbot) -> None:
    from rbqe_studio.theme import STYLE

    edit = QLineEdit("some/folder")
    edit.setStyleSheet(STYLE)
    qtbot.addWidget(edit)
    edit.resize(160, 30)
    enabled = edit.grab().toImage()
    edit.setEnabled(False)
    assert edit.grab().toImage() != enabled


def test_the_batch_form_locks_while_running_and_cancel_says_so(qtbot, window, tmp_path,
                                                               jpeg) -> None:
    src = tmp_path / "many"
    for i in range(8):
        jpeg(src / f"p{i}.jpg", size=(96, 64), seed=i)
    panel = window.batch
    panel.input.set_text(str(src))
    panel.output.set_text(str(tmp_path / "out"))
    assert panel.run()
    fields = (panel.input, panel.output, panel.recursive, panel.overwrite)
    assert not any(w.isEnabled() for w in fields)
    qtbot.waitUntil(lambda: panel.bar.maximum() == 8, timeout=TIMEOUT)
    window.acts.cancel_batch.trigger()
    assert panel.current.text().startswith("Cancelling") and panel.eta.text() == ""
    assert not window.acts.cancel_batch.isEnabled() and not panel.cancel.isEnabled()
    assert "Cancelling" in window.status.text()
    qtbot.waitUntil(lambda: panel.outcome is not None, timeout=TIMEOUT)
    assert all(w.isEnabled() for w in fields)
    if panel.outcome.cancelled and panel.outcome.summary is not None:
        done = panel.outcome.summary.processed
        if done:
            assert f"{done} of 8 images done" in panel.summary.toPlainText()


# -- 11, 12, 13: zoom, unreadable files, small words ---------------------------------------
def test_zoom_reads_100_percent_at_1to1_on_a_high_dpi_screen(qtbot, window, images,
                                                             monkeypatch) -> None:
    finish(qtbot, window, [images[0]])
    view = window.compare.view
    monkeypatch.setattr(view, "devicePixelRatioF", lambda: 2.0)
    view.actual_size()
    assert window.compare.zoom_label.text() == "100%"


def test_an_unreadable_file_is_named_and_can_be_read_again_once_repaired(
        qtbot, window, images, tmp_path) -> None:
    finish(qtbot, window, [images[0]])
    window.compare.view.zoom(2.0)
    bad = tmp_path / "in" / "broken.jpg"
    bad.write_bytes(b"not a jpeg at all")
    with qtbot.waitSignal(window.session.view_failed, timeout=TIMEOUT):
        window.open_paths([bad])
    assert window.session.current.status == FAILED
    assert window.info.fields["File"].text() == "broken.jpg"
    assert window.compare.zoom_label.text() == ""  # not the previous image's zoom
    assert window.compare.strip.cards[0].data.state == "unreadable"
    bad.write_bytes(images[0].read_bytes())  # the user repairs it, then Process again
    assert window.acts.redo.isEnabled()
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.acts.redo.trigger()
    assert window.session.current.status != FAILED


def test_same_names_show_their_folder_and_formats_read_well(qtbot, window, jpeg,
                                                            tmp_path) -> None:
    from rbqe_studio.drop_zone import formats_text
    from rbqe_studio.queue_panel import NAME_ROLE

    a = jpeg(tmp_path / "one" / "photo.jpg")
    b = jpeg(tmp_path / "two" / "photo.jpg", seed=1)
    window.session.add_paths([a, b])
    names = [window.queue.list.item(i).data(NAME_ROLE) for i in range(2)]
    assert names == ["one/photo.jpg", "two/photo.jpg"]
    text = formats_text()
    assert "JPG" not in text and "JPEG" not in text and "PNG" in text and " and " in text


def test_opening_batch_results_already_queued_says_so(qtbot, window, images, tmp_path) -> None:
    panel = window.batch
    panel.input.set_text(str(images[0].parent))
    panel.output.set_text(str(tmp_path / "out"))
    window.open_paths(images)
    assert panel.run()
    qtbot.waitUntil(lambda: panel.outcome is not None, timeout=TIMEOUT)
    panel.open_button.click()
    assert "already in the queue" in window.status.text()


@pytest.mark.parametrize("rule", ["gate", "assessor"])
def test_reason_words(rule) -> None:
    from rbqe_studio.exits import card_reason

    if rule == "gate":
        d = Decision(True, 3, "gate", {"tau_db": 0.065, "predicted_gain_db": 0.01}, "…")
        assert card_reason(d) == "stopped: gate predicts < 0.065 dB more"
    else:
        d = Decision(True, 5, "last exit", {"score": 0.7, "threshold": 0.99}, "…")
        assert card_reason(d) == "last exit: no score reached 0.990"



def test_info_lists_the_metadata_and_what_the_reader_warned_of(qtbot, window, tmp_path
                                                               ) -> None:
    from PIL import Image

    from tests.helpers import jpeg_pixels

    pages = [Image.fromarray(jpeg_pixels(40, 48, seed=n)) for n in (1, 2, 3)]
    tiff = tmp_path / "scan.tif"
    pages[0].save(tiff, save_all=True, append_images=pages[1:], dpi=(300, 300))
    finish(qtbot, window, [tiff])
    assert "300 dpi" in window.info.fields["Metadata"].text()
    assert window.info.fields["Note"].text() == (
        "Only the first of 3 pages is enhanced (multi-page TIFF); the output has that page "
        "only.")


def test_info_says_a_cmyk_photo_was_converted(qtbot, window, tmp_path) -> None:
    """A CMYK JPEG's Colour read "RGB" beside the note that it was CMYK."""
    from PIL import Image

    from tests.helpers import jpeg_pixels

    cmyk = tmp_path / "print.jpg"
    Image.fromarray(jpeg_pixels(40, 48, seed=4)).convert("CMYK").save(cmyk, quality=90)
    finish(qtbot, window, [cmyk])
    assert window.info.fields["Colour"].text().startswith("RGB (converted from CMYK)")


def test_info_lists_captions_and_png_text(qtbot, window, tmp_path) -> None:
    from PIL import Image, PngImagePlugin

    from tests.helpers import jpeg_pixels

    tiff = tmp_path / "scan.tif"
    iim = b"\x1c\x02\x78\x00\x07Harbour"  # an IPTC-IIM caption
    Image.fromarray(jpeg_pixels(40, 48, seed=1)).save(tiff, tiffinfo={33723: iim})
    finish(qtbot, window, [tiff])
    assert "IPTC" in window.info.fields["Metadata"].text()
    info = PngImagePlugin.PngInfo()
    info.add_text("Title", "Harbour")
    png = tmp_path / "titled.png"
    Image.fromarray(jpeg_pixels(40, 48, seed=2)).save(png, pnginfo=info)
    finish(qtbot, window, [png])
    assert "PNG text Title" in window.info.fields["Metadata"].text()


def test_info_says_a_gps_location_is_there_and_reads_dpi_plainly(qtbot, window,
                                                                 tmp_path) -> None:
    from PIL import Image

    from rbqe_studio.state import dpi_text
    from tests.helpers import jpeg_pixels

    exif = Image.Exif()
    exif.get_ifd(0x8825)[2] = (52.0, 31.0, 12.0)  # GPSLatitude: kept by default
    path = tmp_path / "walk.png"
    Image.fromarray(jpeg_pixels(40, 48, seed=3)).save(path, exif=exif.tobytes(), dpi=(150, 150))
    finish(qtbot, window, [path])
    text = window.info.fields["Metadata"].text()
    assert "GPS location" in text and "150 dpi" in text  # PNG's pixels/metre: 150.012
    assert [dpi_text(d) for d in (150.012, 299.9994, 72.5, 96.0)] == ["150", "300", "72.5", "96"]


def test_info_says_no_rule_chose_a_forced_exit(qtbot, store, images, tmp_path) -> None:
    # Forced to exit 2 under the weights' learned gate, Info said "the learned gate
    # decides".
    from rbqe_studio.main_window import MainWindow

    weights = gate_weights(tmp_path / "gate.safetensors")
    win = MainWindow(store, lambda spec: Enhancer(spec.weights, device="cpu", tile=0),
                     weights=str(weights))
    qtbot.addWidget(win)
    win.settings.exit_mode = "2"
    r = finish(qtbot, win, [images[0]]).result
    assert r.chosen == 2
    assert win.info.fields["Threshold"].text() == "– (not used: the exit is forced)"
    win.close()


def test_a_batch_stopped_by_its_folder_says_why() -> None:
    from rbqe.batch import BatchSummary, ItemReport
    from rbqe_studio.batch_panel import summary_html, summary_line
    from rbqe_studio.jobs import BatchOutcome

    done = [ItemReport(Path("a.jpg"), "ok", exit=3, times_ms={"total": 5.0}),
            ItemReport(Path("b.jpg"), "failed", error="out/b.png: disk full")]
    why = "out: cannot write to the output folder (disk full); batch stopped"
    outcome = BatchOutcome(BatchSummary(done, 10.0, False, why, 5), done, False, 5)
    assert summary_line(outcome).startswith("Batch stopped: 1 processed, 1 failed")
    assert why in summary_line(outcome)
    page = summary_html(outcome)
    assert "Batch stopped" in page and "Stopped after 2 of 5 images" in page
    assert "Batch finished" not in page


def test_a_batchs_notes_are_shown_not_only_logged() -> None:
    """A damaged JPEG, metadata an output cannot hold, an output renamed: the batch said
    so in the log only; the app's summary showed none of it."""
    from rbqe.batch import BatchSummary, ItemReport
    from rbqe_studio.batch_panel import NOTES_SHOWN, summary_html, summary_line
    from rbqe_studio.jobs import BatchOutcome

    done = [ItemReport(Path("a.jpg"), "ok", exit=3, times_ms={"total": 5.0},
                       warnings=["its JPEG data is damaged (libjpeg: Corrupt JPEG data: bad "
                                 "Huffman code): parts of the picture <may> be garbled"]),
            ItemReport(Path("b.jpg"), "failed", error="b.jpg: truncated",
                       warnings=["never shown twice"])]
    outcome = BatchOutcome(BatchSummary(done, 10.0, False, None, 2), done, False, 2)
    page = summary_html(outcome)
    assert "<b>Notes</b>" in page and "a.jpg: its JPEG data is damaged" in page
    assert summary_line(outcome).endswith("1 failed, 0 skipped, 1 with notes (see Batch)")
    assert "&lt;may&gt;" in page and "never shown twice" not in page
    many = [ItemReport(Path(f"p{i}.jpg"), "ok", exit=3, times_ms={"total": 5.0},
                       warnings=["a note"]) for i in range(NOTES_SHOWN + 5)]
    page = summary_html(BatchOutcome(BatchSummary(many, 10.0, False, None, len(many)), many,
                                     False, len(many)))
    assert page.count("a note") == NOTES_SHOWN and "… and 5 more in the log file" in page
    quiet = [ItemReport(Path("c.jpg"), "ok", exit=3, times_ms={"total": 5.0})]
    assert "Notes" not in summary_html(BatchOutcome(BatchSummary(quiet, 1.0, False, None, 1),
                                                    quiet, False, 1))
