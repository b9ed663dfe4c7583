"""The ``rbqe-studio`` command: reads its options, checks that the GUI can start, then
starts it.

This module imports no Qt, so that what Qt cannot report gently becomes one readable
line: PySide6 not installed (the ``[app]`` extra), or a Linux system library missing for
Qt's xcb platform plugin (Qt itself aborts the process with a long message then). The
options are read first, so ``--help`` needs neither Qt nor a display.

``rbqe-studio [IMAGE|FOLDER ...]`` opens the window with those images queued.

``rbqe-studio --screenshot OUT.png [--exit all] IMAGE ...`` opens the images, processes
the first (with ``--exit all``: all five exits), waits until it is done, saves a grab of
the whole main window to OUT.png and quits with status 0 (1 if processing failed, 3 when
``--timeout`` ran out; the grab is saved in every case). It uses default settings and
never touches the user's saved ones. It runs headless with ``QT_QPA_PLATFORM=offscreen``.

Qt's standard options (``-style fusion``, ``-platform offscreen``, ``-reverse``...) are
handed to Qt.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from rbqe.exit_policy import EXIT_MODES

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


# QApplication's and QGuiApplication's own options (Qt reads them from the argv it is
# given, also spelled --style or -style=fusion): those that take a value, and flags.
QT_VALUE_OPTIONS = frozenset({
    "-style", "-stylesheet", "-platform", "-platformpluginpath", "-platformtheme", "-plugin",
    "-qwindowgeometry", "-qwindowicon", "-qwindowtitle", "-session", "-display", "-geometry",
    "-qmljsdebugger"})
QT_FLAGS = frozenset({"-reverse", "-widgetcount", "-nograb", "-dograb", "-testability"})


def split_qt_options(argv: Iterable[str]) -> tuple[list[str], list[str]]:
    """``argv`` (without the program's name) parted into Qt's standard options, for
    QApplication, and the rest, for :func:`parse_args`; ``--`` ends the options."""
    qt: list[str] = []
    ours: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg == "--":
            ours += [arg, *args]
            break
        name = arg.split("=", 1)[0]
        name = name[1:] if name.startswith("--") else name
        if name in QT_FLAGS:
            qt.append(arg)
        elif name in QT_VALUE_OPTIONS:
            qt.append(arg)
            if "=" not in arg:
                qt += [next(args, "")]
        else:
            ours.append(arg)
    return qt, ours


def chooses_style(qt_options: list[str]) -> bool:
    """Whether Qt's options choose a widget style (``-style NAME``, ``--style=NAME``),
    which the theme then keeps."""
    return any(o.lstrip("-").split("=", 1)[0] == "style" for o in qt_options)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line; ``qt_options`` holds Qt's own, handed to QApplication."""
    qt, ours = split_qt_options(argv)
    p = argparse.ArgumentParser(prog="rbqe-studio",
                                description="RBQE Studio: repair JPEG-compressed photos.",
                                epilog="Qt's standard options (-style NAME, -platform NAME, "
                                       "-reverse...) are passed to Qt.")
    p.add_argument("paths", nargs="*", help="images or folders to open")
    p.add_argument("--weights", help="model weights (.safetensors); default: RBQE_WEIGHTS or "
                   "the weights shipped with rbqe")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (saved as the device setting)")
    p.add_argument("--exit", dest="exit_mode", choices=EXIT_MODES,
                   help="exit mode for this session (all: compute all five exits)")
    p.add_argument("--screenshot", metavar="OUT.png",
                   help="process the first image, save a grab of the window, quit")
    p.add_argument("--timeout", type=float, default=0.0,
                   help="--screenshot: give up after this many seconds (default: wait)")
    p.add_argument("--settings", metavar="FILE.ini",
                   help="read and write settings in this ini file instead of the user's")
    args = p.parse_args(ours)
    args.qt_options = qt
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)  # --help: no Qt needed
    problem = check_environment()
    if problem:
        print(problem, file=sys.stderr)
        return 1
    from rbqe_studio.main import run

    return run(args)
