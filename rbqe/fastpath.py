"""The CPU inference path: :class:`FastProgressiveRun`, a progressive run made of fused,
row-striped oneDNN calls, in float32 or in bfloat16 where the CPU has native bf16.

:meth:`rbqe.model.RBQENet.start` picks it where :func:`fast_path_ok` says it applies.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast, overload

import torch
from torch import nn

from rbqe.bands import row_bands
from rbqe.heap import reuse_freed_memory
from rbqe.model import (
    NUM_EXITS,
    EcaStats,
    ProgressiveRun,
    RBQENet,
    RefineBlock,
    SeparableConv,
    UpBlock,
    channel_mean,
    channel_sums,
)

# Measured on the 2-core dev box, one thread, CPU time, 512x512, random width-32 weights
# (benchmarks/bench_engine.py has the whole-network figures). All five exits: plain NCHW
# module path 5.5 s, channels_last 3.3 s, this path 1.0 s. In order of gain:
# * Row stripes. The separable convs are memory-bound, and a full-resolution 32-channel
#   map (32 MB at 512x512) is more than the caches. A decoder node is computed in
#   horizontal stripes (sized to the caches: stripe_pixels; rows of a channels_last tensor
#   are contiguous, so a stripe is a view) with the 2 rows of context its two 3x3 depthwise convs need; the
#   intermediates stay in cache and their memory is reused instead of being freshly
#   allocated (page faults: 2.2 s -> 1.2 s for the whole net at 512x512 with the next
#   items). (The upsampled input of a node is made whole: see _up_node.)
# * No concatenation: the first separable conv of a decoder node is linear and its
#   depthwise part per channel, so over ``cat(skips, up)`` it is the sum over the
#   32-channel parts of ``pointwise_p(depthwise_p(part_p))``, accumulated by oneDNN's fused
#   add: no (j+1)x32-channel copy. One 6-part 512x256 node in 64-row stripes: 83 ms,
#   against 111 ms concatenating the depthwise outputs and 226 ms concatenating the inputs.
# * ECA gate folded into the depthwise weights (batch 1): ``dw(x * g) = (w * g) * x + b``
#   per channel, which removes the gate's multiply pass over the widest tensor (17 % of a
#   training step). Node means are kept, so a node pools only its new upsampled part.
# * oneDNN convolutions with ReLU / the residual add fused (``mkldnn._convolution_pointwise``,
#   as torch.compile's CPU backend emits them): no separate ReLU pass, and 1x1 convs go to
#   oneDNN too (PyTorch sends them to im2col + GEMM when single-threaded).
# * bfloat16 (``dtype=torch.bfloat16``) on a CPU with native bf16 (AVX512-BF16 or AMX):
#   the node maps, which are what the memory-bound separable convs stream, are half the
#   bytes, and oneDNN has native bf16 kernels. All five exits at 512x512, 2 threads, an
#   AMD EPYC with AVX512-BF16: 462 ms against 972 ms in float32. What decides the output's
#   precision stays float32: the ECA means and gates, and the residual added to the
#   float32 input (a bf16 image would be quantised to 1/512 near white). Without native
#   bf16 oneDNN emulates it: 6.6x slower on an AVX2 CPU, so it is never chosen there.
# Measured and not used: bf16 autocast (on the AVX2 CPU oneDNN refused bf16 convs and the
# fallback ran 6.6x slower, PSNR 59-68 dB vs fp32), torch.jit.freeze +
# optimize_for_inference (1.12x), torch.compile (1.8x, 66 s compile per input shape),
# dense 3x3 in place of depthwise+pointwise (9x the MACs, slower), NCHW (depthwise 2.8x
# slower). Results equal the module path to float32 rounding (~2e-7 on unit-range data).
MIN_STRIPE_ROWS = 16  # a stripe recomputes 2 rows of context on each side


def l2_cache_bytes(cpu: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> int | None:
    """One core's level-2 cache in bytes, from Linux's sysfs; None where it is not told."""
    for index in sorted(cpu.glob("index*")):
        try:
            if (index / "level").read_text().strip() != "2" or \
                    (index / "type").read_text().strip() == "Instruction":
                continue
            size = (index / "size").read_text().strip().upper()
        except OSError:
            continue
        unit = {"K": 1 << 10, "M": 1 << 20}.get(size[-1:], 1)
        digits = size.rstrip("KM")
        if digits.isdigit():
            return int(digits) * unit
    return None


def stripe_pixels(l2: int | None, image_pixels: int, bytes_per_pixel: int) -> int:
    """Pixels per stripe of the node maps of a run on ``image_pixels`` (its input, a whole
    image or a tile), whose full-resolution maps hold ``bytes_per_pixel`` (channels x
    element size), on a core with ``l2`` bytes of level-2 cache (None: not told).

    32k (~64 rows at 512 wide) was measured best with the 512 KB L2 of the AMD EPYC VMs
    and stays theirs. An Intel Xeon with 2 MB of L2 (and 480 MB of L3; AMX, 2026-12-06) ran
    exit 3 of a 1024-pixel tile in bf16 20 % faster with 128k than with 32k (555 against
    697 ms; f32: 1,144 against 1,165 ms), and 12 MP photos 16 % faster (25.7-25.9 s for
    three against 30.0-30.8 s): the stripe grows with the cache, up to 256k. There an
    input whose full-resolution map is at most 16 MB (512x512 in bf16) is worked without
    stripes, so without stripe copies: exit 5 at 512x512 in bf16, best of 3 interleaved,
    32k 186 ms, 128k 155, 256k 143, whole 139 (f32, 32 MB maps: 128k 341, whole 333, no
    gain), for a peak RSS of 733 against 509 MB, below a 1024-pixel tile's ~1 GB. A 24 MP
    photo's four 512-pixel sample tiles are worked so too: through exit 5 in 20.9-21.1 s
    against 21.2-21.6, peaking at 1.96-2.21 GB against 1.89-1.90. Whole maps of up to
    32 MB inside 1024-pixel tiles too peaked at 2.3 GB (freed maps of mixed sizes kept by
    the heap) for 20.3 s, and 64 MB f32 stripes (at the heap's mmap threshold,
    :mod:`rbqe.heap`) ran 28 % slower than 48 MB ones.
    """
    if (l2 or 0) >= 2 << 20 and image_pixels * bytes_per_pixel <= 16 << 20:
        return image_pixels
    return max(32 * 1024, min(256 * 1024, (l2 or 0) // 16))


L2_BYTES = l2_cache_bytes()
# Below this many pixels the fast path's extra op calls (one per 32-channel part) cost
# more than they save: at 64x64 it took 21 ms against 13 ms (width 8, one thread); from
# 128x128 on it wins (30 vs 37 ms; width 32: 67 vs 111 ms).
FAST_MIN_PIXELS = 128 * 128
_MKL_OPS: tuple | None = None


def _mkl_ops() -> tuple:  # looked up lazily: builds without oneDNN lack the ops
    global _MKL_OPS
    if _MKL_OPS is None:
        _MKL_OPS = (torch.ops.mkldnn._convolution_pointwise.default,
                    torch.ops.mkldnn._convolution_pointwise.binary,
                    torch.ops.mkldnn._convolution_transpose_pointwise.default)
    return _MKL_OPS


def native_bf16() -> bool:
    """Whether this CPU runs bf16 convolutions natively (AVX512-BF16 or AMX) in oneDNN."""
    cpu = getattr(torch, "cpu", None)  # the probes are private torch API: absent -> False
    probes = [getattr(cpu, n, None) for n in ("_is_avx512_bf16_supported",
                                              "_is_amx_tile_supported")]
    try:
        return (torch.backends.mkldnn.is_available()
                and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
                and any(p is not None and p() for p in probes))
    except (AttributeError, RuntimeError):
        return False


def fast_path_ok(x: torch.Tensor) -> bool:
    """Whether :class:`FastProgressiveRun` applies and pays: CPU float32, batch 1, no
    autograd, at least :data:`FAST_MIN_PIXELS` pixels."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4
            and x.shape[0] == 1 and x.shape[-2] * x.shape[-1] >= FAST_MIN_PIXELS
            and not torch.is_grad_enabled()
            and torch.backends.mkldnn.is_available()
            and not torch.is_autocast_enabled("cpu"))


_OWN = object()  # "the module's own weight/bias" (None is a valid bias: no bias)


def _conv(x: torch.Tensor, conv: nn.Conv2d, relu: bool, weight: object = _OWN,
          bias: object = _OWN, add: torch.Tensor | None = None,
          rows: tuple[bool, bool] | None = None) -> torch.Tensor:
    """``conv(x)`` (+ ``add``) (then ReLU) in one oneDNN call; ``x`` channels_last.

    ``rows``, for a row stripe: whether its first / last row is the image's top / bottom.
    Only there is the conv zero-padded vertically; elsewhere the stripe's extra rows are
    the context and the output is one row shorter on that side.
    """
    pointwise, binary, _ = _mkl_ops()
    w = conv.weight if weight is _OWN else weight
    b = conv.bias if bias is _OWN else bias
    pad = list(conv.padding)
    top = bottom = True
    if rows is not None and pad[0]:
        top, bottom = rows
        pad[0] = 1 if top or bottom else 0  # padding is symmetric: crop the extra row below
    stride, dil = list(conv.stride), list(conv.dilation)
    groups = x.shape[1] if conv.groups > 1 else 1  # depthwise parts: groups == channels
    if add is None:
        y = pointwise(x, w, b, pad, stride, dil, groups, "relu" if relu else "none", [], None)
    else:
        y = binary(x, add, w, b, pad, stride, dil, groups, "add", None,
                   "relu" if relu else None, [], None)
    if top != bottom:  # one-sided: drop the row computed against the zero padding
        y = y[:, :, 1:] if bottom else y[:, :, :-1]
    return y


def _rows_out(a0: int, a1: int, h: int) -> tuple[int, int]:
    """Image rows that a 3x3 ``_conv(..., rows=(a0 == 0, a1 == h))`` of rows ``a0:a1`` gives."""
    return (a0 if a0 == 0 else a0 + 1, a1 if a1 == h else a1 - 1)


def _crop_rows(t: torch.Tensor, have: tuple[int, int], r0: int, r1: int) -> torch.Tensor:
    """Rows ``r0:r1`` (image coordinates) of ``t``, which holds rows ``have[0]:have[1]``."""
    if have == (r0, r1):
        return t
    return t[:, :, r0 - have[0] : r1 - have[0]]


class FastProgressiveRun(ProgressiveRun):
    """Inference-only :class:`ProgressiveRun` for a CPU float32 batch of 1 (see the notes
    above); the nodes are computed in ``dtype`` (float32 or bfloat16), the exits come back
    in float32.

    Reads the module's parameters when it starts, so each run follows the live weights
    (in bf16, cast once per run: per call, the ~1,400 small casts of a 512x512 walk cost
    about 5 % of it). The ECA statistics (``stats``) are exchanged exactly as in the plain
    path.
    """

    def __init__(self, net: RBQENet, x: torch.Tensor, stats: EcaStats | None, *,
                 dtype: torch.dtype = torch.float32) -> None:
        if dtype not in (torch.float32, torch.bfloat16):
            raise ValueError(f"the CPU fast path runs float32 or bfloat16, not {dtype}")
        n, c, h, w = x.shape
        if x.stride() != (h * w * c, 1, w * c, c):
            # Exactly channels_last, or oneDNN quietly answers in NCHW (1.9x slower): for
            # C == 1 or a batch stride left over from x[None], .contiguous() is not enough.
            x = torch.empty(x.shape, dtype=x.dtype, memory_format=torch.channels_last).copy_(x)
        super().__init__(net, x, stats)
        reuse_freed_memory()
        self.dtype = dtype
        self.means: dict[tuple[int, int], torch.Tensor] = {}
        self._casts: dict[int, torch.Tensor] = {}

    @overload
    def _p(self, t: torch.Tensor) -> torch.Tensor: ...
    @overload
    def _p(self, t: None) -> None: ...

    def _p(self, t: torch.Tensor | None) -> torch.Tensor | None:
        """Parameter ``t`` in the run's dtype, cast once per run."""
        if t is None or t.dtype == self.dtype:
            return t
        c = self._casts.get(id(t))
        if c is None:
            c = self._casts[id(t)] = t.detach().to(self.dtype)
        return c

    def _mean(self, i: int, c: int) -> torch.Tensor:
        m = self.means.get((i, c))
        if m is None:
            m = self.means[i, c] = channel_mean(self.nodes[i, c])
        return m

    def _stripes(self, h: int, w: int, channels: int) -> list[tuple[int, int]]:
        """Output row ranges ``(r0, r1)`` of the stripes of an ``h x w`` map of ``channels``
        (as many as the run's full-resolution maps)."""
        image_pixels = self.x.shape[-2] * self.x.shape[-1]
        pixels = stripe_pixels(L2_BYTES, image_pixels, channels * self.dtype.itemsize)
        return row_bands(h, w, pixels, step=2, min_rows=MIN_STRIPE_ROWS)

    def _block(self, mods: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.dtype)  # the input, for the first block; a no-op after
        for m in mods:
            if isinstance(m, nn.Conv2d):
                # every conv of InBlock/DownBlock is followed by ReLU
                x = _conv(x, m, True, self._p(m.weight), self._p(m.bias))
        return x

    def _up_node(self, i: int, j: int) -> torch.Tensor:
        block: UpBlock = self.net.up[f"{i}_{j}"]  # type: ignore[assignment]
        _, _, transpose = _mkl_ops()
        t = block.up
        t_w, t_b = self._p(t.weight), self._p(t.bias)
        lower = self.nodes[i + 1, j - 1]

        h, w = 2 * lower.shape[2], 2 * lower.shape[3]
        stripes = self._stripes(h, w, lower.shape[1])
        # relu(convT(lower)), made whole once: its mean gates the node before any stripe
        # is computed. Made per stripe instead (twice: for the mean, then for the stripe)
        # it was 8-12 % slower for exit 5 at 512x512 and no faster at 1024x1024, once
        # freed memory is reused (rbqe.heap).
        up = transpose(lower, t_w, t_b, list(t.padding), list(t.output_padding),
                       list(t.stride), list(t.dilation), t.groups, "relu", [], None)
        up_mean = channel_mean(up)
        pooled = torch.cat([*(self._mean(i, c) for c in range(j)), up_mean], 1)
        if self.stats is not None:
            pooled = self.stats.exchange(f"{i}_{j}", pooled)
        gate = torch.sigmoid(block.eca.conv(pooled.unsqueeze(1))).reshape(-1)
        dw, pw = block.conv1.depthwise, block.conv1.pointwise
        dw_w = (dw.weight * gate[:, None, None, None]).to(self.dtype)
        dw_b, pw_w, pw_b = self._p(dw.bias), self._p(pw.weight), self._p(pw.bias)
        assert dw_b is not None  # SeparableConv's convs have biases
        c2_dw, c2_pw = block.conv2.depthwise, block.conv2.pointwise
        c2 = [self._p(t) for t in (c2_dw.weight, c2_dw.bias, c2_pw.weight, c2_pw.bias)]
        skips = [self.nodes[i, c] for c in range(j)]
        width = lower.shape[1]
        out = None if len(stripes) == 1 else torch.empty(
            (1, width, h, w), dtype=lower.dtype, memory_format=torch.channels_last)
        total = None
        for r0, r1 in stripes:
            # Two 3x3 convs in a row: the stripe reads 2 rows of context on each side.
            a0, a1 = max(0, r0 - 2), min(h, r1 + 2)
            acc = None
            parts = [s[:, :, a0:a1] for s in (*skips, up)]
            for n, part in enumerate(parts):
                sl = slice(n * width, (n + 1) * width)
                d = _conv(part, dw, False, dw_w[sl], dw_b[sl], rows=(a0 == 0, a1 == h))
                acc = _conv(d, pw, n == j, pw_w[:, sl], pw_b if acc is None else None, add=acc)
            assert acc is not None  # parts holds at least up
            acc = _crop_rows(acc, _rows_out(a0, a1, h), max(0, r0 - 1), min(h, r1 + 1))
            d = _conv(acc, c2_dw, False, c2[0], c2[1], rows=(r0 == 0, r1 == h))
            d = _crop_rows(d, _rows_out(max(0, r0 - 1), min(h, r1 + 1), h), r0, r1)
            y = _conv(d, c2_pw, True, c2[2], c2[3])
            y_sum = channel_sums(y)
            total = y_sum if total is None else total + y_sum
            if out is None:
                out = y
            else:
                out[:, :, r0:r1].copy_(y)
        assert out is not None and total is not None
        self.means[i, j] = total / (h * w)
        return out

    def _output(self, k: int) -> torch.Tensor:
        head = cast(SeparableConv, self.net.heads[k - 1])
        dw, pw = head.depthwise, head.pointwise
        node = self.nodes[0, k]
        if k == NUM_EXITS:
            node = self._refine(node)
        x = self.x[:, : pw.out_channels]
        if not x.is_contiguous(memory_format=torch.channels_last):  # in_channels > out
            x = x.contiguous(memory_format=torch.channels_last)
        _, channels, h, w = node.shape
        stripes = self._stripes(h, w, channels)
        if len(stripes) == 1:
            return self._add_residual(pw, self._head_dw(dw, node), x)
        out = torch.empty(x.shape, dtype=x.dtype, memory_format=torch.channels_last)
        for r0, r1 in stripes:
            a0, a1 = max(0, r0 - 1), min(h, r1 + 1)
            d = self._head_dw(dw, node[:, :, a0:a1], rows=(a0 == 0, a1 == h))
            d = _crop_rows(d, _rows_out(a0, a1, h), r0, r1)
            out[:, :, r0:r1] = self._add_residual(pw, d, x[:, :, r0:r1])
        return out

    def _refine(self, node: torch.Tensor) -> torch.Tensor:
        """Exit 5's refine blocks (dense convs, compute-bound: whole maps, no stripes)."""
        for block in self.net.refine:
            c1, c2 = cast(RefineBlock, block).conv1, cast(RefineBlock, block).conv2
            h = _conv(node, c1, True, self._p(c1.weight), self._p(c1.bias))
            node = _conv(h, c2, False, self._p(c2.weight), self._p(c2.bias), add=node)
        return node

    def _head_dw(self, conv: nn.Conv2d, node: torch.Tensor,
                 rows: tuple[bool, bool] | None = None) -> torch.Tensor:
        return _conv(node, conv, False, self._p(conv.weight), self._p(conv.bias), rows=rows)

    def _add_residual(self, conv: nn.Conv2d, d: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``x + conv(d)`` in float32: fused for float32, else the residual is cast up."""
        if self.dtype == torch.float32:
            return _conv(d, conv, False, add=x)
        return x + _conv(d, conv, False, self._p(conv.weight), self._p(conv.bias)).float()

    def _done(self, k: int) -> None:
        super()._done(k)
        if k == NUM_EXITS:
            self.means.clear()
