"""The PySide6 6.12 / CPython 3.11 None-refcount work-around (see rbqe_studio/_compat.py)."""

from __future__ import annotations

import sys

import pytest
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QLabel

import rbqe_studio  # noqa: F401  (importing the package applies the work-around)


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None is immortal from Python 3.12")
def test_none_survives_many_void_qt_calls(qtbot) -> None:
    label = QLabel()
    qtbot.addWidget(label)
    for _ in range(20_000):  # without the work-around PySide6 6.12 aborts well before this
        label.setText("x")
    assert sys.getrefcount(None) > 1 << 59


class _Emitter(QObject):
    flag = Signal(bool)


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="bools are immortal from Python 3.12")
def test_bools_survive_many_bool_signals() -> None:
    emitter = _Emitter()
    seen = []
    emitter.flag.connect(seen.append)
    for i in range(20_000):
        emitter.flag.emit(bool(i % 2))
    assert len(seen) == 20_000
    assert sys.getrefcount(True) > 1 << 59 and sys.getrefcount(False) > 1 << 59
