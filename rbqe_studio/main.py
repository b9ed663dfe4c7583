"""Entry point of RBQE Studio (``rbqe-studio`` and ``python -m rbqe_studio``): the
QApplication and the window; the command line is read by :mod:`rbqe_studio.launch`,
which says what it does.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication

from rbqe.exit_policy import parse_exit_mode
from rbqe.io.diagnostics import keep_python_stderr
from rbqe_studio import theme
from rbqe_studio.collector import collect_on_gui_thread
from rbqe_studio.launch import chooses_style, parse_args
from rbqe_studio.logs import install_excepthook, setup_logging
from rbqe_studio.settings import APPLICATION, ORGANIZATION

log = logging.getLogger(__name__)
SCREENSHOT_SIZE = (1480, 920)


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(sys.argv[1:] if argv is None else argv))


def run(args: argparse.Namespace) -> int:
    """Start the app as ``args`` (:func:`rbqe_studio.launch.parse_args`) say."""
    QApplication.setOrganizationName(ORGANIZATION)
    QApplication.setApplicationName(APPLICATION)
    QApplication.setApplicationDisplayName(APPLICATION)
    QApplication.setDesktopFileName("rbqe-studio")
    app = QApplication.instance() or QApplication(sys.argv[:1] + args.qt_options)
    assert isinstance(app, QApplication)
    keep_python_stderr()  # before the log's stderr handler: decoders borrow fd 2
    collect_on_gui_thread(app)  # Qt objects must not be freed on the worker threads
    log_file = setup_logging()
    log.info("RBQE Studio starting; log file %s", log_file)

    from rbqe_studio.icons import app_icon
    from rbqe_studio.main_window import MainWindow

    theme.apply(app, keep_style=chooses_style(args.qt_options))
    app.setWindowIcon(app_icon())
    tmp = tempfile.TemporaryDirectory(prefix="rbqe-studio-") if args.screenshot else None
    if args.settings:
        store = QSettings(args.settings, QSettings.Format.IniFormat)
    elif tmp is not None:  # screenshots use default settings and leave the user's alone
        store = QSettings(str(Path(tmp.name) / "settings.ini"), QSettings.Format.IniFormat)
    else:
        store = QSettings()
    window = MainWindow(store, weights=args.weights)
    install_excepthook(lambda msg: window.show_message(msg, error=True))
    if args.device:
        window.settings.device = args.device
        window.settings_panel.refresh()
        window.setting_changed("device")
    if args.exit_mode:
        window.session.mode_override = parse_exit_mode(args.exit_mode)
        window.update_threshold()
    if args.screenshot:
        window.session.background = False
        window.resize(*SCREENSHOT_SIZE)
    window.show()
    if args.paths:
        window.open_paths(args.paths)
        first = window.session.queue.get(Path(args.paths[0]))
        if first is not None:
            window.queue.select(first)
    code = run_screenshot(app, window, Path(args.screenshot), args.timeout) \
        if args.screenshot else app.exec()
    if tmp is not None:
        tmp.cleanup()
    return code


def run_screenshot(app: QApplication, window, out: Path, timeout_s: float) -> int:
    """Wait for the viewed image to finish, grab the window to ``out``, return the status."""
    result = {"code": 3}
    session = window.session

    def grab(code: int) -> None:
        if result.get("done"):
            return
        result.update(code=code, done=True)
        # Let the final layout and paint happen before grabbing.
        QTimer.singleShot(150, finish)

    def finish() -> None:
        window.compare.view.fit()
        app.processEvents()
        out.parent.mkdir(parents=True, exist_ok=True)
        if not window.grab().save(str(out), "PNG"):
            print(f"rbqe-studio: could not write {out}", file=sys.stderr)
            result["code"] = 1
        window.close()
        app.quit()

    session.view_finished.connect(lambda _v: grab(0))
    # Not printed here: the window logs what it shows as a warning, on stderr too (the
    # failure was printed three times).
    session.view_failed.connect(lambda _msg: grab(1))
    session.engine_error.connect(lambda _msg: grab(1))
    if session.current is None:
        print("rbqe-studio: --screenshot needs at least one image", file=sys.stderr)
        grab(1)
    elif session.view is not None and session.view.result is not None:
        grab(0)
    if timeout_s > 0:
        QTimer.singleShot(int(timeout_s * 1000), lambda: grab(3))
    app.exec()
    return int(result["code"])


if __name__ == "__main__":
    raise SystemExit(main())
