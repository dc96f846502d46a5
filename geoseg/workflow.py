"""The end-to-end prediction job: scene + bundle -> an output directory.

``run_predict`` validates everything up front (scene, bundle, bands, output), runs the
block graph, assembles ``labels.tif``, vectorises, exports, renders the quick-look and
writes ``run.json`` - all inside a temporary sibling directory that becomes the
output directory only when every step succeeded.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import json
import logging
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import rasterio

from geoseg import fixes
from geoseg._version import __version__
from geoseg.allocator import freed_memory_kept, release_free_memory
from geoseg.area import ground_sample_distance, is_planar_true, pixel_area_m2, pixel_areas
from geoseg.atomic import atomic_dir, check_writable, locks_output, remove_tree
from geoseg.bundle import BundleMeta, bundle_hash, read_meta
from geoseg.cluster import check_scheduler, check_workers
from geoseg.devices import available_cpus
from geoseg.export import FORMATS, write_vector
from geoseg.infer import (
    InferOptions,
    band_matching,
    band_warning,
    build_tasks,
    check_options,
    compute_blocks,
    default_workers,
    load_predictor,
    make_grid,
    match_bands,
    merge_results,
)
from geoseg.normalize import check_input_range, scene_normalization, untagged_fill_warning
from geoseg.raster import (
    Scene,
    absolute_path,
    is_remote,
    open_scene,
    sample_bands,
    scene_moments,
    with_mask,
)
from geoseg.taxonomy import Taxonomy
from geoseg.tiles import LAYOUT_VERSION, TileGrid
from geoseg.vector_labels import VectorField
from geoseg.vectorize import VectorizeOptions, vectorize_layers
from geoseg.write import (
    BUNDLE_TAG,
    MAP_ID,
    assemble_labels,
    assemble_probabilities,
    block_path,
    new_map_id,
    probabilities_dir,
)

if TYPE_CHECKING:
    from geoseg.config import TrainConfig

log = logging.getLogger(__name__)


@locks_output("out_dir")
def run_predict(
    scene_path: str | Path,
    bundle_path: str | Path,
    out_dir: str | Path,
    *,
    options: InferOptions | None = None,
    scheduler: str = "threads",
    workers: int | None = None,
    formats: Sequence[str] = ("gpkg",),
    vector: bool = True,
    vector_options: VectorizeOptions | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    on_client: Callable[[Any], None] | None = None,
    resume: bool = False,
    client: Any = None,
    cancel: threading.Event | None = None,
    mask: str | Path | None = None,
    mask_exclude: Any = None,
) -> dict[str, Any]:
    """Predict a scene into ``out_dir`` (labels.tif, landcover.*, quicklook.png, run.json).

    Parameters
    ----------
    scene_path : str or Path
        Input GeoTIFF (or GDAL-readable URL).
    bundle_path : str or Path
        Model bundle directory.
    out_dir : str or Path
        Output directory; must not exist unless ``overwrite``.
    options : InferOptions, optional
        Tile size, halo, block size, batch size, device.
    scheduler : str
        ``threads`` (default), ``sync``, ``local`` or ``tcp://HOST:PORT``.
    workers : int, optional
        Threads or local worker processes.
    formats : sequence of str
        Vector formats to write (``gpkg``, ``shp``, ``parquet``, ``fgb``).
    vector : bool
        Write polygons at all.
    vector_options : VectorizeOptions, optional
        Minimum mapping unit and simplification of the polygons.
    overwrite : bool
        Replace an existing output directory.
    progress : callable, optional
        ``progress(done, total)`` per finished block.
    on_client : callable, optional
        Called with the Dask client of distributed schedulers.
    resume : bool
        Keep finished blocks if the run fails (in a hidden sibling of ``out_dir``,
        named after the inputs and parameters) and reuse them when the same run is
        started again with ``resume``; without it a failed run leaves nothing behind.
        A finished ``out_dir`` that :func:`up_to_date` finds still standing is kept,
        and its ``run.json`` returned with ``"kept": True`` added.
    client : distributed.Client, optional
        An open Dask client to run on (shared by the scenes of a batch).
    cancel : threading.Event, optional
        Set by another thread to stop this run between blocks, as if interrupted.
    mask : str or Path, optional
        A raster of pixels to leave out (clouds, shadows, fill), on the scene's grid or
        resampled onto it: they become nodata (see :mod:`geoseg.scene_mask`).
    mask_exclude : str or sequence of int, optional
        Which of the mask's values leave a pixel out (see
        :meth:`geoseg.scene_mask.MaskRule.parse`); required with ``mask``.

    Returns
    -------
    dict
        The contents of ``run.json``.
    """
    t_start = time.perf_counter()
    opts = options or InferOptions()
    check_options(opts)
    check_scheduler(scheduler)
    for f in formats:
        if f not in FORMATS:
            from geoseg.errors import ConfigError

            raise ConfigError(f"unknown vector format {f!r}: choose from {', '.join(FORMATS)}")
    meta = read_meta(bundle_path)
    scene = with_mask(open_scene(scene_path, image=True), mask, mask_exclude)
    bands = match_bands(scene, meta)
    grid = make_grid(scene, meta, opts)
    bundle_id = bundle_hash(bundle_path)
    token = labels_token(scene, bundle_id, grid, bands, opts)
    if resume and not overwrite and Path(out_dir).is_dir():
        wanted = wanted_settings(opts, formats, vector, vector_options, token)
        kept = up_to_date(Path(out_dir), str(scene_path), bundle_id, wanted)
        if kept is not None:
            log.info("%s: made from the same input, model and settings: kept", out_dir)
            return {**kept, "kept": True}
    check_writable(
        Path(out_dir),
        overwrite=overwrite,
        inputs=(scene_path, bundle_path, *([scene.mask.path] if scene.mask else [])),
        output="map",
    )
    out_dir = Path(out_dir).absolute()  # workers write the blocks: not relative to their cwd
    masked = mask_record(scene)
    input_check = check_input(scene, meta, bands)
    own_stats = None
    if opts.normalize == "scene":  # the scene's own band statistics (another date's)
        moments = scene_moments(scene.path, bands, scene.mask)
        own_stats = scene_normalization(
            moments.mean.tolist(), moments.std.tolist(), meta.normalization
        )
        input_check["scene_normalization"] = {
            "mean": [round(v, 6) for v in own_stats.mean[: len(bands)]],
            "std": [round(v, 6) for v in own_stats.std[: len(bands)]],
        }
    workers = workers or default_workers(scheduler, opts.device)
    if opts.torch_threads is None and scheduler == "local":
        opts = InferOptions(
            **{**opts.__dict__, "torch_threads": max(1, available_cpus() // workers)}
        )
    # opening and checking the input (and, where default_workers resolves the device,
    # importing torch: about 3 s in a fresh process)
    timings: dict[str, float] = {"prepare": time.perf_counter() - t_start}
    partial = out_dir.parent / f".{out_dir.name}.partial-{token[:16]}"
    blocks_dir = partial / "blocks"
    # a resumed run whose blocks are all done needs no network
    all_done = resume and all(block_path(blocks_dir, b).exists() for b in grid.blocks())
    if client is None and scheduler in ("sync", "threads") and not all_done:
        t0 = time.perf_counter()  # the blocks' network, built here (see load_predictor)
        load_predictor(str(Path(bundle_path).resolve()), opts, bundle_id)
        timings["load"] = time.perf_counter() - t0
    if partial.exists() and not resume:
        shutil.rmtree(partial)
    blocks_dir.mkdir(parents=True, exist_ok=True)
    if opts.probabilities:
        probabilities_dir(blocks_dir).mkdir(exist_ok=True)
    try:
        t0 = time.perf_counter()
        tasks = build_tasks(
            scene,
            str(Path(bundle_path).resolve()),
            grid,
            bands,
            opts,
            blocks_dir,
            bundle_id,
            normalization=own_stats,
        )
        bundle_abs = str(Path(bundle_path).resolve())

        ran_with = {"workers": 1 if scheduler == "sync" else workers}
        lost_workers: list[str] = []  # said by the check, for run.json

        def preflight(c: Any) -> None:
            ran_with["workers"] = check_workers(
                c, scene.path, bundle_abs, str(blocks_dir), notes=lost_workers
            )
            if on_client is not None:
                on_client(c)

        results = compute_blocks(
            tasks,
            scheduler,
            progress=progress,
            workers=workers,
            on_client=preflight,
            client=client,
            cancel=cancel,
        )
        timings["blocks"] = time.perf_counter() - t0
        if vector and formats:
            # the polygon step's allocations would fragment the network's kept heap, and
            # the next pass would grow it: Zion with polygons, one process, 3.2 GB
            # instead of 2.8 GB. Without polygons the memory stays for the next scene.
            release_free_memory()
        coarse_px, fine_px, phases = merge_results(results)
        run_warnings = []  # for run.json and the batch summary, beside the log
        if not any(n for code, n in coarse_px.items() if code != meta.taxonomy.nodata):
            run_warnings.append(
                "every pixel is nodata, so labels.tif is all nodata and there are no "
                "polygons: check the input's nodata value and mask"
            )
        for w in run_warnings:
            log.warning("%s: %s", scene.path, w)
        run_warnings += lost_workers  # logged by check_workers
        if (note := band_warning(scene, meta)) is not None:  # logged when matched
            run_warnings.insert(0, note)
        if masked:  # logged by mask_record
            run_warnings += masked["warnings"]
        for key in ("warning", "fill_warning", "resolution_warning"):  # logged by check_input
            if input_check[key]:
                run_warnings.append(input_check[key].removeprefix(f"{scene.path}: "))
        if scene.crs is None and vector and formats:  # labels alone need no CRS
            where = (
                "pixel coordinates (column, row), their area_m2 in pixels"
                if scene.affine.is_identity
                else "the units of its geotransform, with no CRS"
            )
            note = (
                f"the image has no CRS: labels.tif keeps its grid, and the polygons are in "
                f"{where}; assign the image's CRS ({fixes.assign_crs(scene.path)}) for map "
                "coordinates"
            )
            log.warning("%s: %s", scene.path, note)
            run_warnings.append(note)
        if cancel is not None and cancel.is_set():  # the blocks were done: not the rest
            raise KeyboardInterrupt
        with atomic_dir(out_dir, overwrite=overwrite, output="map") as tmp:
            t0 = time.perf_counter()
            # the same in probabilities.tif; the model, for merges of other models' maps
            map_tags = {MAP_ID: new_map_id(), BUNDLE_TAG: f"{meta.name} {bundle_id}"}
            labels = assemble_labels(
                blocks_dir, grid, scene, meta.taxonomy, tmp / "labels.tif", map_tags
            )
            timings["assemble"] = time.perf_counter() - t0
            outputs = ["labels.tif"]
            if opts.probabilities:
                t0 = time.perf_counter()
                assemble_probabilities(
                    blocks_dir, grid, scene, meta.taxonomy, tmp / "probabilities.tif", map_tags
                )
                timings["probabilities"] = time.perf_counter() - t0
                outputs.append("probabilities.tif")
            n_polygons = None
            if vector and formats:
                t0 = time.perf_counter()
                # a scene without a CRS is warned of above, by its own name (not the
                # temporary labels.tif's)
                layers = vectorize_layers(labels, vector_options, cancel=cancel, warn_crs=False)
                n_polygons = len(layers["landcover"])
                timings["vectorize"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                for f in formats:
                    if cancel is not None and cancel.is_set():
                        raise KeyboardInterrupt
                    name = f"landcover{FORMATS[f]}"
                    write_vector(layers, tmp / name, taxonomy=meta.taxonomy)
                    outputs.append(name)
                timings["export"] = time.perf_counter() - t0
            from geoseg.quicklook import render_quicklook

            t0 = time.perf_counter()
            render_quicklook(labels, meta.taxonomy, tmp / "quicklook.png")
            outputs.append("quicklook.png")
            timings["quicklook"] = time.perf_counter() - t0
            timings["total"] = time.perf_counter() - t_start
            areas = area_per_class(
                labels, scene.crs, scene.affine, scene.shape, coarse_px, fine_px, meta.taxonomy
            )
            run = {
                "geoseg_version": __version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "map_id": map_tags[MAP_ID],  # labels.tif's GEOSEG_MAP_ID tag
                "input": {
                    "path": str(scene.path),
                    "mtime": scene.mtime,
                    "width": scene.width,
                    "height": scene.height,
                    "bands": list(scene.band_names),
                    "bands_used": list(bands),
                    "dtype": scene.dtype,
                    "crs": scene.crs.to_string() if scene.crs else None,
                    "transform": list(scene.transform),
                    "mask": masked,
                    **({"reads": list(scene.reads)} if scene.reads else {}),
                },
                "input_check": input_check,
                "warnings": run_warnings,
                "bundle": {
                    "path": absolute_path(bundle_path),
                    "name": meta.name,
                    "sha256": bundle_id,
                },
                "parameters": {
                    "tile_size": grid.tile_size,
                    "halo": grid.halo,
                    "block_size": grid.block_size,
                    "batch_size": opts.batch_size,
                    "device": opts.device,
                    "precision": opts.precision,
                    "channels_last": True if opts.channels_last is None else opts.channels_last,
                    "tta": opts.tta,
                    "probabilities": opts.probabilities,
                    "normalize": opts.normalize,
                    "labels_token": token,
                    "scheduler": scheduler,
                    "workers": ran_with["workers"],
                    "freed_memory_kept": freed_memory_kept(scheduler),
                    "formats": list(formats) if vector else [],
                    "vector": (
                        dataclasses.asdict(vector_options or VectorizeOptions()) if vector else None
                    ),
                    "blocks": len(results),
                    "blocks_resumed": sum(r.skipped for r in results),
                    # what 'auto' resolved to, per worker kind ('cpu bf16', 'cuda bf16')
                    "ran_on": sorted({r.ran_on for r in results if r.ran_on}),
                },
                "timings_s": {k: round(v, 3) for k, v in timings.items()},
                "block_phases_s": phases,
                "megapixels_per_s": round(scene.width * scene.height / 1e6 / timings["blocks"], 3),
                "polygons": n_polygons,
                "outputs": outputs,
                "area_per_class": areas,
            }
            (tmp / "run.json").write_text(json.dumps(run, indent=2) + "\n")
    except BaseException:
        if resume:
            done = len(list(blocks_dir.glob("*.npy")))
            log.warning(
                "kept %d completed blocks in %s (and any block in flight, once it is written): "
                "re-run with --resume to continue",
                done,
                partial,
            )
        else:
            remove_tree(partial)
        raise
    # this run's work, and that of earlier interrupted runs of the same output with other
    # inputs or settings (which no later run can resume: they were superseded)
    for stale in out_dir.parent.glob(f".{glob.escape(out_dir.name)}.partial-*"):
        if stale != partial:
            log.info(
                "%s: removed the kept blocks of an interrupted run with other inputs or "
                "settings (%s)", out_dir, stale.name,
            )  # fmt: skip
        shutil.rmtree(stale, ignore_errors=True)
    return run


def up_to_date(
    out: Path, scene: str, bundle_id: str, wanted: dict[str, Any]
) -> dict[str, Any] | None:
    """The run.json of a finished scene output, if it still stands; else ``None``.

    It stands if it was made from this scene file, unchanged since (where run.json
    records the time: outputs of earlier versions do not), with this bundle, the
    ``wanted`` vector formats (or more), and the same ``wanted`` polygon settings, TTA
    and precision (where recorded), and every file it lists is still there; otherwise
    the scene is done again.
    """
    try:
        run = json.loads((out / "run.json").read_text())
        inp, prm = run["input"], run["parameters"]
        url = is_remote(scene)
        path = scene if url else str(Path(scene).resolve())
        same_input = inp["path"] == path and (
            url or "mtime" not in inp or inp["mtime"] == Path(path).stat().st_mtime
        )
        made = set(prm["formats"])
        same_bundle = run["bundle"]["sha256"] == bundle_id
        complete = all((out / f).exists() for f in run["outputs"])  # none deleted since
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not complete:
        return None
    keys: tuple[str, ...] = ("tta", "precision", "labels_token")
    keys += ("vector",) if wanted["formats"] else ()
    same = all(prm.get(k, wanted[k]) == wanted[k] for k in keys)
    if not (same_input and same_bundle and same and set(wanted["formats"]) <= made):
        return None
    return run


def wanted_settings(
    options: InferOptions | None,
    formats: Sequence[str],
    vector: bool,
    vector_options: VectorizeOptions | None,
    token: str,
) -> dict[str, Any]:
    """The settings :func:`up_to_date` compares with those an output was made with.

    ``token`` is the :func:`labels_token` of the run that would be made now.
    """
    opts = options or InferOptions()
    return {
        "formats": list(formats) if vector else [],
        "vector": dataclasses.asdict(vector_options or VectorizeOptions()),
        "tta": opts.tta,
        "precision": opts.precision,
        "labels_token": token,
    }


def mask_record(scene: Scene) -> dict[str, Any] | None:
    """Count what the scene's mask leaves out, for ``run.json`` (``None`` without a mask).

    Raises
    ------
    RasterFormatError
        The mask leaves out every pixel of the scene (a rule that reads the mask the
        wrong way round, typically).
    """
    if scene.mask is None:
        return None
    from geoseg.errors import RasterFormatError
    from geoseg.scene_mask import count_masked, mask_values, rule_doubts

    m = scene.mask
    count = count_masked(
        m, crs=scene.crs, transform=scene.affine, width=scene.width, height=scene.height
    )
    if count.excluded == count.pixels:
        fix = {
            "inside": "its features cover the whole scene: check the file",
            "outside": "its features cover no pixel of it: pass this scene's area of interest",
        }.get(
            m.rule.region, "check the rule; a validity mask (0 = leave out) takes --mask-exclude 0"
        )
        raise RasterFormatError(
            f"{m.path}: the mask leaves out every pixel of {scene.path} (rule "
            f"{m.rule.spec!r}): {fix}"
        )
    share = count.excluded / count.pixels
    log.info("%s: the mask leaves out %.1f %% of the scene", scene.path, 100 * share)
    values, _ = mask_values(m)
    notes = [f"{m.path}: {doubt}" for doubt in rule_doubts(m, count, values)]
    if count.uncovered:
        notes.append(mask_gap(count.uncovered, scene))
    for note in notes:
        log.warning("%s: %s", scene.path, note)
    return {
        **m.describe(),
        "excluded_pixels": count.excluded,
        "excluded_share": round(share, 6),
        "uncovered_pixels": count.uncovered,
        "warnings": notes,
    }


def mask_gap(uncovered: int, scene: Scene) -> str:
    """The warning for scene pixels beyond the footprint of its mask."""
    mask = scene.mask.path if scene.mask else "the mask"
    return (
        f"the mask {mask} does not cover {uncovered} pixels "
        f"({100 * uncovered / (scene.width * scene.height):.1f} %) of the scene: they are kept "
        "unmasked; pass a mask of the whole scene to judge them"
    )


def check_input(scene: Scene, meta: BundleMeta, bands: tuple[int, ...]) -> dict[str, Any]:
    """Compare the scene's bands with the bundle's training statistics, before predicting.

    One sample of at most a million pixels per band (see
    :func:`geoseg.raster.sample_bands`), judged by
    :func:`geoseg.normalize.check_input_range`; a band far outside what the model saw
    (typically other units, DN vs reflectance) is logged as one warning line, and so are
    many valid pixels that are 0 in every band (untagged fill, see
    :func:`geoseg.normalize.untagged_fill_warning`).

    Returns
    -------
    dict
        The record kept in ``run.json`` under ``input_check``.
    """
    sample = sample_bands(scene.path, bands=bands, mask=scene.mask)
    check = check_input_range(
        sample.median,
        sample.spread,
        meta.normalization,
        meta.bands,
        scene_bands=bands,
        path=scene.path,
    )
    if check.warning:
        log.warning(check.warning)
    tagged = [scene.nodata[b - 1] for b in bands if scene.nodata[b - 1] is not None]
    fill = untagged_fill_warning(
        scene.path, sample.zero_share, nodata=tagged[0] if tagged else None
    )
    if fill:
        log.warning(fill)
    size = ground_sample_distance(scene.crs, scene.affine, scene.shape)
    resolution = resolution_warning(scene.path, size, meta.pixel_size)
    if resolution:
        log.warning(resolution)
    return {
        "bands_matched_by": band_matching(scene, meta),
        "sampled_pixels": sample.pixels,
        **check.to_dict(),
        "zero_share": round(sample.zero_share, 4),
        "fill_warning": fill,
        "pixel_size_m": None if size is None else round(size, 3),
        "resolution_warning": resolution,
    }


#: How many times larger or smaller than the training images' a scene's pixels may be
#: before a prediction is warned about: a 30 m model on 15 m pan-sharpened or 10 m
#: Sentinel-2 pixels (textures, mixed pixels and object sizes differ), not on another
#: Landsat scene's 30 m (or a UTM zone's few per cent of scale).
MAX_RESOLUTION_RATIO = 1.5


def resolution_warning(path: str, size: float | None, trained: float | None) -> str | None:
    """What to warn about a scene whose pixels are far from the training images' size.

    Examples
    --------
    >>> resolution_warning("s.tif", 10.0, 30.0)[:60]
    's.tif: its pixels are 10 m and the model was trained on 30 m'
    >>> resolution_warning("s.tif", 31.0, 30.0) is None
    True
    """
    if size is None or trained is None:
        return None
    if max(size / trained, trained / size) <= MAX_RESOLUTION_RATIO:
        return None
    return (
        f"{path}: its pixels are {size:.3g} m and the model was trained on {trained:.3g} m "
        "pixels: land cover looks different at another resolution, so the labels may be "
        "wrong: resample the scene to the model's "
        f"({fixes.resample(path, trained, 'average' if size < trained else 'bilinear')}), "
        "or train a model on imagery of its resolution"
    )


def labels_token(
    scene: Scene,
    bundle_id: str,
    grid: TileGrid,
    bands: tuple[int, ...],
    opts: InferOptions,
) -> str:
    """A hash of everything that changes a run's labels.

    The scene file and its mtime, its mask (file, mtime and rule), the bundle, the
    grid (tile size, halo, blocks, layout), the bands, and the device, precision and
    test-time augmentation: it names the run's work directory (a hidden sibling of
    the output, ``.OUT.partial-<token[:16]>``), so ``--resume`` only reuses blocks of
    the very same run, and it is recorded in ``run.json`` so that a finished output
    is kept only for the same labels.
    """
    import dask.base

    return str(
        dask.base.tokenize(
            scene.path,
            scene.mtime,
            scene.mask,
            bundle_id,
            grid,
            LAYOUT_VERSION,
            bands,
            opts.labels_key(),
        )
    )


def scene_labels_token(
    scene_path: str | Path,
    bundle_path: str | Path,
    options: InferOptions | None,
    mask: str | Path | None = None,
    mask_exclude: Any = None,
) -> str:
    """:func:`labels_token` of a scene and bundle given by path (opens both, reads no pixels)."""
    opts = options or InferOptions()
    meta = read_meta(bundle_path)
    scene = with_mask(open_scene(scene_path, image=True), mask, mask_exclude)
    bands = match_bands(scene, meta)
    return labels_token(scene, bundle_hash(bundle_path), make_grid(scene, meta, opts), bands, opts)


def area_per_class(
    labels: Path,
    crs: Any,
    transform: Any,
    shape: tuple[int, int],
    coarse_px: Mapping[int, int],
    fine_px: Mapping[int, int],
    taxonomy: Taxonomy,
) -> dict[str, Any]:
    """The ``area_per_class`` record of a label map: pixels and ground area per class.

    ``coarse_px`` / ``fine_px``: pixels per code of ``labels`` (band 1 / band 2), on a
    grid of ``crs``, ``transform`` and ``shape``; no areas without a CRS.
    """
    px_area = pixel_area_m2(crs, transform, shape) if crs else None
    area_c, area_f = (
        _class_areas(labels, (crs, transform, shape), coarse_px, fine_px, px_area)
        if px_area is not None
        else ({}, {})
    )
    return {
        "pixel_area_m2": px_area,
        "coarse": _areas(
            coarse_px, {c.code: c.name for c in taxonomy.coarse}, taxonomy.nodata, area_c
        ),
        "fine": _areas(fine_px, {c.code: c.name for c in taxonomy.fine}, taxonomy.nodata, area_f),
    }


def _class_areas(
    labels: Path,
    grid: tuple[Any, Any, tuple[int, int]],
    coarse_px: Mapping[int, int],
    fine_px: Mapping[int, int],
    px_area: float,
) -> tuple[dict[int, float], dict[int, float]]:
    """Ground area (m²) per coarse and fine code (``grid``: CRS, transform, shape).

    Pixel counts times the pixel's area where planar areas are true (UTM, national
    grids, equal-area projections); elsewhere each pixel counts at its own true area
    (:func:`geoseg.area.pixel_areas`): it changes with the latitude in geographic
    coordinates and Web Mercator (one figure for the whole scene was off by percents on
    a tall scene), and across the columns in a UTM zone used outside its own (off by
    0.05 % on Zion in the zone east of its own), as the polygons' areas do.
    """
    crs, transform, (height, width) = grid
    cx, cy = transform @ (width / 2, height / 2)
    if is_planar_true(crs, cx, cy):
        return (
            {k: n * px_area for k, n in coarse_px.items()},
            {k: n * px_area for k, n in fine_px.items()},
        )
    size = max([*coarse_px, *fine_px, 0]) + 1  # every code in labels.tif is counted
    sums = np.zeros((2, size))
    with rasterio.open(labels) as src:  # in windows: memory does not grow with the scene
        for row0 in range(0, src.height, 1024):
            rows = min(1024, src.height - row0)
            for col0 in range(0, src.width, 2048):
                cols = min(2048, src.width - col0)
                codes = src.read((1, 2), window=((row0, row0 + rows), (col0, col0 + cols)))
                w = pixel_areas(crs, transform, row0, rows, col0, cols, planar=False).ravel()
                for k in range(2):
                    sums[k] += np.bincount(codes[k].ravel(), weights=w, minlength=size)
    return (
        {k: float(sums[0, k]) for k in coarse_px},
        {k: float(sums[1, k]) for k in fine_px},
    )


def _areas(
    counts: Mapping[int, int], names: dict[int, str], nodata: int, area: dict[int, float]
) -> list[dict[str, Any]]:
    return [
        {
            "code": code,
            "name": names.get(code, str(code)),
            "pixels": n,
            "area_m2": round(area[code], 2) if code in area else None,
        }
        for code, n in sorted(counts.items())
        if code != nodata
    ]


@locks_output("out_dir")
def run_evaluate_bundle(
    bundle_path: str | Path,
    config_path: str | Path,
    out_dir: str | Path,
    *,
    options: InferOptions | None = None,
    scheduler: str = "threads",
    region: str = "test",
    bootstrap: int = 1000,
    overwrite: bool = False,
    interval: str = "beta",
) -> dict[str, Any]:
    """Predict every scene of a training config with a bundle and score it.

    With ``region="test"`` only the pixels training never saw are scored: the test
    blocks of a checkerboard split, and the whole of each source with ``role: test``
    (sources with ``role: train`` or ``validation`` are left out); ``region="all"``
    scores every labelled pixel.
    ``bootstrap`` replicates (0: none) give block-bootstrap intervals of mIoU and OA
    (:func:`geoseg.evaluate.add_confidence`), the blocks pooled over the scenes;
    ``interval``: the method of the stratified intervals (:mod:`geoseg.intervals`).

    Returns
    -------
    dict
        The pooled evaluation (see :func:`geoseg.evaluate.evaluate_labels`), also
        written to ``out_dir`` as a report.
    """
    import tempfile

    from geoseg.config import load_train_config
    from geoseg.errors import ConfigError
    from geoseg.evaluate import add_confidence, check_bundle_split, combine, evaluate_labels
    from geoseg.labelled import training_sources
    from geoseg.map_reading import check_bundle_taxonomy
    from geoseg.report import write_report

    out_dir = Path(out_dir)
    cfg = load_train_config(config_path)
    inputs = (bundle_path, config_path, *cfg.input_files())
    check_writable(out_dir, overwrite=overwrite, inputs=inputs, output="report")
    if region not in ("test", "all"):
        raise ConfigError(f"region {region!r} is not one of test, all")
    checker = cfg.split.checkerboard if region == "test" else None
    roles = cfg.source_roles()
    if region == "test" and checker is None and "test" not in roles:
        raise ConfigError(
            f"{config_path}: the config has no checkerboard split and no source with "
            "role: test, so it has no test set: use --region all, set split: "
            "{checkerboard: N}, or mark the scenes set aside for testing with role: test"
        )
    # before any scene is predicted; first, as a config of other classes is one for
    # another model, whose split says nothing about this one's
    check_bundle_taxonomy(read_meta(bundle_path).taxonomy, cfg.taxonomy, bundle_path)
    if region == "test":  # the test blocks must be the ones the bundle never trained on
        check_bundle_split(bundle_path, config_path)
    scored = [
        (src, role, vector, mask)
        for src, role, vector, mask in zip(
            training_sources(cfg), roles, cfg.vector_fields(), cfg.source_masks(), strict=True
        )
        # with region test, only scenes with pixels training never saw
        if region == "all" or role == "test" or (role == "blocks" and checker is not None)
    ]
    if not scored:
        raise ConfigError(
            f"{config_path}: no source has test pixels (its scenes have role: train or "
            "validation): give scenes with role: test or role: blocks, or use --region all"
        )
    results = []
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".geoseg-eval-", dir=out_dir.parent) as work:
        for i, (src, role, vector, mask) in enumerate(scored):
            pred_dir = Path(work) / f"scene{i}"
            run_predict(
                src["image"],
                bundle_path,
                pred_dir,
                options=options,
                scheduler=scheduler,
                vector=False,
                mask=mask[0] if mask else None,
                mask_exclude=mask[1] if mask else None,
            )
            res = evaluate_labels(
                pred_dir / "labels.tif",
                coarse_truth=src.get("coarse"),
                fine_truth=src.get("fine"),
                taxonomy=cfg.taxonomy,  # the truth's codes; checked against the bundle's
                checkerboard=checker if role == "blocks" else None,  # a test scene: all
                block=cfg.split.block_size,  # the bootstrap's blocks: the split's, in all
                # the split is drawn on the image's grid
                split_grid=src["image"] if checker and role == "blocks" else None,
                align=cfg.data.align_labels,
                name=f"the prediction of {src['image']}",  # not the temporary file
                grid_fix=(
                    f"the label rasters of {config_path} must be on the grid of their image, "
                    "as for training: set data.align_labels: true to resample them onto it "
                    "(nearest neighbour), or do so yourself"
                ),
                vector=vector,
                interval=interval,
            )
            res["truth"]["image"] = absolute_path(src["image"])
            if role == "test":
                res["region"] = f"the whole scene, a role: test source ({res['region']})"
            results.append(res)
        pooled = combine(
            results,
            prediction=f"{absolute_path(bundle_path)} on {absolute_path(config_path)}",
            interval=interval,
        )
    pooled["bundle"] = absolute_path(bundle_path)
    pooled["config"] = absolute_path(config_path)
    if region == "all":
        pooled["region"] = (
            "every labelled pixel, including those the bundle was trained and selected on "
            "(not a measure of accuracy on unseen data)"
        )
    if bootstrap:
        add_confidence(pooled, replicates=bootstrap)
    write_report(pooled, out_dir, overwrite=overwrite)
    return pooled


@locks_output("out_dir")
def run_evaluate_labels(
    labels: str | Path,
    out_dir: str | Path | None,
    *,
    coarse_truth: str | Path | None = None,
    fine_truth: str | Path | None = None,
    taxonomy: str | Path | None = None,
    level: Literal["coarse", "fine"] | None = None,
    align: bool = False,
    checkerboard: int | None = None,
    split_grid: str | Path | None = None,
    bootstrap: int = 1000,
    overwrite: bool = False,
    vector: Mapping[str, VectorField] | None = None,
    interval: str = "beta",
) -> dict[str, Any]:
    """Score a label raster against truth rasters and write the report to ``out_dir``.

    Without ``out_dir`` nothing is written (a result that scores no pixel is still an
    error, as the report would be). See :func:`geoseg.evaluate.evaluate_labels`
    (``taxonomy``: a YAML file or a bundle directory, for a map that geoseg did not
    write; ``vector``: the class attributes of vector truth; ``interval``: the method of
    a point sample's area intervals, :mod:`geoseg.intervals`); ``bootstrap`` replicates
    (0: none) give the block-bootstrap intervals of
    :func:`geoseg.evaluate.add_confidence`.
    """
    import warnings

    from geoseg.errors import SeenPixelsWarning
    from geoseg.evaluate import add_confidence, evaluate_labels, require_scored, seen_pixels_note
    from geoseg.report import write_report

    inputs = tuple(t for t in (coarse_truth, fine_truth, taxonomy) if t is not None)
    if out_dir is not None:
        check_writable(
            Path(out_dir), overwrite=overwrite, inputs=(labels, *inputs), output="report"
        )
    result = evaluate_labels(
        labels,
        coarse_truth=coarse_truth,
        fine_truth=fine_truth,
        taxonomy=taxonomy,
        level=level,
        align=align,
        checkerboard=checkerboard,
        split_grid=split_grid,
        vector=vector,
        interval=interval,
    )
    require_scored(result)
    if (note := seen_pixels_note(labels, checkerboard)) is not None:
        warnings.warn(note, SeenPixelsWarning, stacklevel=2)
        result["cautions"] = [note, *result.get("cautions", [])]
    if bootstrap:
        add_confidence(result, replicates=bootstrap)
    if out_dir is not None:
        write_report(result, out_dir, overwrite=overwrite)
    return result


@locks_output("out")
def run_vectorize(
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
    level: Literal["coarse", "fine"] | None = None,
) -> dict[str, Any]:
    """Polygonise a label raster and write the layers to ``out`` (if given).

    The job of ``geoseg vectorize`` and :func:`geoseg.api.vectorize` (see there):
    ``mmu`` and ``simplify`` default to :func:`geoseg.vectorize.cartographic_defaults`,
    recorded in each layer's ``attrs``; ``ids``: the band holds identifiers, however many;
    ``taxonomy`` and ``level``: the classes of a map geoseg did not write.
    """
    from geoseg.cluster import check_scheduler
    from geoseg.export import check_vector_output
    from geoseg.vectorize import cartographic_defaults, read_taxonomy_tag

    if out is not None:
        inputs = (labels, *([taxonomy] if taxonomy is not None else []))
        check_vector_output(Path(out), overwrite=overwrite, inputs=inputs)
    if mmu is None or simplify is None:
        auto_mmu, auto_simplify = cartographic_defaults(labels)
        mmu = auto_mmu if mmu is None else mmu
        simplify = auto_simplify if simplify is None else simplify
    opts = VectorizeOptions(
        band=band,
        mmu=mmu,
        simplify=simplify,
        connectivity=connectivity,
        dst_crs=dst_crs,
        confidence=confidence,
        chunk_size=chunk_size,
    )
    check_scheduler(scheduler, also=("processes",))
    layers = vectorize_layers(labels, opts, scheduler=scheduler, workers=workers,
                              ids=ids, taxonomy=taxonomy, map_level=level)  # fmt: skip
    for layer in layers.values():
        layer.attrs.update(mmu=mmu, simplify=simplify)
    if out is not None:
        classes: Taxonomy | None
        if taxonomy is not None:  # the map's classes, for the layers' style
            from geoseg.map_reading import load_scoring_taxonomy

            classes = load_scoring_taxonomy(taxonomy)
        else:
            classes = read_taxonomy_tag(labels) if band is None else None
        write_vector(layers, Path(out), taxonomy=classes, overwrite=overwrite)
    return layers


@locks_output("out")
def run_train(
    config: str | Path | Mapping[str, Any] | TrainConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
    max_steps: int | None = None,
    progress: bool = False,
) -> Path:
    """Train a bundle from a config file, mapping or :class:`TrainConfig` into ``out``.

    The job of ``geoseg train`` and :func:`geoseg.api.train` (see there): the output is
    checked before anything is read (inputs never replaced, a bundle's folder only).
    """
    from geoseg.config import TrainConfig, load_train_config, train_config_from_dict
    from geoseg.train import train

    files: tuple[str | Path, ...] = ()
    if isinstance(config, TrainConfig):
        cfg = config
    elif isinstance(config, Mapping):
        cfg = train_config_from_dict(config)
    else:
        cfg = load_train_config(config)
        files = (config,)
    if max_steps is not None and max_steps < 1:
        from geoseg.errors import ConfigError

        raise ConfigError(f"max_steps is {max_steps}: give at least 1 (or None for the config's)")
    out = Path(out)
    check_writable(out, overwrite=overwrite, inputs=(*files, *cfg.input_files()), output="bundle")
    return train(
        cfg, out, overwrite=overwrite, progress=progress, max_steps=max_steps, resume=resume
    )


@locks_output("out_dir")
def run_change(
    before: str | Path,
    after: str | Path,
    out_dir: str | Path | None,
    *,
    align: bool = False,
    overwrite: bool = False,
    taxonomy: str | Path | None = None,
    level: Literal["coarse", "fine"] | None = None,
    vector: bool = True,
    formats: list[str] | None = None,
    vector_options: VectorizeOptions | None = None,
    resampling: Literal["auto", "nearest", "mode"] = "auto",
    zones: tuple[str, str, str | None] | None = None,
    reference: tuple[Any, str | None] | None = None,
    interval: str = "beta",
) -> dict[str, Any]:
    """Land-cover change from ``before`` to ``after`` (see :mod:`geoseg.change`).

    Writes ``out_dir`` (change.json, change.md, transitions.csv, change.tif and, with
    ``vector``, the changed areas' polygons in each of ``formats``, GeoPackage by
    default) when given; returns ``change.json``'s record either way.
    """
    from geoseg.atomic import atomic_dir, check_writable
    from geoseg.change import change_polygons, compare_maps, polygon_styles, write_change
    from geoseg.export import FORMATS, write_vector

    compare = functools.partial(compare_maps, before, after, align=align, taxonomy=taxonomy,
                                level=level, resampling=resampling, zones=zones,
                                reference=reference, interval=interval)  # fmt: skip
    if out_dir is None:
        return compare().record()
    inputs = (before, after) + ((taxonomy,) if taxonomy is not None else ())
    inputs += (zones[0],) if zones is not None else ()
    inputs += (reference[0],) if reference is not None and isinstance(reference[0], str) else ()
    check_writable(Path(out_dir), overwrite=overwrite, inputs=inputs, output="change")
    formats = ["gpkg"] if formats is None else formats
    with atomic_dir(Path(out_dir), overwrite=overwrite, output="change") as tmp:
        change = compare(raster=tmp / "change.tif")
        written = []
        if vector and formats:
            options = vector_options or VectorizeOptions()
            layers = change_polygons(tmp / "change.tif", change, options)
            for f in formats:  # a GeoPackage holds both layers; other formats, a file each
                parts = (
                    {"change": layers} if f == "gpkg" else {k: {k: v} for k, v in layers.items()}
                )
                for stem, data in parts.items():
                    write_vector(data, tmp / f"{stem}{FORMATS[f]}", styles=polygon_styles(change))
                    written.append(f"{stem}{FORMATS[f]}")
            area = "area_m2" if change.unit == "m2" else "area_pixels"
            change.polygons = {
                "options": {"mmu": options.mmu, "simplify": options.simplify},
                **{
                    layer: {"polygons": len(gdf), "area": float(gdf[area].sum())}
                    for layer, gdf in layers.items()
                },
            }
        outputs = write_change(change, tmp) + written
    return {**change.record(), "outputs": outputs}


def run_sample(
    labels: str | Path,
    out: str | Path | None,
    *,
    per_class: int = 100,
    total: int | None = None,
    seed: int = 0,
    taxonomy: str | Path | None = None,
    level: Literal["coarse", "fine"] | None = None,
    pool_below: float = 0.0,
    overwrite: bool = False,
    target: Any = None,
    strata: Literal["coarse", "fine"] = "coarse",
) -> Any:
    """A stratified random reference sample of a map or a change.tif (see :mod:`geoseg.sample`).

    Writes the points to ``out`` (any vector format, layer ``reference``) when given,
    refusing to replace a file whose points carry labels; returns them either way.
    ``target``: a :class:`geoseg.sample_size.TargetPrecision` that sizes the sample;
    ``strata``: the map's classes drawn within.
    """
    from geoseg.export import check_vector_output, write_vector
    from geoseg.sample import draw_sample

    if out is not None:
        inputs = (labels, *([taxonomy] if taxonomy is not None else []))
        check_vector_output(out, overwrite=overwrite, inputs=inputs)
    points = draw_sample(labels, per_class=per_class, total=total, seed=seed,
                         taxonomy=taxonomy, level=level, pool_below=pool_below,
                         target=target, strata=strata)  # fmt: skip
    if out is not None:
        write_vector({"reference": points}, Path(out), overwrite=overwrite)
    return points


@locks_output("out_dir")
def run_zonal(
    labels: str | Path,
    zones: str | Path,
    out_dir: str | Path | None,
    *,
    field_name: str,
    layer: str | None = None,
    taxonomy: str | Path | None = None,
    level: Literal["coarse", "fine"] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Class areas per zone (see :mod:`geoseg.zonal`).

    Writes ``out_dir`` (zonal.csv, zonal.json, zonal.md) when given; returns
    ``zonal.json``'s record either way.
    """
    from geoseg.atomic import atomic_dir, check_writable
    from geoseg.zonal import write_zonal, zonal_areas

    def measure() -> Any:
        return zonal_areas(
            labels, zones, field_name=field_name, layer=layer, taxonomy=taxonomy, level=level
        )

    if out_dir is None:
        return measure().record()
    inputs = (labels, zones) if taxonomy is None else (labels, zones, taxonomy)
    check_writable(Path(out_dir), overwrite=overwrite, inputs=inputs, output="zonal")
    with atomic_dir(Path(out_dir), overwrite=overwrite, output="zonal") as tmp:
        result = measure()
        outputs = write_zonal(result, tmp)
    return {**result.record(), "outputs": outputs}
