"""What ``rbqe enhance`` tells a user who reads a pipe or a log, and what its report
says (issue 13, items 5-7 and 14)."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from corpus import pattern
from PIL import Image

from rbqe.errors import ImageReadError, show_path

ROOT = Path(__file__).resolve().parent.parent


def photo(height: int, width: int, *, seed: int = 0) -> np.ndarray:
    """A small RGB test picture (uint8)."""
    return pattern(height, width, 3, seed=seed)


def save(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(photo(40, 48, seed=seed)).save(path, quality=30)
    return path


def rbqe(*args: str | Path, umask: int | None = None) -> subprocess.CompletedProcess:
    """A real ``rbqe`` process whose stderr is a pipe, as in a script or a service."""
    # umask= (not a preexec_fn, which can deadlock in a forked multi-threaded process);
    # -1 leaves the umask alone.
    return subprocess.run([sys.executable, "-m", "rbqe.cli", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600,
                          umask=-1 if umask is None else umask)


def test_a_pipe_gets_one_progress_line_per_image_in_input_order(weights, tmp_path) -> None:
    b, a, c = save(tmp_path / "b.jpg", 1), save(tmp_path / "a.jpg", 2), save(tmp_path / "c.jpg")
    out = rbqe("enhance", b, a, c, "-o", tmp_path / "out", "--weights", weights,
               "--exit", "2", "--report", tmp_path / "r.json")
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    assert [re.sub(r"; ETA \d+:\d\d$", "", ln) for ln in lines[:3]] == [
        f"rbqe: [1/3] {b}: exit 2", f"rbqe: [2/3] {a}: exit 2", f"rbqe: [3/3] {c}: exit 2"]
    assert all(re.search(r"; ETA \d+:\d\d$", ln) for ln in lines[:2])
    assert lines[3] == "rbqe: 3 enhanced, 0 skipped, 0 failed of 3"
    doc = json.loads((tmp_path / "r.json").read_text())
    assert [e["input"] for e in doc["images"]] == [str(b), str(a), str(c)]


def test_report_gets_the_outputs_file_mode(weights, tmp_path) -> None:
    src = save(tmp_path / "p.jpg")
    out = rbqe("enhance", src, "-o", tmp_path / "out", "--weights", weights,
               "--report", tmp_path / "r.json", umask=0o022)
    assert out.returncode == 0, out.stderr
    modes = {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "out" / "p.png",
                                                      tmp_path / "r.json")}
    assert modes == {0o644}


def test_exit_all_has_no_saved_fraction(weights, tmp_path) -> None:
    src = save(tmp_path / "p.jpg")
    out = rbqe("enhance", src, "-o", tmp_path / "out", "--weights", weights, "--exit", "all",
               "--report", tmp_path / "r.json")
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "r.json").read_text())["summary"]
    assert summary["saved_fraction"] is None
    auto = rbqe("enhance", src, "-o", tmp_path / "auto", "--weights", weights,
                "--report", tmp_path / "a.json")
    assert auto.returncode == 0, auto.stderr
    assert 0 <= json.loads((tmp_path / "a.json").read_text())["summary"]["saved_fraction"] < 1


def test_saved_fraction_is_against_exit_5_run_the_same_way(weights, tmp_path) -> None:
    # The baseline is what --exit 5 costs for the image as it is processed: tiled, it
    # includes the tiles' overlaps and the sample tiles. Against the untiled cost, a
    # tiled --exit 5 showed a negative saving.
    src = tmp_path / "p.jpg"
    Image.fromarray(photo(300, 280, seed=3)).save(src, quality=30)
    baseline = {}
    for tile in ("0", "256"):
        report = tmp_path / f"r{tile}.json"
        out = rbqe("enhance", src, "-o", tmp_path / f"out{tile}", "--weights", weights,
                   "--exit", "5", "--tile", tile, "--report", report)
        assert out.returncode == 0, out.stderr
        summary = json.loads(report.read_text())["summary"]
        assert summary["gmacs"] == pytest.approx(summary["gmacs_exit5"])
        assert summary["saved_fraction"] == pytest.approx(0, abs=1e-4)
        baseline[tile] = summary["gmacs_exit5"]
    assert baseline["256"] > baseline["0"]  # overlaps and samples cost extra


def test_a_newline_in_a_file_name_is_shown_escaped(weights, tmp_path) -> None:
    bad = tmp_path / "two\nlines.jpg"
    bad.write_bytes(b"not a jpeg")
    assert show_path(bad) == str(tmp_path) + "/two\\nlines.jpg"
    assert str(ImageReadError(bad, "broken")) == f"{tmp_path}/two\\nlines.jpg: broken"
    out = rbqe("enhance", bad, "-o", tmp_path / "out", "--weights", weights)
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f"rbqe: error: {tmp_path}/two\\nlines.jpg: not an image file (unrecognised format)",
        "rbqe: 0 enhanced, 0 skipped, 1 failed of 1"]


def test_exit_all_says_every_exit_was_written(weights, tmp_path) -> None:
    """It said "exit 3" for a run that wrote five files."""
    src = save(tmp_path / "p.jpg")
    out = rbqe("enhance", src, "-o", tmp_path / "out", "--weights", weights, "--exit", "all",
               "--report", tmp_path / "r.json")
    assert out.returncode == 0, out.stderr
    chosen = json.loads((tmp_path / "r.json").read_text())["images"][0]["exit"]
    assert out.stderr.splitlines()[0] == f"rbqe: [1/1] {src}: exits 1-5 written (auto: exit {chosen})"


def test_warnings_read_like_the_tools_other_lines(weights, tmp_path) -> None:
    """"WARNING: ..." beside "rbqe: error: ..." lines: now "rbqe: warning: ...". One
    about writing an output names its input too (the output alone did not say which)."""
    src = tmp_path / "alpha.png"
    rgba = Image.fromarray(photo(32, 40)).convert("RGBA")
    rgba.putalpha(100)
    rgba.save(src)
    out = rbqe("enhance", src, "-o", tmp_path / "out", "--weights", weights, "--format", "jpeg")
    assert out.returncode == 0, out.stderr
    assert (f"rbqe: warning: {src} -> {tmp_path / 'out' / 'alpha.jpg'}: JPEG cannot store "
            f"transparency; the transparent parts are filled with white") in out.stderr.splitlines()
    assert "WARNING" not in out.stderr
