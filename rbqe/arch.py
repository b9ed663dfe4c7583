"""The network's fixed numbers, importable without torch: how many exits it has and the
multiple its input sides must be (:mod:`rbqe.model` builds the network from them; the
exit-mode parser and the app's settings read them without loading torch)."""

NUM_EXITS = 5
MULTIPLE = 2**NUM_EXITS  # five stride-2 downsamplings
