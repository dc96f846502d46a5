"""Time and peak memory of the change workflow against map size.

For each size, writes two synthetic geoseg maps (64-pixel patches of four classes, the
later one with 2 % of its pixels changed), then runs, each in a subprocess whose
resident memory is sampled every 20 ms (``memory.peak_tree_rss``):

1. ``geoseg change A B --out c --no-vector`` (counts and change.tif);
2. ``geoseg sample c/change.tif --total 1000 --per-class 30 --pool-below 0.001``;
3. ``geoseg change A B --reference ref.gpkg`` after labelling every point as the maps
   have it (error-adjusted estimates).

Prints seconds and peak MB per size and step, and the ratio of the largest size's peak
to the smallest's: the maps are read in strips, so the ratio should stay near 1 once
GDAL's block cache is capped (``--gdal-cache``, MB, default 64; GDAL's own default is
5 % of the machine's memory, which fills with the maps' blocks).

    python benchmarks/change_memory.py [--sizes 2048 8192] [--gdal-cache 64]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from memory import peak_tree_rss

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_pair(size: int, folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """Two geoseg maps of ``size``² pixels of NLCD classes: 64-px patches, 2 % changed."""
    from rasterio.transform import from_origin

    from geoseg import api
    from geoseg.taxonomy import load_taxonomy

    tax = load_taxonomy(ROOT / "configs" / "taxonomy" / "nlcd.yaml")
    rng = np.random.default_rng(seed)
    leaves = np.array([41, 42, 52, 11], np.uint8)  # NLCD: two forests, shrub, water
    patches = rng.choice(leaves, size=(size // 64 + 1, size // 64 + 1), p=[0.4, 0.3, 0.2, 0.1])
    first = np.kron(patches, np.ones((64, 64), np.uint8))[:size, :size]
    second = first.copy()
    flip = rng.random(first.shape) < 0.02
    second[flip] = rng.choice(leaves, size=int(flip.sum()))
    parent = np.zeros(256, np.uint8)
    parent[leaves] = [tax.parent_code(int(code)) for code in leaves]
    transform = from_origin(300_000, 4_150_000, 30, 30)
    paths = []
    for name, fine in (("a.tif", first), ("b.tif", second)):
        conf = np.full(fine.shape, 90, np.uint8)
        path = folder / name
        api.Prediction(parent[fine], fine, conf, None, tax, transform, "EPSG:32612", "").save(path)
        paths.append(path)
    return paths[0], paths[1]


def label_as_mapped(points_file: Path) -> None:
    """Fill each point's reference fields with the maps' classes (a perfect labelling)."""
    import geopandas as gpd

    points = gpd.read_file(points_file)
    for field, fine, coarse in (("before_fine", "map_fine_from", "map_coarse_from"),
                                ("after_fine", "map_fine_to", "map_coarse_to")):  # fmt: skip
        points[field] = points[fine].fillna(points[coarse]).astype("int32")
    points_file.unlink()
    points.to_file(points_file, layer="reference")


def main() -> None:
    """Run the workflow at each size and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 8192])
    parser.add_argument("--gdal-cache", type=int, default=64, help="GDAL_CACHEMAX in MB")
    args = parser.parse_args()
    os.environ["GDAL_CACHEMAX"] = str(args.gdal_cache)
    geoseg = [sys.executable, "-m", "geoseg.cli"]
    peaks: dict[str, list[float]] = {}
    print(f"GDAL_CACHEMAX={args.gdal_cache} MB")
    print(f"{'size':>6} {'step':<10} {'seconds':>8} {'peak MB':>8}")
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="geoseg-change-bench-") as tmp:
            folder = Path(tmp)
            before, after = make_pair(size, folder)
            points = folder / "ref.gpkg"
            steps = {
                "change": [*geoseg, "change", str(before), str(after), "--out",
                           str(folder / "c"), "--no-vector"],
                "sample": [*geoseg, "sample", str(folder / "c" / "change.tif"), "--out",
                           str(points), "--total", "1000", "--per-class", "30",
                           "--pool-below", "0.001"],
                "reference": [*geoseg, "change", str(before), str(after), "--out",
                              str(folder / "d"), "--no-vector", "--reference", str(points)],
            }  # fmt: skip
            for step, cmd in steps.items():
                if step == "reference":
                    label_as_mapped(points)
                peak, seconds, code = peak_tree_rss(cmd)
                if code:
                    raise SystemExit(f"{step} at {size}² failed (exit {code})")
                peaks.setdefault(step, []).append(peak / 1e6)
                print(f"{size:>6} {step:<10} {seconds:>8.2f} {peak / 1e6:>8.0f}", flush=True)
    if len(args.sizes) > 1:
        for step, values in peaks.items():
            print(f"{step}: peak ratio {values[-1] / values[0]:.2f} "
                  f"({args.sizes[-1]}² against {args.sizes[0]}²)")  # fmt: skip


if __name__ == "__main__":
    main()
