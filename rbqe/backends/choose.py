"""``--backend auto`` on the CPU: the fastest candidate, measured once per machine.

Which CPU backend is fastest depends on the CPU more than on anything we can read from it:
on one AVX512-BF16 EPYC the torch fast path ran all five exits 2.6x faster than OpenVINO
(f32) and its bf16 mode 2x faster again, while an earlier VM measured OpenVINO bf16 ahead
(see the README). So ``auto`` times each candidate on a probe image the first time it
runs on a machine and remembers the winner in ``<cache>/backend_choice.json``, keyed by
what the timing depends on: CPU model, thread count, library versions and the network's
shape (not its weights, so new weights do not re-measure). Delete the file to measure again.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from rbqe.arch import NUM_EXITS
from rbqe.backends.cache import cache_root
from rbqe.io.atomic import write_bytes_atomic

if TYPE_CHECKING:
    from rbqe.backends import Backend
    from rbqe.model import RBQENet

log = logging.getLogger(__name__)

CHOICE_FILE = "backend_choice.json"
PROBE_SIDE = 384  # big enough for the fast path's row stripes, small enough for ~1 s a try
PROBE_RUNS = 3  # timed runs per candidate, after one warm-up; the fastest counts


@dataclass(frozen=True)
class Candidate:
    backend: str  # "torch" or "openvino"
    precision: str  # "f32" or "bf16"

    @property
    def label(self) -> str:
        return f"{self.backend} {self.precision}"


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, else ``platform.processor``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_key(net: RBQENet, candidates: list[Candidate]) -> str:
    """What a measured choice depends on; a stored choice is reused only under the same key."""
    versions = [f"torch {torch.__version__}"]
    if any(c.backend == "openvino" for c in candidates):
        import openvino as ov

        versions.append(f"openvino {ov.get_version().split('-')[0]}")
    cfg = net.config
    shape = f"net {cfg.in_channels}-{cfg.width}-{cfg.out_channels}"
    if cfg.refine:  # (only then: the keys users' caches hold stay valid)
        shape += f" refine {cfg.refine}"
    return " | ".join([cpu_model(), f"{os.cpu_count()} cpus", f"{torch.get_num_threads()} threads",
                       *versions, shape,
                       "candidates " + ", ".join(c.label for c in candidates)])


def choice_path(cache_dir: Path | None = None) -> Path:
    return (cache_dir or cache_root()) / CHOICE_FILE


def stored_choice(key: str, cache_dir: Path | None = None) -> dict | None:
    """The choice measured before under ``key``, or None (also for an unreadable file)."""
    try:
        entries = json.loads(choice_path(cache_dir).read_text(encoding="utf-8"))
        entry = entries.get(key) if isinstance(entries, dict) else None
    except (OSError, ValueError):
        return None
    return entry if isinstance(entry, dict) and "backend" in entry else None


def store_choice(key: str, entry: dict, cache_dir: Path | None = None) -> None:
    """Adds ``entry`` under ``key`` (atomically; a read-only cache only logs)."""
    path = choice_path(cache_dir)
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(entries, dict):
            entries = {}
    except (OSError, ValueError):
        entries = {}
    entries[key] = entry
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, json.dumps(entries, indent=1).encode())
    except OSError as exc:
        log.warning("could not remember the backend choice in %s: %s", path, exc)


def probe_image(channels: int, side: int = PROBE_SIDE) -> torch.Tensor:
    """A smooth deterministic test card (photo-like values; timing barely depends on them)."""
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(1, channels, side // 32, side // 32, generator=g)
    x = torch.nn.functional.interpolate(coarse, size=(side, side), mode="bilinear",
                                        align_corners=False)
    return x.contiguous(memory_format=torch.channels_last)


def all_exits_once(backend: Backend, x: torch.Tensor) -> float:
    """Seconds for all five exits of ``x``, one run."""
    with torch.inference_mode():
        t0 = time.perf_counter()
        run = backend.start(x, fast=True)
        for _ in range(NUM_EXITS):
            run.next_exit()
        return time.perf_counter() - t0


def time_candidates(backends: dict[str, Backend], x: torch.Tensor,
                    runs: int = PROBE_RUNS, *, warm_up: bool = True) -> dict[str, float]:
    """The fastest of ``runs`` timings (seconds) per backend, after one warm-up run each
    (unless ``warm_up`` is False: the caller ran them).

    Taken in turns (a, b, c, a, b, c, ...) and the minimum kept, so that another program
    loading the machine for a while slows every candidate alike, instead of picking the
    one that happened to run while the machine was quiet.
    """
    for backend in backends.values() if warm_up else ():
        all_exits_once(backend, x)
    best = {label: float("inf") for label in backends}
    for _ in range(runs):
        for label, backend in backends.items():
            best[label] = min(best[label], all_exits_once(backend, x))
    return best


def fastest(net: RBQENet, candidates: list[Candidate],
            build: Callable[[Candidate], Backend], *,
            cache_dir: Path | None = None) -> tuple[Backend, dict]:
    """The fastest of ``candidates`` (built by ``build``) and its record; measured and
    stored on first use, read back after. A candidate that fails to build or run is
    skipped (logged); if every one fails, the last error is raised."""
    key = machine_key(net, candidates)
    entry = stored_choice(key, cache_dir)
    if entry is not None:
        chosen = Candidate(entry["backend"], entry["precision"])
        if chosen in candidates:
            try:
                return build(chosen), entry
            except Exception as exc:  # noqa: BLE001 - e.g. OpenVINO's cache removed
                log.warning("the stored backend choice (%s) failed, measuring again: %s",
                            chosen.label, exc)
    log.info("first run on this computer: timing %s to pick the fastest (once)",
                ", ".join(c.label for c in candidates))
    x = probe_image(net.config.in_channels)
    built: dict[Candidate, Backend] = {}
    error: Exception | None = None
    for cand in candidates:
        try:
            backend = built[cand] = build(cand)
            all_exits_once(backend, x)  # the warm-up: fails here rather than mid-measurement
        except Exception as exc:  # noqa: BLE001 - any failure: not a candidate here
            log.warning("backend %s unavailable: %s", cand.label, exc)
            built.pop(cand, None)
            error = exc
    if not built:
        assert error is not None
        raise error
    seconds = time_candidates({c.label: b for c, b in built.items()}, x, warm_up=False)
    cand = min(built, key=lambda c: seconds[c.label])
    backend = built[cand]
    ms = {c.label: round(seconds[c.label] * 1000, 1) if c in built else None
          for c in candidates}
    entry = {"backend": cand.backend, "precision": cand.precision,
             "runs_at": f"{backend.name} {backend.precision}",
             "probe": f"all {NUM_EXITS} exits at {x.shape[-1]}x{x.shape[-2]}, "
                      f"fastest of {PROBE_RUNS} runs, ms",
             "ms": ms, "measured": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    store_choice(key, entry, cache_dir)
    log.info("backend: %s (all five exits at %d px: %s)", entry["runs_at"], x.shape[-1],
                ", ".join(f"{k} {v} ms" for k, v in ms.items() if v is not None))
    return backend, entry
