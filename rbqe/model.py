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
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from rbqe.arch import MULTIPLE, NUM_EXITS  # noqa: F401  (importable from here too)


@dataclass(frozen=True)
class ModelConfig:
    """Hyperparameters stored with the weights.

    Attributes:
        in_channels: 1 for luma (Y of YCbCr, as the paper), 3 for RGB.
        out_channels: Usually equal to ``in_channels``.
        width: Base channel count (32 in the paper).
        refine: Residual blocks of dense 3x3 convs on exit 5's full-resolution node,
            before its output head (:class:`RefineBlock`); 0 in the paper.
    """

    in_channels: int = 1
    out_channels: int = 1
    width: int = 32
    refine: int = 0


def channel_sums(t: torch.Tensor) -> torch.Tensor:
    """Per-channel sums ``(N, C)`` in float32 of an ``(N, C, H, W)`` map.

    On the CPU ``t.sum(dtype=float32)`` (and ``mean``) of a bf16 map first casts all of it
    to a float32 copy (a 512x512 node: 12-15 ms for the cast, 0.2-0.4 ms summed in bf16).
    There each image row is summed in bf16 (accumulated in float32 inside the kernel,
    rounded once per row), then the rows in float32: relative error ~1e-4, far below that
    of the bf16 map itself. Exit 5 at 512x512, bf16, 2 threads, min of 10 interleaved
    runs: 196 -> 159 ms; the output moved by at most 7e-4 (78.6 dB between the two).
    """
    if t.dtype == torch.float32 or t.device.type != "cpu":
        return t.sum(dim=(2, 3), dtype=torch.float32)
    return t.permute(0, 2, 3, 1).sum(dim=2).float().sum(dim=1)


class _ChannelMean(torch.autograd.Function):
    """``channel_sums(x) / (H * W)``, whose backward hands back ``grad / (H * W)``
    broadcast (a stride-0 view) instead of a full-size tensor.

    In a bf16 CPU training step (batch 32 of 64 px) the ECA pooling of the concatenated
    node inputs through ``mean`` cost a float32 copy of each input in the forward and a
    full-size division in the backward.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        n, c, h, w = x.shape
        ctx.shape, ctx.dtype = (n, c, h, w), x.dtype
        return channel_sums(x) / (h * w)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        n, c, h, w = ctx.shape
        return (grad / (h * w)).to(ctx.dtype)[:, :, None, None].expand(n, c, h, w)


def channel_mean(x: torch.Tensor) -> torch.Tensor:
    """Per-channel means ``(N, C)`` in float32 of ``x``: :class:`_ChannelMean` where a
    backward may follow or the map is not float32, else plain ``mean`` (which a traced
    export keeps as one op for any input size)."""
    if x.dtype == torch.float32 and not (torch.is_grad_enabled() and x.requires_grad):
        return x.mean(dim=(2, 3))
    return _ChannelMean.apply(x)


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
        pooled = channel_mean(x)  # (N, C), float32
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

    # Typed views of the two convs (indexing a Sequential is typed Module).
    @property
    def depthwise(self) -> nn.Conv2d:
        return cast(nn.Conv2d, self[0])

    @property
    def pointwise(self) -> nn.Conv2d:
        return cast(nn.Conv2d, self[1])


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


class RefineBlock(nn.Module):
    """``x + conv2(relu(conv1(x)))``, two dense 3x3 convs at full resolution.

    The output heads are linear (a separable conv), so exit 5's image is a linear map of
    its last node. These blocks add nonlinear capacity where only exit 5 pays for it, in
    the dense convs that run near the CPU's compute peak (the separable decoder convs are
    memory-bound). ``conv2`` starts at zero, so a block added to a trained net leaves its
    outputs unchanged.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


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
    dw, pw = conv.depthwise, conv.pointwise
    assert dw.bias is not None and pw.bias is not None  # SeparableConv's convs have biases
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
        self.refine = nn.Sequential(*(RefineBlock(w) for _ in range(config.refine)))
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
                cast(SeparableConv, head).pointwise.weight.mul_(0.1)
            for block in self.refine:
                nn.init.zeros_(cast(RefineBlock, block).conv2.weight)

    def start(
        self, x: torch.Tensor, stats: EcaStats | None = None, *, fast: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> ProgressiveRun:
        """Begin a progressive run on ``x``.

        ``fast=True`` asks for the CPU inference path (:class:`rbqe.fastpath.FastProgressiveRun`,
        computing in ``dtype``: float32, or bfloat16 on a CPU with native bf16); it is used
        only where it applies (see :func:`rbqe.fastpath.fast_path_ok`), otherwise the plain
        path in float32.
        """
        if fast:
            from rbqe.fastpath import FastProgressiveRun, fast_path_ok  # it imports this module

            if fast_path_ok(x):
                return FastProgressiveRun(self, x, stats, dtype=dtype)
        return ProgressiveRun(self, x, stats)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        run = self.start(x)
        return [run.next_exit() for _ in range(NUM_EXITS)]


def seeded_net(config: ModelConfig, seed: int) -> RBQENet:
    """A fresh network initialised from ``seed``, leaving torch's global RNG as it was
    (a caller's sampling must not change because it built a network)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return RBQENet(config)


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
        nodes[k, 0] = self._block(cast(DownBlock, net.down[k - 1]), nodes[k - 1, 0])
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

    def keep(self, rows: list[int]) -> None:
        """Go on with these batch ``rows`` only (in this order): images that have left
        a batched walk stop costing the later exits."""
        index = torch.tensor(rows, device=self.x.device)
        self.x = self.x.index_select(0, index)
        self.nodes = {key: t.index_select(0, index) for key, t in self.nodes.items()}

    def _output(self, k: int) -> torch.Tensor:
        node = self.nodes[0, k]
        if k == NUM_EXITS:
            node = self.net.refine(node)
        residual = self.net.heads[k - 1](node)
        return self.x[:, : residual.shape[1]] + residual

    def _done(self, k: int) -> None:
        self.exits_done = k
        if k == NUM_EXITS:
            self.nodes.clear()  # nothing left to reuse


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def gmacs_per_exit(net: RBQENet, height: int = 512, width: int = 512) -> list[float]:
    """Cumulative GMACs to reach each exit on an ``height x width`` input, each exit's
    output head included (a walk through the exits computes every one).

    Counted from the layers' shapes, not by running the net: the node code computes some
    convs without calling their modules (the gated separable conv is a batched matmul),
    which forward hooks miss. ECA, activations and pointwise adds are ignored.
    """
    px = height * width
    per_px = [0.0] * NUM_EXITS  # MACs per input pixel added by each exit
    per_px[0] = _macs_per_px(net.inc, 0)
    for k in range(1, NUM_EXITS + 1):
        # X[k-1][0] -> X[k][0]: 2 convs at scale k-1, 1 stride-2
        down = list(cast(DownBlock, net.down[k - 1]))
        per_px[k - 1] += _macs_per_px(down[:-2], k - 1) + _macs_per_px(down[-2:], k)
        for j in range(1, k + 1):
            per_px[k - 1] += _macs_per_px(net.up[f"{k - j}_{j}"], k - j)
        per_px[k - 1] += _macs_per_px(net.heads[k - 1], 0)
    per_px[-1] += _macs_per_px(net.refine, 0)
    out, total = [], 0.0
    for m in per_px:
        total += m
        out.append(total * px / 1e9)
    return out


def _macs_per_px(layers: nn.Module | list[nn.Module], scale: int) -> float:
    """MACs per input pixel of the convs in ``layers``, whose outputs are at ``scale``
    (a side of 1/2**scale of the input's)."""
    macs = 0.0
    for m in (sub for layer in (layers if isinstance(layers, list) else [layers])
              for sub in layer.modules()):
        if isinstance(m, nn.Conv2d):
            macs += m.out_channels * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.ConvTranspose2d):  # per output pixel: in x out x k*k / stride^2
            macs += (m.in_channels * m.out_channels * m.kernel_size[0] * m.kernel_size[1]
                     / (m.stride[0] * m.stride[1]))
    return macs / 4**scale
