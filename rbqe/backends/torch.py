"""The torch backend: the model's own progressive runs (the fused oneDNN fast path on the
CPU, in float32 or bf16; the module path under fp16 autocast on CUDA; see
:mod:`rbqe.fastpath`)."""

from __future__ import annotations

import torch

from rbqe.model import EcaStats, ProgressiveRun, RBQENet


class TorchBackend:
    """Runs ``net`` where it lives, following its live weights.

    ``precision``: ``f32``; ``bf16`` (CPU fast path with native bf16; images the fast path
    does not take run in float32); ``fp16`` on CUDA (autocast, set by the engine).
    """

    name = "torch"

    def __init__(self, net: RBQENet, precision: str = "f32") -> None:
        self.net = net
        self.precision = precision
        self._dtype = torch.bfloat16 if precision == "bf16" else torch.float32

    def start(self, x: torch.Tensor, stats: EcaStats | None = None, *,
              fast: bool = False, full_precision: bool = False) -> ProgressiveRun:
        """A progressive run on ``x``; ``fast`` asks for the CPU fast path where it applies,
        ``full_precision`` for float32 whatever the precision (a 16-bit image's)."""
        dtype = torch.float32 if full_precision else self._dtype
        return self.net.start(x, stats, fast=fast, dtype=dtype)
