"""The network cut into five stage graphs, for exporting (OpenVINO, ONNX, ...).

Stage ``k`` computes exactly what :class:`rbqe.model.ProgressiveRun` computes for exit
``k``: it takes the input ``x`` and the nodes that later exits need (every ``X[i][c]``
with ``i + c <= k - 1``; none for stage 1, which also makes ``X[0][0]``), and returns exit ``k``'s image followed by the new nodes
(``X[k][0]`` and the diagonal ``X[k-j][j]``; none for stage 5, which nothing follows).

The ECA blocks' pooled channel means (see :class:`rbqe.model.EcaStats`) cross the graph
boundary: a *record* stage returns each new decoder node's pooled means after its nodes,
a *fixed* stage takes them as inputs after its nodes instead of pooling its own. The
untiled path runs the record stages and ignores those outputs (they are ``(1, C)``).

Inputs and outputs are positional; :func:`stage_io` says what each position holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rbqe.model import NUM_EXITS, ProgressiveRun, RBQENet

Node = tuple[int, int]  # (scale i, column j) of X[i][j]


@dataclass(frozen=True)
class StageIO:
    """What stage ``k``'s inputs and outputs hold, in order (after ``x`` / the image).

    Attributes:
        nodes_in: Nodes read, kept from earlier stages.
        nodes_out: Nodes made that later stages read.
        eca: Decoder nodes of this stage, whose ECA means are outputs (record) or inputs
            (fixed), as keys ``"i_j"`` of :class:`rbqe.model.EcaStats`.
    """

    nodes_in: tuple[Node, ...]
    nodes_out: tuple[Node, ...]
    eca: tuple[str, ...]


def stage_io(k: int) -> StageIO:
    """The layout of stage ``k`` (1..5)."""
    if not 1 <= k <= NUM_EXITS:
        raise ValueError(f"stage must be 1..{NUM_EXITS}, got {k}")
    nodes_in = tuple((i, c) for i in range(k) for c in range(k - i)) if k > 1 else ()
    made: tuple[tuple[int, int], ...] = ((0, 0),) if k == 1 else ()
    made += ((k, 0), *((k - j, j) for j in range(1, k + 1)))
    nodes_out = made if k < NUM_EXITS else ()
    return StageIO(nodes_in, nodes_out, tuple(f"{k - j}_{j}" for j in range(1, k + 1)))


class _GraphStats:
    """Stands in for :class:`rbqe.model.EcaStats` while tracing: collects the pooled
    means (record) or hands out the ones given as graph inputs (fixed)."""

    def __init__(self, given: dict[str, torch.Tensor] | None) -> None:
        self.given = given
        self.recorded: list[torch.Tensor] = []

    def exchange(self, key: str, pooled: torch.Tensor) -> torch.Tensor:
        if self.given is not None:
            return self.given[key]
        self.recorded.append(pooled)
        return pooled


class Stage(nn.Module):
    """Stage ``k`` of ``net`` as a module with positional tensor inputs and outputs.

    ``forward(x, *nodes_in[, *means])`` returns ``(image, *nodes_out[, *means])``: the
    means are inputs when ``fixed``, outputs otherwise. It runs the model's own
    :class:`rbqe.model.ProgressiveRun` code, so the exported graph is the module path.
    """

    def __init__(self, net: RBQENet, k: int, fixed: bool) -> None:
        super().__init__()
        self.net, self.k, self.fixed = net, k, fixed
        self.io = stage_io(k)

    def forward(self, x: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        io = self.io
        n = len(io.nodes_in)
        stats = _GraphStats(dict(zip(io.eca, tensors[n:], strict=True)) if self.fixed else None)
        run = ProgressiveRun(self.net, x, stats)  # type: ignore[arg-type]
        run.nodes = dict(zip(io.nodes_in, tensors[:n], strict=True))
        run.exits_done = self.k - 1
        image = run.next_exit()
        outs = [image, *(run.nodes[node] for node in io.nodes_out)]
        return tuple(outs if self.fixed else outs + stats.recorded)


def example_inputs(net: RBQENet, k: int, fixed: bool, height: int, width: int
                   ) -> tuple[torch.Tensor, ...]:
    """Zero tensors shaped like stage ``k``'s inputs for an ``height x width`` image
    (multiples of 32), to trace it with."""
    cfg = net.config
    io = stage_io(k)
    x = torch.zeros(1, cfg.in_channels, height, width)
    nodes = [torch.zeros(1, cfg.width, height >> i, width >> i) for i, _ in io.nodes_in]
    means = [torch.zeros(1, cfg.width * (int(key.split("_")[1]) + 1)) for key in io.eca]
    return (x, *nodes, *(means if fixed else []))
