"""A reference sample stratified by a ``geoseg change`` change.tif's transitions.

Land-change areas are estimated the way Olofsson et al. (2014, *Good practices for
estimating area and assessing accuracy of land change*) set out: the map of change is
the stratification (stable forest, forest to shrubland, ...), a random sample is drawn
within each stratum, each point is labelled with what was on the ground at both dates,
and the labels correct the mapped areas of every transition
(:mod:`geoseg.change_reference`). Post-classification change is mostly the two maps'
errors where real change is rare, so rare transitions get their own strata and enough
points, not their share of the area.

:func:`draw_change_sample` draws it from change.tif, a band of rows at a time
(:func:`geoseg.sample.stratified_draw`). Each point records its stratum (the
transition's value in the band of the chosen level), that stratum's area, the maps'
classes at both levels, and empty fields for the reference: ``before_coarse``,
``after_coarse``, ``before_fine``, ``after_fine``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geoseg.errors import ConfigError, RasterFormatError
from geoseg.sample_size import TargetPrecision
from geoseg.taxonomy import ClassDef, Taxonomy

if TYPE_CHECKING:
    import geopandas as gpd

log = logging.getLogger(__name__)

#: The levels a change.tif may hold, in band order.
LEVELS = ("coarse", "fine")
#: The reference fields of a change sample, per level: the class at each date.
REFERENCE_FIELDS = {
    "coarse": ("before_coarse", "after_coarse"),
    "fine": ("before_fine", "after_fine"),
}
#: The map's transition at each point, per level: its from and to codes.
MAP_FIELDS = {
    "coarse": ("map_coarse_from", "map_coarse_to"),
    "fine": ("map_fine_from", "map_fine_to"),
}


def transition_name(before: str, after: str, same: bool) -> str:
    """How a transition is named (change.tif's categories, samples' strata, tables).

    ``same``: the class stayed (by class, not name: two classes may share a name).

    Examples
    --------
    >>> transition_name("Forest", "Shrubland", False), transition_name("Forest", "Forest", True)
    ('Forest -> Shrubland', 'Forest (unchanged)')
    """
    return f"{before} (unchanged)" if same else f"{before} -> {after}"


@dataclass
class ChangeRaster:
    """What a change.tif's tags and bands say (see :func:`read_change_raster`).

    Attributes
    ----------
    taxonomy : Taxonomy
        The maps' taxonomy.
    bands : dict of str to int
        Each level's band (1-based): ``coarse``, and ``fine`` where both maps had one.
    """

    taxonomy: Taxonomy
    bands: dict[str, int]

    def classes(self, level: str) -> list[ClassDef]:
        """The classes of a level's transitions: the coarse classes, or the leaves."""
        return list(self.taxonomy.coarse) if level == "coarse" else self.taxonomy.leaves

    def transition(self, level: str, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The from and to class indices of transition values (``-1`` for 0, no pair)."""
        n = len(self.classes(level))
        v = np.asarray(values, np.int64)
        i, j = np.divmod(np.maximum(v - 1, 0), n)
        none = v <= 0
        return np.where(none, -1, i), np.where(none, -1, j)

    def name(self, level: str, value: int) -> str:
        """A transition's name: ``Forest -> Shrubland``, or ``Forest (unchanged)``."""
        classes = self.classes(level)
        i, j = divmod(int(value) - 1, len(classes))
        return transition_name(classes[i].name, classes[j].name, i == j)


def read_change_raster(src: Any, path: str | Path) -> ChangeRaster | None:
    """The taxonomy and level bands of an open change.tif; ``None`` if it is not one.

    Raises
    ------
    RasterFormatError
        A change.tif of an earlier version (no taxonomy in its tags), or one whose
        bands are not named by level.
    """
    from geoseg.write import CHANGE_TAXONOMY, CHANGE_VALUES

    tags = src.tags()
    if CHANGE_VALUES not in tags:
        return None
    raw = tags.get(CHANGE_TAXONOMY)
    if not raw:
        raise RasterFormatError(
            f"{path}: a change.tif written by an earlier geoseg, without its taxonomy: run "
            "geoseg change again on its two maps to write one a sample can be drawn from"
        )
    try:
        tax = Taxonomy.from_dict(json.loads(raw), source=f"{path} ({CHANGE_TAXONOMY} tag)")
    except (ValueError, TypeError) as exc:
        raise RasterFormatError(
            f"{path}: its {CHANGE_TAXONOMY} tag is not a taxonomy ({exc}): run geoseg change "
            "again to write the file anew"
        ) from None
    bands = {}
    for i, description in enumerate(src.descriptions, start=1):
        level = (description or "").split(" ")[0]
        if level in LEVELS:
            bands[level] = i
    if "coarse" not in bands:
        raise RasterFormatError(
            f"{path}: no band is described 'coarse transition' (its descriptions: "
            f"{', '.join(repr(d) for d in src.descriptions)}): run geoseg change again to "
            "write the file anew"
        )
    return ChangeRaster(tax, bands)


#: The stratum of the changed transitions pooled by ``pool_below`` (transitions are
#: numbered from 1).
POOLED = 0
#: Its name.
POOLED_NAME = "(other changes)"


def _bands(
    src: Any, change: ChangeRaster, level: str, stratum_of: np.ndarray | None = None
) -> Iterator[tuple[int, Any, Any, Any]]:
    """``(first flat position, strata, (levels, pixels) transitions, no strays)`` per band.

    ``stratum_of[value]``: each transition's stratum (default: its value).
    """
    from rasterio.windows import Window

    from geoseg.raster import strip_rows
    from geoseg.sample import BAND_PIXELS

    width, height = src.width, src.height
    rows = strip_rows(width, BAND_PIXELS)
    order = [change.bands[lv] for lv in LEVELS if lv in change.bands]
    at = order.index(change.bands[level])
    for r0 in range(0, height, rows):
        win = Window(0, r0, width, min(rows, height - r0))
        values = src.read(order, window=win).reshape(len(order), -1).astype(np.int64)
        at_level = values[at] if stratum_of is None else stratum_of[values[at]]
        strata = np.where(values[at] > 0, at_level, -1)
        yield r0 * width, strata, values, np.empty(0, np.int64)


def _pooled_strata(src: Any, change: ChangeRaster, level: str, share: float) -> np.ndarray:
    """Each transition value's stratum: :data:`POOLED` for changed ones under ``share``.

    ``share`` of the compared pixels; a transition whose class stayed keeps its own.
    """
    n = len(change.classes(level))
    counts = np.zeros(n * n + 1, np.int64)
    for _, strata, _, _ in _bands(src, change, level):
        counts += np.bincount(strata[strata > 0], minlength=n * n + 1)
    value = np.arange(n * n + 1)
    changed = (value > 0) & ((value - 1) // n != (value - 1) % n)
    small = changed & (counts > 0) & (counts < share * counts.sum())
    return np.where(small, POOLED, value)


def draw_change_sample(
    change_tif: str | Path,
    *,
    per_class: int = 100,
    total: int | None = None,
    seed: int = 0,
    level: str | None = None,
    pool_below: float = 0.0,
    target: TargetPrecision | None = None,
) -> gpd.GeoDataFrame:
    """Draw random pixels within each transition of a ``geoseg change`` change.tif.

    Parameters
    ----------
    change_tif : str or Path
        change.tif as ``geoseg change`` writes it.
    per_class : int
        Points drawn in each transition found (all of its pixels when it has fewer);
        with ``total``, the least each gets.
    total : int, optional
        Points to share out by area, each transition at least ``per_class``.
    seed : int
        Seed of the draw.
    level : {"coarse", "fine"}, optional
        Whose transitions are the strata (default ``coarse``: with 8 coarse classes up
        to 64 strata, with NLCD's 16 leaves up to 256). The estimates serve both levels.
    pool_below : float
        Changed transitions each under this share of the compared pixels (``0.001``:
        0.1 %) share one stratum, ``(other changes)`` (:data:`POOLED`), so that rare
        transitions do not each take ``per_class`` points; those whose class stayed
        keep their own. 0: none pooled.
    target : TargetPrecision, optional
        Instead of ``total``: as many points as a standard error of the overall accuracy
        of the transitions needs (:func:`geoseg.sample.draw_sample`).

    Returns
    -------
    geopandas.GeoDataFrame
        One point per drawn pixel, at its centre, in the raster's CRS: ``id``,
        ``stratum`` (the transition's value in the level's band), ``stratum_name``,
        ``stratum_area`` and ``area_unit`` (``m2``, or ``pixels`` without a CRS), the
        maps' classes at each level (``map_coarse_from``, ``map_coarse_to``,
        ``map_fine_from``, ``map_fine_to``; NULL where not compared) and empty
        ``before_coarse``, ``after_coarse``, ``before_fine``, ``after_fine`` for the
        reference labels (the class on the ground at each date, a code or a class name),
        which ``geoseg change --reference`` reads.

    Raises
    ------
    RasterReadError
        The file is missing or not a readable raster.
    RasterFormatError
        Not a change.tif (or one without its taxonomy), nothing compared, or more than
        :data:`geoseg.sample.MAX_POINTS` points.
    ConfigError
        ``level`` is fine where the maps were compared at the coarse level only.
    """
    import geopandas as gpd
    import pandas as pd

    from geoseg.raster import open_labels
    from geoseg.sample import checked_total, stratified_draw

    level = level or "coarse"
    with open_labels(change_tif) as src:
        change = read_change_raster(src, change_tif)
        if change is None:
            raise RasterFormatError(
                f"{change_tif}: not a geoseg change.tif (no GEOSEG_CHANGE_VALUES tag): pass the "
                "change.tif of geoseg change, or sample a map of classes without --level"
            )
        if level not in change.bands:
            raise ConfigError(
                f"{change_tif}: its maps were compared at the {' and '.join(change.bands)} "
                f"level only, so it has no {level} transitions: drop --level {level}"
            )
        if not 0.0 <= pool_below < 1.0:
            raise ConfigError(
                f"--pool-below {pool_below:g}: give a share of the compared pixels from 0 to 1 "
                "(0.001: transitions under 0.1 % of it are pooled)"
            )
        crs, transform, width = src.crs, src.transform, src.width
        stratum_of = _pooled_strata(src, change, level, pool_below) if pool_below else None

        def stratum_name(stratum: int) -> str:
            return POOLED_NAME if stratum == POOLED else change.name(level, stratum)

        drawn = stratified_draw(
            src, lambda: _bands(src, change, level, stratum_of), change_tif,
            per_class=per_class, total=checked_total(total, target), seed=seed, what="transition",
            named=lambda v: f"{stratum_name(v)!r} ({v})", target=target, label=stratum_name,
        )  # fmt: skip
    rows, cols = np.divmod(drawn.where, width)
    x, y = transform @ (cols + 0.5, rows + 0.5)
    columns: dict[str, Any] = {
        "id": np.arange(1, drawn.where.size + 1),
        "stratum": drawn.strata,
        "stratum_name": [stratum_name(v) for v in drawn.strata.tolist()],
        # the stratum's area (m², or pixels without a CRS): its points' weight
        "stratum_area": np.array([drawn.areas[int(c)] for c in drawn.strata], np.float64),
        "area_unit": "m2" if crs is not None else "pixels",
    }
    levels = [lv for lv in LEVELS if lv in change.bands]
    for k, lv in enumerate(levels):
        codes = np.array([c.code for c in change.classes(lv)], np.int64)
        for side, index in zip(MAP_FIELDS[lv], change.transition(lv, drawn.codes[k]), strict=True):
            columns[side] = pd.array(
                [int(codes[i]) if i >= 0 else None for i in index.tolist()], dtype="Int32"
            )
    for lv in levels:
        for name in REFERENCE_FIELDS[lv]:
            columns[name] = pd.array([None] * drawn.where.size, dtype="Int32")
    frame = gpd.GeoDataFrame(columns, geometry=gpd.points_from_xy(x, y), crs=crs)
    log.info("%s: %d points in %d transitions", change_tif, drawn.where.size, len(drawn.sizes))
    if drawn.plan is not None:
        frame.attrs["plan"] = drawn.plan
    return frame
