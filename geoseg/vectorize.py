"""Label raster -> polygons with class attributes and true areas, chunk by chunk.

Works on geoseg's ``labels.tif`` (coarse + fine bands; polygons carry both levels and
the names from the taxonomy stored in the file) and on any single-band integer class
raster (polygons carry ``class_code``). The raster is cut into chunks; each chunk task
reads its own window and polygonises it (:mod:`geoseg.polygonize`), and the pieces of
regions cut by the seams are merged, so the polygons are exactly those of
whole-raster polygonisation while no process holds the whole raster.

Options, in the order they apply:

- minimum mapping unit (``mmu``, m²): a sieve of the raster's regions. A region of
  fewer pixels takes the value of its largest neighbour of at least that size (else
  of its largest neighbour) and joins the neighbours of that value; computed on the
  exact regions, so it is the same whatever the chunking;
- ``simplify`` (CRS units): topology-preserving simplification of the edges between
  classes (``shapely.coverage_simplify``): neighbours keep their shared edges, no gaps
  or overlaps appear, and the edges of nodata (the footprint, masked holes) are kept;
- ``dst_crs``: reprojection of the result.

Areas are true ground areas in m² (see :mod:`geoseg.area`).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
from rasterio.windows import Window

from geoseg import fixes
from geoseg.area import (
    areas_m2,
    areas_vary_by_row,
    cumulative_row_areas,
    pixel_area_m2,
    raster_areas_m2,
)
from geoseg.errors import ConfigError, GeosegWarning, RasterFormatError
from geoseg.polygonize import ChunkPolygons, merge_chunks, polygonize_chunk, sieve_regions
from geoseg.raster import open_scene
from geoseg.taxonomy import Taxonomy

if TYPE_CHECKING:
    from geoseg.map_reading import MapReading

log = logging.getLogger(__name__)

INTEGER_TYPES = ("uint8", "uint16", "int8", "int16", "int32", "uint32")
#: Real-valued types polygonised when their values are whole numbers (class codes
#: stored as floats, as some tools write them).
FLOAT_TYPES = ("float32", "float64")


@dataclass(frozen=True)
class VectorizeOptions:
    """Polygonisation settings.

    Attributes
    ----------
    band : int or None
        Band of a plain class raster (default 1); given for a geoseg labels.tif, the
        file is treated as a plain class raster of that band.
    mmu : float
        Minimum mapping unit in m² (0 = keep every region).
    simplify : float
        Coverage-simplification tolerance in CRS units (0 = exact pixel edges).
    connectivity : int
        4 or 8 pixel connectivity of a region.
    dst_crs : str or None
        Reproject the polygons to this CRS.
    confidence : bool
        Add ``mean_confidence`` (band 3 of a geoseg labels.tif) to every polygon.
    chunk_size : int
        Chunk side in pixels.
    """

    band: int | None = None
    mmu: float = 0.0
    simplify: float = 0.0
    connectivity: int = 4
    dst_crs: str | None = None
    confidence: bool = False
    chunk_size: int = 2048

    def __post_init__(self) -> None:
        """Check the settings before any work (one-line errors)."""
        if self.band is not None and self.band < 1:
            raise ConfigError(f"--band {self.band}: bands are numbered from 1")
        if self.dst_crs:
            # pyproj, which reprojects the polygons, raises quietly where GDAL would also
            # print its own "ERROR 1: PROJ: ..." line above ours
            from pyproj import CRS
            from pyproj.exceptions import CRSError

            try:
                CRS.from_user_input(self.dst_crs)
            except CRSError:
                raise ConfigError(
                    f"--dst-crs {self.dst_crs}: not a CRS that PROJ knows: use e.g. EPSG:4326"
                ) from None


def read_taxonomy_tag(path: str | Path, *, change_maps: bool = False) -> Taxonomy | None:
    """The taxonomy stored in a geoseg labels raster, or ``None`` for other rasters.

    ``change_maps``: a ``geoseg change`` change.tif is read too (``geoseg change``
    polygonises its own), not refused.
    """
    from geoseg.write import refuse_probabilities

    with rasterio.open(path) as src:
        refuse_probabilities(
            src, path, "polygonise the labels.tif beside it", change_maps=not change_maps
        )
        raw = src.tags().get("GEOSEG_TAXONOMY")
    return Taxonomy.from_dict(json.loads(raw), source=str(path)) if raw else None


@dataclass(frozen=True)
class _Source:
    """How to turn a window of the raster into region keys (picklable, no pixels).

    ``reading``: how to read the classes of a map geoseg did not write, by its
    taxonomy (:func:`geoseg.map_reading.map_reading`), keyed as a geoseg map's.
    """

    path: str
    band: int
    taxonomy: Taxonomy | None
    confidence: bool
    coarse_only: bool = False
    reading: MapReading | None = None

    def read(self, win: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``(keys int32, valid, confidence or None)`` of a window."""
        with rasterio.open(self.path) as src:
            if self.reading is not None:
                coarse, fine, _ = self.reading.read(src, win)
                if self.coarse_only:
                    fine = np.full_like(fine, -1)
                valid = coarse >= 0
                width = self.reading.taxonomy.n_fine + 1
                keys = np.where(valid, coarse * width + fine + 1, 0)
                return keys.astype(np.int32), valid, None
            if self.taxonomy is not None:
                coarse, fine = src.read((1, 2), window=win).astype(np.int64)
                if self.coarse_only:
                    fine[:] = -1
                conf = src.read(3, window=win) if self.confidence else None
                return (*_hier_keys(coarse, fine, self.taxonomy), conf)
            data = src.read(self.band, window=win)
            nodata = src.nodatavals[self.band - 1]
            # GDAL's validity: nodata (NaN too), an internal or external mask band, or
            # alpha, as gdal_polygonize takes it
            valid = src.read_masks(self.band, window=win) > 0
        if data.dtype.kind == "f":
            valid &= np.isfinite(data)
            codes = data[valid]
            if codes.size and (np.any(codes != np.round(codes)) or np.abs(codes).max() >= 2**31):
                bad = codes[(codes != np.round(codes)) | (np.abs(codes) >= 2**31)][0]
                raise RasterFormatError(
                    f"{self.path}: band {self.band} holds {float(bad)!r}, not a whole-number "
                    "class code: polygonise a class raster (classify or round it first, e.g. "
                    f"{fixes.integer_codes(self.path, nodata=nodata)})"
                )
            data = np.where(valid, data, 0)
        elif (
            data.dtype.kind == "u"
            and data.dtype.itemsize >= 4
            and data[valid].max(initial=0) >= 2**31
        ):
            raise RasterFormatError(f"{self.path}: class codes do not fit in 32 bits")
        return data.astype(np.int32), valid, None


def _map_classes(
    path: str | Path,
    opts: VectorizeOptions,
    taxonomy: str | Path | Taxonomy | None,
    map_level: str | None,
) -> MapReading:
    """How to read the classes of a map by ``taxonomy``, its stray codes warned of.

    Raises
    ------
    ConfigError
        ``--band`` beside ``--taxonomy`` (plain codes, or a map's classes), ``--level``
        without ``--taxonomy`` for a map that does not carry one.
    """
    from geoseg.map_reading import map_reading
    from geoseg.raster import strip_rows
    from geoseg.taxonomy import count_codes, stray_codes_message

    if opts.band is not None:
        raise ConfigError(
            f"{path}: --band polygonises a band's plain codes, and --taxonomy (or --level) "
            "reads the map's classes by their taxonomy: give one of them"
        )
    with rasterio.open(path) as src:
        reading = map_reading(src, str(path), taxonomy, map_level, what="the map")  # type: ignore[arg-type]
        rows = strip_rows(src.width, 1 << 22)  # codes the taxonomy does not list: left out
        stray: dict[int, int] = {}
        for r0 in range(0, src.height, rows):
            win = Window(0, r0, src.width, min(rows, src.height - r0))
            count_codes(stray, reading.read(src, win)[2])
    if stray:
        message = stray_codes_message(
            path, stray, reading.taxonomy.name, "they are left out of the polygons"
        )
        warnings.warn(message, GeosegWarning, stacklevel=3)
    return reading


def _hier_keys(
    coarse: np.ndarray, fine: np.ndarray, tax: Taxonomy
) -> tuple[np.ndarray, np.ndarray]:
    """Encode (coarse, fine) codes as ``coarse_index * (n_fine + 1) + fine_index + 1``."""
    c_lut = tax.code_to_index_lut("coarse")
    f_lut = tax.code_to_index_lut("fine")
    ci = np.where((coarse >= 0) & (coarse < c_lut.size), c_lut[np.clip(coarse, 0, 65535)], -1)
    fi = np.where((fine >= 0) & (fine < f_lut.size), f_lut[np.clip(fine, 0, 65535)], -1)
    valid = ci >= 0
    keys = np.where(valid, ci * (tax.n_fine + 1) + fi + 1, 0)
    return keys.astype(np.int32), valid


def _chunk_task(source: _Source, win: Window, connectivity: int) -> ChunkPolygons:
    keys, valid, conf = source.read(win)
    return polygonize_chunk(
        keys,
        valid,
        row_off=int(win.row_off),
        col_off=int(win.col_off),
        connectivity=connectivity,
        weights=conf,
    )


def _windows(height: int, width: int, size: int) -> list[Window]:
    return [
        Window(c, r, min(size, width - c), min(size, height - r))
        for r in range(0, height, size)
        for c in range(0, width, size)
    ]


def vectorize(
    path: str | Path,
    opts: VectorizeOptions | None = None,
    *,
    scheduler: str = "threads",
    workers: int | None = None,
    client: Any = None,
    level: str = "fine",
    cancel: threading.Event | None = None,
    warn_crs: bool = True,
    known_codes: bool = False,
    taxonomy: str | Path | Taxonomy | None = None,
    map_level: str | None = None,
    ids: bool = False,
    reading: MapReading | None = None,
) -> gpd.GeoDataFrame:
    """Polygonise a label raster, chunk by chunk, into exact polygons.

    Parameters
    ----------
    path : str or Path
        geoseg ``labels.tif`` or a single-band integer class raster.
    opts : VectorizeOptions, optional
        Band, minimum mapping unit, simplification, connectivity, target CRS.
    scheduler : str
        Where the chunk tasks run: ``threads``, ``sync``, ``processes``, ``local`` or a
        Dask scheduler address.
    workers : int, optional
        Parallel workers.
    client : distributed.Client, optional
        An open client to run the chunk tasks on.
    level : {"fine", "coarse"}
        For a geoseg labels.tif: regions of equal (coarse, fine) classes, or of equal
        coarse class (with no MMU and no simplification, the exact dissolve of the
        fine polygons into coarse ones; the fine attributes are then empty).
    cancel : threading.Event, optional
        Set by another thread to stop between chunks, as if interrupted (a batch's Ctrl-C).
    warn_crs : bool
        Warn that a raster without a CRS gives polygons in grid units (predict warns of
        its scene instead).
    known_codes : bool
        The band is known to hold class codes (geoseg wrote it), however many: skip the
        check that refuses an image band.
    taxonomy : str, Path or Taxonomy, optional
        The taxonomy of a map geoseg did not write (NLCD, another classifier's): its
        classes are read as ``geoseg evaluate`` reads them (one band of coarse or fine
        codes, or two, coarse then fine) and the polygons get both levels' codes and
        names, as a geoseg map's; codes it does not list are left out, with a warning.
    map_level : {"coarse", "fine"}, optional
        The level of such a map's single band, where its codes fit both.
    ids : bool
        The band holds identifiers (segments, parcels), however many: skip the check
        that refuses an image band (a change.tif is still refused).
    reading : MapReading, optional
        The map's classes as ``taxonomy`` and ``map_level`` read them, already made
        (:func:`vectorize_layers` reads them once for both its layers).

    Returns
    -------
    geopandas.GeoDataFrame
        ``coarse_code, coarse_name, fine_code, fine_name, area_m2[, mean_confidence]`` for
        geoseg labels (or a map read with ``taxonomy``), ``class_code, area_m2``
        otherwise; in the raster's CRS (or ``dst_crs``).
    """
    import dask

    from geoseg.cluster import run_tasks

    opts = opts or VectorizeOptions()
    if opts.connectivity not in (4, 8):
        raise ConfigError(f"connectivity must be 4 or 8, got {opts.connectivity}")
    if opts.mmu < 0 or opts.simplify < 0:
        raise ConfigError("--mmu and --simplify must not be negative")
    if opts.chunk_size < 64:
        raise ConfigError(f"chunk size {opts.chunk_size} must be at least 64")
    scene = open_scene(path)  # no CRS: polygons in pixel coordinates
    if scene.crs is None and opts.dst_crs:
        raise ConfigError(
            f"{path}: has no CRS, so its polygons cannot be reprojected to {opts.dst_crs}: "
            f"assign the image's CRS ({fixes.assign_crs(path)}) or leave out --dst-crs"
        )
    if scene.crs is None and level == "fine" and warn_crs:  # once per raster, not per layer
        unit = "pixels" if scene.affine.is_identity else "square units of its geotransform"
        log.warning(
            "%s: has no CRS: polygons are in its grid's coordinates and area_m2 (and --mmu) "
            "in %s, not m²; assign its CRS (%s) for true areas",
            path,
            unit,
            fixes.assign_crs(path),
        )
    if scene.crs is not None and opts.dst_crs and level == "fine" and warn_crs:
        _warn_outside_area_of_use(path, scene, opts.dst_crs)
    if reading is None and (taxonomy is not None or map_level is not None):
        reading = _map_classes(path, opts, taxonomy, map_level)
    classes: Taxonomy | None = None  # the map's, by the taxonomy given or its own tag
    if reading is not None:
        classes = reading.taxonomy
    elif opts.band is None:
        classes = read_taxonomy_tag(path, change_maps=known_codes)
    band = opts.band or 1
    if opts.band is None and classes is None and (data := scene.count - len(scene.alpha)) > 1:
        log.warning(
            "%s: not a geoseg labels.tif and it has %d bands: polygonising band 1 as class "
            "codes (pass --band to choose another)", path, data
        )  # fmt: skip
    if opts.band is not None and read_taxonomy_tag(path, change_maps=known_codes) is not None:
        what = {1: "coarse codes", 2: "fine codes", 3: "confidence (1-100), not classes"}
        log.warning(
            "%s: a geoseg labels.tif: --band %d polygonises its %s as plain codes, without "
            "names or the coarse layer (leave --band out for both levels)",
            path,
            band,
            what.get(band, f"band {band}"),
        )
    if band < 1 or band > scene.count:
        raise RasterFormatError(
            f"{path}: band {band} does not exist (the file has {scene.count} bands)"
        )
    if scene.dtype not in INTEGER_TYPES + FLOAT_TYPES:
        raise RasterFormatError(
            f"{path}: band type {scene.dtype} is not a class raster: pass integer class "
            f"codes ({fixes.integer_codes(path)})"
        )
    if classes is None and not (known_codes or ids):
        _check_class_codes(path, band)
    if opts.confidence and (classes is None or reading is not None):
        raise ConfigError(f"{path}: mean confidence needs a geoseg labels.tif (band 3)")
    crs, transform = scene.crs, scene.affine
    if level not in ("fine", "coarse"):
        raise ConfigError(f"level {level!r} is not one of fine, coarse")
    source = _Source(
        scene.path,
        band,
        classes,
        opts.confidence,
        coarse_only=level == "coarse",
        reading=reading,
    )
    tasks = [
        dask.delayed(_chunk_task, pure=True)(
            source,
            win,
            opts.connectivity,
            dask_key_name=f"geoseg-poly-{level}-{i}-{dask.base.tokenize(source, win)}",
        )
        for i, win in enumerate(_windows(scene.height, scene.width, opts.chunk_size))
    ]
    if scheduler == "processes":
        chunks = list(dask.compute(*tasks, scheduler="processes", num_workers=workers))
    else:
        chunks = run_tasks(
            tasks, scheduler, workers=workers, prefix="geoseg-poly", client=client, cancel=cancel
        )
    if cancel is not None and cancel.is_set():
        raise KeyboardInterrupt
    regions = merge_chunks(chunks, connectivity=opts.connectivity)
    if not len(regions.geoms):
        warnings.warn(
            f"{scene.path}: every pixel is nodata: there are no polygons (check the map's "
            "nodata tag, or pass the band that holds the classes)",
            GeosegWarning,
            stacklevel=2,
        )
    # where pixel areas vary by row (geographic coordinates, Mercator), areas and the
    # minimum mapping unit are summed row by row, at any extent
    cumulative = (
        cumulative_row_areas(crs, transform, scene.height, scene.width)
        if crs is not None and areas_vary_by_row(crs)
        else None
    )
    if opts.mmu > 0:
        if cumulative is not None:
            regions = sieve_regions(
                regions, opts.mmu, connectivity=opts.connectivity, cumulative=cumulative
            )
        else:
            # without a CRS, in the units of the geotransform, as the polygons' areas
            px = (
                pixel_area_m2(crs, transform, scene.shape)
                if crs
                else abs(transform.a * transform.e)
            )
            min_pixels = math.ceil(opts.mmu / px - 1e-9)
            if min_pixels > 1:
                regions = sieve_regions(regions, min_pixels, connectivity=opts.connectivity)
    geoms = regions.geoms
    if opts.dst_crs:
        # a vertex at every pixel corner along every edge (in pixel coordinates, where
        # corners are whole numbers, whatever the pixel's shape): neighbours then share
        # every vertex of their common edges (a corner of one polygon in the middle of
        # its neighbour's edge left slivers of overlap once reprojected), and the edges
        # follow the curvature of the new CRS pixel by pixel
        geoms = shapely.segmentize(geoms, 1.0)
    geoms = _to_world(geoms, transform)
    if opts.simplify > 0 and len(geoms):
        # edges between classes only: the edges of nodata (a cloud mask's holes, the
        # footprint) stay on their pixel edges. Simplified, the two sides of a one-pixel
        # hole each became its diagonal and the hole closed under a class polygon.
        geoms = shapely.coverage_simplify(geoms, opts.simplify, simplify_boundary=False)
    gs = gpd.GeoSeries(geoms, crs=crs)
    if cumulative is not None:
        area = raster_areas_m2(geoms, transform, cumulative)
    else:
        area = areas_m2(gs.to_numpy(), crs) if crs else shapely.area(geoms)
    extra = {}
    if opts.confidence:
        extra["mean_confidence"] = np.round(regions.weight_sum / np.maximum(regions.pixels, 1), 2)
    if classes is not None:
        gdf = _hier_frame(gs, regions.values, classes, area, extra)
    else:
        gdf = gpd.GeoDataFrame(
            {"class_code": regions.values, "area_m2": area, **extra}, geometry=gs, crs=crs
        )
    if opts.dst_crs:
        gdf = gdf.to_crs(opts.dst_crs)
    # exteriors counter-clockwise, holes clockwise (OGC, GeoJSON's right-hand rule), as
    # geodesic area tools read signed rings: simplification and the y-flip of the
    # geotransform leave them either way
    oriented = shapely.orient_polygons(gdf.geometry.to_numpy(), exterior_cw=False)
    gdf[gdf.geometry.name] = gpd.GeoSeries(oriented, index=gdf.index, crs=gdf.crs)
    return gdf


#: Degrees of longitude a raster may reach beyond a --dst-crs's area of use unwarned.
LONGITUDE_SLACK_DEG = 5.0


def _warn_outside_area_of_use(path: str | Path, scene: Any, dst_crs: str) -> None:
    """Warn when the raster reaches beyond where ``dst_crs`` is defined (its area of use).

    Web Mercator (EPSG:3857) ends at 85.06° of latitude: polygons beyond are stretched
    without bound, or infinite. Longitudes may reach :data:`LONGITUDE_SLACK_DEG` beyond
    (a scene over a UTM zone's edge, in that zone's CRS, is common and accurate enough).
    """
    from pyproj import CRS
    from rasterio.warp import transform_bounds

    area = CRS.from_user_input(dst_crs).area_of_use
    if area is None:
        return
    from rasterio.transform import array_bounds

    try:
        west, south, east, north = transform_bounds(
            scene.crs, "EPSG:4326", *array_bounds(*scene.shape, scene.affine), densify_pts=21
        )
    except Exception:  # GDAL's CPLE_* errors: a raster PROJ cannot place, warned of elsewhere
        return
    tol = 1e-6
    inside = south >= area.south - tol and north <= area.north + tol
    if area.west <= area.east and west <= east:  # neither crosses the antimeridian
        # a scene a little over a UTM zone's edge is common, and still accurate
        slack = LONGITUDE_SLACK_DEG + tol
        inside = inside and west >= area.west - slack and east <= area.east + slack
    if not inside:
        log.warning(
            "%s: reaches beyond where %s is defined (%s: longitudes %.2f to %.2f, latitudes "
            "%.2f to %.2f; the raster: %.2f to %.2f, %.2f to %.2f): polygons there are "
            "distorted without bound or infinite; choose a --dst-crs that covers the raster",
            path,
            dst_crs,
            area.name.rstrip("."),
            area.west,
            area.east,
            area.south,
            area.north,
            west,
            east,
            south,
            north,
        )


def _to_world(geoms: np.ndarray, transform: Any) -> np.ndarray:
    from geoseg.polygonize import to_world

    return to_world(geoms, transform)


def _hier_frame(
    gs: gpd.GeoSeries,
    keys: np.ndarray,
    taxonomy: Taxonomy,
    area: np.ndarray,
    extra: dict[str, np.ndarray],
) -> gpd.GeoDataFrame:
    width = taxonomy.n_fine + 1
    ci = keys // width
    fi = keys % width - 1
    coarse = taxonomy.coarse_codes[ci]
    has_fine = fi >= 0
    fine = np.where(has_fine, taxonomy.fine_codes[np.maximum(fi, 0)] if taxonomy.n_fine else 0, 0)
    cnames = {c.code: c.name for c in taxonomy.coarse}
    fnames = {c.code: c.name for c in taxonomy.fine}
    df = pd.DataFrame(
        {
            "coarse_code": coarse.astype(np.int32),
            # object dtype, so that an empty layer (all nodata) still has text columns
            "coarse_name": pd.Series([cnames[int(c)] for c in coarse], dtype=object),
            "fine_code": pd.array(np.where(has_fine, fine, 0), dtype="Int32"),
            "fine_name": pd.Series(
                [fnames[int(f)] if h else None for f, h in zip(fine, has_fine, strict=True)],
                dtype=object,
            ),
        }
    )
    df.loc[~has_fine, "fine_code"] = pd.NA
    df["area_m2"] = area
    for k, v in extra.items():
        df[k] = v
    return gpd.GeoDataFrame(df, geometry=gs.to_numpy(), crs=gs.crs)


def class_areas(gdf: gpd.GeoDataFrame, column: str) -> dict[int, float]:
    """Total area (m²) per class code."""
    return {int(k): float(v) for k, v in gdf.groupby(column)["area_m2"].sum().items()}


def vectorize_layers(
    path: str | Path,
    opts: VectorizeOptions | None = None,
    **kwargs: Any,
) -> dict[str, gpd.GeoDataFrame]:
    """The layers of a label raster: ``landcover`` (and ``coarse`` for geoseg labels).

    ``landcover`` holds both levels' attributes per fine region; ``coarse`` the regions
    of equal coarse class, with the same MMU and simplification (the exact dissolve of
    ``landcover`` when both are 0). Keyword arguments go to :func:`vectorize`.
    """
    opts = opts or VectorizeOptions()
    taxonomy, map_level = kwargs.pop("taxonomy", None), kwargs.pop("map_level", None)
    named = taxonomy is not None or map_level is not None
    if named:  # the map's classes read (and its stray codes counted) once, for both layers
        kwargs["reading"] = _map_classes(path, opts, taxonomy, map_level)
    layers = {"landcover": vectorize(path, opts, **kwargs)}
    if opts.band is None and (named or read_taxonomy_tag(path) is not None):
        coarse = vectorize(path, opts, level="coarse", **kwargs)
        layers["coarse"] = coarse.drop(columns=["fine_code", "fine_name"])
    return layers


#: Distinct values in a sample of a band beyond which it is refused as class codes:
#: land-cover legends have tens of classes (NLCD 16; detailed national legends a few
#: hundred), an image band thousands of values (Zion's Landsat band 2: 9,845 in its
#: 1.6 M pixels), whose "polygons" would be nearly one per pixel and take hours.
MAX_CLASS_CODES = 2048


def _check_class_codes(path: str | Path, band: int) -> None:
    """Refuse a band that holds too many distinct values to be class codes (an image).

    Raises
    ------
    RasterFormatError
        A decimated read of the band (at most about a million pixels) holds more than
        :data:`MAX_CLASS_CODES` distinct values.
    """
    from rasterio.enums import Resampling

    with rasterio.open(path) as src:
        step = max(1, int(np.ceil(np.sqrt(src.width * src.height / 1e6))))
        shape = (max(1, src.height // step), max(1, src.width // step))
        sample = src.read(band, out_shape=shape, resampling=Resampling.nearest, masked=True)
    found = np.unique(sample.compressed())
    if found.size > MAX_CLASS_CODES:
        raise RasterFormatError(
            f"{path}: band {band} holds {found.size:,} distinct values in a sample of its "
            "pixels, so it is an image, not class codes: polygonise a label map (the "
            "labels.tif of geoseg predict, or another classification), pass --band for "
            "a band of classes, or --ids if its values are identifiers (segments, parcels)"
        )


def cartographic_defaults(path: str | Path) -> tuple[float, float]:
    """Default ``(mmu m², simplify CRS units)`` for cartography: 4 pixels, one pixel.

    Four pixels remove the salt-and-pepper of per-pixel classification. The coverage
    simplification (Visvalingam-Whyatt) removes a vertex whose triangle with its
    neighbours is smaller than the tolerance squared: a stair step's is half a pixel
    squared, so a tolerance of one pixel removes the staircase of pixel edges (half a
    pixel, the default before 2026-12-07, removed none: 0.02 % of the vertices).
    """
    scene = open_scene(path)
    t = scene.affine
    px = pixel_area_m2(scene.crs, t, scene.shape) if scene.crs else abs(t.a * t.e)
    return 4 * px, 1.0 * min(abs(t.a), abs(t.e))
