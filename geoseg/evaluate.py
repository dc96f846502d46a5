"""Scoring predicted label rasters against truth rasters, per hierarchy level.

:func:`evaluate_labels` streams a geoseg ``labels.tif`` and the truth rasters (coarse
and/or fine codes) strip by strip, so memory does not grow with the scene, and
accumulates one confusion matrix per level over the pixels that are valid in both.
Truth must be on the prediction's grid, or be resampled onto it with nearest
neighbour when ``align`` is set. With ``checkerboard=N`` only the test blocks of the
checkerboard split (odd ``row // N + col // N``) are scored.

Besides the scores, a result counts where pixels were lost (outside the test blocks,
truth nodata, truth codes the taxonomy does not list, prediction nodata), so that an
evaluation that scores nothing can say why (:func:`require_scored`), and counts the
pixels whose coarse truth is not the parent of their fine truth.
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from geoseg.errors import (
    ConfigError,
    GeosegError,
    InconsistentTruthWarning,
    RasterFormatError,
    UnknownCodeWarning,
    UnscoredLevelWarning,
)
from geoseg.metrics import (
    NO_FINE,
    bootstrap_intervals,
    scored_classes,
    scores,
    with_no_fine_column,
)
from geoseg.raster import absolute_path, grid_mismatch, open_labels
from geoseg.taxonomy import Taxonomy, format_share, lookup_codes, unknown_codes_message

LEVELS = ("coarse", "fine")
ALIGN_FIX = (
    "pass --align to resample the truth with nearest neighbour, or give rasters on the same grid"
)
Level = Literal["coarse", "fine"]


def _taxonomy_of(path: str | Path) -> Taxonomy:
    with rasterio.open(path) as src:
        raw = src.tags().get("GEOSEG_TAXONOMY")
        count = src.count
    if not raw or count < 2:
        raise RasterFormatError(
            f"{path}: not a geoseg labels.tif (no taxonomy tag or fewer than 2 bands): "
            "pass the labels.tif written by 'geoseg predict'"
        )
    return Taxonomy.from_dict(json.loads(raw), source=str(path))


@contextlib.contextmanager
def _truth_reader(
    path: Path, ref: Any, *, align: bool, pred_path: str | Path, grid_fix: str = ALIGN_FIX
) -> Iterator[Any]:
    """Open a truth raster on the prediction grid (a nearest-neighbour VRT with ``align``).

    The grid rule is training's (:func:`geoseg.raster.grid_mismatch`): a truth raster
    with no georeferencing at all is taken as pixel-aligned when its size matches.
    ``grid_fix`` is what the error of a mismatch without ``align`` tells the user to do.
    """
    with open_labels(path) as src:
        problem = grid_mismatch(
            src, width=ref.width, height=ref.height, crs=ref.crs, transform=ref.transform
        )
        if problem is None:
            yield src
            return
        if not align:
            raise RasterFormatError(
                f"{path}: truth is on another grid than {pred_path}: it is {problem}: {grid_fix}"
            )
        if src.crs is None:
            raise RasterFormatError(
                f"{path}: truth raster has no CRS, so it cannot be resampled onto "
                f"{pred_path} (in {ref.crs}): assign one (gdal_edit.py -a_srs)"
            )
        left, bottom, right, top = transform_bounds(src.crs, ref.crs, *src.bounds)
        r = ref.bounds
        if left >= r.right or right <= r.left or bottom >= r.top or top <= r.bottom:
            raise RasterFormatError(
                f"{path}: truth does not overlap {pred_path}: in {ref.crs} it covers x "
                f"{left:.6g}..{right:.6g}, y {bottom:.6g}..{top:.6g}, the prediction x "
                f"{r.left:.6g}..{r.right:.6g}, y {r.bottom:.6g}..{r.top:.6g}: pass truth of "
                "the same area (check its CRS)"
            )
        with WarpedVRT(
            src,
            crs=ref.crs,
            transform=ref.transform,
            width=ref.width,
            height=ref.height,
            resampling=Resampling.nearest,
            nodata=src.nodata,
        ) as vrt:
            yield vrt


def _read_codes(rd: Any, win: Window, path: str | Path) -> np.ndarray:
    """Band 1 of a truth raster as int64 codes, ``-1`` where nodata (or NaN in a float raster).

    Raises
    ------
    RasterFormatError
        A float truth raster holds a value that is not a whole number.
    """
    raw = rd.read(1, window=win)
    nd = rd.nodata
    if raw.dtype.kind == "f":
        missing = np.isnan(raw)
        if nd is not None and not np.isnan(nd):
            missing |= raw == nd
        vals = raw[~missing]
        bad = ~np.isfinite(vals) | (vals != np.round(vals))
        if bad.any():
            raise RasterFormatError(
                f"{path}: truth holds values that are not whole numbers (e.g. {vals[bad][0]}): "
                "pass the class-code raster itself, not a resampled or averaged one"
            )
        return np.where(missing, -1, raw).astype(np.int64)
    codes = raw.astype(np.int64)
    if nd is not None:
        codes[raw == nd] = -1
    return codes


def evaluate_labels(
    pred: str | Path,
    *,
    coarse_truth: str | Path | None = None,
    fine_truth: str | Path | None = None,
    align: bool = False,
    checkerboard: int | None = None,
    block: int | None = None,
    strip_rows: int = 512,
    name: str | None = None,
    grid_fix: str = ALIGN_FIX,
) -> dict[str, Any]:
    """Score a geoseg ``labels.tif`` against coarse and/or fine truth rasters.

    A level that scores no pixel (e.g. fine truth whose codes the taxonomy does not
    list, while the coarse level scores) keeps its empty confusion matrix, so results
    still pool with :func:`combine`, and gets a ``not_scored`` entry saying why; the
    report then lists the reason instead of empty tables and plots. A result where no
    level scores a pixel is returned too (a scene of several may have no test block),
    but :func:`require_scored` and :func:`geoseg.report.write_report` refuse it.

    Parameters
    ----------
    pred : str or Path
        Predicted labels (band 1 coarse, band 2 fine, taxonomy in its tags).
    coarse_truth, fine_truth : str or Path, optional
        Truth rasters holding the taxonomy's codes (band 1). Where only fine truth is
        given, the coarse truth is its parent. Where both are given, each level is
        scored against its own truth, and pixels where the coarse truth is not the
        parent of the fine truth are counted and warned about.
    align : bool
        Resample truth onto the prediction grid (nearest neighbour) when grids differ.
    checkerboard : int, optional
        Score only the test blocks of a checkerboard split with this block size.
    block : int, optional
        Side of the spatial blocks whose confusion matrices are kept for
        :func:`add_confidence` (default: the checkerboard's block size, else 128; doubled
        until the scene has at most :data:`MAX_BLOCKS`).
    strip_rows : int
        Rows read at a time.
    name : str, optional
        How messages and the result name the prediction (default: its path), e.g.
        "the prediction of SCENE" for a temporary file.
    grid_fix : str
        The advice of the error for truth on another grid without ``align``.

    Returns
    -------
    dict
        Per level: ``confusion_matrix``, ``classes`` and the scores of
        :func:`geoseg.metrics.scores` (plus ``not_scored`` where no pixel was scored);
        ``hierarchy_consistency`` of the prediction; ``pixel_counts`` (where pixels were
        lost); with both truths, ``truth_inconsistent_pixels`` of
        ``truth_pixels_both_levels`` (scored pixels labelled at both levels).

    Raises
    ------
    RasterFormatError
        No truth given, a prediction that is not geoseg labels, a grid mismatch
        without ``align``, or a float truth raster with fractional values.

    Warns
    -----
    UnknownCodeWarning
        Truth pixels hold codes that the taxonomy does not list (they are not scored).
    InconsistentTruthWarning
        Scored pixels whose coarse truth is not the parent of their fine truth.
    """
    shown = name or str(pred)
    if coarse_truth is None and fine_truth is None:
        raise RasterFormatError(
            f"{shown}: nothing to compare with: pass --coarse and/or --fine truth rasters"
        )
    tax = _taxonomy_of(pred)
    if fine_truth is not None and not tax.n_fine:
        if coarse_truth is None:
            raise RasterFormatError(
                f"{shown}: the prediction has coarse classes only (its model was trained "
                f"without fine labels), so the fine truth {fine_truth} cannot be scored: "
                "pass --coarse truth"
            )
        warnings.warn(
            f"{shown}: the prediction has coarse classes only (its model was trained without "
            f"fine labels): the fine truth {fine_truth} is not scored",
            UnscoredLevelWarning,
            stacklevel=2,
        )
        fine_truth = None
    luts = {"coarse": tax.code_to_index_lut("coarse"), "fine": tax.code_to_index_lut("fine")}
    n_cls = {"coarse": tax.n_coarse, "fine": tax.n_fine + tax.fine_leaf_column}
    paths = {"coarse": coarse_truth, "fine": fine_truth}
    levels: list[Level] = ["coarse", "fine"] if fine_truth is not None else ["coarse"]
    consistent = checked = 0
    parent = np.append(tax.fine_parent_index, -1)  # index -1 (no fine) -> -1
    childless = np.zeros(tax.n_coarse, dtype=bool)
    childless[tax.childless_coarse_index] = True
    per_level = ("prediction_valid", "truth_labelled", "truth_in_taxonomy", "valid_in_both")
    counts: dict[str, Any] = {k: dict.fromkeys(levels, 0) for k in per_level}
    test_pixels = 0
    unknown: dict[str, set[int]] = {"coarse": set(), "fine": set()}
    n_unknown = {"coarse": 0, "fine": 0}
    bad_truth = both_truth = 0
    with contextlib.ExitStack() as stack:
        src = stack.enter_context(rasterio.open(pred))
        unit = _block_unit(src.height, src.width, block or checkerboard or 128)
        blocks = {lvl: _BlockCounts(src.height, src.width, unit, n_cls[lvl]) for lvl in levels}
        readers = {
            lvl: stack.enter_context(
                _truth_reader(
                    Path(p),
                    src,
                    align=align,
                    pred_path=name or f"the prediction {pred}",
                    grid_fix=grid_fix,
                )
            )
            for lvl, p in paths.items()
            if p is not None
        }
        for r0 in range(0, src.height, strip_rows):
            h = min(strip_rows, src.height - r0)
            win = Window(0, r0, src.width, h)
            pc_code, pf_code = src.read((1, 2), window=win).astype(np.int64)
            pc = np.where(pc_code != tax.nodata, lookup_codes(pc_code, luts["coarse"]), -1)
            pf = np.where(
                (pc >= 0) & (pf_code != tax.nodata), lookup_codes(pf_code, luts["fine"]), -1
            )
            if checkerboard:
                rows = (np.arange(r0, r0 + h) // checkerboard)[:, None]
                cols = (np.arange(src.width) // checkerboard)[None, :]
                test = (rows + cols) % 2 == 1
            else:
                test = np.ones(pc.shape, dtype=bool)
            test_pixels += int(test.sum())
            truth: dict[str, np.ndarray] = {}
            for lvl, rd in readers.items():
                codes = _read_codes(rd, win, paths[lvl] or "")
                codes[codes == tax.nodata] = -1  # the taxonomy's own nodata is unlabelled
                idx = lookup_codes(codes, luts[lvl])
                lost = (codes >= 0) & (idx < 0)
                if lost.any():
                    unknown[lvl].update(np.unique(codes[lost]).tolist())
                    n_unknown[lvl] += int(lost.sum())
                counts["truth_labelled"][lvl] += int((codes >= 0).sum())
                truth[lvl] = idx
            if "coarse" not in truth:
                tf = truth["fine"]
                truth["coarse"] = np.where(tf >= 0, tax.fine_parent_index[np.maximum(tf, 0)], -1)
                counts["truth_labelled"]["coarse"] = counts["truth_labelled"]["fine"]
            ok = (pc >= 0) & test
            for lvl in levels:
                t, p = truth[lvl], (pc if lvl == "coarse" else pf)
                counts["prediction_valid"][lvl] += int((p >= 0).sum())
                counts["truth_in_taxonomy"][lvl] += int((t >= 0).sum())
                counts["valid_in_both"][lvl] += int(((p >= 0) & (t >= 0)).sum())
                if lvl == "fine" and tax.fine_leaf_column:
                    p = with_no_fine_column(p, pc, tax.n_fine)  # a childless win is a miss
                blocks[lvl].add(r0, np.where(ok, t, -1), p)
            if "coarse" in readers and "fine" in readers:
                tc, tf = truth["coarse"], truth["fine"]
                both_truth += int((ok & (tc >= 0) & (tf >= 0)).sum())
                bad_truth += int((ok & tax.contradicts(tc, tf)).sum())
            # the hierarchy: parent(fine) == coarse, or no fine where the coarse is childless
            cc, ff = pc[ok], pf[ok]
            good = np.where(ff >= 0, parent[ff] == cc, childless[np.maximum(cc, 0)])
            consistent += int(good.sum())
            checked += int(cc.size)
        size = [src.width, src.height]
    for lvl in levels:
        if lvl in readers and unknown[lvl]:
            n_lost, lab = n_unknown[lvl], counts["truth_labelled"][lvl]
            warnings.warn(
                unknown_codes_message(
                    paths[lvl], sorted(unknown[lvl]), n_lost, lab, tax.name, "they are not scored"
                ),
                UnknownCodeWarning,
                stacklevel=2,
            )
    if bad_truth:
        warnings.warn(
            f"{coarse_truth}, {fine_truth}: {bad_truth:,} of {both_truth:,} scored pixels "
            f"({format_share(bad_truth, both_truth)}) have a coarse truth that is not the "
            "parent of their fine truth; each level is scored against its own truth: fix the truth "
            "rasters, or pass only --fine (the coarse truth is then its parent)",
            InconsistentTruthWarning,
            stacklevel=2,
        )
    counts["scene_pixels"] = size[0] * size[1]
    counts["test_pixels"] = test_pixels
    counts["sizes"] = [size]
    counts["unknown_truth_codes"] = {lvl: sorted(unknown[lvl]) for lvl in levels}
    result: dict[str, Any] = {
        "prediction": name or absolute_path(pred),
        "truth": {"coarse": _s(coarse_truth), "fine": _s(fine_truth)},
        "taxonomy": tax.name,
        "aligned": align,
        "region": f"checkerboard {checkerboard}: odd (row//N + col//N)"
        if checkerboard
        else "all pixels valid in both",
        "checkerboard": checkerboard or None,
        "hierarchy_consistency": consistent / checked if checked else float("nan"),
        "hierarchy_pixels": {"consistent": consistent, "checked": checked},
        "pixel_counts": counts,
    }
    if coarse_truth is not None and fine_truth is not None:
        result["truth_inconsistent_pixels"] = bad_truth
        result["truth_pixels_both_levels"] = both_truth
    for lvl in levels:
        classes = tax.coarse if lvl == "coarse" else tax.fine
        names = [f"{c.code} {c.name}" for c in classes]
        if lvl == "fine" and tax.fine_leaf_column:
            names.append(NO_FINE)
        per_block = blocks[lvl].nonempty()
        cm = per_block.sum(axis=0)
        result[lvl] = {
            **scores(cm, names, scored=len(classes)),
            "classes": names,
            "confusion_matrix": cm.tolist(),
            BLOCKS: per_block,
        }
    result["bootstrap_block"] = unit
    _mark_unscored(result)
    return result


def combine(results: list[dict[str, Any]], *, prediction: str) -> dict[str, Any]:
    """Pool the confusion matrices and pixel counts of several evaluations (e.g. scenes)."""
    if not results:
        raise ValueError("no evaluation results to combine")
    first = results[0]
    consistent = sum(r["hierarchy_pixels"]["consistent"] for r in results)
    checked = sum(r["hierarchy_pixels"]["checked"] for r in results)
    out: dict[str, Any] = {
        "prediction": prediction,
        "truth": [r["truth"] for r in results],
        "taxonomy": first["taxonomy"],
        "aligned": any(r["aligned"] for r in results),
        "region": first["region"],
        "checkerboard": first.get("checkerboard"),
        "hierarchy_consistency": consistent / checked if checked else float("nan"),
        "hierarchy_pixels": {"consistent": consistent, "checked": checked},
    }
    if all("pixel_counts" in r for r in results):
        out["pixel_counts"] = _pool([r["pixel_counts"] for r in results])
    if any("truth_inconsistent_pixels" in r for r in results):
        for key in ("truth_inconsistent_pixels", "truth_pixels_both_levels"):
            out[key] = sum(r.get(key, 0) for r in results)
    for lvl in LEVELS:
        parts = [r[lvl] for r in results if lvl in r]
        if not parts:
            continue
        cm = np.sum([np.asarray(p["confusion_matrix"], dtype=np.int64) for p in parts], axis=0)
        names = parts[0]["classes"]
        out[lvl] = {
            **scores(cm, names, scored=scored_classes(names)),
            "classes": names,
            "confusion_matrix": cm.tolist(),
            BLOCKS: np.concatenate([p[BLOCKS] for p in parts if BLOCKS in p]),
        }
    units = {r["bootstrap_block"] for r in results if "bootstrap_block" in r}
    if units:
        out["bootstrap_block"] = max(units)
    _mark_unscored(out)
    return out


#: Result key of each level's per-block confusion matrices (not written to metrics.json).
BLOCKS = "block_confusion"

#: At most this many bootstrap blocks per scene (the block side doubles until it fits).
MAX_BLOCKS = 20_000


def _block_unit(height: int, width: int, side: int) -> int:
    """The bootstrap block side: ``side``, doubled until the scene has few enough blocks."""
    while math.ceil(height / side) * math.ceil(width / side) > MAX_BLOCKS:
        side *= 2
    return side


class _BlockCounts:
    """Confusion matrices of the ``unit`` x ``unit`` blocks of a scene, filled strip by strip.

    The only accumulator of an evaluation: the scene's confusion matrix is their sum.
    """

    def __init__(self, height: int, width: int, unit: int, n: int) -> None:
        self.unit, self.n = unit, n
        self.cols = math.ceil(width / unit)
        self.counts = np.zeros((math.ceil(height / unit) * self.cols, n * n), np.int64)
        self.col_block = np.arange(width) // unit

    def add(self, row0: int, truth: np.ndarray, pred: np.ndarray) -> None:
        """Count a strip starting at row ``row0`` (``-1`` or out-of-range indices skipped)."""
        n = self.n
        rows = (np.arange(row0, row0 + truth.shape[0]) // self.unit)[:, None]
        block = rows * self.cols + self.col_block[None, :]
        ok = (truth >= 0) & (truth < n) & (pred >= 0) & (pred < n)
        first = int(block.min())
        flat = (block[ok] - first) * n * n + truth[ok] * n + pred[ok]
        span = int(block.max()) - first + 1
        counts = np.bincount(flat, minlength=span * n * n).reshape(span, n * n)
        self.counts[first : first + span] += counts

    def nonempty(self) -> np.ndarray:
        """``(blocks, n, n)`` matrices of the blocks that hold scored pixels (sum: the scene's)."""
        keep = self.counts.sum(axis=1) > 0
        return self.counts[keep].reshape(int(keep.sum()), self.n, self.n)


def add_confidence(result: dict[str, Any], *, replicates: int = 1000, seed: int = 0) -> None:
    """Add 95 % block-bootstrap intervals of mIoU and OA to each scored level (in place).

    See :func:`geoseg.metrics.bootstrap_intervals`; the blocks are those of
    ``result["bootstrap_block"]`` pixels (the checkerboard's blocks by default).
    """
    for lvl in LEVELS:
        r = result.get(lvl)
        if not r or BLOCKS not in r or r.get("pixels", 0) == 0:
            continue
        ci = bootstrap_intervals(
            r[BLOCKS], scored=scored_classes(r["classes"]), replicates=replicates, seed=seed
        )
        r["confidence"] = {**ci, "block_size": result.get("bootstrap_block")}


def _pool(parts: list[Any]) -> Any:
    """Sum numbers, concatenate lists (sorted unique for codes) and pool dicts key by key."""
    if isinstance(parts[0], dict):
        keys = {k: None for p in parts for k in p}
        return {k: _pool([p[k] for p in parts if k in p]) for k in keys}
    if isinstance(parts[0], list):
        joined = [x for p in parts for x in p]
        return joined if joined and isinstance(joined[0], list) else sorted(set(joined))
    return sum(parts)


def _mark_unscored(result: dict[str, Any]) -> None:
    """Give each level that scored no pixel a ``not_scored`` reason."""
    for lvl in LEVELS:
        if lvl in result:
            result[lvl].pop("not_scored", None)
            if result[lvl]["pixels"] == 0 and "pixel_counts" in result:
                result[lvl]["not_scored"] = _why_empty(result, lvl)[1]


def _truth_name(result: dict[str, Any], lvl: str) -> tuple[str, str]:
    """How to name the truth of a level in a message, and the level its codes are of."""
    truth = result["truth"]
    if not isinstance(truth, dict):
        given = {level for t in truth for level in LEVELS if t.get(level)}
        return f"the {lvl} truth", (lvl if lvl in given else "fine")
    if truth.get(lvl):
        return str(truth[lvl]), lvl
    return str(truth["fine"]), "fine"  # the coarse truth is the parents of its fine codes


def _why_empty(result: dict[str, Any], lvl: str) -> tuple[type[GeosegError], str, str]:
    """Why a level scored no pixel: the error class, the cause and the fix."""
    pc = result["pixel_counts"]
    n = result.get("checkerboard")
    name, code_lvl = _truth_name(result, lvl)
    if pc["test_pixels"] == 0:
        sizes = ", ".join(f"{w} wide x {h} high" for w, h in pc["sizes"])
        cause = (
            f"the checkerboard split of {n} px has no test block (odd row//{n} + col//{n}) "
            f"in a scene of {sizes}"
        )
        fix = (
            "evaluate on scenes the bundle never saw, or retrain with a split.checkerboard "
            "below the scene size so that it has test blocks"
            if "bundle" in result
            else "pass the --checkerboard the model was trained with; a scene needs more "
            f"than {n} pixels in one direction to hold a test block"
        )
        return ConfigError, cause, fix
    if pc["truth_labelled"][lvl] == 0:
        return (
            RasterFormatError,
            f"{name} has no labelled pixel (all nodata)",
            ("pass a truth raster that holds class codes"),
        )
    if pc["truth_in_taxonomy"][lvl] == 0:
        found = pc["unknown_truth_codes"].get(code_lvl, [])
        return (
            RasterFormatError,
            (
                f"no truth code of {name} is a {code_lvl} code of taxonomy {result['taxonomy']} "
                f"(codes found: {found[:10]})"
            ),
            "pass truth coded in the prediction's taxonomy (the bundle's)",
        )
    if pc["prediction_valid"][lvl] == 0:
        what = "is nodata everywhere" if lvl == "coarse" else "has no fine class at any pixel"
        return (
            RasterFormatError,
            f"the prediction {what}",
            ("check the prediction (a coarse-only model predicts no fine classes)"),
        )
    if pc["valid_in_both"][lvl] == 0:
        return (
            RasterFormatError,
            (
                f"no pixel is valid in both the {lvl} prediction ({pc['prediction_valid'][lvl]:,} "
                f"px) and {name} ({pc['truth_in_taxonomy'][lvl]:,} px with taxonomy codes)"
            ),
            "pass truth that covers the prediction's area",
        )
    return (
        RasterFormatError,
        (
            f"the {pc['valid_in_both'][lvl]:,} pixels valid in both the {lvl} prediction and "
            f"{name} lie outside the test blocks of the checkerboard split of {n} px"
        ),
        "pass truth that covers the test blocks, or score without the checkerboard",
    )


def require_scored(result: dict[str, Any]) -> None:
    """Refuse an evaluation that scored no pixel at any level, saying why.

    Raises
    ------
    ConfigError
        The checkerboard split has no test block in the scene(s).
    RasterFormatError
        No truth code is in the taxonomy, the truth is all nodata, or no pixel is
        valid in both the prediction and the truth (in the test blocks).
    """
    levels = [lvl for lvl in LEVELS if lvl in result]
    if any(result[lvl]["pixels"] > 0 for lvl in levels):
        return
    if "pixel_counts" not in result:
        raise RasterFormatError(f"{result['prediction']}: no pixel was scored")
    whys = [_why_empty(result, lvl) for lvl in levels]
    causes = list(dict.fromkeys(w[1] for w in whys))
    fixes = list(dict.fromkeys(w[2] for w in whys))
    raise whys[0][0](
        f"{result['prediction']}: nothing to score, so no report is written: "
        f"{'; '.join(causes)}: {'; '.join(fixes)}"
    )


def check_bundle_split(bundle: str | Path, config: str | Path) -> None:
    """Refuse to score a bundle on the test blocks of a split it was not trained with.

    Only ``split.checkerboard`` decides which pixels are test (``block``,
    ``val_every`` and ``validation`` only divide the other blocks between training and
    validation). A bundle whose ``bundle.json`` records no training config is not
    checked, nor is a config without a checkerboard (it has no test blocks to score).

    Raises
    ------
    ConfigError
        The config's checkerboard differs from the one the bundle was trained with.
    """
    from geoseg.bundle import read_meta
    from geoseg.config import load_train_config

    trained = read_meta(bundle).training.get("config")
    if not isinstance(trained, dict):
        return
    wanted = load_train_config(config).split.checkerboard
    had = (trained.get("split") or {}).get("checkerboard")
    if wanted is None or wanted == had:
        return
    if had is None:
        raise ConfigError(
            f"{bundle}: trained without a checkerboard split (every block was training or "
            f"validation), so the test blocks of {config} (checkerboard {wanted}) are not "
            "unseen pixels: evaluate on scenes the bundle never saw (--region all), or "
            f"retrain with split: {{checkerboard: {wanted}}}"
        )
    raise ConfigError(
        f"{bundle}: trained with split checkerboard {had} (bundle.json training.config) but "
        f"{config} has checkerboard {wanted}, so its test blocks hold training and "
        f"validation pixels: set split: {{checkerboard: {had}}} in {config} (the training "
        "split), or use --region all for scenes the bundle never saw"
    )


def _s(p: str | Path | None) -> str | None:
    return None if p is None else absolute_path(p)
