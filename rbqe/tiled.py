"""The engine's tiled path: an image larger than one tile, in three phases.

How the exit is chosen when an image is tiled
---------------------------------------------
A tiled image cannot keep every tile's features alive (24 MP x 32 channels x 6 nodes is
tens of GB), so it cannot walk the exits for the whole picture and stop. Instead a few
*sample tiles* spread over the grid (centred crops, together about a tenth of the
picture's pixels, 256 to ``SAMPLE_SIDE`` pixels a side) walk the exits progressively;
the exit policy (:mod:`rbqe.exit_policy`) decides on the mean of their signals (scores,
block statistics, change between exits) and their ECA means.
The samples also record the ECA blocks' pooled channel means; every tile is
then computed to the chosen exit with those shared means, so that all tiles use the same
attention gates and no seam appears where two tiles would have pooled different
statistics. The chosen exit's score is finally measured on the whole assembled image and
reported beside the sampled ones (:attr:`rbqe.results.EnhanceResult.scores` has both).

That is the ``shared`` mode. Under auto with per-tile exits (the Enhancer's
``tile_exits``), the samples' decision is still the result's exit, but each tile then
walks the exits and stops on its own signals (:mod:`rbqe.tile_exits`), and
:attr:`rbqe.results.EnhanceResult.tile_exits` says which exit each tile got.

Memory of a tiled image
-----------------------
Besides the network's working set (one tile; on a GPU, :attr:`rbqe.engine.Enhancer.
tile_batch` tiles of one shape, sized to half its free memory), a tiled image costs the
caller's input and one output frame per exit returned, and little else (a GPU blends
per-tile exits into a device copy of the frame's network planes): each tile's network input is
converted from the input pixels when the tile runs, the tiles are blended straight into
the output frame (into its luma plane for a luma model), chroma is recomputed from the
input in bands of rows at the end, and the assembled image is scored band by band
(:func:`rbqe.iqa.score_rows`). A 100 MP RGB photo so needs about two float32 frames.

Tiles as they are done
----------------------
A caller's ``on_tile`` (:class:`rbqe.results.Hooks`) gets each tile as soon as its exit
is computed (:class:`rbqe.results.TileDone`): the tile's output alone, finished as the
result is, at the exit it shows (with per-tile exits its own; else the exit computed, or
for ``all`` the one auto chooses). Its neighbours' overlap is not blended in yet. Without
a listener nothing of that is made.

The phases drive an :class:`rbqe.engine.Enhancer` through the steps the whole-image
path uses too (input preparation, stage and score, finishing).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from rbqe import iqa, tile_exits
from rbqe.arch import NUM_EXITS
from rbqe.backends import Run
from rbqe.color import luma_of
from rbqe.exit_policy import Decision, ExitMode, ExitSignals, JpegPrior, ends_walk, last_exit
from rbqe.model import EcaStats
from rbqe.results import EnhanceResult, ExitResult, Hooks, TileDone, TileExits, Walk
from rbqe.tile_exits import TileWalk, floor_exit, walk_tiles
from rbqe.tiling import (
    TILE_OVERLAP,
    Box,
    Tile,
    blend_weight,
    padded_box,
    same_shape_groups,
    sample_boxes,
    tiles,
)

if TYPE_CHECKING:
    from rbqe.engine import Enhancer


@dataclass
class _Sampled:
    """What the sample tiles' walk over the exits found."""

    chosen: int  # where auto stops (the mode's last exit otherwise)
    signals: list[ExitSignals] = field(default_factory=list)  # their mean, per exit walked
    decisions: list[Decision] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)  # their mean score, per exit walked
    ms: float = 0.0  # network time of the walk
    computed: int = 0  # the deepest exit whose nodes (and ECA means) the samples computed


@torch.inference_mode()
def enhance_tiled(enh: Enhancer, img: np.ndarray, mode: ExitMode, tile: int, hooks: Hooks,
                  prior: JpegPrior | None) -> EnhanceResult:
    """:meth:`rbqe.engine.Enhancer.enhance` of an image cut into ``tile``-pixel tiles."""
    h, w = img.shape[:2]
    grid = tiles(h, w, tile, TILE_OVERLAP)
    boxes = [b for b, _, _ in grid]
    samples = sample_boxes(boxes)
    result = enh._result(mode, img, prior)
    result.tiled, result.tiles = True, len(boxes)
    result.gmacs_exit5 = (_tile_macs(enh, boxes, [NUM_EXITS] * len(boxes))
                          + _sample_macs(enh, samples, NUM_EXITS))
    # Progress counts the sample walk's exits, then the tiles: the walk of a 12 MP photo
    # takes as long as a few tiles, and was one silent step.
    walk = last_exit(mode)
    steps = _Steps(hooks, walk + len(boxes))
    stats = EcaStats(mode="record")
    per_tile = mode == "auto" and enh.tile_exits == "per-tile"
    previews = _Previews(enh, img, hooks, len(boxes)) if hooks.on_tile else None

    # 1. Sample tiles walk the exits; their mean signals decide, their ECA means are kept.
    # For per-tile exits their nodes go on to exit 5: a tile may need the means of any node.
    sampled = _walk_samples(enh, img, samples, stats, result, steps,
                            through=NUM_EXITS if per_tile else 0)
    chosen, decision = enh._decide(sampled.signals, result)

    # 2. Every tile to the exit(s) wanted, all with the same ECA means, blended straight
    # into the output frames.
    stats.mode = "fixed"
    if per_tile:
        floor = floor_exit(enh.min_exit, sampled.chosen, tile_exits.FLOOR_DROP)
        frame, walked = walk_tiles(enh, img, grid, stats, floor, result,
                                   lambda n: steps.at("tile", walk + n), hooks.check_cancel,
                                   None if previews is None else previews.tile)
        hooks.report("tile", steps.total, steps.total)
        _assemble_per_tile(enh, img, frame, walked, grid, samples, sampled, floor, result,
                           hooks)
    else:
        exits_wanted = list(range(1, NUM_EXITS + 1)) if mode == "all" else [sampled.chosen]
        if isinstance(mode, int):
            exits_wanted = [mode]
        # The tiles shown as they come are of the exit the result will show.
        frames, stage_ms = _run_tiles(enh, img, grid, stats, exits_wanted, steps, walk,
                                      previews, chosen)
        # 3. Assemble: each exit wanted finished and scored on the whole image.
        _assemble(enh, img, frames, stage_ms, boxes, samples, sampled, result, hooks)
    result.chosen, result.decision = chosen, decision
    assert mode != "auto" or result.chosen == sampled.chosen
    result.full_score = result.exit_result(result.chosen).score
    result.sampled_scores = sampled.scores
    return result


@dataclass
class _Previews:
    """Hands each tile, as it is done, to the caller's ``on_tile``
    (:class:`rbqe.results.TileDone`): its output finished on its crop of the input, as the
    result is finished on the whole. Made only when the caller listens."""

    enh: Enhancer
    img: np.ndarray
    hooks: Hooks
    total: int
    done: int = 0

    def tile(self, box: Box, k: int, out: np.ndarray | torch.Tensor) -> None:
        """Tile ``box`` is done at exit ``k``; ``out`` is its network output ``(h, w,
        out_channels)``, on the host or the device, which is only read."""
        y0, y1, x0, x1 = box
        crop = self.img[y0:y1, x0:x1]

        def finished() -> np.ndarray:  # on the caller's first read (TileDone.image)
            host = out.float().cpu().numpy() if isinstance(out, torch.Tensor) else out
            frame = self.enh._output_frame(crop, host)
            if np.may_share_memory(frame, host):  # finishing writes into the frame
                frame = frame.copy()
            return self.enh._finish(frame, crop)

        self.done += 1
        self.hooks.tile_done(TileDone(box, k, finished, self.done, self.total))


@dataclass
class _Steps:
    """Progress and cancelling over the sample walk's exits, then the tiles."""

    hooks: Hooks
    total: int

    def at(self, stage: str, done: int) -> None:
        self.hooks.step(stage, done, self.total)


def _walk_samples(enh: Enhancer, img: np.ndarray, samples: list[Box], stats: EcaStats,
                  result: EnhanceResult, steps: _Steps, through: int = 0) -> _Sampled:
    """Phase 1: the sample tiles walk the exits side by side, recording their ECA means
    into ``stats``, until the policy stops on their mean signals (or the mode's last
    exit); then their nodes alone (no output, no score) on to exit ``through``, for the
    ECA means of later nodes. A step of progress per exit walked."""
    mode = result.mode
    runs: list[tuple[Run, list[int]]] = []  # a run per group of samples of one shape
    walks: dict[int, Walk] = {}
    for group in same_shape_groups(samples, enh.tile_batch):
        xs = []
        for n in group:
            y0, y1, x0, x1 = samples[n]
            xs.append(enh._prepare_input(img[y0:y1, x0:x1]))
            # Each sample's own walk keeps its previous luma; all share the ECA record.
            # Samples are scored padded, as they always were (the assessor's threshold
            # was calibrated so).
            walks[n] = Walk(stats, enh._luma_of(xs[-1].float()))
        runs.append((enh._start(xs, stats), group))
    sampled = _Sampled(chosen=last_exit(mode))
    for k in range(1, last_exit(mode) + 1):
        steps.at("sample", k - 1)
        for run, group in runs:
            steps.hooks.check_cancel()
            t0 = time.perf_counter()
            out = enh._stage(run)
            sampled.ms += (time.perf_counter() - t0) * 1000
            for row, n in enumerate(group):
                newest = enh._signals(k, out[row : row + 1], walks[n])
        mean = ExitSignals.mean([walks[n].signals[-1] for n in range(len(samples))])
        # The ECA means over all the samples (each walk saw those of the samples before).
        mean.eca = newest.eca
        sampled.signals.append(mean)
        sampled.scores.append(float(np.mean([w.signals[-1].score for w in walks.values()])))
        sampled.decisions.append(enh._decision(sampled.signals, result))
        if ends_walk(mode, sampled.decisions[-1]):
            sampled.chosen = k
            break
    sampled.computed = len(sampled.signals)
    if through > sampled.computed:
        sampled.ms += _walk_on(enh, [run for run, _ in runs], through, steps,
                               sampled.computed)
        sampled.computed = through
    return sampled


def _walk_on(enh: Enhancer, runs: list[Run], through: int, steps: _Steps, walked: int
             ) -> float:
    """The sample ``runs``' nodes on to exit ``through`` (recording their ECA means), one
    run after the other, so that only one grows at a time; returns the network ms. The
    progress steps from ``walked`` to ``through`` are shared out over the runs."""
    t0 = time.perf_counter()
    for n, run in enumerate(runs):
        steps.at("sample", walked + (through - walked) * n // len(runs))
        while run.exits_done < through:
            steps.hooks.check_cancel()
            with enh._autocast():
                run.advance()
    enh._sync()
    return (time.perf_counter() - t0) * 1000


def _run_tiles(enh: Enhancer, img: np.ndarray, grid: list[Tile], stats: EcaStats,
               exits_wanted: list[int], steps: _Steps, first_step: int,
               previews: _Previews | None = None, shown: int = 0
               ) -> tuple[dict[int, np.ndarray], list[float]]:
    """Phase 2: every tile to the deepest exit wanted with the fixed ECA means in
    ``stats``, its outputs blended into one frame per exit wanted; each tile's exit
    ``shown`` goes to ``previews`` as it is computed. Returns the frames and the network
    time per stage."""
    frames = {k: enh._output_frame(img) for k in exits_wanted}
    acc = {k: f[..., : enh.net.config.out_channels] for k, f in frames.items()}
    stage_ms = [0.0] * NUM_EXITS
    # Tiles of one padded shape run together where batching pays (a GPU); one at a time
    # elsewhere. Two groups' network states are never alive at once.
    for group in same_shape_groups([box for box, _, _ in grid], enh.tile_batch):
        xs = []
        for n in group:
            steps.at("tile", first_step + n)
            y0, y1, x0, x1 = grid[n][0]
            xs.append(enh._prepare_input(img[y0:y1, x0:x1]))
        run = enh._start(xs, stats)
        del xs
        for k in range(1, max(exits_wanted) + 1):
            if k > 1:
                steps.hooks.check_cancel()
            t0 = time.perf_counter()
            if k not in acc:  # an exit on the way: its nodes, not its output head
                with enh._autocast():
                    run.advance()
                stage_ms[k - 1] += (time.perf_counter() - t0) * 1000
                continue
            out = enh._stage(run).cpu().numpy()  # one copy per group
            for row, n in enumerate(group):
                (y0, y1, x0, x1), wy, wx = grid[n]
                acc[k][y0:y1, x0:x1] += _tile_out(out, row, grid[n][0]) * blend_weight(wy, wx)
            stage_ms[k - 1] += (time.perf_counter() - t0) * 1000
            if previews is not None and k == shown:  # not in the network's time
                for row, n in enumerate(group):
                    previews.tile(grid[n][0], k, _tile_out(out, row, grid[n][0]))
        del run
    steps.hooks.report("tile", steps.total, steps.total)
    return frames, stage_ms


def _tile_out(out: np.ndarray, row: int, box: Box) -> np.ndarray:
    """Row ``row`` of a group's ``(N, planes, hp, wp)`` output, cropped to tile ``box``,
    as ``(h, w, planes)`` (a view)."""
    y0, y1, x0, x1 = box
    return out[row, :, : y1 - y0, : x1 - x0].transpose(1, 2, 0)


def _assemble(enh: Enhancer, img: np.ndarray, frames: dict[int, np.ndarray],
              stage_ms: list[float], boxes: list[Box], samples: list[Box],
              sampled: _Sampled, result: EnhanceResult, hooks: Hooks) -> None:
    """Phase 3: each frame finished into its exit's image and scored on the whole image.
    The sample walk's cost is counted in every exit's time and MACs, since it was spent
    to get there."""
    overhead_macs = _sample_macs(enh, samples, sampled.computed)
    exits_wanted = list(frames)
    for k in exits_wanted:
        macs = _tile_macs(enh, boxes, [k] * len(boxes)) + overhead_macs
        # One exit wanted: every tile ran stages 1..k for it (like its cumulative MACs).
        net_ms = stage_ms[k - 1] if result.mode == "all" else sum(stage_ms[:k])
        if k == exits_wanted[0]:
            net_ms += sampled.ms
        _finish_exit(enh, img, frames.pop(k), k, net_ms, 0.0, macs, sampled, result, hooks)


def _assemble_per_tile(enh: Enhancer, img: np.ndarray, frame: np.ndarray, walked: TileWalk,
                       grid: list[Tile], samples: list[Box], sampled: _Sampled, floor: int,
                       result: EnhanceResult, hooks: Hooks) -> None:
    """Phase 3 with per-tile exits: the one frame finished and scored as the chosen
    exit's image, and :attr:`EnhanceResult.tile_exits` filled in."""
    boxes = [b for b, _, _ in grid]
    k = sampled.chosen
    spent = _tile_macs(enh, boxes, walked.exits) + _sample_macs(enh, samples, sampled.computed)
    rows = len({b[0] for b in boxes})
    result.tile_exits = TileExits(
        walked.exits, (rows, len(boxes) // rows), floor, walked.reasons, spent,
        _tile_macs(enh, boxes, [k] * len(boxes)) + _sample_macs(enh, samples, k),
        result.gmacs_exit5)
    _finish_exit(enh, img, frame, k, sum(walked.stage_ms) + sampled.ms, walked.iqa_ms,
                 spent, sampled, result, hooks)


def _finish_exit(enh: Enhancer, img: np.ndarray, frame: np.ndarray, k: int, net_ms: float,
                 iqa_ms: float, macs: float, sampled: _Sampled, result: EnhanceResult,
                 hooks: Hooks) -> None:
    """The assembled ``frame`` finished, scored on the whole image and added to
    ``result`` as exit ``k`` (with the samples' signals and decision there, if walked)."""
    image = enh._finish(frame, img)
    t1 = time.perf_counter()
    full = _score_frame(image, enh.device)
    iqa_ms += (time.perf_counter() - t1) * 1000
    walked = len(sampled.signals)
    e = ExitResult(k, image, full, net_ms, iqa_ms, macs,
                   sampled.signals[k - 1] if k <= walked else None,
                   sampled.decisions[k - 1] if k <= walked else None)
    result.exits.append(e)
    hooks.exit_done(e)


def _tile_macs(enh: Enhancer, boxes: list[Box], exits: list[int]) -> float:
    """GMACs of running each of ``boxes`` to its exit in ``exits``."""
    return sum(enh.gmacs(*padded_box(b))[k - 1] for b, k in zip(boxes, exits, strict=True))


def _sample_macs(enh: Enhancer, samples: list[Box], walked: int) -> float:
    """GMACs of the sample tiles' walk to exit ``walked``."""
    return _tile_macs(enh, samples, [walked] * len(samples))


def _score_frame(image: np.ndarray, device: torch.device) -> float:
    """IQA score of an assembled ``(H, W, C)`` result, its luma made band by band."""
    h, w = image.shape[:2]
    return iqa.score_rows(lambda r0, r1: luma_of(image[r0:r1]), h, w, device=device)
