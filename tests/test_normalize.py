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


def test_apply_normalises_in_float32_and_leaves_its_input_alone() -> None:
    rng = np.random.default_rng(0)
    norm = Normalization(mean=(100.0, 2000.0), std=(10.0, 300.0))
    raw = rng.integers(0, 4000, size=(2, 5, 7)).astype(np.uint16)
    expected = (raw.astype(np.float32) - np.float32([[[100.0]], [[2000.0]]])) / np.float32(
        [[[10.0]], [[300.0]]]
    )
    out = norm.apply(raw)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)
    as_float = raw.astype(np.float32)
    kept = as_float.copy()
    np.testing.assert_array_equal(norm.apply(as_float), expected)
    np.testing.assert_array_equal(as_float, kept)  # a float32 input is not normalised in place


def test_training_statistics_of_a_large_scene_are_gathered_in_chunks(monkeypatch) -> None:
    """Above ``STATS_CHUNK`` training pixels a scene is fed to the statistics in bands
    of rows (bounded memory): the same mean and spread; below it, one pass as before."""
    import geoseg.train as train_mod

    rng = np.random.default_rng(1)
    image = rng.integers(0, 5000, size=(3, 120, 90)).astype(np.uint16)
    sel = rng.random((120, 90)) < 0.4
    whole = RunningStats(4)
    whole.update(add_differences(image[:, sel], [(0, 1)]))
    monkeypatch.setattr(train_mod, "STATS_CHUNK", 500)
    calls = []
    chunked = RunningStats(4)
    real = chunked.update
    monkeypatch.setattr(chunked, "update", lambda px: (calls.append(px.shape[1]), real(px)))
    train_mod._add_training_pixels(chunked, image, sel, [(0, 1)])
    assert len(calls) > 5 and max(calls) <= 600 and sum(calls) == sel.sum()
    np.testing.assert_allclose(chunked.mean, whole.mean, rtol=1e-12)
    np.testing.assert_allclose(chunked.m2, whole.m2, rtol=1e-9)
    assert chunked.n == whole.n
