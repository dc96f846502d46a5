"""Two-level class taxonomies: coarse classes and fine classes with a parent each.

A taxonomy is loaded from YAML (``configs/taxonomy/*.yaml``) and validated: codes
are unique within a level, no code equals the nodata value, and every fine class has
exactly one existing parent. It also fixes the index order the model uses: coarse
index ``i`` is ``coarse[i]``, fine index ``j`` is ``fine[j]``.

The *leaves* of the hierarchy are what the decoder chooses between at every pixel:
every fine class, plus every coarse class that has no fine children (there the fine
band holds nodata).
"""

from __future__ import annotations

import logging
import re
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from geoseg.errors import ConfigError, read_yaml, validation_message

log = logging.getLogger(__name__)

_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


class ClassDef(BaseModel):
    """One class of a taxonomy level."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: int = Field(ge=0, le=65535)
    name: str = Field(min_length=1)
    color: str = "#808080"
    parent: int | None = None

    @field_validator("color")
    @classmethod
    def _check_color(cls, value: str) -> str:
        if not _HEX.match(value):
            raise ValueError(f"colour {value!r} is not of the form '#rrggbb'")
        return value.lower()

    @property
    def rgb(self) -> tuple[int, int, int]:
        """The colour as an (r, g, b) triple of 0-255 integers."""
        return (int(self.color[1:3], 16), int(self.color[3:5], 16), int(self.color[5:7], 16))


class Taxonomy(BaseModel):
    """A validated two-level taxonomy.

    Examples
    --------
    >>> tax = Taxonomy.model_validate({
    ...     "name": "demo", "nodata": 255,
    ...     "coarse": [{"code": 1, "name": "Forest"}, {"code": 2, "name": "Water"}],
    ...     "fine": [{"code": 11, "name": "Deciduous", "parent": 1},
    ...              {"code": 12, "name": "Evergreen", "parent": 1}]})
    >>> tax.parent_code(12)
    1
    >>> [c.name for c in tax.leaves]
    ['Deciduous', 'Evergreen', 'Water']
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    nodata: int = Field(default=255, ge=0, le=65535)
    coarse: tuple[ClassDef, ...] = Field(min_length=1)
    fine: tuple[ClassDef, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> Taxonomy:
        for level, classes in (("coarse", self.coarse), ("fine", self.fine)):
            codes = [c.code for c in classes]
            dupes = sorted({c for c in codes if codes.count(c) > 1})
            if dupes:
                raise ValueError(f"{level} codes {dupes} are listed more than once")
            if self.nodata in codes:
                raise ValueError(
                    f"{level} code {self.nodata} equals the nodata value: "
                    "change the class code or set another 'nodata'"
                )
        coarse_codes = {c.code for c in self.coarse}
        for c in self.coarse:
            if c.parent is not None:
                raise ValueError(f"coarse class {c.code} ({c.name}) must not have a parent")
        for f in self.fine:
            if f.parent is None:
                raise ValueError(f"fine class {f.code} ({f.name}) has no 'parent'")
            if f.parent not in coarse_codes:
                raise ValueError(
                    f"fine class {f.code} ({f.name}) has parent {f.parent}, which is not a "
                    f"coarse code (coarse codes: {sorted(coarse_codes)})"
                )
        return self

    # ------------------------------------------------------------------ lookups
    @property
    def n_coarse(self) -> int:
        """Number of coarse classes."""
        return len(self.coarse)

    @property
    def n_fine(self) -> int:
        """Number of fine classes."""
        return len(self.fine)

    @cached_property
    def coarse_codes(self) -> np.ndarray:
        """Coarse codes in index order."""
        return np.array([c.code for c in self.coarse], dtype=np.int64)

    @cached_property
    def fine_codes(self) -> np.ndarray:
        """Fine codes in index order."""
        return np.array([c.code for c in self.fine], dtype=np.int64)

    @cached_property
    def fine_parent_index(self) -> np.ndarray:
        """For each fine index, the index of its coarse parent."""
        pos = {c.code: i for i, c in enumerate(self.coarse)}
        return np.array([pos[f.parent] for f in self.fine], dtype=np.int64)  # type: ignore[index]

    @cached_property
    def childless_coarse_index(self) -> np.ndarray:
        """Indices of the coarse classes that have no fine children."""
        has_child = set(self.fine_parent_index.tolist())
        return np.array([i for i in range(self.n_coarse) if i not in has_child], dtype=np.int64)

    def contradicts(self, coarse: np.ndarray, fine: np.ndarray) -> np.ndarray:
        """Where both levels are labelled and the coarse index is not the fine's parent.

        ``coarse`` and ``fine`` hold class indices, ``-1`` where unlabelled.

        Examples
        --------
        >>> t = Taxonomy.from_dict({"name": "t", "coarse": [{"code": 1, "name": "A"},
        ...     {"code": 2, "name": "B"}], "fine": [{"code": 11, "name": "a", "parent": 1}]})
        >>> t.contradicts(np.array([0, 1, -1]), np.array([0, 0, 0])).tolist()
        [False, True, False]
        """
        both = (coarse >= 0) & (fine >= 0)
        parent = self.fine_parent_index[np.where(both, fine, 0)] if self.n_fine else coarse
        return both & (parent != coarse)

    def leaf_index(self, coarse: np.ndarray, fine: np.ndarray) -> np.ndarray:
        """Each pixel's leaf (:attr:`leaves`) index from its coarse and fine class indices.

        The fine index where there is one, else the coarse class's own leaf where it has
        no fine classes, else ``-1`` (unlabelled, or a fine class unknown).

        Examples
        --------
        >>> t = Taxonomy.from_dict({"name": "t", "coarse": [{"code": 1, "name": "A"},
        ...     {"code": 2, "name": "B"}], "fine": [{"code": 11, "name": "a", "parent": 1}]})
        >>> t.leaf_index(np.array([0, 1, 0, -1]), np.array([0, -1, -1, -1])).tolist()
        [0, 1, -1, -1]
        """
        of_coarse = np.full(self.n_coarse + 1, -1, np.int64)  # the last: index -1
        of_coarse[self.childless_coarse_index] = self.n_fine + np.arange(
            self.childless_coarse_index.size
        )
        return np.where(fine >= 0, fine, of_coarse[coarse])

    @property
    def fine_leaf_column(self) -> bool:
        """Whether fine-level scores need the :data:`geoseg.metrics.NO_FINE` column.

        True when there is a fine level and some coarse class has no fine classes.
        """
        return bool(self.n_fine and self.childless_coarse_index.size)

    @property
    def leaf_parent_index(self) -> np.ndarray:
        """Each leaf's (:attr:`leaves`) coarse class index: a fine class's parent, else itself.

        Examples
        --------
        >>> t = Taxonomy.from_dict({"name": "t", "coarse": [{"code": 1, "name": "A"},
        ...     {"code": 2, "name": "B"}], "fine": [{"code": 11, "name": "a", "parent": 1}]})
        >>> t.leaf_parent_index.tolist()
        [0, 1]
        """
        return np.concatenate([self.fine_parent_index, self.childless_coarse_index]).astype(
            np.int64
        )

    def leaf_codes(self) -> tuple[np.ndarray, np.ndarray]:
        """Each leaf's coarse code and fine code (:attr:`nodata` for a childless coarse class).

        The codes a map writes for the leaf, as ``labels.tif`` has them.
        """
        coarse = self.coarse_codes[self.leaf_parent_index]
        fine = np.concatenate(
            [self.fine_codes, np.full(self.childless_coarse_index.size, self.nodata)]
        )
        return coarse, fine

    @property
    def leaves(self) -> list[ClassDef]:
        """Decoder choices: all fine classes, then the childless coarse classes."""
        return list(self.fine) + [self.coarse[i] for i in self.childless_coarse_index]

    def parent_code(self, fine_code: int) -> int:
        """Return the coarse code that is the parent of ``fine_code``."""
        for f in self.fine:
            if f.code == fine_code:
                return int(f.parent)  # type: ignore[arg-type]
        raise ConfigError(f"fine code {fine_code} is not in taxonomy {self.name!r}")

    def coarse_name(self, code: int) -> str:
        """Name of a coarse code."""
        return {c.code: c.name for c in self.coarse}[code]

    def fine_name(self, code: int) -> str:
        """Name of a fine code."""
        return {c.code: c.name for c in self.fine}[code]

    @property
    def dtype(self) -> str:
        """Smallest unsigned integer dtype that holds every code and the nodata value."""
        top = max([self.nodata, *self.coarse_codes.tolist(), *self.fine_codes.tolist()])
        return "uint8" if top <= 255 else "uint16"

    # ------------------------------------------------------- code <-> index maps
    def code_to_index_lut(self, level: str, size: int = 65536) -> np.ndarray:
        """Look-up table mapping a raster code to a class index (``-1`` if unknown).

        Parameters
        ----------
        level : {"coarse", "fine"}
            Which level's codes to map.
        size : int
            Table length; must exceed the largest code in the raster's dtype.
        """
        lut = np.full(size, -1, dtype=np.int64)
        codes = self.coarse_codes if level == "coarse" else self.fine_codes
        lut[codes] = np.arange(codes.size)
        return lut

    def codes_by_name(self, level: str) -> dict[str, int | None]:
        """Class name -> code of a level, for labels that name their classes.

        The fine level also takes the names of coarse classes without fine children,
        as a fine label raster takes their codes. A name that several classes share is
        ``None`` (ambiguous).

        Examples
        --------
        >>> tax = Taxonomy.model_validate({
        ...     "name": "demo",
        ...     "coarse": [{"code": 1, "name": "Forest"}, {"code": 2, "name": "Water"}],
        ...     "fine": [{"code": 11, "name": "Other", "parent": 1},
        ...              {"code": 12, "name": "Other", "parent": 1}]})
        >>> tax.codes_by_name("fine")
        {'Other': None, 'Water': 2}
        """
        classes = list(self.coarse) if level == "coarse" else list(self.fine)
        if level == "fine":
            classes += [self.coarse[i] for i in self.childless_coarse_index]
        found: dict[str, int | None] = {}
        for c in classes:
            if c.name in found and level == "fine" and c.parent is None:
                continue  # a fine class's name comes first
            found[c.name] = c.code if c.name not in found else None
        return found

    def childless_code_lut(self, size: int = 65536) -> np.ndarray:
        """Look-up table of the codes a fine (leaf-level) raster may use for a coarse class.

        Maps the code of a coarse class without fine children to its coarse index, and
        every other code to ``-1``, including one that is also a fine code (codes are
        unique within a level only, so a fine raster's code is a fine class first).
        """
        lut = np.full(size, -1, dtype=np.int64)
        idx = self.childless_coarse_index
        lut[self.coarse_codes[idx]] = idx
        lut[self.fine_codes] = -1
        return lut

    def fine_to_coarse_code_lut(self, size: int = 65536) -> np.ndarray:
        """Look-up table mapping a fine code to its parent's coarse code (nodata if unknown)."""
        lut = np.full(size, self.nodata, dtype=np.int64)
        for f in self.fine:
            lut[f.code] = f.parent  # type: ignore[assignment]
        return lut

    def to_dict(self) -> dict[str, Any]:
        """A plain JSON-serialisable representation (round-trips through ``from_dict``)."""
        return self.model_dump(mode="json", exclude_none=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "taxonomy") -> Taxonomy:
        """Validate a mapping into a taxonomy, raising :class:`ConfigError` on problems."""
        if isinstance(data, dict) and not data.get("coarse"):
            listed = "an empty 'coarse' list" if "coarse" in data else "no 'coarse' list"
            raise ConfigError(
                f"{source}: {listed}: every taxonomy lists its classes under 'coarse' (a "
                "one-level taxonomy lists them there, with no 'fine'), and each 'fine' class "
                "names its coarse 'parent'"
            )
        if isinstance(data, dict):
            data = _parents_by_code(data, source)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"{source}: {validation_message(exc.errors(), 'taxonomy')}") from None


def _parents_by_code(data: dict[str, Any], source: str) -> dict[str, Any]:
    """``data`` with each fine class's ``parent`` given by a coarse class's name as its code.

    A name is matched as written, else ignoring case and spaces at its ends where only
    one coarse class has it.

    Raises
    ------
    ConfigError
        A parent that names no coarse class, or several.

    Examples
    --------
    >>> _parents_by_code({"coarse": [{"code": 4, "name": "Forest"}],
    ...                   "fine": [{"code": 41, "name": "Deciduous", "parent": "forest "}]},
    ...                  "t.yaml")["fine"]
    [{'code': 41, 'name': 'Deciduous', 'parent': 4}]
    """
    coarse = [c for c in data.get("coarse") or () if isinstance(c, dict)]
    fine = data.get("fine")
    if not isinstance(fine, list):
        return data

    def named(f: Any) -> bool:  # a parent given as text that is not a number
        return (
            isinstance(f, dict)
            and isinstance(f.get("parent"), str)
            and not f["parent"].strip().lstrip("-").isdigit()
        )

    if not any(named(f) for f in fine):
        return data

    def code_of(f: dict[str, Any]) -> Any:
        parent = str(f["parent"])
        exact = [c.get("code") for c in coarse if c.get("name") == parent]
        key = parent.strip().casefold()  # as vector labels' names are matched
        folded = [c.get("code") for c in coarse if str(c.get("name", "")).strip().casefold() == key]
        found = exact or folded
        if len(found) == 1:
            return found[0]
        listed = ", ".join(f"{c.get('code')} {c.get('name')}" for c in coarse)
        why = "names several coarse classes" if found else "is no coarse class's code or name"
        raise ConfigError(
            f"{source}: fine class {f.get('code')} {f.get('name')!r} has parent {parent!r}, "
            f"which {why} (coarse classes: {listed}): give its coarse class's code or name"
        )

    return {**data, "fine": [{**f, "parent": code_of(f)} if named(f) else f for f in fine]}


def load_taxonomy(path: str | Path) -> Taxonomy:
    """Load and validate a taxonomy YAML file.

    Parameters
    ----------
    path : str or Path
        A YAML file with ``name``, optional ``nodata``, ``coarse`` and ``fine`` lists.

    Raises
    ------
    ConfigError
        If the file is missing, not YAML, or fails validation.
    """
    path = Path(path)
    data = read_yaml(path, "taxonomy")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a taxonomy must be a mapping with 'coarse' and 'fine' lists")
    taxonomy = Taxonomy.from_dict(data, source=str(path))
    for same in _same_names(taxonomy):
        if (str(path), same) not in _REPORTED:  # a command may read its taxonomy twice
            _REPORTED.add((str(path), same))
            log.warning("%s: %s", path, same)
    return taxonomy


#: The shared-name reports already logged, by taxonomy file.
_REPORTED: set[tuple[str, str]] = set()


def _same_names(taxonomy: Taxonomy) -> list[str]:
    """What a taxonomy allows but a user should know, described (for warnings).

    Classes of one level that share a name, and fine classes with a coarse class's code.
    Both are allowed ("Other" under several parents; codes are unique within a level),
    but a legend or a report then tells same-named classes apart by code only (and
    ``copy_paste_classes`` must give their codes), and a single band of codes is
    ambiguous where a code is of both levels.
    """
    found = []
    for level, classes in (("coarse", taxonomy.coarse), ("fine", taxonomy.fine)):
        codes: dict[str, list[int]] = {}
        for c in classes:
            codes.setdefault(c.name, []).append(c.code)
        found += [
            f"{level} classes {', '.join(map(str, same))} are "
            f"{'both' if len(same) == 2 else 'all'} named {name!r}: legends and "
            "reports tell them apart by code only (give them different names if they are "
            "different classes)"
            for name, same in codes.items()
            if len(same) > 1
        ]
    coarse = {c.code: c for c in taxonomy.coarse}
    parents = {f.parent for f in taxonomy.fine}
    for f in taxonomy.fine:
        if f.code not in coarse:
            continue
        c = coarse[f.code]
        same = f"fine class {f.code} ({f.name}) has the code of coarse class {c.code} ({c.name})"
        if c.code in parents:  # a fine raster holds no such coarse code: only maps are unclear
            found.append(
                f"{same}: a single band of codes (a leaf map, a class raster) is read as fine "
                "codes unless its level is given (--level of evaluate, vectorize, zonal, "
                "sample, change); give the fine class another code if you can"
            )
        else:  # a fine raster's code of a childless coarse class: never that class
            found.append(
                f"{same}, which has no fine classes: a fine label raster or a leaf map (a "
                f"single band of codes) reads {f.code} as {f.name}, so {c.name} can be "
                "labelled only in a coarse raster and is never read from a leaf map; give "
                "one of them another code"
            )
    return found


def nodata_class_message(
    taxonomy: Taxonomy, nodata: float | None, path: str | Path, level: str
) -> str | None:
    """What to say when a label raster's nodata tag is the code of one of its classes.

    GDAL reads those pixels as nodata, so the class is lost from that raster without a
    word (the taxonomy's own ``nodata`` code is meant to be unlabelled: no message). A
    ``coarse`` raster holds coarse codes; a ``fine`` one fine codes and those of coarse
    classes without fine classes.

    Examples
    --------
    >>> tax = Taxonomy.from_dict({"name": "t", "nodata": 255, "coarse": [
    ...     {"code": 0, "name": "Background"}, {"code": 1, "name": "Forest"}]})
    >>> nodata_class_message(tax, 0.0, "l.tif", "coarse").split(":")[1]
    " its nodata value 0 is the code of coarse class 0 'Background' of taxonomy t"
    >>> nodata_class_message(tax, 255, "l.tif", "coarse") is None
    True
    """
    from geoseg import fixes

    if nodata is None or not np.isfinite(nodata) or nodata != round(nodata):
        return None
    code = int(nodata)
    if code == taxonomy.nodata:
        return None
    parents = {f.parent for f in taxonomy.fine}
    candidates = (
        [("coarse", c) for c in taxonomy.coarse]
        if level == "coarse"
        else [("fine", f) for f in taxonomy.fine]
        + [("coarse", c) for c in taxonomy.coarse if c.code not in parents]
    )
    named = [f"{lvl} class {c.code} {c.name!r}" for lvl, c in candidates if c.code == code]
    if not named:
        return None
    return (
        f"{path}: its nodata value {code} is the code of {named[0]} of taxonomy "
        f"{taxonomy.name}: its pixels of {code} are read as unlabelled, not as that class; "
        f"if they are that class, remove the tag ({fixes.unset_nodata(path)})"
    )


def format_share(part: int, whole: int) -> str:
    """``part / whole`` as a percentage that never shows a non-zero share as 0.0 %."""
    share = part / whole if whole else 0.0
    return "<0.1%" if 0 < share < 0.001 else f"{share:.1%}"


def unknown_codes_message(
    path: object, codes: list[int], unknown: int, labelled: int, taxonomy: str, consequence: str
) -> str:
    """The one-line warning for label codes that a taxonomy does not list.

    Examples
    --------
    >>> msg = unknown_codes_message("f.tif", [1600], 155, 10100, "slovenia", "they are ignored")
    >>> msg[:72]
    'f.tif: 155 of 10,100 labelled pixels (1.5%) hold codes 1600 that taxonom'
    """
    shown = ", ".join(map(str, codes[:10])) + (
        f" and {len(codes) - 10} more" if len(codes) > 10 else ""
    )
    return (
        f"{path}: {unknown:,} of {labelled:,} labelled pixels ({format_share(unknown, labelled)}) "
        f"hold codes {shown} that taxonomy {taxonomy} does not list; {consequence}: check that "
        "the taxonomy matches the labels"
    )


def stray_codes_message(
    path: object, found: dict[int, int], taxonomy: str, consequence: str, unit: str = "pixels"
) -> str:
    """The one-line warning for a map's codes that its taxonomy does not list.

    ``found``: code -> pixels (:func:`count_codes`); the first ten are named with their
    counts.

    Examples
    --------
    >>> stray_codes_message("m.tif", {9: 2, 7: 1}, "nlcd", "they count as unlabelled")[:71]
    'm.tif: 3 pixels hold codes that taxonomy nlcd does not list (7 (1 px), '
    """
    listed = ", ".join(f"{c} ({k:,} px)" for c, k in sorted(found.items())[:10])
    more = " ..." if len(found) > 10 else ""
    return (
        f"{path}: {sum(found.values()):,} {unit} hold codes that taxonomy {taxonomy} does not "
        f"list ({listed}{more}): {consequence}; pass the taxonomy the map is coded in"
    )


def count_codes(into: dict[int, int], codes: np.ndarray) -> None:
    """Add how many times each code occurs in ``codes`` to ``into`` (code -> count).

    Examples
    --------
    >>> seen = {7: 1}
    >>> count_codes(seen, np.array([7, 9, 9]))
    >>> seen
    {7: 2, 9: 2}
    """
    found, n = np.unique(codes, return_counts=True)
    for c, k in zip(found.tolist(), n.tolist(), strict=True):
        into[c] = into.get(c, 0) + k


def lookup_codes(codes: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Class indices of label ``codes`` through a :meth:`Taxonomy.code_to_index_lut` table.

    ``-1`` for negative codes (unlabelled) and for codes the table does not list. The
    indices have the table's type; integer codes are not copied to a wider type.

    Examples
    --------
    >>> lookup_codes(np.array([-1, 0, 2, 9]), np.array([-1, -1, 0])).tolist()
    [-1, -1, 0, -1]
    """
    codes = np.asarray(codes)
    if codes.dtype.kind not in "iu":
        codes = codes.astype(np.int64)
    inside = (codes >= 0) & (codes < lut.size)
    return np.where(inside, lut[np.where(inside, codes, 0)], -1)
