"""geoseg's Python API: the command line's jobs as functions, and a model for arrays.

What a notebook or a script calls; the ``geoseg`` commands run the same jobs (in
:mod:`geoseg.workflow`), so a job gives the same files and the same checks either way
(the errors here give their advice as keyword arguments, not options). Every function raises a
:class:`geoseg.errors.GeosegError` subclass with a one-line message on bad input, and
writes its outputs atomically (a failed call leaves no half-written file).

Examples
--------
Label a scene into a folder (labels.tif, landcover.gpkg, quicklook.png, run.json)::

    from geoseg import api

    run = api.predict("scene.tif", "models/zion-nlcd", "out", formats=("gpkg", "parquet"))
    run["area_per_class"]["fine"]            # [{"code", "name", "pixels", "area_m2"}, ...]

Label an array you already hold (from rasterio, xarray, a data loader)::

    model = api.load_model("models/zion-nlcd")
    result = model.predict(image)            # image: (bands, height, width) raw values
    result.coarse, result.fine, result.confidence
    result.names("fine")                     # {code: class name}
    ds = model.predict(rioxarray.open_rasterio("scene.tif")).to_xarray()  # georeferenced

Polygons and scores without writing files::

    layers = api.vectorize("out/labels.tif")           # {"landcover": GeoDataFrame, ...}
    scores = api.evaluate("out/labels.tif", coarse="l1.tif", fine="l2.tif")
    scores["fine"]["miou"]
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import numbers
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np

from geoseg.errors import ConfigError, GeosegError

if TYPE_CHECKING:
    import geopandas as gpd

    from geoseg.bundle import BundleMeta
    from geoseg.config import TrainConfig
    from geoseg.normalize import BandStatistics
    from geoseg.predict import Predictor
    from geoseg.taxonomy import Taxonomy

Precision = Literal["auto", "fp32", "bf16"]
Level = Literal["coarse", "fine"]

__all__ = [
    "Model",
    "Prediction",
    "change",
    "edit",
    "evaluate",
    "evaluate_model",
    "load_model",
    "merge",
    "mosaic",
    "predict",
    "sample",
    "save_labels",
    "stack",
    "train",
    "vectorize",
    "zonal",
]


#: The command line's advice in errors, as a Python caller gives it.
_FLAGS = {
    "--overwrite": "overwrite=True",
    "--align": "align=True",
    "--resume": "resume=True",
    "--probabilities": "probabilities=True",
    "--tta": "tta=True",
    "--no-vector": "vector=False",
    "--format": "formats",
}
_VALUED = (
    "device", "rule", "precision", "level", "normalize", "region", "scheduler", "nodata",
    "resampling",
)  # fmt: skip
#: Prediction.to_xarray's confidence where a pixel has no label (confidence is 1-100).
CONFIDENCE_FILL = 255


def _python_advice(message: str) -> str:
    """``message`` with the command line's options written as keyword arguments.

    Examples
    --------
    >>> _python_advice("out: output exists: pass --overwrite to replace it")
    'out: output exists: pass overwrite=True to replace it'
    >>> _python_advice("CUDA is not available: use --device cpu; or add --mask-exclude")
    'CUDA is not available: use device="cpu"; or add mask_exclude'

    Shell commands a message gives as the fix keep their options:

    >>> _python_advice("x.tif: no CRS: assign one (geoseg edit x.tif --crs EPSG:NNNN) or --align")
    'x.tif: no CRS: assign one (geoseg edit x.tif --crs EPSG:NNNN) or align=True'
    >>> _python_advice('f.tif: fractions (rio calc "(round (read 1))" f.tif C.tif --dtype int32)')
    'f.tif: fractions (rio calc "(round (read 1))" f.tif C.tif --dtype int32)'
    """
    commands: list[str] = []

    def keep(m: re.Match[str]) -> str:
        commands.append(m[0])
        return f"\x00{len(commands) - 1}\x00"

    message = _SHELL_COMMAND.sub(keep, message)
    for flag, arg in _FLAGS.items():
        message = re.sub(rf"{flag}(?![\w-])", arg, message)
    message = re.sub(
        rf"--({'|'.join(_VALUED)}) ([A-Za-z0-9_:.-]*[A-Za-z0-9])",
        lambda m: f'{m[1]}="{m[2]}"',
        message,
    )
    message = re.sub(r"(?<![\w-])--([a-z][a-z-]*)", lambda m: m[1].replace("-", "_"), message)
    return re.sub("\x00(\\d+)\x00", lambda m: commands[int(m[1])], message)


#: A shell command in a message's fix (``geoseg edit ...``, ``rio warp ...``, GDAL's),
#: up to the end of its parenthesis or clause.
_SHELL_COMMAND = re.compile(
    r"(?:\bgeoseg (?:edit|stack|mosaic|info)|\brio [a-z-]+|\bgdal\w*(?:\.py)?|\bogr2ogr)"
    r" (?:\"[^\"]*\"|'[^']*'|[^;()'\"])*?(?=, or |\)|;|$)"
)


F = TypeVar("F", bound=Callable[..., Any])


def _python_errors(func: F) -> F:
    """Raise the library's errors with advice for a Python caller (see _python_advice)."""

    @functools.wraps(func)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except GeosegError as exc:
            if exc.args and isinstance(exc.args[0], str):
                exc.args = (_python_advice(exc.args[0]), *exc.args[1:])
            raise

    return call  # type: ignore[return-value]


def _path(value: Any, what: str) -> str | Path:
    """``value`` if it names a file (a path or URL), else a one-line error saying what to do."""
    if isinstance(value, str | os.PathLike):
        return value  # type: ignore[return-value]
    if isinstance(value, Model) and what == "bundle":
        return value.path
    hint = {
        "scene": "; to label an array, use load_model(BUNDLE).predict(array)",
        "labels": "; to polygonise or score a Prediction, save it first: prediction.save(PATH)",
    }.get(what, "")
    raise ConfigError(f"{what} is a {type(value).__name__}: pass the path of the {what} file{hint}")


def _paths(values: Any, what: str) -> list[str | Path]:
    """A list of paths, refusing one path given where a list is meant."""
    if isinstance(values, str | os.PathLike):
        raise ConfigError(
            f"{what} is one path ({values}): give a list of paths, e.g. [{str(values)!r}, ...]"
        )
    return [_path(v, what) for v in values]


def _warn_all(notes: Sequence[str], where: str | Path) -> None:
    """Show a job's recorded warnings to a Python caller (the library only logs them)."""
    import warnings

    from geoseg.errors import GeosegWarning

    for note in notes:
        warnings.warn(f"{where}: {note}", GeosegWarning, stacklevel=3)


def _formats(formats: str | Sequence[str]) -> list[str]:
    """``"gpkg,shp"`` or ``("gpkg", "shp")`` as a validated list."""
    from geoseg.export import parse_formats

    return parse_formats(formats if isinstance(formats, str) else ",".join(formats))


@_python_errors
def predict(
    scene: str | Path,
    model: str | Path | Model,
    out: str | Path,
    *,
    tile_size: int | None = None,
    halo: int | None = None,
    block_size: int = 1024,
    batch_size: int = 0,
    device: str = "auto",
    precision: Precision = "auto",
    channels_last: bool | None = None,
    tta: bool = False,
    probabilities: bool = False,
    normalize: Literal["bundle", "scene"] = "bundle",
    formats: str | Sequence[str] = ("gpkg",),
    vector: bool = True,
    mmu: float = 0.0,
    simplify: float = 0.0,
    mask: str | Path | None = None,
    mask_exclude: str | Sequence[int] | None = None,
    scheduler: str = "threads",
    workers: int | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Label a GeoTIFF scene into the folder ``out``, as ``geoseg predict`` does.

    Parameters
    ----------
    scene : str or Path
        The image (a GeoTIFF, a VRT, or a GDAL-readable URL).
    model : str, Path or Model
        A bundle folder (``bundle.json`` + ``weights.safetensors``), or a loaded model
        (its bundle is read again: the jobs load it once per worker).
    out : str or Path
        The output folder; it must not exist unless ``overwrite`` (and then it must be
        an output of geoseg).
    tile_size, halo : int, optional
        Tile core and context in pixels (default: the bundle's).
    block_size : int
        Pixels per task side, rounded up to whole tiles (so at least a tile).
    batch_size : int
        Tiles per forward pass (0: automatic).
    device : {"auto", "cpu", "cuda"}
        Where the network runs.
    precision : {"auto", "fp32", "bf16"}
        Forward-pass precision.
    channels_last : bool, optional
        NHWC memory layout (default on).
    tta : bool
        Average the 8 rotations and reflections of each tile.
    probabilities : bool
        Also write ``probabilities.tif`` (each class's probability in percent).
    normalize : {"bundle", "scene"}
        Standardise the bands with the training data's statistics, or with the scene's
        own (see :func:`geoseg.normalize.scene_normalization`).
    formats : str or sequence of str
        Vector formats among ``gpkg``, ``shp``, ``parquet``, ``fgb``.
    vector : bool
        Write polygons at all.
    mmu, simplify : float
        Minimum mapping unit (m²) and coverage-simplification tolerance (CRS units) of
        the polygons.
    mask : str or Path, optional
        A raster or vector file of pixels to leave out (clouds, shadows, fill).
    mask_exclude : str or sequence of int, optional
        Which of the mask's values leave a pixel out (a preset name or codes).
    scheduler : str
        ``threads``, ``sync``, ``local`` or a Dask scheduler address.
    workers : int, optional
        Threads or local worker processes.
    overwrite, resume : bool
        Replace an existing output; keep and reuse finished blocks of a failed run.
    progress : callable, optional
        ``progress(done, total)`` after each block.

    Returns
    -------
    dict
        The run record, as written to ``out/run.json``.
    """
    from geoseg.infer import InferOptions
    from geoseg.vectorize import VectorizeOptions
    from geoseg.workflow import run_predict

    if isinstance(model, Model):  # its settings, unless they are given otherwise here
        given = {
            "device": device,
            "precision": precision,
            "batch_size": batch_size,
            "channels_last": channels_last,
            "tta": tta,
        }
        defaults = {"device": "auto", "precision": "auto", "batch_size": 0}
        defaults |= {"channels_last": None, "tta": False}
        clash = [
            f"{k}={v!r}" for k, v in given.items() if v != defaults[k] and v != model._settings[k]
        ]
        if clash:
            raise ConfigError(
                f"{', '.join(clash)} differ from the model's settings ({model._settings}): "
                "leave them out to use the model's, or pass the bundle's path"
            )
        settings = model._settings
        device, precision = settings["device"], settings["precision"]
        batch_size, channels_last, tta = (
            settings["batch_size"], settings["channels_last"], settings["tta"]
        )  # fmt: skip
    run = run_predict(
        _path(scene, "scene"),
        _path(model, "bundle"),
        out,
        options=InferOptions(
            tile_size=tile_size,
            halo=halo,
            block_size=block_size,
            batch_size=batch_size,
            device=device,
            precision=precision,
            channels_last=channels_last,
            tta=tta,
            probabilities=probabilities,
            normalize=normalize,
        ),
        scheduler=scheduler,
        workers=workers,
        formats=_formats(formats),
        vector=vector,
        vector_options=VectorizeOptions(mmu=mmu, simplify=simplify),
        overwrite=overwrite,
        progress=progress,
        resume=resume,
        mask=None if mask is None else _path(mask, "mask"),
        mask_exclude=mask_exclude,
    )
    _warn_all(run["warnings"], scene)
    return run


@_python_errors
def merge(
    labels: Sequence[str | Path],
    out: str | Path,
    *,
    rule: Literal["confidence", "first", "majority", "mean"] = "confidence",
    align: bool = False,
    resampling: Literal["auto", "nearest", "mode"] = "auto",
    grid: str | Path | None = None,
    formats: str | Sequence[str] = ("gpkg",),
    vector: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Merge label maps of one area into the folder ``out``, as ``geoseg merge`` does.

    Parameters
    ----------
    labels : sequence of str or Path
        Two or more geoseg ``labels.tif`` files (dates, neighbouring scenes).
    out : str or Path
        The output folder (labels.tif, source.tif, polygons, merge.json).
    rule : {"confidence", "first", "majority", "mean"}
        How each pixel's label is chosen (see :func:`geoseg.merge.merge_maps`).
    align : bool
        Resample maps on other grids instead of refusing them.
    resampling : {"auto", "nearest", "mode"}
        How ``align`` resamples a map: the pixel under each pixel's centre, or the most
        common leaf of its pixels under each (``auto``: ``mode`` for a map at least twice
        as fine along each axis).
    grid : str or Path, optional
        A raster whose grid the merged map takes (default: the first map's).
    formats, vector, overwrite
        As for :func:`predict`.

    Returns
    -------
    dict
        The record written to ``out/merge.json``.
    """
    from geoseg.merge import merge_maps

    record = merge_maps(
        _paths(labels, "labels"),
        out,
        vector=vector,
        formats=_formats(formats),
        overwrite=overwrite,
        rule=rule,
        align=align,
        grid_of=grid,
        resampling=resampling,
    )
    _warn_all(record["warnings"], out)
    return record


@_python_errors
def vectorize(
    labels: str | Path,
    out: str | Path | None = None,
    *,
    mmu: float | None = None,
    simplify: float | None = None,
    band: int | None = None,
    connectivity: int = 4,
    dst_crs: str | None = None,
    confidence: bool = False,
    chunk_size: int = 2048,
    scheduler: str = "threads",
    workers: int | None = None,
    overwrite: bool = False,
    ids: bool = False,
    taxonomy: str | Path | None = None,
    level: Level | None = None,
) -> dict[str, gpd.GeoDataFrame]:
    """Polygonise a label raster, as ``geoseg vectorize`` does.

    Parameters
    ----------
    labels : str or Path
        A geoseg ``labels.tif`` or any single-band class raster.
    out : str or Path, optional
        A vector file to write (``.gpkg``, ``.shp``, ``.parquet``, ``.fgb``); without
        it nothing is written and the layers are only returned.
    mmu, simplify : float, optional
        Minimum mapping unit (m²) and simplification tolerance (CRS units); default:
        four pixels and one pixel (:func:`geoseg.vectorize.cartographic_defaults`).
        ``mmu=0, simplify=0`` gives the exact pixel-edge polygons.
    band : int, optional
        The band of a plain class raster (default 1).
    connectivity : {4, 8}
        Pixel connectivity of a region.
    dst_crs : str, optional
        Reproject the polygons (e.g. ``"EPSG:4326"``).
    confidence : bool
        Add each polygon's ``mean_confidence`` (geoseg labels only).
    chunk_size : int
        Chunk side in pixels.
    scheduler : str
        ``threads``, ``processes``, ``sync``, ``local`` or a Dask scheduler address.
    workers : int, optional
        Parallel workers.
    overwrite : bool
        Replace an existing vector file that geoseg wrote.
    ids : bool
        The band holds identifiers (segments, parcels, objects), however many distinct
        values: polygonised without the check that refuses an image band.
    taxonomy : str or Path, optional
        The taxonomy (YAML, or a bundle) of a map geoseg did not write, such as NLCD:
        its polygons get both levels' codes and names, and a ``coarse`` layer, as a
        geoseg map's (codes it does not list are left out, with a warning).
    level : {"coarse", "fine"}, optional
        The level of such a map's single band, where its codes fit both.

    Returns
    -------
    dict of str to GeoDataFrame
        ``landcover`` (both levels' attributes per fine region) and, for geoseg labels,
        ``coarse`` (the regions of one coarse class); each layer's ``attrs`` hold the
        ``mmu`` and ``simplify`` used.
    """
    from geoseg.workflow import run_vectorize

    return run_vectorize(
        _path(labels, "labels"),
        out,
        mmu=mmu,
        simplify=simplify,
        band=band,
        connectivity=connectivity,
        dst_crs=dst_crs,
        confidence=confidence,
        chunk_size=chunk_size,
        scheduler=scheduler,
        workers=workers,
        overwrite=overwrite,
        ids=ids,
        taxonomy=None if taxonomy is None else _path(taxonomy, "taxonomy"),
        level=level,
    )


@_python_errors
def stack(
    files: Sequence[str | Path],
    out: str | Path,
    *,
    names: Sequence[str] | None = None,
    resolution: Literal["finest", "coarsest"] = "finest",
    resampling: str = "nearest",
    overwrite: bool = False,
) -> Path:
    """Stack band files into one multi-band image (a GDAL VRT), as ``geoseg stack`` does.

    Parameters
    ----------
    files : list of str or Path
        Band files of one scene (one band each or several), in one CRS.
    out : str or Path
        The ``.vrt`` to write; it names local files relative to its folder.
    names : list of str, optional
        A name for every band; default: each band's description, else the band token
        of its file name (``..._SR_B2.TIF`` gives ``B2``), else the file's stem.
    resolution : {"finest", "coarsest"}
        The pixel size and grid of the file with the smallest pixels, or the largest.
    resampling : str
        How files on another grid are resampled: ``nearest``, ``bilinear``, ``cubic``,
        ``average`` or ``mode``.
    overwrite : bool
        Replace an existing stack that geoseg wrote.

    Returns
    -------
    Path
        The VRT written, which ``predict``, ``train`` and ``Model`` read as any image.
    """
    from geoseg.stack import write_stack

    dest = Path(_path(out, "out")).absolute()
    write_stack(
        _paths(files, "files"),
        dest,
        names=None if names is None else list(_paths_or_names(names)),
        resolution=resolution,
        resampling=resampling,
        overwrite=overwrite,
    )
    return dest


@_python_errors
def mosaic(
    files: Sequence[str | Path],
    out: str | Path,
    *,
    resolution: Literal["finest", "coarsest"] = "finest",
    resampling: str = "nearest",
    nodata: float | None = None,
    overwrite: bool = False,
) -> Path:
    """Read adjacent tiles of one image as one scene (a GDAL VRT), as ``geoseg mosaic`` does.

    Parameters
    ----------
    files : list of str or Path
        Tiles with the same bands, in one CRS; where they overlap, a later tile's
        valid pixels are read.
    out : str or Path
        The ``.vrt`` to write; it names local files relative to its folder.
    resolution : {"finest", "coarsest"}
        The pixel size and grid of the tile with the smallest pixels, or the largest.
    resampling : str
        How tiles on another grid are resampled: ``nearest``, ``bilinear``, ``cubic``,
        ``average`` or ``mode``.
    nodata : float, optional
        The nodata value where no tile reaches (default: the tiles'; needed when they
        have none and leave a gap).
    overwrite : bool
        Replace an existing VRT that geoseg wrote.

    Returns
    -------
    Path
        The VRT written, which ``predict`` and ``Model`` read as any image.
    """
    from geoseg.mosaic import write_mosaic

    if nodata is not None and (isinstance(nodata, bool) or not isinstance(nodata, numbers.Real)):
        raise ConfigError(f"nodata is a {type(nodata).__name__} ({nodata!r}): give a number")
    dest = Path(_path(out, "out")).absolute()
    write_mosaic(
        _paths(files, "files"),
        dest,
        resolution=resolution,
        resampling=resampling,
        nodata=nodata,
        overwrite=overwrite,
    )
    return dest


@_python_errors
def edit(
    path: str | Path,
    *,
    crs: str | None = None,
    transform: Sequence[float] | None = None,
    nodata: float | None = None,
    unset_nodata: bool = False,
) -> dict[str, Any]:
    """Set a raster's CRS, geotransform or nodata tag in place, as ``geoseg edit`` does.

    Cloud-Optimized GeoTIFFs too (Landsat Collection 2 files, geoseg's labels.tif), which
    ``rio edit-info`` refuses; pixels, tags and overviews are kept.

    Parameters
    ----------
    path : str or Path
        The raster to change.
    crs : str, optional
        Its CRS (``"EPSG:32612"``, WKT or PROJ).
    transform : sequence of float, optional
        Its geotransform ``(a, b, c, d, e, f)`` (an ``affine.Affine`` too).
    nodata : float, optional
        The value to tag as nodata.
    unset_nodata : bool
        Remove the nodata tag.

    Returns
    -------
    dict
        What the file holds now: ``crs``, ``transform``, ``nodata``.
    """
    import json

    from geoseg.edit import edit_raster

    text = None if transform is None else json.dumps([float(v) for v in list(transform)[:6]])
    return edit_raster(
        _path(path, "path"),
        crs=crs,
        nodata=nodata,
        unset_nodata=unset_nodata,
        transform=text,
    )


@_python_errors
def change(
    before: str | Path,
    after: str | Path,
    out: str | Path | None = None,
    *,
    align: bool = False,
    overwrite: bool = False,
    taxonomy: str | Path | None = None,
    level: Level | None = None,
    vector: bool = True,
    formats: str | Sequence[str] = ("gpkg",),
    mmu: float = 0.0,
    simplify: float = 0.0,
    resampling: Literal["auto", "nearest", "mode"] = "auto",
    zones: str | Path | None = None,
    zone_field: str | None = None,
    zone_layer: str | None = None,
    reference: str | Path | Any | None = None,
    reference_layer: str | None = None,
    interval: Literal["beta", "wald"] = "beta",
) -> dict[str, Any]:
    """Land-cover change between two label maps, as ``geoseg change``.

    Parameters
    ----------
    before, after : str or Path
        The earlier and the later map of one taxonomy (``after`` on ``before``'s grid,
        or resampled onto it with ``align``): geoseg ``labels.tif`` files, or any map of
        class codes (NLCD, ESA WorldCover, another tool's) with ``taxonomy``.
    out : str or Path, optional
        The folder to write (change.json, change.md, transitions.csv, change.tif and the
        changed areas' polygons); without it nothing is written.
    align, overwrite : bool
        As the command's options.
    taxonomy : str or Path, optional
        The taxonomy YAML (or a bundle) of the maps' codes, for maps geoseg did not
        write; a map that is not geoseg's takes the other map's otherwise.
    level : {"coarse", "fine"}, optional
        The level of a single-band map whose codes fit both.
    vector : bool
        Write the polygons of the changed areas (``change.gpkg``: layers
        ``change_fine`` and ``change_coarse``).
    formats : str or sequence of str
        Their formats: ``gpkg``, ``shp``, ``parquet``, ``fgb`` (a file per level).
    mmu, simplify : float
        Minimum mapping unit (m²) and simplification tolerance (CRS units) of the
        polygons, as ``geoseg vectorize``'s.
    resampling : {"auto", "nearest", "mode"}
        How ``align`` resamples ``after`` (``auto``: the most common class of a finer map
        under each pixel, else nearest neighbour).
    zones, zone_field, zone_layer : optional
        Polygons (districts, parcels) whose attribute ``zone_field`` names each, to count
        every transition per zone too (``change_by_zone.csv``).
    reference, reference_layer : optional
        A labelled reference sample drawn on a change.tif of these dates (``sample``'s
        file, or the GeoDataFrame it returned with its ``before_*`` / ``after_*`` labels
        filled in) and its layer: the record's ``reference`` holds the error-adjusted
        change areas and accuracies (:mod:`geoseg.change_reference`).
    interval : {"beta", "wald"}
        Their 95 % intervals: Korn and Graubard's (right for rare classes), or the normal
        ``estimate ± 1.96 SE`` that Olofsson et al. (2014) publish
        (:mod:`geoseg.intervals`).

    Returns
    -------
    dict
        ``change.json``'s record: per level, the area and pixels compared and changed,
        each class's ``before`` / ``after`` / ``lost`` / ``gained`` / ``net`` area and
        every transition found (``area`` in m², or pixels without a CRS).
    """
    from geoseg.vectorize import VectorizeOptions
    from geoseg.workflow import run_change

    record = run_change(
        _path(before, "before"),
        _path(after, "after"),
        None if out is None else _path(out, "out"),
        align=align,
        overwrite=overwrite,
        taxonomy=None if taxonomy is None else _path(taxonomy, "taxonomy"),
        level=level,
        vector=vector,
        formats=_formats(formats),
        vector_options=VectorizeOptions(mmu=mmu, simplify=simplify),
        resampling=resampling,
        zones=_zone_layer(zones, zone_field, zone_layer),
        reference=None if reference is None else (_reference(reference), reference_layer),
        interval=interval,
    )
    _warn_all(record["warnings"], out if out is not None else after)
    return record


@_python_errors
def zonal(
    labels: str | Path,
    zones: str | Path,
    out: str | Path | None = None,
    *,
    field: str,
    layer: str | None = None,
    taxonomy: str | Path | None = None,
    level: Level | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Each class's area in each zone of a vector layer, as ``geoseg zonal``.

    Parameters
    ----------
    labels : str or Path
        The map: a geoseg ``labels.tif``, or any map of class codes with ``taxonomy``.
    zones : str or Path
        Polygons (districts, parcels, watersheds) in a vector file, any CRS.
    out : str or Path, optional
        The folder to write (zonal.csv, zonal.json, zonal.md); without it nothing is
        written.
    field : str
        The attribute naming each zone.
    layer, taxonomy, level, overwrite
        As the command's options.

    Returns
    -------
    dict
        ``zonal.json``'s record: per zone, its area on the map and each class's area at
        each level (m², or pixels without a CRS).
    """
    from geoseg.workflow import run_zonal

    return run_zonal(
        _path(labels, "labels"),
        _path(zones, "zones"),
        None if out is None else _path(out, "out"),
        field_name=field,
        layer=layer,
        taxonomy=None if taxonomy is None else _path(taxonomy, "taxonomy"),
        level=level,
        overwrite=overwrite,
    )


@_python_errors
def sample(
    labels: str | Path,
    out: str | Path | None = None,
    *,
    per_class: int = 100,
    total: int | None = None,
    seed: int = 0,
    taxonomy: str | Path | None = None,
    level: Level | None = None,
    pool_below: float = 0.0,
    overwrite: bool = False,
    target_se: float | None = None,
    expected_accuracy: float | Mapping[str, float] | None = None,
    strata: Level = "coarse",
) -> Any:
    """Draw a stratified random reference sample to label, as ``geoseg sample``.

    Parameters
    ----------
    labels : str or Path
        A geoseg ``labels.tif`` (or any map of class codes with ``taxonomy``): points
        drawn within each mapped coarse class, for ``evaluate`` to score a map and
        error-adjust its areas. Or a ``change.tif`` of ``change``: points drawn within
        each transition, for ``change(..., reference=)`` to error-adjust the change.
    out : str or Path, optional
        The points file to write (``.gpkg``, ``.shp``, ``.parquet``, ``.fgb``); without
        it the points are only returned.
    per_class, total, seed, taxonomy, level, pool_below, overwrite
        As the command's options (``level``: of a change.tif, whose transitions are the
        strata; ``pool_below``: its rare changed transitions pooled into one stratum).
    target_se : float, optional
        Instead of ``total``: size the sample for this standard error of overall
        accuracy (Olofsson et al. 2014), its points shared as ``total``'s are; the
        frame's ``attrs["plan"]`` says what it expects (:mod:`geoseg.sample_size`).
    expected_accuracy : float or mapping of str to float, optional
        The user's accuracy ``target_se`` is planned at (default 0.8): one for every
        stratum, or per stratum name or value (``{"Water": 0.6, "*": 0.85}``: ``*`` for
        the others).
    strata : {"coarse", "fine"}
        A map's classes the points are drawn within: its coarse classes, or its fine
        ones (each a stratum, a coarse class without fine classes one of its own).

    Returns
    -------
    geopandas.GeoDataFrame
        The points, with their strata, stratum areas, the map's classes and empty
        reference fields.
    """
    from geoseg.workflow import run_sample

    return run_sample(
        _path(labels, "labels"),
        None if out is None else _path(out, "out"),
        per_class=per_class,
        total=total,
        seed=seed,
        taxonomy=None if taxonomy is None else _path(taxonomy, "taxonomy"),
        level=level,
        pool_below=pool_below,
        overwrite=overwrite,
        target=_target(target_se, expected_accuracy),
        strata=strata,
    )


def _target(se: float | None, accuracy: float | Mapping[str, float] | None) -> Any:
    """``sample``'s target precision (None without ``se``)."""
    from geoseg.sample_size import TargetPrecision

    if se is None:
        if accuracy is not None:
            raise ConfigError("expected_accuracy plans target_se: give target_se too")
        return None
    if accuracy is None:
        return TargetPrecision(se)
    if isinstance(accuracy, Mapping):
        rest = {str(k): float(v) for k, v in accuracy.items() if k != "*"}
        return TargetPrecision(se, float(accuracy.get("*", 0.8)), rest)
    return TargetPrecision(se, float(accuracy))


def _reference(value: Any) -> Any:
    """A reference sample's path as text, or the GeoDataFrame itself."""
    if hasattr(value, "geometry") and hasattr(value, "columns"):
        return value
    if not isinstance(value, str | os.PathLike):
        raise ConfigError(
            f"reference is a {type(value).__name__}: pass the points' file, or the "
            "GeoDataFrame sample() returned with its labels filled in"
        )
    return str(value)


def _zone_layer(
    zones: str | Path | None, field: str | None, layer: str | None
) -> tuple[str, str, str | None] | None:
    """``(file, field, layer)`` of zones given with their field, else a one-line error."""
    if zones is None:
        if field is not None:
            raise ConfigError(f"zone_field {field!r} without zones: pass the zones' file too")
        return None
    if field is None:
        raise ConfigError(f"zones {zones}: pass zone_field, the attribute naming each zone")
    return str(_path(zones, "zones")), field, layer


def _paths_or_names(names: Sequence[str]) -> list[str]:
    """``names`` as a list, refusing one string given where a list is meant."""
    if isinstance(names, str):
        example = names.split(",")
        raise ConfigError(f"names is one string ({names!r}): give a list, e.g. {example!r}")
    return [str(n) for n in names]


@_python_errors
def evaluate(
    labels: str | Path,
    out: str | Path | None = None,
    *,
    coarse: str | Path | None = None,
    fine: str | Path | None = None,
    taxonomy: str | Path | None = None,
    level: Level | None = None,
    align: bool = False,
    checkerboard: int | None = None,
    split_grid: str | Path | None = None,
    coarse_field: str = "coarse_code",
    fine_field: str = "fine_code",
    layer: str | None = None,
    bootstrap: int = 1000,
    overwrite: bool = False,
    interval: Literal["beta", "wald"] = "beta",
) -> dict[str, Any]:
    """Score a label map against truth, as ``geoseg evaluate LABELS`` does.

    Parameters
    ----------
    labels : str or Path
        A geoseg ``labels.tif``, or another map with ``taxonomy`` (and ``level``).
    out : str or Path, optional
        The report folder (``metrics.json``, ``metrics.md``, confusion PNGs); without
        it nothing is written and the scores are only returned.
    coarse, fine : str or Path, optional
        Truth of each level: a raster, or a vector file of labelled features.
    taxonomy : str or Path, optional
        Taxonomy YAML (or a bundle) of a map that geoseg did not write.
    level : {"coarse", "fine"}, optional
        Level of a single-band map whose codes fit both.
    align : bool
        Resample truth on another grid onto the map's (nearest neighbour) instead of
        refusing it.
    checkerboard : int, optional
        Score only the test blocks of a checkerboard split of this block size, placed on
        the truth raster's grid (a crop or mosaic of the scene is scored on its blocks).
    split_grid : str or Path, optional
        A raster on the grid the split was drawn on, where it is not the truth's.
    coarse_field, fine_field, layer : str
        Where vector truth keeps its classes.
    bootstrap : int
        Block-bootstrap replicates of the 95 % intervals (0: none).
    overwrite : bool
        Replace an existing report folder.
    interval : {"beta", "wald"}
        The 95 % intervals of a point sample's error-adjusted areas and accuracies:
        Korn and Graubard's, or the normal ``estimate ± 1.96 SE`` (:mod:`geoseg.intervals`).

    Returns
    -------
    dict
        Per level (``coarse``, ``fine``): the confusion matrix, per-class IoU / F1 /
        precision / recall, ``miou``, ``overall_accuracy``, ``kappa`` (of the scored
        pixels or points, each alike), the error-adjusted ``area`` and, for a point
        sample, ``area["map_scores"]``: the map's mIoU, class IoU and F1 estimated
        from its design (:mod:`geoseg.map_scores`); plus the hierarchy-consistency rate
        (as ``metrics.json``).
    """
    from geoseg.vector_labels import VectorField

    labels = _path(labels, "labels")
    vector = {
        "coarse": VectorField(coarse_field, "coarse_field", layer, "layer"),
        "fine": VectorField(fine_field, "fine_field", layer, "layer"),
    }
    from geoseg.workflow import run_evaluate_labels

    return run_evaluate_labels(
        labels,
        out,
        coarse_truth=coarse,
        fine_truth=fine,
        taxonomy=taxonomy,
        level=level,
        align=align,
        checkerboard=checkerboard,
        split_grid=split_grid,
        bootstrap=bootstrap,
        overwrite=overwrite,
        vector=vector,
        interval=interval,
    )


@_python_errors
def evaluate_model(
    model: str | Path,
    config: str | Path,
    out: str | Path,
    *,
    region: str = "test",
    scheduler: str = "threads",
    tta: bool = False,
    bootstrap: int = 1000,
    overwrite: bool = False,
    interval: Literal["beta", "wald"] = "beta",
) -> dict[str, Any]:
    """Run a bundle on a config's test blocks and score it into the report folder ``out``.

    As ``geoseg evaluate --model --config`` does. ``region``: ``test`` (the config's
    held-back blocks) or ``all``; other parameters as for :func:`evaluate`.
    """
    from geoseg.infer import InferOptions
    from geoseg.workflow import run_evaluate_bundle

    return run_evaluate_bundle(
        _path(model, "bundle"),
        _path(config, "config"),
        out,
        options=InferOptions(tta=tta),
        scheduler=scheduler,
        region=region,
        bootstrap=bootstrap,
        overwrite=overwrite,
        interval=interval,
    )


@_python_errors
def train(
    config: str | Path | Mapping[str, Any] | TrainConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
    max_steps: int | None = None,
    progress: bool = False,
) -> Path:
    """Train a hierarchical model and save it as a bundle, as ``geoseg train`` does.

    Parameters
    ----------
    config : str, Path, mapping or TrainConfig
        A YAML config file, or its contents as a mapping (relative paths in it are
        relative to the current folder), or a loaded :class:`geoseg.config.TrainConfig`.
    out : str or Path
        The bundle folder to write.
    overwrite : bool
        Replace an existing bundle that geoseg wrote.
    resume : bool
        Continue an interrupted run from its last epoch (the same bundle results).
    max_steps : int, optional
        Stop after this many optimiser steps (a quick trial run).
    progress : bool
        Show progress bars.

    Returns
    -------
    Path
        The bundle folder.
    """
    from geoseg.workflow import run_train

    return run_train(
        config, out, overwrite=overwrite, resume=resume, max_steps=max_steps, progress=progress
    )


@dataclasses.dataclass(frozen=True, eq=False)
class Prediction:
    """The labels of an array, as the bands of a geoseg ``labels.tif``.

    Attributes
    ----------
    coarse, fine : numpy.ndarray
        ``(height, width)`` class codes of each level; ``taxonomy.nodata`` where the
        input is not valid, and in the fine band where the coarse class has no fine
        classes (as in ``labels.tif``).
    confidence : numpy.ndarray
        ``(height, width)`` uint8: the chosen leaf's probability in percent (1-100).
    probabilities : numpy.ndarray or None
        ``(n_coarse + n_fine, height, width)`` uint8 percent per class (coarse classes,
        then fine classes, in taxonomy order; 255 where not valid), when asked for.
    taxonomy : Taxonomy
        The model's classes.
    transform, crs : optional
        Where the image lies (an ``affine.Affine`` and a CRS), when given to
        :meth:`Model.predict`: :meth:`save` writes them.
    """

    coarse: np.ndarray
    fine: np.ndarray
    confidence: np.ndarray
    probabilities: np.ndarray | None
    taxonomy: Taxonomy
    transform: Any = None
    crs: Any = None
    bundle: str = ""  # "NAME SHA256" of the model, for the saved map's GEOSEG_BUNDLE tag
    # the dims and coordinates of an xarray image labelled, for to_xarray
    grid: Mapping[str, Any] | None = dataclasses.field(default=None, repr=False)

    def __repr__(self) -> str:
        h, w = self.coarse.shape
        where = f", crs={self.crs}" if self.crs is not None else ""
        return (
            f"Prediction({h} x {w} px, {int(self.valid.sum()):,} labelled, taxonomy "
            f"{self.taxonomy.name!r}{', probabilities' if self.probabilities is not None else ''}"
            f"{where})"
        )

    @property
    def valid(self) -> np.ndarray:
        """``(height, width)`` pixels that were labelled."""
        return self.coarse != self.taxonomy.nodata  # type: ignore[no-any-return]

    def names(self, level: Level) -> dict[int, str]:
        """Class code -> name of the codes of ``level``'s band."""
        tax = self.taxonomy
        if level == "coarse":
            return {c.code: c.name for c in tax.coarse}
        if level == "fine":
            return {c.code: c.name for c in tax.fine}
        raise ConfigError(f"level {level!r} is not one of coarse, fine")

    def to_xarray(self) -> Any:
        """The labels as an :class:`xarray.Dataset` (needs xarray).

        Variables ``coarse``, ``fine`` and ``confidence`` (and ``probabilities``, dims
        ``(class, y, x)`` with coordinates ``class_level``, ``class_code``,
        ``class_name``, when asked for) on the image's own dims and coordinates when it
        was an xarray image, else on ``y``/``x`` pixel centres from ``transform``. The
        class names are CF ``flag_values`` / ``flag_meanings``, the nodata code is each
        variable's ``_FillValue``, and the georeferencing is a ``spatial_ref``
        grid-mapping variable, as rioxarray writes it (``ds.rio.crs``,
        ``ds.coarse.rio.to_raster(...)``).

        Returns
        -------
        xarray.Dataset
        """
        from geoseg.xarray_image import to_dataset

        try:
            import xarray  # noqa: F401
        except ImportError:
            raise ConfigError(
                "to_xarray needs xarray: pip install xarray (or 'geoseg[xarray]')"
            ) from None
        tax = self.taxonomy
        fill = self.coarse.dtype.type(tax.nodata)

        def flags(classes: Sequence[Any], level: str) -> dict[str, Any]:
            attrs: dict[str, Any] = {"long_name": f"{level} class", "_FillValue": fill}
            if classes:
                attrs["flag_values"] = np.array([c.code for c in classes], self.coarse.dtype)
                # CF: words of letters, digits and _.+-@ ("Shrub/Scrub" -> "Shrub_Scrub")
                attrs["flag_meanings"] = " ".join(
                    re.sub(r"[^A-Za-z0-9_.+\-@]+", "_", c.name) for c in classes
                )
            return {**attrs, "taxonomy": tax.name}

        attrs = {
            "coarse": flags(tax.coarse, "coarse"),
            "fine": flags(tax.fine, "fine"),
            "confidence": {
                "long_name": "probability of the chosen class",
                "units": "percent",
                "_FillValue": np.uint8(CONFIDENCE_FILL),
            },
            "probabilities": {"long_name": "probability of each class", "units": "percent"},
        }
        probs = None
        if self.probabilities is not None:
            from geoseg.write import PROBABILITY_NODATA

            attrs["probabilities"]["_FillValue"] = np.uint8(PROBABILITY_NODATA)
            classes = [("coarse", c) for c in tax.coarse] + [("fine", c) for c in tax.fine]
            class_coords: dict[str, list[Any]] = {
                "class_level": [level for level, _ in classes],
                "class_code": [c.code for _, c in classes],
                "class_name": [c.name for _, c in classes],
            }
            probs = (self.probabilities, class_coords)
        # confidence is 1-100: 255 marks the unlabelled pixels, whatever the taxonomy's
        # nodata (300 would be 44 in uint8)
        # (np.where of Dask arrays is Dask's: predict_lazy's result stays lazy)
        confidence = np.where(self.coarse != tax.nodata, self.confidence, CONFIDENCE_FILL)
        import json

        return to_dataset(
            {"coarse": self.coarse, "fine": self.fine, "confidence": confidence.astype(np.uint8)},
            dataset_attrs={
                "geoseg_taxonomy": json.dumps(tax.to_dict(), separators=(",", ":")),
                **({"geoseg_bundle": self.bundle} if self.bundle else {}),
            },
            attrs=attrs,
            grid=self.grid,
            transform=self.transform,
            crs=self.crs,
            probabilities=probs,
        )

    @_python_errors
    def save(
        self,
        path: str | Path,
        *,
        transform: Any = None,
        crs: Any = None,
        overwrite: bool = False,
    ) -> Path:
        """Write the labels as a geoseg ``labels.tif`` (a COG with styles beside it).

        The file is what ``geoseg predict`` writes (bands coarse, fine, confidence; the
        taxonomy in its tags), so :func:`vectorize`, :func:`evaluate` and :func:`merge`
        take it.

        Parameters
        ----------
        path : str or Path
            The GeoTIFF to write.
        transform, crs : optional
            The image's georeferencing (default: those given to :meth:`Model.predict`);
            without them the file has pixel coordinates only.
        overwrite : bool
            Replace an existing file.

        Returns
        -------
        Path
            ``path``.
        """
        from geoseg.atomic import output_lock

        path = Path(path)
        if path.suffix.lower() not in (".tif", ".tiff"):
            raise ConfigError(f"{path}: a labels raster is a GeoTIFF: name it .tif")
        with output_lock(path):
            return self._save(path, transform=transform, crs=crs, overwrite=overwrite)

    def _save(self, path: Path, *, transform: Any, crs: Any, overwrite: bool) -> Path:
        """:meth:`save`, holding ``path``."""
        from rasterio.windows import Window

        transform = self.transform if transform is None else transform
        crs = self.crs if crs is None else crs
        height, width = self.coarse.shape
        labels = np.stack([self.coarse, self.fine, self.confidence.astype(self.coarse.dtype)])
        return _write_map(
            path,
            [(Window(0, 0, width, height), labels)],
            (height, width),
            transform=transform,
            crs=crs,
            taxonomy=self.taxonomy,
            bundle=self.bundle,
            overwrite=overwrite,
        )


@dataclasses.dataclass(frozen=True)
class _Image:
    """An image as :meth:`Model.predict` labels it (see :meth:`Model._image`)."""

    data: Any  # (bands, H, W), the model's bands in its order; NumPy, or Dask when lazy
    nodata: tuple[float | None, ...]  # per band
    valid: Any  # (H, W) bool, or None: pixels to label besides the values' own validity
    transform: Any
    crs: Any
    grid: Mapping[str, Any] | None  # an xarray image's dims and coordinates


def _write_map(
    path: Path,
    parts: Any,
    shape: tuple[int, int],
    *,
    transform: Any,
    crs: Any,
    taxonomy: Taxonomy,
    bundle: str,
    overwrite: bool,
) -> Path:
    """Write ``(window, (3, h, w) labels)`` parts as a geoseg ``labels.tif`` at ``path``."""
    from geoseg.atomic import check_writable, remove_tree, temporary_dir
    from geoseg.write import BUNDLE_TAG, MAP_ID, new_map_id, write_labels

    check_writable(path, overwrite=overwrite, kind="file")
    if transform is None:  # a CRS without a transform would put the map at (0, 0)
        crs = None
    existed = path.exists()
    tmp = temporary_dir(path)
    try:
        written = write_labels(
            tmp / path.name,
            parts,
            width=shape[1],
            height=shape[0],
            crs=crs,
            transform=transform,
            taxonomy=taxonomy,
            tags={MAP_ID: new_map_id(), **({BUNDLE_TAG: bundle} if bundle else {})},
        )
        for f in sorted(tmp.iterdir()):  # the raster last: its styles are beside it first
            beside = path.parent / f.name
            # a style of the user's beside no raster of ours is theirs to keep
            if f != written and (existed or not beside.exists()):
                os.replace(f, beside)
        os.replace(written, path)
    finally:
        remove_tree(tmp)
    return path


@_python_errors
def save_labels(labels: Any, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write labels held as xarray (:meth:`Model.predict_lazy`) as a geoseg ``labels.tif``.

    The file is what ``geoseg predict`` writes (a COG of bands coarse, fine and
    confidence, the taxonomy in its tags, styles beside it), so :func:`vectorize`,
    :func:`evaluate`, :func:`merge` and :func:`change` take it. A Dask-backed Dataset is
    computed a row of chunks at a time (the chunks of a row in parallel on the active
    scheduler), so memory holds one row of blocks, not the scene.

    Parameters
    ----------
    labels : xarray.Dataset
        From :meth:`Model.predict_lazy` or :meth:`Prediction.to_xarray` (its
        ``geoseg_taxonomy`` attribute says the classes).
    path : str or Path
        The GeoTIFF to write.
    overwrite : bool
        Replace an existing file.
    """
    import json

    from rasterio.windows import Window

    from geoseg.atomic import output_lock
    from geoseg.taxonomy import Taxonomy
    from geoseg.xarray_image import is_xarray, read_image

    path = Path(_path(path, "path"))
    if path.suffix.lower() not in (".tif", ".tiff"):
        raise ConfigError(f"{path}: a labels raster is a GeoTIFF: name it .tif")
    names = getattr(labels, "data_vars", {})  # a Dataset's variables
    if not is_xarray(labels) or not all(v in names for v in ("coarse", "fine", "confidence")):
        raise ConfigError(
            "labels is not a Dataset of coarse, fine and confidence: pass what "
            "Model.predict_lazy (or Prediction.to_xarray) returns"
        )
    raw = labels.attrs.get("geoseg_taxonomy")
    if not isinstance(raw, str):
        raise ConfigError(
            "labels has no geoseg_taxonomy attribute (its classes): pass what "
            "Model.predict_lazy (or Prediction.to_xarray) returns, attributes kept"
        )
    tax = Taxonomy.from_dict(json.loads(raw), source="the Dataset's geoseg_taxonomy")
    where = read_image(labels["coarse"], compute=False)
    coarse = labels["coarse"].transpose(*where.grid["dims"]).data
    fine = labels["fine"].transpose(*where.grid["dims"]).data
    confidence = labels["confidence"].transpose(*where.grid["dims"]).data
    height, width = coarse.shape
    dtype = np.dtype(tax.dtype)
    # labels.tif's confidence is the nodata code where a pixel has no label
    confidence = np.where(coarse == tax.nodata, tax.nodata, confidence)

    def parts() -> Any:
        stack = np.stack([coarse, fine, confidence]).astype(dtype)  # Dask's where lazy
        chunks = getattr(stack, "chunks", None)
        rows = chunks[1] if chunks is not None else [1024] * -(-height // 1024)
        for r0, r1 in itertools.pairwise(int(v) for v in np.cumsum([0, *rows])):
            r1 = min(r1, height)
            block = stack[:, r0:r1]  # a row of chunks, computed together
            data = block.compute() if hasattr(block, "compute") else block
            yield Window(0, r0, width, r1 - r0), np.asarray(data)

    with output_lock(path):
        return _write_map(
            path,
            parts(),
            (height, width),
            transform=where.transform,
            crs=where.crs,
            taxonomy=tax,
            bundle=str(labels.attrs.get("geoseg_bundle", "")),
            overwrite=overwrite,
        )


def _georeferencing(transform: Any, crs: Any) -> tuple[Any, Any]:
    """``transform`` and ``crs`` checked: an ``affine.Affine`` and a CRS rasterio reads."""
    from affine import Affine

    if transform is not None and not isinstance(transform, Affine):
        raise ConfigError(
            f"transform is {transform!r}: give an affine.Affine (rasterio's src.transform; "
            "from GDAL's order, Affine.from_gdal(*geotransform))"
        )
    if crs is not None:
        from rasterio.crs import CRS
        from rasterio.errors import CRSError

        try:
            crs = CRS.from_user_input(crs)
        except CRSError as exc:
            raise ConfigError(f"crs {crs!r} is not one rasterio reads ({exc})") from None
    return transform, crs


def _is_dask(obj: Any) -> bool:
    """Whether ``obj`` is a Dask array (without importing dask)."""
    return type(obj).__module__.startswith("dask.")


class Model:
    """A trained bundle, loaded once, that labels arrays in memory.

    The labels are those ``geoseg predict`` writes for a GeoTIFF of the same pixels:
    the same tiles, halo, normalisation, decision offsets and hierarchy. Use
    :func:`load_model` to make one. One model may serve several threads. Pickled (to
    send it to other processes), it carries its bundle's path, settings and SHA-256, and
    is loaded from the bundle where it is first used (once per process and settings, as
    the jobs' workers load it; a Dask scheduler that only passes it on never loads
    torch); a bundle changed since :func:`load_model` is an error there, not another
    model.
    """

    def __init__(
        self,
        predictor: Predictor | None,
        path: str,
        settings: Mapping[str, Any],
        bundle_id: str = "",
    ) -> None:
        self._loaded = predictor
        self.path = path
        self._settings = dict(settings)
        self._bundle_id = bundle_id

    def __reduce__(self) -> tuple[Any, ...]:
        return (Model, (None, self.path, self._settings, self._bundle_id))

    @property
    def _bundle_tag(self) -> str:
        """``NAME SHA256`` of the bundle, for a saved map's ``GEOSEG_BUNDLE`` tag."""
        return f"{self.meta.name} {self._bundle_id}" if self._bundle_id else ""

    @property
    def _predictor(self) -> Predictor:
        """The loaded network: loaded here on first use where the model was unpickled."""
        if self._loaded is None:
            from geoseg.predict import cached_predictor

            self._loaded = cached_predictor(
                self.path, **self._settings, bundle_id=self._bundle_id or None
            )
        return self._loaded

    @property
    def meta(self) -> BundleMeta:
        """The bundle's metadata (``bundle.json``)."""
        return self._predictor.meta

    @property
    def taxonomy(self) -> Taxonomy:
        """The model's classes."""
        return self.meta.taxonomy

    @property
    def bands(self) -> tuple[str, ...]:
        """The band names the model reads, in order."""
        return tuple(self.meta.bands)

    @property
    def tile_size(self) -> int:
        """Recommended tile core side in pixels."""
        return int(self.meta.tile_size)

    @property
    def halo(self) -> int:
        """Context pixels around each tile that make tiled labels seamless."""
        return int(self.meta.halo)

    @property
    def pixel_size(self) -> float | None:
        """The training images' pixel size in metres (``None`` where unknown)."""
        return self.meta.pixel_size

    @property
    def device(self) -> str:
        """Where the network runs (``cpu``, ``cuda:0``)."""
        return str(self._predictor.device)

    def __repr__(self) -> str:
        return (
            f"Model({self.path!r}, bands={list(self.bands)}, {self.taxonomy.n_coarse} coarse / "
            f"{self.taxonomy.n_fine} fine classes, device={self.device!r})"
        )

    def _bands_in_order(
        self, image: np.ndarray, band_names: Sequence[str | None] | None
    ) -> np.ndarray:
        """The indexes of the model's bands among the image's (by name where given)."""
        wanted = self.bands
        by_index = [re.fullmatch(r"band([1-9][0-9]*)", b) for b in wanted]
        if band_names is None and all(by_index):  # trained on bands given by index
            ks = [int(m[1]) for m in by_index if m is not None]
            if max(ks) <= image.shape[0]:  # band K of the image, as geoseg predict reads it
                return np.array([k - 1 for k in ks])
        if band_names is None:
            if image.shape[0] != len(wanted):
                hint = (
                    " (it looks like (height, width, bands): np.moveaxis(image, -1, 0))"
                    if image.shape[-1] == len(wanted)
                    else ""
                )
                raise ConfigError(
                    f"the image has {image.shape[0]} bands and {self.path} reads "
                    f"{len(wanted)} ({', '.join(wanted)}){hint}: pass (bands, height, width) "
                    "with those bands in that order, or band_names to pick them by name"
                )
            return np.arange(len(wanted))
        if isinstance(band_names, str):
            raise ConfigError(
                f"band_names is the text {band_names!r}: give a list, one name per band"
            )
        from geoseg.raster import band_index, default_band_name, same_named

        # rasterio's descriptions are None for a band without one: bandK, as open_scene
        names = [n or default_band_name(i) for i, n in enumerate(band_names, start=1)]
        if len(names) != image.shape[0]:
            raise ConfigError(
                f"band_names lists {len(names)} names for an image of {image.shape[0]} bands: "
                "give one name per band"
            )
        if (twice := same_named(names, wanted)) is not None:
            raise ConfigError(
                f"band_names names bands {', '.join(map(str, twice[1]))} all {twice[0]!r}, "
                f"one of the bands {self.path} reads: name them apart"
            )
        idx = [band_index(names, b) for b in wanted]
        missing = [b for b, i in zip(wanted, idx, strict=True) if i is None]
        if missing:
            raise ConfigError(
                f"{self.path} reads bands {', '.join(wanted)} and the image has no band "
                f"{', '.join(missing)} (its bands: {', '.join(names)}): rename them in "
                "band_names or pass the bands the model was trained on"
            )
        return np.array([i - 1 for i in idx if i is not None])

    def _image(
        self,
        image: Any,
        *,
        valid: Any,
        nodata: float | None,
        band_names: Sequence[str | None] | None,
        transform: Any,
        crs: Any,
        lazy: bool,
    ) -> _Image:
        """The model's bands of ``image``, their nodata and validity, and where they lie.

        ``lazy``: a Dask-backed image (or valid mask) stays lazy, else it is computed.
        """
        from geoseg.xarray_image import is_xarray, read_image

        grid, image_nodata = None, None
        if is_xarray(image):  # its band names, georeferencing and nodata, unless given
            xa = read_image(
                image,
                compute=not lazy,
                wanted=self.bands if band_names is None else None,
                need_transform=transform is None,
                need_crs=crs is None,
            )
            image, image_nodata = xa.data, xa.nodata
            numbers = xa.band_numbers
            if band_names is None and numbers is not None:  # a file's unnamed bands
                if all(re.fullmatch(r"band[1-9][0-9]*", b) for b in self.bands):
                    band_names = tuple(f"band{k}" for k in numbers)  # band K of the file
                elif list(numbers) != sorted(numbers):  # reordered: read in the file's order
                    perm = np.argsort(numbers, kind="stable")
                    image = image[perm]
                    image_nodata = tuple(image_nodata[i] for i in perm)
            band_names = xa.band_names if band_names is None else band_names
            crs = xa.crs if crs is None else crs
            if transform is None:  # else the caller's grid, not the image's coordinates
                transform, grid = xa.transform, xa.grid
        if isinstance(image, str | os.PathLike) or hasattr(image, "read_masks"):
            raise ConfigError(
                f"the image is {image!r}, a file: label files with api.predict(path, ...), or "
                "pass its pixels (rioxarray.open_rasterio(path), or rasterio's src.read())"
            )
        transform, crs = _georeferencing(transform, crs)
        masked = None
        if isinstance(image, np.ma.MaskedArray):
            masked = np.ma.getmaskarray(image)
            data = np.asarray(image.data)
        elif lazy and _is_dask(image):
            data = image
        else:
            data = np.asarray(image)
        if data.ndim == 2 and len(self.bands) == 1:
            data = data[None]
            masked = None if masked is None else masked[None]
        if data.ndim != 3 or 0 in data.shape:
            raise ConfigError(
                f"the image has shape {data.shape}: pass (bands, height, width), e.g. "
                "rasterio's src.read() or an xarray DataArray with dims (band, y, x)"
            )
        if data.dtype.kind not in "uif":
            raise ConfigError(
                f"the image is of dtype {data.dtype}: pass numbers (integer or float band values)"
            )
        if nodata is not None and not isinstance(nodata, int | float | np.number):
            raise ConfigError(f"nodata is {nodata!r}: give a number (or None)")
        order = self._bands_in_order(data, band_names)
        data = data[order]
        if nodata is None and image_nodata is not None:
            band_nodata = tuple(image_nodata[i] for i in order)
        else:
            band_nodata = (nodata,) * data.shape[0]
        ok = None
        if valid is not None:
            if not (lazy and _is_dask(valid)):
                valid = np.asarray(valid)
            if valid.shape != data.shape[1:]:
                raise ConfigError(
                    f"valid has shape {valid.shape} and the image {data.shape[1:]}: pass one "
                    "boolean per pixel"
                )
            ok = valid.astype(bool)
        if masked is not None:
            unmasked = ~masked[order].any(axis=0)
            ok = unmasked if ok is None else ok & unmasked
        return _Image(data, band_nodata, ok, transform, crs, grid)

    @_python_errors
    def predict(
        self,
        image: Any,
        *,
        valid: np.ndarray | None = None,
        nodata: float | None = None,
        band_names: Sequence[str | None] | None = None,
        tile_size: int | None = None,
        halo: int | None = None,
        probabilities: bool = False,
        normalize: Literal["bundle", "scene"] | BandStatistics = "bundle",
        transform: Any = None,
        crs: Any = None,
    ) -> Prediction:
        """Label an image held in memory.

        Parameters
        ----------
        image : array-like
            ``(bands, height, width)`` raw band values, in the units the model was
            trained on (e.g. Landsat DN for the Zion bundle): a NumPy array (a masked
            array's masked pixels are not valid, as rasterio's ``read(masked=True)``
            gives), an xarray ``DataArray`` or ``Dataset`` (see below), or anything
            ``numpy.asarray`` takes (a Dask array, computed here). A single-band model
            also takes ``(height, width)``. An xarray image (``rioxarray.open_rasterio``,
            odc-stac, stackstac) gives its band names, nodata, transform and CRS, where
            the arguments below do not: dims ``y``/``x`` (or ``lat``/``lon``) and one
            band dim in any order (other dims of size 1 are dropped), or a Dataset of one
            variable per band; see :mod:`geoseg.xarray_image`. The result's
            :meth:`Prediction.to_xarray` lies on the image's coordinates.
        valid : numpy.ndarray, optional
            ``(height, width)`` boolean, ``False`` for pixels to leave unlabelled; from a
            GeoTIFF, ``src.dataset_mask() > 0`` (its nodata, mask band or alpha).
        nodata : float, optional
            A value that marks missing pixels in any band (as a GeoTIFF's nodata);
            NaN and infinite values are always missing. Default: an xarray image's own
            (``_FillValue``, ``nodata``), band by band.
        band_names : sequence of str, optional
            The image's band names, to pick the model's bands by name (as ``geoseg
            predict`` does with band descriptions; ``None`` or ``""`` for a band without
            a name, as rasterio's ``src.descriptions`` gives, reads as ``bandK``);
            without them the image's bands are the model's, in order, except for a
            model trained on bands given by index (``bands: [4, 3, 2]``: ``band4``...),
            which reads band K of the image, as ``geoseg predict`` does.
        tile_size, halo : int, optional
            Tiling (default: the bundle's), multiples of the network's output stride.
        probabilities : bool
            Also return each class's probability (see :class:`Prediction`).
        normalize : {"bundle", "scene"} or BandStatistics
            Standardise the bands with the training data's statistics, with the
            image's own valid pixels' (see :func:`geoseg.normalize.scene_normalization`),
            or with those :meth:`statistics` measured on a whole scene (to label its
            windows one at a time as the whole would be).
        transform, crs : optional
            The image's georeferencing (``src.transform``, ``src.crs``), kept on the
            result for :meth:`Prediction.save`; an xarray image's own by default (a
            ``transform`` given puts the result on that grid, not the image's
            coordinates).

        Returns
        -------
        Prediction
            Coarse and fine codes and confidence, the shape of the image.

        Warns
        -----
        GeosegWarning
            The image's values lie far outside those the model was trained on (other
            units: reflectance into a DN model), or, given ``transform`` and ``crs``, its
            pixels are far from the training images' size, as ``geoseg predict`` warns.
        """
        from geoseg.predict import predict_array
        from geoseg.raster import valid_mask

        img = self._image(
            image,
            valid=valid,
            nodata=nodata,
            band_names=band_names,
            transform=transform,
            crs=crs,
            lazy=False,
        )
        data, transform, crs = img.data, img.transform, img.crs
        ok = valid_mask(data, img.nodata)
        if img.valid is not None:
            ok &= img.valid
        tile, ctx = self._tiling(tile_size, halo, ok.shape)
        self._check_normalize(normalize)
        self._check_values(_sample_pixels(data, ok))
        if transform is not None and crs is not None:  # as the input check of predict
            self._check_pixel_size(transform, crs, ok.shape)
        own = None
        if normalize == "scene":  # exactly as predict --normalize scene reads a file
            from geoseg.normalize import array_moments

            own = self._normalization(self._statistics(array_moments(data, ok)))
        elif not isinstance(normalize, str):
            own = self._normalization(normalize)
        tax = self.taxonomy
        probs = (
            np.empty((tax.n_coarse + tax.n_fine, *ok.shape), dtype=np.uint8)
            if probabilities
            else None
        )
        out = predict_array(
            self._predictor,
            data,
            ok,
            tile_size=tile,
            halo=ctx,
            probabilities=probs,
            normalization=own,
        )
        return Prediction(
            coarse=out[0],
            fine=out[1],
            confidence=out[2].astype(np.uint8),
            probabilities=probs,
            taxonomy=tax,
            transform=transform,
            crs=crs,
            bundle=self._bundle_tag,
            grid=img.grid,
        )

    @_python_errors
    def predict_lazy(
        self,
        image: Any,
        *,
        valid: Any = None,
        nodata: float | None = None,
        band_names: Sequence[str | None] | None = None,
        tile_size: int | None = None,
        halo: int | None = None,
        block_size: int = 1024,
        probabilities: bool = False,
        normalize: Literal["bundle", "scene"] | BandStatistics = "bundle",
        transform: Any = None,
        crs: Any = None,
        torch_threads: int | None = None,
    ) -> Any:
        """Label an image larger than memory, lazily: a Dask-backed :class:`xarray.Dataset`.

        The labels are those :meth:`predict` gives (the same tiles, halo, mirrored edges
        and decision offsets), as a Dask graph of one task per block of ``block_size``
        pixels that reads its block plus the halo from ``image``. Nothing runs until the
        result is computed (``ds.compute()``, ``ds.to_zarr(...)``,
        ``ds.fine.rio.to_raster(..., tiled=True, lock=threading.Lock())``), on whatever
        Dask scheduler is active (a ``distributed.Client`` sends the tasks to its
        workers, which load the model from its bundle, so the bundle must be readable
        there), and memory holds a few blocks at a time.

        Parameters
        ----------
        image : xarray.DataArray, xarray.Dataset, dask.array.Array or numpy.ndarray
            As for :meth:`predict`; a Dask-backed image stays lazy (chunks of about the
            block size, aligned to it, read least).
        valid : array-like, optional
            ``(height, width)`` pixels to label (NumPy or Dask), besides the image's
            nodata and NaN.
        nodata, band_names, tile_size, halo, probabilities, transform, crs
            As for :meth:`predict`.
        normalize : {"bundle", "scene"} or BandStatistics
            As for :meth:`predict`; ``"scene"`` computes the image's statistics first
            (:meth:`statistics`: one parallel pass over it, before this returns).
        block_size : int
            Pixels per task side, rounded up to whole tiles.
        torch_threads : int, optional
            Torch intra-op threads per task (default: torch's own). On a threaded
            scheduler running ``k`` tasks at once, about ``cpus // k`` avoids
            oversubscribing the cores.

        Returns
        -------
        xarray.Dataset
            Dask-backed, laid out as :meth:`Prediction.to_xarray`.

        Raises
        ------
        ConfigError
            As :meth:`predict`; xarray is not installed.
        """
        import functools

        from geoseg.lazy import lazy_labels
        from geoseg.tiles import TileGrid

        try:
            import xarray  # noqa: F401
        except ImportError:
            raise ConfigError(
                "predict_lazy needs xarray: pip install xarray (or 'geoseg[xarray]')"
            ) from None
        if block_size < 1:
            raise ConfigError(f"block_size is {block_size}: give a positive number of pixels")
        if torch_threads is not None and torch_threads < 1:
            raise ConfigError(f"torch_threads is {torch_threads}: give 1 or more (or None)")
        img = self._image(
            image,
            valid=valid,
            nodata=nodata,
            band_names=band_names,
            transform=transform,
            crs=crs,
            lazy=True,
        )
        self._check_normalize(normalize)
        height, width = img.data.shape[1:]
        tile, ctx = self._tiling(tile_size, halo, (height, width))
        grid = TileGrid.create(
            height,
            width,
            tile_size=tile,
            halo=ctx,
            block_size=block_size,
            stride=self.meta.output_stride,
        )
        self._check_values(_central_sample(img.data, img.nodata))
        if img.transform is not None and img.crs is not None:
            self._check_pixel_size(img.transform, img.crs, (height, width))
        own = None
        if normalize == "scene":
            from geoseg.lazy import lazy_moments

            own = self._normalization(
                self._statistics(lazy_moments(img.data, img.valid, img.nodata))
            )
        elif not isinstance(normalize, str):
            own = self._normalization(normalize)
        tax = self.taxonomy
        n_probs = tax.n_coarse + tax.n_fine if probabilities else 0
        labels, probs = lazy_labels(
            img.data,
            img.valid,
            functools.partial(_label_block, self, grid, img.nodata, n_probs, torch_threads, own),
            grid,
            dtype=np.dtype(tax.dtype),
            n_probabilities=n_probs,
        )
        result = Prediction(
            coarse=labels[0],
            fine=labels[1],
            confidence=labels[2].astype(np.uint8),
            probabilities=probs,
            taxonomy=tax,
            transform=img.transform,
            crs=img.crs,
            bundle=self._bundle_tag,
            grid=img.grid,
        )
        return result.to_xarray()

    def _tiling(
        self, tile_size: int | None, halo: int | None, shape: tuple[int, int]
    ) -> tuple[int, int]:
        """The tile size and halo to label an image of ``shape`` with (checked)."""
        stride = self.meta.output_stride
        tile = self.tile_size if tile_size is None else tile_size
        if tile_size is None:  # an image smaller than a tile needs no bigger tile
            tile = min(tile, -(-max(shape) // stride) * stride)
        ctx = self.halo if halo is None else halo
        for name, value in (("tile_size", tile), ("halo", ctx)):
            if value < (1 if name == "tile_size" else 0) or value % stride:
                raise ConfigError(
                    f"{name} is {value}: give a multiple of the network's output stride "
                    f"{stride}{' (at least one)' if name == 'tile_size' else ''}"
                )
        return tile, ctx

    @_python_errors
    def statistics(
        self,
        image: Any,
        *,
        valid: Any = None,
        nodata: float | None = None,
        band_names: Sequence[str | None] | None = None,
    ) -> BandStatistics:
        """The image's own band statistics, for ``normalize=`` of its parts.

        The per-band mean and standard deviation of the valid pixels of the model's
        bands, as ``normalize="scene"`` measures them. Measured once on a whole scene
        (a Dask-backed one is read in one parallel pass, chunk by chunk) and passed to
        :meth:`predict` of each of its windows, they label every window as the whole
        scene labelled with ``normalize="scene"``; a window labelled with its own
        statistics would be standardised differently from its neighbours.

        Parameters
        ----------
        image, valid, nodata, band_names
            As for :meth:`predict` (and :meth:`predict_lazy`: Dask stays lazy).

        Returns
        -------
        BandStatistics
        """
        from geoseg.lazy import lazy_moments
        from geoseg.normalize import array_moments
        from geoseg.raster import valid_mask

        img = self._image(
            image,
            valid=valid,
            nodata=nodata,
            band_names=band_names,
            transform=None,
            crs=None,
            lazy=True,
        )
        if _is_dask(img.data) or _is_dask(img.valid):
            return self._statistics(lazy_moments(img.data, img.valid, img.nodata))
        ok = valid_mask(img.data, img.nodata)
        if img.valid is not None:
            ok &= img.valid
        return self._statistics(array_moments(img.data, ok))

    def _statistics(self, moments: Any) -> BandStatistics:
        from geoseg.normalize import BandStatistics

        return BandStatistics(
            bands=self.bands,
            mean=tuple(moments.mean.tolist()),
            std=tuple(moments.std.tolist()),
            pixels=int(moments.count),
        )

    def _normalization(self, stats: BandStatistics) -> Any:
        """The bundle's normalisation with the bands' statistics replaced by ``stats``."""
        from geoseg.normalize import scene_normalization

        if tuple(stats.bands) != self.bands:
            raise ConfigError(
                f"the statistics are of bands {', '.join(stats.bands)} and {self.path} "
                f"reads {', '.join(self.bands)}: measure them with this model's statistics()"
            )
        return scene_normalization(list(stats.mean), list(stats.std), self.meta.normalization)

    def _check_normalize(self, normalize: Any) -> None:
        from geoseg.normalize import BandStatistics

        if isinstance(normalize, BandStatistics):
            return
        if normalize not in ("bundle", "scene"):
            raise ConfigError(
                f"normalize {normalize!r} is not one of bundle, scene, or the BandStatistics "
                "of Model.statistics()"
            )

    def _check_pixel_size(self, transform: Any, crs: Any, shape: tuple[int, int]) -> None:
        """Warn where the image's pixels are far from the training images' size."""
        import warnings

        from geoseg.area import ground_sample_distance
        from geoseg.errors import GeosegWarning
        from geoseg.workflow import resolution_warning

        size = ground_sample_distance(crs, transform, shape)
        note = resolution_warning("the image", size, self.meta.pixel_size)
        if note:
            warnings.warn(note, GeosegWarning, stacklevel=4)

    def _check_values(self, pixels: np.ndarray) -> None:
        """Warn where the image's values are far from the training data's (other units)."""
        import warnings

        from geoseg.errors import GeosegWarning
        from geoseg.normalize import check_input_range, robust_statistics

        if not pixels.size:
            return
        check = check_input_range(
            *robust_statistics(pixels),
            self.meta.normalization,
            self.bands,
            path="the image",
        )
        if check.warning:
            warnings.warn(check.warning, GeosegWarning, stacklevel=3)


#: Valid pixels whose values :meth:`Model.predict` checks (and takes the statistics
#: of, with ``normalize="scene"``) at most: every k-th beyond, as the input check of
#: ``geoseg predict`` samples a file.
SAMPLE_PIXELS = 1_000_000


def _label_block(
    model: Model,
    grid: Any,
    nodata: tuple[float | None, ...],
    n_probabilities: int,
    threads: int | None,
    normalization: Any,
    data: np.ndarray,
    valid: np.ndarray | None,
    block: Any,
) -> tuple[np.ndarray, np.ndarray | None]:
    """One block of :meth:`Model.predict_lazy` (a task: ``model`` pickles by its bundle)."""
    from geoseg.devices import torch_threads
    from geoseg.raster import valid_mask

    ok = valid_mask(data, nodata)
    if valid is not None:
        ok &= valid
    probs = (
        np.empty((n_probabilities, block.height, block.width), np.uint8)
        if n_probabilities
        else None
    )
    with torch_threads(threads):
        labels = model._predictor.predict_block(
            data, ok, grid, block, probabilities=probs, normalization=normalization
        )
    return labels, probs


def _central_sample(data: Any, nodata: tuple[float | None, ...]) -> np.ndarray:
    """``(bands, n)`` valid values of the central window (at most 1024²) of a lazy image.

    One read near the middle, for the units check of :meth:`Model.predict_lazy`
    (a decimated sample of the whole image would read every chunk).
    """
    from geoseg.raster import valid_mask

    height, width = data.shape[1:]
    side = 1024
    r0, c0 = max(0, (height - side) // 2), max(0, (width - side) // 2)
    window = np.asarray(data[:, r0 : r0 + side, c0 : c0 + side])
    return _sample_pixels(window, valid_mask(window, nodata))


def _sample_pixels(data: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``(bands, n)`` float64 values of the valid pixels, every k-th beyond SAMPLE_PIXELS."""
    pixels = data[:, valid]
    step = -(-pixels.shape[1] // SAMPLE_PIXELS)
    return pixels[:, ::step].astype(np.float64) if step > 1 else pixels.astype(np.float64)


@_python_errors
def load_model(
    bundle: str | Path,
    *,
    device: str = "auto",
    precision: Precision = "auto",
    batch_size: int = 0,
    channels_last: bool | None = None,
    tta: bool = False,
) -> Model:
    """Load a bundle to label arrays in memory (see :meth:`Model.predict`).

    Parameters
    ----------
    bundle : str or Path
        A bundle folder (``bundle.json`` + ``weights.safetensors``).
    device : {"auto", "cpu", "cuda"}
        Where the network runs.
    precision : {"auto", "fp32", "bf16"}
        Forward-pass precision (``auto``: bf16 where the device runs it natively).
    batch_size : int
        Tiles per forward pass (0: automatic).
    channels_last : bool, optional
        NHWC memory layout (default on).
    tta : bool
        Average the 8 rotations and reflections of each tile.
    """
    from geoseg.bundle import bundle_hash, read_meta
    from geoseg.devices import resolve_device
    from geoseg.predict import cached_predictor
    from geoseg.raster import absolute_path

    if batch_size < 0:
        raise ConfigError(f"batch_size is {batch_size}: give 0 (automatic) or more")
    resolve_device(device)  # a device torch does not know is a one-line error
    bundle = absolute_path(_path(bundle, "bundle"))  # the same bundle from another folder
    read_meta(bundle)  # a missing or broken bundle is a one-line error
    predictor = cached_predictor(  # loaded once per process (and per unpickling there)
        bundle,
        device=device,
        batch_size=batch_size,
        precision=precision,
        channels_last=channels_last,
        tta=tta,
        bundle_id=(bundle_id := bundle_hash(bundle)),
        verified=True,
    )
    settings = {
        "device": device,
        "precision": precision,
        "batch_size": batch_size,
        "channels_last": channels_last,
        "tta": tta,
    }
    return Model(predictor, bundle, settings, bundle_id)
