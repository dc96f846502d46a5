"""The ``geoseg`` command line: parses options, sets up logging and calls the library.

Exit codes: 0 on success, 1 for a user error (one line on stderr, no traceback unless
``-v``), 2 for usage errors (click's own).
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import click

from geoseg._version import __version__
from geoseg.allocator import keep_freed_memory
from geoseg.errors import ConfigError, GeosegError, Terminated, stop_on_sigterm

F = TypeVar("F", bound=Callable[..., Any])
SCHEDULER_HELP = (
    "threads | sync | local | tcp://HOST:PORT (default: $GEOSEG_SCHEDULER, else threads)"
)
log = logging.getLogger("geoseg")


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = (
        logging.ERROR
        if quiet
        else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("geoseg")
    root.handlers[:] = [h for h in root.handlers if isinstance(h, logging.NullHandler)] + [handler]
    root.setLevel(level)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """Warnings as one log line: geoseg's at WARNING, other libraries' at INFO (``-v``).

    Python's default shows the file, line and source of the ``warn`` call, which is
    noise to a user; a library's internal warning (numpy, matplotlib) is rarely
    actionable, so it is shown only when asked for.
    """
    from geoseg.errors import GeosegWarning

    if issubclass(category, GeosegWarning):
        log.warning("%s", message)
    else:
        logging.getLogger("geoseg.libraries").info(
            "%s: %s (%s:%d)", category.__name__, message, filename, lineno
        )


def _file_system_error(exc: OSError) -> bool:
    """A refusal of the file system (path, permission, space), not e.g. a lost connection."""
    fs = (FileExistsError, FileNotFoundError, IsADirectoryError, NotADirectoryError)
    return isinstance(exc, (*fs, PermissionError)) or exc.errno in (
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EROFS,
        errno.ENAMETOOLONG,
    )


def user_errors(func: F) -> F:
    """Turn library errors into a one-line message and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        try:
            return func(*args, **kwargs)
        except GeosegError as exc:
            if ctx.find_root().obj and ctx.find_root().obj.get("verbose", 0) > 1:
                raise
            click.echo(f"geoseg: error: {exc}", err=True)
            ctx.exit(1)
        except OSError as exc:  # the file system said no: one line, like any bad input
            verbose = ctx.find_root().obj and ctx.find_root().obj.get("verbose", 0) > 1
            if verbose or not _file_system_error(exc):
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            what = exc.strerror or str(exc) or exc.__class__.__name__
            click.echo(
                f"geoseg: error: {where}{what}: check the paths, permissions and free space",
                err=True,
            )
            ctx.exit(1)
        except KeyboardInterrupt as exc:
            what = "terminated" if isinstance(exc, Terminated) else "interrupted"
            if ctx.info_name == "train":
                then = _train_interrupted(Path(ctx.params["out_dir"]))
            elif ctx.info_name in ("predict", "batch") and ctx.params.get("resume"):
                then = "what it finished is kept: the same command continues the run"
            elif ctx.info_name == "batch":
                then = "the scenes it finished are kept: --resume continues the batch"
            elif ctx.info_name == "predict":
                then = "run it again (with --resume a run keeps what it finished)"
            else:
                then = "run the command again"
            click.echo(f"geoseg: {what}: nothing half-written was left; {then}", err=True)
            ctx.exit(143 if isinstance(exc, Terminated) else 130)

    return wrapper  # type: ignore[return-value]


def _train_interrupted(out: Path) -> str:
    """What an interrupted ``geoseg train --out out`` kept, and how to go on."""
    from geoseg.checkpoint import CHECKPOINT_FILE, checkpoint_dir

    runs = (out, out.with_name(out.name + ".selection"))  # train.refit's first run
    kept = [checkpoint_dir(d) for d in runs if (checkpoint_dir(d) / CHECKPOINT_FILE).exists()]
    if not kept:
        return "it stopped before its first checkpoint (end of epoch 1): run it again"
    return f"its checkpoint {kept[0]} is kept: --resume continues the run"


#: Suffixes of files, not folders: an output folder named so is a user's slip.
_FILE_SUFFIXES = (".tif", ".tiff", ".gpkg", ".shp", ".parquet", ".geojson", ".fgb", ".vrt")


def _out_folder(ctx: click.Context, param: click.Parameter, value: Path) -> Path:
    """Refuse an output folder named like a file (``--out labels.tif``): it would be a folder."""
    # an existing path is judged where the output is checked (an input, a file...)
    if value.suffix.lower() in _FILE_SUFFIXES and not value.exists():
        raise click.BadParameter(
            f"{value} names a folder, into which the command's files are written, and "
            f"looks like a file name: pass a folder, e.g. {value.with_suffix('')}",
            ctx=ctx,
            param=param,
        )
    return value


def _set_verbose(ctx: click.Context, _param: click.Parameter, value: int) -> None:
    if value:
        root = ctx.find_root()
        root.obj = root.obj or {"verbose": 0, "quiet": False}
        root.obj["verbose"] += value
        _setup_logging(root.obj["verbose"], root.obj["quiet"])


def _set_quiet(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        root = ctx.find_root()
        root.obj = root.obj or {"verbose": 0, "quiet": False}
        root.obj["quiet"] = True
        _setup_logging(root.obj["verbose"], True)


def _check_formats(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """``--format``'s list, refused as a usage error when it names an unknown format."""
    from geoseg.export import parse_formats

    try:
        parse_formats(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def polygon_outputs(func: F) -> F:
    """Shared ``--format`` and ``--no-vector`` options of the jobs that write a map."""
    func = click.option("--no-vector", is_flag=True, help="Write the label raster only.")(func)
    return click.option(
        "--format",
        "formats",
        default="gpkg",
        show_default=True,
        callback=_check_formats,
        help="Vector formats: gpkg,shp,parquet,fgb.",
    )(func)  # type: ignore[return-value]


#: The parameters of :func:`inference_options`, gathered into one ``InferOptions``.
_INFER_PARAMS = (
    "tile_size",
    "halo",
    "block_size",
    "batch_size",
    "device",
    "precision",
    "channels_last",
    "tta",
    "probabilities",
    "normalize",
)


def inference_options(func: F) -> F:
    """Shared options of the jobs that run the model: tiling, device, precision, TTA.

    The command receives them as one ``options`` (:class:`geoseg.infer.InferOptions`).
    """
    command = func

    @functools.wraps(command)
    def gather(*args: Any, **kwargs: Any) -> Any:
        from geoseg.infer import DEFAULT_PRECISION, InferOptions

        values = {k: kwargs.pop(k) for k in _INFER_PARAMS}
        values["precision"] = values["precision"] or DEFAULT_PRECISION
        return command(*args, options=InferOptions(**values), **kwargs)

    func = gather  # type: ignore[assignment]
    func = click.option(
        "--normalize",
        type=click.Choice(["bundle", "scene"]),
        default="bundle",
        show_default=True,
        help="Band statistics the image is standardised with: the training data's, or the "
        "scene's own mean and std (another date, calibration or atmosphere: the labels "
        "no longer change with a band's gain and offset; for land cover like the "
        "training area's).",
    )(func)
    func = click.option(
        "--probabilities",
        is_flag=True,
        help="Also write probabilities.tif: each coarse and fine class's probability in "
        "percent, a band per class.",
    )(func)
    func = click.option(
        "--tta",
        is_flag=True,
        help="Test-time augmentation: average the 8 rotations/reflections of each tile "
        "(8x slower).",
    )(func)
    func = click.option(
        "--channels-last/--no-channels-last",
        default=None,
        help="NHWC memory layout for the network (default: on).",
    )(func)
    func = click.option(
        "--precision",
        type=click.Choice(["auto", "fp32", "bf16"]),
        default=None,
        help="Forward-pass precision (default: bf16 where the device runs it natively, "
        "else fp32; bf16 labels agree with fp32's on 99.8 % of Zion's pixels).",
    )(func)
    func = click.option(
        "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True
    )(func)
    func = click.option(
        "--batch-size",
        type=click.IntRange(min=0),
        default=0,
        show_default=True,
        help="Tiles per forward pass (0: automatic, from free GPU memory on CUDA).",
    )(func)
    func = click.option(
        "--block-size",
        type=click.IntRange(min=32),
        default=1024,
        show_default=True,
        help="Pixels per task side (rounded up to a whole number of tiles).",
    )(func)
    func = click.option(
        "--halo",
        type=click.IntRange(min=0),
        default=None,
        help="Context pixels around each tile (default: the bundle's).",
    )(func)
    func = click.option(
        "--tile-size",
        type=click.IntRange(min=16),
        default=None,
        help=(
            "Tile core size in pixels (default: the bundle's); a scene's last tile also takes "
            "a rest under half a tile."
        ),
    )(func)
    return func


def polygon_shapes(func: F) -> F:
    """Shared ``--mmu`` and ``--simplify`` options of the jobs that write polygons.

    The command receives them as one ``vector_options``
    (:class:`geoseg.vectorize.VectorizeOptions`).
    """
    command = func

    @functools.wraps(command)
    def gather(*args: Any, **kwargs: Any) -> Any:
        from geoseg.vectorize import VectorizeOptions

        shapes = VectorizeOptions(mmu=kwargs.pop("mmu"), simplify=kwargs.pop("simplify"))
        return command(*args, vector_options=shapes, **kwargs)

    func = gather  # type: ignore[assignment]
    func = click.option(
        "--simplify",
        type=click.FloatRange(min=0),
        default=0.0,
        show_default=True,
        help="Coverage simplification tolerance (CRS units).",
    )(func)
    func = click.option(
        "--mmu",
        type=click.FloatRange(min=0),
        default=0.0,
        show_default=True,
        help="Minimum mapping unit of the polygons (m²).",
    )(func)
    return func


def map_codes(func: F) -> F:
    """Shared ``--taxonomy`` and ``--level`` options: how to read a map geoseg did not write."""
    func = click.option(
        "--level",
        type=click.Choice(["coarse", "fine"]),
        default=None,
        help="Level of a single-band LABELS map, where its codes fit both.",
    )(func)
    return click.option(
        "--taxonomy",
        "taxonomy",
        type=click.Path(path_type=Path),
        default=None,
        help="Taxonomy YAML (or a bundle) of LABELS' codes, for a map that geoseg did not write.",
    )(func)  # type: ignore[return-value]


def verbosity(func: F) -> F:
    """Shared ``-v/--verbose`` and ``-q/--quiet`` options, accepted after the command too."""
    func = click.option(
        "-q",
        "--quiet",
        is_flag=True,
        expose_value=False,
        callback=_set_quiet,
        help="Only errors; no progress bars.",
    )(func)
    return click.option(
        "-v",
        "--verbose",
        count=True,
        expose_value=False,
        callback=_set_verbose,
        help="More logging (-vv: tracebacks on errors).",
    )(func)  # type: ignore[return-value]


def _dashboard_printer(quiet: bool) -> Callable[[Any], None]:
    """What to call with a distributed client: print its dashboard's link."""

    def show(client: Any) -> None:
        if not quiet:
            click.echo(f"dask dashboard: {client.dashboard_link}", err=True)

    return show


class _Bar:
    """A tqdm progress bar on stderr driven by ``(done, total)`` callbacks.

    The bar closes with its last block, so that its rate is the blocks' own, and then
    prints ``then`` (what the run does next, e.g. its polygons), if given.
    """

    def __init__(self, desc: str, enabled: bool, *, then: str | None = None) -> None:
        self.desc, self.enabled, self.then = desc, enabled, then
        self.bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=self.desc, unit="block", file=sys.stderr)
        elif self.bar.n >= self.bar.total:  # closed
            return
        self.bar.update(done - self.bar.n)
        if done >= total:
            self.bar.close()
            if self.then:
                click.echo(f"{self.desc}: {self.then}", err=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="geoseg")
@click.option("-v", "--verbose", count=True, help="More logging (-vv: tracebacks on errors).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors; no progress bars.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Hierarchical land-cover maps and polygons from large GeoTIFF scenes."""
    ctx.obj = {"verbose": verbose, "quiet": quiet}
    _setup_logging(verbose, quiet)


# --------------------------------------------------------------------- predict
@cli.command()
@verbosity
@click.argument("scene", type=str)
@click.option(
    "--model",
    "-m",
    "bundle",
    required=True,
    type=click.Path(path_type=Path),
    help="Model bundle directory.",
)
@click.option(
    "--out",
    "-o",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path),
    callback=_out_folder,
    help="Output directory.",
)
@inference_options
@click.option(
    "--scheduler",
    default="threads",
    envvar="GEOSEG_SCHEDULER",
    show_default=True,
    help=SCHEDULER_HELP,
)
@click.option(
    "--workers", type=click.IntRange(min=1), default=None, help="Threads or local worker processes."
)
@polygon_outputs
@polygon_shapes
@click.option("--overwrite", is_flag=True, help="Replace an existing output directory.")
@click.option(
    "--resume",
    is_flag=True,
    help="Keep finished blocks if the run fails, and reuse them when re-run with --resume.",
)
@click.option(
    "--mask",
    "mask",
    default=None,
    metavar="RASTER",
    help="Pixels to leave out (clouds, shadows, fill), which become nodata: a quality "
    "raster (on the scene's grid or another: a pixel goes when any mask pixel under it "
    "is flagged), or polygons (vector file). Needs --mask-exclude.",
)
@click.option(
    "--mask-exclude",
    default=None,
    metavar="RULE",
    help="Which mask values leave a pixel out: codes ('1', '3,8,9,10'), 'bits:1,3,4', "
    "or a preset: landsat-qa (QA_PIXEL), s2-scl (SCL), fmask; for polygons, inside "
    "(clouds) or outside (an area of interest).",
)
@click.pass_context
@user_errors
def predict(
    ctx: click.Context,
    scene: str,
    bundle: Path,
    out_dir: Path,
    options: Any,
    scheduler: str,
    workers: int | None,
    formats: str,
    no_vector: bool,
    vector_options: Any,
    overwrite: bool,
    resume: bool,
    mask: str | None,
    mask_exclude: str | None,
) -> None:
    """Label SCENE with a model bundle: labels.tif, landcover.gpkg, quicklook.png, run.json."""
    from geoseg.export import parse_formats
    from geoseg.workflow import run_predict

    fmts = parse_formats(formats)
    next_step = "blocks done, making polygons" if not no_vector and fmts else None
    bar = _Bar("predict", not ctx.find_root().obj["quiet"], then=next_step)

    show_dashboard = _dashboard_printer(ctx.find_root().obj["quiet"])

    try:
        run = run_predict(
            scene,
            bundle,
            out_dir,
            options=options,
            scheduler=scheduler,
            workers=workers,
            formats=fmts,
            vector=not no_vector,
            vector_options=vector_options,
            overwrite=overwrite,
            progress=bar,
            on_client=show_dashboard,
            resume=resume,
            mask=mask,
            mask_exclude=mask_exclude,
        )
    finally:
        bar.close()
    if not ctx.find_root().obj["quiet"] and run.get("kept"):
        click.echo(f"kept {out_dir}: made from the same input, model and settings", err=True)
    elif not ctx.find_root().obj["quiet"]:
        t = run["timings_s"]
        click.echo(
            f"wrote {out_dir} ({', '.join(run['outputs'])}) in {t['total']:.1f} s, "
            f"{run['megapixels_per_s']} MPix/s"
            + (f", {run['polygons']} polygons" if run["polygons"] is not None else ""),
            err=True,
        )


# ----------------------------------------------------------------------- batch
@cli.command()
@verbosity
@click.argument("manifest", type=str)
@click.option(
    "--model", "-m", "bundle", required=True, type=click.Path(path_type=Path), help="Bundle."
)
@click.option(
    "--out",
    "-o",
    "out_root",
    required=True,
    type=click.Path(path_type=Path),
    callback=_out_folder,
    help="Batch output directory (one sub-directory per scene, and summary.csv).",
)
@click.option(
    "--scheduler",
    default="threads",
    envvar="GEOSEG_SCHEDULER",
    show_default=True,
    help=SCHEDULER_HELP,
)
@click.option(
    "--workers", type=click.IntRange(min=1), default=None, help="Threads or local worker processes."
)
@click.option(
    "--concurrency", type=click.IntRange(min=1), default=None, help="Scenes in flight at once."
)
@click.option(
    "--format",
    "formats",
    default="gpkg",
    show_default=True,
    callback=_check_formats,
    help="Vector formats: gpkg,shp,parquet,fgb.",
)
@click.option("--no-vector", is_flag=True, help="Write the label rasters only.")
@polygon_shapes
@inference_options
@click.option("--overwrite", is_flag=True, help="Replace existing scene outputs.")
@click.option("--resume", is_flag=True, help="Keep finished scenes and continue interrupted ones.")
@click.option(
    "--mask-exclude",
    default=None,
    metavar="RULE",
    help="The rule of the masks the manifest lists (a 'mask' column or key) that give "
    "no 'mask_exclude' of their own; as for predict.",
)
@click.pass_context
@user_errors
def batch(
    ctx: click.Context,
    manifest: str,
    bundle: Path,
    out_root: Path,
    scheduler: str,
    workers: int | None,
    concurrency: int | None,
    formats: str,
    no_vector: bool,
    vector_options: Any,
    options: Any,
    overwrite: bool,
    resume: bool,
    mask_exclude: str | None,
) -> None:
    """Label every scene of MANIFEST (a list file, CSV, YAML or a glob pattern).

    Each scene gets OUT/<name>/; a failing scene is reported and the others go on.
    A CSV or YAML manifest may give each scene a cloud mask (columns or keys 'mask'
    and 'mask_exclude', see predict --mask).
    OUT/summary.csv (and .md, .json) lists scene, status, time and area per class.
    Exit code 1 if any scene failed.
    """
    from geoseg.batch import parse_manifest, run_batch
    from geoseg.errors import GeosegError
    from geoseg.export import parse_formats

    quiet = ctx.find_root().obj["quiet"]
    items = parse_manifest(manifest)
    fmts = parse_formats(formats)

    def report(res: Any) -> None:
        if not quiet:
            msg = f"{res.status:6s} {res.seconds:7.1f} s  {res.scene}"
            click.echo(msg + (f"  ({res.error})" if res.error else ""), err=True)

    show_dashboard = _dashboard_printer(quiet)

    results = run_batch(
        items,
        bundle,
        out_root,
        options=options,
        scheduler=scheduler,
        workers=workers,
        formats=fmts,
        vector=not no_vector,
        vector_options=vector_options,
        overwrite=overwrite,
        resume=resume,
        concurrency=concurrency,
        on_scene=report,
        on_client=show_dashboard,
        mask_exclude=mask_exclude,
    )
    failed = [r for r in results if r.status == "failed"]
    if failed:
        first = failed[0]
        # most errors start with the file they are about: do not name the scene twice
        named = first.error.startswith((first.scene, str(Path(first.scene).resolve())))
        why = first.error if named else f"{first.scene}: {first.error}"
        raise GeosegError(
            f"{out_root}: {len(failed)} of {len(results)} scenes failed (first: {why}): see "
            f"{out_root / 'summary.csv'}"
        )
    if not quiet:
        click.echo(f"wrote {len(results)} scenes to {out_root} (summary.csv)", err=True)


# ----------------------------------------------------------------------- train
@cli.command()
@verbosity
@click.argument("config", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "-o",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Bundle directory to write.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle.")
@click.option(
    "--max-steps",
    type=click.IntRange(min=1),
    default=None,
    help="Stop after this many steps (smoke runs).",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue an interrupted run from its checkpoint (BUNDLE_DIR.checkpoint/).",
)
@click.pass_context
@user_errors
def train(
    ctx: click.Context,
    config: Path,
    out_dir: Path,
    overwrite: bool,
    max_steps: int | None,
    resume: bool,
) -> None:
    """Train a hierarchical model from CONFIG (YAML) and save the best checkpoint as a bundle.

    The training state is saved after every epoch; an interrupted run continues with
    --resume and gives the same bundle as an uninterrupted one.
    """
    from geoseg.workflow import run_train

    path = run_train(
        config,
        out_dir,
        overwrite=overwrite,
        progress=not ctx.find_root().obj["quiet"],
        max_steps=max_steps,
        resume=resume,
    )
    meta = json.loads((path / "bundle.json").read_text())
    test = meta["metrics"].get("test")
    if not ctx.find_root().obj["quiet"]:
        click.echo(f"wrote bundle {path}{_test_summary(test)}", err=True)


def _test_summary(test: dict[str, Any] | None) -> str:
    """``; test mIoU ... (OA ...)`` for the levels a bundle's test scored, else ``""``."""
    levels = [
        f"{lvl} {test[lvl]['miou']} (OA {test[lvl]['overall_accuracy']})"
        for lvl in ("coarse", "fine")
        if test and test.get(lvl, {}).get("miou") is not None
    ]
    return f"; test mIoU {', '.join(levels)}" if levels else ""


def interval_option(what: str) -> Callable[[F], F]:
    """``--interval``: the method of the stratified intervals (:mod:`geoseg.intervals`)."""
    return click.option(
        "--interval",
        type=click.Choice(["beta", "wald"]),
        default="beta",
        show_default=True,
        help=f"{what} and accuracies: Korn-Graubard (beta, right for rare classes) or "
        "estimate ± 1.96 SE (wald, as Olofsson et al. 2014 publish).",
    )


# -------------------------------------------------------------------- evaluate
@cli.command()
@verbosity
@click.argument("labels", type=str, required=False)
@click.option(
    "--out",
    "-o",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Report directory (metrics.json, metrics.md, confusion_*.png).",
)
@click.option(
    "--coarse",
    "coarse_truth",
    type=str,
    default=None,
    help="Coarse truth: a raster, or a vector file of features with a class (--coarse-field).",
)
@click.option(
    "--fine",
    "fine_truth",
    type=str,
    default=None,
    help="Fine truth: a raster, or a vector file of features with a class (--fine-field).",
)
@map_codes
@click.option(
    "--align", is_flag=True, help="Resample truth onto the prediction grid (nearest neighbour)."
)
@click.option(
    "--checkerboard",
    type=click.IntRange(min=1),
    default=None,
    help="Score only the test blocks of a checkerboard split of this block size (its "
    "blocks on the truth raster's grid, or --split-grid's).",
)
@click.option(
    "--split-grid",
    type=str,
    default=None,
    help="With --checkerboard: a raster on the grid the split was drawn on (the training "
    "image), where it is not the truth's (labels aligned onto their image in training).",
)
@click.option(
    "--coarse-field",
    default="coarse_code",
    show_default=True,
    help="Vector truth: the attribute with each feature's coarse class (code or name).",
)
@click.option(
    "--fine-field",
    default="fine_code",
    show_default=True,
    help="Vector truth: the attribute with each feature's fine class (code or name).",
)
@click.option(
    "--layer",
    default=None,
    help="Vector truth: the layer to read (default: the first with geometries).",
)
@click.option(
    "--model",
    "-m",
    "bundle",
    type=click.Path(path_type=Path),
    default=None,
    help="Instead of LABELS: predict the scenes of --config with this bundle.",
)
@click.option(
    "--config",
    type=click.Path(path_type=Path),
    default=None,
    help="Training config whose scenes and split --model is scored on.",
)
@click.option(
    "--region",
    type=click.Choice(["test", "all"]),
    default="test",
    show_default=True,
    help="With --model: the test blocks of the split and the role: test scenes, or every "
    "labelled pixel.",
)
@click.option("--scheduler", default="threads", show_default=True, help="With --model.")
@click.option("--tta", is_flag=True, help="With --model: test-time augmentation (see predict).")
@interval_option("The stratified 95 % intervals of error-adjusted areas (a point sample's)")
@click.option(
    "--bootstrap",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="Resamplings of the spatial blocks for 95 % intervals of mIoU and OA (0: none).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing report directory.")
@click.pass_context
@user_errors
def evaluate(
    ctx: click.Context,
    labels: str | None,
    out_dir: Path,
    coarse_truth: str | None,
    fine_truth: str | None,
    taxonomy: Path | None,
    level: Literal["coarse", "fine"] | None,
    align: bool,
    checkerboard: int | None,
    split_grid: str | None,
    coarse_field: str,
    fine_field: str,
    layer: str | None,
    bundle: Path | None,
    config: Path | None,
    region: str,
    scheduler: str,
    tta: bool,
    interval: str,
    bootstrap: int,
    overwrite: bool,
) -> None:
    """Score predicted LABELS against truth rasters, or a bundle on a config's test blocks.

    \b
      geoseg evaluate out/labels.tif --coarse l1.tif --fine l2.tif --out report
      geoseg evaluate other_map.tif --taxonomy nlcd.yaml --fine l2.tif --out report
      geoseg evaluate out/labels.tif --fine reference.gpkg --fine-field class --out report
      geoseg evaluate --model models/zion-nlcd --config configs/zion_nlcd.yaml --out report

    With --model the truth and the split come from --config, which must split with the
    checkerboard the bundle was trained with. An evaluation that scores no pixel is an
    error and writes nothing.
    """  # noqa: D301  (\b keeps click from rewrapping the examples)
    from click.core import ParameterSource

    def given(*names: str) -> list[str]:
        return [
            "--" + n.replace("_truth", "").replace("_", "-")
            for n in names
            if ctx.get_parameter_source(n) is not ParameterSource.DEFAULT
        ]

    if bundle is not None or config is not None:
        if labels is not None or bundle is None or config is None:
            raise click.UsageError(
                "give either LABELS with --coarse/--fine, or --model BUNDLE with --config CONFIG"
            )
        if extra := given(
            "coarse_truth",
            "fine_truth",
            "taxonomy",
            "level",
            "align",
            "checkerboard",
            "split_grid",
            "coarse_field",
            "fine_field",
            "layer",
        ):
            raise click.UsageError(
                f"{'/'.join(extra)} {_verb(extra)} only to LABELS: with --model the truth "
                f"rasters, their taxonomy and the split come from --config {config}; "
                f"drop {' '.join(extra)}"
            )
    else:
        if labels is None:
            raise click.UsageError(
                "pass a labels.tif to score, or --model BUNDLE with --config CONFIG"
            )
        if extra := given("region", "scheduler", "tta"):
            raise click.UsageError(
                f"{'/'.join(extra)} {_verb(extra)} only with --model BUNDLE --config CONFIG: "
                f"drop {' '.join(extra)} when scoring LABELS"
            )
        if split_grid is not None and checkerboard is None:
            raise click.UsageError(
                "--split-grid places the blocks of --checkerboard: add --checkerboard N or "
                "drop --split-grid"
            )
    if bundle is not None and config is not None:
        from geoseg.infer import InferOptions
        from geoseg.workflow import run_evaluate_bundle

        result = run_evaluate_bundle(
            bundle,
            config,
            out_dir,
            options=InferOptions(tta=tta),
            scheduler=scheduler,
            region=region,
            bootstrap=bootstrap,
            overwrite=overwrite,
            interval=interval,
        )
    else:
        from geoseg.vector_labels import VectorField, is_vector
        from geoseg.workflow import run_evaluate_labels

        # one vector file of both levels' fields: --fine F.gpkg --fine-field A
        # --coarse-field B reads B of the same file as the coarse truth (and vice versa)
        named = given("coarse_field", "fine_field")
        if "--coarse-field" in named and coarse_truth is None and _vector(fine_truth):
            coarse_truth = fine_truth
        if "--fine-field" in named and fine_truth is None and _vector(coarse_truth):
            fine_truth = coarse_truth
        truths = {"coarse": coarse_truth, "fine": fine_truth}
        for opt in given("coarse_field", "fine_field", "layer"):
            which = opt[2:].split("-")[0]  # coarse, fine, or layer: both
            paths = [t for k, t in truths.items() if t is not None and which in (k, "layer")]
            # a field of the level without truth would be read from the other's file
            paths = paths or [t for t in truths.values() if t is not None]
            if not paths:
                raise click.UsageError(
                    f"{opt} names a field of vector truth, and no truth is given: pass "
                    f"--{'fine' if which == 'layer' else which} FILE, or drop {opt}"
                )
            if not any(is_vector(t) for t in paths):
                raise click.UsageError(
                    f"{opt} applies to vector truth (GeoPackage, Shapefile, GeoJSON...), and "
                    f"{' / '.join(paths)} {'is' if len(paths) == 1 else 'are'} not: drop {opt}"
                )

        result = run_evaluate_labels(
            labels,  # type: ignore[arg-type]  # checked above
            out_dir,
            coarse_truth=coarse_truth,
            fine_truth=fine_truth,
            taxonomy=taxonomy,
            level=level,
            align=align,
            checkerboard=checkerboard,
            split_grid=split_grid,
            bootstrap=bootstrap,
            overwrite=overwrite,
            interval=interval,
            vector={
                "coarse": VectorField(coarse_field, "--coarse-field", layer, "--layer"),
                "fine": VectorField(fine_field, "--fine-field", layer, "--layer"),
            },
        )
    if not ctx.find_root().obj["quiet"]:
        parts = [
            f"{lvl} not scored ({result[lvl]['not_scored']})"
            if "not_scored" in result[lvl]
            else _headline(lvl, result[lvl])
            for lvl in ("coarse", "fine")
            if lvl in result
        ]
        click.echo(f"wrote {out_dir}: " + "; ".join(parts), err=True)


def _vector(path: str | None) -> bool:
    from geoseg.vector_labels import is_vector

    return path is not None and is_vector(path)


def _headline(lvl: str, level: dict[str, Any]) -> str:
    """A scored level's figures for the console: the map's where a point sample gives them.

    The points of a stratified sample count alike in their own scores, which over-weights
    the rare classes' strata; the map's figures are estimated from the design
    (:mod:`geoseg.map_scores`), the points' own follow in brackets. Without them (raster
    truth, a sample without a usable design): mIoU and OA with their block bootstrap,
    and the area-weighted OA where there is one.
    """
    from geoseg.report import interval_text as _ci
    from geoseg.report import map_scores_of, sampled_without_map_scores

    def ci(bounds: list[float | None] | None) -> str:
        return "" if not bounds or bounds[0] is None else f" [{bounds[0]:.4f}, {bounds[1]:.4f}]"

    area = level.get("area") or {}
    ms = map_scores_of(level)
    if ms is not None and area.get("overall_accuracy") is not None:
        return (
            f"{lvl} mIoU {ms['miou']:.4f}{ci(ms['miou_ci95'])} OA "
            f"{area['overall_accuracy']:.4f}{ci(area.get('overall_accuracy_ci95'))} (the map's, "
            f"estimated from {ms['points']} points; their own: mIoU {level['miou']:.4f}, "
            f"OA {level['overall_accuracy']:.4f})"
        )
    text = (
        f"{lvl} mIoU {level['miou']:.4f}{_ci(level, 'miou')} "
        f"OA {level['overall_accuracy']:.4f}{_ci(level, 'overall_accuracy')}"
    )
    if area.get("interval") == "stratified" and area.get("overall_accuracy") is not None:
        text += (
            f" (area-weighted OA {area['overall_accuracy']:.4f}"
            f"{ci(area.get('overall_accuracy_ci95'))})"
        )
    if sampled_without_map_scores(level):
        text += " (the points' own, each alike: the map's are not estimated, see metrics.md)"
    return text


def _resampling_option(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--resampling`` of merge and change: how ``--align`` resamples ``what``."""
    return click.option(
        "--resampling",
        type=click.Choice(["auto", "nearest", "mode"]),
        default="auto",
        show_default=True,
        help=f"How --align resamples {what}: the pixel under each pixel's centre (nearest), "
        "or the most common class of its pixels under each (mode; auto: mode where it is at "
        "least twice as fine along each axis, else nearest).",
    )


def _zones_option(
    zones: str | None, field: str | None, layer: str | None
) -> tuple[str, str, str | None] | None:
    """``--zones`` with its ``--zone-field``, or a usage error."""
    if zones is None:
        if field is not None or layer is not None:
            raise click.UsageError("--zone-field and --zone-layer need --zones")
        return None
    if field is None:
        raise click.UsageError("--zones needs --zone-field, the attribute naming each zone")
    return zones, field, layer


def _verb(options: list[str]) -> str:
    return "applies" if len(options) == 1 else "apply"


# ------------------------------------------------------------------- calibrate
@cli.command()
@verbosity
@click.argument("config", type=click.Path(path_type=Path))
@click.option(
    "--model", "-m", "bundle", required=True, type=click.Path(path_type=Path), help="Bundle."
)
@click.option(
    "--out", "-o", "out_dir", required=True, type=click.Path(path_type=Path), help="New bundle."
)
@click.option("--overwrite", is_flag=True, help="Replace an existing output bundle.")
@click.pass_context
@user_errors
def calibrate(
    ctx: click.Context, config: Path, bundle: Path, out_dir: Path, overwrite: bool
) -> None:
    """Re-derive a trained bundle's halo and decision offsets on CONFIG, and re-test it.

    The weights are kept; the halo is measured again (train.halo: null), the per-class
    decision offsets are tuned again on the validation blocks (train.tune_decode_bias),
    and the test blocks are scored once at the end, as at the end of 'geoseg train'.
    """
    from geoseg.atomic import check_writable
    from geoseg.config import load_train_config
    from geoseg.train import recalibrate

    cfg = load_train_config(config)
    check_writable(
        out_dir,
        overwrite=overwrite,
        inputs=(config, bundle, *cfg.input_files()),
        output="bundle",
    )
    quiet = ctx.find_root().obj["quiet"]
    say = None if quiet else (lambda m: click.echo(f"calibrate: {m}", err=True))
    path = recalibrate(cfg, bundle, out_dir, overwrite=overwrite, say=say)
    if not quiet:
        meta = json.loads((path / "bundle.json").read_text())
        test = meta["metrics"].get("test")
        click.echo(f"wrote bundle {path} (halo {meta['halo']}){_test_summary(test)}", err=True)


# ------------------------------------------------------------------- vectorize
@cli.command()
@verbosity
@click.argument("labels", type=str)
@click.option(
    "--out",
    "-o",
    "out",
    required=True,
    type=click.Path(path_type=Path),
    help="Output .gpkg/.shp/.parquet/.fgb.",
)
@click.option(
    "--band",
    type=click.IntRange(min=1),
    default=None,
    help="Band of a single-band class raster (default 1).",
)
@click.option(
    "--mmu",
    type=click.FloatRange(min=0),
    default=None,
    help="Minimum mapping unit in m² (default: 4 pixels; 0 keeps every region).",
)
@click.option(
    "--simplify",
    type=click.FloatRange(min=0),
    default=None,
    help="Coverage simplification tolerance, CRS units (default: one pixel; 0 = exact).",
)
@click.option("--connectivity", type=click.Choice(["4", "8"]), default="4", show_default=True)
@click.option("--dst-crs", default=None, help="Reproject the polygons (e.g. EPSG:4326).")
@click.option("--confidence", is_flag=True, help="Add mean_confidence (geoseg labels.tif only).")
@click.option(
    "--chunk-size",
    type=click.IntRange(min=64),
    default=2048,
    show_default=True,
    help="Pixels per chunk.",
)
@click.option(
    "--scheduler",
    default="threads",
    envvar="GEOSEG_SCHEDULER",
    show_default=True,
    help="processes | threads | sync | local | tcp://HOST:PORT",
)
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Parallel workers.")
@map_codes
@click.option(
    "--ids",
    is_flag=True,
    help="The band holds identifiers (segments, parcels), however many distinct values: "
    "polygonise it without the check that refuses an image band.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.pass_context
@user_errors
def vectorize(
    ctx: click.Context,
    labels: str,
    out: Path,
    band: int | None,
    mmu: float | None,
    simplify: float | None,
    connectivity: str,
    dst_crs: str | None,
    confidence: bool,
    chunk_size: int,
    scheduler: str,
    workers: int | None,
    taxonomy: Path | None,
    level: str | None,
    ids: bool,
    overwrite: bool,
) -> None:
    """Polygonise LABELS (geoseg labels.tif or any single-band class raster).

    Chunks are polygonised in parallel and merged across their seams, so the polygons
    are exactly those of whole-raster polygonisation. By default a minimum mapping
    unit of 4 pixels and a one-pixel coverage simplification give cartographic
    polygons; --mmu 0 --simplify 0 gives the exact pixel-edge polygons. A map geoseg
    did not write (NLCD, another classifier's) takes --taxonomy for its classes' names
    and both levels, as geoseg evaluate reads it.
    """
    from geoseg.workflow import run_vectorize

    layers = run_vectorize(
        labels,
        out,
        mmu=mmu,
        simplify=simplify,
        band=band,
        connectivity=int(connectivity),
        dst_crs=dst_crs,
        confidence=confidence,
        chunk_size=chunk_size,
        scheduler=scheduler,
        workers=workers,
        overwrite=overwrite,
        ids=ids,
        taxonomy=taxonomy,
        level=level,  # type: ignore[arg-type]  # click's Choice
    )
    if not ctx.find_root().obj["quiet"]:
        shapes = layers["landcover"].attrs
        n = len(layers["landcover"])
        click.echo(
            f"wrote {n} polygon{'' if n == 1 else 's'} to {out} "
            f"(mmu {shapes['mmu']:g} m², simplify {shapes['simplify']:g})",
            err=True,
        )


# ----------------------------------------------------------------------- merge
@cli.command()
@verbosity
@click.argument("labels", nargs=-1, required=True, type=str)
@click.option(
    "--out", "-o", "out_dir", type=click.Path(path_type=Path), required=True,
    callback=_out_folder, help="Output directory.",
)  # fmt: skip
@polygon_outputs
@click.option(
    "--rule",
    type=click.Choice(["confidence", "first", "majority", "mean"]),
    default="confidence",
    show_default=True,
    help="At each pixel: the most confident label (a tie to the map listed first); the "
    "first listed map that has a label (the others fill its gaps only); the label most "
    "maps give, coarse then fine (ties to the surer maps; three or more dates); or the "
    "most probable class of the maps' mean class probabilities (each map's "
    "probabilities.tif, from predict --probabilities).",
)
@click.option(
    "--align",
    is_flag=True,
    help="Resample maps in another CRS, at another pixel size or off the first map's pixel "
    "edges onto the first map's grid instead of refusing them (see --resampling).",
)
@_resampling_option("a map")
@click.option(
    "--grid",
    type=str,
    default=None,
    help="A raster (one of LABELS, or any) whose grid - CRS, pixel size, pixel edges - the "
    "merged map takes instead of the first map's; maps off it need --align.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing output directory.")
@click.pass_context
@user_errors
def merge(
    ctx: click.Context,
    labels: tuple[str, ...],
    out_dir: Path,
    formats: str,
    no_vector: bool,
    rule: str,
    align: bool,
    resampling: str,
    grid: str | None,
    overwrite: bool,
) -> None:
    """Merge label maps of one area: surest label, first map's, a vote, or mean probabilities.

    \b
      geoseg predict 2024-06.tif --mask 2024-06_QA.tif --mask-exclude landsat-qa --out jun
      geoseg predict 2024-08.tif --mask 2024-08_QA.tif --mask-exclude landsat-qa --out aug
      geoseg merge aug/labels.tif jun/labels.tif --out summer --rule first

    Cloudy dates fill each other's gaps; overlapping neighbour scenes join without a
    seam. LABELS are geoseg labels.tif files of one taxonomy, CRS and pixel grid (with
    --align, maps on other grids are resampled onto the first's, or --grid's). --rule
    picks each pixel's label: confidence (default), first, majority (three or more
    dates) or mean (of each map's probabilities.tif, from predict --probabilities).
    """  # noqa: D301  (\b keeps click from rewrapping the examples)
    from geoseg.export import parse_formats
    from geoseg.merge import merge_maps

    record = merge_maps(
        labels,
        out_dir,
        vector=not no_vector,
        formats=parse_formats(formats),
        overwrite=overwrite,
        rule=rule,
        align=align,
        grid_of=grid,
        resampling=resampling,
    )
    if not ctx.find_root().obj["quiet"]:
        given = ", ".join(f"{i['pixels_given']:,}" for i in record["inputs"])
        click.echo(
            f"wrote {out_dir} ({', '.join(record['outputs'])}): pixels from each map {given}, "
            f"{record['unlabelled_pixels']:,} unlabelled",
            err=True,
        )


# ---------------------------------------------------------------------- change
@cli.command()
@verbosity
@click.argument("before", type=str)
@click.argument("after", type=str)
@click.option(
    "--out", "-o", "out_dir", type=click.Path(path_type=Path), required=True,
    callback=_out_folder, help="Output directory.",
)  # fmt: skip
@click.option(
    "--align",
    is_flag=True,
    help="Resample AFTER onto BEFORE's grid where it lies on another (CRS, pixel size, pixel "
    "edges) instead of refusing it (see --resampling).",
)
@_resampling_option("AFTER")
@click.option(
    "--taxonomy",
    "taxonomy",
    type=click.Path(path_type=Path),
    default=None,
    help="Taxonomy YAML (or a bundle) of the maps' codes, for maps that geoseg did not write "
    "(by default such a map takes the other map's taxonomy).",
)
@click.option(
    "--level",
    type=click.Choice(["coarse", "fine"]),
    default=None,
    help="Level of a single-band map, where its codes fit both.",
)
@click.option(
    "--zones",
    default=None,
    help="Polygons (districts, parcels) to count each transition in too: change_by_zone.csv.",
)
@click.option("--zone-field", default=None, help="The attribute naming each zone.")
@click.option(
    "--zone-layer", default=None, help="The zones' layer (default: the first with geometries)."
)
@click.option(
    "--reference",
    default=None,
    help="A labelled reference sample drawn on a change.tif of these dates (geoseg sample "
    "change.tif): error-adjusted change areas and accuracies with 95 % intervals.",
)
@click.option("--reference-layer", default=None, help="The sample's layer (default: the first).")
@interval_option("With --reference: the 95 % intervals of the error-adjusted areas")
@polygon_outputs
@polygon_shapes
@click.option("--overwrite", is_flag=True, help="Replace an existing output directory.")
@click.pass_context
@user_errors
def change(
    ctx: click.Context,
    before: str,
    after: str,
    out_dir: Path,
    align: bool,
    resampling: Literal["auto", "nearest", "mode"],
    taxonomy: Path | None,
    level: Literal["coarse", "fine"] | None,
    zones: str | None,
    zone_field: str | None,
    zone_layer: str | None,
    reference: str | None,
    reference_layer: str | None,
    interval: str,
    formats: str,
    no_vector: bool,
    vector_options: Any,
    overwrite: bool,
) -> None:
    """Land-cover change between two label maps: from-to areas, a transition raster, polygons.

    \b
      geoseg predict 2016.tif --model BUNDLE --out y2016 --normalize scene
      geoseg predict 2024.tif --model BUNDLE --out y2024 --normalize scene
      geoseg change y2016/labels.tif y2024/labels.tif --out change-2016-2024
      geoseg change nlcd2011.tif y2024/labels.tif --align --out since-nlcd
      geoseg sample change-2016-2024/change.tif --out ref.gpkg --total 800 --per-class 30
      (label each point's before_coarse / after_coarse in QGIS, then)
      geoseg change y2016/labels.tif y2024/labels.tif --reference ref.gpkg --out adjusted

    BEFORE and AFTER are label maps of one taxonomy: geoseg labels.tif files, or maps of
    class codes another program made (with --taxonomy, or taking the other map's). Every
    pixel labelled in both counts at its true ground area, at both levels: change.json
    and transitions.csv (area and pixels per pair of classes), change.md (the largest
    transitions, each class's losses, gains and net change), change.tif (one band per
    level: each pixel's transition, named in GIS software) and change.gpkg (polygons of
    the changed areas, with from and to classes; --mmu drops changes smaller than it).
    Differences include each map's errors: --reference corrects the areas with a
    labelled sample stratified by change.tif's transitions.
    """  # noqa: D301  (\b keeps click from rewrapping the examples)
    from click.core import ParameterSource

    from geoseg.export import parse_formats
    from geoseg.workflow import run_change

    given = ctx.get_parameter_source("interval") is not ParameterSource.DEFAULT
    if given and reference is None:
        raise click.UsageError("--interval sets the intervals of --reference's estimates: "
                               "give --reference too, or drop --interval")  # fmt: skip
    record = run_change(
        before,
        after,
        out_dir,
        align=align,
        overwrite=overwrite,
        taxonomy=taxonomy,
        level=level,
        vector=not no_vector,
        formats=parse_formats(formats),
        vector_options=vector_options,
        resampling=resampling,
        zones=_zones_option(zones, zone_field, zone_layer),
        reference=None if reference is None else (reference, reference_layer),
        interval=interval,
    )
    if not ctx.find_root().obj["quiet"]:
        coarse = record["levels"]["coarse"]
        unit, scale, digits = ("km²", 1e-6, 3) if record["unit"] == "m2" else ("pixels", 1, 0)
        share = coarse["changed_share"]
        part = "" if share is None else f" ({100 * share:.2f} %)"
        click.echo(
            f"wrote {out_dir} ({', '.join(record['outputs'])}): "
            f"{coarse['area_changed'] * scale:,.{digits}f} of "
            f"{coarse['area_compared'] * scale:,.{digits}f} {unit} changed coarse class{part}",
            err=True,
        )
        adjusted = (record.get("reference") or {}).get("levels", {}).get("coarse")
        if adjusted is not None:
            c = adjusted["changed"]
            if c.get("unsampled_range"):
                lo, hi = (x * scale for x in c["unsampled_range"])
                figure = f"between {lo:,.{digits}f} and {hi:,.{digits}f} {unit} (strata unlabelled)"
            else:
                lo, hi = (x * scale for x in c["ci95"])
                figure = (
                    f"{c['estimated'] * scale:,.{digits}f} {unit} "
                    f"[{lo:,.{digits}f}, {hi:,.{digits}f}]"
                )
            wald = record["reference"].get("interval_method") == "wald"
            click.echo(
                f"error-adjusted from {adjusted['points']:,} reference points: {figure} changed "
                f"coarse class ({'normal' if wald else 'Korn-Graubard'} intervals)",
                err=True,
            )


# ---------------------------------------------------------------------- zonal
@cli.command()
@verbosity
@click.argument("labels", type=str)
@click.argument("zones", type=str)
@click.option(
    "--out", "-o", "out_dir", type=click.Path(path_type=Path), required=True,
    callback=_out_folder, help="Output directory.",
)  # fmt: skip
@click.option("--field", "field_name", required=True, help="The attribute naming each zone.")
@click.option(
    "--layer", default=None, help="The zones' layer (default: the first with geometries)."
)
@map_codes
@click.option("--overwrite", is_flag=True, help="Replace an existing output directory.")
@click.pass_context
@user_errors
def zonal(
    ctx: click.Context,
    labels: str,
    zones: str,
    out_dir: Path,
    field_name: str,
    layer: str | None,
    taxonomy: Path | None,
    level: Literal["coarse", "fine"] | None,
    overwrite: bool,
) -> None:
    """Class areas per zone: each class's area in each district, parcel or watershed.

    \b
      geoseg zonal zion/labels.tif districts.gpkg --field NAME --out zion-districts

    ZONES are polygons in a vector file (any CRS); a pixel is in the zone whose polygon
    covers its centre. Writes zonal.csv (zone, level, class, area, share of the zone's
    labelled area), zonal.json and zonal.md, at both levels, in true ground area.
    """  # noqa: D301  (\b keeps click from rewrapping the examples)
    from geoseg.workflow import run_zonal

    record = run_zonal(
        labels, zones, out_dir, field_name=field_name, layer=layer, taxonomy=taxonomy,
        level=level, overwrite=overwrite,
    )  # fmt: skip
    if not ctx.find_root().obj["quiet"]:
        missing = record["zones_not_on_map"]
        click.echo(
            f"wrote {out_dir} ({', '.join(record['outputs'])}): {len(record['zones'])} zones"
            + (f", {len(missing)} with no pixel on the map" if missing else ""),
            err=True,
        )


# ---------------------------------------------------------------------- sample
@cli.command()
@verbosity
@click.argument("labels", type=str)
@click.option(
    "--out", "-o", type=click.Path(path_type=Path), required=True, help="Points file (.gpkg ...)."
)
@click.option(
    "--per-class",
    type=click.IntRange(min=2, max=1_000_000),
    default=100,
    show_default=True,
    help="Points drawn in each mapped coarse class, or each transition of a change.tif "
    "(all of a smaller one's pixels).",
)
@click.option(
    "--total",
    type=click.IntRange(min=2, max=1_000_000),
    default=None,
    help="Points to share out by area, each class at least --per-class (so the sample "
    "can be larger).",
)
@click.option(
    "--target-se",
    type=float,
    default=None,
    help="Instead of --total: as many points, shared as --total's, as a standard error of "
    "overall accuracy of this size needs (0.01: ± 0.02 at 95 %; Olofsson et al. 2014).",
)
@click.option(
    "--expected-accuracy",
    multiple=True,
    metavar="U|NAME=U",
    help="The user's accuracy --target-se is planned at (default 0.8), and of named "
    "strata (Water=0.6, 'Forest -> Shrubland=0.7'); repeatable.",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0, max=2**32 - 1),
    default=0,
    show_default=True,
    help="Seed of the draw.",
)
@map_codes
@click.option(
    "--pool-below",
    type=float,
    default=0.0,
    show_default=True,
    help="A change.tif's changed transitions each under this share of the compared pixels "
    "(0.001: 0.1 %) share one stratum, '(other changes)'.",
)
@click.option(
    "--strata",
    type=click.Choice(["coarse", "fine"]),
    default="coarse",
    show_default=True,
    help="A map's classes the points are drawn within: coarse, or fine (each fine class "
    "its own stratum, to score every fine class).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing points file.")
@click.pass_context
@user_errors
def sample(
    ctx: click.Context,
    labels: str,
    out: Path,
    per_class: int,
    total: int | None,
    target_se: float | None,
    expected_accuracy: tuple[str, ...],
    seed: int,
    taxonomy: Path | None,
    level: str | None,
    pool_below: float,
    strata: str,
    overwrite: bool,
) -> None:
    """Draw a stratified random sample of LABELS' pixels to label as reference.

    \b
      geoseg sample zion/labels.tif --out reference.gpkg --total 1000 --per-class 50
      (label each point's coarse_code / fine_code in QGIS, then)
      geoseg evaluate zion/labels.tif --coarse reference.gpkg --fine reference.gpkg --out report
      geoseg sample zion/labels.tif --out reference.gpkg --target-se 0.01 --per-class 50 \\
          --expected-accuracy 0.85 --expected-accuracy Water=0.6

    Points lie at pixel centres, in the map's CRS, drawn at random within each mapped
    coarse class (--strata fine: each fine class, for a sample that scores every one
    of them; each point records its stratum and the stratum's area, the weights
    of both levels' areas, on this map or another date's); their empty coarse_code /
    fine_code (c_code / f_code in a Shapefile) are for the reference labels, which
    geoseg evaluate reads to score the map and error-adjust its areas. Any other map
    of class codes takes --taxonomy (a single band of fine codes is stratified by
    their parents), as geoseg evaluate reads it.

    A change.tif of geoseg change is stratified by its transitions instead (--level:
    whose; --pool-below pools the rare changed ones), its points' empty before_coarse /
    after_coarse / before_fine / after_fine for the classes on the ground at each date,
    which geoseg change --reference reads to error-adjust the change areas.
    """  # noqa: D301  (\b keeps click from rewrapping the examples)
    from geoseg.sample_size import TargetPrecision, parse_accuracies
    from geoseg.workflow import run_sample

    if expected_accuracy and target_se is None:
        raise click.UsageError("--expected-accuracy plans --target-se: give --target-se too")
    target = None
    if target_se is not None:
        target = TargetPrecision(target_se, *parse_accuracies(expected_accuracy))
    points = run_sample(
        labels,
        out,
        per_class=per_class,
        total=total,
        seed=seed,
        taxonomy=taxonomy,
        level=level,  # type: ignore[arg-type]  # click's Choice
        pool_below=pool_below,
        overwrite=overwrite,
        target=target,
        strata=strata,  # type: ignore[arg-type]  # click's Choice
    )
    if not ctx.find_root().obj["quiet"]:
        if (plan := points.attrs.get("plan")) is not None:
            click.echo(_plan_line(plan, per_class), err=True)
        strata = points["stratum"].nunique()
        kind = (
            "transition strata"
            if "stratum_name" in points
            else f"{points.attrs.get('strata', 'coarse')} classes"
        )
        more = (
            f" (more than --total {total}: at least --per-class {per_class} in each)"
            if total is not None and len(points) > total
            else ""
        )
        click.echo(f"wrote {len(points)} points in {strata} {kind} to {out}{more}", err=True)


def _plan_line(plan: dict[str, Any], per_class: int) -> str:
    """What a sample sized by --target-se expects."""
    shown = {u for u in plan["expected_accuracy"].values()}
    accuracy = f"{shown.pop():g}" if len(shown) == 1 else "the expected user's accuracies"
    return (
        f"sized for a standard error of overall accuracy of {plan['target_se']:g} at "
        f"{accuracy}: {plan['points']:,} points, as --total {plan['total']} --per-class "
        f"{per_class} draws (expected SE {plan['expected_se']:.4f}; Olofsson et al.'s eq. 13, "
        f"for the optimal allocation: {plan['olofsson_eq13']:,})"
    )


# ----------------------------------------------------------------------- stack
def _wrote_vrt(ctx: click.Context, out: Path, result: Any, what: str = "") -> None:
    """The line a stack or mosaic ends with: its bands and grid (``what``: more first)."""
    from geoseg.vrt import count_of

    if ctx.find_root().obj["quiet"]:
        return
    res = f"{result.transform.a:g} × {-result.transform.e:g}"
    click.echo(
        f"wrote {out}: {what}{count_of(len(result.bands), 'band')} "
        f"({', '.join(result.names)}), {result.width} × {result.height} pixels of {res}",
        err=True,
    )


def vrt_options(func: F) -> F:
    """``--out``, ``--resolution``, ``--resampling`` and ``--overwrite`` of stack and mosaic."""
    for option in reversed(
        [
            click.option(
                "--out",
                "-o",
                "out",
                required=True,
                type=click.Path(path_type=Path),
                help="The .vrt to write.",
            ),
            click.option(
                "--resolution",
                type=click.Choice(["finest", "coarsest"]),
                default="finest",
                show_default=True,
                help="Take the grid of the file with the smallest (or largest) pixels.",
            ),
            click.option(
                "--resampling",
                type=click.Choice(["nearest", "bilinear", "cubic", "average", "mode"]),
                default="nearest",
                show_default=True,
                help="How files on another grid are resampled onto the VRT's.",
            ),
            click.option("--overwrite", is_flag=True, help="Replace an existing VRT geoseg wrote."),
        ]
    ):
        func = option(func)
    return func


def _split_names(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> list[str] | None:
    return None if value is None else [n.strip() for n in value.split(",")]


@cli.command()
@verbosity
@click.argument("files", type=str, nargs=-1, required=True)
@vrt_options
@click.option(
    "--names",
    default=None,
    callback=_split_names,
    help="Comma-separated band names, one per band (default: from the files).",
)
@click.pass_context
@user_errors
def stack(
    ctx: click.Context,
    files: tuple[str, ...],
    out: Path,
    names: list[str] | None,
    resolution: str,
    resampling: str,
    overwrite: bool,
) -> None:
    """Stack band FILES (one file per band, as Landsat and Sentinel-2 ship) into one image.

    \b
      geoseg stack LC08_*_SR_B[2-5].TIF --out scene.vrt
      geoseg predict scene.vrt --model models/zion-nlcd --out zion

    Writes a GDAL VRT (no copy of the pixels) whose bands are named from the files
    (a band description, else the band token of the file name: ..._SR_B2.TIF gives B2,
    ..._B8A_20m.jp2 gives B8A), so a model picks its bands by name. Files at other pixel
    sizes (Sentinel-2's 20 m bands beside its 10 m ones) are resampled onto the finest
    grid as they are read, over the extent every file covers. Every geoseg command reads
    the VRT as an image; it names the files in its own folder (or below) relative
    to it.
    """  # noqa: D301  (\b keeps click from rewrapping the examples)
    from geoseg.stack import write_stack

    result = write_stack(
        list(files),
        out,
        names=names,
        resolution=resolution,
        resampling=resampling,
        overwrite=overwrite,
    )
    _wrote_vrt(ctx, out, result)


# ---------------------------------------------------------------------- mosaic
@cli.command()
@verbosity
@click.argument("files", type=str, nargs=-1, required=True)
@vrt_options
@click.option(
    "--nodata",
    type=float,
    default=None,
    help="Nodata value where no tile reaches (default: the tiles').",
)
@click.pass_context
@user_errors
def mosaic(
    ctx: click.Context,
    files: tuple[str, ...],
    out: Path,
    resolution: str,
    resampling: str,
    nodata: float | None,
    overwrite: bool,
) -> None:
    """Read adjacent tiles FILES of one image as one scene (a GDAL VRT, no copy).

    \b
      geoseg mosaic tiles/*.tif --out area.vrt
      geoseg predict area.vrt --model models/zion-nlcd --out area

    One map and one set of polygons come out, without a seam or a polygon cut at the
    tiles' borders. The mosaic covers every tile, on the finest tile's grid; where tiles
    overlap a later tile's pixels are read (its nodata pixels let the earlier one show),
    and where none reaches the mosaic holds nodata. Tiles hold the same bands, whose
    names the mosaic keeps.
    """  # noqa: D301  (\b keeps click from rewrapping the examples)
    from geoseg.mosaic import write_mosaic

    result = write_mosaic(
        list(files),
        out,
        resolution=resolution,
        resampling=resampling,
        nodata=nodata,
        overwrite=overwrite,
    )
    from geoseg.vrt import count_of

    _wrote_vrt(ctx, out, result, what=f"{count_of(len(result.files), 'tile')}, ")


# ------------------------------------------------------------------------ edit
@cli.command()
@verbosity
@click.argument("path", type=str)
@click.option("--crs", default=None, help="Set the CRS (EPSG:32612, WKT or PROJ).")
@click.option(
    "--transform", default=None, help="Set the geotransform: '[XRES, 0, ULX, 0, -YRES, ULY]'."
)
@click.option("--nodata", type=float, default=None, help="Tag this value as nodata.")
@click.option("--unset-nodata", is_flag=True, help="Remove the nodata tag.")
@click.pass_context
@user_errors
def edit(
    ctx: click.Context,
    path: str,
    crs: str | None,
    transform: str | None,
    nodata: float | None,
    unset_nodata: bool,
) -> None:
    """Set a raster's CRS, geotransform or nodata tag in place (Cloud-Optimized GeoTIFFs too).

    \b
      geoseg edit scene.tif --crs EPSG:32612
      geoseg edit scene.tif --nodata 0

    The fixes that geoseg's messages give for such problems; unlike rio edit-info it
    edits COGs (Landsat Collection 2 files, geoseg's labels.tif), whose optimised layout
    the edit may undo. The pixels, tags and overviews stay as they are.
    """  # noqa: D301  (\b keeps click from rewrapping the examples)
    from geoseg.edit import edit_raster

    now = edit_raster(path, crs=crs, nodata=nodata, unset_nodata=unset_nodata, transform=transform)
    if not ctx.find_root().obj["quiet"]:
        click.echo(
            f"{path}: CRS {now['crs']}, nodata {now['nodata']}, transform {now['transform']}",
            err=True,
        )


# ------------------------------------------------------------------------ info
@cli.command()
@verbosity
@click.argument("path", type=str)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--check",
    is_flag=True,
    help="Also decode every block of a raster (a full read): exit 1 if any fails.",
)
@click.pass_context
@user_errors
def info(ctx: click.Context, path: str, as_json: bool, check: bool) -> None:
    """Describe a scene or label map (raster), a vector file, or a model bundle (directory)."""
    from geoseg.describe import as_text, describe
    from geoseg.errors import RasterReadError
    from geoseg.integrity import undecodable_phrase

    bar = _Bar("check", check and not ctx.find_root().obj["quiet"])
    try:
        d = describe(path, check=check, progress=bar)
    finally:
        bar.close()
    click.echo(json.dumps(d, indent=2) if as_json else as_text(d))
    if check and (found := d["check"])["undecodable"]:
        raise RasterReadError(
            f"{path}: {undecodable_phrase(found)} (first: {found['first_undecodable'][0]}): "
            "the file is corrupt or truncated, re-download or re-export it"
        )


# ------------------------------------------------------------------------ data
@cli.group()
def data() -> None:
    """Sample datasets: list and fetch (GEOSEG_CACHE, GEOSEG_DATA_MIRROR)."""


@data.command("list")
@verbosity
def data_list() -> None:
    """List the registered sample datasets."""
    from geoseg.datasets import list_datasets

    for ds in list_datasets():
        click.echo(f"{ds.name}\t{ds.title}\t[{ds.licence}]")


@data.command("fetch")
@verbosity
@click.argument("name")
@user_errors
def data_fetch(name: str) -> None:
    """Download (or copy from the mirror), verify and derive dataset NAME; print its files."""
    from geoseg.datasets import fetch

    for role, path in fetch(name).items():
        click.echo(f"{role}\t{path}")


#: Commands that run the network keep its freed memory for the next pass
#: (:mod:`geoseg.allocator`); the others do not (``vectorize``'s many threads, sharing
#: one arena, ran 7 % slower).
NETWORK_COMMANDS = frozenset({"predict", "batch", "train", "evaluate", "calibrate"})


def main() -> None:
    """Console-script entry point."""
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    if command in NETWORK_COMMANDS:
        keep_freed_memory()  # first, while the process has one thread
    warnings.showwarning = _show_warning
    stop_on_sigterm()
    cli(prog_name="geoseg")


if __name__ == "__main__":  # pragma: no cover
    main()
