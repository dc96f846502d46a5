"""Scoring predicted label rasters against truth rasters, per hierarchy level.

:func:`evaluate_labels` streams a geoseg ``labels.tif`` and the truth rasters (coarse
and/or fine codes) strip by strip, so memory does not grow with the scene, and
accumulates one confusion matrix per level over the pixels that are valid in both.
Truth must be on the prediction's grid, or be resampled onto it with nearest
neighbour when ``align`` is set. With ``checkerboard=N`` only the test blocks of the
checkerboard split (odd ``row // N + col // N``) are scored.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from geoseg.errors import RasterFormatError
from geoseg.labelled import codes_to_index
from geoseg.metrics import confusion_matrix, scores
from geoseg.taxonomy import Taxonomy

LEVELS = ("coarse", "fine")


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


def _same_grid(a: Any, b: Any) -> bool:
    return (
        a.width == b.width
        and a.height == b.height
        and a.crs == b.crs
        and a.transform.almost_equals(b.transform, precision=1e-9 * max(abs(a.transform.a), 1))
    )


@contextlib.contextmanager
def _truth_reader(path: Path, ref: Any, *, align: bool, pred_path: str | Path) -> Iterator[Any]:
    """Open a truth raster on the prediction grid (a nearest-neighbour VRT with ``align``)."""
    with rasterio.open(path) as src:
        if src.crs is None and ref.crs is not None and not align:
            raise RasterFormatError(
                f"{path}: truth raster has no CRS but the prediction {pred_path} is in "
                f"{ref.crs}: assign the CRS (gdal_edit.py -a_srs) or pass --align"
            )
        if _same_grid(src, ref):
            yield src
            return
        if not align:
            raise RasterFormatError(
                f"{path}: truth is on another grid than the prediction {pred_path} "
                f"({src.width}x{src.height} {src.crs} {tuple(src.transform)[:6]} vs "
                f"{ref.width}x{ref.height} {ref.crs} {tuple(ref.transform)[:6]}): pass --align "
                "to resample the truth with nearest neighbour, or give rasters on the same grid"
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


def evaluate_labels(
    pred: str | Path,
    *,
    coarse_truth: str | Path | None = None,
    fine_truth: str | Path | None = None,
    align: bool = False,
    checkerboard: int | None = None,
    strip_rows: int = 512,
) -> dict[str, Any]:
    """Score a geoseg ``labels.tif`` against coarse and/or fine truth rasters.

    Parameters
    ----------
    pred : str or Path
        Predicted labels (band 1 coarse, band 2 fine, taxonomy in its tags).
    coarse_truth, fine_truth : str or Path, optional
        Truth rasters holding the taxonomy's codes (band 1). Where only fine truth is
        given, the coarse truth is its parent.
    align : bool
        Resample truth onto the prediction grid (nearest neighbour) when grids differ.
    checkerboard : int, optional
        Score only the test blocks of a checkerboard split with this block size.
    strip_rows : int
        Rows read at a time.

    Returns
    -------
    dict
        Per level: ``confusion_matrix``, ``classes`` and the scores of
        :func:`geoseg.metrics.scores`; plus ``hierarchy_consistency`` of the prediction.

    Raises
    ------
    RasterFormatError
        No truth given, a prediction that is not geoseg labels, or a grid mismatch
        without ``align``.
    """
    if coarse_truth is None and fine_truth is None:
        raise RasterFormatError(
            f"{pred}: nothing to compare with: pass --coarse and/or --fine truth rasters"
        )
    tax = _taxonomy_of(pred)
    c_lut = tax.code_to_index_lut("coarse")
    f_lut = tax.code_to_index_lut("fine")
    n_c, n_f = tax.n_coarse, tax.n_fine
    cm = {"coarse": np.zeros((n_c, n_c), np.int64), "fine": np.zeros((n_f, n_f), np.int64)}
    consistent = checked = 0
    parent = np.append(tax.fine_parent_index, -1)  # index -1 (no fine) -> -1
    childless = np.zeros(n_c, dtype=bool)
    childless[tax.childless_coarse_index] = True
    with contextlib.ExitStack() as stack:
        src = stack.enter_context(rasterio.open(pred))
        readers = {
            lvl: stack.enter_context(_truth_reader(Path(p), src, align=align, pred_path=pred))
            for lvl, p in (("coarse", coarse_truth), ("fine", fine_truth))
            if p is not None
        }
        for r0 in range(0, src.height, strip_rows):
            h = min(strip_rows, src.height - r0)
            win = Window(0, r0, src.width, h)
            pc_code, pf_code = src.read((1, 2), window=win).astype(np.int64)
            ok = pc_code != tax.nodata
            pc = np.where(ok, c_lut[np.clip(pc_code, 0, c_lut.size - 1)], -1)
            pf = np.where(ok & (pf_code != tax.nodata), f_lut[np.clip(pf_code, 0, 65535)], -1)
            truth: dict[str, np.ndarray] = {}
            for lvl, rd in readers.items():
                t = rd.read(1, window=win).astype(np.int64)
                nd = rd.nodata
                if nd is not None:
                    t[t == nd] = -1
                truth[lvl] = codes_to_index(t, c_lut if lvl == "coarse" else f_lut, rd.name)
            if "coarse" not in truth:
                tf = truth["fine"]
                truth["coarse"] = np.where(tf >= 0, tax.fine_parent_index[np.maximum(tf, 0)], -1)
            if checkerboard:
                rows = (np.arange(r0, r0 + h) // checkerboard)[:, None]
                cols = (np.arange(src.width) // checkerboard)[None, :]
                test = (rows + cols) % 2 == 1
                ok &= test
            for lvl, t in truth.items():
                p = pc if lvl == "coarse" else pf
                n = n_c if lvl == "coarse" else n_f
                cm[lvl] += confusion_matrix(np.where(ok, t, -1), p, n)
            # the hierarchy: parent(fine) == coarse, or no fine where the coarse is childless
            cc, ff = pc[ok], pf[ok]
            good = np.where(ff >= 0, parent[ff] == cc, childless[np.maximum(cc, 0)])
            consistent += int(good.sum())
            checked += int(cc.size)
    result: dict[str, Any] = {
        "prediction": str(pred),
        "truth": {"coarse": _s(coarse_truth), "fine": _s(fine_truth)},
        "taxonomy": tax.name,
        "aligned": align,
        "region": f"checkerboard {checkerboard}: odd (row//N + col//N)"
        if checkerboard
        else "all pixels valid in both",
        "hierarchy_consistency": consistent / checked if checked else float("nan"),
        "hierarchy_pixels": {"consistent": consistent, "checked": checked},
    }
    levels = [lvl for lvl in LEVELS if lvl == "coarse" or fine_truth is not None]
    for lvl in levels:
        classes = tax.coarse if lvl == "coarse" else tax.fine
        names = [f"{c.code} {c.name}" for c in classes]
        result[lvl] = {
            **scores(cm[lvl], names),
            "classes": names,
            "confusion_matrix": cm[lvl].tolist(),
        }
    return result


def combine(results: list[dict[str, Any]], *, prediction: str) -> dict[str, Any]:
    """Pool the confusion matrices of several evaluations (e.g. scenes) into one result."""
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
        "hierarchy_consistency": consistent / checked if checked else float("nan"),
        "hierarchy_pixels": {"consistent": consistent, "checked": checked},
    }
    for lvl in LEVELS:
        parts = [r[lvl] for r in results if lvl in r]
        if not parts:
            continue
        cm = np.sum([np.asarray(p["confusion_matrix"], dtype=np.int64) for p in parts], axis=0)
        names = parts[0]["classes"]
        out[lvl] = {**scores(cm, names), "classes": names, "confusion_matrix": cm.tolist()}
    return out


def _s(p: str | Path | None) -> str | None:
    return None if p is None else str(p)
