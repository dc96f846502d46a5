"""Encoder weights from a local file, to start training from a pretrained encoder.

Nothing is downloaded: the user names a file they have (ImageNet weights saved from
torchvision or timm, a self-supervised remote-sensing checkpoint, the encoder of
another network). Its tensors are matched to the encoder's by name, after the leading
part of the names that differs between the two is set aside (``module.``,
``backbone.``, ``encoder.``, timm's ``model.``), and by shape. A first convolution
trained on another number of bands is adapted to the image's, as
segmentation-models-pytorch adapts pretrained weights: its input channels are repeated
in turn and scaled, so that the layer's response to an image of equal bands stays the
same (one band: their sum).

``.safetensors`` files are read as such; any other file with ``torch.load(...,
weights_only=True)``, which restores tensors and plain containers only, never
arbitrary objects.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from geoseg.errors import ConfigError

log = logging.getLogger(__name__)

#: Share of the encoder's tensors a weights file must provide (by name and shape).
MIN_MATCHED = 0.9


@dataclass(frozen=True)
class EncoderWeights:
    """What :func:`load_encoder_weights` loaded (recorded in ``bundle.json``).

    Attributes
    ----------
    path : str
        The file.
    sha256 : str
        Its checksum.
    matched : int
        Encoder tensors set from the file.
    of : int
        Encoder tensors in all (batch-norm step counters not counted).
    first_conv : str or None
        How a first convolution of another band count was adapted, if it was.
    """

    path: str
    sha256: str
    matched: int
    of: int
    first_conv: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (safetensors, or a PyTorch file of tensors).

    A checkpoint that nests its tensors under ``state_dict`` or ``model`` is unwrapped.

    Raises
    ------
    ConfigError
        The file is missing or holds no tensors that can be read safely.
    """
    if not path.is_file():
        raise ConfigError(f"{path}: encoder weights file not found: check train.encoder_weights")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw: Any = load_file(str(path))
        else:
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any reader's failure is the same user error
        raise ConfigError(
            f"{path}: cannot read encoder weights: not a .safetensors file, nor a PyTorch "
            f"file of tensors only ({type(exc).__name__}); a saved model or a checkpoint "
            "holding other objects is not read: save torch.save(model.state_dict(), PATH)"
        ) from None
    for key in ("state_dict", "model"):
        if isinstance(raw, dict) and isinstance(raw.get(key), dict):
            raw = raw[key]
    tensors = (
        {k: v for k, v in raw.items() if isinstance(v, torch.Tensor)}
        if isinstance(raw, dict)
        else {}
    )
    if not tensors:
        raise ConfigError(
            f"{path}: holds no named tensors: encoder weights must be a state dict "
            "(names to tensors), e.g. torch.save(model.state_dict(), PATH)"
        )
    return tensors


def _prefixes(keys: list[str]) -> set[str]:
    """``""`` and every leading one or two dotted components of ``keys``."""
    out = {""}
    for k in keys:
        parts = k.split(".")
        for n in (1, 2):
            if len(parts) > n:
                out.add(".".join(parts[:n]) + ".")
    return out


def _best_prefixes(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> tuple[str, str, dict[str, str]]:
    """The source prefix to strip, the target prefix to add, and the names they match."""
    best: tuple[str, str, dict[str, str]] = ("", "", {})
    src_keys = list(source)
    for strip in sorted(_prefixes(src_keys)):
        stripped = {k[len(strip) :]: k for k in src_keys if k.startswith(strip)}
        for add in sorted(_prefixes(list(target))):
            found = {
                t: stripped[t[len(add) :]]
                for t in target
                if t.startswith(add) and t[len(add) :] in stripped
            }
            if len(found) > len(best[2]):
                best = (strip, add, found)
    return best


def match_names(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, str]:
    """Map target names to source names: the prefix pair that names the most tensors.

    One leading part of the source names is replaced by one of the target names (either
    may be empty), chosen to match the most tensor names; shapes are not compared here.

    Examples
    --------
    >>> t = {"model.conv1.weight": torch.zeros(1), "model.bn1.bias": torch.zeros(1)}
    >>> s = {"backbone.conv1.weight": torch.zeros(1), "backbone.bn1.bias": torch.zeros(1),
    ...      "head.fc.weight": torch.zeros(1)}
    >>> match_names(s, t)
    {'model.conv1.weight': 'backbone.conv1.weight', 'model.bn1.bias': 'backbone.bn1.bias'}
    """
    return _best_prefixes(source, target)[2]


def extra_in_used_stages(
    source: dict[str, torch.Tensor], strip: str, matched: dict[str, str]
) -> list[str]:
    """Source tensors in a stage the encoder uses, which the encoder does not have.

    A stage is the first part of a name after the matched prefix (``layer1`` of
    ``layer1.2.conv1.weight``). Such tensors mean a deeper variant of the encoder
    (ResNet-34 weights for a ResNet-18: its ``layer1`` has three blocks, not two),
    whereas the tensors of stages the network never runs (a classifier, the stage a
    shallow ``encoder_depth`` drops) are simply left aside.

    Examples
    --------
    ``strip`` and ``matched`` are the source prefix and the names matched (see
    :func:`match_names`).

    >>> t = {"layer1.0.w": torch.zeros(1), "layer1.1.w": torch.zeros(1)}
    >>> s = {**t, "layer1.2.w": torch.zeros(1), "layer4.0.w": torch.zeros(1)}
    >>> extra_in_used_stages(s, "", {k: k for k in t})
    ['layer1.2.w']
    """
    used = set(matched.values())
    stages = {s[len(strip) :].split(".")[0] for s in used}
    return [
        k
        for k in source
        if k not in used
        and k.startswith(strip)
        and k[len(strip) :].split(".")[0] in stages
        and not k.endswith("num_batches_tracked")
    ]


def adapt_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """A convolution's ``(out, c, k, k)`` weights for ``in_channels`` inputs instead of ``c``.

    Input channel ``i`` takes the weights of channel ``i mod c``, all scaled by
    ``c / in_channels``; for one input channel, the sum over the ``c``.

    Examples
    --------
    >>> w = torch.tensor([[[[1.0]], [[2.0]], [[3.0]]]])
    >>> adapt_first_conv(w, 4).flatten().tolist()
    [0.75, 1.5, 2.25, 0.75]
    >>> adapt_first_conv(w, 1).flatten().tolist()
    [6.0]
    """
    c = weight.shape[1]
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    index = torch.arange(in_channels) % c
    return weight[:, index] * (c / in_channels)


def _transfer(
    source: dict[str, torch.Tensor],
    target: dict[str, torch.Tensor],
    names: dict[str, str],
    in_channels: int,
) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """The source tensors for the target names, with input convolutions adapted.

    Returns the tensors to load, notes on each adapted convolution (4-D weights whose
    input channels are not ``in_channels``, the network's), and the tensors whose shape
    differs otherwise.
    """
    loaded: dict[str, torch.Tensor] = {}
    adapted, wrong_shape = [], []
    for t, s in names.items():
        want, have = target[t], source[s]
        if have.shape == want.shape:
            loaded[t] = have.to(want.dtype)
        elif (
            have.ndim == want.ndim == 4
            and want.shape[1] == in_channels
            and have.shape[0] == want.shape[0]
            and have.shape[2:] == want.shape[2:]
        ):
            loaded[t] = adapt_first_conv(have.float(), in_channels).to(want.dtype)
            adapted.append(f"{t}: {have.shape[1]} input channels adapted to {in_channels}")
        else:
            wrong_shape.append(f"{s} {tuple(have.shape)} for {t} {tuple(want.shape)}")
    return loaded, adapted, wrong_shape


def _without_counters(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


def load_encoder_weights(
    encoder: nn.Module,
    path: Path,
    *,
    in_channels: int,
    tensors: dict[str, torch.Tensor] | None = None,
) -> EncoderWeights:
    """Set an encoder's weights from a local file (see the module docstring).

    Parameters
    ----------
    encoder : nn.Module
        The network's encoder (``HierarchicalSegmenter.backbone.encoder``).
    path : Path
        The weights file.
    in_channels : int
        The network's input channels (bands and differences): a first convolution of
        another input count in the file is adapted to it.
    tensors : dict, optional
        The file's tensors, when already read (:func:`read_state_dict`).

    Raises
    ------
    ConfigError
        The file cannot be read, or provides less than :data:`MIN_MATCHED` of the
        encoder's tensors by name and shape (another architecture, another encoder).
    """
    source = read_state_dict(path) if tensors is None else tensors
    target = _without_counters(encoder.state_dict())
    strip, _, names = _best_prefixes(source, target)
    loaded, adapted, wrong_shape = _transfer(source, target, names, in_channels)
    extra = extra_in_used_stages(source, strip, names)
    if extra:
        raise ConfigError(
            f"{path}: has {len(extra)} tensors in the encoder's stages that its network does "
            f"not have (e.g. {', '.join(extra[:2])}): weights of another variant (e.g. "
            "resnet34 for resnet18)? give weights of model.encoder itself"
        )
    if len(loaded) < MIN_MATCHED * len(target):
        missing = [t for t in target if t not in loaded][:3]
        detail = (
            f"shapes differ: {'; '.join(wrong_shape[:2])}"
            if wrong_shape
            else f"e.g. no tensor for {', '.join(missing)} (the file has "
            f"{', '.join(list(source)[:3])}, ...)"
        )
        raise ConfigError(
            f"{path}: provides {len(loaded)} of the encoder's {len(target)} tensors ({detail}): "
            "give weights of the same encoder as model.encoder (e.g. torchvision's or timm's "
            "resnet18 for resnet18)"
        )
    encoder.load_state_dict(loaded, strict=False)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    report = EncoderWeights(str(path), digest, len(loaded), len(target), "; ".join(adapted) or None)
    log.info("encoder weights from %s: %d of %d tensors", path, len(loaded), len(target))
    return report


@dataclass(frozen=True)
class BundleStart:
    """What :func:`load_bundle_weights` took from a bundle (recorded in ``bundle.json``).

    Attributes
    ----------
    bundle : str
        The bundle directory.
    sha256 : str
        Checksum of its weights file.
    matched, of : int
        Tensors of the network set from the bundle, and in all.
    adapted : list of str
        Input convolutions adapted to another band count.
    fresh : list of str
        The network's tensors that start from their initialisation (e.g. the heads of a
        taxonomy with other classes).
    """

    bundle: str
    sha256: str
    matched: int
    of: int
    adapted: list[str]
    fresh: list[str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def channel_names(bands: Sequence[str], differences: Sequence[tuple[int, int]]) -> list[str]:
    """Names of a network's input channels: the bands, then each normalised difference.

    Examples
    --------
    >>> channel_names(["B4", "B5"], [(1, 0)])
    ['B4', 'B5', '(B5-B4)/(B5+B4)']
    """
    out = list(bands)
    out += [f"({bands[a]}-{bands[b]})/({bands[a]}+{bands[b]})" for a, b in differences]
    return out


def input_convolutions(model: nn.Module, in_channels: int) -> list[str]:
    """The convolutions that read the network's input itself (not a feature map).

    Found by running the network once on a small input and noting the convolutions
    called with that very tensor (the encoder's first layer, a pixel path's).
    """
    x = torch.zeros(1, in_channels, 64, 64)
    found: list[str] = []

    def note(name: str) -> Any:
        return lambda _mod, args: found.append(name) if args and args[0] is x else None

    hooks = [
        mod.register_forward_pre_hook(note(name))
        for name, mod in model.named_modules()
        if isinstance(mod, nn.Conv2d)
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return list(dict.fromkeys(found))


def by_channel_name(weight: torch.Tensor, have: Sequence[str], want: Sequence[str]) -> torch.Tensor:
    """An input convolution's weights rearranged from channels ``have`` to ``want``.

    A channel of ``want`` takes the filter of the same name; a channel the weights were
    not trained on starts at zero, so the network answers as before until it learns
    to use it.

    Examples
    --------
    >>> w = torch.tensor([[[[1.0]], [[2.0]], [[3.0]]]])
    >>> by_channel_name(w, ["B2", "B3", "B4"], ["B4", "B2", "B8"]).flatten().tolist()
    [3.0, 1.0, 0.0]
    """
    out = torch.zeros(weight.shape[0], len(want), *weight.shape[2:], dtype=weight.dtype)
    index = {name: i for i, name in enumerate(have)}
    for j, name in enumerate(want):
        if name in index:
            out[:, j] = weight[:, index[name]]
    return out


def load_bundle_weights(
    model: nn.Module, bundle: Path, *, in_channels: int, channels: Sequence[str] | None = None
) -> BundleStart:
    """Start a network from a trained bundle's weights, to fine-tune it on new data.

    Every tensor of the bundle's network whose name and shape match one of ``model``'s
    is copied; the others, typically the heads when the taxonomy has other classes,
    keep their initialisation. The encoder-decoder (``backbone``) must match: at least
    :data:`MIN_MATCHED` of its tensors. The convolutions that read the input take their
    filters by channel name (:func:`by_channel_name`; ``channels`` names the network's
    input channels, see :func:`channel_names`): a band in another position keeps its
    filter, a new band starts at zero. Where no name is shared (e.g. ``band1 ..``
    against ``B2 ..``), channels are matched by position, with a warning.

    Raises
    ------
    ConfigError
        The bundle's network is of another architecture.
    """
    from geoseg.bundle import WEIGHTS, load_bundle

    meta, trained = load_bundle(bundle)
    source = _without_counters(trained.state_dict())
    target = _without_counters(model.state_dict())
    names = {k: k for k in target if k in source}
    have = channel_names(meta.bands, meta.normalization.differences)
    want = list(channels) if channels is not None else have
    inputs = {f"{n}.weight" for n in input_convolutions(model, in_channels)}
    by_name = bool(set(have) & set(want))
    adapted: list[str] = []
    if by_name and have != want:
        source = dict(source)
        for key in inputs & set(names):
            source[key] = by_channel_name(source[key], have, want)
        new = [c for c in want if c not in have]
        adapted.append(
            f"input channels by name: {', '.join(want)} from the bundle's {', '.join(have)}"
            + (f" ({', '.join(new)} start at zero)" if new else "")
        )
    elif not by_name and channels is not None and have != want:
        log.warning(
            "%s: the bundle's bands (%s) share no name with the configured ones (%s): its "
            "input filters are taken by position",
            bundle, ", ".join(have), ", ".join(want),
        )  # fmt: skip
    loaded, shape_adapted, _ = _transfer(source, target, names, in_channels)
    adapted += shape_adapted
    backbone = [k for k in target if k.startswith("backbone.")]
    got = sum(k in loaded for k in backbone)
    if got < MIN_MATCHED * len(backbone):
        raise ConfigError(
            f"{bundle}: its network ({meta.model.architecture} with {meta.model.encoder}, "
            f"encoder_depth {meta.model.encoder_depth}, decoder {meta.model.decoder_channels}) "
            f"gives {got} of the {len(backbone)} encoder-decoder tensors of the configured "
            "one: fine-tune with the bundle's model settings (bundle.json 'model')"
        )
    model.load_state_dict(loaded, strict=False)
    digest = hashlib.sha256((Path(bundle) / WEIGHTS).read_bytes()).hexdigest()
    fresh = [k for k in target if k not in loaded]
    log.info("started from %s: %d of %d tensors", bundle, len(loaded), len(target))
    return BundleStart(str(bundle), digest, len(loaded), len(target), adapted, fresh)
