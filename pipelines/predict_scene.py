"""Job: one scene end to end (labels.tif, polygons, quick-look, run.json).

Usage::

    python pipelines/predict_scene.py SCENE.tif --model models/zion-nlcd --out OUT_DIR \
        [--scheduler threads|sync|local|tcp://HOST:PORT] [--format gpkg,shp] [--overwrite]

It only parses arguments and calls :func:`geoseg.workflow.run_predict`; ``geoseg
predict`` offers the same with more options.
"""

from __future__ import annotations

import argparse
import json
import sys

from geoseg.errors import GeosegError
from geoseg.export import parse_formats
from geoseg.workflow import run_predict


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the job, print the run summary; return the exit code."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scene")
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--scheduler", default="threads")
    p.add_argument("--format", default="gpkg")
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    try:
        run = run_predict(
            args.scene,
            args.model,
            args.out,
            scheduler=args.scheduler,
            formats=parse_formats(args.format),
            overwrite=args.overwrite,
        )
    except GeosegError as exc:
        print(f"predict_scene: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({k: run[k] for k in ("outputs", "timings_s", "polygons")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
