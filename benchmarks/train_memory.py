"""Peak memory of ``geoseg train`` on a large labelled scene, per phase.

Writes a synthetic ``--size``² uint16 scene (see ``synthetic.py``) and a fine label
raster of NLCD level-2 codes on its grid, trains a small network for a few steps on it
(checkerboard split; the test blocks are scored at the end, as ``geoseg train`` does)
and samples the process's resident memory every 50 ms, attributing it to the phase
running (loading the scenes, normalising, sampling, validation logits, decision
offsets, test scoring). Training keeps the bands, validity and labels of a large scene
in a memory-mapped file (pages the system can drop and read again) and its split roles
in memory, so resident memory grows with the labelled area and its anonymous part (what
cannot be paged out to a file) by less: the bytes per pixel say by how much.

    python benchmarks/train_memory.py [--size 6000] [--in-memory]
"""

from __future__ import annotations

import argparse
import functools
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import yaml
from synthetic import make_scene

ROOT = Path(__file__).resolve().parents[1]
FINE_CODES = np.array([11, 21, 31, 41, 42, 43, 52, 71, 81, 90], np.uint8)
PHASES = (
    "config_scenes",
    "_normalization",
    "PatchSampler",
    "_val_logits",
    "tune_decode_bias",
    "calibrate_halo",
    "tiled_scores",
)


def _rss_mb(field: str = "VmRSS") -> float:
    """Resident memory (``VmRSS``) or its part that cannot be paged out to a file
    (``RssAnon``: not the pages of memory-mapped scenes), in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _labels(image: Path, dest: Path, seed: int = 0) -> Path:
    """NLCD level-2 codes in 16 px patches on the image's grid (nodata 255)."""
    rng = np.random.default_rng(seed)
    with rasterio.open(image) as src:
        profile = {**src.profile, "count": 1, "dtype": "uint8", "nodata": 255}
        height, width = src.height, src.width
    coarse = FINE_CODES[rng.integers(0, FINE_CODES.size, (-(-height // 16), -(-width // 16)))]
    with rasterio.open(dest, "w", **profile) as dst:
        for r in range(0, height, 512):
            rows = np.arange(r, min(r + 512, height)) // 16
            block = coarse[rows][:, np.arange(width) // 16]
            dst.write(block[None], window=rasterio.windows.Window(0, r, width, rows.size))
    return dest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=6000)
    p.add_argument(
        "--in-memory",
        action="store_true",
        help="hold the scene's bands in memory, as for scenes below SPILL_BYTES (to compare)",
    )
    p.add_argument("--write-data", type=Path, help=argparse.SUPPRESS)  # the child's job
    args = p.parse_args()
    if args.write_data is not None:
        _labels(make_scene(args.write_data / "scene.tif", args.size), args.write_data / "fine.tif")
        return

    from geoseg.allocator import keep_freed_memory

    keep_freed_memory()  # as the geoseg command does, before torch starts its threads
    import geoseg.labelled as labelled
    import geoseg.train as train_mod
    from geoseg.config import load_train_config

    if args.in_memory:
        labelled.SPILL_BYTES = 1 << 62

    peaks: dict[str, float] = {}
    anon: dict[str, float] = {}
    state = {"phase": "start"}

    def sample() -> None:
        while True:
            peaks[state["phase"]] = max(peaks.get(state["phase"], 0.0), _rss_mb())
            anon[state["phase"]] = max(anon.get(state["phase"], 0.0), _rss_mb("RssAnon"))
            time.sleep(0.05)

    def timed(name: str, fn: Any) -> Any:
        @functools.wraps(fn)
        def run(*a: Any, **k: Any) -> Any:
            outer, state["phase"] = state["phase"], name
            try:
                return fn(*a, **k)
            finally:
                state["phase"] = outer

        return run

    for name in PHASES:
        setattr(train_mod, name, timed(name, getattr(train_mod, name)))
    with tempfile.TemporaryDirectory(prefix="geoseg-train-mem-") as tmp:
        work = Path(tmp)
        # written by another process, so that its memory is not this one's baseline
        write = [sys.executable, __file__, "--size", str(args.size), "--write-data", str(work)]
        subprocess.run(write, check=True)
        image, fine = work / "scene.tif", work / "fine.tif"
        cfg = {
            "name": f"memory-{args.size}",
            "taxonomy": str(ROOT / "configs" / "taxonomy" / "nlcd.yaml"),
            "data": {"sources": [{"image": str(image), "fine": str(fine)}]},
            "split": {"checkerboard": 128, "val_every": 5},
            "model": {
                "architecture": "Unet",
                "encoder": "resnet18",
                "encoder_depth": 3,
                "decoder_channels": [32, 16, 8],
                "features": 8,
            },
            "train": {
                "epochs": 1,
                "steps_per_epoch": 5,
                "batch_size": 4,
                "patch_size": 64,
                "tile_size": 512,
                "halo": None,  # measured after training, on a window of the scene
                "max_halo": 64,
                "device": "cpu",
            },
        }
        (work / "cfg.yaml").write_text(yaml.safe_dump(cfg))
        baseline = _rss_mb()  # Python, numpy, rasterio, torch imported
        anon_base = _rss_mb("RssAnon")
        threading.Thread(target=sample, daemon=True).start()
        t0 = time.perf_counter()
        train_mod.train(load_train_config(work / "cfg.yaml"), work / "bundle", progress=False)
        seconds = time.perf_counter() - t0
    pixels = args.size**2
    print(f"geoseg train on a {args.size}² 4-band uint16 scene: {seconds:.0f} s")
    print(
        f"before training: {baseline:.0f} MB resident, {anon_base:.0f} MB of it anonymous "
        "(Python, torch; B/px below count from them)"
    )
    print(f"{'phase':<18} {'peak RSS MB':>12} {'B/px':>6} {'anonymous MB':>13} {'B/px':>6}")

    def row(name: str, rss: float, an: float) -> None:
        per_px = (rss - baseline) * 2**20 / pixels
        an_px = (an - anon_base) * 2**20 / pixels
        print(f"{name:<18} {rss:>12.0f} {per_px:>6.0f} {an:>13.0f} {an_px:>6.0f}")

    for name in ("start", *PHASES):
        if name in peaks:
            row(name, peaks[name], anon[name])
    row("peak", max(peaks.values()), max(anon.values()))
    print(
        "anonymous: resident memory less the pages of files, among them the memory-mapped "
        f"bands of scenes of {labelled.SPILL_BYTES / 2**20:,.0f} MiB or more, which the system "
        "can page out"
    )


if __name__ == "__main__":
    sys.exit(main())
