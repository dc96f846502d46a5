"""Atomic publication of output directories: build in a temporary sibling, then rename."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from geoseg.errors import OutputExistsError


def check_writable(dest: Path, *, overwrite: bool) -> None:
    """Refuse to touch an existing ``dest`` unless ``overwrite``."""
    if dest.exists() and not overwrite:
        raise OutputExistsError(f"{dest}: output exists: pass --overwrite to replace it")


def replace_dir(src: Path, dst: Path) -> None:
    """Move directory ``src`` to ``dst``, replacing an existing ``dst`` as late as possible."""
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(dest: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``dest`` when the block succeeds.

    On any error the temporary directory is removed and ``dest`` is left untouched.
    """
    dest = Path(dest)
    check_writable(dest, overwrite=overwrite)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; outputs get the usual permissions
    try:
        yield tmp
        for f in tmp.rglob("*"):  # some writers (safetensors) create 0600 files
            if f.is_file():
                os.chmod(f, 0o666 & ~umask)
        replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
