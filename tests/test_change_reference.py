"""Error-adjusted change: a sample of change.tif's transitions, labelled, corrects the areas.

geoseg.change_sample (``geoseg sample change.tif``) and geoseg.change_reference
(``geoseg change --reference``).
"""

from __future__ import annotations

import json
import re
import uuid
import warnings

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from click.testing import CliRunner

from geoseg import api
from geoseg.change_reference import change_estimates
from geoseg.change_sample import draw_change_sample
from geoseg.cli import cli
from geoseg.errors import ConfigError, GeosegWarning, OutputExistsError, RasterFormatError
from geoseg.metrics import Z95
from geoseg.sample import draw_sample
from geoseg.taxonomy import Taxonomy
from tests.conftest import NLCD_YAML, shared_file
from tests.test_change import AFTER, BEFORE, _map
from tests.test_metrics import OLOFSSON_PUBLISHED

FOREST = Taxonomy.from_dict(
    {"name": "forest", "coarse": [{"code": 1, "name": "Forest"}, {"code": 2, "name": "Non-forest"}]}
)


def test_olofssons_worked_example_as_transitions():
    """Olofsson et al. (2014), section 5: a map of forest change (deforestation, gain,
    stable forest, stable non-forest) and 640 labelled points; their published areas
    (ha, 95 % half-widths) and accuracies, with the strata read as transitions."""
    f, n = 0, 1  # class indices: Forest, Non-forest; a pair is from * 2 + to
    pair = {"deforestation": f * 2 + n, "forest gain": n * 2 + f, "stable forest": f * 2 + f,
            "stable non-forest": n * 2 + n}  # fmt: skip
    order = list(pair)
    counts = np.array([[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]])  # map x ref
    pixels = {"deforestation": 200_000, "forest gain": 150_000, "stable forest": 3_200_000,
              "stable non-forest": 6_450_000}  # fmt: skip
    stratum, mapped_pair, before, after = [], [], [], []
    for i, m in enumerate(order):
        for j, r in enumerate(order):
            k = int(counts[i, j])
            stratum += [pair[m] + 1] * k  # change.tif's value
            mapped_pair += [pair[m]] * k
            before += [pair[r] // 2] * k
            after += [pair[r] % 2] * k
    areas = {pair[m] + 1: pixels[m] * 0.09 for m in order}
    mapped_area = np.zeros((2, 2))
    for m in order:
        mapped_area[divmod(pair[m], 2)] = pixels[m] * 0.09
    est = change_estimates(
        np.array(stratum), areas, np.array(mapped_pair), np.array(before), np.array(after),
        mapped_area, list(FOREST.coarse),
    )  # fmt: skip
    by_name = {(t["from_name"], t["to_name"]): t for t in est["transitions"]}
    names = {"deforestation": ("Forest", "Non-forest"), "forest gain": ("Non-forest", "Forest"),
             "stable forest": ("Forest", "Forest"),
             "stable non-forest": ("Non-forest", "Non-forest")}  # fmt: skip
    for name, (area, half, ua, pa) in OLOFSSON_PUBLISHED.items():
        t = by_name[names[name]]
        assert t["estimated"] == pytest.approx(area, abs=1)
        assert Z95 * t["se"] == pytest.approx(half, abs=2)
        assert t["users_accuracy"] == pytest.approx(ua, abs=0.005)
        assert t["producers_accuracy"] == pytest.approx(pa, abs=0.005)
    assert est["overall_accuracy"] == pytest.approx(0.95, abs=0.005)
    # the area that changed class: deforestation and gain together
    changed = est["changed"]
    assert changed["estimated"] == pytest.approx(21_158 + 11_686, abs=2)
    assert changed["mapped"] == pytest.approx((200_000 + 150_000) * 0.09)
    # forest at each date, and its net change, whose variance holds both dates' covariance
    forest = next(c for c in est["classes"] if c["name"] == "Forest")
    assert forest["before"]["estimated"] == pytest.approx(285_770 + 21_158, abs=2)
    assert forest["after"]["estimated"] == pytest.approx(285_770 + 11_686, abs=2)
    assert forest["net"]["estimated"] == pytest.approx(11_686 - 21_158, abs=2)
    assert forest["net"]["mapped"] == pytest.approx((150_000 - 200_000) * 0.09)
    # by hand: y = +1 where forest was gained, -1 where lost; sum_h A_h^2 s_h^2 / n_h
    y = (np.array(after) == f).astype(float) - (np.array(before) == f)
    s = np.array(stratum)
    var = sum(areas[h] ** 2 * y[s == h].var(ddof=1) / (s == h).sum() for h in areas)
    assert forest["net"]["se"] == pytest.approx(np.sqrt(var))
    lo, hi = forest["net"]["ci95"]
    assert lo < forest["net"]["estimated"] < hi < 0  # a loss, told apart from none


def _relabelled_copy(labels, path, edits):
    """A copy of a geoseg map with (rows, cols, coarse, fine) edits, as another date's map."""
    with rasterio.open(labels) as src:
        profile, bands, tags = src.profile, src.read(), src.tags()
        band_tags = [src.tags(i) for i in range(1, src.count + 1)]
        descriptions = src.descriptions
    for rows, cols, where_coarse, coarse, fine in edits:
        hit = bands[0][rows, cols] == where_coarse
        bands[0][rows, cols][hit] = coarse
        bands[1][rows, cols][hit] = fine
    tags["GEOSEG_MAP_ID"] = uuid.uuid4().hex  # another map, not a copy of the first
    profile.update(driver="GTiff")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(bands)
        dst.update_tags(**tags)
        for i, (d, t) in enumerate(zip(descriptions, band_tags, strict=True), start=1):
            dst.set_band_description(i, d)
            dst.update_tags(i, **t)
    return path


@pytest.mark.filterwarnings("ignore::geoseg.errors.SeenPixelsWarning")  # the whole Zion map
def test_zion_change_with_a_known_truth(zion_prediction, tmp_path):
    """Real maps with real errors, and a truth whose change is known: NLCD 2011, with a
    fire (forest to shrubland) and new houses (shrubland to developed) burnt in, is the
    ground at both dates; the model's map of the scene, and a copy with the same events
    mapped a few pixels off, are the maps. A sample of their change.tif, labelled from
    the truth, gives intervals that hold every true transition's area."""
    nlcd = shared_file("zion/nlcd2011_level2.tif")
    with rasterio.open(nlcd) as src:
        profile, truth = src.profile, src.read(1)
    later = truth.copy()
    fire, houses = (slice(300, 600), slice(400, 800)), (slice(900, 960), slice(200, 300))
    later[fire][np.isin(later[fire], [41, 42, 43])] = 52
    later[houses][later[houses] == 52] = 22
    truth_after = tmp_path / "truth_after.tif"
    with rasterio.open(truth_after, "w", **profile) as dst:
        dst.write(later, 1)
    before = zion_prediction / "labels.tif"
    after = _relabelled_copy(
        before, tmp_path / "after.tif",
        [(slice(310, 610), slice(390, 790), 4, 5, 52),  # the fire, mapped 10 px off
         (slice(905, 960), slice(200, 290), 5, 2, 22)],  # most of the houses
    )  # fmt: skip
    runner = CliRunner()
    first = runner.invoke(cli, ["change", str(before), str(after), "--out", str(tmp_path / "c"),
                                "--no-vector"])  # fmt: skip
    assert first.exit_code == 0, first.output
    points = tmp_path / "ref.gpkg"
    drawn = runner.invoke(cli, ["sample", str(tmp_path / "c" / "change.tif"), "--out",
                                str(points), "--total", "600", "--per-class", "25"])  # fmt: skip
    assert drawn.exit_code == 0, drawn.output
    assert "points in 10 transition strata" in drawn.output
    sample = gpd.read_file(points)
    mapped = json.loads((tmp_path / "c" / "change.json").read_text())["levels"]["coarse"]
    # each stratum's area is its transition's mapped area
    areas = sample.groupby("stratum")["stratum_area"].first()
    by_value = {t["value"]: t["area"] for t in mapped["transitions"]}
    assert {int(k): v for k, v in areas.items()} == pytest.approx(by_value)
    fire_points = sample[sample["stratum_name"] == "Forest -> Shrubland"]
    assert len(fire_points) >= 25 and (fire_points["map_coarse_from"] == 4).all()
    assert (fire_points["map_coarse_to"] == 5).all() and sample["before_fine"].isna().all()
    # labelled from the truth at both dates (fine codes: the coarse ones are their parents)
    xy = list(zip(sample.geometry.x, sample.geometry.y, strict=True))
    for raster, field in ((nlcd, "before_fine"), (truth_after, "after_fine")):
        with rasterio.open(raster) as src:
            sample[field] = np.array([v[0] for v in src.sample(xy)], np.int32)
    sample.to_file(points, layer="reference")
    adjusted = runner.invoke(cli, ["change", str(before), str(after), "--out",
                                   str(tmp_path / "adj"), "--no-vector", "--reference",
                                   str(points)])  # fmt: skip
    assert adjusted.exit_code == 0, adjusted.output
    assert "error-adjusted from 722 reference points" in adjusted.output
    truth_change = api.change(nlcd, truth_after, taxonomy=NLCD_YAML, vector=False)
    reference = json.loads((tmp_path / "adj" / "change.json").read_text())["reference"]
    for lv in ("coarse", "fine"):
        true = {(t["from_name"], t["to_name"]): t["area"]
                for t in truth_change["levels"][lv]["transitions"] if t["changed"]}  # fmt: skip
        est = {(t["from_name"], t["to_name"]): t
               for t in reference["levels"][lv]["transitions"] if t["changed"]}  # fmt: skip
        assert set(true) <= set(est), (lv, set(true) - set(est))
        for pair, area in true.items():
            lo, hi = est[pair]["ci95"]
            assert lo <= area <= hi, (lv, pair, area, lo, hi)
        changed = reference["levels"][lv]["changed"]
        lo, hi = changed["ci95"]
        assert lo <= truth_change["levels"][lv]["area_changed"] <= hi
    md = (tmp_path / "adj" / "change.md").read_text()
    assert "## Error-adjusted change (reference sample)" in md
    adjusted_md = md.split("Error-adjusted")[1]
    fire_row = r"\| Forest \| Shrubland \| 90\.544 \| 86\.384 \[72\.592, 101\.900\] \| 84 % \["
    assert re.search(fire_row + r"\d+, \d+\] \| 88 % \[\d+, \d+\] \|", adjusted_md), adjusted_md
    assert "Overall accuracy of the transitions" in adjusted_md
    assert reference["interval_method"] == "beta" and "(Korn-Graubard: " in adjusted_md
    # the normal intervals, as Olofsson et al. publish theirs: the same estimates
    args = ["change", str(before), str(after), "--out", str(tmp_path / "w"), "--no-vector"]
    wald = runner.invoke(cli, [*args, "--reference", str(points), "--interval", "wald"])
    assert wald.exit_code == 0, wald.output
    normal = json.loads((tmp_path / "w" / "change.json").read_text())["reference"]
    fire = next(t for t in normal["levels"]["coarse"]["transitions"] if t["value"] == 29)
    assert normal["interval_method"] == "wald"
    assert fire["estimated"] == pytest.approx(86.384e6, abs=1e3)
    assert fire["ci95"] == pytest.approx(
        [fire["estimated"] + s * Z95 * fire["se"] for s in (-1, 1)]
    )
    assert "(normal: estimate ± 1.96 SE)" in (tmp_path / "w" / "change.md").read_text()
    assert "(normal intervals)" in wald.output
    alone = runner.invoke(cli, [*args, "--interval", "wald"])  # without --reference
    assert alone.exit_code == 2 and "give --reference too" in alone.output
    assert "| 28 | Forest (unchanged) |" in adjusted_md  # the design: stratum 28 of 64
    # no point saw wetlands come or go: its net change is 0, marked as resting on few, and
    # bounded by what 722 points that saw no gain nor loss allow (Clopper-Pearson of 0 of 722)
    net = re.search(r"\| Wetlands \| .* \| \+0\.000 \[-(\d+\.\d+), \+\1\] \* \|", adjusted_md)
    region = reference["levels"]["coarse"]["total"] / 1e6
    assert net and float(net[1]) == pytest.approx((1 - 0.025 ** (1 / 722)) * region, abs=2e-3)
    # the same points score the map of either date, weighted by their strata (transitions)
    scored = api.evaluate(after, fine=points, fine_field="after_fine", bootstrap=0)
    area = scored["coarse"]["area"]
    assert area["strata"] == "the sample's own (Stehman 2014)"
    true_forest = sum(
        c["after"] for c in truth_change["levels"]["coarse"]["classes"] if c["name"] == "Forest"
    )
    lo, hi = area["classes"]["4 Forest"]["ci95"]
    assert lo <= true_forest <= hi


def _tiny_sample(tmp_path, **kwargs):
    """The change of test_change's tiny maps, and a sample drawn on its change.tif."""
    before, after = _map(tmp_path / "a.tif", BEFORE), _map(tmp_path / "b.tif", AFTER)
    api.change(before, after, tmp_path / "c", vector=False)
    points = draw_change_sample(tmp_path / "c" / "change.tif", per_class=5, **kwargs)
    return before, after, points


@pytest.mark.filterwarnings("ignore::geoseg.sample.SmallClassWarning")  # every pixel drawn
def test_a_change_sample_by_hand(tmp_path):
    _, _, points = _tiny_sample(tmp_path)
    # 10 compared pixels, every one drawn: each transition is a stratum
    assert len(points) == 10 and points["stratum"].nunique() == 6
    n = 3  # Water, Forest, Crops
    crops = points[points["stratum"] == 1 * n + 2 + 1]  # Forest -> Crops
    assert list(crops["stratum_name"]) == ["Forest -> Crops"]
    assert (
        crops["stratum_area"].tolist() == pytest.approx([900.0])
        and (points["area_unit"] == "m2").all()
    )
    assert (crops[["map_fine_from", "map_fine_to"]].to_numpy() == [[41, 71]]).all()
    stable = points[points["stratum_name"] == "Forest (unchanged)"]
    assert stable["stratum_area"].tolist() == pytest.approx([2700.0] * 3)
    # by the fine level's transitions: Deciduous -> Deciduous and Evergreen alike are apart
    fine = draw_change_sample(tmp_path / "c" / "change.tif", per_class=5, level="fine")
    assert fine["stratum"].nunique() == 7 and "Evergreen (unchanged)" in set(fine["stratum_name"])
    # the same seed draws the same points; a Shapefile keeps every field
    assert draw_change_sample(tmp_path / "c" / "change.tif", per_class=5).equals(points)
    out = tmp_path / "s.shp"
    result = CliRunner().invoke(
        cli, ["sample", str(tmp_path / "c" / "change.tif"), "--out", str(out), "--per-class", "5"]
    )
    assert result.exit_code == 0, result.output
    fields = set(gpd.read_file(out).columns)
    assert {"strat_name", "map_c_from", "bef_coarse", "aft_fine", "strat_area"} <= fields


@pytest.mark.filterwarnings("ignore::geoseg.sample.SmallClassWarning")
def test_labelled_by_hand_every_pixel_is_exact(tmp_path):
    """Every compared pixel drawn and labelled as the maps have it (by name or code, at
    the fine level only): the estimates are the mapped areas, without error."""
    before, after, points = _tiny_sample(tmp_path)
    points["before_fine"] = points["map_fine_from"]
    points["after_fine"] = points["map_fine_to"].astype("Int64").astype(str)
    points.loc[points["after_fine"] == "71", "after_fine"] = "wheat"  # a name, any case
    for col in ("before_fine", "after_fine"):  # Water is a leaf: its coarse code stands
        coarse = "map_coarse_from" if col == "before_fine" else "map_coarse_to"
        water = points[coarse] == 1
        points[col] = points[col].astype(object)
        points.loc[water, col] = 1
    points["after_fine"] = points["after_fine"].astype(str)
    path = tmp_path / "ref.gpkg"
    points.to_file(path)
    record = api.change(before, after, reference=path, vector=False)
    ref = record["reference"]["levels"]
    for lv in ("coarse", "fine"):
        assert ref[lv]["changed"]["estimated"] == pytest.approx(3 * 900)
        assert ref[lv]["changed"]["users_accuracy"] == 1.0
        assert ref[lv]["overall_accuracy"] == 1.0
        for t in ref[lv]["transitions"]:
            assert t["estimated"] == pytest.approx(t["mapped"])
    forest = next(c for c in ref["coarse"]["classes"] if c["name"] == "Forest")
    assert forest["net"]["estimated"] == pytest.approx(-900) == forest["net"]["mapped"]
    api.change(before, after, tmp_path / "out", reference=path, vector=False)
    md = (tmp_path / "out" / "change.md").read_text()
    assert "(none of the 7 points mapped as unchanged was labelled as changed" in md
    # where the reference says nothing changed, the estimate of change is none
    points["after_fine"] = points["before_fine"]
    points.to_file(path)
    none = api.change(before, after, reference=path, vector=False)["reference"]["levels"]
    assert none["coarse"]["changed"]["estimated"] == 0.0
    assert none["coarse"]["changed"]["users_accuracy"] == 0.0


@pytest.mark.filterwarnings("ignore::geoseg.sample.SmallClassWarning")
def test_reference_samples_that_cannot_be_used_are_refused(tmp_path, caplog):
    before, after, points = _tiny_sample(tmp_path)
    path = tmp_path / "ref.gpkg"

    def run(frame):
        frame.to_file(path)
        return api.change(before, after, reference=path, vector=False)

    with pytest.raises(ConfigError, match=r"ref\.gpkg: no point is labelled at both dates"):
        run(points)
    bad = points.copy()
    bad["before_coarse"], bad["after_coarse"] = 4, 99
    with pytest.raises(RasterFormatError, match=r"field after_coarse holds 10 labels .*\('99'\)"):
        run(bad)
    bad = points.copy()
    bad["before_coarse"], bad["after_coarse"] = 7, 7
    bad["before_fine"], bad["after_fine"] = 41, 41
    with pytest.raises(RasterFormatError, match=r"before_fine label that is not a child"):
        run(bad)
    bad = points.copy()
    bad["before_coarse"], bad["after_coarse"] = 4, 4
    bad.loc[0, "stratum_area"] = 1.0
    with pytest.raises(RasterFormatError, match=r"carry 2 stratum areas"):
        run(bad)
    with pytest.raises(RasterFormatError, match=r"not a change sample"):
        run(bad.drop(columns=["before_coarse", "after_coarse", "before_fine", "after_fine"]))
    # labelled at one date only: said, and not counted
    half = points.copy()
    half["before_coarse"], half["after_coarse"] = 4, 4
    half.loc[0, "after_coarse"] = None
    with caplog.at_level("WARNING", logger="geoseg"), warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        record = run(half)
    assert "at the coarse level, 1 point labelled at one date only is left out" in caplog.text
    assert "the fine level is not estimated: no point is labelled at both dates" in caplog.text
    assert len(w) == 2 and all(issubclass(x.category, GeosegWarning) for x in w)
    assert record["reference"]["levels"]["coarse"]["points"] == 9
    assert "fine" not in record["reference"]["levels"]
    design = {row["stratum"]: row for row in record["reference"]["design"]}
    assert sum(row["points"] for row in design.values()) == 10
    assert sum(row["labelled"] for row in design.values()) == 9
    assert design[1 * 3 + 2 + 1]["name"] == "Forest -> Crops"
    # the labels in another layer of the file: the error says which layers it has
    path.unlink()
    points.to_file(path, layer="reference")
    half.to_file(path, layer="mine")
    with pytest.raises(ConfigError, match=r"the file has layers reference, mine.*reference_layer"):
        api.change(before, after, reference=path, vector=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # said above
        again = api.change(before, after, reference=path, reference_layer="mine", vector=False)
    assert again["reference"]["levels"] == record["reference"]["levels"]
    # a labelled sample is not replaced by a new draw, even with --overwrite
    path.unlink()
    half.to_file(path, layer="reference")
    result = CliRunner().invoke(cli, ["sample", str(tmp_path / "c" / "change.tif"), "--out",
                                      str(path), "--overwrite"])  # fmt: skip
    assert result.exit_code == 1 and "carry reference labels" in result.output
    with pytest.raises(OutputExistsError, match="carry reference labels"):
        from geoseg.export import check_vector_output

        check_vector_output(path, overwrite=True)


def test_a_change_tif_of_an_earlier_version_or_level_is_refused(tmp_path):
    before, after = _map(tmp_path / "a.tif", BEFORE), _map(tmp_path / "b.tif", AFTER)
    api.change(before, after, tmp_path / "c", vector=False)
    old = tmp_path / "c" / "change.tif"
    with rasterio.open(old, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as dst:
        dst.update_tags(GEOSEG_CHANGE_TAXONOMY="")  # as before this version: none
    with pytest.raises(RasterFormatError, match=r"written by an earlier geoseg.*run geoseg change"):
        draw_change_sample(old)
    with pytest.raises(RasterFormatError, match=r"not a geoseg change\.tif"):
        draw_change_sample(before)


def _random_pair(tmp_path, size=40, seed=0):
    """Two 40 × 40 maps of test_change's taxonomy, the later one a tenth changed."""
    rng = np.random.default_rng(seed)
    first = rng.choice([41, 42, 71, 1], size=(size, size), p=[0.4, 0.3, 0.2, 0.1])
    second = first.copy()
    changed = rng.random((size, size)) < 0.1
    second[changed] = rng.choice([41, 42, 71, 1], size=int(changed.sum()))
    return _map(tmp_path / "a.tif", first), _map(tmp_path / "b.tif", second)


def _perfectly_labelled(points):
    """Each point labelled with the maps' fine classes (Water, a leaf: its coarse code)."""
    for field, fine, coarse in (("before_fine", "map_fine_from", "map_coarse_from"),
                                ("after_fine", "map_fine_to", "map_coarse_to")):  # fmt: skip
        points[field] = points[fine].fillna(points[coarse]).astype("int32")
    return points


@pytest.mark.filterwarnings("ignore::geoseg.sample.SmallClassWarning")  # rare transitions
def test_what_weakens_the_estimates_is_said(tmp_path):
    """From a blind review: unlabelled strata, single points, deleted strata, swapped maps,
    edited areas, text blanks and GDAL's cut field names."""
    before, after = _random_pair(tmp_path)
    api.change(before, after, tmp_path / "c", vector=False)
    points = _perfectly_labelled(draw_change_sample(tmp_path / "c" / "change.tif", per_class=8))
    path = tmp_path / "ref.gpkg"

    def run(frame, first=before, second=after):
        if path.exists():
            path.unlink()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # geopandas: a frame without a CRS
            frame.to_file(path)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            record = api.change(first, second, reference=path, vector=False)
        return record["reference"], " ".join(str(w.message) for w in caught)

    good, said = run(points)
    assert said == "" and good["levels"]["coarse"]["changed"]["users_accuracy"] == 1.0
    stable = points["stratum_name"] == "Forest (unchanged)"
    # a stratum without a labelled point: bounds, not an estimate, and no accuracies
    blanked = points.copy()
    blanked.loc[stable, ["before_fine", "after_fine"]] = None
    ref, said = run(blanked)
    assert "8 points not labelled are left out" in said
    assert re.search(r"1 stratum \(\d+; [\d.]+ % of the area\) has no point labelled", said)
    changed = ref["levels"]["coarse"]["changed"]
    assert changed["ci95"] == [None, None] and changed["users_accuracy"] is None
    lo, hi = changed["unsampled_range"]  # that land all unchanged, or all changed
    assert lo == pytest.approx(good["levels"]["coarse"]["changed"]["estimated"])
    assert hi == pytest.approx(lo + points.loc[stable, "stratum_area"].iloc[0])
    forest = next(c for c in ref["levels"]["coarse"]["classes"] if c["name"] == "Forest")
    assert forest["before"]["users_accuracy"] is None and forest["net"]["estimated"] is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # said above
        api.change(before, after, tmp_path / "md", reference=path, vector=False)
    assert "(strata unlabelled)" in (tmp_path / "md" / "change.md").read_text()
    # a single labelled point in a stratum of many pixels
    single = points.copy()
    single.loc[stable[stable].index[1:], ["before_fine", "after_fine"]] = None
    _, said = run(single)
    assert "has a single point labelled at both dates" in said
    # a stratum deleted: the land of that transition is in no estimate
    _, said = run(points[~stable])
    assert "it has no points in 1 transition they show (Forest (unchanged)" in said
    # the maps in the other order: the accuracies are of these maps
    ref, said = run(points, after, before)
    assert "BEFORE and AFTER swapped?" in said
    # points whose stratum was blanked: left out, and said
    nameless = points.copy()
    nameless.loc[nameless.index[:2], "stratum"] = None
    _, said = run(nameless)
    assert "2 points have no stratum" in said
    # stratum areas converted to km² by hand: refused
    km2 = points.copy()
    km2["stratum_area"] = km2["stratum_area"] / 1e6
    with pytest.raises(ConfigError, match=r"stratum_area must stay as geoseg sample wrote it"):
        run(km2)
    # blanks written as text ("nan") are blanks; "inf" is not a class
    text = points.copy()
    text["after_fine"] = text["after_fine"].astype(str)
    text.loc[stable, "after_fine"] = "nan"
    _, said = run(text)
    assert "8 points labelled at one date only are left out" in said
    text.loc[stable, "after_fine"] = "inf"
    with pytest.raises(RasterFormatError, match=r"field after_fine holds 8 labels .*'inf'"):
        run(text)
    # a Shapefile converted by GDAL: field names cut to 10 characters
    shp = tmp_path / "cut.shp"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GDAL says it cuts the names
        points.to_file(shp)
    assert "before_coa" in gpd.read_file(shp).columns
    record = api.change(before, after, reference=shp, vector=False)
    assert record["reference"]["levels"] == good["levels"]
    # points without their CRS, read as pixels far off the grid
    lost = points.set_crs(None, allow_override=True)
    lost.geometry = gpd.points_from_xy(lost.geometry.x / 1e3, lost.geometry.y / 1e3)
    _, said = run(lost)
    assert f"{len(points)} points lie off the compared maps' grid" in said


@pytest.mark.filterwarnings("ignore::geoseg.sample.SmallClassWarning")  # rare transitions
def test_rare_changes_pooled_into_one_stratum(tmp_path):
    before, after = _random_pair(tmp_path, size=60, seed=1)
    record = api.change(before, after, tmp_path / "c", vector=False)
    change_tif = tmp_path / "c" / "change.tif"
    coarse = record["levels"]["coarse"]
    points = draw_change_sample(change_tif, per_class=6, pool_below=0.01)
    small = [t for t in coarse["transitions"]
             if t["changed"] and t["pixels"] < 0.01 * coarse["pixels_compared"]]  # fmt: skip
    kept = [t for t in coarse["transitions"] if t not in small]
    assert small and points["stratum"].nunique() == len(kept) + 1
    pooled = points[points["stratum"] == 0]
    assert set(pooled["stratum_name"]) == {"(other changes)"} and len(pooled) == 6
    assert pooled["stratum_area"].iloc[0] == pytest.approx(sum(t["area"] for t in small))
    drawn_from = {(int(a), int(b)) for a, b in pooled[["map_coarse_from", "map_coarse_to"]].values}
    assert drawn_from <= {(t["from_code"], t["to_code"]) for t in small}
    # whatever is pooled, perfect labels give the mapped areas, and nothing is missing
    path = tmp_path / "ref.gpkg"
    _perfectly_labelled(points).to_file(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ref = api.change(before, after, reference=path, vector=False)["reference"]
    est = {(t["from_code"], t["to_code"]): t["estimated"]
           for t in ref["levels"]["coarse"]["transitions"]}  # fmt: skip
    for t in kept:  # the pooled ones: estimated from 6 points, together
        assert est[(t["from_code"], t["to_code"])] == pytest.approx(t["area"])
    assert ref["levels"]["coarse"]["changed"]["estimated"] == pytest.approx(coarse["area_changed"])
    # without the pooled stratum, that land is missing, and said
    path.unlink()
    _perfectly_labelled(points[points["stratum"] != 0]).to_file(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        api.change(before, after, reference=path, vector=False)
    said = " ".join(str(w.message) for w in caught)
    assert re.search(r"no points in \d+ transitions they show \(", said), said
    assert "the estimates are of the region the sample was drawn in" in said
    # a kept stratum deleted from a pooled sample: its area is said, not the pooled names
    path.unlink()
    gone = points["stratum"] == points.loc[points["stratum"] != 0, "stratum"].iloc[0]
    _perfectly_labelled(points[~gone]).to_file(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        api.change(before, after, reference=path, vector=False)
    assert "transitions they show beyond its pooled stratum" in str(caught[0].message)
    # swapped maps are told from the points where a map changed class, however few
    path.unlink()
    mostly_stable = draw_change_sample(change_tif, per_class=6, total=400, pool_below=0.01)
    assert (mostly_stable["map_coarse_from"] == mostly_stable["map_coarse_to"]).mean() > 0.5
    _perfectly_labelled(mostly_stable).to_file(path)
    with pytest.warns(GeosegWarning, match="BEFORE and AFTER swapped"):
        api.change(after, before, reference=path, vector=False)
    with pytest.raises(ConfigError, match=r"--pool-below pools the transitions of a change"):
        draw_sample(before, pool_below=0.01)
    with pytest.raises(ConfigError, match=r"--pool-below 2: give a share"):
        draw_change_sample(change_tif, pool_below=2)


@pytest.mark.filterwarnings("ignore::geoseg.sample.SmallClassWarning")
def test_the_python_api_draws_and_writes_samples(tmp_path):
    before, after = _map(tmp_path / "a.tif", BEFORE), _map(tmp_path / "b.tif", AFTER)
    api.change(before, after, tmp_path / "c", vector=False)
    out = tmp_path / "ref.gpkg"
    points = api.sample(tmp_path / "c" / "change.tif", out, per_class=5)
    assert len(points) == 10 and gpd.read_file(out)["stratum_name"].tolist() == list(
        points["stratum_name"]
    )
    classes = api.sample(before, per_class=5)  # a map of classes: its coarse classes
    assert "stratum_name" not in classes and set(classes["stratum"]) == {1, 4, 7}
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        api.sample(before, out)
    assert {"sample", "zonal", "change"} <= set(api.__all__)
    # labelled in Python: the GeoDataFrame itself is the reference, as its file would be
    labelled = _perfectly_labelled(points)
    labelled.to_file(tmp_path / "labelled.gpkg")
    by_frame = api.change(before, after, reference=labelled, vector=False)["reference"]
    by_file = api.change(before, after, reference=tmp_path / "labelled.gpkg", vector=False)
    assert by_frame["levels"] == by_file["reference"]["levels"]
    assert by_frame["file"] == "the reference GeoDataFrame"
    with pytest.raises(ConfigError, match=r"reference is a list: pass the points' file"):
        api.change(before, after, reference=[1, 2], vector=False)


@pytest.mark.filterwarnings("ignore::geoseg.sample.SmallClassWarning")
def test_info_tells_a_change_tif_and_how_far_a_sample_is_labelled(tmp_path):
    _, _, points = _tiny_sample(tmp_path)
    change_tif = tmp_path / "c" / "change.tif"
    shown = CliRunner().invoke(cli, ["info", str(change_tif)])
    assert shown.exit_code == 0, shown.output
    assert "geoseg change.tif: transitions from" in shown.output
    assert "a band per level (coarse, fine)" in shown.output
    points.loc[points.index[:3], ["before_coarse", "after_coarse"]] = 4
    points.to_file(tmp_path / "ref.gpkg", layer="reference")
    shown = CliRunner().invoke(cli, ["info", str(tmp_path / "ref.gpkg")])
    assert "10 Point features" in shown.output and "; 3 labelled" in shown.output


@pytest.mark.filterwarnings("ignore::geoseg.sample.SmallClassWarning")  # rare transitions
def test_error_adjusted_change_per_zone(tmp_path):
    """--zones with --reference: each zone's transitions estimated as domains of the
    sample, adding up to the whole's estimates; a CSV row per transition found."""
    import csv

    from shapely.geometry import box

    from tests.test_change import T

    before, after = _random_pair(tmp_path, size=60, seed=2)
    api.change(before, after, tmp_path / "c", vector=False)
    points = _perfectly_labelled(draw_change_sample(tmp_path / "c" / "change.tif", per_class=8))
    points.to_file(tmp_path / "ref.gpkg")
    x0, y0 = T * (0, 0)
    halves = [box(x0, y0 - 1800, x0 + 900, y0), box(x0 + 900, y0 - 1800, x0 + 1800, y0)]
    gpd.GeoDataFrame({"NAME": ["W", "E"]}, geometry=halves, crs="EPSG:32612").to_file(
        tmp_path / "zones.gpkg"
    )
    record = api.change(before, after, tmp_path / "z", reference=tmp_path / "ref.gpkg",
                        zones=tmp_path / "zones.gpkg", zone_field="NAME", vector=False)  # fmt: skip
    ref = record["reference"]
    for lv in ("coarse", "fine"):
        whole = {(t["from_code"], t["to_code"]): t["estimated"]
                 for t in ref["levels"][lv]["transitions"]}  # fmt: skip
        summed: dict[tuple[int, int], float] = {}
        changed = 0.0
        for e in ref["by_zone"]:
            if e["level"] == lv and e["from_code"] is None:  # the zone's changed area
                changed += e["estimated"]
            elif e["level"] == lv:
                key = (e["from_code"], e["to_code"])
                summed[key] = summed.get(key, 0.0) + e["estimated"]
        assert {k: v for k, v in whole.items() if v} == pytest.approx(summed)
        assert changed == pytest.approx(ref["levels"][lv]["changed"]["estimated"])
    # perfectly labelled: each zone's estimate of a transition is what the maps show there
    rows = list(csv.DictReader((tmp_path / "z" / "change_by_zone.csv").read_text().splitlines()))
    assert {"estimated_m2", "ci95_low_m2", "ci95_high_m2", "reference_points"} <= set(rows[0])
    # each zone's changed area as a whole: mapped (the sum of its changed rows) and estimated
    for zone in ("W", "E"):
        total = next(r for r in rows if r["zone"] == zone and r["level"] == "coarse"
                     and r["from_name"] == "(any class)")  # fmt: skip
        mapped = sum(
            float(r["area_m2"])
            for r in rows
            if r["zone"] == zone and r["level"] == "coarse" and r["changed"] == "1"
            and r["from_code"]
        )  # fmt: skip
        assert float(total["area_m2"]) == pytest.approx(mapped)
        # labelled as mapped: the zone's share of each stratum, sampled, brackets it
        assert float(total["ci95_low_m2"]) <= mapped <= float(total["ci95_high_m2"])
    for r in rows:
        if r["level"] == "coarse" and int(r["reference_points"]) >= 8:
            lo, hi = float(r["ci95_low_m2"]), float(r["ci95_high_m2"])
            assert lo <= float(r["area_m2"]) <= hi, r


@pytest.mark.filterwarnings("ignore::geoseg.sample.SmallClassWarning")
def test_code_review_findings(tmp_path):
    """Zones not estimated are left blank, not 0; Water's fine label is its coarse one;
    areas' intervals stop at 0; an unlabelled stratum bounds the net changes; tables and
    empty files are refused in one line; a missing area_unit takes the maps'."""
    import csv

    from shapely.geometry import box

    from geoseg.metrics import design_total
    from tests.test_change import T

    before, after = _random_pair(tmp_path, size=60, seed=3)
    api.change(before, after, tmp_path / "c", vector=False)
    points = _perfectly_labelled(draw_change_sample(tmp_path / "c" / "change.tif", per_class=8))
    x0, y0 = T * (0, 0)
    gpd.GeoDataFrame({"NAME": ["W"]}, geometry=[box(x0, y0 - 1800, x0 + 900, y0)],
                     crs="EPSG:32612").to_file(tmp_path / "zones.gpkg")  # fmt: skip
    path = tmp_path / "ref.gpkg"

    def change(frame, **kw):
        if path.exists():
            path.unlink()
        frame.to_file(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # asserted elsewhere
            return api.change(before, after, reference=path, vector=False, **kw)

    # coarse labels only: the fine rows of change_by_zone.csv are not estimated (blank)
    coarse_only = points.copy()
    coarse_only["before_coarse"] = coarse_only["map_coarse_from"]
    coarse_only["after_coarse"] = coarse_only["map_coarse_to"]
    coarse_only[["before_fine", "after_fine"]] = None
    change(coarse_only, out=tmp_path / "z", zones=tmp_path / "zones.gpkg", zone_field="NAME")
    rows = list(csv.DictReader((tmp_path / "z" / "change_by_zone.csv").read_text().splitlines()))
    fine = [r for r in rows if r["level"] == "fine"]
    assert fine and all(r["estimated_m2"] == "" and r["ci95_low_m2"] == "" for r in fine)
    assert all(r["estimated_m2"] != "" for r in rows if r["level"] == "coarse")
    # Water, a coarse class without fine classes, labelled at the coarse level only: its
    # fine label is itself, where the points are labelled at the fine level
    water_coarse = points.copy()
    is_water = water_coarse["before_fine"] == 1
    water_coarse.loc[is_water, "before_coarse"] = 1
    water_coarse.loc[is_water, "before_fine"] = None
    ref = change(water_coarse)["reference"]
    full = change(points)["reference"]
    assert ref["levels"]["fine"] == full["levels"]["fine"]
    # an area's interval stops at 0; a net change's may go below
    d = design_total(np.array([1, 1, 2, 2]), {1: 100.0, 2: 1.0}, np.array([0.0, 1, 0, 0]),
                     method="wald")  # fmt: skip
    assert d["ci95"][0] == 0.0 and d["estimated"] == 50.0
    net = design_total(np.array([1, 1, 2, 2]), {1: 100.0, 2: 1.0}, np.array([0.0, 1, 0, 0]),
                       bounds=(-1, 1))  # fmt: skip
    assert net["ci95"][0] < 0
    # a stratum without a labelled point: each net change is bounded, not unknown
    stable = points["stratum_name"] == "Forest (unchanged)"
    blanked = points.copy()
    blanked.loc[stable, ["before_fine", "after_fine"]] = None
    ref = change(blanked)["reference"]
    forest = next(c for c in ref["levels"]["coarse"]["classes"] if c["name"] == "Forest")
    lo, hi = forest["net"]["unsampled_range"]
    area = points.loc[stable, "stratum_area"].iloc[0]
    assert hi - lo == pytest.approx(2 * area) and forest["net"]["estimated"] is None
    # a table without geometry, and a file without any stratum: one line each
    table = tmp_path / "ref.csv"
    pd.DataFrame(points.drop(columns="geometry")).to_csv(table, index=False)
    with pytest.raises(RasterFormatError, match=r"ref\.csv: its points have no geometry"):
        api.change(before, after, reference=table, vector=False)
    nameless = points.copy()
    nameless["stratum"] = None
    with pytest.raises(RasterFormatError, match=r"no point has a stratum"):
        change(nameless)
    # no area_unit: the maps' unit
    assert change(points.drop(columns="area_unit"))["reference"]["levels"] == full["levels"]


def test_classes_of_one_name_are_kept_apart():
    """Estimates are keyed by class index: two classes a taxonomy names alike stay two."""
    from geoseg.taxonomy import ClassDef

    classes = [ClassDef(code=1, name="Other"), ClassDef(code=2, name="Other")]
    stratum = np.array([1, 1, 4, 4])  # change.tif values: 1 = 1 -> 1, 4 = 2 -> 2
    est = change_estimates(
        stratum, {1: 50.0, 4: 150.0}, stratum - 1, np.array([0, 0, 1, 1]),
        np.array([0, 0, 1, 1]), np.array([[50.0, 0], [0, 150.0]]), classes,
    )  # fmt: skip
    by_value = {t["value"]: t["estimated"] for t in est["transitions"]}
    assert by_value == {1: 50.0, 4: 150.0}
    assert [(c["before"]["estimated"], c["after"]["estimated"]) for c in est["classes"]] == [
        (50.0, 50.0),
        (150.0, 150.0),
    ]


@pytest.mark.filterwarnings("ignore::geoseg.sample.SmallClassWarning")
def test_zone_estimates_bounded_only_where_unlabelled_land_lies(tmp_path):
    """From a blind test: an unlabelled stratum leaves a zone's estimates as ranges only
    where the zone holds some of its land (as much as it holds); zones without labelled
    points and points in no zone are said; a transition a zone's points never saw has no
    interval; the zone options are named as change's."""
    import csv

    from shapely.geometry import box

    from tests.test_change import T

    rng = np.random.default_rng(5)
    first = rng.choice([41, 42, 71], size=(60, 60), p=[0.5, 0.3, 0.2])
    second = first.copy()
    second[40:50, 40:50] = 1  # a new lake, in the east only: ... -> Water
    second[rng.random((60, 60)) < 0.05] = 71  # crops spread everywhere
    before, after = _map(tmp_path / "a.tif", first), _map(tmp_path / "b.tif", second)
    api.change(before, after, tmp_path / "c", vector=False)
    change_tif = tmp_path / "c" / "change.tif"
    points = _perfectly_labelled(draw_change_sample(change_tif, per_class=8))
    x0, y0 = T * (0, 0)
    zones = gpd.GeoDataFrame(
        {"NAME": ["W", "E", "corner"]},
        geometry=[box(x0, y0 - 1800, x0 + 900, y0), box(x0 + 900, y0 - 1800, x0 + 1500, y0),
                  box(x0 + 1770, y0 - 1800, x0 + 1800, y0 - 1770)],
        crs="EPSG:32612",
    )  # fmt: skip
    zones.to_file(tmp_path / "zones.gpkg")
    # the lake's strata (Forest -> Water) unlabelled: their land lies in the east only
    lake = points["map_coarse_to"].eq(1) & points["map_coarse_from"].ne(1)
    assert lake.any()
    blank = points.copy()
    blank.loc[lake, ["before_fine", "after_fine"]] = None
    path = tmp_path / "ref.gpkg"
    blank.to_file(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record = api.change(before, after, tmp_path / "z", reference=path, vector=False,
                            zones=tmp_path / "zones.gpkg", zone_field="NAME")  # fmt: skip
    said = " ".join(str(w.message) for w in caught)
    assert "1 zone (corner) holds no labelled point" in said
    assert re.search(r"\d+ labelled points lie in no zone", said)
    lake_area = float(points.loc[lake].groupby("stratum")["stratum_area"].first().sum())
    coarse = [e for e in record["reference"]["by_zone"] if e["level"] == "coarse"]
    west = [e for e in coarse if e["zone"] == "W"]
    east = [e for e in coarse if e["zone"] == "E"]
    assert west and east
    assert all(e["estimated"] is not None and "unsampled_range" not in e for e in west)
    for e in east:  # the whole lake lies in E
        lo, hi = e["unsampled_range"]
        assert e["estimated"] is None and hi - lo == pytest.approx(lake_area)
    rows = list(csv.DictReader((tmp_path / "z" / "change_by_zone.csv").read_text().splitlines()))
    unseen = [r for r in rows if r["zone"] == "W" and r["reference_points"] == "0"]
    assert unseen and all(r["ci95_low_m2"] == "" for r in unseen)
    result = CliRunner().invoke(cli, ["change", str(before), str(after), "--out",
                                      str(tmp_path / "x"), "--zones", str(tmp_path / "zones.gpkg"),
                                      "--zone-field", "NOPE", "--no-vector"])  # fmt: skip
    assert result.exit_code == 1 and "set --zone-field to the one naming each zone" in result.output
