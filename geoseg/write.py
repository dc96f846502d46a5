"""Writing the label raster: per-block files, then one Cloud-Optimized GeoTIFF.

Workers write each finished block to ``<work>/blocks/`` (atomically, so an
interrupted run leaves only whole blocks); :func:`assemble_labels` then streams the
blocks, one at a time, into a tiled GeoTIFF and converts it to a COG with overviews.
Colours and class names go into a GDAL ``.aux.xml`` sidecar (a multi-band TIFF cannot
hold a colour table) and a QGIS ``.qml`` default style, so both show the raster
classified with no setup.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import Resampling
from rasterio.windows import Window as RioWindow

from geoseg.raster import Scene
from geoseg.taxonomy import ClassDef, Taxonomy
from geoseg.tiles import TileGrid, Window

BAND_NAMES = ("coarse", "fine", "confidence")

#: Value of ``probabilities.tif`` where the input is nodata (probabilities are 0-100).
PROBABILITY_NODATA = 255

#: ``GEOSEG_BANDS`` tag of a ``probabilities.tif``.
PROBABILITY_BANDS = "probabilities"

#: Tag of a labels.tif (and of the probabilities.tif written with it): an identifier of
#: the map, new for every map written, so that files of two runs are told apart.
MAP_ID = "GEOSEG_MAP_ID"
#: Tag of a predicted labels.tif: the bundle that labelled it, ``NAME SHA256``.
BUNDLE_TAG = "GEOSEG_BUNDLE"
#: Tag of a merged labels.tif: the :data:`MAP_ID` of every map it was merged from
#: (and of theirs), comma-separated.
MERGED_FROM = "GEOSEG_MERGED_FROM"


def new_map_id() -> str:
    """A fresh :data:`MAP_ID` value (random, 32 hex digits)."""
    import uuid

    return uuid.uuid4().hex


#: Tile size of the Cloud-Optimized GeoTIFFs geoseg writes.
COG_BLOCK = 512


#: The tag that marks a ``geoseg change`` transition raster (change.tif).
CHANGE_VALUES = "GEOSEG_CHANGE_VALUES"
#: The tag of a change.tif's taxonomy (JSON): its band of a level holds that level's
#: transitions between the taxonomy's classes (coarse) or leaves (fine).
CHANGE_TAXONOMY = "GEOSEG_CHANGE_TAXONOMY"


def refuse_probabilities(
    src: Any,
    path: str | Path,
    fix: str = "pass the labels.tif beside it",
    *,
    change_maps: bool = True,
) -> None:
    """Refuse a geoseg ``probabilities.tif`` or ``change.tif`` where a map of codes is wanted.

    ``fix``: what to do instead with a probabilities.tif; ``change_maps``: refuse a
    change.tif too.

    Raises
    ------
    RasterFormatError
        ``src`` (an open dataset) holds class probabilities, or the transitions between
        two maps (whose values, ``from_index * n + to_index + 1``, would read as class
        codes of a taxonomy and mean nothing).
    """
    from geoseg.errors import RasterFormatError

    tags = src.tags()
    if tags.get("GEOSEG_BANDS") == PROBABILITY_BANDS:
        raise RasterFormatError(
            f"{path}: a geoseg probabilities.tif (a band of class probabilities per class), "
            f"not a map of class codes: {fix}"
        )
    if change_maps and CHANGE_VALUES in tags:
        maps = " or ".join(
            tags[k] for k in ("GEOSEG_CHANGE_BEFORE", "GEOSEG_CHANGE_AFTER") if tags.get(k)
        )
        raise RasterFormatError(
            f"{path}: a geoseg change.tif (the from -> to transitions of two maps, "
            f"{tags[CHANGE_VALUES]}), not a map of class codes: pass a map it compares"
            + (f" ({maps})" if maps else "")
            + "; the transitions' areas are in change.json beside it, their polygons in "
            "change.gpkg"
        )


def block_path(blocks_dir: Path, block: Window) -> Path:
    """File of one finished block."""
    return blocks_dir / f"r{block.row_off}_c{block.col_off}.npy"


def probabilities_dir(blocks_dir: Path) -> Path:
    """Folder of the blocks' class probabilities (``--probabilities``), inside ``blocks_dir``."""
    return blocks_dir / "probabilities"


def write_block(blocks_dir: Path, block: Window, data: np.ndarray) -> Path:
    """Save a block's ``(3, h, w)`` labels atomically.

    Ctrl-C and SIGTERM wait the few milliseconds until the block is saved: raised inside
    numpy's file writing, they came out as a ``TypeError`` (a traceback and exit code 1
    instead of the interrupted run's 130 or 143).
    """
    from geoseg.atomic import interrupts_deferred

    dest = block_path(blocks_dir, block)
    tmp = dest.with_name(f".{dest.stem}.{os.getpid()}.tmp.npy")
    with interrupts_deferred():
        np.save(tmp, data)
        os.replace(tmp, dest)
    return dest


def assemble_labels(
    blocks_dir: Path,
    grid: TileGrid,
    scene: Scene,
    taxonomy: Taxonomy,
    dest: Path,
    tags: Mapping[str, str] | None = None,
) -> Path:
    """Stream finished blocks into ``dest`` as a 3-band COG with overviews and styles.

    Memory is one block at a time. ``dest`` and its sidecars are written in place;
    callers write into a temporary output directory and publish it atomically.
    """
    return _assemble(blocks_dir, grid, scene, taxonomy, dest, write_labels, tags)


def _assemble(
    blocks_dir: Path,
    grid: TileGrid,
    scene: Scene,
    taxonomy: Taxonomy,
    dest: Path,
    write: Callable[..., Path],
    tags: Mapping[str, str] | None = None,
) -> Path:
    """Stream the block files of ``blocks_dir`` into ``dest`` with ``write`` (scene grid)."""
    parts = (
        (
            RioWindow(block.col_off, block.row_off, block.width, block.height),
            np.load(block_path(blocks_dir, block)),
        )
        for block in grid.blocks()
    )
    georeferenced = not (scene.crs is None and scene.affine.is_identity)
    return write(
        dest,
        parts,
        width=scene.width,
        height=scene.height,
        crs=scene.crs,
        transform=scene.affine if georeferenced else None,
        taxonomy=taxonomy,
        tags=tags,
    )


def write_labels(
    dest: Path,
    parts: Iterable[tuple[RioWindow, np.ndarray]],
    *,
    width: int,
    height: int,
    crs: Any,
    transform: Any,
    taxonomy: Taxonomy,
    tags: Mapping[str, str] | None = None,
) -> Path:
    """Stream ``(window, (3, h, w) labels)`` parts into ``dest``: a COG with overviews.

    The parts cover the grid (``width`` x ``height``; ``crs`` and ``transform`` ``None``
    for an image without georeferencing); the bands are coarse, fine and confidence,
    with the taxonomy in the tags and styles beside. Memory is one part at a time.
    ``tags``: more dataset tags (:data:`MAP_ID`, :data:`MERGED_FROM`).
    """

    def describe(dst: Any) -> None:
        for i, name in enumerate(BAND_NAMES, start=1):
            dst.set_band_description(i, name)
        dst.update_tags(
            GEOSEG_TAXONOMY=json.dumps(taxonomy.to_dict(), separators=(",", ":")),
            GEOSEG_BANDS="coarse,fine,confidence",
            **(tags or {}),
        )
        dst.update_tags(3, UNITS="percent")
        dst.set_band_unit(3, "percent")  # GDAL's unit type, which QGIS shows

    _write_cog(
        dest,
        parts,
        {"width": width, "height": height, "count": 3, "dtype": taxonomy.dtype},
        crs=crs,
        transform=transform,
        nodata=taxonomy.nodata,
        describe=describe,
        overviews="NEAREST",
    )
    write_styles(dest, taxonomy)
    return dest


def probability_bands(taxonomy: Taxonomy) -> list[tuple[str, ClassDef]]:
    """``(level, class)`` of each band of ``probabilities.tif``: coarse classes, then fine."""
    return [("coarse", c) for c in taxonomy.coarse] + [("fine", f) for f in taxonomy.fine]


def assemble_probabilities(
    blocks_dir: Path,
    grid: TileGrid,
    scene: Scene,
    taxonomy: Taxonomy,
    dest: Path,
    tags: Mapping[str, str] | None = None,
) -> Path:
    """Stream the finished blocks' probabilities into ``dest`` (see :func:`write_probabilities`)."""
    return _assemble(
        probabilities_dir(blocks_dir), grid, scene, taxonomy, dest, write_probabilities, tags
    )


def write_probabilities(
    dest: Path,
    parts: Iterable[tuple[RioWindow, np.ndarray]],
    *,
    width: int,
    height: int,
    crs: Any,
    transform: Any,
    taxonomy: Taxonomy,
    tags: Mapping[str, str] | None = None,
) -> Path:
    """Stream ``(window, (classes, h, w) uint8)`` parts into ``dest``.

    See :func:`probabilities_writer`.
    """
    with probabilities_writer(
        dest,
        width=width,
        height=height,
        crs=crs,
        transform=transform,
        taxonomy=taxonomy,
        tags=tags,
    ) as dst:
        for window, data in parts:
            dst.write(data, window=window)
    return dest


def probabilities_writer(
    dest: Path,
    *,
    width: int,
    height: int,
    crs: Any,
    transform: Any,
    taxonomy: Taxonomy,
    tags: Mapping[str, str] | None = None,
) -> contextlib.AbstractContextManager[Any]:
    """A dataset to write ``probabilities.tif``'s windows into: a COG, a band per class.

    Band ``i`` is the ``i``-th of :func:`probability_bands`, in percent (0-100), nodata
    :data:`PROBABILITY_NODATA`; each band's description is its class name and its tags
    give ``LEVEL``, ``CODE`` and ``NAME``. Overviews average. ``tags``: more dataset
    tags (the :data:`MAP_ID` of the labels.tif beside it).
    """
    bands = probability_bands(taxonomy)

    def describe(dst: Any) -> None:
        for i, (level, c) in enumerate(bands, start=1):
            dst.set_band_description(i, f"{level} {c.code} {c.name}")
            dst.update_tags(i, LEVEL=level, CODE=str(c.code), NAME=c.name, UNITS="percent")
            dst.set_band_unit(i, "percent")
        dst.update_tags(
            # not GEOSEG_TAXONOMY, which marks a labels.tif: tools that read class codes
            # would take the probabilities for codes
            GEOSEG_PROBABILITIES_TAXONOMY=json.dumps(taxonomy.to_dict(), separators=(",", ":")),
            GEOSEG_BANDS=PROBABILITY_BANDS,
            MEANING="probability of each class in percent, decision offsets included (the "
            "labels are its most probable leaf); a fine class's is joint with its parent's. "
            "Not calibrated for class areas",
            **(tags or {}),
        )

    return cog_writer(
        dest,
        {"width": width, "height": height, "count": len(bands), "dtype": "uint8"},
        crs=crs,
        transform=transform,
        nodata=PROBABILITY_NODATA,
        describe=describe,
        overviews="AVERAGE",
    )


def _write_cog(
    dest: Path,
    parts: Iterable[tuple[RioWindow, np.ndarray]],
    size: dict[str, Any],
    *,
    crs: Any,
    transform: Any,
    nodata: int,
    describe: Any,
    overviews: str,
) -> None:
    """Stream ``parts`` into a tiled GeoTIFF beside ``dest``, then copy it to ``dest`` as a COG.

    ``size``: ``width``, ``height``, ``count`` and ``dtype``; ``describe(dataset)`` sets
    band descriptions and tags; ``overviews``: their resampling.
    """
    with cog_writer(
        dest, size, crs=crs, transform=transform, nodata=nodata, describe=describe,
        overviews=overviews,
    ) as dst:  # fmt: skip
        for window, data in parts:
            dst.write(data, window=window)


@contextlib.contextmanager
def cog_writer(
    dest: Path,
    size: dict[str, Any],
    *,
    crs: Any,
    transform: Any,
    nodata: int,
    describe: Any,
    overviews: str,
) -> Iterator[Any]:
    """A tiled GeoTIFF beside ``dest`` to write windows into; ``dest`` a COG of it on exit.

    For writers that produce their windows as a side effect of other work (a merge
    writes its probabilities while its labels are made). See :func:`_write_cog`.
    """
    inter = dest.with_name(f".{dest.stem}.assemble.tif")
    profile = {
        "driver": "GTiff",
        **size,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": COG_BLOCK,
        "blockysize": COG_BLOCK,
        "compress": "none",
        "bigtiff": "if_safer",
        "photometric": "minisblack",
    }
    if crs is None and transform is None:  # an image with no georeferencing
        del profile["crs"], profile["transform"]  # neither has its output
    if size["count"] > 3:
        profile["interleave"] = "band"
    try:
        with rasterio.open(inter, "w", **profile) as dst:
            yield dst
            describe(dst)
        with rasterio.open(inter, "r+") as dst:
            factors = _overview_factors(size["width"], size["height"], COG_BLOCK)
            if factors:
                dst.build_overviews(factors, Resampling[overviews.lower()])
        # GDAL's COG driver would write a 3-band Byte map as PHOTOMETRIC=RGB, which
        # readers other than GDAL draw as colours; GTiff with its overviews copied first
        # writes the same cloud-optimised layout (GDAL reports LAYOUT=COG) as MINISBLACK
        rasterio.shutil.copy(
            inter,
            dest,
            driver="GTiff",
            tiled=True,
            blockxsize=COG_BLOCK,
            blockysize=COG_BLOCK,
            copy_src_overviews=True,
            compress="DEFLATE",
            zlevel=1,  # 2.8x faster than the default level 6, files about 7 % larger
            predictor=2,
            photometric="MINISBLACK",
            bigtiff="IF_SAFER",
            num_threads="ALL_CPUS",  # compression on every core
        )
    finally:
        inter.unlink(missing_ok=True)


def _overview_factors(width: int, height: int, block: int) -> list[int]:
    """Overview levels as GDAL's COG driver makes them: halving until one tile holds it.

    >>> _overview_factors(1128, 1428, 512), _overview_factors(400, 300, 512)
    ([2, 4], [])
    """
    factors, f = [], 2
    while max(-(-width // (f // 2)), -(-height // (f // 2))) > block:
        factors.append(f)
        f *= 2
    return factors


def write_styles(dest: Path, taxonomy: Taxonomy) -> None:
    """Write the GDAL ``.aux.xml`` (band-1 colour table, category names) and QGIS ``.qml``.

    The QGIS style is paletted on the fine band, unless a coarse class has no fine
    classes: its pixels' fine band is nodata, so they would show as empty; the style is
    then on the coarse band, as the polygons' (:func:`geoseg.export.write_qgis_styles`).
    """
    Path(f"{dest}.aux.xml").write_text(_pam_xml(taxonomy))
    fine = bool(taxonomy.fine) and not taxonomy.childless_coarse_index.size
    dest.with_suffix(".qml").write_text(_qml(taxonomy, band=2 if fine else 1))


#: Codes above this get no GDAL colour table or category names (a table holds an entry
#: for every code from 0: class 30000 would make a 1.8 MB sidecar); QGIS's .qml style,
#: which lists the classes only, still colours and names them.
MAX_TABLE_CODE = 4095


def _pam_xml(taxonomy: Taxonomy) -> str:
    """GDAL's sidecar: band 1's colour table and both bands' category names, by code.

    Examples
    --------
    >>> from geoseg.taxonomy import Taxonomy
    >>> big = Taxonomy.from_dict({"name": "t", "coarse": [{"code": 30000, "name": "A"}]})
    >>> "<ColorTable>" in _pam_xml(big), len(_pam_xml(big)) < 1000
    (False, True)
    """
    coarse_top = int(max(taxonomy.coarse_codes))
    size = 256 if taxonomy.dtype == "uint8" else 1 + coarse_top
    coarse_xml = ""
    if coarse_top <= MAX_TABLE_CODE:
        table = [(0, 0, 0, 0)] * size
        names = [""] * size
        for c in taxonomy.coarse:
            table[c.code] = (*c.rgb, 255)
            names[c.code] = c.name
        entries = "".join(f'<Entry c1="{r}" c2="{g}" c3="{b}" c4="{a}"/>' for r, g, b, a in table)
        cats = "".join(f"<Category>{escape(n)}</Category>" for n in names)
        coarse_xml = (
            f"<CategoryNames>{cats}</CategoryNames><ColorInterp>Palette</ColorInterp>"
            f"<ColorTable>{entries}</ColorTable>"
        )
    fine_top = 1 + int(max(taxonomy.fine_codes)) if taxonomy.fine else 0
    fine_xml = ""
    if fine_top - 1 <= MAX_TABLE_CODE:
        fine_names = [""] * fine_top
        for f in taxonomy.fine:
            fine_names[f.code] = f.name
        cats = "".join(f"<Category>{escape(n)}</Category>" for n in fine_names)
        fine_xml = f"<CategoryNames>{cats}</CategoryNames>"
    return (
        "<PAMDataset>\n"
        f'  <PAMRasterBand band="1"><Description>coarse</Description>{coarse_xml}'
        "</PAMRasterBand>\n"
        f'  <PAMRasterBand band="2"><Description>fine</Description>{fine_xml}'
        "</PAMRasterBand>\n"
        "</PAMDataset>\n"
    )


def pam_categories(bands: list[tuple[str, list[str]]]) -> str:
    """GDAL's sidecar naming each band and its values (``[(description, names by value)]``).

    A band with more than :data:`MAX_TABLE_CODE` values gets its description only.

    Examples
    --------
    >>> "<Category>A -&gt; B</Category>" in pam_categories([("coarse", ["", "A -> B"])])
    True
    """
    out = ["<PAMDataset>\n"]
    for i, (description, names) in enumerate(bands, start=1):
        cats = ""
        if len(names) - 1 <= MAX_TABLE_CODE:
            cats = "".join(f"<Category>{escape(n)}</Category>" for n in names)
            cats = f"<CategoryNames>{cats}</CategoryNames>"
        out.append(
            f'  <PAMRasterBand band="{i}"><Description>{escape(description)}</Description>'
            f"{cats}</PAMRasterBand>\n"
        )
    return "".join([*out, "</PAMDataset>\n"])


def _qml(taxonomy: Taxonomy, band: int) -> str:
    classes: list[ClassDef] = list(taxonomy.fine if band == 2 else taxonomy.coarse)
    return palette_qml([(c.code, c.color, c.name) for c in classes], band)


def palette_qml(entries: list[tuple[int, str, str]], band: int) -> str:
    """A QGIS default raster style (``NAME.qml`` beside ``NAME.tif``): a paletted band.

    ``entries``: ``(value, colour #rrggbb, label)`` per value shown.

    Examples
    --------
    >>> 'value="3" color="#ff0000" alpha="255" label="A -&gt; B"' in palette_qml(
    ...     [(3, "#ff0000", "A -> B")], band=1)
    True
    """
    lines = "\n".join(
        f'        <paletteEntry value="{v}" color="{color}" alpha="255" '
        f'label="{escape(label, quote=True)}"/>'
        for v, color, label in entries
    )
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.28" styleCategories="AllStyleCategories">
  <pipe>
    <rasterrenderer type="paletted" band="{band}" opacity="1" nodataColor="">
      <colorPalette>
{lines}
      </colorPalette>
    </rasterrenderer>
  </pipe>
</qgis>
"""
