"""Training checkpoints: everything needed to continue an interrupted run exactly.

A checkpoint is one file, ``<bundle>.checkpoint/last.pt``, written atomically after
every epoch: model, optimiser and scheduler states, the best model so far, the
history, the random generators' states and a fingerprint of the configuration (a
checkpoint only resumes the run that wrote it). It is read with
``torch.load(weights_only=True)``, which refuses arbitrary pickled objects.
"""

from __future__ import annotations

import json
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
    directory: Path,
    *,
    fingerprint: str,
    also_accept: tuple[str, ...] = (),
    settings: str | None = None,
) -> dict[str, Any]:
    """Read a checkpoint and check it belongs to the run with ``fingerprint``.

    ``also_accept``: other fingerprints of the same run (as older versions computed it).
    ``settings``: the run's settings as JSON (:func:`geoseg.train.run_settings`), to name
    those that differ from a checkpoint's that recorded its own.

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
        differ = ""
        if settings is not None and isinstance(state.get("settings"), str):
            changed = setting_differences(json.loads(state["settings"]), json.loads(settings))
            if changed:
                differ = f" ({'; '.join(changed[:6])}{' ...' if len(changed) > 6 else ''})"
        raise ConfigError(
            f"{path}: checkpoint was written by a different configuration{differ}: resume "
            "with the same config and options, or pass --overwrite to start over"
        )
    return state


def setting_differences(before: Any, now: Any, where: str = "") -> list[str]:
    """The settings that differ between two nested records, as ``key: now (was before)``.

    Examples
    --------
    >>> setting_differences({"max_steps": None, "config": {"train": {"lr": 0.002}}},
    ...                     {"max_steps": 100, "config": {"train": {"lr": 0.002}}})
    ['--max-steps: 100 (was none)']
    >>> setting_differences({"config": {"train": {"lr": 0.004}}}, {"config": {"train": {}}})
    ['train.lr: the default, 0.002 (was 0.004)']
    """
    if isinstance(before, dict) and isinstance(now, dict):
        out = []
        for key in sorted(set(before) | set(now), key=str):
            name = "--max-steps" if key == "max_steps" and not where else key
            inner = "" if key == "config" and not where else f"{where}{name}."
            if key not in now:
                default = _default(f"{where}{name}")
                out.append(f"{where}{name}: the default{default} (was {_shown(before[key])})")
            elif key not in before:
                default = _default(f"{where}{name}")
                out.append(f"{where}{name}: {_shown(now[key])} (was the default{default})")
            else:
                out += setting_differences(before[key], now[key], inner)
        return out
    if before == now:
        return []
    return [f"{where[:-1]}: {_shown(now)} (was {_shown(before)})"]


def _default(dotted: str) -> str:
    """``", 0.002"``: a config setting's default (``train.lr``), or ``""`` if unknown.

    Examples
    --------
    >>> _default("train.lr"), _default("max_steps")
    (', 0.002', '')
    """
    from pydantic import BaseModel

    from geoseg.config import TrainConfig

    value: Any = TrainConfig
    for part in dotted.split("."):
        model = value if isinstance(value, type) else type(value)
        fields = model.model_fields if issubclass(model, BaseModel) else {}
        if part not in fields:
            return ""
        value = fields[part].default
    return "" if isinstance(value, BaseModel) else f", {_shown(value)}"


def _shown(value: Any) -> str:
    """A setting's value for a message."""
    if value is None:
        return "none"
    return json.dumps(value) if isinstance(value, dict | list) else str(value)
