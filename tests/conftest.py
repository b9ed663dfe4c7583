"""Shared fixtures: a tiny saved model and a small JPEG-compressed test picture.

Kept minimal on purpose; module-specific fixtures live in their test files.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rbqe.model import ModelConfig, RBQENet
from rbqe.weights import save_weights


def tiny_net(channels: int = 1, seed: int = 0) -> RBQENet:
    """A random width-8 RBQE network (about 1/16 of the paper's MACs), in eval mode."""
    torch.manual_seed(seed)
    return RBQENet(ModelConfig(channels, channels, 8)).eval()


def photo(height: int, width: int, *, seed: int = 0) -> np.ndarray:
    """A smooth, textured RGB uint8 picture: gradients, a few discs and mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([xx / max(width, 1), yy / max(height, 1),
                    0.5 + 0.25 * np.sin(xx / 7.0) * np.cos(yy / 5.0)], axis=-1)
    for _ in range(6):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(3, 20)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0.1, 0.9, 3)
    img += rng.normal(0, 0.02, img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def jpeg_compress(rgb: np.ndarray, quality: int = 20) -> np.ndarray:
    """``rgb`` (uint8) through a JPEG round trip: real blocking artefacts."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert(Image.fromarray(rgb).mode))


@pytest.fixture
def tiny_weights(tmp_path: Path) -> Path:
    """``RBQENet(ModelConfig(1, 1, 8))`` saved as safetensors in ``tmp_path``."""
    return save_weights(tiny_net(1), tmp_path / "tiny.safetensors")


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
    monkeypatch.setattr("rbqe.model.FAST_MIN_PIXELS", 0)


@pytest.fixture
def make_net():
    """Factory ``make_net(channels=1, seed=0)`` for tiny random networks."""
    return tiny_net


@pytest.fixture
def make_jpeg():
    """Factory ``make_jpeg(height, width, seed=0, quality=20)``: uint8 RGB after JPEG."""
    def make(height: int, width: int, seed: int = 0, quality: int = 20) -> np.ndarray:
        return jpeg_compress(photo(height, width, seed=seed), quality)
    return make


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory):
    """Compiled models (the OpenVINO backend) go to a temp folder, not the user's cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RBQE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield
