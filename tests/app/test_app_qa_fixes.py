"""A QA pass over the app: a repaired photo kept its old error in red; Compute all after a
Stop left the photo "stopped" with all five exits; a stopped Compute all on a tiled photo
said "Stopping…" for good and relabelled a card; the quit question read "-1 of 0 images";
a number key's hint went at the next progress line; and the small things (one way of
writing a time, a tiled exit's GMAC cell, OpenVINO's minute said on every start)."""

from __future__ import annotations

import pytest

from rbqe.io import load_image
from rbqe.model import NUM_EXITS
from rbqe_studio import dialogs
from rbqe_studio import main_window as main_window_mod
from rbqe_studio import worker as worker_mod
from rbqe_studio.info_panel import InfoPanel
from rbqe_studio.jobs import EngineSpec
from rbqe_studio.main_window import MainWindow
from rbqe_studio.queue_panel import status_text
from rbqe_studio.state import DONE, FAILED, engine_text, fmt_ms
from tests.app.test_app_stop_keeps_exits import hold_worker_after
from tests.helpers import save_tiny_weights, second_run, tiled_view, tiny_enhancer

TIMEOUT = 120_000
RED = "color: #f08a84;"


@pytest.fixture
def factory():
    """The tiny model, tiling at 128 px: a 300 x 200 photo is tiled, the others not."""
    return lambda *_spec: tiny_enhancer(tile=128)


# -- 1: a repaired photo -----------------------------------------------------------------
def test_a_repaired_photo_no_longer_shows_its_old_error(qtbot, window, jpeg, tmp_path,
                                                       monkeypatch) -> None:
    """A 0-byte photo failed; the user copied a good one over it and pressed Process
    again: its row said "Exit 1 · 12 ms", the status bar, in red, "…: empty file (0
    bytes) · photo.jpg: exit 1 of 5, 12 ms" (the error's hold kept it)."""
    monkeypatch.setattr(main_window_mod, "ERROR_HOLD_S", 60.0)  # however slow the machine
    photo = tmp_path / "in" / "photo.jpg"
    photo.parent.mkdir()
    photo.write_bytes(b"")
    window.open_paths([photo])
    item = window.session.queue.items[0]
    qtbot.waitUntil(lambda: item.status == FAILED, timeout=TIMEOUT)
    assert "empty file" in window.status.text() and window.status.styleSheet() == RED
    jpeg(photo, seed=1)  # repaired
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.acts.redo.trigger()
    assert item.status == DONE
    assert window.status.text().startswith("photo.jpg: exit ")
    assert "empty" not in window.status.text() and window.status.styleSheet() == ""
    # The hold still keeps an error about something else: the line follows it.
    window.show_message("Could not save: the disk is full", error=True)
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.acts.redo.trigger()
    assert window.status.text().startswith("Could not save: the disk is full · photo.jpg: "
                                           "exit ")
    assert window.status.styleSheet() == RED


# -- 2: Compute all after a Stop -----------------------------------------------------------
def test_compute_all_after_a_stop_chooses_the_exit_as_a_run_does(qtbot, window, jpeg,
                                                                 tmp_path) -> None:
    """Stopped after exit 2, then Compute all exits: all five exits were there, but Info
    said "Chosen exit: None: stopped after exit 2", the row "Stopped after exit 2" and
    the queue "0/1 done". Auto's choice is made over the exits' signals, as a run's."""
    photo = jpeg(tmp_path / "in" / "photo.jpg", size=(96, 64))
    # Exits 1-2 score below it and exit 3 above: a run stops at exit 3 (2 < it < 5).
    window.settings.threshold = 0.91
    fresh = tiny_enhancer(threshold=0.91).enhance(load_image(photo).pixels)
    assert 2 < fresh.chosen < NUM_EXITS
    hold_worker_after(window, "exit", lambda r: r[1].exit == 2)
    with qtbot.waitSignal(window.session.view_busy, timeout=TIMEOUT,
                          check_params_cb=lambda busy: not busy):
        window.open_paths([photo])
    qtbot.waitUntil(lambda: not window.session.view_running, timeout=TIMEOUT)
    view, item = window.session.view, window.session.current
    assert view.stopped_after == 2 and item.stopped
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.acts.compute_all.trigger()
        # Its run's state went with the Stop: it does run again from exit 1.
        assert window.status.text() == (
            "Computing exits 3–5 of photo.jpg (its run was stopped: it runs again from "
            "exit 1, then an exit is chosen)…")
    qtbot.waitUntil(lambda: not window.session.view_running, timeout=TIMEOUT)
    r = view.result
    assert [e.exit for e in r.exits] == list(range(1, NUM_EXITS + 1))
    assert view.stopped_after is None and r.decision is not None
    assert r.chosen == fresh.chosen
    assert item.status == DONE and not item.stopped and item.exit == fresh.chosen
    assert status_text(item).startswith(f"Exit {fresh.chosen} · ")
    qtbot.waitUntil(lambda: window.queue.counts.text() == "1/1 done", timeout=5000)
    assert window.info.fields["Chosen exit"].text().startswith(f"Exit {fresh.chosen}")
    assert window.status.text().startswith(f"photo.jpg: exit {fresh.chosen} of 5")
    assert window.compare.strip.chosen == fresh.chosen and window.compare.b == fresh.chosen
    assert window.acts.save.statusTip() == main_window_mod.SAVE_TIP


# -- 3: a stopped Compute all on a tiled photo -----------------------------------------------
def test_a_stopped_compute_all_on_a_tiled_photo_says_so_and_keeps_its_cards(
        qtbot, window, jpeg, tmp_path) -> None:
    """Stop during Compute all's second run of a tiled photo: "Stopping after the current
    step…" stayed in the status bar for good, and the card that said "computing…" then
    read "not computed" where it had read "not needed (auto stopped earlier)"."""
    window.settings.threshold = 0.0  # auto stops at once: the later exits are not needed
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths([jpeg(tmp_path / "in" / "wide.jpg", size=(300, 200), seed=5)])
    qtbot.waitUntil(lambda: not window.session.view_running, timeout=TIMEOUT)
    r = window.session.view.result
    assert r.tiled and r.chosen < NUM_EXITS
    cards = window.compare.strip.cards
    before = [c.data.state for c in cards]
    assert before[r.chosen + 1:] == ["skipped"] * (NUM_EXITS - r.chosen)
    computing = [False]
    go = hold_worker_after(window, "progress", lambda rep: computing[0] and rep[1] == "tile")
    computing[0] = True
    with qtbot.waitSignal(window.session.view_busy, timeout=TIMEOUT,
                          check_params_cb=lambda busy: not busy):
        window.compare.strip.compute_button.click()
    assert go.is_set()  # stopped in its second run
    assert [e.exit for e in r.exits] == [r.chosen]
    assert window.status.text() == f"Stopped: wide.jpg keeps exit {r.chosen}"
    assert [c.data.state for c in cards] == before
    assert window.acts.compute_all.isEnabled() and not window.acts.stop.isEnabled()


# -- 4: quitting while a batch starts ----------------------------------------------------------
def test_the_quit_question_has_no_numbers_before_the_batch_counts(window,
                                                                 monkeypatch) -> None:
    """Asked while the batch listed its folder: "A batch is running (-1 of 0 images
    done). Quit now?" (its bar is busy, 0 of 0, until it has counted them)."""
    asked: list[str] = []
    monkeypatch.setattr(dialogs.QMessageBox, "question",
                        lambda _parent, _title, text, *_a: asked.append(text)
                        or dialogs.QMessageBox.StandardButton.No)
    bar = window.batch.bar
    bar.setRange(0, 0)  # as the batch starts
    assert not MainWindow._confirm_quit(window)
    assert asked[-1].startswith("A batch is starting") and "-1" not in asked[-1]
    assert "of 0" not in asked[-1]
    bar.setRange(0, 4)  # counted
    bar.setValue(1)
    MainWindow._confirm_quit(window)
    assert asked[-1].startswith("A batch is running (1 of 4 images done). Quit now?")


# -- 5: a number key's hint -----------------------------------------------------------------
def test_a_number_keys_hint_stays_to_be_read(qtbot, window, images) -> None:
    """"Exit 5 is not computed yet; …" was replaced by "Computing exit 2…" at the next
    progress line, 0.4 s later."""
    window.settings.threshold = 0.0  # exit 1 chosen: exit 5 not computed
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths([images[0]])
    window.show_exit(5)
    hint = window.status.text()
    assert hint.startswith("Exit 5 is not computed")
    window._on_progress("exit", 1, 5, None)  # a progress line just after
    assert window.status.text() == hint
    window._message_until = 0.0  # read by now
    window._on_progress("exit", 1, 5, None)
    assert window.status.text() == "Computing exit 2…"


# -- 6: small things --------------------------------------------------------------------------
def test_a_time_is_written_one_way_across_the_app() -> None:
    """A 12 MP photo's time read "1 min 33 s" in the status bar and "92.9 s" in its row;
    another's "21.02 s" and "21.0 s"."""
    assert fmt_ms(92_900) == "92.9 s" and fmt_ms(21_020) == "21.0 s"
    assert fmt_ms(1500) == "1.50 s" and fmt_ms(184_400) == "184 s"


def test_the_cards_sum_says_what_it_counts(qtbot, window, images) -> None:
    """The card's Σ (network and scoring) is less than the photo's time elsewhere (its
    input read, its result finished): the card says which is which."""
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths([images[0]])
    card = window.compare.strip.cards[window.session.view.result.chosen]
    assert "Σ: the network's and the scoring's time" in card.toolTip()
    assert "Info panel's Total" in card.toolTip()


def test_a_tiled_exits_gmac_cell_reads_as_its_card(qtbot, tmp_path, jpeg) -> None:
    """A tiled photo's chosen exit read "Σ 1.08 TMAC" on its card and "–" in the
    per-stage table's GMAC cell (its stage alone is not known): its card's figure, Σ."""
    panel = InfoPanel()
    qtbot.addWidget(panel)
    view = tiled_view(jpeg(tmp_path / "big.jpg"), exits=(4,))
    panel.show_result(view)
    cell = panel.table.item(3, 2)
    assert cell.text() == "Σ 300" and "Stages 1–4 together" in cell.toolTip()
    assert "Stages 1–4 together" in panel.table.item(3, 0).toolTip()
    assert panel.table.item(4, 2).text() == "–"  # not computed
    view.add_run(second_run(view))  # Compute all: each stage of that run is known
    panel.show_result(view)
    assert [panel.table.item(row, 2).text() for row in (0, 1, 4)] == ["77.5"] * 3


def test_preparing_the_model_says_openvinos_minute_only_when_it_exports(
        qtbot, window, images, tmp_path, monkeypatch) -> None:
    """With backend "auto", "(the first time, OpenVINO exports and compiles the network:
    about a minute)" was said on every start, though torch had been measured faster and
    was chosen from that stored choice."""
    said: list[str] = []
    window.session.progress.connect(
        lambda stage, *_: said.append(window.status.text())
        if stage in ("engine", "export") else None)
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths([images[0]])
    assert said == ["Preparing the model…"]  # the tests' factory builds no OpenVINO
    assert engine_text(False) == "Preparing the model…"
    assert "about a minute" in engine_text(True)
    # What the app's own factory would build.
    weights = str(save_tiny_weights(tmp_path / "w.safetensors"))
    assert not worker_mod.exports_openvino(EngineSpec(weights, "cpu", "torch"))
    if not worker_mod.openvino_installed():
        return
    monkeypatch.setenv("RBQE_CACHE_DIR", str(tmp_path / "cache"))  # nothing measured
    assert worker_mod.exports_openvino(EngineSpec(weights, "cpu", "auto"))
    assert worker_mod.exports_openvino(EngineSpec(weights, "cpu", "openvino"))
    monkeypatch.setattr(worker_mod, "recorded_auto_choice",
                        lambda _net: {"backend": "torch", "precision": "bf16"})
    assert not worker_mod.exports_openvino(EngineSpec(weights, "cpu", "auto"))
    monkeypatch.setattr(worker_mod, "openvino_exported", lambda _net: True)
    assert not worker_mod.exports_openvino(EngineSpec(weights, "cpu", "openvino"))
