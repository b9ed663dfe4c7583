"""The early-exit enhancer: device, padding, colour, tiling and the exit loop (the exit
rule itself is :mod:`rbqe.exit_policy`'s).

Plain callbacks, no Qt. Images come in and go out as ``(H, W, C)`` float32 arrays in
``[0, 1]`` with ``C`` = 1 (gray) or 3 (RGB); alpha is the caller's (see :mod:`rbqe.io`).

How the exit is chosen when an image is tiled
---------------------------------------------
A tiled image cannot keep every tile's features alive (24 MP x 32 channels x 6 nodes is
tens of GB), so it cannot walk the exits for the whole picture and stop. Instead a few
*sample tiles* spread over the grid (centred crops of at most ``SAMPLE_SIDE`` pixels)
walk the exits progressively; the exit policy (:mod:`rbqe.exit_policy`) decides on the
mean of their signals (scores, block statistics, change between exits) and their ECA means.
The samples also record the ECA blocks' pooled channel means; every tile is
then computed to the chosen exit with those shared means, so that all tiles use the same
attention gates and no seam appears where two tiles would have pooled different
statistics. The chosen exit's score is finally measured on the whole assembled image and
reported beside the sampled ones.

Memory of a tiled image
-----------------------
Besides the network's working set (one tile), a tiled image costs the caller's input and
one output frame per exit returned, and little else: each tile's network input is
converted from the input pixels when the tile runs, the tiles are blended straight into
the output frame (into its luma plane for a luma model), chroma is recomputed from the
input in bands of rows at the end, and the assembled image is scored band by band
(:func:`rbqe.iqa.score_rows`). A 100 MP RGB photo so needs about two float32 frames.

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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rbqe import iqa, tiling
from rbqe.backends import Run, make_backend
from rbqe.color import luma_of, rgb_band, row_bands, split_band, split_ycbcr, ycbcr_to_rgb
from rbqe.errors import Cancelled, RBQEError, WeightsError
from rbqe.exit_policy import (
    Decision,
    ExitMode,
    ExitPolicy,
    ExitSignals,
    JpegPrior,
    PolicySet,
    choose,
    ends_walk,
    last_exit,
    may_stop,
    parse_exit_mode,
)
from rbqe.model import MULTIPLE, NUM_EXITS, EcaStats, RBQENet, gmacs_per_exit
from rbqe.tiling import (
    DEFAULT_TILE,
    MIN_TILE,
    TILE_OVERLAP,
    Box,
    blend_weight,
    halved_tile,
    pad_to_multiple,
    padded_box,
    tile_side,
)
from rbqe.weights import (
    WeightsInfo,
    default_weights_path,
    load_weights,
    missing_weights_message,
)

log = logging.getLogger(__name__)



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
        signals: What the exit policy reads at this exit (for a tiled image: the sample
            tiles' mean; None for exits computed only for the whole picture).
    """

    exit: int
    image: np.ndarray
    score: float
    time_ms: float
    iqa_ms: float
    gmacs: float
    signals: ExitSignals | None = None
    decision: Decision | None = None  # the policy's verdict at this exit, stop or go on


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
        tile_size: Tile side used (0: untiled); smaller than the Enhancer's after an
            out-of-memory retry.
        oom_retries: How many times the image was started again with smaller tiles after
            running out of device memory.
        min_exit: The earliest exit auto could stop at.
        policy: The exit policy used.
        decision: Why auto stopped where it did (for ``all``: where it would stop; for a
            forced exit: why it is that exit); :attr:`exit_reason` is its JSON.
        prior: The input file's JPEG tables, when given.
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
    tile_size: int = 0
    oom_retries: int = 0
    min_exit: int = 1
    policy: ExitPolicy | None = None
    decision: Decision | None = None
    prior: JpegPrior | None = None
    gray_input: bool = False
    _session: _Session | None = field(default=None, repr=False)

    @property
    def exit_reason(self) -> dict | None:
        return None if self.decision is None else self.decision.to_json()

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

    run: Run
    prep: _Prepared
    walk: _Walk


@dataclass
class _Prepared:
    x: torch.Tensor  # (1, C_model, Hp, Wp) padded network input
    h: int
    w: int
    chroma: np.ndarray | None  # (H, W, 2) CbCr kept by a luma model
    out_gray: bool  # RGB model fed a gray image: return gray


@dataclass
class _Walk:
    """What one progressive run keeps between exits for the exit policy's signals."""

    stats: EcaStats  # records the ECA means as the nodes are computed
    prev_luma: torch.Tensor | None = None  # the previous exit's luma (the input's at first)
    signals: list[ExitSignals] = field(default_factory=list)


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
        tile: Tile side in pixels (multiple of 32); images larger than one tile are tiled.
            ``0`` disables tiling.
        net: An already built network (tests, calibration); skips loading.
        backend: ``auto``, ``torch`` or ``openvino`` (see :func:`rbqe.backends.make_backend`).
        precision: ``auto``, ``f32`` or ``bf16`` (OpenVINO only); ``f32`` also turns off
            fp16 on CUDA.
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
    ) -> None:
        self.device = pick_device(device)
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
        tile = DEFAULT_TILE if tile is None else int(tile)
        self.tile = tile_side(tile)
        self.fp16 = self.device.type == "cuda" and precision != "f32"
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
        # Who runs the stages: torch (this net) or OpenVINO (its exported stage graphs).
        self.backend = make_backend(backend, self.net, self.device, precision=precision,
                                    in_memory=in_memory)

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

        Raises:
            RBQEError: Out of device memory even with ``MIN_TILE`` tiles. (A smaller
                out-of-memory is retried with smaller tiles, which later calls then keep;
                exits reported to ``on_exit`` before it are then reported again.)
        """
        mode = parse_exit_mode(mode)
        img = _as_hwc(image)
        h, w = img.shape[:2]
        t0 = time.perf_counter()
        tile = self.tile if self.tile and (h > self.tile or w > self.tile) else 0
        retries = 0
        while True:
            try:
                if tile:
                    result = self._enhance_tiled(img, mode, tile, on_exit, progress, cancel,
                                                 prior)
                else:
                    result = self._enhance_whole(img, mode, on_exit, progress, cancel,
                                                 keep_session, prior)
                break
            except torch.OutOfMemoryError as exc:
                # Only the message leaves this block: the traceback holds the failed
                # attempt's tensors, and is dropped with ``exc`` at its end.
                error = str(exc).split("\n", 1)[0]
            tile = self._after_out_of_memory(tile or max(h, w), bool(tile), error)
            retries += 1
        if retries:
            # The device will not have more memory for the next image of a batch: keep
            # the tile that worked instead of failing and retrying on every photo.
            self.tile = tile
        result.tile_size, result.oom_retries = tile, retries
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
            e = self._next_exit(session.run, session.prep, session.walk)
            e.decision = self._decision(session.walk.signals, result)
            result.exits.append(e)
            if on_exit:
                on_exit(e)
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
        gc.collect()  # the failed attempt's tensors, should a reference cycle hold them
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        smaller = halved_tile(side)
        what = f"{side}-pixel tiles" if tiled else "the whole image"
        if smaller >= side:
            raise RBQEError(
                f"out of {self.device.type.upper()} memory even with {what} (the smallest "
                f"tile is {MIN_TILE} pixels); free device memory or use --device cpu "
                f"({error})"
            )
        log.warning("out of %s memory with %s; retrying with %d-pixel tiles (%s)",
                    self.device.type.upper(), what, smaller, error)
        return smaller

    # -- whole image -------------------------------------------------------------------
    @torch.inference_mode()
    def _enhance_whole(self, img, mode, on_exit, progress, cancel, keep_session,
                       prior) -> EnhanceResult:
        prep = self._prepare(img)
        state = _Walk(EcaStats(mode="record"))
        run = self.backend.start(prep.x, state.stats, fast=self.fast)
        result = self._result(mode, img, prior)
        last = last_exit(mode)
        for k in range(1, last + 1):
            _check_cancel(cancel)
            if progress:
                progress("exit", k - 1, last)
            e = self._next_exit(run, prep, state)
            e.decision = self._decision(state.signals, result)
            result.exits.append(e)
            if on_exit:
                on_exit(e)
            if ends_walk(mode, e.decision):
                break
        result.chosen, result.decision = self._decide(state.signals, result)
        if progress:
            progress("exit", last, last)
        if keep_session and run.exits_done < NUM_EXITS:
            result._session = _Session(run, prep, state)
        return result

    @torch.inference_mode()
    def _next_exit(self, run: Run, prep: _Prepared, state: _Walk) -> ExitResult:
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.fp16):
            out = run.next_exit()
        out = out[..., : prep.h, : prep.w].float().clamp_(0, 1)
        self._sync()
        t1 = time.perf_counter()
        if state.prev_luma is None:
            state.prev_luma = self._luma_of(prep.x[..., : prep.h, : prep.w].float())
        signals = self._signals(run.exits_done, out, state)
        t2 = time.perf_counter()
        k = run.exits_done
        hp, wp = prep.x.shape[-2:]
        return ExitResult(k, self._finish(out, prep), signals.score, (t1 - t0) * 1000,
                          (t2 - t1) * 1000, self.gmacs(hp, wp)[k - 1], signals)

    def _signals(self, k: int, out: torch.Tensor, state: _Walk) -> ExitSignals:
        """Scores exit ``k``'s output and gathers the policy's signals into ``state``."""
        y = self._luma_of(out)
        a = iqa.assess(y)
        change = 0.0 if state.prev_luma is None else float((y - state.prev_luma).abs().mean()) * 255
        state.prev_luma = y
        key = f"0_{k}"
        eca = None
        if key in state.stats.sums:
            means = state.stats.sums[key][0] / state.stats.counts[key]
            eca = means[-self.net.config.width:].cpu().numpy().astype(np.float64)
        s = ExitSignals(k, a.score, a.blockiness, a.blur, a.smooth_share, change, eca)
        state.signals.append(s)
        return s

    # -- tiles ---------------------------------------------------------------------------
    @torch.inference_mode()
    def _enhance_tiled(self, img, mode, tile, on_exit, progress, cancel, prior) -> EnhanceResult:
        h, w = img.shape[:2]
        tiles = tiling.tiles(h, w, tile, TILE_OVERLAP)
        boxes = [b for b, _, _ in tiles]
        result = self._result(mode, img, prior)
        result.tiled, result.tiles = True, len(boxes)
        stats = EcaStats(mode="record")
        sample_boxes = tiling.sample_boxes(boxes)
        last = last_exit(mode)
        n_steps = len(sample_boxes) + len(boxes)

        # 1. Sample tiles walk the exits; their mean score decides, their ECA means are kept.
        sample_scores: list[list[float]] = [[] for _ in range(NUM_EXITS)]
        sample_ms = [0.0] * NUM_EXITS
        chosen = last
        runs, walks = [], []
        for n, box in enumerate(sample_boxes):
            _check_cancel(cancel)
            if progress:
                progress("sample", n, n_steps)
            x = self._tile_input(img, box)
            runs.append(self.backend.start(x, stats, fast=self.fast))
            # Each sample's own walk keeps its previous luma; all share the ECA record.
            # Samples are scored padded, as they always were (the assessor's threshold was
            # calibrated so).
            walks.append(_Walk(stats, self._luma_of(x.float())))
        sampled: list[ExitSignals] = []
        decisions: list[Decision] = []
        for k in range(1, last + 1):
            for run, state in zip(runs, walks):
                _check_cancel(cancel)
                t0 = time.perf_counter()
                with torch.autocast("cuda", dtype=torch.float16, enabled=self.fp16):
                    out = run.next_exit().float().clamp_(0, 1)
                self._sync()
                sample_ms[k - 1] += (time.perf_counter() - t0) * 1000
                sample_scores[k - 1].append(self._signals(k, out, state).score)
            sampled.append(ExitSignals.mean([state.signals[-1] for state in walks]))
            # The ECA means over all the samples (each walk saw those of the samples before).
            sampled[-1].eca = walks[-1].signals[-1].eca
            decisions.append(self._decision(sampled, result))
            if ends_walk(mode, decisions[-1]):
                chosen = k
                break
        del runs, walks, out
        exits_wanted = list(range(1, NUM_EXITS + 1)) if mode == "all" else [chosen]
        if isinstance(mode, int):
            exits_wanted = [mode]

        # 2. Every tile to the exit(s) wanted, all with the same ECA means, blended
        # straight into the output frames.
        stats.mode = "fixed"
        frames = {k: self._output_frame(img) for k in exits_wanted}
        acc = {k: f[..., : self.net.config.out_channels] for k, f in frames.items()}
        stage_ms = [0.0] * NUM_EXITS
        for n, (box, wy, wx) in enumerate(tiles):
            _check_cancel(cancel)
            if progress:
                progress("tile", len(sample_boxes) + n, n_steps)
            run = self.backend.start(self._tile_input(img, box), stats, fast=self.fast)
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
                acc[k][y0:y1, x0:x1] += (tile_out.permute(1, 2, 0).cpu().numpy()
                                         * blend_weight(wy, wx))
                self._sync()
                stage_ms[k - 1] += (time.perf_counter() - t0) * 1000
            del run, out, tile_out
        del acc
        if progress:
            progress("tile", n_steps, n_steps)

        # 3. Assemble. Each assembled exit is scored on the whole image; the sample walk's
        # cost is counted in every exit's time and MACs since it was spent to get there.
        walked = sum(1 for sc in sample_scores if sc)
        overhead_macs = sum(self.gmacs(*padded_box(b))[walked - 1] for b in sample_boxes)
        overhead_ms = sum(sample_ms)
        for k in exits_wanted:
            image = self._finish_frame(frames.pop(k), img)
            t1 = time.perf_counter()
            full = _score_frame(image)
            iqa_ms = (time.perf_counter() - t1) * 1000
            macs = sum(self.gmacs(*padded_box(b))[k - 1] for b in boxes) + overhead_macs
            # One exit wanted: every tile ran stages 1..k for it (like its cumulative MACs).
            net_ms = stage_ms[k - 1] if mode == "all" else sum(stage_ms[:k])
            e = ExitResult(k, image, full, net_ms + (overhead_ms if k == exits_wanted[0]
                                                     else 0.0), iqa_ms, macs,
                           sampled[k - 1] if k <= len(sampled) else None,
                           decisions[k - 1] if k <= len(decisions) else None)
            result.exits.append(e)
            if on_exit:
                on_exit(e)
        result.chosen, result.decision = self._decide(sampled, result)
        assert mode != "auto" or result.chosen == chosen
        result.full_score = result.exit_result(result.chosen).score
        result.sampled_scores = [float(np.mean(sc)) for sc in sample_scores if sc]
        return result

    def _tile_input(self, img: np.ndarray, box: Box) -> torch.Tensor:
        """The padded network input of one tile, converted from the input pixels."""
        y0, y1, x0, x1 = box
        x = torch.from_numpy(self._net_input(img[y0:y1, x0:x1]))[None]
        return pad_to_multiple(x).to(self.device).contiguous(memory_format=self.memory_format)

    def _output_frame(self, img: np.ndarray) -> np.ndarray:
        """A zeroed frame with the layout of a luma model's RGB result (or an RGB
        model's), whose first ``out_channels`` planes accumulate the blended tiles."""
        channels = max(img.shape[2], self.net.config.out_channels)
        return np.zeros((*img.shape[:2], channels), np.float32)

    def _finish_frame(self, frame: np.ndarray, img: np.ndarray) -> np.ndarray:
        """The blended network output in ``frame`` -> the result, band by band: RGB from
        the output luma and the input's chroma, or grey from an RGB model's output."""
        if self.channels == 1 and img.shape[2] == 3:
            for r0, r1 in row_bands(*img.shape[:2]):
                y_in = np.empty((r1 - r0, img.shape[1]), np.float32)
                cbcr = np.empty((*y_in.shape, 2), np.float32)
                split_band(img[r0:r1], y_in, cbcr)
                y = frame[r0:r1, :, 0].copy()  # the output's R plane is written over it
                rgb_band(y, cbcr, frame[r0:r1])
            return frame
        if self.channels == 3 and img.shape[2] == 1:
            gray = np.empty((*img.shape[:2], 1), np.float32)
            for r0, r1 in row_bands(*img.shape[:2]):
                np.clip(luma_of(frame[r0:r1]), 0, 1, out=gray[r0:r1, :, 0])
            return gray
        return frame

    # -- helpers -----------------------------------------------------------------------
    def _prepare(self, img: np.ndarray) -> _Prepared:
        h, w, c = img.shape
        chroma = None
        if self.channels == 1 and c == 3:
            y, chroma = split_ycbcr(img)
            net_in = y[None]
        else:
            net_in = self._net_input(img)
        x = torch.from_numpy(net_in)[None]
        x = pad_to_multiple(x).to(self.device).contiguous(memory_format=self.memory_format)
        return _Prepared(x, h, w, chroma, self.channels == 3 and c == 1)

    def _net_input(self, pixels: np.ndarray) -> np.ndarray:
        """``(h, w, C)`` pixels -> ``(C_model, h, w)`` float32 network input: luma for a
        luma model, grey repeated for an RGB model."""
        if self.channels == 1:
            return luma_of(pixels)[None]
        if pixels.shape[2] == 1:
            pixels = np.repeat(pixels, 3, axis=2)
        return np.ascontiguousarray(pixels.transpose(2, 0, 1))

    def _luma_of(self, out: torch.Tensor) -> torch.Tensor:
        return out if out.shape[1] == 1 else iqa.luma(out)

    def _finish(self, out: torch.Tensor, prep: _Prepared) -> np.ndarray:
        arr = out[0].permute(1, 2, 0).cpu().numpy()
        return self._finish_array(arr, prep)

    def _finish_array(self, arr: np.ndarray, prep: _Prepared) -> np.ndarray:
        if prep.chroma is not None:
            return ycbcr_to_rgb(arr[..., 0], prep.chroma)
        if prep.out_gray:
            return np.clip(luma_of(arr), 0, 1)[..., None].astype(np.float32)
        return np.ascontiguousarray(arr, dtype=np.float32)

    def _result(self, mode: ExitMode, img: np.ndarray, prior: JpegPrior | None) -> EnhanceResult:
        h, w = img.shape[:2]
        return EnhanceResult([], NUM_EXITS, self.threshold, mode, str(self.device), (w, h),
                             min_exit=self.min_exit, policy=self.policy, prior=prior,
                             gray_input=img.shape[2] == 1)

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

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


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


def _score_frame(image: np.ndarray) -> float:
    """IQA score of an assembled ``(H, W, C)`` result, its luma made band by band."""
    h, w = image.shape[:2]
    return iqa.score_rows(lambda r0, r1: luma_of(image[r0:r1]), h, w)
