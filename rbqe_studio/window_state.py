"""Window geometry, splitters and tab persistence; the start-up weights check."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QSettings
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QSplitter, QTabWidget, QWidget

from rbqe.errors import RBQEError
from rbqe.weights import WeightsInfo, default_weights_path, read_info
from rbqe_studio import settings as settings_mod

if TYPE_CHECKING:
    from rbqe_studio.compare_panel import ComparePanel

DEFAULT_SIZE = (1480, 920)
CENTRE_SHARE = 0.55  # of the window's width, at least, for the photo when it opens
# What a GUI user can do about a missing or unusable model (no command line needed).
WEIGHTS_FIX = ("To fix it: click 'Choose weights file…' and pick a model (.safetensors), "
               "choose the other model in Settings → Model, or reinstall RBQE Studio.")


@dataclass
class Layout:
    """The parts of a window whose layout outlives a session."""

    window: QWidget
    splitters: dict[str, QSplitter]  # store key -> splitter
    tabs: QTabWidget
    default_sizes: dict[str, list[int]] = field(default_factory=dict)  # when none stored
    compare: ComparePanel | None = None  # its exit strip's height, as the user dragged it


def side_widths(total: int, queue: tuple[int, int], tabs: tuple[int, int]
                ) -> tuple[int, int]:
    """The queue's and the side tabs' first widths in a splitter ``total`` px wide, each
    given as ``(narrowest, widest)``: their widest where the centre still gets
    :data:`CENTRE_SHARE` of the width, else narrower (the tabs' share in proportion,
    the queue what is left), never below their narrowest."""
    room = total * (1 - CENTRE_SHARE)
    t = min(tabs[1], max(tabs[0], round(room * tabs[1] / (queue[1] + tabs[1]))))
    q = min(queue[1], max(queue[0], round(room - t)))
    return q, t


def weights_problem(weights: str | None) -> tuple[str, WeightsInfo | None]:
    """("", the file's info) when the weights file looks usable, else a sentence for the
    user saying what is wrong and what to do, and None."""
    path = Path(weights) if weights else default_weights_path()
    if not path.is_file():
        return (f"No model weights at {path}: images can be opened, but not enhanced. "
                f"{WEIGHTS_FIX}"), None
    try:
        return "", read_info(path)
    except RBQEError as exc:
        return f"The weights file cannot be used: {exc}. {WEIGHTS_FIX}", None


def restore_window(store: QSettings, layout: Layout) -> None:
    geometry = settings_mod.load_state(store, "geometry")
    win = layout.window
    if geometry is None or not win.restoreGeometry(geometry):
        screen = QGuiApplication.primaryScreen()
        avail = screen.availableGeometry() if screen else None
        w, h = DEFAULT_SIZE
        if avail is not None and not avail.isEmpty():
            w, h = min(w, int(avail.width() * 0.92)), min(h, int(avail.height() * 0.92))
        win.resize(w, h)
    for key, splitter in layout.splitters.items():
        state = settings_mod.load_state(store, key)
        if state is not None:
            splitter.restoreState(state)
        elif key in layout.default_sizes:
            splitter.setSizes(layout.default_sizes[key])
    tab = store.value("window/tab")
    if tab is not None and str(tab).isdigit():
        layout.tabs.setCurrentIndex(int(tab))
    if layout.compare is not None:
        # (Its splitter's own state is not enough: the panel fits the strip to the
        # window at each resize, from the height the user chose, bounded there.)
        layout.compare.strip_wanted = stored_height(store.value("window/strip_height"))
        layout.compare.fit_strip()


def stored_height(value: object) -> int | None:
    """A stored strip height in px, or None where there is none or it makes no sense
    (the panel bounds a sane one to the window it opens in)."""
    try:
        height = int(str(value))
    except ValueError:
        return None
    return height if 0 < height <= 10_000 else None


def save_window(store: QSettings, layout: Layout) -> None:
    settings_mod.save_state(store, "geometry", layout.window.saveGeometry())
    for key, splitter in layout.splitters.items():
        settings_mod.save_state(store, key, splitter.saveState())
    store.setValue("window/tab", layout.tabs.currentIndex())
    if layout.compare is not None:
        if layout.compare.strip_wanted is None:
            store.remove("window/strip_height")
        else:
            store.setValue("window/strip_height", layout.compare.strip_wanted)
