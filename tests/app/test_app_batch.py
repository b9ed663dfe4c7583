"""Batch panel over rbqe.batch.run_batch: bad files, cancel, resume, summary, close."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt

from rbqe.io import OUTPUT_LOG
from rbqe_studio.state import DONE, fmt_ms

TIMEOUT = 120_000  # generous: a loaded CI machine can be very slow


def setup_batch(window, src: Path, out: Path, recursive: bool = False):
    panel = window.batch
    panel.input.set_text(str(src))
    panel.output.set_text(str(out))
    panel.recursive.setChecked(recursive)
    return panel


def run(qtbot, panel):
    panel.outcome = None
    assert panel.run()
    qtbot.waitUntil(lambda: panel.outcome is not None, timeout=TIMEOUT)
    assert not panel.running and panel.start.isEnabled()
    return panel.outcome


def outputs(out: Path) -> list[str]:
    """The files under ``out``, but rbqe's note of what it wrote there."""
    return sorted(p.name for p in out.rglob("*")
                  if p.is_file() and p.name != OUTPUT_LOG) if out.exists() else []


def test_batch_bad_file_cancel_and_rerun(qtbot, window, tmp_path, jpeg) -> None:
    src, out = tmp_path / "batch", tmp_path / "out"
    for i in range(3):
        jpeg(src / f"img{i}.jpg", seed=i)
    jpeg(src / "sub" / "deep.jpg")
    (src / "bad.jpg").write_bytes(b"this is not an image")  # sorts first
    panel = setup_batch(window, src, out)
    window.settings.exit_mode = "5"  # every image walks all stages, whatever the scores
    worker = window.batch_host.worker

    # Cancel in the middle of img0 (its second stage), from the worker thread so the
    # moment is exact: the batch must stop within that stage and write nothing for img0.
    def cancel_mid_image(gen: int, stage: str, done: int, total: int) -> None:
        if panel.job is not None and gen == panel.job.gen and stage == "exit" and done == 1:
            panel.job.cancel.set()

    worker.progress.connect(cancel_mid_image, Qt.ConnectionType.DirectConnection)
    outcome = run(qtbot, panel)
    worker.progress.disconnect(cancel_mid_image)
    assert outcome.cancelled
    reports = outcome.summary.items if outcome.summary is not None else outcome.reports
    assert [r.status for r in reports] == ["failed"]
    assert outputs(out) == []  # nothing partial, no .part file
    assert "Batch cancelled" in panel.summary.toPlainText()

    # Full run: the bad file fails with its reason, the others are written.
    outcome = run(qtbot, panel)
    s = outcome.summary
    assert not outcome.cancelled
    assert (s.processed, s.failed, s.skipped) == (3, 1, 0)
    assert outputs(out) == [f"img{i}_rbqe.png" for i in range(3)]
    assert s.exit_histogram == {1: 0, 2: 0, 3: 0, 4: 0, 5: 3}
    text = panel.summary.toPlainText()
    assert "3 processed" in text and "1 failed" in text and "bad.jpg" in text
    assert "saved against always running exit 5" in text
    assert panel.bar.value() == panel.bar.maximum() == 4

    # Re-run: what exists is skipped; recursive now picks up the sub-folder too.
    panel.recursive.setChecked(True)
    outcome = run(qtbot, panel)
    s = outcome.summary
    assert (s.processed, s.failed, s.skipped) == (1, 1, 3)
    assert "deep_rbqe.png" in outputs(out)

    # Results open in the viewer, marked done.
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        panel.open_button.click()
    names = {i.path.name: i for i in window.session.queue.items}
    assert set(names) == {"img0.jpg", "img1.jpg", "img2.jpg", "deep.jpg"}
    assert all(i.status == DONE for i in names.values())
    # Its time is the batch's, as the queue row's: nothing was timed here ("0 ms"). This
    # one was skipped by the last run, whose report has no time: none is shown.
    shown = window.session.current
    assert shown is not None and shown.time_ms is None
    # Nor a score: it decided nothing here (the rule is not a score threshold).
    assert shown.score is None
    assert window.status.text().endswith(f"exit {shown.exit} of 5"), window.status.text()
    fresh = next(i for i in window.session.queue.items if i.path.name == "deep.jpg")
    assert fresh.time_ms is not None and fresh.time_ms > 0  # done by the last run
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.queue.select(fresh)
    assert window.status.text().endswith(f", {fmt_ms(fresh.time_ms)} in the batch")
    # The chosen exit's score is coloured by the batch's verdict, as when computed here
    # (it was drawn orange from the batch, green computed).
    card = window.compare.strip.cards[fresh.exit]
    assert card.data.decision is not None
    from_batch = (fresh.exit, card.score_passes())
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.acts.redo.trigger()
    card = window.compare.strip.cards[fresh.exit]
    assert (window.session.current.exit, card.score_passes()) == from_batch


def test_batch_needs_folders_and_says_so(qtbot, window, tmp_path) -> None:
    panel = setup_batch(window, tmp_path / "missing", tmp_path / "out")
    with qtbot.waitSignal(panel.message) as blocker:
        assert not panel.run()
    assert "input folder" in blocker.args[0]
    assert "input folder" in window.status.text()


def test_cancel_button_and_closing_during_a_batch(qtbot, window, tmp_path, jpeg) -> None:
    src, out = tmp_path / "many", tmp_path / "out"
    for i in range(12):
        jpeg(src / f"p{i:02d}.jpg", size=(96, 64), seed=i)
    panel = setup_batch(window, src, out)
    assert panel.run()
    qtbot.waitUntil(lambda: panel.bar.value() >= 1, timeout=TIMEOUT)
    qtbot.mouseClick(panel.cancel, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.running, timeout=TIMEOUT)
    assert panel.outcome is None or panel.outcome.cancelled or panel.outcome.total == 12
    done = len(outputs(out))
    assert done < 12 or panel.outcome is not None

    assert panel.run()  # resume, then close the window mid-batch
    qtbot.waitUntil(lambda: panel.bar.maximum() == 12 and panel.bar.value() >= 1, timeout=TIMEOUT)
    window.close()  # must cancel and join the threads (the fixture checks they stopped)
    assert not window.batch_host.thread.isRunning()
    assert not any(p.name.endswith(".part") or p.name.startswith(".") for p in out.rglob("*")
                   if p.name != OUTPUT_LOG)  # rbqe's note of its outputs stays


def test_a_heic_without_its_codec_is_a_failed_row(qtbot, window, tmp_path, jpeg,
                                                  monkeypatch) -> None:
    """The same engine as the CLI's: the HEIC was left out of the batch, unnamed."""
    from rbqe.io import formats

    monkeypatch.setattr(formats, "SUPPORTED_SUFFIXES", formats._BASE_SUFFIXES)  # no codec
    src, out = tmp_path / "phone", tmp_path / "out"
    jpeg(src / "IMG_1.jpg")
    (src / "IMG_1234.HEIC").write_bytes(b"fake")
    panel = setup_batch(window, src, out)
    outcome = run(qtbot, panel)
    s = outcome.summary
    assert (s.processed, s.failed, s.total) == (1, 1, 2)
    assert [(r.input.name, r.status) for r in s.items] == [("IMG_1234.HEIC", "failed"),
                                                           ("IMG_1.jpg", "ok")]
    text = panel.summary.toPlainText()
    assert "1 failed" in text and "IMG_1234.HEIC: HEIC support is not installed" in text
    assert "rbqe-studio[heif]" in text
    assert panel.bar.value() == panel.bar.maximum() == 2


def test_a_users_file_at_an_outputs_name_names_the_checkbox(qtbot, window, tmp_path,
                                                            jpeg) -> None:
    """The failed row says what replaces the file in the app's words: there is no
    --overwrite in the app (it said so before)."""
    from PIL import Image

    src, out = tmp_path / "in", tmp_path / "out"
    jpeg(src / "photo.jpg")
    out.mkdir()
    Image.new("RGB", (8, 8), (200, 0, 0)).save(out / f"photo{window.settings.suffix}.png")
    panel = setup_batch(window, src, out)
    outcome = run(qtbot, panel)
    [row] = outcome.summary.items
    assert row.status == "failed" and "--overwrite" not in row.error
    assert f"“{panel.overwrite.text()}” replaces it" in row.error
    assert "Replace existing outputs" in panel.summary.toPlainText()
