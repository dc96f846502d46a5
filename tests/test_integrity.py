"""``geoseg info --check``: every block of a raster decoded, the bad ones named."""

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from geoseg.integrity import check_blocks, chunk_shape

from .test_cli import _assert_user_error
from .test_cli import _run as geoseg


def _tiled(path: Path, *, blockysize: int = 64, tiled: bool = True) -> Path:
    rng = np.random.default_rng(0)
    data = rng.integers(0, 4000, (2, 256, 256), dtype=np.uint16)
    profile = {
        "driver": "GTiff", "width": 256, "height": 256, "count": 2, "dtype": "uint16",
        "crs": "EPSG:32612", "transform": from_origin(300000, 4100000, 30, 30),
        "compress": "deflate",
    }  # fmt: skip
    if tiled:
        profile |= {"tiled": True, "blockxsize": 64, "blockysize": 64}
    else:
        profile |= {"blockysize": blockysize}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def _spoil(path: Path, band: int, block_row: int, block_col: int) -> None:
    """Overwrite the middle of one compressed block with bytes that do not inflate."""
    with rasterio.open(path) as src:
        offset = int(src.get_tag_item(f"BLOCK_OFFSET_{block_col}_{block_row}", "TIFF", bidx=band))
        size = int(src.get_tag_item(f"BLOCK_SIZE_{block_col}_{block_row}", "TIFF", bidx=band))
    with open(path, "r+b") as f:
        f.seek(offset + 2)
        f.write(b"\xff" * (size - 4))


def test_a_block_in_the_middle_that_does_not_decode_is_found_and_named(tmp_path):
    """The first and last blocks, which predict probes, decode; a middle one does not."""
    path = _tiled(tmp_path / "scene.tif")
    assert check_blocks(path).as_dict()["undecodable"] == 0
    _spoil(path, band=2, block_row=2, block_col=1)
    found = check_blocks(path)
    assert (found.blocks, found.bad) == (16, 1)
    assert found.as_dict()["first_undecodable"] == ["rows 128-191, columns 64-127"]
    assert "X offset 1, Y offset 2" in found.error  # GDAL's words for that block
    # the description alone (first and last blocks) does not see it; --check does
    res = geoseg("info", path)
    assert res.exit_code == 0 and "cannot be decoded" not in res.output, res.output
    res = geoseg("info", path, "--check")
    assert "check: 1 of 16 blocks does not decode (first: rows 128-191, columns 64-127" in (
        res.output
    )
    # the description, then the one-line error, and exit status 1 (for scripts)
    assert res.exit_code == 1
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("geoseg: error: ") and "scene.tif: 1 of 16 blocks does not" in last
    assert last.endswith("the file is corrupt or truncated, re-download or re-export it")
    clean = _tiled(tmp_path / "clean.tif")
    res = geoseg("info", clean, "--check")
    assert res.exit_code == 0 and "check: all 16 blocks decode" in res.output, res.output


def test_a_striped_file_is_read_in_chunks_of_whole_strips(tmp_path):
    assert chunk_shape((16, 256), 256) == (4096, 256)
    # the chunk holds about 1 M band pixels whatever the band count (a review: a 224-band
    # cube read 1 Mpx of every band at a time)
    assert chunk_shape((512, 512), 10000, bands=4) == (512, 512)
    path = _tiled(tmp_path / "strips.tif", tiled=False, blockysize=16)
    _spoil(path, band=1, block_row=15, block_col=0)  # the last strip
    found = check_blocks(path)
    assert (found.blocks, found.bad) == (16, 1)
    assert found.as_dict()["first_undecodable"] == ["rows 240-255, columns 0-255"]


def test_a_mask_that_does_not_decode_is_found(tmp_path):
    """The pixels decode, their mask (a .msk sidecar, read as the image's) does not."""
    path = _tiled(tmp_path / "masked.tif")
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=False), rasterio.open(path, "r+") as dst:
        mask = np.full((256, 256), 255, np.uint8)
        mask[:30, :30] = 0
        dst.write_mask(mask)
    sidecar = tmp_path / "masked.tif.msk"
    assert sidecar.exists() and check_blocks(path).bad == 0
    with rasterio.open(sidecar) as msk:
        assert msk.block_shapes[0][0] < 256 and msk.profile.get("compress")
        row = 128 // msk.block_shapes[0][0]
    _spoil(sidecar, band=1, block_row=row, block_col=0)
    found = check_blocks(path)
    assert found.bad >= 1 and found.first_bad[0].row_off <= 128 < (
        found.first_bad[0].row_off + found.first_bad[0].height
    )


def test_the_real_corrupt_file_and_what_check_is_not_for(tmp_path):
    from .conftest import shared_file

    corrupt = shared_file("awkward/corrupt.tif")
    found = check_blocks(corrupt).as_dict()
    assert found["undecodable"] >= 1 and found["blocks"] == 4
    gpkg = tmp_path / "z.gpkg"
    import geopandas as gpd
    import shapely

    gpd.GeoDataFrame({"n": [1]}, geometry=[shapely.box(0, 0, 1, 1)], crs=4326).to_file(gpkg)
    _assert_user_error(geoseg("info", gpkg, "--check"), "--check decodes a raster", "leave out")


@pytest.mark.parametrize("block", [(512, 512), (1, 40000), (256, 100000)])
def test_a_chunk_is_whole_blocks_of_about_a_megapixel(block):
    rows, cols = chunk_shape(block, 40000)
    assert rows % block[0] == 0 and (cols % block[1] == 0 or cols == 40000)
    assert rows * cols <= max(2**20, block[0] * min(block[1], 40000))
