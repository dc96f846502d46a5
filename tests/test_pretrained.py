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
