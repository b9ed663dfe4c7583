"""Tile geometry: how a large image is cut into overlapping tiles, how the tiles blend,
which of them sample the exits, and how sides are padded to the network's ``MULTIPLE``.

Pure geometry: no network, no device. The tiled path of :mod:`rbqe.engine` runs it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from rbqe.arch import MULTIPLE

Box = tuple[int, int, int, int]  # a tile: y0, y1, x0, x1
Tile = tuple[Box, np.ndarray, np.ndarray]  # a box and its row and column blend weights
DEFAULT_TILE = 1024  # pixels per side; a tiled image peaks at 1-2.2 GB on the CPU (bf16)
# The OpenVINO backend's default instead: its dynamic-shape stages keep their intermediate
# tensors, so one run through all five exits peaked at 10.9 GB (f32) / 7.9 GB (bf16) on a
# 1024x1024 tile and 3.0 / 2.2 GB on a 512x512 one (torch bf16: 0.8 GB at 1024); a whole
# `rbqe enhance` of a 1024x1024 JPEG: 11.1 / 8.1 GB as one tile, 3.7 / 2.6 GB tiled at 512,
# torch bf16 1.1 GB (docs/bench/amx/memory_1024.txt).
OPENVINO_TILE = 512
# Under the default tile, the CPU's fast path in bf16 runs an image of up to this many
# (padded) pixels whole (in f32, whose maps are twice the size, one tile's): a few
# tiles' overlaps and their sample walk cost more than whole maps do under auto, and a
# whole image shows each exit as it comes and continues to later ones from its kept
# state (the app). Measured on the 2-core Xeon, bf16, 5.68M weights, a process per run
# (docs/bench/whole_pixels.txt, after the samples were sized to the picture): 1600x1200
# under auto 1.1-1.2x faster whole (1.12-1.48 s against 1.34-1.64), at exit 5 0.9x, peak
# RSS 1.5-2.0 GB against 1.0; 1920x1280 1.0-1.2x under auto for 1.7-2.4 GB; from
# 2048x1536 whole is slower at exit 5, at 3 GB. So 2 x 1024^2 pixels (2.1 MP: 1920x1080,
# padded 1920x1088, runs whole), whose 1.9-2.0 GB at exit 5 (1600x1200) is about what a
# 24 MP photo peaks at tiled (1.96-2.21 GB); 1920x1280 whole needs 2.4.
WHOLE_PIXELS = 2 * DEFAULT_TILE * DEFAULT_TILE
TILE_OVERLAP = 64
SAMPLE_TILES = 4
# Sample tiles walk the exits side by side, so all their network states are alive at
# once: four full 1024-pixel tiles held ~4.4 GB at exit 5. Each sample is therefore a
# centred crop of at most this side (four 512x512 crops: ~1 GB at exit 5).
SAMPLE_SIDE = 512
# The samples' walk is work beside the tiles': four 512-pixel crops are 8 % of a 12 MP
# picture's pixels but 43 % of a 2.5 MP one's. They are sized to about this share of the
# picture, at least MIN_SAMPLE_SIDE a side (the gate's features then still come from
# more pixels than the 481x321 photos it was fitted on). On 24 val mosaics of 2.5-3.8 MP
# at QF 10-90 under auto: 0.85x the time (0.77-1.05 past the first run's cold start),
# PSNR +0.003 dB on average, the worst -0.004 (docs/bench/sample_side.txt); a 12 MP
# picture keeps 512.
SAMPLE_SHARE = 0.1
MIN_SAMPLE_SIDE = 256
MIN_TILE = 256  # an out-of-memory retry halves the tile down to this side, then gives up


# -- sides padded to the network's multiple --------------------------------------------------
def padded_size(n: int) -> int:
    """``n`` rounded up to a multiple of ``MULTIPLE``: the side the network runs on."""
    return -(-n // MULTIPLE) * MULTIPLE


def padded_box(box: Box) -> tuple[int, int]:
    """The padded ``(height, width)`` the network runs ``box`` at."""
    y0, y1, x0, x1 = box
    return padded_size(y1 - y0), padded_size(x1 - x0)


def pad_to_multiple(x: torch.Tensor) -> torch.Tensor:
    """``(..., H, W)`` padded at the bottom and right to sides of :func:`padded_size`."""
    h, w = x.shape[-2:]
    ph, pw = padded_size(h) - h, padded_size(w) - w
    if not (ph or pw):
        return x
    # Reflection continues the picture without a hard edge; it needs pad < size, so tiny
    # images fall back to repeating the border.
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def tile_side(tile: int) -> int:
    """A requested tile side as the engine uses it: 0 (never tile) for ``tile <= 0``, else
    rounded down to a multiple of ``MULTIPLE``, at least ``4 * MULTIPLE``."""
    return 0 if tile <= 0 else max(MULTIPLE * 4, tile // MULTIPLE * MULTIPLE)


def fits_one_tile(h: int, w: int, tile: int, whole_pixels: int | None = None) -> bool:
    """Whether an ``h x w`` image runs whole under ``tile`` (0: never tiled): by its
    pixels, which the memory follows, not its longer side; at most ``whole_pixels``
    (default: one tile's). A 1152x768 photo (0.9 MP, less than one 1024-pixel tile) was
    cut into two tiles plus the sample walk: twice the MACs and 20 % more wall time than
    whole, for 0.1 GB less memory."""
    budget = tile * tile if whole_pixels is None else whole_pixels
    # Padded, as the network runs it: a 16 x 65,535 strip is 32 x 65,536, two tiles' worth.
    return not tile or padded_size(h) * padded_size(w) <= budget


def halved_tile(side: int) -> int:
    """The tile side an out-of-memory retry uses after ``side``: half of it on the
    ``MULTIPLE`` grid, at least ``MIN_TILE`` (so not smaller when ``side`` is there)."""
    return max(MIN_TILE, side // 2 // MULTIPLE * MULTIPLE)


# -- the tile grid and its blend weights -----------------------------------------------------
def axis_segments(n: int, tile: int, overlap: int) -> list[tuple[int, int, np.ndarray]]:
    """Split ``0..n`` into overlapping segments ``(start, end, weight)``.

    Starts are multiples of 8 so every tile keeps the JPEG block grid where it was. Each
    weight ramps up from an inner tile edge over ``overlap`` pixels; the weights are then
    divided by their sum along the axis, so they sum to one everywhere (the 2-D weights
    are products, so they do too) and blending needs no full-size weight buffer.
    """
    if n <= tile:
        return [(0, n, np.ones(n, np.float32))]
    count = int(np.ceil((n - overlap) / (tile - overlap)))
    # As few segments as the tile allows, but no longer than needed to overlap by
    # ``overlap``, rounded up to the network's multiple of 32: 24 MP at tile 1024 runs
    # the network on 1.17x its pixels instead of 1.53x with full-size tiles.
    need = -(-(n + (count - 1) * overlap) // count)  # ceil
    length = min(tile, padded_size(need))
    step = (n - length) / (count - 1)
    # The last start is rounded up, not down, so that no segment is longer than ``length``.
    last = -(-(n - length) // 8) * 8
    starts = sorted({round(i * step) // 8 * 8 for i in range(count - 1)} | {last})
    ends = [min(s + length, n) for s in starts]
    ends[-1] = n
    raw = []
    total = np.zeros(n, np.float64)
    for i, (s0, s1) in enumerate(zip(starts, ends, strict=True)):
        pos = np.arange(s0, s1, dtype=np.float64) + 0.5
        wgt = np.ones(s1 - s0)
        if i > 0:
            wgt = np.minimum(wgt, (pos - s0) / overlap)
        if i + 1 < len(starts):
            wgt = np.minimum(wgt, (s1 - pos) / overlap)
        wgt = np.clip(wgt, 1e-3, 1)
        raw.append(wgt)
        total[s0:s1] += wgt
    return [(s0, s1, (wgt / total[s0:s1]).astype(np.float32))
            for s0, s1, wgt in zip(starts, ends, raw, strict=True)]


def tiles(h: int, w: int, tile: int, overlap: int = TILE_OVERLAP) -> list[Tile]:
    """Tiles ``((y0, y1, x0, x1), wy, wx)`` covering an ``h x w`` image, with the row and
    column blend weights; :func:`blend_weight` makes the tile's 2-D weight when it is
    blended (all of them at once were 0.5 GB for 100 MP)."""
    return [((y0, y1, x0, x1), wy, wx)
            for y0, y1, wy in axis_segments(h, tile, overlap)
            for x0, x1, wx in axis_segments(w, tile, overlap)]


def blend_weight(wy: np.ndarray, wx: np.ndarray) -> np.ndarray:
    """A tile's ``(th, tw, 1)`` blend weight from its row and column weights."""
    return (wy[:, None] * wx[None, :])[..., None]


def same_shape_groups(boxes: list[Box], batch: int) -> list[list[int]]:
    """Indices of ``boxes`` in groups of at most ``batch`` with one padded shape (that
    can run as one network batch), in order as far as the shapes allow."""
    by_shape: dict[tuple[int, int], list[int]] = {}
    for n, box in enumerate(boxes):
        by_shape.setdefault(padded_box(box), []).append(n)
    groups = [members[i : i + batch] for members in by_shape.values()
              for i in range(0, len(members), max(1, batch))]
    return sorted(groups, key=lambda g: g[0])


# -- the sample tiles -------------------------------------------------------------------------
def sample_boxes(boxes: list[Box], side: int | None = None) -> list[Box]:
    """The sample tiles that walk the exits for a tiled image: ``SAMPLE_TILES`` of the
    ``boxes`` spread over the grid, each cut to its centred square of ``side`` (default
    :func:`sample_side` of the picture the boxes cover)."""
    if side is None:
        side = sample_side(max(b[1] for b in boxes) * max(b[3] for b in boxes))
    return [centre_crop(boxes[i], side) for i in spread(len(boxes), SAMPLE_TILES)]


def sample_side(pixels: int) -> int:
    """The side of the sample crops for a picture of ``pixels``: together about
    ``SAMPLE_SHARE`` of it, on the network's multiple, ``MIN_SAMPLE_SIDE`` to
    ``SAMPLE_SIDE``."""
    side = int((SAMPLE_SHARE * pixels / SAMPLE_TILES) ** 0.5) // MULTIPLE * MULTIPLE
    return min(SAMPLE_SIDE, max(MIN_SAMPLE_SIDE, side))


def centre_crop(box: Box, side: int) -> Box:
    """The centred ``side x side`` part of ``box`` (all of a shorter side), starts kept on
    the 8-pixel JPEG grid."""
    y0, y1, x0, x1 = box

    def axis(a0: int, a1: int) -> tuple[int, int]:
        if a1 - a0 <= side:
            return a0, a1
        s = a0 + ((a1 - a0 - side) // 2) // 8 * 8
        return s, s + side

    return (*axis(y0, y1), *axis(x0, x1))


def spread(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)``."""
    if n <= k:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})
