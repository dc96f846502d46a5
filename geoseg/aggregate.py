"""A finer class map read onto a coarser grid: each pixel takes the most common class under it.

Nearest-neighbour resampling keeps one finer pixel per grid pixel (one in nine from
10 m onto 30 m): the others are dropped, so narrow and scattered classes come and go
by chance. Here each grid pixel is cut into ``kx`` x ``ky`` sub-pixels no larger than
the finer map's pixels (at most :data:`MAX_SPLIT` a side), the map is read on them, and
they vote. Where the map's pixels
nest exactly in the grid's (one CRS, a whole number of them per grid pixel, edges on
one grid: 10 m Sentinel-2 under 30 m pixels of the same UTM grid) the sub-pixels are
the map's own pixels, read as they are; elsewhere (another CRS, edges off the grid,
as Landsat's 15 m-offset corners are from Sentinel-2's) each sub-pixel takes the
map's pixel under its centre (a nearest-neighbour warp onto the sub-pixels): one
sub-pixel per map pixel along an axis where the map's pixel size divides the grid's,
else at least two (:func:`split`), so that each map pixel's votes follow its area in
the grid pixel.

The vote is among *leaves* (fine classes, and coarse classes without fine ones) and a
pixel's coarse class is its winner's parent, so that the two levels of a map always
name one branch (GDAL's ``mode`` resampling takes each band's mode on its own, which
can pair a coarse class with another's fine class). A tie goes to the tied class of
the sub-pixel nearest the pixel's centre (as nearest neighbour would choose), not to
the first class listed, which would add area to the classes listed first. A pixel
less than half of which the map labels (a cloud's edge, the map's footprint) gets no
class. Callers give the leaves of the pixels they read (:meth:`Finer.votes`).

Majority aggregation is not area-neutral: a class scattered in small patches loses
area to the classes around it. ``nearest`` is unbiased in area, and noisier.
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
#: pixels are at most a quarter of the grid's in area (twice as fine along each axis),
#: ``nearest`` otherwise.
RESAMPLING = ("auto", "nearest", "mode")

#: How near a whole number the ratio of the grid's pixel size to the map's must be for
#: one sub-pixel per map pixel (see :func:`split`): a tenth of a map pixel per grid pixel.
WHOLE = 0.1

#: The least share of a pixel's sub-pixels that must have a class for it to get one.
MIN_LABELLED = 0.5

#: Sub-pixels voted on at a time (their temporaries: a few times 8 bytes each).
VOTE_PIXELS = 1 << 21

#: The most sub-pixels per grid pixel along an axis: a map over 32 times finer than
#: the grid (16 times where its pixel size does not divide the grid's) is sampled, 32 x 32
#: points per pixel, instead of read whole, nested or not.
MAX_SPLIT = 32

#: How far (in map pixels) the grid's corner may lie from a map pixel's corner for the
#: map to nest in the grid (see :func:`nesting`).
ALIGN_TOLERANCE = 0.01

#: ``(reader, window, keep)`` -> the window's leaf indices (``-1``: none) and, for a
#: weighted vote, each pixel's weight (else ``None``). ``keep``: the window's pixels the
#: map reaches (``None``: all).
LeavesOf = Callable[[Any, Window, "np.ndarray | None"], tuple[np.ndarray, "np.ndarray | None"]]


def choose(src: Any, grid: dict[str, Any], choice: str) -> str:
    """``nearest`` or ``mode`` for map ``src`` off ``grid`` (``auto``: mode when finer).

    ``grid``: ``crs``, ``transform``. A map is finer when its pixels are at most a
    quarter of the grid's in area (measured in the grid's CRS): less fine, a grid pixel
    holds two or three of its pixels, mostly in part, and the most common class is
    decided by a few partial pixels.

    Examples
    --------
    >>> from types import SimpleNamespace as NS
    >>> grid = dict(crs=None, transform=Affine(30, 0, 0, 0, -30, 0))
    >>> def at(size):
    ...     return NS(crs=None, transform=Affine(size, 0, 0, 0, -size, 0))
    >>> choose(at(10), grid, "auto"), choose(at(15), grid, "auto"), choose(at(20), grid, "auto")
    ('mode', 'mode', 'nearest')
    >>> choose(at(10), grid, "nearest")
    'nearest'
    """
    if choice not in RESAMPLING:
        raise ValueError(f"resampling {choice!r} is not one of {', '.join(RESAMPLING)}")
    if choice != "auto":
        return choice
    px, py = _pixel_size_on(src, grid)
    t = grid["transform"]
    return "mode" if 4 * px * py <= abs(t.a * t.e - t.b * t.d) * (1 + 1e-6) else "nearest"


def _pixel_size_on(src: Any, grid: dict[str, Any]) -> tuple[float, float]:
    """The width and height of ``src``'s pixels in ``grid``'s CRS (its own without CRS).

    Measured on the map's pixel under the grid's centre (``grid``'s ``width`` and
    ``height``; its origin without them), or under the map's own centre where that
    point is off the map: the lengths of the pixel's two sides once transformed. A
    map's pixels differ in size across a projection (a global map in degrees), and the
    bounding box of the whole map would also grow with the rotation between the CRSs.
    """
    from rasterio.warp import transform

    u = src.transform
    if src.crs is None or grid["crs"] is None or src.crs == grid["crs"]:
        return math.hypot(u.a, u.d), math.hypot(u.b, u.e)
    col, row = src.width / 2, src.height / 2
    t = grid["transform"]
    gx, gy = t * (grid.get("width", 0) / 2, grid.get("height", 0) / 2)
    (mx,), (my,) = transform(grid["crs"], src.crs, [gx], [gy])
    if math.isfinite(mx) and math.isfinite(my):
        c, r = ~u * (mx, my)
        if 0 <= c <= src.width and 0 <= r <= src.height:
            col, row = math.floor(min(c, src.width - 1)), math.floor(min(r, src.height - 1))
    corners = [u * (col, row), u * (col + 1, row), u * (col, row + 1)]
    xs, ys = transform(src.crs, grid["crs"], *zip(*corners, strict=True))
    return (
        math.hypot(xs[1] - xs[0], ys[1] - ys[0]),
        math.hypot(xs[2] - xs[0], ys[2] - ys[0]),
    )


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
    # the ratios to a relative tolerance, the grid's corner to 0.01 of a map pixel
    # wherever it lies (400,000 pixels into a continental map as well as at its corner)
    if any(abs(k - round(k)) > 1e-6 * max(1.0, abs(k)) for k in (kx, ky)):
        return None
    if any(abs(v - round(v)) > ALIGN_TOLERANCE for v in (col0, row0)):
        return None
    kx, ky, col0, row0 = (round(v) for v in (kx, ky, col0, row0))
    if kx > MAX_SPLIT or ky > MAX_SPLIT:  # sampled instead (see MAX_SPLIT)
        return None
    return (kx, ky, col0, row0) if kx >= 1 and ky >= 1 and kx * ky > 1 else None


def split(src: Any, grid: dict[str, Any]) -> tuple[int, int]:
    """Sub-pixels ``(kx, ky)`` per grid pixel, to sample map ``src`` with.

    Along an axis where the map's pixel size goes ``k`` times into the grid's, ``k``
    sub-pixels (one per map pixel) where ``k`` is within :data:`WHOLE` of a whole
    number (10 m, or 10 m reprojected, under 30 m); elsewhere ``ceil(2 k)``, so that
    each map pixel is sampled at least twice and its votes follow its area in the grid
    pixel within half a sample (12 m under 30 m: 5, not 3 of which the 12 m pixels
    would get one or two by their position). At most :data:`MAX_SPLIT`.

    Examples
    --------
    >>> from types import SimpleNamespace as NS
    >>> grid = dict(crs=None, transform=Affine(30, 0, 0, 0, -30, 0))
    >>> split(NS(crs=None, transform=Affine(10, 0, 5, 0, -10, 0)), grid)
    (3, 3)
    >>> split(NS(crs=None, transform=Affine(20, 0, 0, 0, -12, 0)), grid)
    (3, 5)
    """
    px, py = _pixel_size_on(src, grid)
    t = grid["transform"]
    gx, gy = math.hypot(t.a, t.d), math.hypot(t.b, t.e)

    def per_axis(g: float, p: float) -> int:
        if p <= 0:
            return 1
        k = g / p
        whole = round(k) >= 1 and abs(k - round(k)) <= WHOLE
        return max(1, min(MAX_SPLIT, round(k) if whole else math.ceil(2 * k - 1e-6)))

    return per_axis(gx, px), per_axis(gy, py)


def block_mode(values: np.ndarray, ky: int, kx: int, n: int) -> np.ndarray:
    """The most common value ``0 .. n - 1`` in each ``ky`` x ``kx`` block (``-1``: none).

    A tie goes to the tied value nearest the block's centre (the first in raster order
    among equally near), not to the smallest value, which would favour it.

    Examples
    --------
    >>> block_mode(np.array([[0, 1, 1, -1], [2, 1, -1, -1]]), 2, 2, 3).tolist()
    [[1, 1]]
    >>> block_mode(np.array([[2, 0, 0], [1, 2, 0], [2, 1, 1]]), 3, 3, 3).tolist()
    [[2]]
    """
    h, w = values.shape[0] // ky, values.shape[1] // kx
    blocks = values.reshape(h, ky, w, kx).transpose(0, 2, 1, 3).reshape(h * w, ky * kx)
    out = np.full(h * w, -1, np.int64)
    order = _centre_first(ky, kx)
    step = max(1, 4_000_000 // (n + 1))  # blocks counted at a time: memory bounded
    for s0 in range(0, h * w, step):
        part = blocks[s0 : s0 + step]
        k = part.shape[0]
        # each block's count of each value, -1 (none) in column 0
        flat = (np.arange(k)[:, None] * (n + 1) + (part + 1)).ravel()
        counts = np.bincount(flat, minlength=k * (n + 1)).reshape(k, n + 1)[:, 1:]
        top = counts.max(axis=1)
        best = np.where(top > 0, counts.argmax(axis=1), -1)
        tied = np.flatnonzero(((counts == top[:, None]).sum(axis=1) > 1) & (top > 0))
        if tied.size:
            best[tied] = _nearest_tied(part[tied], counts[tied] == top[tied, None], order)
        out[s0 : s0 + step] = best
    return out.reshape(h, w)


def _centre_first(ky: int, kx: int) -> np.ndarray:
    """A block's positions (raster order) from its centre out, raster order among equals."""
    yy, xx = np.mgrid[0:ky, 0:kx]
    d = ((yy - (ky - 1) / 2) ** 2 + (xx - (kx - 1) / 2) ** 2).ravel()
    return np.lexsort((np.arange(ky * kx), d))


def _nearest_tied(part: np.ndarray, top: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Per block (row of ``part``): its first value in ``order`` among its tied values.

    ``top[block, value]`` says whether ``value`` is one of the block's tied values.
    """
    choice = np.full(part.shape[0], -1, np.int64)
    rows = np.arange(part.shape[0])
    for p in order:
        open_ = choice < 0
        if not open_.any():
            break
        v = part[:, p]
        ok = open_ & (v >= 0)
        ok[ok] = top[rows[ok], v[ok]]
        choice[ok] = v[ok]
    return choice


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
            ``(h, width)`` int64: the winning leaf, a tie to the tied leaf nearest the
            pixel's centre (:func:`block_mode`; ``-1``: fewer than :data:`MIN_LABELLED`
            of its sub-pixels have one).
        support : numpy.ndarray
            ``(h, width)`` float64: the winner's weights summed over the pixel's
            sub-pixels, divided by their number, labelled or not (unweighted: the
            winner's share of the pixel, 0 to 1).

        A pixel fewer than :data:`MIN_LABELLED` of whose sub-pixels have a leaf gets
        none (``-1``, support 0).
        """
        kx, ky = self.kx, self.ky
        leaf_out = np.full((h, width), -1, np.int64)
        support = np.zeros((h, width))
        # grid pixels voted on at a time: whole rows where they fit, else parts of one
        per_chunk = max(1, VOTE_PIXELS // (kx * ky))
        rows_step = max(1, per_chunk // max(1, width))
        cols_step = width if per_chunk >= width else per_chunk
        for a in range(r0, r0 + h, rows_step):
            hh = min(rows_step, r0 + h - a)
            for b in range(0, width, cols_step):
                ww = min(cols_step, width - b)
                won, share = self._vote(a, hh, b, ww, leaves_of, n)
                leaf_out[a - r0 : a - r0 + hh, b : b + ww] = won
                support[a - r0 : a - r0 + hh, b : b + ww] = share
        return leaf_out, support

    def _vote(
        self, a: int, hh: int, b: int, ww: int, leaves_of: LeavesOf, n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`votes` of grid rows ``a`` to ``a + hh``, columns ``b`` to ``b + ww``."""
        kx, ky = self.kx, self.ky
        top, left = self.row0 + a * ky, self.col0 + b * kx
        rows, cols = hh * ky, ww * kx
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
        voters = _block_sum((leaves >= 0).astype(np.int64), ky, kx)
        best[voters < MIN_LABELLED * kx * ky] = -1
        spread = np.repeat(np.repeat(best, ky, axis=0), kx, axis=1)
        won = (leaves == spread) & (leaves >= 0)
        return best, _block_sum(np.where(won, weights, 0.0), ky, kx) / (kx * ky)


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
    # refused as a map off the grid itself is (no CRS, no overlap), in the grid's terms
    with labels_on_grid(path, **grid, align=True, what=what, target=target, fix="pass --align"):
        pass
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
