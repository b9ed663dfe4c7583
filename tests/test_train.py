"""Training, evaluation and calibration on generated images (no ../shared needed)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from rbqe.cli import EXIT_USAGE, main
from rbqe.errors import UsageError, WeightsError
from rbqe.model import NUM_EXITS, ModelConfig, RBQENet
from rbqe.train.curve import read_log, width_changes, with_pixels
from rbqe.train.data import (
    SOURCE_GRID,
    PatchSampler,
    exit_weights,
    jpeg_roundtrip,
    quick_val_pick,
)
from rbqe.train.loop import (
    RELATIVE_FLOOR,
    TrainConfig,
    Trainer,
    charbonnier,
    lr_at,
    mse,
    relative_floor,
    relative_weights,
    stored_config,
    train,
    with_no_harm,
)
from rbqe.train.metrics import psnr, psnr_b, ssim
from rbqe.weights import load_weights, read_info, save_weights
from tests.helpers import save_tiny_weights


def _photo(seed: int, h: int = 96, w: int = 128) -> np.ndarray:
    """A smooth colour image with edges: JPEG at low quality blocks it visibly."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([
        128 + 90 * np.sin(x / (7 + seed)) * np.cos(y / 11),
        128 + 60 * np.cos((x + y) / 15),
        100 + 80 * (x > w / 2) + rng.normal(0, 4, (h, w)),
    ], axis=-1)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture
def images() -> list[np.ndarray]:
    return [_photo(s) for s in range(3)]


def _cfg(tmp_path: Path, steps: int) -> TrainConfig:
    return TrainConfig(train_dirs=[], out_dir=str(tmp_path / "run"), channels=1, width=8,
                       patch=64, batch=2, steps=steps, threads=1, checkpoint_every_s=1e9, seed=3)


def test_batches_depend_only_on_seed_and_step(images: list[np.ndarray]) -> None:
    s = PatchSampler(images, channels=1, patch=64, batch=3, seed=1)
    a, b = s.batch_at(7), s.batch_at(7)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    x, y, q = a
    assert x.shape == y.shape == (3, 1, 64, 64)
    assert x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert not np.array_equal(s.batch_at(8)[0], x)
    assert ((q >= 10) & (q <= 95)).all()


def test_light_share_sets_the_quality_range(images: list[np.ndarray]) -> None:
    paper = np.concatenate([PatchSampler(images, 1, 64, 8, seed=2, light_share=0.0)
                            .batch_at(i)[2] for i in range(6)])
    light = np.concatenate([PatchSampler(images, 1, 64, 8, seed=2, light_share=1.0)
                            .batch_at(i)[2] for i in range(6)])
    assert paper.min() >= 10 and paper.max() <= 50
    assert light.min() >= 51 and light.max() <= 95


def test_gray_share_sets_the_gray_patches(images: list[np.ndarray]) -> None:
    def gray_fraction(share: float) -> float:
        _, y, _ = PatchSampler(images, 3, 64, 12, seed=4, gray_share=share).batch_at(0)
        gray = [np.array_equal(p[0], p[1]) and np.array_equal(p[1], p[2]) for p in y]
        return float(np.mean(gray))

    assert gray_fraction(1.0) == 1.0
    assert gray_fraction(0.0) == 0.0  # the generated photos are colour


def test_aligned_share_puts_crops_on_the_photos_jpeg_grid() -> None:
    # Each pixel holds its place in its 16x16 cell, so a crop's first row tells where the
    # crop started and whether it was turned a quarter.
    rows, cols = np.mgrid[:200, :264]
    cell = ((rows % SOURCE_GRID) * SOURCE_GRID + cols % SOURCE_GRID).astype(np.uint8)
    photo = np.repeat(cell[..., None], 3, axis=2)

    def on_grid(share: float) -> list[bool]:
        sampler = PatchSampler([photo], 3, 64, 16, seed=5, gray_share=0.0, aligned_share=share)
        y = np.round(sampler.batch_at(0)[1][:, 0] * 255).astype(int)
        corner, step = y[:, 0, 0], y[:, 0, 1] - y[:, 0, 0]
        return [c in (0, 15, 240, 255) and abs(d) == 1 for c, d in zip(corner, step, strict=True)]

    assert all(on_grid(1.0))  # on the grid, and never a quarter turn (columns stay columns)
    assert not all(on_grid(0.0))


def test_aligned_share_zero_keeps_the_earlier_batches(images: list[np.ndarray]) -> None:
    # No draw is made for it at 0, so a run resumed from an older state sees the batches
    # it would have seen before the option existed. The checksum is of the crops and
    # qualities that the sampler made before it (commit f8d1247).
    _, y, q = PatchSampler(images, 3, 64, 4, seed=3).batch_at(11)
    crops = np.round(y * 255).astype(np.uint8).tobytes()
    assert hashlib.sha256(crops).hexdigest()[:16] == "6fa9edfe8362e06d"
    assert q.tolist() == [27, 87, 42, 50]
    _, y_aligned, _ = PatchSampler(images, 3, 64, 4, seed=3, aligned_share=0.5).batch_at(11)
    assert not np.array_equal(y, y_aligned)


def test_light_share_out_of_range_is_a_usage_error(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--data", str(tmp_path), "--light-share", "1.5"]) == 2
    assert "--light-share must be in [0, 1], got 1.5" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path), "--gray-share", "-0.1"]) == 2
    assert "--gray-share must be in [0, 1], got -0.1" in capsys.readouterr().err


def test_exit_weights_follow_the_paper() -> None:
    w = exit_weights(np.array([10, 30, 50, 90]))
    assert w[0].tolist() == [0.5, 0.5, 1, 1, 2]
    assert w[1].tolist() == [0.5, 1, 2, 1, 0.5]
    assert w[2].tolist() == [2, 1, 1, 0.5, 0.5]
    assert w[3].tolist() == w[2].tolist()  # light compression keeps the QF50 row


def test_balanced_weighting_keeps_exit_5_and_favours_early_exits_when_light() -> None:
    w = exit_weights(np.arange(10, 96), "balanced")
    heavy, light = w[: 50 - 10 + 1], w[90 - 10 :]
    assert (heavy[:, 4] >= 1).all() and (heavy[:, 4] >= heavy[:, :4].max(1)).all()
    assert (light[:, 0] == 2).all() and (light[:, 0] > light[:, 4]).all()
    assert exit_weights(np.array([20]), "balanced")[0].tolist() == [0.5, 0.75, 1, 1, 1.75]
    with pytest.raises(UsageError, match="exit weighting must be one of"):
        exit_weights(np.array([10]), "uniform")


def test_late_weighting_is_balanced_with_more_exit_5_when_heavy() -> None:
    q = np.arange(10, 96)
    late, balanced = exit_weights(q, "late"), exit_weights(q, "balanced")
    assert (late[:, :4] == balanced[:, :4]).all()
    assert late[0, 4] == 1.5 * balanced[0, 4] and late[20, 4] == 1.5 * balanced[20, 4]
    assert (late[40:, 4] == balanced[40:, 4]).all()  # QF 50 and lighter: unchanged


def test_light_weighting_is_balanced_with_more_late_exits_when_light() -> None:
    q = np.arange(10, 96)
    light, balanced = exit_weights(q, "light"), exit_weights(q, "balanced")
    assert (light[:, :2] == balanced[:, :2]).all()  # exits 1-2 as balanced everywhere
    assert (light[: 50 - 10 + 1] == balanced[: 50 - 10 + 1]).all()  # QF 10-50 unchanged
    assert light[70 - 10, 2:].tolist() == [2, 2, 2] and light[80 - 10, 2:].tolist() == [3, 3, 3]
    assert light[90 - 10 :, 2:].tolist() == [[4, 4, 4]] * 6  # QF 90-95 keep the QF 90 row


def test_resume_continues_bit_exactly(tmp_path: Path, images: list[np.ndarray]) -> None:
    straight = Trainer(_cfg(tmp_path / "a", 4), images)
    straight.run()

    first = Trainer(_cfg(tmp_path / "b", 4), images)
    for _ in range(2):
        first.train_step()
    first.save_checkpoint()
    del first
    resumed = Trainer(_cfg(tmp_path / "b", 4), images)  # picks up checkpoint.pt
    assert resumed.step == 2
    resumed.run()

    sa, sb = straight.net.state_dict(), resumed.net.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert (Path(tmp_path / "b" / "run" / "last.safetensors")).is_file()


def test_worker_processes_train_exactly_like_the_main_process(
        tmp_path: Path, images: list[np.ndarray]) -> None:
    plain = Trainer(_cfg(tmp_path / "a", 3), images)
    plain.run()
    cfg = _cfg(tmp_path / "b", 3)
    cfg.workers = 1
    pooled = Trainer(cfg, images)
    pooled.run()
    sa, sb = plain.net.state_dict(), pooled.net.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_run_can_start_from_weights(tmp_path: Path, images: list[np.ndarray]) -> None:
    torch.manual_seed(5)
    src = RBQENet(ModelConfig(1, 1, 8))
    with torch.no_grad():
        for param in src.parameters():
            param.normal_()  # unlike anything He init would draw
    save_weights(src, tmp_path / "start.safetensors")
    cfg = _cfg(tmp_path, 1)
    cfg.init_weights = str(tmp_path / "start.safetensors")
    t = Trainer(cfg, images)
    sa, sb = src.state_dict(), t.net.state_dict()
    assert all(torch.equal(sa[k], sb[k].contiguous()) for k in sa)

    cfg.channels = 3  # a Y model cannot start an RGB run
    with pytest.raises(WeightsError, match="1-channel width-8"):
        Trainer(cfg, images)


def test_time_budget_sizes_the_schedule(tmp_path: Path, images: list[np.ndarray]) -> None:
    cfg = _cfg(tmp_path, 10_000)
    cfg.schedule = "cosine"
    cfg.time_budget_s = 0.5  # spent by the warm-up already: the run stops right after it
    t = Trainer(cfg, images)
    t.run()
    assert t.step == t.cfg.steps
    assert 50 < t.step < 10_000
    again = _cfg(tmp_path, 10_000)
    again.schedule = "cosine"
    again.time_budget_s = 0.5
    resumed = Trainer(again, images)
    assert resumed.cfg.steps == t.step  # the length fixed by the budget survives a resume


def test_constant_schedule_stops_on_the_budget_and_keeps_its_rate(
        tmp_path: Path, images: list[np.ndarray]) -> None:
    cfg = _cfg(tmp_path, 10_000)
    cfg.time_budget_s = 0.3
    t = Trainer(cfg, images)
    t.run()
    assert 0 < t.step < 10_000 and t.cfg.steps == 10_000  # the budget moved no schedule
    assert lr_at(cfg, 60) == lr_at(cfg, 10**6) == cfg.lr


def test_the_ema_follows_the_weights_and_is_what_validation_sees(
        tmp_path: Path, images: list[np.ndarray]) -> None:
    cfg = _cfg(tmp_path, 3)
    cfg.ema_decay = 0.5
    t = Trainer(cfg, images)
    before = {k: v.clone() for k, v in t.net.state_dict().items()}
    t.train_step()
    after = t.net.state_dict()
    ema = t.eval_net.state_dict()
    key = "heads.0.1.weight"
    # AveragedModel copies the weights at the first update, then averages.
    assert torch.allclose(ema[key], after[key]) or torch.allclose(
        ema[key], 0.5 * before[key] + 0.5 * after[key])
    t.train_step()
    assert not torch.equal(t.eval_net.state_dict()[key], t.net.state_dict()[key])
    t.run()
    ema_file = load_weights(tmp_path / "run" / "ema.safetensors")[0].state_dict()
    assert torch.equal(ema_file[key], t.eval_net.state_dict()[key].contiguous())
    assert read_info(tmp_path / "run" / "ema.safetensors").extra["patches"] == str(3 * cfg.batch)


def test_export_ema_writes_what_a_finished_run_exports(
        tmp_path: Path, images: list[np.ndarray]) -> None:
    """scripts/export_ema.py takes the EMA out of a checkpoint, e.g. of a run still going."""
    cfg = _cfg(tmp_path, 3)
    cfg.ema_decay, cfg.ema_slow_decay = 0.5, 0.9
    Trainer(cfg, images).run()
    run = tmp_path / "run"
    script = Path(__file__).resolve().parents[1] / "scripts" / "export_ema.py"
    for flag, finished in (([], "ema"), (["--slow"], "ema_slow")):
        out = tmp_path / f"{finished}_exported.safetensors"
        subprocess.run([sys.executable, str(script), str(run / "checkpoint.pt"), str(out),
                        *flag], check=True, capture_output=True)
        got, info = load_weights(out)
        want = load_weights(run / f"{finished}.safetensors")[0].state_dict()
        assert all(torch.equal(v, want[k]) for k, v in got.state_dict().items())
        assert (info.extra["step"], info.extra["patches"]) == ("3", str(3 * cfg.batch))
    assert not torch.equal(load_weights(tmp_path / "ema_exported.safetensors")[0].heads[0][1].weight,
                           load_weights(tmp_path / "ema_slow_exported.safetensors")[0].heads[0][1].weight)
    # A state without a slow EMA: one clear error, nothing written.
    plain = _cfg(tmp_path / "plain", 1)
    Trainer(plain, images).run()
    out = tmp_path / "none.safetensors"
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "plain" / "run" /
                                                           "checkpoint.pt"), str(out), "--slow"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "holds no ema_slow weights" in done.stderr
    assert not out.exists()


def test_average_weights_is_the_weighted_mean_of_its_inputs(tmp_path: Path) -> None:
    """scripts/average_weights.py: shares normalised to 1, sources recorded, one clear
    error for networks of different shapes."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "average_weights.py"
    torch.manual_seed(0)
    nets = [RBQENet(ModelConfig(1, 1, 8)) for _ in range(2)]
    paths = [save_weights(net, tmp_path / f"{i}.safetensors", extra={"step": str(10 * i)})
             for i, net in enumerate(nets)]
    out = tmp_path / "soup.safetensors"
    subprocess.run([sys.executable, str(script), str(out), f"{paths[0]}:1", f"{paths[1]}:3"],
                   check=True, capture_output=True)
    got, info = load_weights(out)
    a, b = nets[0].state_dict(), nets[1].state_dict()
    for key, value in got.state_dict().items():
        assert torch.allclose(value, 0.25 * a[key] + 0.75 * b[key], atol=1e-6)
    sources = json.loads(info.extra["averaged_from"])
    assert [(s["share"], s["step"]) for s in sources] == [(0.25, "0"), (0.75, "10")]
    other = save_weights(RBQENet(ModelConfig(1, 1, 16)), tmp_path / "wide.safetensors")
    bad = tmp_path / "bad.safetensors"
    done = subprocess.run([sys.executable, str(script), str(bad), str(paths[0]), str(other)],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "wide.safetensors: network" in done.stderr
    assert not bad.exists()
    done = subprocess.run([sys.executable, str(script), str(bad), str(tmp_path / "none")],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "none: weights file not found" in done.stderr
    assert "Traceback" not in done.stderr and not bad.exists()


def test_a_slow_ema_added_to_a_running_state_starts_from_its_ema(
        tmp_path: Path, images: list[np.ndarray]) -> None:
    key = "heads.0.1.weight"
    first = _cfg(tmp_path, 4)
    first.ema_decay = 0.5
    t = Trainer(first, images)
    t.run()
    ema_at_stop = t.eval_net.state_dict()[key].clone()
    assert not (tmp_path / "run" / "ema_slow.safetensors").exists()  # off by default

    again = _cfg(tmp_path, 4)
    again.ema_decay, again.ema_slow_decay = 0.5, 0.99
    t = Trainer(again, images)
    assert t.ema_slow is not None
    assert torch.equal(t.ema_slow.module.state_dict()[key], ema_at_stop)
    again.steps = 7
    t.run()
    fast, slow = t.eval_net.state_dict()[key], t.ema_slow.module.state_dict()[key]
    raw = t.net.state_dict()[key]
    # Three steps on, the slow average has barely left where it started; the fast one
    # (decay 0.5) has all but caught up with the weights.
    assert (slow - ema_at_stop).abs().max() < (fast - ema_at_stop).abs().max()
    assert (fast - raw).abs().max() < (slow - raw).abs().max()
    exported = load_weights(tmp_path / "run" / "ema_slow.safetensors")[0].state_dict()
    assert torch.equal(exported[key], slow.contiguous())
    # The checkpoint keeps it: a resume carries on from it, not from the fast EMA.
    t = Trainer(again, images)
    assert torch.equal(t.ema_slow.module.state_dict()[key], slow)


def test_patches_accumulate_across_phases_of_different_batch(
        tmp_path: Path, images: list[np.ndarray]) -> None:
    first = _cfg(tmp_path, 2)
    first.init_patches = 1000
    Trainer(first, images).run()
    second = _cfg(tmp_path, 5)
    second.batch = 3
    resumed = Trainer(second, images)
    assert resumed.patches == 1000 + 2 * 2
    resumed.run()
    assert resumed.patches == 1000 + 2 * 2 + 3 * 3


def test_a_stopped_run_still_saves_its_state(tmp_path: Path, images: list[np.ndarray]) -> None:
    t = Trainer(_cfg(tmp_path, 10_000), images)
    orig = t.train_step

    def step_then_stop(batch: object = None) -> float:
        loss = orig(batch)
        if t.step == 2:
            t.stop()  # what SIGTERM does in the main thread
        return loss

    t.train_step = step_then_stop  # type: ignore[method-assign]
    t.run()
    assert Trainer(_cfg(tmp_path, 10_000), images).step == 2
    assert (tmp_path / "run" / "last.safetensors").is_file()


def test_cli_resume_takes_the_recipe_from_the_state(
        tmp_path: Path, images: list[np.ndarray]) -> None:
    data = tmp_path / "photos"
    data.mkdir()
    for i, img in enumerate(images):
        cv2.imwrite(str(data / f"p{i}.png"), img[..., ::-1])
    out = tmp_path / "state"
    args = ["train", "--out", str(out), "--threads", "1", "--checkpoint-every", "1e9"]
    assert main([*args, "--data", str(data), "--width", "8", "--patch", "64", "--batch", "2",
                 "--lr", "3e-4", "--steps", "2"]) == 0  # RGB, the shipped model, by default
    assert stored_config(out)["exit_weighting"] == "paper"
    assert main([*args, "--steps", "4", "--exit-weighting", "balanced",
                 "--relative-exits", "2", "--relative-cap", "4", "--no-harm", "2",
                 "--no-harm-exits", "1"]) == 0
    assert main([*args, "--steps", "5"]) == 0
    stored = stored_config(out)
    assert stored["step"] == 5 and stored["exit_weighting"] == "balanced"
    assert (stored["relative_exits"], stored["relative_cap"]) == (2, 4.0)
    assert (stored["no_harm"], stored["no_harm_exits"]) == (2.0, 1)
    assert (stored["width"], stored["batch"], stored["lr"], stored["channels"]) == (8, 2, 3e-4, 3)
    assert stored["train_dirs"] == [str(data)]


def test_a_cooldown_branch_decays_to_lr_min_and_stops(
        tmp_path: Path, images: list[np.ndarray]) -> None:
    data = tmp_path / "photos"
    data.mkdir()
    for i, img in enumerate(images):
        cv2.imwrite(str(data / f"p{i}.png"), img[..., ::-1])
    main_state, branch = tmp_path / "state", tmp_path / "branch"
    args = ["--threads", "1", "--checkpoint-every", "1e9"]
    assert main(["train", "--out", str(main_state), *args, "--data", str(data), "--width", "8",
                 "--patch", "64", "--batch", "2", "--lr", "3e-4", "--steps", "60"]) == 0
    branch.mkdir()
    shutil.copy(main_state / "checkpoint.pt", branch / "checkpoint.pt")
    # The branch is stopped half-way, then resumed without --cooldown: it keeps its start.
    assert main(["train", "--out", str(branch), *args, "--cooldown", "8", "--steps", "64"]) == 0
    assert (stored_config(branch)["step"], stored_config(branch)["cooldown_from"]) == (64, 60)
    assert main(["train", "--out", str(branch), *args]) == 0
    stored = stored_config(branch)
    assert (stored["step"], stored["cooldown_steps"], stored["cooldown_from"]) == (68, 8, 60)
    cfg = TrainConfig(**{k: v for k, v in stored.items() if k != "step"})
    assert lr_at(cfg, 60) == pytest.approx(3e-4)
    assert lr_at(cfg, 64) == pytest.approx((3e-4 + cfg.lr_min) / 2)
    assert lr_at(cfg, 68) == lr_at(cfg, 100) == pytest.approx(cfg.lr_min)
    # --cooldown 0 makes the branch a constant-rate run again; a later branch starts anew.
    assert main(["train", "--out", str(branch), *args, "--cooldown", "0", "--steps", "70"]) == 0
    assert (stored_config(branch)["step"], stored_config(branch)["cooldown_from"]) == (70, -1)
    assert main(["train", "--out", str(branch), *args, "--cooldown", "2"]) == 0
    assert (stored_config(branch)["step"], stored_config(branch)["cooldown_from"]) == (72, 70)
    # The main state is where it was, still at its constant rate.
    assert stored_config(main_state)["step"] == 60
    assert stored_config(main_state)["cooldown_steps"] == 0


def test_relative_weights_follow_the_input_error() -> None:
    y = torch.rand(4, 3, 8, 8)
    err = torch.tensor([0.1, 0.05, 0.01, 0.0])  # the last patch is lossless
    x = y + err[:, None, None, None]
    w = relative_weights(x, y)
    assert float(w.mean()) == pytest.approx(1.0)
    inv = 1.0 / torch.clamp(err**2, min=RELATIVE_FLOOR)
    assert torch.allclose(w, inv / inv.mean())
    # A lighter JPEG's patch counts more; the lossless one only up to the floor.
    assert w[0] < w[1] < w[2] < w[3]
    assert float(w[3] / w[2]) == pytest.approx(0.01**2 / RELATIVE_FLOOR, rel=1e-5)


def test_relative_weights_follow_the_loss_in_use() -> None:
    # Under Charbonnier (about L1) a patch's loss grows with its error, not its square, so
    # the relative weight of a twice-as-damaged input is 1/2, not 1/4.
    y = torch.rand(3, 3, 8, 8)
    err = torch.tensor([0.1, 0.05, 0.0])
    x = y + err[:, None, None, None]
    w = relative_weights(x, y, charbonnier)
    assert float(w.mean()) == pytest.approx(1.0)
    assert float(w[1] / w[0]) == pytest.approx(2.0, rel=1e-3)
    edge = charbonnier(torch.full((1, 1, 1, 1), RELATIVE_FLOOR ** 0.5), torch.zeros(1, 1, 1, 1))
    assert float(w[2] / w[1]) == pytest.approx(float(charbonnier(x[1:2], y[1:2]) / edge), rel=1e-4)


def test_a_relative_cap_bounds_the_largest_weight() -> None:
    y = torch.rand(6, 3, 8, 8)
    # Five heavy JPEGs and one light one, which alone takes most of the uncapped weight.
    err = torch.tensor([0.1, 0.1, 0.08, 0.08, 0.05, 0.005])
    x = y + err[:, None, None, None]
    free, capped = relative_weights(x, y), relative_weights(x, y, cap=2.0)
    assert float(free[5] / free.sum()) > 0.9
    assert float(capped.mean()) == pytest.approx(1.0)
    # Clipped at 2 then scaled back to mean 1: the light patch's share falls to
    # 2 / (2 + the others' sum); the others keep their ratios to one another.
    others = free[:5]
    assert float(capped[5] / capped.sum()) == pytest.approx(2.0 / (2.0 + float(others.sum())),
                                                           rel=1e-5)
    assert torch.allclose(capped[:5] / capped[0], others / others[0])
    assert torch.equal(relative_weights(x, y, cap=0.0), free)  # 0: off
    # A cap above every weight changes nothing.
    assert torch.allclose(relative_weights(x, y, cap=float(free.max()) + 1), free)


def test_a_relative_cap_below_one_is_a_usage_error(tmp_path: Path, capsys) -> None:
    assert main(["train", "--out", str(tmp_path / "run"), "--data", str(tmp_path),
                 "--relative-cap", "0.5"]) == 2
    assert "--relative-cap must be 0 (off) or >= 1" in capsys.readouterr().err


def test_no_harm_counts_only_the_excess_over_the_input_more() -> None:
    losses = torch.tensor([[0.5, 1.0, 2.0], [0.1, 0.2, 0.3]], requires_grad=True)
    input_loss = torch.tensor([1.0, 0.25])
    out = with_no_harm(losses, input_loss, 3.0)
    # Row 0: exit 3 is 1.0 above its input (counted 1 + 3 times); exit 2 ties. Row 1: exit
    # 3 is 0.05 above.
    assert torch.allclose(out, torch.tensor([[0.5, 1.0, 5.0], [0.1, 0.2, 0.45]]))
    out.sum().backward()
    assert torch.allclose(losses.grad, torch.tensor([[1.0, 1.0, 4.0], [1.0, 1.0, 4.0]]))
    assert with_no_harm(losses, input_loss, 0.0) is losses  # 0: off
    # An input better than the floor counts as the floor: row 1's exit 3 (0.3) is within
    # it now, row 0's input is above it.
    floored = with_no_harm(losses.detach(), input_loss, 3.0, floor=0.35)
    assert torch.allclose(floored, torch.tensor([[0.5, 1.0, 5.0], [0.1, 0.2, 0.3]]))
    # On the first two exits only: exit 3 keeps its plain loss.
    assert torch.allclose(with_no_harm(losses.detach(), input_loss, 3.0, exits=2), losses)
    assert torch.allclose(with_no_harm(losses.detach(), torch.tensor([0.2, 0.05]), 3.0, exits=2),
                          torch.tensor([[1.4, 3.4, 2.0], [0.25, 0.65, 0.3]]))


def _first_step(tmp_path: Path, images: list[np.ndarray], light_share: float
                ) -> tuple[tuple[np.ndarray, ...], torch.Tensor, torch.Tensor, torch.Tensor,
                           torch.Tensor]:
    """A batch, its inputs and targets, its exit weights, and the per-exit losses ``(B, 5)``
    of a fresh RGB net on it (every Trainer of ``_cfg`` starts from that same net)."""
    batch = PatchSampler(images, channels=3, patch=64, batch=4, seed=3,
                         light_share=light_share).batch_at(0)
    x, y = torch.as_tensor(batch[0]), torch.as_tensor(batch[1])
    cfg = _cfg(tmp_path / "fresh", 1)
    cfg.channels = 3
    with torch.no_grad():
        per_exit = torch.stack([mse(o, y) for o in Trainer(cfg, images).net(x)], dim=1)
    return batch, x, y, torch.as_tensor(exit_weights(batch[2], "paper")), per_exit


def _batch_loss(per_exit: torch.Tensor, w: torch.Tensor) -> float:
    """The trainer's loss from weighted per-exit losses: normalised by the exit weights."""
    return ((per_exit * w).sum(1).mean() / w.sum(1).mean()).item()


def test_the_trainer_adds_the_no_harm_excess(tmp_path: Path, images: list[np.ndarray]) -> None:
    batch, x, y, w, per_exit = _first_step(tmp_path, images, light_share=1.0)
    excess = torch.relu(per_exit - mse(x, y).clamp_min(relative_floor())[:, None])
    assert float(excess[:, 0].sum()) > 0  # light JPEGs: a fresh net's exit 1 is worse somewhere
    for exits in (5, 1):
        cfg = _cfg(tmp_path / str(exits), 1)
        cfg.channels, cfg.no_harm, cfg.no_harm_exits = 3, 4.0, exits
        counted = torch.cat([per_exit[:, :exits] + 4.0 * excess[:, :exits],
                             per_exit[:, exits:]], 1)
        step = Trainer(cfg, images).train_step(batch)
        assert step == pytest.approx(_batch_loss(counted, w), rel=1e-4)
        assert step > _batch_loss(per_exit, w)


def test_a_negative_no_harm_is_a_usage_error(tmp_path: Path, capsys) -> None:
    assert main(["train", "--out", str(tmp_path / "run"), "--data", str(tmp_path),
                 "--no-harm", "-1"]) == 2
    assert "--no-harm must be >= 0" in capsys.readouterr().err


def test_relative_exits_reweigh_only_the_early_exits(
        tmp_path: Path, images: list[np.ndarray]) -> None:
    batch, x, y, w, per_exit = _first_step(tmp_path, images, light_share=0.5)
    cfg = _cfg(tmp_path, 1)
    cfg.channels, cfg.relative_exits = 3, 2
    rel = relative_weights(x, y)
    expected = {k: _batch_loss(torch.cat([per_exit[:, :k] * rel[:, None], per_exit[:, k:]], 1),
                               w) for k in (0, 2)}
    assert Trainer(cfg, images).train_step(batch) == pytest.approx(expected[2], rel=1e-4)
    assert expected[2] != pytest.approx(expected[0], rel=1e-3)  # the weighting did something
    # With a cap the trainer weighs by the capped weights.
    cfg = _cfg(tmp_path / "capped", 1)
    cfg.channels, cfg.relative_exits, cfg.relative_cap = 3, 2, 1.5
    capped = relative_weights(x, y, cap=1.5)
    assert not torch.allclose(capped, rel)
    want = _batch_loss(torch.cat([per_exit[:, :2] * capped[:, None], per_exit[:, 2:]], 1), w)
    assert Trainer(cfg, images).train_step(batch) == pytest.approx(want, rel=1e-4)


def test_relative_late_power_reweighs_the_later_exits(
        tmp_path: Path, images: list[np.ndarray]) -> None:
    batch, x, y, w, per_exit = _first_step(tmp_path, images, light_share=0.5)

    def first_loss(exits: int, power: float) -> float:
        cfg = _cfg(tmp_path / f"{exits}-{power}", 1)
        cfg.channels, cfg.relative_exits, cfg.relative_late_power = 3, exits, power
        return Trainer(cfg, images).train_step(batch)  # the same seed: the same network

    as_all_exits = first_loss(5, 0.0)
    assert first_loss(2, 1.0) == pytest.approx(as_all_exits, rel=1e-5)
    # Power 0.5: exits 3-5 weigh each patch by sqrt(1 / its input's MSE), mean 1.
    rel = relative_weights(x, y)
    half = rel.sqrt() / rel.sqrt().mean()
    scaled = torch.cat([per_exit[:, :2] * rel[:, None], per_exit[:, 2:] * half[:, None]], 1)
    expected = _batch_loss(scaled, w)
    halfway = first_loss(2, 0.5)
    assert halfway == pytest.approx(expected, rel=1e-4)
    assert halfway != pytest.approx(first_loss(2, 0.0), rel=1e-3)
    assert halfway != pytest.approx(as_all_exits, rel=1e-3)


def test_a_negative_late_power_is_a_usage_error(tmp_path: Path, capsys) -> None:
    assert main(["train", "--out", str(tmp_path / "run"), "--data", str(tmp_path),
                 "--relative-late-power", "-1"]) == 2
    assert "--relative-late-power must be >= 0" in capsys.readouterr().err


def test_two_ranks_take_the_steps_one_process_takes(
        tmp_path: Path, images: list[np.ndarray]) -> None:
    val = tmp_path / "val"
    val.mkdir()
    cv2.imwrite(str(val / "v.png"), images[0][:64, :64, ::-1])
    runs = {}
    for procs in (1, 2):
        cfg = _cfg(tmp_path / str(procs), 3)
        cfg.batch, cfg.relative_exits, cfg.exit_weighting, cfg.procs = 4, 2, "balanced", procs
        cfg.val_dirs, cfg.val_qualities, cfg.val_every = [str(val)], [20], 3
        runs[procs] = train(cfg, images=images)
    one, two = runs[1], runs[2]
    assert two.step == 3 and stored_config(two.out)["step"] == 3
    start = Trainer(_cfg(tmp_path / "start", 3), images).net.state_dict()
    a, b = one.net.state_dict(), two.net.state_dict()
    moved = max(float((a[k] - start[k]).abs().max()) for k in a)
    apart = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert moved > 1e-4 and apart < 1e-3 * moved  # the same updates, to rounding
    # Rank 0 alone logged: the start and step 3, with the whole batch's loss.
    log_one, log_two = (read_log(r.out / "train_log.jsonl") for r in (one, two))
    assert [e["step"] for e in log_two] == [0, 3]
    assert [e["width"] for e in log_two] == [8, 8]  # for the curve's widening marks
    assert log_two[1]["loss"] == pytest.approx(log_one[1]["loss"], rel=1e-4)
    assert log_two[1]["val_gain_db"]["20"] == pytest.approx(log_one[1]["val_gain_db"]["20"],
                                                            abs=2e-3)
    assert (two.out / "ema.safetensors").is_file()


def test_ranks_are_for_the_cpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["train", "--out", str(tmp_path / "x"), "--data", str(tmp_path)]
    assert main([*args, "--procs", "0"]) == 2
    assert main([*args, "--procs", "2", "--device", "cuda"]) == 2
    assert "--procs" in capsys.readouterr().err


@pytest.mark.parametrize("native", [False, True])
def test_bf16_on_the_cpu_needs_native_bf16(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    # Emulated bf16 made training about 15x slower on an AVX2 CPU: refused, with the reason.
    monkeypatch.setattr("rbqe.fastpath.native_bf16", lambda: native)
    ran: list[bool] = []
    monkeypatch.setattr("rbqe.train.loop.train", lambda cfg, on_line: ran.append(cfg.bf16))
    args = ["train", "--out", str(tmp_path / "x"), "--data", str(tmp_path), "--bf16"]
    assert main(args) == (0 if native else 2)
    assert ran == ([True] if native else [])
    if not native:
        assert "no native bf16" in capsys.readouterr().err


def test_a_new_run_needs_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--out", str(tmp_path / "none")]) == 2
    assert "--data is required" in capsys.readouterr().err


def test_train_curve_plots_the_log(tmp_path: Path) -> None:
    log = tmp_path / "train_log.jsonl"
    rows = [{"step": s, "patches": 1000 * s, "patch": 64 if s < 3 else 128,
             "val_gain_db": {"10": [0.1 * s] * 5, "90": [0.0] * 5},
             "val_gain_db_raw": {"10": [0.1] * 5, "90": [0.0] * 5}} for s in (1, 2, 3)]
    log.write_text("\n".join(json.dumps(r) for r in [{"step": 0, "val_gain_db": {}}, *rows]))
    assert [e["step"] for e in read_log(log)] == [1, 2, 3]  # entries without patches skipped
    assert main(["train-curve", str(log), "--plot", str(tmp_path / "c.png")]) == 0
    assert cv2.imread(str(tmp_path / "c.png")).shape[1] > 500
    assert main(["train-curve", str(log), "--plot", str(tmp_path / "p.png"), "--x", "patches"]) == 0
    assert (tmp_path / "p.png").is_file()


def test_width_changes_are_found_and_marked(tmp_path: Path) -> None:
    rows = [{"step": 1, "patches": 10, "patch": 64},  # an old record: no width logged
            {"step": 2, "patches": 20, "patch": 64, "width": 32},
            {"step": 3, "patches": 30, "patch": 64, "width": 40},
            {"step": 4, "patches": 40, "patch": 64, "width": 40}]
    assert [(e["step"], a, b) for e, a, b in width_changes(rows)] == [(3, 32, 40)]
    log = tmp_path / "train_log.jsonl"
    log.write_text("\n".join(json.dumps({**r, "val_gain_db": {"10": [0.1] * 5}}) for r in rows))
    assert main(["train-curve", str(log), "--plot", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").is_file()


def test_pixels_seen_follow_each_records_patch_size() -> None:
    rows = [{"step": 1, "patches": 100, "patch": 64}, {"step": 2, "patches": 150, "patch": 64},
            {"step": 3, "patches": 160, "patch": 128}]
    assert [e["pixels"] for e in with_pixels(rows)] == [
        100 * 64**2, 150 * 64**2, 150 * 64**2 + 10 * 128**2]
    # what the log's first record had counted before it began, at another size
    assert with_pixels(rows, before_patch=128)[0]["pixels"] == 100 * 128**2
    with pytest.raises(ValueError, match="step 9"):
        with_pixels([{"step": 9, "patches": 5}])


def test_training_lowers_the_loss(tmp_path: Path, images: list[np.ndarray]) -> None:
    cfg = _cfg(tmp_path, 60)
    cfg.lr = 2e-3
    tr = Trainer(cfg, images)
    first = np.mean([tr.train_step() for _ in range(5)])
    for _ in range(45):
        tr.train_step()
    last = np.mean([tr.train_step() for _ in range(10)])
    assert last < first


def test_metrics_on_known_cases() -> None:
    a = _photo(0)[..., 0]
    assert psnr(a, a) == float("inf")
    noisy = np.clip(a.astype(int) + 5, 0, 255).astype(np.uint8)
    assert 33 < psnr(a, noisy) < 35.2  # MSE ~ 25 -> 34.15 dB
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, noisy) < 1.0
    jpeg = jpeg_roundtrip(a, 10)
    # PSNR-B penalises blocking: at QF10 it is below plain PSNR.
    assert psnr_b(a, jpeg) < psnr(a, jpeg)


def _write_clean(folder: Path) -> Path:
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), _photo(1)[..., ::-1])
    cv2.imwrite(str(folder / "b.png"), _photo(2)[..., 0])  # a gray one
    return folder


def test_eval_on_two_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = save_tiny_weights(tmp_path / "w.safetensors")
    clean = _write_clean(tmp_path / "clean")
    out_json, out_png = tmp_path / "eval.json", tmp_path / "eval.png"
    code = main(["eval", str(clean), "--qf", "10", "50", "--weights", str(weights),
                 "--device", "cpu", "--json", str(out_json), "--plot", str(out_png)])
    assert code == 0
    doc = json.loads(out_json.read_text())
    assert doc["images"] == 2 and set(doc["per_qf"]) == {"10", "50"}
    q10 = doc["per_qf"]["10"]
    assert set(q10["exits"]) == {"1", "2", "3", "4", "5"}
    assert sum(q10["auto"]["histogram"].values()) == 2
    for key in ("psnr", "ssim", "psnrb", "d_psnr", "gmacs"):
        assert key in q10["exits"]["3"]
    assert q10["auto"]["gmacs"] <= q10["auto"]["gmacs_exit5"] + 1e-9
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "QF" in capsys.readouterr().out


def test_eval_auto_is_the_weights_default_policy(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # The auto column is what 'rbqe enhance' would choose: the weights' default policy.
    from rbqe.exit_policy import ExitPolicy
    from rbqe.weights import set_policy

    weights = save_tiny_weights(tmp_path / "w.safetensors", threshold=0.0)  # assessor: exit 1
    set_policy(weights, "fixed", ExitPolicy.fixed(4), default=True)
    clean = _write_clean(tmp_path / "clean")
    common = ["--qf", "10", "--weights", str(weights), "--device", "cpu"]

    def auto(*extra: str) -> dict:
        out = tmp_path / "e.json"
        assert main(["eval", str(clean), *common, "--json", str(out), *extra]) == 0
        doc = json.loads(out.read_text())
        return doc["policy"], doc["per_qf"]["10"]["auto"]["histogram"]

    records = tmp_path / "rec.json"
    policy, hist = auto("--save-records", str(records))
    assert "exit 4" in policy and hist == {"1": 0, "2": 0, "3": 0, "4": 2, "5": 0}
    assert auto("--policy", "assessor")[1]["1"] == 2
    # Saved records re-summarise under the policy that made them, and under the assessor
    # (at any threshold, from the saved scores) ...
    assert auto("--records", str(records))[1]["4"] == 2
    assert auto("--records", str(records), "--policy", "assessor")[1]["1"] == 2
    # ... but another policy cannot be re-decided from them.
    set_policy(weights, "fixed", ExitPolicy.fixed(2), default=True)
    assert main(["eval", str(clean), *common, "--records", str(records)]) == EXIT_USAGE
    assert "not made under 'fixed: always exit 2'" in capsys.readouterr().err


def test_eval_keeps_the_gates_features_for_measuring_gates_without_a_rerun(
        tmp_path: Path) -> None:
    from rbqe.exit_policy import FEATURES
    from rbqe.train import gate

    weights = save_tiny_weights(tmp_path / "w.safetensors")
    clean = _write_clean(tmp_path / "clean")
    rec_json, rec_npz = tmp_path / "r.json", tmp_path / "g.npz"
    assert main(["eval", str(clean), "--qf", "10", "50", "--weights", str(weights),
                 "--device", "cpu", "--save-records", str(rec_json),
                 "--save-gate-records", str(rec_npz)]) == 0
    recs, meta = gate.GateRecords.load(rec_npz)
    assert meta["source"] == "rbqe eval" and meta["qualities"] == [10, 50]
    assert recs.x.shape == (4, NUM_EXITS, len(FEATURES))
    saved = json.loads(rec_json.read_text())["records"]
    assert "features" not in saved[0]  # the JSON stays as it was
    np.testing.assert_allclose(recs.psnr, [[e["psnr"] for e in r["exits"]] for r in saved])
    assert recs.qf.tolist() == [r["qf"] for r in saved]
    assert recs.gray.tolist() == [not r["color"] for r in saved]
    # The features are those the calibration's records hold for the same whole photos.
    from rbqe.engine import Enhancer
    from rbqe.train.evaluate import list_clean_images

    enh = Enhancer(weights, device="cpu", tile=0, backend="torch", precision="f32")
    same = gate.collect(enh, list_clean_images([clean]), [10, 50], gray_every=0, crop=0)
    np.testing.assert_allclose(recs.x, same.x, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(recs.psnr, same.psnr)
    assert set(recs.x[:, 0, FEATURES.index("has_tables")]) == {1.0}
    assert main(["eval", str(clean), "--weights", str(weights), "--records", str(rec_json),
                 "--save-gate-records", str(tmp_path / "x.npz")]) == EXIT_USAGE


def test_calibrate_writes_a_threshold_the_cli_uses(tmp_path: Path) -> None:
    weights = save_tiny_weights(tmp_path / "w.safetensors", threshold=0.123)
    clean = _write_clean(tmp_path / "clean")
    assert main(["calibrate", str(clean), "--qf", "10", "40", "--weights", str(weights),
                 "--device", "cpu", "--json", str(tmp_path / "cal.json")]) == 0
    cal = json.loads((tmp_path / "cal.json").read_text())
    new = read_info(weights).threshold
    assert new == pytest.approx(cal["threshold"])
    assert read_info(weights).min_exit == cal["min_exit"]
    assert cal["auto_d_psnr"] >= cal["exit5_d_psnr"] - 0.1 - 1e-9  # the default tolerance
    assert cal["worst_qf_loss"] <= 0.1 + 1e-9  # ... at every quality, not only on average
    # The enhance command now reports the calibrated threshold.
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "x.jpg"), _photo(4), [cv2.IMWRITE_JPEG_QUALITY, 20])
    report = tmp_path / "r.json"
    assert main(["enhance", str(src), "-o", str(tmp_path / "out"), "--weights", str(weights),
                 "--device", "cpu", "--report", str(report)]) == 0
    doc = json.loads(report.read_text())
    assert doc["threshold"] == pytest.approx(new) and doc["min_exit"] == cal["min_exit"]


def _records(exit_loss: dict[str, list[float]], scores: list[float]) -> list:
    """Synthetic eval records: per image the dB each exit lies below exit 5."""
    from rbqe.train.evaluate import Record

    macs = [4.0, 6.0, 8.0, 10.0, 12.0]
    return [Record(name, qf, False, {"psnr": 30.0},
                   [{"psnr": 31.0 - d} for d in losses], list(scores), macs)
            for name, losses in exit_loss.items() for qf in (10, 50)]


def test_calibration_searches_the_earliest_exit() -> None:
    from rbqe.train.evaluate import auto_exit, choose_threshold, sweep

    # Exits 1-2 are 0.5 dB short for every image, yet score highest: the paper's rule
    # (stop at the first passing score) cannot save compute without losing 0.5 dB.
    recs = _records({f"im{i}": [0.5, 0.5, 0.02, 0.0, 0.0] for i in range(8)},
                    [0.9, 0.8, 0.5, 0.5, 0.5])
    cal = choose_threshold(recs, 0.1)
    assert (cal["min_exit"], cal["threshold"]) == (3, 0.30)  # lowest threshold among ties
    assert cal["auto_histogram"] == {"1": 0, "2": 0, "3": 16, "4": 0, "5": 0}
    assert cal["gmacs_ratio"] == pytest.approx(8 / 12)
    assert cal["worst_qf_loss"] == pytest.approx(0.02)
    assert [c["min_exit"] for c in cal["cross_check"]] == [3, 3]
    assert all(c["held_out_worst_qf_loss"] == pytest.approx(0.02) for c in cal["cross_check"])
    # The rule's pieces agree with each other.
    assert auto_exit([0.9, 0.8, 0.5, 0.5, 0.5], 0.3, 3) == 3
    assert auto_exit([0.9, 0.8, 0.2, 0.2, 0.2], 0.3, 3) == 5
    assert auto_exit([0.9, 0.8, 0.5, 0.5, 0.5], 0.85, 1) == 1
    row = sweep(recs, [0.85], 1)[0]
    assert row["worst_qf_loss"] == pytest.approx(0.5) and row["gmacs"] == pytest.approx(4.0)


def test_vectorised_rule_matches_auto_exit() -> None:
    from rbqe.train.evaluate import Record, _Table, auto_exit

    rng = np.random.default_rng(0)
    recs = [Record(f"im{i}", 10, False, {"psnr": 30.0}, [{"psnr": 31.0}] * 5,
                   rng.uniform(0.3, 1.0, 5).tolist(), [1.0] * 5) for i in range(200)]
    table = _Table(recs)
    for threshold in (0.3, 0.55, 0.8, 0.99):
        for min_exit in range(1, 6):
            expected = [auto_exit(r.scores, threshold, min_exit) - 1 for r in recs]
            assert table.chosen(threshold, min_exit).tolist() == expected


def test_calibration_refuses_a_rule_one_photo_group_breaks() -> None:
    from rbqe.train.evaluate import choose_threshold

    # Exit 3 costs 0.6 dB on one photo of eight: 0.075 dB on the whole set, within 0.1,
    # but 0.3 dB on the quarter of the photos holding it. Exit 4 is safe everywhere.
    losses = {f"im{i}": [1.0, 1.0, 0.0, 0.0, 0.0] for i in range(8)}
    losses["im3"] = [1.0, 1.0, 0.6, 0.0, 0.0]
    cal = choose_threshold(_records(losses, [0.9, 0.9, 0.9, 0.9, 0.9]), 0.1)
    assert cal["min_exit"] == 4 and cal["worst_qf_loss"] == pytest.approx(0.0)
    every = next(r for r in cal["sweep"] if r["min_exit"] == 3 and r["threshold"] == 0.30)
    assert every["worst_qf_loss"] == pytest.approx(0.075)
    assert every["worst_group_qf_loss"] == pytest.approx(0.3)


SHIPPED = Path(__file__).resolve().parents[1] / "weights" / "rbqe_jpeg.safetensors"


@pytest.mark.skipif(not SHIPPED.is_file(), reason="no shipped weights yet")
def test_shipped_weights_raise_psnr_on_blocky_jpeg() -> None:
    from rbqe.engine import Enhancer

    _, info = load_weights(SHIPPED)
    assert 0 < info.threshold < 1
    gray = cv2.cvtColor(_photo(5, 192, 256), cv2.COLOR_RGB2GRAY)
    jpeg = jpeg_roundtrip(gray, 15)
    enh = Enhancer(SHIPPED, device="cpu")
    out = enh.enhance(jpeg.astype(np.float32) / 255, 5).image[..., 0]
    out8 = np.clip(np.floor(out * 255 + 0.5), 0, 255).astype(np.uint8)
    assert psnr(gray, out8) > psnr(gray, jpeg) + 0.3


def test_quick_val_takes_the_photos_a_carried_subset_holds(tmp_path: Path,
                                                           images: list[np.ndarray]) -> None:
    """A run elsewhere (a lent GPU) validates on only the photos ``quick_val_pick`` names,
    copied from the full folder (scripts/pack_gpu_data.py): the same numbers as here."""
    full, subset = tmp_path / "val", tmp_path / "carried"
    full.mkdir()
    subset.mkdir()
    photos = [_photo(s, 64, 96) for s in range(7)]
    for i, img in enumerate(photos):
        cv2.imwrite(str(full / f"v{i}.png"), img[..., ::-1])
    picked = quick_val_pick(len(photos), 3)
    assert picked == sorted(set(picked)) and len(picked) == 3 and picked == quick_val_pick(7, 3)
    for i in picked:
        shutil.copyfile(full / f"v{i}.png", subset / f"v{i}.png")
    cfg = _cfg(tmp_path, 1)
    here = Trainer(replace(cfg, val_dirs=[str(full)], val_images=3), images)._load_val()
    there = Trainer(replace(cfg, val_dirs=[str(subset)], val_images=3), images)._load_val()
    assert len(here) == len(there) == 3
    for a, b in zip(here, there, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_signal_to_the_whole_group_saves_a_run_with_batch_workers(
        tmp_path: Path, images: list[np.ndarray], sig: str) -> None:
    """docker stop, systemd or ``kill -- -PGID`` send SIGTERM to every process: the batch
    workers died first and the run crashed on "DataLoader worker ... is killed by signal:
    Terminated", leaving no state (the committed recipe runs with --workers 1). A
    terminal's Ctrl-C (SIGINT to the group) aborted, losing the steps since the last
    checkpoint: now it stops and saves as SIGTERM does."""
    import os
    import signal
    import time

    data = tmp_path / "photos"
    data.mkdir()
    for i, img in enumerate(images):
        cv2.imwrite(str(data / f"p{i}.png"), img[..., ::-1])
    out = tmp_path / "run"
    log = tmp_path / "stderr.txt"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rbqe.cli", "train", "--out", str(out), "--data", str(data),
             "--width", "8", "--patch", "64", "--batch", "2", "--threads", "1", "--workers",
             "1", "--steps", "100000", "--checkpoint-every", "1e9"],
            stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while "step 10 " not in log.read_text() and proc.poll() is None:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        os.killpg(proc.pid, getattr(signal, sig))
        rc = proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    assert rc == 0 and "Traceback" not in text, text
    step = stored_config(out)["step"]
    assert step >= 10 and (out / "last.safetensors").is_file()
    assert f"rbqe train: stopped at step {step}; the training state is in" in text


def test_a_cosine_run_resumed_without_its_budget_keeps_its_length(
        tmp_path: Path, images: list[np.ndarray]) -> None:
    """Resumed without --time-budget, a cosine run restarted at the peak rate with a
    10-million-step schedule, and saved it: later resumes could not get it back."""
    from rbqe.train.loop import MAX_STEPS, lr_at

    first = _cfg(tmp_path, 80)
    first.schedule = "cosine"
    t = Trainer(first, images)
    orig = t.train_step

    def step_then_stop(batch: object = None) -> float:
        loss = orig(batch)
        if t.step == 70:
            t.stop()
        return loss

    t.train_step = step_then_stop  # type: ignore[method-assign]
    t.run()
    late = lr_at(t.cfg, 70)
    assert late < 0.3 * first.lr  # well into its decay
    again = _cfg(tmp_path, MAX_STEPS)  # no --steps, no --time-budget
    again.schedule = "cosine"
    resumed = Trainer(again, images)
    assert resumed.step == 70 and resumed.cfg.steps == 80
    assert lr_at(resumed.cfg, 70) == late
    resumed.run()
    assert resumed.step == 80 and stored_config(tmp_path / "run")["steps"] == 80


def test_patch_must_fit_the_photos_and_the_grid(tmp_path: Path, images: list[np.ndarray],
                                                capsys) -> None:
    """--patch 100 trained 96 px crops logged as 100; 16 failed inside OpenCV; one larger
    than a photo failed with "all input arrays must have the same shape"."""
    data = tmp_path / "photos"
    data.mkdir()
    for i, img in enumerate(images):  # 96 x 128
        cv2.imwrite(str(data / f"p{i}.png"), img[..., ::-1])
    base = ["train", "--out", str(tmp_path / "run"), "--data", str(data), "--width", "8",
            "--batch", "2", "--steps", "1", "--threads", "1"]
    for bad in ("100", "16", "x"):
        with pytest.raises(SystemExit) as exit_:
            main([*base, "--patch", bad])
        assert exit_.value.code == 2
        assert "--patch" in capsys.readouterr().err
    assert main([*base, "--patch", "128"]) == 2
    err = capsys.readouterr().err
    assert "--patch 128 is larger than 3 of the 3 training photos (the smallest is 128 x 96)" \
        in err and "--patch 96 or less" in err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_eval_records_name_their_weights_and_their_folders_are_made(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--save-records into a new folder failed after the whole measurement, with a
    traceback and no table; --records with other --weights printed the recorded figures
    under the new weights' name."""
    weights = save_tiny_weights(tmp_path / "w.safetensors")
    other = save_tiny_weights(tmp_path / "other.safetensors", seed=7)
    clean = _write_clean(tmp_path / "clean")
    records = tmp_path / "new" / "deeper" / "rec.json"
    plot = tmp_path / "plots" / "e.png"
    common = ["--qf", "10", "--device", "cpu"]
    assert main(["eval", str(clean), *common, "--weights", str(weights), "--save-records",
                 str(records), "--plot", str(plot)]) == 0
    assert records.is_file() and plot.is_file()
    assert json.loads(records.read_text())["weights"]["path"] == str(weights)
    capsys.readouterr()
    assert main(["eval", str(clean), *common, "--weights", str(weights), "--records",
                 str(records)]) == 0
    assert main(["eval", str(clean), *common, "--weights", str(other), "--records",
                 str(records)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"these records were made with {weights}, not with {other}" in err


def test_a_branchs_log_carries_on_from_its_main_log(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A cool-down branch's log was counted from 0 at its own patch size: drawn far to
    the right of the main line (91 G against 35 G pixels), joined to it as one line."""
    from rbqe.train.curve import branch_start

    main_rows = [{"step": 1, "patches": 100, "patch": 64}, {"step": 2, "patches": 200,
                                                             "patch": 64}]
    branch_rows = [{"step": 2, "patches": 200, "patch": 128},
                   {"step": 3, "patches": 250, "patch": 128}]
    main_px = with_pixels(main_rows)
    start = branch_start([main_px], branch_rows[0]["patches"])
    assert start == (200 * 64**2, 200)
    assert [e["pixels"] for e in with_pixels(branch_rows, start=start)] == [
        200 * 64**2, 200 * 64**2 + 50 * 128**2]
    gains = {"val_gain_db": {"10": [0.1] * 5}}
    (tmp_path / "main").mkdir()
    (tmp_path / "branch").mkdir()
    for folder, rows in (("main", main_rows), ("branch", branch_rows)):
        (tmp_path / folder / "train_log.jsonl").write_text(
            "\n".join(json.dumps({**r, **gains}) for r in rows))
    logs = [str(tmp_path / f / "train_log.jsonl") for f in ("main", "branch")]
    assert main(["train-curve", *logs, "--plot", str(tmp_path / "noext")]) == 0
    assert (tmp_path / "noext.png").is_file()
    assert f"wrote {tmp_path / 'noext.png'}" in capsys.readouterr().err  # said "noext"
    # A log that is missing, empty or not a log: one line, no traceback.
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "checkpoint.pt").write_bytes(b"\x80\x02\xff\xfe binary")
    for bad in ("missing.jsonl", "empty.jsonl", "checkpoint.pt"):
        assert main(["train-curve", str(tmp_path / bad), "--plot", str(tmp_path / "x.png")]) \
            == 2
        assert bad in capsys.readouterr().err


def test_calibrate_writes_only_the_weights_it_is_given(tmp_path: Path, monkeypatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Without --weights it rewrote the shipped weights file (or RBQE_WEIGHTS's), which
    neither the usage line nor the help said."""
    weights = save_tiny_weights(tmp_path / "w.safetensors")
    monkeypatch.setenv("RBQE_WEIGHTS", str(weights))
    before = weights.read_bytes()
    clean = _write_clean(tmp_path / "clean")
    assert main(["calibrate", str(clean), "--qf", "10", "--device", "cpu"]) == EXIT_USAGE
    assert "name the file with --weights FILE" in capsys.readouterr().err
    assert weights.read_bytes() == before
    assert main(["calibrate", str(clean), "--qf", "10", "--device", "cpu", "--dry-run"]) == 0
    assert weights.read_bytes() == before


def test_compare_eval_refuses_unlike_sides_and_says_worse_in_its_status(tmp_path: Path) -> None:
    """3 colour photos against 100 gray ones were compared without a word; "worse" exited
    0; no QF in common was an IndexError."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "compare_eval.py"

    def doc(images: int, gray: bool, gain: float, qfs=(10, 90)) -> dict:
        entry = {"exits": {str(k): {"d_psnr": gain} for k in range(1, 6)},
                 "auto": {"d_psnr": gain, "gmacs": 1.0, "gmacs_exit5": 2.0}}
        return {"images": images, "gray": gray, "per_qf": {str(q): entry for q in qfs}}

    files = {}
    for name, d in (("base", doc(100, True, 1.2)), ("better", doc(100, True, 1.3)),
                    ("worse", doc(100, True, 1.1)), ("colour", doc(3, False, 1.3)),
                    ("other_qf", doc(100, True, 1.3, qfs=(50,)))):
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(json.dumps(d))

    def run(cand: str, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(script), str(files["base"]), "--candidate",
                               str(files[cand]), *extra], capture_output=True, text=True,
                              check=False)

    assert run("better").returncode == 0
    worse = run("worse")
    assert worse.returncode == 1 and "worse: QF 10 exit 5 -0.100" in worse.stdout
    unlike = run("colour")
    assert unlike.returncode == 2 and "measured differently" in unlike.stderr
    assert run("colour", "--anyway").returncode == 0
    none = run("other_qf")
    assert none.returncode == 2 and "no QF in common" in none.stderr


def test_the_progress_rate_leaves_validation_out(tmp_path: Path, images: list[np.ndarray],
                                                 monkeypatch) -> None:
    """"0.45 steps/s" was shown where training ran at 3: the rate averaged in the time
    spent validating (and the steps' ETA with it)."""
    import time as time_mod

    cfg = _cfg(tmp_path, 20)
    t = Trainer(cfg, images)
    t.val_set = [object()]  # validate every 10 steps, slowly
    cfg.val_every = 10

    def slow_validation(loss: object, rate: float, on_line: object) -> None:
        time_mod.sleep(5.0)

    monkeypatch.setattr(t, "_validate_and_log", slow_validation)
    (t.out / "train_log.jsonl").parent.mkdir(parents=True, exist_ok=True)
    (t.out / "train_log.jsonl").write_text("")  # not a fresh run: no step-0 validation
    lines: list[str] = []
    start = time_mod.monotonic()
    t._loop(lines.append)
    wall = time_mod.monotonic() - start
    last = [ln for ln in lines if ln.startswith("step 20 ")][0]
    shown = float(last.split(" steps/s")[0].split()[-1])
    # At step 20 the old rate was 20 / (training + the step-10 validation), at most
    # 20 / (wall - 5) (the step-20 validation came after); without it, clearly more.
    assert shown > 1.05 * 20 / (wall - 5), (shown, wall)
