"""Re-count the MAC shares of docs/bench/tile_exits.txt with the corrected MAC count.

That run used ``gmacs_per_exit`` as it was then: forward hooks, which missed the decoder's
gated separable conv (a batched matmul, no module call), so exits 1-4 came out at
62/78/86/93 % of exit 5 instead of 42/57/70/84 %. The tiles' exits do not depend on the
count, and every tile of those grids pads to the same size, so each row's GMACs follow
from its exit histogram, the grid and the sample tiles alone. This script checks that the
old count reproduces every printed figure, then prints the same rows with the new count.

    PYTHONPATH=. python docs/bench/tile_exits_recount.py docs/bench/tile_exits.txt
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from rbqe.arch import NUM_EXITS
from rbqe.model import gmacs_per_exit
from rbqe.tiling import padded_box, sample_boxes, tiles
from rbqe.weights import default_weights_path, load_weights
from tests.helpers import hooked_gmacs  # the count as it was: forward hooks

HEADER = re.compile(r"^(\d+)x(\d+) mosaics")
ROW = re.compile(r"^QF (\S+) mosaic (\d+) floor (\S+): (\d+) tiles, shared exit (\d), "
                 r"per-tile exits \[([^\]]*)\]")
MACS = re.compile(r"GMACs per-tile (\d+) = ([\d.]+)% of exit 5 \((\d+)\), [\d.]+% of shared "
                  r"\((\d+), ([\d.]+)% of exit 5\)")


def row_gmacs(unit: list[float], h: int, w: int, hist: dict[int, int], shared: int) -> dict:
    """Per-tile, shared and exit-5 GMACs of one picture, as rbqe.tiled counts them."""
    def cost(box, k):
        ph, pw = padded_box(box)
        return unit[k - 1] * ph * pw / (32 * 32)

    boxes = [b for b, _, _ in tiles(h, w, 1024)]
    samples = sample_boxes(boxes, 512)  # the samples' side when these rows were measured
    assert len({padded_box(b) for b in boxes}) == 1, "tiles of unequal size: histogram not enough"
    box = boxes[0]
    # Per-tile: the samples walk to exit 5; shared: to the decided exit only.
    per_tile = sum(n * cost(box, k) for k, n in hist.items()) + sum(cost(s, 5) for s in samples)
    shared_m = len(boxes) * cost(box, shared) + sum(cost(s, shared) for s in samples)
    exit5 = len(boxes) * cost(box, 5) + sum(cost(s, 5) for s in samples)
    return {"per_tile": per_tile, "shared": shared_m, "exit5": exit5}


def main() -> None:
    text = Path(sys.argv[1]).read_text().splitlines()
    net, _ = load_weights(default_weights_path())
    old = hooked_gmacs(net, 32)
    new = gmacs_per_exit(net, 32, 32)
    print("exit shares of exit 5, old count:", " ".join(f"{g / old[-1]:.3f}" for g in old))
    print("exit shares of exit 5, new count:", " ".join(f"{g / new[-1]:.3f}" for g in new))
    size, checked = None, 0
    print(f"\n{'picture':<34} {'exits 1-5':<12} {'per-tile/exit5':>14} {'shared/exit5':>12} "
          f"{'per-tile/shared':>15}   (old count: per-tile, shared)")
    for i, line in enumerate(text):
        if m := HEADER.match(line):
            size = int(m[2]), int(m[1])
            print(f"-- {m[1]}x{m[2]}")
        if not (m := ROW.match(line)):
            continue
        hist = {int(k): int(n) for k, n in (p.split(":") for p in m[6].split())}
        shared = int(m[5])
        printed = MACS.search(text[i + 1])
        was = row_gmacs(old, *size, hist, shared)
        # The old count must reproduce what the run printed (rounded to whole GMACs).
        assert abs(was["per_tile"] - int(printed[1])) <= 1, (line, was)
        assert abs(was["exit5"] - int(printed[3])) <= 1, (line, was)
        assert abs(was["shared"] - int(printed[4])) <= 1, (line, was)
        checked += 1
        now = row_gmacs(new, *size, hist, shared)
        label = f"QF {m[1]} mosaic {m[2]} floor {m[3]}"
        counts = "/".join(str(hist.get(k, 0)) for k in range(1, NUM_EXITS + 1))
        print(f"{label:<34} {counts:<12} {now['per_tile'] / now['exit5']:>13.1%} "
              f"{now['shared'] / now['exit5']:>12.1%} {now['per_tile'] / now['shared']:>15.1%}"
              f"   ({printed[2]}%, {printed[5]}%)")
    print(f"\n{checked} rows; the old count reproduced every printed GMACs figure to 1 GMAC.")


if __name__ == "__main__":
    main()
