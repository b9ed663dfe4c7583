"""What the app's saves note in the output log, and which files they may replace.

The app writes its outputs where the CLI's batch may later write too, so it notes them
in the same log (:data:`rbqe.io.OUTPUT_LOG`, through :func:`rbqe.io.write_noted`), as the
result the batch would call them (:func:`rbqe.batch.result_name`): a later batch into
the folder then takes an app-saved file that holds its result for done, leaves it out of
its inputs, and keeps its name with its photo. The log records which photo and which
exit a file holds, and its size; the format only through the name's extension, and
nothing of quality or metadata (the batch's notes do not either). It records the photo
as it was read for the exits too (:attr:`rbqe_studio.jobs.ViewData.source_id`), so that
a batch does not take the file for done once the photo has changed.

Save all replaces a file without asking only where the log says rbqe saved it there from
the same photo as the same result. Any other file at one of its names (a user's own, or
rbqe's from another photo) is replaced only if the user said so when asked
(:func:`others`, before the save); one that appears after the question stays as it is and
the save fails naming it. A single Save writes the name the user chose in the file
dialog, which has already asked before replacing; never the photo's own file
(:func:`rbqe.io.same_file`, as the library's ``protect=`` decides). Plain Python, no Qt.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rbqe.errors import RBQEError
from rbqe.io import Noted, OutputNotes, not_this_result, output_path_for, path_key
from rbqe_studio.jobs import SaveJob, ViewData

# A save's plan: (exit, file, the result the log will call it, or None).
Plan = list[tuple[int, Path, str | None]]

# Outputs read back from these hold the pixels the batch wrote; the others (JPEG, WebP)
# hold a lossy copy of them, which the app cannot claim is that result.
_LOSSLESS = {".png", ".tif", ".tiff", ".bmp"}


def result_held(view: ViewData, k: int, target: Path, notes: OutputNotes) -> str | None:
    """What the log notes of ``view``'s exit ``k`` saved at ``target``, in the batch's
    words (``"auto"``, ``"3"`` or ``"exit3"``); None where the app cannot truly say.

    * A tiled image's auto result under per-tile exits is a blend of the tiles' exits,
      not exit ``k``: ``"auto"``.
    * Exit ``k`` itself: ``"exit{k}"`` under a name of ``--exit all``'s form
      (``photo_rbqe.exit3.png``, as Save all names it), else ``"{k}"`` (a forced exit:
      the pixels are the same).
    * An exit read back from a batch's output holds what that output's note says, if
      it was lossless and is still the file noted; else None.
    """
    result = view.result
    assert result is not None
    if k in view.saved:
        held = _noted_result(view.saved[k], view.path, notes)
        if held is None or held == "auto":
            return held
    elif result.tile_exits is not None and k == result.chosen:
        return "auto"
    tag = f"exit{k}"
    return tag if target.stem.endswith(f".{tag}") else str(k)


def _noted_result(saved: Path, source: Path, notes: OutputNotes) -> str | None:
    """The result the log notes for the batch output ``saved`` of ``source``, if
    lossless and still the file noted."""
    noted = _note_of(saved, source, notes)
    if saved.suffix.lower() not in _LOSSLESS or noted is None:
        return None
    return noted.result


def source_noted(saved: Path, source: Path, notes: OutputNotes) -> dict[str, Any] | None:
    """The source as the note of the batch output ``saved`` of ``source`` says it was
    made from it (:func:`rbqe.io.source_identity`), if still the file noted; else None,
    as when the note does not say. Read it before the file: a note read after could be
    of a newer output than the one read."""
    noted = _note_of(saved, source, notes)
    return None if noted is None else noted.source_id


def _note_of(saved: Path, source: Path, notes: OutputNotes) -> Noted | None:
    """The log's note of ``saved``, if it is of ``source`` and still stands for the file."""
    noted = notes.get(saved)
    if noted is None or not noted.stands_for(saved) or path_key(noted.source) != path_key(source):
        return None
    return noted


def may_replace(target: Path, source: Path, result: str | None, notes: OutputNotes) -> bool:
    """Whether the file at ``target`` is rbqe's ``result`` of ``source`` by the log, so
    that saving that result again may replace it. Stricter than a batch's "done"
    (:func:`rbqe.io.not_this_result`): an older note that names no result, or one whose
    photo is gone, does not count."""
    noted = _note_of(target, source, notes)
    return result is not None and noted is not None and noted.result == result


def plan(job: SaveJob, notes: OutputNotes) -> Plan:
    """Where ``job`` writes each of its exits, and what the log will call each."""
    view = job.view
    assert view is not None
    planned: Plan = []
    for k in job.exits:
        target = job.targets.get(k) or output_path_for(
            view.path, job.folder or view.path.parent, suffix=job.suffix,
            exit_tag=f"exit{k}", fmt=job.fmt)
        planned.append((k, target, result_held(view, k, target, notes)))
    return planned


def others(job: SaveJob, notes: OutputNotes) -> list[Path]:
    """The files Save all's ``job`` would replace that are not rbqe's same result of its
    photo (:func:`may_replace`): what to ask the user about first. Names the user chose
    in a file dialog are not counted (the dialog asked)."""
    assert job.view is not None
    return [t for k, t, r in plan(job, notes)
            if k not in job.targets and os.path.lexists(t)
            and not may_replace(t, job.view.path, r, notes)]


def refuse_others(source: Path, planned: list[tuple[Path, str | None]],
                  notes: OutputNotes, agreed: frozenset[Path] = frozenset()) -> None:
    """Raises if a file stands at one of Save all's ``planned`` ``(target, result)``
    names that it may not replace (:func:`may_replace`) and that the user did not agree
    to replace (``agreed``), before anything is written.

    Raises:
        RBQEError: Naming the first such file, why it is not replaced, and how many more.
    """
    taken = [(t, r) for t, r in planned
             if os.path.lexists(t) and t not in agreed and not may_replace(t, source, r, notes)]
    if not taken:
        return
    target, result = taken[0]
    why = (not_this_result(target, source, result, notes) if result is not None else None)
    more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
    raise RBQEError(f"{target} already exists{more} and "
                    f"{why or 'rbqe cannot tell it is this result of this photo'}; "
                    f"it is left as it is and nothing was saved (choose another folder, "
                    f"or move that file away)")
