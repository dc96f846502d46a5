"""Deriving the halo from the model: the context a tile needs to be seamless.

A tile's core is only as good as the context around it: a pixel's label depends on
every input pixel within the network's receptive field, and near a tile edge part of
that field is missing. The theoretical receptive field of a deep encoder-decoder is
hundreds of pixels, but the *effective* one is much smaller, so the halo is measured
rather than computed: the scene is labelled whole (one tile) and tiled with halos of
growing multiples of the output stride, and the smallest halo whose labels agree with
the whole-image labels on at least ``target`` of the valid pixels is the bundle's
default (halos of 1, 2, 3, 4, 6, 8, 12, 16... strides are tried). Only images are
used, never labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

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
    candidates = sorted({stride * k for k in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)} | {max_halo})
    for halo in (h for h in candidates if h <= max_halo):
        tiled = predict_array(predictor, image, valid, tile_size=tile_size, halo=halo)
        agreement[halo] = label_agreement(tiled, reference, valid)
        if agreement[halo] >= target:
            chosen = halo
            break
    return HaloCalibration(chosen, tile_size, target, agreement)
