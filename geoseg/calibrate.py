"""Settings derived from the trained model: the halo, and decision offsets per class.

**Halo.** The context a tile needs to be seamless.

A tile's core is only as good as the context around it: a pixel's label depends on
every input pixel within the network's receptive field, and near a tile edge part of
that field is missing. The theoretical receptive field of a deep encoder-decoder is
hundreds of pixels, but the *effective* one is much smaller, so the halo is measured
rather than computed: the scene is labelled whole (one tile) and tiled with halos of
growing multiples of the output stride, and the smallest halo whose labels agree with
the whole-image labels on at least ``target`` of the valid pixels is the bundle's
default (every multiple of the stride is tried, in the predictor's precision:
bfloat16 needs more context than float32 for the same agreement). Only images are
used, never labels.

**Decision offsets.** See :func:`tune_decode_bias`: tuned on validation pixels only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from geoseg.hierarchy import HierarchyIndex
from geoseg.predict import Predictor, predict_array


@dataclass(frozen=True)
class HaloCalibration:
    """The result of :func:`calibrate_halo`.

    Attributes
    ----------
    halo : int
        The chosen halo (the smallest candidate reaching ``target``, else the largest).
    tile_size : int
        Tile size the halos were measured at.
    target : float
        Required fraction of pixels labelled as in whole-image inference.
    agreement : dict
        Halo -> fraction of valid pixels whose coarse and fine labels match.
    """

    halo: int
    tile_size: int
    target: float
    agreement: dict[int, float] = field(default_factory=dict)

    @property
    def reached(self) -> bool:
        """Whether the chosen halo reaches the target (else it is the largest tried)."""
        return self.agreement.get(self.halo, 1.0) >= self.target

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (stored in ``bundle.json``)."""
        return {
            "halo": self.halo,
            "tile_size": self.tile_size,
            "target": self.target,
            "agreement_with_whole_image": {str(k): round(v, 6) for k, v in self.agreement.items()},
        }


def label_agreement(a: np.ndarray, b: np.ndarray, valid: np.ndarray) -> float:
    """Fraction of ``valid`` pixels where bands 1 and 2 (coarse, fine) of ``a`` and ``b`` match."""
    same = (a[0] == b[0]) & (a[1] == b[1])
    n = int(valid.sum())
    return float(same[valid].sum() / n) if n else 1.0


def calibrate_halo(
    predictor: Predictor,
    image: np.ndarray,
    valid: np.ndarray,
    *,
    tile_size: int,
    max_halo: int = 256,
    target: float = 0.9999,
) -> HaloCalibration:
    """Measure the smallest halo at which tiled labels equal whole-image labels.

    Parameters
    ----------
    predictor : Predictor
        The trained model.
    image, valid : numpy.ndarray
        A representative scene (``(bands, H, W)``) and its valid pixels; it should be
        larger than ``tile_size`` so that there are tile edges to measure.
    tile_size : int
        The tile size the halo is for.
    max_halo : int
        Largest halo tried; also the mirror margin of the whole-image reference.
    target : float
        Required agreement.
    """
    stride = predictor.meta.output_stride
    max_halo = max(stride, max_halo // stride * stride)
    height, width = valid.shape
    whole = math.ceil(max(height, width) / stride) * stride
    reference = predict_array(predictor, image, valid, tile_size=whole, halo=max_halo)
    agreement: dict[int, float] = {}
    chosen = max_halo
    for halo in range(stride, max_halo + 1, stride):
        tiled = predict_array(predictor, image, valid, tile_size=tile_size, halo=halo)
        agreement[halo] = label_agreement(tiled, reference, valid)
        if agreement[halo] >= target:
            chosen = halo
            break
    return HaloCalibration(chosen, tile_size, target, agreement)


@dataclass(frozen=True)
class BiasCalibration:
    """Per-class logit offsets tuned on validation pixels (see :func:`tune_decode_bias`)."""

    coarse: tuple[float, ...]
    fine: tuple[float, ...]
    score_before: float
    score_after: float

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (``bundle.json``)."""
        return {
            "coarse": [round(v, 3) for v in self.coarse],
            "fine": [round(v, 3) for v in self.fine],
            "validation_score_before": round(self.score_before, 4),
            "validation_score_after": round(self.score_after, 4),
        }


def tune_decode_bias(
    coarse_logits: torch.Tensor,
    fine_logits: torch.Tensor,
    coarse_target: torch.Tensor,
    fine_target: torch.Tensor,
    index: HierarchyIndex,
    *,
    min_pixels: int = 500,
    grid: tuple[float, ...] = (-1.5, -1.0, -0.5, -0.25, 0.25, 0.5, 1.0, 1.5),
    rounds: int = 2,
) -> BiasCalibration:
    """Tune per-class offsets of the logits that maximise the validation mIoU.

    Training against imbalance (class weights, balanced sampling) shifts the decision
    thresholds between classes; adding an offset per class to its logit before
    decoding moves them back to where the mean of the coarse and fine mIoU on the
    validation pixels is highest (coordinate ascent over a small grid). Only classes
    with at least ``min_pixels`` validation pixels get an offset, so a handful of
    pixels cannot steer the decision. The test set is never used.

    Parameters
    ----------
    coarse_logits, fine_logits : torch.Tensor
        ``(N, n_coarse)`` and ``(N, n_fine)`` logits of the validation pixels.
    coarse_target, fine_target : torch.Tensor
        ``(N,)`` class indices, ``-1`` where unlabelled.
    index : HierarchyIndex
        The taxonomy's index tensors.
    min_pixels : int
        Validation pixels a class needs to get an offset.
    grid : tuple of float
        Steps tried around the current offset.
    rounds : int
        Passes over the classes.
    """
    from geoseg.hierarchy import decode
    from geoseg.metrics import confusion_matrix, fine_confusion_matrix, scores

    n_c, n_f = coarse_logits.shape[1], fine_logits.shape[1]
    cl = coarse_logits.float()[:, :, None, None]
    fl = fine_logits.float()[:, :, None, None]

    def score(bc: torch.Tensor, bf: torch.Tensor) -> float:
        c, f, _ = decode(cl + bc[None, :, None, None], fl + bf[None, :, None, None], index)
        parts = [scores(confusion_matrix(coarse_target.numpy(), c.flatten().numpy(), n_c))["miou"]]
        if n_f:
            cm = fine_confusion_matrix(
                fine_target.numpy(), f.flatten().numpy(), c.flatten().numpy(), n_f,
                leaf_column=bool(index.childless.numel()),
            )  # fmt: skip
            parts.append(scores(cm, scored=n_f)["miou"])
        vals = [v for v in parts if not math.isnan(v)]
        return float(np.mean(vals)) if vals else 0.0

    bc, bf = torch.zeros(n_c), torch.zeros(n_f)
    before = best = score(bc, bf)
    counts_c = torch.bincount(coarse_target[coarse_target >= 0], minlength=n_c)
    counts_f = torch.bincount(fine_target[fine_target >= 0], minlength=max(n_f, 1))[:n_f]
    params = [(bc, i) for i in range(n_c) if counts_c[i] >= min_pixels]
    params += [(bf, i) for i in range(n_f) if counts_f[i] >= min_pixels]
    for _ in range(rounds):
        improved = False
        for vec, i in params:
            start = float(vec[i])
            best_v = start
            for step in grid:
                vec[i] = start + step
                s = score(bc, bf)
                if s > best + 1e-6:
                    best, best_v, improved = s, start + step, True
            vec[i] = best_v
        if not improved:
            break
    return BiasCalibration(tuple(bc.tolist()), tuple(bf.tolist()), before, best)
