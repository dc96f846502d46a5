"""Label raster -> polygons with class attributes and true areas.

Works on geoseg's ``labels.tif`` (coarse + fine bands; polygons carry both levels and
the names from the taxonomy stored in the file) and on any single-band class raster
(polygons carry an integer ``class_code``). A minimum mapping unit is applied on the
raster (sieve) before polygonising, and the optional simplification works on the
whole coverage at once (``shapely.coverage_simplify``) so neighbours keep their
shared edges.

This version polygonises the label raster in one piece (``rasterio.features.shapes``),
so memory grows with the raster; chunked polygonisation with seam merging is planned.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
from pyproj import CRS
from rasterio.features import shapes, sieve

from geoseg.errors import RasterFormatError
from geoseg.raster import open_scene
from geoseg.taxonomy import Taxonomy

KEY_SHIFT = 65536


@dataclass(frozen=True)
class VectorizeOptions:
    """Polygonisation settings.

    Attributes
    ----------
    band : int or None
        Band of a plain class raster (default 1); ignored for geoseg labels unless given.
    mmu : float
        Minimum mapping unit in m²: smaller regions merge into their largest neighbour.
    simplify : float
        Coverage-simplification tolerance in CRS units (0 = exact pixel edges).
    connectivity : int
        4 or 8 pixel connectivity.
    """

    band: int | None = None
    mmu: float = 0.0
    simplify: float = 0.0
    connectivity: int = 4


def read_taxonomy_tag(path: str | Path) -> Taxonomy | None:
    """The taxonomy stored in a geoseg labels raster, or ``None`` for other rasters."""
    with rasterio.open(path) as src:
        raw = src.tags().get("GEOSEG_TAXONOMY")
    return Taxonomy.from_dict(json.loads(raw), source=str(path)) if raw else None


def pixel_area_m2(crs: object, transform: rasterio.Affine) -> float | None:
    """Area of one pixel in m² for projected CRSs (``None`` for geographic)."""
    crs = CRS.from_user_input(crs)
    if crs.is_geographic:
        return None
    factor = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
    return abs(transform.a * transform.e) * factor * factor


def area_m2(geoms: gpd.GeoSeries) -> np.ndarray:
    """Polygon areas in m², on an equal-area projection when the CRS is geographic."""
    crs = CRS.from_user_input(geoms.crs)
    if crs.is_geographic:
        c = geoms.union_all().centroid if len(geoms) else shapely.Point(0, 0)
        laea = CRS.from_proj4(f"+proj=laea +lat_0={c.y} +lon_0={c.x} +datum=WGS84 +units=m")
        return geoms.to_crs(laea).area.to_numpy()
    factor = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
    return geoms.area.to_numpy() * factor * factor


def vectorize(path: str | Path, opts: VectorizeOptions | None = None) -> gpd.GeoDataFrame:
    """Polygonise a label raster.

    Parameters
    ----------
    path : str or Path
        geoseg ``labels.tif`` or a single-band integer class raster.
    opts : VectorizeOptions, optional
        Band, minimum mapping unit, simplification and connectivity.

    Returns
    -------
    geopandas.GeoDataFrame
        ``coarse_code, coarse_name, fine_code, fine_name, area_m2, geometry`` for geoseg
        labels, ``class_code, area_m2, geometry`` otherwise; in the raster's CRS.
    """
    opts = opts or VectorizeOptions()
    if opts.connectivity not in (4, 8):
        raise RasterFormatError(f"connectivity must be 4 or 8, got {opts.connectivity}")
    scene = open_scene(path)
    taxonomy = read_taxonomy_tag(path) if opts.band is None else None
    band = opts.band or 1
    if band < 1 or band > scene.count:
        raise RasterFormatError(
            f"{path}: band {band} does not exist (the file has {scene.count} bands)"
        )
    if scene.dtype not in ("uint8", "uint16", "int8", "int16", "int32", "uint32"):
        raise RasterFormatError(
            f"{path}: band type {scene.dtype} is not an integer class raster: pass a label raster"
        )
    with rasterio.open(path) as src:
        if taxonomy is not None:
            coarse = src.read(1).astype(np.int64)
            fine = src.read(2).astype(np.int64)
            valid = coarse != taxonomy.nodata
            key = coarse * KEY_SHIFT + np.where(valid, fine, 0)
        else:
            data = src.read(band)
            nodata = src.nodatavals[band - 1]
            valid = np.ones(data.shape, bool) if nodata is None else data != nodata
            key = data.astype(np.int64)
        transform, crs = src.transform, src.crs
    if key.max(initial=0) > np.iinfo(np.int32).max or key.min(initial=0) < np.iinfo(np.int32).min:
        raise RasterFormatError(f"{path}: class codes do not fit in 32 bits")
    key32 = key.astype(np.int32)
    if opts.mmu > 0:
        px = pixel_area_m2(crs, transform)
        if px is None:
            c = _center_lat(transform, key.shape)
            px = abs(transform.a * transform.e) * (111_320.0**2) * math.cos(math.radians(c))
        size = max(1, math.ceil(opts.mmu / px))
        if size > 1:
            key32 = sieve(key32, size=size, mask=valid, connectivity=opts.connectivity)
    geoms, values = [], []
    for geom, value in shapes(
        key32, mask=valid, transform=transform, connectivity=opts.connectivity
    ):
        geoms.append(shapely.geometry.shape(geom))
        values.append(int(value))
    gs = gpd.GeoSeries(geoms, crs=crs)
    if opts.simplify > 0 and len(gs):
        gs = gpd.GeoSeries(shapely.coverage_simplify(gs.to_numpy(), opts.simplify), crs=crs)
    vals = np.asarray(values, dtype=np.int64)
    if taxonomy is not None:
        return _hier_frame(gs, vals, taxonomy)
    return gpd.GeoDataFrame({"class_code": vals, "area_m2": area_m2(gs)}, geometry=gs, crs=crs)


def _center_lat(transform: rasterio.Affine, shape: tuple[int, int]) -> float:
    return float(transform.f + transform.e * shape[0] / 2)


def _hier_frame(gs: gpd.GeoSeries, keys: np.ndarray, taxonomy: Taxonomy) -> gpd.GeoDataFrame:
    coarse = keys // KEY_SHIFT
    fine = keys % KEY_SHIFT
    cnames = {c.code: c.name for c in taxonomy.coarse}
    fnames = {c.code: c.name for c in taxonomy.fine}
    has_fine = np.isin(fine, list(fnames)) & (fine != taxonomy.nodata)
    df = pd.DataFrame(
        {
            "coarse_code": coarse.astype(np.int32),
            "coarse_name": [cnames.get(int(c), str(c)) for c in coarse],
            "fine_code": pd.array(np.where(has_fine, fine, 0), dtype="Int32"),
            "fine_name": [
                fnames[int(f)] if h else None for f, h in zip(fine, has_fine, strict=True)
            ],
        }
    )
    df.loc[~has_fine, "fine_code"] = pd.NA
    df["area_m2"] = area_m2(gs)
    return gpd.GeoDataFrame(df, geometry=gs.to_numpy(), crs=gs.crs)


def class_areas(gdf: gpd.GeoDataFrame, column: str) -> dict[int, float]:
    """Total area (m²) per class code."""
    return {int(k): float(v) for k, v in gdf.groupby(column)["area_m2"].sum().items()}
