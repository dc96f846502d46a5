"""Many scenes, one cluster: manifests, concurrent scene jobs and a summary table.

A manifest lists the scenes: a text file (one path per line, ``#`` comments), a CSV
(a ``scene`` or ``path`` column, optional ``out``, ``mask`` and ``mask_exclude``), a
YAML list (paths or ``{scene, out, mask, mask_exclude}`` mappings), or a glob pattern.
A scene's ``mask`` is a raster of pixels to leave out (clouds: see
:mod:`geoseg.scene_mask`). Each scene gets its own output
directory under the batch output (its file stem, or ``out``), written atomically by
:func:`geoseg.workflow.run_predict`; scenes run concurrently on one shared Dask
client. A failing scene is recorded and the others go on. ``summary.csv``,
``summary.md`` and ``summary.json`` list scene, status, time, polygons, the input-range
warning (see :func:`geoseg.workflow.check_input`) and area per
class of each level; they list every scene from the start and are rewritten as each scene
starts and ends, so an interrupted or killed batch still says what it finished.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import io
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geoseg.atomic import BATCH_MARKER, check_batch_folder, locks_output
from geoseg.bundle import bundle_hash
from geoseg.errors import ConfigError, GeosegError, OutputExistsError, read_yaml
from geoseg.infer import InferOptions
from geoseg.raster import is_remote
from geoseg.vectorize import VectorizeOptions

log = logging.getLogger(__name__)

_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class BatchItem:
    """One scene of a batch, the name of its output directory, and its mask, if any.

    ``mask_exclude`` is the mask's rule (see :meth:`geoseg.scene_mask.MaskRule.parse`);
    ``None`` takes the batch's (``geoseg batch --mask-exclude``).
    """

    scene: str
    name: str
    mask: str | None = None
    mask_exclude: str | None = None


@dataclass
class SceneResult:
    """What happened to one scene."""

    scene: str
    out: str
    # "done", "kept" (existing output, --resume), "failed", or, in a summary written
    # while the batch runs or after it was stopped, "running", "interrupted" or
    # "not started"
    status: str
    seconds: float = 0.0
    error: str = ""
    warning: str = ""
    polygons: int | None = None
    area_m2: dict[str, float] = field(default_factory=dict)  # per coarse class
    fine_area_m2: dict[str, float] = field(default_factory=dict)
    masked_share: float | None = None  # of the scene, left out by its mask


#: Statuses of a scene whose output stands.
DONE = ("done", "kept")
RUNNING, INTERRUPTED, NOT_STARTED = "running", "interrupted", "not started"

_RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img")


def parse_manifest(manifest: str | Path) -> list[BatchItem]:
    """Read a manifest (text, CSV, YAML or a glob pattern) into batch items.

    Relative paths are resolved against the manifest's folder. A raster file (``.tif``
    and the like) is a batch of that one scene.

    Raises
    ------
    ConfigError
        The manifest is missing, empty, malformed, or two scenes share an output name.
    """
    text = str(manifest)
    path = Path(text)
    if not path.exists() and _GLOB_CHARS & set(text):
        scenes = sorted(glob.glob(text, recursive=True))
        if not scenes:
            raise ConfigError(f"{text}: the glob pattern matches no file")
        items = [BatchItem(s, Path(s).stem) for s in scenes]
        return _unique(items, text, named=False)
    if path.is_dir():
        raise ConfigError(
            f"{path}: a folder, not a manifest: pass a list file, or a glob pattern in quotes "
            f"such as '{path / '*.tif'}'"
        )
    if not path.is_file():
        raise ConfigError(f"{path}: manifest not found: pass a list file or a glob pattern")
    base = path.parent
    suffix = path.suffix.lower()
    if suffix in _RASTER_SUFFIXES:  # a scene itself: a batch of one
        return [BatchItem(str(path), path.stem)]
    try:
        path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(
            f"{path}: not a text, CSV or YAML manifest (nor a .tif scene): list the scenes "
            "one per line, or pass a glob pattern in quotes"
        ) from None
    raw: list[tuple[str, str | None, str | None, str | None]]
    if suffix in (".yaml", ".yml"):
        data = read_yaml(path, "manifest")
        if not isinstance(data, list):
            raise ConfigError(
                f"{path}: a YAML manifest is a list, one item per scene: a path "
                "(- scenes/a.tif) or a mapping (- {scene: scenes/a.tif, out: a})"
            )
        raw = []
        for i, entry in enumerate(data):
            if isinstance(entry, str):
                raw.append((entry, None, None, None))
            elif isinstance(entry, dict) and "scene" in entry:
                _warn_unread(path, list(entry), f"key of entry {i + 1}")
                rule = entry.get("mask_exclude")
                raw.append(
                    (
                        str(entry["scene"]),
                        entry.get("out"),
                        entry.get("mask"),
                        ",".join(map(str, rule)) if isinstance(rule, list) else rule,
                    )
                )
            else:
                raise ConfigError(f"{path}: entry {i + 1} is neither a path nor {{scene, out}}")
    elif suffix == ".csv":
        # utf-8-sig: spreadsheets save "CSV UTF-8" with a byte-order mark
        reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig")))
        # "scene, mask" as a spreadsheet or a hand writes it: the names without spaces
        reader.fieldnames = [f.strip() for f in reader.fieldnames or []]
        _warn_unread(path, reader.fieldnames, "column")
        col = next((c for c in ("scene", "path") if c in (reader.fieldnames or [])), None)
        if col is None:
            raise ConfigError(
                f"{path}: CSV manifest needs a 'scene' or 'path' column "
                f"(it has {reader.fieldnames})"
            )
        raw = []
        for row in reader:
            extra = row.get(None) or []  # type: ignore[call-overload]  # csv's restkey
            if any((v or "").strip() for v in extra):  # a trailing comma is no field
                raise ConfigError(
                    f"{path}: line {reader.line_num} has more fields than the header's "
                    f"{len(reader.fieldnames)} ({', '.join(reader.fieldnames)}): put quotes "
                    'around a path with a comma ("a,b.tif") or add the column to the header'
                )
            if (row[col] or "").strip():
                raw.append(
                    (
                        row[col],
                        row.get("out") or None,
                        row.get("mask") or None,
                        row.get("mask_exclude") or None,
                    )
                )
    else:
        raw = [
            (ln.strip(), None, None, None)
            for ln in path.read_text(encoding="utf-8-sig").splitlines()
            if ln.strip() and not ln.lstrip().startswith("#")
        ]
    if not raw:
        raise ConfigError(f"{path}: the manifest lists no scenes")
    items = []
    for scene, out, mask, rule in raw:
        resolved = scene if is_remote(scene) else str(base / scene)
        mask = str(mask).strip() or None if mask is not None else None
        if mask is not None:
            mask = mask if is_remote(mask) else str(base / mask)
        rule = None if rule is None else str(rule).strip() or None
        items.append(BatchItem(resolved, out or Path(scene).stem, mask, rule))
    return _unique(items, str(path), named=suffix in (".csv", ".yaml", ".yml"))


#: The columns of a CSV manifest and the keys of a YAML one that geoseg reads.
MANIFEST_FIELDS = ("scene", "path", "out", "mask", "mask_exclude")


def _warn_unread(path: Path, names: Sequence[str], what: str) -> None:
    """Warn of manifest columns or keys that are not read (a misspelt 'mask' is no mask)."""
    unread = [n for n in names if n and n not in MANIFEST_FIELDS]
    if unread:
        log.warning(
            "%s: %s %s not read (geoseg reads %s): check the spelling",
            path,
            what + ("s" if len(unread) > 1 and what == "column" else ""),
            ", ".join(repr(n) for n in unread),
            ", ".join(MANIFEST_FIELDS),
        )


def _unique(items: list[BatchItem], source: str, *, named: bool) -> list[BatchItem]:
    """Refuse two scenes with one output name; ``named``: the manifest can name outputs."""
    seen: dict[str, str] = {}
    for it in items:
        if it.name in seen:
            fix = (
                "give them distinct 'out' names"
                if named
                else "list them in a CSV (columns scene,out) or YAML manifest with distinct "
                "'out' names"
            )
            raise ConfigError(
                f"{source}: scenes {seen[it.name]} and {it.scene} would both write "
                f"'{it.name}': {fix}"
            )
        seen[it.name] = it.scene
    return items


@locks_output("out_root")
def run_batch(
    items: Sequence[BatchItem],
    bundle: str | Path,
    out_root: str | Path,
    *,
    options: InferOptions | None = None,
    scheduler: str = "threads",
    workers: int | None = None,
    formats: Sequence[str] = ("gpkg",),
    vector: bool = True,
    vector_options: VectorizeOptions | None = None,
    overwrite: bool = False,
    resume: bool = False,
    concurrency: int | None = None,
    on_scene: Callable[[SceneResult], None] | None = None,
    on_client: Callable[[Any], None] | None = None,
    mask_exclude: str | None = None,
) -> list[SceneResult]:
    """Predict every scene of a batch; return one result per scene, in manifest order.

    Parameters
    ----------
    items : sequence of BatchItem
        The scenes (see :func:`parse_manifest`).
    bundle : str or Path
        Model bundle.
    out_root : str or Path
        Batch output directory; each scene writes ``out_root/<name>/``.
    concurrency : int, optional
        Scenes in flight at once (default: 2 on a Dask cluster, 1 otherwise).
    options, scheduler, workers, formats, vector, vector_options, overwrite
        As for :func:`geoseg.workflow.run_predict`.
    resume : bool
        Keep scenes whose output already exists and continue interrupted ones.
    on_scene : callable, optional
        Called with each scene's result as it finishes.
    on_client : callable, optional
        Called with the shared Dask client (distributed schedulers only).
    mask_exclude : str, optional
        The rule of every scene's mask that gives none of its own.
    """
    from geoseg.bundle import read_meta
    from geoseg.cluster import check_scheduler, dask_client
    from geoseg.workflow import run_predict, scene_labels_token, up_to_date, wanted_settings

    check_scheduler(scheduler)
    read_meta(bundle)  # fail once, up front, for a bad bundle
    if mask_exclude is not None and not any(it.mask for it in items):
        raise ConfigError(
            f"--mask-exclude {mask_exclude!r}: no scene of the manifest has a mask: give "
            "each scene its mask in a 'mask' column (CSV) or key (YAML), or drop the rule"
        )
    out_root = Path(out_root).absolute()
    check_batch_folder(out_root, overwrite=overwrite, resume=resume)
    with _batch_folder(out_root):
        bundle_id = bundle_hash(bundle)
        distributed = scheduler not in ("sync", "threads")
        n = concurrency or (2 if distributed else 1)

        cancel = threading.Event()
        stopped: set[str] = set()
        # the summary lists every scene from the start and is rewritten as each one starts
        # and ends, so an interrupted or killed batch still says what it finished
        board = {
            it.name: SceneResult(it.scene, str(out_root / it.name), NOT_STARTED) for it in items
        }
        earlier = _earlier_scenes(out_root, list(board.values()))
        board_lock = threading.Lock()

        def record(
            name: str | None = None, res: SceneResult | None = None, *, interrupted: bool = False
        ) -> None:
            with board_lock:
                if name is not None and res is not None:
                    board[name] = res
                write_summary([*board.values(), *earlier], out_root, interrupted=interrupted)

        def mask_rule(item: BatchItem) -> str | None:
            if item.mask is None:
                return item.mask_exclude  # an error, if given: a rule without a mask
            return item.mask_exclude if item.mask_exclude is not None else mask_exclude

        def one(item: BatchItem, client: Any) -> SceneResult:
            if cancel.is_set():
                stopped.add(item.name)
                raise KeyboardInterrupt
            out = out_root / item.name
            record(item.name, SceneResult(item.scene, str(out), RUNNING))
            res = SceneResult(item.scene, str(out), "failed")
            t0 = time.perf_counter()
            redo = False
            try:
                if out.exists() and resume and not overwrite:
                    token = scene_labels_token(
                        item.scene, bundle, options, item.mask, mask_rule(item)
                    )
                    wanted = wanted_settings(options, formats, vector, vector_options, token)
                    kept = up_to_date(out, item.scene, bundle_id, wanted)
                    if kept is not None:
                        res.status = "kept"
                        _fill(res, kept)
                        return res
                    redo = (out / "run.json").exists()  # an output of ours, now stale
                    if redo:
                        log.info(
                            "%s: input, model or outputs changed since it was made: redone", out
                        )
                run = run_predict(
                    item.scene,
                    bundle,
                    out,
                    options=options,
                    scheduler=scheduler,
                    workers=workers,
                    formats=formats,
                    vector=vector,
                    vector_options=vector_options,
                    overwrite=overwrite or redo,
                    resume=resume,
                    client=client,
                    cancel=cancel,
                    mask=item.mask,
                    mask_exclude=mask_rule(item),
                )
                res.status = "done"
                _fill(res, run)
            except OutputExistsError as exc:
                exists = "output exists" in str(exc) and not resume
                res.error = f"{exc} (or --resume to keep it)" if exists else str(exc)
            except GeosegError as exc:
                res.error = str(exc)
            except Exception as exc:  # a scene's crash must not stop the batch
                log.debug("scene %s failed", item.scene, exc_info=True)  # the traceback: -vv
                res.error = f"{exc.__class__.__name__}: {exc}"
            except KeyboardInterrupt:
                stopped.add(item.name)  # neither done nor failed: no report
                res.status = INTERRUPTED
                raise
            finally:
                res.seconds = round(time.perf_counter() - t0, 2)
                record(item.name, res)
                if on_scene is not None and item.name not in stopped:
                    on_scene(res)
            return res

        with dask_client(scheduler, workers=workers) as client:
            if client is not None and on_client is not None:
                on_client(client)
            pool = ThreadPoolExecutor(max_workers=n)
            try:
                futures = [pool.submit(one, item, client) for item in items]
                results = [f.result() for f in futures]
            except BaseException:
                # Ctrl-C reaches this thread only: no further scene starts, and the scenes in
                # flight stop at their next block (kept for --resume) instead of running on
                cancel.set()
                pool.shutdown(wait=True, cancel_futures=True)
                for res in board.values():
                    if res.status == RUNNING:  # its thread never got to say
                        res.status = INTERRUPTED
                record(interrupted=True)
                raise
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        record()
        return results


@contextlib.contextmanager
def _batch_folder(out_root: Path) -> Iterator[None]:
    """Make a batch's output folder (marked as one) for the body, which fills it.

    A batch that fails before any scene started (no cluster at the address) leaves no
    folder, nor the parents this made.
    """
    made = [p for p in (out_root, *out_root.parents) if not p.exists()]  # innermost first
    out_root.mkdir(parents=True, exist_ok=True)
    (out_root / BATCH_MARKER).touch()  # never replaced whole (it may hold other files)
    try:
        yield
    except BaseException:
        if made and [p.name for p in out_root.iterdir()] == [BATCH_MARKER]:
            (out_root / BATCH_MARKER).unlink()
            for folder in made:
                with contextlib.suppress(OSError):
                    folder.rmdir()
        raise


def _earlier_scenes(out_root: Path, results: Sequence[SceneResult]) -> list[SceneResult]:
    """The scenes of earlier batches into ``out_root`` that this one did not list.

    Their rows stay in the summary (a finished scene's while its output folder exists),
    so a batch run on a part of the scenes (say the failed ones, with ``--resume``)
    does not shrink it.
    """
    try:
        rows = json.loads((out_root / "summary.json").read_text())
        earlier = [SceneResult(**row) for row in rows]
    except (OSError, ValueError, TypeError):
        return []
    for r in earlier:
        if r.status == RUNNING:  # a batch killed while it ran the scene
            r.status = INTERRUPTED

    def where(r: SceneResult) -> Path:  # its folder under out_root (``out`` may nest)
        return out_root / os.path.relpath(r.out, out_root)

    now = {where(r) for r in results}
    return [
        r for r in earlier if where(r) not in now and (r.status not in DONE or where(r).is_dir())
    ]


def _fill(res: SceneResult, run: dict[str, Any]) -> None:
    """Copy a scene's polygon count, input warning and class areas from its run.json."""
    res.polygons = run["polygons"]
    check = run["input_check"]
    notes = list(run.get("warnings", []))
    if check["warning"] and not any(n in check["warning"] for n in notes):  # an earlier run's
        notes.insert(0, check["warning"])
    how = check.get("bands_matched_by")
    said = any(f"by {how}" in note for note in notes)  # the run's own band warning
    if how in ("position", "index") and not said:
        used = ",".join(run["input"]["bands"])
        notes.append(f"bands {used} matched to the bundle's by {how}: check their order")
    res.warning = "; ".join(notes)
    mask = run["input"].get("mask")
    res.masked_share = mask["excluded_share"] if mask else None
    res.area_m2, res.fine_area_m2 = (
        {  # none without a CRS (the cells stay empty), not 0
            f"{c['code']} {c['name']}": c["area_m2"]
            for c in run["area_per_class"].get(level, [])
            if c["area_m2"] is not None
        }
        for level in ("coarse", "fine")
    )


def _by_code(column: str) -> int:
    """The class code of an area column's ``"41 Deciduous Forest"``."""
    return int(column.split()[0])


def write_summary(
    results: Sequence[SceneResult], out_root: Path, *, interrupted: bool = False
) -> None:
    """Write ``summary.csv``, ``summary.md`` and ``summary.json`` (each atomically).

    ``interrupted``: the batch was stopped (Ctrl-C, SIGTERM) before every scene ran.
    """
    classes = sorted({k for r in results for k in r.area_m2}, key=_by_code)
    fine = sorted({k for r in results for k in r.fine_area_m2}, key=_by_code)
    header = ["scene", "out", "status", "seconds", "polygons", "error", "warning"]
    header += ["masked_share"] if any(r.masked_share is not None for r in results) else []
    header += [f"area_m2 {c}" for c in classes] + [f"fine_area_m2 {c}" for c in fine]
    rows = [
        [r.scene, r.out, r.status, r.seconds, "" if r.polygons is None else r.polygons, r.error]
        + [r.warning]
        + (["" if r.masked_share is None else r.masked_share] if "masked_share" in header else [])
        + [r.area_m2.get(c, "") for c in classes]
        + [r.fine_area_m2.get(c, "") for c in fine]
        for r in results
    ]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    _write_atomic(out_root / "summary.csv", buf.getvalue())
    done = sum(r.status in DONE for r in results)
    stop = ", interrupted: --resume continues the batch" if interrupted else ""
    md = [
        f"# Batch summary: {done} of {len(results)} scenes done{stop}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    md += ["| " + " | ".join(str(v).replace("|", "/") for v in row) + " |" for row in rows]
    _write_atomic(out_root / "summary.md", "\n".join(md) + "\n")
    _write_atomic(
        out_root / "summary.json",
        json.dumps([r.__dict__ for r in results], indent=2) + "\n",
    )


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
