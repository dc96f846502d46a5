"""xarray images in, xarray labels out: what :meth:`geoseg.api.Model.predict` needs.

An image opened with ``rioxarray.open_rasterio``, loaded by odc-stac or stackstac, or
built by hand carries its band names, georeferencing and nodata with it. This module
reads them (without importing xarray, which is optional: a caller that has an xarray
object has xarray), and turns labels back into an :class:`xarray.Dataset` on the
image's own coordinates, georeferenced as rioxarray and CF readers expect (a
``spatial_ref`` grid-mapping variable) and with the class names as CF flags.

The conventions read:

- spatial dims named ``y``/``x`` (or ``lat``/``latitude``, ``lon``/``longitude``); one
  more dim is the bands; other dims of size 1 are dropped, larger ones refused;
- band names: a text coordinate of the band dim (stackstac, ``to_dataarray``), else
  rioxarray's ``long_name`` attribute (its band descriptions, looked up by the band
  coordinate's 1-based file band numbers, so that a selection of bands keeps its names),
  else none (the bands are the model's, in order); an :class:`xarray.Dataset`'s data
  variables are its bands, named by variable (rioxarray's ``band_K`` by ``long_name``);
- the transform from evenly spaced 1-D coordinates of pixel centres, else a grid-mapping
  variable's ``GeoTransform`` (GDAL order);
- the CRS from the grid-mapping variable (``crs_wkt`` / ``spatial_ref``, as rioxarray,
  odc-stac and GDAL's netCDF driver write it), an ``epsg`` coordinate (stackstac) or a
  ``crs`` attribute;
- nodata from ``_FillValue`` / ``nodata`` / ``missing_value`` attributes or encoding, per
  band; NaN is always missing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from geoseg.errors import ConfigError, GeosegWarning

#: Names of the spatial dims, as rioxarray looks for them.
Y_DIMS = ("y", "lat", "latitude")
X_DIMS = ("x", "lon", "longitude")
#: Names of a dim that holds the bands.
BAND_DIMS = ("band", "bands", "variable", "channel", "channels")
#: Names of a dim that never holds the bands (a time series is refused, not read as bands).
TIME_DIMS = ("time", "t", "date", "dates")
#: Attributes (or encodings) that give a band's nodata value, in the order read.
NODATA_KEYS = ("_FillValue", "nodata", "missing_value")
#: Relative tolerance on the spacing of coordinates taken as evenly spaced.
SPACING_TOLERANCE = 1e-6


@dataclasses.dataclass(frozen=True, eq=False)
class XarrayImage:
    """An xarray image as :meth:`geoseg.api.Model.predict` takes it.

    Attributes
    ----------
    data : numpy.ndarray or dask.array.Array
        ``(bands, height, width)`` values (a Dask-backed image's Dask array, unless
        computed).
    band_names : tuple of (str or None), or None
        One name per band, ``None`` for a band without one; ``None`` where no band has a
        name.
    nodata : tuple of (float or None)
        Per-band nodata values.
    transform : affine.Affine or None
        Georeferencing of the pixels' corners, when the coordinates give it.
    crs : rasterio.crs.CRS or None
        The image's CRS, when recorded.
    grid : Mapping
        What :func:`to_dataset` puts the labels on: ``dims`` (the y and x dim names) and
        ``coords`` (the coordinates that lie along them or are scalar).
    band_numbers : tuple of int, optional
        Where no band has a name: the band coordinate's integers (rioxarray's 1-based
        band numbers in the file), which tell a selection's order.
    """

    data: np.ndarray
    band_names: tuple[str | None, ...] | None
    nodata: tuple[float | None, ...]
    transform: Any
    crs: Any
    grid: Mapping[str, Any]
    band_numbers: tuple[int, ...] | None = None


def _xarray_kind(obj: Any) -> str | None:
    """``"DataArray"`` or ``"Dataset"`` for an xarray object (xarray is not imported)."""
    for c in type(obj).__mro__:
        if c.__module__.startswith("xarray.") and c.__name__ in ("DataArray", "Dataset"):
            return c.__name__
    return None


def is_xarray(obj: Any) -> bool:
    """Whether ``obj`` is an :class:`xarray.DataArray` or :class:`xarray.Dataset`.

    Tells without importing xarray.

    Examples
    --------
    >>> is_xarray(np.zeros((2, 2)))
    False
    """
    return _xarray_kind(obj) is not None


def read_image(
    obj: Any,
    *,
    compute: bool = True,
    wanted: Sequence[str] | None = None,
    need_transform: bool = True,
    need_crs: bool = True,
) -> XarrayImage:
    """The pixels, band names, georeferencing and nodata of an xarray image.

    Parameters
    ----------
    obj : xarray.DataArray or xarray.Dataset
        Dims ``(band, y, x)`` in any order (``(y, x)`` for one band; other dims of size
        1 are dropped), or a Dataset of ``(y, x)`` bands.
    compute : bool
        Read a Dask-backed image's values (else :attr:`XarrayImage.data` is its Dask
        array).
    wanted : sequence of str, optional
        The bands a model reads: a Dataset that has them all gives only those variables
        (others, a date or a quality flag, are not read), in that order.
    need_transform, need_crs : bool
        Whether to read the transform and the CRS (the caller gives them otherwise).

    Raises
    ------
    ConfigError
        No spatial dims, a dim of size above 1 besides the bands, or a Dataset without
        ``(y, x)`` bands of numbers.
    """
    if _xarray_kind(obj) == "Dataset":
        da, names, nodata = _dataset_bands(obj, wanted)
    else:
        da, names, nodata = obj, None, None
    ydim, xdim = _spatial_dims(da)
    band_dim, da = _band_dim(da, ydim, xdim)
    if band_dim is None:
        scalar = da.coords.get("band")
        name = scalar.item() if scalar is not None and scalar.size == 1 else None
        band_dim = "band"
        da = da.drop_vars("band", errors="ignore").expand_dims(band_dim)
        if names is None and isinstance(name, str) and name:  # image.sel(band="B5")
            names = [name]
    da = da.transpose(band_dim, ydim, xdim)
    count = da.sizes[band_dim]
    if names is None:
        names = _band_names(da, band_dim, count)
    if nodata is None:
        nodata = [_nodata(da)] * count
    coords = {
        str(name): c.variable
        for name, c in da.coords.items()
        if name != band_dim and set(c.dims) <= {ydim, xdim}
    }
    unnamed = all(n is None for n in names)
    numbers = None
    coord = da.coords.get(band_dim)
    if unnamed and coord is not None and coord.dtype.kind in "iu" and coord.ndim == 1:
        numbers = tuple(int(v) for v in coord.values)
    return XarrayImage(
        data=np.asarray(da.data) if compute else da.data,
        band_names=None if unnamed else tuple(names),
        band_numbers=numbers,
        nodata=tuple(nodata),
        transform=_transform(da, ydim, xdim) if need_transform else None,
        crs=_crs(da) if need_crs else None,
        grid={"dims": (ydim, xdim), "coords": coords},
    )


def _dataset_bands(
    ds: Any, wanted: Sequence[str] | None
) -> tuple[Any, list[str | None], list[float | None]]:
    """A Dataset's ``(y, x)`` variables of numbers stacked as bands, their names and nodata.

    Only the ``wanted`` bands, in that order, where the Dataset has them all.
    """
    from geoseg.raster import name_position

    variables = [
        name
        for name, v in ds.data_vars.items()
        if _has_spatial_dims(v.dims) and v.dtype.kind in "uif"
    ]
    if not variables:
        raise ConfigError(
            f"the Dataset has no data variable of numbers with y and x dims (variables: "
            f"{', '.join(map(str, ds.data_vars)) or 'none'}): pass a DataArray (band, y, x) "
            "or a Dataset of one variable per band"
        )
    names: list[str] = []
    for name in variables:
        long_name = ds[name].attrs.get("long_name")
        rio_band = re.fullmatch(r"band_[1-9][0-9]*", str(name))  # band_as_variable=True
        names.append(long_name if rio_band and isinstance(long_name, str) else str(name))
    found = [name_position(names, w) for w in wanted or ()]
    if wanted and all(i is not None for i in found):  # the model's bands, in its order
        variables = [variables[i] for i in found if i is not None]
        names = [names[i] for i in found if i is not None]
    bands = []
    for name in variables:
        v = ds[name]
        ydim, xdim = _spatial_dims(v)
        extra = [d for d in v.dims if d not in (ydim, xdim)]
        large = [f"{d}: {v.sizes[d]}" for d in extra if v.sizes[d] > 1]
        if large:
            raise ConfigError(
                f"the Dataset's variable {name} has dims ({', '.join(large)}) besides y and "
                "x, and each variable is one band: select one, e.g. "
                f"image.isel({large[0].split(':')[0]}=0)"
            )
        v = v.squeeze(extra) if extra else v  # a time step's coordinate stays
        bands.append(v.drop_vars([c for c in BAND_DIMS if c in v.coords and v[c].ndim == 0]))
    import xarray as xr  # a Dataset was given: xarray is there

    try:
        stacked = xr.concat(bands, dim="band", coords="minimal", compat="override")
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"the Dataset's bands {', '.join(map(str, variables))} cannot be stacked "
            f"({str(exc).splitlines()[0]}): pass them on one grid, or a DataArray"
        ) from None
    stacked.attrs = {}
    first = ds[variables[0]]
    mapping = first.attrs.get("grid_mapping") or first.encoding.get("grid_mapping")
    if mapping:  # where the Dataset keeps its CRS (GDAL netCDF: transverse_mercator...)
        stacked.attrs["grid_mapping"] = mapping
    crs = ds.attrs.get("crs", first.attrs.get("crs"))
    if crs is not None:
        stacked.attrs["crs"] = crs
    return stacked, list(names), [_nodata(ds[name]) for name in variables]


def _has_spatial_dims(dims: Sequence[Any]) -> bool:
    return any(d in Y_DIMS for d in dims) and any(d in X_DIMS for d in dims)


def _spatial_dims(da: Any) -> tuple[str, str]:
    """The names of the y and x dims."""
    ys = [d for d in da.dims if d in Y_DIMS]
    xs = [d for d in da.dims if d in X_DIMS]
    if len(ys) != 1 or len(xs) != 1:
        dims = [str(d) for d in da.dims]
        guess = dims[-2:] if len(dims) >= 2 else ["rows", "cols"]  # (..., rows, cols) order
        raise ConfigError(
            f"the image has dims ({', '.join(dims)}), and one y dim "
            f"({' / '.join(Y_DIMS)}) and one x dim ({' / '.join(X_DIMS)}) are needed: "
            f"rename them, e.g. image.rename({{{guess[0]!r}: 'y', {guess[1]!r}: 'x'}})"
        )
    return str(ys[0]), str(xs[0])


def _band_dim(da: Any, ydim: str, xdim: str) -> tuple[str | None, Any]:
    """The name of the bands' dim (``None`` for a 2-D image), and ``da`` without other dims.

    The bands' dim is one named like bands (``band``...) or with a text coordinate
    (band names), else the one dim besides y and x unless it is named like a time; any
    other dim must be of size 1 (a time step) and is dropped.
    """
    others = [str(d) for d in da.dims if d not in (ydim, xdim)]

    def texts(d: str) -> bool:
        c = da.coords.get(d)
        return c is not None and c.dtype.kind in "UO"

    named = [d for d in others if d in BAND_DIMS or texts(d)]
    band: str | None = None
    if len(named) == 1:
        band = named[0]
    elif not named and len(others) == 1 and others[0].lower() not in TIME_DIMS:
        band = others[0]
    elif len(named) > 1:
        band = next((d for d in named if d in BAND_DIMS), named[0])
    rest = [d for d in others if d != band]
    too_large = [d for d in rest if da.sizes[d] > 1]
    if too_large:
        sizes = ", ".join(f"{d}: {da.sizes[d]}" for d in others)
        raise ConfigError(
            f"the image has dims ({sizes}) besides y and x, and the model labels one image "
            f"of bands: select one, e.g. image.isel({too_large[0]}=0)"
        )
    return band, da.squeeze(rest) if rest else da


def _band_names(da: Any, band_dim: str | None, count: int) -> list[str | None]:
    """One name per band, ``None`` where the image gives none."""
    coord = da.coords.get(band_dim) if band_dim is not None else None
    values = None if coord is None else np.atleast_1d(coord.values)
    if values is not None and values.dtype.kind in "UO":
        return [str(v) if str(v) else None for v in values]
    long_name = da.attrs.get("long_name")
    if isinstance(long_name, str):
        long_name = (long_name,)
    if not isinstance(long_name, list | tuple):
        return [None] * count
    if values is not None and values.dtype.kind in "iu":  # rioxarray's 1-based band numbers
        if all(1 <= int(v) <= len(long_name) for v in values):
            return [str(long_name[int(v) - 1]) or None for v in values]
        return [None] * count
    return [str(n) or None for n in long_name] if len(long_name) == count else [None] * count


def _nodata(da: Any) -> float | None:
    """A band's nodata value from its attributes or encoding (``None`` without one).

    The encoding's is the stored values' and counts only for values read as stored:
    data decoded (``mask_and_scale=True``) has NaN where it was, and a valid value may
    decode to it.
    """
    enc = da.encoding
    decoded = any(k in enc for k in ("scale_factor", "add_offset")) or (
        "dtype" in enc and np.dtype(enc["dtype"]) != da.dtype
    )
    for source in (da.attrs,) if decoded else (da.attrs, da.encoding):
        for key in NODATA_KEYS:
            value = source.get(key)
            if isinstance(value, np.ndarray) and value.size == 1:
                value = value.item()
            if isinstance(value, int | float | np.number) and not isinstance(value, bool):
                return float(value)
    return None


def _regular_axis(values: np.ndarray) -> tuple[float, float] | None:
    """``(start, step)`` of evenly spaced pixel centres, or ``None``.

    Evenly spaced to the coordinates' own precision (float32 coordinates of arc-seconds
    are not spaced to a millionth of a step).
    """
    if values.ndim != 1 or values.size < 2 or values.dtype.kind not in "iuf":
        return None
    v = values.astype(np.float64)
    step = (v[-1] - v[0]) / (v.size - 1)
    eps = np.finfo(values.dtype).eps if values.dtype.kind == "f" else 0.0
    tolerance = max(SPACING_TOLERANCE * abs(step), 4 * eps * float(np.abs(v).max()))
    if step == 0 or np.abs(v - (v[0] + step * np.arange(v.size))).max() > tolerance:
        return None
    return float(v[0]), float(step)


def _transform(da: Any, ydim: str, xdim: str) -> Any:
    """The pixels' geotransform (corners), from the coordinates or a ``GeoTransform``.

    Evenly spaced coordinates give it; an axis of one pixel takes its step from the grid
    mapping's ``GeoTransform`` and its place from its coordinate (rioxarray leaves the
    ``GeoTransform`` of the whole image on a crop); without coordinates, the
    ``GeoTransform`` is the image's.
    """
    from affine import Affine

    mapping = _grid_mapping(da)
    text = None if mapping is None else mapping.attrs.get("GeoTransform")
    gt = None
    if isinstance(text, str):
        with contextlib.suppress(ValueError):
            c, a, b, f, d, e = (float(v) for v in text.split())
            gt = Affine(a, b, c, d, e, f)
    axes: dict[str, tuple[float, float] | None] = {}
    uneven = []
    for name, step_of in ((xdim, "a"), (ydim, "e")):
        coord = da.coords.get(name)
        if coord is None:
            axes[name] = None
            continue
        values = np.asarray(coord.values)
        axes[name] = _regular_axis(values)
        if axes[name] is None and values.size == 1 and gt is not None and gt.b == gt.d == 0:
            axes[name] = (float(values[0]), float(getattr(gt, step_of)))
        elif axes[name] is None and values.size > 1:
            uneven.append(name)
    x, y = axes[xdim], axes[ydim]
    if x is not None and y is not None:
        (x0, dx), (y0, dy) = x, y
        return Affine(dx, 0.0, x0 - dx / 2, 0.0, dy, y0 - dy / 2)
    if uneven:
        warnings.warn(
            f"the image's {' and '.join(uneven)} coordinates are not evenly spaced: the labels "
            "are not georeferenced (resample the image onto a regular grid, e.g. with "
            "rioxarray's reproject, or pass transform=)",
            GeosegWarning,
            stacklevel=5,
        )
        return None
    if da.coords.get(xdim) is None and da.coords.get(ydim) is None:
        return gt  # no coordinates: the grid mapping's, if any
    return None


def _grid_mapping(da: Any) -> Any:
    """The CF grid-mapping variable (``spatial_ref``), or ``None``."""
    name = da.encoding.get("grid_mapping") or da.attrs.get("grid_mapping") or "spatial_ref"
    return da.coords.get(name)


def _crs(da: Any) -> Any:
    """The image's CRS, where it is recorded."""
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    mapping = _grid_mapping(da)
    candidates: list[Any] = []
    if mapping is not None:
        candidates += [mapping.attrs.get("crs_wkt"), mapping.attrs.get("spatial_ref")]
    epsg = da.coords.get("epsg")
    if epsg is not None and epsg.size == 1:
        candidates.append(f"EPSG:{int(epsg.values)}")
    candidates.append(da.attrs.get("crs"))
    for value in candidates:
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        try:
            return CRS.from_user_input(value)
        except CRSError as exc:
            raise ConfigError(
                f"the image's CRS {str(value)[:80]!r} is not one rasterio reads ({exc}): pass crs="
            ) from None
    return None


def to_dataset(
    layers: Mapping[str, np.ndarray],
    *,
    attrs: Mapping[str, Mapping[str, Any]],
    grid: Mapping[str, Any] | None,
    transform: Any,
    crs: Any,
    probabilities: tuple[np.ndarray, Mapping[str, Sequence[Any]]] | None = None,
    dataset_attrs: Mapping[str, Any] | None = None,
) -> Any:
    """Labels as an :class:`xarray.Dataset` on the image's grid.

    Parameters
    ----------
    layers : Mapping
        Variable name -> ``(height, width)`` array.
    attrs : Mapping
        Variable name -> its attributes.
    grid : Mapping, optional
        :attr:`XarrayImage.grid` of the image labelled; without it the dims are ``y``,
        ``x``, with pixel-centre coordinates from ``transform`` where given.
    transform, crs : optional
        Written to a ``spatial_ref`` grid-mapping variable, as rioxarray writes it (the
        image's own grid mapping is replaced).
    probabilities : tuple, optional
        ``(array, class coordinates)``: a ``(class, height, width)`` variable.
    dataset_attrs : Mapping, optional
        The Dataset's attributes.
    """
    import xarray as xr

    height, width = next(iter(layers.values())).shape
    if grid is not None:
        ydim, xdim = grid["dims"]
        coords = dict(grid["coords"])
    else:
        ydim, xdim = "y", "x"
        coords = {}
        if transform is not None and transform.b == 0 and transform.d == 0:
            coords[xdim] = transform.c + transform.a * (np.arange(width) + 0.5)
            coords[ydim] = transform.f + transform.e * (np.arange(height) + 0.5)
    for name in [n for n, c in coords.items() if _is_grid_mapping(c)]:
        del coords[name]  # replaced by the labels' own (the caller's crs= wins)
    mapping = ""
    if crs is not None or transform is not None:
        mapping = "spatial_ref"
        coords[mapping] = xr.Variable((), 0, _grid_mapping_attrs(transform, crs))
    variables = {}
    for name, array in layers.items():
        extra = {"grid_mapping": mapping} if mapping else {}
        variables[name] = xr.Variable((ydim, xdim), array, {**attrs.get(name, {}), **extra})
    if probabilities is not None:
        array, class_coords = probabilities
        extra = {"grid_mapping": mapping} if mapping else {}
        variables["probabilities"] = xr.Variable(
            ("class", ydim, xdim), array, {**attrs.get("probabilities", {}), **extra}
        )
        for key, values in class_coords.items():
            coords[key] = ("class", list(values))
    return xr.Dataset(variables, coords=coords, attrs=dict(dataset_attrs or {}))


def _is_grid_mapping(variable: Any) -> bool:
    """Whether a coordinate is a CF grid-mapping variable."""
    attrs = getattr(variable, "attrs", {})
    return bool({"crs_wkt", "spatial_ref", "GeoTransform", "grid_mapping_name"} & set(attrs))


def _grid_mapping_attrs(transform: Any, crs: Any) -> dict[str, Any]:
    """The attributes of a ``spatial_ref`` variable, as rioxarray writes them."""
    out: dict[str, Any] = {}
    if crs is not None:
        import pyproj
        from rasterio.crs import CRS

        wkt = CRS.from_user_input(crs).to_wkt()
        # CF's own parameters (grid_mapping_name...), for CF readers, where pyproj has them
        with contextlib.suppress(KeyError, pyproj.exceptions.CRSError):
            out.update(pyproj.CRS.from_wkt(wkt).to_cf())
        out.update(crs_wkt=wkt, spatial_ref=wkt)  # spatial_ref: GDAL's name for it
    if transform is not None:
        out["GeoTransform"] = " ".join(repr(float(v)) for v in transform.to_gdal())
    return out
