"""Batch panel: a folder in, a folder out, over :func:`rbqe.batch.run_batch`.

No batch logic lives here: the panel builds :class:`rbqe.batch.BatchOptions`, runs the
batch on its own worker thread (the interactive viewer keeps working meanwhile), shows
progress with an ETA, and renders the library's summary.

"Open in viewer" queues the images with their saved outputs. An image skipped because
its ``auto`` output was already there is shown from it where the output log's note says
which exit it holds (:func:`rbqe_studio.jobs.saved_exits`); one noted by an older
version says none, and is enhanced again: those are named (the tooltip, the summary).
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from rbqe.batch import BatchOptions, ItemReport
from rbqe_studio.jobs import BatchJob, BatchOutcome, EngineSpec, PolicyChoice, saved_exits
from rbqe_studio.settings import AppSettings
from rbqe_studio.settings_panel import FolderField
from rbqe_studio.state import Eta, elide_middle, fmt_duration, fmt_ms
from rbqe_studio.widgets import ButtonRow, ElidedLabel
from rbqe_studio.worker import WorkerHost

EngineChoice = Callable[[], tuple[EngineSpec, PolicyChoice]]


def summary_line(outcome: BatchOutcome) -> str:
    """The batch's end in one line, for the status bar."""
    reports = outcome.items
    counts = {k: sum(r.status == k for r in reports) for k in ("ok", "failed", "skipped")}
    stopped = outcome.summary.stopped if outcome.summary is not None else None
    what = ("Batch stopped" if stopped else "Batch cancelled" if outcome.cancelled
            else "Batch finished")
    left = unfinished(outcome)
    noted = sum(bool(r.warnings) for r in reports if r.status != "failed")
    return (f"{what}: {counts['ok']} processed, {counts['failed']} failed, "
            f"{counts['skipped']} skipped" + (f", {left} not done" if left else "")
            + (f", {noted} with notes (see Batch)" if noted else "")
            + (f" ({stopped})" if stopped else ""))


def unfinished(outcome: BatchOutcome) -> int:
    """Images a cancelled or stopped batch did not finish: the one it was working on
    (nothing of it was written) and those it never reached."""
    return max(0, outcome.total - len(outcome.items))


def summary_html(outcome: BatchOutcome) -> str:
    """The end-of-batch report as simple HTML."""
    s = outcome.summary
    reports = outcome.items
    ok = sum(r.status == "ok" for r in reports)
    failed = [r for r in reports if r.status == "failed"]
    skipped = sum(r.status == "skipped" for r in reports)
    why = s.stopped if s is not None else None
    if why:  # the output folder failed (a full disk, made read-only): said, not hidden
        parts = [f"<h3>Batch stopped</h3><p>Stopped after {len(reports)} of "
                 f"{outcome.total} images: {html.escape(why)}. Nothing partial was "
                 f"written; run it again once the folder can be written.</p>"]
    elif outcome.cancelled:
        stopped = (f"<h3>Batch cancelled</h3><p>Stopped after {len(reports)} of "
                   f"{outcome.total} images; nothing partial was written.</p>")
        parts = [stopped]
    else:
        # Counted by their names (.jpg, .png…): a broken file, or one that is no image
        # at all, is among them, and fails.
        n = outcome.total
        looks = "file in the folder looks like an image" if n == 1 \
            else "files in the folder look like images"
        parts = [f"<h3>Batch finished</h3><p>{n} {looks}.</p>"]
    left = unfinished(outcome)
    parts.append(f"<p><b>{ok}</b> processed · <b>{len(failed)}</b> failed · <b>{skipped}</b> "
                 "skipped (output already there)"
                 + (f" · <b>{left}</b> not done" if left else "") + "</p>")
    if s is not None and ok:
        hist = s.exit_histogram
        most = max(hist.values()) or 1
        rows = "".join(
            f"<tr><td>Exit {k}&nbsp;&nbsp;</td><td align='right'>{n}&nbsp;</td><td>"
            f"<span style='color:#4c9be8'>{'█' * round(16 * n / most)}</span></td></tr>"
            for k, n in sorted(hist.items()))
        parts.append(f"<p><b>Exits chosen</b></p><table cellspacing='2'>{rows}</table>")
        # The total is the batch's wall clock (the model's loading, and on a cancel the
        # work on the image it dropped, included); the average is over processed images
        # only: say both, so the two never seem to disagree.
        total, avg = (fmt_ms(t).replace(" ", "&nbsp;") for t in (s.total_ms, s.avg_ms))
        if left:
            until = "the stop" if why else "the cancel"
            parts.append(f"<p>Time: {total} in all, up to {until} (work on an unfinished "
                         f"image included)<br>Average: {avg} per processed image ({ok} of "
                         f"{outcome.total} images done)</p>")
        else:
            parts.append(f"<p>Time: {total} in all · average {avg} per processed image</p>")
        if s.gmacs_exit5 and s.saved_fraction is not None:  # None when every exit ran
            parts.append(f"<p>Compute: {s.gmacs:.1f} GMAC, <b>{100 * s.saved_fraction:.0f}% "
                         f"saved</b> against always running exit 5 ({s.gmacs_exit5:.1f} GMAC)"
                         "</p>")
    if failed:
        items = "".join(f"<li>{html.escape(r.error or str(r.input))}</li>" for r in failed)
        parts.append(f"<p><b>Failed</b></p><ul>{items}</ul>")
    parts.append(notes_html(reports))
    return "".join(parts)


NOTES_SHOWN = 20  # the rest are in the report (--report in the CLI; the log here)


def notes_html(reports: list[ItemReport]) -> str:
    """What the batch warned of, image by image (damaged JPEG data, metadata an output
    cannot hold, a name taken by an input): shown only in the log before, so a user of the
    app never learnt of them. The first :data:`NOTES_SHOWN` lines, and how many more."""
    lines = [f"{r.input.name}: {w}" for r in reports if r.status != "failed"
             for w in r.warnings]
    if not lines:
        return ""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines[:NOTES_SHOWN])
    more = len(lines) - NOTES_SHOWN
    rest = f"<p>… and {more} more in the log file (File → Open log folder).</p>" \
        if more > 0 else ""
    return f"<p><b>Notes</b></p><ul>{items}</ul>{rest}"


def again_text(inputs: list[Path]) -> str:
    """What Open in viewer does with the skipped images it must enhance again."""
    n = len(inputs)
    names = ", ".join(p.name for p in inputs[:3]) + (f" and {n - 3} more" if n > 3 else "")
    one = n == 1
    return (f"{n} skipped image{'' if one else 's'} ({names}) {'is' if one else 'are'} "
            f"enhanced again in the viewer: {'its output' if one else 'their outputs'}, "
            f"from an earlier run, {'does' if one else 'do'} not say which exit "
            f"{'it holds' if one else 'they hold'}")


OPEN_TIP = "Queue the images with their saved outputs (nothing is computed again)"


class BatchPanel(QWidget):
    """Args: ``engine`` says which engine and exit policy a batch starts with (the
    session's, so the batch and the viewer always agree)."""

    open_results = Signal(list)  # list[ItemReport]
    show_folder = Signal(object)  # Path of the output folder
    running_changed = Signal(bool)
    cancelling = Signal()  # the user asked to stop; the current stage finishes first
    message = Signal(str)
    finished = Signal(object)  # BatchOutcome

    def __init__(self, settings: AppSettings, host: WorkerHost, engine: EngineChoice,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.host = host
        self.engine = engine
        self.job: BatchJob | None = None
        self.outcome: BatchOutcome | None = None
        self._eta: Eta | None = None
        self._done = 0
        self.clock = time.monotonic  # the time-left estimate's (a test's own clock)

        self.input = FolderField("Input folder")
        self.recursive = QCheckBox("Include sub-folders")
        self.output = FolderField("Output folder")
        self.overwrite = QCheckBox("Replace existing outputs")
        self.overwrite.setToolTip("Off: images whose output rbqe already made are skipped, so "
                                  "an interrupted batch resumes where it stopped; a file of "
                                  "yours of that name is left as it is")
        self.start = QPushButton("Start batch")
        self.start.setObjectName("primary")
        self.cancel = QPushButton("Cancel")
        self.cancel.setEnabled(False)
        self.bar = QProgressBar()
        self.bar.setTextVisible(True)
        self.bar.setFormat("%v / %m")
        self.current = ElidedLabel("Idle")  # a long name or message must not widen the window
        self.current.setObjectName("muted")
        self.eta = QLabel("")
        self.eta.setObjectName("muted")
        self.summary = QTextBrowser()
        self.summary.setOpenLinks(False)
        self.summary.setPlaceholderText("Each batch's summary shows here.")
        self.open_button = QPushButton("Open in viewer")
        self.open_button.setToolTip(OPEN_TIP)
        self.open_button.setEnabled(False)
        self.folder_button = QPushButton("Show in folder")
        self.folder_button.setToolTip("Open the output folder in the file manager")
        self.folder_button.setEnabled(False)

        form = QFormLayout()
        # A narrow panel puts a wide field under its label, not beside it.
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        form.addRow("Input", self.input)
        form.addRow("", self.recursive)
        form.addRow("Output", self.output)
        form.addRow("", self.overwrite)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start, 1)
        buttons.addWidget(self.cancel)
        status = QHBoxLayout()
        status.addWidget(self.current, 1)
        status.addWidget(self.eta, 0, Qt.AlignmentFlag.AlignRight)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(12, 10, 12, 12)
        intro = QLabel("Enhance every image of a folder into another folder. Images whose "
                       "output rbqe already made are skipped.")
        intro.setObjectName("muted")
        intro.setWordWrap(True)
        lay.addWidget(intro)
        lay.addLayout(form)
        lay.addLayout(buttons)
        lay.addWidget(self.bar)
        lay.addLayout(status)
        lay.addWidget(self.summary, 1)
        # Stacked in a narrow panel, which side by side they kept 276 px wide.
        lay.addWidget(ButtonRow((self.open_button, 1), (self.folder_button, 0)))

        self.refresh()
        self.input.changed.connect(self._store)
        self.output.changed.connect(self._store)
        self.recursive.toggled.connect(self._store)
        self.start.clicked.connect(self.run)
        self.cancel.clicked.connect(self.stop)
        self.open_button.clicked.connect(self._open)
        self.folder_button.clicked.connect(
            lambda: self.show_folder.emit(Path(self.settings.output_dir)))
        w = host.worker
        w.batch_started.connect(self._on_started)
        w.batch_item_started.connect(self._on_item_started)
        w.batch_item_done.connect(self._on_item_done)
        w.progress.connect(self._on_progress)
        w.finished.connect(self._on_finished)
        w.failed.connect(self._on_failed)
        w.cancelled.connect(self._on_cancelled)
        w.engine_failed.connect(self._on_failed)

    @property
    def running(self) -> bool:
        return self.job is not None

    @property
    def is_cancelling(self) -> bool:
        return self.job is not None and self.job.cancel.is_set()

    def refresh(self) -> None:
        s = self.settings
        self.input.set_text(s.batch_input)
        self.output.set_text(s.output_dir)
        self.recursive.setChecked(s.batch_recursive)

    def _store(self) -> None:
        s = self.settings
        s.batch_input, s.output_dir = self.input.text(), self.output.text()
        s.batch_recursive = self.recursive.isChecked()

    def run(self) -> bool:
        self._store()
        s = self.settings
        if self.running:
            return False
        if not s.batch_input:
            self.message.emit("Choose an input folder for the batch.")
            return False
        if not Path(s.batch_input).is_dir():
            what = "is not a folder" if Path(s.batch_input).exists() else "does not exist"
            self.message.emit(f"The input folder {s.batch_input} {what}; choose another "
                              f"for the batch.")
            return False
        if not s.output_dir:
            self.message.emit("Choose an output folder for the batch.")
            return False
        options = BatchOptions(out_dir=Path(s.output_dir), mode=s.mode,
                               recursive=s.batch_recursive, overwrite=self.overwrite.isChecked(),
                               fmt=s.output_format, quality=s.quality, suffix=s.suffix,
                               keep_metadata=s.keep_metadata, strip_gps=s.strip_gps,
                               replace_hint=f"“{self.overwrite.text()}” replaces it")
        spec, policy = self.engine()
        self.job = BatchJob(spec=spec, policy=policy, inputs=[Path(s.batch_input)],
                            options=options)
        self.outcome = None
        self._done = 0
        self.bar.setRange(0, 0)  # busy until the scan reports a count
        self.current.setText("Scanning…")
        self.eta.setText("")
        self.summary.clear()
        self.open_button.setEnabled(False)
        self._set_running(True)
        self.host.submit(self.job)
        return True

    def stop(self) -> None:
        if self.job is not None and not self.is_cancelling:
            self.host.cancel(self.job.gen)
            self.current.setText("Cancelling… (finishing the current stage)")
            self.eta.setText("")  # no time left to estimate: it stops
            self.cancel.setEnabled(False)
            self.cancelling.emit()

    def _set_running(self, on: bool) -> None:
        self.start.setEnabled(not on)
        self.cancel.setEnabled(on)
        # The batch was started with these: changing them while it runs would not count.
        for w in (self.input, self.output, self.recursive, self.overwrite):
            w.setEnabled(not on)
        self.running_changed.emit(on)

    def _mine(self, gen: int) -> bool:
        return self.job is not None and gen == self.job.gen

    def _on_started(self, gen: int, total: int) -> None:
        if self._mine(gen):
            self.bar.setRange(0, max(1, total))
            self.bar.setValue(0)
            self._eta = Eta(total, self.clock())
            self._eta.paced = 0
            if total == 0:
                self.current.setText("No images found in the input folder.")

    def _on_item_started(self, gen: int, index: int, path: Path) -> None:
        if self._mine(gen) and not self.is_cancelling:
            self.current.setText(elide_middle(Path(path).name, 48))
            self.current.setToolTip(str(path))

    def _on_item_done(self, gen: int, index: int, item: object) -> None:
        if self._mine(gen):
            self._done += 1
            self.bar.setValue(self._done)
            if self._eta is not None and not self.is_cancelling:
                self._eta.done = self._done
                if getattr(item, "status", "ok") == "ok":  # failed, skipped: no pace
                    self._eta.paced = (self._eta.paced or 0) + 1
                left = self._eta.remaining_s(self.clock())
                # Under a second left (small photos) read "about 0 s left" with two to go.
                self.eta.setText(f"about {fmt_duration(max(left, 1.0))} left"
                                 if left is not None and self._done < self._eta.total else "")

    def _on_progress(self, gen: int, stage: str, done: int, total: int) -> None:
        if self._mine(gen) and stage == "exit" and done < total and not self.is_cancelling:
            name = self.current.toolTip() and Path(self.current.toolTip()).name
            self.current.setText(f"{elide_middle(name or '', 40)} · exit {done + 1}")

    def _on_finished(self, gen: int, outcome: object) -> None:
        if not self._mine(gen) or not isinstance(outcome, BatchOutcome):
            return
        self.job = None
        self.outcome = outcome
        self._set_running(False)
        self.current.setText("Cancelled" if outcome.cancelled else "Done")
        self.eta.setText("")
        again = self._enhanced_again()
        note = f"<p>Open in viewer: {html.escape(again_text(again))}.</p>" if again else ""
        self.summary.setHtml(summary_html(outcome) + note)
        self.open_button.setEnabled(any(r.status in ("ok", "skipped") for r in outcome.items))
        self.open_button.setToolTip(
            f"Queue the images with their saved outputs; {again_text(again)}" if again
            else OPEN_TIP)
        self.folder_button.setEnabled(Path(self.settings.output_dir).is_dir())
        self.finished.emit(outcome)

    def _on_failed(self, gen: int, message: str) -> None:
        if self._mine(gen):
            self.job = None
            self._set_running(False)
            self.current.setText("Batch stopped")
            self.summary.setHtml(f"<h3>Batch stopped</h3><p>{html.escape(message)}</p>")
            self.message.emit(message)

    def _on_cancelled(self, gen: int, _partial: object = None) -> None:
        if self._mine(gen):
            self.job = None
            self._set_running(False)
            self.current.setText("Cancelled")
            self.message.emit("Batch cancelled before it started")

    def _open(self) -> None:
        if self.outcome is not None:
            self.open_results.emit(self._to_open())

    def _to_open(self) -> list[ItemReport]:
        """The reports Open in viewer queues: the images processed or skipped."""
        assert self.outcome is not None
        return [r for r in self.outcome.items if r.status in ("ok", "skipped")]

    def _enhanced_again(self) -> list[Path]:
        """The images Open in viewer enhances again: skipped, and no exit known."""
        return [Path(r.input) for r in self._to_open() if not saved_exits(r)]
