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


#: Largest side of the window of a scene that the halo is measured on.
CALIBRATION_SIDE = 2048


def calibration_window(valid: np.ndarray, side: int | None = None) -> tuple[slice, slice]:
    """The part of a scene to measure the halo on: at most ``side`` x ``side`` pixels.

    ``side`` defaults to :data:`CALIBRATION_SIDE`.

    :func:`calibrate_halo` labels its image whole, in one pass whose memory grows with
    the image (about 5.5 GB for 4096² with the Zion network) and then once per halo
    tried, so a large training scene is measured on a window of it: of the windows at
    every half ``side`` step (and flush with the scene's far edges), the one with the
    most valid pixels (the most central of equals). A scene that fits is measured whole.

    Examples
    --------
    >>> calibration_window(np.ones((100, 60), bool), side=64)
    (slice(32, 96, None), slice(0, 60, None))
    >>> calibration_window(np.ones((50, 60), bool), side=64)
    (slice(0, 50, None), slice(0, 60, None))
    """
    side = CALIBRATION_SIDE if side is None else side
    height, width = valid.shape
    h, w = min(side, height), min(side, width)
    step = max(side // 2, 1)
    rows = sorted({*range(0, height - h + 1, step), height - h})
    cols = sorted({*range(0, width - w + 1, step), width - w})
    if len(rows) * len(cols) == 1:
        return slice(0, h), slice(0, w)

    def count(r: int, c: int) -> int:  # exact: a few dozen windows even for 10000²
        return int(np.count_nonzero(valid[r : r + h, c : c + w]))

    centre = ((height - h) / 2, (width - w) / 2)
    best = max(
        ((r, c) for r in rows for c in cols),
        key=lambda rc: (count(*rc), -abs(rc[0] - centre[0]) - abs(rc[1] - centre[1])),
    )
    return slice(best[0], best[0] + h), slice(best[1], best[1] + w)


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


#: Validation pixels decoded at once while tuning decision offsets.
SCORE_CHUNK = 1 << 18


#: Validation pixels a class needs to get a decision offset (see :func:`tune_decode_bias`).
MIN_CLASS_PIXELS = 500


def tune_decode_bias(
    coarse_logits: torch.Tensor,
    fine_logits: torch.Tensor,
    coarse_target: torch.Tensor,
    fine_target: torch.Tensor,
    index: HierarchyIndex,
    *,
    min_pixels: int = MIN_CLASS_PIXELS,
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
    n = coarse_logits.shape[0]
    leaf_column = bool(index.childless.numel())

    def score(bc: torch.Tensor, bf: torch.Tensor) -> float:
        # decoded in chunks: a large scene's validation pixels, decoded at once, took
        # several times their logits' memory (the confusion matrices simply add up)
        cm_c = np.zeros((n_c, n_c), dtype=np.int64)
        cm_f: np.ndarray | None = None
        for a in range(0, n, SCORE_CHUNK):
            cl = coarse_logits[a : a + SCORE_CHUNK].float() + bc
            fl = fine_logits[a : a + SCORE_CHUNK].float() + bf
            c, f, _ = decode(cl[:, :, None, None], fl[:, :, None, None], index)
            c_np, f_np = c.flatten().numpy(), f.flatten().numpy()
            cm_c += confusion_matrix(coarse_target[a : a + SCORE_CHUNK].numpy(), c_np, n_c)
            if n_f:
                part = fine_confusion_matrix(
                    fine_target[a : a + SCORE_CHUNK].numpy(), f_np, c_np, n_f,
                    leaf_column=leaf_column,
                )  # fmt: skip
                cm_f = part if cm_f is None else cm_f + part
        parts = [scores(cm_c)["miou"]]
        if cm_f is not None:
            parts.append(scores(cm_f, scored=n_f)["miou"])
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
