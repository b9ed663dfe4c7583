"""The engine's batched whole-image path: same-size images walk the exits together.

A GPU runs this small network at batch 1 far below its capacity (on the H200, 512x512
to exit 3: 28 MP/s at batch 1, 178 MP/s at batch 8), so :meth:`rbqe.engine.Enhancer.
enhance_many` stacks images of one size into one progressive run. Each exit is computed
for the images still walking, each image is scored and decided on its own (its own
assessor score, change and ECA means, exactly as :mod:`rbqe.whole` walks it alone), and
the images whose policy stops leave the run (:meth:`rbqe.model.ProgressiveRun.keep`), so
the later exits cost only what still needs them: the early exit's saving survives the
batching.

The outputs of one exit come to the host in one copy for the whole batch. Each image's
time is its share of the batch's: network and assessor ms divided among the images that
took part in each exit.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import torch

from rbqe.exit_policy import ExitMode, JpegPrior, ends_walk, last_exit
from rbqe.model import EcaStats, ProgressiveRun
from rbqe.results import EnhanceResult, ExitResult, Walk

if TYPE_CHECKING:
    from rbqe.engine import Enhancer


class RowStats(EcaStats):
    """Hands each batch row's pooled ECA means to that image's own record, so that every
    image's signals are what they would be alone. ``walks`` follows the run's rows."""

    def __init__(self, walks: list[Walk]) -> None:
        super().__init__(mode="record")
        self.walks = walks

    def exchange(self, key: str, pooled: torch.Tensor) -> torch.Tensor:
        for row, walk in enumerate(self.walks):
            walk.stats.exchange(key, pooled[row : row + 1])
        return pooled


@torch.inference_mode()
def enhance_batch(enh: Enhancer, imgs: list[np.ndarray], mode: ExitMode,
                  priors: list[JpegPrior | None]) -> list[EnhanceResult]:
    """:meth:`rbqe.engine.Enhancer.enhance` of each of ``imgs`` (one shape, none tiled),
    on one progressive run."""
    t_start = time.perf_counter()
    h, w = imgs[0].shape[:2]
    xs = [enh._prepare_input(img) for img in imgs]
    walks = [Walk(EcaStats(mode="record"), enh._luma_of(xi[..., :h, :w].float())) for xi in xs]
    row_stats = RowStats(list(walks))
    run = enh._start(xs, row_stats, fast=False)
    gmacs = enh.gmacs(*xs[0].shape[-2:])
    del xs
    assert isinstance(run, ProgressiveRun)  # the torch backend's module path: it can keep()
    results = [enh._result(mode, img, prior) for img, prior in zip(imgs, priors, strict=True)]
    walking = list(range(len(imgs)))  # the images (indices) in the run's rows
    for k in range(1, last_exit(mode) + 1):
        t0 = time.perf_counter()
        out = enh._stage(run, (h, w))
        host = out.permute(0, 2, 3, 1).cpu().numpy()  # one copy for all the rows
        net_ms = (time.perf_counter() - t0) * 1000 / len(walking)
        stay = []
        for row, i in enumerate(walking):
            t1 = time.perf_counter()
            signals = enh._signals(k, out[row : row + 1], walks[i])
            iqa_ms = (time.perf_counter() - t1) * 1000
            image = enh._finish(enh._output_frame(imgs[i], host[row].copy()), imgs[i])
            e = ExitResult(k, image, signals.score, net_ms, iqa_ms, gmacs[k - 1], signals)
            e.decision = enh._decision(walks[i].signals, results[i])
            results[i].exits.append(e)
            if not ends_walk(mode, e.decision):
                stay.append(row)
        del out, host
        if not stay:
            break
        if len(stay) < len(walking):
            run.keep(stay)
            walking = [walking[row] for row in stay]
            row_stats.walks = [walks[i] for i in walking]
    share = (time.perf_counter() - t_start) * 1000 / len(imgs)
    for result, walk in zip(results, walks, strict=True):
        result.chosen, result.decision = enh._decide(walk.signals, result)
        result.total_ms = share
    return results
