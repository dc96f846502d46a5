"""Pond probe: does a model label small patches of a class by their pixels or by context?

Pastes small discs of one class (default Water), cut from its pixels at least 3 px
inside the training blocks of the config's split, into each validation block (12 per
block, radius 1.5-3 px, a fixed seed), predicts each block alone (mirror-padded, the
bundle's halo, fp32) and reports the share of pasted pixels labelled as that class,
and how many other pixels newly got it. The README's copy-paste experiment quotes it
(shipped bundle 0.7 %, copy-paste runs 87 % / 90 %). No test pixel is read.

    python benchmarks/pond_probe.py [--model models/zion-nlcd] [--config configs/zion_nlcd.yaml]
        [--class Water]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from geoseg.config import load_train_config
from geoseg.labelled import TRAIN, VAL, config_scenes
from geoseg.predict import Predictor, predict_array
from geoseg.taxonomy import load_taxonomy

ROOT = Path(__file__).resolve().parents[1]
PAD = 3  # largest disc radius, in pixels
BLOBS = 12  # discs per validation block


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "models" / "zion-nlcd"))
    p.add_argument("--config", default=str(ROOT / "configs" / "zion_nlcd.yaml"))
    p.add_argument("--class", dest="cls", default="Water", help="a coarse class name")
    args = p.parse_args()
    cfg = load_train_config(args.config)
    tax = load_taxonomy(cfg.taxonomy)
    (index,) = [i for i, c in enumerate(tax.coarse) if c.name == args.cls]
    code = tax.coarse[index].code
    pred = Predictor.from_bundle(args.model, device="cpu", batch_size=1, precision="fp32")
    rng = np.random.default_rng(123)
    yy, xx = np.mgrid[-PAD : PAD + 1, -PAD : PAD + 1]
    pasted = found = false = others = 0
    for s in config_scenes(cfg, tax):
        centres = []
        for r, c, h, w, role in s.blocks:
            if role == TRAIN:
                inner = s.coarse[r + PAD : r + h - PAD, c + PAD : c + w - PAD] == index
                rows, cols = np.nonzero(inner)
                centres += list(zip(rows + r + PAD, cols + c + PAD, strict=True))
        if not centres:
            continue
        for r, c, h, w, role in s.blocks:
            if role != VAL:
                continue
            img = s.image[:, r : r + h, c : c + w].copy()
            valid = s.valid[r : r + h, c : c + w]
            mask = np.zeros((h, w), dtype=bool)
            for _ in range(BLOBS):
                sr, sc = centres[int(rng.integers(len(centres)))]
                src = (slice(sr - PAD, sr + PAD + 1), slice(sc - PAD, sc + PAD + 1))
                blob = (yy**2 + xx**2 <= rng.uniform(1.5, 3.0) ** 2) & (s.coarse[src] == index)
                r0, c0 = (int(v) for v in rng.integers(0, (h - 2 * PAD - 1, w - 2 * PAD - 1)))
                dst = (slice(r0, r0 + 2 * PAD + 1), slice(c0, c0 + 2 * PAD + 1))
                img[:, dst[0], dst[1]][:, blob] = s.image[:, src[0], src[1]][:, blob]
                mask[dst] |= blob
            mask &= valid
            labelled = (
                predict_array(pred, img, valid, tile_size=128, halo=pred.meta.halo)[0] == code
            )
            truth = s.coarse[r : r + h, c : c + w] == index
            pasted += int(mask.sum())
            found += int((labelled & mask).sum())
            false += int((labelled & ~mask & ~truth & valid).sum())
            others += int((~mask & valid).sum())
    print(
        json.dumps(
            {
                "model": args.model,
                "class": args.cls,
                "pasted_pixels": pasted,
                "recall_on_pasted": round(found / max(pasted, 1), 4),
                "other_pixels_labelled_as_class": false,
                "other_pixels": others,
            }
        )
    )


if __name__ == "__main__":
    main()
