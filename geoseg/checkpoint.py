"""Training checkpoints: everything needed to continue an interrupted run exactly.

A checkpoint is one file, ``<bundle>.checkpoint/last.pt``, written atomically after
every epoch: model, optimiser and scheduler states, the best model so far, the
history, the random generators' states and a fingerprint of the configuration (a
checkpoint only resumes the run that wrote it). It is read with
``torch.load(weights_only=True)``, which refuses arbitrary pickled objects.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from geoseg.errors import ConfigError

CHECKPOINT_FILE = "last.pt"


def checkpoint_dir(bundle: str | Path) -> Path:
    """Where the run that writes ``bundle`` keeps its checkpoint."""
    bundle = Path(bundle)
    return bundle.with_name(bundle.name + ".checkpoint")


def save_checkpoint(directory: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``directory/last.pt`` atomically (temporary file, then rename)."""
    directory.mkdir(parents=True, exist_ok=True)
    dest = directory / CHECKPOINT_FILE
    tmp = directory / f".{CHECKPOINT_FILE}.{os.getpid()}.tmp"
    try:
        torch.save(state, tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def load_checkpoint(
    directory: Path, *, fingerprint: str, also_accept: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Read a checkpoint and check it belongs to the run with ``fingerprint``.

    ``also_accept``: other fingerprints of the same run (as older versions computed it).

    Raises
    ------
    ConfigError
        No checkpoint, an unreadable one, or one written by a different configuration.
    """
    path = directory / CHECKPOINT_FILE
    if not path.is_file():
        raise ConfigError(
            f"{path}: no checkpoint to resume: run without --resume to start training"
        )
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError) as exc:
        raise ConfigError(
            f"{path}: checkpoint cannot be read ({str(exc).splitlines()[0]}): "
            "delete it, or pass --overwrite to start over"
        ) from None
    if state.get("fingerprint") not in (fingerprint, *also_accept):
        raise ConfigError(
            f"{path}: checkpoint was written by a different configuration: resume with the "
            "same config and options, or pass --overwrite to start over"
        )
    return state
