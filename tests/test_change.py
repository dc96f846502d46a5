"""geoseg change: from-to areas between two label maps (geoseg.change)."""

from __future__ import annotations

import csv
import json
import re
import warnings

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.transform import from_origin

from geoseg import api
from geoseg.cli import cli
from geoseg.errors import ConfigError, GeosegWarning, OutputExistsError, RasterFormatError
from geoseg.taxonomy import Taxonomy
from tests.conftest import ROOT, ZION_BUNDLE, shared_file

T = from_origin(300_000, 4_150_000, 30, 30)  # UTM 12N: 900 m² pixels
TAXONOMY = Taxonomy.from_dict(
    {
        "name": "tiny",
        "coarse": [
            {"code": 1, "name": "Water"},  # no fine classes: a leaf at the fine level too
            {"code": 4, "name": "Forest"},
            {"code": 7, "name": "Crops"},
        ],
        "fine": [
            {"code": 41, "name": "Deciduous", "parent": 4},
            {"code": 42, "name": "Evergreen", "parent": 4},
            {"code": 71, "name": "Wheat", "parent": 7},
        ],
    }
)
ND = TAXONOMY.nodata
FINE_OF = {41: 4, 42: 4, 71: 7}


def _map(path, fine_or_water, *, crs="EPSG:32612", transform=T, taxonomy=TAXONOMY, bundle=""):
    """A geoseg map from fine codes (1 = Water, a coarse leaf; ND = no label)."""
    fine = np.asarray(fine_or_water, np.uint8)
    coarse = np.vectorize(lambda f: FINE_OF.get(int(f), int(f)))(fine).astype(np.uint8)
    fine = np.where(fine == 1, ND, fine).astype(np.uint8)
    conf = np.where(coarse == ND, ND, 90).astype(np.uint8)
    api.Prediction(coarse, fine, conf, None, taxonomy, transform, crs, bundle).save(path)
    return path


BEFORE = [[41, 41, 42, 71], [1, 1, 42, ND], [71, 71, 71, 41]]
AFTER = [[41, 71, 42, 71], [1, 41, 42, 41], [71, 71, ND, 1]]


def test_from_to_areas_by_hand(tmp_path):
    before = _map(tmp_path / "a.tif", BEFORE)
    after = _map(tmp_path / "b.tif", AFTER)
    record = api.change(before, after, tmp_path / "out")
    coarse, fine = record["levels"]["coarse"], record["levels"]["fine"]
    # labelled in both: 12 pixels less one nodata in each map (different pixels)
    assert coarse["pixels_compared"] == fine["pixels_compared"] == 10
    pairs = {(t["from_name"], t["to_name"]): t["pixels"] for t in coarse["transitions"]}
    assert pairs == {
        ("Forest", "Forest"): 3,  # 41->41, 42->42 twice
        ("Forest", "Crops"): 1,
        ("Crops", "Crops"): 3,
        ("Water", "Water"): 1,
        ("Water", "Forest"): 1,
        ("Forest", "Water"): 1,
    }
    assert coarse["area_changed"] == pytest.approx(3 * 900)
    assert coarse["changed_share"] == pytest.approx(0.3)
    fine_pairs = {(t["from_name"], t["to_name"]): t["pixels"] for t in fine["transitions"]}
    assert fine_pairs[("Deciduous", "Wheat")] == 1 and fine_pairs[("Water", "Deciduous")] == 1
    assert fine_pairs[("Deciduous", "Water")] == 1  # the coarse leaf at the fine level
    assert fine["area_changed"] == pytest.approx(3 * 900)
    forest = next(c for c in coarse["classes"] if c["name"] == "Forest")
    assert forest["before"] == pytest.approx(5 * 900) and forest["after"] == pytest.approx(4 * 900)
    assert (forest["lost"], forest["gained"], forest["net"]) == pytest.approx((1800, 900, -900))
    # the files say the same
    out = tmp_path / "out"
    assert json.loads((out / "change.json").read_text())["levels"] == record["levels"]
    rows = list(csv.DictReader((out / "transitions.csv").read_text().splitlines()))
    assert len(rows) == len(coarse["transitions"]) + len(fine["transitions"])
    assert {
        r["area_m2"] for r in rows if r["from_name"] == "Water" and r["to_name"] == "Forest"
    } == {"900.0"}
    md = (out / "change.md").read_text()
    assert "| Forest | Crops | 0.001 |" in md and "30.00 %" in md
    with rasterio.open(out / "change.tif") as src:
        assert src.crs == "EPSG:32612" and src.transform == T and src.nodata == 0
        assert src.descriptions == ("coarse transition", "fine transition")
        values = src.read(1)
    n = 3  # coarse classes: Water, Forest, Crops
    assert values[0, 1] == 1 * n + 2 + 1  # Forest -> Crops
    assert values[1, 3] == 0 and values[2, 2] == 0  # no label in one map
    names = re.findall(r"<Category>(.*?)</Category>", (out / "change.tif.aux.xml").read_text())
    assert names[values[0, 1]] == "Forest -&gt; Crops" and names[values[0, 0]] == (
        "Forest (unchanged)"
    )
    # QGIS's default style: the fine band, changed land in the colour it became
    qml = (out / "change.qml").read_text()
    assert 'rasterrenderer type="paletted" band="2"' in qml
    leaves = [c.name for c in TAXONOMY.leaves]
    wheat = next(c for c in TAXONOMY.leaves if c.name == "Wheat")
    value = leaves.index("Deciduous") * len(leaves) + leaves.index("Wheat") + 1
    assert f'value="{value}" color="{wheat.color}"' in qml and "Deciduous -&gt; Wheat" in qml
    same = leaves.index("Evergreen") * (len(leaves) + 1) + 1
    assert f'value="{same}" color="#e6e6e6"' in qml


def test_maps_that_cannot_be_compared_are_refused(tmp_path):
    before = _map(tmp_path / "a.tif", BEFORE)
    other = Taxonomy.from_dict({"name": "o", "coarse": [{"code": 1, "name": "Water"}]})
    with pytest.raises(RasterFormatError, match=r"coarse classes .* are not those of"):
        api.change(before, _map(tmp_path / "o.tif", [[1, 1]], taxonomy=other))
    plain = _plain(tmp_path / "plain.tif", [[1, 1, 1, 1]] * 3)
    other_plain = _plain(tmp_path / "plain2.tif", [[4, 4, 4, 4]] * 3)
    with pytest.raises(RasterFormatError, match=r"neither is a geoseg .*pass taxonomy with"):
        api.change(plain, other_plain)
    unknown = _plain(tmp_path / "unknown.tif", [[5, 6, 5, 6]] * 3)
    with pytest.raises(RasterFormatError, match=r"no code of the map is a class code of taxonomy"):
        api.change(before, unknown)
    shifted = _map(tmp_path / "s.tif", AFTER, transform=from_origin(300_030, 4_150_000, 30, 30))
    with pytest.raises(RasterFormatError, match=r"align=True"):
        api.change(before, shifted)
    # aligned: the later map one pixel to the east, so its column k lies on column k + 1
    record = api.change(before, shifted, align=True)
    assert record["aligned"] and record["levels"]["coarse"]["pixels_compared"] == 7
    after = _map(tmp_path / "b.tif", AFTER)
    api.change(before, after, tmp_path / "same")
    with pytest.raises(OutputExistsError):
        api.change(before, after, tmp_path / "same")
    # the same map twice, by path or as a copy (its GEOSEG_MAP_ID): a typo, not "no change"
    with pytest.raises(RasterFormatError, match=r"the same map as .*compare the maps of two"):
        api.change(before, tmp_path / "." / "a.tif")
    import shutil

    shutil.copy(before, tmp_path / "copy.tif")
    with pytest.raises(RasterFormatError, match=r"same map as .* \(GEOSEG_MAP_ID"):
        api.change(before, tmp_path / "copy.tif")


def _plain(path, codes, *, nodata=ND, dtype="uint8", crs="EPSG:32612", transform=T):
    """A single-band map of class codes, as another program writes one (no geoseg tags)."""
    codes = np.asarray(codes, dtype)
    with rasterio.open(path, "w", driver="GTiff", width=codes.shape[1], height=codes.shape[0],
                       count=1, dtype=dtype, crs=crs, transform=transform,
                       nodata=nodata) as dst:  # fmt: skip
        dst.write(codes[None])
    return path


@pytest.mark.filterwarnings("ignore::geoseg.errors.GeosegWarning")  # asserted in the record
def test_maps_that_geoseg_did_not_write(tmp_path, caplog):
    """A map of fine codes (NLCD-like) against a geoseg map, or two with a taxonomy file."""
    before, after = _map(tmp_path / "a.tif", BEFORE), _map(tmp_path / "b.tif", AFTER)
    reference = api.change(before, after)
    plain_before = _plain(tmp_path / "nlcd.tif", BEFORE)  # fine codes; 1: Water, a leaf
    record = api.change(plain_before, after)
    assert record["levels"] == reference["levels"]
    assert record["maps"][0]["taxonomy"] == f"the other map's ({after})"
    assert record["maps"][1]["taxonomy"] == "its tags"
    # neither map geoseg's: the taxonomy given, as a YAML file; float codes with NaN too
    yaml_path = tmp_path / "tiny.yaml"
    yaml_path.write_text(json.dumps(TAXONOMY.to_dict()))
    plain_after = _plain(
        tmp_path / "after.tif",
        np.where(np.asarray(AFTER) == ND, np.nan, AFTER),
        nodata=np.nan,
        dtype="float32",
    )
    record = api.change(plain_before, plain_after, taxonomy=yaml_path)
    assert record["levels"] == reference["levels"]
    assert record["maps"][1]["taxonomy"] == str(yaml_path)
    # a Python caller sees the record's warnings as warnings
    with pytest.warns(GeosegWarning, match=r"does not list \(99"):
        stray_map = np.array(BEFORE)
        stray_map[0, 0] = 99
        with warnings.catch_warnings():
            warnings.simplefilter("default", GeosegWarning)
            api.change(_plain(tmp_path / "stray99.tif", stray_map), after)
    # a map of coarse codes only: the coarse level is compared, the fine level is not
    coarse_after = _plain(
        tmp_path / "coarse.tif", np.vectorize(lambda f: FINE_OF.get(int(f), int(f)))(AFTER)
    )
    with caplog.at_level("WARNING", logger="geoseg"):
        record = api.change(before, coarse_after)
    assert list(record["levels"]) == ["coarse"]
    assert record["levels"]["coarse"] == reference["levels"]["coarse"]
    assert any("coarse classes only: the fine level is not compared" in w
               for w in record["warnings"])  # fmt: skip
    # codes the taxonomy does not list: said, with their pixels, and not compared
    stray = np.array(BEFORE)
    stray[0, 0] = 99
    with caplog.at_level("WARNING", logger="geoseg"):
        record = api.change(_plain(tmp_path / "stray.tif", stray), after)
    assert any("1 pixels hold codes that taxonomy tiny does not list (99 (1 px))" in w
               for w in record["warnings"])  # fmt: skip
    assert "does not list (99" in caplog.text
    assert record["levels"]["coarse"]["pixels_compared"] == 9
    # --level for a single band whose codes fit both levels, and the command's options
    both = Taxonomy.from_dict({"name": "b", "coarse": [{"code": 1, "name": "A"},
                               {"code": 2, "name": "B"}],
                               "fine": [{"code": 2, "name": "b", "parent": 2}]})  # fmt: skip
    (tmp_path / "b.yaml").write_text(json.dumps(both.to_dict()))
    x = _plain(tmp_path / "x.tif", [[1, 2], [2, 2]])
    y = _plain(tmp_path / "y.tif", [[1, 1], [2, 1]])
    args = ["change", str(x), str(y), "--taxonomy", str(tmp_path / "b.yaml")]
    result = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "c1")])
    assert result.exit_code == 1 and "--level coarse or --level fine" in result.output
    result = CliRunner().invoke(cli, [*args, "--level", "coarse", "--out", str(tmp_path / "c2")])
    assert result.exit_code == 0, result.output
    assert "0.002 of 0.004 km² changed coarse class (50.00 %)" in result.output


def test_polygons_of_the_changed_areas(tmp_path):
    """change.gpkg: one polygon per region of one transition; unchanged land left out."""
    import sqlite3

    import geopandas as gpd

    before = [[41] * 8 for _ in range(6)]
    after = [row[:] for row in before]
    for r, c in ((1, 1), (1, 2), (2, 1), (2, 2)):  # a 2 x 2 block of forest became crops
        after[r][c] = 71
    after[4][6] = 42  # one pixel of deciduous became evergreen: a fine change only
    after[0][7] = 1  # one pixel became water, in a corner
    a, b = _map(tmp_path / "a.tif", before), _map(tmp_path / "b.tif", after)
    record = api.change(a, b, tmp_path / "out", formats=("gpkg", "parquet"))
    assert record["outputs"][-3:] == [
        "change.gpkg", "change_fine.parquet", "change_coarse.parquet"
    ]  # fmt: skip
    gpkg = tmp_path / "out" / "change.gpkg"
    fine = gpd.read_file(gpkg, layer="change_fine")
    coarse = gpd.read_file(gpkg, layer="change_coarse")
    assert sorted(zip(fine.from_name, fine.to_name, fine.area_m2, strict=True)) == [
        ("Deciduous", "Evergreen", 900.0),
        ("Deciduous", "Water", 900.0),
        ("Deciduous", "Wheat", 3600.0),
    ]
    assert sorted(zip(coarse.from_code, coarse.to_code, coarse.area_m2, strict=True)) == [
        (4, 1, 900.0),
        (4, 7, 3600.0),
    ]
    block = fine[fine.to_name == "Wheat"].geometry.iloc[0]
    assert block.bounds == (300_030.0, 4_150_000 - 90.0, 300_090.0, 4_150_000 - 30.0)
    assert fine.crs == "EPSG:32612"
    # the polygons' areas are the transitions' areas of change.json
    for layer, frame in (("fine", fine), ("coarse", coarse)):
        changed = {(t["from_code"], t["to_code"]): t["area"]
                   for t in record["levels"][layer]["transitions"]
                   if t["from_code"] != t["to_code"]}  # fmt: skip
        sums = frame.groupby(["from_code", "to_code"])["area_m2"].sum().to_dict()
        assert sums == pytest.approx(changed)
        assert record["polygons"][f"change_{layer}"]["polygons"] == len(frame)
        parquet = gpd.read_parquet(tmp_path / "out" / f"change_{layer}.parquet")
        assert sorted(parquet.area_m2) == sorted(frame.area_m2)  # each layer a file
    # each layer styled by the class the land became
    con = sqlite3.connect(gpkg)
    styles = dict(con.execute("SELECT f_table_name, styleQML FROM layer_styles").fetchall())
    con.close()
    assert 'attr="to_code"' in styles["change_fine"] and "71 Wheat" in styles["change_fine"]
    assert "7 Crops" in styles["change_coarse"]
    # a minimum mapping unit of 2 pixels drops the one-pixel changes
    record = api.change(a, b, tmp_path / "mmu", mmu=1800)
    assert record["polygons"]["change_fine"]["polygons"] == 1
    assert record["polygons"]["options"] == {"mmu": 1800, "simplify": 0.0}
    # no polygons: none written
    record = api.change(a, b, tmp_path / "none", vector=False)
    assert "polygons" not in record and not (tmp_path / "none" / "change.gpkg").exists()


@pytest.mark.filterwarnings("ignore::geoseg.errors.SeenPixelsWarning")  # the whole Zion map
def test_a_reference_map_against_a_prediction_is_its_confusion_matrix(zion_prediction, tmp_path):
    """Real data: NLCD 2011 (a map geoseg did not write) -> the Zion prediction.

    Its from-to pixel counts are evaluate's confusion matrix of the same two maps, at
    both levels, and the polygons of the changed areas add up to the changed area.
    """
    nlcd = shared_file("zion/nlcd2011_level2.tif")
    labels = zion_prediction / "labels.tif"
    record = api.change(nlcd, labels, tmp_path / "since-2011", mmu=0)
    scores = api.evaluate(
        labels, coarse=shared_file("zion/nlcd2011_level1.tif"), fine=nlcd, bootstrap=0
    )
    for level in ("coarse", "fine"):
        ours = record["levels"][level]
        n = len(ours["classes"])
        matrix = np.zeros((n, n), np.int64)
        for t in ours["transitions"]:
            matrix[(t["value"] - 1) // n, (t["value"] - 1) % n] = t["pixels"]
        assert [f"{c['code']} {c['name']}" for c in ours["classes"]] == scores[level]["classes"]
        np.testing.assert_array_equal(matrix, np.array(scores[level]["confusion_matrix"]))
        assert 1 - ours["changed_share"] == pytest.approx(scores[level]["overall_accuracy"])
    assert record["polygons"]["change_fine"]["area"] == pytest.approx(
        record["levels"]["fine"]["area_changed"]
    )


@pytest.mark.filterwarnings("ignore::geoseg.errors.GeosegWarning")  # asserted in the record
def test_what_is_not_compared_and_maps_not_made_alike_are_said(tmp_path, caplog):
    before = _map(tmp_path / "a.tif", BEFORE, bundle="zion-nlcd " + "a" * 64)
    coarse = np.array([[4, 4, 7, 7], [1, 1, 4, 4], [7, 7, 7, 4]], np.uint8)
    fine = np.array([[41, 41, 71, 71], [ND, ND, 42, 42], [71, 71, 71, 41]], np.uint8)
    renamed = Taxonomy.from_dict({**TAXONOMY.to_dict(), "coarse": [
        {"code": 1, "name": "Open water"}, {"code": 4, "name": "Forest"},
        {"code": 7, "name": "Crops"}]})  # fmt: skip
    after = tmp_path / "b.tif"
    pred = api.Prediction(coarse, fine, np.full_like(coarse, 90), None, renamed, T, "EPSG:32612",
                          bundle="other-model " + "f" * 64)  # fmt: skip
    pred.save(after)
    with caplog.at_level("WARNING", logger="geoseg"):
        record = api.change(before, after, tmp_path / "out")
    assert any("Open water" in w for w in record["warnings"])
    assert any("different models (zion-nlcd aaaa" in w for w in record["warnings"])
    assert "Open water" in caplog.text
    assert [m["path"] for m in record["maps"]] == [str(before), str(after)]
    assert record["maps"][1]["bundle"].startswith("other-model")
    coarse_rec = record["levels"]["coarse"]
    assert coarse_rec["area_earlier_only"] == 0  # BEFORE's nodata pixel: after has a label
    assert coarse_rec["area_later_only"] == pytest.approx(900)
    md = (tmp_path / "out" / "change.md").read_text()
    assert "**Warning:** coarse classes of the same codes have other names" in md
    assert "Not compared (labelled in one map only" in md and "0.001 km² of the later one" in md


def test_the_command_and_maps_without_a_crs(tmp_path):
    before = _map(tmp_path / "a.tif", BEFORE, crs=None, transform=None)
    after = _map(tmp_path / "b.tif", AFTER, crs=None, transform=None)
    result = CliRunner().invoke(
        cli, ["change", str(before), str(after), "--out", str(tmp_path / "c")]
    )
    assert result.exit_code == 0, result.output
    assert "3 of 10 pixels changed coarse class (30.00 %)" in result.output
    record = json.loads((tmp_path / "c" / "change.json").read_text())
    assert record["unit"] == "pixels"
    assert record["levels"]["coarse"]["area_changed"] == 3
    assert "area_pixels" in (tmp_path / "c" / "transitions.csv").read_text().splitlines()[0]
    result = CliRunner().invoke(
        cli, ["change", str(before), str(after), "--out", str(tmp_path / "c")]
    )
    assert result.exit_code == 1 and "--overwrite" in result.output


@pytest.mark.filterwarnings("ignore::geoseg.errors.GeosegWarning")  # asserted in the record
def test_maps_resampled_or_unlike_say_only_what_is_so(tmp_path, caplog):
    """From the blind test: what lies outside a resampled map, unlike bands, no CRS."""
    before = _map(tmp_path / "a.tif", BEFORE)
    # a map of half the width, on the same pixel edges: the rest is outside its footprint
    crop = _map(tmp_path / "crop.tif", [row[:2] for row in AFTER])
    with caplog.at_level("WARNING", logger="geoseg"):
        record = api.change(before, crop, align=True)
    assert record["warnings"] == [] and "does not list" not in caplog.text
    assert record["levels"]["coarse"]["pixels_compared"] == 6
    assert record["levels"]["coarse"]["area_earlier_only"] == pytest.approx(5 * 900)
    # nothing comparable (every code of the later map unknown): an error, not "0 changed"
    unknown = _plain(tmp_path / "unknown.tif", [[41, 99, 99, 99]] * 3)
    with pytest.raises(RasterFormatError, match=r"no pixel is labelled in both .*99"):
        api.change(_map(tmp_path / "water.tif", [[ND, 1, 1, 1]] * 3), unknown,
                   tmp_path / "nothing")  # fmt: skip
    assert not (tmp_path / "nothing").exists()
    # two bands, coarse then fine, that disagree: said
    coarse = np.vectorize(lambda f: FINE_OF.get(int(f), int(f)))(AFTER)
    coarse[0, 0] = 7  # Crops over a Deciduous pixel
    two = tmp_path / "two.tif"
    with rasterio.open(two, "w", driver="GTiff", width=4, height=3, count=2, dtype="uint8",
                       crs="EPSG:32612", transform=T, nodata=ND) as dst:  # fmt: skip
        dst.write(np.stack([coarse, np.where(np.asarray(AFTER) == 1, ND, AFTER)]).astype("uint8"))
    record = api.change(before, two)
    assert any("1 pixels have a fine class that is not a child of their coarse class" in w
               for w in record["warnings"])  # fmt: skip
    # a map without a CRS on the other's grid: in the other's CRS, whichever comes first
    bare = _plain(tmp_path / "bare.tif", BEFORE, crs=None)
    full = _map(tmp_path / "full.tif", AFTER)
    for pair in ((bare, full), (before, bare)):
        rec = api.change(*pair)
        assert rec["unit"] == "m2"
        assert any("has no CRS: taken to be in" in w for w in rec["warnings"])
    # a float map's fractions, named as the map they are in
    fractions = _plain(tmp_path / "f.tif", [[41.5, 41, 42, 71]] * 3, dtype="float32")
    with pytest.raises(RasterFormatError, match=r"the later map holds"):
        api.change(before, fractions)
    with pytest.raises(ConfigError, match=r"level 'medium' is not one of"):
        api.change(before, crop, level="medium")
    # another grid and no CRS: the fix is a CRS (a shell command, options kept), not align
    with pytest.raises(RasterFormatError, match=r"no CRS, so it cannot .* --crs EPSG:NNNN"):
        api.change(bare, crop, align=True)


def test_a_taxonomy_against_a_map_s_own(tmp_path):
    """A taxonomy that gives a geoseg map's codes other meanings is refused for change."""
    before, after = _map(tmp_path / "a.tif", BEFORE), _map(tmp_path / "b.tif", AFTER)
    other = {**TAXONOMY.to_dict(), "fine": [{"code": 41, "name": "Deciduous", "parent": 4}]}
    (tmp_path / "o.yaml").write_text(json.dumps(other))
    with pytest.raises(ConfigError, match=r"cannot be compared in it: leave out taxonomy"):
        api.change(before, after, taxonomy=tmp_path / "o.yaml")
    # renamed classes: the geoseg map's names, for both maps
    renamed = {**TAXONOMY.to_dict(), "coarse": [{"code": 1, "name": "Open water"},
               {"code": 4, "name": "Forest"}, {"code": 7, "name": "Crops"}]}  # fmt: skip
    (tmp_path / "r.yaml").write_text(json.dumps(renamed))
    with pytest.warns(UserWarning, match=r"the report uses the model's names"):
        record = api.change(_plain(tmp_path / "p.tif", BEFORE), after, taxonomy=tmp_path / "r.yaml")
    names = {c["name"] for c in record["levels"]["coarse"]["classes"]}
    assert "Water" in names and "Open water" not in names


def test_maps_without_a_crs_give_polygons_in_pixels(tmp_path):
    before = _map(tmp_path / "a.tif", BEFORE, crs=None, transform=None)
    after = _map(tmp_path / "b.tif", AFTER, crs=None, transform=None)
    record = api.change(before, after, tmp_path / "out", formats=("gpkg", "shp"))
    import geopandas as gpd

    layer = gpd.read_file(tmp_path / "out" / "change.gpkg", layer="change_coarse")
    assert layer.area_pixels.sum() == record["levels"]["coarse"]["area_changed"] == 3
    assert "area_px" in gpd.read_file(tmp_path / "out" / "change_coarse.shp").columns


def test_a_finer_later_map_is_aggregated_by_its_most_common_class(tmp_path):
    """--align onto a coarser grid: mode (auto), or the centre pixel with nearest."""
    before = _map(tmp_path / "a.tif", [[41, 41], [42, 71]])  # 30 m
    fine = np.full((6, 6), 41, np.uint8)
    fine[0:3, 0:3] = [[42, 42, 42], [42, 41, 42], [41, 41, 41]]  # 5 of 9 Evergreen, centre 41
    fine[3:6, 3:6] = 1  # Water everywhere under the last pixel
    ten_m = from_origin(300_000, 4_150_000, 10, 10)
    ten = _plain(tmp_path / "b.tif", fine, transform=ten_m)  # one band of leaf codes
    record = api.change(before, ten, align=True)
    assert record["resampling"] == "mode"
    pairs = {(t["from_name"], t["to_name"]): t["pixels"]
             for t in record["levels"]["fine"]["transitions"]}  # fmt: skip
    assert pairs == {("Deciduous", "Evergreen"): 1, ("Deciduous", "Deciduous"): 1,
                     ("Evergreen", "Deciduous"): 1, ("Wheat", "Water"): 1}  # fmt: skip
    assert {(t["from_name"], t["to_name"]) for t in record["levels"]["coarse"]["transitions"]} == {
        ("Forest", "Forest"), ("Crops", "Water")}  # fmt: skip
    nearest = api.change(before, ten, align=True, resampling="nearest")
    assert nearest["resampling"] == "nearest"
    pairs = {(t["from_name"], t["to_name"]): t["pixels"]
             for t in nearest["levels"]["fine"]["transitions"]}  # fmt: skip
    assert pairs[("Deciduous", "Deciduous")] == 2  # the centre pixel, 41
    # the other way, a coarser later map onto a finer grid: nearest neighbour
    assert api.change(ten, before, align=True)["resampling"] == "nearest"
    assert api.change(before, _map(tmp_path / "c.tif", [[41, 71], [42, 42]]))["resampling"] is None
    # a map of both levels on a nested grid: the vote is among leaves, the coarse class
    # the winner's parent (2 Deciduous, 3 Evergreen, 4 Wheat: Wheat, so Crops, where each
    # band's own mode would give Forest and Wheat)
    split = np.full((3, 6), 41, np.uint8)
    split[:, :3] = [[41, 41, 42], [42, 42, 71], [71, 71, 71]]
    both = _map(tmp_path / "d.tif", split, transform=ten_m)
    before_1x2 = _map(
        tmp_path / "e.tif", [[41, 71]], transform=from_origin(300_000, 4_150_000, 30, 30)
    )
    record = api.change(before_1x2, both, align=True)
    assert record["resampling"] == "mode" and not record["warnings"]
    fine_pairs = {(t["from_name"], t["to_name"]) for t in record["levels"]["fine"]["transitions"]}
    coarse_pairs = {(t["from_name"], t["to_name"])
                    for t in record["levels"]["coarse"]["transitions"]}  # fmt: skip
    assert fine_pairs == {("Deciduous", "Wheat"), ("Wheat", "Deciduous")}
    assert coarse_pairs == {("Forest", "Crops"), ("Crops", "Forest")}
    # not nested (shifted by 3 m: Landsat's and Sentinel-2's grids are 5 m apart): each
    # 30 m pixel's 3 x 3 sub-pixels take the 10 m pixel under their centre and vote by leaf,
    # as on the nested grid (GDAL's per-band mode could split the levels)
    shifted = _map(tmp_path / "f.tif", split, transform=from_origin(300_003, 4_150_000, 10, 10))
    record = api.change(before_1x2, shifted, align=True, resampling="mode")
    assert record["resampling"] == "mode"
    assert {(t["from_name"], t["to_name"]) for t in record["levels"]["fine"]["transitions"]} == (
        fine_pairs
    )
    assert api.change(before_1x2, shifted, align=True)["resampling"] == "mode"  # auto
    # a 20 m map holds two or three partial pixels per 30 m pixel: auto takes nearest
    twenty = _map(
        tmp_path / "g.tif", [[41, 71, 71]], transform=from_origin(300_000, 4_150_000, 20, 20)
    )
    assert api.change(before_1x2, twenty, align=True)["resampling"] == "nearest"
    # a 30 m pixel less than half of which the finer map labels gets nothing from it,
    # and a tie goes to the class nearest the centre: 3 Deciduous, 3 Wheat, centre Wheat
    part = np.full((3, 6), ND, np.uint8)
    part[:, :3] = [[41, 41, ND], [ND, 41, ND], [ND, ND, 42]]  # 4 of 9: no label
    part[:, 3:] = [[41, ND, 71], [41, 71, ND], [41, 71, ND]]  # 3 and 3 of 7, centre 71
    record = api.change(before_1x2, _map(tmp_path / "h.tif", part, transform=ten_m), align=True)
    fine = record["levels"]["fine"]["transitions"]
    assert {(t["from_name"], t["to_name"]): t["pixels"] for t in fine} == {("Wheat", "Wheat"): 1}
    # a finer map without a CRS is refused in the grid's own terms (its 1 x 2 pixels)
    bare = _map(tmp_path / "i.tif", split, crs=None, transform=from_origin(0, 0, 10, 10))
    with pytest.raises(RasterFormatError, match=r"instead of 2 wide x 1 high.*has no CRS"):
        api.change(before_1x2, bare, align=True)
    nearest = api.change(before_1x2, shifted, align=True, resampling="nearest")
    assert {(t["from_name"], t["to_name"]) for t in nearest["levels"]["fine"]["transitions"]} == {
        ("Deciduous", "Evergreen"), ("Wheat", "Deciduous")}  # the centre pixels  # fmt: skip


def test_review_findings(tmp_path):
    """Classes in another order, legends over 255 leaves, equal codes of two levels."""
    before = _map(tmp_path / "a.tif", BEFORE)
    # the same classes in another order (another model's taxonomy): no false change
    shuffled = Taxonomy.from_dict({**TAXONOMY.to_dict(), "fine": [
        TAXONOMY.to_dict()["fine"][i] for i in (2, 1, 0)]})  # fmt: skip
    same = _map(tmp_path / "s.tif", BEFORE, taxonomy=shuffled)
    yaml_path = tmp_path / "tiny.yaml"
    yaml_path.write_text(json.dumps(TAXONOMY.to_dict()))
    for kwargs in ({}, {"taxonomy": yaml_path}):
        assert api.change(before, same, **kwargs)["levels"]["fine"]["area_changed"] == 0
    # 300 classes: transitions past 16 bits
    big = Taxonomy.from_dict({"name": "big", "nodata": 0, "coarse": [
        {"code": c, "name": f"c{c}"} for c in range(1, 301)]})  # fmt: skip
    (tmp_path / "big.yaml").write_text(json.dumps(big.to_dict()))
    x = _plain(tmp_path / "x.tif", [[1, 2, 300, 299]], nodata=0, dtype="uint16")
    y = _plain(tmp_path / "y.tif", [[300, 2, 1, 299]], nodata=0, dtype="uint16")
    record = api.change(x, y, tmp_path / "big", taxonomy=tmp_path / "big.yaml")
    with rasterio.open(tmp_path / "big" / "change.tif") as src:
        assert src.dtypes[0] == "uint32" and int(src.read(1)[0, 0]) == 0 * 300 + 299 + 1
    import geopandas as gpd

    polygons = gpd.read_file(tmp_path / "big" / "change.gpkg", layer="change_coarse")
    assert sorted(zip(polygons.from_code, polygons.to_code, strict=True)) == [(1, 300), (300, 1)]
    # a fine code equal to a coarse code without fine classes: other classes, a change
    clash = Taxonomy.from_dict({"name": "clash", "coarse": [
        {"code": 1, "name": "Water"}, {"code": 2, "name": "Vegetation"}],
        "fine": [{"code": 1, "name": "Tree", "parent": 2},
                 {"code": 2, "name": "Grass", "parent": 2}]})  # fmt: skip
    (tmp_path / "clash.yaml").write_text(json.dumps(clash.to_dict()))
    a = _plain(tmp_path / "ca.tif", [[1, 2]], nodata=0)  # fine codes: Tree, Grass
    b = tmp_path / "cb.tif"
    api.Prediction(np.array([[1, 2]], np.uint8), np.array([[255, 2]], np.uint8),
                   np.full((1, 2), 90, np.uint8), None, clash, T, "EPSG:32612").save(b)  # fmt: skip
    record = api.change(a, b, tmp_path / "clash", taxonomy=tmp_path / "clash.yaml", level="fine")
    tree = next(t for t in record["levels"]["fine"]["transitions"] if t["from_name"] == "Tree")
    assert tree["to_name"] == "Water" and tree["changed"]
    assert "| Tree | Water |" in (tmp_path / "clash" / "change.md").read_text()
    # an earlier map without georeferencing, of another size: not matched at a corner
    bare = tmp_path / "bare.tif"
    with rasterio.open(bare, "w", driver="GTiff", width=6, height=4, count=1,
                       dtype="uint8") as dst:  # fmt: skip
        dst.write(np.full((1, 4, 6), 41, np.uint8))
    with pytest.raises(RasterFormatError, match=r"has no georeferencing .* crop or resample"):
        api.change(bare, before, align=True)
    # --level where no map has a single band: refused, not ignored
    with pytest.raises(ConfigError, match=r"level option is for a map of a single band: drop"):
        api.change(before, same, level="coarse")


def test_transitions_per_zone(tmp_path):
    """--zones: each transition counted per district too, adding up to the whole."""
    import geopandas as gpd
    from shapely.geometry import box

    before, after = _map(tmp_path / "a.tif", BEFORE), _map(tmp_path / "b.tif", AFTER)
    x0, y0 = T * (0, 0)
    west = box(x0, y0 - 90, x0 + 60, y0)  # columns 0 and 1
    east = box(x0 + 60, y0 - 90, x0 + 120, y0)  # columns 2 and 3
    gpd.GeoDataFrame({"district": ["W", "E"]}, geometry=[west, east],
                     crs="EPSG:32612").to_crs("EPSG:4326").to_file(tmp_path / "d.gpkg")  # fmt: skip
    record = api.change(before, after, tmp_path / "out", zones=tmp_path / "d.gpkg",
                        zone_field="district", vector=False)  # fmt: skip
    assert record["zones"]["names"] == ["W", "E"]
    # the same counts without an output folder, in the record
    assert (
        api.change(before, after, zones=tmp_path / "d.gpkg", zone_field="district")["zones"][
            "transitions"
        ]
        == record["zones"]["transitions"]
    )
    rows = list(csv.DictReader((tmp_path / "out" / "change_by_zone.csv").read_text().splitlines()))
    coarse = [r for r in rows if r["level"] == "coarse"]
    # the whole map's transitions, split by district
    whole = {(t["from_name"], t["to_name"]): t["pixels"]
             for t in record["levels"]["coarse"]["transitions"]}  # fmt: skip
    summed: dict[tuple[str, str], int] = {}
    for r in coarse:
        key = (r["from_name"], r["to_name"])
        summed[key] = summed.get(key, 0) + int(r["pixels"])
    assert summed == whole
    # by hand: Forest -> Crops at (0, 1) in W; Water -> Forest at (1, 1) in W;
    # Forest -> Water at (2, 3) in E
    changed = sorted(
        (r["zone"], r["from_name"], r["to_name"]) for r in coarse if r["changed"] == "1"
    )
    assert changed == [("E", "Forest", "Water"), ("W", "Forest", "Crops"), ("W", "Water", "Forest")]
    assert {r["area_m2"] for r in coarse if r["changed"] == "1"} == {"900.0"}
    # overlapping zones: their pixels counted once, not once per level
    overlap = gpd.GeoDataFrame({"district": ["W", "E"]}, crs="EPSG:32612",
                               geometry=[west, box(x0 + 30, y0 - 90, x0 + 120, y0)])  # fmt: skip
    overlap.to_file(tmp_path / "o.gpkg")
    with pytest.warns(UserWarning, match=r"3 pixels lie under overlapping features"):
        over = api.change(before, after, tmp_path / "co", zones=tmp_path / "o.gpkg",
                          zone_field="district", vector=False)  # fmt: skip
    # said, and kept in change.json and change.md (the warning is raised once)
    assert any("3 pixels lie under overlapping features" in w for w in over["zones"]["warnings"])
    assert "3 pixels lie under overlapping features" in (tmp_path / "co" / "change.md").read_text()
    assert not any("overlapping" in w for w in over["warnings"])
    with pytest.raises(ConfigError, match=r"pass zone_field"):
        api.change(before, after, zones=tmp_path / "d.gpkg")
    args = ["change", str(before), str(after), "--zones", str(tmp_path / "d.gpkg")]
    result = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "c")])
    assert result.exit_code == 2 and "--zones needs --zone-field" in result.output


def _warped(labels, path, crs: str, resolution: float):
    """Geoseg map ``labels`` warped onto ``crs`` at ``resolution`` (nearest): a new map."""
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    from geoseg.write import MAP_ID

    with rasterio.open(labels) as src:
        transform, w, h = calculate_default_transform(
            src.crs, crs, src.width, src.height, *src.bounds, resolution=resolution
        )
        data = np.full((src.count, h, w), src.nodata, src.dtypes[0])
        reproject(src.read(), data, src_transform=src.transform, src_crs=src.crs,
                  src_nodata=src.nodata, dst_transform=transform, dst_crs=crs,
                  dst_nodata=src.nodata, resampling=Resampling.nearest)  # fmt: skip
        tags = {k: v for k, v in src.tags().items() if k != MAP_ID}
        descriptions = src.descriptions
        profile = dict(driver="GTiff", dtype=src.dtypes[0], count=src.count, nodata=src.nodata,
                       crs=crs, transform=transform, width=w, height=h, tiled=True,
                       compress="deflate")  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.update_tags(**tags)
        for b, d in enumerate(descriptions, 1):
            dst.set_band_description(b, d or "")
    return path


def test_a_finer_map_in_another_crs_votes_by_leaf(zion_prediction, tmp_path):
    """Real data: Zion's map warped to 10 m Albers, compared back onto its 30 m UTM grid.

    Off any nesting grid, each 30 m pixel's 3 x 3 sub-pixels vote by leaf, so that the
    coarse class is the fine winner's parent at every pixel of change.tif (per-band
    modes could split the levels), and the change is the warps' own noise only.
    """
    labels = zion_prediction / "labels.tif"
    ten = _warped(labels, tmp_path / "albers10.tif", "EPSG:5070", 10.0)
    record = api.change(labels, ten, tmp_path / "out", align=True, vector=False)
    assert record["resampling"] == "mode"  # auto: a finer map
    for level in record["levels"].values():  # measured: no pixel changed
        assert level["area_changed"] <= 0.001 * level["area_compared"]
    tax = Taxonomy.from_dict(json.loads((ZION_BUNDLE / "bundle.json").read_text())["taxonomy"])
    parent = np.concatenate([tax.fine_parent_index, tax.childless_coarse_index])
    with rasterio.open(tmp_path / "out" / "change.tif") as src:
        coarse, fine = src.read(1).astype(np.int64), src.read(2).astype(np.int64)
    both = (coarse > 0) & (fine > 0)
    assert both.mean() > 0.9
    n_leaves = len(tax.leaves)
    to_leaf = (fine[both] - 1) % n_leaves
    to_coarse = (coarse[both] - 1) % tax.n_coarse
    assert np.array_equal(parent[to_leaf], to_coarse)


def test_change_tif_is_not_taken_for_a_map_of_classes(tmp_path):
    """Its values, from_index * n + to_index + 1, would read as codes of any taxonomy."""
    before, after = _map(tmp_path / "a.tif", BEFORE), _map(tmp_path / "b.tif", AFTER)
    api.change(before, after, tmp_path / "out", vector=False)
    changed = tmp_path / "out" / "change.tif"
    nlcd = ROOT / "configs" / "taxonomy" / "nlcd.yaml"
    refused = r"a geoseg change\.tif \(the from -> to transitions of two maps.*a\.tif or .*b\.tif"
    sampled = CliRunner().invoke(
        cli, ["sample", str(changed), "--out", str(tmp_path / "s.gpkg"), "--taxonomy", str(nlcd)]
    )  # sampled by its transitions (tests/test_change_reference.py), in its own taxonomy
    assert sampled.exit_code == 1 and "carries its taxonomy: drop --taxonomy" in sampled.output
    for run in (
        lambda: api.evaluate(changed, coarse=before, taxonomy=nlcd),
        lambda: api.vectorize(changed, tmp_path / "v.gpkg"),
        lambda: api.change(changed, after),
        lambda: api.merge([changed, after], tmp_path / "m"),
    ):
        with pytest.raises(RasterFormatError, match=refused):
            run()
    with pytest.raises(RasterFormatError, match=r"a geoseg change\.tif .*not an image"):
        api.predict(changed, ZION_BUNDLE, tmp_path / "p")
