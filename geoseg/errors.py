"""Exceptions and warnings raised by geoseg.

Every error derives from :class:`GeosegError` and from the matching built-in, so
callers can catch either. Messages say what is wrong, show the values and say how
to fix it; the CLI prints them as one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


class GeosegError(Exception):
    """Root of every geoseg error."""


class ConfigError(GeosegError, ValueError):
    """A configuration file, taxonomy or option is invalid."""


class RasterReadError(GeosegError, OSError):
    """A raster cannot be opened or read."""


class RasterFormatError(GeosegError, ValueError):
    """A raster is readable but unsuitable (no CRS, wrong band count, ...)."""


class BundleError(GeosegError, ValueError):
    """A model bundle is missing, incomplete or inconsistent."""


class OutputExistsError(GeosegError, FileExistsError):
    """An output exists and ``overwrite`` was not requested."""


class OutputBusyError(GeosegError, OSError):
    """Another run (process or thread) is writing the same output now."""


class OutputNotWritableError(GeosegError, PermissionError):
    """An output cannot be written where it was asked for (a read-only folder)."""


class DatasetError(GeosegError, OSError):
    """A sample dataset cannot be obtained or fails verification."""


class GeosegWarning(UserWarning):
    """Root of every geoseg warning."""


class UnknownCodeWarning(GeosegWarning):
    """A label raster holds codes that the taxonomy does not list (they are ignored).

    Besides the message it may carry, for a summary over many rasters: the raster
    ``path``, the ``codes``, the ``unknown`` and ``labelled`` pixel counts, and
    ``other_level`` when every code is one of the taxonomy's other level.
    """

    def __init__(
        self,
        message: str,
        *,
        path: object = None,
        codes: Sequence[int] = (),
        unknown: int = 0,
        labelled: int = 0,
        other_level: str | None = None,
    ) -> None:
        super().__init__(message)
        self.path, self.codes, self.other_level = path, tuple(codes), other_level
        self.unknown, self.labelled = unknown, labelled


class NodataClassWarning(GeosegWarning):
    """A label raster's nodata tag is the code of a class: that class's pixels are lost."""


class InconsistentLabelsWarning(GeosegWarning):
    """Coarse and fine labels of the same pixel contradict the taxonomy (they are ignored)."""


class UnlabelledFeaturesWarning(GeosegWarning):
    """Features of vector labels are left out (unknown class names, or unprojectable).

    A class name the taxonomy lacks, or coordinates that cannot be reprojected.

    For a summary over the images of a shared file it may carry the file's ``path``,
    the class ``field``, the unknown ``names`` with their feature counts, the ``hint``
    of the message and ``what`` the features are.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str = "",
        field: str = "",
        names: dict[str, int] | None = None,
        hint: str = "",
        what: str = "label",
    ) -> None:
        super().__init__(message)
        self.path, self.field, self.names = path, field, dict(names or {})
        self.hint, self.what = hint, what


class OverlappingFeaturesWarning(InconsistentLabelsWarning):
    """Vector labels' features of different classes overlap (those pixels are ignored).

    Carries the file's ``path``, the class ``field`` and the ``pixels`` count.
    """

    def __init__(self, message: str, *, path: str, field: str, pixels: int) -> None:
        super().__init__(message)
        self.path, self.field, self.pixels = path, field, pixels


class InconsistentTruthWarning(GeosegWarning):
    """Coarse and fine truth disagree: the coarse code is not the parent of the fine code."""


class UnscoredLevelWarning(GeosegWarning):
    """A truth level cannot be scored (e.g. fine truth for a coarse-only prediction)."""


class TaxonomyMismatchWarning(GeosegWarning):
    """A given taxonomy has the codes of the prediction's, under other names."""


class SampleDesignWarning(GeosegWarning):
    """A sample's design does not fit its use (points drawn on another map than scored)."""


class SeenPixelsWarning(GeosegWarning):
    """Scores of a map include pixels its model trained or validated on."""


class ShapefileLimitWarning(GeosegWarning):
    """A Shapefile export hits a format limit (2 GB parts, text past 254 bytes)."""


def validation_message(errors: list[Any], kind: str) -> str:
    """One line for pydantic's ``ValidationError.errors()`` of a ``kind`` (config, ...) file.

    An unknown key is reported first: a misspelt key (``nme:``) also makes the real
    one missing, and the unknown key is the one to fix. Pydantic's ``Value error,``
    prefix is dropped, and so is the location of a whole-file check (its message names
    the fields).

    Examples
    --------
    >>> validation_message([
    ...     {"type": "missing", "loc": ("fine", 0, "name"), "msg": "Field required"},
    ...     {"type": "extra_forbidden", "loc": ("fine", 0, "nme"), "msg": "Extra inputs"},
    ... ], "taxonomy")
    'invalid taxonomy at fine.0.nme: unknown key (a typo?): Extra inputs'
    """
    unknown = [e for e in errors if e.get("type") == "extra_forbidden"]
    first = (unknown or errors)[0]
    msg = str(first["msg"]).removeprefix("Value error, ")
    if unknown:
        msg = f"unknown key (a typo?): {msg}"
    where = ".".join(str(p) for p in first["loc"])
    return f"invalid {kind} at {where}: {msg}" if where else msg


def read_yaml(path: Path, what: str) -> object:
    """The contents of YAML file ``path`` (a ``what``: "config", "taxonomy", ...).

    Raises
    ------
    ConfigError
        The file is missing or not YAML (one line, with the line of the YAML error).
    """
    import yaml

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} file not found: check the path") from None
    except IsADirectoryError:
        raise ConfigError(
            f"{path}: a folder, not a {what} file: pass the {what} YAML file"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"{path}: not a text file, so not a {what} YAML: pass the {what} file"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc.__class__.__name__
        hint = ""
        if mark is not None:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
            line = lines[mark.line] if mark.line < len(lines) else ""
            if "\t" in line[: mark.column + 1] or "\t" in str(problem):
                hint = ": YAML indents with spaces, not tabs: replace the tabs with spaces"
            elif any(c in line for c in "*{}[]&!"):
                hint = (
                    ": put quotes around values with * { } [ ] & or ! (glob patterns, "
                    '{match} paths), e.g. image: "chips/*_img.tif"'
                )
        raise ConfigError(f"{path}: not valid YAML{at} ({problem}){hint}") from None


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, SLURM, Kubernetes): stop and clean up as on Ctrl-C.

    A :class:`KeyboardInterrupt`, so every cleanup that runs on Ctrl-C runs on it too.
    """


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


def stop_on_sigterm() -> None:
    """Turn SIGTERM into :class:`Terminated` in this process (call from the main thread)."""
    import signal

    signal.signal(signal.SIGTERM, _raise_terminated)
