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
import math
from pathlib import Path
from typing import Any

import numpy as np

from geoseg import fixes
from geoseg.atomic import locks_output
from geoseg.errors import ConfigError, RasterFormatError
from geoseg.stack import band_name_from_path
from geoseg.vrt import (
    Band,
    VirtualRaster,
    check_crs,
    check_nodata,
    check_resampling,
    check_vrt_path,
    common_dtype,
    count_of,
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


def _band_layout(
    paths: list[str], metas: list[dict[str, Any]]
) -> tuple[list[str | None], list[list[int]]]:
    """The mosaic's band names, and which band of each tile feeds each of its bands.

    Tiles that name their bands may hold them in another order: they are matched by
    name. Names are the tiles' descriptions; single-band tiles without one are named by
    their files' band token where all agree (``..._B2.TIF``); else a band has no name
    (``None``: read by position, as the tiles are).

    Raises
    ------
    RasterFormatError
        A tile has another number of bands, or bands of other names.
    """
    count = metas[0]["count"]
    for path, meta in zip(paths, metas, strict=True):
        if meta["count"] != count:
            raise RasterFormatError(
                f"{path}: {count_of(meta['count'], 'band')}, but "
                f"{paths[0]} has {count}: tiles of one mosaic hold the same bands (for tiles "
                "delivered as one file per band, stack each tile first: geoseg stack)"
            )
    # the names: those of the first tile that names all its bands, else per position
    named = [(p, m["descriptions"]) for p, m in zip(paths, metas, strict=True)]
    full = next(((p, d) for p, d in named if all(d)), None)
    names: list[str | None]
    owner: list[str | None]
    if full is not None:
        names, owner = list(full[1]), [full[0]] * count
    else:
        names, owner = [None] * count, [None] * count
        for p, described in named:
            for k, d in enumerate(described):
                if d and names[k] is None:
                    names[k], owner[k] = d, p
    order: list[list[int]] = []
    for path, described in named:
        if full is not None and all(described) and list(described) != names:
            if sorted(described) != sorted(str(n) for n in names):
                theirs, ours = ",".join(described), ",".join(str(n) for n in names)
                raise RasterFormatError(
                    f"{path}: its bands are named {theirs}, those of {full[0]} {ours}: tiles "
                    "of one mosaic hold the same bands; if they are, name them alike "
                    f"(geoseg stack {path} --names {ours} --out TILE.vrt)"
                )
            order.append([list(described).index(n) + 1 for n in names])  # matched by name
            continue
        for k, d in enumerate(described):
            if d and d != names[k]:
                raise RasterFormatError(
                    f"{path}: its band {k + 1} is named {d!r}, but that of {owner[k]} "
                    f"{names[k]!r}: tiles of one mosaic hold the same bands; if they are, "
                    f"name them alike (geoseg stack {path} --names NAME1,NAME2,... --out "
                    "TILE.vrt)"
                )
        order.append(list(range(1, count + 1)))
    if count == 1 and names[0] is None:
        tokens = {band_name_from_path(p) for p in paths}
        if len(tokens) == 1:
            names[0] = tokens.pop()
    return names, order


def _alpha_bands(
    paths: list[str], metas: list[dict[str, Any]], order: list[list[int]]
) -> list[bool]:
    """Which of the mosaic's bands are alpha bands: those of every tile, or an error.

    Raises
    ------
    RasterFormatError
        A tile has an alpha band where another has a data band (it would be read as
        data).
    """
    first = [metas[0]["alpha"][b - 1] for b in order[0]]
    for path, meta, o in zip(paths, metas, order, strict=True):
        theirs = [meta["alpha"][b - 1] for b in o]
        if theirs != first:
            k = next(i for i, (a, b) in enumerate(zip(theirs, first, strict=True)) if a != b)
            # each file's own band number (tiles matched by name order them otherwise)
            here, there = (path, o[k]), (paths[0], order[0][k])
            (has, band_has), (lacks, band_lacks) = (here, there) if theirs[k] else (there, here)
            raise RasterFormatError(
                f"{has}: its band {band_has} is an alpha band (transparency), and band "
                f"{band_lacks} of {lacks}, its match, a data band: tiles of one mosaic hold "
                f"the same bands; drop the alpha band ({fixes.reorder_bands(has)}), or add "
                "one to every tile"
            )
    return first


def _nodata(
    paths: list[str],
    metas: list[dict[str, Any]],
    order: list[list[int]],
    nodata: float | None,
    dtype: str,
) -> list[float | None]:
    """Each band's nodata value: the one given, else the tiles' own one.

    Raises
    ------
    ConfigError
        The value given does not fit the data type; tiles tag different values, or
        some tag one and others none (the valid pixels of one tile of another's value
        would read as nodata), and none is given.
    """
    if nodata is not None:
        check_nodata(nodata, dtype)
        return [nodata] * metas[0]["count"]
    out: list[float | None] = []
    for k in range(metas[0]["count"]):
        every = {p: m["nodata"][o[k] - 1] for p, m, o in zip(paths, metas, order, strict=True)}
        tagged = {p: v for p, v in every.items() if v is not None}
        values = {("nan" if math.isnan(v) else v) for v in tagged.values()}
        if tagged and len(tagged) < len(every):  # untagged tiles: that value is data there
            values.add("none")
        if len(values) > 1:
            shown = ", ".join(
                f"{'none' if v is None else f'{v:g}'} ({Path(p).name})"
                for p, v in list(every.items())[:4]
            )
            raise ConfigError(
                f"{', '.join(paths[:3])}{' ...' if len(paths) > 3 else ''}: the tiles tag "
                f"different nodata values ({shown}), so one tile's valid pixels of another's "
                "value would read as nodata: give the mosaic's with --nodata, a value no "
                "tile's valid pixels take"
            )
        out.append(next(iter(tagged.values())) if tagged else None)
    return out


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
    metas = [read_source(p, warn_mask=False) for p in spaths]
    names, order = _band_layout(spaths, metas)
    alpha = _alpha_bands(spaths, metas, order)
    crs = check_crs(spaths, metas, reproject=True)
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
    dtype = common_dtype([d for m in metas for d in m["dtypes"]])
    band_nodata = _nodata(spaths, metas, order, nodata, dtype)
    if gaps and any(v is None for v in band_nodata):
        raise ConfigError(
            f"{', '.join(spaths[:3])}{' ...' if len(spaths) > 3 else ''}: the tiles leave "
            f"{gaps} pixels of their extent uncovered and have no nodata value, so those "
            "would read as 0: give the mosaic a nodata value the pixels never take "
            "(--nodata)"
        )
    notes, warns = resampled_notes(spaths, metas, transform, resampling)
    if gaps:
        notes.append(f"{gaps} pixels of the extent are in no tile: nodata")
    if (pairs := _overlaps(boxes)) > 0:
        notes.append(f"{pairs} pairs of tiles overlap: there, a later tile's pixels are read")
    bands = tuple(
        Band(
            name=names[k - 1],
            sources=tuple(
                source(p, m, o[k - 1], use_mask=True)
                for p, m, o in zip(spaths, metas, order, strict=True)
            ),
            nodata=band_nodata[k - 1],
            alpha=alpha[k - 1],
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
        dtype=dtype,
        resampling=resampling,
        notes=tuple(notes),
        warnings=tuple(warns),
    )


@locks_output("out")
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
    mosaic.log(log)
    return mosaic
