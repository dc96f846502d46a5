"""A stratified random sample of a map's pixels, for reference labelling.

The accuracy assessment that land-cover reporting follows (Olofsson et al. 2014, *Good
practices for estimating area and assessing accuracy of land change*): draw reference
points at random within each mapped class (stratum), label them from better data
(field visits, very high resolution imagery), then score the map and error-adjust its
areas with those labels (``geoseg evaluate labels.tif --coarse points.gpkg --fine
points.gpkg``, see :func:`geoseg.metrics.area_estimates`, which is the stratified
estimator for such a sample).

Drawing is one pass over the map, a band of rows at a time: every valid pixel gets a
seeded random key, and each stratum keeps the ``per_class`` pixels with the smallest
keys seen so far, so memory follows the band and the sample, not the map, and every
pixel of a stratum is equally likely to be drawn.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geoseg.errors import RasterFormatError
from geoseg.taxonomy import Taxonomy

log = logging.getLogger(__name__)

#: Rows of the map read at a time.
STRIP_ROWS = 512


@dataclass
class _Kept:
    """The drawn pixels of one stratum so far: keys, flat positions, map codes."""

    keys: np.ndarray
    where: np.ndarray
    codes: np.ndarray  # (2, n): coarse and fine code


def draw_sample(
    labels: str | Path,
    *,
    per_class: int = 100,
    total: int | None = None,
    level: str = "coarse",
    seed: int = 0,
) -> Any:
    """Draw random pixels within each class of a geoseg ``labels.tif``.

    Parameters
    ----------
    labels : str or Path
        A geoseg labels.tif (band 1 coarse codes, band 2 fine codes, the taxonomy in
        its tags).
    per_class : int
        Pixels drawn in each mapped class of ``level`` (all of a class's pixels when it
        has fewer); with ``total``, the least each class gets.
    total : int, optional
        Points in all: each class gets its share of the map's pixels of ``total``, at
        least ``per_class`` (the allocation Olofsson et al. recommend: rare classes get
        enough points for their accuracy, large ones their share, which narrows the
        area estimates' intervals). The map is then read twice.
    level : {"coarse", "fine"}
        The strata. Coarse strata serve both levels' area estimates (each fine class lies
        in one coarse class, which is sampled evenly); fine strata (fine classes, and
        coarse classes without fine classes) reach rare fine classes, but their sample
        serves the fine level's estimates only.
    seed : int
        Seed of the draw (the same map, seed and settings give the same points).

    Returns
    -------
    geopandas.GeoDataFrame
        One point per drawn pixel, at its centre, in the map's CRS: ``id``,
        ``stratum`` (the class code of ``level``), the map's ``map_coarse_code`` /
        ``map_coarse_name`` / ``map_fine_code`` / ``map_fine_name``, and empty
        ``coarse_code`` / ``fine_code`` for the reference labels, which ``geoseg
        evaluate`` reads by default.

    Raises
    ------
    RasterFormatError
        Not a geoseg labels.tif, a level the map lacks, or no valid pixel.
    """
    import geopandas as gpd
    import pandas as pd
    from rasterio.windows import Window

    from geoseg.raster import open_labels
    from geoseg.vectorize import read_taxonomy_tag

    taxonomy = read_taxonomy_tag(labels)
    if taxonomy is None:
        raise RasterFormatError(
            f"{labels}: not a geoseg labels.tif (no GEOSEG_TAXONOMY tag), so its classes "
            "are unknown: sample a map that geoseg predict wrote"
        )
    if level == "fine" and not taxonomy.n_fine:
        raise RasterFormatError(
            f"{labels}: the map has coarse classes only (taxonomy {taxonomy.name!r}): "
            "sample with --level coarse"
        )
    rng = np.random.default_rng(seed)
    kept: dict[int, _Kept] = {}
    with open_labels(labels) as src:
        nodata = taxonomy.nodata
        width, crs, transform = src.width, src.crs, src.transform

        def bands() -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
            """``(first flat position, strata, (2, pixels) codes)`` of each band."""
            for r0 in range(0, src.height, STRIP_ROWS):
                win = Window(0, r0, width, min(STRIP_ROWS, src.height - r0))
                coarse = src.read(1, window=win).astype(np.int64)
                fine = src.read(2, window=win).astype(np.int64) if src.count > 1 else None
                both = (coarse, fine if fine is not None else np.full_like(coarse, nodata))
                codes = np.stack([a.ravel() for a in both])
                yield r0 * width, _strata(coarse, fine, level, nodata).ravel(), codes

        quota: dict[int, int] | int = per_class
        if total is not None:
            sizes: dict[int, int] = {}
            for _, strata, _ in bands():
                found, n = np.unique(strata[strata >= 0], return_counts=True)
                for c, k in zip(found.tolist(), n.tolist(), strict=True):
                    sizes[c] = sizes.get(c, 0) + k
            quota = allocation(sizes, total, per_class)
        for offset, strata, codes in bands():
            keys = rng.random(strata.size)
            _keep_smallest(kept, strata, keys, codes, offset, quota)
    points = np.concatenate([k.where for k in kept.values()]) if kept else np.zeros(0, int)
    if not points.size:
        raise RasterFormatError(f"{labels}: every pixel is nodata: there is nothing to sample")
    order = np.argsort(points)
    points = points[order]
    map_coarse, map_fine = np.concatenate([k.codes for k in kept.values()], axis=1)[:, order]
    rows, cols = np.divmod(points, width)
    x, y = transform @ (cols + 0.5, rows + 0.5)
    names = _names(taxonomy)
    has_fine = map_fine != nodata
    frame = gpd.GeoDataFrame(
        {
            "id": np.arange(1, points.size + 1),
            "stratum": map_coarse
            if level == "coarse"
            else np.where(has_fine, map_fine, map_coarse),
            "map_coarse_code": map_coarse,
            "map_coarse_name": [names["coarse"].get(int(c), "") for c in map_coarse],
            "map_fine_code": pd.array(np.where(has_fine, map_fine, 0), dtype="Int32"),
            "map_fine_name": [names["fine"].get(int(c), "") for c in map_fine],
            "coarse_code": pd.array([None] * points.size, dtype="Int32"),
            "fine_code": pd.array([None] * points.size, dtype="Int32"),
        },
        geometry=gpd.points_from_xy(x, y),
        crs=crs,
    )
    frame.loc[~has_fine, "map_fine_code"] = pd.NA
    counts = frame["stratum"].value_counts()
    short = sorted(int(c) for c, n in counts.items() if n < per_class)
    log.info(
        "%s: %d points in %d strata (%s)%s",
        labels,
        points.size,
        counts.size,
        level,
        f"; classes {short} have fewer than {per_class} pixels: all are drawn" if short else "",
    )
    return frame


def allocation(sizes: dict[int, int], total: int, least: int) -> dict[int, int]:
    """Points per stratum: its share of ``total`` by pixels, at least ``least``, at most all.

    Examples
    --------
    >>> allocation({1: 9000, 2: 900, 3: 100}, 200, 20)
    {1: 180, 2: 20, 3: 20}
    """
    pixels = sum(sizes.values())
    return {c: min(n, max(least, round(total * n / pixels))) for c, n in sorted(sizes.items())}


def _strata(coarse: np.ndarray, fine: np.ndarray | None, level: str, nodata: int) -> np.ndarray:
    """Each pixel's stratum code (``-1`` nodata): coarse, or fine (else its coarse)."""
    out = coarse if level == "coarse" or fine is None else np.where(fine != nodata, fine, coarse)
    return np.where(coarse == nodata, -1, out)


def _keep_smallest(
    kept: dict[int, _Kept],
    strata: np.ndarray,
    keys: np.ndarray,
    codes: np.ndarray,
    offset: int,
    quota: dict[int, int] | int,
) -> None:
    """Merge a band's pixels into each stratum's ``k`` smallest keys (in place).

    ``k`` is ``quota``, or ``quota[stratum]``; ``codes`` are the band's ``(2, pixels)``
    map codes, kept with the drawn pixels; ``offset`` is the band's first flat position
    in the map.
    """
    valid = np.flatnonzero(strata >= 0)
    if not valid.size:
        return
    order = valid[np.lexsort((keys[valid], strata[valid]))]  # by stratum, then key
    classes, starts = np.unique(strata[order], return_index=True)
    for code, start, stop in zip(classes, starts, [*starts[1:], order.size], strict=True):
        k = quota if isinstance(quota, int) else quota.get(int(code), 0)
        if k == 0:
            continue
        best = order[start : min(stop, start + k)]  # this band's k smallest of the stratum
        new = _Kept(keys[best], best + offset, codes[:, best])
        if (old := kept.get(int(code))) is not None:
            new = _Kept(
                np.concatenate([old.keys, new.keys]),
                np.concatenate([old.where, new.where]),
                np.concatenate([old.codes, new.codes], axis=1),
            )
            if new.keys.size > k:
                top = np.argpartition(new.keys, k - 1)[:k]
                new = _Kept(new.keys[top], new.where[top], new.codes[:, top])
        kept[int(code)] = new


def _names(taxonomy: Taxonomy) -> dict[str, dict[int, str]]:
    return {
        "coarse": {c.code: c.name for c in taxonomy.coarse},
        "fine": {c.code: c.name for c in taxonomy.fine},
    }
