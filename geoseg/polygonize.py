"""Exact chunked polygonisation: polygons per chunk, then a merge across the seams.

Each chunk of a class raster is polygonised on its own (GDAL's polygoniser through
:func:`rasterio.features.shapes`) in *pixel* coordinates, which are integers, so
pieces of one region cut by a seam share their edges exactly. Where a polygon runs
along the chunk border, its edge there gives the interval of border pixels it owns.
The merge compares the intervals on the two sides of every seam: pieces with the same
value that touch (along an edge for 4-connectivity; also at a corner for
8-connectivity, including across the corners where four chunks meet) belong to one
region. A union-find groups them and each group is unioned once. The result is
exactly the whole-raster polygonisation: one polygon per connected region, with the
same area, whatever the chunking. Pure functions of arrays: no I/O.
"""

from __future__ import annotations

import bisect
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning
from rasterio.features import shapes

from geoseg.devices import available_cpus

# GDAL's polygoniser runs on an in-memory dataset; when several threads polygonise at
# once, rasterio sometimes reads that dataset's transform before it is set and warns
# that it is not georeferenced. Our coordinates never depend on it (pixel space, see
# below), so that one message is noise. A process-wide filter, because
# ``warnings.catch_warnings`` is not thread-safe.
warnings.filterwarnings(
    "ignore", message="Dataset has no geotransform", category=NotGeoreferencedWarning
)

SIDES = ("left", "right", "top", "bottom")
_SHIFT = float(2**20)


@dataclass
class ChunkPolygons:
    """The polygons of one chunk, in global pixel coordinates (x = column, y = row).

    Attributes
    ----------
    row_off, col_off, height, width : int
        The chunk's window in the raster.
    geoms : numpy.ndarray
        Shapely polygons.
    values : numpy.ndarray
        int64 value of each polygon.
    edges : dict
        For each side (``left``, ``right``, ``top``, ``bottom``), an ``(n, 3)`` int64
        array of ``(start, end, polygon index)`` intervals of border pixels, sorted by
        start (rows for left/right, columns for top/bottom).
    weight_sum : numpy.ndarray
        Per polygon, the sum of the ``weights`` raster over its pixels (zeros if none).
    """

    row_off: int
    col_off: int
    height: int
    width: int
    geoms: np.ndarray
    values: np.ndarray
    edges: dict[str, np.ndarray]
    weight_sum: np.ndarray


@dataclass
class Regions:
    """Whole regions after merging: geometry (pixel coordinates), value, size, weights."""

    geoms: np.ndarray
    values: np.ndarray
    pixels: np.ndarray
    weight_sum: np.ndarray


def polygonize_chunk(
    values: np.ndarray,
    valid: np.ndarray | None,
    *,
    row_off: int = 0,
    col_off: int = 0,
    connectivity: int = 4,
    weights: np.ndarray | None = None,
) -> ChunkPolygons:
    """Polygonise one chunk into pixel-coordinate polygons and their border intervals.

    Parameters
    ----------
    values : numpy.ndarray
        ``(H, W)`` int32 (or narrower) class values.
    valid : numpy.ndarray, optional
        ``(H, W)`` pixels to polygonise (default: all).
    row_off, col_off : int
        The chunk's offset in the raster.
    connectivity : {4, 8}
        Pixel connectivity of a region.
    weights : numpy.ndarray, optional
        ``(H, W)`` values summed per polygon (e.g. confidence, for a mean).
    """
    h, w = values.shape
    # Pixel coordinates, shifted by a constant and with y flipped so that the in-memory
    # dataset GDAL polygonises never looks un-georeferenced (which makes rasterio warn);
    # the shift is undone below, exactly (all values are integers).
    transform = Affine(1, 0, col_off + _SHIFT, 0, -1, -(row_off + _SHIFT))
    coords: list[tuple[float, float]] = []
    ring_len: list[int] = []
    rings_per_poly: list[int] = []
    vals: list[int] = []
    # Invalid pixels get a value of their own (GDAL would make an un-georeferenced mask
    # dataset, with a warning); their polygons are dropped below. Regions of valid
    # values are the same either way, since no valid pixel has that value.
    values = np.asarray(values, dtype=np.int32)
    sentinel = None
    if valid is not None and not valid.all():
        sentinel = int(np.iinfo(np.int32).min)
        if (values[valid] == sentinel).any():
            raise ValueError(f"class value {sentinel} is reserved for nodata")
        values = np.where(valid, values, sentinel).astype(np.int32)
    for geom, value in shapes(values, transform=transform, connectivity=connectivity):
        if sentinel is not None and int(value) == sentinel:
            continue
        rings = geom["coordinates"]
        for ring in rings:
            coords.extend(ring)
            ring_len.append(len(ring))
        rings_per_poly.append(len(rings))
        vals.append(int(value))
    n = len(vals)
    if n == 0:
        empty = np.zeros((0, 3), dtype=np.int64)
        return ChunkPolygons(
            row_off, col_off, h, w, np.array([], dtype=object),
            np.zeros(0, np.int64), {s: empty for s in SIDES}, np.zeros(0),
        )  # fmt: skip
    xy = np.asarray(coords, dtype=np.float64)
    xy[:, 0] -= _SHIFT
    xy[:, 1] = -xy[:, 1] - _SHIFT + 0.0  # back to rows (+ 0.0 turns -0.0 into 0.0)
    ring_offsets = np.concatenate([[0], np.cumsum(ring_len)])
    poly_offsets = np.concatenate([[0], np.cumsum(rings_per_poly)])
    geoms = shapely.from_ragged_array(
        shapely.GeometryType.POLYGON, xy, (ring_offsets, poly_offsets)
    )
    bad = ~shapely.is_valid(geoms)
    if bad.any():
        # GDAL traces regions that touch themselves at a corner (8-connectivity, or a
        # hole meeting the outline) as self-touching rings, which OGC calls invalid:
        # split them at the touching point into valid (multi)polygons, same pixels.
        geoms[bad] = shapely.make_valid(geoms[bad], method="structure")
    ring_poly = np.repeat(np.arange(n), rings_per_poly)
    edges = _border_intervals(
        xy, ring_offsets, ring_poly, row_off, col_off, row_off + h, col_off + w
    )
    wsum = np.zeros(n)
    if weights is not None:
        from rasterio.features import rasterize

        shifted = shapely.transform(geoms, lambda c: c + _SHIFT)
        ids = rasterize(
            ((g, i + 1) for i, g in enumerate(shifted)),
            out_shape=(h, w),
            transform=Affine(1, 0, col_off + _SHIFT, 0, 1, row_off + _SHIFT),
            fill=0,
            dtype="int32",
        )
        sums = np.bincount(ids.ravel(), weights=weights.ravel().astype(np.float64), minlength=n + 1)
        wsum = sums[1 : n + 1].astype(np.float64)
    return ChunkPolygons(row_off, col_off, h, w, geoms, np.asarray(vals, np.int64), edges, wsum)


def _border_intervals(
    xy: np.ndarray,
    ring_offsets: np.ndarray,
    ring_poly: np.ndarray,
    r0: int,
    c0: int,
    r1: int,
    c1: int,
) -> dict[str, np.ndarray]:
    """Intervals of border pixels owned by each polygon, from ring edges on the border."""
    n_vertices = xy.shape[0]
    ring_id = np.repeat(np.arange(ring_offsets.size - 1), np.diff(ring_offsets))
    i = np.arange(n_vertices - 1)
    same_ring = ring_id[i] == ring_id[i + 1]
    i = i[same_ring]
    x0, y0, x1, y1 = xy[i, 0], xy[i, 1], xy[i + 1, 0], xy[i + 1, 1]
    poly = ring_poly[ring_id[i]]
    out = {}
    for side, mask, a, b in (
        ("left", (x0 == c0) & (x1 == c0), y0, y1),
        ("right", (x0 == c1) & (x1 == c1), y0, y1),
        ("top", (y0 == r0) & (y1 == r0), x0, x1),
        ("bottom", (y0 == r1) & (y1 == r1), x0, x1),
    ):
        lo = np.minimum(a[mask], b[mask]).astype(np.int64)
        hi = np.maximum(a[mask], b[mask]).astype(np.int64)
        iv = np.stack([lo, hi, poly[mask]], axis=1)
        out[side] = iv[np.argsort(iv[:, 0], kind="stable")]
    return out


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, a: int) -> int:
        p = self.parent
        root = a
        while p[root] != root:
            root = p[root]
        while p[a] != root:
            p[a], a = root, p[a]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            if ra < rb:
                self.parent[rb] = ra
            else:
                self.parent[ra] = rb


def _link_seam(
    uf: _UnionFind,
    a: np.ndarray,
    b: np.ndarray,
    va: np.ndarray,
    vb: np.ndarray,
    base_a: int,
    base_b: int,
    diagonal: bool,
) -> None:
    """Link same-value pieces whose border intervals on the two sides of a seam touch."""
    if a.size == 0 or b.size == 0:
        return
    b_list = b.tolist()
    b_starts = [iv[0] for iv in b_list]
    for s, e, pa in a.tolist():
        # candidates: b intervals starting before e (or at e when diagonal contacts count)
        hi = bisect.bisect_right(b_starts, e) if diagonal else bisect.bisect_left(b_starts, e)
        j = hi - 1
        while j >= 0:
            _, eb, pb = b_list[j]
            if (eb < s) or (eb == s and not diagonal):
                break
            if va[pa] == vb[pb]:
                uf.union(base_a + pa, base_b + pb)
            j -= 1


def _corner_piece(c: ChunkPolygons, corner: str) -> int | None:
    """The polygon index owning a corner pixel of the chunk (None for nodata)."""
    side = "left" if corner in ("tl", "bl") else "right"
    iv = c.edges[side]
    row = c.row_off if corner in ("tl", "tr") else c.row_off + c.height - 1
    for s, e, p in iv.tolist():
        if s <= row < e:
            return int(p)
    return None


def merge_chunks(chunks: Sequence[ChunkPolygons], *, connectivity: int = 4) -> Regions:
    """Merge the pieces of regions cut by chunk seams.

    Parameters
    ----------
    chunks : sequence of ChunkPolygons
        The chunks of a regular grid (any order).
    connectivity : {4, 8}
        The connectivity the chunks were polygonised with.

    Returns
    -------
    Regions
        One polygon (or, for regions joined only at corners under 8-connectivity, a
        multipolygon) per connected region, in pixel coordinates, with its value,
        pixel count and summed weights.
    """
    diagonal = connectivity == 8
    bases, total = [], 0
    for c in chunks:
        bases.append(total)
        total += len(c.values)
    uf = _UnionFind(total)
    at = {(c.row_off, c.col_off): k for k, c in enumerate(chunks)}
    for k, c in enumerate(chunks):
        right = at.get((c.row_off, c.col_off + c.width))
        if right is not None:
            r = chunks[right]
            _link_seam(uf, c.edges["right"], r.edges["left"], c.values, r.values,
                       bases[k], bases[right], diagonal)  # fmt: skip
        below = at.get((c.row_off + c.height, c.col_off))
        if below is not None:
            d = chunks[below]
            _link_seam(uf, c.edges["bottom"], d.edges["top"], c.values, d.values,
                       bases[k], bases[below], diagonal)  # fmt: skip
        if diagonal and right is not None and below is not None:
            r, d = chunks[right], chunks[below]
            diag = at.get((c.row_off + c.height, c.col_off + c.width))
            if diag is not None:
                g = chunks[diag]
                for (ca, ka, cna), (cb, kb, cnb) in (
                    ((c, k, "br"), (g, diag, "tl")),
                    ((r, right, "bl"), (d, below, "tr")),
                ):
                    pa, pb = _corner_piece(ca, cna), _corner_piece(cb, cnb)
                    if pa is not None and pb is not None and ca.values[pa] == cb.values[pb]:
                        uf.union(bases[ka] + pa, bases[kb] + pb)
    if not chunks:
        empty = np.zeros(0)
        return Regions(np.array([], dtype=object), np.zeros(0, np.int64), empty, empty)
    all_geoms = np.concatenate([c.geoms for c in chunks])
    all_vals = np.concatenate([c.values for c in chunks])
    all_w = np.concatenate([c.weight_sum for c in chunks])
    roots = np.fromiter((uf.find(i) for i in range(total)), dtype=np.int64, count=total)
    return _dissolve(all_geoms, all_vals, all_w, roots)


def _dissolve(
    geoms: np.ndarray, values: np.ndarray, weights: np.ndarray, roots: np.ndarray
) -> Regions:
    """Union the pieces that share a root; pieces alone are kept as they are."""
    n = roots.size
    single = np.bincount(roots, minlength=n)[roots] == 1
    out_geoms = list(geoms[single])
    out_vals = list(values[single])
    out_w = list(weights[single])
    multi_idx = np.flatnonzero(~single)
    multi_idx = multi_idx[np.argsort(roots[multi_idx], kind="stable")]
    if multi_idx.size:
        splits = np.flatnonzero(np.diff(roots[multi_idx])) + 1
        groups = np.split(multi_idx, splits)
        # the biggest unions first, so the threads (GEOS releases the GIL) end together
        order = sorted(range(len(groups)), key=lambda i: -groups[i].size)
        with ThreadPoolExecutor(max_workers=available_cpus()) as pool:
            done = pool.map(lambda i: union_pieces(geoms[groups[i]]), order)
            unions = dict(zip(order, done, strict=True))
        for i, group in enumerate(groups):
            out_geoms.append(unions[i])
            out_vals.append(values[group[0]])
            out_w.append(weights[group].sum())
    g = np.empty(len(out_geoms), dtype=object)
    g[:] = out_geoms
    return Regions(g, np.asarray(out_vals, np.int64), shapely.area(g), np.asarray(out_w, float))


def union_pieces(pieces: np.ndarray) -> shapely.Geometry:
    """Union the pieces of one region, fast: only their outlines are overlaid.

    The pieces form a coverage (no overlaps, exactly shared edges). A hole of a piece
    cut by chunk seams holds no other piece of the same region (it would be the same
    region as the piece around it), so the union is the union of the pieces'
    exteriors with every piece's holes added back: the polygon ``shapely.union_all``
    gives, without overlaying thousands of hole rings. Where the sieve merged a
    solid island into the region around it, the hole it filled is dropped; any other
    case (an island with holes of its own, a hole only partly filled) falls back to
    ``shapely.union_all``.
    """
    parts = shapely.get_parts(pieces)
    shells = shapely.polygons(shapely.get_exterior_ring(parts))
    n_holes = shapely.get_num_interior_rings(parts)
    if not n_holes.any():
        return shapely.union_all(shells)
    rings = [r for i in np.flatnonzero(n_holes) for r in parts[i].interiors]
    owners = np.repeat(np.arange(parts.size), n_holes)
    hole_polys = shapely.polygons(rings)
    keep = np.ones(len(rings), dtype=bool)
    inner, hole = shapely.STRtree(hole_polys).query(shells, predicate="within")
    if inner.size:  # pieces of this region inside a hole of another piece
        filled = np.bincount(hole, weights=shapely.area(shells[inner]), minlength=len(rings))
        holes_hit = np.unique(hole)
        # pixel areas are integers, exact in float64: a hole is filled only if every
        # pixel of it is (a tolerance would drop a big hole that still holds a region)
        exact = filled[holes_hit] == shapely.area(hole_polys[holes_hit])
        if n_holes[inner].any() or not exact.all():
            return shapely.union_all(parts)
        keep[holes_hit] = False
    merged = shapely.get_parts(shapely.union_all(shells))
    owner = np.zeros(parts.size, dtype=np.int64)
    if merged.size > 1:  # parts touching only at a corner (8-connectivity)
        # the merged parts do not overlap, so a point inside a piece lies in exactly one
        # (their filled outlines can nest: a part inside another part's hole)
        probe = shapely.point_on_surface(shells)
        part_i, merged_i = shapely.STRtree(merged).query(probe, predicate="intersects")
        owner[part_i] = merged_i
    holes: list[list[shapely.LinearRing]] = [list(m.interiors) for m in merged]
    for k in np.flatnonzero(keep):
        holes[owner[owners[k]]].append(rings[k])
    out = [shapely.Polygon(m.exterior, h) for m, h in zip(merged, holes, strict=True)]
    return out[0] if len(out) == 1 else shapely.MultiPolygon(out)


def sieve_regions(
    regions: Regions,
    min_pixels: float,
    *,
    connectivity: int = 4,
    max_rounds: int = 50,
    cumulative: np.ndarray | None = None,
) -> Regions:
    """Remove regions smaller than ``min_pixels``, as a raster sieve would.

    A small region takes the value of its largest neighbour among the regions of at
    least ``min_pixels`` (if it has none, of its largest neighbour; ties go to the
    lowest value), then joins every neighbour that now has the same value. This is
    repeated until no small region has a neighbour (small neighbours that merged may
    still be small). Regions touch along an edge (4-connectivity) or also at a corner
    (8-connectivity). A region with no neighbour at all (an island in nodata) is kept.

    Parameters
    ----------
    regions : Regions
        Exact regions in pixel coordinates (from :func:`merge_chunks`).
    min_pixels : float
        The minimum mapping unit in pixels (with ``cumulative``: in m²).
    connectivity : {4, 8}
        Region connectivity.
    max_rounds : int
        Safety limit on the rounds (each round merges at least one region).
    cumulative : numpy.ndarray, optional
        Where pixel areas vary by row (geographic coordinates, Mercator), the m² of a
        column of pixels above each row edge
        (:func:`geoseg.area.cumulative_row_areas`): regions are then sized by their true
        area, not their pixel count.
    """
    for _ in range(max_rounds):
        merged = _sieve_round(regions, min_pixels, connectivity, cumulative)
        if merged is None:
            break
        regions = merged
    return regions


def _sieve_round(
    regions: Regions, min_pixels: float, connectivity: int, cumulative: np.ndarray | None
) -> Regions | None:
    """One round of :func:`sieve_regions`; ``None`` when no small region has a neighbour."""
    geoms, values, size = regions.geoms, regions.values, regions.pixels
    if cumulative is not None:
        from geoseg.area import raster_areas_m2

        size = raster_areas_m2(geoms, Affine.identity(), cumulative)
    small = np.flatnonzero(size < min_pixels)
    if small.size == 0:
        return None
    a, b = _neighbours(geoms, small, connectivity)
    if a.size == 0:
        return None
    new_values = values.copy()
    big = size >= min_pixels
    # best neighbour per small region: prefer big ones, then larger, then lower value
    order = np.lexsort((values[b], -size[b], ~big[b], a))
    a_sorted, b_sorted = a[order], b[order]
    first = np.ones(a_sorted.size, bool)
    first[1:] = a_sorted[1:] != a_sorted[:-1]
    # a region only moves towards a "larger" neighbour (big first, then size, then lower
    # value, then index), so two small neighbours never swap values forever
    n = len(geoms)
    rank = np.empty(n, np.int64)
    rank[np.lexsort((-np.arange(n), -values, size, big))] = np.arange(n)
    src, dst = a_sorted[first], b_sorted[first]
    up = rank[dst] > rank[src]
    new_values[src[up]] = values[dst[up]]
    uf = _UnionFind(len(geoms))
    same = new_values[a] == new_values[b]
    for x, y in zip(a[same].tolist(), b[same].tolist(), strict=True):
        uf.union(x, y)
    roots = np.fromiter((uf.find(i) for i in range(len(geoms))), np.int64, len(geoms))
    return _dissolve(geoms, new_values, regions.weight_sum, roots)


def _neighbours(
    geoms: np.ndarray, small: np.ndarray, connectivity: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(small region, neighbour)``: regions holding a pixel next to a small one.

    Next to means across an edge (4-connectivity) or also across a corner (8), which is
    what sharing a boundary segment, or any boundary point, means for the polygons.
    Found from the small region's outline, not by overlaying outlines: its rings, in
    pixel coordinates, run along pixel edges; oriented so that the region lies on their
    left, the pixel on the right of each unit edge is outside it, and so are the pixels
    around each unit point that it does not contain (corners, for 8-connectivity). The
    region owning each such pixel is found by point-in-polygon tests on prepared
    geometries (indexed, so a neighbour with a long outline and thousands of holes costs
    a lookup, not a copy of its boundary per small region beside it). The work grows
    with the small regions' perimeters, not their bounding boxes (a thin diagonal
    region of few pixels can span a large box).
    """
    shapely.prepare(geoms)  # every point-in-polygon test below uses the index
    parts, part_of = shapely.get_parts(geoms[small], return_index=True)
    rings, ring_of = shapely.get_rings(shapely.orient_polygons(parts), return_index=True)
    xy, point_of = shapely.get_coordinates(rings, return_index=True)
    seg = np.flatnonzero(point_of[1:] == point_of[:-1])  # consecutive points of one ring
    p0, d = xy[seg], xy[seg + 1] - xy[seg]
    length = np.abs(d).sum(axis=1).astype(np.int64)  # axis-parallel, integer vertices
    keep = length > 0
    seg, p0, d, length = seg[keep], p0[keep], d[keep], length[keep]
    k = np.repeat(np.arange(seg.size), length)  # one row per unit edge
    unit = d[k] / length[k, None]
    start = (
        p0[k] + unit * (np.arange(k.size) - np.repeat(np.cumsum(length) - length, length))[:, None]
    )
    owner = small[part_of[ring_of[point_of[seg[k]]]]]
    if connectivity == 4:
        right = np.column_stack([unit[:, 1], -unit[:, 0]])  # the region is on the left
        px = start + unit / 2 + right / 2
        region = owner
    else:  # the four pixels around every unit point, less the region's own
        around = np.array([[-0.5, -0.5], [0.5, -0.5], [-0.5, 0.5], [0.5, 0.5]])
        px = (start[:, None, :] + around[None]).reshape(-1, 2)
        region = np.repeat(owner, 4)
        outside = ~shapely.contains_xy(geoms[region], px[:, 0], px[:, 1])
        px, region = px[outside], region[outside]
    # one row per (region, pixel); pixel centres are at half-integers
    cells = np.unique(np.column_stack([region, np.floor(px).astype(np.int64)]), axis=0)
    region, cx, cy = cells[:, 0], cells[:, 1] + 0.5, cells[:, 2] + 0.5
    pi, gi = shapely.STRtree(geoms).query(shapely.points(cx, cy))
    owns = shapely.contains_xy(geoms[gi], cx[pi], cy[pi])  # one owner per pixel, or none
    pairs = np.unique(np.column_stack([region[pi[owns]], gi[owns]]), axis=0)
    return pairs[:, 0], pairs[:, 1]


def to_world(geoms: np.ndarray, transform: Affine) -> np.ndarray:
    """Map pixel-coordinate geometries to the raster's CRS with its geotransform."""
    a, b, c, d, e, f = transform[:6]
    mat = np.array([[a, d], [b, e]])
    off = np.array([c, f])
    return shapely.transform(geoms, lambda xy: xy @ mat + off)
