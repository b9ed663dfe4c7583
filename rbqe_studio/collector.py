"""Python's cyclic garbage collector, run on the GUI thread only.

Left to itself, the collector runs on whichever thread allocates past its threshold. In
the app that is often a worker thread (the network allocates all the time), and when the
garbage it finds holds Qt objects of the GUI thread (a widget's wrapper in a reference
cycle, a closure connected to a signal) they are destroyed off their thread: the process
can die with SIGSEGV ("Garbage-collecting" on the worker, seen in the app's tests).

So automatic collection is switched off while the app runs, and a timer on the GUI thread
collects instead, generation by generation, with the collector's own thresholds. What
exists when it starts (the imported modules: torch, Qt, ~190k objects) is frozen out of
the collector's sight, so that a full pass takes well under a millisecond instead of
~100 ms of the GUI thread's time.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QCoreApplication, QObject, QTimer

INTERVAL_MS = 500  # garbage waits at most this long; a young-generation pass is cheap


class GuiThreadCollector(QObject):
    """Collects on the GUI thread while it lives; :meth:`stop` gives collection back."""

    def __init__(self, app: QCoreApplication, interval_ms: int = INTERVAL_MS) -> None:
        super().__init__(app)
        self._was_enabled = gc.isenabled()
        gc.disable()
        gc.collect()
        gc.freeze()
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.collect)
        self._timer.start()

    def collect(self) -> None:
        """A young-generation pass every tick (cheap; automatic collection would have run
        at least this often whenever allocations churned in between, which the counts no
        longer show once the objects are freed), and an older generation when enough
        younger passes have piled up, as the collector's thresholds say."""
        counts, limits = gc.get_count(), gc.get_threshold()
        gen = 2 if counts[2] > limits[2] else 1 if counts[1] > limits[1] else 0
        gc.collect(gen)

    def stop(self) -> None:
        self._timer.stop()
        self.setParent(None)  # no longer the app's collector
        gc.unfreeze()
        if self._was_enabled:
            gc.enable()


def collect_on_gui_thread(app: QCoreApplication) -> GuiThreadCollector:
    """Switch automatic collection off and collect on ``app``'s thread instead (once per
    app: a second call returns the first collector)."""
    existing = app.findChild(GuiThreadCollector)
    if isinstance(existing, GuiThreadCollector):
        return existing
    return GuiThreadCollector(app)
