"""How problems are worded and logged: short reasons for OS errors, library warnings
turned into log records. Every module of the package logs under the one name
``rbqe.io`` (as before the split into modules), so log records are named as they were."""

from __future__ import annotations

import contextlib
import errno
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

logger = logging.getLogger("rbqe.io")  # every module of the package logs under this one name


@contextlib.contextmanager
def _logged_warnings(path: Path) -> Iterator[None]:
    """Turns library warnings (corrupt EXIF, odd chunks...) into log records.

    Warnings must not escape: callers (and the test suite, which runs with
    ``filterwarnings = error``) would otherwise see them as exceptions or noise.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for item in caught:
                if issubclass(item.category, Image.DecompressionBombWarning):
                    continue  # our own size check already covers this
                logger.warning("%s: %s", path, item.message)


def _os_reason(exc: OSError) -> str:
    """A short reason for an OS error, without the path (the caller adds it)."""
    reasons = {
        errno.ENOENT: "file not found",
        errno.ENOTDIR: "file not found",
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
