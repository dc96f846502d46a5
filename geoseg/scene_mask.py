"""Pixels to leave out of a scene, from a mask raster beside it: clouds, shadows, fill.

Optical scenes come with a quality layer that flags what is not land cover: Landsat
Collection 2's ``QA_PIXEL`` (bit flags), Sentinel-2 L2A's scene classification
``SCL`` (class values, at 20 m beside 10 m bands), Fmask's classes, or a user's own
0/1 cloud mask. A :class:`SceneMask` names such a raster and a :class:`MaskRule` that
says which of its values leave a pixel out; a pixel left out is nodata, exactly as if
the image were nodata there: no label at prediction (its neighbours see it filled from
the valid image around it, as a footprint edge is), no training, no statistics.

A mask on the scene's grid is read window by window; one on another grid (another
pixel size, extent or CRS: SCL at 20 m) is resampled onto it with nearest neighbour.
Scene pixels outside the mask's footprint are kept (the mask says nothing of them).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from geoseg.errors import ConfigError, RasterFormatError, RasterReadError

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
    spec : str
        The rule as the user gave it (recorded in ``run.json``).
    """

    values: tuple[int, ...] = ()
    bits: tuple[int, ...] = ()
    spec: str = ""

    @classmethod
    def parse(cls, spec: str | int | Sequence[int]) -> MaskRule:
        """A rule from ``3,8,9,10`` (values), ``bits:1,3,4`` or a preset name.

        Presets: ``landsat-qa`` (Collection 2 ``QA_PIXEL`` bits 0-4: fill, dilated
        cloud, cirrus, cloud, cloud shadow), ``s2-scl`` (Sentinel-2 ``SCL`` classes 0,
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
                raise ConfigError(f"mask rule {spec!r}: bits are numbered 0 to 63")
            return cls(bits=numbers, spec=text)
        return cls(values=numbers, spec=text)

    def flags(self, data: np.ndarray) -> np.ndarray:
        """``True`` where a mask value leaves the pixel out."""
        out = np.isin(data, self.values) if self.values else np.zeros(data.shape, bool)
        if self.bits:
            word = sum(1 << b for b in self.bits)
            out |= (data.astype(np.int64) & word) != 0
        return out


def _bad_spec(spec: object) -> str:
    return (
        f"mask rule {spec!r} is not understood: give the mask values that leave a pixel out "
        "('1' for a 0/1 cloud mask, '3,8,9,10'), 'bits:N,...' for bit flags, or a preset: "
        f"{', '.join(PRESETS)}"
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
    """

    path: str
    rule: MaskRule
    mtime: float = 0.0
    same_grid: bool = True

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
) -> SceneMask:
    """Check a mask raster against a scene and return it, read nothing of its pixels.

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

    Raises
    ------
    ConfigError
        No rule, or a rule that is not understood, or bit flags on a real-valued mask.
    RasterReadError
        The mask cannot be opened.
    RasterFormatError
        The mask is on another grid without the CRS to resample it, or misses the scene.
    """
    from geoseg.raster import grid_mismatch, is_remote, open_labels

    spath = str(path) if is_remote(path) else str(Path(path).resolve())
    if exclude is None or (isinstance(exclude, str) and not exclude.strip()):
        raise ConfigError(
            f"{spath}: a mask needs a rule that says which of its values leave a pixel out: "
            "add --mask-exclude (in a config: mask_exclude), e.g. '1' for a 0/1 cloud mask, "
            f"'0' for a validity mask of 0/255, 'bits:1,3,4', or {', '.join(PRESETS)}"
        )
    try:
        rule = MaskRule.parse(exclude)
    except ConfigError as exc:
        raise ConfigError(f"{spath}: {exc}") from None
    with open_labels(spath) as ds:
        if rule.bits and not np.issubdtype(np.dtype(ds.dtypes[0]), np.integer):
            raise ConfigError(
                f"{spath}: bit flags ({rule.spec}) need a mask of whole numbers, and its band "
                f"1 is {ds.dtypes[0]}: give the values that leave a pixel out instead"
            )
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
    mtime = Path(spath).stat().st_mtime if Path(spath).exists() else 0.0
    return SceneMask(path=spath, rule=rule, mtime=mtime, same_grid=same)


def _overlaps(ds: Any, crs: CRS, transform: Affine, width: int, height: int) -> bool:
    from rasterio.warp import transform_bounds

    left, top = transform * (0, 0)
    right, bottom = transform * (width, height)
    try:
        ml, mb, mr, mt = transform_bounds(ds.crs, crs, *ds.bounds)
    except Exception:  # bounds that do not transform: let reading tell
        return True
    x0, x1 = sorted((left, right))
    y0, y1 = sorted((top, bottom))
    return ml < x1 and mr > x0 and mb < y1 and mt > y0


@contextmanager
def _on_grid(
    mask: SceneMask, crs: CRS | None, transform: Affine, width: int, height: int
) -> Iterator[Any]:
    """The mask as a dataset on the scene's grid (resampled, with an alpha band, if need be)."""
    from geoseg.raster import open_labels

    with open_labels(mask.path) as ds:
        if mask.same_grid:
            yield ds
            return
        with WarpedVRT(
            ds,
            crs=crs,
            transform=transform,
            width=width,
            height=height,
            resampling=Resampling.nearest,
            add_alpha=True,  # where the mask's footprint ends
            src_nodata=None,  # every value is a class, its nodata tag included
            nodata=None,
        ) as vrt:
            yield vrt


def read_excluded(
    mask: SceneMask,
    window: Window,
    *,
    crs: CRS | None,
    transform: Affine,
    width: int,
    height: int,
    out_shape: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The scene pixels of ``window`` that ``mask`` leaves out, and those it covers.

    Parameters
    ----------
    mask : SceneMask
        The mask.
    window : Window
        A window of the scene, inside it.
    crs, transform, width, height
        The scene's grid.
    out_shape : tuple of int, optional
        Read the window decimated to this shape (nearest neighbour), as the scene is
        sampled for its statistics.

    Returns
    -------
    excluded, covered : numpy.ndarray
        Boolean arrays of the window's shape (or ``out_shape``).

    Raises
    ------
    RasterReadError
        The mask's pixels cannot be read.
    """
    shape = out_shape or (int(window.height), int(window.width))
    try:
        with _on_grid(mask, crs, transform, width, height) as ds:
            data = ds.read(1, window=window, out_shape=shape, resampling=Resampling.nearest)
            if mask.same_grid:
                covered = np.ones(shape, bool)
            else:
                covered = (
                    ds.read(ds.count, window=window, out_shape=shape, resampling=Resampling.nearest)
                    > 0
                )
    except RasterioError as exc:
        raise RasterReadError(
            f"{mask.path}: cannot read the mask ({str(exc).splitlines()[0]}): the file is "
            "corrupt or unreadable"
        ) from None
    return mask.rule.flags(data) & covered, covered


def count_masked(
    mask: SceneMask, *, crs: CRS | None, transform: Affine, width: int, height: int
) -> MaskCount:
    """How many of the scene's pixels ``mask`` leaves out, read a band of rows at a time."""
    excluded = uncovered = 0
    for r in range(0, height, _ROWS):
        h = min(_ROWS, height - r)
        out, covered = read_excluded(
            mask, Window(0, r, width, h), crs=crs, transform=transform, width=width, height=height
        )
        excluded += int(out.sum())
        uncovered += int(covered.size - covered.sum())
    return MaskCount(pixels=width * height, excluded=excluded, uncovered=uncovered)
