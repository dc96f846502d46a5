import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geoseg.errors import RasterFormatError
from geoseg.normalize import fill_nearest
from geoseg.raster import open_scene, read_window

from .conftest import shared_file, write_raster

H, W = 23, 17


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    rng = np.random.default_rng(3)
    data = rng.integers(0, 1000, (2, H, W)).astype(np.uint16)
    data[:, 5:8, 3:6] = 65535  # a nodata hole
    path = tmp_path_factory.mktemp("r") / "small.tif"
    return write_raster(path, data, nodata=65535), data


@settings(max_examples=80, deadline=None)
@given(
    r=st.integers(-40, H - 1),
    c=st.integers(-40, W - 1),
    h=st.integers(1, 60),
    w=st.integers(1, 60),
)
def test_window_padding_is_the_scenes_mirror_image(small, r, c, h, w):
    """Whatever the window, its padding equals the mirror image of the whole scene."""
    path, data = small
    if r + h <= 0 or c + w <= 0:
        return
    got, valid = read_window(str(path), r, c, h, w)
    big = 100
    ref = np.pad(data, ((0, 0), (big, big), (big, big)), mode="reflect")
    want = ref[:, r + big : r + big + h, c + big : c + big + w]
    assert np.array_equal(got, want)
    assert np.array_equal(valid, (want != 65535).all(axis=0))


def test_fill_mirrors_the_image_at_the_border_of_valid_data():
    x = np.arange(10, dtype=np.float32).reshape(1, 1, 10)
    valid = np.arange(10) < 6
    fill_nearest(x, valid[None])
    # pixel 6 mirrors pixel 4 across pixel 5, 7 mirrors 3, ...
    assert x[0, 0].tolist() == [0, 1, 2, 3, 4, 5, 4, 3, 2, 1]
    y = np.arange(10, dtype=np.float32).reshape(1, 1, 10)
    fill_nearest(y, np.arange(10)[None] < 3)  # mirror runs out: repeat the nearest
    assert y[0, 0].tolist() == [0, 1, 2, 1, 0, 2, 2, 2, 2, 2]


def test_fill_nearest_takes_the_closest_valid_pixel():
    x = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    valid = np.ones((3, 4), bool)
    valid[1, 1:3] = False
    fill_nearest(x, valid, mirror=False)
    assert x[0, 1, 1] in (x[0, 0, 1], x[0, 2, 1], x[0, 1, 0])
    assert x[0, 1, 2] in (x[0, 0, 2], x[0, 2, 2], x[0, 1, 3])
    assert x[0, 0, 0] == 0 and x[0, 2, 3] == 11  # valid pixels untouched


def test_rotated_geotransform_is_refused():
    path = shared_file("awkward/rotated.tif")
    with pytest.raises(RasterFormatError, match="rotated"):
        open_scene(path)


def test_grid_mismatch_names_the_crs_also_when_the_size_differs():
    """A label reprojected to another CRS usually changes size too: say both."""
    from types import SimpleNamespace

    from rasterio.transform import Affine

    from geoseg.raster import grid_mismatch

    t = Affine(30, 0, 300000, 0, -30, 4100000)
    ref = {"width": 791, "height": 400, "crs": "EPSG:32618", "transform": t}
    other = SimpleNamespace(width=798, height=418, crs="EPSG:3857", transform=t)
    assert grid_mismatch(other, **ref) == (
        "in EPSG:3857 instead of EPSG:32618, 798 wide x 418 high instead of 791 wide x 400 high"
    )
    same_crs = SimpleNamespace(width=798, height=418, crs="EPSG:32618", transform=t)
    assert grid_mismatch(same_crs, **ref) == "798 wide x 418 high instead of 791 wide x 400 high"


def test_degrees_on_metres_are_refused_and_coarse_global_grids_are_not(tmp_path):
    """A geographic CRS on projected coordinates is refused; a 2.5° grid of pixel
    centres on ±90 and 0..360 reaches 91.25° and is a real lon/lat grid."""
    from rasterio.transform import from_origin

    from geoseg.errors import RasterFormatError
    from geoseg.raster import open_labels, open_scene

    data = np.ones((1, 73, 144), np.uint8)
    coarse = write_raster(
        tmp_path / "g25.tif",
        data[0],
        crs="EPSG:4326",
        transform=from_origin(-1.25, 91.25, 2.5, 2.5),
    )
    assert open_scene(coarse).height == 73
    open_labels(coarse).close()
    wrong = write_raster(
        tmp_path / "utm.tif", data[0], crs="EPSG:4326", transform=from_origin(300000, 4.1e6, 30, 30)
    )
    with pytest.raises(RasterFormatError, match=r"utm.tif: its CRS EPSG:4326 is in degrees"):
        open_scene(wrong)
    with pytest.raises(RasterFormatError, match=r"are not longitudes and latitudes"):
        open_labels(wrong)
