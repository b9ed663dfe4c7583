"""What the compare view puts on screen: colour converted from an embedded profile,
transparency over a checkerboard (both for display only, the same for the input and
every exit), and whole device pixels per image pixel at integer zooms."""

from __future__ import annotations

import io
import logging
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms
from PySide6.QtCore import QPointF, QRectF
from PySide6.QtGui import QTransform

from rbqe_studio.convert import CHECKER, Display, Picture, qimage_to_array, to_qimage
from rbqe_studio.viewer import SIDE, SPLIT, TOGGLE, CompareView
from tests.helpers import photo

TIMEOUT = 120_000  # generous: a loaded CI machine can be very slow


def wide_profile(name: str = "Wide test RGB") -> bytes:
    """A small ICC v2 matrix/TRC display profile with Adobe RGB (1998)'s primaries (as
    D50 XYZ) and gamma 2.2: a gamut wider than sRGB, as a phone's Display P3 is."""
    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ \0\0\0\0" + b"".join(struct.pack(">i", round(v * 65536)) for v in (x, y, z))

    ascii_name = name.encode() + b"\0"
    desc = (b"desc\0\0\0\0" + struct.pack(">I", len(ascii_name)) + ascii_name
            + b"\0" * 8 + b"\0\0\0" + b"\0" * 67)  # no Unicode, no ScriptCode name
    gamma = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(2.2 * 256)) + b"\0\0"
    tags = [(b"desc", desc), (b"cprt", b"text\0\0\0\0none\0"),
            (b"wtpt", xyz(0.9642, 1.0, 0.8249)), (b"rXYZ", xyz(0.6097, 0.3111, 0.0195)),
            (b"gXYZ", xyz(0.2053, 0.6257, 0.0609)), (b"bXYZ", xyz(0.1492, 0.0632, 0.7446)),
            (b"rTRC", gamma), (b"gTRC", gamma), (b"bTRC", gamma)]
    table, data = b"", b""
    start = 128 + 4 + 12 * len(tags)
    for sig, body in tags:
        data += b"\0" * (-len(data) % 4)
        table += sig + struct.pack(">II", start + len(data), len(body))
        data += body
    body = struct.pack(">I", len(tags)) + table + data
    header = bytearray(128)
    header[0:24] = struct.pack(">I4sI4s4s4s", 128 + len(body), b"none", 0x02100000, b"mntr",
                               b"RGB ", b"XYZ ")
    header[36:40] = b"acsp"
    header[68:80] = xyz(0.9642, 1.0, 0.8249)[8:]
    return bytes(header) + body


def to_srgb(rgb: np.ndarray, icc: bytes) -> np.ndarray:
    """What a colour-managed viewer shows for uint8 ``rgb`` in the profile ``icc``."""
    source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    out = ImageCms.profileToProfile(Image.fromarray(rgb), source, ImageCms.createProfile("sRGB"),
                                    ImageCms.Intent.RELATIVE_COLORIMETRIC, outputMode="RGB")
    return np.asarray(out)


def shown(pic: Picture) -> np.ndarray:
    return qimage_to_array(pic.levels[0])


# -- colour ------------------------------------------------------------------------------
def test_a_wide_gamut_picture_is_shown_converted_to_srgb() -> None:
    icc = wide_profile()
    rgb = photo(24, 32, seed=2)
    rgb[:8, :8] = (200, 60, 40)  # a saturated red: raw, it looked washed out
    display = Display.of(icc, 3, None)
    assert display.transform is not None and display.profile == "Wide test RGB"
    out = qimage_to_array(to_qimage(rgb.astype(np.float32) / 255, display))
    assert np.array_equal(out, to_srgb(rgb, icc))
    assert out[0, 0, 0] > 200 and out[0, 0, 1] < 60  # more saturated than the raw values
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    assert Display.of(srgb, 3, None).transform is None  # sRGB: shown as it is
    assert Display.of(icc, 1, None).transform is None  # grey: shown as it is


def test_a_profile_that_cannot_be_read_shows_the_pixels_as_they_are(caplog) -> None:
    rgb = photo(8, 8, seed=1)
    with caplog.at_level(logging.WARNING):
        display = Display.of(b"not a profile at all", 3, None, "bad.jpg")
    assert display.transform is None and display.unreadable
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and warned[0].startswith("bad.jpg: its ICC profile could not")
    out = qimage_to_array(to_qimage(rgb.astype(np.float32) / 255, display))
    assert np.array_equal(out, rgb)


def open_one(qtbot, window, path: Path):
    window.session.mode_override = "all"  # every exit, each shown as the input is
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT) as blocker:
        window.open_paths([path])
    return blocker.args[0]


def test_the_input_and_every_exit_are_shown_in_srgb(qtbot, window, tmp_path) -> None:
    icc = wide_profile()
    rgb = photo(48, 64, seed=4)
    path = tmp_path / "wide.png"
    Image.fromarray(rgb).save(path, icc_profile=icc)
    view = open_one(qtbot, window, path)
    assert np.array_equal(shown(view.input_pic), to_srgb(rgb, icc))
    assert len(view.pictures) == 5
    for e in view.result.exits:  # kept as saved (uint8): the same pixels the view had
        assert np.abs(shown(view.pictures[e.exit]).astype(int)
                      - to_srgb(e.image, icc)).max() <= 1
    colour = window.info.fields["Colour"].text()
    assert "converted from its colour profile (Wide test RGB) to sRGB" in colour
    with Image.open(path) as saved:
        assert saved.info["icc_profile"] == icc  # the file is untouched


# -- transparency ------------------------------------------------------------------------
def test_transparent_pixels_show_a_checkerboard_in_the_input_and_exits(qtbot, window,
                                                                        tmp_path) -> None:
    rgba = np.dstack([photo(48, 64, seed=5), np.full((48, 64), 255, np.uint8)])
    rgba[:16, :16] = (255, 0, 255, 0)  # hidden magenta under alpha 0
    rgba[32:, :16, 3] = 128
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(path)
    view = open_one(qtbot, window, path)
    for pic in [view.input_pic, *view.pictures.values()]:
        px = shown(pic)
        assert {tuple(px[y, x]) for y in range(16) for x in range(16)} == \
            {(c, c, c) for c in CHECKER}  # two greys, no magenta
    half = shown(view.input_pic)[40, 4].astype(int)  # alpha 128: half the grey
    expected = rgba[40, 4, :3] * (128 / 255) + CHECKER[(40 // 8 + 4 // 8) % 2] * (127 / 255)
    assert np.abs(half - expected).max() <= 1
    assert np.array_equal(shown(view.input_pic)[20:30, 20:], rgba[20:30, 20:, :3])
    assert "transparency shown over a checkerboard" in window.info.fields["Colour"].text()


def test_a_16_bit_alpha_is_scaled_to_its_depth() -> None:
    alpha = np.full((4, 4), 65535, np.uint16)
    alpha[0, 0] = 0
    rgb = np.full((4, 4, 3), 0.0, np.float32)
    px = qimage_to_array(to_qimage(rgb, Display.of(None, 3, alpha)))
    assert tuple(px[0, 0]) == (CHECKER[0],) * 3 and tuple(px[1, 1]) == (0, 0, 0)


# -- whole device pixels -----------------------------------------------------------------
def runs(line: np.ndarray) -> list[int]:
    """Lengths of the runs of equal values along ``line``, without the two ends."""
    edges = np.flatnonzero(np.diff(line.astype(int))) + 1
    return np.diff(edges).tolist()


@pytest.fixture
def checker_view(qtbot):
    v = CompareView()
    qtbot.addWidget(v)
    # Larger than the pane at 2x: every row and column is picture, no background.
    board = (np.indices((200, 300)).sum(0) % 2).astype(np.float32)[..., None]
    pic = Picture.from_array(np.repeat(board, 3, 2))
    v.set_pictures(pic, "", pic, "")
    v.resize(401, 241)  # odd: centred, the picture's corner falls on half a pixel
    v.show()
    qtbot.waitExposed(v)
    return v


@pytest.mark.parametrize(("mode", "zoom"), [(TOGGLE, 2), (TOGGLE, 3), (SPLIT, 2), (SPLIT, 3),
                                            (SIDE, 2)])
def test_integer_zooms_give_every_pixel_as_many_screen_pixels(qtbot, checker_view, mode,
                                                              zoom) -> None:
    view = checker_view
    view.set_mode(mode)
    qtbot.waitUntil(lambda: view.panes[1].isVisible() == (mode == SIDE))
    view.state.set_scale(zoom, view.pane_size)
    for pane in view.panes[: 2 if mode == SIDE else 1]:
        img = qimage_to_array(pane.grab().toImage())[1:-1, 1:-1, 0]  # inside a focus frame
        row, col = img[img.shape[0] // 2 + 20], img[:, pane.width() // 4]
        if mode == SPLIT:  # not across the split line and its handle
            row = row[: pane.split_x() - 16]
        assert set(runs(row)) == {zoom} and set(runs(col)) == {zoom}, (pane.width(), runs(row))


def test_the_corner_snaps_to_a_device_pixel_on_a_150_percent_screen(checker_view) -> None:
    from rbqe_studio.viewstate import snapped

    device = QTransform.fromScale(1.5, 1.5)
    assert snapped(QPointF(10.5, 3.2), device) == QPointF(16 / 1.5, 5 / 1.5)
    pane = checker_view.panes[0]
    checker_view.state.set_scale(2 / 1.5, checker_view.pane_size)  # 200 % there
    checker_view.state.pan(0.3, 0.7)
    pic = checker_view.a
    _level, _source, target = pane.plan(pic, QRectF(pane.rect()), device)
    corner = device.map(target.topLeft())
    assert corner.x() == pytest.approx(round(corner.x())) and \
        corner.y() == pytest.approx(round(corner.y()))
