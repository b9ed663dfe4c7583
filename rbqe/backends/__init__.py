"""Inference backends: who runs the network's progressive stages.

* ``torch``: the model's own runs (:mod:`rbqe.backends.torch`); any device.
* ``openvino``: the five stage graphs compiled by OpenVINO (:mod:`rbqe.backends.openvino`);
  CPU only, needs the ``openvino`` extra (``pip install 'rbqe-studio[openvino]'``).
* ``auto``: see :func:`make_backend`.

A backend has ``name``, ``precision`` and ``start(x, stats=None, *, fast=False)``, which
returns a run with ``next_exit()``, ``advance()`` and ``exits_done`` like
:class:`rbqe.model.ProgressiveRun`; images come back as torch tensors on the engine's device.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Protocol

import torch

from rbqe.backends.torch import TorchBackend
from rbqe.errors import RBQEError
from rbqe.model import EcaStats, RBQENet

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "openvino")
PRECISIONS = ("auto", "f32", "bf16")


class Run(Protocol):
    exits_done: int

    def next_exit(self) -> torch.Tensor: ...

    def advance(self) -> None: ...


class Backend(Protocol):
    name: str
    precision: str

    def start(self, x: torch.Tensor, stats: EcaStats | None = None, *,
              fast: bool = False) -> Run: ...


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def make_backend(name: str, net: RBQENet, device: torch.device, *,
                 precision: str = "auto", in_memory: bool = False) -> Backend:
    """The backend ``name`` for ``net`` on ``device``.

    ``auto``: OpenVINO on the CPU when it is installed, the network came from a weights
    file (``in_memory`` False: a network built in memory, as in training, calibration and
    tests, may still change, and exporting it costs about a minute) and its stages export
    and compile; otherwise, and on CUDA/MPS, torch. An OpenVINO failure under ``auto`` is
    logged and torch takes over.

    Raises:
        RBQEError: ``openvino`` asked for but not installed, not on the CPU, or failing to
            export; a precision the backend or CPU cannot run.
    """
    if name not in BACKENDS:
        raise RBQEError(f"backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    if precision not in PRECISIONS:
        raise RBQEError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if name == "auto":
        if device.type == "cpu" and not in_memory and openvino_installed():
            try:
                return _openvino(net, precision)
            except RBQEError:
                raise
            except Exception as exc:  # noqa: BLE001 - any export/compile failure: use torch
                log.warning("OpenVINO backend unavailable, using torch: %s", exc)
        name = "torch"
    if name == "openvino":
        if device.type != "cpu":
            raise RBQEError(f"the OpenVINO backend runs on the CPU, not {device}; "
                            "use --backend torch or --device cpu")
        if not openvino_installed():
            raise RBQEError("the OpenVINO backend needs the openvino extra: "
                            "pip install 'rbqe-studio[openvino]'")
        try:
            return _openvino(net, precision)
        except RBQEError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise RBQEError(f"the OpenVINO backend failed to build its stages: {exc}") from exc
    if precision == "bf16":
        raise RBQEError("--precision bf16 needs the OpenVINO backend (torch's bf16 measured "
                        "slower than f32 on CPUs without native bf16)")
    return TorchBackend(net, "fp16" if device.type == "cuda" and precision == "auto" else "f32")


def _openvino(net: RBQENet, precision: str) -> Backend:
    from rbqe.backends.openvino import OpenVINOBackend

    backend = OpenVINOBackend(net, precision=precision)
    log.info("backend: OpenVINO %s, cache %s", backend.precision, backend.folder)
    return backend
