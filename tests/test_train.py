import json
import re
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from affine import Affine
from click.testing import CliRunner

from geoseg.cli import cli
from geoseg.config import load_train_config
from geoseg.errors import ConfigError, OutputExistsError, RasterReadError, UnknownCodeWarning
from geoseg.infer import InferOptions
from geoseg.train import train
from geoseg.workflow import run_predict

from .conftest import NLCD_YAML, ROOT, shared_file


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
    assert meta["pixel_size"] == pytest.approx(10.0, abs=0.01)  # Sentinel-2's 10 m
    # taxonomy classes no training pixel has are left out of the labels, not guessed
    untrained = meta["training"]["untrained_classes"]
    assert untrained["coarse"] == [5, 6, 7, 9, 10]  # Water ... Snow and Ice: no pixel
    codes = [c["code"] for c in meta["taxonomy"]["coarse"]]
    bias = dict(zip(codes, meta["decode_bias"]["coarse"], strict=True))
    assert all(bias[c] == -1e4 for c in untrained["coarse"])
    assert all(bias[c] > -100 for c in codes if c not in untrained["coarse"])
    out = tmp_path / "pred"
    opts = InferOptions(probabilities=True)
    run_predict(shared_file("slovenia/s2_l1c_2015-07-11.tif"), bundle, out, scheduler="sync",
                options=opts)  # fmt: skip
    assert (out / "labels.tif").exists() and (out / "landcover.gpkg").exists()
    with rasterio.open(out / "labels.tif") as src:
        assert not set(np.unique(src.read(1)).tolist()) & set(untrained["coarse"])
    with rasterio.open(out / "probabilities.tif") as src:
        for k, code in enumerate(codes, 1):
            if code in untrained["coarse"]:  # no probability either (percent, nodata 255)
                assert set(np.unique(src.read(k)).tolist()) <= {0, 255}


def _zion_scene(validation="every"):
    """Zion with the README's checkerboard split (128 px blocks, every fifth validates)."""
    from geoseg.labelled import load_scene
    from geoseg.taxonomy import load_taxonomy

    img = shared_file("zion/landsat8_b2345.tif")
    return load_scene(
        img,
        img.parent / "nlcd2011_level1.tif",
        img.parent / "nlcd2011_level2.tif",
        load_taxonomy(ROOT / "configs" / "taxonomy" / "nlcd.yaml"),
        block=128,
        checkerboard=True,
        val_every=5,
        validation=validation,
    )


def test_checkerboard_test_blocks_are_never_trained_on(tmp_path):
    from geoseg.labelled import TEST, TRAIN, VAL
    from geoseg.sampling import PatchSampler

    s = _zion_scene()
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
    # a misspelt encoder: one line naming the file, the key and the close names
    bad.write_text("name: x\ntaxonomy: t.yaml\ndata: {dataset: zion}\nmodel: {encoder: resnet81}\n")
    with pytest.raises(ConfigError) as err:
        load_train_config(bad)
    msg = str(err.value)
    assert msg.startswith(f"{bad}: model.encoder 'resnet81' is not an encoder")
    assert "did you mean resnet18, " in msg and len(msg) - len(str(bad)) < 220 and "\n" not in msg
    for ok in ("timm-regnetx_002", "tu-resnet18", "tu-resnet18.a1_in1k"):  # smp builds them
        bad.write_text(
            f"name: x\ntaxonomy: t.yaml\ndata: {{dataset: zion}}\nmodel: {{encoder: {ok}}}\n"
        )
        assert load_train_config(bad).model.encoder == ok
    bad.write_text(
        "name: x\ntaxonomy: t.yaml\ndata: {dataset: zion}\nmodel: {encoder: tu-resnet18x}\n"
    )
    with pytest.raises(ConfigError, match="did you mean tu-resnet18, "):
        load_train_config(bad)


@pytest.mark.parametrize("ema", [None, 0.9])
def test_resume_continues_exactly(tmp_path, monkeypatch, ema):
    """A run interrupted after epoch 2 and resumed ends with the same bundle as one run
    (with weight averaging too: the average is part of the checkpoint)."""
    import numpy as np
    from safetensors.numpy import load_file

    import geoseg.train as train_mod
    from geoseg.checkpoint import checkpoint_dir
    from geoseg.errors import OutputExistsError

    cfg = load_train_config(_slovenia_config(tmp_path, epochs=3, patience=5, ema=ema))
    with pytest.warns(UnknownCodeWarning):
        whole = train(cfg, tmp_path / "whole", progress=False)

    real_eval = train_mod._evaluate_blocks
    calls = {"n": 0}

    def crash_in_epoch_3(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated crash")
        return real_eval(*args, **kwargs)

    monkeypatch.setattr(train_mod, "_evaluate_blocks", crash_in_epoch_3)
    out = tmp_path / "resumed"
    with pytest.warns(UnknownCodeWarning), pytest.raises(KeyboardInterrupt):
        train(cfg, out, progress=False)
    assert not out.exists() and (checkpoint_dir(out) / "last.pt").exists()
    monkeypatch.setattr(train_mod, "_evaluate_blocks", real_eval)
    # a plain re-run refuses to clobber the checkpoint
    with pytest.raises(OutputExistsError, match="--resume"):
        train(cfg, out, progress=False)
    with pytest.warns(UnknownCodeWarning):
        train(cfg, out, progress=False, resume=True)
    assert not checkpoint_dir(out).exists()
    a, b = (
        load_file(str(whole / "weights.safetensors")),
        load_file(str(out / "weights.safetensors")),
    )
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    ma = json.loads((whole / "bundle.json").read_text())
    mb = json.loads((out / "bundle.json").read_text())
    assert ma["training"]["history"] == mb["training"]["history"]
    assert ma["metrics"] == mb["metrics"]


def test_ema_saves_the_average_of_the_weights(tmp_path):
    """A decay near 0 averages nothing (the bundle equals a plain run's); a decay of 0.9
    saves different weights, with the same recipe otherwise."""
    import numpy as np
    from safetensors.numpy import load_file

    def weights(name, ema):
        (tmp_path / name).mkdir()
        cfg = load_train_config(_slovenia_config(tmp_path / name, epochs=1, ema=ema))
        with pytest.warns(UnknownCodeWarning):
            out = train(cfg, tmp_path / name / "b", progress=False)
        return load_file(str(out / "weights.safetensors"))

    plain, none, avg = weights("plain", None), weights("tiny", 1e-9), weights("avg", 0.9)
    assert plain.keys() == none.keys() == avg.keys()
    for k in plain:
        if plain[k].dtype.kind == "f":
            np.testing.assert_allclose(none[k], plain[k], rtol=1e-4, atol=1e-5, err_msg=k)
    assert any(
        not np.allclose(avg[k], plain[k], rtol=1e-3, atol=1e-4)
        for k in plain
        if plain[k].dtype.kind == "f"
    )


def test_resume_needs_a_checkpoint_of_the_same_config(tmp_path, monkeypatch):
    import geoseg.train as train_mod

    cfg = load_train_config(_slovenia_config(tmp_path, epochs=3))
    real_eval = train_mod._evaluate_blocks
    calls = {"n": 0}

    def crash(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] in (1, 3):
            raise KeyboardInterrupt
        return real_eval(*args, **kwargs)

    monkeypatch.setattr(train_mod, "_evaluate_blocks", crash)
    out = tmp_path / "b"
    with pytest.warns(UnknownCodeWarning), pytest.raises(KeyboardInterrupt):
        train(cfg, out, progress=False)  # crashes before the first checkpoint
    with pytest.raises(ConfigError, match="no checkpoint"):
        train(cfg, out, progress=False, resume=True)
    with pytest.warns(UnknownCodeWarning), pytest.raises(KeyboardInterrupt):
        train(cfg, out, progress=False)  # epoch 1 checkpointed, crash in epoch 2
    other = load_train_config(_slovenia_config(tmp_path, epochs=3, lr=0.01))
    said = r"configuration \(train\.lr: 0\.01 \(was the default, 0\.002\)"
    with pytest.raises(ConfigError, match=said):
        train(other, out, progress=False, resume=True)
    with pytest.raises(ConfigError, match=r"\(--max-steps: 5 \(was none\)\)"):
        train(cfg, out, progress=False, resume=True, max_steps=5)
    # a checkpoint identified as before (hash of the whole config dump) still resumes
    import hashlib

    import torch

    from geoseg.checkpoint import CHECKPOINT_FILE, checkpoint_dir

    ckpt = checkpoint_dir(out) / CHECKPOINT_FILE
    state = torch.load(ckpt, weights_only=True)
    old_id = cfg.model_dump_json() + "|max_steps=None"
    state["fingerprint"] = hashlib.sha256(old_id.encode()).hexdigest()
    torch.save(state, ckpt)
    monkeypatch.setattr(train_mod, "_evaluate_blocks", real_eval)
    with pytest.warns(UnknownCodeWarning):
        assert train(cfg, out, progress=False, resume=True) == out


def test_fingerprint_ignores_options_added_at_their_default(tmp_path):
    """A run configured before an option existed keeps its fingerprint (so it resumes)."""
    from geoseg.config import TrainConfig
    from geoseg.train import fingerprint

    cfg = load_train_config(_slovenia_config(tmp_path))

    class NewerConfig(TrainConfig):
        new_option: int = 0

    newer = NewerConfig.model_validate(cfg.model_dump())
    assert fingerprint(newer, None) == fingerprint(cfg, None)
    changed = NewerConfig.model_validate({**cfg.model_dump(), "new_option": 1})
    assert fingerprint(changed, None) != fingerprint(cfg, None)
    assert fingerprint(cfg, 10) != fingerprint(cfg, None)


def test_refit_retrains_on_the_validation_blocks_up_to_the_chosen_epoch(tmp_path, monkeypatch):
    import geoseg.train as train_mod

    cfg = load_train_config(_slovenia_config(tmp_path, epochs=3, refit=True))
    out = tmp_path / "b"
    with pytest.warns(UnknownCodeWarning):
        train(cfg, out, progress=False)
    sel = json.loads((tmp_path / "b.selection" / "bundle.json").read_text())
    meta = json.loads((out / "bundle.json").read_text())
    chosen = sel["metrics"]["selected_epoch"]
    assert meta["training"]["refit"]["epochs"] == chosen
    assert [h["epoch"] for h in meta["training"]["history"]] == list(range(1, chosen + 1))
    assert meta["training"]["steps"] == chosen * 3
    assert all("coarse_miou" not in h for h in meta["training"]["history"])  # no validation
    # the validation blocks are training blocks now; what was chosen is the selection run's
    assert meta["training"]["sampler"]["blocks"] > sel["training"]["sampler"]["blocks"]
    assert meta["metrics"]["validation"] == sel["metrics"]["validation"]
    assert meta["decode_bias"] == sel["decode_bias"]
    weights = (out / "weights.safetensors").read_bytes()
    assert weights != (tmp_path / "b.selection" / "weights.safetensors").read_bytes()
    with pytest.raises(OutputExistsError):
        train(cfg, out, progress=False)
    # resumed after the selection run finished: only the refit runs again, and the same
    calls = []
    real = train_mod._train_run

    def spy(*args, **kwargs):
        calls.append(kwargs.get("refit_of") is not None)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "_train_run", spy)
    shutil.rmtree(out)
    with pytest.warns(UnknownCodeWarning):
        train(cfg, out, progress=False, resume=True)
    assert calls == [True]
    assert (out / "weights.safetensors").read_bytes() == weights
    # a selection run of another configuration is not reused
    other = load_train_config(_slovenia_config(tmp_path, epochs=3, refit=True, lr=0.01))
    shutil.rmtree(out)
    with pytest.raises(ConfigError, match="different configuration"):
        train(other, out, progress=False, resume=True)
    with pytest.raises(ConfigError, match="no checkpoint"):
        train(cfg, tmp_path / "never-started", progress=False, resume=True)


def test_refit_without_validation_blocks_is_a_clear_error_before_training(tmp_path):
    path = _slovenia_config(tmp_path, refit=True)
    cfg = yaml.safe_load(path.read_text())
    cfg["split"]["val_every"] = 100  # 16 blocks: none validates
    path.write_text(yaml.safe_dump(cfg))
    with pytest.warns(UnknownCodeWarning), pytest.raises(ConfigError, match="val_every"):
        train(load_train_config(path), tmp_path / "b", progress=False)
    assert not (tmp_path / "b.selection").exists() and not (tmp_path / "b").exists()


def test_partial_labels_train_only_the_labelled_head():
    """A batch labelled only at the coarse level gives the fine head no gradient, and back."""
    import torch

    from geoseg.hierarchy import HierarchyIndex, hierarchical_loss
    from geoseg.model import HierarchicalSegmenter, ModelConfig
    from geoseg.taxonomy import load_taxonomy

    tax = load_taxonomy(ROOT / "configs" / "taxonomy" / "nlcd.yaml")
    idx = HierarchyIndex.from_taxonomy(tax)
    torch.manual_seed(0)
    model = HierarchicalSegmenter(
        ModelConfig(encoder="resnet18", encoder_depth=3, decoder_channels=(16, 8, 8), features=8),
        in_channels=4,
        n_coarse=tax.n_coarse,
        n_fine=tax.n_fine,
    )
    x = torch.randn(2, 4, 32, 32)
    labelled = torch.randint(0, tax.n_coarse, (2, 32, 32))
    none = torch.full((2, 32, 32), -1)

    def grads(coarse_t, fine_t):
        model.zero_grad(set_to_none=False)
        c, f = model(x)
        lc, lf = hierarchical_loss(c, f, coarse_t, fine_t, idx)
        (lc + lf).backward()
        head_c = sum(p.grad.abs().sum() for p in model.coarse_head.parameters())
        head_f = sum(p.grad.abs().sum() for p in model.fine_head.parameters())
        return float(head_c.detach()), float(head_f.detach())

    gc, gf = grads(labelled, none)
    assert gc > 0 and gf == 0
    fine_t = torch.randint(0, tax.n_fine, (2, 32, 32))
    gc, gf = grads(none, fine_t)
    assert gf > 0
    # with only fine labels the coarse head is taught through the fine loss's
    # conditioning on coarse probabilities, never by a coarse target it does not have
    c, f = model(x)
    lc, _ = hierarchical_loss(c, f, none, fine_t, idx)
    assert float(lc.detach()) == 0.0


def test_evaluate_a_bundle_on_its_config(tmp_path, monkeypatch):
    from geoseg.workflow import run_evaluate_bundle

    cfg_path = _slovenia_config(tmp_path)
    with pytest.warns(UnknownCodeWarning):
        bundle = train(load_train_config(cfg_path), tmp_path / "bundle", progress=False)
    with pytest.raises(ConfigError, match="no checkerboard"):
        run_evaluate_bundle(bundle, cfg_path, tmp_path / "r", scheduler="sync")
    out = tmp_path / "new" / "folders" / "r"  # parents that do not exist yet
    with pytest.warns(UnknownCodeWarning):
        res = run_evaluate_bundle(bundle, cfg_path, out, scheduler="sync", region="all")
    assert res["coarse"]["pixels"] > 5000 and res["hierarchy_consistency"] == 1.0
    assert (out / "confusion_fine.png").exists()
    assert "trained and selected on" in (out / "metrics.md").read_text()
    assert "scenes" not in res and "Per scene" not in (out / "metrics.md").read_text()
    title = f"# Evaluation of `{bundle.resolve()}` on `{cfg_path.resolve()}`\n"
    assert (out / "metrics.md").read_text().startswith(title)
    # two scenes: each one's figures beside the pooled ones
    raw = yaml.safe_load(cfg_path.read_text())
    raw["data"]["sources"] *= 2
    two = tmp_path / "two.yaml"
    two.write_text(yaml.safe_dump(raw))
    with pytest.warns(UnknownCodeWarning):
        pooled = run_evaluate_bundle(
            bundle, two, tmp_path / "r4", scheduler="sync", region="all", bootstrap=0,
            interval="wald",
        )  # fmt: skip
    # the stratified intervals' method reaches the pooled areas (and each scene's)
    assert res["coarse"]["area"]["interval_method"] == "beta"
    assert pooled["coarse"]["area"]["interval_method"] == "wald"
    assert [s["coarse"]["miou"] for s in pooled["scenes"]] == [res["coarse"]["miou"]] * 2
    assert pooled["scenes"][0]["fine"]["pixels"] == res["fine"]["pixels"]
    assert pooled["coarse"]["pixels"] == 2 * res["coarse"]["pixels"]
    md = (tmp_path / "r4" / "metrics.md").read_text()
    assert md.count(f"| `{raw['data']['sources'][0]['image']}` | {res['coarse']['miou']:.3f}") == 2
    assert json.loads((tmp_path / "r4" / "metrics.json").read_text())["scenes"][1]["image"]
    # a config whose taxonomy gives the bundle's codes other meanings: refused before
    # any scene is predicted
    import geoseg.workflow

    raw["taxonomy"] = str(ROOT / "configs" / "taxonomy" / "nlcd.yaml")
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(raw))
    predicted = []
    real_predict = geoseg.workflow.run_predict
    monkeypatch.setattr(
        geoseg.workflow, "run_predict", lambda *a, **k: predicted.append(a) or real_predict(*a, **k)
    )
    with pytest.raises(ConfigError, match=r"bundle: its taxonomy .* meaningless"):
        run_evaluate_bundle(bundle, other, tmp_path / "r5", scheduler="sync", region="all")
    assert predicted == [] and not (tmp_path / "r5").exists()
    monkeypatch.undo()
    # truth off the image grid: the error names the scene, not a temporary prediction
    import rasterio
    from rasterio.transform import Affine

    from geoseg.errors import RasterFormatError

    cfg = yaml.safe_load(cfg_path.read_text())
    src = cfg["data"]["sources"][0]
    with rasterio.open(src["coarse"]) as f:
        profile, data = f.profile, f.read()
    profile["transform"] = profile["transform"] * Affine.translation(3, 0)
    with rasterio.open(tmp_path / "shifted.tif", "w", **profile) as dst:
        dst.write(data)
    src["coarse"] = str(tmp_path / "shifted.tif")
    shifted = tmp_path / "shifted.yaml"
    shifted.write_text(yaml.safe_dump(cfg))
    with pytest.raises(RasterFormatError) as err:
        run_evaluate_bundle(bundle, shifted, tmp_path / "r2", scheduler="sync", region="all")
    msg = str(err.value)
    assert "the prediction of" in msg and src["image"] in msg
    assert "prediction the prediction" not in msg
    # --align is refused with --model: the advice is to fix the config's labels
    assert "--align to resample" not in msg and f"label rasters of {shifted}" in msg
    assert ".geoseg-eval" not in msg and not (tmp_path / "r2").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".geoseg-eval")]
    assert "data.align_labels: true" in msg
    # with data.align_labels the shifted truth is resampled: 3 columns are not reached
    # (and the shifted coarse truth no longer matches the fine truth: a warning)
    cfg["data"]["align_labels"] = True
    shifted.write_text(yaml.safe_dump(cfg))
    from geoseg.errors import InconsistentTruthWarning

    with pytest.warns(UnknownCodeWarning), pytest.warns(InconsistentTruthWarning):
        moved = run_evaluate_bundle(
            bundle, shifted, tmp_path / "r3", scheduler="sync", region="all"
        )
    assert moved["aligned"] and 0 < moved["coarse"]["pixels"] < res["coarse"]["pixels"]


def test_recalibrate_keeps_weights_and_rederives_settings(tmp_path):
    from click.testing import CliRunner
    from safetensors.numpy import load_file

    from geoseg.cli import cli

    cfg_path = _slovenia_config(tmp_path, halo=None, max_halo=32)
    with pytest.warns(UnknownCodeWarning):
        bundle = train(load_train_config(cfg_path), tmp_path / "b", progress=False)
    meta = json.loads((bundle / "bundle.json").read_text())
    assert meta["training"]["halo_calibration"]["halo"] == meta["halo"]
    assert "validation_score_after" in meta["training"]["decode_bias_tuning"]
    out = tmp_path / "b2"
    # a config of other bands or another taxonomy is refused before anything is read
    # (found by a blind user test: a traceback, and a bundle calibrated on other classes)
    raw = yaml.safe_load(cfg_path.read_text())
    for change, error in (
        ({"bands": meta["bands"][::-1]}, "are not the bands"),
        ({"taxonomy": str(NLCD_YAML)}, "different meanings"),
    ):
        other = tmp_path / f"other{len(error)}.yaml"
        other.write_text(yaml.safe_dump({**raw, **change}))
        r = CliRunner().invoke(
            cli, ["calibrate", str(other), "--model", str(bundle), "--out", str(out)]
        )
        assert r.exit_code == 1 and error in r.output and "Traceback" not in r.output, r.output
        assert not out.exists()
    with pytest.warns(UnknownCodeWarning):
        r = CliRunner().invoke(cli, ["calibrate", str(cfg_path), "--model", str(bundle),
                                     "--out", str(out)])  # fmt: skip
    assert r.exit_code == 0, r.output
    # what it is doing, as it starts each step (minutes on a CPU)
    assert "calibrate: measuring the halo" in r.stderr and "scoring the test" not in r.stderr
    a, b = (
        load_file(str(bundle / "weights.safetensors")),
        load_file(str(out / "weights.safetensors")),
    )
    assert all((a[k] == b[k]).all() for k in a)
    m2 = json.loads((out / "bundle.json").read_text())
    assert m2["halo"] == meta["halo"] and m2["metrics"] == meta["metrics"]
    assert m2["training"]["history"] == meta["training"]["history"]
    assert m2["training"]["recalibrated"]["config"]["name"] == "slovenia-smoke"
    assert m2["training"]["recalibrated"]["training_validation"] == meta["metrics"]["validation"]
    # on another config (other validation blocks, another name: another area or date in
    # use), the name and the validation score are the config's, not the training run's
    moved = tmp_path / "moved.yaml"
    moved.write_text(
        yaml.safe_dump({**raw, "name": "slovenia-2016", "split": {"block": 32, "val_every": 2}})
    )
    with pytest.warns(UnknownCodeWarning):
        r = CliRunner().invoke(
            cli, ["calibrate", str(moved), "--model", str(bundle), "--out", str(tmp_path / "b3")]
        )
    assert r.exit_code == 0, r.output
    m3 = json.loads((tmp_path / "b3" / "bundle.json").read_text())
    assert m3["name"] == "slovenia-2016"
    assert m3["metrics"]["validation"] != meta["metrics"]["validation"]
    assert (
        m3["metrics"]["validation"]["coarse"]["pixels"]
        > meta["metrics"]["validation"]["coarse"]["pixels"]
    )
    assert m3["training"]["recalibrated"]["from_bundle"]["name"] == "slovenia-smoke"


def test_the_halo_of_a_large_scene_is_measured_on_a_window_of_it(tmp_path, monkeypatch):
    """Measuring the halo labels its image whole (memory grows with the image): a scene
    larger than ``CALIBRATION_SIDE`` is measured on a window of that size, recorded in
    bundle.json."""
    import geoseg.calibrate as calibrate
    import geoseg.train as train_mod

    monkeypatch.setattr(calibrate, "CALIBRATION_SIDE", 64)
    shapes: list[tuple[int, ...]] = []
    real = calibrate.calibrate_halo

    def spy(predictor, image, valid, **kw):
        shapes.append(image.shape)
        return real(predictor, image, valid, **kw)

    monkeypatch.setattr(train_mod, "calibrate_halo", spy)
    with pytest.warns(UnknownCodeWarning):
        bundle = train(
            load_train_config(_slovenia_config(tmp_path, halo=None, max_halo=32)),
            tmp_path / "b",
            progress=False,
        )
    assert shapes == [(13, 64, 64)]  # the scene is 101 x 100
    cal = json.loads((bundle / "bundle.json").read_text())["training"]["halo_calibration"]
    assert cal["window"][2:] == [64, 64] and cal["scene"].endswith("s2_l1c_2015-07-11.tif")


def test_normalized_differences_are_trained_on_and_recorded(tmp_path):
    """NDVI of Sentinel-2 (B08, B04) becomes a 14th channel: the statistics cover it,
    the bundle records the pair, and prediction computes it from the 13 bands read."""
    import numpy as np
    import rasterio
    import torch

    from geoseg.bundle import load_bundle

    img = shared_file("slovenia/s2_l1c_2015-07-11.tif")
    path = _slovenia_config(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["normalized_differences"] = [["B08", "B04"]]
    path.write_text(yaml.safe_dump(raw))
    with pytest.warns(UnknownCodeWarning):
        bundle = train(load_train_config(path), tmp_path / "bundle", progress=False)
    meta, model = load_bundle(bundle)
    norm = meta.normalization
    assert norm.differences == ((7, 3),) and norm.channels == 14 == meta.in_channels
    assert len(meta.bands) == 13
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 14
    with rasterio.open(img) as src:
        data = src.read()
    x = norm.apply(data, np.ones(data.shape[1:], dtype=bool))
    nir, red = data[7].astype(np.float64), data[3].astype(np.float64)
    ndvi = (nir - red) / (nir + red)
    np.testing.assert_allclose(x[13], (ndvi - norm.mean[13]) / norm.std[13], atol=1e-4)
    assert abs(ndvi.mean() - norm.mean[13]) < 0.2  # statistics of NDVI, not of a band
    out = tmp_path / "pred"
    run_predict(img, bundle, out, scheduler="sync", vector=False)
    assert (out / "labels.tif").exists()
    info = CliRunner().invoke(cli, ["info", str(bundle), "--json"])
    assert json.loads(info.output)["normalized_differences"] == ["(B08 - B04) / (B08 + B04)"]


def test_normalized_differences_must_name_training_bands(tmp_path):
    path = _slovenia_config(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["normalized_differences"] = [["NIR", "B04"]]
    path.write_text(yaml.safe_dump(raw))
    with pytest.warns(UnknownCodeWarning), pytest.raises(ConfigError, match=r"'NIR'.*B01, B02"):
        train(load_train_config(path), tmp_path / "bundle", progress=False)


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([["B08", "B08"]], "with itself"),
        ([["B08", "B04"], ["B08", "B04"]], "twice"),
        ([["B8", "B04"]], "'B8', not one of bands B04, B08"),
    ],
)
def test_normalized_differences_are_checked_when_the_config_loads(tmp_path, pairs, message):
    path = _slovenia_config(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["bands"] = ["B04", "B08"]
    raw["normalized_differences"] = pairs
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=message):
        load_train_config(path)


def test_stratified_validation_spreads_every_class_but_keeps_single_block_classes():
    from geoseg.labelled import stratified_validation

    rng = np.random.default_rng(0)
    hist = np.zeros((40, 4))
    hist[:, 0] = rng.integers(500, 1000, 40)  # common, everywhere
    hist[rng.choice(40, 8, replace=False), 1] = 60  # rare, in 8 blocks
    hist[rng.choice(40, 3, replace=False), 2] = 200  # rare, in 3 blocks
    hist[5, 3] = 900  # a class in one block only: its every training example
    val = stratified_validation(hist, 0.2)
    share = hist[val].sum(axis=0) / hist.sum(axis=0)
    assert 0.1 <= share[0] <= 0.3 and 0.1 <= share[1] <= 0.5 and share[2] > 0
    assert not val[5]  # the single-block class stays in training
    assert np.array_equal(val, stratified_validation(hist, 0.2))  # deterministic


def test_stratified_validation_on_zion_validates_the_rare_classes():
    from geoseg.labelled import TEST, VAL

    every, strat = _zion_scene("every"), _zion_scene("stratified")
    assert ((every.role == TEST) == (strat.role == TEST)).all()  # the test set is fixed

    def val_share(s):
        labelled = (s.role != TEST) & (s.coarse >= 0)
        n = np.bincount(s.coarse[labelled], minlength=8)
        v = np.bincount(s.coarse[labelled & (s.role == VAL)], minlength=8)
        return v / n

    # Developed .. Wetlands (water is one reservoir block, which stays in training)
    assert (val_share(strat)[1:] >= 0.15).all(), val_share(strat)
    assert (val_share(every)[1:] < 0.1).any()  # what the plain split misses
    assert val_share(strat)[0] < 0.1


def test_labels_off_the_image_grid_are_a_clear_error(tmp_path):
    """Labels of the right size but shifted, in another CRS or at another pixel size are
    refused with the fix; labels with no georeferencing at all are taken as aligned."""
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.transform import Affine, from_origin

    from geoseg.errors import RasterFormatError
    from geoseg.labelled import load_scene
    from geoseg.taxonomy import load_taxonomy

    from .conftest import write_raster

    tax = load_taxonomy(ROOT / "configs" / "taxonomy" / "nlcd.yaml")
    rng = np.random.default_rng(0)
    image = write_raster(tmp_path / "img.tif", rng.integers(1, 9000, (4, 40, 48), dtype=np.uint16))
    codes = np.where(rng.random((40, 48)) < 0.5, 42, 52).astype(np.uint8)

    def scene_with(name, **kw):
        labels = write_raster(tmp_path / name, codes, nodata=255, **kw)
        return load_scene(image, None, labels, tax, block=16, checkerboard=True, val_every=3)

    aligned = scene_with("same.tif")
    assert (aligned.fine >= 0).all() and (aligned.coarse >= 0).all()
    with warnings.catch_warnings():  # rasterio warns that it writes no geotransform
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        write_raster(
            tmp_path / "bare.tif", codes, crs=None, nodata=255, transform=Affine.identity()
        )
    bare = load_scene(
        image, None, tmp_path / "bare.tif", tax, block=16, checkerboard=True, val_every=3
    )
    assert (bare.fine == aligned.fine).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        write_raster(
            tmp_path / "small.tif", codes[:30], crs=None, nodata=255, transform=Affine.identity()
        )
    # not the image's size and nothing to place it by: the fix is not data.align_labels
    with pytest.raises(RasterFormatError) as err:
        load_scene(image, None, tmp_path / "small.tif", tax, block=16, checkerboard=True,
                   val_every=3)  # fmt: skip
    assert re.fullmatch(
        r".*small\.tif: label raster has no georeferencing \(no CRS, no geotransform\) and is "
        r"48 wide x 30 high instead of 48 wide x 40 high, .* crop or resample it to 48 x 40 "
        r"pixels, or georeference it \(geoseg edit .*small\.tif --crs CRS --transform "
        r".*gdal_edit\.py -a_srs "
        r"CRS -a_ullr ULX ULY LRX LRY .*small\.tif\)",
        str(err.value),
    )
    cases = {
        "shift.tif": {"transform": from_origin(300030, 4100000, 30, 30)},
        "res.tif": {"transform": from_origin(300000, 4100000, 10, 10)},
        "crs.tif": {"crs": "EPSG:32613"},
    }
    for name, kw in cases.items():
        with pytest.raises(RasterFormatError, match=rf"{name}.*image .*img\.tif.*gdalwarp"):
            scene_with(name, **kw)


@pytest.mark.parametrize("total", [1, 2, 3, 4, 9, 10, 11, 20, 1200])
def test_every_schedule_runs_any_number_of_steps(total):
    """OneCycle divides by its warm-up length: 10 steps (10 % = 1 step) used to crash."""
    import torch

    from geoseg.train import _scheduler

    for kind in ("onecycle", "cosine", "constant"):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        sched = _scheduler(opt, kind, 0.1, total)
        lrs = []
        for _ in range(total):
            lrs.append(opt.param_groups[0]["lr"])  # the rate this step uses
            opt.step()
            sched.step()
        assert all(0 < lr <= 0.1 + 1e-9 for lr in lrs), (kind, total, lrs)
        if kind != "constant" and total >= 3:  # anneals; OneCycle warms up to its peak first
            assert max(lrs) > 0.05 and lrs[-1] < 0.6 * max(lrs), (kind, total, lrs)
        if kind == "onecycle" and total >= 3:
            peak = lrs.index(max(lrs))
            assert 0 < peak < total - 1 and lrs[0] < 0.5 * max(lrs), (kind, total, lrs)


@pytest.mark.parametrize(
    ("field", "value", "hint"), [("tile_size", 100, 96), ("halo", 20, 16), ("context_pad", 12, 8)]
)
def test_tile_and_halo_off_the_stride_are_refused_when_the_config_loads(
    tmp_path, field, value, hint
):
    path = _slovenia_config(tmp_path, **{field: value})
    with pytest.raises(
        ConfigError, match=rf"cfg\.yaml: train\.{field} {value} .* stride 8.* {hint}$"
    ):
        load_train_config(path)


def test_data_the_run_cannot_use_as_configured_is_reported(tmp_path, caplog):
    """No validation / test blocks, a patch clamped to the block, a halo cap below the
    target: each is one warning; a run with coarse labels only predicts no fine level."""
    from geoseg.bundle import read_meta

    img = shared_file("slovenia/s2_l1c_2015-07-11.tif")
    aug = {"copy_paste": 0.5, "copy_paste_classes": ["Forest", "Arable Land"]}
    path = _slovenia_config(tmp_path, patch_size=52, halo=None, max_halo=8, augment=aug)
    cfg = load_train_config(path)
    src = cfg.data.sources[0]
    cfg = cfg.model_copy(
        update={
            "data": cfg.data.model_copy(
                update={"sources": (src.model_copy(update={"fine": None}),)}
            ),
            "split": cfg.split.model_copy(update={"block": 128, "val_every": 50}),
        }
    )
    with caplog.at_level("WARNING", logger="geoseg"):
        bundle = train(cfg, tmp_path / "b", progress=False)
    text = caplog.text
    assert "no validation blocks" in text
    assert "no checkerboard and no source has role: test, so there are no test pixels" in text
    assert "training patches are 48 px, not train.patch_size 52" in text
    assert "(larger blocks: split: {block: 52};" in text  # no checkerboard: block sets them
    assert "max_halo 8" in text
    assert "coarse level only" in text
    assert "copy_paste classes Arable Land are fine classes" in text
    meta = read_meta(bundle)
    assert meta.taxonomy.n_fine == 0 and meta.taxonomy.n_coarse > 0
    run_predict(img, bundle, tmp_path / "p", scheduler="sync", vector=False)
    import rasterio

    with rasterio.open(tmp_path / "p" / "labels.tif") as src_:
        fine = src_.read(2)
        assert (fine == src_.nodata).all() and (src_.read(1) != src_.nodata).any()


def test_contradicting_coarse_and_fine_labels_are_ignored_with_a_warning(tmp_path):
    from geoseg.errors import InconsistentLabelsWarning
    from geoseg.labelled import load_scene
    from geoseg.taxonomy import load_taxonomy

    from .conftest import write_raster

    tax = load_taxonomy(ROOT / "configs" / "taxonomy" / "nlcd.yaml")
    image = write_raster(tmp_path / "img.tif", np.full((4, 20, 30), 500, dtype=np.uint16))
    fine = np.full((20, 30), 42, dtype=np.uint8)  # evergreen forest, parent 4
    coarse = np.full((20, 30), 4, dtype=np.uint8)
    coarse[:5] = 5  # shrubland over evergreen forest: 150 of 600 pixels contradict
    fpath = write_raster(tmp_path / "fine.tif", fine, nodata=255)
    cpath = write_raster(tmp_path / "coarse.tif", coarse, nodata=255)
    with pytest.warns(InconsistentLabelsWarning, match=r"150 of 600 pixels .*\(25\.0%\)"):
        s = load_scene(image, cpath, fpath, tax, block=10, checkerboard=False, val_every=3)
    assert (s.coarse[:5] == -1).all() and (s.fine[:5] == -1).all()
    assert (s.coarse[5:] >= 0).all() and (s.fine[5:] >= 0).all()


def test_geoseg_warnings_are_one_log_line(monkeypatch, caplog):
    """The console script shows a geoseg warning as one line (no file, line, source), and
    other libraries' warnings only with -v."""
    import logging

    from geoseg import cli as cli_mod

    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)
    monkeypatch.setattr("sys.argv", ["geoseg", "--version"])
    with pytest.raises(SystemExit):
        cli_mod.main()
    assert warnings.showwarning is cli_mod._show_warning
    with caplog.at_level(logging.INFO, logger="geoseg"):
        cli_mod._show_warning(UnknownCodeWarning("x.tif: codes 7 are not in the taxonomy"),
                              UnknownCodeWarning, "/somewhere/labelled.py", 12)  # fmt: skip
        cli_mod._show_warning(RuntimeWarning("Mean of empty slice"), RuntimeWarning, "np.py", 3)
    recs = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert recs[0] == (logging.WARNING, "x.tif: codes 7 are not in the taxonomy")
    assert recs[1][0] == logging.INFO and "Mean of empty slice" in recs[1][1]


def test_context_pad_trains_and_validates_on_mirror_padded_blocks(tmp_path, monkeypatch):
    """``train.context_pad``: every training batch and every validation block reaches the
    network mirror-padded by that many pixels, which the decoder trims off again."""
    from geoseg.model import HierarchicalSegmenter

    calls: list[tuple[tuple[int, ...], int, bool]] = []
    real = HierarchicalSegmenter.forward_parts

    def spy(self, x, trim=0):
        calls.append((tuple(x.shape), trim, self.training))
        return real(self, x, trim)

    monkeypatch.setattr(HierarchicalSegmenter, "forward_parts", spy)
    cfg = load_train_config(_slovenia_config(tmp_path, context_pad=8, halo=16))
    with pytest.warns(UnknownCodeWarning):
        bundle = train(cfg, tmp_path / "bundle", progress=False)
    training = [c for c in calls if c[2]]
    assert len(training) == 6 and all(c[0][-2:] == (48, 48) and c[1] == 8 for c in training)
    # validation blocks: 32 px (the scene's 5 and 4 px edge blocks: one 8 px stride)
    # plus 8 px each side
    val = [c for c in calls if not c[2] and c[1] == 8]
    assert val and all(set(c[0][-2:]) <= {48, 24} for c in val)
    assert any(48 in c[0][-2:] for c in val)
    meta = json.loads((bundle / "bundle.json").read_text())
    assert meta["training"]["config"]["train"]["context_pad"] == 8


def test_mosaic_trains_on_mosaics_and_validates_blocks_alone(tmp_path, monkeypatch):
    """``augment.mosaic: 2``: every training batch reaches the network as 2 x 2 patches
    (``batch_size`` samples of twice the patch side), validation blocks one by one."""
    from geoseg.model import HierarchicalSegmenter

    calls: list[tuple[tuple[int, ...], bool]] = []
    real = HierarchicalSegmenter.forward_parts

    def spy(self, x, trim=0):
        calls.append((tuple(x.shape), self.training))
        return real(self, x, trim)

    monkeypatch.setattr(HierarchicalSegmenter, "forward_parts", spy)
    cfg = load_train_config(_slovenia_config(tmp_path, augment={"mosaic": 2}))
    with pytest.warns(UnknownCodeWarning):
        bundle = train(cfg, tmp_path / "bundle", progress=False)
    training = [shape for shape, was_training in calls if was_training]
    assert len(training) == 6 and all(shape == (4, 13, 64, 64) for shape in training)
    val = [shape for shape, was_training in calls if not was_training]
    assert val and all(shape[0] == 1 and max(shape[-2:]) <= 32 for shape in val)
    meta = json.loads((bundle / "bundle.json").read_text())
    assert meta["training"]["config"]["train"]["augment"]["mosaic"] == 2


def test_validation_logits_with_context_are_those_of_the_padded_block():
    """A block's logits with ``context`` are the untrimmed network's on the block
    mirror-padded by ``context``, cropped back to the block."""
    import torch

    from geoseg.config import ModelConfig
    from geoseg.labelled import VAL
    from geoseg.model import HierarchicalSegmenter
    from geoseg.train import _val_block_logits

    s = _zion_scene()
    torch.manual_seed(0)
    mc = ModelConfig(encoder_depth=4, decoder_channels=(32, 16, 8, 8), features=8, pixel_skip=8)
    model = HierarchicalSegmenter(mc, in_channels=s.image.shape[0], n_coarse=8, n_fine=16)
    model.eval()
    norm = [(s.image.astype(np.float32) - 800.0) / 400.0]
    k = 32
    got = _val_block_logits(model, [s], norm, torch.device("cpu"), 16, context=k)
    for n, (_, (r, c, h, w), cl, fl) in enumerate(got):
        x = np.pad(norm[0][:, r : r + h, c : c + w], ((0, 0), (k, k), (k, k)), mode="reflect")
        with torch.inference_mode():
            ecl, efl = model(torch.from_numpy(x)[None])
        torch.testing.assert_close(cl, ecl[:, :, k : k + h, k : k + w], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(fl, efl[:, :, k : k + h, k : k + w], atol=1e-4, rtol=1e-4)
        if n == 2:
            break
    assert any(b[4] == VAL for b in s.blocks)


@pytest.mark.parametrize("which", ["image", "fine", "taxonomy"])
def test_overwrite_never_deletes_a_file_the_config_reads(tmp_path, which):
    """A training image, label raster or taxonomy inside the output folder: refused."""
    cfg_path = _slovenia_config(tmp_path)
    raw = yaml.safe_load(cfg_path.read_text())
    out = tmp_path / "bundle"
    runner = CliRunner()
    with pytest.warns(UnknownCodeWarning):
        train(load_train_config(cfg_path), out, progress=False, max_steps=1)
    src = raw["data"]["sources"][0]
    key = {"image": "image", "fine": "fine"}.get(which)
    old = src[key] if key else raw["taxonomy"]
    inside = out / f"mine{Path(old).suffix}"
    shutil.copy(old, inside)
    if key:
        src[key] = str(inside)
    else:
        raw["taxonomy"] = str(inside)
    moved = tmp_path / "moved.yaml"
    moved.write_text(yaml.safe_dump(raw))
    other = tmp_path / "b2"
    shutil.copytree(out, other)
    for args in (
        ["train", str(moved), "--out", str(out), "--overwrite", "--max-steps", "1"],
        ["calibrate", str(moved), "--model", str(other), "--out", str(out), "--overwrite"],
        ["evaluate", "--model", str(other), "--config", str(moved), "--out", str(out)],
    ):
        res = runner.invoke(cli, [*args, "--overwrite"] if args[0] == "evaluate" else args)
        assert res.exit_code != 0, args
        assert f"holds the input {inside}" in res.output, res.output
        assert inside.exists() and (out / "bundle.json").exists()
    with pytest.raises(OutputExistsError, match="holds the input"):  # the library too
        train(load_train_config(moved), out, overwrite=True, progress=False)


def test_copy_paste_classes_are_resolved_and_missing_ones_reported(tmp_path, caplog):
    """A copy-paste class that is not in the taxonomy stops the run before training; a
    class with no training pixel (Tundra: none in Slovenia) is a warning
    and the run trains with the others pasted."""
    aug = {"copy_paste": 1.0, "copy_paste_classes": ["Glacier"]}
    with pytest.raises(ConfigError, match="copy_paste_classes names 'Glacier'"):
        train(load_train_config(_slovenia_config(tmp_path, augment=aug)), tmp_path / "x")
    assert not (tmp_path / "x").exists()
    aug = {"copy_paste": 1.0, "copy_paste_classes": ["Forest", "Tundra", 1300]}
    with caplog.at_level("WARNING", logger="geoseg"), pytest.warns(UnknownCodeWarning):
        bundle = train(
            load_train_config(_slovenia_config(tmp_path, augment=aug)),
            tmp_path / "b",
            progress=False,
        )
    assert "copy_paste class Tundra has no coarse pixel" in caplog.text
    assert "copy_paste class Forest" not in caplog.text
    assert "Permanent Grassland" not in caplog.text
    assert (bundle / "bundle.json").exists()


def test_align_labels_resamples_labels_on_another_grid(tmp_path):
    """``data.align_labels`` resamples labels at another pixel size or offset onto the
    image grid with nearest neighbour; image pixels the labels do not reach are
    unlabelled, also when the label raster has no nodata value; labels it cannot place
    are a clear error."""
    from rasterio.transform import from_origin

    from geoseg.errors import RasterFormatError
    from geoseg.labelled import config_scenes, load_scene
    from geoseg.taxonomy import load_taxonomy

    from .conftest import write_raster

    tax_path = ROOT / "configs" / "taxonomy" / "nlcd.yaml"
    tax = load_taxonomy(tax_path)
    rng = np.random.default_rng(0)
    image = write_raster(tmp_path / "img.tif", rng.integers(1, 9000, (4, 40, 48), dtype=np.uint16))
    codes = rng.choice(np.array([11, 42, 52, 71], dtype=np.uint8), size=(40, 48))

    def load(labels, align=True):
        return load_scene(
            image, None, labels, tax, block=16, checkerboard=True, val_every=3, align=align
        )

    same = load(write_raster(tmp_path / "same.tif", codes))
    # 10 m labels of the same 30 m pixels: every image pixel centre falls on its own code
    fine10 = np.repeat(np.repeat(codes, 3, axis=0), 3, axis=1)
    ten = write_raster(tmp_path / "ten.tif", fine10, transform=from_origin(300000, 4100000, 10, 10))
    with pytest.raises(RasterFormatError, match=r"ten\.tif: .*set data\.align_labels: true"):
        load(ten, align=False)
    np.testing.assert_array_equal(load(ten).fine, same.fine)
    np.testing.assert_array_equal(load(ten).coarse, same.coarse)
    # shifted one pixel east, no nodata value: the first column is not reached
    shifted = write_raster(
        tmp_path / "shift.tif", codes, transform=from_origin(300030, 4100000, 30, 30)
    )
    s = load(shifted)
    assert (s.fine[:, 0] == -1).all() and (s.coarse[:, 0] == -1).all()
    np.testing.assert_array_equal(s.fine[:, 1:], same.fine[:, :-1])
    # the same labels stored south-up (rows from south to north) on the image's footprint
    south_up = write_raster(
        tmp_path / "south.tif",
        codes[::-1].copy(),
        transform=Affine(30, 0, 300000, 0, 30, 4100000 - 40 * 30),
    )
    np.testing.assert_array_equal(load(south_up).fine, same.fine)
    far = write_raster(tmp_path / "far.tif", codes, transform=from_origin(900000, 100000, 30, 30))
    with pytest.raises(RasterFormatError, match=r"far\.tif: label does not overlap the image"):
        load(far)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rasterio: no geotransform
        bare = write_raster(tmp_path / "bare.tif", fine10, crs=None, transform=Affine.identity())
    with pytest.raises(RasterFormatError, match=r"bare\.tif: label raster has no georef"):
        load(bare)
    # the config option reaches the scenes
    cfg = {
        "name": "align",
        "taxonomy": str(tax_path),
        "data": {"sources": [{"image": str(image), "fine": str(ten)}], "align_labels": True},
        "split": {"block": 16, "val_every": 3},
        "train": {"tile_size": 64, "halo": 32},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    (scene,) = config_scenes(load_train_config(path), tax)
    np.testing.assert_array_equal(scene.fine, same.fine)


def _scene(path, image, labelled, *, nodata=None, names=("a", "b", "c")):
    """A LabelledScene of one all-training block, labelled (class 0) where ``labelled``;
    ``image`` is also written to ``path`` (the warnings read its band names and nodata)."""
    from geoseg.labelled import TRAIN, LabelledScene

    from .conftest import write_raster

    write_raster(path, image, nodata=nodata, names=names)
    shape = image.shape[1:]
    coarse = np.where(labelled, 0, -1).astype(np.int64)
    role = np.full(shape, TRAIN, np.int8)
    valid = np.ones(shape, bool) if nodata is None else (image != nodata).all(axis=0)
    return LabelledScene(str(path), image, valid, coarse, np.full(shape, -1), role, [])


def test_untagged_zero_fill_is_reported_and_left_out_of_the_statistics(tmp_path, caplog):
    """An image whose footprint border is 0 in every band with no nodata value: the unlabelled
    zeros do not drag the band means down; a labelled 0 still counts; a file with another
    nodata value is told to use a mask; one band alone is never taken for fill."""
    from geoseg.train import _normalization

    rng = np.random.default_rng(0)
    image = rng.normal(7000, 500, (3, 100, 100)).astype(np.float32)
    image[:, :, :20] = 0  # a 20 % border of fill, unlabelled
    labelled = np.ones((100, 100), bool)
    labelled[:, :20] = False
    image[:, 50, 50] = 0  # a labelled pixel that is really 0
    path = tmp_path / "scene.tif"
    with caplog.at_level("WARNING", logger="geoseg"):
        norm = _normalization([_scene(path, image, labelled)], [], ("a", "b", "c"))
    expected = image[:, labelled]
    np.testing.assert_allclose(norm.mean, expected.mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(norm.std, expected.std(axis=1, ddof=1), rtol=1e-4)
    (rec,) = caplog.records
    msg = rec.getMessage()
    assert msg.startswith(f"{path}: 20.0 % of its valid pixels are 0 in every band")
    assert "(100.0 % of them unlabelled)" in msg and "gdal_edit.py -a_nodata 0" in msg
    caplog.clear()
    every = np.ones((100, 100), bool)  # labelled zeros are data: kept, and still reported
    with caplog.at_level("WARNING", logger="geoseg"):
        norm = _normalization([_scene(path, image, every)], [], ("a", "b", "c"))
    np.testing.assert_allclose(norm.mean, image.reshape(3, -1).mean(axis=1), rtol=1e-5)
    assert "(0.0 % of them unlabelled)" in caplog.text
    caplog.clear()
    image[:, :5] = -9999  # a file with another nodata value: a new one would replace it
    with caplog.at_level("WARNING", logger="geoseg"):
        _normalization([_scene(path, image, labelled, nodata=-9999)], [], ("a", "b", "c"))
    assert "its nodata value is -9999: if they are fill, give the file a mask band" in caplog.text
    assert "-a_nodata" not in caplog.text
    caplog.clear()
    one = image[:1]  # one band: a 0 is as likely a value
    with caplog.at_level("WARNING", logger="geoseg"):
        norm = _normalization([_scene(path, one, labelled, nodata=-9999, names=("a",))], [], ("a",))
    assert not caplog.records
    np.testing.assert_allclose(norm.mean, [one[0][one[0] != -9999].mean()], rtol=1e-5)


def test_pooling_images_in_other_units_is_reported_per_image(tmp_path, caplog):
    """uint16 DN beside uint8 values of the same size pool into statistics that fit
    neither: each image is compared with the others and the line names its own band
    number; images in the same units, or one image, are quiet."""
    from geoseg.train import _normalization

    rng = np.random.default_rng(0)
    dn = rng.normal(7000, 800, (2, 120, 120)).astype(np.float32)
    dn2 = rng.normal(6500, 900, (2, 120, 120)).astype(np.float32)
    byte = rng.normal(100, 40, (2, 120, 120)).clip(1, 255).astype(np.float32)
    every = np.ones((120, 120), bool)
    names = ("red", "nir")

    def scene(name, image):  # the model's red and nir are bands 3 and 4 of each file
        pad = np.ones_like(image)
        return _scene(tmp_path / name, np.concatenate([pad, image]), every,
                      names=("x", "y", *names))  # fmt: skip

    def stats(*scenes):
        for s in scenes:
            s.image = s.image[2:]  # the bands the model reads, as load_scene keeps them
        return _normalization(list(scenes), [], names)

    with caplog.at_level("WARNING", logger="geoseg"):
        stats(scene("a.tif", dn), scene("b.tif", dn2))
        stats(scene("a.tif", dn))
    assert not caplog.records
    with caplog.at_level("WARNING", logger="geoseg"):
        stats(scene("a.tif", dn), scene("c.tif", byte))
    assert len(caplog.records) == 2  # each against the other
    a, c = (r.getMessage() for r in caplog.records)
    assert re.match(rf"{tmp_path / 'a.tif'}: band (3 \(red\)|4 \(nir\)) has median [67]\d\d\d ", a)
    assert re.match(rf"{tmp_path / 'c.tif'}: band (3 \(red\)|4 \(nir\)) has median \d\d\.", c)
    assert "the training pixels of the other images have" in c
    assert "bring them to the same units, or train them apart" in c


def _slovenia_halves(tmp_path: Path) -> list[dict[str, str]]:
    """The Slovenia scene cut at runtime into a west and an east half (image and both
    label rasters each, georeferenced), as two scenes of a dataset would come."""
    import rasterio
    from rasterio.windows import Window

    img = shared_file("slovenia/s2_l1c_2015-07-11.tif")
    out = []
    for half, col in (("west", 0), ("east", 50)):
        paths = {}
        for key, src in (
            ("image", img),
            ("coarse", img.parent / "lulc_coarse.tif"),
            ("fine", img.parent / "raba_fine.tif"),
        ):
            with rasterio.open(src) as f:
                win = Window(col, 0, 50, f.height)
                profile = {**f.profile, "width": 50, "transform": f.window_transform(win)}
                dest = tmp_path / "scenes" / f"{half}_{key}.tif"
                dest.parent.mkdir(exist_ok=True)
                with rasterio.open(dest, "w", **profile) as dst:
                    dst.write(f.read(window=win))
                    if key == "image":
                        dst.descriptions = f.descriptions
            paths[key] = str(dest)
        out.append(paths)
    return out


def test_a_test_scene_is_never_trained_on_and_is_scored_whole(tmp_path):
    """``role: test`` sets a whole scene aside: no patch, validation block or statistic
    comes from it; the trainer scores it at the end and ``geoseg evaluate --model
    --config`` scores it whole (and refuses a config that calls a training scene test)."""
    from geoseg.labelled import TEST, TRAIN, VAL, config_scenes
    from geoseg.sampling import PatchSampler
    from geoseg.taxonomy import load_taxonomy
    from geoseg.workflow import run_evaluate_bundle

    west, east = _slovenia_halves(tmp_path)
    cfg_path = _slovenia_config(tmp_path)
    raw = yaml.safe_load(cfg_path.read_text())
    raw["data"]["sources"] = [west, {**east, "role": "test"}]
    cfg_path.write_text(yaml.safe_dump(raw))
    cfg = load_train_config(cfg_path)
    with pytest.warns(UnknownCodeWarning):
        scenes = config_scenes(cfg, load_taxonomy(cfg.taxonomy))
    assert {rl for *_, rl in scenes[0].blocks} == {TRAIN, VAL}
    assert {rl for *_, rl in scenes[1].blocks} == {TEST} and (scenes[1].role == TEST).all()
    normed = [s.image.astype(np.float32) for s in scenes]
    sampler = PatchSampler(scenes, normed, 32, 0, n_fine=4, n_coarse=10)
    assert {si for si, *_ in sampler.choices} == {0}

    with pytest.warns(UnknownCodeWarning):
        bundle = train(cfg, tmp_path / "bundle", progress=False)
    test = json.loads((bundle / "bundle.json").read_text())["metrics"]["test"]
    assert test["split"] == "1 scene with role: test"
    east_labelled = int((scenes[1].coarse >= 0).sum())
    assert test["coarse"]["pixels"] == east_labelled

    with pytest.warns(UnknownCodeWarning):
        res = run_evaluate_bundle(bundle, cfg_path, tmp_path / "eval", scheduler="sync")
    assert res["coarse"]["pixels"] == east_labelled
    assert res["region"].startswith("the whole scene, a role: test source")
    assert res["coarse"]["miou"] == pytest.approx(test["coarse"]["miou"], abs=1e-3)
    # calling the training scene a test scene is refused before anything is predicted
    raw["data"]["sources"] = [{**west, "role": "test"}]
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"role: test, but .* was trained on it"):
        run_evaluate_bundle(bundle, wrong, tmp_path / "eval2", scheduler="sync")


def test_a_validation_scene_validates_whole(tmp_path):
    from geoseg.labelled import TRAIN, VAL, config_scenes
    from geoseg.taxonomy import load_taxonomy

    west, east = _slovenia_halves(tmp_path)
    cfg_path = _slovenia_config(tmp_path)
    raw = yaml.safe_load(cfg_path.read_text())
    raw["data"]["sources"] = [{**west, "role": "train"}, {**east, "role": "validation"}]
    cfg_path.write_text(yaml.safe_dump(raw))
    cfg = load_train_config(cfg_path)
    with pytest.warns(UnknownCodeWarning):
        scenes = config_scenes(cfg, load_taxonomy(cfg.taxonomy))
    assert (scenes[0].role == TRAIN).all() and (scenes[1].role == VAL).all()
    with pytest.raises(ConfigError, match="role"):
        raw["data"]["sources"][0]["role"] = "testing"
        cfg_path.write_text(yaml.safe_dump(raw))
        load_train_config(cfg_path)


def test_a_source_pattern_is_one_source_per_image(tmp_path):
    """``image: img/*.tif`` with ``fine: lab/{stem}_lc.tif``: one source per image, in
    name order, each with its own labels; a pattern that matches nothing, labels that
    do not name the image, or an unknown field are one-line errors."""
    cfg_path = _slovenia_config(tmp_path)
    raw = yaml.safe_load(cfg_path.read_text())
    for d in ("img", "lab"):
        (tmp_path / d).mkdir()
    for stem in ("b", "a", "c"):
        (tmp_path / "img" / f"{stem}.tif").write_bytes(b"")
        (tmp_path / "lab" / f"{stem}_lc.tif").write_bytes(b"")
        (tmp_path / "lab" / f"{stem}.tif").write_bytes(b"")
    (tmp_path / "img" / "notes.txt").write_bytes(b"")
    raw["data"]["sources"] = [
        {"image": "img/*.tif", "fine": "lab/{stem}_lc.tif", "coarse": "lab/{name}", "role": "test"}
    ]
    cfg_path.write_text(yaml.safe_dump(raw))
    sources = load_train_config(cfg_path).data.sources
    assert [s.image.name for s in sources] == ["a.tif", "b.tif", "c.tif"]
    assert [s.fine.name for s in sources] == ["a_lc.tif", "b_lc.tif", "c_lc.tif"]
    assert sources[1].coarse == tmp_path / "lab" / "b.tif"
    assert {s.role for s in sources} == {"test"}
    # {match}: what the one * matched (r1_img.tif -> r1_lbl.tif)
    for stem in ("r1", "r2"):
        (tmp_path / "img" / f"{stem}_img.tif").write_bytes(b"")
        (tmp_path / "lab" / f"{stem}_lbl.tif").write_bytes(b"")
    raw["data"]["sources"] = [{"image": "img/*_img.tif", "fine": "lab/{match}_lbl.tif"}]
    cfg_path.write_text(yaml.safe_dump(raw))
    sources = load_train_config(cfg_path).data.sources
    assert [s.fine.name for s in sources] == ["r1_lbl.tif", "r2_lbl.tif"]
    # an image of the pattern without its label file: named with the pattern and template
    (tmp_path / "lab" / "r2_lbl.tif").unlink()
    with pytest.raises(
        ConfigError,
        match=r"r2_lbl.tif not found: the label or mask file lab/\{match\}_lbl.tif of image "
        r".*r2_img.tif \(pattern img/\*_img.tif\)",
    ):
        load_train_config(cfg_path)
    for source, message in (
        ({"image": "none/*.tif", "fine": "lab/{stem}.tif"}, "matches no file"),
        ({"image": "img/*.tif", "fine": "lab/one.tif"}, r"must name each image's own file"),
        ({"image": "img/*.tif", "fine": "lab/{stem}_{date}.tif"}, r"only \{stem\}, \{name\}"),
        ({"image": "img/*_*.tif", "fine": "lab/{match}.tif"}, r"has 2 \*"),
    ):
        raw["data"]["sources"] = [source]
        cfg_path.write_text(yaml.safe_dump(raw))
        with pytest.raises(ConfigError, match=message):
            load_train_config(cfg_path)


def test_evaluate_and_calibrate_refuse_pixels_the_bundle_saw(tmp_path, monkeypatch):
    """Test pixels must be unseen whatever the way a scene comes back: a scene trained
    whole as a blocks source with a checkerboard, a relative config run from another
    folder, a bundle trained from a registered dataset; a config whose scenes all
    trained has nothing to score."""
    from geoseg.evaluate import check_bundle_split
    from geoseg.workflow import run_evaluate_bundle

    west, east = _slovenia_halves(tmp_path)
    (tmp_path / "run").mkdir()
    monkeypatch.chdir(tmp_path / "run")
    raw = yaml.safe_load(_slovenia_config(tmp_path).read_text())
    raw["split"]["checkerboard"] = 16
    raw["data"]["sources"] = [
        {**west, "role": "train"},
        {**east, "role": "test"},
    ]
    Path("rel.yaml").write_text(yaml.safe_dump(raw))
    cfg = load_train_config("rel.yaml")  # a relative config path
    assert all(s.image.is_absolute() for s in cfg.data.sources)
    with pytest.warns(UnknownCodeWarning):
        bundle = train(cfg, tmp_path / "bundle", progress=False)
    monkeypatch.chdir(tmp_path)  # another folder

    def config(sources, **split):
        path = tmp_path / f"eval{len(list(tmp_path.glob('eval*.yaml')))}.yaml"
        path.write_text(
            yaml.safe_dump(
                {**raw, "split": {**raw["split"], **split}, "data": {"sources": sources}}
            )
        )
        return path

    with pytest.raises(ConfigError, match=r"test blocks of .*west_image.tif are not unseen"):
        check_bundle_split(bundle, config([west]))
    with pytest.raises(ConfigError, match="has role: test, but"):
        check_bundle_split(bundle, config([{**west, "role": "test"}]))
    check_bundle_split(bundle, config([{**east, "role": "test"}]))  # fine: never seen
    # a copy of a training scene under another name holds no unseen pixels either
    copy = shutil.copy(west["image"], tmp_path / "renamed.tif")
    for role in ("test", "blocks"):
        with pytest.raises(ConfigError, match=r"renamed.tif: has the same pixel values as .*west"):
            check_bundle_split(bundle, config([{**west, "image": str(copy), "role": role}]))
    with pytest.raises(ConfigError, match="no source has test pixels"):
        run_evaluate_bundle(bundle, config([{**east, "role": "train"}]), tmp_path / "e")
    # a bundle trained from a registered dataset records its files in training.data
    meta = json.loads((bundle / "bundle.json").read_text())
    meta["training"]["config"]["data"] = {"dataset": "zion", "sources": []}
    meta["training"]["data"] = [{"image": west["image"], "fine": west["fine"]}]
    shutil.copytree(bundle, tmp_path / "as-dataset")
    (tmp_path / "as-dataset" / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="has role: test, but"):
        check_bundle_split(tmp_path / "as-dataset", config([{**west, "role": "test"}]))
    # geoseg calibrate scores test pixels too: the same check
    from geoseg.train import recalibrate

    with pytest.raises(ConfigError, match="has role: test, but") as err:
        recalibrate(load_train_config(config([{**west, "role": "test"}])), bundle, tmp_path / "r")
    assert "--region" not in str(err.value)  # an option of evaluate, not of calibrate


def test_no_training_scene_and_literal_brackets_in_paths(tmp_path):
    west, east = _slovenia_halves(tmp_path)
    cfg_path = _slovenia_config(tmp_path)
    raw = yaml.safe_load(cfg_path.read_text())
    raw["data"]["sources"] = [{**west, "role": "validation"}, {**east, "role": "test"}]
    cfg_path.write_text(yaml.safe_dump(raw))
    with pytest.warns(UnknownCodeWarning), pytest.raises(ConfigError, match="no scene trains"):
        train(load_train_config(cfg_path), tmp_path / "b", progress=False)
    # brackets in the config's folder or a file name are not patterns
    folder = tmp_path / "run[2]"
    folder.mkdir()
    shutil.copy(west["image"], folder / "scene[1].tif")
    raw["data"]["sources"] = [
        {"image": "scene[1].tif", "fine": west["fine"]},
        {"image": west["image"], "fine": west["fine"]},
    ]
    (folder / "b.yaml").write_text(yaml.safe_dump(raw))
    sources = load_train_config(folder / "b.yaml").data.sources
    assert sources[0].image == folder / "scene[1].tif" and len(sources) == 2
    raw["data"]["sources"] = [{"image": west["image"], "fine": "lab/{stem}.tif"}]
    (folder / "b.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="filled in only for an image pattern"):
        load_train_config(folder / "b.yaml")
    # an unquoted pattern is a YAML error: the message says to quote it
    (folder / "c.yaml").write_text("name: x\ndata:\n  sources:\n    - {image: *_img.tif}\n")
    with pytest.raises(ConfigError, match=r"at line 4, column \d+ .*put quotes around"):
        load_train_config(folder / "c.yaml")
    # a tab in the indentation: said (a blind test got the quoting hint for it)
    (folder / "t.yaml").write_text("name: x\ndata:\n  sources:\n  - image: a*.tif\n  \tfine: b\n")
    with pytest.raises(ConfigError, match=r"at line 5, .*indents with spaces, not tabs"):
        load_train_config(folder / "t.yaml")


def test_a_test_scene_listed_to_train_is_refused_and_overlapping_ground_is_reported(
    tmp_path, caplog
):
    """The same file as test and training scene is refused before any data is read; a
    test scene that shares ground with a training scene (another file: a copy, an
    overlapping crop) is reported, as is one under a fine-tuned bundle's training data."""
    from geoseg.labelled import check_held_out

    west, east = _slovenia_halves(tmp_path)
    srcs = [{k: Path(v) for k, v in s.items()} for s in (west, east, west)]
    with pytest.raises(ConfigError, match=r"listed as a test scene .* and as a scene to train"):
        check_held_out(srcs, ["train", "test", "test"])
    # the whole scene as a training scene covers the east half's ground
    full = shared_file("slovenia/s2_l1c_2015-07-11.tif")
    caplog.clear()
    check_held_out([{"image": full}, {"image": Path(east["image"])}], ["blocks", "test"])
    assert "overlaps training scene" in caplog.text and "east_image.tif" in caplog.text
    # side by side, touching along an edge: no overlap
    caplog.clear()
    check_held_out(
        [{"image": Path(west["image"])}, {"image": Path(east["image"])}], ["train", "test"]
    )
    assert "overlaps" not in caplog.text
    # under the training data of a bundle being fine-tuned
    check_held_out([{"image": Path(east["image"])}], ["test"], trained_on=[str(full)])
    assert "overlaps training image of the bundle fine-tuned" in caplog.text
    with pytest.raises(ConfigError, match=r"a test scene .* and a training image of the bundle"):
        check_held_out([{"image": full}], ["test"], trained_on=[str(full)])


def test_a_test_scene_with_the_pixels_of_a_training_scene_is_refused(tmp_path, caplog):
    """A copy under another name, re-encoded and stripped of its georeferencing (as chip
    datasets ship), is the same image: not an unseen test scene."""
    from geoseg.labelled import check_held_out

    west, east = _slovenia_halves(tmp_path)
    with rasterio.open(west["image"]) as src:
        data, profile = src.read(), src.profile
    profile.update(compress="lzw", tiled=False)
    for key in ("crs", "transform"):
        profile.pop(key, None)
    copy = tmp_path / "chips" / "test_0.tif"
    copy.parent.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(copy, "w", **profile) as dst:
            dst.write(data)
    train = {"image": Path(west["image"])}
    with pytest.raises(ConfigError, match=r"test_0.tif: has the same pixel values as training"):
        check_held_out([train, {"image": copy}], ["train", "test"])
    with pytest.raises(ConfigError, match="same pixel values as training image of the bundle"):
        check_held_out([{"image": copy}], ["test"], trained_on=[west["image"]])
    # as a validation scene: a warning (it would bias the selection, not the test score)
    check_held_out([train, {"image": copy}], ["train", "validation"])
    assert "test_0.tif: has the same pixel values as training scene" in caplog.text
    assert "its validation pixels are not unseen" in caplog.text
    # one pixel changed, outside the sampled windows (so the two are read whole): another
    data[0, 33, 0] += 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(copy, "w", **profile) as dst:
            dst.write(data)
    others = [train, {"image": copy}, {"image": Path(east["image"])}]
    check_held_out(others, ["train", "test", "test"])
    # a blocks source with test blocks that copies a scene trained whole
    blocks = {"image": Path(shutil.copy(west["image"], tmp_path / "blocks.tif"))}
    check_held_out([train, blocks], ["train", "blocks"])  # no test blocks
    with pytest.raises(ConfigError, match=r"blocks.tif: has the same pixel values as train"):
        check_held_out([train, blocks], ["train", "blocks"], blocks_tested=True)
    # a missing image is the usual one-line error
    with pytest.raises(RasterReadError, match=r"nope\.tif: file not found: check the path"):
        check_held_out([train, {"image": tmp_path / "nope.tif"}], ["train", "test"])


def test_blank_chips_and_identical_images_apart_are_not_copies(tmp_path):
    """Identical pixel values are no copy where they are constant (blank, all-nodata chips:
    many places give them) or where both images are georeferenced apart."""
    from geoseg.labelled import check_held_out

    from .conftest import write_raster

    def chip(name, data, x0=None):
        kw = {} if x0 is None else {"transform": Affine(30, 0, x0, 0, -30, 4e6)}
        return {"image": write_raster(tmp_path / name, data, nodata=0, **kw)}

    blank = np.zeros((3, 16, 16), np.uint16)
    check_held_out([chip("a.tif", blank), chip("b.tif", blank)], ["train", "test"])
    varied = np.arange(3 * 16 * 16, dtype=np.uint16).reshape(3, 16, 16) + 1
    apart = [chip("c.tif", varied, x0=3e5), chip("d.tif", varied, x0=4e5)]
    check_held_out(apart, ["train", "test"])
    same_place = [chip("e.tif", varied, x0=3e5), chip("f.tif", varied, x0=3e5)]
    with pytest.raises(ConfigError, match=r"f\.tif: has the same pixel values"):
        check_held_out(same_place, ["train", "test"])


def test_unknown_codes_of_many_rasters_are_one_warning_with_the_likely_fix(tmp_path):
    """More than a few label rasters with codes the taxonomy does not list give one
    summary, not a line each; codes that are all the other level's say which key the
    raster belongs under."""
    from geoseg.labelled import config_scenes
    from geoseg.taxonomy import load_taxonomy

    west, east = _slovenia_halves(tmp_path)
    cfg_path = _slovenia_config(tmp_path)
    raw = yaml.safe_load(cfg_path.read_text())
    raw["data"]["sources"] = [west, east, {**west, "role": "validation"}, east]
    cfg_path.write_text(yaml.safe_dump(raw))
    cfg = load_train_config(cfg_path)
    with pytest.warns(UnknownCodeWarning) as got:
        config_scenes(cfg, load_taxonomy(cfg.taxonomy))
    unknown = [w for w in got if issubclass(w.category, UnknownCodeWarning)]
    assert len(unknown) == 1 and str(unknown[0].message).startswith("4 label rasters of 4 sources")
    assert "codes 1600 that taxonomy" in str(unknown[0].message)
    # coarse codes given as the fine raster: nothing of it would train, so it is an
    # error (it trained a useless bundle with a warning, found by a blind user test)
    raw["data"]["sources"] = [{"image": west["image"], "fine": west["coarse"]}]
    cfg_path.write_text(yaml.safe_dump(raw))
    cfg = load_train_config(cfg_path)
    with pytest.raises(
        ConfigError,
        match=r"west_coarse.tif: 4,9\d\d of 4,9\d\d labelled pixels \(100.0%\) hold codes "
        r"2, 3, 4, 8 .* nothing would train: they are coarse codes of the taxonomy: give the "
        r"raster as 'coarse:'",
    ):
        config_scenes(cfg, load_taxonomy(cfg.taxonomy))


def test_the_share_of_unknown_fine_codes_counts_leaf_coarse_pixels_as_labelled(tmp_path):
    """A fine raster's pixels of a coarse class without fine classes (Slovenian Water)
    are labelled pixels: the warning's share of unknown codes counts them."""
    import rasterio

    from geoseg.labelled import config_scenes
    from geoseg.taxonomy import load_taxonomy

    west, _ = _slovenia_halves(tmp_path)
    with rasterio.open(west["fine"]) as src:
        profile, h, w = src.profile, src.height, src.width
    codes = np.full((h, w), 1100, np.uint16)
    codes[: h // 2] = 5  # Water: a leaf of its own
    codes[h // 2 :, : w // 5] = 1600  # a code the taxonomy does not list
    fine = tmp_path / "fine.tif"
    with rasterio.open(fine, "w", **{**profile, "dtype": "uint16", "nodata": 0}) as dst:
        dst.write(codes, 1)
    cfg_path = _slovenia_config(tmp_path)
    raw = yaml.safe_load(cfg_path.read_text())
    raw["data"]["sources"] = [{"image": west["image"], "fine": str(fine)}]
    cfg_path.write_text(yaml.safe_dump(raw))
    cfg = load_train_config(cfg_path)
    unknown = int((codes == 1600).sum())
    share = f"{unknown:,} of {h * w:,} labelled pixels ({100 * unknown / (h * w):.1f}%)"
    with pytest.warns(UnknownCodeWarning, match=re.escape(share)):
        config_scenes(cfg, load_taxonomy(cfg.taxonomy))
    # a chip whose codes are of no level (a region the taxonomy lacks) is warned of,
    # not an error: the other chips of its pattern train
    with rasterio.open(fine, "r+") as dst:
        dst.write(np.full((h, w), 1600, np.uint16), 1)
    with pytest.warns(UnknownCodeWarning, match=r"\(100.0%\) hold codes 1600 .* ignored"):
        config_scenes(cfg, load_taxonomy(cfg.taxonomy))


def test_whole_training_scenes_take_patches_larger_than_the_split_blocks(
    tmp_path, monkeypatch, caplog
):
    """``role: train`` scenes are cut into blocks for sampling only, of at least
    ``train.patch_size``: patches are not capped at ``split.block`` as in blocks sources."""
    from geoseg.model import HierarchicalSegmenter

    west, east = _slovenia_halves(tmp_path)
    shapes: list[tuple[int, ...]] = []
    real = HierarchicalSegmenter.forward_parts

    def spy(self, x, trim=0):
        if self.training:
            shapes.append(tuple(x.shape[-2:]))
        return real(self, x, trim)

    monkeypatch.setattr(HierarchicalSegmenter, "forward_parts", spy)
    cfg_path = _slovenia_config(tmp_path, patch_size=48)
    raw = yaml.safe_load(cfg_path.read_text())
    raw["data"]["sources"] = [{**west, "role": "train"}, {**east, "role": "validation"}]
    cfg_path.write_text(yaml.safe_dump(raw))
    caplog.set_level("INFO", logger="geoseg.train")
    with pytest.warns(UnknownCodeWarning):
        train(load_train_config(cfg_path), tmp_path / "b", progress=False)
    assert shapes and set(shapes) == {(48, 48)}
    # the split is reported: labelled pixels per role (west trains, east validates)
    line = next(r.getMessage() for r in caplog.records if "labelled pixels:" in r.getMessage())
    assert line.startswith("slovenia-smoke: 2 scenes; labelled pixels: ") and "0 test" in line


def test_large_scenes_spill_to_memory_mapped_files_and_train_the_same(
    tmp_path, monkeypatch, caplog
):
    """A scene of SPILL_BYTES or more keeps its bands and validity in a memory-mapped file
    beside the output, read in row bands: the same bundle as in memory, no file left."""
    import mmap

    from safetensors.numpy import load_file

    import geoseg.labelled as labelled

    cfg = load_train_config(_slovenia_config(tmp_path))
    with pytest.warns(UnknownCodeWarning):
        in_memory = train(cfg, tmp_path / "a" / "bundle", progress=False)
    caplog.set_level("INFO", logger="geoseg.labelled")
    monkeypatch.setattr(labelled, "SPILL_BYTES", 101 * 100 * (13 * 4 + 1))  # 101 x 100 x 13
    monkeypatch.setattr(labelled, "SPILL_READ_VALUES", 13 * 100 * 7)  # 7 rows at a time
    kinds = []
    real = labelled.load_scene

    def spy(*args, **kwargs):
        scene = real(*args, **kwargs)
        kinds.append((type(scene.image.base), type(scene.coarse.base), kwargs["spill"].folder))
        return scene

    monkeypatch.setattr(labelled, "load_scene", spy)
    with pytest.warns(UnknownCodeWarning):
        spilled = train(cfg, tmp_path / "b" / "bundle", progress=False)
    assert kinds == [(mmap.mmap, mmap.mmap, tmp_path / "b")]
    assert f"MB file in {tmp_path / 'b'}" in caplog.text  # with -v
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["bundle"]  # unlinked
    monkeypatch.setenv("GEOSEG_SPILL_DIR", str(tmp_path / "scratch"))
    with pytest.warns(UnknownCodeWarning):
        train(cfg, tmp_path / "c" / "bundle", progress=False)
    assert kinds[-1][2] == tmp_path / "scratch" and not list((tmp_path / "scratch").iterdir())
    a, b = (load_file(str(d / "weights.safetensors")) for d in (in_memory, spilled))
    assert all(np.array_equal(a[k], b[k]) for k in a) and a.keys() == b.keys()
    ma, mb = (json.loads((d / "bundle.json").read_text()) for d in (in_memory, spilled))
    assert ma["metrics"] == mb["metrics"] and ma["normalization"] == mb["normalization"]


def test_a_spilled_scene_reads_as_the_whole_image(monkeypatch):
    """Row bands of a real scene with a nodata border give the bands and validity of one
    whole read (the border crosses the bands)."""
    import geoseg.labelled as labelled
    from geoseg.raster import open_scene, read_window

    path = shared_file("awkward/RGB.byte.tif")  # 791 x 718, nodata 0 around the footprint
    scene = open_scene(path)
    monkeypatch.setattr(labelled, "SPILL_BYTES", 0)
    monkeypatch.setattr(labelled, "SPILL_READ_VALUES", 3 * scene.width * 100)  # 100 rows
    data, valid, coarse, fine = labelled._scene_arrays(
        scene, (1, 2, 3), labelled.SpillArena(Path(tempfile.mkdtemp())), np.int16
    )
    whole, whole_valid = read_window(scene.path, 0, 0, scene.height, scene.width)
    assert data.base is valid.base is coarse.base is fine.base  # one mapping
    assert data.dtype == whole.dtype and (coarse == -1).all() and (fine == -1).all()
    assert np.array_equal(data, whole) and np.array_equal(valid, whole_valid)
    assert 0 < valid.mean() < 1


def test_labels_read_in_row_bands_give_the_same_indices_and_warnings(tmp_path, monkeypatch):
    """Label rasters are converted a band of rows at a time: the indices, and the counts
    of unknown codes, contradictions and conflicting childless classes in the warnings,
    are those of one whole read."""
    import geoseg.labelled as labelled
    from geoseg.taxonomy import Taxonomy

    from .conftest import write_raster

    tax = Taxonomy.from_dict(
        {
            "name": "t",
            "coarse": [{"code": 1, "name": "Forest"}, {"code": 2, "name": "Water"}],
            "fine": [
                {"code": 11, "name": "Pine", "parent": 1},
                {"code": 12, "name": "Oak", "parent": 1},
            ],
        }
    )
    rng = np.random.default_rng(0)
    fine = rng.choice(np.array([11, 12, 2, 99, 255], np.uint8), (20, 30))  # 99: unknown
    coarse = np.where(np.isin(fine, (11, 12)), 1, 2).astype(np.uint8)
    flip = rng.random((20, 30)) < 0.2  # water over forest, and the other way round,
    flip[10:] = False  # in the upper half only: the lower bands have no contradiction
    coarse[flip] = 3 - coarse[flip]
    coarse[rng.random((20, 30)) < 0.1] = 77  # unknown
    image = write_raster(tmp_path / "img.tif", np.full((2, 20, 30), 5, dtype=np.uint16))
    fpath = write_raster(tmp_path / "fine.tif", fine, nodata=255)
    cpath = write_raster(tmp_path / "coarse.tif", coarse, nodata=255)

    def load():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            s = labelled.load_scene(
                image, cpath, fpath, tax, block=10, checkerboard=False, val_every=3
            )
        return s, [f"{w.category.__name__}: {w.message}" for w in caught]

    whole, said = load()
    monkeypatch.setattr(labelled, "LABEL_READ_PIXELS", 30 * 3)  # 7 bands of 3 rows
    banded, said_banded = load()
    assert np.array_equal(whole.coarse, banded.coarse)
    assert np.array_equal(whole.fine, banded.fine)
    assert said == said_banded and len(said) == 4, said
    assert [m.split(":")[0] for m in said] == [
        "UnknownCodeWarning",  # fine 99
        "UnknownCodeWarning",  # coarse 77
        "InconsistentLabelsWarning",  # the fine raster's Water under coarse Forest
        "InconsistentLabelsWarning",  # coarse Water over fine Pine / Oak
    ]
    n_unknown = int((fine == 99).sum())
    fine_coded = int(np.isin(fine, (11, 12, 2, 99)).sum())  # Water (2): a leaf, labelled
    assert f"{n_unknown:,} of {fine_coded:,} labelled" in said[0]


def test_decision_offsets_are_tuned_on_a_regular_sample_of_many_validation_pixels(
    tmp_path, monkeypatch
):
    """Above TUNE_PIXELS labelled validation pixels, every k-th is kept for the offsets
    (their logits are held at once): exactly those of the whole set, a class's 500-pixel
    minimum counted before sampling, the sampling recorded in bundle.json."""
    import torch

    import geoseg.train as train_mod

    monkeypatch.setattr(train_mod, "TUNE_PIXELS", 100)
    calls = []
    real = train_mod._val_logits

    def spy(*args, **kwargs):
        calls.append((real(*args, **kwargs), real(*args, **{**kwargs, "max_pixels": None})))
        return calls[-1][0]

    tuned = []
    real_tune = train_mod.tune_decode_bias

    def spy_tune(*args, **kwargs):
        tuned.append((args[0].shape[0], kwargs["min_pixels"]))
        return real_tune(*args, **kwargs)

    monkeypatch.setattr(train_mod, "_val_logits", spy)
    monkeypatch.setattr(train_mod, "tune_decode_bias", spy_tune)
    with pytest.warns(UnknownCodeWarning):
        bundle = train(
            load_train_config(_slovenia_config(tmp_path)), tmp_path / "b", progress=False
        )
    ((sample, step, n), (whole, one, n_whole)) = calls[0]
    assert one == 1 and n == n_whole == whole[0].shape[0] and step == -(-n // 100) > 1
    ranks = train_mod.sample_ranks(n, step, seed=0)
    for part, full in zip(sample, whole, strict=True):
        assert torch.equal(part, full[torch.from_numpy(ranks)])
    assert tuned == [(ranks.size, -(-500 // step))]  # MIN_CLASS_PIXELS before sampling
    meta = json.loads((bundle / "bundle.json").read_text())
    assert meta["training"]["decode_bias_tuning"]["pixels"] == {
        "labelled": n,
        "used": ranks.size,
        "one_in": step,
        "seed": 0,
    }


def test_sampled_ranks_take_one_of_each_run_at_random():
    """One rank per run of ``step``, inside it, at varying offsets: no column aliasing."""
    from geoseg.train import sample_ranks

    ranks = sample_ranks(1003, 4, seed=3)
    assert ranks.size == 251 and (np.diff(ranks) > 0).all()
    assert ((ranks // 4) == np.arange(251)).all() and ranks[-1] < 1003
    assert set((ranks % 4).tolist()) == {0, 1, 2, 3}
    # a 2-pixel-wide road in 256-px rows, sampled one in 4: its share is kept
    road = np.zeros((64, 256), bool)
    road[:, 101:103] = True
    picked = road.ravel()[sample_ranks(road.size, 4, seed=0)]
    assert 0.3 < picked.sum() / (road.sum() / 4) < 1.7
    assert np.array_equal(ranks, sample_ranks(1003, 4, seed=3))  # seeded


def test_a_folder_that_cannot_hold_a_spilled_scene_leaves_it_in_memory(
    tmp_path, caplog, monkeypatch
):
    """No room (or no mapping) where a scene would spill: a warning, and the scene is read
    into memory as a smaller one is (a full disk used to kill the run on a page fault)."""
    import errno
    import mmap

    import geoseg.labelled as labelled
    from geoseg.raster import open_scene, read_window

    scene = open_scene(shared_file("awkward/RGB.byte.tif"))

    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(labelled, "SPILL_BYTES", 0)
    monkeypatch.setattr(labelled.os, "posix_fallocate", no_space, raising=False)
    monkeypatch.setattr(labelled.os, "ftruncate", no_space)
    arena = labelled.SpillArena(tmp_path / "full")
    data, valid, coarse, _ = labelled._scene_arrays(scene, (1, 2, 3), arena, np.int16)
    assert not isinstance(data.base, mmap.mmap) and (coarse == -1).all()
    whole, whole_valid = read_window(scene.path, 0, 0, scene.height, scene.width)
    assert np.array_equal(data, whole) and np.array_equal(valid, whole_valid)
    assert "cannot go to memory-mapped files in" in caplog.text and "No space" in caplog.text
    assert list((tmp_path / "full").iterdir()) == []  # the reserved file is gone


def test_the_copy_check_reads_each_image_once_per_digest(tmp_path, monkeypatch):
    """Many test chips against many training chips: each image's sample digest is taken
    once, and an image is read whole at most once (not once per pair)."""
    from collections import Counter

    import geoseg.labelled as labelled

    from .conftest import write_raster

    calls = Counter()
    real = labelled.pixel_digest

    def spy(path, *, whole=False):
        calls[(Path(path).name, whole)] += 1
        return real(path, whole=whole)

    monkeypatch.setattr(labelled, "pixel_digest", spy)
    base = np.arange(3 * 80 * 80, dtype=np.uint16).reshape(3, 80, 80) + 1
    train = [str(write_raster(tmp_path / f"train{i}.tif", base + i)) for i in range(3)]
    tests = []
    for i in range(3):  # differ from train0 outside the sampled windows only
        data = base.copy()
        data[0, 40, 3 + i] += 7
        tests.append(str(write_raster(tmp_path / f"test{i}.tif", data)))
    labelled.refuse_copies(tests, [(p, f"training scene {p}") for p in train], fix="fix it")
    assert all(n == 1 for n in calls.values()), calls
    assert calls[("train0.tif", True)] == 1 and calls[("train1.tif", True)] == 0


def test_early_stopping_is_reported_and_the_whole_run_timed(tmp_path, monkeypatch, caplog):
    """A run that stops before its last epoch says so (it went quiet before), and
    bundle.json times the training loop and the whole run, halo to test scores."""
    import logging

    import geoseg.train as train_mod

    scores = iter([0.5, 0.4, 0.3, 0.2])
    monkeypatch.setattr(train_mod, "_selection_score", lambda val, taxonomy: next(scores))
    caplog.set_level(logging.INFO, logger="geoseg.train")
    cfg = load_train_config(_slovenia_config(tmp_path, epochs=4, patience=1))
    with pytest.warns(UnknownCodeWarning):
        bundle = train(cfg, tmp_path / "b", progress=False)
    training = json.loads((bundle / "bundle.json").read_text())["training"]
    assert training["epochs_run"] == 2
    assert (
        "stopped early after epoch 2: no higher validation score in 1 epoch "
        "(train.patience); keeping epoch 1" in caplog.text
    )
    assert training["total_seconds"] >= training["seconds"] > 0


def test_many_small_scenes_spill_beyond_a_budget_into_few_files(monkeypatch):
    """Chips: none is large, but past SPILL_BYTES of them in memory the rest are cut from
    shared memory-mapped files (one file descriptor per file, not per chip)."""
    import mmap

    import geoseg.labelled as labelled
    from geoseg.raster import open_scene

    scene = open_scene(shared_file("awkward/RGB.byte.tif"))  # 791 x 718 x 3 uint8
    size = scene.width * scene.height * 4  # bands and validity
    monkeypatch.setattr(labelled, "SPILL_BYTES", int(2.5 * size))
    arena = labelled.SpillArena(Path(tempfile.mkdtemp()), chunk=4 * size * 2)
    got = [labelled._scene_arrays(scene, (1, 2, 3), arena, np.int16) for _ in range(7)]
    mapped = [isinstance(data.base, mmap.mmap) for data, *_ in got]
    assert mapped == [False, False, True, True, True, True, True]
    assert arena.held == 2 * size and arena.files == 2  # 5 spilled chips in 2 files
    first = got[0][0]
    assert all(np.array_equal(data, first) for data, *_ in got)
    assert all((c == -1).all() and (f == -1).all() for _, _, c, f in got)


def test_label_rasters_of_fractional_codes_are_refused_and_whole_floats_read(tmp_path):
    """A resampled or averaged label raster (1511.11) is no class raster: refused as by
    evaluate; float codes that are whole numbers, with NaN as nodata, are read."""
    from geoseg.labelled import label_rows
    from geoseg.raster import open_scene

    from .conftest import write_raster

    fine = shared_file("slovenia/raba_fine.tif")
    with rasterio.open(fine) as src:
        codes, profile = src.read(1), src.profile
    as_float = codes.astype("float32")
    as_float[:5, :5] = np.nan
    whole = write_raster(  # RABA 1600 ("no data" in its mapping) tagged as nodata
        tmp_path / "whole.tif",
        as_float,
        crs=profile["crs"],
        transform=profile["transform"],
        nodata=1600.0,
    )
    scene = open_scene(shared_file("slovenia/s2_l1c_2015-07-11.tif"))
    with label_rows(whole, scene) as read:
        got = read(0, scene.height)
    expected = codes.astype(np.int64)
    assert (codes == 1600).sum() > 100
    expected[codes == 1600] = -1
    expected[:5, :5] = -1
    np.testing.assert_array_equal(got, expected)

    averaged = as_float.copy()
    averaged[50, 50] = 1100.5
    frac = write_raster(
        tmp_path / "frac.tif", averaged, crs=profile["crs"], transform=profile["transform"]
    )
    cfg_path = _slovenia_config(tmp_path)
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["data"]["sources"][0]["fine"] = str(frac)
    cfg_path.write_text(yaml.safe_dump(cfg))
    result = CliRunner().invoke(cli, ["train", str(cfg_path), "--out", str(tmp_path / "b")])
    assert result.exit_code == 1, result.output
    assert "frac.tif: label raster holds values that are not whole numbers (e.g. 1100.5)" in (
        result.output
    )
    assert not (tmp_path / "b").exists()


@pytest.mark.filterwarnings("ignore::geoseg.errors.SeenPixelsWarning")  # the whole Zion map
def test_a_nodata_tag_that_is_a_class_code_is_warned_about(tmp_path):
    """lulc_coarse.tif tags 0 as nodata: a taxonomy whose class 0 is a land cover loses
    it silently unless told (train and evaluate say so, with the fix)."""
    from geoseg.errors import NodataClassWarning

    tax = yaml.safe_load((ROOT / "configs" / "taxonomy" / "slovenia.yaml").read_text())
    tax["nodata"] = 255
    tax["coarse"].append({"code": 0, "name": "Background"})
    (tmp_path / "tax.yaml").write_text(yaml.safe_dump(tax))
    cfg_path = _slovenia_config(tmp_path)
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["taxonomy"] = str(tmp_path / "tax.yaml")
    cfg_path.write_text(yaml.safe_dump(cfg))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        bundle = train(load_train_config(cfg_path), tmp_path / "b", progress=False)
    messages = [str(w.message) for w in seen if issubclass(w.category, NodataClassWarning)]
    # both rasters tag 0: the coarse one, and the fine one, which may name a coarse class
    # without fine classes (Background)
    assert len(messages) == 2, [str(w.message) for w in seen]
    coarse = next(m for m in messages if "lulc_coarse.tif" in m)
    assert "its nodata value 0 is the code of coarse class 0 'Background'" in coarse
    assert "geoseg edit" in coarse and "--unset-nodata" in coarse
    from geoseg import api

    run_predict(shared_file("slovenia/s2_l1c_2015-07-11.tif"), bundle, tmp_path / "p")
    with pytest.warns(NodataClassWarning, match="nodata value 0 is the code of coarse class 0"):
        api.evaluate(
            tmp_path / "p" / "labels.tif",
            coarse=shared_file("slovenia/lulc_coarse.tif"),
            taxonomy=tmp_path / "tax.yaml",
        )


@pytest.mark.filterwarnings("ignore::geoseg.errors.GeosegWarning")  # its codes 1600
def test_validation_of_edge_strips_is_warned_about(tmp_path, caplog):
    """Slovenia's 101 x 100 px in 32 px blocks: every 4th block is two edge strips of forest."""
    from geoseg import train as training
    from geoseg.labelled import config_scenes
    from geoseg.taxonomy import load_taxonomy

    def warned(split):
        path = _slovenia_config(tmp_path)
        cfg = load_train_config(path).model_copy(
            update={"split": load_train_config(path).split.model_copy(update=split)}
        )
        scenes = config_scenes(cfg, load_taxonomy(cfg.taxonomy))
        caplog.clear()
        with caplog.at_level("WARNING", logger="geoseg"):
            training._warn_about_split(cfg, scenes)
        said = [r.getMessage() for r in caplog.records]
        return [m for m in said if "validation blocks hold" in m]

    (message,) = warned({"checkerboard": 32})  # configs/slovenia_lulc.yaml's split
    assert "hold 148 labelled pixels" in message and "of 1 of the 5 coarse classes" in message
    assert "split.validation: stratified" in message
    assert warned({"checkerboard": 32, "validation": "stratified"}) == []


def test_bands_the_file_has_not_are_named_in_one_line():
    from geoseg.errors import RasterFormatError
    from geoseg.labelled import select_bands

    names = ("B2", "B3", "B4", "B5")
    assert select_bands(names, ("band4", "B2"), "f.tif") == (4, 1)
    with pytest.raises(RasterFormatError, match=r"f\.tif: 'bands' asks for band 9 of a file of 4"):
        select_bands(names, ("band1", "band9"), "f.tif")  # bands: [1, 9]
    with pytest.raises(RasterFormatError, match=r"bands \['B7'\] not found \(the file has"):
        select_bands(names, ("B7",), "f.tif")


def test_label_pixels_an_internal_mask_leaves_out_are_not_labels(tmp_path):
    """A label raster whose validity is an internal mask (no nodata tag): the codes
    under the mask are not training labels (found by a blind test, 2026-12-07)."""
    from geoseg.labelled import label_rows
    from geoseg.raster import open_scene

    fine = shared_file("slovenia/raba_fine.tif")
    with rasterio.open(fine) as src:
        codes, profile = src.read(1), src.profile
    valid = np.ones(codes.shape, bool)
    valid[10:30, 20:60] = False
    masked = tmp_path / "masked.tif"
    profile.update(nodata=None, driver="GTiff")
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(masked, "w", **profile) as dst:
        dst.write(codes, 1)
        dst.write_mask(valid.astype(np.uint8) * 255)
    scene = open_scene(shared_file("slovenia/s2_l1c_2015-07-11.tif"))
    with label_rows(masked, scene) as read:
        got = read(0, scene.height)
    np.testing.assert_array_equal(got, np.where(valid, codes.astype(np.int64), -1))
