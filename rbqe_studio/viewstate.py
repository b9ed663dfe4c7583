"""Zoom and pan shared by every pane of the compare view.

Kept apart from the widgets so the mapping rules are small and testable: ``scale`` is
screen pixels per image pixel and ``center`` is the image point shown at the middle of
the pane; every pane maps with the same two numbers, so panes cannot drift apart.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QPointF, QSize, Signal

MIN_SCALE, MAX_SCALE = 0.01, 64.0


class ViewState(QObject):
    """Zoom and pan shared by all panes: ``scale`` screen px per image px, ``center``."""

    changed = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.scale = 1.0
        self.center = QPointF(0, 0)
        self.image_size = QSize(0, 0)
        self.fitting = True  # follow the pane size until the user zooms

    # -- mapping -----------------------------------------------------------------------
    def to_widget(self, p: QPointF, pane: QSize) -> QPointF:
        return QPointF(pane.width() / 2 + (p.x() - self.center.x()) * self.scale,
                       pane.height() / 2 + (p.y() - self.center.y()) * self.scale)

    def to_image(self, p: QPointF, pane: QSize) -> QPointF:
        return QPointF(self.center.x() + (p.x() - pane.width() / 2) / self.scale,
                       self.center.y() + (p.y() - pane.height() / 2) / self.scale)

    # -- changes -----------------------------------------------------------------------
    def set_image_size(self, size: QSize, pane: QSize) -> None:
        if size != self.image_size:
            self.image_size = QSize(size)
            self.fit(pane)

    def fit_scale(self, pane: QSize) -> float:
        iw, ih = self.image_size.width(), self.image_size.height()
        if iw <= 0 or ih <= 0 or pane.width() <= 0 or pane.height() <= 0:
            return 1.0
        return min(pane.width() / iw, pane.height() / ih)

    def fit(self, pane: QSize) -> None:
        self.fitting = True
        self.scale = clamp(self.fit_scale(pane), MIN_SCALE, MAX_SCALE)
        self.center = QPointF(self.image_size.width() / 2, self.image_size.height() / 2)
        self.changed.emit()

    def set_scale(self, scale: float, pane: QSize, anchor: QPointF | None = None) -> None:
        """Zoom to ``scale`` keeping the image point under ``anchor`` (widget px) fixed."""
        anchor = anchor if anchor is not None else QPointF(pane.width() / 2, pane.height() / 2)
        fixed = self.to_image(anchor, pane)
        self.scale = clamp(scale, MIN_SCALE, MAX_SCALE)
        self.center = QPointF(fixed.x() - (anchor.x() - pane.width() / 2) / self.scale,
                              fixed.y() - (anchor.y() - pane.height() / 2) / self.scale)
        self.fitting = False
        self._clamp_center()
        self.changed.emit()

    def zoom_by(self, factor: float, pane: QSize, anchor: QPointF | None = None) -> None:
        self.set_scale(self.scale * factor, pane, anchor)

    def pan(self, dx: float, dy: float) -> None:
        """Move the picture by ``(dx, dy)`` widget pixels."""
        self.center = QPointF(self.center.x() - dx / self.scale, self.center.y() - dy / self.scale)
        self.fitting = False
        self._clamp_center()
        self.changed.emit()

    def _clamp_center(self) -> None:
        self.center = QPointF(clamp(self.center.x(), 0, self.image_size.width()),
                              clamp(self.center.y(), 0, self.image_size.height()))


def clamp(v: float, lo: float, hi: float) -> float:
    return max(lo, min(hi, v))
