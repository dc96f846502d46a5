"""change.md's section on a reference sample's error-adjusted change.

:func:`reference_markdown` turns :func:`geoseg.change_reference.reference_record`'s
record into Markdown: the changed area and the accuracies of change with their
intervals, the largest transitions, each class at both dates and its net change, and
the sample's design; figures resting on few labelled points are marked.
"""

from __future__ import annotations

from typing import Any

from geoseg.intervals import METHOD_NAMES


def _interval(c: dict[str, Any], scale: float, d: int, unit: str = "", signed: bool = False) -> str:
    """``12.3 km² [10.1, 14.5]``: an estimate and its 95 % interval, scaled.

    ``unit`` follows the figure; ``signed``: a ``+`` before gains, as net changes have.
    """
    sign = "+" if signed else ""
    after = f" {unit}" if unit else ""
    if c.get("unsampled_range"):  # strata without a labelled point: only bounds
        lo, hi = c["unsampled_range"]
        return f"{lo * scale:{sign},.{d}f} to {hi * scale:{sign},.{d}f}{after} (strata unlabelled)"
    if c.get("estimated") is None:
        return "unknown"
    lo, hi = c.get("ci95") or [None, None]
    text = f"{c['estimated'] * scale:{sign},.{d}f}{after}"
    if lo is None or hi is None:
        return text
    return f"{text} [{lo * scale:{sign},.{d}f}, {hi * scale:{sign},.{d}f}]"


def _share(x: float | None, ci: list[float | None] | None = None) -> str:
    """An accuracy in percent (``84 % [78, 90]`` with its interval), or ``–``."""
    if x is None:
        return "–"
    if ci is None or ci[0] is None or ci[1] is None:
        return f"{100 * x:.0f} %"
    return f"{100 * x:.0f} % [{100 * ci[0]:.0f}, {100 * ci[1]:.0f}]"


def _accuracy(c: dict[str, Any], which: str) -> str:
    """A record's user's or producer's accuracy with its interval."""
    return _share(c.get(f"{which}_accuracy"), c.get(f"{which}_accuracy_ci95"))


#: Estimates resting on fewer reference points than this are marked in change.md: their
#: normal intervals are too narrow, and any interval misses what no point saw.
FEW_POINTS = 10


def _few(c: dict[str, Any]) -> str:
    """`` *`` where an estimate rests on fewer than :data:`FEW_POINTS` points."""
    return " *" if c.get("reference_points", FEW_POINTS) < FEW_POINTS else ""


def reference_markdown(ref: dict[str, Any], unit: str, scale: float, d: int, top: int) -> list[str]:
    """change.md's section on the error-adjusted estimates of a reference sample.

    ``ref``: :func:`reference_record`'s record; ``unit``, ``scale`` and ``d``: how areas
    are shown (``km²``, ``1e-6``, 3 decimals); ``top``: the transitions listed.
    """
    few = (
        f"Figures marked * rest on fewer than {FEW_POINTS} labelled points: their intervals "
        "are too narrow (a class or transition no point saw has an interval of zero width); "
        "add points there before reporting them."
        if ref.get("interval_method") == "wald"
        else f"Figures marked * rest on fewer than {FEW_POINTS} labelled points: their "
        "intervals hold what those points can tell, not what a large stratum hides where "
        "no point saw it; add points there before reporting them."
    )
    method = ref.get("interval_method", "wald")
    how = METHOD_NAMES[method] + ("" if method == "wald" else "; a net change: gains less losses")
    lines = [
        "## Error-adjusted change (reference sample)",
        "",
        f"From the labelled points of `{ref['file']}` ({ref['strata']} strata): each "
        "estimate is the stratified estimator of the sample's design (Olofsson et al. "
        f"2014, Stehman 2014), with its 95 % interval in brackets ({how}). The mapped "
        "figures include both maps' errors; the estimated ones are what the reference labels "
        "say happened on the ground. " + few,
        "",
        *[f"**Warning:** {w}." for w in ref.get("warnings", [])],
        *([""] if ref.get("warnings") else []),
    ]
    for lv, est in ref["levels"].items():
        c = est["changed"]
        missed = ""
        if c.get("producers_accuracy") == 1.0 and c.get("mapped_unchanged_points"):
            missed = (
                f" (none of the {c['mapped_unchanged_points']:,} points mapped as unchanged "
                "was labelled as changed: missed change, if any, is rarer than the sample "
                "can see)"
            )
        lines += [
            f"### {lv.capitalize()} level ({est['points']:,} labelled points)",
            "",
            f"Changed class: mapped {c['mapped'] * scale:,.{d}f} {unit}, estimated "
            f"{_interval(c, scale, d, unit)}{_few(c)}. Of the area mapped as changed, "
            f"{_accuracy(c, 'users')} changed (user's accuracy); of the area that "
            f"changed, {_accuracy(c, 'producers')} is mapped as changed (producer's "
            f"accuracy){missed}. Overall accuracy of the transitions (the share of the area "
            "whose from and to classes the maps both have right): "
            f"{_share(est['overall_accuracy'], est.get('overall_accuracy_ci95'))}.",
            "",
            "Changed transitions, the largest (by estimated or mapped area) first:",
            "",
            f"| from | to | mapped ({unit}) | estimated ({unit}) | user's | producer's |",
            "|---|---|---:|---:|---:|---:|",
        ]
        changed = [t for t in est["transitions"] if t["changed"]]
        shown = sorted(changed, key=lambda t: -max(t["estimated"] or 0.0, t["mapped"] or 0.0))
        for t in shown[:top]:
            lines.append(
                f"| {t['from_name']} | {t['to_name']} | {(t['mapped'] or 0.0) * scale:,.{d}f} "
                f"| {_interval(t, scale, d)}{_few(t)} | {_accuracy(t, 'users')} "
                f"| {_accuracy(t, 'producers')} |"
            )
        if len(shown) > top:
            lines.append(f"| ({len(shown) - top} more in change.json) | | | | | |")
        lines += [
            "",
            f"| class | before, estimated ({unit}) | after, estimated | net, estimated | "
            "net, mapped |",
            "|---|---:|---:|---:|---:|",
        ]
        for k in est["classes"]:
            lines.append(
                f"| {k['name']} | {_interval(k['before'], scale, d)}{_few(k['before'])} | "
                f"{_interval(k['after'], scale, d)}{_few(k['after'])} | "
                f"{_interval(k['net'], scale, d, signed=True)}{_few(k['net'])} | "
                f"{k['net']['mapped'] * scale:+,.{d}f} |"
            )
        lines.append("")
    if ref.get("design"):
        lines += [
            "### The sample's design",
            "",
            f"| stratum | drawn in | area ({unit}) | points | labelled at both dates |",
            "|---:|---|---:|---:|---:|",
        ]
        for row in ref["design"]:
            labelled = row.get("labelled", "")
            lines.append(
                f"| {row['stratum']} | {row['name'] or '–'} | {row['area'] * scale:,.{d}f} | "
                f"{row['points']:,} | {labelled if labelled == '' else f'{labelled:,}'} |"
            )
        lines.append("")
    return lines
