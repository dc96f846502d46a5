"""Editing a raster's georeferencing and nodata tag in place: ``geoseg edit``.

The fixes that geoseg's messages give for a missing CRS, a wrong one, untagged fill or
a nodata tag that hides a class change a file's metadata, not its pixels. ``rio
edit-info`` does that for a plain GeoTIFF but refuses a Cloud-Optimized one (GDAL
opens a COG for update only when told that its layout may break), and Landsat
Collection 2 and Sentinel-2 on cloud buckets ship COGs, as geoseg's own ``labels.tif``
is one. :func:`edit_raster` opens any GeoTIFF (or other writable raster) for update
with that permission and sets what is asked. The file stays a valid GeoTIFF with its
pixels, tags and overviews; a COG may lose its optimised layout (``rio cogeo`` or
``gdal_translate -of COG`` restores it).
"""

from __future__ import annotations

import json
import math
import shlex
import warnings
from pathlib import Path
from typing import Any

import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import CRSError, RasterioIOError

from geoseg.atomic import locks_output
from geoseg.errors import ConfigError, GeosegWarning, RasterReadError


def parse_transform(text: str) -> Affine:
    """A geotransform given as six numbers ``[a, b, c, d, e, f]`` (rasterio's order).

    Examples
    --------
    >>> parse_transform("[30, 0, 300000, 0, -30, 4100000]")
    Affine(30.0, 0.0, 300000.0,
           0.0, -30.0, 4100000.0)
    """
    try:
        values = json.loads(text)
        if not isinstance(values, list) or len(values) != 6:
            raise ValueError
        if any(isinstance(v, bool) or not isinstance(v, int | float) for v in values):
            raise ValueError
        t = Affine(*(float(v) for v in values))
        if not all(math.isfinite(v) for v in t[:6]) or t.a * t.e - t.b * t.d == 0:
            raise ValueError
        return t
    except (ValueError, TypeError):
        raise ConfigError(
            f"--transform {text!r}: give six finite numbers [XRES, 0, ULX, 0, -YRES, ULY] "
            "(pixel width, row rotation, left edge, column rotation, minus pixel height, top "
            "edge), with pixels of some size"
        ) from None


def parse_crs(text: str) -> CRS:
    """A CRS as EPSG code, WKT or PROJ string; a one-line error for anything else."""
    try:
        return CRS.from_user_input(text)
    except CRSError:
        raise ConfigError(
            f"--crs {text!r}: not a coordinate reference system: give e.g. EPSG:32612"
        ) from None


@locks_output("path")
def edit_raster(
    path: str | Path,
    *,
    crs: str | None = None,
    nodata: float | None = None,
    unset_nodata: bool = False,
    transform: str | None = None,
) -> dict[str, Any]:
    """Set a raster's CRS, geotransform and nodata tag in place (a COG too).

    Parameters
    ----------
    path : str or Path
        The raster to change.
    crs : str, optional
        Its CRS (``EPSG:32612``, WKT or PROJ).
    nodata : float, optional
        The value to tag as nodata in every band (it must fit the bands' data type).
    unset_nodata : bool
        Remove the nodata tag: those pixels become values.
    transform : str, optional
        Its geotransform, ``[a, b, c, d, e, f]``.

    Returns
    -------
    dict
        What the file holds now: ``crs``, ``transform``, ``nodata``.

    Raises
    ------
    ConfigError
        Nothing to change, contradicting options, a value that does not parse or fit.
    RasterReadError
        The file is missing, or cannot be opened for update.
    """
    from geoseg.raster import _first_line, _probe, _require_file
    from geoseg.vrt import check_nodata

    if crs is None and nodata is None and not unset_nodata and transform is None:
        raise ConfigError(
            f"{path}: nothing to change: give --crs, --transform, --nodata or --unset-nodata"
        )
    if nodata is not None and unset_nodata:
        raise ConfigError(f"{path}: --nodata and --unset-nodata contradict: give one of them")
    new_crs = parse_crs(crs) if crs is not None else None
    new_transform = parse_transform(transform) if transform is not None else None
    if (
        new_transform is not None
        and new_transform.b == new_transform.d == 0
        and new_transform.e > 0
    ):
        warnings.warn(
            f"{path}: --transform {transform} has a positive pixel height ({new_transform.e:g}): "
            "the grid becomes south-up (rows run north from the bottom edge); a north-up "
            "grid gives -YRES and the top edge",
            GeosegWarning,
            stacklevel=3,
        )
    _require_file(path)
    try:
        with rasterio.open(path) as src:
            driver = src.driver
    except RasterioIOError as exc:
        raise RasterReadError(
            f"{path}: not a raster GDAL can read ({_first_line(exc)}): geoseg edit changes "
            "the tags of a raster (GeoTIFF), not of a vector file or a folder"
        ) from None
    try:
        try:
            dst = rasterio.open(path, "r+", IGNORE_COG_LAYOUT_BREAK="YES")
        except TypeError:  # rasterio's word for a driver that cannot update a file in place
            raise RasterReadError(
                f"{path}: GDAL's {driver} driver cannot change a file in place: convert it "
                f"to a GeoTIFF first (gdal_translate {shlex.quote(str(path))} edited.tif), "
                "then edit that"
            ) from None
        with dst:
            if nodata is not None:
                check_nodata(nodata, dst.dtypes[0])  # NaN too, for integer bands
                dst.nodata = nodata
            if unset_nodata:
                dst.nodata = None
            if new_crs is not None:
                dst.crs = new_crs
            if new_transform is not None:
                dst.transform = new_transform
        with rasterio.open(path) as src:
            try:  # the tags are set; the pixels may still be what the user will hit next
                _probe(src, str(path))
            except RasterReadError as exc:
                why = str(exc).split(": ", 1)[1]
                warnings.warn(f"{path}: tags edited, but {why}", GeosegWarning, stacklevel=3)
            return {
                "crs": src.crs.to_string() if src.crs else None,
                "transform": list(src.transform)[:6],
                "nodata": src.nodata,
            }
    except RasterioIOError as exc:
        raise RasterReadError(
            f"{path}: cannot be opened for update ({_first_line(exc)}): check that it is a "
            "writable raster (a read-only file or folder cannot be edited in place)"
        ) from None
