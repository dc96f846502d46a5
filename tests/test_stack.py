"""geoseg stack: band files as one named multi-band image (a GDAL VRT)."""

import json
import logging
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin
from rasterio.windows import Window

from geoseg import api
from geoseg.errors import (
    ConfigError,
    GeosegWarning,
    OutputExistsError,
    RasterFormatError,
    RasterReadError,
)
from geoseg.raster import open_scene
from geoseg.stack import plan_stack, write_stack
from geoseg.vrt import UncarriedMaskWarning

from .conftest import ZION_BUNDLE, shared_file, write_raster
from .test_cli import _assert_user_error, _run

LANDSAT = "LC08_L2SP_038034_20200518_20200820_02_T1_SR_{}.TIF"


def _zion_band_files(folder: Path, rows: int = 300, cols: int = 260) -> tuple[list[Path], Path]:
    """A crop of the real Zion scene as one file per band, named as Landsat ships them.

    Returns the band files and the same crop as one 4-band GeoTIFF.
    """
    scene = shared_file("zion/landsat8_b2345.tif")
    folder.mkdir(parents=True, exist_ok=True)
    window = Window(400, 500, cols, rows)
    with rasterio.open(scene) as src:
        data = src.read(window=window)
        transform = src.window_transform(window)
        crs, nodata, names = src.crs.to_string(), src.nodata, src.descriptions
    files = [
        write_raster(
            folder / LANDSAT.format(n), data[i], crs=crs, nodata=nodata, transform=transform
        )
        for i, n in enumerate(names)
    ]
    whole = write_raster(
        folder / "stacked.tif", data, crs=crs, nodata=nodata, transform=transform, names=names
    )
    return files, whole


def test_landsat_band_files_stack_into_the_scene_and_predict_the_same(tmp_path):
    files, whole = _zion_band_files(tmp_path / "bands")
    vrt = tmp_path / "scene.vrt"
    result = _run("stack", *reversed(files), "--out", vrt)  # any order in: stack order = given
    assert result.exit_code == 0, result.output
    assert "4 bands (B5, B4, B3, B2)" in result.output
    result = _run("stack", *files, "--out", vrt, "--overwrite")
    assert result.exit_code == 0, result.output
    with rasterio.open(vrt) as a, rasterio.open(whole) as b:
        assert a.descriptions == ("B2", "B3", "B4", "B5")
        assert a.nodatavals == b.nodatavals and a.dtypes == b.dtypes
        assert a.transform == b.transform and a.crs == b.crs
        np.testing.assert_array_equal(a.read(), b.read())
    scene = open_scene(vrt, image=True)
    assert scene.band_names == ("B2", "B3", "B4", "B5")
    outs = []
    for name, image in (("vrt", vrt), ("tif", whole)):
        out = tmp_path / f"pred-{name}"
        result = _run("-q", "predict", image, "--model", ZION_BUNDLE, "--out", out, "--no-vector")
        assert result.exit_code == 0, result.output
        with rasterio.open(out / "labels.tif") as src:
            outs.append(src.read())
    np.testing.assert_array_equal(outs[0], outs[1])
    run = json.loads((tmp_path / "pred-vrt" / "run.json").read_text())
    assert run["input"]["reads"] == [str(f) for f in files]  # what the VRT read
    assert "reads" not in json.loads((tmp_path / "pred-tif" / "run.json").read_text())["input"]


def test_stack_moves_with_its_files(tmp_path):
    files, whole = _zion_band_files(tmp_path / "a" / "bands", rows=64, cols=64)
    write_stack(files, tmp_path / "a" / "scene.vrt")
    shutil.move(tmp_path / "a", tmp_path / "b")
    with (
        rasterio.open(tmp_path / "b" / "scene.vrt") as a,
        rasterio.open(tmp_path / "b" / "bands" / whole.name) as b,
    ):
        np.testing.assert_array_equal(a.read(), b.read())


def _grid_files(tmp_path, rng):
    """A 10 m band (40 × 60) and a 20 m band of the same extent (20 × 30), float32."""
    fine = rng.uniform(0, 1000, (40, 60)).astype("float32")
    coarse = rng.uniform(0, 1000, (20, 30)).astype("float32")
    f = write_raster(
        tmp_path / "T33TWM_20230715T095559_B02_10m.tif",
        fine,
        crs="EPSG:32633",
        transform=from_origin(500000, 5100000, 10, 10),
    )
    c = write_raster(
        tmp_path / "T33TWM_20230715T095559_B8A_20m.tif",
        coarse,
        crs="EPSG:32633",
        transform=from_origin(500000, 5100000, 20, 20),
    )
    return f, c, fine, coarse


def test_sentinel2_bands_of_two_resolutions(tmp_path):
    f, c, fine, coarse = _grid_files(tmp_path, np.random.default_rng(0))
    stack = write_stack([f, c], tmp_path / "finest.vrt")
    assert stack.names == ("B02", "B8A")
    assert any("resampled (nearest) from 20 × 20 to 10 × 10" in n for n in stack.notes)
    with rasterio.open(tmp_path / "finest.vrt") as src:
        assert (src.width, src.height, src.res) == (60, 40, (10.0, 10.0))
        data = src.read()
    np.testing.assert_array_equal(data[0], fine)
    # nearest neighbour: each 20 m pixel covers 2 × 2 pixels of the 10 m grid
    np.testing.assert_array_equal(data[1], np.repeat(np.repeat(coarse, 2, 0), 2, 1))

    write_stack([f, c], tmp_path / "coarsest.vrt", resolution="coarsest", resampling="average")
    with rasterio.open(tmp_path / "coarsest.vrt") as src:
        assert (src.width, src.height, src.res) == (30, 20, (20.0, 20.0))
        data = src.read()
    np.testing.assert_allclose(data[0], fine.reshape(20, 2, 30, 2).mean(axis=(1, 3)), rtol=1e-5)
    np.testing.assert_array_equal(data[1], coarse)


def test_files_of_different_extents_give_the_common_one(tmp_path, caplog):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 5000, (50, 50), dtype="uint16")
    b = rng.integers(0, 5000, (50, 50), dtype="uint16")
    # b starts 10 columns east and 5 rows south of a
    fa = write_raster(tmp_path / "a_B3.tif", a, transform=from_origin(300000, 4100000, 30, 30))
    fb = write_raster(tmp_path / "b_B4.tif", b, transform=from_origin(300300, 4099850, 30, 30))
    with caplog.at_level(logging.WARNING, logger="geoseg"):
        stack = write_stack([fa, fb], tmp_path / "s.vrt")
    assert "cropped to the extent every file covers" in caplog.text
    assert (stack.width, stack.height) == (40, 45)
    with rasterio.open(tmp_path / "s.vrt") as src:
        assert src.transform == from_origin(300300, 4099850, 30, 30)
        data = src.read()
    np.testing.assert_array_equal(data[0], a[5:, 10:])
    np.testing.assert_array_equal(data[1], b[:45, :40])

    far = write_raster(tmp_path / "far.tif", a, transform=from_origin(900000, 4100000, 30, 30))
    with pytest.raises(RasterFormatError, match="cover no common area"):
        plan_stack([fa, far])


def test_nodata_and_data_types_are_kept(tmp_path):
    u = np.array([[1, 65535], [40000, 7]], dtype="uint16")
    i = np.array([[-5, 3], [-32768, 9]], dtype="int16")
    f = np.array([[np.nan, 0.5], [2.5, -1]], dtype="float32")
    files = [
        write_raster(tmp_path / "u.tif", u, nodata=65535),
        write_raster(tmp_path / "i.tif", i, nodata=-32768),
        write_raster(tmp_path / "f.tif", f, nodata=float("nan")),
    ]
    write_stack(files, tmp_path / "s.vrt")
    with rasterio.open(tmp_path / "s.vrt") as src:
        assert src.dtypes[0] == "float32"
        assert src.nodatavals[:2] == (65535.0, -32768.0) and np.isnan(src.nodatavals[2])
        assert src.descriptions == ("u", "i", "f")  # single-band files: their stems
        data = src.read()
    np.testing.assert_array_equal(data[0], u)
    np.testing.assert_array_equal(data[1], i)
    np.testing.assert_array_equal(data[2], f)  # NaN where NaN
    write_stack(files[:2], tmp_path / "ints.vrt")
    with rasterio.open(tmp_path / "ints.vrt") as src:
        assert src.dtypes[0] == "int32"  # holds both uint16 and int16 values
        np.testing.assert_array_equal(src.read(2), i)


def test_band_names(tmp_path):
    data = np.ones((3, 8, 8), dtype="uint8")
    named = write_raster(tmp_path / "named_B7.tif", data[:1], names=("red",))
    multi = write_raster(tmp_path / "rgb.tif", data)
    token = write_raster(tmp_path / "x_b10.tif", data[0])
    assert plan_stack([named, multi, token]).names == ("red", "rgb_1", "rgb_2", "rgb_3", "B10")
    given = plan_stack([named, multi], names=["a", "b", "c", "d"])
    assert given.names == ("a", "b", "c", "d")
    with pytest.raises(ConfigError, match=r"3 names for 4 bands in 2 files"):
        plan_stack([named, multi], names=["a", "b", "c"])
    with pytest.raises(ConfigError, match=r"two bands would be named 'a': give each"):
        plan_stack([named, multi], names=["a", "b", "a", "d"])
    with pytest.raises(ConfigError, match="an empty band name"):
        plan_stack([named, multi], names=["a", "", "c", "d"])
    again = write_raster(tmp_path / "other_B7.tif", data[0])
    twin = write_raster(tmp_path / "more_B7.tif", data[0])
    with pytest.raises(ConfigError, match=r"two bands would be named 'B7': name the bands"):
        plan_stack([again, twin])
    # a single multi-band file renamed without a copy of its pixels
    write_stack([multi], tmp_path / "renamed.vrt", names=["B4", "B3", "B2"])
    assert open_scene(tmp_path / "renamed.vrt").band_names == ("B4", "B3", "B2")


def test_refusals(tmp_path):
    data = np.ones((8, 8), dtype="uint16")
    a = write_raster(tmp_path / "a.tif", data)
    other_crs = write_raster(tmp_path / "b.tif", data, crs="EPSG:32633")
    with pytest.raises(RasterFormatError, match=r"b.tif: its CRS \(EPSG:32633\) is not that of"):
        plan_stack([a, other_crs])
    with pytest.raises(RasterReadError, match="file not found"):
        plan_stack([a, tmp_path / "missing.tif"])
    notes = tmp_path / "notes.tif"
    notes.write_text("not a raster")
    with pytest.raises(RasterFormatError, match="not a readable raster"):
        plan_stack([notes])
    with pytest.raises(ConfigError, match="no files given"):
        plan_stack([])
    with pytest.raises(ConfigError, match=r"cannot read a ftp:// file into a VRT"):
        plan_stack(["ftp://example.com/a.tif"])
    with pytest.raises(ConfigError, match=r"give it a \.vrt extension"):
        write_stack([a], tmp_path / "s.tif")
    rotated = shared_file("awkward/rotated.tif")
    with pytest.raises(RasterFormatError, match="not north-up"):
        plan_stack([rotated])


def test_geoseg_label_map_is_not_a_band(tmp_path, zion_prediction):
    with pytest.raises(RasterFormatError, match=r"a geoseg label map.*geoseg merge"):
        plan_stack([zion_prediction / "labels.tif"])


def test_outputs_are_not_lost(tmp_path):
    a = write_raster(tmp_path / "a_B2.tif", np.ones((8, 8), dtype="uint16"))
    out = tmp_path / "s.vrt"
    write_stack([a], out)
    first = out.read_text()
    with pytest.raises(OutputExistsError, match="pass --overwrite"):
        write_stack([a], out, names=["x"])
    assert out.read_text() == first
    write_stack([a], out, names=["x"], overwrite=True)
    assert "<Description>x</Description>" in out.read_text()
    foreign = tmp_path / "mine.vrt"
    foreign.write_text(first.replace("GEOSEG_VRT", "OTHER"))
    with pytest.raises(OutputExistsError, match="not a VRT geoseg wrote"):
        write_stack([a], foreign, overwrite=True)
    assert "OTHER" in foreign.read_text()
    # the output is one of the inputs (a stack of a stack, written over itself)
    with pytest.raises(OutputExistsError, match="is the input"):
        write_stack([out], out, overwrite=True)
    assert "<Description>x</Description>" in out.read_text()
    # a failed run leaves nothing beside the output
    with pytest.raises(ConfigError):
        write_stack([a], tmp_path / "t.vrt", names=["a", "b"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_B2.tif", "mine.vrt", "s.vrt"]


def test_cli_errors_are_one_line(tmp_path):
    a = write_raster(tmp_path / "a.tif", np.ones((8, 8), dtype="uint16"))
    b = write_raster(tmp_path / "b.tif", np.ones((8, 8), dtype="uint16"), crs="EPSG:4326")
    _assert_user_error(_run("stack", a, b, "--out", tmp_path / "s.vrt"), "b.tif", "reproject")
    _assert_user_error(
        _run("stack", a, "--names", "x,y", "--out", tmp_path / "s.vrt"), "2 names for 1 band"
    )
    assert not (tmp_path / "s.vrt").exists()


def test_gdal_virtual_paths_and_masks(tmp_path):
    data = np.arange(64, dtype="uint16").reshape(8, 8)
    band = write_raster(tmp_path / "z_B3.tif", data)
    archive = tmp_path / "scene.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(band, "z_B3.tif")
    band.unlink()
    write_stack([f"/vsizip/{archive}/z_B3.tif"], tmp_path / "s.vrt")
    with rasterio.open(tmp_path / "s.vrt") as src:
        assert src.descriptions == ("B3",)
        np.testing.assert_array_equal(src.read(1), data)

    masked = write_raster(tmp_path / "m.tif", data)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(masked, "r+") as dst:
        dst.write_mask(np.where(data > 10, 255, 0).astype("uint8"))
    with pytest.warns(UncarriedMaskWarning, match="give the file a nodata value"):
        plan_stack([masked])


def test_alpha_band_stays_alpha(tmp_path):
    rgba = shared_file("awkward/RGBA.uint16.tif")
    write_stack([rgba], tmp_path / "s.vrt")
    with rasterio.open(rgba) as a, rasterio.open(tmp_path / "s.vrt") as b:
        alpha = [i for i, ci in enumerate(a.colorinterp) if ci == ColorInterp.alpha]
        assert alpha and [b.colorinterp[i] for i in alpha] == [ColorInterp.alpha] * len(alpha)
        np.testing.assert_array_equal(a.read(), b.read())
    assert open_scene(tmp_path / "s.vrt").alpha == tuple(i + 1 for i in alpha)


def test_api_stack(tmp_path):
    files, whole = _zion_band_files(tmp_path / "bands", rows=64, cols=64)
    out = api.stack(files, tmp_path / "s.vrt")
    assert out == (tmp_path / "s.vrt").absolute()
    with rasterio.open(out) as a, rasterio.open(whole) as b:
        np.testing.assert_array_equal(a.read(), b.read())
    with pytest.raises(ConfigError, match="names is one string"):
        api.stack(files, tmp_path / "t.vrt", names="B2,B3,B4,B5")
    with pytest.raises(OutputExistsError, match="pass overwrite=True"):
        api.stack(files, out)
    with pytest.raises(ConfigError, match="files is one path"):
        api.stack(files[0], tmp_path / "u.vrt")


def test_training_on_a_stack_of_sentinel2_band_files_equals_training_on_the_image(tmp_path):
    import yaml

    from geoseg.config import load_train_config
    from geoseg.train import train

    from .test_train import _slovenia_config

    image = shared_file("slovenia/s2_l1c_2015-07-11.tif")
    with rasterio.open(image) as src:
        data, names = src.read(), src.descriptions
        crs, transform = src.crs.to_string(), src.transform
    (tmp_path / "bands").mkdir()
    files = [
        write_raster(
            tmp_path / "bands" / f"T33TWM_20150711T100006_{n}.tif",
            data[i],
            crs=crs,
            transform=transform,
        )
        for i, n in enumerate(names)
    ]
    vrt = write_stack(files[::-1], tmp_path / "s2.vrt")  # the bundle's order is by name
    assert vrt.names == names[::-1]
    weights = []
    for name, path in (("image", image), ("stack", tmp_path / "s2.vrt")):
        (tmp_path / name).mkdir()
        cfg_path = _slovenia_config(tmp_path / name)
        cfg = yaml.safe_load(cfg_path.read_text())
        cfg["data"]["sources"][0]["image"] = str(path)
        cfg["bands"] = list(names)
        cfg_path.write_text(yaml.safe_dump(cfg))
        with pytest.warns(GeosegWarning):  # the unknown RABA code 1600, as on the image
            bundle = train(load_train_config(cfg_path), tmp_path / name / "b", progress=False)
        weights.append((bundle / "weights.safetensors").read_bytes())
    assert weights[0] == weights[1]


def test_a_stack_whose_band_file_is_gone_says_so(tmp_path, tiny_bundle):
    files, _ = _zion_band_files(tmp_path / "bands", rows=64, cols=64)
    write_stack(files, tmp_path / "s.vrt")
    files[1].rename(tmp_path / "elsewhere.tif")
    _assert_user_error(
        _run("predict", tmp_path / "s.vrt", "--model", tiny_bundle, "--out", tmp_path / "o"),
        "s.vrt: a virtual raster whose file",
        files[1].name,
        "is missing",
    )
    assert not (tmp_path / "o").exists()
    info = _run("info", tmp_path / "s.vrt")
    assert info.exit_code == 0, info.output
    assert "vrt: stack" in info.output and "vrt_files: 4" in info.output
    assert f"1 of the files it reads is missing (first: {files[1]})" in info.output


def test_sentinel2_jpeg2000_band_files(tmp_path):
    """Sentinel-2 ships its bands as JPEG 2000 (.jp2), 10 m and 20 m ones."""
    rng = np.random.default_rng(3)
    files, arrays = [], []
    for name, res, size in (("B04_10m", 10, 64), ("B8A_20m", 20, 32)):
        data = rng.integers(0, 10000, (size, size), dtype="uint16")
        path = tmp_path / f"T33TWM_20230715T095559_{name}.jp2"
        profile = {
            "driver": "JP2OpenJPEG",
            "width": size,
            "height": size,
            "count": 1,
            "dtype": "uint16",
            "crs": "EPSG:32633",
            "transform": from_origin(500000, 5100000, res, res),
            "nodata": 0,
            "REVERSIBLE": "YES",
            "QUALITY": "100",
        }
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data, 1)
        files.append(path)
        arrays.append(data)
    stack = write_stack(files, tmp_path / "s2.vrt")
    assert stack.names == ("B04", "B8A") and (stack.width, stack.height) == (64, 64)
    with rasterio.open(tmp_path / "s2.vrt") as src:
        data = src.read()
        assert src.nodatavals == (0.0, 0.0)
    np.testing.assert_array_equal(data[0], arrays[0])
    np.testing.assert_array_equal(data[1], np.repeat(np.repeat(arrays[1], 2, 0), 2, 1))
    assert open_scene(tmp_path / "s2.vrt", image=True).band_names == ("B04", "B8A")


def test_lowercase_band_tokens_are_matched_by_name(tmp_path):
    """The upstream Zion files are landsat_b2.tif ...: named B2 ..., so that a reversed
    stack predicts as the scene (band names are matched but for case, too)."""
    files, whole = _zion_band_files(tmp_path / "bands", rows=96, cols=96)
    lower = []
    for f in files:
        name = f.name.replace("_SR_", "_sr_").replace("_B", "_b").lower()
        lower.append(f.rename(f.with_name(name)))
    stack = write_stack(lower[::-1], tmp_path / "s.vrt")
    assert stack.names == ("B5", "B4", "B3", "B2")
    renamed = write_stack(lower[::-1], tmp_path / "l.vrt", names=["b5", "b4", "b3", "b2"])
    assert renamed.names == ("b5", "b4", "b3", "b2")
    model = api.load_model(ZION_BUNDLE)
    with rasterio.open(whole) as src:
        expected = model.predict(src.read()).fine
    for vrt in ("s.vrt", "l.vrt"):
        out = tmp_path / f"p-{vrt[0]}"
        result = _run("-q", "predict", tmp_path / vrt, "--model", ZION_BUNDLE, "--out", out)
        assert result.exit_code == 0, result.output
        with rasterio.open(out / "labels.tif") as src:
            np.testing.assert_array_equal(src.read(2), expected)


def test_crops_and_nearest_downsampling_are_one_warning_each(tmp_path, caplog):
    rng = np.random.default_rng(2)
    a = write_raster(tmp_path / "a_B2.tif", rng.integers(0, 9, (40, 40), dtype="uint16"))
    b = write_raster(
        tmp_path / "b_B3.tif",
        rng.integers(0, 9, (20, 20), dtype="uint16"),
        transform=from_origin(300000, 4100000, 60, 60),
    )
    wide = write_raster(
        tmp_path / "c_B4.tif",
        rng.integers(0, 9, (40, 50), dtype="uint16"),
        transform=from_origin(300000, 4100000, 30, 30),
    )
    with caplog.at_level(logging.WARNING, logger="geoseg"):
        write_stack([a, b, wide], tmp_path / "s.vrt", resolution="coarsest")
    lines = [r.getMessage() for r in caplog.records]
    crops = [m for m in lines if m.startswith("cropped")]
    assert len(crops) == 1 and "c_B4.tif (" in crops[0] and "a_B2.tif" not in crops[0]
    assert sum("nearest neighbour keeps about one pixel in 4" in m for m in lines) == 2
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="geoseg"):
        write_stack([a, b], tmp_path / "t.vrt", resolution="coarsest", resampling="average")
    assert not caplog.records


def test_relative_archive_paths_and_files_outside_the_folder(tmp_path, monkeypatch):
    data = np.arange(64, dtype="uint16").reshape(8, 8)
    band = write_raster(tmp_path / "z_B3.tif", data)
    (tmp_path / "work").mkdir()
    with zipfile.ZipFile(tmp_path / "work" / "scene.zip", "w") as z:
        z.write(band, "z_B3.tif")
    monkeypatch.chdir(tmp_path / "work")
    (tmp_path / "work" / "out").mkdir()
    write_stack(
        ["/vsizip/scene.zip/z_B3.tif", band], tmp_path / "work" / "out" / "s.vrt", names=["a", "b"]
    )
    text = (tmp_path / "work" / "out" / "s.vrt").read_text()
    assert f"/vsizip/{tmp_path / 'work' / 'scene.zip'}/z_B3.tif" in text
    assert f'relativeToVRT="0">{band}<' in text  # outside the VRT's folder: absolute
    monkeypatch.chdir(tmp_path)
    with rasterio.open(tmp_path / "work" / "out" / "s.vrt") as src:
        np.testing.assert_array_equal(src.read(1), data)
    (tmp_path / "work" / "scene.zip").unlink()
    with pytest.raises(RasterReadError, match=r"whose file .*scene\.zip is missing"):
        open_scene(tmp_path / "work" / "out" / "s.vrt")


def test_types_without_a_common_integer_type_are_refused(tmp_path):
    big = write_raster(tmp_path / "u.tif", np.full((1, 4, 4), 2**60 + 1, "uint64"))
    neg = write_raster(tmp_path / "i.tif", np.full((1, 4, 4), -1, "int64"))
    with pytest.raises(RasterFormatError, match=r"no integer type holds the values of all"):
        plan_stack([big, neg])


def test_relative_names_follow_symlinks_as_the_system_does(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "a" / "b")
    band = write_raster(tmp_path / "a" / "g_B2.tif", np.arange(16, dtype="uint16").reshape(4, 4))
    out = tmp_path / "link" / ".." / "s.vrt"  # the system puts it in a/, not in tmp_path
    write_stack([band], out)
    with rasterio.open(tmp_path / "a" / "s.vrt") as src:
        np.testing.assert_array_equal(src.read(1), np.arange(16).reshape(4, 4))
