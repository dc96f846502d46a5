"""Shared fixtures: the real data in ../shared/data and tiny generated rasters and bundles."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

# A host's Dask settings in the environment (a shared CI machine may have some: a
# no-workers timeout, other comm timeouts) must not change what the tests see; the
# scheduler and worker processes the tests start inherit this environment.
for _name in [n for n in os.environ if n.startswith("DASK_")]:
    del os.environ[_name]

ROOT = Path(__file__).resolve().parents[1]
# resolved, as geoseg records input paths: ../shared may be a symbolic link
SHARED = (ROOT.parent / "shared" / "data").resolve()
ZION_BUNDLE = ROOT / "models" / "zion-nlcd"
NLCD_YAML = ROOT / "configs" / "taxonomy" / "nlcd.yaml"


def shared_file(rel: str) -> Path:
    """A file of ../shared/data, or skip the test with the reason."""
    path = SHARED / rel
    if not path.exists():
        pytest.skip(f"real test data {path} is absent (it lives in ../shared/data beside the repo)")
    return path


@pytest.fixture(scope="session")
def zion_prediction(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real Zion scene predicted once with the committed bundle at default settings.

    The output folder (labels.tif, landcover.gpkg, run.json), shared by the tests that
    read a default prediction, so the suite predicts the scene once instead of per test.
    """
    from geoseg.workflow import run_predict

    scene = shared_file("zion/landsat8_b2345.tif")
    if not (ZION_BUNDLE / "bundle.json").exists():
        pytest.skip("models/zion-nlcd is not trained yet")
    out = tmp_path_factory.mktemp("zion-default") / "zion"
    run_predict(scene, ZION_BUNDLE, out, formats=("gpkg",))
    return out


@pytest.fixture(autouse=True)
def _geoseg_logger_restored() -> Iterator[None]:
    """Each test starts with the ``geoseg`` logger as the last left it: a CLI run sets
    its level (``-q``: errors only) and handler, which would hide warnings from the
    ``caplog`` of tests that run after it."""
    logger = logging.getLogger("geoseg")
    level, handlers, propagate = logger.level, list(logger.handlers), logger.propagate
    yield
    logger.setLevel(level)
    logger.handlers[:] = handlers
    logger.propagate = propagate


@pytest.fixture(autouse=True)
def _isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEOSEG_CACHE", str(tmp_path_factory.getbasetemp() / "geoseg-cache"))


def write_raster(
    path: Path,
    data: np.ndarray,
    *,
    crs: str | None = "EPSG:32612",
    nodata=None,
    transform=None,
    names: tuple[str, ...] | None = None,
) -> Path:
    """Write a (bands, H, W) array as a tiled GeoTIFF."""
    if data.ndim == 2:
        data = data[None]
    profile = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": data.shape[0],
        "dtype": data.dtype.name,
        "transform": transform or from_origin(300000, 4100000, 30, 30),
    }
    if crs:
        profile["crs"] = crs
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, n in enumerate(names or (), start=1):
            dst.set_band_description(i, n)
    return path


@pytest.fixture(scope="session")
def tiny_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded 4-band uint16 scene (150 x 200 px, EPSG:32612) with a nodata corner."""
    rng = np.random.default_rng(42)
    h, w = 150, 200
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(np.sin(xx / 17.0 + b) + np.cos(yy / 23.0 - b)) for b in range(4)])
    data = (5000 + 1500 * base + rng.normal(0, 200, (4, h, w))).clip(0, 60000).astype(np.uint16)
    data[:, :20, :30] = 65535
    path = tmp_path_factory.mktemp("scene") / "tiny.tif"
    return write_raster(path, data, nodata=65535, names=("B2", "B3", "B4", "B5"))


@pytest.fixture(scope="session")
def empty_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-band scene (40 x 40 px) whose every pixel is nodata."""
    path = tmp_path_factory.mktemp("scene") / "empty.tif"
    data = np.full((4, 40, 40), 65535, np.uint16)
    return write_raster(path, data, nodata=65535, names=("B2", "B3", "B4", "B5"))


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (untrained, seeded) NLCD bundle with a small network: exercises every code path."""
    import torch

    from geoseg.bundle import BundleMeta, save_bundle
    from geoseg.model import ModelConfig, build_segmenter
    from geoseg.normalize import Normalization
    from geoseg.taxonomy import load_taxonomy

    torch.manual_seed(0)
    tax = load_taxonomy(NLCD_YAML)
    cfg = ModelConfig(
        architecture="Unet",
        encoder="resnet18",
        encoder_depth=3,
        decoder_channels=(32, 16, 8),
        features=8,
    )
    model = build_segmenter(cfg, in_channels=4, taxonomy=tax).eval()
    meta = BundleMeta(
        name="tiny",
        architecture=cfg.architecture,
        encoder=cfg.encoder,
        model=cfg,
        bands=("B2", "B3", "B4", "B5"),
        normalization=Normalization(mean=(5000.0,) * 4, std=(1500.0,) * 4),
        taxonomy=tax,
        output_stride=cfg.output_stride,
        tile_size=64,
        halo=16,
    )
    return save_bundle(tmp_path_factory.mktemp("bundle") / "tiny-bundle", meta, model)
