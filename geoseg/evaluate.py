"""Scoring predicted label rasters against truth rasters, per hierarchy level.

:func:`evaluate_labels` streams a geoseg ``labels.tif`` and the truth rasters (coarse
and/or fine codes) strip by strip, so memory does not grow with the scene, and
accumulates one confusion matrix per level over the pixels that are valid in both.
Truth must be on the prediction's grid, or be resampled onto it with nearest
neighbour when ``align`` is set. With ``checkerboard=N`` only the test blocks of the
checkerboard split (odd ``row // N + col // N``) are scored.

A map that geoseg did not write (another classifier's, or a geoseg output whose tags
were lost) is scored too when its taxonomy is given (a YAML file or a bundle), read as
:mod:`geoseg.map_reading` reads any map.

Besides the scores, a result counts where pixels were lost (outside the test blocks,
truth nodata, truth codes the taxonomy does not list, prediction nodata), so that an
evaluation that scores nothing can say why (:func:`require_scored`), and counts the
pixels whose coarse truth is not the parent of their fine truth.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.windows import Window

from geoseg.area import window_areas
from geoseg.checkerboard import CheckerboardTest
from geoseg.config import TrainConfig, load_train_config
from geoseg.design import STRATA, design_area, read_sample_points
from geoseg.errors import (
    ConfigError,
    GeosegError,
    GeosegWarning,
    InconsistentTruthWarning,
    NodataClassWarning,
    RasterFormatError,
    SampleDesignWarning,
    UnknownCodeWarning,
    UnscoredLevelWarning,
)
from geoseg.intervals import METHODS
from geoseg.labelled import refuse_copies
from geoseg.map_reading import LEVELS, Level, map_reading, read_codes
from geoseg.map_scores import StrataCounts, map_counts
from geoseg.metrics import (
    NO_FINE,
    area_estimates,
    area_intervals,
    bootstrap_intervals,
    scored_classes,
    scores,
    with_no_fine_column,
)
from geoseg.raster import absolute_path, labels_on_grid, open_labels
from geoseg.taxonomy import (
    Taxonomy,
    format_share,
    lookup_codes,
    nodata_class_message,
    unknown_codes_message,
)
from geoseg.vector_labels import VectorField, is_vector, level_field

log = logging.getLogger(__name__)

ALIGN_FIX = (
    "pass --align to resample the truth with nearest neighbour, or give rasters on the same grid"
)


def _other_level_codes(
    codes: list[int],
    level: str,
    tax: Taxonomy,
    path: str | Path | None,
    vector: Mapping[str, VectorField] | None,
) -> str:
    """A hint where truth codes unknown at ``level`` are all the other level's, else ""."""
    other = "fine" if level == "coarse" else "coarse"
    known = set((tax.fine_codes if other == "fine" else tax.coarse_codes).tolist())
    if not codes or not set(codes) <= known:
        return ""
    if path is not None and is_vector(path) and vector is not None and level in vector:
        return (
            f" (they are {other} codes of the taxonomy: is {vector[level].field!r} the "
            f"{other} attribute, --{other}-field?)"
        )
    return f" (they are {other} codes of the taxonomy: is {path} the {other} truth, --{other}?)"


def _truth_band(rd: Any, reached: int | None, path: Any, level: str) -> int:
    """The band of truth raster ``rd`` that holds ``level``'s codes.

    A geoseg map given as truth (a map scored against another) holds its coarse codes in
    band 1 and its fine codes in band 2; any other raster holds them in band 1, and one
    of several bands (a multi-band image given by mistake) is named in a warning.
    """
    if not hasattr(rd, "tags"):  # vector truth, burnt band by band
        return 1
    bands = rd.count - (reached is not None)  # the alignment's alpha band is not the file's
    file = getattr(rd, "src_dataset", rd)  # a resampled truth's tags are its file's
    if "GEOSEG_TAXONOMY" in file.tags() and bands >= 2:
        return 1 if level == "coarse" else 2
    if bands > 1:
        log.warning(
            "%s: %s truth raster has %d bands of %s: band 1 is read as the class codes (a "
            "multi-band image is not a label raster)",
            path, level, bands, rd.dtypes[0],
        )  # fmt: skip
    return 1


def evaluate_labels(
    pred: str | Path,
    *,
    coarse_truth: str | Path | None = None,
    fine_truth: str | Path | None = None,
    taxonomy: Taxonomy | str | Path | None = None,
    level: Level | None = None,
    align: bool = False,
    checkerboard: int | None = None,
    split_grid: str | Path | None = None,
    block: int | None = None,
    strip_rows: int = 512,
    name: str | None = None,
    grid_fix: str = ALIGN_FIX,
    vector: Mapping[str, VectorField] | None = None,
    interval: str = "beta",
) -> dict[str, Any]:
    """Score a label raster against coarse and/or fine truth rasters.

    A level that scores no pixel (e.g. fine truth whose codes the taxonomy does not
    list, while the coarse level scores) keeps its empty confusion matrix, so results
    still pool with :func:`combine`, and gets a ``not_scored`` entry saying why; the
    report then lists the reason instead of empty tables and plots. A result where no
    level scores a pixel is returned too (a scene of several may have no test block),
    but :func:`require_scored` and :func:`geoseg.report.write_report` refuse it.

    Parameters
    ----------
    pred : str or Path
        Predicted labels: a geoseg ``labels.tif`` (band 1 coarse, band 2 fine, taxonomy
        in its tags), or, with ``taxonomy``, any map of class codes: bands described as
        ``coarse`` and ``fine``, two bands (coarse, fine), or a single band of coarse
        or fine codes (in a fine band a coarse class without fine classes is its own
        code). Codes the taxonomy does not list are not scored, with a warning.
    coarse_truth, fine_truth : str or Path, optional
        Truth rasters holding the taxonomy's codes (band 1). Where only fine truth is
        given, the coarse truth is its parent (also for a prediction of coarse classes
        only, when the taxonomy has the fine classes). Where both are given, each level
        is scored against its own truth, and pixels where the coarse truth is not the
        parent of the fine truth are counted and warned about.
    taxonomy : Taxonomy, str or Path, optional
        The taxonomy of the codes (a YAML file or a bundle directory; see
        :func:`load_scoring_taxonomy`): needed for a map without geoseg's tags; for a
        geoseg ``labels.tif`` it must have the codes of the one in its tags (or, for a
        coarse-only prediction, its coarse codes, and then lends its fine classes to
        derive coarse truth from fine truth).
    level : {"coarse", "fine"}, optional
        The level of a single-band map, when its band description (``coarse`` or
        ``fine``) and its codes do not tell.
    align : bool
        Resample truth onto the prediction grid (nearest neighbour) when grids differ.
    checkerboard : int, optional
        Score only the test blocks of a checkerboard split with this block size: the
        pixels of the prediction whose centres fall in the odd blocks of the split's
        grid (:class:`geoseg.checkerboard.CheckerboardTest`), so that a crop, a mosaic
        or a reprojection of the scene is scored on the blocks the model never saw.
    split_grid : str or Path, optional
        A raster on the grid the split was drawn on (the training image). Default: the
        first truth raster's grid (coarse, then fine), where training labels lie unless
        they were aligned onto their image; the prediction's own for vector truth.
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
    vector : Mapping of str to VectorField, optional
        Truth may be vector files (reference polygons or points with a class code or
        name, burnt onto the prediction's grid): where each level's file keeps its
        classes.
    interval : {"beta", "wald"}
        The method of a point sample's stratified intervals (:mod:`geoseg.intervals`).

    Returns
    -------
    dict
        Per level: ``confusion_matrix``, ``classes`` and the scores of
        :func:`geoseg.metrics.scores` (plus ``not_scored`` where no pixel was scored);
        ``hierarchy_consistency`` of the prediction; ``pixel_counts`` (where pixels were
        lost); with both truths, ``truth_inconsistent_pixels`` of
        ``truth_pixels_both_levels`` (scored pixels labelled at both levels); for a
        single-band map, ``prediction_level``.

    Raises
    ------
    RasterReadError
        The prediction or a truth raster is missing or not a readable raster.
    RasterFormatError
        No truth given, a map without geoseg's tags and no ``taxonomy``, a grid
        mismatch without ``align``, or a float raster with fractional values.
    ConfigError
        ``taxonomy`` gives codes other meanings than the prediction's tags, or the
        level of a single band is ambiguous without ``level``.

    Warns
    -----
    UnknownCodeWarning
        Truth or prediction pixels hold codes that the taxonomy does not list (they are
        not scored).
    InconsistentTruthWarning
        Scored pixels whose coarse truth is not the parent of their fine truth.
    UnscoredLevelWarning
        Fine truth for a prediction of coarse classes only.
    TaxonomyMismatchWarning
        ``taxonomy`` has the codes of the prediction's under other names.
    """
    shown = name or str(pred)
    if interval not in METHODS:
        raise ConfigError(f"interval {interval!r} is not one of {', '.join(METHODS)}")
    if split_grid is not None and not checkerboard:
        raise ConfigError(
            f"{split_grid}: a split grid places the blocks of a checkerboard: give the "
            "checkerboard's block size too, or no split grid"
        )
    if split_grid is not None and is_vector(split_grid):
        raise RasterFormatError(
            f"{split_grid}: a vector file has no pixel grid: give the raster the split was "
            "drawn on (the training image)"
        )
    if coarse_truth is None and fine_truth is None:
        raise RasterFormatError(
            f"{shown}: nothing to compare with: pass --coarse and/or --fine truth rasters"
        )
    with contextlib.ExitStack() as stack:
        src = stack.enter_context(open_labels(pred))
        reading = map_reading(src, shown, taxonomy, level, strip_rows=strip_rows)
        tax, layout = reading.taxonomy, reading.layout
        single_band = src.count == 1
        if fine_truth is not None and not layout.has_fine:
            why = (
                "a single band of coarse codes"
                if single_band
                else "its model was trained without fine labels"
            )
            fine_truth = _fine_truth_of_coarse_prediction(shown, why, tax, coarse_truth, fine_truth)
        luts = reading.luts
        n_cls = {"coarse": tax.n_coarse, "fine": tax.n_fine + tax.fine_leaf_column}
        paths = {"coarse": coarse_truth, "fine": fine_truth}
        scored_fine = layout.has_fine and fine_truth is not None
        levels: list[Level] = ["coarse", "fine"] if scored_fine else ["coarse"]
        consistent = checked = 0
        parent = np.append(tax.fine_parent_index, -1)  # index -1 (no fine) -> -1
        childless = np.zeros(tax.n_coarse, dtype=bool)
        childless[tax.childless_coarse_index] = True
        per_level = ("prediction_valid", "truth_in_taxonomy", "valid_in_both")
        counts: dict[str, Any] = {k: dict.fromkeys(levels, 0) for k in per_level}
        labelled = {"coarse": 0, "fine": 0}
        test_pixels = 0
        unknown: dict[str, set[int]] = {"coarse": set(), "fine": set(), "prediction": set()}
        n_unknown = {"coarse": 0, "fine": 0, "prediction": 0}
        pred_coded = 0
        bad_truth = both_truth = 0
        split = anchor = None
        if checkerboard:
            anchor = _split_grid(paths, split_grid)
            split = CheckerboardTest(
                checkerboard,
                src.width,
                src.transform,
                src.crs,
                *(anchor[1:] if anchor is not None else ()),
            )
        split_own = split is None or split.own_grid
        unit = _block_unit(src.height, src.width, block or checkerboard or 128)
        # bootstrap blocks on the split's blocks where the map is a whole-pixel shift of it
        origin = (split.offset() if split is not None else None) or (0, 0)
        blocks = {
            lvl: _BlockCounts(src.height, src.width, unit, n_cls[lvl], origin) for lvl in levels
        }
        # the map's own area of each class, over all of it: the population the scored
        # pixels sample (see geoseg.metrics.area_estimates)
        mapped: dict[str, np.ndarray] = {lv: np.zeros(n_cls[lv]) for lv in levels}
        areas_of_rows = window_areas(src)
        readers = {
            lvl: stack.enter_context(
                labels_on_grid(
                    p,
                    width=src.width,
                    height=src.height,
                    crs=src.crs,
                    transform=src.transform,
                    align=align,
                    what="truth",
                    target=name or f"the prediction {pred}",
                    target_path=pred,
                    fix=grid_fix,
                    vector=level_field(vector, lvl, tax),
                )
            )
            for lvl, p in paths.items()
            if p is not None
        }
        truth_band = {
            lvl: _truth_band(rd, reached, paths[lvl], lvl) for lvl, (rd, reached) in readers.items()
        }
        # a truth grid of another CRS or pixel size than the map's (read with --align,
        # not refused above): the split's blocks?
        if split is not None and anchor is not None and split_grid is None and not split.offset():
            warnings.warn(
                f"{anchor[0]}: the checkerboard's blocks are placed on the grid of this "
                "truth raster, which is not the map's: if the model's split was drawn on "
                "its training image (its labels aligned onto it), pass that image as "
                "--split-grid, or the blocks scored are not those it never saw",
                GeosegWarning,
                stacklevel=2,
            )
        for lvl, (rd, _) in readers.items():
            path_l = paths[lvl] or ""
            if is_vector(path_l):  # burnt features: no tag of the user's
                continue
            if message := nodata_class_message(tax, rd.nodata, path_l, lvl):
                warnings.warn(message, NodataClassWarning, stacklevel=2)
        for r0 in range(0, src.height, strip_rows):
            h = min(strip_rows, src.height - r0)
            win = Window(0, r0, src.width, h)
            pc, pf, stray = reading.read(src, win)
            pred_coded += int((pc >= 0).sum()) + stray.size
            areas = areas_of_rows(r0, h)
            for lv, cls in (("coarse", pc), ("fine", pf)):
                if lv not in mapped:
                    continue
                if lv == "fine" and tax.fine_leaf_column:
                    cls = with_no_fine_column(pf, pc, tax.n_fine)
                on = cls >= 0
                mapped[lv] += np.bincount(cls[on], weights=areas[on], minlength=n_cls[lv])
            if stray.size:
                unknown["prediction"].update(np.unique(stray).tolist())
                n_unknown["prediction"] += stray.size
            test = split.test(r0, h) if split is not None else np.ones(pc.shape, dtype=bool)
            test_pixels += int(test.sum())
            truth: dict[str, np.ndarray] = {}
            fine_as_coarse = None  # the coarse classes that the fine truth implies
            for lvl, (rd, reached) in readers.items():
                codes = read_codes(rd, win, paths[lvl] or "", band=truth_band[lvl])
                if reached is not None:  # resampled: where the truth does not reach
                    codes[rd.read(reached, window=win) == 0] = -1
                codes[codes == tax.nodata] = -1  # the taxonomy's own nodata is unlabelled
                labelled[lvl] += int((codes >= 0).sum())
                if lvl == "fine":  # as in training, a fine raster may name a childless
                    leaf = lookup_codes(codes, luts["leaf"])  # coarse class: coarse truth only
                    codes = np.where(leaf >= 0, -1, codes)
                idx = lookup_codes(codes, luts[lvl])
                lost = (codes >= 0) & (idx < 0)
                if lost.any():
                    unknown[lvl].update(np.unique(codes[lost]).tolist())
                    n_unknown[lvl] += int(lost.sum())
                truth[lvl] = idx
                if lvl == "fine":
                    parent_of = tax.fine_parent_index[np.maximum(idx, 0)] if tax.n_fine else leaf
                    fine_as_coarse = np.where(idx >= 0, parent_of, leaf)
            if "coarse" not in truth:
                truth["coarse"] = fine_as_coarse  # type: ignore[assignment]  # fine truth read
            ok = (pc >= 0) & test
            for lvl in levels:
                t, p = truth[lvl], (pc if lvl == "coarse" else pf)
                counts["prediction_valid"][lvl] += int((p >= 0).sum())
                counts["truth_in_taxonomy"][lvl] += int((t >= 0).sum())
                counts["valid_in_both"][lvl] += int(((p >= 0) & (t >= 0)).sum())
                if lvl == "fine" and tax.fine_leaf_column:
                    p = with_no_fine_column(p, pc, tax.n_fine)  # a childless win is a miss
                blocks[lvl].add(r0, np.where(ok, t, -1), p)
            if "coarse" in readers and fine_as_coarse is not None:
                tc, both = truth["coarse"], ok & (truth["coarse"] >= 0) & (fine_as_coarse >= 0)
                both_truth += int(both.sum())
                bad_truth += int((both & (tc != fine_as_coarse)).sum())
            # the hierarchy: parent(fine) == coarse, or no fine where the coarse is childless;
            # a prediction of coarse classes only has no hierarchy to break
            cc, ff = pc[ok], pf[ok]
            if layout.has_fine:
                good = np.where(ff >= 0, parent[ff] == cc, childless[np.maximum(cc, 0)])
                consistent += int(good.sum())
            else:
                consistent += int(cc.size)
            checked += int(cc.size)
        size = [src.width, src.height]
        area_unit = "m2" if src.crs is not None else "pixels"
    # pixels left out for their codes: warned of, and said in the report (a blind test's
    # truth in another taxonomy lost 29 % of its pixels, and a map read at the wrong
    # level 98 % with a perfect score, under a report that did not say so)
    cautions = []
    for lvl in LEVELS:
        if lvl in readers and unknown[lvl]:
            cautions.append(
                unknown_codes_message(
                    paths[lvl],
                    sorted(unknown[lvl]),
                    n_unknown[lvl],
                    labelled[lvl],
                    tax.name,
                    "they are not scored"
                    + _other_level_codes(sorted(unknown[lvl]), lvl, tax, paths[lvl], vector),
                )
            )
    if unknown["prediction"]:
        cautions.append(
            unknown_codes_message(
                shown,
                sorted(unknown["prediction"]),
                n_unknown["prediction"],
                pred_coded,
                tax.name,
                "those pixels of the prediction are not scored",
            )
        )
    for caution in cautions:
        warnings.warn(caution, UnknownCodeWarning, stacklevel=2)
    if bad_truth:
        warnings.warn(
            f"{coarse_truth}, {fine_truth}: {bad_truth:,} of {both_truth:,} scored pixels "
            f"({format_share(bad_truth, both_truth)}) have a coarse truth that is not the "
            "parent of their fine truth; each level is scored against its own truth: fix the truth "
            "rasters, or pass only --fine (the coarse truth is then its parent)",
            InconsistentTruthWarning,
            stacklevel=2,
        )
    # a coarse truth derived from the fine truth has the fine truth's labelled pixels
    counts["truth_labelled"] = {
        lvl: labelled[lvl if paths[lvl] is not None else "fine"] for lvl in levels
    }
    counts["scene_pixels"] = size[0] * size[1]
    counts["test_pixels"] = test_pixels
    counts["sizes"] = [size]
    counts["unknown_truth_codes"] = {
        lvl: sorted(unknown[lvl]) for lvl in LEVELS if lvl in levels or lvl in readers
    }
    result: dict[str, Any] = {
        "prediction": name or absolute_path(pred),
        "truth": {"coarse": _s(coarse_truth), "fine": _s(fine_truth)},
        "taxonomy": tax.name,
        "aligned": align,
        "region": f"checkerboard {checkerboard}: odd (row//N + col//N)"
        + (f" of the grid of {anchor[0]}" if anchor is not None and not split_own else "")
        if checkerboard
        else "all pixels valid in both",
        "checkerboard": checkerboard or None,
        "hierarchy_consistency": consistent / checked if checked else float("nan"),
        "hierarchy_pixels": {"consistent": consistent, "checked": checked},
        "pixel_counts": counts,
    }
    if cautions:
        result["cautions"] = cautions
    if single_band:
        result["prediction_level"] = "fine" if layout.has_fine else "coarse"
    if coarse_truth is not None and fine_truth is not None:
        result["truth_inconsistent_pixels"] = bad_truth
        result["truth_pixels_both_levels"] = both_truth
    layer = next((v.layer for v in (vector or {}).values() if v.layer), None)
    points = {p: _point_file(p, layer) for p in paths.values() if p is not None}
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
            MAPPED: mapped[lvl],
        }
        if names[-1] == NO_FINE:  # which coarse classes its column holds
            result[lvl]["no_fine_classes"] = [
                f"{c.code} {c.name}" for c in (tax.coarse[i] for i in tax.childless_coarse_index)
            ]
        # the level's own truth (the coarse level's from the fine labels' parents)
        own = paths[lvl] if paths[lvl] is not None else paths.get("fine")
        result[lvl][SAMPLED] = own is not None and points[own]
        # polygons burnt wall to wall are blocks of neighbouring pixels, as a raster's:
        # only a sample of points has the stratified intervals (a blind test's polygons
        # got intervals 30 times too narrow, every pixel counted as a random point)
        _add_area(result[lvl], area_unit, result[lvl][SAMPLED], interval)
    # a geoseg sample: its areas from its own strata (Stehman), which serve any map and
    # both levels; a sample of an earlier version (no stratum areas) drawn on another map:
    # no areas, since its strata are not this map's classes
    for points_file in {p for p in paths.values() if p is not None and is_vector(p)}:
        with open_labels(pred) as src:

            def indices(win: Window, src: Any = src) -> tuple[np.ndarray, np.ndarray]:
                coarse, fine, _ = reading.read(src, win)
                if split is not None:  # the scored region: the checkerboard's test blocks
                    out = ~split.test(int(win.row_off), int(win.height))
                    coarse[out], fine[out] = -1, -1
                return coarse, fine

            sample = read_sample_points(points_file, layer, src, indices, tax)
        if sample is None:
            continue
        off_map = int((sample.mapped_coarse < 0).sum())
        if off_map:  # burnt onto no pixel of the map: silently unscored otherwise
            result["sample_points_off_map"] = off_map
            where = "the checkerboard's test blocks, " if split is not None else ""
            warnings.warn(
                f"{points_file}: {off_map:,} of its {sample.stratum.size:,} points lie outside "
                f"{where}{shown} or on its nodata: they are not scored"
                + (
                    ", and count in the area estimates through their strata"
                    if sample.areas is not None
                    else ""
                ),
                SampleDesignWarning,
                stacklevel=2,
            )
        if sample.problem is not None:
            _withhold_areas(result, levels, points_file, sample.problem)
        elif sample.areas is not None:
            for lv in levels:
                # the level's truth: its own field, or the fine one's parents (--fine alone)
                source = lv if paths[lv] == points_file else None
                if lv == "coarse" and source is None and paths["fine"] == points_file:
                    source = "fine"
                if source is None or "area" not in result[lv]:
                    continue
                spec = level_field(vector, source, tax)
                if spec is None:
                    continue
                if sample.unit != area_unit:
                    _withhold_areas(result, [lv], points_file, (
                        f"its stratum areas are in {sample.unit}, and {shown}'s in {area_unit} "
                        "(one has a CRS, the other not): score a map of the sample's grid"
                    ))  # fmt: skip
                    continue
                if result[lv]["classes"][-1] == NO_FINE:  # fine areas: the coarse level's
                    continue
                area = design_area(
                    result[lv]["classes"], result[lv][MAPPED], lv, source, sample, spec, tax,
                    luts, interval,
                )  # fmt: skip
                if area is not None:
                    result[lv].pop(STRATA, None)  # the map classes' strata: not the design
                    if (kept := area.pop(STRATA, None)) is not None:
                        result[lv][STRATA] = kept
                    result[lv]["area"] = area
        elif (sample.mapped_coarse != sample.stratum).any():
            off = int((sample.mapped_coarse != sample.stratum).sum())
            _withhold_areas(result, levels, points_file, (
                f"it was drawn by geoseg sample on another map: {off:,} of its "
                f"{sample.stratum.size:,} points on {shown} lie in another stratum than this "
                "map's class there (or on its nodata), and the stratified estimates need the "
                "strata of the map the points were drawn on; score that map, or draw a sample "
                "on this one (geoseg sample)"
            ))  # fmt: skip
    result["bootstrap_block"] = unit
    result["area_unit"] = area_unit
    _mark_unscored(result)
    return result


def _split_grid(
    paths: Mapping[str, str | Path | None], split_grid: str | Path | None
) -> tuple[str, Affine, Any] | None:
    """``(path, transform, crs)`` of the grid a checkerboard split was drawn on.

    ``split_grid``'s where given, else the first georeferenced truth raster's (coarse,
    then fine): a model's split is drawn on its training image, whose labels share its
    grid unless they were aligned onto it. ``None`` for vector truth or truth without a
    CRS: the prediction's own grid.
    """
    for path in (split_grid,) if split_grid is not None else paths.values():
        if path is None or is_vector(path):
            continue
        with open_labels(path) as grid:
            if grid.crs is not None:
                return str(path), grid.transform, grid.crs
            if split_grid is not None:
                raise RasterFormatError(
                    f"{path}: has no CRS, so the checkerboard blocks cannot be placed on its "
                    "grid: pass the georeferenced training image as the split grid"
                )
    return None


def _fine_truth_of_coarse_prediction(
    shown: str,
    why: str,
    tax: Taxonomy,
    coarse_truth: str | Path | None,
    fine_truth: str | Path,
) -> str | Path | None:
    """The fine truth to read for a prediction of coarse classes only (``None``: none).

    With coarse truth the fine truth is not needed; without, it gives the coarse truth
    through the parents of its classes, which ``tax`` must list.

    Raises
    ------
    RasterFormatError
        Only fine truth, and ``tax`` lists no fine classes.

    Warns
    -----
    UnscoredLevelWarning
        The fine level is not scored.
    """
    if coarse_truth is not None:
        warnings.warn(
            f"{shown}: the prediction has coarse classes only ({why}): the fine truth "
            f"{fine_truth} is not scored",
            UnscoredLevelWarning,
            stacklevel=3,
        )
        return None
    if not tax.n_fine:
        raise RasterFormatError(
            f"{shown}: the prediction has coarse classes only ({why}) and its taxonomy "
            f"{tax.name} lists no fine classes, so the fine truth {fine_truth} cannot be turned "
            "into coarse truth: pass --coarse truth, or --taxonomy with the fine classes and "
            "their parents (the training config's taxonomy)"
        )
    warnings.warn(
        f"{shown}: the prediction has coarse classes only ({why}): the fine truth "
        f"{fine_truth} is scored at the coarse level only, through the parents of its classes",
        UnscoredLevelWarning,
        stacklevel=3,
    )
    return fine_truth


def _pooled_region(results: list[dict[str, Any]]) -> str:
    """The scored region of pooled scenes: theirs if they share it, else each one's count.

    Examples
    --------
    >>> _pooled_region([{"region": "a"}, {"region": "a"}])
    'a'
    >>> _pooled_region([{"region": "a"}, {"region": "b"}, {"region": "a"}])
    'a in 2 scenes; b in 1 scene'
    """
    regions = [r["region"] for r in results]
    if len(set(regions)) == 1:
        return str(regions[0])
    counts = {reg: regions.count(reg) for reg in dict.fromkeys(regions)}
    return "; ".join(f"{reg} in {n} scene{'s' if n > 1 else ''}" for reg, n in counts.items())


def combine(
    results: list[dict[str, Any]], *, prediction: str, interval: str = "beta"
) -> dict[str, Any]:
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
        "region": _pooled_region(results),
        "checkerboard": next((r["checkerboard"] for r in results if r.get("checkerboard")), None),
        "hierarchy_consistency": consistent / checked if checked else float("nan"),
        "hierarchy_pixels": {"consistent": consistent, "checked": checked},
    }
    if all("pixel_counts" in r for r in results):
        out["pixel_counts"] = _pool([r["pixel_counts"] for r in results])
    if cautions := [c for r in results for c in r.get("cautions", ())]:
        out["cautions"] = list(dict.fromkeys(cautions))  # each scene's, said once
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
            SAMPLED: all(p.get(SAMPLED) for p in parts),
        }
        if "no_fine_classes" in parts[0]:  # one taxonomy: the same classes
            out[lvl]["no_fine_classes"] = parts[0]["no_fine_classes"]
        if all(MAPPED in p for p in parts):
            area_units = {r.get("area_unit") for r in results if lvl in r}
            out[lvl][MAPPED] = np.sum([p[MAPPED] for p in parts], axis=0)
            points = all(p.get("area", {}).get("interval") == "stratified" for p in parts)
            kept = [p for p in parts if p.get("area", {}).get("strata") or p.get(WITHHELD)]
            if len(parts) == 1 and kept:  # one scene: its own figures stand
                for key in ("area", "area_not_estimated", WITHHELD, STRATA):
                    if key in parts[0]:
                        out[lvl][key] = parts[0][key]
            elif kept:
                out[lvl]["area_not_estimated"] = (
                    "a sample's own strata (or a sample drawn on another map) do not pool "
                    "over scenes: see each scene's report"
                )
            else:
                unit = area_units.pop() if len(area_units) == 1 else None
                _add_area(out[lvl], unit, points, interval)
    units = {r["bootstrap_block"] for r in results if "bootstrap_block" in r}
    if units:
        out["bootstrap_block"] = max(units)
    _mark_unscored(out)
    if len(results) > 1:  # pooled figures can hide one scene that fails
        out["scenes"] = [_scene_scores(r) for r in results]
    return out


def _scene_scores(result: dict[str, Any]) -> dict[str, Any]:
    """One scene's headline figures per level, for the per-scene table of a pooled report."""
    truth = result["truth"]
    row: dict[str, Any] = {"image": truth.get("image") or result["prediction"]}
    for lvl in LEVELS:
        level = result.get(lvl)
        if not level or "not_scored" in level:
            continue
        row[lvl] = {k: level[k] for k in ("miou", "overall_accuracy", "kappa", "pixels")}
    return row


#: Result key of each level's per-block confusion matrices (not written to metrics.json).
BLOCKS = "block_confusion"

#: Result key of each level's mapped area per class (m² or pixels; not in metrics.json).
MAPPED = "mapped_area"


#: A level's key: its truth is a file of points (a sample), whose own scores are not the
#: map's.
SAMPLED = "truth_points"


def _point_file(path: str | Path, layer: str | None) -> bool:
    """Whether ``path`` is a vector file whose features are points (a sample)."""
    if not is_vector(path):
        return False
    import pyogrio

    try:
        kind = pyogrio.read_info(str(path), layer=layer)["geometry_type"]
    except Exception:  # read again, with its error, by the scoring itself
        return False
    return "Point" in str(kind)


#: A level's key: its areas were withheld for its sample's design (not pooled over scenes).
WITHHELD = "area_withheld"


def _withhold_areas(
    result: dict[str, Any], levels: list[Level], truth: str | Path, why: str
) -> None:
    """Drop the area estimates of ``levels`` scored with sample ``truth``, and say why."""
    why = f"{truth}: {why}"
    for lvl in levels:
        if result.get(lvl, {}).pop("area", None) is not None:
            result[lvl]["area_not_estimated"] = why
            result[lvl][WITHHELD] = True
    warnings.warn(why, SampleDesignWarning, stacklevel=3)


def _add_area(
    level: dict[str, Any], unit: str | None, points: bool = False, interval: str = "beta"
) -> None:
    """Give a scored level its ``area`` estimates (see :func:`area_estimates`).

    Not for a fine level with the :data:`NO_FINE` column: fine truth leaves the pixels
    of coarse classes without fine classes unlabelled, so the strata would be sampled
    by their errors only (the coarse level holds those classes' areas); nor for scenes
    pooled in m² and in pixels (``unit`` None). ``points``: the truth is vector
    features (a sample of points, whose stratified interval is the one to report),
    not rasters (blocks of neighbouring pixels, whose bootstrap interval is);
    ``interval``: the stratified intervals' method (:mod:`geoseg.intervals`).
    """
    cm = np.asarray(level["confusion_matrix"])
    if not cm.sum():
        return
    if level["classes"][-1] == NO_FINE:
        level["area_not_estimated"] = (
            "the taxonomy has coarse classes without fine classes, whose pixels fine truth "
            "leaves unlabelled: see the coarse level's areas"
        )
    elif unit is None:
        level["area_not_estimated"] = "scenes with a CRS (m²) and without (pixels) do not add"
    else:
        area = area_estimates(cm, level[MAPPED], level["classes"], method=interval)
        level["area"] = {
            "unit": unit,
            "interval": "stratified" if points else "block bootstrap",
            **area,
        }
        # the points' own scores weigh each stratum by its points, not its area: the
        # map's, estimated (their intervals added by add_confidence, as the blocks' are);
        # for a sample of points only (polygons burn neighbouring pixels)
        if level.get(SAMPLED) and not area["unsampled_share"]:
            names = level["classes"]
            level[STRATA] = StrataCounts(
                map_counts(cm), np.asarray(level[MAPPED], float), None, level[MAPPED],
                names, scored_classes(names),
            )  # fmt: skip
            level["area"]["map_scores"] = level[STRATA].scores(replicates=0)


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

    def __init__(
        self, height: int, width: int, unit: int, n: int, origin: tuple[int, int] = (0, 0)
    ) -> None:
        self.unit, self.n = unit, n
        # the blocks' edges lie at multiples of ``unit`` from ``-origin``
        self.shift = (origin[0] % unit, origin[1] % unit)
        self.cols = math.ceil((width + self.shift[1]) / unit)
        rows = math.ceil((height + self.shift[0]) / unit)
        self.counts = np.zeros((rows * self.cols, n * n), np.int64)
        self.col_block = (np.arange(width) + self.shift[1]) // unit

    def add(self, row0: int, truth: np.ndarray, pred: np.ndarray) -> None:
        """Count a strip starting at row ``row0`` (``-1`` or out-of-range indices skipped)."""
        n = self.n
        rows = ((np.arange(row0, row0 + truth.shape[0]) + self.shift[0]) // self.unit)[:, None]
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
        if STRATA in r and "map_scores" in r.get("area", {}):  # the points' strata
            r["area"]["map_scores"] = r[STRATA].scores(replicates=replicates, seed=seed)
        if "area" in r and not r["area"].get("strata"):  # the sample's own design: no blocks
            bounds = area_intervals(r[BLOCKS], r[MAPPED], replicates=replicates, seed=seed)
            for name, b in zip(r["classes"], bounds, strict=True):
                if name in r["area"]["classes"]:
                    r["area"]["classes"][name]["ci95_bootstrap"] = b


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


def seen_pixels_note(labels: str | Path, checkerboard: int | None) -> str | None:
    """Why scoring ``labels`` would score pixels its model trained on, or ``None``.

    The ``run.json`` beside a ``geoseg predict`` map names its scene and bundle; where
    the bundle trained on that scene (``bundle.json`` ``training.data``, compared by
    path, or as a copy: :func:`_same_image`), the scores include its training pixels
    unless only the test blocks of its
    own checkerboard are scored (``checkerboard`` as the bundle's), and always where it
    trained on the whole scene (``role: train`` or ``validation``).
    """
    from geoseg.bundle import read_meta

    try:
        run = json.loads((Path(labels).parent / "run.json").read_text())
        scene, bundle = str(run["input"]["path"]), str(run["bundle"]["path"])
        training = read_meta(bundle).training
    except (OSError, ValueError, KeyError, TypeError, GeosegError):
        return None  # not a geoseg prediction, or its bundle is gone: nothing to tell
    trained = training.get("config")
    if not isinstance(trained, dict):
        return None
    images = _trained_images(training)
    found = next(((i, r) for i, r in images if _same_image(i, scene)), None)
    crop = found is None and (
        found := next(((i, r) for i, r in images if _crop_of(scene, i)), None)
    )
    if found is None or found[1] == "test":
        return None
    role = found[1]
    head = f"{labels}: a prediction of {scene}, which {bundle} trained on"
    if crop:  # a blind test's crop of the training scene was scored without a word
        head = f"{labels}: a prediction of {scene}, a crop of {found[0]}, which {bundle} trained on"
    if role != "blocks":
        return f"{head} whole (role: {role}): every score includes pixels it learned from"
    had = (trained.get("split") or {}).get("checkerboard")
    if had is None:
        return (
            f"{head} with no test blocks (no split.checkerboard): every score includes "
            "pixels it learned from; score it on another scene"
        )
    if checkerboard == had:
        return None
    now = f"with --checkerboard {checkerboard}" if checkerboard else "without --checkerboard"
    return (
        f"{head} with split.checkerboard {had}: {now} the scores include pixels it trained "
        f"or validated on; pass --checkerboard {had} to score its test blocks only"
    )


def _trained_images(training: dict[str, Any]) -> list[tuple[str, str]]:
    """``(image, role)`` of each image a bundle read (``bundle.json`` ``training``).

    The files it read, in the order of its config's sources, each with its source's
    ``role`` (``blocks`` where the config gave none, and for a registered dataset: one
    scene, cut into blocks).
    """
    trained = training.get("config")
    sources = (trained.get("data") or {}).get("sources") or () if isinstance(trained, dict) else ()
    roles = [str(src.get("role", "blocks")) for src in sources]
    files = [d for d in training.get("data") or () if isinstance(d, dict) and "image" in d]
    return [
        (str(d["image"]), roles[i] if i < len(roles) else "blocks") for i, d in enumerate(files)
    ]


def _same_image(a: str | Path, b: str | Path) -> bool:
    """Whether two paths hold one scene: one path, one file, or a copy of its pixels.

    A copy (the sample data's cache and its offline mirror) is told by
    :func:`geoseg.raster.pixel_digest` of a few windows, as copied test scenes are.
    """
    from geoseg.raster import pixel_digest

    if absolute_path(a) == absolute_path(b):
        return True
    try:
        return Path(a).samefile(b) or pixel_digest(a) == pixel_digest(b)
    except (OSError, GeosegError):
        return False


def _crop_of(small: str | Path, big: str | Path) -> bool:
    """Whether ``small`` holds pixels of ``big`` as they are: a crop of it, on its grid.

    Same CRS, pixel size and bands, pixel edges on ``big``'s, inside it, and the
    same values in a window of up to 64 x 64 pixels at ``small``'s centre.
    """
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(small) as a, rasterio.open(big) as b:
            ta, tb = a.transform, b.transform
            if a.crs != b.crs or a.count != b.count or (a.width, a.height) == (b.width, b.height):
                return False
            if not np.allclose((ta.a, ta.e, ta.b, ta.d), (tb.a, tb.e, tb.b, tb.d)):
                return False
            col, row = ~tb * (ta.c, ta.f)  # small's corner in big's pixels
            if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
                return False
            col, row = round(col), round(row)
            if col < 0 or row < 0 or col + a.width > b.width or row + a.height > b.height:
                return False
            h, w = min(64, a.height), min(64, a.width)
            r0, c0 = (a.height - h) // 2, (a.width - w) // 2
            mine = a.read(window=Window(c0, r0, w, h))
            theirs = b.read(window=Window(col + c0, row + r0, w, h))
            return bool(np.array_equal(mine, theirs, equal_nan=mine.dtype.kind == "f"))
    except (OSError, RasterioError):
        return False


def check_bundle_split(
    bundle: str | Path, config: str | Path | TrainConfig, *, region_all: bool = True
) -> None:
    """Refuse to score a bundle on pixels of a config that it trained or validated on.

    The test pixels of a config are the test blocks of its checkerboard split (in its
    ``role: blocks`` sources) and the whole of its ``role: test`` sources. They must be
    pixels the bundle never saw: an image the bundle trained with ``role: train`` or
    ``validation`` may be neither a test source nor a blocks source here; an image it
    trained as blocks may not be a test source, and its checkerboard must be the
    bundle's (``block``, ``val_every`` and ``validation`` only divide the other blocks
    between training and validation). Images are compared by absolute path, the
    bundle's from ``bundle.json`` (``training.data``, the files it read, in the order of
    its config's sources). A bundle that records no training config is not checked.

    ``region_all``: the errors offer ``--region all`` (``geoseg evaluate``); without it
    (``geoseg calibrate``, which scores the test pixels of the bundle's own split), the
    bundle's training config.

    Raises
    ------
    ConfigError
        The config's test pixels include pixels the bundle trained or validated on.
    """
    from geoseg.bundle import read_meta

    training = read_meta(bundle).training
    trained = training.get("config")
    if not isinstance(trained, dict):
        return
    if isinstance(config, TrainConfig):
        cfg, config = config, f"config {config.name}"
    else:
        cfg = load_train_config(config)
    seen = {
        absolute_path(image): role for image, role in _trained_images(training) if role != "test"
    }
    own = "calibrate with the config the bundle was trained with"
    had = (trained.get("split") or {}).get("checkerboard")
    wanted = cfg.split.checkerboard
    sources = cfg.data.sources or ()
    for src in sources:
        trained_as = seen.get(absolute_path(src.image))
        if trained_as is None:
            continue  # a scene the bundle never read
        if src.role == "test":
            raise ConfigError(
                f"{config}: source {src.image} has role: test, but {bundle} was trained on "
                "it (bundle.json training.data): its pixels are not unseen; "
                + (
                    "evaluate on scenes the bundle never saw, or use --region all"
                    if region_all
                    else own
                )
            )
        if src.role == "blocks" and wanted is not None and trained_as in ("train", "validation"):
            raise ConfigError(
                f"{config}: the checkerboard test blocks of {src.image} are not unseen: "
                f"{bundle} was trained with all of it as role: {trained_as} (bundle.json "
                "training.config): "
                + ("leave it out of the config, or use --region all" if region_all else own)
            )
    _refuse_copied_test_scenes(bundle, cfg, seen, region_all)  # after the checks by name
    if "blocks" not in cfg.source_roles() or wanted is None or wanted == had:
        return
    if had is None:
        raise ConfigError(
            f"{bundle}: trained without a checkerboard split (every block was training or "
            f"validation), so the test blocks of {config} (checkerboard {wanted}) are not "
            "unseen pixels: "
            + ("evaluate on scenes the bundle never saw (--region all), or " if region_all else "")
            + f"retrain with split: {{checkerboard: {wanted}}}"
        )
    raise ConfigError(
        f"{bundle}: trained with split checkerboard {had} (bundle.json training.config) but "
        f"{config} has checkerboard {wanted}, so its test blocks hold training and "
        f"validation pixels: set split: {{checkerboard: {had}}} in {config} (the training "
        "split)" + (", or use --region all for scenes the bundle never saw" if region_all else "")
    )


def _refuse_copied_test_scenes(
    bundle: str | Path, cfg: TrainConfig, seen: dict[str, str], region_all: bool = True
) -> None:
    """Refuse test pixels in a copy of an image the bundle trained on (another name).

    ``seen`` maps the bundle's training images to their roles. A ``role: test`` source
    may copy none of them; a checkerboard's ``blocks`` source none it trained whole.
    ``region_all``: as :func:`check_bundle_split`'s.
    """
    on_disk = {p: role for p, role in seen.items() if Path(p).exists()}
    if not on_disk:
        return
    fix = "leave it out of the config" + (
        ", or use --region all for scenes the bundle never saw" if region_all else ""
    )
    # the unknown sources (a missing file is reported when it is read)
    fresh = {
        role: sorted(
            path
            for src in cfg.data.sources or ()
            if src.role == role
            and (path := absolute_path(src.image)) not in seen
            and Path(path).exists()
        )
        for role in ("test", "blocks")
    }
    trained = [(p, f"{p}, which {bundle} was trained on (role: {r})") for p, r in on_disk.items()]
    digests: dict[tuple[str, bool], str] = {}
    refuse_copies(fresh["test"], trained, fix=fix, digests=digests)
    if cfg.split.checkerboard is not None:
        whole = [(p, what) for p, what in trained if on_disk[p] in ("train", "validation")]
        refuse_copies(fresh["blocks"], whole, fix=fix, digests=digests)


def _s(p: str | Path | None) -> str | None:
    return None if p is None else absolute_path(p)
