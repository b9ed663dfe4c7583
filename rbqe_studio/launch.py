"""The ``rbqe-studio`` command: checks that the GUI can start, then starts it.

This module imports no Qt, so that what Qt cannot report gently becomes one readable
line: PySide6 not installed (the ``[app]`` extra), or a Linux system library missing for
Qt's xcb platform plugin (Qt itself aborts the process with a long message then).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Mapping
from pathlib import Path

INSTALL_HINT = ("rbqe-studio: the GUI needs PySide6, which is not installed: "
                "pip install 'rbqe-studio[app]' (the rbqe command works without it)")

# The Debian/Ubuntu package of each library that Qt 6's xcb plugin needs and that a
# desktop install may lack (the Qt for X11 requirements page lists them).
XCB_PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
}
APT_LINE = "sudo apt install " + " ".join(sorted(set(XCB_PACKAGES.values())))


def xcb_hint(missing: str) -> str:
    """The line shown when ``missing`` (a library file name) stops Qt's xcb plugin."""
    package = XCB_PACKAGES.get(missing)
    named = f"{missing} (package {package})" if package else missing
    return (f"rbqe-studio: Qt cannot load its X11 (xcb) platform plugin: {named} is missing. "
            f"On Debian/Ubuntu: {APT_LINE}")


def uses_xcb(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether Qt will pick its xcb plugin: Linux, under X11, unless told otherwise."""
    if not sys.platform.startswith("linux"):
        return False
    platform = environ.get("QT_QPA_PLATFORM", "")
    if platform:
        return platform.split(";")[0].startswith("xcb")
    return not environ.get("WAYLAND_DISPLAY")  # Qt 6 prefers Wayland in a Wayland session


def missing_xcb_library(plugin: Path) -> str | None:
    """The first library that keeps ``plugin`` (Qt's libqxcb.so) from loading, if any.

    Loading the plugin here is what Qt does next; the dynamic loader's error names the
    library. ``libxcb-cursor`` is loaded by Qt at run time, so it is looked up apart.
    """
    if plugin.is_file():
        try:
            ctypes.CDLL(str(plugin))
        except OSError as exc:
            name = str(exc).split(":", 1)[0].strip()
            return name if name.startswith("lib") and name != plugin.name else str(exc)
    if ctypes.util.find_library("xcb-cursor") is None:
        return "libxcb-cursor.so.0"
    return None


def check_environment() -> str | None:
    """One line saying why the GUI cannot start here, or None when it can try."""
    try:
        import PySide6
        from PySide6 import QtWidgets  # noqa: F401  (loads Qt's own shared libraries)
    except ModuleNotFoundError as exc:
        if (exc.name or "").startswith("PySide6"):
            return INSTALL_HINT
        raise
    except ImportError as exc:  # e.g. a missing libEGL.so.1 under QtGui
        return f"rbqe-studio: cannot load Qt: {exc}"
    if uses_xcb():
        plugin = Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
        missing = missing_xcb_library(plugin)
        if missing:
            return xcb_hint(missing)
    return None


def main(argv: list[str] | None = None) -> int:
    problem = check_environment()
    if problem:
        print(problem, file=sys.stderr)
        return 1
    from rbqe_studio.main import main as run_app

    return run_app(argv)
