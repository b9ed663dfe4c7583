"""Weights files: safetensors tensors plus a small JSON metadata block.

Metadata keys (all strings in the safetensors header):
``format`` ("rbqe"), ``architecture`` ("rbqe-unetpp"), ``in_channels``,
``out_channels``, ``width``, ``threshold`` (the IQA exit threshold), ``min_exit`` (the
earliest exit auto may stop at; absent means 1, the paper's rule) and optional free-form
``card`` JSON. Nothing here unpickles: safetensors only.
"""

from __future__ import annotations

import json
import os
import tempfile
from importlib import resources
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from rbqe.errors import WeightsError
from rbqe.model import NUM_EXITS, ModelConfig, RBQENet

ARCHITECTURE = "rbqe-unetpp"
DEFAULT_THRESHOLD = 0.855  # the paper's JPEG threshold, used until calibration sets one


def shipped_weights_dir() -> Path:
    """The folder of the weights shipped with rbqe.

    An installed package carries them in ``rbqe/_shipped/`` (setup.py copies the
    top-level ``weights/`` there when it builds a wheel; the PyInstaller spec bundles them
    at the same place). A source checkout or an editable install has no copy: there they
    are the checkout's own ``weights/``.
    """
    packaged = resources.files("rbqe") / "_shipped"
    if isinstance(packaged, Path) and packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "weights"


PACKAGE_WEIGHTS = shipped_weights_dir() / "rbqe_jpeg.safetensors"


@dataclass
class WeightsInfo:
    path: Path | None
    config: ModelConfig
    threshold: float = DEFAULT_THRESHOLD
    extra: dict[str, Any] = field(default_factory=dict)
    min_exit: int = 1  # auto stops at the first exit >= min_exit whose score >= threshold


def check_min_exit(value: int | str) -> int:
    value = int(value)
    if not 1 <= value <= NUM_EXITS:
        raise ValueError(f"min_exit must be 1..{NUM_EXITS}, got {value}")
    return value


# The models we ship, by the name the app's settings store (weights/MODEL_CARD.md).
SHIPPED_MODELS = {
    "rgb": PACKAGE_WEIGHTS,
    "y": PACKAGE_WEIGHTS.with_name("rbqe_jpeg_y.safetensors"),
}


def default_weights_path() -> Path:
    """``$RBQE_WEIGHTS`` if set, else the weights shipped beside the package."""
    env = os.environ.get("RBQE_WEIGHTS")
    return Path(env) if env else PACKAGE_WEIGHTS


def missing_weights_message(path: str | Path) -> str:
    """The one line a user sees when the weights file is absent, with what fixes it."""
    return (f"no weights file at {path}: pass --weights FILE or set RBQE_WEIGHTS=FILE "
            "(a model trained with 'rbqe train'), or reinstall rbqe-studio for the shipped one")


def save_weights(net: RBQENet, path: str | Path, *, threshold: float = DEFAULT_THRESHOLD,
                 min_exit: int = 1, extra: dict[str, Any] | None = None) -> Path:
    """Write ``net`` atomically as safetensors with its config and exit rule."""
    path = Path(path)
    cfg = net.config
    meta = {
        "format": "rbqe",
        "architecture": ARCHITECTURE,
        "in_channels": str(cfg.in_channels),
        "out_channels": str(cfg.out_channels),
        "width": str(cfg.width),
        "threshold": repr(float(threshold)),
        "min_exit": str(check_min_exit(min_exit)),
    }
    for key, value in (extra or {}).items():
        meta[key] = value if isinstance(value, str) else json.dumps(value)
    tensors = {k: v.detach().float().contiguous().cpu() for k, v in net.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".part")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; weights are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_info(path: str | Path) -> WeightsInfo:
    """Read only the metadata of a weights file."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from None
    if meta.get("architecture") != ARCHITECTURE:
        raise WeightsError(
            f"{path}: architecture {meta.get('architecture')!r} is not {ARCHITECTURE!r}"
        )
    try:
        cfg = ModelConfig(int(meta["in_channels"]), int(meta["out_channels"]), int(meta["width"]))
        threshold = float(meta.get("threshold", DEFAULT_THRESHOLD))
        min_exit = check_min_exit(meta.get("min_exit", "1"))
    except (KeyError, ValueError) as exc:
        raise WeightsError(f"{path}: bad metadata ({exc})") from None
    known = {"format", "architecture", "in_channels", "out_channels", "width", "threshold",
             "min_exit"}
    extra = {k: v for k, v in meta.items() if k not in known}
    return WeightsInfo(path, cfg, threshold, extra, min_exit)


def load_weights(path: str | Path) -> tuple[RBQENet, WeightsInfo]:
    """Build the network described by the file and load its tensors, checking keys and shapes."""
    info = read_info(path)
    net = RBQENet(info.config)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise WeightsError(f"{path}: cannot read tensors ({exc})") from None
    expected = net.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise WeightsError(
            f"{path}: keys do not match the network (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})"
        )
    for key, value in tensors.items():
        if value.shape != expected[key].shape:
            raise WeightsError(
                f"{path}: {key} has shape {tuple(value.shape)}, expected {tuple(expected[key].shape)}"
            )
    net.load_state_dict(tensors)
    net.eval()
    return net, info


def set_threshold(path: str | Path, threshold: float, extra: dict[str, Any] | None = None,
                  *, min_exit: int | None = None) -> None:
    """Rewrite the file's exit rule (and extra metadata) in place, atomically.

    ``min_exit`` None keeps the file's own.
    """
    net, info = load_weights(path)
    merged: dict[str, Any] = dict(info.extra)
    merged.update(extra or {})
    save_weights(net, path, threshold=threshold,
                 min_exit=info.min_exit if min_exit is None else min_exit, extra=merged)

