"""What ``geoseg info`` says about a path: a model bundle, a raster or a vector file.

A raster is described as GDAL sees it, rotated or not (``geoseg predict`` needs a
north-up grid, which the description then says), and a geoseg label map also by its
classes; a vector file by its layers. Nothing is read but headers, tags and a raster's
first and last blocks (whether its pixels decode), unless every block is asked for
(``check``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from geoseg import fixes
from geoseg.errors import ConfigError, RasterFormatError, RasterReadError


def describe(
    path: str | Path,
    *,
    check: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Describe ``path``: a bundle folder, a raster (scene or label map) or a vector file.

    ``check``: also decode every block of a raster (:func:`geoseg.integrity.check_blocks`,
    under ``check``; ``progress`` follows it).

    Raises
    ------
    RasterReadError
        Missing, or neither a raster nor a vector file GDAL can read.
    ConfigError
        A file inside a bundle (the bundle is its folder).
    BundleError
        A folder that is not a valid bundle.
    """
    from geoseg.bundle import BUNDLE_JSON, WEIGHTS
    from geoseg.vector_labels import is_vector

    p = Path(path)
    if p.is_dir() and not (p / BUNDLE_JSON).exists():  # an output folder, say
        files = sorted(
            f.name
            for f in p.iterdir()
            if f.suffix.lower() in (".tif", ".tiff", ".vrt", ".gpkg", ".shp", ".fgb", ".parquet")
        )
        shown = ", ".join(files[:4]) + (" ..." if len(files) > 4 else "")
        raise ConfigError(
            f"{path}: a folder, not a model bundle (no {BUNDLE_JSON}): geoseg info "
            "describes a bundle, a raster or a vector file"
            + (f"; pass one of its files ({shown})" if files else "")
        )
    if check and (p.is_dir() or is_vector(p)):
        raise ConfigError(
            f"{path}: --check decodes a raster's blocks, and this is a "
            f"{'folder' if p.is_dir() else 'vector file'}: leave out --check"
        )
    if p.is_dir():
        return describe_bundle(p)
    if p.name in (BUNDLE_JSON, WEIGHTS) and (p.parent / BUNDLE_JSON).exists():
        raise ConfigError(
            f"{path}: a file of the model bundle {p.parent}: pass the bundle's folder "
            f"(geoseg info {p.parent})"
        )
    if is_vector(p):
        return describe_vector(p)
    d = describe_raster(path)
    if check:
        from geoseg.integrity import check_blocks

        d["check"] = check_blocks(path, progress).as_dict()
    return d


def describe_bundle(path: Path) -> dict[str, Any]:
    """A bundle's network, bands, tiling, classes, weights and test scores.

    From ``bundle.json`` (the bands' normalisation and the label nodata code too) and
    the weights file's header, which is checked.

    Raises
    ------
    BundleError
        ``bundle.json`` is broken, or the weights file is missing or truncated.
    """
    from geoseg.bundle import read_meta, weights_summary

    meta = read_meta(path)
    tensors, size = weights_summary(path)
    d: dict[str, Any] = {
        "bundle": str(path),
        "name": meta.name,
        "architecture": meta.architecture,
        "encoder": meta.encoder,
        "bands": list(meta.bands),
        "output_stride": meta.output_stride,
        "tile_size": meta.tile_size,
        "halo": meta.halo,
        "pixel_size_m": meta.pixel_size,
        "band_mean": [round(v, 6) for v in meta.normalization.mean],
        "band_std": [round(v, 6) for v in meta.normalization.std],
        "taxonomy": meta.taxonomy.name,
        "coarse_classes": meta.taxonomy.n_coarse,
        "fine_classes": meta.taxonomy.n_fine,
        "label_nodata": meta.taxonomy.nodata,
        "weights": f"{tensors} tensors, {size / 1e6:.1f} MB",
        "test_metrics": {
            lvl: {k: v for k, v in m.items() if k in ("miou", "overall_accuracy")}
            for lvl, m in meta.metrics.get("test", {}).items()
            if isinstance(m, dict)
        },
    }
    names = meta.bands
    if meta.normalization.differences:
        d["normalized_differences"] = [
            f"({names[a]} - {names[b]}) / ({names[a]} + {names[b]})"
            for a, b in meta.normalization.differences
        ]
    return d


def describe_raster(path: str | Path) -> dict[str, Any]:
    """A raster's grid, bands and nodata; a geoseg label map's classes too.

    Band descriptions are given as the file has them (``None`` for a band without one:
    such bands are matched to a bundle's by position).
    """
    import rasterio
    from rasterio.errors import RasterioIOError

    from geoseg.raster import _probe, _require_file, check_coordinates, is_remote, missing_files
    from geoseg.vrt import VRT_TAG

    spath = str(path)
    _require_file(spath)
    try:
        with rasterio.open(spath) as src:
            t = src.transform
            d: dict[str, Any] = {
                "raster": spath if is_remote(spath) else str(Path(spath).resolve()),
                "width": src.width,
                "height": src.height,
                "bands": src.count,
                "band_descriptions": list(src.descriptions),
                "dtype": src.dtypes[0] if src.count else None,
                "crs": src.crs.to_string() if src.crs else None,
                "transform": list(t)[:6],
                "nodata": list(src.nodatavals),
                "block_shape": list(src.block_shapes[0]) if src.count else None,
                "overviews": len(src.overviews(1)) if src.count else 0,
            }
            tags = src.tags()
            colours = _colour_table(src)
            if src.driver == "VRT":  # geoseg stack / mosaic, gdalbuildvrt
                d["vrt"] = tags.get(VRT_TAG, "a GDAL virtual raster")
                d["vrt_files"] = len(src.files) - 1
                gone = missing_files(src)
            else:
                gone = []
            try:
                check_coordinates(src, spath)
                wrong_crs = None
            except RasterFormatError as exc:
                wrong_crs = str(exc).split(": ", 1)[1]
            undecodable = None
            if src.count and not gone:  # the first and last blocks, as predict reads them
                try:
                    _probe(src, spath)
                except RasterReadError as exc:
                    undecodable = str(exc).split(": ", 1)[1]
    except RasterioIOError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RasterReadError(
            f"{spath}: not a readable raster ({first}): pass a GeoTIFF, a vector file or a "
            "bundle folder"
        ) from None
    notes = [n for n in (undecodable, wrong_crs) if n]
    if gone:
        notes.append(
            f"{len(gone)} of the files it reads {'is' if len(gone) == 1 else 'are'} missing "
            f"(first: {gone[0]}): "
            "put them back, or write the VRT again from where they are now"
        )
    labels = "GEOSEG_TAXONOMY" in tags or "GEOSEG_CHANGE_TAXONOMY" in tags
    if colours and not labels:  # another tool's land-cover map (NLCD, ESA WorldCover)
        d["colour_table"] = colours
        notes.append(
            f"one band of integer codes with a colour table of {len(colours)} coloured "
            "codes: a class map; geoseg vectorize, zonal, evaluate, sample and change read "
            "its classes by --taxonomy (their names and levels)"
        )
    elif d["bands"] and all(x is None or x == "" for x in d["band_descriptions"]) and not labels:
        notes.append("no band has a name: as a model's input, its bands are matched by position")
    if t.b or t.d:
        notes.append(
            "a rotated grid: geoseg predict and vectorize need a north-up one: "
            f"{fixes.north_up(spath, crs=d['crs'])}"
        )
    elif t.e > 0:
        notes.append(
            "a south-up grid (rows run north): predicted as it is, but geoseg merge needs "
            f"north-up maps ({fixes.north_up(spath, crs=d['crs'])})"
        )
    if d["crs"] is None:
        notes.append("no CRS: labels keep its grid, polygons are in its pixel or grid units")
    if raw := tags.get("GEOSEG_TAXONOMY"):
        d["geoseg_labels"] = _label_classes(raw, spath)
    elif raw := tags.get("GEOSEG_PROBABILITIES_TAXONOMY"):
        d["geoseg_probabilities"] = _label_classes(raw, spath)
    elif raw := tags.get("GEOSEG_CHANGE_TAXONOMY"):
        d["geoseg_change"] = {
            "before": tags.get("GEOSEG_CHANGE_BEFORE", ""),
            "after": tags.get("GEOSEG_CHANGE_AFTER", ""),
            "levels": [str(x).split(" ")[0] for x in d["band_descriptions"] if x],
            **_label_classes(raw, spath),
        }
    if notes:
        d["notes"] = notes
    return d


def _colour_table(src: Any) -> dict[int, str]:
    """The colours of a single integer band's colour table, by code (``#rrggbb``).

    Only the codes given a colour that shows (not black, not transparent): a uint8
    table has 256 entries, most of them unused. Empty for other rasters.
    """
    if src.count != 1 or src.dtypes[0] not in ("uint8", "uint16", "int16"):
        return {}
    try:
        table = src.colormap(1)
    except ValueError:  # no colour table
        return {}
    return {
        int(code): "#{:02x}{:02x}{:02x}".format(*rgba[:3])
        for code, rgba in table.items()
        if rgba[3] > 0 and tuple(rgba[:3]) != (0, 0, 0)
    }


def _label_classes(raw: str, path: str) -> dict[str, Any]:
    """The classes a geoseg label map records (its ``GEOSEG_TAXONOMY`` tag)."""
    from geoseg.taxonomy import Taxonomy

    try:
        tax = Taxonomy.from_dict(json.loads(raw), source=f"{path} (GEOSEG_TAXONOMY tag)")
    except (ValueError, ConfigError) as exc:
        return {"unreadable_taxonomy": str(exc).splitlines()[0]}
    parent = {c.code: c.name for c in tax.coarse}
    return {
        "taxonomy": tax.name,
        "nodata": tax.nodata,
        "coarse": {str(c.code): c.name for c in tax.coarse},
        "fine": {str(f.code): f"{f.name} (in {parent.get(f.parent or 0)})" for f in tax.fine},
    }


def describe_vector(path: Path) -> dict[str, Any]:
    """A vector file's layers: geometry type, feature count, CRS and fields."""
    import pyogrio

    from geoseg.export import POINTS_FIELD, labelled_points
    from geoseg.raster import _require_file

    _require_file(path)
    if Path(path).suffix.lower() in (".parquet", ".geoparquet"):
        return {"vector": str(Path(path).resolve()), "layers": [_geoparquet_layer(path)]}
    try:
        layers = pyogrio.list_layers(path)
        described = []
        for name, geometry in layers:
            info = pyogrio.read_info(path, layer=name)
            layer: dict[str, Any] = {
                "layer": str(name),
                "geometry": _geometry_types(path, str(name)) if geometry == "Unknown" else geometry,
                "features": int(info["features"]),
                "crs": info["crs"],
                "fields": list(info["fields"]),
            }
            if POINTS_FIELD in layer["fields"]:  # a geoseg sample: how far its labelling is
                layer["labelled_points"] = labelled_points(path, str(name))
            described.append(layer)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as exc:
        raise RasterReadError(
            f"{path}: not a readable vector file ({str(exc).splitlines()[0]}): check the file"
        ) from None
    return {"vector": str(Path(path).resolve()), "layers": described}


def _geometry_types(path: Path, layer: str) -> str:
    """The geometry types a layer of no declared type holds, ``/``-joined (``Unknown`` if none).

    A GeoJSON file of both Polygon and MultiPolygon features declares no type; OGR SQL's
    ``OGR_GEOMETRY`` names each feature's (one pass over the features).
    """
    import pyogrio

    quoted = layer.replace('"', '""')
    try:
        found = pyogrio.read_dataframe(
            path, sql=f'SELECT DISTINCT OGR_GEOMETRY FROM "{quoted}"', read_geometry=False
        )
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError):
        return "Unknown"
    names = {"MULTIPOLYGON": "MultiPolygon", "MULTILINESTRING": "MultiLineString"}
    names |= {"MULTIPOINT": "MultiPoint", "LINESTRING": "LineString"}
    names |= {"GEOMETRYCOLLECTION": "GeometryCollection"}
    types = sorted({names.get(str(t), str(t).title()) for t in found.iloc[:, 0].dropna()})
    return "/".join(types) or "Unknown"


def _geoparquet_layer(path: Path) -> dict[str, Any]:
    """A GeoParquet file described from its schema and ``geo`` metadata, with pyarrow.

    GDAL builds need not have a Parquet driver (the one bundled with pyogrio has not).
    """
    import pyarrow.parquet as pq
    from pyproj import CRS

    try:
        meta = pq.read_metadata(path)
        schema = pq.read_schema(path)
    except (OSError, ValueError) as exc:
        raise RasterReadError(
            f"{path}: not a readable GeoParquet file ({str(exc).splitlines()[0]}): check the file"
        ) from None
    geo = json.loads((schema.metadata or {}).get(b"geo", b"{}") or b"{}")
    primary = geo.get("primary_column")
    column = geo.get("columns", {}).get(primary, {})
    if primary is None:
        raise RasterReadError(
            f"{path}: a Parquet file without GeoParquet 'geo' metadata (no geometry column): "
            "pass a GeoParquet file"
        )
    crs = column.get("crs", "OGC:CRS84")  # GeoParquet's default when the key is absent
    crs_text = None if crs is None else CRS.from_user_input(crs).to_string()
    types = column.get("geometry_types") or ["Unknown"]
    return {
        "layer": path.stem,
        "geometry": "/".join(types),
        "features": int(meta.num_rows),
        "crs": crs_text,
        "fields": [n for n in schema.names if n not in geo.get("columns", {})],
    }


def as_text(d: dict[str, Any]) -> str:
    """``key: value`` lines; mappings of classes one per indented line."""
    lines = []
    for k, v in d.items():
        if k == "geoseg_probabilities" and isinstance(v, dict) and "coarse" in v:
            lines.append(
                f"geoseg class probabilities (percent, nodata 255), taxonomy {v['taxonomy']!r}: "
                f"a band per class, the {len(v['coarse'])} coarse then the {len(v['fine'])} fine"
            )
        elif k == "geoseg_labels" and isinstance(v, dict) and "coarse" in v:
            lines.append(f"geoseg label map: taxonomy {v['taxonomy']!r}, nodata {v['nodata']}")
            lines += [f"  coarse {code}: {name}" for code, name in v["coarse"].items()]
            lines += [f"  fine {code}: {name}" for code, name in v["fine"].items()]
        elif k == "geoseg_change" and isinstance(v, dict) and "coarse" in v:
            lines.append(
                f"geoseg change.tif: transitions from {v['before']} to {v['after']}, taxonomy "
                f"{v['taxonomy']!r}, a band per level ({', '.join(v['levels'])}): value "
                "from_index * n + to_index + 1 (0: not compared), named in transitions.csv"
            )
        elif k == "layers":
            for layer in v:
                lines.append(
                    f"layer {layer['layer']!r}: {layer['features']} {layer['geometry']} "
                    f"features, CRS {layer['crs']}, fields {', '.join(layer['fields']) or '-'}"
                    + (
                        f"; {layer['labelled_points']} labelled"
                        if "labelled_points" in layer
                        else ""
                    )
                )
        elif k == "colour_table":
            lines.append("colour table: " + ", ".join(f"{c} {rgb}" for c, rgb in v.items()))
        elif k == "check" and isinstance(v, dict):
            from geoseg.integrity import undecodable_phrase

            lines.append(
                f"check: all {v['blocks']} blocks decode ({v['seconds']} s)"
                if not v["undecodable"]
                else f"check: {undecodable_phrase(v)} (first: {v['first_undecodable'][0]}: "
                f"{v['error']})"
            )
        elif k == "notes":
            lines += [f"note: {n}" for n in v]
        else:
            lines.append(f"{k}: {v}")
    return "\n".join(lines)
