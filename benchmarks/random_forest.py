"""The data README's per-pixel random-forest reference on Zion, with per-class IoU.

Recipe of ``../shared/data/README.md``: 200 trees, the 4 Landsat bands as features,
200,000 training pixels drawn from the even checkerboard blocks (128 px), scored on
the odd blocks; one forest per level. Prints mIoU, OA and per-class IoU for each level,
computed with geoseg's own metrics (so they compare with ``geoseg evaluate``).

    python benchmarks/random_forest.py [--data ../shared/data/zion] [--seed 0]
        [--compare zion/labels.tif]

With ``--compare`` (a geoseg ``labels.tif`` of the same scene, e.g. from ``geoseg predict
... --model models/zion-nlcd``) it also prints, per level, the 95 % block-bootstrap
interval of each map's mIoU and the paired interval of their difference (geoseg minus
forest), the 54 test blocks being resampled together for both maps.

Needs scikit-learn (``pip install scikit-learn``; not a geoseg dependency).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import rasterio

from geoseg.labelled import TEST, split_roles
from geoseg.metrics import bootstrap_intervals, confusion_matrix, scores

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "zion"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pixels", type=int, default=200_000)
    p.add_argument("--block", type=int, default=128)
    p.add_argument("--compare", default=None, help="a geoseg labels.tif of the same scene")
    p.add_argument("--replicates", type=int, default=1000)
    args = p.parse_args()
    try:
        from sklearn.ensemble import RandomForestClassifier
    except ImportError:
        sys.exit("benchmarks/random_forest.py needs scikit-learn: pip install scikit-learn")
    data = Path(args.data)
    with rasterio.open(data / "landsat8_b2345.tif") as src:
        features = src.read().reshape(src.count, -1).T.astype(np.float32)
        role, _ = split_roles(src.shape, block=args.block, checkerboard=True, val_every=2)
    odd = role.ravel() == TEST  # the test blocks; training pixels come from all the others
    rng = np.random.default_rng(args.seed)
    for level, name in (("coarse", "nlcd2011_level1.tif"), ("fine", "nlcd2011_level2.tif")):
        with rasterio.open(data / name) as src:
            truth = src.read(1)
            nodata = src.nodata
        y = truth.ravel()
        valid = y != nodata
        train = rng.choice(np.flatnonzero(~odd & valid), args.pixels, replace=False)
        test = np.flatnonzero(odd & valid)
        forest = RandomForestClassifier(200, n_jobs=-1, random_state=args.seed)
        forest.fit(features[train], y[train])
        pred = forest.predict(features[test])
        codes = np.unique(np.concatenate([y[test], pred]))
        cm = confusion_matrix(
            np.searchsorted(codes, y[test]), np.searchsorted(codes, pred), codes.size
        )
        s = scores(cm, [str(int(c)) for c in codes])
        result = {
            "miou": round(s["miou"], 4),
            "overall_accuracy": round(s["overall_accuracy"], 4),
            "per_class_iou": {k: v["iou"] for k, v in s["per_class"].items()},
        }
        print(json.dumps({level: result}), flush=True)
        if args.compare:
            band = 1 if level == "coarse" else 2
            with rasterio.open(args.compare) as src:
                ours = src.read(band).ravel()[test]
            rows, cols = np.divmod(test, truth.shape[1])
            block = (rows // args.block) * (-(-truth.shape[1] // args.block)) + cols // args.block
            every = np.unique(np.concatenate([y[test], pred, ours[ours != nodata]]))
            forest_blocks = _block_cms(block, y[test], pred, every)
            ours_blocks = _block_cms(block, y[test], ours, every)
            ci = {
                "geoseg": bootstrap_intervals(ours_blocks, replicates=args.replicates)["miou"],
                "forest": bootstrap_intervals(forest_blocks, replicates=args.replicates)["miou"],
                "geoseg_minus_forest": bootstrap_intervals(
                    ours_blocks, against=forest_blocks, replicates=args.replicates
                )["miou"],
                "geoseg_miou": round(scores(ours_blocks.sum(axis=0))["miou"], 4),
            }
            print(json.dumps({level: {"miou_95_interval": ci}}), flush=True)


def _block_cms(
    block: np.ndarray, truth: np.ndarray, pred: np.ndarray, codes: np.ndarray
) -> np.ndarray:
    """``(blocks, n, n)`` confusion matrices per block id (codes outside ``codes`` skipped)."""
    ids, inverse = np.unique(block, return_inverse=True)
    t = np.searchsorted(codes, truth)
    q = np.searchsorted(codes, pred)
    n = codes.size
    ok = (t < n) & (q < n)
    ok[ok] &= (codes[t[ok]] == truth[ok]) & (codes[q[ok]] == pred[ok])
    flat = inverse[ok] * n * n + t[ok] * n + q[ok]
    return np.bincount(flat, minlength=ids.size * n * n).reshape(ids.size, n, n)


if __name__ == "__main__":
    main()
