"""Writing polygons: GeoPackage, Shapefile, GeoParquet and FlatGeobuf, atomically.

Each file is written to a temporary sibling and renamed into place, so a failed
export leaves nothing behind. Shapefile field names are limited to 10 characters:
``coarse_code`` -> ``c_code``, ``coarse_name`` -> ``c_name``, ``fine_code`` ->
``f_code``, ``fine_name`` -> ``f_name``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Literal

import geopandas as gpd

from geoseg.errors import ConfigError, OutputExistsError

Format = Literal["gpkg", "shp", "parquet", "fgb"]
FORMATS: dict[str, str] = {"gpkg": ".gpkg", "shp": ".shp", "parquet": ".parquet", "fgb": ".fgb"}
SHAPEFILE_FIELDS = {
    "coarse_code": "c_code",
    "coarse_name": "c_name",
    "fine_code": "f_code",
    "fine_name": "f_name",
}
SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg")


def format_of(path: str | Path) -> str:
    """The export format implied by a file extension."""
    ext = Path(path).suffix.lower()
    for fmt, e in FORMATS.items():
        if ext == e:
            return fmt
    raise ConfigError(
        f"{path}: unknown vector format {ext!r}: use one of {', '.join(FORMATS.values())}"
    )


def parse_formats(text: str) -> list[str]:
    """Parse ``gpkg,shp,parquet`` into a validated list."""
    out = [f.strip().lower() for f in text.split(",") if f.strip()]
    bad = [f for f in out if f not in FORMATS]
    if bad:
        raise ConfigError(f"unknown formats {bad}: choose from {', '.join(FORMATS)}")
    return out


def write_vector(
    gdf: gpd.GeoDataFrame, path: str | Path, *, layer: str = "landcover", overwrite: bool = False
) -> Path:
    """Write ``gdf`` to ``path`` in the format of its extension, atomically."""
    path = Path(path)
    fmt = format_of(path)
    targets = [path.with_suffix(s) for s in SHAPEFILE_PARTS] if fmt == "shp" else [path]
    if not overwrite and any(t.exists() for t in targets):
        raise OutputExistsError(f"{path}: output exists: pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{path.stem}.", dir=path.parent))
    try:
        tmp = tmpdir / path.name
        if fmt == "gpkg":
            gdf.to_file(tmp, driver="GPKG", layer=layer, engine="pyogrio")
        elif fmt == "fgb":
            gdf.to_file(tmp, driver="FlatGeobuf", engine="pyogrio")
        elif fmt == "parquet":
            gdf.to_parquet(tmp)
        else:
            shp = gdf.rename(columns=SHAPEFILE_FIELDS)
            shp.to_file(tmp, driver="ESRI Shapefile", engine="pyogrio", encoding="UTF-8")
        for t in targets:
            src = tmpdir / t.name
            if src.exists():
                os.replace(src, t)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return path
