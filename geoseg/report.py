"""Evaluation reports: ``metrics.json``, ``metrics.md`` and one confusion-matrix PNG per level.

The directory is built in a temporary sibling and renamed into place, so a failed
report leaves nothing behind. An evaluation that scored no pixel is refused before
anything is written; a level that scored no pixel while the other did is reported as
``{"pixels": 0, "not_scored": reason}`` in ``metrics.json`` and as a line in
``metrics.md``, with no per-class table and no confusion-matrix PNG.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geoseg.atomic import atomic_dir
from geoseg.evaluate import BLOCKS, MAPPED, SAMPLED, STRATA, require_scored
from geoseg.metrics import NO_FINE, without_no_fine_row
from geoseg.taxonomy import format_share

LEVEL_TITLES = {"coarse": "Coarse level", "fine": "Fine level"}


def write_report(result: dict[str, Any], out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Write the evaluation ``result`` of :func:`geoseg.evaluate.evaluate_labels` to ``out_dir``.

    Returns
    -------
    Path
        The report directory, holding ``metrics.json``, ``metrics.md`` and
        ``confusion_<level>.png`` for each level that scored pixels.

    Raises
    ------
    GeosegError
        No pixel was scored at any level (see :func:`geoseg.evaluate.require_scored`);
        nothing is written.
    """
    require_scored(result)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir, overwrite=overwrite, output="report") as tmp:
        (tmp / "metrics.json").write_text(json.dumps(_jsonable(_public(result)), indent=2) + "\n")
        (tmp / "metrics.md").write_text(markdown(result))
        for lvl in ("coarse", "fine"):
            if lvl in result and result[lvl]["pixels"] > 0:
                plot_confusion(
                    without_no_fine_row(result[lvl]["confusion_matrix"], result[lvl]["classes"]),
                    _named_columns(result[lvl]),
                    tmp / f"confusion_{lvl}.png",
                    title=f"{LEVEL_TITLES[lvl]}: mIoU {_fmt(result[lvl]['miou'])}, "
                    f"OA {_fmt(result[lvl]['overall_accuracy'])}",
                )
    return out_dir


def _public(result: dict[str, Any]) -> dict[str, Any]:
    """The result as ``metrics.json`` shows it.

    A level that scored nothing is only its reason; the bootstrap's per-block matrices
    are left out, and so is the always empty truth row of the fine level's "no fine
    class" column (:func:`geoseg.metrics.without_no_fine_row`).
    """
    out = {}
    for k, v in result.items():
        if k in LEVEL_TITLES and isinstance(v, dict):
            if "not_scored" in v:
                v = {"pixels": 0, "not_scored": v["not_scored"]}
            else:
                v = {key: x for key, x in v.items() if key not in (BLOCKS, MAPPED, STRATA)}
                cm = without_no_fine_row(v["confusion_matrix"], v["classes"])
                v["confusion_matrix"] = cm.tolist()
        out[k] = v
    return out


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and math.isnan(x):
        return None
    return x


def interval_text(level: dict[str, Any], key: str) -> str:
    """`` [lo, hi]`` of a level's bootstrap interval of ``key``, or ``""`` without one."""
    lo, hi = level.get("confidence", {}).get(key, [None, None])
    return "" if lo is None else f" [{lo:.3f}, {hi:.3f}]"


#: Fewer scored blocks than this get a caveat beside their bootstrap intervals.
FEW_BLOCKS = 10


def _fmt(x: float | None, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def markdown(result: dict[str, Any]) -> str:
    """The evaluation as Markdown: a summary table and a per-class table per scored level."""
    title = (
        f"`{result['bundle']}` on `{result['config']}`"
        if "bundle" in result and "config" in result
        else f"`{result['prediction']}`"
    )
    lines = [
        f"# Evaluation of {title}",
        "",
        f"Region: {result['region']}. Taxonomy: {result['taxonomy']}. "
        f"Hierarchy consistency of the prediction: {_fmt(result['hierarchy_consistency'], 4)}.",
    ]
    for caution in result.get("cautions", ()):
        lines += ["", f"**Caution:** {caution}."]
    bad, both = result.get("truth_inconsistent_pixels", 0), result.get("truth_pixels_both_levels")
    if bad and both:
        lines += [
            "",
            f"Truth: {bad} of {both} pixels scored at both levels ({format_share(bad, both)}) "
            "have a coarse truth that is not the parent of their fine truth; each level is scored "
            "against its own truth.",
        ]
    scored: list[str] = [lvl for lvl in ("coarse", "fine") if lvl in result]
    estimated = {lvl: ms for lvl in scored if (ms := map_scores_of(result[lvl]))}
    unit = "points" if _points(result, scored) else "pixels"
    missing = {lvl: why for lvl in scored if (why := sampled_without_map_scores(result[lvl]))}
    if estimated:
        lines += _map_scores_table(estimated, {lvl: result[lvl]["area"] for lvl in estimated})
    for lvl, why in missing.items():
        lines += [
            "",
            f"The map's scores are not estimated at the {lvl} level ({why}): the figures "
            "below are the points' own, every point alike, which over-weigh the strata of "
            "rare classes.",
        ]
    if estimated or missing:
        lines += ["", "The points' own scores, every point alike:"]
    lines += [
        "",
        f"| level | mIoU | overall accuracy | kappa | mean F1 | {unit} |",
        "|---|---|---|---|---|---|",
    ]
    for lvl in scored:
        r = result[lvl]
        lines.append(
            f"| {lvl} | {_fmt(r['miou'])}{interval_text(r, 'miou')} | "
            f"{_fmt(r['overall_accuracy'])}{interval_text(r, 'overall_accuracy')} | "
            f"{_fmt(r['kappa'])} | {_fmt(r['mean_f1'])} | {r['pixels']} |"
        )
    if "scenes" in result:
        lines += _scene_table(result["scenes"], scored)
    ci = next(
        (
            result[lvl]["confidence"]
            for lvl in scored
            if result[lvl].get("confidence", {}).get("miou", [None])[0] is not None
        ),
        None,
    )
    if ci is not None:
        few = (
            f" With {ci['blocks']} blocks these intervals say little: the figures could move "
            "far more with other blocks than the brackets show."
            if ci["blocks"] < FEW_BLOCKS
            else ""
        )
        lines += [
            "",
            f"Brackets: {ci['level']:.0%} block-bootstrap interval ({ci['replicates']} "
            f"resamplings of the {ci['blocks']} scored blocks of up to {ci['block_size']} px, "
            "each scene's pixels cut into such blocks): how much the figure would move with "
            "another draw of such blocks (asymmetric where a class lies in a few blocks: "
            f"draws without it average over fewer classes).{few}",
        ]
    for lvl in scored:
        if "not_scored" in result[lvl]:
            lines += ["", f"The {lvl} level is not scored: {result[lvl]['not_scored']}."]
    for lvl in scored:
        if "not_scored" in result[lvl]:
            continue
        lines += [
            "",
            f"## {LEVEL_TITLES[lvl]}",
            "",
            f"| class | IoU | F1 | precision | recall | truth {unit} |",
            "|---|---|---|---|---|---|",
        ]
        for name, c in result[lvl]["per_class"].items():
            lines.append(
                f"| {name} | {_fmt(c['iou'])} | {_fmt(c['f1'])} | {_fmt(c['precision'])} | "
                f"{_fmt(c['recall'])} | {c['support']} |"
            )
        if childless := result[lvl].get("no_fine_classes"):
            lines += [
                "",
                f"The confusion matrix's last column, {NO_FINE}, counts the {unit} whose map "
                f"gives a coarse class without fine classes ({', '.join(childless)}) where the "
                "truth names a fine class: a miss at this level.",
            ]
        if "area" in result[lvl]:
            lines += _area_table(result[lvl]["area"], result[lvl].get("confidence", {}))
        elif "area_not_estimated" in result[lvl]:
            lines += ["", f"Areas are not estimated: {result[lvl]['area_not_estimated']}."]
    return "\n".join(lines) + "\n"


def _named_columns(level: dict[str, Any]) -> list[str]:
    """A level's classes, the :data:`NO_FINE` column named by its coarse classes."""
    names = list(level["classes"])
    if childless := level.get("no_fine_classes"):
        names[-1] = f"(no fine class: {', '.join(childless)})"
    return names


def map_scores_of(level: dict[str, Any]) -> dict[str, Any] | None:
    """A level's scores of the map estimated from its point sample, or ``None``."""
    return (level.get("area") or {}).get("map_scores")


def sampled_without_map_scores(level: dict[str, Any]) -> str | None:
    """Why a level scored by a point sample has no map's scores, or ``None``.

    ``None`` too where the truth is not a sample of points, or the scores are there.
    """
    area = level.get("area") or {}
    if not level.get(SAMPLED) or area.get("map_scores"):
        return None
    if area.get("interval") == "stratified":
        share = area.get("unsampled_share") or 0.0
        return (
            f"{format_share(round(share * 1e6), 1_000_000)} of the map lies in strata "
            "without a labelled point"
            if share
            else "the sample's design does not give them"
        )
    return str(level.get("area_not_estimated", "the sample's design does not give them"))


def _points(result: dict[str, Any], scored: list[str]) -> bool:
    """Whether the scored levels' truth is a sample of points (their counts are points)."""
    levels = [result[lvl] for lvl in scored if "not_scored" not in result[lvl]]
    return bool(levels) and all(level.get(SAMPLED) for level in levels)


def _bracket(ci: list[float | None] | None) -> str:
    return "" if not ci or ci[0] is None else f" [{_fmt(ci[0])}, {_fmt(ci[1])}]"


def _map_scores_table(
    estimated: dict[str, dict[str, Any]], areas: dict[str, dict[str, Any]]
) -> list[str]:
    """Markdown lines of the map's scores estimated from a stratified sample of points.

    See :mod:`geoseg.map_scores`; overall accuracy is the area estimates' (the same
    figure), with their interval.
    """
    lines = [
        "",
        "The map's scores, estimated from the sample (each point weighed by the area of "
        "its stratum, as a count of every pixel would weigh it):",
        "",
        "| level | mIoU | overall accuracy | kappa | mean F1 | points |",
        "|---|---|---|---|---|---|",
    ]
    for lvl, ms in estimated.items():
        oa = areas[lvl].get("overall_accuracy")
        lines.append(
            f"| {lvl} | {_fmt(ms['miou'])}{_bracket(ms['miou_ci95'])} | "
            f"{_fmt(oa)}{_bracket(areas[lvl].get('overall_accuracy_ci95'))} | "
            f"{_fmt(ms['kappa'])} | {_fmt(ms['mean_f1'])}{_bracket(ms['mean_f1_ci95'])} | "
            f"{ms['points']} |"
        )
    replicates = next(iter(estimated.values()))["replicates"]
    lines += [
        "",
        (
            "Brackets: 95 % intervals, of a stratified bootstrap of the points for mIoU and "
            f"mean F1 ({replicates} resamplings within strata), of the stratified "
            "estimator for overall accuracy. They hold what the points saw: an omission in "
            "a large stratum that few points reach makes a class look better than it is "
            "(see the README's *Scores of the map from a point sample*)."
            if replicates
            else "Brackets: 95 % interval of the stratified estimator for overall accuracy "
            "(no resampling was asked for the others)."
        ),
    ]
    for lvl, ms in estimated.items():
        if ms.get("classes_unseen"):
            names = ", ".join(ms["classes_unseen"])
            lines[-1] += (
                f" Not in the {lvl} means: {names}, which the map labels where no point fell."
            )
        if n := ms.get("single_point_strata"):
            lines[-1] += (
                f" {n} {lvl} strat{'um' if n == 1 else 'a'} of one point add"
                f"{'s' if n == 1 else ''} no variance."
            )
    return lines


def _area_unit(area: dict[str, Any]) -> tuple[str, float]:
    """How to show the areas of an ``area`` result: ``(unit, divisor)``."""
    if area["unit"] != "m2":
        return "pixels", 1.0
    return ("km²", 1e6) if area["total"] >= 1e8 else ("ha", 1e4)


def _area_table(area: dict[str, Any], ci: dict[str, Any]) -> list[str]:
    """Markdown lines of a level's error-adjusted areas (see ``geoseg.metrics.area_estimates``).

    ``ci`` is the level's bootstrap summary (its ``blocks``), for the few-blocks caveat.
    """
    unit, div = _area_unit(area)

    def v(x: float | None) -> str:
        return "–" if x is None else f"{x / div:,.2f}" if div > 1 else f"{x:,.0f}"

    stratified = area.get("interval") == "stratified"
    unsampled = area.get("unsampled_share") or 0.0
    oa_ci = area.get("overall_accuracy_ci95", [None, None])
    oa = (
        f"**{_fmt(area['overall_accuracy'])}**"
        + (f" [{_fmt(oa_ci[0])}, {_fmt(oa_ci[1])}]" if stratified and oa_ci[0] is not None else "")
        if area["overall_accuracy"] is not None
        else f"not given: {format_share(round(unsampled * 1e6), 1_000_000)} of the map lies in "
        "classes without a scored point, whose accuracy is unknown"
    )
    lines = [
        "",
        f"### Area ({unit}), error-adjusted",
        "",
        f"Area-weighted overall accuracy: {oa}."
        + (
            " The points' own scores count every point alike; for a sample stratified by "
            "mapped class (geoseg sample) read the area-weighted accuracies here, which "
            "are the map's."
            if stratified
            else ""
        ),
        "",
        (
            f"Mapped: the map's own area of each class. Estimated: from the points' reference "
            f"classes within each stratum they were drawn in, weighted by its area (Stehman "
            f"2014; {v(area['total'])} {unit} of strata), so valid for this map whichever map "
            "the sample was drawn on. Brackets: 95 % "
            if area.get("strata")
            else f"Mapped: the map's own area of each class, over its {v(area['total'])} "
            f"{unit} of valid pixels. Estimated: corrected by the scored pixels' confusion "
            "within each mapped class (Olofsson et al. 2014), valid where they are a "
            "probability sample of the whole map (random points, the checkerboard's test "
            "blocks), not for reference polygons drawn where the classes are clear, nor where "
            "the map covers land the truth does not reach. Brackets: 95 % "
        )
        + (
            f"interval of the stratified estimator ({_method(area)}), for points drawn at "
            "random (metrics.json "
            + (
                "`ci95`)."
                if area.get("strata")
                else "`ci95`; its block bootstrap is `ci95_bootstrap`)."
            )
            if stratified
            else "block-bootstrap interval, for blocks of neighbouring pixels (metrics.json "
            "`ci95_bootstrap`; `ci95` takes pixels as independent, too narrow here)."
        ),
    ]
    if ci.get("blocks") is not None and ci["blocks"] < FEW_BLOCKS and not stratified:
        lines[-1] += f" With {ci['blocks']} blocks the brackets say little."
    covered = sum(c["mapped"] or 0.0 for c in area["classes"].values())
    if area.get("strata") and area["total"] and covered < 0.99 * area["total"]:
        lines[-1] += (
            f" The map labels {format_share(round(covered), round(area['total']))} of the "
            "region the sample was drawn in: its mapped areas are its own, the estimated "
            "ones the whole region's."
        )
    single = area.get("single_pixel_share") or 0.0
    if stratified and single > 0:
        lines[-1] += (
            f" Strata of one scored point ({format_share(round(single * 1e6), 1_000_000)} of "
            "the area) add no variance: the brackets are too narrow there."
        )
    iou = (area.get("map_scores") or {}).get("per_class") if stratified else None
    lines += [
        "",
        "| class | mapped | estimated | user's accuracy | producer's accuracy"
        + (" | IoU |" if iou is not None else " |"),
        "|---|---|---|---|---|" + ("---|" if iou is not None else ""),
    ]
    for name, c in area["classes"].items():
        lo, hi = c.get("ci95" if stratified else "ci95_bootstrap", [None, None])
        if "unsampled_range" in c and c["ci95"] == [None, None]:
            a, b = c["unsampled_range"]
            bracket = f" (not sampled: {v(a)} to {v(b)})"
        else:
            bracket = "" if lo is None else f" [{v(lo)}, {v(hi)}]"
        ua, pa = (_with_interval(c, k, stratified) for k in ("users", "producers"))
        row = f"| {name} | {v(c['mapped'])} | {v(c['estimated'])}{bracket} | {ua} | {pa} |"
        if iou is not None:
            cls = iou.get(name)
            row += " – |" if cls is None else f" {_fmt(cls['iou'])}{_bracket(cls['iou_ci95'])} |"
        lines.append(row)
    return lines


def _method(area: dict[str, Any]) -> str:
    """How the stratified intervals were made (:mod:`geoseg.intervals`)."""
    from geoseg.intervals import METHOD_NAMES

    return METHOD_NAMES.get(area.get("interval_method", "wald"), "normal")


def _with_interval(c: dict[str, Any], which: str, stratified: bool) -> str:
    """A class's user's or producer's accuracy, with its interval for a point sample.

    A user's accuracy of 0 or 1 rests on points that all agree: how many is said
    (``all 5 points right``), as the normal interval has no width there.
    """
    value = _fmt(c[f"{which}_accuracy"])
    lo, hi = c.get(f"{which}_accuracy_ci95", [None, None])
    if not (stratified and lo is not None):
        return value
    n = c.get("mapped_points")
    edge = c[f"{which}_accuracy"] in (0.0, 1.0) and which == "users" and n
    verdict = "right" if c[f"{which}_accuracy"] == 1.0 else "wrong"
    note = f" (all {n} point{'s' if n != 1 else ''} {verdict})"
    return f"{value} [{_fmt(lo)}, {_fmt(hi)}]" + (note if edge else "")


def _scene_table(scenes: list[dict[str, Any]], levels: Sequence[str]) -> list[str]:
    """Markdown lines of each scene's mIoU / OA / pixels per level (pooled reports)."""
    head = "".join(f" {lvl} mIoU | {lvl} OA | {lvl} pixels |" for lvl in levels)
    lines = ["", "Per scene (the figures above pool them):", "", f"| scene |{head}"]
    lines.append("|---|" + "---|---|---|" * len(levels))
    for row in scenes:
        cells = ""
        for lvl in levels:
            r = row.get(lvl)
            cells += (
                " – | – | 0 |"
                if r is None
                else f" {_fmt(r['miou'])} | {_fmt(r['overall_accuracy'])} | {r['pixels']} |"
            )
        lines.append(f"| `{row['image']}` |{cells}")
    return lines


def plot_confusion(cm: np.ndarray, classes: list[str], dest: Path, *, title: str) -> Path:
    """A row-normalised confusion matrix (recall per truth class) with pixel counts.

    Rows are truth, columns prediction; ``cm`` may have fewer rows than ``classes``
    (the fine level has no truth row for its "no fine class" column), the rows being
    the first classes. Classes absent from both truth and prediction are left out so
    the plot stays legible.
    """
    from matplotlib.figure import Figure

    cm = np.asarray(cm)
    used = cm.sum(axis=0)
    used[: cm.shape[0]] += cm.sum(axis=1)
    keep = used > 0
    rows = keep[: cm.shape[0]]
    cm = cm[np.ix_(rows, keep)]
    names = [c for c, k in zip(classes, keep, strict=True) if k]
    n = max(len(names), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = cm / cm.sum(axis=1, keepdims=True)
    frac = np.nan_to_num(frac)
    size = 2.5 + 0.55 * n
    fig = Figure(figsize=(size + 1.5, size), dpi=110)
    ax = fig.subplots()
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(cm.shape[0]), names[: cm.shape[0]], fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("truth")
    ax.set_title(title, fontsize=10)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            if cm[i, j]:
                ax.text(
                    j,
                    i,
                    _count(int(cm[i, j])),
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if frac[i, j] > 0.5 else "black",
                )
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of truth row")
    fig.tight_layout()
    fig.savefig(dest)
    return dest


def _count(v: int) -> str:
    if v >= 1_000_000:
        return f"{v / 1e6:.1f}M"
    if v >= 10_000:
        return f"{v / 1e3:.0f}k"
    return str(v)
