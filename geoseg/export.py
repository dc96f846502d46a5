"""Writing polygons: GeoPackage, Shapefile, GeoParquet and FlatGeobuf, atomically.

Every file is written in a temporary directory beside the target and renamed into
place, so a failed export leaves nothing behind.

- GeoPackage (default): every layer (``landcover`` with both levels, ``coarse``), and
  a QGIS style per layer in the ``layer_styles`` table (classes in their colours,
  applied when the layer is opened).
- Shapefile: 10-character field names (``coarse_code`` -> ``c_code``, ``coarse_name``
  -> ``c_name``, ``fine_code`` -> ``f_code``, ``fine_name`` -> ``f_name``,
  ``mean_confidence`` -> ``mean_conf``), ``.prj`` and UTF-8 ``.cpg``; past the
  format's 2 GB per file it warns and splits into ``name_1.shp``, ``name_2.shp``...
- GeoParquet and FlatGeobuf: the ``landcover`` layer.
"""

from __future__ import annotations

import math
import os
import shutil
import sqlite3
import tempfile
import warnings
from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import Literal

import geopandas as gpd
import shapely

from geoseg.errors import ConfigError, OutputExistsError, ShapefileLimitWarning
from geoseg.taxonomy import ClassDef, Taxonomy

Format = Literal["gpkg", "shp", "parquet", "fgb"]
FORMATS: dict[str, str] = {"gpkg": ".gpkg", "shp": ".shp", "parquet": ".parquet", "fgb": ".fgb"}
SHAPEFILE_FIELDS = {
    "coarse_code": "c_code",
    "coarse_name": "c_name",
    "fine_code": "f_code",
    "fine_name": "f_name",
    "mean_confidence": "mean_conf",
}
SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg")
#: Size limit of one .shp or .dbf file (the format's offsets are 32-bit), with a margin.
SHAPEFILE_LIMIT = 2**31 - 2**24


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


def _shapefile_parts(gdf: gpd.GeoDataFrame, limit: int) -> int:
    """How many files the layer needs so that no .shp or .dbf passes ``limit`` bytes."""
    if len(gdf) == 0:
        return 1
    n_coords = int(shapely.get_num_coordinates(gdf.geometry.to_numpy()).sum())
    shp_bytes = 100 + 16 * n_coords + 60 * len(gdf)
    record = 1 + sum(
        254 if gdf[c].dtype == object else 24 for c in gdf.columns if c != gdf.geometry.name
    )
    dbf_bytes = record * len(gdf)
    return max(1, math.ceil(max(shp_bytes, dbf_bytes) / limit))


def _write_shapefile(gdf: gpd.GeoDataFrame, tmp: Path, limit: int) -> list[str]:
    shp = gdf.rename(columns=SHAPEFILE_FIELDS)
    parts = _shapefile_parts(shp, limit)
    if parts == 1:
        shp.to_file(tmp, driver="ESRI Shapefile", engine="pyogrio", encoding="UTF-8")
        return [tmp.stem]
    warnings.warn(
        f"{tmp.name}: {len(shp)} polygons exceed the Shapefile limit of 2 GB per file: "
        f"writing {parts} files {tmp.stem}_1.shp ... {tmp.stem}_{parts}.shp (GeoPackage "
        "has no such limit)",
        ShapefileLimitWarning,
        stacklevel=3,
    )
    size = math.ceil(len(shp) / parts)
    stems = []
    for k in range(parts):
        part = tmp.with_name(f"{tmp.stem}_{k + 1}.shp")
        shp.iloc[k * size : (k + 1) * size].to_file(
            part, driver="ESRI Shapefile", engine="pyogrio", encoding="UTF-8"
        )
        stems.append(part.stem)
    return stems


def write_vector(
    data: gpd.GeoDataFrame | Mapping[str, gpd.GeoDataFrame],
    path: str | Path,
    *,
    taxonomy: Taxonomy | None = None,
    overwrite: bool = False,
    shapefile_limit: int = SHAPEFILE_LIMIT,
) -> Path:
    """Write polygons to ``path`` in the format of its extension, atomically.

    Parameters
    ----------
    data : GeoDataFrame or mapping of layer name to GeoDataFrame
        One layer, or several (``landcover`` first); only GeoPackage keeps them all.
    path : str or Path
        Output file.
    taxonomy : Taxonomy, optional
        Class colours for the GeoPackage's QGIS styles.
    overwrite : bool
        Replace existing output files.
    shapefile_limit : int
        Bytes per .shp/.dbf before splitting (the format's 2 GB).
    """
    path = Path(path)
    fmt = format_of(path)
    layers = dict(data) if isinstance(data, Mapping) else {"landcover": data}
    main = next(iter(layers.values()))
    targets = [path.with_suffix(s) for s in SHAPEFILE_PARTS] if fmt == "shp" else [path]
    if not overwrite and any(t.exists() for t in targets):
        raise OutputExistsError(f"{path}: output exists: pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{path.stem}.", dir=path.parent))
    try:
        tmp = tmpdir / path.name
        if fmt == "gpkg":
            for name, gdf in layers.items():
                gdf.to_file(tmp, driver="GPKG", layer=name, engine="pyogrio")
            if taxonomy is not None:
                write_qgis_styles(tmp, layers, taxonomy)
        elif fmt == "fgb":
            main.to_file(tmp, driver="FlatGeobuf", engine="pyogrio")
        elif fmt == "parquet":
            main.to_parquet(tmp)
        else:
            stems = _write_shapefile(main, tmp, shapefile_limit)
            targets = [path.with_name(st + s) for st in stems for s in SHAPEFILE_PARTS]
        for t in targets:
            src = tmpdir / t.name
            if src.exists():
                os.replace(src, t)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return path


# ---------------------------------------------------------------- QGIS styles
def _symbol(i: int, color: str) -> str:
    r, g, b = (int(color[k : k + 2], 16) for k in (1, 3, 5))
    return (
        f'<symbol type="fill" name="{i}" alpha="1" clip_to_extent="1" force_rhr="0">'
        '<layer class="SimpleFill" enabled="1" locked="0" pass="0">'
        f'<Option type="Map"><Option type="QString" name="color" value="{r},{g},{b},255"/>'
        '<Option type="QString" name="outline_color" value="35,35,35,255"/>'
        '<Option type="QString" name="outline_width" value="0.1"/>'
        '<Option type="QString" name="style" value="solid"/></Option>'
        "</layer></symbol>"
    )


def layer_qml(classes: list[ClassDef], field: str) -> str:
    """A QGIS categorized-renderer style: one category per class code, in its colour."""
    cats = "".join(
        f'<category symbol="{i}" value="{c.code}" label="{escape(f"{c.code} {c.name}")}" '
        'render="true"/>'
        for i, c in enumerate(classes)
    )
    syms = "".join(_symbol(i, c.color) for i, c in enumerate(classes))
    return (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>"
        '<qgis version="3.28" styleCategories="Symbology">'
        f'<renderer-v2 type="categorizedSymbol" attr="{field}" symbollevels="0" '
        f'enableorderby="0" forceraster="0"><categories>{cats}</categories>'
        f"<symbols>{syms}</symbols></renderer-v2></qgis>"
    )


def write_qgis_styles(
    gpkg: Path, layers: Mapping[str, gpd.GeoDataFrame], taxonomy: Taxonomy
) -> None:
    """Store a default QGIS style per layer in the GeoPackage's ``layer_styles`` table."""
    styles = []
    for name, gdf in layers.items():
        if "fine_code" in gdf.columns and taxonomy.fine:
            classes = taxonomy.leaves
            field = "fine_code" if not taxonomy.childless_coarse_index.size else "coarse_code"
            if field == "coarse_code":
                classes = list(taxonomy.coarse)
        elif "coarse_code" in gdf.columns:
            classes, field = list(taxonomy.coarse), "coarse_code"
        else:
            continue
        styles.append((name, gdf.geometry.name, layer_qml(classes, field)))
    con = sqlite3.connect(gpkg)
    try:
        con.execute(
            "CREATE TABLE IF NOT EXISTS layer_styles (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "f_table_catalog TEXT(256), f_table_schema TEXT(256), f_table_name TEXT(256), "
            "f_geometry_column TEXT(256), styleName TEXT(30), styleQML TEXT, styleSLD TEXT, "
            "useAsDefault BOOLEAN, description TEXT, owner TEXT(30), ui TEXT(30), "
            "update_time DATETIME DEFAULT CURRENT_TIMESTAMP)"
        )
        con.executemany(
            "INSERT INTO layer_styles (f_table_catalog, f_table_schema, f_table_name, "
            "f_geometry_column, styleName, styleQML, styleSLD, useAsDefault, description, "
            "owner) VALUES ('', '', ?, ?, ?, ?, '', 1, 'geoseg classes', 'geoseg')",
            [(name, geom, name, qml) for name, geom, qml in styles],
        )
        # register the table so GeoPackage readers accept it as attributes content
        con.execute(
            "INSERT OR IGNORE INTO gpkg_contents (table_name, data_type, identifier) "
            "VALUES ('layer_styles', 'attributes', 'layer_styles')"
        )
        con.commit()
    finally:
        con.close()
