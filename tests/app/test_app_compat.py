"""The PySide6 6.12 / CPython < 3.12 None-refcount work-around (see rbqe_studio/_compat.py)."""

from __future__ import annotations

import sys

import pytest
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QLabel

import rbqe_studio  # noqa: F401  (importing the package applies the work-around)
from rbqe_studio._compat import needs_refcount_fix


@pytest.mark.skipif(not needs_refcount_fix(), reason="this PySide6 and Python need no fix")
def test_none_survives_many_void_qt_calls(qtbot) -> None:
    label = QLabel()
    qtbot.addWidget(label)
    for _ in range(20_000):  # without the work-around PySide6 6.12 aborts well before this
        label.setText("x")
    assert sys.getrefcount(None) > 1 << 59


class _Emitter(QObject):
    flag = Signal(bool)


@pytest.mark.skipif(not needs_refcount_fix(), reason="this PySide6 and Python need no fix")
def test_bools_survive_many_bool_signals() -> None:
    emitter = _Emitter()
    seen = []
    emitter.flag.connect(seen.append)
    for i in range(20_000):
        emitter.flag.emit(bool(i % 2))
    assert len(seen) == 20_000
    assert sys.getrefcount(True) > 1 << 59 and sys.getrefcount(False) > 1 << 59


def test_the_fix_is_for_the_releases_that_need_it() -> None:
    from rbqe_studio._compat import needs_refcount_fix

    assert needs_refcount_fix((6, 12, 0), (3, 11))
    assert needs_refcount_fix((6, 12, 1), (3, 10))  # assumed until measured otherwise
    assert not needs_refcount_fix((6, 11, 3), (3, 11))
    assert not needs_refcount_fix((6, 13, 0), (3, 11))
    assert not needs_refcount_fix((6, 12, 0), (3, 12))  # immortal singletons there


def test_the_installed_release_is_rightly_in_or_out() -> None:
    """Measure the bug on the installed PySide6: a release the fix is applied to must
    drop references (else AFFECTED is too wide), one it is not applied to must not."""
    from PySide6.QtCore import QObject

    from rbqe_studio._compat import needs_refcount_fix, pyside_version

    obj = QObject()
    before = sys.getrefcount(None)
    for _ in range(100):
        obj.setObjectName("x")  # a void method: returns None
    lost = before - sys.getrefcount(None)
    assert pyside_version() is not None
    if needs_refcount_fix():
        assert lost >= 100, f"PySide6 {pyside_version()} no longer drops None: narrow AFFECTED"
    else:
        assert lost <= 0, f"PySide6 {pyside_version()} drops None: add it to AFFECTED"
