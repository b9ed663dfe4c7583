"""CUDA: the engine's fp16 path against the CPU's fp32 one, a real out-of-memory retry, and
a bf16 training step. Skipped without a CUDA device (CI has none); run where one is lent
with ``pytest -m gpu`` (scripts/gpu_session.sh does)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rbqe.engine import Enhancer
from rbqe.train.loop import TrainConfig, Trainer
from tests.helpers import jpeg_pixels, photo, psnr

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

SHIPPED = Path(__file__).resolve().parents[1] / "weights" / "rbqe_jpeg.safetensors"


def test_fp16_exits_match_cpu_fp32() -> None:
    img = jpeg_pixels(320, 448, seed=3, quality=15).astype(np.float32) / 255
    gpu = Enhancer(SHIPPED, device="cuda", tile=0).enhance(img, "all")
    cpu = Enhancer(SHIPPED, device="cpu", tile=0, backend="torch").enhance(img, "all")
    assert Enhancer(SHIPPED, device="cuda").fp16
    for g, c in zip(gpu.exits, cpu.exits, strict=True):
        assert psnr(g.image, c.image) >= 45, g.exit
        assert g.score == pytest.approx(c.score, abs=1e-2)
    assert gpu.chosen == cpu.chosen


def test_batched_walks_match_one_at_a_time() -> None:
    """enhance_many's batch and a tiled image's tiles walking together, in fp16."""
    enh = Enhancer(SHIPPED, device="cuda", tile_exits="per-tile")  # tiles leave one by one
    assert enh.batches and enh.tile_batch > 1
    imgs = [jpeg_pixels(256, 320, seed=s, quality=q).astype(np.float32) / 255
            for s, q in enumerate((10, 30, 60, 90, 95))]
    alone = [enh.enhance(i) for i in imgs]
    for a, b in zip(alone, enh.enhance_many(imgs), strict=True):
        assert b.chosen == a.chosen and psnr(a.image, b.image) >= 50
    big = jpeg_pixels(1200, 2100, seed=7, quality=25).astype(np.float32) / 255
    together = enh.enhance(big)
    enh.max_batch = 1
    one = enh.enhance(big)
    assert together.tile_exits.exits == one.tile_exits.exits
    assert psnr(together.image, one.image) >= 50


def test_real_out_of_memory_retries_with_tiles() -> None:
    """A per-process cap makes an untiled 12 MP image run out of device memory for real;
    the engine must retry with tiles and give the tiled run's result."""
    img = photo(3000, 4000, seed=5).astype(np.float32) / 255
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, 1.5 * 2**30 / total))
    try:
        res = Enhancer(SHIPPED, device="cuda", tile=0).enhance(img, 3)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    assert res.oom_retries >= 1 and res.tiled and res.chosen == 3
    again = Enhancer(SHIPPED, device="cuda", tile=res.tile_size).enhance(img, 3)
    assert psnr(res.image, again.image) >= 60


def test_bf16_training_steps(tmp_path: Path) -> None:
    data = tmp_path / "photos"
    data.mkdir()
    from PIL import Image

    for i in range(3):
        Image.fromarray(photo(160, 200, seed=i)).save(data / f"p{i}.png")
    cfg = TrainConfig(train_dirs=[str(data)], val_dirs=[str(data)], out_dir=str(tmp_path / "run"),
                      width=8, patch=64, batch=8, steps=6, device="cuda", bf16=True,
                      val_every=3, val_images=2, workers=0)
    trainer = Trainer(cfg)
    trainer.run()
    assert trainer.step == 6
    assert all(np.isfinite(p.detach().float().cpu().numpy()).all()
               for p in trainer.net.parameters())
    assert next(trainer.net.parameters()).device.type == "cuda"
