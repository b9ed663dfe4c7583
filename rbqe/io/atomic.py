"""Atomic writes through hidden, locked ``.rbqe-*.part`` temp files beside the target,
and the cleanup of the temp files that a killed run left behind.

The one atomic write of the package: images, reports, weights, checkpoints and records
all go through :func:`atomic_write`, so every temp file a kill can leave has the name
:func:`remove_stale_temps` looks for.

A writer holds an exclusive ``flock`` on its temp file while writing it; the cleanup
(:func:`remove_stale_temps`) leaves alone any temp file that is locked or recent."""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import logging
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:  # Windows: stale temp files are judged by age only
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("rbqe.io")  # the package's one logger (see diagnostics)


@functools.lru_cache(maxsize=1)
def _new_file_mode() -> int:
    # NamedTemporaryFile creates 0600 files; new outputs should get the usual
    # 0666 & ~umask like any other program's output. os.umask() would change the umask
    # for all threads for a moment, so read it from /proc where that exists.
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o644


_TEMP_PREFIX, _TEMP_SUFFIX = ".rbqe-", ".part"  # see is_temp_file() and remove_stale_temps()


def _lock_temp(fd: int) -> None:
    """Marks a temp file as being written, so that another run's cleanup leaves it alone.

    The lock lasts until the file is closed, and dies with the process, even on SIGKILL.
    """
    if fcntl is not None:
        with contextlib.suppress(OSError):  # no locks here: cleanup then goes by age
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def atomic_write(target: str | os.PathLike[str], write: Callable[[IO[bytes]], object], *,
                 mode: int | None = None, replace: bool = True) -> None:
    """Writes via ``write(fh)`` to a temp file beside ``target``, then renames it into place.

    The temp file lives in the target folder so the final ``os.replace`` is an atomic
    rename on the same file system; an existing ``target`` is either fully replaced or
    left as it was. On any failure (including KeyboardInterrupt) the temp file is removed;
    a kill leaves it for :func:`remove_stale_temps`.

    Args:
        mode: The file mode to give ``target``; default an existing target's own, else
            what a new output gets (``0666 & ~umask``).
        replace: False: never replace a ``target`` that exists when the write is done
            (one that appeared while the data was made): :class:`FileExistsError`.
    """
    target = Path(target)
    tmp_name = None
    try:
        with tempfile.NamedTemporaryFile(
            dir=target.parent, delete=False, prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX
        ) as tmp:
            tmp_name = tmp.name
            _lock_temp(tmp.fileno())
            write(tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
        if mode is None:
            try:
                mode = stat.S_IMODE(target.stat().st_mode)
            except OSError:
                mode = _new_file_mode()
        with contextlib.suppress(OSError):
            os.chmod(tmp_name, mode)
        _move_into_place(tmp_name, target, replace)
    except BaseException:
        if tmp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
        raise
    if os.name == "posix":
        # Persist the rename itself; best effort (some file systems refuse this).
        with contextlib.suppress(OSError):
            fd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _move_into_place(tmp_name: str, target: Path, replace: bool) -> None:
    """Renames the finished temp file to ``target``; without ``replace``, as a hard link
    (which fails on an existing name, atomically), then drops the temp name."""
    if replace:
        os.replace(tmp_name, target)
        return
    try:
        os.link(tmp_name, target)
    except FileExistsError:
        raise
    except OSError:  # no hard links on this file system (FAT, some network shares)
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "File exists", str(target)) from None
        os.replace(tmp_name, target)
        return
    os.unlink(tmp_name)


def write_bytes_atomic(target: str | os.PathLike[str], data: bytes, *,
                       mode: int | None = None) -> None:
    """Writes ``data`` to ``target`` atomically (creating its folder), with the file mode
    an output gets unless ``mode`` is given."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, lambda fh: fh.write(data), mode=mode)


def probe_writable(folder: str | os.PathLike[str]) -> None:
    """Creates ``folder`` and proves that a new file can be made in it; raises OSError.

    The probe has the temp files' name, so a kill right here leaves nothing that a
    later run would not clean up."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(dir=folder, prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX)
    os.close(fd)
    os.unlink(probe)


def names_folder(typed: str) -> bool:
    """Whether a path as the user typed it ends in a separator (``out/``, and ``out\\`` on
    Windows): it names a folder, whether or not one exists. Path drops the separator, so
    only the string as typed can tell."""
    return typed.endswith(tuple(sep for sep in (os.sep, os.altsep) if sep))


def unwritable_file(path: Path) -> str | None:
    """Why no file can be written at ``path`` (the reason without the path: it is a
    folder, or its folder cannot be made or written in), or None; makes the folder."""
    from rbqe.errors import show_path
    from rbqe.io.diagnostics import _os_reason

    # os.path, not Path: Path.is_dir raises on a name too long for the file system.
    if os.path.isdir(path):
        return "is a folder; give a file name"
    try:
        probe_writable(path.parent)
    except OSError as exc:
        return f"cannot write in {show_path(path.parent)}: {_os_reason(exc)}"
    return None


@contextlib.contextmanager
def claim_output(target: Path) -> Iterator[bool]:
    """Claims ``target`` for this process while the ``with`` block runs.

    Yields False when another live process holds the claim: it is making that output
    now, so this one should skip it. The claim is a locked, hidden ``.rbqe-*.part`` file
    beside the target (a kill releases the lock; a later run's cleanup removes the file).
    Where locks are unavailable it always yields True, as before claims existed. After a
    claim is won the caller re-checks the target: the winner before it may have just
    written it.
    """
    if fcntl is None:
        yield True
        return
    digest = hashlib.sha1(os.fsencode(target.name)).hexdigest()[:20]
    path = target.parent / f"{_TEMP_PREFIX}claim_{digest}{_TEMP_SUFFIX}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_RDWR | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except OSError:
        yield True  # cannot claim here; the write itself will report a real problem
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held = True
        except OSError:
            held = False  # no locks on this file system
        else:
            held = False
            try:
                yield True
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            return
        yield not held
    finally:
        os.close(fd)


_TEMP_NAME = re.compile(r"\.rbqe-[a-z0-9_]+\.part")  # tempfile's random part is [a-z0-9_]

STALE_TEMP_AGE_S = 120.0
"""A temp file is left alone until this long after its last change (see remove_stale_temps)."""

_STALE_TEMP_AGE_NO_LOCKS_S = 600.0


def is_temp_file(path: str | os.PathLike[str]) -> bool:
    """True for the name of a temp file of rbqe's atomic writes (``.rbqe-*.part``)."""
    return _TEMP_NAME.fullmatch(Path(path).name) is not None


def remove_stale_temps(
    folder: str | os.PathLike[str], *, min_age_s: float = STALE_TEMP_AGE_S
) -> list[Path]:
    """Deletes the temp files that rbqe processes killed mid-write left in ``folder``.

    Only rbqe's own temp names are touched, and only ones no live writer holds: a writer
    keeps an exclusive ``flock`` on its temp file while writing it. A temp also stays
    until ``min_age_s`` after its last change, which covers the instants before a writer
    takes its lock and between closing and renaming the file. Where locks cannot tell
    (no ``fcntl``, some network file systems), only age counts, with a longer wait.

    Returns:
        The files removed.
    """
    folder = Path(folder)
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    now = time.time()
    removed = [folder / n for n in names
               if _TEMP_NAME.fullmatch(n) and _remove_if_stale(folder / n, now, min_age_s)]
    if removed:
        logger.info("%s: removed %d stale temp file(s) of an interrupted run",
                    folder, len(removed))
    return removed


def _remove_if_stale(path: Path, now: float, min_age_s: float) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    age = now - st.st_mtime
    if not stat.S_ISREG(st.st_mode) or age < min_age_s:
        return False
    held = _writer_holds(path)
    if held or (held is None and age < max(min_age_s, _STALE_TEMP_AGE_NO_LOCKS_S)):
        return False
    try:
        os.unlink(path)
    except OSError:
        return False
    return True


def _writer_holds(path: Path) -> bool | None:
    """Whether a live process holds ``path``'s write lock; None when locks cannot tell."""
    if fcntl is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # also releases our lock: the file is unlinked by name just after
    return False
