"""Devices and numeric precision: where a network runs and whether bfloat16 pays off there.

Importing this module does not import torch (the client of a distributed run may not
need it); the functions import it when called.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from geoseg.errors import ConfigError

if TYPE_CHECKING:
    import torch

Precision = Literal["auto", "fp32", "bf16"]


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; otherwise the named device.

    Raises
    ------
    ConfigError
        CUDA was requested but is not available.
    """
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|cuda(:[0-9]+)?", str(device)):
        raise ConfigError(
            f"device {device!r} is not one of auto, cpu, cuda, cuda:N: pick one of those"
        )
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r} requested but CUDA is not available: use --device cpu"
        )
    return torch.device(device)


def bf16_native(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 matrix work natively (fast, not emulated).

    CUDA devices with bf16 support, and CPUs whose oneDNN build reports bf16 support
    (AVX512-BF16 or AMX).
    """
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def resolve_precision(precision: Precision, device: torch.device) -> Literal["fp32", "bf16"]:
    """``auto`` -> ``bf16`` where :func:`bf16_native`, else ``fp32``."""
    if precision == "auto":
        return "bf16" if bf16_native(device) else "fp32"
    if precision not in ("fp32", "bf16"):
        raise ConfigError(f"precision {precision!r} is not one of auto, fp32, bf16")
    return precision


@contextlib.contextmanager
def autocast(device: torch.device, precision: Literal["fp32", "bf16"]) -> Iterator[None]:
    """bfloat16 autocast on ``device`` when ``precision == "bf16"``; a no-op for fp32."""
    import torch

    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        yield


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota.

    ``os.cpu_count()`` reports the host's cores, which in a container or a SLURM job
    limited to a few CPUs oversubscribes them.
    """
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


_threads_lock = threading.Lock()
_threads_users = 0
_threads_saved = 0


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run torch with ``n`` intra-op threads, restoring the previous count afterwards.

    With torch's OpenMP backend the setting applies to the calling thread and is the
    default for threads created later, so concurrent users (tasks on a threaded
    scheduler) share it: the first to enter saves the previous count and the last to
    leave restores it, so a task never has the count reset under it by another task
    and threads started afterwards get the original count. Every task sets ``n``
    itself. ``None`` leaves the count alone.
    """
    global _threads_users, _threads_saved
    if n is None:
        yield
        return
    import torch

    with _threads_lock:
        if _threads_users == 0:
            _threads_saved = torch.get_num_threads()
        _threads_users += 1
        torch.set_num_threads(n)
    try:
        yield
    finally:
        with _threads_lock:
            _threads_users -= 1
            if _threads_users == 0:
                torch.set_num_threads(_threads_saved)
