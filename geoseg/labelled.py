"""Labelled scenes for training and evaluation: an image, its labels and split roles.

An image and its coarse and/or fine label rasters (on the image's grid) are read into
memory (or, given a folder to spill them to, those of large scenes and of scenes beyond
:data:`SPILL_BYTES` in memory into memory-mapped files there: see :class:`SpillArena`),
label codes become class *indices* of the taxonomy (``-1`` = not labelled at that
level), a fine label fills in its coarse parent where the coarse level is not labelled,
and every pixel gets a split role: TRAIN, VAL or TEST.

The split is spatial. The scene is cut into ``block`` x ``block`` blocks; with a
checkerboard, the blocks where ``(row // block + col // block)`` is odd are TEST, and
of the others every ``val_every``-th (in row-major order) is VAL.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import re
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.transform import array_bounds
from rasterio.windows import Window

from geoseg import fixes
from geoseg.config import TrainConfig
from geoseg.errors import (
    ConfigError,
    InconsistentLabelsWarning,
    NodataClassWarning,
    OverlappingFeaturesWarning,
    RasterFormatError,
    UnknownCodeWarning,
    UnlabelledFeaturesWarning,
)
from geoseg.raster import (
    Scene,
    absolute_path,
    alpha_bands,
    band_index,
    class_codes,
    constant_bands,
    labels_on_grid,
    masked_out,
    open_scene,
    pixel_digest,
    read_window,
    same_named,
    unnamed_bands,
    with_mask,
)
from geoseg.taxonomy import (
    Taxonomy,
    format_share,
    lookup_codes,
    nodata_class_message,
    unknown_codes_message,
)
from geoseg.vector_labels import (
    VectorField,
    is_vector,
    level_field,
    overlap_message,
    unknown_names_message,
)

log = logging.getLogger(__name__)

TRAIN, VAL, TEST = 0, 1, 2
#: The split role of every block of a source whose ``role`` is not ``blocks``.
SOURCE_ROLES = {"train": TRAIN, "validation": VAL, "test": TEST}

#: ``(row, col, height, width, role)`` of one split block.
SplitBlock = tuple[int, int, int, int, int]


@dataclass
class LabelledScene:
    """One labelled scene in memory (its bands and validity possibly memory-mapped).

    Attributes
    ----------
    path : str
        The image path.
    image : numpy.ndarray
        ``(bands, H, W)`` raw band values.
    valid : numpy.ndarray
        ``(H, W)`` pixels valid in every band.
    coarse, fine : numpy.ndarray
        ``(H, W)`` class indices, ``-1`` where not labelled at that level: int16 (or
        int32 for a taxonomy of more than 32,000 classes), so that labels take 4 bytes
        a pixel instead of the 16 of int64 look-ups (training holds its scenes).
    role : numpy.ndarray
        ``(H, W)`` int8 split role (TRAIN / VAL / TEST).
    blocks : list of SplitBlock
        The split blocks with their roles.
    """

    path: str
    image: np.ndarray
    valid: np.ndarray
    coarse: np.ndarray
    fine: np.ndarray
    role: np.ndarray
    blocks: list[SplitBlock]


#: Reads ``(row, height)`` rows of a label raster as codes (see :func:`label_rows`).
LabelReader = Callable[[int, int], np.ndarray]


@contextlib.contextmanager
def label_rows(
    path: Path,
    scene: Scene,
    *,
    align: bool = False,
    vector: VectorField | None = None,
    taxonomy: Taxonomy | None = None,
    level: str | None = None,
) -> Iterator[LabelReader]:
    """Open a label raster to read band 1 as integer codes, rows at a time.

    Yields a function of ``(row, height)`` that returns those rows' codes, ``-1`` where
    the raster is nodata: int32 where the raster's type fits (every integer type up to
    16 bits, and int32), else int64. With ``taxonomy`` and ``level`` (the raster's),
    a nodata tag that is the code of one of its classes is warned about
    (:class:`geoseg.errors.NodataClassWarning`).

    The raster must be on the image's grid: the same size and, when it is
    georeferenced, the same CRS and geotransform. A label raster with no
    georeferencing at all (no CRS, identity transform), as many ML datasets ship them,
    is taken to be pixel-aligned with the image. With ``align``, a raster on another
    grid is resampled onto the image's with nearest neighbour; image pixels it does not
    reach are ``-1``. Vector labels (``vector`` says where they keep their classes)
    are burnt onto the image's grid, a band of rows at a time.

    Raises
    ------
    RasterFormatError
        The raster is not on the image's grid (and ``align`` is off), or cannot be
        resampled onto it (no CRS, no overlap); vector labels without classes.
    """
    fix = (
        "set data.align_labels: true to resample it with nearest neighbour, or do so "
        f"yourself ({fixes.onto_grid(path, scene.path)})"
    )
    on_grid = labels_on_grid(
        path,
        width=scene.width,
        height=scene.height,
        crs=scene.crs,
        transform=scene.affine,
        align=align,
        what="label",
        target=f"the image {scene.path}",
        target_path=scene.path,
        fix=fix,
        vector=vector,
    )
    with on_grid as (src, reached):
        message = None
        if level is not None and taxonomy is not None and not is_vector(path):
            message = nodata_class_message(taxonomy, src.nodata, path, level)
        if message:
            warnings.warn(message, NodataClassWarning, stacklevel=2)
        # an alpha band, the file's or the resampling's, holds no codes
        bands = src.count - len(alpha_bands(src))
        if bands > 1:
            log.warning(
                "%s: label raster has %d bands: band 1 is read as the class codes", path, bands
            )

        def read(row: int, height: int) -> np.ndarray:
            win = Window(0, row, scene.width, height)
            data = src.read(1, window=win)
            masked = None if reached is not None else masked_out(src, 1, win)
            if masked is not None and data.dtype.kind == "f":  # no code under the mask
                data = np.where(masked, np.nan, data)
            if data.dtype.kind == "f":  # whole numbers only, NaN as nodata
                out = class_codes(data, src.nodata, path, "label raster")
            else:
                fits = np.can_cast(data.dtype, np.int32)
                out = data.astype(np.int32 if fits else np.int64)
                if src.nodata is not None:
                    out[data == src.nodata] = -1
            if reached is not None:
                out[src.read(reached, window=win) == 0] = -1
            elif masked is not None:  # a mask band or an alpha band
                out[masked] = -1
            return out

        yield read


@dataclass
class _Unknown:
    """Label codes of one raster that its taxonomy does not list, summed over row bands."""

    codes: set[int]
    unknown: int = 0
    labelled: int = 0


def _to_index(codes: np.ndarray, lut: np.ndarray, tally: _Unknown) -> np.ndarray:
    """Map label codes (``-1`` = unlabelled) to class indices; count unknown codes."""
    idx = lookup_codes(codes, lut)
    unknown_px = (codes >= 0) & (idx < 0)
    tally.labelled += int((codes >= 0).sum())
    if unknown_px.any():
        tally.codes.update(np.unique(codes[unknown_px]).tolist())
        tally.unknown += int(unknown_px.sum())
    return idx


def _warn_unknown(
    tally: _Unknown,
    path: Path | str | None,
    taxonomy_name: str,
    other_level: tuple[str, np.ndarray],
) -> None:
    """Warn of a raster's codes that the taxonomy does not list (they became ``-1``).

    The :class:`UnknownCodeWarning` carries ``path``, ``codes``, ``unknown`` and
    ``labelled`` (for a summary over many rasters, see :func:`config_scenes`); codes that
    are all the other level's (``other_level``: its name and look-up table) say so.
    """
    if not tally.unknown:
        return
    found = sorted(tally.codes)
    other = None
    if (lookup_codes(np.asarray(found), other_level[1]) >= 0).all():
        other = other_level[0]
    if other and tally.unknown == tally.labelled and path is not None and not is_vector(path):
        # nothing of the raster would train, and its codes are the other level's: the
        # levels were swapped (codes of no level, as one chip of a region the taxonomy
        # lacks, are warned of and summed over the chips: the others train)
        message = unknown_codes_message(
            path, found, tally.unknown, tally.labelled, taxonomy_name, "nothing would train"
        )
        fix = _other_level_hint(other, path).strip(" ()")
        said = message.removesuffix(": check that the taxonomy matches the labels")
        raise ConfigError(f"{said}: {fix}")
    consequence = "they are ignored" + (_other_level_hint(other, path) if other else "")
    message = unknown_codes_message(
        path, found, tally.unknown, tally.labelled, taxonomy_name, consequence
    )
    warnings.warn(
        UnknownCodeWarning(
            message,
            path=path,
            codes=found,
            unknown=tally.unknown,
            labelled=tally.labelled,
            other_level=other,
        ),
        stacklevel=3,
    )


def _other_level_hint(level: str, path: Path | str | None = None) -> str:
    if path is not None and is_vector(path):
        return (
            f" (they are {level} codes of the taxonomy: give the file as '{level}:' with "
            f"the attribute as {level}_field?)"
        )
    return f" (they are {level} codes of the taxonomy: give the raster as '{level}:'?)"


def select_bands(
    names: tuple[str, ...], wanted: tuple[str, ...] | None, path: str
) -> tuple[int, ...]:
    """1-based band indexes for ``wanted`` names (all bands when ``None``).

    A name matches a band's description; ``bandK`` also selects band ``K`` (see
    :func:`geoseg.raster.band_index`).

    Raises
    ------
    RasterFormatError
        A wanted band name is not in the file.
    """
    if wanted is None:
        return tuple(range(1, len(names) + 1))
    if (twice := same_named(names, wanted)) is not None:
        name, where = twice
        raise RasterFormatError(
            f"{path}: bands {', '.join(map(str, where))} are all named {name!r}, so 'bands' "
            f"cannot tell which to read: give them by index in the config (e.g. "
            f"{where[0]}) or name the bands apart in the file "
            f"({fixes.name_bands(path)})"
        )
    found = {b: band_index(names, b) for b in wanted}
    missing = [b for b, i in found.items() if i is None]
    beyond = [b for b in missing if re.fullmatch(r"band\d+", b) and int(b[4:]) > len(names)]
    if beyond:
        indexes = ", ".join(b[4:] for b in beyond)
        raise RasterFormatError(
            f"{path}: 'bands' asks for band {indexes} of a file of {len(names)} bands "
            f"({', '.join(names)}): fix 'bands' in the config (1-based indexes from 1 to "
            f"{len(names)}, or the bands' names)"
        )
    if missing:
        raise RasterFormatError(
            f"{path}: bands {missing} not found (the file has {list(names)}): "
            "fix 'bands' in the config (names, or 1-based indexes) or set band descriptions "
            "in the file"
        )
    return tuple(found[b] for b in wanted)  # type: ignore[misc]


def split_roles(
    shape: tuple[int, int], *, block: int, checkerboard: bool, val_every: int
) -> tuple[np.ndarray, list[SplitBlock]]:
    """Assign TRAIN / VAL / TEST to every pixel by blocks.

    Examples
    --------
    >>> role, blocks = split_roles((4, 6), block=2, checkerboard=True, val_every=2)
    >>> role.tolist()[0]
    [0, 0, 2, 2, 1, 1]
    """
    role = np.empty(shape, dtype=np.int8)
    blocks: list[SplitBlock] = []
    k = 0
    for r in range(0, shape[0], block):
        for c in range(0, shape[1], block):
            h, w = min(block, shape[0] - r), min(block, shape[1] - c)
            if checkerboard and (r // block + c // block) % 2 == 1:
                rl = TEST
            else:
                rl = VAL if k % val_every == val_every - 1 else TRAIN
                k += 1
            role[r : r + h, c : c + w] = rl
            blocks.append((r, c, h, w, rl))
    return role, blocks


def stratified_validation(hist: np.ndarray, fraction: float) -> np.ndarray:
    """Choose validation blocks whose class counts come closest to ``fraction`` of each class.

    Greedy: blocks are added one at a time, each time the one that lowers the loss
    most, until no block lowers it or the chosen blocks hold ``fraction`` of the
    labelled pixels. The loss sums over the classes (each alike, as in mIoU) the missing
    share of the class's validation target, ``max(0, target - held) / target``, plus
    twice the share of its training pixels taken beyond the target,
    ``2 max(0, held - target) / (total - target)``. So a rare class gets validation
    pixels even from a block holding more than its target, but a class found in a
    single block (all its training examples) stays in training. Deterministic.

    Parameters
    ----------
    hist : numpy.ndarray
        ``(blocks, classes)`` labelled pixels of each class in each candidate block.
    fraction : float
        Share of the labelled pixels to hold out.

    Returns
    -------
    numpy.ndarray
        ``(blocks,)`` boolean, True for the validation blocks.

    Examples
    --------
    >>> hist = np.array([[90, 0], [90, 0], [80, 10], [80, 10], [100, 0]])
    >>> stratified_validation(hist, 0.2).tolist()
    [False, False, True, False, False]
    """
    hist = np.asarray(hist, dtype=np.float64)
    total = hist.sum(axis=0)
    present = total > 0
    counts = hist[:, present]
    total = total[present]
    target = total * fraction
    short = np.maximum(target, 1e-9)
    room = np.maximum(total - target, 1.0)

    def loss(held: np.ndarray) -> np.ndarray:
        deficit = np.maximum(target - held, 0.0) / short
        surplus = 2.0 * np.maximum(held - target, 0.0) / room
        return (deficit + surplus).sum(axis=-1)  # type: ignore[no-any-return]

    chosen = np.zeros(hist.shape[0], dtype=bool)
    held = np.zeros(total.size)
    need = fraction * total.sum()
    candidates = counts.sum(axis=1) > 0
    current = float(loss(held))
    while held.sum() < need and (candidates & ~chosen).any():
        cand = np.flatnonzero(candidates & ~chosen)
        after = loss(held[None, :] + counts[cand])
        k = int(np.argmin(after))
        if after[k] >= current:
            break
        chosen[cand[k]] = True
        held += counts[cand[k]]
        current = float(after[k])
    return chosen


#: A scene whose bands and validity take at least this many bytes (128 MiB; a 4096²
#: 4-band uint16 image takes 151 MB), or that comes after this much of scenes in memory
#: (chips), loaded with a ``spill`` folder, keeps its arrays in memory-mapped files there
#: instead of memory: pages the system can drop and read again, so that the scenes a run
#: trains on may together exceed its memory.
SPILL_BYTES = 1 << 27

#: Values read at a time into a spilled scene (rows of every band).
SPILL_READ_VALUES = 1 << 25

#: Label pixels converted to class indices at a time (rows of the label rasters).
LABEL_READ_PIXELS = 1 << 24


def spill_folder(out: Path) -> Path:
    """Where a run writing ``out`` spills large scenes (see :class:`SpillArena`).

    ``$GEOSEG_SPILL_DIR``, else beside ``out``: not the system's temporary folder, which
    may be memory itself.
    """
    return Path(os.environ.get("GEOSEG_SPILL_DIR") or Path(out).absolute().parent)


def _mapped_file(folder: Path, size: int) -> mmap.mmap:
    """A zeroed shared mapping of a new file of ``size`` bytes in ``folder``, unlinked.

    The file is unlinked as soon as it is made and its blocks are reserved before it is
    mapped: nothing is left on disk, whatever becomes of the run (on systems that let an
    open file be unlinked), one file descriptor is held (by the mapping, until it is
    freed), and a full disk is an ``OSError`` here, not a crash when a page is first
    written.
    """
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".geoseg-scene-", suffix=".raw", dir=folder)
    try:
        with contextlib.suppress(OSError):
            os.unlink(name)
        if hasattr(os, "posix_fallocate"):
            os.posix_fallocate(fd, 0, max(size, 1))
        else:  # macOS: sparse, so a full disk shows when pages are written
            os.ftruncate(fd, max(size, 1))
        return mmap.mmap(fd, max(size, 1))
    finally:
        os.close(fd)


def _aligned(specs: Sequence[tuple[tuple[int, ...], Any]]) -> tuple[list[int], int]:
    """Offsets of arrays of ``(shape, dtype)`` packed at 64-byte boundaries, and the total."""
    offsets, total = [], 0
    for shape, dtype in specs:
        offsets.append(total)
        total += -(-int(np.prod(shape)) * np.dtype(dtype).itemsize // 64) * 64
    return offsets, total


class SpillArena:
    """Memory-mapped files in a folder that scenes' arrays are cut from.

    Arrays are packed into files of at least ``chunk`` bytes (default
    :data:`SPILL_BYTES`; a larger request gets a file of its own), so that many small
    scenes (chips) hold a few file descriptors, not one each. Scenes kept in memory are
    counted in ``held``: :func:`load_scene` spills a scene that is large, or that comes
    after :data:`SPILL_BYTES` of scenes in memory.

    Examples
    --------
    >>> arena = SpillArena(Path(tempfile.gettempdir()), chunk=1 << 16)
    >>> a, ok = arena.arrays([((2, 3), np.int16), ((3,), bool)])
    >>> b, = arena.arrays([((4,), np.float32)])
    >>> a[1] = 7
    >>> int(a.sum()), ok.tolist(), a.base is b.base, arena.files
    (21, [False, False, False], True, 1)
    """

    def __init__(self, folder: Path, chunk: int | None = None) -> None:
        self.folder, self.chunk = Path(folder), SPILL_BYTES if chunk is None else chunk
        self.held = 0
        self.files = 0
        self.failed: OSError | None = None
        self._mapped: mmap.mmap | None = None
        self._used = 0

    def arrays(self, specs: Sequence[tuple[tuple[int, ...], Any]]) -> list[np.ndarray]:
        """Zeroed arrays of ``(shape, dtype)``, cut from the current file or a new one.

        Raises
        ------
        OSError
            The folder cannot hold a new file (no space, read-only, no shared mapping).
        """
        offsets, total = _aligned(specs)
        if self._mapped is None or self._used + total > len(self._mapped):
            size = max(self.chunk, total)
            mapped = _mapped_file(self.folder, size)
            self.files += 1
            log.info(
                "memory-mapping scenes from a %s MB file in %s", f"{size / 2**20:,.0f}", self.folder
            )
            if total >= self.chunk:  # a file of its own: the current one stays open
                return _views(mapped, specs, offsets, 0)
            self._mapped, self._used = mapped, 0
        start, self._used = self._used, self._used + total
        return _views(self._mapped, specs, offsets, start)


def _views(
    mapped: mmap.mmap,
    specs: Sequence[tuple[tuple[int, ...], Any]],
    offsets: list[int],
    start: int,
) -> list[np.ndarray]:
    return [
        np.ndarray(shape, dtype=dtype, buffer=mapped, offset=start + off)
        for (shape, dtype), off in zip(specs, offsets, strict=True)
    ]


def _scene_arrays(
    scene: Scene, bands: tuple[int, ...], arena: SpillArena | None, index: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A scene's ``bands`` and validity, read, and its coarse and fine indices, all ``-1``.

    Given an ``arena``, a scene whose bands and validity take :data:`SPILL_BYTES` or
    more, or that comes after that much of scenes held in memory, has all four cut from
    its memory-mapped files, its bands read row bands at a time (in memory, with one
    warning, where the folder cannot hold them). ``index`` is the dtype of the indices.
    """
    pixels = scene.height * scene.width
    nbytes = pixels * (len(bands) * np.dtype(scene.dtype).itemsize + 1)
    arrays = None
    if (
        arena is not None
        and arena.failed is None
        and (nbytes >= SPILL_BYTES or arena.held + nbytes > SPILL_BYTES)
    ):
        specs = [((len(bands), *scene.shape), scene.dtype), (scene.shape, bool)]
        try:
            arrays = arena.arrays([*specs, (scene.shape, index), (scene.shape, index)])
        except OSError as exc:
            arena.failed = exc
            log.warning(
                "%s: scenes cannot go to memory-mapped files in %s (%s): they are held in "
                "memory (GEOSEG_SPILL_DIR picks another folder)",
                scene.path, arena.folder, exc,
            )  # fmt: skip
    if arrays is None:
        if arena is not None:
            arena.held += nbytes
        data, valid = read_window(
            scene.path, 0, 0, scene.height, scene.width, bands=bands, mask=scene.mask
        )
        return data, valid, np.full(scene.shape, -1, index), np.full(scene.shape, -1, index)
    data, valid, coarse, fine = arrays
    rows = max(1, SPILL_READ_VALUES // (scene.width * len(bands)))
    if rows >= 256:
        rows -= rows % 256  # whole internal tiles, as GeoTIFFs are usually tiled
    for r in range(0, scene.height, rows):
        h = min(rows, scene.height - r)
        part, ok = read_window(scene.path, r, 0, h, scene.width, bands=bands, mask=scene.mask)
        data[:, r : r + h] = part
        valid[r : r + h] = ok
        coarse[r : r + h] = -1
        fine[r : r + h] = -1
    return data, valid, coarse, fine


def load_scene(
    image: Path,
    coarse: Path | None,
    fine: Path | None,
    taxonomy: Taxonomy,
    *,
    block: int,
    checkerboard: bool,
    val_every: int,
    bands: tuple[str, ...] | None = None,
    validation: str = "every",
    align: bool = False,
    role: str = "blocks",
    spill: SpillArena | None = None,
    vector: Mapping[str, VectorField] | None = None,
    mask: tuple[Path, Any] | None = None,
) -> LabelledScene:
    """Read an image and its labels, map codes to indices and assign split roles.

    Parameters
    ----------
    image : Path
        The multi-band image.
    coarse, fine : Path or None
        Label rasters on the image grid, or vector labels (at least one).
    taxonomy : Taxonomy
        The class hierarchy.
    block, checkerboard, val_every
        The spatial split (see :func:`split_roles`).
    bands : tuple of str, optional
        Band names to use, in model order (default: every band but alpha bands).
    validation : {"every", "stratified"}
        ``every``: every ``val_every``-th non-test block validates. ``stratified``: the
        same share of labelled pixels, in the blocks chosen by
        :func:`stratified_validation`, so rare classes are validated too.
    align : bool
        Resample label rasters on another grid onto the image's (nearest neighbour).
    role : {"blocks", "train", "validation", "test"}
        ``blocks``: roles by the split's blocks; else every block has this role.
    spill : SpillArena, optional
        Memory-mapped files for the bands, validity and class indices of a scene whose
        bands take :data:`SPILL_BYTES` or more, or that comes after that much held in
        memory (see :class:`SpillArena`); in memory without it.
    vector : Mapping of str to VectorField, optional
        Where vector labels keep each level's classes (the class names are the
        taxonomy's); needed for vector labels only.
    mask : tuple, optional
        ``(raster, rule)``: pixels of the image to leave out, as if nodata (see
        :mod:`geoseg.scene_mask`).
    """
    mask_path, mask_rule = mask if mask is not None else (None, None)
    # one area of interest may cover some chips of a pattern only: the others are left out
    scene = with_mask(open_scene(image, image=True), mask_path, mask_rule, strict=False)
    wanted = bands if bands is not None else scene.data_band_names
    band_idx = select_bands(scene.band_names, wanted, str(image))
    # validity as prediction reads it: nodata values, NaN, and the file's mask or alpha
    dtype = index_dtype(taxonomy)
    data, valid, c_idx, f_idx = _scene_arrays(scene, band_idx, spill, dtype)
    shape = scene.shape
    paths = {"fine": fine, "coarse": coarse}
    luts = {level: taxonomy.code_to_index_lut(level) for level in paths}
    to_idx = {level: lut.astype(dtype) for level, lut in luts.items()}
    tallies = {level: _Unknown(set()) for level in paths}
    mismatched = contradicting = labelled_both = 0
    with contextlib.ExitStack() as stack:
        readers = {
            level: stack.enter_context(
                label_rows(
                    path,
                    scene,
                    align=align,
                    vector=level_field(vector, level, taxonomy),
                    taxonomy=taxonomy,
                    level=level,
                )
            )
            for level, path in paths.items()
            if path is not None
        }
        # a band of rows at a time: int32 codes and their masks of a large scene would
        # take many times its int16 indices
        rows = max(1, LABEL_READ_PIXELS // scene.width)
        for r in range(0, scene.height, rows):
            band = slice(r, min(r + rows, scene.height))
            leaf_c = None
            for level, read in readers.items():
                codes = read(r, band.stop - r)
                codes[codes == taxonomy.nodata] = -1  # the taxonomy's own nodata: unlabelled
                if level == "fine":
                    leaf_c, codes = _childless_leaves(codes, taxonomy)
                    tallies[level].labelled += int((leaf_c >= 0).sum())  # labelled, as leaves
                idx = _to_index(codes, to_idx[level], tallies[level])
                (f_idx if level == "fine" else c_idx)[band] = idx
            if leaf_c is not None and (leaf_c >= 0).any():
                mismatched += _merge_leaf_coarse(c_idx[band], leaf_c)
            bad, both = _drop_contradictions(c_idx[band], f_idx[band], taxonomy)
            contradicting += bad
            labelled_both += both
    for level, path in paths.items():
        other = "coarse" if level == "fine" else "fine"
        _warn_unknown(tallies[level], path, taxonomy.name, (other, luts[other]))
    if mismatched:
        warnings.warn(
            f"{coarse} and {fine}: {mismatched:,} pixels whose fine raster names a coarse "
            "class without fine classes have another class in the coarse raster; they are "
            "ignored: check that both rasters come from the same labelling",
            InconsistentLabelsWarning,
            stacklevel=2,
        )
    if contradicting:
        warnings.warn(
            f"{coarse} and {fine}: {contradicting:,} of {labelled_both:,} pixels labelled "
            f"at both levels ({format_share(contradicting, labelled_both)}) have a coarse "
            "class that is not the parent of their fine class in the taxonomy; they are "
            "ignored: check the taxonomy's parents and that both rasters come from the same "
            "labelling",
            InconsistentLabelsWarning,
            stacklevel=2,
        )
    # A fine label implies its coarse parent; fill coarse where only fine is known.
    derived = (c_idx < 0) & (f_idx >= 0)
    c_idx[derived] = taxonomy.fine_parent_index[f_idx[derived]]
    c_idx[~valid] = -1
    f_idx[~valid] = -1
    if role != "blocks":
        fixed = SOURCE_ROLES.get(role)
        if fixed is None:
            raise ConfigError(
                f"source role {role!r} is not one of blocks, {', '.join(SOURCE_ROLES)}"
            )
        roles, blocks = split_roles(shape, block=block, checkerboard=False, val_every=val_every)
        roles[:] = fixed
        blocks = [(r, c, h, w, fixed) for r, c, h, w, _ in blocks]
        return LabelledScene(str(image), data, valid, c_idx, f_idx, roles, blocks)
    role_px, blocks = split_roles(
        shape, block=block, checkerboard=checkerboard, val_every=val_every
    )
    if validation == "stratified":
        blocks = _stratify(blocks, role_px, c_idx, f_idx, taxonomy.n_fine, 1.0 / val_every)
    elif validation != "every":
        raise ConfigError(f"validation {validation!r} is not one of every, stratified")
    return LabelledScene(str(image), data, valid, c_idx, f_idx, role_px, blocks)


def index_dtype(taxonomy: Taxonomy) -> type[np.signedinteger]:
    """The integer type of a scene's class indices: int16 unless the classes need more.

    Leaf indices (``n_fine + coarse index``, see :func:`leaf_labels`) must fit too.

    Examples
    --------
    >>> from geoseg.taxonomy import Taxonomy
    >>> index_dtype(Taxonomy.from_dict({"name": "t", "coarse": [{"code": 1, "name": "A"}]}))
    <class 'numpy.int16'>
    """
    return np.int16 if taxonomy.n_coarse + taxonomy.n_fine < 32_000 else np.int32


def _childless_leaves(codes: np.ndarray, taxonomy: Taxonomy) -> tuple[np.ndarray, np.ndarray]:
    """Split a fine raster's codes of coarse classes without children from the others.

    A fine (leaf-level) raster labels a pixel of a class with no fine children (e.g.
    Cloud beside Forest -> Deciduous / Evergreen) with that coarse class's code (unless
    that code is also a fine class's: codes are unique within a level only).

    Returns
    -------
    leaf_coarse : numpy.ndarray
        Coarse index where the code is such a class, ``-1`` elsewhere.
    codes : numpy.ndarray
        The codes with those pixels unlabelled (``-1``) at the fine level.
    """
    leaf = lookup_codes(codes, taxonomy.childless_code_lut().astype(index_dtype(taxonomy)))
    hit = leaf >= 0
    return leaf, (np.where(hit, -1, codes) if hit.any() else codes)


def _merge_leaf_coarse(c_idx: np.ndarray, leaf_c: np.ndarray) -> int:
    """Take the coarse classes a fine raster names (in place); return the conflicts.

    Where a coarse raster says otherwise, neither counts: those pixels are unlabelled and
    counted (the caller warns).
    """
    from_fine = leaf_c >= 0
    bad = from_fine & (c_idx >= 0) & (c_idx != leaf_c)
    c_idx[from_fine & (c_idx < 0)] = leaf_c[from_fine & (c_idx < 0)]
    n = int(bad.sum())
    if n:
        c_idx[bad] = -1
    return n


def _drop_contradictions(
    c_idx: np.ndarray, f_idx: np.ndarray, taxonomy: Taxonomy
) -> tuple[int, int]:
    """Unlabel (in place) pixels whose coarse label is not the parent of their fine label.

    Which of the two is wrong cannot be told, so neither trains or scores there.

    Returns
    -------
    (int, int)
        The pixels unlabelled, and the pixels labelled at both levels (for the caller's
        :class:`~geoseg.errors.InconsistentLabelsWarning`).
    """
    bad = taxonomy.contradicts(c_idx, f_idx)
    both = int(((c_idx >= 0) & (f_idx >= 0)).sum())
    n = int(bad.sum())
    if n:
        c_idx[bad] = -1
        f_idx[bad] = -1
    return n, both


def leaf_labels(coarse: np.ndarray, fine: np.ndarray, n_fine: int) -> np.ndarray:
    """Per-pixel leaf class: the fine index, else ``n_fine`` + coarse index, else -1."""
    return np.where(fine >= 0, fine, np.where(coarse >= 0, n_fine + coarse, -1))


def _stratify(
    blocks: list[SplitBlock],
    role: np.ndarray,
    coarse: np.ndarray,
    fine: np.ndarray,
    n_fine: int,
    fraction: float,
) -> list[SplitBlock]:
    """Re-assign TRAIN / VAL among the non-test blocks by :func:`stratified_validation`.

    Classes are the leaves (:func:`leaf_labels`). ``role`` is updated in place.
    """
    leaf = leaf_labels(coarse, fine, n_fine)
    n_leaf = int(leaf.max()) + 1 if (leaf >= 0).any() else 1
    open_blocks = [k for k, b in enumerate(blocks) if b[4] != TEST]
    hist = np.zeros((len(open_blocks), n_leaf))
    for row, k in enumerate(open_blocks):
        r, c, h, w, _ = blocks[k]
        lab = leaf[r : r + h, c : c + w]
        hist[row] = np.bincount(lab[lab >= 0], minlength=n_leaf)[:n_leaf]
    is_val = stratified_validation(hist, fraction)
    out = list(blocks)
    for row, k in enumerate(open_blocks):
        r, c, h, w, _ = blocks[k]
        rl = VAL if is_val[row] else TRAIN
        role[r : r + h, c : c + w] = rl
        out[k] = (r, c, h, w, rl)
    return out


def training_sources(cfg: TrainConfig) -> list[dict[str, Path]]:
    """The labelled scenes of a config: ``{"image", "coarse"?, "fine"?}`` paths each."""
    if cfg.data.dataset:
        from geoseg.datasets import fetch

        files = fetch(cfg.data.dataset)
        return [{k: v for k, v in files.items() if k in ("image", "coarse", "fine")}]
    out = []
    for s in cfg.data.sources:
        d: dict[str, Path] = {"image": s.image}
        if s.coarse is not None:
            d["coarse"] = s.coarse
        if s.fine is not None:
            d["fine"] = s.fine
        if s.mask is not None:
            d["mask"] = s.mask
        out.append(d)
    return out


def _footprint(path: str | Path) -> tuple[Any, np.ndarray] | None:
    """A georeferenced image's CRS and bounds ``(west, south, east, north)``, else None."""
    scene = open_scene(path, probe=False)
    if scene.crs is None:
        return None
    west, south, east, north = array_bounds(scene.height, scene.width, scene.affine)
    return scene.crs, np.array(
        [min(west, east), min(south, north), max(west, east), max(south, north)]
    )


def check_held_out(
    sources: list[dict[str, Path]],
    roles: list[str],
    *,
    trained_on: Sequence[str | Path] = (),
    blocks_tested: bool = False,
) -> None:
    """Keep test scenes unseen: refuse one that is also trained on, warn where ground overlaps.

    A test scene is refused when it is also a source of another role, an image of the
    bundle being fine-tuned, or a copy of either under another name (the same pixel
    values: the chips of many datasets carry no georeferencing to compare); so is a
    ``blocks`` source with test blocks (``blocks_tested``: a checkerboard) that copies a
    scene trained or validated whole. A test scene that shares ground with one of them
    (an overlapping crop) is reported, as is a validation scene that copies a training
    scene. Only exact copies are found where there is no georeferencing: a crop, or a
    copy with values changed, is not.

    Parameters
    ----------
    sources, roles : list
        A config's :func:`training_sources` and :meth:`TrainConfig.source_roles`.
    trained_on : sequence of path
        Images a bundle to be fine-tuned was trained on (its ``training.data``): their
        ground under a test scene is not unseen either.
    blocks_tested : bool
        The split has test blocks (a checkerboard) in ``blocks`` sources.

    Raises
    ------
    ConfigError
        A ``role: test`` image is also trained on, or holds the same pixels as one.
    """
    fix = "take it out of the test scenes, or the copy out of the training data"
    pairs = list(zip(sources, roles, strict=True))
    tests = {absolute_path(s["image"]) for s, r in pairs if r == "test"}
    others = [s["image"] for s, r in pairs if r != "test"]
    # by name first: no pixel is read for these
    for image in others:
        if absolute_path(image) in tests:
            raise ConfigError(
                f"{image}: listed as a test scene (role: test) and as a scene to train or "
                "validate on: a test scene must be unseen; list it once"
            )
    candidates = [(str(p), "training scene") for p in others] + [
        (str(p), "training image of the bundle fine-tuned") for p in trained_on if Path(p).exists()
    ]
    for path, what in candidates:
        if absolute_path(path) in tests:  # only a bundle's image can be here
            raise ConfigError(
                f"{path}: a test scene (role: test) and a {what}: a test scene must be "
                "unseen; test on scenes the bundle was not trained on"
            )
    digests: dict[tuple[str, bool], str] = {}  # each image read once for the three checks
    refuse_copies(
        sorted({absolute_path(s["image"]) for s, r in pairs if r == "validation"}),
        [(str(s["image"]), f"training scene {s['image']}") for s, r in pairs if r == "train"],
        fix="validation would favour what training saw; take one of them out",
        warn_only=True,
        what="validation",
        digests=digests,
    )
    if blocks_tested:
        refuse_copies(
            sorted({absolute_path(s["image"]) for s, r in pairs if r == "blocks"}),
            [
                (str(s["image"]), f"{r} scene {s['image']}")
                for s, r in pairs
                if r in ("train", "validation")
            ],
            fix=fix,
            digests=digests,
        )
    if not tests:
        return
    refuse_copies(
        sorted(tests),
        [(p, f"{what} {p}") for p, what in candidates],
        fix=fix,
        digests=digests,
    )
    test_prints = [(t, fp) for t in sorted(tests) if (fp := _footprint(t)) is not None]
    if not test_prints:
        return
    for path, what in candidates:
        fp = _footprint(path)
        if fp is None:
            continue
        for test, (crs, box) in test_prints:
            if crs != fp[0]:
                continue
            if _overlap(box, fp[1]):
                log.warning(
                    "test scene %s overlaps %s %s on the ground: its test score is not a "
                    "score on unseen ground; keep test areas apart from training areas",
                    test, what, path,
                )  # fmt: skip
                break


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two ``(west, south, east, north)`` boxes share ground (not just an edge)."""
    return bool(min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1]))


def refuse_copies(
    tests: Sequence[str],
    candidates: Sequence[tuple[str, str]],
    *,
    fix: str,
    warn_only: bool = False,
    what: str = "test",
    digests: dict[tuple[str, bool], str] | None = None,
) -> None:
    """Refuse a test image with the pixel values of a training image (a copy, renamed).

    Sample digests (a few windows) pick the pairs worth reading whole; each image is
    read at most once for each. Identical images whose values are constant (blank or
    all-nodata chips, which many different places give), or whose georeferenced
    footprints lie apart, are not copies.

    Parameters
    ----------
    tests : sequence of str
        Images whose pixels are scored as unseen.
    candidates : sequence of (path, description)
        Images trained or validated on, each with how the message names it (with its
        path).
    fix : str
        What the message tells the user to do.
    warn_only : bool
        Log a warning for each copy instead of raising (validation copies: they bias the
        choice of epoch and offsets, not the test score).
    what : str
        What the ``tests`` images' pixels are, for the message.
    digests : dict, optional
        ``(path, whole)`` -> :func:`~geoseg.raster.pixel_digest`, shared by calls that
        compare the same images.

    Raises
    ------
    ConfigError
        A test image holds the pixel values of a candidate.
    """
    if not tests or not candidates:
        return
    cache = {} if digests is None else digests

    def digest(path: str, *, full: bool) -> str:
        if (path, full) not in cache:
            cache[path, full] = pixel_digest(path, whole=full)
        return cache[path, full]

    by_sample: dict[str, list[str]] = {}
    for test in tests:
        by_sample.setdefault(digest(test, full=False), []).append(test)
    for path, described in candidates:
        for test in by_sample.get(digest(path, full=False), ()):
            if absolute_path(test) == absolute_path(path):
                continue  # the same file: refused by name where that matters
            if digest(test, full=True) != digest(path, full=True):
                continue
            if constant_bands(test) or _apart(test, path):
                continue
            message = (
                f"{test}: has the same pixel values as {described} (a copy under another "
                f"name?), so its {what} pixels are not unseen: {fix}"
            )
            if not warn_only:
                raise ConfigError(message)
            log.warning(message)


def _apart(a: str, b: str) -> bool:
    """Whether two images are georeferenced in one CRS with footprints that do not meet."""
    fa, fb = _footprint(a), _footprint(b)
    return fa is not None and fb is not None and fa[0] == fb[0] and not _overlap(fa[1], fb[1])


def config_scenes(
    cfg: TrainConfig,
    taxonomy: Taxonomy,
    sources: list[dict[str, Path]] | None = None,
    *,
    spill: Path | None = None,
) -> list[LabelledScene]:
    """Every labelled scene of a training config, read and split as the config says.

    ``sources`` are the config's :func:`training_sources`, when already resolved.
    ``spill`` is a folder for memory-mapped files of scenes (see :func:`load_scene`).
    Without ``bands`` in the config, every source is read with the first image's bands,
    matched by name (a second image in another band order is read in the first one's).
    A source with a ``role`` other than ``blocks`` has every block in that role.
    Warnings about one vector file that labels several images come once, summed.
    """
    sources = training_sources(cfg) if sources is None else sources
    bands = [cfg.bands] * len(sources) if cfg.bands is not None else _source_bands(sources)
    arena = SpillArena(spill) if spill is not None else None
    scenes = []
    with warnings.catch_warnings(record=True) as caught:
        for kind in (UnknownCodeWarning, UnlabelledFeaturesWarning, OverlappingFeaturesWarning):
            warnings.simplefilter("always", kind)
        for s, b, role, vector, mask in zip(
            sources, bands, cfg.source_roles(), cfg.vector_fields(), cfg.source_masks(), strict=True
        ):
            scenes.append(
                load_scene(
                    s["image"],
                    s.get("coarse"),
                    s.get("fine"),
                    taxonomy,
                    # a whole training scene is cut into blocks for sampling only: patches
                    # of train.patch_size fit in them
                    block=max(cfg.split.block_size, cfg.train.patch_size)
                    if role == "train"
                    else cfg.split.block_size,
                    checkerboard=cfg.split.checkerboard is not None,
                    val_every=cfg.split.val_every,
                    bands=b,
                    validation=cfg.split.validation,
                    align=cfg.data.align_labels,
                    role=role,
                    spill=arena,
                    vector=vector,
                    mask=mask,
                )
            )
    unknown = [w for w in caught if issubclass(w.category, UnknownCodeWarning)]
    merged, summaries = _shared_file_summaries([w.message for w in caught], len(sources))
    for i, w in enumerate(caught):  # the others as they came; unknown codes once, when many
        if i not in merged and (w not in unknown or len(unknown) <= SUMMARY_AFTER):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    for summary in summaries:
        warnings.warn(summary, stacklevel=2)
    if len(unknown) > SUMMARY_AFTER:
        found = [w.message for w in unknown if isinstance(w.message, UnknownCodeWarning)]
        _summarise_unknown(found, len(sources), taxonomy.name)
    return scenes


def _shared_file_summaries(
    caught: Sequence[Warning | str], n_sources: int
) -> tuple[set[int], list[Warning]]:
    """One warning per vector file for its unknown class names and overlaps in many images.

    Returns the positions in ``caught`` that a summary replaces, and the summaries.
    """
    groups: dict[tuple[type, str, str], list[int]] = {}
    for i, m in enumerate(caught):
        if isinstance(m, OverlappingFeaturesWarning) or (
            isinstance(m, UnlabelledFeaturesWarning) and m.names
        ):
            groups.setdefault((type(m), m.path, m.field), []).append(i)
    merged: set[int] = set()
    summaries: list[Warning] = []
    for (kind, path, field), where in groups.items():
        if len(where) < 2:
            continue
        merged.update(where)
        images = f"in {len(where)} of {n_sources} images"
        found = [caught[i] for i in where]
        if kind is OverlappingFeaturesWarning:
            pixels = sum(m.pixels for m in found if isinstance(m, OverlappingFeaturesWarning))
            text = overlap_message(path, pixels, field, images)
            summaries.append(
                OverlappingFeaturesWarning(text, path=path, field=field, pixels=pixels)
            )
            continue
        named = [m for m in found if isinstance(m, UnlabelledFeaturesWarning)]
        names: Counter[str] = Counter()
        for m in named:
            names.update(m.names)
        first = named[0]
        text = unknown_names_message(path, names, field, first.what, first.hint, images)
        summaries.append(
            UnlabelledFeaturesWarning(
                text, path=path, field=field, names=dict(names), hint=first.hint, what=first.what
            )
        )
    return merged, summaries


#: More label rasters than this with unknown codes get one warning, not one each.
SUMMARY_AFTER = 3


def _summarise_unknown(found: list[UnknownCodeWarning], n_sources: int, taxonomy_name: str) -> None:
    """One :class:`UnknownCodeWarning` for the unknown codes of many label rasters."""
    codes = sorted({c for w in found for c in w.codes})
    unknown = sum(w.unknown for w in found)
    labelled = sum(w.labelled for w in found)
    levels = {w.other_level for w in found}
    other = levels.pop() if len(levels) == 1 else None
    hint = _other_level_hint(other) if other else ""
    shown = ", ".join(map(str, codes[:10])) + (
        f" and {len(codes) - 10} more" if len(codes) > 10 else ""
    )
    warnings.warn(
        UnknownCodeWarning(
            f"{len(found)} label rasters of {n_sources} sources (e.g. "
            f"{', '.join(str(w.path) for w in found[:2])}): {unknown:,} of "
            f"{labelled:,} labelled pixels ({format_share(unknown, labelled)}) hold codes "
            f"{shown} that taxonomy {taxonomy_name} does not list; they are ignored{hint}: "
            "check that the taxonomy matches the labels"
        ),
        stacklevel=3,
    )


def _source_bands(sources: list[dict[str, Path]]) -> list[tuple[str, ...] | None]:
    """The bands to read from each image of a config without ``bands``: the first's.

    By name where both images name their bands (another order is reordered), by
    position (``None``: the image's own data bands) where either names none.

    Raises
    ------
    ConfigError
        An image has a different number of data bands than the first.
    """
    out: list[tuple[str, ...] | None] = [None]
    if len(sources) < 2:
        return out * len(sources)
    names = open_scene(sources[0]["image"]).data_band_names
    for src in sources[1:]:
        other = open_scene(src["image"]).data_band_names
        if len(other) != len(names):
            raise ConfigError(
                f"{src['image']}: has {len(other)} bands ({', '.join(other)}) but the first "
                f"image {sources[0]['image']} has {len(names)} ({', '.join(names)}): list "
                "the bands to train on under 'bands:' in the config (names or 1-based "
                "indexes), so that every image is read alike"
            )
        by_position = unnamed_bands(names) or unnamed_bands(other)
        if by_position and other != names:
            log.info(
                "%s: bands read by position as the first image's %s (one of them names no "
                "bands)", src["image"], ",".join(names),
            )  # fmt: skip
        out.append(None if by_position else names)
    return out
