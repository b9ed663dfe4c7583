"""The app's saves are noted in the folder's output log, as the CLI's outputs are: a
later batch into that folder knows them for rbqe's, and Save all replaces a file that
rbqe did not make there from this photo with this result only when the user says so."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from rbqe.batch import BatchOptions, run_batch
from rbqe.io import OutputNotes, record_output, source_identity
from rbqe_studio.jobs import ViewData
from rbqe_studio.saving import result_held
from tests.helpers import tiny_enhancer, write_jpeg

TIMEOUT = 120_000


def view(qtbot, window, path: Path, mode: object = "all") -> None:
    window.session.mode_override = mode
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths([path])


def save_all(qtbot, window, folder: Path, monkeypatch) -> list[Path]:
    monkeypatch.setattr(window, "_folder_dialog", lambda *a: str(folder))
    with qtbot.waitSignal(window.session.saved, timeout=TIMEOUT) as blocker:
        window.acts.save_all.trigger()
    return list(blocker.args[0])


def save_one(qtbot, window, folder: Path, monkeypatch) -> Path:
    """A single Save into ``folder`` under the suggested name; returns the file saved."""
    monkeypatch.setattr(window, "_save_dialog", lambda suggested: str(folder / suggested.name))
    with qtbot.waitSignal(window.session.saved, timeout=TIMEOUT) as blocker:
        window.acts.save.trigger()
    (saved,) = blocker.args[0]
    return saved


def save_fails(qtbot, window) -> str:
    """Triggers Save all, which must fail; returns the error message shown."""
    with qtbot.waitSignal(window.session.message, timeout=TIMEOUT,
                          check_params_cb=lambda text, error: error) as blocker:
        window.acts.save_all.trigger()
    return str(blocker.args[0])


def answer(window, monkeypatch, replace: bool) -> list[list[Path]]:
    """Save all's question answered ``replace``; returns what each question listed."""
    asked: list[list[Path]] = []

    def confirm(folder: Path, files: list[Path]) -> bool:
        asked.append(files)
        return replace

    monkeypatch.setattr(window, "_confirm_replace", confirm)
    return asked


def test_a_batch_skips_what_save_all_made(qtbot, window, images, tmp_path,
                                          monkeypatch) -> None:
    """The defect: the app's outputs were not noted, so a CLI batch into that folder
    failed the photo ("was not made by rbqe")."""
    view(qtbot, window, images[0])
    folder = tmp_path / "out"
    folder.mkdir()
    saved = save_all(qtbot, window, folder, monkeypatch)
    assert [p.name for p in saved] == [f"photo0_rbqe.exit{k}.png" for k in range(1, 6)]
    notes = OutputNotes()
    for k, p in enumerate(saved, start=1):
        noted = notes.get(p)
        assert noted is not None and noted.result == f"exit{k}"
        assert noted.source == folder / "../in/photo0.jpg" and noted.stands_for(p)

    options = BatchOptions(out_dir=folder, mode="all", suffix="_rbqe")
    summary = run_batch(tiny_enhancer(), [images[0]], options)
    (item,) = summary.items
    assert item.status == "skipped", item.error
    assert sorted(item.outputs) == ["1", "2", "3", "4", "5"]

    # Another result at those names (a forced exit 3 would be photo0_rbqe.png: not
    # these) is still told apart: the auto result of --suffix _rbqe.exit3 is not exit3.
    auto = BatchOptions(out_dir=folder, mode="auto", suffix="_rbqe.exit3")
    (item,) = run_batch(tiny_enhancer(), [images[0]], auto).items
    assert item.status == "failed" and "holds exit 3 of this photo" in str(item.error)


def test_save_all_asks_before_it_replaces_a_users_file(qtbot, window, images, tmp_path,
                                                      monkeypatch) -> None:
    """It refused with a message (choose another folder, or move that file away); now it
    asks, and keeps the file unless the user says Replace."""
    view(qtbot, window, images[0])
    folder = tmp_path / "out"
    folder.mkdir()
    mine = folder / "photo0_rbqe.exit3.png"
    mine.write_bytes(b"my own drawing")
    monkeypatch.setattr(window, "_folder_dialog", lambda *a: str(folder))
    asked = answer(window, monkeypatch, replace=False)
    window.acts.save_all.trigger()
    assert asked == [[mine]]
    assert "Nothing saved" in window.status.text() and "kept" in window.status.text()
    assert mine.read_bytes() == b"my own drawing"
    assert sorted(p.name for p in folder.iterdir()) == [mine.name]  # nothing half-saved

    asked = answer(window, monkeypatch, replace=True)
    saved = save_all(qtbot, window, folder, monkeypatch)
    assert asked == [[mine]] and mine in saved and len(saved) == 5
    assert mine.read_bytes() != b"my own drawing"
    noted = OutputNotes().get(mine)  # now rbqe's exit 3 of this photo, as a batch reads it
    assert noted is not None and noted.result == "exit3" and noted.stands_for(mine)
    asked = answer(window, monkeypatch, replace=True)
    again = save_all(qtbot, window, folder, monkeypatch)
    assert again == saved and asked == []  # its own files now: no question


def test_a_file_that_appears_after_the_question_is_not_replaced(qtbot, window, images,
                                                                tmp_path, monkeypatch) -> None:
    """The user agreed to replace the files listed; one that appears at another of the
    names after the question is not among them: the save fails naming it, writes nothing."""
    view(qtbot, window, images[0])
    folder = tmp_path / "out"
    folder.mkdir()
    mine = folder / "photo0_rbqe.exit3.png"
    mine.write_bytes(b"my own drawing")
    late = folder / "photo0_rbqe.exit5.png"
    monkeypatch.setattr(window, "_folder_dialog", lambda *a: str(folder))

    def confirm(where: Path, files: list[Path]) -> bool:
        late.write_bytes(b"saved by another program meanwhile")
        return True

    monkeypatch.setattr(window, "_confirm_replace", confirm)
    message = save_fails(qtbot, window)
    assert "photo0_rbqe.exit5.png" in message and "not made by rbqe" in message
    assert mine.read_bytes() == b"my own drawing"
    assert late.read_bytes() == b"saved by another program meanwhile"
    assert sorted(p.name for p in folder.iterdir()) == [mine.name, late.name]


def test_save_all_again_replaces_its_own_files(qtbot, window, images, tmp_path,
                                               monkeypatch) -> None:
    view(qtbot, window, images[0])
    folder = tmp_path / "out"
    folder.mkdir()
    first = save_all(qtbot, window, folder, monkeypatch)
    again = save_all(qtbot, window, folder, monkeypatch)
    assert again == first and all(p.is_file() for p in again)
    # rbqe's output of another photo at one of the names is not replaced.
    other = folder / "photo0_rbqe.exit2.png"
    other.write_bytes(b"photo1's exit 2")
    record_output(other, images[1], "exit2", size=other.stat().st_size)
    asked = answer(window, monkeypatch, replace=False)  # asked, and kept
    window.acts.save_all.trigger()
    assert asked == [[other]] and other.read_bytes() == b"photo1's exit 2"


def test_save_notes_the_forced_exit_a_batch_would_name(qtbot, window, images, tmp_path,
                                                       monkeypatch) -> None:
    """A single Save writes the name the user chose (the dialog asked before replacing)
    and notes it: exit 3 under the suggested name is --exit all's exit 3, under a name
    that is not --exit all's a forced exit 3."""
    view(qtbot, window, images[0], mode=3)
    folder = tmp_path / "out"
    folder.mkdir()
    saved = save_one(qtbot, window, folder, monkeypatch)
    assert saved.name == "photo0_rbqe.exit3.png"  # as Save all and --exit all name it
    noted = OutputNotes().get(saved)
    assert noted is not None and noted.result == "exit3" and noted.stands_for(saved)
    every = BatchOptions(out_dir=folder, mode="all", suffix="_rbqe")
    (item,) = run_batch(tiny_enhancer(), [images[0]], every).items
    assert item.status == "ok" and OutputNotes().get(saved).size == saved.stat().st_size
    assert item.outputs["3"] == saved  # taken for its exit 3, not made again

    own = folder / "mine.png"  # a name of the user's own: a forced exit 3
    monkeypatch.setattr(window, "_save_dialog", lambda suggested: str(own))
    with qtbot.waitSignal(window.session.saved, timeout=TIMEOUT):
        window.acts.save.trigger()
    assert OutputNotes().get(own).result == "3"


def test_what_a_saved_exit_holds(tmp_path) -> None:
    """The names the log gives: a per-tile blend is the auto result; an exit read back
    from a batch's output holds what that output's note says, if it was lossless."""
    src = tmp_path / "photo.jpg"
    src.write_bytes(b"jpeg")
    result = SimpleNamespace(tile_exits=None, chosen=3)
    plain = ViewData(src, None, None, None, result=result)  # type: ignore[arg-type]
    notes = OutputNotes()
    assert result_held(plain, 3, tmp_path / "photo_rbqe.exit3.png", notes) == "exit3"
    assert result_held(plain, 3, tmp_path / "photo_rbqe_exit3.png", notes) == "3"
    assert result_held(plain, 2, tmp_path / "photo.exit3.png", notes) == "2"
    tiled = ViewData(src, None, None, None,  # type: ignore[arg-type]
                     result=SimpleNamespace(tile_exits=object(), chosen=3))
    assert result_held(tiled, 3, tmp_path / "photo.exit3.png", notes) == "auto"
    assert result_held(tiled, 5, tmp_path / "photo.exit5.png", notes) == "exit5"

    read = {}
    for name, noted in (("a.png", "auto"), ("b.png", "exit3"), ("c.jpg", "3"), ("d.png", None)):
        read[name] = tmp_path / "batch" / name
        read[name].parent.mkdir(exist_ok=True)
        read[name].write_bytes(b"pixels")
        if noted is not None:
            record_output(read[name], src, noted, size=6)
    for name, held in (("a.png", "auto"), ("b.png", "exit3"), ("c.jpg", None), ("d.png", None)):
        back = ViewData(src, None, None, None, result=result,  # type: ignore[arg-type]
                        saved={3: read[name]})
        assert result_held(back, 3, tmp_path / "photo.exit3.png", OutputNotes()) == held


def test_a_failed_save_takes_its_note_back(qtbot, window, images, tmp_path,
                                           monkeypatch) -> None:
    import rbqe_studio.worker as worker
    from rbqe.errors import ImageWriteError

    view(qtbot, window, images[0])
    folder = tmp_path / "out"
    folder.mkdir()
    real = worker.save_like

    def failing(path, *args, **kwargs):
        if Path(path).name.endswith(".exit3.png"):
            raise ImageWriteError(path, "disk says no")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(worker, "save_like", failing)
    monkeypatch.setattr(window, "_folder_dialog", lambda *a: str(folder))
    assert "disk says no" in save_fails(qtbot, window)
    notes = OutputNotes()
    assert notes.get(folder / "photo0_rbqe.exit3.png") is None  # taken back
    assert notes.get(folder / "photo0_rbqe.exit2.png").result == "exit2"  # written before
    # A user's file that appears there later is not taken for rbqe's.
    (folder / "photo0_rbqe.exit3.png").write_bytes(b"mine")
    (item,) = run_batch(tiny_enhancer(), [images[0]],
                        BatchOptions(out_dir=folder, mode="all", suffix="_rbqe")).items
    assert item.status == "failed" and "not made by rbqe" in str(item.error)


def test_a_log_that_cannot_be_written_does_not_stop_a_save(qtbot, window, images, tmp_path,
                                                           monkeypatch) -> None:
    """The save matters more than its note: where the folder's log cannot be written
    (here a folder stands at its name), Save all still writes every exit, unnoted (a
    later batch would call them someone else's, which is safe)."""
    from rbqe.io import OUTPUT_LOG

    view(qtbot, window, images[0])
    folder = tmp_path / "out"
    (folder / OUTPUT_LOG).mkdir(parents=True)
    saved = save_all(qtbot, window, folder, monkeypatch)
    assert [p.name for p in saved] == [f"photo0_rbqe.exit{k}.png" for k in range(1, 6)]
    assert all(p.stat().st_size > 0 for p in saved)


def test_exits_save_all_computed_are_shown(qtbot, window, images, tmp_path,
                                           monkeypatch) -> None:
    """Save all computed exit 5 to write it, but its card kept saying "not needed (auto
    stopped earlier)" and Compute all stayed greyed out: the exit could not be seen."""
    view(qtbot, window, images[0], mode="auto")
    result = window.session.view.result
    assert len(result.exits) < 5  # auto stopped early
    folder = tmp_path / "out"
    folder.mkdir()
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        save_all(qtbot, window, folder, monkeypatch)
    assert len(window.session.view.result.exits) == 5
    cards = window.compare.strip.cards
    assert [c.data.state for c in cards[1:]] == ["ready"] * 5
    assert not window.acts.compute_all.isEnabled()


def test_a_save_notes_the_source_as_it_was_loaded(qtbot, window, images, tmp_path,
                                                  monkeypatch) -> None:
    """The app's saves noted no ``source_id``: a later batch took them for done whatever
    became of the photo. Now Save (and Save all) note the photo as it was read."""
    view(qtbot, window, images[0], mode=3)
    folder = tmp_path / "out"
    folder.mkdir()
    saved = save_one(qtbot, window, folder, monkeypatch)
    noted = OutputNotes().get(saved)
    assert noted is not None and noted.source_id is not None
    assert noted.source_id == source_identity(images[0])  # unchanged since it was loaded


def test_a_photo_replaced_after_it_was_loaded_is_enhanced_again_not_saved(
        qtbot, window, images, tmp_path, monkeypatch) -> None:
    """Replaced between the load and Save all, the photo's exits (made from it as it
    was) were saved under its name, noted as made from the old file. Now nothing is
    saved: it is enhanced again, and saved from the new file; a later batch into that
    folder then takes those outputs for done."""
    src = images[0]
    view(qtbot, window, src)
    write_jpeg(src, size=(80, 60), seed=7)  # another photo at its name
    now = source_identity(src)
    folder = tmp_path / "out"
    folder.mkdir()
    monkeypatch.setattr(window, "_folder_dialog", lambda *a: str(folder))
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT) as again:
        window.acts.save_all.trigger()
        assert window.status.text().startswith(f"Nothing saved: {src.name} changed on disk")
    assert list(folder.iterdir()) == []
    assert again.args[0].loaded.pixels.shape[:2] == (60, 80)  # the new photo
    saved = save_all(qtbot, window, folder, monkeypatch)
    assert len(saved) == 5
    notes = OutputNotes()
    assert all(notes.get(p).source_id == now for p in saved)
    before = {p: p.read_bytes() for p in saved}
    options = BatchOptions(out_dir=folder, mode="all", suffix="_rbqe")
    (item,) = run_batch(tiny_enhancer(), [src], options).items
    assert item.status == "skipped"  # rbqe's outputs of the photo as it is: done
    assert {p: p.read_bytes() for p in saved} == before


def test_a_batch_result_of_a_photo_replaced_since_is_enhanced_again_not_shown(
        qtbot, window, tmp_path, jpeg, monkeypatch) -> None:
    """An exit opened from a batch's output was made from the photo as that batch read
    it: after the photo was replaced it was shown beside the new photo and saved under its
    name (noted as the batch read it). Now the photo as it is is enhanced instead, and
    saved and noted as it is."""
    src, out, again = tmp_path / "src", tmp_path / "out", tmp_path / "again"
    photo = jpeg(src / "one.jpg", seed=3)
    panel = window.batch
    panel.input.set_text(str(src))
    panel.output.set_text(str(out))
    window.settings.exit_mode = "2"
    assert panel.run()
    qtbot.waitUntil(lambda: panel.outcome is not None, timeout=TIMEOUT)
    batch_read = OutputNotes().get(out / "one_rbqe.png").source_id
    assert batch_read == source_identity(photo)
    write_jpeg(photo, seed=7)  # replaced after the batch (by one of its size)
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT) as blocker:
        panel.open_button.click()
    assert blocker.args[0].saved == {}  # computed from the photo as it is, not read back
    again.mkdir()
    saved = save_one(qtbot, window, again, monkeypatch)
    assert OutputNotes().get(saved).source_id == source_identity(photo) != batch_read


def test_a_batch_with_other_weights_does_not_take_the_apps_saves_for_done(
        qtbot, window, images, tmp_path, monkeypatch) -> None:
    """The app's notes said nothing of the weights, so a CLI run with new weights into
    the folder reported the old network's saves as done."""
    from rbqe.engine import Enhancer
    from tests.helpers import tiny_net

    view(qtbot, window, images[0])
    folder = tmp_path / "out"
    folder.mkdir()
    save_all(qtbot, window, folder, monkeypatch)
    options = BatchOptions(out_dir=folder, mode="all", suffix="_rbqe")
    (item,) = run_batch(tiny_enhancer(), [images[0]], options).items
    assert item.status == "skipped", item.error  # the same network: done
    other = Enhancer(net=tiny_net(1, seed=1), device="cpu", tile=0)
    (item,) = run_batch(other, [images[0]], options).items
    assert item.status == "failed" and "was made by other weights" in str(item.error)
