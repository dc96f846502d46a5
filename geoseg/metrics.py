"""Segmentation metrics from confusion matrices (numpy only)."""

from __future__ import annotations

from typing import Any

import numpy as np


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
    pred = np.where((np.asarray(pred) < 0) & (np.asarray(coarse_pred) >= 0), n_fine, pred)
    return confusion_matrix(truth, pred, n_fine + 1)


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
