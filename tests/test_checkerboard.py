"""Checkerboard test blocks placed on the split's grid, whatever the scored map's grid."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from rasterio.crs import CRS
from rasterio.windows import Window

from geoseg.checkerboard import CheckerboardTest
from geoseg.cli import cli
from geoseg.evaluate import evaluate_labels

from .conftest import shared_file

ANCHOR = Affine(30, 0, 300000, 0, -30, 4100000)
UTM = CRS.from_epsg(32612)


def _full(n: int, rows: int, cols: int) -> np.ndarray:
    r, c = np.mgrid[0:rows, 0:cols]
    return (r // n + c // n) % 2 == 1


def test_on_its_own_grid_the_split_is_the_odd_blocks():
    split = CheckerboardTest(4, 13, ANCHOR, UTM)
    assert split.own_grid and split.offset() == (0, 0)
    np.testing.assert_array_equal(split.test(0, 11), _full(4, 11, 13))
    np.testing.assert_array_equal(split.test(5, 3), _full(4, 8, 13)[5:8])


def test_a_crop_is_scored_on_the_blocks_of_the_whole_grid():
    crop = ANCHOR * Affine.translation(7, 5)  # starts at column 7, row 5
    split = CheckerboardTest(4, 10, crop, UTM, ANCHOR, UTM)
    assert not split.own_grid and split.offset() == (5, 7)
    np.testing.assert_array_equal(split.test(0, 6), _full(4, 11, 17)[5:11, 7:17])
    # a crop that starts before the split's origin (negative offsets) continues the pattern
    before = ANCHOR * Affine.translation(-3, -2)
    got = CheckerboardTest(4, 9, before, UTM, ANCHOR, UTM).test(0, 6)
    r, c = np.mgrid[-2:4, -3:6]
    np.testing.assert_array_equal(got, (r // 4 + c // 4) % 2 == 1)


def test_finer_pixels_fall_in_the_block_of_their_centre():
    half = Affine(15, 0, 300000, 0, -15, 4100000)
    split = CheckerboardTest(4, 16, half, UTM, ANCHOR, UTM)
    assert split.offset() is None  # not a whole-pixel shift
    np.testing.assert_array_equal(split.test(0, 16), np.kron(_full(4, 8, 8), np.ones((2, 2))) > 0)


def test_another_crs_is_placed_through_the_reprojection():
    # UTM zone 12 with a false easting 1 km larger: every x is 1000 m more
    shifted = CRS.from_proj4(
        "+proj=tmerc +lon_0=-111 +k=0.9996 +x_0=501000 +datum=WGS84 +units=m +no_defs"
    )
    grid = ANCHOR * Affine.translation(2, 3)
    moved = Affine(30, 0, grid.c + 1000, 0, -30, grid.f)
    split = CheckerboardTest(4, 12, moved, shifted, ANCHOR, UTM)
    assert not split.same_crs and split.offset() is None
    np.testing.assert_array_equal(split.test(0, 9), _full(4, 12, 14)[3:12, 2:14])


@pytest.fixture(scope="module")
def zion_crop(zion_prediction, tmp_path_factory):
    """Rows 600.., columns 500.. of the Zion prediction, as its own labels.tif."""
    win = Window(500, 600, 628, 528)
    path = tmp_path_factory.mktemp("crop") / "labels.tif"
    with rasterio.open(zion_prediction / "labels.tif") as src:
        profile = src.profile | {
            "width": win.width,
            "height": win.height,
            "transform": src.window_transform(win),
        }
        profile.pop("blockxsize", None), profile.pop("blockysize", None), profile.pop("tiled")
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(src.read(window=win))
            dst.update_tags(**src.tags())
            for i in range(1, src.count + 1):
                dst.set_band_description(i, src.descriptions[i - 1])
    return path, win


def test_a_crop_of_the_scene_is_scored_on_the_test_blocks_of_the_scene(zion_prediction, zion_crop):
    crop, win = zion_crop
    fine = shared_file("zion/nlcd2011_level2.tif")
    coarse = shared_file("zion/nlcd2011_level1.tif")
    result = evaluate_labels(
        crop, coarse_truth=coarse, fine_truth=fine, align=True, checkerboard=128
    )
    # by hand: the full map's pixels in the window that lie in the scene's odd blocks
    with rasterio.open(zion_prediction / "labels.tif") as src:
        pred = src.read(1, window=win).astype(int)
        from geoseg.vectorize import read_taxonomy_tag

        tax = read_taxonomy_tag(zion_prediction / "labels.tif")
    with rasterio.open(coarse) as src:
        truth = src.read(1, window=win).astype(int)
    test = _full(128, 1128, 1428)[600:1128, 500:1128]
    codes = list(tax.coarse_codes)
    ok = test & (truth != 255)
    cm = np.zeros((len(codes), len(codes)), int)
    np.add.at(cm, ([codes.index(v) for v in truth[ok]], [codes.index(v) for v in pred[ok]]), 1)
    assert result["coarse"]["confusion_matrix"] == cm.tolist()
    assert "of the grid of" in result["region"] and str(coarse) in result["region"]
    # the crop's own pixel (0, 0) would have made the training blocks the "test" ones
    own = evaluate_labels(crop, coarse_truth=coarse, align=True, checkerboard=128, split_grid=crop)
    assert own["coarse"]["confusion_matrix"] != cm.tolist()
    assert "of the grid of" not in own["region"]


def test_evaluate_command_takes_a_split_grid(tmp_path, zion_crop):
    crop, _ = zion_crop
    coarse = shared_file("zion/nlcd2011_level1.tif")
    image = shared_file("zion/landsat8_b2345.tif")
    args = ["evaluate", str(crop), "--coarse", str(coarse), "--align", "--bootstrap", "0"]
    res = CliRunner().invoke(
        cli, [*args, "--checkerboard", "128", "--split-grid", str(image), "-o", str(tmp_path / "a")]
    )
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, [*args, "--split-grid", str(image), "-o", str(tmp_path / "b")])
    assert res.exit_code == 2 and "add --checkerboard N or drop --split-grid" in res.output


def test_the_bootstrap_blocks_of_a_crop_are_the_split_s_blocks(zion_crop):
    from geoseg.evaluate import BLOCKS

    crop, win = zion_crop
    coarse = shared_file("zion/nlcd2011_level1.tif")
    result = evaluate_labels(crop, coarse_truth=coarse, align=True, checkerboard=128)
    # the scene's odd blocks that the crop reaches, each resampled as one unit
    rows = np.arange(win.row_off, win.row_off + win.height) // 128
    cols = np.arange(win.col_off, win.col_off + win.width) // 128
    odd = {(r, c) for r in set(rows) for c in set(cols) if (r + c) % 2 == 1}
    assert len(result["coarse"][BLOCKS]) == len(odd)


def test_a_truth_grid_other_than_the_map_s_is_warned_of_without_a_split_grid(
    tmp_path, zion_prediction
):
    """A map at 60 m scored on aligned 30 m truth: the blocks sit on the truth's grid,
    which may not be the split's; --split-grid says which grid, and silences it."""
    from geoseg.errors import GeosegWarning

    src_path = zion_prediction / "labels.tif"
    with rasterio.open(src_path) as src:
        data = src.read()[:, ::2, ::2]
        profile = src.profile | {
            "width": data.shape[2],
            "height": data.shape[1],
            "transform": src.transform * Affine.scale(2),
            "driver": "GTiff",
        }
        tags = src.tags()
    coarse_map = tmp_path / "labels60.tif"
    with rasterio.open(coarse_map, "w", **profile) as dst:
        dst.write(data)
        dst.update_tags(**tags)
    truth = shared_file("zion/nlcd2011_level1.tif")
    with pytest.warns(GeosegWarning, match=r"nlcd2011_level1\.tif: the checkerboard's blocks"):
        evaluate_labels(coarse_map, coarse_truth=truth, align=True, checkerboard=128)
    image = shared_file("zion/landsat8_b2345.tif")
    evaluate_labels(  # warnings are errors here: none
        coarse_map, coarse_truth=truth, align=True, checkerboard=128, split_grid=image
    )
    # without --align the grids are refused, and no warning of the blocks comes first
    # (a blind test saw the moot --split-grid warning above the error)
    from geoseg.errors import GeosegError

    with pytest.raises(GeosegError, match="--align"):
        evaluate_labels(coarse_map, coarse_truth=truth, checkerboard=128)
