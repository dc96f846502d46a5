"""Land-cover change between two geoseg label maps: from-to areas and a transition raster.

:func:`compare_maps` reads an earlier and a later map of one taxonomy (the later one on
the earlier one's grid, resampled where asked: nearest neighbour, or the most common
leaf under each pixel of a coarser grid, :mod:`geoseg.aggregate`), strip by strip,
and counts each pixel labelled in both by its pair of classes, ``from`` -> ``to``, at
each level, in pixels and in true ground area (each pixel at its own area:
:func:`geoseg.area.pixel_areas`). The fine level's classes are the taxonomy's leaves:
its fine classes, then the coarse classes without fine classes (Water may become
Deciduous Forest). In the same pass it may write ``change.tif``, whose band per level
holds each pixel's transition (``from_index * n + to_index + 1``; 0 where either map
has no label); :func:`write_change` writes the counts as ``change.json``,
``change.md`` and ``transitions.csv``, and the transitions' names as GDAL category
names.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from rasterio.windows import Window

from geoseg.aggregate import RESAMPLING, choose, finer_on_grid
from geoseg.area import is_planar_true, pixel_areas
from geoseg.change_sample import transition_name
from geoseg.errors import ConfigError, RasterFormatError
from geoseg.intervals import METHODS
from geoseg.map_reading import check_level
from geoseg.raster import absolute_path, grid_mismatch, labels_on_grid, open_labels, strip_rows
from geoseg.taxonomy import ClassDef, Taxonomy, count_codes, stray_codes_message

if TYPE_CHECKING:
    import geopandas as gpd

    from geoseg.map_reading import Level, MapReading
    from geoseg.vectorize import VectorizeOptions

log = logging.getLogger(__name__)

#: Pixels of the maps read at a time (a strip of whole rows, :func:`geoseg.raster.strip_rows`):
#: about 100 bytes each are held while a strip is counted.
STRIP_PIXELS = 1 << 20
#: Band descriptions of change.tif, one per level.
LEVELS = ("coarse", "fine")
#: How a later map on another grid may be resampled (see :func:`compare_maps`).
Resampling_ = Literal["auto", "nearest", "mode"]


@dataclass
class LevelChange:
    """The from-to counts of one level.

    Attributes
    ----------
    level : str
        ``coarse`` or ``fine``.
    classes : list of ClassDef
        The level's classes, in index order (the fine level's: the taxonomy's leaves).
    pixels : numpy.ndarray
        ``(n, n)`` pixels per ``[from, to]`` class index.
    area : numpy.ndarray
        ``(n, n)`` ground area (m², or pixels for maps without a CRS) per pair.
    one_sided : tuple of float
        Area labelled in the earlier map only and in the later map only (outside the
        other's footprint, under its clouds or nodata): not compared.
    """

    level: str
    classes: list[ClassDef]
    pixels: np.ndarray = field(repr=False)
    area: np.ndarray = field(repr=False)
    one_sided: tuple[float, float] = (0.0, 0.0)

    def transition_names(self) -> list[str]:
        """Category names of change.tif's band: ``""`` for 0, then every pair in order."""
        names = [c.name for c in self.classes]
        return [""] + [
            transition_name(a, b, i == j) for i, a in enumerate(names) for j, b in enumerate(names)
        ]

    def record(self) -> dict[str, Any]:
        """The level as ``change.json`` holds it."""
        n = len(self.classes)
        total = float(self.area.sum())
        same = float(np.trace(self.area))
        classes = []
        for i, c in enumerate(self.classes):
            before, after = float(self.area[i].sum()), float(self.area[:, i].sum())
            classes.append(
                {
                    "code": c.code,
                    "name": c.name,
                    "before": before,
                    "after": after,
                    "lost": before - float(self.area[i, i]),
                    "gained": after - float(self.area[i, i]),
                    "net": after - before,
                }
            )
        transitions = [
            {
                "from_code": self.classes[i].code,
                "from_name": self.classes[i].name,
                "to_code": self.classes[j].code,
                "to_name": self.classes[j].name,
                "value": i * n + j + 1,
                "changed": i != j,  # by class, not code: a fine and a coarse code may be equal
                "pixels": int(self.pixels[i, j]),
                "area": float(self.area[i, j]),
            }
            for i in range(n)
            for j in range(n)
            if self.pixels[i, j]
        ]
        return {
            "pixels_compared": int(self.pixels.sum()),
            "area_compared": total,
            "area_earlier_only": self.one_sided[0],
            "area_later_only": self.one_sided[1],
            "area_changed": total - same,
            "changed_share": (total - same) / total if total else None,
            "classes": classes,
            "transitions": transitions,
        }


@dataclass
class MapChange:
    """What :func:`compare_maps` finds; see :class:`LevelChange`."""

    before: str
    after: str
    unit: str  # "m2", or "pixels" for maps without a CRS
    levels: dict[str, LevelChange]
    grid: dict[str, Any] = field(repr=False)
    taxonomy: Taxonomy = field(repr=False)
    aligned: bool = False
    resampling: str | None = None  # how the later map was resampled, when it was
    #: The zones counted in (``file``, ``field``, ``names``, ``warnings``: what reading
    #: them warned of), with ``zones``.
    zones: dict[str, Any] | None = None
    #: Per level, ``zone * n * n + pair`` -> ``[pixels, area]`` (see :func:`by_zone_csv`).
    by_zone: dict[str, dict[int, list[float]]] = field(default_factory=dict, repr=False)
    maps: list[dict[str, str]] = field(default_factory=list)  # path, map_id, bundle
    warnings: list[str] = field(default_factory=list)
    #: Per layer of change polygons written: ``polygons`` and ``area``; and their options.
    polygons: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Per level, the transition (``from * n + to``, ``-1``: none) at each given point.
    at_points: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    #: The error-adjusted estimates of a labelled reference sample
    #: (:func:`geoseg.change_reference.reference_record`).
    reference: dict[str, Any] | None = None

    def record(self) -> dict[str, Any]:
        """What ``change.json`` holds."""
        return {
            "before": self.before,
            "after": self.after,
            "maps": self.maps,
            "warnings": self.warnings,
            "aligned": self.aligned,
            "resampling": self.resampling,
            "unit": self.unit,
            "taxonomy": self.taxonomy.name,
            "levels": {lv: level.record() for lv, level in self.levels.items()},
            **({"polygons": self.polygons} if self.polygons else {}),
            **({"zones": {**self.zones, "transitions": by_zone_rows(self)}} if self.zones else {}),
            **({"reference": self.reference} if self.reference is not None else {}),
        }


def _readings(
    before: str, after: str, taxonomy: str | Path | Taxonomy | None, level: Level | None
) -> tuple[MapReading, MapReading, list[str]]:
    """How to read each map's classes, and where its taxonomy came from.

    A geoseg map carries its taxonomy; another map of class codes (NLCD, ESA
    WorldCover, a map of another tool) takes ``taxonomy``, else the other map's when
    that one is geoseg's. ``level`` is for a single-band map whose codes fit both levels.

    Raises
    ------
    RasterFormatError, ConfigError
        A map's codes are unknown (neither map is geoseg's and no taxonomy is given),
        do not fit the taxonomy, or the two maps have other classes.
    """
    from geoseg.map_reading import load_scoring_taxonomy, map_reading, tagged_taxonomy

    given = load_scoring_taxonomy(taxonomy) if isinstance(taxonomy, str | Path) else taxonomy
    tags, bands = {}, []
    for path in (before, after):
        with open_labels(path) as src:
            tags[path] = tagged_taxonomy(src, path)
            bands.append(src.count)
    if given is None and tags[before] is None and tags[after] is None:
        raise RasterFormatError(
            f"{before}, {after}: neither is a geoseg labels.tif (no GEOSEG_TAXONOMY tag), so "
            "their class codes are unknown: pass --taxonomy with the taxonomy YAML (or a "
            "bundle) they are coded in"
        )
    first_tags, second_tags = tags[before], tags[after]
    if first_tags is not None and second_tags is not None:
        _same_classes(first_tags, second_tags, before, after)
    whats = {before: "the earlier map", after: "the later map"}
    named_given = str(taxonomy)
    if isinstance(taxonomy, Taxonomy):
        named_given = f"taxonomy {taxonomy.name!r}"
    conflict = (
        "so the maps cannot be compared in it: leave out --taxonomy (a geoseg map carries "
        "its own), or pass the taxonomy the maps are coded in"
    )
    readings: dict[str, MapReading] = {}
    sources: dict[str, str] = {}
    if level is not None and 1 not in bands:
        raise ConfigError(
            f"{before}, {after}: these have {bands[0]} and {bands[1]} bands, and the level "
            "option is for a map of a single band: drop --level"
        )
    for path in (before, after):  # geoseg's maps: their own taxonomy (checked against given)
        if tags[path] is not None:
            with open_labels(path) as src:
                readings[path] = map_reading(
                    src, path, given, what=whats[path], conflict_fix=conflict
                )
            sources[path] = "its tags" if given is None else f"its tags, as {named_given}"
    # the others: the given taxonomy, under the names of a geoseg map's (the same codes),
    # else the other map's
    named = next((readings[p].taxonomy for p in (before, after) if p in readings), given)
    for path, other in ((before, after), (after, before)):
        if path not in readings:
            with open_labels(path) as src:
                one = level if src.count == 1 else None
                readings[path] = map_reading(src, path, named, one, what=whats[path])
            sources[path] = named_given if given is not None else f"the other map's ({other})"
    return readings[before], readings[after], [sources[before], sources[after]]


def _same_classes(a: Taxonomy, b: Taxonomy, before: str, after: str) -> None:
    """Refuse maps whose classes differ (codes per level, and fine parents; not order)."""
    for level in LEVELS:
        ca = sorted((c.code, c.parent or 0) for c in getattr(a, level))
        cb = sorted((c.code, c.parent or 0) for c in getattr(b, level))
        if ca != cb:
            raise RasterFormatError(
                f"{after}: its {level} classes ({', '.join(str(c) for c, _ in cb) or 'none'}) "
                f"are not those of {before} ({', '.join(str(c) for c, _ in ca) or 'none'}): "
                "compare maps of one taxonomy (made by one model, or merged from such maps)"
            )


def _leaf_keys(tax: Taxonomy) -> list[tuple[str, int]]:
    """The leaves (:attr:`Taxonomy.leaves`) as ``(level, code)``.

    A fine code and a coarse code may be equal, and stand for other classes.
    """
    return [("fine", c.code) for c in tax.fine] + [
        ("coarse", int(tax.coarse_codes[i])) for i in tax.childless_coarse_index
    ]


@dataclass(frozen=True)
class _Indices:
    """A map's class indices (its own taxonomy's) onto the comparison's, by code.

    ``coarse`` and ``leaf`` map an index of the map's taxonomy to the comparison
    taxonomy's (``-1``: not there), with a last entry ``-1`` for index ``-1``.
    """

    coarse: np.ndarray
    leaf: np.ndarray

    @classmethod
    def between(cls, own: Taxonomy, target: Taxonomy) -> _Indices:
        """The mapping of ``own``'s indices onto ``target``'s."""
        coarse_at = {c.code: i for i, c in enumerate(target.coarse)}
        leaf_at = {k: i for i, k in enumerate(_leaf_keys(target))}
        coarse = [coarse_at.get(c.code, -1) for c in own.coarse]
        leaf = [leaf_at.get(k, -1) for k in _leaf_keys(own)]
        return cls(np.array([*coarse, -1], np.int64), np.array([*leaf, -1], np.int64))


@dataclass
class _Tally:
    """What one map holds besides its classes: stray codes, levels that disagree."""

    stray: dict[int, int] = field(default_factory=dict)
    inconsistent: int = 0

    def add(
        self, reading: MapReading, coarse: np.ndarray, fine: np.ndarray, unknown: np.ndarray
    ) -> None:
        """Count a window's stray codes and, in a map of two bands, its levels that disagree."""
        if reading.two_levels:
            self.inconsistent += int(reading.taxonomy.contradicts(coarse, fine).sum())
        count_codes(self.stray, unknown)


def _classes(
    reading: MapReading, src: Any, r0: int, h: int, reached: int | None, index: _Indices,
    tally: _Tally,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Class indices of a strip's pixels per level (``-1`` where unlabelled).

    Indices of the comparison's taxonomy (``index``), whatever the order of the map's
    own. The codes the taxonomy does not list, and the pixels whose fine class is not a
    child of their coarse class (a two-band map of another program), are counted in
    ``tally``.
    """
    win = Window(0, r0, src.width, h)
    keep = None if reached is None else src.read(reached, window=win) > 0  # where it reaches
    coarse, fine, unknown = reading.read(src, win, keep)
    tally.add(reading, coarse, fine, unknown)
    leaf = reading.taxonomy.leaf_index(coarse, fine)
    return {"coarse": index.coarse[coarse], "fine": index.leaf[leaf]}


def _paired_strips(
    readings: tuple[MapReading, MapReading], grid: dict[str, Any], align: bool,
    tallies: tuple[_Tally, _Tally], resampling: str | None, by_leaf: bool = True,
) -> Iterator[tuple[int, int, dict[str, np.ndarray], dict[str, np.ndarray]]]:  # fmt: skip
    """Both maps' class indices per level, strip by strip: ``(row0, rows, before, after)``.

    ``resampling == "mode"``: the later map's pixels under each earlier pixel vote
    (:mod:`geoseg.aggregate`), by their leaf where the fine level is compared
    (``by_leaf``: the coarse class is the winner's parent, so that the levels stay one
    branch), else by their coarse class.
    """
    first, second = readings
    before, after = first.path, second.path
    index = [_Indices.between(r.taxonomy, first.taxonomy) for r in readings]
    if resampling == "mode":
        tax = first.taxonomy

        def leaves_of(reader: Any, win: Window, keep: np.ndarray | None) -> tuple[np.ndarray, None]:
            coarse, fine, unknown = second.read(reader, win, keep)
            tallies[1].add(second, coarse, fine, unknown)
            if by_leaf:
                return index[1].leaf[second.taxonomy.leaf_index(coarse, fine)], None
            return index[1].coarse[coarse], None

        parent = np.append(tax.leaf_parent_index, -1)  # and -1 (no class) for leaf -1
        n = len(tax.leaves) if by_leaf else tax.n_coarse
        target = f"the earlier map {before}"
        with (
            open_labels(before) as src,
            finer_on_grid(after, grid, what="the later map", target=target) as finer,
        ):
            rows = strip_rows(src.width, STRIP_PIXELS)
            for r0 in range(0, src.height, rows):
                h = min(rows, src.height - r0)
                a = _classes(first, src, r0, h, None, index[0], tallies[0])
                won, _ = finer.votes(r0, h, src.width, leaves_of, n)
                b = {"coarse": parent[won], "fine": won} if by_leaf else {
                    "coarse": won, "fine": np.full_like(won, -1)}  # fmt: skip
                yield r0, h, a, b
        return
    fix = "pass --align to resample it onto the earlier map's grid"
    with (
        open_labels(before) as src,
        labels_on_grid(
            after, **grid, align=align, what="the later map", target=f"the earlier map {before}",
            target_path=before, fix=fix,
        ) as (later, reached),
    ):  # fmt: skip
        rows = strip_rows(src.width, STRIP_PIXELS)
        for r0 in range(0, src.height, rows):
            h = min(rows, src.height - r0)
            a = _classes(first, src, r0, h, None, index[0], tallies[0])
            yield r0, h, a, _classes(second, later, r0, h, reached, index[1], tallies[1])


def compare_maps(
    before: str | Path,
    after: str | Path,
    *,
    align: bool = False,
    raster: Path | None = None,
    taxonomy: str | Path | Taxonomy | None = None,
    level: Level | None = None,
    resampling: Resampling_ = "auto",
    zones: ZoneLayer | None = None,
    reference: tuple[Any, str | None] | None = None,
    interval: str = "beta",
) -> MapChange:
    """From-to counts of two land-cover maps of one taxonomy.

    Parameters
    ----------
    before, after : str or Path
        The earlier and the later map: ``labels.tif`` of ``geoseg predict``, ``merge`` or
        ``batch``, or any map of class codes of the taxonomy (one band of coarse or
        fine codes, or two bands, coarse then fine), as ``geoseg evaluate`` reads them.
    align : bool
        Resample ``after`` onto ``before``'s grid (see ``resampling``) where it lies on
        another (CRS, pixel size, pixel edges), instead of refusing it.
    raster : Path, optional
        Also write ``change.tif`` there, in the same pass over the maps.
    taxonomy : str, Path or Taxonomy, optional
        The taxonomy YAML (or a bundle) of the maps' codes. Needed where neither map is
        geoseg's; a map that is not takes the other's otherwise.
    level : {"coarse", "fine"}, optional
        The level of a single-band map whose codes fit both.
    resampling : {"auto", "nearest", "mode"}
        How ``align`` resamples ``after``: nearest neighbour, or the most common leaf of
        its pixels under each pixel, the coarse class the winner's parent (``mode``, on
        any grid: :mod:`geoseg.aggregate`); ``auto``: ``mode`` where ``after``'s pixels
        are at most a quarter of ``before``'s in area (twice as fine), as aggregating a
        finer map onto a coarser grid calls for, else nearest neighbour.
    zones : ZoneLayer, optional
        Polygons (districts, parcels) to count each transition in, too
        (:attr:`MapChange.by_zone`).
    reference : tuple, optional
        A labelled reference sample drawn on a change.tif of these dates (``geoseg sample
        change.tif``: its file, or a GeoDataFrame) and its layer (``None``: the first):
        its error-adjusted areas and
        accuracies go into :attr:`MapChange.reference`
        (:mod:`geoseg.change_reference`).
    interval : {"beta", "wald"}
        The method of their 95 % intervals (:mod:`geoseg.intervals`): Korn and
        Graubard's, or the normal ``estimate ± 1.96 SE`` of Olofsson et al. (2014).

    Raises
    ------
    RasterFormatError
        Codes unknown or outside the taxonomy; other classes; another grid without
        ``align``; the same map twice.
    ConfigError
        A single band's level cannot be told; a taxonomy that contradicts a map's own;
        a reference sample in another unit, or without labels.
    """
    check_level(level)
    if interval not in METHODS:
        raise ConfigError(f"interval {interval!r} is not one of {', '.join(METHODS)}")
    if resampling not in RESAMPLING:
        raise ConfigError(f"resampling {resampling!r} is not one of {', '.join(RESAMPLING)}")
    before, after = absolute_path(before), absolute_path(after)
    first, second, sources = _readings(before, after, taxonomy, level)
    tax = first.taxonomy
    with open_labels(before) as src:
        grid = {"width": src.width, "height": src.height, "crs": src.crs,
                "transform": src.transform}  # fmt: skip
        maps = [_provenance(src, before, sources[0])]
    with open_labels(after) as src:
        maps.append(_provenance(src, after, sources[1]))
        georef = _georeferencing(before, after, grid, src)
        aligned = grid_mismatch(src, **grid) is not None  # resampled, with align
        how = choose(src, grid, resampling) if aligned and align else None
    warnings = georef
    same = before == after or (maps[0]["map_id"] and maps[0]["map_id"] == maps[1]["map_id"])
    if same:
        raise RasterFormatError(
            f"{after}: the same map as {before}"
            + ("" if before == after else f" (GEOSEG_MAP_ID {maps[0]['map_id']})")
            + ": compare the maps of two dates"
        )
    warnings += _differences(tax, second.taxonomy, maps)
    both_fine = bool(tax.n_fine) and first.has_fine and second.has_fine
    if tax.n_fine and not both_fine:
        coarse_only = [r.path for r in (first, second) if not r.has_fine]
        warnings.append(
            f"{' and '.join(coarse_only)} {'has' if len(coarse_only) == 1 else 'have'} coarse "
            "classes only: the fine level is not compared"
        )
    levels = {"coarse": list(tax.coarse), **({"fine": tax.leaves} if both_fine else {})}
    n = {lv: len(c) for lv, c in levels.items()}
    pixels = {lv: np.zeros(k * k, np.int64) for lv, k in n.items()}
    area = {lv: np.zeros(k * k) for lv, k in n.items()}
    one_sided = {lv: np.zeros(2) for lv in n}  # labelled in the earlier / later map only
    tallies = (_Tally(), _Tally())
    sample = None
    at_rows, at_cols = np.empty(0, np.int64), np.empty(0, np.int64)
    if reference is not None:
        from geoseg.change_reference import read_change_reference

        sample = read_change_reference(reference[0], reference[1], grid, tax)
        at_rows, at_cols = sample.rows, sample.cols
    at_points = {lv: np.full(at_rows.size, -1, np.int64) for lv in n}
    zone_at = np.full(at_rows.size, -1, np.int64)  # the zone of each point (-1: none)
    planar = None
    if grid["crs"] is not None:  # the map's, for every strip alike
        cx, cy = grid["transform"] @ (grid["width"] / 2, grid["height"] / 2)
        planar = is_planar_true(grid["crs"], cx, cy)
    with contextlib.ExitStack() as stack:
        dst = None
        # transitions of up to 255 classes fit 16 bits, of larger legends 32
        dtype = np.uint16 if max(n.values()) ** 2 < 2**16 else np.uint32
        if raster is not None:
            dst = stack.enter_context(
                _raster_writer(raster, grid, list(n), before, after, np.dtype(dtype).name, tax)
            )
        on_grid = None
        by_zone: dict[str, dict[int, list[float]]] = {lv: {} for lv in n}
        if zones is not None:
            from geoseg.zonal import zones_on_grid

            on_grid = stack.enter_context(
                zones_on_grid(*zones, grid, before, options=("--zone-field", "--zone-layer"))
            )
        strips = _paired_strips((first, second), grid, align, tallies, how, by_leaf="fine" in n)
        for r0, h, a, b in strips:
            weight = (
                pixel_areas(grid["crs"], grid["transform"], r0, h, 0, grid["width"], planar=planar)
                if grid["crs"] is not None
                else None
            )
            values = np.zeros((len(n), h, grid["width"]), dtype)  # change.tif's strip
            zone = None if on_grid is None else on_grid.read(Window(0, r0, grid["width"], h))
            here = (at_rows >= r0) & (at_rows < r0 + h) & (at_cols >= 0) & (
                at_cols < grid["width"])  # fmt: skip
            if zone is not None and here.any():
                zone_at[here] = zone[at_rows[here] - r0, at_cols[here]]
            for i, (lv, k) in enumerate(n.items()):
                both = (a[lv] >= 0) & (b[lv] >= 0)
                pair = a[lv][both] * k + b[lv][both]
                values[i][both] = pair + 1
                pixels[lv] += np.bincount(pair, minlength=k * k)
                w = None if weight is None else weight[both]
                area[lv] += np.bincount(pair, weights=w, minlength=k * k)
                for side, only in enumerate(((a[lv] >= 0) & ~both, (b[lv] >= 0) & ~both)):
                    one_sided[lv][side] += only.sum() if weight is None else weight[only].sum()
                if zone is not None:
                    _count_by_zone(by_zone[lv], zone[both], pair, k, w)
                if here.any():
                    at_points[lv][here] = values[i, at_rows[here] - r0, at_cols[here]].astype(
                        np.int64) - 1  # fmt: skip
            if dst is not None:
                dst.write(values, window=Window(0, r0, grid["width"], h))
    for path, tally, voted in zip((before, after), tallies, (False, how == "mode"), strict=True):
        warnings += _tally_notes(path, tally, tax, voted=voted, by_leaf="fine" in n)
    if not pixels["coarse"].sum():
        raise RasterFormatError(
            f"{after}: no pixel is labelled in both it and {before}"
            + ("; " + "; ".join(warnings) if warnings else "")
            + ": compare maps of one area whose codes are classes of the taxonomy"
        )
    zone_record = None
    reference_record = None
    if sample is not None:
        from geoseg.change_reference import reference_record as estimates

        unit = "m2" if grid["crs"] is not None else "pixels"
        tallied = {lv: LevelChange(lv, levels[lv], pixels[lv].reshape(k, k),
                                   area[lv].reshape(k, k)) for lv, k in n.items()}  # fmt: skip
        reference_record = estimates(
            sample, tallied, at_points, unit, (grid["height"], grid["width"]),
            zones=None if on_grid is None else (zone_at, on_grid.names, by_zone),
            method=interval,
        )  # fmt: skip
        warnings += reference_record["warnings"]
    if zones is not None and on_grid is not None:
        zone_record = {"file": zones[0], "field": zones[1], "names": on_grid.names,
                       "warnings": on_grid.warnings}  # fmt: skip
    return MapChange(
        before=before,
        after=after,
        unit="m2" if grid["crs"] is not None else "pixels",
        levels={
            lv: LevelChange(
                lv,
                levels[lv],
                pixels[lv].reshape(k, k),
                area[lv].reshape(k, k),
                (float(one_sided[lv][0]), float(one_sided[lv][1])),
            )
            for lv, k in n.items()
        },
        grid=grid,
        taxonomy=tax,
        aligned=aligned,
        resampling=how,
        zones=zone_record,
        by_zone=by_zone if on_grid is not None else {},
        maps=maps,
        warnings=warnings,
        at_points=at_points,
        reference=reference_record,
    )


#: Zones to count transitions in: the vector file, its attribute naming each zone, its
#: layer (``None``: the first with geometries).
ZoneLayer = tuple[str, str, str | None]


def _count_by_zone(
    into: dict[int, list[float]], zone: np.ndarray, pair: np.ndarray, k: int, w: Any
) -> None:
    """Add a strip's pixels (and areas ``w``) per ``(zone, pair)`` into ``into``."""
    inside = zone >= 0
    keys, where = np.unique(zone[inside] * (k * k) + pair[inside], return_inverse=True)
    pixels = np.bincount(where, minlength=keys.size)
    areas = pixels if w is None else np.bincount(where, weights=w[inside], minlength=keys.size)
    for key, px, ar in zip(keys.tolist(), pixels.tolist(), areas.tolist(), strict=True):
        got = into.setdefault(key, [0, 0.0])
        got[0] += px
        got[1] += ar


def by_zone_rows(change: MapChange) -> list[dict[str, Any]]:
    """Per zone, level and pair of classes found: pixels and area (``area`` in the unit)."""
    rows = []
    names = (change.zones or {}).get("names", [])
    for lv, counts in change.by_zone.items():
        classes = change.levels[lv].classes
        k = len(classes)
        for key in sorted(counts):
            zone, pair = divmod(key, k * k)
            i, j = divmod(pair, k)
            px, ar = counts[key]
            rows.append({
                "zone": names[zone], "level": lv, "from_code": classes[i].code,
                "from_name": classes[i].name, "to_code": classes[j].code,
                "to_name": classes[j].name, "changed": i != j, "pixels": int(px),
                "area": round(float(ar), 2),
            })  # fmt: skip
    return rows


def by_zone_csv(change: MapChange) -> str:
    """``change_by_zone.csv``: :func:`by_zone_rows` as a table.

    With a reference sample, each row also has the transition's error-adjusted area in
    the zone and its 95 % interval, and the labelled points it rests on; a transition
    the sample finds in a zone where the maps show none gets a row of its own, and each
    zone a row of its changed area as a whole (``(any class)`` to ``(another class)``,
    no codes).
    """
    keys = ["zone", "level", "from_code", "from_name", "to_code", "to_name", "changed", "pixels"]
    unit = _area_column(change)
    estimates = {
        (e["zone"], e["level"], e["from_code"], e["to_code"]): e
        for e in ((change.reference or {}).get("by_zone") or [])
    }
    rows = [[*(r[k] for k in keys[:-2]), int(r["changed"]), r["pixels"], r["area"]]
            for r in by_zone_rows(change)]  # fmt: skip
    if not estimates:
        return _table([*keys, unit], rows)
    extra = ["estimated", "ci95_low", "ci95_high", "reference_points"]
    points = (change.reference or {}).get("zone_points", {})
    seen = set()
    for row in rows:
        key = (row[0], row[1], row[2], row[4])
        seen.add(key)
        e = estimates.get(key)
        if e is not None:
            row += _estimate_cells(e)
        elif points.get(row[1], {}).get(row[0]):  # the zone's points saw none of it
            row += [0.0, None, None, 0]
        else:  # the level not labelled, or no labelled point in the zone: not estimated
            row += [None, None, None, 0]
    changed_mapped: dict[tuple[str, str], list[float]] = {}  # per zone and level
    for r in by_zone_rows(change):
        if r["changed"]:
            total = changed_mapped.setdefault((r["zone"], r["level"]), [0, 0.0])
            total[0] += r["pixels"]
            total[1] += r["area"]
    for key, e in estimates.items():
        if key[2] is None:  # the zone's changed area as a whole
            px, ar = changed_mapped.get((e["zone"], e["level"]), [0, 0.0])
            rows.append([e["zone"], e["level"], "", e["from_name"], "", e["to_name"], 1, px,
                         round(ar, 2), *_estimate_cells(e)])  # fmt: skip
        elif key not in seen and e["estimated"]:
            rows.append([e["zone"], e["level"], e["from_code"], e["from_name"], e["to_code"],
                         e["to_name"], int(e["changed"]), 0, 0.0, *_estimate_cells(e)])  # fmt: skip
    return _table([*keys, unit, *(f"{x}_{unit[5:]}" if x != "reference_points" else x
                                  for x in extra)], rows)  # fmt: skip


def _estimate_cells(e: dict[str, Any]) -> list[Any]:
    """An estimate's cells: the area, its interval's bounds, its labelled points.

    Empty where unknown (unlabelled strata hold land in the zone: change.json gives the
    range), and no interval where no point of the zone saw the transition.
    """
    cells = [e["estimated"], *e["ci95"]]
    if not e["reference_points"]:
        cells[1:] = [None, None]
    return [*(None if c is None else round(c, 2) for c in cells), e["reference_points"]]


def _area_column(change: MapChange) -> str:
    """The area column's name: ``area_m2``, or ``area_pixels`` for maps without a CRS."""
    return "area_m2" if change.unit == "m2" else "area_pixels"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    """CSV text of a header and rows."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def _tally_notes(
    path: str, tally: _Tally, tax: Taxonomy, *, voted: bool = False, by_leaf: bool = True
) -> list[str]:
    """Warnings (logged) of a map's stray codes and of its levels that disagree.

    ``voted``: the map was aggregated by its most common class (its sub-pixels counted
    as read, before the vote); ``by_leaf``: by leaf, whose parent is the coarse class.
    """
    notes = []
    px = "sub-pixels sampled for the vote" if voted else "pixels"
    if tally.stray:
        consequence = "they are not compared at a level whose class they leave unknown"
        notes.append(stray_codes_message(path, tally.stray, tax.name, consequence, px))
    if tally.inconsistent:
        notes.append(
            f"{path}: {tally.inconsistent:,} {px} have a fine class that is not a child of "
            "their coarse class (are its bands coarse then fine, or described 'coarse' and "
            "'fine'?): "
            + (
                "its pixels vote by their fine class, whose parent is the coarse class"
                if voted and by_leaf
                else "each level is compared as the map has it"
            )
        )
    for note in notes:
        log.warning("%s", note)
    return notes


def _georeferencing(before: str, after: str, grid: dict[str, Any], later: Any) -> list[str]:
    """Warnings of a map whose place is assumed from the other's; fills ``grid["crs"]``.

    A map without a CRS on the other's pixel grid is taken to be in its CRS (the areas
    are then true areas, whichever of the two lacks it); one without any georeferencing
    is matched with the other pixel by pixel.
    """
    notes = []
    if grid["crs"] is None and later.crs is not None and grid_mismatch(later, **grid) is None:
        grid["crs"] = later.crs
        notes.append(f"{before} has no CRS: taken to be in {after}'s ({later.crs}), on its grid")
    elif later.crs is None and grid["crs"] is not None:
        if later.transform.is_identity:
            notes.append(
                f"{after} has no georeferencing (no CRS, no geotransform): its pixels are "
                f"matched with those of {before} by position"
            )
        else:
            notes.append(f"{after} has no CRS: taken to be in {before}'s ({grid['crs']})")
    elif (
        grid["crs"] is None
        and grid["transform"].is_identity
        and later.crs is not None
        and (later.width, later.height) == (grid["width"], grid["height"])
    ):
        notes.append(
            f"{before} has no georeferencing (no CRS, no geotransform): its pixels are "
            f"matched with those of {after} by position, on {after}'s grid"
        )
        grid["crs"], grid["transform"] = later.crs, later.transform
    for note in notes:
        log.warning("%s", note)
    return notes


def _provenance(src: Any, path: str, taxonomy: str) -> dict[str, str]:
    """A map's path, ``GEOSEG_MAP_ID``, ``GEOSEG_BUNDLE`` (model and SHA-256), taxonomy source."""
    from geoseg.write import BUNDLE_TAG, MAP_ID

    tags = src.tags()
    return {"path": path, "map_id": tags.get(MAP_ID, ""), "bundle": tags.get(BUNDLE_TAG, ""),
            "taxonomy": taxonomy}  # fmt: skip


def _differences(tax: Taxonomy, later: Taxonomy, maps: list[dict[str, str]]) -> list[str]:
    """Warnings (logged, and kept in change.json) where the maps are not made alike."""
    notes = []
    a, b = maps[0]["bundle"], maps[1]["bundle"]
    if a and b and a != b:
        notes.append(
            f"the maps were made by different models ({a.split()[0]} {a.split()[-1][:12]} and "
            f"{b.split()[0]} {b.split()[-1][:12]}): their differences include the models'"
        )
    for level in LEVELS:
        theirs = {c.code: c.name for c in getattr(later, level)}
        renamed = [
            f"{x.code} {x.name!r} / {theirs[x.code]!r}"
            for x in getattr(tax, level)
            if x.code in theirs and x.name != theirs[x.code]
        ]
        if renamed:
            notes.append(
                f"{level} classes of the same codes have other names in {maps[1]['path']} "
                f"({', '.join(renamed[:4])}): the earlier map's names are used"
            )
    for note in notes:
        log.warning("%s", note)
    return notes


def markdown(change: MapChange, top: int = 15) -> str:
    """``change.md``: per level, the changed share, largest transitions, losses and gains."""
    unit, scale, d = ("km²", 1e-6, 3) if change.unit == "m2" else ("pixels", 1.0, 0)
    notes = change.warnings + (change.zones or {}).get("warnings", [])
    lines = [
        "# Land-cover change",
        "",
        *[f"**Warning:** {w}." for w in notes],
        *([""] if notes else []),
        f"From `{change.before}` to `{change.after}`"
        + (
            f" (the later map resampled onto the earlier one's grid: {change.resampling})"
            if change.aligned
            else ""
        )
        + ".",
        "",
    ]
    options = change.polygons.get("options", {})
    if options.get("mmu") or options.get("simplify"):
        lines += [
            f"The polygons were drawn with a minimum mapping unit of {options['mmu']:g} and a "
            f"simplification of {options['simplify']:g}: their areas differ from these "
            "tables', which count every pixel.",
            "",
        ]
    for lv, level in change.levels.items():
        rec = level.record()
        share = rec["changed_share"]
        lines += [
            f"## {lv.capitalize()} level",
            "",
            f"{rec['pixels_compared']:,} pixels labelled in both maps; "
            f"{rec['area_changed'] * scale:,.{d}f} of {rec['area_compared'] * scale:,.{d}f} {unit} "
            f"changed class ({'n/a' if share is None else f'{100 * share:.2f} %'}).",
            "",
            f"Not compared (labelled in one map only: outside the other's footprint, under "
            f"its clouds or nodata): {rec['area_earlier_only'] * scale:,.{d}f} {unit} of the "
            f"earlier map, {rec['area_later_only'] * scale:,.{d}f} {unit} of the later one.",
            "",
            f"| from | to | {unit} | share of the changed area |",
            "|---|---|---:|---:|",
        ]
        changed = [t for t in rec["transitions"] if t["changed"]]
        for t in sorted(changed, key=lambda t: -t["area"])[:top]:
            part = t["area"] / rec["area_changed"] if rec["area_changed"] else 0.0
            lines.append(
                f"| {t['from_name']} | {t['to_name']} | {t['area'] * scale:,.{d}f} | "
                f"{100 * part:.1f} % |"
            )
        if len(changed) > top:
            lines.append(f"| ({len(changed) - top} more in transitions.csv) | | | |")
        if not changed:
            lines.append("| – | – | 0 | – |")
        lines += [
            "",
            f"| class (in the compared area) | before ({unit}) | after ({unit}) | lost | gained "
            "| net |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for c in rec["classes"]:
            if c["before"] or c["after"]:
                lines.append(
                    f"| {c['name']} | {c['before'] * scale:,.{d}f} | {c['after'] * scale:,.{d}f} | "
                    f"{c['lost'] * scale:,.{d}f} | {c['gained'] * scale:,.{d}f} | "
                    f"{c['net'] * scale:+,.{d}f} |"
                )
        lines.append("")
    if change.reference is not None:
        from geoseg.change_report import reference_markdown

        lines += reference_markdown(change.reference, unit, scale, d, top)
    return "\n".join(lines)


def transitions_csv(change: MapChange) -> str:
    """``transitions.csv``: one row per level and pair of classes found."""
    header = ["level", "from_code", "from_name", "to_code", "to_name", "changed", "value",
              "pixels", _area_column(change)]  # fmt: skip
    rows = [[lv, t["from_code"], t["from_name"], t["to_code"], t["to_name"], int(t["changed"]),
             t["value"], t["pixels"], round(t["area"], 2)]
            for lv, level in change.levels.items()
            for t in level.record()["transitions"]]  # fmt: skip
    return _table(header, rows)


def _raster_writer(
    dest: Path, grid: dict[str, Any], levels: list[str], before: str, after: str, dtype: str,
    tax: Taxonomy,
) -> Any:  # fmt: skip
    """change.tif's writer (a COG on exit): one band of transitions per level.

    Its tags name the maps and hold the taxonomy (``GEOSEG_CHANGE_TAXONOMY``, not
    ``GEOSEG_TAXONOMY``, which marks a map of class codes), so that ``geoseg sample``
    can draw a reference sample stratified by its transitions.
    """
    from geoseg.write import CHANGE_TAXONOMY, CHANGE_VALUES, cog_writer

    size = {"width": grid["width"], "height": grid["height"], "count": len(levels),
            "dtype": dtype}  # fmt: skip

    def describe(dst: Any) -> None:
        for i, lv in enumerate(levels, start=1):
            dst.set_band_description(i, f"{lv} transition")
        dst.update_tags(
            GEOSEG_CHANGE_BEFORE=before,
            GEOSEG_CHANGE_AFTER=after,
            **{
                CHANGE_VALUES: "from_index * n + to_index + 1; see transitions.csv",
                CHANGE_TAXONOMY: json.dumps(tax.to_dict(), separators=(",", ":")),
            },
        )

    plain = grid["crs"] is None and grid["transform"].is_identity  # not georeferenced
    return cog_writer(
        dest, size, crs=grid["crs"], nodata=0, describe=describe,
        transform=None if plain else grid["transform"], overviews="nearest",
    )  # fmt: skip


def change_polygons(
    raster: Path, change: MapChange, opts: VectorizeOptions | None = None
) -> dict[str, gpd.GeoDataFrame]:
    """Polygons of the changed areas in ``change.tif``, one layer per level.

    Each polygon is a region of one transition (connected pixels whose class went from
    ``from`` to ``to``); regions whose class stayed are polygonised with the others,
    so that the minimum mapping unit and the simplification see the whole map, and
    then left out. With neither, the polygons of a transition add up to its area in
    ``change.json``.

    Parameters
    ----------
    raster : Path
        ``change.tif`` as :func:`compare_maps` wrote it for ``change``.
    change : MapChange
        What was compared.
    opts : VectorizeOptions, optional
        Minimum mapping unit (a change smaller than it joins its largest neighbour,
        usually the unchanged land around it), simplification, target CRS.

    Returns
    -------
    dict of str to GeoDataFrame
        ``change_fine`` (where both maps have a fine level) and ``change_coarse``:
        ``from_code, from_name, to_code, to_name, area_m2`` (``area_pixels`` for maps
        without a CRS).
    """
    import dataclasses

    import geopandas as gpd

    from geoseg.vectorize import VectorizeOptions, vectorize

    opts = opts or VectorizeOptions()
    bands = {lv: i for i, lv in enumerate(change.levels, start=1)}
    t = change.grid["transform"]
    unit = "area_m2" if change.unit == "m2" else "area_pixels"
    layers = {}
    for lv in sorted(change.levels, key=lambda lv: lv != "fine"):  # the fine layer first
        level = change.levels[lv]
        n = len(level.classes)
        gdf = vectorize(
            raster, dataclasses.replace(opts, band=bands[lv], confidence=False),
            warn_crs=False, known_codes=True,
        )  # fmt: skip
        i, j = np.divmod(gdf["class_code"].to_numpy(np.int64) - 1, n)
        keep = i != j
        codes = np.array([c.code for c in level.classes], np.int64)
        names = np.array([c.name for c in level.classes], dtype=object)
        i, j = i[keep], j[keep]
        area = gdf["area_m2"].to_numpy()[keep]
        if change.unit != "m2":  # in the geotransform's units: in pixels, as the tables
            area = area / abs(t.a * t.e - t.b * t.d)
        layers[f"change_{lv}"] = gpd.GeoDataFrame(
            {
                "from_code": codes[i].astype(np.int32),
                "from_name": names[i],
                "to_code": codes[j].astype(np.int32),
                "to_name": names[j],
                unit: area,
            },
            geometry=gdf.geometry.to_numpy()[keep],
            crs=gdf.crs,
        )
    return layers


def polygon_styles(change: MapChange) -> dict[str, tuple[list[ClassDef], str]]:
    """QGIS styles of the change layers: each polygon in the colour of the class it became."""
    return {f"change_{lv}": (level.classes, "to_code") for lv, level in change.levels.items()}


#: change.qml's colour of land whose class stayed (changed land: the class it became).
UNCHANGED_COLOR = "#e6e6e6"


def change_style(change: MapChange) -> str:
    """``change.qml``: QGIS's default style of change.tif, its finest band paletted.

    Each transition found is in the colour of the class the land became, land whose
    class stayed in light grey, so that change stands out on the map.
    """
    from geoseg.write import palette_qml

    band = len(change.levels)  # fine, where compared, is the last band
    level = list(change.levels.values())[-1]
    names = level.transition_names()
    n = len(level.classes)
    entries = []
    for t in level.record()["transitions"]:
        to = level.classes[(t["value"] - 1) % n]
        color = to.color if t["changed"] else UNCHANGED_COLOR
        entries.append((t["value"], color, names[t["value"]]))
    return palette_qml(entries, band)


def write_change(change: MapChange, tmp: Path) -> list[str]:
    """Write change.json, change.md, transitions.csv and change.tif's category names.

    ``change.tif`` itself is written by :func:`compare_maps` (``raster``), in its pass.
    """
    from geoseg.write import pam_categories

    (tmp / "change.json").write_text(json.dumps(change.record(), indent=2) + "\n", encoding="utf-8")
    (tmp / "change.md").write_text(markdown(change), encoding="utf-8")
    (tmp / "transitions.csv").write_text(transitions_csv(change), encoding="utf-8")
    bands = [(f"{lv} transition", level.transition_names()) for lv, level in change.levels.items()]
    Path(f"{tmp / 'change.tif'}.aux.xml").write_text(pam_categories(bands), encoding="utf-8")
    (tmp / "change.qml").write_text(change_style(change), encoding="utf-8")
    if change.zones is not None:
        (tmp / "change_by_zone.csv").write_text(by_zone_csv(change), encoding="utf-8")
    zoned = ["change_by_zone.csv"] if change.zones is not None else []
    return ["change.json", "change.md", "transitions.csv", "change.tif", "change.tif.aux.xml",
            "change.qml", *zoned]  # fmt: skip
