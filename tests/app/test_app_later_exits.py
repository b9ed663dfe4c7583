"""A whole image's later exits once its kept network state is gone: a new choice that
needs them makes them in one new run, whose figures are what they cost; and a view
shown again while its exits are still being made shows those that are ready."""

from __future__ import annotations

import math

import pytest

from rbqe.engine import Enhancer
from rbqe_studio.info_panel import InfoPanel
from rbqe_studio.jobs import PolicyChoice, ProcessJob, RechooseJob
from rbqe_studio.state import fmt_ms
from rbqe_studio.worker import Worker
from tests.helpers import tiny_enhancer, write_jpeg

TIMEOUT = 120_000


@pytest.fixture
def runs(monkeypatch) -> list:
    """Every network run from exit 1 (:meth:`Enhancer.enhance`'s results), in order."""
    made: list = []
    enhance = Enhancer.enhance

    def counted(self, *args, **kwargs):
        made.append(enhance(self, *args, **kwargs))
        return made[-1]

    monkeypatch.setattr(Enhancer, "enhance", counted)
    return made


def freed(tmp_path, worker: Worker, exits: int):
    """A whole image's view made to exit ``exits`` by ``worker``, its state then freed
    (as the app does once the view is off screen)."""
    done = []
    worker.finished.connect(lambda _gen, payload: done.append(payload))
    worker.run(ProcessJob(path=write_jpeg(tmp_path / "a.jpg"), mode=exits))
    (view,) = done
    worker.finished.disconnect()
    assert [e.exit for e in view.result.exits] == list(range(1, exits + 1))
    view.result.drop_session()
    return view


def test_a_new_choice_past_a_freed_state_runs_once_and_costs_that_run(qtbot, tmp_path,
                                                                      runs) -> None:
    """Chosen again under a threshold no exit reaches, an image whose state was freed ran
    from exit 1 once per further exit (three runs for exits 3-5), and its chosen exit 5
    reported what exits 1-2 cost; the stage table said "–" for exit 5's GMACs."""
    worker = Worker(lambda _spec: tiny_enhancer())
    view = freed(tmp_path, worker, 2)
    runs.clear()
    worker.run(RechooseJob(view=view, mode="auto", policy=PolicyChoice(1.01)))
    r = view.result
    assert r.chosen == 5 and [e.exit for e in r.exits] == [1, 2, 3, 4, 5]
    (fresh,) = runs  # one run from exit 1, not one per exit
    assert [e.exit for e in fresh.exits] == [1, 2, 3, 4, 5]
    # Exit 5 is the run's last: it cost the whole run, and its cumulative GMACs.
    ms, gmacs = view.chosen_cost()
    assert ms == pytest.approx(fresh.total_ms) and gmacs == fresh.exit_result(5).gmacs
    panel = InfoPanel()
    qtbot.addWidget(panel)
    panel.show_result(view)
    assert panel.fields["Total"].text().startswith(fmt_ms(fresh.total_ms))
    stages = [panel.table.item(row, 2).text() for row in range(5)]
    assert "–" not in stages
    own = fresh.exit_result(5).gmacs - fresh.exit_result(4).gmacs
    assert math.isclose(float(stages[4]), own, abs_tol=0.05)


def test_a_forced_exit_a_later_run_added_costs_that_run(qtbot, tmp_path, runs) -> None:
    """Exit 5 forced on exits 1-4 whose state was freed: one new run adds exit 5 alone,
    which reported the first run's exits 1-4 (not its own run's 1-5), and "–" for its
    stage's GMACs (taken as the difference to another run's exit 4)."""
    worker = Worker(lambda _spec: tiny_enhancer())
    view = freed(tmp_path, worker, 4)
    runs.clear()
    worker.run(RechooseJob(view=view, mode=5))
    (fresh,) = runs
    assert view.result.chosen == 5 and view.run_of == {5: 1}
    assert view.chosen_cost() == (pytest.approx(fresh.total_ms), fresh.exit_result(5).gmacs)
    panel = InfoPanel()
    qtbot.addWidget(panel)
    panel.show_result(view)
    own = fresh.exit_result(5).gmacs - fresh.exit_result(4).gmacs
    assert math.isclose(float(panel.table.item(4, 2).text()), own, abs_tol=0.05)


def test_a_view_shown_again_skips_an_exit_whose_pictures_are_not_made(qtbot, window,
                                                                      images) -> None:
    """An exit joins the result before the worker has made its pictures; a view selected
    again in that gap raised KeyError (its thumbnail) and showed nothing more."""
    from rbqe_studio.state import DONE

    window.session.mode_override = "all"
    window.settings.threshold = 0.0  # an early exit is chosen: exit 5 is not it
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT) as blocker:
        window.open_paths(images[:2])
    view = blocker.args[0]
    first, other = window.session.queue.items[:2]
    qtbot.waitUntil(lambda: other.status == DONE, timeout=TIMEOUT)
    assert view.result.chosen < 5
    window.queue.select(other)
    del view.pictures[5], view.thumbs[5]  # exit 5 in the result, its pictures not yet
    window.queue.select(first)
    assert sorted(window.compare.exits) == [1, 2, 3, 4]
    cards = window.compare.strip.cards
    assert all(cards[k].data.lines for k in (1, 2, 3, 4))
