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
#: Names of a dim that holds the bands, where there are several besides y and x.
BAND_DIMS = ("band", "bands", "variable", "channel", "channels")
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
    """

    data: np.ndarray
    band_names: tuple[str | None, ...] | None
    nodata: tuple[float | None, ...]
    transform: Any
    crs: Any
    grid: Mapping[str, Any]


def is_xarray(obj: Any) -> bool:
    """Whether ``obj`` is an :class:`xarray.DataArray` or :class:`xarray.Dataset`.

    Tells without importing xarray.

    Examples
    --------
    >>> is_xarray(np.zeros((2, 2)))
    False
    """
    return any(
        c.__module__.startswith("xarray.") and c.__name__ in ("DataArray", "Dataset")
        for c in type(obj).__mro__
    )


def read_image(obj: Any, *, compute: bool = True) -> XarrayImage:
    """The pixels, band names, georeferencing and nodata of an xarray image.

    Parameters
    ----------
    obj : xarray.DataArray or xarray.Dataset
        Dims ``(band, y, x)`` in any order (``(y, x)`` for one band; other dims of size
        1 are dropped), or a Dataset of ``(y, x)`` bands.
    compute : bool
        Read a Dask-backed image's values (else :attr:`XarrayImage.data` is its Dask
        array).

    Raises
    ------
    ConfigError
        No spatial dims, a dim of size above 1 besides the bands, or a Dataset without
        ``(y, x)`` data variables.
    """
    if _is_dataset(obj):
        da, names, nodata = _dataset_bands(obj)
    else:
        da, names, nodata = obj, None, None
    ydim, xdim = _spatial_dims(da)
    band_dim, da = _band_dim(da, ydim, xdim)
    if band_dim is None:
        band_dim = "band"
        da = da.expand_dims(band_dim)
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
    return XarrayImage(
        data=np.asarray(da.data) if compute else da.data,
        band_names=None if all(n is None for n in names) else tuple(names),
        nodata=tuple(nodata),
        transform=_transform(da, ydim, xdim),
        crs=_crs(da),
        grid={"dims": (ydim, xdim), "coords": coords},
    )


def _is_dataset(obj: Any) -> bool:
    return any(
        c.__module__.startswith("xarray.") and c.__name__ == "Dataset" for c in type(obj).__mro__
    )


def _dataset_bands(ds: Any) -> tuple[Any, list[str | None], list[float | None]]:
    """A Dataset's ``(y, x)`` data variables stacked as bands, their names and nodata."""
    variables = [name for name, v in ds.data_vars.items() if _has_spatial_dims(v.dims)]
    if not variables:
        raise ConfigError(
            f"the Dataset has no data variable with y and x dims (variables: "
            f"{', '.join(map(str, ds.data_vars)) or 'none'}): pass a DataArray (band, y, x) "
            "or a Dataset of one variable per band"
        )
    names: list[str | None] = []
    for name in variables:
        long_name = ds[name].attrs.get("long_name")
        rio_band = re.fullmatch(r"band_[1-9][0-9]*", str(name))  # band_as_variable=True
        names.append(long_name if rio_band and isinstance(long_name, str) else str(name))
    nodata = [_nodata(ds[name]) for name in variables]
    stacked = ds[variables].to_dataarray(dim="band")
    for name in NODATA_KEYS:  # the Dataset's first variable's, not the bands'
        stacked.attrs.pop(name, None)
    return stacked, names, nodata


def _has_spatial_dims(dims: Sequence[Any]) -> bool:
    return any(d in Y_DIMS for d in dims) and any(d in X_DIMS for d in dims)


def _spatial_dims(da: Any) -> tuple[str, str]:
    """The names of the y and x dims."""
    ys = [d for d in da.dims if d in Y_DIMS]
    xs = [d for d in da.dims if d in X_DIMS]
    if len(ys) != 1 or len(xs) != 1:
        raise ConfigError(
            f"the image has dims ({', '.join(map(str, da.dims))}), and one y dim "
            f"({' / '.join(Y_DIMS)}) and one x dim ({' / '.join(X_DIMS)}) are needed: "
            "rename them, e.g. image.rename({'rows': 'y', 'cols': 'x'})"
        )
    return str(ys[0]), str(xs[0])


def _band_dim(da: Any, ydim: str, xdim: str) -> tuple[str | None, Any]:
    """The name of the bands' dim (``None`` for a 2-D image), and ``da`` without other dims.

    A dim named like bands (``band``...) is the bands' dim, else the one other dim, else
    the one other dim of size above 1; the rest must be of size 1 (a time step, say).
    """
    others = [str(d) for d in da.dims if d not in (ydim, xdim)]
    named = [d for d in others if d in BAND_DIMS]
    large = [d for d in others if da.sizes[d] > 1]
    band: str | None
    if len(named) == 1:
        band = named[0]
    elif len(others) <= 1:
        band = others[0] if others else None
    else:
        band = large[0] if len(large) == 1 else others[0]
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
    """A band's nodata value from its attributes or encoding (``None`` without one)."""
    for source in (da.attrs, da.encoding):
        for key in NODATA_KEYS:
            value = source.get(key)
            if isinstance(value, np.ndarray) and value.size == 1:
                value = value.item()
            if isinstance(value, int | float | np.number) and not isinstance(value, bool):
                return float(value)
    return None


def _regular_axis(values: np.ndarray) -> tuple[float, float] | None:
    """``(start, step)`` of evenly spaced pixel centres, or ``None``."""
    if values.ndim != 1 or values.size < 2 or values.dtype.kind not in "iuf":
        return None
    steps = np.diff(values.astype(np.float64))
    step = float(steps.mean())
    if step == 0 or np.abs(steps - step).max() > SPACING_TOLERANCE * abs(step):
        return None
    return float(values[0]), step


def _transform(da: Any, ydim: str, xdim: str) -> Any:
    """The pixels' geotransform (corners), from the coordinates or a ``GeoTransform``."""
    from affine import Affine

    ys = da.coords.get(ydim)
    xs = da.coords.get(xdim)
    y = None if ys is None else _regular_axis(np.asarray(ys.values))
    x = None if xs is None else _regular_axis(np.asarray(xs.values))
    if y is not None and x is not None:
        (y0, dy), (x0, dx) = y, x
        return Affine(dx, 0.0, x0 - dx / 2, 0.0, dy, y0 - dy / 2)
    mapping = _grid_mapping(da)
    text = None if mapping is None else mapping.attrs.get("GeoTransform")
    if isinstance(text, str):
        try:
            c, a, b, f, d, e = (float(v) for v in text.split())
        except ValueError:
            pass
        else:
            return Affine(a, b, c, d, e, f)
    uneven = [
        name
        for name, c in ((ydim, ys), (xdim, xs))
        if c is not None and c.size > 1 and (y if name == ydim else x) is None
    ]
    if uneven:
        warnings.warn(
            f"the image's {' and '.join(uneven)} coordinates are not evenly spaced: the labels "
            "are not georeferenced (resample the image onto a regular grid, e.g. with "
            "rioxarray's reproject, or pass transform=)",
            GeosegWarning,
            stacklevel=4,
        )
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
    return xr.Dataset(variables, coords=coords)


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
