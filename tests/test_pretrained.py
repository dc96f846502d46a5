"""Encoder weights from a local file (``train.encoder_weights``)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from geoseg.config import ModelConfig, load_train_config
from geoseg.errors import ConfigError, UnknownCodeWarning
from geoseg.model import build_segmenter
from geoseg.pretrained import adapt_first_conv, load_encoder_weights
from geoseg.taxonomy import load_taxonomy

from .conftest import ROOT
from .test_train import _slovenia_config

ZION_NET = ModelConfig(
    architecture="Unet",
    encoder="resnet18",
    encoder_depth=4,
    decoder_channels=(128, 64, 32, 16),
    features=32,
    pixel_skip=16,
)


def _torchvision_resnet18(seed: int = 3) -> dict[str, torch.Tensor]:
    """A torchvision ResNet-18's state dict (random weights: none are downloaded)."""
    import torchvision

    torch.manual_seed(seed)
    return torchvision.models.resnet18(weights=None).state_dict()


def _network(bands: int = 4):
    return build_segmenter(
        ZION_NET, in_channels=bands, taxonomy=load_taxonomy(ROOT / "configs/taxonomy/nlcd.yaml")
    )


def test_torchvision_weights_load_with_the_first_convolution_adapted(tmp_path) -> None:
    """A 3-band ImageNet-style ResNet-18 file fills the 4-band encoder of the Zion
    network: every tensor it has (layer4 and fc, which the network does not use, are
    left aside), the first convolution's input channels repeated and scaled."""
    weights = _torchvision_resnet18()
    path = tmp_path / "resnet18.pth"
    torch.save(weights, path)
    net = _network()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    report = load_encoder_weights(net.backbone.encoder, path, in_channels=4)
    enc = net.backbone.encoder.state_dict()
    assert report.matched == report.of and report.first_conv.startswith("conv1.weight: 3 input")
    torch.testing.assert_close(enc["conv1.weight"], adapt_first_conv(weights["conv1.weight"], 4))
    for key in ("layer1.0.conv1.weight", "layer3.1.bn2.running_var", "bn1.bias"):
        torch.testing.assert_close(enc[key], weights[key], rtol=0, atol=0)
    # the decoder and heads keep their initialisation
    after = net.state_dict()
    assert all(
        torch.equal(after[k], before[k]) for k in after if not k.startswith("backbone.encoder")
    )


def test_prefixed_safetensors_and_nested_checkpoints_load(tmp_path) -> None:
    from safetensors.torch import save_file

    weights = _torchvision_resnet18()
    path = tmp_path / "enc.safetensors"
    save_file({f"module.backbone.{k}": v.contiguous() for k, v in weights.items()}, str(path))
    net = _network(bands=3)
    assert load_encoder_weights(net.backbone.encoder, path, in_channels=3).first_conv is None
    torch.testing.assert_close(
        net.backbone.encoder.state_dict()["conv1.weight"], weights["conv1.weight"]
    )
    nested = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "state_dict": {f"encoder.{k}": v for k, v in weights.items()}}, nested)
    report = load_encoder_weights(_network().backbone.encoder, nested, in_channels=4)
    assert report.matched == report.of


def test_weights_of_another_encoder_or_no_weights_are_one_line_errors(tmp_path) -> None:
    import torchvision

    other = tmp_path / "mobilenet.pth"
    torch.save(torchvision.models.mobilenet_v2(weights=None).state_dict(), other)
    with pytest.raises(ConfigError, match=r"provides \d+ of the encoder's \d+ tensors"):
        load_encoder_weights(_network().backbone.encoder, other, in_channels=4)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot read encoder weights"):
        load_encoder_weights(_network().backbone.encoder, junk, in_channels=4)
    with pytest.raises(ConfigError, match="not found"):
        load_encoder_weights(_network().backbone.encoder, tmp_path / "none.pth", in_channels=4)
    deeper = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), deeper)
    with pytest.raises(ConfigError, match=r"another variant \(e.g. resnet34 for resnet18\)"):
        load_encoder_weights(_network().backbone.encoder, deeper, in_channels=4)
    whole_model = tmp_path / "model.pt"
    torch.save(torchvision.models.resnet18(weights=None), whole_model)
    with pytest.raises(ConfigError, match=r"save torch.save\(model.state_dict\(\), PATH\)"):
        load_encoder_weights(_network().backbone.encoder, whole_model, in_channels=4)
    no_tensors = tmp_path / "list.pt"
    torch.save([1, 2, 3], no_tensors)
    with pytest.raises(ConfigError, match="holds no named tensors"):
        load_encoder_weights(_network().backbone.encoder, no_tensors, in_channels=4)


def test_training_starts_from_the_encoder_weights_and_records_them(tmp_path, monkeypatch) -> None:
    """``train.encoder_weights`` (relative to the config) sets the encoder before the
    first step, the 13 Sentinel-2 bands taking the 3-band file's first convolution."""
    import geoseg.train as train_mod

    weights = _torchvision_resnet18()
    (tmp_path / "w").mkdir()
    torch.save(weights, tmp_path / "w" / "resnet18.pth")
    cfg_path = _slovenia_config(tmp_path, encoder_weights="w/resnet18.pth")
    cfg = load_train_config(cfg_path)
    assert cfg.train.encoder_weights == tmp_path / "w" / "resnet18.pth"
    assert cfg.train.encoder_weights in cfg.input_files()
    seen = []
    real_step = torch.optim.AdamW.step

    def first_step(self, *a, **k):
        if not seen:  # the encoder's weights as the first step finds them
            seen.append(self.param_groups[0]["params"][0].detach().clone())
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", first_step)
    with pytest.warns(UnknownCodeWarning):
        bundle = train_mod.train(cfg, tmp_path / "b", progress=False)
    torch.testing.assert_close(seen[0], adapt_first_conv(weights["conv1.weight"], 13))
    record = json.loads((bundle / "bundle.json").read_text())["training"]["encoder_weights"]
    assert (
        record["matched"] == record["of"]
        and "3 input channels adapted to 13" in record["first_conv"]
    )
    assert len(record["sha256"]) == 64
    # a missing file is refused when training starts
    raw = yaml.safe_load(cfg_path.read_text())
    raw["train"]["encoder_weights"] = "w/missing.pth"
    cfg_path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="not found"):
        train_mod.train(load_train_config(cfg_path), tmp_path / "b2", progress=False)


def _bundle(tmp_path, name="a", **train_over):
    import geoseg.train as train_mod

    with pytest.warns(UnknownCodeWarning):
        return train_mod.train(
            load_train_config(_slovenia_config(tmp_path / name, **train_over)),
            tmp_path / name / "bundle",
            progress=False,
        )


def _started_weights(monkeypatch) -> list[dict[str, torch.Tensor]]:
    """Fills with the network's weights right after each ``init_from`` load in training."""
    import geoseg.train as train_mod

    seen: list[dict[str, torch.Tensor]] = []
    real = train_mod.load_bundle_weights

    def spy(model, bundle, **kw):
        out = real(model, bundle, **kw)
        seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return out

    monkeypatch.setattr(train_mod, "load_bundle_weights", spy)
    return seen


def test_fine_tuning_starts_from_the_bundle_and_refreshes_heads_of_other_classes(
    tmp_path, monkeypatch
) -> None:
    """``train.init_from``: the whole network starts from the bundle's weights; with a
    taxonomy of more coarse classes the coarse head starts afresh, the rest is copied."""
    from safetensors.torch import load_file

    import geoseg.train as train_mod

    (tmp_path / "a").mkdir()
    first = _bundle(tmp_path)
    trained = {  # batch-norm step counters are not weights: they are not copied
        k: v
        for k, v in load_file(str(first / "weights.safetensors")).items()
        if not k.endswith("num_batches_tracked")
    }
    seen = _started_weights(monkeypatch)
    (tmp_path / "b").mkdir()
    with pytest.warns(UnknownCodeWarning):
        tuned = train_mod.train(
            load_train_config(_slovenia_config(tmp_path / "b", init_from=str(first))),
            tmp_path / "b" / "bundle",
            progress=False,
        )
    assert all(torch.equal(seen[0][k], trained[k]) for k in trained)
    start = json.loads((tuned / "bundle.json").read_text())["training"]["init_from"]
    assert start["matched"] == start["of"] and start["fresh"] == [] and len(start["sha256"]) == 64
    # another taxonomy: one more coarse class, so another coarse head
    tax = yaml.safe_load((ROOT / "configs/taxonomy/slovenia.yaml").read_text())
    tax["coarse"].append({"code": 11, "name": "Vineyard"})
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "tax.yaml").write_text(yaml.safe_dump(tax))
    cfg_path = _slovenia_config(tmp_path / "c", init_from=str(first))
    raw = yaml.safe_load(cfg_path.read_text())
    raw["taxonomy"] = str(tmp_path / "c" / "tax.yaml")
    cfg_path.write_text(yaml.safe_dump(raw))
    seen.clear()
    with pytest.warns(UnknownCodeWarning):
        other = train_mod.train(
            load_train_config(cfg_path), tmp_path / "c" / "bundle", progress=False
        )
    start = json.loads((other / "bundle.json").read_text())["training"]["init_from"]
    # the coarse head, and the fine head's first layer, which reads the coarse probabilities
    assert set(start["fresh"]) == {
        "coarse_head.2.weight",
        "coarse_head.2.bias",
        "fine_head.0.weight",
    }
    backbone = [k for k in trained if k.startswith("backbone.")]
    assert all(torch.equal(seen[0][k], trained[k]) for k in backbone)


def test_fine_tuning_a_bundle_of_another_network_or_no_bundle_is_refused(tmp_path) -> None:
    import geoseg.train as train_mod
    from geoseg.errors import BundleError

    (tmp_path / "a").mkdir()
    first = _bundle(tmp_path)
    cfg_path = _slovenia_config(tmp_path, init_from=str(first))
    raw = yaml.safe_load(cfg_path.read_text())
    raw["model"]["decoder_channels"] = [16, 16, 8]
    cfg_path.write_text(yaml.safe_dump(raw))
    with (
        pytest.warns(UnknownCodeWarning),
        pytest.raises(ConfigError, match="encoder-decoder tensors"),
    ):
        train_mod.train(load_train_config(cfg_path), tmp_path / "x", progress=False)
    raw["train"]["init_from"] = str(tmp_path / "nothing")
    cfg_path.write_text(yaml.safe_dump(raw))
    with pytest.raises(BundleError, match="model bundle not found"):
        train_mod.train(load_train_config(cfg_path), tmp_path / "y", progress=False)
    raw["train"]["encoder_weights"] = "w.pth"
    cfg_path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="not both"):
        load_train_config(cfg_path)


def test_fine_tuning_takes_input_filters_by_band_name(tmp_path, monkeypatch) -> None:
    """A config with the bundle's bands in another order, fewer of them and a new one:
    each input convolution's filter follows its band's name (a new band starts at
    zero), not the band's position."""
    from safetensors.torch import load_file

    import geoseg.train as train_mod
    from geoseg.pretrained import by_channel_name

    (tmp_path / "a").mkdir()
    first = _bundle(tmp_path)  # every band, B01 .. B12 in file order
    meta = json.loads((first / "bundle.json").read_text())
    trained = load_file(str(first / "weights.safetensors"))
    seen = _started_weights(monkeypatch)
    bands = ["B08", "B04", "B03"]
    (tmp_path / "b").mkdir()
    with pytest.warns(UnknownCodeWarning):
        tuned = train_mod.train(
            load_train_config(_slovenia_config(tmp_path / "b", init_from=str(first))).model_copy(
                update={"bands": tuple(bands)}
            ),
            tmp_path / "b" / "bundle",
            progress=False,
        )
    for key in ("backbone.encoder.conv1.weight",):
        want = by_channel_name(trained[key], meta["bands"], bands)
        torch.testing.assert_close(seen[0][key], want)
        # B08 takes B08's filter, not the first band's
        torch.testing.assert_close(seen[0][key][:, 0], trained[key][:, meta["bands"].index("B08")])
    record = json.loads((tuned / "bundle.json").read_text())["training"]["init_from"]
    assert any("input channels by name" in a for a in record["adapted"])
