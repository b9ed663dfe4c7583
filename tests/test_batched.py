"""Batched walks on the torch module path (a GPU's; here the CPU's with its fast path off):
Enhancer.enhance_many's same-size images on one run (rbqe/batched.py), and a tiled image's
tiles walking together (rbqe/tile_exits.py), give each image and tile what it gets alone."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rbqe import batched
from rbqe.batch import (
    BatchEvents,
    BatchOptions,
    pending_outputs,
    plan_batch,
    process_items,
    run_batch,
)
from rbqe.engine import Enhancer
from rbqe.errors import ImageWriteError
from tests.helpers import SmoothStopsEarly, jpeg_pixels, psnr, tiny_net, write_jpeg

# Assessor scores of these pictures under tiny_net(1) sit around 0.88-0.96 and differ per
# exit, so this threshold sends them to different exits (asserted below).
THRESHOLD = 0.92
QUALITIES = [10, 95, 30, 60, 90]


@pytest.fixture
def pictures() -> list[np.ndarray]:
    return [jpeg_pixels(96, 80, seed=s, quality=q).astype(np.float32) / 255
            for s, q in enumerate(QUALITIES)]


def _module_path_enhancer(**kw) -> Enhancer:
    """The CPU torch backend off its fast path: the path a GPU batches on."""
    kw.setdefault("tile", 0)
    enh = Enhancer(net=tiny_net(1), device="cpu", backend="torch", threshold=THRESHOLD, **kw)
    enh.fast = False
    assert enh.batches
    return enh


def _same(alone, together) -> None:
    assert together.chosen == alone.chosen
    assert together.decision == alone.decision
    assert [e.exit for e in together.exits] == [e.exit for e in alone.exits]
    for a, b in zip(alone.exits, together.exits, strict=True):
        assert b.score == pytest.approx(a.score, abs=1e-5)
        assert b.signals.change == pytest.approx(a.signals.change, abs=1e-4)
        if a.signals.eca is not None:  # each image's own ECA means, not the batch's
            np.testing.assert_allclose(b.signals.eca, a.signals.eca, atol=1e-5)
        assert psnr(a.image, b.image) > 60
        assert b.gmacs == pytest.approx(a.gmacs)


@pytest.mark.parametrize("mode", ["auto", "all", 4])
def test_a_batch_gives_each_image_its_own_walk(pictures, mode, one_thread) -> None:
    enh = _module_path_enhancer()
    alone = [enh.enhance(p, mode) for p in pictures]
    together = enh.enhance_many(pictures, mode, batch=8)
    if mode == "auto":  # the images leave the run at different exits
        assert len({r.chosen for r in alone}) >= 3
    for a, b in zip(alone, together, strict=True):
        _same(a, b)


def test_images_leave_the_run_when_their_policy_stops(pictures, monkeypatch, one_thread) -> None:
    rows = []
    keep = torch.Tensor.index_select

    def counting(t: torch.Tensor, dim: int, index: torch.Tensor) -> torch.Tensor:
        rows.append(len(index))
        return keep(t, dim, index)

    enh = _module_path_enhancer()
    chosen = [enh.enhance(p).chosen for p in pictures]
    monkeypatch.setattr(torch.Tensor, "index_select", counting)
    enh.enhance_many(pictures)
    # After exit k, only the images whose exit is later go on.
    later = sorted({sum(c > k for c in chosen) for k in range(1, max(chosen))}, reverse=True)
    assert sorted(set(rows), reverse=True) == [n for n in later if n < len(pictures)]


def test_shapes_batch_sizes_and_order(one_thread) -> None:
    enh = _module_path_enhancer()
    shapes = [(64, 96), (96, 64), (64, 96), (64, 96), (96, 64), (64, 96)]
    imgs = [jpeg_pixels(h, w, seed=i, quality=15 + 10 * i).astype(np.float32) / 255
            for i, (h, w) in enumerate(shapes)]
    imgs[1] = imgs[1][..., :1]  # grey among colour: its own group
    alone = [enh.enhance(p) for p in imgs]
    for batch in (1, 2, 8):
        together = enh.enhance_many(imgs, batch=batch)
        assert [r.size for r in together] == [r.size for r in alone]
        for a, b in zip(alone, together, strict=True):
            _same(a, b)


def test_images_larger_than_a_tile_and_the_cpu_fast_path_go_one_by_one(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(batched, "enhance_batch", lambda *a: calls.append(a) or [])
    big = [jpeg_pixels(160, 160, seed=i).astype(np.float32) / 255 for i in range(2)]
    tiled = _module_path_enhancer()
    tiled.tile = 128
    assert all(r.tiled for r in tiled.enhance_many(big))
    fast = Enhancer(net=tiny_net(1), device="cpu", tile=0, backend="torch")
    assert not fast.batches
    assert len(fast.enhance_many(big)) == 2
    assert calls == []


def test_out_of_memory_in_a_batch_goes_on_one_by_one(pictures, monkeypatch, caplog) -> None:
    def oom(*_args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9 GiB\nmore")

    enh = _module_path_enhancer()
    alone = [enh.enhance(p) for p in pictures]
    monkeypatch.setattr(batched, "enhance_batch", oom)
    with caplog.at_level(logging.WARNING, logger="rbqe.engine"):
        together = enh.enhance_many(pictures)
    assert "batch of 5 images; going on one by one (CUDA out of memory." in caplog.text
    for a, b in zip(alone, together, strict=True):
        _same(a, b)


def test_priors_must_match_the_images(pictures) -> None:
    with pytest.raises(ValueError, match="2 priors for 5 images"):
        _module_path_enhancer().enhance_many(pictures, priors=[None, None])


# -- tiles of a tiled image, walking together (rbqe/tile_exits.py) ---------------------


def _half_smooth(h: int, w: int) -> np.ndarray:
    img = np.empty((h, w, 1), np.float32)
    img[:, : w // 2, 0] = np.linspace(0.3, 0.6, w // 2)[None, :]
    img[:, w // 2 :, 0] = np.random.default_rng(3).random((h, w - w // 2))
    return img


def _tiled(max_batch: int) -> Enhancer:
    enh = Enhancer(net=tiny_net(1), device="cpu", tile=128, backend="torch",
                   tile_exits="per-tile",
                   policy=SmoothStopsEarly("assessor", {"threshold": 0.0, "min_exit": 1}))
    enh.fast, enh.max_batch = False, max_batch
    assert enh.tile_batch == max_batch
    return enh


def test_tiles_walk_in_batches_to_their_own_exits(monkeypatch, one_thread) -> None:
    monkeypatch.setattr("rbqe.tile_exits.FLOOR_DROP", None)  # let the smooth half stop early
    img = _half_smooth(300, 520)  # edge tiles of other shapes too
    alone, together = (_tiled(b).enhance(img) for b in (1, 4))
    assert alone.tile_exits is not None and together.tile_exits is not None
    assert set(alone.tile_exits.exits) == {1, 4}
    assert together.tile_exits.exits == alone.tile_exits.exits
    assert together.tile_exits.reasons == alone.tile_exits.reasons
    assert psnr(alone.image, together.image) > 60
    assert together.tile_exits.gmacs == pytest.approx(alone.tile_exits.gmacs)
    # The sample tiles walked together too: the same whole-picture decision and scores.
    assert together.chosen == alone.chosen and together.decision == alone.decision
    assert together.sampled_scores == pytest.approx(alone.sampled_scores, abs=1e-5)


@pytest.mark.parametrize("mode", [3, "all"])
def test_tiles_of_forced_exits_run_in_batches(mode, one_thread) -> None:
    img = _half_smooth(300, 520)
    alone, together = (_tiled(b).enhance(img, mode) for b in (1, 4))
    assert [e.exit for e in together.exits] == [e.exit for e in alone.exits]
    for a, b in zip(alone.exits, together.exits, strict=True):
        assert psnr(a.image, b.image) > 60
        assert b.score == pytest.approx(a.score, abs=1e-5)
    assert together.chosen == alone.chosen


def test_out_of_memory_with_tiles_in_batches_retries_one_at_a_time(monkeypatch, caplog,
                                                                    one_thread) -> None:
    monkeypatch.setattr("rbqe.tile_exits.FLOOR_DROP", None)
    enh = _tiled(4)
    img = _half_smooth(300, 520)
    start = enh.net.start

    def small_device(x, *args, **kwargs):
        if x.shape[0] > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 3 GiB")
        return start(x, *args, **kwargs)

    monkeypatch.setattr(enh.net, "start", small_device)
    with caplog.at_level(logging.WARNING, logger="rbqe.engine"):
        res = enh.enhance(img)
    assert "with 4 tiles at once; retrying one tile at a time" in caplog.text
    assert res.oom_retries == 1 and res.tile_size == 128 and enh.max_batch == 1
    assert res.tile_exits is not None
    assert res.tile_exits.exits == _tiled(1).enhance(img).tile_exits.exits


# -- run_batch in groups (rbqe/batch.py) -----------------------------------------------


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    for i, (size, q) in enumerate([((80, 64), 10), ((80, 64), 90), ((64, 80), 30),
                                   ((80, 64), 50), ((200, 150), 20), ((80, 64), 70)]):
        write_jpeg(folder / f"p{i}.jpg", size, quality=q, seed=i)
    (folder / "p3b.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    return folder


def _grouped(max_batch: int) -> Enhancer:
    enh = _module_path_enhancer(tile=128)  # p4 is larger than a tile: enhanced alone
    enh.max_batch = max_batch
    return enh


def test_a_folder_in_groups_gives_what_one_by_one_gives(tmp_path, one_thread) -> None:
    folder = _folder(tmp_path)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "p1.png").write_bytes(b"the user's own file")  # kept: p1 fails
    events: dict[int, list[str]] = {}
    ev = BatchEvents(on_item_start=lambda i, p: events.setdefault(i, []).append("start"),
                     on_exit=lambda i, e: events[i].append(f"exit{e.exit}"),
                     on_item_done=lambda i, item: events[i].append(item.status))
    one = run_batch(_grouped(1), [folder], BatchOptions(out_dir=tmp_path / "a"))
    grouped = run_batch(_grouped(4), [folder], BatchOptions(out_dir=tmp_path / "b"),
                        events=ev)
    assert [i.input.name for i in grouped.items] == [i.input.name for i in one.items]
    assert [i.status for i in grouped.items] == [
        "ok", "failed", "ok", "ok", "failed", "ok", "ok"]
    assert "p1.png already exists and was not made by rbqe" in grouped.items[1].error
    assert [i.status for i in one.items] == ["ok"] * 4 + ["failed", "ok", "ok"]
    assert grouped.items[4].error == one.items[4].error and "p3b.jpg" in grouped.items[4].error
    for a, b in zip(one.items, grouped.items, strict=True):
        if b.status == "ok":
            assert b.exit == a.exit and b.exit_reason == a.exit_reason
            assert b.scores == pytest.approx(a.scores, abs=1e-5)
            assert psnr(np.asarray(Image.open(a.outputs[str(a.exit)])) / 255.0,
                        np.asarray(Image.open(b.outputs[str(b.exit)])) / 255.0) > 45
    assert (tmp_path / "b" / "p1.png").read_bytes() == b"the user's own file"
    for i, seen in events.items():  # every image: started, its exits, then done
        assert seen[0] == "start" and seen[-1] in ("ok", "skipped", "failed"), (i, seen)
        assert all(s.startswith("exit") for s in seen[1:-1])
    assert events[0][1:-1] == [f"exit{k}" for k in range(1, grouped.items[0].exit + 1)]


def test_a_cancel_in_a_group_reports_what_was_written(tmp_path, one_thread) -> None:
    folder = _folder(tmp_path)
    out = tmp_path / "out"
    summary = run_batch(_grouped(8), [folder], BatchOptions(out_dir=out),
                        cancel=lambda: len(list(out.glob("*.png"))) >= 2)
    assert summary.cancelled
    written = sorted(p.name for p in out.glob("*.png"))
    assert sorted(i.outputs["auto" if i.exit is None else str(i.exit)].name
                  for i in summary.items if i.status == "ok") == written


def test_a_full_disk_stops_a_group(tmp_path, monkeypatch) -> None:
    def disk_full(target, *a, **k):
        error = ImageWriteError(target, "disk full")
        error.errno = errno.ENOSPC
        raise error

    monkeypatch.setattr("rbqe.batch.save_like", disk_full)
    folder = tmp_path / "in"
    for i in range(5):
        write_jpeg(folder / f"p{i}.jpg", (64, 64), seed=i)
    summary = run_batch(_grouped(8), [folder], BatchOptions(out_dir=tmp_path / "out"))
    assert [i.status for i in summary.items] == ["failed"]
    assert summary.stopped and "disk full" in summary.stopped


def test_a_read_only_sub_folder_does_not_stop_a_group(tmp_path, monkeypatch) -> None:
    # Only the output folder itself read-only stops the batch (see test_batch_safety).
    import rbqe.batch

    real, out = rbqe.batch.save_like, tmp_path / "out"

    def read_only_sub(target, *a, **k):
        if Path(target).parent == out / "sub":
            error = ImageWriteError(target, "read-only file system")
            error.errno = errno.EROFS
            raise error
        return real(target, *a, **k)

    monkeypatch.setattr("rbqe.batch.save_like", read_only_sub)
    folder = tmp_path / "in"
    for i, name in enumerate(["a.jpg", "sub/b.jpg", "sub/c.jpg", "z.jpg"]):
        write_jpeg(folder / name, (64, 64), seed=i)
    summary = run_batch(_grouped(8), [folder], BatchOptions(out_dir=out, recursive=True))
    assert summary.stopped is None
    assert [i.status for i in summary.items] == ["ok", "failed", "failed", "ok"]
    assert all(f"cannot write in {out / 'sub'}" in i.error for i in summary.items[1:3])


def test_process_items_groups_for_the_cluster_workers(tmp_path, one_thread) -> None:
    folder = _folder(tmp_path)
    plans = {}
    for out in ("a", "b"):
        plan = plan_batch([folder], BatchOptions(out_dir=tmp_path / out))
        plans[out] = [(path, plan.targets[path], pending_outputs(plan.targets[path],
                                                                 BatchOptions(tmp_path / out)),
                       plan.noted) for path, _ in plan.files]
    one = process_items(_grouped(1), plans["a"], BatchOptions(out_dir=tmp_path / "a"))
    grouped = process_items(_grouped(8), plans["b"], BatchOptions(out_dir=tmp_path / "b"))
    assert [i.status for i in grouped] == [i.status for i in one]
    assert [i.exit for i in grouped] == [i.exit for i in one]
    assert sorted(p.name for p in (tmp_path / "b").glob("*.png")) == sorted(
        p.name for p in (tmp_path / "a").glob("*.png"))
