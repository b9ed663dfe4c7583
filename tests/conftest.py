"""Shared fixtures: a tiny saved model and a small JPEG-compressed test picture.

Kept minimal on purpose: what they build is :mod:`tests.helpers`'s; module-specific
fixtures live in their test files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import jpeg_compress, jpeg_pixels, photo, save_tiny_weights, tiny_net


@pytest.fixture
def tiny_weights(tmp_path: Path) -> Path:
    """The tiny luma model (:func:`tests.helpers.tiny_net`) saved in ``tmp_path``."""
    return save_tiny_weights(tmp_path / "tiny.safetensors")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """The tiny luma model saved once per test module."""
    return save_tiny_weights(tmp_path_factory.mktemp("w") / "tiny.safetensors")


@pytest.fixture
def jpeg_image() -> np.ndarray:
    """A 96x80 (HxW) RGB picture after JPEG quality 20, float32 ``(H, W, 3)`` in [0, 1]."""
    return jpeg_compress(photo(96, 80)).astype(np.float32) / 255


@pytest.fixture
def one_thread():
    """Torch on one thread for the test: on a busy box, OpenMP threads waiting for a core
    cost more than they bring to these tiny networks."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fast_everywhere(monkeypatch):
    """The CPU fast path also for images below ``FAST_MIN_PIXELS`` (small test images)."""
    monkeypatch.setattr("rbqe.fastpath.FAST_MIN_PIXELS", 0)


@pytest.fixture
def make_net():
    """Factory ``make_net(channels=1, seed=0)`` for tiny random networks."""
    return tiny_net


@pytest.fixture
def make_jpeg():
    """Factory ``make_jpeg(height, width, seed=0, quality=20)``: the uint8 RGB *pixels*
    after JPEG (:func:`tests.helpers.jpeg_pixels`; a JPEG *file*: ``write_jpeg``)."""
    return jpeg_pixels


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory):
    """Compiled models (the OpenVINO backend) go to a temp folder, not the user's cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RBQE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield
