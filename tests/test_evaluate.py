import json
import shutil
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
import yaml
from click.testing import CliRunner
from rasterio.transform import from_origin

from geoseg.cli import cli
from geoseg.errors import (
    ConfigError,
    InconsistentTruthWarning,
    RasterFormatError,
    TaxonomyMismatchWarning,
    UnknownCodeWarning,
    UnscoredLevelWarning,
)
from geoseg.evaluate import (
    BLOCKS,
    add_confidence,
    check_bundle_split,
    combine,
    evaluate_labels,
    require_scored,
)
from geoseg.map_reading import load_scoring_taxonomy
from geoseg.metrics import cohen_kappa
from geoseg.report import write_report
from geoseg.taxonomy import Taxonomy

from .conftest import NLCD_YAML, ROOT, write_raster

TAX = Taxonomy.from_dict(
    {
        "name": "toy",
        "nodata": 255,
        "coarse": [{"code": 1, "name": "Forest"}, {"code": 2, "name": "Water"}],
        "fine": [
            {"code": 11, "name": "Deciduous", "parent": 1},
            {"code": 12, "name": "Evergreen", "parent": 1},
        ],
    }
)


def _labels(path, coarse, fine, conf=None, **kw):
    conf = np.full(coarse.shape, 50, np.uint8) if conf is None else conf
    write_raster(path, np.stack([coarse, fine, conf]).astype(np.uint8), nodata=255, **kw)
    with rasterio.open(path, "r+") as dst:
        dst.update_tags(GEOSEG_TAXONOMY=json.dumps(TAX.to_dict()))
    return path


@pytest.fixture
def case(tmp_path):
    # 2 x 4 pixels; the last column of the prediction is nodata, one truth pixel is nodata
    pc = np.array([[1, 1, 2, 255], [1, 2, 2, 255]])
    pf = np.array([[11, 12, 255, 255], [11, 255, 255, 255]])
    tc = np.array([[1, 1, 2, 1], [2, 255, 2, 1]], np.uint8)
    tf = np.array([[11, 11, 255, 12], [255, 255, 255, 12]], np.uint8)
    pred = _labels(tmp_path / "labels.tif", pc, pf)
    c = write_raster(tmp_path / "c.tif", tc, nodata=255)
    f = write_raster(tmp_path / "f.tif", tf, nodata=255)
    return pred, c, f


def test_metrics_match_a_hand_computed_confusion_matrix(case):
    pred, c, f = case
    r = evaluate_labels(pred, coarse_truth=c, fine_truth=f)
    # coarse pixels valid in both: (0,0) F->F, (0,1) F->F, (0,2) W->W, (1,0) W->F, (1,2) W->W
    assert r["coarse"]["confusion_matrix"] == [[2, 0], [1, 2]]
    assert r["coarse"]["overall_accuracy"] == pytest.approx(4 / 5)
    # IoU forest 2/(2+3-2)=2/3, water 2/(3+2-2)=2/3
    assert r["coarse"]["miou"] == pytest.approx(2 / 3)
    assert r["coarse"]["per_class"]["1 Forest"]["precision"] == pytest.approx(2 / 3)
    assert r["coarse"]["per_class"]["2 Water"]["recall"] == pytest.approx(2 / 3)
    assert r["coarse"]["per_class"]["2 Water"]["f1"] == pytest.approx(0.8)
    # p_o = 0.8; p_e = (3*2 + 2*3)/25 = 0.48; kappa = 0.32/0.52
    assert r["coarse"]["kappa"] == pytest.approx(0.32 / 0.52)
    # fine pixels valid in both: (0,0) 11->11, (0,1) 11->12; the last row and column
    # are the childless-coarse predictions (water), none on a fine-labelled pixel here
    assert r["fine"]["confusion_matrix"] == [[1, 1, 0], [0, 0, 0], [0, 0, 0]]
    assert r["fine"]["miou"] == pytest.approx((1 / 2 + 0) / 2)
    # the prediction's hierarchy is consistent (water is childless -> no fine)
    assert r["hierarchy_consistency"] == 1.0


def test_a_fine_truth_predicted_as_a_childless_coarse_class_is_a_miss(tmp_path):
    """Water has no fine classes, so a pixel predicted water has no fine label; where the
    truth has a fine class that is an error, not a pixel left out of the fine scores."""
    pc = np.array([[1, 1, 2, 2]])
    pf = np.array([[11, 11, 255, 255]])
    tf = np.array([[11, 11, 11, 255]], np.uint8)  # the third pixel: deciduous, predicted water
    pred = _labels(tmp_path / "l.tif", pc, pf)
    r = evaluate_labels(pred, fine_truth=write_raster(tmp_path / "f.tif", tf, nodata=255))
    assert r["fine"]["confusion_matrix"] == [[2, 0, 1], [0, 0, 0], [0, 0, 0]]
    assert r["fine"]["classes"][-1].startswith("(no fine class")
    deciduous = r["fine"]["per_class"]["11 Deciduous"]
    assert deciduous["iou"] == pytest.approx(2 / 3) and deciduous["recall"] == pytest.approx(2 / 3)
    assert r["fine"]["overall_accuracy"] == pytest.approx(2 / 3)
    assert r["fine"]["miou"] == pytest.approx(2 / 3)  # the extra column is not a class
    assert set(r["fine"]["per_class"]) == {"11 Deciduous"}
    pooled = combine([r, r], prediction="two")
    assert pooled["fine"]["miou"] == pytest.approx(2 / 3)


def test_fine_truth_alone_implies_coarse_truth(case):
    pred, _, f = case
    r = evaluate_labels(pred, fine_truth=f)
    # coarse truth from fine: (0,0) F, (0,1) F -> both predicted forest
    assert r["coarse"]["confusion_matrix"] == [[2, 0], [0, 0]]


def test_inconsistent_prediction_is_reported(tmp_path):
    pc = np.array([[2, 1]])
    pf = np.array([[11, 11]])  # 11 is a child of forest, not water
    pred = _labels(tmp_path / "l.tif", pc, pf)
    t = write_raster(tmp_path / "t.tif", np.array([[1, 1]], np.uint8), nodata=255)
    assert evaluate_labels(pred, coarse_truth=t)["hierarchy_consistency"] == 0.5


def test_checkerboard_scores_only_odd_blocks(tmp_path):
    h = w = 8
    truth = np.ones((h, w), np.uint8)
    rows, cols = np.mgrid[0:h, 0:w]
    odd = (rows // 4 + cols // 4) % 2 == 1
    pc = np.where(odd, 1, 2)  # right on the test blocks, wrong elsewhere
    pf = np.where(odd, 11, 255)
    pred = _labels(tmp_path / "l.tif", pc, pf)
    t = write_raster(tmp_path / "t.tif", truth, nodata=255)
    assert evaluate_labels(pred, coarse_truth=t)["coarse"]["overall_accuracy"] == 0.5
    r = evaluate_labels(pred, coarse_truth=t, checkerboard=4, strip_rows=3)
    assert r["coarse"]["overall_accuracy"] == 1.0 and r["coarse"]["pixels"] == 32
    # the two test blocks are the bootstrap's units (strips of 3 rows cut across them)
    blocks = r["coarse"][BLOCKS]
    assert (
        blocks.shape == (2, 2, 2) and (blocks.sum(axis=0) == r["coarse"]["confusion_matrix"]).all()
    )
    assert (blocks[:, 0, 0] == 16).all()


def test_bootstrap_intervals_reach_the_report_and_pool_over_scenes(tmp_path):
    h = w = 8
    rows, cols = np.mgrid[0:h, 0:w]
    truth = np.where(cols < 4, 1, 2).astype(np.uint8)
    pc = np.where((rows // 2 + cols // 2) % 2 == 0, truth, 3 - truth)  # blocks differ
    pred = _labels(tmp_path / "l.tif", pc, np.where(pc == 1, 11, 255))
    t = write_raster(tmp_path / "t.tif", truth, nodata=255)
    out = tmp_path / "r"
    r = _cli(pred, "--coarse", t, "--out", out, "--bootstrap", 300)
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    ci = m["coarse"]["confidence"]
    assert ci["blocks"] == 1 and ci["miou"] == [None, None]  # one 128 px block: no interval
    res = evaluate_labels(pred, coarse_truth=t, block=2)
    assert res["coarse"][BLOCKS].shape == (16, 2, 2)
    add_confidence(res, replicates=300)
    lo, hi = res["coarse"]["confidence"]["miou"]
    assert lo < res["coarse"]["miou"] < hi and res["coarse"]["confidence"]["block_size"] == 2
    pooled = combine([res, res], prediction="two")
    assert pooled["coarse"][BLOCKS].shape == (32, 2, 2)
    add_confidence(pooled, replicates=300)
    p_lo, p_hi = pooled["coarse"]["confidence"]["miou"]
    assert p_hi - p_lo < hi - lo  # twice the blocks: a narrower interval
    write_report(pooled, tmp_path / "pooled")
    public = json.loads((tmp_path / "pooled" / "metrics.json").read_text())
    assert BLOCKS not in public["coarse"] and public["coarse"]["confidence"]["blocks"] == 32
    md = (tmp_path / "pooled" / "metrics.md").read_text()
    assert f"| coarse | {pooled['coarse']['miou']:.3f} [{p_lo:.3f}, {p_hi:.3f}] |" in md
    assert "interval (300 resamplings of the 32 scored blocks of up to 2 px, each" in md
    assert "these intervals say little" not in md
    pooled["coarse"]["confidence"]["blocks"] = 4  # as 2 test chips cut into blocks give
    write_report(pooled, tmp_path / "few")
    assert (
        "With 4 blocks these intervals say little" in (tmp_path / "few" / "metrics.md").read_text()
    )
    r = _cli(pred, "--coarse", t, "--out", tmp_path / "r0", "--bootstrap", 0)
    assert r.exit_code == 0, r.output
    assert "confidence" not in json.loads((tmp_path / "r0" / "metrics.json").read_text())["coarse"]


def test_grid_mismatch_is_a_clear_error_and_align_resamples(tmp_path):
    pc = np.array([[1, 2], [2, 1]])
    pf = np.array([[11, 255], [255, 12]])
    pred = _labels(tmp_path / "l.tif", pc, pf, transform=from_origin(300000, 4100000, 30, 30))
    # the truth at 15 m: each prediction pixel is 2 x 2 truth pixels
    fine = np.kron(np.array([[11, 255], [255, 12]]), np.ones((2, 2))).astype(np.uint8)
    t = write_raster(
        tmp_path / "t.tif", fine, nodata=255, transform=from_origin(300000, 4100000, 15, 15)
    )
    with pytest.raises(RasterFormatError, match="--align") as err:
        evaluate_labels(pred, fine_truth=t)
    assert "t.tif" in str(err.value) and "\n" not in str(err.value)
    # sizes named as width and height, like the other commands' grid errors
    assert "4 wide x 4 high instead of 2 wide x 2 high" in str(err.value)
    r = evaluate_labels(pred, fine_truth=t, align=True)
    assert r["fine"]["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]
    other_crs = write_raster(tmp_path / "u.tif", np.ones((2, 2), np.uint8), crs="EPSG:32613")
    with pytest.raises(RasterFormatError, match=r"another grid.*in EPSG:32613 instead of"):
        evaluate_labels(pred, coarse_truth=other_crs)
    # resampled, truth far from the prediction says so (not "all nodata")
    with pytest.raises(RasterFormatError, match=r"u\.tif: truth does not overlap the predic"):
        evaluate_labels(pred, coarse_truth=other_crs, align=True)
    # truth with no nodata value covering the first column only: the second column is
    # not scored (it is not read as code 0)
    half = write_raster(tmp_path / "half.tif", np.array([[1], [2]], np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning about an unknown code 0
        r = evaluate_labels(pred, coarse_truth=half, align=True)
    assert r["coarse"]["pixels"] == 2 and r["coarse"]["overall_accuracy"] == 1.0


def test_truth_without_georeferencing_is_pixel_aligned_as_in_training(tmp_path):
    import warnings

    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.transform import Affine

    pred = _labels(tmp_path / "l.tif", np.array([[1, 2], [2, 1]]), np.full((2, 2), 255))
    with warnings.catch_warnings():  # rasterio warns that it writes no geotransform
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        bare = write_raster(
            tmp_path / "bare.tif",
            np.array([[1, 2], [1, 1]], np.uint8),
            crs=None,
            nodata=255,
            transform=Affine.identity(),
        )
    r = evaluate_labels(pred, coarse_truth=bare)  # no warning (they are errors here)
    assert r["coarse"]["confusion_matrix"] == [[2, 1], [0, 1]]
    with pytest.raises(RasterFormatError, match="no CRS, so it cannot be resampled"):
        evaluate_labels(pred, coarse_truth=write_raster(
            tmp_path / "nocrs.tif", np.ones((3, 3), np.uint8), crs=None, nodata=255
        ), align=True)  # fmt: skip


def test_a_coarse_only_prediction_scores_its_coarse_level(tmp_path):
    """A bundle trained without fine labels predicts no fine level: its fine truth is
    skipped with a warning, and fine truth alone is an error naming the fix."""
    coarse_only = Taxonomy.from_dict({**TAX.to_dict(), "fine": []})
    pred = write_raster(
        tmp_path / "l.tif",
        np.stack([np.array([[1, 2]]), np.full((1, 2), 255), np.full((1, 2), 50)]).astype(np.uint8),
        nodata=255,
    )
    with rasterio.open(pred, "r+") as dst:
        dst.update_tags(GEOSEG_TAXONOMY=json.dumps(coarse_only.to_dict()))
    c = write_raster(tmp_path / "c.tif", np.array([[1, 1]], np.uint8), nodata=255)
    f = write_raster(tmp_path / "f.tif", np.array([[11, 12]], np.uint8), nodata=255)
    with pytest.warns(UnscoredLevelWarning, match="coarse classes only"):
        r = evaluate_labels(pred, coarse_truth=c, fine_truth=f)
    assert "fine" not in r and r["coarse"]["confusion_matrix"] == [[1, 1], [0, 0]]
    add_confidence(r)
    write_report(r, tmp_path / "rep")
    with pytest.raises(RasterFormatError, match="pass --coarse truth"):
        evaluate_labels(pred, fine_truth=f)


def test_not_geoseg_labels(tmp_path):
    plain = write_raster(tmp_path / "p.tif", np.ones((2, 2), np.uint8))
    with pytest.raises(RasterFormatError, match=r"not a geoseg labels\.tif"):
        evaluate_labels(plain, coarse_truth=plain)


def test_combine_pools_confusion_matrices(case):
    pred, c, f = case
    one = evaluate_labels(pred, coarse_truth=c, fine_truth=f)
    both = combine([one, one], prediction="x")
    assert np.array_equal(
        np.array(both["coarse"]["confusion_matrix"]),
        2 * np.array(one["coarse"]["confusion_matrix"]),
    )
    assert both["coarse"]["miou"] == pytest.approx(one["coarse"]["miou"])


def test_kappa_extremes():
    assert cohen_kappa(np.eye(3) * 5) == 1.0
    assert cohen_kappa(np.array([[5, 5], [5, 5]])) == pytest.approx(0.0)


def test_evaluate_cli_writes_the_report(case, tmp_path):
    pred, c, f = case
    out = tmp_path / "report"
    args = ["evaluate", str(pred), "--coarse", str(c), "--fine", str(f), "--out", str(out)]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["coarse"]["confusion_matrix"] == [[2, 0], [1, 2]]
    md = (out / "metrics.md").read_text()
    assert "| coarse | 0.667 | 0.800 |" in md and "| 2 Water |" in md
    for lvl in ("coarse", "fine"):
        assert (out / f"confusion_{lvl}.png").stat().st_size > 5000
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 1 and "--overwrite" in r.output
    t = write_raster(tmp_path / "t.tif", np.ones((3, 3), np.uint8), nodata=255)
    r = CliRunner().invoke(
        cli, ["evaluate", str(pred), "--coarse", str(t), "--out", str(tmp_path / "r2")]
    )
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1, r.output
    assert "--align" in r.output and not (tmp_path / "r2").exists()


def test_the_report_gives_the_maps_areas_error_adjusted(case, tmp_path):
    """The whole map's class areas (nodata left out), corrected by the scored pixels."""
    pred, c, f = case
    r = evaluate_labels(pred, coarse_truth=c, fine_truth=f)
    area = r["coarse"]["area"]
    # 6 valid map pixels of 30 m: forest 3, water 3; of the scored ones, those mapped
    # forest are 2 forest and 1 water, those mapped water 2 water
    assert area["unit"] == "m2" and area["total"] == pytest.approx(6 * 900)
    forest, water = area["classes"]["1 Forest"], area["classes"]["2 Water"]
    assert forest["mapped"] == pytest.approx(3 * 900) and water["mapped"] == pytest.approx(2700)
    assert forest["estimated"] == pytest.approx(2700 * 2 / 3)
    assert water["estimated"] == pytest.approx(2700 * (1 / 3 + 1))
    # Water has no fine classes, so fine truth leaves its pixels out: no fine areas
    assert "area" not in r["fine"] and "coarse level" in r["fine"]["area_not_estimated"]
    pooled = combine([r, r], prediction="twice")
    assert pooled["coarse"]["area"]["total"] == pytest.approx(2 * 6 * 900)
    other = {**r, "area_unit": "pixels"}  # a scene without CRS: pixels, not m²
    assert "do not add" in combine([r, other], prediction="x")["coarse"]["area_not_estimated"]
    out = tmp_path / "report"
    write_report(r, out)
    md = (out / "metrics.md").read_text()
    assert "| 1 Forest | 0.27 | 0.18 |" in md  # hectares: the map is 0.54 ha
    assert "Areas are not estimated: the taxonomy has coarse classes without" in md
    assert "mapped_area" not in (out / "metrics.json").read_text()


def test_metrics_json_records_absolute_paths(case, tmp_path, monkeypatch):
    pred, c, f = case
    monkeypatch.chdir(tmp_path)
    args = ["evaluate", pred.name, "--coarse", c.name, "--fine", "./f.tif", "--out", "rel"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "rel" / "metrics.json").read_text())
    assert m["prediction"] == str(pred.resolve())
    assert m["truth"] == {"coarse": str(c.resolve()), "fine": str(f.resolve())}


@pytest.fixture(scope="module")
def zion_eval(zion_prediction):
    """geoseg evaluate on the committed bundle's Zion labels, odd checkerboard blocks only."""
    from .conftest import ZION_BUNDLE, shared_file

    scene = shared_file("zion/landsat8_b2345.tif")
    out = zion_prediction
    r = evaluate_labels(
        out / "labels.tif",
        coarse_truth=scene.parent / "nlcd2011_level1.tif",
        fine_truth=scene.parent / "nlcd2011_level2.tif",
        checkerboard=128,
    )
    return r, json.loads((ZION_BUNDLE / "bundle.json").read_text())


def test_committed_zion_bundle_beats_the_random_forest(zion_eval):
    r, meta = zion_eval
    # the per-pixel random forest on the same split: 0.311 / 0.211 (../shared/data/README.md)
    assert r["coarse"]["miou"] > 0.311 and r["fine"]["miou"] > 0.211
    assert r["hierarchy_consistency"] == 1.0
    assert r["coarse"]["pixels"] == 799_776  # every odd-block pixel is labelled
    # the scores recorded in the bundle are the ones geoseg predict + evaluate give
    test = meta["metrics"]["test"]
    assert r["coarse"]["miou"] == pytest.approx(test["coarse"]["miou"], abs=2e-3)
    assert r["fine"]["miou"] == pytest.approx(test["fine"]["miou"], abs=2e-3)


def test_zion_test_score_interval_covers_its_54_test_blocks(zion_eval):
    r, _ = zion_eval
    res = {lvl: dict(r[lvl]) for lvl in ("coarse", "fine")} | {
        "bootstrap_block": r["bootstrap_block"]
    }
    add_confidence(res, replicates=500)
    for lvl in ("coarse", "fine"):
        ci = res[lvl]["confidence"]
        assert ci["blocks"] == 54 and ci["block_size"] == 128
        assert ci["miou"][0] < r[lvl]["miou"] < ci["miou"][1]
        assert 0.02 < ci["miou"][1] - ci["miou"][0] < 0.2


def test_zion_areas_estimated_from_the_test_blocks_come_near_the_true_areas(zion_eval):
    """Zion's labels cover the whole scene, so each class's true area is known: the areas
    error-adjusted from the test blocks alone must come far nearer it than the map's own,
    and each class's block-bootstrap interval must hold it."""
    import copy

    import rasterio

    from .conftest import shared_file

    r, _ = zion_eval
    res = copy.deepcopy({lvl: r[lvl] for lvl in ("coarse", "fine")})
    add_confidence(res | {"bootstrap_block": r["bootstrap_block"]}, replicates=1000)
    for lvl, name in (("coarse", "nlcd2011_level1.tif"), ("fine", "nlcd2011_level2.tif")):
        with rasterio.open(shared_file(f"zion/{name}")) as src:
            truth = src.read(1)
        area = res[lvl]["area"]
        assert area["unit"] == "m2" and area["total"] == pytest.approx(1128 * 1428 * 900)
        off_map = off_estimate = 0.0
        for cls, c in area["classes"].items():
            true = float((truth == int(cls.split()[0])).sum() * 900)
            off_map += abs(c["mapped"] - true)
            off_estimate += abs(c["estimated"] - true)
            lo, hi = c["ci95_bootstrap"]
            assert lo <= true <= hi, cls
        # measured: 63.5 -> 9.8 km² at level 1, 161 -> 16 km² at level 2
        assert off_estimate < off_map / 4, lvl


@pytest.mark.xfail(
    strict=True,
    reason="issue 3 target (random forest + 0.05 on both levels) not reached yet: "
    "see the README's Zion section",
)
def test_committed_zion_bundle_reaches_the_issue_3_target(zion_eval):
    r, _ = zion_eval
    assert r["coarse"]["miou"] >= 0.361
    assert r["fine"]["miou"] >= 0.261


# ------------------------------------------------------- evaluations that score nothing
def _cli(*args):
    return CliRunner().invoke(cli, ["evaluate", *map(str, args)])


def _one_line_error(r, *needles):
    assert r.exit_code == 1, r.output
    lines = r.output.strip().splitlines()
    assert lines[-1].startswith("geoseg: error:"), r.output
    for n in needles:
        assert n in lines[-1], r.output


def test_no_test_block_in_the_split_is_an_error_and_writes_nothing(case, tmp_path):
    pred, c, f = case
    r = evaluate_labels(pred, coarse_truth=c, fine_truth=f, checkerboard=16)
    assert r["coarse"]["pixels"] == 0 and r["pixel_counts"]["test_pixels"] == 0
    with pytest.raises(ConfigError, match="no test block") as err:
        require_scored(r)
    assert "4 wide x 2 high" in str(err.value) and "--checkerboard" in str(err.value)
    out = tmp_path / "r"
    with pytest.raises(ConfigError):
        write_report(r, out)
    assert not out.exists() and not list(tmp_path.glob(".r.*"))
    res = _cli(pred, "--fine", f, "--checkerboard", 16, "--out", out)
    _one_line_error(res, "no test block", "4 wide x 2 high")
    assert not out.exists()


def test_truth_codes_of_another_taxonomy_are_an_error(case, tmp_path):
    pred, _, _ = case
    other = write_raster(tmp_path / "nlcd.tif", np.full((2, 4), 41, np.uint8), nodata=255)
    with pytest.warns(
        UnknownCodeWarning, match=r"8 of 8 labelled pixels \(100.0%\) hold codes 41 that"
    ):
        r = evaluate_labels(pred, fine_truth=other)
    with pytest.raises(
        RasterFormatError,
        match=r"no truth code of .*nlcd\.tif is a fine code of taxonomy toy \(codes found: \[41\]",
    ) as err:
        require_scored(r)
    assert "nlcd.tif" in str(err.value) and "\n" not in str(err.value)
    with pytest.warns(UnknownCodeWarning):
        res = _cli(pred, "--fine", other, "--out", tmp_path / "r")
    _one_line_error(res, "no truth code", "toy")
    assert not (tmp_path / "r").exists()


def test_no_pixel_valid_in_both_is_an_error(case, tmp_path):
    pred, _, _ = case
    # truth only in the last column, where the prediction is nodata
    t = np.full((2, 4), 255, np.uint8)
    t[:, 3] = 1
    only_outside = write_raster(tmp_path / "t.tif", t, nodata=255)
    r = evaluate_labels(pred, coarse_truth=only_outside)
    with pytest.raises(RasterFormatError, match="no pixel is valid in both"):
        require_scored(r)
    empty = write_raster(tmp_path / "e.tif", np.full((2, 4), 255, np.uint8), nodata=255)
    with pytest.raises(RasterFormatError, match="has no labelled pixel"):
        require_scored(evaluate_labels(pred, coarse_truth=empty))


def test_a_level_that_scores_nothing_is_reported_without_tables_or_plot(case, tmp_path):
    pred, c, _ = case
    unknown_fine = write_raster(tmp_path / "f99.tif", np.full((2, 4), 99, np.uint8), nodata=255)
    with pytest.warns(UnknownCodeWarning):
        r = evaluate_labels(pred, coarse_truth=c, fine_truth=unknown_fine)
    assert r["coarse"]["pixels"] == 5 and "not_scored" not in r["coarse"]
    assert "no truth code" in r["fine"]["not_scored"]
    out = write_report(r, tmp_path / "r")
    m = json.loads((out / "metrics.json").read_text())
    assert m["fine"] == {"pixels": 0, "not_scored": r["fine"]["not_scored"]}
    assert m["coarse"]["confusion_matrix"] == [[2, 0], [1, 2]]
    md = (out / "metrics.md").read_text()
    assert "The fine level is not scored: no truth code" in md and "## Fine level" not in md
    assert (out / "confusion_coarse.png").exists() and not (out / "confusion_fine.png").exists()
    # pooled with a scene whose fine level scores, the level is scored again
    _, _, f = case
    pooled = combine([r, evaluate_labels(pred, coarse_truth=c, fine_truth=f)], prediction="x")
    assert pooled["fine"]["pixels"] == 2 and "not_scored" not in pooled["fine"]
    assert pooled["pixel_counts"]["sizes"] == [[4, 2], [4, 2]]


def test_pooled_scenes_without_test_blocks_name_the_bundle_fix(case):
    pred, c, _ = case
    one = evaluate_labels(pred, coarse_truth=c, checkerboard=16)
    pooled = combine([one, one], prediction="b on cfg.yaml")
    pooled["bundle"] = "b"
    with pytest.raises(ConfigError, match=r"b on cfg\.yaml: nothing to score.*retrain"):
        require_scored(pooled)


# ------------------------------------------------------------------- truth quality
def test_contradictory_coarse_and_fine_truth_is_counted_and_warned(tmp_path):
    pred = _labels(tmp_path / "l.tif", np.array([[1, 1, 1]]), np.array([[11, 11, 11]]))
    tc = write_raster(tmp_path / "c.tif", np.array([[2, 1, 1]], np.uint8), nodata=255)
    tf = write_raster(tmp_path / "f.tif", np.array([[11, 11, 12]], np.uint8), nodata=255)
    with pytest.warns(InconsistentTruthWarning, match=r"1 of 3 scored pixels \(33.3%\)"):
        r = evaluate_labels(pred, coarse_truth=tc, fine_truth=tf)
    assert r["truth_inconsistent_pixels"] == 1 and r["truth_pixels_both_levels"] == 3
    # each level against its own truth: coarse water at (0,0) is a miss
    assert r["coarse"]["confusion_matrix"] == [[2, 0], [1, 0]]
    assert r["fine"]["confusion_matrix"] == [[2, 0, 0], [1, 0, 0], [0, 0, 0]]
    out = write_report(r, tmp_path / "r")
    assert json.loads((out / "metrics.json").read_text())["truth_inconsistent_pixels"] == 1
    assert "1 of 3 pixels scored at both levels (33.3%)" in (out / "metrics.md").read_text()
    assert combine([r, r], prediction="x")["truth_inconsistent_pixels"] == 2


def test_consistent_truth_is_not_warned_about(case):
    pred, c, f = case
    r = evaluate_labels(pred, coarse_truth=c, fine_truth=f)  # warnings are errors here
    assert r["truth_inconsistent_pixels"] == 0


def test_float_truth_with_nan_nodata(tmp_path):
    pred = _labels(tmp_path / "l.tif", np.array([[1, 1, 2]]), np.array([[11, 12, 255]]))
    t = np.array([[11.0, np.nan, 12.0]], np.float32)
    truth = write_raster(tmp_path / "t.tif", t, nodata=float("nan"))
    r = evaluate_labels(pred, fine_truth=truth)  # no numpy cast warning (they are errors)
    # (0,2): evergreen predicted as water, which has no fine class: a miss
    assert r["fine"]["confusion_matrix"] == [[1, 0, 0], [0, 0, 1], [0, 0, 0]]
    assert r["pixel_counts"]["truth_labelled"]["fine"] == 2
    frac = write_raster(tmp_path / "x.tif", np.array([[11.5, 1, 2]], np.float32))
    with pytest.raises(RasterFormatError, match=r"x\.tif: truth holds values that are not whole"):
        evaluate_labels(pred, fine_truth=frac)


# ------------------------------------------------------------------- --model options
def _bundle_trained_with(tmp_path, tiny_bundle, split):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    meta = json.loads((bundle / "bundle.json").read_text())
    meta["training"] = {"config": {"name": "t", "split": split}}
    (bundle / "bundle.json").write_text(json.dumps(meta))
    return bundle


def _config(tmp_path, checkerboard):
    path = tmp_path / f"cfg{checkerboard}.yaml"
    cfg = {
        "name": "t",
        "taxonomy": str(NLCD_YAML),
        "data": {"sources": [{"image": "scene.tif", "fine": "fine.tif"}]},
        "split": {"checkerboard": checkerboard},
        "model": {"architecture": "Unet", "encoder": "resnet18"},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_a_config_split_other_than_the_bundles_is_refused(tmp_path, tiny_bundle):
    bundle = _bundle_trained_with(tmp_path, tiny_bundle, {"checkerboard": 128, "block": 128})
    check_bundle_split(bundle, _config(tmp_path, 128))  # same test blocks
    with pytest.raises(ConfigError) as err:
        check_bundle_split(bundle, _config(tmp_path, 64))
    msg = str(err.value)
    assert msg.startswith(f"{bundle}: trained with split checkerboard 128")
    assert "cfg64.yaml has checkerboard 64" in msg and "checkerboard: 128}" in msg
    out = tmp_path / "r"
    r = _cli("--model", bundle, "--config", _config(tmp_path, 64), "--out", out)
    _one_line_error(r, "checkerboard 128", "checkerboard 64")
    assert not out.exists()
    # a config of another taxonomy is named for that first: its split is another model's
    other = yaml.safe_load(_config(tmp_path, 64).read_text())
    other["taxonomy"] = str(ROOT / "configs" / "taxonomy" / "slovenia.yaml")
    (tmp_path / "slo.yaml").write_text(yaml.safe_dump(other))
    r = _cli("--model", bundle, "--config", tmp_path / "slo.yaml", "--out", out)
    _one_line_error(r, "give codes different meanings")
    assert "checkerboard" not in r.output and not out.exists()
    # a bundle trained without a checkerboard has no unseen blocks in its scenes
    no_cb = _bundle_trained_with(tmp_path / "n", tiny_bundle, {"checkerboard": None})
    with pytest.raises(ConfigError, match="trained without a checkerboard split"):
        check_bundle_split(no_cb, _config(tmp_path, 64))
    # a bundle that records no training config is not checked (the config is not read)
    check_bundle_split(tiny_bundle, tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--model", "b", "--config", "c.yaml", "--fine", "f.tif"], "--fine"),
        (["--model", "b", "--config", "c.yaml", "--checkerboard", "64"], "--checkerboard"),
        (["labels.tif", "--coarse", "c.tif", "--region", "all"], "--region"),
        (["labels.tif", "--model", "b", "--config", "c.yaml"], "either LABELS"),
        (["--model", "b", "--config", "c.yaml", "--taxonomy", "t.yaml"], "--taxonomy applies"),
    ],
)
def test_options_of_the_other_mode_are_usage_errors(tmp_path, args, named):
    r = _cli(*args, "--out", tmp_path / "r")
    assert r.exit_code == 2 and named in r.output, r.output
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------ usertest 5: LABELS, maps, taxonomies
def test_a_missing_or_unreadable_labels_file_is_a_one_line_error(case, tmp_path):
    _, c, _ = case
    r = _cli(tmp_path / "nothere.tif", "--coarse", c, "--out", tmp_path / "r")
    _one_line_error(r, "nothere.tif", "file not found")
    text = tmp_path / "notes.txt"
    text.write_text("not a raster")
    r = _cli(text, "--coarse", c, "--out", tmp_path / "r")
    _one_line_error(r, "notes.txt", "not a readable raster")
    assert not (tmp_path / "r").exists()


def _codes(path, data, **kw):
    return write_raster(path, np.asarray(data, np.uint8), nodata=255, **kw)


def test_a_single_band_map_of_fine_codes_scores_as_the_geoseg_labels_it_matches(case, tmp_path):
    """Another classifier's map: one band of fine codes, where the childless water is its
    own code; scored with the taxonomy given, it scores as the labels.tif of the same
    classes (whose coarse band is the fine codes' parents)."""
    pred, c, f = case
    with rasterio.open(pred) as src:
        pc, pf = src.read(1), src.read(2)
    leaf = _codes(tmp_path / "leaf.tif", np.where(pf != 255, pf, pc))
    tax_yaml = tmp_path / "toy.yaml"
    tax_yaml.write_text(yaml.safe_dump(TAX.to_dict()))
    want = evaluate_labels(pred, coarse_truth=c, fine_truth=f)
    for tax in (TAX, tax_yaml):
        got = evaluate_labels(leaf, coarse_truth=c, fine_truth=f, taxonomy=tax)
        assert got["prediction_level"] == "fine"
        for lvl in ("coarse", "fine"):
            assert got[lvl]["confusion_matrix"] == want[lvl]["confusion_matrix"]
            assert got[lvl]["miou"] == want[lvl]["miou"]
        assert got["hierarchy_consistency"] == 1.0
    with pytest.raises(RasterFormatError, match=r"not a geoseg labels.*pass --taxonomy"):
        evaluate_labels(leaf, coarse_truth=c)


def test_a_single_band_of_coarse_codes_scores_the_coarse_level(case, tmp_path):
    pred, c, f = case
    with rasterio.open(pred) as src:
        coarse = _codes(tmp_path / "coarse.tif", src.read(1))
    want = evaluate_labels(pred, coarse_truth=c)
    got = evaluate_labels(coarse, coarse_truth=c, taxonomy=TAX)
    assert got["prediction_level"] == "coarse" and "fine" not in got
    assert got["coarse"]["confusion_matrix"] == want["coarse"]["confusion_matrix"]
    assert got["hierarchy_consistency"] == 1.0  # one level: nothing to contradict
    # fine truth alone: the coarse truth is its parents, as for a two-level prediction
    with pytest.warns(UnscoredLevelWarning, match="scored at the coarse level only"):
        derived = evaluate_labels(coarse, fine_truth=f, taxonomy=TAX)
    assert derived["coarse"]["confusion_matrix"] == [[2, 0], [0, 0]]  # as with labels.tif
    assert "fine" not in derived


def test_the_level_of_a_single_band_comes_from_its_description_or_level(tmp_path):
    # code 1 is Forest (with fine classes) and Deciduous: a band of 1s is either level
    amb = Taxonomy.from_dict(
        {
            "name": "amb",
            "coarse": [
                {"code": 1, "name": "Forest"},
                {"code": 2, "name": "Water"},
                {"code": 3, "name": "Shrub"},
            ],
            "fine": [
                {"code": 1, "name": "Deciduous", "parent": 1},
                {"code": 12, "name": "Evergreen", "parent": 1},
                {"code": 31, "name": "Scrub", "parent": 3},
            ],
        }
    )
    ones = _codes(tmp_path / "ones.tif", [[1, 1]])
    c = _codes(tmp_path / "c.tif", [[1, 1]])
    f = _codes(tmp_path / "f.tif", [[1, 12]])
    with pytest.raises(ConfigError, match=r"level of this single band is ambiguous.*--level"):
        evaluate_labels(ones, coarse_truth=c, taxonomy=amb)
    as_fine = evaluate_labels(ones, coarse_truth=c, fine_truth=f, taxonomy=amb, level="fine")
    assert as_fine["prediction_level"] == "fine"
    assert as_fine["fine"]["confusion_matrix"][:2] == [[1, 0, 0, 0], [1, 0, 0, 0]]
    with pytest.warns(UnscoredLevelWarning, match="fine truth .* is not scored"):
        as_coarse = evaluate_labels(
            ones, coarse_truth=c, fine_truth=f, taxonomy=amb, level="coarse"
        )
    assert as_coarse["prediction_level"] == "coarse" and "fine" not in as_coarse
    assert as_coarse["coarse"]["confusion_matrix"] == [[2, 0, 0], [0, 0, 0], [0, 0, 0]]
    described = _codes(tmp_path / "d.tif", [[1, 1]], names=("coarse",))
    r = evaluate_labels(described, coarse_truth=c, taxonomy=amb)
    assert r["prediction_level"] == "coarse"
    # codes of coarse classes with fine classes mixed with fine codes fit neither level
    mixed = _codes(tmp_path / "m.tif", [[3, 12]])
    with pytest.raises(ConfigError, match=r"mixes coarse codes.*\(3\).*\(12\).*--level"):
        evaluate_labels(mixed, coarse_truth=c, taxonomy=amb)
    with pytest.raises(RasterFormatError, match=r"no code of the map.*codes found: 7"):
        evaluate_labels(_codes(tmp_path / "x.tif", [[7, 7]]), coarse_truth=c, taxonomy=amb)


def test_maps_of_two_or_more_bands_without_geoseg_tags(case, tmp_path):
    pred, c, f = case
    with rasterio.open(pred) as src:
        bands = src.read()
    want = evaluate_labels(pred, coarse_truth=c, fine_truth=f)
    two = _codes(tmp_path / "two.tif", bands[:2])  # e.g. cropped by a tool that lost the tags
    got = evaluate_labels(two, coarse_truth=c, fine_truth=f, taxonomy=TAX)
    assert got["fine"]["confusion_matrix"] == want["fine"]["confusion_matrix"]
    assert "prediction_level" not in got
    # three bands are read by their descriptions, as geoseg writes them
    named = _codes(tmp_path / "n.tif", bands, names=("coarse", "fine", "confidence"))
    got = evaluate_labels(named, coarse_truth=c, fine_truth=f, taxonomy=TAX)
    assert got["coarse"]["confusion_matrix"] == want["coarse"]["confusion_matrix"]
    with pytest.raises(RasterFormatError, match=r"3 bands, none described.*gdal_translate -b"):
        evaluate_labels(_codes(tmp_path / "3.tif", bands), coarse_truth=c, taxonomy=TAX)
    with pytest.raises(ConfigError, match="--level fine is for a map of a single band"):
        evaluate_labels(two, coarse_truth=c, taxonomy=TAX, level="fine")


def test_prediction_codes_outside_the_taxonomy_are_warned_about(tmp_path):
    pred = _codes(tmp_path / "p.tif", [[1, 7, 7, 2]])
    truth = _codes(tmp_path / "t.tif", [[1, 1, 1, 2]])
    with pytest.warns(UnknownCodeWarning, match=r"p\.tif: 2 of 4 .*codes 7 .*not scored"):
        r = evaluate_labels(pred, coarse_truth=truth, taxonomy=TAX, level="coarse")
    assert r["coarse"]["pixels"] == 2
    # a caution of the report, kept where scenes are pooled (evaluate --model; a review
    # found combine dropping it)
    from geoseg.evaluate import combine

    (caution,) = r["cautions"]
    assert "p.tif: 2 of 4" in caution
    assert combine([r, r], prediction="both")["cautions"] == [caution]


def test_a_coarse_only_prediction_derives_coarse_truth_through_the_given_taxonomy(tmp_path):
    """A coarse-only bundle's labels.tif records no fine classes; the taxonomy it was
    trained with (given) has them, and their parents make fine truth coarse truth."""
    coarse_only = Taxonomy.from_dict({**TAX.to_dict(), "fine": []})
    pred = write_raster(
        tmp_path / "l.tif",
        np.stack([[[1, 2, 1]], np.full((1, 3), 255), np.full((1, 3), 50)]).astype(np.uint8),
        nodata=255,
    )
    with rasterio.open(pred, "r+") as dst:
        dst.update_tags(GEOSEG_TAXONOMY=json.dumps(coarse_only.to_dict()))
    f = _codes(tmp_path / "f.tif", [[11, 12, 255]])
    with pytest.raises(RasterFormatError, match="pass --coarse truth, or --taxonomy"):
        evaluate_labels(pred, fine_truth=f)
    with pytest.warns(UnscoredLevelWarning, match="scored at the coarse level only"):
        r = evaluate_labels(pred, fine_truth=f, taxonomy=TAX)
    assert r["coarse"]["confusion_matrix"] == [[1, 1], [0, 0]] and "fine" not in r
    assert r["hierarchy_consistency"] == 1.0
    assert r["coarse"]["classes"] == ["1 Forest", "2 Water"]


def test_a_given_taxonomy_must_have_the_predictions_codes(case, tmp_path):
    pred, c, f = case
    same = evaluate_labels(pred, coarse_truth=c, fine_truth=f, taxonomy=TAX)  # no warning
    moved = TAX.to_dict()
    moved["fine"][1]["code"] = 13
    moved["fine"][0]["parent"] = 2
    with pytest.raises(ConfigError) as err:
        evaluate_labels(pred, coarse_truth=c, taxonomy=Taxonomy.from_dict(moved))
    msg = str(err.value)
    assert "give codes different meanings" in msg and "\n" not in msg
    assert "fine codes 12 only in the model's, 13 only in taxonomy 'toy'" in msg
    assert "fine codes 11 have parents 1 in the model's, 2 in taxonomy 'toy'" in msg
    renamed = TAX.to_dict()
    renamed["coarse"][1]["name"] = "Lake"
    with pytest.warns(TaxonomyMismatchWarning, match="2 'Water' is 'Lake'"):
        r = evaluate_labels(pred, coarse_truth=c, taxonomy=Taxonomy.from_dict(renamed))
    assert r["coarse"]["confusion_matrix"] == same["coarse"]["confusion_matrix"]
    assert r["coarse"]["classes"] == ["1 Forest", "2 Water"]  # the model's names


def test_a_bundle_directory_gives_its_taxonomy(tiny_bundle):
    from geoseg.bundle import read_meta

    assert load_scoring_taxonomy(tiny_bundle) == read_meta(tiny_bundle).taxonomy
    assert load_scoring_taxonomy(NLCD_YAML) == read_meta(tiny_bundle).taxonomy


def test_the_fine_matrix_has_no_empty_no_fine_truth_row_in_the_report(case, tmp_path, monkeypatch):
    """Fine truth always names a fine class, so the "no fine class" row of the fine
    matrix is always empty; only its column (water predicted) holds pixels."""
    import geoseg.report

    pred, c, f = case
    r = evaluate_labels(pred, coarse_truth=c, fine_truth=f)
    plotted = {}

    def plot(cm, classes, dest, *, title):
        plotted[dest.name] = (np.asarray(cm), classes)
        return dest

    monkeypatch.setattr(geoseg.report, "plot_confusion", plot)
    write_report(r, tmp_path / "rep")
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert m["fine"]["confusion_matrix"] == [[1, 1, 0], [0, 0, 0]]
    assert m["fine"]["classes"][-1].startswith("(no fine class")
    assert m["coarse"]["confusion_matrix"] == [[2, 0], [1, 2]]  # square, as before
    assert m["fine"]["miou"] == r["fine"]["miou"]
    cm, classes = plotted["confusion_fine.png"]
    assert cm.shape == (2, 3) and len(classes) == 3
    assert plotted["confusion_coarse.png"][0].shape == (2, 2)
    # the column names its coarse classes (a blind test could not tell which they were)
    assert classes[-1] == "(no fine class: 2 Water)" and m["fine"]["no_fine_classes"] == ["2 Water"]
    assert "map gives a coarse class without fine classes (2 Water) where the truth" in (
        (tmp_path / "rep" / "metrics.md").read_text()
    )


def test_a_confusion_plot_of_more_columns_than_rows(tmp_path):
    from geoseg.report import plot_confusion

    cm = np.array([[3, 0, 1], [0, 0, 0]])  # the second class is absent: left out
    dest = plot_confusion(cm, ["a", "b", "none"], tmp_path / "c.png", title="t")
    assert dest.stat().st_size > 2000


def test_fine_truth_naming_a_childless_coarse_class_is_coarse_truth_as_in_training(tmp_path):
    """A leaf-level fine raster labels water (no fine classes) with water's code, as
    training reads it: coarse truth there, no fine truth, no unknown-code warning."""
    pred = _labels(tmp_path / "l.tif", np.array([[1, 2, 1]]), np.array([[11, 255, 12]]))
    f = _codes(tmp_path / "f.tif", [[11, 2, 12]])
    r = evaluate_labels(pred, fine_truth=f)
    assert r["coarse"]["confusion_matrix"] == [[2, 0], [0, 1]]
    assert r["fine"]["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]
    assert r["pixel_counts"]["truth_labelled"] == {"coarse": 3, "fine": 3}
    c = _codes(tmp_path / "c.tif", [[1, 1, 1]])  # says forest where the fine raster says water
    with pytest.warns(InconsistentTruthWarning, match="1 of 3 scored pixels"):
        both = evaluate_labels(pred, coarse_truth=c, fine_truth=f)
    assert both["coarse"]["confusion_matrix"] == [[2, 1], [0, 0]]  # its own truth


def test_evaluate_cli_scores_a_map_with_a_given_taxonomy_and_level(case, tmp_path):
    pred, c, f = case
    with rasterio.open(pred) as src:
        pc, pf = src.read(1), src.read(2)
    leaf = _codes(tmp_path / "leaf.tif", np.where(pf != 255, pf, pc))
    tax_yaml = tmp_path / "toy.yaml"
    tax_yaml.write_text(yaml.safe_dump(TAX.to_dict()))
    r = _cli(leaf, "--coarse", c, "--fine", f, "--out", tmp_path / "r")
    _one_line_error(r, "not a geoseg labels.tif", "--taxonomy")
    r = _cli(leaf, "--taxonomy", tax_yaml, "--coarse", c, "--fine", f, "--out", tmp_path / "r")
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert m["prediction_level"] == "fine" and m["fine"]["confusion_matrix"] == [
        [1, 1, 0],
        [0, 0, 0],
    ]
    # read as coarse codes, the fine codes of the map are not coarse classes
    args = ("--taxonomy", tax_yaml, "--level", "coarse", "--coarse", c, "--bootstrap", 0)
    with pytest.warns(UnknownCodeWarning, match="3 of 6 labelled pixels.*codes 11, 12"):
        r = _cli(leaf, *args, "--out", tmp_path / "r2")
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "r2" / "metrics.json").read_text())
    assert m["prediction_level"] == "coarse" and m["coarse"]["pixels"] == 2  # the water pixels
    # the report says what was left out, where its reader looks (a blind test's map read
    # at the wrong level lost 98 % of its pixels under a clean report of mIoU 1.000)
    report = (tmp_path / "r2" / "metrics.md").read_text()
    caution = report.split("**Caution:** ")[1].splitlines()[0]
    assert "leaf.tif: 3 of 6 labelled pixels (50.0%) hold codes 11, 12 that taxonomy" in caution
    assert "those pixels of the prediction are not scored" in caution
    assert m["cautions"] == [caution.rstrip(".")]


def _fake_predict(monkeypatch, labels):
    """run_evaluate_bundle without a network: every scene's prediction is ``labels``."""
    import geoseg.workflow

    def predict(image, bundle, out, **kw):
        out.mkdir(parents=True)
        shutil.copy(labels, out / "labels.tif")

    with rasterio.open(labels) as src:  # the bundle's taxonomy is the one its labels record
        tax = Taxonomy.from_dict(json.loads(src.tags()["GEOSEG_TAXONOMY"]))
    monkeypatch.setattr(geoseg.workflow, "run_predict", predict)
    monkeypatch.setattr(geoseg.workflow, "read_meta", lambda path: SimpleNamespace(taxonomy=tax))


def _model_config(tmp_path, taxonomy, source):
    tax_yaml = tmp_path / "cfg_tax.yaml"
    tax_yaml.write_text(yaml.safe_dump(taxonomy.to_dict()))
    write_raster(tmp_path / "scene.tif", np.zeros((3, 1, 3), np.uint8))
    path = tmp_path / "cfg.yaml"
    cfg = {
        "name": "t",
        "taxonomy": str(tax_yaml),
        "data": {"sources": [{"image": "scene.tif", **source}]},
        "model": {"architecture": "Unet", "encoder": "resnet18"},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_a_coarse_only_bundle_is_scored_on_a_configs_fine_truth(tmp_path, monkeypatch):
    from geoseg.workflow import run_evaluate_bundle

    coarse_only = Taxonomy.from_dict({**TAX.to_dict(), "fine": []})
    pred = write_raster(
        tmp_path / "l.tif",
        np.stack([[[1, 2, 1]], np.full((1, 3), 255), np.full((1, 3), 50)]).astype(np.uint8),
        nodata=255,
    )
    with rasterio.open(pred, "r+") as dst:
        dst.update_tags(GEOSEG_TAXONOMY=json.dumps(coarse_only.to_dict()))
    _codes(tmp_path / "fine.tif", [[11, 12, 255]])
    _fake_predict(monkeypatch, pred)
    cfg = _model_config(tmp_path, TAX, {"fine": "fine.tif"})
    with pytest.warns(UnscoredLevelWarning, match="scored at the coarse level only"):
        r = run_evaluate_bundle(tmp_path, cfg, tmp_path / "rep", region="all", bootstrap=0)
    assert r["coarse"]["confusion_matrix"] == [[1, 1], [0, 0]] and "fine" not in r
    # the bootstrap's blocks are the config's split blocks, in a scene scored whole too
    # (a blind test's report said blocks of "up to 128 px" of a split of 64)
    raw = yaml.safe_load(cfg.read_text()) | {"split": {"block": 32}}
    cfg.write_text(yaml.safe_dump(raw))
    with pytest.warns(UnscoredLevelWarning):
        r = run_evaluate_bundle(
            tmp_path, cfg, tmp_path / "rep", region="all", bootstrap=0, overwrite=True
        )
    assert r["bootstrap_block"] == 32


def test_a_config_taxonomy_other_than_the_bundles_is_refused_or_warned(case, tmp_path, monkeypatch):
    from geoseg.workflow import run_evaluate_bundle

    pred, c, _ = case
    _fake_predict(monkeypatch, pred)
    shutil.copy(c, tmp_path / "coarse.tif")
    moved = TAX.to_dict()
    moved["fine"][1]["code"] = 13
    cfg = _model_config(tmp_path, Taxonomy.from_dict(moved), {"coarse": "coarse.tif"})
    with pytest.raises(ConfigError, match=r"12 only in the model's, 13 only in .*cfg_tax\.yaml"):
        run_evaluate_bundle(tmp_path, cfg, tmp_path / "rep", region="all", bootstrap=0)
    renamed = TAX.to_dict()
    renamed["name"] = "toy-v2"
    cfg = _model_config(tmp_path, Taxonomy.from_dict(renamed), {"coarse": "coarse.tif"})
    with pytest.warns(TaxonomyMismatchWarning, match="it is named 'toy-v2'"):
        r = run_evaluate_bundle(tmp_path, cfg, tmp_path / "rep", region="all", bootstrap=0)
    assert r["coarse"]["confusion_matrix"] == [[2, 0], [1, 2]]


def test_a_geoseg_map_as_truth_is_read_level_by_level(zion_prediction, tmp_path, caplog):
    """Two maps compared (a map against another date's, or itself): its band 2 is the
    fine truth (band 1 was read, and its coarse codes were 'unknown fine codes')."""
    labels = zion_prediction / "labels.tif"
    r = evaluate_labels(labels, coarse_truth=labels, fine_truth=labels)
    assert r["coarse"]["miou"] == pytest.approx(1.0) and r["fine"]["miou"] == pytest.approx(1.0)
    # the same map on a grid one column wider, resampled onto the prediction's
    import rasterio

    wide = tmp_path / "wide_truth.tif"
    with rasterio.open(labels) as src:
        data, profile = src.read(), src.profile
        tags = src.tags()
    data = np.concatenate([data, data[:, :, -1:]], axis=2)
    profile.update(width=profile["width"] + 1, driver="GTiff")
    with rasterio.open(wide, "w", **profile) as dst:
        dst.write(data)
        dst.update_tags(**tags)
    r = evaluate_labels(labels, coarse_truth=wide, fine_truth=wide, align=True)
    assert r["fine"]["overall_accuracy"] == pytest.approx(1.0)
    assert "band 1 is read" not in caplog.text
    # a multi-band image given as truth is named as such before its codes are judged
    from .conftest import shared_file

    scene = shared_file("zion/landsat8_b2345.tif")
    with caplog.at_level("WARNING", logger="geoseg"), pytest.warns(UnknownCodeWarning):
        evaluate_labels(labels, coarse_truth=scene)
    assert "coarse truth raster has 4 bands of uint16: band 1 is read" in caplog.text


def test_truth_of_fractional_codes_is_refused(tmp_path, zion_prediction):
    from geoseg import api

    from .conftest import shared_file, write_raster

    with rasterio.open(shared_file("zion/nlcd2011_level2.tif")) as src:
        truth, profile = src.read(1).astype("float32"), src.profile
    truth[10, 10] = 41.5
    path = write_raster(
        tmp_path / "avg.tif", truth, crs=profile["crs"], transform=profile["transform"]
    )
    with pytest.raises(RasterFormatError, match=r"avg\.tif: truth holds values that are not "):
        api.evaluate(zion_prediction / "labels.tif", fine=path)


@pytest.mark.filterwarnings("ignore::geoseg.errors.SeenPixelsWarning")  # the whole Zion map
def test_truth_of_the_other_level_is_named_so(zion_prediction):
    from geoseg import api
    from geoseg.errors import UnknownCodeWarning

    from .conftest import shared_file

    level2 = shared_file("zion/nlcd2011_level2.tif")
    with pytest.warns(UnknownCodeWarning, match=r"they are fine codes of the taxonomy: is .*"):
        scores = api.evaluate(zion_prediction / "labels.tif", coarse=level2, fine=level2)
    assert scores["fine"]["miou"] > 0


def test_scoring_a_crop_of_the_scene_its_model_trained_on_is_warned_about(tmp_path):
    """A blind test's crop of the training scene, predicted and scored, got no caution."""
    import warnings
    from pathlib import Path

    from geoseg.bundle import read_meta
    from geoseg.errors import GeosegWarning
    from geoseg.workflow import run_evaluate_labels, run_predict

    from .conftest import ZION_BUNDLE, shared_file

    trained = read_meta(ZION_BUNDLE).training["data"][0]["image"]
    if not Path(trained).exists():
        pytest.skip(f"the bundle's training scene {trained} is not on this machine")
    with rasterio.open(shared_file("zion/landsat8_b2345.tif")) as src:
        window = rasterio.windows.Window(120, 100, 256, 224)
        profile = {**src.profile, "width": 256, "height": 224}
        profile["transform"] = src.window_transform(window)
        data = src.read(window=window)
    crop = tmp_path / "crop.tif"
    with rasterio.open(crop, "w", **profile) as dst:
        dst.write(data)
    run_predict(crop, ZION_BUNDLE, tmp_path / "p", scheduler="sync", vector=False)
    truth = shared_file("zion/nlcd2011_level1.tif")

    def said(**kw):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", GeosegWarning)
            result = run_evaluate_labels(
                tmp_path / "p" / "labels.tif", None, coarse_truth=truth, bootstrap=0, **kw
            )
        notes = [str(w.message) for w in caught if "trained on" in str(w.message)]
        assert result.get("cautions", [])[: len(notes)] == notes
        return notes

    (note,) = said(align=True)
    assert f"a prediction of {crop}, a crop of {trained}, which" in note
    assert "pass --checkerboard 128" in note
    assert said(align=True, checkerboard=128) == []
    # another scene of the same grid (other pixels): not a crop
    with rasterio.open(crop, "r+") as dst:
        dst.write(data[:, ::-1])
    run_predict(crop, ZION_BUNDLE, tmp_path / "q", scheduler="sync", vector=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", GeosegWarning)
        run_evaluate_labels(
            tmp_path / "q" / "labels.tif", None, coarse_truth=truth, bootstrap=0, align=True
        )
    assert not [w for w in caught if "trained on" in str(w.message)]


def test_scoring_a_map_of_the_scene_its_model_trained_on_is_warned_about(zion_prediction, tmp_path):
    """run.json names the scene and bundle: its training pixels are scored unless the
    bundle's own checkerboard is (the bundle trained on a copy of the same scene)."""
    import warnings

    from geoseg.errors import GeosegWarning
    from geoseg.workflow import run_evaluate_labels

    from .conftest import shared_file

    labels = zion_prediction / "labels.tif"
    truth = shared_file("zion/nlcd2011_level1.tif")

    def said(**kw):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", GeosegWarning)
            result = run_evaluate_labels(labels, None, coarse_truth=truth, bootstrap=0, **kw)
        notes = [str(w.message) for w in caught if "trained on" in str(w.message)]
        assert result.get("cautions", []) == notes
        return notes

    (note,) = said()
    assert "without --checkerboard" in note and "pass --checkerboard 128" in note
    (note,) = said(checkerboard=64)
    assert "with --checkerboard 64" in note
    assert said(checkerboard=128) == []
    plain = tmp_path / "copy" / "labels.tif"  # no run.json beside it: nothing to tell
    plain.parent.mkdir()
    shutil.copy(labels, plain)
    labels = plain
    assert said() == []
