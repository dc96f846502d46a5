"""The Python API (geoseg.api): the same results as the commands, and arrays in memory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from click.testing import CliRunner

from geoseg import api
from geoseg.cli import cli
from geoseg.errors import ConfigError, GeosegError, OutputExistsError, UnknownCodeWarning

from .conftest import ZION_BUNDLE, shared_file


@pytest.fixture(scope="module")
def zion_model() -> api.Model:
    if not (ZION_BUNDLE / "bundle.json").exists():
        pytest.skip("models/zion-nlcd is not trained yet")
    return api.load_model(ZION_BUNDLE)


def test_model_labels_an_array_exactly_as_predict_labels_the_file(zion_model, zion_prediction):
    scene = shared_file("zion/landsat8_b2345.tif")
    with rasterio.open(scene) as src:
        image = src.read()
    result = zion_model.predict(image)
    with rasterio.open(zion_prediction / "labels.tif") as src:
        written = src.read()
    assert result.coarse.shape == image.shape[1:]
    np.testing.assert_array_equal(result.coarse, written[0])
    np.testing.assert_array_equal(result.fine, written[1])
    np.testing.assert_array_equal(result.confidence, written[2])
    assert result.probabilities is None
    assert result.valid.all()  # the Zion scene has no nodata


def test_model_picks_bands_by_name_and_checks_the_image(zion_model, tiny_scene):
    with rasterio.open(tiny_scene) as src:
        image = src.read()  # B2..B5 with a nodata corner of 65535
    ref = zion_model.predict(image, nodata=65535)
    assert (ref.coarse[:20, :30] == ref.taxonomy.nodata).all()
    assert (ref.coarse[20:, 30:] != ref.taxonomy.nodata).all()
    # the same bands in another order, with an extra band, picked by name
    shuffled = np.concatenate([image[::-1], image[:1]])
    by_name = zion_model.predict(
        shuffled, nodata=65535, band_names=["B5", "B4", "B3", "B2", "extra"]
    )
    np.testing.assert_array_equal(by_name.fine, ref.fine)
    with pytest.raises(ConfigError, match=r"has 5 bands and .* reads 4 \(B2, B3, B4, B5\)"):
        zion_model.predict(shuffled)
    with pytest.raises(ConfigError, match="has no band B3"):
        zion_model.predict(image, band_names=["B2", "Bx", "B4", "B5"])
    # bands without names (rasterio's descriptions: None) read as band1..band4
    with pytest.raises(ConfigError, match=r"no band B3 \(its bands: B2, band2, B4, B5\)"):
        zion_model.predict(image, band_names=["B2", None, "B4", "B5"])
    with pytest.raises(ConfigError, match=r"names bands 2, 3 all 'B3', one of the bands"):
        zion_model.predict(image, band_names=["B2", "B3", "B3", "B5"])
    with pytest.raises(ConfigError, match="lists 3 names for an image of 4 bands"):
        zion_model.predict(image, band_names=["B2", "B3", "B4"])
    with pytest.raises(ConfigError, match=r"shape \(150, 200\): pass \(bands, height, width\)"):
        zion_model.predict(image[0])
    with pytest.raises(ConfigError, match="dtype bool"):
        zion_model.predict(image > 0)
    with pytest.raises(ConfigError, match="multiple of the network's output stride 16"):
        zion_model.predict(image, tile_size=100)
    with pytest.raises(ConfigError, match=r"valid has shape \(10, 10\)"):
        zion_model.predict(image, valid=np.ones((10, 10), bool))


def test_model_leaves_invalid_and_nan_pixels_unlabelled(zion_model):
    with rasterio.open(shared_file("zion/landsat8_b2345.tif")) as src:
        image = src.read(window=((0, 96), (0, 128))).astype(np.float32)
    image[2, 5, 7] = np.nan
    valid = np.ones(image.shape[1:], bool)
    valid[50:60, 10:20] = False
    result = zion_model.predict(image, valid=valid, probabilities=True)
    nodata = result.taxonomy.nodata
    assert result.coarse[5, 7] == nodata and result.fine[5, 7] == nodata
    assert (result.coarse[50:60, 10:20] == nodata).all()
    assert result.valid.sum() == valid.sum() - 1
    tax = result.taxonomy
    assert result.probabilities is not None
    assert result.probabilities.shape == (tax.n_coarse + tax.n_fine, 96, 128)
    assert (result.probabilities[:, 50:60, 10:20] == 255).all()
    # the chosen coarse class is the most probable one where the labels are valid
    coarse_probs = result.probabilities[: tax.n_coarse]
    chosen = np.asarray(tax.coarse_codes)[coarse_probs.argmax(axis=0)]
    agree = (chosen == result.coarse)[result.valid]
    assert agree.mean() > 0.95  # ties of rounded percentages aside
    assert set(result.names("coarse")) == set(tax.coarse_codes.tolist())
    with pytest.raises(ConfigError, match="not one of coarse, fine"):
        result.names("medium")  # type: ignore[arg-type]


def test_predict_function_writes_what_the_command_writes(tmp_path, tiny_scene, tiny_bundle):
    run = api.predict(tiny_scene, tiny_bundle, tmp_path / "api", formats="gpkg,parquet")
    assert {p.name for p in (tmp_path / "api").iterdir()} >= {
        "labels.tif",
        "landcover.gpkg",
        "landcover.parquet",
        "run.json",
    }
    assert (
        json.loads((tmp_path / "api" / "run.json").read_text())["megapixels_per_s"]
        == (run["megapixels_per_s"])
    )
    res = CliRunner().invoke(
        cli, ["predict", str(tiny_scene), "--model", str(tiny_bundle), "--out", str(tmp_path / "c")]
    )
    assert res.exit_code == 0, res.output
    with (
        rasterio.open(tmp_path / "api" / "labels.tif") as a,
        rasterio.open(tmp_path / "c" / "labels.tif") as c,
    ):
        np.testing.assert_array_equal(a.read(), c.read())
    with pytest.raises(OutputExistsError, match="overwrite"):
        api.predict(tiny_scene, tiny_bundle, tmp_path / "api")
    with pytest.raises(ConfigError, match="unknown formats"):
        api.predict(tiny_scene, tiny_bundle, tmp_path / "x", formats=("gpkg", "kml"))
    assert not (tmp_path / "x").exists()


def test_vectorize_returns_layers_and_writes_only_when_asked(tmp_path, zion_prediction):
    labels = zion_prediction / "labels.tif"
    layers = api.vectorize(labels)  # the cartographic defaults: 4 pixels, one pixel
    assert set(layers) == {"landcover", "coarse"}
    assert layers["landcover"].attrs == {"mmu": 3600.0, "simplify": 30.0}
    assert list(tmp_path.iterdir()) == []
    exact = api.vectorize(labels, tmp_path / "exact.gpkg", mmu=0, simplify=0)
    assert len(exact["landcover"]) > len(layers["landcover"])
    args = ["--out", str(tmp_path / "cli.gpkg"), "--mmu", "0", "--simplify", "0"]
    res = CliRunner().invoke(cli, ["vectorize", str(labels), *args])
    assert res.exit_code == 0, res.output
    assert f"wrote {len(exact['landcover'])} polygons" in res.output
    import geopandas as gpd

    a = gpd.read_file(tmp_path / "exact.gpkg", layer="landcover")
    c = gpd.read_file(tmp_path / "cli.gpkg", layer="landcover")
    assert a.drop(columns="geometry").equals(c.drop(columns="geometry"))
    assert a.geometry.geom_equals_exact(c.geometry, 0).all()


def test_evaluate_returns_scores_without_writing(tmp_path, zion_prediction, monkeypatch):
    coarse = shared_file("zion/nlcd2011_level1.tif")
    fine = shared_file("zion/nlcd2011_level2.tif")
    labels = zion_prediction / "labels.tif"
    monkeypatch.chdir(tmp_path)  # nothing may appear in the working folder either
    scores = api.evaluate(labels, coarse=coarse, fine=fine, checkerboard=128, bootstrap=0)
    assert list(tmp_path.iterdir()) == []
    written = api.evaluate(
        labels, tmp_path / "report", coarse=coarse, fine=fine, checkerboard=128, bootstrap=0
    )
    report = json.loads((tmp_path / "report" / "metrics.json").read_text())
    for level in ("coarse", "fine"):
        assert scores[level]["miou"] == written[level]["miou"] == report[level]["miou"]
        assert scores[level]["confusion_matrix"] == report[level]["confusion_matrix"]
    # the committed bundle's test score, as the README reports it
    assert round(scores["coarse"]["miou"], 3) == 0.337
    assert round(scores["fine"]["miou"], 3) == 0.236


def test_train_takes_a_mapping_with_paths_relative_to_the_working_folder(tmp_path, monkeypatch):
    img = shared_file("slovenia/s2_l1c_2015-07-11.tif")
    here = Path(__file__).resolve().parents[1]
    config = {
        "name": "slovenia-api",
        "taxonomy": "configs/taxonomy/slovenia.yaml",  # relative to the working folder
        "data": {
            "sources": [
                {
                    "image": str(img),
                    "coarse": str(img.parent / "lulc_coarse.tif"),
                    "fine": str(img.parent / "raba_fine.tif"),
                }
            ]
        },
        "split": {"block": 32, "val_every": 4},
        "model": {"encoder_depth": 3, "decoder_channels": [32, 16, 8], "features": 8},
        "train": {
            "epochs": 1,
            "steps_per_epoch": 2,
            "batch_size": 4,
            "patch_size": 32,
            "tile_size": 64,
            "halo": 16,
            "device": "cpu",
        },
    }
    monkeypatch.chdir(here)
    with pytest.warns(UnknownCodeWarning, match="1600"):
        from_dict = api.train(config, tmp_path / "a")
    # the same config as a file in another folder, its taxonomy given absolute
    as_file = tmp_path / "cfg" / "c.yaml"
    as_file.parent.mkdir()
    config["taxonomy"] = str(here / config["taxonomy"])
    as_file.write_text(yaml.safe_dump(config))
    with pytest.warns(UnknownCodeWarning, match="1600"):
        from_file = api.train(as_file, tmp_path / "b")
    assert (from_dict / "weights.safetensors").read_bytes() == (
        from_file / "weights.safetensors"
    ).read_bytes()
    meta = json.loads((from_dict / "bundle.json").read_text())
    assert meta["name"] == "slovenia-api"
    with pytest.raises(ConfigError, match="max_steps is 0"):
        api.train(config, tmp_path / "c", max_steps=0)
    with pytest.raises(ConfigError, match=r"config: .*epochs"):
        api.train({**config, "train": {**config["train"], "epochs": 0}}, tmp_path / "d")
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()


def test_merge_function_merges_as_the_command(tmp_path, zion_prediction):
    labels = zion_prediction / "labels.tif"
    with rasterio.open(labels) as src:
        profile, data, tags = src.profile, src.read(), src.tags()
    data[:, :100, :100] = 255  # a cloud in the second date
    second = tmp_path / "second.tif"
    with rasterio.open(second, "w", **profile) as dst:
        dst.write(data)
        dst.update_tags(**tags)
    record = api.merge([second, labels], tmp_path / "m", rule="first", formats="parquet")
    assert (tmp_path / "m" / "landcover.parquet").exists()
    assert record["unlabelled_pixels"] == 0  # the first map's cloud filled by the second
    assert record["inputs"][1]["pixels_given"] == 100 * 100
    with pytest.raises(ConfigError, match="unknown formats"):
        api.merge([second, labels], tmp_path / "x", formats="kml")


def test_masked_arrays_and_file_masks_leave_pixels_unlabelled(zion_model, tmp_path):
    with rasterio.open(shared_file("zion/landsat8_b2345.tif")) as src:
        image = src.read(window=((0, 128), (0, 160)))
        transform = src.window_transform(((0, 128), (0, 160)))
    image[:, :20, :] = 65535  # a fill border
    path = tmp_path / "fill.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=160, height=128, count=4, dtype="uint16",
        crs="EPSG:32612", transform=transform, nodata=65535,
    ) as dst:  # fmt: skip
        dst.write(image)
        dst.descriptions = ("B2", "B3", "B4", "B5")
    api.predict(path, ZION_BUNDLE, tmp_path / "cli", vector=False)
    with rasterio.open(tmp_path / "cli" / "labels.tif") as src:
        written = src.read()
    with rasterio.open(path) as src:
        masked = zion_model.predict(src.read(masked=True))  # rasterio's masked read
        by_mask = zion_model.predict(src.read(), valid=src.dataset_mask() > 0)
    for result in (masked, by_mask):
        assert not result.valid[:20].any() and result.valid[20:].all()
        np.testing.assert_array_equal(result.fine, written[1])


def test_values_in_other_units_are_warned_about(zion_model, tmp_path):
    from geoseg.errors import GeosegWarning

    with rasterio.open(shared_file("zion/landsat8_b2345.tif")) as src:
        image = src.read(window=((0, 96), (0, 96)))
    reflectance = (image * 2e-5 - 0.1).astype(np.float32)
    with pytest.warns(GeosegWarning, match="different units or scaling"):
        zion_model.predict(reflectance)
    path = tmp_path / "refl.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=96, height=96, count=4, dtype="float32",
        crs="EPSG:32612", transform=rasterio.transform.from_origin(300000, 4100000, 30, 30),
    ) as dst:  # fmt: skip
        dst.write(reflectance)
    with pytest.warns(GeosegWarning, match="different units or scaling"):
        run = api.predict(path, ZION_BUNDLE, tmp_path / "o", vector=False)
    assert any("different units or scaling" in w for w in run["warnings"])


def test_mistakes_are_one_line_errors_in_python_terms(zion_model, tiny_scene, tmp_path):
    with rasterio.open(tiny_scene) as src:
        image = src.read()
    cases = [
        (lambda: api.load_model(ZION_BUNDLE, device="gpu"), "not one of auto, cpu, cuda"),
        (lambda: zion_model.predict(image, nodata="65535"), "nodata is '65535': give a number"),
        (lambda: zion_model.predict(image, band_names="B2"), "give a list, one name per band"),
        (lambda: zion_model.predict(np.moveaxis(image, 0, -1)), r"np.moveaxis\(image, -1, 0\)"),
        (lambda: api.predict(image, ZION_BUNDLE, tmp_path / "a"), r"load_model\(BUNDLE\).predict"),
        (lambda: api.merge("a/labels.tif", tmp_path / "m"), "give a list of paths"),
        (lambda: api.predict(tiny_scene, ZION_BUNDLE, tmp_path / "b", mask="no.tif"),
         "mask file not found"),
    ]  # fmt: skip
    for call, message in cases:
        with pytest.raises(GeosegError, match=message):
            call()
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    result = zion_model.predict(image, nodata=65535)
    with pytest.raises(GeosegError, match="save it first"):
        api.vectorize(result)  # type: ignore[arg-type]
    # the commands' advice, given as keyword arguments
    api.predict(tiny_scene, zion_model, tmp_path / "c", vector=False)  # a Model is its bundle
    with pytest.raises(OutputExistsError, match="pass overwrite=True to replace it"):
        api.predict(tiny_scene, ZION_BUNDLE, tmp_path / "c", vector=False)


def test_a_prediction_is_saved_as_a_labels_raster_the_jobs_take(zion_model, tmp_path):
    import pickle

    scene = shared_file("zion/landsat8_b2345.tif")
    with rasterio.open(scene) as src:
        window = ((100, 356), (200, 456))
        image, transform, crs = src.read(window=window), src.window_transform(window), src.crs
    result = zion_model.predict(image, transform=transform, crs=crs)
    assert (
        repr(result) == "Prediction(256 x 256 px, 65,536 labelled, taxonomy 'nlcd', crs=EPSG:32612)"
    )
    saved = result.save(tmp_path / "mine.tif")
    api.predict(scene, ZION_BUNDLE, tmp_path / "p", vector=False)
    with rasterio.open(saved) as a, rasterio.open(tmp_path / "p" / "labels.tif") as b:
        assert a.transform == transform and a.crs == crs
        assert a.tags()["GEOSEG_TAXONOMY"] == b.tags()["GEOSEG_TAXONOMY"]
        assert a.tags()["GEOSEG_BUNDLE"] == b.tags()["GEOSEG_BUNDLE"]  # the same model
        assert a.read(1).dtype == b.read(1).dtype
    assert (tmp_path / "mine.qml").exists() and (tmp_path / "mine.tif.aux.xml").exists()
    layers = api.vectorize(saved, mmu=0, simplify=0)
    assert set(layers["landcover"]["fine_code"]) <= set(np.unique(result.fine).tolist())
    scores = api.evaluate(saved, fine=shared_file("zion/nlcd2011_level2.tif"), align=True,
                          bootstrap=0)  # fmt: skip
    assert scores["fine"]["pixels"] == 256 * 256
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        result.save(saved)
    result.save(saved, overwrite=True)
    again = pickle.loads(pickle.dumps(zion_model))  # loaded again from its bundle
    np.testing.assert_array_equal(again.predict(image).fine, result.fine)
    assert result != zion_model.predict(image)  # arrays: compared by identity, not value


def test_a_model_passed_as_value_keeps_its_settings_and_identity(zion_model, tiny_scene, tmp_path):
    import pickle

    from affine import Affine

    from geoseg.errors import GeosegWarning

    fp32 = api.load_model(ZION_BUNDLE, precision="fp32", device="cpu")
    run = api.predict(tiny_scene, fp32, tmp_path / "a", vector=False)
    assert run["parameters"]["precision"] == "fp32" and run["parameters"]["device"] == "cpu"
    with pytest.raises(ConfigError, match="differ from the model's settings"):
        api.predict(tiny_scene, fp32, tmp_path / "b", precision="bf16")
    # pickled with its absolute path: unpickled from another folder, the same predictor
    monkey = pytest.MonkeyPatch()
    try:
        monkey.chdir(tmp_path)
        again = pickle.loads(pickle.dumps(fp32))
    finally:
        monkey.undo()
    assert again.path == str(ZION_BUNDLE.resolve()) and again._predictor is fp32._predictor
    with pytest.raises(GeosegError, match="not found"):
        api.load_model(tmp_path / "no-bundle")
    # the library checks what the command line checks
    with pytest.raises(ConfigError, match="normalize 'Scene' is not one of bundle, scene"):
        api.predict(tiny_scene, ZION_BUNDLE, tmp_path / "c", normalize="Scene")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="split grid places the blocks of a checkerboard"):
        api.evaluate(tmp_path / "a" / "labels.tif", coarse=tiny_scene, split_grid=tiny_scene)
    # given its georeferencing, an array of 10 m pixels is warned about, as a file is
    with rasterio.open(tiny_scene) as src:
        image = src.read()
    with pytest.warns(GeosegWarning, match="pixels are 10 m and the model was trained on 30 m"):
        zion_model.predict(image, nodata=65535, transform=Affine(10, 0, 3e5, 0, -10, 4.1e6),
                           crs="EPSG:32612")  # fmt: skip


def test_a_model_of_bands_given_by_index_reads_band_k_of_an_array(
    tiny_bundle, tiny_scene, tmp_path
):
    """A bundle trained with ``bands: [4, 3, 2, 1]`` reads band K of the image, as
    geoseg predict reads band K of a file, without band_names."""

    from geoseg.bundle import load_bundle, save_bundle

    meta, net = load_bundle(tiny_bundle)
    reordered = meta.model_copy(update={"bands": ("band4", "band3", "band2", "band1")})
    by_index = save_bundle(tmp_path / "by-index", reordered, net)
    with rasterio.open(tiny_scene) as src:
        image = src.read()
    named = api.load_model(tiny_bundle).predict(image[::-1])
    got = api.load_model(by_index).predict(image)
    np.testing.assert_array_equal(got.fine, named.fine)
    five = np.concatenate([image, image[:1]])  # a fifth band the model does not read
    np.testing.assert_array_equal(api.load_model(by_index).predict(five).fine, named.fine)


def test_edit_sets_metadata_in_place(tmp_path):
    from affine import Affine

    from .conftest import write_raster

    tif = write_raster(tmp_path / "a.tif", np.ones((1, 4, 4), "uint16"), crs=None)
    now = api.edit(tif, crs="EPSG:32612", transform=Affine(30, 0, 300000, 0, -30, 4100000))
    assert now["crs"] == "EPSG:32612" and now["transform"][2] == 300000
    assert api.edit(tif, nodata=0)["nodata"] == 0
    assert api.edit(tif, unset_nodata=True)["nodata"] is None
    with pytest.raises(ConfigError, match="nothing to change: give crs, transform, nodata"):
        api.edit(tif)


def test_an_unpickled_model_loads_where_it_is_used_and_only_the_same_bundle(tiny_bundle, tmp_path):
    """A Dask scheduler that unpickles a task's Model does not load torch; a worker that
    uses it loads the bundle only if it is still the one the client loaded."""
    import pickle
    import shutil
    import subprocess
    import sys

    from geoseg.errors import BundleError

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    model = api.load_model(bundle, device="cpu")
    pickled = tmp_path / "model.pkl"
    pickled.write_bytes(pickle.dumps(model))
    assert len(pickled.read_bytes()) < 1_000  # the path, settings and hash
    probe = (
        "import pickle, sys\n"
        f"m = pickle.loads(open({str(pickled)!r}, 'rb').read())\n"
        "print('torch' in sys.modules, m.path)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", str(bundle.resolve())]
    # the bundle is replaced (trained again with --overwrite) after the client loaded it
    meta = json.loads((bundle / "bundle.json").read_text())
    meta["name"] = "retrained"
    (bundle / "bundle.json").write_text(json.dumps(meta))
    use = probe + "import numpy as np\nm.predict(np.full((4, 32, 32), 9000.0))\n"
    out = subprocess.run([sys.executable, "-c", use], capture_output=True, text=True)
    assert out.returncode == 1
    assert "BundleError: " in out.stderr and "the bundle changed after it was loaded" in out.stderr
    # in this process, the model the client loaded stays the one it labels with
    again = pickle.loads(pickled.read_bytes())
    assert again._predictor is model._predictor
    from geoseg.predict import cached_predictor

    with pytest.raises(BundleError, match=r"changed after it was loaded .*load it again"):
        cached_predictor(str(bundle), device="cpu", batch_size=1, bundle_id="0" * 64)
