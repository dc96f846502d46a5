"""Job: a batch of scenes on a SLURM cluster through dask-jobqueue.

Usage::

    pip install dask-jobqueue
    python pipelines/slurm_batch.py MANIFEST --model models/zion-nlcd --out OUT_DIR \
        [--jobs 4] [--config configs/cluster/slurm.yaml]

Starts ``--jobs`` SLURM jobs of Dask GPU workers with the settings of the config file,
runs :func:`geoseg.batch.run_batch` on them through the scheduler's address, and
scales the jobs down at the end. Inputs, bundle and outputs must be on a filesystem
the compute nodes share. Not tested here (no SLURM cluster); the distributed code
path it uses (``--scheduler tcp://...``) is tested with local ``dask worker``
processes in ``tests/test_distributed.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from geoseg.batch import parse_manifest, run_batch
from geoseg.errors import GeosegError

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "cluster" / "slurm.yaml"


def main(argv: list[str] | None = None) -> int:
    """Start SLURM workers, run the batch, print one line per scene."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("manifest")
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--jobs", type=int, default=4)
    p.add_argument("--config", default=str(CONFIG))
    args = p.parse_args(argv)
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        print("slurm_batch: error: dask-jobqueue is not installed: pip install dask-jobqueue",
              file=sys.stderr)  # fmt: skip
        return 1
    settings = yaml.safe_load(Path(args.config).read_text())["jobqueue"]["slurm"]
    with SLURMCluster(**settings) as cluster:
        cluster.scale(jobs=args.jobs)
        try:
            results = run_batch(
                parse_manifest(args.manifest),
                args.model,
                args.out,
                scheduler=cluster.scheduler_address,
            )
        except GeosegError as exc:
            print(f"slurm_batch: error: {exc}", file=sys.stderr)
            return 1
    for r in results:
        print(f"{r.status}\t{r.seconds}\t{r.scene}\t{r.error}")
    return int(any(r.status == "failed" for r in results))


if __name__ == "__main__":
    sys.exit(main())
