"""Exception types raised by the ``rbqe`` library.

Every error a user can trigger with their own files derives from :class:`RBQEError`, so
front ends (the CLI and the Qt app) catch that one type and show ``str(exc)`` as a
single line instead of a traceback.
"""

from __future__ import annotations

from os import PathLike

__all__ = [
    "Cancelled",
    "ImageReadError",
    "ImageWriteError",
    "RBQEError",
    "WeightsError",
]


def _one_line(text: str) -> str:
    # Messages end up in a single log/status line; embedded newlines from OS or
    # decoder messages would break that promise.
    return " ".join(str(text).split())


def show_path(path: str | PathLike[str]) -> str:
    """A path as one readable line: control characters (a newline in a file name) and
    undecodable bytes are shown escaped, as Python writes them."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in str(path))


class RBQEError(Exception):
    """Base class for all expected, user-facing errors of ``rbqe``."""


class _PathError(RBQEError):
    """An error about one file: ``str()`` is ``"<path>: <reason>"`` on one line.

    Args:
        path: The file the error is about.
        reason: Short human-readable cause, without the path.
    """

    def __init__(self, path: str | PathLike[str], reason: str) -> None:
        self.path = path
        self.reason = _one_line(reason)
        super().__init__(path, self.reason)

    def __str__(self) -> str:
        return _one_line(f"{show_path(self.path)}: {self.reason}")


class ImageReadError(_PathError):
    """An input file could not be read as an image (missing, corrupt, unsupported...)."""


class ImageWriteError(_PathError):
    """An output image could not be written (or writing it was refused).

    ``errno`` is the operating system's error number when there was one: a full disk or a
    read-only file system stops a batch instead of failing every image in turn.
    """

    errno: int | None = None


class OutputFolderError(_PathError):
    """The output folder cannot be created or written: the batch does not start (or stops)."""


class WeightsError(RBQEError):
    """Model weights are missing, corrupt or do not match the network."""


class UsageError(RBQEError):
    """A command or option the tool cannot act on, said in one line."""


class Cancelled(RBQEError):
    """The user cancelled the running operation."""
