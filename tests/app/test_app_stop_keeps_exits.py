"""Stop keeps the exits computed before it (a user trial): a photographer stopped a large
photo after exit 3 of 5, exit 3 already good, and could not save it: Save was off, the
view said only "Stopped", and the photo had to run again from the start."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Qt, Slot

from rbqe.io import OutputNotes, load_image
from rbqe.model import NUM_EXITS
from rbqe_studio.jobs import EngineSpec, PolicyChoice, ProcessJob
from rbqe_studio.queue_panel import status_text, tooltip_text
from rbqe_studio.state import DONE, WAITING, QueueItem
from rbqe_studio.worker import Worker
from tests.helpers import tiny_enhancer

TIMEOUT = 120_000


def hold_worker_after(window, stage: str, when) -> threading.Event:
    """Holds the worker's thread at its report ``stage`` ("exit": each exit computed;
    else a progress stage) where ``when(report)`` holds, until the window has pressed
    Stop (Esc) on it: the tiny model otherwise runs on to exit 5 before the GUI thread
    sees the report. Returns the event that lets it go (set once stopped)."""
    go = threading.Event()
    worker = window.session.host.worker

    def hold(*report: object) -> None:  # in the worker's thread
        if when(report):
            assert go.wait(TIMEOUT / 1000)

    def stop(*report: object) -> None:  # in the GUI thread, when the window has it; once
        if not go.is_set() and when((0, *report)) and window.acts.stop.isEnabled():
            window.acts.stop.trigger()
            go.set()

    if stage == "exit":
        worker.exit_computed.connect(hold, Qt.ConnectionType.DirectConnection)
        window.session.exit_ready.connect(stop)
    else:
        worker.progress.connect(hold, Qt.ConnectionType.DirectConnection)
        window.session.progress.connect(stop)
    return go


def test_the_exits_computed_before_stop_are_shown_and_saved_as_themselves(
        qtbot, window, jpeg, tmp_path) -> None:
    photo = jpeg(tmp_path / "in" / "photo.jpg", size=(96, 64))
    window.settings.threshold = 1.0  # auto never satisfied: it walks exit by exit
    go = hold_worker_after(window, "exit", lambda r: r[1].exit == 2)
    with qtbot.waitSignal(window.session.view_busy, timeout=TIMEOUT,
                          check_params_cb=lambda busy: not busy):
        window.open_paths([photo])
    assert go.is_set()
    view, item = window.session.view, window.session.current
    assert view is not None and view.result is not None and view.stopped_after == 2
    assert [e.exit for e in view.result.exits] == [1, 2] and view.result.decision is None
    qtbot.waitUntil(lambda: not window.session.view_running, timeout=TIMEOUT)
    # Shown, not "Stopped" over a blank B side; auto's choice not claimed anywhere.
    assert window.compare.b == 2 and window.compare.view.b is not None
    cards = window.compare.strip.cards
    assert not any(c.data.chosen for c in cards) and window.compare.strip.chosen is None
    assert [c.data.state for c in cards[3:]] == ["stopped"] * (NUM_EXITS - 2)
    assert window.status.text() == ("photo.jpg: stopped after exit 2 of 5, no exit chosen "
                                    "· Save (Ctrl+S) saves the exit shown, named as that exit")
    assert window.info.fields["Chosen exit"].text() == "None: stopped after exit 2"
    assert window.info.fields["Why this exit"].text().startswith(
        "You stopped the run after exit 2, before an exit was chosen.")
    assert "auto" not in window.info.fields["Threshold"].text().lower()
    assert item.status == WAITING and item.stopped and status_text(item) == \
        "Stopped after exit 2"
    assert "exits 1–2 kept" in tooltip_text(item)
    assert window.acts.save.isEnabled() and window.acts.save_all.isEnabled()
    assert "named as that exit" in window.acts.save.toolTip()
    assert window.acts.compute_all.isEnabled() and not window.acts.stop.isEnabled()

    # Save: the exit shown, its name and its note say which exit it is.
    out = tmp_path / "out"
    out.mkdir()
    window._saved_to = str(out)
    asked: list = []
    window._save_dialog = lambda suggested: asked.append(suggested) or str(suggested)
    with qtbot.waitSignal(window.session.saved, timeout=TIMEOUT) as saved:
        window.acts.save.trigger()
    (target,) = saved.args[0]
    assert asked == [target] and target.name == "photo_rbqe.exit2.png" and target.is_file()
    noted = OutputNotes().get(target)
    assert noted is not None and noted.result == "exit2" and noted.stands_for(target)
    pixels = np.round(load_image(target).pixels * 255)
    assert np.array_equal(pixels, view.result.exit_result(2).image)  # the exit shown
    fresh = tiny_enhancer().enhance(load_image(photo).pixels, "all").exit_result(2).image
    assert np.array_equal(pixels, np.floor(fresh.clip(0, 1) * 255 + 0.5))  # exit 2 itself
    assert window.status.text().startswith("Saved photo_rbqe.exit2.png in ")

    # Save all: the exits it lacks are made by a new run, each file named as its exit.
    window._folder_dialog = lambda *_args: str(out)
    with qtbot.waitSignal(window.session.saved, timeout=TIMEOUT) as saved:
        window.acts.save_all.trigger()
    notes = OutputNotes()
    assert [(p.name, notes.get(p).result) for p in saved.args[0]] == [
        (f"photo_rbqe.exit{k}.png", f"exit{k}") for k in range(1, NUM_EXITS + 1)]
    assert view.stopped_after == 2 and item.stopped  # still no exit chosen
    assert "exits 1–5 kept" in tooltip_text(item)  # those Save all added too

    # Process again runs it from the start, and it ends chosen as usual.
    window.settings.threshold = None
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT) as again:
        window.acts.redo.trigger()
    assert again.args[0].stopped_after is None and not item.stopped
    assert status_text(item).startswith("Exit ")


def test_stopped_before_any_exit_nothing_is_saveable_as_before(qtbot, window, jpeg,
                                                              tmp_path) -> None:
    """Nothing computed (stopped as the model was made ready, the photo on screen): as
    before, a "Stopped" B side, Save off, and viewed again it runs."""
    photo = jpeg(tmp_path / "photo.jpg", size=(96, 64))
    other = jpeg(tmp_path / "other.jpg", seed=2)
    go = hold_worker_after(window, "progress", lambda r: r[1] == "engine")
    with qtbot.waitSignal(window.session.view_busy, timeout=TIMEOUT,
                          check_params_cb=lambda busy: not busy):
        window.open_paths([photo])
    assert go.is_set()
    item = window.session.current
    assert item.stopped and item.exit is None and status_text(item) == "Stopped"
    assert window.session.view is None or window.session.view.result is None
    assert not window.acts.save.isEnabled() and not window.acts.save_all.isEnabled()
    assert window.compare.view.b is None and window.compare.view.b_label.startswith("Stopped")
    assert window.status.text() == "Stopped photo.jpg"
    window.open_paths([other])
    qtbot.waitUntil(lambda: not window.session.view_running, timeout=TIMEOUT)
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.queue.select(item)  # viewed again: it runs
    assert not item.stopped and window.acts.save.isEnabled()


# -- a review of it --------------------------------------------------------------------------
def test_the_worker_sends_a_cancelled_runs_exits_and_leaves_its_view_alone(
        qapp, jpeg, tmp_path) -> None:
    """The worker wrote a cancelled run's exits on its view, from its thread, whatever
    the cancel: the GUI thread may be showing that view by then (viewed again before the
    cancel landed), and it showed them as the result. They come with the signal now."""
    photo = jpeg(tmp_path / "photo.jpg", size=(96, 64))
    worker = Worker(lambda _spec: tiny_enhancer())
    job = ProcessJob(spec=EngineSpec(), policy=PolicyChoice(1.0), path=photo, mode="auto")
    seen: dict = {}
    worker.loaded.connect(lambda _gen, view: seen.update(view=view))
    worker.exit_computed.connect(lambda _gen, e, _view: e.exit == 2 and job.cancel.set())
    worker.cancelled.connect(lambda gen, partial: seen.update(gen=gen, partial=partial))
    worker.run(job)
    view, partial = seen["view"], seen["partial"]
    assert seen["gen"] == job.gen and view.result is None and view.stopped_after is None
    assert [e.exit for e in partial.exits] == [1, 2] and partial.chosen == 2
    assert partial.decision is None


def test_a_photo_viewed_again_before_its_stop_lands_runs_again(qtbot, window, jpeg,
                                                              tmp_path) -> None:
    """Esc on a photo, another clicked and the photo again, all before the step under
    way ended: half its exits showed with Save on, "Stopping…" for good, and it never
    ran again. Viewed again, it runs (as one stopped before its first exit does)."""
    photo = jpeg(tmp_path / "in" / "photo.jpg", size=(96, 64))
    other = jpeg(tmp_path / "in" / "other.jpg", size=(96, 64), seed=3)
    window.settings.threshold = 1.0
    go = threading.Event()
    worker = window.session.host.worker
    fired: list = []

    def hold(_gen, e, view) -> None:  # in the worker's thread
        if view.path.name == "photo.jpg" and e.exit == 2 and not go.is_set():
            assert go.wait(TIMEOUT / 1000)

    def act(e, view) -> None:  # in the GUI thread
        if view.path.name == "photo.jpg" and e.exit == 2 and not fired:
            fired.append(1)
            window.acts.stop.trigger()
            items = {i.name: i for i in window.session.queue.items}
            window.queue.select(items["other.jpg"])
            window.queue.select(items["photo.jpg"])
            go.set()

    worker.exit_computed.connect(hold, Qt.ConnectionType.DirectConnection)
    window.session.exit_ready.connect(act)
    seen: dict = {}

    class Catcher(QObject):  # of the GUI thread: its slot runs after the session's
        @Slot(int, object)
        def on(self, _gen: int, _partial: object) -> None:
            if go.is_set() and not seen:
                view = window.session.view
                seen.update(result=view is not None and view.result is not None,
                            save=window.acts.save.isEnabled(),
                            running=[j.path.name for j in window.session.host.jobs.values()
                                     if isinstance(j, ProcessJob)])

    catcher = Catcher()
    worker.cancelled.connect(catcher.on)
    window.open_paths([photo, other])
    qtbot.waitUntil(lambda: bool(seen), timeout=TIMEOUT)
    assert seen == {"result": False, "save": False, "running": ["photo.jpg"]}
    item = window.session.current
    qtbot.waitUntil(lambda: item.status == DONE, timeout=TIMEOUT)
    view = window.session.view
    assert view.result is not None and view.stopped_after is None and not item.stopped
    assert window.acts.save.isEnabled()


def test_a_new_choice_on_a_stopped_photo_redraws_its_cards_and_info(qtbot, window, jpeg,
                                                                   tmp_path) -> None:
    """Stopped after exit 3, then a threshold that chose an exit among those: the photo
    was done, but cards 4-5 still said "not computed (you pressed Stop)". The Info
    panel's row reads "Why no exit" while none is chosen."""
    photo = jpeg(tmp_path / "in" / "photo.jpg", size=(96, 64))
    window.settings.threshold = 1.0
    hold_worker_after(window, "exit", lambda r: r[1].exit == 3)
    with qtbot.waitSignal(window.session.view_busy, timeout=TIMEOUT,
                          check_params_cb=lambda busy: not busy):
        window.open_paths([photo])
    qtbot.waitUntil(lambda: not window.session.view_running, timeout=TIMEOUT)
    cards = window.compare.strip.cards
    assert [c.data.state for c in cards[4:]] == ["stopped"] * 2
    assert window.info.keys["Why this exit"].text() == "Why no exit"
    window.settings.threshold = 0.0  # the user lowers it in Settings: an earlier exit
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.setting_changed("threshold")
    qtbot.waitUntil(lambda: not window.session.view_running, timeout=TIMEOUT)
    item, r = window.session.current, window.session.view.result
    assert item.status == DONE and window.session.view.stopped_after is None
    assert r.chosen <= 3 and [e.exit for e in r.exits] == [1, 2, 3]
    assert [c.data.state for c in cards[4:]] == ["skipped"] * 2  # "not needed"
    assert window.info.keys["Why this exit"].text() == "Why this exit"


def test_a_stopped_rows_tooltip_names_the_exits_kept() -> None:
    """Its view's exits (Compute all or Save all may have added to them), not 1..k."""
    item = QueueItem(Path("a.jpg"), exit=2, stopped=True, kept=(1, 2, 3, 4, 5))
    assert status_text(item) == "Stopped after exit 2"
    assert "exits 1–5 kept" in tooltip_text(item)
