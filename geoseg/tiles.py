"""Tile-grid arithmetic (pure, no I/O).

A scene is cut into *blocks* (one Dask task each, read once with a halo) and each
block into *tiles* (one network input each). Tile origins are multiples of
``tile_size`` from the scene origin, and tile cores are ``tile_size`` square except in
the scene's last row and column of tiles: what remains there is a tile of its own if
it is at least half a tile, and otherwise widens the tile before it (up to 1.5 tiles),
since each tile also computes its halo on every side: a 1428 px wide scene with tiles
of 1024 and a 112 px halo runs one 1664 px wide input instead of 1248 + 640. Tile
sizes and the halo are multiples of the model's output stride, so every network input
starts on a stride-aligned pixel, and the tiles do not depend on how the scene is
blocked: blocks are multiples of the tile size, the last one widened the same way.

Examples
--------
>>> grid = TileGrid(height=1000, width=700, tile_size=256, halo=64, block_size=512)
>>> len(grid.blocks())
4
>>> grid.input_window(grid.blocks()[0])
Window(row_off=-64, col_off=-64, height=640, width=640)
>>> [core.width for _, core in grid.tiles(grid.blocks()[1])]  # 700 - 512 = 188 -> 192
[192, 192]
>>> narrow = TileGrid(1128, 1428, tile_size=1024, halo=112, block_size=1024, stride=16)
>>> [(b.height, b.width) for b in narrow.blocks()]  # 104 and 404 px left: under half a tile
[(1128, 1428)]
>>> [core for _, core in narrow.tiles(narrow.blocks()[0])]
[Window(row_off=0, col_off=0, height=1136, width=1440)]
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from geoseg.errors import ConfigError

#: Version of the tile layout, in the token that names a run's work (a change of the
#: layout changes the labels at tile seams: 2 widens a scene's last tile by a short rest).
LAYOUT_VERSION = 2


@dataclass(frozen=True, slots=True)
class Window:
    """A pixel window ``(row_off, col_off, height, width)``; offsets may be negative."""

    row_off: int
    col_off: int
    height: int
    width: int

    def __post_init__(self) -> None:
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"window must have a positive size, got {self.height}x{self.width}")

    @property
    def row_end(self) -> int:
        """One past the last row."""
        return self.row_off + self.height

    @property
    def col_end(self) -> int:
        """One past the last column."""
        return self.col_off + self.width

    def slices(self) -> tuple[slice, slice]:
        """``(rows, cols)`` slices (for non-negative offsets)."""
        return slice(self.row_off, self.row_end), slice(self.col_off, self.col_end)


@dataclass(frozen=True, slots=True)
class TileGrid:
    """Blocks and tiles over a ``height`` x ``width`` scene.

    Parameters
    ----------
    height, width : int
        Scene size in pixels.
    tile_size : int
        Core size of one network input; a multiple of ``stride``.
    halo : int
        Context added on every side of a tile core; a multiple of ``stride``.
    block_size : int
        Core size of one task's block; rounded up to a multiple of ``tile_size``.
    stride : int
        The model's output stride.
    """

    height: int
    width: int
    tile_size: int
    halo: int
    block_size: int
    stride: int = 32

    def __post_init__(self) -> None:
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"scene must have a positive size, got {self.height}x{self.width}")
        if self.stride <= 0:
            raise ValueError(f"stride must be positive, got {self.stride}")
        if self.tile_size <= 0 or self.tile_size % self.stride:
            suggest = max(1, round(self.tile_size / self.stride)) * self.stride
            raise ConfigError(
                f"tile size {self.tile_size} is not a positive multiple of the model's output "
                f"stride {self.stride}: use e.g. {suggest}"
            )
        if self.halo < 0 or self.halo % self.stride:
            raise ConfigError(
                f"halo {self.halo} is not a non-negative multiple of the model's output stride "
                f"{self.stride}: use e.g. {max(0, round(self.halo / self.stride)) * self.stride}"
            )
        if self.block_size < self.tile_size or self.block_size % self.tile_size:
            raise ConfigError(
                f"block size {self.block_size} is not a multiple of the tile size {self.tile_size}"
            )

    @classmethod
    def create(
        cls, height: int, width: int, *, tile_size: int, halo: int, block_size: int, stride: int
    ) -> TileGrid:
        """Build a grid, rounding ``block_size`` up to a multiple of ``tile_size``."""
        block = max(tile_size, math.ceil(block_size / tile_size) * tile_size)
        return cls(height, width, tile_size, halo, block, stride)

    @property
    def block_rows(self) -> int:
        """Number of block rows."""
        return math.ceil(self.height / self.block_size)

    @property
    def block_cols(self) -> int:
        """Number of block columns."""
        return math.ceil(self.width / self.block_size)

    def blocks(self) -> list[Window]:
        """Block core windows, clipped to the scene, in row-major order."""
        return list(self._iter_blocks())

    def _iter_blocks(self) -> Iterator[Window]:
        for r, h in self._spans(self.height, self.block_size):
            for c, w in self._spans(self.width, self.block_size):
                yield Window(r, c, h, w)

    def _spans(self, length: int, step: int) -> list[tuple[int, int]]:
        """``(start, size)`` every ``step`` pixels along ``length``, a short tail merged.

        The tail (``length`` less the last start, rounded up to the stride) joins the
        span before it when it is under half a tile: ``step`` is a multiple of the tile
        size, so blocks and the tiles inside them merge the same tail, whatever the
        block size.
        """
        starts = list(range(0, length, step))
        tail = math.ceil((length - starts[-1]) / self.stride) * self.stride
        if len(starts) > 1 and 2 * tail < self.tile_size:
            starts.pop()
        ends = [*starts[1:], length]
        return [(a, b - a) for a, b in zip(starts, ends, strict=True)]

    def padded_core(self, block: Window) -> tuple[int, int]:
        """Block core size rounded up to the output stride: ``(rows, cols)``."""
        st = self.stride
        return math.ceil(block.height / st) * st, math.ceil(block.width / st) * st

    def input_window(self, block: Window) -> Window:
        """The window to read for ``block``: its stride-rounded core plus the halo."""
        ph, pw = self.padded_core(block)
        h = self.halo
        return Window(block.row_off - h, block.col_off - h, ph + 2 * h, pw + 2 * h)

    def tiles(self, block: Window) -> list[tuple[Window, Window]]:
        """Tiles of a block, in coordinates relative to :meth:`input_window`.

        Tiles start every ``tile_size`` pixels; the last row and column of tiles are
        cut to what remains of the block (rounded up to the stride), so a scene
        smaller than a tile costs no more than itself, or widened by it when that is
        under half a tile (see the module docstring).

        Returns
        -------
        list of (input, core)
            ``input``: the tile's network input (core plus halo) within the block's input
            array; ``core``: where its core lands within the block's padded core.
        """
        ph, pw = self.padded_core(block)
        t, h = self.tile_size, self.halo
        out = []
        for r, th in self._spans(ph, t):
            for c, tw in self._spans(pw, t):
                out.append((Window(r, c, th + 2 * h, tw + 2 * h), Window(r, c, th, tw)))
        return out


def reflect_index(index: np.ndarray, length: int) -> np.ndarray:
    """Indexes into ``length`` of ``index`` mirrored at the edges, as ``np.pad`` "reflect".

    Examples
    --------
    >>> reflect_index(np.arange(-3, 7), 4).tolist()
    [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]
    """
    if length == 1:
        return np.zeros_like(index)
    period = 2 * (length - 1)
    m = np.mod(index, period)
    return np.where(m < length, m, period - m)
