"""Opening scenes and reading windows (the only module that reads input images).

Masks of pixels to leave out (clouds) are read by :mod:`geoseg.scene_mask`.

:func:`open_scene` validates a GeoTIFF once, up front, and returns a small picklable
:class:`Scene` description; workers then call :func:`read_window` with the path to
read their own windows, so no pixel array ever travels through the task graph.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio
from affine import Affine, TransformNotInvertibleError
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError, RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from geoseg import fixes
from geoseg.errors import RasterFormatError, RasterReadError
from geoseg.normalize import zero_in_every_band
from geoseg.vector_labels import VectorField, is_vector, open_vector_labels

if TYPE_CHECKING:
    from geoseg.normalize import BandMoments
    from geoseg.scene_mask import SceneMask

log = logging.getLogger(__name__)


def default_band_name(band: int) -> str:
    """The name :func:`open_scene` gives 1-based ``band`` when the file has no description."""
    return f"band{band}"


def unnamed_bands(names: tuple[str, ...]) -> bool:
    """Whether the file names none of its bands.

    That is, ``names`` are those :func:`open_scene` makes up for bands without
    descriptions (``band1``, ``band2``...).
    """
    return all(n == default_band_name(i) for i, n in enumerate(names, start=1))


def is_remote(path: str | Path) -> bool:
    """Whether ``path`` is a URL or a GDAL virtual path (not a file to stat or resolve)."""
    spath = str(path)
    return "://" in spath or spath.startswith("/vsi")


def absolute_path(path: str | Path) -> str:
    """``path`` as recorded in run.json and metrics.json: absolute, unless a URL.

    Examples
    --------
    >>> absolute_path("s3://bucket/scene.tif")
    's3://bucket/scene.tif'
    >>> absolute_path("/data/../data/scene.tif")
    '/data/scene.tif'
    """
    return str(path) if is_remote(path) else str(Path(path).resolve())


def name_position(names: Sequence[str], wanted: str) -> int | None:
    """0-based position of the band named ``wanted`` among ``names``, or ``None``.

    The exact name, else the one name equal to it but for case (``b2`` for ``B2``: file
    names and tools differ in case; a band must not be read by position for that).

    Examples
    --------
    >>> name_position(("b2", "b3"), "B3"), name_position(("B2", "b2"), "b2")
    (1, 1)
    >>> name_position(("Red", "RED"), "red") is None
    True
    """
    if wanted in names:
        return list(names).index(wanted) if list(names).count(wanted) == 1 else None
    folded = [i for i, n in enumerate(names) if n.casefold() == wanted.casefold()]
    return folded[0] if len(folded) == 1 else None


def same_named(names: Sequence[str], wanted: Sequence[str]) -> tuple[str, list[int]] | None:
    """The first of ``wanted`` that names several bands, with their 1-based indexes.

    A multi-date stack whose dates' bands share names (``red``, ``red``) cannot be read
    by name: the first would be read for both.

    Examples
    --------
    >>> same_named(("vis", "vis", "red"), ("vis", "red"))
    ('vis', [1, 2])
    >>> same_named(("vis", "vis", "red"), ("red",)) is None
    True
    """
    for w in wanted:
        exact = [i + 1 for i, n in enumerate(names) if n == w]
        folded = [i + 1 for i, n in enumerate(names) if n.casefold() == w.casefold()]
        if len(exact) > 1 or (not exact and len(folded) > 1 and not _is_index(w)):
            return w, exact if len(exact) > 1 else folded
    return None


def _is_index(name: str) -> bool:
    return re.fullmatch(r"band[1-9][0-9]*", name) is not None


def band_index(names: Sequence[str], wanted: str) -> int | None:
    """1-based index of band ``wanted`` among ``names``, or ``None``.

    A name matches first (:func:`name_position`: but for case where only one does);
    failing that, ``bandK`` (how a config gives a band by index, and how a file without
    descriptions names its bands) is band ``K`` of the file.

    Examples
    --------
    >>> band_index(("B2", "B3", "B4"), "B4"), band_index(("B2", "B3", "B4"), "band2")
    (3, 2)
    >>> band_index(("B2", "B3"), "band3") is None
    True
    """
    if (found := name_position(names, wanted)) is not None:
        return found + 1
    m = re.fullmatch(r"band([1-9][0-9]*)", wanted)
    if m and int(m.group(1)) <= len(names):
        return int(m.group(1))
    return None


@dataclass(frozen=True, slots=True)
class Scene:
    """What geoseg needs to know about an input raster (no pixels).

    Attributes
    ----------
    path : str
        Path or GDAL-readable URL.
    width, height, count : int
        Size in pixels and number of bands.
    dtype : str
        Band data type.
    crs_wkt : str
        Coordinate reference system as WKT ("" when the file has none).
    transform : tuple of float
        Affine geotransform coefficients ``(a, b, c, d, e, f)``.
    nodata : tuple
        Per-band nodata value (``None`` where a band has none).
    band_names : tuple of str
        Band descriptions, or ``"band1"``... when the file has none.
    block_shape : tuple of int
        Internal block (tile) shape ``(rows, cols)`` of band 1.
    mtime : float
        Modification time, part of task tokens so a changed file is re-read.
    alpha : tuple of int
        1-based indexes of alpha (transparency) bands: a mask, not data.
    reads : tuple of str
        The files a virtual raster (VRT) reads, absolute; empty for any other raster.
    mask : SceneMask, optional
        A raster or polygons of pixels to leave out (clouds, shadows, everything
        outside an area of interest: see :func:`with_mask`).
    """

    path: str
    width: int
    height: int
    count: int
    dtype: str
    crs_wkt: str
    transform: tuple[float, ...]
    nodata: tuple[float | None, ...]
    band_names: tuple[str, ...]
    block_shape: tuple[int, int]
    mtime: float
    alpha: tuple[int, ...] = ()
    mask: SceneMask | None = None
    reads: tuple[str, ...] = ()

    @property
    def affine(self) -> Affine:
        """The geotransform as an :class:`affine.Affine`."""
        return Affine(*self.transform[:6])

    @property
    def crs(self) -> rasterio.crs.CRS | None:
        """The CRS, or ``None``."""
        return rasterio.crs.CRS.from_wkt(self.crs_wkt) if self.crs_wkt else None

    @property
    def data_band_names(self) -> tuple[str, ...]:
        """The bands a model reads by default: every band but alpha bands.

        By name, or as ``bandK`` (band K, see :func:`band_index`) for all of them when
        the file repeats a description, so that each name picks one band.
        """
        data = [i for i in range(1, self.count + 1) if i not in self.alpha]
        names = [self.band_names[i - 1] for i in data]
        if len(set(self.band_names)) < len(self.band_names):
            names = [default_band_name(i) for i in data]
        return tuple(names)

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``."""
        return (self.height, self.width)


def check_coordinates(src: Any, path: str | Path) -> None:
    """Refuse a raster whose coordinates cannot be in its CRS.

    A geographic CRS (degrees) on projected coordinates (metres), as a wrong
    ``gdal_edit.py -a_srs`` leaves, would put the map nowhere on Earth and every area
    and reprojection out of range.

    Raises
    ------
    RasterFormatError
        ``src`` (an open dataset) is in degrees with coordinates no longitude and
        latitude can have.
    """
    if src.crs is None or not src.crs.is_geographic:
        return
    left, bottom, right, top = src.bounds
    # a grid of pixel centres on ±90 (2.5° climate grids) reaches past it by half a pixel
    xres, yres = (abs(v) for v in src.res)
    if max(abs(left), abs(right)) <= 540 + xres and max(abs(bottom), abs(top)) <= 90 + yres:
        return
    raise RasterFormatError(
        f"{path}: its CRS {src.crs.to_string()} is in degrees, but its coordinates "
        f"{left:.6g}..{right:.6g}, {bottom:.6g}..{top:.6g} are not longitudes and latitudes "
        f"(metres of a projected CRS?): set the right CRS ({fixes.assign_crs(path)})"
    )


def refuse_geoseg_output(src: Any, path: str | Path) -> None:
    """Refuse a geoseg label map, probabilities or change file where an image is wanted.

    Raises
    ------
    RasterFormatError
        ``src`` (an open dataset) was written by geoseg's predict, merge or change.
    """
    from geoseg.write import CHANGE_VALUES, PROBABILITY_BANDS

    tags = src.tags()
    if tags.get("GEOSEG_BANDS") == PROBABILITY_BANDS:
        what = "probabilities.tif (class probabilities)"
    elif CHANGE_VALUES in tags:
        what = "change.tif (the transitions between two maps)"
    elif "GEOSEG_TAXONOMY" in tags:
        what = "label map (coarse, fine, confidence)"
    else:
        return
    raise RasterFormatError(
        f"{path}: a geoseg {what}, not an image: pass the satellite scene (its spectral bands)"
    )


def open_scene(path: str | Path, *, probe: bool = True, image: bool = False) -> Scene:
    """Open and validate a raster without reading it whole.

    A raster without a CRS is accepted (``crs`` is None): chips as ML datasets ship them.

    Parameters
    ----------
    path : str or Path
        A GeoTIFF (or any GDAL raster) path or URL.
    probe : bool
        Read one internal block to detect undecodable data early.
    image : bool
        The raster is an image for a model: a geoseg label map is refused.

    Raises
    ------
    RasterReadError
        The file is missing, not a raster, or its pixels cannot be decoded.
    RasterFormatError
        The file is readable but has no bands, a rotated geotransform, coordinates
        its CRS cannot have, or (``image``) holds geoseg labels.
    """
    spath = str(path)
    _require_file(spath)
    if not is_remote(spath):
        spath = str(Path(spath).resolve())  # workers may run elsewhere
    try:
        with rasterio.open(spath) as src:
            if src.count == 0:
                raise RasterFormatError(f"{spath}: raster has no bands: pass a multi-band image")
            t = src.transform
            if t.b != 0 or t.d != 0:
                raise RasterFormatError(
                    f"{spath}: rotated geotransform {tuple(t)[:6]} is not supported: "
                    "warp it north-up first "
                    f"({fixes.north_up(spath, crs=src.crs.to_string() if src.crs else None)})"
                )
            check_coordinates(src, spath)
            if image:
                refuse_geoseg_output(src, spath)
            missing_sources(src, spath)
            if probe:
                _probe(src, spath)
            names = tuple(d or default_band_name(i + 1) for i, d in enumerate(src.descriptions))
            mtime = Path(spath).stat().st_mtime if Path(spath).exists() else 0.0
            return Scene(
                path=spath,
                width=src.width,
                height=src.height,
                count=src.count,
                dtype=src.dtypes[0],
                crs_wkt=src.crs.to_wkt() if src.crs else "",
                transform=tuple(src.transform)[:6],
                nodata=tuple(src.nodatavals),
                band_names=names,
                block_shape=tuple(src.block_shapes[0]),  # type: ignore[arg-type]
                mtime=mtime,
                alpha=tuple(alpha_bands(src)),
                reads=tuple(virtual_files(src)),
            )
    except RasterioIOError as exc:
        raise RasterReadError(
            f"{spath}: not a readable raster ({_first_line(exc)}): pass a GeoTIFF"
        ) from None


def with_mask(
    scene: Scene, mask: str | Path | None, exclude: Any = None, *, strict: bool = True
) -> Scene:
    """``scene`` with the pixels that mask ``mask`` flags by rule ``exclude`` left out.

    See :mod:`geoseg.scene_mask`; ``scene`` as it is when ``mask`` is ``None``. The mask
    is checked (readable, on the scene's grid or georeferenced, overlapping it, a rule
    that fits its type) but not read; ``strict`` as for
    :func:`geoseg.scene_mask.open_mask`.
    """
    if mask is None:
        if exclude is not None:
            from geoseg.errors import ConfigError

            raise ConfigError(
                f"{scene.path}: a mask rule ({exclude!r}) without a mask: add --mask RASTER "
                "(in a config: mask), or drop the rule"
            )
        return scene
    from geoseg.scene_mask import open_mask

    m = open_mask(
        mask,
        exclude,
        scene_path=scene.path,
        width=scene.width,
        height=scene.height,
        crs=scene.crs,
        transform=scene.affine,
        strict=strict,
    )
    return dataclasses.replace(scene, mask=m)


def pixel_digest(path: str | Path, *, whole: bool = False, sample: int = 32) -> str:
    """A digest of an image's pixels, to find copies of one image under other names.

    Covers the band count, size and data type, and either every pixel (``whole``) or
    ``sample`` x ``sample`` windows at the four corners and the centre: equal sample
    digests mark the candidates worth a whole comparison. Georeferencing, tags and
    compression are left out: a copy re-encoded or stripped of its CRS is the same image.

    Examples
    --------
    >>> import tempfile, shutil
    >>> d = Path(tempfile.mkdtemp())
    >>> with rasterio.open(d / "a.tif", "w", driver="GTiff", width=40, height=30, count=1,
    ...                    dtype="uint8") as dst:
    ...     dst.write(np.arange(1200, dtype=np.uint8).reshape(1, 30, 40))
    >>> _ = shutil.copy(d / "a.tif", d / "b.tif")
    >>> pixel_digest(d / "a.tif", whole=True) == pixel_digest(d / "b.tif", whole=True)
    True
    """
    digest = hashlib.blake2b(digest_size=16)
    _require_file(path)
    try:
        with rasterio.open(str(path)) as src:
            h, w = src.height, src.width
            digest.update(f"{src.count} {h} {w} {','.join(src.dtypes)}".encode())
            if whole:
                windows = _row_windows(src)
            else:
                sh, sw = min(sample, h), min(sample, w)
                starts = [(0, 0), (0, w - sw), (h - sh, 0), (h - sh, w - sw)]
                starts.append(((h - sh) // 2, (w - sw) // 2))
                windows = [Window(c, r, sw, sh) for r, c in starts]
            for win in windows:
                digest.update(np.ascontiguousarray(src.read(window=win)).tobytes())
    except RasterioError as exc:
        raise RasterReadError(f"{path}: cannot read its pixels ({_first_line(exc)})") from None
    return digest.hexdigest()


def constant_bands(path: str | Path) -> bool:
    """Whether every band of an image holds one value throughout (a blank chip).

    Read a band of rows at a time.

    Examples
    --------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "blank.tif"
    >>> with rasterio.open(p, "w", driver="GTiff", width=4, height=3, count=2,
    ...                    dtype="uint8") as dst:
    ...     dst.write(np.zeros((2, 3, 4), np.uint8))
    >>> constant_bands(p)
    True
    """
    _require_file(path)
    try:
        with rasterio.open(str(path)) as src:
            first = None
            for win in _row_windows(src):
                flat = src.read(window=win).reshape(src.count, -1)
                if first is None:
                    first = flat[:, :1].copy()
                same = (flat == first) | ((flat != flat) & (first != first))  # NaN is NaN
                if not same.all():
                    return False
    except RasterioError as exc:
        raise RasterReadError(f"{path}: cannot read its pixels ({_first_line(exc)})") from None
    return True


def strip_rows(width: int, pixels: int) -> int:
    """Rows of a strip of about ``pixels`` pixels of a raster ``width`` wide (at least 1).

    A pass over a map a strip at a time holds its working arrays for a strip: sized in
    pixels, not rows, memory follows neither the map's height nor its width.

    Examples
    --------
    >>> strip_rows(8000, 1 << 20), strip_rows(1000, 1 << 20), strip_rows(10**7, 1 << 20)
    (131, 1048, 1)
    """
    return max(1, pixels // max(int(width), 1))


def _row_windows(src: Any, values: int = 1 << 24) -> list[Window]:
    """Whole-width windows of rows covering ``src``, about ``values`` values each."""
    rows = strip_rows(src.width * src.count, values)
    return [Window(0, r, src.width, min(rows, src.height - r)) for r in range(0, src.height, rows)]


def _require_file(path: str | Path) -> None:
    """A local path that does not exist is the error :func:`open_scene` gives."""
    if not is_remote(str(path)) and not Path(path).exists():
        raise RasterReadError(f"{path}: file not found: check the path")


def virtual_files(src: Any) -> list[str]:
    """The files an open virtual raster (VRT) reads, absolute; ``[]`` for any other."""
    if src.driver != "VRT":
        return []
    return [f if is_remote(f) else str(Path(f).absolute()) for f in src.files[1:]]


def archive_of(path: str) -> str | None:
    """The local archive a GDAL archive path reads from (``None`` for other paths).

    Examples
    --------
    >>> archive_of("/vsizip//data/scene.zip/B2.tif"), archive_of("/vsitar/t.tar.gz/a/B2.tif")
    ('/data/scene.zip', 't.tar.gz')
    >>> archive_of("/vsicurl/https://host/B2.tif") is None
    True
    """
    found = re.match(
        r"/vsi(?:zip|tar|gzip|7z|rar)/(.+?\.(?:zip|tar|tar\.gz|tgz|gz|7z|rar))(?:/|$)",
        path,
        re.IGNORECASE,
    )
    return found[1] if found else None


def missing_sources(src: Any, spath: str) -> None:
    """Refuse a virtual raster (a VRT, such as ``geoseg stack`` writes) whose files are gone.

    GDAL opens a VRT without its files and fails only when their pixels are read, with
    a message that reads like a corrupt file.

    Raises
    ------
    RasterReadError
        A local file the raster reads from does not exist.
    """
    for local in missing_files(src):
        raise RasterReadError(
            f"{spath}: a virtual raster whose file {local} is missing: put the file back, "
            "or write the VRT again from where its files are now (geoseg stack)"
        )


def missing_files(src: Any) -> list[str]:
    """The local files (or archives) a virtual raster reads that do not exist, absolute."""
    local = [archive_of(f) if is_remote(f) else f for f in virtual_files(src)]
    return [str(Path(f).absolute()) for f in local if f is not None and not Path(f).exists()]


def _probe(src: Any, spath: str) -> None:
    """Read the first and the last internal block: catches truncated and corrupt files cheaply."""
    rows, cols = src.block_shapes[0]
    last_r = (src.height - 1) // rows * rows
    last_c = (src.width - 1) // cols * cols
    for r, c in {(0, 0), (last_r, last_c)}:
        window = Window(c, r, min(cols, src.width - c), min(rows, src.height - r))
        try:
            src.read(window=window)
        except RasterioError as exc:
            raise RasterReadError(
                f"{spath}: pixel data cannot be decoded ({_first_line(exc)}): "
                "the file is corrupt or truncated, re-download or re-export it"
            ) from None


def _first_line(exc: BaseException) -> str:
    while "previous exception" in str(exc) and exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__


def class_codes(raw: np.ndarray, nodata: float | None, path: str | Path, what: str) -> np.ndarray:
    """Class codes read from a label raster as int64, ``-1`` where nodata (or NaN).

    A float raster is accepted only if its values are whole numbers: one that was
    resampled or averaged (``1511.11``) would give codes of no class, silently.

    Examples
    --------
    >>> class_codes(np.array([3.0, np.nan, 7.0]), None, "l.tif", "truth").tolist()
    [3, -1, 7]
    >>> class_codes(np.array([3, 255], dtype=np.uint8), 255, "l.tif", "truth").tolist()
    [3, -1]

    Raises
    ------
    RasterFormatError
        A float raster holds a value that is not a whole number (or is infinite).
    """
    if raw.dtype.kind == "f":
        missing = np.isnan(raw)
        if nodata is not None and not np.isnan(nodata):
            missing |= raw == nodata
        vals = raw[~missing]
        bad = ~np.isfinite(vals) | (vals != np.round(vals))
        if bad.any():
            raise RasterFormatError(
                f"{path}: {what} holds values that are not whole numbers (e.g. {vals[bad][0]}): "
                "pass the class-code raster itself, not a resampled or averaged one"
            )
        return np.where(missing, -1, raw).astype(np.int64)
    codes = raw.astype(np.int64)
    if nodata is not None:
        codes[raw == nodata] = -1
    return codes


def valid_mask(data: np.ndarray, nodata: tuple[float | None, ...]) -> np.ndarray:
    """Pixels valid in every band: not equal to the band's nodata and finite.

    Parameters
    ----------
    data : numpy.ndarray
        ``(bands, H, W)``.
    nodata : tuple
        Per-band nodata values (``None`` = none).
    """
    valid = np.ones(data.shape[1:], dtype=bool)
    for band, nd in zip(data, nodata, strict=True):
        if band.dtype.kind == "f":
            valid &= np.isfinite(band)
        if nd is not None and not np.isnan(nd):
            valid &= band != nd
    return valid


@dataclass(frozen=True, slots=True)
class BandSample:
    """Robust statistics of a scene's bands from a decimated read (no full-scene array).

    Attributes
    ----------
    bands : tuple of int
        1-based band indexes, in the order of the statistics.
    median, p25, p75 : tuple of float
        Per-band median and quartiles of the sampled valid pixels (``nan`` when none).
    pixels : int
        Sampled pixels that are valid in every band.
    shape : tuple of int
        ``(rows, cols)`` of the decimated read.
    zero_share : float
        Share of the sampled valid pixels that are 0 in every band (``0.0`` when none
        is valid, or with one band): fill that the file does not tag as nodata (see
        :func:`geoseg.normalize.zero_in_every_band`).
    """

    bands: tuple[int, ...]
    median: tuple[float, ...]
    p25: tuple[float, ...]
    p75: tuple[float, ...]
    pixels: int
    shape: tuple[int, int]
    zero_share: float = 0.0

    @property
    def spread(self) -> tuple[float, ...]:
        """Robust per-band spread: interquartile range / 1.349 (a normal's std)."""
        return tuple((hi - lo) / 1.349 for lo, hi in zip(self.p25, self.p75, strict=True))


def sample_bands(
    path: str,
    *,
    bands: tuple[int, ...] | None = None,
    max_pixels: int = 1_000_000,
    mask: SceneMask | None = None,
) -> BandSample:
    """Per-band median and quartiles of a scene from one sample, ignoring nodata.

    The scene is read once at a reduced resolution (nearest neighbour, so nodata values
    stay exact; GDAL uses the file's overviews where it has them) of at most
    ``max_pixels`` pixels; a file larger than 64 times that without overviews is
    sampled in 64 windows spread over it instead (a decimated read would decode it
    all). Pixels that are nodata in any of ``bands``, not finite, or
    masked by an internal mask band are left out, as they are at prediction. With a
    ``mask``, a scene of more than ``max_pixels`` pixels is sampled in windows at full
    resolution (an overview of the scene or the mask would not hold the same pixels).

    Parameters
    ----------
    path : str
        Raster path or URL.
    bands : tuple of int, optional
        1-based band indexes (default: all).
    max_pixels : int
        Upper bound on the pixels read per band.
    mask : SceneMask, optional
        Pixels it leaves out are left out of the sample (see :mod:`geoseg.scene_mask`).

    Raises
    ------
    RasterReadError
        The pixels cannot be decoded.
    """
    from rasterio.enums import Resampling

    try:
        with rasterio.open(path) as src:
            idx = list(bands) if bands else list(range(1, src.count + 1))
            nodata = tuple(src.nodatavals[i - 1] for i in idx)
            whole = src.width * src.height <= max_pixels  # read at full resolution
            # a mask is read at full resolution, as the data must then be: an overview of
            # either (GDAL picks one for a decimated read) is not the other's pixels
            decimate = mask is None and (
                src.overviews(idx[0]) or src.width * src.height <= _PATCHES * max_pixels
            )
            if whole or decimate:
                factor = max(1.0, float(np.sqrt(src.width * src.height / max(max_pixels, 1))))
                rows = max(1, int(src.height / factor))
                cols = max(1, int(src.width / factor))
                data = src.read(
                    idx, out_shape=(len(idx), rows, cols), resampling=Resampling.nearest
                )
                valid = valid_mask(data, nodata)
                if (own := _file_valid(src, out_shape=(rows, cols))) is not None:
                    valid &= own
                if mask is not None:  # whole: the same pixels
                    everything = Window(0, 0, src.width, src.height)
                    valid &= ~_excluded(mask, src, everything, out_shape=(rows, cols))
            else:  # a large file without overviews: a grid of windows, not a full read
                data, valid = _window_sample(src, idx, nodata, max_pixels, mask)
                rows, cols = data.shape[1:]
    except RasterioError as exc:
        raise RasterReadError(
            f"{path}: cannot read a decimated sample ({_first_line(exc)}): "
            "the file is corrupt or unreadable"
        ) from None
    pixels = data[:, valid].astype(np.float64)
    if pixels.shape[1]:
        q = np.percentile(pixels, [25, 50, 75], axis=1)
        zero_share = float(zero_in_every_band(pixels).mean())
    else:
        q = np.full((3, len(idx)), np.nan)
        zero_share = 0.0
    return BandSample(
        bands=tuple(idx),
        median=tuple(q[1].tolist()),
        p25=tuple(q[0].tolist()),
        p75=tuple(q[2].tolist()),
        pixels=int(pixels.shape[1]),
        shape=(rows, cols),
        zero_share=zero_share,
    )


def scene_moments(path: str, bands: tuple[int, ...], mask: SceneMask | None = None) -> BandMoments:
    """Exact per-band mean and std of a scene's valid pixels, read a band of rows at a time.

    Every pixel at full resolution (a decimated read would take overviews, whose
    averages have a smaller spread); validity as :func:`read_window` gives it.
    """
    from geoseg.normalize import MOMENT_ROWS, BandMoments

    with rasterio.open(path) as src:
        height, width = src.height, src.width
    moments = BandMoments(len(bands))
    for r0 in range(0, height, MOMENT_ROWS):
        rows = min(MOMENT_ROWS, height - r0)
        data, valid = read_window(path, r0, 0, rows, width, bands=bands, mask=mask)
        moments.add(data, valid)
    return moments


def _file_valid(
    src: Any, window: Window | None = None, out_shape: tuple[int, int] | None = None
) -> np.ndarray | None:
    """The file's own validity of ``window``: its internal mask, else its alpha bands.

    ``None`` where it has neither. GDAL takes alpha for the mask of gray+alpha and
    RGB+alpha files only: an alpha band beside other band counts (4 data bands and
    alpha) is read here as well.
    """
    from rasterio.enums import Resampling

    if not src.count:
        return None
    if _has_internal_mask(src):
        return (
            src.dataset_mask(  # type: ignore[no-any-return]
                window=window, out_shape=out_shape, resampling=Resampling.nearest
            )
            > 0
        )
    alpha = alpha_bands(src)
    if not alpha:
        return None
    shape = None if out_shape is None else (len(alpha), *out_shape)
    values = src.read(alpha, window=window, out_shape=shape, resampling=Resampling.nearest)
    return (values > 0).all(axis=0)  # type: ignore[no-any-return]


#: Windows (a square grid) sampled from a large scene without overviews.
_PATCHES = 64


def _window_sample(
    src: Any,
    idx: list[int],
    nodata: tuple[float | None, ...],
    max_pixels: int,
    mask: SceneMask | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``_PATCHES`` windows spread evenly over the scene, side by side in one array.

    Reading a decimated version of a file without overviews decodes every block of it;
    these windows decode a few blocks each, whatever the scene's size.
    """
    per_side = int(np.sqrt(_PATCHES))
    side = max(1, int(np.sqrt(max_pixels / _PATCHES)))
    side_r, side_c = min(side, src.height), min(side, src.width)
    rows = np.linspace(0, src.height - side_r, per_side).astype(int)
    cols = np.linspace(0, src.width - side_c, per_side).astype(int)
    parts, masks = [], []
    for r in rows:
        for c in cols:
            win = Window(int(c), int(r), side_c, side_r)
            part = src.read(idx, window=win)
            ok = valid_mask(part, nodata)
            if (own := _file_valid(src, window=win)) is not None:
                ok &= own
            if mask is not None:
                ok &= ~_excluded(mask, src, win)
            parts.append(part)
            masks.append(ok)
    return np.concatenate(parts, axis=2), np.concatenate(masks, axis=1)


def read_window(
    path: str,
    row_off: int,
    col_off: int,
    height: int,
    width: int,
    *,
    bands: tuple[int, ...] | None = None,
    pad_mode: str = "reflect",
    mask: SceneMask | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Read a window that may extend past the raster, padding outside by reflection.

    Parameters
    ----------
    path : str
        Raster path or URL.
    row_off, col_off, height, width : int
        The window in pixel coordinates; may start before 0 or end past the edge.
    bands : tuple of int, optional
        1-based band indexes to read (default: all).
    pad_mode : str
        :func:`numpy.pad` mode for the part outside the raster.
    mask : SceneMask, optional
        Pixels it leaves out are not valid (see :mod:`geoseg.scene_mask`).

    Returns
    -------
    data : numpy.ndarray
        ``(bands, height, width)`` in the file's dtype.
    valid : numpy.ndarray
        ``(height, width)`` boolean; ``False`` for nodata. Padding is the mirror image
        of the scene, validity included: the network sees the scene continued at its
        edges, and only pixels inside the scene ever become output.
    """
    try:
        with rasterio.open(path) as src:
            rows = _mirror_span(row_off, height, src.height)
            cols = _mirror_span(col_off, width, src.width)
            if rows is None or cols is None:
                raise ValueError(
                    f"window ({row_off}, {col_off}, {height}, {width}) misses the raster"
                )
            (r0, r1, pad_r), (c0, c1, pad_c) = rows, cols
            win = Window(c0, r0, c1 - c0, r1 - r0)
            idx = list(bands) if bands else list(range(1, src.count + 1))
            data = src.read(idx, window=win)
            nodata = tuple(src.nodatavals[i - 1] for i in idx)
            valid = valid_mask(data, nodata)
            if (own := _file_valid(src, window=win)) is not None:
                valid &= own
            if mask is not None:
                valid &= ~_excluded(mask, src, win)
    except RasterioError as exc:
        raise RasterReadError(
            f"{path}: cannot read window rows {row_off}..{row_off + height}, cols "
            f"{col_off}..{col_off + width} ({_first_line(exc)}): the file is corrupt or unreadable"
        ) from None
    if any(pad_r + pad_c):
        pads = (pad_r, pad_c)
        data = np.pad(data, ((0, 0), *pads), mode=pad_mode)  # type: ignore[call-overload]
        valid = np.pad(valid, pads, mode=pad_mode)  # type: ignore[call-overload]
    # crop the extra rows/columns read as mirror sources
    r = row_off - (r0 - pad_r[0])
    c = col_off - (c0 - pad_c[0])
    return data[:, r : r + height, c : c + width], valid[r : r + height, c : c + width]


def _excluded(
    mask: SceneMask, src: Any, window: Window, out_shape: tuple[int, int] | None = None
) -> np.ndarray:
    """The pixels of ``window`` of scene ``src`` that ``mask`` leaves out."""
    from geoseg.scene_mask import read_excluded

    excluded, _ = read_excluded(
        mask,
        window,
        crs=src.crs,
        transform=src.transform,
        out_shape=out_shape,
        size=(src.height, src.width),
    )
    return excluded


def _mirror_span(off: int, size: int, extent: int) -> tuple[int, int, tuple[int, int]] | None:
    """The span to read along one axis so that mirror padding equals the scene's mirror image.

    Returns ``(start, stop, (pad_before, pad_after))``: the read covers the window's
    part inside the scene and, where the window sticks out, as many pixels as the
    mirror needs, so a block's padding never depends on how large the block is.
    ``None`` when the window misses the scene.

    Examples
    --------
    >>> _mirror_span(-2, 4, 10)   # 2 pixels before the scene: mirror rows 1-2
    (0, 3, (2, 0))
    >>> _mirror_span(8, 5, 10)    # 3 pixels past the end: read rows 6-9
    (6, 10, (0, 3))
    """
    lo, hi = max(off, 0), min(off + size, extent)
    if hi <= lo:
        return None
    before, after = lo - off, off + size - hi
    start = max(0, min(lo, hi - 1 - after))
    stop = min(extent, max(hi, lo + before + 1))
    return start, stop, (before, after)


def alpha_bands(src: Any) -> list[int]:
    """The 1-based indices of ``src``'s alpha bands: they mask the others, holding no values.

    None for a reader without colour interpretations, such as burnt vector labels.
    """
    return [
        i + 1 for i, ci in enumerate(getattr(src, "colorinterp", ())) if ci == ColorInterp.alpha
    ]


def masked_out(src: Any, band: int, win: Window) -> np.ndarray | None:
    """The pixels of ``win`` that a mask band or an alpha band of ``src`` leaves out.

    ``None`` where the band's validity is its nodata value alone, or every pixel (the
    readers of class codes handle nodata themselves, without the cost of a mask). GDAL
    reads a GeoTIFF's internal mask (``.msk`` sidecar or ``PER_DATASET`` mask) and an
    alpha band as the same per-dataset mask.
    """
    from rasterio.enums import MaskFlags

    flags = getattr(src, "mask_flag_enums", None)  # burnt vector labels have none
    if flags is None or MaskFlags.per_dataset not in flags[band - 1]:
        return None
    return np.asarray(src.read_masks(band, window=win)) == 0


def _has_internal_mask(src: Any) -> bool:
    from rasterio.enums import MaskFlags

    return any(MaskFlags.per_dataset in flags for flags in src.mask_flag_enums)


def open_labels(path: str | Path) -> Any:
    """Open a label or truth raster (rasterio dataset), quietly if it has no georeferencing.

    Label rasters shipped without georeferencing are allowed (see :func:`grid_mismatch`),
    so rasterio's ``NotGeoreferencedWarning`` would only be noise here.

    Raises
    ------
    RasterReadError
        The file cannot be opened.
    RasterFormatError
        Its coordinates cannot be in its CRS (:func:`check_coordinates`).
    """
    spath = str(path)
    if not is_remote(spath) and not Path(spath).exists():
        raise RasterReadError(f"{spath}: file not found: check the path")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            src = rasterio.open(path)
    except RasterioIOError as exc:
        raise RasterReadError(
            f"{path}: not a readable raster ({_first_line(exc)}): pass a GeoTIFF"
        ) from None
    try:
        check_coordinates(src, path)
    except RasterFormatError:
        src.close()
        raise
    return src


def grid_mismatch(ds: Any, *, width: int, height: int, crs: Any, transform: Affine) -> str | None:
    """Why raster ``ds`` is not on a reference grid, or ``None`` when it is.

    On the grid means: the same size and, where ``ds`` is georeferenced, the same CRS
    (when both have one) and a geotransform that puts every corner within 0.01 pixel
    of the reference's. A raster with no georeferencing at all (no CRS, identity
    transform), as many ML datasets ship label rasters, is taken as pixel-aligned
    when its size matches.

    Examples
    --------
    >>> from types import SimpleNamespace as NS
    >>> t = Affine(30, 0, 300000, 0, -30, 4100000)
    >>> ref = dict(width=4, height=3, crs="EPSG:32612", transform=t)
    >>> grid_mismatch(NS(width=4, height=3, crs=None, transform=Affine.identity()), **ref)
    >>> grid_mismatch(NS(width=4, height=3, crs="EPSG:4326", transform=t), **ref)
    'in EPSG:4326 instead of EPSG:32612'
    >>> grid_mismatch(NS(width=5, height=3, crs="EPSG:4326", transform=t), **ref)
    'in EPSG:4326 instead of EPSG:32612, 5 wide x 3 high instead of 4 wide x 3 high'
    """
    other_crs = ds.crs is not None and crs is not None and ds.crs != crs
    if (ds.width, ds.height) != (width, height):
        size = f"{ds.width} wide x {ds.height} high instead of {width} wide x {height} high"
        return f"in {ds.crs} instead of {crs}, {size}" if other_crs else size
    if ds.crs is None and ds.transform.is_identity:
        return None
    if other_crs:
        return f"in {ds.crs} instead of {crs}"
    if not _same_pixels(ds.transform, transform, width, height):
        return (
            f"geotransform {tuple(ds.transform)[:6]} instead of {tuple(transform)[:6]} "
            "(shifted, or another pixel size)"
        )
    return None


@contextlib.contextmanager
def labels_on_grid(
    path: str | Path,
    *,
    width: int,
    height: int,
    crs: Any,
    transform: Affine,
    align: bool,
    what: str,
    target: str | Path,
    fix: str,
    vector: VectorField | None = None,
    target_path: str | Path | None = None,
) -> Iterator[tuple[Any, int | None]]:
    """Open a class raster (labels, truth) on a reference grid: ``(reader, reached)``.

    A vector file (:func:`geoseg.vector_labels.is_vector`) is burnt onto the grid a
    window at a time: ``reader`` is a :class:`~geoseg.vector_labels.VectorLabels`, read
    like a one-band raster, and ``reached`` is ``None``.

    On the grid (see :func:`grid_mismatch`), ``reader`` is the raster itself and
    ``reached`` is ``None``. Off it, with ``align``, ``reader`` is the raster resampled
    onto the grid with nearest neighbour (a VRT) and ``reached`` the index of its alpha
    band, 0 where the raster does not reach or is nodata, so that a raster without a
    nodata value leaves those pixels unlabelled, not labelled 0.

    Parameters
    ----------
    path : str or Path
        The class raster.
    width, height, crs, transform
        The reference grid.
    align : bool
        Resample a raster that is off the grid, instead of refusing it.
    what, target : str
        What the raster is ("truth", "label") and what the grid is ("the image X"), for
        errors.
    fix : str
        What the error for a raster off the grid without ``align`` tells the user to do.
    vector : VectorField, optional
        Where a vector file keeps its classes (needed for one).
    target_path : str or Path, optional
        The file whose grid it is, for the fix of one without a CRS.

    Raises
    ------
    RasterFormatError
        The raster is off the grid and ``align`` is off, or it cannot be resampled (no
        CRS on either side, no overlap); vector labels that cannot be read as classes
        (see :func:`~geoseg.vector_labels.open_vector_labels`).
    """
    if is_vector(path):
        if vector is None:
            raise RasterFormatError(f"{path}: {what} must be a raster here, not a vector file")
        grid = dict(width=width, height=height, crs=crs, transform=transform)
        with open_vector_labels(
            path, vector, **grid, what=what, target=target, target_path=target_path
        ) as labels:
            yield labels, None
        return
    with open_labels(path) as src:
        from geoseg.write import refuse_probabilities

        refuse_probabilities(src, path, f"give {what} of class codes")
        problem = grid_mismatch(src, width=width, height=height, crs=crs, transform=transform)
        if problem is None:
            yield src, None
            return
        if src.crs is None and src.transform.is_identity:  # no grid to resample from
            fix_size = f"crop or resample it to {width} x {height} pixels"
            if crs is None:
                raise RasterFormatError(
                    f"{path}: {what} raster is {problem}, and neither it nor {target} is "
                    f"georeferenced, so their pixels are matched by position: {fix_size}"
                )
            raise RasterFormatError(
                f"{path}: {what} raster has no georeferencing (no CRS, no geotransform) and "
                f"is {problem}, so its pixels cannot be matched with those of {target}: "
                f"{fix_size}, or georeference it ({fixes.georeference(path)})"
            )
        # without a CRS on either side a raster cannot be resampled: say so before
        # suggesting a resampling that would fail
        if src.crs is None and crs is not None:
            raise RasterFormatError(
                f"{path}: {what} raster is on another grid than {target} ({problem}) and has "
                f"no CRS, so it cannot be resampled onto it (in {crs}): assign it one "
                f"({fixes.assign_crs(path)}), then resample it"
            )
        if crs is None and transform.is_identity:  # the grid is not georeferenced
            where = fixes.georeference(target_path if target_path is not None else "FILE")
            raise RasterFormatError(
                f"{path}: {what} raster is {problem}, and {target} has no georeferencing "
                f"(no CRS, no geotransform), so the two cannot be matched: georeference it "
                f"({where}), or crop or resample {path} to {width} x {height} pixels"
            )
        if crs is None and src.crs is not None:
            assign = fixes.assign_crs(target_path) if target_path is not None else "a CRS"
            raise RasterFormatError(
                f"{path}: {what} raster is on another grid than {target} ({problem}), which "
                f"has no CRS, so it cannot be resampled onto it: assign that one a CRS "
                f"({assign})"
            )
        if crs is None and src.crs is None:
            raise RasterFormatError(
                f"{path}: {what} raster is on another grid than {target} ({problem}), and "
                f"neither has a CRS, so it cannot be resampled onto it: assign both their "
                f"CRS ({fixes.assign_crs(path)}"
                + (f"; {fixes.assign_crs(target_path)}" if target_path is not None else "")
                + "), then resample it"
            )
        if not align:
            raise RasterFormatError(
                f"{path}: {what} raster is on another grid than {target}: it is {problem}: {fix}"
            )
        x0, y0, x1, y1 = transform_bounds(src.crs, crs, *src.bounds)
        left, right, bottom, top = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
        west, south, east, north = rasterio.transform.array_bounds(height, width, transform)
        r_left, r_right = min(west, east), max(west, east)  # either may be south-up
        r_bottom, r_top = min(south, north), max(south, north)
        if left >= r_right or right <= r_left or bottom >= r_top or top <= r_bottom:
            raise RasterFormatError(
                f"{path}: {what} does not overlap {target}: in {crs} it covers x "
                f"{left:.6g}..{right:.6g}, y {bottom:.6g}..{top:.6g}, the grid x "
                f"{r_left:.6g}..{r_right:.6g}, y {r_bottom:.6g}..{r_top:.6g}: pass {what} "
                "of the same area (check its CRS)"
            )
        with WarpedVRT(
            src,
            crs=crs,
            transform=transform,
            width=width,
            height=height,
            resampling=Resampling.nearest,
            nodata=src.nodata,
            add_alpha=True,
        ) as vrt:
            log.info(
                "%s: %s resampled onto the grid of %s (%s, nearest)", path, what, target, problem
            )
            yield vrt, vrt.count


def _same_pixels(a: Affine, b: Affine, width: int, height: int) -> bool:
    """Whether two geotransforms put a raster's corners within 0.01 pixel of each other."""
    try:
        inv = ~b
    except TransformNotInvertibleError:
        return bool(a.almost_equals(b))
    for col, row in ((0, 0), (width, 0), (0, height), (width, height)):
        x, y = inv @ (a @ (col, row))
        if abs(x - col) > 0.01 or abs(y - row) > 0.01:
            return False
    return True
