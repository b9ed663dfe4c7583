"""Settings panel: processing (device, exit mode, threshold) and output options.

Edits go straight into the shared :class:`rbqe_studio.settings.AppSettings`; ``changed`` names
the field so the window can react (a new device rebuilds the engine, a new mode or
threshold re-runs the viewed image).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QRect, QSignalBlocker, Qt, Signal
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QStyle,
    QStyleOptionComboBox,
    QVBoxLayout,
    QWidget,
)

from rbqe.arch import NUM_EXITS
from rbqe_studio.settings import AppSettings
from rbqe_studio.state import exits_text
from rbqe_studio.widgets import section_title


def cuda_devices() -> list[tuple[str, str]]:
    """``(value, label)`` for each CUDA GPU torch can see."""
    try:
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return [(f"cuda:{i}", f"GPU {i}: {torch.cuda.get_device_name(i)}") for i in range(n)]
    except Exception:  # noqa: BLE001 - a broken CUDA install must not stop the settings from opening
        return []


def compact(combo: QComboBox, chars: int = 12) -> QComboBox:
    """``combo`` sized by ``chars`` characters, not by its longest item (which is elided),
    so that a long label cannot widen the panel and with it the window."""
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(chars)
    return combo


def full_width(combo: QComboBox) -> int:
    """How wide ``combo`` must be for its longest item to read in full."""
    opt = QStyleOptionComboBox()
    combo.initStyleOption(opt)
    opt.rect = QRect(0, 0, 1000, combo.height())
    field = combo.style().subControlRect(QStyle.ComplexControl.CC_ComboBox, opt,
                                         QStyle.SubControl.SC_ComboBoxEditField, combo)
    text = max(combo.fontMetrics().horizontalAdvance(combo.itemText(i))
               for i in range(combo.count()))
    return text + 1000 - field.width()


# What each exit rule of the weights means for the Auto item and the threshold note.
AUTO_TEXT = {"": "Auto (loading…)", "assessor": "Auto (stop at the threshold)",
             "gate": "Auto (learned exit gate)", "fixed": "Auto (the weights' exit)"}


class FolderField(QWidget):
    """A line edit with a Browse… button."""

    changed = Signal(str)

    def __init__(self, caption: str, parent: QWidget | None = None,
                 placeholder: str = "Choose a folder…") -> None:
        super().__init__(parent)
        self.caption = caption
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(placeholder)
        self.edit.editingFinished.connect(lambda: self.changed.emit(self.edit.text().strip()))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.edit, 1)
        lay.addWidget(browse)

    def text(self) -> str:
        return self.edit.text().strip()

    def set_text(self, text: str) -> None:
        with QSignalBlocker(self.edit):
            self.edit.setText(text)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, self.caption, self.text())
        if folder:
            self.set_text(folder)
            self.changed.emit(folder)


class SettingsPanel(QScrollArea):
    """Scrolls when the window is too low for it (its narrow form is a tall one)."""

    changed = Signal(str)  # field name

    def __init__(self, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setFrameShape(QScrollArea.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.settings = settings
        self.weights_threshold: float | None = None
        self.weights_min_exit = 1  # the earliest exit auto may stop at, from the weights
        self.weights_rule = ""  # the weights' default exit rule ("": not known yet)

        self.device = QComboBox()
        self.device.addItem("Automatic (GPU if available)", "auto")
        self.device.addItem("CPU", "cpu")
        for value, label in cuda_devices():
            self.device.addItem(label, value)
        self.device.setToolTip("Where the network runs. Automatic: a CUDA GPU when torch sees "
                               "one, else Apple's MPS where there is one, else the CPU. A "
                               "change loads the model again and enhances the viewed photo "
                               "again")
        self.backend = QComboBox()
        self.backend.addItem("Automatic (fastest here)", "auto")
        self.backend.addItem("PyTorch", "torch")
        self.backend.addItem("OpenVINO (CPU)", "openvino")
        self.backend.setToolTip("Who runs the network. Automatic times PyTorch and OpenVINO "
                                "once on this computer and keeps the faster; OpenVINO needs "
                                "the openvino extra")
        # One model ships; this row shows only while a weights file is used instead
        # (chosen from the banner, or fixed by --weights / RBQE_WEIGHTS), and leads back
        # to the shipped model.
        self.fixed_weights = ""
        self.model = QComboBox()
        self.model.addItem("Shipped (RGB)", "shipped")
        for combo in (self.device, self.backend, self.model):
            compact(combo)
        self.model.setToolTip("Back to the shipped model (its model card says how it was trained and measured)")
        self.mode = compact(QComboBox())
        self.mode.addItem(AUTO_TEXT[""], "auto")
        for k in range(1, NUM_EXITS + 1):
            self.mode.addItem(f"Always exit {k}", str(k))
        self.mode.setToolTip("How far the network goes for each photo, here and in batches. "
                             "Auto stops at the exit the rule in brackets picks; Always exit "
                             "N stops every photo at exit N (5: the strongest and slowest)")
        # Under a learned gate (or a fixed exit) the threshold is an opt-in override.
        self.use_threshold = QCheckBox("Use a score threshold")
        self.use_threshold.setToolTip("Auto then stops at the first exit whose quality score "
                                      "reaches the threshold below, not where the weights' "
                                      "own rule would")
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setDecimals(3)
        self.threshold.setSingleStep(0.005)
        self.threshold.setKeyboardTracking(False)
        self.threshold.setToolTip("Auto stops at the first exit whose blind quality score (0 "
                                  "to 1, higher judged cleaner) reaches this; lower stops sooner, "
                                  "higher goes deeper. Only in Auto mode, and under a learned "
                                  "gate only with \"Use a score threshold\" ticked")
        self.reset = QPushButton("Reset")
        self.reset.setToolTip("Use the weights' own exit rule")
        self.threshold_note = QLabel("")
        self.threshold_note.setObjectName("muted")
        # Wrapped, so that a longer note ("custom (weights: …)") cannot widen the panel
        # and shift the splitter while the threshold is edited.
        self.threshold_note.setWordWrap(True)
        # The viewed photo's scores: a threshold below all of them stops at the earliest
        # exit auto may take, one above all of them goes on to exit 5.
        self.score_range = QLabel("")
        self.score_range.setObjectName("muted")
        self.score_range.setWordWrap(True)

        self.format = compact(QComboBox(), 6)
        for value, label in (("png", "PNG (lossless)"), ("jpeg", "JPEG"), ("webp", "WebP")):
            self.format.addItem(label, value)
        self.format.setToolTip("The file type of a batch's outputs, of Save all's files and "
                               "of the name Save suggests (a name typed in Save keeps its own "
                               "type). PNG is lossless; JPEG and WebP are smaller, at the "
                               "quality below")
        # Enabled whatever Format says: a Save to a .jpg or .webp name uses it too.
        self.quality = QSpinBox()
        self.quality.setRange(1, 100)
        self.quality.setPrefix("JPEG/WebP ")
        self.quality.setToolTip("The quality (1 to 100) of every JPEG or WebP the app writes: "
                                "a batch's outputs, Save all's files and a Save to a .jpg or "
                                ".webp name, whatever Format says. Higher: larger files, "
                                "closer to the result. PNG, TIFF and BMP ignore it")
        self.suffix = QLineEdit()
        self.suffix.setPlaceholderText("none")
        self.suffix.setToolTip("Added to the photo's name in the names of a batch's outputs, "
                               "of Save all's files and of the name Save suggests (with _rbqe, "
                               "photo.jpg becomes photo_rbqe.png); empty: nothing is added")
        # Empty: save dialogs open in the image's own folder (a batch asks for one).
        self.output = FolderField("Output folder", placeholder="image's folder")
        self.output.edit.setToolTip("Where Save dialogs open and batches write; when empty, "
                                    "Save opens in the image's own folder")
        self.keep_metadata = QCheckBox("Keep metadata (EXIF, XMP)")
        self.keep_metadata.setToolTip("Outputs keep the input's EXIF, XMP and IPTC (rights, "
                                      "captions, keywords), PNG text fields and comment. The "
                                      "ICC colour profile and the resolution are always "
                                      "kept: they describe the pixels")
        self.strip_gps = QCheckBox("Remove GPS location")
        self.strip_gps.setToolTip("Outputs keep the camera, date and other EXIF, but not "
                                  "where the photo was taken (rbqe enhance --strip-gps)")

        # One form for both sections, their titles spanning it: two forms sized their
        # label columns apart ("Exit mode", "File suffix"), and the fields did not align.
        form = self.form = QFormLayout()
        form.addRow(section_title("Processing"))
        form.addRow("Device", self.device)
        form.addRow("Backend", self.backend)
        form.addRow("Model", self.model)
        form.addRow("Exit mode", self.mode)
        form.addRow("", self.use_threshold)
        row = QHBoxLayout()
        row.addWidget(self.threshold, 1)
        row.addWidget(self.reset)
        form.addRow("Threshold", row)
        form.addRow("", self.threshold_note)
        form.addRow("", self.score_range)
        form.addRow(section_title("Output"))
        form.addRow("Format", self.format)
        form.addRow("Quality", self.quality)  # its own row: beside Format it widened the panel
        form.addRow("File suffix", self.suffix)
        form.addRow("Folder", self.output)
        form.addRow("", self.keep_metadata)
        form.addRow("", self.strip_gps)
        body = QWidget()
        lay = QVBoxLayout(body)
        lay.setContentsMargins(12, 10, 12, 12)
        lay.addLayout(form)
        lay.addStretch(1)
        self.setWidget(body)
        # Too narrow for the labels beside the fields, the labels go above them
        # (resizeEvent); never narrower than that form, which does not scroll sideways.
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapAllRows)
        lay.invalidate()  # its cached size is the form's before
        narrowest = body.minimumSizeHint().width()
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.DontWrapRows)
        lay.invalidate()
        self.beside_min = body.minimumSizeHint().width()
        self.setMinimumWidth(narrowest + self.verticalScrollBar().sizeHint().width())

        self.refresh()
        self.set_scores([])
        self.device.currentIndexChanged.connect(lambda: self._set("device", self.device.currentData()))
        self.backend.currentIndexChanged.connect(
            lambda: self._set("backend", self.backend.currentData()))
        self.model.currentIndexChanged.connect(self._on_model)
        self.mode.currentIndexChanged.connect(lambda: self._set("exit_mode", self.mode.currentData()))
        self.use_threshold.toggled.connect(
            lambda on: self._set("threshold", round(self.threshold.value(), 3) if on else None))
        self.threshold.valueChanged.connect(lambda v: self._set("threshold", round(v, 3)))
        self.reset.clicked.connect(lambda: self._set("threshold", None))
        self.format.currentIndexChanged.connect(
            lambda: self._set("output_format", self.format.currentData()))
        self.quality.valueChanged.connect(lambda v: self._set("quality", v))
        self.suffix.editingFinished.connect(lambda: self._set("suffix", self.suffix.text().strip()))
        self.output.changed.connect(lambda t: self._set("output_dir", t))
        self.keep_metadata.toggled.connect(lambda on: self._set("keep_metadata", on))
        self.strip_gps.toggled.connect(lambda on: self._set("strip_gps", on))

    def resizeEvent(self, event: QResizeEvent) -> None:
        wrap = QFormLayout.RowWrapPolicy.DontWrapRows if self.fits_beside(
            self.viewport().width()) else QFormLayout.RowWrapPolicy.WrapAllRows
        if self.form.rowWrapPolicy() != wrap:
            self.form.setRowWrapPolicy(wrap)
        super().resizeEvent(event)

    def fits_beside(self, width: int) -> bool:
        """Whether the form ``width`` px wide has room for its labels beside the fields,
        with the choices of each setting read in full (cut, they read as other words)."""
        form, margins = self.form, self.widget().layout().contentsMargins()
        labels = (form.itemAt(row, QFormLayout.ItemRole.LabelRole) for row in range(
            form.rowCount()))
        label = max(item.sizeHint().width() for item in labels if item is not None)
        field = width - margins.left() - margins.right() - label - form.horizontalSpacing()
        return width >= self.beside_min and all(
            full_width(combo) <= field for combo in (self.device, self.backend, self.mode,
                                                     self.format))

    def _set(self, name: str, value: object) -> None:
        if getattr(self.settings, name) == value:
            return
        setattr(self.settings, name, value)
        self.settings.normalise()
        self.refresh()
        self.changed.emit(name)

    def _on_model(self) -> None:
        """The shipped model chosen again: the weights file chosen earlier is forgotten."""
        if self.model.currentData() == "shipped":
            self._set("weights_file", "")

    def choose_weights_file(self, path: str) -> None:
        self._set("weights_file", path)

    def lock_model(self, weights: str) -> None:
        """Weights named on the command line (or by RBQE_WEIGHTS) win over the choice."""
        self.fixed_weights = weights
        self.model.setEnabled(False)
        self.model.setToolTip(f"Fixed by --weights / RBQE_WEIGHTS: {weights}")
        self.refresh()

    def set_weights_threshold(self, threshold: float, min_exit: int = 1,
                              rule: str | None = None) -> None:
        """The weights' assessor threshold and earliest exit, and their default exit rule
        (None: unchanged)."""
        self.weights_threshold = threshold
        self.weights_min_exit = min_exit
        if rule is not None:
            self.weights_rule = rule
        self.refresh()

    def set_scores(self, scores: list[float], exits: Sequence[int] | None = None) -> None:
        """The viewed photo's exits' scores (none: no photo done), and the exits they are
        of (None: exits 1 to ``len(scores)``). A result may hold other exits than the first
        ones: a tiled photo's exit 5 alone, a batch's output read back (its exit 3, say)."""
        ks = list(exits) if exits is not None else list(range(1, len(scores) + 1))
        low, high = (f"{min(scores):.3f}", f"{max(scores):.3f}") if scores else ("", "")
        span = low if low == high else f"{low}–{high}"
        self.score_range.setText(f"This photo scores {span} ({exits_text(ks)})" if scores
                                 else "")
        self.form.setRowVisible(self.score_range, bool(scores))

    def auto_rule(self) -> str:
        """The rule auto mode uses: a custom threshold means the quality score."""
        return "assessor" if self.settings.threshold is not None else self.weights_rule

    def _threshold_note(self) -> str:
        s = self.settings
        # The earliest exit comes with the weights; the threshold applies from there on.
        start = f"; auto stops from exit {self.weights_min_exit} on" \
            if self.weights_min_exit > 1 else ""
        if s.threshold is None:
            return {"": "the weights' exit rule: loading…",
                    "assessor": f"from the weights{start}",
                    "gate": "not used: the weights' learned gate decides",
                    }.get(self.weights_rule, "not used by the weights' exit rule")
        if self.weights_threshold is not None and self.weights_rule in ("", "assessor"):
            return f"custom (weights: {self.weights_threshold:.3f}){start}"
        if self.weights_rule not in ("", "assessor"):
            return f"custom: auto uses the quality score, not the weights' rule{start}"
        return f"custom{start}"

    def effective_threshold(self) -> float | None:
        s = self.settings
        return s.threshold if s.threshold is not None else self.weights_threshold

    def refresh(self) -> None:
        """Show the settings' current values without emitting changes."""
        s = self.settings
        blockers = [QSignalBlocker(w) for w in (self.device, self.backend, self.model, self.mode,
                                                self.threshold, self.use_threshold,
                                                self.format, self.quality, self.suffix,
                                                self.keep_metadata, self.strip_gps)]
        index = self.device.findData(s.device)
        if index < 0:  # a GPU that is gone: show it, the engine will report the problem
            self.device.addItem(s.device, s.device)
            index = self.device.count() - 1
        self.device.setCurrentIndex(index)
        self.backend.setCurrentIndex(max(0, self.backend.findData(s.backend)))
        weights = self.fixed_weights or s.weights_file
        file_row = self.model.findData("file")
        if weights:
            label = f"File: {Path(weights).name}"
            if file_row < 0:
                self.model.addItem(label, "file")
                file_row = self.model.count() - 1
            self.model.setItemText(file_row, label)
            self.model.setCurrentIndex(file_row)
        else:
            if file_row >= 0:
                self.model.removeItem(file_row)
            self.model.setCurrentIndex(0)
        self.form.setRowVisible(self.model, bool(weights))
        self.mode.setCurrentIndex(max(0, self.mode.findData(s.exit_mode)))
        self.mode.setItemText(0, AUTO_TEXT.get(self.auto_rule(), "Auto"))
        value = self.effective_threshold()
        self.threshold.setValue(value if value is not None else 0.855)
        self.threshold_note.setText(self._threshold_note())
        self.reset.setEnabled(s.threshold is not None)
        override = self.weights_rule not in ("", "assessor")  # the threshold is opt-in
        self.form.setRowVisible(self.use_threshold, override)
        self.use_threshold.setChecked(s.threshold is not None)
        self.use_threshold.setEnabled(s.exit_mode == "auto")
        self.threshold.setEnabled(s.exit_mode == "auto" and (not override or
                                                            s.threshold is not None))
        self.format.setCurrentIndex(max(0, self.format.findData(s.output_format)))
        self.quality.setValue(s.quality)
        self.suffix.setText(s.suffix)
        self.output.set_text(s.output_dir)
        self.keep_metadata.setChecked(s.keep_metadata)
        self.strip_gps.setChecked(s.strip_gps)
        self.strip_gps.setEnabled(s.keep_metadata)  # without EXIF there is no location
        del blockers
        self.threshold.setAlignment(Qt.AlignmentFlag.AlignRight)
