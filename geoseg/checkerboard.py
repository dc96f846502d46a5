"""Where the test blocks of a checkerboard split lie on another raster's grid.

A checkerboard split of block side ``N`` holds out the pixels with odd
``row // N + col // N`` of the grid it was drawn on: the training image's, whose
labels share its grid. A map scored against those labels may lie on another grid (a
crop of the scene, a merged mosaic, a reprojected map): its own pixel (0, 0) is not
the split's, so the blocks are found by where each of its pixel centres falls on the
split's grid, as nearest-neighbour resampling of the truth finds the truth pixel.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from affine import Affine


class CheckerboardTest:
    """The test pixels of a checkerboard split, strip by strip, on a map's grid.

    Parameters
    ----------
    n : int
        Block side of the split, in pixels of the split's grid.
    width : int
        Columns of the map.
    transform, crs
        The map's grid.
    anchor_transform, anchor_crs
        The grid the split was drawn on (the truth raster's); ``None``: the map's own.
    """

    def __init__(
        self,
        n: int,
        width: int,
        transform: Affine,
        crs: Any,
        anchor_transform: Affine | None = None,
        anchor_crs: Any = None,
    ) -> None:
        self.n = n
        self.width = width
        self.transform = transform
        self.crs = crs
        self.anchor = anchor_transform if anchor_transform is not None else transform
        self.anchor_crs = anchor_crs if anchor_transform is not None else crs
        self.same_crs = _same_crs(crs, self.anchor_crs)
        self.own_grid = self.same_crs and _close(self.anchor, transform)
        self.separable = self.same_crs and _rectilinear(transform) and _rectilinear(self.anchor)

    def offset(self) -> tuple[int, int] | None:
        """``(rows, cols)`` the map's pixel (0, 0) lies from the split's, if a whole number.

        ``None`` where the grids differ in more than an integer shift (another CRS,
        pixel size or rotation).
        """
        if self.own_grid:
            return 0, 0
        if not self.separable or not (
            np.isclose(self.transform.a, self.anchor.a)
            and np.isclose(self.transform.e, self.anchor.e)
        ):
            return None
        cols = (self.transform.c - self.anchor.c) / self.anchor.a
        rows = (self.transform.f - self.anchor.f) / self.anchor.e
        if not (
            np.isclose(cols, round(cols), atol=1e-6) and np.isclose(rows, round(rows), atol=1e-6)
        ):
            return None
        return round(rows), round(cols)

    def anchor_pixels(self, row0: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """Split-grid ``(rows, cols)`` of the pixel centres of the map's rows ``row0...``.

        Broadcastable ``(height, 1)`` and ``(1, width)`` where the grids share a CRS and
        neither is rotated, else ``(height, width)`` each.
        """
        if self.own_grid:
            return np.arange(row0, row0 + height)[:, None], np.arange(self.width)[None, :]
        rows = np.arange(row0, row0 + height, dtype=np.float64) + 0.5
        cols = np.arange(self.width, dtype=np.float64) + 0.5
        t, a = self.transform, self.anchor
        if self.separable:
            x = t.c + cols * t.a
            y = t.f + rows * t.e
            ac = np.floor((x - a.c) / a.a).astype(np.int64)
            ar = np.floor((y - a.f) / a.e).astype(np.int64)
            return ar[:, None], ac[None, :]
        cc, rr = np.meshgrid(cols, rows)
        x, y = t @ (cc, rr)  # type: ignore[operator,assignment]  # affine maps arrays too
        if not self.same_crs:
            from rasterio.warp import transform as warp

            xs, ys = warp(self.crs, self.anchor_crs, x.ravel(), y.ravel())
            x = np.asarray(xs).reshape(rr.shape)
            y = np.asarray(ys).reshape(rr.shape)
        ac, ar = ~a @ (x, y)  # type: ignore[operator]
        return np.floor(ar).astype(np.int64), np.floor(ac).astype(np.int64)

    def test(self, row0: int, height: int) -> np.ndarray:
        """``(height, width)`` boolean: the map's pixels in test blocks (odd block sum)."""
        ar, ac = self.anchor_pixels(row0, height)
        test = (ar // self.n + ac // self.n) % 2 == 1
        return np.broadcast_to(test, (height, self.width))


def _same_crs(a: Any, b: Any) -> bool:
    """Whether coordinates in ``a`` are coordinates in ``b``.

    A grid without a CRS is taken to share the other's (as a truth raster on its grid
    is read without one).
    """
    if a is None or b is None:
        return True
    return bool(a == b)


def _rectilinear(t: Affine) -> bool:
    return t.b == 0 and t.d == 0


def _close(a: Affine, b: Affine) -> bool:
    return bool(np.allclose(tuple(a)[:6], tuple(b)[:6], rtol=0, atol=1e-9 * max(abs(a.a), 1)))
