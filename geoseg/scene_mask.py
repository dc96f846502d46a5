"""Pixels to leave out of a scene, from a mask raster beside it: clouds, shadows, fill.

Optical scenes come with a quality layer that flags what is not land cover: Landsat
Collection 2's ``QA_PIXEL`` (bit flags), Sentinel-2 L2A's scene classification
``SCL`` (class values, at 20 m beside 10 m bands), Fmask's classes, or a user's own
0/1 cloud mask. A :class:`SceneMask` names such a raster and a :class:`MaskRule` that
says which of its values leave a pixel out; a pixel left out is nodata, exactly as if
the image were nodata there: no label at prediction (its neighbours see it filled from
the valid image around it, as a footprint edge is), no training, no statistics.

A mask on the scene's grid is read window by window; one on another grid (another
pixel size, extent or CRS: SCL at 20 m) is judged at its own resolution and the
verdicts resampled onto the scene's grid, a scene pixel left out when any mask pixel
under it is flagged. Every value of the mask is read as a class, its nodata value
included; scene pixels outside the mask's footprint are kept (the mask says nothing
of them).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.windows import Window

from geoseg import fixes
from geoseg.errors import ConfigError, RasterFormatError, RasterReadError
from geoseg.vector_labels import VectorField, VectorLabels, is_vector, open_vector_labels

#: Named rules for the common quality layers: (kind, numbers).
PRESETS: dict[str, tuple[str, tuple[int, ...]]] = {
    # Landsat Collection 2 QA_PIXEL: fill, dilated cloud, cirrus, cloud, cloud shadow
    "landsat-qa": ("bits", (0, 1, 2, 3, 4)),
    # Sentinel-2 L2A SCL: no data, saturated or defective, cloud shadows, cloud medium
    # and high probability, thin cirrus
    "s2-scl": ("values", (0, 1, 3, 8, 9, 10)),
    # Fmask: cloud shadow, cloud, no observation
    "fmask": ("values", (2, 4, 255)),
}

#: Scene rows read at a time when a mask is counted.
_ROWS = 512


@dataclass(frozen=True, slots=True)
class MaskRule:
    """Which values of a mask raster leave a pixel out.

    Attributes
    ----------
    values : tuple of int
        A pixel whose mask value is one of these is left out.
    bits : tuple of int
        A pixel whose mask value has any of these bits set (0 = least significant) is
        left out.
    region : {"", "inside", "outside"}
        For a vector mask: pixels inside its features are left out (clouds digitised
        as polygons), or those outside them (an area of interest).
    spec : str
        The rule as the user gave it (recorded in ``run.json``).
    """

    values: tuple[int, ...] = ()
    bits: tuple[int, ...] = ()
    spec: str = ""
    region: str = ""

    @classmethod
    def parse(cls, spec: str | int | Sequence[int]) -> MaskRule:
        """A rule: ``3,8,9,10`` (values), ``bits:1,3,4``, a preset, ``inside``, ``outside``.

        ``inside`` and ``outside`` are the rules of a vector mask. Presets:
        ``landsat-qa`` (Collection 2 ``QA_PIXEL`` bits 0-4: fill, dilated cloud,
        cirrus, cloud, cloud shadow), ``s2-scl`` (Sentinel-2 ``SCL`` classes 0,
        1, 3, 8, 9, 10), ``fmask`` (classes 2, 4, 255). A YAML list of whole numbers
        is a list of values.

        Raises
        ------
        ConfigError
            ``spec`` is none of these.

        Examples
        --------
        >>> MaskRule.parse("bits:3, 4").bits
        (3, 4)
        >>> MaskRule.parse("S2-SCL").values
        (0, 1, 3, 8, 9, 10)
        >>> MaskRule.parse([1]).values
        (1,)
        """
        if isinstance(spec, bool):
            raise ConfigError(_bad_spec(spec))
        if isinstance(spec, int):
            spec = [spec]
        if not isinstance(spec, str):
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in spec):
                raise ConfigError(_bad_spec(spec))
            return cls(values=tuple(spec), spec=",".join(str(v) for v in spec))
        text = spec.strip().lower()
        if text in ("inside", "outside"):
            return cls(region=text, spec=text)
        if text in PRESETS:
            kind, numbers = PRESETS[text]
            return cls(**{kind: numbers}, spec=text)  # type: ignore[arg-type]
        kind, _, rest = text.rpartition(":")
        if kind not in ("", "values", "bits") or not re.fullmatch(
            r"\s*-?\d+(\s*,\s*-?\d+)*\s*", rest
        ):
            raise ConfigError(_bad_spec(spec))
        numbers = tuple(int(v) for v in rest.split(","))
        if kind == "bits":
            if not all(0 <= b < 64 for b in numbers):
                raise ConfigError(
                    f"mask rule {spec!r}: bits are numbered 0 to 63 (0 the lowest): check the "
                    "bit numbers in the mask's documentation"
                )
            return cls(bits=numbers, spec=text)
        return cls(values=numbers, spec=text)

    def flags(self, data: np.ndarray) -> np.ndarray:
        """``True`` where a mask value leaves the pixel out."""
        out = np.isin(data, self.values) if self.values else np.zeros(data.shape, bool)
        if self.bits:
            word = np.uint64(sum(1 << b for b in self.bits))
            out |= (data.astype(np.int64).view(np.uint64) & word) != 0
        return out


def _bad_spec(spec: object) -> str:
    import difflib

    close = difflib.get_close_matches(str(spec).strip().lower(), PRESETS, n=1, cutoff=0.5)
    near = f"did you mean {close[0]!r}? " if close else ""
    return (
        f"mask rule {spec!r} is not understood: {near}give the mask values that leave a pixel "
        "out ('1' for a 0/1 cloud mask, '3,8,9,10'), 'bits:N,...' for bit flags, or a preset: "
        f"{', '.join(PRESETS)}; a vector mask takes 'inside' or 'outside'"
    )


@dataclass(frozen=True, slots=True)
class SceneMask:
    """A mask raster and the rule that reads it (see :func:`open_mask`).

    Attributes
    ----------
    path : str
        The mask raster (band 1 is read).
    rule : MaskRule
        Which of its values leave a pixel out.
    mtime : float
        Its modification time: part of a run's token, so a changed mask is read again.
    same_grid : bool
        Whether it lies on the scene's grid (read as is; else resampled onto it).
    vector : bool
        A vector file of features (polygons) burnt onto the scene's grid.
    note : str
        Why no feature of a vector mask lies on the scene (its extent against the
        scene's), when none does.
    bands : int
        The raster's band count (band 1 is read; more is doubted, see
        :func:`rule_doubts`).
    """

    path: str
    rule: MaskRule
    mtime: float = 0.0
    same_grid: bool = True
    vector: bool = False
    note: str = ""
    bands: int = 1

    def describe(self) -> dict[str, Any]:
        """The record kept in ``run.json``."""
        return {"path": self.path, "exclude": self.rule.spec, "mtime": self.mtime}


@dataclass(frozen=True, slots=True)
class MaskCount:
    """How much of a scene a mask leaves out (see :func:`count_masked`).

    Attributes
    ----------
    pixels : int
        The scene's pixels.
    excluded : int
        Scene pixels the mask leaves out.
    uncovered : int
        Scene pixels outside the mask's footprint (kept).
    """

    pixels: int
    excluded: int
    uncovered: int


def open_mask(
    path: str | Path,
    exclude: str | int | Sequence[int] | None,
    *,
    scene_path: str,
    width: int,
    height: int,
    crs: CRS | None,
    transform: Affine,
    strict: bool = True,
) -> SceneMask:
    """Check a mask against a scene and describe it (a raster's pixels are not read).

    Parameters
    ----------
    path : str or Path
        The mask raster.
    exclude : str, int or sequence of int
        The rule (see :meth:`MaskRule.parse`); required.
    scene_path : str
        The scene, for messages.
    width, height, crs, transform
        The scene's grid.
    strict : bool
        A vector area of interest (rule ``outside``) with no feature on the scene is an
        error; without ``strict`` (an area of interest shared by the chips of a training
        pattern) the scene is all left out.

    Raises
    ------
    ConfigError
        No rule, a rule that is not understood, or bit flags on a real-valued mask or
        beyond its type's bits.
    RasterReadError
        The mask cannot be opened.
    RasterFormatError
        The mask is on another grid without the CRS to resample it, or misses the scene.
    """
    from geoseg.raster import grid_mismatch, is_remote, open_labels

    spath = str(path) if is_remote(path) else str(Path(path).resolve())
    if not is_remote(spath) and not Path(spath).exists():  # said before any rule advice
        from geoseg.errors import RasterReadError

        raise RasterReadError(f"{spath}: mask file not found: check the path")
    if exclude is None or (isinstance(exclude, str) and not exclude.strip()):
        raise ConfigError(
            f"{spath}: a mask needs a rule that says which of its values leave a pixel out: "
            "add --mask-exclude (in a training config: mask_exclude; in a batch manifest: a "
            "mask_exclude column or key, or batch --mask-exclude), e.g. '1' for a 0/1 cloud "
            f"mask, '0' for a validity mask of 0/255, 'bits:1,3,4', or {', '.join(PRESETS)}"
        )
    try:
        rule = MaskRule.parse(exclude)
    except ConfigError as exc:
        raise ConfigError(f"{spath}: {exc}") from None
    mtime = Path(spath).stat().st_mtime if Path(spath).exists() else 0.0
    part = Path(spath)
    shp = [part.with_suffix(x) for x in (".shp", ".SHP") if part.with_suffix(x).exists()]
    if part.suffix.lower() in SHAPEFILE_PARTS and shp:
        raise ConfigError(f"{spath}: one file of a Shapefile: pass its .shp ({shp[0]})")
    if is_vector(spath):
        if not rule.region:
            raise ConfigError(
                f"{spath}: a vector mask takes the rule 'inside' (its features are left out: "
                f"clouds digitised as polygons) or 'outside' (only what they cover is kept: "
                f"an area of interest), not {rule.spec!r}"
            )
        # the layer, its CRS against the scene's: checked once, up front (and the
        # features kept for the blocks of this process)
        features = _scene_features(
            spath, mtime, crs, tuple(transform)[:6], (height, width), scene_path
        )
        note = ""
        if not features.features:
            try:  # why none lies on the scene: the file's extent against the scene's
                _burner(
                    spath, width, height, crs, transform, scene_path, shared=False,
                    scene=scene_path,
                )  # fmt: skip
            except RasterFormatError as exc:
                if strict and rule.region == "outside":
                    raise
                note = str(exc).removeprefix(f"{spath}: ")
        return SceneMask(path=spath, rule=rule, mtime=mtime, vector=True, note=note)
    if rule.region:
        raise ConfigError(
            f"{spath}: {rule.spec!r} is a rule of vector masks (polygons), and this is a "
            "raster: give the values of it that leave a pixel out"
        )
    with open_labels(spath) as ds:
        kind = np.dtype(ds.dtypes[0])
        if rule.bits and not np.issubdtype(kind, np.integer):
            raise ConfigError(
                f"{spath}: bit flags ({rule.spec}) need a mask of whole numbers, and its band "
                f"1 is {ds.dtypes[0]}: give the values that leave a pixel out instead"
            )
        if rule.bits and max(rule.bits) >= 8 * kind.itemsize:
            raise ConfigError(
                f"{spath}: bit {max(rule.bits)} of rule {rule.spec!r} is never set in a mask of "
                f"{ds.dtypes[0]} (bits 0 to {8 * kind.itemsize - 1}): check the bit numbers"
            )
        if rule.values and np.issubdtype(kind, np.integer):
            lo, hi = np.iinfo(kind).min, np.iinfo(kind).max
            if never := [v for v in rule.values if not lo <= v <= hi]:
                raise ConfigError(
                    f"{spath}: value{'s' * (len(never) > 1)} {', '.join(map(str, never))} of "
                    f"rule {rule.spec!r} cannot occur in a mask of {ds.dtypes[0]} ({lo} to "
                    f"{hi}): check the values"
                )
        bands = ds.count
        problem = grid_mismatch(ds, width=width, height=height, crs=crs, transform=transform)
        same = problem is None
        if not same:
            if ds.crs is None or crs is None:
                raise RasterFormatError(
                    f"{spath}: the mask is not on the grid of {scene_path} ({problem}), and "
                    f"{'it' if ds.crs is None else 'the scene'} has no CRS to resample it "
                    "by: give a mask of the scene's size, or georeference both"
                )
            if not _overlaps(ds, crs, transform, width, height):
                raise RasterFormatError(
                    f"{spath}: the mask does not overlap {scene_path} (bounds {tuple(ds.bounds)} "
                    f"in {ds.crs.to_string()}): pass the mask of this scene"
                )
    return SceneMask(path=spath, rule=rule, mtime=mtime, same_grid=same, bands=bands)


@functools.lru_cache(maxsize=4)
def _scene_features(
    path: str,
    mtime: float,
    crs: CRS | None,
    transform: tuple[float, ...],
    size: tuple[int, int],
    scene: str | None = None,
) -> VectorLabels:
    """A vector mask's features on a scene's grid, kept per process.

    ``mtime`` is part of the key: a changed file is read again. ``scene``: the scene's
    file, for the fix of one without a CRS.
    """
    del mtime  # part of the cache key only
    height, width = size
    return _burner(path, width, height, crs, Affine(*transform), "the scene", scene=scene)


#: How a vector mask is read: no attribute, every feature counts.
_FEATURES = VectorField(
    field="features", option="--mask", layer_option="the mask's layer", shared=True, presence=True
)


def _burner(
    path: str,
    width: int,
    height: int,
    crs: CRS | None,
    transform: Affine,
    target: str,
    *,
    shared: bool = True,
    scene: str | None = None,
) -> VectorLabels:
    """A vector mask's features on a grid (1 where a feature covers a pixel's centre).

    ``shared``: a grid that no feature reaches is no error (``False``: the error says
    why, with the file's extent and the grid's).
    """
    spec = _FEATURES if shared else dataclasses.replace(_FEATURES, shared=False)
    return open_vector_labels(
        path, spec, width=width, height=height, crs=crs, transform=transform,
        what="mask", target=target, target_path=scene,
    )  # fmt: skip


def _overlaps(ds: Any, crs: CRS, transform: Affine, width: int, height: int) -> bool:
    from rasterio.warp import transform_bounds

    left, top = transform @ (0, 0)
    right, bottom = transform @ (width, height)
    try:
        ml, mb, mr, mt = transform_bounds(ds.crs, crs, *ds.bounds)
    except Exception:  # bounds that do not transform: let reading tell
        return True
    x0, x1 = sorted((left, right))
    y0, y1 = sorted((top, bottom))
    return ml < x1 and mr > x0 and mb < y1 and mt > y0


def read_excluded(
    mask: SceneMask,
    window: Window,
    *,
    crs: CRS | None,
    transform: Affine,
    out_shape: tuple[int, int] | None = None,
    size: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The scene pixels of ``window`` that ``mask`` leaves out, and those it covers.

    A mask on the scene's grid is read as it is. One on another grid is judged at its
    own resolution first and the verdicts resampled: a scene pixel is left out when any
    mask pixel under it is flagged (a 10 m cloud mask over 30 m bands loses no cloud),
    and covered where the mask's footprint reaches its centre.

    Parameters
    ----------
    mask : SceneMask
        The mask.
    window : Window
        A window of the scene, inside it.
    crs, transform
        The scene's grid.
    out_shape : tuple of int, optional
        The window decimated to this shape (the scene sampled for its statistics).
    size : tuple of int, optional
        The scene's ``(height, width)``: a vector mask's features on the whole scene
        are then read once per process and kept for its other windows.

    Returns
    -------
    excluded, covered : numpy.ndarray
        Boolean arrays of the window's shape (or ``out_shape``).

    Raises
    ------
    RasterReadError
        The mask's pixels cannot be read.
    """
    from geoseg.raster import open_labels

    shape = out_shape or (int(window.height), int(window.width))
    if mask.vector:
        if size is not None and shape == (int(window.height), int(window.width)):
            # the scene's features, read once per process, burnt a window at a time
            features = _scene_features(mask.path, mask.mtime, crs, tuple(transform)[:6], size)
            inside = features.read(1, window=window) >= 0
        else:
            h, w = shape
            grid = transform * Affine.translation(window.col_off, window.row_off)
            grid = grid * Affine.scale(window.width / w, window.height / h)
            with _burner(mask.path, w, h, crs, grid, "the scene") as features:
                inside = features.read(1) >= 0
        return (inside if mask.rule.region == "inside" else ~inside), np.ones(shape, bool)
    try:
        with open_labels(mask.path) as ds:
            if mask.same_grid:
                data = ds.read(1, window=window, out_shape=shape, resampling=Resampling.nearest)
                return mask.rule.flags(data), np.ones(shape, bool)
            if shape != (window.height, window.width):  # a decimated sample
                return _resampled(ds, mask.rule, window, crs, transform, shape)
            return _resampled_in_chunks(ds, mask.rule, window, crs, transform)
    except RasterioError as exc:
        raise RasterReadError(
            f"{mask.path}: cannot read the mask ({str(exc).splitlines()[0]}): the file is "
            "corrupt or unreadable"
        ) from None


#: Files of a Shapefile besides its .shp (a mask passed as one of them is refused).
SHAPEFILE_PARTS = (".dbf", ".shx", ".prj", ".cpg", ".qix", ".sbn", ".sbx")


#: Side of the scene-aligned squares in which a mask on another grid is resampled.
RESAMPLE_CHUNK = 256


def _resampled_in_chunks(
    ds: Any, rule: MaskRule, window: Window, crs: CRS | None, transform: Affine
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_resampled` in squares of :data:`RESAMPLE_CHUNK` aligned on the scene's grid.

    GDAL's warper approximates the transformation between two CRSs along each output
    row, with breakpoints that depend on the window it is asked for, so a mask in another
    CRS warped window by window left out slightly other pixels for other block or tile
    sizes (Zion, a 60 m mask in EPSG:4326: 216 of 83,000 pixels), and its count in
    ``run.json`` did not match the labels. Warped in fixed squares of the scene, every
    pixel's verdict is the same whatever window asks for it.
    """
    n = RESAMPLE_CHUNK
    excluded = np.zeros((window.height, window.width), bool)
    covered = np.zeros_like(excluded)
    r_end, c_end = window.row_off + window.height, window.col_off + window.width
    for r in range(window.row_off // n * n, r_end, n):
        for c in range(window.col_off // n * n, c_end, n):
            ex, cov = _resampled(ds, rule, Window(c, r, n, n), crs, transform, (n, n))
            r0, r1 = max(r, window.row_off), min(r + n, r_end)
            c0, c1 = max(c, window.col_off), min(c + n, c_end)
            inside = (slice(r0 - r, r1 - r), slice(c0 - c, c1 - c))
            here = (slice(r0 - window.row_off, r1 - window.row_off),
                    slice(c0 - window.col_off, c1 - window.col_off))  # fmt: skip
            excluded[here], covered[here] = ex[inside], cov[inside]
    return excluded, covered


def _resampled(
    ds: Any,
    rule: MaskRule,
    window: Window,
    crs: CRS | None,
    transform: Affine,
    shape: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`read_excluded` of a mask on another grid: flags judged, then resampled."""
    from rasterio.warp import reproject, transform_bounds
    from rasterio.windows import from_bounds

    h, w = shape
    dst = transform * Affine.translation(window.col_off, window.row_off)
    dst = dst * Affine.scale(window.width / w, window.height / h)
    xs, ys = zip(*(dst * corner for corner in ((0, 0), (w, 0), (0, h), (w, h))), strict=True)
    excluded, covered = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
    try:
        bounds = transform_bounds(crs, ds.crs, min(xs), min(ys), max(xs), max(ys), densify_pts=21)
    except Exception:  # a window beyond what the mask's CRS can express: not covered
        return excluded.astype(bool), covered.astype(bool)
    src = from_bounds(*bounds, transform=ds.transform)
    # the mask pixels under the window, and a margin for the resampling's footprint
    r0, c0 = max(0, int(np.floor(src.row_off)) - 2), max(0, int(np.floor(src.col_off)) - 2)
    r1 = min(ds.height, int(np.ceil(src.row_off + src.height)) + 2)
    c1 = min(ds.width, int(np.ceil(src.col_off + src.width)) + 2)
    if r1 <= r0 or c1 <= c0:
        return excluded.astype(bool), covered.astype(bool)
    part = Window(c0, r0, c1 - c0, r1 - r0)
    flags = rule.flags(ds.read(1, window=part)).astype(np.uint8)
    common = {
        "src_transform": ds.window_transform(part),
        "src_crs": ds.crs,
        "dst_transform": dst,
        "dst_crs": crs,
        "src_nodata": None,
        "dst_nodata": None,
    }
    reproject(flags, excluded, resampling=Resampling.max, **common)
    reproject(np.ones_like(flags), covered, resampling=Resampling.nearest, **common)
    covered_b = covered > 0
    return (excluded > 0) & covered_b, covered_b


#: Values listed at most, and kept at most, by :func:`mask_values`.
_VALUES_KEPT = 4096

#: Pixels of a mask :func:`mask_values` reads at most (a larger one: decimated).
_VALUES_READ = 1 << 28

#: The codes each value preset expects (a mask with others is probably another layer).
_PRESET_DOMAINS: dict[str, tuple[set[int], str]] = {
    "s2-scl": (set(range(12)), "Sentinel-2 SCL classes 0-11"),
    "fmask": ({0, 1, 2, 3, 4, 255}, "Fmask classes 0-4 and 255"),
}

#: A share of the scene left out above which the rule is called into question.
HIGH_SHARE = 0.5


def mask_values(mask: SceneMask) -> tuple[list[float], bool]:
    """The distinct values of the mask's band 1 (all of the file), and whether there are more.

    At most :data:`_VALUES_KEPT` are kept; read a band of rows at a time.
    """
    from geoseg.raster import open_labels

    seen: set[float] = set()
    if mask.vector:
        return [], False
    try:
        with open_labels(mask.path) as ds:
            # a mask far larger than any scene (a region's) is looked at decimated
            step = max(1, int(np.ceil(np.sqrt(ds.width * ds.height / _VALUES_READ))))
            width = max(1, ds.width // step)
            for r in range(0, ds.height, _ROWS * step):
                h = min(_ROWS * step, ds.height - r)
                data = ds.read(
                    1,
                    window=Window(0, r, ds.width, h),
                    out_shape=(max(1, h // step), width),
                    resampling=Resampling.nearest,
                )
                if data.dtype in (np.uint8, np.uint16):  # a count per value: fast
                    found = np.flatnonzero(np.bincount(data.ravel())).tolist()
                else:
                    found = np.unique(data).tolist()
                seen.update(found)
                if len(seen) > _VALUES_KEPT:
                    return sorted(seen)[:_VALUES_KEPT], True
    except RasterioError as exc:
        raise RasterReadError(
            f"{mask.path}: cannot read the mask ({str(exc).splitlines()[0]}): the file is "
            "corrupt or unreadable"
        ) from None
    return sorted(seen), False


def rule_doubts(mask: SceneMask, count: MaskCount, values: list[float]) -> list[str]:
    """What suggests that ``mask``'s rule reads it wrongly, one sentence each (or none).

    A preset on a layer whose values are not that layer's (QA_PIXEL read as SCL, an
    SCL as QA_PIXEL), a rule that leaves out no pixel, or more than :data:`HIGH_SHARE`
    of the scene (a validity mask read the wrong way round).
    """
    rule, out = mask.rule, []
    if mask.vector:
        if rule.region == "inside" and count.excluded == 0:
            why = mask.note or "no feature of the mask covers a pixel's centre"
            out.append(f"{why}; nothing is left out")
        elif rule.region == "inside" and count.excluded > HIGH_SHARE * count.pixels:
            out.append(
                f"the mask's features cover {100 * count.excluded / count.pixels:.1f} % of the "
                "scene, all left out: if they are an area of interest, the rule is 'outside'"
            )
        return out
    shown = ", ".join(f"{v:g}" for v in values[:12]) + (" ..." if len(values) > 12 else "")
    if mask.bands > 1:
        out.append(
            f"the mask has {mask.bands} bands and band 1 is read: if the flags are in another, "
            f"extract it first ({fixes.one_band(mask.path, 'MASK.tif')})"
        )
    if rule.spec in _PRESET_DOMAINS:
        domain, what = _PRESET_DOMAINS[rule.spec]
        if stray := [v for v in values if v not in domain]:
            odd = ", ".join(f"{v:g}" for v in stray[:8]) + (" ..." if len(stray) > 8 else "")
            out.append(
                f"the mask holds values that are not {what} ({odd}): if it is another layer, "
                "give its own codes or preset"
            )
    if rule.spec == "landsat-qa" and values and max(values) < 256:
        out.append(
            f"QA_PIXEL values are 16-bit words (clear land 21824), and the mask holds only "
            f"{shown}: if it is another layer (an SCL takes s2-scl), give its own codes"
        )
    if count.excluded == 0:
        out.append(
            f"rule {rule.spec!r} leaves out no pixel of the scene (the mask holds {shown}): "
            "if it has clouds, check the rule"
        )
    elif count.excluded > HIGH_SHARE * count.pixels:
        out.append(
            f"the mask leaves out {100 * count.excluded / count.pixels:.1f} % of the scene: if "
            f"that is not all cloud, check rule {rule.spec!r} (a validity mask of 0/255 takes "
            "--mask-exclude 0)"
        )
    return out


def count_masked(
    mask: SceneMask, *, crs: CRS | None, transform: Affine, width: int, height: int
) -> MaskCount:
    """How many of the scene's pixels ``mask`` leaves out, read a band of rows at a time."""
    excluded = uncovered = 0
    for r in range(0, height, _ROWS):
        h = min(_ROWS, height - r)
        out, covered = read_excluded(
            mask, Window(0, r, width, h), crs=crs, transform=transform, size=(height, width)
        )
        excluded += int(out.sum())
        uncovered += int(covered.size - covered.sum())
    return MaskCount(pixels=width * height, excluded=excluded, uncovered=uncovered)
