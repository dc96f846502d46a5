import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geoseg.datasets import REGISTRY, fetch, get_dataset, sha256_file
from geoseg.errors import DatasetError

from .conftest import SHARED, shared_file


def test_registry_entries_are_pinned_and_attributed():
    for ds in REGISTRY.values():
        assert ds.licence and ds.citation and ds.files
        for f in ds.files:
            assert len(f.sha256) == 64
            # pinned to a commit, not a branch
            assert any(len(part) == 40 for part in f.url.split("/")), f.url
    with pytest.raises(DatasetError, match="choose one of"):
        get_dataset("nope")


def test_zion_from_mirror_equals_the_reference_files(tmp_path, monkeypatch):
    shared_file("zion/upstream/nlcd2011.tif")
    monkeypatch.setenv("GEOSEG_DATA_MIRROR", str(SHARED))
    files = fetch("zion", cache=tmp_path / "cache")
    expected = {
        "image": "landsat8_b2345.tif",
        "fine": "nlcd2011_level2.tif",
        "coarse": "nlcd2011_level1.tif",
    }
    for role, name in expected.items():
        with rasterio.open(files[role]) as a, rasterio.open(SHARED / "zion" / name) as b:
            assert a.crs == b.crs and a.transform == b.transform
            assert a.dtypes == b.dtypes and a.nodata == b.nodata and a.count == b.count
            assert np.array_equal(a.read(), b.read()), role
    with rasterio.open(files["image"]) as a:
        assert a.descriptions == ("B2", "B3", "B4", "B5")
    # second call uses the verified cache
    mtime = files["image"].stat().st_mtime_ns
    assert fetch("zion", cache=tmp_path / "cache") == files
    assert files["image"].stat().st_mtime_ns == mtime
    # a derived file cut short is derived again, not handed out (blind user test)
    with open(files["image"], "r+b") as f:
        f.truncate(100_000)
    assert fetch("zion", cache=tmp_path / "cache") == files
    reference = SHARED / "zion" / expected["image"]
    with rasterio.open(files["image"]) as a, rasterio.open(reference) as b:
        assert np.array_equal(a.read(), b.read())
    # the mirror may be the dataset's own folder; an empty GEOSEG_CACHE is the default
    assert fetch("zion", cache=tmp_path / "c2", mirror=SHARED / "zion") == {
        k: tmp_path / "c2" / "zion" / p.name for k, p in files.items()
    }
    from geoseg.datasets import cache_dir

    monkeypatch.setenv("GEOSEG_CACHE", "")
    assert cache_dir() != Path(".") and cache_dir().is_absolute()


def test_mirror_with_damaged_file_is_rejected(tmp_path):
    src = shared_file("zion/upstream")
    mirror = tmp_path / "mirror" / "zion" / "upstream"
    shutil.copytree(src, mirror)
    with open(mirror / "landsat_b3.tif", "r+b") as f:
        f.seek(5000)
        f.write(b"garbage")
    with pytest.raises(DatasetError, match="checksum mismatch"):
        fetch("zion", cache=tmp_path / "cache", mirror=tmp_path / "mirror")
    assert not any(
        p.name.startswith(".") for p in (tmp_path / "cache" / "zion" / "upstream").iterdir()
    )


def test_missing_mirror_file_names_the_fix(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="GEOSEG_DATA_MIRROR"):
        fetch("zion", cache=tmp_path / "cache", mirror=tmp_path / "empty")
    assert not (tmp_path / "cache").exists()  # no empty folders left behind


def test_upstream_hashes_match_the_mirror():
    for f in REGISTRY["zion"].files:
        assert sha256_file(shared_file(f"zion/upstream/{f.name}")) == f.sha256
