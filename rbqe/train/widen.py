"""Widen a trained network (more channels at every node) without starting over.

The width-32 net stopped gaining on val while its training gain matched its val gain
(docs/train, nineteenth session): it is at its capacity. A wider net trained from scratch
would need the 5M+ patches again; widening keeps what was learnt (Net2Net, Chen et al.,
ICLR 2016, in its zero-init form):

- a new channel's *incoming* weights are random (He init, as a fresh net's), so it
  computes a feature from the first step on;
- its *outgoing* weights are zero, so nothing the old channels compute changes. Its
  gradient is not zero (the feature is), so training recruits it.

Each node's new channels go after its old ones. Every conv then sees its old inputs with
their old weights, except in one place: ECA's 1-D conv slides over the concatenated
channel means, so an old channel next to a node boundary gets a new neighbour (whose mean
is not its old neighbour's). That moves the output a little; :func:`widen_state` leaves
the measuring to the caller (scripts/widen_state.py prints it).

Adam's moments widen the same way, the mean at new entries zero. The mean square decides
how fast each new entry moves, since Adam divides by its root:

- where an old channel reads a new one, the gradient is of the old entries' scale (an old
  output's gradient times a feature of He scale): it starts at the old entries' mean;
- a new channel's own weights (incoming, bias, depthwise) get a gradient scaled by its
  outgoing weights, zero at first: it starts at zero, as Adam starts any new parameter.
  Started at the old mean instead (the first widening, of the state at step 157,567),
  they moved half as far as the old weights did (RMS change 1.35e-3 over the next 1,664
  steps; the old weights 2.65e-3 over 1,854 from the nearest stored state). At zero,
  with the bias correction long since 1 at this step, they move by up to 3-6x the rate
  for their first hundred steps, while nothing reads them yet.

The step, schedule and EMA go on. The EMAs get the same new channels as the model, so
they average one network.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rbqe.model import ModelConfig, RBQENet, seeded_net


def _channel_map(old: int, new: int, old_width: int, new_width: int) -> torch.Tensor:
    """Where each of ``old`` channels lands in a dimension of ``new``: the dimension holds
    ``old // old_width`` nodes side by side (a concatenation) and each keeps its channels
    at the start of its wider block. A dimension that did not grow maps to itself."""
    if old == new:
        return torch.arange(old)
    blocks = old // old_width
    if blocks * old_width != old or blocks * new_width != new:
        raise ValueError(f"a dimension of {old} channels cannot grow to {new} "
                         f"(widths {old_width} -> {new_width})")
    c = torch.arange(old)
    return (c // old_width) * new_width + c % old_width


def _roles(net: RBQENet) -> dict[str, tuple[int, int]]:
    """``{weight name: (output dim, input dim)}`` of every conv in ``net``."""
    roles = {}
    for name, m in net.named_modules():
        if isinstance(m, nn.ConvTranspose2d):  # weight (in, out, kh, kw)
            roles[f"{name}.weight"] = (1, 0)
        elif isinstance(m, nn.Conv2d):  # weight (out, in / groups, kh, kw)
            roles[f"{name}.weight"] = (0, 1)
    return roles


def _place(old: torch.Tensor, into: torch.Tensor, name: str,
           roles: dict[str, tuple[int, int]], old_width: int, new_width: int) -> torch.Tensor:
    """``into`` (a tensor of parameter ``name``'s wide shape) with ``old``'s entries written
    at their places (each node's old channels first in its wider block)."""
    if name in roles:  # a conv weight: old channels on both its channel dims
        d_out, d_in = roles[name]
        rows = _channel_map(old.shape[d_out], into.shape[d_out], old_width, new_width)
        cols = _channel_map(old.shape[d_in], into.shape[d_in], old_width, new_width)
        into.movedim((d_out, d_in), (0, 1))[rows[:, None], cols[None, :]] = old.movedim(
            (d_out, d_in), (0, 1))
    elif into.dim() == 1:  # a bias
        into[_channel_map(old.shape[0], into.shape[0], old_width, new_width)] = old
    else:  # ECA's 1-D conv: not per channel
        into.copy_(old)
    return into


def _widen_moment(old: torch.Tensor, like: torch.Tensor, name: str,
                  roles: dict[str, tuple[int, int]], old_width: int, new_width: int,
                  square: bool) -> torch.Tensor:
    """An Adam moment of parameter ``name`` at its wide shape (see the module's notes)."""
    w = torch.zeros(like.shape, dtype=old.dtype, device=old.device)
    if square and name in roles:  # old channels reading new ones: the old entries' scale
        d_out, _ = roles[name]
        w.movedim(d_out, 0)[_channel_map(old.shape[d_out], like.shape[d_out], old_width,
                                         new_width)] = old.mean()
    return _place(old, w, name, roles, old_width, new_width)


def widen_weights(old: dict[str, torch.Tensor], fresh: dict[str, torch.Tensor],
                  roles: dict[str, tuple[int, int]], old_width: int, new_width: int
                  ) -> dict[str, torch.Tensor]:
    """A wide state dict: ``old``'s values at their places in ``fresh`` (a newly
    initialised wide net's state dict, which supplies the new channels' incoming
    weights), zero where a new channel feeds an old one."""
    out = {}
    for name, f in fresh.items():
        if name in roles:
            w = f.clone()
            d_out, _ = roles[name]
            rows = _channel_map(old[name].shape[d_out], f.shape[d_out], old_width, new_width)
            w.movedim(d_out, 0)[rows] = 0  # an old output channel reads its old inputs only
        else:
            w = torch.zeros_like(f)  # biases: new channels start at zero
        out[name] = _place(old[name].to(f.dtype), w, name, roles, old_width, new_width)
    return out


def widen_net(net: RBQENet, new_width: int, seed: int = 0) -> RBQENet:
    """A ``new_width`` copy of ``net`` that computes the same output (up to the ECA
    neighbours described above)."""
    cfg = net.config
    wide = seeded_net(ModelConfig(cfg.in_channels, cfg.out_channels, new_width), seed)
    wide.load_state_dict(widen_weights(net.state_dict(), wide.state_dict(), _roles(wide),
                                       cfg.width, new_width))
    return wide


def widen_state(state: dict[str, Any], new_width: int, seed: int = 0) -> dict[str, Any]:
    """A training state (``rbqe train``'s checkpoint) whose model, EMAs and Adam moments
    are ``new_width`` wide; step, patches, schedule and RNG go on."""
    recipe = state["config"]
    old_width = int(recipe["width"])
    if new_width <= old_width:
        raise ValueError(f"width {new_width} is not wider than the state's {old_width}")
    wide = seeded_net(ModelConfig(recipe["channels"], recipe["channels"], new_width), seed)
    fresh, roles = wide.state_dict(), _roles(wide)
    out = dict(state)
    out["model"] = widen_weights(state["model"], fresh, roles, old_width, new_width)
    for key in ("ema", "ema_slow"):
        if key in state:  # an AveragedModel's state: the net under "module.", a counter
            avg = state[key]
            net_sd = {k.removeprefix("module."): v for k, v in avg.items()
                      if k.startswith("module.")}
            widened = widen_weights(net_sd, fresh, roles, old_width, new_width)
            out[key] = {**{k: v for k, v in avg.items() if not k.startswith("module.")},
                        **{f"module.{k}": v for k, v in widened.items()}}
    names = [n for n, _ in wide.named_parameters()]  # Adam keys its state by this order
    opt = {"param_groups": state["opt"]["param_groups"], "state": {}}
    for index, moments in state["opt"]["state"].items():
        name = names[index]
        opt["state"][index] = {
            k: _widen_moment(v, fresh[name], name, roles, old_width, new_width, k == "exp_avg_sq")
            if k in ("exp_avg", "exp_avg_sq") else v for k, v in moments.items()}
    out["opt"] = opt
    out["config"] = {**recipe, "width": new_width}
    return out
