"""Training patch sampling: ClassMix and copy-paste keep inputs and labels paired."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from geoseg.config import AugmentConfig
from geoseg.errors import ConfigError
from geoseg.labelled import TRAIN, VAL, LabelledScene, SplitBlock
from geoseg.sampling import PatchSampler, paste_classes
from geoseg.taxonomy import Taxonomy


def _scene(seed: int = 0) -> LabelledScene:
    """Four 32 px training blocks; block k holds coarse classes k and k+1 (mod 4) at
    random pixels. Band 0 is the coarse index, band 1 the fine index (2 * coarse), so
    every pixel's input names its labels."""
    rng = np.random.default_rng(seed)
    size = 64
    coarse = np.zeros((size, size), dtype=np.int64)
    blocks: list[SplitBlock] = []
    for k, (r, c) in enumerate([(0, 0), (0, 32), (32, 0), (32, 32)]):
        pair = np.array([k, (k + 1) % 4])
        coarse[r : r + 32, c : c + 32] = rng.choice(pair, size=(32, 32))
        blocks.append((r, c, 32, 32, TRAIN))
    fine = 2 * coarse
    fine[:4, :4] = -1  # a few pixels labelled at the coarse level only
    image = np.stack([coarse, np.where(fine >= 0, fine, -5)]).astype(np.float32)
    return LabelledScene(
        path="synthetic",
        image=image,
        valid=np.ones((size, size), dtype=bool),
        coarse=coarse,
        fine=fine,
        role=np.full((size, size), TRAIN, dtype=np.int8),
        blocks=blocks,
    )


def _sampler(class_mix: float) -> PatchSampler:
    s = _scene()
    aug = AugmentConfig(brightness=0.0, contrast=0.0, noise=0.0, class_mix=class_mix)
    return PatchSampler([s], [s.image], 32, seed=1, n_fine=8, n_coarse=4, augment=aug)


def test_class_mix_pastes_classes_with_their_pixels() -> None:
    x, yc, yf = _sampler(1.0).batch(16)
    labelled = yc >= 0
    assert labelled.all()
    # every pixel's input still names its own labels after the paste
    np.testing.assert_array_equal(x[:, 0], yc)
    np.testing.assert_array_equal(x[:, 1][yf >= 0], yf[yf >= 0])
    assert ((yf == 2 * yc) | (yf == -1)).all()
    n_classes = [np.unique(yc[i]).size for i in range(16)]
    # a block holds two classes; pasting the classes of another block adds some
    assert max(n_classes) >= 3


def test_without_class_mix_patches_keep_their_block_classes() -> None:
    x, yc, _ = _sampler(0.0).batch(16)
    np.testing.assert_array_equal(x[:, 0], yc)
    assert max(np.unique(yc[i]).size for i in range(16)) == 2


def _rare_scene() -> LabelledScene:
    """Four 32 px blocks of classes 0-2 at random pixels, with ten pixels of class 3."""
    s = _scene()
    rng = np.random.default_rng(2)
    coarse = rng.choice(3, size=s.coarse.shape)
    for r, c, *_ in s.blocks:
        rows, cols = rng.integers(0, 32, size=(2, 10))
        coarse[r + rows, c + cols] = 3
    s.coarse, s.fine = coarse, 2 * coarse
    s.image = np.stack([coarse, 2 * coarse]).astype(np.float32)
    return s


def test_rare_class_mix_pastes_mostly_the_rare_class() -> None:
    s = _rare_scene()

    def batch(class_mix: float, classes: str) -> np.ndarray:
        aug = AugmentConfig(
            brightness=0.0,
            contrast=0.0,
            noise=0.0,
            class_mix=class_mix,
            class_mix_classes=classes,  # type: ignore[arg-type]
        )
        sampler = PatchSampler([s], [s.image], 32, seed=3, n_fine=8, n_coarse=4, augment=aug)
        x, yc, _ = sampler.batch(32)
        np.testing.assert_array_equal(x[:, 0], yc)
        return yc

    # with no photometric augmentation the crops are the same draws with or without mixing
    plain, rare, half = batch(0.0, "half"), batch(1.0, "rare"), batch(1.0, "half")
    changed_rare = rare != plain
    assert changed_rare.any()
    # pasting one class drawn by rarity mostly pastes class 3 (about 92 % of draws)
    assert (rare[changed_rare] == 3).mean() > 0.75
    assert changed_rare.sum(axis=(1, 2)).max() <= 12
    # published ClassMix pastes half the classes: large areas change
    assert (half != plain).sum(axis=(1, 2)).max() > 200


def test_class_mix_keeps_the_empty_margin_of_an_edge_block_patch() -> None:
    """A 20 x 32 edge block cut into 32 px patches leaves 12 empty rows (or columns,
    once rotated); pasting from a full block must not fill them."""
    s = _scene()
    s.blocks = [(0, 0, 32, 32, TRAIN), (44, 32, 20, 32, TRAIN)]
    aug = AugmentConfig(brightness=0.0, contrast=0.0, noise=0.0, class_mix=1.0)
    sampler = PatchSampler([s], [s.image], 32, seed=0, n_fine=8, n_coarse=4, augment=aug)
    x, yc, _ = sampler.batch(32)
    labelled = (yc >= 0).sum(axis=(1, 2))
    assert set(labelled.tolist()) == {20 * 32, 32 * 32}
    for i in range(32):
        assert (x[i][:, yc[i] < 0] == 0).all()
    np.testing.assert_array_equal(x[:, 0][yc >= 0], yc[yc >= 0])


def test_context_pads_each_patch_with_its_own_mirror_image() -> None:
    """``context`` adds mirror-image margins around the very patches drawn without it:
    the generator is not consumed by the padding, the labels keep the patch's size, and
    an edge block's patch is mirrored from its own pixels, not from its empty area."""
    s = _scene()
    s.blocks = [(0, 0, 32, 32, TRAIN), (44, 32, 20, 32, TRAIN)]
    aug = AugmentConfig(brightness=0.1, contrast=0.1, noise=0.02)

    def draw(context: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sampler = PatchSampler(
            [s], [s.image], 32, seed=3, n_fine=8, n_coarse=4, augment=aug, context=context
        )
        return sampler.batch(12)

    x0, yc0, yf0 = draw(0)
    k = 8
    x, yc, yf = draw(k)
    assert x.shape == (12, 2, 32 + 2 * k, 32 + 2 * k)
    np.testing.assert_array_equal(yc, yc0)
    np.testing.assert_array_equal(yf, yf0)
    sizes = set()
    for i in range(12):
        rows, cols = np.nonzero((yc0[i] >= 0) | (yf0[i] >= 0))
        h, w = rows.max() + 1, cols.max() + 1
        sizes.add((h, w))
        core = x0[i, :, :h, :w]
        np.testing.assert_array_equal(x[i, :, k : k + h, k : k + w], core)
        # reflected about the edge pixel, which is not repeated
        np.testing.assert_array_equal(x[i, :, k - 1, k : k + w], core[:, 1])
        np.testing.assert_array_equal(x[i, :, k + h, k : k + w], core[:, h - 2])
        np.testing.assert_array_equal(x[i, :, k : k + h, k - 3], core[:, :, 3])
        np.testing.assert_array_equal(x[i, :, k : k + h, k + w + 2], core[:, :, w - 4])
        assert (x[i, :, h + 2 * k :, :] == 0).all() and (x[i, :, :, w + 2 * k :] == 0).all()
    assert (20, 32) in sizes or (32, 20) in sizes  # the edge block was drawn


def _pond_scene() -> LabelledScene:
    """Classes 0-2 at random pixels in three TRAIN blocks and one VAL block (bottom
    right); class 3 ("pond") fills an 8 x 11 area at the bottom of TRAIN block 1 (top
    right) that runs on into VAL block 3 below it. Band 0 is the coarse index, band 1
    the block the pixel lies in, so a pasted pixel names its labels and its source."""
    rng = np.random.default_rng(4)
    size = 64
    coarse = rng.choice(3, size=(size, size))
    coarse[24:41, 40:51] = 3
    block_id = np.zeros((size, size))
    blocks: list[SplitBlock] = []
    for k, (r, c) in enumerate([(0, 0), (0, 32), (32, 0), (32, 32)]):
        block_id[r : r + 32, c : c + 32] = k
        blocks.append((r, c, 32, 32, VAL if k == 3 else TRAIN))
    role = np.full((size, size), TRAIN, dtype=np.int8)
    role[32:, 32:] = VAL
    return LabelledScene(
        path="synthetic",
        image=np.stack([coarse, block_id]).astype(np.float32),
        valid=np.ones((size, size), dtype=bool),
        coarse=coarse,
        fine=2 * coarse,
        role=role,
        blocks=blocks,
    )


def _paste_sampler(s: LabelledScene, copy_paste: float) -> PatchSampler:
    aug = AugmentConfig(
        brightness=0.0,
        contrast=0.0,
        noise=0.0,
        copy_paste=copy_paste,
        copy_paste_classes=("Pond",),  # resolved by paste_classes in training
        copy_paste_blobs=4,
        copy_paste_radius=(1.0, 3.0),
    )
    return PatchSampler(
        [s], [s.image], 32, seed=5, n_fine=8, n_coarse=4, augment=aug, paste=[("coarse", 3)]
    )


def test_copy_paste_pastes_blobs_of_the_class_from_training_pixels_only() -> None:
    s = _pond_scene()
    sampler = _paste_sampler(s, 1.0)
    # centres lie 3 px inside a training block: the pond rows 24-28 of block 1 only
    centres = sampler.paste_bank[0][1]
    assert set(centres[:, 1].tolist()) == set(range(24, 29))
    x, yc, yf = sampler.batch(64)
    np.testing.assert_array_equal(x[:, 0], yc)  # inputs and labels stay paired
    np.testing.assert_array_equal(yf, 2 * yc)
    # each patch comes from one block: a pixel of another block was pasted
    home = np.array([np.bincount(x[i, 1].astype(int).ravel()).argmax() for i in range(64)])
    pasted = x[:, 1] != home[:, None, None]
    assert pasted.any(axis=(1, 2)).sum() > 20  # blocks 0 and 2 got ponds
    assert (yc[pasted] == 3).all()  # only the listed class is pasted
    assert (x[:, 1][pasted] == 1).all()  # never a VAL pixel of the pond
    # at most 4 discs of radius 3 (with a ragged edge of up to 1.4 x the area)
    assert pasted.sum(axis=(1, 2)).max() <= 4 * 7 * 7
    assert (yc[home != 1] == 3).any()


def test_copy_paste_off_draws_the_same_batches_as_before() -> None:
    s = _pond_scene()
    aug = AugmentConfig(brightness=0.0, contrast=0.0, noise=0.0)
    plain = PatchSampler([s], [s.image], 32, seed=5, n_fine=8, n_coarse=4, augment=aug)
    off = _paste_sampler(s, 0.0)
    assert not off.paste_bank
    for a, b in zip(plain.batch(16), off.batch(16), strict=True):
        np.testing.assert_array_equal(a, b)
    assert (_paste_sampler(s, 1.0).batch(16)[1] == 3).sum() > (plain.batch(16)[1] == 3).sum()


def test_copy_paste_keeps_the_empty_margin_of_an_edge_block_patch() -> None:
    s = _pond_scene()
    s.blocks = [(0, 0, 32, 32, TRAIN), (0, 32, 32, 32, TRAIN), (44, 0, 20, 32, TRAIN)]
    sampler = _paste_sampler(s, 1.0)
    x, yc, _ = sampler.batch(48)
    labelled = (yc >= 0).sum(axis=(1, 2))
    assert set(labelled.tolist()) == {20 * 32, 32 * 32}
    for i in range(48):
        assert (x[i][:, yc[i] < 0] == 0).all()
    np.testing.assert_array_equal(x[:, 0][yc >= 0], yc[yc >= 0])


def test_copy_paste_reports_a_class_with_no_pixel_deep_inside_a_training_block() -> None:
    s = _pond_scene()
    s.coarse[24:32, 40:51] = 0  # the pond lies only in the VAL block now
    s.fine = 2 * s.coarse
    sampler = _paste_sampler(s, 1.0)
    assert sampler.paste_bank == [] and sampler.paste_missing == [("coarse", 3)]
    sampler.batch(4)


def _taxonomy() -> Taxonomy:
    return Taxonomy.from_dict(
        {
            "name": "t",
            "coarse": [{"code": 1, "name": "Water"}, {"code": 2, "name": "Land"}],
            "fine": [
                {"code": 1, "name": "Lake", "parent": 1},
                {"code": 21, "name": "Rock", "parent": 2},
            ],
        }
    )


def test_paste_classes_resolves_names_and_codes_of_either_level() -> None:
    tax = _taxonomy()
    assert paste_classes(tax, ["Water", "Rock", 21, "21", "Lake"], "c.yaml") == [
        ("coarse", 0),
        ("fine", 1),
        ("fine", 0),
    ]
    with pytest.raises(ConfigError, match=r"c.yaml: .*'Ice', which is not a class of .* t"):
        paste_classes(tax, ["Ice"], "c.yaml")
    with pytest.raises(
        ConfigError,
        match=r"names more than one class .* \(coarse 1 and fine 1\): give the class's name",
    ):
        paste_classes(tax, [1], "c.yaml")
    # two fine classes named alike ("Other" under two parents): by code only
    other = Taxonomy.from_dict(
        {
            "name": "o",
            "coarse": [{"code": 1, "name": "Water"}, {"code": 2, "name": "Land"}],
            "fine": [
                {"code": 11, "name": "Other", "parent": 1},
                {"code": 21, "name": "Other", "parent": 2},
            ],
        }
    )
    with pytest.raises(ConfigError, match=r"\(fine 11 and fine 21\): give the class's code"):
        paste_classes(other, ["Other"], "c.yaml")
    assert paste_classes(other, [21], "c.yaml") == [("fine", 1)]


def test_copy_paste_options_are_checked() -> None:
    with pytest.raises(ValidationError, match="copy_paste needs copy_paste_classes"):
        AugmentConfig(copy_paste=0.5)
    with pytest.raises(ValidationError, match=r"copy_paste_radius \[2.0, 1.0\] must be"):
        AugmentConfig(copy_paste_radius=(2.0, 1.0))
    with pytest.raises(ValidationError, match="copy_paste_radius"):
        AugmentConfig(copy_paste_radius=(1.0, 9.0))


def test_mosaic_lays_out_the_patches_drawn_without_it() -> None:
    """``mosaic: 2`` makes each sample of four patches, each the very patch (symmetry,
    photometric change) that a sampler with the same seed draws for four samples, in
    row-by-row order; the labels stay paired with their pixels, and a mosaic holds
    patches of several blocks (a pixel's neighbours beyond its own block are image)."""
    s = _pond_scene()
    aug = dict(brightness=0.1, contrast=0.1, noise=0.02)

    def sampler(k: int) -> PatchSampler:
        return PatchSampler(
            [s], [s.image], 32, seed=7, n_fine=8, n_coarse=4, augment=AugmentConfig(**aug, mosaic=k)
        )

    x1, yc1, yf1 = sampler(1).batch(12)
    x, yc, yf = sampler(2).batch(3)
    assert x.shape == (3, 2, 64, 64) and yc.shape == yf.shape == (3, 64, 64)
    for n in range(3):
        for i in range(2):
            for j in range(2):
                k = 4 * n + 2 * i + j
                tile = (slice(32 * i, 32 * i + 32), slice(32 * j, 32 * j + 32))
                np.testing.assert_array_equal(x[n][:, tile[0], tile[1]], x1[k])
                np.testing.assert_array_equal(yc[n][tile], yc1[k])
                np.testing.assert_array_equal(yf[n][tile], yf1[k])
    assert (yc >= 0).all()
    # band 1 names each pixel's block: several training blocks per mosaic, never VAL block 3
    aug.update(brightness=0.0, contrast=0.0, noise=0.0)
    blocks = sampler(2).batch(20)[0][:, 1]
    assert set(np.unique(blocks).tolist()) == {0.0, 1.0, 2.0}
    assert sum(np.unique(b).size >= 2 for b in blocks) >= 15


def test_mosaic_with_context_pads_the_whole_mosaic() -> None:
    s = _scene()
    aug = AugmentConfig(brightness=0.0, contrast=0.0, noise=0.0, mosaic=2)
    plain = PatchSampler([s], [s.image], 32, seed=3, n_fine=8, n_coarse=4, augment=aug)
    padded = PatchSampler([s], [s.image], 32, seed=3, n_fine=8, n_coarse=4, augment=aug, context=8)
    x0, yc0, _ = plain.batch(2)
    x, yc, _ = padded.batch(2)
    assert x.shape == (2, 2, 80, 80) and yc.shape == (2, 64, 64)
    np.testing.assert_array_equal(x[:, :, 8:72, 8:72], x0)
    np.testing.assert_array_equal(x[:, :, 7, 8:72], x0[:, :, 1])  # mirrored at the mosaic edge
    np.testing.assert_array_equal(yc, yc0)


def test_mosaic_option_is_checked() -> None:
    with pytest.raises(ValidationError, match="mosaic"):
        AugmentConfig(mosaic=0)
