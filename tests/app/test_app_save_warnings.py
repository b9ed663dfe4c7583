"""What a saved file could not keep is said in the window, once: the app's saves logged
the library's warnings ("JPEG cannot store transparency; the transparent parts are filled
with white") but showed only "Saved … · Show in folder", so a user who saved a transparent
photo as JPEG, or captions to WebP, lost them unawares. The batch's report already said so."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import photo

TIMEOUT = 120_000
ALPHA = "JPEG cannot store transparency; the transparent parts are filled with white"


def transparent(path: Path) -> Path:
    """An RGBA PNG with a see-through corner."""
    rgba = np.dstack([photo(48, 64, seed=5), np.full((48, 64), 255, np.uint8)])
    rgba[:16, :16, 3] = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgba, "RGBA").save(path)
    return path


def view(qtbot, window, path: Path, mode: object = 3) -> None:
    window.session.mode_override = mode
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT):
        window.open_paths([path])


def save_as(qtbot, window, target: Path, monkeypatch) -> tuple[list[Path], list[str]]:
    """File > Save result under the name ``target`` (its suffix picks the format)."""
    monkeypatch.setattr(window, "_save_dialog", lambda suggested: str(target))
    with qtbot.waitSignal(window.session.saved, timeout=TIMEOUT) as blocker:
        window.acts.save.trigger()
    return blocker.args[0], blocker.args[1]


def shown(window) -> str:
    return re.sub("<[^>]+>", "", window.status.text())  # what is read, less the markup


def logged(caplog, words: str) -> int:
    return sum(words in r.getMessage() for r in caplog.records)


def test_a_transparent_photo_saved_as_jpeg_says_the_alpha_is_dropped(
        qtbot, window, tmp_path, monkeypatch, caplog) -> None:
    caplog.set_level(logging.INFO)
    view(qtbot, window, transparent(tmp_path / "in" / "alpha.png"))
    target = tmp_path / "out" / "alpha.jpg"
    paths, warnings = save_as(qtbot, window, target, monkeypatch)
    assert paths == [target] and warnings == [ALPHA]  # the file's name is not repeated
    text = shown(window)
    assert text.startswith("Saved alpha.jpg in ") and f"Show in folder · ⚠ {ALPHA}" in text
    assert window.status.styleSheet() == ""  # a note, not an error
    assert window.status.toolTip().splitlines() == [str(target), f"⚠ {ALPHA}"]
    assert logged(caplog, ALPHA) == 1  # the library's line; the window logs none again


def test_a_plain_save_has_no_note(qtbot, window, images, tmp_path, monkeypatch) -> None:
    view(qtbot, window, images[0])
    target = tmp_path / "out" / "photo0.png"
    paths, warnings = save_as(qtbot, window, target, monkeypatch)
    assert paths == [target] and warnings == []
    assert shown(window).endswith("Show in folder") and "⚠" not in shown(window)
    assert window.status.toolTip() == str(target)


def test_save_all_says_the_five_files_one_loss_once(qtbot, window, tmp_path, monkeypatch,
                                                    caplog) -> None:
    """From a view of exits 1-3: Save all computes 4 and 5, and the view's line that
    then says so ("exit 3 of 5") must not replace the save's."""
    caplog.set_level(logging.INFO)
    window.settings.output_format = "jpeg"
    view(qtbot, window, transparent(tmp_path / "in" / "alpha.png"), mode=3)
    folder = tmp_path / "out"
    folder.mkdir()
    monkeypatch.setattr(window, "_folder_dialog", lambda *a: str(folder))
    with qtbot.waitSignal(window.session.saved, timeout=TIMEOUT) as blocker:
        window.acts.save_all.trigger()
    paths, warnings = blocker.args
    assert [p.name for p in paths] == [f"alpha_rbqe.exit{k}.jpg" for k in range(1, 6)]
    assert warnings == [ALPHA]
    text, tip = shown(window), window.status.toolTip()
    assert text.startswith("Saved 5 files in ") and text.count(ALPHA) == 1
    assert tip.splitlines() == [*map(str, paths), f"⚠ {ALPHA}"]
    assert logged(caplog, ALPHA) == 5  # once per file, by the library only


def test_the_save_dialog_offers_tiff_and_bmp_and_writes_what_is_chosen(
        qtbot, window, images, tmp_path, monkeypatch) -> None:
    """It offered PNG, JPEG and WebP only, though the writer (and the README's metadata
    table) has TIFF and BMP for the app's saves."""
    from types import SimpleNamespace

    from PIL import Image as PILImage

    from rbqe.io import OutputNotes
    from rbqe_studio import main_window

    asked: list[str] = []
    answers = iter([(tmp_path / "out" / "photo0.tif", "TIFF (*.tif *.tiff)"),
                    (tmp_path / "out" / "photo0", "BMP (*.bmp)")])  # no suffix typed

    def dialog(parent, title, suggested, filters, *_options):
        asked.append(filters)
        path, chosen = next(answers)
        return str(path), chosen

    monkeypatch.setattr(main_window, "QFileDialog", SimpleNamespace(getSaveFileName=dialog))
    view(qtbot, window, images[0])
    out = tmp_path / "out"
    out.mkdir()
    for name, fmt in (("photo0.tif", "TIFF"), ("photo0.bmp", "BMP")):
        with qtbot.waitSignal(window.session.saved, timeout=TIMEOUT) as blocker:
            window.acts.save.trigger()
        assert blocker.args[0] == [out / name]
        with PILImage.open(out / name) as im:
            assert im.format == fmt
        noted = OutputNotes().get(out / name)  # noted like the other saves
        assert noted is not None and noted.result == "3" and noted.stands_for(out / name)
        assert shown(window).startswith(f"Saved {name} in ")
        # PNG first (the type the dialog starts on), TIFF and BMP offered
        assert asked[-1].split(";;") == ["PNG (*.png)", "JPEG (*.jpg *.jpeg)", "WebP (*.webp)",
                                         "TIFF (*.tif *.tiff)", "BMP (*.bmp)", "All files (*)"]


def test_save_asks_before_replacing_a_file_named_by_the_suffix_it_added(
        qtbot, window, images, tmp_path, monkeypatch) -> None:
    """"holiday" typed with JPEG chosen became holiday.jpg after the dialog's own
    replace check (of "holiday", which did not exist): the user's holiday.jpg was
    replaced unasked."""
    from types import SimpleNamespace

    from rbqe_studio import main_window

    out = tmp_path / "out"
    out.mkdir()
    theirs = out / "holiday.jpg"
    theirs.write_bytes(b"the user's own photo")
    monkeypatch.setattr(main_window, "QFileDialog", SimpleNamespace(
        getSaveFileName=lambda *a: (str(out / "holiday"), "JPEG (*.jpg *.jpeg)")))
    asked: list[Path] = []
    answers = iter([False, True])

    def confirm(path: Path) -> bool:
        asked.append(path)
        return next(answers)

    monkeypatch.setattr(window, "_confirm_overwrite", confirm)
    view(qtbot, window, images[0])
    window.acts.save.trigger()  # "keep it"
    assert asked == [theirs] and theirs.read_bytes() == b"the user's own photo"
    assert shown(window) == "Nothing saved: holiday.jpg kept"
    with qtbot.waitSignal(window.session.saved, timeout=TIMEOUT) as blocker:
        window.acts.save.trigger()  # "replace it"
    assert asked == [theirs, theirs] and blocker.args[0] == [theirs]
    with Image.open(theirs) as im:
        assert im.format == "JPEG"


def test_save_names_ending_in_a_dot_or_naming_a_folder(qtbot, window, images, tmp_path,
                                                       monkeypatch) -> None:
    """"holiday." was saved as "holiday..png"; "dir" with a folder dir.png there asked
    "Replace file?" and then failed as a directory."""
    from types import SimpleNamespace

    from rbqe_studio import main_window

    out = tmp_path / "out"
    (out / "dir.png").mkdir(parents=True)
    answers = iter([str(out / "holiday."), str(out / "dir"), str(out / "trip.png."),
                    str(out / "...")])
    monkeypatch.setattr(main_window, "QFileDialog", SimpleNamespace(
        getSaveFileName=lambda *a: (next(answers), "PNG (*.png)")))
    monkeypatch.setattr(window, "_confirm_overwrite",
                        lambda path: pytest.fail(f"asked to replace {path}"))
    view(qtbot, window, images[0])
    with qtbot.waitSignal(window.session.saved, timeout=TIMEOUT) as blocker:
        window.acts.save.trigger()
    assert blocker.args[0] == [out / "holiday.png"]
    window.acts.save.trigger()
    assert shown(window) == "Nothing saved: dir.png is a folder"
    with qtbot.waitSignal(window.session.saved, timeout=TIMEOUT) as blocker:
        window.acts.save.trigger()
    assert blocker.args[0] == [out / "trip.png"]  # it was trip.png.png
    window.acts.save.trigger()
    assert shown(window) == "Nothing saved: the file needs a name"  # it was the hidden .png
    assert sorted(p.name for p in out.iterdir()) == [".rbqe-outputs.jsonl", "dir.png",
                                                     "holiday.png", "trip.png"]
