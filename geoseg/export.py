"""Writing polygons: GeoPackage, Shapefile, GeoParquet and FlatGeobuf, atomically.

Every file is written in a temporary directory beside the target and renamed into
place, so a failed export leaves nothing behind and an existing output as it was. An
output goes with its sidecars (:data:`SIDECARS`: SQLite's journals beside a
GeoPackage, spatial indexes and metadata beside a Shapefile): those the new output
does not have are removed just before it is renamed into place, so no reader applies
an old journal or index to the new file.

- GeoPackage (default): every layer (``landcover`` with both levels, ``coarse``), and
  a QGIS style per layer in the ``layer_styles`` table (classes in their colours,
  applied when the layer is opened).
- Shapefile: 10-character field names (``coarse_code`` -> ``c_code``, ``coarse_name``
  -> ``c_name``, ``fine_code`` -> ``f_code``, ``fine_name`` -> ``f_name``,
  ``mean_confidence`` -> ``mean_conf``), ``.prj`` and UTF-8 ``.cpg``; past the
  format's 2 GB per file it warns and splits into ``name_1.shp``, ``name_2.shp``...;
  text longer than the format's 254 bytes is cut, with a warning.
- GeoParquet and FlatGeobuf: the ``landcover`` layer.

Layers declare the type of their polygons: ``Polygon``, or ``MultiPolygon`` where some
are multipolygons (a Shapefile's polygon type holds both); an empty layer (an
all-nodata raster) declares ``Polygon``.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import warnings
from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import Literal

import geopandas as gpd
import pandas as pd
import pyarrow.parquet as pq
import shapely

from geoseg.atomic import interrupts_deferred, remove_tree, temporary_dir
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
    "area_pixels": "area_px",
    "stratum_area": "strat_area",
    "map_coarse_code": "map_c_code",
    "map_coarse_name": "map_c_name",
    "map_fine_code": "map_f_code",
    "map_fine_name": "map_f_name",
    # a change sample's (geoseg sample change.tif)
    "stratum_name": "strat_name",
    "map_coarse_from": "map_c_from",
    "map_coarse_to": "map_c_to",
    "map_fine_from": "map_f_from",
    "map_fine_to": "map_f_to",
    "before_coarse": "bef_coarse",
    "after_coarse": "aft_coarse",
    "before_fine": "bef_fine",
    "after_fine": "aft_fine",
}
SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg")
#: Files that other programs keep beside an output and that describe its old content,
#: by format: the name's ending after the stem (Shapefile: ``a.qix``) or after the whole
#: name (GeoPackage: ``a.gpkg-wal``). SQLite applies a leftover ``-wal`` or hot
#: ``-journal`` to whatever file has the name (a corrupt database); readers trust a
#: leftover spatial index (``.qix`` GDAL and QGIS, ``.sbn``/``.sbx`` ArcGIS, ``.fbn``/
#: ``.fbx`` and ``.ain``/``.aih`` ArcView) and show no features. A user's style
#: (``.qml``, ``.sld``) is kept.
SIDECARS: dict[str, tuple[str, ...]] = {
    "gpkg": ("-wal", "-shm", "-journal"),
    "shp": (
        ".qix",
        ".sbn",
        ".sbx",
        ".fbn",
        ".fbx",
        ".ain",
        ".aih",
        ".qpj",
        ".shp.xml",
        ".shp.aux.xml",
    ),
}
#: Sidecars that describe a file (metadata) rather than bind readers to its old
#: content (journals, indexes): beside no earlier output they are a user's, and stay.
DESCRIPTIVE_SIDECARS = (".shp.xml", ".shp.aux.xml")
#: Size limit of one .shp or .dbf file (the format's offsets are 32-bit), with a margin.
SHAPEFILE_LIMIT = 2**31 - 2**24
#: Bytes a Shapefile (dBASE) text field holds.
SHAPEFILE_TEXT_BYTES = 254


#: Layers geoseg writes in a GeoPackage: polygons, a sample's points, QGIS styles.
GEOSEG_LAYERS = ("landcover", "coarse", "reference", "layer_styles")
#: A change sample's fields (``geoseg sample change.tif``), full and Shapefile names.
_CHANGE_SAMPLE_FIELDS = [
    (k, SHAPEFILE_FIELDS[k])
    for k in ("stratum_name", "map_coarse_from", "map_coarse_to", "map_fine_from",
              "map_fine_to", "before_coarse", "after_coarse", "before_fine", "after_fine")
]  # fmt: skip
#: The reference fields of the samples geoseg draws, full and Shapefile names: a point
#: with any of them filled in is labelled.
LABEL_FIELDS = ("coarse_code", "c_code", "fine_code", "f_code", "before_coarse",
                    "bef_coarse", "after_coarse", "aft_coarse", "before_fine", "bef_fine",
                    "after_fine", "aft_fine")  # fmt: skip
#: A sample's points (``geoseg sample``): the field no polygon layer has.
POINTS_FIELD = "stratum"
#: The fields a sample's points are written with (full names, then Shapefile's): any
#: other is a user's (a reference label under a name of their own).
SAMPLE_FIELDS = frozenset(
    {"id", "stratum", "stratum_area", "strat_area", "area_unit", "map_coarse_code",
     "map_coarse_name",
     "map_fine_code", "map_fine_name", "coarse_code", "fine_code", "map_c_code",
     "map_c_name", "map_f_code", "map_f_name", "c_code", "f_code"}
    | {k for pair in _CHANGE_SAMPLE_FIELDS for k in pair}
)  # fmt: skip
#: The class fields of geoseg's polygons and points, full and Shapefile names
#: (``class_code``: the polygons of a plain class raster, ``vectorize --band``).
_CODE_FIELDS = (*LABEL_FIELDS, "class_code")


def _layer_fields(path: Path) -> dict[str, list[str]] | None:
    """Each layer's field names (the geometry's not among them); ``None``: no vector file.

    GeoParquet is read with pyarrow: GDAL builds need not have a Parquet driver.
    """
    import pyogrio

    if format_of(path) == "parquet":
        try:
            schema = pq.read_schema(path)
        except (OSError, ValueError):
            return None
        geo = json.loads((schema.metadata or {}).get(b"geo", b"{}") or b"{}")
        skip = set(geo.get("columns", {})) | {"__index_level_0__"}
        return {path.stem: [n for n in schema.names if n not in skip]}
    try:
        layers = [str(name) for name, _ in pyogrio.list_layers(path)]
        return {name: list(pyogrio.read_info(path, layer=name)["fields"]) for name in layers}
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError):
        return None


def replace_refusal(path: str | Path) -> str | None:
    """Why ``--overwrite`` may not replace the existing vector file ``path``, or ``None``.

    geoseg replaces only what it wrote: its polygons, or a sample's points whose
    reference labels are still blank. A GeoPackage layer geoseg does not write, a file
    without its class fields (a user's own data) or points that carry reference labels
    (a user's work) would be lost, so they are refused.
    """
    path = Path(path)
    if not path.exists():
        return None
    keep = "move it away or choose another output file"
    layers = _layer_fields(path)
    if layers is None:
        return f"{path}: exists and is not a vector file geoseg wrote: {keep}"
    if format_of(path) == "gpkg":
        foreign = [name for name in layers if name not in GEOSEG_LAYERS]
        if foreign:
            return (
                f"{path}: holds layer{'s' if len(foreign) > 1 else ''} "
                f"{', '.join(foreign)} that geoseg does not write: --overwrite would lose "
                f"{'them' if len(foreign) > 1 else 'it'}; {keep}"
            )
    for name, fields in layers.items():
        if name != "layer_styles" and not set(_CODE_FIELDS) & set(fields):
            return (
                f"{path}: its fields ({', '.join(map(str, fields)) or 'none'}) are not those "
                f"of a geoseg output (coarse_code, fine_code, class_code, or a change "
                f"sample's before_coarse): --overwrite would "
                f"lose a file of yours; {keep}"
            )
        added = sorted(set(fields) - SAMPLE_FIELDS) if POINTS_FIELD in fields else []
        if added:
            return (
                f"{path}: its points have field{'s' if len(added) > 1 else ''} "
                f"{', '.join(added)} that geoseg sample does not write (reference labels under "
                f"a name of yours?): --overwrite would lose {'them' if len(added) > 1 else 'it'}"
                f"; {keep}"
            )
        if POINTS_FIELD in fields and (done := labelled_points(path, name)):
            return (
                f"{path}: {done} of its points carry reference labels: --overwrite would "
                f"lose that work; {keep}"
            )
    return None


def labelled_points(path: str | Path, layer: str | None = None) -> int:
    """How many points of a points file's ``layer`` carry a reference label (0 if none)."""
    import pyogrio

    path = Path(path)
    if not path.exists():
        return 0
    try:
        if format_of(path) == "parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pyogrio.read_dataframe(path, layer=layer, read_geometry=False)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, OSError, ValueError):
        return 0
    present = [f for f in LABEL_FIELDS if f in frame]
    return int(frame[present].notna().any(axis=1).sum()) if present else 0


def check_vector_output(
    path: str | Path, *, overwrite: bool, inputs: tuple[str | Path, ...] = ()
) -> None:
    """Refuse a vector output that exists, unless ``overwrite`` and geoseg wrote it.

    What ``--overwrite`` would refuse is said at once, with or without it (advice to
    pass it would only lead to the refusal).

    Raises
    ------
    OutputExistsError
        ``path`` exists and may not be replaced (:func:`replace_refusal`), or exists
        and ``overwrite`` is not set.
    ConfigError
        Its extension names no vector format.
    """
    from geoseg.atomic import check_not_input, check_writable

    format_of(path)
    check_not_input(Path(path), inputs)
    if Path(path).is_file() and (refusal := replace_refusal(path)) is not None:
        raise OutputExistsError(refusal)
    check_writable(Path(path), overwrite=overwrite, kind="file", inputs=inputs)


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


def output_files(path: Path, fmt: str, stems: list[str] | None = None) -> list[Path]:
    """Every file of the output ``path``: its parts, then its sidecars.

    ``stems`` are the Shapefile's file names without extension (``a_1``, ``a_2`` when
    split); the files of ``path``'s own stem are always included, so a split output
    replaces an unsplit one.

    Examples
    --------
    >>> [p.name for p in output_files(Path("a.gpkg"), "gpkg")]
    ['a.gpkg', 'a.gpkg-wal', 'a.gpkg-shm', 'a.gpkg-journal']
    >>> [p.name for p in output_files(Path("a.shp"), "shp")][:6]
    ['a.shp', 'a.shx', 'a.dbf', 'a.prj', 'a.cpg', 'a.qix']
    """
    if fmt != "shp":
        return [path, *(path.with_name(path.name + s) for s in SIDECARS.get(fmt, ()))]
    return [
        path.with_name(stem + s)
        for stem in dict.fromkeys([path.stem, *(stems or [])])
        for s in (*SHAPEFILE_PARTS, *SIDECARS["shp"])
    ]


def _split_stems(path: Path) -> list[str]:
    """The stems of an earlier split of Shapefile ``path``: ``a_1``, ``a_2``, ...

    Only a split geoseg made: parts numbered from 1 without a gap, at least two, each
    with geoseg's ``area_m2`` field; a ``landcover_2019.shp`` of the user's is not one.
    """
    import pyogrio

    stems: list[str] = []
    while path.with_name(f"{path.stem}_{len(stems) + 1}.shp").exists():
        stems.append(f"{path.stem}_{len(stems) + 1}")
    if len(stems) < 2:
        return []
    try:
        fields = [pyogrio.read_info(path.with_name(st + ".shp"))["fields"] for st in stems]
    except Exception:  # not a readable Shapefile: not ours
        return []
    return stems if all("area_m2" in f for f in fields) else []


def _publish(tmpdir: Path, outputs: list[Path]) -> None:
    """Rename the files written in ``tmpdir`` onto ``outputs``; remove the others first.

    The existing ``outputs`` that ``tmpdir`` holds no new version of (the old output's
    journals and indexes) are moved into ``tmpdir`` (deleted with it) before any new
    file lands, so no reader sees a new file beside an old sidecar; if one cannot be
    moved, those already moved are put back and the old output is left as it was. Each
    new file then replaces the old one in one rename.
    """
    stale_dir = tmpdir / ".stale"
    stale_dir.mkdir()
    moved: list[Path] = []
    with interrupts_deferred():  # a Ctrl-C between the renames would leave a mixed set
        try:
            for out in outputs:
                if not (tmpdir / out.name).exists() and (out.is_file() or out.is_symlink()):
                    os.replace(out, stale_dir / out.name)
                    moved.append(out)
        except OSError:
            for out in reversed(moved):
                os.replace(stale_dir / out.name, out)
            raise
        for out in outputs:
            src = tmpdir / out.name
            if src.exists():
                os.replace(src, out)


def _to_file(gdf: gpd.GeoDataFrame, path: Path, driver: str, **kwargs: object) -> None:
    """Write with pyogrio; an empty layer declares ``Polygon``, not GDAL's guess.

    With no geometry to infer from, GDAL would declare ``Unknown`` (GeoPackage
    ``GEOMETRY``, FlatGeobuf) or a Shapefile of lines.
    """
    if gdf.geometry.geom_type.dropna().empty:
        kwargs["geometry_type"] = "Polygon"
    with warnings.catch_warnings():
        # polygons of an image without a CRS (pixel coordinates): said once, by predict
        warnings.filterwarnings("ignore", "'crs' was not provided", UserWarning)
        gdf.to_file(path, driver=driver, engine="pyogrio", **kwargs)


def _to_parquet(gdf: gpd.GeoDataFrame, path: Path) -> None:
    """Write GeoParquet; an empty layer declares ``Polygon``, not "any type" (``[]``)."""
    gdf.to_parquet(path)
    if not gdf.geometry.geom_type.dropna().empty:
        return
    table = pq.read_table(path)  # no rows: cheap to write again
    meta = dict(table.schema.metadata or {})
    geo = json.loads(meta[b"geo"])
    for column in geo["columns"].values():
        column["geometry_types"] = ["Polygon"]
    meta[b"geo"] = json.dumps(geo).encode()
    pq.write_table(table.replace_schema_metadata(meta), path)


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


def _cut_long_text(shp: gpd.GeoDataFrame, name: str) -> gpd.GeoDataFrame:
    """Cut text past the Shapefile's 254 bytes at a character boundary, with a warning.

    GDAL would cut it too, with a generic warning; this one names the column and the
    formats that keep the text whole.
    """
    fields = {v: k for k, v in SHAPEFILE_FIELDS.items()}
    out = shp
    for col in shp.columns:
        dtype = shp[col].dtype
        text = pd.api.types.is_object_dtype(dtype) or isinstance(dtype, pd.StringDtype)
        if col == shp.geometry.name or not text:
            continue
        values = shp[col]
        sizes = {
            v: len(v.encode()) for v in pd.unique(values.dropna().to_numpy()) if isinstance(v, str)
        }  # per distinct value: class names repeat
        long = {v: n for v, n in sizes.items() if n > SHAPEFILE_TEXT_BYTES}
        if not long:
            continue
        cut = values.isin(list(long))
        field = f"{fields[col]!r} (Shapefile field {col!r})" if col in fields else repr(col)
        warnings.warn(
            f"{name}: {int(cut.sum())} values of {field} are longer than the "
            f"{SHAPEFILE_TEXT_BYTES} bytes a Shapefile text field holds (up to "
            f"{max(long.values())} bytes, UTF-8) and are cut: write GeoPackage (.gpkg) or "
            "GeoParquet (.parquet) to keep them whole",
            ShapefileLimitWarning,
            stacklevel=4,
        )
        if out is shp:
            out = shp.copy()
        out.loc[cut, col] = values[cut].map(
            lambda v: v.encode()[:SHAPEFILE_TEXT_BYTES].decode(errors="ignore")
        )
    return out


def _write_shapefile(gdf: gpd.GeoDataFrame, tmp: Path, limit: int) -> list[str]:
    shp = _cut_long_text(gdf.rename(columns=SHAPEFILE_FIELDS), tmp.name)
    parts = _shapefile_parts(shp, limit)
    if parts == 1:
        _to_file(shp, tmp, "ESRI Shapefile", encoding="UTF-8")
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
        _to_file(shp.iloc[k * size : (k + 1) * size], part, "ESRI Shapefile", encoding="UTF-8")
        stems.append(part.stem)
    return stems


def write_vector(
    data: gpd.GeoDataFrame | Mapping[str, gpd.GeoDataFrame],
    path: str | Path,
    *,
    taxonomy: Taxonomy | None = None,
    overwrite: bool = False,
    shapefile_limit: int = SHAPEFILE_LIMIT,
    styles: Mapping[str, tuple[list[ClassDef], str]] | None = None,
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
        Replace existing output files, with their sidecars (:data:`SIDECARS`).
    shapefile_limit : int
        Bytes per .shp/.dbf before splitting (the format's 2 GB).
    styles : mapping, optional
        Layer name -> ``(classes, field)``: the GeoPackage's QGIS style of that layer,
        its polygons coloured by the class whose code ``field`` holds (instead of the
        style ``taxonomy`` gives a layer of ``coarse_code`` / ``fine_code``).

    Warns
    -----
    ShapefileLimitWarning
        A Shapefile is split past 2 GB, or text is cut at 254 bytes.
    """
    path = Path(path)
    fmt = format_of(path)
    layers = dict(data) if isinstance(data, Mapping) else {"landcover": data}
    main = next(iter(layers.values()))
    # a Shapefile split earlier (a_1.shp, a_2.shp, ...) is the same output
    split = _split_stems(path) if fmt == "shp" else []
    targets = [path.with_suffix(s) for s in SHAPEFILE_PARTS] if fmt == "shp" else [path]
    targets += [path.with_name(st + ".shp") for st in split]
    replacing = any(t.exists() for t in targets)
    if replacing and not overwrite:
        raise OutputExistsError(f"{path}: output exists: pass --overwrite to replace it")
    tmpdir = temporary_dir(path)
    try:
        tmp = tmpdir / path.name
        stems = None
        if fmt == "gpkg":
            for name, gdf in layers.items():
                _to_file(gdf, tmp, "GPKG", layer=name)
            if taxonomy is not None or styles:
                write_qgis_styles(tmp, layers, taxonomy, styles)
        elif fmt == "fgb":
            _to_file(main, tmp, "FlatGeobuf")
        elif fmt == "parquet":
            _to_parquet(main, tmp)
        else:
            stems = _write_shapefile(main, tmp, shapefile_limit)
        files = output_files(path, fmt, [*split, *(stems or [])])
        if not replacing:  # a user's metadata beside no output of ours: not ours to drop
            files = [f for f in files if not f.name.endswith(DESCRIPTIVE_SIDECARS)]
        _publish(tmpdir, files)
    finally:
        remove_tree(tmpdir)
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
    gpkg: Path,
    layers: Mapping[str, gpd.GeoDataFrame],
    taxonomy: Taxonomy | None,
    given: Mapping[str, tuple[list[ClassDef], str]] | None = None,
) -> None:
    """Store a default QGIS style per layer in the GeoPackage's ``layer_styles`` table.

    ``given``: layer name -> ``(classes, field)``, for layers of other fields.
    """
    styles = []
    for name, gdf in layers.items():
        if given and name in given:
            classes, field = given[name]
        elif taxonomy is None:
            continue
        elif "fine_code" in gdf.columns and taxonomy.fine:
            classes = taxonomy.leaves
            field = "fine_code" if not taxonomy.childless_coarse_index.size else "coarse_code"
            if field == "coarse_code":
                classes = list(taxonomy.coarse)
        elif "coarse_code" in gdf.columns:
            classes, field = list(taxonomy.coarse), "coarse_code"
        else:
            continue
        styles.append((name, layer_qml(classes, field)))
    con = sqlite3.connect(gpkg)
    try:
        # QGIS finds a layer's style by table and geometry column: the column GDAL
        # wrote (``geom``), not the GeoDataFrame's (``geometry``)
        geom_columns = dict(
            con.execute("SELECT table_name, column_name FROM gpkg_geometry_columns").fetchall()
        )
        con.execute(
            "CREATE TABLE IF NOT EXISTS layer_styles (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "f_table_catalog TEXT(256), f_table_schema TEXT(256), f_table_name TEXT(256), "
            "f_geometry_column TEXT(256), styleName TEXT(30), styleQML TEXT, styleSLD TEXT, "
            "useAsDefault BOOLEAN, description TEXT, owner TEXT(30), ui TEXT(30), "
            "update_time DATETIME DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))"
        )
        con.executemany(
            "INSERT INTO layer_styles (f_table_catalog, f_table_schema, f_table_name, "
            "f_geometry_column, styleName, styleQML, styleSLD, useAsDefault, description, "
            "owner) VALUES ('', '', ?, ?, ?, ?, '', 1, 'geoseg classes', 'geoseg')",
            [(name, geom_columns[name], name, qml) for name, qml in styles if name in geom_columns],
        )
        # register the table so GeoPackage readers accept it as attributes content
        con.execute(
            "INSERT OR IGNORE INTO gpkg_contents (table_name, data_type, identifier) "
            "VALUES ('layer_styles', 'attributes', 'layer_styles')"
        )
        con.commit()
    finally:
        con.close()
