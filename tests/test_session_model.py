"""The app's session model and exit re-choice as plain Python: no Qt, no QApplication.

Jobs go to a list instead of a worker; the worker's reports are made by hand (or, for the
re-choice, by a tiny real enhancer), and the events the model returns are checked.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from rbqe.batch import ItemReport
from rbqe.engine import Enhancer, EnhanceResult, ExitResult
from rbqe.exit_policy import ExitPolicy
from rbqe.io import load_image
from rbqe.model import ModelConfig, RBQENet
from rbqe.weights import PACKAGE_WEIGHTS
from rbqe_studio import session_model as sm
from rbqe_studio.choice import rechoose
from rbqe_studio.jobs import (
    ContinueJob,
    LoadOutputsJob,
    PolicyChoice,
    ProcessJob,
    RechooseJob,
    SaveJob,
    SaveOutcome,
    ViewData,
)
from rbqe_studio.settings import AppSettings
from rbqe_studio.state import BLOCKED, DONE, FAILED, RUNNING, WAITING, path_key
from tests.helpers import second_run, tiled_view


class _Pic:
    """Stands in for a Picture: the model only ever asks its size in bytes."""

    nbytes = 1000


def photo(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (24, 32, 3), np.uint8)).save(path, quality=30)
    return path


def view_of(path: Path, exits: int | None = None) -> ViewData:
    """A view of ``path`` as the worker makes it; with ``exits``, a result for 1..exits."""
    view = ViewData(path, load_image(path), _Pic(), None)
    if exits is not None:
        img = view.loaded.pixels
        view.result = EnhanceResult([ExitResult(k, img, 0.5 + k / 10, 1.0, 1.0, float(k))
                                     for k in range(1, exits + 1)], exits, 0.8, "auto", "cpu",
                                    (img.shape[1], img.shape[0]))
    return view


def kinds(events: list) -> list[str]:
    return [type(e).__name__ for e in events]


@pytest.fixture
def model(tmp_path: Path):
    jobs: list = []
    m = sm.SessionModel(AppSettings(), jobs.append, weights=str(tmp_path / "w.safetensors"))
    m.jobs = jobs  # what the worker was handed, in order
    return m


def test_the_model_loads_no_qt() -> None:
    code = ("import sys, rbqe_studio.session_model, rbqe_studio.jobs, rbqe_studio.choice; "
            "print(sorted(m for m in sys.modules if m.startswith('PySide6.Qt')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_queue_runs_in_the_background_one_at_a_time(model, tmp_path) -> None:
    a, b = photo(tmp_path / "a.jpg"), photo(tmp_path / "b.jpg", 1)
    events = model.add_paths([a, b])
    assert kinds(events) == ["ItemsAdded", "ItemChanged"]
    (job,) = model.jobs
    assert isinstance(job, ProcessJob) and job.path == a and job.mode == "auto"
    assert job.policy == PolicyChoice(None)  # the weights' own policy
    item_a, item_b = model.queue.items
    assert item_a.status == RUNNING and item_b.status == WAITING
    # Reports of the background job reach no view: nothing is selected.
    assert model.on_loaded(job.gen, view_of(a)) == []
    done = model.on_finished(job.gen, view_of(a, exits=2))
    assert kinds(done) == ["ItemChanged", "ItemChanged"]  # a done, b started
    assert item_a.status == DONE and item_a.exit == 2 and item_b.status == RUNNING
    assert model.jobs[-1].path == b


def test_the_viewed_image_goes_first_and_stale_reports_are_dropped(model, tmp_path) -> None:
    a, b = photo(tmp_path / "a.jpg"), photo(tmp_path / "b.jpg", 1)
    model.add_paths([a, b])
    background = model.jobs[-1]
    item_b = model.queue.items[1]
    events = model.select(item_b)
    assert background.cancel.is_set()  # made room for the viewed image
    assert events == []  # b starts when the worker has let a go
    assert kinds(model.on_cancelled(background.gen)) == ["ItemChanged", "ItemChanged",
                                                          "ViewBusy"]
    mine = model.jobs[-1]
    assert mine.path == b and model.queue.items[0].status == WAITING
    # A late report of the cancelled job changes nothing on screen.
    assert model.on_exit(background.gen, view_of(a, 1).result.exits[0], view_of(a)) == []
    assert kinds(model.on_loaded(mine.gen, view_of(b))) == ["ViewLoaded"]
    view = view_of(b, exits=3)
    assert kinds(model.on_finished(mine.gen, view)) == ["ItemChanged", "ViewBusy",
                                                         "ViewFinished", "ItemChanged"]
    assert model.view is view and item_b.exit == 3
    # Back and forth: the cached view comes back at once, with no job.
    model.select(model.queue.items[0])
    n = len(model.jobs)
    events = model.select(item_b)
    assert kinds(events) == ["ViewLoaded", "ExitReady", "ExitReady", "ExitReady",
                             "ViewFinished"]
    assert len(model.jobs) == n


def test_a_threshold_change_rechooses_without_running_again(model, tmp_path) -> None:
    a = photo(tmp_path / "a.jpg")
    model.add_paths([a])
    item = model.queue.items[0]
    model.select(item)
    job = model.jobs[-1]
    view = view_of(a, exits=2)
    for e in view.result.exits:
        e.signals = SimpleNamespace()  # what the engine keeps for an untiled image
    model.on_finished(job.gen, view)
    model.settings.threshold = 0.9
    events = model.setting_changed("threshold")
    assert kinds(events) == ["ChoiceChanged", "ViewBusy"]
    again = model.jobs[-1]
    assert isinstance(again, RechooseJob) and again.view is view
    assert again.policy == PolicyChoice(0.9) and again.mode == "auto"
    assert not any(isinstance(j, ProcessJob) for j in model.jobs[1:])
    # A second change before the first is done: the newest wins, the older is cancelled.
    model.settings.threshold = 0.7
    model.setting_changed("threshold")
    assert again.cancel.is_set() and model.jobs[-1].policy == PolicyChoice(0.7)
    assert model.on_cancelled(again.gen) == []
    view.result.chosen = 1
    events = model.on_finished(model.jobs[-1].gen, view)
    assert kinds(events) == ["ItemChanged", "ViewBusy", "ViewFinished"]
    assert item.exit == 1


def test_a_tiled_image_runs_again_on_a_new_choice(model, tmp_path) -> None:
    a = photo(tmp_path / "a.jpg")
    model.add_paths([a])
    model.select(model.queue.items[0])
    view = view_of(a, exits=1)
    view.result.tiled = True  # chosen on sample tiles: no signals for every exit
    model.on_finished(model.jobs[-1].gen, view)
    model.settings.exit_mode = "3"
    model.setting_changed("exit_mode")
    job = model.jobs[-1]
    assert isinstance(job, ProcessJob) and job.mode == 3


def test_mode_override_gives_way_to_the_settings(model, tmp_path) -> None:
    model.mode_override = "all"
    assert model.mode == "all"
    model.settings.exit_mode = "2"
    model.setting_changed("exit_mode")
    assert model.mode == 2 and model.mode_override is None


def test_engine_settings_rebuild_and_unblock(model, tmp_path) -> None:
    a = photo(tmp_path / "a.jpg")
    model.add_paths([a])
    item = model.queue.items[0]
    model.select(item)
    job = model.jobs[-1]
    events = model.on_engine_failed(job.gen, "no weights file at w.safetensors")
    assert kinds(events) == ["ItemChanged", "ViewBusy", "EngineError"]
    assert item.status == BLOCKED and model.engine_broken
    model.settings.weights_file = str(tmp_path / "chosen.safetensors")
    events = model.setting_changed("weights_file")
    assert isinstance(events[0], sm.WeightsChanged)
    assert item.status == RUNNING and not model.engine_broken
    assert model.jobs[-1].spec.weights == str(tmp_path / "w.safetensors")  # --weights wins


def test_the_shipped_model_unless_a_weights_file_is_chosen(tmp_path) -> None:
    m = sm.SessionModel(AppSettings(), [].append)
    assert m.weights == str(PACKAGE_WEIGHTS)
    m.settings.weights_file = str(tmp_path / "mine.safetensors")
    assert m.setting_changed("weights_file")[0] == sm.WeightsChanged(m.settings.weights_file)
    assert m.weights == m.settings.weights_file
    m.settings.weights_file = ""
    m.setting_changed("weights_file")
    assert m.weights == str(PACKAGE_WEIGHTS)


def test_failures_and_saves_are_reported(model, tmp_path) -> None:
    a = photo(tmp_path / "a.jpg")
    model.add_paths([a])
    item = model.queue.items[0]
    model.select(item)
    model.on_failed(model.jobs[-1].gen, f"{a}: cannot read")
    assert item.status == FAILED and item.error.endswith("cannot read")
    item.reset()
    model.reprocess_current()
    view = view_of(a, exits=2)
    model.on_finished(model.jobs[-1].gen, view)
    events = model.save([2], targets={2: tmp_path / "out.png"})
    save = model.jobs[-1]
    assert isinstance(save, SaveJob) and save.exits == [2] and save.view is view
    assert kinds(events) == ["Message"]
    events = model.on_finished(save.gen, SaveOutcome([tmp_path / "out.png"]))
    assert kinds(events) == ["Saved", "ItemChanged"]
    assert item.outputs == [tmp_path / "out.png"]  # for "Show in folder"
    assert kinds(model.compute_all()) == ["ViewBusy", "Message"]  # "Computing exits …"
    assert isinstance(model.jobs[-1], ContinueJob)


def test_batch_results_load_the_saved_outputs(model, tmp_path) -> None:
    a = photo(tmp_path / "a.jpg")
    out = tmp_path / "out" / "a_rbqe.png"
    photo(out)
    report = ItemReport(a, "ok", outputs={"3": out}, exit=3, scores={"3": 0.9},
                        times_ms={"total": 12.0})
    events = model.open_batch_results([report])
    item = model.queue.items[0]
    assert isinstance(events[-1], sm.SelectItem) and events[-1].item is item
    assert item.status == DONE and item.exit == 3 and item.outputs == [out]
    model.select(item)
    job = model.jobs[-1]
    assert isinstance(job, LoadOutputsJob) and job.outputs == {3: out}
    # Unreadable outputs: the image is computed instead.
    events = model.on_failed(job.gen, "cannot read")
    assert isinstance(model.jobs[-1], ProcessJob) and item.report is None
    assert "enhancing it again" in events[1].text


def test_batch_outputs_of_a_photo_replaced_since_give_way_to_a_new_run(model, tmp_path
                                                                       ) -> None:
    """"Open in viewer" showed a batch's outputs of a photo replaced since beside the new
    photo (and Save wrote them under its name)."""
    from rbqe.io import source_identity

    a = photo(tmp_path / "a.jpg")
    batch_read = source_identity(a)
    out = tmp_path / "out" / "a_rbqe.png"
    photo(out)
    model.open_batch_results([ItemReport(a, "ok", outputs={"3": out}, exit=3,
                                         scores={"3": 0.9}, times_ms={"total": 12.0})])
    item = model.queue.items[0]
    model.select(item)
    job = model.jobs[-1]
    assert isinstance(job, LoadOutputsJob)
    photo(a, seed=9)  # replaced after the batch
    view = view_of(a, exits=3)
    view.source_id = source_identity(a)
    view.saved, view.saved_from = {3: out}, {3: batch_read}
    events = model.on_finished(job.gen, view)
    assert kinds(events)[:2] == ["ItemChanged", "Message"]
    assert events[1].text == "a.jpg changed on disk since it was enhanced: enhanced again"
    assert isinstance(model.jobs[-1], ProcessJob) and model.jobs[-1].path == a
    assert model.cache.peek(path_key(a)) is None and model.view is None


# -- the re-choice itself, with a tiny real enhancer -------------------------------------
@pytest.fixture
def enhancer() -> Enhancer:
    torch.manual_seed(0)
    return Enhancer(net=RBQENet(ModelConfig(1, 1, 8)), device="cpu", tile=0)


def test_a_view_shown_again_leaves_its_pending_rechoice_running(model, tmp_path) -> None:
    # The view's choice is set when its re-choice ends: shown again meanwhile, the view
    # read as "made under an older choice" and the job was cancelled and started over.
    a, b = photo(tmp_path / "a.jpg"), photo(tmp_path / "b.jpg", 1)
    model.add_paths([a, b])
    item_a, item_b = model.queue.items
    model.select(item_a)
    view = view_of(a, exits=2)
    for e in view.result.exits:
        e.signals = SimpleNamespace()  # what the engine keeps for an untiled image
    view.choice = model.choice
    model.on_finished(model.jobs[-1].gen, view)
    model.settings.threshold = 0.99
    model.setting_changed("threshold")
    (rechoice,) = [j for j in model._aux.values() if isinstance(j, RechooseJob)]
    assert rechoice.view is view
    model.select(item_b)
    n = len(model.jobs)
    model.select(item_a)
    assert not rechoice.cancel.is_set()
    assert [j for j in model._aux.values() if isinstance(j, RechooseJob)] == [rechoice]
    assert not any(isinstance(j, RechooseJob) for j in model.jobs[n:])


def test_only_the_view_on_screen_keeps_its_network_state(model, enhancer, tmp_path) -> None:
    # The state that continues a whole image's exits is about 0.5 KB a pixel (1 GB for a
    # 2 MP photo): held by every cached view, it filled the cache's budget on its own.
    a, b = photo(tmp_path / "a.jpg"), photo(tmp_path / "b.jpg", 1)
    model.add_paths([a, b])
    item_a, item_b = model.queue.items

    def finished(job, path: Path) -> ViewData:
        view = view_of(path)
        view.result = enhancer.enhance(view.loaded.pixels, 2, keep_session=True)
        model.on_finished(job.gen, view)
        return view

    model.select(item_a)  # already running: the view catches up with it
    view_a = finished(model.jobs[-1], a)
    assert model.view is view_a and view_a.result.can_continue  # on screen: kept
    view_b = finished(model.jobs[-1], b)  # done in the background
    assert not view_b.result.can_continue
    # Compute all on a, then b viewed while it runs: a keeps its state until the job ends.
    model.compute_all()
    cont = model.jobs[-1]
    assert isinstance(cont, ContinueJob)
    model.select(item_b)
    assert view_a.result.can_continue
    model.on_cancelled(cont.gen)
    assert not view_a.result.can_continue
    # Shown again from the cache: its exits and their signals are all there (a new mode
    # or policy is still chosen without a run; more exits take a new one).
    model.select(item_a)
    assert model.view is view_a and view_a.can_rechoose and not view_a.result.can_continue


def test_a_kept_state_leaves_the_other_cached_views_alone(model, enhancer, tmp_path) -> None:
    """The cache counted a kept state as H x W x 768 bytes: a 1920 x 1080 photo on
    screen, 1.6 GB, passed its 1.5 GB budget alone and evicted every other view (going
    back to them ran the network again). Only the view on screen keeps one now."""
    paths = [photo(tmp_path / f"p{i}.jpg", i) for i in range(6)]
    model.add_paths(paths)
    *others, shown = model.queue.items
    for _ in others:  # done in the background, one after another
        job = model.jobs[-1]
        model.on_finished(job.gen, view_of(job.path, exits=2))
    model.select(shown)  # already running: the view catches up with it
    view = view_of(shown.path)
    view.result = enhancer.enhance(view.loaded.pixels, 2, keep_session=True)
    view.loaded = dataclasses.replace(  # as if 1920 x 1080 (the state's size is not asked)
        view.loaded, pixels=np.zeros((1080, 1920, 3), np.float32))
    model.on_finished(model.jobs[-1].gen, view)
    assert model.view is view and view.result.can_continue
    assert all(path_key(item.path) in model.cache for item in model.queue.items)
    assert model.cache.total < sm.CACHE_BUDGET


def test_a_view_shown_again_catches_up_with_the_job_computing_its_exits(model,
                                                                       tmp_path) -> None:
    """Left while Compute all ran and shown again from the cache, a view showed the exits
    it had then, and never those the job went on to make (their reports were dropped)."""
    a, b = photo(tmp_path / "a.jpg"), photo(tmp_path / "b.jpg", 1)
    model.add_paths([a, b])
    item_a, item_b = model.queue.items
    model.select(item_a)
    view = view_of(a, exits=2)
    model.on_finished(model.jobs[-1].gen, view)
    model.compute_all()
    cont = model.jobs[-1]
    assert isinstance(cont, ContinueJob)
    model.select(item_b)
    events = model.select(item_a)
    assert kinds(events)[-1] == "ViewBusy" and events[-1].busy
    e3 = ExitResult(3, view.loaded.pixels, 0.8, 1.0, 1.0, 3.0)
    view.result.exits.append(e3)
    assert kinds(model.on_exit(cont.gen, e3, view)) == ["ExitReady"]
    assert kinds(model.on_finished(cont.gen, view))[-2:] == ["ViewBusy", "ViewFinished"]


def test_a_late_job_leaves_the_cost_of_a_view_made_again_alone(model, tmp_path) -> None:
    """After Process again, the old view's Compute all or Save all ending set its cost
    on the new view's cache entry."""
    a = photo(tmp_path / "a.jpg")
    model.add_paths([a])
    model.select(model.queue.items[0])
    old = view_of(a, exits=2)
    model.on_finished(model.jobs[-1].gen, old)
    model.compute_all()
    cont = model.jobs[-1]
    model.save([1, 2, 3, 4, 5], folder=tmp_path)
    save = model.jobs[-1]
    assert isinstance(cont, ContinueJob) and isinstance(save, SaveJob)
    model.reprocess_current()
    new = view_of(a, exits=1)
    model.on_finished(model.jobs[-1].gen, new)
    assert model.cache.total == new.cost
    img = old.loaded.pixels
    old.result.exits += [ExitResult(k, img, 0.8, 1.0, 1.0, float(k)) for k in (3, 4, 5)]
    assert old.cost > new.cost
    model.on_finished(cont.gen, old)
    model.on_finished(save.gen, SaveOutcome([tmp_path / "a_exit1.png"]))
    assert model.cache.peek(path_key(a)) is new and model.cache.total == new.cost


def _first(enh: Enhancer, img: np.ndarray, mode) -> EnhanceResult:
    return enh.enhance(img, mode, keep_session=True)


def test_rechoose_walks_the_kept_signals_and_continues_only_beyond(enhancer) -> None:
    img = np.random.default_rng(1).random((40, 56, 3), np.float32)
    result = _first(enhancer, img, 2)
    asked: list[int] = []

    def more(k: int) -> None:
        asked.append(k)
        enhancer.continue_exits(result, k)

    # A threshold every exit reaches: exit 1, no network.
    rechoose(result, ExitPolicy.assessor(0.0), "auto", more)
    assert (result.chosen, result.mode, asked) == (1, "auto", [])
    assert result.decision.signal == "assessor" and result.exits[0].decision.stop
    # Forced exit 4: exits 3 and 4 continue from the cached stages.
    rechoose(result, ExitPolicy.assessor(0.0), 4, more)
    assert (result.chosen, asked) == (4, [4]) and len(result.exits) == 4
    # A threshold none reaches: one more exit, then the last exit.
    rechoose(result, ExitPolicy.assessor(1.01), "auto", more)
    assert (result.chosen, asked) == (5, [4, 5])
    assert result.decision.signal == "last exit" and result.threshold == 1.01
    # Same pixels as running exit 5 from scratch.
    whole = enhancer.enhance(img, 5)
    assert np.array_equal(result.exit_result(5).image, whole.exit_result(5).image)


def test_rechoose_refuses_exits_without_signals(enhancer) -> None:
    img = np.random.default_rng(2).random((32, 32, 1), np.float32)
    result = _first(enhancer, img, 2)
    result.exits[1].signals = None
    with pytest.raises(ValueError, match="running again"):
        rechoose(result, ExitPolicy.assessor(0.5), "auto", lambda k: None)


# -- Compute all exits on a tiled picture: a second run from exit 1 ------------------------
def test_a_tiled_pictures_second_run_says_so_in_its_progress(model, tmp_path) -> None:
    # "Computing exits 1–4 … runs again" was replaced at once by "Tiled image: trying the
    # exits on sample tiles · 0%", read as the first run starting over.
    from rbqe_studio.session_events import Progress
    from rbqe_studio.state import tiled_progress_text

    a = photo(tmp_path / "a.jpg")
    model.add_paths([a])
    model.select(model.queue.items[0])
    first = model.jobs[-1]
    assert [e for e in model.on_progress(first.gen, "sample", 1, 5)
            if isinstance(e, Progress)][0].again == ""  # the first run: nothing to add
    model.on_finished(first.gen, tiled_view(a))
    model.compute_all()
    again = model.jobs[-1]
    (progress,) = [e for e in model.on_progress(again.gen, "sample", 2, 5)
                   if isinstance(e, Progress)]
    assert progress.again == "exits 1–4"
    assert tiled_progress_text("sample", 2, 5, None, progress.again) == \
        "Tiled image, exits 1–4 (a second run): trying the exits on sample tiles · 40%"
    assert tiled_progress_text("tile", 3, 6, 12.0, "exits 1–4").startswith(
        "Tiled image, exits 1–4 (a second run): enhancing tile by tile · 50%")
    assert tiled_progress_text("sample", 2, 5, None) == \
        "Tiled image: trying the exits on sample tiles · 40%"


def test_compute_all_names_the_exits_it_lacks(model, tmp_path) -> None:
    """A tiled picture's auto result holds its chosen exit only: it said "Computing exits
    2–5" (one exit computed, so 2 was taken for the first missing) while 1-4 ran."""
    a = photo(tmp_path / "a.jpg")
    model.add_paths([a])
    model.select(model.queue.items[0])
    said = {}
    for exits in ((5,), (2, 5), (1, 2, 3, 5)):
        view = tiled_view(a, exits)
        model.on_finished(model.jobs[-1].gen, view)
        events = model.compute_all()
        said[exits] = events[-1].text
        model.on_cancelled(model.jobs[-1].gen)
        model.reprocess_current()
    assert said == {
        (5,): "Computing exits 1–4 of a.jpg (a tiled picture runs again from exit 1)…",
        (2, 5): "Computing exits 1, 3–4 of a.jpg (a tiled picture runs again from exit 1)…",
        (1, 2, 3, 5): "Computing exit 4 of a.jpg (a tiled picture runs again from exit 1)…",
    }
    # A whole image continues from its kept state: said as before.
    view = view_of(a, exits=2)
    view.result._session = SimpleNamespace(run=SimpleNamespace(exits_done=2))
    model.on_finished(model.jobs[-1].gen, view)
    assert model.compute_all()[-1].text == "Computing exits 3–5 of a.jpg…"


def test_a_tiled_pictures_cost_stays_its_own_runs_after_compute_all(model, tmp_path) -> None:
    """After Compute all exits the queue row, status bar and Info's Total read 51.9 s of a
    32 s result, and exit 5's card "Σ 48.65 s": the second run's exits 1-4 were summed
    with the first run's exit 5."""
    a = photo(tmp_path / "a.jpg")
    model.add_paths([a])
    item = model.queue.items[0]
    model.select(item)
    view = tiled_view(a)
    model.on_finished(model.jobs[-1].gen, view)
    before = view.chosen_cost()
    assert before == (32_000.0, 300.0) and item.time_ms == 32_000.0
    model.compute_all()
    job = model.jobs[-1]
    assert isinstance(job, ContinueJob)
    added = view.add_run(second_run(view))  # what the worker does with its new run
    assert [e.exit for e in added] == [1, 2, 3, 4]
    assert [e.exit for e in view.result.exits] == [1, 2, 3, 4, 5]
    assert view.result.exit_result(5).score == 1.0  # the first run's exit 5 is kept
    model.on_finished(job.gen, view)
    assert view.chosen_cost() == before and item.time_ms == 32_000.0
    # The cards' Σ: within the run that made each exit, never across the two.
    r = view.result
    assert [view.cum_ms(k, r.exits) for k in range(1, 6)] == [4_000.0, 8_000.0, 12_000.0,
                                                              16_000.0, 31_900.0]
    assert view.run_of == {1: 1, 2: 1, 3: 1, 4: 1}
    (run,) = view.extra_runs
    assert (run.exits, run.total_ms, run.gmacs) == ([1, 2, 3, 4], 20_000.0, 387.5)
    # A whole image's exits are all its own run's: as before.
    whole = view_of(a, exits=3)
    assert whole.run_of == {} and whole.cum_ms(3, whole.result.exits) == 6.0


def test_a_photo_changed_on_disk_is_enhanced_again_not_saved_stale(model, tmp_path) -> None:
    """A photo replaced on disk after its result kept that result: opened again it was
    "already in the queue", and Save wrote the old picture under the photo's name."""
    from rbqe.io import source_identity

    a, b = photo(tmp_path / "a.jpg"), photo(tmp_path / "b.jpg", 1)
    model.add_paths([a, b])
    item_a, item_b = model.queue.items
    model.select(item_a)  # its job is already on its way

    def finish(path: Path) -> ViewData:
        job = model.jobs[-1]
        if job.path != path:  # the background job makes room for the viewed photo first
            assert job.cancel.is_set()
            model.on_cancelled(job.gen)
            job = model.jobs[-1]
        assert isinstance(job, ProcessJob) and job.path == path
        view = view_of(path, exits=2)
        view.source_id = source_identity(path)  # as the worker takes it, before the read
        model.on_finished(job.gen, view)
        return view

    finish(a)
    assert model.enhance_if_changed(item_a) == []  # unchanged: nothing to do
    photo(a, seed=2)  # the user replaces the photo
    n = len(model.jobs)
    events = model.save([2], targets={2: tmp_path / "out.png"})
    assert kinds(events)[:2] == ["Message", "ItemChanged"] and events[0].error
    assert events[0].text.startswith("Nothing saved: a.jpg changed on disk")
    assert not any(isinstance(j, SaveJob) for j in model.jobs[n:])
    assert not (tmp_path / "out.png").exists()
    finish(a)  # enhanced again, from the new file
    # Off screen (cached), replaced again, opened again: its old result is dropped and
    # the photo runs again when shown.
    model.select(item_b)
    finish(b)
    photo(a, seed=3)
    events = model.enhance_if_changed(item_a)
    assert kinds(events)[:2] == ["ItemChanged", "Message"]
    assert events[1].text == "a.jpg changed on disk since it was enhanced: enhanced again"
    assert item_a.status == RUNNING and model.cache.peek(path_key(a)) is None  # in its turn
    model.select(item_a)
    finish(a)
    assert model.view.result is not None and model.enhance_if_changed(item_a) == []


def test_one_image_is_taken_out_of_the_queue(model, tmp_path) -> None:
    """Only Clear took images out of the queue: one bad or unwanted photo in a folder
    stayed, and ran."""
    a, b, c = (photo(tmp_path / f"{n}.jpg", i) for i, n in enumerate("abc"))
    model.add_paths([a, b, c])
    item_a, item_b, item_c = model.queue.items
    running = model.jobs[-1]
    assert running.path == a
    # Out while it runs in the background: its job stops, and its late end is not kept.
    assert model.remove(item_a) == []
    assert running.cancel.is_set() and model.queue.items == [item_b, item_c]
    model.on_finished(running.gen, view_of(a, exits=2))
    assert model.cache.peek(path_key(a)) is None
    assert model.jobs[-1].path == b  # the next waiting image goes on
    # Out while viewed: the view goes, and the cached result with it.
    model.select(item_b)
    model.on_finished(model.jobs[-1].gen, view_of(b, exits=3))
    assert model.view is not None and model.cache.peek(path_key(b)) is not None
    events = model.remove(item_b)
    assert kinds(events)[0] == "ViewBusy" and model.current is None and model.view is None
    assert model.cache.peek(path_key(b)) is None and model.queue.items == [item_c]
    assert model.remove(item_b) == []  # already out
    # Opened again later, it is a new image of the queue.
    model.add_paths([b])
    assert [i.path for i in model.queue.items] == [c, b]


def test_an_image_under_a_link_moved_since_it_was_queued_is_taken_out(model, tmp_path
                                                                       ) -> None:
    """Its path's key resolves links: the card's folder link re-pointed after the image
    was queued gave another key, remove() did nothing, and the image ran on, its row
    gone."""
    card = tmp_path / "card"
    card.symlink_to(photo(tmp_path / "disk1" / "a.jpg").parent, target_is_directory=True)
    photo(tmp_path / "disk2" / "a.jpg", 1)
    b = photo(tmp_path / "b.jpg", 2)
    model.add_paths([card / "a.jpg", b])
    item_a, item_b = model.queue.items
    running = model.jobs[-1]
    assert running.path == card / "a.jpg"
    card.unlink()
    card.symlink_to(tmp_path / "disk2", target_is_directory=True)
    model.remove(item_a)
    assert running.cancel.is_set()
    assert len(model.queue) == 1 and model.queue.items[0] is item_b
    assert model.queue.key_of(item_a) is None and model.remove(item_a) == []
    model.on_cancelled(running.gen)
    assert model.jobs[-1].path == b and item_b.status == RUNNING


def test_a_dropped_views_other_jobs_stop_with_it(model, tmp_path) -> None:
    """A view dropped while off screen (taken out of the queue, changed on disk) or on
    screen (changed on disk) kept its Compute all and its re-choice running for nothing:
    only the viewed one's were stopped, and only by Remove."""
    from rbqe.io import source_identity

    model.add_paths([photo(tmp_path / f"{n}.jpg", i) for i, n in enumerate("abc")])
    item_a, item_b, item_c = model.queue.items

    def ended() -> None:  # the worker reports the end of each job cancelled so far
        for job in [j for j in model.jobs if j.cancel.is_set()]:
            model.on_cancelled(job.gen)

    def shown(item) -> ViewData:
        """``item`` on screen, and its run done."""
        model.select(item)
        ended()
        run = model._running
        assert run is not None and run.item is item
        view = view_of(item.path, exits=2)
        for e in view.result.exits:
            e.signals = SimpleNamespace()  # what the engine keeps for an untiled image
        view.source_id = source_identity(item.path)
        model.on_finished(run.job.gen, view)
        return view

    def busy(view: ViewData, threshold: float) -> list:
        """Compute all and a new threshold's re-choice under way for the viewed ``view``."""
        ended()
        model.compute_all()
        model.settings.threshold = threshold
        model.setting_changed("threshold")
        jobs = [j for j in model._aux.values() if j.view is view]
        assert sorted(type(j).__name__ for j in jobs) == ["ContinueJob", "RechooseJob"]
        assert not any(j.cancel.is_set() for j in jobs)
        return jobs

    jobs = busy(shown(item_a), 0.9)
    view_b = shown(item_b)  # a off screen: its jobs go on, as they should
    assert not any(j.cancel.is_set() for j in jobs)
    model.remove(item_a)
    assert all(j.cancel.is_set() for j in jobs)
    jobs = busy(view_b, 0.8)
    view_c = shown(item_c)
    photo(item_b.path, seed=7)  # replaced while off screen, then opened again
    assert kinds(model.enhance_if_changed(item_b))[:2] == ["ItemChanged", "Message"]
    assert all(j.cancel.is_set() for j in jobs)
    jobs = busy(view_c, 0.7)
    photo(item_c.path, seed=8)  # replaced while on screen, then opened again
    assert kinds(model.enhance_if_changed(item_c))[:2] == ["Message", "ItemChanged"]
    assert all(j.cancel.is_set() for j in jobs)
    # Process again: the old view's jobs stop too (their exits would join a result that
    # is about to be replaced).
    view_c = shown(item_c)
    jobs = busy(view_c, 0.6)
    model.reprocess_current()
    assert all(j.cancel.is_set() for j in jobs)


def test_a_failed_photo_opened_again_is_tried_again(model, tmp_path) -> None:
    """A truncated photo the user repaired stayed failed: opened again it was "already in
    the queue"."""
    a, b = photo(tmp_path / "a.jpg"), photo(tmp_path / "b.jpg", 1)
    model.add_paths([a, b])
    item_a, item_b = model.queue.items
    model.on_failed(model.jobs[-1].gen, f"{a}: truncated or corrupt image data")
    assert item_a.status == FAILED and model.jobs[-1].path == b
    # Off screen: back to waiting, run in its turn.
    events = model.enhance_if_changed(item_a)
    assert kinds(events) == ["ItemChanged", "Message"] and not events[1].error
    assert events[1].text == "a.jpg could not be enhanced before: trying it again"
    assert item_a.status == WAITING and item_a.error == ""
    model.on_finished(model.jobs[-1].gen, view_of(b, exits=2))
    assert model.jobs[-1].path == a and item_a.status == RUNNING
    # On screen: run at once, as Process again does.
    model.select(item_a)
    assert kinds(model.on_failed(model.jobs[-1].gen, "still broken"))[-1] == "ViewFailed"
    n = len(model.jobs)
    events = model.enhance_if_changed(item_a)
    assert kinds(events) == ["Message", "ItemChanged", "ItemChanged", "ViewBusy"]
    assert events[0].text == "a.jpg could not be enhanced before: trying it again"
    (job,) = model.jobs[n:]
    assert isinstance(job, ProcessJob) and job.path == a and item_a.status == RUNNING
    assert kinds(model.on_loaded(job.gen, view_of(a))) == ["ViewLoaded"]


def test_save_says_a_changed_photo_is_enhanced_again_before_asking_where(model, tmp_path
                                                                         ) -> None:
    """Save and Save all asked for a file or folder first, and only then said "Nothing
    saved: a.jpg changed on disk"."""
    from rbqe.io import source_identity

    a = photo(tmp_path / "a.jpg")
    model.add_paths([a])
    model.select(model.queue.items[0])
    view = view_of(a, exits=2)
    view.source_id = source_identity(a)
    model.on_finished(model.jobs[-1].gen, view)
    assert model.check_before_save() == []  # unchanged: the dialog may ask
    photo(a, seed=2)
    n = len(model.jobs)
    events = model.check_before_save()
    assert kinds(events)[:2] == ["Message", "ItemChanged"] and events[0].error
    assert events[0].text == ("Nothing saved: a.jpg changed on disk since it was enhanced, "
                              "so it is enhanced again; save it then")
    (job,) = model.jobs[n:]
    assert isinstance(job, ProcessJob) and job.path == a and model.view is None
    assert model.check_before_save() == []  # nothing to save until it is done


def test_exits_read_from_a_batch_are_of_the_photo_as_the_batch_read_it(tmp_path) -> None:
    """A batch's result whose photo was replaced after the batch was shown beside the new
    photo and saved under its name: the viewer's own read of the photo (source_id) was
    taken when it showed it, so it always matched."""
    from rbqe.io import source_identity

    a = photo(tmp_path / "a.jpg")
    batch_read = source_identity(a)
    photo(a, seed=5)  # replaced after the batch
    view = view_of(a, exits=5)
    view.source_id = source_identity(a)  # the viewer reads the new photo
    view.saved, view.saved_from = {5: tmp_path / "a_rbqe.png"}, {5: batch_read}
    assert sm.changed(view)
    view.saved_from = {5: source_identity(a)}  # made from the photo as it is
    assert not sm.changed(view)


def test_a_changed_photo_off_screen_runs_in_its_turn(model, tmp_path) -> None:
    """Said to be "enhanced again", a changed photo off screen only waited: nothing
    started the queue (the photo on screen was done and unchanged)."""
    from rbqe.io import source_identity

    a, b = photo(tmp_path / "a.jpg"), photo(tmp_path / "b.jpg", 1)
    model.add_paths([a, b])
    item_a, item_b = model.queue.items
    for path in (a, b):  # both done, a on screen
        job = model.jobs[-1]
        view = view_of(path, exits=2)
        view.source_id = source_identity(path)
        model.on_finished(job.gen, view)
    model.select(item_a)
    assert model._running is None
    photo(b, seed=6)
    events = model.enhance_if_changed(item_b)
    assert "Message" in kinds(events)
    assert model._running is not None and model.jobs[-1].path == b


def test_stop_after_a_second_change_brings_the_earlier_result_back(model, tmp_path):
    """A second setting change while the photo reran made the rerun superseded; Stop
    pressed before it ended was then lost: busy for good, a blank view, nothing back."""
    a = photo(tmp_path / "a.jpg")
    model.add_paths([a])
    item = model.queue.items[0]
    model.select(item)
    job = model.jobs[-1]
    model.on_loaded(job.gen, view_of(a))
    model.on_finished(job.gen, view_of(a, exits=3))
    shown = model.view
    model.reprocess_current()  # a first change: the photo reruns
    first = model.jobs[-1]
    model.reprocess_current()  # a second one while it does: that run is superseded
    assert first.cancel.is_set()
    model.stop()  # Stop, before the superseded run has ended
    events = model.on_cancelled(first.gen)
    assert "ViewBusy" in kinds(events) and "ViewFinished" in kinds(events)
    assert model.view is shown and item.status == DONE and not model.view_running
    # Without Stop, its end starts the newest choice's run instead (a failure too).
    model.reprocess_current()
    again = model.jobs[-1]
    model.reprocess_current()
    events = model.on_failed(again.gen, "truncated")
    assert item.status != "failed" and model.jobs[-1] is not again and model.view_running


# -- Stop keeps the exits made before it ---------------------------------------------------
def stop_after(view: ViewData, k: int) -> EnhanceResult:
    """What the worker sends with its ``cancelled`` signal when ``view``'s run is
    cancelled after exit ``k`` (:func:`rbqe_studio.worker.stopped_result`): those exits,
    none chosen. The view itself is left as it was (no result)."""
    img = view.loaded.pixels
    return EnhanceResult([ExitResult(j, img, 0.5 + j / 10, 1.0, 1.0, float(j),
                                     SimpleNamespace()) for j in range(1, k + 1)],
                         k, 0.8, "auto", "cpu", (img.shape[1], img.shape[0]))


def test_a_stop_keeps_the_exits_made_before_it_to_view_and_save(model, tmp_path) -> None:
    """A photo stopped after exit 3 of 5 (exit 3 good enough) could not be saved: the
    exits made were dropped with the run, and it had to run again from the start."""
    a, b = photo(tmp_path / "a.jpg"), photo(tmp_path / "b.jpg", 1)
    model.add_paths([a, b])
    item, other = model.queue.items
    model.select(item)
    job = model.jobs[-1]
    view = view_of(a)
    model.on_loaded(job.gen, view)
    assert kinds(model.stop()) == ["Message"] and job.cancel.is_set()
    events = model.on_cancelled(job.gen, stop_after(view, 3))  # ended after exit 3
    assert kinds(events) == ["ItemChanged", "ViewBusy", "ViewFinished", "ItemChanged"]
    assert events[2].view is view and model.view is view and not model.view_running
    assert item.status == WAITING and item.stopped and item.exit == 3 and item.score is None
    assert model.save_job([3]) is not None  # Save has something to save
    assert model.jobs[-1].path == b  # the background goes on with the others, not it
    # Left and viewed again: the exits come back as they were, nothing runs again.
    model.select(other)
    n = len(model.jobs)
    events = model.select(item)
    assert kinds(events) == ["ViewLoaded", "ExitReady", "ExitReady", "ExitReady",
                             "ViewFinished"]
    assert len(model.jobs) == n and item.stopped and model.view is view
    # Process again runs it from exit 1.
    running_b = model.jobs[-1]
    model.reprocess_current()
    assert not item.stopped and item.exit is None and model.cache.peek(path_key(a)) is None
    model.on_cancelled(running_b.gen)  # b's run made room for it
    again = model.jobs[-1]
    assert isinstance(again, ProcessJob) and again.path == a and item.status == RUNNING


def test_only_a_stop_keeps_a_cancelled_runs_exits(model, tmp_path) -> None:
    """A background run cancelled to make room for the viewed photo is not the user's
    Stop: its exits are dropped and it runs again in its turn, as before."""
    a, b = photo(tmp_path / "a.jpg"), photo(tmp_path / "b.jpg", 1)
    model.add_paths([a, b])
    background = model.jobs[-1]
    model.on_loaded(background.gen, view_of(a))
    item_a, item_b = model.queue.items
    model.select(item_b)
    assert background.cancel.is_set()
    model.on_cancelled(background.gen, stop_after(model._running.view, 2))  # exits 1-2
    assert item_a.status == WAITING and not item_a.stopped and item_a.exit is None
    assert model.cache.peek(path_key(a)) is None


def stopped_on_screen(model, path: Path, k: int) -> tuple:
    """``path``'s queued photo viewed (its run the one running) and stopped by the user
    after exit ``k``: its item and the view that keeps exits 1..k."""
    item = model.queue.get(path)
    model.select(item)
    job = model.jobs[-1]
    assert job.path == path
    view = view_of(path)
    model.on_loaded(job.gen, view)
    model.stop()
    model.on_cancelled(job.gen, stop_after(view, k))
    assert item.stopped and model.view is view and view.stopped_after == k
    return item, view


def rechosen(model, view, exit_: int) -> list:
    """A new threshold applied to the stopped ``view`` on screen, whose re-choice (run
    in the worker) picks ``exit_`` among its exits; the events of its end."""
    model.settings.threshold = 0.6
    model.setting_changed("threshold")
    chosen = model.jobs[-1]
    assert isinstance(chosen, RechooseJob) and chosen.view is view
    view.stopped_after, view.result.chosen = None, exit_  # as the worker's re-choice ends
    return model.on_finished(chosen.gen, view)


def test_a_new_choice_chooses_among_a_stopped_photos_exits(model, tmp_path) -> None:
    a = photo(tmp_path / "a.jpg")
    model.add_paths([a])
    item, view = stopped_on_screen(model, a, 3)
    events = rechosen(model, view, 2)
    assert kinds(events) == ["ItemChanged", "ViewBusy", "ViewFinished"]
    assert item.status == DONE and not item.stopped and item.exit == 2


def test_a_batchs_results_replace_a_stopped_photos_exits(model, tmp_path) -> None:
    a = photo(tmp_path / "a.jpg")
    model.add_paths([a])
    item, _ = stopped_on_screen(model, a, 2)
    out = tmp_path / "out" / "a_rbqe.png"
    photo(out)
    model.open_batch_results([ItemReport(a, "ok", outputs={"3": out}, exit=3,
                                         scores={"3": 0.9}, times_ms={"total": 12.0})])
    assert item.report is not None and not item.stopped and item.exit == 3
    assert model.cache.peek(path_key(a)) is None and model.view is None
    assert isinstance(model.jobs[-1], LoadOutputsJob) and model.jobs[-1].path == a


# -- a review of the Stop that keeps exits -------------------------------------------------
def finish_background(model, n: int) -> None:
    """The background's next ``n`` runs end, each with all five exits."""
    for _ in range(n):
        job = model.jobs[-1]
        view = view_of(job.path, 5)
        model.on_loaded(job.gen, view)
        model.on_finished(job.gen, view)


def test_a_photo_viewed_again_before_its_stop_lands_runs_again(model, tmp_path) -> None:
    """Stopped, left and viewed again before the step under way ended: viewed again, it
    runs (as a photo stopped before any exit does), so the cancel keeps nothing. Its
    view showed half its exits with Save on, "Stopping…" for good, the row "Waiting",
    and it never ran again: the worker had written the stopped run's exits on the view
    the GUI thread held by then."""
    a, b, c = (photo(tmp_path / f"{n}.jpg", i) for i, n in enumerate("abc"))
    model.add_paths([a, b, c])
    item_a, item_b, _ = model.queue.items
    model.select(item_a)
    job = model.jobs[-1]
    view = view_of(a)
    model.on_loaded(job.gen, view)
    model.stop()
    model.select(item_b)
    model.select(item_a)  # back, within the step under way
    assert model.view is view and not item_a.stopped
    events = model.on_cancelled(job.gen, stop_after(view, 2))
    assert "ViewFinished" not in kinds(events)
    assert view.result is None and view.stopped_after is None  # never a half result
    assert model.save_job([2]) is None and model.cache.peek(path_key(a)) is None
    again = model.jobs[-1]
    assert isinstance(again, ProcessJob) and again.path == a and again is not job
    assert item_a.status == RUNNING and item_a.exit is None and model.view_running


def test_a_background_run_cancelled_and_viewed_before_it_ends_keeps_nothing(
        model, tmp_path) -> None:
    """No Stop at all: a background run cancelled to make room, its photo clicked before
    the cancel landed, showed the exits made so far as its result and never ran again."""
    a, b, c = (photo(tmp_path / f"{n}.jpg", i) for i, n in enumerate("abc"))
    model.add_paths([a, b, c])
    item_a, item_b, _ = model.queue.items
    background = model.jobs[-1]
    view = view_of(a)
    model.on_loaded(background.gen, view)
    model.select(item_b)  # makes room: a's run is cancelled
    model.select(item_a)  # clicked back before it ended
    events = model.on_cancelled(background.gen, stop_after(view, 2))
    assert "ViewFinished" not in kinds(events) and view.result is None
    assert model.jobs[-1].path == a and item_a.status == RUNNING and not item_a.stopped


def test_the_exits_a_stop_kept_stay_while_the_row_says_they_are_kept(model, tmp_path) -> None:
    """The background went on with the folder and its results pushed the stopped photo's
    kept exits out of the cache: its row still said "Stopped after exit 3" (exits 1–3
    kept, to view and save), and viewed again it ran from exit 1."""
    paths = [photo(tmp_path / f"p{i}.jpg", i) for i in range(4)]
    model.add_paths(paths)
    items = model.queue.items
    item, view = stopped_on_screen(model, paths[0], 3)
    model.cache.budget = 3 * view_of(paths[0], 5).cost  # room for three done photos
    finish_background(model, 3)  # the three others: more than the budget with a's exits
    assert model.cache.peek(path_key(paths[0])) is view
    assert model.cache.peek(path_key(paths[1])) is None  # a done photo's went instead
    model.select(items[2])
    n = len(model.jobs)
    events = model.select(item)
    assert len(model.jobs) == n and model.view is view and "ViewFinished" in kinds(events)
    assert item.stopped and item.exit == 3 and item.kept == (1, 2, 3)


def test_kept_exits_go_when_they_alone_pass_the_budget_and_their_row_says_so(
        model, tmp_path) -> None:
    """Pinned, but bounded: past the budget with kept exits alone, the oldest go, and
    their photo's row stops saying they are kept. It stays stopped, as one stopped before
    its first exit: the background does not run it behind the user's back (it did)."""
    a, b = photo(tmp_path / "a.jpg"), photo(tmp_path / "b.jpg", 1)
    model.add_paths([a, b])
    item_a, view_a = stopped_on_screen(model, a, 3)
    model.cache.budget = 1.5 * view_a.cost  # one stopped photo's exits, not two
    n = len(model.jobs)
    item_b, view_b = stopped_on_screen(model, b, 3)
    assert model.cache.peek(path_key(b)) is view_b and model.cache.peek(path_key(a)) is None
    assert item_a.stopped and item_a.exit is None and item_a.kept == ()
    assert item_a.status == WAITING and all(j.path != a for j in model.jobs[n:])
    model.select(item_a)  # viewed again, it runs
    assert item_a.status == RUNNING and model.jobs[-1].path == a


def push_out(model, item_a, item_b) -> None:
    """``item_b`` viewed (its background run caught up) and stopped after exit 2, with
    ``item_a`` viewed again before that Stop lands: b's kept exits push a's out of a
    cache sized for fewer."""
    model.select(item_b)
    job_b = model.jobs[-1]
    view_b = view_of(item_b.path)
    model.on_loaded(job_b.gen, view_b)
    model.stop()
    model.select(item_a)
    model.on_cancelled(job_b.gen, stop_after(view_b, 2))


def test_kept_exits_let_go_on_screen_stay_there_until_left(model, tmp_path) -> None:
    """Let go while on screen (another photo's stop pushed them out), the exits stay to
    view and save until the photo is left; then its row says it is stopped (its exits
    gone), and it runs when viewed again."""
    a, b = photo(tmp_path / "a.jpg"), photo(tmp_path / "b.jpg", 1)
    model.add_paths([a, b])
    item_a, view_a = stopped_on_screen(model, a, 3)
    model.cache.budget = 1.5 * view_a.cost
    item_b = model.queue.items[1]
    push_out(model, item_a, item_b)
    assert model.cache.peek(path_key(a)) is None and model.view is view_a
    assert item_a.stopped and item_a.kept == (1, 2, 3) and model.save_job([3]) is not None
    events = model.select(item_b)
    assert any(type(e).__name__ == "ItemChanged" and e.item is item_a for e in events)
    assert item_a.stopped and item_a.exit is None and item_a.kept == ()
    assert item_a.status == WAITING
    model.select(item_a)
    assert model.jobs[-1].path == a and item_a.status == RUNNING


def test_a_stopped_photo_chosen_after_its_exits_were_let_go_is_done(model, tmp_path) -> None:
    """Let go while on screen, then a new threshold chose an exit: the view said "exit 2
    of 5", the row kept "Stopped after exit 3" (and the view was not cached again)."""
    a, b = photo(tmp_path / "a.jpg"), photo(tmp_path / "b.jpg", 1)
    model.add_paths([a, b])
    item_a, view_a = stopped_on_screen(model, a, 3)
    model.cache.budget = 1.5 * view_a.cost
    push_out(model, item_a, model.queue.items[1])
    assert model.cache.peek(path_key(a)) is None and model.view is view_a
    events = rechosen(model, view_a, 2)
    assert "ItemChanged" in kinds(events) and "ViewFinished" in kinds(events)
    assert item_a.status == DONE and not item_a.stopped and item_a.exit == 2
    assert item_a.kept == () and model.cache.peek(path_key(a)) is view_a


def test_compute_all_and_save_all_on_a_stopped_photo_keep_all_its_exits(model,
                                                                        tmp_path) -> None:
    """After Compute all (or Save all) added exits 3-5, the row's tooltip still said
    "exits 1–2 kept"."""
    a = photo(tmp_path / "a.jpg")
    model.add_paths([a])
    item, view = stopped_on_screen(model, a, 2)
    assert item.kept == (1, 2)
    model.compute_all()
    job = model.jobs[-1]
    assert isinstance(job, ContinueJob)
    view.result.exits = view_of(a, 5).result.exits  # as the worker's add_run leaves them
    events = model.on_finished(job.gen, view)
    assert "ItemChanged" in kinds(events)
    assert item.stopped and item.exit == 2 and item.kept == (1, 2, 3, 4, 5)
    # Save all the same: it computes the exits it lacks before it saves.
    b = photo(tmp_path / "b.jpg", 1)
    model.add_paths([b])
    item_b, view_b = stopped_on_screen(model, b, 2)
    model.save([1, 2, 3, 4, 5], folder=tmp_path / "out")
    save = model.jobs[-1]
    assert isinstance(save, SaveJob) and save.had == 2
    view_b.result.exits = view_of(b, 5).result.exits
    model.on_finished(save.gen, SaveOutcome([tmp_path / "out" / "b.exit1.png"], []))
    assert item_b.stopped and item_b.exit == 2 and item_b.kept == (1, 2, 3, 4, 5)


def test_process_again_on_a_stopped_photo_then_stop_keeps_its_exits(model, tmp_path) -> None:
    """Process again on a stopped photo, stopped before its first exit: the kept exits
    were gone (a done photo gets its result back then)."""
    a = photo(tmp_path / "a.jpg")
    model.add_paths([a])
    item, view = stopped_on_screen(model, a, 3)
    model.reprocess_current()
    again = model.jobs[-1]
    assert isinstance(again, ProcessJob) and item.status == RUNNING
    model.stop()
    events = model.on_cancelled(again.gen)  # no exit made: nothing sent
    assert "ViewFinished" in kinds(events) and model.view is view
    assert item.status == WAITING and item.stopped and item.exit == 3
    assert item.kept == (1, 2, 3) and model.cache.peek(path_key(a)) is view
    assert model.save_job([3]) is not None


def test_process_again_then_stop_keeps_its_exits_beside_the_background(model, tmp_path) -> None:
    """Process again on a stopped photo made room (the background's run of another photo
    was cancelled); that cancel landing first threw the kept exits away, so a Stop of the
    new run left a blank "Stopped" photo. A done photo's result likewise."""
    a, b = photo(tmp_path / "a.jpg"), photo(tmp_path / "b.jpg", 1)
    model.add_paths([a, b])
    item, view = stopped_on_screen(model, a, 3)
    background = model.jobs[-1]
    assert background.path == b  # the background went on with b after the Stop
    model.reprocess_current()
    assert background.cancel.is_set()
    model.on_cancelled(background.gen)  # b's cancel lands first
    again = model.jobs[-1]
    assert isinstance(again, ProcessJob) and again.path == a
    model.stop()
    events = model.on_cancelled(again.gen)  # before its first exit
    assert "ViewFinished" in kinds(events) and model.view is view
    assert item.stopped and item.kept == (1, 2, 3) and model.save_job([3]) is not None


def test_a_batchs_results_over_a_stopped_photo_on_screen_load_at_once(model, tmp_path) -> None:
    """The stopped photo on screen, the background running another: the batch's outputs
    replaced the kept exits in the model, but the window was not told (it kept showing
    them, saying Save saves them) and the outputs waited for the other photo's run."""
    a, b = photo(tmp_path / "a.jpg"), photo(tmp_path / "b.jpg", 1)
    model.add_paths([a, b])
    stopped_on_screen(model, a, 2)
    background = model.jobs[-1]
    assert background.path == b
    out = tmp_path / "out" / "a_rbqe.png"
    photo(out)
    events = model.open_batch_results([ItemReport(a, "ok", outputs={"3": out}, exit=3,
                                                  scores={"3": 0.9},
                                                  times_ms={"total": 12.0})])
    assert "ViewBusy" in kinds(events) and model.view is None
    assert background.cancel.is_set()  # room made for the photo on screen
    model.on_cancelled(background.gen)
    assert isinstance(model.jobs[-1], LoadOutputsJob) and model.jobs[-1].path == a


def test_a_stop_landing_after_the_last_exit_leaves_a_done_photo(model, tmp_path) -> None:
    """Stop pressed as the run made its last exit: the run ends finished, not cancelled,
    and the photo is done, not flagged stopped behind its done row (the flag then rode
    along into Process again's saved state). Viewed again after the cache let its result
    go, it is enhanced again."""
    a, b = photo(tmp_path / "a.jpg"), photo(tmp_path / "b.jpg", 1)
    model.add_paths([a, b])
    item_a, item_b = model.queue.items
    model.select(item_a)
    job = model.jobs[-1]
    assert job.path == a
    model.on_loaded(job.gen, view_of(a))
    model.stop()  # too late: the worker is past its last cancel check
    model.on_finished(job.gen, view_of(a, exits=5))
    assert item_a.status == sm.DONE and not item_a.stopped
    job_b = model.jobs[-1]
    assert job_b.path == b  # the background went on
    model.select(item_b)
    model.on_finished(job_b.gen, view_of(b, exits=2))
    model.cache.pop(sm.path_key(a))  # let go for room while b is on screen
    before = len(model.jobs)
    model.select(item_a)
    assert len(model.jobs) > before and model.jobs[-1].path == a
