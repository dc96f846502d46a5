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
band, and takes the first file's resolution only. The VRT itself is
:mod:`geoseg.vrt`'s.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from geoseg.atomic import locks_output
from geoseg.errors import ConfigError, RasterFormatError
from geoseg.vrt import (
    Band,
    VirtualRaster,
    check_crs,
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

#: A file name's band token: ``B2``, ``B02``, ``B8A``, ``b10``, between separators; or
#: the name of a quality or product layer that Landsat and Sentinel-2 ship beside them.
_BAND_TOKEN = re.compile(
    r"(?i)(?<![A-Z0-9])(B[0-9]{1,2}A?|QA_PIXEL|QA_RADSAT|QA_AEROSOL|SCL|TCI|AOT|WVP|FMASK)"
    r"(?![A-Z0-9])"
)


def band_name_from_path(path: str | Path) -> str | None:
    """The band a file name says it holds, or ``None``.

    The last band token (``B`` and one or two digits, maybe ``A``; or a quality layer's
    name: ``QA_PIXEL``, ``SCL``...) between separators, in capitals as the products'
    documentation writes them (``landsat_b2.tif`` gives ``B2``).

    Examples
    --------
    >>> band_name_from_path("LC08_L2SP_038034_20200518_20200820_02_T1_SR_B2.TIF")
    'B2'
    >>> band_name_from_path("T33TWM_20230715T095559_B8A_20m.jp2")
    'B8A'
    >>> band_name_from_path("S2B_MSIL1C_20230715/IMG_DATA/T33TWM_20230715T095559_B02.jp2")
    'B02'
    >>> band_name_from_path("LC08_L2SP_038034_20200518_20200820_02_T1_QA_PIXEL.TIF")
    'QA_PIXEL'
    >>> band_name_from_path("landsat_b2.tif"), band_name_from_path("elevation.tif") is None
    ('B2', True)
    """
    found = _BAND_TOKEN.findall(Path(str(path)).stem)
    return found[-1].upper() if found else None


def _names(paths: list[str], metas: list[dict[str, Any]]) -> list[str]:
    """Each band's name: its description, the file name's band token, or the stem."""
    names: list[str] = []
    for path, meta in zip(paths, metas, strict=True):
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


def plan_stack(
    paths: list[str | Path],
    *,
    names: list[str] | None = None,
    resolution: str = "finest",
    resampling: str = "nearest",
) -> VirtualRaster:
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
        How GDAL resamples a file on another grid (one of :data:`geoseg.vrt.RESAMPLING`).

    Raises
    ------
    ConfigError
        No files, bad options, names that do not fit the bands.
    RasterReadError, RasterFormatError
        A file is missing or unreadable, not north-up, in another CRS; the files
        cover no common area or their data types have no common type.
    """
    check_resampling(resampling)
    spaths = local_paths(paths)
    metas = [read_source(p) for p in spaths]
    owners = [p for p, m in zip(spaths, metas, strict=True) for _ in range(m["count"])]
    if names is not None:
        if len(names) != len(owners):
            raise ConfigError(
                f"--names: {len(names)} names for {count_of(len(owners), 'band')} in "
                f"{count_of(len(spaths), 'file')}: give one name per band, in the files' order"
            )
        chosen = [str(n).strip() for n in names]
    else:
        chosen = _names(spaths, metas)
    _check_names(chosen, owners, names is not None)
    crs = check_crs(spaths, metas)
    pick = pick_grid(metas, resolution)
    common = (
        max(m["bounds"][0] for m in metas),
        max(m["bounds"][1] for m in metas),
        min(m["bounds"][2] for m in metas),
        min(m["bounds"][3] for m in metas),
    )
    transform, width, height = snapped_grid(metas[pick]["transform"], common, outward=False)
    if width <= 0 or height <= 0:
        raise RasterFormatError(
            f"{', '.join(spaths)}: the files cover no common area (at least one whole "
            f"pixel of {spaths[pick]}): stack the bands of one scene"
        )
    notes, warns = resampled_notes(spaths, metas, transform, resampling)
    cut = {
        p: px
        for p, m in zip(spaths, metas, strict=True)
        if (px := _beyond(m, transform, width, height))
    }
    if cut:
        shown = ", ".join(f"{Path(p).name} ({px:,.0f} px)" for p, px in list(cut.items())[:6])
        more = f" and {len(cut) - 6} more" if len(cut) > 6 else ""
        warns.insert(
            0,
            f"cropped to the extent every file covers ({width} × {height} px): {shown}{more} "
            "reach beyond it; those pixels are not in the stack",
        )
    it = iter(chosen)
    bands = [
        Band(
            name=next(it),
            sources=(source(path, meta, k),),
            nodata=meta["nodata"][k - 1],
            alpha=meta["alpha"][k - 1],
        )
        for path, meta in zip(spaths, metas, strict=True)
        for k in range(1, meta["count"] + 1)
    ]
    return VirtualRaster(
        kind="stack",
        bands=tuple(bands),
        width=width,
        height=height,
        transform=transform,
        crs_wkt=crs.to_wkt() if crs else "",
        dtype=common_dtype([d for m in metas for d in m["dtypes"]]),
        resampling=resampling,
        notes=tuple(notes),
        warnings=tuple(warns),
    )


def _beyond(meta: dict[str, Any], transform: Any, width: int, height: int) -> float:
    """How many of the stack's pixels of a file lie beyond its extent (0: none).

    Less than half a pixel on each side counts as none (edges snapped to the grid).
    """
    left, bottom, right, top = meta["bounds"]
    px, py = transform.a, -transform.e
    inner = (width * px) * (height * py)
    x0, x1 = transform.c, transform.c + width * px
    y1, y0 = transform.f, transform.f - height * py
    reach = max(x0 - left, top - y1, right - x1, y0 - bottom)
    if reach <= min(px, py) / 2:
        return 0.0
    return ((right - left) * (top - bottom) - inner) / (px * py)


@locks_output("out")
def write_stack(
    paths: list[str | Path],
    out: str | Path,
    *,
    names: list[str] | None = None,
    resolution: str = "finest",
    resampling: str = "nearest",
    overwrite: bool = False,
) -> VirtualRaster:
    """Write the VRT that stacks ``paths`` to ``out``, atomically.

    See :func:`plan_stack` for the parameters, :func:`geoseg.vrt.write_vrt` for how it
    is written. The VRT names local files relative to its own folder, so the folder of
    the VRT and its files can move together.

    Raises
    ------
    OutputExistsError
        ``out`` exists and ``overwrite`` is not set, or it is not a VRT geoseg wrote.
    ConfigError, RasterReadError, RasterFormatError
        See :func:`plan_stack`; ``out`` is not a ``.vrt`` path.
    """
    out = Path(out).absolute()
    check_vrt_path(out)
    stack = plan_stack(paths, names=names, resolution=resolution, resampling=resampling)
    write_vrt(stack, out, overwrite=overwrite)
    stack.log(log)
    return stack
