"""Inference backends: who runs the network's progressive stages.

* ``torch``: the model's own runs (:mod:`rbqe.backends.torch`); any device.
* ``openvino``: the five stage graphs compiled by OpenVINO (:mod:`rbqe.backends.openvino`);
  CPU only, needs the ``openvino`` extra (``pip install 'rbqe-studio[openvino]'``).
* ``auto``: the fastest of them on this machine, measured once (:func:`make_backend`).

A backend has ``name``, ``precision`` and ``start(x, stats=None, *, fast=False)``, which
returns a run with ``next_exit()``, ``advance()`` and ``exits_done`` like
:class:`rbqe.model.ProgressiveRun`; images come back as torch tensors on the engine's device.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Protocol

import torch

from rbqe.backends.choose import Candidate
from rbqe.backends.torch import TorchBackend
from rbqe.errors import RBQEError
from rbqe.fastpath import native_bf16
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
              fast: bool = False, full_precision: bool = False) -> Run: ...


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def make_backend(name: str, net: RBQENet, device: torch.device, *,
                 precision: str = "auto", in_memory: bool = False) -> Backend:
    """The backend ``name`` at ``precision`` for ``net`` on ``device``.

    ``auto`` on the CPU, for a network from a weights file: the fastest of the candidates
    (torch f32, torch bf16 where the CPU has native bf16, OpenVINO when installed, each at
    ``precision`` when one is asked), measured once per machine
    (:mod:`rbqe.backends.choose`). A network built in memory (training, calibration, tests)
    may still change and gets torch f32 unmeasured. CUDA/MPS: torch (fp16 on CUDA unless
    ``precision`` is ``f32``). ``torch`` with precision ``auto`` on the CPU: bf16 where the
    CPU has native bf16 (2x f32 on an AVX512-BF16 EPYC), else f32.

    Raises:
        RBQEError: ``openvino`` asked for but not installed, not on the CPU, or failing to
            export; a precision the backend or CPU cannot run.
    """
    if name not in BACKENDS:
        raise RBQEError(f"backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    if precision not in PRECISIONS:
        raise RBQEError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if device.type != "cpu":
        if name == "openvino":
            raise RBQEError(f"the OpenVINO backend runs on the CPU, not {device}; "
                            "use --backend torch or --device cpu")
        if precision == "bf16":
            raise RBQEError(f"--precision bf16 is for the CPU; on {device} use auto or f32")
        return TorchBackend(net, "fp16" if device.type == "cuda" and precision == "auto"
                            else "f32")
    if name == "openvino":
        return _openvino(net, precision)
    if precision == "bf16" and not native_bf16():
        if name == "torch" or not openvino_installed():
            raise RBQEError("--precision bf16: this CPU has no native bf16 (AVX512-BF16 or "
                            "AMX); use --precision f32 or auto")
    if name == "torch" or in_memory:
        torch_precision = precision if precision != "auto" else (
            "bf16" if native_bf16() and not in_memory else "f32")
        return TorchBackend(net, torch_precision)
    candidates = _cpu_candidates(precision)
    if len(candidates) == 1:
        return _build(net, candidates[0])
    from rbqe.backends.choose import fastest

    backend, _ = fastest(net, candidates, lambda c: _build(net, c))
    return backend


def recorded_auto_choice(net: RBQENet, precision: str = "auto") -> dict | None:
    """What ``auto`` measured on this CPU for ``net``'s shape (None: not measured yet, or
    nothing to choose), without measuring."""
    from rbqe.backends.choose import machine_key, stored_choice

    candidates = _cpu_candidates(precision)
    return stored_choice(machine_key(net, candidates)) if len(candidates) > 1 else None


def _cpu_candidates(precision: str) -> list[Candidate]:
    """What ``auto`` may pick on this CPU at ``precision``."""
    bf16 = native_bf16()
    out = [Candidate("torch", p) for p in ("f32", "bf16")
           if precision in ("auto", p) and (p == "f32" or bf16)]
    if openvino_installed():
        out.append(Candidate("openvino", precision))  # its own "auto": bf16 where native
    return out


def _build(net: RBQENet, cand: Candidate) -> Backend:
    if cand.backend == "openvino":
        return _openvino(net, cand.precision)
    return TorchBackend(net, cand.precision)


def _openvino(net: RBQENet, precision: str) -> Backend:
    if not openvino_installed():
        raise RBQEError("the OpenVINO backend needs the openvino extra: "
                        "pip install 'rbqe-studio[openvino]'")
    from rbqe.backends.openvino import OpenVINOBackend

    try:
        backend = OpenVINOBackend(net, precision=precision)
    except RBQEError:
        raise
    except Exception as exc:  # noqa: BLE001 - export/compile failures, in words
        raise RBQEError(f"the OpenVINO backend failed to build its stages: {exc}") from exc
    log.info("backend: OpenVINO %s, cache %s", backend.precision, backend.folder)
    return backend
