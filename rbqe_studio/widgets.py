"""Small widgets shared by the panels."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QPainter, QPaintEvent
from PySide6.QtWidgets import QLabel


def section_title(title: str) -> QLabel:
    """The bold, underlined title of a panel's section (``sectionTitle`` in the theme)."""
    label = QLabel(title)
    label.setObjectName("sectionTitle")
    return label


class ElidedLabel(QLabel):
    """A one-line label that may shrink below its text's width: the text is then cut
    with "…" instead of widening its panel (and with it the window)."""

    def minimumSizeHint(self) -> QSize:
        return QSize(self.fontMetrics().horizontalAdvance("M…"),
                     super().minimumSizeHint().height())

    def paintEvent(self, event: QPaintEvent) -> None:
        rect = self.contentsRect()
        text = self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideRight,
                                             rect.width())
        p = QPainter(self)
        self.style().drawItemText(p, rect, int(self.alignment()), self.palette(),
                                  self.isEnabled(), text, self.foregroundRole())
        p.end()
