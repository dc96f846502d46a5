import logging

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin

from geoseg import api
from geoseg.errors import ConfigError, GeosegWarning, RasterFormatError
from geoseg.export import write_vector
from geoseg.vectorize import VectorizeOptions, vectorize

from .conftest import NLCD_YAML, shared_file, write_raster


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


def test_a_map_of_nodata_alone_is_said_not_written_silently(tmp_path):
    path = write_raster(tmp_path / "empty.tif", np.zeros((1, 8, 8), np.uint8), nodata=0)
    with pytest.warns(GeosegWarning, match=r"every pixel is nodata: there are no polygons"):
        gdf = vectorize(path)
    assert len(gdf) == 0


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


def test_simplify_keeps_the_holes_of_nodata(tmp_path):
    """Single nodata pixels (a cloud mask's) between two classes: simplified with the
    rest, each side's staircase became the hole's diagonal and the hole closed (found
    by a blind user test); edges of nodata now keep their pixel edges."""
    rng = np.random.default_rng(0)
    a = np.where(np.add.outer(np.arange(60), np.arange(60)) < 60, 3, 7).astype(np.uint8)
    holes = rng.choice(60 * 60, 40, replace=False)
    a.flat[holes] = 0
    path = write_raster(tmp_path / "holes.tif", a, crs="EPSG:32633", nodata=0)
    gdf = vectorize(path, VectorizeOptions(simplify=30))  # one pixel
    assert gdf.is_valid.all()
    t = rasterio.open(path).transform
    rows, cols = np.divmod(holes, 60)
    centres = shapely.points(*(t * (cols + 0.5, rows + 0.5)))
    covered = gdf.geometry.union_all()
    assert not shapely.intersects(covered, centres).any()
    assert covered.area == pytest.approx((a != 0).sum() * 900)
    # the edges between the two classes are still simplified
    exact = vectorize(path, VectorizeOptions(simplify=0))
    n = lambda g: shapely.get_num_coordinates(g.geometry.to_numpy()).sum()  # noqa: E731
    assert n(gdf) < n(exact)


def test_geographic_area_is_in_square_metres(tmp_path):
    path, a = _classes(tmp_path, crs="EPSG:4326", transform=from_origin(10.0, 45.0, 0.001, 0.001))
    gdf = vectorize(path)
    # one pixel near 45N: (111.3 km * cos 45 * 0.001) x (111.1 km * 0.001) ~ 8.75e3 m2
    per_px = gdf.area_m2.sum() / (a != 0).sum()
    assert 8.6e3 < per_px < 8.9e3


def test_class_areas_agree_with_the_polygons_in_a_utm_zone_not_the_scenes_own(tmp_path):
    """Found by a blind user test: Zion in the UTM zone east of its own (EPSG:32613), where
    pixel areas change across the columns, had run.json's class areas (one pixel area per
    row, at the centre column) 0.05 % off its polygons' areas."""
    from geoseg.area import areas_m2, pixel_areas
    from geoseg.taxonomy import load_taxonomy
    from geoseg.workflow import area_per_class

    from .conftest import NLCD_YAML

    tax = load_taxonomy(NLCD_YAML)
    t = from_origin(-210_000, 4_158_000, 30, 30)  # about 113 W, 37.3 N in zone 13
    coarse = np.full((300, 400), 5, np.uint8)  # shrubland...
    coarse[:, :130] = 4  # ...and forest on the west, where pixels are smaller
    fine = np.where(coarse == 4, 42, 52).astype(np.uint8)
    labels = tmp_path / "labels.tif"
    from geoseg.api import Prediction

    Prediction(coarse, fine, np.full_like(coarse, 80), None, tax, t, "EPSG:32613").save(labels)
    coarse_px = dict(zip(*np.unique(coarse, return_counts=True), strict=True))
    fine_px = dict(zip(*np.unique(fine, return_counts=True), strict=True))
    record = area_per_class(labels, "EPSG:32613", t, (300, 400), coarse_px, fine_px, tax)
    polygons = vectorize(labels, VectorizeOptions(mmu=0, simplify=0))
    for row in record["fine"]:
        drawn = polygons.loc[polygons.fine_code == row["code"], "area_m2"].sum()
        assert row["area_m2"] == pytest.approx(drawn, rel=1e-6), row["name"]
    # the interpolated pixel areas against each pixel measured alone
    r, c = np.mgrid[0:300, 0:400].astype(float)
    x0, y0 = t @ (c, r)
    x1, y1 = t @ (c + 1, r + 1)
    boxes = shapely.box(x0, y1, x1, y0).ravel()
    exact = areas_m2(boxes, "EPSG:32613").reshape(300, 400)
    np.testing.assert_allclose(pixel_areas("EPSG:32613", t, 0, 300, 0, 400), exact, rtol=1e-7)
    assert exact[:, -1].mean() / exact[:, 0].mean() > 1.0003  # they do change across


def test_areas_and_the_mapping_unit_are_true_areas_on_a_global_raster(tmp_path):
    """Found by a blind user test: one equal-area projection centred on a world map made
    areas near the antimeridian thousands of times too large (the sum twice the Earth's
    surface), and --mmu was a pixel count taken at the centre (strips of 167 km² near
    the equator removed, of 140 km² at 50° N kept, with --mmu 150 km²)."""
    from geoseg.area import row_pixel_areas

    rng = np.random.default_rng(1)
    a = (rng.random((36, 72)) < 0.5).astype(np.uint8) + 1  # 5-degree pixels, whole globe
    t = from_origin(-180.0, 90.0, 5.0, 5.0)
    path = write_raster(tmp_path / "world.tif", a, crs="EPSG:4326", transform=t)
    gdf = vectorize(path, VectorizeOptions(mmu=0, simplify=0))
    rows = row_pixel_areas("EPSG:4326", t, 0, 36, 36)
    for code in (1, 2):
        want = ((a == code) * rows[:, None]).sum()
        assert gdf.loc[gdf.class_code == code, "area_m2"].sum() == pytest.approx(want, rel=1e-9)
    assert gdf.area_m2.sum() == pytest.approx(5.10e14, rel=1e-3)  # the Earth's surface
    # strips of 1 to 12 pixels of 0.05 degrees from 0 to 50 N: kept by their true area
    b = np.zeros((1000, 100), np.uint8)
    for r in range(2, 1000, 10):
        c = 2
        for k in range(1, 13):
            b[r, c : c + k] = 1
            c += k + 2
    t = from_origin(-125.0, 50.0, 0.05, 0.05)
    path = write_raster(tmp_path / "strips.tif", b, crs="EPSG:4326", transform=t)
    exact = vectorize(path, VectorizeOptions(mmu=0, simplify=0))
    mmu = 1.5e8
    kept = vectorize(path, VectorizeOptions(mmu=mmu, simplify=0))
    strips = exact.loc[exact.class_code == 1, "area_m2"]
    assert (strips >= mmu).any() and (strips < mmu).any()
    assert (kept.area_m2 >= mmu).all()
    assert sorted(kept.loc[kept.class_code == 1, "area_m2"]) == pytest.approx(
        sorted(strips[strips >= mmu])
    )


def test_without_a_crs_the_mapping_unit_is_in_the_units_of_the_geotransform(tmp_path, caplog):
    """Found by a blind user test: the default unit (4 pixels, in the geotransform's
    units) was divided by a pixel of 1, so '4 pixels' sieved 3,600 pixels away."""
    from geoseg.vectorize import cartographic_defaults

    path, _ = _classes(tmp_path, crs=None, transform=from_origin(0, 0, 30, 30))
    mmu = cartographic_defaults(path)[0]
    with caplog.at_level("WARNING", logger="geoseg"):
        gdf = vectorize(path, VectorizeOptions(mmu=mmu, simplify=0))
    assert "has no CRS" in caplog.text and "square units of its geotransform" in caplog.text
    # the single pixel of class 5 goes, the 10 x 10 square of it stays
    assert gdf.loc[gdf.class_code == 5, "area_m2"].sum() == pytest.approx(100 * 900)


def test_gdal_masks_and_whole_number_floats_are_read_as_gdal_polygonize_reads_them(
    tmp_path, caplog
):
    """Found by a blind user test: an internal mask band was ignored (the masked pixels
    became polygons of their fill value), and class codes stored as floats were refused."""
    a = np.full((20, 30), 3, np.uint8)
    a[:, 15:] = 7
    a[5:10, 5:25] = 9  # the fill value under the mask
    path = tmp_path / "masked.tif"
    profile = {"driver": "GTiff", "width": 30, "height": 20, "count": 1, "dtype": "uint8",
               "crs": "EPSG:32633", "transform": from_origin(500000, 4e6, 30, 30)}  # fmt: skip
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as dst:
        dst.write(a, 1)
        dst.write_mask(np.where(a == 9, 0, 255).astype(np.uint8))
    t = profile["transform"]
    gdf = vectorize(path, VectorizeOptions(mmu=0, simplify=0))
    assert set(gdf.class_code) == {3, 7}
    assert gdf.area_m2.sum() == pytest.approx((a != 9).sum() * 900)
    # the same with an alpha band: the same polygons, and no "2 bands" warning
    from rasterio.enums import ColorInterp

    alpha = tmp_path / "alpha.tif"
    with rasterio.open(alpha, "w", **{**profile, "count": 2}) as dst:
        dst.write(a, 1)
        dst.write(np.where(a == 9, 0, 255).astype(np.uint8), 2)
        dst.colorinterp = [ColorInterp.gray, ColorInterp.alpha]
    with caplog.at_level(logging.WARNING, logger="geoseg"):
        again = vectorize(alpha, VectorizeOptions(mmu=0, simplify=0))
    assert "bands" not in caplog.text
    assert again.area_m2.sum() == pytest.approx(gdf.area_m2.sum())
    # whole numbers stored as floats, with NaN as nodata
    f = a.astype(np.float32)
    f[a == 9] = np.nan
    fpath = write_raster(tmp_path / "float.tif", f, crs="EPSG:32633", nodata=np.nan, transform=t)
    fgdf = vectorize(fpath, VectorizeOptions(mmu=0, simplify=0))
    assert sorted(fgdf.class_code) == sorted(gdf.class_code)
    assert fgdf.area_m2.sum() == pytest.approx(gdf.area_m2.sum())
    f[0, 0] = 2.5  # not a class code
    write_raster(tmp_path / "real.tif", f, crs="EPSG:32633", nodata=np.nan, transform=t)
    with pytest.raises(RasterFormatError, match=r"real\.tif: band 1 holds 2\.5, not a whole"):
        vectorize(tmp_path / "real.tif", VectorizeOptions(mmu=0, simplify=0))


@pytest.mark.parametrize(("simplify", "pixel"), [(0, (30, 30)), (30, (30, 30)), (0, (30, 20))])
def test_reprojected_polygons_keep_a_coverage_without_overlaps(tmp_path, simplify, pixel):
    """Found by a blind user test: --dst-crs left slivers of overlap where a corner of one
    polygon lay in the middle of its neighbour's edge (which GDAL's polygons share);
    then by a review, with pixels that are not square."""
    rng = np.random.default_rng(0)
    a = np.kron((rng.random((20, 20)) * 4).astype(np.uint8) + 1, np.ones((3, 3), np.uint8))
    t = from_origin(310905, 4145085, *pixel)
    path = write_raster(tmp_path / "a.tif", a, crs="EPSG:32612", transform=t)
    gdf = vectorize(path, VectorizeOptions(mmu=0, simplify=simplify, dst_crs="EPSG:4326"))
    assert gdf.crs.to_epsg() == 4326 and gdf.is_valid.all()
    assert shapely.coverage_is_valid(gdf.geometry.to_numpy())
    planar = shapely.area(gdf.geometry.to_numpy())
    assert gdf.geometry.union_all().area == pytest.approx(planar.sum(), rel=1e-12)
    assert gdf.area_m2.sum() == pytest.approx(a.size * pixel[0] * pixel[1], rel=1e-3)


def test_a_dst_crs_that_does_not_cover_the_raster_is_warned_of(tmp_path, caplog):
    """Noticed in a read-through: Web Mercator past 85° stretched polygons unwarned."""
    a = np.kron(np.arange(4, dtype=np.uint8).reshape(2, 2) + 1, np.ones((10, 10), np.uint8))
    polar = write_raster(
        tmp_path / "p.tif", a, crs="EPSG:4326", transform=from_origin(10, 89, 0.1, 0.1)
    )
    with caplog.at_level(logging.WARNING, logger="geoseg"):
        vectorize(polar, VectorizeOptions(mmu=0, simplify=0, dst_crs="EPSG:3857"))
    assert "p.tif: reaches beyond where EPSG:3857 is defined" in caplog.text
    assert "latitudes -85.06 to 85.06; the raster: 10.00 to 12.00, 87.00 to 89.00" in caplog.text
    caplog.clear()
    # a scene 2° over a UTM zone's edge (zone 33: 12° to 18° E) is not warned of
    path = write_raster(
        tmp_path / "u.tif", a, crs="EPSG:4326", transform=from_origin(19, 50, 0.05, 0.05)
    )
    with caplog.at_level(logging.WARNING, logger="geoseg"):
        vectorize(path, VectorizeOptions(mmu=0, simplify=0, dst_crs="EPSG:32633"))
        vectorize(path, VectorizeOptions(mmu=0, simplify=0, dst_crs="EPSG:3857"))
    assert "reaches beyond" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="geoseg"):
        vectorize(path, VectorizeOptions(mmu=0, simplify=0, dst_crs="EPSG:32631"))  # 0°-6° E
    assert "u.tif: reaches beyond where EPSG:32631 is defined" in caplog.text


def test_uint32_codes_with_the_largest_value_as_nodata(tmp_path):
    a = np.full((20, 20), 4294967295, np.uint32)
    a[:10] = 1
    a[:10, :5] = 2
    path = write_raster(tmp_path / "u32.tif", a, nodata=4294967295)
    gdf = vectorize(path, VectorizeOptions(mmu=0, simplify=0))
    assert sorted(gdf.class_code) == [1, 2]


def test_only_cylindrical_projections_have_areas_by_row():
    from geoseg.area import areas_vary_by_row

    assert areas_vary_by_row("EPSG:4326") and areas_vary_by_row("EPSG:3857")
    assert not areas_vary_by_row("EPSG:32612")  # transverse Mercator
    assert not areas_vary_by_row("EPSG:3078")  # oblique Mercator (Michigan)
    assert not areas_vary_by_row("EPSG:5070")  # Albers equal area


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


def _real_crop(tmp_path, size=1500):
    src_path = shared_file("labels/landcover_1m_epsg3857.tif")
    with rasterio.open(src_path) as src:
        win = rasterio.windows.Window(3000, 3500, size, size)
        data = src.read(1, window=win)
        t = src.window_transform(win)
    path = write_raster(tmp_path / "crop.tif", data, crs="EPSG:3857", nodata=0, transform=t)
    return path, data, t


@pytest.mark.parametrize("connectivity", [4, 8])
def test_chunked_equals_whole_raster_polygonisation_on_real_data(tmp_path, connectivity):
    from rasterio.features import shapes

    path, data, t = _real_crop(tmp_path)
    ref = [int(v) for _, v in shapes(data, mask=data != 0, transform=t, connectivity=connectivity)]
    opts = VectorizeOptions(chunk_size=256, connectivity=connectivity)
    gdf = vectorize(path, opts, scheduler="sync")
    assert len(gdf) == len(ref)
    assert gdf.is_valid.all()
    px = abs(t.a * t.e)
    for code in np.unique(data[data != 0]):
        assert gdf.loc[gdf.class_code == code].geometry.area.sum() == pytest.approx(
            (data == code).sum() * px, rel=1e-9
        )
    # chunking does not matter
    other = vectorize(path, VectorizeOptions(chunk_size=700, connectivity=connectivity))
    assert len(other) == len(gdf)
    # area_m2 is true ground area: Web Mercator areas shrink by cos²(latitude)
    lat = 40.0  # the crop lies near 40 N
    ratio = gdf.area_m2.sum() / gdf.geometry.area.sum()
    assert abs(ratio - np.cos(np.radians(lat)) ** 2) < 0.02


def test_mmu_sieve_is_exact_across_chunks(tmp_path):
    path, data, t = _real_crop(tmp_path, 900)
    from geoseg.area import pixel_area_m2

    px = pixel_area_m2("EPSG:3857", t, data.shape)
    mmu = 50 * px
    a = vectorize(path, VectorizeOptions(mmu=mmu, chunk_size=128), scheduler="sync")
    b = vectorize(path, VectorizeOptions(mmu=mmu, chunk_size=4096), scheduler="sync")
    assert len(a) == len(b) < len(vectorize(path, VectorizeOptions(chunk_size=4096)))
    assert a.is_valid.all()
    for code in set(a.class_code) | set(b.class_code):
        assert a.loc[a.class_code == code].geometry.area.sum() == pytest.approx(
            b.loc[b.class_code == code].geometry.area.sum()
        )
    # the coverage is unchanged, and only islands in nodata stay below the unit
    assert a.geometry.area.sum() == pytest.approx((data != 0).sum() * abs(t.a * t.e))
    small = a[a.geometry.area < 50 * abs(t.a * t.e) - 1e-6]
    union = a.geometry.union_all()
    for g in small.geometry:
        others = a[a.geometry.intersects(g) & ~a.geometry.geom_equals(g)]
        assert others.empty or not (others.geometry.intersection(g).length > 0).any()
    del union


def test_confidence_and_reprojection(tmp_path, tiny_scene, tiny_bundle):
    from geoseg.workflow import run_predict

    run_predict(tiny_scene, tiny_bundle, tmp_path / "o", vector=False)
    labels = tmp_path / "o" / "labels.tif"
    gdf = vectorize(labels, VectorizeOptions(confidence=True, dst_crs="EPSG:4326"))
    assert gdf.crs.to_epsg() == 4326
    assert gdf.mean_confidence.between(1, 100).all()
    with rasterio.open(labels) as src:
        conf = src.read(3)
        valid = src.read(1) != 255
    weighted = (gdf.mean_confidence * gdf.area_m2).sum() / gdf.area_m2.sum()
    assert weighted == pytest.approx(conf[valid].mean(), rel=0.01)


def test_shapefile_is_split_past_the_size_limit(tmp_path):
    from geoseg.errors import ShapefileLimitWarning

    path, _ = _classes(tmp_path)
    gdf = vectorize(path, VectorizeOptions())
    with pytest.warns(ShapefileLimitWarning, match="2 GB"):
        write_vector(gdf, tmp_path / "big.shp", shapefile_limit=200)
    parts = sorted(tmp_path.glob("big_*.shp"))
    assert len(parts) >= 2
    back = pd.concat([gpd.read_file(p) for p in parts])
    assert len(back) == len(gdf)
    assert all((p.with_suffix(".prj")).exists() for p in parts)


def test_cli_exact_and_cartographic_modes(tmp_path):
    from click.testing import CliRunner

    from geoseg.cli import cli

    path, _, _ = _real_crop(tmp_path, 600)
    run = CliRunner().invoke
    r = run(cli, ["vectorize", str(path), "--out", str(tmp_path / "exact.gpkg"), "--mmu", "0",
                  "--simplify", "0", "-q"])  # fmt: skip
    assert r.exit_code == 0, r.output
    exact = gpd.read_file(tmp_path / "exact.gpkg")
    r = run(cli, ["vectorize", str(path), "--out", str(tmp_path / "carto.fgb")])
    assert r.exit_code == 0, r.output
    carto = gpd.read_file(tmp_path / "carto.fgb")
    assert len(carto) < len(exact)
    assert carto.is_valid.all()
    # the simplified coverage has no gaps or overlaps
    assert carto.geometry.union_all().area == pytest.approx(carto.geometry.area.sum(), rel=1e-6)
    # and the default simplification removes the staircase (half a pixel removed none)
    r = run(cli, ["vectorize", str(path), "--out", str(tmp_path / "sieved.fgb"), "--simplify", "0"])
    assert r.exit_code == 0, r.output
    sieved = gpd.read_file(tmp_path / "sieved.fgb")
    vertices = [shapely.get_num_coordinates(g.geometry.to_numpy()).sum() for g in (carto, sieved)]
    assert len(carto) == len(sieved) and vertices[0] < 0.7 * vertices[1], vertices


def test_a_multi_band_image_is_polygonised_from_band_1_with_a_warning(tmp_path, caplog):
    data = np.stack([np.repeat(np.arange(4, dtype=np.uint8), 8).reshape(4, 8)] * 3)
    path = write_raster(tmp_path / "rgb.tif", data)
    with caplog.at_level("WARNING", logger="geoseg"):
        gdf = vectorize(path, scheduler="sync")
    assert "rgb.tif: not a geoseg labels.tif and it has 3 bands" in caplog.text
    assert sorted(gdf["class_code"]) == [0, 1, 2, 3]


def test_band_3_of_geoseg_labels_is_named_as_confidence(tmp_path, tiny_scene, tiny_bundle, caplog):
    from geoseg.workflow import run_predict

    run_predict(tiny_scene, tiny_bundle, tmp_path / "o", vector=False, scheduler="sync")
    with caplog.at_level("WARNING", logger="geoseg"):
        gdf = vectorize(tmp_path / "o" / "labels.tif", VectorizeOptions(band=3), scheduler="sync")
    assert "--band 3 polygonises its confidence (1-100), not classes" in caplog.text
    assert "class_code" in gdf and "coarse_name" not in gdf


# agreement with GDAL's raster sieve (ties and chains of small regions may go another
# way); taking the other connectivity's neighbours gives 0.9940, 0.9867 and 0.99972
# (one case in the default suite, ~30 s each; `pytest -m slow` runs the other two)
@pytest.mark.parametrize(
    ("pixels", "connectivity", "agreement"),
    [
        (4, 4, 0.9999),
        pytest.param(23, 4, 0.999, marks=pytest.mark.slow),
        pytest.param(6, 8, 0.99995, marks=pytest.mark.slow),
    ],
)
def test_mmu_sieve_matches_gdal_sieve_on_real_labels(tmp_path, pixels, connectivity, agreement):
    # NLCD over Zion: thousands of small regions beside large ones with thousands of holes
    # (the sieve used to take minutes and over 20 GB here; now seconds)
    from rasterio.features import rasterize, sieve

    from geoseg.area import pixel_area_m2

    path = shared_file("zion/nlcd2011_level2.tif")
    with rasterio.open(path) as src:
        data, t, crs, nodata = src.read(1), src.transform, src.crs, src.nodata
    valid = data != nodata
    mmu = (pixels - 0.5) * pixel_area_m2(crs, t, data.shape)
    opts = VectorizeOptions(mmu=mmu, simplify=0, connectivity=connectivity, chunk_size=300)
    gdf = vectorize(path, opts)
    assert gdf.is_valid.all()
    ours = rasterize(
        zip(gdf.geometry, gdf.class_code, strict=True),
        out_shape=data.shape,
        transform=t,
        fill=int(nodata),
        dtype="uint8",
    )
    ref = sieve(data, pixels, connectivity=connectivity, mask=valid)
    assert (ours == np.where(valid, ref, nodata)).mean() >= agreement
    whole = vectorize(path, VectorizeOptions(**{**opts.__dict__, "chunk_size": 4096}))
    assert len(whole) == len(gdf)
    assert sorted(shapely.area(whole.geometry.values)) == sorted(shapely.area(gdf.geometry.values))


@pytest.mark.parametrize(
    "opts",
    [
        VectorizeOptions(),
        VectorizeOptions(simplify=2.0, mmu=4.0),
        VectorizeOptions(simplify=2.0, dst_crs="EPSG:4326"),
    ],
    ids=["exact", "simplified", "reprojected"],
)
def test_rings_follow_the_right_hand_rule_in_every_mode(tmp_path, opts):
    """Exteriors counter-clockwise, holes clockwise, as geodesic area tools read signed
    rings (simplified polygons had holes wound like their exteriors: a blind user test
    summed 7 % too much geodesic area)."""
    path, _, _ = _real_crop(tmp_path, size=600)
    gdf = vectorize(path, opts)
    polys = [p for g in gdf.geometry for p in getattr(g, "geoms", [g])]
    assert sum(len(p.interiors) for p in polys) >= 5
    assert all(shapely.is_ccw(p.exterior) for p in polys)
    assert not any(shapely.is_ccw(r) for p in polys for r in p.interiors)


def test_an_image_given_as_labels_is_refused_at_once(tmp_path):
    scene = shared_file("zion/landsat8_b2345.tif")
    with pytest.raises(RasterFormatError, match=r"band 1 holds [0-9,]+ distinct values .*image"):
        vectorize(scene, VectorizeOptions())
    # a class raster of many codes (a detailed legend) is still polygonised
    codes = (np.arange(64 * 64, dtype=np.uint16) % 1500).reshape(64, 64)
    many = write_raster(tmp_path / "many.tif", codes)
    assert vectorize(many, VectorizeOptions())["class_code"].nunique() == 1500
    # a raster of segment ids (3,600 segments of 10 x 10 px): refused as an image unless
    # --ids says what it is (a blind test had no way to polygonise one)
    ids = np.repeat(np.repeat(np.arange(1, 3601, dtype=np.uint16).reshape(60, 60), 10, 0), 10, 1)
    segments = write_raster(tmp_path / "segments.tif", ids)
    with pytest.raises(RasterFormatError, match=r"or (--)?ids if its values are identifiers"):
        api.vectorize(segments, mmu=0, simplify=0)
    layers = api.vectorize(segments, mmu=0, simplify=0, ids=True)
    assert len(layers["landcover"]) == 3600
    assert layers["landcover"]["area_m2"].to_numpy() == pytest.approx(100 * 900)


def test_pixel_areas_of_a_rotated_grid():
    """Found by review: pixels were measured as the box of two opposite corners."""
    from affine import Affine

    from geoseg.area import pixel_areas

    origin = Affine.translation(-210_000, 4_158_000)  # Zion in zone 13: areas vary
    north_up = origin @ Affine.scale(30, -30)
    rotated = origin @ Affine.rotation(20) @ Affine.scale(30, -30)
    a = pixel_areas("EPSG:32613", north_up, 0, 4, 0, 4)
    b = pixel_areas("EPSG:32613", rotated, 0, 4, 0, 4)
    np.testing.assert_allclose(b, a, rtol=1e-4)  # the same ground, turned
    assert b.mean() == pytest.approx(889.6, rel=1e-3)  # 900 m² planar, 8 deg off the meridian


def test_a_map_geoseg_did_not_write_gets_its_classes_by_its_taxonomy(tmp_path):
    """NLCD level 2 with --taxonomy: both levels' codes and names and a coarse layer, as
    a geoseg map's (a blind test found plain codes the only way); codes the taxonomy
    does not list are left out with a warning; --band and --taxonomy contradict."""
    nlcd = shared_file("zion/nlcd2011_level2.tif")
    tax = NLCD_YAML
    with rasterio.open(nlcd) as src:
        codes = src.read(1)
    layers = api.vectorize(nlcd, tmp_path / "nlcd.gpkg", mmu=0, simplify=0, taxonomy=tax)
    fine = layers["landcover"]
    assert {"coarse_code", "coarse_name", "fine_code", "fine_name"} <= set(fine.columns)
    by_code = fine.groupby("fine_code")["area_m2"].sum()
    for code in (11, 42, 95):
        assert by_code[code] == pytest.approx((codes == code).sum() * 900.0)
    assert set(fine.loc[fine["fine_code"] == 41, "fine_name"]) == {"Deciduous Forest"}
    assert set(fine.loc[fine["fine_code"] == 41, "coarse_code"]) == {4}
    coarse = layers["coarse"].groupby("coarse_code")["area_m2"].sum()
    assert coarse[4] == pytest.approx(np.isin(codes, (41, 42, 43)).sum() * 900.0)
    assert "layer_styles" in {n for n, _ in pyogrio.list_layers(tmp_path / "nlcd.gpkg")}
    odd = codes.copy()
    odd[:10, :10] = 99
    stray = write_raster(tmp_path / "odd.tif", odd[None], transform=src.transform, nodata=255)
    with pytest.warns(GeosegWarning, match=r"99 .*left out of the polygons"):
        got = api.vectorize(stray, mmu=0, simplify=0, taxonomy=tax)["landcover"]
    assert got["area_m2"].sum() == pytest.approx(((odd != 255) & (odd != 99)).sum() * 900.0)
    with pytest.raises(ConfigError, match=r"band.* give one of them"):
        api.vectorize(nlcd, band=1, taxonomy=tax)
