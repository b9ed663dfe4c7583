"""A new exit mode or threshold stopped before it could choose: the choice is set whole
or not at all. A re-choice that needed exits not computed yet set the new mode, rule
and verdicts on the result first and its exit last: stopped between the two, the result
was half re-chosen (mode "forced exit 4", chosen exit 2, "Exit 4 was asked for"), the
cards and Info panel were not redrawn, and what showed depended on what redrew next."""

from __future__ import annotations

import numpy as np

from rbqe.exit_policy import ExitPolicy
from rbqe.model import NUM_EXITS
from rbqe_studio.choice import rechoose
from rbqe_studio.state import path_key
from tests.app.test_app_stop_keeps_exits import TIMEOUT, hold_worker_after
from tests.helpers import tiny_enhancer


def done_at_exit_1(qtbot, window, photo) -> None:
    """``photo`` enhanced under a threshold every exit reaches: exit 1, its network state
    kept for the later exits (a re-choice continues from it)."""
    window.settings.threshold = 0.0
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths([photo])
    qtbot.waitUntil(lambda: not window.session.view_running, timeout=TIMEOUT)
    r = window.session.view.result
    assert r.chosen == 1 and r.can_continue and window.session.current.status == "done"


def test_a_new_mode_stopped_before_its_exit_keeps_the_old_choice_whole(qtbot, window, jpeg,
                                                                      tmp_path) -> None:
    photo = jpeg(tmp_path / "in" / "photo.jpg", size=(96, 64))
    done_at_exit_1(qtbot, window, photo)
    view = window.session.view
    before = window.info.fields["Why this exit"].text()
    assert before.startswith("Auto stopped at exit 1.")
    # Forced exit 4: exits 2-4 continue from the kept state; stopped after exit 3.
    go = hold_worker_after(window, "exit", lambda r: r[1].exit == 3)
    window.settings.exit_mode = "4"
    with qtbot.waitSignal(window.session.view_busy, timeout=TIMEOUT,
                          check_params_cb=lambda busy: not busy):
        window.setting_changed("exit_mode")
    assert go.is_set()
    qtbot.waitUntil(lambda: not window.session.view_running, timeout=TIMEOUT)
    r = view.result
    assert [e.exit for e in r.exits] == [1, 2, 3]  # the exits made before the Stop stay
    # The result's choice, as a whole: the one it had.
    assert (r.mode, r.chosen, r.decision.exit, r.decision.signal) == ("auto", 1, 1, "assessor")
    assert r.threshold == 0.0 and view.choice.mode == "auto"
    assert all(e.decision is not None and e.decision.signal == "assessor" for e in r.exits)
    # The window shows that choice, with the exits computed: cards and Info agree.
    info, cards = window.info.fields, window.compare.strip.cards
    assert info["Chosen exit"].text().startswith("Exit 1") and info["Mode"].text() == "auto"
    assert info["Why this exit"].text() == before
    assert window.compare.strip.chosen == 1 and cards[1].data.chosen
    assert cards[1].chosen_by_auto and "AUTO" in [b[0] for b in cards[1].badges()]
    assert [c.data.state for c in cards[1:]] == ["ready"] * 3 + ["skipped"] * 2
    assert window.status.text() == "Stopped: photo.jpg keeps exit 1, as chosen before"
    # The cache counts the exits the Stop kept (they were left out of its cost).
    assert window.session.model.cache.peek(path_key(photo)) is view
    assert window.session.model.cache.total == view.cost
    # Whatever redraws it next says the same: Compute all (the exits it lacks, no
    # new choice) read "Mode: forced exit 4" and "Exit 4 was asked for" beside exit 1.
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.acts.compute_all.trigger()
    qtbot.waitUntil(lambda: not window.session.view_running, timeout=TIMEOUT)
    assert len(r.exits) == NUM_EXITS and (r.mode, r.chosen) == ("auto", 1)
    assert info["Mode"].text() == "auto" and info["Why this exit"].text() == before
    assert info["Chosen exit"].text().startswith("Exit 1")
    assert window.compare.strip.chosen == 1 and cards[1].chosen_by_auto
    assert window.session.current.exit == 1


def test_a_re_choice_that_fails_on_the_way_changes_nothing_of_the_choice() -> None:
    """:func:`rechoose` itself: ``more`` cancelled (a Stop) after one of the exits it
    needed leaves mode, rule, chosen exit and every exit's verdict as they were."""
    enh = tiny_enhancer()
    img = np.random.default_rng(1).random((40, 56, 3), np.float32)
    result = enh.enhance(img, 1, keep_session=True)
    rechoose(result, ExitPolicy.assessor(0.0), "auto", lambda k: None)
    was = (result.mode, result.policy, result.threshold, result.chosen, result.decision)

    class Stopped(Exception):
        pass

    def more(k: int) -> None:  # exit 2 made, then the Stop
        enh.continue_exits(result, 2)
        raise Stopped

    try:
        rechoose(result, ExitPolicy.assessor(1.01), 4, more)
    except Stopped:
        pass
    else:
        raise AssertionError("the Stop was swallowed")
    assert [e.exit for e in result.exits] == [1, 2]
    assert (result.mode, result.policy, result.threshold, result.chosen,
            result.decision) == was
    # Exit 2's verdict under the rule the result was chosen by (reached: stop), not the
    # new one's (1.01: go on).
    assert [e.decision.stop for e in result.exits] == [True, True]
