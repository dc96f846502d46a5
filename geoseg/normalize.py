"""Per-band normalisation statistics: computed from training pixels, applied at inference."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator

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
        out = (add_differences(data, self.differences) - mean) / std
        if valid is not None:
            out[:, ~valid] = 0.0
        np.nan_to_num(out, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        return out


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
        n_b = x.shape[1]
        mean_b = x.mean(axis=1)
        m2_b = ((x - mean_b[:, None]) ** 2).sum(axis=1)
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
