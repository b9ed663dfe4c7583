"""Zoom and pan shared by every pane of the compare view.

Kept apart from the widgets so the mapping rules are small and testable: ``scale`` is
screen pixels per image pixel and ``center`` is the image point shown at the middle of
the pane; every pane maps with the same two numbers, so panes cannot drift apart.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QPointF, QSize, Signal
from PySide6.QtGui import QTransform

MIN_SCALE, MAX_SCALE = 0.01, 64.0
# Zoom in / out step through these screen pixels per image pixel (device pixels, so 100 %
# stays 1:1 on a high-DPI screen): whole multiples and their reciprocals, so that 200 %
# and 300 % are reached, where every image pixel covers the same number of screen pixels.
ZOOM_LEVELS = tuple(sorted({z for m in (1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
                            for z in (m, 1 / m)}))


class ViewState(QObject):
    """Zoom and pan shared by all panes: ``scale`` screen px per image px, ``center``."""

    changed = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.scale = 1.0
        self.center = QPointF(0, 0)
        self.image_size = QSize(0, 0)
        self.fitting = True  # follow the pane size until the user zooms
        # Fit never enlarges past 1:1 (the viewer sets it in device pixels): a small photo
        # at 107 % showed its blocks unevenly resampled, which this tool exists to judge.
        self.fit_limit = 1.0

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
        return min(pane.width() / iw, pane.height() / ih, self.fit_limit)

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

    def overflows(self, pane: QSize) -> tuple[bool, bool]:
        """Whether the picture is wider, and taller, than ``pane`` at this zoom: the ways
        it can be panned."""
        return (self.image_size.width() * self.scale > pane.width() + 0.5,
                self.image_size.height() * self.scale > pane.height() + 0.5)

    def _clamp_center(self) -> None:
        self.center = QPointF(clamp(self.center.x(), 0, self.image_size.width()),
                              clamp(self.center.y(), 0, self.image_size.height()))


def next_zoom(current: float, direction: int) -> float:
    """The zoom of :data:`ZOOM_LEVELS` after ``current`` (device px per image px) going in
    (``direction`` > 0) or out; ``current`` itself when there is none that way."""
    if direction > 0:
        return next((z for z in ZOOM_LEVELS if z > current * 1.001), current)
    return next((z for z in reversed(ZOOM_LEVELS) if z < current / 1.001), current)


def snapped(point: QPointF, device: QTransform) -> QPointF:
    """``point`` (widget px) moved onto the nearest whole pixel of the device that
    ``device`` maps it to (the window's backing store, a grab's pixmap).

    A picture drawn from there at an integer zoom gives each of its pixels the same
    number of device pixels; drawn from half a device pixel (an odd pane width, a 150 %
    screen), one column or row came out a pixel wider.
    """
    d = device.map(point)
    inverse, _invertible = device.inverted()
    return inverse.map(QPointF(round(d.x()), round(d.y())))


def clamp(v: float, lo: float, hi: float) -> float:
    return max(lo, min(hi, v))
