"""The Ray engine (``rbqe enhance --engine ray``) against the local engine, on a local Ray
instance with 2 CPUs and tiny generated images. Skipped without the [cluster] extra."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from clirun import run_cli
from PIL import Image

from rbqe.backends import openvino_installed
from rbqe.batch import BatchOptions
from rbqe.io import OUTPUT_LOG, OutputNotes
from tests.helpers import save_tiny_weights


def _jpeg_photo(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth RGB picture with noise, through JPEG quality 20 (uint8)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([xx / width, yy / height, 0.5 + 0.25 * np.sin(xx / 7.0)], axis=-1)
    img += rng.normal(0, 0.03, img.shape).astype(np.float32)
    buf = io.BytesIO()
    Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(buf, "JPEG", quality=20)
    return np.asarray(Image.open(buf).convert("RGB"))


def _ray():
    pytest.importorskip("ray.data", reason="the [cluster] extra (ray[data]) is not installed")
    import ray

    return ray


@pytest.fixture(scope="module")
def ray_local():
    ray = _ray()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Inputs (RGB, grey, RGBA, one bad file), tiny weights and the local engine's run."""
    root = tmp_path_factory.mktemp("cluster")
    src = root / "in"
    src.mkdir()
    for i in range(4):
        Image.fromarray(_jpeg_photo(48 + 8 * i, 40, seed=i)).save(src / f"p{i}.jpg")
    Image.fromarray(_jpeg_photo(40, 48, seed=7)[..., 0]).save(src / "grey.jpg")
    rgba = np.dstack([_jpeg_photo(32, 40, seed=8), np.full((32, 40), 200, np.uint8)])
    Image.fromarray(rgba).save(src / "alpha.png")
    (src / "bad.jpg").write_bytes(b"not a jpeg at all")
    weights = save_tiny_weights(root / "tiny.safetensors")
    rc, err = run_cli(["enhance", str(src), "-o", str(root / "local"), "--weights", str(weights),
                       "--report", str(root / "local.json"), *PINNED])
    assert rc == 1 and "bad.jpg" in err
    return root, src, weights


# Bit-identical outputs need one backend: under "auto" each process (the local run, each
# Ray worker) picks the fastest it measures, and backends differ in the last bit. Pinned to
# torch f32, a score still differed in its 6th decimal between the local run and a worker
# (not yet explained); OpenVINO f32, what "auto" always took before it measured, agrees.
PINNED = ("--backend", "openvino" if openvino_installed() else "torch", "--precision", "f32")
PINNED_KWARGS = {"backend": PINNED[1], "precision": "f32"}  # the same, for run_ray_batch


def _ray_run(corpus, out: str, *extra: str) -> tuple[int, str, dict]:
    root, src, weights = corpus
    rc, err = run_cli(["enhance", str(src), "-o", str(root / out), "--weights", str(weights),
                       "--report", str(root / f"{out}.json"), "--engine", "ray", *PINNED,
                       *extra])
    return rc, err, json.loads((root / f"{out}.json").read_text())


def _by_input(report: dict) -> dict[str, dict]:
    rows = {r["input"]: r for r in report["images"]}
    assert len(rows) == len(report["images"]), "an image was reported twice"
    return rows


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im).copy()


def _same_outputs(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.iterdir() if p.name != OUTPUT_LOG)
    assert names == sorted(p.name for p in b.iterdir() if p.name != OUTPUT_LOG)
    for name in names:
        assert np.array_equal(_pixels(a / name), _pixels(b / name)), name


def test_ray_equals_local_outputs_and_report(ray_local, corpus):
    root = corpus[0]
    rc, err, ray_report = _ray_run(corpus, "ray", "--workers", "2", "--batch-size", "2")
    assert rc == 1
    assert err.count("bad.jpg") == 1 and "not an image file" in err  # one line, as locally
    _same_outputs(root / "local", root / "ray")

    local_report = json.loads((root / "local.json").read_text())
    assert ray_report.keys() == local_report.keys()
    assert ray_report["summary"].keys() == local_report["summary"].keys()
    local_rows, ray_rows = _by_input(local_report), _by_input(ray_report)
    assert ray_rows.keys() == local_rows.keys()
    for name, want in local_rows.items():
        got = ray_rows[name]
        assert got.keys() == want.keys(), name
        assert got["times_ms"].keys() == want["times_ms"].keys(), name
        outputs = {k: v.replace(str(root / "local"), str(root / "ray"))
                   for k, v in want["outputs"].items()}
        assert got["outputs"] == outputs, name
        for key in ("status", "exit", "scores", "gmacs", "size", "error", "tiling"):
            assert got.get(key) == want.get(key), (name, key)
    # The workers note their outputs as the local engine does: a re-run of either kind,
    # with these weights or others, judges them alike.
    for output in (p.name for p in (root / "local").iterdir() if p.name != OUTPUT_LOG):
        made = [OutputNotes().get(root / run / output) for run in ("local", "ray")]
        assert made[0] is not None and made[1] is not None, output
        assert made[0].made == made[1].made and "weights" in made[0].made, output
    for key in ("processed", "failed", "skipped", "exit_histogram", "gmacs", "gmacs_exit5"):
        assert ray_report["summary"][key] == local_report["summary"][key], key
    assert ray_report["summary"]["failed"] == 1 and ray_report["summary"]["processed"] == 6


def test_rerun_skips_everything(ray_local, corpus):
    root = corpus[0]
    _ray_run(corpus, "again")
    before = {p.name: p.stat().st_mtime_ns for p in (root / "again").iterdir()}
    rc, _, report = _ray_run(corpus, "again")
    rows = _by_input(report)
    assert {r["status"] for n, r in rows.items() if "bad" not in n} == {"skipped"}
    assert rows[str(corpus[1] / "bad.jpg")]["status"] == "failed"  # a bad file fails each run
    assert {p.name: p.stat().st_mtime_ns for p in (root / "again").iterdir()} == before
    assert rc == 1


def test_killed_worker_loses_no_image_and_reports_none_twice(ray_local, corpus):
    from rbqe.cluster import EnhanceWorker, RayOptions, run_ray_batch

    root, src, weights = corpus
    out, log = root / "killed", root / "calls.log"

    class DiesOnce(EnhanceWorker):
        """Kills its own process (SIGKILL) mid-batch, after writing its first image, once."""

        def enhance_one(self, item):
            import os
            import signal

            row = super().enhance_one(item)
            with open(log, "a") as fh:
                fh.write(f"{os.getpid()} {item}\n")
            marker = log.with_suffix(".killed")
            if not marker.exists():
                marker.write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
            return row

    inputs = [p for p in sorted(src.iterdir()) if p.name != "bad.jpg"]
    summary = run_ray_batch({"weights": str(weights), "device": "cpu", **PINNED_KWARGS}, inputs,
                            BatchOptions(out_dir=out), RayOptions(workers=1, batch_size=3),
                            report=root / "killed.json", worker=DiesOnce)
    killed = int(log.with_suffix(".killed").read_text())
    pids = {int(line.split()[0]) for line in log.read_text().splitlines()}
    assert killed in pids and len(pids) >= 2, "the actor was not restarted"
    rows = _by_input(json.loads((root / "killed.json").read_text()))
    assert sorted(rows) == [str(p) for p in inputs]
    assert {r["status"] for r in rows.values()} == {"ok"}
    assert summary.processed == len(inputs) and summary.failed == 0
    local = root / "local"
    names = sorted(p.name for p in out.iterdir() if p.name != OUTPUT_LOG)
    for name in names:
        assert not name.startswith("."), f"left behind: {name}"
        assert np.array_equal(_pixels(out / name), _pixels(local / name)), name
    assert len(names) == len(inputs)


def test_output_folder_not_writable_from_worker(ray_local, corpus, tmp_path):
    from rbqe.cluster import ClusterError, run_ray_batch

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ClusterError, match="not writable from a Ray worker"):
        run_ray_batch({"weights": str(corpus[2]), "device": "cpu"}, [corpus[1]],
                      BatchOptions(out_dir=blocker / "out"))


def test_without_ray_one_clear_error(tmp_path, tiny_weights, monkeypatch):
    Image.fromarray(_jpeg_photo(32, 32, seed=0)).save(tmp_path / "a.jpg")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    rc, err = run_cli(["enhance", str(tmp_path / "a.jpg"), "-o", str(tmp_path / "out"),
                       "--weights", str(tiny_weights), "--engine", "ray"])
    assert rc == 2
    assert "pip install 'rbqe-studio[cluster]'" in err
    assert not (tmp_path / "out").exists()


def test_what_planning_warns_of_is_in_the_ray_report_too(tmp_path, tiny_weights):
    """An output renamed for an input (x.jpg -> x_rbqe.jpg) says so in its row, as the
    local engine's does. Here x_rbqe.jpg is taken (a folder), so no worker is needed."""
    folder = tmp_path / "album"
    (folder / "x_rbqe.jpg").mkdir(parents=True)
    Image.fromarray(_jpeg_photo(32, 32, seed=0)).save(folder / "x.jpg")
    report = tmp_path / "r.json"
    rc, err = run_cli(["enhance", str(folder), "-o", str(folder), "--format", "jpeg",
                       "--weights", str(tiny_weights), "--engine", "ray", "--report",
                       str(report)])
    assert rc == 1 and "x_rbqe.jpg already exists" in err, err
    (row,) = json.loads(report.read_text())["images"]
    assert row["warnings"] == ["output name equals an input file; adding '_rbqe'"]


def test_outputs_of_other_weights_are_not_done_for_the_ray_engine_either(tmp_path,
                                                                         tiny_weights):
    """The driver judges a file in an output's place as the local engine does (here the
    only one: no worker is needed); with other weights it was reported skipped."""
    folder, out = tmp_path / "album", tmp_path / "out"
    folder.mkdir()
    Image.fromarray(_jpeg_photo(32, 32, seed=0)).save(folder / "x.jpg")
    rc, err = run_cli(["enhance", str(folder), "-o", str(out), "--weights", str(tiny_weights)])
    assert rc == 0, err
    other = save_tiny_weights(tmp_path / "other.safetensors", seed=1)
    report = tmp_path / "r.json"
    rc, err = run_cli(["enhance", str(folder), "-o", str(out), "--weights", str(other),
                       "--engine", "ray", "--report", str(report)])
    assert rc == 1, err
    (row,) = json.loads(report.read_text())["images"]
    assert row["status"] == "failed"
    assert f"{out / 'x.png'} already exists and was made by other weights (tiny.safetensors; " \
           f"this run: other.safetensors)" in row["error"]


def test_a_workers_warnings_are_said_on_the_drivers_stderr(tmp_path, tiny_weights):
    """A worker logs in its own process: what it warned of (here a JPEG output losing the
    alpha) was only in the report rows, not on stderr as with the local engine. Said once;
    planning's warnings (said on the driver already) not twice."""
    folder = tmp_path / "album"
    (folder / "x_rbqe.jpg").mkdir(parents=True)  # planning warns: x.jpg's output renamed
    Image.fromarray(_jpeg_photo(32, 32, seed=0)).save(folder / "x.jpg")
    rgba = np.dstack([_jpeg_photo(32, 32, seed=1), np.full((32, 32), 128, np.uint8)])
    Image.fromarray(rgba).save(folder / "y.png")
    # A process of its own: in pytest's, its log capture takes the warnings from stderr.
    done = subprocess.run([sys.executable, "-m", "rbqe", "enhance", str(folder), "-o",
                           str(folder), "--format", "jpeg", "--weights", str(tiny_weights),
                           "--engine", "ray", "--workers", "1"],
                          capture_output=True, text=True, timeout=600)
    rc, err = done.returncode, done.stderr
    assert rc == 1, err
    lost_alpha = [ln for ln in err.splitlines() if "y.png" in ln and "transparen" in ln]
    # As the local engine says it: the input, and the output it is about.
    assert lost_alpha == [f"rbqe: warning: {folder / 'y.png'} -> {folder / 'y.jpg'}: JPEG "
                          f"cannot store transparency; the transparent parts are filled "
                          f"with white"], err
    assert err.count("output name equals an input file") == 1, err


def test_cancel_reports_rows_so_far_and_leaves_no_partial_output(ray_local, corpus):
    from rbqe.batch import BatchEvents
    from rbqe.cluster import EnhanceWorker, run_ray_batch

    root, src, weights = corpus
    out, seen = root / "cancelled", []
    first_done = root / "cancel.first"

    class WaitsForTheCancel(EnhanceWorker):
        """After the first image anywhere, holds each later one until the stop flag is set,
        so that the cancel always finds images left (the tiny model would otherwise finish
        all seven before the driver sees the first row)."""

        def __call__(self, batch):
            import time

            deadline = time.monotonic() + 120
            while first_done.exists() and not self._stopping() and time.monotonic() < deadline:
                time.sleep(0.05)
            rows = super().__call__(batch)
            first_done.touch()
            return rows

    summary = run_ray_batch({"weights": str(weights), "device": "cpu", **PINNED_KWARGS}, [src],
                            BatchOptions(out_dir=out), report=root / "cancelled.json",
                            events=BatchEvents(on_item_done=lambda i, item: seen.append(item)),
                            cancel=lambda: len(seen) >= 1, worker=WaitsForTheCancel)
    report = json.loads((root / "cancelled.json").read_text())
    assert summary.cancelled and report["summary"]["cancelled"] is True
    assert 1 <= len(report["images"]) < 7
    # The workers finished the images in hand: no temp file or claim is left, and every
    # output written is whole and has its row in the report.
    written = sorted(p.name for p in out.iterdir() if p.name != OUTPUT_LOG)
    reported = sorted(Path(o).name for r in report["images"] for o in r["outputs"].values())
    assert written == reported
    for name in written:
        assert np.array_equal(_pixels(out / name), _pixels(root / "local" / name)), name


def test_a_second_ctrl_c_still_writes_the_report_of_the_rows_so_far(ray_local, corpus):
    # The local engine writes its report after a second Ctrl-C (stop at once); the Ray
    # engine's, written only at the end, was lost.
    from rbqe.batch import BatchEvents
    from rbqe.cluster import run_ray_batch

    root, src, weights = corpus
    out, seen = root / "aborted", []

    def second_ctrl_c() -> bool:
        # What the CLI's handler raises on the second signal: in the main thread. The
        # engine's cancel watch (a thread) is left out; raised there too, it escaped
        # that thread (CI, once) and the run ended another way.
        if seen and threading.current_thread() is threading.main_thread():
            raise KeyboardInterrupt
        return False

    with pytest.raises(KeyboardInterrupt):
        run_ray_batch({"weights": str(weights), "device": "cpu", **PINNED_KWARGS}, [src],
                      BatchOptions(out_dir=out), report=root / "aborted.json",
                      events=BatchEvents(on_item_done=lambda i, item: seen.append(item)),
                      cancel=second_ctrl_c)
    report = json.loads((root / "aborted.json").read_text())
    assert report["summary"]["cancelled"] is True
    assert 1 <= len(report["images"]) == len(seen)


def test_a_cancel_reaches_the_workers_inside_a_batch(ray_local, corpus):
    # With --batch-size 7 and one worker the whole run is one batch: the driver gets no
    # row back until it ends, so a cancel seen only between rows waited for all seven.
    import time

    from rbqe.cluster import EnhanceWorker, RayOptions, run_ray_batch

    root, src, weights = corpus
    out, first_done = root / "cancelled_in_batch", root / "batch.first"

    class HoldsUntilStopped(EnhanceWorker):
        """Holds every image after the first until the stop flag is set (or 20 s: without
        the cancel reaching it, the run then goes on to the end, uncancelled)."""

        def enhance_one(self, item):
            deadline = time.monotonic() + 20
            while first_done.exists() and not self._stopping() and time.monotonic() < deadline:
                time.sleep(0.05)
            row = super().enhance_one(item)
            first_done.touch()
            return row

    summary = run_ray_batch({"weights": str(weights), "device": "cpu", **PINNED_KWARGS}, [src],
                            BatchOptions(out_dir=out), RayOptions(workers=1, batch_size=7),
                            report=root / "cancelled_in_batch.json",
                            cancel=first_done.exists, worker=HoldsUntilStopped)
    report = json.loads((root / "cancelled_in_batch.json").read_text())
    assert summary.cancelled and report["summary"]["cancelled"] is True
    assert 1 <= len(report["images"]) <= 2  # the first, and at most the one in hand


def test_a_full_disk_stops_the_ray_batch_as_the_local_one(ray_local, corpus):
    from rbqe.cluster import EnhanceWorker, RayOptions, run_ray_batch

    root, src, weights = corpus
    out = root / "full"

    first_done = root / "full.first"

    class DiskFull(EnhanceWorker):
        """Every image write fails as on a full disk (patched in the worker's process).
        After the first, each image waits for the stop flag (the tiny model would
        otherwise finish all before the driver reads the first row)."""

        def __call__(self, batch):
            import time

            # Short: Ray may hand the driver a row only once the next task is done.
            deadline = time.monotonic() + 10
            while first_done.exists() and not self._stopping() and time.monotonic() < deadline:
                time.sleep(0.05)
            rows = super().__call__(batch)
            first_done.touch()
            return rows

        def enhance_many(self, items):
            import errno

            import rbqe.batch
            from rbqe.errors import ImageWriteError

            def full(path, *args, **kwargs):
                error = ImageWriteError(path, "disk full")
                error.errno = errno.ENOSPC
                raise error

            rbqe.batch.save_like = full
            return super().enhance_many(items)

    inputs = [p for p in sorted(src.iterdir()) if p.name != "bad.jpg"]
    summary = run_ray_batch({"weights": str(weights), "device": "cpu", **PINNED_KWARGS}, inputs,
                            BatchOptions(out_dir=out), RayOptions(workers=1, batch_size=1),
                            report=root / "full.json", worker=DiskFull)
    report = json.loads((root / "full.json").read_text())
    assert summary.stopped and "(disk full); batch stopped" in summary.stopped
    assert report["summary"]["stopped"] == summary.stopped and not summary.cancelled
    assert report["summary"]["total"] == len(inputs) > len(report["images"]) >= 1
    assert {r["status"] for r in report["images"]} == {"failed"}
    for row in report["images"]:  # the input, then the output, as the local engine says
        name = Path(row["input"]).stem + ".png"
        assert row["error"] == f"{row['input']} -> {out / name}: disk full"
    assert [p.name for p in out.iterdir() if p.name != OUTPUT_LOG] == []  # nothing partial


def test_ray_flags_need_the_ray_engine(tmp_path):
    rc, err = run_cli(["enhance", str(tmp_path), "-o", str(tmp_path / "out"), "--workers", "4"])
    assert rc == 2 and "--workers only apply with --engine ray" in err


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # free once the socket closes: nothing listens there


def test_an_address_where_nothing_listens_is_one_error_not_a_hang(corpus):
    from rbqe.cluster import ClusterError, RayOptions, run_ray_batch, unreachable

    _ray()
    port = _closed_port()
    t0 = time.monotonic()
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        with pytest.raises(ClusterError, match=f"at {address}: connection refused"):
            run_ray_batch({"weights": str(corpus[2]), "device": "cpu"}, [corpus[1]],
                          BatchOptions(out_dir=corpus[0] / "never"), RayOptions(address=address))
    assert time.monotonic() - t0 < 30  # Ray alone retried for over 5 minutes
    assert not (corpus[0] / "never").exists()
    assert unreachable("no-such-host.invalid:6379") == "no host is called no-such-host.invalid"
    assert unreachable("auto") is None  # left to Ray, which says at once when none runs


def test_a_worker_no_node_can_hold_is_one_error_not_a_wait(ray_local, corpus):
    from rbqe.cluster import ClusterError, RayOptions, run_ray_batch

    for opts in (RayOptions(gpus_per_worker=1), RayOptions(cpus_per_worker=8)):
        with pytest.raises(ClusterError, match="no node of the Ray cluster can hold a worker.*"
                                               "its nodes have: 2 CPUs and 0 GPUs$"):
            run_ray_batch({"weights": str(corpus[2]), "device": "cpu"}, [corpus[1]],
                          BatchOptions(out_dir=corpus[0] / "never"), opts)
    assert not (corpus[0] / "never").exists()


def test_starting_ray_keeps_the_callers_sigterm_handler() -> None:
    """ray.init put its own SIGTERM handler (exit at once, a stack dump) in place of the
    CLI's, so a SIGTERM to `rbqe enhance --engine ray` wrote no report; a fake Ray that
    does the same shows the caller's handler kept. (No Ray needed.)"""
    import signal
    from types import SimpleNamespace

    from rbqe.cluster import RayOptions, _connected

    def rays_own(signum, frame):  # what ray.init installs
        raise AssertionError("Ray's handler")

    def init(**kwargs):
        signal.signal(signal.SIGTERM, rays_own)

    ray = SimpleNamespace(is_initialized=lambda: False, init=init, shutdown=lambda: None)
    mine = lambda signum, frame: None  # noqa: E731  (the CLI's graceful stop)
    before = signal.signal(signal.SIGTERM, mine)
    try:
        with _connected(ray, RayOptions()) as started:
            assert started and signal.getsignal(signal.SIGTERM) is mine
        # A caller with no handler of its own keeps Ray's (its exit runs ray.shutdown).
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with _connected(ray, RayOptions()):
            assert signal.getsignal(signal.SIGTERM) is rays_own
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_workers_error_names_paths_as_the_user_did_and_only_whole_ones() -> None:
    """The planned folder /home/u/photos turned "/home/u/photos_out/x.png: …" into
    "._out/x.png: …" (plain substring replacement, shortest first)."""
    from rbqe.cluster import _as_shown

    pairs = [("/home/u/photos/x.jpg", "x.jpg"), ("/home/u/photos", "."),
             ("/home/u/photos_out/x.png", "/home/u/photos_out/x.png"),
             ("/home/u/photos_out", "/home/u/photos_out")]
    assert _as_shown("/home/u/photos_out/x.png: no space left on device", pairs) == \
        "/home/u/photos_out/x.png: no space left on device"
    assert _as_shown("/home/u/photos/x.jpg: truncated", pairs) == "x.jpg: truncated"
    assert _as_shown("cannot write in /home/u/photos: read-only file system", pairs) == \
        "cannot write in .: read-only file system"
    assert _as_shown("/data/home/u/photos/x.jpg: bad", pairs) == \
        "/data/home/u/photos/x.jpg: bad"  # another path that merely contains it


def test_the_cancel_watch_stops_the_workers_on_a_keyboard_interrupt(monkeypatch) -> None:
    # A cancel check that raises KeyboardInterrupt (stop at once) escaped the watch
    # thread; the workers' stop flag was never set from it.
    from rbqe.cluster import _watch_cancel

    set_calls: list[int] = []
    stop = type("Flag", (), {"set": type("Set", (), {
        "remote": staticmethod(lambda: set_calls.append(1))})})
    escaped: list[object] = []
    monkeypatch.setattr(threading, "excepthook", escaped.append)

    def cancel() -> bool:
        raise KeyboardInterrupt

    with _watch_cancel(cancel, stop):
        deadline = time.monotonic() + 5
        while not set_calls and time.monotonic() < deadline:
            time.sleep(0.05)
    assert set_calls == [1] and escaped == []
