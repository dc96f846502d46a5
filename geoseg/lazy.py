"""Labels of an image larger than memory, as a Dask graph of blocks.

:func:`lazy_labels` lays the tile grid of ``geoseg predict`` over a (Dask-backed)
image and makes one task per block: the task gets the block's input window (its core
rounded up to the output stride, plus the halo, mirrored beyond the image's edge, as
:func:`geoseg.predict.predict_blocks` reads an array) and returns its labels. Nothing
runs until the caller computes the result (``.compute()``, ``to_zarr``, a chunked
``rio.to_raster``), on whatever scheduler is active, so memory holds a few blocks at a
time and the labels are those the whole image would get in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from geoseg.normalize import BandMoments, strip_moments
from geoseg.raster import valid_mask
from geoseg.tiles import TileGrid, Window, reflect_index

#: ``label(data, valid, block) -> (labels, probabilities or None)``: one block's task body.
BlockLabeller = Callable[[np.ndarray, "np.ndarray | None", Window], tuple[np.ndarray, Any]]


def lazy_labels(
    image: Any,
    valid: Any,
    label: BlockLabeller,
    grid: TileGrid,
    *,
    dtype: np.dtype[Any],
    n_probabilities: int = 0,
) -> tuple[Any, Any]:
    """Dask arrays of an image's labels (and probabilities), one chunk per block.

    Parameters
    ----------
    image : dask.array.Array or numpy.ndarray
        ``(bands, H, W)`` values, in the model's band order.
    valid : dask.array.Array or numpy.ndarray, optional
        ``(H, W)`` pixels to label (``None``: all the image's valid values).
    label : callable
        ``label(data, valid, block)`` labels one block from its input window's values
        and validity (``valid`` ``None`` when not given), returning ``(3, h, w)`` labels
        and ``(n_probabilities, h, w)`` probabilities or ``None``; it must pickle, to
        run on a cluster.
    grid : TileGrid
        The tiles and blocks (of ``image``'s size).
    dtype : numpy.dtype
        The labels' dtype.
    n_probabilities : int
        Probability bands per pixel (0: none).

    Returns
    -------
    (dask.array.Array, dask.array.Array or None)
        ``(3, H, W)`` labels and ``(n_probabilities, H, W)`` uint8 probabilities,
        chunked by block.
    """
    import dask
    import dask.array as dsa

    height, width = grid.height, grid.width
    image = dsa.asarray(image)
    if valid is not None:
        valid = dsa.asarray(valid)
    rows_of_blocks: list[list[Any]] = []
    probs_of_blocks: list[list[Any]] = []
    for block in grid.blocks():
        win = grid.input_window(block)
        rows = reflect_index(np.arange(win.row_off, win.row_end), height)
        cols = reflect_index(np.arange(win.col_off, win.col_end), width)
        r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        task = dask.delayed(_block_task, nout=2, pure=True)(
            image[:, r0:r1, c0:c1],
            None if valid is None else valid[r0:r1, c0:c1],
            (int(r0), int(c0)),
            grid,
            block,
            label,
        )
        labels = dsa.from_delayed(task[0], (3, block.height, block.width), dtype=dtype)
        probs = (
            dsa.from_delayed(task[1], (n_probabilities, block.height, block.width), np.uint8)
            if n_probabilities
            else None
        )
        if block.col_off == 0:
            rows_of_blocks.append([])
            probs_of_blocks.append([])
        rows_of_blocks[-1].append(labels)
        probs_of_blocks[-1].append(probs)
    labels = dsa.block([rows_of_blocks])  # nested as (band, row, col) of blocks
    probabilities = dsa.block([probs_of_blocks]) if n_probabilities else None
    return labels, probabilities


def _block_task(
    region: np.ndarray,
    valid: np.ndarray | None,
    origin: tuple[int, int],
    grid: TileGrid,
    block: Window,
    label: BlockLabeller,
) -> tuple[np.ndarray, Any]:
    """One block: its input window taken (mirrored) from the region read, then labelled.

    ``region`` holds the image's rows and columns from ``origin`` on that the window
    needs (a task carries these few numbers, not the window's index arrays).
    """
    win = grid.input_window(block)
    rows = reflect_index(np.arange(win.row_off, win.row_end), grid.height) - origin[0]
    cols = reflect_index(np.arange(win.col_off, win.col_end), grid.width) - origin[1]
    data = np.asarray(region)[:, rows[:, None], cols[None, :]]
    window_valid = None if valid is None else np.asarray(valid)[rows[:, None], cols[None, :]]
    return label(data, window_valid, block)


def lazy_moments(image: Any, valid: Any, nodata: tuple[float | None, ...]) -> BandMoments:
    """The :class:`~geoseg.normalize.BandMoments` of a (Dask-backed) image's valid pixels.

    One task per chunk (all bands together) reads it once and returns its count, means
    and sums of squared deviations; they are combined in row-major order, so the result
    does not depend on the scheduler (and equals the in-memory figures of
    :func:`geoseg.normalize.array_moments` to float64 rounding, not bit for bit: the
    pixels are summed in other groups).

    Parameters
    ----------
    image : dask.array.Array or numpy.ndarray
        ``(bands, H, W)`` values.
    valid : dask.array.Array or numpy.ndarray, optional
        ``(H, W)`` pixels to count, besides the values' own validity.
    nodata : tuple
        Per-band nodata values (see :func:`geoseg.raster.valid_mask`).
    """
    import dask
    import dask.array as dsa

    image = dsa.asarray(image).rechunk({0: -1})
    chunks = image.to_delayed()[0]
    masks = None
    if valid is not None:
        masks = dsa.asarray(valid).rechunk(image.chunks[1:]).to_delayed()
    parts = [
        dask.delayed(_chunk_moments, pure=True)(
            chunks[i, j], None if masks is None else masks[i, j], nodata
        )
        for i in range(chunks.shape[0])
        for j in range(chunks.shape[1])
    ]
    moments = BandMoments(image.shape[0])
    for n, mean, m2 in dask.compute(*parts):
        moments.merge(n, mean, m2)
    return moments


def _chunk_moments(
    data: np.ndarray, valid: np.ndarray | None, nodata: tuple[float | None, ...]
) -> tuple[int, np.ndarray, np.ndarray]:
    """One chunk's count, per-band means and sums of squared deviations."""
    data = np.asarray(data)
    ok = valid_mask(data, nodata)
    if valid is not None:
        ok &= np.asarray(valid, dtype=bool)
    return strip_moments(data, ok)
