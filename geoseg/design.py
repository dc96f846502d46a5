"""A ``geoseg sample`` file read for its design: strata, their areas, the map at each point.

``geoseg sample`` writes each point's stratum (the coarse class of the map it was drawn
on), that stratum's area and its unit. :func:`read_sample_points` reads them back with the
scored map's classes at each point, and :func:`design_area` turns the labelled points
into the estimates of that design (Stehman 2014, :func:`geoseg.metrics.design_estimates`),
which hold for any map the points score, and for both levels.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rasterio.windows import Window

from geoseg.errors import SampleDesignWarning
from geoseg.map_scores import StrataCounts, stratum_counts
from geoseg.metrics import design_estimates, scored_classes
from geoseg.taxonomy import Taxonomy, lookup_codes
from geoseg.vector_labels import VectorField

LEVELS = ("coarse", "fine")

#: The key :func:`design_area` keeps its strata under, for the map's scores' intervals
#: (the caller moves them from the area to the level: not in metrics.json).
STRATA = "stratum_counts"


#: The attribute ``geoseg sample`` gives each point: its stratum, the sampled map's
#: coarse code there.
STRATUM_FIELD = "stratum"


@dataclass
class SamplePoints:
    """The points of a ``geoseg sample`` file on a map (see :func:`read_sample_points`).

    Attributes
    ----------
    path : str
        The points file.
    frame : GeoDataFrame
        The points with their attributes, stratum known.
    stratum : numpy.ndarray
        Each point's stratum (the coarse code of the map it was drawn on).
    areas : dict of int to float, optional
        Each stratum's area (``stratum_area``; ``None`` in samples of earlier versions).
    unit : str
        Their unit (``area_unit``): ``m2``, or ``pixels`` (a map without a CRS).
    problem : str, optional
        Why the stratum areas cannot be used (edited by hand), if so.
    mapped_coarse : numpy.ndarray
        The scored map's coarse code at each point (``-1``: none, or outside it).
    mapped : dict of str to numpy.ndarray
        The scored map's class index at each point, per level (``-1``: none).
    """

    path: str
    frame: Any
    stratum: np.ndarray
    areas: dict[int, float] | None
    mapped_coarse: np.ndarray
    mapped: dict[str, np.ndarray]
    unit: str = "m2"
    problem: str | None = None


def read_sample_points(
    truth: str | Path,
    layer: str | None,
    src: Any,
    classes: Callable[[Window], tuple[np.ndarray, np.ndarray]],
    tax: Taxonomy,
) -> SamplePoints | None:
    """The points of a ``geoseg sample`` file, with the scored map's classes at each.

    ``src`` is the open map, ``classes(window)`` its coarse and fine class indices there
    (``-1``: none). ``None`` where ``truth`` is not such a file (it has no
    :data:`STRATUM_FIELD`).
    """
    import geopandas as gpd
    import pyogrio

    try:
        info = pyogrio.read_info(str(truth), layer=layer)
    except Exception:  # read again, with its error, by the scoring itself
        return None
    fields = list(info["fields"])
    if STRATUM_FIELD not in fields or "Point" not in str(info["geometry_type"]):
        return None
    if layer is None:  # the file's first layer with geometries, as the scoring reads it
        layer = next((str(n) for n, kind in pyogrio.list_layers(str(truth)) if kind), None)
    points = gpd.read_file(truth, layer=layer).reset_index(drop=True)
    points, stratum = stratified_points(points, truth, keep_repeats=True)
    points = points.reset_index(drop=True)
    areas, problem, unit = None, None, "m2"
    area_field = next((f for f in AREA_FIELDS if f in fields), None)
    if area_field is not None:
        areas, problem = stratum_areas(stratum, floats(points[area_field]))
        unit_field = next((f for f in UNIT_FIELDS if f in fields), None)
        if unit_field is not None and len(points):
            unit = str(points[unit_field].iloc[0])
    rows, cols = point_pixels(points, src.crs, src.transform)
    inside = (rows >= 0) & (rows < src.height) & (cols >= 0) & (cols < src.width)
    mapped = {lv: np.full(rows.size, -1, np.int64) for lv in LEVELS}
    for r0 in np.unique(rows[inside] // 512) * 512:  # the map read in strips holding points
        here = inside & (rows >= r0) & (rows < r0 + 512)
        h = int(min(512, src.height - r0))
        coarse, fine = classes(Window(0, int(r0), src.width, h))
        mapped["coarse"][here] = coarse[rows[here] - r0, cols[here]]
        mapped["fine"][here] = fine[rows[here] - r0, cols[here]]
    idx = mapped["coarse"]
    mapped_coarse = np.where(idx >= 0, tax.coarse_codes[np.maximum(idx, 0)], -1)
    return SamplePoints(str(truth), points, stratum, areas, mapped_coarse, mapped, unit, problem)


def point_pixels(points: Any, crs: Any, transform: Any) -> tuple[np.ndarray, np.ndarray]:
    """Each point's row and column on a grid (in its CRS where both have one).

    Off the grid, the row or column is outside it (negative, or past its size).
    """
    if points.crs is not None and crs is not None:
        points = points.to_crs(crs)
    cols, rows = ~transform @ (points.geometry.x.to_numpy(), points.geometry.y.to_numpy())
    return np.floor(rows).astype(np.int64), np.floor(cols).astype(np.int64)


def stratified_points(
    points: Any, path: str | Path, *, keep_repeats: bool = False
) -> tuple[Any, np.ndarray]:
    """A sample's points with a stratum, each place once, and their strata.

    A point repeated at one place (one pixel) would count twice: it counts once, with a
    warning (``keep_repeats``: every copy is kept, for :func:`one_per_place` to choose
    per level, as the scoring does). Points without a stratum are left out, with a
    warning (a file none of whose points has one is not a sample: left to the caller).
    """
    stratum = whole_codes(points[STRATUM_FIELD])
    if (stray := int((stratum < 0).sum())) and stray < stratum.size:
        warnings.warn(
            f"{path}: {stray:,} points have no stratum (blank, or not a whole number): they "
            "are left out of the design (restore their stratum as geoseg sample wrote it)",
            SampleDesignWarning,
            stacklevel=4,
        )
    points, stratum = points[stratum >= 0], stratum[stratum >= 0]
    repeated = points.geometry.to_wkb().duplicated().to_numpy()
    if repeated.any():
        warnings.warn(
            f"{path}: {int(repeated.sum()):,} points repeat another point's place: each "
            "place counts once"
            + (
                " (where the copies disagree on a level's label or on the stratum, that "
                "level leaves the place out, as the scoring leaves it unlabelled)"
                if keep_repeats
                else ""
            ),
            SampleDesignWarning,
            stacklevel=4,
        )
        if not keep_repeats:
            points, stratum = points[~repeated], stratum[~repeated]
    return points, stratum


def one_per_place(
    place: np.ndarray, stratum: np.ndarray, reference: np.ndarray
) -> tuple[np.ndarray, int]:
    """Which labelled points a level's design counts: one per place, where its copies agree.

    ``place``: each point's place (equal for copies at one place); ``reference``: its
    class at the level (``-1``: unlabelled, as if absent). Of a place's labelled copies
    the first counts when they all carry one stratum and one class; where they disagree,
    none does (the scoring leaves such a place unlabelled). Returns the mask and how
    many labelled points lie at such places.

    Examples
    --------
    >>> keep, clash = one_per_place(np.array([0, 0, 1, 1, 2]), np.array([4, 4, 4, 4, 5]),
    ...                             np.array([2, 2, 1, 3, -1]))
    >>> keep.tolist(), clash
    ([True, False, False, False, False], 2)
    """
    table = pd.DataFrame({"place": place, "stratum": stratum, "ref": reference})
    labelled = table[table["ref"] >= 0]
    grouped = labelled.groupby("place")
    agree = (grouped["stratum"].transform("nunique") == 1) & (
        grouped["ref"].transform("nunique") == 1
    )
    first = ~labelled["place"].duplicated()
    keep = np.zeros(len(table), bool)
    keep[labelled.index[(agree & first).to_numpy()]] = True
    return keep, int((~agree).sum())


def stratum_areas(
    stratum: np.ndarray, size: np.ndarray
) -> tuple[dict[int, float] | None, str | None]:
    """Each stratum's area from its points' ``stratum_area``, or why it cannot be had.

    Every point of a stratum carries the same positive area; one that differs (an edit)
    leaves the stratum's weight unknown.
    """
    areas: dict[int, float] = {}
    for h in np.unique(stratum).tolist():
        values = np.unique(size[stratum == h])
        if values.size != 1 or not np.isfinite(values[0]) or values[0] <= 0:
            shown = ", ".join(f"{v:g}" for v in values[:4])
            return None, (
                f"the points of stratum {h} carry {values.size} stratum areas ({shown}), "
                "not one positive area, so its weight is unknown: restore stratum_area as "
                "geoseg sample wrote it (the same for every point of a stratum)"
            )
        areas[int(h)] = float(values[0])
    return areas, None


#: The attribute of a sample's stratum areas (full name, geoseg's Shapefile name, GDAL's cut
#: to 10 characters by a conversion).
AREA_FIELDS = ("stratum_area", "strat_area", "stratum_ar")
#: The attribute of their unit: ``m2``, or ``pixels`` for a map without a CRS.
UNIT_FIELDS = ("area_unit",)


def whole_codes(values: Any) -> np.ndarray:
    """A column of codes as int64 (``-1`` where empty or not a whole number)."""
    import pandas as pd

    v = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    whole = np.isfinite(v) & (v == np.round(v))
    return np.where(whole, v, -1).astype(np.int64)


def floats(values: Any) -> np.ndarray:
    """A column as float64 (NaN where empty or not a number)."""
    import pandas as pd

    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)


def design_area(
    classes: list[str],
    mapped: np.ndarray,
    lv: str,
    source: str,
    sample: SamplePoints,
    spec: VectorField,
    tax: Taxonomy,
    luts: dict[str, np.ndarray],
    interval: str = "beta",
) -> dict[str, Any] | None:
    """A level's ``area`` from the estimates of the sample's own design, or ``None``.

    See :func:`geoseg.metrics.design_estimates`: the strata are those the points were
    drawn in, whatever map is scored, and serve the fine level as the coarse one. The
    reference of level ``lv`` (``classes``, the map's area of each ``mapped``) is read
    from ``source``'s field (the coarse level's from the fine labels' parents, where
    only fine truth is given). ``None`` where the points lack that field. ``interval``:
    the intervals' method (:mod:`geoseg.intervals`).
    """
    from geoseg.vector_labels import column_in, feature_codes

    column = column_in(list(sample.frame.columns), spec)
    if column is None:
        return None
    with warnings.catch_warnings():  # said once already, by the scoring
        warnings.simplefilter("ignore")
        codes, _ = feature_codes(sample.path, sample.frame[column], spec, "sample")
    if lv == source:
        reference = lookup_codes(codes, luts[lv])
    else:  # coarse from fine codes: the parent, or a coarse class standing for itself
        fine = lookup_codes(codes, luts["fine"])
        leaf = lookup_codes(codes, luts["leaf"])
        parent = np.append(tax.fine_parent_index, -1)
        reference = np.where(leaf >= 0, leaf, parent[fine])
    place = pd.factorize(sample.frame.geometry.to_wkb())[0]
    labelled, clash = one_per_place(place, sample.stratum, reference)
    if clash:
        warnings.warn(
            f"{sample.path}: {clash:,} labelled points lie at places whose copies disagree "
            f"on the {lv} class or the stratum: that level leaves them out, as the scoring "
            "leaves those places unlabelled",
            SampleDesignWarning,
            stacklevel=3,
        )
    stratum, on_map = sample.stratum[labelled], sample.mapped[lv][labelled]
    area = {
        "unit": sample.unit,
        "interval": "stratified",
        "strata": "the sample's own (Stehman 2014)",
        **design_estimates(
            stratum,
            sample.areas or {},
            on_map,
            reference[labelled],
            mapped,
            classes,
            method=interval,
        ),
    }
    if not area["unsampled_share"]:  # every stratum holds a labelled point
        ids, counts, off = stratum_counts(stratum, on_map, reference[labelled], len(classes))
        strata = sample.areas or {}
        kept = StrataCounts(
            counts, np.array([strata[int(h)] for h in ids], dtype=np.float64), off, mapped,
            classes, scored_classes(classes),
        )  # fmt: skip
        # the map's scores, their intervals added with the others' (add_confidence)
        area["map_scores"] = kept.scores(replicates=0)
        area[STRATA] = kept
    return area
