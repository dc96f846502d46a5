"""The check of a scene's values against the bundle's training statistics, before predicting."""

import csv
import json
import logging
import math
import re

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from geoseg.batch import BatchItem, run_batch
from geoseg.bundle import read_meta
from geoseg.cli import cli
from geoseg.infer import match_bands
from geoseg.normalize import (
    MAX_MEDIAN_Z,
    Normalization,
    check_input_range,
    untagged_fill_warning,
)
from geoseg.raster import open_scene, sample_bands
from geoseg.workflow import run_predict

from .conftest import ZION_BUNDLE, shared_file, write_raster

UNITS = "different units or scaling than the training data"


@pytest.fixture(scope="module")
def reflectance_scene(tmp_path_factory, tiny_scene):
    """The tiny uint16 DN scene divided by 10 000: float reflectance, nodata kept."""
    with rasterio.open(tiny_scene) as src:
        dn = src.read()
    data = np.where(dn == 65535, -9999.0, dn / 10000.0).astype(np.float32)
    path = tmp_path_factory.mktemp("refl") / "refl.tif"
    return write_raster(path, data, nodata=-9999.0, names=("B2", "B3", "B4", "B5"))


def _warnings(caplog):
    return [r for r in caplog.records if r.levelno == logging.WARNING]


# ------------------------------------------------------------------ pure comparison
def test_in_range_scene_gives_no_warning():
    norm = Normalization(mean=(1000.0, 2000.0), std=(300.0, 500.0))
    check = check_input_range([1500.0, 2200.0], [250.0, 600.0], norm, ["B2", "B3"])
    assert check.warning is None and check.out_of_range == ()
    assert [round(b.z, 2) for b in check.bands] == [1.67, 0.4]


def test_dn_into_a_reflectance_bundle_names_band_values_and_fix():
    norm = Normalization(mean=(0.07, 0.25), std=(0.04, 0.08))
    check = check_input_range(
        [9511.0, 15774.0], [1033.0, 2201.0], norm, ["B2", "B5"], scene_bands=(3, 4), path="x.tif"
    )
    assert check.out_of_range == ("B2", "B5")
    msg = check.warning
    assert msg is not None and "\n" not in msg
    assert msg.startswith("x.tif: band 3 (B2) has median 9511")
    assert "0.07 +- 0.04" in msg and "2 of 2 bands out of range" in msg and UNITS in msg
    assert "rescale the image or use a bundle trained on such data" in msg


def test_reflectance_into_a_dn_bundle_caught_by_spread_where_the_median_is_close():
    # A dark DN band whose mean is within 6 std of 0: the median alone would pass it.
    norm = Normalization(mean=(800.0,), std=(400.0,))
    check = check_input_range([0.08], [0.03], norm, ["B2"])
    assert abs(check.bands[0].z) < MAX_MEDIAN_Z
    assert check.out_of_range == ("B2",)
    # 0.03 against 400: a ratio below 1 is said as a fraction (a blind test: "6.9e-05 times")
    assert "(1/13,000 of the training spread;" in str(check.warning)
    wide = check_input_range([800.0], [60000.0], norm, ["B2"])
    assert "150 times the training spread" in str(wide.warning)


def test_threshold_edges_constant_band_and_empty_sample():
    norm = Normalization(mean=(100.0, 100.0), std=(10.0, 10.0))
    # 5.9 std away and 50x the spread pass; 6.1 std away or 101x the spread do not
    assert check_input_range([159.0], [500.0], norm, ["a"]).warning is None
    assert check_input_range([161.0], [10.0], norm, ["a"]).out_of_range == ("a",)
    assert check_input_range([100.0], [1010.0], norm, ["a"]).out_of_range == ("a",)
    # a constant band is judged by its median only
    assert check_input_range([100.0], [0.0], norm, ["a"]).warning is None
    # no valid pixel sampled: nothing to judge
    empty = check_input_range([math.nan, math.nan], [math.nan] * 2, norm, ["a", "b"])
    assert empty.bands == () and empty.warning is None


# ------------------------------------------------------------------ decimated sample
def test_sample_is_decimated_and_ignores_nodata(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.normal(1000, 50, (2, 400, 300)).astype(np.float32)
    data[:, :250] = -9999.0  # most of the scene is nodata: would drag the median to -9999
    data[1, 300:, :10] = np.nan  # non-finite in one band: the pixel is invalid
    path = write_raster(tmp_path / "s.tif", data, nodata=-9999.0)
    s = sample_bands(str(path), max_pixels=10_000)
    assert s.shape[0] * s.shape[1] <= 10_000 and s.bands == (1, 2)
    assert 0 < s.pixels < 10_000 * 150 / 400
    assert all(abs(m - 1000) < 10 for m in s.median)
    assert all(40 < sp < 60 for sp in s.spread)
    only2 = sample_bands(str(path), bands=(2,), max_pixels=10_000)
    assert only2.bands == (2,) and len(only2.median) == 1


def test_a_large_scene_without_overviews_is_sampled_by_windows(tmp_path):
    """Beyond 64 x max_pixels a decimated read would decode the whole file: a grid of
    64 windows is read instead, with the same statistics and nodata rules."""
    rng = np.random.default_rng(1)
    data = rng.normal(1000, 50, (2, 400, 300)).astype(np.float32)
    data[:, :100] = -9999.0
    path = write_raster(tmp_path / "s.tif", data, nodata=-9999.0)
    s = sample_bands(str(path), max_pixels=1_000)  # 120,000 px > 64 x 1,000
    assert s.shape == (3, 64 * 3)  # 64 windows of 3 x 3 pixels, side by side
    assert 0 < s.pixels < 64 * 9 and all(abs(m - 1000) < 30 for m in s.median)
    with rasterio.open(path, "r+") as dst:  # with overviews the decimated read is cheap
        dst.build_overviews([2, 4])
    assert sample_bands(str(path), max_pixels=1_000).shape != (3, 64 * 3)


def test_sample_of_an_all_nodata_scene_is_empty():
    s = sample_bands(str(shared_file("awkward/all-nodata.tif")))
    assert s.pixels == 0 and all(math.isnan(m) for m in s.median)


# ------------------------------------------------------------------ real scenes
def test_real_scenes_in_the_training_units_pass():
    """Zion with the Zion bundle, and Paraguay (another Landsat 8 DN scene) against the
    Zion bundle's B2-B4 statistics, are within range; the reflectance scene is not."""
    meta = read_meta(ZION_BUNDLE)
    zion = str(shared_file("zion/landsat8_b2345.tif"))
    s = sample_bands(zion)
    check = check_input_range(s.median, s.spread, meta.normalization, meta.bands)
    assert check.warning is None and max(abs(b.z) for b in check.bands) < 0.5
    paraguay = str(shared_file("landsat8_paraguay/LC08_L1TP_224078_20200518_rgb.tif"))
    s = sample_bands(paraguay)
    norm3 = Normalization(mean=meta.normalization.mean[:3], std=meta.normalization.std[:3])
    check = check_input_range(s.median, s.spread, norm3, meta.bands[:3])
    assert check.warning is None and max(abs(b.z) for b in check.bands) < 3


# ------------------------------------------------------------------ band matching
def test_bands_matched_by_position_are_logged(tmp_path, tiny_bundle, caplog):
    meta = read_meta(tiny_bundle)
    data = np.ones((4, 8, 8), np.uint16)
    unnamed = open_scene(write_raster(tmp_path / "u.tif", data))
    with caplog.at_level(logging.INFO, logger="geoseg"):
        assert match_bands(unnamed, meta) == (1, 2, 3, 4)
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    assert "matched by position" in caplog.text and "band1->B2" in caplog.text
    caplog.clear()
    other = ("blue", "green", "red", "nir")
    named = open_scene(write_raster(tmp_path / "n.tif", data, names=other))
    with caplog.at_level(logging.INFO, logger="geoseg"):
        assert match_bands(named, meta) == (1, 2, 3, 4)
    (rec,) = caplog.records
    assert rec.levelno == logging.WARNING
    assert "blue,green,red,nir" in rec.getMessage() and "B2,B3,B4,B5" in rec.getMessage()
    caplog.clear()
    shuffled = open_scene(write_raster(tmp_path / "s.tif", data, names=("B5", "B4", "B3", "B2")))
    with caplog.at_level(logging.INFO, logger="geoseg"):
        assert match_bands(shuffled, meta) == (4, 3, 2, 1)
    assert not caplog.records


def test_bands_of_one_name_are_not_read_by_it(tmp_path, tiny_bundle):
    """A blind test's multi-date stack named two bands alike: training and prediction
    read the first for both, without a word."""
    from geoseg.errors import RasterFormatError
    from geoseg.labelled import select_bands

    meta = read_meta(tiny_bundle)
    data = np.ones((4, 8, 8), np.uint16)
    twice = open_scene(write_raster(tmp_path / "t.tif", data, names=("B2", "B3", "B3", "B5")))
    with pytest.raises(RasterFormatError, match=r"t\.tif: bands 2, 3 are all named 'B3', one of"):
        match_bands(twice, meta)
    names = ("vis", "vis", "red", "nir")
    with pytest.raises(RasterFormatError, match=r"f\.tif: bands 1, 2 are all named 'vis', so"):
        select_bands(names, ("vis", "red", "nir"), "f.tif")
    assert select_bands(names, ("band2", "red"), "f.tif") == (2, 3)  # by index: clear
    assert select_bands(("Vis", "VIS", "red"), ("red",), "f.tif") == (3,)  # not asked for
    with pytest.raises(RasterFormatError, match=r"bands 1, 2 are all named 'vis'"):
        select_bands(("Vis", "VIS", "red"), ("vis",), "f.tif")  # one name but for case


def test_a_band_order_warning_is_kept_in_run_json_once(tmp_path, tiny_bundle, caplog):
    """What the log said about the bands stays with the output (run.json, batch summary)."""
    rng = np.random.default_rng(0)
    data = rng.integers(4000, 9000, size=(4, 64, 64)).astype(np.uint16)
    named = write_raster(tmp_path / "n.tif", data, names=("blue", "green", "red", "nir"))
    with caplog.at_level(logging.WARNING, logger="geoseg"):
        run = run_predict(named, tiny_bundle, tmp_path / "o", scheduler="sync", vector=False)
    (note,) = [w for w in run["warnings"] if "differ from the bundle's" in w]
    assert "blue->B2" in note
    assert json.loads((tmp_path / "o" / "run.json").read_text())["warnings"] == run["warnings"]
    assert caplog.text.count("differ from the bundle's") == 1
    same = write_raster(tmp_path / "s.tif", data, names=("B2", "B3", "B4", "B5"))
    run = run_predict(same, tiny_bundle, tmp_path / "o2", scheduler="sync", vector=False)
    assert not [w for w in run["warnings"] if "band" in w]


# ------------------------------------------------------------------ in a prediction
def test_prediction_records_the_check_and_warns_once(
    tmp_path, tiny_scene, reflectance_scene, tiny_bundle, caplog
):
    with caplog.at_level(logging.INFO, logger="geoseg"):
        ok = run_predict(tiny_scene, tiny_bundle, tmp_path / "ok", scheduler="sync", vector=False)
    assert not _warnings(caplog)
    rec = json.loads((tmp_path / "ok" / "run.json").read_text())["input_check"]
    assert rec == ok["input_check"]
    assert rec["warning"] is None and rec["bands_matched_by"] == "name"
    assert rec["out_of_range"] == []
    assert [b["band"] for b in rec["bands"]] == ["B2", "B3", "B4", "B5"]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="geoseg"):
        bad = run_predict(
            reflectance_scene, tiny_bundle, tmp_path / "bad", scheduler="sync", vector=False
        )
    (warning,) = _warnings(caplog)
    assert warning.name == "geoseg.workflow"
    assert str(reflectance_scene) in warning.getMessage() and UNITS in warning.getMessage()
    assert bad["input_check"]["out_of_range"] == ["B2", "B3", "B4", "B5"]
    assert bad["input_check"]["warning"] == warning.getMessage()


def test_cli_shows_one_warning_line_by_default_and_batch_summary_records_it(
    tmp_path, reflectance_scene, tiny_bundle
):
    args = ["predict", str(reflectance_scene), "--model", str(tiny_bundle), "--no-vector"]
    r = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "a"), "--scheduler", "sync"])
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("WARNING")]
    assert len(lines) == 1 and UNITS in lines[0]
    assert re.search(r"refl.tif: band \d \(B\d\) has median 0\.\d+ .* trained on 5000 ", lines[0])
    r = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "b"), "--scheduler", "sync", "-q"])
    assert r.exit_code == 0 and "WARNING" not in r.stderr
    res = run_batch(
        [BatchItem(str(reflectance_scene), "refl")], tiny_bundle, tmp_path / "batch",
        scheduler="sync", vector=False,
    )  # fmt: skip
    assert res[0].status == "done" and UNITS in res[0].warning
    with (tmp_path / "batch" / "summary.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    assert UNITS in row["warning"]


# ------------------------------------------------------------------ untagged fill
def test_untagged_zero_fill_is_measured_and_reported_once(
    tmp_path, tiny_scene, tiny_bundle, caplog
):
    """A scene whose footprint border is 0 in every band but not tagged nodata (as the
    Paraguay Landsat export): the share is measured on the sample, logged once with the
    fix, and kept in run.json and the batch summary. With the border tagged, nothing."""
    with rasterio.open(tiny_scene) as src:
        data = src.read()
    data[data == 65535] = 7000
    data[:, :, :40] = 0  # a 20 % border of fill
    untagged = write_raster(tmp_path / "u.tif", data, names=("B2", "B3", "B4", "B5"))
    assert sample_bands(str(untagged)).zero_share == pytest.approx(0.2)
    with caplog.at_level(logging.INFO, logger="geoseg"):
        run = run_predict(untagged, tiny_bundle, tmp_path / "u", scheduler="sync", vector=False)
    (warning,) = _warnings(caplog)
    msg = warning.getMessage()
    assert msg.startswith(f"{untagged}: 20.0 % of its valid pixels are 0 in every band")
    assert "gdal_edit.py -a_nodata 0" in msg and f"geoseg edit {untagged} --nodata 0" in msg
    assert run["input_check"]["zero_share"] == pytest.approx(0.2)
    assert run["input_check"]["fill_warning"] == msg
    assert [w for w in run["warnings"] if "0 in every band" in w] == [
        msg.removeprefix(f"{untagged}: ")
    ]
    res = run_batch([BatchItem(str(untagged), "u")], tiny_bundle, tmp_path / "batch",
                    scheduler="sync", vector=False)  # fmt: skip
    assert res[0].warning.count("0 in every band") == 1
    tagged = write_raster(tmp_path / "t.tif", data, nodata=0, names=("B2", "B3", "B4", "B5"))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="geoseg"):
        run = run_predict(tagged, tiny_bundle, tmp_path / "t", scheduler="sync", vector=False)
    assert not _warnings(caplog)
    assert run["input_check"]["zero_share"] == 0 and run["input_check"]["fill_warning"] is None
    data[:, :, :40] = 7000
    data[:, :, :1] = 0  # one column in 200: below the 1 % share
    few = write_raster(tmp_path / "f.tif", data, names=("B2", "B3", "B4", "B5"))
    s = sample_bands(str(few))
    assert s.zero_share == pytest.approx(0.005)
    assert untagged_fill_warning(str(few), s.zero_share) is None


def test_paraguay_footprint_border_is_untagged_fill():
    """The real Paraguay export has no nodata value; its rotated footprint's border (about
    a sixth of the scene) is 0 in every band."""
    s = sample_bands(str(shared_file("landsat8_paraguay/LC08_L1TP_224078_20200518_rgb.tif")))
    assert 0.12 < s.zero_share < 0.22
    assert s.zero_share == pytest.approx(0.165, abs=0.01)


def test_fill_advice_respects_a_files_nodata_and_single_bands(tmp_path, tiny_bundle, caplog):
    """A file that has a nodata value (-9999) and a 0 border is told to use a mask (a new
    nodata value would make its -9999 pixels data); a single band's zeros are values."""
    rng = np.random.default_rng(0)
    data = rng.normal(7000, 500, (4, 64, 64)).astype(np.float32)
    data[:, :, :16] = 0
    data[:, :4] = -9999
    path = write_raster(tmp_path / "n.tif", data, nodata=-9999, names=("B2", "B3", "B4", "B5"))
    with caplog.at_level(logging.INFO, logger="geoseg"):
        run = run_predict(path, tiny_bundle, tmp_path / "o", scheduler="sync", vector=False)
    fill = run["input_check"]["fill_warning"]
    assert "its nodata value is -9999: if they are fill, give the file a mask band" in fill
    assert "-a_nodata" not in fill
    one = write_raster(tmp_path / "one.tif", data[:1], nodata=-9999)
    assert sample_bands(str(one)).zero_share == 0.0


def test_a_scene_of_another_pixel_size_is_warned_about(tmp_path, caplog):
    from affine import Affine

    scene = shared_file("zion/landsat8_b2345.tif")
    assert read_meta(ZION_BUNDLE).pixel_size == 30.0
    with rasterio.open(scene) as src:
        data = src.read(window=((0, 160), (0, 160)))
        t = src.transform
    runs = {}
    for size in (30, 10, 60):
        path = write_raster(
            tmp_path / f"px{size}.tif",
            data,
            crs="EPSG:32612",
            transform=Affine(size, 0, t.c, 0, -size, t.f),
            names=("B2", "B3", "B4", "B5"),
        )
        with caplog.at_level(logging.WARNING, logger="geoseg"):
            runs[size] = run_predict(path, ZION_BUNDLE, tmp_path / f"out{size}", vector=False)
    assert runs[30]["input_check"]["pixel_size_m"] == 30.0
    assert runs[30]["input_check"]["resolution_warning"] is None
    assert not any("pixels are" in w for w in runs[30]["warnings"])
    for size, how in ((10, "average"), (60, "bilinear")):
        note = f"its pixels are {size} m and the model was trained on 30 m pixels"
        assert note in runs[size]["input_check"]["resolution_warning"]
        assert f"gdalwarp -tr 30 30 -r {how}" in runs[size]["input_check"]["resolution_warning"]
        assert f"--res 30 --resampling {how}" in runs[size]["input_check"]["resolution_warning"]
        assert sum(note in w for w in runs[size]["warnings"]) == 1
        assert caplog.text.count(note) == 1  # logged once


def test_training_records_the_pixel_size_of_its_images(tmp_path):
    from geoseg.train import training_pixel_size

    s2 = shared_file("slovenia/s2_l1c_2015-07-11.tif")
    zion = shared_file("zion/landsat8_b2345.tif")
    assert training_pixel_size([zion]) == 30.0
    assert training_pixel_size([s2]) == pytest.approx(10.0, abs=0.01)
    assert training_pixel_size([zion, zion, s2]) == 30.0  # the median
    bare = write_raster(tmp_path / "bare.tif", np.ones((1, 8, 8), np.uint8), crs=None)
    assert training_pixel_size([zion, bare]) is None
