"""Ablation: hierarchical heads (coarse, then fine conditioned on it) against a flat head.

Trains the same encoder-decoder twice with the same data, split, seed and step budget:
once with ``head: hierarchical`` (the geoseg model) and once with ``head: flat`` (one
softmax over the leaves; the coarse class is the parent of the chosen fine class), then
prints both levels' test-set scores side by side. Both are scored on the checkerboard
test blocks, which neither run sees before the end.

    python benchmarks/ablation_hierarchy.py [--config configs/zion_nlcd.yaml]
        [--steps N] [--out DIR] [--heads hierarchical flat]

Takes about 2 x the config's training time (on 2 CPU cores, about 1 hour for Zion).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from geoseg.config import load_train_config
from geoseg.train import train

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "zion_nlcd.yaml"))
    p.add_argument("--steps", type=int, default=None, help="Step budget (default: the config's).")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "ablation"))
    p.add_argument("--quiet", action="store_true")
    p.add_argument(
        "--heads",
        nargs="+",
        choices=["hierarchical", "flat"],
        default=["hierarchical", "flat"],
        help="Train only these (e.g. flat alone, to set against the committed bundle).",
    )
    args = p.parse_args()
    base = load_train_config(args.config)
    rows = {}
    for head in args.heads:
        cfg = base.model_copy(
            update={
                "name": f"{base.name}-{head}",
                "model": base.model.model_copy(update={"head": head}),
            }
        )
        t0 = time.perf_counter()
        bundle = train(
            cfg,
            Path(args.out) / head,
            overwrite=True,
            progress=not args.quiet,
            max_steps=args.steps,
        )
        meta = json.loads((bundle / "bundle.json").read_text())
        test = meta["metrics"]["test"]
        rows[head] = {
            "coarse_miou": test["coarse"]["miou"],
            "coarse_oa": test["coarse"]["overall_accuracy"],
            "fine_miou": test["fine"]["miou"],
            "fine_oa": test["fine"]["overall_accuracy"],
            "steps": meta["training"]["steps"],
            "selected_epoch": meta["metrics"]["selected_epoch"],
            "train_s": round(time.perf_counter() - t0, 1),
        }
    print("| head | L1 mIoU | L1 OA | L2 mIoU | L2 OA | steps | selected epoch | train s |")
    print("|---|---|---|---|---|---|---|---|")
    for head, r in rows.items():
        print(
            f"| {head} | {r['coarse_miou']:.3f} | {r['coarse_oa']:.3f} | {r['fine_miou']:.3f} | "
            f"{r['fine_oa']:.3f} | {r['steps']} | {r['selected_epoch']} | {r['train_s']} |"
        )
    print(json.dumps({"config": args.config, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
