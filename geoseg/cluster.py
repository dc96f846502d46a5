"""Running task lists on a Dask scheduler: sync, threads, a local cluster or a remote one.

``scheduler`` is one of ``sync`` (debugging), ``threads`` (the threaded scheduler in
this process), ``local`` (a :class:`distributed.LocalCluster` of worker processes
sized to the machine) or a scheduler address ``tcp://HOST:PORT``. Settings are
scoped with ``dask.config.set``; nothing global is changed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import dask
from dask.callbacks import Callback

from geoseg.allocator import worker_environment
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


class _Cancel(Callback):  # type: ignore[misc]
    """Stop a local compute between tasks once ``event`` is set (tasks in flight finish)."""

    def __init__(self, event: threading.Event) -> None:
        super().__init__()
        self.event = event

    def _check(self) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt

    def _pretask(self, key: Any, dsk: Any, state: Any) -> None:
        self._check()

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        self._check()


@contextlib.contextmanager
def dask_client(
    scheduler: str, *, workers: int | None = None, threads_per_worker: int = 1
) -> Iterator[Any]:
    """A distributed ``Client`` for ``local`` or a scheduler address; ``None`` otherwise.

    ``local`` starts a :class:`distributed.LocalCluster` of ``workers`` processes (closed
    on exit); an address connects to an existing cluster (left running on exit).

    Raises
    ------
    ClusterError
        The scheduler cannot be reached.
    """
    check_scheduler(scheduler)
    if scheduler in ("sync", "threads"):
        yield None
        return
    from distributed import Client, LocalCluster

    if scheduler == "local":
        # the allocator settings must be in a worker's environment when it starts
        spawn_env = dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {}
        environ = {**spawn_env, **worker_environment()}
        with (
            dask.config.set({"distributed.nanny.pre-spawn-environ": environ}),
            LocalCluster(
                n_workers=workers or 1,
                threads_per_worker=threads_per_worker,
                processes=True,
                dashboard_address=":0",
                silence_logs=logging.ERROR,
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
        return
    try:
        client = Client(scheduler, timeout="10s")
    except (OSError, TimeoutError) as exc:
        raise ClusterError(
            f"cannot reach Dask scheduler {scheduler} ({exc.__class__.__name__}): start it "
            "with 'dask scheduler' or check the address and firewall"
        ) from None
    try:
        yield client
    finally:
        client.close()


def run_tasks(
    tasks: list[Any],
    scheduler: str,
    *,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
    prefix: str = "geoseg-block",
    on_client: Callable[[Any], None] | None = None,
    client: Any = None,
    cancel: threading.Event | None = None,
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
    client : distributed.Client, optional
        An open client to use (e.g. shared by the scenes of a batch) instead of
        connecting for this call.
    cancel : threading.Event, optional
        Once set, no further task starts, the tasks not yet finished are cancelled
        and :class:`KeyboardInterrupt` is raised (how a batch stops the scenes in
        flight on Ctrl-C: only the main thread receives the signal).
    """
    check_scheduler(scheduler)
    total = len(tasks)
    if client is None and scheduler in ("sync", "threads"):
        cbs: list[Callback] = [_Progress(total, progress, prefix)] if progress else []
        if cancel is not None:
            cbs.append(_Cancel(cancel))
        kwargs: dict[str, Any] = {"scheduler": "synchronous" if scheduler == "sync" else "threads"}
        if scheduler == "threads" and workers:
            kwargs["num_workers"] = workers
        with contextlib.ExitStack() as stack:
            stack.enter_context(dask.config.set(kwargs))
            for cb in cbs:
                stack.enter_context(cb)
            return list(dask.compute(*tasks))
    with contextlib.ExitStack() as stack:
        if client is None:
            client = stack.enter_context(dask_client(scheduler, workers=workers))
        if on_client is not None:
            on_client(client)
        return _run_distributed(client, tasks, progress, cancel)


def _run_distributed(
    client: Any,
    tasks: list[Any],
    progress: Callable[[int, int], None] | None,
    cancel: threading.Event | None = None,
) -> list[Any]:
    from distributed import as_completed

    total = len(tasks)
    resources = _gpu_resources(client)
    futures = client.compute(tasks, retries=3, resources=resources)
    try:
        pending = as_completed(futures)
        done = 0
        while not pending.is_empty():
            if cancel is not None and cancel.is_set():
                raise KeyboardInterrupt
            batch = pending.next_batch(block=cancel is None)
            if not batch:  # look again soon: has the batch been interrupted?
                time.sleep(0.2)
            for _ in batch:
                done += 1
                if progress:
                    progress(done, total)
        return list(client.gather(futures))
    except BaseException:
        client.cancel(futures)
        raise


def _gpu_resources(client: Any) -> dict[str, int] | None:
    info = client.scheduler_info()
    workers = info.get("workers", {}).values()
    if any(w.get("resources", {}).get("GPU") for w in workers):
        return {"GPU": 1}
    return None


def _make_probe() -> Callable[[str, str], str | None]:
    # A closure is pickled by value, so it reaches workers even where geoseg is missing.
    def probe(scene: str, bundle: str) -> str | None:
        import importlib
        import os

        for mod in ("geoseg", "torch", "segmentation_models_pytorch", "rasterio", "scipy"):
            try:
                importlib.import_module(mod)
            except Exception as exc:
                return (
                    f"cannot import {mod} ({exc.__class__.__name__}: {exc}): install geoseg "
                    "and its dependencies in the workers' environment"
                )
        import rasterio

        try:
            with rasterio.open(scene) as src:
                src.read(1, window=((0, 1), (0, 1)))
        except Exception as exc:
            msg = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            return (
                f"cannot read the input {scene} ({msg}): put it on storage every worker "
                "can read (a shared filesystem, or a GDAL URL such as /vsis3/ or https://)"
            )
        if not os.path.isfile(os.path.join(bundle, "bundle.json")):
            return f"cannot see the model bundle {bundle}: put it on shared storage"
        return None

    return probe


def check_workers(client: Any, scene: str, bundle: str) -> None:
    """Ask every worker whether it can run geoseg on ``scene`` with ``bundle``.

    Raises
    ------
    ClusterError
        The cluster has no workers, or a worker lacks geoseg or a dependency, or cannot
        read the scene or the bundle; the message names the worker and the fix.
    """
    workers = client.scheduler_info().get("workers", {})
    if not workers:
        raise ClusterError(
            f"the Dask cluster at {client.scheduler.address} has no workers: start some with "
            "'dask worker ADDRESS'"
        )
    try:
        answers = client.run(_make_probe(), scene, bundle)
    except Exception as exc:
        raise ClusterError(
            f"cannot run on the Dask workers ({exc.__class__.__name__}: {exc}): check that they "
            "run the same Python and geoseg version as this client"
        ) from None
    for worker, problem in sorted(answers.items()):
        if problem:
            raise ClusterError(f"worker {worker}: {problem}")
