"""The window's small message boxes: keyboard shortcuts, about, quit during a batch."""

from __future__ import annotations

from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QMenu, QMenuBar, QMessageBox, QWidget


def shortcuts(parent: QWidget, menus: QMenuBar) -> QMessageBox:
    """Help → Keyboard shortcuts: every action that has keys, from the menus."""
    rows = []
    for menu in menus.findChildren(QMenu):
        for act in menu.actions():
            keys = ", ".join(k.toString(QKeySequence.SequenceFormat.NativeText)
                             for k in act.shortcuts())
            if keys:
                rows.append(f"<tr><td>{act.text().replace('&', '')}&nbsp;&nbsp;</td>"
                            f"<td><b>{keys}</b></td></tr>")
    rows.append("<tr><td>Peek at A (hold)&nbsp;&nbsp;</td><td><b>Space</b></td></tr>")
    box = QMessageBox(QMessageBox.Icon.NoIcon, "Keyboard shortcuts",
                      f"<table cellspacing='3'>{''.join(rows)}</table>",
                      QMessageBox.StandardButton.Ok, parent)
    box.setModal(False)
    box.show()
    return box


def about(parent: QWidget) -> None:
    box = QMessageBox(QMessageBox.Icon.Information, "About RBQE Studio",
                      "RBQE Studio repairs JPEG-compressed photos with an early-exit "
                      "network: five exits of growing depth, and each image leaves at "
                      "the first exit whose blind quality score reaches the threshold "
                      "(from the earliest exit the model's calibration allows).",
                      QMessageBox.StandardButton.Ok, parent)
    box.setModal(False)
    box.show()


def confirm_quit(parent: QWidget, done: int, total: int) -> bool:
    """Asked when a batch runs: quitting stops it (what is written stays written)."""
    answer = QMessageBox.question(
        parent, "Quit RBQE Studio?",
        f"A batch is running ({done} of {total} images done). Quit now? The image in "
        "progress is not written; starting the batch again later resumes it.",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes
