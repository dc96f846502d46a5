"""The commands that geoseg's error messages and warnings give as the fix.

Each fix is given first as a ``rio`` command, which rasterio installs with geoseg (its
pip wheels ship GDAL's library but not GDAL's command-line tools), then as the GDAL
command for those who have GDAL installed. ``tests/test_fixes.py`` runs every ``rio``
command given here and checks that it does what the message says.

Examples
--------
>>> assign_crs("scene.tif")
'rio edit-info --crs EPSG:NNNN scene.tif, or gdal_edit.py -a_srs EPSG:NNNN scene.tif'
>>> set_nodata("scene.tif")
'rio edit-info --nodata 0 scene.tif, or gdal_edit.py -a_nodata 0 scene.tif'
"""

from __future__ import annotations

from pathlib import Path


def assign_crs(path: str | Path = "FILE", crs: str = "EPSG:NNNN") -> str:
    """Give a raster its coordinate reference system (in place)."""
    return f"rio edit-info --crs {crs} {path}, or gdal_edit.py -a_srs {crs} {path}"


def set_nodata(path: str | Path = "FILE", value: float = 0) -> str:
    """Tag ``value`` as a raster's nodata value (in place)."""
    return f"rio edit-info --nodata {value:g} {path}, or gdal_edit.py -a_nodata {value:g} {path}"


def unset_nodata(path: str | Path = "FILE") -> str:
    """Remove a raster's nodata tag (in place): its pixels of that value become values."""
    return f"rio edit-info --unset-nodata {path}, or gdal_edit.py -unsetnodata {path}"


def north_up(path: str | Path, out: str = "NORTH_UP.tif") -> str:
    """Warp a rotated, south-up or mirrored grid onto a north-up one (nearest neighbour)."""
    return f"rio warp {path} {out}, or gdalwarp -r near {path} {out}"


def one_band(path: str | Path = "FILE", out: str = "BAND.tif") -> str:
    """Extract band N of a raster into a file of its own."""
    return f"rio stack {path} --bidx N -o {out}, or gdal_translate -b N {path} {out}"


def reorder_bands(path: str | Path = "IMAGE", out: str = "REORDERED.tif") -> str:
    """Write an image's bands in another order (or some of them)."""
    return f"rio stack {path} --bidx I,J,... -o {out}, or gdal_translate -b I -b J ... {path} {out}"


def integer_codes(path: str | Path = "FILE", out: str = "CODES.tif") -> str:
    """Convert a raster's values to 32-bit integers (class codes)."""
    return f"rio convert {path} {out} --dtype int32, or gdal_translate -ot Int32 {path} {out}"


def resample(path: str | Path, res: float, method: str) -> str:
    """Resample a raster to pixels of ``res`` CRS units by ``method``."""
    return (
        f"rio warp {path} OUT.tif --res {res:g} --resampling {method}, or gdalwarp "
        f"-tr {res:g} {res:g} -r {method} {path} OUT.tif"
    )


def reproject(path: str | Path, crs: str) -> str:
    """Reproject a raster whole into ``crs`` (nearest neighbour), keeping its extent."""
    return (
        f"rio warp {path} REPROJECTED.tif --dst-crs {crs}, or gdalwarp -t_srs {crs} {path} "
        "REPROJECTED.tif"
    )


def onto_grid(path: str | Path, like: str | Path) -> str:
    """Resample a raster onto another's grid (CRS, extent, pixels) by nearest neighbour."""
    return (
        f"rio warp {path} ALIGNED.tif --like {like} --resampling nearest, or gdalwarp "
        f"-r near with {like}'s -t_srs, -te and -tr"
    )


def name_bands(path: str | Path = "IMAGE") -> str:
    """Give an image's bands names (a VRT over it, no copy of its pixels)."""
    return f"geoseg stack {path} --names NAME1,NAME2,... --out NAMED.vrt"
