"""An output is done only if it was made as this run asks: the output log notes the
metadata written back, a lossy format's quality, auto's exit rule and the weights with
each output, so a re-run with ``--strip-gps`` does not report as done files that still
hold the GPS location (it did: "0 enhanced, 1 skipped", rc 0), nor one with new weights
the old network's outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clirun import run_cli
from PIL import Image

from rbqe.io import OUTPUT_LOG, OutputNotes, made_with, not_this_result
from tests.helpers import photo, save_tiny_weights


def exif_with_gps() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "RBQE Camera"  # Make
    exif.get_ifd(0x8825).update({1: "N", 2: (52.0, 22.0, 0.0), 3: "E", 4: (4.0, 53.0, 0.0)})
    return exif.tobytes()


@pytest.fixture
def tagged(tmp_path: Path) -> Path:
    src = tmp_path / "in" / "tagged.jpg"
    src.parent.mkdir()
    Image.fromarray(photo(40, 48)).save(src, quality=20, exif=exif_with_gps())
    return src


def has_gps(path: Path) -> bool:
    with Image.open(path) as im:
        return bool(im.getexif().get_ifd(0x8825))


def enhance(weights: Path, src: Path, out: Path, *flags: str) -> tuple[int, str, dict]:
    report = out.parent / f"{out.name}-report.json"
    rc, err = run_cli(["enhance", str(src), "-o", str(out), "--weights", str(weights),
                       "--report", str(report), *flags])
    return rc, err, json.loads(report.read_text())["images"][0]


def test_a_rerun_that_strips_gps_does_not_take_kept_gps_for_done(weights, tagged,
                                                                 tmp_path) -> None:
    out = tmp_path / "out"
    rc, err, row = enhance(weights, tagged, out)
    assert rc == 0 and row["status"] == "ok", err
    assert has_gps(out / "tagged.png")

    rc, err, row = enhance(weights, tagged, out, "--strip-gps")
    assert rc != 0 and row["status"] == "failed"
    assert "tagged.png already exists and was written with its metadata kept (this run: " \
           "its GPS location removed)" in row["error"] and "--overwrite" in row["error"]
    assert has_gps(out / "tagged.png")  # left as it is, and not called done

    rc, err, row = enhance(weights, tagged, out, "--strip-gps", "--overwrite")
    assert rc == 0 and row["status"] == "ok", err
    assert not has_gps(out / "tagged.png")
    rc, err, row = enhance(weights, tagged, out, "--strip-gps")  # now it is done
    assert rc == 0 and row["status"] == "skipped", err
    rc, err, row = enhance(weights, tagged, out, "--strip-metadata")
    assert row["status"] == "failed" and "its metadata left out" in row["error"]


def test_quality_counts_for_lossy_outputs_only(weights, tagged, tmp_path) -> None:
    for fmt, status in (("jpeg", "failed"), ("png", "skipped")):
        out = tmp_path / fmt
        assert enhance(weights, tagged, out, "--format", fmt, "--quality", "90")[0] == 0
        rc, err, row = enhance(weights, tagged, out, "--format", fmt, "--quality", "60")
        assert row["status"] == status, err
        if fmt == "jpeg":
            assert "was written at quality 90 (this run: 60)" in row["error"]


def test_auto_outputs_answer_to_their_exit_rule(weights, tagged, tmp_path) -> None:
    out = tmp_path / "auto"
    assert enhance(weights, tagged, out, "--policy", "assessor", "--threshold", "0.2")[0] == 0
    rc, err, row = enhance(weights, tagged, out, "--policy", "assessor", "--threshold", "0.9")
    assert row["status"] == "failed"
    assert "holds the exit chosen by another rule (assessor: stop when the quality score " \
           ">= 0.200; this run: assessor: stop when the quality score >= 0.900)" in row["error"]
    # A forced exit's pixels do not depend on the rule.
    forced = tmp_path / "forced"
    assert enhance(weights, tagged, forced, "--exit", "2", "--threshold", "0.2")[0] == 0
    rc, err, row = enhance(weights, tagged, forced, "--exit", "2", "--threshold", "0.9")
    assert rc == 0 and row["status"] == "skipped", err


def test_an_older_note_cannot_vouch_for_stripped_metadata(tmp_path: Path) -> None:
    """Notes of earlier versions say nothing of how an output was made: they still count
    as done, except for a run that strips metadata, which they cannot vouch for."""
    src = tmp_path / "a.jpg"
    src.write_bytes(b"x")
    out = tmp_path / "out" / "a.png"
    out.parent.mkdir()
    out.write_bytes(b"12345")
    entry = {"output": "a.png", "source": "../a.jpg", "result": "auto", "size": 5}
    (out.parent / OUTPUT_LOG).write_text(json.dumps(entry) + "\n")
    keep = made_with(keep_metadata=True, strip_gps=False, fmt="png", quality=95, rule="r")
    strip = made_with(keep_metadata=True, strip_gps=True, fmt="png", quality=95, rule="r")
    assert not_this_result(out, src, "auto", OutputNotes(), keep) is None
    why = not_this_result(out, src, "auto", OutputNotes(), strip)
    assert why is not None and "older rbqe" in why


def test_made_with_names_what_decides_the_bytes() -> None:
    assert made_with(keep_metadata=True, strip_gps=False, fmt="png", quality=95) == \
        {"metadata": "keep"}
    assert made_with(keep_metadata=False, strip_gps=True, fmt="jpeg", quality=80,
                     rule="learned gate") == \
        {"metadata": "strip", "quality": 80, "rule": "learned gate"}
    assert made_with(keep_metadata=True, strip_gps=True, fmt=".webp", quality=70) == \
        {"metadata": "strip-gps", "quality": 70}


def test_the_weights_default_rule_is_noted_as_such(weights, tagged, tmp_path) -> None:
    """The weights' own rule is noted as "the weights' default", not as the rule it is
    (new weights, whose outputs are not done anyway, bring their own); a batch asking for
    a rule of its own does not take those outputs for done."""
    out = tmp_path / "out"
    assert enhance(weights, tagged, out)[0] == 0
    noted = OutputNotes().get(out / "tagged.png")
    assert noted is not None and noted.made is not None
    assert noted.made["rule"] == "the weights' default"
    rc, err, row = enhance(weights, tagged, out, "--threshold", "0.9")
    assert row["status"] == "failed" and "(the weights' default; this run: assessor" in \
        row["error"]


def _content(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.name != OUTPUT_LOG}


def test_outputs_of_other_weights_are_not_taken_for_done(tagged, tmp_path) -> None:
    """A re-run with a new weights file reported every output done ("0 enhanced, 1
    skipped", rc 0), each still the old network's. The weights are noted with each output
    (the hash of their tensors) and said by their file's name."""
    old = save_tiny_weights(tmp_path / "w" / "old.safetensors", seed=0)
    new = save_tiny_weights(tmp_path / "w" / "new.safetensors", seed=1)
    out = tmp_path / "out"
    assert enhance(old, tagged, out, "--exit", "2")[0] == 0  # a forced exit: any result
    before = _content(out)

    rc, err, row = enhance(new, tagged, out, "--exit", "2")
    assert rc == 1 and row["status"] == "failed", err
    assert f"{out / 'tagged.png'} already exists and was made by other weights " \
           f"(old.safetensors; this run: new.safetensors); it is left as it is " \
           f"(--overwrite replaces it" in row["error"]
    assert f"rbqe: error: {row['error']}" in err.splitlines()
    assert _content(out) == before  # left as it was
    assert enhance(old, tagged, out, "--exit", "2")[2]["status"] == "skipped"

    rc, err, row = enhance(new, tagged, out, "--exit", "2", "--overwrite")
    assert rc == 0 and row["status"] == "ok", err
    assert _content(out) != before  # the new network's now
    assert enhance(new, tagged, out, "--exit", "2")[2]["status"] == "skipped"


def test_weights_changed_under_the_same_name_are_other_weights(tagged, tmp_path) -> None:
    """The tensors decide, not the file: new metadata (a stored rule) is the same
    network; a network retrained into the same file is not."""
    weights = save_tiny_weights(tmp_path / "w" / "rbqe.safetensors", seed=0)
    out = tmp_path / "out"
    assert enhance(weights, tagged, out)[0] == 0
    save_tiny_weights(weights, seed=0, threshold=0.5)  # its metadata only
    rc, err, row = enhance(weights, tagged, out)
    assert rc == 0 and row["status"] == "skipped", err
    save_tiny_weights(weights, seed=2)  # retrained
    rc, err, row = enhance(weights, tagged, out)
    assert row["status"] == "failed", err
    assert "tagged.png already exists and was made by another version of the weights " \
           "rbqe.safetensors (changed since)" in row["error"]


def test_a_note_that_names_no_weights_still_counts_as_done(tagged, tmp_path) -> None:
    """Notes written before the weights were noted say nothing of them: as for the other
    settings, such an output stays done (whatever weights this run has)."""
    old = save_tiny_weights(tmp_path / "w" / "old.safetensors", seed=0)
    new = save_tiny_weights(tmp_path / "w" / "new.safetensors", seed=1)
    out = tmp_path / "out"
    assert enhance(old, tagged, out)[0] == 0
    log = out / OUTPUT_LOG
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert all(entry["made"]["weights"]["file"] == "old.safetensors" for entry in lines)
    for entry in lines:
        del entry["made"]["weights"]
    log.write_text("".join(json.dumps(entry) + "\n" for entry in lines))
    rc, err, row = enhance(new, tagged, out)
    assert rc == 0 and row["status"] == "skipped", err
