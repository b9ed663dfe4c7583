"""Running the ``rbqe`` command line in-process, for the tests that check its output."""

from __future__ import annotations

import contextlib
import io
import logging

from rbqe.cli import main


def run_cli(args: list[str]) -> tuple[int, str]:
    """``rbqe.cli.main(args)`` in-process; returns (exit code, stderr text)."""
    err, out = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers = list(root.handlers)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            rc = main(args)
    finally:
        for h in root.handlers[:]:  # main() may call basicConfig(): don't leak a handler
            if h not in handlers:
                root.removeHandler(h)
    return rc, err.getvalue()
