"""How many reference points a stratified sample needs for a target precision.

Olofsson et al. (2014, *Good practices for estimating area and assessing accuracy of
land change*, section 5.1.1) size a sample for a target standard error of overall
accuracy, ``S(O)``, from each stratum's share ``W_i`` of the map and a conjectured user's
accuracy ``U_i`` (their eq. 13, Cochran's 1977 formula): ``n = (sum_i W_i S_i / S(O))²``,
``S_i = sqrt(U_i (1 - U_i))``. That ``n`` assumes the optimal (Neyman) allocation; the
sample ``geoseg sample`` draws shares points by area with at least ``per_class`` in
each stratum, which spends points on rare strata for their accuracies. So the total is
planned for the allocation drawn: the smallest ``total`` whose allocation gives an
expected standard error of overall accuracy, ``sqrt(sum_i W_i² U_i (1 - U_i) / (n_i -
1))`` (the variance :func:`geoseg.metrics.area_estimates` estimates), at most the target.
Eq. 13's figure is kept beside it, for comparison with the literature.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from geoseg.errors import ConfigError


@dataclass(frozen=True)
class TargetPrecision:
    """A target standard error of overall accuracy and the accuracies it is planned at.

    Attributes
    ----------
    se : float
        The target standard error of the overall accuracy (0.01: ± about 0.02 at 95 %).
    accuracy : float
        The user's accuracy expected in every stratum not named in ``by_stratum``.
    by_stratum : mapping of str to float
        Expected accuracies of some strata, keyed by stratum value or name (a class, or a
        transition such as ``Forest -> Shrubland``; case, spacing and arrow do not matter).
    """

    se: float
    accuracy: float = 0.8
    by_stratum: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 < self.se < 0.5:
            raise ConfigError(
                f"--target-se {self.se:g}: give the standard error of overall accuracy to "
                "reach, between 0 and 0.5 (0.01: ± 0.02 at 95 %)"
            )
        for name, u in [("", self.accuracy), *self.by_stratum.items()]:
            if not 0.0 < u < 1.0:
                key = f"{name}=" if name else ""
                raise ConfigError(
                    f"--expected-accuracy {key}{u:g}: give a user's accuracy between 0 and 1 "
                    "(0.8: four points in five right; 1 would ask for no variance, and no points)"
                )

    def of(self, strata: list[int], named: Callable[[int], str]) -> dict[int, float]:
        """Each stratum's expected accuracy (``named``: a stratum's name).

        Names match whatever their case, spacing and arrow (``->`` or ``→``); a name
        given twice (so matched) with two accuracies is refused.
        """
        from geoseg.change_sample import POOLED_NAME

        keys = {str(h): h for h in strata} | {_key(named(h)): h for h in strata}
        given: dict[int, tuple[str, float]] = {}
        for name, u in self.by_stratum.items():
            h = keys.get(_key(name))
            if h is None:
                pooled = (
                    f" (transitions pooled by --pool-below are '{POOLED_NAME}')"
                    if any(named(k) == POOLED_NAME for k in strata)
                    else ""
                )
                raise ConfigError(
                    f"--expected-accuracy {name}=...: no stratum of that value or name in this "
                    f"map{pooled}; its strata: {', '.join(named(k) for k in strata)}"
                )
            if h in given and given[h][1] != u:
                raise ConfigError(
                    f"--expected-accuracy {given[h][0]}={given[h][1]:g} and {name}={u:g} name "
                    "one stratum: give it one accuracy"
                )
            given[h] = (name, u)
        return {h: float(given[h][1]) if h in given else self.accuracy for h in strata}


def expected_se(
    areas: Mapping[int, float], quota: Mapping[int, int], accuracy: Mapping[int, float]
) -> float:
    """The standard error of overall accuracy a sample of ``quota`` points per stratum expects.

    Examples
    --------
    Olofsson et al.'s worked example: its strata's shares, the accuracies it was planned
    at, and the 75, 75, 165 and 325 points it labelled. Eq. 13 sized it for 0.01; the
    allocation, which gives the rare strata more than their optimal share, expects a
    little more:

    >>> areas = {1: 0.02, 2: 0.015, 3: 0.32, 4: 0.645}
    >>> round(expected_se(areas, {1: 75, 2: 75, 3: 165, 4: 325},
    ...                   {1: 0.7, 2: 0.6, 3: 0.9, 4: 0.95}), 4)
    0.0109
    """
    total = float(sum(areas.values()))
    var = 0.0
    for h, a in areas.items():
        n, u = quota.get(h, 0), accuracy[h]
        if n > 1:
            var += (a / total) ** 2 * u * (1.0 - u) / (n - 1)
    return math.sqrt(var)


def cochran_size(areas: Mapping[int, float], accuracy: Mapping[int, float], se: float) -> int:
    """Olofsson et al.'s eq. 13: ``(sum_i W_i S_i / S(O))²``, rounded up.

    Examples
    --------
    Their worked example: 641 points.

    >>> cochran_size({1: 0.02, 2: 0.015, 3: 0.32, 4: 0.645}, {1: 0.7, 2: 0.6, 3: 0.9, 4: 0.95},
    ...              0.01)
    641
    """
    total = float(sum(areas.values()))
    spread = sum(a / total * math.sqrt(accuracy[h] * (1 - accuracy[h])) for h, a in areas.items())
    return math.ceil(round((spread / se) ** 2, 6))


def planned_total(
    areas: Mapping[int, float],
    sizes: Mapping[int, int],
    least: int,
    accuracy: Mapping[int, float],
    se: float,
    allocate: Callable[[dict[int, int], int, int], dict[int, int]],
) -> tuple[int, float]:
    """The smallest ``total`` whose allocation reaches ``se``, and the SE it expects.

    ``allocate(sizes, total, least)`` is the sample's allocation (by pixels, at least
    ``least``, at most every pixel); where even every pixel does not reach ``se``, the
    total of every pixel.
    """
    pixels = int(sum(sizes.values()))

    def reaches(total: int) -> bool:
        return expected_se(areas, allocate(dict(sizes), total, least), accuracy) <= se

    lo, hi = 1, pixels
    if not reaches(hi):
        return hi, expected_se(areas, allocate(dict(sizes), hi, least), accuracy)
    while lo < hi:  # the expected SE does not grow with the total
        mid = (lo + hi) // 2
        if reaches(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo, expected_se(areas, allocate(dict(sizes), lo, least), accuracy)


def plan_record(
    target: TargetPrecision,
    areas: Mapping[int, float],
    sizes: Mapping[int, int],
    least: int,
    named: Callable[[int], str],
    allocate: Callable[[dict[int, int], int, int], dict[int, int]],
) -> dict[str, Any]:
    """The plan of a sample for ``target``: its ``total`` and what it expects."""
    strata = sorted(areas)
    accuracy = target.of(strata, named)
    total, se = planned_total(areas, sizes, least, accuracy, target.se, allocate)
    quota = allocate(dict(sizes), total, least)
    return {
        "target_se": target.se,
        "expected_accuracy": {named(h): accuracy[h] for h in strata},
        "total": total,
        "points": int(sum(quota.values())),
        "expected_se": round(se, 6),
        "olofsson_eq13": cochran_size(areas, accuracy, target.se),
        "reached": bool(se <= target.se),
    }


def _key(name: str) -> str:
    """A stratum's name as matched: lower case, no spaces, ``→`` as ``->``."""
    return "".join(name.replace("→", "->").lower().split())


def parse_accuracies(values: list[str] | tuple[str, ...]) -> tuple[float, dict[str, float]]:
    """``--expected-accuracy`` values: one bare number (every stratum) and ``NAME=U`` pairs.

    Examples
    --------
    >>> parse_accuracies(["0.85", "Water=0.6", "Forest -> Shrubland=0.7"])
    (0.85, {'Water': 0.6, 'Forest -> Shrubland': 0.7})
    """
    default = 0.8
    named: dict[str, float] = {}
    bare = [v for v in values if "=" not in v]
    if len(bare) > 1:
        raise ConfigError(
            f"--expected-accuracy {' and '.join(bare)}: give one accuracy for every stratum, "
            "and NAME=U for the others"
        )
    for value in values:
        key, sep, number = value.rpartition("=")
        try:
            u = float(number)
        except ValueError:
            raise ConfigError(
                f"--expected-accuracy {value}: give a user's accuracy (0.8), or a stratum's "
                "name or value and its accuracy (Water=0.6)"
            ) from None
        if sep and not key.strip():
            raise ConfigError(
                f"--expected-accuracy {value}: name the stratum before '=' (Water=0.6)"
            )
        if sep:
            if key.strip() in named and named[key.strip()] != u:
                raise ConfigError(
                    f"--expected-accuracy {key.strip()}: given twice ({named[key.strip()]:g} "
                    f"and {u:g}): give it one accuracy"
                )
            named[key.strip()] = u
        else:
            default = u
    return default, named
