"""The exit strip: the input and all five exits as cards, filled in as they arrive.

Each exit card shows its thumbnail, quality score, cumulative time and GMACs; the exit
``auto`` chose carries a badge. In a compact strip (a short window) the cards are text
only and narrower: the name, score and times, the badges on a line of their own.
Clicking a card shows it on the B (right) side of the compare view; right-click or
Ctrl+click puts it on the A (left) side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PySide6.QtCore import QEvent, QObject, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetrics,
    QImage,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
)
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from rbqe.exit_policy import Decision, may_stop
from rbqe.model import NUM_EXITS
from rbqe_studio.state import fmt_gmacs, fmt_ms
from rbqe_studio.widgets import ElidedLabel

INPUT = 0
SCORE_TIP = ("The number is the blind quality score (0-1; higher: fewer blocks and less "
             "blur as the assessor sees them). It decides only under a score-threshold rule "
             "(the weights' own, or one set in Settings), where it is green at an exit the "
             "rule may stop at; the learned gate reads it among other signals, and exit 1 "
             "often scores high although it is the weakest.")
# What a card's Σ lines count: less than the photo's time said elsewhere (a 12 MP photo's
# card read 91.1 s, its status line 92.9 s).
SUM_TIP = ("Σ: the network's and the scoring's time, and the compute, up to this exit in "
           "the run that made it. The photo's time in the status bar, its queue row and "
           "the Info panel's Total also counts reading the input and finishing the result.")
# A card of an exit a later run made ("run 2" after its Σ).
RUN_TIP = ("\n\nRun {n}: this exit was made by a later run of the whole picture from exit "
           "1 (Compute all or Save all, after a Stop or on a tiled picture), its Σ that "
           "run's own. The cards of the first run's exits keep the first run's; the Info "
           "panel's Computed row gives each run's time, and their sum.")
ACCENT = QColor("#4c9be8")
GOOD = QColor("#5fc08a")
WEAK = QColor("#e0a948")
NEUTRAL = QColor(255, 255, 255, 170)  # a score that decides nothing (the gate's, forced)
A_COLOR = QColor("#e8a33d")
B_COLOR = QColor("#4c9be8")
CARD_HEIGHT = 190  # a card's height where the compare panel has room (a 75-px thumbnail)
CARD_MIN_HEIGHT = 104  # its least, compact (text only), in a short panel: the photo's room
SCROLL_BAR_ROOM = 16  # below the cards, for the row's scroll bar when narrow
LINE = 15  # a line of the chosen card's reason (small font), in a card's height
THUMB_MIN = 40  # a card's thumbnail gives up reason lines before it shrinks below this
HEAD_SPACING = 14  # between the strip header's title, rule, mode and button
CARD_MIN_WIDTH = 108  # six cards and their gaps fit a 1280-px window; narrower, the row scrolls
COMPACT_MIN_WIDTH = 68  # a compact card's: all six fit the centre of a 900-px window
CARD_SPACING, COMPACT_SPACING = 6, 4  # between cards
PAD = 5  # a compact card's text from its border
# What a card without its picture says, on a full card and on a compact one.
NOTES = {"running": "computing…", "skipped": "not needed\n(auto stopped earlier)",
         "stopped": "not computed\n(you pressed Stop)", "unreadable": "could not be read"}
COMPACT_NOTES = {"running": "computing…", "skipped": "not needed",
                 "stopped": "not computed (Stop)", "unreadable": "could not be read"}


@dataclass
class CardData:
    title: str
    thumb: QImage | None = None
    lines: tuple[str, ...] = ()
    score: float | None = None
    state: str = "empty"  # empty | running | tiling | ready | skipped | stopped | unreadable
    chosen: bool = False
    decision: Decision | None = None  # the exit policy's verdict at this exit
    reason: str = ""  # the chosen card's: why auto stopped there, in a few words
    tiles: tuple[int, int] | None = None  # tiling: the run's tiles (done, total)
    run: int = 1  # the run that made it, its Σ that run's: 2, a later run from exit 1


@dataclass
class Part:
    """One thing drawn on a compact card: its ``kind`` (title, score, line, note or
    badge), box and text."""

    kind: str
    box: QRectF
    text: str
    color: QColor
    fill: QColor | None = None  # a badge's


def card_reason(d: Decision) -> str:
    """Why auto ended its walk at this exit, short enough for a card (the tooltip and the
    Info panel say it in full)."""
    v = d.values
    if d.signal == "gate":
        return f"stopped: gate predicts < {v['tau_db']:g} dB more"
    if d.signal == "assessor":
        return f"stopped: score ≥ {v['threshold']:.3f}"
    if d.signal == "last exit":  # ("went on:" read as going on past the last exit)
        if "threshold" in v:
            start = v.get("min_exit", 1)  # earlier exits were not asked: they may score more
            asked = ("no score reached" if start <= 1 else
                     f"exit {NUM_EXITS}'s score did not reach" if start >= NUM_EXITS
                     else f"no score of exits {start}-{NUM_EXITS} reached")
            return f"last exit: {asked} {v['threshold']:.3f}"
        return "last exit: the gate saw more to gain at each before"
    if d.signal == "fixed":
        return "the weights always take this exit"
    return d.short


def text_room(height: float) -> int:
    """Height a card ``height`` px tall (inside its border) keeps below its thumbnail:
    title, two lines and three reason lines (112 px), or fewer reason lines where three
    would leave the thumbnail under :data:`THUMB_MIN`."""
    reasons = 3
    while reasons > 1 and height - (67 + LINE * reasons) < THUMB_MIN:
        reasons -= 1
    return 67 + LINE * reasons


def passes_rule(d: Decision) -> bool:
    """Whether the exit rule itself said "good enough" here: reaching exit 5, or an exit
    auto may not stop at, is not a pass, even though the walk ends there."""
    return d.stop and d.signal in ("gate", "assessor", "fixed")


def fit_text(fm: QFontMetrics, text: str, box: QRectF) -> str:
    """``text`` as it fits ``box`` word-wrapped; when even wrapped it does not, the lines
    that fit (one at least, joined by newlines), the last elided with "…" (the card's
    tooltip has it whole)."""
    flags = Qt.AlignmentFlag.AlignLeft | Qt.TextFlag.TextWordWrap
    if fm.boundingRect(box.toRect(), flags, text).height() <= box.height():
        return text
    width = int(box.width())
    room = max(1, int((box.height() - fm.height()) // fm.lineSpacing()) + 1)
    lines: list[str] = []
    words = text.split()
    while words and len(lines) < room - 1:  # greedy wrap, as Qt's at word boundaries
        n = 1
        while n < len(words) and fm.horizontalAdvance(" ".join(words[:n + 1])) <= width:
            n += 1
        lines.append(" ".join(words[:n]))
        words = words[n:]
    if words:
        lines.append(" ".join(words))
    # A word wider than the box (no line holds it) is cut too, not wrapped mid-word.
    return "\n".join(fm.elidedText(line, Qt.TextElideMode.ElideRight, width)
                     for line in lines)


class ExitCard(QWidget):
    """One clickable card; painted by hand so it stays compact and legible."""

    picked = Signal(int, str)  # index, "a" | "b"

    def __init__(self, index: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.index = index
        self.data = CardData("Input" if index == INPUT else f"Exit {index}")
        self.threshold: float | None = None
        self.min_exit = 1  # auto cannot stop before this exit, whatever the score
        self.chosen_by_auto = True  # the chosen card's badge: AUTO, or FORCED for exit k
        self.side = ""  # "a", "b" or "ab"
        self.compact = False  # text only: no thumbnail, the badges on a line of their own
        self._hover = False
        self.setMinimumWidth(CARD_MIN_WIDTH)
        self.setMaximumWidth(240)
        self.setFixedHeight(CARD_HEIGHT)  # the strip sets it: lower in a short panel
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip("Click: show on the right (B)\nRight-click or Ctrl+click: show on the "
                        "left (A)")

    def set_data(self, data: CardData) -> None:
        self.data = data
        self.update()

    def set_compact(self, compact: bool) -> None:
        """Text only, and narrower: a thumbnail under :data:`THUMB_MIN` px showed nothing,
        and the AUTO badge covered most of it."""
        if compact != self.compact:
            self.compact = compact
            self.setMinimumWidth(COMPACT_MIN_WIDTH if compact else CARD_MIN_WIDTH)
            self.update()

    def enterEvent(self, event) -> None:
        self._hover = True
        self.update()

    def leaveEvent(self, event) -> None:
        self._hover = False
        self.update()

    def mousePressEvent(self, e: QMouseEvent) -> None:
        if self.data.state != "ready":
            return
        a_side = e.button() == Qt.MouseButton.RightButton or (
            e.button() == Qt.MouseButton.LeftButton
            and e.modifiers() & Qt.KeyboardModifier.ControlModifier)
        if a_side or e.button() == Qt.MouseButton.LeftButton:
            self.picked.emit(self.index, "a" if a_side else "b")

    def score_passes(self) -> bool:
        """Whether the score is drawn green: the exit rule said "good enough" here."""
        d = self.data
        if d.decision is not None:  # whatever the policy (assessor or learned gate)
            return passes_rule(d.decision)
        return (d.score is not None and self.threshold is not None
                and may_stop(self.index, d.score, self.threshold, self.min_exit))

    def score_colour(self) -> QColor:
        """Green or amber where the score decides (a score threshold: it reached it or
        not); else neutral: under the learned gate a green 0.571 beside an amber 0.596
        read as "the lower score is the good one"."""
        if self.threshold is None:
            return NEUTRAL
        return GOOD if self.score_passes() else WEAK

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        d = self.data
        r = QRectF(self.rect()).adjusted(1.5, 1.5, -1.5, -1.5)
        border = ACCENT if d.chosen else QColor(255, 255, 255, 40 if not self._hover else 90)
        p.setPen(QPen(border, 2 if d.chosen else 1))
        p.setBrush(QColor("#24272c") if d.state == "ready" else QColor("#1d1f23"))
        p.drawRoundedRect(r, 8, 8)
        if self.compact:
            self._paint_parts(p, self.compact_parts())
            p.end()
            return

        # The thumbnail leaves room below for the title, two lines and up to three lines
        # of the chosen card's reason; a shorter card keeps fewer reason lines first.
        thumb = QRectF(r.left() + 6, r.top() + 6, r.width() - 12,
                       max(r.height() - text_room(r.height()), 1.0))
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor("#141518"))
        p.drawRoundedRect(thumb, 5, 5)
        if d.thumb is not None and d.state == "ready":
            img = d.thumb
            scale = min(thumb.width() / img.width(), thumb.height() / img.height())
            w, h = img.width() * scale, img.height() * scale
            target = QRectF(thumb.center().x() - w / 2, thumb.center().y() - h / 2, w, h)
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            p.drawImage(target, img)
        else:
            p.setPen(QColor(255, 255, 255, 110))
            p.drawText(thumb, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                       self.note())

        self._badges(p, thumb)
        base = QFont(self.font())
        title = QFont(base)
        title.setBold(True)
        p.setFont(title)
        p.setPen(QColor("#f0f0f0") if d.state == "ready" else QColor(255, 255, 255, 120))
        y = thumb.bottom() + 6
        p.drawText(QRectF(r.left() + 8, y, r.width() - 16, 20),
                   Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, d.title)
        if d.score is not None:
            p.setPen(self.score_colour())
            p.drawText(QRectF(r.left() + 8, y, r.width() - 16, 20),
                       Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                       f"{d.score:.3f}")
        small = QFont(base)
        small.setPointSizeF(max(7.0, base.pointSizeF() - 1))
        p.setFont(small)
        p.setPen(QColor(255, 255, 255, 170))
        body = self.text_lines(p.fontMetrics(), r.width() - 16)[:2]
        lines = [*body, d.reason] if d.reason else body
        for i, line in enumerate(lines):
            top = y + 21 + i * 16
            # The last line (the chosen card's reason) may wrap onto the room below it.
            box = QRectF(r.left() + 8, top, r.width() - 16,
                         (r.bottom() - 3 - top) if i == len(lines) - 1 else 16)
            if d.reason and i == 2:
                p.setPen(ACCENT.lighter(135))
            p.drawText(box, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop
                       | Qt.TextFlag.TextWordWrap, fit_text(p.fontMetrics(), line, box))
        p.end()

    def _fonts(self) -> tuple[QFont, QFont, QFont]:
        """The title's (bold), the lines' (a point smaller) and the badges' (both)."""
        title = QFont(self.font())
        title.setBold(True)
        small = QFont(self.font())
        small.setPointSizeF(max(7.0, small.pointSizeF() - 1))
        badge = QFont(small)
        badge.setBold(True)
        return title, small, badge

    def badges(self) -> list[tuple[str, QColor, QColor]]:
        """The card's badges, left to right: (text, fill, text colour)."""
        if self.data.state != "ready":
            return []
        out = []
        if self.data.chosen:
            # AUTO: the exit rule chose it; FORCED: the user's "always exit k" mode did.
            out.append(("AUTO" if self.chosen_by_auto else "FORCED", ACCENT, QColor("white")))
        out += [(side.upper(), color, QColor("#111"))
                for side, color in (("a", A_COLOR), ("b", B_COLOR)) if side in self.side]
        return out

    def compact_parts(self) -> list[Part]:
        """A compact card's layout, top down: the name (the score beside it where it
        fits, else below it), the card's first line (the time, or the input's size) and
        its second where it fits whole, and the badges at the bottom, wrapped onto a
        second row where one is too narrow; no thumbnail. Nothing overlaps and nothing
        leaves the card (at :data:`CARD_MIN_HEIGHT`, the first line fits above two rows
        of badges)."""
        d = self.data
        title_font, small_font, badge_font = self._fonts()
        fm_title, fm_small = QFontMetrics(title_font), QFontMetrics(small_font)
        fm_badge = QFontMetrics(badge_font)
        r = QRectF(self.rect()).adjusted(1.5 + PAD, 1.5 + PAD - 1, -1.5 - PAD, -1.5 - PAD)
        width = r.width()
        ready = d.state == "ready"

        # The badges first: they keep the bottom, the lines take what is left above.
        tall = fm_badge.height() + 4
        rows: list[list[tuple[str, QColor, QColor, float]]] = [[]]
        used = 0.0
        for text, fill, ink in self.badges():
            w = max(tall - 2, fm_badge.horizontalAdvance(text) + 6.0)
            if rows[-1] and used + 3 + w > width:
                rows.append([])
                used = 0.0
            rows[-1].append((text, fill, ink, w))
            used += (3 if len(rows[-1]) > 1 else 0) + w
        rows = [row for row in rows if row]
        parts: list[Part] = []
        bottom = r.bottom()
        for row in reversed(rows):
            x, top = r.left(), bottom - tall
            for text, fill, ink, w in row:
                parts.append(Part("badge", QRectF(x, top, w, tall), text, ink, fill))
                x += w + 3
            bottom = top - 3
        limit = bottom  # the lines stop above the badges

        title_colour = QColor("#f0f0f0") if ready else QColor(255, 255, 255, 120)
        line = fm_title.height() + 2
        y = r.top()
        score = f"{d.score:.3f}" if d.score is not None and ready else ""
        score_w = fm_title.horizontalAdvance(score)
        beside = bool(score) and (fm_title.horizontalAdvance(d.title) + 8 + score_w
                                  <= width)
        title_w = width - (score_w + 8 if beside else 0)
        parts.append(Part("title", QRectF(r.left(), y, title_w, line), fm_title.elidedText(
            d.title, Qt.TextElideMode.ElideRight, int(title_w)), title_colour))
        if score:
            if beside:
                box = QRectF(r.right() - score_w, y, score_w, line)
            else:
                y += line
                box = QRectF(r.left(), y, width, line)
            if box.bottom() <= limit:
                parts.append(Part("score", box, score, self.score_colour()))
        y += line + 1
        if ready:
            step = fm_small.height() + 2
            for i, text in enumerate(self.text_lines(fm_small, width)[:2]):
                if y + step > limit or (i and fm_small.horizontalAdvance(text) > width):
                    break  # the second whole or not at all: "Σ 19.2 GM…" reads as nothing
                parts.append(Part("line", QRectF(r.left(), y, width, step), fm_small.elidedText(
                    text, Qt.TextElideMode.ElideRight, int(width)), QColor(255, 255, 255, 170)))
                y += step
        else:
            box = QRectF(r.left(), y, width, max(limit - y, fm_small.height()))
            parts.append(Part("note", box, fit_text(fm_small, self.note(compact=True), box),
                              QColor(255, 255, 255, 110)))
        return parts

    def text_lines(self, fm: QFontMetrics, width: float) -> list[str]:
        """The card's lines as drawn ``width`` px wide in ``fm``'s font: a later run's
        Σ says so, after it where that fits ("Σ 36 ms · run 2"), else on a line of its
        own below it (cut short, it read "Σ 36 m…": no number, no run)."""
        d = self.data
        lines = list(d.lines)
        if d.run > 1 and lines:
            tag = f"run {d.run}"
            joined = f"{lines[0]} · {tag}"
            if fm.horizontalAdvance(joined) <= width:
                lines[0] = joined
            else:
                lines.insert(1, tag)
        return lines

    def note(self, compact: bool = False) -> str:
        """What the card says in its picture's place: why it has none, or, while a tiled
        run's tiles come from its exit, how far that run is."""
        d = self.data
        if d.state == "tiling" and d.tiles is not None:
            done, total = d.tiles
            return f"computing…\n{done}/{total} tiles" if compact else \
                f"computing…\n{done} of {total} tiles"
        return (COMPACT_NOTES if compact else NOTES).get(d.state, "not computed")

    def _paint_parts(self, p: QPainter, parts: list[Part]) -> None:
        title_font, small_font, badge_font = self._fonts()
        left = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
        for part in parts:
            if part.kind == "badge":
                assert part.fill is not None
                p.setFont(badge_font)
                p.setPen(Qt.PenStyle.NoPen)
                p.setBrush(part.fill)
                p.drawRoundedRect(part.box, 4, 4)
                p.setPen(part.color)
                p.drawText(part.box, Qt.AlignmentFlag.AlignCenter, part.text)
                continue
            p.setFont(title_font if part.kind in ("title", "score") else small_font)
            p.setPen(part.color)
            flags = (Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop
                     | Qt.TextFlag.TextWordWrap) if part.kind == "note" else left
            p.drawText(part.box, flags, part.text)

    def _badges(self, p: QPainter, thumb: QRectF) -> None:
        if self.data.state != "ready":
            return
        f = QFont(self.font())
        f.setBold(True)
        f.setPointSizeF(max(7.0, f.pointSizeF() - 1))
        p.setFont(f)
        x = thumb.left() + 5
        if self.data.chosen:
            # AUTO: the exit rule chose it; FORCED: the user's "always exit k" mode did.
            text = "AUTO" if self.chosen_by_auto else "FORCED"
            width = max(44, p.fontMetrics().horizontalAdvance(text) + 12)
            box = QRectF(x, thumb.top() + 5, width, 18)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(ACCENT)
            p.drawRoundedRect(box, 4, 4)
            p.setPen(QColor("white"))
            p.drawText(box, Qt.AlignmentFlag.AlignCenter, text)
        right = thumb.right() - 5
        for side, color in (("b", B_COLOR), ("a", A_COLOR)):
            if side in self.side:
                box = QRectF(right - 20, thumb.top() + 5, 20, 18)
                p.setPen(Qt.PenStyle.NoPen)
                p.setBrush(color)
                p.drawRoundedRect(box, 4, 4)
                p.setPen(QColor("#111"))
                p.drawText(box, Qt.AlignmentFlag.AlignCenter, side.upper())
                right -= 24


class ExitStrip(QWidget):
    """Header (threshold, mode, Compute all) over the input and five exit cards.

    Given less than its full height (a short window, or the splitter dragged down), it
    turns compact rather than cut: the header on one line (the title left out where the
    rule would not fit beside it) and shorter, narrower cards in text only, down to
    :data:`CARD_MIN_HEIGHT`.
    """

    picked = Signal(int, str)  # index (0 = input), "a" | "b"
    compute_all = Signal()
    full_height_changed = Signal()  # a new rule, mode or width: one line more or less

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("exitStrip")
        title = QLabel("Exit levels")
        title.setObjectName("panelTitle")
        # Elided, so that a long rule or mode cannot widen the window.
        self.threshold_label = ElidedLabel("Exit rule: loading…")
        self.threshold_label.setObjectName("threshold")
        self.mode_label = ElidedLabel("")
        self.mode_label.setObjectName("muted")
        # Takes what the rule leaves: the rule is the one that must read in full.
        self.mode_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.compute_button = QPushButton("Compute all exits")
        self.compute_button.setToolTip("Continue from the cached network stages to exit 5")
        self.compute_button.clicked.connect(self.compute_all)
        self.compute_button.setEnabled(False)
        self.title = title
        # The rule and mode sit beside the title when they fit, else on a line of their
        # own below it, or in a compact strip in the title's place (see _fit): a narrow
        # window once cut the rule to "L…".
        self.rule_box = QWidget()
        rule_row = QHBoxLayout(self.rule_box)
        rule_row.setContentsMargins(0, 0, 0, 0)
        rule_row.setSpacing(HEAD_SPACING)
        rule_row.addWidget(self.threshold_label)
        rule_row.addWidget(self.mode_label, 1)
        self.head = head = QHBoxLayout()
        head.setSpacing(HEAD_SPACING)
        head.addWidget(title)
        head.addWidget(self.rule_box, 1)
        head.addWidget(self.compute_button)
        self.below = QHBoxLayout()  # holds the rule box when the header is narrow

        self.cards = [ExitCard(i) for i in range(NUM_EXITS + 1)]
        row_widget = QWidget()
        row_widget.setObjectName("cardRow")
        row = QHBoxLayout(row_widget)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(CARD_SPACING)
        self.row = row
        for card in self.cards:
            card.picked.connect(self.picked)
            row.addWidget(card)
        self.scroll = scroll = QScrollArea()
        scroll.setObjectName("cardScroll")
        scroll.setWidget(row_widget)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setFixedHeight(CARD_HEIGHT + SCROLL_BAR_ROOM)
        # A narrower row (window, splitter, first layout) can push the chosen card out.
        scroll.viewport().installEventFilter(self)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 8, 8, 8)
        lay.setSpacing(6)
        lay.addLayout(head)
        lay.addLayout(self.below)
        lay.addWidget(scroll)
        self.rule_below = False
        self.compact = False  # the header on one line, the cards perhaps shorter
        self.card_height = CARD_HEIGHT
        self._full = self.full_height()
        self.setMinimumHeight(self.height_for(True, CARD_MIN_HEIGHT))
        self.chosen: int | None = None
        self.computed: list[int] = []  # exits in the order they arrived

    def sizeHint(self) -> QSize:
        return QSize(super().sizeHint().width(), self.full_height())

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Resize and watched is self.scroll.viewport():
            self._reveal_chosen_later()
        return super().eventFilter(watched, event)

    def _reveal_chosen(self) -> None:
        """Scroll the chosen card into view: called only when it may have left it (a new
        result, a resize), never on other updates, so a user's own scroll stays put."""
        if self.chosen is not None:
            self.scroll.ensureWidgetVisible(self.cards[self.chosen], 8, 0)

    def _reveal_chosen_later(self) -> None:
        # Once the pending layout has run: until then the cards' geometry and the scroll
        # range are stale (the scroll area adjusts them after its viewport's resize).
        QTimer.singleShot(0, self, self._reveal_chosen)

    def _fits_beside(self, title: bool = True) -> bool:
        """Whether the header has room for the whole rule and the button on one line,
        with the title and the whole mode (else without the title, and the mode perhaps
        cut after its first two words: "Mode: auto…")."""
        margins = self.layout().contentsMargins()
        room = self.width() - margins.left() - margins.right()
        need = (self.threshold_label.sizeHint().width()
                + self.compute_button.sizeHint().width() + HEAD_SPACING)
        mode = self.mode_label
        if title:
            need += self.title.sizeHint().width() + HEAD_SPACING
        if mode.text():
            start = " ".join(mode.text().split()[:2]) + "…"
            need += HEAD_SPACING + (mode.sizeHint().width() if title else min(
                mode.sizeHint().width(), mode.fontMetrics().horizontalAdvance(start)))
        return room >= need

    def _header(self, compact: bool) -> tuple[bool, bool]:
        """(the title shown, the rule on a line of its own) in a compact strip or not:
        all on one line where it fits; compact, the title left out so that it does;
        else the rule below the title, where it reads in full."""
        if self._fits_beside():
            return True, False
        if compact and self._fits_beside(title=False):
            return False, False
        return True, True

    def height_for(self, compact: bool, card_height: int) -> int:
        """The strip's height with ``card_height``-px cards: compact (the header on one
        line) or not (the rule below the title where it does not fit beside it)."""
        lay = self.layout()
        margins, spacing = lay.contentsMargins(), lay.spacing()
        row = max(w.sizeHint().height() for w in (self.title, self.rule_box,
                                                  self.compute_button))
        if self._header(compact)[1]:
            row += spacing + self.rule_box.sizeHint().height()
        return (margins.top() + margins.bottom() + row + spacing + card_height
                + SCROLL_BAR_ROOM)

    def full_height(self) -> int:
        """The height at which the strip shows as it was made: full cards, the rule
        in full beside the title or below it."""
        return self.height_for(False, CARD_HEIGHT)

    def _fit(self) -> None:
        """Lay the header and cards out for the strip's size. With its full height, the
        rule and mode beside the title when they fit, else on a line of their own
        below it, where the rule reads in full (the mode, muted, may be cut: its tooltip
        has it). With less, compact: one header line where the rule and button fit it
        without the title, and cards as tall as is left."""
        compact = self.height() < self.full_height()
        title, below = self._header(compact)
        card = CARD_HEIGHT
        if compact:
            card = min(CARD_HEIGHT, self.height() - self.height_for(True, 0))
            card = max(CARD_MIN_HEIGHT, card)
        self.compact = compact
        for c in self.cards:
            c.set_compact(compact)
        self.row.setSpacing(COMPACT_SPACING if compact else CARD_SPACING)
        self.title.setVisible(title)
        if card != self.card_height:
            self.card_height = card
            for c in self.cards:
                c.setFixedHeight(card)
            self.scroll.setFixedHeight(card + SCROLL_BAR_ROOM)
        if below != self.rule_below:
            self.rule_below = below
            if below:
                self.head.removeWidget(self.rule_box)
                self.head.insertStretch(1, 1)  # keeps the button at the right
                self.below.addWidget(self.rule_box)
            else:
                self.below.removeWidget(self.rule_box)
                self.head.takeAt(1)  # the stretch
                self.head.insertWidget(1, self.rule_box, 1)
            self.layout().invalidate()
        self.setMinimumHeight(self.height_for(True, CARD_MIN_HEIGHT))
        full = self.full_height()
        if full != self._full:
            self._full = full
            self.updateGeometry()
            self.full_height_changed.emit()

    def clear(self) -> None:
        self.chosen = None
        self.computed = []
        for card in self.cards:
            card.set_data(CardData(card.data.title))
        self.compute_button.setEnabled(False)

    def set_input(self, thumb: QImage, lines: tuple[str, ...]) -> None:
        self.cards[INPUT].set_data(CardData("Input", thumb, lines, state="ready"))

    def set_unreadable(self) -> None:
        """The input file could not be read: nothing to show, and nothing will be."""
        self.clear()
        self.cards[INPUT].set_data(CardData("Input", state="unreadable"))

    def set_exit(self, k: int, thumb: QImage, score: float, cum_ms: float, gmacs: float,
                 decision: Decision | None = None, run: int = 1) -> None:
        """Exit ``k`` is ready; ``cum_ms`` and ``gmacs``: its Σ in the run that made it,
        ``run`` (1: the picture's first; 2: a second run from exit 1, which made the
        exits the first lacked: Compute all after a Stop, or a tiled picture's)."""
        if k not in self.computed:
            self.computed.append(k)
        card = self.cards[k]
        # Read from a saved output (a batch's): nothing was timed here.
        # Σ: up to this exit, all stages (the Info panel's table has each stage's own).
        # A later run's Σ says so (:meth:`ExitCard.text_lines`): beside the first run's,
        # a row of sums that went "Σ 71 ms" at exit 2 and "Σ 36 ms" at exit 3 read as
        # one run's, and wrong.
        saved = math.isnan(cum_ms)
        lines = ("from the saved file",) if saved else (f"Σ {fmt_ms(cum_ms)}",
                                                        f"Σ {fmt_gmacs(gmacs)}")
        card.set_data(CardData(f"Exit {k}", thumb, lines, score, "ready", k == self.chosen,
                               decision, run=1 if saved else run))
        # Why auto would (or would not) stop here, in words, on hover.
        card.setToolTip(("" if decision is None else
                         f"{decision.text[0].upper()}{decision.text[1:]}.\n\n")
                        + SCORE_TIP + ("" if math.isnan(cum_ms) else "\n\n" + SUM_TIP)
                        + (RUN_TIP.format(n=run) if run > 1 and not saved else "")
                        + "\n\nClick: show on the right (B)\nRight-click or "
                          "Ctrl+click: show on the left (A)")

    def set_running(self, k: int) -> None:
        if 1 <= k <= NUM_EXITS and self.cards[k].data.state != "ready":
            card = self.cards[k]
            card.set_data(CardData(card.data.title, state="running"))

    def set_tiles(self, k: int, done: int, total: int) -> None:
        """A tiled run's tile from exit ``k`` is done (``done`` of ``total``): its card
        says it is computing and how far the run is, as do the cards of exits earlier
        tiles came from (per-tile exits); only those cards are painted again."""
        for card in self.cards[1:]:
            if card.data.state == "tiling" or (card.index == k and card.data.state != "ready"):
                card.set_data(CardData(card.data.title, state="tiling", tiles=(done, total)))

    def set_chosen(self, k: int | None, auto: bool = True) -> None:
        """Mark the chosen exit; in auto mode the exits after it were not needed."""
        self.chosen = k
        for card in self.cards[1:]:
            card.data.chosen = card.index == k
            card.chosen_by_auto = auto
            d = card.data.decision
            # The chosen card says why auto stopped there, in a few words.
            card.data.reason = card_reason(d) if auto and card.index == k and d else ""
            # A new choice redraws these (a stopped photo's too: chosen since, its
            # exits not computed are no longer "not computed (you pressed Stop)")
            if card.data.state in ("empty", "skipped", "stopped", "tiling"):
                card.data.state = "skipped" if auto and k is not None and card.index > k \
                    else "empty"
                card.data.tiles = None
            card.update()
        # A narrow window scrolls the row: the chosen card in view, also when the exit is
        # the last image's (the user may have scrolled) and again after the layout.
        self._reveal_chosen()
        self._reveal_chosen_later()

    def set_stopped(self) -> None:
        """The run was stopped before an exit was chosen: no card is marked chosen (nor
        AUTO), and the exits not computed say why, not "not needed"."""
        self.chosen = None
        for card in self.cards[1:]:
            card.data.chosen, card.data.reason = False, ""
            if card.data.state in ("empty", "skipped", "running", "tiling"):
                card.data.state, card.data.tiles = "stopped", None
            card.update()

    def set_threshold(self, threshold: float, source: str, min_exit: int = 1) -> None:
        start = f" · from exit {min_exit}" if min_exit > 1 else ""
        self.threshold_label.setText(f"Threshold {threshold:.3f}{start}")
        earliest = f" from exit {min_exit} on (the weights' calibration)" if min_exit > 1 else ""
        self.threshold_label.setToolTip(f"Quality threshold ({source}); auto mode leaves at "
                                        f"the first exit{earliest} whose score reaches it")
        for card in self.cards:
            card.threshold = threshold
            card.min_exit = min_exit
            card.update()
        self._fit()

    def set_policy(self, description: str, title: str = "Learned exit gate") -> None:
        """The weights' learned gate decides: say so instead of a threshold."""
        self._rule_without_threshold(
            title, f"Auto mode: {description}. It reads the quality scores, how much each "
            "exit changed the picture and, for a JPEG, the file's quantisation tables. Set "
            "a threshold in Settings to use the quality score alone. Hover an exit to see "
            "why auto would stop there or go on.")

    def set_forced(self, k: int) -> None:
        """A forced exit: no rule decides, so none is named (a threshold in bold read as if
        it still applied)."""
        self._rule_without_threshold(
            f"Forced exit {k}", f"Settings → Exit mode: always exit {k}. The exit rule (the "
            "weights' own or a score threshold) decides in auto mode only")

    def _rule_without_threshold(self, title: str, tooltip: str) -> None:
        """The header names a rule that uses no score threshold; no card marks one."""
        self.threshold_label.setText(title)
        self.threshold_label.setToolTip(tooltip)
        for card in self.cards:
            card.threshold = None
            card.update()
        self._fit()

    def set_rule_loading(self) -> None:
        """The weights' exit rule is not known yet: say so rather than guess."""
        self.threshold_label.setText("Exit rule: loading…")
        self.threshold_label.setToolTip("The exit rule comes with the model weights; it "
                                        "shows here once they are read")
        for card in self.cards:
            card.threshold = None
            card.update()
        self._fit()

    def set_mode_text(self, text: str) -> None:
        self.mode_label.setText(text)
        self.mode_label.setToolTip(text)
        self._fit()

    def set_sides(self, a: int, b: int) -> None:
        for card in self.cards:
            side = ("a" if card.index == a else "") + ("b" if card.index == b else "")
            if side != card.side:  # said at each tile of a tiled run: the rest stay put
                card.side = side
                card.update()
