"""xarray images in Model.predict and Prediction.to_xarray (geoseg.xarray_image)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from geoseg import api
from geoseg.errors import ConfigError, GeosegError, GeosegWarning
from geoseg.xarray_image import is_xarray, read_image

from .conftest import ZION_BUNDLE, shared_file

xr = pytest.importorskip("xarray", reason="xarray is not installed (pip install -e '.[dev]')")
rioxarray = pytest.importorskip("rioxarray", reason="rioxarray is not installed")

#: A crop of the Zion scene with several classes: (col, row, width, height).
CROP = Window(300, 200, 192, 160)


@pytest.fixture(scope="module")
def zion_model() -> api.Model:
    if not (ZION_BUNDLE / "bundle.json").exists():
        pytest.skip("models/zion-nlcd is not trained yet")
    return api.load_model(ZION_BUNDLE)


@pytest.fixture(scope="module")
def scene() -> Path:
    return shared_file("zion/landsat8_b2345.tif")


@pytest.fixture(scope="module")
def reference(zion_model: api.Model, scene: Path) -> api.Prediction:
    """The crop labelled from rasterio's arrays, as the README shows."""
    with rasterio.open(scene) as src:
        return zion_model.predict(
            src.read(window=CROP),
            valid=src.dataset_mask(window=CROP) > 0,
            band_names=src.descriptions,
            transform=src.window_transform(CROP),
            crs=src.crs,
            probabilities=True,
        )


def _crop(obj: Any) -> Any:
    return obj.isel(
        x=slice(CROP.col_off, CROP.col_off + CROP.width),
        y=slice(CROP.row_off, CROP.row_off + CROP.height),
    )


def _assert_same_labels(result: api.Prediction, reference: api.Prediction) -> None:
    np.testing.assert_array_equal(result.coarse, reference.coarse)
    np.testing.assert_array_equal(result.fine, reference.fine)
    np.testing.assert_array_equal(result.confidence, reference.confidence)


def test_a_rioxarray_image_is_labelled_and_georeferenced_as_the_file(zion_model, scene, reference):
    da = _crop(rioxarray.open_rasterio(scene))
    assert is_xarray(da) and not is_xarray(da.values)
    result = zion_model.predict(da, probabilities=True)
    _assert_same_labels(result, reference)
    np.testing.assert_array_equal(result.probabilities, reference.probabilities)
    assert result.transform == reference.transform  # from the sliced coordinates
    assert result.crs == reference.crs
    # Dask-backed (chunks aligned to the file's blocks): computed, the same labels
    lazy = _crop(rioxarray.open_rasterio(scene, chunks=256))
    _assert_same_labels(zion_model.predict(lazy), reference)


def test_bands_keep_their_names_through_a_selection(zion_model, scene, reference):
    da = _crop(rioxarray.open_rasterio(scene))
    # rioxarray's long_name stays (B2, B3, B4, B5) after isel: the band coordinate's
    # file band numbers (4, 3, 2, 1) say which name each band has
    reversed_bands = da.isel(band=[3, 2, 1, 0])
    assert reversed_bands.attrs["long_name"] == ("B2", "B3", "B4", "B5")
    _assert_same_labels(zion_model.predict(reversed_bands), reference)
    assert read_image(reversed_bands).band_names == ("B5", "B4", "B3", "B2")
    # names as a text coordinate (stackstac, Dataset.to_dataarray), with an extra band
    named = xr.concat([reversed_bands, reversed_bands.isel(band=[0])], dim="band")
    named = named.assign_coords(band=["B5", "B4", "B3", "B2", "extra"])
    _assert_same_labels(zion_model.predict(named), reference)
    # no names, no band numbers: the bands are the model's, in order, as for NumPy
    unnamed = reversed_bands.drop_attrs().drop_vars("band")
    assert read_image(unnamed).band_names is None
    assert not np.array_equal(zion_model.predict(unnamed).fine, reference.fine)
    # the caller's names win over the image's
    renamed = zion_model.predict(unnamed, band_names=["B5", "B4", "B3", "B2"])
    _assert_same_labels(renamed, reference)


def test_a_dataset_of_bands_and_a_hand_made_array(zion_model, scene, reference):
    # rioxarray's band_as_variable: band_1... named by their long_name
    ds = _crop(rioxarray.open_rasterio(scene, band_as_variable=True))
    _assert_same_labels(zion_model.predict(ds), reference)
    # odc-stac's shape: one variable per band, in any order, a time step of one
    with rasterio.open(scene) as src:
        data = src.read(window=CROP)
        transform = src.window_transform(CROP)
        crs = src.crs
    ys = transform.f + transform.e * (np.arange(CROP.height) + 0.5)
    xs = transform.c + transform.a * (np.arange(CROP.width) + 0.5)
    bands = {
        name: (("time", "y", "x"), data[i][None]) for i, name in enumerate(("B2", "B3", "B4", "B5"))
    }
    odc = xr.Dataset(
        {k: bands[k] for k in ("B5", "B3", "B2", "B4")},
        coords={"time": ["2013-06-01"], "y": ys, "x": xs},
    ).rio.write_crs(crs)
    result = zion_model.predict(odc)
    _assert_same_labels(result, reference)
    assert result.transform == reference.transform and result.crs == reference.crs
    assert "time" in result.to_xarray().coords  # the image's scalar coordinates stay
    # by hand: (y, x, band) with a CRS attribute, lat/lon-style names refused below
    hand = xr.DataArray(
        np.moveaxis(data, 0, -1),
        dims=("y", "x", "band"),
        coords={"y": ys, "x": xs, "band": ["B2", "B3", "B4", "B5"]},
        attrs={"crs": "EPSG:32612"},
    )
    result = zion_model.predict(hand)
    _assert_same_labels(result, reference)
    assert result.crs == reference.crs and result.transform == reference.transform


def test_nodata_of_the_image_leaves_pixels_unlabelled(zion_model, scene, reference):
    da = _crop(rioxarray.open_rasterio(scene)).copy()
    assert da.attrs["_FillValue"] == 65535
    da[2, 10:20, 30:40] = 65535  # one band's nodata
    result = zion_model.predict(da)
    assert (result.coarse[10:20, 30:40] == result.taxonomy.nodata).all()
    assert result.valid.sum() == result.valid.size - 100
    # masked=True: NaN where the file has nodata, the _FillValue in the encoding
    masked = _crop(rioxarray.open_rasterio(scene, masked=True))
    assert masked.dtype == np.float32 and "_FillValue" in masked.encoding
    _assert_same_labels(zion_model.predict(masked), reference)
    # each Dataset variable's own nodata
    ds = _crop(rioxarray.open_rasterio(scene, band_as_variable=True)).copy()
    ds["band_2"].attrs["_FillValue"] = 0
    ds["band_2"][:5, :] = 0
    ds["band_3"][5:7, :] = 0  # not band_3's nodata: a value
    result = zion_model.predict(ds)
    assert (result.coarse[:5] == result.taxonomy.nodata).all()
    assert result.valid[5:].all()
    # the caller's nodata wins, for every band
    result = zion_model.predict(ds, nodata=-1)
    assert result.valid.all()


def test_images_that_cannot_be_labelled_are_refused(zion_model, scene):
    da = _crop(rioxarray.open_rasterio(scene))
    series = xr.concat([da, da], dim="time")
    with pytest.raises(ConfigError, match=r"\(time: 2, band: 4\) .* image.isel\(time=0\)"):
        zion_model.predict(series)
    # a time step of one is dropped
    assert zion_model.predict(series.isel(time=[0])).valid.all()
    with pytest.raises(ConfigError, match=r"dims \(band, row, col\).*rename"):
        zion_model.predict(da.rename({"y": "row", "x": "col"}))
    empty = xr.Dataset({"count": ("t", [1, 2])})
    with pytest.raises(
        ConfigError, match=r"no data variable of numbers with y and x dims \(variables: count"
    ):
        zion_model.predict(empty)
    bad_crs = da.drop_vars("spatial_ref").assign_attrs(crs="not a crs")
    with pytest.raises(ConfigError, match="CRS 'not a crs' is not one rasterio reads"):
        zion_model.predict(bad_crs)


def test_uneven_coordinates_are_not_georeferenced(zion_model, scene):
    da = _crop(rioxarray.open_rasterio(scene)).drop_vars("spatial_ref")
    xs = da.x.values.copy()
    xs[-1] += 7.5
    with pytest.warns(GeosegWarning, match="x coordinates are not evenly spaced"):
        result = zion_model.predict(da.assign_coords(x=xs))
    assert result.transform is None


def test_labels_as_a_dataset_rioxarray_reads(zion_model, scene, reference, tmp_path):
    result = zion_model.predict(_crop(rioxarray.open_rasterio(scene)), probabilities=True)
    ds = result.to_xarray()
    assert list(ds.data_vars) == ["coarse", "fine", "confidence", "probabilities"]
    assert ds.rio.crs == reference.crs
    assert ds.rio.transform() == reference.transform
    assert ds.coarse.rio.nodata == result.taxonomy.nodata
    codes = ds.coarse.attrs["flag_values"].tolist()
    meanings = ds.coarse.attrs["flag_meanings"].split()
    assert dict(zip(codes, meanings, strict=True))[4] == "Forest"
    assert "Deciduous_Forest" in ds.fine.attrs["flag_meanings"].split()
    assert ds.confidence.attrs["units"] == "percent"
    tax = result.taxonomy
    assert ds.probabilities.shape == (tax.n_coarse + tax.n_fine, CROP.height, CROP.width)
    forest = int(np.flatnonzero(ds.class_name.values == "Deciduous Forest")[0])
    assert ds.class_level.values[forest] == "fine" and ds.class_code.values[forest] == 41
    np.testing.assert_array_equal(ds.probabilities.values[forest], reference.probabilities[forest])
    # rioxarray writes a band as a georeferenced GeoTIFF with its nodata
    ds.fine.rio.to_raster(tmp_path / "fine.tif")
    with rasterio.open(tmp_path / "fine.tif") as src:
        assert src.crs == reference.crs and src.transform == reference.transform
        assert src.nodata == tax.nodata
        np.testing.assert_array_equal(src.read(1), reference.fine)


def test_labels_of_an_array_as_a_dataset(zion_model, reference):
    # a NumPy image with transform=: pixel-centre coordinates, as rioxarray gives a file
    ds = reference.to_xarray()
    assert ds.coarse.dims == ("y", "x")
    assert ds.x.values[0] == reference.transform.c + 15
    assert ds.y.values[0] == reference.transform.f - 15
    assert ds.rio.transform() == reference.transform
    # without georeferencing: no coordinates, no grid mapping
    plain = zion_model.predict(np.stack([reference.coarse.astype(np.uint16) * 0 + 9000] * 4))
    bare = plain.to_xarray()
    assert "spatial_ref" not in bare.coords and "x" not in bare.coords
    assert "grid_mapping" not in bare.coarse.attrs


def test_the_callers_transform_replaces_the_coordinates(zion_model, scene, reference):
    from affine import Affine

    da = _crop(rioxarray.open_rasterio(scene))
    moved = reference.transform * Affine.translation(1000, 0)
    result = zion_model.predict(da, transform=moved)
    assert result.transform == moved
    ds = result.to_xarray()
    assert ds.rio.transform() == moved
    assert ds.x.values[0] == moved.c + 15


def test_to_xarray_without_xarray_says_what_to_install(reference, monkeypatch):
    monkeypatch.setitem(sys.modules, "xarray", None)
    with pytest.raises(ConfigError, match="to_xarray needs xarray: pip install xarray"):
        reference.to_xarray()


def test_the_conventions_of_other_loaders_are_read():
    data = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(1, 2, 3, 4)
    # stackstac: (time, band, y, x), asset names, an epsg coordinate, NaN fill
    stack = xr.DataArray(
        data,
        dims=("time", "band", "y", "x"),
        coords={
            "time": ["2024-05-01"],
            "band": ["red", "nir"],
            "y": [4_100_015.0, 4_099_985.0, 4_099_955.0],
            "x": [300_015.0, 300_045.0, 300_075.0, 300_105.0],
            "epsg": 32612,
        },
    )
    image = read_image(stack)
    assert image.data.shape == (2, 3, 4) and image.band_names == ("red", "nir")
    assert image.crs == rasterio.crs.CRS.from_epsg(32612)
    assert image.transform.to_gdal() == (300_000.0, 30.0, 0.0, 4_100_030.0, 0.0, -30.0)
    assert image.nodata == (None, None)
    # one row of pixels: the grid mapping's GeoTransform, as rioxarray writes it
    row = stack.isel(time=0, y=[0]).drop_vars("epsg").rio.write_crs("EPSG:32612")
    row = row.rio.write_transform(rasterio.transform.from_origin(300_000, 4_100_030, 30, 30))
    assert read_image(row).transform.to_gdal() == (300_000.0, 30.0, 0.0, 4_100_030.0, 0.0, -30.0)
    # lat/lon dims, (y, x) of one band, a crs attribute, a nodata attribute
    grid = xr.DataArray(
        data[0, 0].astype(np.float32),
        dims=("lat", "lon"),
        coords={"lat": [10.5, 9.5, 8.5], "lon": [20.5, 21.5, 22.5, 23.5]},
        attrs={"crs": "EPSG:4326", "nodata": 5},
    )
    image = read_image(grid)
    assert image.data.shape == (1, 3, 4) and image.band_names is None
    assert image.crs == rasterio.crs.CRS.from_epsg(4326) and image.nodata == (5.0,)
    assert image.transform.to_gdal() == (20.0, 1.0, 0.0, 11.0, 0.0, -1.0)
    assert image.grid["dims"] == ("lat", "lon")


# --- predict_lazy: labels of an image larger than memory, as a Dask graph -------------


def test_lazy_labels_are_the_labels_in_memory(zion_model, scene):
    da = rioxarray.open_rasterio(scene, chunks=256)
    ds = zion_model.predict_lazy(da, tile_size=256, block_size=256, probabilities=True)
    assert ds.fine.data.chunks == ((256,) * 5 + (148,), (256,) * 3 + (360,))  # one per block
    eager = zion_model.predict(da, tile_size=256, probabilities=True)
    done = ds.compute(scheduler="threads", num_workers=2)
    np.testing.assert_array_equal(done.coarse.values, eager.coarse)
    np.testing.assert_array_equal(done.fine.values, eager.fine)
    np.testing.assert_array_equal(done.confidence.values, eager.confidence)
    np.testing.assert_array_equal(done.probabilities.values, eager.probabilities)
    assert done.rio.transform() == eager.transform and done.rio.crs == eager.crs
    assert done.coarse.attrs["flag_meanings"].split()[3] == "Forest"


def test_lazy_labels_written_block_by_block(zion_model, scene, tmp_path):
    import threading

    da = rioxarray.open_rasterio(scene, chunks=256)
    ds = zion_model.predict_lazy(da, tile_size=256, block_size=256)
    ds.fine.rio.to_raster(tmp_path / "fine.tif", tiled=True, lock=threading.Lock())
    eager = zion_model.predict(da, tile_size=256)
    with rasterio.open(tmp_path / "fine.tif") as src:
        assert src.crs == eager.crs and src.transform == eager.transform
        assert src.nodata == eager.taxonomy.nodata
        np.testing.assert_array_equal(src.read(1), eager.fine)


def test_lazy_labels_of_dask_and_numpy_arrays_with_nodata_and_valid(zion_model, scene):
    import dask.array as dsa

    with rasterio.open(scene) as src:
        data = src.read(window=Window(0, 0, 400, 300)).astype(np.float32)
        transform = src.transform
    data[1, 5:9, 7:12] = np.nan
    data[3, 40:50, 60:70] = -1.0
    valid = np.ones(data.shape[1:], bool)
    valid[100:110, :] = False
    eager = zion_model.predict(data, nodata=-1, valid=valid, tile_size=128, transform=transform)
    for image, mask in (
        (dsa.from_array(data, chunks=(4, 128, 128)), dsa.from_array(valid)),
        (data, valid),
    ):
        ds = zion_model.predict_lazy(
            image, nodata=-1, valid=mask, tile_size=128, block_size=128, transform=transform
        )
        np.testing.assert_array_equal(ds.fine.values, eager.fine)
        assert ds.rio.transform() == transform and ds.x.values[0] == transform.c + 15
    assert (eager.coarse[5:9, 7:12] == eager.taxonomy.nodata).all()
    assert (eager.coarse[40:50, 60:70] == eager.taxonomy.nodata).all()
    assert (eager.coarse[100:110] == eager.taxonomy.nodata).all()


def test_lazy_labels_read_only_what_they_label(zion_model, scene):
    import dask.array as dsa

    with rasterio.open(scene) as src:
        data = src.read()
    reads: list[tuple[int, int]] = []

    def counted(chunk: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        if block_info is not None:
            reads.append(tuple(block_info[0]["chunk-location"][1:]))
        return chunk

    image = dsa.from_array(data, chunks=(4, 128, 128)).map_blocks(counted, dtype=data.dtype)
    ds = zion_model.predict_lazy(image, tile_size=128, block_size=256)
    # the graph is built from one central window (the units check), 9 x 9 chunks at most
    assert 0 < len(reads) <= 81
    reads.clear()
    corner = ds.fine[:256, :256].compute(scheduler="sync")
    # one block of 2 x 2 chunks plus its halo (112 px: one more chunk each way)
    assert sorted(set(reads)) == [(r, c) for r in range(3) for c in range(3)]
    eager = zion_model.predict(data[:, :640, :640], tile_size=128)
    np.testing.assert_array_equal(corner.values[:200, :200], eager.fine[:200, :200])


def test_lazy_labels_refuse_what_predict_refuses(zion_model, scene):
    da = rioxarray.open_rasterio(scene, chunks=256)
    with pytest.raises(ConfigError, match=r"names bands 3, 4 all 'B5'"):
        zion_model.predict_lazy(da.isel(band=[0, 2, 3, 3]))
    with pytest.raises(ConfigError, match="block_size is 0"):
        zion_model.predict_lazy(da, block_size=0)
    with pytest.raises(ConfigError, match="tile_size is 100"):
        zion_model.predict_lazy(da, tile_size=100)
    with pytest.warns(GeosegWarning, match="different units or scaling"):
        zion_model.predict_lazy(da.astype(np.float32) / 60_000)


def test_lazy_labels_with_the_images_own_statistics(zion_model, scene):
    da = rioxarray.open_rasterio(scene, chunks=256)
    stats = zion_model.statistics(da)  # one pass, chunk by chunk
    with rasterio.open(scene) as src:
        eager_stats = zion_model.statistics(src.read(), band_names=src.descriptions)
    np.testing.assert_allclose(stats.mean, eager_stats.mean, rtol=1e-12)
    np.testing.assert_allclose(stats.std, eager_stats.std, rtol=1e-12)
    assert stats.pixels == eager_stats.pixels
    lazy = zion_model.predict_lazy(da, normalize="scene", tile_size=256, block_size=256)
    eager = zion_model.predict(da, normalize="scene", tile_size=256)
    np.testing.assert_array_equal(lazy.fine.values, eager.fine)
    assert not np.array_equal(eager.fine, zion_model.predict(da, tile_size=256).fine)


def test_a_lazy_graph_unpickles_without_torch(zion_model, scene, tmp_path):
    """A Dask scheduler deserialises the graph: it must not import torch to do so."""
    import subprocess

    import cloudpickle

    ds = zion_model.predict_lazy(rioxarray.open_rasterio(scene, chunks=512), block_size=512)
    graph = tmp_path / "graph.pkl"
    graph.write_bytes(cloudpickle.dumps(dict(ds.fine.data.__dask_graph__())))
    probe = (
        "import sys, cloudpickle\n"
        f"graph = cloudpickle.loads(open({str(graph)!r}, 'rb').read())\n"
        "print(len(graph), 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split()[1] == "False"


# --- found by the review of the xarray reader ---------------------------------------------


def test_crops_of_one_pixel_and_the_callers_georeferencing(scene):
    da = rioxarray.open_rasterio(scene)
    for crop in (da.isel(x=slice(40, 41), y=slice(10, 30)), da.isel(x=[40], y=[10])):
        # rioxarray keeps the whole image's GeoTransform on the crop: not its origin
        assert read_image(crop).transform == crop.rio.transform()
    bad = da.isel(x=slice(0, 64), y=slice(0, 64)).drop_vars("spatial_ref")
    bad = bad.assign_attrs(crs="my local grid")
    assert read_image(bad, need_crs=False).crs is None  # crs= given: not read
    xs = bad.x.values.copy()
    xs[-1] += 7.5
    uneven = bad.assign_coords(x=xs)
    assert read_image(uneven, need_transform=False, need_crs=False).transform is None  # no warning


def test_datasets_with_other_variables_and_their_own_grid_mapping(zion_model, scene, reference):
    ds = _crop(rioxarray.open_rasterio(scene, band_as_variable=True))
    ds = ds.rename({f"band_{i}": b for i, b in enumerate(("B2", "B3", "B4", "B5"), start=1)})
    ds["acq_time"] = (("y", "x"), np.full((CROP.height, CROP.width), np.datetime64("2013-06-01")))
    ds["label"] = (("y", "x"), np.full((CROP.height, CROP.width), "cloud"))
    ds["qa"] = (("y", "x"), np.zeros((CROP.height, CROP.width), np.uint16))
    _assert_same_labels(zion_model.predict(ds), reference)  # only B2..B5 are read
    # a grid mapping named as GDAL's netCDF driver names it
    gm = ds["spatial_ref"].attrs
    netcdf = ds.drop_vars("spatial_ref").assign_coords(transverse_mercator=((), 0, gm))
    for name in ("B2", "B3", "B4", "B5"):
        netcdf[name].attrs["grid_mapping"] = "transverse_mercator"
        netcdf[name].encoding.pop("grid_mapping", None)
    assert read_image(netcdf).crs == reference.crs
    # variables that are not one band each
    with pytest.raises(ConfigError, match=r"variable B2 has dims \(t: 2\) .*isel\(t=0\)"):
        read_image(netcdf.assign(B2=netcdf.B2.expand_dims(t=2)))


def test_a_time_dim_is_never_the_bands(scene):
    da = rioxarray.open_rasterio(scene).isel(x=slice(0, 16), y=slice(0, 16))
    series = da.isel(band=0, drop=True).expand_dims(time=4)
    with pytest.raises(ConfigError, match=r"\(time: 4\) .* image.isel\(time=0\)"):
        read_image(series)
    named = da.assign_coords(band=["B2", "B3", "B4", "B5"])
    one = named.sel(band="B2").expand_dims(time=1)  # a scalar band coordinate names it
    image = read_image(one)
    assert image.data.shape == (1, 16, 16) and image.band_names == ("B2",)


def test_float32_coordinates_and_decoded_values():
    lat = (40 + (np.arange(50) + 0.5) / 3600).astype(np.float32)[::-1]
    lon = (-113 + (np.arange(60) + 0.5) / 3600).astype(np.float32)
    da = xr.DataArray(np.ones((50, 60), np.float32), dims=("lat", "lon"),
                      coords={"lat": lat, "lon": lon})  # fmt: skip
    t = read_image(da).transform
    assert t is not None and t.a == pytest.approx(1 / 3600, rel=1e-3)  # float32 precision
    # mask_and_scale=True: stored 0 was nodata; a stored 5000 decodes to 0.0, a value
    decoded = da.copy()
    decoded.encoding.update({"dtype": "int16", "_FillValue": 0, "add_offset": -5000.0})
    assert read_image(decoded).nodata == (None,)
    stored = da.copy()
    stored.encoding.update({"dtype": "float32", "_FillValue": 0.0})
    assert read_image(stored).nodata == (0.0,)


def test_confidence_of_unlabelled_pixels_is_never_a_confidence(zion_model, scene):
    da = _crop(rioxarray.open_rasterio(scene)).copy()
    da[:, :10, :] = 65535  # nodata
    result = zion_model.predict(da)
    ds = result.to_xarray()
    assert (ds.confidence.values[:10] == 255).all() and ds.confidence.attrs["_FillValue"] == 255
    assert ds.confidence.values[10:].max() <= 100
    lazy = zion_model.predict_lazy(da, block_size=64)
    np.testing.assert_array_equal(lazy.confidence.values, ds.confidence.values)


# --- found by the blind test of the xarray API ---------------------------------------------


def test_unnamed_bands_reordered_are_read_in_the_files_order(zion_model, scene, tmp_path):
    with rasterio.open(scene) as src:
        profile, data = src.profile, src.read()
    unnamed = tmp_path / "unnamed.tif"
    with rasterio.open(unnamed, "w", **profile) as dst:  # a gdal_merge stack: no names
        dst.write(data)
    da = _crop(rioxarray.open_rasterio(unnamed))
    assert "long_name" not in da.attrs
    reference = zion_model.predict(da)
    for order in ([3, 2, 1, 0], [1, 0, 2, 3]):
        _assert_same_labels(zion_model.predict(da.isel(band=order)), reference)


def test_georeferencing_from_a_dataset_attribute_and_given_wrongly(zion_model, scene, tmp_path):
    from affine import Affine

    ds = _crop(rioxarray.open_rasterio(scene, band_as_variable=True)).drop_vars("spatial_ref")
    ds.attrs["crs"] = "EPSG:32612"
    result = zion_model.predict(ds)
    assert result.crs == "EPSG:32612" and result.to_xarray().rio.crs == "EPSG:32612"
    image = ds.to_dataarray("band").values
    t = result.transform
    with pytest.raises(ConfigError, match=r"give an affine.Affine .*Affine.from_gdal"):
        zion_model.predict(image, transform=t.to_gdal())
    with pytest.raises(ConfigError, match="crs 'EPSG:999999' is not one rasterio reads"):
        zion_model.predict(image, transform=t, crs="EPSG:999999")
    with pytest.raises(ConfigError, match=r"a file: label files with api.predict\(path"):
        zion_model.predict(str(scene))
    # a CRS without a transform is not written (it would put the map at the origin)
    saved = zion_model.predict(image, crs="EPSG:32612").save(tmp_path / "nogrid.tif")
    with rasterio.open(saved) as src:
        assert src.crs is None
    names = result.to_xarray().fine.attrs["flag_meanings"].split()
    assert "Shrub_Scrub" in names and "Perennial_Ice_Snow" in names  # CF's characters
    assert Affine.identity() != t


def test_lazy_labels_saved_as_a_labels_raster_the_jobs_take(zion_model, scene, tmp_path):
    da = rioxarray.open_rasterio(scene, chunks=256)
    ds = zion_model.predict_lazy(da, tile_size=256, block_size=256)
    assert "geoseg_taxonomy" in ds.attrs
    saved = api.save_labels(ds, tmp_path / "labels.tif")
    eager = zion_model.predict(da, tile_size=256).save(tmp_path / "eager.tif")
    with rasterio.open(saved) as a, rasterio.open(eager) as b:
        np.testing.assert_array_equal(a.read(), b.read())
        assert a.crs == b.crs and a.transform == b.transform and a.nodata == b.nodata
        assert a.tags()["GEOSEG_TAXONOMY"] == b.tags()["GEOSEG_TAXONOMY"]
        assert a.tags()["GEOSEG_BUNDLE"] == b.tags()["GEOSEG_BUNDLE"]
    record = api.change(eager, saved)  # the jobs take it as a geoseg map
    assert record["levels"]["coarse"]["area_changed"] == 0
    with pytest.raises(ConfigError, match="not a Dataset of coarse, fine and confidence"):
        api.save_labels(da, tmp_path / "x.tif")
    with pytest.raises(ConfigError, match="no geoseg_taxonomy attribute"):
        api.save_labels(ds.drop_attrs(deep=False), tmp_path / "x.tif")
    with pytest.raises(GeosegError, match="overwrite=True"):
        api.save_labels(ds, saved)
