"""Segmentation metrics from confusion matrices (numpy only)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from geoseg.intervals import check_method, difference_interval, share_interval


def confusion_matrix(truth: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    """``(n, n)`` counts, rows = truth index, cols = predicted index.

    Pixels where either index is outside ``[0, n)`` (e.g. ``-1`` = unlabelled) are skipped.
    """
    t = truth.ravel().astype(np.int64)
    p = pred.ravel().astype(np.int64)
    ok = (t >= 0) & (t < n) & (p >= 0) & (p < n)
    return np.bincount(t[ok] * n + p[ok], minlength=n * n).reshape(n, n)


#: Name of the fine-level column for pixels where a coarse class without fine classes won.
NO_FINE = "(no fine class: a childless coarse class)"


def fine_confusion_matrix(
    truth: np.ndarray, pred: np.ndarray, coarse_pred: np.ndarray, n_fine: int, *, leaf_column: bool
) -> np.ndarray:
    """Confusion matrix of the fine level, counting a childless coarse prediction as a miss.

    Where a coarse class without fine classes wins, a prediction has no fine class
    (``pred`` is ``-1`` while ``coarse_pred`` is valid). Skipping such pixels, as
    :func:`confusion_matrix` skips ``-1``, would leave out every fine-labelled pixel
    predicted as, say, a childless Water class, and overstate the fine scores. With
    ``leaf_column`` (the taxonomy has childless coarse classes) they are counted in an
    extra last class, :data:`NO_FINE`, which :func:`scores` leaves out of the per-class
    scores and means (``scored=n_fine``) but counts in overall accuracy and kappa.

    Examples
    --------
    >>> fine_confusion_matrix(np.array([0, 1, 1]), np.array([0, 1, -1]), np.array([0, 0, 2]),
    ...                       2, leaf_column=True).tolist()
    [[1, 0, 0], [0, 1, 1], [0, 0, 0]]
    """
    if not leaf_column:
        return confusion_matrix(truth, pred, n_fine)
    return confusion_matrix(truth, with_no_fine_column(pred, coarse_pred, n_fine), n_fine + 1)


def with_no_fine_column(pred: np.ndarray, coarse_pred: np.ndarray, n_fine: int) -> np.ndarray:
    """Fine indices with :data:`NO_FINE` (index ``n_fine``) where a childless coarse class won."""
    pred = np.asarray(pred)
    return np.where((pred < 0) & (np.asarray(coarse_pred) >= 0), n_fine, pred)


def without_no_fine_row(cm: np.ndarray, names: list[str]) -> np.ndarray:
    """The confusion matrix without its :data:`NO_FINE` truth row, which is always empty.

    Fine truth always names a fine class, so no truth pixel falls in the :data:`NO_FINE`
    row: only the column (a childless coarse class predicted) holds pixels. The result
    has one row per class of ``names`` but the last, and a column for each of ``names``.
    A matrix without the extra class, or (never) with pixels in that row, is returned
    unchanged.

    Examples
    --------
    >>> without_no_fine_row(np.array([[2, 1], [0, 0]]), ["11 a", NO_FINE]).tolist()
    [[2, 1]]
    """
    cm = np.asarray(cm)
    if names and names[-1] == NO_FINE and cm.shape[0] == len(names) and not cm[-1].any():
        return cm[:-1]
    return cm


def scored_classes(names: list[str]) -> int:
    """How many of a level's ``names`` are classes (all but a trailing :data:`NO_FINE`)."""
    return len(names) - bool(names and names[-1] == NO_FINE)


def scores(
    cm: np.ndarray, names: list[str] | None = None, *, scored: int | None = None
) -> dict[str, Any]:
    """Per-class IoU/precision/recall/F1, mIoU, overall accuracy and kappa from a confusion matrix.

    mIoU averages over the classes that occur in the truth or the prediction
    (the convention of ``sklearn.metrics.jaccard_score(average="macro")``). With
    ``scored``, only the first ``scored`` classes get per-class scores and enter the
    means; the others (e.g. :data:`NO_FINE`) count in overall accuracy and kappa only.

    Examples
    --------
    >>> s = scores(np.array([[3, 1], [0, 4]]))
    >>> round(s["overall_accuracy"], 3), round(s["miou"], 3)
    (0.875, 0.775)
    """
    cm = cm.astype(np.float64)
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    union = support + predicted - tp
    present = union > 0
    if scored is not None:
        present[scored:] = False
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(present, tp / union, np.nan)
        precision = np.where(predicted > 0, tp / predicted, np.nan)
        recall = np.where(support > 0, tp / support, np.nan)
        f1 = np.where(present, 2 * tp / (support + predicted), np.nan)
    total = cm.sum()
    kappa = cohen_kappa(cm)
    names = names or [str(i) for i in range(cm.shape[0])]
    per_class = {
        name: {
            "iou": _f(iou[i]),
            "precision": _f(precision[i]),
            "recall": _f(recall[i]),
            "f1": _f(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(names)
        if present[i]
    }
    return {
        "miou": float(np.nanmean(iou[present])) if present.any() else float("nan"),
        "overall_accuracy": float(tp.sum() / total) if total else float("nan"),
        "kappa": kappa,
        "mean_f1": float(np.nanmean(f1[present])) if present.any() else float("nan"),
        "pixels": int(total),
        "per_class": per_class,
    }


def _f(x: float) -> float | None:
    return None if np.isnan(x) else round(float(x), 6)


def cohen_kappa(cm: np.ndarray) -> float:
    """Cohen's kappa: agreement beyond chance, ``(p_o - p_e) / (1 - p_e)``.

    Examples
    --------
    >>> round(cohen_kappa(np.array([[20, 5], [10, 15]])), 3)
    0.4
    """
    cm = np.asarray(cm, dtype=np.float64)
    total = cm.sum()
    if total == 0:
        return float("nan")
    p_o = np.trace(cm) / total
    p_e = float((cm.sum(axis=0) * cm.sum(axis=1)).sum()) / total**2
    if p_e == 1.0:
        return 1.0 if p_o == 1.0 else 0.0
    return float((p_o - p_e) / (1.0 - p_e))


def bootstrap_intervals(
    block_cms: np.ndarray,
    *,
    against: np.ndarray | None = None,
    scored: int | None = None,
    replicates: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Confidence intervals of mIoU and overall accuracy by a block bootstrap.

    Pixels of one map are not independent samples: neighbours share errors, so an
    interval from pixel counts would be far too narrow. The spatial blocks of the
    evaluation (the checkerboard's test blocks) are resampled with replacement instead,
    ``replicates`` times, each replicate's confusion matrix being the sum of its blocks';
    the interval is the central ``level`` share of the replicates' scores (percentile
    bootstrap). It measures how much the figure would move with another draw of blocks
    like these, not the bias of the labels or of the split.

    With ``against`` (a second map scored on the same blocks: ``block_cms[i]`` and
    ``against[i]`` are the same block), the intervals are of the differences
    ``mIoU(block_cms) - mIoU(against)`` and of OA, each replicate resampling the
    blocks once for both maps (paired), so what the blocks share (how hard they are)
    cancels out. An interval that excludes 0 says that the maps differ beyond the
    luck of the draw of blocks.

    Parameters
    ----------
    block_cms : numpy.ndarray
        ``(blocks, n, n)`` confusion matrix of each block (blocks without pixels are
        ignored).
    against : numpy.ndarray, optional
        The other map's ``(blocks, n, n)`` matrices, for a paired difference.
    scored : int, optional
        Classes entering the means (as in :func:`scores`).
    replicates : int
        Bootstrap replicates.
    seed : int
        Seed of the resampling (the intervals are reproducible).
    level : float
        Coverage of the intervals.

    Returns
    -------
    dict
        ``{"level", "replicates", "blocks", "miou": [lo, hi], "overall_accuracy": [lo, hi]}``
        (``None`` bounds when fewer than two blocks hold pixels).

    Raises
    ------
    ValueError
        ``against`` has another number of blocks.

    Examples
    --------
    >>> same = np.array([[[5, 0], [0, 5]]] * 4)
    >>> bootstrap_intervals(same, replicates=50)["miou"]
    [1.0, 1.0]
    """
    maps = [np.asarray(m, dtype=np.float64) for m in (block_cms, against) if m is not None]
    if len({m.shape[0] for m in maps}) > 1:
        raise ValueError(
            f"{maps[0].shape[0]} blocks against {maps[1].shape[0]}: score both on the same blocks"
        )
    keep = np.any([m.sum(axis=(1, 2)) > 0 for m in maps], axis=0)
    maps = [m[keep] for m in maps]
    out: dict[str, Any] = {"level": level, "replicates": replicates, "blocks": int(keep.sum())}
    if keep.sum() < 2:
        return {**out, "miou": [None, None], "overall_accuracy": [None, None]}
    (miou, oa), *other = _replicate_scores(maps, replicates, seed, scored)
    for miou_b, oa_b in other:  # the paired difference
        miou, oa = miou - miou_b, oa - oa_b
    return {**out, "miou": _bounds(miou, level), "overall_accuracy": _bounds(oa, level)}


def _replicates(maps: list[np.ndarray], replicates: int, seed: int) -> Iterator[list[np.ndarray]]:
    """Bootstrap replicates of each map's pooled confusion matrix, a chunk at a time.

    Each chunk holds one ``(size, n, n)`` array per map of ``(blocks, n, n)`` matrices;
    every map is resampled with the same draws of blocks (paired), and chunks keep
    memory small for any number of blocks.
    """
    rng = np.random.default_rng(seed)
    k = maps[0].shape[0]
    flat = [m.reshape(k, -1) for m in maps]
    for start in range(0, replicates, _CHUNK):
        size = min(_CHUNK, replicates - start)
        draws = rng.multinomial(k, np.full(k, 1.0 / k), size=size).astype(np.float64)
        yield [
            (draws @ cms).reshape(size, m.shape[-1], m.shape[-1])
            for m, cms in zip(maps, flat, strict=True)
        ]


def _replicate_scores(
    maps: list[np.ndarray], replicates: int, seed: int, scored: int | None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The mIoU and OA of each bootstrap replicate, for each map's ``(blocks, n, n)`` matrices."""
    parts: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in maps]
    for reps in _replicates(maps, replicates, seed):
        for r, out in zip(reps, parts, strict=True):
            out.append(_scores_of(r, scored))
    return [
        (np.concatenate([p[0] for p in out]), np.concatenate([p[1] for p in out])) for out in parts
    ]


#: Bootstrap replicates drawn and scored at a time.
_CHUNK = 64


def _scores_of(reps: np.ndarray, scored: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The mIoU and OA of each ``(n, n)`` confusion matrix in ``reps`` (as :func:`scores`)."""
    tp = np.diagonal(reps, axis1=1, axis2=2)
    union = reps.sum(axis=2) + reps.sum(axis=1) - tp
    present = union > 0
    if scored is not None:
        present[:, scored:] = False
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(present, tp / union, 0.0)
        oa = tp.sum(axis=1) / reps.sum(axis=(1, 2))
    miou = iou.sum(axis=1) / np.maximum(present.sum(axis=1), 1)
    return miou, oa


def _bounds(x: np.ndarray, level: float) -> list[float | None]:
    """Percentile interval of the finite values of ``x`` (an all-empty replicate has no OA)."""
    x = x[np.isfinite(x)]
    if not x.size:
        return [None, None]
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(x, [tail, 100 - tail])
    return [round(float(lo), 4), round(float(hi), 4)]


#: Two-sided 95 % normal quantile.
Z95 = 1.959963984540054


def area_estimates(
    cm: np.ndarray, mapped: np.ndarray, names: list[str], *, method: str = "beta"
) -> dict[str, Any]:
    """Error-adjusted class areas from a map's class areas and a sample of reference pixels.

    The map's area of a class is biased by its errors: a class the map overpredicts is
    over-counted. The stratified estimator of Olofsson et al. (2014, *Good practices for
    estimating area and assessing accuracy of land change*, Remote Sensing of
    Environment 148) corrects it: within each mapped class ``i`` (stratum, a share
    ``W_i`` of the map's area), the scored pixels tell which reference class ``j`` a
    share ``n_ij / n_i`` of it really is, so the reference class's share of the map is
    ``p_j = sum_i W_i n_ij / n_i``, with variance ``sum_i W_i^2 p_ij (1 - p_ij) /
    (n_i - 1)``. It holds when the scored pixels are a probability sample of the map
    (random points, the systematic test blocks of a checkerboard), not for reference
    polygons drawn where the classes are clear; and its variance treats pixels as
    independent, which neighbouring pixels are not (see :func:`area_intervals`).

    Parameters
    ----------
    cm : numpy.ndarray
        ``(n, n)`` confusion matrix, rows = reference (truth), columns = map.
    mapped : numpy.ndarray
        ``(n,)`` area the map gives each class (m², or pixels), over the whole map.
    names : list of str
        The class names.
    method : {"beta", "wald"}
        The intervals' method (:mod:`geoseg.intervals`): Korn and Graubard's, or the
        normal ``estimate ± 1.96 SE``.

    Returns
    -------
    dict
        ``total`` area; ``interval_method``; ``unsampled_share`` of it in mapped classes
        without a scored pixel (taken as mapped; each class then has an
        ``unsampled_range``: its area were those strata all of it or none of it, and
        ``overall_accuracy`` is None);
        ``single_pixel_share`` in mapped classes with one (they add no variance);
        ``overall_accuracy`` (area-weighted); per class
        ``mapped``, ``estimated``, ``se`` (pixels taken as independent), ``ci95`` from
        it, ``users_accuracy`` and ``producers_accuracy`` (area-weighted), each accuracy
        with its 95 % interval (``..._ci95``, pixels taken as independent).

    Examples
    --------
    >>> a = area_estimates(np.array([[9, 2], [1, 8]]), np.array([80.0, 20.0]), ["a", "b"])
    >>> a["classes"]["a"]["estimated"], round(a["overall_accuracy"], 3)
    (76.0, 0.88)
    """
    n = np.asarray(cm, dtype=np.float64).T  # rows: mapped class i, columns: reference j
    mapped = np.asarray(mapped, dtype=np.float64)
    total = float(mapped.sum())
    w = mapped / total if total else np.zeros_like(mapped)
    p, n_i = _stratum_shares(n)
    share = w[:, None] * p  # the map's area in each (mapped i, reference j) pair
    estimated = share.sum(axis=0)
    # the variance of a stratum needs two scored pixels: one with a single pixel adds
    # none (exact where that pixel is the whole class, as geoseg sample draws a tiny
    # class); one without any is taken as mapped, which leaves each class's share
    # uncertain by that stratum's whole area
    unsampled = (w > 0) & (n_i == 0)
    one = (w > 0) & (n_i == 1)
    term = _variance_terms(w, p, n_i)
    se = np.sqrt(term.sum(axis=0))
    diag = np.diagonal(share)
    known = share[~unsampled].sum(axis=0)  # from the sampled strata alone
    ua_var, pa_var, oa_var = _accuracy_variances(w, p, n_i, estimated, term)
    points = int(n.sum())
    df = float(points - int((n_i > 0).sum()))  # points less sampled strata
    classes = {}
    for j, name in enumerate(names):
        if not (mapped[j] > 0 or n[:, j].any() or n[j].any()):
            continue
        c: dict[str, Any] = {
            "mapped": _f(mapped[j]),
            "estimated": _f(total * estimated[j]),
            "se": None if unsampled[j] else _f(total * se[j]),
            "ci95": [None, None]
            if unsampled[j]  # its own stratum never scored: unsampled_range bounds it
            else _scaled(share_interval(estimated[j], se[j], points, df, method=method), total),
            "users_accuracy": _f(p[j, j]) if n_i[j] > 0 else None,
            "mapped_points": int(n_i[j]),
            "producers_accuracy": _f(diag[j] / estimated[j])
            if estimated[j] > 0 and not unsampled[j]
            else None,
        }
        c["users_accuracy_ci95"] = _accuracy_interval(
            c["users_accuracy"], ua_var[j], int(n_i[j]), df, method
        )
        c["producers_accuracy_ci95"] = _accuracy_interval(
            c["producers_accuracy"], pa_var[j], int(n[:, j].sum()), df, method
        )
        if unsampled.any():  # all of the unsampled strata this class, or none of them
            c["unsampled_range"] = [
                _f(total * known[j]),
                _f(total * (known[j] + w[unsampled].sum())),
            ]
        classes[name] = c
    return {
        "total": total,
        "interval_method": method,
        "unsampled_share": _f(float(w[unsampled].sum())),
        "single_pixel_share": _f(float(w[one].sum())),
        "overall_accuracy": None if unsampled.any() else _f(float(diag.sum())),
        "overall_accuracy_ci95": [None, None]
        if unsampled.any()
        else _accuracy_interval(float(diag.sum()), oa_var, points, df, method),
        "classes": classes,
    }


def design_estimates(
    stratum: np.ndarray,
    stratum_area: Mapping[int, float],
    mapped_class: np.ndarray,
    reference: np.ndarray,
    mapped: np.ndarray,
    names: list[str],
    *,
    method: str = "beta",
) -> dict[str, Any]:
    """Error-adjusted areas and accuracies from a stratified sample of any map's strata.

    :func:`area_estimates` takes the scored map's classes as the strata, which holds for
    the map the sample was drawn on. Here the strata are the sample's own design
    (Stehman 2014, *Estimating area and map accuracy for stratified random sampling when
    the strata are different from the map classes*, International Journal of Remote
    Sensing 35): each stratum ``h`` of area ``A_h`` holds ``n_h`` labelled points, a
    class's area is ``sum_h A_h ybar_h`` with ``y = 1`` where the reference is that
    class, and the accuracies are ratios of such totals (user's: right and mapped as
    the class, over mapped as it; producer's: right, over the reference class where the
    map has a label; overall: right, over mapped), with their linearised variances. The
    areas are those of the region the sample was drawn in, points the scored map does not
    label included. So a sample drawn on one map
    scores another (a later date, another model's), and the fine level is estimated
    with the coarse strata it was drawn in. Where the strata are the scored map's
    classes, each with a labelled point, it gives exactly :func:`area_estimates`'s figures.

    Parameters
    ----------
    stratum : numpy.ndarray
        ``(points,)`` each labelled point's stratum.
    stratum_area : mapping of int to float
        Every stratum's area (m², or pixels), those without a labelled point included.
    mapped_class : numpy.ndarray
        ``(points,)`` the scored map's class index at each point (``-1``: no class).
    reference : numpy.ndarray
        ``(points,)`` the reference class index of each point (``0 .. len(names) - 1``).
    mapped : numpy.ndarray
        ``(classes,)`` the scored map's area of each class.
    names : list of str
        The class names.
    method : {"beta", "wald"}
        The intervals' method (see :func:`area_estimates`).

    Returns
    -------
    dict
        As :func:`area_estimates`'s (``unsampled_share``: strata without a labelled
        point, whose area is then in no class's estimate but in its
        ``unsampled_range``; the classes then have no ``se`` nor ``ci95``).

    Examples
    --------
    >>> d = design_estimates(np.array([1, 1, 2, 2]), {1: 60.0, 2: 40.0},
    ...     np.array([0, 0, 1, 0]), np.array([0, 1, 1, 1]), np.array([60.0, 40.0]), ["a", "b"])
    >>> d["classes"]["a"]["estimated"], d["classes"]["b"]["estimated"]
    (30.0, 70.0)
    """
    design = _Design(stratum, stratum_area)
    area_h, sampled, n_h = design.area_h, design.sampled, design.n_h
    total = float(area_h.sum())
    mapped = np.asarray(mapped, dtype=np.float64)
    m, r = np.asarray(mapped_class), np.asarray(reference)
    estimate, variance, ratio = design.estimate, design.variance, design.ratio

    unsampled = float(area_h[~sampled].sum())
    classes: dict[str, Any] = {}
    for j, name in enumerate(names):
        is_ref, is_map = (r == j).astype(float), (m == j).astype(float)
        if not (mapped[j] > 0 or is_ref.any() or is_map.any()):
            continue
        est, se = estimate(is_ref), float(np.sqrt(variance(is_ref)))
        right = is_ref * is_map
        ua, ua_var = ratio(right, is_map)
        # of the class's reference area that the map labels (where it has no label, it
        # cannot be right or wrong)
        pa, pa_var = ratio(right, is_ref * (m >= 0))
        c: dict[str, Any] = {
            "mapped": _f(mapped[j]),
            "estimated": _f(est),
            # strata without a labelled point: the class's area is bounded, not estimated
            "se": None if unsampled else _f(se),
            "ci95": [None, None] if unsampled else design.area_interval(est, se, method),
            "users_accuracy": _f(ua) if ua is not None else None,
            "mapped_points": int(is_map.sum()),
            "producers_accuracy": _f(pa) if pa is not None else None,
        }
        c["users_accuracy_ci95"] = _accuracy_interval(
            c["users_accuracy"], ua_var, int(is_map.sum()), design.df, method
        )
        c["producers_accuracy_ci95"] = _accuracy_interval(
            c["producers_accuracy"], pa_var, int((is_ref * (m >= 0)).sum()), design.df, method
        )
        if unsampled:
            c["unsampled_range"] = [_f(est), _f(est + unsampled)]
        classes[name] = c
    oa, oa_var = ratio(((m == r) & (m >= 0)).astype(float), (m >= 0).astype(float))
    return {
        "total": total,
        "interval_method": method,
        "unsampled_share": _f(unsampled / total) if total else 0.0,
        "single_pixel_share": _f(float(area_h[n_h == 1].sum()) / total) if total else 0.0,
        "overall_accuracy": None if unsampled or oa is None else _f(oa),
        "overall_accuracy_ci95": [None, None]
        if unsampled or oa is None
        else _accuracy_interval(oa, oa_var, int((m >= 0).sum()), design.df, method),
        "classes": classes,
    }


class _Design:
    """A stratified random sample's strata (Stehman 2014): totals, variances, ratios.

    ``stratum``: each point's stratum; ``stratum_area``: every stratum's area, those
    without a point included.
    """

    def __init__(self, stratum: np.ndarray, stratum_area: Mapping[int, float]) -> None:
        strata = np.array(sorted(stratum_area), dtype=np.int64)
        self.area_h = np.array([float(stratum_area[int(h)]) for h in strata])
        self.h = np.searchsorted(strata, np.asarray(stratum))
        self.n_h = np.bincount(self.h, minlength=strata.size).astype(np.float64)
        self.sampled = self.n_h > 0
        self.size = strata.size
        self.total = float(self.area_h.sum())
        self.points = int(self.h.size)
        self.df = float(self.points - int(self.sampled.sum()))  # points less sampled strata

    def mean(self, y: np.ndarray) -> np.ndarray:
        """Each stratum's mean of a per-point variable (0 without points)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            sums = np.bincount(self.h, weights=y, minlength=self.size)
            return np.where(self.sampled, sums / self.n_h, 0.0)

    def estimate(self, y: np.ndarray) -> float:
        """The region's total of ``y``: ``sum_h A_h ybar_h``."""
        return float((self.area_h * self.mean(y)).sum())

    def variance(self, d: np.ndarray) -> float:
        """``sum_h A_h^2 s_h^2 / n_h`` of a per-point variable (a stratum of one: none)."""
        return self.covariance(d, d)

    def covariance(self, x: np.ndarray, y: np.ndarray) -> float:
        """The covariance of two per-point variables' totals: ``sum_h A_h^2 s_xy,h / n_h``."""
        dev = (x - self.mean(x)[self.h]) * (y - self.mean(y)[self.h])
        n_h = self.n_h
        with np.errstate(invalid="ignore", divide="ignore"):
            s2 = np.where(
                n_h > 1, np.bincount(self.h, weights=dev, minlength=self.size) / (n_h - 1), 0
            )
            return float(np.where(self.sampled, self.area_h**2 * s2 / n_h, 0.0).sum())

    def area_bounds(self, est: float, se: float, method: str) -> tuple[float, float]:
        """The interval of an area (the total of a 0/1 variable) with standard error ``se``."""
        if self.total <= 0:
            return 0.0, 0.0
        lo, hi = share_interval(est / self.total, se / self.total, self.points, self.df,
                                method=method)  # fmt: skip
        return lo * self.total, hi * self.total

    def area_interval(self, est: float, se: float, method: str) -> list[float | None]:
        """:meth:`area_bounds`, rounded as the records keep them."""
        return [_f(b) for b in self.area_bounds(est, se, method)]

    def ratio(self, y: np.ndarray, x: np.ndarray) -> tuple[float | None, float]:
        """The ratio of the totals of ``y`` and ``x``, and its linearised variance."""
        top, bottom = self.estimate(y), self.estimate(x)
        if bottom <= 0:
            return None, np.inf
        rate = top / bottom
        return rate, self.variance(y - rate * x) / bottom**2


def design_total(
    stratum: np.ndarray,
    stratum_area: Mapping[int, float],
    y: np.ndarray,
    *,
    bounds: tuple[float, float] = (0.0, 1.0),
    method: str = "beta",
) -> dict[str, Any]:
    """The region's total of a per-point variable from a stratified sample, with its interval.

    As :func:`design_estimates` estimates a class's area (``y``: 1 where the reference
    is the class), for any ``y`` within ``bounds``: an area (``y`` 0 or 1, ``bounds``
    ``(0, 1)``) gets the interval of ``method`` (:mod:`geoseg.intervals`), any other
    total the normal one (for a difference of two areas, see :func:`design_difference`).
    Strata without a point leave the total unknown: ``estimated`` is then ``None`` and
    ``unsampled_range`` what it can be (those strata's area at either bound).

    Examples
    --------
    >>> d = design_total(np.array([1, 1, 2, 2]), {1: 60.0, 2: 40.0}, np.array([1, -1, 1, 1]),
    ...                  bounds=(-1, 1))
    >>> d["estimated"], d["ci95"][0] < 40.0 < d["ci95"][1]
    (40.0, True)
    """
    design = _Design(stratum, stratum_area)
    y = np.asarray(y, np.float64)
    est = design.estimate(y)
    if not design.sampled.all():
        unsampled = float(design.area_h[~design.sampled].sum())
        return {
            "estimated": None, "se": None, "ci95": [None, None],
            "unsampled_range": [_f(est + bounds[0] * unsampled), _f(est + bounds[1] * unsampled)],
        }  # fmt: skip
    se = float(np.sqrt(design.variance(y)))
    if tuple(bounds) == (0.0, 1.0):  # an area
        ci = design.area_interval(est, se, check_method(method))
    else:
        ci = [_f(est - Z95 * se), _f(est + Z95 * se)]
    return {"estimated": _f(est), "se": _f(se), "ci95": ci}


def design_difference(
    stratum: np.ndarray,
    stratum_area: Mapping[int, float],
    first: np.ndarray,
    second: np.ndarray,
    *,
    method: str = "beta",
) -> dict[str, Any]:
    """The difference of two areas from one stratified sample: ``second``'s less ``first``'s.

    ``first`` and ``second`` are per-point 0/1 variables (a class's net change: the
    points that saw it lost, those that saw it gained). Its standard error holds the two
    areas' covariance; its interval is the normal one (``method="wald"``)
    or the two areas' own intervals combined with their correlation (MOVER, see
    :func:`geoseg.intervals.difference_interval`). Strata without a point: as
    :func:`design_total`'s.

    Examples
    --------
    >>> d = design_difference(np.array([1, 1, 2, 2]), {1: 60.0, 2: 40.0},
    ...                       np.array([0, 1, 0, 0]), np.array([1, 1, 1, 1]))
    >>> d["estimated"], d["ci95"][0] < 70.0 < d["ci95"][1]
    (70.0, True)
    """
    check_method(method)
    design = _Design(stratum, stratum_area)
    x, y = np.asarray(first, np.float64), np.asarray(second, np.float64)
    if not design.sampled.all():
        return design_total(stratum, stratum_area, y - x, bounds=(-1, 1))
    est = design.estimate(y) - design.estimate(x)
    se = float(np.sqrt(design.variance(y - x)))
    if method == "wald":
        return {
            "estimated": _f(est),
            "se": _f(se),
            "ci95": [_f(est - Z95 * se), _f(est + Z95 * se)],
        }
    sx, sy = np.sqrt(design.variance(x)), np.sqrt(design.variance(y))
    ends = [(e, *design.area_bounds(e, s, method))
            for e, s in ((design.estimate(x), sx), (design.estimate(y), sy))]  # fmt: skip
    r = design.covariance(x, y) / (sx * sy) if sx > 0 and sy > 0 else 0.0
    lo, hi = difference_interval(ends[0], ends[1], r)
    return {"estimated": _f(est), "se": _f(se), "ci95": [_f(lo), _f(hi)]}


def _variance_terms(w: np.ndarray, p: np.ndarray, n_i: np.ndarray) -> np.ndarray:
    """``W_i^2 p_ij (1 - p_ij) / (n_i - 1)`` per (mapped stratum i, reference class j).

    Summed over ``i``: the variance of class ``j``'s estimated share. A stratum of fewer
    than two scored pixels adds none.
    """
    return w[:, None] ** 2 * p * (1 - p) / _dof(n_i)[:, None]


def _dof(n_i: np.ndarray) -> np.ndarray:
    """``n_i - 1``, infinite (no variance) for strata of fewer than two pixels."""
    return np.where(n_i > 1, n_i - 1, np.inf)


def _accuracy_variances(
    w: np.ndarray, p: np.ndarray, n_i: np.ndarray, estimated: np.ndarray, term: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """Variances of user's, producer's and overall accuracy (Olofsson et al. 2014).

    From the strata's weights ``w``, shares ``p`` (mapped x reference), sizes ``n_i``,
    the estimated class shares and the :func:`_variance_terms`.
    """
    ua = np.diagonal(p)
    ua_var = ua * (1 - ua) / _dof(n_i)
    oa_var = float(np.diagonal(term).sum())  # sum_i W_i^2 U_i (1 - U_i) / (n_i - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        pa = np.where(estimated > 0, w * ua / estimated, np.nan)
        others = term.sum(axis=0) - np.diagonal(term)
        pa_var = (w**2 * (1 - pa) ** 2 * ua_var + pa**2 * others) / estimated**2
    return ua_var, pa_var, oa_var


def _accuracy_interval(
    value: float | None, var: float, points: int, df: float, method: str
) -> list[float | None]:
    """The interval of an accuracy resting on ``points`` labelled points (None without a value).

    See :func:`geoseg.intervals.share_interval`, truncated: never narrower than a simple
    random sample of those points would give (``wald``: ``value`` ± 1.96 standard
    errors, clipped to [0, 1]).
    """
    if value is None or not np.isfinite(var):
        return [None, None]
    lo, hi = share_interval(value, float(np.sqrt(max(var, 0.0))), points, df, method=method,
                            truncate=True)  # fmt: skip
    return [_f(lo), _f(hi)]


def _scaled(share: tuple[float, float], total: float) -> list[float | None]:
    """An interval of a share of ``total``, as areas."""
    return [_f(share[0] * total), _f(share[1] * total)]


def _stratum_shares(n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per mapped class (row), the share of its scored pixels in each reference class.

    A mapped class without a scored pixel is taken as right (its row: the identity).
    Returns the shares and each row's pixel count.
    """
    n_i = n.sum(axis=-1)
    eye = np.broadcast_to(np.eye(n.shape[-1]), n.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(n_i[..., None] > 0, n / n_i[..., None], eye)
    return p, n_i


def area_intervals(
    block_cms: np.ndarray,
    mapped: np.ndarray,
    *,
    replicates: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> list[list[float | None]]:
    """Block-bootstrap intervals of each class's error-adjusted area (see :func:`area_estimates`).

    The map's class areas are fixed; the scored blocks are resampled as in
    :func:`bootstrap_intervals` (the same draws for the same ``seed``), each replicate's
    estimate coming from its pooled confusion matrix.
    """
    mapped = np.asarray(mapped, dtype=np.float64)
    total = mapped.sum()
    w = mapped / total if total else np.zeros_like(mapped)
    cms = np.asarray(block_cms, dtype=np.float64)
    cms = cms[cms.sum(axis=(1, 2)) > 0]
    k = len(w)
    if cms.shape[0] < 2:
        return [[None, None] for _ in range(k)]
    est = [
        (w[None, :, None] * _stratum_shares(np.swapaxes(reps, 1, 2))[0]).sum(axis=1) * total
        for (reps,) in _replicates([cms], replicates, seed)
    ]
    x = np.concatenate(est)
    return [_bounds(x[:, j], level) for j in range(k)]
