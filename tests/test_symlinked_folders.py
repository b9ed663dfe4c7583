"""``-r`` follows symlinked sub-folders, as ``find -L`` does: an archive that links in
folders from other disks lost those subtrees without a word (exit status 0). Each real
folder is listed once: a link back to a folder it is in (a loop), or a second way to a
folder already listed, is skipped with a warning naming the link."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest
from PIL import Image

from rbqe.batch import BatchOptions, plan_batch, run_batch
from rbqe.engine import Enhancer
from tests.helpers import write_jpeg

pytestmark = pytest.mark.skipif(not hasattr(os, "symlink") or sys.platform == "win32",
                                reason="symlinks")


def _image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8)).save(path)
    return path


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """in/{top.jpg, real/r.jpg} and in/linked -> ../disk2/photos/{e.jpg, deep/d.jpg},
    with links that loop (in/real/up -> .., in/real/all -> tmp_path), a second link to
    the linked folder and one to the real one, and a hidden link."""
    src, ext = tmp_path / "in", tmp_path / "disk2" / "photos"
    for f in (src / "top.jpg", src / "real" / "r.jpg", ext / "e.jpg", ext / "deep" / "d.jpg"):
        _image(f)
    (src / "linked").symlink_to(Path("..") / "disk2" / "photos", target_is_directory=True)
    (src / "real" / "up").symlink_to("..", target_is_directory=True)
    (src / "real" / "all").symlink_to(tmp_path, target_is_directory=True)
    (src / "same_disk").symlink_to(ext, target_is_directory=True)
    (src / "again").symlink_to("real", target_is_directory=True)  # sorts before real
    (src / ".hidden").symlink_to(ext, target_is_directory=True)
    return src


def test_r_follows_symlinked_folders_each_real_folder_once(archive: Path, caplog) -> None:
    from rbqe.io import list_images

    with caplog.at_level(logging.WARNING, logger="rbqe.io"):
        listed = list_images([archive], recursive=True)
    assert [(f.relative_to(archive).as_posix(), root) for f, root in listed] == [
        ("linked/deep/d.jpg", archive), ("linked/e.jpg", archive),
        ("real/r.jpg", archive), ("top.jpg", archive)]
    tmp = archive.parent
    assert sorted(r.getMessage() for r in caplog.records) == [
        f"skipping {archive / 'again'}: a link to {archive / 'real'}, already listed",
        f"skipping {archive / 'real' / 'all'}: a link back to {os.path.realpath(tmp)}, "
        "which holds it (a loop)",
        f"skipping {archive / 'real' / 'up'}: a link back to {archive}, which holds it "
        "(a loop)",
        f"skipping {archive / 'same_disk'}: a link to {archive / 'linked'}, already listed",
    ]
    # Without -r no sub-folder is entered, linked or not; excluded ones stay out.
    assert [f.name for f, _ in list_images([archive])] == ["top.jpg"]
    assert [f.name for f, _ in list_images([archive], recursive=True,
                                           exclude=[tmp / "disk2" / "photos"])] == [
        "r.jpg", "top.jpg"]


def test_a_link_to_a_folder_not_mounted_is_said_to_be_skipped(tmp_path: Path, caplog
                                                              ) -> None:
    """A linked card whose drive is not mounted: os.walk lists the link as a file, with no
    image suffix, and -r left its photos out without a word (exit status 0)."""
    from rbqe.io import list_images

    src = tmp_path / "in"
    _image(src / "top.jpg")
    (src / "card").symlink_to(tmp_path / "media" / "DCIM", target_is_directory=True)
    (src / "lost.jpg").symlink_to(tmp_path / "media" / "gone.jpg")  # listed: it fails
    (src / ".cache").symlink_to(tmp_path / "nowhere")  # hidden: left out, as ever
    with caplog.at_level(logging.WARNING, logger="rbqe.io"):
        listed = list_images([src], recursive=True)
    assert [f.name for f, _ in listed] == ["lost.jpg", "top.jpg"]
    assert [r.getMessage() for r in caplog.records] == [
        f"skipping {src / 'card'}: a link to {tmp_path / 'media' / 'DCIM'}, which does not "
        "exist (not mounted?)"]
    caplog.clear()  # without -r no sub-folder is entered: nothing is left out unsaid
    with caplog.at_level(logging.WARNING, logger="rbqe.io"):
        assert [f.name for f, _ in list_images([src])] == ["lost.jpg", "top.jpg"]
    assert caplog.records == []


def test_outputs_of_a_linked_folder_go_under_the_links_name(archive: Path, tmp_path) -> None:
    out = tmp_path / "out"
    plan = plan_batch([archive], BatchOptions(out_dir=out, recursive=True))
    targets = {f.relative_to(archive).as_posix(): t[None].relative_to(out).as_posix()
               for f, t in plan.targets.items()}
    assert targets == {"linked/deep/d.jpg": "linked/deep/d.png", "linked/e.jpg": "linked/e.png",
                       "real/r.jpg": "real/r.png", "top.jpg": "top.png"}


@pytest.mark.usefixtures("one_thread")
def test_a_batch_into_its_input_leaves_its_outputs_under_a_link_out(weights, tmp_path) -> None:
    # The output folder inside the input: a re-run must not take the outputs made from a
    # linked folder's photos for inputs (they are found again through the link).
    src, ext = tmp_path / "in", tmp_path / "disk2"
    write_jpeg(src / "a.jpg", (32, 24))
    write_jpeg(ext / "b.jpg", (32, 24), seed=1)
    (src / "linked").symlink_to(ext, target_is_directory=True)
    enhancer = Enhancer(weights, device="cpu")
    options = BatchOptions(out_dir=src / "enhanced", recursive=True)
    first = run_batch(enhancer, [src], options)
    assert [(i.input.relative_to(src).as_posix(), i.status) for i in first.items] == [
        ("a.jpg", "ok"), ("linked/b.jpg", "ok")]
    assert (src / "enhanced" / "linked" / "b.png").is_file()
    again = run_batch(enhancer, [src], options)
    assert [i.status for i in again.items] == ["skipped", "skipped"]
