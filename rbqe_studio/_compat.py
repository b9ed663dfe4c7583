"""Work-arounds for bugs in the libraries the app runs on.

PySide6 6.12.0 on CPython < 3.12 hands out objects that Python 3.12 made immortal
without taking a reference to them: every void method (``setText``, ``update``,
``QPainter.setBrush``...) returns ``None`` that way, and a ``bool`` signal passes
``True``/``False`` that way. Each call lowers the object's reference count by one; after
a few thousand calls Python aborts with "Fatal Python error: none_dealloc: deallocating
None" (or ``bool_dealloc``). A window repaint alone makes dozens of such calls, so the
app would crash within minutes.

The fix gives these singletons a reference count so large that no session can wear it
down, which is what Python 3.12 does by making them immortal. They are never freed in a
healthy interpreter, so the extra count changes nothing else.
"""

from __future__ import annotations

import ctypes
import sys

_HEADROOM = 1 << 60


# What Python 3.12 made immortal and a binding might hand out without a reference.
_SINGLETONS = (None, True, False, Ellipsis, NotImplemented, (), "", b"", *range(-5, 257))


def keep_none_alive() -> bool:
    """Make ``None``, the bools and the small ints effectively immortal on Python < 3.12.

    Returns whether it acted.
    """
    if sys.version_info >= (3, 12) or hasattr(sys, "gettotalrefcount"):  # debug builds: skip
        return False
    for obj in _SINGLETONS:
        refcnt = ctypes.c_ssize_t.from_address(id(obj))  # ob_refcnt: PyObject's first field
        if refcnt.value < _HEADROOM:
            refcnt.value += _HEADROOM
    return True
