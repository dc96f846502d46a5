"""True ground areas in square metres, whatever the CRS.

Planar areas are true areas only in (nearly) equal-area projections. geoseg measures
the areal scale factor of the CRS at the centre of the data: where it is within
0.1 % of 1 (UTM, national grids, equal-area projections) the planar area in CRS
units, converted to metres, is used; otherwise (geographic coordinates, Web Mercator,
...) geometries are projected to a Lambert azimuthal equal-area projection centred on
the data and measured there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import ProjError

TOLERANCE = 1e-3


def _centre_lonlat(crs: CRS, x: float, y: float) -> tuple[float, float]:
    if crs.is_geographic:
        return x, y
    to_ll = Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
    lon, lat = to_ll.transform(x, y)
    return float(lon), float(lat)


def areal_scale(crs: Any, x: float, y: float) -> float | None:
    """Areal scale factor of a projected CRS at ``(x, y)`` (``None`` if geographic)."""
    crs = CRS.from_user_input(crs)
    if crs.is_geographic:
        return None
    lon, lat = _centre_lonlat(crs, x, y)
    try:
        from pyproj import Proj

        factors = Proj(crs).get_factors(lon, lat)
        return float(factors.areal_scale)
    except (ProjError, RuntimeError):
        return 1.0


def _unit(crs: CRS) -> float:
    return crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0


def is_planar_true(crs: Any, x: float, y: float) -> bool:
    """Whether planar areas in ``crs`` are true areas near ``(x, y)`` (within 0.1 %)."""
    scale = areal_scale(crs, x, y)
    return scale is not None and abs(scale - 1.0) <= TOLERANCE


def laea_for(crs: Any, x: float, y: float) -> CRS:
    """A Lambert azimuthal equal-area CRS centred on ``(x, y)`` of ``crs``."""
    lon, lat = _centre_lonlat(CRS.from_user_input(crs), x, y)
    return CRS.from_proj4(f"+proj=laea +lat_0={lat} +lon_0={lon} +datum=WGS84 +units=m")


def pixel_area_m2(crs: Any, transform: Any, shape: tuple[int, int]) -> float:
    """True area of one pixel at the centre of a raster, in m²."""
    crs = CRS.from_user_input(crs)
    h, w = shape
    x, y = transform @ (w / 2, h / 2)
    nominal = abs(transform.a * transform.e - transform.b * transform.d)
    if is_planar_true(crs, x, y):
        return float(nominal * _unit(crs) ** 2)
    x1, y1 = transform @ (w / 2 + 1, h / 2 + 1)
    square = shapely.box(min(x, x1), min(y, y1), max(x, x1), max(y, y1))
    return float(areas_m2(np.array([square]), crs)[0])


def ground_sample_distance(crs: Any, transform: Any, shape: tuple[int, int]) -> float | None:
    """A raster's pixel size in metres: the side of a square of its central pixel's area.

    ``None`` without a CRS (pixels of unknown size).
    """
    if crs is None:
        return None
    return float(np.sqrt(pixel_area_m2(crs, transform, shape)))


def areas_m2(geoms: np.ndarray, crs: Any, *, planar: bool | None = None) -> np.ndarray:
    """True areas of ``geoms`` (in ``crs``) in m².

    ``planar``: whether planar areas count as true (decided for a whole scene, so that
    its parts are measured alike); by default, decided at the centre of ``geoms``.
    """
    crs = CRS.from_user_input(crs)
    if len(geoms) == 0:
        return np.zeros(0)
    xmin, ymin, xmax, ymax = shapely.total_bounds(geoms)
    cx, cy = (xmin + xmax) / 2, (ymin + ymax) / 2
    if is_planar_true(crs, cx, cy) if planar is None else planar:
        return shapely.area(geoms) * _unit(crs) ** 2
    tr = Transformer.from_crs(crs, laea_for(crs, cx, cy), always_xy=True)

    def project(xy: np.ndarray) -> np.ndarray:
        x, y = tr.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.area(shapely.transform(geoms, project))


def areas_vary_by_row(crs: Any) -> bool:
    """Whether a north-up raster's pixel areas in ``crs`` depend on its row only.

    So in geographic coordinates and cylindrical projections (Mercator, Web Mercator,
    plate carrée), where the areal scale depends on the latitude alone; there
    :func:`raster_areas_m2` sums pixel-edge polygons' true areas row by row, at any
    extent (each row's pixel measured with straight edges on an equal-area projection:
    -2e-5 of the area for pixels of 0.7°).
    """
    crs = CRS.from_user_input(crs)
    if crs.is_geographic:
        return True
    op = crs.coordinate_operation
    method = (op.method_name if op is not None else "").lower()
    slanted = "transverse" in method or "oblique" in method
    return not slanted and ("mercator" in method or "cylindrical" in method)


def cumulative_row_areas(crs: Any, transform: Any, height: int, width: int) -> np.ndarray:
    """``(height + 1,)`` m² of one column of pixels above each row edge (0 at the top)."""
    per_row = row_pixel_areas(crs, transform, 0, height, width / 2)
    return np.concatenate([[0.0], np.cumsum(per_row)])


def raster_areas_m2(geoms: np.ndarray, transform: Any, cumulative: np.ndarray) -> np.ndarray:
    """True areas (m²) of ``geoms`` drawn on a north-up raster whose areas vary by row.

    ``geoms`` are in the raster's CRS, ``cumulative`` from :func:`cumulative_row_areas`.
    Each vertex's row coordinate is replaced by the area of a column of pixels above it:
    the planar area of the result is then the sum of the areas of the pixels a polygon
    covers, exactly for polygons on pixel edges (and within a fraction of a row's
    variation for simplified ones), whatever the extent. One equal-area projection
    centred on the data (:func:`areas_m2`) cannot do this for a global raster: near the
    antipode of its centre it gave areas thousands of times too large.
    """
    if len(geoms) == 0:
        return np.zeros(0)
    a, c, e, f = transform.a, transform.c, transform.e, transform.f
    edges = np.arange(cumulative.size, dtype=float)

    def to_area_space(xy: np.ndarray) -> np.ndarray:
        col = (xy[:, 0] - c) / a
        row = (xy[:, 1] - f) / e
        return np.column_stack([col, np.interp(row, edges, cumulative)])

    return np.abs(shapely.area(shapely.transform(geoms, to_area_space)))


def row_pixel_areas(crs: Any, transform: Any, row0: int, rows: int, col: float) -> np.ndarray:
    """True area (m²) of the pixel at column ``col`` of each of ``rows`` rows from ``row0``.

    Where areas vary across a scene (geographic coordinates, Web Mercator) they vary
    with the latitude, so with the row of a north-up raster.
    """
    r = np.arange(row0, row0 + rows, dtype=float)
    return areas_m2(pixel_polygons(transform, r, np.full_like(r, col)), crs)


def pixel_polygons(transform: Any, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The polygons of the pixels at ``rows``, ``cols``, from their four corners.

    A rotated grid's pixels are parallelograms, not boxes.

    Examples
    --------
    >>> from affine import Affine
    >>> t = Affine.rotation(30) @ Affine.scale(30, -30)
    >>> p = pixel_polygons(t, np.zeros(1), np.zeros(1))
    >>> round(float(shapely.area(p[0])), 6)
    900.0
    """
    corners = [transform @ (cols + dc, rows + dr) for dc, dr in ((0, 0), (1, 0), (1, 1), (0, 1))]
    ring = np.stack([np.stack(xy, axis=-1) for xy in corners], axis=-2)  # (..., 4, 2)
    return shapely.polygons(ring)


def pixel_areas(
    crs: Any,
    transform: Any,
    row0: int,
    rows: int,
    col0: int,
    cols: int,
    step: int = 64,
    *,
    planar: bool | None = None,
) -> np.ndarray:
    """True area (m²) of each pixel of a window, ``(rows, cols)``.

    A pixel's area changes across a scene where planar areas are not true: with the
    latitude in geographic coordinates and Web Mercator, and also across the columns in
    a transverse Mercator zone used far from its central meridian (a scene in its
    neighbour's UTM zone). Measured on a lattice of pixels every ``step`` rows and
    columns (and the window's last row and column) and interpolated linearly between
    them: areas change smoothly, so the interpolation is off by far less than a
    millionth. ``planar``: as for :func:`areas_m2` (pass the scene's, so that every window
    of it is measured alike).
    """
    if areas_vary_by_row(crs):  # exact, and cheaper: one area per row
        per_row = row_pixel_areas(crs, transform, row0, rows, col0 + cols / 2)
        return np.broadcast_to(per_row[:, None], (rows, cols))
    rs = _lattice(row0, rows, step)
    cs = _lattice(col0, cols, step)
    r, c = np.meshgrid(rs, cs, indexing="ij")
    polygons = pixel_polygons(transform, r, c).ravel()
    lattice = areas_m2(polygons, crs, planar=planar).reshape(r.shape)
    across = _interpolate(lattice, cs, np.arange(col0, col0 + cols, dtype=float), axis=1)
    return _interpolate(across, rs, np.arange(row0, row0 + rows, dtype=float), axis=0)


def _lattice(start: int, size: int, step: int) -> np.ndarray:
    """Every ``step``-th index of ``size`` from ``start``, and the last one."""
    return np.unique(np.r_[np.arange(start, start + size, step), start + size - 1]).astype(float)


def _interpolate(values: np.ndarray, knots: np.ndarray, at: np.ndarray, axis: int) -> np.ndarray:
    """``values`` given at ``knots`` along ``axis``, interpolated linearly at ``at``."""
    if len(knots) == 1:
        return np.repeat(values, len(at), axis=axis)
    i = np.clip(np.searchsorted(knots, at, side="right") - 1, 0, len(knots) - 2)
    t = (at - knots[i]) / (knots[i + 1] - knots[i])
    lo, hi = np.take(values, i, axis=axis), np.take(values, i + 1, axis=axis)
    shape = [1, 1]
    shape[axis] = len(at)
    t = t.reshape(shape)
    return lo * (1 - t) + hi * t


def window_areas(src: Any) -> Callable[[int, int], np.ndarray]:
    """A function of ``(row0, rows)`` giving the pixel areas of those rows, ``(rows, width)``.

    In m² (each pixel's own: :func:`pixel_areas`), or 1 (a pixel) for a map
    without CRS.
    """
    if src.crs is None:
        return lambda row0, rows: np.ones((rows, src.width))
    cx, cy = src.transform @ (src.width / 2, src.height / 2)
    planar = is_planar_true(src.crs, cx, cy)  # the map's, for every strip alike
    return lambda row0, rows: pixel_areas(
        src.crs, src.transform, row0, rows, 0, src.width, planar=planar
    )
