"""Confidence intervals of the estimates of a stratified random sample.

The usual interval of an error-adjusted area (Olofsson et al. 2014) is the normal one,
``estimate ± 1.96 SE``. For a class or transition that covers a small share of the region
and rests on a few labelled points it is too narrow, and of zero width where no point
saw the class: the estimate's distribution is then skewed, bounded by 0, and its
variance is estimated from the few points that saw it. Survey statistics has the same
problem with rare proportions; its standard answer, adopted by the US National Center
for Health Statistics for published proportions (Parker et al. 2017), is the interval of
Korn and Graubard (1998, *Confidence intervals for proportions with small expected
number of positive counts estimated from survey data*, Survey Methodology 24): the
Clopper-Pearson interval of a binomial sample of the estimate's *effective size*
``p (1 - p) / var(p)``, that size scaled by the design's degrees of freedom, and the
sample's own size where the proportion is 0 or 1 or has no variance.

A difference of two such estimates from the same points (a class's net change, the
area at the later date less the earlier one) takes the two intervals and the
estimates' correlation to the method of variance estimates recovery (MOVER, Zou and
Donner 2008, *Construction of confidence limits about effect measures: a general
approach*, Statistics in Medicine 27; Newcombe 1998 for paired proportions).

``method="wald"`` keeps the normal interval, for figures to be set beside published
ones that use it.
"""

from __future__ import annotations

import math
from statistics import NormalDist

#: The interval methods: Korn and Graubard's, and the normal one.
METHODS = ("beta", "wald")

#: A standard error below this (of a share) is rounding: the estimate has no variance.
TINY = 1e-9

#: The largest effective sample size (beyond, the beta quantiles lose their precision).
LARGEST = 1e12

#: How each method is named in reports.
METHOD_NAMES = {
    "beta": "Korn-Graubard: Clopper-Pearson of the effective sample size",
    "wald": "normal: estimate ± 1.96 SE",
}


def check_method(method: str) -> str:
    """``method`` if it names an interval method; ``ValueError`` otherwise."""
    if method not in METHODS:
        raise ValueError(f"unknown interval method {method!r}: use one of {', '.join(METHODS)}")
    return method


def share_interval(
    p: float,
    se: float,
    n: int,
    df: float,
    *,
    method: str = "beta",
    level: float = 0.95,
    truncate: bool = False,
) -> tuple[float, float]:
    """The interval of an estimated proportion ``p`` with standard error ``se``.

    Parameters
    ----------
    p : float
        The estimate, in [0, 1] (a share of the region, or an accuracy).
    se : float
        Its standard error, from the sample's design.
    n : int
        The labelled points the proportion rests on (all the sample's for a share of
        the region, the domain's for an accuracy).
    df : float
        The design's degrees of freedom (points less strata). Where they are fewer than
        ``n - 1``, the effective sample shrinks by ``(t[n - 1] / t[df])²``; an accuracy's
        domain of fewer points than the design's degrees of freedom keeps its own
        (``n - 1``), never a larger sample.
    method : {"beta", "wald"}
        Korn and Graubard's interval, or ``p ± z se``.
    level : float
        The confidence level.
    truncate : bool
        No effective sample larger than ``n`` (a design effect of at least 1): for an
        accuracy, never surer than a simple random sample of its own points. Without it
        a domain whose largest stratum's points all agree (no variance there) gets too
        narrow an interval.

    Returns
    -------
    tuple of float
        The interval, within [0, 1] (NaN for a standard error that is not finite).

    Examples
    --------
    No point of 30 saw the class: its share is at most 1 - 0.025 ** (1 / 30).

    >>> lo, hi = share_interval(0.0, 0.0, 30, 29)
    >>> lo, round(hi, 4), round(1 - 0.025 ** (1 / 30), 4)
    (0.0, 0.1157, 0.1157)
    >>> share_interval(0.0, 0.0, 30, 29, method="wald")
    (0.0, 0.0)
    """
    p = min(max(float(p), 0.0), 1.0)
    if not math.isfinite(se):
        return math.nan, math.nan
    if check_method(method) == "wald":
        half = NormalDist().inv_cdf(0.5 + level / 2) * se
        return max(p - half, 0.0), min(p + half, 1.0)
    from scipy import special  # here: scipy's import costs every command that imports this

    if n < 1:
        return 0.0, 1.0
    if 0.0 < p < 1.0 and se > TINY:
        size = min(p * (1.0 - p) / se**2, LARGEST)
        if truncate:
            size = min(size, float(n))
        df = min(df, n - 1)
        if df >= 1:  # fewer degrees of freedom than points: a smaller effective sample
            q = 0.5 + level / 2
            size *= (special.stdtrit(n - 1, q) / special.stdtrit(df, q)) ** 2
    else:  # nothing varies (but rounding): the points' own count
        size = float(n)
    alpha = 1.0 - level
    x = p * size
    lo = 0.0 if x <= 0 else float(special.betaincinv(x, size - x + 1, alpha / 2))
    hi = 1.0 if x >= size else float(special.betaincinv(x + 1, size - x, 1 - alpha / 2))
    return lo, hi


def difference_interval(
    first: tuple[float, float, float],
    second: tuple[float, float, float],
    correlation: float,
) -> tuple[float, float]:
    """The interval of ``second - first`` from each estimate's own interval (MOVER).

    Parameters
    ----------
    first, second : tuple of float
        Each estimate and its interval, ``(estimate, low, high)``.
    correlation : float
        The correlation of the two estimates (0 where unknown).

    Returns
    -------
    tuple of float
        The interval of the difference.

    Examples
    --------
    Uncorrelated, symmetric intervals give the usual root sum of squares:

    >>> lo, hi = difference_interval((10.0, 8.0, 12.0), (15.0, 12.0, 18.0), 0.0)
    >>> round(lo, 4), round(hi, 4), round(5 - (3**2 + 2**2) ** 0.5, 4)
    (1.3944, 8.6056, 1.3944)
    """
    a, a_lo, a_hi = first
    b, b_lo, b_hi = second
    r = min(max(float(correlation), -1.0), 1.0) if math.isfinite(correlation) else 0.0
    d = b - a
    down_b, up_a = b - b_lo, a_hi - a  # the difference is lowest with b low and a high
    up_b, down_a = b_hi - b, a - a_lo
    lo = d - math.sqrt(max(down_b**2 + up_a**2 - 2 * r * down_b * up_a, 0.0))
    hi = d + math.sqrt(max(up_b**2 + down_a**2 - 2 * r * up_b * down_a, 0.0))
    return lo, hi
