"""geoseg sample: a stratified random sample of a map's pixels for reference labelling."""

from __future__ import annotations

import json
import warnings

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml
from click.testing import CliRunner

from geoseg import api
from geoseg.cli import cli
from geoseg.errors import ConfigError, RasterFormatError, SampleDesignWarning
from geoseg.metrics import Z95
from geoseg.sample import SmallClassWarning, UnknownMapCodeWarning, allocation, draw_sample
from geoseg.taxonomy import load_taxonomy

from .conftest import NLCD_YAML, shared_file, write_raster

#: A taxonomy whose fine code 1 is also a coarse code.
SHARED_CODES = {
    "name": "shared",
    "nodata": 0,
    "coarse": [{"code": 1, "name": "A"}, {"code": 2, "name": "B"}],
    "fine": [{"code": 1, "name": "a", "parent": 1}, {"code": 3, "name": "b", "parent": 2}],
}


def _map(zion_prediction):
    with rasterio.open(zion_prediction / "labels.tif") as src:
        return src.read(1), src.read(2), src.transform


def test_the_draw_is_each_class_s_smallest_random_keys_over_the_whole_map(zion_prediction):
    """Drawn a band of rows at a time, the sample is the one a whole-map draw gives: in
    each class, the pixels with the smallest of the seeded keys (every pixel of a class
    equally likely)."""
    points = draw_sample(zion_prediction / "labels.tif", per_class=40, seed=7)
    coarse, _, t = _map(zion_prediction)
    keys = np.random.default_rng(7).random(coarse.size)  # drawn band by band: the same stream
    flat = coarse.ravel()
    want = set()
    for code in np.unique(flat[flat != 255]):
        idx = np.flatnonzero(flat == code)
        want.update(idx[np.argsort(keys[idx])[:40]].tolist())
    inverse = ~t
    got = set()
    for p in points.geometry:
        col, row = inverse * (p.x, p.y)
        assert col % 1 == pytest.approx(0.5) and row % 1 == pytest.approx(0.5)  # centres
        got.add(int(row) * coarse.shape[1] + int(col))
    assert got == want and len(got) == 8 * 40


def test_points_carry_their_map_classes_and_empty_reference_fields(zion_prediction, tmp_path):
    coarse, fine, t = _map(zion_prediction)
    out = tmp_path / "ref.gpkg"
    args = ["sample", str(zion_prediction / "labels.tif"), "--out", str(out), "--per-class", "30"]
    res = CliRunner().invoke(cli, [*args, "--seed", "3"])
    assert res.exit_code == 0, res.output
    points = gpd.read_file(out, layer="reference")
    assert points.crs == "EPSG:32612"
    assert points["stratum"].value_counts().to_dict() == dict.fromkeys(range(1, 9), 30)
    inverse = ~t
    for p, sc, sf, name in zip(
        points.geometry,
        points["map_coarse_code"],
        points["map_fine_code"],
        points["map_fine_name"],
        strict=True,
    ):
        col, row = (int(v) for v in inverse * (p.x, p.y))
        assert coarse[row, col] == sc and fine[row, col] == sf and name
    assert points["coarse_code"].isna().all() and points["fine_code"].isna().all()
    again = CliRunner().invoke(cli, [*args, "--seed", "3"])
    assert again.exit_code == 1 and "--overwrite" in again.output
    other = draw_sample(zion_prediction / "labels.tif", per_class=30, seed=4)
    assert set(other.geometry.to_wkt()) != set(points.geometry.to_wkt())


def test_a_class_smaller_than_its_quota_is_drawn_whole(zion_prediction):
    coarse, _, _ = _map(zion_prediction)
    with pytest.warns(SmallClassWarning, match=r"class 1 \(1390 px\) has fewer pixels"):
        points = draw_sample(zion_prediction / "labels.tif", per_class=1500)
    assert (coarse == 1).sum() == 1390 and (points["stratum"] == 1).sum() == 1390


def test_a_total_is_shared_out_by_area_with_a_least_per_class(zion_prediction):
    coarse, _, _ = _map(zion_prediction)
    points = draw_sample(zion_prediction / "labels.tif", per_class=50, total=1500)
    counts = points["stratum"].value_counts().to_dict()
    valid = int((coarse != 255).sum())
    for code, n in counts.items():
        share = round(1500 * int((coarse == code).sum()) / valid)
        assert n == max(50, share)
    assert counts[4] > 700 and counts[1] == 50  # forest by area, water its least


@pytest.mark.filterwarnings("ignore::geoseg.errors.SeenPixelsWarning")  # the whole Zion map
def test_sampled_reference_points_error_adjust_the_zion_areas(zion_prediction, tmp_path):
    """The whole good-practice loop: draw (proportional, at least 50 a class), label the
    points (here from NLCD), evaluate: the areas come near the true ones."""
    l1, l2 = (shared_file(f"zion/nlcd2011_level{k}.tif") for k in (1, 2))
    out = tmp_path / "ref.gpkg"
    runner = CliRunner()
    args = ["sample", str(zion_prediction / "labels.tif"), "--out", str(out)]
    assert runner.invoke(cli, [*args, "--total", "1500", "--per-class", "50"]).exit_code == 0
    points = gpd.read_file(out)
    xy = [(p.x, p.y) for p in points.geometry]
    for field, path in (("coarse_code", l1), ("fine_code", l2)):
        with rasterio.open(path) as src:
            points[field] = [int(v[0]) for v in src.sample(xy)]
    points.to_file(tmp_path / "labelled.gpkg")
    report = tmp_path / "report"
    truth = str(tmp_path / "labelled.gpkg")
    args = ["evaluate", str(zion_prediction / "labels.tif"), "--coarse", truth, "--fine", truth]
    res = runner.invoke(cli, [*args, "--out", str(report)])
    assert res.exit_code == 0, res.output
    metrics = json.loads((report / "metrics.json").read_text())
    # the console gives the map's figures, estimated from the design (overall accuracy
    # with Korn and Graubard's interval), the points' own after them
    assert "OA 0.7549 [0.7336, 0.7753] (the map's, estimated from" in res.output
    # the design's intervals, not a block bootstrap of another estimator
    assert all("ci95_bootstrap" not in c for c in metrics["fine"]["area"]["classes"].values())
    # Korn and Graubard's by default; the normal ones on request, for the same estimates
    normal = api.evaluate(zion_prediction / "labels.tif", coarse=truth, fine=truth, bootstrap=0,
                          interval="wald")["coarse"]["area"]  # fmt: skip
    assert metrics["coarse"]["area"]["interval_method"] == "beta"
    assert normal["interval_method"] == "wald"
    for name, c in normal["classes"].items():
        beta = metrics["coarse"]["area"]["classes"][name]
        assert c["estimated"] == beta["estimated"] and c["se"] == beta["se"]
        lo = max(c["estimated"] - Z95 * c["se"], 0)
        assert c["ci95"] == pytest.approx([lo, c["estimated"] + Z95 * c["se"]], rel=1e-5)
    assert "Stehman 2014" in (report / "metrics.md").read_text()
    for level, path in (("coarse", l1), ("fine", l2)):
        with rasterio.open(path) as src:
            truth_map = src.read(1)
        off_map = off_estimate = 0.0
        for cls, c in metrics[level]["area"]["classes"].items():
            true = float((truth_map == int(cls.split()[0])).sum() * 900)
            off_map += abs(c["mapped"] - true)
            off_estimate += abs(c["estimated"] - true)
            if level == "coarse":
                assert c["ci95"][0] <= true <= c["ci95"][1], cls
        # the README's figures (seed 0): 63.5 -> 10.3 km² (level 1), 161 -> 51.1 km² (level 2)
        assert off_estimate < off_map / 2, level
        expected = {"coarse": (63.5e6, 10.3e6), "fine": (161.0e6, 51.1e6)}[level]
        assert (off_map, off_estimate) == pytest.approx(expected, abs=0.05e6), level
    # the sample's own strata at both levels (Stehman 2014), as a blind test's own
    # implementation computed them from the same points: fine overall accuracy 0.714
    # (the fine map classes as strata left it undefined), Deciduous 181.30 km² (se 11.76)
    fine = metrics["fine"]["area"]
    assert fine["overall_accuracy"] == pytest.approx(0.713936, abs=1e-6)
    deciduous = fine["classes"]["41 Deciduous Forest"]
    assert (deciduous["estimated"], deciduous["se"]) == pytest.approx(
        (181.3043e6, 11.7640e6), rel=1e-4
    )
    assert metrics["coarse"]["area"]["overall_accuracy"] == pytest.approx(0.754929, abs=1e-6)
    # the map's mIoU from the design, against every pixel's (the census)
    census = api.evaluate(zion_prediction / "labels.tif", coarse=l1, fine=l2, bootstrap=0)
    for level in ("coarse", "fine"):
        estimated = metrics[level]["area"]["map_scores"]
        # the census over the classes the estimate holds (fine: all but Developed Medium
        # Intensity, mapped on 75 px where no point fell): 0.399 and 0.320
        seen = estimated["per_class"]
        truth = np.mean([census[level]["per_class"][k]["iou"] for k in seen])
        assert estimated["classes_unseen"] == (
            [] if level == "coarse" else ["23 Developed Medium Intensity"]
        )
        lo, hi = estimated["miou_ci95"]  # measured: 0.428 [0.397, 0.459], 0.326 [0.304, 0.349]
        assert lo <= truth <= hi, level
        # the points' own, each alike: 0.447 and 0.312 (over 13 classes)
        assert abs(estimated["miou"] - truth) < abs(metrics[level]["miou"] - truth), level


def test_a_map_geoseg_did_not_write_needs_its_taxonomy(tmp_path):
    other = write_raster(tmp_path / "other.tif", np.ones((1, 8, 8), np.uint8))
    with pytest.raises(RasterFormatError, match=r"not a geoseg labels\.tif.*pass --taxonomy"):
        draw_sample(other)


def test_any_map_of_fine_codes_is_stratified_by_their_parents(tmp_path):
    """NLCD itself (one band of level-2 codes, written by another program) sampled with
    its taxonomy: the strata are the level-1 parents, drawn as a whole-map draw would,
    and each point carries the map's two levels."""
    nlcd = shared_file("zion/nlcd2011_level2.tif")
    points = draw_sample(nlcd, per_class=25, seed=5, taxonomy=NLCD_YAML)
    with rasterio.open(nlcd) as src:
        fine, t = src.read(1).astype(np.int64), src.transform
    flat = fine.ravel()
    parent_of = {c.code: c.parent for c in load_taxonomy(NLCD_YAML).fine}
    lut = np.full(256, -1)
    lut[list(parent_of)] = list(parent_of.values())
    parent = lut[flat]  # 255 (nodata): -1
    keys = np.random.default_rng(5).random(flat.size)
    want = set()
    for code in np.unique(parent[parent >= 0]):
        idx = np.flatnonzero(parent == code)
        want.update(idx[np.argsort(keys[idx])[:25]].tolist())
    inverse = ~t
    got = {}
    for p, c, f in zip(
        points.geometry, points["map_coarse_code"], points["map_fine_code"], strict=True
    ):
        col, row = inverse * (p.x, p.y)
        i = int(row) * fine.shape[1] + int(col)
        got[i] = (c, f)
        assert (c, f) == (parent_of[flat[i]], flat[i])
    assert set(got) == want and len(want) == 8 * 25
    assert set(points["map_fine_name"]) >= {"Open Water", "Evergreen Forest"}


def test_a_sample_of_another_map_scores_it_through_evaluate(tmp_path):
    """Label the sample of NLCD with NLCD itself: evaluate finds the map exact."""
    nlcd = shared_file("zion/nlcd2011_level2.tif")
    out = tmp_path / "ref.gpkg"
    args = ["sample", str(nlcd), "--out", str(out), "--taxonomy", str(NLCD_YAML)]
    res = CliRunner().invoke(cli, [*args, "--per-class", "20", "--total", "300"])
    assert res.exit_code == 0, res.output
    points = gpd.read_file(out)
    points["fine_code"] = points["map_fine_code"]
    points.to_file(out, layer="reference", driver="GPKG")
    report = tmp_path / "eval"
    res = CliRunner().invoke(
        cli,
        ["evaluate", str(nlcd), "--taxonomy", str(NLCD_YAML), "--fine", str(out),
         "--out", str(report)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["fine"]["overall_accuracy"] == 1.0
    assert metrics["coarse"]["overall_accuracy"] == 1.0


def _nlcd_sample(tmp_path):
    """A sample drawn on NLCD level 2 and labelled with NLCD itself: (file, points)."""
    nlcd = shared_file("zion/nlcd2011_level2.tif")
    out = tmp_path / "ref.gpkg"
    args = ["sample", str(nlcd), "--out", str(out), "--taxonomy", str(NLCD_YAML)]
    assert CliRunner().invoke(cli, [*args, "--per-class", "20", "--total", "300"]).exit_code == 0
    points = gpd.read_file(out)
    points["fine_code"] = points["map_fine_code"]
    points["coarse_code"] = points["map_coarse_code"]
    points.to_file(out, layer="reference", driver="GPKG")
    return out, points


@pytest.mark.filterwarnings("ignore::geoseg.errors.SeenPixelsWarning")  # the whole Zion map
def test_points_drawn_on_another_map_are_weighted_by_their_own_strata(zion_prediction, tmp_path):
    """A sample drawn on NLCD, labelled with NLCD, scores the Zion prediction: with the
    sample's own strata (Stehman 2014) the coarse areas are NLCD's exactly (each
    stratum is one NLCD class); with the prediction's classes as strata they were far
    off (the blind test: Wetlands 38 km² [26, 50] against 6.5 true)."""
    l1 = shared_file("zion/nlcd2011_level1.tif")
    nlcd = shared_file("zion/nlcd2011_level2.tif")
    out, points = _nlcd_sample(tmp_path)
    labels = zion_prediction / "labels.tif"
    metrics = api.evaluate(labels, coarse=out, fine=out, bootstrap=0)
    with rasterio.open(l1) as src:
        truth = src.read(1)
    for name, c in metrics["coarse"]["area"]["classes"].items():
        assert c["estimated"] == pytest.approx((truth == int(name.split()[0])).sum() * 900)
    assert metrics["fine"]["area"]["strata"].startswith("the sample's own")
    assert metrics["fine"]["area"]["overall_accuracy"] is not None  # the fine level too
    # a sample of an earlier version (no stratum areas): no areas for another map
    old = tmp_path / "old.gpkg"
    points.drop(columns=["stratum_area"]).to_file(old, layer="reference", driver="GPKG")
    with pytest.warns(SampleDesignWarning, match=r"drawn by geoseg sample on another map"):
        metrics = api.evaluate(labels, fine=old, bootstrap=0)
    for level in ("coarse", "fine"):
        assert "area" not in metrics[level]
        assert "stratum than this map's class" in metrics[level]["area_not_estimated"]
    assert metrics["fine"]["confusion_matrix"]  # the points are still scored
    # the map the points were drawn on: its areas stand, also without stratum areas
    metrics = api.evaluate(nlcd, fine=old, taxonomy=NLCD_YAML, bootstrap=0)
    assert metrics["fine"]["area"]["interval"] == "stratified"


@pytest.mark.filterwarnings("ignore::geoseg.errors.SeenPixelsWarning")  # the whole Zion map
def test_a_sample_s_design_through_every_path_and_its_edits(zion_prediction, tmp_path):
    """From a review: fine truth alone still weighs the coarse level by the sample's
    strata; a one-scene pooling keeps them; edited stratum areas, another unit and
    repeated points are said, not used silently."""
    import warnings

    from geoseg.evaluate import combine, evaluate_labels
    from geoseg.vector_labels import VectorField

    l1 = shared_file("zion/nlcd2011_level1.tif")
    out, points = _nlcd_sample(tmp_path)
    labels = zion_prediction / "labels.tif"
    with rasterio.open(l1) as src:
        truth = src.read(1)
    true = {c: (truth == c).sum() * 900 for c in range(1, 9)}
    # --fine alone: the coarse level's reference is the fine labels' parents
    metrics = api.evaluate(labels, fine=out, bootstrap=0)
    for name, c in metrics["coarse"]["area"]["classes"].items():
        assert c["estimated"] == pytest.approx(true[int(name.split()[0])])
    # pooled over one scene (evaluate --model --config): the sample's figures stand
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fields = {lv: VectorField(f"{lv}_code", f"--{lv}-field") for lv in ("coarse", "fine")}
        scene = evaluate_labels(labels, fine_truth=out, vector=fields)
    pooled = combine([scene], prediction=str(labels))
    assert pooled["coarse"]["area"]["strata"].startswith("the sample's own")
    # one point's stratum area edited: that stratum's weight is unknown
    edited = points.copy()
    edited.loc[edited.index[0], "stratum_area"] = 1.0
    edited.to_file(tmp_path / "edited.gpkg", layer="reference", driver="GPKG")
    with pytest.warns(SampleDesignWarning, match=r"carry 2 stratum areas"):
        metrics = api.evaluate(labels, fine=tmp_path / "edited.gpkg", bootstrap=0)
    assert (
        "area" not in metrics["coarse"]
        and "restore stratum_area" in (metrics["coarse"]["area_not_estimated"])
    )
    # areas in pixels (a sample of a map without a CRS) against a map in m²
    pixels = points.copy()
    pixels["area_unit"] = "pixels"
    pixels.to_file(tmp_path / "pixels.gpkg", layer="reference", driver="GPKG")
    with pytest.warns(SampleDesignWarning, match=r"stratum areas are in pixels"):
        api.evaluate(labels, fine=tmp_path / "pixels.gpkg", bootstrap=0)
    # the same points twice: each place counts once
    twice = gpd.GeoDataFrame(pd.concat([points, points]), crs=points.crs)
    twice.to_file(tmp_path / "twice.gpkg", layer="reference", driver="GPKG")
    with pytest.warns(SampleDesignWarning, match=r"points repeat another point's place"):
        again = api.evaluate(labels, fine=tmp_path / "twice.gpkg", bootstrap=0)
    once = api.evaluate(labels, fine=out, bootstrap=0)
    assert (
        again["fine"]["area"]["overall_accuracy_ci95"]
        == once["fine"]["area"]["overall_accuracy_ci95"]
    )
    # a point repeated with another label: the scoring leaves the place unlabelled, and
    # so does the design now (a blind test found it kept there, with the first label)
    other = points.iloc[[0]].copy()
    other["fine_code"] = 42 if int(other["fine_code"].iloc[0]) != 42 else 41
    clash = gpd.GeoDataFrame(pd.concat([points, other]), crs=points.crs)
    clash.to_file(tmp_path / "clash.gpkg", layer="reference", driver="GPKG")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        both = api.evaluate(labels, fine=tmp_path / "clash.gpkg", bootstrap=0)
    assert any("copies disagree" in str(w.message) for w in seen)
    fewer = once["fine"]["pixels"] - 1
    assert both["fine"]["pixels"] == both["fine"]["area"]["map_scores"]["points"] == fewer
    # a copy that differs only in a note (the others' notes empty): one place, counted
    # once (a review: any other attribute dropped it, and empty values crashed pandas)
    noted = points.iloc[[1]].copy()
    noted["note"] = "checked twice"
    notes = gpd.GeoDataFrame(pd.concat([points.assign(note=None), noted]), crs=points.crs)
    notes.to_file(tmp_path / "notes.gpkg", layer="reference", driver="GPKG")
    with pytest.warns(SampleDesignWarning, match=r"repeat another point's place"):
        kept = api.evaluate(labels, fine=tmp_path / "notes.gpkg", bootstrap=0)
    assert kept["fine"]["pixels"] == kept["fine"]["area"]["map_scores"]["points"]
    assert kept["fine"]["pixels"] == once["fine"]["pixels"]


def test_points_on_the_scored_map_s_nodata_are_said_and_still_weigh(tmp_path):
    """A sample of NLCD scores a copy of NLCD with a band of nodata: the points there are
    not scored (said), and the areas, from the sample's strata, are still NLCD's."""
    import shutil

    nlcd = shared_file("zion/nlcd2011_level2.tif")
    l1 = shared_file("zion/nlcd2011_level1.tif")
    out, _ = _nlcd_sample(tmp_path)
    holed = tmp_path / "holed.tif"
    shutil.copy(nlcd, holed)
    with rasterio.open(holed, "r+") as dst:
        data = dst.read(1)
        data[:300] = 255
        dst.write(data, 1)
    with pytest.warns(SampleDesignWarning, match=r"points lie outside .* or on its nodata"):
        metrics = api.evaluate(holed, coarse=out, taxonomy=NLCD_YAML, bootstrap=0)
    assert metrics["sample_points_off_map"] > 0
    with rasterio.open(l1) as src:
        truth = src.read(1)
    for name, c in metrics["coarse"]["area"]["classes"].items():
        assert c["estimated"] == pytest.approx((truth == int(name.split()[0])).sum() * 900)


def test_codes_outside_the_taxonomy_are_not_sampled_and_counted(tmp_path):
    codes = np.full((40, 50), 42, np.uint8)
    codes[:10] = 11
    codes[30:, :5] = 99  # not an NLCD class
    path = write_raster(tmp_path / "m.tif", codes, nodata=255)
    with pytest.warns(UnknownMapCodeWarning, match=r"50 pixels hold codes .*\(99 \(50 px\)\)"):
        points = draw_sample(path, per_class=10, taxonomy=NLCD_YAML)
    assert set(points["map_fine_code"]) == {11, 42}
    coarse_only = write_raster(tmp_path / "c.tif", np.full((20, 20), 4, np.uint8), nodata=255)
    points = draw_sample(coarse_only, per_class=5, taxonomy=NLCD_YAML, level="coarse")
    assert set(points["map_coarse_code"]) == {4} and points["map_fine_code"].isna().all()


@pytest.mark.filterwarnings("ignore::geoseg.errors.SeenPixelsWarning")  # the whole Zion map
def test_a_partly_labelled_sample_and_the_labels_work_are_handled_with_care(
    zion_prediction, tmp_path
):
    from geoseg.errors import UnlabelledFeaturesWarning

    l1 = shared_file("zion/nlcd2011_level1.tif")
    labels = str(zion_prediction / "labels.tif")
    out = tmp_path / "ref.gpkg"
    runner = CliRunner()
    assert (
        runner.invoke(cli, ["sample", labels, "--out", str(out), "--per-class", "30"]).exit_code
        == 0
    )
    # evaluated as it came out: no point is labelled yet
    res = runner.invoke(
        cli, ["evaluate", labels, "--coarse", str(out), "--out", str(tmp_path / "e0")]
    )
    assert res.exit_code == 1 and "all are empty: label them" in res.output
    points = gpd.read_file(out)
    with rasterio.open(l1) as src:
        codes = [int(v[0]) for v in src.sample([(p.x, p.y) for p in points.geometry])]
    points["coarse_code"] = [c if i % 3 else None for i, c in enumerate(codes)]  # a third left
    points.to_file(out, layer="reference")  # as QGIS edits it, in place
    with pytest.warns(UnlabelledFeaturesWarning, match=r"80 of 240 truth features have no class"):
        res = runner.invoke(
            cli, ["evaluate", labels, "--coarse", str(out), "--out", str(tmp_path / "e")]
        )
    assert res.exit_code == 0, res.output
    md = (tmp_path / "e" / "metrics.md").read_text()
    assert "interval of the stratified estimator (Korn-Graubard: Clopper-Pearson" in md
    assert "Area-weighted overall accuracy: **0." in md
    # the labels are work: --overwrite does not throw them away
    again = runner.invoke(cli, ["sample", labels, "--out", str(out), "--overwrite"])
    assert again.exit_code == 1 and "160 of its points carry reference labels" in again.output
    # nor does vectorize's, before it polygonises anything
    polys = runner.invoke(cli, ["vectorize", labels, "--out", str(out), "--overwrite"])
    assert polys.exit_code == 1 and "160 of its points carry reference labels" in polys.output
    assert gpd.read_file(out)["coarse_code"].notna().sum() == 160
    # labels under a field name of the user's: kept too (the blind test lost 1,681 so)
    own = tmp_path / "own.gpkg"
    points = gpd.read_file(out)
    points["coarse_code"] = None
    points["ref_class"] = 42
    points.to_file(own, layer="reference")
    again = runner.invoke(cli, ["sample", labels, "--out", str(own), "--overwrite"])
    assert again.exit_code == 1 and "field ref_class that geoseg sample does not" in again.output
    assert (gpd.read_file(own)["ref_class"] == 42).all()


def test_a_level_the_codes_are_not_of_and_a_raster_taxonomy_are_refused(tmp_path):
    from geoseg.errors import ConfigError

    coarse = shared_file("zion/nlcd2011_level1.tif")
    with pytest.raises(ConfigError, match="pass --level coarse"):
        draw_sample(coarse, taxonomy=NLCD_YAML, level="fine")
    with pytest.raises(ConfigError, match="not a text file"):
        draw_sample(coarse, taxonomy=coarse)


def test_a_leaf_coarse_class_has_no_fine_name_as_in_the_polygons(tmp_path):
    """Slovenian Water has no fine classes: its points' map_fine_code and map_fine_name
    are NULL (the name was an empty string, which 'IS NULL' filters miss)."""
    from .conftest import ROOT

    tax_path = ROOT / "configs" / "taxonomy" / "slovenia.yaml"
    tax = load_taxonomy(tax_path)
    coarse = np.full((20, 20), 1, np.uint16)
    fine = np.full((20, 20), 1100, np.uint16)
    coarse[:10], fine[:10] = 5, tax.nodata  # Water: a leaf of its own
    labels = write_raster(tmp_path / "l.tif", np.stack([coarse, fine]), nodata=tax.nodata)
    points = draw_sample(labels, per_class=5, seed=1, taxonomy=tax_path)
    water = points[points["map_coarse_code"] == 5]
    assert len(water) == 5 and water["map_fine_code"].isna().all()
    assert water["map_fine_name"].isna().all()
    assert (points.loc[points["map_coarse_code"] == 1, "map_fine_name"] == "Arable Land").all()


@pytest.mark.filterwarnings("ignore::geoseg.errors.SeenPixelsWarning")  # the whole Zion map
def test_fine_strata_draw_within_every_fine_class_and_score_every_one(zion_prediction, tmp_path):
    """--strata fine: each mapped fine class its own stratum (by area, at least
    --per-class), so the fine level's estimates hold every class the map labels: drawn
    within the coarse classes, Developed Medium Intensity (75 px) got no point."""
    _, fine, _ = _map(zion_prediction)
    labels = zion_prediction / "labels.tif"
    out = tmp_path / "fine.gpkg"
    args = ["sample", str(labels), "--out", str(out), "--total", "1500", "--per-class", "50"]
    res = CliRunner().invoke(cli, [*args, "--strata", "fine"])
    assert res.exit_code == 0, res.output
    assert "1814 points in 12 fine classes" in res.output
    points = gpd.read_file(out)
    codes, sizes = np.unique(fine[fine != 255], return_counts=True)
    want = allocation(dict(zip(codes.tolist(), sizes.tolist(), strict=True)), 1500, 50)
    assert points["stratum"].value_counts().to_dict() == want
    assert (points["stratum"] == points["map_fine_code"]).all()
    for code, size in zip(codes.tolist(), sizes.tolist(), strict=True):  # UTM: 900 m² each
        area = points.loc[points["stratum"] == code, "stratum_area"].unique()
        assert area == pytest.approx([size * 900.0], rel=1e-9)
    # labelled from NLCD and scored: every mapped fine class in the fine means
    xy = [(p.x, p.y) for p in points.geometry]
    for field, k in (("coarse_code", 1), ("fine_code", 2)):
        with rasterio.open(shared_file(f"zion/nlcd2011_level{k}.tif")) as src:
            points[field] = [int(v[0]) for v in src.sample(xy)]
    points.to_file(tmp_path / "labelled.gpkg")
    truth = tmp_path / "labelled.gpkg"
    scored = api.evaluate(labels, coarse=truth, fine=truth, bootstrap=0)
    fine_scores = scored["fine"]["area"]["map_scores"]
    assert fine_scores["classes_unseen"] == []
    assert "23 Developed Medium Intensity" in fine_scores["per_class"]
    census = api.evaluate(labels, coarse=shared_file("zion/nlcd2011_level1.tif"),
                          fine=shared_file("zion/nlcd2011_level2.tif"), bootstrap=0)  # fmt: skip
    for level in ("coarse", "fine"):  # both levels weighed by the fine strata
        area = scored[level]["area"]
        assert area["strata"] == "the sample's own (Stehman 2014)"
        lo, hi = area["overall_accuracy_ci95"]
        assert lo <= census[level]["overall_accuracy"] <= hi, level


def test_fine_strata_need_fine_codes_that_are_not_coarse_codes(tmp_path):
    """A point's stratum is its code: a taxonomy whose fine and coarse codes overlap
    cannot have fine strata; nor one without fine classes."""
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(SHARED_CODES))
    fine = write_raster(tmp_path / "f.tif", np.full((1, 8, 8), 3, np.uint8), nodata=0)
    with pytest.raises(ConfigError, match=r"fine code 1 is a coarse code too"):
        draw_sample(fine, taxonomy=tmp_path / "s.yaml", level="fine", strata="fine")
    assert len(draw_sample(fine, taxonomy=tmp_path / "s.yaml", level="fine", per_class=5)) == 5
    coarse_only = load_taxonomy(NLCD_YAML).to_dict()
    coarse_only["fine"] = []
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(coarse_only))
    codes = write_raster(tmp_path / "c.tif", np.full((1, 8, 8), 4, np.uint8), nodata=255)
    with pytest.raises(ConfigError, match=r"has no fine classes"):
        draw_sample(codes, taxonomy=tmp_path / "c.yaml", strata="fine")


@pytest.mark.filterwarnings("ignore::geoseg.errors.SeenPixelsWarning")  # the whole Zion map
@pytest.mark.filterwarnings("ignore::geoseg.errors.UnlabelledFeaturesWarning")  # blanked
@pytest.mark.filterwarnings("ignore::geoseg.errors.SampleDesignWarning")  # off the crop
def test_the_map_s_scores_follow_the_region_and_say_when_they_are_missing(
    zion_prediction, tmp_path
):
    """A blind test's findings: --checkerboard left the map's scores on every point; a
    stratum without a labelled point left the points' own scores on the console line
    unmarked; --bootstrap 0 still ran 1000 replicates; a map over part of the sampled
    region was not said to be."""
    out, points = _nlcd_sample(tmp_path)
    labels = zion_prediction / "labels.tif"
    whole = api.evaluate(labels, fine=out, bootstrap=0)
    assert whole["fine"]["area"]["map_scores"]["miou_ci95"] == [None, None]  # none asked
    with pytest.warns(SampleDesignWarning, match=r"outside the checkerboard's test blocks"):
        half = api.evaluate(labels, fine=out, bootstrap=0, checkerboard=128)
    for level in ("coarse", "fine"):
        ms = half[level]["area"]["map_scores"]
        assert ms["points"] == half[level]["pixels"] < whole[level]["pixels"]
        # the areas are still the whole region's: every point's stratum weighs
        assert half[level]["area"]["total"] == whole[level]["area"]["total"]
    # one stratum's points unlabelled: no map scores, and the console says whose they are
    blank = points.copy()
    blank.loc[blank["stratum"] == blank["stratum"].iloc[0], ["coarse_code", "fine_code"]] = None
    blank.to_file(tmp_path / "blank.gpkg", layer="reference", driver="GPKG")
    args = ["evaluate", str(labels), "--fine", str(tmp_path / "blank.gpkg"), "--out"]
    res = CliRunner().invoke(cli, [*args, str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert res.output.count("the points' own, each alike: the map's are not estimated") == 2
    md = (tmp_path / "r" / "metrics.md").read_text()
    assert "The map's scores are not estimated at the coarse level (" in md
    # a map over part of the region the sample was drawn in: said beside its areas
    with rasterio.open(labels) as src:
        profile, data, tags = src.profile, src.read(), src.tags()
        top = rasterio.windows.Window(0, 0, src.width, src.height // 2)
        profile.update(height=src.height // 2, transform=src.window_transform(top))
    crop = tmp_path / "top.tif"
    with rasterio.open(crop, "w", **profile) as dst:
        dst.write(data[:, : src.height // 2])
        dst.update_tags(**tags)
    res = CliRunner().invoke(cli, ["evaluate", str(crop), "--fine", str(out), "--out",
                                   str(tmp_path / "c")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "of the region the sample was drawn in" in (tmp_path / "c" / "metrics.md").read_text()


def test_review_edges_of_fine_strata_and_of_samples_without_fine_areas(tmp_path):
    """From a review: --strata fine on a map of coarse codes only drew coarse strata
    and called them fine; coarse strata were named by a fine class of the same code;
    a taxonomy with coarse classes without fine classes (Slovenia's Water) has no fine
    areas, and its fine level's figures, the points' own, were neither said nor
    counted in points."""
    from geoseg.report import markdown

    from .conftest import ROOT

    tax_path = ROOT / "configs" / "taxonomy" / "slovenia.yaml"
    tax = load_taxonomy(tax_path)
    coarse_only = write_raster(tmp_path / "c.tif", np.full((1, 8, 8), 2, np.uint16), nodata=0)
    with pytest.raises(ConfigError, match=r"the map \(its coarse codes only\) has no fine"):
        draw_sample(coarse_only, taxonomy=tax_path, level="coarse", strata="fine")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(SHARED_CODES))
    codes = np.where(np.arange(64).reshape(8, 8) < 32, 1, 3).astype(np.uint8)
    fine_map = write_raster(tmp_path / "f.tif", codes[None], nodata=0)
    planned = api.sample(fine_map, taxonomy=tmp_path / "s.yaml", level="fine", per_class=5,
                         target_se=0.2)  # fmt: skip
    assert set(planned.attrs["plan"]["expected_accuracy"]) == {"A", "B"}  # not "a"
    # Slovenia: Arable Land (fine) and Water (coarse only), drawn within fine strata
    coarse = np.full((20, 20), 1, np.uint16)
    fine = np.full((20, 20), 1100, np.uint16)
    coarse[:10], fine[:10] = 5, tax.nodata
    labels = write_raster(tmp_path / "l.tif", np.stack([coarse, fine]), nodata=tax.nodata)
    points = draw_sample(labels, per_class=5, seed=1, taxonomy=tax_path, strata="fine")
    assert sorted(points["stratum"].unique().tolist()) == [5, 1100]
    points["coarse_code"], points["fine_code"] = points["map_coarse_code"], points["map_fine_code"]
    points.to_file(tmp_path / "p.gpkg", layer="reference", driver="GPKG")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = api.evaluate(labels, coarse=tmp_path / "p.gpkg", fine=tmp_path / "p.gpkg",
                              taxonomy=tax_path, bootstrap=0)  # fmt: skip
    assert "map_scores" in result["coarse"]["area"] and "area" not in result["fine"]
    md = markdown(result)
    assert "The map's scores are not estimated at the fine level (the taxonomy has" in md
    assert "| truth points |" in md and "| truth pixels |" not in md
