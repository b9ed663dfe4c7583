"""Batches end to end: folders, re-runs, reports, exit codes, interrupts and kills (issue 5).

Everything runs through ``rbqe enhance`` (in-process ``rbqe.cli.main`` or a real
subprocess) or :func:`rbqe.batch.run_batch`, with a tiny random model (width 8).

Kill tests start a real ``rbqe enhance`` process on a folder of small photos, wait until
the first output appears (polling, no fixed sleeps), then send SIGINT or SIGKILL, and
check that nothing partial is left under a final name and that a re-run completes the
rest. A deterministic variant kills the process from inside, between writing a temp
file and renaming it, which is the worst moment for atomicity.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import numpy as np
import pytest
from clirun import run_cli
from corpus import pattern, sha256
from PIL import Image

from rbqe.batch import BatchEvents, BatchOptions, run_batch
from rbqe.engine import Enhancer
from rbqe.io import OUTPUT_LOG, STALE_TEMP_AGE_S, estimate_jpeg_quality

TEMP_RE = re.compile(r"^\.rbqe-.*\.part$")  # rbqe.io's atomic-write temp files
STOP_NOTICE = "rbqe: stopping after the current stage (Ctrl-C again to abort)"


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def enhance(weights: Path, *args: str | Path) -> tuple[int, str, dict | None]:
    """Runs ``rbqe enhance ARGS --weights W --report R`` in-process; returns the report too."""
    argv = [str(a) for a in args]
    report = Path(argv[argv.index("-o") + 1] + ".report.json")
    report.unlink(missing_ok=True)
    rc, err = run_cli(["enhance", *argv, "--weights", str(weights), "--report", str(report)])
    doc = json.loads(report.read_text(encoding="utf-8")) if report.exists() else None
    return rc, err, doc


def statuses(doc: dict) -> dict[str, str]:
    return {Path(e["input"]).name: e["status"] for e in doc["images"]}


PROGRESS_RE = re.compile(r"^rbqe: \[\d+/\d+\] ")  # one line per image when not a TTY


def lines(text: str) -> list[str]:
    """Non-empty stderr lines, without the per-image progress lines."""
    return [ln for ln in text.splitlines() if ln.strip() and not PROGRESS_RE.match(ln)]


def photo(path: Path, size: int, seed: int, *, mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = pattern(size, size, 3 if mode == "RGB" else 1, seed=seed)
    Image.fromarray(arr if mode == "RGB" else arr[..., 0]).save(path)
    return path


def tree(folder: Path) -> list[str]:
    """Every file under ``folder``, relative, hidden ones included but rbqe's note of its
    outputs (:data:`OUTPUT_LOG`, in every output folder)."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.name != OUTPUT_LOG)


def hidden_files(folder: Path) -> list[str]:
    """Hidden names in ``folder`` but rbqe's note of its outputs (temps and claims)."""
    return [p.name for p in folder.iterdir() if p.name.startswith(".") and p.name != OUTPUT_LOG]


def complete_image(path: Path) -> bool:
    """True if the whole file decodes (a partial PNG/JPEG raises)."""
    try:
        with Image.open(path) as im:
            im.load()
        return True
    except (OSError, SyntaxError, ValueError):
        return False


def snapshot(folder: Path) -> dict[str, tuple[int, int, str]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, sha256(p))
            for p in folder.iterdir() if p.is_file()}


# --------------------------------------------------------------------------------------
# Folders, names, re-runs
# --------------------------------------------------------------------------------------


def test_recursive_keeps_the_folder_structure(weights, tmp_path) -> None:
    src = tmp_path / "in"
    photo(src / "top.jpg", 16, 1)
    photo(src / "a" / "x.jpg", 16, 2)
    photo(src / "b" / "x.jpg", 16, 3)
    photo(src / "b" / "c" / "y.png", 16, 4, mode="L")
    photo(src / ".hidden" / "z.jpg", 16, 5)  # hidden folders are skipped
    (src / "b" / "._x.jpg").write_bytes(b"\x00\x05\x16\x07 mac resource fork")  # hidden file
    rc, err, doc = enhance(weights, src, "-o", tmp_path / "out", "-r")
    assert rc == 0, err
    assert tree(tmp_path / "out") == ["a/x.png", "b/c/y.png", "b/x.png", "top.png"]
    assert statuses(doc) == {"top.jpg": "ok", "x.jpg": "ok", "y.png": "ok"}
    assert len(doc["images"]) == 4
    with Image.open(tmp_path / "out" / "b" / "c" / "y.png") as im:
        assert im.mode == "L"

    rc, err, doc = enhance(weights, src, "-o", tmp_path / "flat")
    assert rc == 0, err
    assert tree(tmp_path / "flat") == ["top.png"]


def test_rerun_skips_existing_outputs_unless_overwrite(weights, tmp_path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(3):
        photo(src / f"p{i}.jpg", 16, i)
    rc, err, doc = enhance(weights, src, "-o", out)
    assert rc == 0 and statuses(doc) == {"p0.jpg": "ok", "p1.jpg": "ok", "p2.jpg": "ok"}
    first = snapshot(out)
    exits = [e["exit"] for e in doc["images"]]

    rc, err, doc = enhance(weights, src, "-o", out)
    assert rc == 0, err
    assert statuses(doc) == {"p0.jpg": "skipped", "p1.jpg": "skipped", "p2.jpg": "skipped"}
    assert all(e["outputs"] == {"auto": str(out / f"p{i}.png")}
               for i, e in enumerate(doc["images"]))
    # The exit each holds, from its note in the output log (a skipped row named none).
    assert [e.get("exit") for e in doc["images"]] == exits
    assert "error" not in doc["images"][0]
    assert lines(err) == ["rbqe: 0 enhanced, 3 skipped, 0 failed of 3"]
    assert snapshot(out) == first  # not even touched

    (out / "p1.png").unlink()
    rc, err, doc = enhance(weights, src, "-o", out)
    assert rc == 0
    assert statuses(doc) == {"p0.jpg": "skipped", "p1.jpg": "ok", "p2.jpg": "skipped"}

    before = snapshot(out)
    rc, err, doc = enhance(weights, src, "-o", out, "--overwrite")
    assert rc == 0 and statuses(doc) == {"p0.jpg": "ok", "p1.jpg": "ok", "p2.jpg": "ok"}
    after = snapshot(out)
    assert sorted(after) == sorted(before)
    # Atomically replaced: new inodes (the note of the outputs is appended to in place).
    assert all(after[n][0] != before[n][0] for n in after if n != OUTPUT_LOG)
    assert tree(out) == ["p0.png", "p1.png", "p2.png"]


def test_report_lists_failures_with_the_stderr_line_and_exit_codes(weights, tmp_path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    photo(src / "good.jpg", 16, 1)
    (src / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    (src / "zero.png").write_bytes(b"")
    rc, err, doc = enhance(weights, src, "-o", out)
    assert rc == 1
    assert statuses(doc) == {"bad.jpg": "failed", "good.jpg": "ok", "zero.png": "failed"}
    failed = [e for e in doc["images"] if e["status"] == "failed"]
    assert [e["error"] for e in failed] == [
        f"{src / 'bad.jpg'}: truncated or corrupt image data",
        f"{src / 'zero.png'}: empty file (0 bytes)",
    ]
    assert lines(err) == [*(f"rbqe: error: {e['error']}" for e in failed),
                          "rbqe: 1 enhanced, 0 skipped, 2 failed of 3"]
    assert doc["summary"] | {"total_ms": 0, "gmacs": 0, "gmacs_exit5": 0,
                             "saved_fraction": 0, "exit_histogram": {}} == {
        "processed": 1, "failed": 2, "skipped": 0, "cancelled": False, "total": 3,
        "stopped": None, "total_ms": 0,
        "gmacs": 0, "gmacs_exit5": 0, "saved_fraction": 0, "exit_histogram": {}}
    assert tree(out) == ["good.png"]

    # Re-run: the good one is skipped, the bad ones are reported again; still exit 1.
    rc, err, doc = enhance(weights, src, "-o", out)
    assert rc == 1
    assert statuses(doc) == {"bad.jpg": "failed", "good.jpg": "skipped", "zero.png": "failed"}

    # Nothing failing any more: exit 0.
    (src / "bad.jpg").unlink()
    (src / "zero.png").unlink()
    rc, err, doc = enhance(weights, src, "-o", out)
    assert rc == 0 and statuses(doc) == {"good.jpg": "skipped"}


def _same_folder_inputs(folder: Path) -> dict[str, str]:
    photo(folder / "a.jpg", 16, 1)
    photo(folder / "a.png", 16, 2)  # same stem as a.jpg; a.png is also a would-be output
    photo(folder / "b.png", 16, 3)  # its plain output name b.png is the input itself
    photo(folder / "C.jpg", 16, 4)
    photo(folder / "c.webp", 16, 5)  # differs from C.jpg only in case
    return {p.name: sha256(p) for p in folder.iterdir()}


def test_same_input_and_output_folder_overwrites_nothing(weights, tmp_path) -> None:
    folder = tmp_path / "photos"
    inputs = _same_folder_inputs(folder)
    rc, err, doc = enhance(weights, folder, "-o", folder)
    assert rc == 0, err
    assert {p.name: sha256(p) for p in folder.iterdir() if p.name in inputs} == inputs
    outputs = [Path(p) for e in doc["images"] for p in e["outputs"].values()]
    names = [p.name for p in outputs]
    assert len(outputs) == len(inputs)
    assert len({n.casefold() for n in names}) == len(names)  # collision-free, any case rule
    assert not {n.casefold() for n in names} & {n.casefold() for n in inputs}
    assert all(p.parent == folder and complete_image(p) for p in outputs)
    # Nothing else but the hidden note of the outputs, which a re-run needs (next test).
    assert sorted(os.listdir(folder)) == sorted([*inputs, *names, OUTPUT_LOG])


def outputs_of(doc: dict) -> dict[str, list[str]]:
    return {Path(e["input"]).name: sorted(Path(p).name for p in e["outputs"].values())
            for e in doc["images"]}


def test_rerun_into_the_input_folder_skips_everything(weights, tmp_path) -> None:
    folder = tmp_path / "photos"
    inputs = _same_folder_inputs(folder)
    rc, _, first = enhance(weights, folder, "-o", folder)
    assert rc == 0
    before = snapshot(folder)
    rc, err, doc = enhance(weights, folder, "-o", folder)
    assert rc == 0, err
    # The earlier outputs are not inputs: the same five images, each skipped, with the
    # same output names as the first run (the collision names did not change).
    assert statuses(doc) == dict.fromkeys(inputs, "skipped")
    assert outputs_of(doc) == outputs_of(first)
    assert snapshot(folder) == before  # not even touched
    assert lines(err) == ["rbqe: 0 enhanced, 5 skipped, 0 failed of 5"]

    # --overwrite redoes the five, under the same names, and still writes no input.
    rc, err, doc = enhance(weights, folder, "-o", folder, "--overwrite")
    assert rc == 0, err
    assert statuses(doc) == dict.fromkeys(inputs, "ok")
    assert outputs_of(doc) == outputs_of(first)
    assert sorted(os.listdir(folder)) == sorted(before)
    assert {n: sha256(folder / n) for n in inputs} == inputs


def test_own_photos_in_the_output_folder_are_still_inputs(weights, tmp_path) -> None:
    folder = tmp_path / "photos"
    photo(folder / "trip.jpg", 16, 1)
    rc, err, doc = enhance(weights, folder, "-o", folder)
    assert rc == 0 and statuses(doc) == {"trip.jpg": "ok"}, err
    # New photos of the user's: 'x.png' looks like an output name but has no source
    # beside it, and 'a.png' is named like its own output.
    photo(folder / "x.png", 16, 2)
    photo(folder / "a.png", 16, 3)
    a_hash = sha256(folder / "a.png")
    rc, err, doc = enhance(weights, folder, "-o", folder)
    assert rc == 0, err
    assert statuses(doc) == {"trip.jpg": "skipped", "x.png": "ok", "a.png": "ok"}
    assert outputs_of(doc) == {"trip.jpg": ["trip.png"], "x.png": ["x_rbqe.png"],
                               "a.png": ["a_rbqe.png"]}
    assert sha256(folder / "a.png") == a_hash  # an input is never written
    rc, err, doc = enhance(weights, folder, "-o", folder)
    assert rc == 0 and set(statuses(doc).values()) == {"skipped"}, err
    assert len(doc["images"]) == 3

    # Once its source is gone, an earlier output is a photo like any other.
    (folder / "trip.jpg").unlink()
    rc, err, doc = enhance(weights, folder, "-o", folder)
    assert rc == 0, err
    assert statuses(doc) == {"trip.png": "ok", "x.png": "skipped", "a.png": "skipped"}
    assert outputs_of(doc)["trip.png"] == ["trip_rbqe.png"]


def test_rerun_into_the_input_tree_recursive_skips_everything(weights, tmp_path) -> None:
    src = tmp_path / "photos"
    photo(src / "top.jpg", 16, 1)
    photo(src / "a" / "x.jpg", 16, 2)
    photo(src / "a" / "b" / "y.png", 16, 3)  # its own name is taken: y_rbqe.png
    rc, err, doc = enhance(weights, src, "-r", "-o", src)
    assert rc == 0 and set(statuses(doc).values()) == {"ok"}, err
    expected = ["a/b/y.png", "a/b/y_rbqe.png", "a/x.jpg", "a/x.png", "top.jpg", "top.png"]
    assert [n for n in tree(src) if not n.endswith(OUTPUT_LOG)] == expected
    before = {n: sha256(src / n) for n in tree(src)}
    rc, err, doc = enhance(weights, src, "-r", "-o", src)
    assert rc == 0, err
    assert statuses(doc) == {"top.jpg": "skipped", "x.jpg": "skipped", "y.png": "skipped"}
    assert {n: sha256(src / n) for n in tree(src)} == before
    # Flat now, over the same folder: the top photo only; the outputs are still no inputs.
    rc, err, doc = enhance(weights, src, "-o", src)
    assert rc == 0 and statuses(doc) == {"top.jpg": "skipped"}, err


def test_exit_all_into_the_input_folder_then_other_modes(weights, tmp_path) -> None:
    folder = tmp_path / "photos"
    photo(folder / "p.jpg", 32, 1)
    rc, err, doc = enhance(weights, folder, "-o", folder, "--exit", "all")
    assert rc == 0, err
    exits = [f"p.exit{k}.png" for k in range(1, 6)]
    assert sorted(os.listdir(folder)) == sorted(["p.jpg", *exits, OUTPUT_LOG])
    rc, err, doc = enhance(weights, folder, "-o", folder, "--exit", "all")
    assert rc == 0 and statuses(doc) == {"p.jpg": "skipped"}, err
    # Other options: new outputs for p.jpg, and the exit files are not enhanced again.
    rc, err, doc = enhance(weights, folder, "-o", folder, "--exit", "2", "--suffix", "_s")
    assert rc == 0 and statuses(doc) == {"p.jpg": "ok"}, err
    rc, err, doc = enhance(weights, folder, "-o", folder)
    assert rc == 0 and statuses(doc) == {"p.jpg": "ok"}, err
    assert sorted(os.listdir(folder)) == sorted(
        ["p.jpg", *exits, "p_s.png", "p.png", OUTPUT_LOG])


def test_output_folder_inside_the_input_holds_no_input_but_the_users(weights,
                                                                     tmp_path) -> None:
    src = tmp_path / "in"
    photo(src / "a.jpg", 16, 1)
    photo(src / "sub" / "b.jpg", 16, 2)
    out = src / "enhanced"
    rc, err, doc = enhance(weights, src, "-r", "-o", out)
    assert rc == 0 and len(doc["images"]) == 2, err
    rc, err, doc = enhance(weights, src, "-r", "-o", out)
    assert rc == 0, err
    assert rc == 0 and statuses(doc) == {"a.jpg": "skipped", "b.jpg": "skipped"}
    assert tree(out) == ["a.png", "sub/b.png"]
    # A photo of the user's in it is an input like any other (it used to be left out
    # without a word); rbqe's outputs there are not.
    photo(out / "mine.jpg", 16, 3)
    rc, err, doc = enhance(weights, src, "-r", "-o", out)
    assert rc == 0, err
    assert statuses(doc) == {"a.jpg": "skipped", "b.jpg": "skipped", "mine.jpg": "ok"}
    rc, err, doc = enhance(weights, src, "-r", "-o", out)
    assert rc == 0 and set(statuses(doc).values()) == {"skipped"}, err
    assert tree(out) == ["a.png", "enhanced/mine.png", "mine.jpg", "sub/b.png"]


def test_a_sub_folder_of_photos_as_the_output_folder_keeps_its_photos(weights,
                                                                      tmp_path) -> None:
    # `-o photos/sub` with photos in sub: they used to vanish from the batch, and an
    # earlier output made from one of them (in another output folder) was then taken
    # for a photo of the user's and enhanced again.
    src = tmp_path / "photos"
    photo(src / "top.jpg", 16, 1)
    photo(src / "sub" / "inner.jpg", 16, 2)
    rc, err, doc = enhance(weights, src, "-r", "-o", src / "enh")
    assert rc == 0 and len(doc["images"]) == 2, err
    rc, err, doc = enhance(weights, src, "-r", "-o", src / "sub")
    assert rc == 0, err
    assert statuses(doc) == {"top.jpg": "ok", "inner.jpg": "ok"}


def test_exit_all_writes_one_file_per_exit(weights, tmp_path) -> None:
    src = photo(tmp_path / "in" / "p.jpg", 32, 1)
    rc, err, doc = enhance(weights, src, "-o", tmp_path / "out", "--exit", "all")
    assert rc == 0, err
    assert tree(tmp_path / "out") == [f"p.exit{k}.png" for k in range(1, 6)]
    entry = doc["images"][0]
    assert entry["outputs"] == {str(k): str(tmp_path / "out" / f"p.exit{k}.png")
                                for k in range(1, 6)}
    assert sorted(entry["scores"]) == ["1", "2", "3", "4", "5"]
    assert 1 <= entry["exit"] <= 5


def test_jpeg_and_webp_output_honour_quality(weights, tmp_path) -> None:
    src = photo(tmp_path / "in" / "p.png", 96, 1)
    sizes = {}
    for fmt, ext in (("jpeg", ".jpg"), ("webp", ".webp")):
        for q in (30, 95):
            out = tmp_path / f"{fmt}{q}"
            rc, err, _ = enhance(weights, src, "-o", out, "--format", fmt, "--quality", q)
            assert rc == 0, err
            path = out / f"p{ext}"
            assert tree(out) == [path.name]
            with Image.open(path) as im:
                assert im.format == fmt.upper() and im.size == (96, 96)
                if fmt == "jpeg":
                    assert estimate_jpeg_quality(im) == q
            sizes[fmt, q] = path.stat().st_size
    assert sizes["jpeg", 30] < sizes["jpeg", 95]
    assert sizes["webp", 30] < sizes["webp", 95]


def test_suffix_is_added_to_output_names(weights, tmp_path) -> None:
    src = photo(tmp_path / "in" / "p.jpg", 16, 1)
    rc, err, _ = enhance(weights, src, "-o", tmp_path / "out", "--suffix", "_clean")
    assert rc == 0, err
    assert tree(tmp_path / "out") == ["p_clean.png"]


# --------------------------------------------------------------------------------------
# run_batch directly: cancel, events, failures that are bugs
# --------------------------------------------------------------------------------------


@pytest.fixture
def enhancer(weights) -> Enhancer:
    return Enhancer(weights, device="cpu")


@pytest.fixture
def three(tmp_path) -> Path:
    for i in range(3):
        photo(tmp_path / "in" / f"p{i}.jpg", 16, i)
    return tmp_path / "in"


def test_run_batch_events_and_cancel(enhancer, three, tmp_path) -> None:
    out = tmp_path / "out"
    calls: list[tuple] = []
    events = BatchEvents(
        on_start=lambda n: calls.append(("start", n)),
        on_item_start=lambda i, p: calls.append(("item", i, p.name)),
        on_item_done=lambda i, item: calls.append(("done", i, item.status)),
    )
    # Cancel once the first image is done: the batch stops, nothing partial is written.
    summary = run_batch(enhancer, [three], BatchOptions(out_dir=out), events=events,
                        cancel=lambda: any(c[0] == "done" for c in calls))
    assert summary.cancelled and [i.status for i in summary.items] == ["ok"]
    assert calls == [("start", 3), ("item", 0, "p0.jpg"), ("done", 0, "ok")]
    assert tree(out) == ["p0.png"]

    summary = run_batch(enhancer, [three], BatchOptions(out_dir=out))
    assert not summary.cancelled
    assert [i.status for i in summary.items] == ["skipped", "ok", "ok"]
    assert (summary.processed, summary.skipped, summary.failed) == (2, 1, 0)


def test_cancel_between_exit_files_then_rerun_fills_in_the_rest(enhancer, three,
                                                                 tmp_path) -> None:
    out = tmp_path / "out"
    # --exit all writes five files per image; cancel once two of them exist.
    summary = run_batch(enhancer, [three], BatchOptions(out_dir=out, mode="all"),
                        cancel=lambda: len(list(out.glob("*.png"))) >= 2)
    assert summary.cancelled and summary.items == []
    # Reported as stopped, with the files it has (it was left out of the report).
    (stopped,) = summary.stopped_at
    assert (stopped.input.name, stopped.status) == ("p0.jpg", "cancelled")
    assert stopped.outputs == {"1": out / "p0.exit1.png", "2": out / "p0.exit2.png"}
    assert tree(out) == ["p0.exit1.png", "p0.exit2.png"]  # complete files, no temps
    assert all(complete_image(out / name) for name in tree(out))
    first = snapshot(out)

    summary = run_batch(enhancer, [three], BatchOptions(out_dir=out, mode="all"))
    assert [i.status for i in summary.items] == ["ok", "ok", "ok"]
    assert tree(out) == sorted(f"p{i}.exit{k}.png" for i in range(3) for k in range(1, 6))
    assert sorted(summary.items[0].outputs) == ["1", "2", "3", "4", "5"]
    first.pop(OUTPUT_LOG)  # noted to, as outputs are added
    assert {n: v for n, v in snapshot(out).items() if n in first} == first  # kept as they were


def test_unexpected_errors_fail_one_item_on_one_line(enhancer, three, tmp_path, monkeypatch,
                                                     caplog, capfd) -> None:
    real = enhancer.enhance

    def flaky(image, mode="auto", **kw):
        n = flaky.calls = getattr(flaky, "calls", 0) + 1
        if n == 1:
            raise RuntimeError("boom\nsecond line")
        if n == 2:
            raise MemoryError
        return real(image, mode, **kw)

    monkeypatch.setattr(enhancer, "enhance", flaky)
    with caplog.at_level(logging.INFO, logger="rbqe.batch"):
        summary = run_batch(enhancer, [three], BatchOptions(out_dir=tmp_path / "out"))
    errors = [i.error for i in summary.items]
    assert [i.status for i in summary.items] == ["failed", "failed", "ok"]
    assert errors[0].startswith(f"{three / 'p0.jpg'}: internal error: RuntimeError: boom")
    assert errors[1] == f"{three / 'p1.jpg'}: out of memory (try a smaller --tile)"
    # The traceback is kept for 'rbqe -v' (INFO), never printed as an ERROR.
    assert any(r.exc_info for r in caplog.records if r.levelno == logging.INFO)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "Traceback" not in capfd.readouterr().err


def test_output_folder_that_is_a_file_is_a_usage_error(weights, three, tmp_path) -> None:
    blocker = tmp_path / "out"
    blocker.write_text("a file where the output folder should be")
    rc, err, _ = enhance(weights, three, "-o", blocker)
    assert rc == 2  # found before any image is enhanced (issue 13)
    assert lines(err) == [f"rbqe: error: {blocker}: output folder is an existing file"]


def test_double_ctrl_c_aborts_at_once_without_traceback(weights, three, tmp_path,
                                                        monkeypatch) -> None:
    """First Ctrl-C asks to stop after the stage; a second one aborts immediately."""
    real = Enhancer.enhance
    seen = {"n": 0}

    def enhance_and_press_ctrl_c_twice(self, image, mode="auto", **kw):
        seen["n"] += 1
        if seen["n"] == 2:
            os.kill(os.getpid(), signal.SIGINT)  # the CLI's handler sets the stop flag
            os.kill(os.getpid(), signal.SIGINT)  # ... and raises KeyboardInterrupt now
        return real(self, image, mode, **kw)

    monkeypatch.setattr(Enhancer, "enhance", enhance_and_press_ctrl_c_twice)
    previous = signal.getsignal(signal.SIGINT)
    rc, err, doc = enhance(weights, three, "-o", tmp_path / "out")
    assert rc == 130  # 128 + SIGINT
    assert lines(err) == [STOP_NOTICE, "rbqe: aborted"]
    assert signal.getsignal(signal.SIGINT) is previous  # handler restored
    # The report still records what was done before the abort (issue 13), and the image
    # it caught in hand.
    assert doc is not None and doc["summary"]["cancelled"] is True
    assert [(Path(e["input"]).name, e["status"]) for e in doc["images"]] == [
        ("p0.jpg", "ok"), ("p1.jpg", "cancelled")]
    assert doc["images"][1]["outputs"] == {}
    assert tree(tmp_path / "out") == ["p0.png"]


def test_ctrl_c_reports_the_image_in_hand_as_cancelled(weights, three, tmp_path,
                                                       monkeypatch) -> None:
    """A Ctrl-C during an image left it out of the report, as if it were never there: it
    is there as "cancelled", with no output (nothing partial, no claim, is left)."""
    real = Enhancer.enhance
    calls: list[tuple] = []

    def enhance_and_press_ctrl_c(self, image, mode="auto", **kw):
        calls.append(("enhance",))
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)  # lands before its first stage
        return real(self, image, mode, **kw)

    monkeypatch.setattr(Enhancer, "enhance", enhance_and_press_ctrl_c)
    rc, err, doc = enhance(weights, three, "-o", tmp_path / "out")
    assert rc == 130, err
    assert lines(err) == [STOP_NOTICE, "rbqe: 1 enhanced, 0 skipped, 0 failed of 3 (interrupted)"]
    assert doc is not None and doc["summary"]["cancelled"] is True
    assert doc["summary"]["total"] == 3  # p2, never started, is counted only
    (p0, p1) = doc["images"]
    assert (Path(p0["input"]).name, p0["status"]) == ("p0.jpg", "ok")
    assert p1 == {"input": str(three / "p1.jpg"), "status": "cancelled", "outputs": {},
                  "exit": None, "scores": {}, "times_ms": {}, "gmacs": None, "size": None}
    assert tree(tmp_path / "out") == ["p0.png"]  # hidden files too: no claim or temp


def test_a_cancelled_image_is_not_done_for_front_ends(enhancer, three, tmp_path) -> None:
    """run_batch keeps the image a cancel caught in hand out of ``items`` and
    ``on_item_done`` (the app counts those as done), in ``stopped_at``."""
    done: list[str] = []
    started: list[str] = []
    events = BatchEvents(on_item_start=lambda i, p: started.append(p.name),
                         on_item_done=lambda i, item: done.append(item.status))
    summary = run_batch(enhancer, [three], BatchOptions(out_dir=tmp_path / "out"),
                        events=events, cancel=lambda: len(started) == 2)
    assert summary.cancelled and done == ["ok"] and started == ["p0.jpg", "p1.jpg"]
    assert [i.input.name for i in summary.items] == ["p0.jpg"]
    assert [(i.input.name, i.status, i.outputs) for i in summary.stopped_at] == [
        ("p1.jpg", "cancelled", {})]


# --------------------------------------------------------------------------------------
# Real processes: SIGINT, SIGKILL, progress on a TTY
# --------------------------------------------------------------------------------------

N_KILL = 9  # one small first image, then eight slower ones


def _kill_folder(root: Path) -> Path:
    src = root / "in"
    photo(src / "a00.jpg", 32, 0)  # appears quickly: the signal is sent while b* run
    for i in range(1, N_KILL):
        photo(src / f"b{i:02d}.jpg", 384, i)
    return src


def _start(weights: Path, src: Path, out: Path, *extra: str) -> subprocess.Popen:
    # stderr to a file: no pipe to fill up, readable afterwards.
    with open(out.parent / "stderr.txt", "wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "rbqe.cli", "enhance", str(src), "-o", str(out),
             "--weights", str(weights), "--exit", "1", *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
        )


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 1800.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"rbqe exited early ({proc.returncode}) before the condition was met")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("timed out waiting for rbqe")
        time.sleep(0.01)


def _finals(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if not p.name.startswith(".")) if out.exists() else []


def _check_no_partial_outputs(out: Path, *, temps_allowed: bool) -> list[str]:
    for p in _finals(out):
        assert complete_image(p), f"partial file under a final name: {p.name}"
    hidden = hidden_files(out)
    assert all(TEMP_RE.match(n) for n in hidden), hidden
    if not temps_allowed:
        assert hidden == []
    return hidden


def _rerun_completes(weights: Path, src: Path, out: Path, done: list[Path]) -> None:
    rc, err, doc = enhance(weights, src, "-o", out, "--exit", "1")
    assert rc == 0, err
    st = statuses(doc)
    assert len(st) == N_KILL
    assert {n for n, s in st.items() if s == "skipped"} == {p.stem + ".jpg" for p in done}
    assert set(st.values()) <= {"ok", "skipped"}
    assert [p.name for p in _finals(out)] == sorted(
        p.stem + ".png" for p in src.iterdir())
    assert all(complete_image(p) for p in _finals(out))


def test_sigint_stops_after_the_current_stage_and_rerun_completes(weights, tmp_path) -> None:
    src, out = _kill_folder(tmp_path), tmp_path / "out"
    report = tmp_path / "report.json"
    proc = _start(weights, src, out, "--report", str(report))
    _wait_for(lambda: bool(_finals(out)), proc)
    at_signal = len(_finals(out))
    proc.send_signal(signal.SIGINT)
    rc = proc.wait(timeout=1800)
    err = (tmp_path / "stderr.txt").read_text()
    assert rc == 130, err  # 128 + SIGINT
    done = _finals(out)
    assert at_signal <= len(done) <= at_signal + 1  # at most the image being saved
    assert len(done) < N_KILL, "the batch finished before the signal: make it slower"
    _check_no_partial_outputs(out, temps_allowed=False)
    # Not a TTY: no progress bar; only the notice and the summary, no traceback.
    assert lines(err) == [
        STOP_NOTICE,
        f"rbqe: {len(done)} enhanced, 0 skipped, 0 failed of {N_KILL} (interrupted)",
    ]
    doc = json.loads(report.read_text())
    assert doc["summary"]["cancelled"] is True
    ok = [e for e in doc["images"] if e["status"] == "ok"]
    assert sorted(Path(e["outputs"]["1"]).name for e in ok) == [p.name for p in done]
    # The image in hand, if the signal caught one, last: stopped, with no output.
    assert [(e["status"], e["outputs"]) for e in doc["images"][len(ok):]] in (
        [], [("cancelled", {})])
    _rerun_completes(weights, src, out, done)


def test_sigkill_leaves_no_partial_output_and_rerun_completes(weights, tmp_path) -> None:
    src, out = _kill_folder(tmp_path), tmp_path / "out"
    proc = _start(weights, src, out)
    _wait_for(lambda: bool(_finals(out)), proc)
    proc.kill()
    assert proc.wait(timeout=60) == -signal.SIGKILL
    temps = _check_no_partial_outputs(out, temps_allowed=True)
    done = _finals(out)
    assert 1 <= len(done) < N_KILL
    for name in temps:  # "fresh" must not hinge on how long the killed run took
        if "claim_" not in name:
            _age(out / name, 0)
    _rerun_completes(weights, src, out, done)
    # A leftover temp file (only if the kill hit a write) is ignored by the re-run; it is
    # too fresh to be removed yet (see the next test for that). The kill also leaves the
    # claim of the image it interrupted (a temp too): a re-run that enhances that image
    # takes the claim over and removes it.
    after = hidden_files(out)
    assert set(after) <= set(temps)
    assert [n for n in after if "claim_" not in n] == [n for n in temps if "claim_" not in n]


_KILL_AT_RENAME = """
import os, signal, sys
import rbqe.io
real_fsync, seen = os.fsync, []
def fsync(fd):
    real_fsync(fd)
    name = os.readlink(f"/proc/self/fd/{fd}")
    if os.path.basename(name).startswith(".rbqe-"):
        seen.append(name)
        if len(seen) == 2:  # second image: data written and synced, not yet renamed
            os.kill(os.getpid(), signal.SIGKILL)
rbqe.io.atomic.os.fsync = fsync
from rbqe.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_sigkill_between_write_and_rename_leaves_only_a_hidden_temp(weights, tmp_path) -> None:
    src = tmp_path / "in"
    for i in range(3):
        photo(src / f"p{i}.jpg", 32, i)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-c", _KILL_AT_RENAME, "enhance", str(src), "-o", str(out),
         "--weights", str(weights), "--exit", "1"],
        capture_output=True, text=True, timeout=1800, stdin=subprocess.DEVNULL, check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert [p.name for p in _finals(out)] == ["p0.png"]
    hidden = _check_no_partial_outputs(out, temps_allowed=True)
    temps = [n for n in hidden if "claim_" not in n]
    assert len(temps) == 1  # p1's complete data, never renamed to p1.png
    assert len(hidden) == 2  # and p1's claim, which the re-run takes over and removes
    _age(out / temps[0], 0)  # fresh for the next run, however slow this machine is
    rc, err, doc = enhance(weights, src, "-o", out, "--exit", "1")
    assert rc == 0, err
    assert statuses(doc) == {"p0.jpg": "skipped", "p1.jpg": "ok", "p2.jpg": "ok"}
    assert [p.name for p in _finals(out)] == ["p0.png", "p1.png", "p2.png"]
    assert all(complete_image(p) for p in _finals(out))
    # The temp is not an input, not even named directly, and is kept while fresh: it
    # might belong to a run still writing into the same folder.
    _age(out / temps[0], 0)
    rc, err, doc = enhance(weights, src, out / temps[0], "-o", out, "--exit", "1")
    assert rc == 0 and set(statuses(doc)) == {"p0.jpg", "p1.jpg", "p2.jpg"}, err
    assert hidden_files(out) == temps
    # Once it is older than a few minutes and unlocked (its writer is dead), the next
    # batch into the folder removes it.
    _age(out / temps[0], STALE_TEMP_AGE_S + 5)
    rc, err, doc = enhance(weights, src, "-o", out, "--exit", "1")
    assert rc == 0 and set(statuses(doc).values()) == {"skipped"}, err
    assert hidden_files(out) == []
    assert "Traceback" not in err


def _age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_stale_temps_are_removed_but_not_a_live_writers(enhancer, three, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    dead, live, young = (out / f".rbqe-{n}.part" for n in ("dead1234", "live1234", "young123"))
    keep = [out / ".rbqe-x.part.bak", out / ".other-1234.part", out / "rbqe-abcd1234.part",
            out / OUTPUT_LOG]
    for p in (dead, live, young, *keep):
        p.write_bytes(b"\x89PNG partial")
    for p in (dead, live, *keep):
        _age(p, 3600)
    # Another run is still writing 'live' (rbqe.io holds this lock while it writes).
    with open(live, "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        summary = run_batch(enhancer, [three], BatchOptions(out_dir=out, mode=1))
        assert [i.status for i in summary.items] == ["ok"] * 3
    assert tree(out) == sorted([*(p.name for p in (live, young, *keep) if p != out / OUTPUT_LOG),
                                "p0.png", "p1.png", "p2.png"])
    assert (out / OUTPUT_LOG).exists()  # not a temp, though hidden


def test_progress_bar_with_count_and_eta_on_a_tty(weights, tmp_path) -> None:
    src = tmp_path / "in"
    for i in range(3):
        photo(src / f"p{i}.jpg", 16, i)
    (src / "q.jpg").write_text("not a picture")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rbqe.cli", "enhance", str(src), "-o", str(tmp_path / "o"),
             "--weights", str(weights)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
        )
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        stdout = proc.stdout.read()
        proc.stdout.close()
        rc = proc.wait(timeout=1800)
    finally:
        os.close(master)
    tty = b"".join(chunks).decode("utf-8", "replace")
    assert rc == 1
    assert stdout == b""  # errors go to the terminal's stderr, not to stdout
    assert re.search(r"4/4 \[\d\d:\d\d<\d\d:\d\d", tty), tty  # count and ETA
    assert re.search(r"[0-3]/4 \[\d\d:\d\d<", tty), tty  # updated while running
    assert f"rbqe: error: {src / 'q.jpg'}: not an image file (unrecognised format)" in tty
    assert tty.rstrip().endswith("rbqe: 3 enhanced, 0 skipped, 1 failed of 4")
    assert "Traceback" not in tty


def test_a_16_bit_photo_is_enhanced_in_full_precision(weights, tmp_path, monkeypatch) -> None:
    # bf16 rounds a 16-bit image's levels to about 8 bits: such inputs run in float32.
    from rbqe.backends.torch import TorchBackend

    asked: dict[str, bool] = {}
    real_start = TorchBackend.start

    def spy(self, x, stats=None, *, fast=False, full_precision=False):
        asked[str(tuple(x.shape))] = full_precision
        return real_start(self, x, stats, fast=fast, full_precision=full_precision)

    monkeypatch.setattr(TorchBackend, "start", spy)
    src = tmp_path / "in"
    src.mkdir()
    deep = (np.random.default_rng(0).random((40, 48)) * 65535).astype(np.uint16)
    Image.fromarray(deep).save(src / "scan16.png")
    photo(src / "photo8.jpg", 32, 1)
    rc, err, doc = enhance(weights, src, "-o", tmp_path / "out", "--exit", "1",
                           "--backend", "torch")
    assert rc == 0, err
    assert asked["(1, 1, 64, 64)"] is True, asked  # the 40x48 PNG, padded
    assert asked["(1, 1, 32, 32)"] is False, asked  # the JPEG
