"""Menus, toolbar and keyboard shortcuts of the main window."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QSize
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMenu

from rbqe.arch import NUM_EXITS
from rbqe_studio.compare_panel import ComparePanel
from rbqe_studio.exits import INPUT
from rbqe_studio.queue_panel import QueuePanel
from rbqe_studio.viewer import DIFF, SIDE, SPLIT, TOGGLE

Key = str | QKeySequence.StandardKey
Command = Callable[[], object]


@dataclass
class Commands:
    """What the menu items do; the window hands in its handlers, so the actions need no
    window of their own."""

    open_files: Command
    open_folder: Command
    save: Command
    save_all: Command
    show_in_folder: Command
    open_log_folder: Command
    quit: Command
    compute_all: Command
    redo: Command
    stop: Command
    start_batch: Command
    cancel_batch: Command
    shortcuts: Command
    about: Command
    settings: Command
    show_exit: Callable[[int], object]  # number keys: 0 the input, 1-5 an exit, on B


@dataclass
class Actions:
    """The actions whose enabled state the window updates."""

    open: QAction
    open_folder: QAction
    save: QAction
    save_all: QAction
    show_in_folder: QAction
    compute_all: QAction
    redo: QAction
    stop: QAction
    cancel_batch: QAction
    toggle: QAction
    difference: QAction


SAVE_TIP = "Save the exit shown on the B side"
# Stopped before an exit was chosen: no "auto" result to save, the exit shown is saved
SAVE_STOPPED_TIP = ("Save the exit shown on the B side, named as that exit (stopped: no "
                    "exit was chosen)")


def set_tip(act: QAction, tip: str) -> None:
    """``act``'s status tip ``tip``, and its tooltip with its first shortcut."""
    act.setStatusTip(tip)
    first = act.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
    act.setToolTip(f"{tip} ({first})" if first else tip)


def _add(win: QMainWindow, menu: QMenu, text: str, slot: Command,
         keys: tuple[Key, ...] = (), tip: str = "") -> QAction:
    act = QAction(text, win)
    act.setShortcuts([QKeySequence(k) for k in keys])
    if tip:
        set_tip(act, tip)
    act.triggered.connect(lambda _checked=False: slot())
    menu.addAction(act)
    win.addAction(act)  # shortcuts keep working whatever has the focus
    return act


def build_actions(win: QMainWindow, cmd: Commands, cp: ComparePanel,
                  queue: QueuePanel) -> Actions:
    """Menus and toolbar of ``win``; the View menu drives ``cp`` and ``queue`` directly."""
    mb = win.menuBar()
    view = cp.view
    f = mb.addMenu("&File")
    open_ = _add(win, f, "Open files…", cmd.open_files, (QKeySequence.StandardKey.Open,),
                 "Add photos to the queue")
    open_folder = _add(win, f, "Open folder…", cmd.open_folder, ("Ctrl+Shift+O",),
                       "Add a folder of photos")
    f.addSeparator()
    save = _add(win, f, "Save result…", cmd.save, ("Ctrl+S",), SAVE_TIP)
    save_all = _add(win, f, "Save all exits…", cmd.save_all, ("Ctrl+Shift+S",),
                    "Save all five exits of this image")
    show_in_folder = _add(win, f, "Show in folder", cmd.show_in_folder, ("Ctrl+Shift+F",),
                          "Open the folder of this image's latest output")
    f.addSeparator()
    # The platform's key (Cmd+, on macOS), or Ctrl+, where it has none (Linux, Windows).
    has_key = bool(QKeySequence.keyBindings(QKeySequence.StandardKey.Preferences))
    settings = _add(win, f, "Settings…", cmd.settings,
                    (QKeySequence.StandardKey.Preferences,) if has_key else ("Ctrl+,",),
                    "Show the Settings tab")
    settings.setMenuRole(QAction.MenuRole.PreferencesRole)
    _add(win, f, "Open log folder", cmd.open_log_folder)
    # Ctrl+Q (Cmd+Q on macOS) spelled out: StandardKey.Quit is empty on Windows and on
    # some Linux platforms, where the menu then had no key at all.
    _add(win, f, "Quit", cmd.quit, ("Ctrl+Q",))

    v = mb.addMenu("&View")
    _add(win, v, "Split view", lambda: view.set_mode(SPLIT), ("S",))
    _add(win, v, "Side by side", lambda: view.set_mode(SIDE), ("D",))
    _add(win, v, "One pane", lambda: view.set_mode(TOGGLE), (),
         "A or B in one pane; flip with B")
    toggle = _add(win, v, "Flip A/B", view.toggle_ab, ("B", "T"),
                  "Flip between A and B in one pane (hold Space to peek at A)")
    difference = _add(win, v, "Difference |A−B|", lambda: view.set_mode(DIFF), ("V",),
                      "What changed between A and B, amplified, as a heat map")
    _add(win, v, "Swap A and B", cp.swap, ("X",))
    v.addSeparator()
    _add(win, v, "Zoom to fit", view.fit, ("F", "Ctrl+0"))
    _add(win, v, "Zoom 1:1", view.actual_size, ("Ctrl+1",))
    # Ctrl+= too: "+" is Shift+= on most layouts, so Ctrl++ needs three keys.
    _add(win, v, "Zoom in", lambda: view.zoom_step(1),
         (QKeySequence.StandardKey.ZoomIn, "Ctrl+="))
    _add(win, v, "Zoom out", lambda: view.zoom_step(-1), (QKeySequence.StandardKey.ZoomOut,))
    v.addSeparator()
    _add(win, v, "Next image", lambda: queue.step(1), ("Right", "PgDown", "J"))
    _add(win, v, "Previous image", lambda: queue.step(-1), ("Left", "PgUp", "K"))
    v.addSeparator()
    for k in range(NUM_EXITS + 1):  # the input (0) and every exit
        _add(win, v, "Show input" if k == INPUT else f"Show exit {k}",
             lambda k=k: cmd.show_exit(k), (str(k),))

    p = mb.addMenu("&Process")
    compute_all = _add(win, p, "Compute all exits", cmd.compute_all, ("Ctrl+E",),
                       "Continue to exit 5 from the cached stages")
    redo = _add(win, p, "Process again", cmd.redo, ("Ctrl+R",),
                "Run the viewed image again")
    stop = _add(win, p, "Stop", cmd.stop, ("Esc",),
                "Stop enhancing the viewed image; the exits computed so far stay to view and "
                "save (Process again runs it from the start)")
    p.addSeparator()
    _add(win, p, "Start batch", cmd.start_batch, ("Ctrl+B",))
    cancel_batch = _add(win, p, "Cancel batch", cmd.cancel_batch, ("Ctrl+.",))
    h = mb.addMenu("&Help")
    _add(win, h, "Keyboard shortcuts", cmd.shortcuts, ("F1",))
    _add(win, h, "About RBQE Studio", cmd.about)

    tb = win.addToolBar("Main")
    tb.setObjectName("mainToolbar")
    tb.setMovable(False)
    tb.setIconSize(QSize(16, 16))
    for act in (open_, open_folder, None, save, save_all, None, compute_all, redo, stop):
        if act is None:
            tb.addSeparator()
        else:
            tb.addAction(act)
    return Actions(open_, open_folder, save, save_all, show_in_folder, compute_all, redo,
                   stop, cancel_batch, toggle, difference)
