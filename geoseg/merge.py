"""Several label maps of one area as one: at each pixel, the most confident label.

Two uses. Cloudy scenes of one place (several dates, each predicted with its cloud
mask, see :mod:`geoseg.scene_mask`) leave nodata under their clouds, and each date
fills the others' gaps. Adjacent scenes that overlap (neighbouring Landsat rows,
Sentinel-2 tiles) are put together, the overlap taking the label its network was surer
of. At every pixel of the union of the maps' extents, the label (coarse, fine and
confidence) comes from the map with the highest confidence there among those that
have one; a tie goes to the map listed first, so list the preferred one (the newest
date) first. Pixels no map labels stay nodata. Two other rules: ``first`` (the first
listed map that has a label: one date wherever it is clear) and ``majority`` (the
label most maps give, level by level: with three or more dates, one date's error is
outvoted, see :func:`majority_vote`), and ``mean`` (the most probable leaf of the maps'
mean class probabilities, from the ``probabilities.tif`` beside each map).

The maps are geoseg ``labels.tif`` files of one taxonomy, in one CRS, with one pixel
size and pixel edges on one grid (as scenes of one sensor and tiling are): the merge
reads and writes them as they are, a band of rows at a time, so memory follows the
band, not the area. With ``align``, maps on other grids (a neighbour in the next UTM
zone) are read through a nearest-neighbour warp onto the first map's grid, and a finer
map (10 m under a 30 m first map) by the most common leaf of its pixels under each
pixel (:mod:`geoseg.aggregate`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from affine import Affine
from rasterio.windows import Window

from geoseg import fixes
from geoseg.aggregate import Finer, finer_on_grid
from geoseg.atomic import locks_output
from geoseg.errors import ConfigError, RasterFormatError, RasterReadError
from geoseg.raster import absolute_path
from geoseg.taxonomy import Taxonomy, format_share, lookup_codes
from geoseg.write import BUNDLE_TAG, MAP_ID, MERGED_FROM, PROBABILITY_NODATA, new_map_id

log = logging.getLogger(__name__)

#: Pixels of the merged map made at a time (a band of whole rows).
STRIP_PIXELS = 1 << 22

#: How a pixel's label is chosen among the maps that have one.
RULES = ("confidence", "first", "majority", "mean")

#: Pixels of class probabilities averaged at a time by the ``mean`` rule (its sums are
#: classes x this, in float32).
MEAN_PIXELS = 1 << 19

#: The file of class probabilities beside a map (``geoseg predict --probabilities``).
PROBABILITIES = "probabilities.tif"

#: Pixels voted on at a time by the ``majority`` rule (its temporaries are maps x this).
VOTE_PIXELS = 1 << 18

#: How many times the maps' own pixels the merged grid may hold: beyond, a map is far
#: from the others (wrong georeferencing, typically) and the merge is refused.
SPREAD_LIMIT = 10

#: The share of the merged map that no map labels above which the merge is warned about.
EMPTY_SHARE = 0.5

#: How far (in pixels) a map's pixel edges may lie from the first map's grid.
ALIGN_TOLERANCE = 0.01


@dataclass(frozen=True)
class MapOnGrid:
    """Where one map lies on the merged grid.

    Attributes
    ----------
    path : str
        The map.
    row_off, col_off : int
        Its first pixel's row and column on the merged grid.
    height, width : int
        Its size (resampled: of its footprint on the merged grid).
    resampled : bool
        Read through a warp onto the merged grid (``align``: another CRS, pixel size or
        pixel edges than the first map's).
    mode : bool
        Resampled by the most common leaf of its pixels under each pixel of the merged
        grid (a finer map), instead of the pixel under its centre.
    """

    path: str
    row_off: int
    col_off: int
    height: int
    width: int
    resampled: bool = False
    mode: bool = False
    map_id: str = ""  # its MAP_ID tag ("" for a map of an earlier version)
    merged_from: tuple[str, ...] = ()  # the MAP_IDs of the maps it is a merge of
    bundle: str = ""  # its BUNDLE_TAG: "NAME SHA256" of the model that labelled it


@dataclass(frozen=True)
class MergedGrid:
    """The grid of the merged map (the union of the maps') and where each map lies."""

    crs: Any
    transform: Affine
    height: int
    width: int
    maps: tuple[MapOnGrid, ...]
    taxonomy: Taxonomy
    notes: tuple[str, ...] = ()  # doubts about the inputs, for merge.json's warnings


def merged_grid(
    paths: Sequence[str | Path],
    *,
    align: bool = False,
    grid: str | Path | None = None,
    resampling: str = "auto",
) -> MergedGrid:
    """Check that ``paths`` can be merged and lay them on the union of their extents.

    ``align``: a map in another CRS, at another pixel size or with its pixel edges off
    the first map's grid is resampled onto that grid instead of refused: by nearest
    neighbour, so that its three bands still come from one pixel, or (``resampling``
    ``mode``; ``auto``: for a map whose pixels are at most a quarter of the grid's) by the most
    common leaf of its pixels under each pixel (:mod:`geoseg.aggregate`). ``grid``: a raster whose
    grid (CRS, pixel size and edges) the merged map takes instead of the first map's
    (one of the maps, or any raster: a 30 m map merged with a 60 m date listed first).

    Raises
    ------
    RasterReadError
        A map is missing or unreadable.
    RasterFormatError
        Fewer than two maps, one listed twice, a map that geoseg did not write,
        taxonomies that give codes other meanings, a rotated geotransform, or (without
        ``align``) another CRS or pixel size, or pixel edges off the first map's grid
        (with it: a map without CRS beside one with).
    """
    from geoseg.aggregate import RESAMPLING, choose
    from geoseg.raster import open_labels

    if resampling not in RESAMPLING:
        raise ConfigError(f"resampling {resampling!r} is not one of {', '.join(RESAMPLING)}")
    if len(paths) < 2:
        raise RasterFormatError(
            f"{paths[0] if paths else 'merge'}: one map has nothing to merge with: pass two "
            "or more labels.tif files of one area"
        )
    seen: dict[Path, str] = {}
    for p in paths:
        key = Path(p).resolve()
        if key in seen:
            raise RasterFormatError(f"{p}: listed twice (as {seen[key]} too): list each map once")
        seen[key] = str(p)
    first: dict[str, Any] = {}
    placed: list[MapOnGrid] = []
    notes: list[str] = []
    reference = None if grid is None else _reference_grid(grid)
    for p in paths:
        path = str(p)
        if Path(path).is_dir():
            inside = Path(path) / "labels.tif"
            raise RasterReadError(
                f"{path}: a folder: pass the map in it ({inside})"
                if inside.exists()
                else f"{path}: a folder, not a map: pass the labels.tif files to merge"
            )
        with open_labels(path) as src:
            crs, t, h, w = src.crs, src.transform, src.height, src.width
            tax = taxonomy_tag(src, path)
            _check_bands(src, path)
            tags = src.tags()
            its = SimpleNamespace(crs=crs, transform=t, width=w, height=h, bounds=src.bounds)
        ids = {
            "map_id": tags.get(MAP_ID, ""),
            "merged_from": tuple(i for i in tags.get(MERGED_FROM, "").split(",") if i),
            "bundle": tags.get(BUNDLE_TAG, ""),
        }
        if t.b or t.d:
            raise RasterFormatError(
                f"{path}: a rotated grid cannot be merged: predict its scene north-up "
                f"({fixes.north_up('SCENE.tif', crs=crs.to_string() if crs else None)})"
            )
        warp = False
        if not first:
            first = {"path": path, "crs": crs, "t": t, "tax": tax, "tax_path": path}
            if reference is not None:  # the grid is another raster's: this map is placed on it
                first.update(reference)
                warp = _check_same(path, first, crs, t, tax, (h, w), align=align)
        else:
            warp = _check_same(path, first, crs, t, tax, (h, w), align=align)
            if (note := _renamed_classes(path, tax, first)) is not None:
                notes.append(note)
        t0: Affine = first["t"]
        col, row = (t.c - t0.c) / t0.a, (t.f - t0.f) / t0.e
        if not warp and max(abs(col - round(col)), abs(row - round(row))) > ALIGN_TOLERANCE:
            if not align:
                raise RasterFormatError(
                    f"{path}: its pixel edges lie {col % 1:.2f} px, {row % 1:.2f} px off the "
                    f"grid of {first['path']}: warp its scene onto that grid before predicting "
                    f"({fixes.onto_pixels(t0, _bounds(t, h, w))}), or merge maps of one tiling, or "
                    "pass --align to resample this map"
                )
            warp = True
        if warp:
            footprint = _footprint(path, _bounds_in(t, (h, w), crs, first["crs"]), t0)
            fp = footprint
            corner = t0 * Affine.translation(fp.col_off, fp.row_off)
            on = {"crs": first["crs"], "transform": corner, "width": fp.width, "height": fp.height}
            how = choose(its, on, resampling)
            placed.append(dataclasses.replace(footprint, mode=how == "mode", **ids))
            log.info("%s: resampled onto the grid of %s (%s)", path, first["path"], how)
        else:
            placed.append(MapOnGrid(path, round(row), round(col), h, w, **ids))
    top = min(m.row_off for m in placed)
    left = min(m.col_off for m in placed)
    bottom = max(m.row_off + m.height for m in placed)
    right = max(m.col_off + m.width for m in placed)
    own = sum(m.height * m.width for m in placed)
    area = (bottom - top) * (right - left)
    if area > SPREAD_LIMIT * own:
        base = placed[0]
        far = max(
            placed[1:],
            key=lambda m: abs(m.row_off - base.row_off) + abs(m.col_off - base.col_off),
        )
        raise RasterFormatError(
            f"{far.path}: lies far from {base.path} (row {far.row_off - base.row_off:,}, "
            f"column {far.col_off - base.col_off:,} of its grid): the merged map would be "
            f"{right - left:,} x {bottom - top:,} pixels, {area / own:,.0f} times the maps' "
            "own, nearly all empty; check its georeferencing (CRS, coordinates), or merge "
            "the groups of maps that share an area separately"
        )
    t0 = first["t"]
    return MergedGrid(
        crs=first["crs"],
        transform=t0 * Affine.translation(left, top),
        height=int(bottom - top),
        width=int(right - left),
        maps=tuple(
            dataclasses.replace(m, row_off=m.row_off - top, col_off=m.col_off - left)
            for m in placed
        ),
        taxonomy=first["tax"],
        notes=tuple(notes),
    )


def _snapped(v: float) -> float:
    """``v``, or the whole number within :data:`ALIGN_TOLERANCE` of it."""
    return float(round(v)) if abs(v - round(v)) <= ALIGN_TOLERANCE else v


def _reference_grid(path: str | Path) -> dict[str, Any]:
    """The grid of raster ``path`` that a merge is put on: ``path``, ``crs`` and ``t``."""
    from geoseg.raster import open_labels

    with open_labels(path) as src:
        crs, t = src.crs, src.transform
    if t.b or t.d or t.a < 0 or t.e > 0:
        raise RasterFormatError(
            f"{path}: a rotated, south-up or mirrored grid cannot be the merged map's: give a "
            f"north-up raster ({fixes.north_up(path, crs=crs.to_string() if crs else None)})"
        )
    return {"path": str(path), "crs": crs, "t": t}


def _renamed_classes(path: str, tax: Taxonomy, first: dict[str, Any]) -> str | None:
    """What to warn about a map whose taxonomy names the first map's codes otherwise.

    A class name that another code has in the first map's taxonomy (41 and 42 swapped)
    means the codes mean other classes: refused. Other names (another language, a
    renamed taxonomy) are a warning, recorded in merge.json.

    Raises
    ------
    RasterFormatError
        A class name belongs to another code of the first map's taxonomy.
    """

    def key(name: str) -> str:
        return name.strip().casefold()

    # level by level: a coarse and a fine class may share a name (Water, 5 and 51)
    levels = [(first["tax"].coarse, tax.coarse), (first["tax"].fine, tax.fine)]
    moved = []
    for ours, others in levels:
        code_of = {key(o.name): o.code for o in ours}
        moved += [
            f"{c.name!r} is {c.code} there and {code_of[key(c.name)]} in {first['tax_path']}"
            for c in others
            if code_of.get(key(c.name), c.code) != c.code
        ]
    theirs = {(lvl, o.code): o.name for lvl, (ours, _) in enumerate(levels) for o in ours}
    if moved:
        raise RasterFormatError(
            f"{path}: its classes have other codes than in {first['tax_path']} "
            f"({'; '.join(moved[:3])}): the maps' codes mean other classes: merge maps of one "
            "model's taxonomy"
        )
    renamed = [
        f"{c.code} {c.name!r} is {theirs[(lvl, c.code)]!r}"
        for lvl, (_, others) in enumerate(levels)
        for c in others
        if key(theirs.get((lvl, c.code), c.name)) != key(c.name)
    ]
    if not renamed and tax.name == first["tax"].name:
        return None
    what = f" (class {', '.join(renamed[:5])} there)" if renamed else ""
    return (
        f"{path}: its taxonomy {tax.name!r} has the codes of {first['tax'].name!r} of "
        f"{first['tax_path']} under other names{what}: the merged map takes the first map's "
        "names; check that both maps mean the same classes"
    )


def _refuse_merges_of_inputs(grid: MergedGrid) -> None:
    """Refuse a merged map listed with a map it was merged from (it would count twice).

    Raises
    ------
    RasterFormatError
        A map's ``GEOSEG_MERGED_FROM`` tag names another listed map's ``GEOSEG_MAP_ID``.
    """
    by_id = {m.map_id: m for m in grid.maps if m.map_id}
    for m in grid.maps:
        inside = next((by_id[i] for i in m.merged_from if i in by_id), None)
        if inside is not None:
            raise RasterFormatError(
                f"{m.path}: a merge of {inside.path}, which is listed too: under --rule "
                f"majority and mean its labels would count twice: list the maps {m.path} was "
                f"merged from instead of it, or drop {inside.path}"
            )


def merged_from(grid: MergedGrid) -> str:
    """The :data:`MERGED_FROM` tag of a merge of ``grid``'s maps: theirs and their sources."""
    ids = dict.fromkeys(i for m in grid.maps for i in (m.map_id, *m.merged_from) if i)
    return ",".join(ids)


def _refuse_copies(grid: MergedGrid) -> None:
    """Refuse a map that is another listed map under a second name.

    Same place on the merged grid and the same pixels (a copied or re-encoded file):
    under the ``majority`` and ``mean`` rules it would count twice (under the others
    it gives nothing). Maps of one place are first told apart by a digest of a few
    windows, so only true copies are read whole; maps of one value throughout (dates
    clouded over, a uniform tile) are no copies of each other, as identical blank chips
    are not for :func:`geoseg.labelled.refuse_copies`.

    Raises
    ------
    RasterFormatError
        Two of ``grid``'s maps are one map.
    """
    from geoseg.raster import constant_bands, pixel_digest

    by_place: dict[tuple[int, int, int, int], list[MapOnGrid]] = {}
    for m in grid.maps:
        by_place.setdefault((m.row_off, m.col_off, m.height, m.width), []).append(m)
    for group in (g for g in by_place.values() if len(g) > 1):
        seen: dict[str, MapOnGrid] = {}
        for m in group:
            key = pixel_digest(m.path)
            if (
                key in seen
                and pixel_digest(m.path, whole=True) == pixel_digest(seen[key].path, whole=True)
                and not constant_bands(m.path)
            ):
                raise RasterFormatError(
                    f"{m.path}: a copy of {seen[key].path} (same place, same pixels): list "
                    "each map once (under --rule majority and mean a copy counts twice)"
                )
            seen.setdefault(key, m)


def _labels_any(path: str, nodata: int) -> bool:
    """Whether the map labels any pixel (read a band of rows at a time)."""
    from geoseg.raster import open_labels

    with open_labels(path) as src:
        step = max(1, STRIP_PIXELS // src.width)
        for r in range(0, src.height, step):
            coarse = src.read(1, window=Window(0, r, src.width, min(step, src.height - r)))
            if (coarse != nodata).any():
                return True
    return False


def _footprint(path: str, bounds: tuple[float, float, float, float], t0: Affine) -> MapOnGrid:
    """A resampled map's place on the first map's grid: the pixels its bounds hold.

    A pixel of the grid is the map's when its centre lies within the bounds, as nearest
    neighbour resampling labels it: a map a third of a pixel off the grid adds no
    column that it would leave unlabelled.
    """
    x0, y0, x1, y1 = bounds
    cols = sorted(((x0 - t0.c) / t0.a, (x1 - t0.c) / t0.a))
    rows = sorted(((y0 - t0.f) / t0.e, (y1 - t0.f) / t0.e))
    # a bound within the tolerance of a pixel edge is on it; then pixel k's centre
    # k + 0.5 within [start, stop): k from ceil(start - 0.5) to ceil(stop - 0.5), exclusive
    c0, r0, c1, r1 = (math.ceil(_snapped(v) - 0.5) for v in (cols[0], rows[0], cols[1], rows[1]))
    return MapOnGrid(path, r0, c0, max(1, r1 - r0), max(1, c1 - c0), resampled=True)


def taxonomy_tag(
    src: Any,
    path: str,
    *,
    use: str = "merge maps that geoseg predict wrote",
    probabilities_fix: str = "merge the labels.tif beside it (--rule mean reads it)",
) -> Taxonomy:
    """The taxonomy a geoseg map records in its tags, or a one-line error.

    ``use`` and ``probabilities_fix``: what the errors tell the user to do instead.
    """
    import json

    from geoseg.write import refuse_probabilities

    refuse_probabilities(src, path, probabilities_fix)
    raw = src.tags().get("GEOSEG_TAXONOMY")
    if not raw:
        raise RasterFormatError(f"{path}: not a geoseg labels.tif (no GEOSEG_TAXONOMY tag): {use}")
    try:
        return Taxonomy.from_dict(json.loads(raw), source=f"{path} (GEOSEG_TAXONOMY tag)")
    except json.JSONDecodeError:
        raise RasterFormatError(
            f"{path}: its GEOSEG_TAXONOMY tag is not valid JSON: predict the map again"
        ) from None


def _check_bands(src: Any, path: str) -> None:
    """Refuse a map whose bands are not geoseg's coarse, fine and confidence, in order."""
    from geoseg.write import BAND_NAMES

    names = tuple(src.tags().get("GEOSEG_BANDS", ",".join(BAND_NAMES)).split(","))
    if src.count != len(BAND_NAMES) or names != BAND_NAMES:
        raise RasterFormatError(
            f"{path}: {src.count} bands ({','.join(names)}), and a geoseg map has "
            f"{len(BAND_NAMES)}: {','.join(BAND_NAMES)}: merge the labels.tif that geoseg "
            "predict wrote (a band taken out or reordered cannot be merged)"
        )


def _bounds_in(
    t: Affine, shape: tuple[int, int], crs: Any, dst: Any
) -> tuple[float, float, float, float]:
    """A grid's bounds, in CRS ``dst`` (its own without CRS on either side)."""
    from rasterio.warp import transform_bounds

    own = _bounds(t, *shape)
    if crs is None or dst is None:
        return own
    x0, y0, x1, y1 = transform_bounds(crs, dst, *own, densify_pts=21)
    return x0, y0, x1, y1


def _bounds(t: Affine, height: int, width: int) -> tuple[float, float, float, float]:
    x0, x1 = sorted((t.c, t.c + width * t.a))
    y0, y1 = sorted((t.f, t.f + height * t.e))
    return x0, y0, x1, y1


def _check_same(
    path: str,
    first: dict[str, Any],
    crs: Any,
    t: Affine,
    tax: Taxonomy,
    shape: tuple[int, int],
    *,
    align: bool = False,
) -> bool:
    """Refuse a map of another taxonomy, CRS or pixel size than the first (``shape``: its).

    With ``align``, another CRS or pixel size is no refusal: the return value says that
    the map must be resampled onto the first map's grid.
    """
    from geoseg.map_reading import taxonomy_differences

    if diff := taxonomy_differences(first["tax"], tax, (first["tax_path"], path)):
        raise RasterFormatError(
            f"{path}: its taxonomy gives codes other meanings than that of {first['tax_path']} "
            f"({'; '.join(diff)}): merge maps of one model's taxonomy"
        )
    if (crs is None) != (first["crs"] is None):
        bare = path if crs is None else first["path"]
        raise RasterFormatError(
            f"{path}: {'it has no CRS' if crs is None else 'it has a CRS'} and "
            f"{first['path']} {'has one' if crs is None else 'has none'}: georeference the "
            f"scene of {bare} and predict it again"
        )
    if crs is not None and crs != first["crs"]:
        if align:
            return True
        hint = fixes.onto_pixels(first["t"], _bounds_in(t, shape, crs, first["crs"]), first["crs"])
        raise RasterFormatError(
            f"{path}: its CRS ({crs}) is not that of {first['path']} ({first['crs']}): warp "
            f"its scene onto the grid of {first['path']} before predicting ({hint}), "
            "or pass --align to resample this map"
        )
    t0 = first["t"]
    if not (math.isclose(t.a, t0.a, rel_tol=1e-9) and math.isclose(t.e, t0.e, rel_tol=1e-9)):
        if align:
            return True
        if (t.e > 0) != (t0.e > 0) or (t.a > 0) != (t0.a > 0):
            # name the map whose grid is not north-up (the first may be it)
            odd = path if (t.e > 0 or t.a < 0) else first["path"]
            other = first["path"] if odd == path else path
            align_it = (
                "pass --align to resample it onto the first map's grid"
                if odd == path
                else "list a north-up map first and pass --align"
            )
            raise RasterFormatError(
                f"{odd}: its rows or columns run the other way than those of {other} (a "
                f"south-up or mirrored grid): {align_it}, or predict its scene north-up "
                f"({fixes.north_up('SCENE.tif', crs=crs.to_string() if crs else None)})"
            )
        raise RasterFormatError(
            f"{path}: pixels of {t.a:g} x {abs(t.e):g}, and {first['path']} has "
            f"{t0.a:g} x {abs(t0.e):g}: predict both at one pixel size (its scene onto the "
            f"grid of {first['path']}: {fixes.onto_pixels(t0, _bounds(t, *shape))}), or pass "
            "--align "
            f"to resample this map onto that grid"
        )
    return False


def merge_strips(
    grid: MergedGrid,
    *,
    rows: int | None = None,
    rule: str = "confidence",
    probabilities: Callable[[Window, np.ndarray], None] | None = None,
) -> Iterator[tuple[Window, np.ndarray, np.ndarray]]:
    """The merged map a band of rows at a time: window, ``(3, h, w)`` labels, source.

    ``source`` is the index of the map each pixel's label comes from (``-1``: none);
    ``rows`` per band default to :data:`STRIP_PIXELS` worth. ``rule``: ``confidence``
    (the most confident label, a tie to the map listed first), ``first`` (the first
    listed map that has a label) or ``majority`` (:func:`majority_vote`; bands of fewer
    rows, as every map's band is held at once) or ``mean`` (:func:`_mean_strips`;
    ``probabilities(window, mean)`` is then given each band's mean class probabilities,
    uint8 percent, :data:`PROBABILITY_NODATA` where no map labels a pixel).
    """
    if rule not in RULES:
        raise ValueError(f"merge rule {rule!r} is not one of {', '.join(RULES)}")
    nodata = grid.taxonomy.nodata
    dtype = np.dtype(grid.taxonomy.dtype)
    with contextlib.ExitStack() as stack:
        sources = [stack.enter_context(_open_on_grid(m, grid)) for m in grid.maps]
        if rule == "majority":
            n = len(grid.maps)
            step = rows or max(1, STRIP_PIXELS // (grid.width * max(1, n // 2)))
            yield from _majority_strips(grid, sources, step)
            return
        if rule == "mean":
            probs = [
                stack.enter_context(_open_on_grid(m, grid, probabilities_of(m.path)))
                for m in grid.maps
            ]
            step = rows or max(1, MEAN_PIXELS // grid.width)
            yield from _mean_strips(grid, sources, probs, step, probabilities)
            return
        step = rows or max(1, STRIP_PIXELS // grid.width)
        for r0 in range(0, grid.height, step):
            h = min(step, grid.height - r0)
            out = np.full((3, h, grid.width), nodata, dtype)
            best = np.full((h, grid.width), -1, np.int32)  # confidence so far
            source = np.full((h, grid.width), -1, np.int32)
            for i, (m, src) in enumerate(zip(grid.maps, sources, strict=True)):
                if (part := _rows_of(m, src, r0, h)) is None:
                    continue
                rows_out, cols_out, data = part
                conf = data[2].astype(np.int32)
                if rule == "first":
                    take = (data[0] != nodata) & (source[rows_out, cols_out] < 0)
                else:
                    take = (data[0] != nodata) & (conf > best[rows_out, cols_out])
                for band in range(3):
                    out[band, rows_out, cols_out][take] = data[band][take]
                best[rows_out, cols_out][take] = conf[take]
                source[rows_out, cols_out][take] = i
            yield Window(0, r0, grid.width, h), out, source


def _rows_of(m: MapOnGrid, src: Any, r0: int, h: int) -> tuple[slice, slice, np.ndarray] | None:
    """Map ``m`` in rows ``r0`` to ``r0 + h`` of the merged grid: where, and its bands."""
    lo, hi = max(r0, m.row_off), min(r0 + h, m.row_off + m.height)
    if hi <= lo:
        return None
    data = src.read(window=Window(0, lo - m.row_off, m.width, hi - lo))
    return slice(lo - r0, hi - r0), slice(m.col_off, m.col_off + m.width), data


@contextlib.contextmanager
def _open_on_grid(m: MapOnGrid, grid: MergedGrid, path: Path | None = None) -> Iterator[Any]:
    """A map to read windows of: as it is, or warped onto its footprint on the grid.

    ``path``: another raster of the map's grid to read so (its class probabilities).
    """
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    from geoseg.raster import open_labels

    footprint = {
        "crs": grid.crs,
        "transform": grid.transform * Affine.translation(m.col_off, m.row_off),
        "width": m.width,
        "height": m.height,
    }
    if m.mode and path is None:
        with finer_on_grid(
            m.path, footprint, what="the map", target=f"the merged grid of {grid.maps[0].path}"
        ) as finer:
            yield _Voted(finer, grid.taxonomy, m.width)
        return
    with open_labels(path or m.path) as src:
        if not m.resampled:
            yield src
            return
        nodata = grid.taxonomy.nodata if path is None else PROBABILITY_NODATA
        # a finer map's probabilities: the mean of its pixels under each pixel
        how = Resampling.average if m.mode else Resampling.nearest
        with WarpedVRT(
            src,
            **footprint,
            resampling=how,
            src_nodata=nodata if src.nodata is None else src.nodata,
            nodata=nodata,
        ) as vrt:
            yield vrt


class _Voted:
    """A finer map read onto its footprint on the merged grid by its most common leaf.

    Read like the map (``read(window=...)``: coarse code, fine code, confidence): at
    each pixel, the leaf most of the finer pixels under it have (see
    :mod:`geoseg.aggregate`), its parent as the coarse class, and as confidence the
    winners' confidences summed over the pixels under it, divided by their number,
    labelled or not: the winner's share of the pixel as the finer map is sure of it (a
    pixel split between classes, or partly clouded, is less sure than its parts).
    """

    def __init__(self, finer: Finer, tax: Taxonomy, width: int) -> None:
        self.finer, self.tax, self.width = finer, tax, width
        self.luts = (tax.code_to_index_lut("coarse"), tax.code_to_index_lut("fine"))
        # by leaf, and nodata for leaf -1 (no class)
        self.leaf_coarse, self.leaf_fine = (np.append(c, tax.nodata) for c in tax.leaf_codes())

    def _leaves(
        self, reader: Any, win: Window, keep: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        data = reader.read([1, 2, 3], window=win)
        coarse = lookup_codes(data[0], self.luts[0])
        fine = lookup_codes(data[1], self.luts[1])
        leaf = self.tax.leaf_index(coarse, fine)
        if keep is not None:
            leaf[~keep] = -1
        return leaf, data[2].astype(np.float64)

    def read(self, window: Window) -> np.ndarray:
        """The ``(3, rows, width)`` bands of ``window`` (whole rows of the footprint)."""
        tax = self.tax
        leaf, support = self.finer.votes(
            int(window.row_off), int(window.height), self.width, self._leaves, len(tax.leaves)
        )
        out = np.empty((3, *leaf.shape), np.dtype(tax.dtype))
        out[0] = self.leaf_coarse[leaf]
        out[1] = self.leaf_fine[leaf]
        out[2] = np.where(leaf >= 0, np.clip(np.round(support), 1, 100), tax.nodata)
        return out


def probabilities_of(path: str | Path) -> Path:
    """The class probabilities beside map ``path`` (``geoseg predict --probabilities``)."""
    return Path(path).parent / PROBABILITIES


def _check_probabilities(grid: MergedGrid) -> None:
    """Refuse the ``mean`` rule for a map without class probabilities of its grid."""
    from geoseg.raster import open_labels

    tax = grid.taxonomy
    for m in grid.maps:
        beside = probabilities_of(m.path)
        if not beside.exists():
            raise RasterFormatError(
                f"{m.path}: --rule mean averages class probabilities, and there is no "
                f"{PROBABILITIES} beside it: predict its scene with --probabilities, or use "
                "another rule"
            )
        with open_labels(beside) as p, open_labels(m.path) as lab:
            theirs_id = p.tags().get(MAP_ID)
            if m.map_id and theirs_id and theirs_id != m.map_id:
                raise RasterFormatError(
                    f"{beside}: written by another run than {m.path} beside it (their "
                    f"{MAP_ID} tags differ): predict the scene again with --probabilities"
                )
            raw = p.tags().get("GEOSEG_PROBABILITIES_TAXONOMY")
            order = [c.code for c in tax.coarse] + [f.code for f in tax.fine]
            theirs = None
            if raw:
                other = Taxonomy.from_dict(json.loads(raw), source=str(beside))
                theirs = [c.code for c in other.coarse] + [f.code for f in other.fine]
            if theirs != order:
                raise RasterFormatError(
                    f"{beside}: not the class probabilities of taxonomy {tax.name!r} in the "
                    f"order of {grid.maps[0].path} (its bands are classes "
                    f"{theirs if theirs else 'it does not name'}): predict the scene again "
                    "with --probabilities and the bundle of the other maps"
                )
            same_grid = p.crs == lab.crs and p.transform == lab.transform
            if not same_grid or (p.count, p.width, p.height) != (
                tax.n_coarse + tax.n_fine,
                lab.width,
                lab.height,
            ):
                raise RasterFormatError(
                    f"{beside}: {p.count} bands of {p.width} x {p.height} pixels at "
                    f"{tuple(p.transform)[2:6:3]}, not the {tax.n_coarse + tax.n_fine} "
                    f"classes of taxonomy {tax.name!r} on the grid of {m.path}: it belongs "
                    "to another prediction; predict again with --probabilities"
                )


def _mean_strips(
    grid: MergedGrid,
    sources: list[Any],
    probs: list[Any],
    step: int,
    sink: Callable[[Window, np.ndarray], None] | None = None,
) -> Iterator[tuple[Window, np.ndarray, np.ndarray]]:
    """:func:`merge_strips` under the ``mean`` rule.

    At each pixel, every class's probability is averaged over the maps that label the
    pixel (:func:`_mean_sums`); the label is the most probable leaf of the mean (a fine
    class, or a coarse class without fine classes), as :func:`geoseg.hierarchy.decode`
    chooses one, so the fine class is a child of the coarse one. The confidence is the
    leaf's mean probability; the source, the map most sure of that leaf (the first
    listed on a tie).
    """
    tax = grid.taxonomy
    nodata, dtype = tax.nodata, np.dtype(tax.dtype)
    nc = tax.n_coarse
    childless = np.asarray(tax.childless_coarse_index, np.int64)
    # the bands of the leaves: every fine class, then the coarse classes without any
    leaf_band = np.concatenate([nc + np.arange(tax.n_fine), childless])
    leaf_coarse, leaf_fine = tax.leaf_codes()
    for window, total, count, parts in _mean_sums(grid, sources, probs, step):
        h = window.height
        labelled = count > 0
        if sink is not None:  # in float32, in place: the strip's sums are the largest array
            mean_all = np.divide(total, np.maximum(count, 1, dtype=np.float32))
            mean_all = np.round(mean_all, out=mean_all).astype(np.uint8)
            mean_all[:, ~labelled] = PROBABILITY_NODATA
            sink(window, mean_all)
        leaf = total[leaf_band].argmax(axis=0)  # of the sums: the same as of the means
        band = leaf_band[leaf]
        mean = np.take_along_axis(total, band[None], axis=0)[0] / np.maximum(count, 1)
        out = np.full((3, h, grid.width), nodata, dtype)
        out[0][labelled] = leaf_coarse[leaf[labelled]]
        out[1][labelled] = leaf_fine[leaf[labelled]]
        out[2][labelled] = np.clip(np.round(mean[labelled]), 1, 100)
        source = np.full((h, grid.width), -1, np.int32)
        surest = np.full((h, grid.width), -1, np.int32)
        for i, kept in enumerate(parts):
            if kept is None:
                continue
            rows_out, cols_out, values, has = kept
            own = np.take_along_axis(values, band[None, rows_out, cols_out], axis=0)[0]
            take = has & (own.astype(np.int32) > surest[rows_out, cols_out])
            surest[rows_out, cols_out][take] = own[take]
            source[rows_out, cols_out][take] = i
        yield window, out, source


def _mean_sums(
    grid: MergedGrid, sources: list[Any], probs: list[Any], step: int
) -> Iterator[
    tuple[Window, np.ndarray, np.ndarray, list[tuple[slice, slice, np.ndarray, np.ndarray] | None]]
]:
    """Per band of rows: each class's probability summed over the maps that label a pixel.

    Yields the window, the sums, how many maps label each pixel, and each map's part
    (where it lies, its probabilities, where it labels; ``None`` off the band).
    """
    nodata = grid.taxonomy.nodata
    n = grid.taxonomy.n_coarse + grid.taxonomy.n_fine
    for r0 in range(0, grid.height, step):
        h = min(step, grid.height - r0)
        total = np.zeros((n, h, grid.width), np.float32)
        count = np.zeros((h, grid.width), np.int32)
        parts: list[tuple[slice, slice, np.ndarray, np.ndarray] | None] = []
        for m, src, prob in zip(grid.maps, sources, probs, strict=True):
            if (part := _rows_of(m, src, r0, h)) is None:
                parts.append(None)
                continue
            rows_out, cols_out, data = part
            p = _rows_of(m, prob, r0, h)
            assert p is not None  # the same grid as the map's labels
            values = p[2]
            has = (data[0] != nodata) & (values[0] != PROBABILITY_NODATA)
            total[:, rows_out, cols_out] += np.where(has, values, 0)
            count[rows_out, cols_out] += has
            parts.append((rows_out, cols_out, values, has))
        yield Window(0, r0, grid.width, h), total, count, parts


def _majority_strips(
    grid: MergedGrid, sources: list[Any], step: int
) -> Iterator[tuple[Window, np.ndarray, np.ndarray]]:
    """:func:`merge_strips` under the ``majority`` rule."""
    nodata = grid.taxonomy.nodata
    dtype = np.dtype(grid.taxonomy.dtype)
    n = len(grid.maps)
    for r0 in range(0, grid.height, step):
        h = min(step, grid.height - r0)
        stack = np.full((n, 3, h, grid.width), nodata, dtype)
        for i, (m, src) in enumerate(zip(grid.maps, sources, strict=True)):
            if (part := _rows_of(m, src, r0, h)) is not None:
                rows_out, cols_out, data = part
                stack[i, :, rows_out, cols_out] = data
        flat = stack.reshape(n, 3, h * grid.width)
        source = np.full(h * grid.width, -1, np.int32)
        for p0 in range(0, h * grid.width, VOTE_PIXELS):
            chunk = flat[:, :, p0 : p0 + VOTE_PIXELS]
            coarse, fine, conf = chunk[:, 0], chunk[:, 1], chunk[:, 2]
            source[p0 : p0 + VOTE_PIXELS] = majority_vote(
                coarse, fine, conf, coarse != nodata, fine != nodata
            )
        out = np.full((3, h * grid.width), nodata, dtype)
        has = source >= 0
        picked = flat[source[has], :, np.flatnonzero(has)]  # (pixels, 3)
        out[:, has] = picked.T
        yield (
            Window(0, r0, grid.width, h),
            out.reshape(3, h, grid.width),
            source.reshape(h, grid.width),
        )


def majority_vote(
    coarse: np.ndarray,
    fine: np.ndarray,
    confidence: np.ndarray,
    valid: np.ndarray,
    fine_valid: np.ndarray | None = None,
) -> np.ndarray:
    """Which map's label wins a vote at each pixel, level by level.

    The coarse class most maps give wins; then, among the maps that gave it and have a
    fine class, the fine class most of them give. A tie at either level goes to the
    class whose maps are the more confident in sum, then to the class of the map listed
    first. The label comes from the most confident map that gave both winning classes
    (the first listed on a tie; where none of the coarse winners has a fine class, the
    most confident of them), so the fine class is a child of the coarse one wherever it
    is in every map.

    Parameters
    ----------
    coarse, fine, confidence : numpy.ndarray
        ``(maps, pixels)``: each map's bands.
    valid : numpy.ndarray
        ``(maps, pixels)`` bool: the map labels the pixel.
    fine_valid : numpy.ndarray, optional
        ``(maps, pixels)`` bool: the map has a fine class there (a map of a model
        trained on coarse labels only has none); all of ``valid`` if not given.

    Returns
    -------
    numpy.ndarray
        ``(pixels,)`` int32: the index of the map the label comes from; ``-1`` where no
        map has one.
    """
    conf = np.where(valid, confidence.astype(np.int64), 0)

    def tally(keys: np.ndarray, among: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # per map and pixel: the maps of `among` with its key, and their confidence
        count = np.zeros(keys.shape, np.int64)
        total = np.zeros(keys.shape, np.int64)
        for j in range(keys.shape[0]):
            same = among & among[j] & (keys == keys[j])
            count += same
            total += same * conf[j]
        return count, total

    def first_best(candidates: np.ndarray, *keys: np.ndarray) -> np.ndarray:
        # narrow the candidates by each key in turn (the largest value), then the first
        for key in keys:
            top = np.where(candidates, key, -1).max(axis=0)
            candidates = candidates & (key == top)
        return candidates.argmax(axis=0)  # the first candidate (0 where there is none)

    def class_of(keys: np.ndarray, among: np.ndarray) -> np.ndarray:
        # the winning class of the maps in `among`, pixel by pixel
        count, total = tally(keys, among)
        return np.take_along_axis(keys, first_best(among, count, total)[None], axis=0)[0]

    among = valid & (coarse == class_of(coarse, valid))
    voters = among & (valid if fine_valid is None else fine_valid)
    # where no coarse winner has a fine class, the surest of them gives the label
    voters = np.where(voters.any(axis=0), voters, among)
    givers = voters & (fine == class_of(fine, voters))
    return np.where(valid.any(axis=0), first_best(givers, conf), -1).astype(np.int32)


def _code_doubts(
    coarse_px: dict[int, int], fine_px: dict[int, int], astray: int, tax: Taxonomy
) -> list[str]:
    """What the merged map holds that its taxonomy does not allow, one sentence each."""
    out = []
    for level, found, classes in (("coarse", coarse_px, tax.coarse), ("fine", fine_px, tax.fine)):
        known = {c.code for c in classes} | {tax.nodata}
        if unknown := sorted(set(found) - known):
            out.append(
                f"{sum(found[c] for c in unknown):,} pixels hold {level} codes "
                f"{', '.join(map(str, unknown[:8]))} that taxonomy {tax.name!r} does not have: "
                "a map edited by hand or of another model; check the inputs"
            )
    if astray:
        out.append(
            f"{astray:,} pixels have a fine class that is not a child of their coarse class "
            f"in taxonomy {tax.name!r}, as an input gives them: check the inputs"
        )
    return out


def _source_raster(path: Path, grid: MergedGrid) -> Any:
    """``source.tif``: which map each merged pixel's label came from (1 = the first; 0: none).

    A context manager giving the tiled GeoTIFF to write windows into; a Cloud-Optimized
    GeoTIFF (nearest overviews) on exit, as ``labels.tif``.
    """
    import json

    from geoseg.write import cog_writer

    def describe(dst: Any) -> None:
        dst.set_band_description(1, "source")
        dst.update_tags(
            GEOSEG_SOURCES=json.dumps([absolute_path(m.path) for m in grid.maps]),
            MEANING="1 + the index of the map (in the order given) each label came from; 0: none",
        )

    size = {
        "width": grid.width,
        "height": grid.height,
        "count": 1,
        "dtype": "uint8" if len(grid.maps) < 255 else "uint16",
    }
    return cog_writer(
        path,
        size,
        crs=grid.crs,
        transform=grid.transform,
        nodata=0,
        describe=describe,
        overviews="NEAREST",
    )


@locks_output("out_dir")
def merge_maps(
    paths: Sequence[str | Path],
    out_dir: str | Path,
    *,
    vector: bool = True,
    formats: Sequence[str] = ("gpkg",),
    vector_options: Any = None,
    overwrite: bool = False,
    rule: str = "confidence",
    align: bool = False,
    grid_of: str | Path | None = None,
    resampling: str = "auto",
) -> dict[str, Any]:
    """Merge label maps into ``out_dir`` (labels.tif, source.tif, landcover.*, merge.json...).

    Parameters
    ----------
    paths : sequence of str or Path
        geoseg ``labels.tif`` files of one area, one taxonomy and one grid; a tie of
        confidence goes to the map listed first.
    out_dir : str or Path
        Output directory; must not exist unless ``overwrite``.
    vector, formats, vector_options
        Polygons of the merged map, as ``geoseg predict`` writes them.
    overwrite : bool
        Replace an existing output directory (one geoseg wrote).
    rule : {"confidence", "first", "majority", "mean"}
        At each pixel, the most confident label (a tie to the map listed first); the
        label of the first listed map that has one (a map of one date wherever it is
        clear, the others filling its gaps only); the label most maps give, level by
        level (:func:`majority_vote`: several dates of one place, where one date's error
        is outvoted); or the most probable leaf of the maps' mean class probabilities
        (``probabilities.tif`` beside each map, see :func:`_mean_strips`).
    align : bool
        Resample a map in another CRS, at another pixel size or off the first map's
        pixel edges onto the first map's grid instead of refusing it.
    resampling : {"auto", "nearest", "mode"}
        How ``align`` resamples: the pixel under each pixel's centre, or the most common
        leaf of a finer map's pixels under it (``auto``: ``mode`` for maps whose pixels
        are at most a quarter of the grid's); see :func:`merged_grid`.
    grid_of : str or Path, optional
        A raster whose grid the merged map takes instead of the first map's (see
        :func:`merged_grid`); maps off it need ``align``.

    Besides the merged ``labels.tif``, ``source.tif`` tells at each pixel which map
    its label came from (1 for the first listed; 0 where none has one).

    Returns
    -------
    dict
        The contents of ``merge.json``: the inputs with how many pixels each gave, the
        grid, the pixels no map labels, and the pixels and ground area of each class
        (as ``run.json`` of ``geoseg predict`` has them).
    """
    import json
    import time

    from geoseg import __version__
    from geoseg.atomic import atomic_dir, check_writable
    from geoseg.export import FORMATS, write_vector
    from geoseg.quicklook import render_quicklook
    from geoseg.vectorize import VectorizeOptions, vectorize_layers
    from geoseg.workflow import area_per_class
    from geoseg.write import probabilities_writer, write_labels

    if rule not in RULES:
        raise ConfigError(f"merge rule {rule!r} is not one of {', '.join(RULES)}")
    grid = merged_grid(paths, align=align, grid=grid_of, resampling=resampling)
    if rule in ("majority", "mean"):  # where a copy would count twice
        _refuse_merges_of_inputs(grid)
        _refuse_copies(grid)
    if rule == "mean":
        _check_probabilities(grid)
    out_dir = Path(out_dir).absolute()
    check_writable(out_dir, overwrite=overwrite, inputs=tuple(paths), output="map")
    notes = list(grid.notes)
    models = {m.bundle for m in grid.maps if m.bundle}
    if len(models) > 1 and rule != "first":
        names = sorted(b.split(" ")[0] + " " + b.split(" ")[-1][:12] for b in models)
        how = {
            "confidence": "takes the higher of their confidences",
            "majority": "breaks ties by their confidences",
            "mean": "averages their probabilities",
        }[rule]
        notes.append(
            f"the maps come from {len(models)} models ({', '.join(names)}): the {rule} rule "
            f"{how} as if they were calibrated alike, which models of other training are "
            "not: check the merge, or use --rule first with the trusted map first"
        )
    if rule == "majority" and len(grid.maps) < 3:
        notes.append(
            "the majority rule with two maps is the confidence rule (two votes agree or "
            "tie, and a tie goes to the surer map): a vote outvotes one date's error from "
            "three maps on"
        )
    given = np.zeros(len(grid.maps), np.int64)
    unlabelled = astray = 0
    per_code = [np.zeros(1, np.int64), np.zeros(1, np.int64)]  # coarse, fine
    tax = grid.taxonomy
    parent = tax.fine_to_coarse_code_lut(np.iinfo(np.dtype(tax.dtype)).max + 1)

    def parts(origin: Any, probs: Any) -> Iterator[tuple[Window, np.ndarray]]:
        nonlocal unlabelled, astray
        sink = None if probs is None else lambda w, p: probs.write(p, window=w)
        for window, labels, source in merge_strips(grid, rule=rule, probabilities=sink):
            origin.write((source + 1).astype(origin.dtypes[0])[None], window=window)
            given[:] += np.bincount(source[source >= 0], minlength=len(grid.maps))
            unlabelled += int((source < 0).sum())
            fine = labels[1]
            astray += int(((fine != tax.nodata) & (parent[fine] != labels[0])).sum())
            for level in range(2):
                found = np.bincount(labels[level].ravel())
                size = max(found.size, per_code[level].size)
                per_code[level] = np.pad(per_code[level], (0, size - per_code[level].size))
                per_code[level][: found.size] += found
            yield window, labels

    map_tags = {MAP_ID: new_map_id(), MERGED_FROM: merged_from(grid)}
    with atomic_dir(out_dir, overwrite=overwrite, output="map") as tmp:
        with contextlib.ExitStack() as stack:
            origin = stack.enter_context(_source_raster(tmp / "source.tif", grid))
            # the mean rule also keeps the mean probabilities it chose its labels from
            probs = (
                stack.enter_context(
                    probabilities_writer(
                        tmp / PROBABILITIES,
                        width=grid.width,
                        height=grid.height,
                        crs=grid.crs,
                        transform=grid.transform,
                        taxonomy=grid.taxonomy,
                        tags=map_tags,
                    )
                )
                if rule == "mean"
                else None
            )
            labels = write_labels(
                tmp / "labels.tif",
                parts(origin, probs),
                width=grid.width,
                height=grid.height,
                crs=grid.crs,
                transform=grid.transform,
                taxonomy=grid.taxonomy,
                tags=map_tags,
            )
        outputs = ["labels.tif", "source.tif"] + ([PROBABILITIES] if rule == "mean" else [])
        if vector and formats:
            layers = vectorize_layers(labels, vector_options or VectorizeOptions())
            for f in formats:
                name = f"landcover{FORMATS[f]}"
                write_vector(layers, tmp / name, taxonomy=grid.taxonomy)
                outputs.append(name)
        render_quicklook(labels, grid.taxonomy, tmp / "quicklook.png")
        outputs.append("quicklook.png")
        coarse_px, fine_px = ({c: int(n) for c, n in enumerate(k) if n} for k in per_code)
        notes.extend(_code_doubts(coarse_px, fine_px, astray, tax))
        notes.extend(  # a date clouded over, a mask read the wrong way round
            f"{m.path} labels no pixel (nodata everywhere): it adds nothing"
            for m, n in zip(grid.maps, given, strict=True)
            if n == 0 and not _labels_any(m.path, tax.nodata)
        )
        if unlabelled > EMPTY_SHARE * grid.height * grid.width:
            notes.append(  # maps far apart (a wrong CRS), or mostly nodata
                f"{format_share(unlabelled, grid.height * grid.width)} of the merged map "
                f"({grid.width:,} x {grid.height:,} pixels, the union of the maps' extents) "
                "is labelled by no map: check that the maps cover one area (their CRS and "
                "coordinates), or merge the groups of maps that share an area separately"
            )
        for note in notes:
            log.warning("%s: %s", out_dir, note)
        record = {
            "geoseg_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "rule": rule,
            "map_id": map_tags[MAP_ID],
            "grid_of": None if grid_of is None else absolute_path(grid_of),
            "inputs": [
                {
                    "path": absolute_path(m.path),
                    "row_off": m.row_off,
                    "col_off": m.col_off,
                    "pixels_given": int(n),
                    "resampled": m.resampled,
                    "resampling": ("mode" if m.mode else "nearest") if m.resampled else None,
                }
                for m, n in zip(grid.maps, given, strict=True)
            ],
            "width": grid.width,
            "height": grid.height,
            "crs": grid.crs.to_string() if grid.crs else None,
            "transform": list(grid.transform)[:6],
            "unlabelled_pixels": unlabelled,
            "outputs": outputs,
            "warnings": notes,
            "area_per_class": area_per_class(
                labels,
                grid.crs,
                grid.transform,
                (grid.height, grid.width),
                coarse_px,
                fine_px,
                grid.taxonomy,
            ),
        }
        (tmp / "merge.json").write_text(json.dumps(record, indent=2) + "\n")
    log.info("%s: %d maps merged, %d pixels unlabelled", out_dir, len(grid.maps), unlabelled)
    return record
