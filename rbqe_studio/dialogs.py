"""The window's small message boxes: keyboard shortcuts, about, quit during a batch,
replace files on Save all, replace a file on Save (never the photo itself)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QMenu, QMenuBar, QMessageBox, QWidget


def shortcuts(parent: QWidget, menus: QMenuBar) -> QMessageBox:
    """Help → Keyboard shortcuts: every action that has keys, from the menus."""
    cells = []
    for menu in menus.findChildren(QMenu):
        for act in menu.actions():
            keys = ", ".join(k.toString(QKeySequence.SequenceFormat.NativeText)
                             for k in act.shortcuts())
            if keys:
                cells.append(f"<td nowrap>{act.text().replace('&', '')}&nbsp;&nbsp;</td>"
                             f"<td nowrap><b>{keys}</b></td>")
    for what, keys in (("Peek at A (hold)", "Space"),
                       ("Pan a zoomed image", "Arrows, Shift+Arrows"),
                       ("Remove from the queue (in the list)", "Delete, Backspace")):
        cells.append(f"<td nowrap>{what}&nbsp;&nbsp;</td><td nowrap><b>{keys}</b></td>")
    # Two columns of shortcuts: in one the box was 751 px tall, its OK button below a
    # 1280x720 screen.
    half = (len(cells) + 1) // 2
    gap = "<td>&nbsp;&nbsp;&nbsp;&nbsp;</td>"
    right = [*cells[half:], "<td></td><td></td>"]  # padded for an odd count
    rows = [f"<tr>{a}{gap}{b}</tr>" for a, b in zip(cells[:half], right, strict=False)]
    box = QMessageBox(QMessageBox.Icon.NoIcon, "Keyboard shortcuts",
                      f"<table cellspacing='3'>{''.join(rows)}</table>",
                      QMessageBox.StandardButton.Ok, parent)
    # Beneath the table: a paragraph in it made the box wrap the table's rows.
    box.setInformativeText("Arrows pan once the image is clicked and larger than its "
                           "pane; else Left and Right change the image. A focused button, "
                           "tab bar or field keeps its own keys.")
    # QMessageBox caps its width and wrapped the two columns' names; room for both.
    box.setStyleSheet("QLabel { min-width: 660px; }")
    box.setModal(False)
    box.show()
    return box


def about(parent: QWidget) -> None:
    box = QMessageBox(QMessageBox.Icon.Information, "About RBQE Studio",
                      "RBQE Studio repairs JPEG-compressed photos with an early-exit "
                      "network: five exits of growing depth, and each image leaves at "
                      "the first exit its exit rule judges good enough. The shipped "
                      "model's rule is a learned gate, which predicts how much going on "
                      "would still gain; Settings can use the blind quality score "
                      "against a threshold instead.",
                      QMessageBox.StandardButton.Ok, parent)
    box.setModal(False)
    box.show()


def confirm_quit(parent: QWidget, done: tuple[int, int] | None) -> bool:
    """Asked when a batch runs: quitting stops it (what is written stays written).
    ``done``: images done and in all; None before the batch has counted them."""
    text = ("A batch is starting (preparing the model, listing the input folder). Quit "
            "now? Nothing is written yet." if done is None else
            f"A batch is running ({done[0]} of {done[1]} images done). Quit now? The image "
            "in progress is not written; starting the batch again later resumes it.")
    answer = QMessageBox.question(
        parent, "Quit RBQE Studio?", text,
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


def confirm_replace(parent: QWidget, folder: Path, files: list[Path]) -> bool:
    """Asked by Save all before it replaces files rbqe did not save there as this
    result (a user's own, or another photo's); the default answer keeps them."""
    names = "\n".join(f"    {p.name}" for p in files[:6])
    if len(files) > 6:
        names += f"\n    and {len(files) - 6} more"
    return _replace_or_cancel(parent, "Replace files?",
                              f"{len(files)} file{'s' if len(files) > 1 else ''} in {folder} "
                              f"already exist{'' if len(files) > 1 else 's'} and "
                              f"{'are' if len(files) > 1 else 'is'} not this photo's saved "
                              f"result:\n\n{names}\n\nReplace "
                              f"{'them' if len(files) > 1 else 'it'}?")


def confirm_overwrite(parent: QWidget, path: Path) -> bool:
    """Asked by Save when the name the dialog returned names a file that exists (the
    dialog does not ask: a suffix it adds would go unasked). The default answer keeps
    the file."""
    return _replace_or_cancel(parent, "Replace file?",
                              f"{path.name} already exists in {path.parent}.\n\nReplace it?")


def refuse_input(parent: QWidget, path: Path) -> None:
    """Save was given the photo's own file: said before any question (it asked "Replace
    it?", then the write was refused)."""
    _warn(parent, "Cannot replace the photo",
          f"{path.name} in {path.parent} is the photo being enhanced: RBQE Studio never "
          f"writes over its input.\n\nNothing was saved; save again under another name "
          f"or in another folder.")


def _warn(parent: QWidget, title: str, text: str) -> None:
    """A warning with OK, modal."""
    QMessageBox.warning(parent, title, text)


def _replace_or_cancel(parent: QWidget, title: str, text: str) -> bool:
    """A warning with Replace and Cancel, Cancel the default; True for Replace."""
    box = QMessageBox(QMessageBox.Icon.Warning, title, text,
                      QMessageBox.StandardButton.Cancel, parent)
    replace = box.addButton("Replace", QMessageBox.ButtonRole.DestructiveRole)
    box.setDefaultButton(QMessageBox.StandardButton.Cancel)
    box.exec()
    return box.clickedButton() is replace
