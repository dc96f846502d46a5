"""Registry of named sample datasets: download, verify, derive.

Each dataset lists its upstream files (URLs pinned to a commit, SHA-256, licence and
citation) and how the ready-to-use files are derived from them. Files are fetched on
first use into a cache (``GEOSEG_CACHE``, default ``~/.cache/geoseg``) and verified;
``GEOSEG_DATA_MIRROR=DIR`` reads the same upstream files from a local folder
(``DIR/NAME/upstream/FILE``, ``DIR/NAME/FILE`` or ``DIR/FILE``) with no network.

Examples
--------
>>> [d.name for d in list_datasets()]
['zion']
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geoseg.errors import DatasetError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """One upstream file: name, pinned URL and SHA-256."""

    name: str
    url: str
    sha256: str


@dataclass(frozen=True)
class Dataset:
    """A registered sample dataset.

    Attributes
    ----------
    name : str
        Registry key.
    title, licence, citation : str
        What it is, under which terms, and how to cite it.
    files : tuple of RemoteFile
        Upstream files, fetched into ``<cache>/<name>/upstream``.
    derived : dict
        Role (``image``, ``coarse``, ``fine``) -> derived file name in ``<cache>/<name>``.
    derive : callable
        ``derive(upstream_dir, out_dir)`` writes the derived files.
    taxonomy : str
        Name of the taxonomy preset (``configs/taxonomy/<taxonomy>.yaml``) its labels use.
    """

    name: str
    title: str
    licence: str
    citation: str
    files: tuple[RemoteFile, ...]
    derived: dict[str, str]
    derive: Callable[[Path, Path], None] = field(repr=False)
    taxonomy: str = ""


# ----------------------------------------------------------------------- zion
_SPDL = "https://raw.githubusercontent.com/Nowosad/spDataLarge"
_SPDL_LANDSAT = f"{_SPDL}/cde9a48445ffb03ccb69fb1341bf683fd950f7bd/inst/raster"
_SPDL_NLCD = f"{_SPDL}/4c2d08a97a0acea98a17ceb168df048df4bf00f2/inst/raster"

#: NLCD level-2 code -> level-1 code (Anderson level 1, numbered 1..8).
NLCD_L2_TO_L1: dict[int, int] = {
    11: 1,
    12: 1,
    21: 2,
    22: 2,
    23: 2,
    24: 2,
    31: 3,
    41: 4,
    42: 4,
    43: 4,
    51: 5,
    52: 5,
    71: 6,
    72: 6,
    73: 6,
    74: 6,
    81: 7,
    82: 7,
    90: 8,
    95: 8,
}


def _derive_zion(upstream: Path, out: Path) -> None:
    import rasterio
    from rasterio.warp import Resampling, reproject

    bands = ["landsat_b2.tif", "landsat_b3.tif", "landsat_b4.tif", "landsat_b5.tif"]
    with rasterio.open(upstream / bands[0]) as ref:
        profile = ref.profile.copy()
        grid = (ref.transform, ref.crs, ref.height, ref.width)
    transform, crs, height, width = grid
    profile.update(
        count=4,
        dtype="uint16",
        nodata=65535,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
        interleave="band",
    )
    _write_atomic(
        out / "landsat8_b2345.tif", profile, _stack(upstream, bands), ("B2", "B3", "B4", "B5")
    )

    with rasterio.open(upstream / "nlcd2011.tif") as src:
        nlcd = src.read(1)
        level2 = np.full((height, width), 255, dtype=np.uint8)
        reproject(
            nlcd,
            level2,
            src_transform=src.transform,
            src_crs=src.crs,
            src_nodata=255,
            dst_transform=transform,
            dst_crs=crs,
            dst_nodata=255,
            resampling=Resampling.nearest,
        )
    lut = np.full(256, 255, dtype=np.uint8)
    for fine, coarse in NLCD_L2_TO_L1.items():
        lut[fine] = coarse
    level1 = lut[level2]
    lab = {
        "driver": "GTiff",
        "dtype": "uint8",
        "count": 1,
        "nodata": 255,
        "width": width,
        "height": height,
        "crs": crs,
        "transform": transform,
        "compress": "deflate",
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
    }
    _write_atomic(out / "nlcd2011_level2.tif", lab, level2[None], ("nlcd_level2",))
    _write_atomic(out / "nlcd2011_level1.tif", lab, level1[None], ("nlcd_level1",))


def _stack(upstream: Path, names: list[str]) -> np.ndarray:
    import rasterio

    arrays = []
    for name in names:
        with rasterio.open(upstream / name) as src:
            arrays.append(src.read(1))
    return np.stack(arrays)


def _write_atomic(path: Path, profile: dict, data: np.ndarray, names: tuple[str, ...]) -> None:
    import rasterio

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(data)
            for i, name in enumerate(names, start=1):
                dst.set_band_description(i, name)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


REGISTRY: dict[str, Dataset] = {
    "zion": Dataset(
        name="zion",
        title="Landsat 8 (B2-B5, 2015-08-18) and NLCD 2011 over Zion National Park, Utah",
        licence="CC0-1.0 (spDataLarge); Landsat and NLCD are US public domain",
        citation=(
            "Nowosad J., Lovelace R. spDataLarge: Large datasets for spatial analysis. "
            "Landsat 8 scene LC80380342015230LGN00 (USGS); NLCD 2011 (MRLC)."
        ),
        files=(
            RemoteFile(
                "landsat_b2.tif",
                f"{_SPDL_LANDSAT}/landsat_b2.tif",
                "0f4ac0798411c99187b4595bd2068ed9d85f82f75d9ee3dc3c8a5191c7c8bea6",
            ),
            RemoteFile(
                "landsat_b3.tif",
                f"{_SPDL_LANDSAT}/landsat_b3.tif",
                "88751ab9faa4b025bc25fb953abea70bd5a13fa18d5f13e19a693f69bd8b80dd",
            ),
            RemoteFile(
                "landsat_b4.tif",
                f"{_SPDL_LANDSAT}/landsat_b4.tif",
                "7b7b1954d756a1af412bdaa4dad387c2088f83a5940faa6a80378cd9cf4f025a",
            ),
            RemoteFile(
                "landsat_b5.tif",
                f"{_SPDL_LANDSAT}/landsat_b5.tif",
                "ed18c36c1c24f7abb7220532d3678b53ef4c0a60b590eaccf0b2a7d8b60c14b8",
            ),
            RemoteFile(
                "nlcd2011.tif",
                f"{_SPDL_NLCD}/nlcd2011.tif",
                "cdeb1894b9b0938a9df040aa8b150ba8329a78e1fd43f596e2289d63aeb915da",
            ),
        ),
        derived={
            "image": "landsat8_b2345.tif",
            "fine": "nlcd2011_level2.tif",
            "coarse": "nlcd2011_level1.tif",
        },
        derive=_derive_zion,
        taxonomy="nlcd",
    ),
}


def list_datasets() -> list[Dataset]:
    """All registered datasets, by name."""
    return [REGISTRY[k] for k in sorted(REGISTRY)]


def get_dataset(name: str) -> Dataset:
    """Look up a dataset, with an error that lists the valid names."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise DatasetError(
            f"unknown dataset {name!r}: choose one of {sorted(REGISTRY)} ('geoseg data list')"
        ) from None


def cache_dir() -> Path:
    """The dataset cache: ``$GEOSEG_CACHE`` or ``~/.cache/geoseg``.

    An empty ``GEOSEG_CACHE`` (``export GEOSEG_CACHE=``, a common way to unset it) is
    the default, not the current folder.
    """
    return Path(os.environ.get("GEOSEG_CACHE") or Path.home() / ".cache" / "geoseg").expanduser()


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(name: str, *, cache: Path | None = None, mirror: Path | None = None) -> dict[str, Path]:
    """Obtain a dataset (download or mirror), verify it, derive its files.

    Parameters
    ----------
    name : str
        Registry key, e.g. ``"zion"``.
    cache : Path, optional
        Cache directory (default :func:`cache_dir`).
    mirror : Path, optional
        Local mirror of the upstream files (default ``$GEOSEG_DATA_MIRROR``).

    Returns
    -------
    dict
        Role (``image``, ``coarse``, ``fine``) -> path of the derived file.
    """
    ds = get_dataset(name)
    root = (cache or cache_dir()) / ds.name
    mirror_env = os.environ.get("GEOSEG_DATA_MIRROR")
    mirror = mirror or (Path(mirror_env).expanduser() if mirror_env else None)
    upstream = root / "upstream"
    made = [p for p in (upstream, *upstream.parents) if not p.exists()]
    upstream.mkdir(parents=True, exist_ok=True)
    try:
        for rf in ds.files:
            _obtain(ds, rf, upstream / rf.name, mirror)
    except BaseException:
        for folder in made:  # the folders this call made, innermost first, if still empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    out = {role: root / fname for role, fname in ds.derived.items()}
    record = root / DERIVED_RECORD
    if not _derived_intact(record, out):
        log.info("deriving %s files in %s", ds.name, root)
        record.unlink(missing_ok=True)
        ds.derive(upstream, root)
        digests = {p.name: sha256_file(p) for p in out.values()}
        tmp = record.with_name(f".{record.name}.{os.getpid()}")
        tmp.write_text(json.dumps(digests, indent=2) + "\n")
        os.replace(tmp, record)
    return out


#: The SHA-256 of each derived file, written once they are all derived.
DERIVED_RECORD = "derived.sha256.json"


def _derived_intact(record: Path, out: dict[str, Path]) -> bool:
    """Whether every derived file is there, unchanged since it was derived.

    A damaged or cut-short derived file (the upstream files are checked on their own)
    is derived again instead of handed out.
    """
    try:
        digests = json.loads(record.read_text())
        return all(digests.get(p.name) == sha256_file(p) for p in out.values())
    except (OSError, ValueError, AttributeError):
        return False


def _obtain(ds: Dataset, rf: RemoteFile, dest: Path, mirror: Path | None) -> None:
    if dest.exists() and sha256_file(dest) == rf.sha256:
        return
    tmp = dest.with_name(f".{dest.name}.part-{os.getpid()}")
    try:
        if mirror is not None:
            src = _find_in_mirror(mirror, ds.name, rf.name)
            log.info("copying %s from mirror %s", rf.name, src)
            shutil.copyfile(src, tmp)
        else:
            log.info("downloading %s", rf.url)
            try:
                with urllib.request.urlopen(rf.url, timeout=60) as resp, open(tmp, "wb") as f:
                    shutil.copyfileobj(resp, f, length=1 << 20)
            except (urllib.error.URLError, OSError) as exc:
                raise DatasetError(
                    f"{rf.url}: download failed ({exc}): check the network, or set "
                    f"GEOSEG_DATA_MIRROR to a folder holding {ds.name}/upstream/{rf.name}"
                ) from None
        digest = sha256_file(tmp)
        if digest != rf.sha256:
            raise DatasetError(
                f"{rf.name}: checksum mismatch (expected {rf.sha256[:12]}..., got "
                f"{digest[:12]}...): the source changed or the copy is damaged"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _find_in_mirror(mirror: Path, dataset: str, filename: str) -> Path:
    candidates = [
        mirror / dataset / "upstream" / filename,
        mirror / dataset / filename,
        mirror / "upstream" / filename,  # the mirror is the dataset's own folder
        mirror / filename,
    ]
    for c in candidates:
        if c.is_file():
            return c
    raise DatasetError(
        f"{mirror}: mirror has no {filename} (looked in {', '.join(str(c) for c in candidates)}): "
        "unset GEOSEG_DATA_MIRROR to download, or fix the mirror path"
    )
