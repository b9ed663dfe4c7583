"""The network's fixed numbers and names, importable without torch: how many exits it has,
the multiple its input sides must be, and the ways a tiled image may choose its exits
(:mod:`rbqe.model` builds the network from them; the CLI's parser, the exit-mode parser and
the app's settings read them without loading torch, so that ``rbqe --help`` is instant)."""

NUM_EXITS = 5
MULTIPLE = 2**NUM_EXITS  # five stride-2 downsamplings
TILE_EXITS = ("per-tile", "shared")  # how auto chooses the exit of a tiled image
DEFAULT_TILE_EXITS = "per-tile"
