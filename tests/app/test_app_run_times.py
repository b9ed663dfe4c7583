"""What a photo's exits cost when they came in more than one go: Compute all stopped and
pressed again, or Compute all after a Stop (a second run from exit 1). Each run's
figures stay its own and say whose they are; the sum is said as a sum ("in all")."""

from __future__ import annotations

from rbqe.model import NUM_EXITS
from rbqe_studio.info_panel import InfoPanel
from rbqe_studio.jobs import ContinueJob, ProcessJob
from rbqe_studio.state import fmt_gmacs, fmt_ms
from rbqe_studio.worker import Worker
from tests.app.test_app_stop_keeps_exits import TIMEOUT, hold_worker_after
from tests.helpers import tiny_enhancer, write_jpeg


def stage_ms(view, exits) -> float:
    return sum(e.time_ms + e.iqa_ms for e in view.result.exits if e.exit in exits)


def test_a_stopped_compute_all_counts_what_its_exits_cost(qtbot, tmp_path) -> None:
    """Compute all from the kept state, stopped after exit 3, then pressed again: the
    result's time left out the stopped part (continue_exits adds its time only when it
    ends), so Computed read "exits 1–5: 97 ms" beside exit 5's card "Σ 136 ms"."""
    worker = Worker(lambda _spec: tiny_enhancer())
    done: list = []
    worker.finished.connect(lambda _gen, payload: done.append(payload))
    worker.run(ProcessJob(path=write_jpeg(tmp_path / "a.jpg", size=(96, 64)), mode=1))
    (view,) = done
    r = view.result
    assert r.can_continue and [e.exit for e in r.exits] == [1]
    first = r.total_ms
    stop = ContinueJob(view=view)
    worker.exit_computed.connect(lambda _gen, e, _view: e.exit == 3 and stop.cancel.set())
    cancelled: list = []
    worker.cancelled.connect(lambda gen, _partial: cancelled.append(gen))
    worker.run(stop)
    assert cancelled == [stop.gen] and [e.exit for e in r.exits] == [1, 2, 3]
    assert r.total_ms >= first + stage_ms(view, (2, 3))  # the stopped part counts
    worker.run(ContinueJob(view=view))
    assert [e.exit for e in r.exits] == list(range(1, NUM_EXITS + 1))
    # All of it is one run, continued: what was computed in all is never less than
    # what exit 5 cost (its card's Σ, and the input and output besides).
    assert r.total_ms >= view.cost_to(NUM_EXITS).ms
    assert r.total_ms >= first + stage_ms(view, range(2, NUM_EXITS + 1))
    panel = InfoPanel()
    qtbot.addWidget(panel)
    panel.show_result(view)
    assert panel.fields["Computed"].text().startswith(f"exits 1–5: {fmt_ms(r.total_ms)} · ")


def test_compute_all_after_a_stop_keeps_each_runs_figures_apart_and_says_so(
        qtbot, window, jpeg, tmp_path) -> None:
    """Stopped after exit 2, then Compute all: exits 3-5 come from a second run from exit
    1. The cards' Σ went "71 ms" at exit 2 and "36 ms" at exit 3, read as one run's sums;
    now a later run's card says it is one ("· run 2"), the Total names the run its exit
    came from, and Computed gives each run's time and their sum, as a sum."""
    photo = jpeg(tmp_path / "in" / "photo.jpg", size=(96, 64))
    window.settings.threshold = 1.0  # auto never satisfied: it walks exit by exit
    hold_worker_after(window, "exit", lambda r: r[1].exit == 2)
    window.tabs.setCurrentWidget(window.info)
    with qtbot.waitSignal(window.session.view_busy, timeout=TIMEOUT,
                          check_params_cb=lambda busy: not busy):
        window.open_paths([photo])
    qtbot.waitUntil(lambda: not window.session.view_running, timeout=TIMEOUT)
    view, cards = window.session.view, window.compare.strip.cards
    assert view.stopped_after == 2
    first = view.result.total_ms
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.acts.compute_all.trigger()
    qtbot.waitUntil(lambda: not window.session.view_running, timeout=TIMEOUT)
    r = view.result
    assert view.stopped_after is None and r.chosen == 5
    (run,) = view.extra_runs
    assert run.exits == [3, 4, 5] and r.total_ms == first  # the first run's, as it was
    for k in (3, 4, 5):  # the second run's own sums, said to be
        assert "Run 2: this exit was made by a later run" in cards[k].toolTip()
        cum = sum(s.time_ms + s.iqa_ms for j, s in run.stages.items() if j <= k)
        assert cards[k].data.lines[0] == f"Σ {fmt_ms(cum)}" and cards[k].data.run == 2
        # As drawn: after the Σ where it fits, else below it (never the Σ cut short)
        wide = cards[k].text_lines(cards[k].fontMetrics(), 1000)
        assert wide == [f"Σ {fmt_ms(cum)} · run 2", cards[k].data.lines[1]]
        narrow = cards[k].text_lines(cards[k].fontMetrics(), 40)
        assert narrow == [f"Σ {fmt_ms(cum)}", "run 2", cards[k].data.lines[1]]
    for k in (1, 2):  # the first run's, unmarked
        assert "Run 2" not in cards[k].toolTip()
        assert cards[k].data.lines[0] == f"Σ {fmt_ms(view.cum_ms(k, r.exits))}"
        assert cards[k].data.run == 1
    fields = window.info.fields
    cost = view.cost_to(5)
    assert fields["Total"].text() == (f"{fmt_ms(cost.ms)} · {fmt_gmacs(cost.gmacs)} "
                                      f"(to exit 5, second run)")
    assert cost.ms == run.total_ms  # the second run alone, as the status line says
    assert window.status.text().endswith(f", {fmt_ms(run.total_ms)}")
    first_g = max(e.gmacs for e in r.exits if e.exit <= 2)
    assert fields["Computed"].text() == (
        f"{fmt_ms(first + run.total_ms)} · {fmt_gmacs(first_g + run.gmacs)} in all: "
        f"first run (exits 1–2): {fmt_ms(first)} · {fmt_gmacs(first_g)}; "
        f"second run (exits 3–5): {fmt_ms(run.total_ms)} · {fmt_gmacs(run.gmacs)}")
    table = window.info.table
    assert table.item(0, 0).toolTip() == ""
    assert table.item(2, 0).toolTip() == ("Exit 3 was made by the second run of the "
                                          "picture: its stage in that run")
