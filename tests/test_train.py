import json

import pytest
import yaml

from geoseg.config import load_train_config
from geoseg.errors import ConfigError, UnknownCodeWarning
from geoseg.train import train
from geoseg.workflow import run_predict

from .conftest import ROOT, shared_file


def _slovenia_config(tmp_path, **train_over):
    img = shared_file("slovenia/s2_l1c_2015-07-11.tif")
    cfg = {
        "name": "slovenia-smoke",
        "taxonomy": str(ROOT / "configs" / "taxonomy" / "slovenia.yaml"),
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
        "model": {
            "architecture": "Unet",
            "encoder": "resnet18",
            "encoder_depth": 3,
            "decoder_channels": [32, 16, 8],
            "features": 8,
        },
        "train": {
            "epochs": 2,
            "steps_per_epoch": 3,
            "batch_size": 4,
            "patch_size": 32,
            "tile_size": 64,
            "halo": 16,
            "device": "cpu",
            **train_over,
        },
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_train_smoke_on_slovenia_makes_a_loadable_bundle(tmp_path):
    cfg = load_train_config(_slovenia_config(tmp_path))
    with pytest.warns(UnknownCodeWarning, match="1600"):
        bundle = train(cfg, tmp_path / "bundle", progress=False)
    meta = json.loads((bundle / "bundle.json").read_text())
    for key in (
        "architecture",
        "encoder",
        "bands",
        "normalization",
        "taxonomy",
        "output_stride",
        "metrics",
    ):
        assert key in meta
    assert meta["bands"][:2] == ["B01", "B02"] and len(meta["bands"]) == 13
    assert len(meta["training"]["history"]) == 2
    assert "coarse" in meta["metrics"]["validation"]
    out = tmp_path / "pred"
    run_predict(img := shared_file("slovenia/s2_l1c_2015-07-11.tif"), bundle, out, scheduler="sync")
    assert (out / "labels.tif").exists() and (out / "landcover.gpkg").exists()
    del img


def test_checkerboard_test_blocks_are_never_trained_on(tmp_path):
    from geoseg.taxonomy import load_taxonomy
    from geoseg.train import TEST, TRAIN, VAL, PatchSampler, load_scene

    img = shared_file("zion/landsat8_b2345.tif")
    tax = load_taxonomy(ROOT / "configs" / "taxonomy" / "nlcd.yaml")
    s = load_scene(
        img,
        img.parent / "nlcd2011_level1.tif",
        img.parent / "nlcd2011_level2.tif",
        tax,
        block=128,
        checkerboard=True,
        val_every=5,
    )
    rows, cols = __import__("numpy").mgrid[0 : s.role.shape[0], 0 : s.role.shape[1]]
    odd = (rows // 128 + cols // 128) % 2 == 1
    assert ((s.role == TEST) == odd).all()
    assert (s.role[~odd] != TEST).all() and (s.role == VAL).any()
    sampler = PatchSampler([s], [s.image.astype("float32")], 128, seed=0)
    for _, r, c, h, w in sampler.choices:
        assert (s.role[r : r + h, c : c + w] == TRAIN).all()


def test_config_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntaxonomy: t.yaml\ndata: {dataset: zion}\ntrain: {epochs: 0}\n")
    with pytest.raises(ConfigError, match=r"train\.epochs"):
        load_train_config(bad)
    bad.write_text("name: x\ntaxonomy: t.yaml\ndata: {}\n")
    with pytest.raises(ConfigError, match="dataset"):
        load_train_config(bad)
