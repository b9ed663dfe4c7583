"""Where compiled models live: the platform cache folder, one sub-folder per weights hash."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import torch
from torch import nn

APP_NAME = "rbqe-studio"
CACHE_ENV = "RBQE_CACHE_DIR"  # overrides the platform folder (tests, read-only homes)


def cache_root() -> Path:
    """The platform's per-user cache folder for this app: ``$RBQE_CACHE_DIR`` when set,
    else ``%LOCALAPPDATA%`` on Windows, ``~/Library/Caches`` on macOS,
    ``$XDG_CACHE_HOME`` or ``~/.cache`` elsewhere."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return base / APP_NAME / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / APP_NAME
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / APP_NAME


def weights_hash(net: nn.Module) -> str:
    """SHA-256 (hex, 16 digits) of the network's tensors: names, shapes, dtypes and bytes.

    Hashed from the live tensors rather than a file, so a network built in memory (tests,
    calibration) gets a key too, and a changed file never finds a stale cache entry.
    """
    h = hashlib.sha256()
    for name, t in sorted(net.state_dict().items()):
        t = t.detach().to("cpu", torch.float32).contiguous()
        h.update(f"{name}:{tuple(t.shape)}:".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]
