"""Polygonisation speed and exactness against GDAL's gdal_polygonize.

Writes a label raster (by default 8192 x 8192 with about 130,000 regions: the real
land-cover raster of ../shared/data/labels mirror-tiled, with a speckle of small
regions), then polygonises it to a GeoPackage twice, in the same run: with
``gdal_polygonize.py`` (GDAL's command-line tool, single-threaded) and with
``geoseg vectorize --mmu 0 --simplify 0`` (chunked, in parallel worker processes,
exact seam merge). Prints both wall times, the ratio, the polygon counts and
whether the per-class areas agree.

    python benchmarks/vectorize.py [--size 8192] [--raster PATH] [--workers N]

``--raster ../shared/data/labels/landcover_1m_epsg3857.tif`` runs on that raster
as it is (62 Mpx). Needs gdal_polygonize.py on the PATH (Debian: gdal-bin,
python3-gdal).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyogrio
import rasterio
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "labels" / "landcover_1m_epsg3857.tif"


def make_labels(path: Path, size: int, *, speckle: float = 0.0018, seed: int = 0) -> Path:
    """Mirror-tile the real land-cover raster to ``size``², plus single-pixel speckle."""
    rng = np.random.default_rng(seed)
    with rasterio.open(REAL) as src:
        real = src.read(1)
        profile = src.profile
    h, w = real.shape
    profile.update(width=size, height=size, tiled=True, blockxsize=512, blockysize=512)
    with rasterio.open(path, "w", **profile) as dst:
        for r in range(0, size, 1024):
            n = min(1024, size - r)
            rows = np.arange(r, r + n) % (2 * h)
            rows = np.where(rows < h, rows, 2 * h - 1 - rows)
            cols = np.arange(size) % (2 * w)
            cols = np.where(cols < w, cols, 2 * w - 1 - cols)
            block = real[rows][:, cols]
            speck = rng.random(block.shape) < speckle
            block[speck] = rng.integers(1, 13, int(speck.sum()))
            dst.write(block, 1, window=Window(0, r, size, n))
    return path


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - t0


def class_areas(gpkg: Path, layer: str | None, field: str) -> dict[int, float]:
    import geopandas as gpd

    gdf = gpd.read_file(gpkg, layer=layer, engine="pyogrio")
    return {int(k): float(v) for k, v in gdf.geometry.area.groupby(gdf[field]).sum().items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=8192)
    p.add_argument("--raster", default=None, help="Use this label raster instead.")
    p.add_argument("--workers", type=int, default=os.cpu_count())
    p.add_argument("--skip-gdal", action="store_true")
    args = p.parse_args()
    gdal = shutil.which("gdal_polygonize.py") or shutil.which("gdal_polygonize")
    if gdal is None and not args.skip_gdal:
        sys.exit("gdal_polygonize.py not found: install GDAL's tools, or pass --skip-gdal")
    geoseg = str(Path(sys.executable).with_name("geoseg"))
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmpdir:
        tmp = Path(tmpdir)
        raster = Path(args.raster) if args.raster else make_labels(tmp / "labels.tif", args.size)
        with rasterio.open(raster) as src:
            mpix = src.width * src.height / 1e6
        out: dict[str, object] = {"raster": str(raster), "megapixels": round(mpix, 1)}
        mine = tmp / "geoseg.gpkg"
        cmd = [geoseg, "vectorize", str(raster), "--out", str(mine), "--mmu", "0"]
        cmd += ["--simplify", "0", "-q", "--workers", str(args.workers)]
        t_mine = timed(cmd)
        n_mine = pyogrio.read_info(mine, layer="landcover")["features"]
        out |= {"geoseg_s": round(t_mine, 2), "geoseg_polygons": n_mine,
                "geoseg_mpix_s": round(mpix / t_mine, 2), "workers": args.workers}  # fmt: skip
        if not args.skip_gdal:
            ref = tmp / "gdal.gpkg"
            t_gdal = timed([gdal, str(raster), "-q", "-of", "GPKG", str(ref), "gdal", "class"])
            n_gdal = pyogrio.read_info(ref)["features"]
            a = class_areas(mine, "landcover", "class_code")
            b = class_areas(ref, None, "class")
            b.pop(0, None)  # gdal_polygonize also polygonises nodata when no mask is used
            same = a.keys() == b.keys() and all(abs(a[k] - b[k]) <= 1e-6 * b[k] for k in a)
            out |= {
                "gdal_polygonize_s": round(t_gdal, 2),
                "gdal_polygons": n_gdal,
                "gdal_mpix_s": round(mpix / t_gdal, 2),
                "ratio_geoseg_over_gdal": round(t_mine / t_gdal, 3),
                "same_polygon_count": n_mine == n_gdal,
                "same_class_areas": same,
            }
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
