"""Path identity: when two paths name the same file or folder.

:func:`path_key` is the one rule, for the batch lister (de-duplicating inputs, excluded
folders) and the app's queue and result cache alike: the absolute path with symlinks
resolved, case-folded only where the file system itself ignores case. ``photo.jpg`` and
``PHOTO.jpg`` are two files on ext4 and one on APFS or NTFS, so the answer is asked of
the file system (per folder, see :func:`folds_case`), not assumed from the platform.

Output *names* follow a stricter rule of their own (:func:`rbqe.io.plan_outputs` keeps
them apart case-insensitively everywhere, so that a folder of outputs can be copied to
any file system); that is naming, not identity.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

# What to assume of a folder that offers no name to test (empty, no letters, unreadable):
# the platform's usual file system.
_PLATFORM_FOLDS_CASE = sys.platform in ("win32", "darwin")


def path_key(path: str | os.PathLike[str]) -> str:
    """A string that is equal for two paths exactly when they name the same file or
    folder: absolute, symlinks resolved, case-folded only where the file system of its
    nearest existing folder ignores case (:func:`folds_case`)."""
    p = Path(path)
    try:
        resolved = p.resolve()
    except (OSError, RuntimeError):  # a symlink loop, an unreadable component
        resolved = p.absolute()
    text = os.path.normcase(str(resolved))  # Windows: one case and one separator
    return text.casefold() if folds_case(_existing_folder(resolved)) else text


def folds_case(folder: str | os.PathLike[str]) -> bool:
    """Whether the file system holding ``folder`` (an existing directory) ignores case.

    Asked of the file system: some name in the folder (or the folder's own name), its
    case swapped, is looked up; finding the same file means case is ignored. A folder
    with no such name falls back to the platform's usual answer. Cached per folder."""
    return _folds_case(os.path.abspath(folder))


@functools.lru_cache(maxsize=1024)
def _folds_case(folder: str) -> bool:
    for path in (_cased_entry(folder), folder):  # a name in it, else its own name
        if path is None:
            continue
        head, name = os.path.split(path)
        if not _has_case(name):
            continue
        try:
            return os.path.samefile(path, os.path.join(head, name.swapcase()))
        except OSError:  # no such name: the file system keeps case apart
            return False
    return _PLATFORM_FOLDS_CASE


def _has_case(name: str) -> bool:
    """Whether swapping ``name``'s case changes it and swaps back (``ß`` does not)."""
    swapped = name.swapcase()
    return swapped != name and swapped.swapcase() == name


def _cased_entry(folder: str) -> str | None:
    try:
        with os.scandir(folder) as entries:
            for e in entries:
                if _has_case(e.name):
                    return os.path.join(folder, e.name)
    except OSError:
        pass
    return None


def _existing_folder(path: Path) -> Path:
    """``path`` if it is a folder, else its nearest existing ancestor folder."""
    for p in (path, *path.parents):
        if os.path.isdir(p):  # False, not PermissionError, inside a folder we cannot enter
            return p
    return Path(path.anchor or ".")
