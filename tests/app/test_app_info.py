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
    shared = tiny_enhancer(tile=128, tile_exits="shared").enhance(img, 2)
    assert tiling_text(shared) == f"{shared.tiles} tiles"
    assert tiling_text(tiny_enhancer().enhance(img[:64, :64])) == "whole image"


def test_a_tiled_pictures_first_stage_says_it_holds_the_samples() -> None:
    # Its sample walk is counted in exit 1's stage: exit 1 read as the costliest stage.
    img = jpeg_pixels(200, 260, seed=4).astype(np.float32) / 255
    every = tiny_enhancer(tile=128, tile_exits="shared").enhance(img, "all")
    assert tiling_text(every) == f"{every.tiles} tiles; exit 1's stage holds the sample tiles' walk"
    forced = tiny_enhancer(tile=128, tile_exits="shared").enhance(img, 3)
    assert tiling_text(forced) == f"{forced.tiles} tiles"
