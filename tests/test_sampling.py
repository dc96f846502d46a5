"""Training patch sampling: ClassMix keeps inputs and labels paired."""

from __future__ import annotations

import numpy as np

from geoseg.config import AugmentConfig
from geoseg.labelled import TRAIN, LabelledScene, SplitBlock
from geoseg.sampling import PatchSampler


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
