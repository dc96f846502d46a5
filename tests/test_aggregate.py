"""geoseg.aggregate: a finer class map voted onto a coarser grid, in bounded pieces."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from rasterio.windows import Window

from geoseg import aggregate
from geoseg.aggregate import Finer


class _Array:
    """A one-band reader over an array of leaf indices (``-1``: none), as rasterio reads."""

    def __init__(self, leaves: np.ndarray) -> None:
        self.leaves = leaves
        self.height, self.width = leaves.shape

    def read(self, band: int, window: Window) -> np.ndarray:
        r, c = int(window.row_off), int(window.col_off)
        return self.leaves[r : r + int(window.height), c : c + int(window.width)]


def _leaves_of(reader, win, keep):
    leaves = reader.read(1, window=win).copy()
    return leaves, (leaves + 1) * 10.0  # a weight per leaf: 10, 20, 30 ...


def test_votes_are_the_same_in_any_number_of_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    leaves = rng.integers(-1, 4, (61, 45))  # 20 x 15 pixels of 3 x 3, and a part row/column
    finer = Finer(_Array(leaves), kx=3, ky=3, col0=0, row0=1, nested=True)  # one row skipped
    whole = finer.votes(0, 20, 15, _leaves_of, 4)
    monkeypatch.setattr(aggregate, "VOTE_PIXELS", 9 * 15 * 2)  # two grid rows at a time
    pieces = finer.votes(0, 20, 15, _leaves_of, 4)
    for a, b in zip(whole, pieces, strict=True):
        np.testing.assert_array_equal(a, b)
    won, support = whole
    for r, c in ((0, 0), (7, 11), (19, 14)):
        block = leaves[1 + 3 * r : 4 + 3 * r, 3 * c : 3 * c + 3].ravel()
        have = block[block >= 0]
        counts = np.bincount(have, minlength=4)
        assert won[r, c] == (counts.argmax() if have.size else -1)
        want = (counts.max() * (won[r, c] + 1) * 10.0 / have.size) if have.size else 0.0
        assert support[r, c] == pytest.approx(want)


def test_a_grid_beyond_the_map_has_no_votes() -> None:
    finer = Finer(_Array(np.zeros((6, 6), np.int64)), kx=3, ky=3, col0=3, row0=-3)
    won, support = finer.votes(0, 3, 2, lambda r, w, k: (r.read(1, window=w), None), 1)
    # the map begins at grid row 1 (its rows 0-2) and ends after grid column 0 (its columns 3-5)
    assert won.tolist() == [[-1, -1], [0, -1], [0, -1]]
    assert support.tolist() == [[0.0, 0.0], [1.0, 0.0], [1.0, 0.0]]


def test_the_split_keeps_sub_pixels_no_larger_than_the_map_s() -> None:
    from affine import Affine

    grid = {"crs": None, "transform": Affine(30, 0, 0, 0, -30, 0)}
    for size, want in ((10, 3), (7.5, 4), (29.9, 2), (30, 1), (0.1, aggregate.MAX_SPLIT)):
        src = SimpleNamespace(crs=None, transform=Affine(size, 0, 0, 0, -size, 0))
        assert aggregate.split(src, grid) == (want, want), size
