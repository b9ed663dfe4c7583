"""The RBQE network: a progressive UNet++ with five exits of growing depth.

Xing et al., "Early Exit or Not: Resource-Efficient Blind Quality Enhancement for
Compressed Images", ECCV 2020.

Nodes follow the UNet++ naming ``X[i][j]``: ``i`` is the scale (0 = full resolution,
5 = 1/32) and ``j`` the column. ``X[i][0]`` is the encoder; ``X[i][j]`` for ``j >= 1``
upsamples ``X[i+1][j-1]`` and concatenates it with the dense skips ``X[i][0..j-1]``.
Exit ``k`` (1..5) reads ``X[0][k]``, which needs the encoder down to scale ``k`` and the
diagonal ``X[k-j][j]`` for ``j = 1..k``: each exit adds exactly one encoder block and
``k`` decoder nodes, and reuses everything that earlier exits computed.

Contract: input ``(N, C, H, W)`` in ``[0, 1]`` with ``H`` and ``W`` multiples of 32
(:data:`MULTIPLE`); the engine pads and crops. Outputs are ``input + residual``, not clamped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from rbqe.arch import MULTIPLE, NUM_EXITS  # noqa: F401  (importable from here too)
from rbqe.bands import row_bands


@dataclass(frozen=True)
class ModelConfig:
    """Hyperparameters stored with the weights.

    Attributes:
        in_channels: 1 for luma (Y of YCbCr, as the paper), 3 for RGB.
        out_channels: Usually equal to ``in_channels``.
        width: Base channel count (32 in the paper).
    """

    in_channels: int = 1
    out_channels: int = 1
    width: int = 32


class ECA(nn.Module):
    """Efficient channel attention (Wang et al., CVPR 2020).

    The gate pools over the whole feature map. Tiled inference needs the same gate in
    every tile, so the pooled means can be recorded or supplied through ``stats``.
    """

    def __init__(self, k_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 1, k_size, padding=k_size // 2, bias=False)

    def gate(self, x: torch.Tensor, stats: EcaStats | None = None, key: str = "") -> torch.Tensor:
        """The per-image channel gate ``(N, C)`` for ``x``."""
        pooled = x.mean(dim=(2, 3))  # (N, C)
        if stats is not None:
            pooled = stats.exchange(key, pooled)
        return torch.sigmoid(self.conv(pooled.unsqueeze(1))).squeeze(1)

    def forward(self, x: torch.Tensor, stats: EcaStats | None = None, key: str = "") -> torch.Tensor:
        return x * self.gate(x, stats, key)[:, :, None, None].to(x.dtype)


@dataclass
class EcaStats:
    """Pooled channel means of the ECA blocks, keyed by node name.

    ``record`` mode accumulates what each tile saw; ``fixed`` mode replaces a tile's own
    means with the accumulated average so that every tile gets the same gates.
    """

    mode: str = "record"
    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def exchange(self, key: str, pooled: torch.Tensor) -> torch.Tensor:
        if self.mode == "fixed" and key in self.sums:
            mean = self.sums[key] / self.counts[key]
            return mean.to(pooled.dtype).expand_as(pooled)
        if self.mode == "record":
            value = pooled.detach().float().sum(0, keepdim=True)
            self.sums[key] = self.sums[key] + value if key in self.sums else value
            self.counts[key] = self.counts.get(key, 0) + pooled.shape[0]
        return pooled


class SeparableConv(nn.Sequential):
    """Depthwise 3x3 followed by pointwise 1x1."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cin, 3, padding=1, groups=cin),
            nn.Conv2d(cin, cout, 1),
        )


class InBlock(nn.Sequential):
    def __init__(self, cin: int, width: int) -> None:
        super().__init__(
            nn.Conv2d(cin, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(inplace=True),
        )


class DownBlock(nn.Sequential):
    """Three 3x3 convs, the last with stride 2."""

    def __init__(self, width: int) -> None:
        super().__init__(
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1, stride=2),
            nn.ReLU(inplace=True),
        )


class UpBlock(nn.Module):
    """Transposed conv on the lower node, concat with dense skips, ECA, two separable convs."""

    def __init__(self, width: int, n_skips: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(width, width, 2, stride=2)
        cin = width * (n_skips + 1)
        self.eca = ECA()
        self.conv1 = SeparableConv(cin, width)
        self.conv2 = SeparableConv(width, width)

    def forward(
        self,
        lower: torch.Tensor,
        skips: list[torch.Tensor],
        stats: EcaStats | None = None,
        key: str = "",
    ) -> torch.Tensor:
        up = F.relu(self.up(lower))
        x = torch.cat([*skips, up], dim=1)
        x = F.relu(_gated_separable(self.conv1, x, self.eca.gate(x, stats, key)))
        return F.relu(self.conv2(x))


def _gated_separable(conv: SeparableConv, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """``conv(x * gate)`` without the multiply over the widest tensor of the node.

    The depthwise conv is per channel, so ``dw(x * g) = g * dw'(x) + b`` (``dw'`` without
    bias), and the pointwise conv then takes ``g`` into per-image weights ``W * g``: one
    batched matmul over ``dw'(x)``. In a CPU training step the gate's multiply and its
    backward over the concatenated skips were 15 % of the time (measured with
    torch.profiler, batch 10 at 96 px); the matmul also replaces the 1x1 conv.
    """
    dw, pw = conv[0], conv[1]
    n, c, h, w = x.shape
    z = F.conv2d(x, dw.weight, None, padding=1, groups=c)
    weight = pw.weight[:, :, 0, 0]  # (Cout, Cin)
    per_image = weight[None] * gate.to(weight.dtype)[:, None, :]  # (N, Cout, Cin)
    bias = pw.bias + weight @ dw.bias
    rows = z.permute(0, 2, 3, 1).reshape(n, h * w, c)  # a view when z is channels_last
    out = torch.baddbmm(bias.to(rows.dtype).expand(n, 1, -1), rows,
                        per_image.transpose(1, 2).to(rows.dtype))
    return out.reshape(n, h, w, -1).permute(0, 3, 1, 2)


class RBQENet(nn.Module):
    """Progressive UNet++ with five exits.

    ``forward`` returns all five outputs from one pass (training). Inference goes
    through :meth:`start`, which returns a :class:`ProgressiveRun` computing one exit at
    a time and reusing every node already computed.
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ModelConfig()
        w = config.width
        self.inc = InBlock(config.in_channels, w)
        self.down = nn.ModuleList(DownBlock(w) for _ in range(NUM_EXITS))
        # up[f"{i}_{j}"] builds X[i][j], which has j dense skips X[i][0..j-1].
        self.up = nn.ModuleDict(
            {f"{i}_{j}": UpBlock(w, j) for k in range(1, NUM_EXITS + 1) for j in range(1, k + 1)
             for i in [k - j]}
        )
        self.heads = nn.ModuleList(SeparableConv(w, config.out_channels) for _ in range(NUM_EXITS))
        self._init_weights()

    def _init_weights(self) -> None:
        # PyTorch's default conv init shrinks activations layer by layer; through the
        # 15-conv encoder the net then sat at the identity for hundreds of steps. He init
        # with small output heads starts near the identity yet trains from step one
        # (measured: +0.5 dB after 200 steps vs. +0.0 with the default init).
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        with torch.no_grad():
            for head in self.heads:
                head[1].weight.mul_(0.1)

    def start(
        self, x: torch.Tensor, stats: EcaStats | None = None, *, fast: bool = False
    ) -> ProgressiveRun:
        """Begin a progressive run on ``x``.

        ``fast=True`` asks for the CPU inference path (:class:`FastProgressiveRun`); it is
        used only where it applies (see :func:`fast_path_ok`), otherwise the plain one.
        """
        if fast and fast_path_ok(x):
            return FastProgressiveRun(self, x, stats)
        return ProgressiveRun(self, x, stats)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        run = self.start(x)
        return [run.next_exit() for _ in range(NUM_EXITS)]


class ProgressiveRun:
    """Computes exits one at a time, caching nodes so later exits reuse them.

    Only the nodes a later exit still needs are kept: after exit ``k`` the cache holds
    column ``X[i][0..k-i]`` for each scale ``i``, all of which later exits read as skips.
    """

    def __init__(self, net: RBQENet, x: torch.Tensor, stats: EcaStats | None) -> None:
        if x.shape[-2] % MULTIPLE or x.shape[-1] % MULTIPLE:
            raise ValueError(f"input size {tuple(x.shape[-2:])} is not a multiple of {MULTIPLE}")
        self.net = net
        self.x = x
        self.stats = stats
        self.nodes: dict[tuple[int, int], torch.Tensor] = {}
        self.exits_done = 0

    def next_exit(self) -> torch.Tensor:
        """Compute the next exit and return its output ``(N, out_channels, H, W)``."""
        k = self._nodes()
        out = self._output(k)
        self._done(k)
        return out

    def advance(self) -> None:
        """Compute the next exit's nodes but not its output, for a caller that only wants
        a later exit (the output head is the one part no later exit reuses)."""
        self._done(self._nodes())

    def _nodes(self) -> int:
        if self.exits_done >= NUM_EXITS:
            raise RuntimeError("all exits already computed")
        k = self.exits_done + 1
        net, nodes = self.net, self.nodes
        if k == 1:
            nodes[0, 0] = self._block(net.inc, self.x)
        nodes[k, 0] = self._block(net.down[k - 1], nodes[k - 1, 0])
        for j in range(1, k + 1):
            nodes[k - j, j] = self._up_node(k - j, j)
            if k == NUM_EXITS:
                self._drop_dead(k - j, j)
        return k

    # How one node is computed; FastProgressiveRun overrides these two for the CPU.
    def _block(self, block: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        return block(x)

    def _up_node(self, i: int, j: int) -> torch.Tensor:
        skips = [self.nodes[i, c] for c in range(j)]
        return self.net.up[f"{i}_{j}"](self.nodes[i + 1, j - 1], skips, self.stats, f"{i}_{j}")

    def _drop_dead(self, i: int, j: int) -> None:
        """On the last exit, free what no later node reads once ``X[i][j]`` exists: its
        lower input and the other nodes of its row (row 0 stays for the output head)."""
        self.nodes.pop((i + 1, j - 1), None)
        if i > 0:
            for c in range(j):
                self.nodes.pop((i, c), None)

    def _output(self, k: int) -> torch.Tensor:
        residual = self.net.heads[k - 1](self.nodes[0, k])
        return self.x[:, : residual.shape[1]] + residual

    def _done(self, k: int) -> None:
        self.exits_done = k
        if k == NUM_EXITS:
            self.nodes.clear()  # nothing left to reuse


# -- CPU inference path ---------------------------------------------------------------------
# Measured on the 2-core dev box, one thread, CPU time, 512x512, random width-32 weights
# (benchmarks/bench_engine.py has the whole-network figures). All five exits: plain NCHW
# module path 5.5 s, channels_last 3.3 s, this path 1.0 s. In order of gain:
# * Row stripes. The separable convs are memory-bound, and a full-resolution 32-channel
#   map (32 MB at 512x512) is more than the caches. A decoder node is computed in
#   horizontal stripes of ~32k pixels (rows of a channels_last tensor are contiguous, so a
#   stripe is a view) with the 2 rows of context its two 3x3 depthwise convs need; the
#   intermediates stay in cache and their memory is reused instead of being freshly
#   allocated (page faults: 2.2 s -> 1.2 s for the whole net at 512x512 with the next
#   items). The upsampled input of a node is likewise made per stripe, never whole.
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
# Measured and not used: bf16 autocast (this CPU has no AVX512-BF16: oneDNN refuses bf16
# convs, the fallback ran 6.6x slower, PSNR 59-68 dB vs fp32), torch.jit.freeze +
# optimize_for_inference (1.12x), torch.compile (1.8x, 66 s compile per input shape),
# dense 3x3 in place of depthwise+pointwise (9x the MACs, slower), NCHW (depthwise 2.8x
# slower). Results equal the module path to float32 rounding (~2e-7 on unit-range data).
STRIPE_PIXELS = 32 * 1024  # pixels per stripe (rows * width); ~64 rows at 512 wide
MIN_STRIPE_ROWS = 16  # a stripe recomputes 2 rows of context on each side
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
    """Inference-only :class:`ProgressiveRun` for CPU float32 batch 1 (see the notes above).

    Reads the module's parameters at every call, so it always follows the live weights.
    The ECA statistics (``stats``) are exchanged exactly as in the plain path.
    """

    def __init__(self, net: RBQENet, x: torch.Tensor, stats: EcaStats | None) -> None:
        if x.stride(1) != 1:  # channels_last; for C == 1 .contiguous() would keep NCHW strides
            x = torch.empty(x.shape, dtype=x.dtype, memory_format=torch.channels_last).copy_(x)
        super().__init__(net, x, stats)
        self.means: dict[tuple[int, int], torch.Tensor] = {}

    def _mean(self, i: int, c: int) -> torch.Tensor:
        m = self.means.get((i, c))
        if m is None:
            m = self.means[i, c] = self.nodes[i, c].mean(dim=(2, 3))
        return m

    @staticmethod
    def _stripes(h: int, w: int) -> list[tuple[int, int]]:
        """Output row ranges ``(r0, r1)`` of the stripes of an ``h x w`` map."""
        return row_bands(h, w, STRIPE_PIXELS, step=2, min_rows=MIN_STRIPE_ROWS)

    def _block(self, mods: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        for m in mods:
            if isinstance(m, nn.Conv2d):
                x = _conv(x, m, True)  # every conv of InBlock/DownBlock is followed by ReLU
        return x

    def _up_node(self, i: int, j: int) -> torch.Tensor:
        block: UpBlock = self.net.up[f"{i}_{j}"]  # type: ignore[assignment]
        _, _, transpose = _mkl_ops()
        t = block.up
        lower = self.nodes[i + 1, j - 1]

        def upsample(r0: int, r1: int) -> torch.Tensor:
            # Rows r0:r1 (even) of relu(convT(lower)): a 2x2 stride-2 kernel maps lower row
            # r to rows 2r and 2r + 1 only, so a stripe needs no context.
            return transpose(lower[:, :, r0 // 2 : r1 // 2], t.weight, t.bias,
                             list(t.padding), list(t.output_padding), list(t.stride),
                             list(t.dilation), t.groups, "relu", [], None)

        h, w = 2 * lower.shape[2], 2 * lower.shape[3]
        stripes = self._stripes(h, w)
        if len(stripes) == 1:
            up = upsample(0, h)
            up_mean = up.mean(dim=(2, 3))
        else:
            # Striped, the upsampled part is never stored whole: its mean is pooled stripe
            # by stripe here, and each stripe is computed again where it is used (a cheap
            # conv, against a full-resolution map written, faulted in and read back).
            up = None
            up_mean = sum(upsample(r0, r1).sum(dim=(2, 3)) for r0, r1 in stripes) / (h * w)
        pooled = torch.cat([*(self._mean(i, c) for c in range(j)), up_mean], 1)
        if self.stats is not None:
            pooled = self.stats.exchange(f"{i}_{j}", pooled)
        gate = torch.sigmoid(block.eca.conv(pooled.unsqueeze(1))).reshape(-1)
        dw, pw = block.conv1[0], block.conv1[1]
        dw_w = dw.weight * gate[:, None, None, None]
        skips = [self.nodes[i, c] for c in range(j)]
        width = lower.shape[1]
        out = None if len(stripes) == 1 else torch.empty(
            (1, width, h, w), dtype=lower.dtype, memory_format=torch.channels_last)
        total = None
        for r0, r1 in stripes:
            # Two 3x3 convs in a row: the stripe reads 2 rows of context on each side.
            a0, a1 = max(0, r0 - 2), min(h, r1 + 2)
            acc = None
            parts = [s[:, :, a0:a1] for s in skips]
            parts.append(up if up is not None else upsample(a0, a1))
            for n, part in enumerate(parts):
                sl = slice(n * width, (n + 1) * width)
                d = _conv(part, dw, False, dw_w[sl], dw.bias[sl], rows=(a0 == 0, a1 == h))
                acc = _conv(d, pw, n == j, pw.weight[:, sl],
                            pw.bias if acc is None else None, add=acc)
            acc = _crop_rows(acc, _rows_out(a0, a1, h), max(0, r0 - 1), min(h, r1 + 1))
            d = _conv(acc, block.conv2[0], False, rows=(r0 == 0, r1 == h))
            d = _crop_rows(d, _rows_out(max(0, r0 - 1), min(h, r1 + 1), h), r0, r1)
            y = _conv(d, block.conv2[1], True)
            total = y.sum(dim=(2, 3)) if total is None else total + y.sum(dim=(2, 3))
            if out is None:
                out = y
            else:
                out[:, :, r0:r1].copy_(y)
        assert out is not None and total is not None
        self.means[i, j] = total / (h * w)
        return out

    def _output(self, k: int) -> torch.Tensor:
        head = self.net.heads[k - 1]
        node = self.nodes[0, k]
        x = self.x[:, : head[1].out_channels]
        if not x.is_contiguous(memory_format=torch.channels_last):  # in_channels > out
            x = x.contiguous(memory_format=torch.channels_last)
        _, _, h, w = node.shape
        stripes = self._stripes(h, w)
        if len(stripes) == 1:
            return _conv(_conv(node, head[0], False), head[1], False, add=x)
        out = torch.empty(x.shape, dtype=x.dtype, memory_format=torch.channels_last)
        for r0, r1 in stripes:
            a0, a1 = max(0, r0 - 1), min(h, r1 + 1)
            d = _conv(node[:, :, a0:a1], head[0], False, rows=(a0 == 0, a1 == h))
            d = _crop_rows(d, _rows_out(a0, a1, h), r0, r1)
            out[:, :, r0:r1] = _conv(d, head[1], False, add=x[:, :, r0:r1])  # x + residual
        return out

    def _done(self, k: int) -> None:
        super()._done(k)
        if k == NUM_EXITS:
            self.means.clear()


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def gmacs_per_exit(net: RBQENet, height: int = 512, width: int = 512) -> list[float]:
    """Cumulative GMACs to reach each exit on an ``height x width`` input.

    Conv MACs scale exactly with the pixel count, so this counts them once on a small
    probe of the same aspect class and scales; ECA and pointwise adds are ignored.
    """
    probe = MULTIPLE * 2
    macs = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            macs += output.numel() * (module.in_channels // module.groups) * k
        elif isinstance(module, nn.ConvTranspose2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            macs += inputs[0].numel() * module.out_channels * k

    handles = [m.register_forward_hook(hook) for m in net.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    try:
        param = next(net.parameters())
        x = torch.zeros(1, net.config.in_channels, probe, probe, dtype=param.dtype,
                        device=param.device)
        run = net.start(x)
        out = []
        with torch.no_grad():
            for _ in range(NUM_EXITS):
                run.next_exit()
                out.append(macs * (height * width) / (probe * probe) / 1e9)
        return out
    finally:
        for h in handles:
            h.remove()
