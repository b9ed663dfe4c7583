"""What a batch must never do to a user's files when writes fail or files move under it:
the output log's notes stay true, a file that appears at an output's name is not written
over, an output of a source that has changed since is not taken for done, and a batch
that stops says so in its report.

Through :func:`rbqe.batch.run_batch` and :func:`rbqe.batch.process_item` (the Ray
engine's per-image step), with the tiny random model; failures are made by patching the
image writer, so no real disk needs to fill.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rbqe.batch import BatchEvents, BatchOptions, plan_batch, process_item, run_batch
from rbqe.engine import Enhancer
from rbqe.errors import ImageWriteError, OutputFolderError
from rbqe.io import OUTPUT_LOG
from tests.helpers import photo

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def enhancer(weights) -> Enhancer:
    return Enhancer(weights, device="cpu")


@pytest.fixture
def three(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    for i in range(3):
        pixels = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
        (tmp_path / "in").mkdir(exist_ok=True)
        Image.fromarray(pixels).save(tmp_path / "in" / f"p{i}.jpg", quality=30)
    return tmp_path / "in"


def users_photo(path: Path) -> bytes:
    Image.new("RGB", (10, 10), (200, 0, 0)).save(path)
    return path.read_bytes()


def fail_writes_of(monkeypatch, name: str, code: int = errno.EIO) -> None:
    """Image writes to ``name`` fail with ``code`` (others are written as usual)."""
    import rbqe.batch

    real = rbqe.batch.save_like

    def save_like(path, *args, **kwargs):
        if Path(path).name == name:
            error = ImageWriteError(path, "I/O error: simulated")
            error.errno = code
            raise error
        return real(path, *args, **kwargs)

    monkeypatch.setattr(rbqe.batch, "save_like", save_like)


def test_a_failed_write_leaves_no_note_a_users_later_file_could_be_taken_for(
        enhancer, three, tmp_path, monkeypatch) -> None:
    out = tmp_path / "out"
    fail_writes_of(monkeypatch, "p1.png")
    summary = run_batch(enhancer, [three], BatchOptions(out_dir=out))
    assert [i.status for i in summary.items] == ["ok", "failed", "ok"]
    monkeypatch.undo()

    mine = users_photo(out / "p1.png")  # the user puts a photo of theirs there
    summary = run_batch(enhancer, [three], BatchOptions(out_dir=out))
    p1 = summary.items[1]
    assert p1.status == "failed" and "was not made by rbqe" in p1.error
    assert (out / "p1.png").read_bytes() == mine
    assert [i.status for i in summary.items][::2] == ["skipped", "skipped"]


def test_a_failed_overwrite_keeps_the_earlier_outputs_note(enhancer, three, tmp_path,
                                                           monkeypatch) -> None:
    out = tmp_path / "out"
    run_batch(enhancer, [three], BatchOptions(out_dir=out))
    fail_writes_of(monkeypatch, "p0.png")
    summary = run_batch(enhancer, [three], BatchOptions(out_dir=out, overwrite=True))
    assert summary.items[0].status == "failed"
    monkeypatch.undo()
    summary = run_batch(enhancer, [three], BatchOptions(out_dir=out))
    assert [i.status for i in summary.items] == ["skipped"] * 3  # still rbqe's own


def test_an_edited_output_is_not_taken_for_rbqes(enhancer, three, tmp_path) -> None:
    out = tmp_path / "out"
    run_batch(enhancer, [three], BatchOptions(out_dir=out))
    edited = users_photo(out / "p2.png")  # edited in place by another program
    summary = run_batch(enhancer, [three], BatchOptions(out_dir=out))
    assert summary.items[2].status == "failed"
    assert "replaced or edited since" in summary.items[2].error
    assert (out / "p2.png").read_bytes() == edited


def test_a_file_that_appears_while_the_image_is_made_is_not_written_over(
        enhancer, three, tmp_path) -> None:
    out = tmp_path / "out"
    appeared: list[bytes] = []

    def on_exit(index: int, e) -> None:  # during the enhancement of p0
        if index == 0 and not appeared:
            appeared.append(users_photo(out / "p0.png"))

    summary = run_batch(enhancer, [three], BatchOptions(out_dir=out),
                        events=BatchEvents(on_exit=on_exit))
    p0 = summary.items[0]
    assert p0.status == "failed" and "appeared while the image was made" in p0.error
    assert p0.error.endswith("it is left as it is (--overwrite replaces it)")
    assert (out / "p0.png").read_bytes() == appeared[0]
    assert [i.status for i in summary.items[1:]] == ["ok", "ok"]
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]


def test_a_file_left_in_place_names_the_callers_control(enhancer, three, tmp_path) -> None:
    """The app has no --overwrite: its batch names its checkbox, in both messages about a
    user's file left where an output goes (there before the run, or appearing during it)."""
    out = tmp_path / "out"
    out.mkdir()
    users_photo(out / "p1.png")
    hint = "“Replace existing outputs” replaces it"

    def on_exit(index: int, e) -> None:
        if index == 0 and not (out / "p0.png").exists():
            users_photo(out / "p0.png")

    summary = run_batch(enhancer, [three], BatchOptions(out_dir=out, replace_hint=hint),
                        events=BatchEvents(on_exit=on_exit))
    errors = {item.input.name: item.error for item in summary.items}
    assert errors["p0.jpg"].endswith(f"it is left as it is ({hint})")
    assert f"({hint}, or choose another output folder)" in errors["p1.jpg"]
    assert not any("--overwrite" in (e or "") for e in errors.values())


def test_a_planned_image_finds_what_appeared_since(enhancer, three, tmp_path) -> None:
    # The Ray engine's worker step: planned on the driver, run later elsewhere.
    out = tmp_path / "out"
    options = BatchOptions(out_dir=out)
    plan = plan_batch([three], options)
    path = plan.files[0][0]
    targets = plan.targets[path]
    out.mkdir()
    mine = users_photo(targets[None])
    item = process_item(enhancer, path, targets, options, todo=dict(targets),
                        noted=plan.noted)
    assert item.status == "failed" and "was not made by rbqe" in item.error
    assert targets[None].read_bytes() == mine


def test_a_torn_note_does_not_swallow_the_next(enhancer, three, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / OUTPUT_LOG).write_text('{"output": "p9.png", "sourc')  # a full disk tore it
    run_batch(enhancer, [three], BatchOptions(out_dir=out))
    summary = run_batch(enhancer, [three], BatchOptions(out_dir=out))
    assert [i.status for i in summary.items] == ["skipped"] * 3


def test_an_output_log_that_cannot_be_written_stops_the_batch_first(enhancer, three,
                                                                    tmp_path) -> None:
    out = tmp_path / "out"
    (out / OUTPUT_LOG).mkdir(parents=True)  # not a file
    with pytest.raises(OutputFolderError, match=f"cannot note outputs in {OUTPUT_LOG}"):
        run_batch(enhancer, [three], BatchOptions(out_dir=out))
    assert [p.name for p in out.iterdir()] == [OUTPUT_LOG]


def test_a_batch_stopped_by_a_full_disk_says_so_in_its_report(
        enhancer, three, tmp_path, monkeypatch) -> None:
    from rbqe.batch import report_json

    fail_writes_of(monkeypatch, "p1.png", errno.ENOSPC)
    summary = run_batch(enhancer, [three], BatchOptions(out_dir=tmp_path / "out"))
    doc = json.loads(json.dumps(report_json(enhancer, summary)))
    assert doc["summary"]["total"] == 3 and len(doc["images"]) == 2
    assert "disk full" in doc["summary"]["stopped"]


def fail_writes_in(monkeypatch, folder: Path, code: int) -> None:
    """Image writes into ``folder`` fail with ``code``, as atomic_write's do there (a
    read-only mount needs root to make, so the writer is patched)."""
    import rbqe.batch

    real = rbqe.batch.save_like

    def save_like(path, *args, **kwargs):
        if Path(path).parent == folder:
            error = ImageWriteError(path, os.strerror(code).lower())
            error.errno = code
            raise error
        return real(path, *args, **kwargs)

    monkeypatch.setattr(rbqe.batch, "save_like", save_like)


@pytest.fixture
def tree(tmp_path) -> Path:
    """in/{a_sub/p0, b/p1, p2, p3}.jpg: the read-only sub-folder's image listed first."""
    rng = np.random.default_rng(1)
    for name in ("a_sub/p0.jpg", "b/p1.jpg", "p2.jpg", "p3.jpg"):
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "in" / name, quality=30)
    return tmp_path / "in"


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_a_read_only_output_sub_folder_fails_its_images_only(enhancer, tree, tmp_path,
                                                              monkeypatch, code) -> None:
    # out/a_sub on a read-only mount stopped the whole -r batch, naming out as the
    # folder that refused; the images bound for writable folders were never tried.
    out = tmp_path / "out"
    fail_writes_in(monkeypatch, out / "a_sub", code)
    summary = run_batch(enhancer, [tree], BatchOptions(out_dir=out, recursive=True))
    assert summary.stopped is None
    assert [(i.input.name, i.status) for i in summary.items] == [
        ("p0.jpg", "failed"), ("p1.jpg", "ok"), ("p2.jpg", "ok"), ("p3.jpg", "ok")]
    # The input first: the output's name alone does not say which photo it was.
    said = (f"cannot write in {out / 'a_sub'}: read-only file system"  # the folder named
            if code == errno.EROFS else "permission denied")
    assert summary.items[0].error == (f"{tree / 'a_sub' / 'p0.jpg'} -> "
                                      f"{out / 'a_sub' / 'p0.png'}: {said}")
    assert (out / "b" / "p1.png").exists() and (out / "p3.png").exists()


def test_a_failed_writes_error_line_names_the_input_too(weights, tree, tmp_path,
                                                        monkeypatch) -> None:
    """"rbqe: error: out/a_sub/p0.png: permission denied" left a user with thousands of
    photos to find which one it was."""
    from clirun import run_cli

    out = tmp_path / "out"
    fail_writes_in(monkeypatch, out / "a_sub", errno.EACCES)
    rc, err = run_cli(["enhance", str(tree), "-o", str(out), "-r", "--weights", str(weights)])
    assert rc == 1
    # (the progress lines name the photos too, in a folder whose name has "error" in it)
    assert [line for line in err.splitlines() if line.startswith("rbqe: error")] == [
        f"rbqe: error: {tree / 'a_sub' / 'p0.jpg'} -> {out / 'a_sub' / 'p0.png'}: "
        f"permission denied"]


@pytest.mark.parametrize(("where", "code", "why"), [
    ("", errno.EROFS, "read-only file system"),  # the output folder itself
    ("a_sub", errno.ENOSPC, "disk full"),  # a full disk fails every file, wherever
])
def test_a_read_only_output_folder_or_a_full_disk_still_stops_the_batch(
        enhancer, tree, tmp_path, monkeypatch, where, code, why) -> None:
    out = tmp_path / "out"
    fail_writes_in(monkeypatch, out / where if where else out, code)
    summary = run_batch(enhancer, [tree], BatchOptions(out_dir=out, recursive=True))
    assert summary.stopped == f"{out}: cannot write to the output folder ({why}); batch stopped"
    failed = [i.input.name for i in summary.items if i.status == "failed"]
    assert failed == [("p2.jpg" if not where else "p0.jpg")]
    assert summary.items[-1].status == "failed"  # nothing tried after it


def test_a_disk_remounted_read_only_stops_a_batch_writing_into_sub_folders(
        enhancer, tree, tmp_path, monkeypatch) -> None:
    # A read-only file system met in a sub-folder is that sub-folder's (a mount) only if
    # the output folder still takes files: a disk remounted read-only under a -r batch
    # (every output in a sub-folder) failed each image in turn, the batch not stopped.
    import rbqe.batch

    out = tmp_path / "out"
    fail_writes_in(monkeypatch, out / "a_sub", errno.EROFS)

    real, calls = rbqe.batch.probe_writable, []

    def refuses_once_started(folder):  # the check before any work passes
        calls.append(folder)
        if len(calls) == 1:
            return real(folder)
        raise OSError(errno.EROFS, "Read-only file system", str(folder))

    monkeypatch.setattr(rbqe.batch, "probe_writable", refuses_once_started)
    summary = run_batch(enhancer, [tree], BatchOptions(out_dir=out, recursive=True))
    assert summary.stopped == (f"{out}: cannot write to the output folder (read-only file "
                               f"system); batch stopped")
    assert [(i.input.name, i.status) for i in summary.items] == [("p0.jpg", "failed")]


def test_a_retraction_takes_back_only_its_own_writers_note(tmp_path) -> None:
    # Where files cannot be locked, two rbqe processes may write one output: the loser's
    # retraction must not erase the winner's note of the file it did write.
    from rbqe.io.output_log import OutputNotes, record_output, retract_output

    out, src = tmp_path / "p.png", tmp_path / "p.jpg"
    loser = record_output(out, src, "auto")
    winner = record_output(out, src, "auto")
    out.write_bytes(b"the winner's output")
    record_output(out, src, "auto", size=out.stat().st_size, token=winner)
    retract_output(out, src, loser)
    noted = OutputNotes().get(out)
    assert noted is not None and noted.size == out.stat().st_size and noted.stands_for(out)
    retract_output(out, src, winner)  # its own writer's retraction does take it back
    assert OutputNotes().get(out) is None


def test_a_note_made_before_its_write_stands_only_for_a_file_made_soon_after(
        tmp_path) -> None:
    # A kill between the note and the write leaves a note without a size: a user's file
    # of that name, days later, is not rbqe's.
    import os

    from rbqe.io.output_log import PENDING_WINDOW_S, OutputNotes, record_output

    out = tmp_path / "p.png"
    record_output(out, tmp_path / "p.jpg", "auto")
    out.write_bytes(b"made at once")
    assert OutputNotes().get(out).stands_for(out)
    later = out.stat().st_mtime + 2 * PENDING_WINDOW_S
    os.utime(out, (later, later))
    assert not OutputNotes().get(out).stands_for(out)


def test_a_file_that_appears_before_the_claim_is_won_is_not_taken_for_done(
        enhancer, three, tmp_path, monkeypatch) -> None:
    import contextlib

    import rbqe.batch

    out = tmp_path / "out"
    real = rbqe.batch.claim_output

    @contextlib.contextmanager
    def claim(target):  # the user's file lands between the first look and the claim
        if target.name == "p1.png":
            users_photo(target)
        with real(target) as won:
            yield won

    monkeypatch.setattr(rbqe.batch, "claim_output", claim)
    summary = run_batch(enhancer, [three], BatchOptions(out_dir=out))
    p1 = summary.items[1]
    assert p1.status == "failed" and "was not made by rbqe" in p1.error


# A source changed since its output was made: the output is not taken for done.

def outputs_of(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.png"))}


CHANGED_SINCE = "already exists and was made from an earlier version of this photo (it has changed since)"


def later_mtime(path: Path, seconds: int = 5) -> None:
    """Moves ``path``'s mtime ``seconds`` on (clear of coarse file-system clocks)."""
    mtime = path.stat().st_mtime_ns + seconds * 10**9
    os.utime(path, ns=(mtime, mtime))


def bmp(path: Path, seed: int) -> Path:
    """An uncompressed 24x24 picture: the same size in bytes whatever its ``seed``."""
    pixels = np.random.default_rng(seed).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_an_output_of_a_source_replaced_since_is_not_taken_for_done(
        enhancer, three, tmp_path) -> None:
    out, src = tmp_path / "out", three / "p0.jpg"
    run_batch(enhancer, [three], BatchOptions(out_dir=out, mode=1))
    before, size = outputs_of(out), src.stat().st_size
    Image.fromarray(photo(40, 32)).save(src, quality=90)  # re-exported: another size
    assert src.stat().st_size != size

    summary = run_batch(enhancer, [three], BatchOptions(out_dir=out, mode=1))
    p0 = summary.items[0]
    assert p0.status == "failed" and f"p0.png {CHANGED_SINCE}" in p0.error
    assert [i.status for i in summary.items[1:]] == ["skipped", "skipped"]
    assert outputs_of(out) == before  # left as it is


def test_a_source_of_the_same_size_with_other_bytes_is_changed(enhancer, tmp_path) -> None:
    out, src = tmp_path / "out", bmp(tmp_path / "scan.bmp", seed=0)
    run_batch(enhancer, [src], BatchOptions(out_dir=out, mode=1))
    before, size = outputs_of(out), src.stat().st_size
    bmp(src, seed=1)
    later_mtime(src)
    assert src.stat().st_size == size

    summary = run_batch(enhancer, [src], BatchOptions(out_dir=out, mode=1))
    assert summary.items[0].status == "failed"
    assert CHANGED_SINCE in summary.items[0].error
    assert outputs_of(out) == before


def test_a_touched_source_is_still_done_and_its_bytes_decide(enhancer, tmp_path) -> None:
    # A touch, or a copy without -p, changes only the mtime: its bytes are compared.
    out, src = tmp_path / "out", bmp(tmp_path / "scan.bmp", seed=0)
    run_batch(enhancer, [src], BatchOptions(out_dir=out, mode=1))
    later_mtime(src)
    summary = run_batch(enhancer, [src], BatchOptions(out_dir=out, mode=1))
    assert summary.items[0].status == "skipped"

    data = bytearray(src.read_bytes())
    data[-1] ^= 0xFF  # one pixel edited in place: the same size
    src.write_bytes(bytes(data))
    later_mtime(src)
    summary = run_batch(enhancer, [src], BatchOptions(out_dir=out, mode=1))
    assert summary.items[0].status == "failed"


def test_a_source_read_once_for_a_moved_mtime_is_not_read_again(enhancer, tmp_path,
                                                                monkeypatch) -> None:
    # After a copy without -p every source has a new mtime: its bytes are read once to
    # tell, and its note then takes the new mtime, so the next resume is stat-only again.
    from rbqe.io import output_log

    out, src = tmp_path / "out", bmp(tmp_path / "scan.bmp", seed=0)
    run_batch(enhancer, [src], BatchOptions(out_dir=out, mode=1))
    later_mtime(src)
    read = []
    real = output_log._sha256
    monkeypatch.setattr(output_log, "_sha256", lambda path: read.append(path) or real(path))
    output_log._sha256_as_of.cache_clear()
    assert run_batch(enhancer, [src], BatchOptions(out_dir=out, mode=1)).items[0].status \
        == "skipped"
    assert len(read) == 1
    output_log._sha256_as_of.cache_clear()  # as for the next run, a new process
    assert run_batch(enhancer, [src], BatchOptions(out_dir=out, mode=1)).items[0].status \
        == "skipped"
    assert len(read) == 1  # noted with the new mtime: not read again


def test_a_moved_folder_with_an_edited_photo_is_not_taken_for_done(enhancer, tmp_path) -> None:
    # The noted source is gone (its folder renamed): the bytes still say whether the photo
    # at the new place is the one the output was made from.
    first, out = tmp_path / "in", tmp_path / "out"
    first.mkdir()
    bmp(first / "p.bmp", seed=0)
    run_batch(enhancer, [first], BatchOptions(out_dir=out, mode=1))
    moved = first.rename(tmp_path / "in2")
    assert run_batch(enhancer, [moved], BatchOptions(out_dir=out, mode=1)).items[0].status \
        == "skipped"  # the same bytes: done
    bmp(moved / "p.bmp", seed=1)  # edited: the same size, other bytes
    later_mtime(moved / "p.bmp")
    summary = run_batch(enhancer, [moved], BatchOptions(out_dir=out, mode=1))
    assert summary.items[0].status == "failed" and CHANGED_SINCE in summary.items[0].error


def test_only_a_mtime_whose_bytes_matched_is_noted_again(enhancer, tmp_path) -> None:
    # A source replaced (same size, other bytes) after a run had found it done: noting its
    # new mtime beside the old hash would take the stale output for done from then on.
    from rbqe.io import OutputNotes

    out, src = tmp_path / "out", bmp(tmp_path / "scan.bmp", seed=0)
    run_batch(enhancer, [src], BatchOptions(out_dir=out, mode=1))
    bmp(src, seed=1)
    later_mtime(src)
    log = out / OUTPUT_LOG
    before = log.read_text()
    OutputNotes().renote_source(out / "scan.png", src)
    assert log.read_text() == before


def test_an_older_note_without_the_source_is_still_done(enhancer, three, tmp_path) -> None:
    out, src = tmp_path / "out", three / "p0.jpg"
    run_batch(enhancer, [three], BatchOptions(out_dir=out, mode=1))
    log = out / OUTPUT_LOG
    notes = [json.loads(line) for line in log.read_text().splitlines() if line]
    assert all("source_id" in n for n in notes if "size" in n)
    log.write_text("".join(json.dumps({k: v for k, v in n.items() if k != "source_id"})
                           + "\n" for n in notes))  # as an older rbqe wrote it
    Image.fromarray(photo(40, 32)).save(src, quality=90)

    summary = run_batch(enhancer, [three], BatchOptions(out_dir=out, mode=1))
    assert [i.status for i in summary.items] == ["skipped"] * 3  # lenient, as before


def test_overwrite_enhances_the_new_version_which_is_then_done(enhancer, three,
                                                               tmp_path) -> None:
    out, src = tmp_path / "out", three / "p0.jpg"
    run_batch(enhancer, [three], BatchOptions(out_dir=out, mode=1))
    before = (out / "p0.png").read_bytes()
    Image.fromarray(photo(40, 32)).save(src, quality=90)
    assert run_batch(enhancer, [src], BatchOptions(out_dir=out, mode=1)).failed == 1

    summary = run_batch(enhancer, [src], BatchOptions(out_dir=out, mode=1, overwrite=True))
    assert summary.items[0].status == "ok"
    assert (out / "p0.png").read_bytes() != before
    summary = run_batch(enhancer, [src], BatchOptions(out_dir=out, mode=1))
    assert summary.items[0].status == "skipped"


def test_a_source_replaced_while_it_is_enhanced_is_changed_next_time(
        enhancer, three, tmp_path) -> None:
    # Its identity is taken before it is read: the output is of the version before.
    out, src = tmp_path / "out", three / "p0.jpg"
    replaced: list[bool] = []

    def on_exit(index: int, e) -> None:  # p0 was read: it is being enhanced
        if index == 0 and not replaced:
            Image.fromarray(photo(40, 32)).save(src, quality=90)
            replaced.append(True)

    run_batch(enhancer, [three], BatchOptions(out_dir=out, mode=1),
              events=BatchEvents(on_exit=on_exit))
    summary = run_batch(enhancer, [three], BatchOptions(out_dir=out, mode=1))
    assert summary.items[0].status == "failed" and CHANGED_SINCE in summary.items[0].error


def test_the_ray_workers_step_notes_the_source_too(enhancer, three, tmp_path) -> None:
    out = tmp_path / "out"
    options = BatchOptions(out_dir=out, mode=1)
    plan = plan_batch([three], options)
    path = plan.files[0][0]
    out.mkdir()
    process_item(enhancer, path, plan.targets[path], options, noted=plan.noted)
    Image.fromarray(photo(40, 32)).save(path, quality=90)
    summary = run_batch(enhancer, [path], options)
    assert summary.items[0].status == "failed" and CHANGED_SINCE in summary.items[0].error
