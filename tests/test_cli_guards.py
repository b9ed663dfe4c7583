"""The CLI's guards against a user's slips: each is refused in one line before any work,
or fails only the one image it concerns, and nothing the user owns is written over.

In-process through :func:`rbqe.cli.main`, with the tiny random model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from rbqe.cli import main
from rbqe.io import OUTPUT_LOG

pytestmark = pytest.mark.usefixtures("one_thread")


def run(capsys, *args: str | Path) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


@pytest.fixture
def photos(tmp_path, make_jpeg, tiny_weights, monkeypatch) -> list[Path]:
    """Two small JPEGs, IMG_1.jpg and IMG_2.jpg, in ``tmp_path``; the tiny model."""
    monkeypatch.setenv("RBQE_WEIGHTS", str(tiny_weights))
    files = []
    for n in (1, 2):
        f = tmp_path / f"IMG_{n}.jpg"
        Image.fromarray(make_jpeg(40, 48, seed=n)).save(f, "JPEG", quality=30)
        files.append(f)
    return files


def test_report_given_a_photos_name_is_refused_and_the_photo_kept(capsys, photos, tmp_path):
    # `--report IMG_1.jpg IMG_2.jpg`: argparse takes the first photo for the report.
    before = photos[0].read_bytes()
    code, err = run(capsys, "enhance", "-o", tmp_path / "out", "--report", photos[0], photos[1])
    assert code == 2 and "--report" in err and "image's name" in err, err
    assert photos[0].read_bytes() == before
    assert not (tmp_path / "out").exists()  # refused before any work


def test_report_refuses_a_file_that_is_not_a_report(capsys, photos, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    code, err = run(capsys, "enhance", "-o", tmp_path / "out", "--report", notes, photos[1])
    assert code == 2 and "is not an rbqe JSON report" in err, err
    assert notes.read_text() == "my notes"
    # JSON that is not rbqe's report (a catalogue, a package.json) is kept too.
    catalogue = tmp_path / "photos.json"
    catalogue.write_text('{"album": "Holidays", "photos": []}')
    code, err = run(capsys, "enhance", "-o", tmp_path / "out", "--report", catalogue, photos[1])
    assert code == 2 and "is not an rbqe JSON report" in err, err
    assert catalogue.read_text() == '{"album": "Holidays", "photos": []}'
    assert not (tmp_path / "out").exists()
    # The output folder is no report either, though it does not exist yet.
    code, err = run(capsys, "enhance", "-o", tmp_path / "out", "--report", tmp_path / "out",
                    photos[1])
    assert code == 2 and "is a folder" in err, err


def test_report_named_with_a_trailing_separator_is_a_folder_though_none_exists(
        capsys, photos, tmp_path):
    # `--report runs/` with no runs folder yet wrote a report file named runs (exit 0).
    typed = f"{tmp_path / 'runs'}{os.sep}"
    code, err = run(capsys, "enhance", "-o", tmp_path / "out", "--report", typed, photos[0])
    assert code == 2, err
    assert err.splitlines() == [f"rbqe: error: --report {typed}: is a folder; give a file "
                                f"name inside it (report.json)"]
    assert not (tmp_path / "runs").exists()
    assert not (tmp_path / "out").exists()  # refused before any work


@pytest.mark.parametrize("seps, typed, folder", [
    (("/", None), "runs/", True),
    (("/", None), "runs\\", False),  # a backslash is part of a name on POSIX
    (("\\", "/"), "runs\\", True),  # Windows: either separator
    (("\\", "/"), "runs/", True),
    (("\\", "/"), "runs", False),
])
def test_a_name_ending_in_a_separator_names_a_folder(monkeypatch, seps, typed, folder):
    from rbqe.io import atomic

    monkeypatch.setattr(atomic.os, "sep", seps[0])
    monkeypatch.setattr(atomic.os, "altsep", seps[1])
    assert atomic.names_folder(typed) is folder


def test_report_replaces_an_earlier_report(capsys, photos, tmp_path):
    report = tmp_path / "r.json"
    code, err = run(capsys, "enhance", "-o", tmp_path / "out", "--exit", "1", "--report",
                    report, photos[0])
    assert code == 0, err
    code, err = run(capsys, "enhance", "-o", tmp_path / "out", "--exit", "1", "--report",
                    report, photos[1])
    assert code == 0, err
    (row,) = json.loads(report.read_text())["images"]
    assert row["input"] == str(photos[1])


def test_report_that_cannot_be_written_is_refused_before_the_batch(capsys, photos, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    code, err = run(capsys, "enhance", "-o", tmp_path / "out", "--report",
                    blocker / "r.json", photos[1])
    assert code == 2 and "cannot write in" in err, err
    assert not (tmp_path / "out").exists()


def test_report_folder_is_created(capsys, photos, tmp_path):
    report = tmp_path / "reports" / "r.json"
    code, err = run(capsys, "enhance", "-o", tmp_path / "out", "--exit", "1", "--report",
                    report, photos[1])
    assert code == 0 and report.is_file(), err


@pytest.mark.parametrize("value, words", [("inf", ">= 0 megapixels"), ("nan", ">= 0"),
                                          ("-1", ">= 0"), ("lots", "number of megapixels")])
def test_max_pixels_must_be_a_limit(capsys, photos, tmp_path, value, words):
    with pytest.raises(SystemExit) as stop:
        main(["enhance", "-o", str(tmp_path / "out"), "--max-pixels", value, str(photos[1])])
    assert stop.value.code == 2 and words in capsys.readouterr().err


def test_max_pixels_zero_is_no_limit(capsys, photos, tmp_path):
    code, err = run(capsys, "enhance", "-o", tmp_path / "out", "--exit", "1", "--max-pixels",
                    "0", photos[1])
    assert code == 0, err


@pytest.mark.parametrize("tile", ["1", "7", "127", "-5"])
def test_tile_below_the_smallest_is_refused(capsys, photos, tmp_path, tile):
    with pytest.raises(SystemExit) as stop:
        main(["enhance", "-o", str(tmp_path / "out"), "--tile", tile, str(photos[1])])
    assert stop.value.code == 2 and "at least 128 pixels" in capsys.readouterr().err


def test_unknown_device_is_one_line(capsys, photos, tmp_path):
    code, err = run(capsys, "enhance", "-o", tmp_path / "out", "--device", "banana", photos[1])
    assert code == 2 and "'banana' is not a device name" in err, err
    assert "Traceback" not in err


def test_name_too_long_fails_that_image_only(capsys, photos, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    long_name = src / ("n" * 245 + ".jpg")  # fits; with the suffix and .png it does not
    long_name.write_bytes(photos[0].read_bytes())
    (src / "short.jpg").write_bytes(photos[1].read_bytes())
    report = tmp_path / "r.json"
    code, err = run(capsys, "enhance", src, "-o", tmp_path / "out", "--exit", "1",
                    "--suffix", "_enhanced", "--report", report)
    assert code == 1 and "file name too long" in err, err
    statuses = sorted(i["status"] for i in json.loads(report.read_text())["images"])
    assert statuses == ["failed", "ok"]
    assert (tmp_path / "out" / "short_enhanced.png").is_file()


@pytest.mark.skipif(sys.platform != "linux", reason="byte names: a Linux file system")
def test_a_name_that_is_not_utf8_is_enhanced_and_noted(capsys, photos, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    latin1 = os.fsdecode(b"caf\xe9.jpg")  # an old disk's Latin-1 name
    (src / latin1).write_bytes(photos[0].read_bytes())
    out = tmp_path / "out"
    code, err = run(capsys, "enhance", src, "-o", out, "--exit", "1")
    assert code == 0, err
    assert os.fsencode(out / os.fsdecode(b"caf\xe9.png")).endswith(b"caf\xe9.png")
    assert (out / os.fsdecode(b"caf\xe9.png")).is_file()
    code, err = run(capsys, "enhance", src, "-o", out, "--exit", "1")  # noted: skipped
    assert code == 0 and "1 skipped" in err, err
    assert (out / OUTPUT_LOG).read_bytes().isascii()


def test_no_images_found_says_why(capsys, photos, tmp_path):
    folder = tmp_path / "photos"
    (folder / "2019").mkdir(parents=True)
    (folder / "2019" / "a.jpg").write_bytes(photos[0].read_bytes())
    code, err = run(capsys, "enhance", folder, "-o", tmp_path / "out")
    assert code == 1 and "sub-folders were not scanned (add -r)" in err, err
    assert "of 0" not in err  # no "0 enhanced, 0 skipped, 0 failed of 0" before it


@pytest.mark.skipif(not hasattr(os, "symlink") or sys.platform == "win32", reason="symlinks")
def test_broken_link_in_a_folder_fails_naming_its_target(capsys, photos, tmp_path):
    # A dangling link is mostly a photo gone missing (a drive not mounted): it used to be
    # a warning only, with rc 0 and no row in the report.
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(photos[0].read_bytes())
    os.symlink(tmp_path / "moved.jpg", folder / "gone.jpg")
    report = tmp_path / "r.json"
    code, err = run(capsys, "enhance", folder, "-o", tmp_path / "out", "--exit", "1",
                    "--report", report)
    assert code == 1, err
    assert "gone.jpg: a link to" in err and "moved.jpg, which does not exist" in err
    rows = {Path(r["input"]).name: r["status"] for r in json.loads(report.read_text())["images"]}
    assert rows == {"a.jpg": "ok", "gone.jpg": "failed"}


def test_jfif_and_jpe_files_in_a_folder_are_enhanced(capsys, photos, tmp_path):
    # What Windows and browsers name web JPEGs; a folder scan used to pass them by.
    folder = tmp_path / "web"
    folder.mkdir()
    for name in ("a.jfif", "b.jpe", "c.JPG"):
        (folder / name).write_bytes(photos[0].read_bytes())
    code, err = run(capsys, "enhance", folder, "-o", tmp_path / "out", "--exit", "1")
    assert code == 0 and "3 enhanced" in err, err


def test_a_multi_page_tiff_is_reported_with_its_warning(capsys, photos, tmp_path):
    pages = [Image.open(p).convert("RGB") for p in photos]
    tiff = tmp_path / "scan.tif"
    pages[0].save(tiff, save_all=True, append_images=pages[1:])
    report = tmp_path / "r.json"
    code, err = run(capsys, "enhance", tiff, "-o", tmp_path / "out", "--exit", "1",
                    "--report", report)
    assert code == 0, err
    (entry,) = json.loads(report.read_text())["images"]
    assert entry["status"] == "ok"
    assert entry["warnings"] == ["only the first of 2 pages is enhanced (multi-page TIFF); "
                                 "the output has that page only"]


# -- from a new user's review of the CLI ---------------------------------------------------
def test_the_assessors_options_are_refused_beside_policy_gate(capsys, photos, tmp_path):
    """They used to replace the learned gate without a word (the report said "assessor")."""
    for extra in (["--threshold", "0.5"], ["--min-exit", "1"]):
        code, err = run(capsys, "enhance", photos[0], "-o", tmp_path / "out",
                        "--policy", "gate", *extra)
        assert code == 2 and f"{extra[0]} sets the assessor rule, so it cannot be used " \
            "with --policy gate" in err, err
        assert not (tmp_path / "out").exists()
    # Both: said in the plural ("--threshold set ..., so they" read wrong for one).
    code, err = run(capsys, "enhance", photos[0], "-o", tmp_path / "out", "--policy", "gate",
                    "--threshold", "0.5", "--min-exit", "1")
    assert code == 2 and "--threshold and --min-exit set the assessor rule, so they cannot " \
        "be used with --policy gate" in err, err


QUALITY_UNUSED = ("rbqe: warning: --quality applies to --format jpeg and webp only; "
                  "PNG is lossless")


@pytest.mark.parametrize("fmt", [[], ["--format", "png"]])
def test_quality_with_png_output_says_it_does_not_apply(capsys, photos, tmp_path, fmt):
    # A warning, once, like the tool's others; the run goes on (it read as a mere note).
    code, err = run(capsys, "enhance", photos[0], photos[1], "-o", tmp_path / "png",
                    "--quality", "40", *fmt)
    assert code == 0 and err.splitlines().count(QUALITY_UNUSED) == 1, err
    code, err = run(capsys, "enhance", photos[0], "-o", tmp_path / "jpg", "--quality", "40",
                    "--format", "jpeg")
    assert code == 0 and "--quality applies" not in err, err
    code, err = run(capsys, "enhance", photos[0], "-o", tmp_path / "default", *fmt)
    assert code == 0 and "--quality applies" not in err, err  # the default 95 is not "given"


def test_a_wrong_rbqe_weights_is_named_as_the_cause(capsys, photos, tmp_path, monkeypatch):
    missing = tmp_path / "nonexist.safetensors"
    monkeypatch.setenv("RBQE_WEIGHTS", str(missing))
    code, err = run(capsys, "enhance", photos[0], "-o", tmp_path / "out")
    assert code == 2 and f"{missing}, which RBQE_WEIGHTS names" in err, err
    assert "set RBQE_WEIGHTS=FILE" not in err  # it is set: the advice was to do it again


def test_a_report_keeps_the_policy_small(capsys, photos, tmp_path):
    report = tmp_path / "r.json"
    code, err = run(capsys, "enhance", photos[0], "-o", tmp_path / "out", "--report", report)
    assert code == 0, err
    policy = json.loads(report.read_text())["policy"]
    assert {"rule", "description", "params", "provenance"} <= set(policy)
    assert all(not isinstance(v, (list, dict)) or len(v) <= 5 for v in policy["params"].values())


def test_what_writing_an_output_warns_of_is_in_the_report(capsys, tmp_path, make_jpeg,
                                                         tiny_weights, monkeypatch):
    """A JPEG output of a transparent PNG drops the alpha, of a 16-bit PNG the depth: the
    lines went to stderr only (the report had no "warnings"), the depth not even there."""
    monkeypatch.setenv("RBQE_WEIGHTS", str(tiny_weights))
    src = tmp_path / "in"
    src.mkdir()
    rgba = Image.fromarray(make_jpeg(32, 40, seed=3)).convert("RGBA")
    rgba.putalpha(128)
    rgba.save(src / "alpha.png")
    deep = (make_jpeg(32, 40, seed=4)[..., 0].astype("uint16") * 257)
    Image.fromarray(deep).save(src / "deep.png")
    report = tmp_path / "r.json"
    code, err = run(capsys, "enhance", src, "-o", tmp_path / "out", "--format", "jpeg",
                    "--report", report)
    assert code == 0, err
    rows = {Path(e["input"]).name: e for e in json.loads(report.read_text())["images"]}
    # Without the output's path: the row names the input and lists its outputs (with
    # --exit all the same line came once per exit's file).
    assert rows["alpha.png"]["warnings"] == [
        "JPEG cannot store transparency; the transparent parts are filled with white"]
    assert rows["deep.png"]["warnings"] == [
        "JPEG is 8-bit only; the 16-bit image is written at 8 bits"]
    assert str(tmp_path / "out" / "alpha.jpg") in json.dumps(rows["alpha.png"])


def test_info_on_a_file_that_is_not_weights_answers_in_json(capsys, tmp_path):
    """A missing file got JSON with "error" on stdout, a garbage one a stderr line only."""
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not weights at all")
    code = main(["info", "--weights", str(garbage)])
    out = capsys.readouterr().out
    doc = json.loads(out)
    assert code == 2 and doc["weights"] is None and str(garbage) in doc["error"]


def test_a_second_ctrl_c_under_the_ray_engine_aborts_in_one_line(capsys, photos, tmp_path,
                                                                  monkeypatch):
    """It ended in "AttributeError: 'BatchSummary' object has no attribute
    'report_error'" (exit 1): the abort's summary is made locally, not by the Ray engine."""
    import rbqe.cli as cli

    def second_ctrl_c(*_args, **_kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_run_ray", second_ctrl_c)
    code, err = run(capsys, "enhance", photos[0], "-o", tmp_path / "out", "--engine", "ray")
    assert code == 130 and "rbqe: aborted" in err and "Traceback" not in err, err


@pytest.mark.parametrize("value", ["30", "-0.1", "nan"])
def test_a_threshold_outside_the_scores_range_is_refused(capsys, photos, tmp_path, value):
    # 30 for 0.30 used to run, sending every image to exit 5 without a word.
    with pytest.raises(SystemExit) as exc:
        main(["enhance", str(photos[0]), "-o", str(tmp_path / "out"), "--threshold", value])
    assert exc.value.code == 2 and "must be a score 0-1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_verbose_is_taken_after_the_command_too(capsys, photos, tmp_path):
    # `rbqe enhance ... -v` used to be "unrecognized arguments: -v".
    from rbqe.cli import build_parser

    def verbose(*argv: str) -> bool:
        return build_parser().parse_args(list(argv)).verbose

    photo, out = str(photos[0]), str(tmp_path / "out")
    assert verbose("enhance", photo, "-o", out, "-v")
    assert verbose("-v", "enhance", photo, "-o", out)  # before it, as before
    assert not verbose("enhance", photo, "-o", out)
    assert verbose("eval", out, "--verbose") and verbose("info", "-v")
    code, err = run(capsys, "enhance", photo, "-o", out, "-v")
    assert code == 0, err


def test_plot_without_matplotlib_is_refused_before_measuring(capsys, photos, tmp_path,
                                                              monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    code, err = run(capsys, "eval", tmp_path, "--qf", "10", "--plot", tmp_path / "p.png")
    assert code == 2 and "--plot needs matplotlib" in err, err
    assert not (tmp_path / "p.png").exists()


def _measured(monkeypatch) -> list[str]:
    """Records each image the evaluation reads, so a test sees that nothing was measured."""
    from rbqe.train import evaluate

    seen: list[str] = []
    real = evaluate.read_clean

    def spy(path, gray):
        seen.append(str(path))
        return real(path, gray)

    monkeypatch.setattr(evaluate, "read_clean", spy)
    return seen


@pytest.mark.parametrize("flag, target, words", [
    ("--json", "folder", "is a folder"),
    ("--plot", "folder", "is a folder"),
    ("--json", "under_a_file", "cannot write in"),
    ("--plot", "notes.txt", "name the plot .png, .pdf or .svg"),
])
def test_eval_outputs_are_checked_before_measuring(capsys, photos, tmp_path, monkeypatch,
                                                   flag, target, words):
    # They failed with a traceback after the measurement (minutes on real photos).
    seen = _measured(monkeypatch)
    (tmp_path / "folder").mkdir()
    (tmp_path / "afile").write_text("x")
    path = {"folder": tmp_path / "folder", "under_a_file": tmp_path / "afile" / "t.json",
            "notes.txt": tmp_path / "notes.txt"}[target]
    code, err = run(capsys, "eval", photos[0], "--qf", "10", flag, path)
    assert code == 2 and words in err and "Traceback" not in err, err
    assert seen == []


@pytest.mark.parametrize("argv", [
    ["eval", "IMG_1.jpg", "--json", "runs/"],
    ["eval", "IMG_1.jpg", "--plot", "runs.png/"],
    ["eval", "IMG_1.jpg", "--save-records", "runs/"],
    ["eval", "IMG_1.jpg", "--save-gate-records", "runs/"],
    ["calibrate", "IMG_1.jpg", "--dry-run", "--json", "runs/"],
    ["train-curve", "log.jsonl", "--plot", "runs.png/"],
])
def test_an_output_file_named_with_a_trailing_separator_is_a_folder(capsys, photos, tmp_path,
                                                                   monkeypatch, argv):
    # With no such folder yet, each wrote a file of that name (Path drops the "/").
    seen = _measured(monkeypatch)
    monkeypatch.chdir(tmp_path)
    typed = argv[-1].replace("/", os.sep)
    code, err = run(capsys, *argv[:-1], typed)
    assert code == 2, err
    assert err.splitlines() == [f"rbqe: error: {typed}: is a folder; give a file name"]
    assert seen == [] and not (tmp_path / "runs").exists()
    assert not (tmp_path / "runs.png").exists()


@pytest.mark.parametrize("argv, words", [
    (["--qf", "101"], "a JPEG quality is 1-100, not 101"),
    (["--qf", "0"], "a JPEG quality is 1-100, not 0"),
    (["--limit", "-3"], "must be 0 (all) or more, not -3"),
])
def test_eval_values_out_of_range_are_usage_errors(capsys, photos, argv, words):
    with pytest.raises(SystemExit) as stop:
        main(["eval", str(photos[0]), *argv])
    assert stop.value.code == 2 and words in capsys.readouterr().err


def test_eval_of_only_a_file_that_is_not_an_image_fails_without_traceback(capsys, caplog, photos, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    code, err = run(capsys, "eval", notes, "--qf", "10")
    assert code == 1 and "rbqe: error: no image could be read (1 skipped)" in err, err
    assert f"{notes}: cannot read it as an image; skipped" in caplog.messages
    assert "Traceback" not in err


def test_eval_of_a_folder_that_does_not_exist_names_it(capsys, photos, tmp_path):
    missing = tmp_path / "no such photos"
    code, err = run(capsys, "eval", missing, "--qf", "10")
    assert code == 2, err
    assert err.splitlines() == [f"rbqe: error: {missing}: no such file or folder"]


def _eval(*args: str | Path) -> subprocess.CompletedProcess:
    """A real ``rbqe eval``: its warnings on stderr as a user sees them."""
    return subprocess.run([sys.executable, "-m", "rbqe.cli", "eval", *map(str, args)],
                          capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL, check=False)


def test_eval_skips_an_unreadable_image_and_keeps_the_rest(make_jpeg, tiny_weights,
                                                           tmp_path):
    # zero.jpg, measured last, used to throw away every other measurement (exit 2).
    clean, table = tmp_path / "clean", tmp_path / "eval.json"
    clean.mkdir()
    for n in (1, 2):
        Image.fromarray(make_jpeg(40, 48, seed=n)).save(clean / f"p{n}.png")
    zero = clean / "zero.jpg"
    zero.write_bytes(b"")
    common = ["--qf", "10", "--weights", tiny_weights, "--device", "cpu", "--json", table]
    warning = f"rbqe: warning: {zero}: cannot read it as an image; skipped"
    out = _eval(clean, *common)
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines() == [warning]
    assert "skipped 1 unreadable image" in out.stdout
    doc = json.loads(table.read_text())
    assert doc["images"] == 2 and doc["per_qf"]["10"]["images"] == 2
    assert doc["skipped"] == [{"path": str(zero), "error": "cannot read it as an image"}]
    # No image at all: a failure (1), not a usage error, and no table.
    table.unlink()
    out = _eval(zero, *common)
    assert out.returncode == 1, out.stderr
    assert out.stderr.splitlines() == [warning, "rbqe: error: no image could be read (1 skipped)"]
    assert not table.exists()


def test_eval_skips_a_cut_or_damaged_jpeg_reference(capsys, caplog, photos, tmp_path):
    # OpenCV decodes a JPEG cut short without an error, the missing rows grey: it was
    # measured as a clean reference (its PSNR nonsense) and not listed as skipped.
    import io

    from rbqe.io.jpeg_data import jpeg_data_check
    from tests.helpers import damaged_jpeg, photo

    clean, table = tmp_path / "clean", tmp_path / "eval.json"
    clean.mkdir()
    Image.fromarray(photo(40, 48, seed=1)).save(clean / "good.png")
    buf = io.BytesIO()
    Image.fromarray(photo(96, 128)).save(buf, "JPEG", quality=80, progressive=True)
    whole = buf.getvalue()
    cut, flipped = clean / "cut.jpg", clean / "flipped.jpg"
    cut.write_bytes(whole[: len(whole) // 2])
    (clean / "no_end.jpg").write_bytes(whole[:-2])  # lacks only its end marker: whole
    damaged_jpeg(flipped, whole)  # damaged but complete: no clean reference either
    damage = jpeg_data_check(flipped)[1]
    code, err = run(capsys, "eval", clean, "--qf", "10", "--json", table)
    assert code == 0, err
    doc = json.loads(table.read_text())
    assert doc["images"] == 2 and doc["per_qf"]["10"]["images"] == 2
    short_reason = "truncated or corrupt image data (its JPEG data ends before the picture does)"
    damage_reason = f"its JPEG data is damaged (libjpeg: {damage.rstrip('.')})"
    assert doc["skipped"] == [{"path": str(cut), "error": short_reason},
                              {"path": str(flipped), "error": damage_reason}]
    assert f"{cut}: {short_reason}; skipped" in caplog.messages
    assert f"{flipped}: {damage_reason}; skipped" in caplog.messages


def test_calibrate_guards(capsys, photos, tmp_path, monkeypatch):
    seen = _measured(monkeypatch)
    code, err = run(capsys, "calibrate", photos[0], "--dry-run", "--tolerance", "-1")
    assert code == 2 and "--tolerance is a loss in dB, 0 or more" in err, err
    empty = tmp_path / "empty"
    empty.mkdir()
    records = tmp_path / "records"
    code, err = run(capsys, "calibrate", photos[0], "--dry-run", "--policy", "gate",
                    "--train", empty, "--records-dir", records)
    # It measured the val photos, saved empty train records, then failed in the fit.
    assert code == 2 and f"--train: no images in {empty}" in err, err
    code, err = run(capsys, "calibrate", photos[0], "--dry-run", "--policy", "gate")
    assert code == 2 and "--policy gate needs --train DIR" in err, err
    assert seen == [] and not records.exists()


@pytest.mark.parametrize("argv, words", [
    (["--batch", "0"], "--batch must be 1 or more, not 0"),
    (["--lr", "-1"], "--lr must be above 0, not -1.0"),
    (["--out", "afile/run"], "cannot write in"),
])
def test_train_values_and_out_folder_are_checked_first(capsys, photos, tmp_path, argv, words):
    (tmp_path / "afile").write_text("x")
    argv = [a.replace("afile", str(tmp_path / "afile")) for a in argv]
    out = [] if "--out" in argv else ["--out", str(tmp_path / "run")]
    code, err = run(capsys, "train", "--data", tmp_path, "--steps", "1", "--device", "cpu",
                    *out, *argv)
    assert code == 2 and words in err and "Traceback" not in err, err


def test_train_curve_plot_to_a_folder_is_refused(capsys, tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text(json.dumps({"step": 1, "patches": 10, "val_gain_db": {"10": [0.1] * 5}})
                   + "\n")
    (tmp_path / "plots").mkdir()
    code, err = run(capsys, "train-curve", log, "--plot", tmp_path / "plots")
    assert code == 2 and "is a folder" in err, err
    assert not (tmp_path / "plots.png").exists()  # it wrote one beside the folder


def test_an_image_too_wide_for_its_output_format_fails_before_the_network(capsys, photos,
                                                                          tmp_path,
                                                                          monkeypatch):
    # It failed only after the enhancement, with libjpeg's own unprefixed line on stderr.
    from rbqe import batch

    monkeypatch.setitem(batch.MAX_SIDE, ".jpg", ("JPEG", 40))  # the photos are 48 wide
    ran = []
    real = batch.Enhancer.enhance
    monkeypatch.setattr(batch.Enhancer, "enhance",
                        lambda self, *a, **k: ran.append(1) or real(self, *a, **k))
    code, err = run(capsys, "enhance", photos[0], "-o", tmp_path / "out", "--format", "jpeg")
    assert code == 1 and "a JPEG holds at most 40 pixels a side, and this image is 48 x 40: " \
        "choose PNG (--format png)" in err, err
    assert ran == [] and not list((tmp_path / "out").glob("*.jpg"))


# -- from a new user's trial -----------------------------------------------------------------
def test_an_empty_input_folder_is_a_failure(capsys, photos, tmp_path):
    """It said "no images found in the inputs" and exited 0, as if all were done; a
    missing input file fails (1), and so does a folder with nothing to enhance."""
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = run(capsys, "enhance", empty, "-o", tmp_path / "out")
    assert code == 1 and err.splitlines() == ["rbqe: error: no images found in the inputs"], err
    code, err = run(capsys, "enhance", tmp_path / "missing.jpg", "-o", tmp_path / "out")
    assert code == 1 and "missing.jpg: file not found" in err, err  # the same convention


def test_a_heic_in_a_folder_without_its_codec_is_a_failed_row(capsys, photos, tmp_path,
                                                                monkeypatch):
    """It was counted in one unnamed warning, left out of the report and its total, and
    the batch exited 0; named directly, the same file failed, naming the fix."""
    from rbqe.io import formats

    monkeypatch.setattr(formats, "SUPPORTED_SUFFIXES", formats._BASE_SUFFIXES)  # no codec
    folder = tmp_path / "phone"
    folder.mkdir()
    (folder / "IMG_1.jpg").write_bytes(photos[0].read_bytes())
    heic, avif = folder / "IMG_1234.HEIC", folder / "IMG_1235.avif"
    heic.write_bytes(b"fake")
    avif.write_bytes(b"fake")
    report = tmp_path / "r.json"
    code, err = run(capsys, "enhance", folder, "-o", tmp_path / "out", "--report", report)
    assert code == 1, err
    heic_error = f"{heic}: HEIC support is not installed (pip install 'rbqe-studio[heif]')"
    avif_error = (f"{avif}: AVIF support is not installed (upgrade Pillow or pip install "
                  f"'rbqe-studio[heif]')")
    assert [line for line in err.splitlines() if "error" in line or "warning" in line] == \
        [f"rbqe: error: {heic_error}", f"rbqe: error: {avif_error}"]
    assert err.splitlines()[-1] == "rbqe: 1 enhanced, 0 skipped, 2 failed of 3"
    doc = json.loads(report.read_text())
    rows = [(e["input"], e["status"], e.get("error")) for e in doc["images"]]
    assert rows == [(str(heic), "failed", heic_error), (str(avif), "failed", avif_error),
                    (str(folder / "IMG_1.jpg"), "ok", None)]
    assert doc["summary"]["total"] == 3 and doc["summary"]["failed"] == 2
    # Named directly as well as in its folder: one row, the one load_image fails.
    code, err = run(capsys, "enhance", folder, heic, "-o", tmp_path / "out2")
    assert code == 1 and err.count("IMG_1234.HEIC") == 1, err


def test_an_output_renamed_for_an_input_says_so_in_the_report(capsys, caplog, photos,
                                                                 tmp_path):
    """"output name equals an input file; adding '_rbqe'" was on stderr only."""
    folder = tmp_path / "album"
    folder.mkdir()
    (folder / "x.jpg").write_bytes(photos[0].read_bytes())
    report = tmp_path / "r.json"
    code, err = run(capsys, "enhance", folder, "-o", folder, "--format", "jpeg", "--exit", "1",
                    "--report", report)
    assert code == 0, err
    said = "output name equals an input file; adding '_rbqe'"
    assert [r.getMessage() for r in caplog.records if said in r.getMessage()] == \
        [f"{folder / 'x.jpg'}: {said}"]  # still the one warning line on stderr
    (entry,) = json.loads(report.read_text())["images"]
    assert entry["status"] == "ok" and entry["warnings"] == [said]  # once
    assert entry["outputs"] == {"1": str(folder / "x_rbqe.jpg")}
    # A re-run keeps the name (nothing renamed again) and skips the image.
    code, err = run(capsys, "enhance", folder, "-o", folder, "--format", "jpeg", "--exit", "1",
                    "--report", report)
    (entry,) = json.loads(report.read_text())["images"]
    assert code == 0 and entry["status"] == "skipped" and "warnings" not in entry, err
