"""Compare view: split / side-by-side / A-B toggle, all panes sharing one zoom and pan.

One :class:`ViewState` (scale and the image point at the pane centre) drives every pane,
so panes cannot drift apart: a wheel or drag in any pane changes the shared state and all
panes repaint. Painting draws only the visible rectangle of the pyramid level that
matches the zoom (see :class:`rbqe_studio.convert.Picture`); no image is copied per repaint.
The difference heat map is made on a pool thread (a second or more for 24 megapixels), and
dropped if the pictures changed meanwhile.
"""

from __future__ import annotations

import logging
import math

from PySide6.QtCore import QObject, QPointF, QRect, QRectF, QSize, Qt, QThreadPool, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetrics,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QTransform,
    QWheelEvent,
)
from PySide6.QtWidgets import QHBoxLayout, QWidget

from rbqe_studio.convert import DIFF_GAIN, Picture, difference, mismatch
from rbqe_studio.theme import ACCENT
from rbqe_studio.viewstate import ViewState, clamp, next_zoom, snapped

log = logging.getLogger(__name__)

ZOOM_STEP = 1.25  # the mouse wheel's factor per notch (the keys step through ZOOM_LEVELS)
# Arrow keys pan a picture larger than its pane by an eighth of the pane (with Shift, by
# half); the move is the picture's: Right brings more of its right side into view.
PAN_KEYS: dict[int, tuple[int, int]] = {
    Qt.Key.Key_Left: (1, 0), Qt.Key.Key_Right: (-1, 0), Qt.Key.Key_Up: (0, 1),
    Qt.Key.Key_Down: (0, -1)}
PAN_PART, PAN_PART_SHIFT = 1 / 8, 1 / 2
SPLIT, SIDE, TOGGLE, DIFF = "split", "side", "toggle", "diff"
MODES = (SPLIT, SIDE, TOGGLE, DIFF)
BACKGROUND = QColor("#15171a")


class ImagePane(QWidget):
    """Draws one picture, or two on either side of a draggable split line."""

    def __init__(self, state: ViewState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.a: Picture | None = None
        self.b: Picture | None = None
        self.a_label = self.b_label = ""
        self.split: float | None = None  # fraction of the width, None: single picture
        self.message = ""  # shown instead of pictures (e.g. why an image failed)
        self.ref: ImagePane | None = None  # pane whose size defines the shared mapping
        self._drag: str | None = None
        self._last = QPointF()
        self.setMouseTracking(True)
        self.setMinimumSize(120, 120)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        state.changed.connect(self.update)

    def view_size(self) -> QSize:
        """Size used for mapping: the reference pane's, so side-by-side panes that differ
        by a pixel (odd widths) still show exactly the same image point at each pixel."""
        return (self.ref or self).size()

    def set_content(self, a: Picture | None, a_label: str, b: Picture | None = None,
                    b_label: str = "", split: float | None = None, message: str = "") -> None:
        same = (a is self.a and b is self.b and split == self.split
                and message == self.message)
        labels = self._label_boxes()
        self.a, self.a_label, self.b, self.b_label, self.split = a, a_label, b, b_label, split
        self.message = message
        if not same:
            self.update()
            return
        # The same pictures: only a label may have changed (a tiled run's preview counts
        # its tiles as they come), so only the labels are painted again.
        for box in labels + self._label_boxes():
            self.update(box)

    def update_area(self, pic: Picture, area: QRect) -> None:
        """Paints again where ``area`` of ``pic`` (full-resolution pixels), which was
        painted over in place, is shown in this pane (nothing if it is not shown)."""
        if self.message or (pic is not self.a and pic is not self.b):
            return
        pane = self.view_size()
        tl = self.state.to_widget(QPointF(area.left(), area.top()), pane)
        br = self.state.to_widget(QPointF(area.right() + 1, area.bottom() + 1), pane)
        # Two pixels more each way: the picture's corner is snapped to a device pixel, and
        # a smooth zoomed-out draw reads a neighbouring pixel (see plan).
        self.update(QRectF(tl, br).toAlignedRect().adjusted(-2, -2, 2, 2) & self.rect())

    # -- painting ----------------------------------------------------------------------
    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), BACKGROUND)
        if self.message:
            self._message(p)
        elif self.split is None or self.b is None:
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
        if self.hasFocus():  # where the arrow keys pan (and keyboard users are)
            p.setPen(QPen(QColor(ACCENT), 1))
            p.drawRect(QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5))
        p.end()

    def plan(self, pic: Picture, clip: QRectF, device: QTransform | None = None
             ) -> tuple[QImage, QRectF, QRectF] | None:
        """What to draw for ``pic`` inside ``clip``: (pyramid level, source, target).

        The source is only the visible part of the level that matches the zoom, widened
        to whole pixels so that the source-to-target mapping stays exact. The picture's
        corner is put on a whole pixel of the ``device`` painted on (the painter's device
        transform; by default a pixmap of this pane), the same for every pane and side.
        """
        s = self.state
        pane = self.view_size()
        dpr = self.devicePixelRatioF()
        origin = s.to_widget(QPointF(0, 0), pane)
        shift = snapped(origin, device or QTransform.fromScale(dpr, dpr)) - origin
        top_left = s.to_image(clip.topLeft() - shift, pane)
        bottom_right = s.to_image(clip.bottomRight() - shift, pane)
        level, ls = pic.level_for(s.scale * dpr)
        x0 = max(0, math.floor(top_left.x() * ls))
        y0 = max(0, math.floor(top_left.y() * ls))
        x1 = min(level.width(), math.ceil(bottom_right.x() * ls))
        y1 = min(level.height(), math.ceil(bottom_right.y() * ls))
        if x1 <= x0 or y1 <= y0:
            return None
        tl = s.to_widget(QPointF(x0 / ls, y0 / ls), pane) + shift
        br = s.to_widget(QPointF(x1 / ls, y1 / ls), pane) + shift
        return level, QRectF(x0, y0, x1 - x0, y1 - y0), QRectF(tl, br)

    def _draw(self, p: QPainter, pic: Picture, clip: QRectF) -> None:
        plan = self.plan(pic, clip, p.deviceTransform())
        if plan is None:
            return
        level, source, target = plan
        p.save()
        p.setClipRect(clip)
        # Smooth when shrinking; nearest when magnifying, so pixels stay visible as pixels.
        smooth = self.state.scale * self.devicePixelRatioF() < 2.0
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, smooth)
        p.drawImage(target, level, source)
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

    def _message(self, p: QPainter) -> None:
        p.save()
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        width = min(560.0, self.width() - 40.0)
        flags = Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap
        title, _, detail = self.message.partition("\n")
        bold = QFont(self.font())
        bold.setBold(True)
        bold.setPointSizeF(bold.pointSizeF() * 1.2)
        p.setFont(bold)
        t_rect = p.fontMetrics().boundingRect(0, 0, int(width), 1000, flags, title)
        p.setFont(self.font())
        d_rect = p.fontMetrics().boundingRect(0, 0, int(width), 1000, flags, detail)
        h = t_rect.height() + (d_rect.height() + 10 if detail else 0) + 40
        box = QRectF((self.width() - width - 40) / 2, (self.height() - h) / 2, width + 40, h)
        p.setPen(QPen(QColor("#6b3a38"), 1))
        p.setBrush(QColor("#2a1f21"))
        p.drawRoundedRect(box, 10, 10)
        p.setFont(bold)
        p.setPen(QColor("#f3a6a1"))
        y = box.top() + 20
        p.drawText(QRectF(box.left() + 20, y, width, t_rect.height()), flags, title)
        if detail:
            p.setFont(self.font())
            p.setPen(QColor("#d9d9d9"))
            p.drawText(QRectF(box.left() + 20, y + t_rect.height() + 10, width, d_rect.height()),
                       flags, detail)
        p.restore()

    def _label_font(self) -> QFont:
        f = QFont(self.font())
        f.setPointSizeF(max(8.0, f.pointSizeF()))
        f.setBold(True)
        return f

    def _label_box(self, text: str, *, left: bool) -> tuple[str, QRectF]:
        """The label ``text`` as drawn (elided where wider than its room: the pane, or
        beside the other label in a split) and where: the top left or right corner."""
        fm = QFontMetrics(self._label_font(), self)
        room = self.width() - 20 - 16  # 10 pixels each side, 8 of padding in the box
        if self.split is not None and self.a_label and self.b_label:
            room -= 10 + 16  # a gap between the two, and the other's padding
            other = fm.horizontalAdvance(self.b_label if left else self.a_label)
            # Each keeps half of the room, or more where the other needs less.
            room = max(room // 2, room - other)
        if fm.horizontalAdvance(text) > room:
            text = fm.elidedText(text, Qt.TextElideMode.ElideRight, max(0, room))
        w, h = fm.horizontalAdvance(text) + 16, fm.height() + 8
        x = 10 if left else self.width() - w - 10
        return text, QRectF(x, 10, w, h)

    def _label_boxes(self) -> list[QRect]:
        """The pixels the labels now shown cover (see paintEvent)."""
        if self.message:
            return []
        shown = [(self.a_label, True)]
        if self.split is not None and self.b_label:
            shown.append((self.b_label, False))
        return [self._label_box(text, left=left)[1].toAlignedRect().adjusted(-1, -1, 1, 1)
                for text, left in shown if text]

    def _label(self, p: QPainter, text: str, *, left: bool) -> None:
        if not text:
            return
        p.save()
        p.setFont(self._label_font())
        text, box = self._label_box(text, left=left)
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

    def mousePressEvent(self, e: QMouseEvent) -> None:
        if e.button() == Qt.MouseButton.LeftButton:
            self._drag = "split" if self._near_split(e.position().x()) else "pan"
            self._last = e.position()
            if self._drag == "pan":
                self.setCursor(Qt.CursorShape.ClosedHandCursor)

    def mouseMoveEvent(self, e: QMouseEvent) -> None:
        pos = e.position()
        if self._drag == "split":
            self.split = clamp(pos.x() / max(1, self.width()), 0.0, 1.0)
            self.update()
        elif self._drag == "pan":
            self.state.pan(pos.x() - self._last.x(), pos.y() - self._last.y())
            self._last = pos
        elif self._near_split(pos.x()):
            self.setCursor(Qt.CursorShape.SplitHCursor)
        else:
            self.setCursor(Qt.CursorShape.OpenHandCursor if self.a else Qt.CursorShape.ArrowCursor)

    def mouseReleaseEvent(self, e: QMouseEvent) -> None:
        self._drag = None
        self.unsetCursor()

    def mouseDoubleClickEvent(self, e: QMouseEvent) -> None:
        if self.state.fitting:
            self.state.set_scale(1.0 / self.devicePixelRatioF(), self.view_size(), e.position())
        else:
            self.state.fit(self.view_size())

    def wheelEvent(self, e: QWheelEvent) -> None:
        steps = e.angleDelta().y() / 120.0
        if steps:
            self.state.zoom_by(ZOOM_STEP**steps, self.view_size(), e.position())
        e.accept()

    # -- keys --------------------------------------------------------------------------
    def pans_with(self, key: int) -> bool:
        """Whether ``key`` pans the picture: an arrow along which the picture overflows
        the pane (where it fits, Left and Right stay the window's previous/next image)."""
        move = PAN_KEYS.get(key)
        if move is None or self.a is None or self.message:
            return False
        wide, tall = self.state.overflows(self.view_size())
        return wide if move[0] else tall

    def keyPressEvent(self, e: QKeyEvent) -> None:
        if not self.pans_with(e.key()):
            super().keyPressEvent(e)
            return
        dx, dy = PAN_KEYS[e.key()]
        shift = e.modifiers() & Qt.KeyboardModifier.ShiftModifier
        part = PAN_PART_SHIFT if shift else PAN_PART
        pane = self.view_size()
        self.state.pan(dx * part * pane.width(), dy * part * pane.height())

    def resizeEvent(self, event) -> None:
        self.state.fit_limit = 1.0 / self.devicePixelRatioF()  # 1:1 on this screen
        if self.state.fitting and not self.isHidden() and not self.size().isEmpty():
            self.state.fit(self.view_size())
        super().resizeEvent(event)


Made = tuple[Picture, Picture, Picture | None, str]  # a, b, their heat map, its label


class _Diff(QObject):
    """Carries a heat map made on a pool thread back to the GUI thread (queued).

    A child of its view, so the view's deletion deletes it; a heat map finished after
    that has nowhere to go and is dropped."""

    made = Signal(object)  # Made

    def start(self, a: Picture, b: Picture) -> None:
        QThreadPool.globalInstance().start(lambda: self._make(a, b))

    def _make(self, a: Picture, b: Picture) -> None:  # on a pool thread
        try:
            heat, largest = difference(a, b)
            made = (a, b, heat, f"|A − B| × {DIFF_GAIN} · largest {largest}/255")
        except Exception as exc:  # said in the view, not lost in the pool
            log.exception("could not make the difference view")
            made = (a, b, None, f"Difference: could not be made ({type(exc).__name__})")
        try:
            self.made.emit(made)
        except RuntimeError:  # the view (and this object) were deleted meanwhile
            pass


class CompareView(QWidget):
    """Before/after comparison with four layouts (split, side by side, one pane that
    flips, the difference heat map) and a hold-to-see-A toggle."""

    zoom_changed = Signal(float)
    mode_changed = Signal(str)
    diff_changed = Signal()  # the heat map kept (:attr:`diff_bytes`) was made or let go

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = ViewState()
        self.panes = [ImagePane(self.state, self), ImagePane(self.state, self)]
        self.panes[1].ref = self.panes[0]
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
        self.b_live = False  # B is painted over as it is shown (a tiled run's preview)
        self.message = ""
        self._diff: Made | None = None  # a, b, heat, label
        self._diff_asked: tuple[Picture, Picture] | None = None  # the pair being made
        self._differ = _Diff(self)
        self._differ.made.connect(self._diff_made)
        self.state.changed.connect(lambda: self.zoom_changed.emit(self.state.scale))
        self._layout_panes()

    @property
    def pane_size(self) -> QSize:
        return self.panes[0].size()

    def set_pictures(self, a: Picture | None, a_label: str, b: Picture | None,
                     b_label: str, *, b_live: bool = False) -> None:
        """The pictures on each side and their labels; ``b_live``: B is painted over in
        place while it is shown (:meth:`area_changed` says where)."""
        self.a, self.a_label, self.b, self.b_label = a, a_label, b, b_label
        self.b_live = b_live
        self.message = ""
        if self._diff is not None and (self._diff[0] is not a or self._diff[1] is not b):
            # Of pictures no longer shown: it kept them (a photo's input and exit, the
            # photo perhaps let go by the cache long since) and its own, as large
            self._diff = None
            self.diff_changed.emit()
        ref = a or b
        if ref is not None:
            self.state.set_image_size(ref.size, self.pane_size)
        self._layout_panes()

    def area_changed(self, pic: Picture, area: QRect) -> None:
        """``area`` of ``pic`` (full-resolution pixels) was painted over in place: the
        panes showing it paint that part again, and only that."""
        for pane in self.panes:
            if pane.isVisible():
                pane.update_area(pic, area)

    def set_message(self, text: str) -> None:
        """Show ``text`` (first line as a title) instead of pictures; "" to clear."""
        self.message = text
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

    def diff_picture(self) -> tuple[Picture | None, str]:
        """The heat map of |A − B| and its label, made once per pair of pictures, off the
        GUI thread: until it is ready, no picture and a label that says so."""
        a, b = self.a, self.b
        if a is None or b is None:
            return a or b, "Difference: needs a picture on each side"
        if a is b:
            return None, "Difference: A and B are the same picture"
        if self.b_live:  # a heat map of it would be out of date by its next tile
            return None, "Difference: once every tile is in"
        if why := mismatch(a, b):
            return None, f"Difference: {why}"
        if self._diff is not None and self._diff[0] is a and self._diff[1] is b:
            return self._diff[2], self._diff[3]
        if self._diff_asked is None or self._diff_asked[0] is not a or \
                self._diff_asked[1] is not b:
            self._diff_asked = (a, b)
            self._differ.start(a, b)
        return None, "Difference: computing…"

    @property
    def diff_bytes(self) -> int:
        """The bytes of the heat map kept for the pictures shown (0: none)."""
        heat = self._diff[2] if self._diff is not None else None
        return heat.nbytes if heat is not None else 0

    def _diff_made(self, made: Made) -> None:
        a, b = made[0], made[1]
        if self._diff_asked is not None and self._diff_asked[0] is a and \
                self._diff_asked[1] is b:
            self._diff_asked = None
        if a is self.a and b is self.b:  # else the pair changed meanwhile: dropped
            self._diff = made
            self.diff_changed.emit()
            if self.mode == DIFF:
                self._layout_panes()

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

    def zoom_step(self, direction: int) -> None:
        """Zoom in (``direction`` > 0) or out to the next of the zoom levels, counted in
        device pixels so that 200 % means two screen pixels per image pixel."""
        dpr = self.devicePixelRatioF()
        self.state.set_scale(next_zoom(self.state.scale * dpr, direction) / dpr,
                             self.pane_size)

    def _remember_split(self) -> None:
        if self.mode == SPLIT and self.panes[0].split is not None:
            self._split = self.panes[0].split

    def _layout_panes(self) -> None:
        self._remember_split()
        first, second = self.panes
        side = self.mode == SIDE and not self.holding and not self.message
        second.setVisible(side)
        if self.message:
            first.set_content(None, "", message=self.message)
        elif self.holding:
            first.set_content(self.a, self.a_label)
        elif self.mode == SPLIT:
            first.set_content(self.a, self.a_label, self.b, self.b_label, split=self._split)
        elif self.mode == SIDE:
            first.set_content(self.a, self.a_label)
            second.set_content(self.b, self.b_label)
        elif self.mode == DIFF:
            first.set_content(*self.diff_picture())
        elif self.showing_a:
            first.set_content(self.a, self.a_label)
        else:
            first.set_content(self.b or self.a, self.b_label if self.b else self.a_label)
