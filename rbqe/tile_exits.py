"""Per-tile exits of a tiled image: each tile walks the exits and stops on its own signals.

The window-based cascade idea: a large photo is rarely damaged evenly (sky, text,
foliage), so late exits are spent only on the tiles that need them.

Under ``auto`` with ``tile_exits="per-tile"`` (:data:`TILE_EXITS`), :mod:`rbqe.tiled`
first walks its sample tiles as in the shared mode: they give the whole-picture decision
(still the result's exit) and record the ECA blocks' pooled channel means. Their nodes
then go on to exit 5 (no outputs, no scores), so that the means of every node are known
whatever exit a tile needs: about 1 % of exit 5's MACs on a 12 MP picture, 3 % at 3 MP
(docs/bench/tile_exits.txt). Keeping the samples' states alive instead, to go on only
when a tile asks, held ~0.7 GB more beside the tile's own (four 512x512 crops at exit 3,
torch f32).

Then each tile walks exits 1, 2, ... with those shared means (every tile's attention
gates are the same, as in the shared mode), scored on its own output, and the same
:class:`rbqe.exit_policy.ExitPolicy` decides on the tile's own signals: its assessor
score and block statistics, the change between its exits, the file's JPEG tables. The
ECA channel means the gate reads are the shared ones (what the network applied; the
OpenVINO backend's fixed-statistics stages do not return a tile's own). A tile never
stops before :func:`floor_exit`, so the policy is first asked there; below it only the
change between exits is measured (the assessor is skipped). Its output at its exit is blended into the one output
frame; tiles overlap by :data:`rbqe.tiling.TILE_OVERLAP` pixels, so two neighbours at
different exits cross-fade over that band (``benchmarks/bench_tile_exits.py`` measured
no seam).

Memory: one tile's network state at a time, and its output at the exit walked last, as
in the shared mode; the samples' walk to exit 5 goes one sample at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from rbqe.arch import NUM_EXITS
from rbqe.errors import RBQEError
from rbqe.model import EcaStats
from rbqe.results import EnhanceResult, Walk
from rbqe.tiling import Tile, blend_weight

if TYPE_CHECKING:
    from rbqe.engine import Enhancer

TILE_EXITS = ("per-tile", "shared")  # how auto chooses the exit of a tiled image
DEFAULT_TILE_EXITS = "per-tile"
# A tile never stops more than this many exits before the sample tiles' decision for the
# whole picture (nor before the policy's own min_exit). None: no floor but the policy's.
# 0, measured on the BSDS500 val mosaics of benchmarks/bench_tile_exits.py
# (docs/bench/tile_exits.txt): every tile that stopped before the samples' decision
# without a floor cost its picture PSNR for ~1 % of the MACs (about 0.07-0.09 dB on that
# tile, more than the gate's own tau), and with floor 0 per-tile never did worse than
# shared on any picture. Tiles still go past the decision where they need to.
FLOOR_DROP: int | None = 0


def check_tile_exits(value: str) -> str:
    """``value`` if it names a mode of :data:`TILE_EXITS`, else :class:`RBQEError`."""
    if value not in TILE_EXITS:
        raise RBQEError(f"tile exits must be one of {', '.join(TILE_EXITS)}, got {value!r}")
    return value


def floor_exit(min_exit: int, sampled: int, drop: int | None) -> int:
    """The earliest exit a tile may stop at: the policy's ``min_exit``, and not more than
    ``drop`` exits before the ``sampled`` whole-picture decision."""
    if drop is None:
        return min_exit
    return max(min_exit, min(sampled - drop, NUM_EXITS))


@dataclass
class TileWalk:
    """What the tiles' walk did: each tile's exit (grid order) and why it stopped there,
    and the network and scoring time per exit summed over the tiles."""

    exits: list[int] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)  # the deciding Decision.signal
    stage_ms: list[float] = field(default_factory=lambda: [0.0] * NUM_EXITS)
    iqa_ms: float = 0.0


def walk_tiles(enh: Enhancer, img: np.ndarray, grid: list[Tile], stats: EcaStats,
               floor: int, result: EnhanceResult, on_tile: Callable[[int], None]
               ) -> tuple[np.ndarray, TileWalk]:
    """Every tile of ``grid`` to its own exit (the first at or after ``floor`` where the
    policy stops on the tile's signals), with the fixed ECA means in ``stats``; their
    outputs blended into one frame (:meth:`rbqe.engine.Enhancer._output_frame`).
    ``on_tile(n)`` is called before tile ``n`` (progress, cancelling)."""
    frame = enh._output_frame(img)
    acc = frame[..., : enh.net.config.out_channels]
    walked = TileWalk()
    for n, (box, wy, wx) in enumerate(grid):
        on_tile(n)
        y0, y1, x0, x1 = box
        crop = (y1 - y0, x1 - x0)
        x = enh._prepare_input(img[y0:y1, x0:x1])
        run = enh.backend.start(x, stats, fast=enh.fast)
        # The walk reads the shared means as its ECA signal; the padding is left out of
        # the scores, as for an untiled image.
        state = Walk(stats, enh._luma_of(x[..., : crop[0], : crop[1]].float()))
        for k in range(1, NUM_EXITS + 1):
            # Below the floor the policy is not asked, and the gate's features at the
            # floor read only the change between those exits: the assessor (~35 ms per
            # megapixel and exit) is skipped there.
            asked = k >= floor
            out, _, net_ms, iqa_ms = enh._stage_and_score(run, state, crop, assess=asked)
            walked.stage_ms[k - 1] += net_ms
            walked.iqa_ms += iqa_ms
            if asked:
                decision = enh._decision(state.signals, result)
                if decision.stop:
                    break
        t0 = time.perf_counter()
        acc[y0:y1, x0:x1] += out[0].permute(1, 2, 0).cpu().numpy() * blend_weight(wy, wx)
        walked.stage_ms[k - 1] += (time.perf_counter() - t0) * 1000
        walked.exits.append(k)
        walked.reasons.append(decision.signal)
        # Before the next tile starts: two tiles' network states alive at once would
        # double the working set.
        del run, out, state
    return frame, walked
