"""The commands that geoseg's error messages and warnings give as the fix.

Each fix is given first as a ``rio`` command, which rasterio installs with geoseg (its
pip wheels ship GDAL's library but not GDAL's command-line tools), then as the GDAL
command for those who have GDAL installed. ``tests/test_fixes.py`` runs every ``rio``
command given here and checks that it does what the message says.

Paths are quoted for a POSIX shell where they need it.

Examples
--------
>>> assign_crs("scene.tif")
'rio edit-info --crs EPSG:NNNN scene.tif, or gdal_edit.py -a_srs EPSG:NNNN scene.tif'
>>> set_nodata("my scene.tif")
"rio edit-info --nodata 0 'my scene.tif', or gdal_edit.py -a_nodata 0 'my scene.tif'"
"""

from __future__ import annotations

import shlex
from pathlib import Path


def _q(path: str | Path) -> str:
    """A path as a shell takes it (quoted where it holds spaces or shell characters)."""
    return shlex.quote(str(path))


def _either(rio: str, gdal: str) -> str:
    return f"{rio}, or {gdal}"


def assign_crs(path: str | Path = "FILE", crs: str = "EPSG:NNNN") -> str:
    """Give a raster its coordinate reference system (in place)."""
    p = _q(path)
    return _either(f"rio edit-info --crs {crs} {p}", f"gdal_edit.py -a_srs {crs} {p}")


def set_nodata(path: str | Path = "FILE", value: float = 0) -> str:
    """Tag ``value`` as a raster's nodata value (in place)."""
    p = _q(path)
    return _either(f"rio edit-info --nodata {value:g} {p}", f"gdal_edit.py -a_nodata {value:g} {p}")


def unset_nodata(path: str | Path = "FILE") -> str:
    """Remove a raster's nodata tag (in place): its pixels of that value become values."""
    p = _q(path)
    return _either(f"rio edit-info --unset-nodata {p}", f"gdal_edit.py -unsetnodata {p}")


def north_up(path: str | Path, out: str = "NORTH_UP.tif") -> str:
    """Warp a rotated, south-up or mirrored grid onto a north-up one (nearest neighbour)."""
    p, o = _q(path), _q(out)
    return _either(f"rio warp {p} {o}", f"gdalwarp -r near {p} {o}")


def one_band(path: str | Path = "FILE", out: str = "BAND.tif") -> str:
    """Extract band N of a raster into a file of its own."""
    p, o = _q(path), _q(out)
    return _either(f"rio stack {p} --bidx N -o {o}", f"gdal_translate -b N {p} {o}")


def reorder_bands(path: str | Path = "IMAGE", out: str = "REORDERED.tif") -> str:
    """Write an image's bands in another order (or some of them)."""
    p, o = _q(path), _q(out)
    return _either(f"rio stack {p} --bidx I,J,... -o {o}", f"gdal_translate -b I -b J ... {p} {o}")


def integer_codes(path: str | Path = "FILE", out: str = "CODES.tif") -> str:
    """Convert a raster's values to 32-bit integers (class codes)."""
    p, o = _q(path), _q(out)
    return _either(f"rio convert {p} {o} --dtype int32", f"gdal_translate -ot Int32 {p} {o}")


def resample(path: str | Path, res: float, method: str) -> str:
    """Resample a raster to pixels of ``res`` CRS units by ``method``."""
    p = _q(path)
    return _either(
        f"rio warp {p} OUT.tif --res {res:g} --resampling {method}",
        f"gdalwarp -tr {res:g} {res:g} -r {method} {p} OUT.tif",
    )


def reproject(path: str | Path, crs: str) -> str:
    """Reproject a raster whole into ``crs`` (nearest neighbour), keeping its extent."""
    p = _q(path)
    return _either(
        f"rio warp {p} REPROJECTED.tif --dst-crs {crs}",
        f"gdalwarp -t_srs {crs} {p} REPROJECTED.tif",
    )


def onto_grid(path: str | Path, like: str | Path) -> str:
    """Resample a raster onto another's grid (CRS, extent, pixels) by nearest neighbour."""
    p, lk = _q(path), _q(like)
    return _either(
        f"rio warp {p} ALIGNED.tif --like {lk} --resampling nearest",
        f"gdalwarp -r near {p} ALIGNED.tif with the -t_srs, -te and -tr of {lk}",
    )


def georeference(path: str | Path = "FILE") -> str:
    """Give a raster without georeferencing its CRS and geotransform (in place)."""
    p = _q(path)
    return _either(
        f"rio edit-info --crs CRS --transform '[XRES, 0, ULX, 0, -YRES, ULY]' {p}",
        f"gdal_edit.py -a_srs CRS -a_ullr ULX ULY LRX LRY {p}",
    )


def name_bands(path: str | Path = "IMAGE") -> str:
    """Give an image's bands names (a VRT over it, no copy of its pixels)."""
    return f"geoseg stack {_q(path)} --names NAME1,NAME2,... --out NAMED.vrt"
