"""How problems are worded and logged: short reasons for OS errors, library warnings
turned into log records. Every module of the package logs under the one name
``rbqe.io`` (as before the split into modules), so log records are named as they were."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from PIL import Image

logger = logging.getLogger("rbqe.io")  # every module of the package logs under this one name


_warn_lock = threading.Lock()
_warn_depth = 0
_warn_saved: Any = None  # the catch_warnings of the outermost block, any thread
_warn_shown: Any = None  # warnings.showwarning as it was before that block
_warn_local = threading.local()  # .stack: this thread's open blocks' lists


def _collect_warning(message: Warning | str, category: type[Warning], filename: str,
                     lineno: int, file: Any = None, line: str | None = None) -> None:
    stack = getattr(_warn_local, "stack", None)
    if stack:
        stack[-1].append((message, category))
    elif _warn_shown is not None:  # a thread outside any block: shown as it would have been
        _warn_shown(message, category, filename, lineno, file, line)


@contextlib.contextmanager
def said_while() -> Iterator[list[str]]:
    """The warnings :data:`logger` logs in this thread within the block, as a list of
    their lines (still logged as ever): what a batch's report keeps of writing an
    output (a JPEG cannot store the alpha channel, an 8-bit format a 16-bit image)."""
    said: list[str] = []
    thread = threading.get_ident()

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.thread == thread:
                said.append(record.getMessage())

    handler = _Keep(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield said
    finally:
        logger.removeHandler(handler)


def said_once(lines: list[str], files: list[Path]) -> list[str]:
    """Warnings about writing ``files`` (``lines``, as logged), each once, in order.

    A line about one of the files loses its leading ``<file>: ``: the report row or the
    app's message already names the files, and the five outputs of ``--exit all`` (or the
    app's Save all) then say the same loss once, not five times.
    """
    prefixes = [f"{p}: " for p in files]
    said = (next((line.removeprefix(p) for p in prefixes if line.startswith(p)), line)
            for line in lines)
    return list(dict.fromkeys(said))


@contextlib.contextmanager
def _logged_warnings(path: Path) -> Iterator[None]:
    """Turns library warnings (corrupt EXIF, odd chunks...) into log records.

    Warnings must not escape: callers (and the test suite, which runs with
    ``filterwarnings = error``) would otherwise see them as exceptions or noise. Each
    distinct message is logged once (Pillow repeats some, e.g. "Corrupt EXIF data" from
    both the header and the EXIF pass), and only at INFO when the block fails: the
    error raised for the file is then its one line.

    The warnings filters are process-wide, so threads that load at once (the app's viewer
    and batch, a prefetch) share one set-up, like :func:`_native_messages` does: each
    thread's warnings go to its own block, and the last block out restores the filters.
    """
    global _warn_depth, _warn_saved, _warn_shown
    with _warn_lock:
        if _warn_depth == 0:
            _warn_saved, _warn_shown = warnings.catch_warnings(), warnings.showwarning
            _warn_saved.__enter__()
            warnings.simplefilter("always")
            warnings.showwarning = _collect_warning
        _warn_depth += 1
    caught: list[tuple[Warning | str, type[Warning]]] = []
    stack = _warn_local.__dict__.setdefault("stack", [])
    stack.append(caught)
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        stack.pop()
        with _warn_lock:
            _warn_depth -= 1
            if _warn_depth == 0:
                _warn_saved.__exit__(None, None, None)
                _warn_saved = _warn_shown = None
        seen: set[str] = set()
        for message, category in caught:
            text = str(message).strip()
            if issubclass(category, Image.DecompressionBombWarning) or text in seen:
                continue  # our own size check already covers bombs
            seen.add(text)
            logger.log(logging.INFO if failed else logging.WARNING, "%s: %s", path, text)


def _os_reason(exc: OSError) -> str:
    """A short reason for an OS error, without the path (the caller adds it)."""
    reasons = {
        errno.ENOENT: "file not found",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EISDIR: "is a directory, not a file",
        errno.ENOSPC: "disk full",
        errno.EROFS: "read-only file system",
        errno.ENAMETOOLONG: "file name too long",
    }
    if hasattr(errno, "EDQUOT"):
        reasons[errno.EDQUOT] = "disk quota exceeded"
    if exc.errno in reasons:
        return reasons[exc.errno]
    return f"I/O error: {exc.strerror or exc}"


def keep_python_stderr() -> None:
    """Gives ``sys.stderr`` a file descriptor of its own, a copy of fd 2.

    While a decoder runs (often on a prefetch thread), :func:`_native_messages` points fd 2
    at a temp file. Python's own lines written meanwhile from another thread or a signal
    handler (a progress line, the Ctrl-C notice) went there too and were never shown. With
    its own descriptor, ``sys.stderr`` keeps writing to the terminal or log the user sees.
    Call once at start, before logging handlers take hold of ``sys.stderr``.
    """
    err = sys.stderr
    try:
        if err is None or err.fileno() != 2:
            return  # already moved, captured (pytest), or no console (a GUI on Windows)
        err.flush()
        fd = os.dup(2)
    except (OSError, ValueError, AttributeError):
        return
    sys.stderr = open(fd, "w", encoding=err.encoding, errors=err.errors,  # noqa: SIM115
                      buffering=1)


_native_lock = threading.Lock()
_native_depth = 0
_native_saved: int | None = None
_native_sink: IO[bytes] | None = None


@contextlib.contextmanager
def _native_messages(path: Path) -> Iterator[None]:
    """Routes what native decoders write straight to file descriptor 2 into the log.

    libpng inside OpenCV ("libpng error: IDAT: CRC error") and libtiff inside Pillow
    ("tempfile.tif: Using code not yet in table.") print to stderr without the file's
    name, before rbqe's own error line for the same file. While any load runs, fd 2 goes
    to a temp file; the last load to finish puts it back and logs what was caught at
    INFO (shown by ``rbqe -v``), naming the file. Concurrent loads share one redirect.
    """
    global _native_depth, _native_saved, _native_sink
    with _native_lock:
        if _native_depth == 0:
            try:
                sys.stderr.flush()
                sink = tempfile.TemporaryFile()
                saved = os.dup(2)
                os.dup2(sink.fileno(), 2)
            except (OSError, ValueError, AttributeError):
                saved = None  # no usable fd 2 (a GUI without a console): nothing to route
            else:
                _native_saved, _native_sink = saved, sink
        _native_depth += 1
    try:
        yield
    finally:
        with _native_lock:
            _native_depth -= 1
            if _native_depth == 0 and _native_saved is not None and _native_sink is not None:
                os.dup2(_native_saved, 2)
                os.close(_native_saved)
                _native_sink.seek(0)
                text = _native_sink.read(1 << 16).decode("utf-8", "replace").split()
                _native_sink.close()
                _native_saved = _native_sink = None
                if text:
                    logger.info("%s: the decoder said: %s", path, " ".join(text)[:500])


_capture_lock = threading.Lock()


@contextlib.contextmanager
def _native_text(path: Path) -> Iterator[list[str]]:
    """Collects what native code writes to fd 2 inside the block (for checks that read it).

    Runs under :func:`_native_messages`, so the text still reaches the log too. Holders are
    serialised; another thread's decoder may still add a line of its own meanwhile, so
    callers match only their own library's words. The list stays empty when fd 2 could
    not be captured.
    """
    text: list[str] = []
    with _native_messages(path), _capture_lock:
        with _native_lock:
            captured = _native_sink is not None
        start = os.lseek(2, 0, os.SEEK_CUR) if captured else 0
        try:
            yield text
        finally:
            if captured:
                end = os.lseek(2, 0, os.SEEK_CUR)  # fd 2 shares the sink's file offset
                if end > start:
                    chunk = os.pread(2, min(end - start, 1 << 16), start)
                    text.extend(chunk.decode("utf-8", "replace").splitlines())
