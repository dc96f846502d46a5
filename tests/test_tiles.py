import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geoseg.errors import ConfigError
from geoseg.tiles import TileGrid, Window


@st.composite
def grids(draw):
    stride = draw(st.sampled_from([8, 16, 32]))
    tile = stride * draw(st.integers(1, 8))
    halo = stride * draw(st.integers(0, 3))
    block = tile * draw(st.integers(1, 4))
    h, w = draw(st.integers(1, 700)), draw(st.integers(1, 700))
    return TileGrid.create(h, w, tile_size=tile, halo=halo, block_size=block, stride=stride)


@settings(max_examples=80, deadline=None)
@given(grid=grids())
def test_blocks_partition_the_scene(grid):
    cover = np.zeros((grid.height, grid.width), dtype=np.int32)
    for b in grid.blocks():
        assert b.row_off >= 0 and b.col_off >= 0
        assert b.row_end <= grid.height and b.col_end <= grid.width
        assert b.row_off % grid.block_size == 0 and b.col_off % grid.block_size == 0
        cover[b.slices()] += 1
    assert (cover == 1).all()


@settings(max_examples=80, deadline=None)
@given(grid=grids())
def test_tiles_are_stride_aligned_and_cover_each_block(grid):
    for b in grid.blocks():
        win = grid.input_window(b)
        assert win.row_off % grid.stride == 0 and win.col_off % grid.stride == 0
        ph, pw = grid.padded_core(b)
        assert ph >= b.height and pw >= b.width and ph % grid.stride == 0
        assert ph - b.height < grid.stride and pw - b.width < grid.stride
        core_cover = np.zeros((ph, pw), dtype=np.int32)
        for inp, core in grid.tiles(b):
            # a tile's input is its core plus the halo, inside the block's input window
            assert inp.row_off == core.row_off and inp.height == core.height + 2 * grid.halo
            assert core.height % grid.stride == 0 and core.width % grid.stride == 0
            assert core.height <= grid.tile_size and core.width <= grid.tile_size
            assert inp.row_end <= win.height and inp.col_end <= win.width
            # absolute tile origins are multiples of the tile size (independent of blocking)
            assert (b.row_off + core.row_off) % grid.tile_size == 0
            assert (win.row_off + inp.row_off) % grid.stride == 0
            core_cover[core.slices()] += 1
        assert (core_cover == 1).all()


def test_misaligned_options_are_rejected_with_a_hint():
    with pytest.raises(
        ConfigError, match=r"multiple of the model's output stride 32: use e\.g\. 96"
    ):
        TileGrid(100, 100, tile_size=100, halo=0, block_size=100, stride=32)
    with pytest.raises(ConfigError, match="halo 20"):
        TileGrid(100, 100, tile_size=64, halo=20, block_size=64, stride=32)
    with pytest.raises(ValueError, match="positive size"):
        Window(0, 0, 0, 5)
