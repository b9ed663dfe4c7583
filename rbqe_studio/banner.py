"""The strip above the panels that says what keeps images from being enhanced, with the
button that fixes it (choose a weights file)."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget


class Banner(QFrame):
    choose_weights = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        self.label = QLabel()
        self.label.setObjectName("bannerText")
        self.label.setWordWrap(True)
        self.button = QPushButton("Choose weights file…")
        self.button.setToolTip("Use a model weights file (.safetensors) from disk; Settings → "
                               "Model goes back to a shipped model")
        self.button.clicked.connect(self.choose_weights)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(12, 6, 12, 6)
        lay.addWidget(self.label, 1)
        lay.addWidget(self.button)
        self.hide()

    def text(self) -> str:
        return self.label.text()

    def show_problem(self, text: str) -> None:
        """Show ``text`` (what is wrong and how to fix it); "" hides the banner."""
        self.label.setText(text)
        self.setVisible(bool(text))
