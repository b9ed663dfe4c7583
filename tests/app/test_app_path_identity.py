"""The app's queue and result cache use the library's one path identity rule
(:func:`rbqe.io.path_key`): the queue and the batch lister agree on links and case."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from rbqe.io import list_images, path_key
from rbqe_studio.state import Queue


def test_queue_and_batch_lister_agree_on_links_and_case(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    photo = folder / "photo.png"
    Image.new("RGB", (8, 8)).save(photo)
    (tmp_path / "link.png").symlink_to(photo)  # the same file under another name
    other = folder / "PHOTO.png"
    if path_key(other) != path_key(photo):  # a case-sensitive file system: two files
        Image.new("RGB", (8, 8), "red").save(other)
    named = [photo, tmp_path / "link.png", other]
    queue = Queue()
    queue.add(named)
    listed = list_images(named)
    queued_files = [i.path for i in queue.items]
    assert {path_key(p) for p in queued_files} == {path_key(f) for f, _ in listed}
    assert len(queued_files) == len(listed) == len({path_key(p) for p in (photo, other)})
    assert queue.get(tmp_path / "link.png") is queue.get(photo)
