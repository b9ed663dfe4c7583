"""The exit strip: the input and all five exits as cards, filled in as they arrive.

Each exit card shows its thumbnail, quality score, cumulative time and GMACs; the exit
``auto`` chose carries a badge. Clicking a card shows it on the B (right) side of the
compare view; right-click or Ctrl+click puts it on the A (left) side.
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
ACCENT = QColor("#4c9be8")
GOOD = QColor("#5fc08a")
WEAK = QColor("#e0a948")
NEUTRAL = QColor(255, 255, 255, 170)  # a score that decides nothing (the gate's, forced)
A_COLOR = QColor("#e8a33d")
B_COLOR = QColor("#4c9be8")
CARD_HEIGHT = 190
HEAD_SPACING = 14  # between the strip header's title, rule, mode and button
CARD_MIN_WIDTH = 108  # six cards and their gaps fit a 1280-px window; narrower, the row scrolls


@dataclass
class CardData:
    title: str
    thumb: QImage | None = None
    lines: tuple[str, ...] = ()
    score: float | None = None
    state: str = "empty"  # empty | running | ready | skipped | unreadable
    chosen: bool = False
    decision: Decision | None = None  # the exit policy's verdict at this exit
    reason: str = ""  # the chosen card's: why auto stopped there, in a few words


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


def passes_rule(d: Decision) -> bool:
    """Whether the exit rule itself said "good enough" here: reaching exit 5, or an exit
    auto may not stop at, is not a pass, even though the walk ends there."""
    return d.stop and d.signal in ("gate", "assessor", "fixed")


def fit_text(fm: QFontMetrics, text: str, box: QRectF) -> str:
    """``text`` as it fits ``box`` word-wrapped; when even wrapped it does not, its first
    line's worth, elided with "…" (the card's tooltip has it whole)."""
    flags = Qt.AlignmentFlag.AlignLeft | Qt.TextFlag.TextWordWrap
    if fm.boundingRect(box.toRect(), flags, text).height() <= box.height():
        return text
    return fm.elidedText(text, Qt.TextElideMode.ElideRight, int(box.width()))


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
        self._hover = False
        self.setMinimumSize(QSize(CARD_MIN_WIDTH, CARD_HEIGHT))
        self.setMaximumSize(QSize(240, CARD_HEIGHT))
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip("Click: show on the right (B)\nRight-click or Ctrl+click: show on the "
                        "left (A)")

    def set_data(self, data: CardData) -> None:
        self.data = data
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

        # The thumbnail leaves room below for up to three lines of the chosen card's reason.
        thumb = QRectF(r.left() + 6, r.top() + 6, r.width() - 12, r.height() - 112)
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
            text = {"running": "computing…", "skipped": "not needed\n(auto stopped earlier)",
                    "unreadable": "could not be read"}
            p.drawText(thumb, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                       text.get(d.state, "not computed"))

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
        lines = [*d.lines[:2], d.reason] if d.reason else list(d.lines[:2])
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
    """Header (threshold, mode, Compute all) over the input and five exit cards."""

    picked = Signal(int, str)  # index (0 = input), "a" | "b"
    compute_all = Signal()

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
        # own below it (see _place_rule): a narrow window once cut the rule to "L…".
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
        row.setSpacing(6)
        for card in self.cards:
            card.picked.connect(self.picked)
            row.addWidget(card)
        self.scroll = scroll = QScrollArea()
        scroll.setObjectName("cardScroll")
        scroll.setWidget(row_widget)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setFixedHeight(CARD_HEIGHT + 16)  # room for a scroll bar when narrow
        # A narrower row (window, splitter, first layout) can push the chosen card out.
        scroll.viewport().installEventFilter(self)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 8, 8, 8)
        lay.setSpacing(6)
        lay.addLayout(head)
        lay.addLayout(self.below)
        lay.addWidget(scroll)
        self.setMinimumHeight(self.sizeHint().height())
        self.rule_below = False
        self.chosen: int | None = None
        self.computed: list[int] = []  # exits in the order they arrived

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._place_rule()

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

    def _place_rule(self) -> None:
        """Put the rule (and mode) beside the title when the header has room for the
        title, the whole rule and the button; else on their own line, where the rule
        reads in full (the mode, muted, may be cut: its tooltip has it)."""
        margins = self.layout().contentsMargins()
        room = self.width() - margins.left() - margins.right()
        need = (self.title.sizeHint().width() + self.threshold_label.sizeHint().width()
                + self.compute_button.sizeHint().width() + 2 * HEAD_SPACING)
        if self.mode_label.text():
            need += HEAD_SPACING + self.mode_label.sizeHint().width()
        below = room < need
        if below == self.rule_below:
            return
        self.rule_below = below
        if below:
            self.head.removeWidget(self.rule_box)
            self.head.insertStretch(1, 1)  # keeps the button at the right
            self.below.addWidget(self.rule_box)
        else:
            self.below.removeWidget(self.rule_box)
            self.head.takeAt(1)  # the stretch
            self.head.insertWidget(1, self.rule_box, 1)
        # One line taller or shorter: the splitter must give the strip that room (the
        # layout's cached size is stale until it is invalidated).
        lay = self.layout()
        lay.invalidate()
        self.setMinimumHeight(lay.sizeHint().height())

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
                 decision: Decision | None = None) -> None:
        if k not in self.computed:
            self.computed.append(k)
        card = self.cards[k]
        # Read from a saved output (a batch's): nothing was timed here.
        # Σ: up to this exit, all stages (the Info panel's table has each stage's own).
        lines = ("from the saved file",) if math.isnan(cum_ms) else (f"Σ {fmt_ms(cum_ms)}",
                                                                    f"Σ {fmt_gmacs(gmacs)}")
        card.set_data(CardData(f"Exit {k}", thumb, lines, score, "ready", k == self.chosen,
                               decision))
        # Why auto would (or would not) stop here, in words, on hover.
        card.setToolTip(("" if decision is None else
                         f"{decision.text[0].upper()}{decision.text[1:]}.\n\n")
                        + SCORE_TIP + "\n\nClick: show on the right (B)\nRight-click or "
                          "Ctrl+click: show on the left (A)")

    def set_running(self, k: int) -> None:
        if 1 <= k <= NUM_EXITS and self.cards[k].data.state != "ready":
            card = self.cards[k]
            card.set_data(CardData(card.data.title, state="running"))

    def set_chosen(self, k: int | None, auto: bool = True) -> None:
        """Mark the chosen exit; in auto mode the exits after it were not needed."""
        self.chosen = k
        for card in self.cards[1:]:
            card.data.chosen = card.index == k
            card.chosen_by_auto = auto
            d = card.data.decision
            # The chosen card says why auto stopped there, in a few words.
            card.data.reason = card_reason(d) if auto and card.index == k and d else ""
            if card.data.state in ("empty", "skipped"):  # a new choice redraws these
                card.data.state = "skipped" if auto and k is not None and card.index > k \
                    else "empty"
            card.update()
        # A narrow window scrolls the row: the chosen card in view, also when the exit is
        # the last image's (the user may have scrolled) and again after the layout.
        self._reveal_chosen()
        self._reveal_chosen_later()

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
        self._place_rule()

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
        self._place_rule()

    def set_rule_loading(self) -> None:
        """The weights' exit rule is not known yet: say so rather than guess."""
        self.threshold_label.setText("Exit rule: loading…")
        self.threshold_label.setToolTip("The exit rule comes with the model weights; it "
                                        "shows here once they are read")
        for card in self.cards:
            card.threshold = None
            card.update()
        self._place_rule()

    def set_mode_text(self, text: str) -> None:
        self.mode_label.setText(text)
        self.mode_label.setToolTip(text)
        self._place_rule()

    def set_sides(self, a: int, b: int) -> None:
        for card in self.cards:
            card.side = ("a" if card.index == a else "") + ("b" if card.index == b else "")
            card.update()
