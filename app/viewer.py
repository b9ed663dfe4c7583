"""Compare view: split / side-by-side / A-B toggle, all panes sharing one zoom and pan.

One :class:`ViewState` (scale and the image point at the pane centre) drives every pane,
so panes cannot drift apart: a wheel or drag in any pane changes the shared state and all
panes repaint. Painting draws only the visible rectangle of the pyramid level that
matches the zoom (see :class:`app.convert.Picture`); no image is copied per repaint.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QObject, QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QMouseEvent, QPainter, QPaintEvent, QPen, QWheelEvent
from PySide6.QtWidgets import QHBoxLayout, QWidget

from app.convert import Picture

MIN_SCALE, MAX_SCALE = 0.01, 64.0
ZOOM_STEP = 1.25
SPLIT, SIDE, TOGGLE = "split", "side", "toggle"
MODES = (SPLIT, SIDE, TOGGLE)
BACKGROUND = QColor("#15171a")


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
        self.scale = _clamp(self.fit_scale(pane), MIN_SCALE, MAX_SCALE)
        self.center = QPointF(self.image_size.width() / 2, self.image_size.height() / 2)
        self.changed.emit()

    def set_scale(self, scale: float, pane: QSize, anchor: QPointF | None = None) -> None:
        """Zoom to ``scale`` keeping the image point under ``anchor`` (widget px) fixed."""
        anchor = anchor if anchor is not None else QPointF(pane.width() / 2, pane.height() / 2)
        fixed = self.to_image(anchor, pane)
        self.scale = _clamp(scale, MIN_SCALE, MAX_SCALE)
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
        self.center = QPointF(_clamp(self.center.x(), 0, self.image_size.width()),
                              _clamp(self.center.y(), 0, self.image_size.height()))


def _clamp(v: float, lo: float, hi: float) -> float:
    return max(lo, min(hi, v))


class ImagePane(QWidget):
    """Draws one picture, or two on either side of a draggable split line."""

    def __init__(self, state: ViewState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.a: Picture | None = None
        self.b: Picture | None = None
        self.a_label = self.b_label = ""
        self.split: float | None = None  # fraction of the width, None: single picture
        self._drag: str | None = None
        self._last = QPointF()
        self.setMouseTracking(True)
        self.setMinimumSize(120, 120)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        state.changed.connect(self.update)

    def set_content(self, a: Picture | None, a_label: str, b: Picture | None = None,
                    b_label: str = "", split: float | None = None) -> None:
        self.a, self.a_label, self.b, self.b_label, self.split = a, a_label, b, b_label, split
        self.update()

    # -- painting ----------------------------------------------------------------------
    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 (Qt API)
        p = QPainter(self)
        p.fillRect(self.rect(), BACKGROUND)
        if self.split is None or self.b is None:
            if self.a is not None:
                self._draw(p, self.a, QRectF(self.rect()))
            self._label(p, self.a_label, left=True)
            if self.split is not None and self.b_label:
                self._label(p, self.b_label, left=False)
        else:
            x = self.split_x()
            if self.a is not None:
                self._draw(p, self.a, QRectF(0, 0, x, self.height()))
            self._draw(p, self.b, QRectF(x, 0, self.width() - x, self.height()))
            self._split_line(p, x)
            self._label(p, self.a_label, left=True)
            self._label(p, self.b_label, left=False)
        p.end()

    def _draw(self, p: QPainter, pic: Picture, clip: QRectF) -> None:
        s = self.state
        pane = self.size()
        top_left = s.to_image(clip.topLeft(), pane)
        bottom_right = s.to_image(clip.bottomRight(), pane)
        dpr = self.devicePixelRatioF()
        level, ls = pic.level_for(s.scale * dpr)
        # Visible part in level pixels, widened to whole pixels so the mapping stays exact.
        x0 = max(0, math.floor(top_left.x() * ls))
        y0 = max(0, math.floor(top_left.y() * ls))
        x1 = min(level.width(), math.ceil(bottom_right.x() * ls))
        y1 = min(level.height(), math.ceil(bottom_right.y() * ls))
        if x1 <= x0 or y1 <= y0:
            return
        source = QRectF(x0, y0, x1 - x0, y1 - y0)
        tl = s.to_widget(QPointF(x0 / ls, y0 / ls), pane)
        br = s.to_widget(QPointF(x1 / ls, y1 / ls), pane)
        p.save()
        p.setClipRect(clip)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, s.scale * dpr < 2.0)
        p.drawImage(QRectF(tl, br), level, source)
        p.restore()

    def split_x(self) -> float:
        return round((self.split or 0.5) * self.width())

    def _split_line(self, p: QPainter, x: float) -> None:
        p.save()
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(QPen(QColor(255, 255, 255, 220), 1.5))
        p.drawLine(QPointF(x, 0), QPointF(x, self.height()))
        c = QPointF(x, self.height() / 2)
        p.setBrush(QColor(30, 32, 36, 230))
        p.drawEllipse(c, 14, 14)
        p.setBrush(QColor(255, 255, 255))
        p.setPen(Qt.PenStyle.NoPen)
        for sign in (-1, 1):
            tip = QPointF(c.x() + sign * 9, c.y())
            p.drawPolygon([tip, QPointF(c.x() + sign * 3, c.y() - 5),
                           QPointF(c.x() + sign * 3, c.y() + 5)])
        p.restore()

    def _label(self, p: QPainter, text: str, *, left: bool) -> None:
        if not text:
            return
        p.save()
        f = QFont(self.font())
        f.setPointSizeF(max(8.0, f.pointSizeF()))
        f.setBold(True)
        p.setFont(f)
        fm = p.fontMetrics()
        w, h = fm.horizontalAdvance(text) + 16, fm.height() + 8
        x = 10 if left else self.width() - w - 10
        box = QRectF(x, 10, w, h)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(0, 0, 0, 150))
        p.drawRoundedRect(box, 5, 5)
        p.setPen(QColor(240, 240, 240))
        p.drawText(box, Qt.AlignmentFlag.AlignCenter, text)
        p.restore()

    # -- mouse -------------------------------------------------------------------------
    def _near_split(self, x: float) -> bool:
        return self.split is not None and self.b is not None and abs(x - self.split_x()) <= 8

    def mousePressEvent(self, e: QMouseEvent) -> None:  # noqa: N802
        if e.button() == Qt.MouseButton.LeftButton:
            self._drag = "split" if self._near_split(e.position().x()) else "pan"
            self._last = e.position()
            if self._drag == "pan":
                self.setCursor(Qt.CursorShape.ClosedHandCursor)

    def mouseMoveEvent(self, e: QMouseEvent) -> None:  # noqa: N802
        pos = e.position()
        if self._drag == "split":
            self.split = _clamp(pos.x() / max(1, self.width()), 0.0, 1.0)
            self.update()
        elif self._drag == "pan":
            self.state.pan(pos.x() - self._last.x(), pos.y() - self._last.y())
            self._last = pos
        elif self._near_split(pos.x()):
            self.setCursor(Qt.CursorShape.SplitHCursor)
        else:
            self.setCursor(Qt.CursorShape.OpenHandCursor if self.a else Qt.CursorShape.ArrowCursor)

    def mouseReleaseEvent(self, e: QMouseEvent) -> None:  # noqa: N802
        self._drag = None
        self.unsetCursor()

    def mouseDoubleClickEvent(self, e: QMouseEvent) -> None:  # noqa: N802
        if self.state.fitting:
            self.state.set_scale(1.0 / self.devicePixelRatioF(), self.size(), e.position())
        else:
            self.state.fit(self.size())

    def wheelEvent(self, e: QWheelEvent) -> None:  # noqa: N802
        steps = e.angleDelta().y() / 120.0
        if steps:
            self.state.zoom_by(ZOOM_STEP**steps, self.size(), e.position())
        e.accept()

    def resizeEvent(self, event) -> None:  # noqa: N802
        if self.state.fitting and not self.size().isEmpty():
            self.state.fit(self.size())
        super().resizeEvent(event)


class CompareView(QWidget):
    """Before/after comparison with three layouts and a hold-to-see-A toggle."""

    zoom_changed = Signal(float)
    mode_changed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = ViewState()
        self.panes = [ImagePane(self.state, self), ImagePane(self.state, self)]
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        for pane in self.panes:
            lay.addWidget(pane)
        self.mode = SPLIT
        self.showing_a = False  # toggle mode: A is on screen
        self.holding = False  # hold key: A is on screen whatever the mode
        self._split = 0.5
        self.a: Picture | None = None
        self.b: Picture | None = None
        self.a_label = self.b_label = ""
        self.state.changed.connect(lambda: self.zoom_changed.emit(self.state.scale))
        self._layout_panes()

    @property
    def pane_size(self) -> QSize:
        return self.panes[0].size()

    def set_pictures(self, a: Picture | None, a_label: str, b: Picture | None,
                     b_label: str) -> None:
        self.a, self.a_label, self.b, self.b_label = a, a_label, b, b_label
        ref = a or b
        if ref is not None:
            self.state.set_image_size(ref.size, self.pane_size)
        self._layout_panes()

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(mode)
        if mode != self.mode:
            self._remember_split()
            self.mode = mode
            self.showing_a = False
            self._layout_panes()
            self.mode_changed.emit(mode)
            if self.state.fitting:
                self.state.fit(self.pane_size)

    def toggle_ab(self) -> None:
        """Flip between A and B (switches to toggle mode first)."""
        if self.mode != TOGGLE:
            self.set_mode(TOGGLE)
        self.showing_a = not self.showing_a
        self._layout_panes()

    def set_hold(self, hold: bool) -> None:
        if hold != self.holding:
            self.holding = hold
            self._layout_panes()

    def fit(self) -> None:
        self.state.fit(self.pane_size)

    def actual_size(self) -> None:
        self.state.set_scale(1.0 / self.devicePixelRatioF(), self.pane_size)

    def zoom(self, factor: float) -> None:
        self.state.zoom_by(factor, self.pane_size)

    def _remember_split(self) -> None:
        if self.mode == SPLIT and self.panes[0].split is not None:
            self._split = self.panes[0].split

    def _layout_panes(self) -> None:
        self._remember_split()
        first, second = self.panes
        side = self.mode == SIDE and not self.holding
        second.setVisible(side)
        if self.holding:
            first.set_content(self.a, self.a_label)
        elif self.mode == SPLIT:
            first.set_content(self.a, self.a_label, self.b, self.b_label, split=self._split)
        elif self.mode == SIDE:
            first.set_content(self.a, self.a_label)
            second.set_content(self.b, self.b_label)
        elif self.showing_a:
            first.set_content(self.a, self.a_label)
        else:
            first.set_content(self.b or self.a, self.b_label if self.b else self.a_label)
