"""geoseg zonal: class areas per zone of a vector layer (geoseg.zonal)."""

from __future__ import annotations

import csv
import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import yaml
from click.testing import CliRunner
from rasterio.transform import from_origin
from shapely.geometry import box

from geoseg import api
from geoseg.cli import cli
from geoseg.errors import (
    GeosegWarning,
    OutputExistsError,
    OverlappingFeaturesWarning,
    RasterFormatError,
)
from geoseg.sample import SmallClassWarning
from geoseg.taxonomy import Taxonomy

from .conftest import write_raster

T = from_origin(300_000, 4_150_000, 30, 30)  # UTM 12N: 900 m² pixels
TAXONOMY = Taxonomy.from_dict(
    {
        "name": "tiny",
        "coarse": [{"code": 1, "name": "Water"}, {"code": 4, "name": "Forest"}],
        "fine": [
            {"code": 41, "name": "Deciduous", "parent": 4},
            {"code": 42, "name": "Evergreen", "parent": 4},
        ],
    }
)
ND = TAXONOMY.nodata
# 4 columns x 3 rows; 1 = Water (a coarse class without fine classes)
FINE = np.array([[41, 41, 42, 1], [41, 42, 42, 1], [ND, 42, 1, 1]])


def _map(path):
    coarse = np.where(FINE == ND, ND, np.where(FINE == 1, 1, 4)).astype(np.uint8)
    fine = np.where(np.isin(FINE, (41, 42)), FINE, ND).astype(np.uint8)
    conf = np.where(coarse == ND, ND, 90).astype(np.uint8)
    api.Prediction(coarse, fine, conf, None, TAXONOMY, T, "EPSG:32612").save(path)
    return path


def _zones(path, names, boxes, crs="EPSG:32612"):
    gpd.GeoDataFrame({"NAME": names}, geometry=boxes, crs=crs).to_file(path)
    return path


def _cell_box(c0, r0, c1, r1):
    """The box of columns c0..c1-1 and rows r0..r1-1 of the map's grid."""
    x0, y0 = T * (c0, r0)
    x1, y1 = T * (c1, r1)
    return box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def test_class_areas_per_zone_by_hand(tmp_path):
    labels = _map(tmp_path / "labels.tif")
    zones = _zones(
        tmp_path / "z.gpkg",
        ["West", "East", "Nowhere", "West"],  # two features of one zone
        [_cell_box(0, 0, 2, 2), _cell_box(2, 0, 4, 3), box(0, 0, 10, 10), _cell_box(0, 2, 2, 3)],
    )
    record = api.zonal(labels, zones, tmp_path / "out", field="NAME")
    by_zone = {z["zone"]: z for z in record["zones"]}
    assert set(by_zone) == {"West", "East"} and record["zones_not_on_map"] == ["Nowhere"]
    west, east = by_zone["West"], by_zone["East"]
    approx = pytest.approx
    assert west["area"] == approx(6 * 900)  # the nodata pixel: in the zone, unlabelled
    assert west["coarse"]["labelled"] == approx(5 * 900)
    assert west["coarse"]["classes"] == approx({"4 Forest": 5 * 900})
    assert west["fine"]["classes"] == approx({"41 Deciduous": 3 * 900, "42 Evergreen": 2 * 900})
    assert east["coarse"]["classes"] == approx({"4 Forest": 2 * 900, "1 Water": 4 * 900})
    assert east["fine"]["classes"] == approx({"42 Evergreen": 2 * 900, "1 Water": 4 * 900})
    rows = list(csv.DictReader((tmp_path / "out" / "zonal.csv").read_text().splitlines()))
    water = next(r for r in rows if r["zone"] == "East" and r["level"] == "coarse"
                 and r["class_name"] == "Water")  # fmt: skip
    assert (water["area_m2"], water["share_of_zone"]) == ("3600.0", "0.666667")
    assert json.loads((tmp_path / "out" / "zonal.json").read_text())["zones"] == record["zones"]
    assert "| Water | 0.004 | 66.7 % |" in (tmp_path / "out" / "zonal.md").read_text()
    with pytest.raises(OutputExistsError):
        api.zonal(labels, zones, tmp_path / "out", field="NAME")


def test_numeric_ids_other_crs_and_overlaps(tmp_path):
    labels = _map(tmp_path / "labels.tif")
    west, east = _cell_box(0, 0, 2, 3), _cell_box(1, 0, 4, 3)  # overlapping in column 1
    zones = gpd.GeoDataFrame({"NAME": [7, 12]}, geometry=[west, east], crs="EPSG:32612").to_crs(
        "EPSG:4326"
    )
    zones.to_file(tmp_path / "z.gpkg")
    with pytest.warns(OverlappingFeaturesWarning, match=r"3 pixels"):
        record = api.zonal(labels, tmp_path / "z.gpkg", field="NAME")
    assert len(record["warnings"]) == 1 and "3 pixels" in record["warnings"][0]
    by_zone = {z["zone"]: z for z in record["zones"]}
    assert set(by_zone) == {"7", "12"}
    # ids of any size, sign or kind are names, burnt by their place in the file
    for ids in ([123456789012, -1], [1.5, 2.5]):
        odd = zones.assign(NAME=ids)
        odd.to_file(tmp_path / "odd.gpkg")
        with pytest.warns(OverlappingFeaturesWarning):
            got = api.zonal(labels, tmp_path / "odd.gpkg", field="NAME")
        assert [z["zone"] for z in got["zones"]] == [str(i) for i in ids]
    assert by_zone["7"]["coarse"]["labelled"] == pytest.approx(2 * 900)  # column 0
    assert by_zone["12"]["coarse"]["labelled"] == pytest.approx(6 * 900)  # columns 2 and 3


def test_zones_cover_the_zion_map_s_areas(zion_prediction, tmp_path):
    """Real data: two halves of the Zion scene, in longitude/latitude, add up to the
    areas per class that run.json gives for the whole map."""
    labels = zion_prediction / "labels.tif"
    with rasterio.open(labels) as src:
        left, bottom, right, top = src.bounds
        crs = src.crs
    mid = (left + right) / 2
    halves = [
        box(left - 99, bottom - 99, mid, top + 99),
        box(mid, bottom - 99, right + 99, top + 99),
    ]
    zones = gpd.GeoDataFrame({"NAME": ["West", "East"]}, geometry=halves, crs=crs)
    zones.to_crs("EPSG:4326").to_file(tmp_path / "halves.gpkg")
    record = api.zonal(labels, tmp_path / "halves.gpkg", field="NAME")
    run = json.loads((zion_prediction / "run.json").read_text())["area_per_class"]
    for level in ("coarse", "fine"):
        summed: dict[str, float] = {}
        for zone in record["zones"]:
            for name, area in zone[level]["classes"].items():
                summed[name] = summed.get(name, 0.0) + area
        whole = {f"{c['code']} {c['name']}": c["area_m2"] for c in run[level] if c["area_m2"]}
        assert summed == pytest.approx(whole)
    assert record["labelled_outside_zones"] == 0


def test_bad_zones_are_one_line(tmp_path):
    labels = str(_map(tmp_path / "labels.tif"))
    zones = str(_zones(tmp_path / "z.gpkg", ["A"], [_cell_box(0, 0, 4, 3)]))
    runner = CliRunner()
    result = runner.invoke(
        cli, ["zonal", labels, zones, "--field", "NAM", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1 and "no attribute 'NAM'; its attributes are NAME" in result.output
    assert not (tmp_path / "o").exists()
    result = runner.invoke(
        cli, ["zonal", labels, labels, "--field", "NAME", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1 and "zones must be a vector file of polygons" in result.output
    result = runner.invoke(
        cli,
        [
            "zonal",
            labels,
            str(tmp_path / "none.gpkg"),
            "--field",
            "NAME",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 1 and "file not found" in result.output
    far = str(_zones(tmp_path / "far.gpkg", ["A"], [box(0, 0, 10, 10)]))
    with pytest.raises(RasterFormatError):
        api.zonal(labels, far, field="NAME")
    result = runner.invoke(
        cli, ["zonal", labels, zones, "--field", "NAME", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert "1 zones" in result.output


def test_what_zonal_leaves_out_is_said(tmp_path):
    """From a blind test: codes outside the taxonomy, zones without a name, points."""
    from shapely.geometry import Point

    from geoseg.errors import GeosegWarning

    labels = _map(tmp_path / "labels.tif")
    # a taxonomy without Water: its pixels are unlabelled, said, and a row of their own
    dry = Taxonomy.from_dict({**TAXONOMY.to_dict(), "coarse": [{"code": 4, "name": "Forest"}]})
    (tmp_path / "dry.json").write_text(json.dumps(dry.to_dict()))
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", driver="GTiff", width=4, height=3, count=1, dtype="uint8",
                       crs="EPSG:32612", transform=T, nodata=ND) as dst:  # fmt: skip
        dst.write(FINE.astype(np.uint8)[None])
    boxes = [_cell_box(0, 0, 4, 3), _cell_box(0, 0, 1, 1), _cell_box(1, 0, 2, 1)]
    zones = _zones(tmp_path / "z.gpkg", ["All", None, " "], boxes)
    with pytest.warns(GeosegWarning) as caught:
        api.zonal(plain, zones, tmp_path / "out", field="NAME", taxonomy=tmp_path / "dry.json")
    said = " ".join(str(w.message) for w in caught)
    assert "2 of its 3 features have no 'NAME': they are in no zone" in said
    kept = json.loads((tmp_path / "out" / "zonal.json").read_text())["warnings"]
    assert any("they are in no zone" in w for w in kept) and any("taxonomy tiny" in w for w in kept)
    assert "they are in no zone" in (tmp_path / "out" / "zonal.md").read_text()
    assert "4 pixels hold codes that taxonomy tiny does not list (1 (4 px))" in said
    rows = list(csv.DictReader((tmp_path / "out" / "zonal.csv").read_text().splitlines()))
    no_label = [r for r in rows if r["class_name"] == "(no label)" and r["level"] == "coarse"]
    assert len(no_label) == 1 and float(no_label[0]["area_m2"]) == pytest.approx(5 * 900)
    record = json.loads((tmp_path / "out" / "zonal.json").read_text())
    assert record["zones"][0]["coarse"]["unlabelled"] == pytest.approx(5 * 900)
    # points are not zones; a layer that is not there is named with those that are
    gpd.GeoDataFrame({"NAME": ["p"]}, geometry=[Point(300_015, 4_149_985)],
                     crs="EPSG:32612").to_file(tmp_path / "p.gpkg", layer="centres")  # fmt: skip
    with pytest.raises(RasterFormatError, match=r"its features are Point, and zones are polygons"):
        api.zonal(labels, tmp_path / "p.gpkg", field="NAME")
    with pytest.raises(RasterFormatError, match=r"no layer 'districts'.*'centres'"):
        api.zonal(labels, tmp_path / "p.gpkg", field="NAME", layer="districts")
    # zones in a CRS, a map without one: the fix names the map's file
    bare = tmp_path / "bare.tif"
    with rasterio.open(bare, "w", driver="GTiff", width=4, height=3, count=1, dtype="uint8",
                       transform=T, nodata=ND) as dst:  # fmt: skip
        dst.write(FINE.astype(np.uint8)[None])
    named = _zones(tmp_path / "named.gpkg", ["All"], boxes[:1])
    with pytest.raises(RasterFormatError, match=r"assign it its CRS \(geoseg edit .*bare.tif"):
        api.zonal(bare, named, field="NAME", taxonomy=tmp_path / "dry.json")


@pytest.mark.parametrize("kind", ["internal mask", "alpha band"])
def test_pixels_a_mask_band_leaves_out_are_unlabelled_everywhere(tmp_path, kind):
    """A map whose validity is a mask band or an alpha band, not a nodata value: the
    pixels under it hold codes, which zonal, evaluate and sample must not count (as
    vectorize does not polygonise them; found by a blind test, 2026-12-07)."""
    from rasterio.enums import ColorInterp

    codes = np.where(FINE == ND, 41, FINE).astype(np.uint8)  # a code under the mask
    valid = np.ones(FINE.shape, bool)
    valid[2, 0] = valid[0, 0] = False  # two pixels of the zone West
    path = tmp_path / "masked.tif"
    profile = dict(driver="GTiff", width=4, height=3, dtype="uint8", crs="EPSG:32612",
                   transform=T)  # fmt: skip
    if kind == "internal mask":
        with (
            rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True),
            rasterio.open(path, "w", count=1, **profile) as dst,
        ):
            dst.write(codes, 1)
            dst.write_mask(valid.astype(np.uint8) * 255)
    else:
        with rasterio.open(path, "w", count=2, **profile) as dst:
            dst.write(codes, 1)
            dst.write(valid.astype(np.uint8) * 255, 2)
            dst.colorinterp = [ColorInterp.gray, ColorInterp.alpha]
    tax = tmp_path / "tax.yaml"
    tax.write_text(yaml.safe_dump(TAXONOMY.to_dict()))
    zones = _zones(tmp_path / "z.gpkg", ["West"], [_cell_box(0, 0, 2, 3)])
    record = api.zonal(path, zones, field="NAME", taxonomy=tax, level="fine")
    assert record["zones"][0]["fine"]["labelled"] == pytest.approx(4 * 900)
    assert record["zones"][0]["fine"]["classes"] == pytest.approx(
        {"41 Deciduous": 2 * 900, "42 Evergreen": 2 * 900}
    )
    # the same map as prediction and as truth: only its unmasked pixels are scored
    unmasked = write_raster(tmp_path / "plain.tif", codes[None], transform=T, crs="EPSG:32612")
    for labels, truth, pixels in (
        (path, unmasked, 10),
        (unmasked, path, 10),
        (unmasked, unmasked, 12),
    ):
        scored = api.evaluate(labels, fine=truth, taxonomy=tax, level="fine", bootstrap=0)
        # coarse: every unmasked pixel; fine: those of Forest (Water has no fine class)
        assert scored["coarse"]["pixels"] == pixels, (labels, truth)
        assert scored["fine"]["pixels"] == pixels - 4, (labels, truth)
    with pytest.warns(SmallClassWarning, match=r"1 \(4 px\), 4 \(6 px\)"):
        points = api.sample(path, per_class=100, taxonomy=tax, level="fine")
    assert len(points) == int(valid.sum())  # every pixel of these tiny strata, none masked


def test_zone_names_spreadsheets_would_run_and_a_layer_read_unnamed(tmp_path):
    """A blind test's nits: a zone named ``=SUM(1)`` reached zonal.csv as a formula, and
    the first of two layers was read without a word."""
    labels = _map(tmp_path / "labels.tif")
    zones = tmp_path / "z.gpkg"
    gpd.GeoDataFrame(
        {"NAME": ["=SUM(1)", "-12"]},
        geometry=[_cell_box(0, 0, 2, 3), _cell_box(2, 0, 4, 3)],
        crs="EPSG:32612",
    ).to_file(zones, layer="districts")
    gpd.GeoDataFrame({"NAME": ["all"]}, geometry=[_cell_box(0, 0, 4, 3)], crs="EPSG:32612").to_file(
        zones, layer="country"
    )
    with pytest.warns(GeosegWarning, match=r"2 layers with geometries: .* 'districts'"):
        record = api.zonal(labels, zones, tmp_path / "out", field="NAME")
    assert [z["zone"] for z in record["zones"]] == ["=SUM(1)", "-12"]
    assert any("'districts'" in w for w in record["warnings"])
    rows = list(csv.reader((tmp_path / "out" / "zonal.csv").read_text().splitlines()))
    assert {r[0] for r in rows[1:]} == {"'=SUM(1)", "-12"}
    # named, it is read without a warning
    api.zonal(labels, zones, field="NAME", layer="country")
