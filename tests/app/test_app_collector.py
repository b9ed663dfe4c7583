"""Garbage is collected on the GUI thread, never on a worker (rbqe_studio.collector)."""

from __future__ import annotations

import gc
import threading

from rbqe_studio.collector import collect_on_gui_thread


class Cycle:
    """A reference cycle that records the thread that finally frees it."""

    freed_on: list[int] = []

    def __init__(self) -> None:
        self.me = self

    def __del__(self) -> None:
        Cycle.freed_on.append(threading.get_ident())


def _make_garbage_then_churn() -> None:
    Cycle()
    # Containers kept alive, far past the young generation's threshold: automatic
    # collection would run here, on this thread.
    kept = [[] for _ in range(20 * gc.get_threshold()[0])]
    del kept


def test_cycles_made_on_a_worker_are_freed_on_the_gui_thread(qtbot, qapp):
    collector = collect_on_gui_thread(qapp)
    assert collect_on_gui_thread(qapp) is collector  # one per app
    assert not gc.isenabled()
    Cycle.freed_on.clear()
    worker = threading.Thread(target=_make_garbage_then_churn)
    worker.start()
    worker.join()
    assert Cycle.freed_on == []  # nothing collected on the worker
    qtbot.waitUntil(lambda: Cycle.freed_on != [], timeout=5000)
    assert Cycle.freed_on == [threading.get_ident()]


def test_without_the_collector_the_worker_collects():
    """The test above means something: with automatic collection, the worker frees it."""
    gc.collect()
    Cycle.freed_on.clear()
    gc.enable()
    try:
        worker = threading.Thread(target=_make_garbage_then_churn)
        worker.start()
        worker.join()
    finally:
        gc.disable()  # as the module's collector wants it
    assert Cycle.freed_on == [worker.ident]


def test_stop_gives_automatic_collection_back(qapp):
    collector = collect_on_gui_thread(qapp)
    collector.stop()
    try:
        assert gc.isenabled()
        assert collect_on_gui_thread(qapp) is not collector  # a stopped one is not reused
    finally:
        collect_on_gui_thread(qapp).stop()
        gc.disable()  # the module's fixture stops its own collector last
