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
    for pixels in (15 * 2, 4):  # two grid rows at a time; four pixels of a row at a time
        monkeypatch.setattr(aggregate, "VOTE_PIXELS", 9 * pixels)
        pieces = finer.votes(0, 20, 15, _leaves_of, 4)
        for a, b in zip(whole, pieces, strict=True):
            np.testing.assert_array_equal(a, b)
    won, support = whole
    # by hand: the most common leaf, a tie to the tied leaf nearest the centre (first in
    # raster order among equally near), none where fewer than half the 9 have one
    near = sorted(range(9), key=lambda i: ((i // 3 - 1) ** 2 + (i % 3 - 1) ** 2, i))
    ties = 0
    for r in range(20):
        for c in range(15):
            block = leaves[1 + 3 * r : 4 + 3 * r, 3 * c : 3 * c + 3].ravel()
            have = block[block >= 0]
            if have.size < 4.5:
                assert (won[r, c], support[r, c]) == (-1, 0.0), (r, c)
                continue
            counts = np.bincount(have, minlength=4)
            tied = set(np.flatnonzero(counts == counts.max()).tolist())
            ties += len(tied) > 1
            want = next(int(block[i]) for i in near if block[i] in tied)
            assert won[r, c] == want, (r, c)
            assert support[r, c] == pytest.approx(counts.max() * (want + 1) * 10.0 / 9)
    assert ties > 10  # the tie rule was exercised


def test_a_grid_beyond_the_map_has_no_votes() -> None:
    finer = Finer(_Array(np.zeros((6, 6), np.int64)), kx=3, ky=3, col0=3, row0=-3)
    won, support = finer.votes(0, 3, 2, lambda r, w, k: (r.read(1, window=w), None), 1)
    # the map begins at grid row 1 (its rows 0-2) and ends after grid column 0 (its columns 3-5)
    assert won.tolist() == [[-1, -1], [0, -1], [0, -1]]
    assert support.tolist() == [[0.0, 0.0], [1.0, 0.0], [1.0, 0.0]]


def test_the_split_samples_each_map_pixel_once_or_at_least_twice() -> None:
    """Once where its size (nearly) divides the grid's, else at least twice (votes follow area)."""
    from affine import Affine

    grid = {"crs": None, "transform": Affine(30, 0, 0, 0, -30, 0)}
    cases = ((10, 3), (7.5, 4), (20, 3), (12, 5), (29.9, 1), (9.8, 3), (5.5, 11), (5.98, 5))
    cases += ((0.1, aggregate.MAX_SPLIT),)
    for size, want in cases:
        src = SimpleNamespace(crs=None, transform=Affine(size, 0, 0, 0, -size, 0))
        assert aggregate.split(src, grid) == (want, want), size


def test_a_map_nests_only_with_its_pixel_edges_on_the_grid_s_anywhere() -> None:
    """The grid's corner within 0.01 of a map pixel's, 400,000 pixels into the map too."""
    from affine import Affine

    grid = {"crs": "EPSG:5070", "transform": Affine(30, 0, 4_000_000, 0, -30, 900)}
    for offset, nested in ((0.0, True), (3.0, False), (0.05, True)):  # metres off
        src = SimpleNamespace(crs="EPSG:5070",
                              transform=Affine(10, 0, offset, 0, -10, 900))  # fmt: skip
        assert (aggregate.nesting(src, grid) is not None) is nested, offset
    far_finer = SimpleNamespace(crs="EPSG:5070", transform=Affine(0.5, 0, 0, 0, -0.5, 900))
    assert aggregate.nesting(far_finer, grid) is None  # 60 x 60: sampled, 32 x 32
    assert aggregate.split(far_finer, grid) == (aggregate.MAX_SPLIT, aggregate.MAX_SPLIT)


def test_a_map_s_pixels_are_measured_where_the_grid_is() -> None:
    """A global map in degrees onto a UTM grid: its pixel at the grid, not at 0 degrees."""
    from affine import Affine

    world = SimpleNamespace(crs="EPSG:4326", transform=Affine(1e-4, 0, -180, 0, -1e-4, 90),
                            width=3_600_000, height=1_800_000)  # fmt: skip
    utah = {"crs": "EPSG:32612", "transform": Affine(30, 0, 300_000, 0, -30, 4_150_000),
            "width": 1000, "height": 1000}  # fmt: skip
    px, py = aggregate._pixel_size_on(world, utah)
    assert 8.5 < px < 9.5 and 10.5 < py < 11.5  # 0.0001 degree at 37 N
    assert aggregate.choose(world, utah, "auto") == "mode"
    assert aggregate.split(world, utah) == (7, 6)  # 3.4 and 2.7 map pixels per grid pixel
