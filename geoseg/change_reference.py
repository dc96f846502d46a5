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
  change's variance holds the covariance of the two dates' areas).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geoseg.change_sample import REFERENCE_FIELDS
from geoseg.design import (
    AREA_FIELDS,
    STRATUM_FIELD,
    UNIT_FIELDS,
    floats,
    stratum_areas,
    whole_codes,
)
from geoseg.errors import ConfigError, RasterFormatError, SampleDesignWarning
from geoseg.metrics import design_estimates, design_total
from geoseg.taxonomy import ClassDef, Taxonomy

log = logging.getLogger(__name__)

LEVELS = ("coarse", "fine")


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
    unit : str
        Their unit: ``m2``, or ``pixels``.
    rows, cols : numpy.ndarray
        Each point's pixel on the grid (``-1``: off it).
    reference : dict of str to tuple of numpy.ndarray
        Per level, each point's class index at the earlier and the later date
        (``-1``: not labelled at that level); the fine level's indices are leaves.
    ids : numpy.ndarray
        Each point's ``id`` (its row number where the file has none).
    """

    path: str
    stratum: np.ndarray
    areas: dict[int, float]
    unit: str
    rows: np.ndarray
    cols: np.ndarray
    reference: dict[str, tuple[np.ndarray, np.ndarray]]
    ids: np.ndarray

    def inside(self, height: int, width: int) -> np.ndarray:
        """Which points lie on a grid of that size."""
        return (self.rows >= 0) & (self.rows < height) & (self.cols >= 0) & (self.cols < width)


def _read_points(path: str, layer: str | None) -> Any:
    """The points of a vector file (GeoParquet read with pyarrow), or a one-line error."""
    import geopandas as gpd

    from geoseg.errors import RasterReadError

    if not Path(path).exists():
        raise RasterReadError(f"{path}: no such file: pass the points geoseg sample drew")
    try:
        if Path(path).suffix.lower() in (".parquet", ".geoparquet"):
            return gpd.read_parquet(path)
        return gpd.read_file(path, layer=layer)
    except Exception as exc:  # any reader's error is the file's problem
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RasterReadError(
            f"{path}: not a readable vector file ({first}): pass the points geoseg sample drew"
        ) from None


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
        if not text:
            continue
        try:
            number = float(text)
        except ValueError:
            number = None
        if number is not None and number == int(number) and int(number) in by_code:
            out[k] = by_code[int(number)]
        elif number is None and text.casefold() in by_name:
            out[k] = by_name[text.casefold()]
        else:
            unknown.append(v)
    return out, unknown


def read_change_reference(
    path: str | Path, layer: str | None, grid: dict[str, Any], tax: Taxonomy
) -> ChangeSample:
    """The labelled points of a ``geoseg sample change.tif`` file, on a comparison's grid.

    Parameters
    ----------
    path : str or Path
        The points (GeoPackage, Shapefile, FlatGeobuf, GeoParquet...).
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

    path = str(path)
    points = _read_points(path, layer)
    fields = [str(c) for c in points.columns]

    def column(name: str) -> str | None:
        return next((n for n in (name, SHAPEFILE_FIELDS.get(name)) if n in fields), None)

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
    if not all(points.geometry.geom_type == "Point"):
        raise RasterFormatError(
            f"{path}: holds geometries other than points: pass the points geoseg sample drew"
        )
    stratum = whole_codes(points[STRATUM_FIELD])
    keep = stratum >= 0
    points, stratum = points[keep], stratum[keep]
    repeated = points.geometry.to_wkb().duplicated().to_numpy()
    if repeated.any():  # one pixel, one point: a copy would count twice
        warnings.warn(
            f"{path}: {int(repeated.sum()):,} points repeat another point's place: each place "
            "counts once",
            SampleDesignWarning,
            stacklevel=2,
        )
        points, stratum = points[~repeated], stratum[~repeated]
    areas, problem = stratum_areas(stratum, floats(points[area_field]))
    if areas is None:
        raise RasterFormatError(f"{path}: {problem}")
    unit_field = next((f for f in UNIT_FIELDS if f in fields), None)
    unit = str(points[unit_field].iloc[0]) if unit_field is not None and len(points) else "m2"
    ids = whole_codes(points["id"]) if "id" in fields else np.arange(1, len(points) + 1)
    reference: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for lv in LEVELS:
        sides = []
        for col in given[lv]:
            if col is None:
                sides.append(np.full(len(points), -1, np.int64))
                continue
            if lv == "fine" and not tax.n_fine:
                raise RasterFormatError(
                    f"{path}: field {col} holds fine labels, and taxonomy {tax.name!r} has no "
                    "fine classes: label before_coarse / after_coarse"
                )
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
    _derive_coarse(path, reference, tax, ids)
    if points.crs is not None and grid["crs"] is not None:
        points = points.to_crs(grid["crs"])
    cols, rows = ~grid["transform"] @ (points.geometry.x.to_numpy(), points.geometry.y.to_numpy())
    return ChangeSample(
        path=path,
        stratum=stratum,
        areas=areas,
        unit=unit,
        rows=np.floor(rows).astype(np.int64),
        cols=np.floor(cols).astype(np.int64),
        reference=reference,
        ids=ids,
    )


def _derive_coarse(
    path: str, reference: dict[str, tuple[np.ndarray, np.ndarray]], tax: Taxonomy, ids: np.ndarray
) -> None:
    """Fill coarse labels from the fine ones' parents (in place); refuse labels that differ."""
    if not tax.n_fine:
        return
    parent = np.append(tax.leaf_parent_index, -1)
    sides = []
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
        sides.append(np.where(coarse >= 0, coarse, of_fine))
    reference["coarse"] = (sides[0], sides[1])


def _named(classes: list[ClassDef], pairs: bool) -> list[str]:
    """Class names, or the names of every pair ``from -> to`` (``X (unchanged)``)."""
    names = [c.name for c in classes]
    if not pairs:
        return names
    return [f"{a} (unchanged)" if i == j else f"{a} -> {b}" for i, a in enumerate(names)
            for j, b in enumerate(names)]  # fmt: skip


def change_estimates(
    stratum: np.ndarray,
    stratum_area: dict[int, float],
    mapped_pair: np.ndarray,
    before: np.ndarray,
    after: np.ndarray,
    mapped_area: np.ndarray,
    classes: list[ClassDef],
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
    pairs = design_estimates(stratum, stratum_area, m, ref_pair, mapped_area.ravel(),
                             _named(classes, True))  # fmt: skip
    mapped_changed = np.where(m >= 0, (m // n != m % n).astype(np.int64), -1)
    same = float(np.trace(mapped_area))
    changed = design_estimates(
        stratum, stratum_area, mapped_changed, (before != after).astype(np.int64),
        np.array([same, mapped_area.sum() - same]), ["unchanged", "changed"],
    )  # fmt: skip
    names = _named(classes, False)
    dates = {
        "before": design_estimates(stratum, stratum_area, np.where(m >= 0, m // n, -1), before,
                                   mapped_area.sum(axis=1), names),
        "after": design_estimates(stratum, stratum_area, np.where(m >= 0, m % n, -1), after,
                                  mapped_area.sum(axis=0), names),
    }  # fmt: skip
    transitions = []
    for name, c in pairs["classes"].items():
        k = _named(classes, True).index(name)
        i, j = divmod(k, n)
        transitions.append({
            "from_code": classes[i].code, "from_name": classes[i].name,
            "to_code": classes[j].code, "to_name": classes[j].name,
            "changed": i != j, "value": k + 1, **c,
        })  # fmt: skip
    per_class = []
    for i, c in enumerate(classes):
        b, a = dates["before"]["classes"].get(c.name), dates["after"]["classes"].get(c.name)
        if b is None and a is None:
            continue
        net = design_total(stratum, stratum_area, (after == i).astype(float) - (before == i))
        per_class.append({
            "code": c.code, "name": c.name,
            "before": _area_part(b), "after": _area_part(a),
            "net": {"mapped": float(mapped_area[:, i].sum() - mapped_area[i].sum()), **net},
        })  # fmt: skip
    return {
        "points": int(stratum.size),
        "total": pairs["total"],
        "unsampled_share": pairs["unsampled_share"],
        "changed": changed["classes"].get("changed", _nothing(mapped_area.sum() - same)),
        "overall_accuracy": pairs["overall_accuracy"],
        "overall_accuracy_ci95": pairs["overall_accuracy_ci95"],
        "transitions": transitions,
        "classes": per_class,
    }


def _area_part(c: dict[str, Any] | None) -> dict[str, Any]:
    """A class's area at one date: mapped, estimated, se, interval, accuracies."""
    if c is None:
        return _nothing(0.0)
    keep = ("mapped", "estimated", "se", "ci95", "users_accuracy", "producers_accuracy")
    return {k: c[k] for k in keep if k in c}


def _nothing(mapped: float) -> dict[str, Any]:
    """A class found nowhere in the sample (nor, here, in the map)."""
    return {"mapped": float(mapped), "estimated": 0.0, "se": 0.0, "ci95": [0.0, 0.0]}


def reference_record(
    sample: ChangeSample, levels: dict[str, Any], at_points: dict[str, np.ndarray], unit: str
) -> dict[str, Any]:
    """``change.json``'s ``reference``: the file, its points and each level's estimates.

    ``levels``: the comparison's :class:`geoseg.change.LevelChange` per level;
    ``at_points``: the compared transition at each point of the sample per level.

    Its ``warnings`` (also logged) name points labelled at one date only, points where
    the maps are not both labelled, and a sample drawn over another region.

    Raises
    ------
    ConfigError
        The sample's areas are in another unit than the comparison's, or no point is
        labelled at both dates.
    """
    if sample.unit != unit:
        raise ConfigError(
            f"{sample.path}: its stratum areas are in {sample.unit}, the compared maps' in "
            f"{unit}: draw the sample on the change.tif of these maps"
        )
    record: dict[str, Any] = {"file": sample.path, "strata": len(sample.areas), "levels": {}}
    notes = []
    for lv, level in levels.items():
        before, after = sample.reference[lv]
        labelled = (before >= 0) & (after >= 0)
        half = int(((before >= 0) ^ (after >= 0)).sum())
        if half:
            notes.append(
                f"{sample.path}: {half:,} of its points {'is' if half == 1 else 'are'} labelled "
                f"at one date only at the {lv} level, and not counted there (label both dates)"
            )
        if not labelled.any():
            continue
        est = change_estimates(
            sample.stratum[labelled], sample.areas, at_points[lv][labelled], before[labelled],
            after[labelled], level.area, level.classes,
        )  # fmt: skip
        est["unlabelled_points"] = int((~labelled).sum())
        record["levels"][lv] = est
    if not record["levels"]:
        raise ConfigError(
            f"{sample.path}: no point is labelled at both dates (before_coarse and "
            "after_coarse, or before_fine and after_fine): label the points first"
        )
    off = int((at_points["coarse"] < 0).sum())
    if off:
        notes.append(
            f"{sample.path}: {off:,} of its points {'falls' if off == 1 else 'fall'} where the "
            "maps are not both labelled: counted in the areas through their strata, and as "
            "unmapped in the accuracies"
        )
    region = sum(sample.areas.values())
    compared = float(levels["coarse"].area.sum())
    if region and abs(compared - region) > 0.01 * region:
        notes.append(
            f"{sample.path}: its strata cover {region:,.0f} {unit}, the compared area is "
            f"{compared:,.0f}: the estimates are of the region the sample was drawn in"
        )
    for note in notes:  # logged, and kept in change.json (warned of by the API)
        log.warning("%s", note)
    record["warnings"] = notes
    return record
