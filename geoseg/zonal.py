"""Class areas per zone: how much of each district, parcel or watershed each class covers.

:func:`zonal_areas` reads a land-cover map strip by strip (a geoseg ``labels.tif``, or
any map of class codes with its taxonomy, read as ``geoseg evaluate`` reads one) and
the zones of a vector layer burnt onto its grid (a pixel belongs to the zone whose
polygon covers its centre, as GDAL burns polygons; where zones overlap, to none, with a
warning), and sums each pixel's true ground area (:func:`geoseg.area.window_areas`) by
zone and class, at both levels (the fine level's classes are the taxonomy's leaves, as
in ``geoseg change``). :func:`write_zonal` writes ``zonal.csv`` (one row per zone, level
and class), ``zonal.json`` and ``zonal.md``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from geoseg.errors import GeosegWarning, RasterFormatError, RasterReadError
from geoseg.map_reading import Level, check_level, map_reading
from geoseg.raster import absolute_path, open_labels, strip_rows
from geoseg.taxonomy import ClassDef, Taxonomy, count_codes, stray_codes_message

log = logging.getLogger(__name__)

#: Pixels of the map read at a time (a strip of whole rows, :func:`geoseg.raster.strip_rows`).
STRIP_PIXELS = 1 << 20
#: ``geoseg zonal``'s options of the zones' field and layer (change has its own).
ZONE_OPTIONS = ("--field", "--layer")
#: zonal.csv's class name of a zone's unlabelled area (nodata, codes outside the taxonomy).
NO_LABEL = "(no label)"


@dataclass
class ZonalAreas:
    """What :func:`zonal_areas` finds.

    Attributes
    ----------
    labels, zones : str
        The map and the zones' file.
    attribute : str
        The zones' attribute naming each zone.
    unit : str
        ``m2``, or ``pixels`` for a map without a CRS.
    names : list of str
        The zones, in the order of their first feature in the file.
    zone_area : numpy.ndarray
        Each zone's area on the map's grid (labelled or not).
    levels : dict of str to (list of ClassDef, numpy.ndarray)
        Per level, its classes and the ``(zones, classes)`` area of each.
    outside : float
        Area of the map in no zone (labelled pixels).
    missing : list of str
        Zones with no pixel on the map.
    taxonomy : Taxonomy
        The map's taxonomy.
    warnings : list of str
        What was warned of (zones without a name, overlaps, codes outside the taxonomy).
    """

    labels: str
    zones: str
    attribute: str
    unit: str
    names: list[str]
    zone_area: np.ndarray = field(repr=False)
    levels: dict[str, tuple[list[ClassDef], np.ndarray]] = field(repr=False)
    outside: float = 0.0
    missing: list[str] = field(default_factory=list)
    taxonomy: Taxonomy | None = field(default=None, repr=False)
    warnings: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        """What ``zonal.json`` holds: per zone, its area and each class's, per level."""
        zones = []
        missing = set(self.missing)
        for z, name in enumerate(self.names):
            if name in missing:
                continue
            entry: dict[str, Any] = {"zone": name, "area": _r(self.zone_area[z])}
            for lv, (classes, area) in self.levels.items():
                labelled = float(area[z].sum())
                entry[lv] = {
                    "labelled": _r(labelled),
                    "unlabelled": _r(max(self.zone_area[z] - labelled, 0.0)),
                    "classes": {
                        f"{c.code} {c.name}": _r(area[z, i])
                        for i, c in enumerate(classes)
                        if area[z, i] > 0
                    },
                }
            zones.append(entry)
        return {
            "labels": self.labels,
            "zones_file": self.zones,
            "field": self.attribute,
            "unit": self.unit,
            "taxonomy": self.taxonomy.name if self.taxonomy is not None else None,
            "labelled_outside_zones": _r(self.outside),
            "zones_not_on_map": self.missing,
            "warnings": self.warnings,
            "zones": zones,
        }


#: Geometry types that bound zones.
POLYGONS = ("Polygon", "MultiPolygon", "Polygon Z", "MultiPolygon Z", "Unknown")


def _zone_spec(
    zones: str, field_name: str, layer: str | None, options: tuple[str, str] = ZONE_OPTIONS
) -> tuple[Any, list[str], str | None]:
    """The zones' :class:`~geoseg.vector_labels.VectorField`, their names, and the layer.

    ``options``: the command's options of the field and the layer, for the messages.

    Each zone is burnt by its place in the file, whatever its name or id (text, or
    numbers of any size and sign, whole numbers written without a decimal point).
    Features without a name (NULL, blank) are in no zone, with a warning that counts
    them.
    """
    import geopandas as gpd
    import pyogrio

    from geoseg.raster import is_remote
    from geoseg.vector_labels import VectorField, is_vector, zone_text

    if not is_vector(zones):
        raise RasterFormatError(
            f"{zones}: zones must be a vector file of polygons (GeoPackage, Shapefile, "
            "GeoJSON, FlatGeobuf, GeoParquet)"
        )
    if not is_remote(zones) and not Path(zones).exists():
        raise RasterReadError(f"{zones}: file not found: check the path")
    parquet = Path(zones).suffix.lower() in (".parquet", ".geoparquet")
    first = None  # the first of several layers, read without being named
    try:
        if parquet:
            table = gpd.read_parquet(zones)
            kinds = sorted(set(table.geom_type.dropna()))
        else:
            layers = [(str(n), k) for n, k in pyogrio.list_layers(zones)]
            spatial = [n for n, k in layers if k is not None]
            if layer is not None and layer not in spatial:
                raise RasterFormatError(
                    f"{zones}: no layer {layer!r} with geometries; its layers are "
                    f"{', '.join(map(repr, spatial)) or 'none'}: set {options[1]} to one of them"
                )
            if layer is None and len(spatial) > 1:
                first = (
                    f"{zones}: {len(spatial)} layers with geometries: the zones are read from "
                    f"the first, {spatial[0]!r} ({options[1]} names another)"
                )
            layer = layer if layer is not None else (spatial[0] if spatial else None)
            if layer is None:
                raise RasterFormatError(f"{zones}: the file has no layer with geometries")
            kinds = [str(pyogrio.read_info(zones, layer=layer)["geometry_type"])]
            table = gpd.read_file(zones, layer=layer, ignore_geometry=True)
    except RasterFormatError:
        raise
    except Exception as exc:  # the reader's own message, in one line
        raise RasterFormatError(
            f"{zones}: cannot read its zones ({str(exc).splitlines()[0]}): pass a readable "
            f"vector file, and {options[1]} if it has several"
        ) from None
    if first is not None:
        warnings.warn(first, GeosegWarning, stacklevel=3)
    if any(k not in POLYGONS for k in kinds):
        raise RasterFormatError(
            f"{zones}: its features are {', '.join(kinds)}, and zones are polygons (a "
            "point or a line covers no area): pass the layer of the zones' boundaries"
        )
    if field_name not in table:
        raise RasterFormatError(
            f"{zones}: no attribute {field_name!r}; its attributes are "
            f"{', '.join(map(str, table.columns)) or 'none'}: set {options[0]} to the one "
            "naming each zone"
        )
    column = table[field_name]
    blank = zone_text(column).eq("")
    if blank.any():
        warnings.warn(
            f"{zones}: {int(blank.sum()):,} of its {len(column):,} features "
            f"{'has' if blank.sum() == 1 else 'have'} no {field_name!r}: "
            f"{'it is' if blank.sum() == 1 else 'they are'} in no zone",
            GeosegWarning,
            stacklevel=3,
        )
    values = column[~blank.to_numpy(dtype=bool)]
    if not len(values):
        raise RasterFormatError(
            f"{zones}: no feature has a value in {field_name!r}: set {options[0]} to the "
            "attribute naming each zone"
        )
    # each zone burnt by its place in the file: ids of any size, sign or type
    names = list(dict.fromkeys(zone_text(values).tolist()))
    spec = VectorField(
        field_name, options[0], layer, options[1], names={n: i for i, n in enumerate(names)},
        as_text=True,
    )  # fmt: skip
    return spec, names, layer


@dataclass
class Zones:
    """Zones burnt onto a map's grid, read a window at a time (see :func:`zones_on_grid`).

    Attributes
    ----------
    names : list of str
        The zones, in the order of their first feature in the file.
    warnings : list of str
        What was warned of reading them (features without a name; pixels under
        overlapping zones, once the zones are closed), for the job's record.
    """

    names: list[str]
    _burnt: Any = field(repr=False)
    warnings: list[str] = field(default_factory=list)

    def read(self, win: Window) -> np.ndarray:
        """Each pixel's zone (an index of :attr:`names`; ``-1``: none) in ``win``."""
        return self._burnt.read(1, window=win).astype(np.int64)


@contextlib.contextmanager
def zones_on_grid(
    zones: str,
    field_name: str,
    layer: str | None,
    grid: dict[str, Any],
    target: str,
    options: tuple[str, str] = ZONE_OPTIONS,
) -> Iterator[Zones]:
    """The zones of a vector layer on a grid (``width``, ``height``, ``crs``, ``transform``).

    ``target`` is the file whose grid it is, ``options`` the command's options of the
    field and the layer (for messages). A pixel is in the zone whose
    polygon covers its centre; under overlapping zones, in none (warned of on closing).
    The warnings stay warnings, and their text is kept in :attr:`Zones.warnings`.

    Raises
    ------
    RasterFormatError, RasterReadError
        Zones that are not polygons of a readable vector file, lack the attribute, or
        have no feature on the grid.
    """
    from geoseg.vector_labels import open_vector_labels

    notes: list[str] = []
    with _noted(notes):
        spec, names, layer = _zone_spec(zones, field_name, layer, options)
    with contextlib.ExitStack() as stack:
        burnt = stack.enter_context(open_vector_labels(
            zones, spec, **grid, what="zone", target=f"the map {target}", target_path=target
        ))  # fmt: skip
        try:
            yield Zones(names, burnt, notes)
        finally:
            with _noted(notes):  # the overlaps, said on closing
                stack.close()


@contextlib.contextmanager
def _noted(notes: list[str]) -> Iterator[None]:
    """Add the text of the geoseg warnings raised inside to ``notes``, and raise them on."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        if issubclass(w.category, GeosegWarning):
            notes.append(str(w.message).rstrip("."))
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


def zonal_areas(
    labels: str | Path,
    zones: str | Path,
    *,
    field_name: str,
    layer: str | None = None,
    taxonomy: str | Path | Taxonomy | None = None,
    level: Level | None = None,
) -> ZonalAreas:
    """Each class's true area in each zone of a vector layer, at both levels.

    Parameters
    ----------
    labels : str or Path
        The map: a geoseg ``labels.tif``, or any map of class codes of ``taxonomy``.
    zones : str or Path
        Polygons (districts, parcels, watersheds), in any CRS.
    field_name : str
        The attribute naming each zone (an id or a name; features sharing it are one
        zone).
    layer : str, optional
        The zones' layer (default: the file's first layer with geometries).
    taxonomy, level
        As ``geoseg evaluate``'s, for a map geoseg did not write.

    Raises
    ------
    RasterFormatError, ConfigError
        A map that cannot be read as classes; zones that are not polygons of a vector
        file, lack the attribute, or have no feature on the map.
    """
    from geoseg.area import window_areas

    check_level(level)
    labels, zones = absolute_path(labels), absolute_path(zones)
    with open_labels(labels) as src:
        reading = map_reading(src, labels, taxonomy, level, what="the map")
        tax = reading.taxonomy
        levels: dict[str, list[ClassDef]] = {"coarse": list(tax.coarse)}
        if tax.n_fine and reading.has_fine:
            levels["fine"] = tax.leaves
        outside = 0.0
        areas_of_rows = window_areas(src)
        grid = {"width": src.width, "height": src.height, "crs": src.crs,
                "transform": src.transform}  # fmt: skip
        stray: dict[int, int] = {}
        with zones_on_grid(zones, field_name, layer, grid, labels) as on_grid:
            names = on_grid.names
            area = {lv: np.zeros((len(names), len(c))) for lv, c in levels.items()}
            zone_area = np.zeros(len(names))
            rows = strip_rows(src.width, STRIP_PIXELS)
            for r0 in range(0, src.height, rows):
                h = min(rows, src.height - r0)
                win = Window(0, r0, src.width, h)
                coarse, fine, unknown = reading.read(src, win)
                count_codes(stray, unknown)
                leaf = tax.leaf_index(coarse, fine)
                zone = on_grid.read(win)
                weight = areas_of_rows(r0, h)
                inside = zone >= 0
                zone_area += np.bincount(zone[inside], weights=weight[inside], minlength=len(names))
                outside += float(weight[~inside & (coarse >= 0)].sum())
                for lv, idx in (("coarse", coarse), ("fine", leaf)):
                    if lv not in area:
                        continue
                    k = len(levels[lv])
                    ok = inside & (idx >= 0)
                    key = zone[ok] * k + idx[ok]
                    area[lv] += np.bincount(
                        key, weights=weight[ok], minlength=len(names) * k
                    ).reshape(len(names), k)
        unit = "m2" if src.crs is not None else "pixels"
    notes = list(on_grid.warnings)
    if stray:
        message = stray_codes_message(labels, stray, tax.name, "they count as unlabelled")
        notes.append(message.rstrip("."))
        warnings.warn(message, GeosegWarning, stacklevel=2)
    missing = [n for n, a in zip(names, zone_area, strict=True) if a == 0]
    if len(missing) == len(names):
        raise RasterFormatError(f"{zones}: no zone covers a pixel centre of {labels}")
    return ZonalAreas(
        labels=labels,
        zones=zones,
        attribute=field_name,
        unit=unit,
        names=names,
        zone_area=zone_area,
        levels={lv: (levels[lv], area[lv]) for lv in levels},
        outside=outside,
        missing=missing,
        taxonomy=tax,
        warnings=notes,
    )


def _r(value: float) -> float:
    """An area as the tables give it: to a hundredth (m², or pixels), never ``-0.0``."""
    return round(float(value), 2) + 0.0


def _cell(text: str) -> str:
    """A text cell of ``zonal.csv`` that a spreadsheet shows as text, not as a formula.

    A zone named ``=SUM(A1)`` or ``@cmd`` would be run by Excel or LibreOffice on
    opening (CSV injection): such a name is written behind an apostrophe, which the
    spreadsheet hides; a number such as ``-12`` stays as it is.

    Examples
    --------
    >>> _cell("=SUM(1)"), _cell("-12"), _cell("Škofja Loka")
    ("'=SUM(1)", '-12', 'Škofja Loka')
    """
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        try:
            float(text)
        except ValueError:
            return "'" + text
    return text


def zonal_csv(result: ZonalAreas) -> str:
    """``zonal.csv``: one row per zone, level and class present, with its share of the zone."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    unit = "area_m2" if result.unit == "m2" else "area_pixels"
    # share_of_zone: of the zone's labelled area; the zone's unlabelled area is a row of
    # its own, without a share
    writer.writerow(["zone", "level", "class_code", "class_name", unit, "share_of_zone"])
    missing = set(result.missing)
    for z, name in enumerate(result.names):
        if name in missing:
            continue
        for lv, (classes, area) in result.levels.items():
            labelled = area[z].sum()
            for i, c in enumerate(classes):
                if area[z, i] > 0:
                    writer.writerow([_cell(name), lv, c.code, _cell(c.name), _r(area[z, i]),
                                     round(float(area[z, i] / labelled), 6)])  # fmt: skip
            if _r(result.zone_area[z] - labelled) > 0:  # nodata, or codes outside the taxonomy
                writer.writerow([_cell(name), lv, "", NO_LABEL,
                                 _r(result.zone_area[z] - labelled), ""])  # fmt: skip
    return buf.getvalue()


def markdown(result: ZonalAreas) -> str:
    """``zonal.md``: per zone, its classes' areas and shares at each level."""
    unit, scale, d = ("km²", 1e-6, 3) if result.unit == "m2" else ("pixels", 1.0, 0)
    lines = [
        "# Class areas per zone",
        "",
        f"`{result.labels}` in the zones of `{result.zones}` (attribute `{result.attribute}`).",
        "",
    ]
    lines += [f"**Warning:** {w}." for w in result.warnings] + ([""] if result.warnings else [])
    if result.missing:
        lines += [
            "Zones with no pixel of their own on the map (outside it, or only under other "
            f"zones): {', '.join(result.missing)}.",
            "",
        ]
    missing = set(result.missing)
    for z, name in enumerate(result.names):
        if name in missing:
            continue
        heading = " ".join(name.split()) or repr(name)
        lines += [f"## {heading}", ""]
        for lv, (classes, area) in result.levels.items():
            labelled = area[z].sum()
            lines += [
                f"{result.zone_area[z] * scale:,.{d}f} {unit} on the map, "
                f"{labelled * scale:,.{d}f} {unit} labelled at the {lv} level.",
                "",
            ]
            if not labelled:
                continue
            lines += [f"| {lv} class | {unit} | share |", "|---|---:|---:|"]
            for i in np.argsort(-area[z]):
                if area[z, i] > 0:
                    lines.append(
                        f"| {classes[i].name} | {area[z, i] * scale:,.{d}f} | "
                        f"{100 * area[z, i] / labelled:.1f} % |"
                    )
            lines.append("")
    return "\n".join(lines)


def write_zonal(result: ZonalAreas, tmp: Path) -> list[str]:
    """Write zonal.csv, zonal.json and zonal.md into ``tmp``."""
    (tmp / "zonal.csv").write_text(zonal_csv(result), encoding="utf-8")
    (tmp / "zonal.json").write_text(json.dumps(result.record(), indent=2) + "\n", encoding="utf-8")
    (tmp / "zonal.md").write_text(markdown(result), encoding="utf-8")
    return ["zonal.csv", "zonal.json", "zonal.md"]
