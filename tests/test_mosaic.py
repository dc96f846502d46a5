"""geoseg mosaic: adjacent tiles read as one scene (a GDAL VRT)."""

import logging

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine, from_origin
from rasterio.windows import Window

from geoseg import api
from geoseg.errors import ConfigError, OutputExistsError, RasterFormatError
from geoseg.mosaic import plan_mosaic, write_mosaic

from .conftest import ZION_BUNDLE, shared_file, write_raster
from .test_cli import _run


def _tiles(folder, scene, windows, *, nodata="keep", names=True):
    """Crops of ``scene`` at ``windows``, one GeoTIFF each."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    with rasterio.open(scene) as src:
        for i, w in enumerate(windows):
            out.append(
                write_raster(
                    folder / f"tile{i}.tif",
                    src.read(window=w),
                    crs=src.crs.to_string(),
                    nodata=src.nodata if nodata == "keep" else nodata,
                    transform=src.window_transform(w),
                    names=src.descriptions if names else None,
                )
            )
    return out


def test_zion_in_overlapping_tiles_predicts_as_the_whole_scene(tmp_path, zion_prediction):
    scene = shared_file("zion/landsat8_b2345.tif")
    with rasterio.open(scene) as src:
        h, w, whole = src.height, src.width, src.read()
    # four tiles that overlap by 40 px, listed in any order
    windows = [
        Window(600, 700, w - 600, h - 700),
        Window(0, 0, 640, 740),
        Window(600, 0, w - 600, 740),
        Window(0, 700, 640, h - 700),
    ]
    tiles = _tiles(tmp_path / "tiles", scene, windows)
    vrt = tmp_path / "zion.vrt"
    result = _run("mosaic", *tiles, "--out", vrt)
    assert result.exit_code == 0, result.output
    assert "4 tiles, 4 bands (B2, B3, B4, B5), 1128 × 1428 pixels of 30 × 30" in result.output
    with rasterio.open(vrt) as a, rasterio.open(scene) as b:
        assert (a.transform, a.crs, a.descriptions, a.nodatavals) == (
            b.transform,
            b.crs,
            b.descriptions,
            b.nodatavals,
        )
        np.testing.assert_array_equal(a.read(), whole)
    out = tmp_path / "pred"
    result = _run("-q", "predict", vrt, "--model", ZION_BUNDLE, "--out", out, "--no-vector")
    assert result.exit_code == 0, result.output
    with rasterio.open(out / "labels.tif") as a, rasterio.open(zion_prediction / "labels.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())  # no seam at the tiles' borders


def test_later_tiles_are_read_over_earlier_ones_but_not_their_nodata(tmp_path):
    t = from_origin(300000, 4100000, 30, 30)
    a = np.full((1, 10, 10), 1, "uint16")
    b = np.full((1, 10, 10), 2, "uint16")
    b[0, :, :3] = 0  # nodata of b
    fa = write_raster(tmp_path / "a.tif", a, transform=t, nodata=0)
    fb = write_raster(
        tmp_path / "b.tif", b, transform=from_origin(300150, 4100000, 30, 30), nodata=0
    )
    stack = write_mosaic([fa, fb], tmp_path / "m.vrt")
    assert (stack.width, stack.height) == (15, 10)
    assert any("1 pairs of tiles overlap" in n for n in stack.notes)
    with rasterio.open(tmp_path / "m.vrt") as src:
        data = src.read(1)
    np.testing.assert_array_equal(data[:, :5], 1)
    np.testing.assert_array_equal(data[:, 5:8], 1)  # b's nodata columns: a shows through
    np.testing.assert_array_equal(data[:, 8:], 2)
    write_mosaic([fb, fa], tmp_path / "m2.vrt")
    with rasterio.open(tmp_path / "m2.vrt") as src:
        np.testing.assert_array_equal(src.read(1)[:, 5:10], 1)  # a last: a on top


def test_gaps_are_nodata_and_need_one(tmp_path, caplog):
    a = np.arange(1, 101, dtype="uint16").reshape(1, 10, 10)
    t = from_origin(300000, 4100000, 30, 30)
    diagonal = from_origin(300300, 4099700, 30, 30)  # touches a's corner: two gaps
    fa = write_raster(tmp_path / "a.tif", a, transform=t)
    fb = write_raster(tmp_path / "b.tif", a, transform=diagonal)
    with pytest.raises(ConfigError, match=r"leave 200 pixels .* uncovered .* \(--nodata\)"):
        plan_mosaic([fa, fb])
    result = _run("mosaic", fa, fb, "--out", tmp_path / "m.vrt")
    assert result.exit_code == 1 and "--nodata" in result.output
    assert not (tmp_path / "m.vrt").exists()
    with caplog.at_level(logging.INFO, logger="geoseg"):
        write_mosaic([fa, fb], tmp_path / "m.vrt", nodata=0)
    assert "200 pixels of the extent are in no tile" in caplog.text
    with rasterio.open(tmp_path / "m.vrt") as src:
        assert src.nodata == 0 and (src.width, src.height) == (20, 20)
        data = src.read(1)
    np.testing.assert_array_equal(data[:10, :10], a[0])
    np.testing.assert_array_equal(data[10:, 10:], a[0])
    assert (data[:10, 10:] == 0).all() and (data[10:, :10] == 0).all()
    # side by side without a gap: no nodata needed
    side = write_raster(tmp_path / "c.tif", a, transform=from_origin(300300, 4100000, 30, 30))
    assert plan_mosaic([fa, side]).bands[0].nodata is None


def test_tiles_must_hold_the_same_bands(tmp_path):
    t2 = from_origin(300300, 4100000, 30, 30)
    a = write_raster(tmp_path / "a.tif", np.ones((2, 10, 10), "uint16"), names=("B2", "B3"))
    b = write_raster(
        tmp_path / "b.tif", np.ones((2, 10, 10), "uint16"), transform=t2, names=("B3", "B2")
    )
    c = write_raster(tmp_path / "c.tif", np.ones((3, 10, 10), "uint16"), transform=t2)
    d = write_raster(tmp_path / "d.tif", np.ones((2, 10, 10), "uint16"), transform=t2)
    e = write_raster(tmp_path / "e.tif", np.ones((2, 10, 10), "uint16"), crs="EPSG:32633")
    # the same bands in another order: matched by name
    swapped = plan_mosaic([a, b])
    assert swapped.names == ("B2", "B3")
    assert [s.band for s in swapped.bands[0].sources] == [1, 2]  # B2: band 2 of b.tif
    other = write_raster(
        tmp_path / "o.tif", np.ones((2, 10, 10), "uint16"), transform=t2, names=("B4", "B3")
    )
    with pytest.raises(RasterFormatError, match=r"o.tif: its bands are named B4,B3, those of"):
        plan_mosaic([a, other])
    partly = write_raster(tmp_path / "p.tif", np.ones((2, 10, 10), "uint16"), transform=t2)
    with rasterio.open(partly, "r+") as dst:
        dst.set_band_description(1, "B3")
    with pytest.raises(RasterFormatError, match=r"p.tif: its band 1 is named 'B3', but that"):
        plan_mosaic([a, partly])
    with pytest.raises(RasterFormatError, match=r"c.tif: 3 bands, but .*a.tif has 2.*stack each"):
        plan_mosaic([a, c])
    with pytest.raises(RasterFormatError, match=r"e.tif: its CRS \(EPSG:32633\)"):
        plan_mosaic([a, e])
    assert plan_mosaic([d, a]).names == ("B2", "B3")  # an unnamed tile takes the others' names
    unnamed = plan_mosaic([d])
    assert unnamed.names == ("band1", "band2") and [b.name for b in unnamed.bands] == [None] * 2
    write_mosaic([d], tmp_path / "u.vrt")  # no description: read by position, as the tile
    with rasterio.open(tmp_path / "u.vrt") as src:
        assert src.descriptions == (None, None)


def test_tiles_of_other_pixel_sizes_are_resampled(tmp_path):
    fine = np.arange(400, dtype="float32").reshape(1, 20, 20)
    coarse = np.arange(100, dtype="float32").reshape(1, 10, 10)
    fa = write_raster(tmp_path / "a.tif", fine, transform=from_origin(0, 600, 15, 15))
    fb = write_raster(tmp_path / "b.tif", coarse, transform=from_origin(300, 600, 30, 30))
    m = write_mosaic([fa, fb], tmp_path / "m.vrt")
    assert any("b.tif: resampled (nearest) from 30 × 30 to 15 × 15" in n for n in m.notes)
    with rasterio.open(tmp_path / "m.vrt") as src:
        assert src.res == (15, 15) and (src.width, src.height) == (40, 20)
        data = src.read(1)
    np.testing.assert_array_equal(data[:, :20], fine[0])
    np.testing.assert_array_equal(data[:, 20:], np.repeat(np.repeat(coarse[0], 2, 0), 2, 1))
    coarsest = plan_mosaic([fa, fb], resolution="coarsest")
    assert coarsest.transform.a == 30 and (coarsest.width, coarsest.height) == (20, 10)


def test_outputs_and_api(tmp_path):
    a = write_raster(tmp_path / "a.tif", np.ones((1, 8, 8), "uint16"))
    out = api.mosaic([a], tmp_path / "m.vrt")
    assert out == (tmp_path / "m.vrt").absolute() and out.exists()
    with pytest.raises(OutputExistsError, match="pass overwrite=True"):
        api.mosaic([a], out)
    api.mosaic([a], out, overwrite=True)
    # a stack's VRT is geoseg's too: replaced by a mosaic only with overwrite
    api.stack([a], tmp_path / "s.vrt")
    api.mosaic([a], tmp_path / "s.vrt", overwrite=True)
    with rasterio.open(tmp_path / "s.vrt") as src:
        assert src.tags()["GEOSEG_VRT"] == "mosaic"
    with pytest.raises(ConfigError, match="files is one path"):
        api.mosaic(a, tmp_path / "x.vrt")
    with pytest.raises(ConfigError, match=r"nodata is a str \('0'\): give a number"):
        api.mosaic([a], tmp_path / "x.vrt", nodata="0")
    with pytest.raises(ConfigError, match=r"give it a \.vrt extension"):
        api.mosaic([a], tmp_path / "x.tif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "m.vrt", "s.vrt"]


def test_nodata_must_fit_and_agree(tmp_path):
    t = from_origin(300000, 4100000, 30, 30)
    a = write_raster(tmp_path / "a.tif", np.ones((1, 10, 10), "uint16"), transform=t)
    far = write_raster(
        tmp_path / "b.tif",
        np.ones((1, 10, 10), "uint16"),
        transform=from_origin(300600, 4100000, 30, 30),
    )
    for bad in (-1, 70000, 0.5, float("nan")):
        with pytest.raises(ConfigError, match=r"not a uint16 value \(0 to 65535\)"):
            plan_mosaic([a, far], nodata=bad)
    zero = write_raster(tmp_path / "z.tif", np.ones((1, 10, 10), "uint16"), transform=t, nodata=0)
    top = write_raster(
        tmp_path / "m.tif", np.ones((1, 10, 10), "uint16"), transform=t, nodata=65535
    )
    with pytest.raises(ConfigError, match=r"different nodata values \(0 \(z.tif\), 65535 \(m"):
        plan_mosaic([zero, top])
    assert plan_mosaic([zero, top], nodata=9).bands[0].nodata == 9


def test_single_band_tiles_are_named_by_their_band_token(tmp_path):
    t2 = from_origin(300300, 4100000, 30, 30)
    a = write_raster(tmp_path / "T1_SR_b4.tif", np.ones((1, 10, 10), "uint16"))
    b = write_raster(tmp_path / "T2_SR_B4.tif", np.ones((1, 10, 10), "uint16"), transform=t2)
    c = write_raster(tmp_path / "T2_SR_B5.tif", np.ones((1, 10, 10), "uint16"), transform=t2)
    assert plan_mosaic([a, b]).bands[0].name == "B4"
    assert plan_mosaic([a, c]).bands[0].name is None  # files that disagree name nothing


def test_a_tile_in_another_crs_gets_a_fix_that_keeps_it_whole(tmp_path):
    from geoseg.errors import RasterFormatError

    a = write_raster(tmp_path / "a.tif", np.ones((1, 10, 10), "uint16"))
    b = write_raster(tmp_path / "b.tif", np.ones((1, 10, 10), "uint16"), crs="EPSG:5070")
    with pytest.raises(
        RasterFormatError, match=r"rio warp .*b.tif ALIGNED.tif --dst-crs EPSG:32612"
    ):
        plan_mosaic([a, b])


def test_tiles_off_the_grid_by_a_fraction_of_a_pixel_are_warned_of(tmp_path, caplog):
    a = write_raster(tmp_path / "a.tif", np.ones((1, 10, 10), "uint16"))
    third = from_origin(300300 + 10, 4100000, 30, 30)  # a third of a pixel east
    b = write_raster(tmp_path / "b.tif", np.ones((1, 10, 10), "uint16"), transform=third)
    with caplog.at_level(logging.WARNING, logger="geoseg"):
        write_mosaic([a, b], tmp_path / "m.vrt", nodata=0)
    assert "b.tif: its pixels are off the grid by 0.33 of a pixel" in caplog.text
    assert "a.tif" not in caplog.text


def test_alpha_tiles_are_transparent_where_their_alpha_is_0(tmp_path):
    """A later tile's transparent pixels (alpha 0) let the earlier one show; a tile with
    an alpha band where another has data is refused (it would be read as data)."""
    from rasterio.enums import ColorInterp

    def rgba(path, value, alpha_cols, transform):
        data = np.full((2, 4, 12), value, "uint16")
        data[1] = 65535
        data[1][:, alpha_cols] = 0
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=12,
            height=4,
            count=2,
            dtype="uint16",
            crs="EPSG:32612",
            transform=transform,
            ALPHA="YES",  # band 2 is the alpha band
        ) as dst:
            dst.write(data)
        return path

    t = from_origin(300000, 4100000, 30, 30)
    a = rgba(tmp_path / "a.tif", 100, slice(0, 0), t)
    b = rgba(tmp_path / "b.tif", 200, slice(0, 4), t)  # its first 4 columns transparent
    write_mosaic([a, b], tmp_path / "m.vrt")
    with rasterio.open(tmp_path / "m.vrt") as src:
        assert src.colorinterp[1] == ColorInterp.alpha
        row = src.read(1)[0]
    np.testing.assert_array_equal(row[:4], 100)  # a shows through b's transparency
    np.testing.assert_array_equal(row[4:], 200)
    plain = write_raster(tmp_path / "p.tif", np.ones((2, 4, 12), "uint16"), transform=t)
    with pytest.raises(RasterFormatError, match=r"its band 2 is an alpha band .* a data band"):
        plan_mosaic([plain, b])


def test_numbers_keep_their_precision_and_nodata_is_finite(tmp_path):
    fine_deg = 8.983152841195214e-06  # about 1 m in degrees
    t = Affine(fine_deg, 0, 10.0, 0, -fine_deg, 50.0)
    tile = write_raster(
        tmp_path / "a.tif", np.ones((1, 8, 8), "float32"), crs="EPSG:4326", transform=t
    )
    write_mosaic([tile], tmp_path / "m.vrt", nodata=1e-12)
    text = (tmp_path / "m.vrt").read_text()
    assert "dataAxisToSRSAxisMapping" not in text  # GDAL's GIS order, as the geotransform
    with rasterio.open(tmp_path / "m.vrt") as src:
        assert src.transform == t and src.crs.to_epsg() == 4326
        assert src.nodata == 1e-12
    ints = write_raster(tmp_path / "i.tif", np.ones((1, 8, 8), "uint16"))
    for bad in (float("inf"), float("-inf")):
        with pytest.raises(ConfigError, match=r"not a uint16 value"):
            plan_mosaic([ints], nodata=bad)
    assert plan_mosaic([tile], nodata=float("inf")).bands[0].nodata == float("inf")
    result = _run("mosaic", ints, "--out", tmp_path / "x.vrt", "--nodata", "inf")
    assert result.exit_code == 1 and "Traceback" not in result.output


def test_a_tile_without_a_nodata_tag_beside_tagged_ones_needs_one(tmp_path):
    t = from_origin(300000, 4100000, 30, 30)
    tagged = write_raster(tmp_path / "a.tif", np.ones((1, 8, 8), "uint16"), transform=t, nodata=0)
    untagged = write_raster(tmp_path / "b.tif", np.zeros((1, 8, 8), "uint16"), transform=t)
    with pytest.raises(ConfigError, match=r"different nodata values \(0 \(a.tif\), none \(b.tif"):
        plan_mosaic([tagged, untagged])


def test_an_internal_mask_is_carried_without_a_warning_and_symlinks_stay_relative(tmp_path, caplog):
    data = np.arange(1, 17, dtype="uint16").reshape(1, 4, 4)
    t = from_origin(300000, 4100000, 30, 30)
    under = write_raster(tmp_path / "under.tif", np.full((1, 4, 4), 9, "uint16"), transform=t)
    masked = write_raster(tmp_path / "masked.tif", data, transform=t)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(masked, "r+") as dst:
        dst.write_mask(np.where(data[0] > 8, 255, 0).astype("uint8"))
    with caplog.at_level(logging.WARNING, logger="geoseg"):
        write_mosaic([under, masked], tmp_path / "m.vrt")  # warnings are errors here
    with rasterio.open(tmp_path / "m.vrt") as src:
        got = src.read(1)
    np.testing.assert_array_equal(got, np.where(data[0] > 8, data[0], 9))  # under shows
    # a tile that is a symlink inside the folder is named relative to it (moves with it)
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "tile.tif").symlink_to(under)
    write_mosaic([tmp_path / "f" / "tile.tif"], tmp_path / "f" / "s.vrt")
    assert 'relativeToVRT="1">tile.tif<' in (tmp_path / "f" / "s.vrt").read_text()
