"""Job: reproduce the committed Zion bundle (fetch data, train, report test scores).

Usage::

    python pipelines/train_zion.py --out models/zion-nlcd [--overwrite]

Equivalent to ``geoseg train configs/zion_nlcd.yaml --out models/zion-nlcd``
(``--overwrite`` to replace the committed bundle); the
sample data comes from ``geoseg.datasets`` (download, or ``GEOSEG_DATA_MIRROR``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from geoseg.config import load_train_config
from geoseg.errors import GeosegError
from geoseg.train import train

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "zion_nlcd.yaml"


def main(argv: list[str] | None = None) -> int:
    """Train on Zion with the checkerboard split and print the test-set scores."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="models/zion-nlcd")
    p.add_argument("--config", default=str(CONFIG))
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    try:
        bundle = train(load_train_config(args.config), args.out, overwrite=args.overwrite)
    except GeosegError as exc:
        print(f"train_zion: error: {exc}", file=sys.stderr)
        return 1
    meta = json.loads((bundle / "bundle.json").read_text())
    print(json.dumps(meta["metrics"].get("test", {}), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
