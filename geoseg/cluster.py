"""Running task lists on a Dask scheduler: sync, threads, a local cluster or a remote one.

``scheduler`` is one of ``sync`` (debugging), ``threads`` (the threaded scheduler in
this process), ``local`` (a :class:`distributed.LocalCluster` of worker processes
sized to the machine) or a scheduler address ``tcp://HOST:PORT``. Settings are
scoped with ``dask.config.set``; nothing global is changed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import dask
from dask.callbacks import Callback

from geoseg.errors import ConfigError, GeosegError

log = logging.getLogger(__name__)

SCHEDULERS = ("sync", "threads", "local")


class ClusterError(GeosegError, ConnectionError):
    """A Dask scheduler cannot be reached or used."""


def check_scheduler(scheduler: str) -> str:
    """Validate a scheduler name or address."""
    if scheduler in SCHEDULERS or scheduler.startswith(("tcp://", "tls://", "inproc://")):
        return scheduler
    raise ConfigError(
        f"unknown scheduler {scheduler!r}: use one of {', '.join(SCHEDULERS)} or tcp://HOST:PORT"
    )


class _Progress(Callback):  # type: ignore[misc]
    def __init__(self, total: int, report: Callable[[int, int], None], prefix: str) -> None:
        super().__init__()
        self.total, self.report, self.prefix, self.done = total, report, prefix, 0

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        name = key[0] if isinstance(key, tuple) else key
        if isinstance(name, str) and name.startswith(self.prefix):
            self.done += 1
            self.report(self.done, self.total)


def run_tasks(
    tasks: list[Any],
    scheduler: str,
    *,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
    prefix: str = "geoseg-block",
    on_client: Callable[[Any], None] | None = None,
) -> list[Any]:
    """Compute delayed ``tasks`` and return their results in order.

    Parameters
    ----------
    tasks : list
        ``dask.delayed`` objects.
    scheduler : str
        ``sync``, ``threads``, ``local`` or a scheduler address.
    progress : callable, optional
        Called as ``progress(done, total)`` after each finished task.
    workers : int, optional
        Threads (``threads``) or worker processes (``local``).
    prefix : str
        Key prefix of the tasks that count for progress.
    on_client : callable, optional
        Called with the distributed ``Client`` once connected (e.g. to print the dashboard).
    """
    check_scheduler(scheduler)
    total = len(tasks)
    if scheduler in ("sync", "threads"):
        cbs = [_Progress(total, progress, prefix)] if progress else []
        kwargs: dict[str, Any] = {"scheduler": "synchronous" if scheduler == "sync" else "threads"}
        if scheduler == "threads" and workers:
            kwargs["num_workers"] = workers
        with contextlib.ExitStack() as stack:
            stack.enter_context(dask.config.set(kwargs))
            for cb in cbs:
                stack.enter_context(cb)
            return list(dask.compute(*tasks))
    from distributed import Client, LocalCluster, as_completed

    if scheduler == "local":
        cluster = LocalCluster(
            n_workers=workers or 1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        )
        client = Client(cluster)
    else:
        cluster = None
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise ClusterError(
                f"cannot reach Dask scheduler {scheduler} ({exc.__class__.__name__}): start it "
                "with 'dask scheduler' or check the address and firewall"
            ) from None
    try:
        if on_client is not None:
            on_client(client)
        resources = _gpu_resources(client)
        futures = client.compute(tasks, retries=2, resources=resources)
        for done, _ in enumerate(as_completed(futures), start=1):
            if progress:
                progress(done, total)
        return client.gather(futures)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _gpu_resources(client: Any) -> dict[str, int] | None:
    info = client.scheduler_info()
    workers = info.get("workers", {}).values()
    if any(w.get("resources", {}).get("GPU") for w in workers):
        return {"GPU": 1}
    return None
