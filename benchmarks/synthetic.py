"""Synthetic scenes of any size for the speed and memory benchmarks.

``make_scene`` writes a tiled, compressed GeoTIFF strip by strip (memory is one strip,
whatever the size). With a real source image (the Zion Landsat stack by default) the
scene is that image mirror-tiled, so the network sees realistic land cover and the
class mix stays the same at every size; without one it is smooth random texture.

    python benchmarks/synthetic.py OUT.tif --size 8192 [--bands 4] [--source PATH]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[1]
ZION = ROOT.parent / "shared" / "data" / "zion" / "landsat8_b2345.tif"


def _mirror_index(n: int, period: int, start: int = 0) -> np.ndarray:
    i = (np.arange(start, start + n)) % (2 * period)
    return np.where(i < period, i, 2 * period - 1 - i)


def make_scene(
    path: str | Path,
    size: int = 8192,
    *,
    bands: int = 4,
    source: str | Path | None = ZION,
    strip: int = 512,
    seed: int = 0,
) -> Path:
    """Write a ``size`` x ``size`` uint16 scene (EPSG:32612, 30 m, nodata 65535)."""
    path = Path(path)
    src_img = None
    names = tuple(f"B{i + 2}" for i in range(bands))
    if source is not None and Path(source).exists():
        with rasterio.open(source) as s:
            src_img = s.read()[:bands]
            names = tuple(d or n for d, n in zip(s.descriptions[:bands], names, strict=False))
    rng = np.random.default_rng(seed)
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": bands,
        "dtype": "uint16",
        "crs": "EPSG:32612",
        "transform": from_origin(300000, 4200000, 30, 30),
        "nodata": 65535,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "bigtiff": "if_safer",
    }
    with rasterio.open(path, "w", **profile) as dst:
        for r in range(0, size, strip):
            h = min(strip, size - r)
            if src_img is not None:
                rows = _mirror_index(h, src_img.shape[1], r)
                cols = _mirror_index(size, src_img.shape[2])
                data = src_img[:, rows][:, :, cols]
            else:
                yy, xx = np.mgrid[r : r + h, 0:size]
                base = np.stack(
                    [
                        np.sin(xx / (37.0 + 5 * b)) + np.cos(yy / (53.0 - 3 * b))
                        for b in range(bands)
                    ]
                )
                noise = rng.normal(0, 0.2, base.shape)
                data = (8000 + 2000 * (base + noise)).clip(0, 60000).astype(np.uint16)
            dst.write(data, window=Window(0, r, size, h))
        for i, n in enumerate(names, start=1):
            dst.set_band_description(i, n)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--size", type=int, default=8192)
    p.add_argument("--bands", type=int, default=4)
    p.add_argument("--source", default=str(ZION))
    args = p.parse_args()
    make_scene(args.out, args.size, bands=args.bands, source=args.source or None)
    print(args.out)


if __name__ == "__main__":
    main()
