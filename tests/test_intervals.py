"""Intervals of stratified estimates: Korn and Graubard's, the normal one, and MOVER."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from geoseg.intervals import difference_interval, share_interval
from geoseg.metrics import Z95, design_difference, design_estimates, design_total


def _coverage(p: float, n: int, method: str) -> float:
    """The exact coverage of ``method``'s interval of a binomial share: every count's
    probability, where its interval holds ``p``."""
    held = 0.0
    for x in range(n + 1):
        share = x / n
        se = np.sqrt(share * (1 - share) / (n - 1))  # the stratified variance of one stratum
        lo, hi = share_interval(share, se, n, n - 1, method=method)
        held += stats.binom.pmf(x, n, p) if lo <= p <= hi else 0.0
    return held


@pytest.mark.parametrize(("p", "wald_at_most"), [(0.005, 0.40), (0.02, 0.87), (0.1, 0.94)])
def test_a_rare_share_is_covered_by_the_beta_interval_and_not_by_the_normal_one(p, wald_at_most):
    """Korn and Graubard's interval reduces to Clopper-Pearson on a simple random sample:
    at least 95 % coverage where the normal interval falls short, the more the rarer the
    class (100 points: 0.39 at a share of 0.5 %, 0.87 at 2 %, 0.93 at 10 %)."""
    assert _coverage(p, 100, "beta") >= 0.95
    assert _coverage(p, 100, "wald") < wald_at_most


def test_share_intervals_by_hand():
    # all 40 points saw the class: the upper bound is 1, the lower Clopper-Pearson's
    lo, hi = share_interval(1.0, 0.0, 40, 39)
    assert hi == 1.0 and lo == pytest.approx(0.025 ** (1 / 40))
    # the normal interval: p ± 1.96 se, clipped to [0, 1]
    assert share_interval(0.3, 0.1, 40, 39, method="wald") == pytest.approx(
        (0.3 - Z95 * 0.1, 0.3 + Z95 * 0.1)
    )
    assert share_interval(0.05, 0.1, 40, 39, method="wald")[0] == 0.0
    # skewed away from the bound, and widened by fewer degrees of freedom than points
    lo, hi = share_interval(0.05, 0.02, 200, 199)
    assert 0 < lo < 0.05 < hi and hi - 0.05 > 0.05 - lo
    lo_few, hi_few = share_interval(0.05, 0.02, 200, 20)
    assert lo_few < lo and hi_few > hi
    # a standard error that is rounding: the points' own count, not an infinite sample
    assert share_interval(0.5, 1e-17, 30, 29) == share_interval(0.5, 0.0, 30, 29)
    with pytest.raises(ValueError, match="unknown interval method 'exact'"):
        share_interval(0.5, 0.1, 30, 29, method="exact")


def test_a_difference_combines_its_two_intervals_by_their_correlation():
    a, b = (10.0, 8.0, 13.0), (15.0, 12.0, 19.0)
    lo0, hi0 = difference_interval(a, b, 0.0)
    assert lo0 == pytest.approx(5 - np.hypot(3, 3)) and hi0 == pytest.approx(5 + np.hypot(4, 2))
    lo, hi = difference_interval(a, b, 0.8)  # correlated estimates: a narrower difference
    assert lo0 < lo < 5 < hi < hi0
    # wholly correlated: the intervals' asymmetry alone, |3 - 2| on each side
    assert difference_interval(a, a, 1.0) == pytest.approx((-1.0, 1.0))


def test_a_net_change_no_point_saw_is_bounded_by_what_the_points_allow():
    """A class found at both dates, never seen to come or go, by 40 points in two strata:
    normal: 0 without width; beta: 0 within Clopper-Pearson's bound of 0 changes in 40."""
    stratum = np.repeat([1, 2], 20)
    areas = {1: 600.0, 2: 400.0}
    is_c = np.arange(40) % 4 == 0  # the class, at both dates
    lost = is_c & ~is_c  # before c, after another: nowhere
    gained = lost
    wald = design_difference(stratum, areas, lost, gained, method="wald")
    assert wald["estimated"] == 0.0 and wald["ci95"] == [0.0, 0.0]
    beta = design_difference(stratum, areas, lost, gained)
    u = (1 - 0.025 ** (1 / 40)) * 1000.0
    assert beta["ci95"] == pytest.approx([-u, u], rel=1e-5)
    # one point of stratum 1 saw a gain: the same estimate and standard error either way
    gained = np.zeros(40, bool)
    gained[3] = True
    w, b = (design_difference(stratum, areas, lost, gained, method=m) for m in ("wald", "beta"))
    assert w["estimated"] == b["estimated"] == 30.0 and w["se"] == b["se"]
    assert w["ci95"] == pytest.approx([30 - Z95 * 30, 30 + Z95 * 30], rel=1e-5)
    # beta: the gained area's own interval (skewed: it stops short of 0), and no loss seen
    gain = design_total(stratum, areas, gained.astype(float))["ci95"]
    assert 0 < gain[0] < 30 and gain[1] > 30 + Z95 * 30
    assert b["ci95"] == pytest.approx([30 - np.hypot(30 - gain[0], u), gain[1]], rel=1e-5)


def test_an_accuracy_of_few_points_in_a_large_design_keeps_its_own_width():
    """8 of a class's 10 points right, in a design of 600 points: never narrower than the
    exact interval of those 10 points (the design's degrees of freedom do not lend it
    more), and a standard error that is not finite gives no interval."""
    lo, hi = share_interval(0.8, np.sqrt(0.8 * 0.2 / 9), 10, 600)
    assert lo < stats.beta.ppf(0.025, 8, 3) and hi > stats.beta.ppf(0.975, 9, 2)
    assert all(np.isnan(share_interval(0.8, float("nan"), 10, 600)))


def test_no_change_seen_nor_mapped_is_bounded_not_certain():
    from geoseg.change_reference import change_estimates
    from geoseg.taxonomy import Taxonomy

    tax = Taxonomy.from_dict({"name": "t", "coarse": [{"code": 1, "name": "A"},
                                                     {"code": 2, "name": "B"}]})  # fmt: skip
    stratum = np.repeat([1, 4], 30)  # unchanged A, unchanged B (pairs 0 and 3, plus one)
    cls = np.repeat([0, 1], 30)
    mapped_pair = cls * 2 + cls
    mapped_area = np.array([[700.0, 0.0], [0.0, 300.0]])
    areas = {1: 700.0, 4: 300.0}
    est = {m: change_estimates(stratum, areas, mapped_pair, cls, cls, mapped_area, tax.coarse,
                               method=m)["changed"] for m in ("wald", "beta")}  # fmt: skip
    assert est["wald"]["estimated"] == est["beta"]["estimated"] == 0.0
    assert est["wald"]["ci95"] == [0.0, 0.0]
    assert est["beta"]["ci95"] == pytest.approx([0.0, (1 - 0.025 ** (1 / 60)) * 1000], rel=1e-5)


def test_an_accuracy_is_never_surer_than_a_simple_random_sample_of_its_points():
    """A user's accuracy over two strata, the large one's 33 points all right: the
    stratified variance rests on the small stratum alone; the interval is that of a
    simple random sample of the 63 points (Clopper-Pearson), not narrower."""
    stratum = np.repeat([1, 2], [33, 30])
    reference = np.zeros(63, int)
    reference[33:36] = 1  # 3 of the small stratum's 30 points are another class
    d = design_estimates(stratum, {1: 900.0, 2: 100.0}, np.zeros(63, int), reference,
                         np.array([1000.0, 0.0]), ["a", "b"])["classes"]["a"]  # fmt: skip
    assert d["users_accuracy"] == pytest.approx(0.9 + 0.1 * 0.9)
    # 63 points, scaled by the design's degrees of freedom (63 less 2 strata) against 62
    size = 63 * (stats.t.ppf(0.975, 62) / stats.t.ppf(0.975, 61)) ** 2
    x = d["users_accuracy"] * size
    exact = [stats.beta.ppf(0.025, x, size - x + 1), stats.beta.ppf(0.975, x + 1, size - x)]
    assert d["users_accuracy_ci95"] == pytest.approx(exact, abs=2e-6)
    se = np.sqrt(0.1**2 * 0.9 * 0.1 / 29)  # the small stratum's share of the variance
    untruncated = share_interval(0.99, se, 63, 61)
    assert untruncated[0] > exact[0]  # the design's own effective sample: narrower
