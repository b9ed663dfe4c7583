"""Lines for the terminal from a signal handler, where ``print`` is not safe."""

from __future__ import annotations

import contextlib
import os
import sys


def signal_note(msg: str) -> None:
    """Write ``msg`` to stderr from a signal handler. The handler runs between two
    bytecodes of the main thread, which may be inside a print to stderr (a progress or
    done line, a log record): printing again there raises "reentrant call inside
    BufferedWriter", and the run dies without its report or saved state. So the line goes
    to file descriptor 2 directly, past the buffer (stderr is flushed after every line,
    so nothing is reordered). A stderr that is gone is not an error."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by a non-file (tests, IDEs)
        with contextlib.suppress(OSError, RuntimeError, ValueError):
            print(msg, file=sys.stderr, flush=True)
        return
    with contextlib.suppress(OSError):
        os.write(fd, (msg + "\n").encode(errors="replace"))
