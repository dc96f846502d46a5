"""Sizing a reference sample for a target standard error (geoseg sample --target-se)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from geoseg import api
from geoseg.cli import cli
from geoseg.errors import ConfigError
from geoseg.sample import allocation
from geoseg.sample_size import (
    TargetPrecision,
    cochran_size,
    expected_se,
    parse_accuracies,
    planned_total,
)

from .conftest import NLCD_YAML, write_raster

#: Olofsson et al. (2014), section 5.1: the strata's shares and the planned accuracies.
SHARES = {1: 0.02, 2: 0.015, 3: 0.32, 4: 0.645}
PLANNED = {1: 0.7, 2: 0.6, 3: 0.9, 4: 0.95}


def test_olofssons_sample_size_and_the_smallest_total_that_reaches_it():
    assert cochran_size(SHARES, PLANNED, 0.01) == 641  # their eq. 13
    # by hand: sum_i W_i sqrt(U_i (1 - U_i)), squared over S(O)²
    spread = sum(SHARES[h] * np.sqrt(PLANNED[h] * (1 - PLANNED[h])) for h in SHARES)
    assert cochran_size(SHARES, PLANNED, 0.02) == int(np.ceil((spread / 0.02) ** 2))
    # geoseg's allocation (by area, at least 75 a stratum) needs more than the optimal one
    sizes = {h: int(w * 10_000_000) for h, w in SHARES.items()}
    total, se = planned_total(SHARES, sizes, 75, PLANNED, 0.01, allocation)
    assert se <= 0.01 < expected_se(SHARES, allocation(sizes, total - 1, 75), PLANNED)
    quota = allocation(sizes, total, 75)
    assert sum(quota.values()) > 641 and quota[1] == quota[2] == 75
    # the variance, by hand: sum_i W_i² U_i (1 - U_i) / (n_i - 1)
    hand = sum(SHARES[h] ** 2 * PLANNED[h] * (1 - PLANNED[h]) / (quota[h] - 1) for h in SHARES)
    assert se == pytest.approx(np.sqrt(hand))
    # a map too small to reach it: every pixel, and what that expects
    total, se = planned_total(
        SHARES, {1: 20, 2: 15, 3: 320, 4: 645}, 10, PLANNED, 0.001, allocation
    )
    assert total == 1000 and se > 0.001


def test_expected_accuracies_by_stratum_and_their_mistakes():
    names = {1: "Water", 4: "Forest", 5: "Shrubland"}
    target = TargetPrecision(0.01, *parse_accuracies(["0.85", "water=0.6", "5=0.7"]))
    assert target.of([1, 4, 5], names.__getitem__) == {1: 0.6, 4: 0.85, 5: 0.7}
    with pytest.raises(ConfigError, match=r"Wetland=\.\.\.: no stratum .* Water, Forest, Shr"):
        TargetPrecision(0.01, 0.8, {"Wetland": 0.5}).of([1, 4, 5], names.__getitem__)
    with pytest.raises(ConfigError, match=r"--target-se 0\.6: .* between 0 and 0\.5"):
        TargetPrecision(0.6)
    with pytest.raises(ConfigError, match=r"--expected-accuracy Water=1\.5: .* between 0 and 1"):
        TargetPrecision(0.01, 0.8, {"Water": 1.5})
    with pytest.raises(ConfigError, match=r"--expected-accuracy high: give a user's accuracy"):
        parse_accuracies(["high"])
    with pytest.raises(ConfigError, match=r"--expected-accuracy =0\.5: name the stratum"):
        parse_accuracies(["=0.5", "7"])
    with pytest.raises(ConfigError, match=r"--expected-accuracy 1: .* 1 would ask for no"):
        TargetPrecision(0.01, 1.0)


def test_a_sample_sized_for_a_standard_error_reaches_it(tmp_path):
    """A map of three classes: the drawn points, counted per stratum, expect the target."""
    codes = np.full((300, 400), 42, np.uint8)
    codes[:30] = 11  # water: 10 %
    codes[250:] = 52  # shrubland: 1/6
    path = write_raster(tmp_path / "m.tif", codes, nodata=255)
    points = api.sample(path, taxonomy=NLCD_YAML, per_class=20, target_se=0.02,
                        expected_accuracy={"Water": 0.95, "*": 0.75})  # fmt: skip
    plan = points.attrs["plan"]
    assert plan["expected_accuracy"] == {"Water": 0.95, "Forest": 0.75, "Shrubland": 0.75}
    assert plan["points"] == len(points) and plan["reached"]
    n = points.groupby("stratum").size().to_dict()
    areas = points.groupby("stratum")["stratum_area"].first().to_dict()
    accuracy = {1: 0.95, 4: 0.75, 5: 0.75}
    assert expected_se(areas, n, accuracy) == pytest.approx(plan["expected_se"], abs=1e-6)
    assert plan["expected_se"] <= 0.02
    runner = CliRunner()
    args = ["sample", str(path), "--taxonomy", str(NLCD_YAML), "--per-class", "20"]
    res = runner.invoke(cli, [*args, "--out", str(tmp_path / "s.gpkg"), "--target-se", "0.02",
                              "--expected-accuracy", "0.75", "--expected-accuracy",
                              "Water=0.95"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert f"sized for a standard error of overall accuracy of 0.02 at the expected user's " \
           f"accuracies: {len(points)} points" in res.output  # fmt: skip
    both = runner.invoke(cli, [*args, "--out", str(tmp_path / "t.gpkg"), "--total", "100",
                               "--target-se", "0.02"])  # fmt: skip
    assert both.exit_code == 1 and "--total and --target-se both set" in both.output
    alone = runner.invoke(cli, [*args, "--out", str(tmp_path / "u.gpkg"),
                                "--expected-accuracy", "0.9"])  # fmt: skip
    assert alone.exit_code == 2 and "give --target-se too" in alone.output


@pytest.mark.filterwarnings("ignore::geoseg.sample.SmallClassWarning")  # rare transitions
def test_a_change_sample_sized_by_its_transitions(tmp_path):
    from geoseg.change_sample import draw_change_sample

    from .test_change_reference import _random_pair

    before, after = _random_pair(tmp_path)
    api.change(before, after, tmp_path / "c", vector=False)
    change = tmp_path / "c" / "change.tif"
    target = TargetPrecision(0.05, 0.9, {"Forest -> Water": 0.5})
    points = draw_change_sample(change, per_class=5, target=target)
    plan = points.attrs["plan"]
    assert plan["expected_accuracy"]["Forest -> Water"] == 0.5
    assert plan["expected_accuracy"]["Forest (unchanged)"] == 0.9
    assert plan["points"] == len(points) and plan["expected_se"] <= 0.05
    with pytest.raises(ConfigError, match=r"change\.tif: --expected-accuracy Mars=\.\.\."):
        draw_change_sample(change, target=TargetPrecision(0.05, 0.9, {"Mars": 0.5}))


def test_a_target_that_needs_more_points_than_anyone_labels_is_refused(tmp_path, monkeypatch):
    import geoseg.sample
    from geoseg.errors import RasterFormatError

    codes = np.full((100, 100), 42, np.uint8)
    codes[:20] = 11
    path = write_raster(tmp_path / "m.tif", codes, nodata=255)
    monkeypatch.setattr(geoseg.sample, "MAX_POINTS", 500)
    with pytest.raises(RasterFormatError, match=r"m\.tif: a standard error of overall accuracy "
                       r"of 0\.005 needs [\d,]+ points, .* use a larger target_se"):  # fmt: skip
        api.sample(path, taxonomy=NLCD_YAML, per_class=20, target_se=0.005)


def test_stratum_names_match_as_people_write_them_and_once():
    names = {1: "Forest -> Shrubland", 2: "Water (unchanged)", 3: "(other changes)"}
    for written in ("forest->shrubland", "Forest → Shrubland", " FOREST  ->  Shrubland "):
        got = TargetPrecision(0.01, 0.9, {written: 0.6}).of([1, 2, 3], names.__getitem__)
        assert got == {1: 0.6, 2: 0.9, 3: 0.9}
    with pytest.raises(ConfigError, match=r"pooled by --pool-below are '\(other changes\)'"):
        TargetPrecision(0.01, 0.9, {"Water -> Forest": 0.5}).of([1, 2, 3], names.__getitem__)
    with pytest.raises(ConfigError, match=r"name one stratum: give it one accuracy"):
        TargetPrecision(0.01, 0.9, {"water (unchanged)": 0.5, "2": 0.7}).of(
            [1, 2, 3], names.__getitem__
        )
    with pytest.raises(ConfigError, match=r"0\.75 and 0\.9: give one accuracy for every"):
        parse_accuracies(["0.75", "0.9"])
    with pytest.raises(ConfigError, match=r"Water: given twice \(0\.6 and 0\.7\)"):
        parse_accuracies(["Water=0.6", "Water=0.7"])


def test_a_target_no_sample_of_the_map_reaches_is_said(tmp_path):
    codes = np.full((30, 40), 42, np.uint8)
    codes[:5] = 11
    path = write_raster(tmp_path / "m.tif", codes, nodata=255)
    with pytest.raises(ConfigError, match=r"m\.tif: a standard error of overall accuracy of "
                       r"0\.0001 cannot be reached: all its 1,200 pixels would give "):  # fmt: skip
        api.sample(path, taxonomy=NLCD_YAML, per_class=5, target_se=0.0001)
