"""Error-adjusted change areas from a labelled reference sample of a change map.

A map of change made by comparing two classifications holds both maps' errors: where
real change is rare, most of the "changed" area is error (on Zion, NLCD 2011 against
the model's map shows 24 % change, almost all of it disagreement). Olofsson et al.
(2014, *Good practices for estimating area and assessing accuracy of land change*)
correct it with a reference sample: points drawn at random within each mapped
transition (``geoseg sample change.tif``, :mod:`geoseg.change_sample`), each labelled
with the class on the ground at both dates. :func:`read_change_reference` reads such a
file; :func:`change_estimates` turns the labels into the estimates of the sample's
design (Stehman 2014: the strata need not be the scored map's classes, so the sample
scores a change re-run with other options, or other maps of the same dates):

- the area that changed class, and the accuracy of the mapped change (user's: of the
  land mapped as changed, the share that did; producer's: of the land that changed,
  the share mapped as changed);
- every transition's area and accuracies;
- each class's area at both dates and its net change, with 95 % intervals (the net
  change's variance holds the covariance of the two dates' areas; its interval, by
  default, combines those of the class's gains and losses: :mod:`geoseg.intervals`).

:func:`reference_record` adds what weakens them (warnings) and the design;
:mod:`geoseg.change_report` writes their section of change.md.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geoseg.change_sample import REFERENCE_FIELDS
from geoseg.design import (
    AREA_FIELDS,
    STRATUM_FIELD,
    UNIT_FIELDS,
    floats,
    point_pixels,
    stratified_points,
    stratum_areas,
    whole_codes,
)
from geoseg.errors import ConfigError, RasterFormatError
from geoseg.metrics import design_difference, design_estimates, design_total
from geoseg.taxonomy import ClassDef, Taxonomy

log = logging.getLogger(__name__)

LEVELS = ("coarse", "fine")
#: Texts read as a blank label: what pandas and GDAL write for a missing value as text.
BLANK_TEXTS = frozenset({"", "nan", "none", "null", "<na>"})
#: A sample whose strata cover more than this many times the compared area, or less
#: than its inverse, is refused: its stratum areas were converted (to km², to ha), or it
#: was drawn on another area altogether.
REGION_RATIO = 100.0


@dataclass
class ChangeSample:
    """A labelled change sample on a comparison's grid (see :func:`read_change_reference`).

    Attributes
    ----------
    path : str
        The points file.
    stratum : numpy.ndarray
        Each point's stratum.
    areas : dict of int to float
        Each stratum's area (``stratum_area``).
    unit : str, optional
        Their unit: ``m2``, or ``pixels``; ``None`` where the file does not say (the
        compared maps' is taken).
    rows, cols : numpy.ndarray
        Each point's pixel on the grid (``-1``: off it).
    reference : dict of str to tuple of numpy.ndarray
        Per level, each point's class index at the earlier and the later date
        (``-1``: not labelled at that level); the fine level's indices are leaves.
    ids : numpy.ndarray
        Each point's ``id`` (its row number where the file has none).
    recorded : tuple of numpy.ndarray, optional
        The coarse codes of the map's transition at each point when it was drawn
        (``map_coarse_from``, ``map_coarse_to``; ``-1``: none), where the file has them.
    names : dict of int to str
        Each stratum's name (``stratum_name``), where the file has them.
    layers : list of str
        The file's layers, where it has several.
    """

    path: str
    stratum: np.ndarray
    areas: dict[int, float]
    unit: str | None
    rows: np.ndarray
    cols: np.ndarray
    reference: dict[str, tuple[np.ndarray, np.ndarray]]
    ids: np.ndarray
    recorded: tuple[np.ndarray, np.ndarray] | None = None
    names: dict[int, str] = field(default_factory=dict)
    layers: list[str] = field(default_factory=list)

    def inside(self, height: int, width: int) -> np.ndarray:
        """Which points lie on a grid of that size."""
        return (self.rows >= 0) & (self.rows < height) & (self.cols >= 0) & (self.cols < width)


def _read_points(path: str, layer: str | None) -> tuple[Any, list[str]]:
    """The points of a vector file (GeoParquet read with pyarrow), or a one-line error.

    Also the file's layers where it has several and ``layer`` did not choose one (the
    first was read).
    """
    import geopandas as gpd

    from geoseg.errors import RasterReadError

    if not Path(path).exists():
        raise RasterReadError(f"{path}: no such file: pass the points geoseg sample drew")
    try:
        if Path(path).suffix.lower() in (".parquet", ".geoparquet"):
            return gpd.read_parquet(path), []
        layers = _layers(path) if layer is None else []
        # the first with geometries, without geopandas' warning
        return gpd.read_file(path, layer=layer or next(iter(layers), None)), layers
    except Exception as exc:  # any reader's error is the file's problem
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RasterReadError(
            f"{path}: not a readable vector file ({first}): pass the points geoseg sample drew"
        ) from None


def _layers(path: str) -> list[str]:
    """The layers with geometries of a file with several (``[]`` for one, or none)."""
    import pyogrio

    try:
        layers = [str(name) for name, kind in pyogrio.list_layers(path) if kind]
    except Exception:  # read, with its error, by the caller
        return []
    return layers if len(layers) > 1 else []


def _codes(values: Any, level: str, tax: Taxonomy) -> tuple[np.ndarray, list[Any]]:
    """A reference column's class indices at ``level`` (``-1``: blank), and what is unknown.

    Codes or class names (any case). The fine level's indices are leaves: a fine class,
    or a coarse class without fine classes standing for itself.
    """
    import pandas as pd

    classes = list(tax.coarse) if level == "coarse" else tax.leaves
    by_code = {c.code: i for i, c in enumerate(classes)}
    by_name = {c.name.casefold(): i for i, c in enumerate(classes)}
    out = np.full(len(values), -1, np.int64)
    unknown: list[Any] = []
    for k, v in enumerate(values.tolist()):
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
            continue
        text = str(v).strip()
        if text.casefold() in BLANK_TEXTS:  # how a blank reads once written as text
            continue
        try:
            number: float | None = float(text)
        except ValueError:
            number = None
        if number is not None and not math.isfinite(number):
            unknown.append(v)
        elif number is not None and number == int(number) and int(number) in by_code:
            out[k] = by_code[int(number)]
        elif number is None and text.casefold() in by_name:
            out[k] = by_name[text.casefold()]
        else:
            unknown.append(v)
    return out, unknown


def read_change_reference(
    path: str | Path | Any, layer: str | None, grid: dict[str, Any], tax: Taxonomy
) -> ChangeSample:
    """The labelled points of a ``geoseg sample change.tif`` file, on a comparison's grid.

    Parameters
    ----------
    path : str, Path or GeoDataFrame
        The points (GeoPackage, Shapefile, FlatGeobuf, GeoParquet...), or the
        GeoDataFrame ``geoseg.api.sample`` returned, labelled in Python.
    layer : str, optional
        Its layer (default: the first).
    grid : dict
        The comparison's grid: ``width``, ``height``, ``crs``, ``transform``.
    tax : Taxonomy
        The comparison's taxonomy, whose codes (or names) the labels hold.

    Returns
    -------
    ChangeSample
        Each point's stratum, its pixel on the grid and its reference classes.

    Raises
    ------
    RasterFormatError
        Not a change sample (no ``stratum``, ``stratum_area`` or reference fields),
        stratum areas edited, labels that are not classes of the taxonomy, or a fine
        label under another coarse label.

    Warns
    -----
    SampleDesignWarning
        Points labelled at one date only, or repeated at one place (each counts once).
    """
    from geoseg.export import SHAPEFILE_FIELDS

    if isinstance(path, str | Path):
        path = str(path)
        points, layers = _read_points(path, layer)
    elif hasattr(path, "geometry") and hasattr(path, "columns"):  # a GeoDataFrame
        points, path, layers = path, "the reference GeoDataFrame", []
    else:
        raise ConfigError(
            f"reference is a {type(path).__name__}: pass the points' file, or the "
            "GeoDataFrame geoseg.api.sample returned with its labels filled in"
        )
    fields = [str(c) for c in points.columns]

    def column(name: str, cut: bool = True) -> str | None:
        """The field by its name, geoseg's Shapefile name, or GDAL's cut to 10 characters.

        (``map_coarse_from`` and ``map_coarse_to`` cut alike: GDAL renames the second.)
        """
        names = (name, SHAPEFILE_FIELDS.get(name), name[:10] if cut else None)
        return next((n for n in names if n in fields), None)

    area_field = next((f for f in AREA_FIELDS if f in fields), None)
    given = {lv: [column(f) for f in REFERENCE_FIELDS[lv]] for lv in LEVELS}
    if (
        STRATUM_FIELD not in fields
        or area_field is None
        or not any(c is not None for pair in given.values() for c in pair)
    ):
        raise RasterFormatError(
            f"{path}: not a change sample (it needs the fields stratum, stratum_area and "
            f"before_coarse / after_coarse or before_fine / after_fine; it has "
            f"{', '.join(f for f in fields if f != 'geometry') or 'none'}): draw one with "
            "geoseg sample CHANGE_DIR/change.tif and label its points"
        )
    import geopandas as gpd

    if not isinstance(getattr(points, "geometry", None), gpd.GeoSeries):
        raise RasterFormatError(
            f"{path}: its points have no geometry (a table, such as a CSV, cannot tell where "
            "they are): save the labelled points as a GeoPackage or Shapefile, as geoseg "
            "sample wrote them"
        )
    if not all(points.geometry.geom_type == "Point"):
        raise RasterFormatError(
            f"{path}: holds geometries other than points: pass the points geoseg sample drew"
        )
    points, stratum = stratified_points(points, path)
    if not len(points):
        raise RasterFormatError(
            f"{path}: no point has a stratum (the file is empty, or its stratum field "
            "blank): pass the points geoseg sample drew, with their fields as it wrote them"
        )
    areas, problem = stratum_areas(stratum, floats(points[area_field]))
    if areas is None:
        raise RasterFormatError(f"{path}: {problem}")
    unit_field = next((f for f in UNIT_FIELDS if f in fields), None)
    # without the field (points of one's own), the stratum areas are taken in the maps' unit
    unit = str(points[unit_field].iloc[0]) if unit_field is not None else None
    ids = whole_codes(points["id"]) if "id" in fields else np.arange(1, len(points) + 1)
    reference: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for lv in LEVELS:
        sides = []
        for col in given[lv]:
            if col is None:
                sides.append(np.full(len(points), -1, np.int64))
                continue
            if lv == "fine" and not tax.n_fine:
                if points[col].notna().any():
                    raise RasterFormatError(
                        f"{path}: field {col} holds fine labels, and taxonomy {tax.name!r} has "
                        "no fine classes: label before_coarse / after_coarse"
                    )
                sides.append(np.full(len(points), -1, np.int64))  # an empty column
                continue
            index, unknown = _codes(points[col], lv, tax)
            if unknown:
                shown = ", ".join(repr(u) for u in sorted(set(map(str, unknown)))[:5])
                raise RasterFormatError(
                    f"{path}: field {col} holds {len(unknown)} labels that are not {lv} "
                    f"classes of taxonomy {tax.name!r} ({shown}): correct them to its codes "
                    "or names"
                )
            sides.append(index)
        reference[lv] = (sides[0], sides[1])
    _derive_levels(path, reference, tax, ids)
    names: dict[int, str] = {}
    if (name_field := column("stratum_name")) is not None:
        for h, text in zip(stratum.tolist(), points[name_field].tolist(), strict=True):
            if isinstance(text, str) and text:
                names.setdefault(int(h), text)
    drawn = [column(f, cut=False) for f in ("map_coarse_from", "map_coarse_to")]
    recorded = None
    if drawn[0] is not None and drawn[1] is not None:
        recorded = (whole_codes(points[drawn[0]]), whole_codes(points[drawn[1]]))
    rows, cols = point_pixels(points, grid["crs"], grid["transform"])
    return ChangeSample(
        path=path,
        stratum=stratum,
        areas=areas,
        unit=unit,
        rows=rows,
        cols=cols,
        reference=reference,
        ids=ids,
        recorded=recorded,
        names=names,
        layers=layers,
    )


def _derive_levels(
    path: str, reference: dict[str, tuple[np.ndarray, np.ndarray]], tax: Taxonomy, ids: np.ndarray
) -> None:
    """Fill each level's labels from the other's where they tell it (in place).

    A fine label gives its parent as the coarse one; a coarse class without fine classes
    is its own leaf, so its coarse label gives the fine level's too, where the points are
    labelled at the fine level at all (coarse labels alone leave the fine level
    unestimated, not estimated from the childless classes' points). Labels of the two
    levels that disagree are refused.
    """
    if not tax.n_fine:
        return
    parent = np.append(tax.leaf_parent_index, -1)
    own_leaf = np.full(tax.n_coarse + 1, -1, np.int64)  # the last: index -1
    own_leaf[tax.childless_coarse_index] = tax.n_fine + np.arange(tax.childless_coarse_index.size)
    coarse_sides, fine_sides = [], []
    fine_given = any(bool((side >= 0).any()) for side in reference["fine"])
    dates = zip(("before", "after"), reference["coarse"], reference["fine"], strict=True)
    for date, coarse, fine in dates:
        of_fine = parent[fine]
        clash = (coarse >= 0) & (fine >= 0) & (of_fine != coarse)
        if clash.any():
            shown = ", ".join(str(i) for i in ids[clash][:5])
            raise RasterFormatError(
                f"{path}: {int(clash.sum())} points (id {shown}) have a {date}_fine label "
                f"that is not a child of their {date}_coarse label: correct one of the two"
            )
        coarse_sides.append(np.where(coarse >= 0, coarse, of_fine))
        fine_sides.append(np.where(fine >= 0, fine, own_leaf[coarse]) if fine_given else fine)
    reference["coarse"] = (coarse_sides[0], coarse_sides[1])
    reference["fine"] = (fine_sides[0], fine_sides[1])


def change_estimates(
    stratum: np.ndarray,
    stratum_area: dict[int, float],
    mapped_pair: np.ndarray,
    before: np.ndarray,
    after: np.ndarray,
    mapped_area: np.ndarray,
    classes: list[ClassDef],
    *,
    method: str = "beta",
) -> dict[str, Any]:
    """Error-adjusted change of one level from a labelled sample of the sample's strata.

    Parameters
    ----------
    stratum : numpy.ndarray
        ``(points,)`` each labelled point's stratum.
    stratum_area : dict of int to float
        Every stratum's area.
    mapped_pair : numpy.ndarray
        ``(points,)`` the compared maps' transition at each point, ``from * n + to``
        (``-1``: not compared there).
    before, after : numpy.ndarray
        ``(points,)`` the reference class index at each date.
    mapped_area : numpy.ndarray
        ``(n, n)`` the mapped area of each transition.
    classes : list of ClassDef
        The level's classes (the fine level's: the leaves).
    method : {"beta", "wald"}
        The intervals' method (:mod:`geoseg.intervals`).

    Returns
    -------
    dict
        ``changed`` (the area that changed class: mapped, estimated, its interval, the
        user's and producer's accuracy of the mapped change), ``overall_accuracy`` (of
        the transitions), ``transitions`` (each found in the map or the sample: codes,
        names, mapped and estimated area, interval, accuracies) and ``classes`` (each
        class's area at both dates and its net change, mapped and estimated, with
        intervals).
    """
    n = len(classes)
    mapped_area = np.asarray(mapped_area, np.float64)
    ref_pair = before * n + after
    m = np.asarray(mapped_pair, np.int64)
    # keyed by index, not name: a taxonomy may give two classes one name
    pairs = design_estimates(stratum, stratum_area, m, ref_pair, mapped_area.ravel(),
                             [str(k) for k in range(n * n)], method=method)  # fmt: skip
    mapped_changed = np.where(m >= 0, (m // n != m % n).astype(np.int64), -1)
    same = float(np.trace(mapped_area))
    changed = design_estimates(
        stratum, stratum_area, mapped_changed, (before != after).astype(np.int64),
        np.array([same, mapped_area.sum() - same]), ["unchanged", "changed"], method=method,
    )["classes"].get("changed")  # fmt: skip
    # an area the map does not have and no point saw: 0, within what the points allow
    unseen = design_total(stratum, stratum_area, np.zeros(stratum.size), method=method)
    if changed is None:
        changed = {"mapped": float(mapped_area.sum() - same), **unseen}
    names = [str(i) for i in range(n)]
    dates = {
        "before": design_estimates(stratum, stratum_area, np.where(m >= 0, m // n, -1), before,
                                   mapped_area.sum(axis=1), names, method=method),
        "after": design_estimates(stratum, stratum_area, np.where(m >= 0, m % n, -1), after,
                                  mapped_area.sum(axis=0), names, method=method),
    }  # fmt: skip
    transitions = []
    for key, c in pairs["classes"].items():
        k = int(key)
        i, j = divmod(k, n)
        transitions.append({
            "from_code": classes[i].code, "from_name": classes[i].name,
            "to_code": classes[j].code, "to_name": classes[j].name,
            "changed": i != j, "value": k + 1, **c,
            "reference_points": int((ref_pair == k).sum()),
        })  # fmt: skip
    per_class = []
    for i, c in enumerate(classes):
        b, a = dates["before"]["classes"].get(str(i)), dates["after"]["classes"].get(str(i))
        if b is None and a is None:
            continue
        # gains less losses (1[after is i] - 1[before is i] at every point): two small,
        # nearly independent areas, whose intervals combine well (MOVER)
        net = design_difference(stratum, stratum_area, (before == i) & (after != i),
                                (after == i) & (before != i), method=method)  # fmt: skip
        if net["ci95"][0] is not None and method != "wald":  # lost at most all, gained too
            low = -b["ci95"][1] if b is not None else 0.0
            high = a["ci95"][1] if a is not None else 0.0
            net["ci95"] = [max(net["ci95"][0], low), min(net["ci95"][1], high)]
        per_class.append({
            "code": c.code, "name": c.name,
            "before": {**_area_part(b, unseen), "reference_points": int((before == i).sum())},
            "after": {**_area_part(a, unseen), "reference_points": int((after == i).sum())},
            # the points that saw the class come or go: what its net change rests on
            "net": {"mapped": float(mapped_area[:, i].sum() - mapped_area[i].sum()), **net,
                    "reference_points": int(((before == i) != (after == i)).sum())},
        })  # fmt: skip
    if pairs["unsampled_share"]:  # ratios over the sampled strata only: not the map's
        for c in [changed, *transitions, *(k[d] for k in per_class for d in ("before", "after"))]:
            for key in ("users_accuracy", "producers_accuracy"):
                if key in c:
                    c[key], c[f"{key}_ci95"] = None, [None, None]
    changed["reference_points"] = int((before != after).sum())
    # the points mapped as unchanged, and those of them the reference says changed: where
    # none did, the producer's accuracy of the change is 1 without an interval
    changed["mapped_unchanged_points"] = int((mapped_changed == 0).sum())
    changed["missed_points"] = int(((mapped_changed == 0) & (before != after)).sum())
    return {
        "points": int(stratum.size),
        "total": pairs["total"],
        "unsampled_share": pairs["unsampled_share"],
        "changed": changed,
        "overall_accuracy": pairs["overall_accuracy"],
        "overall_accuracy_ci95": pairs["overall_accuracy_ci95"],
        "transitions": transitions,
        "classes": per_class,
    }


def _area_part(c: dict[str, Any] | None, unseen: dict[str, Any]) -> dict[str, Any]:
    """A class's area at one date: mapped, estimated, se, interval, accuracies.

    ``unseen``: the estimate of an area no point saw, for a class found at that date
    neither in the map nor in the sample.
    """
    if c is None:
        return {"mapped": 0.0, **unseen}
    keep = ("mapped", "estimated", "se", "ci95", "users_accuracy", "producers_accuracy",
            "unsampled_range")  # fmt: skip
    return {k: c[k] for k in keep if k in c}


def reference_record(
    sample: ChangeSample,
    levels: dict[str, Any],
    at_points: dict[str, np.ndarray],
    unit: str,
    grid: tuple[int, int],
    zones: tuple[np.ndarray, list[str], dict[str, dict[int, list[float]]]] | None = None,
    method: str = "beta",
) -> dict[str, Any]:
    """``change.json``'s ``reference``: the file, its points and each level's estimates.

    ``levels``: the comparison's :class:`geoseg.change.LevelChange` per level;
    ``at_points``: the compared transition at each point of the sample per level;
    ``grid``: the comparison's height and width; ``zones``: each point's zone
    (``-1``: none), the zones' names and the comparison's counts per zone
    (:attr:`geoseg.change.MapChange.by_zone`), for ``by_zone``: each transition's area
    per zone (:func:`zone_estimates`); ``method``: the intervals' (:mod:`geoseg.intervals`).

    Its ``warnings`` (also logged) say what weakens the estimates: points not labelled
    or labelled at one date only; strata without a labelled point (their land is in no
    class's estimate: the accuracies are withheld, each area gets its range) or with a
    single one (no variance: intervals too narrow); transitions these maps show that
    the sample has no stratum for (points deleted); points off the grid or where the
    maps are not both labelled; maps whose transitions at the points are mostly not
    those the sample recorded (BEFORE and AFTER swapped?); and a sample drawn over
    another region.

    Raises
    ------
    ConfigError
        The sample's areas are in another unit than the comparison's, or cover more
        than :data:`REGION_RATIO` times the compared area or less than its inverse
        (stratum areas edited), or no point is labelled at both dates.
    """
    if sample.unit is not None and sample.unit != unit:
        raise ConfigError(
            f"{sample.path}: its stratum areas are in {sample.unit}, the compared maps' in "
            f"{unit}: draw the sample on the change.tif of these maps"
        )
    region = sum(sample.areas.values())
    compared = float(levels["coarse"].area.sum())
    if not region or not 1 / REGION_RATIO <= compared / region <= REGION_RATIO:
        raise ConfigError(
            f"{sample.path}: its strata cover {_area(region, unit)} in all, the compared area "
            f"is {_area(compared, unit)}: stratum_area must stay as geoseg sample wrote it (in "
            f"{unit}; converted to km² or ha?), or the sample is of another area: draw it on "
            "the change.tif of these maps"
        )
    record: dict[str, Any] = {"file": sample.path, "strata": len(sample.areas),
                              "interval_method": method, "levels": {}}  # fmt: skip
    notes: list[str] = []
    by_level: dict[str, list[str]] = {}  # "{level}" stands for the level
    both_dates: dict[str, np.ndarray] = {}
    for lv, level in levels.items():
        before, after = sample.reference[lv]
        labelled = (before >= 0) & (after >= 0)
        both_dates[lv] = labelled
        if not labelled.any():
            continue
        blank = int(((before < 0) & (after < 0)).sum())
        half = int(((before >= 0) ^ (after >= 0)).sum())
        if blank or half:
            parts = [f"{_count(blank, 'point')} not labelled"] if blank else []
            parts += [f"{_count(half, 'point')} labelled at one date only"] if half else []
            by_level.setdefault(lv, []).append(
                f"{sample.path}: at the {{level}}, {' and '.join(parts)} "
                f"{'is' if blank + half == 1 else 'are'} left out (label both dates of every "
                "point: those left are fewer, and biased where the labelled ones are the easy "
                "ones)"
            )
        est = change_estimates(
            sample.stratum[labelled], sample.areas, at_points[lv][labelled], before[labelled],
            after[labelled], level.area, level.classes, method=method,
        )  # fmt: skip
        est["unlabelled_points"] = blank + half
        pixel = compared / max(int(level.pixels.sum()), 1)  # a pixel's mean area
        by_level.setdefault(lv, []).extend(_thin_strata(sample, labelled, region, pixel))
        record["levels"][lv] = est
    notes += _merged_levels(by_level)
    if not record["levels"]:
        others = (
            f"; the file has layers {', '.join(sample.layers)}, and the first was read: pass "
            "--reference-layer (reference_layer=) to read another"
            if sample.layers
            else ""
        )
        raise ConfigError(
            f"{sample.path}: no point is labelled at both dates (before_coarse and "
            f"after_coarse, or before_fine and after_fine): label the points first{others}"
        )
    first = next(iter(record["levels"]))  # the coarse level, labelled wherever fine is
    unlabelled = [lv for lv in levels if lv not in record["levels"]]
    if unlabelled:
        notes.append(
            f"{sample.path}: the {unlabelled[0]} level is not estimated: no point is labelled "
            f"at both dates there (label before_{unlabelled[0]} / after_{unlabelled[0]})"
        )
    if zones is not None:
        zone_at, zone_names, by_zone = zones
        land = stratum_land(sample, levels, by_zone)
        record["by_zone"] = [
            row
            for lv in record["levels"]
            for row in zone_estimates(
                sample,
                both_dates[lv],
                lv,
                levels[lv].classes,
                zone_at,
                zone_names,
                land,
                method=method,
            )
        ]
        # per level, the labelled points in each zone (a zone without any: no estimate)
        record["zone_points"] = {
            lv: {zone_names[z]: int(((zone_at == z) & both_dates[lv]).sum())
                 for z in range(len(zone_names))}
            for lv in record["levels"]
        }  # fmt: skip
        labelled = both_dates[first]
        empty = [z for z, k in record["zone_points"][first].items() if not k]
        if empty:
            shown = ", ".join(empty[:6]) + (", ..." if len(empty) > 6 else "")
            notes.append(
                f"{sample.path}: {_count(len(empty), 'zone')} ({shown}) "
                f"{'holds' if len(empty) == 1 else 'hold'} no labelled point: no estimate "
                "there in change_by_zone.csv"
            )
        inside = sample.inside(*grid)
        if nowhere := int((labelled & inside & (zone_at < 0)).sum()):
            notes.append(
                f"{sample.path}: {_count(nowhere, 'labelled point')} "
                f"{'lies' if nowhere == 1 else 'lie'} in no zone (outside the zones, or "
                "under overlapping ones): counted in the whole's estimates only"
            )
    record["design"] = [
        {"stratum": h, "name": sample.names.get(h, ""), "area": a,
         "points": int((sample.stratum == h).sum()),
         "labelled": int(((sample.stratum == h) & both_dates[first]).sum())}
        for h, a in sorted(sample.areas.items())
    ]  # fmt: skip
    notes += _missing_strata(sample, levels, compared, unit)
    notes += _points_off(sample, at_points["coarse"], grid)
    notes += _swapped(sample, at_points["coarse"], levels["coarse"].classes)
    if abs(compared - region) > 0.01 * region:
        notes.append(
            f"{sample.path}: its strata cover {_area(region, unit)}, the compared area is "
            f"{_area(compared, unit)}: the estimates are of the region the sample was drawn in"
        )
    for note in notes:  # logged, and kept in change.json (warned of by the API)
        log.warning("%s", note)
    record["warnings"] = notes
    return record


#: The names of a zone's row of all its change (``zone_estimates``, change_by_zone.csv).
ANY_CLASS, ANOTHER_CLASS = "(any class)", "(another class)"


def zone_estimates(
    sample: ChangeSample,
    labelled: np.ndarray,
    level: str,
    classes: list[ClassDef],
    zone_at: np.ndarray,
    names: list[str],
    land: dict[int, dict[int, float]] | None = None,
    method: str = "beta",
) -> list[dict[str, Any]]:
    """Each reference transition's area within each zone, with its 95 % interval.

    A zone is a domain of the sample: a transition's area in it is the total of
    ``1[the point is in the zone and its reference is the transition]`` over the
    sample's design (:func:`geoseg.metrics.design_total`), so the zones' areas add up
    to the whole's. A zone holds few of the points: its intervals are wide (``method``:
    theirs, :mod:`geoseg.intervals`); a transition no point of the zone saw has no row.

    Each zone also gets its changed area as a whole (from :data:`ANY_CLASS` to
    :data:`ANOTHER_CLASS`, codes ``None``). A stratum without a labelled point leaves a
    zone's areas bounded only where the zone
    holds some of its land: ``land[zone][stratum]``, each stratum's area in each zone
    where known (:func:`stratum_land`; else any zone may hold all of it).
    """
    before, after = (side[labelled] for side in sample.reference[level])
    n = len(classes)
    pair, moved = before * n + after, before != after
    stratum, zone = sample.stratum[labelled], zone_at[labelled]
    sampled = {h: a for h, a in sample.areas.items() if (stratum == h).any()}
    unsampled = [h for h in sample.areas if h not in sampled]
    rows = []
    for z in np.unique(zone[zone >= 0]).tolist():
        here = zone == z
        inside = (land or {}).get(z, {})
        open_land = sum(inside.get(h, 0.0) if land is not None else sample.areas[h]
                        for h in unsampled)  # fmt: skip
        # each transition its points saw, then the zone's changed area as a whole
        for k in [*np.unique(pair[here]).tolist(), None]:
            y = (here & (moved if k is None else pair == k)).astype(float)
            est = design_total(stratum, sampled, y, method=method)
            if open_land:  # unlabelled land in the zone: only bounds
                low = est["estimated"] or 0.0
                est = {"estimated": None, "se": None, "ci95": [None, None],
                       "unsampled_range": [low, low + open_land]}  # fmt: skip
            if k is None:
                names_codes = {"from_code": None, "from_name": ANY_CLASS, "to_code": None,
                               "to_name": ANOTHER_CLASS, "changed": True}  # fmt: skip
            else:
                i, j = divmod(k, n)
                names_codes = {"from_code": classes[i].code, "from_name": classes[i].name,
                               "to_code": classes[j].code, "to_name": classes[j].name,
                               "changed": i != j}  # fmt: skip
            rows.append({"zone": names[z], "level": level, **names_codes, **est,
                         "reference_points": int(y.sum())})  # fmt: skip
    return rows


def stratum_land(
    sample: ChangeSample, levels: dict[str, Any], by_zone: dict[str, dict[int, list[float]]]
) -> dict[int, dict[int, float]] | None:
    """Each stratum's area in each zone, where the sample was drawn on these maps.

    Such a sample's strata are a level's transitions (each stratum's area that
    transition's mapped area; the pooled stratum, the transitions without a stratum of
    their own), whose area per zone the comparison counted (``by_zone``: per level,
    ``zone * n * n + pair`` -> ``[pixels, area]``). ``None`` for a sample drawn elsewhere.
    """
    from geoseg.change_sample import POOLED

    lv = _drawn_level(sample, levels)
    if lv is None:
        return None
    k = len(levels[lv].classes) ** 2
    land: dict[int, dict[int, float]] = {}
    for key, (_, area) in by_zone.get(lv, {}).items():
        zone, pair = divmod(key, k)
        h = pair + 1 if (pair + 1) in sample.areas else POOLED
        into = land.setdefault(zone, {})
        into[h] = into.get(h, 0.0) + float(area)
    return land


def _drawn_level(sample: ChangeSample, levels: dict[str, Any]) -> str | None:
    """The level of these maps whose change.tif the sample was drawn on, if it was.

    Such a sample's strata are that level's transitions (the pooled stratum aside), each
    stratum's area the transition's mapped area.
    """
    from geoseg.change_sample import POOLED

    ids = np.array(sorted(h for h in sample.areas if h != POOLED), np.int64)
    for lv, level in levels.items():
        mapped = level.area.ravel()
        if not ids.size or ids.min() < 1 or ids.max() > mapped.size:
            continue
        areas = np.array([sample.areas[int(h)] for h in ids])
        if np.allclose(areas, mapped[ids - 1], rtol=1e-6, atol=1e-6):
            return lv
    return None


def _merged_levels(by_level: dict[str, list[str]]) -> list[str]:
    """The levels' notes (``{level}`` for the level), one where both levels say the same."""
    notes = []
    levels = list(by_level)
    for lv in levels:
        for note in by_level[lv]:
            alike = [k for k in levels if note in by_level[k]]
            if alike[0] != lv:
                continue  # said with the first level that says it
            both = len(alike) == len(LEVELS)
            notes.append(
                note.replace("{level}", "coarse and fine levels" if both else f"{lv} level")
            )
    return notes


def _area(a: float, unit: str) -> str:
    """An area as the tables give it: ``12.345 km²``, or ``1,234 pixels``."""
    return f"{a * 1e-6:,.3f} km²" if unit == "m2" else f"{a:,.0f} pixels"


def _percent(share: float) -> str:
    """A share in percent, ``<0.01 %`` for a sliver."""
    return "<0.01 %" if 0 < share < 1e-4 else f"{100 * share:.2f} %"


def _count(k: int, what: str) -> str:
    """``1 point``, ``3 points``, with thousands separators."""
    return f"{k:,} {what}{'' if k == 1 else 's'}"


def _thin_strata(
    sample: ChangeSample, labelled: np.ndarray, region: float, pixel: float
) -> list[str]:
    """Warnings of strata without a labelled point, or with a single one, at a level.

    A stratum of a single pixel (``pixel``: a pixel's mean area) with its point is
    known whole, without variance.
    """
    n = {h: 0 for h in sample.areas}
    for h, k in zip(*np.unique(sample.stratum[labelled], return_counts=True), strict=True):
        n[int(h)] = int(k)
    notes = []
    for k, consequence in (
        (0, "that land is in no class's estimate (change.json gives each area's range, "
            "unsampled_range) and the accuracies are withheld"),
        (1, "a single point adds no variance, so the intervals are too narrow"),
    ):  # fmt: skip
        thin = [h for h, m in n.items() if m == k and not (k and sample.areas[h] < 1.5 * pixel)]
        if thin:
            share = sum(sample.areas[h] for h in thin) / region
            shown = ", ".join(str(h) for h in thin[:8]) + (", ..." if len(thin) > 8 else "")
            strata = f"{len(thin):,} strat{'um' if len(thin) == 1 else 'a'}"
            notes.append(
                f"{sample.path}: at the {{level}}, {strata} "
                f"({shown}; {_percent(share)} of the area) "
                f"{'have' if len(thin) > 1 else 'has'} {'no' if k == 0 else 'a single'} "
                f"point labelled at both dates: {consequence}; label more of their points"
            )
    return notes


def _missing_strata(
    sample: ChangeSample, levels: dict[str, Any], compared: float, unit: str
) -> list[str]:
    """A warning where the sample was drawn on this comparison and lacks some of its strata.

    A sample drawn on these maps' change.tif has each stratum's area equal to its
    transition's mapped area at one level; a transition the maps show without a
    stratum means points were deleted, and that land is in no estimate.
    """
    from geoseg.change_sample import POOLED, POOLED_NAME

    lv = _drawn_level(sample, levels)
    if lv is None:
        return []
    level = levels[lv]
    mapped = level.area.ravel()
    pooled = sample.areas.get(POOLED, 0.0)  # the rare changed transitions, together
    missing = [v for v in (np.flatnonzero(mapped) + 1).tolist() if v not in sample.areas]
    share = float(mapped[np.array(missing, np.int64) - 1].sum())
    if not missing or abs(share - pooled) <= 1e-6 * max(share, 1.0):
        return []  # each in its stratum, or those left out pooled
    lost = f"{_area(share - pooled, unit)}, {_percent((share - pooled) / compared)}"
    if pooled:  # which of them are pooled is not known: only their area
        what = f"transitions they show beyond its pooled stratum ({lost} of the compared area)"
    else:
        names = level.transition_names()
        shown = ", ".join(names[v] for v in missing[:4]) + (", ..." if len(missing) > 4 else "")
        what = (
            f"{_count(len(missing), 'transition')} they show ({shown}: {lost} of the "
            f"compared area; its '{POOLED_NAME}' stratum, if it had one, among them)"
        )
    return [
        f"{sample.path}: drawn on these maps' {level.level} transitions, it has no points "
        f"in {what}, so that land is in no estimate: were points deleted? Draw the sample "
        "again, or restore them"
    ]


def _points_off(sample: ChangeSample, at: np.ndarray, grid: tuple[int, int]) -> list[str]:
    """Warnings of points off the grid, or where the maps are not both labelled."""
    inside = sample.inside(*grid)
    notes = []
    off = int((~inside).sum())
    if off:
        notes.append(
            f"{sample.path}: {_count(off, 'point')} {'lies' if off == 1 else 'lie'} off the "
            "compared maps' grid (points without a CRS, or in another one than they say?): "
            "counted in the areas through their strata, not in the accuracies"
        )
    unmapped = int((inside & (at < 0)).sum())
    if unmapped:
        notes.append(
            f"{sample.path}: {_count(unmapped, 'point')} {'falls' if unmapped == 1 else 'fall'} "
            "where the maps are not both labelled: counted in the areas through their strata, "
            "not in the accuracies"
        )
    return notes


def _swapped(sample: ChangeSample, at: np.ndarray, classes: list[ClassDef]) -> list[str]:
    """A warning where the maps' transitions at most points are not those the sample recorded."""
    if sample.recorded is None:
        return []
    n = len(classes)
    codes = np.array([c.code for c in classes], np.int64)
    known = (at >= 0) & (sample.recorded[0] >= 0) & (sample.recorded[1] >= 0)
    now_from = np.where(known, codes[np.maximum(at, 0) // n], -1)
    now_to = np.where(known, codes[np.maximum(at, 0) % n], -1)
    then_from, then_to = sample.recorded
    # judged where either says the class changed: swapped maps leave stable land alike
    moved = known & ((now_from != now_to) | (then_from != then_to))
    if not moved.any():
        return []
    differ = float(((now_from != then_from) | (now_to != then_to))[moved].mean())
    if differ <= 0.5:
        return []
    swapped = float(((now_from == then_to) & (now_to == then_from))[moved].mean())
    hint = " BEFORE and AFTER swapped?" if swapped > 0.5 else " other maps than it was drawn on?"
    return [
        f"{sample.path}: at {100 * differ:.0f} % of its points where a map changed class, the "
        "maps' coarse transition is not the one the sample recorded (map_coarse_from, "
        f"map_coarse_to):{hint} The areas hold for any maps; the accuracies are of these "
        "maps, in this order"
    ]
