"""GDAL virtual rasters (VRT): several files read as one image, without a copy.

What :mod:`geoseg.stack` (band files side by side) and :mod:`geoseg.mosaic` (tiles side
by side) share: reading the files' metadata, the grid arithmetic, the XML, and writing
it atomically. A VRT names local files relative to its own folder, so the folder can
move with them; every source is placed by its georeferencing and resampled by GDAL,
as it is read, where its pixels are not those of the VRT's grid.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import RasterioError, RasterioIOError

from geoseg import fixes
from geoseg.errors import ConfigError, GeosegWarning, OutputExistsError, RasterFormatError

#: Metadata key that marks a VRT as one geoseg wrote (``--overwrite`` replaces only
#: those); its value is what wrote it (``stack`` or ``mosaic``).
VRT_TAG = "GEOSEG_VRT"

#: Resampling methods offered (GDAL's names).
RESAMPLING = ("nearest", "bilinear", "cubic", "average", "mode")

#: Which file's grid a VRT takes.
RESOLUTIONS = ("finest", "coarsest")

#: numpy data types by GDAL's names.
_GDAL_TYPES = {
    "uint8": "Byte",
    "int8": "Int8",
    "uint16": "UInt16",
    "int16": "Int16",
    "uint32": "UInt32",
    "int32": "Int32",
    "uint64": "UInt64",
    "int64": "Int64",
    "float32": "Float32",
    "float64": "Float64",
}

#: How a URL is read through GDAL's virtual file systems.
_URL_PREFIXES = {
    "http": "/vsicurl/",
    "https": "/vsicurl/",
    "s3": "/vsis3/",
    "gs": "/vsigs/",
    "az": "/vsiaz/",
}

#: A fraction of a pixel below which two grid lines are the same.
_EPS = 1e-6


class UncarriedMaskWarning(GeosegWarning):
    """A file's own validity mask, which a VRT does not carry over."""


@dataclass(frozen=True, slots=True)
class Source:
    """One band of one file, as a VRT reads it.

    Attributes
    ----------
    path : str
        The file (absolute local path, or a URL or GDAL virtual path as given).
    band : int
        1-based band of that file.
    dtype : str
        Its data type in the file.
    nodata : float, optional
        Its nodata value: those pixels are transparent where sources overlap.
    use_mask : bool
        Its file's mask (an alpha band, an internal mask) makes pixels transparent too
        (a mosaic's tiles: a later tile's masked pixels let the earlier one show).
    size : tuple of int
        The file's ``(width, height)``.
    transform : Affine
        The file's geotransform.
    """

    path: str
    band: int
    dtype: str
    nodata: float | None
    size: tuple[int, int]
    transform: Affine
    use_mask: bool = False


@dataclass(frozen=True, slots=True)
class Band:
    """One band of a VRT: its name, nodata value and sources (later ones on top).

    ``name`` is ``None`` for a band of tiles that name none: no description is written,
    and geoseg reads the band by position, as the tiles' own.
    """

    name: str | None
    sources: tuple[Source, ...]
    nodata: float | None = None
    alpha: bool = False


@dataclass(frozen=True, slots=True)
class VirtualRaster:
    """A VRT's grid and bands: what :func:`vrt_xml` writes.

    Attributes
    ----------
    kind : str
        What it is: ``stack`` or ``mosaic``.
    bands : tuple of Band
        In order.
    width, height : int
        Size in pixels.
    transform : Affine
        Geotransform (north-up).
    crs_wkt : str
        CRS as WKT ("" when the files have none).
    dtype : str
        The data type every band is read as.
    resampling : str
        How a file on another grid is resampled onto it (GDAL's name).
    notes : tuple of str
        What the user may want to know (logged at INFO): files resampled, gaps, overlaps.
    warnings : tuple of str
        What the user should know (logged as warnings): pixels cropped, grids off by a
        fraction of a pixel, pixels dropped by nearest-neighbour downsampling.
    """

    kind: str
    bands: tuple[Band, ...]
    width: int
    height: int
    transform: Affine
    crs_wkt: str
    dtype: str
    resampling: str
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def log(self, logger: Any) -> None:
        """Log the notes at INFO and the warnings as warnings."""
        for note in self.notes:
            logger.info("%s", note)
        for warning in self.warnings:
            logger.warning("%s", warning)

    @property
    def names(self) -> tuple[str, ...]:
        """The bands' names, in order (``bandK`` for one without: how geoseg reads it)."""
        from geoseg.raster import default_band_name

        return tuple(b.name or default_band_name(k) for k, b in enumerate(self.bands, start=1))

    @property
    def files(self) -> tuple[str, ...]:
        """Every file read, once each, in order."""
        return tuple(dict.fromkeys(s.path for b in self.bands for s in b.sources))


def gdal_path(path: str) -> str:
    """``path`` as GDAL opens it inside a VRT: URLs through its virtual file systems.

    Examples
    --------
    >>> gdal_path("s3://bucket/scene/B4.tif")
    '/vsis3/bucket/scene/B4.tif'
    >>> gdal_path("https://example.com/B4.tif")
    '/vsicurl/https://example.com/B4.tif'
    >>> gdal_path("/vsizip//data/scene.zip/B4.tif")
    '/vsizip//data/scene.zip/B4.tif'
    """
    scheme, sep, rest = path.partition("://")
    if not sep:
        return path
    prefix = _URL_PREFIXES.get(scheme.lower())
    if prefix is None:
        raise ConfigError(
            f"{path}: cannot read a {scheme}:// file into a VRT: download it, or give GDAL's "
            "virtual path (/vsi...)"
        )
    return prefix + (path if prefix == "/vsicurl/" else rest)


def common_dtype(dtypes: list[str]) -> str:
    """The smallest data type that holds the values of every one of ``dtypes``.

    Examples
    --------
    >>> common_dtype(["uint16", "uint16"]), common_dtype(["uint16", "int16"])
    ('uint16', 'int32')
    >>> common_dtype(["uint8", "float32"])
    'float32'
    """
    out = str(np.result_type(*[np.dtype(d) for d in dtypes]))
    if np.dtype(out).kind == "f" and all(np.dtype(d).kind in "iu" for d in dtypes):
        raise RasterFormatError(
            f"band data types {sorted(set(dtypes))}: no integer type holds the values of "
            f"all of them (numpy would read them as {out}, rounding large values): convert "
            "the files to one type first (rio convert --dtype)"
        )
    if out not in _GDAL_TYPES:
        raise RasterFormatError(
            f"band data types {sorted(set(dtypes))} have no common type GDAL can read "
            f"({out}): convert the files to one type first"
        )
    return out


def count_of(n: int, noun: str) -> str:
    """``n`` and ``noun``, in the plural unless one.

    Examples
    --------
    >>> count_of(1, "band"), count_of(4, "tile")
    ('1 band', '4 tiles')
    """
    return f"{n} {noun}{'' if n == 1 else 's'}"


def check_resampling(resampling: str) -> None:
    """Refuse a resampling method GDAL's VRT does not offer here (:data:`RESAMPLING`)."""
    if resampling not in RESAMPLING:
        raise ConfigError(f"resampling {resampling!r}: use one of {', '.join(RESAMPLING)}")


def check_nodata(value: float, dtype: str) -> None:
    """Refuse a nodata value that the bands' data type cannot hold (GDAL would drop it).

    Examples
    --------
    >>> check_nodata(65535, "uint16"); check_nodata(float("nan"), "float32")
    >>> check_nodata(-1, "uint16")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    geoseg.errors.ConfigError: --nodata -1: not a uint16 value (0 to 65535): give one...
    """
    kind = np.dtype(dtype)
    if kind.kind == "f":
        limit = float(np.finfo(kind).max)
        if math.isfinite(value) and abs(value) > limit:
            raise ConfigError(
                f"--nodata {value:g}: beyond the range of {dtype} (±{limit:g}): give one in "
                "range that no valid pixel takes"
            )
        return
    info = np.iinfo(kind)
    if not math.isfinite(value) or value != round(value) or not info.min <= value <= info.max:
        raise ConfigError(
            f"--nodata {value:g}: not a {dtype} value ({info.min} to {info.max}): give one "
            "in range that no valid pixel takes"
        )


def local_paths(paths: list[str | Path]) -> list[str]:
    """``paths`` as the VRT's model holds them: local files absolute, URLs as given.

    The file inside a GDAL archive path is made absolute too (``/vsizip/a.zip/b.tif``
    would be looked for from wherever the VRT is read).

    Examples
    --------
    >>> import os
    >>> local_paths(["/vsizip/x.zip/b.tif"])[0] == f"/vsizip/{os.getcwd()}/x.zip/b.tif"
    True
    >>> local_paths(["/vsizip//data/x.zip/b.tif", "s3://b/k.tif"])
    ['/vsizip//data/x.zip/b.tif', 's3://b/k.tif']
    """
    from geoseg.raster import is_remote

    if not paths:
        raise ConfigError("no files given: pass the files to read as one image")
    out = []
    for p in map(str, paths):
        archive = re.match(r"(/vsi(?:zip|tar|gzip|7z|rar)/)(.*)", p)
        if archive and not archive[2].startswith(("/", "/vsi")):
            p = archive[1] + str(Path(archive[2]).absolute())
        out.append(p if is_remote(p) else str(Path(p).absolute()))
    return out


def read_source(path: str, *, warn_mask: bool = True) -> dict[str, Any]:
    """What a VRT needs to know of the raster at ``path`` (its metadata only).

    Raises
    ------
    RasterReadError
        The file is missing.
    RasterFormatError
        It is not a readable raster, not north-up, or a geoseg label map.
    """
    from geoseg.raster import _first_line, _require_file, refuse_geoseg_output

    _require_file(path)
    try:
        with rasterio.open(gdal_path(path)) as src:
            try:
                refuse_geoseg_output(src, path)
            except RasterFormatError as exc:  # maps are combined by merge
                raise RasterFormatError(f"{exc}; to combine label maps: geoseg merge") from None
            t = src.transform
            if t.b != 0 or t.d != 0 or t.a <= 0 or t.e >= 0:
                raise RasterFormatError(
                    f"{path}: its grid is not north-up ({tuple(t)[:6]}): warp it north-up "
                    f"first ({fixes.north_up(path, crs=src.crs.to_string() if src.crs else None)})"
                )
            masks = [src.mask_flag_enums[i] for i in range(src.count)]
            internal = [
                MaskFlags.per_dataset in flags
                and MaskFlags.alpha not in flags
                and MaskFlags.nodata not in flags
                for flags in masks
            ]
            if warn_mask and any(internal):  # a mosaic carries it (UseMaskBand)
                warnings.warn(
                    f"{path}: its validity mask (an internal mask band) is not carried "
                    "into the VRT, so its masked pixels read as data: give the file a "
                    f"nodata value instead ({fixes.set_nodata(path)}, with its own value)",
                    UncarriedMaskWarning,
                    stacklevel=3,
                )
            return {
                "count": src.count,
                "dtypes": list(src.dtypes),
                "nodata": list(src.nodatavals),
                "descriptions": list(src.descriptions),
                "alpha": [ci == ColorInterp.alpha for ci in src.colorinterp],
                # a mask other than nodata: alpha band or internal mask (GDAL's flags)
                "masked": any(
                    MaskFlags.per_dataset in flags and MaskFlags.nodata not in flags
                    for flags in masks
                ),
                "size": (src.width, src.height),
                "transform": t,
                "crs": src.crs,
                "bounds": tuple(src.bounds),
            }
    except RasterioIOError as exc:
        raise RasterFormatError(
            f"{path}: not a readable raster ({_first_line(exc)}): pass a GeoTIFF or another "
            "GDAL raster"
        ) from None


def source(path: str, meta: dict[str, Any], band: int, *, use_mask: bool = False) -> Source:
    """Band ``band`` (1-based) of the file ``path`` whose metadata is ``meta``.

    ``use_mask``: the file's mask (alpha or internal) makes pixels transparent, where it
    has one.
    """
    return Source(
        path=path,
        band=band,
        dtype=meta["dtypes"][band - 1],
        nodata=meta["nodata"][band - 1],
        size=meta["size"],
        transform=meta["transform"],
        use_mask=use_mask and bool(meta.get("masked")),
    )


def check_crs(paths: list[str], metas: list[dict[str, Any]], *, reproject: bool = False) -> Any:
    """The files' one CRS (``None`` when none has one).

    ``reproject``: the fix to give is reprojecting the file whole (a mosaic's tile),
    not warping it onto the first file's grid (a stack's band).

    Raises
    ------
    RasterFormatError
        A file is in another CRS than the first.
    """
    crs = metas[0]["crs"]
    for path, meta in zip(paths[1:], metas[1:], strict=True):
        if (meta["crs"] is None) != (crs is None):  # one has none: give it the other's
            bare, known = (paths[0], meta["crs"]) if crs is None else (path, crs)
            raise RasterFormatError(
                f"{bare}: has no CRS, and {paths[0] if bare == path else path} has "
                f"{known.to_string()}: if it is in that CRS, give it it "
                f"({fixes.assign_crs(bare, known.to_string())})"
            )
        if meta["crs"] != crs:
            other = meta["crs"].to_string() if meta["crs"] else "none"
            first = crs.to_string() if crs else "none"
            fix = (
                _reproject_hint(path, meta, metas[0])
                if reproject
                else fixes.onto_grid(path, paths[0])
            )
            raise RasterFormatError(
                f"{path}: its CRS ({other}) is not that of {paths[0]} ({first}): reproject "
                f"it first ({fix})"
            )
    return crs


def _reproject_hint(path: str, meta: dict[str, Any], first: dict[str, Any]) -> str:
    """The warp that puts a tile on the first tile's CRS and pixel edges (a whole tile)."""
    from rasterio.warp import transform_bounds

    if meta["crs"] is None or first["crs"] is None:
        return fixes.reproject(path, first["crs"].to_string() if first["crs"] else "CRS")
    bounds = transform_bounds(meta["crs"], first["crs"], *meta["bounds"])
    return fixes.onto_pixels(first["transform"], bounds, first["crs"].to_string(), path=path)


def pick_grid(metas: list[dict[str, Any]], resolution: str) -> int:
    """Index of the file whose pixels the VRT takes: the smallest, or the largest."""
    if resolution not in RESOLUTIONS:
        raise ConfigError(f"resolution {resolution!r}: use one of {', '.join(RESOLUTIONS)}")
    areas = [abs(m["transform"].a * m["transform"].e) for m in metas]
    return areas.index(min(areas) if resolution == "finest" else max(areas))


def snapped_grid(
    grid: Affine, bounds: tuple[float, float, float, float], *, outward: bool
) -> tuple[Affine, int, int]:
    """The pixels of ``grid`` over ``bounds``: whole pixels inside it, or covering it.

    Examples
    --------
    >>> t, w, h = snapped_grid(Affine(10, 0, 0, 0, -10, 100), (5, 12, 41, 100), outward=False)
    >>> (t.c, t.f, w, h)
    (10.0, 100.0, 3, 8)
    >>> t, w, h = snapped_grid(Affine(10, 0, 0, 0, -10, 100), (5, 12, 41, 100), outward=True)
    >>> (t.c, t.f, w, h)
    (0.0, 100.0, 5, 9)
    """
    left, bottom, right, top = bounds
    cols = ((left - grid.c) / grid.a, (right - grid.c) / grid.a)
    rows = ((grid.f - top) / -grid.e, (grid.f - bottom) / -grid.e)
    if outward:
        col0, col1 = math.floor(cols[0] + _EPS), math.ceil(cols[1] - _EPS)
        row0, row1 = math.floor(rows[0] + _EPS), math.ceil(rows[1] - _EPS)
    else:
        col0, col1 = math.ceil(cols[0] - _EPS), math.floor(cols[1] + _EPS)
        row0, row1 = math.ceil(rows[0] - _EPS), math.floor(rows[1] + _EPS)
    transform = Affine(grid.a, 0.0, grid.c + col0 * grid.a, 0.0, grid.e, grid.f + row0 * grid.e)
    return transform, col1 - col0, row1 - row0


def resampled_notes(
    paths: list[str], metas: list[dict[str, Any]], grid: Affine, resampling: str
) -> tuple[list[str], list[str]]:
    """Notes and warnings for the files whose pixels are not the grid's (resampled).

    Another pixel size is a note; pixel edges off the grid's by a fraction of a pixel
    (bands or tiles that do not register), and nearest-neighbour downsampling (which
    keeps one pixel of several), are warnings.
    """
    notes, warns = [], []
    for path, meta in zip(paths, metas, strict=True):
        t = meta["transform"]
        # pixel edges on each other's: offsets whole in the smaller of the two pixels
        px, py = min(t.a, grid.a), min(-t.e, -grid.e)
        fx = abs(((t.c - grid.c) / px + 0.5) % 1 - 0.5)
        fy = abs(((t.f - grid.f) / py + 0.5) % 1 - 0.5)
        if fx > _EPS or fy > _EPS:
            warns.append(
                f"{path}: its pixels are off the grid by {max(fx, fy):.2f} of a pixel (the "
                f"files do not register): resampled ({resampling}); check its "
                "georeferencing"
            )
        if math.isclose(t.a, grid.a) and math.isclose(t.e, grid.e):
            continue
        text = (
            f"{path}: resampled ({resampling}) from {t.a:g} × {-t.e:g} to {grid.a:g} × {-grid.e:g}"
        )
        if resampling == "nearest" and abs(t.a * t.e) < abs(grid.a * grid.e) * 0.99:
            kept = abs(t.a * t.e) / abs(grid.a * grid.e)
            warns.append(
                f"{text}: nearest neighbour keeps about one pixel in {1 / kept:.0f} "
                "(--resampling average uses them all)"
            )
        else:
            notes.append(text)
    return notes, warns


def _number(value: float) -> str:
    """A window (in pixels) as XML text: no float noise (``2.9999999996``)."""
    rounded = round(value, 9)
    return str(int(rounded)) if rounded == int(rounded) else repr(rounded)


def exact(value: float) -> str:
    """A number as text to the last bit (degrees of 1e-6 and less), whole ones bare.

    Examples
    --------
    >>> exact(30.0), exact(8.983152841195214e-06), exact(1e-12)
    ('30', '8.983152841195214e-06', '1e-12')
    """
    v = float(value)
    return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)


def _nodata_text(value: float) -> str:
    return "nan" if math.isnan(value) else exact(value)


def _source_name(path: str, relative_to: Path | None) -> tuple[str, int]:
    """The file as the VRT names it, and whether relative to the VRT."""
    from geoseg.raster import is_remote

    if is_remote(path):
        return gdal_path(path), 0
    if relative_to is None:
        return path, 0
    try:
        # from the VRT's real folder ("link/.." is where the system puts it); a file's
        # own symlink is kept (it moves with the folder) unless that climbs out of it
        folder = os.path.realpath(relative_to)
        relative = Path(os.path.relpath(path, folder)).as_posix()
        if relative.startswith("../"):
            relative = Path(os.path.relpath(os.path.realpath(path), folder)).as_posix()
    except ValueError:  # another drive (Windows)
        return path, 0
    # files in the VRT's folder (or below) move with it; others stay where they are
    return (path, 0) if relative.startswith("../") else (relative, 1)


def _windows(vrt: VirtualRaster, src: Source) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """``SrcRect`` and ``DstRect`` of a source: where it and the grid overlap, or ``None``."""
    t, st = vrt.transform, src.transform
    sw, sh = src.size
    left = max(t.c, st.c)
    right = min(t.c + vrt.width * t.a, st.c + sw * st.a)
    top = min(t.f, st.f)
    bottom = max(t.f + vrt.height * t.e, st.f + sh * st.e)
    if right <= left or bottom >= top:
        return None
    dst = ((left - t.c) / t.a, (t.f - top) / -t.e, (right - left) / t.a, (top - bottom) / -t.e)
    srcr = (
        (left - st.c) / st.a,
        (st.f - top) / -st.e,
        (right - left) / st.a,
        (top - bottom) / -st.e,
    )
    return srcr, dst


def vrt_xml(vrt: VirtualRaster, relative_to: str | Path | None = None) -> str:
    """The GDAL VRT that reads ``vrt``.

    Parameters
    ----------
    vrt : VirtualRaster
        What to write.
    relative_to : str or Path, optional
        The folder the VRT is written to: local files are named relative to it, so the
        VRT moves with its files. Default: absolute paths (the XML opens as it is:
        ``rasterio.open(xml)``).
    """
    folder = Path(relative_to).absolute() if relative_to is not None else None
    t = vrt.transform
    gdal_type = _GDAL_TYPES[vrt.dtype]
    lines = [f'<VRTDataset rasterXSize="{vrt.width}" rasterYSize="{vrt.height}">']
    if vrt.crs_wkt:
        # no dataAxisToSRSAxisMapping: GDAL's default, the GIS order (x = easting or
        # longitude), is the geotransform's; "1,2" would swap EPSG:4326's axes
        lines.append(f"  <SRS>{escape(vrt.crs_wkt)}</SRS>")
    lines.append(
        "  <GeoTransform>"
        + ", ".join(exact(v) for v in (t.c, t.a, t.b, t.f, t.d, t.e))
        + "</GeoTransform>"
    )
    lines.append(f'  <Metadata><MDI key="{VRT_TAG}">{vrt.kind}</MDI></Metadata>')
    for i, band in enumerate(vrt.bands, start=1):
        lines.append(f'  <VRTRasterBand dataType="{gdal_type}" band="{i}">')
        if band.name is not None:
            lines.append(f"    <Description>{escape(band.name)}</Description>")
        if band.nodata is not None:
            lines.append(f"    <NoDataValue>{_nodata_text(band.nodata)}</NoDataValue>")
        if band.alpha:
            lines.append("    <ColorInterp>Alpha</ColorInterp>")
        for src in band.sources:
            rects = _windows(vrt, src)
            if rects is None:
                continue
            (sx, sy, sw, sh), (dx, dy, dw, dh) = rects
            name, relative = _source_name(src.path, folder)
            lines.append(f"    <ComplexSource resampling={quoteattr(vrt.resampling)}>")
            lines.append(
                f'      <SourceFilename relativeToVRT="{relative}">{escape(name)}</SourceFilename>'
            )
            lines.append(f"      <SourceBand>{src.band}</SourceBand>")
            lines.append(
                f'      <SourceProperties RasterXSize="{src.size[0]}" '
                f'RasterYSize="{src.size[1]}" DataType="{_GDAL_TYPES.get(src.dtype, gdal_type)}"/>'
            )
            lines.append(
                f'      <SrcRect xOff="{_number(sx)}" yOff="{_number(sy)}" '
                f'xSize="{_number(sw)}" ySize="{_number(sh)}"/>'
            )
            lines.append(
                f'      <DstRect xOff="{_number(dx)}" yOff="{_number(dy)}" '
                f'xSize="{_number(dw)}" ySize="{_number(dh)}"/>'
            )
            if src.nodata is not None:
                lines.append(f"      <NODATA>{_nodata_text(src.nodata)}</NODATA>")
            if src.use_mask:  # GDAL >= 3.5: masked pixels are transparent
                lines.append("      <UseMaskBand>true</UseMaskBand>")
            lines.append("    </ComplexSource>")
        lines.append("  </VRTRasterBand>")
    lines.append("</VRTDataset>")
    return "\n".join(lines) + "\n"


def _check_readable(vrt: VirtualRaster) -> None:
    """Open the VRT (absolute paths) and read a corner of every band."""
    from geoseg.raster import _first_line

    try:
        with rasterio.open(vrt_xml(vrt)) as src:
            src.read(window=((0, min(64, src.height)), (0, min(64, src.width))))
    except RasterioError as exc:
        raise RasterFormatError(
            f"{', '.join(vrt.files)}: GDAL cannot read them as one image "
            f"({_first_line(exc)}): check the files"
        ) from None


def check_vrt_path(out: Path) -> None:
    """Refuse an output path without the ``.vrt`` extension (before any file is read)."""
    if out.suffix.lower() != ".vrt":
        raise ConfigError(f"{out}: the output is a GDAL VRT: give it a .vrt extension")


def _check_out(out: Path, vrt: VirtualRaster, overwrite: bool) -> None:
    """Refuse an output that is an input, or exists (without overwrite, or not geoseg's)."""
    from geoseg.atomic import check_not_input, check_writable

    check_not_input(out, vrt.files)
    if out.is_dir():
        raise OutputExistsError(f"{out}: is a folder: give a .vrt file name")
    if out.exists() and overwrite:
        try:
            with rasterio.open(out) as src:
                ours = VRT_TAG in src.tags()
        except RasterioIOError:
            ours = False
        if not ours:
            raise OutputExistsError(
                f"{out}: not a VRT geoseg wrote, so --overwrite does not replace it: "
                "choose another output path"
            )
    check_writable(out, overwrite=overwrite, kind="file")


def write_vrt(vrt: VirtualRaster, out: Path, *, overwrite: bool) -> None:
    """Write ``vrt`` to ``out`` atomically, once GDAL has read a corner of every band.

    Raises
    ------
    OutputExistsError
        ``out`` exists and ``overwrite`` is not set, or it is not a VRT geoseg wrote.
    RasterFormatError
        GDAL cannot read the files as one image.
    """
    from geoseg.atomic import interrupts_deferred, remove_tree, temporary_dir

    _check_out(out, vrt, overwrite)
    _check_readable(vrt)
    tmp = temporary_dir(out)
    try:
        staged = tmp / out.name
        staged.write_text(vrt_xml(vrt, relative_to=out.parent), encoding="utf-8")
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(staged, 0o666 & ~mask)
        with interrupts_deferred():
            os.replace(staged, out)
    finally:
        remove_tree(tmp)
