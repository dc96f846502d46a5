"""Coverage of the intervals of error-adjusted change areas, by simulation.

``geoseg change --reference`` estimates each transition's area, each class's area at
both dates and its net change from a labelled sample stratified by the change map. An
interval "at 95 %" should hold the true value in 95 % of samples. This script measures
how often it does, for both interval methods (``--interval beta``, Korn and Graubard's,
and ``--interval wald``, the normal one of Olofsson et al. 2014), on a scene whose
truth is known:

- **Truth.** NLCD 2011 level 2 over Zion (``../shared/data``, or ``$GEOSEG_DATA_MIRROR``)
  is the land at date 1; date 2 adds a fire (forest to shrubland), new houses
  (shrubland to developed), barren land grown over, and a new pond.
- **Maps.** Each date's map is its truth with realistic errors: a third of the pixels
  read 2 px off (boundary errors) and 3 % relabelled at random; the later map catches
  80 % of the fire, 60 % of the houses, none of the grown-over land, and adds a false
  change (shrubland to barren).
- **Samples.** ``--samples`` draws of ``--total`` points stratified by the maps' coarse
  transitions (``geoseg sample``'s allocation: by area, at least ``--per-class`` per
  stratum), labelled from the truth, each estimated with both methods.

It prints, per method, the share of intervals that hold the truth, over the quantities
whose true area is under 1 % of the scene (rare) and over the others, the share of
intervals of zero width, and the median width of the beta intervals against the normal
ones; then the quantities the normal intervals miss most.

    python benchmarks/change_intervals.py [--samples 300] [--total 800] [--per-class 30]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _data() -> Path:
    mirror = os.environ.get("GEOSEG_DATA_MIRROR")
    folder = Path(mirror) if mirror else ROOT.parent / "shared" / "data"
    path = folder / "zion" / "nlcd2011_level2.tif"
    if not path.exists():
        sys.exit(f"{path} not found: set GEOSEG_DATA_MIRROR to the folder holding zion/")
    return path


def scenario(seed: int = 42) -> tuple[np.ndarray, ...]:
    """Truth (fine codes) at both dates and the two maps, as described above."""
    import rasterio

    with rasterio.open(_data()) as src:
        t1 = src.read(1).astype(np.int64)
    rng = np.random.default_rng(seed)
    h, w = t1.shape
    t2 = t1.copy()
    box = np.zeros((h, w), bool)

    def area(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        b = box.copy()
        b[r0:r1, c0:c1] = True
        return b

    fire, houses = area(200, 500, 300, 650), area(900, 1000, 100, 300)
    grown, pond, false = (
        area(1100, 1200, 700, 900),
        area(600, 640, 800, 860),
        area(1250, 1350, 200, 400),
    )
    t2[fire & np.isin(t1, [41, 42, 43])] = 52
    t2[houses & (t1 == 52)] = 22
    t2[grown & (t1 == 31)] = 71
    t2[pond] = 11
    valid = t1 > 0

    def mapped(truth: np.ndarray, shift: tuple[int, int]) -> np.ndarray:
        off = np.roll(truth, shift, axis=(0, 1))
        m = np.where(rng.random((h, w)) < 1 / 3, off, truth)
        noise = rng.random((h, w)) < 0.03
        m[noise] = rng.choice(np.array([21, 22, 31, 41, 42, 52, 71, 81, 90]), int(noise.sum()))
        return np.where(valid & (off > 0), m, 0)

    m1 = mapped(t1, (2, 1))
    m2 = m1.copy()
    u = rng.random((h, w))
    m2[fire & np.isin(m1, [41, 42, 43]) & (u < 0.8)] = 52
    m2[houses & (m1 == 52) & (u < 0.6)] = 22
    m2[pond] = 11
    m2[false & (m1 == 52)] = 31
    m2 = np.where(mapped(t2, (-1, 2)) > 0, m2, 0)
    return t1, t2, m1, m2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--total", type=int, default=800)
    parser.add_argument("--per-class", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from geoseg.change_reference import change_estimates
    from geoseg.intervals import METHODS
    from geoseg.sample import allocation
    from geoseg.taxonomy import load_taxonomy

    tax = load_taxonomy(ROOT / "configs" / "taxonomy" / "nlcd.yaml")
    classes = tax.coarse
    n = len(classes)
    index = np.full(256, -1, np.int64)
    for f in tax.fine:
        index[f.code] = next(i for i, c in enumerate(classes) if c.code == tax.parent_code(f.code))
    t1, t2, m1, m2 = (index[a] for a in scenario())
    ok = (m1 >= 0) & (m2 >= 0) & (t1 >= 0) & (t2 >= 0)
    pair = np.where(ok, m1 * n + m2, -1).ravel()
    before, after = t1.ravel(), t2.ravel()
    pixels = np.flatnonzero(pair >= 0)
    strata = pair[pixels]
    values, counts = np.unique(strata, return_counts=True)
    sizes = {int(s) + 1: int(k) for s, k in zip(values, counts, strict=True)}
    stratum_area = {s: float(k) * 900.0 for s, k in sizes.items()}  # 30 m pixels
    quota = allocation(sizes, args.total, args.per_class)
    members = {s: pixels[strata == s - 1] for s in sizes}
    mapped_area = np.bincount(strata, minlength=n * n).reshape(n, n) * 900.0

    tb, ta = before[pixels], after[pixels]
    scene = pixels.size * 900.0
    truth: dict[str, float] = {"changed": float((tb != ta).sum()) * 900.0}
    for i in range(n):
        for j in range(n):
            truth[f"{classes[i].name} -> {classes[j].name}"] = (
                float(((tb == i) & (ta == j)).sum()) * 900.0
            )
        truth[f"{classes[i].name} before"] = float((tb == i).sum()) * 900.0
        truth[f"{classes[i].name} after"] = float((ta == i).sum()) * 900.0
        truth[f"{classes[i].name} net"] = (
            truth[f"{classes[i].name} after"] - truth[f"{classes[i].name} before"]
        )

    # each mapped transition's user's and producer's accuracy, and those of the change
    for i in range(n):
        for j in range(n):
            name = f"{classes[i].name} -> {classes[j].name}"
            m, t = strata == i * n + j, (tb == i) & (ta == j)
            if m.any():
                truth[f"UA {name}"] = float((m & t).sum() / m.sum())
            if t.any():
                truth[f"PA {name}"] = float((m & t).sum() / t.sum())
    moved, mapped_moved = tb != ta, strata // n != strata % n
    truth["UA changed"] = float((moved & mapped_moved).sum() / mapped_moved.sum())
    truth["PA changed"] = float((moved & mapped_moved).sum() / moved.sum())

    rng = np.random.default_rng(args.seed)
    hits: dict[str, dict[str, list[bool]]] = {m: defaultdict(list) for m in METHODS}
    widths: dict[str, dict[str, list[float]]] = {m: defaultdict(list) for m in METHODS}
    for _ in range(args.samples):
        at = np.concatenate([rng.choice(members[s], quota[s], replace=False) for s in sizes])
        stratum = pair[at] + 1
        for method in METHODS:
            est = change_estimates(
                stratum, stratum_area, pair[at], before[at], after[at], mapped_area, classes,
                method=method,
            )  # fmt: skip
            ch = est["changed"]
            found = {"changed": ch["ci95"], "UA changed": ch["users_accuracy_ci95"],
                     "PA changed": ch["producers_accuracy_ci95"]}  # fmt: skip
            for t in est["transitions"]:
                name = f"{t['from_name']} -> {t['to_name']}"
                found[name] = t["ci95"]
                found[f"UA {name}"] = t["users_accuracy_ci95"]
                found[f"PA {name}"] = t["producers_accuracy_ci95"]
            for c in est["classes"]:
                for d in ("before", "after", "net"):
                    found[f"{c['name']} {d}"] = c[d]["ci95"]
            for key, (lo, hi) in found.items():
                if lo is None or key not in truth:
                    continue
                hits[method][key].append(lo - 1e-6 <= truth[key] <= hi + 1e-6)
                widths[method][key].append(hi - lo)
            # a true transition no point saw and the map does not have: no estimate, a miss
            for key, value in truth.items():
                if value and " -> " in key and key[:3] not in ("UA ", "PA ") and key not in found:
                    hits[method][key].append(False)

    def group(key: str) -> str:
        if key[:3] in ("UA ", "PA "):
            return "accuracies"
        if key.endswith(" net"):
            return "net changes"
        return "areas < 1 %" if truth[key] < 0.01 * scene else "areas >= 1 %"

    # quantities the map or the truth has (a transition neither holds is not reported)
    keys = [k for k in hits["wald"] if truth[k] != 0 or k.endswith("net")]
    print(f"{args.samples} samples of {sum(quota.values())} points in {len(sizes)} strata, "
          f"{len(keys)} quantities; share of 95 % intervals holding the truth "
          "(mean over the group's quantities), and of zero width:")  # fmt: skip
    groups = ("areas < 1 %", "areas >= 1 %", "net changes", "accuracies")
    print(f"{'':<8}" + "".join(f"{g:>22}" for g in groups))
    for method in METHODS:
        row = f"{method:<8}"
        for g in groups:
            ks = [k for k in keys if group(k) == g]
            cover = np.mean([np.mean(hits[method][k]) for k in ks])
            zero = np.mean([w == 0 for k in ks for w in widths[method][k]])
            row += f"{cover:>13.3f} ({zero:.3f})"
        print(row)
    print(f"{'(count)':<8}" + "".join(f"{sum(group(k) == g for k in keys):>22}" for g in groups))
    ratio = [
        np.median(widths["beta"][k]) / np.median(widths["wald"][k])
        for k in keys
        if np.median(widths["wald"][k]) > 0
    ]
    print(
        f"median width, beta / wald: {np.median(ratio):.2f} (quantities with a nonzero wald width)"
    )
    print("\neach class's net change (true km², coverage wald / beta, median width wald / beta):")
    for k in (k for k in keys if group(k) == "net changes"):
        print(f"  {k:<36} {truth[k] / 1e6:>+8.2f}  {np.mean(hits['wald'][k]):.2f} / "
              f"{np.mean(hits['beta'][k]):.2f}  {np.median(widths['wald'][k]) / 1e6:>6.2f} / "
              f"{np.median(widths['beta'][k]) / 1e6:.2f}")  # fmt: skip
    print("\nthe quantities the normal interval covers least (truth, coverage wald / beta):")
    worst = sorted(keys, key=lambda k: np.mean(hits["wald"][k]))[:12]
    for k in worst:
        value = f"{truth[k]:.3f}" if group(k) == "accuracies" else f"{truth[k] / 1e6:.2f} km²"
        print(f"  {k:<36} {value:>11}  {np.mean(hits['wald'][k]):.2f} / "
              f"{np.mean(hits['beta'][k]):.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
