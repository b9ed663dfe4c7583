"""The empty-state page: a large drop target with the two open buttons."""

from __future__ import annotations

from PySide6.QtCore import QRect, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPaintEvent, QPen, QResizeEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QPushButton,
    QSizePolicy,
    QSpacerItem,
    QVBoxLayout,
    QWidget,
)

from rbqe.io import SUPPORTED_SUFFIXES

# How people name the formats, by suffix; JPEG is the headline, not in this list.
FORMAT_NAMES = {".png": "PNG", ".webp": "WebP", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP",
                ".gif": "GIF", ".avif": "AVIF", ".heic": "HEIC", ".heif": "HEIC"}
TITLE = "Drop JPEG photos or folders here"
MARGIN = 40  # around the dashed box
PAD = 20  # the texts' distance from the box's sides and top
GAP = 10  # between the title and the body
ABOVE_BUTTONS = 24  # between the body and the buttons
FLAGS = Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWordWrap


def formats_text() -> str:
    """The other formats read, e.g. "PNG, WebP, TIFF and BMP"."""
    names = sorted({FORMAT_NAMES.get(s, s.lstrip(".").upper()) for s in SUPPORTED_SUFFIXES
                    if s not in (".jpg", ".jpeg", ".jfif", ".jpe")})
    return ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else "".join(names)


def body_text() -> str:
    # The learned gate decides by default: auto does not stop at a quality score.
    return ("RBQE removes compression artefacts in up to five steps; auto stops as soon as "
            "going on would not gain enough (the learned exit gate decides by default)."
            f"\nAlso reads {formats_text()}.")


class DropZone(QWidget):
    open_files = Signal()
    open_folder = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.highlight = False
        self.files = files = QPushButton("Open files…")
        files.setObjectName("primary")
        folder = QPushButton("Open folder…")
        files.clicked.connect(self.open_files)
        folder.clicked.connect(self.open_folder)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(files)
        row.addWidget(folder)
        row.addStretch(1)
        # Above the buttons: at least the texts' height at this width (resizeEvent), and
        # three fifths of the rest, as before the texts could wrap.
        self.text_room = QSpacerItem(0, 0, QSizePolicy.Policy.Minimum,
                                     QSizePolicy.Policy.MinimumExpanding)
        lay = QVBoxLayout(self)
        lay.addSpacerItem(self.text_room)
        lay.addLayout(row)
        lay.addStretch(2)
        lay.setStretch(0, 3)

    def set_highlight(self, on: bool) -> None:
        self.highlight = on
        self.update()

    def title_font(self) -> QFont:
        font = QFont(self.font())
        font.setPointSizeF(font.pointSizeF() * 1.7)
        font.setBold(True)
        return font

    def text_heights(self, width: int) -> tuple[int, int]:
        """The title's and the body's heights, word-wrapped ``width`` px wide."""
        box = QRect(0, 0, max(1, width), 100_000)
        return (QFontMetrics(self.title_font()).boundingRect(box, FLAGS, TITLE).height(),
                self.fontMetrics().boundingRect(box, FLAGS, body_text()).height())

    def text_width(self) -> int:
        return self.width() - 2 * (MARGIN + PAD)

    def resizeEvent(self, event: QResizeEvent) -> None:
        title, body = self.text_heights(self.text_width())
        room = MARGIN + PAD + title + GAP + body + ABOVE_BUTTONS
        if self.text_room.sizeHint().height() != room:
            self.text_room.changeSize(0, room, QSizePolicy.Policy.Minimum,
                                      QSizePolicy.Policy.MinimumExpanding)
            self.layout().invalidate()
        super().resizeEvent(event)

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillRect(self.rect(), QColor("#15171a"))
        box = QRectF(self.rect()).adjusted(MARGIN, MARGIN, -MARGIN, -MARGIN)
        color = QColor("#4c9be8") if self.highlight else QColor("#3a3f46")
        pen = QPen(color, 2, Qt.PenStyle.DashLine)
        pen.setDashPattern([6, 5])
        p.setPen(pen)
        p.setBrush(QColor(76, 155, 232, 25) if self.highlight else Qt.BrushStyle.NoBrush)
        p.drawRoundedRect(box, 16, 16)
        title, body = self.text_rects()
        p.setFont(self.title_font())
        p.setPen(QColor("#e6e6e6"))
        p.drawText(title, FLAGS, TITLE)
        p.setFont(self.font())
        p.setPen(QColor("#8d939b"))
        p.drawText(body, FLAGS, body_text())
        p.end()

    def text_rects(self) -> tuple[QRectF, QRectF]:
        """Where the title and the body go: each wraps within the box and its rectangle
        grows with its lines; the two end just above the buttons, one under the other (a
        fixed 44-px body box once overflowed onto a title cut at both ends)."""
        width = self.text_width()
        title_h, body_h = self.text_heights(width)
        left = MARGIN + PAD
        body_top = self.files.geometry().top() - ABOVE_BUTTONS - body_h
        title_top = body_top - GAP - title_h
        return (QRectF(left, title_top, width, title_h), QRectF(left, body_top, width, body_h))
