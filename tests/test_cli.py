"""The ``rbqe`` command-line contract: outputs, modes, reports, failures and exit codes.

In-process through :func:`rbqe.cli.main`, plus one real subprocess. A tiny random model
(width 8) stands in for trained weights: the contract does not depend on them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rbqe.cli import main
from rbqe.io import OUTPUT_LOG

EXIT_NAMES = [f"exit{k}" for k in range(1, 6)]
pytestmark = pytest.mark.usefixtures("one_thread")


def outputs_in(folder: Path) -> list[str]:
    """The files in an output folder, but rbqe's note of what it wrote there."""
    return sorted(p.name for p in folder.iterdir() if p.name != OUTPUT_LOG)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(capsys, *args: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


@pytest.fixture
def weights_env(tiny_weights, monkeypatch) -> Path:
    monkeypatch.setenv("RBQE_WEIGHTS", str(tiny_weights))
    return tiny_weights


@pytest.fixture
def inputs(tmp_path, make_jpeg) -> dict[str, Path]:
    """a.jpg (RGB JPEG), g.jpg (grey JPEG), b.png (RGBA), d/c.jpg (in a folder)."""
    root = tmp_path / "in"
    (root / "d").mkdir(parents=True)
    rgb = make_jpeg(48, 64, seed=1)
    files = {"a": root / "a.jpg", "g": root / "g.jpg", "b": root / "b.png", "c": root / "d/c.jpg"}
    Image.fromarray(rgb).save(files["a"], "JPEG", quality=30)
    Image.fromarray(rgb[..., 1]).save(files["g"], "JPEG", quality=30)
    alpha = np.random.default_rng(0).integers(0, 256, rgb.shape[:2], dtype=np.uint8)
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(files["b"])
    Image.fromarray(make_jpeg(40, 40, seed=2)).save(files["c"], "JPEG", quality=30)
    return files


def test_enhance_files_and_folder_keep_modes(capsys, weights_env, inputs, tmp_path):
    out = tmp_path / "out"
    before = {k: sha(p) for k, p in inputs.items()}
    code, stdout, err = run(capsys, "enhance", inputs["a"], inputs["g"], inputs["b"],
                            inputs["c"].parent, "-o", out)
    assert code == 0, err
    assert outputs_in(out) == ["a.png", "b.png", "c.png", "g.png"]
    with Image.open(out / "a.png") as im:
        assert im.mode == "RGB" and im.size == (64, 48)
    with Image.open(out / "g.png") as im:
        assert im.mode == "L" and im.size == (64, 48)
    with Image.open(out / "b.png") as im, Image.open(inputs["b"]) as src:
        assert im.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(im)[..., 3], np.asarray(src)[..., 3])
    assert {k: sha(p) for k, p in inputs.items()} == before
    assert "4 enhanced" in err and stdout == ""


def test_exit_all_writes_five_files(capsys, weights_env, inputs, tmp_path):
    out = tmp_path / "out"
    code, _, err = run(capsys, "enhance", inputs["a"], "-o", out, "--exit", "all")
    assert code == 0, err
    assert outputs_in(out) == [f"a.{t}.png" for t in EXIT_NAMES]
    images = [np.asarray(Image.open(out / f"a.{t}.png")) for t in EXIT_NAMES]
    assert all(i.shape == (48, 64, 3) for i in images)


def test_forced_exit_and_report(capsys, weights_env, inputs, tmp_path):
    out, report = tmp_path / "out", tmp_path / "rep" / "report.json"
    code, _, err = run(capsys, "enhance", inputs["a"], inputs["g"], "-o", out, "--exit", "3",
                       "--report", report)
    assert code == 0, err
    doc = json.loads(report.read_text())
    assert {"device", "weights", "threshold", "images"} <= set(doc)
    assert doc["device"] == "cpu" and doc["weights"] == str(weights_env)
    assert isinstance(doc["threshold"], float)
    assert len(doc["images"]) == 2
    for entry in doc["images"]:
        assert entry["status"] == "ok"
        assert Path(entry["input"]).name in ("a.jpg", "g.jpg")
        assert entry["exit"] == 3
        assert entry["outputs"] == {"3": str(out / (Path(entry["input"]).stem + ".png"))}
        assert list(entry["scores"]) == ["1", "2", "3"]
        assert all(0 <= s <= 1 for s in entry["scores"].values())
        times = entry["times_ms"]
        assert len(times["stages"]) == 3 and times["iqa"] >= 0
        assert times["total"] >= sum(times["stages"])
        assert entry["gmacs"] > 0 and entry["size"] == [64, 48]


def test_report_auto_and_all(capsys, weights_env, inputs, tmp_path):
    report = tmp_path / "r.json"
    code, _, _ = run(capsys, "enhance", inputs["a"], "-o", tmp_path / "o1", "--threshold", "0",
                     "--report", report)
    assert code == 0
    (entry,) = json.loads(report.read_text())["images"]
    assert entry["exit"] == 1 and list(entry["scores"]) == ["1"]
    assert len(entry["times_ms"]["stages"]) == 1
    assert json.loads(report.read_text())["threshold"] == 0.0

    code, _, _ = run(capsys, "enhance", inputs["a"], "-o", tmp_path / "o2", "--exit", "all",
                     "--report", report)
    assert code == 0
    (entry,) = json.loads(report.read_text())["images"]
    assert list(entry["outputs"]) == ["1", "2", "3", "4", "5"]
    assert list(entry["scores"]) == ["1", "2", "3", "4", "5"]
    assert len(entry["times_ms"]["stages"]) == 5 and 1 <= entry["exit"] <= 5


def test_a_tiled_image_reports_every_exit_it_computed(capsys, weights_env, make_jpeg,
                                                       tmp_path):
    # Issue 13, 6d: under auto (and a forced exit) a tiled image recorded only the chosen
    # exit's score, an untiled one every exit it walked. Both now record exits 1..chosen:
    # the tiled image's earlier exits with the sample tiles' mean score.
    src = tmp_path / "big.jpg"
    Image.fromarray(make_jpeg(200, 260, seed=4)).save(src, "JPEG", quality=20)
    for extra in (["--threshold", "0", "--min-exit", "3"], ["--exit", "3"]):
        entries = {}
        for tile in ("128", "0"):
            report = tmp_path / f"r{tile}.json"
            code, _, err = run(capsys, "enhance", src, "-o", tmp_path / f"o{tile}{extra[1]}",
                               "--tile", tile, "--report", report, *extra)
            assert code == 0, err
            (entries[tile],) = json.loads(report.read_text())["images"]
        assert entries["128"]["exit"] == entries["0"]["exit"] == 3
        assert list(entries["128"]["scores"]) == list(entries["0"]["scores"]) == ["1", "2", "3"]
        assert all(0 <= s <= 1 for s in entries["128"]["scores"].values())


def test_bad_files_fail_one_line_each_and_the_rest_is_done(capsys, weights_env, inputs,
                                                          tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    good = inputs["a"].read_bytes()
    (bad / "corrupt.jpg").write_bytes(good[:200] + b"\x00" * 50)  # header, then garbage
    (bad / "text.jpg").write_text("this is not an image\n")
    (bad / "empty.jpg").write_bytes(b"")
    out, report = tmp_path / "out", tmp_path / "r.json"
    code, stdout, err = run(capsys, "enhance", bad, inputs["a"], inputs["g"], "-o", out,
                            "--report", report)
    assert code == 1
    lines = [ln for ln in err.splitlines() if ln.startswith("rbqe: error:")]
    assert len(lines) == 3, err
    for name in ("corrupt.jpg", "text.jpg", "empty.jpg"):
        assert sum(name in ln for ln in lines) == 1, err
    assert "Traceback" not in err and stdout == ""
    assert outputs_in(out) == ["a.png", "g.png"]
    statuses = {Path(i["input"]).name: i["status"] for i in
                json.loads(report.read_text())["images"]}
    assert statuses == {"corrupt.jpg": "failed", "text.jpg": "failed", "empty.jpg": "failed",
                        "a.jpg": "ok", "g.jpg": "ok"}


def test_usage_errors_exit_2(capsys, weights_env, inputs, tmp_path):
    for args in (["enhance", str(inputs["a"])],  # no -o
                 ["enhance", str(inputs["a"]), "-o", str(tmp_path), "--exit", "7"],
                 ["frobnicate"], []):
        with pytest.raises(SystemExit) as exc:
            main(args)
        assert exc.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_missing_weights_plain_message_exit_2(capsys, monkeypatch, inputs, tmp_path):
    missing = tmp_path / "nope.safetensors"
    monkeypatch.setenv("RBQE_WEIGHTS", str(missing))
    code, _, err = run(capsys, "enhance", inputs["a"], "-o", tmp_path / "out")
    assert code == 2
    assert err.startswith("rbqe: error:") and str(missing) in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    code, _, err = run(capsys, "enhance", inputs["a"], "-o", tmp_path / "out",
                       "--weights", missing)
    assert code == 2 and str(missing) in err


def test_an_image_file_name_as_out_folder_is_refused(capsys, inputs, tmp_path):
    code, _, err = run(capsys, "enhance", inputs["a"], "-o", tmp_path / "result.png")
    assert code == 2 and "-o takes a folder" in err and "result.png" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "result.png").exists()  # nothing made, no folder of that name


def test_standard_input_is_refused_in_one_line(capsys, monkeypatch, inputs, tmp_path):
    """``-`` used to be read as a file of that name: "-: file not found", after -o was
    made. A file really named - (given as ./- by most) is still read."""
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "enhance", "-", "-o", tmp_path / "out")
    assert code == 2 and "standard input" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_missing_input_makes_nothing_at_the_output(capsys, weights_env, inputs, tmp_path):
    """A typo in the input used to leave -o made, with an empty output log in it; beside
    real inputs a missing one is failed before its output is claimed."""
    out = tmp_path / "out"
    code, _, err = run(capsys, "enhance", tmp_path / "nope.jpg", "-o", out)
    assert code == 1 and "nope.jpg: file not found" in err
    assert not out.exists()
    sub = tmp_path / "sub"
    code, _, err = run(capsys, "enhance", inputs["a"], sub / "gone.jpg", "-o", out, "-r")
    assert code == 1 and "gone.jpg: file not found" in err
    assert outputs_in(out) == [f"{inputs['a'].stem}.png"]  # nothing left for gone.jpg


def test_gpus_per_worker_must_be_a_count_of_gpus(capsys, inputs, tmp_path):
    for bad in ("nan", "-1", "inf", "two"):
        with pytest.raises(SystemExit) as exc:
            main(["enhance", str(inputs["a"]), "-o", str(tmp_path), "--engine", "ray",
                  "--gpus-per-worker", bad])
        assert exc.value.code == 2
        assert "--gpus-per-worker" in capsys.readouterr().err


def test_a_stop_signal_after_the_last_image_still_exits_as_stopped(capsys, weights_env,
                                                                    inputs, tmp_path,
                                                                    monkeypatch):
    """SIGTERM landing once every image is done (after the batch's last cancel check; with
    Ray, while the last ones finish): "stopping" is said and the exit code is 143, as a
    wrapper (timeout, Slurm) reads it. It used to be 0, by timing (a CI run saw it)."""
    import signal

    import rbqe.batch

    plain = rbqe.batch.run_batch

    def then_terminated(*args, **kwargs):
        summary = plain(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)  # handled by rbqe's own handler, in this thread
        return summary

    monkeypatch.setattr(rbqe.batch, "run_batch", then_terminated)
    report = tmp_path / "r.json"
    code, _, err = run(capsys, "enhance", inputs["a"], "-o", tmp_path / "out", "--report",
                       report)
    assert code == 128 + signal.SIGTERM
    # No image was in hand: nothing waits but the report
    assert "SIGTERM: stopping once the report is written" in err
    doc = json.loads(report.read_text())
    assert [i["status"] for i in doc["images"]] == ["ok"]  # nothing was left undone
    assert doc["summary"]["cancelled"] is False


def test_weights_option_beats_env(capsys, monkeypatch, tiny_weights, inputs, tmp_path):
    monkeypatch.setenv("RBQE_WEIGHTS", str(tmp_path / "missing.safetensors"))
    code, _, err = run(capsys, "enhance", inputs["a"], "-o", tmp_path / "out",
                       "--weights", tiny_weights)
    assert code == 0, err


def test_never_writes_over_an_input(capsys, weights_env, inputs):
    folder = inputs["b"].parent  # b.png would map onto itself
    before = {p.name: sha(p) for p in folder.iterdir() if p.is_file()}
    code, _, err = run(capsys, "enhance", inputs["b"], inputs["a"], "-o", folder)
    assert code == 0, err
    after = {p.name: sha(p) for p in folder.iterdir() if p.is_file()}
    assert {k: after[k] for k in before} == before
    assert "b_rbqe.png" in after and "a.png" in after


def test_existing_outputs_skipped_unless_overwrite(capsys, weights_env, inputs, tmp_path):
    """rbqe's own outputs are skipped on a re-run (a batch resumes); a file of the user's
    in an output's place, or another exit of the photo, is neither taken for done nor
    replaced: that image fails, naming the file and why."""
    out, report = tmp_path / "out", tmp_path / "r.json"
    out.mkdir()
    (out / "a.png").write_bytes(b"keep me")
    code, _, err = run(capsys, "enhance", inputs["a"], inputs["g"], "-o", out,
                       "--report", report)
    assert code == 1, err
    assert (out / "a.png").read_bytes() == b"keep me"
    images = {Path(i["input"]).name: i for i in json.loads(report.read_text())["images"]}
    assert {k: i["status"] for k, i in images.items()} == {"a.jpg": "failed", "g.jpg": "ok"}
    assert "a.png already exists and was not made by rbqe" in images["a.jpg"]["error"]
    assert "outputs" not in images["a.jpg"] or not images["a.jpg"]["outputs"]

    code, _, err = run(capsys, "enhance", inputs["g"], "-o", out, "--report", report)
    assert code == 0 and "1 skipped" in err, err  # g.png is rbqe's auto result of g.jpg

    g_png = sha(out / "g.png")
    code, _, err = run(capsys, "enhance", inputs["g"], "-o", out, "--exit", "2")
    assert code == 1 and "holds the auto result of this photo" in err, err
    assert sha(out / "g.png") == g_png

    code, _, err = run(capsys, "enhance", inputs["a"], "-o", out, "--overwrite")
    assert code == 0, err
    with Image.open(out / "a.png") as im:
        assert im.mode == "RGB" and im.size == (64, 48)
    code, _, err = run(capsys, "enhance", inputs["a"], "-o", out)
    assert code == 0 and "1 skipped" in err, err


def test_info_json(capsys, weights_env):
    code, stdout, _ = run(capsys, "info")
    assert code == 0
    doc = json.loads(stdout)
    assert {"version", "device", "weights", "architecture", "exit_policy", "gmacs_512"} <= set(doc)
    assert "threshold" not in doc  # the assessor's, not auto's under another default rule
    policy = doc["exit_policy"]
    assessor = policy["policies"]["assessor"]
    assert isinstance(assessor["params"]["threshold"], float) and policy["default"]
    assert doc["weights"] == str(weights_env) and doc["device"] == "cpu"
    assert doc["architecture"]["width"] == 8 and doc["architecture"]["in_channels"] == 1
    g = doc["gmacs_512"]
    assert len(g) == 5 and all(b > a > 0 for a, b in itertools.pairwise(g))
    # Which file, to check against a model card: its hash and size.
    data = Path(weights_env).read_bytes()
    assert doc["weights_file"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert doc["weights_file"]["bytes"] == len(data)


def test_info_without_weights(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("RBQE_WEIGHTS", str(tmp_path / "none.safetensors"))
    code, stdout, _ = run(capsys, "info")
    assert code == 2
    doc = json.loads(stdout)
    assert doc["weights"] is None and "version" in doc


def test_real_subprocess(tiny_weights, inputs, tmp_path):
    out, report = tmp_path / "out", tmp_path / "r.json"
    env = {**os.environ, "RBQE_WEIGHTS": str(tiny_weights)}
    proc = subprocess.run(
        [sys.executable, "-m", "rbqe.cli", "enhance", str(inputs["g"]), str(tmp_path / "x.jpg"),
         "-o", str(out), "--exit", "2", "--report", str(report)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert proc.returncode == 1, proc.stderr  # x.jpg does not exist
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("rbqe: error:")]
    assert len(errors) == 1 and "x.jpg" in errors[0]
    assert outputs_in(out) == ["g.png"]
    with Image.open(out / "g.png") as im:
        assert im.mode == "L"
    assert json.loads(report.read_text())["images"][0]["exit"] == 2


def test_python_m_rbqe_into_a_closed_pipe_is_quiet(weights_env):
    # `python -m rbqe info | true`: the reader is gone before rbqe writes; no BrokenPipe
    # traceback, and the exit status says it failed. The read end is closed before the
    # process starts, so no race with a `true` that might still be running.
    r, w = os.pipe()
    os.close(r)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "rbqe", "info"], stdout=w, stderr=subprocess.PIPE,
            text=True, timeout=120, check=False,
            env={**os.environ, "RBQE_WEIGHTS": str(weights_env)},
        )
    finally:
        os.close(w)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
