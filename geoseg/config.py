"""Training configuration (YAML, validated with pydantic, ``extra="forbid"`` everywhere).

Relative paths in a config file are resolved against the file's directory.

Example:
-------
.. code-block:: yaml

    name: zion-nlcd
    taxonomy: taxonomy/nlcd.yaml
    data: {dataset: zion}
    split: {checkerboard: 128}
    model: {architecture: Unet, encoder: mobilenet_v2}
    train: {epochs: 30, steps_per_epoch: 100, batch_size: 16, patch_size: 128}
"""

from __future__ import annotations

import difflib
import glob
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from geoseg.errors import ConfigError, read_yaml, validation_message
from geoseg.scene_mask import PRESETS, MaskRule
from geoseg.vector_labels import VECTOR_SUFFIXES, VectorField, is_vector

Architecture = Literal[
    "Unet",
    "UnetPlusPlus",
    "FPN",
    "PSPNet",
    "DeepLabV3",
    "DeepLabV3Plus",
    "Linknet",
    "MAnet",
    "PAN",
    "UPerNet",
    "Segformer",
]


class ModelConfig(BaseModel):
    """Architecture of a :class:`HierarchicalSegmenter` (stored in ``bundle.json``).

    ``pixel_skip`` > 0 adds a full-resolution path of that many channels (two 3x3
    convolutions on the input bands) fused with the decoder's output before the heads:
    smp decoders have no skip at stride 1, so without it features one or two pixels
    wide (roads, streams) reach the heads only through the stride-2 stem.

    ``dropout`` > 0 drops whole feature channels (``Dropout2d``) before the heads
    during training, a regulariser for small training sets.

    ``pixel_head`` > 0 adds a per-pixel classifier (1x1 convolutions with that many
    hidden channels) whose logits are added to the heads' (see :mod:`geoseg.model`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    architecture: Architecture = "Unet"
    encoder: str = "mobilenet_v2"
    encoder_depth: int = Field(default=5, ge=3, le=5)
    decoder_channels: tuple[int, ...] | None = (128, 64, 32, 16, 16)
    features: int = Field(default=32, ge=4)
    head: Literal["hierarchical", "flat"] = "hierarchical"
    pixel_skip: int = Field(default=0, ge=0)
    pixel_head: int = Field(default=0, ge=0)
    dropout: float = Field(default=0.0, ge=0, lt=1)

    @property
    def output_stride(self) -> int:
        """Total downsampling of the encoder: tile origins and sizes are multiples of it."""
        return int(2**self.encoder_depth)

    def smp_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`segmentation_models_pytorch.create_model`."""
        kwargs: dict[str, Any] = {}
        if self.architecture in ("Unet", "UnetPlusPlus", "MAnet", "Linknet"):
            kwargs["encoder_depth"] = self.encoder_depth
        if self.decoder_channels is not None and self.architecture in (
            "Unet",
            "UnetPlusPlus",
            "MAnet",
        ):
            if len(self.decoder_channels) != self.encoder_depth:
                raise ConfigError(
                    f"decoder_channels {list(self.decoder_channels)} has "
                    f"{len(self.decoder_channels)} entries but encoder_depth is "
                    f"{self.encoder_depth}: give one channel count per decoder stage"
                )
            kwargs["decoder_channels"] = tuple(self.decoder_channels)
        return kwargs


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: What a labelled scene is for: its ``split`` blocks (default), or all of it one role.
SourceRole = Literal["blocks", "train", "validation", "test"]


class Source(_Strict):
    """One labelled scene: an image and coarse and/or fine label rasters on its grid.

    Attributes
    ----------
    image : Path
        The image. In a config file it may be a glob pattern (``chips/*_rgb.tif``): one
        source per matching file, in name order, whose label paths then name their own
        file with ``{stem}`` (the image's name without its extension), ``{name}`` or
        ``{match}`` (what the pattern's one ``*`` matched).
    coarse, fine : Path, optional
        Label rasters on the image's grid, or vector files (GeoPackage, Shapefile,
        GeoJSON, FlatGeobuf, GeoParquet) of features with a class attribute, burnt onto
        it (at least one). One vector file may give both levels, and every image of a
        pattern.
    coarse_field, fine_field : str
        The attribute of vector labels with each feature's class: a code, or a class
        name of that level (default ``coarse_code`` / ``fine_code``, as ``geoseg predict``
        exports them).
    layer : str, optional
        The layer of vector labels (default: the file's first layer with geometries).
    role : {"blocks", "train", "validation", "test"}
        ``blocks``: the scene is cut into the split's blocks (training, validation and,
        with a checkerboard, test). ``train`` / ``validation`` / ``test``: the whole
        scene has that role, as datasets with scenes set aside for testing have it; a
        ``test`` scene is never trained or validated on, and is scored at the end of
        training and by ``geoseg evaluate --model B --config C``.
    mask : Path, optional
        A raster of pixels to leave out of the image (clouds, shadows, fill), on its
        grid or resampled onto it; a pattern's names its own file as label paths do.
    mask_exclude : str or list of int, optional
        Which of the mask's values leave a pixel out (see
        :meth:`geoseg.scene_mask.MaskRule.parse`); required with ``mask``.
    """

    image: Path
    coarse: Path | None = None
    fine: Path | None = None
    role: SourceRole = "blocks"
    coarse_field: str = "coarse_code"
    fine_field: str = "fine_code"
    layer: str | None = None
    mask: Path | None = None
    mask_exclude: str | StrictInt | list[StrictInt] | None = None  # yes/no: not rules 1/0

    @model_validator(mode="after")
    def _mask(self) -> Source:
        if self.mask is None and self.mask_exclude is not None:
            raise ValueError(
                f"source {self.image}: mask_exclude says which values of a mask leave a "
                "pixel out, and the source has no mask: add mask: RASTER, or drop it"
            )
        if self.mask is not None:
            if self.mask_exclude is None:
                raise ValueError(
                    f"source {self.image}: mask {self.mask} needs mask_exclude, the values "
                    "that leave a pixel out: e.g. 1 for a 0/1 cloud mask, 0 for a validity "
                    f"mask of 0/255, 'bits:1,3,4', or one of {', '.join(PRESETS)}"
                )
            try:
                MaskRule.parse(self.mask_exclude)
            except ConfigError as exc:
                raise ValueError(f"source {self.image}: {exc}") from None
        return self

    def mask_spec(self) -> tuple[Path, str | int | list[int]] | None:
        """``(mask, mask_exclude)``, or ``None`` without a mask."""
        if self.mask is None or self.mask_exclude is None:
            return None
        return self.mask, self.mask_exclude

    @model_validator(mode="after")
    def _labels(self) -> Source:
        if self.coarse is None and self.fine is None:
            raise ValueError(f"source {self.image} needs a 'coarse' or a 'fine' label raster")
        # by value, not by what was written: a config's dump must load again
        given = [
            name
            for name, value in (
                ("coarse_field", self.coarse_field),
                ("fine_field", self.fine_field),
                ("layer", self.layer),
            )
            if value != type(self).model_fields[name].default
        ]
        if given and not any(is_vector(p) for p in (self.coarse, self.fine) if p is not None):
            raise ValueError(
                f"source {self.image}: {', '.join(given)} name(s) an attribute or layer "
                "of vector labels, and its labels are not vector files (by their ending: "
                f"{', '.join(sorted(VECTOR_SUFFIXES))}, .shp.zip): drop it, or give one"
            )
        return self

    def vector_fields(self, shared: frozenset[Path] = frozenset()) -> dict[str, VectorField]:
        """Where this source's vector labels keep each level's classes.

        ``shared``: vector files that label several sources (an image they do not
        reach is unlabelled, not an error).
        """
        return {
            level: VectorField(
                field=self.coarse_field if level == "coarse" else self.fine_field,
                option=f"{level}_field in the source of {self.image}",
                layer=self.layer,
                layer_option=f"layer in the source of {self.image}",
                shared=(self.coarse if level == "coarse" else self.fine) in shared,
            )
            for level in ("coarse", "fine")
        }


class DataConfig(_Strict):
    """Where the training data comes from: a registered dataset or explicit sources.

    Attributes
    ----------
    align_labels : bool
        Resample label rasters that are not on their image's grid (another CRS, pixel
        size or extent) onto it with nearest neighbour, as ``geoseg evaluate --align``
        does; image pixels the labels do not reach are unlabelled. Off: such labels are
        an error.
    """

    dataset: str | None = None
    sources: tuple[Source, ...] = ()
    align_labels: bool = False

    @model_validator(mode="after")
    def _one(self) -> DataConfig:
        if (self.dataset is None) == (not self.sources):
            raise ValueError("give either 'dataset' (a registered name) or a list of 'sources'")
        return self


class SplitConfig(_Strict):
    """Spatial split into train / validation / test blocks.

    With ``checkerboard: N`` the scene is cut into N x N blocks and the blocks where
    ``(row // N + col // N)`` is odd form the test set, never seen before the final
    test. Of the remaining blocks, every ``val_every``-th is held out for validation
    and model selection; with ``validation: stratified`` the held-out blocks (the same
    ``1 / val_every`` of the labelled pixels) are chosen so that every class has about
    that share of its pixels in them, so rare classes are validated too (see
    :func:`geoseg.labelled.stratified_validation`).
    """

    checkerboard: int | None = Field(default=None, ge=16)
    block: int = Field(default=128, ge=16)
    val_every: int = Field(default=5, ge=2)
    validation: Literal["every", "stratified"] = "every"

    @property
    def block_size(self) -> int:
        """Side of a split block in pixels."""
        return self.checkerboard or self.block


class AugmentConfig(_Strict):
    """Training augmentation, applied to normalised patches.

    Attributes
    ----------
    dihedral : bool
        Random 90-degree rotations and flips (the 8 symmetries of the square).
    brightness : float
        Per-band additive shift, uniform in ``[-brightness, brightness]`` (in units of
        the band's standard deviation).
    contrast : float
        Per-band gain, uniform in ``[1 - contrast, 1 + contrast]``.
    noise : float
        Standard deviation of additive Gaussian pixel noise.
    class_mix : float
        Probability that a patch gets ClassMix (Olsson et al., 2021): the pixels of some
        classes of another patch of the batch, with their labels, are pasted onto it.
        Classes then appear in contexts the few training examples of a rare class never
        show (a pond among houses, not only the one reservoir in the hills), so the
        model has to recognise them by what they look like.
    class_mix_classes : {"half", "rare"}
        Which classes of the source patch are pasted: a random half of them (ClassMix
        as published), or one, drawn with probability proportional to the inverse of
        its training frequency (mostly a rare class, leaving the patch's own context).
    copy_paste : float
        Probability that a patch gets small blobs of the ``copy_paste_classes`` pasted
        onto it (copy-paste augmentation, Ghiasi et al., 2021): 1 to
        ``copy_paste_blobs`` blobs, each a random disc of radius ``copy_paste_radius``
        cut from the class's own pixels in a training block (image and labels), at a
        random place in the patch. It teaches the network that such a class is what
        its pixels look like, at any size and in any surroundings (trained on one
        large reservoir, a network otherwise labels a small patch of the same water by
        its surroundings). On Zion it did that, yet lowered the test score (README).
        Meant for classes defined by what is on the ground (water, snow), not for
        classes defined by their context (developed open space, wetlands).
    copy_paste_classes : list of str or int
        The pasted classes, by name or code (coarse or fine).
    copy_paste_blobs : int
        Most blobs pasted onto one patch.
    copy_paste_radius : tuple of float
        Smallest and largest blob radius in pixels (at most 8).
    mosaic : int
        Side of the mosaic each training sample is made of, in patches (1: off). With
        ``mosaic: k`` a sample is ``k`` x ``k`` patches, each cut inside its own training
        block and augmented on its own, side by side: ``k * patch_size`` pixels a side
        (``batch_size`` counts samples, so ``batch_size: 4`` with ``mosaic: 2`` shows the
        network as many labelled pixels per step as 16 single patches). Patches cut
        inside single split blocks otherwise end in the network's zero padding, while at
        prediction every pixel has real neighbours; in a mosaic most of each patch's
        surroundings are image, other land cover, as at prediction (mosaic augmentation,
        Bochkovskiy et al., 2020).
    """

    dihedral: bool = True
    brightness: float = Field(default=0.1, ge=0)
    contrast: float = Field(default=0.1, ge=0, lt=1)
    noise: float = Field(default=0.02, ge=0)
    class_mix: float = Field(default=0.0, ge=0, le=1)
    class_mix_classes: Literal["half", "rare"] = "half"
    copy_paste: float = Field(default=0.0, ge=0, le=1)
    copy_paste_classes: tuple[str | int, ...] = ()
    copy_paste_blobs: int = Field(default=4, ge=1)
    copy_paste_radius: tuple[float, float] = (0.8, 3.0)
    mosaic: int = Field(default=1, ge=1, le=8)

    @model_validator(mode="after")
    def _copy_paste(self) -> AugmentConfig:
        lo, hi = self.copy_paste_radius
        if not 0 < lo <= hi <= 8:
            raise ValueError(
                f"copy_paste_radius {list(self.copy_paste_radius)} must be two radii "
                "0 < smallest <= largest <= 8 (pixels)"
            )
        if self.copy_paste > 0 and not self.copy_paste_classes:
            raise ValueError("copy_paste needs copy_paste_classes: the classes to paste")
        return self


class TrainParams(_Strict):
    """Optimisation settings.

    ``halo: null`` (the default) measures the bundle's halo after training: the
    smallest multiple of the output stride, up to ``max_halo``, at which tiled inference
    (with tiles of ``min(tile_size, 256)``, so there are many seams to measure, and the
    default inference precision) labels
    the largest training image as whole-image inference does on 99.99 % of its pixels
    (see :mod:`geoseg.calibrate`). ``tile_size`` is the bundle's recommended tile.

    ``tune_decode_bias`` tunes per-class logit offsets on the validation blocks after
    training (see :func:`geoseg.calibrate.tune_decode_bias`) and stores them in the
    bundle, where they move the decision thresholds that imbalance training shifted.

    ``pixel_head_loss`` weights the auxiliary loss of a model's per-pixel head
    (``model.pixel_head``) scored on its own, which keeps it a spectral classifier in its
    own right rather than a correction of the contextual heads.

    ``jaccard_weight`` adds a soft-Jaccard (differentiable IoU) term per level to the
    cross-entropy, weighted so: it favours the mIoU of rare classes.

    ``ema`` keeps an exponential moving average of the weights (and BatchNorm
    statistics) with that decay per step; the average, not the raw weights, is
    validated, selected and saved. Averaging the last few hundred steps smooths the
    noise of small batches on imbalanced data (Polyak averaging).

    ``refit`` retrains, once the epoch has been chosen on the validation blocks, the
    same recipe from scratch on the training *and* validation blocks (the test blocks
    stay unseen) and keeps its weights at the chosen epoch of the same schedule; the
    decision offsets are the selection run's (nothing is left to tune them on). The
    selection run's bundle is kept beside the output as ``<out>.selection``.

    ``context_pad`` mirror-pads every training patch (and every validation block) by
    that many pixels of itself on each side, a multiple of the output stride; the loss
    and the scores cover the patch only (the decoder skips the margin, as it skips a
    tile's halo). Patches are cut inside single split blocks, so without it every
    training pixel near a block edge sees the network's zero padding, while at
    prediction it sees real neighbours, or at the scene edge the mirror image.

    ``encoder_weights`` starts the encoder from the weights in a local file (a
    pretrained ``model.encoder`` of the same name: ImageNet weights saved from
    torchvision or timm, a remote-sensing checkpoint); nothing is downloaded. The rest
    of the network starts from its seeded random initialisation. See
    :mod:`geoseg.pretrained` (name matching, the first convolution adapted to the band
    count). ``init_from`` fine-tunes a trained bundle instead: every tensor of its
    network that fits the configured one is copied (the heads of a taxonomy with other
    classes start afresh); the statistics are the new data's
    (:func:`geoseg.pretrained.load_bundle_weights`).

    ``precision: auto`` trains under bfloat16 autocast where the device runs it natively
    (CUDA with bf16, or a CPU with AVX512-BF16/AMX), else in float32. ``sampling:
    class_balanced`` draws training blocks in proportion to the sum of their pixels'
    inverse class frequency raised to ``balance_power`` (0 = by labelled pixel count).
    """

    epochs: int = Field(default=30, ge=1)
    steps_per_epoch: int = Field(default=100, ge=1)
    batch_size: int = Field(default=16, ge=1)
    patch_size: int = Field(default=128, ge=32)
    context_pad: int = Field(default=0, ge=0)
    lr: float = Field(default=2e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    fine_loss_weight: float = Field(default=1.0, ge=0)
    jaccard_weight: float = Field(default=0.0, ge=0)
    pixel_head_loss: float = Field(default=1.0, ge=0)
    class_weighting: Literal["none", "inverse_sqrt", "inverse"] = "inverse_sqrt"
    sampling: Literal["labelled", "class_balanced"] = "class_balanced"
    balance_power: float = Field(default=0.5, ge=0, le=1)
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"
    ema: float | None = Field(default=None, gt=0, lt=1)
    augment: AugmentConfig = AugmentConfig()
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    channels_last: bool = True
    patience: int = Field(default=10, ge=1)
    seed: int = 0
    device: str = "auto"
    tile_size: int = Field(default=512, ge=32)
    halo: int | None = Field(default=None, ge=0)
    max_halo: int = Field(default=256, ge=0)
    tune_decode_bias: bool = True
    refit: bool = False
    encoder_weights: Path | None = None
    init_from: Path | None = None

    @model_validator(mode="after")
    def _one_start(self) -> TrainParams:
        if self.encoder_weights is not None and self.init_from is not None:
            raise ValueError(
                "give train.encoder_weights (a pretrained encoder) or train.init_from (a "
                "trained bundle to fine-tune), not both"
            )
        return self


class TrainConfig(_Strict):
    """A whole training run.

    ``bands`` lists the input bands in model order, by name (the file's band
    descriptions) or by 1-based index (``3`` is ``band3``: the file's third band); the
    bundle records them, and prediction matches them the same way.

    ``normalized_differences`` adds, per pair of band names ``[a, b]``, the channel
    ``(a - b) / (a + b)`` (e.g. ``[B5, B4]`` is NDVI and ``[B3, B5]`` NDWI for Landsat 8);
    the bundle records the pairs and inference computes them the same way.
    """

    name: str
    taxonomy: Path
    data: DataConfig
    bands: tuple[str, ...] | None = None
    normalized_differences: tuple[tuple[str, str], ...] = ()

    @field_validator("bands", mode="before")
    @classmethod
    def _band_indexes(cls, value: Any) -> Any:
        """A 1-based index ``K`` is band ``bandK`` (see :func:`geoseg.raster.band_index`)."""
        if not isinstance(value, list | tuple):
            return value
        out = []
        for b in value:
            if isinstance(b, int) and not isinstance(b, bool):
                if b < 1:
                    raise ValueError(f"band index {b} is not 1-based: the first band is 1")
                b = f"band{b}"
            out.append(b)
        return out

    def input_files(self) -> tuple[Path, ...]:
        """The files a run of this config reads: the taxonomy and every source raster.

        (A registered dataset's files live in the data cache.) An output path may be
        none of them, nor a folder that holds one.
        """
        files = [self.taxonomy]
        files += [p for p in (self.train.encoder_weights, self.train.init_from) if p is not None]
        for s in self.data.sources:
            files += [p for p in (s.image, s.coarse, s.fine, s.mask) if p is not None]
        return tuple(files)

    def source_masks(self) -> list[tuple[Path, str | int | list[int]] | None]:
        """Each source's :meth:`Source.mask_spec` (a registered dataset's: none)."""
        if self.data.dataset:
            return [None]
        return [s.mask_spec() for s in self.data.sources]

    def vector_fields(self) -> list[dict[str, VectorField]]:
        """Each source's :meth:`Source.vector_fields` (a registered dataset's: none)."""
        if self.data.dataset:
            return [{}]
        used = Counter(
            p
            for s in self.data.sources
            for p in {s.coarse, s.fine}
            if p is not None and is_vector(p)
        )
        shared = frozenset(p for p, n in used.items() if n > 1)
        return [s.vector_fields(shared) for s in self.data.sources]

    def source_roles(self) -> list[str]:
        """The ``role`` of each source, in order (a registered dataset: ``blocks``)."""
        return ["blocks"] if self.data.dataset else [s.role for s in self.data.sources]

    @model_validator(mode="after")
    def _differences(self) -> TrainConfig:
        seen = set()
        for a, b in self.normalized_differences:
            if a == b:
                raise ValueError(f"normalized difference of {a!r} with itself is always 0")
            if (a, b) in seen:
                raise ValueError(f"normalized difference ({a}, {b}) is listed twice")
            seen.add((a, b))
            missing = [n for n in (a, b) if self.bands is not None and n not in self.bands]
            if missing:
                raise ValueError(
                    f"normalized difference names band {missing[0]!r}, not one of bands "
                    f"{', '.join(self.bands or ())}"
                )
        return self

    split: SplitConfig = SplitConfig()
    model: ModelConfig = ModelConfig()
    train: TrainParams = TrainParams()

    @model_validator(mode="after")
    def _stride_multiples(self) -> TrainConfig:
        """Tile size and halo are multiples of the output stride (checked before training)."""
        stride = self.model.output_stride
        for name, value in (
            ("tile_size", self.train.tile_size),
            ("halo", self.train.halo),
            ("context_pad", self.train.context_pad),
        ):
            if value is not None and value % stride:
                ok = (
                    max(stride, value // stride * stride)
                    if name == "tile_size"
                    else (value // stride * stride)
                )
                raise ValueError(
                    f"train.{name} {value} is not a multiple of the model's output stride "
                    f"{stride} (2 ** model.encoder_depth): use e.g. {ok}"
                )
        return self


def _check_encoder(name: str, path: Path) -> None:
    """Refuse an encoder segmentation-models-pytorch cannot build, naming close ones.

    Known: smp's own encoders, the ``timm-`` names it maps to timm's, and ``tu-NAME``
    for any timm model ``NAME``.
    """
    import timm
    from segmentation_models_pytorch.encoders import encoders, is_equivalent_to_timm_universal

    if name in encoders or is_equivalent_to_timm_universal(name):
        return
    if name.startswith("tu-"):
        if timm.is_model(name[3:]):
            return
        close = difflib.get_close_matches(name[3:], timm.list_models(), n=3, cutoff=0.6)
        close = [f"tu-{c}" for c in close]
    else:
        close = difflib.get_close_matches(name, list(encoders), n=3, cutoff=0.6)
    hint = (
        f"did you mean {', '.join(close[:-1]) + ' or ' if len(close) > 1 else ''}{close[-1]}?"
        if close
        else "e.g. resnet18, resnet34, mobilenet_v2 or efficientnet-b0"
    )
    raise ConfigError(
        f"{path}: model.encoder {name!r} is not an encoder segmentation-models-pytorch "
        f"knows ({hint}); its documentation lists them (and tu-NAME takes any timm model)"
    )


_GLOB = re.compile(r"[*?\[]")


def _under(base: Path, p: Path | None) -> Path | None:
    """``p`` resolved against the config's folder ``base`` (an absolute path stays)."""
    return None if p is None else base / p


def _expand_source(
    source: Source, base: Path, config: Path
) -> list[tuple[Path, Path | None, Path | None, Path | None]]:
    """``(image, coarse, fine, mask)`` of each image a source names, resolved against ``base``.

    ``image`` is a glob pattern when the config's text has ``*``, ``?`` or ``[`` and no
    file has that very name (the folder of the config is never read as a pattern). The
    label paths of a pattern's images fill in ``{stem}`` (the image's file name without
    its extension), ``{name}`` (with it) and ``{match}`` (what the pattern's one ``*``
    matched: ``r3_c7`` of ``r3_c7_img.tif`` for ``*_img.tif``).

    Raises
    ------
    ConfigError
        The pattern matches no file, its label paths name no ``{stem}``/``{name}`` (every
        image would take the same label raster), a path has another ``{...}`` field,
        ``{match}`` with a pattern of more than one wildcard, or the labels of a single
        image name a field.
    """
    image = base / source.image  # an absolute image stays itself
    # label and mask paths as written (templates of a pattern)
    raw = (source.coarse, source.fine, source.mask)
    named = [lab for lab in raw if lab is not None and re.search(r"{(stem|name|match)}", str(lab))]
    # one vector file may label every image of a pattern: it is burnt onto each one's grid
    shared = [lab for lab in raw if lab is not None and lab not in named and is_vector(lab)]
    if not _GLOB.search(str(source.image)) or image.is_file():
        for lab in named:
            if not (label := base / lab).exists():
                raise ConfigError(
                    f"{config}: label or mask file {label} names {{stem}}, {{name}} or {{match}}, "
                    f"which are filled in only for an image pattern, and {source.image} is "
                    "one file: give the label file's own name, or a pattern such as img/*.tif"
                )
        return [(image, _under(base, raw[0]), _under(base, raw[1]), _under(base, raw[2]))]
    for template in raw:
        if template is not None and template not in named and template not in shared:
            raise ConfigError(
                f"{config}: source image {source.image} is a pattern, so its label or mask "
                f"raster {template} must name each image's own file with {{stem}}, {{name}} or "
                "{match} (e.g. masks/{stem}.tif, or masks/{match}_lbl.tif for *_img.tif)"
            )
    pattern = (
        str(source.image)
        if source.image.is_absolute()
        else str(Path(glob.escape(str(base))) / source.image)
    )
    labels = {(base / lab).resolve() for lab in shared}  # data/* matches them too
    found = sorted(
        Path(p) for p in glob.glob(pattern) if Path(p).is_file() and Path(p).resolve() not in labels
    )
    if not found:
        raise ConfigError(
            f"{config}: source image pattern {image} matches no file: check the folder and "
            "the pattern (relative paths are relative to the config; {a,b} alternatives "
            "are not patterns: give a source for each)"
        )

    wild = re.split(r"(\*)", str(source.image))  # the pattern as written, not its folder
    lead = "" if source.image.is_absolute() else re.escape(str(base) + "/")
    matcher = (
        re.compile(lead + "".join("([^/]*)" if w == "*" else re.escape(w) for w in wild))
        if wild.count("*") == 1 and not re.search(r"[?\[]", str(source.image))
        else None
    )
    if matcher is None and any("{match}" in str(lab) for lab in named):
        raise ConfigError(
            f"{config}: label raster {{match}} stands for what the image pattern's one * "
            f"matched, and {source.image} has {wild.count('*')} * (or ? or [...]): use "
            "{stem} or {name}, or a pattern with one *"
        )

    def fill(label: Path | None, img: Path) -> Path | None:
        if label is None:
            return None
        hit = matcher.fullmatch(str(img)) if matcher is not None else None
        try:
            text = str(label).format(
                stem=img.stem, name=img.name, match=hit.group(1) if hit else ""
            )
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"{config}: label raster {label} of pattern {source.image}: only {{stem}}, "
                f"{{name}} and {{match}} can be filled in ({exc!r})"
            ) from None
        return _under(base, Path(text))

    from geoseg.raster import is_remote

    expanded = [(img, fill(raw[0], img), fill(raw[1], img), fill(raw[2], img)) for img in found]
    for img, *files in expanded:
        for template, path in zip(raw, files, strict=True):
            if template not in named or path is None or is_remote(path):
                continue
            if not path.exists():
                raise ConfigError(
                    f"{config}: {path} not found: the label or mask file {template} of image "
                    f"{img} (pattern {source.image}): check the pattern's {{stem}}, {{name}} or "
                    "{match} (stem is the image's name without extension), or move the image "
                    "out of the pattern's folder"
                )
    return expanded


def load_train_config(path: str | Path) -> TrainConfig:
    """Load a training config YAML, resolving relative paths against its folder."""
    path = Path(path)
    raw = read_yaml(path, "config")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a training config must be a mapping")
    return train_config_from_dict(raw, base=path.resolve().parent, source=path)


def train_config_from_dict(
    raw: Mapping[str, Any], *, base: str | Path | None = None, source: str | Path = "config"
) -> TrainConfig:
    """Validate a training config given as a mapping (a YAML file's contents).

    Parameters
    ----------
    raw : Mapping
        The config's fields, as in a YAML config file.
    base : str or Path, optional
        Folder that relative paths (taxonomy, images, labels, weights) are relative to;
        default: the current folder.
    source : str or Path
        What the config is called in error messages (its file, where it has one).

    Raises
    ------
    ConfigError
        A field is missing, unknown or invalid; the message names it.
    """
    try:
        cfg = TrainConfig.model_validate(dict(raw))
    except ValidationError as exc:
        raise ConfigError(f"{source}: {validation_message(exc.errors(), 'config')}") from None
    _check_encoder(cfg.model.encoder, Path(source))
    base = Path.cwd() if base is None else Path(base).resolve()  # recorded paths are absolute
    path = Path(source)

    sources = tuple(
        s.model_copy(update={"image": image, "coarse": coarse, "fine": fine, "mask": mask})
        for s in cfg.data.sources
        for image, coarse, fine, mask in _expand_source(s, base, path)
    )
    return cfg.model_copy(
        update={
            "taxonomy": _under(base, cfg.taxonomy),
            "data": cfg.data.model_copy(update={"sources": sources}),
            "train": cfg.train.model_copy(
                update={
                    "encoder_weights": _under(base, cfg.train.encoder_weights),
                    "init_from": _under(base, cfg.train.init_from),
                }
            ),
        }
    )
