"""Log file in the platform's app-data folder, and a last-resort exception hook.

``RBQE_STUDIO_DATA_DIR`` redirects the folder (tests, portable installs).
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable
from logging.handlers import RotatingFileHandler
from pathlib import Path
from types import TracebackType

from PySide6.QtCore import QStandardPaths, QtMsgType, qInstallMessageHandler

LOG_NAME = "rbqe-studio.log"
log = logging.getLogger("rbqe_studio")


def log_dir() -> Path:
    env = os.environ.get("RBQE_STUDIO_DATA_DIR")
    if env:
        return Path(env)
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return Path(base) if base else Path.home() / ".rbqe-studio"


def setup_logging(level: int = logging.INFO) -> Path | None:
    """Log to ``<app data>/rbqe-studio.log`` (rotated) and warnings to stderr."""
    root = logging.getLogger()
    root.setLevel(level)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s")
    path: Path | None = log_dir() / LOG_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = RotatingFileHandler(path, maxBytes=2_000_000, backupCount=3,
                                                       encoding="utf-8")
    except OSError as exc:  # read-only home: keep going with stderr only
        print(f"rbqe-studio: cannot write the log file {path}: {exc}", file=sys.stderr)
        path = None
    else:
        handler.setFormatter(fmt)
        root.addHandler(handler)
    err = logging.StreamHandler()
    err.setLevel(logging.WARNING)
    err.setFormatter(logging.Formatter("rbqe-studio: %(levelname)s: %(message)s"))
    root.addHandler(err)
    qInstallMessageHandler(_qt_message)
    return path


def _qt_message(kind: QtMsgType, context: object, message: str) -> None:
    # Qt warnings are mostly platform chatter ("propagateSizeHints"...): file only.
    level = {QtMsgType.QtDebugMsg: logging.DEBUG, QtMsgType.QtInfoMsg: logging.INFO,
             QtMsgType.QtWarningMsg: logging.INFO}.get(kind, logging.ERROR)
    logging.getLogger("qt").log(level, "%s", message)


def install_excepthook(notify: Callable[[str], None]) -> None:
    """Log uncaught exceptions with their traceback; tell the user one line, no dialog."""

    def hook(etype: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if issubclass(etype, KeyboardInterrupt):
            sys.__excepthook__(etype, value, tb)
            return
        log.critical("uncaught exception\n%s", "".join(traceback.format_exception(etype, value, tb)))
        try:
            notify(f"Unexpected error: {etype.__name__}: {value} (details in the log file)")
        except Exception:
            log.debug("could not show the error in the window", exc_info=True)

    sys.excepthook = hook
