import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.features import shapes

from geoseg.polygonize import merge_chunks, polygonize_chunk


def whole(values, valid, connectivity):
    out = [
        (shapely.make_valid(shapely.geometry.shape(g)), int(v))
        for g, v in shapes(values, mask=valid, connectivity=connectivity)
    ]
    return out


def chunked(values, valid, chunk_h, chunk_w, connectivity):
    h, w = values.shape
    chunks = []
    for r in range(0, h, chunk_h):
        for c in range(0, w, chunk_w):
            sl = (slice(r, r + chunk_h), slice(c, c + chunk_w))
            chunks.append(
                polygonize_chunk(
                    values[sl], None if valid is None else valid[sl],
                    row_off=r, col_off=c, connectivity=connectivity,
                )
            )  # fmt: skip
    r = merge_chunks(chunks, connectivity=connectivity)
    return r.geoms, r.values


def assert_same_polygons(values, valid, ch, cw, connectivity):
    ref = whole(values, valid, connectivity)
    geoms, vals = chunked(values, valid, ch, cw, connectivity)
    assert len(geoms) == len(ref)
    assert shapely.is_valid(geoms).all()
    # every region matches one reference polygon exactly (same value, same pixels)
    ref_by_val: dict[int, list] = {}
    for g, v in ref:
        ref_by_val.setdefault(v, []).append(g)
    for v in ref_by_val:
        mine = geoms[vals == v]
        theirs = ref_by_val[v]
        assert len(mine) == len(theirs), v
        assert sum(g.area for g in mine) == pytest.approx(sum(g.area for g in theirs))
        tree = shapely.STRtree(theirs)
        for g in mine:
            hits = [theirs[i] for i in tree.query(g.representative_point(), "intersects")]
            assert len(hits) == 1, (v, g.wkt)
            assert hits[0].symmetric_difference(g).area == 0, v


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    ch=st.integers(1, 17),
    cw=st.integers(1, 17),
    n_classes=st.integers(1, 4),
    connectivity=st.sampled_from([4, 8]),
    with_nodata=st.booleans(),
)
def test_chunked_equals_whole_on_random_rasters(
    seed, h, w, ch, cw, n_classes, connectivity, with_nodata
):
    rng = np.random.default_rng(seed)
    values = rng.integers(1, n_classes + 1, (h, w)).astype(np.int32)
    valid = rng.random((h, w)) > 0.15 if with_nodata else None
    assert_same_polygons(values, valid, ch, cw, connectivity)


def test_spanning_regions_holes_and_islands():
    v = np.ones((60, 60), np.int32)
    v[5:55, 5:55] = 2  # a ring of 1 around a big 2 spanning every chunk ...
    v[20:40, 20:40] = 3  # ... with a hole holding 3 ...
    v[28:32, 28:32] = 1  # ... which holds an island of 1
    v[::7, :] = 4  # stripes across all chunks
    for conn in (4, 8):
        assert_same_polygons(v, None, 8, 11, conn)


def test_diagonal_contacts_depend_on_connectivity():
    # a checkerboard: every pixel its own region with 4-connectivity, two regions with 8
    v = (np.indices((12, 12)).sum(axis=0) % 2 + 1).astype(np.int32)
    g4, _ = chunked(v, None, 5, 5, 4)
    g8, _ = chunked(v, None, 5, 5, 8)
    assert len(g4) == 144 and len(g8) == len(whole(v, None, 8))
    assert_same_polygons(v, None, 5, 5, 8)
    # a diagonal line crossing the corner where four chunks meet
    d = np.ones((10, 10), np.int32)
    np.fill_diagonal(d, 2)
    assert_same_polygons(d, None, 5, 5, 8)
    assert_same_polygons(d, None, 5, 5, 4)


def test_sieve_merges_small_neighbours_that_would_swap():
    from geoseg.polygonize import sieve_regions

    # two small regions alone in nodata, and a small region inside a big one
    v = np.full((12, 12), 5, np.int32)
    v[1:3, 1:3] = 7  # 4 px inside the big 5
    valid = np.ones_like(v, bool)
    valid[:, 6] = False
    v[8:10, 8] = 1  # 2 px
    v[8:10, 9] = 2  # 2 px, touching the other small one only
    valid[7:11, 7:11] = False
    valid[8:10, 8:10] = True
    chunks = [polygonize_chunk(v[:, c : c + 6], valid[:, c : c + 6], col_off=c) for c in (0, 6)]
    regions = merge_chunks(chunks)
    out = sieve_regions(regions, 5)
    areas = sorted(shapely.area(out.geoms).tolist())
    # the 4-px island became part of the 5s; the two 2-px regions merged into one of 4 px
    assert areas[0] == 4 and len(out.geoms) == len(regions.geoms) - 2
    assert shapely.area(out.geoms).sum() == valid.sum()


def _box(x0, y0, x1, y1, holes=()):
    return shapely.Polygon(
        [(x0, y0), (x1, y0), (x1, y1), (x0, y1)],
        [[(a, b), (c, b), (c, d), (a, d)] for a, b, c, d in holes],
    )


@pytest.mark.parametrize(
    "pieces",
    [
        # one region cut by a seam at x=10, with a hole on each side
        [_box(0, 0, 10, 10, [(2, 2, 4, 4)]), _box(10, 0, 20, 10, [(15, 5, 17, 7)])],
        # a sieve merged a solid island into the hole it fills
        [_box(0, 0, 10, 10, [(2, 2, 4, 4), (6, 6, 8, 8)]), _box(2, 2, 4, 4)],
        # an island with a hole of its own (falls back to a full union)
        [_box(0, 0, 10, 10, [(2, 2, 8, 8)]), _box(2, 2, 8, 8, [(4, 4, 5, 5)])],
        # an island filling only part of a hole
        [_box(0, 0, 10, 10, [(2, 2, 8, 8)]), _box(2, 2, 4, 8)],
        # two parts touching at a corner (8-connectivity), each with a hole
        [_box(0, 0, 5, 5, [(1, 1, 2, 2)]), _box(5, 5, 10, 10, [(7, 7, 8, 8)])],
        # pieces that close a ring around other regions: a new hole from the union
        [
            _box(0, 0, 10, 3),
            _box(0, 3, 3, 10),
            _box(3, 7, 10, 10, [(5, 8, 6, 9)]),
            _box(7, 3, 10, 7),
        ],
    ],
)
def test_union_pieces_equals_a_full_union(pieces):
    from geoseg.polygonize import union_pieces

    g = np.empty(len(pieces), dtype=object)
    g[:] = pieces
    fast, full = union_pieces(g), shapely.union_all(g)
    assert fast.is_valid
    assert fast.symmetric_difference(full).area == 0
    assert shapely.get_num_interior_rings(fast) == shapely.get_num_interior_rings(full) or (
        fast.geom_type == full.geom_type == "MultiPolygon"
    )
    assert fast.area == pytest.approx(full.area)


def test_union_pieces_keeps_a_big_hole_that_still_holds_a_region():
    """A 252,004-px hole filled but for 2 px must stay (no relative tolerance)."""
    from geoseg.polygonize import union_pieces

    outer = _box(0, 0, 504, 504, [(1, 1, 503, 503)])
    inner = _box(2, 2, 502, 502)
    survivor = _box(1, 1, 3, 2)
    moat = _box(1, 1, 503, 503).difference(inner).difference(survivor)
    g = np.empty(3, dtype=object)
    g[:] = [outer, moat, inner]
    fast, full = union_pieces(g), shapely.union_all(g)
    assert fast.symmetric_difference(full).area == 0 and fast.area == full.area


def test_part_inside_a_hole_of_another_part_keeps_its_own_hole():
    """8-connectivity: a part inside another part's hole, touching it at a corner, with
    a hole of its own; seams through it must not move that hole to the outer part."""
    v = np.full((20, 20), 2, np.int32)
    v[0, :] = v[-1, :] = v[:, 0] = v[:, -1] = 1
    v[1, 5] = 1
    v[2:7, 6:11] = 1
    v[4, 8] = 3
    for chunk in (10, 7, 5):
        assert_same_polygons(v, None, chunk, chunk, 8)
