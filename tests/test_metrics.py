import numpy as np
import pytest
from scipy import stats

from geoseg.metrics import confusion_matrix, scores


def test_confusion_matrix_by_hand():
    truth = np.array([0, 0, 1, 1, 2, 2, -1])
    pred = np.array([0, 1, 1, 1, 2, 0, 2])
    cm = confusion_matrix(truth, pred, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    s = scores(cm)
    # IoU: class0 1/(2+2-1)=1/3, class1 2/(2+3-2)=2/3, class2 1/(2+1-1)=1/2
    assert s["miou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert s["overall_accuracy"] == pytest.approx(4 / 6)
    assert s["per_class"]["1"]["precision"] == pytest.approx(2 / 3)
    assert s["per_class"]["2"]["recall"] == pytest.approx(1 / 2)


def test_absent_classes_do_not_count():
    cm = np.array([[5, 0, 0], [0, 0, 0], [0, 0, 5]])
    s = scores(cm)
    assert s["miou"] == 1.0
    assert "1" not in s["per_class"]


def test_scored_classes_leave_the_extra_column_out_of_the_means():
    """Row 0: 3 right, 1 predicted as the extra class (e.g. a childless coarse class)."""
    from geoseg.metrics import fine_confusion_matrix

    truth = np.array([0, 0, 0, 0, 1, 1])
    fine = np.array([0, 0, 0, -1, 1, -1])
    coarse = np.array([0, 0, 0, 3, 0, -1])  # the last pixel is nodata: not scored
    cm = fine_confusion_matrix(truth, fine, coarse, 2, leaf_column=True)
    assert cm.tolist() == [[3, 0, 1], [0, 1, 0], [0, 0, 0]]
    s = scores(cm, ["a", "b", "none"], scored=2)
    assert s["per_class"]["a"]["iou"] == pytest.approx(3 / 4)
    assert s["miou"] == pytest.approx((3 / 4 + 1) / 2)
    assert s["overall_accuracy"] == pytest.approx(4 / 5)
    assert "none" not in s["per_class"]
    assert fine_confusion_matrix(truth, fine, coarse, 2, leaf_column=False).tolist() == [
        [3, 0],
        [0, 1],
    ]


def test_block_bootstrap_interval_widens_with_disagreeing_blocks():
    from geoseg.metrics import bootstrap_intervals

    good = np.array([[9, 1], [1, 9]])
    bad = np.array([[5, 5], [5, 5]])
    same = bootstrap_intervals(np.stack([good] * 10), replicates=200)
    assert same["miou"][0] == same["miou"][1] == pytest.approx(scores(good)["miou"], abs=1e-4)
    mixed = np.stack([good] * 5 + [bad] * 5 + [np.zeros((2, 2), int)])
    ci = bootstrap_intervals(mixed, replicates=500, seed=1)
    point = scores(mixed.sum(axis=0))
    assert ci["blocks"] == 10  # the empty block is not resampled
    assert ci["miou"][0] < point["miou"] < ci["miou"][1]
    assert ci["overall_accuracy"][0] < point["overall_accuracy"] < ci["overall_accuracy"][1]
    assert bootstrap_intervals(mixed, replicates=500, seed=1) == ci  # seeded
    assert bootstrap_intervals(mixed[:1])["miou"] == [None, None]
    # classes beyond `scored` do not enter the mean
    extra = np.zeros((10, 3, 3), int)
    extra[:, :2, :2] = good
    extra[:, 0, 2] = 3
    only2 = bootstrap_intervals(extra, scored=2, replicates=50)
    assert only2["miou"][0] == pytest.approx(scores(extra.sum(axis=0), scored=2)["miou"], abs=1e-4)


def test_paired_bootstrap_difference():
    from geoseg.metrics import bootstrap_intervals

    rng = np.random.default_rng(0)
    hard = rng.integers(1, 20, (12, 3, 3))  # blocks of varied difficulty
    better = hard.copy()
    better[:, [0, 1, 2], [0, 1, 2]] += 10  # 10 more right pixels of each class in every block
    same = bootstrap_intervals(hard, against=hard, replicates=200)
    assert same["miou"] == [0.0, 0.0] and same["blocks"] == 12
    d = bootstrap_intervals(better, against=hard, replicates=300)
    assert 0 < d["miou"][0] < d["miou"][1] and d["overall_accuracy"][0] > 0
    with pytest.raises(ValueError, match="same blocks"):
        bootstrap_intervals(better, against=hard[:5])


def test_the_empty_no_fine_truth_row_is_dropped_and_only_it():
    from geoseg.metrics import NO_FINE, without_no_fine_row

    names = ["11 a", "12 b", NO_FINE]
    cm = np.array([[3, 0, 1], [0, 2, 0], [0, 0, 0]])
    assert without_no_fine_row(cm, names).tolist() == [[3, 0, 1], [0, 2, 0]]
    kept = np.array([[3, 0, 1], [0, 2, 0], [0, 1, 0]])  # never happens: nothing is lost
    assert without_no_fine_row(kept, names).tolist() == kept.tolist()
    square = np.array([[3, 1], [0, 2]])  # a level without the extra class
    assert without_no_fine_row(square, ["1 A", "2 B"]).tolist() == square.tolist()


def test_error_adjusted_areas_by_hand():
    """Olofsson et al. (2014): the map's class areas corrected by the sample's confusion."""
    from geoseg.metrics import Z95, area_estimates

    # the map gives 80 units to class a and 20 to b; 10 scored pixels in each mapped
    # class: of those mapped a, 9 are truly a and 1 b; of those mapped b, 2 a and 8 b
    cm = np.array([[9, 2], [1, 8]])  # rows: truth, columns: map
    area = area_estimates(cm, np.array([80.0, 20.0]), ["a", "b"])
    a, b = area["classes"]["a"], area["classes"]["b"]
    assert a["mapped"] == 80 and b["mapped"] == 20
    assert a["estimated"] == pytest.approx(100 * (0.8 * 0.9 + 0.2 * 0.2))  # 76
    assert b["estimated"] == pytest.approx(100 * (0.8 * 0.1 + 0.2 * 0.8))  # 24
    se = 100 * np.sqrt(0.8**2 * 0.9 * 0.1 / 9 + 0.2**2 * 0.2 * 0.8 / 9)
    assert a["se"] == pytest.approx(se, rel=1e-5) and b["se"] == pytest.approx(se, rel=1e-5)
    wald = area_estimates(cm, np.array([80.0, 20.0]), ["a", "b"], method="wald")
    assert wald["classes"]["a"]["ci95"] == pytest.approx([76 - Z95 * se, 76 + Z95 * se], rel=1e-5)
    # Korn and Graubard: Clopper-Pearson of the effective sample p (1 - p) / se², scaled by
    # the degrees of freedom (20 points less 2 strata) against 20 - 1
    size = 0.76 * 0.24 / (se / 100) ** 2 * (stats.t.ppf(0.975, 19) / stats.t.ppf(0.975, 18)) ** 2
    x = 0.76 * size
    hand = [
        100 * stats.beta.ppf(0.025, x, size - x + 1),
        100 * stats.beta.ppf(0.975, x + 1, size - x),
    ]
    assert a["ci95"] == pytest.approx(hand, rel=1e-5)
    assert a["ci95"][0] < 76 - Z95 * se and a["ci95"][1] < 76 + Z95 * se  # skewed toward 0.5
    assert area["overall_accuracy"] == pytest.approx(0.8 * 0.9 + 0.2 * 0.8)
    assert a["users_accuracy"] == pytest.approx(0.9) and b["users_accuracy"] == pytest.approx(0.8)
    assert a["producers_accuracy"] == pytest.approx(0.72 / 0.76, rel=1e-5)
    assert b["producers_accuracy"] == pytest.approx(0.16 / 0.24, rel=1e-5)
    assert area["total"] == 100 and area["unsampled_share"] == 0


def test_a_mapped_class_without_scored_pixels_is_taken_as_mapped():
    from geoseg.metrics import area_estimates

    cm = np.array([[4, 1, 0], [0, 5, 0], [0, 0, 0]])
    area = area_estimates(cm, np.array([50.0, 30.0, 20.0]), ["a", "b", "c"])
    assert area["unsampled_share"] == pytest.approx(0.2)
    assert area["classes"]["c"]["estimated"] == pytest.approx(20)
    assert area["classes"]["c"]["users_accuracy"] is None
    # mapped a: all 4 scored pixels are a; mapped b: 1 of its 6 is a
    assert area["classes"]["a"]["estimated"] == pytest.approx(50 + 30 / 6)
    total = sum(c["estimated"] for c in area["classes"].values())
    assert total == pytest.approx(100)
    # what is known: c's 20 units could be any class
    assert area["classes"]["a"]["unsampled_range"] == pytest.approx([55, 75])
    assert area["classes"]["c"]["unsampled_range"] == pytest.approx([0, 20])
    assert area["overall_accuracy"] is None and area["classes"]["c"]["producers_accuracy"] is None
    # a stratum of one scored pixel (a class drawn whole) adds no variance
    one = area_estimates(np.array([[3, 0], [1, 1]]), np.array([50.0, 1.0]), ["a", "b"])
    assert one["single_pixel_share"] == pytest.approx(1 / 51, abs=1e-6)
    assert one["classes"]["a"]["se"] == pytest.approx(
        51 * np.sqrt((50 / 51) ** 2 * 0.75 * 0.25 / 3), rel=1e-5
    )


def test_area_intervals_resample_the_blocks():
    from geoseg.metrics import area_intervals

    same = np.array([[[9, 2], [1, 8]]] * 5)  # every block alike: no spread
    assert area_intervals(same, np.array([80.0, 20.0]), replicates=50) == [
        [76.0, 76.0],
        [24.0, 24.0],
    ]
    mixed = np.array([[[9, 0], [0, 0]], [[0, 0], [0, 9]], [[0, 3], [0, 0]], [[0, 0], [3, 0]]])
    (lo, hi), _ = area_intervals(mixed, np.array([50.0, 50.0]), replicates=400)
    assert lo < 50 < hi
    assert area_intervals(same[:1], np.array([80.0, 20.0])) == [[None, None], [None, None]]


#: Olofsson et al. (2014), section 5, per stratum: the published area (ha), its 95 %
#: half-width, user's and producer's accuracy.
OLOFSSON_PUBLISHED = {
    "deforestation": (21_158, 6_158, 0.88, 0.75),
    "forest gain": (11_686, 3_756, 0.73, 0.85),
    "stable forest": (285_770, 15_510, 0.93, 0.93),
    "stable non-forest": (581_386, 16_282, 0.96, 0.96),
}


def test_error_adjusted_areas_reproduce_olofssons_worked_example():
    """Olofsson et al. (2014), Remote Sensing of Environment 148, section 5: 30 m map of
    four classes, a stratified sample of 640 pixels; their published estimates (ha, 95 %
    half-widths) and accuracies."""
    from geoseg.metrics import Z95, area_estimates

    names = ["deforestation", "forest gain", "stable forest", "stable non-forest"]
    sample = np.array([[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]])  # map x ref
    mapped_ha = np.array([200_000, 150_000, 3_200_000, 6_450_000]) * 0.09
    # their intervals are the normal ones
    area = area_estimates(sample.T, mapped_ha, names, method="wald")  # rows: the reference
    for name, (est, half, ua, pa) in OLOFSSON_PUBLISHED.items():
        c = area["classes"][name]
        assert c["estimated"] == pytest.approx(est, abs=1)
        assert Z95 * c["se"] == pytest.approx(half, abs=2)
        assert c["users_accuracy"] == pytest.approx(ua, abs=0.005)
        assert c["producers_accuracy"] == pytest.approx(pa, abs=0.005)
    assert area["overall_accuracy"] == pytest.approx(0.95, abs=0.005)
    # and their published 95 % half-widths of the accuracies
    half = {"deforestation": (0.07, 0.21), "stable forest": (0.04, 0.03)}
    half["stable non-forest"] = (0.02, 0.02)
    for name, (ua_half, pa_half) in half.items():
        c = area["classes"][name]
        lo, hi = c["users_accuracy_ci95"]
        assert (hi - lo) / 2 == pytest.approx(ua_half, abs=0.005)
        lo, hi = c["producers_accuracy_ci95"]
        assert (hi - lo) / 2 == pytest.approx(pa_half, abs=0.005)
    lo, hi = area["overall_accuracy_ci95"]
    assert (hi - lo) / 2 == pytest.approx(0.02, abs=0.005)
    # Korn and Graubard's on 640 points: as wide, within a tenth, and skewed away from 0
    beta = area_estimates(sample.T, mapped_ha, names)
    for name, (est, half, _, _) in OLOFSSON_PUBLISHED.items():
        lo, hi = beta["classes"][name]["ci95"]
        assert (hi - lo) / 2 == pytest.approx(half, rel=0.1)
        assert hi - est > est - lo or est > 0.5 * beta["total"]


def test_design_estimates_are_olofsson_s_on_the_sampled_map_and_stehman_s_on_another():
    """Strata = the scored map's classes: exactly area_estimates' figures; other strata:
    the hand-computed Stehman (2014) totals and ratios."""
    from geoseg.metrics import area_estimates, design_estimates

    rng = np.random.default_rng(0)
    mapped = np.array([500.0, 300.0, 150.0, 50.0])
    m = np.repeat(np.arange(4), [30, 20, 15, 10])
    r = np.where(rng.random(m.size) < 0.8, m, rng.integers(0, 4, m.size))
    cm = np.zeros((4, 4), int)
    np.add.at(cm, (r, m), 1)  # rows reference, columns map
    ols = area_estimates(cm, mapped, list("abcd"))
    des = design_estimates(m, dict(enumerate(mapped)), m, r, mapped, list("abcd"))
    for name, c in ols["classes"].items():
        for key, value in c.items():
            np.testing.assert_allclose(np.array(des["classes"][name][key], float),
                                       np.array(value, float), err_msg=f"{name} {key}")  # fmt: skip
    assert des["overall_accuracy"] == pytest.approx(ols["overall_accuracy"])
    assert des["overall_accuracy_ci95"] == pytest.approx(ols["overall_accuracy_ci95"])
    # strata (1: 60, 2: 40) that are not the scored map's classes
    stratum = np.array([1, 1, 1, 2, 2])
    mapped_class = np.array([0, 0, 1, 1, -1])  # the last point: no class on this map
    reference = np.array([0, 1, 0, 1, 1])
    args = (stratum, {1: 60.0, 2: 40.0}, mapped_class, reference, np.array([50.0, 50.0]))
    d = design_estimates(*args, ["a", "b"])
    a, b = d["classes"]["a"], d["classes"]["b"]
    assert a["estimated"] == pytest.approx(60 * 2 / 3)
    assert b["estimated"] == pytest.approx(60 / 3 + 40)  # the unmapped point's area too
    # se of a: stratum 1 (y = 1, 0, 1): A^2 s^2 / n = 3600 * (1/3) / 3
    assert a["se"] == pytest.approx(np.sqrt(3600 / 9))
    # user's accuracy of a: right and mapped a (20) over mapped a (40)
    assert a["users_accuracy"] == pytest.approx(0.5)
    # producer's of b: right b (stratum 2: 20) over reference b where the map has a
    # label (stratum 1: 20, stratum 2: 20); the unmapped point is neither right nor wrong
    assert b["producers_accuracy"] == pytest.approx(0.5)
    # overall: right (stratum 1: 20, stratum 2: 20) over mapped (60 + 20)
    assert d["overall_accuracy"] == pytest.approx(40 / 80)
    # a stratum without a labelled point: areas bounded, no interval, no overall accuracy
    u = design_estimates(stratum, {1: 60.0, 2: 40.0, 3: 10.0}, *args[2:], ["a", "b"])
    assert u["overall_accuracy"] is None and u["unsampled_share"] == pytest.approx(10 / 110)
    assert u["classes"]["a"]["unsampled_range"] == pytest.approx([40.0, 50.0])
    assert u["classes"]["a"]["se"] is None and u["classes"]["a"]["ci95"] == [None, None]


def test_the_report_says_when_strata_of_one_point_narrow_the_brackets():
    """A stratum with a single scored point adds no variance: metrics.md says so."""
    from geoseg.metrics import design_estimates
    from geoseg.report import _area_table

    area = design_estimates(np.array([1, 1, 2]), {1: 60.0, 2: 40.0}, np.array([0, 0, 1]),
                            np.array([0, 1, 1]), np.array([60.0, 40.0]), ["a", "b"])  # fmt: skip
    assert area["single_pixel_share"] == pytest.approx(0.4)
    text = "\n".join(_area_table({"unit": "pixels", "interval": "stratified", **area}, {}))
    assert "Strata of one scored point (40.0% of the area) add no variance" in text
    # a user's accuracy of 1 from one point: its empty interval is said for what it is
    assert area["classes"]["b"]["users_accuracy"] == 1.0
    assert "1.000 [0.025, 1.000] (all 1 point right)" in text  # Clopper-Pearson of 1 of 1
    assert "Korn-Graubard" in text
