"""The network's fixed numbers and names, importable without torch: how many exits it has,
the multiple its input sides must be, and the ways a tiled image may choose its exits
(:mod:`rbqe.model` builds the network from them; the CLI's parser, the exit-mode parser and
the app's settings read them without loading torch, so that ``rbqe --help`` is instant)."""

NUM_EXITS = 5
MULTIPLE = 2**NUM_EXITS  # five stride-2 downsamplings
TILE_EXITS = ("per-tile", "shared")  # how auto chooses the exit of a tiled image
# Shared since 2026-12-07: with the shipped weights per-tile exits gained 0.000-0.007 dB
# over shared on 12 MP mosaics of val photos at QF 10-90 (less than the same MACs spent
# on a later exit for every tile) for 3-10 % more MACs and 10-17 % more time, and chose
# the same exits on collages of regions at different QFs
# (docs/bench/tile_exits_5684k_default.txt).
DEFAULT_TILE_EXITS = "shared"
