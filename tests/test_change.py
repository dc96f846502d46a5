"""geoseg change: from-to areas between two label maps (geoseg.change)."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.transform import from_origin

from geoseg import api
from geoseg.cli import cli
from geoseg.errors import OutputExistsError, RasterFormatError
from geoseg.taxonomy import Taxonomy

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


def test_maps_that_cannot_be_compared_are_refused(tmp_path):
    before = _map(tmp_path / "a.tif", BEFORE)
    other = Taxonomy.from_dict({"name": "o", "coarse": [{"code": 1, "name": "Water"}]})
    with pytest.raises(RasterFormatError, match=r"coarse classes .* are not those of"):
        api.change(before, _map(tmp_path / "o.tif", [[1, 1]], taxonomy=other))
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", driver="GTiff", width=4, height=3, count=1, dtype="uint8",
                       crs="EPSG:32612", transform=T) as dst:  # fmt: skip
        dst.write(np.ones((1, 3, 4), np.uint8))
    with pytest.raises(RasterFormatError, match=r"not a geoseg labels.tif .* compare maps"):
        api.change(before, plain)
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
