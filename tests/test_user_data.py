"""A user's own labelled data: masks, alpha bands, band indexes, label quirks, warnings."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import rasterio
import yaml
from rasterio.enums import ColorInterp

from geoseg.config import TrainConfig
from geoseg.errors import RasterFormatError
from geoseg.labelled import TRAIN, LabelledScene, load_scene, select_bands
from geoseg.raster import open_scene
from geoseg.taxonomy import Taxonomy

from .conftest import write_raster

TAX = Taxonomy.model_validate(
    {
        "name": "mine",
        "nodata": 255,
        "coarse": [
            {"code": 1, "name": "Vegetation"},
            {"code": 2, "name": "Built"},
            {"code": 3, "name": "Bare"},
        ],
        "fine": [
            {"code": 11, "name": "Trees", "parent": 1},
            {"code": 12, "name": "Grass", "parent": 1},
            {"code": 21, "name": "Roofs", "parent": 2},
        ],
    }
)


def _image(tmp_path, *, mask=None, alpha=None, names=None):
    rng = np.random.default_rng(0)
    data = rng.integers(100, 1000, size=(3, 24, 32)).astype(np.uint16)
    if alpha is not None:
        data = np.concatenate([data, alpha[None].astype(np.uint16)])
    path = write_raster(tmp_path / "img.tif", data, names=names)
    if alpha is not None:
        with rasterio.open(path, "r+") as dst:
            ci = ColorInterp
            dst.colorinterp = [ci.red, ci.green, ci.blue, ci.alpha]
    if mask is not None:
        with rasterio.open(path, "r+") as dst:
            dst.write_mask(mask.astype(np.uint8) * 255)
    return path, data


def _labels(tmp_path, name="fine.tif", value=11, **kw):
    return write_raster(tmp_path / name, np.full((24, 32), value, dtype=np.uint8), **kw)


def _load(image, fine=None, coarse=None, **kw):
    return load_scene(image, coarse, fine, TAX, block=8, checkerboard=True, val_every=3, **kw)


def test_the_image_mask_makes_pixels_unlabelled_as_in_prediction(tmp_path):
    """An internal mask (no nodata value) marks the border invalid: those pixels neither
    train nor enter the normalisation statistics."""
    inside = np.zeros((24, 32), dtype=bool)
    inside[4:20, 6:26] = True
    image, _ = _image(tmp_path, mask=inside)
    s = _load(image, _labels(tmp_path))
    assert (s.valid == inside).all()
    assert (s.coarse[~inside] == -1).all() and (s.fine[~inside] == -1).all()
    assert (s.fine[inside] == 0).all()


def test_an_alpha_band_is_a_mask_not_an_input(tmp_path):
    alpha = np.full((24, 32), 255)
    alpha[:, :5] = 0  # transparent strip
    image, data = _image(tmp_path, alpha=alpha)
    assert open_scene(image).alpha == (4,)
    assert open_scene(image).data_band_names == ("band1", "band2", "band3")
    s = _load(image, _labels(tmp_path))
    assert s.image.shape[0] == 3 and (s.image == data[:3]).all()
    assert (s.valid == (alpha > 0)).all() and (s.fine[:, :5] == -1).all()
    # named explicitly, the alpha band is an input like any other
    assert _load(image, _labels(tmp_path), bands=("band1", "band4")).image.shape[0] == 2


def test_bands_by_one_based_index(tmp_path):
    """``bands: [3, 1]`` is the file's third and first band, whatever their names."""
    image, data = _image(tmp_path, names=("B2", "B3", "B4"))
    cfg = TrainConfig.model_validate(
        {"name": "x", "taxonomy": "t.yaml", "data": {"dataset": "zion"}, "bands": [3, "B2"]}
    )
    assert cfg.bands == ("band3", "B2")
    assert select_bands(("B2", "B3", "B4"), cfg.bands, "img.tif") == (3, 1)
    s = _load(image, _labels(tmp_path), bands=cfg.bands)
    assert (s.image == data[[2, 0]]).all()
    with pytest.raises(RasterFormatError, match=r"asks for band 4 of a file of 3 bands.*1-based"):
        _load(image, _labels(tmp_path), bands=("band4",))
    with pytest.raises(ValueError, match="1-based"):
        TrainConfig.model_validate(
            {"name": "x", "taxonomy": "t.yaml", "data": {"dataset": "zion"}, "bands": [0]}
        )


def test_prediction_matches_bundle_bands_given_by_index(tmp_path):
    """A bundle trained on ``bands: [3, 2, 1]`` records band3, band2, band1, and
    prediction reads those bands of a file with band names, not its first three."""
    from types import SimpleNamespace

    from geoseg.infer import match_bands

    image, _ = _image(tmp_path, names=("B2", "B3", "B4"))
    meta = SimpleNamespace(bands=("band3", "band2", "band1"), band_count=3)
    assert match_bands(open_scene(image), meta) == (3, 2, 1)


def test_the_taxonomy_nodata_value_is_unlabelled_not_an_unknown_code(tmp_path, recwarn):
    """Labels without a nodata tag that use the taxonomy's nodata (255) for unlabelled
    pixels: no unknown-code warning, and those pixels are unlabelled."""
    image, _ = _image(tmp_path)
    codes = np.full((24, 32), 255, dtype=np.uint8)
    codes[:10] = 12
    fine = write_raster(tmp_path / "fine.tif", codes)  # no nodata tag
    s = _load(image, fine)
    assert not [w for w in recwarn if "does not list" in str(w.message)]
    assert (s.fine[:10] == 1).all() and (s.fine[10:] == -1).all()


def test_a_multi_band_label_raster_is_read_from_band_1_with_a_warning(tmp_path, caplog):
    image, _ = _image(tmp_path)
    three = np.stack([np.full((24, 32), 21, dtype=np.uint8)] * 3)
    fine = write_raster(tmp_path / "fine3.tif", three)
    with caplog.at_level(logging.WARNING, logger="geoseg"):
        s = _load(image, fine)
    assert "fine3.tif: label raster has 3 bands: band 1 is read" in caplog.text
    assert (s.fine == 2).all()


def test_classes_labelled_only_outside_training_blocks_are_named(caplog):
    from geoseg.train import _warn_untrained_classes

    coarse = np.array([[0, 0, 1, 1], [0, 0, 2, 2]])
    fine = np.array([[0, 1, 2, 2], [0, 0, -1, -1]])
    role = np.array([[TRAIN, TRAIN, 1, 1], [TRAIN, TRAIN, 2, 2]], dtype=np.int8)
    scene = LabelledScene(
        path="x",
        image=np.zeros((1, 2, 4)),
        valid=np.ones((2, 4), dtype=bool),
        coarse=coarse,
        fine=fine,
        role=role,
        blocks=[],
    )
    counts = {
        "coarse": np.bincount(coarse[role == TRAIN], minlength=3),
        "fine": np.bincount(fine[(role == TRAIN) & (fine >= 0)], minlength=3),
    }
    cfg = TrainConfig.model_validate({"name": "mine", "taxonomy": "t", "data": {"dataset": "zion"}})
    with caplog.at_level(logging.WARNING, logger="geoseg"):
        _warn_untrained_classes(cfg, TAX, [scene], counts)
    lines = caplog.text.splitlines()
    assert len(lines) == 2
    assert "coarse classes are labelled only outside" in lines[0]
    assert "2 Built (2 px), 3 Bare (2 px)" in lines[0] and "1 Vegetation" not in lines[0]
    assert "fine class is labelled only outside" in lines[1] and "21 Roofs (2 px)" in lines[1]
    assert "Trees" not in lines[1] and "Grass" not in lines[1]


def test_a_missing_label_file_is_named_like_a_missing_image(tmp_path):
    from geoseg.errors import RasterReadError

    image, _ = _image(tmp_path)
    with pytest.raises(RasterReadError, match=r"nope\.tif: file not found: check the path$"):
        _load(image, tmp_path / "nope.tif")
    with pytest.raises(RasterReadError, match=r"img2\.tif: file not found: check the path$"):
        _load(tmp_path / "img2.tif", _labels(tmp_path))


def test_repeated_band_descriptions_read_every_band(tmp_path):
    image, data = _image(tmp_path, names=("B", "B", ""))
    s = _load(image, _labels(tmp_path))
    assert (s.image == data).all()


def test_overwrite_follows_symlinks_to_the_inputs_and_needs_geoseg_outputs(tmp_path):
    from geoseg.atomic import check_writable
    from geoseg.errors import OutputExistsError

    r1 = tmp_path / "runs" / "r1"
    r1.mkdir(parents=True)
    for f in ("run.json", "labels.tif"):
        (r1 / f).write_text("x")
    (tmp_path / "runs" / "latest").symlink_to(r1)
    with pytest.raises(OutputExistsError, match="holds the input"):
        check_writable(r1, overwrite=True, inputs=(tmp_path / "runs/latest/labels.tif",))
    with pytest.raises(OutputExistsError, match="holds the input"):
        check_writable(tmp_path / "runs/x/../r1", overwrite=True, inputs=(r1 / "labels.tif",))
    check_writable(r1, overwrite=True, inputs=(tmp_path / "elsewhere.tif",))  # an output
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "summary.csv").write_text("a,b")
    (mine / "photo.jpg").write_text("x")
    with pytest.raises(OutputExistsError, match="geoseg did not write it"):
        check_writable(mine, overwrite=True)


def test_bundle_bands_named_by_index_are_matched_by_index_and_said_so(tmp_path, caplog):
    from types import SimpleNamespace

    from geoseg.infer import band_matching, match_bands

    rng = np.random.default_rng(0)
    data = rng.integers(0, 100, size=(5, 8, 8)).astype(np.uint16)
    image = write_raster(tmp_path / "five.tif", data, names=("B1", "B2", "B3", "B4", "B8"))
    scene = open_scene(image)
    meta = SimpleNamespace(bands=("band1", "band2", "band3", "band4"), band_count=4)
    assert band_matching(scene, meta) == "index"
    with caplog.at_level(logging.WARNING, logger="geoseg"):
        assert match_bands(scene, meta) == (1, 2, 3, 4)
    assert "by index" in caplog.text
    # trained on bands given by index of an image that named them: the names are kept,
    # and a scene naming those bands alike is read in silence, one in another order not
    from geoseg.train import _indexed_band_names

    seen = _indexed_band_names(meta.bands, image)
    assert seen == {"band_descriptions": ["B1", "B2", "B3", "B4"]}
    meta.training = seen
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="geoseg"):
        assert match_bands(scene, meta) == (1, 2, 3, 4)
    assert caplog.text == ""
    swapped = open_scene(write_raster(tmp_path / "swapped.tif", data[[1, 0, 2, 3, 4]],
                                      names=("B2", "B1", "B3", "B4", "B8")))  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="geoseg"):
        assert match_bands(swapped, meta) == (1, 2, 3, 4)
    assert "band 1: B2 (trained on B1); band 2: B1 (trained on B2)" in caplog.text
    assert _indexed_band_names(("B1", "band2"), image) == {}  # not all by index
    named = SimpleNamespace(bands=("B8", "B1"), band_count=2)
    assert band_matching(scene, named) == "name" and match_bands(scene, named) == (5, 1)


def test_images_of_a_config_without_bands_are_read_alike_by_name(tmp_path):
    """Without ``bands:``, a second image in another band order is read in the first's."""
    from geoseg.errors import ConfigError
    from geoseg.labelled import config_scenes

    first, data = _image(tmp_path, names=("red", "green", "blue"))
    second = write_raster(tmp_path / "bgr.tif", data[::-1], names=("blue", "green", "red"))
    fine = _labels(tmp_path)

    def cfg(*images):
        return TrainConfig.model_validate(
            {
                "name": "x",
                "taxonomy": "t.yaml",
                "data": {"sources": [{"image": str(i), "fine": str(fine)} for i in images]},
                "split": {"block": 16, "val_every": 3},
            }
        )

    a, b = config_scenes(cfg(first, second), TAX)
    assert (a.image == data).all() and (b.image == data).all()  # not blue read as red
    four = write_raster(tmp_path / "four.tif", np.concatenate([data, data[:1]]))
    with pytest.raises(ConfigError, match=r"four.tif: has 4 bands .* has 3 .*'bands:'"):
        config_scenes(cfg(first, four), TAX)
    # one image names no bands: by position, in either order (as prediction matches them)
    plain = write_raster(tmp_path / "plain.tif", data)
    for pair in ((first, plain), (plain, first)):
        a, b = config_scenes(cfg(*pair), TAX)
        assert (a.image == data).all() and (b.image == data).all()
    renamed = write_raster(tmp_path / "b432.tif", data, names=("B4", "B3", "B2"))
    with pytest.raises(RasterFormatError, match=r"b432.tif: bands \['red', 'green', 'blue'\]"):
        config_scenes(cfg(first, renamed), TAX)


def test_a_fine_raster_may_name_a_coarse_class_without_fine_classes(tmp_path, recwarn):
    """Bare (3) has no fine classes: a leaf-level raster labels its pixels with 3."""
    from geoseg.errors import InconsistentLabelsWarning, UnknownCodeWarning

    image, _ = _image(tmp_path)
    codes = np.full((24, 32), 11, dtype=np.uint8)
    codes[:, :8] = 3  # Bare, a coarse class without children
    codes[:, 8:12] = 255  # unlabelled
    s = _load(image, write_raster(tmp_path / "leaf.tif", codes))
    assert not [w for w in recwarn.list if w.category is UnknownCodeWarning]  # 3 is known
    bare, veg, trees = 2, 0, 0  # indices of Bare and Vegetation, and of Trees
    assert (s.coarse[:, :8] == bare).all() and (s.fine[:, :8] == -1).all()
    assert (s.coarse[:, 12:] == veg).all() and (s.fine[:, 12:] == trees).all()
    assert (s.coarse[:, 8:12] == -1).all()
    # a coarse raster that says Built where the fine one says Bare: neither counts
    coarse = np.full((24, 32), 1, dtype=np.uint8)
    coarse[:, :8] = 3
    coarse[:4, :8] = 2
    with pytest.warns(InconsistentLabelsWarning, match="32 pixels whose fine raster names"):
        s = _load(image, tmp_path / "leaf.tif", write_raster(tmp_path / "c.tif", coarse))
    assert (s.coarse[:4, :8] == -1).all() and (s.coarse[4:, :8] == bare).all()


def test_a_class_labelled_nowhere_is_named(tmp_path, caplog):
    from geoseg.train import _warn_untrained_classes

    image, _ = _image(tmp_path)
    s = _load(image, _labels(tmp_path))  # Trees everywhere: no Built, Bare, Grass, Roofs
    cfg = TrainConfig.model_validate({"name": "x", "taxonomy": "t.yaml", "data": {"dataset": "z"}})
    counts = {
        "coarse": np.bincount(s.coarse[s.coarse >= 0], minlength=3),
        "fine": np.bincount(s.fine[s.fine >= 0], minlength=3),
    }
    with caplog.at_level("WARNING", logger="geoseg"):
        _warn_untrained_classes(cfg, TAX, [s], counts)
    assert "coarse classes have no labelled pixel in any source" in caplog.text
    assert "2 Built, 3 Bare" in caplog.text and "12 Grass, 21 Roofs" in caplog.text
    # as the bundle does: its decision offsets leave them out (a blind test found the
    # warning calling its labels of them "untrained guesses")
    assert "cannot learn them and its labels leave them out" in caplog.text
    assert "untrained guesses" not in caplog.text
    # coarse labels only: Vegetation trains, and its fine classes stay (below it) as guesses
    caplog.clear()
    s = _load(image, coarse=_labels(tmp_path, "coarse.tif", value=1))
    counts = {"coarse": np.bincount(s.coarse[s.coarse >= 0], minlength=3),
              "fine": np.zeros(3, np.int64)}  # fmt: skip
    with caplog.at_level("WARNING", logger="geoseg"):
        _warn_untrained_classes(cfg, TAX, [s], counts)
    assert "fine classes have no labelled pixel in any source" in caplog.text
    assert "(its labels still give 11 Trees, 12 Grass, untrained guesses" in caplog.text


def test_labels_that_train_nothing_are_one_error_naming_the_rasters(tmp_path, caplog):
    from geoseg.errors import ConfigError
    from geoseg.train import train

    image, _ = _image(tmp_path)
    tax = tmp_path / "tax.yaml"
    tax.write_text(yaml.safe_dump(TAX.model_dump(mode="json")))
    empty = _labels(tmp_path, "empty.tif", value=255)

    def cfg(fine, **split):
        return TrainConfig.model_validate(
            {
                "name": "x",
                "taxonomy": str(tax),
                "data": {"sources": [{"image": str(image), "fine": str(fine)}]},
                "split": {"block": 16, **split},
                "model": {"encoder_depth": 3, "decoder_channels": [16, 8, 8], "features": 8},
                "train": {
                    "epochs": 1,
                    "steps_per_epoch": 1,
                    "patch_size": 32,
                    "halo": 8,
                    "tile_size": 32,
                    "device": "cpu",
                },
            }
        )

    with caplog.at_level("WARNING", logger="geoseg"), pytest.raises(ConfigError) as err:
        train(cfg(empty), tmp_path / "b", progress=False)
    assert str(err.value).startswith(f"{empty}: no pixel is labelled where the image is valid")
    assert "nodata value (255)" in str(err.value)
    assert not caplog.text  # no "coarse level only" or other warning before the error
    # labelled only in the test squares (checkerboard 16: the odd ones)
    codes = np.full((24, 32), 255, dtype=np.uint8)
    codes[:16, 16:] = 11
    test_only = write_raster(tmp_path / "test_only.tif", codes)
    with pytest.raises(ConfigError, match=r"no pixel where the model trains .* holds a class"):
        train(cfg(test_only, checkerboard=16), tmp_path / "b", progress=False)


def test_a_fine_code_equal_to_a_childless_coarse_code_stays_fine(tmp_path):
    """Codes are unique within a level only: a fine raster's code is a fine class first."""
    tax = Taxonomy.model_validate(
        {
            "name": "per-level",
            "nodata": 255,
            "coarse": [{"code": 1, "name": "Forest"}, {"code": 2, "name": "Water"}],
            "fine": [
                {"code": 1, "name": "Evergreen", "parent": 1},
                {"code": 2, "name": "Deciduous", "parent": 1},
            ],
        }
    )
    lut = tax.childless_code_lut()
    assert lut[2] == -1 and lut[1] == -1  # Water's code 2 is Deciduous's in a fine raster
    image, _ = _image(tmp_path)
    codes = np.ones((24, 32), dtype=np.uint8)
    codes[:, 16:] = 2
    s = load_scene(
        image, None, write_raster(tmp_path / "f.tif", codes), tax,
        block=8, checkerboard=True, val_every=3,
    )  # fmt: skip
    assert (s.coarse == 0).all()  # Forest everywhere, not Water where Deciduous
    assert (s.fine[:, :16] == 0).all() and (s.fine[:, 16:] == 1).all()
