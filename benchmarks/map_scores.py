"""How well a stratified point sample estimates a map's mIoU, by simulation on real data.

``geoseg evaluate LABELS --fine POINTS`` with a sample drawn by ``geoseg sample``
reports the map's mIoU, overall accuracy and class IoU estimated from the sample's
design (:mod:`geoseg.map_scores`) beside the points' own, unweighted scores. This script
measures both against the census, on a map whose every pixel's truth is known:

- **Map.** The committed Zion bundle's prediction of the Zion Landsat scene (a real
  model's real errors; predicted once, or ``--map LABELS``).
- **Truth.** NLCD 2011 levels 1 and 2 on the same grid (``../shared/data``, or
  ``$GEOSEG_DATA_MIRROR``): the census scores are those of every pixel.
- **Samples.** ``--samples`` draws of ``--total`` points stratified by the map's coarse
  classes (``--strata fine``: its fine classes; ``geoseg sample``'s allocation: by area,
  at least ``--per-class`` each), labelled from the truth, scored at both levels (the
  level that is not the strata's through them, Stehman 2014).

It prints per level the census figure, the mean of each estimator (design-based and
unweighted) and its root-mean-square error, and the share of the 95 % bootstrap
intervals that hold the census figure: for mIoU, mean F1 and overall accuracy, and for
the class IoUs of rare (under 1 % of the map) and common classes; and, for the means,
the share holding the census over the classes the sample holds (a class no point holds,
too rare to be drawn, is in the census's mean and not in the estimate's).

    python benchmarks/map_scores.py [--samples 200] [--total 800] [--per-class 50]
        [--strata coarse|fine]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _data() -> Path:
    mirror = os.environ.get("GEOSEG_DATA_MIRROR")
    folder = Path(mirror) if mirror else ROOT.parent / "shared" / "data"
    if not (folder / "zion" / "nlcd2011_level2.tif").exists():
        sys.exit(f"{folder}/zion not found: set GEOSEG_DATA_MIRROR to the folder holding zion/")
    return folder / "zion"


def _map(path: str | None, tmp: Path) -> Path:
    """The map to score: ``path``, or the Zion bundle's prediction of the Zion scene."""
    if path:
        return Path(path)
    from geoseg.workflow import run_predict

    out = tmp / "zion"
    run_predict(_data() / "landsat8_b2345.tif", ROOT / "models" / "zion-nlcd", out, vector=False)
    return out / "labels.tif"


def _indices(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class indices ``0 ..`` of ``codes`` (``-1`` for 0 and 255: no label) and the codes."""
    valid = (codes != 0) & (codes != 255)
    classes = np.unique(codes[valid])
    index = np.full(256, -1, np.int64)
    index[classes] = np.arange(classes.size)
    return index[codes], classes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--total", type=int, default=800)
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--map", help="a geoseg labels.tif of the Zion scene (default: predict)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--strata",
        choices=("coarse", "fine"),
        default="coarse",
        help="the map's classes drawn within (geoseg sample --strata)",
    )
    args = parser.parse_args()

    import rasterio

    from geoseg.map_scores import map_scores, stratum_counts
    from geoseg.metrics import confusion_matrix, scores
    from geoseg.sample import allocation

    with tempfile.TemporaryDirectory() as tmp:
        labels = _map(args.map, Path(tmp))
        with rasterio.open(labels) as src:
            map_coarse, map_fine = src.read(1), src.read(2)
    zion = _data()
    with (
        rasterio.open(zion / "nlcd2011_level1.tif") as t1,
        rasterio.open(zion / "nlcd2011_level2.tif") as t2,
    ):
        truth = {"coarse": t1.read(1), "fine": t2.read(1)}
    maps = {"coarse": map_coarse, "fine": map_fine}
    strata = map_coarse.ravel().astype(np.int64)
    if args.strata == "fine":  # the fine code where the map has one (geoseg sample's)
        fine_codes = map_fine.ravel().astype(np.int64)
        strata = np.where((fine_codes != 255) & (strata != 255), fine_codes, strata)
    on_map = (strata != 0) & (strata != 255)
    cells = {h: np.flatnonzero(strata == h) for h in np.unique(strata[on_map])}
    sizes = {h: int(c.size) for h, c in cells.items()}
    area = {h: float(n) for h, n in sizes.items()}  # pixels (the grid's are equal)
    quota = allocation(sizes, args.total, args.per_class)
    print(
        f"map {labels.name}: {on_map.sum():,} px in {len(cells)} strata; "
        f"{sum(quota.values())} points a sample ({args.samples} samples)"
    )
    rng = np.random.default_rng(args.seed)
    for level in ("coarse", "fine"):
        # one class list for map and truth: the codes of either
        both = np.concatenate([maps[level].ravel(), truth[level].ravel()])
        _, classes = _indices(both)
        index = np.full(256, -1, np.int64)
        index[classes] = np.arange(classes.size)
        m, t = index[maps[level].ravel()], index[truth[level].ravel()]
        names = [str(c) for c in classes]
        n = classes.size
        scored = (m >= 0) & (t >= 0)
        mapped = np.bincount(m[m >= 0], minlength=n).astype(float)  # as evaluate gives it
        census = scores(confusion_matrix(t[scored], m[scored], n), names)
        share = np.bincount(t[scored], minlength=n) / scored.sum()
        rare = {names[i] for i in range(n) if share[i] < 0.01}
        est: dict[str, list[float]] = {"miou": [], "mean_f1": [], "overall_accuracy": []}
        raw: dict[str, list[float]] = {k: [] for k in est}
        held: dict[str, list[bool]] = {k: [] for k in (*est, "rare class IoU", "class IoU")}
        # the census over the classes a sample holds: what its means can speak for
        seen_held: dict[str, list[bool]] = {"miou": [], "mean_f1": []}
        unseen = 0
        started = time.perf_counter()
        for _ in range(args.samples):
            picked = np.concatenate(
                [rng.choice(cells[h], quota[h], replace=False) for h in sorted(cells)]
            )
            keep = t[picked] >= 0  # a point on truth nodata is left unlabelled
            picked = picked[keep]
            ids, counts, off = stratum_counts(strata[picked], m[picked], t[picked], n)
            s = map_scores(
                counts, np.array([area[h] for h in ids]), names, unlabelled=off, mapped=mapped
            )
            own = scores(counts.sum(axis=0), names)
            for k in est:
                est[k].append(s[k])
                raw[k].append(own[k])
                lo, hi = s[f"{k}_ci95_bootstrap" if k == "overall_accuracy" else f"{k}_ci95"]
                held[k].append(lo is not None and lo <= census[k] <= hi)
            seen = [k for k in s["per_class"] if k in census["per_class"]]
            unseen += len(seen) < len(census["per_class"])
            for k, key in (("miou", "iou"), ("mean_f1", "f1")):
                lo, hi = s[f"{k}_ci95"]
                truth_seen = np.mean([census["per_class"][c][key] for c in seen])
                seen_held[k].append(lo is not None and lo <= truth_seen <= hi)
            for name, c in s["per_class"].items():
                if name not in census["per_class"] or c["iou_ci95"][0] is None:
                    continue
                truth_iou = census["per_class"][name]["iou"]
                ok = c["iou_ci95"][0] <= truth_iou <= c["iou_ci95"][1]
                held["rare class IoU" if name in rare else "class IoU"].append(ok)
        took = (time.perf_counter() - started) / args.samples
        print(
            f"\n{level} level ({n} classes, {len(rare)} under 1 % of the map; a class missing "
            f"from {unseen} of {args.samples} samples; {took:.3f} s a sample)"
        )
        print(
            "| figure | census | design-based mean (RMSE) | unweighted mean (RMSE) "
            "| 95 % CI holds | holds the census of the classes seen |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        for k in est:
            e, r = np.array(est[k]), np.array(raw[k])
            c = census[k]
            seen_share = f"{np.mean(seen_held[k]):.3f}" if k in seen_held else ""
            print(
                f"| {k} | {c:.3f} | {e.mean():.3f} ({np.sqrt(((e - c) ** 2).mean()):.3f}) | "
                f"{r.mean():.3f} ({np.sqrt(((r - c) ** 2).mean()):.3f}) | "
                f"{np.mean(held[k]):.3f} | {seen_share} |"
            )
        for k in ("class IoU", "rare class IoU"):
            if held[k]:
                print(f"| {k} (each class) | | | | {np.mean(held[k]):.3f} ({len(held[k])}) | |")


if __name__ == "__main__":
    main()
