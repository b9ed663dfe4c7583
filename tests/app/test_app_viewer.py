"""Compare view: conversion, pyramid, zoom around the cursor, panes sharing zoom and pan."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication

from rbqe_studio.convert import Picture, qimage_to_array, to_qimage, to_uint8
from rbqe_studio.viewer import SIDE, SPLIT, TOGGLE, CompareView


def test_to_qimage_round_trips_rgb_and_grey() -> None:
    rng = np.random.default_rng(1)
    rgb = rng.random((7, 9, 3), dtype=np.float32)
    assert np.array_equal(qimage_to_array(to_qimage(rgb)), to_uint8(rgb))
    grey = rng.random((5, 4, 1), dtype=np.float32)
    out = qimage_to_array(to_qimage(grey))
    assert np.array_equal(out[..., 0], to_uint8(grey)[..., 0])
    assert np.array_equal(out[..., 0], out[..., 2])


def test_pyramid_picks_a_level_with_enough_pixels() -> None:
    pic = Picture.from_array(np.zeros((1200, 2000, 3), np.float32))
    assert [lv.width() for lv in pic.levels] == [2000, 1000, 500]
    assert pic.level_for(1.0)[0] is pic.levels[0]
    level, scale = pic.level_for(0.3)  # 0.3 screen px per pixel: the half level has 0.6
    assert level.width() == 1000 and scale == 0.5
    assert pic.level_for(0.01)[0] is pic.levels[-1]


@pytest.fixture
def view(qtbot):
    v = CompareView()
    qtbot.addWidget(v)
    v.resize(800, 400)
    a = Picture.from_array(np.full((300, 400, 3), 0.2, np.float32))
    b = Picture.from_array(np.full((300, 400, 3), 0.8, np.float32))
    v.set_pictures(a, "A", b, "B")
    v.show()
    qtbot.waitExposed(v)
    return v


def wheel(widget, pos: QPointF, steps: int) -> None:
    event = QWheelEvent(pos, widget.mapToGlobal(pos), QPoint(), QPoint(0, 120 * steps),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                        Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def test_wheel_zooms_around_the_cursor(view) -> None:
    pane = view.panes[0]
    anchor = QPointF(200, 100)
    before = view.state.to_image(anchor, pane.size())
    wheel(pane, anchor, 2)
    assert view.state.scale > 1.0 and not view.state.fitting
    after = view.state.to_image(anchor, pane.size())
    assert after.x() == pytest.approx(before.x()) and after.y() == pytest.approx(before.y())


def test_side_by_side_panes_share_zoom_and_pan(qtbot, view) -> None:
    view.set_mode(SIDE)
    left, right = view.panes
    qtbot.waitUntil(lambda: right.isVisible() and right.width() > 100)
    wheel(right, QPointF(50, 60), 3)
    qtbot.mousePress(right, Qt.MouseButton.LeftButton, pos=QPoint(100, 100))
    qtbot.mouseMove(right, QPoint(140, 70))
    qtbot.mouseRelease(right, Qt.MouseButton.LeftButton, pos=QPoint(140, 70))
    assert abs(left.width() - right.width()) <= 1
    for p in (QPointF(0, 0), QPointF(123.5, 77), QPointF(400, 300)):
        assert left.state.to_widget(p, left.view_size()) == \
            right.state.to_widget(p, right.view_size())
    scale, center = view.state.scale, QPointF(view.state.center)
    view.set_mode(TOGGLE)  # switching layouts keeps the zoom the user chose
    view.toggle_ab()
    assert view.state.scale == scale and view.state.center == center
    assert view.panes[0].a_label == "A" and view.showing_a


def test_split_line_drags_and_hold_shows_a(qtbot, view) -> None:
    view.set_mode(SPLIT)
    pane = view.panes[0]
    x = int(pane.split_x())
    qtbot.mousePress(pane, Qt.MouseButton.LeftButton, pos=QPoint(x, 200))
    qtbot.mouseMove(pane, QPoint(x - 200, 200))
    qtbot.mouseRelease(pane, Qt.MouseButton.LeftButton, pos=QPoint(x - 200, 200))
    assert pane.split == pytest.approx((x - 200) / pane.width(), abs=0.01)
    assert view.state.fitting  # dragging the line did not pan
    view.set_hold(True)
    assert pane.b is None and pane.a_label == "A"
    view.set_hold(False)
    assert pane.b is not None


def test_fit_and_actual_size(view) -> None:
    view.actual_size()
    assert view.state.scale == pytest.approx(1.0 / view.devicePixelRatioF())
    view.fit()
    # 400x300 in an 800x400 pane: fit stops at 1:1 (it enlarged to 133 %)
    assert view.state.scale == pytest.approx(1.0 / view.devicePixelRatioF())
    view.grab()  # paints without error at any zoom
    view.zoom(20)
    view.grab()
    assert view.state.to_image(QPointF(0, 0), QSize(10, 10)) is not None


def test_paint_reads_only_the_visible_part_of_a_large_photo(qtbot) -> None:
    """No full-image work per repaint: at any zoom the source rectangle is about the size
    of the pane in screen pixels (the pyramid covers zoomed-out views)."""
    v = CompareView()
    qtbot.addWidget(v)
    v.resize(600, 400)
    big = Picture.from_array(np.zeros((3000, 4000, 1), np.float32))  # 12 MP
    v.set_pictures(big, "A", big, "B")
    v.show()
    qtbot.waitExposed(v)
    pane = v.panes[0]
    budget = 4 * pane.width() * pane.height()  # generous: a level has < 2x the screen pixels
    for zoom in (None, 1.0, 4.0, 0.3):
        if zoom is None:
            v.fit()
        else:
            v.state.set_scale(zoom, pane.view_size())
        _level, source, target = pane.plan(big, QRectF(pane.rect()))
        assert source.width() * source.height() <= budget, zoom
        assert target.intersects(QRectF(pane.rect()))
    v.fit()
    assert pane.plan(big, QRectF(pane.rect()))[0] is not big.levels[0]  # a reduced level


def test_fit_does_not_enlarge_a_small_photo(qtbot) -> None:
    """Fit showed a 481x321 photo at 107 %: its JPEG blocks unevenly resampled, in a tool
    for judging them. It stops at 1:1; a larger photo still shrinks to fit."""
    v = CompareView()
    qtbot.addWidget(v)
    v.resize(900, 700)
    v.show()
    small = Picture.from_array(np.zeros((321, 481, 3), np.float32))
    v.set_pictures(small, "A", small, "B")
    v.fit()
    qtbot.waitUntil(lambda: v.state.scale > 0)
    assert v.state.scale == pytest.approx(1.0 / v.devicePixelRatioF())
    big = Picture.from_array(np.zeros((3000, 4000, 3), np.float32))
    v.set_pictures(big, "A", big, "B")
    v.fit()
    assert v.state.scale < 0.25
