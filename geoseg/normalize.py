"""Per-band normalisation statistics: computed from training pixels, applied at inference."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator

from geoseg import fixes
from geoseg.errors import RasterFormatError


def add_differences(data: np.ndarray, differences: Sequence[tuple[int, int]]) -> np.ndarray:
    """The bands as float32 followed by normalised differences ``(a - b) / (a + b)``.

    Parameters
    ----------
    data : numpy.ndarray
        ``(bands, ...)`` raw band values.
    differences : sequence of (int, int)
        0-based band positions ``(a, b)`` of each difference (e.g. NIR, red for NDVI).

    Where ``a + b`` is 0 the difference is 0, and it is clipped to ``[-1, 1]`` (only
    negative values, e.g. signed reflectances, can leave that range).

    Examples
    --------
    >>> add_differences(np.array([[3.0, 0.0], [1.0, 0.0]]), [(0, 1)]).tolist()
    [[3.0, 0.0], [1.0, 0.0], [0.5, 0.0]]
    """
    x = data.astype(np.float32, copy=False)
    if not differences:
        return x
    out = np.empty((x.shape[0] + len(differences), *x.shape[1:]), dtype=np.float32)
    out[: x.shape[0]] = x
    for i, (a, b) in enumerate(differences):
        total = x[a] + x[b]
        ok = np.abs(total) > 1e-6  # a zero-filled (or signed, cancelling) pixel gives 0
        d = out[x.shape[0] + i]
        d[...] = 0.0
        np.divide(x[a] - x[b], total, out=d, where=ok)
        np.clip(d, -1.0, 1.0, out=d)  # beyond +-1 only where a value is negative
    return out


class Normalization(BaseModel):
    """Per-channel mean and standard deviation (stored in ``bundle.json``).

    ``differences`` lists normalised differences of band pairs (0-based positions in the
    bundle's bands) that are computed from the raw values and fed to the network as extra
    channels after the bands; ``mean`` and ``std`` then cover bands and differences.
    Ratios such as NDVI or NDWI do not change with illumination, so shaded and sunlit
    slopes of one cover look alike in them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    mean: tuple[float, ...]
    std: tuple[float, ...]
    differences: tuple[tuple[int, int], ...] = ()

    def __dask_tokenize__(self) -> str:
        """A deterministic token (the fields' JSON) for the task names of its blocks."""
        return self.model_dump_json()

    @property
    def channels(self) -> int:
        """Channels the network sees: the bands and the differences."""
        return len(self.mean)

    @field_validator("std")
    @classmethod
    def _positive(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        return tuple(max(float(v), 1e-6) for v in value)

    def apply(self, data: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """Normalise a ``(bands, H, W)`` array to float32 ``(channels, H, W)``.

        The differences are appended first; invalid pixels become 0.

        Parameters
        ----------
        data : numpy.ndarray
            Raw band values, any numeric dtype.
        valid : numpy.ndarray, optional
            ``(H, W)`` boolean mask of valid pixels.
        """
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None, None]
        out = add_differences(data, self.differences)
        if np.shares_memory(out, data):  # float32 input without differences: not in place
            out = out.copy()
        out -= mean  # in place: the same float32 arithmetic, one scene-sized array fewer
        out /= std
        if valid is not None:
            out[:, ~valid] = 0.0
        np.nan_to_num(out, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        return out


#: Rows of a scene whose pixels :class:`BandMoments` takes at a time (the file path
#: reads them so; an array in memory is cut the same way, so both sum alike).
MOMENT_ROWS = 512


class BandMoments:
    """Exact per-band mean and standard deviation of valid pixels, added strip by strip.

    Each strip's count, mean and sum of squared deviations are combined with the
    totals so far (Chan et al.'s pairwise update), in float64: accurate for DN of tens
    of thousands over billions of pixels, and the same for a scene read from its file
    or held in memory when both are added in the same strips (:data:`MOMENT_ROWS`).

    Examples
    --------
    >>> m = BandMoments(1)
    >>> m.add(np.array([[[1.0, 2.0]]]), np.array([[True, True]]))
    >>> m.add(np.array([[[3.0, 9.0]]]), np.array([[True, False]]))
    >>> m.mean.tolist(), m.std.round(4).tolist(), m.count
    ([2.0], [0.8165], 3)
    """

    def __init__(self, bands: int) -> None:
        self.count = 0
        self._mean = np.zeros(bands)
        self._m2 = np.zeros(bands)

    def add(self, data: np.ndarray, valid: np.ndarray) -> None:
        """Add the valid pixels of a ``(bands, h, w)`` strip."""
        self.merge(*strip_moments(data, valid))

    def merge(self, n: int, mean: np.ndarray, m2: np.ndarray) -> None:
        """Add ``n`` pixels of per-band ``mean`` and sum of squared deviations ``m2``."""
        if n == 0:
            return
        total = self.count + n
        delta = mean - self._mean
        self._mean = self._mean + delta * (n / total)
        self._m2 = self._m2 + m2 + delta**2 * (self.count * n / total)
        self.count = total

    @property
    def mean(self) -> np.ndarray:
        """Per-band mean (``nan`` without a valid pixel)."""
        return self._mean if self.count else np.full_like(self._mean, np.nan)

    @property
    def std(self) -> np.ndarray:
        """Per-band population standard deviation (``nan`` without a valid pixel)."""
        if not self.count:
            return np.full_like(self._m2, np.nan)
        return np.sqrt(self._m2 / self.count)  # type: ignore[no-any-return]


def strip_moments(data: np.ndarray, valid: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """Count, per-band mean and sum of squared deviations of the valid pixels of a strip."""
    pixels = data[:, valid].astype(np.float64)
    n = pixels.shape[1]
    if n == 0:
        return 0, np.zeros(data.shape[0]), np.zeros(data.shape[0])
    mean = pixels.mean(axis=1)
    return n, mean, ((pixels - mean[:, None]) ** 2).sum(axis=1)


@dataclass(frozen=True)
class BandStatistics:
    """A scene's own band statistics, to label its parts as the whole (``normalize=``).

    What :meth:`geoseg.api.Model.statistics` measures over a whole image, for
    :meth:`~geoseg.api.Model.predict` of its windows or chunks one at a time (on a
    cluster, say), which would otherwise each be standardised by their own statistics.

    Attributes
    ----------
    bands : tuple of str
        The model's bands the statistics are of, in its order.
    mean, std : tuple of float
        Per-band mean and population standard deviation of the valid pixels (``nan``
        where none was valid: the bundle's are used).
    pixels : int
        Pixels valid in every band that were counted.
    """

    bands: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pixels: int


def array_moments(data: np.ndarray, valid: np.ndarray) -> BandMoments:
    """The :class:`BandMoments` of an in-memory ``(bands, H, W)`` scene, in strips."""
    moments = BandMoments(data.shape[0])
    for r0 in range(0, data.shape[1], MOMENT_ROWS):
        moments.add(data[:, r0 : r0 + MOMENT_ROWS], valid[r0 : r0 + MOMENT_ROWS])
    return moments


def robust_statistics(pixels: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-band median and robust spread (IQR / 1.349) of ``(bands, n)`` pixel values.

    As :attr:`geoseg.raster.BandSample.spread` gives them for a file, for
    :func:`check_input_range`.

    Examples
    --------
    >>> robust_statistics(np.array([[1.0, 2.0, 3.0, 4.0, 5.0]]))
    ([3.0], [1.4825796886582654])
    """
    p25, median, p75 = np.percentile(pixels, [25, 50, 75], axis=1)
    return median.tolist(), ((p75 - p25) / 1.349).tolist()


def scene_normalization(
    mean: Sequence[float], std: Sequence[float], bundle: Normalization
) -> Normalization:
    """``bundle``'s normalisation with its bands' statistics replaced by a scene's own.

    Standardising each band by the scene's mean and standard deviation instead of the
    training data's makes the labels the same under any per-band gain and offset of
    the scene (another date, sensor calibration or atmosphere): the network sees the
    scene's values spread as the training data's were. The normalised differences'
    statistics stay the bundle's (a ratio does not change with a band's gain). A scene
    whose land cover differs from the training area's (mostly water, snow, desert) has
    other statistics for a reason, and this distorts it.

    Parameters
    ----------
    mean, std : sequence of float
        The scene's per-band statistics, in bundle band order; ``nan`` (no valid pixel)
        keeps the bundle's.
    bundle : Normalization
        The bundle's normalisation.

    Examples
    --------
    >>> b = Normalization(mean=(10.0, 20.0), std=(1.0, 2.0))
    >>> scene_normalization([110.0, float("nan")], [3.0, 4.0], b).mean
    (110.0, 20.0)
    """
    n = len(mean)
    keep = [math.isnan(m) or math.isnan(s) for m, s in zip(mean, std, strict=True)]
    means = [b if k else float(m) for m, b, k in zip(mean, bundle.mean[:n], keep, strict=True)]
    stds = [b if k else float(s) for s, b, k in zip(std, bundle.std[:n], keep, strict=True)]
    return bundle.model_copy(
        update={
            "mean": (*means, *bundle.mean[n:]),
            "std": tuple(max(v, 1e-6) for v in (*stds, *bundle.std[n:])),
        }
    )


class NormalizedScene:
    """A scene's normalised image, computed for the part that is sliced.

    Training draws patches and validation blocks from its scenes; holding each scene
    normalised as well as raw took 4 bytes a pixel and channel more than the raw bands.
    :meth:`Normalization.apply` works pixel by pixel, so a slice of this view equals
    the same slice of the whole normalised scene, bit for bit.

    Parameters
    ----------
    norm : Normalization
        The statistics.
    image : numpy.ndarray
        ``(bands, H, W)`` raw band values.
    valid : numpy.ndarray
        ``(H, W)`` valid pixels (the others become 0).

    Examples
    --------
    >>> norm = Normalization(mean=(10.0,), std=(2.0,))
    >>> valid = np.array([[1, 1], [1, 0]], bool)
    >>> view = NormalizedScene(norm, np.array([[[10, 14], [6, 0]]]), valid)
    >>> view.shape, view[:, 0:2, 1:2].tolist()
    ((1, 2, 2), [[[2.0], [0.0]]])
    """

    def __init__(self, norm: Normalization, image: np.ndarray, valid: np.ndarray) -> None:
        self.norm, self.image, self.valid = norm, image, valid

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(channels, H, W)``."""
        height, width = self.valid.shape
        return self.norm.channels, height, width

    def __getitem__(self, key: tuple[slice, slice, slice]) -> np.ndarray:
        """Normalise ``[:, rows, cols]`` (slices only: every channel, a window)."""
        every, rows, cols = key
        if every != slice(None) or not isinstance(rows, slice) or not isinstance(cols, slice):
            raise TypeError("a NormalizedScene is sliced as [:, rows, cols] with slices")
        return self.norm.apply(self.image[:, rows, cols], self.valid[rows, cols])


#: A band is out of range when its median is more than this many training standard
#: deviations from the training mean (see :func:`check_input_range`).
MAX_MEDIAN_Z = 6.0
#: ... or when its spread differs from the training spread by more than this factor.
MAX_SPREAD_RATIO = 100.0
_UNITS_FIX = (
    "the image likely has different units or scaling than the training data (e.g. DN vs "
    "reflectance): rescale the image or use a bundle trained on such data"
)


@dataclass(frozen=True, slots=True)
class BandCheck:
    """One band of a scene compared with the bundle's training statistics.

    Attributes
    ----------
    band : str
        The bundle's name of the band.
    scene_band : int
        1-based band index in the scene.
    median, spread : float
        The scene's median and robust spread (interquartile range / 1.349, the
        standard deviation of a normal distribution with that range).
    mean, std : float
        The training mean and standard deviation of the band.
    """

    band: str
    scene_band: int
    median: float
    spread: float
    mean: float
    std: float

    @property
    def label(self) -> str:
        """``"1 (B2)"``: the scene band and the bundle's name (left out when made up)."""
        from geoseg.raster import default_band_name

        made_up = self.band == default_band_name(self.scene_band)
        return str(self.scene_band) if made_up else f"{self.scene_band} ({self.band})"

    @property
    def z(self) -> float:
        """Distance of the scene's median from the training mean, in training std."""
        return (self.median - self.mean) / self.std

    @property
    def spread_ratio(self) -> float:
        """Scene spread / training std (``nan`` for a constant band, which is not judged)."""
        return self.spread / self.std if self.spread > 0 else math.nan

    @property
    def severity(self) -> float:
        """How far outside the training range the band is; above 1 means out of range."""
        score = abs(self.z) / MAX_MEDIAN_Z
        ratio = self.spread_ratio
        if not math.isnan(ratio):
            score = max(score, max(ratio, 1 / ratio) / MAX_SPREAD_RATIO)
        return score

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (rounded)."""
        return {
            "band": self.band,
            "scene_band": self.scene_band,
            "median": _round(self.median),
            "spread": _round(self.spread),
            "train_mean": _round(self.mean),
            "train_std": _round(self.std),
            "z": round(self.z, 2),
            "out_of_range": self.severity > 1,
        }


@dataclass(frozen=True, slots=True)
class InputCheck:
    """The result of :func:`check_input_range` for one scene.

    Attributes
    ----------
    bands : tuple of BandCheck
        Every compared band (empty when the scene had no valid pixel to sample).
    warning : str or None
        One line naming the worst band, its values and the likely fix, or ``None``.
    """

    bands: tuple[BandCheck, ...]
    warning: str | None

    @property
    def out_of_range(self) -> tuple[str, ...]:
        """Names of the bands outside the training range."""
        return tuple(b.band for b in self.bands if b.severity > 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary, as recorded in ``run.json``."""
        return {
            "max_median_z": MAX_MEDIAN_Z,
            "max_spread_ratio": MAX_SPREAD_RATIO,
            "bands": [b.to_dict() for b in self.bands],
            "out_of_range": list(self.out_of_range),
            "warning": self.warning,
        }


def check_input_range(
    median: Sequence[float],
    spread: Sequence[float],
    normalization: Normalization,
    names: Sequence[str],
    *,
    scene_bands: Sequence[int] | None = None,
    path: str = "the image",
    reference: str = "the model was trained on",
    fix: str = _UNITS_FIX,
) -> InputCheck:
    """Compare a scene's band statistics with the statistics the model was trained on.

    A band is out of range when its median lies more than :data:`MAX_MEDIAN_Z` (6)
    training standard deviations from the training mean, or when its robust spread is
    more than :data:`MAX_SPREAD_RATIO` (100) times larger or smaller than the training
    standard deviation.

    Why these thresholds: for any distribution the median lies within one standard
    deviation of the mean, so the training data's own median has ``|z| <= 1``; another
    scene in the same units (another place, season, Landsat path) moves it by a few
    at most (the Paraguay Landsat 8 scene against the Zion bundle: ``|z| <= 1.8``; the
    Zion scene: ``|z| <= 0.15``). A change of units moves it much further: DN
    (~10 000) into a reflectance bundle (0.07 +- 0.04) gives ``|z|`` ~ 10^5, and
    reflectance into a DN bundle gives ``|z| = mean / std``, 4 to 9 for the Zion bands.
    Six standard deviations is three times the largest shift between real scenes seen,
    and catches that reverse case on most bands. Where a DN bundle's mean is within 6
    std of 0 (dark bands, wide spread), the spread test catches it: unit changes scale
    the spread by 100 (percent) to 10 000 (reflectance x 10 000), while scenes in the
    same units differ in spread by a few times (Paraguay: 0.3x of Zion's). A constant
    band (zero spread) is judged by its median only.

    Parameters
    ----------
    median, spread : sequence of float
        Per-band median and robust spread of the scene, in bundle band order
        (``nan`` = no valid pixel; then nothing is judged).
    normalization : Normalization
        The bundle's statistics (the bands' entries come first).
    names : sequence of str
        The bundle's band names.
    scene_bands : sequence of int, optional
        1-based scene band of each bundle band (default ``1, 2, ...``), for the record.
    path : str
        The scene, named in the warning.
    reference, fix : str
        What the statistics are (``"the model was trained on"``) and the advice, in the
        warning.

    Examples
    --------
    >>> norm = Normalization(mean=(0.07,), std=(0.04,))
    >>> check_input_range([0.06], [0.03], norm, ["B2"]).warning is None
    True
    >>> check = check_input_range([9511.0], [1033.0], norm, ["B2"], path="dn.tif")
    >>> print(check.warning)  # doctest: +ELLIPSIS
    dn.tif: band 1 (B2) has median 9511 (spread +-1033) but the model was trained on 0.07 ...
    """
    idx = list(scene_bands) if scene_bands is not None else list(range(1, len(names) + 1))
    checks = tuple(
        BandCheck(name, i, float(m), float(s), float(mu), float(sd))
        for name, i, m, s, mu, sd in zip(
            names, idx, median, spread, normalization.mean, normalization.std, strict=False
        )
        if math.isfinite(m)
    )
    bad = [b for b in checks if b.severity > 1]
    if not bad:
        return InputCheck(checks, None)
    worst = max(bad, key=lambda b: b.severity)
    if abs(worst.z) / MAX_MEDIAN_Z >= worst.severity:
        why = f"{abs(worst.z):.1f} std away"
    else:
        ratio = worst.spread_ratio
        why = (  # 1/14,000 reads better than 6.9e-05 times
            f"{_round_to_2(ratio)} times the training spread"
            if ratio >= 1
            else f"1/{_round_to_2(1 / ratio) if ratio > 0 else 'inf'} of the training spread"
        )
    warning = (
        f"{path}: band {worst.label} has median {worst.median:.4g} (spread +-{worst.spread:.4g}) "
        f"but {reference} {worst.mean:.4g} +- {worst.std:.4g} ({why}; "
        f"{len(bad)} of {len(checks)} bands out of range): {fix}"
    )
    return InputCheck(checks, warning)


def _round_to_2(x: float) -> str:
    """``x`` to two significant figures, as a whole number with thousands separators.

    Examples
    --------
    >>> _round_to_2(14492.8), _round_to_2(3.26)
    ('14,000', '3.3')
    """
    if x < 10:
        return f"{x:.2g}"
    return f"{float(f'{x:.2g}'):,.0f}"


#: Share of a scene's valid pixels that are 0 in every band from which they are reported
#: as fill the file does not tag as nodata (a Landsat footprint's border is 10-20 %).
FILL_SHARE = 0.01


def zero_in_every_band(pixels: np.ndarray) -> np.ndarray:
    """Pixels of ``(bands, ...)`` values that are 0 in every band: fill, likely.

    With a single band a 0 is as likely a value (a DEM, a dark reflectance) as fill, so
    no pixel is taken for fill there.

    Examples
    --------
    >>> zero_in_every_band(np.array([[0, 0, 5], [0, 3, 0]])).tolist()
    [True, False, False]
    >>> zero_in_every_band(np.array([[0, 0, 5]])).tolist()
    [False, False, False]
    """
    if pixels.shape[0] < 2:
        return np.zeros(pixels.shape[1:], dtype=bool)
    return np.asarray(~pixels.any(axis=0))


def untagged_fill_warning(
    path: str,
    share: float,
    *,
    nodata: float | None = None,
    unlabelled: float | None = None,
) -> str | None:
    """One line when many valid pixels are 0 in every band: likely untagged fill.

    A scene exported without a nodata value (a rotated Landsat footprint, a mosaic's
    empty corners) holds its fill as ordinary pixels: the model labels them as land
    cover and, in training, they would skew the band statistics.

    Parameters
    ----------
    path : str
        The image, named in the line.
    share : float
        Share of its valid pixels that are 0 in every band (see
        :func:`zero_in_every_band`).
    nodata : float, optional
        The file's nodata value, where it has one (other than 0): GDAL keeps one per
        band, so the fix is then a mask band, not a new nodata value.
    unlabelled : float, optional
        Share of those pixels that carry no label (training only).

    Returns
    -------
    str or None
        The warning, or ``None`` below :data:`FILL_SHARE`.

    Examples
    --------
    >>> untagged_fill_warning("a.tif", 0.002) is None
    True
    >>> print(untagged_fill_warning("a.tif", 0.165, unlabelled=1.0))  # doctest: +ELLIPSIS
    a.tif: 16.5 % of its valid pixels are 0 in every band (100.0 % of them unlabelled) and ...
    """
    if share < FILL_SHARE:
        return None
    labels = "" if unlabelled is None else f" ({unlabelled * 100:.1f} % of them unlabelled)"
    if nodata is None:
        what = "0 is not its nodata value"
        fix = (
            f"tag it ({fixes.set_nodata(path)}; or give it a mask band if a real pixel "
            "can be 0 in some band)"
        )
    else:
        what = f"its nodata value is {nodata:g}"
        fix = (
            "give the file a mask band that excludes them (a band holds one nodata value), "
            f"or set them to {nodata:g}"
        )
    return (
        f"{path}: {share * 100:.1f} % of its valid pixels are 0 in every band{labels} and "
        f"{what}: if they are fill, {fix}, or they are labelled as land cover"
    )


def _round(value: float) -> float:
    return float(f"{value:.6g}")


class RunningStats:
    """Streaming per-band mean/std (Chan et al. parallel update, float64)."""

    def __init__(self, bands: int) -> None:
        self.n = 0
        self.mean = np.zeros(bands)
        self.m2 = np.zeros(bands)

    def update(self, pixels: np.ndarray) -> None:
        """Add ``(bands, N)`` valid pixels."""
        if pixels.shape[1] == 0:
            return
        x = pixels.astype(np.float64)
        mean_b = x.mean(axis=1)
        self._add(x.shape[1], mean_b, ((x - mean_b[:, None]) ** 2).sum(axis=1))

    def merge(self, other: RunningStats) -> None:
        """Add the pixels ``other`` has seen (as if they had been fed here)."""
        if other.n:
            self._add(other.n, other.mean, other.m2)

    def _add(self, n_b: int, mean_b: np.ndarray, m2_b: np.ndarray) -> None:
        delta = mean_b - self.mean
        total = self.n + n_b
        self.mean = self.mean + delta * n_b / total
        self.m2 = self.m2 + m2_b + delta**2 * self.n * n_b / total
        self.n = total

    def result(self, differences: Sequence[tuple[int, int]] = ()) -> Normalization:
        """The accumulated statistics (of bands then ``differences``, as fed)."""
        std = np.sqrt(self.m2 / max(self.n - 1, 1))
        if not (np.isfinite(self.mean).all() and np.isfinite(std).all()):
            bad = int(np.flatnonzero(~(np.isfinite(self.mean) & np.isfinite(std)))[0])
            raise RasterFormatError(
                f"channel {bad + 1} of the training pixels has non-finite values (NaN or "
                "inf): declare them nodata in the image, or mask them in the labels"
            )
        return Normalization(
            mean=tuple(self.mean.tolist()),
            std=tuple(std.tolist()),
            differences=tuple((int(a), int(b)) for a, b in differences),
        )


def fill_nearest(x: np.ndarray, valid: np.ndarray, *, mirror: bool = True) -> None:
    """Fill invalid pixels from the valid data next to them, in place.

    Each invalid pixel ``p`` takes the values of the valid pixel mirrored across its
    nearest valid pixel ``q`` (``2q - p``, the image reflected at the border of valid
    data), or of ``q`` itself where that mirror pixel is not valid. The network then
    sees the border of valid data (a scene footprint, a cloud mask) as a continuation
    of the image, like the mirror padding at scene edges, instead of a step to a
    constant or a smear of repeated edge pixels, either of which leaves a band of
    wrong labels along it.

    Parameters
    ----------
    x : numpy.ndarray
        ``(bands, H, W)`` normalised image; modified in place.
    valid : numpy.ndarray
        ``(H, W)`` pixels that keep their values.
    mirror : bool
        Reflect across the border (default) rather than repeat the nearest pixel.
    """
    from scipy import ndimage

    target = ~valid
    if not target.any() or not valid.any():
        return
    _, (ri, ci) = ndimage.distance_transform_edt(~valid, return_indices=True)
    tr, tc = np.nonzero(target)
    qr, qc = ri[tr, tc], ci[tr, tc]
    if mirror:
        h, w = valid.shape
        mr, mc = 2 * qr - tr, 2 * qc - tc
        ok = (mr >= 0) & (mr < h) & (mc >= 0) & (mc < w)
        ok[ok] = valid[mr[ok], mc[ok]]
        qr = np.where(ok, mr, qr)
        qc = np.where(ok, mc, qc)
    x[:, tr, tc] = x[:, qr, qc]
