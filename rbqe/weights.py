"""Weights files: safetensors tensors plus a small JSON metadata block.

Metadata keys (all strings in the safetensors header):
``format`` ("rbqe"), ``architecture`` ("rbqe-unetpp"), ``in_channels``,
``out_channels``, ``width``, ``exit_policy`` (JSON: the exit policies fitted for these
weights and the default one, see :class:`rbqe.exit_policy.PolicySet`) and optional
free-form ``card`` JSON. ``threshold`` and ``min_exit`` are still written (the assessor
policy's) for older readers; a file with only them (or neither) loads as one assessor
policy. Nothing here unpickles: safetensors only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import IO, Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from rbqe.errors import WeightsError
from rbqe.exit_policy import PAPER_THRESHOLD, ExitPolicy, PolicySet, check_min_exit
from rbqe.io.atomic import atomic_write, remove_stale_temps
from rbqe.model import ModelConfig, RBQENet

ARCHITECTURE = "rbqe-unetpp"
DEFAULT_THRESHOLD = PAPER_THRESHOLD  # used until calibration sets one


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
    policies: PolicySet = field(default_factory=lambda: PolicySet.from_meta({}))
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def policy(self) -> ExitPolicy:
        """The default exit policy."""
        return self.policies.get()

    @property
    def assessor(self) -> ExitPolicy:
        """The assessor policy (the paper's threshold when the file fitted none)."""
        return self.policies.policies.get("assessor") or ExitPolicy.assessor()

    @property
    def threshold(self) -> float:
        return float(self.assessor.params["threshold"])

    @threshold.setter
    def threshold(self, value: float) -> None:
        """Replaces the assessor policy's threshold (its earliest exit stays)."""
        base = self.assessor
        self.policies.policies["assessor"] = ExitPolicy.assessor(
            value, base.min_exit, {"source": "threshold set by the caller"})

    @property
    def min_exit(self) -> int:
        return self.assessor.min_exit

    def policy_for(self, policy: ExitPolicy | str | None = None,
                   threshold: float | None = None, min_exit: int | None = None) -> ExitPolicy:
        """The policy a user asked for: an explicit one, a stored one by name, or the
        assessor rule with a threshold and/or earliest exit of their own; default the
        file's default policy."""
        if threshold is not None or min_exit is not None:
            base = self.assessor
            return ExitPolicy.assessor(
                self.threshold if threshold is None else threshold,
                base.min_exit if min_exit is None else min_exit,
                {"source": "given by the user", "base": base.provenance})
        if isinstance(policy, ExitPolicy):
            return policy
        if policy == "assessor":
            return self.assessor
        try:
            return self.policies.get(policy)
        except KeyError as exc:
            raise WeightsError(f"{self.path or 'these weights'}: {exc.args[0]}") from None


# The models we ship, by name (weights/MODEL_CARD.md): since 2026-12-03 only the RGB one.
# A 1-channel (Y) weights file, such as an earlier release's rbqe_jpeg_y.safetensors,
# still loads from --weights, RBQE_WEIGHTS or the app's weights file.
SHIPPED_MODELS = {"rgb": PACKAGE_WEIGHTS}


def default_weights_path() -> Path:
    """``$RBQE_WEIGHTS`` if set, else the weights shipped beside the package."""
    env = os.environ.get("RBQE_WEIGHTS")
    return Path(env) if env else PACKAGE_WEIGHTS


def missing_weights_message(path: str | Path) -> str:
    """The one line a user sees when the weights file is absent, with what fixes it (and,
    when the name came from ``$RBQE_WEIGHTS``, that it did: it is what to correct)."""
    env = os.environ.get("RBQE_WEIGHTS")
    if env and Path(env) == Path(path):
        return (f"no weights file at {path}, which RBQE_WEIGHTS names: correct or unset "
                "RBQE_WEIGHTS (unset, the shipped model is used), or pass --weights FILE")
    return (f"no weights file at {path}: pass --weights FILE or set RBQE_WEIGHTS=FILE "
            "(a model trained with 'rbqe train'), or reinstall rbqe-studio for the shipped one")


def save_weights(net: RBQENet, path: str | Path, *, threshold: float = DEFAULT_THRESHOLD,
                 min_exit: int = 1, extra: dict[str, Any] | None = None,
                 policies: PolicySet | None = None) -> Path:
    """Write ``net`` atomically as safetensors with its config and exit policies.

    Without ``policies`` the file gets one assessor policy from ``threshold`` and
    ``min_exit``."""
    path = Path(path)
    cfg = net.config
    if policies is None:
        policies = PolicySet({"assessor": ExitPolicy.assessor(
            threshold, check_min_exit(min_exit), {"source": "save_weights"})}, "assessor")
    assessor = policies.policies.get("assessor") or ExitPolicy.assessor()
    meta = {
        "format": "rbqe",
        "architecture": ARCHITECTURE,
        "in_channels": str(cfg.in_channels),
        "out_channels": str(cfg.out_channels),
        "width": str(cfg.width),
        "threshold": repr(float(assessor.params["threshold"])),
        "min_exit": str(assessor.min_exit),
        "exit_policy": policies.to_meta(),
    }
    if cfg.refine:  # absent means 0: files from before the option still describe their net
        meta["refine"] = str(cfg.refine)
    for key, value in (extra or {}).items():
        meta[key] = value if isinstance(value, str) else json.dumps(value)
    tensors = {k: v.detach().float().contiguous().cpu() for k, v in net.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent)  # what a killed save here left, as a batch does

    def write(fh: IO[bytes]) -> None:  # serialised inside: a kill leaves rbqe's temp name
        fh.write(save(tensors, metadata=meta))

    atomic_write(path, write, mode=0o644)  # weights are meant to be shared
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
        cfg = ModelConfig(int(meta["in_channels"]), int(meta["out_channels"]), int(meta["width"]),
                          int(meta.get("refine", "0")))
        policies = PolicySet.from_meta(meta)
    except (KeyError, ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
        raise WeightsError(f"{path}: bad metadata ({exc})") from None
    known = {"format", "architecture", "in_channels", "out_channels", "width", "refine",
             "threshold", "min_exit", "exit_policy"}
    extra = {k: v for k, v in meta.items() if k not in known}
    return WeightsInfo(path, cfg, policies, extra)


def file_identity(info: WeightsInfo) -> dict[str, Any]:
    """Which weights these are, to check against the model card: the file's SHA-256 and
    size, and the training step and patches its metadata records (where it does)."""
    import hashlib

    assert info.path is not None
    path = Path(info.path)
    h = hashlib.sha256()  # hashlib.file_digest is Python 3.11+
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    out: dict[str, Any] = {"sha256": h.hexdigest(), "bytes": path.stat().st_size}
    for key in ("step", "patches"):
        if info.extra.get(key, "").isdigit():
            out[f"training_{key}"] = int(info.extra[key])
    return out


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
    """Rewrite the file's assessor policy (and extra metadata) in place, atomically; its
    other policies and the default stay.

    ``min_exit`` None keeps the file's own.
    """
    policy = ExitPolicy.assessor(threshold,
                                 read_info(path).min_exit if min_exit is None else min_exit,
                                 {"source": "rbqe calibrate (assessor)",
                                  **({"calibration": extra["calibration"]}
                                     if extra and "calibration" in extra else {})})
    set_policy(path, "assessor", policy, extra=extra)


def set_policy(path: str | Path, name: str, policy: ExitPolicy, *, default: bool = False,
               extra: dict[str, Any] | None = None) -> None:
    """Store ``policy`` under ``name`` in the weights file (atomically), as the default
    one when ``default``; the file's other policies stay."""
    net, info = load_weights(path)
    merged: dict[str, Any] = dict(info.extra)
    merged.update(extra or {})
    policies = dict(info.policies.policies)
    policies[name] = policy
    chosen = name if default else info.policies.default
    save_weights(net, path, extra=merged, policies=PolicySet(policies, chosen))

