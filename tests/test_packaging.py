"""What an installed rbqe-studio needs: the shipped model inside the wheel, a clear
line when the GUI's extra or Qt's X11 libraries are missing, and RBQE_WEIGHTS named
when no model is found."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from clirun import run_cli

from rbqe.weights import SHIPPED_MODELS, shipped_weights_dir
from rbqe_studio import launch

ROOT = Path(__file__).resolve().parent.parent


def test_source_checkout_uses_the_top_level_weights() -> None:
    # No rbqe/_shipped/ in a checkout: the weights/ folder is the source of truth.
    assert shipped_weights_dir() == ROOT / "weights"
    assert all(path.is_file() for path in SHIPPED_MODELS.values())


def test_the_model_card_names_the_shipped_file() -> None:
    # The card's hash and size are those of the file that ships: new weights without a
    # new card (or the other way round) fail here.
    card = (ROOT / "weights" / "MODEL_CARD.md").read_text(encoding="utf-8")
    data = SHIPPED_MODELS["rgb"].read_bytes()
    assert f"| SHA-256 | `{hashlib.sha256(data).hexdigest()}` |" in card
    assert f"| Size | {len(data):,} bytes |" in card


def test_wheel_carries_the_shipped_models(tmp_path: Path) -> None:
    # Build from a copy of the tracked files, as pip does from an sdist or a clean clone.
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    src = tmp_path / "src"
    for name in files:
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes((ROOT / name).read_bytes())
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path / "dist"), str(src)], check=True,
                   capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("rbqe_studio-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        models = {path.name for path in SHIPPED_MODELS.values()}
        assert {n for n in names if n.endswith(".safetensors")} == {
            f"rbqe/_shipped/{name}" for name in models}  # no retired model comes along
        for shipped in (*sorted(models), "MODEL_CARD.md"):
            member = f"rbqe/_shipped/{shipped}"
            assert member in names
            assert zf.read(member) == (ROOT / "weights" / shipped).read_bytes()
        assert not any(n.startswith("weights/") for n in names)


def test_missing_weights_names_rbqe_weights(tmp_path: Path) -> None:
    missing = tmp_path / "none.safetensors"
    rc, _err = run_cli(["info", "--weights", str(missing)])
    assert rc == 2
    rc, err = run_cli(["enhance", str(missing), "-o", str(tmp_path / "out"),
                       "--weights", str(missing)])
    assert rc == 2 and "RBQE_WEIGHTS" in err and str(missing) in err


def test_info_reports_missing_weights_with_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "none.safetensors"
    out = subprocess.run([sys.executable, "-m", "rbqe.cli", "info", "--weights", str(missing)],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 2
    info = json.loads(out.stdout)
    assert info["weights"] is None and "RBQE_WEIGHTS" in info["error"]


def test_gui_without_pyside6_prints_one_line(tmp_path: Path) -> None:
    # sys.modules[name] = None makes every import of PySide6 fail, as on an install
    # without the [app] extra.
    code = ("import sys; sys.modules['PySide6'] = None\n"
            "from rbqe_studio.launch import main\nraise SystemExit(main([]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 1
    assert out.stderr.splitlines() == [launch.INSTALL_HINT]
    assert "rbqe-studio[app]" in launch.INSTALL_HINT


def test_xcb_hint_names_the_debian_packages() -> None:
    hint = launch.xcb_hint("libxcb-icccm.so.4")
    assert "libxcb-icccm.so.4 (package libxcb-icccm4)" in hint
    for package in ("libxcb-icccm4", "libxcb-keysyms1", "libxcb-cursor0"):
        assert package in hint
    assert len(hint.splitlines()) == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="xcb is Linux's")
def test_xcb_is_checked_only_when_qt_will_use_it() -> None:
    assert launch.uses_xcb({"QT_QPA_PLATFORM": "xcb"})
    assert not launch.uses_xcb({"QT_QPA_PLATFORM": "offscreen"})
    assert not launch.uses_xcb({"WAYLAND_DISPLAY": "wayland-0"})
    assert launch.uses_xcb({"DISPLAY": ":0"})


def test_a_plugin_that_cannot_load_is_named(tmp_path: Path) -> None:
    broken = tmp_path / "libqxcb.so"
    broken.write_bytes(b"not an ELF file")
    problem = launch.missing_xcb_library(broken)
    assert problem is not None and str(broken) in problem
