"""Info panel: the input file, the engine, and per-stage timings of the viewed image."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGridLayout,
    QHeaderView,
    QLabel,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from rbqe.arch import NUM_EXITS
from rbqe.engine import EnhanceResult, ExitResult
from rbqe.io.metadata import exif_has_gps, xmp_has_gps
from rbqe_studio.convert import Display
from rbqe_studio.jobs import ViewData
from rbqe_studio.state import (
    dpi_text,
    exits_text,
    fmt_gmacs,
    fmt_ms,
    fmt_size,
    score_decides,
)
from rbqe_studio.widgets import ElidedLabel, section_title


class InfoPanel(QScrollArea):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setFrameShape(QScrollArea.Shape.NoFrame)
        body = QWidget()
        body.setObjectName("infoBody")
        lay = QVBoxLayout(body)
        lay.setContentsMargins(12, 10, 12, 12)
        lay.setSpacing(6)
        self.fields: dict[str, QLabel] = {}
        self.keys: dict[str, QLabel] = {}
        self.tiles_shown = False  # "Chosen exit" says which exit a tiled run's tiles take

        lay.addWidget(section_title("Image"))
        lay.addLayout(self._form(["File", "Size", "Format", "Colour", "Metadata", "JPEG quality",
                                  "Note"], elided=("File",)))
        # Shown for JPEGs only (beside "not a JPEG" it explained nothing).
        note = self.jpeg_note = QLabel(
            "JPEG quality is estimated from the file's quantisation tables; the learned "
            "exit gate reads the tables themselves as a prior (a file re-saved at a higher "
            "quality can hide how hard it was compressed, so the gate also looks at the "
            "pixels).")
        note.setObjectName("muted")
        note.setWordWrap(True)
        lay.addWidget(note)

        lay.addWidget(section_title("Result"))
        lay.addLayout(self._form(["Chosen exit", "Why this exit", "Threshold", "Mode", "Device",
                                  "Tiling"]))

        lay.addWidget(section_title("Per stage"))
        # Each exit's own stage: its time, score and compute, all per stage (the exit
        # cards' Σ figures are cumulative: these summed up to the exit).
        self.table = QTableWidget(NUM_EXITS, 3)
        self.table.setHorizontalHeaderLabels(["Time", "Score", "GMAC"])
        self.table.horizontalHeaderItem(0).setToolTip(
            "This stage alone: its network time and its scoring (the exit cards' Σ is "
            "cumulative: the stages up to the exit)")
        self.table.horizontalHeaderItem(2).setToolTip(
            "This stage alone, in billions of multiply-adds (the exit cards' Σ is "
            "cumulative: the stages up to the exit)")
        score = self.table.horizontalHeaderItem(1)
        score.setToolTip("The assessor's blind quality score (0-1; higher: fewer visible "
                         "blocks and less blur). It decides only under a score-threshold "
                         "rule (the weights' own, or one set in Settings): the learned gate "
                         "decides on the gain it predicts, so its exit need not score "
                         "highest")
        self.table.setVerticalHeaderLabels([f"Exit {k}" for k in range(1, NUM_EXITS + 1)])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.table.verticalHeader().setDefaultSectionSize(24)
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setFixedHeight(24 * NUM_EXITS + self.table.horizontalHeader().sizeHint().height() + 4)
        lay.addWidget(self.table)

        lay.addWidget(section_title("Time"))
        lay.addLayout(self._form(["Network", "IQA", "Other", "Total", "Computed"]))
        lay.addWidget(section_title("Engine"))
        lay.addLayout(self._form(["Weights", "Engine device"], elided=("Weights",)))
        lay.addStretch(1)
        self.setWidget(body)
        self.clear()

    def _form(self, names: list[str], elided: tuple[str, ...] = ()) -> QGridLayout:
        """The rows ``names``; those ``elided`` (a file's name, a path) are cut in the
        middle, whole in their tooltip: a long name without spaces cannot wrap, and
        made the whole panel scroll sideways (zero-width spaces to break it at would
        have been copied with it)."""
        # A grid, not a QFormLayout: a form laid its wrapped values out at a stale height
        # once the panel's scroll bar came (the "why" and "threshold" lines were cut).
        grid = QGridLayout()
        grid.setHorizontalSpacing(12)
        grid.setVerticalSpacing(4)
        grid.setColumnStretch(1, 1)
        for row, name in enumerate(names):
            if name in elided:
                value: QLabel = ElidedLabel("–", middle=True)
            else:
                value = QLabel("–")
                value.setWordWrap(True)
                value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            key = QLabel(name)
            key.setObjectName("muted")
            top = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop
            grid.addWidget(key, row, 0, top)
            grid.addWidget(value, row, 1, Qt.AlignmentFlag.AlignTop)
            self.fields[name] = value
            self.keys[name] = key
        return grid

    def roomy_width(self) -> int:
        """The narrowest width at which the per-stage table's cells read in full (as
        wide as "999 ms", its widest, each)."""
        margins = self.widget().layout().contentsMargins()
        cell = self.table.fontMetrics().horizontalAdvance("999 ms") + 8
        return (self.table.verticalHeader().sizeHint().width()
                + self.table.columnCount() * cell + 2 * self.table.frameWidth()
                + margins.left() + margins.right() + self.verticalScrollBar().sizeHint().width())

    def set(self, name: str, text: str) -> None:
        self.fields[name].setText(text)
        if name in ("Device", "Engine device"):
            self._show_engine_device()

    def _show_engine_device(self) -> None:
        """The engine's device only where it is not the result's (said twice, it read
        as if the two could differ)."""
        same = self.fields["Device"].text() == self.fields["Engine device"].text()
        for widget in (self.keys["Engine device"], self.fields["Engine device"]):
            widget.setVisible(not same)

    def clear(self) -> None:
        self.tiles_shown = False
        for name, label in self.fields.items():
            if name not in ("Weights", "Engine device"):
                label.setText("–")
        self.keys["Why this exit"].setText("Why this exit")
        self._show_engine_device()
        self._set_tiling("–")
        self.jpeg_note.hide()
        self._clear_table()

    def _set_tiling(self, text: str, tip: str = "") -> None:
        """The Tiling row, with why the picture was tiled on hover (key and value)."""
        self.set("Tiling", text)
        for label in (self.keys["Tiling"], self.fields["Tiling"]):
            label.setToolTip(tip)

    def _clear_table(self) -> None:
        for row in range(NUM_EXITS):
            for col in range(self.table.columnCount()):
                self.table.setItem(row, col, QTableWidgetItem("–"))

    def show_tiles(self, exits: Iterable[int], done: int, total: int) -> None:
        """A tiled run's tiles come in (its exits only at its end): the exits they take,
        and how far it is."""
        which = exits_text(exits)
        self.set("Chosen exit", f"{which[0].upper()}{which[1:]} (tiles running: {done} of "
                                f"{total})")
        self.tiles_shown = True

    def end_tiles(self) -> None:
        """The tiled run ended without a result (stopped, superseded): no tiles running."""
        if self.tiles_shown:
            self.tiles_shown = False
            self.set("Chosen exit", "–")

    def show_failed(self, path: Path, reason: str) -> None:
        """A file that could not be read: its name, and why, where the result would be."""
        self.clear()
        self.set("File", path.name)
        self.fields["File"].setToolTip(str(path))
        self.set("Chosen exit", f"none: {reason}")

    def set_engine(self, info: dict) -> None:
        self.set("Weights", str(info.get("weights", "–")))
        self.fields["Weights"].setToolTip(str(info.get("weights", "")))
        self.set("Engine device", str(info.get("device", "–")))

    def show_input(self, view: ViewData) -> None:
        self.clear()
        src = view.loaded
        w, h = src.size
        self.set("File", str(view.path.name))
        self.fields["File"].setToolTip(str(view.path))
        self.set("Size", fmt_size(w, h))
        self.set("Format", f"{src.format}, {src.bit_depth}-bit")
        colour = {"L": "Grey", "LA": "Grey + alpha", "RGB": "RGB", "RGBA": "RGB + alpha"}
        # A CMYK file read as RGB said only "RGB", beside a note saying it was CMYK.
        model = colour.get(src.mode, src.mode)
        if src.converted_from:
            model += f" (converted from {src.converted_from})"
        self.set("Colour", model + shown_text(view.display))
        meta = [n for n, v in (("EXIF", src.exif), ("XMP", src.xmp), ("IPTC", src.iptc),
                               ("comment", src.comment), ("ICC profile", src.icc_profile)) if v]
        if src.png_text:
            meta.append("PNG text " + ", ".join(f.key for f in src.png_text))
        if exif_has_gps(src.exif) or xmp_has_gps(src.xmp):  # kept unless told otherwise
            meta.append("GPS location")
        if src.dpi:
            meta.append(f"{dpi_text(src.dpi[0])} dpi")
        self.set("Metadata", ", ".join(meta) if meta else "none")
        # What the reader warned of (only a TIFF's first page, say): "–" when nothing.
        self.set("Note", " ".join(w[0].upper() + w[1:] + "." for w in src.warnings) or "–")
        q = src.jpeg_quality
        self.set("JPEG quality", f"≈ {q}  (estimate)" if q is not None else "not a JPEG")
        self.jpeg_note.setVisible(q is not None)

    def show_result(self, view: ViewData) -> None:
        r = view.result
        if r is None:
            return
        score = f" · score {r.exit_result(r.chosen).score:.3f}" \
            if score_decides(r.exit_reason) else ""  # a score that decided nothing: no headline
        self.set("Chosen exit", f"Exit {r.chosen}{score}")
        self.tiles_shown = False
        self.set("Why this exit", why_text(r, view.stopped_after))
        # Stopped before an exit was chosen: the row says why there is none
        self.keys["Why this exit"].setText("Why this exit" if view.stopped_after is None
                                           else "Why no exit")
        self.fields["Why this exit"].setToolTip(r.policy.describe() if r.policy else "")
        mode = r.mode if isinstance(r.mode, str) else f"forced exit {r.mode}"
        if isinstance(r.mode, int):  # forced: no rule chose (it said "the gate decides")
            self.set("Threshold", "– (not used: the exit is forced)")
        elif r.threshold is None:
            fixed = r.policy is not None and r.policy.rule == "fixed"
            self.set("Threshold", "– (the weights' fixed exit)" if fixed
                     else "– (the learned gate decides)")
        elif r.decision is not None and r.decision.signal == "assessor":
            passed = "reached" if r.min_exit == 1 else f"reached, from exit {r.min_exit} on"
            self.set("Threshold", f"{r.threshold:.3f} ({passed})" if r.mode in ("auto", "all")
                     else f"{r.threshold:.3f}")
        else:
            self.set("Threshold", f"{r.threshold:.3f} (not reached: last exit used)"
                     if r.mode in ("auto", "all") else f"{r.threshold:.3f}")
        self.set("Mode", str(mode))
        if view.stopped_after is not None:  # no rule chose: none is said to have
            k = view.stopped_after
            self.set("Chosen exit", f"None: stopped after exit {k}")
            self.set("Threshold", "– (not applied: stopped before an exit was chosen)")
            self.set("Mode", f"{mode}, stopped after exit {k}")
        self.set("Device", r.device)
        self._set_tiling(tiling_text(r), tiling_tip(r))
        if view.saved:  # read from a batch's outputs: what the batch reported, no timings
            files = ", ".join(p.name for p in view.saved.values())
            self.set("Threshold", "as the batch ran")
            self.set("Mode", f"saved output ({files}), not computed again")
            self.set("Device", "–")
            self._set_tiling("–")
        self._clear_table()
        runs = view.run_of
        for e in r.exits:
            row = e.exit - 1
            gmacs, summed = stage_gmacs_text(view, e)
            run = runs.get(e.exit)
            for col, text in enumerate((fmt_ms(e.time_ms + e.iqa_ms), f"{e.score:.3f}",
                                        gmacs)):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                tips = []
                if summed and col != 1:
                    tips.append(f"Stages 1–{e.exit} together, as the exit card's Σ: this "
                                f"stage alone is not known (the run made no exit before it "
                                f"apart: a tiled photo's)")
                if run:  # the rows of two runs, one under the other: said which
                    tips.append(f"Exit {e.exit} was made by the {ORDINALS[run]} run of the "
                                f"picture: its stage in that run")
                item.setToolTip("\n\n".join(tips))
                self.table.setItem(row, col, item)
        if view.saved:
            for name in ("Network", "IQA", "Other", "Total", "Computed"):
                self.set(name, "–")
            return
        self._show_cost(view)

    def _show_cost(self, view: ViewData) -> None:
        """What the chosen exit cost in the run that made it; and, when more exits were
        computed than it needed, what was spent in all (:func:`computed_text`)."""
        r = view.result
        assert r is not None
        cost = view.cost_to(r.chosen)
        self.set("Network", fmt_ms(cost.network_ms))
        self.set("IQA", fmt_ms(cost.iqa_ms))
        # The rest of the run (the input made ready, the output finished): the exit cards'
        # sums are network and IQA only, and the total read as if it disagreed with them.
        other = cost.other_ms
        self.set("Other", f"{fmt_ms(other)} (input and output)" if other >= 1 else "–")
        # The run that made it, when not the first (Compute all after a Stop, or on a
        # tiled picture): its Total is that run's, as its card's Σ is
        run = view.run_of.get(r.chosen)
        within = f", {ORDINALS[run]} run" if run else ""
        self.set("Total", f"{fmt_ms(cost.ms)} · {fmt_gmacs(cost.gmacs)} (to exit "
                          f"{r.chosen}{within})")
        self.set("Computed", computed_text(view))


def stage_gmacs_text(view: ViewData, e: ExitResult) -> tuple[str, bool]:
    """Exit ``e``'s GMAC cell in the per-stage table, and whether it is the stages up to
    it together: its own stage's where known, else its card's Σ figure, marked so (a
    tiled photo's chosen exit read "Σ 1.08 TMAC" on its card and "–" here)."""
    own = view.stage_gmacs(e.exit)
    if not math.isnan(own):
        return f"{own:.1f}", False
    if math.isnan(e.gmacs):  # read from a saved output: not known
        return "–", False
    return f"Σ {e.gmacs:.0f}" if e.gmacs >= 100 else f"Σ {e.gmacs:.1f}", True


ORDINALS = ("first", "second", "third", "fourth", "fifth")  # each run made an exit at least


def computed_text(view: ViewData) -> str:
    """The Info panel's "Computed": what was spent in all. Only what the chosen exit
    needed; or its run's exits, time and compute when it made more (a forced exit after
    "compute all"); and, when later runs of the whole picture added exits (a tiled one's,
    which no kept state continues), each run's exits and cost, and their sum."""
    r = view.result
    assert r is not None
    added = view.run_of
    own = [e for e in r.exits if e.exit not in added]
    if not view.extra_runs:
        if view.stopped_after is not None:
            return (f"{exits_text(e.exit for e in own)}, then stopped: {fmt_ms(r.total_ms)}"
                    f" · {fmt_gmacs(max(e.gmacs for e in own))}")
        if all(e.exit <= r.chosen for e in own):
            return "only what the chosen exit needed"
        return (f"exits 1–{max(e.exit for e in own)}: {fmt_ms(r.total_ms)} · "
                f"{fmt_gmacs(max(e.gmacs for e in own))}")
    runs = [(exits_text(e.exit for e in own), r.total_ms, max(e.gmacs for e in own))]
    runs += [(exits_text(run.exits), run.total_ms, run.gmacs) for run in view.extra_runs]
    each = "; ".join(f"{ORDINALS[n]} run ({which}): {fmt_ms(ms)} · {fmt_gmacs(g)}"
                     for n, (which, ms, g) in enumerate(runs))
    total_ms, total_g = sum(ms for _, ms, _ in runs), sum(g for _, _, g in runs)
    return f"{fmt_ms(total_ms)} · {fmt_gmacs(total_g)} in all: {each}"


def shown_text(display: Display | None) -> str:
    """How the viewer shows the image, when not as its pixels are (saved files are not
    changed): after the colour mode, "" when nothing is to be said."""
    if display is None:
        return ""
    notes = []
    if display.transform is not None:
        notes.append(f"shown converted from its colour profile ({display.profile}) to sRGB")
    elif display.unreadable:
        notes.append("its colour profile could not be read: shown unconverted")
    if display.alpha is not None:
        notes.append("transparency shown over a checkerboard")
    return "".join(f"; {n}" for n in notes)


def tiling_text(r: EnhanceResult) -> str:
    """How the picture was cut, and, with per-tile exits, how many tiles took each exit;
    where exit 1's stage is shown, that it holds the sample tiles' walk (exit 1 read as
    the costliest stage: 186 GMAC against 24-68 for the others on four tiles)."""
    if not r.tiled:
        return "whole image"
    if r.tile_exits is None:
        first = bool(r.exits) and r.exits[0].exit == 1
        return f"{r.tiles} tiles" + ("; exit 1's stage holds the sample tiles' walk"
                                     if first else "")
    counts = ", ".join(f"{n} at exit {k}" for k, n in r.tile_exits.histogram.items() if n)
    return f"{r.tiles} tiles, each to its own exit: {counts}"


def tiling_tip(r: EnhanceResult) -> str:
    """Why a picture is tiled, and what that means for its exits, in plain words (""
    for a whole one)."""
    if not r.tiled:
        return ""
    side = f" of up to {r.tile_size} × {r.tile_size} pixels" if r.tile_size else ""
    return ("This picture has more pixels than the engine runs in one piece, so it is cut "
            f"into overlapping tiles{side}, run one or a few at a time: that keeps the "
            "memory it needs bounded, however large the picture.\n\n"
            "Under auto (or a forced exit) only the chosen exit is put together from the "
            "tiles: the other exits, those before it too, are not kept along the way. They "
            "are made only on request (Compute all exits, or saving one), by a second run "
            "of the whole picture from exit 1.")


def why_text(r: EnhanceResult, stopped_after: int | None = None) -> str:
    """Why auto stopped where it did, in plain words; or, for a run the user stopped
    after exit ``stopped_after``, that nothing chose an exit and what Save writes."""
    if stopped_after is not None:
        return (f"You stopped the run after exit {stopped_after}, before an exit was "
                f"chosen. Save writes the exit shown on the B side, its file named for "
                f"that exit; Process again runs the image from the start.")
    d = r.decision
    if d is None:
        return "–"
    if isinstance(r.mode, int):
        return f"Exit {r.mode} was asked for (auto mode would decide by itself)."
    lead = "Auto would stop" if r.mode == "all" else "Auto stopped"
    text = d.text[0].upper() + d.text[1:]
    return f"{lead} at exit {r.chosen}. {text}."
