"""Small widgets shared by the panels."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QPainter, QPaintEvent, QResizeEvent
from PySide6.QtWidgets import QBoxLayout, QLabel, QLayout, QWidget


def section_title(title: str) -> QLabel:
    """The bold, underlined title of a panel's section (``sectionTitle`` in the theme)."""
    label = QLabel(title)
    label.setObjectName("sectionTitle")
    return label


class ElidedLabel(QLabel):
    """A one-line label that may shrink below its text's width: the text is then cut
    with "…" (at its end, or in its ``middle``) instead of widening its panel (and with
    it the window)."""

    def __init__(self, text: str = "", middle: bool = False) -> None:
        super().__init__(text)
        self.elide = Qt.TextElideMode.ElideMiddle if middle else Qt.TextElideMode.ElideRight

    def minimumSizeHint(self) -> QSize:
        return QSize(self.fontMetrics().horizontalAdvance("M…"),
                     super().minimumSizeHint().height())

    def shown_text(self) -> str:
        """The text as drawn at the label's width."""
        return self.fontMetrics().elidedText(self.text(), self.elide, self.contentsRect().width())

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        self.style().drawItemText(p, self.contentsRect(), int(self.alignment()),
                                  self.palette(), self.isEnabled(), self.shown_text(),
                                  self.foregroundRole())
        p.end()


class StatusLabel(ElidedLabel):
    """The status bar's line. Plain text too long for it is cut in the middle (a long
    file name gives way; the exit, score and time at its end stay) where QLabel cut the
    end off; rich text (a link) is drawn as QLabel draws it."""

    def __init__(self, text: str = "") -> None:
        super().__init__(text, middle=True)

    def say(self, text: str, rich: bool = False) -> None:
        """Shows ``text`` (HTML when ``rich``); a plain one on one line, as HTML had it (a
        multi-line error was drawn as two half-cut lines)."""
        self.setTextFormat(Qt.TextFormat.RichText if rich else Qt.TextFormat.PlainText)
        self.setText(text if rich else " ".join(text.split()))

    def paintEvent(self, event: QPaintEvent) -> None:
        if self.textFormat() == Qt.TextFormat.PlainText:
            super().paintEvent(event)
        else:
            QLabel.paintEvent(self, event)


class ButtonRow(QWidget):
    """Buttons side by side, or one above the other where the row is narrower than they
    are side by side: a panel's narrowest is then its widest button, not the row."""

    def __init__(self, *buttons: tuple[QWidget, int]) -> None:
        super().__init__()
        self.box = QBoxLayout(QBoxLayout.Direction.LeftToRight, self)
        self.box.setContentsMargins(0, 0, 0, 0)
        # The box must not set this widget's minimum (that of the buttons side by side).
        self.box.setSizeConstraint(QLayout.SizeConstraint.SetNoConstraint)
        self.buttons = [b for b, _ in buttons]
        for button, stretch in buttons:
            self.box.addWidget(button, stretch)

    def side_by_side_width(self) -> int:
        widths = [b.sizeHint().width() for b in self.buttons]
        return sum(widths) + self.box.spacing() * (len(widths) - 1)

    def minimumSizeHint(self) -> QSize:
        return QSize(max(b.minimumSizeHint().width() for b in self.buttons),
                     self.box.minimumSize().height())

    def sizeHint(self) -> QSize:
        return QSize(self.side_by_side_width(), self.box.sizeHint().height())

    def resizeEvent(self, event: QResizeEvent) -> None:
        stacked = event.size().width() < self.side_by_side_width()
        direction = QBoxLayout.Direction.TopToBottom if stacked \
            else QBoxLayout.Direction.LeftToRight
        if self.box.direction() != direction:
            self.box.setDirection(direction)
            self.updateGeometry()  # one row or two: the panel's layout gives the height
        super().resizeEvent(event)
