"""A map's IoU, F1, mIoU and kappa estimated from a stratified sample of points.

A sample stratified by mapped class (``geoseg sample``) holds as many points of a rare
class as of a common one, on purpose. The confusion matrix of its points scores the
sample, not the map: each point counts alike, so the rare classes' strata weigh far
more than their share of the map. The map's own matrix is estimated instead: each
stratum ``h`` (area ``A_h``, ``n_h`` points) stands for its area, a point for
``A_h / n_h`` of it, so the share of the map where the reference is ``i`` and the map
says ``j`` is ``p_ij = sum_h A_h n_hij / n_h``, over the area the map labels (Olofsson
et al. 2014, eq. 9, for strata that are the map's classes; Stehman 2014 for any
strata). IoU, F1, their means and kappa are those of that matrix
(:func:`geoseg.metrics.scores`): the figures a census of the map would give.

Their intervals come from a stratified bootstrap: each replicate draws ``n_h - 1`` of
each stratum's points with replacement, each drawn point standing for ``A_h / (n_h -
1)`` (Rao and Wu 1988's rescaling bootstrap, whose variance of a total is the
stratified estimator's). A class's IoU or F1 is skewed and bounded: its interval is the
central 95 % of the replicates'; a mean over classes (mIoU, mean F1) and overall
accuracy are near normal: the estimate ± 1.96 replicates' standard deviations, within
[0, 1] (in ``benchmarks/map_scores.py`` the better of the two for each). A stratum of
one point stays as it is: it adds no variance (as in
:func:`geoseg.metrics.area_estimates`), which the reports say.

What no point saw, no interval holds: a class's omission hidden in a large stratum
that few points reach makes its IoU look better than it is, in most samples (see the
benchmark's figures in the README), and a class no point holds is not in the means.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from geoseg.metrics import scores

#: Bootstrap replicates of the map's scores.
REPLICATES = 1000

#: Replicates drawn and scored at a time (bounds memory for many classes).
_CHUNK = 100


@dataclass(frozen=True, eq=False)
class StrataCounts:
    """A point sample's strata, as :func:`map_scores` takes them (kept to add intervals).

    ``counts`` ``(H, n, n)``, ``area`` ``(H,)``, ``unlabelled`` ``(H,)`` or ``None``,
    ``mapped`` ``(n,)`` or ``None``, the class ``names`` and the classes ``scored``.
    """

    counts: np.ndarray
    area: np.ndarray
    unlabelled: np.ndarray | None
    mapped: np.ndarray | None
    names: list[str]
    scored: int | None = None

    def scores(self, *, replicates: int = REPLICATES, seed: int = 0) -> dict[str, Any]:
        """:func:`map_scores` of these strata."""
        return map_scores(
            self.counts, self.area, self.names, unlabelled=self.unlabelled,
            mapped=self.mapped, scored=self.scored, replicates=replicates, seed=seed,
        )  # fmt: skip


def stratum_counts(
    stratum: np.ndarray, mapped_class: np.ndarray, reference: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each stratum's confusion matrix of its points: ``(strata, counts, unlabelled)``.

    Parameters
    ----------
    stratum : numpy.ndarray
        ``(points,)`` each point's stratum.
    mapped_class : numpy.ndarray
        ``(points,)`` the map's class index at each point (``< 0``: the map has no
        label there, and the point is left out: the scores are of the area it labels).
    reference : numpy.ndarray
        ``(points,)`` the reference class index of each point (``0 .. n - 1``).
    n : int
        Number of classes.

    Returns
    -------
    tuple of numpy.ndarray
        The strata's ids ``(H,)``, their ``(H, n, n)`` counts (rows the reference class,
        columns the map's) and ``(H,)`` points where the map has no label.

    Examples
    --------
    >>> ids, c, off = stratum_counts(
    ...     np.array([2, 2, 5, 5]), np.array([0, 1, 1, -1]), np.array([0, 0, 1, 1]), 2)
    >>> ids.tolist(), c[0].tolist(), c[1].tolist(), off.tolist()
    ([2, 5], [[1, 1], [0, 0]], [[0, 0], [0, 1]], [0, 1])
    """
    stratum, m, r = (np.asarray(a) for a in (stratum, mapped_class, reference))
    ids, h = np.unique(stratum, return_inverse=True)
    keep = m >= 0
    counts = np.zeros((ids.size, n * n), np.int64)
    np.add.at(counts, (h[keep], r[keep] * n + m[keep]), 1)
    unlabelled = np.bincount(h[~keep], minlength=ids.size)
    return ids, counts.reshape(ids.size, n, n), unlabelled


def map_counts(cm: np.ndarray) -> np.ndarray:
    """A confusion matrix's points as strata of their mapped class: ``(n, n, n)`` counts.

    For a sample stratified by the scored map's classes (``cm``: rows reference,
    columns map), stratum ``j`` holds column ``j``.

    Examples
    --------
    >>> map_counts(np.array([[3, 1], [0, 4]]))[1].tolist()
    [[0, 1], [0, 4]]
    """
    cm = np.asarray(cm, dtype=np.int64)
    n = cm.shape[0]
    counts = np.zeros((n, n, n), np.int64)
    counts[np.arange(n), :, np.arange(n)] = cm.T
    return counts


def population_matrix(
    counts: np.ndarray, area: np.ndarray, unlabelled: np.ndarray | None = None
) -> np.ndarray:
    """The map's estimated ``(n, n)`` error matrix, in shares of the area it labels.

    ``counts``: ``(H, n, n)`` points of each stratum; ``area``: ``(H,)`` their areas;
    ``unlabelled``: ``(H,)`` further points of each where the map has no label (they
    weigh in their stratum's ``n_h``, and the area they stand for is left out).

    Examples
    --------
    >>> c = np.array([[[1, 1], [0, 0]], [[0, 0], [0, 1]]])
    >>> population_matrix(c, np.array([80.0, 20.0])).tolist()
    [[0.4, 0.4], [0.0, 0.2]]
    """
    counts = np.asarray(counts, dtype=np.float64)
    n_h = counts.sum(axis=(1, 2)) + (0 if unlabelled is None else unlabelled)
    weight = np.divide(area, n_h, out=np.zeros(n_h.shape), where=n_h > 0)
    p = np.einsum("h,hij->ij", weight, counts)
    total = p.sum()
    return p / total if total else p


def map_scores(
    counts: np.ndarray,
    area: np.ndarray,
    names: list[str],
    *,
    unlabelled: np.ndarray | None = None,
    mapped: np.ndarray | None = None,
    scored: int | None = None,
    replicates: int = REPLICATES,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """The map's mIoU, overall accuracy, kappa, mean F1 and class IoU and F1, estimated.

    Parameters
    ----------
    counts : numpy.ndarray
        ``(H, n, n)`` each stratum's points (:func:`stratum_counts`, :func:`map_counts`);
        every stratum of the region must hold a point (the caller checks).
    area : numpy.ndarray
        ``(H,)`` the strata's areas.
    names : list of str
        The ``n`` class names.
    unlabelled : numpy.ndarray, optional
        ``(H,)`` each stratum's points where the map has no label (see
        :func:`population_matrix`).
    mapped : numpy.ndarray, optional
        ``(n,)`` the map's own area of each class: a class the map labels where no point
        fell (its IoU would be 0 by the luck of the draw, not by its errors) is left out
        of the means and named in ``classes_unseen``.
    scored : int, optional
        Classes entering the means (as in :func:`geoseg.metrics.scores`).
    replicates : int
        Stratified bootstrap replicates (0: no intervals).
    seed : int
        Seed of the resampling (the intervals are reproducible).
    level : float
        Coverage of the intervals.

    Returns
    -------
    dict
        ``miou``, ``overall_accuracy``, ``kappa``, ``mean_f1``, ``points``, each mean's
        interval (``miou_ci95``, ``mean_f1_ci95``, ``overall_accuracy_ci95_bootstrap``:
        the bootstrap's; the stratified estimator's own interval of overall accuracy is
        the area estimates'), ``classes_unseen`` (the classes the map labels, by
        ``mapped``, where no point fell: not in the means), ``single_point_strata``
        (strata of one point: no variance), ``replicates``, and ``per_class`` ``{name:
        {iou, iou_ci95, f1, f1_ci95, share}}`` (``share``: the class's estimated share
        of the labelled area, by reference) for the classes in the matrix.

    Examples
    --------
    >>> c = map_counts(np.array([[18, 2], [2, 18]]))
    >>> s = map_scores(c, np.array([90.0, 10.0]), ["a", "b"], replicates=200)
    >>> round(s["overall_accuracy"], 3), round(s["per_class"]["b"]["iou"], 3)
    (0.9, 0.474)
    """
    counts = np.asarray(counts, dtype=np.int64)
    area = np.asarray(area, dtype=np.float64)
    off = np.zeros(counts.shape[0], np.int64) if unlabelled is None else np.asarray(unlabelled)
    p = population_matrix(counts, area, off)
    point = scores(p, names, scored=scored)
    present = np.array([name in point["per_class"] for name in names])
    if mapped is not None:  # mapped, and no point where the map has it: its IoU unknown
        present &= ~((np.asarray(mapped) > 0) & (counts.sum(axis=(0, 1)) == 0))
    tp, ref, on_map = np.diagonal(p), p.sum(axis=1), p.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = tp / (ref + on_map - tp)
        f1 = 2 * tp / (ref + on_map)
    miou = float(iou[present].mean()) if present.any() else float("nan")
    mean_f1 = float(f1[present].mean()) if present.any() else float("nan")
    reps = _bootstrap(counts, off, area, present, replicates, seed) if replicates else None
    tail = (1.0 - level) / 2 * 100
    z = NormalDist().inv_cdf(1.0 - (1.0 - level) / 2)

    def bounds(x: np.ndarray | None) -> list[float | None]:  # a class's: skewed, bounded
        if x is None:
            return [None, None]
        x = x[np.isfinite(x)]
        if not x.size:
            return [None, None]
        lo, hi = np.percentile(x, [tail, 100 - tail])
        return [round(float(lo), 4), round(float(hi), 4)]

    def around(estimate: float, x: np.ndarray | None) -> list[float | None]:  # a mean's
        if x is None:
            return [None, None]
        x = x[np.isfinite(x)]
        if x.size < 2 or not np.isfinite(estimate):
            return [None, None]
        half = z * float(x.std(ddof=1))
        return [round(max(estimate - half, 0.0), 4), round(min(estimate + half, 1.0), 4)]

    def rep(key: str, i: int | None = None) -> np.ndarray | None:
        if reps is None:
            return None
        return reps[key] if i is None else reps[key][:, i]

    share = p.sum(axis=1)
    per_class = {}
    for i, name in enumerate(names):
        if not present[i]:
            continue
        c = point["per_class"][name]
        per_class[name] = {
            "iou": c["iou"],
            "iou_ci95": bounds(rep("iou", i)),
            "f1": c["f1"],
            "f1_ci95": bounds(rep("f1", i)),
            "share": round(float(share[i]), 6),
        }
    return {
        "miou": miou,
        "miou_ci95": around(miou, rep("miou")),
        "overall_accuracy": point["overall_accuracy"],
        # the stratified estimator's own interval is the area estimates'
        "overall_accuracy_ci95_bootstrap": around(point["overall_accuracy"], rep("oa")),
        "kappa": point["kappa"],
        "mean_f1": mean_f1,
        "mean_f1_ci95": around(mean_f1, rep("mean_f1")),
        "points": int(counts.sum()),
        "classes_unseen": [
            name
            for i, name in enumerate(names[: len(names) if scored is None else scored])
            if mapped is not None and mapped[i] > 0 and not present[i]
        ],
        # as the bootstrap tells them: points the map leaves unlabelled count in n_h
        "single_point_strata": int((counts.sum(axis=(1, 2)) + off == 1).sum()),
        "replicates": replicates,
        "per_class": per_class,
    }


def _bootstrap(
    counts: np.ndarray,
    unlabelled: np.ndarray,
    area: np.ndarray,
    present: np.ndarray,
    replicates: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """The scores of ``replicates`` stratified rescaling-bootstrap replicates.

    Each replicate redraws ``n_h - 1`` points of each stratum of two or more from its
    own points' cells (a multinomial over its counts, the points the map leaves
    unlabelled a cell of their own), each standing for ``A_h / (n_h - 1)``; a one-point
    stratum is kept. Classes outside ``present`` (not in the point estimate's matrix)
    never enter the means; a class a replicate lost is left out of that replicate's
    means, as :func:`geoseg.metrics.scores` leaves out absent classes.
    """
    rng = np.random.default_rng(seed)
    h, n = counts.shape[0], counts.shape[1]
    flat = np.concatenate([counts.reshape(h, n * n), unlabelled[:, None]], axis=1)
    flat = flat.astype(np.float64)
    n_h = flat.sum(axis=1)
    redraw = n_h >= 2
    prob = flat[redraw] / n_h[redraw, None]
    draws_n = (n_h[redraw] - 1).astype(np.int64)
    weight = np.where(redraw, area / np.maximum(n_h - 1, 1), area / np.maximum(n_h, 1))
    fixed = weight[~redraw] @ flat[~redraw]  # the one-point strata: every replicate
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("iou", "f1", "miou", "mean_f1", "oa")}
    for start in range(0, replicates, _CHUNK):
        size = min(_CHUNK, replicates - start)
        # (size, strata redrawn, cells): each stratum's own multinomial
        drawn = np.zeros((size, int(redraw.sum()), n * n + 1))
        for s, (k, pr) in enumerate(zip(draws_n, prob, strict=True)):
            drawn[:, s] = rng.multinomial(k, pr, size=size)
        cells = np.einsum("h,rhc->rc", weight[redraw], drawn) + fixed
        mats = cells[:, : n * n].reshape(size, n, n)
        tp = np.diagonal(mats, axis1=1, axis2=2)
        ref, mapped = mats.sum(axis=2), mats.sum(axis=1)
        union = ref + mapped - tp
        inside = present[None, :] & (union > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(inside, tp / union, np.nan)
            f1 = np.where(inside, 2 * tp / (ref + mapped), np.nan)
            total = mats.sum(axis=(1, 2))
            oa = tp.sum(axis=1) / total
        kept = np.maximum(inside.sum(axis=1), 1)
        out["iou"].append(iou)
        out["f1"].append(f1)
        out["miou"].append(np.where(inside, iou, 0.0).sum(axis=1) / kept)
        out["mean_f1"].append(np.where(inside, f1, 0.0).sum(axis=1) / kept)
        out["oa"].append(oa)
    return {k: np.concatenate(v) for k, v in out.items()}
