"""A finer class map read onto a coarser grid: each pixel takes the most common class under it.

Nearest-neighbour resampling keeps one finer pixel per grid pixel (one in nine from
10 m onto 30 m): the others are dropped, so narrow and scattered classes come and go
by chance. Here each grid pixel is cut into ``kx`` x ``ky`` sub-pixels no larger than
the finer map's pixels, the map is read on them, and they vote. Where the map's pixels
nest exactly in the grid's (one CRS, a whole number of them per grid pixel, edges on
one grid: 10 m Sentinel-2 under 30 m pixels of the same UTM grid) the sub-pixels are
the map's own pixels, read as they are; elsewhere (another CRS, edges off the grid,
as Landsat's 15 m-offset corners are from Sentinel-2's) each sub-pixel takes the
map's pixel under its centre (a nearest-neighbour warp onto the sub-pixels), so every
pixel of the map is seen at least once.

The vote is among *leaves* (fine classes, and coarse classes without fine ones) and a
pixel's coarse class is its winner's parent, so that the two levels of a map always
name one branch (GDAL's ``mode`` resampling takes each band's mode on its own, which
can pair a coarse class with another's fine class). Callers give the leaves of the
pixels they read (:meth:`Finer.votes`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.windows import Window

#: How a map on another grid may be resampled: ``auto`` takes ``mode`` for a map whose
#: pixels are less than half the grid's in area, ``nearest`` otherwise.
RESAMPLING = ("auto", "nearest", "mode")

#: Sub-pixels voted on at a time (their temporaries: a few times 8 bytes each).
VOTE_PIXELS = 1 << 21

#: The most sub-pixels per grid pixel along an axis: a map over 32 times finer than
#: the grid is sampled (32 x 32 points per pixel) instead of read whole.
MAX_SPLIT = 32

#: ``(reader, window, keep)`` -> the window's leaf indices (``-1``: none) and, for a
#: weighted vote, each pixel's weight (else ``None``). ``keep``: the window's pixels the
#: map reaches (``None``: all).
LeavesOf = Callable[[Any, Window, "np.ndarray | None"], tuple[np.ndarray, "np.ndarray | None"]]


def choose(src: Any, grid: dict[str, Any], choice: str) -> str:
    """``nearest`` or ``mode`` for map ``src`` off ``grid`` (``auto``: mode when finer).

    ``grid``: ``width``, ``height``, ``crs``, ``transform``. A map is finer when its
    pixels are less than half the grid's in area (measured in the grid's CRS).

    Examples
    --------
    >>> from types import SimpleNamespace as NS
    >>> grid = dict(crs=None, transform=Affine(30, 0, 0, 0, -30, 0), width=4, height=4)
    >>> fine = NS(crs=None, transform=Affine(10, 0, 0, 0, -10, 0), width=12, height=12,
    ...           bounds=(0, -120, 120, 0))
    >>> choose(fine, grid, "auto"), choose(fine, grid, "nearest")
    ('mode', 'nearest')
    """
    if choice not in RESAMPLING:
        raise ValueError(f"resampling {choice!r} is not one of {', '.join(RESAMPLING)}")
    if choice != "auto":
        return choice
    px, py = _pixel_size_on(src, grid)
    t = grid["transform"]
    return "mode" if px * py < abs(t.a * t.e - t.b * t.d) / 2 else "nearest"


def _pixel_size_on(src: Any, grid: dict[str, Any]) -> tuple[float, float]:
    """The width and height of ``src``'s pixels in ``grid``'s CRS (its own without CRS)."""
    from rasterio.warp import transform_bounds

    if src.crs is None or grid["crs"] is None or src.crs == grid["crs"]:
        u = src.transform
        return math.hypot(u.a, u.d), math.hypot(u.b, u.e)
    left, bottom, right, top = transform_bounds(src.crs, grid["crs"], *src.bounds)
    return abs(right - left) / src.width, abs(top - bottom) / src.height


def nesting(src: Any, grid: dict[str, Any]) -> tuple[int, int, int, int] | None:
    """``(kx, ky, col0, row0)`` where map ``src``'s pixels nest in ``grid``'s.

    Nested: one CRS, north-up, each grid pixel exactly ``kx`` x ``ky`` map pixels (a
    whole number each, at least one above 1), and the grid's corner on a map pixel
    corner, ``(col0, row0)``. ``None`` otherwise.

    Examples
    --------
    >>> from types import SimpleNamespace as NS
    >>> grid = dict(crs="EPSG:32612", transform=Affine(30, 0, 300, 0, -30, 900))
    >>> nesting(NS(crs="EPSG:32612", transform=Affine(10, 0, 270, 0, -10, 900)), grid)
    (3, 3, 3, 0)
    >>> nesting(NS(crs="EPSG:32612", transform=Affine(10, 0, 275, 0, -10, 900)), grid)
    """
    t, u = grid["transform"], src.transform
    if grid["crs"] is None or src.crs is None or src.crs != grid["crs"]:
        return None
    if t.b or t.d or u.b or u.d or not u.a or not u.e:
        return None
    kx, ky = t.a / u.a, t.e / u.e
    col0, row0 = (t.c - u.c) / u.a, (t.f - u.f) / u.e
    values = (kx, ky, col0, row0)
    if any(abs(v - round(v)) > 1e-6 * max(1.0, abs(v)) for v in values):
        return None
    kx, ky, col0, row0 = (round(v) for v in values)
    return (kx, ky, col0, row0) if kx >= 1 and ky >= 1 and kx * ky > 1 else None


def split(src: Any, grid: dict[str, Any]) -> tuple[int, int]:
    """Sub-pixels ``(kx, ky)`` per grid pixel, each no larger than a pixel of ``src``.

    At most :data:`MAX_SPLIT` along an axis.

    Examples
    --------
    >>> from types import SimpleNamespace as NS
    >>> grid = dict(crs=None, transform=Affine(30, 0, 0, 0, -30, 0))
    >>> split(NS(crs=None, transform=Affine(10, 0, 5, 0, -10, 0)), grid)
    (3, 3)
    >>> split(NS(crs=None, transform=Affine(12, 0, 0, 0, -12, 0)), grid)
    (3, 3)
    """
    px, py = _pixel_size_on(src, grid)
    t = grid["transform"]
    gx, gy = math.hypot(t.a, t.d), math.hypot(t.b, t.e)

    def per_axis(g: float, p: float) -> int:
        return max(1, min(MAX_SPLIT, math.ceil(g / p - 1e-6))) if p > 0 else 1

    return per_axis(gx, px), per_axis(gy, py)


def block_mode(values: np.ndarray, ky: int, kx: int, n: int) -> np.ndarray:
    """The most common value ``0 .. n - 1`` in each ``ky`` x ``kx`` block (``-1``: none).

    Ties go to the smaller value.

    Examples
    --------
    >>> block_mode(np.array([[0, 1, 1, -1], [2, 1, -1, -1]]), 2, 2, 3).tolist()
    [[1, 1]]
    """
    h, w = values.shape[0] // ky, values.shape[1] // kx
    blocks = values.reshape(h, ky, w, kx).transpose(0, 2, 1, 3).reshape(h * w, ky * kx)
    out = np.full(h * w, -1, np.int64)
    step = max(1, 4_000_000 // (n + 1))  # blocks counted at a time: memory bounded
    for s0 in range(0, h * w, step):
        part = blocks[s0 : s0 + step]
        k = part.shape[0]
        # each block's count of each value, -1 (none) in column 0
        flat = (np.arange(k)[:, None] * (n + 1) + (part + 1)).ravel()
        counts = np.bincount(flat, minlength=k * (n + 1)).reshape(k, n + 1)[:, 1:]
        best = counts.argmax(axis=1)
        out[s0 : s0 + step] = np.where(counts.max(axis=1) > 0, best, -1)
    return out.reshape(h, w)


def _block_sum(values: np.ndarray, ky: int, kx: int) -> np.ndarray:
    """The sum of each ``ky`` x ``kx`` block."""
    h, w = values.shape[0] // ky, values.shape[1] // kx
    return values.reshape(h, ky, w, kx).sum(axis=(1, 3))


@dataclass(frozen=True)
class Finer:
    """A finer map on the sub-pixels of a grid: ``kx`` x ``ky`` sub-pixels per grid pixel.

    Attributes
    ----------
    reader : rasterio dataset
        The map itself (nested) or its warp onto the sub-pixels (a VRT).
    kx, ky : int
        Sub-pixels per grid pixel along a row and a column.
    col0, row0 : int
        The reader's column and row of the grid's first sub-pixel.
    reached : int, optional
        The VRT's alpha band: 0 where the map does not reach (``None``: the map itself).
    nested : bool
        Whether the sub-pixels are the map's own pixels.
    """

    reader: Any
    kx: int
    ky: int
    col0: int = 0
    row0: int = 0
    reached: int | None = None
    nested: bool = False

    def votes(
        self, r0: int, h: int, width: int, leaves_of: LeavesOf, n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``r0`` to ``r0 + h`` of the grid: each pixel's most common leaf, and its share.

        Parameters
        ----------
        r0, h : int
            The grid rows.
        width : int
            The grid's width.
        leaves_of : callable
            The leaves (and weights) of a window of :attr:`reader` (see :data:`LeavesOf`).
        n : int
            How many leaves there are.

        Returns
        -------
        leaf : numpy.ndarray
            ``(h, width)`` int64: the winning leaf, the first listed among equals (``-1``:
            no sub-pixel has one).
        support : numpy.ndarray
            ``(h, width)`` float64: the winner's weights summed over the pixel's
            sub-pixels with a leaf, divided by their number (unweighted: the winner's
            share of them, 0 to 1).
        """
        kx, ky = self.kx, self.ky
        leaf_out = np.full((h, width), -1, np.int64)
        support = np.zeros((h, width))
        step = max(1, VOTE_PIXELS // max(1, width * kx * ky))
        for a in range(r0, r0 + h, step):
            hh = min(step, r0 + h - a)
            top, left = self.row0 + a * ky, self.col0
            rows, cols = hh * ky, width * kx
            leaves = np.full((rows, cols), -1, np.int64)
            weights = np.zeros((rows, cols))
            rs, re_ = max(top, 0), min(top + rows, self.reader.height)
            cs, ce = max(left, 0), min(left + cols, self.reader.width)
            if re_ > rs and ce > cs:
                win = Window(cs, rs, ce - cs, re_ - rs)
                keep = None
                if self.reached is not None:
                    keep = self.reader.read(self.reached, window=win) > 0
                got, weight = leaves_of(self.reader, win, keep)
                here = (slice(rs - top, re_ - top), slice(cs - left, ce - left))
                leaves[here] = got
                weights[here] = 1.0 if weight is None else weight
            best = block_mode(leaves, ky, kx, n)
            spread = np.repeat(np.repeat(best, ky, axis=0), kx, axis=1)
            won = (leaves == spread) & (leaves >= 0)
            voters = _block_sum((leaves >= 0).astype(np.int64), ky, kx)
            total = _block_sum(np.where(won, weights, 0.0), ky, kx)
            out = slice(a - r0, a - r0 + hh)
            leaf_out[out] = best
            support[out] = total / np.maximum(voters, 1)
        return leaf_out, support


@contextlib.contextmanager
def finer_on_grid(
    path: str | Path, grid: dict[str, Any], *, what: str, target: str
) -> Iterator[Finer]:
    """Map ``path`` on the sub-pixels of ``grid``, to vote on (see the module).

    ``grid``: ``width``, ``height``, ``crs``, ``transform``; ``what`` and ``target``
    name the map and the grid in messages.

    Raises
    ------
    RasterFormatError
        The map cannot be resampled onto the grid (no CRS, no overlap): see
        :func:`geoseg.raster.labels_on_grid`.
    """
    from geoseg.raster import labels_on_grid, open_labels

    with open_labels(path) as src:
        nest = nesting(src, grid)
        if nest is not None:
            yield Finer(src, *nest, nested=True)
            return
        kx, ky = split(src, grid)
    sub = {
        "width": grid["width"] * kx,
        "height": grid["height"] * ky,
        "crs": grid["crs"],
        "transform": grid["transform"] * Affine.scale(1 / kx, 1 / ky),
    }
    with labels_on_grid(path, **sub, align=True, what=what, target=target, fix="pass --align") as (
        reader,
        reached,
    ):
        yield Finer(reader, kx, ky, reached=reached)
