"""The application icon (an SVG in ``rbqe_studio/resources``)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QIcon

ICON_PATH = Path(__file__).resolve().parent / "resources" / "rbqe-studio.svg"


def app_icon() -> QIcon:
    return QIcon(str(ICON_PATH)) if ICON_PATH.is_file() else QIcon()
