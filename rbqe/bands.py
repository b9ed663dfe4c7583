"""Bands of rows: large frames are converted, scored, saved and convolved a band of rows
at a time, so that their temporaries stay small whatever the image size."""

from __future__ import annotations


def row_bands(height: int, row_size: int, budget: int, *, step: int = 1,
              min_rows: int = 1) -> list[tuple[int, int]]:
    """``[r0, r1)`` ranges covering ``height`` rows, each of about ``budget // row_size``
    rows (at least ``min_rows``, then rounded down to a multiple of ``step``), where
    ``row_size`` is the pixels (or values) of one row; the last band takes the rest."""
    rows = max(min_rows, budget // max(1, row_size)) // step * step
    return [(r0, min(height, r0 + rows)) for r0 in range(0, height, rows)]
