"""The ``--screenshot`` command-line contract, run as users and tools run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from rbqe_studio.main import SCREENSHOT_SIZE, parse_args
from tests.helpers import save_tiny_weights

ROOT = Path(__file__).resolve().parents[2]


def env_for(tmp_path: Path, weights: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(QT_QPA_PLATFORM="offscreen", RBQE_WEIGHTS=str(weights),
               RBQE_STUDIO_DATA_DIR=str(tmp_path / "data"),
               XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_DATA_HOME=str(tmp_path / "share"),
               XDG_RUNTIME_DIR=str(tmp_path / "run"))
    (tmp_path / "run").mkdir(mode=0o700, exist_ok=True)
    return env


def test_screenshot_contract(tmp_path: Path, jpeg) -> None:
    weights = save_tiny_weights(tmp_path / "tiny.safetensors")
    first = jpeg(tmp_path / "img.jpg", size=(96, 72))
    second = jpeg(tmp_path / "another.jpg", size=(64, 48), seed=3)
    out = tmp_path / "shots" / "out.png"
    proc = subprocess.run(
        [sys.executable, "-m", "rbqe_studio", "--screenshot", str(out), "--exit", "all",
         str(first), str(second)],
        cwd=ROOT, env=env_for(tmp_path, weights), capture_output=True, text=True, timeout=300,
        check=False)
    assert proc.returncode == 0, proc.stderr
    with Image.open(out) as im:
        assert im.format == "PNG"
        assert im.size == SCREENSHOT_SIZE
        grey = np.asarray(im.convert("L").resize((64, 40)))
        assert len(np.unique(grey)) > 20  # not a blank grab
    log = (tmp_path / "data" / "rbqe-studio.log").read_text()
    assert "starting" in log
    assert not (tmp_path / "config" / "RBQE").exists()  # the user's settings untouched


def test_a_photo_that_cannot_be_read_is_said_once(tmp_path: Path, jpeg) -> None:
    """The read error was on stderr three times: the worker's warning, the window's and
    the screenshot runner's own line."""
    weights = save_tiny_weights(tmp_path / "tiny.safetensors")
    whole = jpeg(tmp_path / "whole.jpg", size=(256, 192), quality=90).read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole[: len(whole) // 2])
    proc = subprocess.run(
        [sys.executable, "-m", "rbqe_studio", "--screenshot", str(tmp_path / "out.png"),
         str(cut)],
        cwd=ROOT, env=env_for(tmp_path, weights), capture_output=True, text=True, timeout=300,
        check=False)
    assert proc.returncode == 1, proc.stderr
    said = f"{cut}: truncated or corrupt image data"
    assert [line for line in proc.stderr.splitlines() if said in line] == \
        [f"rbqe-studio: WARNING: {said}"], proc.stderr
    assert said in (tmp_path / "data" / "rbqe-studio.log").read_text()  # the log keeps it


def test_command_line_options_parse() -> None:
    args = parse_args(["--weights", "w.safetensors", "--device", "cpu", "--exit", "3", "a.jpg"])
    assert (args.weights, args.device, args.exit_mode, args.paths) == \
        ("w.safetensors", "cpu", "3", ["a.jpg"])
