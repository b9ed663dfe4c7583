"""Backends: the stage graphs, the OpenVINO backend against torch fp32, choosing a backend.

The OpenVINO tests skip when ``openvino`` is not installed (CI installs the extra). They
share one tiny network, so its stages are exported once per session (into the test
session's cache folder, see ``tests/conftest.py``) and loaded from there afterwards.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rbqe.backends import TorchBackend, make_backend, openvino_installed
from rbqe.backends.cache import weights_hash
from rbqe.backends.stages import Stage, stage_io
from rbqe.engine import Enhancer
from rbqe.errors import RBQEError
from rbqe.model import NUM_EXITS, EcaStats
from rbqe.tiling import DEFAULT_TILE, OPENVINO_TILE, TILE_OVERLAP, tiles
from tests.helpers import psnr

pytestmark = pytest.mark.usefixtures("one_thread")
needs_openvino = pytest.mark.skipif(not openvino_installed(), reason="openvino not installed")
CPU = torch.device("cpu")


@pytest.fixture
def net(make_net):
    return make_net(1, seed=7)  # the one network the OpenVINO tests export


@pytest.fixture
def gray_jpeg(make_jpeg) -> np.ndarray:
    return (make_jpeg(288, 320, seed=3).mean(axis=2, keepdims=True) / 255).astype(np.float32)


# -- stage graphs (torch only) -------------------------------------------------------------------
def test_stage_layout_covers_every_node_once():
    made = [n for k in range(1, NUM_EXITS + 1) for n in stage_io(k).nodes_out]
    assert len(made) == len(set(made))
    for k in range(2, NUM_EXITS + 1):  # what a stage reads, earlier stages made
        assert set(stage_io(k).nodes_in) <= set(made)
    assert stage_io(NUM_EXITS).nodes_out == ()
    with pytest.raises(ValueError, match="1..5"):
        stage_io(6)


@pytest.mark.parametrize("fixed", [False, True])
def test_chained_stages_equal_the_progressive_run(net, fixed):
    x = torch.rand(1, 1, 96, 128, generator=torch.Generator().manual_seed(0))
    recorded = EcaStats("record")
    with torch.no_grad():
        run = net.start(x, recorded)
        ref = [run.next_exit() for _ in range(NUM_EXITS)]
        means = {key: recorded.sums[key] / recorded.counts[key] for key in recorded.sums}
        nodes: dict = {}
        for k in range(1, NUM_EXITS + 1):
            io = stage_io(k)
            extra = [means[key] for key in io.eca] if fixed else []
            out = Stage(net, k, fixed)(x, *(nodes[n] for n in io.nodes_in), *extra)
            assert torch.equal(out[0], ref[k - 1])
            n = len(io.nodes_out)
            nodes.update(zip(io.nodes_out, out[1 : 1 + n], strict=True))
            if not fixed:  # record stages return the pooled means the run recorded
                assert len(out) == 1 + n + len(io.eca)
                for key, pooled in zip(io.eca, out[1 + n :], strict=True):
                    torch.testing.assert_close(pooled, means[key], rtol=0, atol=1e-7)


# -- choosing a backend --------------------------------------------------------------------------
def test_torch_is_chosen_off_the_cpu_and_for_networks_in_memory(net):
    assert make_backend("auto", net, torch.device("cuda"), in_memory=False).name == "torch"
    assert make_backend("auto", net, CPU, in_memory=True).name == "torch"
    assert isinstance(make_backend("torch", net, CPU), TorchBackend)


def test_bad_backend_choices_are_one_clear_error(net, monkeypatch):
    with pytest.raises(RBQEError, match="backend must be one of"):
        make_backend("tensorrt", net, CPU)
    with pytest.raises(RBQEError, match="precision must be one of"):
        make_backend("torch", net, CPU, precision="int8")
    with pytest.raises(RBQEError, match="runs on the CPU"):
        make_backend("openvino", net, torch.device("cuda"))
    with pytest.raises(RBQEError, match="bf16 is for the CPU"):
        make_backend("torch", net, torch.device("cuda"), precision="bf16")
    monkeypatch.setattr("rbqe.backends.native_bf16", lambda: False)
    with pytest.raises(RBQEError, match="this CPU has no native bf16"):
        make_backend("torch", net, CPU, precision="bf16")
    monkeypatch.setattr("rbqe.backends.openvino_installed", lambda: False)
    with pytest.raises(RBQEError, match=r"pip install 'rbqe-studio\[openvino\]'"):
        make_backend("openvino", net, CPU)
    assert make_backend("auto", net, CPU).name == "torch"  # not installed: torch, no error


def test_torch_precision_follows_the_cpu(net, monkeypatch):
    for native in (False, True):
        monkeypatch.setattr("rbqe.backends.native_bf16", lambda native=native: native)
        assert make_backend("torch", net, CPU).precision == ("bf16" if native else "f32")
        assert make_backend("torch", net, CPU, precision="f32").precision == "f32"
        # A network in memory (training, calibration) stays float32 unless asked.
        assert make_backend("torch", net, CPU, in_memory=True).precision == "f32"
    assert make_backend("torch", net, CPU, precision="bf16").precision == "bf16"
    assert make_backend("auto", net, torch.device("cuda")).precision == "fp16"
    assert make_backend("auto", net, torch.device("cuda"), precision="f32").precision == "f32"


@pytest.fixture
def timed(monkeypatch, tmp_path):
    """``auto`` measuring with fixed times (ms per candidate label) into a fresh cache;
    returns the list of labels timed, in order."""
    monkeypatch.setenv("RBQE_CACHE_DIR", str(tmp_path))
    ms = {"torch f32": 900.0, "torch bf16": 400.0, "openvino auto": 300.0,
          "openvino f32": 1200.0, "openvino bf16": 300.0}
    calls: list[str] = []

    def fake_time(backend, x):
        label = f"{backend.name} {backend.precision}"
        calls.append(label)
        return ms[label] / 1000

    monkeypatch.setattr("rbqe.backends.choose.all_exits_once", fake_time)
    monkeypatch.setattr("rbqe.backends.openvino_installed", lambda: True)
    monkeypatch.setattr("rbqe.backends.native_bf16", lambda: True)

    class FakeOpenVINO:  # no export: the choice logic is under test, not OpenVINO
        name = "openvino"

        def __init__(self, net, precision):
            self.precision = "bf16" if precision == "auto" else precision

    monkeypatch.setattr("rbqe.backends._openvino", lambda net, p: FakeOpenVINO(net, p))
    return calls


def test_auto_measures_once_and_remembers_the_fastest(net, timed, tmp_path):
    from rbqe.backends.choose import CHOICE_FILE

    backend = make_backend("auto", net, CPU)
    assert (backend.name, backend.precision) == ("openvino", "bf16")
    # Each warmed up once, then three rounds taken in turns.
    assert timed == ["torch f32", "torch bf16", "openvino bf16"] * 4
    entries = json.loads((tmp_path / CHOICE_FILE).read_text())
    (key, entry), = entries.items()
    assert "threads" in key and "candidates torch f32, torch bf16, openvino auto" in key
    assert entry["backend"] == "openvino" and entry["ms"]["torch bf16"] == 400.0
    timed.clear()
    backend = make_backend("auto", net, CPU)  # read back, not measured again
    assert (backend.name, backend.precision) == ("openvino", "bf16") and timed == []
    # Asking for f32 is another set of candidates: measured on its own.
    backend = make_backend("auto", net, CPU, precision="f32")
    assert (backend.name, backend.precision) == ("torch", "f32")
    assert timed == ["torch f32", "openvino f32"] * 4


def test_auto_skips_a_candidate_that_fails(net, timed, monkeypatch, caplog):
    def broken(net, precision):
        raise RBQEError("the OpenVINO backend failed to build its stages: no stages today")

    monkeypatch.setattr("rbqe.backends._openvino", broken)
    with caplog.at_level(logging.INFO):
        backend = make_backend("auto", net, CPU)
    assert (backend.name, backend.precision) == ("torch", "bf16")
    assert "no stages today" in caplog.text
    assert "timing torch f32, torch bf16, openvino auto" in caplog.text
    # A corrupt choice file is measured over, not an error.
    from rbqe.backends.choose import choice_path

    choice_path().write_text("{not json")
    timed.clear()
    assert make_backend("auto", net, CPU).precision == "bf16" and timed


def test_the_probe_times_all_five_exits_in_turns(net):
    from rbqe.backends.choose import probe_image, time_candidates

    runs: list[tuple[str, object]] = []

    def counting(name):
        backend = TorchBackend(net)
        start = backend.start

        def start_counted(x, stats=None, *, fast=False):
            run = start(x, stats, fast=fast)
            runs.append((name, run))
            return run

        backend.start = start_counted
        return backend

    x = probe_image(1, side=64)
    assert x.shape == (1, 1, 64, 64) and 0 <= float(x.min()) and float(x.max()) <= 1
    best = time_candidates({"a": counting("a"), "b": counting("b")}, x, runs=2)
    assert set(best) == {"a", "b"} and all(0 < t < 60 for t in best.values())
    assert [name for name, _ in runs] == ["a", "b", "a", "b", "a", "b"]
    assert all(run.exits_done == NUM_EXITS for _, run in runs)


# -- OpenVINO ----------------------------------------------------------------------------------
@needs_openvino
def test_auto_falls_back_to_torch_when_openvino_fails(net, monkeypatch, caplog, tmp_path):
    def broken(*a, **kw):
        raise RuntimeError("no stages today")

    # The torch-only choice measured here must not be what later tests' "auto" reads back
    # from the session's cache (cache_root() reads the variable on every call).
    monkeypatch.setenv("RBQE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr("rbqe.backends.openvino.OpenVINOBackend.__init__", broken)
    with caplog.at_level(logging.WARNING):
        assert make_backend("auto", net, CPU).name == "torch"
    assert "no stages today" in caplog.text
    assert (tmp_path / "backend_choice.json").is_file()  # stored in this test's cache only
    with pytest.raises(RBQEError, match="failed to build its stages: no stages today"):
        make_backend("openvino", net, CPU)


@needs_openvino
def test_precision_follows_what_openvino_reports_for_the_cpu(net):
    from rbqe.backends.openvino import bf16_supported, resolve_precision, shared_core

    core = shared_core()
    has_bf16 = "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert bf16_supported(core) == has_bf16
    assert resolve_precision(core, "auto") == ("bf16" if has_bf16 else "f32")
    assert resolve_precision(core, "f32") == "f32"
    if not has_bf16:
        with pytest.raises(RBQEError, match="no native bf16"):
            resolve_precision(core, "bf16")


@needs_openvino
@pytest.mark.parametrize("size", [(96, 128), (200, 136)])
def test_openvino_f32_matches_torch_fp32(net, make_jpeg, size):
    img = (make_jpeg(*size, seed=1).mean(axis=2, keepdims=True) / 255).astype(np.float32)
    ref = Enhancer(net=net, device="cpu", tile=0, backend="torch").enhance(img, "all")
    ov_enh = Enhancer(net=net, device="cpu", tile=0, backend="openvino", precision="f32")
    assert ov_enh.backend.name == "openvino" and ov_enh.backend.precision == "f32"
    got = ov_enh.enhance(img, "all")
    for a, b in zip(ref.exits, got.exits, strict=True):
        assert np.abs(a.image - b.image).max() <= 1e-4
        assert a.score == pytest.approx(b.score, abs=1e-5)
    assert got.chosen == ref.chosen
    # Auto's walk stops at the same exit for a threshold between two exits' scores.
    scores = sorted(e.score for e in ref.exits)
    threshold = (scores[1] + scores[2]) / 2
    auto_ref = Enhancer(net=net, device="cpu", tile=0, threshold=threshold, backend="torch")
    auto_ov = Enhancer(net=net, device="cpu", tile=0, threshold=threshold, backend="openvino",
                       precision="f32")
    assert auto_ov.enhance(img).chosen == auto_ref.enhance(img).chosen


@needs_openvino
def test_openvino_continues_from_a_kept_session(net, gray_jpeg):
    enh = Enhancer(net=net, device="cpu", tile=0, backend="openvino", precision="f32")
    whole = enh.enhance(gray_jpeg, "all")
    first = enh.enhance(gray_jpeg, 2, keep_session=True)
    enh.continue_exits(first)
    assert [e.exit for e in first.exits] == [1, 2, 3, 4, 5]
    for a, b in zip(first.exits, whole.exits, strict=True):
        np.testing.assert_array_equal(a.image, b.image)


@needs_openvino
@pytest.mark.parametrize("k", [2, 5])
def test_openvino_tiled_matches_untiled_without_seams(net, gray_jpeg, k):
    ov_whole = Enhancer(net=net, device="cpu", tile=0, backend="openvino",
                        precision="f32").enhance(gray_jpeg, k).image
    tiled = Enhancer(net=net, device="cpu", tile=128, backend="openvino", precision="f32")
    res = tiled.enhance(gray_jpeg, k)
    assert res.tiled and res.tiles == len(tiles(288, 320, 128, TILE_OVERLAP))
    assert psnr(res.image, ov_whole) >= 40
    # The shared ECA statistics went through the fixed stages: torch gets the same tiles.
    torch_tiled = Enhancer(net=net, device="cpu", tile=128, backend="torch").enhance(
        gray_jpeg, k).image
    assert np.abs(res.image - torch_tiled).max() <= 1e-4


@needs_openvino
def test_openvino_tiles_smaller_by_default_unless_asked(net):
    # Its stages keep their intermediate tensors: a 1024 px tile peaked near 11 GB.
    assert Enhancer(net=net, device="cpu", backend="openvino", precision="f32").tile \
        == OPENVINO_TILE < DEFAULT_TILE
    assert Enhancer(net=net, device="cpu", tile=1024, backend="openvino",
                    precision="f32").tile == 1024
    assert Enhancer(net=net, device="cpu", tile=0, backend="openvino",
                    precision="f32").tile == 0
    assert Enhancer(net=net, device="cpu", backend="torch").tile == DEFAULT_TILE
    # No 2 MP whole budget either: one 512-pixel tile's pixels.
    assert Enhancer(net=net, device="cpu", backend="openvino", precision="bf16"
                    ).whole_pixels == OPENVINO_TILE ** 2


@needs_openvino
def test_compiled_stages_are_cached_by_weights_hash(net, make_net, monkeypatch, tmp_path):
    from rbqe.backends.openvino import OpenVINOBackend

    monkeypatch.setenv("RBQE_CACHE_DIR", str(tmp_path))
    tiny = make_net(1, seed=11)
    first = OpenVINOBackend(tiny, precision="f32")
    assert first.folder.parent == tmp_path / "openvino"
    assert first.folder.name.startswith(weights_hash(tiny))
    assert len(list(first.folder.glob("stage*_record.xml"))) == NUM_EXITS
    # The tiles' stages too, before any image: a tiled photo's first tiles stalled on
    # their compile, and its time left was taken from them.
    assert len(list(first.folder.glob("stage*_fixed.xml"))) == NUM_EXITS
    assert len(first._compiled) == 2 * NUM_EXITS
    assert any((first.folder / "compiled").iterdir())  # OpenVINO's compiled blobs

    def no_export(*a, **kw):
        raise AssertionError("exported again instead of loading the cache")

    monkeypatch.setattr(OpenVINOBackend, "_export", no_export)
    again = OpenVINOBackend(tiny, precision="f32")
    assert again.folder == first.folder
    other = make_net(1, seed=12)
    assert weights_hash(other) != weights_hash(tiny)
    with pytest.raises(AssertionError, match="exported again"):
        OpenVINOBackend(other, precision="f32")  # other weights: another folder, exported


@needs_openvino
def test_bf16_is_close_to_fp32_where_the_cpu_has_it(net, gray_jpeg):
    from rbqe.backends.openvino import bf16_supported, shared_core

    if not bf16_supported(shared_core()):
        pytest.skip("this CPU has no native bf16 (OpenVINO reports no BF16 capability)")
    ref = Enhancer(net=net, device="cpu", tile=0, backend="torch").enhance(gray_jpeg, "all")
    got = Enhancer(net=net, device="cpu", tile=0, backend="openvino",
                   precision="bf16").enhance(gray_jpeg, "all")
    for a, b in zip(ref.exits, got.exits, strict=True):
        assert psnr(a.image, b.image) >= 50


# -- command line ------------------------------------------------------------------------------
def test_cli_backend_and_precision(tiny_weights, make_jpeg, tmp_path, monkeypatch):
    from PIL import Image

    from tests.clirun import run_cli

    src = tmp_path / "in.png"
    Image.fromarray(make_jpeg(64, 64)).save(src)
    common = ["enhance", str(src), "-o", str(tmp_path / "out"), "--weights", str(tiny_weights),
              "--device", "cpu"]
    monkeypatch.setattr("rbqe.backends.native_bf16", lambda: False)
    rc, err = run_cli([*common, "--backend", "torch", "--precision", "bf16"])
    assert rc == 2 and err.strip() == ("rbqe: error: --precision bf16: this CPU has no native "
                                       "bf16 (AVX512-BF16 or AMX); use --precision f32 or auto")
    report = tmp_path / "r.json"
    rc, err = run_cli([*common, "--backend", "torch", "--report", str(report)])
    assert rc == 0, err
    data = json.loads(report.read_text())
    assert (data["backend"], data["precision"]) == ("torch", "f32")


# A backend made on one thread and freed on another (the garbage collector runs wherever it
# is triggered), then a Ctrl-C on the first: with a Core per backend, OpenVINO's CPU plugin
# unmapped the alternate signal stack it had given the first thread, and the signal killed
# the process (SIGSEGV; the app's tests met it).
_FREED_ON_ANOTHER_THREAD = """
import os, signal, threading
from rbqe.backends.openvino import OpenVINOBackend
from tests.helpers import tiny_net
seen = []
signal.signal(signal.SIGINT, lambda *a: seen.append("handled"))
backends = [OpenVINOBackend(tiny_net(1, seed=7), precision="f32")]
freer = threading.Thread(target=backends.clear)
freer.start()
freer.join()
os.kill(os.getpid(), signal.SIGINT)
print(seen)
"""


@needs_openvino
def test_a_signal_after_a_backend_is_freed_on_another_thread_is_handled():
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", _FREED_ON_ANOTHER_THREAD], cwd=root,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "['handled']"
