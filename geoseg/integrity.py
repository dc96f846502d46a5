"""Decoding every block of a raster once: ``geoseg info --check``.

A download cut short, a disk error or a tool that crashed while writing leaves a
GeoTIFF whose header reads and whose blocks do not all decode. ``geoseg predict``
probes the first and the last block before it starts; a bad block in between stops
the run where it lies, which on a large scene may be hours in. :func:`check_blocks`
reads every pixel once, in chunks of whole blocks of about :data:`CHUNK_PIXELS`
pixels (memory follows a chunk, not the scene), and looks at each block of a chunk
that fails, to name the bad blocks themselves.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import rasterio
from rasterio.errors import RasterioError
from rasterio.windows import Window

#: Band pixels read at a time (pixels times bands): about 1 M, whole blocks.
CHUNK_PIXELS = 1 << 20
#: Bad blocks whose windows are kept (all are counted).
KEPT = 10


@dataclass(frozen=True)
class BlockCheck:
    """What :func:`check_blocks` found.

    Attributes
    ----------
    blocks : int
        Internal blocks of the raster (band 1's block shape).
    bad : int
        Blocks that did not decode.
    first_bad : tuple of Window
        The first :data:`KEPT` bad blocks, in row order.
    error : str or None
        GDAL's message for the first bad block.
    seconds : float
        Time the check took.
    """

    blocks: int
    bad: int
    first_bad: tuple[Window, ...]
    error: str | None
    seconds: float

    def as_dict(self) -> dict[str, object]:
        """JSON-ready: counts, the first bad blocks' rows and columns, the message."""
        return {
            "blocks": self.blocks,
            "undecodable": self.bad,
            "first_undecodable": [_span(w) for w in self.first_bad],
            "error": self.error,
            "seconds": round(self.seconds, 2),
        }


def undecodable_phrase(found: dict[str, object]) -> str:
    """``"1 of 4 blocks does not decode"`` from :meth:`BlockCheck.as_dict`.

    Examples
    --------
    >>> undecodable_phrase({"undecodable": 2, "blocks": 9})
    '2 of 9 blocks do not decode'
    """
    n = found["undecodable"]
    return f"{n} of {found['blocks']} blocks {'does' if n == 1 else 'do'} not decode"


def _span(w: Window) -> str:
    r, c = int(w.row_off), int(w.col_off)
    return f"rows {r}-{r + int(w.height) - 1}, columns {c}-{c + int(w.width) - 1}"


def _tiles(height: int, width: int, rows: int, cols: int) -> Iterator[Window]:
    for r in range(0, height, rows):
        for c in range(0, width, cols):
            yield Window(c, r, min(cols, width - c), min(rows, height - r))


def chunk_shape(block: tuple[int, int], width: int, bands: int = 1) -> tuple[int, int]:
    """Rows and columns of a chunk: whole blocks, about :data:`CHUNK_PIXELS` band pixels.

    Examples
    --------
    >>> chunk_shape((512, 512), 10000)  # tiles: 2 x 2 blocks
    (1024, 1024)
    >>> chunk_shape((1, 40000), 40000)  # strips of a row: 26 rows of the whole width
    (26, 40000)
    """
    rows, cols = block
    pixels = max(1, CHUNK_PIXELS // max(1, bands))  # a 224-band cube: 4,681 px a chunk
    side = max(1, int(pixels**0.5))
    ncols = min(width, max(1, side // cols) * cols)
    nrows = max(1, pixels // ncols // rows) * rows
    return nrows, ncols


def check_blocks(
    path: str | Path, progress: Callable[[int, int], None] | None = None
) -> BlockCheck:
    """Decode every block of raster ``path`` (every band, its mask), count those that fail.

    Parameters
    ----------
    path : str or Path
        A raster GDAL opens (a local file, a VRT, a URL).
    progress : callable, optional
        Called with ``(chunks done, chunks)`` after each chunk.

    Returns
    -------
    BlockCheck
    """
    from geoseg.raster import _first_line, _has_internal_mask

    t0 = time.perf_counter()
    bad: list[Window] = []
    error = None

    with rasterio.open(path) as src:
        # an internal mask (or a .msk sidecar) is read with the pixels: a bad one fails too
        masked = _has_internal_mask(src)

        def read(w: Window) -> None:
            src.read(window=w)
            if masked:
                src.read_masks(1, window=w)

        block = src.block_shapes[0]
        rows, cols = chunk_shape(block, src.width, src.count)
        blocks = -(-src.height // block[0]) * -(-src.width // block[1])
        chunks = list(_tiles(src.height, src.width, rows, cols))
        for i, chunk in enumerate(chunks):
            try:
                read(chunk)
            except RasterioError:  # which of its blocks
                r0, c0 = int(chunk.row_off), int(chunk.col_off)
                for w in _tiles(int(chunk.height), int(chunk.width), *block):
                    w = Window(c0 + w.col_off, r0 + w.row_off, w.width, w.height)
                    try:
                        read(w)
                    except RasterioError as exc:
                        bad.append(w)
                        error = error or _first_line(exc)
            if progress is not None:
                progress(i + 1, len(chunks))
    return BlockCheck(blocks, len(bad), tuple(bad[:KEPT]), error, time.perf_counter() - t0)
