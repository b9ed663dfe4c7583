"""The output log (:data:`OUTPUT_LOG`): notes of which files in a folder are rbqe's
outputs and of what, so that a re-run does not take its own results for inputs."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from rbqe.errors import ImageWriteError
from rbqe.io.diagnostics import _os_reason
from rbqe.io.identity import path_key

logger = logging.getLogger("rbqe.io")  # the package's one logger (see diagnostics)

OUTPUT_LOG = ".rbqe-outputs.jsonl"
"""Hidden file in an output folder listing the outputs rbqe wrote there, and of what.

Names alone cannot tell rbqe's ``photo.png`` (made from ``photo.jpg``) from a user's own
``photo.png`` beside ``photo.jpg``, so each output (the batch's, and the app's saves) is
noted here, through :func:`write_noted`: before it is written, one JSON line
``{"output": NAME, "source": PATH, "result": R, "made": M, "token": T, "time": S}``
with the source relative to the folder and ``M`` what else decided its bytes
(:func:`made_with`) and, where known, ``"source_id"``: the source as it was read
(:func:`source_identity`); once written, the same with its ``"size"`` in bytes instead of
the time; if the write failed, ``{..., "retracted": T}``. The last line
for a name counts (a retraction only if it is its own writer's). A written note stands
only for a file of its size (one replaced or edited since is no longer rbqe's), one made
before the write only for a file changed soon after it, and a retracted one for nothing:
a failed write leaves no note that a user's later file of that name could be taken for.
Where outputs go where inputs are scanned (``-o`` the input folder), :func:`list_images`
with ``skip_outputs`` then leaves these files out; everywhere, a re-run keeps each
written name with its source (:func:`written_outputs`, issue 13).
"""


# A note made before its write stands for a file changed within this long of it: the
# write follows the note at once (encoding a big image takes seconds, not minutes).
PENDING_WINDOW_S = 600.0


class Noted(NamedTuple):
    """What the output log says of one output: its source, which result it holds
    (``"auto"``, ``"1"``..``"5"``, or ``"exit1"``.. for ``--exit all``), its size once
    written, when a note made before the write was made, the writer's token, what else
    decided its bytes and the source as it was read (None: not in the note, as in notes
    of older versions)."""

    source: Path
    result: str | None
    size: int | None = None
    time: float | None = None
    token: str | None = None
    made: dict[str, Any] | None = None  # see made_with; None in older versions' notes
    source_id: dict[str, Any] | None = None  # see source_identity; None: older, or the app's
    # The exit an "auto" output holds (auto's choice): a later run that skips the output
    # can say it, and the app show the file instead of enhancing the photo again.
    exit: int | None = None

    def stands_for(self, output: str | os.PathLike[str]) -> bool:
        """Whether the file now at ``output`` is the one noted: of the noted size, or, for
        a note made before the write (a kill can come between the two), changed soon
        after it; any file for an older version's note, which says neither."""
        try:
            st = os.stat(output)
        except OSError:
            return False
        if self.size is not None:
            return st.st_size == self.size
        if self.time is not None:
            return self.time - 2 <= st.st_mtime <= self.time + PENDING_WINDOW_S
        return True


def record_output(output: str | os.PathLike[str], source: str | os.PathLike[str],
                  result: str | None = None, *, size: int | None = None,
                  token: str | None = None, made: dict[str, Any] | None = None,
                  source_id: dict[str, Any] | None = None, exit: int | None = None) -> str:
    """Notes in ``output``'s folder that it is rbqe's enhancement of ``source`` (and which
    ``result`` of it, ``source_id`` the source as it was read: see :class:`Noted`); with
    ``size``, that it has been written.
    Returns the note's token (a new one unless given), which names this writer's notes.

    Call it before writing the output (without ``size``), so that a kill between the
    write and the note cannot leave an unrecorded output behind, and again once it is
    written (with its size and the token); see :func:`retract_output` for a write that
    failed. Entries are only appended, so each call costs the same however big the
    folder is.

    Raises:
        OSError: The note cannot be written. The output must then not be written either:
            a re-run could not tell it from a file of the user's.
    """
    out, src = Path(output), Path(source)
    token = token or secrets.token_hex(8)
    entry: dict[str, Any] = {"output": out.name, "source": _relative_to(src, out.parent),
                             "token": token}
    if result is not None:
        entry["result"] = result
    if made is not None:
        entry["made"] = made
    if source_id is not None:
        entry["source_id"] = source_id
    if exit is not None:
        entry["exit"] = exit
    if size is not None:
        entry["size"] = size
    else:
        entry["time"] = round(time.time(), 3)
    _append(out.parent, entry)
    return token


def retract_output(output: str | os.PathLike[str], source: str | os.PathLike[str],
                   token: str) -> None:
    """Takes back the note of ``token``'s write, which failed: unless another writer has
    noted the name since (a second rbqe where files cannot be locked), whose note then
    stands. Best effort: a failure is logged (the note then stands for a file changed
    within :data:`PENDING_WINDOW_S` of it)."""
    out = Path(output)
    entry = {"output": out.name, "source": _relative_to(Path(source), out.parent),
             "retracted": token}
    try:
        _append(out.parent, entry)
    except OSError as exc:
        logger.warning("%s: cannot take back its note in %s (%s)", out, OUTPUT_LOG,
                       _os_reason(exc))


T = TypeVar("T")


def write_noted(output: str | os.PathLike[str], source: str | os.PathLike[str], result: str,
                write: Callable[[], T], *, earlier: Noted | None = None,
                must_note: bool = True, made: dict[str, Any] | None = None,
                source_id: dict[str, Any] | None = None, exit: int | None = None) -> T:
    """``write()`` the output at ``output`` (rbqe's ``result`` of ``source``, ``made`` as
    :func:`made_with` says, ``source_id`` the source as read: :func:`source_identity`,
    ``exit`` the exit it holds),
    its note in the output log kept true; returns what ``write`` returns. The one way
    outputs are noted: the CLI's batch and the app's saves both write through it.

    Noted before the write (a kill can come any time: an output must never be left
    unnoted) and again with its size once written. If the write fails, the note is taken
    back, or ``earlier`` (the note of the file at ``output`` before, if any) is restored:
    a note must not stand for a file rbqe did not write (a user's later file of that name).
    With ``must_note`` False a log that cannot be written does not stop the write: the
    output is then unnoted, which only makes a later batch call it someone else's.

    Raises:
        ImageWriteError: The note cannot be written and ``must_note`` (the output is then
            not written), or what ``write`` raises.
    """
    out = Path(output)
    try:
        token = record_output(out, source, result, made=made, source_id=source_id, exit=exit)
    except OSError as exc:
        if not must_note:
            logger.warning("%s: not noted in its folder's %s (%s)", out, OUTPUT_LOG,
                        _os_reason(exc))
            return write()
        error = ImageWriteError(out, f"cannot note this output in its folder's "
                                     f"{OUTPUT_LOG}: {_os_reason(exc)}")
        error.errno = exc.errno
        raise error from None
    try:
        written = write()
    except BaseException:
        if earlier is not None and earlier.size is not None and earlier.stands_for(out):
            with contextlib.suppress(OSError):
                record_output(out, earlier.source, earlier.result, size=earlier.size,
                              token=earlier.token, made=earlier.made,
                              source_id=earlier.source_id, exit=earlier.exit)
        else:
            retract_output(out, source, token)
        raise
    with contextlib.suppress(OSError):  # the note made before still stands for it
        record_output(out, source, result, size=os.path.getsize(out), token=token,
                      made=made, source_id=source_id, exit=exit)
    return written


LOSSY_FORMATS = frozenset({"jpeg", "jpg", "jpe", "webp"})


def made_with(*, keep_metadata: bool, strip_gps: bool, fmt: str, quality: int,
              rule: str | None = None, weights: dict[str, str] | None = None) -> dict[str, Any]:
    """What decides an output's bytes besides its source and result, as its note keeps
    it: the metadata written back (``keep``, ``strip-gps`` or ``strip``), the quality of a
    lossy ``fmt``, for an auto result the exit ``rule`` that chose its exit (one line,
    :meth:`rbqe.exit_policy.ExitPolicy.words_beside`), and the ``weights`` that made it
    (``{"hash": ..., "file": NAME}``, :func:`rbqe.batch.weights_identity`). A re-run asking
    for other settings then does not take the file for done (:func:`not_this_result`):
    one run to remove GPS locations from outputs of another must not report them done,
    nor one with new weights the old network's outputs."""
    made: dict[str, Any] = {"metadata": ("strip" if not keep_metadata
                                         else "strip-gps" if strip_gps else "keep")}
    if fmt.lower().lstrip(".") in LOSSY_FORMATS:
        made["quality"] = int(quality)
    if rule is not None:
        made["rule"] = rule
    if weights is not None:
        made["weights"] = dict(weights)
    return made


_METADATA_WORDS = {"keep": "its metadata kept", "strip-gps": "its GPS location removed",
                   "strip": "its metadata left out"}


def _made_otherwise(noted: dict[str, Any] | None, wanted: dict[str, Any]) -> str | None:
    """Why an output noted as ``noted`` (:func:`made_with`) is not what ``wanted`` asks
    for; None when it is, or when a note cannot say. An older note, which says nothing,
    passes, except where this run strips metadata: it cannot vouch for that. So does a
    setting a note leaves out (the weights, before they were noted)."""
    if noted is None:
        if wanted.get("metadata", "keep") != "keep":
            return ("was written by an older rbqe, which did not note whether it kept the "
                    "metadata this run leaves out")
        return None
    was, now = noted.get("weights"), wanted.get("weights")
    if isinstance(was, dict) and isinstance(now, dict) and was.get("hash") != now.get("hash"):
        return _other_weights(was, now)
    was, now = noted.get("metadata"), wanted.get("metadata")
    if was != now and was in _METADATA_WORDS and now in _METADATA_WORDS:
        return f"was written with {_METADATA_WORDS[was]} (this run: {_METADATA_WORDS[now]})"
    was, now = noted.get("quality"), wanted.get("quality")
    if was is not None and now is not None and was != now:
        return f"was written at quality {was} (this run: {now})"
    was, now = noted.get("rule"), wanted.get("rule")
    if was is not None and now is not None and was != now:
        return f"holds the exit chosen by another rule ({was}; this run: {now})"
    return None


def _other_weights(was: dict[str, Any], now: dict[str, Any]) -> str:
    """Why an output made by the weights ``was`` is not this run's (``now``), by their
    file names (see :func:`made_with`): a user knows the file, not its hash."""
    def name(weights: dict[str, Any]) -> str:
        return str(weights.get("file") or "weights built in memory")

    if name(was) == name(now) and "file" in now:  # the same file, retrained or replaced
        return f"was made by another version of the weights {name(now)} (changed since)"
    return f"was made by other weights ({name(was)}; this run: {name(now)})"


def not_this_result(output: Path, source: Path, result: str, notes: OutputNotes,
                    made: dict[str, Any] | None = None) -> str | None:
    """Why the file at ``output`` is not ``source``'s ``result`` (see :class:`Noted`),
    ``made`` as :func:`made_with` says (if given), by the output log, or None when it is
    (or when an older note cannot say, as before results were noted). The reason reads
    after "<output> already exists and ...".

    A batch takes a file for done only when this is None. Lenient where a batch may be:
    a note whose source is gone stands for any source, and one that does not say how the
    source was (:func:`source_identity`) for any version of it. Replacing a file needs
    more.
    """
    noted = notes.get(output)
    if noted is None:
        return "was not made by rbqe"
    if not noted.stands_for(output):
        return "is not the file rbqe wrote there (it was replaced or edited since)"
    if os.path.exists(noted.source) and path_key(noted.source) != path_key(source):
        return f"was made from {noted.source}"
    if noted.result is not None and noted.result != result:
        return f"holds {_describe_result(noted.result)} of this photo (an earlier run)"
    otherwise = _made_otherwise(noted.made, made) if made is not None else None
    # Last: it may read the source. Also where the noted source is gone (a folder moved):
    # the bytes, not the path, say whether this is the photo the output was made from.
    if otherwise is None and source_changed(noted.source_id, source):
        return "was made from an earlier version of this photo (it has changed since)"
    return otherwise


def source_identity(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The source at ``path`` as an output's note keeps it, so that a re-run can tell
    whether it has changed since (:func:`not_this_result`): its size and mtime
    (``os.stat``) and the SHA-256 of its bytes; None if it cannot be read (reading it
    for the enhancement then fails with the reason).

    Call it before the source is read for the enhancement. The stat comes before the
    hash and the hash before the enhancement's read, so what is noted is never a newer
    version than the one enhanced: a source replaced meanwhile reads as changed next
    time (at worst one enhanced after all), never as done.
    """
    try:
        st = os.stat(path)
        digest = _sha256(path)
    except OSError:
        return None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}


def source_changed(noted: dict[str, Any] | None, source: Path) -> bool:
    """Whether ``source`` is no longer the file ``noted`` (:func:`source_identity`);
    False when the note cannot say (an older one) or the source cannot be read.

    Of the same size and mtime it is taken as it was, unread: a resume of a large archive
    must not read every source. Of the same size with another mtime (a copy without
    ``-p``, a ``touch``) its bytes decide.
    """
    noted = noted or {}
    size, mtime_ns, sha256 = noted.get("size"), noted.get("mtime_ns"), noted.get("sha256")
    if not (isinstance(size, int) and isinstance(mtime_ns, int) and isinstance(sha256, str)):
        return False
    try:
        st = os.stat(source)
        if st.st_size != size:
            return True
        return st.st_mtime_ns != mtime_ns and \
            _sha256_of(str(source), st) != sha256
    except OSError:
        return False


def _sha256_of(path: str, st: os.stat_result) -> str:
    """The SHA-256 of the file at ``path`` as ``st`` found it, read once per version."""
    return _sha256_as_of(path, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


@functools.lru_cache(maxsize=32)
def _sha256_as_of(path: str, size: int, mtime_ns: int, ctime_ns: int, ino: int) -> str:
    # Keyed by the stat too: --exit all asks of one source once for each of its outputs.
    # The ctime and inode: a file rewritten in place with its mtime kept (touch -r) is
    # another version to a long-lived process (the app).
    return _sha256(path)


def _sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(functools.partial(fh.read, 1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _describe_result(result: str) -> str:
    k = result.removeprefix("exit")
    return "the auto result" if result == "auto" else f"exit {k}"


def _append(folder: Path, entry: dict[str, Any]) -> None:
    # ASCII: a name that is not UTF-8 (an old Latin-1 disk's "caf\xe9.jpg") reaches Python
    # as a lone surrogate, which JSON escapes and reads back as the same name. The line
    # starts with a newline: after a write torn by a full disk, the next note still
    # begins a line of its own (blank and torn lines are skipped when read).
    line = "\n" + json.dumps(entry) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    # One small O_APPEND write per entry, so that concurrent runs do not mix lines.
    fd = _open_for_notes(folder)
    try:
        os.write(fd, line.encode("ascii"))
    finally:
        os.close(fd)


def probe_output_log(folder: Path) -> None:
    """Proves that notes can be added to ``folder``'s log (creating it); raises OSError."""
    os.close(_open_for_notes(folder))


def _open_for_notes(folder: Path) -> int:
    return os.open(folder / OUTPUT_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)


def _relative_to(path: Path, folder: Path) -> str:
    try:
        return Path(os.path.relpath(path.absolute(), folder.absolute())).as_posix()
    except ValueError:  # another drive on Windows
        return str(path.absolute())


def _read_output_log(folder: Path) -> dict[str, Noted]:
    """``{output name: what is noted of it}`` from ``folder``'s :data:`OUTPUT_LOG` ({} if
    none)."""
    try:
        text = (folder / OUTPUT_LOG).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    entries: dict[str, Noted] = {}
    for line in text.splitlines():
        try:
            entry = json.loads(line)
            name, source = entry["output"], entry["source"]
            result, size = entry.get("result"), entry.get("size")
        except (ValueError, TypeError, KeyError, AttributeError):
            continue  # a blank, torn or foreign line
        if not (isinstance(name, str) and isinstance(source, str)):
            continue
        retracted = entry.get("retracted")
        if retracted:
            if name in entries and entries[name].token == retracted:
                del entries[name]
            continue
        when, token, made = entry.get("time"), entry.get("token"), entry.get("made")
        source_id, exit_ = entry.get("source_id"), entry.get("exit")
        entries[name] = Noted(folder / source, result if isinstance(result, str) else None,
                              size if isinstance(size, int) else None,
                              float(when) if isinstance(when, (int, float)) else None,
                              token if isinstance(token, str) else None,
                              made if isinstance(made, dict) else None,
                              source_id if isinstance(source_id, dict) else None,
                              exit_ if isinstance(exit_, int) and 1 <= exit_ <= 5 else None)
    return entries


class OutputNotes:
    """The output logs of a batch's folders, read once each, and again when a name is
    not found (another rbqe process may have noted it since)."""

    def __init__(self) -> None:
        self._folders: dict[Path, dict[str, Noted]] = {}

    def get(self, output: Path) -> Noted | None:
        entries = self._folders.get(output.parent)
        if entries is None or output.name not in entries:
            entries = self._folders[output.parent] = _read_output_log(output.parent)
        return entries.get(output.name)

    def renote_source(self, output: Path, source: Path) -> None:
        """Notes ``output`` again with its source's present mtime, where only that changed
        since (a copy without ``-p``, a ``touch``): :func:`not_this_result` then read the
        source's bytes to tell, and without this every later run would read them again.
        Call it only for an output taken as ``source``'s result. Nothing if the folder
        cannot be written (a read-only archive still resumes, reading the bytes)."""
        noted = self.get(output)
        if noted is None or noted.size is None or not noted.source_id:
            return
        try:
            st = os.stat(source)
            if noted.source_id.get("size") != st.st_size or \
                    noted.source_id.get("mtime_ns") == st.st_mtime_ns or \
                    _sha256_of(str(source), st) != noted.source_id.get("sha256"):
                return  # only an mtime whose bytes were found the noted ones is noted
        except OSError:
            return
        fresh = _read_output_log(output.parent).get(output.name)
        if fresh is None or (fresh.token, fresh.size) != (noted.token, noted.size):
            return  # another run noted this output since: its note stands
        source_id = {**noted.source_id, "mtime_ns": st.st_mtime_ns}
        with contextlib.suppress(OSError):
            record_output(output, noted.source, noted.result, size=noted.size,
                          token=noted.token, made=noted.made, source_id=source_id,
                          exit=noted.exit)
            self._folders[output.parent][output.name] = noted._replace(source_id=source_id)


def written_outputs(folders: Iterable[Path]) -> dict[Path, Path]:
    """``{output: source}`` for the noted outputs in ``folders`` that still exist.

    An output whose source is gone is left out: it then stands for itself, and an input
    that takes its name finds it done, as before outputs were noted everywhere.
    """
    found: dict[Path, Path] = {}
    for folder in folders:
        for name, noted in _read_output_log(folder).items():
            out = folder / name
            if os.path.isfile(out) and os.path.exists(noted.source) and noted.stands_for(out):
                found[out] = noted.source
    return found


def _drop_earlier_outputs(
    found: dict[str, tuple[Path, Path | None]],
) -> dict[str, tuple[Path, Path | None]]:
    """Leaves out files that rbqe made from another file of ``found`` (see :data:`OUTPUT_LOG`)."""
    logs: dict[Path, dict[str, Noted]] = {}
    source_of: dict[str, str] = {}
    for key, (f, _) in found.items():
        if f.parent not in logs:
            logs[f.parent] = _read_output_log(f.parent)
        noted = logs[f.parent].get(f.name)
        if noted is not None and noted.stands_for(f):
            source_of[key] = path_key(noted.source)
    earlier = {k for k in source_of if _traces_to_input(k, source_of, found)}
    if earlier:
        logger.info("leaving out %d earlier output(s) of rbqe (noted in %s)",
                    len(earlier), OUTPUT_LOG)
    return {k: v for k, v in found.items() if k not in earlier}


def _traces_to_input(key: str, source_of: dict[str, str], found: dict[str, Any]) -> bool:
    """True if following the noted sources from ``key`` ends at a file that is an input.

    If the source is gone (or the notes loop), the file now stands for itself: it is
    processed like any photo of the user's.
    """
    seen = {key}
    while key in source_of:
        key = source_of[key]
        if key not in found or key in seen:
            return False
        seen.add(key)
    return True
