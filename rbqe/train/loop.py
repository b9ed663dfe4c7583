"""The training loop: multi-exit loss, resumable checkpoints, periodic validation.

A checkpoint holds the model, its EMA, the optimiser, the step, the patches seen so far
and the torch RNG state. Batches are a pure function of ``(seed, step)`` (see
:mod:`rbqe.train.data`), so a run that is killed and resumed continues bit-exactly.

Training accumulates over sessions and machines (``weights/training/`` holds the
committed state), so its total length is never known up front. The default schedule is
therefore a constant learning rate after a short warm-up, with an exponential moving
average of the weights for validation and export; the EMA gives most of what a final
decay would without ending the schedule. ``schedule="cosine"`` keeps the old fixed-length
decay for one-off runs.

Weights to ship can come from a *cool-down branch* (``cooldown_steps``): a copy of the
state that decays the learning rate linearly to ``lr_min`` over that many steps and
stops, while the main state goes on at its constant rate (the warm-up, stable, decay
schedule, whose decay can be branched off at any point).
"""

from __future__ import annotations

import json
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, cast

import numpy as np
import torch
import torch.distributed as dist

from rbqe.console import signal_note
from rbqe.errors import UsageError, WeightsError
from rbqe.heap import reuse_freed_memory
from rbqe.io.atomic import atomic_write
from rbqe.model import MULTIPLE, NUM_EXITS, ModelConfig, RBQENet
from rbqe.train.data import (
    GRAY_SHARE,
    LIGHT_SHARE,
    PatchSampler,
    exit_weights,
    jpeg_roundtrip,
    load_folder_images,
    quick_val_pick,
    to_luma,
)
from rbqe.train.parallel import rank_and_world, train_parallel
from rbqe.weights import save_weights

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    train_dirs: list[str]
    out_dir: str = "runs/rbqe"
    val_dirs: list[str] = field(default_factory=list)
    channels: int = 3
    width: int = 32
    refine: int = 0  # exit 5's refine blocks (ModelConfig.refine; scripts/add_refine.py)
    patch: int = 96
    batch: int = 16
    steps: int = 20000
    lr: float = 1e-3
    lr_min: float = 1e-5
    seed: int = 0
    device: str = "cpu"
    channels_last: bool = True
    bf16: bool = False
    threads: int = 0
    loss: str = "mse"  # "mse" (optimises PSNR directly) or "charbonnier"
    checkpoint_every_s: float = 120.0
    val_every: int = 500
    val_images: int = 12
    val_qualities: list[int] = field(default_factory=lambda: [10, 30, 50, 70, 90])
    workers: int = 0  # processes making batches (0 = in the training process)
    procs: int = 1  # CPU data parallelism: ranks sharing each batch (rbqe.train.parallel)
    init_weights: str = ""  # start a new run from these weights instead of He init
    # > 0: after the warm-up, size ``steps`` so that the run ends about this many seconds
    # after it started (the cosine schedule needs its length up front). Fixed once and
    # kept in the checkpoint, so a resumed run follows the same schedule.
    time_budget_s: float = 0.0
    light_share: float = LIGHT_SHARE  # fraction of patches at QF 51-95
    gray_share: float = GRAY_SHARE  # RGB model: fraction of patches made gray
    aligned_share: float = 0.0  # fraction of crops on the photo's JPEG grid (PatchSampler)
    schedule: str = "constant"  # "constant" (extendable) or "cosine" (fixed length)
    ema_decay: float = 0.999  # EMA of the weights, validated and exported; 0 = none
    # > 0: a second, slower EMA beside it (exported as ema_slow.safetensors). It starts
    # from the first EMA when a state without one resumes, so it is useful at once.
    ema_slow_decay: float = 0.0
    init_patches: int = 0  # patches the --init weights had already seen (for the log)
    exit_weighting: str = "paper"  # per-exit loss weights by quality (data.EXIT_WEIGHTINGS)
    # > 0: a cool-down branch: from step ``cooldown_from`` (the step it started at, set
    # then and kept in the checkpoint) the rate falls linearly to ``lr_min`` over this
    # many steps, and the run stops there.
    cooldown_steps: int = 0
    cooldown_from: int = -1
    # > 0: exits 1..N weigh each patch by its input's error (see relative_weights).
    relative_exits: int = 0
    # > 0: the later exits (N+1..5) weigh each patch by that relative weight raised to
    # this power (1: as exits 1..N do; 0: plain MSE). Between the two, light JPEGs count
    # more without heavy ones counting much less.
    relative_late_power: float = 0.0
    # > 0: no relative weight above this many times the batch's mean (then scaled back to
    # mean 1), so that one patch with a small input error (a light JPEG, or smooth
    # content) cannot carry most of the early exits' loss. Measured at 4: exit 5 unchanged.
    relative_cap: float = 0.0
    # > 0: where an exit's output is worse than its input (a larger loss against the
    # target), the excess counts (1 + no_harm) times (see with_no_harm).
    no_harm: float = 0.0
    no_harm_exits: int = 5  # ... on exits 1..this one only


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Per-sample Charbonnier loss, ``(B,)``."""
    return torch.sqrt((pred.float() - target) ** 2 + eps * eps).mean(dim=(1, 2, 3))


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared error, ``(B,)``.

    The L1-like Charbonnier loss kept this net at the identity early on (a zero residual
    is L1-optimal while the net cannot yet predict the error's sign); MSE trains at once.
    """
    return ((pred.float() - target) ** 2).mean(dim=(1, 2, 3))


# Input error below ~48 dB counts as 48 dB, so that a nearly lossless patch cannot take
# over a batch.
RELATIVE_FLOOR = (1.0 / 255.0) ** 2

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def relative_floor(loss_fn: LossFn = mse) -> float:
    """The loss of a 48 dB input (:data:`RELATIVE_FLOOR`) under ``loss_fn``."""
    edge = torch.full((1, 1, 1, 1), RELATIVE_FLOOR ** 0.5)
    return float(loss_fn(edge, torch.zeros_like(edge)))


def relative_weights(x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn = mse,
                     cap: float = 0.0) -> torch.Tensor:
    """``(B,)`` per-patch weights proportional to 1 / the input's own loss, mean 1.

    Under plain MSE a QF 95 patch, whose input is already within ~1/255 of its target,
    weighs ~1/60 of a QF 10 patch, so the early exits never learn to leave light JPEGs
    alone (exit 1 lost 3 dB on gray QF 95). Weighing by the input's loss (1 / MSE under
    MSE, about 1 / mean |error| under Charbonnier) makes each patch count by its relative
    error, as PSNR gain does. The weights average 1 over the batch, so a batch whose
    inputs all have the same error is weighed as before.

    ``cap`` > 0 clips the weights at ``cap`` (after the first scaling to mean 1) and
    scales them back to mean 1: in a batch of 32 at the recipe's quality mix the largest
    weight alone otherwise carries a median 25 % of the early exits' loss (p90 41 %;
    docs/train/relative_cap/batch_weights.py).
    """
    inv = 1.0 / loss_fn(x, y).detach().clamp_min(relative_floor(loss_fn))
    w = inv / inv.mean()
    if cap > 0:
        w = w.clamp_max(cap)
        w = w / w.mean()
    return w


def with_no_harm(losses: torch.Tensor, input_loss: torch.Tensor, factor: float,
                 floor: float = 0.0, exits: int = 5) -> torch.Tensor:
    """Per-patch, per-exit ``losses`` ``(B, 5)`` with the part above the input's own loss
    ``(B,)`` counted ``1 + factor`` times: issue 10 asks that no exit be worse than its
    input at any quality, and at QF 95 exit 1 was (it takes fine texture for compression
    noise). Exits better than their input are unchanged, so are their gradients; so are
    the exits after ``exits``.

    An input better than ~48 dB counts as 48 dB (``floor``, the loss of such an input):
    re-saves of the training photos that are themselves JPEGs are often nearly lossless,
    and any change at all to those would count as harm."""
    if factor <= 0:
        return losses
    excess = torch.relu(losses[:, :exits] - input_loss.detach().clamp_min(floor)[:, None])
    return torch.cat([losses[:, :exits] + factor * excess, losses[:, exits:]], dim=1)


WARMUP_STEPS = 50
MAX_STEPS = 10_000_000
RATE_FROM = 20  # steps of a run left out when its speed is measured for a time budget


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Short linear warm-up, then constant or cosine decay to ``lr_min``; in a cool-down
    branch, linear decay to ``lr_min`` from where it started."""
    warm = WARMUP_STEPS
    if step < warm:
        return cfg.lr * (step + 1) / warm
    if cfg.cooldown_steps > 0 and cfg.cooldown_from >= 0:
        t = min(1.0, max(0, step - cfg.cooldown_from) / cfg.cooldown_steps)
        return cfg.lr + (cfg.lr_min - cfg.lr) * t
    if cfg.schedule == "constant":
        return cfg.lr
    t = min(1.0, (step - warm) / max(1, cfg.steps - warm))
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * t))


SCHEDULES = ("constant", "cosine")


def _ema_model(net: RBQENet, decay: float) -> torch.optim.swa_utils.AveragedModel:
    avg = torch.optim.swa_utils.get_ema_multi_avg_fn(decay)
    return torch.optim.swa_utils.AveragedModel(net, multi_avg_fn=avg, use_buffers=True)


def _ema_net(avg: torch.optim.swa_utils.AveragedModel) -> RBQENet:
    return cast(RBQENet, avg.module)  # the copy of the net that _ema_model averages


def checkpoint_ema(state: dict[str, Any], slow: bool = False) -> RBQENet:
    """The EMA (or slow EMA) network of a loaded training checkpoint, e.g. of a run still
    going on; :class:`UsageError` if the state holds none."""
    key = "ema_slow" if slow else "ema"
    if key not in state:
        raise UsageError(f"the training state holds no {key} weights")
    recipe = state["config"]
    net = RBQENet(ModelConfig(recipe["channels"], recipe["channels"], recipe["width"],
                              recipe.get("refine", 0)))
    # An AveragedModel's state: the network's tensors under "module.", plus its counter.
    net.load_state_dict({k.removeprefix("module."): v for k, v in state[key].items()
                         if k.startswith("module.")})
    return net


def describe_shape(channels: object, width: object, refine: object = 0) -> str:
    """A network's shape in words, for the errors of a state or weights that do not fit."""
    blocks = f" with {refine} refine block{'s' * (refine != 1)}" if refine else ""
    return f"{channels}-channel width-{width}{blocks}"


class Trainer:
    def __init__(self, cfg: TrainConfig, images: list[np.ndarray] | None = None) -> None:
        self.cfg = cfg
        # Rank 0 leads: it alone validates, logs, checkpoints and exports.
        self.rank, self.world = rank_and_world()
        self.lead = self.rank == 0
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = torch.device(cfg.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed patch size: autotune once
        else:
            reuse_freed_memory()  # ~15 % of a CPU step was page faults (rbqe.heap)
        self.out = Path(cfg.out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.seed)
        self.net = RBQENet(ModelConfig(cfg.channels, cfg.channels, cfg.width, cfg.refine))
        if cfg.init_weights:
            self._init_from(Path(cfg.init_weights))
        self.net = self.net.to(self.device)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        # Module.to takes memory_format at runtime; torch's overloads leave it out
        self.net = self.net.to(memory_format=self.memory_format)  # type: ignore[call-overload]
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        if cfg.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {cfg.schedule!r}")
        self.ema = _ema_model(self.net, cfg.ema_decay) if cfg.ema_decay and self.lead else None
        self.ema_slow = (_ema_model(self.net, cfg.ema_slow_decay)
                         if cfg.ema_slow_decay and self.lead else None)
        self.step = 0
        self.patches = cfg.init_patches  # cumulative, across phases and batch sizes
        self.best_val = -math.inf
        self._stop = threading.Event()
        imgs = images if images is not None else load_folder_images(cfg.train_dirs)
        _check_patch(imgs, cfg.patch)
        self.sampler = PatchSampler(imgs, cfg.channels, cfg.patch, cfg.batch, cfg.seed,
                                    cfg.light_share, cfg.gray_share, cfg.aligned_share)
        self.val_set = self._load_val() if cfg.val_dirs and self.lead else []
        self.ckpt = self.out / "checkpoint.pt"
        if self.ckpt.exists():
            self._resume()
        if cfg.cooldown_steps > 0:
            if cfg.cooldown_from < 0:  # the branch starts here; a resume keeps its start
                cfg.cooldown_from = self.step
            cfg.steps = min(cfg.steps, cfg.cooldown_from + cfg.cooldown_steps)
        else:  # a constant-rate run again (--cooldown 0): a later branch starts afresh
            cfg.cooldown_from = -1
        if self.world > 1:  # every rank starts from rank 0's weights
            _collective(list(self.net.parameters()), lambda flat: dist.broadcast(flat, 0))

    def _shape(self) -> str:
        return describe_shape(self.cfg.channels, self.cfg.width, self.cfg.refine)

    def _init_from(self, path: Path) -> None:
        from rbqe.weights import load_weights

        net, _ = load_weights(path)
        given = describe_shape(net.config.in_channels, net.config.width, net.config.refine)
        if given != self._shape():
            raise WeightsError(f"{path}: {given} weights cannot start a {self._shape()} run")
        self.net.load_state_dict(net.state_dict())
        log.info("initialised from %s", path)

    # -- checkpoints -------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        state = {
            "model": self.net.state_dict(),
            "opt": self.opt.state_dict(),
            "step": self.step,
            "patches": self.patches,
            "best_val": self.best_val,
            "torch_rng": torch.get_rng_state(),
            "config": asdict(self.cfg),
        }
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        if self.ema_slow is not None:
            state["ema_slow"] = self.ema_slow.state_dict()
        atomic_write(self.ckpt, lambda fh: torch.save(state, fh))

    def _resume(self) -> None:
        # Our own checkpoint, written by this code: weights_only keeps pickles out.
        state = torch.load(self.ckpt, map_location=self.device, weights_only=True)
        stored = state["config"]
        shape = describe_shape(stored.get("channels"), stored.get("width"),
                               stored.get("refine", 0))
        if shape != self._shape():
            raise WeightsError(f"{self.ckpt}: a {shape} training state cannot resume as "
                               f"{self._shape()}")
        self.net.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.step = int(state["step"])
        # Older checkpoints knew neither: count their patches at the batch they ran with.
        self.patches = int(state.get("patches", self.step * stored.get("batch", self.cfg.batch)))
        if self.ema is not None:
            if "ema" in state:
                self.ema.load_state_dict(state["ema"])
            else:
                self.ema = _ema_model(self.net, self.cfg.ema_decay)
        if self.ema_slow is not None:
            # Same structure as the first EMA: a state without a slow one starts it there.
            slow = state.get("ema_slow", state.get("ema"))
            if slow is not None:
                self.ema_slow.load_state_dict(slow)
        fixed = int(stored.get("steps", MAX_STEPS))
        if self.cfg.schedule == "cosine" and fixed < MAX_STEPS and (
                self.cfg.time_budget_s or self.cfg.steps >= MAX_STEPS):
            # A cosine run's length was fixed when it started (by its budget or --steps):
            # kept unless --steps is given anew. Resumed without --time-budget it used to
            # restart at the peak rate with a 10-million-step schedule, saved as such.
            self.cfg.steps = fixed
        self.best_val = float(state["best_val"])
        torch.set_rng_state(state["torch_rng"].cpu())  # map_location moved it
        log.info("resumed from %s at step %d", self.ckpt, self.step)

    # -- one step ----------------------------------------------------------------------
    def train_step(self, batch: tuple[np.ndarray, ...] | None = None) -> float:
        x_np, y_np, q_np = batch if batch is not None else self.sampler.batch_at(self.step)
        x = torch.as_tensor(x_np).to(self.device)
        y = torch.as_tensor(y_np).to(self.device)
        w = torch.from_numpy(exit_weights(np.asarray(q_np), self.cfg.exit_weighting)).to(self.device)
        loss_fn = mse if self.cfg.loss == "mse" else charbonnier
        k, late_power = self.cfg.relative_exits, self.cfg.relative_late_power
        # Weights and their normaliser come from the whole batch, so that the ranks'
        # slices add up to exactly the one-process loss. The normaliser is the exit
        # weights' alone: the relative weights average 1.
        norm = len(x) * w.sum(1).mean()
        if k or late_power:
            rel = relative_weights(x, y, loss_fn, self.cfg.relative_cap)[:, None]
            late = rel ** late_power  # (1/loss) ** p, up to a constant
            w = torch.cat([w[:, :k] * rel, w[:, k:] * (late / late.mean())], dim=1)
        mine = slice(self.rank * len(x) // self.world, (self.rank + 1) * len(x) // self.world)
        x, y, w = x[mine].contiguous(memory_format=self.memory_format), y[mine], w[mine]
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.cfg, self.step)
        self.net.train()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.bf16):
            outs = self.net(x)
        losses = torch.stack([loss_fn(o, y) for o in outs], dim=1)  # (B, 5)
        if self.cfg.no_harm > 0:  # the input's own loss only when the term is on
            losses = with_no_harm(losses, loss_fn(x, y), self.cfg.no_harm,
                                  relative_floor(loss_fn), self.cfg.no_harm_exits)
        loss = (losses * w).sum() / norm  # this rank's share of the batch's loss
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.world > 1:  # the ranks' slices add up to the batch: sum their gradients
            _collective([p.grad for p in self.net.parameters() if p.grad is not None],
                        dist.all_reduce)
        self.opt.step()
        for avg in (self.ema, self.ema_slow):
            if avg is not None:
                avg.update_parameters(self.net)
        self.step += 1
        self.patches += len(x_np)
        loss = loss.detach()
        if self.world > 1:
            dist.all_reduce(loss)  # the whole batch's loss, for the log
        return float(loss)

    @property
    def eval_net(self) -> RBQENet:
        """The weights to validate and export: the EMA when there is one."""
        return _ema_net(self.ema) if self.ema is not None else self.net

    # -- validation --------------------------------------------------------------------
    def _load_val(self) -> list[np.ndarray]:
        imgs = load_folder_images(self.cfg.val_dirs, what="validation")
        out = []
        for i in quick_val_pick(len(imgs), self.cfg.val_images):
            img = imgs[i]
            h, w = img.shape[0] // MULTIPLE * MULTIPLE, img.shape[1] // MULTIPLE * MULTIPLE
            img = img[:h, :w]
            out.append(np.round(to_luma(img)).astype(np.uint8) if self.cfg.channels == 1 else img)
        return out

    @torch.no_grad()
    def validate(self, net: RBQENet | None = None) -> dict[str, list[float]]:
        """Mean PSNR gain (dB) per exit at each validation quality, of ``net`` (default:
        :attr:`eval_net`)."""
        net = net if net is not None else self.eval_net
        net.eval()
        result: dict[str, list[float]] = {}
        for q in self.cfg.val_qualities:
            gains = np.zeros(NUM_EXITS)
            for clean in self.val_set:
                comp = jpeg_roundtrip(clean, q)
                x = _to_tensor(comp).to(self.device).contiguous(memory_format=self.memory_format)
                base = _psnr(comp.astype(np.float32) / 255, clean.astype(np.float32) / 255)
                outs = net(x)
                for e, o in enumerate(outs):
                    pred = np.round(o.clamp(0, 1).float().cpu().numpy()[0] * 255) / 255
                    pred = pred[0] if pred.shape[0] == 1 else pred.transpose(1, 2, 0)
                    gains[e] += _psnr(pred, clean.astype(np.float32) / 255) - base
            result[str(q)] = list(np.round(gains / len(self.val_set), 3))
        return result

    # -- the loop ----------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to end after the current step, checkpoint and export."""
        self._stop.set()

    def run(self, on_line: Callable[[str], None] | None = None) -> None:
        """Train until ``steps``, the time budget, or :meth:`stop` (SIGTERM in the main
        thread calls it), then checkpoint and export ``last`` (and ``ema``) weights."""
        with _stop_on_sigterm(self):
            self._loop(on_line)
        if not self.lead:
            return
        self.save_checkpoint()
        meta = {"step": str(self.step), "patches": str(self.patches)}
        save_weights(self.net, self.out / "last.safetensors", extra=meta)
        if self.ema is not None:
            save_weights(_ema_net(self.ema), self.out / "ema.safetensors", extra=meta)
        if self.ema_slow is not None:
            save_weights(_ema_net(self.ema_slow), self.out / "ema_slow.safetensors", extra=meta)

    def _loop(self, on_line: Callable[[str], None] | None) -> None:
        cfg = self.cfg
        t_last_ckpt = time.monotonic()
        t0, s0 = time.monotonic(), self.step
        ema_loss = None
        batches = self._batches()
        fixed_length = cfg.schedule == "cosine"
        aside = 0.0  # seconds spent validating and checkpointing since t0
        if self.val_set and not (self.out / "train_log.jsonl").exists():
            self._validate_and_log(None, 0.0, on_line)  # where the curve starts
            aside = time.monotonic() - t0
        budget_set = not (cfg.time_budget_s and fixed_length) or self.step >= WARMUP_STEPS
        t_rate = t0
        while True:
            over = (cfg.time_budget_s and not fixed_length
                    and time.monotonic() - t0 >= cfg.time_budget_s)
            if not self._agree(self.step < cfg.steps and not self._stop.is_set() and not over):
                break
            loss = self.train_step(next(batches))
            if self.step - s0 == RATE_FROM:  # the first steps pay for start-up
                t_rate = time.monotonic()
            if (not budget_set and self.step >= WARMUP_STEPS and self.step - s0 > RATE_FROM
                    and time.monotonic() - t_rate > min(10.0, 0.05 * cfg.time_budget_s)):
                budget_set = True
                rate = (self.step - s0 - RATE_FROM) / max(time.monotonic() - t_rate, 1e-9)
                self._fit_budget(rate, cfg.time_budget_s - (time.monotonic() - t0), on_line)
            ema_loss = loss if ema_loss is None else 0.98 * ema_loss + 0.02 * loss
            now = time.monotonic()
            # Training steps per second: the time spent validating and checkpointing is
            # left out (counted in, "0.45 steps/s" was shown where training ran at 3).
            rate = (self.step - s0) / max(now - t0 - aside, 1e-9)
            if on_line and (self.step % 10 == 0 or self.step == cfg.steps):
                if cfg.time_budget_s and not fixed_length:
                    eta = f" ETA {_hms(cfg.time_budget_s - (now - t0))}"
                elif cfg.steps < MAX_STEPS:
                    eta = f" ETA {_hms((cfg.steps - self.step) / max(rate, 1e-9))}"
                else:
                    eta = ""  # open-ended: runs until stopped
                on_line(f"step {self.step} ({self.patches:,} patches) loss {ema_loss:.5f} "
                        f"{rate:.2f} steps/s{eta}")
            if self.val_set and (self.step % cfg.val_every == 0 or self.step == cfg.steps):
                self._validate_and_log(ema_loss, rate, on_line)
                t_last_ckpt = time.monotonic()
                aside += t_last_ckpt - now
            elif self.lead and now - t_last_ckpt > cfg.checkpoint_every_s:
                self.save_checkpoint()
                t_last_ckpt = time.monotonic()
                aside += t_last_ckpt - now

    def _agree(self, go: bool) -> bool:
        """Whether to take another step, as rank 0 decides (its stop signal, time budget
        and ``steps``, which the ranks adopt); alone, ``go`` itself."""
        if self.world == 1:
            return go
        said = torch.tensor([int(go), self.cfg.steps], dtype=torch.int64)
        dist.broadcast(said, 0)
        self.cfg.steps = int(said[1])
        return bool(said[0])

    def _validate_and_log(self, loss: float | None, rate: float,
                          on_line: Callable[[str], None] | None) -> None:
        """Validate (the EMA and the raw weights), append to the log, keep the best."""
        threads = torch.get_num_threads()
        torch.set_num_threads(threads * self.world)  # the other ranks wait meanwhile
        try:
            gains = self.validate()
            entry: dict[str, object] = {"step": self.step, "patches": self.patches,
                                        "loss": loss, "val_gain_db": gains}
            if self.ema is not None and loss is not None:  # what the EMA buys (none at start)
                entry["val_gain_db_raw"] = self.validate(self.net)
            if self.ema_slow is not None and loss is not None:
                entry["val_gain_db_slow"] = self.validate(_ema_net(self.ema_slow))
        finally:
            torch.set_num_threads(threads)
        entry.update({"steps_per_s": rate, "batch": self.cfg.batch, "patch": self.cfg.patch,
                      "width": self.cfg.width, "lr": lr_at(self.cfg, self.step),
                      "time": time.time()})
        with open(self.out / "train_log.jsonl", "a") as f:
            f.write(json.dumps(entry) + "\n")
        if on_line:
            on_line(f"val step {self.step}: " + json.dumps(gains))
        score = float(np.mean([v[-1] for v in gains.values()]))
        if score > self.best_val:
            self.best_val = score
            save_weights(self.eval_net, self.out / "best.safetensors",
                         extra={"step": str(self.step), "patches": str(self.patches),
                                "val_gain_db": gains})
        self.save_checkpoint()

    def _fit_budget(self, rate: float, seconds_left: float,
                    on_line: Callable[[str], None] | None) -> None:
        """Set the schedule's length from the measured speed and the time left."""
        # Validation and checkpoints cost time too: aim a little short.
        self.cfg.steps = self.step + max(1, int(0.93 * rate * seconds_left))
        msg = (f"time budget {self.cfg.time_budget_s:.0f} s at {rate:.2f} steps/s: "
               f"{self.cfg.steps} steps")
        log.info(msg)
        if on_line:
            on_line(msg)

    def _batches(self) -> Iterator[tuple[np.ndarray, ...]]:
        """Batches for the steps from ``self.step`` on, in order. With workers, a
        DataLoader makes them in other processes; each is still ``batch_at(step)``.
        The iterator runs to ``MAX_STEPS`` because a time budget may move ``steps``."""
        if not self.cfg.workers:
            while True:
                yield self.sampler.batch_at(self.step)
        loader = torch.utils.data.DataLoader(
            _StepBatches(self.sampler, self.step, max(self.cfg.steps, MAX_STEPS)),
            batch_size=None, num_workers=self.cfg.workers, prefetch_factor=4,
            pin_memory=self.device.type == "cuda", worker_init_fn=_leave_sigterm_to_main)
        yield from loader


def _leave_sigterm_to_main(_worker: int) -> None:
    """A batch worker ignores SIGTERM (and SIGINT): the main process stops the run and
    ends its workers.
    A SIGTERM to the whole group (docker stop, systemd, ``kill -- -PGID``) killed the
    workers first, and the main process died on "DataLoader worker ... is killed by
    signal: Terminated" before it could save the state (as the --procs ranks do)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C: the same


def _check_patch(images: list[np.ndarray], patch: int) -> None:
    """Every training photo must hold a ``patch`` crop: a batch stacks crops of one size
    (a smaller photo failed it with "all input arrays must have the same shape").

    Raises:
        UsageError: Saying how many photos are too small, the smallest, and what fits.
    """
    small = [img.shape[:2] for img in images if min(img.shape[:2]) < patch]
    if small:
        h, w = min(small, key=min)
        fits = min(h, w) // 32 * 32
        raise UsageError(f"--patch {patch} is larger than {len(small)} of the "
                         f"{len(images)} training photos (the smallest is {w} x {h}); use "
                         f"--patch {fits} or less, or leave those photos out")


class _StepBatches(torch.utils.data.Dataset):
    def __init__(self, sampler: PatchSampler, start: int, stop: int) -> None:
        self.sampler, self.start, self.stop = sampler, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.sampler.batch_at(self.start + i)


def stored_config(out_dir: str | Path) -> dict[str, object]:
    """The config (plus ``step``) of the training state in ``out_dir``; ``{}`` if none."""
    ckpt = Path(out_dir) / "checkpoint.pt"
    if not ckpt.is_file():
        return {}
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    return {**state["config"], "step": int(state["step"])}


class _stop_on_sigterm:
    """While active in the main thread, SIGTERM stops the trainer cleanly (a killed
    background run or a timed-out GPU job still leaves its checkpoint and weights), and
    so does a first Ctrl-C (it used to abort, losing everything since the last
    checkpoint); a second Ctrl-C aborts at once."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.previous: dict[int, Callable[[int, FrameType | None], Any] | int | None] = {}

    def _interrupt(self, *_: object) -> None:
        if self.trainer._stop.is_set():
            raise KeyboardInterrupt
        signal_note("\nrbqe train: stopping after this step and saving the state (Ctrl-C "
                    "again to abort without saving)")
        self.trainer.stop()

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self.previous[signal.SIGTERM] = signal.signal(signal.SIGTERM,
                                                          lambda *_: self.trainer.stop())
            self.previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._interrupt)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


@torch.no_grad()
def _collective(tensors: list[torch.Tensor], op: Callable[[torch.Tensor], object]) -> None:
    """Run a collective ``op`` on ``tensors`` in place, as one flat buffer (one message
    instead of one per layer; the copies also drop channels_last strides gloo can't take)."""
    flat = torch.cat([t.reshape(-1) for t in tensors])
    op(flat)
    offset = 0
    for t in tensors:
        t.copy_(flat[offset:offset + t.numel()].view(t.shape))
        offset += t.numel()


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    arr = img.astype(np.float32) / 255.0
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(arr))[None]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def _hms(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def train(cfg: TrainConfig, on_line: Callable[[str], None] | None = None,
          images: Sequence[np.ndarray] | None = None) -> Trainer:
    imgs = list(images) if images is not None else None
    if cfg.procs > 1:
        return train_parallel(cfg, on_line, imgs)
    trainer = Trainer(cfg, imgs)
    trainer.run(on_line)
    return trainer
