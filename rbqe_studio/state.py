"""Qt-free state of a session: the image queue, the result cache and small formatters.

Nothing here imports Qt, so the rules (which image runs next, what the cache evicts, how
an ETA is estimated) are tested as plain Python.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from rbqe.batch import ItemReport
    from rbqe.engine import EnhanceResult

from rbqe.io import path_key  # the one identity rule: the queue agrees with the batch lister

WAITING, RUNNING, DONE, FAILED = "waiting", "running", "done", "failed"
BLOCKED = "blocked"  # waits for a usable model (missing weights, unusable device)
MODEL, DEVICE = "model", "device"  # what blocks it: the weights file, or the device/backend


@dataclass
class QueueItem:
    """One image in the queue and what is known about it so far."""

    path: Path
    status: str = WAITING
    error: str = ""
    exit: int | None = None
    score: float | None = None
    time_ms: float | None = None
    outputs: list[Path] = field(default_factory=list)  # files written for it (batch, saves)
    report: ItemReport | None = None  # from a batch: the viewer loads its saved outputs
    blocked_by: str = ""  # BLOCKED: MODEL or DEVICE
    progress: float | None = None  # RUNNING: the fraction done, once the worker says
    # The user stopped it: not run in the background. Stopped after an exit (WAITING,
    # ``exit`` that exit), its exits so far are kept, to view and save: ``kept`` (those
    # and any Compute all or Save all added to them since).
    stopped: bool = False
    kept: tuple[int, ...] = ()
    # DONE under an earlier exit mode or threshold: its exit is that mode's until viewed
    stale: bool = False

    @property
    def name(self) -> str:
        return self.path.name

    def reset(self) -> None:
        """Back to waiting, to be computed (again) by the network."""
        self.status, self.error = WAITING, ""
        self.exit = self.score = self.time_ms = None
        self.report = None
        self.blocked_by = ""
        self.progress = None
        self.stopped, self.kept = False, ()
        self.stale = False


class Queue:
    """Ordered, de-duplicated list of :class:`QueueItem`."""

    def __init__(self) -> None:
        self.items: list[QueueItem] = []
        self._keys: dict[str, QueueItem] = {}

    def __len__(self) -> int:
        return len(self.items)

    def add(self, paths: Iterable[Path]) -> list[QueueItem]:
        """Append new paths; returns the items added (paths already queued are skipped)."""
        added = []
        for p in paths:
            key = path_key(p)
            if key in self._keys:
                continue
            item = QueueItem(Path(p))
            self.items.append(item)
            self._keys[key] = item
            added.append(item)
        return added

    def get(self, path: Path) -> QueueItem | None:
        return self._keys.get(path_key(path))

    def at_key(self, key: str) -> QueueItem | None:
        """The item queued under ``key`` (:meth:`key_of`)."""
        return self._keys.get(key)

    def index(self, item: QueueItem) -> int:
        return self.items.index(item)

    def key_of(self, item: QueueItem) -> str | None:
        """The key ``item`` was queued under; None when it is not in the queue. Found by
        identity: ``path_key(item.path)`` resolves links, and a linked folder re-pointed
        (or gone) since the item was added gives another key."""
        return next((k for k, v in self._keys.items() if v is item), None)

    def remove(self, item: QueueItem) -> bool:
        """Takes ``item`` out; whether it was in the queue."""
        key = self.key_of(item)
        if key is None:
            return False
        del self._keys[key]
        # By identity too: two items of one path (queued again after its link was
        # re-pointed) compare equal
        del self.items[next(i for i, v in enumerate(self.items) if v is item)]
        return True

    def clear(self) -> None:
        self.items.clear()
        self._keys.clear()

    def next_waiting(self, start: int = 0) -> QueueItem | None:
        """First waiting item at or after ``start``, wrapping around."""
        n = len(self.items)
        for i in range(n):
            item = self.items[(start + i) % n]
            if item.status == WAITING and not item.stopped:
                return item
        return None

    def counts(self) -> dict[str, int]:
        out = {WAITING: 0, RUNNING: 0, DONE: 0, FAILED: 0, BLOCKED: 0}
        for item in self.items:
            out[item.status] += 1
        return out


K = TypeVar("K")
V = TypeVar("V")


class ResultCache(Generic[K, V]):
    """Least-recently-used cache bounded by a cost budget (bytes, roughly).

    The most recently used entry is never evicted, however large: it is on screen.
    What is held outside the entries for them (:meth:`hold`: the window's previews of
    the photo on screen) counts against the budget too: the entries and it stay within
    the budget, but for that one entry.

    Args:
        budget: The cost the entries and :attr:`held` may add up to.
        pinned: Whether the entry under a key is one the user asked to keep (the exits a
            Stop kept): those go last, after all the others, and only while they alone
            (with :attr:`held`) pass the budget (the oldest first). None: none is.
    """

    def __init__(self, budget: float, pinned: Callable[[K], bool] | None = None) -> None:
        self.budget = budget
        self.pinned = pinned or (lambda _key: False)
        self._entries: OrderedDict[K, tuple[V, float]] = OrderedDict()
        self.held = 0.0  # bytes held outside the entries, counted in (:meth:`hold`)

    def __contains__(self, key: K) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def total(self) -> float:
        return sum(cost for _, cost in self._entries.values())

    def peek(self, key: K) -> V | None:
        """The entry, without making it the most recently used."""
        entry = self._entries.get(key)
        return None if entry is None else entry[0]

    def get(self, key: K) -> V | None:
        if key not in self._entries:
            return None
        self._entries.move_to_end(key)
        return self._entries[key][0]

    def put(self, key: K, value: V, cost: float) -> list[K]:
        """Store ``value``; returns the keys evicted to stay within the budget."""
        self._entries[key] = (value, cost)
        self._entries.move_to_end(key)
        return self.trim()

    def update_cost(self, key: K, cost: float) -> list[K]:
        if key in self._entries:
            self._entries[key] = (self._entries[key][0], cost)
        return self.trim()

    def hold(self, cost: float) -> list[K]:
        """Counts ``cost`` bytes held outside the entries against the budget, instead of
        what was held before (0: nothing now): the window's previews of the photo on
        screen, which can be as large as its exits (a tiled run's, the difference heat
        map). Returns the keys evicted to make room for them."""
        self.held = max(0.0, float(cost))
        return self.trim()

    def trim(self) -> list[K]:
        """Evicts the least recently used entries (never the most recent) while they and
        what is :attr:`held` pass the budget, the pinned ones only while they alone (and
        what is held) do; returns their keys."""
        older = list(self._entries)[:-1]  # oldest first
        pinned = {k for k in self._entries if self.pinned(k)}
        kept = [k for k in older if k in pinned]
        evicted = kept[:self._over(kept, sum(self._entries[k][1] for k in pinned)
                                   + self.held)]
        # What goes of the others is counted without the pinned ones that went already.
        total = self.total + self.held - sum(self._entries[k][1] for k in evicted)
        others = [k for k in older if k not in pinned]
        evicted += others[:self._over(others, total)]
        for key in evicted:
            del self._entries[key]
        return evicted

    def _over(self, keys: list[K], total: float) -> int:
        """How many of ``keys`` (oldest first, of a ``total`` cost) go to bring that
        total within the budget."""
        n = 0
        while n < len(keys) and total > self.budget:
            total -= self._entries[keys[n]][1]
            n += 1
        return n

    def pop(self, key: K) -> V | None:
        entry = self._entries.pop(key, None)
        return entry[0] if entry else None

    def clear(self) -> None:
        self._entries.clear()


class Eta:
    """Remaining-time estimate from the average time per finished item.

    ``paced`` (None: all of ``done``) counts the finished items that set the pace: a
    batch's failed and skipped files take no time, and counted in, a first broken file
    made it say "about 0 s left" through the next photo's ten seconds."""

    def __init__(self, total: int, started: float) -> None:
        self.total, self.started = total, started
        self.done = 0
        self.paced: int | None = None

    def remaining_s(self, now: float) -> float | None:
        paced = self.done if self.paced is None else self.paced
        if paced <= 0 or self.total <= 0:
            return None
        per_item = (now - self.started) / paced
        return max(0.0, per_item * (self.total - self.done))


class TilePace:
    """Time left of a tiled image, from the pace of its tiles so far (the sample walk
    before them runs at another pace). One job at a time: a new ``gen`` starts afresh."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._gen = 0
        self._first = 0  # steps done when its first tile started
        self._eta: Eta | None = None

    def left_s(self, gen: int, stage: str, done: int, total: int) -> float | None:
        """Seconds left after progress ``(stage, done, total)`` of job ``gen``; None
        until a tile has run (or outside the tiles)."""
        if stage != "tile" or done >= total:
            return None
        if gen != self._gen or self._eta is None:
            self._gen, self._first = gen, done
            self._eta = Eta(total - done, self.clock())
            return None
        self._eta.done = done - self._first
        return self._eta.remaining_s(self.clock())


def fmt_ms(ms: float | None) -> str:
    """A time taken, written one way across the app (status line, queue row, exit card,
    Info panel: a photo's read "1 min 33 s" in one, "92.9 s" in another), short enough
    for narrow places: "305 ms", "1.50 s", "12.5 s", "184 s", "21 min" ("1 min 04 s" was
    cut in a queue row). (Time left, an estimate, is :func:`fmt_duration`'s.)"""
    if ms is None or math.isnan(ms):
        return "–"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 10_000:
        return f"{ms / 1000:.2f} s"
    if ms < 100_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms / 1000:.0f} s" if ms < 1_000_000 else f"{ms / 60_000:.0f} min"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def tiled_progress_text(stage: str, done: int, total: int, left_s: float | None,
                        again: str = "") -> str:
    """The status line of a tiled image (more pixels than one tile holds, or than 2.1 MP
    on a CPU in bf16: not always a "large image" to its owner): which phase, how far,
    and, once tiles have run, about how long is left (``done`` counts the sample walk's
    exits, then the tiles). ``again``: the exits a later run of the picture makes ("Compute
    all exits" on a tiled one runs it again from exit 1), said so that it does not read
    as the first run."""
    head = f"Tiled image, {again} (a second run)" if again else "Tiled image"
    if stage == "tile" and done >= total:
        return f"{head}: putting the tiles together and scoring the result…"
    share = f"{done / total:.0%}" if total > 0 else "0%"
    if stage == "sample":
        return f"{head}: trying the exits on sample tiles · {share}"
    left = f" · about {fmt_duration(max(left_s, 1.0))} left" if left_s is not None else ""
    return f"{head}: enhancing tile by tile · {share}{left}"


def other_ms(r: EnhanceResult, added: Container[int] = ()) -> float:
    """The run's time besides its exits' network and scoring: the input made ready, the
    outputs finished. ``added``: exits a later run added (:attr:`rbqe_studio.jobs.
    ViewData.extra_runs`), whose time is not in ``r.total_ms``."""
    own = sum(e.time_ms + e.iqa_ms for e in r.exits if e.exit not in added)
    return max(0.0, r.total_ms - own)


def engine_text(export: bool) -> str:
    """What the status line says while the model is made ready; ``export``: OpenVINO
    exports and compiles the network, as on its first use of a weights file (52 s on a
    2-core CPU; :func:`rbqe_studio.worker.exports_openvino`). Said only then: it was said
    on every start under ``auto``, which had measured torch faster long before."""
    if export:
        return ("Preparing the model… (the first time, OpenVINO exports and compiles the "
                "network: about a minute)")
    return "Preparing the model…"


def score_decides(exit_reason: dict | None) -> bool:
    """Whether a score threshold chose the exit (the assessor rule under auto): only then
    is the chosen exit's score worth a headline. Under the learned gate or a forced exit
    the assessor's score decides nothing, and it often ranks a weaker exit higher (exit 1
    of a QF 10 photo 0.657, the chosen exit 5 0.562): shown as "score 0.562" beside the
    result it read as "the app picked the worst version"."""
    return exit_reason is not None and "threshold" in exit_reason.get("values", {})


def exits_text(exits: Iterable[int]) -> str:
    """Exits as a sentence names them: "exit 4", "exits 1–4", "exits 1, 3–4"."""
    ks = sorted(set(exits))
    spans: list[list[int]] = []  # first and last of each stretch of consecutive exits
    for k in ks:
        if spans and k == spans[-1][1] + 1:
            spans[-1][1] = k
        else:
            spans.append([k, k])
    words = ", ".join(f"{a}" if a == b else f"{a}–{b}" for a, b in spans)
    return f"exit {words}" if len(ks) == 1 else f"exits {words}"


def fmt_gmacs(g: float | None) -> str:
    if g is None:
        return "–"
    return f"{g:.1f} GMAC" if g < 1000 else f"{g / 1000:.2f} TMAC"


def fmt_size(width: int, height: int) -> str:
    mp = width * height / 1e6
    return f"{width} × {height}  ({mp:.1f} MP)" if mp >= 0.1 else f"{width} × {height}"


def dpi_text(dpi: float) -> str:
    """A resolution as people say it: PNG keeps pixels per metre, so 150 dpi reads back
    as 150.012; within 0.05 of a whole number it is that number."""
    return f"{round(dpi)}" if abs(dpi - round(dpi)) < 0.05 else f"{dpi:.1f}"


def elide_middle(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    keep = max(1, limit - 1)
    return text[: keep // 2] + "…" + text[len(text) - (keep - keep // 2):]


def sentence(text: str) -> str:
    """``text`` with a capital first letter (the library's warnings start lower case)."""
    return text[:1].upper() + text[1:]


def warned(warnings: list[str], limit: int = 80) -> str:
    """The status bar's short word on what a save could not keep ("" for none): the
    first warning, after how many there are when more than one. A long one is cut to
    its first clause (what was lost; the advice after ";" is in the tooltip), then at
    a word before ``limit``."""
    if not warnings:
        return ""
    first = sentence(warnings[0])
    if len(first) > limit:
        first = first.split(";")[0]
    if len(first) > limit:
        first = first[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,") + "…"
    return f"⚠ {first}" if len(warnings) == 1 else f"⚠ {len(warnings)} notes: {first}"
