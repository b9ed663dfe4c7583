"""What the session model tells the window: one small frozen dataclass per kind of event.

:class:`rbqe_studio.session_model.SessionModel` returns lists of these;
:class:`rbqe_studio.session.Session` turns each into the Qt signal of the same name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rbqe.engine import ExitResult
from rbqe_studio.jobs import Choice, TilePatch, ViewData
from rbqe_studio.state import QueueItem


@dataclass(frozen=True)
class ItemsAdded:
    items: list[QueueItem]


@dataclass(frozen=True)
class ItemChanged:
    item: QueueItem


@dataclass(frozen=True)
class SelectItem:
    """The window should select this item in the queue (which then calls ``select``)."""

    item: QueueItem


@dataclass(frozen=True)
class ViewLoaded:
    view: ViewData  # the input only so far


@dataclass(frozen=True)
class ExitReady:
    exit: ExitResult
    view: ViewData


@dataclass(frozen=True)
class TileReady:
    """A tile of the viewed photo's tiled run is done: pasted over the preview of its
    result, shown until the result is."""

    patch: TilePatch
    view: ViewData


@dataclass(frozen=True)
class PreviewDropped:
    """The run the view's tile preview belongs to is superseded (Process again, a new
    mode or threshold mid-run): the preview goes at once; B says what it says without."""


@dataclass(frozen=True)
class ViewFinished:
    view: ViewData  # with its result


@dataclass(frozen=True)
class ViewFailed:
    message: str


@dataclass(frozen=True)
class ViewBusy:
    busy: bool


@dataclass(frozen=True)
class Progress:
    stage: str
    done: int
    total: int
    left_s: float | None = None  # a tiled image's time left, once a tile has run
    again: str = ""  # a later run of a tiled picture: the exits it makes ("exits 1–4")


@dataclass(frozen=True)
class EngineInfo:
    info: dict


@dataclass(frozen=True)
class EngineError:
    message: str


@dataclass(frozen=True)
class Message:
    text: str
    error: bool = False


@dataclass(frozen=True)
class Saved:
    paths: list[Path]
    warnings: list[str] = field(default_factory=list)  # what the files could not keep


@dataclass(frozen=True)
class WeightsChanged:
    """Another weights file is in use: check it, show its threshold."""

    weights: str


@dataclass(frozen=True)
class ChoiceChanged:
    """The exit mode or the policy changed: the strip's header says so."""

    choice: Choice


Event = (ItemsAdded | ItemChanged | SelectItem | ViewLoaded | ExitReady | TileReady
         | PreviewDropped | ViewFinished | ViewFailed | ViewBusy | Progress | EngineInfo | EngineError
         | Message | Saved | WeightsChanged | ChoiceChanged)
