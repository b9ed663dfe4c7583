"""GPU benchmark of the RBQE engine (a script, not a test), sized for a ~100 s device slot.

Measures, with the shipped weights and the path a user gets (``Enhancer(device="cuda")``:
torch module path under fp16 autocast, cudnn.benchmark), on a synthetic photo (gradients,
ripples, hard-edged shapes, grain) JPEG-compressed by OpenCV at QF 20 and read back with
:func:`rbqe.io.load_image` so that auto's gate policy sees the file's JPEG tables:

1. Engine throughput (MP/s, pixels in to pixels out) at 512x512 for ``auto`` (and the exit
   auto chose) and exit 5. The engine takes one image per call, so also the network alone
   (no IQA, colour or copies) at batch 1, 8 and 32: to exit 5 and to auto's exit; and
   ``Enhancer.enhance_many`` on 8 and 32 different photos (JPEG QF 10-90) against
   ``enhance`` of each in turn: what batching gives a folder of small pictures.
2. Engine throughput on a 12 MP image (4000x3000), default tiling, auto and exit 5
   (``--big-tiles 1024 2048 0``: at each of those tile sides, 0 = untiled); under auto
   the tiles walk ``tile_batch`` at a time (:attr:`rbqe.engine.Enhancer.tile_batch`).
   Each engine row splits the last call's time into the network's stages, the assessor
   and the rest (uploads, copies to the host, colour, finishing, blending).
3. Peak CUDA memory (``torch.cuda.max_memory_allocated``) of each of those: of the timed
   calls, and of the first call (with cudnn's autotuning of new shapes).
4. The out-of-memory retry on a 2048x1536 image run untiled: forced by capping the
   process's CUDA memory at half of the untiled run's peak
   (``set_per_process_memory_fraction``); if that triggers no retry, by making the first
   attempt raise ``torch.OutOfMemoryError`` (the CPU's only way). Reports the retries, the
   tile the retry ended on and max |diff| against a normal run at that tile.

torch.compile and CUDA graphs are not measured: the engine uses neither.

Timing: ``torch.cuda.synchronize`` around every sample, warm-up first; best and median of
``--repeat`` samples (512x512: each sample is ``--inner`` calls), a case stops repeating
after ``--case-s`` seconds. Every figure is printed (flushed) and written to ``--json`` as
soon as it is measured, so a run killed by ``timeout`` keeps what it had.

Usage::

    python benchmarks/bench_gpu.py --json gpu.json              # on the CUDA machine
    OMP_NUM_THREADS=1 python benchmarks/bench_gpu.py --device cpu --quick   # rehearsal:
        # 128x128 and 512x384 (tile 256), OOM test at 512x384, 1 repeat
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_engine import photo, sync, table  # noqa: E402

from rbqe import whole  # noqa: E402
from rbqe.engine import Enhancer  # noqa: E402
from rbqe.exit_policy import ExitMode, JpegPrior  # noqa: E402
from rbqe.io import load_image  # noqa: E402
from rbqe.model import NUM_EXITS  # noqa: E402
from rbqe.weights import PACKAGE_WEIGHTS  # noqa: E402


class Report:
    """Rows printed as they come and the whole JSON rewritten after each one."""

    def __init__(self, path: Path | None, meta: dict[str, Any]) -> None:
        self.path, self.t0 = path, time.perf_counter()
        self.data: dict[str, Any] = {"meta": meta, "engine": [], "batch": [], "network": [],
                                      "oom": None}
        self.save()

    def add(self, section: str, row: dict[str, Any]) -> None:
        if section == "oom":
            self.data["oom"] = row
        else:
            self.data[section].append(row)
        row["t_s"] = round(time.perf_counter() - self.t0, 1)  # since start: for timeouts
        print(f"  [{section}] " + ", ".join(f"{k}={_short(v)}" for k, v in row.items()),
              flush=True)
        self.save()

    def save(self) -> None:
        if self.path:
            tmp = self.path.with_name(self.path.name + ".part")
            tmp.write_text(json.dumps(self.data, indent=1, default=str))
            os.replace(tmp, self.path)


def _short(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def scene(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A photo-like uint8 RGB picture: bench_engine's gradients and ripples, plus flat
    shapes with hard edges, a fine stripe texture and per-pixel grain."""
    img = photo(h, w, 3, seed)
    rng = np.random.default_rng(seed)
    yy, xx = np.ogrid[:h, :w]
    s = min(h, w)
    for cy, cx, r, col in ((0.3, 0.25, 0.18, (0.9, 0.2, 0.1)), (0.65, 0.7, 0.22, (0.1, 0.3, 0.8)),
                           (0.75, 0.2, 0.1, (0.95, 0.95, 0.9))):
        img[(yy - cy * h) ** 2 + (xx - cx * w) ** 2 < (r * s) ** 2] = col
    img[int(0.1 * h): int(0.35 * h), int(0.55 * w): int(0.9 * w)] = (0.15, 0.6, 0.2)
    band = img[int(0.45 * h): int(0.6 * h), int(0.05 * w): int(0.5 * w)]
    band += 0.15 * np.sin(1.3 * np.arange(band.shape[1], dtype=np.float32))[None, :, None]
    img += rng.normal(0, 0.02, (h, w, 1)).astype(np.float32)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def jpeg_input(h: int, w: int, qf: int, folder: str) -> tuple[np.ndarray, JpegPrior | None]:
    """:func:`scene` through an OpenCV JPEG at ``qf``, read back as a user's file is."""
    path = os.path.join(folder, f"scene_{w}x{h}_q{qf}.jpg")
    cv2.imwrite(path, cv2.cvtColor(scene(h, w), cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, qf])
    src = load_image(path, max_pixels=None)
    return src.pixels, JpegPrior.of(src)


def timed(fn: Callable[[], object], dev: torch.device, repeat: int, inner: int,
          case_s: float) -> dict[str, Any]:
    """Warm-up, then up to ``repeat`` samples of ``inner`` calls (synchronized), stopping
    once the samples took ``case_s``: best and median ms per call, CUDA peak MB of the
    timed calls and of the warm-up (which has cudnn's autotuning of new shapes)."""
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    fn()
    sync(dev)
    first = torch.cuda.max_memory_allocated(dev) / 2**20 if cuda else None
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    samples: list[float] = []
    while len(samples) < repeat and (not samples or sum(samples) * inner / 1000 < case_s):
        sync(dev)
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        sync(dev)
        samples.append((time.perf_counter() - t0) * 1000 / inner)
    peak = torch.cuda.max_memory_allocated(dev) / 2**20 if cuda else None
    return {"best_ms": min(samples), "median_ms": statistics.median(samples),
            "samples": len(samples), "peak_mb": peak, "peak_first_mb": first}


def engine_case(rep: Report, enh: Enhancer, label: str, img: np.ndarray,
                prior: JpegPrior | None, args: argparse.Namespace, inner: int) -> int:
    """Times ``enh.enhance`` in auto and exit 5; returns the exit auto chose."""
    mp = img.shape[0] * img.shape[1] / 1e6
    chosen = NUM_EXITS
    for mode in ("auto", 5):
        last: list[Any] = []

        def call(mode: ExitMode = mode, last: list[Any] = last) -> None:
            last.append(enh.enhance(img, mode, prior=prior))
            del last[:-1]

        t = timed(call, enh.device, args.repeat, inner, args.case_s)
        res = last[-1]
        chosen = res.chosen if mode == "auto" else chosen
        hist = res.tile_exits.histogram if res.tile_exits else None
        # Where the last call's time went: the network's stages, the assessor (and the
        # policy's signals), and the rest (input upload, output copies to the host,
        # colour and finishing, tiling's blend), from the engine's own timers.
        net_ms = sum(e.time_ms for e in res.exits)
        iqa_ms = sum(e.iqa_ms for e in res.exits)
        split = {"net_ms": net_ms, "iqa_ms": iqa_ms,
                 "other_ms": res.total_ms - net_ms - iqa_ms}
        rep.add("engine", {"case": label, "mode": mode, "exit": res.chosen, "tiles": res.tiles,
                           "tile": res.tile_size, "tile_batch": enh.tile_batch,
                           "tile_exits": hist, **t, **split,
                           "mp_s": mp / t["best_ms"] * 1000,
                           "mp_s_median": mp / t["median_ms"] * 1000})
    return chosen


def batch_case(rep: Report, enh: Enhancer, size: tuple[int, int], sizes: tuple[int, ...],
               folder: str, args: argparse.Namespace) -> None:
    """Times ``enh.enhance_many`` on B different photos (seeds, JPEG QF 10-90: each may
    stop at its own exit) against ``enh.enhance`` of each, in auto and exit 5."""
    qfs = (10, 20, 30, 50, 70, 90)
    photos = []
    for i in range(max(sizes)):
        path = os.path.join(folder, f"batch_{i}.jpg")
        cv2.imwrite(path, cv2.cvtColor(scene(*size, seed=i + 1), cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, qfs[i % len(qfs)]])
        src = load_image(path, max_pixels=None)
        photos.append((src.pixels, JpegPrior.of(src)))
    mp = size[0] * size[1] / 1e6
    for b in sizes:
        imgs, priors = [p for p, _ in photos[:b]], [q for _, q in photos[:b]]
        for mode in ("auto", 5):
            for way in ("enhance_many", "one by one"):
                t, results = _time_batch(enh, imgs, priors, mode, way, args)
                hist = np.bincount([r.chosen for r in results], minlength=NUM_EXITS + 1)[1:]
                rep.add("batch", {"case": f"{size[1]}x{size[0]} x{b}", "way": way,
                                  "mode": mode, "exits": hist.tolist(), **t,
                                  "mp_s": b * mp / t["best_ms"] * 1000})


def _time_batch(enh: Enhancer, imgs: list[np.ndarray], priors: list[JpegPrior | None],
                mode: ExitMode, way: str, args: argparse.Namespace
                ) -> tuple[dict[str, Any], list[Any]]:
    """:func:`timed` of one way through ``imgs``, and the last call's results."""
    last: list[Any] = []

    def call() -> None:
        if way == "enhance_many":
            last[:] = enh.enhance_many(imgs, mode, priors=priors, batch=len(imgs))
        else:
            last[:] = [enh.enhance(i, mode, prior=q) for i, q in zip(imgs, priors, strict=True)]

    return timed(call, enh.device, args.repeat, 1, args.case_s), last


def network_case(rep: Report, enh: Enhancer, img: np.ndarray, auto_exit: int,
                 batches: tuple[int, ...], args: argparse.Namespace) -> None:
    """The network alone (the engine's net, autocast as the engine runs it) on a batch."""
    x1 = enh._prepare_input(img)
    for b in batches:
        x = x1.repeat(b, 1, 1, 1).contiguous(memory_format=enh.memory_format)
        for to in sorted({auto_exit, NUM_EXITS}):

            @torch.inference_mode()
            def run(x: torch.Tensor = x, to: int = to) -> None:
                with torch.autocast("cuda", dtype=torch.float16, enabled=enh.fp16):
                    r = enh.backend.start(x, fast=enh.fast)
                    for k in range(1, to + 1):  # forced exit 5 runs no earlier heads
                        if k == to or to < NUM_EXITS:
                            r.next_exit()
                        else:
                            r.advance()

            t = timed(run, enh.device, args.repeat, 1, args.case_s)
            mp = b * img.shape[0] * img.shape[1] / 1e6
            how = "exits 1..k heads" if to < NUM_EXITS else "4x advance + head 5"
            rep.add("network", {"case": f"network only {img.shape[1]}x{img.shape[0]}",
                                "batch": b, "to_exit": to, "how": how, **t,
                                "mp_s": mp / t["best_ms"] * 1000})


def oom_case(rep: Report, weights: Path, dev: str, backend: str, img: np.ndarray) -> None:
    """Forces the engine's out-of-memory retry on an untiled image; compares the result
    with a normal run at the tile the retry ended on."""
    full = Enhancer(weights, device=dev, backend=backend, tile=0)
    d, trigger, res, err = full.device, "", None, None
    untiled = full.enhance(img, 5)
    if d.type == "cuda":
        # An index, not torch.device("cuda"): on the H200 (torch 2.11) one of these calls
        # refused the index-less device ("Expected a torch.device with a specified index").
        idx = d.index if d.index is not None else torch.cuda.current_device()
        torch.cuda.reset_peak_memory_stats(idx)  # a warm run: no cudnn autotuning workspaces
        full.enhance(img, 5)
        need = torch.cuda.max_memory_allocated(idx)
        torch.cuda.empty_cache()
        total = torch.cuda.get_device_properties(idx).total_memory
        torch.cuda.set_per_process_memory_fraction(need / 2 / total, idx)
        trigger = (f"memory cap: set_per_process_memory_fraction at {need / 2**21:,.0f} MB "
                   f"(half the untiled run's {need / 2**20:,.0f} MB peak)")
        try:
            res = Enhancer(weights, device=dev, backend=backend, tile=0).enhance(img, 5)
        except Exception as exc:  # noqa: BLE001 - reported, then the fallback
            err = f"{type(exc).__name__}: {str(exc)[:200]}"
        finally:
            torch.cuda.set_per_process_memory_fraction(1.0, idx)
            torch.cuda.empty_cache()
    if res is None or not res.oom_retries:
        real, calls = whole.enhance_whole, [0]

        def first_fails(*a: Any, **k: Any) -> Any:
            calls[0] += 1
            if calls[0] == 1:
                raise torch.OutOfMemoryError("out of memory (forced by bench_gpu.py)")
            return real(*a, **k)

        trigger = (f"{trigger} gave no retry ({err or 'no OOM'}); then " if trigger else
                   "") + "monkeypatch: first whole-image attempt raises torch.OutOfMemoryError"
        whole.enhance_whole = first_fails  # type: ignore[assignment]
        try:
            res = Enhancer(weights, device=dev, backend=backend, tile=0).enhance(img, 5)
        finally:
            whole.enhance_whole = real  # type: ignore[assignment]
    ref = Enhancer(weights, device=dev, backend=backend, tile=res.tile_size).enhance(img, 5)
    diff = float(np.abs(res.image - ref.image).max())
    rep.add("oom", {"image": f"{img.shape[1]}x{img.shape[0]}", "trigger": trigger,
                    "retries": res.oom_retries, "final_tile": res.tile_size,
                    "tiles": res.tiles, "max_abs_diff_same_tile": diff,
                    "max_abs_diff_vs_untiled": float(np.abs(res.image - untiled.image).max()),
                    "ok": res.oom_retries > 0 and diff < 1e-2})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--weights", type=Path, default=PACKAGE_WEIGHTS)
    p.add_argument("--json", type=Path, help="write the results here (after every figure)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a CPU rehearsal")
    p.add_argument("--repeat", type=int, default=0, help="samples per figure (3; quick 1)")
    p.add_argument("--inner", type=int, default=0, help="calls per 512x512 sample (10; quick 1)")
    p.add_argument("--case-s", type=float, default=6.0,
                   help="stop repeating a figure after its samples took this long")
    p.add_argument("--big-tiles", type=int, nargs="+", default=[], metavar="SIDE",
                   help="tile sides to time the 12 MP image with (0 = untiled; default: "
                        "the engine's default tile): how large a tile CUDA should default to")
    args = p.parse_args()
    logging.basicConfig(format="  (log) %(message)s", stream=sys.stdout)
    t_start = time.perf_counter()
    args.repeat = args.repeat or (1 if args.quick else 3)
    inner = args.inner or (1 if args.quick else 10)
    small = (128, 128) if args.quick else (512, 512)
    big = (384, 512) if args.quick else (3000, 4000)
    oom_size = (384, 512) if args.quick else (1536, 2048)
    batches = (1, 2) if args.quick else (1, 8, 32)
    dev = torch.device(args.device)
    backend = "torch" if dev.type == "cpu" else "auto"  # CPU auto would time the backends
    enh = Enhancer(args.weights, device=args.device, backend=backend)
    big_tile = 256 if args.quick else enh.tile
    meta = {"torch": torch.__version__, "device": str(enh.device),
            "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
            "cudnn": torch.backends.cudnn.version() if dev.type == "cuda" else None,
            "precision": "fp16 autocast" if enh.fp16 else enh.backend.precision,
            "weights": str(args.weights), "policy": enh.policy.rule, "jpeg_qf": 20,
            "quick": args.quick, "repeat": args.repeat, "inner": inner,
            "default_tile": enh.tile, "big_tile": big_tile}
    rep = Report(args.json, meta)
    print("bench_gpu: " + ", ".join(f"{k} {v}" for k, v in meta.items()), flush=True)
    def guarded(section: str, fn: Callable[[], object]) -> Any:
        try:  # a failing section is reported, and the next ones still run
            return fn()
        except Exception as exc:  # noqa: BLE001
            rep.add(section, {"case": "error", "error": f"{type(exc).__name__}: {exc}"})
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            return None

    with tempfile.TemporaryDirectory(prefix="rbqe-bench-gpu-") as tmp:
        img, prior = jpeg_input(*small, 20, tmp)
        auto = guarded("engine", lambda: engine_case(
            rep, enh, f"{small[1]}x{small[0]} untiled", img, prior, args, inner))
        guarded("network", lambda: network_case(rep, enh, img, auto or NUM_EXITS, batches, args))
        guarded("batch", lambda: batch_case(rep, enh, small, batches[1:], tmp, args))
        guarded("oom", lambda: oom_case(rep, args.weights, args.device, backend,
                                        jpeg_input(*oom_size, 20, tmp)[0]))
        big_img, big_prior = jpeg_input(*big, 20, tmp)
        for tile in args.big_tiles or [big_tile]:
            enh_big = enh if tile == enh.tile else Enhancer(
                args.weights, device=args.device, backend=backend, tile=tile)
            label = f"{big[1]}x{big[0]} " + (f"tile {tile}" if tile else "untiled")
            guarded("engine", lambda e=enh_big, label=label: engine_case(
                rep, e, label, big_img, big_prior, args, 1))

    e = [r for r in rep.data["engine"] if "error" not in r]
    n = [r for r in rep.data["network"] if "error" not in r]
    o = rep.data["oom"] or {}
    table(f"Engine, {meta['device_name']} {meta['precision']}, JPEG QF 20 input, per call",
          ["image", "mode", "exit", "tiles", "best ms", "median ms", "MP/s", "peak MB",
           "1st call peak MB", "net / IQA / other ms"],
          [[r["case"], r["mode"], r["exit"], r["tiles"], r["best_ms"], r["median_ms"],
            r["mp_s"], r["peak_mb"] or "-", r["peak_first_mb"] or "-",
            f"{r['net_ms']:.1f} / {r['iqa_ms']:.1f} / {r['other_ms']:.1f}"] for r in e])
    table("Batches of different photos (JPEG QF 10-90), per batch",
          ["photos", "way", "mode", "exits 1-5", "best ms", "median ms", "MP/s", "peak MB"],
          [[r["case"], r["way"], r["mode"], r["exits"], r["best_ms"], r["median_ms"],
            r["mp_s"], r["peak_mb"] or "-"] for r in rep.data["batch"] if "error" not in r])
    table("Network only (no IQA, colour or copies)",
          ["input", "batch", "to exit", "best ms", "MP/s", "peak MB"],
          [[r["case"][13:], r["batch"], r["to_exit"], r["best_ms"], r["mp_s"],
            r["peak_mb"] or "-"] for r in n])
    print(f"\nOOM retry ({o.get('image')}): {o.get('trigger', o.get('error'))}\n  "
          f"retries {o.get('retries')}, ended on tile {o.get('final_tile')} "
          f"({o.get('tiles')} tiles), max|diff| vs a normal run at that tile "
          f"{_short(o.get('max_abs_diff_same_tile'))} (vs untiled "
          f"{_short(o.get('max_abs_diff_vs_untiled'))}) [{'ok' if o.get('ok') else 'FAILED'}]")
    print(f"total {time.perf_counter() - t_start:.1f} s", flush=True)


if __name__ == "__main__":
    main()
