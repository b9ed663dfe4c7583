"""The empty-state page: a large drop target with the two open buttons."""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from rbqe.io import SUPPORTED_SUFFIXES

# How people name the formats, by suffix; JPEG is the headline, not in this list.
FORMAT_NAMES = {".png": "PNG", ".webp": "WebP", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP",
                ".gif": "GIF", ".avif": "AVIF", ".heic": "HEIC", ".heif": "HEIC"}


def formats_text() -> str:
    """The other formats read, e.g. "PNG, WebP, TIFF and BMP"."""
    names = sorted({FORMAT_NAMES.get(s, s.lstrip(".").upper()) for s in SUPPORTED_SUFFIXES
                    if s not in (".jpg", ".jpeg", ".jfif", ".jpe")})
    return ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else "".join(names)


class DropZone(QWidget):
    open_files = Signal()
    open_folder = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.highlight = False
        files = QPushButton("Open files…")
        files.setObjectName("primary")
        folder = QPushButton("Open folder…")
        files.clicked.connect(self.open_files)
        folder.clicked.connect(self.open_folder)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(files)
        row.addWidget(folder)
        row.addStretch(1)
        lay = QVBoxLayout(self)
        lay.addStretch(3)
        lay.addLayout(row)
        lay.addStretch(2)

    def set_highlight(self, on: bool) -> None:
        self.highlight = on
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillRect(self.rect(), QColor("#15171a"))
        box = QRectF(self.rect()).adjusted(40, 40, -40, -40)
        color = QColor("#4c9be8") if self.highlight else QColor("#3a3f46")
        pen = QPen(color, 2, Qt.PenStyle.DashLine)
        pen.setDashPattern([6, 5])
        p.setPen(pen)
        p.setBrush(QColor(76, 155, 232, 25) if self.highlight else Qt.BrushStyle.NoBrush)
        p.drawRoundedRect(box, 16, 16)
        title = QFont(self.font())
        title.setPointSizeF(title.pointSizeF() * 1.7)
        title.setBold(True)
        p.setFont(title)
        p.setPen(QColor("#e6e6e6"))
        mid = box.center().y()
        p.drawText(QRectF(box.left(), mid - 90, box.width(), 40), Qt.AlignmentFlag.AlignCenter,
                   "Drop JPEG photos or folders here")
        p.setFont(self.font())
        p.setPen(QColor("#8d939b"))
        p.drawText(QRectF(box.left() + 20, mid - 48, box.width() - 40, 44),
                   Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                   "RBQE removes compression artefacts, stopping at the first of five exits "
                   f"whose quality is good enough.\nAlso reads {formats_text()}.")
        p.end()
