"""Window geometry, splitters and tab persistence; the start-up weights check."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtGui import QGuiApplication

from rbqe_studio import settings as settings_mod
from rbqe.errors import RBQEError
from rbqe.weights import default_weights_path, read_info

if TYPE_CHECKING:
    from rbqe_studio.main_window import MainWindow

DEFAULT_SIZE = (1480, 920)


def weights_problem(weights: str | None, on_threshold: Callable[[float, int], None]) -> str:
    """"" when the weights file looks usable (its exit rule, threshold and earliest exit,
    goes to ``on_threshold``),
    else a sentence for the user saying what is wrong and what to do."""
    path = Path(weights) if weights else default_weights_path()
    if not path.is_file():
        return (f"No model weights at {path}. Train them with 'rbqe train', or start with "
                "--weights FILE (or set RBQE_WEIGHTS). Images can be opened, but not enhanced.")
    try:
        info = read_info(path)
        on_threshold(info.threshold, info.min_exit)
    except RBQEError as exc:
        return f"The weights file cannot be used: {exc}"
    return ""


def restore_window(win: MainWindow) -> None:
    store = win.store
    geometry = settings_mod.load_state(store, "geometry")
    if geometry is None or not win.restoreGeometry(geometry):
        screen = QGuiApplication.primaryScreen()
        avail = screen.availableGeometry() if screen else None
        w, h = DEFAULT_SIZE
        if avail is not None and not avail.isEmpty():
            w, h = min(w, int(avail.width() * 0.92)), min(h, int(avail.height() * 0.92))
        win.resize(w, h)
    for key, splitter in (("main_splitter", win.splitter),
                          ("center_splitter", win.compare.splitter)):
        state = settings_mod.load_state(store, key)
        if state is not None:
            splitter.restoreState(state)
    if settings_mod.load_state(store, "center_splitter") is None:
        win.compare.splitter.setSizes([600, 250])
    tab = store.value("window/tab")
    if tab is not None and str(tab).isdigit():
        win.tabs.setCurrentIndex(int(tab))


def save_window(win: MainWindow) -> None:
    store = win.store
    settings_mod.save_state(store, "geometry", win.saveGeometry())
    settings_mod.save_state(store, "main_splitter", win.splitter.saveState())
    settings_mod.save_state(store, "center_splitter", win.compare.splitter.saveState())
    store.setValue("window/tab", win.tabs.currentIndex())
    settings_mod.save_settings(store, win.settings)
    store.sync()
