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
        # a block is block_size, or the scene's last: a rest, or widened by a short rest
        for off, size, scene in (
            (b.row_off, b.height, grid.height),
            (b.col_off, b.width, grid.width),
        ):
            assert size == grid.block_size or off + size == scene
            assert size < grid.block_size + grid.tile_size / 2
        cover[b.slices()] += 1
    assert (cover == 1).all()


def _check_tile_span(start: int, size: int, scene: int, grid: TileGrid) -> None:
    """Inner tiles are full; the last is the rest (>= half a tile) or a full tile widened
    by a rest under half a tile; a scene smaller than a tile is one tile of its size."""
    t = grid.tile_size
    end = -(-scene // grid.stride) * grid.stride
    if start + size < end:
        assert size == t
    else:
        assert start + size == end
        if size < t:
            assert start == 0 or 2 * size >= t
        else:
            assert 2 * (size - t) < t


@settings(max_examples=80, deadline=None)
@given(grid=grids(), more=st.integers(2, 4))
def test_tiles_do_not_depend_on_the_block_size(grid, more):
    def cores(g: TileGrid) -> set[tuple[int, int, int, int]]:
        return {
            (b.row_off + c.row_off, b.col_off + c.col_off, c.height, c.width)
            for b in g.blocks()
            for _, c in g.tiles(b)
        }

    other = TileGrid.create(
        grid.height,
        grid.width,
        tile_size=grid.tile_size,
        halo=grid.halo,
        block_size=grid.tile_size * more,
        stride=grid.stride,
    )
    assert cores(grid) == cores(other)


def test_a_rest_under_half_a_tile_widens_the_last_tile():
    grid = TileGrid(1128, 1428, tile_size=1024, halo=112, block_size=1024, stride=16)
    assert grid.blocks() == [Window(0, 0, 1128, 1428)]
    assert [c for _, c in grid.tiles(grid.blocks()[0])] == [Window(0, 0, 1136, 1440)]
    grid = TileGrid(2048 + 600, 3072 + 16, tile_size=1024, halo=0, block_size=2048, stride=16)
    assert [(b.row_off, b.height) for b in grid.blocks()[::2]] == [(0, 2048), (2048, 600)]
    assert [(b.col_off, b.width) for b in grid.blocks()[:2]] == [(0, 2048), (2048, 1040)]


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
            _check_tile_span(b.row_off + core.row_off, core.height, grid.height, grid)
            _check_tile_span(b.col_off + core.col_off, core.width, grid.width, grid)
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
