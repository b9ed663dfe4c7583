"""What a tester's trial of the app found: the settings' score note, the JPEG/WebP quality
and the settings' tooltips, Save onto the photo's own name, Open in viewer after a batch
that skipped, a missing input folder and what a batch counts."""

from __future__ import annotations

import os
from pathlib import Path

from rbqe.batch import BatchSummary, ItemReport
from rbqe_studio.jobs import BatchOutcome
from rbqe_studio.settings import AppSettings
from rbqe_studio.state import DONE

TIMEOUT = 120_000  # generous: a loaded CI machine can be very slow


def settings_panel(qtbot):
    from rbqe_studio.settings_panel import SettingsPanel

    panel = SettingsPanel(AppSettings())
    qtbot.addWidget(panel)
    return panel


# -- 1: the score note names the exits the photo has -------------------------------------
def test_the_score_note_names_the_exits_it_is_of(qtbot) -> None:
    """A tiled photo's one exit is exit 5, a batch's output read back exit 3: "(exit 1)"
    it said of both."""
    panel = settings_panel(qtbot)
    panel.set_scores([0.612], [5])
    assert panel.score_range.text() == "This photo scores 0.612 (exit 5)"
    panel.set_scores([0.7, 0.8], [3, 5])
    assert panel.score_range.text().endswith("(exits 3, 5)")
    panel.set_scores([0.7, 0.9, 0.8])  # as the window calls it: exits 1 to 3
    assert panel.score_range.text() == "This photo scores 0.700–0.900 (exits 1–3)"
    panel.set_scores([])
    assert panel.score_range.text() == ""


# -- 2 and 5: the quality always applies, and every setting says what it does ----------------
def test_the_quality_can_be_set_under_png_and_says_where_it_applies(qtbot) -> None:
    """A Save to a .jpg name uses it while Format is PNG: it was greyed out there."""
    panel = settings_panel(qtbot)
    assert panel.settings.output_format == "png"
    assert panel.quality.isEnabled()
    assert "JPEG/WebP" in panel.quality.prefix()
    tip = panel.quality.toolTip()
    assert "every JPEG or WebP" in tip and "batch" in tip and "Save" in tip
    panel.quality.setValue(30)
    assert panel.settings.quality == 30


def test_every_setting_has_a_tooltip(qtbot) -> None:
    panel = settings_panel(qtbot)
    for widget in (panel.device, panel.mode, panel.threshold, panel.format, panel.quality,
                   panel.suffix):
        assert len(widget.toolTip()) > 40, widget


# -- 3: Save onto the photo's own name ---------------------------------------------------
def test_same_file_is_the_librarys_notion(tmp_path) -> None:
    from rbqe.io import same_file

    a = tmp_path / "a.jpg"
    a.write_bytes(b"x")
    os.link(a, tmp_path / "hard.jpg")
    (tmp_path / "soft.jpg").symlink_to(a)
    assert same_file(tmp_path / "hard.jpg", a) and same_file(tmp_path / "soft.jpg", a)
    assert same_file(tmp_path / "sub" / ".." / "a.jpg", a)
    (tmp_path / "b.jpg").write_bytes(b"x")
    assert not same_file(tmp_path / "b.jpg", a)
    assert not same_file(tmp_path / "missing.jpg", a)


def test_saving_onto_the_photo_by_its_bare_name_is_refused_before_asking(
        qtbot, window, images, monkeypatch) -> None:
    """"photo0" with the JPEG filter is the photo itself once ".jpg" is added: Save asked
    "Replace it?", and after Replace failed ("refusing to overwrite an input file")."""
    from types import SimpleNamespace

    from rbqe_studio import dialogs, main_window

    photo = images[0]
    before = photo.read_bytes()
    monkeypatch.setattr(main_window, "QFileDialog", SimpleNamespace(
        getSaveFileName=lambda *a: (str(photo.with_suffix("")), "JPEG (*.jpg *.jpeg)")))
    # The window's own question (the fixture's stand-in keeps every file unasked)
    monkeypatch.setattr(window, "_confirm_overwrite",
                        lambda path: main_window.MainWindow._confirm_overwrite(window, path))
    asked: list[str] = []
    warned: list[str] = []
    monkeypatch.setattr(dialogs, "_replace_or_cancel",
                        lambda parent, title, text: asked.append(text) or True)
    monkeypatch.setattr(dialogs, "_warn", lambda parent, title, text: warned.append(text))
    window.session.mode_override = 3
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths([photo])
    window.acts.save.trigger()
    assert asked == []
    assert len(warned) == 1 and "photo0.jpg" in warned[0] and str(photo.parent) in warned[0]
    assert "never writes over its input" in warned[0]
    assert window.status.text() == "Nothing saved: photo0.jpg kept"
    assert photo.read_bytes() == before
    # Another file of that name is still asked about.
    other = photo.parent / "other"
    other.with_suffix(".jpg").write_bytes(b"the user's own")
    monkeypatch.setattr(main_window, "QFileDialog", SimpleNamespace(
        getSaveFileName=lambda *a: (str(other), "JPEG (*.jpg *.jpeg)")))
    with qtbot.waitSignal(window.session.saved, timeout=TIMEOUT):
        window.acts.save.trigger()
    assert len(asked) == 1 and "other.jpg already exists" in asked[0] and len(warned) == 1


# -- 4: Open in viewer after a batch that skipped ------------------------------------------
def run_batch(qtbot, panel):
    panel.outcome = None
    assert panel.run()
    qtbot.waitUntil(lambda: panel.outcome is not None, timeout=TIMEOUT)
    return panel.outcome


def test_open_in_viewer_reads_the_outputs_an_earlier_batch_here_made(
        qtbot, window, images, tmp_path) -> None:
    """Run, then run again (all skipped: their auto outputs named no exit): Open in viewer
    enhanced every image again, though its tooltip said nothing is computed again. The
    output log notes the exit each auto output holds: the skipped rows say it."""
    panel, out = window.batch, tmp_path / "out"
    panel.input.set_text(str(images[0].parent))
    panel.output.set_text(str(out))
    assert window.settings.exit_mode == "auto"
    first = run_batch(qtbot, panel)
    assert [r.status for r in first.items] == ["ok"] * 3
    again = run_batch(qtbot, panel)
    assert [r.status for r in again.items] == ["skipped"] * 3
    assert [r.exit for r in again.items] == [r.exit for r in first.items]
    assert panel.open_button.toolTip() == ("Queue the images with their saved outputs "
                                           "(nothing is computed again)")
    assert "enhanced again" not in panel.summary.toPlainText()
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT) as blocker:
        panel.open_button.click()
    view = blocker.args[0]
    made = {r.input: r for r in first.items}
    assert view.saved == {made[view.path].exit: made[view.path].outputs[str(
        made[view.path].exit)]}  # read back, not computed
    assert all(i.status == DONE for i in window.session.queue.items)
    assert {i.path: i.exit for i in window.session.queue.items} == {
        p: r.exit for p, r in made.items()}


def test_open_in_viewer_names_the_images_it_enhances_again(qtbot, window, images,
                                                           tmp_path) -> None:
    """An output noted by an older version (its note says no exit) names no exit when a
    batch skips it: the image is enhanced again, and said so."""
    import json

    from rbqe.io import OUTPUT_LOG

    panel, out = window.batch, tmp_path / "out"
    panel.input.set_text(str(images[0].parent))
    panel.output.set_text(str(out))
    run_batch(qtbot, panel)
    log = out / OUTPUT_LOG
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    for e in entries:
        if e["output"] == "photo1_rbqe.png":
            e.pop("exit", None)  # as an older version noted it
    log.write_text("".join(json.dumps(e) + "\n" for e in entries))
    assert [r.status for r in run_batch(qtbot, panel).items] == ["skipped"] * 3
    tip = panel.open_button.toolTip()
    assert "nothing is computed again" not in tip
    assert "1 skipped image (photo1.jpg) is enhanced again" in tip
    assert "1 skipped image (photo1.jpg) is enhanced again" in panel.summary.toPlainText()
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT) as blocker:
        panel.open_button.click()
    assert blocker.args[0].saved  # photo0: read back
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT) as blocker:
        window.queue.select(window.session.queue.get(images[1]))
    assert blocker.args[0].saved == {}  # photo1: enhanced, as said


def test_again_text_counts_and_names() -> None:
    from rbqe_studio.batch_panel import again_text

    names = [Path(f"p{i}.jpg") for i in range(5)]
    assert again_text(names) == ("5 skipped images (p0.jpg, p1.jpg, p2.jpg and 2 more) are "
                                 "enhanced again in the viewer: their outputs, from an "
                                 "earlier run, do not say which exit they hold")


# -- 6: a missing input folder, and what a batch counts ------------------------------------
def test_a_missing_input_folder_is_named(qtbot, window, tmp_path) -> None:
    panel = window.batch
    missing = tmp_path / "gone"
    panel.input.set_text(str(missing))
    panel.output.set_text(str(tmp_path / "out"))
    with qtbot.waitSignal(panel.message) as blocker:
        assert not panel.run()
    assert blocker.args[0] == f"The input folder {missing} does not exist; choose another " \
                              f"for the batch."
    a_file = tmp_path / "a.jpg"
    a_file.write_bytes(b"x")
    panel.input.set_text(str(a_file))
    with qtbot.waitSignal(panel.message) as blocker:
        assert not panel.run()
    assert f"{a_file} is not a folder" in blocker.args[0]
    panel.input.set_text("")
    with qtbot.waitSignal(panel.message) as blocker:
        assert not panel.run()
    assert blocker.args[0] == "Choose an input folder for the batch."


def test_the_summary_counts_files_that_look_like_images() -> None:
    """fake.png (no PNG) and broken.jpg were counted among "8 images in the folder"."""
    from rbqe_studio.batch_panel import summary_html

    items = [ItemReport(Path(f"b{i}.jpg"), "skipped") for i in range(6)]
    items += [ItemReport(Path("broken.jpg"), "failed", error="truncated"),
              ItemReport(Path("fake.png"), "failed", error="not an image file")]
    outcome = BatchOutcome(BatchSummary(items, 10.0, False, total=8), items, False, 8)
    text = summary_html(outcome)
    assert "8 files in the folder look like images." in text and "8 images" not in text
    one = BatchOutcome(BatchSummary(items[:1], 10.0, False, total=1), items[:1], False, 1)
    assert "1 file in the folder looks like an image." in summary_html(one)


def test_the_photos_full_name_is_refused_too_and_other_files_asked_about(
        qtbot, window, images, monkeypatch) -> None:
    """Typed with its suffix, the photo's name went to the file dialog's own "Replace?"
    and then failed; the dialog now leaves every question to Save."""
    from types import SimpleNamespace

    from rbqe_studio import dialogs, main_window

    photo = images[0]
    calls: list[tuple] = []
    monkeypatch.setattr(main_window, "QFileDialog", SimpleNamespace(
        getSaveFileName=lambda *a: calls.append(a) or (str(photo), "JPEG (*.jpg *.jpeg)")))
    warned: list[str] = []
    monkeypatch.setattr(dialogs, "_warn", lambda parent, title, text: warned.append(text))
    window.session.mode_override = 3
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths([photo])
    window.acts.save.trigger()
    assert calls[0][-1] == main_window._ASK_HERE  # the dialog itself does not ask
    assert len(warned) == 1 and "never writes over its input" in warned[0]
    assert window.status.text() == f"Nothing saved: {photo.name} kept"
