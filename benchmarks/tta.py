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

from geoseg.config import load_train_config
from geoseg.labelled import TEST, VAL, config_scenes, training_sources
from geoseg.predict import Predictor
from geoseg.taxonomy import load_taxonomy
from geoseg.train import tiled_scores

ROOT = Path(__file__).resolve().parents[1]


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
            s = tiled_scores(pred, [scene], tax, pred.meta.tile_size, pred.meta.halo, role=role)
            row: dict[str, object] = {
                "scene": src["image"].name,
                "tta": tta,
                "s": round(time.perf_counter() - t0, 1),
            }
            for level in ("coarse", "fine"):
                if s[level]["pixels"]:
                    row[level] = {
                        "miou": round(s[level]["miou"], 4),
                        "oa": round(s[level]["overall_accuracy"], 4),
                    }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
