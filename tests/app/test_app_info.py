"""The Info panel's words for a tiled picture: how many tiles, and with per-tile exits,
how many took each exit."""

from __future__ import annotations

import numpy as np

from rbqe_studio.info_panel import tiling_text
from tests.helpers import jpeg_pixels, tiny_enhancer


def test_tiling_text_counts_the_tiles_at_each_exit() -> None:
    img = jpeg_pixels(200, 260, seed=4).astype(np.float32) / 255
    per_tile = tiny_enhancer(tile=128).enhance(img)  # per-tile: the default
    assert per_tile.tile_exits is not None
    counts = {k: n for k, n in per_tile.tile_exits.histogram.items() if n}
    assert tiling_text(per_tile) == (f"{per_tile.tiles} tiles, each to its own exit: "
                                     + ", ".join(f"{n} at exit {k}" for k, n in counts.items()))
    shared = tiny_enhancer(tile=128, tile_exits="shared").enhance(img)
    assert tiling_text(shared) == f"{shared.tiles} tiles"
    assert tiling_text(tiny_enhancer().enhance(img[:64, :64])) == "whole image"


def test_a_tiled_pictures_first_stage_says_it_holds_the_samples(qtbot, window, images) -> None:
    # Its sample walk is counted in the first stage: exit 1 read as the costliest stage.
    with qtbot.waitSignal(window.session.view_finished, timeout=120_000):
        window.open_paths([images[0]])
    view = window.session.view
    head = window.info.table.verticalHeaderItem(0)
    assert not view.result.tiled and head.text() == "Exit 1"
    view.result = tiny_enhancer(tile=128).enhance(
        jpeg_pixels(200, 260, seed=4).astype(np.float32) / 255, "all")
    window.info.show_result(view)
    assert head.text() == "Exit 1 + samples" and "sample tiles" in head.toolTip()
