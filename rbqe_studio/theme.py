"""A calm dark theme: Fusion style, a dark palette and a short style sheet.

Photos are judged against a neutral dark surround, so the chrome stays grey and quiet
and the one accent colour marks what matters (the chosen exit, the primary button).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import QApplication

ACCENT = "#4c9be8"
FOCUS_ON_ACCENT = "#cfe4fa"  # the focus edge of what is already filled with the accent
DISABLED = "#62676e"  # text of what cannot be used now
RES = (Path(__file__).resolve().parent / "resources").as_posix()

STYLE = f"""
QMainWindow, QWidget#central {{ background: #1b1d21; }}
QToolBar {{ background: #202328; border: none; border-bottom: 1px solid #2c3036;
           padding: 4px 6px; spacing: 4px; }}
QToolBar QToolButton {{ padding: 3px 8px; border: 1px solid transparent; border-radius: 5px;
                        color: #dfe3e8; }}
QToolBar QToolButton:hover {{ background: #2c3036; }}
QToolBar QToolButton:checked {{ background: #2f4863; color: white; border-color: #2f4863; }}
QToolButton:checked {{ background: #2f4863; color: white; border-color: {ACCENT}; }}
QToolBar#compareBar {{ padding: 2px 4px; spacing: 2px; }}
QToolBar#compareBar QToolButton {{ padding: 2px 6px; }}
QToolBar#compareBar QToolButton#qt_toolbar_ext_button {{ padding: 0; min-width: 16px;
    background: #2c3036; border-radius: 4px; qproperty-icon: url({RES}/down.svg); }}
QToolBar QToolButton:disabled {{ color: #5d636b; }}
QToolBar QToolButton:focus {{ border-color: {ACCENT}; }}
QToolBar QLabel {{ color: #a5abb3; padding: 0 4px; }}
QStatusBar {{ background: #202328; color: #b7bcc3; border-top: 1px solid #2c3036; }}
QStatusBar QLabel {{ color: #b7bcc3; padding: 0 6px; }}
QSplitter::handle {{ background: #2a2d33; }}
QSplitter::handle:hover {{ background: {ACCENT}; }}
QTabWidget::pane {{ border: none; background: #202328; }}
QTabBar::tab {{ background: #1b1d21; color: #a5abb3; padding: 7px 16px; border: none;
               border-bottom: 2px solid transparent; }}
QTabBar::tab:selected {{ color: #f0f0f0; border-bottom: 2px solid {ACCENT}; background: #202328; }}
QTabBar::tab:selected:focus {{ background: #2a3d52; color: white; }}
QWidget#queuePanel, QWidget#infoBody, QTabWidget QWidget {{ background: #202328; }}
QScrollArea#cardScroll, QWidget#cardRow {{ background: transparent; }}
QWidget#exitStrip {{ background: #1e2024; border-top: 1px solid #2c3036; }}
QLabel#panelTitle {{ font-weight: bold; font-size: 11pt; color: #f0f0f0; }}
QLabel#sectionTitle {{ font-weight: bold; color: #dfe3e8; padding-top: 10px;
                       border-bottom: 1px solid #2f3339; padding-bottom: 3px; }}
QLabel#muted {{ color: #8d939b; }}
QLabel#threshold {{ font-weight: bold; font-size: 11pt; color: #f0f0f0; }}
QFrame#banner {{ background: #4a3420; border-bottom: 1px solid #6b4a2a; }}
QLabel#bannerText {{ color: #ffd9a8; }}
QListWidget, QTextBrowser, QTableWidget {{ background: #1b1d21; border: 1px solid #2c3036;
                                           border-radius: 6px; color: #e6e6e6; }}
QTableWidget {{ gridline-color: #2c3036; }}
QListWidget:focus, QTextBrowser:focus {{ border-color: {ACCENT}; }}
QHeaderView::section {{ background: #24272c; color: #a5abb3; border: none; padding: 3px 6px; }}
QPushButton {{ background: #2c3036; color: #e6e6e6; border: 1px solid #3a3f46;
               border-radius: 5px; padding: 5px 12px; }}
QPushButton:hover {{ background: #343941; }}
QPushButton:focus {{ border-color: {ACCENT}; }}
QPushButton:disabled {{ color: #62676e; background: #24272b; border-color: #2c3036; }}
QPushButton#primary {{ background: {ACCENT}; border-color: {ACCENT}; color: white;
                       font-weight: bold; }}
QPushButton#primary:focus {{ border-color: {FOCUS_ON_ACCENT}; }}
QPushButton#primary:disabled {{ background: #2f4863; border-color: #2f4863; color: #9bb4cc; }}
QLineEdit, QComboBox, QSpinBox, QDoubleSpinBox {{ background: #16181b; color: #e6e6e6;
    border: 1px solid #3a3f46; border-radius: 5px; padding: 3px 6px; min-height: 20px; }}
QLineEdit:focus, QComboBox:focus, QSpinBox:focus, QDoubleSpinBox:focus {{
    border-color: {ACCENT}; }}
QLineEdit:disabled, QComboBox:disabled, QSpinBox:disabled, QDoubleSpinBox:disabled {{
    color: {DISABLED}; background: #1d1f23; border-color: #2c3036; }}
QCheckBox:disabled, QLabel:disabled, QToolButton:disabled {{ color: {DISABLED}; }}
QCheckBox::indicator:disabled {{ border-color: #3a3f46; background: #1d1f23; }}
QCheckBox::indicator:checked:disabled {{ background: #2f4863; border-color: #2f4863; }}
QProgressBar {{ background: #16181b; border: 1px solid #3a3f46; border-radius: 5px;
                text-align: center; color: #e6e6e6; min-height: 18px; }}
QProgressBar::chunk {{ background: {ACCENT}; border-radius: 4px; }}
QCheckBox {{ spacing: 8px; }}
QCheckBox::indicator {{ width: 14px; height: 14px; border: 1px solid #5a606a;
                        border-radius: 3px; background: #16181b; }}
QCheckBox::indicator:hover, QCheckBox::indicator:focus {{ border-color: {ACCENT}; }}
QCheckBox:focus {{ color: white; }}
QCheckBox::indicator:checked {{ background: {ACCENT}; border-color: {ACCENT};
                                image: url({RES}/check.svg); }}
QCheckBox::indicator:checked:focus {{ border-color: {FOCUS_ON_ACCENT}; }}
QAbstractSpinBox {{ padding-right: 18px; }}
QAbstractSpinBox::up-button, QAbstractSpinBox::down-button {{ subcontrol-origin: border;
    width: 16px; border: none; border-left: 1px solid #3a3f46; background: #24272c; }}
QAbstractSpinBox::up-button {{ subcontrol-position: top right; border-top-right-radius: 5px; }}
QAbstractSpinBox::down-button {{ subcontrol-position: bottom right;
                                 border-bottom-right-radius: 5px; }}
QAbstractSpinBox::up-button:hover, QAbstractSpinBox::down-button:hover {{ background: #343941; }}
QAbstractSpinBox::up-arrow {{ image: url({RES}/up.svg); width: 8px; height: 5px; }}
QAbstractSpinBox::down-arrow {{ image: url({RES}/down.svg); width: 8px; height: 5px; }}
QAbstractSpinBox::up-arrow:disabled, QAbstractSpinBox::down-arrow:disabled {{ image: none; }}
QScrollBar:vertical {{ background: transparent; width: 10px; margin: 2px; }}
QScrollBar:horizontal {{ background: transparent; height: 10px; margin: 2px; }}
QScrollBar::handle {{ background: #3a3f46; border-radius: 3px; }}
QScrollBar::handle:vertical {{ min-height: 24px; }}
QScrollBar::handle:horizontal {{ min-width: 24px; }}
QScrollBar::handle:hover {{ background: #4a5058; }}
QScrollBar::add-line, QScrollBar::sub-line {{ width: 0; height: 0; }}
QScrollBar::add-page, QScrollBar::sub-page {{ background: none; }}
QToolTip {{ background: #2c3036; color: #f0f0f0; border: 1px solid #3a3f46; padding: 4px; }}
"""


def apply(app: QApplication, keep_style: bool = False) -> None:
    """The theme on ``app``; ``keep_style``: on the style the user chose (``-style``)
    instead of Fusion."""
    if not keep_style:
        app.setStyle("Fusion")
    pal = QPalette()
    colors = {
        QPalette.ColorRole.Window: "#1b1d21",
        QPalette.ColorRole.WindowText: "#e6e6e6",
        QPalette.ColorRole.Base: "#16181b",
        QPalette.ColorRole.AlternateBase: "#202328",
        QPalette.ColorRole.Text: "#e6e6e6",
        QPalette.ColorRole.Button: "#2c3036",
        QPalette.ColorRole.ButtonText: "#e6e6e6",
        QPalette.ColorRole.Highlight: "#2f4863",
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.ToolTipBase: "#2c3036",
        QPalette.ColorRole.ToolTipText: "#f0f0f0",
        QPalette.ColorRole.PlaceholderText: "#6d737b",
        QPalette.ColorRole.Link: ACCENT,
    }
    for role, value in colors.items():
        pal.setColor(role, QColor(value))
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text,
                 QPalette.ColorRole.ButtonText):
        pal.setColor(QPalette.ColorGroup.Disabled, role, QColor("#62676e"))
    app.setPalette(pal)
    font = QFont(app.font())
    if font.pointSizeF() < 9.5:
        font.setPointSizeF(9.5)
    app.setFont(font)
    app.setStyleSheet(STYLE)
