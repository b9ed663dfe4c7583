"""Scanning inputs: :func:`list_images` expands files and folders into the images to
process; :func:`lists_folder` tells whether such a scan would reach a folder."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from rbqe.io.atomic import is_temp_file
from rbqe.io.diagnostics import _os_reason
from rbqe.io.formats import (
    _AVIF_MISSING,
    _AVIF_SUFFIXES,
    _HEIF_MISSING,
    _HEIF_SUFFIXES,
    is_image_file,
)
from rbqe.io.identity import path_key
from rbqe.io.naming import _sort_key
from rbqe.io.output_log import _drop_earlier_outputs

logger = logging.getLogger("rbqe.io")  # the package's one logger (see diagnostics)


def list_images(
    paths: Iterable[str | os.PathLike[str]],
    *,
    recursive: bool = False,
    exclude: Iterable[str | os.PathLike[str]] = (),
    skip_outputs: bool = False,
    on_error: Callable[[Path, str], None] | None = None,
    on_unreadable: Callable[[Path, str], None] | None = None,
) -> list[tuple[Path, Path | None]]:
    """Expands files and folders into a de-duplicated list of images to process.

    Folders are scanned for files with a supported suffix (see :data:`SUPPORTED_SUFFIXES`);
    hidden files and folders (``.name``, e.g. macOS ``._IMG.JPG`` resource forks, rbqe's
    temp files) are skipped. Symlinked sub-folders are followed, as ``find -L`` does (an
    archive links in folders from other disks), their files listed under the link's
    path; each real folder is listed once: a link back to a folder it is in (a loop), or
    a second way to a folder already listed, is skipped with a warning. Files named
    directly are included whatever their suffix, so that a bad one is reported by
    :func:`load_image` instead of being silently ignored; only rbqe's own temp files
    (:func:`is_temp_file`) are left out even then.

    Args:
        paths: Files and/or folders.
        recursive: Also scan sub-folders.
        exclude: Folders to skip while scanning (e.g. an output folder inside the input).
        skip_outputs: Leave out earlier outputs of rbqe whose source is also listed
            (as noted by :func:`record_output`), so that a batch whose output folder is
            its input folder does not enhance its own results on a re-run.
        on_error: Called with ``(folder, reason)`` for each folder that cannot be read
            (its images are missing from the list, so a batch reports it as failed);
            by default a warning is logged.
        on_unreadable: Called with ``(file, reason)`` for each HEIC/AVIF file found in a
            folder while its optional codec is not installed (it is not listed; a batch
            reports it as failed, as it would the file named directly); by default one
            warning counts them.

    Returns:
        ``(file, root)`` pairs in the order the inputs were given, each folder's files
        sorted by path; ``root`` is the scanned folder the file was found in, or None for
        files named directly.
    """
    excluded = {path_key(Path(e)) for e in exclude}
    if on_error is None:
        def on_error(folder: Path, reason: str) -> None:
            logger.warning("cannot scan %s: %s", folder, reason)
    found: dict[str, tuple[Path, Path | None]] = {}
    seen: dict[tuple[int, int], str] = {}  # file identity -> its key in found
    unreadable: dict[str, tuple[Path, str]] = {}  # HEIC/AVIF without their codec

    def add(f: Path, root: Path | None) -> None:
        # The same file twice (named twice, or via a link) is listed once, under its own
        # name rather than a link's (whose output would outlive the link); names that
        # differ only in case are distinct files on a case-sensitive file system.
        identity = _file_identity(f)
        key = path_key(f)
        if identity is not None:
            earlier = seen.get(identity)
            if earlier is not None:
                kept = found[earlier][0]
                if not (kept.is_symlink() and not f.is_symlink()):
                    logger.info("%s: the same file as %s, listed once", f, kept)
                    return
                logger.info("%s: the same file as %s, listed once", kept, f)
                del found[earlier]
            seen[identity] = key
        found.setdefault(key, (f, root))

    for raw in paths:
        p = Path(raw)
        if not _is_dir(p):
            if is_temp_file(p):
                logger.warning("skipping %s: an unfinished rbqe output, not an input", p)
                continue
            add(p, None)
            continue
        scanned: list[Path] = []
        for here, filenames in _walk(p, recursive, excluded, on_error):
            for name in filenames:
                f = here / name
                if name.startswith("."):
                    continue
                if not is_image_file(f):
                    reason = _missing_codec(f)
                    if reason is not None:
                        unreadable.setdefault(path_key(f), (f, reason))
                    elif recursive and _dangling(f):
                        _warn_dangling(f)
                    continue
                try:
                    regular = f.is_file()
                except OSError:  # a folder we may list but not enter (r without x)
                    regular = True  # load_image then names the file and the reason
                if not regular:
                    if os.path.islink(f) and not os.path.exists(f):
                        # Listed, so that it fails naming its target: a dangling link
                        # in an archive is mostly a photo gone missing (a drive not
                        # mounted), which a batch must not report as done.
                        scanned.append(f)
                    else:
                        logger.debug("skipping %s: not a regular file", f)
                    continue
                scanned.append(f)
        for f in sorted(scanned, key=lambda q: _sort_key((q, None))):
            add(f, p)
    # Not those also named directly: load_image fails them (once) with the same reason.
    missing = sorted((f for k, f in unreadable.items() if k not in found),
                     key=lambda fr: _sort_key((fr[0], None)))
    if on_unreadable is not None:
        for f, reason in missing:
            on_unreadable(f, reason)
    elif missing:
        logger.warning(
            "skipped %d HEIC/AVIF file(s): support is not installed "
            "(pip install 'rbqe-studio[heif]')",
            len(missing),
        )
    if skip_outputs:
        found = _drop_earlier_outputs(found)
    return list(found.values())


def _walk(
    root: Path, recursive: bool, excluded: set[str], on_error: Callable[[Path, str], None],
) -> Iterator[tuple[Path, list[str]]]:
    """``(folder, file names)`` of ``root`` and, if ``recursive``, of its sub-folders that
    are not hidden or ``excluded``, symlinked ones included, each real folder once.

    The real sub-folders come first and the links after them, so that a folder reached
    both ways keeps its own path (whose outputs do not depend on the link). A link to a
    folder already listed, or back to one it is in, is skipped with a warning."""
    visited: dict[object, Path] = {}  # each real folder listed, (device, inode) -> path
    links: list[Path] = []  # symlinked sub-folders, followed once the real ones are walked
    starts = [root]
    while starts:
        start = starts.pop(0)
        for folder, dirnames, filenames in os.walk(
            start, onerror=lambda e: on_error(Path(e.filename), _os_reason(e))
        ):
            here = Path(folder)
            identity = _file_identity(here) or path_key(here)  # some systems give no inode
            if identity in visited:  # a bind mount of a folder in itself: not again
                logger.warning("skipping %s: the same folder as %s, already listed",
                               here, visited[identity])
                dirnames[:] = []
                continue
            visited[identity] = here
            kept = sorted(d for d in dirnames if recursive and not d.startswith(".")
                          and path_key(here / d) not in excluded)
            dirnames[:] = [d for d in kept if not os.path.islink(here / d)]
            links += [here / d for d in kept if os.path.islink(here / d)]
            yield here, filenames
        while links and not starts:
            link = links.pop(0)
            why = _loops_or_listed(link, visited)
            if why:
                logger.warning("skipping %s: %s", link, why)
            else:
                starts.append(link)


def _loops_or_listed(link: Path, visited: dict[object, Path]) -> str | None:
    """Why the symlinked folder ``link`` is not to be walked (see :func:`_walk`), or None."""
    target, inside = path_key(link), path_key(link.parent)
    listed = visited.get(_file_identity(link) or target)
    if inside == target or inside.startswith(target.rstrip(os.sep) + os.sep):
        return f"a link back to {listed or os.path.realpath(link)}, which holds it (a loop)"
    if listed is not None:
        return f"a link to {listed}, already listed"
    return None


def _dangling(path: Path) -> bool:
    """Whether ``path`` is a symlink whose target does not exist."""
    return os.path.islink(path) and not os.path.exists(path)


def _warn_dangling(link: Path) -> None:
    """Says that ``link``, with no image suffix and a missing target, is skipped: os.walk
    lists a link to a folder not mounted as a file, which -r then skipped without a word
    (a dangling ``photo.jpg`` is listed instead, and fails naming its target)."""
    try:
        target = os.path.normpath(os.path.join(link.parent, os.readlink(link)))
    except OSError:  # gone meanwhile
        return
    logger.warning("skipping %s: a link to %s, which does not exist (not mounted?)",
                   link, target)


def _missing_codec(path: Path) -> str | None:
    """Why a file that :func:`is_image_file` leaves out cannot be read, where its suffix
    is HEIC/AVIF (their codec is not installed); None for other files."""
    suffix = path.suffix.lower()
    if suffix in _AVIF_SUFFIXES:
        return _AVIF_MISSING
    if suffix in _HEIF_SUFFIXES:
        return _HEIF_MISSING
    return None


def _is_dir(path: Path) -> bool:
    """Path.is_dir, False where the path cannot be looked at (a file there is then
    reported by load_image, with the reason)."""
    try:
        return path.is_dir()
    except OSError:  # EACCES: in a folder we may not enter
        return False


def _file_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of an existing file: what makes two paths the same file."""
    try:
        st = path.stat()
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino) if st.st_ino else None  # some file systems report 0


def lists_folder(
    folder: str | os.PathLike[str],
    paths: Iterable[str | os.PathLike[str]],
    *,
    recursive: bool = False,
    exclude: Iterable[str | os.PathLike[str]] = (),
) -> bool:
    """True if :func:`list_images` with these arguments would pick up images in ``folder``.

    The folder of a file named directly counts too: a re-run with a shell wildcard
    (``rbqe enhance photos/* -o photos``) names the outputs there as well. Paths are
    compared, nothing is scanned: a folder reached only through a symlinked sub-folder
    (which ``list_images`` follows) is not seen.
    """
    target = path_key(Path(folder))
    excluded = {path_key(Path(e)) for e in exclude}
    for raw in paths:
        p = Path(raw)
        if _is_dir(p):
            if _walks_into(path_key(p), target, recursive, excluded):
                return True
        elif path_key(p.parent) == target:
            return True
    return False


def _walks_into(root: str, target: str, recursive: bool, excluded: set[str]) -> bool:
    """Whether scanning folder ``root`` reaches ``target`` (both :func:`path_key` values)."""
    if target == root:
        return True
    prefix = root if root.endswith(os.sep) else root + os.sep
    if not recursive or not target.startswith(prefix):
        return False
    # Like list_images: hidden and excluded sub-folders are not entered.
    here = root
    for part in target[len(prefix):].split(os.sep):
        here = os.path.join(here, part)
        if part.startswith(".") or here in excluded:
            return False
    return True
