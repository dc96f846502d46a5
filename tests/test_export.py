"""Exported vector files as other programs read them: sidecars, styles, types, text."""

import json
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyarrow.parquet as pq
import pyogrio
import pytest
import rasterio
import shapely

from geoseg.errors import GeosegWarning, OutputExistsError, ShapefileLimitWarning
from geoseg.export import write_vector
from geoseg.taxonomy import load_taxonomy
from geoseg.vectorize import VectorizeOptions, vectorize_layers

from .conftest import NLCD_YAML, shared_file, write_raster

# a 120 x 160 px window of NLCD 2011 over Zion (classes 11 to 95, EPSG:32612, 30 m)
ZION_WINDOW = rasterio.windows.Window(500, 600, 160, 120)


def _zion_labels(tmp_path, taxonomy=None, *, name="labels.tif", nodata_only=False):
    """A geoseg labels.tif (coarse, fine, confidence) from the real NLCD levels."""
    taxonomy = taxonomy or load_taxonomy(NLCD_YAML)
    bands = []
    for level in (1, 2):
        with rasterio.open(shared_file(f"zion/nlcd2011_level{level}.tif")) as src:
            bands.append(src.read(1, window=ZION_WINDOW))
            transform = src.window_transform(ZION_WINDOW)
    data = np.stack([*bands, np.full_like(bands[0], 50)])
    if nodata_only:
        data[:2] = 255
    path = write_raster(tmp_path / name, data, nodata=255, transform=transform)
    with rasterio.open(path, "r+") as dst:
        dst.update_tags(GEOSEG_TAXONOMY=json.dumps(taxonomy.to_dict()))
    return path


def _boxes(x0, n=2, crs="EPSG:32612"):
    geoms = [shapely.box(x0 + i, 0, x0 + i + 1, 1) for i in range(n)]
    return gpd.GeoDataFrame({"class_code": np.arange(n) + 1}, geometry=geoms, crs=crs)


# ------------------------------------------------------------------------- sidecars
_CRASH_IN_WAL_MODE = """
import os, sqlite3, sys
con = sqlite3.connect(sys.argv[1])
con.execute("pragma journal_mode=wal")
con.execute("pragma wal_autocheckpoint=0")
con.execute("create table edits (x)")
con.executemany("insert into edits values (?)", [(os.urandom(500),) for _ in range(200)])
con.commit()
os._exit(0)  # a crash: the -wal and -shm stay, not checkpointed
"""


def _crash_in_wal_mode(gpkg):
    subprocess.run([sys.executable, "-c", _CRASH_IN_WAL_MODE, str(gpkg)], check=True)
    assert gpkg.with_name(gpkg.name + "-wal").stat().st_size > 0


def test_overwriting_a_geopackage_drops_the_old_ones_sqlite_journals(tmp_path):
    # a QGIS session that crashed on the old file left its write-ahead log; SQLite
    # would apply it to the new file ("database disk image is malformed")
    out = tmp_path / "a.gpkg"
    write_vector(_boxes(1000, n=50), out)
    _crash_in_wal_mode(out)
    out.with_name("a.gpkg-journal").write_bytes(b"\xd9\xd5\x05\xf9\x20\xa1\x63\xd7" * 64)
    write_vector(_boxes(0), out, overwrite=True)
    with closing(sqlite3.connect(out)) as con:  # before: "database disk image is malformed"
        assert con.execute("pragma integrity_check").fetchall() == [("ok",)]
    assert list(pyogrio.list_layers(out)[:, 0]) == ["landcover"]
    back = gpd.read_file(out)
    assert list(back.class_code) == [1, 2]
    assert back.total_bounds.tolist() == [0, 0, 2, 1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gpkg"]


def test_a_failed_export_leaves_the_old_geopackage_and_its_journal(tmp_path, monkeypatch):
    import geoseg.export

    out = tmp_path / "a.gpkg"
    write_vector(_boxes(1000), out)
    _crash_in_wal_mode(out)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(geoseg.export, "write_qgis_styles", fail)
    with pytest.raises(OSError, match="disk full"):
        write_vector(_boxes(0), out, taxonomy=load_taxonomy(NLCD_YAML), overwrite=True)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_overwriting_a_shapefile_drops_its_stale_index_and_sidecars(tmp_path):
    out = tmp_path / "a.shp"
    # the old layer, with GDAL's spatial index (.qix) and other programs' sidecars
    _boxes(1000).to_file(out, engine="pyogrio", SPATIAL_INDEX="YES")
    assert out.with_suffix(".qix").exists()
    stale = ["a.sbn", "a.sbx", "a.shp.xml", "a.shp.aux.xml"]
    for name in stale:
        (tmp_path / name).write_bytes(b"stale")
    (tmp_path / "a.qml").write_text("<qgis/>")  # a user's style: kept
    write_vector(_boxes(0, crs=None), out, overwrite=True)  # no CRS: no new .prj
    # with the old .qix, GDAL found nothing here
    assert list(gpd.read_file(out, bbox=(0.2, 0.2, 0.8, 0.8)).class_code) == [1]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.cpg",
        "a.dbf",
        "a.qml",
        "a.shp",
        "a.shx",
    ]


def test_a_split_shapefile_replaces_the_unsplit_one(tmp_path):
    out = tmp_path / "a.shp"
    write_vector(_boxes(1000), out)
    with pytest.warns(ShapefileLimitWarning, match="2 GB"):
        write_vector(_boxes(0, n=4), out, overwrite=True, shapefile_limit=200)
    assert not any(tmp_path.glob("a.*"))
    parts = sorted(tmp_path.glob("a_*.shp"))
    assert len(parts) >= 2
    assert sum(len(gpd.read_file(p)) for p in parts) == 4


def test_a_split_shapefile_is_an_existing_output_and_goes_whole(tmp_path):
    out = tmp_path / "a.shp"
    with pytest.warns(ShapefileLimitWarning, match="2 GB"):  # geoseg's layers have area_m2
        write_vector(_boxes(0, n=4).assign(area_m2=1.0), out, shapefile_limit=200)
    parts = sorted(p.name for p in tmp_path.glob("a_*.shp"))
    assert len(parts) >= 2 and not out.exists()
    with pytest.raises(OutputExistsError):  # its parts are the output: not replaced silently
        write_vector(_boxes(0, n=1), out)
    assert sorted(p.name for p in tmp_path.glob("a_*.shp")) == parts
    write_vector(_boxes(0, n=1), out, overwrite=True)  # unsplit now: no part is left
    assert not list(tmp_path.glob("a_*")) and len(gpd.read_file(out)) == 1


# --------------------------------------------------------------------------- styles
def test_qgis_styles_name_the_geometry_column_that_gdal_wrote(tmp_path):
    layers = vectorize_layers(_zion_labels(tmp_path), VectorizeOptions(mmu=3600, simplify=15))
    out = write_vector(layers, tmp_path / "landcover.gpkg", taxonomy=load_taxonomy(NLCD_YAML))
    with closing(sqlite3.connect(out)) as con:
        columns = dict(con.execute("SELECT table_name, column_name FROM gpkg_geometry_columns"))
        styles = dict(con.execute("SELECT f_table_name, f_geometry_column FROM layer_styles"))
    assert set(columns) == {"landcover", "coarse"}
    assert styles == columns  # what QGIS matches on (GDAL writes "geom")


def test_qgis_styles_table_reads_without_warnings(tmp_path):
    layers = vectorize_layers(_zion_labels(tmp_path), VectorizeOptions(mmu=3600, simplify=15))
    out = write_vector(layers, tmp_path / "landcover.gpkg", taxonomy=load_taxonomy(NLCD_YAML))
    # GeoPackage DATETIME is ISO 8601 with a 'T' and 'Z'; SQLite's CURRENT_TIMESTAMP is not,
    # and GDAL warned "Non-conformant content" (an error under this suite's filters)
    styles = gpd.read_file(out, layer="layer_styles")
    assert len(styles) == 2 and styles["update_time"].notna().all()


# ---------------------------------------------------------------- geometry types
def _declared_types(path):
    if path.suffix == ".parquet":
        geo = json.loads(pq.read_schema(path).metadata[b"geo"])
        return {"landcover": geo["columns"]["geometry"]["geometry_types"]}
    if path.suffix != ".gpkg":
        return {"landcover": pyogrio.read_info(path)["geometry_type"]}
    return {
        layer: pyogrio.read_info(path, layer=layer)["geometry_type"]
        for layer, kind in pyogrio.list_layers(path)
        if kind is not None  # not layer_styles
    }


@pytest.mark.parametrize(
    ("fmt", "polygon"),
    [("gpkg", "Polygon"), ("shp", "Polygon"), ("fgb", "Polygon"), ("parquet", ["Polygon"])],
)
def test_an_empty_export_declares_polygons_as_a_full_one_does(tmp_path, fmt, polygon):
    tax = load_taxonomy(NLCD_YAML)
    with pytest.warns(GeosegWarning, match="every pixel is nodata"):
        empty = vectorize_layers(_zion_labels(tmp_path, name="empty.tif", nodata_only=True))
    assert all(len(layer) == 0 for layer in empty.values())
    full = vectorize_layers(_zion_labels(tmp_path))  # 4-connected: polygons only
    out = write_vector(empty, tmp_path / f"empty.{fmt}", taxonomy=tax)
    ref = write_vector(full, tmp_path / f"full.{fmt}", taxonomy=tax)
    layers = ["landcover", "coarse"] if fmt == "gpkg" else ["landcover"]
    assert _declared_types(out) == _declared_types(ref) == dict.fromkeys(layers, polygon)
    if fmt == "shp":
        assert out.read_bytes()[32:36] == (5).to_bytes(4, "little")  # Polygon, not 3 PolyLine


def test_an_all_nodata_raster_exports_an_empty_polygon_layer(tmp_path):
    path = shared_file("awkward/all-nodata.tif")
    with pytest.warns(GeosegWarning, match="every pixel is nodata"):
        layers = vectorize_layers(path, VectorizeOptions(band=1), scheduler="sync")
    assert len(layers["landcover"]) == 0
    for fmt in ("gpkg", "shp", "fgb"):
        out = write_vector(layers, tmp_path / f"empty.{fmt}")
        assert pyogrio.read_info(out)["geometry_type"] == "Polygon", fmt
        assert len(gpd.read_file(out)) == 0


def test_non_empty_exports_keep_their_geometries(tmp_path):
    mixed = _boxes(0, n=2)
    mixed.loc[1, "geometry"] = shapely.MultiPolygon(
        [shapely.box(5, 5, 6, 6), shapely.box(7, 7, 8, 8)]
    )
    for fmt, declared in (("gpkg", "MultiPolygon"), ("fgb", "MultiPolygon"), ("shp", "Polygon")):
        out = write_vector(mixed, tmp_path / f"mixed.{fmt}")
        assert pyogrio.read_info(out)["geometry_type"] == declared
        back = gpd.read_file(out).sort_values("class_code")  # FlatGeobuf sorts them
        assert shapely.equals(back.geometry.values, mixed.geometry.values).all()


# ----------------------------------------------------------------------------- text
def test_shapefile_warns_about_text_past_254_bytes(tmp_path):
    # a custom taxonomy with a long, non-ASCII class description as its name
    tax = load_taxonomy(NLCD_YAML).to_dict()
    long_name = "Forêt sempervirente — " + "pins ponderosa, sapins de Douglas et genévriers; " * 6
    assert len(long_name.encode()) > 254
    for c in tax["fine"]:
        if c["code"] == 42:
            c["name"] = long_name
    taxonomy = type(load_taxonomy(NLCD_YAML)).from_dict(tax)
    layers = vectorize_layers(_zion_labels(tmp_path, taxonomy), VectorizeOptions(mmu=3600))
    n_long = int((layers["landcover"].fine_code == 42).sum())
    assert n_long > 0
    with pytest.warns(ShapefileLimitWarning) as record:
        write_vector(layers, tmp_path / "landcover.shp")
    (warning,) = record
    message = str(warning.message)
    assert message.startswith(f"landcover.shp: {n_long} values of 'fine_name' (Shapefile field ")
    assert "'f_name'" in message and "254 bytes" in message
    assert "GeoPackage (.gpkg) or GeoParquet (.parquet)" in message
    back = gpd.read_file(tmp_path / "landcover.shp")
    cut = back.loc[back.f_code == 42, "f_name"]
    assert (cut == long_name.encode()[:254].decode(errors="ignore")).all()
    # the GeoPackage keeps them whole, with no warning
    write_vector(layers, tmp_path / "landcover.gpkg")
    whole = gpd.read_file(tmp_path / "landcover.gpkg", layer="landcover")
    assert (whole.loc[whole.fine_code == 42, "fine_name"] == long_name).all()


def test_an_empty_geoseg_layer_keeps_its_text_columns(tmp_path, empty_scene, tiny_bundle):
    from geoseg.workflow import run_predict

    with pytest.warns(GeosegWarning, match="every pixel is nodata"):
        run_predict(empty_scene, tiny_bundle, tmp_path / "o", formats=("gpkg",), scheduler="sync")
    info = pyogrio.read_info(tmp_path / "o" / "landcover.gpkg", layer="landcover")
    types = dict(zip(info["fields"], info["dtypes"], strict=True))
    assert info["features"] == 0 and info["geometry_type"] == "Polygon"
    assert types["coarse_name"] == "object" and types["fine_name"] == "object", types


def test_what_a_killed_export_left_is_removed_by_the_next(tmp_path):
    import subprocess
    import sys

    from geoseg.atomic import _host

    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           check=True, capture_output=True, text=True)  # fmt: skip
    out = tmp_path / "a.gpkg"
    # SIGKILL leaves no chance to clean up; another machine's run may still be going
    killed = tmp_path / f".a.gpkg.tmp-{_host()}-{int(child.stdout)}-0o_z1iqk"
    elsewhere = tmp_path / f".a.gpkg.tmp-otherhost-{int(child.stdout)}-abcd1234"
    for d in (killed, elsewhere):
        d.mkdir()
        (d / "a.gpkg").write_bytes(b"")
    write_vector(_boxes(0), out)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a.gpkg", elsewhere.name])


def test_a_users_numbered_shapefile_is_not_taken_for_a_split_part(tmp_path):
    out = tmp_path / "landcover.shp"
    mine = tmp_path / "landcover_2019.shp"
    _boxes(1000).to_file(mine, engine="pyogrio")
    write_vector(_boxes(0), out)  # not "output exists"
    write_vector(_boxes(0, n=2), out, overwrite=True)
    assert len(gpd.read_file(mine)) == len(_boxes(1000)) and len(gpd.read_file(out)) == 2


def test_a_users_metadata_beside_no_output_is_kept(tmp_path):
    (tmp_path / "a.shp.xml").write_text("<metadata/>")  # written before the first export
    write_vector(_boxes(0), tmp_path / "a.shp")
    assert (tmp_path / "a.shp.xml").read_text() == "<metadata/>"


# ------------------------------------------------------------------- --overwrite
def test_overwrite_replaces_only_vector_files_geoseg_wrote(tmp_path):
    """A user's layer, a user's own file or labelled reference points are work that
    --overwrite must not lose; geoseg's polygons and blank points it replaces."""
    from geoseg.export import check_vector_output

    polygons = _boxes(0).rename(columns={"class_code": "coarse_code"})
    ours = tmp_path / "ours.gpkg"
    write_vector({"landcover": polygons, "coarse": polygons}, ours)
    check_vector_output(ours, overwrite=True)  # geoseg's own: replaced
    with pytest.raises(OutputExistsError, match=r"output exists: pass --overwrite"):
        check_vector_output(ours, overwrite=False)
    # the user added a layer of their own to the GeoPackage
    polygons.to_file(ours, layer="field_notes")
    with pytest.raises(OutputExistsError, match=r"holds layer field_notes that geoseg does not"):
        check_vector_output(ours, overwrite=True)
    # a user's Shapefile or GeoParquet of other fields
    for name in ("parcels.shp", "parcels.parquet"):
        theirs = tmp_path / name
        parcels = _boxes(0).rename(columns={"class_code": "parcel_id"})
        if name.endswith(".parquet"):
            parcels.to_parquet(theirs)
        else:
            parcels.to_file(theirs)
        with pytest.raises(OutputExistsError, match=r"its fields \(parcel_id\) are not those"):
            check_vector_output(theirs, overwrite=True)
        # refused at once: the advice to pass --overwrite would only lead to this
        with pytest.raises(OutputExistsError, match=r"are not those of a geoseg output"):
            check_vector_output(theirs, overwrite=False)
    # geoseg's own, in every format: a plain class raster's polygons (class_code) too
    for name in ("own.parquet", "own.fgb", "own.shp", "classes.gpkg"):
        frame = _boxes(0) if name == "classes.gpkg" else polygons
        write_vector(frame, tmp_path / name)
        check_vector_output(tmp_path / name, overwrite=True)
    # a sample's points: blank ones are replaced, labelled ones are not
    points = gpd.GeoDataFrame(
        {"stratum": [4, 5], "coarse_code": [None, None]},
        geometry=[shapely.Point(0.5, 0.5), shapely.Point(1.5, 0.5)],
        crs="EPSG:32612",
    )
    for name in ("ref.gpkg", "ref.shp", "ref.parquet"):
        path = tmp_path / name
        write_vector({"reference": points}, path)
        check_vector_output(path, overwrite=True)
        if name.endswith(".parquet"):
            labelled = gpd.read_parquet(path)
            labelled.loc[0, "coarse_code"] = 4
            labelled.to_parquet(path)
            with pytest.raises(OutputExistsError, match=r"1 of its points carry reference"):
                check_vector_output(path, overwrite=True)
            continue
        labelled = gpd.read_file(path)
        labelled.loc[0, labelled.columns[1]] = 4  # coarse_code (c_code in a Shapefile)
        labelled.to_file(path, **({"layer": "reference"} if name.endswith("gpkg") else {}))
        with pytest.raises(OutputExistsError, match=r"1 of its points carry reference labels"):
            check_vector_output(path, overwrite=True)


def test_the_qgis_raster_style_shows_every_leaf(tmp_path):
    """labels.qml is paletted on a band that holds every class it lists: the fine band
    for NLCD (every coarse class has fine ones), the coarse band for a taxonomy with
    leaf coarse classes (Slovenian Water: its pixels' fine band is nodata)."""
    import re

    from geoseg.write import write_styles

    root = Path(NLCD_YAML).parent
    for name, band in (("nlcd.yaml", 2), ("slovenia.yaml", 1)):
        tax = load_taxonomy(root / name)
        dest = tmp_path / f"{name}.tif"
        write_styles(dest, tax)
        qml = dest.with_suffix(".qml").read_text()
        assert f'type="paletted" band="{band}"' in qml, name
        values = {int(v) for v in re.findall(r'paletteEntry value="(\d+)"', qml)}
        held = tax.fine_codes if band == 2 else tax.coarse_codes
        assert values == {int(c) for c in held}, name
