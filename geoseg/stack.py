"""Band files stacked into one multi-band image: a GDAL virtual raster (VRT).

Landsat Collection 2 and Sentinel-2 deliver a scene as one file per band
(``LC08_..._SR_B2.TIF``, ``T33TWM_..._B8A_20m.jp2``), and Sentinel-2's bands come at
10, 20 and 60 m. geoseg reads one image per scene and picks the bands a model needs by
name. :func:`write_stack` writes a small XML file, no copy of the pixels, that GDAL
(and so every geoseg command, on every worker) reads as one image:

- its bands in the order of the files given, each named from its file's band
  description, else from the band token of the file name (``B2``, ``B02``, ``B8A``),
  else from the file's stem (a single-band ``elevation.tif`` gives ``elevation``), or as
  ``--names`` says;
- on the grid of the finest (or coarsest) file, over the extent that every file covers,
  the other files resampled onto it by GDAL as they are read (nearest neighbour unless
  told otherwise);
- each band's nodata value and data kept (one data type for all: the smallest that
  holds every file's values).

The pip wheels of rasterio ship GDAL without its command-line tools, so
``gdalbuildvrt -separate``, which this replaces, is often not at hand; it also names no
band, and takes the first file's resolution only.
"""

from __future__ import annotations

import logging
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
from rasterio.errors import RasterioIOError

from geoseg import fixes
from geoseg.errors import ConfigError, GeosegWarning, OutputExistsError, RasterFormatError

log = logging.getLogger(__name__)

#: Metadata key that marks a VRT as one ``geoseg stack`` wrote (``--overwrite``
#: replaces only those).
STACK_TAG = "GEOSEG_STACK"

#: Resampling methods offered (GDAL's names).
RESAMPLING = ("nearest", "bilinear", "cubic", "average", "mode")

#: Which file's grid the stack takes.
RESOLUTIONS = ("finest", "coarsest")

#: A file name's band token: ``B2``, ``B02``, ``B8A``, ``b10``, between separators.
_BAND_TOKEN = re.compile(r"(?i)(?<![A-Z0-9])(B[0-9]{1,2}A?)(?![A-Z0-9])")

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
    """A band file's own validity mask, which a stack does not carry over."""


@dataclass(frozen=True, slots=True)
class StackBand:
    """One band of a stack: where it is read from and what it is called.

    Attributes
    ----------
    path : str
        The file as given (local path or GDAL virtual path).
    band : int
        1-based band of that file.
    name : str
        The stack's name for it.
    dtype : str
        Its data type in the file.
    nodata : float, optional
        Its nodata value.
    size : tuple of int
        The file's ``(width, height)``.
    transform : Affine
        The file's geotransform.
    alpha : bool
        An alpha (transparency) band: a mask, kept as one.
    """

    path: str
    band: int
    name: str
    dtype: str
    nodata: float | None
    size: tuple[int, int]
    transform: Affine
    alpha: bool = False


@dataclass(frozen=True, slots=True)
class Stack:
    """A stack's bands and grid: what :func:`vrt_xml` writes.

    Attributes
    ----------
    bands : tuple of StackBand
        In stack order.
    width, height : int
        Size of the stack in pixels.
    transform : Affine
        Its geotransform (north-up).
    crs_wkt : str
        Its CRS as WKT ("" when the files have none).
    dtype : str
        The data type every band is read as.
    resampling : str
        How files on another grid are resampled onto it (GDAL's name).
    notes : tuple of str
        What the user should know: files cropped to the common extent, resampled.
    """

    bands: tuple[StackBand, ...]
    width: int
    height: int
    transform: Affine
    crs_wkt: str
    dtype: str
    resampling: str
    notes: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """The bands' names, in order."""
        return tuple(b.name for b in self.bands)


def band_name_from_path(path: str | Path) -> str | None:
    """The band a file name says it holds, or ``None``.

    The last band token (``B`` and one or two digits, maybe ``A``) between separators.

    Examples
    --------
    >>> band_name_from_path("LC08_L2SP_038034_20200518_20200820_02_T1_SR_B2.TIF")
    'B2'
    >>> band_name_from_path("T33TWM_20230715T095559_B8A_20m.jp2")
    'B8A'
    >>> band_name_from_path("S2B_MSIL1C_20230715/IMG_DATA/T33TWM_20230715T095559_B02.jp2")
    'B02'
    >>> band_name_from_path("LC08_L2SP_038034_20200518_20200820_02_T1_QA_PIXEL.TIF") is None
    True
    """
    found = _BAND_TOKEN.findall(Path(str(path)).stem)
    return found[-1] if found else None


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
            f"{path}: cannot stack a {scheme}:// file: download it, or give GDAL's virtual "
            "path (/vsi...)"
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
    if out not in _GDAL_TYPES:
        raise RasterFormatError(
            f"band data types {sorted(set(dtypes))} have no common type GDAL can read "
            f"({out}): convert the files to one type first"
        )
    return out


def _source(path: str) -> dict[str, Any]:
    """What a stack needs to know of the raster at ``path`` (its metadata only)."""
    from geoseg.raster import _first_line, _require_file, refuse_geoseg_output

    _require_file(path)
    try:
        with rasterio.open(gdal_path(path)) as src:
            refuse_geoseg_output(src, path)
            t = src.transform
            if t.b != 0 or t.d != 0 or t.a <= 0 or t.e >= 0:
                raise RasterFormatError(
                    f"{path}: its grid is not north-up ({tuple(t)[:6]}): warp it north-up "
                    "first (rio warp, gdalwarp)"
                )
            masks = [src.mask_flag_enums[i] for i in range(src.count)]
            if any(flags == [MaskFlags.per_dataset] for flags in masks):
                warnings.warn(
                    f"{path}: its validity mask (an internal mask band) is not carried "
                    "into the stack, so its masked pixels read as data: give the file a "
                    f"nodata value instead ({fixes.set_nodata(path, 0)}, with its own value)",
                    UncarriedMaskWarning,
                    stacklevel=3,
                )
            return {
                "count": src.count,
                "dtypes": list(src.dtypes),
                "nodata": list(src.nodatavals),
                "descriptions": list(src.descriptions),
                "alpha": [ci == ColorInterp.alpha for ci in src.colorinterp],
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


def _names(paths: list[str], sources: list[dict[str, Any]]) -> list[str]:
    """Each band's name: its description, the file name's band token, or the stem."""
    names: list[str] = []
    for path, meta in zip(paths, sources, strict=True):
        for k in range(meta["count"]):
            if meta["descriptions"][k]:
                names.append(meta["descriptions"][k])
            elif meta["count"] == 1:
                names.append(band_name_from_path(path) or Path(path).stem)
            else:
                names.append(f"{Path(path).stem}_{k + 1}")
    return names


def _check_names(names: list[str], owners: list[str], given: bool) -> None:
    seen: dict[str, str] = {}
    for name, owner in zip(names, owners, strict=True):
        if not name.strip():
            raise ConfigError(f"--names: an empty band name (for {owner}): name every band")
        if name in seen:
            fix = "give each band its own name" if given else "name the bands with --names"
            where = owner if seen[name] == owner else f"{seen[name]} and {owner}"
            raise ConfigError(f"{where}: two bands would be named {name!r}: {fix}")
        seen[name] = owner


def _grid(
    paths: list[str], sources: list[dict[str, Any]], resolution: str
) -> tuple[Affine, int, int, list[str]]:
    """The stack's grid: the chosen file's pixels, over the extent every file covers."""
    crs = sources[0]["crs"]
    for path, meta in zip(paths[1:], sources[1:], strict=True):
        if meta["crs"] != crs:
            other = meta["crs"].to_string() if meta["crs"] else "none"
            first = crs.to_string() if crs else "none"
            raise RasterFormatError(
                f"{path}: its CRS ({other}) is not that of {paths[0]} ({first}): reproject "
                "it onto the others' CRS first (rio warp --like, gdalwarp)"
            )
    areas = [abs(m["transform"].a * m["transform"].e) for m in sources]
    pick = areas.index(min(areas) if resolution == "finest" else max(areas))
    grid = sources[pick]["transform"]
    left = max(m["bounds"][0] for m in sources)
    bottom = max(m["bounds"][1] for m in sources)
    right = min(m["bounds"][2] for m in sources)
    top = min(m["bounds"][3] for m in sources)
    col0 = math.ceil((left - grid.c) / grid.a - _EPS)
    col1 = math.floor((right - grid.c) / grid.a + _EPS)
    row0 = math.ceil((grid.f - top) / -grid.e - _EPS)
    row1 = math.floor((grid.f - bottom) / -grid.e + _EPS)
    if col1 <= col0 or row1 <= row0:
        raise RasterFormatError(
            f"{', '.join(paths)}: the files cover no common area (at least one whole "
            f"pixel of {paths[pick]}): stack the bands of one scene"
        )
    transform = Affine(grid.a, 0.0, grid.c + col0 * grid.a, 0.0, grid.e, grid.f + row0 * grid.e)
    width, height = col1 - col0, row1 - row0
    notes = []
    for path, meta in zip(paths, sources, strict=True):
        m_left, _, _, m_top = meta["bounds"]
        mw, mh = meta["size"]
        t = meta["transform"]
        cut = (
            abs(m_left - transform.c) > grid.a / 2
            or abs(m_top - transform.f) > -grid.e / 2
            or abs(mw * t.a - width * grid.a) > grid.a / 2
            or abs(mh * t.e - height * grid.e) > -grid.e / 2
        )
        if cut:
            notes.append(f"{path}: cropped to the extent every file covers")
        if not math.isclose(t.a, grid.a) or not math.isclose(t.e, grid.e):
            notes.append(f"{path}: resampled from {t.a:g} × {-t.e:g} to {grid.a:g} × {-grid.e:g}")
    return transform, width, height, notes


def plan_stack(
    paths: list[str | Path],
    *,
    names: list[str] | None = None,
    resolution: str = "finest",
    resampling: str = "nearest",
) -> Stack:
    """What stacking ``paths`` gives: bands, names and grid (files' metadata only).

    Parameters
    ----------
    paths : list of str or Path
        Rasters, one band each or several, all in one CRS; every band of each is
        taken, in order.
    names : list of str, optional
        A name for every band of the stack (default: see the module's description).
    resolution : {"finest", "coarsest"}
        Whose pixel size and grid the stack takes: the file with the smallest pixels
        or the largest.
    resampling : str
        How GDAL resamples a file on another grid (one of :data:`RESAMPLING`).

    Raises
    ------
    ConfigError
        No files, bad options, names that do not fit the bands.
    RasterReadError, RasterFormatError
        A file is missing or unreadable, not north-up, in another CRS; the files
        cover no common area or their data types have no common type.
    """
    from geoseg.raster import is_remote

    if not paths:
        raise ConfigError("stack: no band files given: pass the files to stack")
    if resolution not in RESOLUTIONS:
        raise ConfigError(f"resolution {resolution!r}: use one of {', '.join(RESOLUTIONS)}")
    if resampling not in RESAMPLING:
        raise ConfigError(f"resampling {resampling!r}: use one of {', '.join(RESAMPLING)}")
    spaths = [str(p) if is_remote(p) else str(Path(p).absolute()) for p in paths]
    sources = [_source(p) for p in spaths]
    owners = [p for p, m in zip(spaths, sources, strict=True) for _ in range(m["count"])]
    total = len(owners)
    if names is not None:
        if len(names) != total:
            raise ConfigError(
                f"--names: {len(names)} names for {_count(total, 'band')} in "
                f"{_count(len(spaths), 'file')}: give one name per band, in the files' order"
            )
        chosen = [str(n).strip() for n in names]
    else:
        chosen = _names(spaths, sources)
    _check_names(chosen, owners, names is not None)
    transform, width, height, notes = _grid(spaths, sources, resolution)
    dtype = common_dtype([d for m in sources for d in m["dtypes"]])
    bands = []
    it = iter(chosen)
    for path, meta in zip(spaths, sources, strict=True):
        for k in range(meta["count"]):
            bands.append(
                StackBand(
                    path=path,
                    band=k + 1,
                    name=next(it),
                    dtype=meta["dtypes"][k],
                    nodata=meta["nodata"][k],
                    size=meta["size"],
                    transform=meta["transform"],
                    alpha=meta["alpha"][k],
                )
            )
    crs = sources[0]["crs"]
    return Stack(
        bands=tuple(bands),
        width=width,
        height=height,
        transform=transform,
        crs_wkt=crs.to_wkt() if crs else "",
        dtype=dtype,
        resampling=resampling,
        notes=tuple(notes),
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _number(value: float) -> str:
    """A coordinate or window as XML text: no float noise (``2.9999999996``)."""
    rounded = round(value, 9)
    return str(int(rounded)) if rounded == int(rounded) else repr(rounded)


def _nodata_text(value: float) -> str:
    return "nan" if math.isnan(value) else _number(value)


def _source_name(path: str, relative_to: Path | None) -> tuple[str, int]:
    """The file as the VRT names it, and whether relative to the VRT."""
    from geoseg.raster import is_remote

    if is_remote(path):
        return gdal_path(path), 0
    if relative_to is None:
        return path, 0
    try:
        return Path(os.path.relpath(path, relative_to)).as_posix(), 1
    except ValueError:  # another drive (Windows)
        return path, 0


def vrt_xml(stack: Stack, relative_to: str | Path | None = None) -> str:
    """The GDAL VRT that reads ``stack``.

    Parameters
    ----------
    stack : Stack
        What to write (:func:`plan_stack`).
    relative_to : str or Path, optional
        The folder the VRT is written to: local files are named relative to it, so the
        VRT moves with its files. Default: absolute paths (the XML opens as it is:
        ``rasterio.open(xml)``).
    """
    folder = Path(relative_to).absolute() if relative_to is not None else None
    t = stack.transform
    gdal_type = _GDAL_TYPES[stack.dtype]
    lines = [f'<VRTDataset rasterXSize="{stack.width}" rasterYSize="{stack.height}">']
    if stack.crs_wkt:
        lines.append(f'  <SRS dataAxisToSRSAxisMapping="1,2">{escape(stack.crs_wkt)}</SRS>')
    lines.append(
        "  <GeoTransform>"
        + ", ".join(_number(v) for v in (t.c, t.a, t.b, t.f, t.d, t.e))
        + "</GeoTransform>"
    )
    lines.append(f'  <Metadata><MDI key="{STACK_TAG}">{len(stack.bands)} bands</MDI></Metadata>')
    for i, band in enumerate(stack.bands, start=1):
        name, relative = _source_name(band.path, folder)
        bt = band.transform
        bw, bh = band.size
        src_x = (t.c - bt.c) / bt.a
        src_y = (t.f - bt.f) / bt.e
        src_w = stack.width * t.a / bt.a
        src_h = stack.height * t.e / bt.e
        lines.append(f'  <VRTRasterBand dataType="{gdal_type}" band="{i}">')
        lines.append(f"    <Description>{escape(band.name)}</Description>")
        if band.nodata is not None:
            lines.append(f"    <NoDataValue>{_nodata_text(band.nodata)}</NoDataValue>")
        if band.alpha:
            lines.append("    <ColorInterp>Alpha</ColorInterp>")
        lines.append(f"    <ComplexSource resampling={quoteattr(stack.resampling)}>")
        lines.append(
            f'      <SourceFilename relativeToVRT="{relative}">{escape(name)}</SourceFilename>'
        )
        lines.append(f"      <SourceBand>{band.band}</SourceBand>")
        lines.append(
            f'      <SourceProperties RasterXSize="{bw}" RasterYSize="{bh}" '
            f'DataType="{_GDAL_TYPES.get(band.dtype, gdal_type)}"/>'
        )
        lines.append(
            f'      <SrcRect xOff="{_number(src_x)}" yOff="{_number(src_y)}" '
            f'xSize="{_number(src_w)}" ySize="{_number(src_h)}"/>'
        )
        lines.append(
            f'      <DstRect xOff="0" yOff="0" xSize="{stack.width}" ySize="{stack.height}"/>'
        )
        if band.nodata is not None:
            lines.append(f"      <NODATA>{_nodata_text(band.nodata)}</NODATA>")
        lines.append("    </ComplexSource>")
        lines.append("  </VRTRasterBand>")
    lines.append("</VRTDataset>")
    return "\n".join(lines) + "\n"


def _check_readable(stack: Stack) -> None:
    """Open the stack (absolute paths) and read a corner of every band."""
    from geoseg.raster import _first_line

    xml = vrt_xml(stack)
    try:
        with rasterio.open(xml) as src:
            window = ((0, min(64, src.height)), (0, min(64, src.width)))
            src.read(window=window)
    except (RasterioIOError, rasterio.errors.RasterioError) as exc:
        raise RasterFormatError(
            f"{', '.join(sorted({b.path for b in stack.bands}))}: GDAL cannot read them as "
            f"one stack ({_first_line(exc)}): check the files"
        ) from None


def _check_out(out: Path, stack: Stack, overwrite: bool) -> None:
    """Refuse an output path that is not a .vrt, is an input, or exists without overwrite."""
    from geoseg.atomic import check_not_input, check_writable

    if out.suffix.lower() != ".vrt":
        raise ConfigError(f"{out}: a stack is a GDAL VRT: give the output a .vrt extension")
    check_not_input(out, tuple(b.path for b in stack.bands))
    if out.is_dir():
        raise OutputExistsError(f"{out}: is a folder: give a .vrt file name")
    if out.exists() and overwrite:
        try:
            with rasterio.open(out) as src:
                ours = STACK_TAG in src.tags()
        except RasterioIOError:
            ours = False
        if not ours:
            raise OutputExistsError(
                f"{out}: not a stack geoseg wrote, so --overwrite does not replace it: "
                "choose another output path"
            )
    check_writable(out, overwrite=overwrite, kind="file")


def write_stack(
    paths: list[str | Path],
    out: str | Path,
    *,
    names: list[str] | None = None,
    resolution: str = "finest",
    resampling: str = "nearest",
    overwrite: bool = False,
) -> Stack:
    """Write the VRT that stacks ``paths`` to ``out``, atomically.

    See :func:`plan_stack` for the parameters. The VRT names local files relative to
    its own folder, so the folder of the VRT and its files can move together. Before it
    is written, GDAL opens the stack and reads a corner of every band.

    Raises
    ------
    OutputExistsError
        ``out`` exists and ``overwrite`` is not set, or it is not a stack geoseg wrote.
    ConfigError, RasterReadError, RasterFormatError
        See :func:`plan_stack`; ``out`` is not a ``.vrt`` path.
    """
    from geoseg.atomic import interrupts_deferred, remove_tree, temporary_dir

    out = Path(out).absolute()
    if out.suffix.lower() != ".vrt":  # before reading any file
        raise ConfigError(f"{out}: a stack is a GDAL VRT: give the output a .vrt extension")
    stack = plan_stack(paths, names=names, resolution=resolution, resampling=resampling)
    _check_out(out, stack, overwrite)
    _check_readable(stack)
    tmp = temporary_dir(out)
    try:
        staged = tmp / out.name
        staged.write_text(vrt_xml(stack, relative_to=out.parent), encoding="utf-8")
        os.chmod(staged, 0o666 & ~_umask())
        with interrupts_deferred():
            os.replace(staged, out)
    finally:
        remove_tree(tmp)
    for note in stack.notes:  # a crop loses pixels: said by default
        (log.warning if "cropped" in note else log.info)("%s", note)
    return stack


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
