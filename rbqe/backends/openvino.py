"""The OpenVINO CPU backend: the five stage graphs of :mod:`rbqe.backends.stages`,
compiled by OpenVINO, run one after another with the node tensors kept between them.

First use for given weights exports the stages (TorchScript trace, then OpenVINO IR) into
``<cache>/openvino/<weights hash>-...``; OpenVINO then caches its compiled blobs in that
folder's ``compiled/``. Later runs read the IR and load the blobs instead of compiling.

Shapes: the graphs have dynamic height and width (batch 1), so any image size (a multiple
of 32, as the engine pads) runs without recompiling. Measured against graphs compiled for
the exact shape in ``benchmarks/bench_engine.py --backends`` (see the README).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np
import openvino as ov
import torch

from rbqe.backends.cache import cache_root, weights_hash
from rbqe.backends.stages import Stage, example_inputs, stage_io
from rbqe.errors import RBQEError
from rbqe.model import MULTIPLE, NUM_EXITS, EcaStats, RBQENet

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the stage graphs change, so old cache entries are not read
TRACE_SIZE = 64  # the example input the stages are traced with (any multiple of 32)


_core: ov.Core | None = None
_core_lock = threading.Lock()


def shared_core() -> ov.Core:
    """The process's one ``ov.Core``, made on first use and never released.

    OpenVINO's CPU plugin gives the thread that loads it an alternate signal stack of its
    own (for AMX state) and unmaps that stack when the plugin is destroyed; if that happens
    on another thread (Python's garbage collector runs wherever it is triggered), the
    loading thread keeps pointing at the unmapped stack and the next signal it takes (the
    user's Ctrl-C, whose Python handler runs on the alternate stack) kills the process with
    SIGSEGV. One Core that lives as long as the process never unloads the plugin. It also
    saves loading the plugin again for every backend.
    """
    global _core
    with _core_lock:
        if _core is None:
            _core = ov.Core()
        return _core


def bf16_supported(core: ov.Core) -> bool:
    """Whether OpenVINO runs bf16 natively on this CPU (AVX512-BF16 or AMX): it then
    lists ``BF16`` in the CPU's ``OPTIMIZATION_CAPABILITIES``."""
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def resolve_precision(core: ov.Core, asked: str) -> str:
    """``auto`` -> ``bf16`` where the CPU supports it, else ``f32``; an explicit ``bf16``
    on a CPU without it is an error (OpenVINO would quietly run f32 instead)."""
    if asked not in ("auto", "f32", "bf16"):
        raise ValueError(f"precision must be auto, f32 or bf16, got {asked!r}")
    has_bf16 = bf16_supported(core)
    if asked == "auto":
        return "bf16" if has_bf16 else "f32"
    if asked == "bf16" and not has_bf16:
        caps = ", ".join(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
        raise RBQEError(f"--precision bf16: this CPU has no native bf16 (AVX512-BF16 or AMX); "
                        f"OpenVINO reports {caps}. Use --precision f32 or auto")
    return asked


def stage_folder(net: RBQENet, cache_dir: Path | None = None) -> Path:
    """Where ``net``'s stage graphs are kept: keyed by its weights, the graphs' format and
    OpenVINO's version (default under :func:`rbqe.backends.cache.cache_root`)."""
    version = ov.get_version().split("-")[0]
    return (cache_dir or cache_root()) / "openvino" / f"{weights_hash(net)}-v{FORMAT}-ov{version}"


def stages_exported(net: RBQENet, cache_dir: Path | None = None) -> bool:
    """Whether every stage of ``net`` is exported already: a first use exports them
    (about a minute on a 2-core CPU)."""
    folder = stage_folder(net, cache_dir)
    return all(_stage_xml(folder, k, fixed).is_file()
               for k in range(1, NUM_EXITS + 1) for fixed in (False, True))


def _stage_xml(folder: Path, k: int, fixed: bool) -> Path:
    return folder / f"stage{k}_{'fixed' if fixed else 'record'}.xml"


class OpenVINOBackend:
    """Runs ``net`` on the CPU through OpenVINO.

    Args:
        net: The network (its current weights are exported; later changes are not seen).
        precision: ``auto``, ``f32`` or ``bf16`` (see :func:`resolve_precision`).
        threads: CPU threads for inference; default ``torch.get_num_threads()``.
        cache_dir: Default :func:`rbqe.backends.cache.cache_root`.

    Raises:
        RBQEError: bf16 asked on a CPU without it.
    """

    name = "openvino"

    def __init__(self, net: RBQENet, *, precision: str = "auto", threads: int | None = None,
                 cache_dir: Path | None = None) -> None:
        self.core = shared_core()
        self.precision = resolve_precision(self.core, precision)
        self.net = net
        self.config = net.config
        self.folder = stage_folder(net, cache_dir)
        self.compile_config = {
            "INFERENCE_PRECISION_HINT": self.precision,
            "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads()),
            "PERFORMANCE_HINT": "LATENCY",
            "CACHE_DIR": str(self.folder / "compiled"),
        }
        self._compiled: dict[tuple[int, bool], ov.CompiledModel] = {}
        # Every stage now, the tiles' (fixed ECA means) too: a failure shows at once, and
        # a tiled image's first tiles are not slowed by a compile (an 800x600 photo stood
        # at 56 % for 28 s, and its time left was then taken from that tile: 1 min 24 s
        # said, 4 s left).
        for fixed in (False, True):
            for k in range(1, NUM_EXITS + 1):
                self.stage(k, fixed=fixed)

    def start(self, x: torch.Tensor, stats: EcaStats | None = None, *,
              fast: bool = False, full_precision: bool = False) -> OpenVINORun:
        """A progressive run on ``x`` ``(1, C, H, W)``; ``fast`` (torch's) is ignored, and so
        is ``full_precision``: the stages are compiled in one precision (--precision f32
        compiles them in float32)."""
        return OpenVINORun(self, x, stats)

    def stage(self, k: int, fixed: bool) -> ov.CompiledModel:
        """Stage ``k`` compiled (record or fixed ECA means), exported first if need be."""
        key = (k, fixed)
        if key not in self._compiled:
            self._compiled[key] = self.core.compile_model(self.ir_path(k, fixed), "CPU",
                                                          self.compile_config)
        return self._compiled[key]

    def ir_path(self, k: int, fixed: bool) -> Path:
        """The stage's OpenVINO IR ``.xml`` in the cache, exported on first use."""
        xml = _stage_xml(self.folder, k, fixed)
        if not xml.is_file():
            self._export(k, fixed, xml)
        return xml

    def _export(self, k: int, fixed: bool, xml: Path) -> None:
        log.info("exporting stage %d (%s) for OpenVINO to %s", k,
                 "fixed" if fixed else "record", xml.parent)
        stage = Stage(self.net, k, fixed).eval()
        example = example_inputs(self.net, k, fixed, TRACE_SIZE, TRACE_SIZE)
        with torch.no_grad(), warnings.catch_warnings():
            # The trace bakes in the model's size check (True for every padded input).
            # torch 2.13 marks jit.trace deprecated; OpenVINO's PyTorch frontend still
            # reads TorchScript, and torch.export measured 5x slower here and warns too.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            traced = torch.jit.trace(stage, example, check_trace=False)
            model = ov.convert_model(traced, example_input=example)
        model.reshape({port: _dynamic(t) for port, t in zip(model.inputs, example, strict=True)})
        xml.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=xml.parent))
        try:
            # f32 weights: the default compress_to_fp16 would round them to half precision.
            ov.save_model(model, tmp / xml.name, compress_to_fp16=False)
            # The .bin first: a reader takes the .xml's presence to mean both are whole.
            os.replace(tmp / xml.with_suffix(".bin").name, xml.with_suffix(".bin"))
            os.replace(tmp / xml.name, xml)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _dynamic(example: torch.Tensor) -> ov.PartialShape:
    """Batch 1, channels fixed, height and width dynamic (a ``(1, C)`` mean stays fixed)."""
    if example.dim() == 4:
        return ov.PartialShape([1, example.shape[1], -1, -1])
    return ov.PartialShape(list(example.shape))


class OpenVINORun:
    """:class:`rbqe.model.ProgressiveRun`'s interface over the compiled stages.

    Each stage runs in its own infer request, whose output tensors (the nodes later stages
    read) are used in place, not copied; the requests are kept until the last exit.
    ECA statistics: a ``record`` :class:`EcaStats` receives the stages' pooled means, a
    ``fixed`` one feeds its averages to the fixed stages.
    """

    def __init__(self, backend: OpenVINOBackend, x: torch.Tensor,
                 stats: EcaStats | None) -> None:
        if x.dim() != 4 or x.shape[0] != 1:
            raise ValueError(f"the OpenVINO backend runs batch 1, got {tuple(x.shape)}")
        if x.shape[-2] % MULTIPLE or x.shape[-1] % MULTIPLE:
            raise ValueError(f"input size {tuple(x.shape[-2:])} is not a multiple of {MULTIPLE}")
        self.backend = backend
        self.x = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        self.stats = stats
        self.nodes: dict[tuple[int, int], np.ndarray] = {}
        self._requests: list[ov.InferRequest] = []
        self.exits_done = 0

    def next_exit(self) -> torch.Tensor:
        """Compute the next exit; returns its image ``(1, out_channels, H, W)`` float32."""
        image = self._stage(want_image=True)
        assert image is not None
        return image

    def advance(self) -> None:
        """Compute the next exit's nodes; its image (computed all the same) is dropped."""
        self._stage(want_image=False)

    def _stage(self, want_image: bool) -> torch.Tensor | None:
        if self.exits_done >= NUM_EXITS:
            raise RuntimeError("all exits already computed")
        k = self.exits_done + 1
        io = stage_io(k)
        stats = self.stats
        fixed = (stats is not None and stats.mode == "fixed"
                 and all(key in stats.sums for key in io.eca))
        inputs = [self.x, *(self.nodes[node] for node in io.nodes_in)]
        if fixed:
            assert stats is not None
            inputs += [(stats.sums[key] / stats.counts[key]).numpy() for key in io.eca]
        request = self.backend.stage(k, fixed).create_infer_request()
        out = request.infer(inputs, share_inputs=True, share_outputs=True).to_tuple()
        n = len(io.nodes_out)
        self.nodes.update(zip(io.nodes_out, out[1 : 1 + n], strict=True))
        self._requests.append(request)  # owns the memory of the nodes above
        if stats is not None and not fixed:
            for key, pooled in zip(io.eca, out[1 + n :], strict=True):
                stats.exchange(key, torch.from_numpy(np.array(pooled)))
        # A copy: the request's memory is released after the last exit.
        image = torch.from_numpy(np.array(out[0])) if want_image else None
        self.exits_done = k
        if k == NUM_EXITS:
            self.nodes.clear()
            self._requests.clear()
        return image
