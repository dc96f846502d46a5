"""Adjacent tiles of one image read as one scene: a mosaic VRT, no copy of the pixels.

Imagery often comes in tiles: Sentinel-2 granules of one UTM zone, an orthophoto in map
sheets, a large scene cut into parts. Labelled one by one, the tiles give maps with a
seam at every tile border and polygons cut along it; labelled as one mosaic, geoseg's
tiled inference sees across the borders, and one map and one set of polygons come out.
:func:`write_mosaic` writes the mosaic as a GDAL VRT (:mod:`geoseg.vrt`) that every
geoseg command reads as an image:

- the extent of all the tiles together, on the grid of the tile with the finest (or
  coarsest) pixels; tiles on another grid are resampled as they are read;
- where tiles overlap, a later tile's pixels are read over an earlier one's, except its
  nodata pixels, through which the earlier tile shows;
- where no tile reaches, the mosaic holds nodata: the tiles' nodata value, or the one
  given (refused if there is none and the tiles leave a gap, which would read as 0, a
  value);
- the tiles' band names (a tile that names its bands otherwise than another is refused:
  tiles of one mosaic hold the same bands in the same order).

``gdalbuildvrt``, which this replaces, is not in rasterio's pip wheels, and its mosaics
name no band, so a bundle's bands were then matched by position.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from geoseg.errors import ConfigError, RasterFormatError
from geoseg.raster import default_band_name
from geoseg.vrt import (
    Band,
    VirtualRaster,
    check_crs,
    check_resampling,
    check_vrt_path,
    common_dtype,
    local_paths,
    pick_grid,
    read_source,
    resampled_notes,
    snapped_grid,
    source,
    write_vrt,
)

log = logging.getLogger(__name__)


def _pixel_boxes(
    metas: list[dict[str, Any]], transform: Any
) -> list[tuple[float, float, float, float]]:
    """Each tile's extent in the mosaic's pixel coordinates: ``(col0, row0, col1, row1)``."""
    boxes = []
    for m in metas:
        left, bottom, right, top = m["bounds"]
        boxes.append(
            (
                (left - transform.c) / transform.a,
                (transform.f - top) / -transform.e,
                (right - transform.c) / transform.a,
                (transform.f - bottom) / -transform.e,
            )
        )
    return boxes


def uncovered_pixels(
    boxes: list[tuple[float, float, float, float]], width: int, height: int
) -> int:
    """How many pixel centres of a ``width`` × ``height`` grid no box covers.

    Boxes are ``(col0, row0, col1, row1)`` in pixel coordinates; the count is exact,
    from the boxes' edges (no raster of the grid is made).

    Examples
    --------
    >>> uncovered_pixels([(0, 0, 2, 4), (2, 0, 4, 2)], 4, 4)  # the lower right 2 × 2
    4
    >>> uncovered_pixels([(0, 0, 2.6, 4), (2.9, 0, 4, 4)], 4, 4)  # a sliver between centres
    0
    >>> uncovered_pixels([(0, 0, 2.4, 4), (2.6, 0, 4, 4)], 4, 4)  # one over the centres 2.5
    4
    """
    arr = np.asarray(boxes, dtype=float).reshape(-1, 4)
    xs = np.unique(np.clip([0.0, float(width), *arr[:, 0], *arr[:, 2]], 0, width))
    ys = np.unique(np.clip([0.0, float(height), *arr[:, 1], *arr[:, 3]], 0, height))
    cols = np.ceil(xs[1:] - 0.5) - np.ceil(xs[:-1] - 0.5)  # pixel centres per interval
    rows = np.ceil(ys[1:] - 0.5) - np.ceil(ys[:-1] - 0.5)
    ym = (ys[1:] + ys[:-1]) / 2
    missing = 0
    for i in np.flatnonzero(cols > 0):
        xm = (xs[i] + xs[i + 1]) / 2
        spans = arr[(arr[:, 0] <= xm) & (xm < arr[:, 2])]
        covered = ((spans[:, 1, None] <= ym) & (ym < spans[:, 3, None])).any(axis=0)
        missing += int(cols[i] * rows[~covered].sum())
    return missing


def _band_names(paths: list[str], metas: list[dict[str, Any]]) -> list[str]:
    """The tiles' band names, which must agree where given; ``bandK`` where none is."""
    names: list[str | None] = [None] * metas[0]["count"]
    owner: list[str | None] = [None] * metas[0]["count"]
    for path, meta in zip(paths, metas, strict=True):
        if meta["count"] != metas[0]["count"]:
            raise RasterFormatError(
                f"{path}: {meta['count']} bands, but {paths[0]} has {metas[0]['count']}: "
                "tiles of one mosaic hold the same bands"
            )
        for k, d in enumerate(meta["descriptions"]):
            if not d:
                continue
            if names[k] is None:
                names[k], owner[k] = d, path
            elif names[k] != d:
                raise RasterFormatError(
                    f"{path}: its band {k + 1} is named {d!r}, but that of {owner[k]} "
                    f"{names[k]!r}: tiles of one mosaic hold the same bands in the same order "
                    "(reorder the bands, or stack them: geoseg stack)"
                )
    return [n or default_band_name(k + 1) for k, n in enumerate(names)]


def _overlaps(boxes: list[tuple[float, float, float, float]]) -> int:
    """How many pairs of tiles overlap by more than half a pixel each way."""
    arr = np.asarray(boxes)
    count = 0
    for i in range(len(arr) - 1):
        rest = arr[i + 1 :]
        w = np.minimum(arr[i, 2], rest[:, 2]) - np.maximum(arr[i, 0], rest[:, 0])
        h = np.minimum(arr[i, 3], rest[:, 3]) - np.maximum(arr[i, 1], rest[:, 1])
        count += int(np.sum((w > 0.5) & (h > 0.5)))
    return count


def plan_mosaic(
    paths: list[str | Path],
    *,
    resolution: str = "finest",
    resampling: str = "nearest",
    nodata: float | None = None,
) -> VirtualRaster:
    """What a mosaic of the tiles ``paths`` gives: its grid and bands (metadata only).

    Parameters
    ----------
    paths : list of str or Path
        Tiles with the same bands, in one CRS; where they overlap, a later one's valid
        pixels are read.
    resolution : {"finest", "coarsest"}
        Whose pixel size and grid the mosaic takes.
    resampling : str
        How a tile on another grid is resampled (one of :data:`geoseg.vrt.RESAMPLING`).
    nodata : float, optional
        The mosaic's nodata value, where no tile reaches; default: the tiles'.

    Raises
    ------
    ConfigError
        Bad options; the tiles leave a gap and have no nodata value (``nodata`` needed).
    RasterReadError, RasterFormatError
        A tile is missing or unreadable, not north-up, in another CRS, with other bands.
    """
    check_resampling(resampling)
    spaths = local_paths(paths)
    metas = [read_source(p) for p in spaths]
    names = _band_names(spaths, metas)
    crs = check_crs(spaths, metas)
    pick = pick_grid(metas, resolution)
    union = (
        min(m["bounds"][0] for m in metas),
        min(m["bounds"][1] for m in metas),
        max(m["bounds"][2] for m in metas),
        max(m["bounds"][3] for m in metas),
    )
    transform, width, height = snapped_grid(metas[pick]["transform"], union, outward=True)
    boxes = _pixel_boxes(metas, transform)
    gaps = uncovered_pixels(boxes, width, height)
    count = metas[0]["count"]
    band_nodata: list[float | None] = []
    for k in range(count):
        given = [m["nodata"][k] for m in metas if m["nodata"][k] is not None]
        band_nodata.append(nodata if nodata is not None else (given[0] if given else None))
    if gaps and any(v is None for v in band_nodata):
        raise ConfigError(
            f"{', '.join(spaths[:3])}{' ...' if len(spaths) > 3 else ''}: the tiles leave "
            f"{gaps} pixels of their extent uncovered and have no nodata value, so those "
            "would read as 0: give the mosaic a nodata value the pixels never take "
            "(--nodata)"
        )
    notes = resampled_notes(spaths, metas, transform, resampling)
    if gaps:
        notes.append(f"{gaps} pixels of the extent are in no tile: nodata")
    if (pairs := _overlaps(boxes)) > 0:
        notes.append(f"{pairs} pairs of tiles overlap: there, a later tile's pixels are read")
    bands = tuple(
        Band(
            name=names[k - 1],
            sources=tuple(source(p, m, k) for p, m in zip(spaths, metas, strict=True)),
            nodata=band_nodata[k - 1],
            alpha=metas[0]["alpha"][k - 1],
        )
        for k in range(1, count + 1)
    )
    return VirtualRaster(
        kind="mosaic",
        bands=bands,
        width=width,
        height=height,
        transform=transform,
        crs_wkt=crs.to_wkt() if crs else "",
        dtype=common_dtype([d for m in metas for d in m["dtypes"]]),
        resampling=resampling,
        notes=tuple(notes),
    )


def write_mosaic(
    paths: list[str | Path],
    out: str | Path,
    *,
    resolution: str = "finest",
    resampling: str = "nearest",
    nodata: float | None = None,
    overwrite: bool = False,
) -> VirtualRaster:
    """Write the VRT that mosaics the tiles ``paths`` to ``out``, atomically.

    See :func:`plan_mosaic` for the parameters, :func:`geoseg.vrt.write_vrt` for how it
    is written.

    Raises
    ------
    OutputExistsError
        ``out`` exists and ``overwrite`` is not set, or it is not a VRT geoseg wrote.
    ConfigError, RasterReadError, RasterFormatError
        See :func:`plan_mosaic`; ``out`` is not a ``.vrt`` path.
    """
    out = Path(out).absolute()
    check_vrt_path(out)
    mosaic = plan_mosaic(paths, resolution=resolution, resampling=resampling, nodata=nodata)
    write_vrt(mosaic, out, overwrite=overwrite)
    for note in mosaic.notes:
        log.info("%s", note)
    return mosaic
