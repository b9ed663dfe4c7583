"""Centre of the window: compare bar, compare view and exit strip, kept in step.

The photo keeps at least :data:`PHOTO_SHARE` of the panel's height: a short panel gets a
compact exit strip at its least (the strip shortens its cards itself). The user may drag
the strip anywhere between that least and its full height, never to nothing nor over the
photo's share; the height dragged to is kept (:attr:`ComparePanel.strip_wanted`, stored
with the window's layout).

Which picture sits on each side is chosen here: by default A is the input and B follows
the newest exit while an image runs, then the chosen exit when it is done. Once the user
picks a side (exit card or combo box) that choice sticks for the image.

A tiled photo's exits come only at the end of its run; meanwhile B shows a preview of
the result (:class:`TilePreview`): its input as shown, each tile pasted over it as it is
done; B's combo box says so, and the card of the tiles' exit says how far the run is. It
goes when the run ends, whichever way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PySide6.QtCore import QRect, QSignalBlocker, Qt, Signal
from PySide6.QtGui import QResizeEvent, QStandardItemModel
from PySide6.QtWidgets import (
    QComboBox,
    QLabel,
    QSizePolicy,
    QSplitter,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from rbqe.arch import NUM_EXITS
from rbqe.engine import ExitResult
from rbqe_studio.convert import Picture
from rbqe_studio.exits import INPUT, ExitStrip
from rbqe_studio.jobs import TilePatch, ViewData
from rbqe_studio.state import exits_text, score_decides
from rbqe_studio.viewer import DIFF, SIDE, SPLIT, TOGGLE, CompareView

NAMES = ["Input"] + [f"Exit {k}" for k in range(1, NUM_EXITS + 1)]
PREVIEW = len(NAMES)  # B's combo box item while a tile preview may show there
PHOTO_SHARE = 0.55  # of the panel's height, at least, before the strip gets its full height


@dataclass
class TilePreview:
    """What B shows while a tiled photo's tiles come in: its input as shown, with each
    tile done pasted over it (a later tile over an earlier one's overlap, where the
    result blends the two). One picture per photo shown, painted in place.

    Attributes:
        picture: The input's picture, copied once, with the tiles pasted.
        done: Tiles the run has done; ``total``: tiles in all.
        pasted: Tiles pasted here: fewer than ``done`` when the photo was shown again
            while it ran (the tiles done meanwhile are not kept).
        exits: The exits the tiles pasted come from (several with per-tile exits).
    """

    picture: Picture
    done: int = 0
    total: int = 0
    pasted: int = 0
    exits: set[int] = field(default_factory=set)

    def paste(self, patch: TilePatch) -> QRect:
        """Pastes ``patch``; returns the area it covers, in the photo's pixels."""
        y0, y1, x0, x1 = patch.box
        self.picture.paste(patch.levels, x0, y0)
        self.done, self.total = patch.done, patch.total
        self.pasted += 1
        self.exits.add(patch.exit)
        return QRect(x0, y0, x1 - x0, y1 - y0)

    @property
    def label(self) -> str:
        """B's label: how far the run is (short: side by side, a pane of a 1200-pixel
        window cut a longer one; :data:`PREVIEW_TIP` says the rest)."""
        shown = "" if self.pasted == self.done else f" ({self.pasted} shown)"
        return f"Preview · {self.done}/{self.total} tiles{shown}"

    @property
    def name(self) -> str:
        """B's combo box item: "Preview (exit 4)"."""
        return f"Preview ({exits_text(self.exits)})"


# The compare view's tooltip while B is a preview: what its short label leaves out.
PREVIEW_TIP = ("B is a preview of the result: each tile as it is done, pasted over the "
               "input. Where tiles overlap, the result blends them; the preview does not, "
               "so a seam may show until the result replaces it.")


class ComparePanel(QWidget):
    sides_changed = Signal(int, int)
    # The bytes its previews of the photo hold (:meth:`held`), when that changes: the
    # window counts them in the result cache's budget.
    held_changed = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = CompareView()
        self.strip = ExitStrip()
        self.data: ViewData | None = None
        self.exits: dict[int, ExitResult] = {}
        self.a, self.b = INPUT, INPUT
        self._user_b = self._user_a = False
        self.busy = False
        self.note = ""  # why the B side is empty (no model), instead of "Enhancing…"
        self.preview: TilePreview | None = None  # B while a tiled run's tiles come in
        self._held = 0.0  # what held() said last

        # A tool bar, not a row of widgets: when the centre is narrow, what does not fit
        # moves into its » menu instead of setting a minimum width for the whole window.
        bar = self.bar = QToolBar()
        bar.setObjectName("compareBar")
        bar.setMovable(False)
        self.mode_buttons: dict[str, QToolButton] = {}
        for mode, text, tip in ((SPLIT, "Split", "Split view with a draggable line (S)"),
                                (SIDE, "Side by side", "Two panes, one zoom (D)"),
                                (TOGGLE, "A/B", "One pane; B key or hold Space flips (T)"),
                                (DIFF, "Difference", ("|A − B| amplified as a heat map: "
                                                      "what the restoration changed (V)"))):
            button = QToolButton()
            button.setText(text)
            button.setToolTip(tip)
            button.setCheckable(True)
            button.clicked.connect(lambda _=False, m=mode: self.view.set_mode(m))
            self.mode_buttons[mode] = button
            bar.addWidget(button)
        bar.addSeparator()
        self.combo_a, self.combo_b = QComboBox(), QComboBox()
        for label, combo in (("A", self.combo_a), ("B", self.combo_b)):
            combo.addItems(NAMES)
            combo.setMinimumContentsLength(6)
            # B's grows for its preview item (and shrinks back), rather than cut it.
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
            tag = QLabel(label)
            tag.setObjectName("sideA" if label == "A" else "sideB")
            bar.addWidget(tag)
            bar.addWidget(combo)
        self.combo_a.activated.connect(lambda i: self.pick(i, "a"))
        self.combo_b.activated.connect(self._combo_b_picked)
        spring = QWidget()
        spring.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        bar.addWidget(spring)
        self.zoom_label = QLabel("")
        self.zoom_label.setObjectName("muted")
        self.zoom_label.setMinimumWidth(56)
        self.zoom_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        fit, one = QToolButton(), QToolButton()
        fit.setText("Fit")
        fit.setToolTip("Zoom to fit (F, Ctrl+0)")
        one.setText("1:1")
        one.setToolTip("Actual pixels (Ctrl+1)")
        fit.clicked.connect(self.view.fit)
        one.clicked.connect(self.view.actual_size)
        bar.addWidget(self.zoom_label)
        bar.addWidget(fit)
        bar.addWidget(one)

        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.view)
        self.splitter.addWidget(self.strip)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 0)
        self.splitter.setCollapsible(0, False)
        self.splitter.setCollapsible(1, False)  # dragged down, it turns compact instead
        self.splitter.splitterMoved.connect(self._strip_dragged)
        # Queued: it is said from within the strip's own resize.
        self.strip.full_height_changed.connect(self.fit_strip,
                                               Qt.ConnectionType.QueuedConnection)
        self.strip_wanted: int | None = None  # the strip's height the user dragged to
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(bar)
        lay.addWidget(self.splitter, 1)

        self.strip.picked.connect(self.pick)
        self.view.diff_changed.connect(self._note_held)
        self.view.zoom_changed.connect(self._show_zoom)
        self.view.mode_changed.connect(self._sync_mode_buttons)
        self._sync_mode_buttons(self.view.mode)
        self._refresh_combos()

    # -- layout ------------------------------------------------------------------------
    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)  # (the splitter has its new size already)
        self.fit_strip()

    def strip_bounds(self) -> tuple[int, int]:
        """The strip's least and most height: its compact least, and its full height
        where the photo keeps :data:`PHOTO_SHARE` of the panel (else what is left)."""
        least = self.strip.minimumHeight()
        room = sum(self.splitter.sizes()) - round(PHOTO_SHARE * self.height())
        return least, max(least, min(self.strip.full_height(), room))

    def fit_strip(self) -> None:
        """Give the strip the height the user dragged it to, else its full height where
        it fits, else its compact least (text cards need no more: the photo gets the
        rest); within :meth:`strip_bounds` either way, which the splitter keeps too."""
        sizes = self.splitter.sizes()
        total = sum(sizes)
        if total <= 0 or len(sizes) != 2:
            return
        least, most = self.strip_bounds()
        self.strip.setMaximumHeight(most)  # a drag stops there
        full = self.strip.full_height()
        wanted = self.strip_wanted if self.strip_wanted is not None else \
            full if full <= most else least
        strip = max(least, min(wanted, most))
        if strip != sizes[1]:
            self.splitter.setSizes([total - strip, strip])

    def _strip_dragged(self, *_pos: int) -> None:
        height = self.splitter.sizes()[1]
        # Dragged up to its full height: no wish, so that a roomier window gets it full.
        self.strip_wanted = None if height >= self.strip.full_height() else height

    # -- data in ---------------------------------------------------------------------
    def held(self) -> float:
        """The bytes held by the previews of the photo shown, besides its own pictures
        (which the result cache counts): a tiled run's preview (a copy of its input's
        picture, as large) and the difference heat map (as large again)."""
        tile = self.preview.picture.nbytes if self.preview is not None else 0
        return float(tile + self.view.diff_bytes)

    def _note_held(self) -> None:
        held = self.held()
        if held != self._held:
            self._held = held
            self.held_changed.emit(held)

    def clear(self) -> None:
        self.note = ""
        self.preview = None
        self.data, self.exits = None, {}
        self.a, self.b = INPUT, INPUT
        self._user_a = self._user_b = False
        self.strip.clear()
        self.view.set_pictures(None, "", None, "")
        self._show_zoom()
        self._refresh_combos()
        self._note_held()

    def show_unreadable(self, message: str) -> None:
        """The viewed file could not be read: say so in the view and on the input card."""
        self.clear()
        self.strip.set_unreadable()
        self.view.set_message(message)
        self._show_zoom()

    def show_loaded(self, data: ViewData) -> None:
        self.clear()
        self.data = data
        src = data.loaded
        q = f"JPEG q≈{src.jpeg_quality}" if src.jpeg_quality is not None else src.format
        w, h = src.size
        self.strip.set_input(data.input_thumb, (f"{w} × {h}", q))
        self.strip.set_running(1)
        self._apply()

    def add_exit(self, e: ExitResult, data: ViewData) -> None:
        thumb = data.thumbs.get(e.exit)
        if thumb is None:  # its pictures are still being made (the engine adds an exit to
            return  # the result first): it comes when they are, with its own ExitReady
        if data is not self.data:
            self.show_loaded(data)
        self.exits[e.exit] = e
        cum = data.cum_ms(e.exit, self.exits.values())  # within the run that made it
        self.strip.set_exit(e.exit, thumb, e.score, cum, e.gmacs, e.decision,
                            run=data.run_of.get(e.exit, 0) + 1)
        if self.busy:
            self.strip.set_running(e.exit + 1)
        if not self._user_b:
            self.b = e.exit
        self._apply()

    def add_tile(self, patch: TilePatch, data: ViewData) -> None:
        """A tile of the photo shown is done: pasted over the preview of its result (made
        from its input at the first tile), which B shows while no exit is there."""
        if data is not self.data or not self.busy:
            return  # another photo's, or late: its run has ended
        if patch.base is not None:  # a run's first, a retry's (a new grid), or the first
            self.preview = TilePreview(patch.base)  # since the photo was viewed again
        elif self.preview is None:  # sent before the photo was left and viewed again:
            return  # the worker's next tile brings a base
        area = self.preview.paste(patch)
        self.strip.set_tiles(patch.exit, patch.done, patch.total)
        self._apply()  # its label counts the tiles (only the label is painted again)
        self.view.area_changed(self.preview.picture, area)

    def drop_preview(self) -> None:
        """The run the preview belongs to is superseded (Process again, a new mode or
        threshold): B no longer shows it."""
        if self.preview is not None:
            self.preview = None
            self._apply()

    def show_finished(self, data: ViewData) -> None:
        r = data.result
        if r is None:
            return
        self.preview = None  # the result instead
        if data is not self.data:
            self.show_loaded(data)
        for e in r.exits:  # all of them: a new choice also changes each exit's verdict
            self.add_exit(e, data)
        # First: a card left "computing…" (a stopped Compute all's) then reads as the
        # others after the chosen exit do ("not needed"), not "not computed".
        self.clear_running()
        if data.stopped_after is not None:  # no exit chosen: its last one shown, unmarked
            self.strip.set_stopped()
        else:
            self.strip.set_chosen(r.chosen, auto=r.mode in ("auto", "all"))
        if not self._user_b:
            self.b = r.chosen
        self._apply()

    def set_unavailable(self, note: str) -> None:
        """Say on the B side why nothing is computed (the model could not be loaded)."""
        self.note = note
        self._apply()

    def set_busy(self, busy: bool) -> None:
        self.busy = busy
        if busy:
            self.note = ""
        if not busy:
            self.clear_running()
            if self.preview is not None:  # stopped, failed: what shows without one
                self.preview = None
                self._apply()
        elif self.exits:
            self.strip.set_running(max(self.exits) + 1)

    def clear_running(self, tiles: bool = True) -> None:
        """No card says "computing…" (a tiled image's exits come all at the end: exit 1
        said it for the whole run); with ``tiles``, nor the cards of a tiled run's tiles
        (it has ended)."""
        states = ("running", "tiling") if tiles else ("running",)
        for card in self.strip.cards[1:]:
            if card.data.state in states:
                card.set_data(type(card.data)(card.data.title))

    # -- choosing sides ----------------------------------------------------------------
    def _combo_b_picked(self, index: int) -> None:
        if index == PREVIEW:  # back to the preview, from the input picked there
            self.b, self._user_b = INPUT, False
            self._apply()
        else:
            self.pick(index, "b")

    def pick(self, index: int, side: str) -> None:
        if index != INPUT and index not in self.exits:
            return
        if side == "a":
            self.a, self._user_a = index, True
        else:
            self.b, self._user_b = index, True
        self._apply()

    def swap(self) -> None:
        self.a, self.b = self.b, self.a
        self._user_a = self._user_b = True
        self._apply()

    def _picture(self, index: int) -> Picture | None:
        if self.data is None:
            return None
        if index == INPUT:
            return self.data.input_pic
        return self.data.pictures.get(index)

    def label(self, index: int) -> str:
        if index == INPUT:
            return "Input"
        e = self.exits.get(index)
        # The score only where a score threshold chose the exit shown (as the status line
        # says it): under the learned gate "A · Exit 1 · 0.657" beside "B · Exit 5 ·
        # 0.562" read as if the weaker exit were the better one.
        result = self.data.result if self.data is not None else None
        decides = e is not None and result is not None and score_decides(result.exit_reason)
        return f"Exit {index} · {e.score:.3f}" if decides else f"Exit {index}"

    def _waiting(self) -> bool:
        """Whether B stands in for the result to come, or says why none comes: no exit on
        either side, the photo running or a note set."""
        return self.data is not None and self.b == INPUT and self.a == INPUT and \
            (self.busy or bool(self.note))

    def _preview_offered(self) -> TilePreview | None:
        """The tile preview B may show (B's combo box offers it): the user's pick of the
        input there wins."""
        return self.preview if self._waiting() and not self.note else None

    def _apply(self) -> None:
        a_pic, b_pic = self._picture(self.a), self._picture(self.b)
        b_label = self.label(self.b)
        live = False
        preview = self._preview_offered()
        if preview is not None and not self._user_b:  # a tiled run's tiles so far
            b_pic, b_label, live = preview.picture, preview.label, True
        elif preview is None and self._waiting():
            b_pic, b_label = None, self.note or "Enhancing…"
        self.view.set_pictures(a_pic, "A · " + self.label(self.a), b_pic,
                               f"B · {b_label}" if b_pic is not None else b_label,
                               b_live=live)
        self.view.setToolTip(PREVIEW_TIP if live else "")
        self._show_zoom()  # a picture of the old one's size arrives without a zoom change
        self.strip.set_sides(self.a, -1 if live else self.b)  # the preview is no card's
        self._refresh_combos()
        self._note_held()  # a preview made or let go, a heat map of pictures not shown
        self.sides_changed.emit(self.a, self.b)

    def _refresh_combos(self) -> None:
        preview = self._preview_offered()
        self._refresh_preview_item(preview)
        b = PREVIEW if preview is not None and not self._user_b else self.b
        for combo, value in ((self.combo_a, self.a), (self.combo_b, b)):
            with QSignalBlocker(combo):
                model = combo.model()
                assert isinstance(model, QStandardItemModel)
                for i in range(len(NAMES)):
                    item = model.item(i)
                    item.setEnabled(i == INPUT or i in self.exits)
                combo.setCurrentIndex(value)

    def _refresh_preview_item(self, preview: TilePreview | None) -> None:
        """B's combo box has an item for ``preview`` while B may show it, and none after
        ("Input" there contradicted the tiles B showed)."""
        combo = self.combo_b
        with QSignalBlocker(combo):
            if preview is None:
                if combo.count() > PREVIEW:
                    combo.removeItem(PREVIEW)
            elif combo.count() == PREVIEW:
                combo.addItem(preview.name)
            elif combo.itemText(PREVIEW) != preview.name:
                combo.setItemText(PREVIEW, preview.name)

    def _show_zoom(self, *_scale: float) -> None:
        """Zoom as the user sees it: screen pixels per image pixel (1:1 is 100 %, also on
        a high-DPI screen, where the view's scale counts device-independent pixels).

        Blank while no picture is shown (none yet, or a file that could not be read): the
        view keeps the last image's zoom, and any resize re-announces it.
        """
        view = self.view
        shown = not view.message and (view.a is not None or view.b is not None)
        self.zoom_label.setText(f"{100 * view.state.scale * view.devicePixelRatioF():.0f}%"
                                if shown else "")

    def _sync_mode_buttons(self, mode: str) -> None:
        for m, button in self.mode_buttons.items():
            button.setChecked(m == mode)
