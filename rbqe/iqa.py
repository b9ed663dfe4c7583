"""No-reference quality score of RBQE (Xing et al., ECCV 2020): the Tchebichef-moment IQAM.

The score decides when RBQE exits early, so it must be cheap and match the paper's MATLAB
assessor (``cal_QualityScore.m``). It is pinned to golden values of that code to 1e-6.

Recipe, per luma image in ``[0, 1]``:

1. Cut ``block x block`` blocks (8 for JPEG, 4 for HEVC) on a grid offset by half a block
   (0-based rows/columns ``block//2 + k*block``), ``floor(H/block) - 1`` by
   ``floor(W/block) - 1`` of them, so each block straddles the codec's block boundaries.
2. Per block ``P``: ``P / ||P||_2``, minus its mean, then ``M = T @ P @ T.T`` with ``T`` the
   orthonormal Tchebichef basis.
3. ``SSM = sum(M**2) - M00**2``. ``SSM > 0.004``: textured, else smooth.
4. Textured: blur ``1 - mean((2*M*Mb + C) / (M**2 + Mb**2 + C))``, ``Mb`` the moments of the
   block after a 3x3 Gaussian (sigma 5) that sees zero padding *inside the block* (MATLAB
   ``imfilter`` on the extracted patch; the golden values rule out neighbour pixels and
   replicate padding by 7e-3 to 5e-2). ``C = 1e-5``.
5. Smooth: ``Q_v = sum|M[-1, :]| / (sum|M| - |M00| + C)``, ``Q_h`` likewise with ``M[:, -1]``;
   each is clipped to ``T = 0.05`` *before* averaging, then ``log(1 - Q) / log(1 - T)``
   (the MATLAB order; the golden values confirm it).
6. ``score = mean_blockiness ** 0.9 * mean_blur ** 0.1``; an empty class counts as 1.

Higher is better. Note that a flat block has no last-order energy, so it counts as maximally
blocky (0): a constant image scores 0, as in the MATLAB code.

Departures from MATLAB, where it has no defined answer: an all-zero block (NaN there) is
skipped, i.e. counted in neither class; an image with no (remaining) blocks scores 1.0.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import cast

import numpy as np
import torch

from rbqe import color
from rbqe.bands import row_bands

__all__ = ["luma", "score", "score_rows", "score_torch", "tchebichef_basis"]

SSM_THRESHOLD = 0.004  # smooth/textured split
Q_MAX = 0.05  # the paper's T: clip of Q_v, Q_h
STABILITY_C = 1e-5
BLUR_SIGMA = 5.0
BLUR_SIZE = 3
W_BLOCKINESS = 0.9
W_BLUR = 0.1
# Blocks are scored in horizontal bands of about this many pixels: the block arithmetic
# makes ~10 float32 temporaries per pixel, so a 100 MP luma frame scored at once peaked at
# ~4 GB. Blockiness and blur are means over blocks, so the bands' sums and counts add up.
BAND_PIXELS = 1 << 20


@functools.lru_cache(maxsize=16)
def _basis_cached(n: int) -> np.ndarray:
    # Gram-Schmidt on 1, x, x^2, ... over x = 0..n-1 in exact rationals: the Vandermonde
    # matrix is badly conditioned (~1e6 for n=8), so a float QR would lose digits. Only the
    # final normalisation rounds, once per entry.
    xs = [Fraction(x) for x in range(n)]
    rows: list[list[Fraction]] = []
    for degree in range(n):
        v = [x**degree for x in xs]
        for r in rows:
            rr = sum((a * a for a in r), Fraction(0))
            coef = sum((a * b for a, b in zip(v, r, strict=True)), Fraction(0)) / rr
            v = [a - coef * b for a, b in zip(v, r, strict=True)]
        rows.append(v)
    # Monic in x at every step, so the leading coefficient is already positive.
    out = np.empty((n, n), dtype=np.float64)
    for k, r in enumerate(rows):
        norm2 = sum((a * a for a in r), Fraction(0))
        # sqrt of the exact rational: a / sqrt(norm2) rounded once via float division.
        scale = math.sqrt(norm2.numerator) / math.sqrt(norm2.denominator)
        out[k] = [float(a) / scale for a in r]
    out.setflags(write=False)
    return out


def tchebichef_basis(n: int) -> np.ndarray:
    """Orthonormal discrete Tchebichef (Chebyshev) polynomials on ``x = 0..n-1``.

    Args:
        n: Block size, ``n >= 1``.

    Returns:
        ``(n, n)`` float64 array; row ``k`` is the degree-``k`` polynomial evaluated at
        ``0..n-1``, with positive leading coefficient, so ``T @ T.T == I``. For ``n = 8``,
        row 0 is ``0.3536...`` and row 1 runs ``-0.5401 ... 0.5401``.
    """
    if n < 1:
        raise ValueError(f"basis size must be >= 1, got {n}")
    return _basis_cached(int(n)).copy()


def _gaussian_kernel() -> np.ndarray:
    # MATLAB fspecial('gaussian', 3, 5); its eps-cutoff never triggers for sigma 5.
    ax = np.arange(BLUR_SIZE, dtype=np.float64) - (BLUR_SIZE - 1) / 2
    g = np.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * BLUR_SIGMA**2))
    return g / g.sum()


@dataclass(frozen=True)
class _Operators:
    """Linear maps on a row-major flattened ``b x b`` block (``n = b*b`` entries).

    Attributes:
        moments: ``(n, n)``: ``P @ moments`` are the moments ``kron(T, T) @ P``, with the
            DC column zeroed (M00 of the normalised, mean-free block is 0).
        both: ``(n, 2n)``: ``moments`` beside the moments of the blurred block,
            ``kron(T, T) @ Blur`` (DC kept: the blurred block's norm needs it).
        blur_of_one: ``(n,)``: the blurred moments of an all-ones block,
            ``kron(T, T) @ Blur @ 1``.
    """

    moments: torch.Tensor
    both: torch.Tensor
    blur_of_one: torch.Tensor


@functools.lru_cache(maxsize=16)
def _operators_np(block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:class:`_Operators`' arrays in float64."""
    t = tchebichef_basis(block)
    k = np.kron(t, t)
    # Blur as a matrix: a block-local 3x3 correlation with zero padding (the MATLAB code
    # filters the extracted patch). Folding it into the moment map makes the blurred
    # moments one more matmul.
    g = _gaussian_kernel()
    r = BLUR_SIZE // 2
    blur = np.zeros((block * block, block * block))
    for i in range(block):
        for j in range(block):
            for di in range(-r, r + 1):
                for dj in range(-r, r + 1):
                    ii, jj = i + di, j + dj
                    if 0 <= ii < block and 0 <= jj < block:
                        blur[i * block + j, ii * block + jj] = g[di + r, dj + r]
    kb = k @ blur
    moments = k.T.copy()
    moments[:, 0] = 0
    return moments, np.concatenate([moments, kb.T], axis=1), kb.sum(axis=1)


@functools.lru_cache(maxsize=32)
def _operators(block: int, device: torch.device, dtype: torch.dtype) -> _Operators:
    return _Operators(*(torch.as_tensor(a, dtype=dtype, device=device).contiguous()
                        for a in _operators_np(block)))


def _blocks(rows: torch.Tensor, block: int) -> torch.Tensor:
    """``(B, 1, nh*block, W)`` rows that start on a block row -> a ``(B, nh, nw, block,
    block)`` view of their blocks; columns start half a block in."""
    b = rows.shape[0]
    nh = rows.shape[-2] // block
    nw = rows.shape[-1] // block - 1
    o = block // 2
    crop = rows[:, 0, :, o : o + nw * block]
    return crop.reshape(b, nh, block, nw, block).permute(0, 1, 3, 2, 4)


def _bands(height: int, width: int, block: int) -> list[tuple[int, int]]:
    """Row ranges ``[r0, r1)`` of whole block rows (rows ``block//2 + k*block``) holding
    about ``BAND_PIXELS`` pixels each, to score a large image band by band."""
    o = block // 2
    n_rows = height // block - 1  # in blocks
    return [(o + a * block, o + b * block)
            for a, b in row_bands(n_rows, width * block, BAND_PIXELS)]


@torch.no_grad()
def score_torch(
    y: torch.Tensor, block: int = 8, *, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """RBQE quality score of luma images, vectorised over blocks and batch.

    Args:
        y: ``(B, 1, H, W)`` or ``(H, W)`` floating tensor, luma in ``[0, 1]``, any device.
            Each block is divided by its norm, so a global gain changes nothing: 8-bit
            values as ``0..255`` score the same as ``/255`` (and skip that rounding).
        block: Block size: 8 for JPEG, 4 for HEVC.
        dtype: Compute dtype. float32 (default) reproduces the float64 MATLAB golden values
            to 1e-7. Its limit is near-flat content: on an 8-bit ramp it drifts by ~1e-6,
            and on an exact float ramp (score ~1e-13) rounding the input to float32 already
            moves the score by ~1e-6 through ``x ** 0.9``. float64 (CPU/CUDA, 5x slower)
            agrees with the reference to ~1e-14.

    Returns:
        ``(B,)`` scores in ``[0, 1]`` (0-d for 2D input), higher = better, in ``dtype`` on
        ``y.device``. Images with no usable block (smaller than ``2*block`` or all zero)
        score 1.0.

    Raises:
        ValueError: on another shape or a block size below 2.
        TypeError: on a non-floating tensor.
    """
    if block < 2:
        raise ValueError(f"block must be >= 2, got {block}")
    if not torch.is_floating_point(y):
        raise TypeError(f"expected a floating tensor in [0, 1], got {y.dtype}")
    squeeze = y.dim() == 2
    if squeeze:
        y = y[None, None]
    if y.dim() != 4 or y.shape[1] != 1:
        raise ValueError(f"expected (B, 1, H, W) or (H, W) luma, got {tuple(y.shape)}")

    # Under a CUDA fp16 autocast the matmul would drop to half precision; the thresholds
    # and C = 1e-5 need fp32.
    with torch.autocast(device_type=y.device.type, enabled=False):
        return _score(y.to(dtype), block, squeeze)


@dataclass(frozen=True)
class Assessment:
    """The score of one image with the block statistics it is made of.

    Attributes:
        score: As :func:`score_torch`.
        blockiness: Mean blockiness term of the smooth blocks (1 when there are none).
        blur: Mean blur term of the textured blocks (1 when there are none).
        smooth_share: Share of the scored blocks that are smooth.
    """

    score: float
    blockiness: float
    blur: float
    smooth_share: float


@torch.no_grad()
def assess(y: torch.Tensor, block: int = 8) -> Assessment:
    """:func:`score_torch` of one ``(1, 1, H, W)`` luma image, with its block statistics
    (the early-exit gate reads them); the score is the same float32 value."""
    if y.dim() != 4 or y.shape[:2] != (1, 1):
        raise ValueError(f"expected (1, 1, H, W) luma, got {tuple(y.shape)}")
    with torch.autocast(device_type=y.device.type, enabled=False):
        y = y.float()
        height, width = y.shape[-2:]
        if height < 2 * block or width < 2 * block:
            return Assessment(1.0, 1.0, 1.0, 0.0)
        sums = _BlockSums()
        for r0, r1 in _bands(height, width, block):
            sums.add(y[..., r0:r1, :], block)
        return sums.assessment()


def _score(y: torch.Tensor, block: int, squeeze: bool) -> torch.Tensor:
    batch, height, width = y.shape[0], y.shape[-2], y.shape[-1]
    if height < 2 * block or width < 2 * block:
        ones = torch.ones(batch, dtype=y.dtype, device=y.device)
        return ones[0] if squeeze else ones
    sums = _BlockSums()
    for r0, r1 in _bands(height, width * batch, block):
        sums.add(y[..., r0:r1, :], block)
    out = sums.score(y.dtype)
    return out[0] if squeeze else out


class _BlockSums:
    """Running per-image sums and counts of the two block classes, over bands of rows.

    Each block's terms are float32 (the compute dtype); their sums are float64 on the CPU,
    so bands add up to what one band gives, to float64 rounding.
    """

    def __init__(self) -> None:
        # The int 0 until the first band is added (0 + its sums is its sums): tensors from then on.
        self.blockiness = self.smooth = self.blur = self.textured = cast(torch.Tensor, 0)
        self.device = torch.device("cpu")

    def add(self, rows: torch.Tensor, block: int) -> None:
        self.device = rows.device
        sums = _block_terms(_blocks(rows, block), block)
        self.blockiness = self.blockiness + sums[0]
        self.smooth = self.smooth + sums[1]
        self.blur = self.blur + sums[2]
        self.textured = self.textured + sums[3]

    def score(self, dtype: torch.dtype) -> torch.Tensor:
        def mean(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
            # Mean over the class's blocks; an empty class scores 1 (MATLAB).
            m = torch.where(count > 0, total / count.clamp_min(1), torch.ones_like(total))
            return m.to(dtype).to(self.device)

        s_block = mean(self.blockiness, self.smooth)
        s_blur = mean(self.blur, self.textured)
        # clamp_min: float32 rounding may push an all-sharp blur score a hair below 0.
        return s_block.clamp_min(0) ** W_BLOCKINESS * s_blur.clamp_min(0) ** W_BLUR

    def assessment(self) -> Assessment:
        """The first image's score and block statistics."""
        def mean(total: torch.Tensor, count: torch.Tensor) -> float:
            return float(total[0] / count[0]) if count[0] > 0 else 1.0

        blocks = float(self.smooth[0] + self.textured[0])
        return Assessment(float(self.score(torch.float32)[0]),
                          mean(self.blockiness, self.smooth), mean(self.blur, self.textured),
                          float(self.smooth[0]) / blocks if blocks else 0.0)


def _block_terms(
    p: torch.Tensor, block: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image of the blocks ``p`` ``(B, nh, nw, block, block)`` (any strides): the sum
    of blockiness over its smooth blocks, their count, the sum of blur over its textured
    blocks, their count; ``(B,)`` each, float64 on the CPU.

    Each class is computed on its own blocks only: blockiness needs the moments, blur the
    moments and the blurred moments. Sorting the blocks first costs a gather and saves the
    blurred moments of smooth blocks and the blockiness of textured ones.
    """
    batch, count, n = p.shape[0], p.shape[1] * p.shape[2], block * block
    ops = _operators(block, p.device, p.dtype)
    tiny = torch.finfo(p.dtype).tiny
    c = STABILITY_C

    # Subtract a per-block constant (the first pixel) before any sum of squares or moment
    # map: constants only change M00, which is zeroed anyway. This keeps float32 rounding
    # relative to the block's contrast rather than its brightness (without it float32
    # misses the golden values by up to 9e-3; with it, by 1e-7).
    # One pass gathers the blocks (a strided view of the rows) and centres them.
    pc = torch.empty((batch, p.shape[1], p.shape[2], block, block), dtype=p.dtype,
                     device=p.device)
    torch.sub(p, p[..., :1, :1], out=pc)
    pc = pc.view(batch * count, n)
    offset = p[..., 0, 0].reshape(batch * count, 1)
    # SSM is the energy of the normalised, mean-free block (T is orthonormal), so the split
    # needs no moments: the block's variance over its power (mean square).
    mean_c = pc.sum(dim=-1).div_(n)
    var = (pc * pc).sum(dim=-1).div_(n).sub_(mean_c * mean_c).clamp_min_(0)
    mean = mean_c + offset[:, 0]
    power = var + mean * mean  # ||P||^2 / n
    valid = power > 0  # an all-zero block has no normalisation (NaN in MATLAB): skip it
    textured = valid & (var > SSM_THRESHOLD * power)
    smooth = valid & ~textured
    inv_norm = torch.rsqrt(power.clamp_min(tiny) * n)

    # Smooth blocks: blockiness from |M|. The norm is a per-block factor, so it scales the
    # three sums rather than the moments.
    # torch.index_select rather than the method: tests/test_batched.py counts the batched
    # run's Tensor.index_select calls to see images leave it.
    rows_s = smooth.nonzero().squeeze(1)
    m_abs = (torch.index_select(pc, 0, rows_s) @ ops.moments).abs_().view(-1, block, block)
    scale = torch.index_select(inv_norm, 0, rows_s)
    denom = m_abs.sum(dim=(-2, -1)).mul_(scale).add_(c)  # sum|M| - |M00| + C, M00 being 0
    q_v = (m_abs[:, -1, :].sum(dim=-1).mul_(scale) / denom).clamp_max(Q_MAX)
    q_h = (m_abs[:, :, -1].sum(dim=-1).mul_(scale) / denom).clamp_max(Q_MAX)
    blockiness = torch.log1p(-(q_v + q_h) / 2) / math.log1p(-Q_MAX)

    # Textured blocks: blur = 1 - mean((2 M Mb + C) / (M^2 + Mb^2 + C)).
    rows_t = textured.nonzero().squeeze(1)
    both = torch.index_select(pc, 0, rows_t) @ ops.both
    m = both[:, :n] * torch.index_select(inv_norm, 0, rows_t)[:, None]
    # Blur does not preserve constants (zero padding darkens the rim), so the blurred
    # moments add back offset * (K @ Blur @ 1); their norm is ||Blur P||, DC included.
    mb = torch.addcmul(both[:, n:], torch.index_select(offset, 0, rows_t), ops.blur_of_one)
    mb.div_(torch.linalg.vector_norm(mb, dim=-1).clamp_min(tiny)[:, None])
    mb[:, 0] = 0
    # Fused and in place: this is the assessor's widest arithmetic, and each pass over the
    # (N, b*b) moments costs about as much as the arithmetic in it.
    c_t = torch.tensor(c, dtype=p.dtype, device=p.device)
    sim = torch.addcmul(c_t, m, mb, value=2)
    sim.div_(torch.addcmul(c_t, m, m).addcmul_(mb, mb))
    blur = 1 - sim.mean(dim=-1)

    def per_image(values: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Summed in float64 on the CPU (MPS has no float64): bands of rows then add up to
        # what one band gives, whatever the order.
        values = values.to("cpu", torch.float64)
        image = torch.div(rows.cpu(), count, rounding_mode="floor")
        total = values.new_zeros(batch).index_add_(0, image, values)
        return total, torch.bincount(image, minlength=batch).double()

    return (*per_image(blockiness, rows_s), *per_image(blur, rows_t))


def score(y: np.ndarray | torch.Tensor, block: int = 8) -> float:
    """RBQE quality score of one luma image.

    Args:
        y: ``(H, W)`` numpy array (uint8 means ``/255``, uint16 ``/65535``, floating is taken
            as ``[0, 1]``), or a tensor ``score_torch`` accepts holding one image.
        block: Block size: 8 for JPEG, 4 for HEVC.

    Returns:
        The score in ``[0, 1]``, higher = better.
    """
    if isinstance(y, torch.Tensor):
        s = score_torch(y, block)
        if s.numel() != 1:
            raise ValueError(f"score() takes one image, got a batch of {s.numel()}")
        return float(s.reshape(()))
    a = np.asarray(y)
    if a.ndim != 2:
        raise ValueError(f"expected an (H, W) luma array, got shape {a.shape}")
    if a.dtype in (np.uint8, np.uint16):
        # Integer values, not /255 or /65535: the score ignores a global gain, and integers
        # are exact in float32, which cuts float32 error on smooth content (1.1e-6 -> 7.6e-7).
        t = torch.from_numpy(a.astype(np.float32))
    elif np.issubdtype(a.dtype, np.floating):
        t = torch.from_numpy(a.astype(np.float32))
    else:
        raise TypeError(f"expected uint8, uint16 or floating luma, got {a.dtype}")
    return float(score_torch(t, block))


@torch.no_grad()
def score_rows(
    rows: Callable[[int, int], np.ndarray | torch.Tensor], height: int, width: int,
    block: int = 8, device: torch.device | str | None = None,
) -> float:
    """RBQE quality score of one luma image read in bands of rows, for images too large
    to hold as a float luma frame (the engine scores its assembled 100 MP outputs so).

    Args:
        rows: ``rows(r0, r1)`` returns luma rows ``r0:r1`` as an ``(r1 - r0, width)``
            floating array or CPU tensor in ``[0, 1]``.
        height: Image height.
        width: Image width.
        block: Block size: 8 for JPEG, 4 for HEVC.
        device: Where the bands are scored (default: where ``rows`` gives them). A GPU
            scores a 12 MP image in milliseconds; the CPU took 0.36 s on the 2-core VM.

    Returns:
        The score of :func:`score_torch` on the whole image, in float32: the same
        arithmetic per block; only the per-band sums add up in another order (~1e-7).
    """
    if block < 2:
        raise ValueError(f"block must be >= 2, got {block}")
    if height < 2 * block or width < 2 * block:
        return 1.0
    sums = _BlockSums()
    for r0, r1 in _bands(height, width, block):
        band = torch.as_tensor(rows(r0, r1)).to(device, torch.float32)
        if band.shape != (r1 - r0, width):
            raise ValueError(f"rows({r0}, {r1}) gave shape {tuple(band.shape)}, "
                             f"expected {(r1 - r0, width)}")
        sums.add(band[None, None], block)
    return float(sums.score(torch.float32)[0])


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of RGB images, to score RGB model outputs.

    Args:
        rgb: ``(B, 3, H, W)`` RGB in ``[0, 1]``.

    Returns:
        ``(B, 1, H, W)`` ``Y = 0.299 R + 0.587 G + 0.114 B`` in ``[0, 1]``, same dtype.
    """
    if rgb.dim() != 4 or rgb.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) RGB, got {tuple(rgb.shape)}")
    return color.luma(rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3])
