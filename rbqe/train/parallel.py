"""Data-parallel training on one machine: ``procs`` processes share every batch.

A small net's step is partly serial (thousands of small ops, each dispatched in turn), so
a second torch thread buys less than a second process. On the 2-core dev VM (batch 32 of
64 px, bf16, steady state, measured in turns in one sitting): one process with two
threads made 1.36-1.47 steps/s, two one-thread ranks 1.40-1.68, and at batch 64 one
process 0.42 against two ranks' 0.80. Every rank draws the same batch (``batch_at(step)``
is a pure function of the step), computes the loss of its own slice, and the gradients
are summed over the ranks, so the run takes the same updates as one process would, up to
rounding.

Rank 0 runs in the calling process: it owns the log, validation, checkpoints, signals
(SIGTERM stops it cleanly) and the decision to go on, which the other ranks follow
(:meth:`rbqe.train.loop.Trainer._agree`). They are spawned fresh and ignore SIGTERM and
SIGINT, so that stopping the run never leaves a rank waiting for a peer mid-step.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

if TYPE_CHECKING:
    from rbqe.train.loop import TrainConfig, Trainer

# Long enough for rank 0 to validate or load a large photo folder between two steps.
TIMEOUT = datetime.timedelta(minutes=30)
HOST = "127.0.0.1"


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)`` of this process; ``(0, 1)`` outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def per_rank_threads(cfg: TrainConfig) -> int:
    """Torch threads per rank: ``cfg.threads``, else the cores shared out (at least 1)."""
    return cfg.threads or max(1, (os.cpu_count() or 1) // cfg.procs)


def train_parallel(cfg: TrainConfig, on_line: Callable[[str], None] | None,
                   images: list[np.ndarray] | None) -> Trainer:
    """Run ``cfg.procs`` ranks; return rank 0's trainer once all have finished."""
    from rbqe.train.loop import Trainer

    if torch.device(cfg.device).type != "cpu":
        raise ValueError("procs > 1 is data parallelism for CPU training; "
                         "a GPU runs one process")
    cfg = replace(cfg, threads=per_rank_threads(cfg))
    # Rank 0's store binds an ephemeral port and holds it, so no other process can take
    # the port between choosing it and listening on it (as one freed and re-bound could).
    store = dist.TCPStore(HOST, 0, world_size=cfg.procs, is_master=True, timeout=TIMEOUT,
                          wait_for_workers=False)
    followers = mp.start_processes(_follow, args=(cfg, store.port, images),
                                   nprocs=cfg.procs - 1, join=False, start_method="spawn")
    try:
        dist.init_process_group("gloo", store=store, rank=0, world_size=cfg.procs,
                                timeout=TIMEOUT)
        with _membership():
            trainer = Trainer(cfg, images)
            trainer.run(on_line)
    except BaseException:
        for proc in followers.processes:  # nobody is left to lead them
            proc.kill()
        raise
    while not followers.join():
        pass
    return trainer


def _follow(index: int, cfg: TrainConfig, port: int,
            images: list[np.ndarray] | None) -> None:
    from rbqe.train.loop import Trainer

    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # rank 0 decides when to stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    store = dist.TCPStore(HOST, port, world_size=cfg.procs, is_master=False, timeout=TIMEOUT)
    dist.init_process_group("gloo", store=store, rank=index + 1, world_size=cfg.procs,
                            timeout=TIMEOUT)
    with _membership():
        Trainer(cfg, images).run(None)


@contextlib.contextmanager
def _membership() -> Iterator[None]:
    """Leave the process group when the body ends. After a clean run every rank first
    waits for the others at a barrier: a rank that tore its connections down while rank 0
    was still exporting could abort in gloo's threads (seen once in CI: a follower killed
    by SIGABRT, "terminate called without an active exception"). After an error nobody
    waits, since a peer may never come."""
    try:
        yield
    except BaseException:
        dist.destroy_process_group()
        raise
    dist.barrier()
    dist.destroy_process_group()

