"""Vector labels: features with a class attribute, burnt onto an image's grid.

Analysts digitise training areas and reference samples as polygons (or points, or
lines) in QGIS, and a geoseg export edited by hand is such a file too. This module
reads one layer of a vector file (GeoPackage, Shapefile, GeoJSON, FlatGeobuf,
GeoParquet...) and offers it as a one-band raster of class codes on a target grid,
read a window at a time like a rasterio dataset (``read(1, window=...)``), so that
training (:func:`geoseg.labelled.label_rows`) and evaluation read it as they read
label rasters, and memory follows the window, not the scene.

A pixel takes the class of the features that cover its centre (points and lines: the
pixels they touch, as GDAL burns them). Pixels no feature covers are unlabelled, and
so are pixels where features of different classes overlap (counted, and warned of when
the labels are closed).
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np
from affine import Affine

from geoseg.errors import (
    InconsistentLabelsWarning,
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
    {".gpkg", ".shp", ".geojson", ".json", ".fgb", ".parquet", ".geoparquet", ".gml", ".kml"}
)

#: The code of an unlabelled pixel in what :meth:`VectorLabels.read` returns.
NODATA = -1


def is_vector(path: str | Path) -> bool:
    """Whether ``path`` names a vector file (by its ending), not a raster.

    Examples
    --------
    >>> is_vector("labels/fields.GPKG"), is_vector("labels.tif")
    (True, False)
    """
    return Path(str(path)).suffix.lower() in VECTOR_SUFFIXES


@dataclass(frozen=True)
class VectorField:
    """Where a vector file keeps its class codes.

    Attributes
    ----------
    field : str
        The attribute holding each feature's class: an integer code, a whole number
        stored as a real, or a class name (text) of the taxonomy's level.
    option : str
        How the user names another attribute (``coarse_field``, ``--fine-field``), for
        errors.
    layer : str, optional
        The layer to read (default: the file's first layer with geometries).
    names : Mapping of str to int, optional
        Class name -> code, for a text attribute (see
        :meth:`geoseg.taxonomy.Taxonomy.codes_by_name`).
    """

    field: str
    option: str
    layer: str | None = None
    names: Mapping[str, int | None] | None = None


def level_field(
    vector: Mapping[str, VectorField] | None, level: str, taxonomy: Taxonomy
) -> VectorField | None:
    """``vector[level]`` with the class names of that level of ``taxonomy``, if given."""
    if vector is None or level not in vector:
        return None
    return dataclasses.replace(vector[level], names=taxonomy.codes_by_name(level))


class VectorLabels:
    """A vector layer's classes as a one-band int32 raster on a grid (see the module).

    Open with :func:`open_vector_labels`. Reading mimics a rasterio dataset's
    ``read(1, window=...)``; ``nodata`` is :data:`NODATA`.
    """

    count = 1
    nodata = NODATA

    def __init__(
        self,
        path: str,
        geometries: np.ndarray,
        codes: np.ndarray,
        *,
        width: int,
        height: int,
        transform: Affine,
    ) -> None:
        from shapely import STRtree

        self.path = path
        self.width, self.height, self.transform = width, height, transform
        self._geoms, self._codes = geometries, codes
        self._tree = STRtree(geometries)
        #: Pixels read so far that features of different classes cover.
        self.clashes = 0

    def read(self, band: int = 1, window: Window | None = None) -> np.ndarray:
        """The class codes of ``window`` (default: the whole grid), ``-1`` unlabelled.

        A window reaching past the grid is cropped to it, as a raster's read crops it.
        """
        from rasterio.features import rasterize
        from rasterio.transform import array_bounds
        from rasterio.windows import Window
        from shapely import box

        if band != 1:
            raise IndexError(f"{self.path}: vector labels have one band, not band {band}")
        whole = Window(0, 0, self.width, self.height)
        win = whole if window is None else window.intersection(whole)  # as a raster crops
        shape = (int(win.height), int(win.width))
        t = self.transform @ Affine.translation(win.col_off, win.row_off)
        south, west, north, east = _corners(array_bounds(*shape, t))
        hits = self._tree.query(box(west, south, east, north))
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

        def burn(features: list[tuple[dict[str, Any], int]]) -> np.ndarray:
            return rasterize(features, out_shape=shape, transform=t, fill=NODATA, dtype="int32")

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
                f"{self.path}: {self.clashes:,} pixels lie under overlapping features of "
                "different classes; they are left unlabelled: remove the overlaps (QGIS: "
                "Vector > Geometry Tools > Check validity, or the Topology Checker)",
                InconsistentLabelsWarning,
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


def _corners(bounds: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """``(south, west, north, east)`` of rasterio's ``array_bounds``, either axis flipped."""
    west, south, east, north = bounds
    return min(south, north), min(west, east), max(south, north), max(west, east)


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
) -> VectorLabels:
    """Read a vector layer's classes for burning onto a grid.

    Parameters
    ----------
    path : str or Path
        The vector file.
    spec : VectorField
        Its class attribute, layer and class names.
    width, height, crs, transform
        The grid (an image's, a prediction's). Features are reprojected to ``crs``;
        a grid and a file without CRS share coordinates (pixel coordinates when the
        grid has no geotransform either).
    what, target : str
        What the file is ("label", "truth") and what the grid is, for errors.

    Raises
    ------
    RasterReadError
        The file is missing or not a readable vector file.
    RasterFormatError
        No such layer or attribute, values that are not class codes, a CRS on one side
        only, or no feature on the grid.

    Warns
    -----
    UnlabelledFeaturesWarning
        Features whose class is a name the taxonomy does not have (left unlabelled;
        features without a class are unlabelled at that level, as partial labels).
    """
    from rasterio.transform import array_bounds

    spath = str(path)
    geometry, values, layer = _read_layer(spath, spec, what)
    geoms = geometry.to_numpy()
    codes = _class_codes(spath, values, spec, what)
    keep = (codes >= 0) & ~_empty(geoms)
    frame_crs = geometry.crs
    geoms, codes = geoms[keep], codes[keep]
    if frame_crs is None and crs is not None:
        raise RasterFormatError(
            f"{spath}: {what} features have no CRS, so they cannot be placed on {target} "
            f"(in {crs}): assign the file its CRS (ogr2ogr -a_srs EPSG:NNNN OUT.gpkg {spath})"
        )
    if frame_crs is not None and crs is None:
        raise RasterFormatError(
            f"{spath}: {what} features are in {frame_crs}, but {target} has no CRS, so "
            "they cannot be placed on it: assign the image its CRS (gdal_edit.py -a_srs), "
            "or give features in its pixel coordinates, without a CRS"
        )
    if geoms.size and frame_crs is not None and frame_crs != crs:
        import geopandas as gpd

        geoms = gpd.GeoSeries(geoms, crs=frame_crs).to_crs(crs).to_numpy()
    south, west, north, east = _corners(array_bounds(height, width, transform))
    if not geoms.size:
        raise RasterFormatError(
            f"{spath}: {what} layer {layer!r} has no feature with a class in "
            f"{spec.field!r}: pass a layer of labelled features"
        )
    import shapely

    x0, y0, x1, y1 = shapely.total_bounds(geoms)
    if x0 > east or x1 < west or y0 > north or y1 < south:
        raise RasterFormatError(
            f"{spath}: {what} features do not overlap {target}: in {crs} they cover x "
            f"{x0:.6g}..{x1:.6g}, y {y0:.6g}..{y1:.6g}, the grid x {west:.6g}..{east:.6g}, "
            f"y {south:.6g}..{north:.6g}: pass {what} of the same area (check its CRS)"
        )
    log.info(
        "%s: %d %s features of layer %r, class from %r", spath, geoms.size, what, layer, spec.field
    )
    return VectorLabels(spath, geoms, codes, width=width, height=height, transform=transform)


def _read_layer(path: str, spec: VectorField, what: str) -> tuple[Any, Any, str]:
    """The layer's geometries (GeoSeries), their class attribute, and the layer's name."""
    import geopandas as gpd
    import pyogrio
    from pyogrio.errors import DataLayerError, DataSourceError

    from geoseg.raster import is_remote

    if not is_remote(path) and not Path(path).exists():
        raise RasterReadError(f"{path}: file not found: check the path")
    if Path(path).suffix.lower() in (".parquet", ".geoparquet"):
        if spec.layer is not None:
            raise RasterFormatError(
                f"{path}: a GeoParquet file has one layer: drop layer {spec.layer!r}"
            )
        try:
            frame = gpd.read_parquet(path)
        except (OSError, ValueError) as exc:
            raise RasterReadError(
                f"{path}: not a readable GeoParquet file ({exc}): pass a vector file"
            ) from None
        layer = Path(path).stem
        names = [c for c in frame.columns if c != frame.geometry.name]
        return frame.geometry, frame[_class_column(path, names, spec, layer)], layer
    try:
        layers = pyogrio.list_layers(path)
    except DataSourceError as exc:
        raise RasterReadError(
            f"{path}: not a readable vector file ({str(exc).splitlines()[0]}): pass a "
            "GeoPackage, Shapefile, GeoJSON or FlatGeobuf"
        ) from None
    spatial = [str(name) for name, kind in layers if kind is not None]
    layer = spec.layer
    if layer is None:
        if not spatial:
            raise RasterFormatError(f"{path}: the file has no layer with geometries")
        layer = spatial[0]
        if len(spatial) > 1:
            log.info(
                "%s: %s read from layer %r of %s (set another layer to change it)",
                path,
                what,
                layer,
                ", ".join(spatial),
            )
    elif layer not in spatial:
        raise RasterFormatError(
            f"{path}: no layer {layer!r} with geometries; its layers are "
            f"{', '.join(map(repr, spatial)) or 'none'}: set one of them as the layer"
        )
    try:
        names = list(pyogrio.read_info(path, layer=layer)["fields"])
        column = _class_column(path, names, spec, layer)
        frame = gpd.read_file(path, layer=layer, columns=[column], engine="pyogrio")
    except (DataSourceError, DataLayerError) as exc:
        raise RasterReadError(
            f"{path}: layer {layer!r} cannot be read ({str(exc).splitlines()[0]}): "
            "re-export the file"
        ) from None
    return frame.geometry, frame[column], layer


def _class_column(path: str, names: list[str], spec: VectorField, layer: str) -> str:
    """The attribute to read: ``spec.field``, or its Shapefile spelling (``f_code``)."""
    from geoseg.export import SHAPEFILE_FIELDS

    for name in (spec.field, SHAPEFILE_FIELDS.get(spec.field)):
        if name in names:
            return name
    raise RasterFormatError(
        f"{path}: layer {layer!r} has no attribute {spec.field!r}; its attributes are "
        f"{', '.join(map(repr, names)) or 'none'}: set {spec.option} to the one that "
        "holds the class codes or names"
    )


def _empty(geoms: np.ndarray) -> np.ndarray:
    import shapely

    return shapely.is_missing(geoms) | shapely.is_empty(geoms)


def _class_codes(path: str, values: Any, spec: VectorField, what: str) -> np.ndarray:
    """Each feature's class code as int64, ``-1`` where it has none."""
    import pandas as pd

    missing = values.isna().to_numpy()
    if pd.api.types.is_bool_dtype(values.dtype):
        raise RasterFormatError(
            f"{path}: {what} attribute {spec.field!r} is true/false, not a class: set "
            f"{spec.option} to the attribute with the class codes or names"
        )
    if pd.api.types.is_numeric_dtype(values.dtype):
        nums = values.to_numpy(dtype=np.float64, na_value=np.nan)
        given = nums[~missing]
        bad = (given != np.round(given)) | (given < 0) | ~np.isfinite(given)
        if bad.any():
            raise RasterFormatError(
                f"{path}: {what} attribute {spec.field!r} holds {given[bad][0]:g}, which is "
                f"not a class code (codes are whole numbers from 0): set {spec.option} to "
                "the attribute with the class codes"
            )
        codes = np.where(missing, -1, np.nan_to_num(nums, nan=-1)).astype(np.int64)
    else:
        codes = _codes_of_names(path, values.astype("string"), missing, spec, what)
    if missing.any():  # labelled at the other level only, as partial labels may be
        log.info(
            "%s: %d of %d %s features have no %r: unlabelled at that level",
            path,
            int(missing.sum()),
            missing.size,
            what,
            spec.field,
        )
    return codes


def _codes_of_names(
    path: str, values: Any, missing: np.ndarray, spec: VectorField, what: str
) -> np.ndarray:
    """Codes of a text attribute: class names (exact, else ignoring case) or digits."""
    exact = dict(spec.names or {})
    folded: dict[str, int | None] = {}
    for name, code in exact.items():
        key = name.strip().casefold()
        folded[key] = code if folded.get(key, code) == code else None
    codes = np.full(len(values), -1, dtype=np.int64)
    unknown: dict[str, int] = {}
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
        elif text.strip().isdigit():
            codes[i] = int(text)
        else:
            unknown[text] = unknown.get(text, 0) + 1
    if shared:
        raise RasterFormatError(
            f"{path}: {what} classes {', '.join(map(repr, sorted(shared)))} name several "
            "classes of the taxonomy's level: give those features codes instead of names"
        )
    if unknown:
        listed = ", ".join(f"{k!r} ({n})" for k, n in sorted(unknown.items())[:8])
        more = f" and {len(unknown) - 8} more" if len(unknown) > 8 else ""
        warnings.warn(
            f"{path}: {sum(unknown.values()):,} {what} features name no class of the "
            f"taxonomy in {spec.field!r}: {listed}{more}; they are left unlabelled: correct "
            "the names, add the classes to the taxonomy, or use codes",
            UnlabelledFeaturesWarning,
            stacklevel=4,
        )
    return codes
