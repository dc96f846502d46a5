"""A stratified random sample of a map's pixels, for reference labelling.

The accuracy assessment that land-cover reporting follows (Olofsson et al. 2014, *Good
practices for estimating area and assessing accuracy of land change*): draw reference
points at random within each mapped class (stratum), label them from better data
(field visits, very high resolution imagery), then score the map and error-adjust its
areas with those labels (``geoseg evaluate labels.tif --coarse points.gpkg --fine
points.gpkg``, see :func:`geoseg.metrics.design_estimates`, Stehman's 2014 estimator
for the sample's strata, which need not be the scored map's classes).

The map is a geoseg ``labels.tif`` or any map of class codes with its taxonomy, read
as ``geoseg evaluate`` reads a prediction (:func:`geoseg.map_reading.map_reading`). The
strata are the map's coarse classes, and each point records its stratum's area
(``stratum_area``, in ``area_unit``): the weights that serve both levels, and any map
the points score.

Drawing takes two passes over the map, a band of rows at a time: one counts each
class's pixels (for the allocation), the next gives every valid pixel a seeded random
key, and each stratum keeps the pixels with the smallest keys seen so far, so memory
follows the band and the sample, not the map.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geoseg.errors import ConfigError, GeosegWarning, RasterFormatError
from geoseg.sample_size import TargetPrecision, plan_record
from geoseg.taxonomy import Taxonomy, count_codes, stray_codes_message

if TYPE_CHECKING:
    import geopandas as gpd
    from rasterio.windows import Window

    from geoseg.map_reading import Level, MapWindowReader

log = logging.getLogger(__name__)

#: Pixels of the map read at a time (a band of whole rows).
BAND_PIXELS = 1 << 21

#: More points than this are refused: a reference sample is labelled by hand.
MAX_POINTS = 1_000_000


class SmallClassWarning(GeosegWarning):
    """Mapped classes with fewer pixels than their quota: every one is drawn."""


class UnknownMapCodeWarning(GeosegWarning):
    """Map pixels whose codes the taxonomy does not list.

    A pixel of an unknown coarse class is not sampled; one of an unknown fine class is
    sampled without a fine class.
    """


@dataclass
class _Kept:
    """The drawn pixels of one stratum so far: keys, flat positions, map codes."""

    keys: np.ndarray
    where: np.ndarray
    codes: np.ndarray  # (2, n): coarse and fine code


def draw_sample(
    labels: str | Path,
    *,
    per_class: int = 100,
    total: int | None = None,
    seed: int = 0,
    taxonomy: str | Path | None = None,
    level: Level | None = None,
    pool_below: float = 0.0,
    target: TargetPrecision | None = None,
    strata: Level = "coarse",
) -> gpd.GeoDataFrame:
    """Draw random pixels within each coarse (or fine) class of a land-cover map.

    Parameters
    ----------
    labels : str or Path
        A geoseg labels.tif (band 1 coarse codes, band 2 fine codes, the taxonomy in
        its tags), or any map of class codes with ``taxonomy`` (read as ``geoseg
        evaluate`` reads a prediction: one band of coarse or fine codes, whose coarse
        classes are then the fine codes' parents, or two bands, coarse then fine). A
        ``geoseg change`` change.tif is stratified by its transitions instead
        (:func:`geoseg.change_sample.draw_change_sample`, which gives its points' fields).
    per_class : int
        Pixels drawn in each mapped coarse class (all of a class's pixels when it has
        fewer); with ``total``, the least each class gets.
    total : int, optional
        Points to share out by area: each class gets its share of the map's pixels of
        ``total``, at least ``per_class`` (the allocation Olofsson et al. recommend:
        rare classes get enough points for their accuracy, large ones their share,
        which narrows the area estimates' intervals), so the sample is larger than
        ``total`` when classes get the minimum.
    seed : int
        Seed of the draw (the same map, seed and settings give the same points).
    taxonomy : str or Path, optional
        The taxonomy YAML (or a bundle) of the map's codes; a geoseg map's own otherwise.
    level : {"coarse", "fine"}, optional
        The level of a single band whose codes fit both; of a change.tif, the level
        whose transitions are the strata (default coarse).
    pool_below : float
        A change.tif's changed transitions each under this share of the compared pixels
        pooled into one stratum (see :func:`geoseg.change_sample.draw_change_sample`).
    target : TargetPrecision, optional
        Instead of ``total``: as many points as the allocation needs for this standard
        error of overall accuracy at the expected accuracies (:mod:`geoseg.sample_size`;
        the frame's ``attrs["plan"]`` says what it expects).
    strata : {"coarse", "fine"}
        The classes drawn within: the mapped coarse classes, or the fine ones (each
        fine class a stratum, a coarse class without fine classes one of its own), for
        a sample that scores every fine class (``geoseg evaluate`` weighs either design
        at both levels). Fine strata need a taxonomy whose fine codes are not also
        coarse codes (a point's stratum is its code).

    Returns
    -------
    geopandas.GeoDataFrame
        One point per drawn pixel, at its centre, in the map's CRS: ``id``,
        ``stratum`` (the mapped coarse code; with fine ``strata``, the fine code, or the
        coarse code of a pixel without a fine class), ``stratum_area`` (its area) and
        ``area_unit`` (``m2``, or ``pixels`` without a CRS), the map's ``map_coarse_code`` /
        ``map_coarse_name`` / ``map_fine_code`` / ``map_fine_name``, and empty
        ``coarse_code`` / ``fine_code`` for the reference labels, which ``geoseg
        evaluate`` reads by default.

    Raises
    ------
    RasterReadError
        The map is missing or not a readable raster.
    RasterFormatError, ConfigError
        A map of unknown codes (not geoseg's, no ``taxonomy``), codes the taxonomy does
        not fit, no valid pixel, more than :data:`MAX_POINTS`, or fine ``strata`` of a
        map without fine classes or whose fine codes are coarse codes too.

    Warns
    -----
    SmallClassWarning
        Classes with fewer pixels than their quota (all are drawn).
    UnknownMapCodeWarning
        Pixels whose codes the taxonomy does not list.
    """
    import geopandas as gpd
    import pandas as pd

    from geoseg.map_reading import map_reading
    from geoseg.raster import open_labels
    from geoseg.write import CHANGE_VALUES

    with open_labels(labels) as src:
        is_change = CHANGE_VALUES in src.tags()
    if is_change:  # a change.tif: its transitions are the strata
        from geoseg.change_sample import draw_change_sample

        if taxonomy is not None:
            raise ConfigError(
                f"{labels}: a geoseg change.tif carries its taxonomy: drop --taxonomy"
            )
        if strata != "coarse":
            raise ConfigError(
                f"{labels}: a change.tif is stratified by its transitions: --level fine "
                "draws within the fine ones; drop --strata"
            )
        return draw_change_sample(labels, per_class=per_class, total=total, seed=seed,
                                  level=level, pool_below=pool_below, target=target)  # fmt: skip
    if pool_below:
        raise ConfigError(
            f"{labels}: --pool-below pools the transitions of a change.tif, and this is a map "
            "of classes: drop --pool-below"
        )
    if strata not in ("coarse", "fine"):
        raise ConfigError(f"{labels}: strata {strata!r} is not one of coarse, fine")
    with open_labels(labels) as src:
        reading = map_reading(src, str(labels), taxonomy, level)
        tax = reading.taxonomy

        def read(win: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            return reading.read(src, win)

        nodata, width, crs, transform = tax.nodata, src.width, src.crs, src.transform

        def unknown_codes(unknown: dict[int, int]) -> None:
            consequence = (
                "a pixel whose coarse class is unknown is not sampled, one whose fine class "
                "is unknown has none"
            )
            warnings.warn(
                UnknownMapCodeWarning(stray_codes_message(labels, unknown, tax.name, consequence)),
                stacklevel=4,
            )

        fine = strata == "fine"
        if fine:
            check_fine_strata(tax, labels, has_fine=reading.has_fine)
        named = _names(tax)

        def label(c: int) -> str:  # a stratum's name: a fine class's only in fine strata
            return (fine and named["fine"].get(c)) or named["coarse"].get(c, str(c))

        drawn = stratified_draw(
            src, lambda: _bands(src, read, tax, fine), labels, per_class=per_class,
            total=checked_total(total, target), seed=seed, strays=unknown_codes, target=target,
            label=label,
        )  # fmt: skip
    points, areas = drawn.where, drawn.areas
    map_coarse, map_fine = drawn.codes
    rows, cols = np.divmod(points, width)
    x, y = transform @ (cols + 0.5, rows + 0.5)
    names = _names(tax)
    has_fine = map_fine != nodata
    stratum = drawn.strata
    frame = gpd.GeoDataFrame(
        {
            "id": np.arange(1, points.size + 1),
            "stratum": stratum,
            # the stratum's area (m², or pixels without a CRS): the weight geoseg evaluate
            # gives its points, on this map or any other
            "stratum_area": np.array([areas[int(c)] for c in stratum], np.float64),
            "area_unit": "m2" if crs is not None else "pixels",
            "map_coarse_code": map_coarse,
            "map_coarse_name": [names["coarse"].get(int(c), "") for c in map_coarse],
            "map_fine_code": pd.array(
                [int(f) if h else None for f, h in zip(map_fine, has_fine, strict=True)],
                dtype="Int32",
            ),
            "map_fine_name": [  # no fine class: NULL, as in the polygons
                names["fine"].get(int(f), "") if h else None
                for f, h in zip(map_fine, has_fine, strict=True)
            ],
            "coarse_code": pd.array([None] * points.size, dtype="Int32"),
            "fine_code": pd.array([None] * points.size, dtype="Int32"),
        },
        geometry=gpd.points_from_xy(x, y),
        crs=crs,
    )
    log.info("%s: %d points in %d strata", labels, points.size, len(drawn.sizes))
    if drawn.plan is not None:
        frame.attrs["plan"] = drawn.plan
    frame.attrs["strata"] = strata
    return frame


def check_fine_strata(tax: Taxonomy, path: str | Path, *, has_fine: bool = True) -> None:
    """Refuse fine strata that a map or its taxonomy cannot give.

    A point's stratum is its code, so a fine code that is also a coarse code (a coarse
    class without fine classes is a stratum of its own) would join two strata.

    Raises
    ------
    ConfigError
        The taxonomy or the map (``has_fine``) has no fine classes, or the taxonomy's
        fine codes are coarse codes too.
    """
    if not tax.n_fine or not has_fine:
        whose = f"taxonomy {tax.name}" if not tax.n_fine else "the map (its coarse codes only)"
        raise ConfigError(
            f"{path}: --strata fine, and {whose} has no fine classes: drop --strata fine"
        )
    shared = sorted(set(tax.fine_codes.tolist()) & set(tax.coarse_codes.tolist()))
    if shared:
        listed = ", ".join(map(str, shared[:6])) + (" ..." if len(shared) > 6 else "")
        what = (
            f"fine code {listed} is a coarse code"
            if len(shared) == 1
            else f"fine codes {listed} are coarse codes"
        )
        raise ConfigError(
            f"{path}: --strata fine, and taxonomy {tax.name}'s {what} too, so a point's "
            "stratum (its code) would not tell a fine class from a coarse one: draw within "
            "the coarse classes (drop --strata fine)"
        )


def checked_total(total: int | None, target: TargetPrecision | None) -> int | None:
    """``total``, refused beside a ``target`` (which sets it)."""
    if total is not None and target is not None:
        raise ConfigError("--total and --target-se both set the sample's size: give one of them")
    return total


@dataclass
class Drawn:
    """The pixels a :func:`stratified_draw` drew, in the order of their flat positions.

    Attributes
    ----------
    where : numpy.ndarray
        Each point's flat position (``row * width + col``).
    strata : numpy.ndarray
        Its stratum.
    codes : numpy.ndarray
        ``(k, points)``: the band's codes kept with each point.
    areas : dict of int to float
        Each stratum's area (m², or pixels): the design's weights.
    sizes : dict of int to int
        Each stratum's pixels.
    """

    where: np.ndarray
    strata: np.ndarray
    codes: np.ndarray
    areas: dict[int, float]
    sizes: dict[int, int]
    plan: dict[str, Any] | None = None


#: A band of a map to draw from: ``(first flat position, strata (-1: none), (k, pixels)
#: codes kept with the points, stray codes)``.
Band = tuple[int, np.ndarray, np.ndarray, np.ndarray]


def stratified_draw(
    src: Any,
    bands: Callable[[], Iterator[Band]],
    path: str | Path,
    *,
    per_class: int,
    total: int | None,
    seed: int,
    strays: Callable[[dict[int, int]], None] | None = None,
    what: str = "class",
    named: Callable[[int], str] | None = None,
    target: TargetPrecision | None = None,
    label: Callable[[int], str] | None = None,
) -> Drawn:
    """Draw random pixels within each stratum of a raster, in two passes of ``bands()``.

    The first pass counts each stratum's pixels and true area (the allocation's and the
    design's), the next gives every pixel of a stratum a seeded random key and keeps
    each stratum's ``quota`` smallest, so memory follows a band and the sample.
    ``strays(counts)`` is called with the stray codes found, if any; ``what`` names a
    stratum in the messages, ``named(stratum)`` each one (default: its number).
    ``target``: the total is the smallest whose allocation expects that standard error
    of overall accuracy (:mod:`geoseg.sample_size`; ``total`` must be ``None``), and
    :attr:`Drawn.plan` says so, naming each stratum ``label(stratum)``.

    Raises
    ------
    RasterFormatError
        No pixel in any stratum, or more than :data:`MAX_POINTS` asked for.

    Warns
    -----
    SmallClassWarning
        Strata with fewer pixels than ``per_class`` (all are drawn).
    """
    from geoseg.area import window_areas

    rng = np.random.default_rng(seed)
    kept: dict[int, _Kept] = {}
    width = src.width
    sizes: dict[int, int] = {}
    areas: dict[int, float] = {}
    areas_of_rows = window_areas(src)
    unknown: dict[int, int] = {}
    for offset, strata, _, stray in bands():
        found, where, n = np.unique(strata[strata >= 0], return_inverse=True, return_counts=True)
        rows = areas_of_rows(offset // width, strata.size // width).ravel()[strata >= 0]
        summed = np.bincount(where, weights=rows, minlength=found.size)
        for c, k, a in zip(found.tolist(), n.tolist(), summed.tolist(), strict=True):
            sizes[c] = sizes.get(c, 0) + k
            areas[c] = areas.get(c, 0.0) + a
        count_codes(unknown, stray)
    if unknown and strays is not None:
        strays(unknown)
    if not sizes:
        raise RasterFormatError(f"{path}: every pixel is nodata: there is nothing to sample")
    plan = None
    if target is not None:
        try:
            plan = plan_record(target, areas, sizes, per_class, label or str, allocation)
        except ConfigError as e:  # a stratum the map does not have
            raise ConfigError(f"{path}: {e}") from None
        if not plan["reached"]:
            raise ConfigError(
                f"{path}: a standard error of overall accuracy of {target.se:g} cannot be "
                f"reached: all its {sum(sizes.values()):,} pixels would give "
                f"{plan['expected_se']:.2g} at the expected accuracies; ask for a larger "
                "--target-se"
            )
        total = plan["total"]
    quota = (
        allocation(sizes, total, per_class)
        if total is not None
        else {c: min(n, per_class) for c, n in sizes.items()}
    )
    if sum(quota.values()) > MAX_POINTS:
        asked = (
            f"a standard error of overall accuracy of {target.se:g} needs "
            f"{sum(quota.values()):,} points"
            if target is not None
            else f"{sum(quota.values()):,} points asked for"
        )
        fix = "a larger --target-se" if target is not None else "a smaller --total or --per-class"
        raise RasterFormatError(
            f"{path}: {asked}, more than anyone labels by hand (at most {MAX_POINTS:,}): use {fix}"
        )
    for offset, strata, codes, _ in bands():
        keys = rng.random(strata.size)
        _keep_smallest(kept, strata, keys, codes, offset, quota)
    short = {c: n for c, n in sizes.items() if n < per_class}
    if short:
        listed = ", ".join(
            f"{c if named is None else named(c)} ({n} px)" for c, n in sorted(short.items())
        )
        one = len(short) == 1
        warnings.warn(
            SmallClassWarning(
                f"{path}: {what}{'' if one else ('es' if what.endswith('s') else 's')} "
                f"{listed} {'has' if one else 'have'} fewer pixels than --per-class "
                f"{per_class}: every one of them is drawn"
            ),
            stacklevel=3,
        )
    where = np.concatenate([k.where for k in kept.values()])
    order = np.argsort(where)
    codes = np.concatenate([k.codes for k in kept.values()], axis=1)[:, order]
    strata = np.concatenate([np.full(k.where.size, c, np.int64) for c, k in kept.items()])
    return Drawn(where[order], strata[order], codes, areas, sizes, plan)


def _bands(
    src: Any, read: MapWindowReader, tax: Taxonomy, fine_strata: bool = False
) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """``(first flat position, strata, (2, pixels) map codes, stray codes)`` of each band.

    The stratum is the coarse code (with ``fine_strata``, the fine code where the map
    has a fine class), ``-1`` where the map is nodata or holds a code the taxonomy does
    not list (those codes, one per such pixel, are the stray codes); the fine code is
    the taxonomy's nodata where the map has no fine class.
    """
    from rasterio.windows import Window

    from geoseg.raster import strip_rows

    width, height = src.width, src.height
    rows = strip_rows(width, BAND_PIXELS)
    for r0 in range(0, height, rows):
        win = Window(0, r0, width, min(rows, height - r0))
        pc, pf, stray = (a.ravel() for a in read(win))
        coarse = np.where(pc >= 0, tax.coarse_codes[np.maximum(pc, 0)], tax.nodata)
        fine = np.where(pf >= 0, tax.fine_codes[np.maximum(pf, 0)], tax.nodata)
        key = np.where(pf >= 0, fine, coarse) if fine_strata else coarse
        strata = np.where(pc >= 0, key, -1).astype(np.int64)
        yield r0 * width, strata, np.stack([coarse, fine]).astype(np.int64), stray


def allocation(sizes: dict[int, int], total: int, least: int) -> dict[int, int]:
    """Points per stratum: its share of ``total`` by pixels, at least ``least``, at most all.

    Examples
    --------
    >>> allocation({1: 9000, 2: 900, 3: 100}, 200, 20)
    {1: 180, 2: 20, 3: 20}
    """
    pixels = sum(sizes.values())
    return {c: min(n, max(least, round(total * n / pixels))) for c, n in sorted(sizes.items())}


def _keep_smallest(
    kept: dict[int, _Kept],
    strata: np.ndarray,
    keys: np.ndarray,
    codes: np.ndarray,
    offset: int,
    quota: dict[int, int],
) -> None:
    """Merge a band's pixels into each stratum's ``quota[stratum]`` smallest keys (in place).

    ``codes`` are the band's ``(k, pixels)`` codes, kept with the drawn pixels;
    ``offset`` is the band's first flat position in the map. A pixel whose key is not
    below its stratum's largest kept key (once the stratum is full) cannot be drawn,
    so it is dropped before sorting.
    """
    top = max(quota, default=0) + 1
    bar = np.ones(max(top, int(strata.max()) + 1))  # a full stratum's largest kept key
    for code, drawn in kept.items():
        if drawn.keys.size >= quota.get(code, 0):
            bar[code] = drawn.keys.max()
    valid = np.flatnonzero(strata >= 0)
    valid = valid[keys[valid] < bar[strata[valid]]]
    if not valid.size:
        return
    order = valid[np.lexsort((keys[valid], strata[valid]))]  # by stratum, then key
    classes, starts = np.unique(strata[order], return_index=True)
    for code, start, stop in zip(classes, starts, [*starts[1:], order.size], strict=True):
        k = quota.get(int(code), 0)
        best = order[start : min(stop, start + k)]  # this band's k smallest of the stratum
        new = _Kept(keys[best], best + offset, codes[:, best])
        if (old := kept.get(int(code))) is not None:
            new = _Kept(
                np.concatenate([old.keys, new.keys]),
                np.concatenate([old.where, new.where]),
                np.concatenate([old.codes, new.codes], axis=1),
            )
            if new.keys.size > k:
                keep = np.argpartition(new.keys, k - 1)[:k]
                new = _Kept(new.keys[keep], new.where[keep], new.codes[:, keep])
        kept[int(code)] = new


def _names(taxonomy: Taxonomy) -> dict[str, dict[int, str]]:
    """Class code -> name of each level."""
    return {
        "coarse": {c.code: c.name for c in taxonomy.coarse},
        "fine": {c.code: c.name for c in taxonomy.fine},
    }
