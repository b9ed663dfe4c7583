"""Add refine blocks to a trained network's exit 5 (:class:`rbqe.model.RefineBlock`)
without starting over.

Exit 5's head is linear: a 3x3 depthwise and a 1x1 conv of its last node. Refine blocks
put two dense 3x3 convs with a ReLU between them (a residual) in front of it, where only
exit 5 pays for them. Each block's second conv starts at zero, so the network computes
exactly what it did; its first conv gets He init, so the block has a feature to offer
from the first step, and the zero conv's gradient is not zero.

The new parameters are registered after the heads, so they come last in
``net.parameters()``: Adam's group is extended with their indices and their moments start
at its first step (as for any new parameter). The EMAs get the same starting values.
"""

from __future__ import annotations

import copy
from typing import Any

from rbqe.model import ModelConfig, seeded_net
from rbqe.train.loop import describe_shape

PREFIX = "refine."


def add_refine(state: dict[str, Any], blocks: int, seed: int = 0) -> dict[str, Any]:
    """A copy of the training ``state`` (``rbqe train``'s checkpoint) with ``blocks``
    refine blocks on exit 5; step, schedule and everything learnt kept."""
    cfg = state["config"]
    if cfg.get("refine", 0):
        raise ValueError(f"the state already has {cfg['refine']} refine blocks")
    if blocks < 1:
        raise ValueError(f"blocks must be >= 1, got {blocks}")
    net = seeded_net(ModelConfig(cfg["channels"], cfg["channels"], cfg["width"], blocks), seed)
    new = {k: v for k, v in net.state_dict().items() if k.startswith(PREFIX)}
    if set(net.state_dict()) - set(new) != set(state["model"]):
        raise ValueError(f"not the state of a {describe_shape(cfg['channels'], cfg['width'])} "
                         "network")
    out = copy.deepcopy(state)
    out["model"].update(new)
    group = out["opt"]["param_groups"][0]
    first = len(group["params"])
    group["params"] = list(group["params"]) + list(range(first, first + len(new)))
    for key in ("ema", "ema_slow"):
        if key in out:
            out[key].update({f"module.{k}": v.clone() for k, v in new.items()})
    out["config"] = {**cfg, "refine": blocks}
    return out
