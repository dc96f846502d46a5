"""The commands that geoseg's error messages and warnings give as the fix.

Each fix is given first as a command a pip install has: ``rio`` (rasterio's, installed
with geoseg: its pip wheels ship GDAL's library but not GDAL's command-line tools), or
``geoseg edit`` for metadata changed in place (``rio edit-info`` refuses
Cloud-Optimized GeoTIFFs, as Landsat Collection 2 ships and geoseg writes), then as the
GDAL command for those who have GDAL installed. ``tests/test_fixes.py`` runs every
first command given here and checks that it does what the message says.

Paths are quoted for a POSIX shell where they need it.

Examples
--------
>>> assign_crs("scene.tif")
'geoseg edit scene.tif --crs EPSG:NNNN, or gdal_edit.py -a_srs EPSG:NNNN scene.tif'
>>> set_nodata("my scene.tif")
"geoseg edit 'my scene.tif' --nodata 0, or gdal_edit.py -a_nodata 0 'my scene.tif'"
"""

from __future__ import annotations

import math
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from affine import Affine


def _q(path: str | Path) -> str:
    """A path as a shell takes it (quoted where it holds spaces or shell characters)."""
    return shlex.quote(str(path))


def _either(rio: str, gdal: str) -> str:
    return f"{rio}, or {gdal}"


def assign_crs(path: str | Path = "FILE", crs: str = "EPSG:NNNN") -> str:
    """Give a raster its coordinate reference system (in place)."""
    p = _q(path)
    c = _q(crs)
    return _either(f"geoseg edit {p} --crs {c}", f"gdal_edit.py -a_srs {c} {p}")


def set_nodata(path: str | Path = "FILE", value: float = 0) -> str:
    """Tag ``value`` as a raster's nodata value (in place)."""
    p = _q(path)
    return _either(f"geoseg edit {p} --nodata {value:g}", f"gdal_edit.py -a_nodata {value:g} {p}")


def unset_nodata(path: str | Path = "FILE") -> str:
    """Remove a raster's nodata tag (in place): its pixels of that value become values."""
    p = _q(path)
    return _either(f"geoseg edit {p} --unset-nodata", f"gdal_edit.py -unsetnodata {p}")


def north_up(path: str | Path, out: str = "NORTH_UP.tif", crs: str | None = None) -> str:
    """Warp a rotated, south-up or mirrored grid onto a north-up one (nearest neighbour).

    ``crs``: the file's own; rio warp needs it to make a south-up grid north-up.
    """
    p, o = _q(path), _q(out)
    dst = f" --dst-crs {_q(crs)}" if crs else ""
    return _either(f"rio warp {p} {o}{dst}", f"gdalwarp -r near {p} {o}")


def one_band(path: str | Path = "FILE", out: str = "BAND.tif") -> str:
    """Extract band N of a raster into a file of its own."""
    p, o = _q(path), _q(out)
    return _either(f"rio stack {p} --bidx N -o {o}", f"gdal_translate -b N {p} {o}")


def reorder_bands(path: str | Path = "IMAGE", out: str = "REORDERED.tif") -> str:
    """Write an image's bands in another order (or some of them)."""
    p, o = _q(path), _q(out)
    return _either(f"rio stack {p} --bidx I,J,... -o {o}", f"gdal_translate -b I -b J ... {p} {o}")


def integer_codes(
    path: str | Path = "FILE", out: str = "CODES.tif", nodata: float | None = None
) -> str:
    """Round a raster's values to 32-bit integers (class codes; a numeric nodata kept).

    ``nodata``: the raster's (rio calc needs ``--not-masked`` without one, and cannot
    write a NaN nodata as an integer: then only GDAL's command is given).
    """
    p, o = _q(path), _q(out)
    gdal = f"gdal_translate -ot Int32 {p} {o}"
    whole = nodata is None or (
        math.isfinite(nodata) and nodata == round(nodata) and -(2**31) <= nodata < 2**31
    )
    if not whole:  # NaN, float32's lowest, -9999.5: rio calc cannot write it as int32
        return f"{gdal}, or numpy's round in Python"
    masked = "" if nodata is not None else " --not-masked"
    return _either(f'rio calc "(round (read 1))" {p} {o} --dtype int32{masked}', gdal)


def resample(path: str | Path, res: float, method: str) -> str:
    """Resample a raster to pixels of ``res`` CRS units by ``method``."""
    from geoseg.vrt import exact

    p = _q(path)
    return _either(
        f"rio warp {p} OUT.tif --res {exact(res)} --resampling {method}",
        f"gdalwarp -tr {exact(res)} {exact(res)} -r {method} {p} OUT.tif",
    )


def reproject(path: str | Path, crs: str) -> str:
    """Reproject a raster whole into ``crs`` (nearest neighbour), keeping its extent."""
    p = _q(path)
    return _either(
        f"rio warp {p} REPROJECTED.tif --dst-crs {_q(crs)}",
        f"gdalwarp -t_srs {_q(crs)} {p} REPROJECTED.tif",
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
        f"geoseg edit {p} --crs CRS --transform '[XRES, 0, ULX, 0, -YRES, ULY]'",
        f"gdal_edit.py -a_srs CRS -a_ullr ULX ULY LRX LRY {p}",
    )


def onto_pixels(
    t0: Affine, bounds: tuple[float, float, float, float], crs: Any = None, path: str = "SCENE.tif"
) -> str:
    """The rio (and gdalwarp) command that puts a scene of ``bounds`` on ``t0``'s pixel edges.

    ``crs``: the target's, when the file must be reprojected into it too; ``path``: the
    file (a placeholder by default).

    Examples
    --------
    >>> from affine import Affine
    >>> rio, gdal = onto_pixels(Affine(30, 0, 0, 0, -30, 0), (5, -55, 100, -10)).split(", or ")
    >>> rio
    'rio warp SCENE.tif ALIGNED.tif --res 30 --bounds 0 -60 120 0 --resampling bilinear'
    >>> gdal
    'gdalwarp -tr 30 30 -te 0 -60 120 0 -r bilinear SCENE.tif ALIGNED.tif'
    """
    from geoseg.vrt import exact

    x0, y0, x1, y1 = bounds
    ax, ay = abs(t0.a), abs(t0.e)
    ex0 = t0.c + math.floor((x0 - t0.c) / ax) * ax
    ex1 = t0.c + math.ceil((x1 - t0.c) / ax) * ax
    ey0 = t0.f + math.floor((y0 - t0.f) / ay) * ay
    ey1 = t0.f + math.ceil((y1 - t0.f) / ay) * ay
    srs = f"-t_srs {_q(str(crs))} " if crs is not None else ""
    box = " ".join(exact(v) for v in (ex0, ey0, ex1, ey1))
    res = f"--res {exact(ax)}" if ax == ay else f"--res {exact(ax)} --res {exact(ay)}"
    dst = f"--dst-crs {_q(str(crs))} " if crs is not None else ""
    return (
        f"rio warp {_q(path)} ALIGNED.tif {dst}{res} --bounds {box} --resampling bilinear, or "
        f"gdalwarp {srs}-tr {exact(ax)} {exact(ay)} -te {box} -r bilinear {_q(path)} ALIGNED.tif"
    )


def name_bands(path: str | Path = "IMAGE") -> str:
    """Give an image's bands names (a VRT over it, no copy of its pixels)."""
    return f"geoseg stack {_q(path)} --names NAME1,NAME2,... --out NAMED.vrt"
