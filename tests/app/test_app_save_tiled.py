"""Saving a tiled picture's auto result (a blend of its tiles' own exits) notes it as the
batch's auto result, made under the weights' default rule: a later batch into the folder
with the same settings finds it done."""

from __future__ import annotations

import pytest

from rbqe.batch import BatchOptions, run_batch, weights_identity
from rbqe.io import OutputNotes
from tests.helpers import tiny_enhancer, write_jpeg

TIMEOUT = 120_000


@pytest.fixture
def factory():
    """The tiny model, tiling at 128 px, with per-tile exits (shared is the default)."""
    return lambda *_spec: tiny_enhancer(tile=128, tile_exits="per-tile")


def test_a_per_tile_auto_result_is_saved_as_the_batchs_auto(qtbot, window, tmp_path,
                                                           monkeypatch) -> None:
    photo = write_jpeg(tmp_path / "in" / "wide.jpg", size=(300, 200), seed=5)
    with qtbot.waitSignal(window.session.view_finished, timeout=TIMEOUT) as blocker:
        window.open_paths([photo])
    result = blocker.args[0].result
    assert result.tiled and result.tile_exits is not None
    folder = tmp_path / "out"
    folder.mkdir()
    target = folder / "wide.png"  # the name a batch gives its auto result
    monkeypatch.setattr(window, "_save_dialog", lambda suggested: str(target))
    with qtbot.waitSignal(window.session.saved, timeout=TIMEOUT):
        window.acts.save.trigger()
    noted = OutputNotes().get(target)
    assert noted is not None and noted.result == "auto" and noted.stands_for(target)
    batch = tiny_enhancer(tile=128, tile_exits="per-tile")
    assert noted.made == {"metadata": "keep", "rule": "the weights' default",
                          "weights": weights_identity(batch)}
    (item,) = run_batch(batch, [photo], BatchOptions(out_dir=folder)).items
    assert item.status == "skipped", item.error
