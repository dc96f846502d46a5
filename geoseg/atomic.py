"""Atomic publication of output directories: build in a temporary sibling, then rename."""

from __future__ import annotations

import contextlib
import functools
import glob
import inspect
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from geoseg.errors import OutputBusyError, OutputExistsError, OutputNotWritableError
from geoseg.raster import is_remote

F = TypeVar("F", bound=Callable[..., Any])

#: Files that mark a folder as one geoseg wrote (``--overwrite`` replaces only those):
#: the marker every output folder gets (it lists the files written, so that a file
#: added later is not deleted with them), and what earlier versions' outputs hold.
MARKER = ".geoseg-output"
_EARLIER_OUTPUTS = (
    ("run.json", "labels.tif"),  # predict
    ("bundle.json", "weights.safetensors"),  # train, calibrate
    ("metrics.json", "metrics.md"),  # evaluate
)

#: The kinds of output folder, by the file that tells each (an earlier version's too):
#: ``--overwrite`` replaces an output only with one of the same kind, so that a merge
#: or a report sent to the wrong path does not delete a trained bundle.
OUTPUT_KINDS = {
    "map": ("labels.tif", "a label map"),  # predict, merge, a batch's scenes
    "bundle": ("bundle.json", "a model bundle"),  # train, calibrate
    "report": ("metrics.json", "an evaluation report"),  # evaluate
    "change": ("change.json", "a change report"),  # change
    "zonal": ("zonal.json", "a table of class areas per zone"),  # zonal
}


#: A batch's ``--out`` folder: its marker, and its summary files (earlier versions' batch
#: folders have no marker). Such a folder may hold other files too (a batch writes into
#: any folder): it is never replaced whole, and its summary only by a batch.
BATCH_MARKER = ".geoseg-batch"
BATCH_SUMMARY = ("summary.csv", "summary.md", "summary.json")


#: Files GIS software puts beside a file it opens (GDAL's statistics and overviews,
#: SQLite's journals; a Shapefile's indexes and metadata, beside its stem): they belong
#: to that file, so ``--overwrite`` replaces them with it.
_SIDECARS_OF_NAME = (
    ".aux.xml", ".ovr", ".msk", "-wal", "-shm", "-journal", ".xml", ".vat.dbf", ".vat.cpg"
)  # fmt: skip
_SIDECARS_OF_STEM = (
    ".aux", ".rrd", ".qix", ".sbn", ".sbx", ".fbn", ".fbx", ".ain", ".aih", ".qpj",
    ".shp.xml", ".shp.aux.xml",
)  # fmt: skip
#: What file browsers and network file systems leave in any folder they show.
_OS_FILES = (".DS_Store", "Thumbs.db", "desktop.ini")
_OS_PREFIXES = ("._", ".nfs", "~$")


def _manifest(folder: Path) -> set[str]:
    """The files geoseg wrote into ``folder`` (relative POSIX paths), from its marker.

    Empty for an earlier version's output, whose marker lists nothing.
    """
    try:
        text = (folder / MARKER).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return set()
    return {line for line in text.splitlines() if line}


def foreign_files(folder: Path) -> list[str]:
    """Files in a geoseg output ``folder`` that its run did not write (e.g. a user's notes).

    Known GIS sidecars of the run's files, and what file browsers leave (``.DS_Store``,
    ``Thumbs.db``...), do not count. Nothing is foreign in an earlier
    version's output, whose marker lists no files.
    """
    ours = _manifest(folder)
    if not ours:
        return []
    names = {Path(f).name for f in ours}
    stems = {Path(f).stem for f in ours}
    foreign = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_dir() or rel == MARKER or rel in ours:
            continue
        name = path.name
        if name in _OS_FILES or name.startswith(_OS_PREFIXES):
            continue
        if any(name == n + s for n in names for s in _SIDECARS_OF_NAME):
            continue
        if any(name == n + s for n in stems for s in _SIDECARS_OF_STEM):
            continue
        foreign.append(rel)
    return foreign


def _written_by_geoseg(folder: Path) -> bool:
    """Whether ``folder`` holds geoseg's marker, or the files of an earlier version's output."""
    if (folder / MARKER).exists():
        return True
    return any(all((folder / f).exists() for f in files) for files in _EARLIER_OUTPUTS)


def output_kind(folder: Path) -> str | None:
    """The kind of geoseg output ``folder`` is (a key of :data:`OUTPUT_KINDS`), if any."""
    return next((k for k, (f, _) in OUTPUT_KINDS.items() if (folder / f).is_file()), None)


def _batch_folder(folder: Path) -> bool:
    """Whether ``folder`` is a batch's output folder (its marker, or an earlier summary)."""
    return (folder / BATCH_MARKER).exists() or all((folder / f).exists() for f in BATCH_SUMMARY)


def check_batch_folder(folder: Path, *, overwrite: bool, resume: bool) -> None:
    """Refuse a batch output folder whose files a batch would replace without leave.

    A batch writes one output folder per scene and the summary files into ``folder``.
    A folder that holds summary files geoseg did not write is refused (they would be
    replaced); so is an earlier batch's folder without ``resume`` (keep its finished
    scenes) or ``overwrite`` (redo them). Any other folder, or a new one, is fine.

    Raises
    ------
    OutputExistsError
        The message says why and what to do.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputExistsError(
            f"{folder}: is a file, not a folder for the scenes' outputs: choose another path"
        )
    if not folder.exists():
        return
    ours = _batch_folder(folder)
    clash = [f for f in BATCH_SUMMARY if (folder / f).exists()]
    if clash and not ours:
        raise OutputExistsError(
            f"{folder}: holds {', '.join(clash)}, which geoseg did not write and a batch "
            "would replace: choose another output folder"
        )
    if ours and clash and not (resume or overwrite):
        raise OutputExistsError(
            f"{folder}: holds an earlier batch: pass --resume to keep its finished scenes "
            "(and do the others), or --overwrite to do them all again"
        )


def check_not_input(dest: Path, inputs: tuple[str | Path, ...]) -> None:
    """Refuse an output path that is, or is a folder holding, one of ``inputs``.

    Symlinks and ``..`` are followed, as a removal of ``dest`` would follow them.

    Raises
    ------
    OutputExistsError
        Naming the input and asking for another output path.
    """
    target = Path(dest).resolve()
    for item in inputs:
        if is_remote(item):
            continue
        path = Path(item).resolve()
        if path == target or target in path.parents:
            raise OutputExistsError(
                f"{dest}: the output path {'is' if path == target else 'holds'} the "
                f"input {item}: choose another output path"
            )


def check_writable(
    dest: Path,
    *,
    overwrite: bool,
    kind: str = "folder",
    inputs: tuple[str | Path, ...] = (),
    output: str | None = None,
) -> None:
    """Refuse to touch an existing ``dest`` unless ``overwrite``, and never lose data.

    With ``overwrite``, an existing ``dest`` is replaced only if it is an output of the
    same ``kind`` ("folder" or "file"), a folder only if geoseg wrote it (its marker, or
    the files of an earlier version's output) or it is empty, and never if it is or
    holds one of ``inputs`` (the scene, the bundle), symlinks followed. ``output`` (a
    key of :data:`OUTPUT_KINDS`): what the run writes; a folder of another kind of
    output is not replaced.

    Raises
    ------
    OutputExistsError
        ``dest`` exists and may not be replaced; the message says why and what to do.
    """
    dest = Path(dest)
    for parent in list(dest.absolute().parents)[::-1]:
        if parent.exists() and not parent.is_dir():
            raise OutputExistsError(
                f"{dest}: {parent} is a file, so the output cannot go below it: choose "
                "another output path"
            )
    check_not_input(dest, inputs)
    _check_can_write(dest)
    if not dest.exists() and not dest.is_symlink():
        return
    # what --overwrite would refuse is said at once, without or with it: advice to pass
    # it would only lead to the refusal
    if (refusal := _replace_refusal(dest, kind, output)) is not None:
        raise OutputExistsError(refusal)
    if not overwrite:
        raise OutputExistsError(f"{dest}: output exists: pass --overwrite to replace it")


def _check_can_write(dest: Path) -> None:
    """Refuse ``dest`` at once, not after the work, where no file can be created.

    The folder tried is ``dest``'s, or the nearest one above it that exists (geoseg
    creates the rest).

    Raises
    ------
    OutputNotWritableError
        A file cannot be created there (read-only folder or file system, permissions).
    """
    where = next((p for p in Path(dest).absolute().parents if p.is_dir()), None)
    if where is None:
        return
    try:
        fd, probe = tempfile.mkstemp(prefix=".geoseg-probe-", dir=where)
    except OSError as exc:
        raise OutputNotWritableError(
            f"{dest}: cannot write in {where} ({exc.strerror or exc}): choose another "
            "output path, or make the folder writable"
        ) from None
    os.close(fd)
    os.unlink(probe)


def _replace_refusal(dest: Path, kind: str, output: str | None = None) -> str | None:
    """Why an existing ``dest`` may not be replaced even with ``--overwrite``, or ``None``."""
    if kind == "file" and dest.is_dir():
        return f"{dest}: is a folder, not an output file: remove it or choose another path"
    if kind != "folder":
        return None
    if not dest.is_dir():
        return f"{dest}: is a file, not an output folder: remove it or choose another path"
    if _batch_folder(dest):
        return (
            f"{dest}: is the output folder of a geoseg batch, which may hold other files: "
            "--overwrite does not replace it: choose another output path"
        )
    if any(dest.iterdir()) and not _written_by_geoseg(dest):
        return (
            f"{dest}: the folder exists and geoseg did not write it, so --overwrite "
            "does not replace it: remove it yourself or choose another output path"
        )
    have = output_kind(dest)
    if output is not None and have is not None and have != output:
        file, what = OUTPUT_KINDS[have]
        return (
            f"{dest}: is {what} ({file}), and this run writes {OUTPUT_KINDS[output][1]}: "
            "--overwrite replaces only an output of the same kind: choose another output "
            "path, or remove it yourself"
        )
    foreign = foreign_files(dest)
    if foreign:
        shown = ", ".join(foreign[:5]) + (
            f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        )
        return (
            f"{dest}: holds files its geoseg run did not write ({shown}), which "
            "--overwrite would delete with the old output: move them out, or choose "
            "another output path"
        )
    return None


#: The signals held by :func:`interrupts_deferred`: Ctrl-C and ``kill`` (SIGTERM).
HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) and SIGTERM until the block is done, then deliver them.

    For the few steps that must not stop half-way: swapping an output into place
    (between its two renames the destination does not exist) and removing a failed
    run's temporary folder (a second Ctrl-C during the clean-up of a first one left it
    half-removed). A signal that came meanwhile is raised again once the handlers in
    place before are back (a ``KeyboardInterrupt``, geoseg's ``Terminated``, or the
    default action). Outside the main thread, where signals are not delivered, it does
    nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, _: caught.append(signum)) for sig in HELD_SIGNALS
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for signum in dict.fromkeys(caught):
        signal.raise_signal(signum)


def remove_tree(path: Path) -> None:
    """Remove a folder whole, a Ctrl-C meanwhile held until it is gone."""
    with interrupts_deferred():
        shutil.rmtree(path, ignore_errors=True)


def replace_dir(src: Path, dst: Path) -> None:
    """Move directory ``src`` to ``dst``, replacing an existing ``dst`` as late as possible."""
    old = None
    # dst is missing between the two renames, and the old one is removed after them
    with interrupts_deferred():
        if dst.exists() or dst.is_symlink():
            old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
            os.replace(dst, old)
        os.replace(src, dst)
        if old is not None:
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)


def _host() -> str:
    """The machine's name as temporary folders carry it (short: names have a limit)."""
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname())[:32]


def _temporary_prefix(dest: Path) -> str:
    """``.NAME.tmp-HOST-PID-``: whose run a temporary output folder is."""
    return f".{dest.name}.tmp-{_host()}-{os.getpid()}-"


def temporary_dir(dest: Path) -> Path:
    """A new temporary folder beside ``dest`` to build it in (see :func:`atomic_dir`).

    The temporary folders of ``dest`` that runs killed on this machine left are removed
    first (:func:`remove_dead_temporaries`).
    """
    dest = Path(dest).absolute()
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temporaries(dest)
    return Path(tempfile.mkdtemp(prefix=_temporary_prefix(dest), dir=dest.parent))


def _alive(pid: int) -> bool:
    if os.name == "nt":  # signal 0 is CTRL_C_EVENT there: never test, never remove
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def remove_dead_temporaries(dest: Path) -> list[Path]:
    """Remove the temporary folders of ``dest`` left by runs killed on this machine.

    A run that fails or is interrupted removes its own; one killed outright (SIGKILL,
    out of memory, a power cut) cannot. A temporary folder is named after its host and
    process (:func:`_temporary_prefix`), so one whose process no longer runs here is
    debris; those of other machines (a shared file system) and of live runs are kept.

    Returns
    -------
    list of Path
        The folders removed.
    """
    host = _host()
    start = f".{dest.name}.tmp-"
    removed = []
    for path in dest.parent.glob(glob.escape(start) + "*"):
        found = re.fullmatch(r"(.+)-(\d+)-[a-z0-9_]+", path.name[len(start) :])
        if found is None or found[1] != host or _alive(int(found[2])) or not path.is_dir():
            continue
        remove_tree(path)
        removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_dir(dest: Path, *, overwrite: bool = False, output: str | None = None) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``dest`` when the block succeeds.

    On any error the temporary directory is removed and ``dest`` is left untouched.
    ``output``: the kind of output written (see :func:`check_writable`).
    """
    dest = Path(dest).absolute()  # "." has no name to build the temporary one from
    check_writable(dest, overwrite=overwrite, output=output)
    tmp = temporary_dir(dest)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; outputs get the usual permissions
    try:
        yield tmp
        written = sorted(f.relative_to(tmp).as_posix() for f in tmp.rglob("*") if f.is_file())
        (tmp / MARKER).write_text("".join(f"{f}\n" for f in written), encoding="utf-8")
        for f in tmp.rglob("*"):  # some writers (safetensors) create 0600 files
            if f.is_file():
                os.chmod(f, 0o666 & ~umask)
        replace_dir(tmp, dest)
    except BaseException:
        remove_tree(tmp)
        raise


#: The suffix of the lock file beside an output (``.NAME.geoseg-lock``) while a run writes it.
LOCK_SUFFIX = ".geoseg-lock"
_HELD: dict[str, tuple[int, int]] = {}  # lock file -> (thread holding it, depth)
_HELD_LOCK = threading.Lock()


@contextlib.contextmanager
def output_lock(dest: str | Path) -> Iterator[None]:
    """Hold ``dest`` for this run: another run writing it now is refused at once.

    Two runs to one output would share its temporary folders and replace each other's
    finished output (each checked, at its start, that there was none). The lock is an
    exclusive ``flock`` on ``.NAME.geoseg-lock`` beside ``dest`` (folders above it are
    created, and removed again if still empty at the end), which the system releases when
    a run dies, so a killed run never blocks the next; the file is removed when the run
    ends. It holds across processes and machines that share the file system where it
    supports locks, and across threads of one process; the same thread may take it again
    (a job inside a job). Remote outputs and Windows are not locked.

    Raises
    ------
    OutputBusyError
        Another run holds ``dest``; the message names it (process and machine).
    """
    if is_remote(dest) or os.name == "nt":
        yield
        return
    dest = Path(dest).absolute()
    made = _make_parents(dest)
    parent = dest.parent.resolve() if dest.parent.exists() else dest.parent  # one lock per folder
    path = parent / f".{dest.name}{LOCK_SUFFIX}"
    key = str(path.resolve())
    me = threading.get_ident()
    with _HELD_LOCK:
        owner, depth = _HELD.get(key, (None, 0))
        if owner is not None and owner != me:
            _remove_empty(made)
            raise OutputBusyError(
                f"{dest}: another run in this process is writing this output: wait for it "
                "to end, or choose another output path"
            )
        if owner == me:
            _HELD[key] = (me, depth + 1)
    if owner == me:  # a job inside a job of this thread
        try:
            yield
        finally:
            with _HELD_LOCK:
                _HELD[key] = (me, depth)
        return
    fd = _acquire(path, dest, made)
    if fd is None:  # no lock here: see _acquire
        try:
            yield
        finally:
            _remove_empty(made)
        return
    try:
        with _HELD_LOCK:
            _HELD[key] = (me, 1)
        yield
    finally:
        with _HELD_LOCK:
            _HELD.pop(key, None)
        with contextlib.suppress(OSError):
            path.unlink()  # before the lock goes: a run waiting on this file retries
        os.close(fd)
        _remove_empty(made)


def _acquire(path: Path, dest: Path, made: list[Path]) -> int | None:
    """An open descriptor of ``path`` holding its exclusive lock.

    ``None`` where there is no lock to take: no file can be made there (the output
    checks say why), or the file system has no locks (Lustre without ``flock``, NFS
    without its lock daemon): the run goes on unlocked, as before locks.
    """
    import errno
    import fcntl

    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    fd = -1
                    with contextlib.suppress(OSError):
                        path.unlink()
                    return None
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
                os.close(fd)
                fd = -1
                _remove_empty(made)
                raise OutputBusyError(
                    f"{dest}: another geoseg run{f' ({holder})' if holder else ''} is writing "
                    "this output: wait for it to end, or choose another output path"
                ) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:  # else the holder removed the file as this run opened it: again
                when = time.strftime("%Y-%m-%d %H:%M:%S")
                line = f"PID {os.getpid()} on {socket.gethostname()}, since {when}"
                with contextlib.suppress(OSError):  # for messages only (a full disk...)
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, line.encode(), 0)
                return fd
            os.close(fd)
            fd = -1
        except BaseException:
            if fd >= 0:
                os.close(fd)
            raise


def _make_parents(dest: Path) -> list[Path]:
    """Create the missing folders above ``dest``; return those created, deepest first."""
    missing = [p for p in dest.parents if not p.exists()]
    made = []
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        except OSError:
            break  # the output checks say why the folder cannot be made
        made.append(folder)
    return made[::-1]


def _remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) that are still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def locks_output(param: str) -> Callable[[F], F]:
    """Run the decorated job holding its output, the argument ``param`` (see :func:`output_lock`).

    An output of ``None`` (a job that writes nothing) is not locked.
    """

    def wrap(func: F) -> F:
        signature = inspect.signature(func)

        @functools.wraps(func)
        def call(*args: Any, **kwargs: Any) -> Any:
            dest = signature.bind_partial(*args, **kwargs).arguments.get(param)
            if dest is None:
                return func(*args, **kwargs)
            with output_lock(dest):
                return func(*args, **kwargs)

        return call  # type: ignore[return-value]

    return wrap
