"""How to read the classes of a land-cover map: its taxonomy, and which bands hold what.

A geoseg ``labels.tif`` carries its taxonomy (the ``GEOSEG_TAXONOMY`` tag) and holds
coarse codes in band 1 and fine codes in band 2. Any other map of class codes (NLCD,
ESA WorldCover, another classifier's, a geoseg map whose tags were lost) is read with a
taxonomy given as a YAML file or a bundle: a single band of coarse or fine codes (which
one is read from its codes, or given as ``level``), or two bands, coarse then fine. A
given taxonomy is checked against the one a geoseg map records: codes that differ are
an error, names that differ a :class:`~geoseg.errors.TaxonomyMismatchWarning`.

:func:`map_reading` makes a :class:`MapReading`, which ``geoseg evaluate``, ``change``,
``zonal`` and ``sample`` use to turn a window of a map into class indices per level.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from rasterio.windows import Window

from geoseg import fixes
from geoseg.errors import (
    ConfigError,
    RasterFormatError,
    TaxonomyMismatchWarning,
)
from geoseg.raster import alpha_bands, class_codes, masked_out
from geoseg.taxonomy import Taxonomy, load_taxonomy, lookup_codes

LEVELS = ("coarse", "fine")
Level = Literal["coarse", "fine"]

#: Band descriptions that geoseg writes (:data:`geoseg.write.BAND_NAMES`), kept by most copies.
_LEVEL_BANDS = ("coarse", "fine")


log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Layout:
    """Which bands of a prediction hold which level's codes (1-based, ``None``: absent).

    Both bands: coarse and fine codes, as in a geoseg ``labels.tif``. A coarse band
    alone: a coarse-only prediction. A fine band alone: one band of fine codes, in
    which a coarse class without fine classes stands for itself (a leaf map).
    """

    coarse: int | None
    fine: int | None

    @property
    def has_fine(self) -> bool:
        """Whether the prediction has a fine level."""
        return self.fine is not None


def check_level(level: str | None) -> None:
    """Refuse a ``level`` that is not ``coarse`` or ``fine`` (a Python caller's typo).

    Examples
    --------
    >>> check_level("fine")
    """
    if level not in (None, *LEVELS):
        raise ConfigError(f"level {level!r} is not one of coarse, fine")


def load_scoring_taxonomy(source: str | Path) -> Taxonomy:
    """The taxonomy of a YAML file, or of a bundle directory (its ``bundle.json``).

    Raises
    ------
    ConfigError
        The YAML file is missing or not a valid taxonomy.
    BundleError
        The directory is not a valid bundle.
    """
    path = Path(source)
    if path.is_dir():
        from geoseg.bundle import read_meta

        return read_meta(path).taxonomy
    return load_taxonomy(path)


def tagged_taxonomy(src: Any, path: str) -> Taxonomy | None:
    """The taxonomy a geoseg ``labels.tif`` records in its tags, or ``None``."""
    from geoseg.write import refuse_probabilities

    refuse_probabilities(src, path)
    raw = src.tags().get("GEOSEG_TAXONOMY")
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        raise RasterFormatError(
            f"{path}: its GEOSEG_TAXONOMY tag is not valid JSON: pass --taxonomy with the "
            "taxonomy of its codes"
        ) from None
    return Taxonomy.from_dict(data, source=f"{path} (GEOSEG_TAXONOMY tag)")


def taxonomy_differences(a: Taxonomy, b: Taxonomy, names: tuple[str, str]) -> list[str]:
    """How the codes of taxonomies ``a`` and ``b`` (called ``names``) differ, one phrase each.

    Codes, fine classes' parents and the nodata value are compared; names and colours
    are not (they do not change a score).

    Examples
    --------
    >>> t = Taxonomy.from_dict({"name": "t", "coarse": [{"code": 1, "name": "A"}],
    ...     "fine": [{"code": 11, "name": "a", "parent": 1}]})
    >>> u = Taxonomy.from_dict({**t.to_dict(), "fine": [{"code": 12, "name": "a", "parent": 1}]})
    >>> taxonomy_differences(t, u, ("T", "U"))
    ['fine codes 11 only in T, 12 only in U']
    """
    out = []
    if a.nodata != b.nodata:
        out.append(f"nodata {a.nodata} in {names[0]}, {b.nodata} in {names[1]}")
    for lvl in LEVELS:
        ca, cb = (
            {c.code: c.parent for c in (t.coarse if lvl == "coarse" else t.fine)} for t in (a, b)
        )
        only = [
            f"{_codes(sorted(x.keys() - y.keys()))} only in {n}"
            for x, y, n in ((ca, cb, names[0]), (cb, ca, names[1]))
            if x.keys() - y.keys()
        ]
        if only:
            out.append(f"{lvl} codes {', '.join(only)}")
        moved = [c for c in sorted(ca.keys() & cb.keys()) if ca[c] != cb[c]]
        if moved:
            out.append(
                f"fine codes {_codes(moved)} have parents {_codes([ca[c] for c in moved])} in "
                f"{names[0]}, {_codes([cb[c] for c in moved])} in {names[1]}"
            )
    return out


def _codes(codes: list[Any]) -> str:
    return ", ".join(map(str, codes[:10])) + (f" and {len(codes) - 10} more" if codes[10:] else "")


def _scoring_taxonomy(
    pred_tax: Taxonomy | None,
    given: Taxonomy | None,
    given_name: str,
    shown: str,
    conflict_fix: str | None = None,
) -> Taxonomy:
    """The taxonomy to score with: the prediction's, the given one, or both when they agree.

    A coarse-only prediction (its model was trained without fine labels) takes the
    given taxonomy's fine classes, whose parents turn fine truth into coarse truth.

    Raises
    ------
    RasterFormatError
        Neither is known (a map that geoseg did not write, and no taxonomy given).
    ConfigError
        The two give codes different meanings.

    Warns
    -----
    TaxonomyMismatchWarning
        The two have the same codes under other names (the prediction's are used).
    """
    if given is None:
        if pred_tax is None:
            raise RasterFormatError(
                f"{shown}: not a geoseg labels.tif (no GEOSEG_TAXONOMY tag: written by another "
                "program, or its tags were lost), so its class codes are unknown: pass "
                "--taxonomy with the taxonomy YAML (or the bundle) of its codes"
            )
        return pred_tax
    if pred_tax is None:
        return given
    coarse_only = not pred_tax.n_fine
    other = Taxonomy.from_dict({**given.to_dict(), "fine": []}) if coarse_only else given
    if diff := taxonomy_differences(pred_tax, other, ("the model's", given_name)):
        raise ConfigError(
            f"{shown}: its taxonomy {pred_tax.name!r} (the model's) and {given_name} "
            f"({given.name!r}) give codes "
            f"different meanings ({'; '.join(diff)}), "
            + (
                conflict_fix
                or "so scores would be meaningless: score against truth coded in the model's "
                f"taxonomy (its training config's), or retrain with {given_name}"
            )
        )
    renamed = [
        f"{c.code} {c.name!r} is {d.name!r}"
        for mine_cls, theirs in ((pred_tax.coarse, other.coarse), (pred_tax.fine, other.fine))
        for c in mine_cls
        for d in theirs
        if c.code == d.code and c.name != d.name
    ]
    if renamed or pred_tax.name != given.name:
        what = f"class {', '.join(renamed[:5])}" if renamed else f"it is named {given.name!r}"
        warnings.warn(
            f"{given_name}: has the codes of the model's taxonomy {pred_tax.name!r} but other "
            f"names ({what} there): the report uses the model's names; check that "
            f"{given_name} is the taxonomy the truth is coded in",
            TaxonomyMismatchWarning,
            stacklevel=3,
        )
    return given if coarse_only else pred_tax


def _prediction_layout(
    src: Any,
    path: str,
    pred_tax: Taxonomy | None,
    tax: Taxonomy,
    level: Level | None,
    strip_rows: int,
    what: str = "the prediction",
) -> _Layout:
    """Which bands of the prediction hold which level (see :class:`_Layout`).

    Raises
    ------
    ConfigError
        ``level`` given for a map of both levels, fine for a taxonomy without fine
        classes, or a single band whose level its codes do not decide.
    RasterFormatError
        More than two bands, none described as coarse or fine, or a single band with
        no code of the taxonomy.
    """
    # an alpha band (a gray + alpha map) holds no codes: it masks the others
    count = src.count - len(alpha_bands(src))
    if pred_tax is not None and count >= 2:
        layout = _Layout(1, 2 if pred_tax.n_fine else None)  # geoseg's labels.tif
    else:
        desc = [(d or "").strip().lower() for d in src.descriptions]
        if count >= 2 and all(lvl in desc for lvl in _LEVEL_BANDS):
            layout = _Layout(desc.index("coarse") + 1, desc.index("fine") + 1)
        elif count == 2:
            layout = _Layout(1, 2)
        elif count > 2:
            raise RasterFormatError(
                f"{path}: {count} bands, none described as 'coarse' or 'fine', so which "
                f"holds class codes is unknown: pass one band of class codes "
                f"({fixes.one_band(path)}), or two bands, coarse then fine"
            )
        else:
            if level is not None:
                _check_forced_level(src, path, tax, level, strip_rows, what)
            lvl = level or (desc[0] if desc[0] in _LEVEL_BANDS else None)
            lvl = lvl or _single_band_level(src, path, tax, strip_rows, what)
            if lvl == "fine" and not tax.n_fine:
                raise ConfigError(
                    f"{path}: --level fine, but taxonomy {tax.name} has no fine classes: pass "
                    "--level coarse, or a taxonomy with fine classes"
                )
            return _Layout(1, None) if lvl == "coarse" else _Layout(None, 1)
    if level is not None:
        raise ConfigError(
            f"{path}: --level {level} is for a map of a single band, and this one has a "
            "coarse and a fine band: drop --level"
        )
    return layout


def _band_codes(src: Any, path: str, strip_rows: int, what: str = "the prediction") -> set[int]:
    """The distinct codes of a single-band map (``-1``: nodata), read in strips."""
    seen: set[int] = set()
    for r0 in range(0, src.height, strip_rows):
        win = Window(0, r0, src.width, min(strip_rows, src.height - r0))
        seen.update(np.unique(read_codes(src, win, path, what=what)).tolist())
    return seen


def _check_forced_level(
    src: Any, path: str, tax: Taxonomy, level: Level, strip_rows: int, what: str
) -> None:
    """Refuse ``--level`` for a single band whose codes are all of the other level.

    Every pixel would be a code the taxonomy does not list at that level.
    """
    seen = _band_codes(src, path, strip_rows, what) - {-1, tax.nodata}
    coarse = set(tax.coarse_codes.tolist())
    leaves = set(tax.fine_codes.tolist()) | set(
        tax.coarse_codes[tax.childless_coarse_index].tolist()
    )
    wanted, other = (coarse, leaves) if level == "coarse" else (leaves, coarse)
    if seen and not seen & wanted and seen & other:
        flip = "fine" if level == "coarse" else "coarse"
        raise ConfigError(
            f"{path}: --level {level}, and none of its codes ({_codes(sorted(seen))}) is a "
            f"{level} code of taxonomy {tax.name}, while they are {flip} codes: pass "
            f"--level {flip}"
        )


def _single_band_level(src: Any, path: str, tax: Taxonomy, strip_rows: int, what: str) -> Level:
    """Whether a single band holds coarse or fine codes of ``tax``, judged from its codes.

    Codes of neither level are ignored here (they are warned about when scoring). The
    band is fine when every other code is a fine code, or a coarse code without fine
    classes (a leaf of its own), coarse when every one is a coarse code.

    Raises
    ------
    RasterFormatError
        No code of the band is a code of ``tax``.
    ConfigError
        The codes fit both levels, or neither.
    """
    seen = _band_codes(src, path, strip_rows, what) - {-1, tax.nodata}
    coarse, fine = set(tax.coarse_codes.tolist()), set(tax.fine_codes.tolist())
    leaves = fine | set(tax.coarse_codes[tax.childless_coarse_index].tolist())
    known = sorted(seen & (coarse | fine))
    if not known:
        raise RasterFormatError(
            f"{path}: no code of the map is a class code of taxonomy {tax.name} (codes found: "
            f"{_codes(sorted(seen))}): pass the taxonomy the map is coded in"
        )
    as_coarse = set(known) <= coarse
    as_fine = set(known) <= leaves and bool(set(known) & fine)
    if as_coarse and as_fine:
        raise ConfigError(
            f"{path}: its codes {_codes(known)} are coarse codes of taxonomy {tax.name} and "
            "fine codes (or coarse classes without fine classes) too, so the level of this "
            "single band is ambiguous: pass --level coarse or --level fine"
        )
    if as_coarse or as_fine:
        return "coarse" if as_coarse else "fine"
    parents = sorted(set(known) - leaves)
    raise ConfigError(
        f"{path}: a single band that mixes coarse codes of classes with fine classes "
        f"({_codes(parents)}) and fine codes ({_codes(sorted(set(known) & fine))}) of taxonomy "
        f"{tax.name}: pass --level coarse or --level fine (the codes of the other level are "
        "then not scored)"
    )


def _code_luts(tax: Taxonomy) -> dict[str, np.ndarray]:
    """Code-to-index tables of ``tax``: coarse, fine, and leaf (childless coarse codes only)."""
    luts = {lvl: tax.code_to_index_lut(lvl) for lvl in LEVELS}
    return {**luts, "leaf": tax.childless_code_lut(luts["coarse"].size)}


def _prediction_indices(
    src: Any,
    win: Window,
    layout: _Layout,
    tax: Taxonomy,
    luts: dict[str, np.ndarray],
    path: str,
    what: str = "the prediction",
    keep: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coarse and fine class indices of a strip (``-1``: none), and its codes outside ``tax``.

    Where the coarse class is valid but the fine index is ``-1``, the prediction has no
    fine class there (a coarse class without fine classes won, or a fine code outside
    the taxonomy); fine scores count such pixels as misses. ``luts``: :func:`_code_luts`.
    ``keep``: the pixels to read; the others are taken as nodata.
    """

    def codes(band: int) -> np.ndarray:
        c = read_codes(src, win, path, band=band, what=what)
        c[c == tax.nodata] = -1
        if keep is not None:
            c[~keep] = -1
        return c

    if layout.coarse is not None:
        cc = codes(layout.coarse)
        pc = lookup_codes(cc, luts["coarse"])
        unknown = cc[(cc >= 0) & (pc < 0)]
        pf = np.full(pc.shape, -1, np.int64)
        if layout.fine is not None:
            fc = codes(layout.fine)
            pf = np.where(pc >= 0, lookup_codes(fc, luts["fine"]), -1)
            unknown = np.concatenate([unknown, fc[(pc >= 0) & (fc >= 0) & (pf < 0)]])
        return pc, pf, unknown
    fc = codes(layout.fine)  # type: ignore[arg-type]  # a layout has at least one band
    leaf = lookup_codes(fc, luts["leaf"])  # a childless coarse code first, as in training
    pf = np.where(leaf >= 0, -1, lookup_codes(fc, luts["fine"]))
    pc = np.where(pf >= 0, tax.fine_parent_index[np.maximum(pf, 0)], leaf)
    return pc, pf, fc[(fc >= 0) & (pc < 0)]


#: Reads a window of a map as its coarse and fine class indices (``-1``: none) and the
#: codes it holds outside the taxonomy (see :meth:`MapReading.read`).
MapWindowReader = Callable[[Window], tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class MapReading:
    """How to read the classes of a land-cover map: its taxonomy and which bands hold what.

    Made by :func:`map_reading`. :meth:`read` applies to the map itself or to the map
    resampled onto another grid (a VRT of the same bands).

    Attributes
    ----------
    path : str
        The map, for messages.
    taxonomy : Taxonomy
        The map's classes.
    layout : _Layout
        Which bands hold the coarse and the fine codes.
    what : str
        What the map is, for messages ("the prediction", "the later map").
    tagged : bool
        Whether the map carries its taxonomy (a geoseg map).
    """

    path: str
    taxonomy: Taxonomy
    layout: _Layout
    luts: dict[str, np.ndarray] = field(repr=False)
    what: str = "the prediction"
    tagged: bool = False

    @property
    def has_fine(self) -> bool:
        """Whether the map has a fine level (a coarse-only map has not)."""
        return self.layout.has_fine

    @property
    def two_levels(self) -> bool:
        """Whether the map has a band of each level (whose codes can disagree)."""
        return self.layout.coarse is not None and self.layout.fine is not None

    def read(
        self, src: Any, win: Window, keep: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Coarse and fine class indices of ``win`` of ``src`` (``-1``: none), and stray codes.

        The stray codes are those the window holds that the taxonomy does not list.
        ``keep``: the window's pixels to read (the others are as nodata: a resampled
        map's pixels it does not reach).
        """
        return _prediction_indices(
            src, win, self.layout, self.taxonomy, self.luts, self.path, self.what, keep
        )


def map_reading(
    src: Any,
    path: str,
    taxonomy: str | Path | Taxonomy | None = None,
    level: Level | None = None,
    *,
    strip_rows: int = 512,
    what: str = "the prediction",
    conflict_fix: str | None = None,
) -> MapReading:
    """How to read the classes of a land-cover map, as ``geoseg evaluate`` reads a prediction.

    A geoseg ``labels.tif`` carries its taxonomy; any other map of class codes (one
    band of coarse or fine codes, or two bands, coarse then fine) needs ``taxonomy``,
    and a single band whose codes fit both levels needs ``level``.

    Parameters
    ----------
    src : rasterio dataset
        The open map.
    path : str
        The map, for messages.
    taxonomy : str, Path or Taxonomy, optional
        A taxonomy YAML or a bundle (or the taxonomy itself): the map's codes (checked
        against a geoseg map's own).
    level : {"coarse", "fine"}, optional
        The level of a single band.
    strip_rows : int
        Rows read at a time when a single band's codes are looked at to find its level.
    what : str
        What the map is, for messages.
    conflict_fix : str, optional
        What to do where ``taxonomy`` gives a geoseg map's codes other meanings (by
        default: score against truth of the model's taxonomy, or retrain).

    Raises
    ------
    RasterFormatError, ConfigError
        As :func:`geoseg.evaluate.evaluate_labels` for its prediction.
    """
    if isinstance(taxonomy, Taxonomy):
        given, given_name = taxonomy, f"taxonomy {taxonomy.name!r}"
    elif taxonomy is not None:
        given, given_name = load_scoring_taxonomy(taxonomy), str(taxonomy)
    else:
        given, given_name = None, ""
    pred_tax = tagged_taxonomy(src, path)
    tax = _scoring_taxonomy(pred_tax, given, given_name, path, conflict_fix)
    layout = _prediction_layout(src, path, pred_tax, tax, level, strip_rows, what)
    return MapReading(path, tax, layout, _code_luts(tax), what, pred_tax is not None)


def check_bundle_taxonomy(model: Taxonomy, taxonomy: str | Path, bundle: str | Path) -> None:
    """Refuse, before predicting anything, a bundle whose codes mean other classes.

    The check :func:`geoseg.evaluate.evaluate_labels` makes on each prediction (see
    :func:`_scoring_taxonomy`), made once on the bundle's own taxonomy ``model`` so that
    a mismatch is reported before every scene of a config has been predicted.

    Parameters
    ----------
    model : Taxonomy
        The bundle's taxonomy (``bundle.json``).
    taxonomy : str or Path
        The taxonomy YAML the truth is coded in (the config's).
    bundle : str or Path
        The bundle, named in the error.

    Raises
    ------
    ConfigError
        The bundle's taxonomy and ``taxonomy`` (the truth's) give codes other meanings.
    """
    with warnings.catch_warnings():  # renamed classes are reported once, when scoring
        warnings.simplefilter("ignore", TaxonomyMismatchWarning)
        _scoring_taxonomy(model, load_scoring_taxonomy(taxonomy), str(taxonomy), str(bundle))


def read_codes(
    rd: Any, win: Window, path: str | Path, *, band: int = 1, what: str = "truth"
) -> np.ndarray:
    """A band of a label raster as int64 codes, ``-1`` where nodata (or NaN in a float raster).

    Pixels that an internal mask or an alpha band leaves out are nodata too
    (:func:`geoseg.raster.masked_out`), as ``geoseg vectorize`` reads them.

    Raises
    ------
    RasterFormatError
        A float raster holds a value that is not a whole number.
    """
    raw = rd.read(band, window=win)
    out = masked_out(rd, band, win)
    if out is not None and raw.dtype.kind == "f":  # what lies under the mask is no code
        raw = np.where(out, np.nan, raw)
    codes = class_codes(raw, rd.nodata, path, what)
    if out is not None:
        codes[out] = -1
    return codes
