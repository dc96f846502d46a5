"""Model bundles: a directory with ``weights.safetensors`` and ``bundle.json``.

A bundle holds everything ``geoseg predict`` needs: the taxonomy, band names, the
normalisation statistics, the architecture, the output stride and the recommended
tile size and halo. Loading never unpickles anything.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from geoseg._version import __version__
from geoseg.atomic import atomic_dir
from geoseg.config import ModelConfig
from geoseg.errors import BundleError
from geoseg.normalize import Normalization
from geoseg.taxonomy import Taxonomy

if TYPE_CHECKING:
    from geoseg.model import HierarchicalSegmenter

BUNDLE_JSON = "bundle.json"
WEIGHTS = "weights.safetensors"


class DecodeBias(BaseModel):
    """Per-class offsets added to the logits before decoding (tuned on validation)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    coarse: tuple[float, ...]
    fine: tuple[float, ...]


class BundleMeta(BaseModel):
    """The contents of ``bundle.json``."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    format_version: int = 1
    name: str
    geoseg_version: str = __version__
    architecture: str
    encoder: str
    model: ModelConfig
    bands: tuple[str, ...]
    normalization: Normalization
    taxonomy: Taxonomy
    output_stride: int = Field(ge=1)
    tile_size: int = Field(ge=32)
    halo: int = Field(ge=0)
    decode_bias: DecodeBias | None = None
    #: The training images' pixel size in metres (the median over them, see
    #: :func:`geoseg.area.ground_sample_distance`); ``None`` where unknown (images
    #: without a CRS, a bundle of an earlier version).
    pixel_size: float | None = Field(default=None, gt=0)
    training: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _channels_match(self) -> BundleMeta:
        norm, n = self.normalization, len(self.bands)
        if any(not (0 <= i < n) for pair in norm.differences for i in pair):
            raise ValueError(f"normalised differences {norm.differences} name bands beyond {n}")
        if not (len(norm.mean) == len(norm.std) == n + len(norm.differences)):
            raise ValueError(
                f"normalisation has {len(norm.mean)} means and {len(norm.std)} deviations "
                f"for {n} bands and {len(norm.differences)} differences"
            )
        return self

    @property
    def band_count(self) -> int:
        """Number of input bands the model reads from a scene."""
        return len(self.bands)

    @property
    def in_channels(self) -> int:
        """Number of channels the network sees: the bands and their normalised differences."""
        return self.normalization.channels


def read_meta(path: str | Path) -> BundleMeta:
    """Read and validate ``bundle.json`` of the bundle directory ``path``."""
    path = Path(path)
    if not path.is_dir():
        what = "is a file, not a model bundle" if path.exists() else "model bundle not found"
        raise BundleError(f"{path}: {what}: pass a directory made by 'geoseg train'")
    meta_path = path / BUNDLE_JSON
    if not meta_path.is_file():
        raise BundleError(
            f"{path}: not a model bundle (no {BUNDLE_JSON}): "
            "pass a directory made by 'geoseg train'"
        )
    if not (path / WEIGHTS).is_file():
        raise BundleError(
            f"{path}: bundle has no {WEIGHTS}: the bundle is incomplete, re-export it"
        )
    try:
        return BundleMeta.model_validate_json(meta_path.read_text())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "top level"
        raise BundleError(
            f"{meta_path}: invalid bundle metadata at {where}: {first['msg']}: the file "
            "was edited or cut short; restore it from where the bundle came from, or train "
            "the bundle again"
        ) from None


def bundle_hash(path: str | Path) -> str:
    """SHA-256 over ``bundle.json`` and the weights: identifies a bundle in caches and logs."""
    h = hashlib.sha256()
    for name in (BUNDLE_JSON, WEIGHTS):
        with open(Path(path) / name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def build_model(meta: BundleMeta) -> HierarchicalSegmenter:
    """Build an untrained network of the bundle's architecture."""
    from geoseg.model import build_segmenter

    return build_segmenter(meta.model, in_channels=meta.in_channels, taxonomy=meta.taxonomy)


def _unreadable_weights(weights: Path, exc: Exception) -> BundleError:
    msg = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
    return BundleError(
        f"{weights}: not a readable safetensors file ({msg}): copy the bundle again, "
        "or re-export it with 'geoseg train'"
    )


def weights_summary(path: str | Path) -> tuple[int, int]:
    """``(tensors, bytes)`` of a bundle's weights, from the file's header (no tensor read).

    Raises
    ------
    BundleError
        The weights file is missing, truncated or not safetensors.
    """
    from safetensors import SafetensorError, safe_open

    weights = Path(path) / WEIGHTS
    try:
        with safe_open(str(weights), framework="numpy") as f:
            n = len(list(f.keys()))
    except (SafetensorError, OSError) as exc:
        raise _unreadable_weights(weights, exc) from None
    return n, weights.stat().st_size


def load_bundle(
    path: str | Path, *, device: str = "cpu"
) -> tuple[BundleMeta, HierarchicalSegmenter]:
    """Load a bundle: metadata and the network in eval mode on ``device``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta = read_meta(path)
    model = build_model(meta)
    weights = Path(path) / WEIGHTS
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise _unreadable_weights(weights, exc) from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        msg = str(exc).splitlines()[0]
        raise BundleError(f"{path}: weights do not match bundle.json ({msg})") from None
    return meta, model.to(device).eval()


def save_bundle(
    path: str | Path, meta: BundleMeta, model: HierarchicalSegmenter, *, overwrite: bool = False
) -> Path:
    """Write a bundle directory atomically (a temporary sibling, then a rename)."""
    from safetensors.torch import save_file

    path = Path(path)
    with atomic_dir(path, overwrite=overwrite, output="bundle") as tmp:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS), metadata={"format": "pt"})
        (tmp / BUNDLE_JSON).write_text(json.dumps(meta.model_dump(mode="json"), indent=2) + "\n")
    return path
