"""Job: many scenes on one cluster (a manifest in, per-scene outputs and a summary out).

Usage::

    python pipelines/batch_predict.py MANIFEST --model models/zion-nlcd --out OUT_DIR \
        [--scheduler threads|local|tcp://HOST:PORT] [--concurrency N] [--resume]

MANIFEST is a text file (one path per line), a CSV (``scene`` column, optional
``out``), a YAML list, or a glob pattern such as ``'scenes/*.tif'``. It only parses
arguments and calls :func:`geoseg.batch.run_batch`; ``geoseg batch`` is the same.
"""

from __future__ import annotations

import argparse
import sys

from geoseg.batch import parse_manifest, run_batch
from geoseg.errors import GeosegError
from geoseg.export import parse_formats


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the batch, print the summary; 1 if any scene failed."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("manifest")
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--scheduler", default="threads")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--concurrency", type=int, default=None)
    p.add_argument("--format", default="gpkg")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    try:
        results = run_batch(
            parse_manifest(args.manifest),
            args.model,
            args.out,
            scheduler=args.scheduler,
            workers=args.workers,
            concurrency=args.concurrency,
            formats=parse_formats(args.format),
            resume=args.resume,
            overwrite=args.overwrite,
        )
    except GeosegError as exc:
        print(f"batch_predict: error: {exc}", file=sys.stderr)
        return 1
    for r in results:
        print(f"{r.status}\t{r.seconds}\t{r.scene}\t{r.error}")
    return int(any(r.status == "failed" for r in results))


if __name__ == "__main__":
    sys.exit(main())
