"""The Dask graph of a scene prediction: one task per block, workers do their own I/O.

Each task reads its block's window (core plus halo, reflect-padded at the scene edge)
straight from the scene path, labels it with the per-process cached model and writes
the block to the work directory; it returns only the block's class-pixel counts and
timings. The client never holds pixel arrays, and a block already on disk is skipped
(``resume``). :func:`geoseg.write.assemble_labels` then builds the final raster.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import dask
import numpy as np

from geoseg import fixes
from geoseg.allocator import keeping_freed_memory
from geoseg.bundle import BundleMeta
from geoseg.devices import Precision, available_cpus, resolve_device, torch_threads
from geoseg.errors import ConfigError, RasterFormatError
from geoseg.raster import Scene, band_index, name_position, same_named, unnamed_bands
from geoseg.tiles import TileGrid, Window
from geoseg.write import block_path, probabilities_dir, write_block

if TYPE_CHECKING:
    from geoseg.normalize import Normalization
    from geoseg.predict import Predictor
    from geoseg.scene_mask import SceneMask

log = logging.getLogger(__name__)


#: The forward-pass precision used unless asked otherwise (see the README's speed table).
DEFAULT_PRECISION: Precision = "auto"


@dataclass(frozen=True)
class InferOptions:
    """Tiling and execution settings of a prediction (``None`` = the bundle's default)."""

    tile_size: int | None = None
    halo: int | None = None
    block_size: int = 1024
    batch_size: int = 0
    device: str = "auto"
    torch_threads: int | None = None
    precision: Precision = DEFAULT_PRECISION
    channels_last: bool | None = None
    tta: bool = False
    probabilities: bool = False
    normalize: Literal["bundle", "scene"] = "bundle"

    def labels_key(self) -> tuple[object, ...]:
        """The settings that can change the labels (they name block tasks and work dirs).

        Also whether blocks keep their class probabilities (their work differs).
        """
        key: tuple[object, ...] = (
            self.device, self.batch_size, self.precision, self.channels_last, self.tta
        )  # fmt: skip
        if self.normalize != "bundle":  # the keys of earlier runs stay as they were
            key = (*key, f"normalize={self.normalize}")
        return (*key, "probabilities") if self.probabilities else key


@dataclass
class BlockResult:
    """What a block task returns to the client: counts and timings, never pixels."""

    block: Window
    coarse_counts: dict[int, int]
    fine_counts: dict[int, int]
    seconds: dict[str, float] = field(default_factory=dict)
    skipped: bool = False
    ran_on: str = ""  # "device precision" the block was labelled with ("" when resumed)


def _data_bands(scene: Scene) -> tuple[int, ...]:
    """1-based indexes of the scene's bands that are not alpha (a mask, not data)."""
    return tuple(i for i in range(1, scene.count + 1) if i not in scene.alpha)


def _pairs(scene: Scene, meta: BundleMeta) -> str:
    names = [scene.band_names[i - 1] for i in _data_bands(scene)]
    return ", ".join(f"{s}->{b}" for s, b in zip(names, meta.bands, strict=True))


def band_warning(scene: Scene, meta: BundleMeta) -> str | None:
    """What to warn about how the scene's bands were matched to the bundle's, if anything.

    ``None`` when they matched by name, or where either side has no band names.
    """
    how = band_matching(scene, meta)
    if how == "name" or unnamed_bands(scene.band_names):
        return None
    if how == "index":
        idx = tuple(band_index(scene.band_names, b) or 0 for b in meta.bands)
        seen = getattr(meta, "training", {}).get("band_descriptions")
        if isinstance(seen, list) and len(seen) == len(idx):
            here = [scene.band_names[i - 1] if i else "" for i in idx]
            moved = [
                f"band {i}: {h} (trained on {w})"
                for i, h, w in zip(idx, here, seen, strict=True)
                if h.casefold() != str(w).casefold()
            ]
            if not moved:
                return None  # the bands the bundle trained on, named as then
            return (
                f"the bundle was trained on bands {','.join(map(str, idx))} named "
                f"{','.join(map(str, seen))}, and this image names them otherwise "
                f"({'; '.join(moved)}): its bands may lie in another order; reorder them "
                f"({fixes.reorder_bands(scene.path)})"
            )
        return (
            f"the bundle's bands {','.join(meta.bands)} read as the image's bands "
            f"{','.join(map(str, idx))} by index (the image's names: "
            f"{','.join(scene.band_names)}); if the image's bands are in another order than "
            f"the training images', reorder them ({fixes.reorder_bands(scene.path)})"
        )
    if len(_data_bands(scene)) != meta.band_count or unnamed_bands(meta.bands):
        return None
    return (
        f"the image's band names {','.join(scene.band_names)} differ from the bundle's "
        f"{','.join(meta.bands)}: matched by position ({_pairs(scene, meta)}); if that order "
        f"is wrong, name the bands ({fixes.name_bands(scene.path)}) or use a matching bundle"
    )


def match_bands(scene: Scene, meta: BundleMeta) -> tuple[int, ...]:
    """1-based scene bands to feed the model, matched by name, else by position.

    Matching by position is logged: at INFO when either side has no band names (the
    scene's bands have no descriptions, or the bundle was trained on such a scene), as
    a warning (:func:`band_warning`) when both have names and they differ (the order
    may be wrong).
    """
    if (twice := same_named(scene.band_names, meta.bands)) is not None:
        name, where = twice
        raise RasterFormatError(
            f"{scene.path}: bands {', '.join(map(str, where))} are all named {name!r}, one "
            f"of the bundle's bands ({','.join(meta.bands)}), so which to read is unclear: "
            f"name the bands apart ({fixes.name_bands(scene.path)})"
        )
    how = band_matching(scene, meta)
    if how == "name":
        return tuple(
            p + 1 for b in meta.bands if (p := name_position(scene.band_names, b)) is not None
        )
    warning = band_warning(scene, meta)
    if warning:
        log.warning("%s: %s", scene.path, warning)
    if how == "index":  # the bundle names its bands bandK: band K of the scene
        idx = tuple(band_index(scene.band_names, b) or 0 for b in meta.bands)
        alpha = [i for i in idx if i in scene.alpha]
        if alpha:
            raise RasterFormatError(
                f"{scene.path}: the bundle's bands {','.join(meta.bands)} would read band "
                f"{alpha[0]} of the scene, an alpha band (a mask of valid pixels, not data): "
                "pass a scene with the bundle's bands, e.g. the data bands then the alpha "
                f"band last ({fixes.reorder_bands(scene.path)})"
            )
        if not warning:
            log.info(
                "%s: the bundle's bands %s read as the image's bands %s by index",
                scene.path, ",".join(meta.bands), ",".join(map(str, idx)),
            )  # fmt: skip
        return idx
    data = _data_bands(scene)
    if len(data) == meta.band_count:
        if not warning:
            log.info(
                "%s: bands matched by position (%s): the image's or the bundle's bands have "
                "no names", scene.path, _pairs(scene, meta),
            )  # fmt: skip
        return data
    n = len(data)
    alpha_note = ""
    if scene.alpha:
        which = ", ".join(map(str, scene.alpha))
        alpha_note = (
            f" and alpha band{'s' if len(scene.alpha) > 1 else ''} {which} (a mask of valid "
            "pixels, not data)"
        )
    names = [scene.band_names[i - 1] for i in data]
    raise RasterFormatError(
        f"{scene.path}: scene has {n} {'data ' if alpha_note else ''}"
        f"band{'s' if n != 1 else ''} {_listed(names)}{alpha_note} but the model "
        f"expects {meta.band_count} ({','.join(meta.bands)}): pass a scene with those bands "
        "or use a matching bundle"
    )


def _listed(names: list[str], most: int = 8) -> str:
    """``names`` as a list, the middle elided past ``most`` names (one-line errors)."""
    if len(names) <= most:
        return str(names)
    return f"[{', '.join(map(repr, names[:3]))}, ... {len(names) - 6} more ..., " + (
        f"{', '.join(map(repr, names[-3:]))}]"
    )


def bands_match_by_name(scene: Scene, meta: BundleMeta) -> bool:
    """Whether every band the bundle expects is named in the scene (case aside)."""
    return all(name_position(scene.band_names, b) is not None for b in meta.bands)


def band_matching(scene: Scene, meta: BundleMeta) -> str:
    """How :func:`match_bands` pairs the bundle's bands with the scene's.

    ``name`` (every bundle band is named in the scene), ``index`` (the bundle names its
    bands ``bandK``, as a config's 1-based indexes or a file without descriptions
    does, and the scene has band K) or ``position`` (otherwise).
    """
    if bands_match_by_name(scene, meta):
        return "name"
    if all(band_index(scene.band_names, b) is not None for b in meta.bands):
        return "index"
    return "position"


def make_grid(scene: Scene, meta: BundleMeta, opts: InferOptions) -> TileGrid:
    """The tile grid for a scene, with tile size and halo defaulting to the bundle's."""
    stride = meta.output_stride
    tile = opts.tile_size or meta.tile_size
    halo = meta.halo if opts.halo is None else opts.halo
    # A scene smaller than a tile needs no bigger tile than itself (rounded to the stride).
    fit = math.ceil(max(scene.height, scene.width) / stride) * stride
    if tile > fit and opts.tile_size is None:
        tile = fit
    return TileGrid.create(
        scene.height,
        scene.width,
        tile_size=tile,
        halo=halo,
        block_size=opts.block_size,
        stride=stride,
    )


def run_block(
    scene_path: str,
    bundle_path: str,
    grid: TileGrid,
    block: Window,
    bands: tuple[int, ...],
    opts: InferOptions,
    blocks_dir: str,
    bundle_id: str | None = None,
    mask: SceneMask | None = None,
    normalization: Normalization | None = None,
) -> BlockResult:
    """Task body: read, label and write one block (runs on a worker).

    ``mask``: pixels to leave out besides the scene's nodata (see :mod:`geoseg.scene_mask`).
    ``normalization``: the scene's own band statistics (``InferOptions.normalize``
    ``scene``) instead of the bundle's.
    """
    from geoseg.predict import Timings
    from geoseg.raster import read_window

    dest = block_path(Path(blocks_dir), block)
    if dest.exists():  # written after its probabilities, if any: the block is whole
        data = np.load(dest, mmap_mode="r")
        return _result(block, data[0], data[1], {}, skipped=True)
    with torch_threads(opts.torch_threads):
        predictor = load_predictor(bundle_path, opts, bundle_id)
        timings = Timings()
        win = grid.input_window(block)
        with timings.phase("read"):
            data, valid = read_window(
                scene_path, win.row_off, win.col_off, win.height, win.width, bands=bands, mask=mask
            )
        probs = None
        if opts.probabilities:
            tax = predictor.meta.taxonomy
            probs = np.empty((tax.n_coarse + tax.n_fine, block.height, block.width), np.uint8)
        out = predictor.predict_block(
            data,
            valid,
            grid,
            block,
            timings=timings,
            probabilities=probs,
            normalization=normalization,
        )
        with timings.phase("write"):
            if probs is not None:
                write_block(probabilities_dir(Path(blocks_dir)), block, probs)
            write_block(Path(blocks_dir), block, out)
    ran_on = f"{predictor.device.type} {predictor.precision}"
    return _result(block, out[0], out[1], dict(timings.seconds), ran_on=ran_on)


def load_predictor(bundle_path: str, opts: InferOptions, bundle_id: str | None = None) -> Predictor:
    """The predictor for ``bundle_path`` with ``opts``, loaded once per process, then cached.

    :func:`run_block` calls it in every task; a run on an in-process scheduler calls it
    before its blocks start, so that importing and building the network (about 2 s, most
    of it importing segmentation-models-pytorch) is neither charged to the first block
    nor paid after the output folder exists, and a bundle that does not load fails first.
    """
    from geoseg.predict import cached_predictor

    return cached_predictor(
        bundle_path,
        device=opts.device,
        batch_size=opts.batch_size,
        precision=opts.precision,
        channels_last=opts.channels_last,
        tta=opts.tta,
        bundle_id=bundle_id,
    )


def _result(
    block: Window,
    coarse: np.ndarray,
    fine: np.ndarray,
    seconds: dict[str, float],
    skipped: bool = False,
    ran_on: str = "",
) -> BlockResult:
    cc = np.bincount(coarse.ravel().astype(np.int64))
    fc = np.bincount(fine.ravel().astype(np.int64))
    return BlockResult(
        block,
        {int(k): int(v) for k, v in enumerate(cc) if v},
        {int(k): int(v) for k, v in enumerate(fc) if v},
        seconds,
        skipped,
        ran_on,
    )


def build_tasks(
    scene: Scene,
    bundle_path: str,
    grid: TileGrid,
    bands: tuple[int, ...],
    opts: InferOptions,
    blocks_dir: Path,
    bundle_id: str,
    normalization: Normalization | None = None,
) -> list[Any]:
    """One delayed task per block, named deterministically from its inputs and output.

    The name holds the blocks folder too: two outputs of one scene (a batch listing it
    twice, two users of one cluster) are separate tasks, each writing its own blocks,
    and cancelling one run does not cancel the other's.
    """
    tasks = []
    for block in grid.blocks():
        token = dask.base.tokenize(
            scene.path,
            scene.mtime,
            scene.mask,
            block,
            grid,
            bands,
            bundle_id,
            opts.labels_key(),
            str(blocks_dir),
            normalization,
        )
        tasks.append(
            dask.delayed(run_block, pure=True)(
                scene.path,
                bundle_path,
                grid,
                block,
                bands,
                opts,
                str(blocks_dir),
                bundle_id,
                scene.mask,
                normalization,
                dask_key_name=f"geoseg-block-{token}",
            )
        )
    return tasks


def merge_results(
    results: list[BlockResult],
) -> tuple[Counter[int], Counter[int], dict[str, float]]:
    """Sum per-block class counts and phase timings."""
    coarse: Counter[int] = Counter()
    fine: Counter[int] = Counter()
    seconds: Counter[str] = Counter()
    for r in results:
        coarse.update(r.coarse_counts)
        fine.update(r.fine_counts)
        seconds.update(r.seconds)
    return coarse, fine, {k: round(v, 3) for k, v in seconds.items()}


def compute_blocks(
    tasks: list[Any],
    scheduler: str,
    *,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
    on_client: Callable[[Any], None] | None = None,
    client: Any = None,
    cancel: threading.Event | None = None,
) -> list[BlockResult]:
    """Run block tasks on ``scheduler`` (see :func:`geoseg.cluster.run_tasks`)."""
    from geoseg.cluster import run_tasks

    t0 = time.perf_counter()
    results = run_tasks(
        tasks,
        scheduler,
        progress=progress,
        workers=workers,
        on_client=on_client,
        client=client,
        cancel=cancel,
    )
    log.info("%d blocks in %.1f s", len(results), time.perf_counter() - t0)
    return results


def check_options(opts: InferOptions) -> None:
    """Reject impossible options early, with the valid range."""
    if opts.batch_size < 0:
        raise ConfigError(f"batch size {opts.batch_size} must be at least 1 (or 0 for automatic)")
    if opts.block_size < 32:
        raise ConfigError(f"block size {opts.block_size} must be at least 32")
    if opts.torch_threads is not None and opts.torch_threads < 1:
        raise ConfigError(f"torch threads {opts.torch_threads} must be at least 1")
    if opts.normalize not in ("bundle", "scene"):
        raise ConfigError(f"normalize {opts.normalize!r} is not one of bundle, scene")
    if opts.precision not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"precision {opts.precision!r} is not one of auto, fp32, bf16")


def default_workers(scheduler: str = "threads", device: str = "auto") -> int:
    """Worker count for the embedded schedulers: at most 2 and at most the cores.

    One block thread for ``threads`` on a CPU in a process that keeps freed memory
    (:mod:`geoseg.allocator`): the network passes take turns anyway, a second thread
    would overlap only reading and normalising, and its allocations, mixed into the
    one shared heap, fragment it (peak memory of a 6144² scene measured up to 500 MB
    higher and varying from run to run; README, Speed and memory).
    """
    if scheduler == "threads" and keeping_freed_memory() and resolve_device(device).type == "cpu":
        return 1
    return max(1, min(2, available_cpus()))
