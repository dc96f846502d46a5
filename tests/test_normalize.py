"""Normalisation statistics and normalised-difference channels."""

from __future__ import annotations

import numpy as np
import pytest

from geoseg.errors import RasterFormatError
from geoseg.normalize import Normalization, RunningStats, add_differences


def test_differences_are_zero_where_the_bands_sum_to_zero_and_stay_in_range() -> None:
    nir = np.array([[0.3, 0.0, 0.2, -0.01]], dtype=np.float32)
    red = np.array([[0.1, 0.0, 0.2, 0.0101]], dtype=np.float32)
    out = add_differences(np.stack([red, nir]), [(1, 0)])
    assert out.shape == (3, 1, 4) and np.isfinite(out).all()
    np.testing.assert_allclose(out[2, 0, :3], [0.5, 0.0, 0.0], atol=1e-6)
    assert out[2, 0, 3] == -1.0  # signed values cancelling: clipped, not -200


def test_statistics_cover_differences_and_refuse_non_finite_values() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.uniform(100, 1000, size=(2, 500)).astype(np.float32)
    pixels[:, :50] = 0  # a zero-filled border counted as valid
    stats = RunningStats(3)
    stats.update(add_differences(pixels, [(0, 1)]))
    norm = stats.result([(0, 1)])
    assert norm.channels == 3 and norm.differences == ((0, 1),)
    assert np.isfinite(norm.mean).all() and np.isfinite(norm.std).all()
    x = norm.apply(pixels[:, None, :], np.ones((1, 500), dtype=bool))
    assert x.shape == (3, 1, 500) and np.isfinite(x).all()
    bad = RunningStats(1)
    bad.update(np.array([[1.0, np.nan]]))
    with pytest.raises(RasterFormatError, match=r"channel 1 .*non-finite"):
        bad.result()


def test_old_bundle_statistics_have_no_differences() -> None:
    norm = Normalization.model_validate({"mean": [1.0, 2.0], "std": [1.0, 1.0]})
    assert norm.differences == () and norm.channels == 2
