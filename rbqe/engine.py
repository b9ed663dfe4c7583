"""The early-exit enhancer: weights, device, the out-of-memory retry and the steps both
paths share (the paths are :mod:`rbqe.whole` and :mod:`rbqe.tiled`; the exit rule is
:mod:`rbqe.exit_policy`'s).

Plain callbacks, no Qt. Images come in and go out as ``(H, W, C)`` float32 arrays in
``[0, 1]`` with ``C`` = 1 (gray) or 3 (RGB); alpha is the caller's (see :mod:`rbqe.io`).

An image that :meth:`Enhancer.runs_whole` (one tile's pixels; 2.1 MP on the CPU in bf16
by default) runs whole (:mod:`rbqe.whole`): its exits are computed
one after another on one progressive run, each scored, until the exit policy stops. A
larger one is tiled (:mod:`rbqe.tiled`). Both paths use the same three steps of an
:class:`Enhancer`: ``_prepare_input`` (pixels to the padded network input),
``_stage_and_score`` (one more exit of a run, clamped and scored into the walk's signals)
and ``_finish`` (the network output frame to the result: a luma model's RGB from the
input's chroma, or grey).

Out of GPU memory
-----------------
On a CUDA out-of-memory error the image is computed again with tiles half the size
(an untiled image switches to tiling), down to ``MIN_TILE``; below that the call fails
with an :class:`rbqe.errors.RBQEError`. The retry is logged and counted in
:attr:`EnhanceResult.oom_retries`.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rbqe import batched, color, iqa, tiled, whole
from rbqe.arch import DEFAULT_TILE_EXITS, MULTIPLE, NUM_EXITS
from rbqe.backends import Run, make_backend
from rbqe.bands import row_bands
from rbqe.color import luma_of, rgb_band, split_band
from rbqe.errors import RBQEError, WeightsError
from rbqe.exit_policy import (
    Decision,
    ExitMode,
    ExitPolicy,
    ExitSignals,
    JpegPrior,
    PolicySet,
    choose,
    may_stop,
    parse_exit_mode,
)
from rbqe.model import EcaStats, RBQENet, gmacs_per_exit
from rbqe.results import (
    CancelCheck,
    EnhanceResult,
    ExitResult,
    Hooks,
    OnExit,
    OnTile,
    Progress,
    TileDone,
    Walk,
)
from rbqe.tile_exits import check_tile_exits
from rbqe.tiling import (
    DEFAULT_TILE,
    MIN_TILE,
    OPENVINO_TILE,
    WHOLE_PIXELS,
    fits_one_tile,
    halved_tile,
    pad_to_multiple,
    padded_size,
    tile_side,
)
from rbqe.weights import (
    WeightsInfo,
    default_weights_path,
    load_weights,
    missing_weights_message,
)

__all__ = ["EnhanceResult", "Enhancer", "ExitResult", "TileDone", "pick_device"]
log = logging.getLogger(__name__)

MAX_BATCH = 8  # images or tiles walking together where batching pays (a GPU)
# CUDA memory of one tile's walk per pixel, for how many tiles fit at once: a 1024x1024
# tile walked to exit 5 peaked at 779 MB under fp16 on the H200 (weights and cuDNN's
# workspace included; docs/bench/gpu_h200_2026-12-04.txt).
CUDA_BYTES_PER_PIXEL = 800


def pick_device(name: str = "auto") -> torch.device:
    """CUDA when present, else Apple MPS, else CPU; an explicit name wins."""
    if name != "auto":
        try:
            dev = torch.device(name)
        except RuntimeError:  # torch's message lists every device type it was built with
            raise RBQEError(f"device {name!r} is not a device name: use auto, cpu, cuda, "
                            f"cuda:N or mps") from None
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


class Enhancer:
    """Loads weights once and enhances images with early exits.

    Args:
        weights: A ``.safetensors`` file; default :func:`rbqe.weights.default_weights_path`.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        policy: The exit policy: an :class:`ExitPolicy`, or the name of one stored in
            the weights (``assessor``, ``gate``); default the weights' default policy.
        threshold: IQA exit threshold; given (or ``min_exit`` given), auto uses the
            assessor rule with it (the rest from the weights' assessor policy).
        min_exit: The earliest exit the assessor rule may stop at.
        tile: Tile side in pixels (multiple of 32); images of more pixels than one tile
            are tiled. ``0`` disables tiling. Not given: the backend's default, and on the
            CPU's fast path images of up to :data:`rbqe.tiling.WHOLE_PIXELS` run whole.
        net: An already built network (tests, calibration); skips loading.
        backend: ``auto``, ``torch`` or ``openvino`` (see :func:`rbqe.backends.make_backend`;
            ``auto`` on the CPU times the candidates once per machine).
        precision: ``auto``, ``f32`` or ``bf16`` (the CPU, where it has native bf16);
            ``f32`` also turns off fp16 on CUDA.
        tile_exits: How auto chooses the exit of a tiled image: ``per-tile`` (each tile
            stops on its own signals, :mod:`rbqe.tile_exits`) or ``shared`` (one exit for
            the whole picture, from sample tiles); forced exits and ``all`` are the same in
            both.
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        *,
        device: str = "auto",
        threshold: float | None = None,
        min_exit: int | None = None,
        tile: int | None = None,
        net: RBQENet | None = None,
        policy: ExitPolicy | str | None = None,
        backend: str = "auto",
        precision: str = "auto",
        tile_exits: str = DEFAULT_TILE_EXITS,
    ) -> None:
        self.device = pick_device(device)
        self.tile_exits = check_tile_exits(tile_exits)
        in_memory = net is not None
        if net is None:
            path = Path(weights) if weights else default_weights_path()
            if not path.is_file():
                raise WeightsError(missing_weights_message(path))
            net, self.info = load_weights(path)
        else:
            self.info = WeightsInfo(None, net.config)
        self.policy = self.info.policy_for(policy, threshold, min_exit)
        if self.info.path is None:
            # A network without a file: the policy it was given is "the weights'" own,
            # which callers that reset the policy per job (the app's worker) go back to.
            name = "assessor" if self.policy.rule == "assessor" else self.policy.rule
            self.info.policies = PolicySet({**self.info.policies.policies, name: self.policy},
                                           name)
        self.fp16 = self.device.type == "cuda" and precision != "f32"
        self._precise = threading.local()  # enhance(full_precision=...), per thread
        # channels_last measured ~2x faster for this net's small-channel convs on CPU.
        self.memory_format = torch.channels_last
        # CPU: the fused, striped oneDNN path of rbqe.fastpath.FastProgressiveRun (5x the plain
        # NCHW module path at 512x512, same float32 results to ~1e-7). CUDA keeps the
        # module path under fp16 autocast, where cuDNN does the fusing.
        self.fast = self.device.type == "cpu"
        net = net.to(self.device)  # torch's stubs lack Module.to(memory_format=...):
        self.net = net.to(memory_format=self.memory_format).eval()  # type: ignore[call-overload]
        if self.fp16:
            torch.backends.cudnn.benchmark = True
        self._macs_unit = gmacs_per_exit(self.net, MULTIPLE, MULTIPLE)
        # Who runs the stages: torch (this net) or OpenVINO (its exported stage graphs).
        self.backend = make_backend(backend, self.net, self.device, precision=precision,
                                    in_memory=in_memory)
        default_tile = OPENVINO_TILE if self.backend.name == "openvino" else DEFAULT_TILE
        # Up to WHOLE_PIXELS run whole where that was measured to pay: the CPU's fast path
        # in bf16 with no tile asked for (a tile given bounds memory; f32 maps are twice
        # the size, and f32 whole was not measured to pay).
        self._limits = _Limits(
            tile_side(default_tile if tile is None else int(tile)), MAX_BATCH,
            whole_2mp=(tile is None and self.fast and self.backend.name == "torch"
                       and self.backend.precision == "bf16"))

    @property
    def tile(self) -> int:
        """The tile side (0: never tile). Setting it also drops the 2.1 MP whole budget:
        a tile asked for bounds the memory."""
        return self._limits.tile

    @tile.setter
    def tile(self, value: int) -> None:
        self._limits.tile, self._limits.whole_2mp = value, False

    @property
    def max_batch(self) -> int:
        """Where :attr:`batches`: how many images (enhance_many) or tiles walk together at
        most; 1 after a batch ran out of device memory."""
        return self._limits.max_batch

    @max_batch.setter
    def max_batch(self, value: int) -> None:
        self._limits.max_batch = value

    @property
    def whole_pixels(self) -> int:
        """The most (padded) pixels an image may have to run whole: one tile's, or
        :data:`rbqe.tiling.WHOLE_PIXELS` where that pays (see ``__init__``)."""
        one = self.tile * self.tile
        return max(one, WHOLE_PIXELS) if self._limits.whole_2mp else one

    @property
    def threshold(self) -> float | None:
        """The assessor rule's threshold (None under another rule)."""
        return self.policy.threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        self.policy = ExitPolicy.assessor(value, self.policy.min_exit,
                                          {"source": "threshold set by the caller"})

    @property
    def min_exit(self) -> int:
        return self.policy.min_exit

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
        prior: JpegPrior | None = None,
        full_precision: bool = False,
        on_tile: OnTile | None = None,
    ) -> EnhanceResult:
        """Enhance one image.

        Args:
            image: ``(H, W)`` or ``(H, W, C)`` float32 in ``[0, 1]``, ``C`` in {1, 3}.
            mode: ``"auto"`` (the first exit where :attr:`policy` stops, else 5), an exit
                1..5, or ``"all"`` (every exit; ``chosen`` is what auto would pick).
            on_exit: Called with each exit as soon as it is computed.
            progress: Called as ``(stage, done, total)`` between stages and tiles.
            cancel: Polled between stages and tiles; returning True raises
                :class:`rbqe.errors.Cancelled`.
            keep_session: Keep the untiled network state so :meth:`continue_exits` can
                compute later exits without starting over (costs memory).
            prior: The input file's JPEG quantisation tables, which the gate policy reads
                (:func:`rbqe.io.jpeg_prior`); None for a file without them.
            full_precision: Run the torch network in float32 whatever the precision (no
                bf16, no CUDA fp16): for a 16-bit image, whose levels bf16 would round to
                about 8 bits (0.30 of an 8-bit level RMS on a 16-bit gradient, f32 0.21).
                OpenVINO's stages keep the precision they were compiled in.
            on_tile: For a tiled image, called with each tile as soon as it is done
                (:class:`rbqe.results.TileDone`: its box, its exit, its pixels finished
                as the result's are, tiles done so far), so that a caller can show the
                result fill in; never for an untiled image. Costs nothing when None; the
                result is the same either way.

        Raises:
            RBQEError: Out of device memory even with ``MIN_TILE`` tiles. (A smaller
                out-of-memory is retried with smaller tiles, which later calls then keep;
                exits reported to ``on_exit`` before it are then reported again, and the
                tiles to ``on_tile`` from the first, cut anew.)
        """
        mode = parse_exit_mode(mode)
        img = _as_hwc(image)
        h, w = img.shape[:2]
        t0 = time.perf_counter()
        tile = 0 if self.runs_whole(h, w, full_precision) else self.tile
        hooks = Hooks(on_exit, progress, cancel, on_tile)
        self._precise.on = full_precision  # per thread: _start and _autocast read it
        try:
            result, tile, retries = self._enhance_retrying(img, mode, tile, hooks,
                                                           keep_session, prior)
        finally:
            self._precise.on = False
        if retries:
            # The device will not have more memory for the next image of a batch: keep
            # the tile that worked instead of failing and retrying on every photo.
            self.tile = tile
        result.tile_size, result.oom_retries = tile, retries
        result.total_ms = (time.perf_counter() - t0) * 1000
        return result

    def _enhance_retrying(self, img: np.ndarray, mode: ExitMode, tile: int, hooks: Hooks,
                          keep_session: bool, prior: JpegPrior | None
                          ) -> tuple[EnhanceResult, int, int]:
        """:meth:`enhance`'s work, retried with less memory after running out of it;
        returns the result, the tile that worked and the number of retries."""
        h, w = img.shape[:2]
        retries = 0
        while True:
            try:
                if tile:
                    result = tiled.enhance_tiled(self, img, mode, tile, hooks, prior)
                else:
                    result = whole.enhance_whole(self, img, mode, hooks, keep_session, prior)
                return result, tile, retries
            except RuntimeError as exc:  # torch.OutOfMemoryError is one too
                if not out_of_memory(exc):
                    raise
                # Only the message leaves this block: the traceback holds the failed
                # attempt's tensors, and is dropped with ``exc`` at its end.
                error = str(exc).split("\n", 1)[0]
            if tile and self.tile_batch > 1:  # first the same tiles, one at a time
                self._free_device()
                log.warning("out of %s memory with %d tiles at once; retrying one tile at "
                            "a time (%s)", self.device.type.upper(), self.tile_batch, error)
                self.max_batch = 1
            else:
                tile = self._after_out_of_memory(tile or max(h, w), bool(tile), error)
            retries += 1

    def enhance_many(
        self,
        images: list[np.ndarray],
        mode: ExitMode = "auto",
        *,
        priors: list[JpegPrior | None] | None = None,
        batch: int | None = None,
    ) -> list[EnhanceResult]:
        """Enhance several images; the same results as :meth:`enhance` of each, in order.

        Where batching pays (the torch backend off the CPU fast path: a GPU), images of one
        shape that run whole walk the exits together, ``batch`` (default
        :attr:`max_batch`) at a time (:mod:`rbqe.batched`); each still gets its own exit.
        The rest, and a batch that runs out of device memory, go one by one through
        :meth:`enhance`.
        """
        mode = parse_exit_mode(mode)
        batch = self.max_batch if batch is None else batch
        imgs = [_as_hwc(image) for image in images]
        priors = list(priors) if priors is not None else [None] * len(imgs)
        if len(priors) != len(imgs):
            raise ValueError(f"{len(priors)} priors for {len(imgs)} images")
        results: list[EnhanceResult | None] = [None] * len(imgs)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, img in enumerate(imgs):
            fits = self.runs_whole(img.shape[0], img.shape[1])
            if self.batches and fits and batch > 1:
                groups.setdefault(img.shape, []).append(i)
            else:
                results[i] = self.enhance(img, mode, prior=priors[i])
        for members in groups.values():
            for start in range(0, len(members), batch):
                part = members[start : start + batch]
                for i, result in zip(part, self._enhance_part(imgs, part, mode, priors),
                                     strict=True):
                    results[i] = result
        return [r for r in results if r is not None]

    def runs_whole(self, height: int, width: int, full_precision: bool = False) -> bool:
        """Whether an image of this size runs whole (not tiled) under this Enhancer; in
        full precision (float32 maps) by one tile's pixels."""
        budget = self.tile * self.tile if full_precision else self.whole_pixels
        return fits_one_tile(height, width, self.tile, budget)

    @property
    def batches(self) -> bool:
        """Whether images (:meth:`enhance_many`) and tiles walk the exits in batches: on
        the torch module path (a GPU), where batch 1 leaves most of the device idle. The
        CPU's fast path and OpenVINO run one at a time."""
        return self.backend.name == "torch" and not self.fast

    @property
    def tile_batch(self) -> int:
        """How many tiles of a tiled image walk together: 1 unless :attr:`batches`; on
        CUDA as many as half the free device memory holds, at most :attr:`max_batch`."""
        if not self.batches:
            return 1
        n = self.max_batch
        if self.device.type == "cuda" and self.tile:
            free, _ = torch.cuda.mem_get_info(self.device)
            n = min(n, int(free // 2 // (CUDA_BYTES_PER_PIXEL * self.tile * self.tile)))
        return max(1, n)

    def _enhance_part(self, imgs: list[np.ndarray], part: list[int], mode: ExitMode,
                      priors: list[JpegPrior | None]) -> list[EnhanceResult]:
        """One batch of same-shape images; one by one if the device runs out of memory."""
        if len(part) > 1:
            try:
                return batched.enhance_batch(self, [imgs[i] for i in part], mode,
                                             [priors[i] for i in part])
            except torch.OutOfMemoryError as exc:
                error = str(exc).split("\n", 1)[0]
            self._free_device()
            log.warning("out of %s memory with a batch of %d images; going on one by one "
                        "(%s)", self.device.type.upper(), len(part), error)
            self.max_batch = 1
        return [self.enhance(imgs[i], mode, prior=priors[i]) for i in part]

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
        hooks = Hooks(on_exit, cancel=cancel)
        while session.run.exits_done < up_to:
            hooks.check_cancel()
            e = whole.next_exit(self, session.run, session.x, session.img, session.walk)
            e.decision = self._decision(session.walk.signals, result)
            result.exits.append(e)
            hooks.exit_done(e)
        if session.run.exits_done >= NUM_EXITS:
            result._session = None
        if result.mode == "all":  # the decision may need exits auto had not reached
            result.chosen, result.decision = self._decide(session.walk.signals, result)
        result.total_ms += (time.perf_counter() - t0) * 1000
        return result

    def _after_out_of_memory(self, side: int, tiled: bool, error: str) -> int:
        """Frees the device's cached memory and returns the tile side to retry with:
        half of ``side`` (a tile, or an untiled image's longer side), at least
        ``MIN_TILE``; raises :class:`RBQEError` when that is no smaller."""
        self._free_device()
        smaller = halved_tile(side)
        if not tiled and self.tile and side > self.tile:
            # Whole by its pixels, longer than a tile a side (a long, thin strip): cut it
            # at the tile given; half its side would leave tiles larger than that.
            smaller = self.tile
        what = f"{side}-pixel tiles" if tiled else "the whole image"
        if smaller >= side:
            raise RBQEError(
                f"out of {self.device.type.upper()} memory even with {what} (the smallest "
                f"tile is {MIN_TILE} pixels); "
                + ("close other programs to free memory " if self.device.type == "cpu"
                   else "free device memory or use --device cpu ")
                + f"({error})"
            )
        log.warning("out of %s memory with %s; retrying with %d-pixel tiles (%s)",
                    self.device.type.upper(), what, smaller, error)
        return smaller

    # -- the steps both paths share ------------------------------------------------------
    def _prepare_input(self, pixels: np.ndarray) -> torch.Tensor:
        """``(h, w, C)`` pixels -> the padded ``(1, C_model, hp, wp)`` network input on the
        device: luma for a luma model, grey repeated for an RGB model."""
        if self.channels == 1:
            net_in = luma_of(pixels)[None]
        else:
            if pixels.shape[2] == 1:
                pixels = np.repeat(pixels, 3, axis=2)
            net_in = np.ascontiguousarray(pixels.transpose(2, 0, 1))
        x = torch.from_numpy(net_in)[None]
        return pad_to_multiple(x).to(self.device).contiguous(memory_format=self.memory_format)

    def _start(self, xs: list[torch.Tensor], stats: EcaStats, fast: bool | None = None
               ) -> Run:
        """One run for the inputs ``xs`` (of one padded shape) stacked as its rows; the
        engine's fast path unless ``fast`` says otherwise."""
        x = xs[0] if len(xs) == 1 else torch.cat(xs).contiguous(memory_format=self.memory_format)
        return self.backend.start(x, stats, fast=self.fast if fast is None else fast,
                                  full_precision=self._full_precision())

    def _full_precision(self) -> bool:
        """Whether this thread's current :meth:`enhance` asked for float32."""
        return getattr(self._precise, "on", False)

    def _autocast(self) -> torch.autocast:
        """fp16 autocast for the network on CUDA when enabled (off elsewhere, and for an
        image enhanced in full precision)."""
        return torch.autocast("cuda", dtype=torch.float16,
                              enabled=self.fp16 and not self._full_precision())

    def _stage(self, run: Run, crop: tuple[int, int] | None = None) -> torch.Tensor:
        """The next exit's output, every row of ``run`` (cropped to ``crop`` rows and
        columns when given), float32 clamped to ``[0, 1]``; the device is synchronised,
        so the time up to here is the network's (``advance`` would skip the head)."""
        with self._autocast():
            out = run.next_exit()
        if crop is not None:
            out = out[..., : crop[0], : crop[1]]
        out = out.float().clamp_(0, 1)
        self._sync()
        return out

    def _stage_and_score(self, run: Run, state: Walk, crop: tuple[int, int] | None = None,
                         *, assess: bool = True
                         ) -> tuple[torch.Tensor, ExitSignals, float, float]:
        """Runs the next exit of ``run`` and scores it into ``state``: the output (cropped
        to ``crop`` rows and columns when given, float32 clamped to ``[0, 1]``), its
        signals, and the network and scoring times in ms. Without ``assess`` the
        assessor's score and block statistics are NaN (only the change is measured)."""
        t0 = time.perf_counter()
        out = self._stage(run, crop)
        t1 = time.perf_counter()
        signals = self._signals(run.exits_done, out, state, assess)
        return out, signals, (t1 - t0) * 1000, (time.perf_counter() - t1) * 1000

    def _signals(self, k: int, out: torch.Tensor, state: Walk, assess: bool = True
                 ) -> ExitSignals:
        """Scores exit ``k``'s output and gathers the policy's signals into ``state``."""
        y = self._luma_of(out)
        a = iqa.assess(y) if assess else iqa.Assessment(np.nan, np.nan, np.nan, np.nan)
        change = float((y - state.prev_luma).abs().mean()) * 255
        state.prev_luma = y
        key = f"0_{k}"
        eca = None
        if key in state.stats.sums:
            means = state.stats.sums[key][0] / state.stats.counts[key]
            eca = means[-self.net.config.width:].cpu().numpy().astype(np.float64)
        s = ExitSignals(k, a.score, a.blockiness, a.blur, a.smooth_share, change, eca)
        state.signals.append(s)
        return s

    def _output_frame(self, img: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """A frame with the layout of the network output's finished result (3 planes for
        a luma model on RGB, or for an RGB model), holding ``out`` (the network output,
        ``(H, W, out_channels)``) in its first planes; zeros to blend tiles into when
        ``out`` is None."""
        channels = max(img.shape[2], self.net.config.out_channels)
        if out is not None and out.shape[2] == channels:
            return np.ascontiguousarray(out, dtype=np.float32)
        frame = np.zeros((*img.shape[:2], channels), np.float32)
        if out is not None:
            frame[..., : out.shape[2]] = out
        return frame

    def _finish(self, frame: np.ndarray, img: np.ndarray) -> np.ndarray:
        """The network output in ``frame`` (see :meth:`_output_frame`) -> the result, band
        by band: RGB from the output luma and the input's chroma, or grey from an RGB
        model's output."""
        h, w = img.shape[:2]
        if self.channels == 1 and img.shape[2] == 3:
            for r0, r1 in row_bands(h, w, color.BAND_PIXELS):
                y_in = np.empty((r1 - r0, img.shape[1]), np.float32)
                cbcr = np.empty((*y_in.shape, 2), np.float32)
                split_band(img[r0:r1], y_in, cbcr)
                y = frame[r0:r1, :, 0].copy()  # the output's R plane is written over it
                rgb_band(y, cbcr, frame[r0:r1])
            return frame
        if self.channels == 3 and img.shape[2] == 1:
            gray = np.empty((*img.shape[:2], 1), np.float32)
            for r0, r1 in row_bands(h, w, color.BAND_PIXELS):
                np.clip(luma_of(frame[r0:r1]), 0, 1, out=gray[r0:r1, :, 0])
            return gray
        return frame

    # -- helpers -----------------------------------------------------------------------
    def _luma_of(self, out: torch.Tensor) -> torch.Tensor:
        return out if out.shape[1] == 1 else iqa.luma(out)

    def _result(self, mode: ExitMode, img: np.ndarray, prior: JpegPrior | None) -> EnhanceResult:
        h, w = img.shape[:2]
        return EnhanceResult([], NUM_EXITS, self.threshold, mode, str(self.device), (w, h),
                             min_exit=self.min_exit, policy=self.policy, prior=prior,
                             gray_input=img.shape[2] == 1,
                             gmacs_exit5=self.gmacs(padded_size(h), padded_size(w))[-1])

    def _decision(self, signals: list[ExitSignals], result: EnhanceResult) -> Decision:
        """The policy's verdict at the last exit of ``signals``."""
        return self.policy.decide(signals, result.prior, gray=result.gray_input)

    def _decide(self, signals: list[ExitSignals], result: EnhanceResult
                ) -> tuple[int, Decision]:
        """The exit the result reports and why (:func:`rbqe.exit_policy.choose`)."""
        return choose(self.policy, result.mode, signals, result.prior, result.gray_input)

    def passes(self, exit_: int, score: float) -> bool:
        """Whether the assessor rule may stop at exit ``exit_`` with this IQA score (an
        assessor policy's own threshold and earliest exit)."""
        threshold = self.threshold
        return threshold is not None and may_stop(exit_, score, threshold, self.min_exit)

    def _free_device(self) -> None:
        """After an out-of-memory error: the failed attempt's tensors, should a reference
        cycle hold them, and the device's cached blocks."""
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


@dataclass
class _Limits:
    """An Enhancer's memory settings, which out-of-memory fallbacks lower. Shared by its
    shallow copies (the app's per-job copies under another policy), so that what one job
    learnt about the device holds for the next."""

    tile: int
    max_batch: int
    whole_2mp: bool  # whether images of up to WHOLE_PIXELS run whole


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says the device ran out of memory: CUDA's OutOfMemoryError, or the
    CPU allocator's RuntimeError (a host with strict overcommit or a memory limit refuses
    the allocation instead of killing the process: "DefaultCPUAllocator: can't allocate
    memory", "not enough memory" on Windows), which smaller tiles may then avoid."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc)
    return "DefaultCPUAllocator" in text and ("can't allocate" in text
                                              or "not enough memory" in text)


def _as_hwc(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] not in (1, 3):
        raise ValueError(f"expected (H, W), (H, W, 1) or (H, W, 3) pixels, got {img.shape}")
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"empty image {img.shape}")
    return img
