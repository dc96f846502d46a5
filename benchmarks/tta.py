"""Test-time augmentation against plain inference: accuracy and time on a labelled split.

Predicts the training config's scene whole with the bundle's tiled inference (default
tile, halo and precision), once plainly and once with ``tta`` (each tile's logits
averaged over its 8 rotations and reflections), and scores both on the split's
validation blocks (default) or test blocks, with geoseg's own metrics.

    python benchmarks/tta.py [--model models/zion-nlcd] [--config configs/zion_nlcd.yaml]
        [--blocks validation|test]

Prints one JSON line per mode: seconds, and mIoU / OA per level.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from geoseg.config import load_train_config
from geoseg.labelled import TEST, VAL, config_scenes, training_sources
from geoseg.metrics import confusion_matrix, scores
from geoseg.predict import Predictor, predict_array
from geoseg.taxonomy import load_taxonomy

ROOT = Path(__file__).resolve().parents[1]


def _indices(codes: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Class codes to indices (-1 for codes not in ``table``)."""
    out = np.full(codes.shape, -1, dtype=np.int64)
    for i, c in enumerate(table):
        out[codes == c] = i
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "models" / "zion-nlcd"))
    p.add_argument("--config", default=str(ROOT / "configs" / "zion_nlcd.yaml"))
    p.add_argument("--blocks", choices=["validation", "test"], default="validation")
    args = p.parse_args()
    cfg = load_train_config(args.config)
    tax = load_taxonomy(cfg.taxonomy)
    role = VAL if args.blocks == "validation" else TEST
    sources = training_sources(cfg)
    for src, scene in zip(sources, config_scenes(cfg, tax, sources), strict=True):
        for tta in (False, True):
            pred = Predictor.from_bundle(args.model, precision="auto", tta=tta)
            t0 = time.perf_counter()
            labels = predict_array(
                pred, scene.image, scene.valid, tile_size=pred.meta.tile_size, halo=pred.meta.halo
            )
            seconds = time.perf_counter() - t0
            row: dict[str, object] = {
                "scene": src["image"].name,
                "tta": tta,
                "s": round(seconds, 1),
            }
            for level, truth, table, n in (
                ("coarse", scene.coarse, tax.coarse_codes, tax.n_coarse),
                ("fine", scene.fine, tax.fine_codes, tax.n_fine),
            ):
                keep = (scene.role == role) & (truth >= 0)
                if n == 0 or not keep.any():
                    continue
                got = _indices(labels[0 if level == "coarse" else 1][keep], np.asarray(table))
                s = scores(confusion_matrix(truth[keep], got, n))
                row[level] = {"miou": round(s["miou"], 4), "oa": round(s["overall_accuracy"], 4)}
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
