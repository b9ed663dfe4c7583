"""Tests of rbqe.iqa: a per-block float64 reference written from the spec, golden values of
the paper's MATLAB assessor, edge cases, and tensor dtype/device behaviour."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import rbqe.iqa as iqa_module
from rbqe.iqa import luma, score, score_rows, score_torch, tchebichef_basis

SHARED = Path(__file__).parents[1] / ".." / "shared"
GOLDEN_JSON = SHARED / "guide" / "iqa_golden.json"
BSDS_VAL = SHARED / "datasets" / "val" / "bsds500_val"
needs_shared = pytest.mark.skipif(
    not GOLDEN_JSON.is_file() or not BSDS_VAL.is_dir(), reason="shared data not available"
)

# From iqa_golden.json ("synthetic" entries); qf None = no re-encoding.
SYNTHETIC_GOLDEN = [
    (None, 0.379440096),
    (90, 0.571187889),
    (50, 0.776910196),
    (30, 0.829164575),
    (10, 0.846606396),
]


# --- reference: plain per-block float64 loops, straight from the spec ---------------------


def ref_basis(n: int) -> np.ndarray:
    x = np.arange(n, dtype=np.float64)
    q, r = np.linalg.qr(np.vander(x, n, increasing=True))
    return (q * np.sign(np.diag(r))).T


def ref_gaussian() -> np.ndarray:
    ax = np.arange(-1, 2, dtype=np.float64)
    g = np.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * 5.0**2))
    return g / g.sum()


def ref_blur(block: np.ndarray) -> np.ndarray:
    # imfilter(patch, G, 'same'): zero padding around the extracted block.
    g = ref_gaussian()
    n0, n1 = block.shape
    padded = np.pad(block, 1)
    out = np.zeros_like(block)
    for i in range(n0):
        for j in range(n1):
            out[i, j] = np.sum(g * padded[i : i + 3, j : j + 3])
    return out


def ref_moments(block: np.ndarray, t: np.ndarray) -> np.ndarray:
    p = block / np.sqrt(np.sum(block**2))
    p = p - p.mean()
    return t @ p @ t.T


def ref_score(img: np.ndarray, block: int = 8) -> float:
    img = np.asarray(img, dtype=np.float64)
    t = ref_basis(block)
    c, q_max = 1e-5, 0.05
    n_h = img.shape[0] // block - 1
    n_w = img.shape[1] // block - 1
    blocky, blurry = [], []
    for bi in range(n_h):
        for bj in range(n_w):
            r0 = bi * block + block // 2
            c0 = bj * block + block // 2
            patch = img[r0 : r0 + block, c0 : c0 + block]
            if not np.any(patch):
                continue  # all-zero block: skipped
            m = ref_moments(patch, t)
            ssm = np.sum(m**2) - m[0, 0] ** 2
            if ssm > 0.004:
                mb = ref_moments(ref_blur(patch), t)
                sim = (2 * m * mb + c) / (m**2 + mb**2 + c)
                blurry.append(1 - np.mean(sim))
            else:
                denom = np.sum(np.abs(m)) - abs(m[0, 0]) + c
                q_v = min(np.sum(np.abs(m[-1, :])) / denom, q_max)
                q_h = min(np.sum(np.abs(m[:, -1])) / denom, q_max)
                blocky.append(np.log(1 - (q_v + q_h) / 2) / np.log(1 - q_max))
    s_block = np.mean(blocky) if blocky else 1.0
    s_blur = np.mean(blurry) if blurry else 1.0
    return float(s_block**0.9 * s_blur**0.1)


# --- image helpers -----------------------------------------------------------------------


def jpeg(img: np.ndarray, qf: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, qf])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)


def synthetic() -> np.ndarray:
    # The golden json's synthetic_recipe.
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:96, 0:128]
    img = 128 + 60 * np.sin(x / 9.0) * np.cos(y / 13.0)
    img = img + np.where(x > 64, rng.normal(0, 25, (96, 128)), 0)
    return np.clip(img, 0, 255).astype(np.uint8)


def as_unit(img: np.ndarray) -> np.ndarray:
    return img / 255.0 if img.dtype == np.uint8 else img


def generated_images() -> dict[str, tuple[np.ndarray, int]]:
    """name -> (image, block); uint8 images stand for 8-bit luma (/255)."""
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:48, 0:64]
    ramp = 0.2 + 0.5 * x / 64 + 0.2 * y / 48
    ramp8 = np.round(ramp * 255).astype(np.uint8)
    radial8 = np.round(np.clip(0.1 + 0.8 * np.hypot(x - 20, y - 30) / 60, 0, 1) * 255)
    radial8 = radial8.astype(np.uint8)
    wavy = 128 + 50 * np.sin(x / 7.0) + 40 * np.cos(y / 5.0) + rng.normal(0, 8, x.shape)
    wavy = np.clip(wavy, 0, 255).astype(np.uint8)
    odd = np.clip(0.5 + 0.3 * rng.standard_normal((37, 53)), 0, 1)
    odd8 = np.round(np.clip(0.5 + 0.1 * np.sin(np.mgrid[0:37, 0:53][1] / 4.0), 0, 1) * 255)
    odd8 = odd8.astype(np.uint8)
    return {
        "random": (rng.random((64, 80)), 8),
        "random_4x4": (rng.random((64, 80)), 4),
        "float_ramp": (ramp, 8),
        "float_ramp_4x4": (ramp, 4),
        "ramp_8bit": (ramp8, 8),
        "ramp_8bit_4x4": (ramp8, 4),
        "radial_8bit": (radial8, 8),
        "radial_8bit_4x4": (radial8, 4),
        "jpeg_q10": (jpeg(wavy, 10), 8),
        "jpeg_q30": (jpeg(wavy, 30), 8),
        "jpeg_q10_4x4": (jpeg(wavy, 10), 4),
        "odd_37x53": (odd, 8),
        "odd_37x53_4x4": (odd, 4),
        "odd_jpeg_37x53": (jpeg(odd8, 20), 8),
        "synthetic_q20": (jpeg(synthetic(), 20), 8),
    }


GENERATED = generated_images()
# Exact float ramps score ~1e-13, where x ** 0.9 turns the float32 rounding of the input
# itself into ~1e-6; only the float64 path can match the reference there.
FLOAT32_OK = sorted(name for name in GENERATED if not name.startswith("float_ramp"))


# --- basis -------------------------------------------------------------------------------


def test_basis_matches_published_table_and_is_orthonormal() -> None:
    t = tchebichef_basis(8)
    assert t.shape == (8, 8) and t.dtype == np.float64
    np.testing.assert_allclose(t[0], np.full(8, 0.3536), atol=5e-5)
    np.testing.assert_allclose(t[1, [0, 1, 2, 7]], [-0.5401, -0.3858, -0.2315, 0.5401], atol=5e-5)
    np.testing.assert_allclose(t[2, [0, 1, 2]], [0.5401, 0.0772, -0.2315], atol=5e-5)
    for n in (1, 2, 4, 8, 16):
        b = tchebichef_basis(n)
        np.testing.assert_allclose(b @ b.T, np.eye(n), atol=1e-14)
        assert np.all(b[:, -1] > 0)  # positive leading coefficient: positive at x = n-1
        if n <= 8:
            # A float QR of the Vandermonde matrix loses ~1e-8 by n = 16 (why the module
            # orthogonalises in exact rationals); up to 8 it is a fair check.
            np.testing.assert_allclose(b, ref_basis(n), atol=1e-10)


def test_basis_rejects_bad_size_and_is_not_shared() -> None:
    with pytest.raises(ValueError):
        tchebichef_basis(0)
    t = tchebichef_basis(8)
    t[0, 0] = 42.0  # a caller's copy: must not leak into the cache
    assert tchebichef_basis(8)[0, 0] != 42.0


# --- agreement with the reference and the golden values ------------------------------------


@pytest.mark.parametrize("name", FLOAT32_OK)
def test_matches_reference_float32(name: str) -> None:
    img, block = GENERATED[name]
    expected = ref_score(as_unit(img), block)
    assert score(img, block) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_matches_reference_float64(name: str) -> None:
    img, block = GENERATED[name]
    unit = as_unit(img)
    got = float(score_torch(torch.from_numpy(unit), block, dtype=torch.float64))
    assert got == pytest.approx(ref_score(unit, block), abs=1e-9)


def test_float32_on_exact_float_ramp_is_near_zero() -> None:
    # The documented float32 limit: right answer ~1e-13, float32 lands within 1e-5.
    for name in ("float_ramp", "float_ramp_4x4"):
        img, block = GENERATED[name]
        assert ref_score(img, block) < 1e-12
        assert 0.0 <= score(img, block) < 1e-5


@pytest.mark.parametrize(("qf", "expected"), SYNTHETIC_GOLDEN)
def test_synthetic_golden(qf: int | None, expected: float) -> None:
    img = synthetic()
    if qf is not None:
        img = jpeg(img, qf)
    assert score(img) == pytest.approx(expected, abs=1e-6)
    assert ref_score(img / 255.0) == pytest.approx(expected, abs=1e-6)


@needs_shared
def test_photo_golden() -> None:
    cases = [e for e in json.loads(GOLDEN_JSON.read_text())["scores"] if e["image"] != "synthetic"]
    assert cases
    for case in cases:
        img = cv2.imread(str(BSDS_VAL / case["image"]), cv2.IMREAD_GRAYSCALE)
        assert img is not None, case["image"]
        if case["qf"] is not None:
            img = jpeg(img, case["qf"])
        assert score(img) == pytest.approx(case["score"], abs=1e-6), case


@needs_shared
def test_photos_score_lower_at_qf10_than_qf50() -> None:
    names = sorted(p.name for p in BSDS_VAL.glob("*.jpg"))[:5]
    assert len(names) == 5
    for name in names:
        img = cv2.imread(str(BSDS_VAL / name), cv2.IMREAD_GRAYSCALE)
        assert score(jpeg(img, 10)) < score(jpeg(img, 50)), name


# --- edge cases -------------------------------------------------------------------------


def test_all_zero_blocks_are_skipped() -> None:
    img = GENERATED["random"][0].copy()
    img[:32, :40] = 0.0  # several whole blocks of zeros
    expected = ref_score(img)
    got = score(img)
    assert np.isfinite(got)
    assert got == pytest.approx(expected, abs=1e-6)
    # The zero blocks count in neither class: same as scoring only the remaining blocks,
    # which here differ from the unmodified image's score.
    assert got != pytest.approx(score(GENERATED["random"][0]), abs=1e-6)


def test_all_zero_image_scores_one() -> None:
    assert score(np.zeros((64, 64), np.uint8)) == 1.0
    assert score(np.zeros((64, 64), np.float32), block=4) == 1.0


@pytest.mark.parametrize("value", [1, 77, 128, 255])
def test_constant_image_is_maximally_blocky(value: int) -> None:
    # A flat block has no last-order energy (Q = 0), which the MATLAB code maps to
    # blockiness 0; all blocks are smooth, so the image scores 0.
    img = np.full((48, 64), value, np.uint8)
    assert ref_score(img / 255.0) == 0.0
    assert score(img) == 0.0


@pytest.mark.parametrize(
    ("shape", "block"),
    [((8, 8), 8), ((15, 15), 8), ((15, 200), 8), ((200, 15), 8), ((7, 7), 4), ((0, 0), 8)],
)
def test_too_small_scores_one(shape: tuple[int, int], block: int) -> None:
    img = np.random.default_rng(2).random(shape)
    assert score(img, block) == 1.0


def test_smallest_image_has_one_block() -> None:
    img = np.random.default_rng(3).random((16, 16))
    assert score(img) == pytest.approx(ref_score(img), abs=1e-6)
    assert score(img) != 1.0


def test_batch_equals_per_image() -> None:
    rng = np.random.default_rng(4)
    base = as_unit(GENERATED["jpeg_q10"][0])
    imgs = [base, rng.random(base.shape), np.zeros(base.shape), base[::-1].copy()]
    batch = torch.from_numpy(np.stack(imgs)[:, None]).float()
    got = score_torch(batch)
    assert got.shape == (4,)
    for i, img in enumerate(imgs):
        assert float(got[i]) == pytest.approx(score(img), abs=1e-7)


# --- bands of rows (large images) -----------------------------------------------------


def band_image(height: int, width: int) -> np.ndarray:
    """Photo-like float32 luma: waves, noise, and a posterised (blocky) top third."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:height, 0:width]
    img = 0.5 + 0.3 * np.sin(xx / 9.0) * np.cos(yy / 13.0) + rng.normal(0, 0.05, (height, width))
    img[: height // 3] = np.round(img[: height // 3] * 8) / 8
    return np.clip(img, 0, 1).astype(np.float32)


@pytest.mark.parametrize("block", [8, 4])
def test_bands_cover_the_block_rows_once(block: int) -> None:
    for height, width in [(16, 16), (37, 53), (203, 64), (1000, 999)]:
        bands = iqa_module._bands(height, width, block)
        starts = [r0 for r0, _ in bands]
        assert starts[0] == block // 2 and all((r0 - block // 2) % block == 0 for r0 in starts)
        assert all(a[1] == b[0] for a, b in itertools.pairwise(bands))
        assert bands[-1][1] == block // 2 + (height // block - 1) * block


@pytest.mark.parametrize(("shape", "block"), [((203, 157), 8), ((203, 157), 4), ((64, 64), 8)])
def test_banded_score_matches_one_band(monkeypatch, shape: tuple[int, int], block: int) -> None:
    img = band_image(*shape)
    whole = float(score_torch(torch.from_numpy(img), block))  # one band
    assert whole == pytest.approx(ref_score(img, block), abs=1e-6)
    # One block row per band: sums and counts add up over ~25 bands.
    monkeypatch.setattr(iqa_module, "BAND_PIXELS", 1)
    assert len(iqa_module._bands(*shape, block)) == shape[0] // block - 1
    assert float(score_torch(torch.from_numpy(img), block)) == pytest.approx(whole, abs=1e-7)
    assert score_rows(lambda r0, r1: img[r0:r1], *shape, block) == pytest.approx(whole, abs=1e-7)
    batch = torch.from_numpy(np.stack([img, img[::-1].copy()])[:, None])
    banded = score_torch(batch, block)
    monkeypatch.setattr(iqa_module, "BAND_PIXELS", 1 << 30)
    torch.testing.assert_close(banded, score_torch(batch, block), rtol=0, atol=1e-7)


def test_score_rows_reads_only_the_block_rows_it_needs() -> None:
    img = band_image(1100, 2500)  # several bands at the default size
    reads: list[tuple[int, int]] = []

    def rows(r0: int, r1: int) -> np.ndarray:
        reads.append((r0, r1))
        return img[r0:r1]

    got = score_rows(rows, *img.shape)
    assert len(reads) > 1 and reads == iqa_module._bands(*img.shape, 8)
    assert got == pytest.approx(float(score_torch(torch.from_numpy(img))), abs=1e-7)
    assert score_rows(lambda r0, r1: torch.from_numpy(img[r0:r1]), *img.shape) == got


def test_score_rows_edge_cases() -> None:
    assert score_rows(lambda r0, r1: np.zeros((r1 - r0, 15)), 40, 15) == 1.0  # too small
    assert score_rows(lambda r0, r1: np.zeros((r1 - r0, 40)), 40, 40) == 1.0  # all zero
    flat = score_rows(lambda r0, r1: np.full((r1 - r0, 40), 0.5), 40, 40)
    assert flat == float(score_torch(torch.full((40, 40), 0.5))) == 0.0
    with pytest.raises(ValueError, match="shape"):
        score_rows(lambda r0, r1: np.zeros((r1 - r0, 39)), 40, 40)
    with pytest.raises(ValueError):
        score_rows(lambda r0, r1: np.zeros((r1 - r0, 40)), 40, 40, block=1)


# --- tensor behaviour -------------------------------------------------------------------


def test_dtypes_and_shapes_on_cpu() -> None:
    img = torch.from_numpy(as_unit(GENERATED["jpeg_q30"][0]))
    s2d = score_torch(img.float())
    assert s2d.shape == () and s2d.dtype == torch.float32 and s2d.device.type == "cpu"
    s4d = score_torch(img[None, None].float())
    assert s4d.shape == (1,) and s4d.dtype == torch.float32
    # float64 and half inputs are computed in float32 unless asked otherwise.
    assert score_torch(img.double()).dtype == torch.float32
    assert float(score_torch(img.double())) == pytest.approx(float(s2d), abs=1e-7)
    assert score_torch(img.half()).dtype == torch.float32
    s64 = score_torch(img.double(), dtype=torch.float64)
    assert s64.dtype == torch.float64
    assert float(s64) == pytest.approx(float(s2d), abs=1e-6)
    assert float(s64) == pytest.approx(ref_score(img.numpy()), abs=1e-9)
    too_small = score_torch(torch.zeros(2, 1, 8, 8))
    assert too_small.shape == (2,) and too_small.dtype == torch.float32


def test_inference_mode_and_autocast() -> None:
    img = torch.from_numpy(as_unit(GENERATED["jpeg_q10"][0])).float()[None, None]
    expected = score_torch(img)
    with torch.inference_mode():
        inf_img = img.clone()
        assert torch.equal(score_torch(inf_img), expected)
    assert torch.equal(score_torch(inf_img), expected)  # inference tensor, normal mode
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        got = score_torch(img)
    assert got.dtype == torch.float32 and torch.equal(got, expected)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fp16_autocast_matches_cpu() -> None:
    img = torch.from_numpy(as_unit(GENERATED["jpeg_q10"][0])).float()[None, None]
    expected = float(score_torch(img))
    with torch.autocast(device_type="cuda", dtype=torch.float16):
        got = score_torch(img.cuda())
    assert got.device.type == "cuda" and got.dtype == torch.float32
    assert float(got) == pytest.approx(expected, abs=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_scores_host_bands() -> None:
    img = as_unit(GENERATED["jpeg_q10"][0])
    expected = score_rows(lambda r0, r1: img[r0:r1], *img.shape)
    got = score_rows(lambda r0, r1: img[r0:r1], *img.shape, device="cuda")
    assert got == pytest.approx(expected, abs=1e-6)


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        score_torch(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError):
        score_torch(torch.rand(32))
    with pytest.raises(ValueError):
        score_torch(torch.rand(32, 32), block=1)
    with pytest.raises(TypeError):
        score_torch(torch.zeros(32, 32, dtype=torch.uint8))
    with pytest.raises(TypeError):
        score(np.zeros((32, 32), np.int32))
    with pytest.raises(ValueError):
        score(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ValueError):
        score(torch.rand(2, 1, 32, 32))


def test_score_numpy_dtypes() -> None:
    img8 = jpeg(synthetic(), 30)
    s8 = score(img8)
    assert isinstance(s8, float)
    assert score(img8.astype(np.uint16) * 257) == pytest.approx(s8, abs=1e-7)
    assert score(img8 / 255.0) == pytest.approx(s8, abs=1e-7)
    assert score(torch.from_numpy(img8 / 255.0)) == pytest.approx(s8, abs=1e-7)


def test_luma_bt601() -> None:
    rgb = torch.zeros(2, 3, 4, 5)
    rgb[0, 0] = 1.0
    rgb[1] = torch.tensor([0.2, 0.4, 0.6])[:, None, None]
    y = luma(rgb)
    assert y.shape == (2, 1, 4, 5) and y.dtype == torch.float32
    torch.testing.assert_close(y[0], torch.full((1, 4, 5), 0.299))
    torch.testing.assert_close(y[1], torch.full((1, 4, 5), 0.299 * 0.2 + 0.587 * 0.4 + 0.114 * 0.6))
    assert torch.allclose(luma(torch.ones(1, 3, 2, 2)), torch.ones(1, 1, 2, 2))
    with pytest.raises(ValueError):
        luma(torch.rand(1, 1, 4, 4))
