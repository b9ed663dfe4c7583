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

Memory: one tile's network state at a time (on a GPU, one group of ``tile_batch`` tiles
of one shape), and its output at the exit walked last, as in the shared mode; the
samples' walk to exit 5 goes one run at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from rbqe.arch import NUM_EXITS, TILE_EXITS
from rbqe.errors import RBQEError
from rbqe.model import EcaStats, ProgressiveRun
from rbqe.results import EnhanceResult, Walk
from rbqe.tiling import Box, Tile, blend_weight, same_shape_groups

if TYPE_CHECKING:
    from rbqe.engine import Enhancer

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


# Called as a tile stops: its box, its exit and its output there, ``(h, w, planes)`` on the
# network's device (a view, to be read at once).
OnStop = Callable[[Box, int, torch.Tensor], None]


def walk_tiles(enh: Enhancer, img: np.ndarray, grid: list[Tile], stats: EcaStats,
               floor: int, result: EnhanceResult, on_tile: Callable[[int], None],
               check_cancel: Callable[[], None] = lambda: None, on_stop: OnStop | None = None
               ) -> tuple[np.ndarray, TileWalk]:
    """Every tile of ``grid`` to its own exit (the first at or after ``floor`` where the
    policy stops on the tile's signals), with the fixed ECA means in ``stats``; their
    outputs blended into one frame (:meth:`rbqe.engine.Enhancer._output_frame`).
    ``on_tile(n)`` is called before tile ``n`` (progress, cancelling), ``check_cancel``
    between a tile's exits (a 1024-pixel tile to exit 5 takes seconds to a minute on a
    CPU: a cancel waits for one exit, not the whole tile), ``on_stop`` as a tile stops
    (:data:`OnStop`; the caller's previews).

    Tiles of one padded shape walk together, :attr:`rbqe.engine.Enhancer.tile_batch` at a
    time (a GPU; one at a time elsewhere), each deciding on its own signals and leaving
    the run when it stops (as :mod:`rbqe.batched` does for whole images). The blending
    happens on the network's device, and the frame comes to the host once."""
    frame = enh._output_frame(img)
    planes = enh.net.config.out_channels
    # On the CPU the tiles are blended straight into the frame; a GPU blends into a
    # device copy of its network planes (12 MP: 48 MB per plane), brought back once.
    acc = (torch.from_numpy(frame[..., :planes]) if enh.device.type == "cpu"
           else torch.zeros(frame.shape[:2] + (planes,), device=enh.device))
    walked = TileWalk()
    exits: dict[int, tuple[int, str]] = {}
    for group in same_shape_groups([box for box, _, _ in grid], enh.tile_batch):
        for n in group:
            on_tile(n)
        for row, k, why in _walk_group(enh, img, [grid[n] for n in group], stats, floor,
                                       result, acc, walked, check_cancel, on_stop):
            exits[group[row]] = (k, why)
    walked.exits = [exits[n][0] for n in range(len(grid))]
    walked.reasons = [exits[n][1] for n in range(len(grid))]
    if enh.device.type != "cpu":
        t0 = time.perf_counter()
        frame[..., :planes] = acc.cpu().numpy()
        walked.stage_ms[max(walked.exits) - 1] += (time.perf_counter() - t0) * 1000
    return frame, walked


def _walk_group(enh: Enhancer, img: np.ndarray, tiles: list[Tile], stats: EcaStats,
                floor: int, result: EnhanceResult, acc: torch.Tensor, walked: TileWalk,
                check_cancel: Callable[[], None], on_stop: OnStop | None = None
                ) -> list[tuple[int, int, str]]:
    """Tiles of one padded shape on one run, each blended into ``acc`` at its exit (and
    given to ``on_stop``); returns ``(index in tiles, exit, deciding signal)`` for each of
    them."""
    stopped = []
    crops = [(y1 - y0, x1 - x0) for (y0, y1, x0, x1), _, _ in tiles]
    xs = [enh._prepare_input(img[y0:y1, x0:x1]) for (y0, y1, x0, x1), _, _ in tiles]
    run = enh._start(xs, stats)
    # Each walk reads the shared means as its ECA signal; the padding is left out of the
    # scores, as for an untiled image.
    states = [Walk(stats, enh._luma_of(x[..., :ch, :cw].float()))
              for x, (ch, cw) in zip(xs, crops, strict=True)]
    del xs
    walking = list(range(len(tiles)))  # the tiles (rows of the group) in the run's rows
    for k in range(1, NUM_EXITS + 1):
        if k > 1:
            check_cancel()
        t0 = time.perf_counter()
        out = enh._stage(run)
        walked.stage_ms[k - 1] += (time.perf_counter() - t0) * 1000
        # Below the floor the policy is not asked, and the gate's features at the floor
        # read only the change between those exits: the assessor (~35 ms per megapixel
        # and exit) is skipped there.
        asked = k >= floor
        stay = []
        for row, t in enumerate(walking):
            ch, cw = crops[t]
            t1 = time.perf_counter()
            enh._signals(k, out[row : row + 1, :, :ch, :cw], states[t], assess=asked)
            walked.iqa_ms += (time.perf_counter() - t1) * 1000
            decision = enh._decision(states[t].signals, result) if asked else None
            if k < NUM_EXITS and not (decision and decision.stop):
                stay.append(row)
                continue
            t2 = time.perf_counter()
            (y0, y1, x0, x1), wy, wx = tiles[t]
            weight = torch.from_numpy(blend_weight(wy, wx)).to(acc.device)
            acc[y0:y1, x0:x1] += out[row, :, :ch, :cw].permute(1, 2, 0) * weight
            walked.stage_ms[k - 1] += (time.perf_counter() - t2) * 1000
            if on_stop is not None:  # not in the network's time
                on_stop(tiles[t][0], k, out[row, :, :ch, :cw].permute(1, 2, 0))
            stopped.append((t, k, decision.signal if decision else ""))
        if not stay:
            break
        if len(stay) < len(walking):  # only a batch (the torch module path) gets here
            assert isinstance(run, ProgressiveRun)
            run.keep(stay)
            walking = [walking[row] for row in stay]
    return stopped
