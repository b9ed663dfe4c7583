"""Menus, toolbar and keyboard shortcuts of the main window."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6.QtCore import QSize
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu

from rbqe_studio.exits import INPUT
from rbqe_studio.viewer import SIDE, SPLIT, TOGGLE
from rbqe.arch import NUM_EXITS

if TYPE_CHECKING:
    from rbqe_studio.main_window import MainWindow

Key = str | QKeySequence.StandardKey


@dataclass
class Actions:
    """The actions whose enabled state the window updates."""

    open: QAction
    open_folder: QAction
    save: QAction
    save_all: QAction
    compute_all: QAction
    redo: QAction
    cancel_batch: QAction
    toggle: QAction


def _add(win: MainWindow, menu: QMenu, text: str, slot: Callable[[], object],
         keys: tuple[Key, ...] = (), tip: str = "") -> QAction:
    act = QAction(text, win)
    act.setShortcuts([QKeySequence(k) for k in keys])
    if tip:
        act.setStatusTip(tip)
        first = act.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
        act.setToolTip(f"{tip} ({first})" if first else tip)
    act.triggered.connect(lambda _checked=False: slot())
    menu.addAction(act)
    win.addAction(act)  # shortcuts keep working whatever has the focus
    return act


def build_actions(win: MainWindow) -> Actions:
    mb = win.menuBar()
    cp, view = win.compare, win.compare.view
    f = mb.addMenu("&File")
    open_ = _add(win, f, "Open files…", win.open_files_dialog, (QKeySequence.StandardKey.Open,),
                 "Add photos to the queue")
    open_folder = _add(win, f, "Open folder…", win.open_folder_dialog, ("Ctrl+Shift+O",),
                       "Add a folder of photos")
    f.addSeparator()
    save = _add(win, f, "Save result…", win.save_result, ("Ctrl+S",),
                "Save the exit shown on the B side")
    save_all = _add(win, f, "Save all exits…", win.save_all_exits, ("Ctrl+Shift+S",),
                    "Save all five exits of this image")
    f.addSeparator()
    _add(win, f, "Open log folder", win.open_log_folder)
    _add(win, f, "Quit", win.close, (QKeySequence.StandardKey.Quit,))

    v = mb.addMenu("&View")
    _add(win, v, "Split view", lambda: view.set_mode(SPLIT), ("S",))
    _add(win, v, "Side by side", lambda: view.set_mode(SIDE), ("D",))
    _add(win, v, "One pane", lambda: view.set_mode(TOGGLE), (),
         "A or B in one pane; flip with B")
    toggle = _add(win, v, "Flip A/B", view.toggle_ab, ("B", "T"),
                  "Flip between A and B in one pane (hold Space to peek at A)")
    _add(win, v, "Swap A and B", cp.swap, ("X",))
    v.addSeparator()
    _add(win, v, "Zoom to fit", view.fit, ("F", "Ctrl+0"))
    _add(win, v, "Zoom 1:1", view.actual_size, ("Ctrl+1",))
    _add(win, v, "Zoom in", lambda: view.zoom(1.25), (QKeySequence.StandardKey.ZoomIn,))
    _add(win, v, "Zoom out", lambda: view.zoom(0.8), (QKeySequence.StandardKey.ZoomOut,))
    v.addSeparator()
    _add(win, v, "Next image", lambda: win.queue.step(1), ("Right", "PgDown", "J"))
    _add(win, v, "Previous image", lambda: win.queue.step(-1), ("Left", "PgUp", "K"))
    v.addSeparator()
    for k in range(NUM_EXITS + 1):  # the input (0) and every exit
        _add(win, v, "Show input" if k == INPUT else f"Show exit {k}",
             lambda k=k: cp.pick(k, "b"), (str(k),))

    p = mb.addMenu("&Process")
    compute_all = _add(win, p, "Compute all exits", win.session.compute_all, ("Ctrl+E",),
                       "Continue to exit 5 from the cached stages")
    redo = _add(win, p, "Process again", win.session.reprocess_current, ("Ctrl+R",),
                "Run the viewed image again")
    p.addSeparator()
    _add(win, p, "Start batch", win.start_batch, ("Ctrl+B",))
    cancel_batch = _add(win, p, "Cancel batch", win.batch.stop, ("Ctrl+.",))
    h = mb.addMenu("&Help")
    _add(win, h, "Keyboard shortcuts", win.show_shortcuts, ("F1",))
    _add(win, h, "About RBQE Studio", win.about)

    tb = win.addToolBar("Main")
    tb.setObjectName("mainToolbar")
    tb.setMovable(False)
    tb.setIconSize(QSize(16, 16))
    for act in (open_, open_folder, None, save, save_all, None, compute_all, redo):
        if act is None:
            tb.addSeparator()
        else:
            tb.addAction(act)
    return Actions(open_, open_folder, save, save_all, compute_all, redo, cancel_batch, toggle)
