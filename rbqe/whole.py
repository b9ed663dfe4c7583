"""The engine's whole-image path: an image that runs whole (:meth:`rbqe.engine.Enhancer.
runs_whole`: no more pixels than one tile; 2.1 MP on the CPU in bf16 by default) runs on
one progressive run, its exits computed one after another, each scored and finished,
until the exit policy stops (or the mode's last exit).

With ``keep_session`` the run stays alive in the result (:class:`rbqe.results.Session`),
so that :meth:`rbqe.engine.Enhancer.continue_exits` computes later exits from the cached
stages. The steps are the :class:`~rbqe.engine.Enhancer`'s, shared with the tiled path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from rbqe.arch import NUM_EXITS
from rbqe.backends import Run
from rbqe.exit_policy import ExitMode, JpegPrior, ends_walk, last_exit
from rbqe.model import EcaStats
from rbqe.results import EnhanceResult, ExitResult, Hooks, Session, Walk

if TYPE_CHECKING:
    from rbqe.engine import Enhancer


@torch.inference_mode()
def enhance_whole(enh: Enhancer, img: np.ndarray, mode: ExitMode, hooks: Hooks,
                  keep_session: bool, prior: JpegPrior | None) -> EnhanceResult:
    """:meth:`rbqe.engine.Enhancer.enhance` of an image that is not tiled."""
    h, w = img.shape[:2]
    x = enh._prepare_input(img)
    state = Walk(EcaStats(mode="record"), enh._luma_of(x[..., :h, :w].float()))
    run = enh._start([x], state.stats)
    result = enh._result(mode, img, prior)
    last = last_exit(mode)
    for k in range(1, last + 1):
        hooks.step("exit", k - 1, last)
        e = next_exit(enh, run, x, img, state)
        e.decision = enh._decision(state.signals, result)
        result.exits.append(e)
        hooks.exit_done(e)
        if ends_walk(mode, e.decision):
            break
    result.chosen, result.decision = enh._decide(state.signals, result)
    hooks.report("exit", last, last)
    if keep_session and run.exits_done < NUM_EXITS:
        result._session = Session(run, x, img, state)
    return result


@torch.inference_mode()
def next_exit(enh: Enhancer, run: Run, x: torch.Tensor, img: np.ndarray,
              state: Walk) -> ExitResult:
    """The next exit of an untiled image's ``run`` (network input ``x``, pixels ``img``):
    staged, scored and finished."""
    out, signals, net_ms, iqa_ms = enh._stage_and_score(run, state, img.shape[:2])
    k = run.exits_done
    image = enh._finish(enh._output_frame(img, out[0].permute(1, 2, 0).cpu().numpy()), img)
    return ExitResult(k, image, signals.score, net_ms, iqa_ms,
                      enh.gmacs(*x.shape[-2:])[k - 1], signals)
