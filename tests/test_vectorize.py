import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from geoseg.export import write_vector
from geoseg.vectorize import VectorizeOptions, vectorize

from .conftest import shared_file, write_raster


def _classes(tmp_path, crs="EPSG:32633", transform=None):
    a = np.zeros((40, 50), np.uint8)
    a[:, :25] = 3
    a[:, 25:] = 7
    a[10:20, 10:20] = 5  # a hole in class 3 holding class 5
    a[30, 40] = 5  # a single pixel (removed by the MMU)
    a[0:5, 45:50] = 0  # nodata
    return write_raster(tmp_path / "cls.tif", a, crs=crs, nodata=0, transform=transform), a


def test_single_band_class_raster(tmp_path):
    path, a = _classes(tmp_path)
    gdf = vectorize(path)
    assert list(gdf.columns) == ["class_code", "area_m2", "geometry"]
    assert gdf.is_valid.all()
    for code in (3, 5, 7):
        assert gdf.loc[gdf.class_code == code, "area_m2"].sum() == pytest.approx(
            (a == code).sum() * 900
        )
    assert 0 not in set(gdf.class_code)
    # class 3 polygon has a hole
    assert any(len(g.interiors) == 1 for g in gdf.loc[gdf.class_code == 3].geometry)


def test_mmu_removes_small_regions(tmp_path):
    path, a = _classes(tmp_path)
    gdf = vectorize(path, VectorizeOptions(mmu=2 * 900))
    assert gdf.loc[gdf.class_code == 5, "area_m2"].sum() == pytest.approx(100 * 900)
    assert gdf.area_m2.sum() == pytest.approx((a != 0).sum() * 900)


def test_simplify_keeps_a_gapless_coverage(tmp_path):
    path, _ = _classes(tmp_path)
    gdf = vectorize(path, VectorizeOptions(simplify=40))
    assert gdf.is_valid.all()
    assert gdf.geometry.union_all().area == pytest.approx(gdf.area.sum(), rel=1e-9)


def test_geographic_area_is_in_square_metres(tmp_path):
    path, a = _classes(tmp_path, crs="EPSG:4326", transform=from_origin(10.0, 45.0, 0.001, 0.001))
    gdf = vectorize(path)
    # one pixel near 45N: (111.3 km * cos 45 * 0.001) x (111.1 km * 0.001) ~ 8.75e3 m2
    per_px = gdf.area_m2.sum() / (a != 0).sum()
    assert 8.6e3 < per_px < 8.9e3


def test_shapefile_field_names(tmp_path, tiny_scene, tiny_bundle):
    from geoseg.workflow import run_predict

    run_predict(tiny_scene, tiny_bundle, tmp_path / "o", vector=False)
    gdf = vectorize(tmp_path / "o" / "labels.tif")
    write_vector(gdf, tmp_path / "x.shp")
    back = gpd.read_file(tmp_path / "x.shp")
    assert all(len(c) <= 10 for c in back.columns)
    assert (tmp_path / "x.prj").exists() and (tmp_path / "x.cpg").exists()
    assert set(back.f_code.dropna()) == set(gdf.fine_code.dropna())


def test_real_label_raster_window(tmp_path):
    src_path = shared_file("labels/landcover_1m_epsg3857.tif")
    with rasterio.open(src_path) as src:
        win = rasterio.windows.Window(2000, 2000, 600, 500)
        data = src.read(1, window=win)
        t = src.window_transform(win)
        path = write_raster(tmp_path / "crop.tif", data, crs="EPSG:3857", nodata=0, transform=t)
    gdf = vectorize(path)
    assert gdf.is_valid.all()
    px = abs(t.a * t.e)
    for code in np.unique(data[data != 0]):
        assert gdf.loc[gdf.class_code == code].geometry.area.sum() == pytest.approx(
            (data == code).sum() * px
        )
