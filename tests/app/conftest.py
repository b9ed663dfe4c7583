"""Fixtures for the GUI tests: offscreen Qt, a tiny random model, a temp settings file.

QT_QPA_PLATFORM must be set before the QApplication exists, so it is set at import.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings

from tests.helpers import tiny_enhancer, write_jpeg


@pytest.fixture(autouse=True, scope="module")
def gui_thread_collection(qapp):
    """As in the app (``rbqe_studio.main``): garbage is collected on the GUI thread only."""
    from rbqe_studio.collector import collect_on_gui_thread

    collector = collect_on_gui_thread(qapp)
    yield collector
    collector.stop()


@pytest.fixture
def themed(qapp):
    """The app's own theme (its bold 11 pt rule, its paddings), as users see it; undone
    after the test so other tests keep the plain style."""
    from rbqe_studio import theme

    saved = qapp.style().name(), qapp.palette(), qapp.font(), qapp.styleSheet()
    theme.apply(qapp)
    yield
    style, palette, font, sheet = saved
    qapp.setStyleSheet(sheet)
    qapp.setStyle(style)
    qapp.setPalette(palette)
    qapp.setFont(font)


@pytest.fixture
def factory():
    """The app's enhancer factory (it is given the engine spec): the tiny luma model."""
    return lambda *_spec: tiny_enhancer()


@pytest.fixture
def store(tmp_path: Path) -> QSettings:
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def jpeg():
    """Factory ``jpeg(path, size=(64, 48), quality=20, seed=0)``: writes a JPEG *file*
    (:func:`tests.helpers.write_jpeg`; JPEG *pixels*: the ``make_jpeg`` fixture)."""
    return write_jpeg


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    return [write_jpeg(tmp_path / "in" / f"photo{i}.jpg", seed=i) for i in range(3)]


@pytest.fixture
def window(qtbot, store, factory):
    from rbqe_studio.main_window import MainWindow

    # One intra-op thread: two worker threads plus a busy 2-core test machine otherwise
    # oversubscribe OpenMP, which can slow tiny jobs down by orders of magnitude.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    win = MainWindow(store, factory, check_weights=False)
    win._confirm_quit = lambda: True  # closing during a batch asks; tests that ask say so
    win._confirm_replace = lambda folder, files: False  # Save all's question: keep them
    win._confirm_overwrite = lambda path: False  # Save's, for a suffix it added: keep it
    qtbot.addWidget(win)
    win.resize(1200, 800)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.close()
    assert not win.session.host.thread.isRunning()
    assert not win.batch_host.thread.isRunning()
    torch.set_num_threads(threads)


# A tiled run held tile by tile (test_app_tile_preview's factory, and those that use it).
class Gate:
    """Holds the worker after each tile until the test lets it go on (:meth:`step`), so
    that what the window does between two tiles is seen at a known point of the run."""

    def __init__(self) -> None:
        self.steps = threading.Semaphore(0)
        self.free = threading.Event()  # no more holding
        self.tiles = 0  # tiles the worker has handed on

    def after_tile(self, cancel: Callable[[], bool] | None) -> None:
        self.tiles += 1
        # A cancel lets it go too: the window's close stops the worker and waits for it.
        while not (self.free.is_set() or (cancel is not None and cancel())
                   or self.steps.acquire(timeout=0.02)):
            pass

    def step(self) -> None:
        self.steps.release()


@pytest.fixture
def gate():
    g = Gate()
    yield g
    g.free.set()


@pytest.fixture
def tile_exits() -> str:
    """The enhancer's tile exits, for a tiled factory that asks (a test parametrizes it to
    try both)."""
    return "shared"
