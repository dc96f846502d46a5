"""The fixes that messages give are commands that run and do what the message says."""

import inspect
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine, from_origin
from shapely.geometry import Point

from geoseg import api, fixes
from geoseg.errors import GeosegWarning

from .conftest import shared_file, write_raster

BIN = Path(sys.executable).parent


def _run(command: str, cwd: Path, **placeholders: str) -> None:
    """Run the ``rio``/``geoseg`` part of a fix (before ", or "), placeholders filled."""
    ours = command.split(", or ")[0]
    for key, value in placeholders.items():
        ours = ours.replace(key, value)
    argv = shlex.split(ours)
    argv[0] = str(BIN / argv[0])
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{ours}: {done.stderr}"


@pytest.fixture
def image(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(1, 1000, (3, 40, 60)).astype("float32")
    data[:, :4, :4] = 0
    return write_raster(tmp_path / "image.tif", data, crs=None)


def test_every_fix_is_tested():
    tested = {
        "assign_crs",
        "set_nodata",
        "unset_nodata",
        "north_up",
        "one_band",
        "reorder_bands",
        "integer_codes",
        "resample",
        "onto_grid",
        "reproject",
        "georeference",
        "onto_pixels",
        "name_bands",
    }
    public = {n for n, f in inspect.getmembers(fixes, inspect.isfunction) if not n.startswith("_")}
    assert public == tested


def test_georeference_fix(tmp_path, image):
    _run(
        fixes.georeference(image.name),
        tmp_path,
        **{"CRS": "EPSG:32612", "XRES": "30", "ULX": "300000", "YRES": "30", "ULY": "4100000"},
    )
    with rasterio.open(image) as src:
        assert src.crs.to_epsg() == 32612
        assert src.transform == from_origin(300000, 4100000, 30, 30)


def test_fractional_codes_are_rounded_with_their_nodata_kept(tmp_path):
    values = np.array([[[41.999996, 21.4], [11.6, 255.0]]], "float32")
    tagged = write_raster(tmp_path / "t.tif", values, nodata=255)
    _run(fixes.integer_codes(tagged.name, "T.tif", nodata=255), tmp_path)
    untagged = write_raster(tmp_path / "u.tif", values)
    _run(fixes.integer_codes(untagged.name, "U.tif", nodata=None), tmp_path)
    for name in ("T.tif", "U.tif"):
        with rasterio.open(tmp_path / name) as src:
            np.testing.assert_array_equal(src.read(1), [[42, 21], [12, 255]])  # rounded
    with rasterio.open(tmp_path / "T.tif") as src:
        assert src.nodata == 255
    assert fixes.integer_codes("n.tif", nodata=float("nan")).startswith("gdal_translate")


def test_in_place_fixes_edit_cloud_optimized_geotiffs(tmp_path, zion_prediction):
    """rio edit-info refuses a COG (Landsat C2 files, geoseg's labels.tif): geoseg edit."""
    import shutil

    cog = tmp_path / "labels copy.tif"
    shutil.copy(zion_prediction / "labels.tif", cog)
    with rasterio.open(cog) as src:
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        before, tags = src.read(), src.tags()
    _run(fixes.unset_nodata(cog.name), tmp_path)
    _run(fixes.assign_crs(cog.name), tmp_path, **{"EPSG:NNNN": "EPSG:32611"})
    with rasterio.open(cog) as src:
        assert src.nodata is None and src.crs.to_epsg() == 32611
        np.testing.assert_array_equal(src.read(), before)  # pixels and tags kept
        assert src.tags() == tags


def test_paths_with_spaces_are_quoted(tmp_path):
    spaced = write_raster(tmp_path / "my scene.tif", np.ones((1, 4, 4), "uint8"))
    _run(fixes.set_nodata(spaced.name), tmp_path)
    with rasterio.open(spaced) as src:
        assert src.nodata == 0


def test_metadata_fixes(tmp_path, image):
    _run(fixes.assign_crs(image.name), tmp_path, **{"EPSG:NNNN": "EPSG:32612"})
    _run(fixes.set_nodata(image.name), tmp_path)
    with rasterio.open(image) as src:
        assert src.crs.to_epsg() == 32612
        assert src.nodatavals == (0.0, 0.0, 0.0)
    _run(fixes.unset_nodata(image.name), tmp_path)
    with rasterio.open(image) as src:
        assert src.nodatavals == (None, None, None)


def test_band_fixes(tmp_path, image):
    with rasterio.open(image) as src:
        data = src.read()
    _run(fixes.one_band(image.name, "b2.tif"), tmp_path, **{"--bidx N": "--bidx 2"})
    _run(fixes.reorder_bands(image.name), tmp_path, **{"I,J,...": "3,1,2"})
    _run(fixes.integer_codes(image.name, nodata=None), tmp_path)
    _run(fixes.name_bands(image.name), tmp_path, **{"NAME1,NAME2,...": "B4,B3,B2"})
    with rasterio.open(tmp_path / "b2.tif") as src:
        assert src.count == 1
        np.testing.assert_array_equal(src.read(1), data[1])
    with rasterio.open(tmp_path / "REORDERED.tif") as src:
        np.testing.assert_array_equal(src.read(), data[[2, 0, 1]])
    with rasterio.open(tmp_path / "CODES.tif") as src:
        assert src.dtypes[0] == "int32"
        np.testing.assert_array_equal(src.read(), data.astype("int32"))
    with rasterio.open(tmp_path / "NAMED.vrt") as src:
        assert src.descriptions == ("B4", "B3", "B2")


def test_grid_fixes(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.integers(0, 9, (1, 40, 60)).astype("uint8")
    scene = write_raster(tmp_path / "s.tif", data, transform=from_origin(300000, 4100000, 15, 15))
    _run(fixes.resample("s.tif", 30, "average"), tmp_path)
    with rasterio.open(tmp_path / "OUT.tif") as src:
        assert src.res == (30.0, 30.0) and (src.width, src.height) == (30, 20)
    like = write_raster(
        tmp_path / "like.tif",
        np.zeros((1, 10, 10), "uint8"),
        transform=from_origin(300090, 4099910, 30, 30),
    )
    _run(fixes.onto_grid(scene.name, like.name), tmp_path)
    with rasterio.open(tmp_path / "ALIGNED.tif") as src, rasterio.open(like) as ref:
        assert (src.transform, src.width, src.height, src.crs) == (
            ref.transform,
            ref.width,
            ref.height,
            ref.crs,
        )
        # nearest neighbour: every value is one of the scene's
        assert set(np.unique(src.read())) <= set(np.unique(data))


def test_reproject_fix(tmp_path):
    data = np.arange(1, 401, dtype="uint16").reshape(1, 20, 20)
    tile = write_raster(
        tmp_path / "t.tif", data, crs="EPSG:32612", transform=from_origin(300000, 4100000, 30, 30)
    )
    _run(fixes.reproject(tile.name, "EPSG:4326"), tmp_path)
    with rasterio.open(tmp_path / "REPROJECTED.tif") as src:
        assert src.crs.to_epsg() == 4326
        kept = src.read(1)
    assert (kept > 0).sum() >= 0.9 * data.size  # the whole tile, not cut to another's extent


def test_north_up_fix(tmp_path):
    data = np.arange(24, dtype="uint8").reshape(1, 4, 6)
    south_up = write_raster(
        tmp_path / "south.tif", data, transform=Affine(30, 0, 300000, 0, 30, 4100000)
    )
    rotated = shared_file("awkward/rotated.tif")
    for path in (south_up, rotated):
        with rasterio.open(path) as src:
            crs = src.crs.to_string() if src.crs else None
        _run(fixes.north_up(path, crs=crs), tmp_path)
        with rasterio.open(tmp_path / "NORTH_UP.tif") as src:
            t = src.transform
            assert t.b == 0 and t.d == 0 and t.a > 0 and t.e < 0
            if path == south_up:  # the same pixels, rows turned over
                assert (src.width, src.height) == (6, 4)
                np.testing.assert_array_equal(src.read(1), data[0][::-1])
        (tmp_path / "NORTH_UP.tif").unlink()


def test_geoseg_edit_refuses_what_it_cannot_do_in_one_line(tmp_path):
    from .test_cli import _assert_user_error
    from .test_cli import _run as geoseg

    tif = write_raster(tmp_path / "a.tif", np.ones((1, 4, 4), "uint16"))
    _assert_user_error(geoseg("edit", tif), "nothing to change")
    _assert_user_error(geoseg("edit", tif, "--nodata", "0", "--unset-nodata"), "contradict")
    _assert_user_error(geoseg("edit", tif, "--crs", "EPSG:99999999"), "not a coordinate")
    _assert_user_error(geoseg("edit", tif, "--transform", "[1, 2]"), "six finite numbers")
    for bad in ("[30, 0, NaN, 0, -30, Infinity]", "[0, 0, 0, 0, 0, 0]", "[30, 0, true, 0, -30, 1]"):
        _assert_user_error(geoseg("edit", tif, "--transform", bad), "six finite numbers")
    _assert_user_error(geoseg("edit", tif, "--nodata", "-1"), "not a uint16 value")
    _assert_user_error(geoseg("edit", tmp_path / "no.tif", "--nodata", "0"), "file not found")
    # not a raster (a blind test's vector file, text file and folder: a traceback before)
    gpkg = tmp_path / "zones.gpkg"
    gpd.GeoDataFrame({"n": [1]}, geometry=[Point(0, 0)], crs="EPSG:4326").to_file(gpkg)
    (tmp_path / "notes.txt").write_text("hi")
    for other in (gpkg, tmp_path / "notes.txt", tmp_path):
        _assert_user_error(geoseg("edit", other, "--crs", "EPSG:4326"), "not a raster GDAL")
    # a positive pixel height makes the grid south-up: said (a blind test saw it silent)
    with pytest.warns(GeosegWarning, match=r"positive pixel height .* south-up"):
        api.edit(tif, transform=[1.2, 0, 0, 0, 1.2, 0])
    result = geoseg("edit", tif, "--nodata", "7", "--crs", "EPSG:4326")
    assert result.exit_code == 0, result.output
    with rasterio.open(tif) as src:
        assert src.nodata == 7 and src.crs.to_epsg() == 4326
    # a file whose pixels cannot be decoded: edited, and said (a read-through saw it silent)
    corrupt = tmp_path / "corrupt.tif"
    shutil.copy(shared_file("awkward/corrupt.tif"), corrupt)
    with pytest.warns(GeosegWarning, match=r"corrupt\.tif: tags edited, but pixel data cannot be"):
        api.edit(corrupt, nodata=0)
    with rasterio.open(corrupt) as src:
        assert src.nodata == 0
    info = geoseg("info", corrupt)
    assert "note: pixel data cannot be decoded" in info.output and "re-download" in info.output


def test_a_tile_in_another_crs_warped_as_told_joins_the_mosaic_on_its_grid(tmp_path):
    """The fix mosaic gives for a tile in another CRS puts it on the first tile's pixel
    edges, so that the other tiles are read as they are (not resampled)."""
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    from geoseg.errors import RasterFormatError
    from geoseg.mosaic import plan_mosaic

    rng = np.random.default_rng(5)
    west = write_raster(
        tmp_path / "west.tif",
        rng.integers(1, 9, (1, 40, 40), dtype="uint16"),
        transform=from_origin(300000, 4100000, 30, 30),
        nodata=0,
    )
    east_data = rng.integers(1, 9, (40, 40), dtype="uint16")
    # the east tile delivered in the next UTM zone
    t11, w11, h11 = calculate_default_transform(
        "EPSG:32612", "EPSG:32611", 40, 40, *(301200, 4098800, 302400, 4100000)
    )
    east11 = np.zeros((h11, w11), "uint16")
    reproject(
        east_data,
        east11,
        src_transform=from_origin(301200, 4100000, 30, 30),
        src_crs="EPSG:32612",
        dst_transform=t11,
        dst_crs="EPSG:32611",
        resampling=Resampling.nearest,
        dst_nodata=0,
    )
    east = write_raster(
        tmp_path / "east utm11.tif", east11, crs="EPSG:32611", transform=t11, nodata=0
    )
    with pytest.raises(RasterFormatError) as err:
        plan_mosaic([west, east])
    fix = str(err.value).split("reproject it first (")[1].rsplit(")", 1)[0]
    _run(fix, tmp_path)
    mosaic = plan_mosaic([west, tmp_path / "ALIGNED.tif"])
    assert mosaic.transform.a == 30 and not any("west.tif" in w for w in mosaic.warnings)
    assert not any("west.tif" in n for n in mosaic.notes)  # read as it is


def test_fix_strings_hold_crs_wkt_numbers_and_nodata_that_run(tmp_path):
    from rasterio.crs import CRS

    from geoseg.errors import RasterFormatError
    from geoseg.mosaic import plan_mosaic

    aea = CRS.from_proj4("+proj=aea +lat_0=23 +lon_0=-96 +lat_1=29.5 +lat_2=45.5 +datum=WGS84")
    south = write_raster(
        tmp_path / "south aea.tif",
        np.arange(24, dtype="uint8").reshape(1, 4, 6),
        crs=aea.to_wkt(),
        transform=Affine(30, 0, 0, 0, 30, 0),
    )
    _run(fixes.north_up(south.name, crs=aea.to_string()), tmp_path)  # WKT, quoted
    with rasterio.open(tmp_path / "NORTH_UP.tif") as src:
        assert src.transform.e < 0 and (src.width, src.height) == (6, 4)
    deg = 0.000269494585236
    assert f"--res {deg!r}" in fixes.resample("x.tif", deg, "average")
    lowest = float(np.finfo("float32").min)
    assert fixes.integer_codes("f.tif", nodata=lowest).startswith("gdal_translate")
    assert fixes.integer_codes("f.tif", nodata=-9999.5).startswith("gdal_translate")
    # a tile without a CRS beside one with: give it that CRS
    bare = write_raster(tmp_path / "bare.tif", np.ones((1, 4, 4), "uint8"), crs=None)
    utm = write_raster(tmp_path / "utm.tif", np.ones((1, 4, 4), "uint8"))
    with pytest.raises(RasterFormatError, match=r"bare\.tif: has no CRS.*geoseg edit"):
        plan_mosaic([bare, utm])
