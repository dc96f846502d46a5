"""Peak memory of ``geoseg predict`` against scene size (summed over all its processes).

For each size, writes a synthetic scene (see ``synthetic.py``), runs ``geoseg predict
--no-vector`` in a subprocess and samples the resident memory of the whole process
tree (the CLI and, with ``--scheduler local``, its Dask workers) every 20 ms. Prints
the peak per size and the ratio of the largest to the smallest: geoseg's memory per
worker is O(block), so the ratio should stay near 1.

``--api lazy`` measures the Python API instead: ``Model.predict_lazy`` on the scene
opened with ``rioxarray.open_rasterio(chunks=1024)``, written by
``rio.to_raster(lock=...)`` block by block (also O(block)); ``--api eager`` labels the
whole array in memory with ``Model.predict`` (grows with the scene, for contrast).

    python benchmarks/memory.py [--sizes 1024 6144] [--scheduler threads] [--model DIR]
    python benchmarks/memory.py --api lazy
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from synthetic import make_scene

ROOT = Path(__file__).resolve().parents[1]

#: The Python API runs measured by --api: argv = scene, model, output stem.
API_RUN = {
    "lazy": (
        "import sys, threading, rioxarray\n"
        "from geoseg import api\n"
        "model = api.load_model(sys.argv[2])\n"
        "image = rioxarray.open_rasterio(sys.argv[1], chunks=1024)\n"
        "labels = model.predict_lazy(image)\n"
        "labels.fine.rio.to_raster(sys.argv[3] + '.tif', tiled=True, lock=threading.Lock())\n"
    ),
    "eager": (
        "import sys, rasterio\n"
        "from geoseg import api\n"
        "model = api.load_model(sys.argv[2])\n"
        "with rasterio.open(sys.argv[1]) as src:\n"
        "    image, names = src.read(), src.descriptions\n"
        "model.predict(image, band_names=names).save(sys.argv[3] + '.tif')\n"
    ),
}


def peak_tree_rss(cmd: list[str], interval: float = 0.02) -> tuple[int, float, int]:
    """Run ``cmd``; return (peak summed RSS in bytes, seconds, exit code)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    root = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        total = 0
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += p.memory_info().rss
        peak = max(peak, total)
        time.sleep(interval)
    _, err = proc.communicate()
    if proc.returncode:
        sys.stderr.write(err.decode())
    return peak, time.perf_counter() - t0, proc.returncode


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 6144])
    p.add_argument("--model", default=str(ROOT / "models" / "zion-nlcd"))
    p.add_argument("--scheduler", default="threads")
    p.add_argument("--extra", default="", help="Extra 'geoseg predict' options.")
    p.add_argument(
        "--api",
        choices=("cli", "lazy", "eager"),
        default="cli",
        help="geoseg predict (cli), Model.predict_lazy (lazy) or Model.predict (eager).",
    )
    args = p.parse_args()
    geoseg = str(Path(sys.executable).with_name("geoseg"))
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        for size in args.sizes:
            scene = make_scene(Path(tmp) / f"scene{size}.tif", size)
            out = Path(tmp) / f"out{size}"
            if args.api == "cli":
                cmd = [geoseg, "predict", str(scene), "--model", args.model, "--out", str(out)]
                cmd += ["--no-vector", "-q", "--scheduler", args.scheduler, *args.extra.split()]
            else:
                cmd = [sys.executable, "-c", API_RUN[args.api], str(scene), args.model, str(out)]
            peak, secs, rc = peak_tree_rss(cmd)
            rows.append(
                {
                    "size": size,
                    "megapixels": round(size * size / 1e6, 2),
                    "peak_rss_mb": round(peak / 2**20, 1),
                    "seconds": round(secs, 1),
                    "exit_code": rc,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    ratio = rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
    print(
        json.dumps(
            {
                "api": args.api,
                "scheduler": args.scheduler if args.api == "cli" else "threads",
                "peak_ratio_largest_over_smallest": round(ratio, 3),
                "cpu_count": os.cpu_count(),
                "runs": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
