"""Awkward real-world inputs through ``rbqe enhance``, end to end (issue 5).

The ``rbqe.io`` unit tests (test_io.py) cover each reader/writer rule in isolation; here
the same corpus (tests/corpus.py) goes through the command line, in-process and as a
real subprocess, and every promise is checked on the files that come out:

* every input gets an output, or one clean ``rbqe: error: <file>: <cause>`` line on
  stderr (and the same text as ``error`` in the JSON report), never a traceback;
* input bytes never change;
* orientation is applied, EXIF and ICC survive (EXIF is dropped by
  ``--strip-metadata``; the ICC profile is kept, as rbqe.io documents);
* alpha is bit-exact, the output mode equals the input mode, 16 bit stays 16 bit (PNG).

Models are tiny (width 8). Most checks use an *identity* model (its exit heads are
zeroed, so the residual is 0 and the output equals the input up to the YCbCr round
trip), which lets the tests compare pixels; one run uses a random model.

The 100-megapixel test is ``slow``; it prints its peak RSS and time (``-s`` shows it).
"""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from clirun import run_cli
from corpus import EXPECTED_ERROR as ALL_EXPECTED_ERRORS
from corpus import MAKE, MODEL, build_corpus, exif_bytes, pattern, sha256, srgb_icc
from PIL import Image, ImageOps

from rbqe.cli import main
from rbqe.io import OUTPUT_LOG, estimate_jpeg_quality
from rbqe.model import RBQENet
from rbqe.weights import missing_weights_message, save_weights
from tests.helpers import tiny_net

# --------------------------------------------------------------------------------------
# Expectations
# --------------------------------------------------------------------------------------

# Readable cases -> (output mode, bits per channel) of the PNG written for them.
# Palette images become RGB/RGBA and CMYK becomes RGB (rbqe.io's documented rules).
EXPECTED_MODE = {
    "jpeg_exif_rot6": ("RGB", 8),
    "jpeg_icc": ("RGB", 8),
    "jpeg_cmyk": ("RGB", 8),
    "jpeg_gray": ("L", 8),
    "jpeg_meta_rot8": ("RGB", 8),
    "png_meta": ("RGB", 8),
    "png_rgba": ("RGBA", 8),
    "png_la": ("LA", 8),
    "png_gray": ("L", 8),
    "gif_palette": ("RGBA", 8),
    "png_palette_trns": ("RGBA", 8),
    "png_palette": ("RGB", 8),
    "png_gray16": ("L", 16),
    "tiff_gray16": ("L", 16),
    "png_rgb16": ("RGB", 16),
    "tiff_rgb16": ("RGB", 16),
    "png_rgba16": ("RGBA", 16),
    "png_la16": ("LA", 16),
    "png_1x1": ("RGB", 8),
    "jpeg_1x1": ("RGB", 8),
    "png_7x9": ("RGB", 8),
    "jpeg_8x8": ("RGB", 8),
    "png_1bit": ("L", 8),
    "webp": ("RGB", 8),
    "bmp": ("RGB", 8),
    "tiff": ("RGB", 8),
}
# Failing cases -> the cause after "<file>: " (the corpus's one table), as a folder scan
# meets them.
NOT_SCANNED = {"stray_text"}  # readme.txt: not an image suffix, so a folder scan skips it
EXPECTED_ERROR = {k: v for k, v in ALL_EXPECTED_ERRORS.items() if k not in NOT_SCANNED}
ALPHA_CASES = ["png_rgba", "png_la", "gif_palette", "png_palette_trns", "png_rgba16", "png_la16"]
EXIF_CASES = ["jpeg_exif_rot6", "jpeg_meta_rot8", "png_meta"]
ICC_CASES = ["jpeg_icc", "jpeg_meta_rot8", "png_meta"]
PNG_COLOUR_TYPES = {0: "L", 2: "RGB", 4: "LA", 6: "RGBA"}
SUMMARY_PREFIX = "rbqe: "


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def tiny_model(*, identity: bool) -> RBQENet:
    net = tiny_net(1)
    if identity:
        with torch.no_grad():
            for p in net.heads.parameters():
                p.zero_()  # residual 0: every exit returns its input
    return net


def rbqe_command() -> list[str]:
    """The installed ``rbqe`` console script when present, else ``python -m rbqe.cli``."""
    script = Path(sys.executable).with_name("rbqe")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "rbqe.cli"]


def png_header(path: Path) -> tuple[str, int]:
    """(mode, bit depth) straight from a PNG's IHDR, independent of rbqe.io and Pillow."""
    data = path.read_bytes()[:33]
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    depth, colour = data[24], data[25]
    return PNG_COLOUR_TYPES[colour], depth


def alpha_of(path: Path) -> np.ndarray:
    """Alpha channel in its stored depth (OpenCV keeps 16 bit), independent of rbqe.io."""
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is not None and arr.ndim == 3 and arr.shape[2] == 4:
        return arr[..., 3]
    with Image.open(path) as im:  # palette/GIF transparency: let Pillow expand it
        return np.asarray(im.convert("RGBA"))[..., 3]


def only_output(report: dict, path: Path) -> Path:
    entry = entries_by_input(report)[str(path)]
    assert entry["status"] == "ok", entry
    outs = list(entry["outputs"].values())
    assert len(outs) == 1, entry
    return Path(outs[0])


def entries_by_input(report: dict) -> dict[str, dict]:
    return {e["input"]: e for e in report["images"]}


def stderr_lines(text: str) -> list[str]:
    """Non-empty stderr lines, without the per-image progress lines (stderr is no TTY)."""
    return [line for line in text.splitlines()
            if line.strip() and not re.match(r"rbqe: \[\d+/\d+\] ", line)]


def all_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


# --------------------------------------------------------------------------------------
# Fixtures: corpus and runs, built once per module (the checks only read them)
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("weights")
    return {
        "identity": save_weights(tiny_model(identity=True), folder / "identity.safetensors"),
        "random": save_weights(tiny_model(identity=False), folder / "random.safetensors"),
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The shared corpus plus metadata-heavy extras; checks at the end that no byte changed."""
    root = tmp_path_factory.mktemp("robust") / "in"
    files = build_corpus(root)
    Image.fromarray(pattern(10, 12, 1, seed=20)[..., 0]).save(
        root / "grey_photo.jpg", "JPEG", quality=85
    )
    files["jpeg_gray"] = root / "grey_photo.jpg"
    # Stored 12 wide x 8 high, Orientation 8 (rotate 90 deg counter-clockwise to view).
    Image.fromarray(pattern(8, 12, 3, seed=21)).save(
        root / "meta_rot8.jpg", "JPEG", quality=90, exif=exif_bytes(8), icc_profile=srgb_icc()
    )
    files["jpeg_meta_rot8"] = root / "meta_rot8.jpg"
    Image.fromarray(pattern(9, 11, 3, seed=22)).save(
        root / "meta.png", "PNG", exif=exif_bytes(), icc_profile=srgb_icc()
    )
    files["png_meta"] = root / "meta.png"
    assert set(files) == set(EXPECTED_MODE) | set(EXPECTED_ERROR) | NOT_SCANNED
    before = {name: sha256(p) for name, p in files.items()}
    yield files
    after = {name: sha256(p) for name, p in files.items()}
    assert after == before, "an input file was modified"


def _run(corpus, weights, tmp_path_factory, model: str, *extra: str,
         inputs: list[Path] | None = None) -> dict:
    out = tmp_path_factory.mktemp("out")
    report = out.parent / f"{out.name}.json"
    srcs = [str(p) for p in inputs] if inputs else [str(corpus["png_gray"].parent)]
    rc, err = run_cli(["enhance", *srcs, "-o", str(out), "--weights", str(weights[model]),
                       "--report", str(report), *extra])
    return {"rc": rc, "stderr": err, "out": out,
            "report": json.loads(report.read_text(encoding="utf-8"))}


@pytest.fixture(scope="module")
def png_run(corpus, weights, tmp_path_factory) -> dict:
    """The whole corpus folder, default PNG output, metadata kept, identity model."""
    return _run(corpus, weights, tmp_path_factory, "identity", "--exit", "1")


@pytest.fixture(scope="module")
def stripped_run(corpus, weights, tmp_path_factory) -> dict:
    names = EXIF_CASES + ICC_CASES + ["png_rgba"]
    return _run(corpus, weights, tmp_path_factory, "identity", "--exit", "1",
                "--strip-metadata", inputs=[corpus[n] for n in dict.fromkeys(names)])


LOSSY_CASES = ["jpeg_meta_rot8", "png_meta", "jpeg_gray", "png_rgba", "png_gray16"]


@pytest.fixture(scope="module", params=["jpeg", "webp"])
def lossy_run(request, corpus, weights, tmp_path_factory) -> dict:
    run = _run(corpus, weights, tmp_path_factory, "identity", "--exit", "1",
               "--format", request.param, "--quality", "70",
               inputs=[corpus[n] for n in LOSSY_CASES])
    run["fmt"] = request.param
    return run


# --------------------------------------------------------------------------------------
# Outcomes: an output, or one clean error line
# --------------------------------------------------------------------------------------


def test_report_lists_every_input_once_with_its_status(corpus, png_run) -> None:
    entries = entries_by_input(png_run["report"])
    expected = {str(corpus[n]): "ok" for n in EXPECTED_MODE}
    expected |= {str(corpus[n]): "failed" for n in EXPECTED_ERROR}
    assert {k: e["status"] for k, e in entries.items()} == expected
    assert len(png_run["report"]["images"]) == len(expected)
    summary = png_run["report"]["summary"]
    assert (summary["processed"], summary["failed"], summary["skipped"]) == (
        len(EXPECTED_MODE), len(EXPECTED_ERROR), 0)
    assert summary["cancelled"] is False
    assert png_run["rc"] == 1  # something failed


@pytest.mark.parametrize("name", sorted(EXPECTED_ERROR))
def test_bad_input_gives_one_error_line_matching_the_report(corpus, png_run, name) -> None:
    path = corpus[name]
    entry = entries_by_input(png_run["report"])[str(path)]
    assert entry["status"] == "failed" and entry["outputs"] == {}
    assert entry["error"] == f"{path}: {EXPECTED_ERROR[name]}"
    lines = [ln for ln in stderr_lines(png_run["stderr"]) if str(path) in ln]
    assert lines == [f"rbqe: error: {entry['error']}"]
    stem = path.stem
    assert not [p for p in all_files(png_run["out"]) if p.name.startswith(stem)]


def test_stderr_holds_only_error_lines_and_the_summary(png_run) -> None:
    lines = stderr_lines(png_run["stderr"])
    errors = [ln for ln in lines if ln.startswith("rbqe: error: ")]
    assert len(errors) == len(EXPECTED_ERROR)
    n = len(EXPECTED_MODE) + len(EXPECTED_ERROR)
    assert lines[-1] == (f"rbqe: {len(EXPECTED_MODE)} enhanced, 0 skipped, "
                         f"{len(EXPECTED_ERROR)} failed of {n}")
    assert lines == errors + [lines[-1]]


def test_output_folder_holds_exactly_the_reported_outputs(png_run) -> None:
    reported = sorted(Path(p) for e in png_run["report"]["images"]
                      for p in e["outputs"].values())
    # No temp files, no strays: only rbqe's note of what it wrote there (OUTPUT_LOG).
    assert all_files(png_run["out"]) == sorted([*reported, png_run["out"] / OUTPUT_LOG])
    assert len(set(reported)) == len(EXPECTED_MODE)


# --------------------------------------------------------------------------------------
# Modes, depth, alpha, sizes
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED_MODE))
def test_output_mode_and_depth_match_the_input(corpus, png_run, name) -> None:
    out = only_output(png_run["report"], corpus[name])
    assert out.suffix == ".png"
    assert png_header(out) == EXPECTED_MODE[name]
    with Image.open(corpus[name]) as src:
        w, h = ImageOps.exif_transpose(src).size if name.startswith("jpeg") else src.size
    with Image.open(out) as im:
        assert im.size == (w, h)
    entry = entries_by_input(png_run["report"])[str(corpus[name])]
    assert entry["size"] == [w, h] and entry["exit"] == 1


@pytest.mark.parametrize("name", ALPHA_CASES)
def test_alpha_is_bit_exact(corpus, png_run, name) -> None:
    out = only_output(png_run["report"], corpus[name])
    src_alpha, out_alpha = alpha_of(corpus[name]), alpha_of(out)
    assert out_alpha.dtype == src_alpha.dtype
    np.testing.assert_array_equal(out_alpha, src_alpha)
    assert len(np.unique(src_alpha)) > 1  # the case really exercises alpha


def test_16bit_grey_is_bit_exact_through_an_identity_model(corpus, png_run) -> None:
    for name in ("png_gray16", "tiff_gray16"):
        out = only_output(png_run["report"], corpus[name])
        src = cv2.imread(str(corpus[name]), cv2.IMREAD_UNCHANGED)
        got = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
        assert got.dtype == np.uint16
        np.testing.assert_array_equal(got, src)


@pytest.mark.parametrize("name", ["png_rgb16", "tiff_rgb16", "png_rgba16"])
def test_16bit_colour_keeps_16bit_precision(corpus, png_run, name) -> None:
    out = only_output(png_run["report"], corpus[name])
    src = cv2.imread(str(corpus[name]), cv2.IMREAD_UNCHANGED)[..., :3].astype(np.int64)
    got = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)[..., :3].astype(np.int64)
    # RGB goes through YCbCr for the luma model; the round trip is ~1e-3 accurate.
    assert np.abs(got - src).max() <= 128
    assert np.any(got % 257 != 0)  # real 16-bit values, not 8-bit data scaled up


@pytest.mark.parametrize("name", ["png_7x9", "jpeg_8x8", "png_gray", "webp"])
def test_identity_model_gives_back_the_input(corpus, png_run, name) -> None:
    out = only_output(png_run["report"], corpus[name])
    with Image.open(corpus[name]) as a, Image.open(out) as b:
        src, got = np.asarray(a).astype(int), np.asarray(b).astype(int)
    assert np.abs(src - got).max() <= 1  # YCbCr round trip of an RGB image


# --------------------------------------------------------------------------------------
# Orientation and metadata
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["jpeg_exif_rot6", "jpeg_meta_rot8"])
def test_exif_orientation_is_applied_to_the_pixels(corpus, png_run, name) -> None:
    out = only_output(png_run["report"], corpus[name])
    with Image.open(corpus[name]) as src, Image.open(out) as im:
        assert src.size == (12, 8)
        upright = np.asarray(ImageOps.exif_transpose(src)).astype(int)
        got = np.asarray(im).astype(int)
    assert got.shape == (12, 8, 3)
    assert np.abs(got - upright).max() <= 1
    assert np.abs(got - upright[::-1, ::-1]).mean() > 5  # the test can tell the direction


@pytest.mark.parametrize("name", EXIF_CASES)
def test_exif_survives_with_orientation_reset(corpus, png_run, name) -> None:
    out = only_output(png_run["report"], corpus[name])
    with Image.open(out) as im:
        exif = im.getexif()
    assert exif.get(0x010F) == MAKE and exif.get(0x0110) == MODEL
    assert exif.get(0x0112, 1) == 1


@pytest.mark.parametrize("name", ICC_CASES)
def test_icc_profile_survives(corpus, png_run, name) -> None:
    out = only_output(png_run["report"], corpus[name])
    with Image.open(corpus[name]) as src, Image.open(out) as im:
        assert src.info["icc_profile"]
        assert im.info.get("icc_profile") == src.info["icc_profile"]


def test_cmyk_becomes_rgb_with_the_right_colour(corpus, png_run) -> None:
    out = only_output(png_run["report"], corpus["jpeg_cmyk"])
    with Image.open(corpus["jpeg_cmyk"]) as src, Image.open(out) as im:
        expected = np.asarray(src.convert("RGB")).astype(int)  # no profile: plain conversion
        got = np.asarray(im).astype(int)
        assert "icc_profile" not in im.info
    assert np.abs(got - expected).max() <= 2


def test_strip_metadata_drops_exif_but_keeps_icc(corpus, stripped_run) -> None:
    """io docstring: keep_metadata=False drops EXIF but keeps ICC (it defines colours)."""
    assert stripped_run["rc"] == 0, stripped_run["stderr"]
    for name in dict.fromkeys(EXIF_CASES + ICC_CASES):
        out = only_output(stripped_run["report"], corpus[name])
        with Image.open(corpus[name]) as src, Image.open(out) as im:
            assert "exif" not in im.info and len(im.getexif()) == 0, name
            assert im.info.get("icc_profile") == src.info.get("icc_profile"), name
    # Orientation was applied to the pixels, so the picture is still upright.
    with Image.open(only_output(stripped_run["report"], corpus["jpeg_exif_rot6"])) as im:
        assert im.size == (8, 12)
    alpha = alpha_of(only_output(stripped_run["report"], corpus["png_rgba"]))
    np.testing.assert_array_equal(alpha, alpha_of(corpus["png_rgba"]))


def test_jpeg_and_webp_output_keep_metadata_and_quality(corpus, lossy_run) -> None:
    fmt, report = lossy_run["fmt"], lossy_run["report"]
    assert lossy_run["rc"] == 0, lossy_run["stderr"]
    ext = {"jpeg": ".jpg", "webp": ".webp"}[fmt]
    outs = {n: only_output(report, corpus[n]) for n in LOSSY_CASES}
    for name, out in outs.items():
        assert out.suffix == ext
        with Image.open(out) as im:
            assert im.format == fmt.upper(), name
    with Image.open(corpus["jpeg_meta_rot8"]) as src, Image.open(outs["jpeg_meta_rot8"]) as im:
        exif = im.getexif()
        assert exif.get(0x010F) == MAKE and exif.get(0x0112, 1) == 1
        assert im.info.get("icc_profile") == src.info["icc_profile"]
        assert im.size == (8, 12)
    with Image.open(outs["png_meta"]) as im:
        assert im.getexif().get(0x0110) == MODEL
    with Image.open(outs["jpeg_gray"]) as grey, Image.open(outs["png_rgba"]) as rgba:
        if fmt == "jpeg":
            assert estimate_jpeg_quality(grey) == 70
            assert grey.mode == "L"  # grey stays grey
            assert rgba.mode == "RGB"  # JPEG has no alpha: dropped (documented)
        else:
            assert grey.mode == "RGB"  # WebP has no grey mode (documented)
            assert rgba.mode == "RGBA"
            np.testing.assert_array_equal(np.asarray(rgba)[..., 3], alpha_of(corpus["png_rgba"]))
    with Image.open(outs["png_gray16"]) as im:
        assert im.mode == ("L" if fmt == "jpeg" else "RGB")  # 8-bit only formats


# --------------------------------------------------------------------------------------
# Other command-line inputs
# --------------------------------------------------------------------------------------


def test_files_named_directly_fail_cleanly_whatever_their_suffix(corpus, weights,
                                                                 tmp_path) -> None:
    missing = corpus["png_gray"].parent / "missing.jpg"
    named = [corpus["stray_text"], corpus["text_as_jpg"], missing, corpus["png_gray"]]
    report = tmp_path / "r.json"
    rc, err = run_cli(["enhance", *map(str, named), "-o", str(tmp_path / "out"),
                       "--weights", str(weights["random"]), "--report", str(report)])
    assert rc == 1
    entries = entries_by_input(json.loads(report.read_text()))
    assert entries[str(corpus["stray_text"])]["error"].endswith(
        "not an image file (unrecognised format)")
    assert entries[str(missing)]["error"] == f"{missing}: file not found"
    assert entries[str(corpus["png_gray"])]["status"] == "ok"
    errors = [ln for ln in stderr_lines(err) if ln.startswith("rbqe: error: ")]
    # In the order the files were named (issue 13).
    assert errors == [f"rbqe: error: {entries[str(p)]['error']}" for p in named[:3]]


def test_max_pixels_option_refuses_large_images(corpus, weights, tmp_path) -> None:
    report = tmp_path / "r.json"
    rc, err = run_cli(["enhance", str(corpus["png_7x9"]), str(corpus["png_1x1"]),
                       "-o", str(tmp_path / "out"), "--weights", str(weights["random"]),
                       "--max-pixels", "0.00005", "--report", str(report)])
    assert rc == 1
    entries = entries_by_input(json.loads(report.read_text()))
    assert entries[str(corpus["png_1x1"])]["status"] == "ok"
    error = entries[str(corpus["png_7x9"])]["error"]
    assert error == (f"{corpus['png_7x9']}: image is 7 x 9 = 0.000063 megapixels, over the "
                     "limit of 0.00005 megapixels (raise with --max-pixels)")
    assert f"rbqe: error: {error}" in stderr_lines(err)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--quality", "0"], "argument --quality: must be 1-100, not 0"),
        (["--quality", "101"], "argument --quality: must be 1-100, not 101"),
        (["--suffix", "a/b"], "argument --suffix: must not contain path separators: 'a/b'"),
    ],
)
def test_bad_options_are_usage_errors_not_tracebacks(corpus, weights, tmp_path, capsys,
                                                     args, message) -> None:
    with pytest.raises(SystemExit) as info:
        main(["enhance", str(corpus["png_gray"]), "-o", str(tmp_path / "out"),
              "--weights", str(weights["random"]), *args])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_missing_weights_is_one_line_and_exit_2(corpus, tmp_path) -> None:
    rc, err = run_cli(["enhance", str(corpus["png_gray"]), "-o", str(tmp_path / "out"),
                       "--weights", str(tmp_path / "none.safetensors")])
    assert rc == 2
    assert stderr_lines(err) == [
        f"rbqe: error: {missing_weights_message(tmp_path / 'none.safetensors')}"
    ]
    assert "RBQE_WEIGHTS" in err


def test_report_to_a_folder_is_refused_before_any_work(corpus, weights, tmp_path) -> None:
    (tmp_path / "taken").mkdir()
    rc, err = run_cli(["enhance", str(corpus["png_gray"]), "-o", str(tmp_path / "out"),
                       "--weights", str(weights["random"]), "--report", str(tmp_path / "taken")])
    assert rc == 2
    assert stderr_lines(err) == [f"rbqe: error: --report {tmp_path / 'taken'}: is a folder; "
                                 f"give a file name inside it (report.json)"]
    assert not (tmp_path / "out").exists()


def test_report_failing_after_the_batch_is_one_line_and_exit_1(corpus, weights, tmp_path,
                                                                monkeypatch) -> None:
    # The disk fills or the folder goes away during a long batch: the images are kept.
    def full_disk(path: Path, data: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("rbqe.cli._write_json", full_disk)
    report = tmp_path / "r.json"
    rc, err = run_cli(["enhance", str(corpus["png_gray"]), "-o", str(tmp_path / "out"),
                       "--weights", str(weights["random"]), "--report", str(report)])
    assert rc == 1
    lines = stderr_lines(err)
    assert len(lines) == 2 and lines[0] == (f"rbqe: error: {report}: cannot write report: "
                                            f"No space left on device")
    assert "Traceback" not in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [OUTPUT_LOG, "gray.png"]


# --------------------------------------------------------------------------------------
# A real process: the installed entry point, non-TTY stderr, random weights
# --------------------------------------------------------------------------------------


def test_corpus_through_a_real_subprocess(corpus, weights, tmp_path) -> None:
    out, report = tmp_path / "out", tmp_path / "report.json"
    env = dict(os.environ, RBQE_WEIGHTS=str(weights["random"]))  # weights via the env var
    proc = subprocess.run(
        [*rbqe_command(), "enhance", str(corpus["png_gray"].parent), "-o", str(out),
         "--report", str(report)],
        capture_output=True, text=True, env=env, timeout=3600, stdin=subprocess.DEVNULL, check=False,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    doc = json.loads(report.read_text())
    assert doc["weights"] == str(weights["random"])
    entries = entries_by_input(doc)
    failed = sorted(e["error"] for e in entries.values() if e["status"] == "failed")
    assert failed == sorted(f"{corpus[n]}: {r}" for n, r in EXPECTED_ERROR.items())
    # Not a TTY: no progress bar, no logging/OpenCV noise, no traceback. Only the error
    # lines (in input order), a progress line per image that did not fail, and the summary.
    lines = stderr_lines(proc.stderr)
    progress = [ln for ln in proc.stderr.splitlines() if ln not in lines]
    # The warnings: the 1-bit PNG becomes grey, the CMYK JPEG is written as RGB.
    warned = [ln for ln in lines if ln.startswith("rbqe: warning: ")]
    assert warned == [
        f"rbqe: warning: {corpus['png_1bit']}: a 1-bit (black and white) image: the output "
        "has 8-bit levels (grey; RGB in WebP), its edges smoothed; JPEG artefact removal is "
        "not meant for it",
        f"rbqe: warning: {corpus['jpeg_cmyk']}: a CMYK image, enhanced and written as RGB "
        "(a plain conversion: it embeds no usable CMYK profile)"]
    lines = [ln for ln in lines if ln not in warned]
    assert len(progress) == len(entries) - len(failed)
    expected_errors = [f"rbqe: error: {e['error']}" for e in doc["images"]
                       if e["status"] == "failed"]
    n = len(entries)
    assert lines == [*expected_errors,
                     f"rbqe: {n - len(failed)} enhanced, 0 skipped, {len(failed)} failed of {n}"]
    assert "\r" not in proc.stderr
    for name, mode in EXPECTED_MODE.items():  # random weights: modes still follow the input
        assert png_header(only_output(doc, corpus[name])) == mode
    for name in ALPHA_CASES:
        np.testing.assert_array_equal(alpha_of(only_output(doc, corpus[name])),
                                      alpha_of(corpus[name]))


# --------------------------------------------------------------------------------------
# 100 megapixels, tiled, tiny model, peak RSS of the whole CLI process
# --------------------------------------------------------------------------------------

HUGE_W, HUGE_H = 10_000, 10_000
RSS_BOUND_MB = 3_000
# Peak RSS from VmHWM where Linux has it: ru_maxrss also counts the forked parent's
# high-water mark (the pytest process), which exec carries over.
_CHILD = """
import json, resource, sys, time
from pathlib import Path
from rbqe.cli import main
t0 = time.perf_counter()
rc = main(sys.argv[1:])
wall = time.perf_counter() - t0
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
status = Path("/proc/self/status")
if status.exists():
    peak_kb = next(int(ln.split()[1]) for ln in status.read_text().splitlines()
                   if ln.startswith("VmHWM:"))
print("RBQE_MEASURE " + json.dumps({"rc": rc, "peak_rss_mb": peak_kb / 1024, "wall_s": wall}))
sys.exit(rc)
"""


def _huge_jpeg(path: Path) -> None:
    """A 100 MP photo-like JPEG (smooth gradients plus a ripple), built in row bands."""
    x = np.linspace(0, 1, HUGE_W, dtype=np.float32)[None, :]
    img = np.empty((HUGE_H, HUGE_W, 3), np.uint8)
    for top in range(0, HUGE_H, 1000):
        band = img[top : top + 1000]
        y = (np.arange(top, top + len(band), dtype=np.float32) / HUGE_H)[:, None]
        band[..., 0] = 40 + 160 * (0.7 * x + 0.3 * y)
        band[..., 1] = 40 + 160 * (0.3 * x + 0.7 * y)
        band[..., 2] = 90 + 60 * np.sin(x * 40) * np.cos(y * 30)
    Image.fromarray(img).save(path, "JPEG", quality=80)


@pytest.fixture(scope="module")
def huge_run(weights, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("huge")
    src = folder / "huge.jpg"
    _huge_jpeg(src)
    digest = sha256(src)
    out, report = folder / "out", folder / "report.json"
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, "enhance", str(src), "-o", str(out),
         "--weights", str(weights["random"]), "--exit", "1", "--tile", "1024",
         "--device", "cpu", "--report", str(report)],
        capture_output=True, text=True, timeout=4 * 3600, stdin=subprocess.DEVNULL, check=False,
    )
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RBQE_MEASURE ")]
    assert lines, proc.stdout + proc.stderr
    measure = json.loads(lines[-1].split(" ", 1)[1])
    print(f"\n100 MP ({HUGE_W} x {HUGE_H}) through rbqe enhance --exit 1 --tile 1024, tiny "
          f"model, CPU: peak RSS {measure['peak_rss_mb']:.0f} MB, "
          f"{measure['wall_s']:.0f} s in main(), {wall:.0f} s with start-up")
    return {"proc": proc, "measure": measure, "src": src, "digest": digest, "out": out,
            "report": json.loads(report.read_text())}


@pytest.mark.slow
def test_100mp_image_is_enhanced_with_tiling(huge_run, monkeypatch) -> None:
    # The figures are printed by the fixture (run with -s, or see "Captured stdout").
    assert huge_run["proc"].returncode == 0, huge_run["proc"].stderr
    assert "Traceback" not in huge_run["proc"].stderr
    assert sha256(huge_run["src"]) == huge_run["digest"]
    out = only_output(huge_run["report"], huge_run["src"])
    assert sorted(p.name for p in huge_run["out"].iterdir()) == [OUTPUT_LOG, "huge.png"]
    assert png_header(out) == ("RGB", 8)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # 100 MP is over Pillow's warning
    with Image.open(out) as im:
        assert im.size == (HUGE_W, HUGE_H)
        im.verify()  # complete file: every chunk and CRC present
    entry = huge_run["report"]["images"][0]
    assert entry["exit"] == 1 and entry["size"] == [HUGE_W, HUGE_H]


@pytest.mark.slow
def test_100mp_peak_memory_is_bounded(huge_run) -> None:
    # About two float32 frames (the loaded input, the result: 1.1 GB each) plus the
    # process and one tile's network; measured ~2.8 GB (it was ~9 GB before the engine
    # and the writer worked in tiles and bands).
    assert huge_run["proc"].returncode == 0
    assert huge_run["measure"]["peak_rss_mb"] < RSS_BOUND_MB
