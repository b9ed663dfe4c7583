"""Fixtures for the GUI tests: offscreen Qt, a tiny random model, a temp settings file.

QT_QPA_PLATFORM must be set before the QApplication exists, so it is set at import.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings

from rbqe.engine import Enhancer
from rbqe.model import ModelConfig, RBQENet


def tiny_enhancer(*_args: object) -> Enhancer:
    """A random 8-channel luma model on the CPU, no tiling: fast and deterministic."""
    torch.manual_seed(0)
    return Enhancer(net=RBQENet(ModelConfig(1, 1, 8)), device="cpu", tile=0)


@pytest.fixture
def factory():
    return tiny_enhancer


@pytest.fixture
def store(tmp_path: Path) -> QSettings:
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


def make_jpeg(path: Path, size: tuple[int, int] = (64, 48), quality: int = 20,
              seed: int = 0) -> Path:
    """A smooth random picture saved as a low-quality JPEG (blocky, as users' files are)."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    base = np.stack([np.sin(6 * xx + seed), np.cos(5 * yy), np.sin(4 * (xx + yy))], -1)
    img = (base * 0.4 + 0.5 + rng.normal(0, 0.05, (h, w, 3))).clip(0, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((img * 255).astype(np.uint8)).save(path, quality=quality)
    return path


@pytest.fixture
def jpeg():
    return make_jpeg


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    return [make_jpeg(tmp_path / "in" / f"photo{i}.jpg", seed=i) for i in range(3)]


@pytest.fixture
def window(qtbot, store, factory):
    from rbqe_studio.main_window import MainWindow

    # One intra-op thread: two worker threads plus a busy 2-core test machine otherwise
    # oversubscribe OpenMP, which can slow tiny jobs down by orders of magnitude.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    win = MainWindow(store, factory, check_weights=False)
    win._confirm_quit = lambda: True  # closing during a batch asks; tests that ask say so
    qtbot.addWidget(win)
    win.resize(1200, 800)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.close()
    assert not win.session.host.thread.isRunning()
    assert not win.batch_host.thread.isRunning()
    torch.set_num_threads(threads)
