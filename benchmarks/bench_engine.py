"""Inference benchmark of the RBQE engine (a script, not a test).

Prints, for this machine's CPU (and CUDA when present):

1. Per-exit latency, progressive (mode ``all``, untiled), per stage and cumulative, with
   the IQA time, at 512x512 and 2048x1536.
2. The cost of going progressive: time(all five exits, each scored by the IQA) over
   time(exit 5 alone: the same nodes, one output head, no IQA). Target <= 1.10.
3. IQA time as a share of exit-1 time (target <= 5 %) and per megapixel.
4. Speed-up of the engine's network over a plain fp32 NCHW eager run of the same weights
   (``torch.no_grad``, contiguous tensors, ``net(x)``: all five exits, computed the same
   progressive way). Target >= 3x.
5. Peak memory (RSS high-water, fresh subprocess) of a 24-megapixel RGB image through
   ``Enhancer`` with default tiling (target <= ~2 GB on CPU); 100 MP with ``--big``.
6. With ``--cli-memory`` (alone, skipping 1-5): peak memory of the whole ``rbqe enhance``
   command on a generated 24 MP JPEG (100 MP with ``--big``), per phase (load, enhance,
   save), in a fresh subprocess; default weights and exit mode unless given.

Weights: ``weights/rbqe_jpeg.safetensors`` when it exists, else a random
``ModelConfig(1, 1, 32)`` (the paper's architecture; speed does not depend on the values).

Timing: each figure is the best of ``--repeat`` runs (the least disturbed one), with A/B
comparisons interleaved. Wall time is what a user waits; ``cpu`` is this process's
user+system CPU time, which stays meaningful when other processes compete for the cores
(wall times are then inflated; the script warns when the load average is high).

Usage::

    python benchmarks/bench_engine.py            # full (several minutes on 2 cores)
    python benchmarks/bench_engine.py --quick    # 1024x768 instead of 2048x1536, 3 MP memory
    python benchmarks/bench_engine.py --threads 1 --big
    python benchmarks/bench_engine.py --cli-memory --big --mem-mode auto
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rbqe import iqa  # noqa: E402 (after the sys.path line)
from rbqe.engine import Enhancer  # noqa: E402
from rbqe.model import NUM_EXITS, ModelConfig, RBQENet  # noqa: E402
from rbqe.tiling import pad_to_multiple  # noqa: E402
from rbqe.weights import PACKAGE_WEIGHTS, load_weights  # noqa: E402


# -- helpers -----------------------------------------------------------------------------------
def load_net(weights: Path | None) -> tuple[RBQENet, str]:
    path = weights or PACKAGE_WEIGHTS
    if path.is_file():
        net, _ = load_weights(path)
        return net, str(path)
    torch.manual_seed(0)
    return RBQENet(ModelConfig(1, 1, 32)).eval(), "random ModelConfig(1, 1, 32)"


def photo(h: int, w: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """Smooth gradients, stripes and noise in [0, 1], float32 (H, W, C); cheap to build."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    base = 0.2 + 0.3 * x + 0.2 * y + 0.1 * np.sin(40 * x) * np.cos(25 * y)
    out = np.empty((h, w, channels), np.float32)
    for c in range(channels):
        out[..., c] = base + 0.05 * c
    out += rng.normal(0, 0.02, (1, w, 1)).astype(np.float32)  # cheap texture
    np.clip(out, 0, 1, out=out)
    return out


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall ms, cpu ms) of one call."""
    c0, t0 = cpu_s(), time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000, (cpu_s() - c0) * 1000


def best_of(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, tuple[float, float]]:
    """Interleaved runs after one warm-up each; the best wall and best cpu of each."""
    for fn in fns.values():
        fn()
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            runs[k].append(measure(fn))
    return {k: (min(w for w, _ in v), min(c for _, c in v)) for k, v in runs.items()}


def table(title: str, header: list[str], rows: list[list[object]]) -> None:
    cells = [[str(c) for c in header]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    line = "  ".join("-" * w for w in widths)
    print(line)
    for n, r in enumerate(cells):
        print("  ".join(c.rjust(w) if n and i else c.ljust(w)
                        for i, (c, w) in enumerate(zip(r, widths, strict=True))))
        if n == 0:
            print(line)
    print(line)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.2f}"
    return str(v)


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- 1-3: per-exit latency, progressive overhead, IQA share ------------------------------------
def latency(net: RBQENet, device: str, sizes: list[tuple[int, int]], repeat: int) -> dict:
    enh = Enhancer(net=net, device=device, tile=0, threshold=1.01)  # never exits early
    chan = net.config.in_channels
    summary = {}
    for h, w in sizes:
        img = photo(h, w, 1 if chan == 1 else 3)
        runs = []
        enh.enhance(img, "all")  # warm-up
        for _ in range(repeat):
            c0 = cpu_s()
            res = enh.enhance(img, "all")
            runs.append((res, (cpu_s() - c0) * 1000))
        best = min(runs, key=lambda r: r[0].total_ms)[0]
        stage = [min(r.exits[k].time_ms for r, _ in runs) for k in range(NUM_EXITS)]
        iqa_ms = [min(r.exits[k].iqa_ms for r, _ in runs) for k in range(NUM_EXITS)]
        rows, cum = [], 0.0
        for k in range(NUM_EXITS):
            cum += stage[k]
            rows.append([k + 1, best.exits[k].gmacs, stage[k], cum, iqa_ms[k],
                         round(best.exits[k].score, 4)])
        table(f"Per-exit latency, {w}x{h}, {device}, progressive (mode all, untiled); "
              f"best of {repeat}", ["exit", "GMACs", "stage ms", "cumulative ms", "IQA ms",
                                    "score"], rows)
        print(f"whole enhance() call (incl. padding, colour, IQA, numpy): "
              f"{min(r.total_ms for r, _ in runs):,.0f} ms wall, "
              f"{min(c for _, c in runs):,.0f} ms cpu")
        summary[(h, w)] = {"stage": stage, "iqa": iqa_ms, "total": best.total_ms}
    return summary


def progressive_overhead(net: RBQENet, device: str, size: tuple[int, int], repeat: int
                         ) -> None:
    enh = Enhancer(net=net, device=device, tile=0, threshold=1.01)
    dev = enh.device
    h, w = size
    x = pad_to_multiple(torch.from_numpy(photo(h, w, net.config.in_channels)
                                          .transpose(2, 0, 1).copy())[None])
    x = x.to(dev).contiguous(memory_format=torch.channels_last)

    def score(out: torch.Tensor) -> float:
        y = out.float().clamp(0, 1)
        return float(iqa.score_torch(y if y.shape[1] == 1 else iqa.luma(y)))

    def run(progressive: bool, with_iqa: bool) -> Callable[[], object]:
        @torch.inference_mode()
        def go() -> None:
            with torch.autocast("cuda", dtype=torch.float16, enabled=enh.fp16):
                r = enh.net.start(x, fast=enh.fast)
                for k in range(1, NUM_EXITS + 1):
                    if k < NUM_EXITS and not progressive:
                        r.advance()
                        continue
                    out = r.next_exit()
                    if with_iqa and k < NUM_EXITS:
                        score(out)
            sync(dev)
        return go

    t = best_of({"exit5": run(False, False), "net": run(True, False),
                 "net+iqa": run(True, True)}, repeat)
    base_w, base_c = t["exit5"]
    rows = [["exit 5 alone (4x advance + 1 head)", base_w, base_c, 1.0],
            ["all 5 exits, network only (5 heads)", *t["net"], t["net"][0] / base_w],
            ["all 5 exits + IQA of exits 1-4", *t["net+iqa"], t["net+iqa"][0] / base_w]]
    table(f"Progressive overhead, {w}x{h}, {device} (target <= 1.10)",
          ["run", "wall ms", "cpu ms", "ratio"], rows)
    print(f"all five progressively / exit 5 alone = {t['net+iqa'][0] / base_w:.3f} "
          f"(cpu {t['net+iqa'][1] / base_c:.3f})  "
          f"[{verdict(t['net+iqa'][0] / base_w <= 1.10)}]")


def iqa_share(lat: dict, size: tuple[int, int], device: str) -> None:
    h, w = size
    s = lat[size]
    share = s["iqa"][0] / s["stage"][0]
    mp = h * w / 1e6
    # IQA per megapixel, on a large plane for a stable figure.
    dev = torch.device("cuda" if device.startswith("cuda") else "cpu")
    y = torch.from_numpy(photo(2048, 2048, 1)[..., 0]).to(dev)[None, None]
    iqa.score_torch(y)
    best = min(measure(lambda: (iqa.score_torch(y), sync(dev)))[0] for _ in range(5))
    print(f"\nIQA: {s['iqa'][0]:.1f} ms at {w}x{h} = {100 * share:.1f} % of exit-1 network time "
          f"(target <= 5 %) [{verdict(share <= 0.05)}]; {best / 4.194304:.1f} ms per megapixel "
          f"({mp:.2f} MP scored per exit)")


# -- 4: speed-up over plain eager ------------------------------------------------------------
def speedup(net: RBQENet, sizes: list[tuple[int, int]], repeat: int) -> None:
    enh = Enhancer(net=net, device="cpu", tile=0)
    plain = RBQENet(net.config)
    plain.load_state_dict(net.state_dict())
    plain = plain.eval()  # contiguous (NCHW) parameters, the module path
    rows = []
    for h, w in sizes:
        x = torch.from_numpy(photo(h, w, net.config.in_channels).transpose(2, 0, 1).copy())[None]

        def eager(x: torch.Tensor = x) -> None:
            with torch.no_grad():
                plain(x)

        def engine(x: torch.Tensor = x) -> None:
            with torch.inference_mode():
                xe = x.contiguous(memory_format=enh.memory_format)
                run = enh.net.start(xe, fast=enh.fast)
                for _ in range(NUM_EXITS):
                    run.next_exit()

        with torch.no_grad():
            ref = plain(x)
            run = enh.net.start(x, fast=enh.fast)
            diff = max(float((run.next_exit() - r).abs().max()) for r in ref)
        t = best_of({"eager": eager, "engine": engine}, repeat)
        rows.append([f"{w}x{h}", *t["eager"], *t["engine"], t["eager"][0] / t["engine"][0],
                     t["eager"][1] / t["engine"][1], f"{diff:.1e}"])
    table("Engine network (CPU, all 5 exits) vs plain fp32 NCHW eager net(x) (target >= 3x)",
          ["size", "eager wall ms", "eager cpu ms", "engine wall ms", "engine cpu ms",
           "speed-up wall", "speed-up cpu", "max |diff|"], rows)
    worst = min(r[5] for r in rows)
    print(f"smallest wall speed-up {worst:.2f}x [{verdict(worst >= 3)}]")


# -- 5: memory ---------------------------------------------------------------------------------
def child_memory(args: argparse.Namespace) -> None:
    """Runs in a fresh process: one big image through the Enhancer, default tiling."""
    if args.threads:
        torch.set_num_threads(args.threads)
    net, _ = load_net(args.weights)
    enh = Enhancer(net=net, device=args.device)
    mp = args.child_memory
    h = round((mp * 1e6 / 1.5) ** 0.5)
    w = round(h * 1.5)
    img = photo(h, w, 3)
    base = _rss_mb()
    t0 = time.perf_counter()
    res = enh.enhance(img, args.mem_mode)
    dt = time.perf_counter() - t0
    out = {"w": w, "h": h, "tiles": res.tiles, "chosen": res.chosen, "seconds": dt,
           "rss_before_mb": base, "peak_mb": _peak_mb(), "input_mb": img.nbytes / 2**20}
    if enh.device.type == "cuda":
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(out))


def _rss_mb() -> float:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mb() -> float:
    # VmHWM first: Linux carries ru_maxrss over from the pre-exec image, i.e. from the
    # forked parent (this script, after its own big runs: it read 10 GB for a 2 GB child).
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def memory(args: argparse.Namespace, megapixels: list[float]) -> None:
    rows = []
    for mp in megapixels:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child-memory", str(mp),
               "--mem-mode", args.mem_mode, "--device", args.device]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        if args.weights:
            cmd += ["--weights", str(args.weights)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode:
            rows.append([f"{mp:g} MP", "failed", proc.stderr.strip().splitlines()[-1:], "", "",
                         "", ""])
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append([f"{mp:g} MP ({r['w']}x{r['h']})", r["tiles"], r["chosen"], r["seconds"],
                     r["input_mb"], r["rss_before_mb"], r["peak_mb"]])
    table(f"Peak memory, fresh process, Enhancer default tiling, mode {args.mem_mode} "
          "(RGB float32 input)", ["image", "tiles", "exit", "seconds", "input MB",
                                  "RSS before MB", "peak RSS MB"], rows)
    peaks = [r[6] for r in rows if isinstance(r[6], float)]
    if peaks:
        print(f"peak {peaks[0]:,.0f} MB for {megapixels[0]:g} MP "
              f"(target <= ~2048 MB) [{verdict(peaks[0] <= 2048 * 1.05)}]")


# -- 6: memory of the whole command ---------------------------------------------------------------
def child_cli_memory(argv: list[str]) -> None:
    """Runs in a fresh process: ``rbqe enhance argv``, with the VmHWM peak of each phase
    (the high-water mark is reset at the start of each through /proc/self/clear_refs)."""
    from rbqe import batch
    from rbqe.cli import main as cli_main

    phases: dict[str, dict[str, float]] = {}

    def phase(name: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
            before = _rss_mb()
            with contextlib.suppress(OSError):  # Linux: VmHWM := VmRSS
                Path("/proc/self/clear_refs").write_text("5")
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                phases[name] = {"before": before, "peak": _peak_mb(),
                                "s": time.perf_counter() - t0}
        return timed

    batch.load_image = phase("load", batch.load_image)
    batch.save_like = phase("save", batch.save_like)
    Enhancer.enhance = phase("enhance", Enhancer.enhance)  # type: ignore[method-assign]
    rc = cli_main(argv)
    print(json.dumps({"rc": rc, "phases": phases}))


def _photo_jpeg(path: Path, h: int, w: int) -> None:
    """A photo-like RGB JPEG (gradients, ripples, noise), built in bands of rows."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    rng = np.random.default_rng(0)
    x = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    img = np.empty((h, w, 3), np.uint8)
    for top in range(0, h, 1000):
        band = img[top: top + 1000]
        y = (np.arange(top, top + len(band), dtype=np.float32) / h)[:, None]
        noise = rng.normal(0, 6, band.shape[:2]).astype(np.float32)
        for c, v in enumerate((40 + 160 * (0.7 * x + 0.3 * y), 40 + 160 * (0.3 * x + 0.7 * y),
                               90 + 60 * np.sin(x * 40) * np.cos(y * 30))):
            band[..., c] = np.clip(v + noise, 0, 255)
    Image.fromarray(img).save(path, "JPEG", quality=70)


def cli_memory(args: argparse.Namespace, megapixels: list[float]) -> None:
    rows = []
    with tempfile.TemporaryDirectory(prefix="rbqe-bench-") as tmp:
        for mp in megapixels:
            h = round((mp * 1e6 / 1.5) ** 0.5)
            w = round(h * 1.5)
            src = Path(tmp) / f"photo_{mp:g}mp.jpg"
            _photo_jpeg(src, h, w)
            argv = ["enhance", str(src), "-o", str(Path(tmp) / "out"), "--device", args.device,
                    "--exit", args.mem_mode, "--max-pixels", "0", "--overwrite"]
            if args.weights:
                argv += ["--weights", str(args.weights)]
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child-cli", *argv]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode:
                rows.append([f"{mp:g} MP", "failed", proc.stderr.strip().splitlines()[-1:]])
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            ph = r["phases"]
            rows.append([f"{mp:g} MP ({w}x{h})", *(ph[k]["peak"] for k in ("load", "enhance",
                         "save")), ph["enhance"]["s"], max(p["peak"] for p in ph.values())])
    table(f"Peak memory of 'rbqe enhance' (fresh process, JPEG in, PNG out, exit mode "
          f"{args.mem_mode}, default tiling), VmHWM MB per phase",
          ["image", "load", "enhance", "save", "enhance s", "peak MB"], rows)


# -- main ------------------------------------------------------------------------------------
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    p.add_argument("--repeat", type=int, default=0, help="runs per figure (default 3, quick 2)")
    p.add_argument("--big", action="store_true", help="also 100 MP in the memory test")
    p.add_argument("--no-memory", action="store_true", help="skip the memory test")
    p.add_argument("--weights", type=Path, help="weights file (default: the shipped one)")
    p.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    p.add_argument("--child-memory", type=float, help=argparse.SUPPRESS)
    p.add_argument("--cli-memory", action="store_true",
                   help="only the memory test of the whole rbqe enhance command")
    p.add_argument("--mem-mode", default="5", help="exit mode of the memory test (default 5, "
                   "the worst case; auto depends on the weights)")
    if sys.argv[1:2] == ["--child-cli"]:
        child_cli_memory(sys.argv[2:])
        return
    args = p.parse_args()
    if args.cli_memory:
        cli_memory(args, [24.0] + ([100.0] if args.big else []))
        return
    if args.child_memory:
        child_memory(args)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    repeat = args.repeat or (2 if args.quick else 3)
    net, source = load_net(args.weights)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"RBQE engine benchmark: torch {torch.__version__}, {platform.processor() or ''} "
          f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
          f"python {platform.python_version()}")
    print(f"weights: {source}; load average {load:.1f}" + (
        "  ** machine busy: wall times inflated, compare the cpu columns **"
        if load > (os.cpu_count() or 1) * 0.75 else ""))
    sizes = [(512, 512), (768, 1024) if args.quick else (1536, 2048)]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for dev in devices:
        lat = latency(net, dev, sizes, repeat)
        progressive_overhead(net, dev, sizes[0], repeat)
        iqa_share(lat, sizes[0], dev)
    speedup(net, sizes[:1] if args.quick else sizes, repeat)
    if not args.no_memory:
        mps = [3.0] if args.quick else [24.0] + ([100.0] if args.big else [])
        memory(args, mps)


if __name__ == "__main__":
    main()
