"""The early-exit enhancer: device, padding, colour, tiling and the exit loop.

Plain callbacks, no Qt. Images come in and go out as ``(H, W, C)`` float32 arrays in
``[0, 1]`` with ``C`` = 1 (gray) or 3 (RGB); alpha is the caller's (see :mod:`rbqe.io`).

How the exit is chosen when an image is tiled
---------------------------------------------
A tiled image cannot keep every tile's features alive (24 MP x 32 channels x 6 nodes is
tens of GB), so it cannot walk the exits for the whole picture and stop. Instead a few
*sample tiles* spread over the grid walk the exits progressively; the mean of their
scores decides the exit by the same rule as ``auto``. The samples also record the ECA
blocks' pooled channel means; every tile is then computed to the chosen exit with those
shared means, so that all tiles use the same attention gates and no seam appears where
two tiles would have pooled different statistics. The chosen exit's score is finally
measured on the whole assembled image and reported beside the sampled ones.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rbqe import iqa
from rbqe.errors import Cancelled, RBQEError, WeightsError
from rbqe.model import MULTIPLE, NUM_EXITS, EcaStats, ProgressiveRun, RBQENet, gmacs_per_exit
from rbqe.weights import DEFAULT_THRESHOLD, WeightsInfo, default_weights_path, load_weights

log = logging.getLogger(__name__)

ExitMode = str | int  # "auto", "all" or 1..5
DEFAULT_TILE = 1024  # pixels per side; bounds peak memory at roughly 1 GB on CPU
TILE_OVERLAP = 64
SAMPLE_TILES = 4
# Sample tiles walk the exits side by side, so all their network states are alive at
# once: four full 1024-pixel tiles held ~4.4 GB at exit 5. Each sample is therefore a
# centred crop of at most this side (four 512x512 crops: ~1 GB at exit 5).
SAMPLE_SIDE = 512


@dataclass
class ExitResult:
    """One computed exit.

    Attributes:
        exit: 1..5.
        image: ``(H, W, C)`` float32 in ``[0, 1]``, the input's layout.
        score: IQA score of this exit (for a tiled image: mean over the sample tiles).
        time_ms: Network time of this stage alone.
        iqa_ms: Time spent scoring it.
        gmacs: Cumulative GMACs to reach this exit.
    """

    exit: int
    image: np.ndarray
    score: float
    time_ms: float
    iqa_ms: float
    gmacs: float


@dataclass
class EnhanceResult:
    """What :meth:`Enhancer.enhance` returns.

    Attributes:
        exits: Computed exits, in order.
        chosen: The exit auto chose (or the forced one).
        threshold: Threshold used.
        mode: The exit mode asked for.
        device: Torch device string.
        size: ``(width, height)``.
        total_ms: Wall time of the whole call.
        tiled: Whether tiling was used, and ``tiles`` how many.
        full_score: For tiled images, the chosen exit's score on the assembled image.
        sampled_scores: For tiled images, the sample tiles' mean score at each exit walked.
    """

    exits: list[ExitResult]
    chosen: int
    threshold: float
    mode: ExitMode
    device: str
    size: tuple[int, int]
    total_ms: float = 0.0
    tiled: bool = False
    tiles: int = 1
    full_score: float | None = None
    sampled_scores: list[float] = field(default_factory=list)
    _session: _Session | None = field(default=None, repr=False)

    @property
    def image(self) -> np.ndarray:
        return self.exit_result(self.chosen).image

    def exit_result(self, k: int) -> ExitResult:
        for e in self.exits:
            if e.exit == k:
                return e
        raise KeyError(f"exit {k} was not computed")

    @property
    def can_continue(self) -> bool:
        return self._session is not None and self._session.run.exits_done < NUM_EXITS

    @property
    def iqa_ms(self) -> float:
        return sum(e.iqa_ms for e in self.exits)


@dataclass
class _Session:
    """Cached progressive state of an untiled image, to compute later exits cheaply."""

    run: ProgressiveRun
    prep: _Prepared


@dataclass
class _Prepared:
    x: torch.Tensor  # (1, C_model, Hp, Wp) padded network input
    h: int
    w: int
    chroma: np.ndarray | None  # (H, W, 2) CbCr kept by a luma model
    out_gray: bool  # RGB model fed a gray image: return gray


Progress = Callable[[str, int, int], None]  # (stage, done, total)
OnExit = Callable[[ExitResult], None]
CancelCheck = Callable[[], bool]


def pick_device(name: str = "auto") -> torch.device:
    """CUDA when present, else Apple MPS, else CPU; an explicit name wins."""
    if name != "auto":
        dev = torch.device(name)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RBQEError(f"device {name!r} requested but CUDA is not available")
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise RBQEError(f"device {name!r} requested but MPS is not available")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# BT.601 full-range YCbCr, as JPEG uses.
# Both conversions work in place on preallocated float32 frames, with the same operations
# in the same order as the plain formulas (so the same values): on a 24 MP photo the
# plain numpy expressions made ~5 full-frame temporaries plus stack/clip/astype copies,
# more than the tiled network itself.
def split_ycbcr(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(H, W, 3)`` RGB -> luma ``(H, W)`` and chroma ``(H, W, 2)``, float32."""
    rgb = np.asarray(rgb, dtype=np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = np.multiply(r, np.float32(0.299))
    t = np.multiply(g, np.float32(0.587))
    y += t
    np.multiply(b, np.float32(0.114), out=t)
    y += t
    cbcr = np.empty((*y.shape, 2), np.float32)
    for c, (src, k) in enumerate(((b, 0.564), (r, 0.713))):
        np.subtract(src, y, out=t)
        t *= np.float32(k)
        np.add(t, np.float32(0.5), out=cbcr[..., c])
    return y, cbcr


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    y, cbcr = split_ycbcr(rgb)
    return np.concatenate([y[..., None], cbcr], axis=-1)


def ycbcr_to_rgb(y: np.ndarray, cbcr: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=np.float32)
    cb = np.subtract(cbcr[..., 0], np.float32(0.5), dtype=np.float32)
    cr = np.subtract(cbcr[..., 1], np.float32(0.5), dtype=np.float32)
    out = np.empty((*y.shape, 3), np.float32)
    t = np.multiply(cr, np.float32(1.403))
    np.add(y, t, out=out[..., 0])  # r = y + 1.403 cr
    np.multiply(cb, np.float32(0.344), out=t)
    np.subtract(y, t, out=out[..., 1])
    np.multiply(cr, np.float32(0.714), out=t)
    out[..., 1] -= t  # g = y - 0.344 cb - 0.714 cr
    np.multiply(cb, np.float32(1.773), out=t)
    np.add(y, t, out=out[..., 2])  # b = y + 1.773 cb
    return np.clip(out, 0, 1, out=out)


class Enhancer:
    """Loads weights once and enhances images with early exits.

    Args:
        weights: A ``.safetensors`` file; default :func:`rbqe.weights.default_weights_path`.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        threshold: IQA exit threshold; default from the weights' metadata.
        tile: Tile side in pixels (multiple of 32); images larger than one tile are tiled.
            ``0`` disables tiling.
        net: An already built network (tests, calibration); skips loading.
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        *,
        device: str = "auto",
        threshold: float | None = None,
        tile: int | None = None,
        net: RBQENet | None = None,
    ) -> None:
        self.device = pick_device(device)
        if net is None:
            path = Path(weights) if weights else default_weights_path()
            if not path.is_file():
                raise WeightsError(
                    f"no weights file at {path}: train one with 'rbqe train' or pass --weights"
                )
            net, self.info = load_weights(path)
        else:
            self.info = WeightsInfo(None, net.config, DEFAULT_THRESHOLD)
        self.threshold = float(threshold if threshold is not None else self.info.threshold)
        tile = DEFAULT_TILE if tile is None else int(tile)
        self.tile = 0 if tile <= 0 else max(MULTIPLE * 4, tile // MULTIPLE * MULTIPLE)
        self.fp16 = self.device.type == "cuda"
        # channels_last measured ~2x faster for this net's small-channel convs on CPU.
        self.memory_format = torch.channels_last
        # CPU: the fused, striped oneDNN path of rbqe.model.FastProgressiveRun (5x the plain
        # NCHW module path at 512x512, same float32 results to ~1e-7). CUDA keeps the
        # module path under fp16 autocast, where cuDNN does the fusing.
        self.fast = self.device.type == "cpu"
        self.net = net.to(self.device).to(memory_format=self.memory_format).eval()
        if self.fp16:
            torch.backends.cudnn.benchmark = True
        self._macs_unit = gmacs_per_exit(self.net, MULTIPLE, MULTIPLE)

    @property
    def channels(self) -> int:
        return self.net.config.in_channels

    def gmacs(self, height: int, width: int) -> list[float]:
        """Cumulative GMACs per exit for a padded ``height x width`` input."""
        scale = (height * width) / (MULTIPLE * MULTIPLE)
        return [g * scale for g in self._macs_unit]

    # -- public API --------------------------------------------------------------------
    def enhance(
        self,
        image: np.ndarray,
        mode: ExitMode = "auto",
        *,
        on_exit: OnExit | None = None,
        progress: Progress | None = None,
        cancel: CancelCheck | None = None,
        keep_session: bool = False,
    ) -> EnhanceResult:
        """Enhance one image.

        Args:
            image: ``(H, W)`` or ``(H, W, C)`` float32 in ``[0, 1]``, ``C`` in {1, 3}.
            mode: ``"auto"`` (first exit whose score >= threshold, else 5), an exit 1..5,
                or ``"all"`` (every exit; ``chosen`` is what auto would pick).
            on_exit: Called with each exit as soon as it is computed.
            progress: Called as ``(stage, done, total)`` between stages and tiles.
            cancel: Polled between stages and tiles; returning True raises
                :class:`rbqe.errors.Cancelled`.
            keep_session: Keep the untiled network state so :meth:`continue_exits` can
                compute later exits without starting over (costs memory).
        """
        mode = _check_mode(mode)
        img = _as_hwc(image)
        h, w = img.shape[:2]
        t0 = time.perf_counter()
        if self.tile and (h > self.tile or w > self.tile):
            result = self._enhance_tiled(img, mode, on_exit, progress, cancel)
        else:
            result = self._enhance_whole(img, mode, on_exit, progress, cancel, keep_session)
        result.total_ms = (time.perf_counter() - t0) * 1000
        return result

    def continue_exits(
        self,
        result: EnhanceResult,
        up_to: int = NUM_EXITS,
        *,
        on_exit: OnExit | None = None,
        cancel: CancelCheck | None = None,
    ) -> EnhanceResult:
        """Compute exits after the last one in ``result``, reusing its cached stages."""
        session = result._session
        if session is None:
            raise RBQEError("this result kept no network state; enhance again with mode='all'")
        t0 = time.perf_counter()
        while session.run.exits_done < up_to:
            _check_cancel(cancel)
            e = self._next_exit(session.run, session.prep)
            result.exits.append(e)
            if on_exit:
                on_exit(e)
        if session.run.exits_done >= NUM_EXITS:
            result._session = None
        result.total_ms += (time.perf_counter() - t0) * 1000
        return result

    # -- whole image -------------------------------------------------------------------
    @torch.inference_mode()
    def _enhance_whole(self, img, mode, on_exit, progress, cancel, keep_session) -> EnhanceResult:
        prep = self._prepare(img)
        run = self.net.start(prep.x, fast=self.fast)
        result = self._result(mode, img)
        last = _last_exit(mode)
        for k in range(1, last + 1):
            _check_cancel(cancel)
            if progress:
                progress("exit", k - 1, last)
            e = self._next_exit(run, prep)
            result.exits.append(e)
            if on_exit:
                on_exit(e)
            if mode == "auto" and e.score >= self.threshold:
                break
        result.chosen = self._choose(result.exits, mode)
        if progress:
            progress("exit", last, last)
        if keep_session and run.exits_done < NUM_EXITS:
            result._session = _Session(run, prep)
        return result

    @torch.inference_mode()
    def _next_exit(self, run: ProgressiveRun, prep: _Prepared) -> ExitResult:
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.fp16):
            out = run.next_exit()
        out = out[..., : prep.h, : prep.w].float().clamp_(0, 1)
        self._sync()
        t1 = time.perf_counter()
        score = float(iqa.score_torch(self._luma_of(out)))
        t2 = time.perf_counter()
        k = run.exits_done
        hp, wp = prep.x.shape[-2:]
        return ExitResult(k, self._finish(out, prep), score, (t1 - t0) * 1000, (t2 - t1) * 1000,
                          self.gmacs(hp, wp)[k - 1])

    # -- tiles ---------------------------------------------------------------------------
    @torch.inference_mode()
    def _enhance_tiled(self, img, mode, on_exit, progress, cancel) -> EnhanceResult:
        h, w = img.shape[:2]
        prep_full = self._prepare(img, pad=False)
        src = prep_full.x  # (1, C, H, W), unpadded, on CPU
        tiles = _tiles(h, w, self.tile, TILE_OVERLAP)
        boxes = [b for b, _ in tiles]
        result = self._result(mode, img)
        result.tiled, result.tiles = True, len(boxes)
        stats = EcaStats(mode="record")
        samples = _spread(len(boxes), SAMPLE_TILES)
        sample_boxes = [_centre_crop(boxes[i], SAMPLE_SIDE) for i in samples]
        last = _last_exit(mode)
        n_steps = len(samples) + len(boxes)

        # 1. Sample tiles walk the exits; their mean score decides, their ECA means are kept.
        sample_scores: list[list[float]] = [[] for _ in range(NUM_EXITS)]
        sample_ms = [0.0] * NUM_EXITS
        chosen = last
        runs = []
        for n, box in enumerate(sample_boxes):
            _check_cancel(cancel)
            if progress:
                progress("sample", n, n_steps)
            runs.append(self.net.start(self._tile_input(src, box), stats, fast=self.fast))
        for k in range(1, last + 1):
            for run in runs:
                _check_cancel(cancel)
                t0 = time.perf_counter()
                with torch.autocast("cuda", dtype=torch.float16, enabled=self.fp16):
                    out = run.next_exit().float().clamp_(0, 1)
                self._sync()
                sample_ms[k - 1] += (time.perf_counter() - t0) * 1000
                sample_scores[k - 1].append(float(iqa.score_torch(self._luma_of(out))))
            if mode == "auto" and np.mean(sample_scores[k - 1]) >= self.threshold:
                chosen = k
                break
        del runs
        exits_wanted = list(range(1, NUM_EXITS + 1)) if mode == "all" else [chosen]
        if isinstance(mode, int):
            exits_wanted = [mode]

        # 2. Every tile to the exit(s) wanted, all with the same ECA means, blended.
        stats.mode = "fixed"
        acc = {k: np.zeros((h, w, self.net.config.out_channels), np.float32) for k in exits_wanted}
        stage_ms = [0.0] * NUM_EXITS
        for n, (box, weight) in enumerate(tiles):
            _check_cancel(cancel)
            if progress:
                progress("tile", len(samples) + n, n_steps)
            run = self.net.start(self._tile_input(src, box), stats, fast=self.fast)
            y0, y1, x0, x1 = box
            for k in range(1, max(exits_wanted) + 1):
                t0 = time.perf_counter()
                if k not in acc:  # an exit on the way: its nodes, not its output head
                    with torch.autocast("cuda", dtype=torch.float16, enabled=self.fp16):
                        run.advance()
                    stage_ms[k - 1] += (time.perf_counter() - t0) * 1000
                    continue
                with torch.autocast("cuda", dtype=torch.float16, enabled=self.fp16):
                    out = run.next_exit()
                tile_out = out[0, :, : y1 - y0, : x1 - x0].float().clamp_(0, 1)
                acc[k][y0:y1, x0:x1] += tile_out.permute(1, 2, 0).cpu().numpy() * weight
                self._sync()
                stage_ms[k - 1] += (time.perf_counter() - t0) * 1000
        if progress:
            progress("tile", n_steps, n_steps)

        # 3. Assemble. Each assembled exit is scored on the whole image; the sample walk's
        # cost is counted in every exit's time and MACs since it was spent to get there.
        walked = sum(1 for sc in sample_scores if sc)
        overhead_macs = sum(self.gmacs(*_padded(b))[walked - 1] for b in sample_boxes)
        overhead_ms = sum(sample_ms)
        for k in exits_wanted:
            image = self._finish_array(acc.pop(k), prep_full)
            t1 = time.perf_counter()
            full = float(iqa.score_torch(torch.from_numpy(_luma_np(image))))
            iqa_ms = (time.perf_counter() - t1) * 1000
            macs = sum(self.gmacs(*_padded(b))[k - 1] for b in boxes) + overhead_macs
            e = ExitResult(k, image, full, stage_ms[k - 1] + (overhead_ms if k == exits_wanted[0]
                                                             else 0.0), iqa_ms, macs)
            result.exits.append(e)
            if on_exit:
                on_exit(e)
        if isinstance(mode, int):
            result.chosen = mode
        elif mode == "all":
            result.chosen = self._choose_sampled(sample_scores)
        else:
            result.chosen = chosen
        result.full_score = result.exit_result(result.chosen).score
        result.sampled_scores = [float(np.mean(sc)) for sc in sample_scores if sc]
        return result

    def _tile_input(self, src: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
        y0, y1, x0, x1 = box
        x = src[..., y0:y1, x0:x1]
        return _pad_to_multiple(x).to(self.device).contiguous(memory_format=self.memory_format)

    # -- helpers -----------------------------------------------------------------------
    def _prepare(self, img: np.ndarray, pad: bool = True) -> _Prepared:
        h, w, c = img.shape
        chroma = None
        out_gray = False
        if self.channels == 1:
            if c == 3:
                y, chroma = split_ycbcr(img)
                net_in = y[..., None]  # the tensor below shares its memory
            else:
                net_in = img
        else:
            if c == 1:
                net_in, out_gray = np.repeat(img, 3, axis=2), True
            else:
                net_in = img
        x = torch.from_numpy(np.ascontiguousarray(net_in.transpose(2, 0, 1)))[None]
        if pad:
            x = _pad_to_multiple(x).to(self.device).contiguous(memory_format=self.memory_format)
        return _Prepared(x, h, w, chroma, out_gray)

    def _luma_of(self, out: torch.Tensor) -> torch.Tensor:
        return out if out.shape[1] == 1 else iqa.luma(out)

    def _finish(self, out: torch.Tensor, prep: _Prepared) -> np.ndarray:
        arr = out[0].permute(1, 2, 0).cpu().numpy()
        return self._finish_array(arr, prep)

    def _finish_array(self, arr: np.ndarray, prep: _Prepared) -> np.ndarray:
        if prep.chroma is not None:
            return ycbcr_to_rgb(arr[..., 0], prep.chroma)
        if prep.out_gray:
            return np.clip(_luma_np(arr), 0, 1)[..., None].astype(np.float32)
        return np.ascontiguousarray(arr, dtype=np.float32)

    def _result(self, mode: ExitMode, img: np.ndarray) -> EnhanceResult:
        h, w = img.shape[:2]
        return EnhanceResult([], NUM_EXITS, self.threshold, mode, str(self.device), (w, h))

    def _choose(self, exits: list[ExitResult], mode: ExitMode) -> int:
        if isinstance(mode, int):
            return mode
        for e in exits:
            if e.score >= self.threshold:
                return e.exit
        return NUM_EXITS

    def _choose_sampled(self, sample_scores: list[list[float]]) -> int:
        for k, s in enumerate(sample_scores, start=1):
            if s and np.mean(s) >= self.threshold:
                return k
        return NUM_EXITS

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _check_mode(mode: ExitMode) -> ExitMode:
    if isinstance(mode, str) and mode.isdigit():
        mode = int(mode)
    if mode in ("auto", "all") or (isinstance(mode, int) and 1 <= mode <= NUM_EXITS):
        return mode
    raise ValueError(f"exit mode must be auto, all or 1..{NUM_EXITS}, got {mode!r}")


def _last_exit(mode: ExitMode) -> int:
    return mode if isinstance(mode, int) else NUM_EXITS


def _check_cancel(cancel: CancelCheck | None) -> None:
    if cancel is not None and cancel():
        raise Cancelled("cancelled")


def _as_hwc(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] not in (1, 3):
        raise ValueError(f"expected (H, W), (H, W, 1) or (H, W, 3) pixels, got {img.shape}")
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"empty image {img.shape}")
    return img


def _pad_to_multiple(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = (-h) % MULTIPLE, (-w) % MULTIPLE
    if not (ph or pw):
        return x
    # Reflection continues the picture without a hard edge; it needs pad < size, so tiny
    # images fall back to repeating the border.
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def _luma_np(arr: np.ndarray) -> np.ndarray:
    if arr.shape[-1] == 1:
        return np.ascontiguousarray(arr[..., 0])
    return (0.299 * arr[..., 0] + 0.587 * arr[..., 1] + 0.114 * arr[..., 2]).astype(np.float32)


def _axis_segments(n: int, tile: int, overlap: int) -> list[tuple[int, int, np.ndarray]]:
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
    length = min(tile, -(-need // MULTIPLE) * MULTIPLE)
    step = (n - length) / (count - 1)
    # The last start is rounded up, not down, so that no segment is longer than ``length``.
    last = -(-(n - length) // 8) * 8
    starts = sorted({round(i * step) // 8 * 8 for i in range(count - 1)} | {last})
    ends = [min(s + length, n) for s in starts]
    ends[-1] = n
    raw = []
    total = np.zeros(n, np.float64)
    for i, (s0, s1) in enumerate(zip(starts, ends)):
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
            for s0, s1, wgt in zip(starts, ends, raw)]


def _tiles(h: int, w: int, tile: int, overlap: int) -> list[tuple[tuple[int, int, int, int], np.ndarray]]:
    """Tiles ``((y0, y1, x0, x1), weight (th, tw, 1))`` covering an ``h x w`` image."""
    return [((y0, y1, x0, x1), (wy[:, None] * wx[None, :])[..., None])
            for y0, y1, wy in _axis_segments(h, tile, overlap)
            for x0, x1, wx in _axis_segments(w, tile, overlap)]


def _padded(box: tuple[int, int, int, int]) -> tuple[int, int]:
    y0, y1, x0, x1 = box
    return (-(-(y1 - y0) // MULTIPLE) * MULTIPLE, -(-(x1 - x0) // MULTIPLE) * MULTIPLE)


def _centre_crop(box: tuple[int, int, int, int], side: int) -> tuple[int, int, int, int]:
    """The centred ``side x side`` part of ``box`` (all of a shorter side), starts kept on
    the 8-pixel JPEG grid."""
    y0, y1, x0, x1 = box

    def axis(a0: int, a1: int) -> tuple[int, int]:
        if a1 - a0 <= side:
            return a0, a1
        s = a0 + ((a1 - a0 - side) // 2) // 8 * 8
        return s, s + side

    return (*axis(y0, y1), *axis(x0, x1))


def _spread(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)``."""
    if n <= k:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})
