"""--normalize scene: a scene standardised by its own band statistics (another date)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.windows import Window

from geoseg import api
from geoseg.cli import cli
from geoseg.normalize import Normalization, scene_normalization

from .conftest import ZION_BUNDLE, shared_file, write_raster


@pytest.fixture(scope="module")
def dates(tmp_path_factory):
    """A 512² crop of Zion, and the same pixels as another date: each band x 1.15 + 300."""
    with rasterio.open(shared_file("zion/landsat8_b2345.tif")) as src:
        image = src.read(window=Window(400, 300, 512, 512))
        transform = src.window_transform(Window(400, 300, 512, 512))
    other = np.clip(image * 1.15 + 300, 0, 65534).round().astype(np.uint16)
    folder = tmp_path_factory.mktemp("dates")
    names = ("B2", "B3", "B4", "B5")
    return tuple(
        write_raster(folder / f"{n}.tif", d, transform=transform, names=names)
        for n, d in (("a", image), ("b", other))
    )


def _labels(path):
    with rasterio.open(path / "labels.tif") as src:
        return src.read()


def test_the_scene_s_own_statistics_undo_a_gain_and_offset(dates, tmp_path):
    a, b = dates
    runner = CliRunner()
    for name, scene, how in [("a", a, "bundle"), ("b", b, "bundle"), ("as", a, "scene"),
                             ("bs", b, "scene")]:  # fmt: skip
        args = ["predict", str(scene), "--model", str(ZION_BUNDLE), "--out", str(tmp_path / name)]
        res = runner.invoke(cli, [*args, "--no-vector", "--normalize", how])
        assert res.exit_code == 0, res.output
    # with the training statistics, the brighter date is labelled otherwise
    plain = (_labels(tmp_path / "a")[1] == _labels(tmp_path / "b")[1]).mean()
    own = (_labels(tmp_path / "as")[1] == _labels(tmp_path / "bs")[1]).mean()
    assert plain < 0.8 and own > 0.995, (plain, own)
    run = json.loads((tmp_path / "bs" / "run.json").read_text())
    assert run["parameters"]["normalize"] == "scene"
    stats = run["input_check"]["scene_normalization"]
    with rasterio.open(b) as src:
        values = src.read().reshape(4, -1).astype(np.float64)
    np.testing.assert_allclose(stats["mean"], values.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(stats["std"], values.std(axis=1), rtol=1e-6)
    plain_run = json.loads((tmp_path / "b" / "run.json").read_text())
    assert "scene_normalization" not in plain_run["input_check"]
    assert plain_run["parameters"]["labels_token"] != run["parameters"]["labels_token"]


def test_an_array_is_labelled_with_its_own_statistics_as_its_file(dates, tmp_path):
    _, b = dates
    model = api.load_model(ZION_BUNDLE)
    with rasterio.open(b) as src:
        image = src.read()
    api.predict(b, ZION_BUNDLE, tmp_path / "f", vector=False, normalize="scene")
    result = model.predict(image, normalize="scene")
    np.testing.assert_array_equal(result.fine, _labels(tmp_path / "f")[1])
    with pytest.raises(Exception, match="not one of bundle, scene"):
        model.predict(image, normalize="other")  # type: ignore[arg-type]


def test_only_the_bands_statistics_are_the_scene_s():
    bundle = Normalization(mean=(10.0, 20.0, 0.1), std=(1.0, 2.0, 0.3), differences=((0, 1),))
    own = scene_normalization([100.0, 200.0], [5.0, 0.0], bundle)
    assert own.mean == (100.0, 200.0, 0.1)  # the difference channel keeps the bundle's
    assert own.std == (5.0, 1e-6, 0.3)  # a constant band is not divided by zero
    assert own.differences == bundle.differences
    nothing = scene_normalization([float("nan")] * 2, [float("nan")] * 2, bundle)
    assert nothing == bundle


def test_scene_statistics_are_exact_whatever_the_file_s_overviews(tmp_path):
    from rasterio.enums import Resampling

    from geoseg.raster import scene_moments

    scene = shared_file("zion/landsat8_b2345.tif")  # 1.6 M pixels: above the sample's 1 M
    with rasterio.open(scene) as src:
        image, profile = src.read(), src.profile
    with_overviews = tmp_path / "ovr.tif"
    with rasterio.open(with_overviews, "w", **profile) as dst:
        dst.write(image)
        dst.build_overviews([2, 4, 8], Resampling.average)
    values = image.reshape(4, -1).astype(np.float64)
    for path in (scene, with_overviews):
        moments = scene_moments(str(path), (1, 2, 3, 4))
        np.testing.assert_allclose(moments.mean, values.mean(axis=1), rtol=1e-12)
        np.testing.assert_allclose(moments.std, values.std(axis=1), rtol=1e-9)
    # the whole scene as an array gets the very statistics, so the very labels
    run = api.predict(scene, ZION_BUNDLE, tmp_path / "f", vector=False, normalize="scene")
    result = api.load_model(ZION_BUNDLE).predict(image, normalize="scene")
    np.testing.assert_array_equal(result.fine, _labels(tmp_path / "f")[1])
    assert run["input_check"]["scene_normalization"]["std"] == [
        round(v, 6) for v in values.std(axis=1)
    ]


def test_windows_labelled_with_the_whole_scenes_statistics(tmp_path):
    """Found by a blind user test: chunks labelled one at a time (on a cluster) with
    normalize="scene" were each standardised by their own statistics."""
    from geoseg.errors import ConfigError
    from geoseg.normalize import BandStatistics

    model = api.load_model(ZION_BUNDLE)
    with rasterio.open(shared_file("zion/landsat8_b2345.tif")) as src:
        image, names = src.read(), src.descriptions
    stats = model.statistics(image, band_names=names)
    assert stats.bands == ("B2", "B3", "B4", "B5") and stats.pixels == image[0].size
    np.testing.assert_allclose(stats.mean, image.reshape(4, -1).mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(stats.std, image.reshape(4, -1).std(axis=1), rtol=1e-12)
    whole = model.predict(image, normalize="scene")
    np.testing.assert_array_equal(model.predict(image, normalize=stats).fine, whole.fine)
    window = image[:, :400, :500]  # mostly forest: other statistics than the scene's
    core = (slice(0, 288), slice(0, 388))  # a halo away from the window's cut edges
    with_scene = model.predict(window, normalize=stats).fine[core]
    with_own = model.predict(window, normalize="scene").fine[core]
    assert (with_scene == whole.fine[:400, :500][core]).mean() > 0.9999
    assert (with_own == whole.fine[:400, :500][core]).mean() < 0.8
    other = BandStatistics(("B5", "B4", "B3", "B2"), stats.mean, stats.std, stats.pixels)
    with pytest.raises(ConfigError, match="statistics are of bands B5, B4, B3, B2"):
        model.predict(window, normalize=other)
    with pytest.raises(ConfigError, match="not one of bundle, scene, or the BandStatistics"):
        model.predict(window, normalize="own")  # type: ignore[arg-type]
