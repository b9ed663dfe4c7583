"""What tests build, in one place: the tiny random network (as a module, saved weights or
an Enhancer), synthetic photos, their JPEG pixels and JPEG files, hand-packed TIFFs.

Plain functions, importable from any test (``from tests.helpers import tiny_net``); the
conftest files wrap some of them as fixtures.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from rbqe.engine import Enhancer, EnhanceResult, ExitResult
from rbqe.exit_policy import Decision, ExitPolicy, ExitSignals, JpegPrior
from rbqe.model import NUM_EXITS, ModelConfig, RBQENet
from rbqe.tiling import TILE_OVERLAP, tiles
from rbqe.weights import save_weights

if TYPE_CHECKING:
    from rbqe_studio.jobs import ViewData


def psnr(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """PSNR in dB of two images in [0, 1] (arrays or tensors), in float64; inf if equal."""
    a, b = (np.asarray(t.detach().cpu() if isinstance(t, torch.Tensor) else t, np.float64)
            for t in (a, b))
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def tiny_net(channels: int = 1, seed: int = 0) -> RBQENet:
    """A random width-8 RBQE network (about 1/16 of the paper's MACs), in eval mode."""
    torch.manual_seed(seed)
    return RBQENet(ModelConfig(channels, channels, 8)).eval()


def save_tiny_weights(path: Path, channels: int = 1, seed: int = 0, **kwargs: Any) -> Path:
    """:func:`tiny_net` saved as safetensors at ``path`` (``kwargs``: :func:`save_weights`'s)."""
    return save_weights(tiny_net(channels, seed), path, **kwargs)


def tiny_enhancer(**kwargs: Any) -> Enhancer:
    """An :class:`Enhancer` over :func:`tiny_net` (luma) on the CPU, untiled unless
    ``tile`` is given: fast and deterministic."""
    kwargs.setdefault("tile", 0)
    return Enhancer(net=tiny_net(1), device="cpu", **kwargs)


def photo(height: int, width: int, *, seed: int = 0) -> np.ndarray:
    """A smooth, textured RGB uint8 picture: gradients, a few discs and mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([xx / max(width, 1), yy / max(height, 1),
                    0.5 + 0.25 * np.sin(xx / 7.0) * np.cos(yy / 5.0)], axis=-1)
    for _ in range(6):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(3, 20)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0.1, 0.9, 3)
    img += rng.normal(0, 0.02, img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def jpeg_compress(rgb: np.ndarray, quality: int = 20) -> np.ndarray:
    """``rgb`` (uint8) through a JPEG round trip: real blocking artefacts."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert(Image.fromarray(rgb).mode))


def jpeg_pixels(height: int, width: int, seed: int = 0, quality: int = 20) -> np.ndarray:
    """The pixels (uint8 RGB) of a :func:`photo` after JPEG at ``quality``."""
    return jpeg_compress(photo(height, width, seed=seed), quality)


def write_jpeg(path: Path, size: tuple[int, int] = (64, 48), quality: int = 20,
               seed: int = 0) -> Path:
    """A smooth random picture saved as a low-quality JPEG file at ``path`` (blocky, as
    users' files are); ``size`` is ``(width, height)``."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    base = np.stack([np.sin(6 * xx + seed), np.cos(5 * yy), np.sin(4 * (xx + yy))], -1)
    img = (base * 0.4 + 0.5 + rng.normal(0, 0.05, (h, w, 3))).clip(0, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((img * 255).astype(np.uint8)).save(path, quality=quality)
    return path


def damaged_jpeg(path: Path, good: bytes) -> Path:
    """``good`` (a progressive JPEG's bytes) with one byte of its scan data flipped, the
    first flip (every 7th byte from the scan's start) that libjpeg reports as damage
    without the data running short, written to ``path``."""
    from rbqe.io.jpeg_data import jpeg_data_check

    for pos in range(good.index(b"\xff\xda") + 20, len(good) - 10, 7):
        bad = bytearray(good)
        bad[pos] ^= 0xFF
        path.write_bytes(bad)
        short, damage = jpeg_data_check(path)
        if damage and not short:
            return path
    raise AssertionError("no single-byte flip made libjpeg report damage")


def tile_edge_mask(h: int, w: int, tile: int, band: int = 4) -> np.ndarray:
    """Pixels within ``band`` of a tile edge inside the image (where seams would be)."""
    mask = np.zeros((h, w), bool)
    for y0, y1, x0, x1 in (b for b, _, _ in tiles(h, w, tile, TILE_OVERLAP)):
        for y in (y0, y1):
            if 0 < y < h:
                mask[max(0, y - band):y + band, x0:x1] = True
        for x in (x0, x1):
            if 0 < x < w:
                mask[y0:y1, max(0, x - band):x + band] = True
    return mask


def hooked_gmacs(net: RBQENet, side: int) -> list[float]:
    """GMACs per exit counted by forward hooks on a walk: every conv a module call runs.

    The engine's count once worked this way; it misses convs computed without a module
    call (the gated separable conv), so the tests compare against it with those put back,
    and docs/bench/tile_exits_recount.py uses it to reproduce the old figures."""
    macs = 0

    def hook(module, inputs, output):
        nonlocal macs
        k = module.kernel_size[0] * module.kernel_size[1]
        if isinstance(module, torch.nn.ConvTranspose2d):
            macs += inputs[0].numel() * module.out_channels * k
        else:
            macs += output.numel() * (module.in_channels // module.groups) * k

    convs = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    handles = [m.register_forward_hook(hook) for m in convs]
    out = []
    try:
        with torch.no_grad():
            run = net.start(torch.zeros(1, net.config.in_channels, side, side))
            for _ in range(NUM_EXITS):
                run.next_exit()
                out.append(macs / 1e9)
    finally:
        for h in handles:
            h.remove()
    return out


@dataclass(frozen=True)
class SmoothStopsEarly(ExitPolicy):
    """A test policy that splits tiles: exit 1 where most blocks are smooth, else exit 4."""

    def decide(self, walked: Sequence[ExitSignals], prior: JpegPrior | None = None,
               gray: bool = False) -> Decision:
        s = walked[-1]
        want = 1 if s.smooth_share > 0.5 else 4
        return Decision(s.exit >= want, s.exit, "test", {"want": want}, "")


def little_tiff(tags: list[tuple[int, int, list[int]]], data: bytes, offsets_tag: int) -> bytes:
    """A little-endian TIFF of one IFD: ``tags`` as (tag, type 3 SHORT or 4 LONG, values),
    sorted, values longer than 4 bytes after the IFD, then the pixel ``data``; the values of
    ``offsets_tag`` (StripOffsets or TileOffsets) are given relative to ``data``."""
    def head(tags: list[tuple[int, int, list[int]]]) -> bytes:
        extra_at = 8 + 2 + 12 * len(tags) + 4
        ifd, extra = struct.pack("<H", len(tags)), b""
        for tag, kind, values in tags:
            raw = struct.pack("<" + ("H" if kind == 3 else "I") * len(values), *values)
            if len(raw) <= 4:
                ifd += struct.pack("<HHI", tag, kind, len(values)) + raw.ljust(4, b"\0")
            else:
                ifd += struct.pack("<HHII", tag, kind, len(values), extra_at + len(extra))
                extra += raw
        return b"II*\0" + struct.pack("<I", 8) + ifd + b"\0\0\0\0" + extra

    start = len(head(tags))  # the same length whatever the offsets' values
    return head([(t, k, [start + v for v in vals] if t == offsets_tag else vals)
                 for t, k, vals in tags]) + data


def tiled_view(path: Path, exits: tuple[int, ...] = (5,)) -> ViewData:
    """The app's view of a tiled picture at ``path`` as auto leaves it, made by hand:
    only its chosen exit (the last of ``exits``), made by one run of 32 s (31.9 s of it
    the chosen exit's network and scoring, 100 ms other time) cut into 6 tiles of up to
    1024 px, and no kept state to continue from. Its input picture is a stand-in that
    has a size in bytes only (no Qt)."""
    from rbqe.io import load_image
    from rbqe_studio.jobs import ViewData

    loaded = load_image(path)
    img = loaded.pixels
    view = ViewData(path, loaded, SimpleNamespace(nbytes=1000), None, other_ms=100.0)
    view.result = EnhanceResult([ExitResult(k, img, 0.5 + k / 10, 31_800.0, 100.0, 300.0)
                                 for k in exits], exits[-1], 0.8, "auto", "cpu",
                                (img.shape[1], img.shape[0]), total_ms=32_000.0, tiled=True,
                                tiles=6, tile_size=1024)
    return view


def second_run(view: ViewData) -> EnhanceResult:
    """What the app's worker gets from a new run of ``view``'s whole picture (mode
    "all", as Compute all exits makes it): every exit, each stage 4 s (3.9 s network,
    100 ms scoring) and 77.5 GMAC, its own 20 s in all."""
    img = view.loaded.pixels
    return EnhanceResult([ExitResult(k, img, 0.4 + k / 10, 3_900.0, 100.0, 77.5 * k)
                          for k in range(1, NUM_EXITS + 1)], NUM_EXITS, 0.8, "all", "cpu",
                         (img.shape[1], img.shape[0]), total_ms=20_000.0, tiled=True, tiles=6)
