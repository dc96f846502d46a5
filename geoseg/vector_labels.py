"""Vector labels: features with a class attribute, burnt onto an image's grid.

Analysts digitise training areas and reference samples as polygons (or points, or
lines) in QGIS, and a geoseg export edited by hand is such a file too. This module
reads one layer of a vector file (GeoPackage, Shapefile, GeoJSON, FlatGeobuf,
GeoParquet...) and offers it as a one-band raster of class codes on a target grid,
read a window at a time like a rasterio dataset (``read(1, window=...)``), so that
training (:func:`geoseg.labelled.label_rows`) and evaluation read it as they read
label rasters, and memory follows the window, not the scene.

Only the features on the grid's footprint are read, clipped to it in the file's CRS
(a continent-sized polygon in longitude/latitude stays within the target projection's
valid area), reprojected, and turned into the grid's pixel coordinates once, so that
every band of rows burns against the same numbers (no seams between bands).

A pixel takes the class of the features that cover its centre (points and lines: the
pixels they touch, as GDAL burns them). Pixels no feature covers are unlabelled, and
so are pixels where features of different classes overlap (counted, and warned of when
the labels are closed).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np
from affine import Affine

from geoseg import fixes
from geoseg.errors import (
    OverlappingFeaturesWarning,
    RasterFormatError,
    RasterReadError,
    UnlabelledFeaturesWarning,
)

if TYPE_CHECKING:
    from rasterio.windows import Window

    from geoseg.taxonomy import Taxonomy

log = logging.getLogger(__name__)

#: File name endings read as vector labels (everything else is a raster).
VECTOR_SUFFIXES = frozenset(
    {
        ".gpkg",
        ".shp",
        ".geojson",
        ".json",
        ".fgb",
        ".parquet",
        ".geoparquet",
        ".gml",
        ".kml",
        ".kmz",
    }
)

#: The code of an unlabelled pixel in what :meth:`VectorLabels.read` returns.
NODATA = -1

#: The largest class code a feature may carry (codes are burnt as int32).
MAX_CODE = 2**31 - 1

#: Share of the grid's footprint (in the file's CRS) added around it before clipping.
CLIP_MARGIN = 0.05


def is_vector(path: str | Path) -> bool:
    """Whether ``path`` names a vector file (by its ending), not a raster.

    A zipped Shapefile (``.shp.zip``, as portals serve them) is one too.

    Examples
    --------
    >>> is_vector("labels/fields.GPKG"), is_vector("fields.shp.zip"), is_vector("l.tif")
    (True, True, False)
    """
    name = Path(str(path)).name.lower()
    return Path(name).suffix in VECTOR_SUFFIXES or name.endswith(".shp.zip")


@dataclass(frozen=True)
class VectorField:
    """Where a vector file keeps its class codes, and how to tell the user about it.

    Attributes
    ----------
    field : str
        The attribute holding each feature's class: an integer code, a whole number
        stored as a real or as text, or a class name (text) of the taxonomy's level.
    option : str
        How the user names another attribute (``coarse_field``, ``--fine-field``).
    layer : str, optional
        The layer to read (default: the file's first layer with geometries).
    layer_option : str
        How the user names another layer (``layer``, ``--layer``).
    names : Mapping of str to int, optional
        Class name -> code, for a text attribute (see
        :meth:`geoseg.taxonomy.Taxonomy.codes_by_name`).
    other_level : tuple of (str, frozenset of str), optional
        The taxonomy's other level and its class names, to recognise names given at the
        wrong level.
    shared : bool
        The file labels several images (a pattern's): an image it does not reach is
        unlabelled instead of an error.
    presence : bool
        No attribute is read: every feature has code 1 (a mask, whose features are
        where something is: clouds, or an area of interest); ``field`` names them in
        messages.
    as_text : bool
        Values of any type are read as text (:func:`zone_text`) and looked up in
        ``names`` only: zones, whose ids need not be class codes.
    """

    field: str
    option: str
    layer: str | None = None
    layer_option: str = "layer"
    names: Mapping[str, int | None] | None = None
    other_level: tuple[str, frozenset[str]] | None = None
    shared: bool = False
    presence: bool = False
    as_text: bool = False


def level_field(
    vector: Mapping[str, VectorField] | None, level: str, taxonomy: Taxonomy
) -> VectorField | None:
    """``vector[level]`` with the class names of ``taxonomy``'s levels, if given."""
    if vector is None or level not in vector:
        return None
    other = "fine" if level == "coarse" else "coarse"
    return dataclasses.replace(
        vector[level],
        names=taxonomy.codes_by_name(level),
        other_level=(other, frozenset(taxonomy.codes_by_name(other))),
    )


class VectorLabels:
    """A vector layer's classes as a one-band int32 raster on a grid (see the module).

    Open with :func:`open_vector_labels`. Reading mimics a rasterio dataset's
    ``read(1, window=...)``; ``nodata`` is :data:`NODATA`.

    Parameters
    ----------
    path : str
        The file (for messages).
    pixels : numpy.ndarray
        The features' geometries in the grid's pixel coordinates (x = column, y = row).
    codes : numpy.ndarray
        Their class codes.
    width, height : int
        The grid's size.
    spec : VectorField
        Where the classes came from (for messages).
    """

    count = 1
    nodata = NODATA

    def __init__(
        self,
        path: str,
        pixels: np.ndarray,
        codes: np.ndarray,
        *,
        width: int,
        height: int,
        spec: VectorField,
    ) -> None:
        from shapely import STRtree

        self.path, self.spec = path, spec
        self.width, self.height = width, height
        self._geoms, self._codes = pixels, codes
        self._tree = STRtree(pixels)
        #: Pixels read so far that features of different classes cover.
        self.clashes = 0

    @property
    def features(self) -> int:
        """How many features lie on the grid."""
        return int(self._geoms.size)

    def read(self, band: int = 1, window: Window | None = None) -> np.ndarray:
        """The class codes of ``window`` (default: the whole grid), ``-1`` unlabelled.

        A window reaching past the grid is cropped to it, as a raster's read crops it.
        """
        from rasterio.features import rasterize
        from rasterio.windows import Window
        from shapely import box

        if band != 1:
            raise IndexError(f"{self.path}: vector labels have one band, not band {band}")
        whole = Window(0, 0, self.width, self.height)
        win = whole if window is None else window.intersection(whole)
        row, col = int(win.row_off), int(win.col_off)
        shape = (int(win.height), int(win.width))
        hits = self._tree.query(box(col, row, col + shape[1], row + shape[0]))
        if hits.size == 0:
            return np.full(shape, NODATA, dtype=np.int32)
        # burnt in ascending, then descending order of code: the last burnt wins, so the
        # two differ exactly where features of different classes cover a pixel
        order = hits[np.argsort(self._codes[hits], kind="stable")]
        # GeoJSON mappings made once for both passes: making them is most of the time
        shapes = [
            (g.__geo_interface__, c)
            for g, c in zip(self._geoms[order], self._codes[order].tolist(), strict=True)
        ]
        t = Affine.translation(col, row)  # window pixels -> the grid's pixel coordinates

        def burn(features: list[tuple[dict[str, Any], int]]) -> np.ndarray:
            return rasterize(features, out_shape=shape, transform=t, fill=NODATA, dtype="int32")

        if self.spec.presence:  # every feature is code 1: nothing can clash
            return burn(shapes)
        high, low = burn(shapes), burn(shapes[::-1])
        clash = high != low
        if clash.any():
            self.clashes += int(clash.sum())
            low[clash] = NODATA
        return low

    def close(self) -> None:
        """Warn of the pixels read that features of different classes covered."""
        if self.clashes:
            warnings.warn(
                OverlappingFeaturesWarning(
                    overlap_message(self.path, self.clashes, self.spec.field),
                    path=self.path,
                    field=self.spec.field,
                    pixels=self.clashes,
                ),
                stacklevel=2,
            )
            self.clashes = 0

    def __enter__(self) -> VectorLabels:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if kind is None:
            self.close()


def overlap_message(path: str, pixels: int, field: str, images: str = "") -> str:
    """The warning of :meth:`VectorLabels.close` (``images``: "in 3 of 5 images")."""
    where = f" {images}" if images else ""
    return (
        f"{path}: {pixels:,} pixels{where} lie under overlapping features whose {field!r} "
        "differs; they are left unlabelled: remove the overlaps (QGIS Topology Checker, "
        "rule 'must not overlap')"
    )


def unknown_names_message(
    path: str, names: Mapping[str, int], field: str, what: str, hint: str = "", images: str = ""
) -> str:
    """The warning for features whose class name the taxonomy lacks (``hint``: why)."""
    listed = ", ".join(f"{k!r} ({n})" for k, n in sorted(names.items())[:8])
    more = f" and {len(names) - 8} more" if len(names) > 8 else ""
    where = f" {images}" if images else ""
    return (
        f"{path}: {sum(names.values()):,} {what} features{where} name no class of the "
        f"taxonomy's level in {field!r}: {listed}{more}; they are left unlabelled"
        + (hint or ": correct the names, add the classes to the taxonomy, or use codes")
    )


def open_vector_labels(
    path: str | Path,
    spec: VectorField,
    *,
    width: int,
    height: int,
    crs: Any,
    transform: Affine,
    what: str,
    target: str | Path,
    target_path: str | Path | None = None,
) -> VectorLabels:
    """Read the features of a vector layer on a grid, for burning onto it.

    Parameters
    ----------
    path : str or Path
        The vector file.
    spec : VectorField
        Its class attribute, layer and class names.
    width, height, crs, transform
        The grid (an image's, a prediction's). A grid and a file without CRS share
        coordinates (pixel coordinates when the grid has no geotransform either).
    what, target : str
        What the file is ("label", "truth") and what the grid is, for errors.
    target_path : str or Path, optional
        The file whose grid it is, for the fix of one without a CRS.

    Raises
    ------
    RasterReadError
        The file is missing or not a readable vector file.
    RasterFormatError
        No such layer or attribute, values that are not class codes, a CRS on one side
        only, or (unless ``spec.shared``) no feature on the grid.

    Warns
    -----
    UnlabelledFeaturesWarning
        Features whose class is a name the taxonomy does not have (left unlabelled;
        features without a class are unlabelled at that level, as partial labels).
    """
    spath = str(path)
    layer = _Layer.open(spath, spec, what)
    _check_crs(spath, layer.crs, crs, what, target, target_path)
    bounds = _footprint(width, height, crs, transform, layer.crs)
    area = _widened(bounds, CLIP_MARGIN)
    geometry, values = layer.read(area)
    pixels, on_grid = _to_pixels(geometry, layer.crs, crs, transform, area, (width, height))
    codes, blank = feature_codes(spath, values.iloc[on_grid], spec, what)  # those on the grid
    if on_grid.size and not (codes >= 0).any() and not spec.shared:
        why = (
            f"all are empty: label them, or set {spec.option} to the attribute with this "
            "level's classes"
            if blank.all()
            else f"empty, or names the taxonomy's level lacks (see the warning above): set "
            f"{spec.option} to the attribute with this level's classes"
        )
        raise RasterFormatError(
            f"{spath}: none of the {on_grid.size:,} {what} features on {target} has a class "
            f"of this level in {spec.field!r}: {why}"
        )
    pixels, codes = pixels[codes >= 0], codes[codes >= 0]
    if not pixels.size:
        if not spec.shared:
            raise RasterFormatError(_off_grid_message(spath, layer, spec, what, target, bounds))
        log.info("%s: no %s feature on %s: unlabelled", spath, what, target)
    else:
        log.info(
            "%s: %d %s features of layer %r on %s", spath, pixels.size, what, layer.name, target
        )
    return VectorLabels(spath, pixels, codes, width=width, height=height, spec=spec)


@dataclass
class _Layer:
    """One layer of a vector file: where it is, its CRS, extent and class attribute."""

    path: str
    name: str
    crs: Any
    bounds: tuple[float, float, float, float]
    column: str | None  # None: no class attribute (a mask)
    geometry: str = "geometry"  # a GeoParquet file's geometry column

    @classmethod
    def open(cls, path: str, spec: VectorField, what: str) -> _Layer:
        """Pick the layer and its class attribute (see :class:`VectorField`)."""
        import pyogrio
        from pyogrio.errors import DataLayerError, DataSourceError

        from geoseg.raster import is_remote

        if not is_remote(path) and not Path(path).exists():
            raise RasterReadError(f"{path}: file not found: check the path")
        if _is_parquet(path):
            if spec.layer is not None:
                raise RasterFormatError(
                    f"{path}: a GeoParquet file has one layer: drop {spec.layer_option} "
                    f"{spec.layer!r}"
                )
            frame = _read_parquet(path, columns=None)
            names = [c for c in frame.columns if c != frame.geometry.name]
            column = None if spec.presence else _class_column(path, names, spec, Path(path).stem)
            bounds = tuple(frame.total_bounds) if len(frame) else (math.nan,) * 4
            stem, geometry = Path(path).stem, frame.geometry.name
            return cls(path, stem, frame.crs, bounds, column, geometry)  # type: ignore[arg-type]
        try:
            layers = pyogrio.list_layers(path)
        except DataSourceError as exc:
            raise RasterReadError(
                f"{path}: not a readable vector file ({str(exc).splitlines()[0]}): pass a "
                "GeoPackage, Shapefile, GeoJSON or FlatGeobuf"
            ) from None
        spatial = [str(name) for name, kind in layers if kind is not None]
        name = spec.layer
        if spec.presence and name is None and len(spatial) > 1:
            raise RasterFormatError(
                f"{path}: {len(spatial)} layers with geometries ({', '.join(map(repr, spatial))}), "
                f"and a mask is one layer: export the one to use to its own file "
                f"(ogr2ogr OUT.gpkg {path} {spatial[0]})"
            )
        if name is None:
            if not spatial:
                raise RasterFormatError(f"{path}: the file has no layer with geometries")
            name = spatial[0]
            if len(spatial) > 1:
                log.info(
                    "%s: %s read from layer %r of %s (%s picks another)",
                    path,
                    what,
                    name,
                    ", ".join(spatial),
                    spec.layer_option,
                )
        elif name not in spatial:
            raise RasterFormatError(
                f"{path}: no layer {name!r} with geometries; its layers are "
                f"{', '.join(map(repr, spatial)) or 'none'}: set {spec.layer_option} to one of them"
            )
        try:
            info = pyogrio.read_info(path, layer=name, force_total_bounds=True)
        except (DataSourceError, DataLayerError) as exc:
            raise RasterReadError(
                f"{path}: layer {name!r} cannot be read ({str(exc).splitlines()[0]}): "
                "re-export the file"
            ) from None
        fields = list(info["fields"])
        if spec.presence:
            return cls(path, name, info["crs"], _total_bounds(info), None)
        if spec.layer is None and column_in(fields, spec) is None:
            having = [
                other
                for other in spatial[1:]
                if column_in(list(pyogrio.read_info(path, layer=other)["fields"]), spec)
            ]
            if having:
                raise RasterFormatError(
                    f"{path}: layer {name!r}, the file's first, read by default, has no "
                    f"attribute {spec.field!r}; layer {', '.join(map(repr, having))} has it: "
                    f"set {spec.layer_option} to {having[0]!r}"
                )
        column = _class_column(path, fields, spec, name)
        bounds = _total_bounds(info)
        return cls(path, name, info["crs"], bounds, column)  # type: ignore[arg-type]

    def read(self, area: tuple[float, float, float, float]) -> tuple[np.ndarray, Any]:
        """The geometries (in the file's CRS) and classes of the features in ``area``."""
        from pyogrio.errors import DataLayerError, DataSourceError

        columns = [self.column] if self.column else []
        if _is_parquet(self.path):
            frame = _read_parquet(self.path, columns=[*columns, self.geometry])
            frame = frame.cx[area[0] : area[2], area[1] : area[3]]
        else:
            import geopandas as gpd

            try:
                frame = gpd.read_file(
                    self.path, layer=self.name, columns=columns, bbox=area, engine="pyogrio"
                )
            except (DataSourceError, DataLayerError) as exc:
                raise RasterReadError(
                    f"{self.path}: layer {self.name!r} cannot be read "
                    f"({str(exc).splitlines()[0]}): re-export the file"
                ) from None
        if self.column is None:  # every feature is there: code 1
            import pandas as pd

            return frame.geometry.to_numpy(), pd.Series(np.ones(len(frame), np.int64))
        return frame.geometry.to_numpy(), frame[self.column]


def _total_bounds(info: Mapping[str, Any]) -> tuple[float, float, float, float]:
    """A layer's extent from pyogrio's ``read_info``; NaN for an empty layer (``None``)."""
    bounds = info.get("total_bounds")
    if bounds is None:
        return (math.nan,) * 4
    x0, y0, x1, y1 = (float(b) for b in bounds)
    return x0, y0, x1, y1


def _is_parquet(path: str) -> bool:
    return Path(path).suffix.lower() in (".parquet", ".geoparquet")


def _read_parquet(path: str, columns: list[str] | None) -> Any:
    import geopandas as gpd

    try:
        return gpd.read_parquet(path, columns=columns)
    except (OSError, ValueError) as exc:
        raise RasterReadError(
            f"{path}: not a readable GeoParquet file ({exc}): pass a vector file"
        ) from None


def column_in(names: list[str], spec: VectorField) -> str | None:
    """``spec.field`` or its Shapefile spelling (``f_code``) if among ``names``."""
    from geoseg.export import SHAPEFILE_FIELDS

    return next((n for n in (spec.field, SHAPEFILE_FIELDS.get(spec.field)) if n in names), None)


def _class_column(path: str, names: list[str], spec: VectorField, layer: str) -> str:
    """The attribute to read (see :func:`column_in`), or a one-line error."""
    if (column := column_in(names, spec)) is not None:
        return column
    raise RasterFormatError(
        f"{path}: layer {layer!r} has no attribute {spec.field!r}; its attributes are "
        f"{', '.join(map(repr, names)) or 'none'}: set {spec.option} to the one that "
        "holds the class codes or names"
    )


def _check_crs(
    path: str,
    file_crs: Any,
    crs: Any,
    what: str,
    target: str | Path,
    target_path: str | Path | None = None,
) -> None:
    """Refuse a CRS on one side only: there is no telling where the features lie."""
    if file_crs is None and crs is not None:
        raise RasterFormatError(
            f"{path}: {what} features have no CRS, so they cannot be placed on {target} "
            f"(in {crs}): assign the file its CRS (ogr2ogr -a_srs EPSG:NNNN OUT.gpkg {path})"
        )
    if file_crs is not None and crs is None:
        raise RasterFormatError(
            f"{path}: {what} features are in {file_crs}, but {target} has no CRS, so "
            f"they cannot be placed on it: assign it its CRS "
            f"({fixes.assign_crs(target_path if target_path is not None else 'IMAGE')}), "
            "or give features in its pixel coordinates, without a CRS"
        )


def _footprint(
    width: int, height: int, crs: Any, transform: Affine, file_crs: Any
) -> tuple[float, float, float, float]:
    """The grid's bounds ``(x0, y0, x1, y1)`` in the file's CRS."""
    from rasterio.warp import transform_bounds

    xs, ys = zip(
        *(transform @ c for c in ((0, 0), (width, 0), (0, height), (width, height))), strict=True
    )
    bounds = (min(xs), min(ys), max(xs), max(ys))
    if file_crs is not None and crs is not None and file_crs != crs:
        bounds = transform_bounds(crs, file_crs, *bounds, densify_pts=21)
    return bounds


def _widened(
    bounds: tuple[float, float, float, float], share: float
) -> tuple[float, float, float, float]:
    """``bounds`` with ``share`` of their width and height added on each side."""
    x0, y0, x1, y1 = bounds
    dx, dy = (x1 - x0) * share, (y1 - y0) * share
    return x0 - dx, y0 - dy, x1 + dx, y1 + dy


def _to_pixels(
    geoms: np.ndarray,
    file_crs: Any,
    crs: Any,
    transform: Affine,
    area: tuple[float, ...],
    size: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Features on the grid, in its pixel coordinates, and their positions in ``geoms``.

    The features are clipped to ``area`` (the grid's footprint in the file's CRS, with a
    margin), reprojected to the grid's CRS and turned into pixel coordinates (x =
    column, y = row); those whose inside does not meet the grid are left out. So are
    features that do not survive the reprojection (coordinates outside the file CRS's
    valid range), with a warning that counts them.
    """
    import shapely

    index = np.flatnonzero(~_empty(geoms))
    geoms = geoms[index]
    # an invalid polygon (a hole outside its shell) would burn one way in a block that
    # sees its shell and another in one that does not: repaired first, as GIS tools do
    broken = ~shapely.is_valid(geoms)
    if broken.any():
        geoms = geoms.copy()
        geoms[broken] = shapely.make_valid(geoms[broken])
        log.info("%d invalid geometries repaired (make_valid)", int(broken.sum()))
    geoms = shapely.clip_by_rect(geoms, *area)
    if geoms.size and file_crs is not None and file_crs != crs:
        import geopandas as gpd

        geoms = gpd.GeoSeries(geoms, crs=file_crs).to_crs(crs).to_numpy()
    finite = np.isfinite(shapely.bounds(geoms)).all(axis=1) if geoms.size else np.ones(0, bool)
    lost = ~finite & ~shapely.is_empty(geoms)
    if lost.any():
        warnings.warn(
            f"{int(lost.sum()):,} features cannot be reprojected from {file_crs} to {crs} "
            "(coordinates outside the CRS's valid range) and are left out",
            UnlabelledFeaturesWarning,
            stacklevel=4,
        )
    inverse = ~transform
    a, b, c, d, e, f = inverse.a, inverse.b, inverse.c, inverse.d, inverse.e, inverse.f

    def to_pixel(xy: np.ndarray) -> np.ndarray:
        return np.column_stack([a * xy[:, 0] + b * xy[:, 1] + c, d * xy[:, 0] + e * xy[:, 1] + f])

    geoms, index = geoms[finite], index[finite]
    pixels = shapely.transform(geoms, to_pixel)
    grid = shapely.box(0, 0, *size)
    on = shapely.intersects(pixels, grid) & ~shapely.touches(pixels, grid)
    return pixels[on], index[on]


def _off_grid_message(
    path: str,
    layer: _Layer,
    spec: VectorField,
    what: str,
    target: str | Path,
    area: tuple[float, ...],
) -> str:
    """Why no feature lies on the grid, with the file's extent and the grid's."""
    x0, y0, x1, y1 = layer.bounds
    head = (
        f"{path}: no {what} feature lies on {target}"
        if spec.presence
        else f"{path}: no {what} feature with a {'name' if spec.as_text else 'class'} in "
        f"{spec.field!r} lies on {target}"
    )
    if not all(map(math.isfinite, layer.bounds)):
        kind = "features" if spec.presence else "labelled features"
        return f"{head}: layer {layer.name!r} is empty: pass a layer of {kind}"
    extent = (
        f"in {layer.crs} the layer covers x {x0:.6g}..{x1:.6g}, y {y0:.6g}..{y1:.6g}, the "
        f"image x {area[0]:.6g}..{area[2]:.6g}, y {area[1]:.6g}..{area[3]:.6g}"
    )
    from pyproj import CRS

    geographic = layer.crs is not None and CRS.from_user_input(layer.crs).is_geographic
    if geographic and (max(abs(x0), abs(x1)) > 360 or max(abs(y0), abs(y1)) > 90):
        return (
            f"{head}: {extent}, and {layer.crs} takes longitude/latitude in degrees, which "
            "those coordinates are not (a GeoJSON without a 'crs' member is read as "
            "longitude/latitude): assign the file its CRS "
            f"(ogr2ogr -a_srs EPSG:NNNN OUT.gpkg {path})"
        )
    return f"{head}: {extent}: pass {what} features of the same area (check the file's CRS)"


def _empty(geoms: np.ndarray) -> np.ndarray:
    """Where a feature has no geometry, or an empty one."""
    import shapely

    return shapely.is_missing(geoms) | shapely.is_empty(geoms)


def feature_codes(
    path: str, values: Any, spec: VectorField, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """Each feature's class code as int64 (``-1`` where it has none), and where it is blank.

    Blank classes are partial labels in training (logged); in truth, the features are
    not scored, with a warning (a reference sample only partly labelled).
    """
    import pandas as pd

    if spec.as_text:  # zones: a name or id of any kind, looked up exactly
        texts = zone_text(values)
        lookup = dict(spec.names or {})
        codes = np.array([lookup.get(t, -1) if t else -1 for t in texts.tolist()], np.int64)
        return codes, texts.eq("").to_numpy(dtype=bool)
    missing = values.isna().to_numpy()
    if not pd.api.types.is_numeric_dtype(values.dtype):  # '' is how Shapefiles store none
        blank = values.astype("string").str.strip().eq("").fillna(True)
        missing = missing | blank.to_numpy(dtype=bool)
    if pd.api.types.is_bool_dtype(values.dtype):
        raise RasterFormatError(
            f"{path}: {what} attribute {spec.field!r} is true/false, not a class: set "
            f"{spec.option} to the attribute with the class codes or names"
        )
    if pd.api.types.is_numeric_dtype(values.dtype):
        nums = values.to_numpy(dtype=np.float64, na_value=np.nan)
        given = nums[~missing]
        bad = ~np.isfinite(given) | (given != np.round(given)) | (given < 0) | (given > MAX_CODE)
        if bad.any():
            raise RasterFormatError(
                f"{path}: {what} attribute {spec.field!r} holds {given[bad][0]:g}, which is "
                f"not a class code (codes are whole numbers from 0): set {spec.option} to "
                "the attribute with the class codes"
            )
        codes = np.where(missing, -1, np.nan_to_num(nums, nan=-1)).astype(np.int64)
    else:
        codes = _codes_of_names(path, values.astype("string"), missing, spec, what)
    if missing.any() and not missing.all():
        if what == "truth":
            warnings.warn(
                UnlabelledFeaturesWarning(
                    f"{path}: {int(missing.sum()):,} of {missing.size:,} truth features have "
                    f"no class in {spec.field!r}; they are not scored at that level"
                ),
                stacklevel=3,
            )
        else:  # labelled at the other level only, as partial labels may be
            log.info(
                "%s: %d of %d %s features have no %r: unlabelled at that level",
                path,
                int(missing.sum()),
                missing.size,
                what,
                spec.field,
            )
    return codes, missing


def zone_text(values: Any) -> Any:
    """A column of zone names or ids as text (``""`` where empty).

    Whole numbers are written without a decimal point, whatever their column's type.

    Examples
    --------
    >>> import pandas as pd
    >>> zone_text(pd.Series([12345678901.0, -3, 1.5, None])).tolist()
    ['12345678901', '-3', '1.5', '']
    >>> zone_text(pd.Series([" Süd ", None])).tolist()
    ['Süd', '']
    """
    import pandas as pd

    def one(v: Any) -> str:
        if v is None or (isinstance(v, float) and not np.isfinite(v)) or v is pd.NA:
            return ""
        if isinstance(v, float | np.floating) and float(v).is_integer():
            return str(int(v))
        return str(v).strip()

    return pd.Series([one(v) for v in values.tolist()], index=values.index, dtype=object)


def _text_code(text: str) -> int | None:
    """A class code written as text ("41", "41.0"), else None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() and 0 <= value <= MAX_CODE else None


def _codes_of_names(
    path: str, values: Any, missing: np.ndarray, spec: VectorField, what: str
) -> np.ndarray:
    """Codes of a text attribute: class names (exact, else ignoring case) or numbers."""
    exact = dict(spec.names or {})
    folded: dict[str, int | None] = {}
    for name, code in exact.items():
        key = name.strip().casefold()
        folded[key] = code if folded.get(key, code) == code else None
    codes = np.full(len(values), -1, dtype=np.int64)
    unknown: Counter[str] = Counter()
    shared: set[str] = set()
    for i, text in enumerate(values.to_numpy(dtype=object, na_value=None)):
        if missing[i]:
            continue
        text = str(text)
        code = exact[text] if text in exact else folded.get(text.strip().casefold(), -1)
        if code is None:
            shared.add(text)
        elif code >= 0:
            codes[i] = code
        elif (number := _text_code(text)) is not None:
            codes[i] = number
        else:
            unknown[text] += 1
    if shared:
        raise RasterFormatError(
            f"{path}: {what} classes {', '.join(map(repr, sorted(shared)))} name several "
            "classes of the taxonomy's level: give those features codes instead of names"
        )
    if unknown:
        hint = ""
        if spec.other_level is not None:
            other, names = spec.other_level
            folded_other = {n.strip().casefold() for n in names}
            theirs = [n for n in unknown if n.strip().casefold() in folded_other]
            if theirs:
                which = (
                    "they are"
                    if len(theirs) == len(unknown)
                    else f"{len(theirs)} of those {len(unknown)} names are"
                )
                hint = (
                    f" ({which} {other} classes of the taxonomy: is {spec.field!r} the "
                    f"{other} attribute? set {spec.option} to this level's)"
                )
        warnings.warn(
            UnlabelledFeaturesWarning(
                unknown_names_message(path, unknown, spec.field, what, hint),
                path=path,
                field=spec.field,
                names=dict(unknown),
                hint=hint,
                what=what,
            ),
            stacklevel=4,
        )
    return codes
