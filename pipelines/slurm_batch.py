"""Job: a batch of scenes on a SLURM cluster through dask-jobqueue.

Usage::

    pip install dask-jobqueue
    python pipelines/slurm_batch.py MANIFEST --model models/zion-nlcd --out OUT_DIR \
        [--jobs 4] [--config configs/cluster/slurm.yaml] [--wait 900] \
        [--resume | --overwrite] [--concurrency N] [--format gpkg,parquet] [--no-vector]

Submits ``--jobs`` SLURM jobs of Dask GPU workers with the settings of the preset file,
waits (``--wait`` seconds) until the first one has joined, runs
:func:`geoseg.batch.run_batch` on them through the scheduler's address, and cancels
the jobs at the end. A batch cut short (walltime, Ctrl-C, ``scancel``) continues with
``--resume``. Inputs, bundle and outputs must be on a filesystem the compute nodes
share. SLURM itself is not tested here; the distributed code path this uses
(``--scheduler tcp://...``) is tested with ``dask worker`` processes in
``tests/test_distributed.py``, and this script with a stand-in for dask-jobqueue whose
workers join late (``tests/test_pipelines.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from geoseg.batch import parse_manifest, run_batch
from geoseg.cluster import load_jobqueue_settings, wait_for_workers
from geoseg.errors import GeosegError, Terminated, stop_on_sigterm
from geoseg.export import parse_formats

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "cluster" / "slurm.yaml"


def main(argv: list[str] | None = None) -> int:
    """Start SLURM workers, run the batch, print one line per scene."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("manifest")
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--jobs", type=int, default=4)
    p.add_argument("--config", default=str(CONFIG))
    p.add_argument("--wait", type=float, default=900.0, help="Seconds to wait for a worker.")
    p.add_argument("--concurrency", type=int, default=None)
    p.add_argument("--format", default="gpkg")
    p.add_argument("--no-vector", action="store_true")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    stop_on_sigterm()
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        print("slurm_batch: error: dask-jobqueue is not installed: pip install dask-jobqueue",
              file=sys.stderr)  # fmt: skip
        return 1
    try:
        settings = load_jobqueue_settings(args.config, "slurm")
        items = parse_manifest(args.manifest)
        formats = parse_formats(args.format)
        with SLURMCluster(**settings) as cluster:
            cluster.scale(jobs=args.jobs)
            wait_for_workers(cluster.scheduler_address, args.wait)
            results = run_batch(
                items,
                args.model,
                args.out,
                scheduler=cluster.scheduler_address,
                concurrency=args.concurrency,
                formats=formats,
                vector=not args.no_vector,
                resume=args.resume,
                overwrite=args.overwrite,
            )
    except GeosegError as exc:
        print(f"slurm_batch: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (walltime, scancel): jobs cancelled
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(
            f"slurm_batch: {what}: finished scenes are kept and listed in the summary; "
            "the same command with --resume continues",
            file=sys.stderr,
        )
        return 143 if isinstance(exc, Terminated) else 130
    for r in results:
        print(f"{r.status}\t{r.seconds}\t{r.scene}\t{r.error}")
    return int(any(r.status == "failed" for r in results))


if __name__ == "__main__":
    sys.exit(main())
