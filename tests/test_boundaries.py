"""The library never imports Qt: the app depends on rbqe, never the reverse."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

RBQE = Path(__file__).resolve().parents[1] / "rbqe"


def test_no_qt_or_app_import_in_library_source() -> None:
    offenders = []
    for path in RBQE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names
                          if n.split(".")[0] in {"PySide6", "PyQt5", "PyQt6", "rbqe_studio"}]
    assert offenders == []


def test_importing_the_library_loads_no_qt() -> None:
    code = ("import sys, rbqe.cli, rbqe.engine, rbqe.batch, rbqe.io, rbqe.iqa, "
            "rbqe.train.commands, rbqe.train.evaluate; "
            "print(any(m.startswith('PySide6') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_exit_mode_parser_loads_no_torch() -> None:
    # The app's settings and command line parse exit modes before the engine is needed.
    code = ("import sys, rbqe.exit_policy, rbqe.arch; "
            "print(any(m.split('.')[0] == 'torch' for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
