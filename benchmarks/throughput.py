"""End-to-end prediction throughput against the model's pure forward pass.

Runs ``geoseg.workflow.run_predict`` (no vectors) on a scene and times the bundle's
network alone on the same number of pixels (same tile size and halo, random input,
fp32, CPU unless --device says otherwise), then prints MPix/s, the ratio and the
per-phase breakdown recorded in run.json.

    python benchmarks/throughput.py [--scene PATH] [--model models/zion-nlcd]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import torch

from geoseg.bundle import load_bundle
from geoseg.infer import InferOptions
from geoseg.workflow import run_predict

ROOT = Path(__file__).resolve().parents[1]


def pure_forward_seconds(
    model_dir: str, pixels: int, tile: int, halo: int, batch: int, device: str
) -> float:
    """Seconds for the bare network to process ``pixels`` core pixels in tiles."""
    meta, model = load_bundle(model_dir, device=device)
    side = tile + 2 * halo
    n_tiles = math.ceil(pixels / (tile * tile))
    x = torch.randn(batch, meta.band_count, side, side, device=device)
    with torch.inference_mode():
        model(x)  # warm-up
        t0 = time.perf_counter()
        for _ in range(math.ceil(n_tiles / batch)):
            model(x)
        if device == "cuda":
            torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scene", default=str(ROOT.parent / "shared/data/zion/landsat8_b2345.tif"))
    p.add_argument("--model", default=str(ROOT / "models/zion-nlcd"))
    p.add_argument("--scheduler", default="threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=4)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = run_predict(
            args.scene,
            args.model,
            Path(tmp) / "out",
            vector=False,
            scheduler=args.scheduler,
            options=InferOptions(device=args.device, batch_size=args.batch_size),
        )
    w, h = run["input"]["width"], run["input"]["height"]
    prm = run["parameters"]
    e2e = run["timings_s"]["blocks"] + run["timings_s"]["assemble"]
    fwd = pure_forward_seconds(
        args.model, w * h, prm["tile_size"], prm["halo"], args.batch_size, args.device
    )
    mpix = w * h / 1e6
    print(
        json.dumps(
            {
                "scene": args.scene,
                "megapixels": round(mpix, 3),
                "tile_size": prm["tile_size"],
                "halo": prm["halo"],
                "end_to_end_s": round(e2e, 3),
                "end_to_end_mpix_s": round(mpix / e2e, 3),
                "pure_forward_s": round(fwd, 3),
                "pure_forward_mpix_s": round(mpix / fwd, 3),
                "ratio_end_to_end_over_forward": round(e2e / fwd, 3),
                "phases_s": run["block_phases_s"],
                "threads": torch.get_num_threads(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
