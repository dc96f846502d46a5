"""Tile-grid arithmetic (pure, no I/O).

A scene is cut into *blocks* (one Dask task each, read once with a halo) and each
block into *tiles* (one network input each). Tile cores are at most ``tile_size``
square and their origins are multiples of ``tile_size`` from the scene origin; tile
sizes and the halo are multiples of the model's output stride, so every network
input starts on a stride-aligned pixel and the label raster does not depend on how
the scene is blocked. Blocks are multiples of the tile size.

Examples
--------
>>> grid = TileGrid(height=1000, width=700, tile_size=256, halo=64, block_size=512)
>>> len(grid.blocks())
4
>>> grid.input_window(grid.blocks()[0])
Window(row_off=-64, col_off=-64, height=640, width=640)
>>> [core.width for _, core in grid.tiles(grid.blocks()[1])]  # 700 - 512 = 188 -> 192
[192, 192]
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from geoseg.errors import ConfigError


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
                f"{self.stride}: use e.g. {round(self.halo / self.stride) * self.stride}"
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
        b = self.block_size
        for r in range(0, self.height, b):
            for c in range(0, self.width, b):
                yield Window(r, c, min(b, self.height - r), min(b, self.width - c))

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
        smaller than a tile costs no more than itself.

        Returns
        -------
        list of (input, core)
            ``input``: the tile's network input (core plus halo) within the block's input
            array; ``core``: where its core lands within the block's padded core.
        """
        ph, pw = self.padded_core(block)
        t, h = self.tile_size, self.halo
        out = []
        for r in range(0, ph, t):
            th = min(t, ph - r)
            for c in range(0, pw, t):
                tw = min(t, pw - c)
                out.append((Window(r, c, th + 2 * h, tw + 2 * h), Window(r, c, th, tw)))
        return out
