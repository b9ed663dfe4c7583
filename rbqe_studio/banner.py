"""The strip above the panels that says what keeps images from being enhanced, with the
button that fixes it: choose a weights file (the model is missing or broken), or open the
settings (the device or backend cannot run it)."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget


class Banner(QFrame):
    choose_weights = Signal()
    open_settings = Signal()
    CHOOSE_WEIGHTS, OPEN_SETTINGS = "weights", "settings"  # which fix the button offers

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
        self.settings_button = QPushButton("Open Settings")
        self.settings_button.setToolTip("Choose another device or backend")
        self.settings_button.clicked.connect(self.open_settings)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(12, 6, 12, 6)
        lay.addWidget(self.label, 1)
        lay.addWidget(self.button)
        lay.addWidget(self.settings_button)
        self.hide()

    def text(self) -> str:
        return self.label.text()

    def show_problem(self, text: str, fix: str = CHOOSE_WEIGHTS) -> None:
        """Show ``text`` (what is wrong and how to fix it) with the button for ``fix``;
        "" hides the banner."""
        self.label.setText(text)
        self.button.setVisible(fix == self.CHOOSE_WEIGHTS)
        self.settings_button.setVisible(fix == self.OPEN_SETTINGS)
        self.setVisible(bool(text))
