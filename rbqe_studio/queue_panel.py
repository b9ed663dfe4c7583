"""The image queue: one two-line row per image with its status, exit, score and time."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPoint, QRect, QSize, Qt, QTimer, Signal
from PySide6.QtGui import (
    QAction,
    QColor,
    QFont,
    QFontMetrics,
    QKeySequence,
    QMouseEvent,
    QPainter,
    QPaintEvent,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from rbqe_studio.state import (
    BLOCKED,
    DEVICE,
    DONE,
    FAILED,
    RUNNING,
    WAITING,
    QueueItem,
    exits_text,
    fmt_ms,
)
from rbqe_studio.widgets import ButtonRow, ElidedLabel

ITEM_ROLE = Qt.ItemDataRole.UserRole + 1
NAME_ROLE = Qt.ItemDataRole.UserRole + 2  # the name shown: with its folder when names clash
STATUS_COLORS = {
    WAITING: QColor("#7d838c"),
    RUNNING: QColor("#4c9be8"),
    DONE: QColor("#5fc08a"),
    FAILED: QColor("#e0605a"),
    BLOCKED: QColor("#e0a948"),
}


def short_error(item: QueueItem) -> str:
    """The reason without the leading ``<path>: `` (the row already names the file)."""
    prefix = f"{item.path}: "
    return item.error.removeprefix(prefix)


def status_text(item: QueueItem, short: int = 0) -> str:
    """The row's second line, on one line (a message's newlines become spaces); for a
    narrow row, ``short`` 1 drops the word "score", 2 the score, 3 the time."""
    if item.status == WAITING:
        text = ("Waiting" if not item.stopped else "Stopped" if item.exit is None
                else f"Stopped after exit {item.exit}")
    elif item.status == RUNNING:
        text = "Running…" if item.progress is None else f"Running… {item.progress:.0%}"
    elif item.status == FAILED:
        text = f"Failed: {short_error(item)}"
    elif item.status == BLOCKED:
        text = ("Not enhanced: device not usable (see Settings)" if item.blocked_by == DEVICE
                else "Not enhanced: no model")
    elif item.exit is None:
        text = "Done · output exists (skipped)" if item.outputs else "Done"
    else:
        word = "score " if short == 0 else ""
        score = f" · {word}{item.score:.3f}" if item.score is not None and short < 2 else ""
        time = f" · {fmt_ms(item.time_ms)}" if short < 3 else ""
        text = f"Exit {item.exit}{score}{time}"
        if item.report is not None:
            text += " · from the batch"
        elif item.stale:
            text += " · earlier mode"
    return " ".join(text.split())


def tooltip_text(item: QueueItem) -> str:
    """The whole story of a row, which its two elided lines may cut."""
    lines = [str(item.path), status_text(item)]
    if item.status == BLOCKED and item.error:
        lines.append(item.error)
    if item.stale:
        lines.append("Done under the earlier exit mode or threshold; viewing it applies "
                     "the current one")
    if item.status == WAITING and item.stopped and item.kept:
        lines.append(f"Stopped before an exit was chosen: {exits_text(item.kept)} kept, to "
                     f"view and save; Process again runs it from the start")
    lines += [f"Output: {p}" for p in item.outputs]
    return "\n".join(lines)


def display_names(items: list[QueueItem]) -> list[str]:
    """Each item's name, with its folder in front where two items share a name (two
    "broken.jpg" from different folders must be told apart)."""
    seen: dict[str, int] = {}
    for item in items:
        seen[item.name] = seen.get(item.name, 0) + 1
    return [f"{item.path.parent.name}/{item.name}" if seen[item.name] > 1 else item.name
            for item in items]


def row_texts(item: QueueItem, bold: QFontMetrics, fm: QFontMetrics,
              width: int, name: str | None = None) -> tuple[str, str]:
    """The name and status line of a row ``width`` pixels wide, both elided in the
    middle: what is cut gets "…", and the row's tooltip has it whole. (The status line's
    end is its time, or "earlier mode", "from the batch": cut at the end, a narrow
    queue lost just those.) A status too wide first drops its word "score", then the
    score, then the time: cut in the middle, "Exit 5 · 419 ms" read "Exit …19 ms", which
    lost the exit in a queue 130 px wide (a 900 px window)."""
    status = status_text(item)
    for short in (1, 2, 3):
        if fm.horizontalAdvance(status) > width:
            status = status_text(item, short)
    # A failure's cause reads from its start ("Failed: truncated or co…"); cut in the
    # middle it was "Failed: trunc…pt image data" in a queue of any width.
    cut = Qt.TextElideMode.ElideRight if item.status == FAILED else Qt.TextElideMode.ElideMiddle
    return (bold.elidedText(name or item.name, Qt.TextElideMode.ElideMiddle, width),
            fm.elidedText(status, cut, width))


class _Delegate(QStyledItemDelegate):
    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:
        fm = option.fontMetrics
        return QSize(200, fm.height() * 2 + 16)

    def paint(self, p: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        item: QueueItem = index.data(ITEM_ROLE)
        p.save()
        r: QRect = option.rect
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        if selected:
            p.fillRect(r, QColor("#2f4863"))
        elif option.state & QStyle.StateFlag.State_MouseOver:
            p.fillRect(r, QColor(255, 255, 255, 12))
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        color = STATUS_COLORS.get(item.status, STATUS_COLORS[WAITING])
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(color)
        p.drawEllipse(r.left() + 10, r.center().y() - 4, 9, 9)
        fm = option.fontMetrics
        text_left = r.left() + 28
        width = r.width() - 36
        bold = QFont(option.font)
        bold.setBold(True)
        name, line = row_texts(item, QFontMetrics(bold), fm, width, index.data(NAME_ROLE))
        p.setFont(bold)
        p.setPen(QColor("#eeeeee"))
        p.drawText(QRect(text_left, r.top() + 6, width, fm.height()),
                   Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, name)
        p.setFont(option.font)
        p.setPen(color.lighter(115) if item.status in (FAILED, BLOCKED) else QColor("#a5abb3"))
        p.drawText(QRect(text_left, r.top() + 8 + fm.height(), width, fm.height()),
                   Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, line)
        p.setPen(QColor(255, 255, 255, 18))
        p.drawLine(r.left() + 8, r.bottom(), r.right() - 8, r.bottom())
        p.restore()


class _List(QListWidget):
    """A list that says what to do when it is empty, and whose right-click only opens a
    row's menu."""

    def mousePressEvent(self, e: QMouseEvent) -> None:
        # Made current, the row right-clicked started enhancing (stopping the background
        # job) before its menu was even read.
        if e.button() == Qt.MouseButton.RightButton:
            e.accept()
            return
        super().mousePressEvent(e)

    def paintEvent(self, e: QPaintEvent) -> None:
        super().paintEvent(e)
        if self.count() == 0:
            p = QPainter(self.viewport())
            p.setPen(QColor("#7d838c"))
            p.drawText(self.viewport().rect().adjusted(16, 16, -16, -16),
                       Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                       "No images yet.\nDrop photos or folders anywhere on the window.")
            p.end()


class QueuePanel(QWidget):
    current_changed = Signal(object)  # QueueItem | None
    open_files = Signal()
    open_folder = Signal()
    clear_requested = Signal()
    remove_requested = Signal(object)  # QueueItem: the row's Remove (Delete, or its menu)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("queuePanel")
        self.title = QLabel("Queue")
        self.title.setObjectName("panelTitle")
        # On its own line under the title: beside it and the Clear button, "1/2 done ·
        # 1 failed" was cut at the default width. Elided, so no count widens the window.
        self.counts = ElidedLabel("")
        self.counts.setObjectName("muted")
        self.counts.hide()  # shown once there are images to count
        self.list = _List()
        self.list.setItemDelegate(_Delegate(self.list))
        self.list.setMouseTracking(True)
        self.list.setUniformItemSizes(True)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.currentItemChanged.connect(self._on_current)
        # One image out of the queue (only Clear took any out): Delete or Backspace on the
        # list (the current row), or the right-click menu of the row under the cursor.
        self.remove_action = QAction("Remove from queue", self.list)
        self.remove_action.setShortcuts([QKeySequence(QKeySequence.StandardKey.Delete),
                                         QKeySequence(Qt.Key.Key_Backspace)])
        self.remove_action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        self.remove_action.triggered.connect(self._remove_current)
        self.list.addAction(self.remove_action)
        # Its own menu, not the list's actions: those act on the current row, which a
        # right-click elsewhere is not, and they offered Remove on empty space too.
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._show_menu)
        files = QPushButton("Open files…")
        folder = QPushButton("Open folder…")
        files.clicked.connect(self.open_files)
        folder.clicked.connect(self.open_folder)
        self.clear_button = QToolButton()
        self.clear_button.setText("Clear")
        self.clear_button.setToolTip("Remove all images from the queue")
        self.clear_button.clicked.connect(self.clear_requested)
        self.clear_button.setEnabled(False)  # nothing to clear yet
        head = QHBoxLayout()
        head.addWidget(self.title)
        head.addStretch(1)
        head.addWidget(self.clear_button)
        # Stacked in a narrow panel: side by side they kept the queue 243 px wide, and a
        # 900-px window's photo small.
        self.buttons = buttons = ButtonRow((files, 1), (folder, 1))
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 8, 8, 8)
        lay.addLayout(head)
        lay.addWidget(self.counts)
        lay.addWidget(self.list, 1)
        lay.addWidget(buttons)
        self._rows: dict[int, QListWidgetItem] = {}
        self._counts_due = False  # a recount is on its way (update_item)

    def roomy_width(self) -> int:
        """The narrowest width with its buttons side by side."""
        margins = self.layout().contentsMargins()
        return self.buttons.side_by_side_width() + margins.left() + margins.right()

    def add_items(self, items: list[QueueItem]) -> None:
        for item in items:
            row = QListWidgetItem()
            row.setData(ITEM_ROLE, item)
            row.setToolTip(tooltip_text(item))
            self.list.addItem(row)
            self._rows[id(item)] = row
        self._update_names()
        self._update_counts()

    def update_item(self, item: QueueItem) -> None:
        row = self._rows.get(id(item))
        if row is not None:
            row.setToolTip(tooltip_text(item))
            row.setData(ITEM_ROLE, item)  # triggers a repaint of that row only
            self.list.update(self.list.indexFromItem(row))
        # Counted once the updates of this turn of the event loop are in: counted at each
        # (a pass over every row), a folder of thousands retried at once took seconds.
        if not self._counts_due:
            self._counts_due = True
            QTimer.singleShot(0, self._update_counts)

    def clear(self) -> None:
        self.list.clear()
        self._rows.clear()
        self._update_counts()

    def remove_item(self, item: QueueItem) -> None:
        """Drops ``item``'s row; the list makes a neighbour current (shown next)."""
        row = self._rows.pop(id(item), None)
        if row is not None:
            self.list.takeItem(self.list.row(row))
        self._update_names()
        self._update_counts()

    def row_menu(self, pos: QPoint) -> QMenu | None:
        """The right-click menu of the row at ``pos`` (viewport coordinates), for that
        row whichever is current; None on empty space."""
        row = self.list.itemAt(pos)
        if row is None:
            return None
        item = row.data(ITEM_ROLE)
        menu = QMenu(self.list)
        remove = menu.addAction("Remove from queue")
        remove.triggered.connect(lambda: self.remove_requested.emit(item))
        return menu

    def _show_menu(self, pos: QPoint) -> None:
        menu = self.row_menu(pos)
        if menu is not None:
            menu.exec(self.list.viewport().mapToGlobal(pos))
            menu.deleteLater()

    def _remove_current(self) -> None:
        item = self.current()
        if item is not None:
            self.remove_requested.emit(item)

    def select(self, item: QueueItem) -> None:
        row = self._rows.get(id(item))
        if row is not None:
            self.list.setCurrentItem(row)

    def step(self, delta: int) -> None:
        n = self.list.count()
        if n:
            row = self.list.currentRow()
            self.list.setCurrentRow(min(n - 1, max(0, (row if row >= 0 else -1) + delta)))

    def current(self) -> QueueItem | None:
        row = self.list.currentItem()
        return row.data(ITEM_ROLE) if row is not None else None

    def _on_current(self, row: QListWidgetItem | None, _prev: object) -> None:
        self.current_changed.emit(row.data(ITEM_ROLE) if row is not None else None)

    def _items(self) -> list[QueueItem]:
        return [self.list.item(i).data(ITEM_ROLE) for i in range(self.list.count())]

    def _update_names(self) -> None:
        for i, name in enumerate(display_names(self._items())):
            self.list.item(i).setData(NAME_ROLE, name)

    def _update_counts(self) -> None:
        self._counts_due = False
        items = self._items()
        self.clear_button.setEnabled(bool(items))
        done = sum(i.status == DONE for i in items)
        failed = sum(i.status == FAILED for i in items)
        text = f"{done}/{len(items)} done" if items else ""
        if failed:
            text += f" · {failed} failed"
        self.counts.setText(text)
        self.counts.setVisible(bool(text))
