"""Backends side by side (a script, not a test): torch's CPU fast path against OpenVINO.

Prints, in one run, on this machine's CPU:

1. Per-exit network latency at 512x512 (``--full``: also 2048x1536), progressive, for
   torch (the fused oneDNN fast path, f32 and, where the CPU has native bf16, bf16),
   OpenVINO f32 and, with native bf16, OpenVINO bf16: stage ms and cumulative ms.
2. The cost of going progressive: time(all five exits) / time(exit 5 alone), both with
   the network only; exit 5 alone is, for torch, four ``advance()`` and one head, for
   OpenVINO the whole exit-5 network exported as one graph. Target <= 1.10.
3. Speed-up of each backend's exit-5 time over naive eager fp32 (``net(x)``-style module
   path, NCHW, ``torch.no_grad``; exit 5 only).
4. Dynamic vs static shapes: the OpenVINO stages with dynamic height/width against the
   same stages compiled for the exact 512x512 shape.
5. Agreement with torch fp32: max |diff| and PSNR per exit, and which exit auto takes.
6. ``--full``: 12 MP images/min through ``Enhancer`` (exit auto, default tiling) per
   backend and precision, and under ``--backend auto`` (measured choice).

CUDA has its own script, ``benchmarks/bench_gpu.py``.

Timing: best of ``--repeat`` interleaved runs after a warm-up; wall ms. Weights: the
shipped RGB model unless ``--weights``.

Usage::

    python benchmarks/bench_backends.py --threads 2          # CPU, 512x512 (~2 min)
    python benchmarks/bench_backends.py --threads 2 --full   # + 2048x1536 and 12 MP
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import resource
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rbqe import iqa  # noqa: E402
from rbqe.backends import openvino_installed  # noqa: E402
from rbqe.backends.stages import stage_io  # noqa: E402
from rbqe.engine import Enhancer  # noqa: E402
from rbqe.exit_policy import auto_exit  # noqa: E402
from rbqe.model import NUM_EXITS, ProgressiveRun, RBQENet  # noqa: E402
from rbqe.weights import PACKAGE_WEIGHTS, load_weights  # noqa: E402


def photo(h: int, w: int, channels: int, seed: int = 0) -> np.ndarray:
    """Smooth gradients, ripples and noise in [0, 1], float32 (H, W, C)."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    base = 0.2 + 0.3 * x + 0.2 * y + 0.1 * np.sin(40 * x) * np.cos(25 * y)
    out = np.stack([base + 0.05 * c for c in range(channels)], axis=-1)
    out += rng.normal(0, 0.03, out.shape).astype(np.float32)
    return np.clip(out, 0, 1).astype(np.float32)


def as_input(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]


def cpu_ms() -> float:
    """This process's user + system CPU time (all threads, OpenVINO's too), ms."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return (r.ru_utime + r.ru_stime) * 1000


def best_of(fns: dict[str, Callable[[], object]], repeat: int
            ) -> dict[str, tuple[float, float]]:
    """(best wall ms, best cpu ms) of each, runs interleaved, after one warm-up each. CPU
    time stays meaningful when other processes compete for the cores."""
    for fn in fns.values():
        fn()
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            c0, t0 = cpu_ms(), time.perf_counter()
            fn()
            runs[k].append(((time.perf_counter() - t0) * 1000, cpu_ms() - c0))
            print(f"    ({k}: {runs[k][-1][0]:,.0f} ms wall)", file=sys.stderr, flush=True)
    return {k: (min(w for w, _ in v), min(c for _, c in v)) for k, v in runs.items()}


def stage_times(start: Callable[[], object], repeat: int) -> list[float]:
    """Best ms of each stage (next_exit) of a progressive run over ``repeat`` runs."""
    best = [float("inf")] * NUM_EXITS
    for n in range(repeat + 1):  # the first is the warm-up
        run = start()
        for k in range(NUM_EXITS):
            t0 = time.perf_counter()
            run.next_exit()  # type: ignore[attr-defined]
            if n:
                best[k] = min(best[k], (time.perf_counter() - t0) * 1000)
    return best


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.clamp(0, 1) - b.clamp(0, 1)).double() ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)


class Exit5(nn.Module):
    """The whole network to exit 5 as one module (for a one-graph export)."""

    def __init__(self, net: RBQENet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        run = ProgressiveRun(self.net, x, None)
        for _ in range(NUM_EXITS - 1):
            run.advance()
        return run.next_exit()


def openvino_exit5(backend, precision: str, threads: int):  # -> ov.CompiledModel
    """The whole exit-5 network as one OpenVINO graph (IR kept beside the stages)."""
    import openvino as ov

    net = backend.net
    xml = backend.folder / "bench_exit5.xml"
    if not xml.is_file():
        x = torch.zeros(1, net.config.in_channels, 64, 64)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = ov.convert_model(torch.jit.trace(Exit5(net).eval(), (x,),
                                                     check_trace=False), example_input=(x,))
        model.reshape({model.inputs[0]: ov.PartialShape([1, x.shape[1], -1, -1])})
        ov.save_model(model, xml, compress_to_fp16=False)
    return backend.core.compile_model(xml, "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                                   "INFERENCE_NUM_THREADS": threads,
                                                   "PERFORMANCE_HINT": "LATENCY"})


def static_stages(backend, shape: tuple[int, int]):  # -> list[ov.CompiledModel]
    """The backend's record stages compiled for exactly ``shape`` (H, W)."""
    import openvino as ov

    h, w = shape
    out = []
    for k in range(1, NUM_EXITS + 1):
        model = backend.core.read_model(backend.ir_path(k, False))
        ports = list(model.inputs)  # x, then the nodes of stage_io(k).nodes_in
        shapes = {ports[0]: ov.PartialShape([1, ports[0].get_partial_shape()[1].get_length(),
                                             h, w])}
        for port, (i, _) in zip(ports[1:], stage_io(k).nodes_in, strict=True):
            c = port.get_partial_shape()[1].get_length()
            shapes[port] = ov.PartialShape([1, c, h >> i, w >> i])
        model.reshape(shapes)
        config = dict(backend.compile_config)
        config.pop("CACHE_DIR")
        out.append(backend.core.compile_model(model, "CPU", config))
    return out


class StaticRun:
    """Stage-by-stage run over fixed-shape compiled stages (for the shape comparison)."""

    def __init__(self, compiled: list, x: torch.Tensor) -> None:
        self.compiled, self.x, self.nodes, self.k, self.keep = compiled, x.numpy(), {}, 0, []
        self.io = [stage_io(k) for k in range(1, NUM_EXITS + 1)]

    def next_exit(self) -> np.ndarray:
        io = self.io[self.k]
        req = self.compiled[self.k].create_infer_request()
        out = req.infer([self.x, *(self.nodes[n] for n in io.nodes_in)], share_inputs=True,
                        share_outputs=True).to_tuple()
        self.nodes.update(zip(io.nodes_out, out[1: 1 + len(io.nodes_out)], strict=True))
        self.keep.append(req)
        self.k += 1
        return np.array(out[0])


# -- CPU ---------------------------------------------------------------------------------------
def cpu(args: argparse.Namespace, net: RBQENet) -> None:
    from rbqe.backends.torch import TorchBackend
    from rbqe.fastpath import native_bf16

    backends: dict[str, object] = {"torch fast path f32": TorchBackend(net)}
    if native_bf16():
        backends["torch fast path bf16"] = TorchBackend(net, "bf16")
    else:
        print("no native bf16 on this CPU (AVX512-BF16 or AMX): torch bf16 not run")
    bf16 = False
    if openvino_installed():
        import openvino as ov

        from rbqe.backends.openvino import OpenVINOBackend, bf16_supported, shared_core

        core = shared_core()
        caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        print(f"OpenVINO {ov.get_version()}: {core.get_property('CPU', 'FULL_DEVICE_NAME')}; "
              f"OPTIMIZATION_CAPABILITIES {caps}")
        bf16 = bf16_supported(core)
        t0 = time.perf_counter()
        backends["openvino f32"] = OpenVINOBackend(net, precision="f32", threads=args.threads)
        print(f"OpenVINO f32 stages ready in {time.perf_counter() - t0:.1f} s "
              f"(export or cache load; cache {backends['openvino f32'].folder})")  # type: ignore[attr-defined]
        if bf16:
            backends["openvino bf16"] = OpenVINOBackend(net, precision="bf16",
                                                        threads=args.threads)
        else:
            print("no native bf16 on this CPU: OpenVINO bf16 not run (auto precision = f32)")
        if args.prepare:  # exports only, so that a timed run does not pay for them
            for b in [b for n, b in backends.items() if n.startswith("openvino")]:
                openvino_exit5(b, b.precision, args.threads)  # type: ignore[attr-defined]
            return
    else:
        print("openvino not installed: torch only (pip install 'rbqe-studio[openvino]')")

    sizes = [(512, 512)] + ([(1536, 2048)] if args.full else [])
    c = net.config.in_channels
    plain = RBQENet(net.config)
    plain.load_state_dict(net.state_dict())
    plain.eval()
    for h, w in sizes:
        x = as_input(photo(h, w, c))
        xl = x.contiguous(memory_format=torch.channels_last)
        print(f"\n== {w}x{h}, {torch.get_num_threads()} torch threads, "
              f"OpenVINO threads {args.threads} ==")
        per_stage = {}
        with torch.inference_mode() if args.stages else contextlib.nullcontext():
            for name, b in backends.items() if args.stages else ():
                per_stage[name] = stage_times(
                    lambda b=b, xl=xl: b.start(xl, fast=True), args.repeat)  # type: ignore[attr-defined]
        if per_stage:
            print(f"{'exit':>4}  " + "  ".join(f"{n:>24}" for n in backends))
        cums = {n: np.cumsum(v) for n, v in per_stage.items()}
        for k in range(NUM_EXITS if per_stage else 0):
            print(f"{k + 1:>4}  " + "  ".join(
                f"{per_stage[n][k]:>9.1f} ms (cum {cums[n][k]:>6.0f})" for n in backends))

        # Progressive overhead and speed-up over naive eager, one interleaved run.
        fns: dict[str, Callable[[], object]] = {}

        def eager(x: torch.Tensor = x) -> None:
            with torch.no_grad():
                run = ProgressiveRun(plain, x, None)
                for _ in range(NUM_EXITS - 1):
                    run.advance()
                run.next_exit()

        def torch_all(b, xl: torch.Tensor = xl) -> None:
            with torch.inference_mode():
                run = b.start(xl, fast=True)
                for _ in range(NUM_EXITS):
                    run.next_exit()

        def torch_exit5(b, xl: torch.Tensor = xl) -> None:
            with torch.inference_mode():
                run = b.start(xl, fast=True)
                for _ in range(NUM_EXITS - 1):
                    run.advance()
                run.next_exit()

        fns["eager exit 5"] = eager
        for name, b in backends.items():
            if name.startswith("torch"):
                tag = "torch" if name.endswith("f32") else "torch bf16"
                fns[f"{tag} all five"] = lambda b=b: torch_all(b)
                fns[f"{tag} exit 5"] = lambda b=b: torch_exit5(b)
        for name, b in backends.items():
            if not name.startswith("openvino"):
                continue
            prec = b.precision  # type: ignore[attr-defined]
            one = openvino_exit5(b, prec, args.threads)
            xn = x.numpy()
            fns[f"{name} all five"] = lambda b=b, x=x: [r.next_exit() for r in [b.start(x)]
                                                   for _ in range(NUM_EXITS)]
            fns[f"{name} exit 5 (one graph)"] = lambda one=one, xn=xn: one(xn)
            if (h, w) == (512, 512) and prec == "f32":
                stat = static_stages(b, (h, w))
                fns[f"{name} all five, static shape"] = lambda stat=stat, x=x: [
                    r.next_exit() for r in [StaticRun(stat, x)] for _ in range(NUM_EXITS)]
        both = best_of(fns, args.repeat)
        ew, ec = both["eager exit 5"]
        print(f"\nbest of {args.repeat} (wall ms, cpu ms); speed-up over naive eager fp32 "
              f"exit 5 ({ew:,.0f} ms wall, {ec:,.0f} ms cpu)")
        for name, (w_ms, c_ms) in both.items():
            print(f"  {name:<44} {w_ms:>9,.1f} wall {c_ms:>9,.1f} cpu   "
                  f"eager/this {ew / w_ms:5.2f}x wall, {ec / c_ms:5.2f}x cpu")

        def ratio(a: str, b: str, both: dict = both) -> str:
            return (f"{both[a][0] / both[b][0]:.3f} wall, "
                    f"{both[a][1] / both[b][1]:.3f} cpu")

        for tag in ("torch", "torch bf16"):
            if f"{tag} all five" in both:
                print(f"  {tag} all five / {tag} exit 5: "
                      f"{ratio(f'{tag} all five', f'{tag} exit 5')} (target <= 1.10)")
        if "torch bf16 all five" in both:
            print(f"  torch bf16 all five / torch all five: "
                  f"{ratio('torch bf16 all five', 'torch all five')}")
        for name in backends:
            if name.startswith("openvino"):
                print(f"  {name} all five stages / one exit-5 graph: "
                      f"{ratio(f'{name} all five', f'{name} exit 5 (one graph)')} "
                      "(target <= 1.10)")
                print(f"  {name} all five / torch all five: "
                      f"{ratio(f'{name} all five', 'torch all five')}")
                if f"{name} all five, static shape" in both:
                    print(f"  {name} all five, dynamic / static shape: "
                          f"{ratio(f'{name} all five', f'{name} all five, static shape')}")

        # Agreement with torch fp32 (the module path), and auto's choice.
        if (h, w) == (512, 512):
            with torch.no_grad():
                run = ProgressiveRun(plain, x, None)
                ref = [run.next_exit() for _ in range(NUM_EXITS)]
            ref_scores = [float(iqa.score_torch(iqa.luma(r.clamp(0, 1)) if c == 3 else
                                                r.clamp(0, 1))) for r in ref]
            for name, b in backends.items():
                with torch.inference_mode():  # before start(): the fast path needs no autograd
                    run = b.start(xl, fast=True)  # type: ignore[attr-defined]
                    outs = [run.next_exit() for _ in range(NUM_EXITS)]
                diffs = [float((o - r).abs().max()) for o, r in zip(outs, ref, strict=True)]
                ps = [psnr(o, r) for o, r in zip(outs, ref, strict=True)]
                scores = [float(iqa.score_torch(iqa.luma(o.clamp(0, 1)) if c == 3 else
                                                o.clamp(0, 1))) for o in outs]
                thr = float(np.median(ref_scores))  # a threshold that splits the exits
                print(f"  {name:<22} vs torch fp32: max|diff| per exit "
                      + " ".join(f"{d:.1e}" for d in diffs)
                      + "; PSNR " + " ".join(f"{p:.1f}" for p in ps)
                      + f" dB; auto exit at threshold {thr:.4f}: "
                      f"{auto_exit(scores, thr)} (torch fp32 {auto_exit(ref_scores, thr)})")

    if args.full:
        twelve = photo(3000, 4000, 3)
        runs = [("torch", "f32")] + ([("torch", "bf16")] if native_bf16() else [])
        runs += [("openvino", "auto")] if openvino_installed() else []
        runs += [("auto", "auto")]
        for name, precision in runs:
            enh = Enhancer(args.weights or PACKAGE_WEIGHTS, device="cpu", backend=name,
                           precision=precision)
            enh.enhance(photo(512, 512, 3), 1)  # warm-up
            t0 = time.perf_counter()
            res = enh.enhance(twelve, "auto")
            s = time.perf_counter() - t0
            print(f"\n12 MP (4000x3000) exit auto, --backend {name} "
                  f"({enh.backend.name} {enh.backend.precision}): {s:.1f} s, "
                  f"exit {res.chosen}, {res.tiles} tiles -> {60 / s:.2f} images/min "
                  "(target >= 6)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="CPU threads, torch and OpenVINO")
    p.add_argument("--repeat", type=int, default=3, help="runs per figure (best is kept)")
    p.add_argument("--full", action="store_true", help="also 2048x1536 and 12 MP")
    p.add_argument("--prepare", action="store_true",
                   help="only export the OpenVINO graphs into the cache, then stop")
    p.add_argument("--no-stages", dest="stages", action="store_false",
                   help="skip the per-exit table (a busy machine: the rest in less time)")
    p.add_argument("--weights", type=Path, help="weights file (default: the shipped one)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    net, _ = load_weights(args.weights or PACKAGE_WEIGHTS)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"bench_backends: {platform.processor() or platform.machine()}, {os.cpu_count()} "
          f"CPUs, torch {torch.__version__}, weights {args.weights or PACKAGE_WEIGHTS} "
          f"({net.config}); load average {load:.1f}")
    cpu(args, net)


if __name__ == "__main__":
    main()
