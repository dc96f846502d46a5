"""Vector labels: features with a class attribute burnt onto an image's grid.

The oracle for burning is independent of GDAL: a pixel is labelled when shapely finds
its centre inside a polygon. On real data, polygons made from the Zion and Slovenia
label rasters must give back those rasters exactly, for training and for evaluation.
"""

from __future__ import annotations

import json
import warnings

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
import yaml
from rasterio.features import shapes
from rasterio.transform import from_origin
from rasterio.windows import Window
from shapely.geometry import Point, box, shape

from geoseg.errors import (
    ConfigError,
    InconsistentLabelsWarning,
    RasterFormatError,
    RasterReadError,
    UnknownCodeWarning,
    UnlabelledFeaturesWarning,
)
from geoseg.taxonomy import load_taxonomy
from geoseg.vector_labels import VectorField, is_vector, level_field, open_vector_labels

from .conftest import NLCD_YAML, ROOT, shared_file, write_raster

CRS = "EPSG:32612"
T = from_origin(300000, 4100000, 30, 30)
GRID = {"width": 40, "height": 30, "crs": CRS, "transform": T}


def _open(path, field="fine_code", grid=GRID, **spec):
    return open_vector_labels(
        path, VectorField(field, "fine_field", **spec), **grid, what="label", target="the image"
    )


def _write(path, geoms, crs=CRS, layer=None, **columns):
    gpd.GeoDataFrame(columns, geometry=list(geoms), crs=crs).to_file(path, layer=layer)
    return path


def _centres_inside(poly, grid=GRID):
    """Oracle: pixels whose centre lies inside ``poly`` (shapely, not GDAL)."""
    rows, cols = np.mgrid[0 : grid["height"], 0 : grid["width"]]
    x, y = grid["transform"] * (cols + 0.5, rows + 0.5)
    return shapely.contains_xy(poly, x, y)


def test_polygons_label_the_pixels_whose_centre_they_cover(tmp_path):
    # edges off the pixel grid, a hole and a slanted side: the centre rule decides
    outer = shapely.Polygon(
        [(300100, 4099900), (300800, 4099950), (300900, 4099300), (300130, 4099250)],
        holes=[[(300400, 4099700), (300500, 4099700), (300500, 4099600), (300400, 4099600)]],
    )
    other = box(301000, 4099500, 301170, 4099140)
    path = _write(tmp_path / "l.gpkg", [outer, other], fine_code=[41, 42])
    with _open(path) as labels:
        got = labels.read(1)
    want = np.full((30, 40), -1)
    want[_centres_inside(outer)] = 41
    want[_centres_inside(other)] = 42
    assert (want == 41).sum() > 300 and (want == 42).sum() > 40
    np.testing.assert_array_equal(got, want)


def test_windows_read_the_same_pixels_as_the_whole_grid(tmp_path):
    rng = np.random.default_rng(0)
    polys = [
        Point(300000 + x, 4100000 - y).buffer(r)
        for x, y, r in zip(
            rng.uniform(0, 1200, 25), rng.uniform(0, 900, 25), rng.uniform(20, 150, 25), strict=True
        )
    ]
    # disjoint: each circle loses what earlier ones took, so no pixel has two classes
    taken = shapely.Polygon()
    parts = []
    for p in polys:
        parts.append(p.difference(taken))
        taken = taken.union(p)
    path = _write(tmp_path / "c.gpkg", parts, fine_code=list(range(1, 26)))
    with _open(path) as labels:
        whole = labels.read(1)
        strips = np.vstack([labels.read(1, window=Window(0, r, 40, 7)) for r in range(0, 30, 7)])
        tile = labels.read(1, window=Window(13, 9, 11, 5))
    np.testing.assert_array_equal(strips, whole)
    np.testing.assert_array_equal(tile, whole[9:14, 13:24])
    assert len(np.unique(whole)) > 10


def test_overlapping_features_of_different_classes_leave_their_pixels_unlabelled(tmp_path):
    a = box(300000, 4099700, 300300, 4099400)  # cols 0-9, rows 10-19
    b = box(300150, 4099700, 300450, 4099400)  # cols 5-14: overlaps a on cols 5-9
    same = box(300000, 4099190, 300150, 4099280)  # inside c: same class, no conflict
    c = box(300000, 4099190, 300300, 4099280)  # rows 24-26, cols 0-9
    path = _write(tmp_path / "o.gpkg", [a, b, same, c], fine_code=[41, 42, 52, 52])
    warns = pytest.warns(InconsistentLabelsWarning, match=r"50 pixels lie under overlapping")
    with warns, _open(path) as labels:
        got = labels.read(1)
    assert (got[10:20, 0:5] == 41).all() and (got[10:20, 10:15] == 42).all()
    assert (got[10:20, 5:10] == -1).all()
    assert (got[24:27, 0:10] == 52).all() and (got == 52).sum() == 30


def test_points_and_lines_label_the_pixels_they_fall_in(tmp_path):
    pts = [Point(300045, 4099955), Point(300615, 4099385)]  # pixel (1, 1) and (20, 20)
    line = shapely.LineString([(300005, 4099115), (300295, 4099115)])  # row 29, cols 0-9
    path = _write(tmp_path / "p.gpkg", [*pts, line], fine_code=[11, 12, 13])
    with _open(path) as labels:
        got = labels.read(1)
    assert got[1, 1] == 11 and got[20, 20] == 12
    assert (got[29, 0:10] == 13).all()
    assert (got >= 0).sum() == 12


def test_reprojected_features_land_on_the_same_pixels(tmp_path):
    poly = box(300100, 4099750, 300800, 4099300)
    native = _write(tmp_path / "n.gpkg", [poly], fine_code=[41])
    geographic = tmp_path / "g.gpkg"
    gpd.read_file(native).to_crs("EPSG:4326").to_file(geographic)
    with _open(native) as a, _open(geographic) as b:
        np.testing.assert_array_equal(a.read(1), b.read(1))


def test_class_names_are_matched_to_the_taxonomy(tmp_path):
    tax = load_taxonomy(NLCD_YAML)
    names = tax.codes_by_name("fine")
    geoms = [box(300000 + 60 * i, 4099970, 300030 + 60 * i, 4100000) for i in range(5)]
    path = _write(
        tmp_path / "n.gpkg",
        geoms,
        label=["Evergreen Forest", "evergreen forest ", "82", "Forrest", None],
    )
    with (
        pytest.warns(UnlabelledFeaturesWarning) as caught,
        _open(path, field="label", names=names) as labels,
    ):
        got = labels.read(1)
    assert len(caught) == 1 and "1 label features name no class" in str(caught[0].message)
    assert "'Forrest' (1)" in str(caught[0].message)  # the empty one is not warned of
    assert got[0, 0] == got[0, 2] == 42 and got[0, 4] == 82
    assert got[0, 6] == -1 and got[0, 8] == -1


def test_a_name_that_classes_share_must_be_given_as_a_code(tmp_path):
    path = _write(tmp_path / "s.gpkg", [box(300000, 4099970, 300030, 4100000)], label=["Other"])
    with pytest.raises(RasterFormatError, match="'Other' name several classes"):
        _open(path, field="label", names={"Other": None, "Water": 5})


def test_whole_numbers_stored_as_reals_are_codes_and_fractions_are_refused(tmp_path):
    geom = [box(300000, 4099970, 300030, 4100000)]
    with _open(_write(tmp_path / "r.gpkg", geom, fine_code=[41.0])) as labels:
        assert labels.read(1)[0, 0] == 41
    with pytest.raises(RasterFormatError, match=r"holds 41.5, which is not a class code"):
        _open(_write(tmp_path / "f.gpkg", geom, fine_code=[41.5]))


def test_bad_vector_inputs_get_one_line_errors(tmp_path):
    geom = [box(300000, 4099970, 300030, 4100000)]
    path = _write(tmp_path / "a.gpkg", geom, lc=[41], name=["x"])
    with pytest.raises(
        RasterFormatError,
        match=r"no attribute 'fine_code'; its attributes are 'lc', 'name': set fine_field",
    ):
        _open(path)
    with pytest.raises(RasterFormatError, match=r"no layer 'fields' .* its layers are 'a'"):
        _open(path, field="lc", layer="fields")
    far = _write(tmp_path / "far.gpkg", [box(500000, 4099970, 500030, 4099940)], fine_code=[41])
    with pytest.raises(RasterFormatError, match=r"no label feature .* lies on the image: in"):
        _open(far)
    with pytest.warns(UserWarning, match="'crs' was not provided"):  # pyogrio's
        bare = _write(tmp_path / "bare.gpkg", geom, crs=None, fine_code=[41])
    with pytest.raises(RasterFormatError, match=r"have no CRS.*ogr2ogr -a_srs"):
        _open(bare)
    with pytest.raises(RasterFormatError, match="has no CRS, so they cannot be placed"):
        _open(path, field="lc", grid={**GRID, "crs": None})
    with pytest.raises(RasterReadError, match="file not found"):
        _open(tmp_path / "missing.gpkg")
    (tmp_path / "junk.geojson").write_text("not json")
    with pytest.raises(RasterReadError, match="not a readable vector file"):
        _open(tmp_path / "junk.geojson")


def test_the_first_layer_with_geometries_is_read_unless_one_is_named(tmp_path):
    path = tmp_path / "two.gpkg"
    _write(path, [box(300000, 4099970, 300030, 4100000)], layer="first", fine_code=[41])
    _write(path, [box(300000, 4099970, 300030, 4100000)], layer="second", fine_code=[42])
    with _open(path) as labels:
        assert labels.read(1)[0, 0] == 41
    with _open(path, layer="second") as labels:
        assert labels.read(1)[0, 0] == 42


def test_geoparquet_and_features_without_crs_on_a_grid_without_crs(tmp_path):
    path = tmp_path / "l.parquet"
    # a grid without georeferencing: features in pixel coordinates (x = column, y = row)
    frame = gpd.GeoDataFrame({"fine_code": [41], "geom": [box(2, 3, 6, 5)]}, geometry="geom")
    frame.to_parquet(path)  # a geometry column not named "geometry"
    grid = {"width": 8, "height": 8, "crs": None, "transform": rasterio.Affine.identity()}
    with _open(path, grid=grid) as labels:
        got = labels.read(1)
    assert (got[3:5, 2:6] == 41).all() and (got >= 0).sum() == 8


def test_is_vector_goes_by_the_file_ending():
    assert is_vector("a/b.shp") and is_vector("x.FGB") and is_vector("s3://b/l.parquet")
    assert not is_vector("labels.tif") and not is_vector("labels.vrt")


# --------------------------------------------------------------- real data, end to end
def _polygons(raster, out, field, crs=None):
    """The label raster's pixels as polygons (one per connected run of a code)."""
    with rasterio.open(raster) as src:
        a = src.read(1)
        found = list(shapes(a.astype("int32"), mask=a != src.nodata, transform=src.transform))
        frame = gpd.GeoDataFrame(
            {field: [int(v) for _, v in found]}, geometry=[shape(g) for g, _ in found], crs=src.crs
        )
    (frame.to_crs(crs) if crs else frame).to_file(out)
    return out


def test_slovenia_polygons_train_on_the_same_labels_as_its_rasters(tmp_path):
    """A config with GeoPackage labels loads exactly the scene its rasters give."""
    from geoseg.config import load_train_config
    from geoseg.labelled import config_scenes

    img = shared_file("slovenia/s2_l1c_2015-07-11.tif")
    polys = tmp_path / "labels"
    polys.mkdir()
    _polygons(img.parent / "lulc_coarse.tif", polys / "lulc.gpkg", "LULC")
    _polygons(img.parent / "raba_fine.tif", polys / "raba.gpkg", "fine_code")
    tax = str(ROOT / "configs" / "taxonomy" / "slovenia.yaml")
    base = {"name": "v", "taxonomy": tax, "split": {"block": 32, "val_every": 4}}
    raster = {
        "image": str(img),
        "coarse": str(img.parent / "lulc_coarse.tif"),
        "fine": str(img.parent / "raba_fine.tif"),
    }
    vector = {
        "image": str(img),
        "coarse": "labels/lulc.gpkg",
        "fine": "labels/raba.gpkg",
        "coarse_field": "LULC",
    }
    loaded = []
    for i, source in enumerate((raster, vector)):
        path = tmp_path / f"c{i}.yaml"
        path.write_text(yaml.safe_dump({**base, "data": {"sources": [source]}}))
        cfg = load_train_config(path)
        with pytest.warns(UnknownCodeWarning, match="1600"):
            loaded.append(config_scenes(cfg, load_taxonomy(tax))[0])
    a, b = loaded
    assert (a.coarse >= 0).sum() > 9000
    np.testing.assert_array_equal(a.coarse, b.coarse)
    np.testing.assert_array_equal(a.fine, b.fine)
    np.testing.assert_array_equal(a.role, b.role)


def test_a_vector_field_for_raster_labels_is_a_config_error(tmp_path):
    from geoseg.config import load_train_config

    img = shared_file("slovenia/s2_l1c_2015-07-11.tif")
    path = tmp_path / "c.yaml"
    source = {"image": str(img), "fine": str(img.parent / "raba_fine.tif"), "fine_field": "x"}
    tax = str(ROOT / "configs" / "taxonomy" / "slovenia.yaml")
    path.write_text(yaml.safe_dump({"name": "v", "taxonomy": tax, "data": {"sources": [source]}}))
    with pytest.raises(
        ConfigError, match=r"fine_field name.* its labels are not vector files .*\.shp\.zip"
    ):
        load_train_config(path)


def test_tiny_pixels_burn_the_same_in_any_band_of_rows(tmp_path):
    """Ties on pixel centres fall the same way in every band (geometries are burnt in
    the grid's pixel coordinates, not re-derived per band from a fractional transform)."""
    t = from_origin(300000.05, 4100000.05, 0.1, 0.1)
    grid = {"width": 300, "height": 300, "crs": CRS, "transform": t}
    rng = np.random.default_rng(3)
    tris = []
    for _ in range(40):  # vertices on pixel centres: the worst case for ties
        rc = rng.integers(0, 300, (3, 2)) + 0.5
        tris.append(shapely.Polygon([t * (c, r) for r, c in rc]))
    # disjoint classes: each triangle keeps what earlier ones did not take
    taken, parts = shapely.Polygon(), []
    for p in tris:
        parts.append(p.difference(taken))
        taken = taken.union(p)
    path = _write(tmp_path / "t.gpkg", parts, fine_code=list(range(1, 41)))
    with _open(path, grid=grid) as labels:
        whole = labels.read(1)
        rows = np.vstack([labels.read(1, window=Window(0, r, 300, 1)) for r in range(300)])
    assert (whole >= 0).sum() > 1000
    np.testing.assert_array_equal(rows, whole)


def test_a_continent_in_degrees_labels_a_utm_grid(tmp_path):
    """A polygon far beyond the target projection's valid area is clipped first."""
    path = _write(tmp_path / "c.gpkg", [box(-180, 0, 0, 90)], crs="EPSG:4326", fine_code=[52])
    with _open(path) as labels:
        assert (labels.read(1) == 52).all()


def test_projected_coordinates_in_a_geojson_without_crs_are_explained(tmp_path):
    """GeoJSON without a 'crs' member is longitude/latitude: UTM numbers are not."""
    path = tmp_path / "utm.geojson"
    feature = {
        "type": "Feature",
        "properties": {"fine_code": 41},
        "geometry": shapely.geometry.mapping(box(300100, 4099700, 300500, 4099400)),
    }
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    with pytest.raises(RasterFormatError, match=r"longitude/latitude in degrees.*ogr2ogr -a_srs"):
        _open(path)


def test_names_of_the_other_level_and_numbers_as_text(tmp_path):
    tax = load_taxonomy(NLCD_YAML)
    geoms = [box(300000 + 60 * i, 4099970, 300030 + 60 * i, 4100000) for i in range(3)]
    path = _write(tmp_path / "o.gpkg", geoms, label=["41.0", "Forest", "4²"])
    vector = level_field({"fine": VectorField("label", "fine_field")}, "fine", tax)
    with pytest.warns(UnlabelledFeaturesWarning) as caught:
        labels = open_vector_labels(path, vector, **GRID, what="label", target="the image")
    assert labels.read(1)[0, 0] == 41 and (labels.read(1)[0, 1:] == -1).all()
    assert "'4²' (1)" in str(caught[0].message) and "'Forest'" in str(caught[0].message)
    only_coarse = _write(tmp_path / "c.gpkg", geoms[:2], label=["Forest", "water"])
    hint = pytest.warns(UnlabelledFeaturesWarning, match=r"they are coarse classes of the")
    with hint, pytest.raises(RasterFormatError, match="none of the 2 label features on the"):
        open_vector_labels(only_coarse, vector, **GRID, what="label", target="the image")


def test_blank_classes_are_unlabelled_and_classless_features_explained(tmp_path):
    tax = load_taxonomy(NLCD_YAML)
    geoms = [box(300000 + 60 * i, 4099970, 300030 + 60 * i, 4100000) for i in range(3)]
    path = _write(tmp_path / "b.gpkg", geoms, label=["Evergreen Forest", "", "  "])
    vector = level_field({"fine": VectorField("label", "fine_field")}, "fine", tax)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # blanks are no misspelt names
        labels = open_vector_labels(path, vector, **GRID, what="label", target="the image")
    assert labels.read(1)[0, 0] == 42 and (labels.read(1)[0, 1:] == -1).all()
    # every feature on the image has a name of the other level: the error says so, not
    # that the features are elsewhere
    coarse = _write(tmp_path / "c.gpkg", geoms, label=["Forest", "Water", "Forrest"])
    hint = pytest.warns(UnlabelledFeaturesWarning, match=r"2 of those 3 names are coarse classes")
    with hint, pytest.raises(RasterFormatError, match=r"none of the 3 label features on the"):
        open_vector_labels(coarse, vector, **GRID, what="label", target="the image")


def test_zipped_shapefiles_and_a_default_layer_without_the_field(tmp_path):
    import zipfile

    geom = [box(300000, 4099970, 300030, 4100000)]
    _write(tmp_path / "s.shp", geom, fine_code=[41])
    with zipfile.ZipFile(tmp_path / "s.shp.zip", "w") as z:
        for ext in ("shp", "shx", "dbf", "prj", "cpg"):
            z.write(tmp_path / f"s.{ext}", f"s.{ext}")
    assert is_vector(tmp_path / "s.shp.zip")
    with _open(tmp_path / "s.shp.zip") as labels:
        assert labels.read(1)[0, 0] == 41
    two = tmp_path / "qgis.gpkg"
    _write(two, geom, layer="aoi_notes", note=["study area"])
    _write(two, geom, layer="training_areas", fine_code=[42])
    with pytest.raises(RasterFormatError, match=r"layer 'training_areas' has it: set fine_layer"):
        _open(two, layer_option="fine_layer")


def test_the_off_image_error_gives_the_image_s_own_bounds(tmp_path):
    far = _write(tmp_path / "far.gpkg", [box(500000, 4099970, 500030, 4100000)], fine_code=[41])
    with pytest.raises(RasterFormatError, match=r"the image x 300000\.\.301200, y 4\.0991e\+06"):
        _open(far)


def test_one_vector_file_labels_every_image_of_a_pattern(tmp_path):
    """Chips share one GeoPackage (in their folder, which the pattern also matches): each
    chip takes the features on its own grid, a chip off the features is unlabelled, and
    warnings about the file come once for all chips."""
    from geoseg.config import load_train_config
    from geoseg.labelled import config_scenes

    chips = tmp_path / "chips"
    chips.mkdir()
    rng = np.random.default_rng(1)
    for i in (0, 1, 5):  # chips 0 and 1 side by side (32 px = 960 m), chip 5 far off
        t = from_origin(300000 + 960 * i, 4100000, 30, 30)
        data = rng.integers(0, 1000, (3, 32, 32)).astype(np.uint16)
        write_raster(chips / f"c{i}.tif", data, transform=t)
    # one polygon across both chips, another on the second only, a misspelt one on each
    _write(
        chips / "fields.gpkg",
        [
            box(300000, 4100000, 301920, 4099520),
            box(301000, 4099400, 301300, 4099100),
            box(300000, 4099100, 300030, 4099070),
            box(300960, 4099100, 300990, 4099070),
        ],
        crop=["Evergreen Forest", "Cultivated Crops", "Pastur", "Pastur"],
    )
    path = tmp_path / "c.yaml"
    source = {
        "image": "chips/*",
        "fine": "chips/fields.gpkg",
        "fine_field": "crop",
        "role": "train",
    }
    path.write_text(
        yaml.safe_dump({"name": "v", "taxonomy": str(NLCD_YAML), "data": {"sources": [source]}})
    )
    cfg = load_train_config(path)
    assert [s.image.name for s in cfg.data.sources] == ["c0.tif", "c1.tif", "c5.tif"]
    with pytest.warns(UnlabelledFeaturesWarning) as caught:
        scenes = config_scenes(cfg, tax := load_taxonomy(NLCD_YAML))
    assert len(caught) == 1
    assert "2 label features in 2 of 3 images name no class" in str(caught[0].message)
    fine = [tax.fine_codes[np.maximum(s.fine, 0)] * (s.fine >= 0) for s in scenes]
    assert (fine[0][:16] == 42).all() and (fine[0][16:] == 0).all()
    assert (fine[1][:16] == 42).all() and (fine[1][20:30, 1:11] == 82).all()
    assert (fine[1] == 82).sum() == 100
    assert (scenes[2].fine == -1).all()


def test_evaluate_scores_vector_truth_as_its_raster(tmp_path, zion_prediction):
    """Zion's NLCD as polygons in another CRS scores the committed bundle as the raster does."""
    from click.testing import CliRunner

    from geoseg.cli import cli

    l2 = shared_file("zion/nlcd2011_level2.tif")
    polys = _polygons(l2, tmp_path / "nlcd.gpkg", "NLCD", crs="EPSG:4326")
    labels = str(zion_prediction / "labels.tif")
    common = ["--checkerboard", "128", "--bootstrap", "0"]
    runner = CliRunner()
    a = runner.invoke(
        cli, ["evaluate", labels, "--fine", str(l2), "-o", str(tmp_path / "r"), *common]
    )
    b = runner.invoke(
        cli,
        [
            "evaluate",
            labels,
            "--fine",
            str(polys),
            "--fine-field",
            "NLCD",
            "-o",
            str(tmp_path / "v"),
            *common,
        ],
    )
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    ra, rv = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("r", "v"))
    for level in ("coarse", "fine"):
        assert rv[level]["confusion_matrix"] == ra[level]["confusion_matrix"]
        assert rv[level]["miou"] == ra[level]["miou"]
        # polygons burnt wall to wall are blocks of pixels, as the raster's: the same area
        # estimates and intervals (a blind test's got the stratified intervals of a
        # sample of points, every pixel a random point: 30 times too narrow)
        assert rv[level]["area"]["interval"] == "block bootstrap"
        assert rv[level]["area"] == ra[level]["area"]
        assert not rv[level]["truth_points"]
    assert "points" not in (tmp_path / "v" / "metrics.md").read_text().split("Mapped:")[0]
    bad = runner.invoke(cli, ["evaluate", labels, "--fine", str(polys), "-o", str(tmp_path / "x")])
    assert bad.exit_code != 0 and "no attribute 'fine_code'" in bad.output
    assert "set --fine-field" in bad.output and "Traceback" not in bad.output
    assert not (tmp_path / "x").exists()
    raster = runner.invoke(cli, ["evaluate", labels, "--fine", str(l2), "--layer", "a", "-o", "y"])
    assert raster.exit_code == 2 and "--layer applies to vector truth" in raster.output
    raster = runner.invoke(
        cli, ["evaluate", labels, "--fine", str(l2), "--coarse-field", "a", "-o", "y"]
    )
    assert raster.exit_code == 2, raster.output
    assert (
        f"--coarse-field applies to vector truth (GeoPackage, Shapefile, GeoJSON...), and {l2}"
        " is not: drop --coarse-field" in " ".join(raster.output.split())
    )
    # both levels' fields of one file (the README's synopsis; a blind test found it refused
    # with "no such truth is not one"): the coarse field is read, not the fine's parents
    both = gpd.read_file(polys)
    both["L1"] = 4  # all Forest: unlike the parents of the NLCD field
    both.to_file(tmp_path / "both.gpkg")
    args = ["--fine", str(tmp_path / "both.gpkg"), "--fine-field", "NLCD", "--coarse-field", "L1"]
    from geoseg.errors import InconsistentTruthWarning

    with pytest.warns(InconsistentTruthWarning, match="not the parent of their fine truth"):
        c = runner.invoke(cli, ["evaluate", labels, *args, "-o", str(tmp_path / "b"), *common])
    assert c.exit_code == 0, c.output
    rb = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert rb["fine"]["confusion_matrix"] == ra["fine"]["confusion_matrix"]
    forest = rb["coarse"]["classes"].index("4 Forest")
    cm = np.asarray(rb["coarse"]["confusion_matrix"])
    assert cm.sum() == np.sum(ra["coarse"]["confusion_matrix"]) == cm[forest].sum()


def test_train_and_evaluate_a_bundle_on_vector_labels(tmp_path):
    """geoseg train and geoseg evaluate --model --config read a config's polygons."""
    from click.testing import CliRunner

    from geoseg.cli import cli

    img = shared_file("slovenia/s2_l1c_2015-07-11.tif")
    _polygons(img.parent / "raba_fine.tif", tmp_path / "raba.gpkg", "fine_code")
    tax = str(ROOT / "configs" / "taxonomy" / "slovenia.yaml")
    base = {
        "name": "v",
        "taxonomy": tax,
        "split": {"checkerboard": 32, "val_every": 2},
        "model": {"encoder_depth": 3, "decoder_channels": [16, 8, 8], "features": 8},
        "train": {
            "epochs": 1,
            "steps_per_epoch": 2,
            "batch_size": 2,
            "patch_size": 32,
            "tile_size": 64,
            "halo": 16,
            "device": "cpu",
        },
    }
    configs = {}
    for kind, fine in (("raster", str(img.parent / "raba_fine.tif")), ("vector", "raba.gpkg")):
        configs[kind] = tmp_path / f"{kind}.yaml"
        source = {"image": str(img), "fine": fine}
        configs[kind].write_text(yaml.safe_dump({**base, "data": {"sources": [source]}}))
    runner = CliRunner()
    with pytest.warns(UnknownCodeWarning, match="1600"):
        res = runner.invoke(cli, ["train", str(configs["vector"]), "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "b" / "bundle.json").read_text())
    assert meta["training"]["data"]
    scores = {}
    for kind, cfg in configs.items():
        out = tmp_path / f"eval-{kind}"
        with pytest.warns(UnknownCodeWarning, match="1600"):
            res = runner.invoke(
                cli,
                [
                    "evaluate",
                    "--model",
                    str(tmp_path / "b"),
                    "--config",
                    str(cfg),
                    "--out",
                    str(out),
                    "--bootstrap",
                    "0",
                    "--scheduler",
                    "sync",
                ],
            )
        assert res.exit_code == 0, res.output
        scores[kind] = json.loads((out / "metrics.json").read_text())
    for level in ("coarse", "fine"):
        assert (
            scores["vector"][level]["confusion_matrix"]
            == scores["raster"][level]["confusion_matrix"]
        )
    assert sum(map(sum, scores["vector"]["fine"]["confusion_matrix"])) > 2000


@pytest.mark.filterwarnings("ignore::geoseg.errors.SeenPixelsWarning")  # the whole Zion map
def test_a_geoseg_export_burns_back_onto_its_own_labels(tmp_path, zion_prediction):
    """Zion's polygons as geoseg wrote them (GeoPackage, and a Shapefile's short field
    names) score its labels.tif perfectly at both levels, with the default fields."""
    from click.testing import CliRunner

    from geoseg.cli import cli
    from geoseg.export import SHAPEFILE_FIELDS

    labels, gpkg = zion_prediction / "labels.tif", zion_prediction / "landcover.gpkg"
    shp = tmp_path / "landcover.shp"
    gpd.read_file(gpkg, layer="landcover").rename(columns=SHAPEFILE_FIELDS).to_file(shp)
    runner = CliRunner()
    for truth in (gpkg, shp):
        out = tmp_path / truth.suffix[1:]
        args = ["evaluate", str(labels), "--coarse", str(truth), "--fine", str(truth)]
        res = runner.invoke(cli, [*args, "--out", str(out), "--bootstrap", "0"])
        assert res.exit_code == 0, res.output
        metrics = json.loads((out / "metrics.json").read_text())
        for level in ("coarse", "fine"):
            assert metrics[level]["miou"] == 1.0 and metrics[level]["overall_accuracy"] == 1.0
        assert metrics["pixel_counts"]["valid_in_both"]["fine"] == 1128 * 1428


@pytest.mark.filterwarnings("ignore::geoseg.errors.SeenPixelsWarning")  # the whole Zion map
def test_random_survey_points_estimate_the_zion_class_areas(tmp_path, zion_prediction):
    """The textbook accuracy assessment: reference points drawn at random (here 4,000,
    their class read from NLCD, in EPSG:4326) score the map, and the areas they
    error-adjust come near the true ones, within their stratified 95 % intervals."""
    from click.testing import CliRunner

    from geoseg.cli import cli

    l1, l2 = (shared_file(f"zion/nlcd2011_level{k}.tif") for k in (1, 2))
    with rasterio.open(l2) as src:
        fine, t = src.read(1), src.transform
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, fine.shape[0], 4000), rng.integers(0, fine.shape[1], 4000)
    x, y = t @ (cols + 0.5, rows + 0.5)
    points = gpd.GeoDataFrame(
        {"nlcd": fine[rows, cols].astype(int)}, geometry=gpd.points_from_xy(x, y), crs=CRS
    ).to_crs("EPSG:4326")
    points.to_file(tmp_path / "survey.gpkg")
    out = tmp_path / "r"
    args = [
        "evaluate",
        str(zion_prediction / "labels.tif"),
        "--fine",
        str(tmp_path / "survey.gpkg"),
    ]
    res = CliRunner().invoke(cli, [*args, "--fine-field", "nlcd", "--out", str(out)])
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "metrics.json").read_text())
    with rasterio.open(l1) as src:
        coarse = src.read(1)
    for level, truth in (("coarse", coarse), ("fine", fine)):
        assert metrics[level]["pixels"] > 3900  # a point may fall on the same pixel twice
        off_map = off_estimate = 0.0
        for cls, c in metrics[level]["area"]["classes"].items():
            true = float((truth == int(cls.split()[0])).sum() * 900)
            off_map += abs(c["mapped"] - true)
            off_estimate += abs(c["estimated"] - true)
            if c["ci95"] == [None, None]:  # a tiny mapped class no point fell in
                assert "unsampled_range" in c and c["mapped"] < 1e6, (level, cls)
                continue
            assert c["ci95"][0] <= true <= c["ci95"][1], (level, cls)
        # measured: 63.5 -> 30.0 km² (level 1), 161 -> 37 km² (level 2)
        assert off_estimate < off_map / 2
