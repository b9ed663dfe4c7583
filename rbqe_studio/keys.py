"""One rule between the window's single-key shortcuts and the widgets: the focused
widget keeps its own keys.

The window binds bare keys (Left/Right: previous/next image, Space held: peek at A), and
Qt gives a window shortcut a key before the focused widget sees it, unless the widget
claims it in a ``ShortcutOverride`` event. The window's event filter asks
:func:`keeps_key` there, so Space presses a focused button, Left/Right switch tabs on a
focused tab bar, arrows step a combo box, and pan a zoomed picture.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSlider,
    QAbstractSpinBox,
    QComboBox,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QTabBar,
    QTextEdit,
    QToolButton,
    QWidget,
)

from rbqe_studio.viewer import ImagePane

K = Qt.Key
ARROWS = frozenset({K.Key_Left, K.Key_Right, K.Key_Up, K.Key_Down})
PAGING = frozenset({K.Key_PageUp, K.Key_PageDown, K.Key_Home, K.Key_End})
PRESS = frozenset({K.Key_Space, K.Key_Return, K.Key_Enter})
# What each kind of widget does with a bare key (checked in this order: a QComboBox is
# not a button, a QAbstractSpinBox holds a line edit of its own).
NATIVE: tuple[tuple[tuple[type[QWidget], ...], frozenset[K]], ...] = (
    ((QLineEdit, QTextEdit, QPlainTextEdit, QAbstractSpinBox),
     ARROWS | PAGING | {K.Key_Space}),
    ((QAbstractButton,), PRESS),
    ((QTabBar,), frozenset({K.Key_Left, K.Key_Right, K.Key_Home, K.Key_End})),
    # Up/Down step a combo box; Left/Right do nothing on one that cannot be typed in.
    ((QComboBox,), frozenset({K.Key_Up, K.Key_Down, K.Key_Space}) | PAGING),
    ((QAbstractSlider,), ARROWS | PAGING),
)
# Modifiers a bare key may carry: Ctrl+Right and the like stay the window's.
BARE = Qt.KeyboardModifier.ShiftModifier | Qt.KeyboardModifier.KeypadModifier


def keeps_key(widget: QWidget | None, event: QKeyEvent) -> bool:
    """Whether ``widget`` (the focus widget) uses ``event``'s key itself, so that no
    window shortcut (nor the Space peek) may take it."""
    if widget is None or event.modifiers() & ~BARE:
        return False
    key = event.key()
    if isinstance(widget, QComboBox) and widget.isEditable():
        return key in ARROWS | PAGING | {K.Key_Space}
    if isinstance(widget, ImagePane):
        return widget.pans_with(key)
    return any(isinstance(widget, kinds) and key in keys for kinds, keys in NATIVE)


def press_button(widget: QWidget | None, event: QKeyEvent) -> bool:
    """Return or Enter on a focused push or tool button clicks it, as Space does (Qt
    does that only for a dialog's buttons); returns whether it did."""
    if event.key() not in (K.Key_Return, K.Key_Enter) or event.modifiers() & ~BARE or \
            event.isAutoRepeat() or \
            not isinstance(widget, (QPushButton, QToolButton)) or not widget.isEnabled():
        return False
    if isinstance(widget, QPushButton) and widget.autoDefault():
        return False  # the button does it itself
    widget.animateClick()
    return True
