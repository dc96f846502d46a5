"""Running task lists on a Dask scheduler: sync, threads, a local cluster or a remote one.

``scheduler`` is one of ``sync`` (debugging), ``threads`` (the threaded scheduler in
this process), ``local`` (a :class:`distributed.LocalCluster` of worker processes
sized to the machine) or a scheduler address ``tcp://HOST:PORT``. Settings are
scoped with ``dask.config.set``; nothing global is changed.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dask
from dask.callbacks import Callback

from geoseg.allocator import worker_environment
from geoseg.devices import available_cpus
from geoseg.errors import ConfigError, GeosegError, read_yaml

try:  # dask's own pool: it passes contextvars (warnings capture, config) to its threads
    from dask.threaded import ContextAwareThreadPoolExecutor as ThreadPool
except ImportError:  # older dask
    from concurrent.futures import ThreadPoolExecutor as ThreadPool  # type: ignore[assignment]

log = logging.getLogger(__name__)

SCHEDULERS = ("sync", "threads", "local")


class ClusterError(GeosegError, ConnectionError):
    """A Dask scheduler cannot be reached or used."""


def check_scheduler(scheduler: str, also: tuple[str, ...] = ()) -> str:
    """Validate a scheduler name or address.

    ``also``: names a command adds to the common ones (vectorize's ``processes``).
    """
    names = (*also, *SCHEDULERS)
    if scheduler in names or scheduler.startswith(("tcp://", "tls://", "inproc://")):
        return scheduler
    raise ConfigError(
        f"unknown scheduler {scheduler!r}: use one of {', '.join(names)} or tcp://HOST:PORT"
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
    if scheduler == "local":
        from distributed import Client, LocalCluster

        # the allocator settings must be in a worker's environment when it starts
        spawn_env = dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {}
        environ = {**spawn_env, **worker_environment()}
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
            with _workers_ignore_ctrl_c():  # only while the workers start
                cluster = LocalCluster(
                    n_workers=workers or 1,
                    threads_per_worker=threads_per_worker,
                    processes=True,
                    dashboard_address=":0",
                    silence_logs=logging.ERROR,
                )
            # the levels are restored once the cluster is closed (outermost: left last)
            with _kept_log_levels(), cluster, Client(cluster) as client:
                try:
                    yield client
                except BaseException:
                    _quiet_teardown()
                    raise
        return
    client = _connect(scheduler)
    try:
        yield client
    finally:
        client.close()


#: The loggers a cluster's teardown talks through.
_TEARDOWN_LOGGERS = ("distributed", "asyncio", "tornado")


@contextlib.contextmanager
def _kept_log_levels() -> Iterator[None]:
    """Restore the levels of :data:`_TEARDOWN_LOGGERS` on exit (see :func:`_quiet_teardown`)."""
    levels = {n: logging.getLogger(n).level for n in _TEARDOWN_LOGGERS}
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _quiet_teardown() -> None:
    """Silence the cluster's closing chatter after an interrupted or failed run.

    Closing a cluster whose tasks were cancelled mid-flight can log a closed connection's
    traceback (distributed's, or asyncio's "Task exception was never retrieved") under
    the one-line message the user gets; the run's own error is what matters then.
    """
    for name in _TEARDOWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)


@contextlib.contextmanager
def _workers_ignore_ctrl_c() -> Iterator[None]:
    """Start worker processes that ignore SIGINT: Ctrl-C goes to the whole process group.

    This process stops the run and closes the cluster; workers that also got the signal
    printed a traceback each (dozens of lines above the one-line message). An ignored
    signal stays ignored in a spawned process. Only while the cluster starts.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


#: Seconds to wait for a scheduler's handshake: the client's own timeout does not bound
#: an address that accepts the connection and never answers like a Dask scheduler.
CONNECT_TIMEOUT_S = 30.0


def _connect(address: str) -> Any:
    """A ``Client`` connected to ``address``, or :class:`ClusterError` within a deadline."""
    from distributed import Client

    box: dict[str, Any] = {}
    lock = threading.Lock()

    def connect() -> None:
        failed = False
        try:
            # not the process's default client: one that failed to connect stayed the
            # default, and a later plain dask compute waited on it for ever
            client = Client(address, timeout="10s", set_as_default=False)
        except BaseException as exc:  # reported below, in the caller
            # the type, not the exception: its traceback holds the half-made client,
            # which must be collected here (see _collect_failed_client)
            box["error"] = type(exc)
            failed = True
        if failed:
            _collect_failed_client()
            return
        with lock:
            abandoned = box.setdefault("client", client) is not client
        if abandoned:  # connected after the caller gave up: closed here, not by __del__
            client.close()

    thread = threading.Thread(target=connect, name="geoseg-connect", daemon=True)
    thread.start()
    try:
        thread.join(CONNECT_TIMEOUT_S)
    except BaseException:  # Ctrl-C while connecting: a client made later is closed there
        with lock:
            box.setdefault("client", None)
        raise
    with lock:
        late = box.setdefault("client", None) is None and "error" not in box
        late = late and thread.is_alive()
    if late:
        raise ClusterError(
            f"{address} accepted the connection but did not answer as a Dask scheduler within "
            f"{CONNECT_TIMEOUT_S:.0f} s: check the address (the scheduler's port, 8786 by "
            "default, not its dashboard's)"
        )
    if "error" in box:
        kind = box["error"]
        if issubclass(kind, OSError | TimeoutError):
            raise ClusterError(
                f"cannot reach Dask scheduler {address} ({kind.__name__}): start it with "
                "'dask scheduler' or check the address and firewall"
            )
        raise ClusterError(
            f"{address} did not answer as a Dask scheduler ({kind.__name__}): check the "
            "address (the scheduler's port, 8786 by default, not its dashboard's)"
        )
    return box["client"]


def _collect_failed_client() -> None:
    """Collect a ``Client`` that failed to start, now, in the thread that made it.

    A client whose handshake fails with anything but an ``OSError`` (a web server's
    reply, say) is left half-open by distributed. Its ``__del__`` closes it, taking a
    process-wide lock (``distributed.utils.LoopRunner._lock``); when the garbage
    collector happened to run it in a thread already holding that lock (one starting
    another client), that thread deadlocked, and every later client in the process
    waited for ever. Collected here, where no lock is held, it closes harmlessly.
    """
    gc.collect()


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
        Threads (``threads``; one runs the tasks in the calling thread) or worker
        processes (``local``).
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
        # the scheduler, pool and callbacks go to this compute alone: dask's config and
        # its active callbacks are process-wide, and a batch runs scenes in threads
        threads = 1 if scheduler == "sync" else workers or available_cpus()
        # One block thread is this thread: torch's OpenMP runtime (libgomp) counts the
        # threads of every thread's team, and once they outnumber the cores it stops
        # spin-waiting between parallel regions. A block thread beside a caller that
        # has built or run the network (its team stays) then wakes its team from sleep
        # for every small operation: decoding took twice as long and a 3072² scene
        # 10 % longer (README, Speed and memory).
        kwargs: dict[str, Any] = {
            "scheduler": "synchronous" if threads == 1 else "threads",
            "callbacks": [cb._callback for cb in cbs],
        }
        if threads == 1:
            return list(dask.compute(*tasks, **kwargs))
        # our own pool, so that an interrupted run waits for the blocks in flight (and
        # drops the queued ones) before its caller removes their folder: a block thread
        # still running would write into it afterwards
        pool = ThreadPool(threads)
        try:
            return list(dask.compute(*tasks, pool=pool, **kwargs))
        except KeyboardInterrupt:
            log.warning(
                "stopping: waiting for the blocks in flight to finish (at most one per "
                "thread), so that nothing half-written is left"
            )
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
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
        # each result is fetched as its task finishes, not by one gather at the end: a
        # worker lost between the last task and that gather took the results in its
        # memory with it, and the gather waited for their recomputation with no worker
        # left and no watch (a hang)
        pending = as_completed(futures, loop=client.loop, with_results=True)
        results: dict[str, Any] = {}
        done = 0
        watch = _WorkerWatch(client, total)
        while not pending.is_empty():
            if cancel is not None and cancel.is_set():
                raise KeyboardInterrupt
            batch = pending.next_batch(block=False)
            if not batch:  # look again soon: interrupted? any workers left?
                time.sleep(0.2)
                watch.check(total - done)
            for future, result in batch:
                if future.status == "error":
                    _typ, exc, tb = result
                    raise exc.with_traceback(tb)
                if future.status == "cancelled":
                    raise ClusterError(
                        f"the Dask cluster at {client.scheduler.address} cancelled task "
                        f"{future.key}: another client or the scheduler cancelled this run"
                    )
                results[future.key] = result
                done += 1
                if progress:
                    progress(done, total)
        return [results[f.key] for f in futures]
    except BaseException:
        client.cancel(futures)
        raise


#: Seconds a cluster may have no worker at all, with tasks left, before the run fails
#: (a worker restarted by its nanny, or a replacement job, is back well within this);
#: also how long every worker may stay paused at its memory limit with no task finishing.
WORKER_LOSS_S = 120.0
#: Seconds every worker may stay paused, running nothing, before a warning.
WORKER_PAUSE_WARN_S = 20.0
#: Seconds between looks at every worker's state (a few hundred bytes per worker).
WORKER_POLL_S = 10.0
#: Seconds between asking the scheduler whether any worker is left.
WORKER_CHECK_S = 2.0


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


class _WorkerWatch:
    """Fail a run whose cluster cannot go on, instead of waiting forever.

    Two ways a distributed run stops with no error from Dask: every worker is gone
    (killed for memory, its job ended), or every worker is *paused*: Dask gives no task
    to a worker whose process memory passed its pause fraction (80 % of its memory
    limit by default), and a worker that holds the network and a tile's activations
    may never come back under it.
    """

    def __init__(self, client: Any, total: int) -> None:
        self.client, self.total = client, total
        self.since: float | None = None
        self.paused_since: float | None = None
        self.warned = False
        self.last = self.last_full = 0.0
        self.left = total

    def check(self, left: int) -> None:
        now = time.monotonic()
        if now - self.last < WORKER_CHECK_S:  # asking the scheduler is a round trip
            return
        self.last = now
        if left != self.left:  # a task finished: the run is moving
            self.left, self.paused_since, self.warned = left, None, False
        full = now - self.last_full >= WORKER_POLL_S
        workers = cluster_workers(self.client, -1 if full else 1)
        if workers:
            self.since = None
            if full:
                self.last_full = now
                self._check_paused(list(workers.values()), left, now)
            return
        self.since = self.since or now
        if now - self.since > WORKER_LOSS_S:
            raise ClusterError(
                f"the Dask cluster at {self.client.scheduler.address} has had no workers for "
                f"{WORKER_LOSS_S:.0f} s with {left} of {self.total} tasks left: start workers "
                "again (their logs say why they stopped, often a memory limit), then re-run "
                "with --resume to keep the finished blocks"
            )

    def _check_paused(self, workers: list[dict[str, Any]], left: int, now: float) -> None:
        # a paused worker still finishes the tasks it runs: only idle ones are stuck
        running = any(
            w.get("metrics", {}).get("task_counts", {}).get("executing", 0) for w in workers
        )
        if running or any(w.get("status") != "paused" for w in workers):
            self.paused_since, self.warned = None, False
            return
        self.paused_since = self.paused_since or now
        paused = now - self.paused_since
        if paused <= WORKER_PAUSE_WARN_S:
            return
        w = max(workers, key=lambda w: w.get("metrics", {}).get("memory", 0))
        used, limit = w.get("metrics", {}).get("memory", 0), w.get("memory_limit") or 0
        state = (
            f"every worker of the Dask cluster at {self.client.scheduler.address} is paused "
            f"at its memory limit, running nothing (worker {w.get('name', '?')}: "
            f"{_gib(used)} used of {_gib(limit)})"
        )
        advice = (
            f"give each worker more than its {_gib(limit)} (dask worker --memory-limit, or "
            "your cluster's memory setting; a worker process takes 1.5-2 GiB at the default "
            "tile size) or use a smaller --tile-size"
        )
        if paused > WORKER_LOSS_S:
            raise ClusterError(
                f"{state} for {WORKER_LOSS_S:.0f} s with {left} of {self.total} tasks left: "
                f"{advice}, then re-run with --resume to keep the finished blocks"
            )
        if not self.warned:
            self.warned = True
            log.warning("%s: the run waits for memory to be freed; %s", state, advice)


def cluster_workers(client: Any, n: int = -1) -> dict[str, dict[str, Any]]:
    """The scheduler's record of its workers (at most ``n``; ``-1``: all), asked now.

    Not ``Client.scheduler_info()``: that returns the client's shared copy, which the
    client's own periodic refresh replaces with one that lists no worker, so a read
    could come back empty with workers connected (seen about once in 800 calls).
    """
    info = client.sync(client.scheduler.identity, n_workers=n)
    return dict(info.get("workers", {}))


def _gpu_resources(client: Any) -> dict[str, int] | None:
    workers = cluster_workers(client).values()
    if any(w.get("resources", {}).get("GPU") for w in workers):
        return {"GPU": 1}
    return None


def _make_probe() -> Callable[[str, str], str | None]:
    # A closure is pickled by value, so it reaches workers even where geoseg is missing.
    def probe(scene: str, bundle: str, out: str | None = None) -> str | None:
        import importlib
        import os
        import tempfile

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
        if out is not None:
            try:
                with tempfile.NamedTemporaryFile(dir=out, prefix=".probe-"):
                    pass
            except OSError as exc:
                return (
                    f"cannot write the blocks into {out} ({exc.strerror or exc}): put the "
                    "output on storage every worker can write (a shared filesystem)"
                )
        return None

    return probe


#: Seconds every worker has to answer the check before the first block (importing torch
#: from a cold network filesystem takes a minute at worst): a worker stuck in a call that
#: never returns would otherwise hold the run before it starts.
PROBE_TIMEOUT_S = 300.0
#: Tries of the check where the broadcast itself fails (a worker left while it ran).
PROBE_ATTEMPTS = 3


def check_workers(
    client: Any,
    scene: str,
    bundle: str,
    out: str | None = None,
    notes: list[str] | None = None,
) -> int:
    """Ask every worker whether it can run geoseg on ``scene`` with ``bundle``.

    ``out``, if given, is the folder the workers write the blocks into (it exists).
    Returns how many workers answered (the cluster the run starts on). Workers lost
    during the check are logged, and said in ``notes`` (a run's warnings) if given.

    Raises
    ------
    ClusterError
        The cluster has no workers, or a worker lacks geoseg or a dependency, or cannot
        read the scene or the bundle, or write into ``out``; the message names the
        worker and the fix.
    """
    workers = cluster_workers(client)
    if not workers:
        raise ClusterError(
            f"the Dask cluster at {client.scheduler.address} has no workers: start some with "
            "'dask worker ADDRESS' (or wait until the cluster's jobs have started)"
        )
    answers: dict[str, Any] = {}
    for attempt in range(PROBE_ATTEMPTS):
        try:
            answers = client.run(
                _make_probe(),
                scene,
                bundle,
                out,
                on_error="return",
                callback_timeout=PROBE_TIMEOUT_S,
            )
            break
        except TimeoutError:
            raise ClusterError(
                f"the Dask workers at {client.scheduler.address} did not answer geoseg's "
                f"check within {PROBE_TIMEOUT_S:.0f} s (it imports torch and reads one pixel "
                "of the input): a worker is stuck or overloaded; check its logs, or restart it"
            ) from None
        except Exception as exc:  # the broadcast itself failed: a worker left mid-way
            if attempt + 1 < PROBE_ATTEMPTS:
                time.sleep(1.0)
                continue
            raise ClusterError(
                f"cannot run on the Dask workers ({exc.__class__.__name__}: {exc}): check "
                "their logs (a worker that died, often at its memory limit) and that they run "
                "the same Python and geoseg version as this client"
            ) from None
    # a worker that died or left during the check (its answer is the error of the lost
    # connection) takes no task of this run: the others do, as Dask re-runs a lost
    # worker's tasks
    failed = {w: a for w, a in answers.items() if isinstance(a, BaseException)}
    # a lost connection (OSError, as distributed's CommClosedError), or a worker the
    # scheduler no longer lists; any other error is the check failing on a live worker
    gone = set(failed) - set(cluster_workers(client)) if failed else set()
    lost = {w: a for w, a in failed.items() if isinstance(a, OSError | TimeoutError) or w in gone}
    for worker, error in sorted(failed.items()):
        if worker not in lost:
            raise ClusterError(
                f"worker {worker}: geoseg's check failed ({error.__class__.__name__}: {error}): "
                "check that it runs the same Python and geoseg version as this client"
            )
    alive = {w: a for w, a in answers.items() if w not in failed}
    if lost:
        first = next(iter(lost.values()))
        note = (
            f"{len(lost)} of {len(answers)} Dask workers were lost during geoseg's check "
            f"({first.__class__.__name__}: {first}); the run went on with the others: check "
            "the lost workers' logs (often a memory limit)"
        )
        log.warning("%s", note)
        if notes is not None:
            notes.append(note)
    if not alive:
        raise ClusterError(
            f"every Dask worker at {client.scheduler.address} was lost during geoseg's check: "
            "check their logs (a worker that died, often at its memory limit)"
        )
    for worker, problem in sorted(alive.items()):
        if problem:
            raise ClusterError(f"worker {worker}: {problem}")
    return len(alive)


def load_jobqueue_settings(path: str | Path, system: str = "slurm") -> dict[str, Any]:
    """The ``jobqueue: {system: ...}`` settings of a dask-jobqueue YAML preset.

    Raises
    ------
    ConfigError
        The file is missing, not YAML, or has no ``jobqueue.<system>`` mapping.
    """
    path = Path(path)
    data = read_yaml(path, "preset")
    settings = (data or {}).get("jobqueue", {}) if isinstance(data, dict) else None
    settings = settings.get(system) if isinstance(settings, dict) else None
    if not isinstance(settings, dict):
        raise ConfigError(
            f"{path}: no 'jobqueue: {system}:' settings: start from configs/cluster/{system}.yaml"
        )
    return settings


def wait_for_workers(address: str, timeout_s: float, n: int = 1) -> int:
    """Wait until the cluster at ``address`` has ``n`` workers; return how many it has.

    Batch-system workers (SLURM, PBS, Kubernetes pods) join when their jobs start,
    which can take minutes after the jobs were submitted.

    Raises
    ------
    ClusterError
        Fewer than ``n`` workers joined within ``timeout_s``.
    """
    with dask_client(address) as client:
        try:
            client.wait_for_workers(n, timeout=timeout_s)
        except TimeoutError:
            have = len(cluster_workers(client))
            raise ClusterError(
                f"the Dask cluster at {address} has {have} of {n} workers after "
                f"{timeout_s:.0f} s: check that the jobs started (squeue, kubectl get pods), "
                "or wait longer"
            ) from None
        return len(cluster_workers(client))
