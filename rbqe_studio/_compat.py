"""Work-arounds for bugs in the libraries the app runs on, each for the releases it is for.

PySide6 6.12.0 on CPython < 3.12 hands out objects that Python 3.12 made immortal
without taking a reference to them: every void method (``setText``, ``update``,
``QPainter.setBrush``...) returns ``None`` that way, and a ``bool`` signal passes
``True``/``False`` that way. Each call lowers the object's reference count by one; after
a few thousand calls Python aborts with "Fatal Python error: none_dealloc: deallocating
None" (or ``bool_dealloc``). A window repaint alone makes dozens of such calls, so the
app would crash within minutes. (Measured on 6.12.0 with CPython 3.11.7: 2,000
``QLabel.setText`` calls lowered None's count by 2,001, and the interpreter aborted at
exit.)

The fix gives these singletons a reference count so large that no session can wear it
down, which is what Python 3.12 does by making them immortal. They are never freed in a
healthy interpreter, so the extra count changes nothing else. It is applied only on the
PySide6 releases in :data:`AFFECTED` (6.12.0 is the one measured; later 6.12 patch
releases are assumed to share the bug until one is measured without it, which
``tests/app/test_app_compat.py`` does on whatever release is installed).
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import sys

_HEADROOM = 1 << 60
AFFECTED = ((6, 12),)  # PySide6 (major, minor) release lines with the refcount bug
_DISTRIBUTIONS = ("PySide6-Essentials", "PySide6")

# What Python 3.12 made immortal and a binding might hand out without a reference.
_SINGLETONS = (None, True, False, Ellipsis, NotImplemented, (), "", b"", *range(-5, 257))


def pyside_version() -> tuple[int, ...] | None:
    """The installed PySide6's version, read without loading Qt (None if not found)."""
    for name in _DISTRIBUTIONS:
        try:
            text = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        return tuple(int(p) for p in text.split(".")[:3] if p.isdigit())
    try:  # a frozen app may carry no package metadata
        import PySide6
    except ImportError:
        return None
    return tuple(int(v) for v in PySide6.__version_info__[:3])


def needs_refcount_fix(version: tuple[int, ...] | None = None,
                       python: tuple[int, ...] = tuple(sys.version_info[:2])) -> bool:
    """Whether this PySide6 (default: the installed one) on this Python has the bug."""
    if python >= (3, 12):
        return False  # the singletons are immortal there
    version = pyside_version() if version is None else version
    return version is not None and tuple(version[:2]) in AFFECTED


def keep_none_alive() -> bool:
    """Make ``None``, the bools and the small ints effectively immortal, on the PySide6
    releases that need it. Returns whether it acted."""
    if hasattr(sys, "gettotalrefcount") or not needs_refcount_fix():  # debug builds: skip
        return False
    for obj in _SINGLETONS:
        refcnt = ctypes.c_ssize_t.from_address(id(obj))  # ob_refcnt: PyObject's first field
        if refcnt.value < _HEADROOM:
            refcnt.value += _HEADROOM
    return True
