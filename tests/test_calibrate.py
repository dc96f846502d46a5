"""Decision offsets tuned on validation logits (``geoseg.calibrate.tune_decode_bias``)."""

from __future__ import annotations

import numpy as np
import torch

import geoseg.calibrate as calibrate
from geoseg.hierarchy import HierarchyIndex
from geoseg.taxonomy import Taxonomy

TAXONOMY = Taxonomy.from_dict(
    {
        "name": "t",
        "coarse": [{"code": 1, "name": "A"}, {"code": 2, "name": "B"}, {"code": 3, "name": "C"}],
        "fine": [
            {"code": 11, "name": "A1", "parent": 1},
            {"code": 12, "name": "A2", "parent": 1},
            {"code": 21, "name": "B1", "parent": 2},
            {"code": 31, "name": "C1", "parent": 3},
        ],
    }
)


def _logits(n: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Noisy logits that favour each pixel's true class, with coarse class B (and its
    child B1) pushed down by 1.5: argmax decoding then misses much of B."""
    g = torch.Generator().manual_seed(seed)
    yf = torch.randint(0, 4, (n,), generator=g)
    yc = torch.tensor([0, 0, 1, 2])[yf]
    cl = torch.randn(n, 3, generator=g) + 2.0 * torch.nn.functional.one_hot(yc, 3)
    fl = torch.randn(n, 4, generator=g) + 2.0 * torch.nn.functional.one_hot(yf, 4)
    cl[:, 1] -= 1.5
    fl[:, 2] -= 1.5
    yf[:50] = -1  # a few pixels labelled at the coarse level only
    return cl, fl, yc, yf


def test_offsets_move_a_suppressed_class_back_and_raise_the_score() -> None:
    index = HierarchyIndex.from_taxonomy(TAXONOMY)
    bias = calibrate.tune_decode_bias(*_logits(20_000), index)
    assert bias.coarse[1] >= 1.0  # B's logit is raised again
    assert bias.score_after > bias.score_before + 0.01
    # a class with too few validation pixels gets no offset
    cl, fl, yc, yf = _logits(20_000)
    keep = (yc != 2) | (torch.arange(yc.numel()) < 300)  # 300 pixels of C < min_pixels
    few = calibrate.tune_decode_bias(cl[keep], fl[keep], yc[keep], yf[keep], index)
    assert few.coarse[2] == 0.0 and few.fine[3] == 0.0


def test_offsets_are_the_same_when_scored_in_chunks(monkeypatch) -> None:
    """The validation pixels are decoded a chunk at a time (memory): same offsets and
    scores, to the last digit, as decoding all of them at once."""
    index = HierarchyIndex.from_taxonomy(TAXONOMY)
    data = _logits(50_000, seed=1)
    monkeypatch.setattr(calibrate, "SCORE_CHUNK", 1 << 30)
    whole = calibrate.tune_decode_bias(*data, index)
    monkeypatch.setattr(calibrate, "SCORE_CHUNK", 7_001)
    assert calibrate.tune_decode_bias(*data, index) == whole


def test_calibration_window_is_the_most_valid_part_of_a_large_scene() -> None:
    valid = np.ones((300, 500), bool)
    valid[:, :260] = False  # a footprint border: the left half is nodata
    rows, cols = calibration = calibrate.calibration_window(valid, side=128)
    assert (rows.stop - rows.start, cols.stop - cols.start) == (128, 128)
    assert valid[calibration].all()
    assert cols.start >= 260
    # of equally valid windows, the most central one
    rows, cols = calibrate.calibration_window(np.ones((300, 500), bool), side=128)
    assert (rows.start, cols.start) == (64, 192)
    # a scene that fits is measured whole
    assert calibrate.calibration_window(valid[:100, :120], side=128) == (
        slice(0, 100),
        slice(0, 120),
    )


def test_calibration_window_counts_every_pixel() -> None:
    """Thin scenes and valid data in a few edge rows: the window holds the most valid
    pixels there are (counted exactly, not on a subsample)."""
    thin = np.zeros((5000, 4), bool)
    thin[:1500] = True
    rows, cols = calibrate.calibration_window(thin, side=2048)
    assert thin[rows, cols].sum() == 6000
    edge = np.zeros((4100, 100), bool)
    edge[-7:] = True
    rows, cols = calibrate.calibration_window(edge, side=2048)
    assert edge[rows, cols].sum() == 700
