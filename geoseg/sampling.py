"""Training patches: class weights, block sampling and augmentation (numpy, no I/O).

Patches are cut *inside* single TRAIN blocks of the spatial split, so no VAL or TEST
pixel ever reaches a training batch. Blocks are drawn at random, either in proportion
to their labelled pixels or (``class_balanced``) to the sum of their pixels' inverse
class frequency raised to a power, which shows rare classes more often. Each patch
gets a random dihedral symmetry, optionally small blobs of chosen classes pasted from
other training pixels (copy-paste) and ClassMix with another patch of the batch, and a
per-band gain/offset and noise; optionally a sample is a mosaic of several patches.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from geoseg.config import AugmentConfig
from geoseg.errors import ConfigError
from geoseg.labelled import TRAIN, LabelledScene, leaf_labels
from geoseg.normalize import NormalizedScene
from geoseg.taxonomy import Taxonomy

#: A class of one level: ``("coarse" | "fine", class index)``.
LevelClass = tuple[Literal["coarse", "fine"], int]


def paste_classes(taxonomy: Taxonomy, items: Sequence[str | int], where: str) -> list[LevelClass]:
    """Resolve ``copy_paste_classes`` (class names or codes) to classes of a level.

    A name or code is looked up in the coarse level, then the fine level; a code that
    names a class at both levels (codes are unique within a level only) is an error
    asking for the name, a name that several classes share one asking for the code.

    Examples
    --------
    >>> from geoseg.taxonomy import Taxonomy
    >>> tax = Taxonomy.from_dict({"name": "t", "coarse": [{"code": 1, "name": "Water"},
    ...     {"code": 2, "name": "Land"}], "fine": [{"code": 21, "name": "Rock", "parent": 2}]})
    >>> paste_classes(tax, ["Water", 21], "cfg")
    [('coarse', 0), ('fine', 0)]
    """
    out: list[LevelClass] = []
    for item in items:
        found = _find_class(taxonomy, item)
        if not found and isinstance(item, str) and item.isdigit():
            found = _find_class(taxonomy, int(item))
        if not found:
            names = [c.name for c in (*taxonomy.coarse, *taxonomy.fine)]
            raise ConfigError(
                f"{where}: train.augment.copy_paste_classes names {item!r}, which is not a "
                f"class of taxonomy {taxonomy.name} (its classes: {', '.join(names)})"
            )
        if len(found) > 1:
            other = "code" if isinstance(item, str) else "name"
            which = " and ".join(
                f"{level} {(taxonomy.coarse if level == 'coarse' else taxonomy.fine)[i].code}"
                for level, i in found
            )
            raise ConfigError(
                f"{where}: train.augment.copy_paste_classes {item!r} names more than one "
                f"class of taxonomy {taxonomy.name} ({which}): give the class's {other} "
                "instead"
            )
        if found[0] not in out:
            out.append(found[0])
    return out


def _find_class(taxonomy: Taxonomy, item: str | int) -> list[LevelClass]:
    """The classes whose name (``str``) or code (``int``) is ``item``, coarse first."""
    found: list[LevelClass] = []
    for i, c in enumerate(taxonomy.coarse):
        if (c.name if isinstance(item, str) else c.code) == item:
            found.append(("coarse", i))
    for i, c in enumerate(taxonomy.fine):
        if (c.name if isinstance(item, str) else c.code) == item:
            found.append(("fine", i))
    return found


def class_weights(counts: np.ndarray, mode: str) -> np.ndarray:
    """Per-class loss weights from training pixel counts.

    ``none``: all 1. ``inverse_sqrt`` / ``inverse``: ``freq ** -0.5`` / ``freq ** -1``,
    scaled to mean 1 over the present classes and clipped to at most 10 (absent classes
    get 0 weight; they have no pixels anyway).

    Examples
    --------
    >>> class_weights(np.array([900, 100, 0]), "inverse_sqrt").round(3).tolist()
    [0.5, 1.5, 0.0]
    """
    w = np.ones(counts.size)
    if mode == "none":
        return w
    power = {"inverse_sqrt": 0.5, "inverse": 1.0}.get(mode)
    if power is None:
        raise ConfigError(f"class weighting {mode!r} is not one of none, inverse_sqrt, inverse")
    present = counts > 0
    w[:] = 0.0
    if not present.any():  # a level with no training labels (e.g. coarse-only data)
        return w
    w[present] = (counts[present] / counts[present].sum()) ** -power
    w[present] /= w[present].mean()
    return np.clip(w, 0.0, 10.0)


class PatchSampler:
    """Random augmented training patches cut inside single TRAIN blocks.

    Parameters
    ----------
    scenes : list of LabelledScene
        The training scenes.
    norm : sequence of numpy.ndarray or NormalizedScene
        Each scene's normalised image, ``(bands, H, W)`` float32 (or a view that
        normalises what is cut from it).
    patch : int
        Patch side in pixels (at most the split block size).
    seed : int
        Seed of the sampler's generator (its state is saved in checkpoints).
    n_fine, n_coarse : int
        Taxonomy sizes (for class-balanced sampling).
    sampling : {"labelled", "class_balanced"}
        How blocks are weighted.
    balance_power : float
        Exponent of the inverse class frequency in class-balanced sampling.
    augment : AugmentConfig, optional
        Augmentation settings (default: dihedral only).
    context : int
        Pixels of mirror-image context added on every side of each patch (after
        augmentation); the labels keep the patch's size.
    paste : sequence of LevelClass
        The classes whose blobs ``augment.copy_paste`` pastes (see
        :func:`paste_classes`). Blobs are cut around pixels of the class at least the
        largest radius inside a training block, so they hold training pixels only;
        :attr:`paste_missing` lists the classes that have no such pixel.
    """

    def __init__(
        self,
        scenes: list[LabelledScene],
        norm: Sequence[np.ndarray | NormalizedScene],
        patch: int,
        seed: int,
        *,
        n_fine: int = 0,
        n_coarse: int = 0,
        sampling: str = "labelled",
        balance_power: float = 0.5,
        augment: AugmentConfig | None = None,
        context: int = 0,
        paste: Sequence[LevelClass] = (),
    ) -> None:
        self.scenes = scenes
        self.context = context
        self.norm = norm
        self.patch = patch
        self.augment = augment or AugmentConfig(brightness=0.0, contrast=0.0, noise=0.0)
        self.n_coarse = n_coarse
        self.rng = np.random.default_rng(seed)
        self.choices: list[tuple[int, int, int, int, int]] = []
        hists = []
        n_leaf = n_fine + max(n_coarse, 1)
        key_counts = np.zeros(n_coarse + n_fine)
        for si, s in enumerate(scenes):
            for r, c, h, w, rl in s.blocks:
                if rl != TRAIN:
                    continue
                sl = (slice(r, r + h), slice(c, c + w))
                lab = leaf_labels(s.coarse[sl], s.fine[sl], n_fine)
                lab = lab[lab >= 0]
                if lab.size == 0:
                    continue
                self.choices.append((si, r, c, h, w))
                hists.append(np.bincount(lab, minlength=n_leaf)[:n_leaf])
                key = _mix_keys(s.coarse[sl], s.fine[sl], n_coarse)
                key_counts += np.bincount(key[key >= 0], minlength=key_counts.size)[
                    : key_counts.size
                ]
        if not self.choices:
            raise ConfigError("no labelled training pixels: check the labels and the split")
        hist = np.asarray(hists, dtype=np.float64)
        if sampling == "class_balanced" and balance_power > 0:
            freq = hist.sum(axis=0) / hist.sum()
            inv = np.zeros_like(freq)
            inv[freq > 0] = freq[freq > 0] ** -balance_power
            weights = hist @ inv
        elif sampling in ("labelled", "class_balanced"):
            weights = hist.sum(axis=1)
        else:
            raise ConfigError(f"sampling {sampling!r} is not one of labelled, class_balanced")
        self.p = weights / weights.sum()
        # ClassMix 'rare': a class is pasted with probability ~ 1 / training frequency
        self.key_rarity = np.zeros_like(key_counts)
        self.key_rarity[key_counts > 0] = key_counts.sum() / key_counts[key_counts > 0]
        self.paste_radius = math.ceil(self.augment.copy_paste_radius[1])
        self.paste_bank: list[tuple[LevelClass, np.ndarray]] = []
        self.paste_missing: list[LevelClass] = []
        if self.augment.copy_paste > 0:
            for cls in paste:
                centres = self._paste_centres(cls)
                if centres.size:
                    self.paste_bank.append((cls, centres))
                else:
                    self.paste_missing.append(cls)

    def _paste_centres(self, cls: LevelClass) -> np.ndarray:
        """Where blobs of ``cls`` may be cut: ``(n, 3)`` scene, row and column.

        Every pixel of ``cls`` at least the largest blob radius inside a training block.
        """
        level, index = cls
        pad = self.paste_radius
        found = [np.zeros((0, 3), dtype=np.int32)]
        for si, s in enumerate(self.scenes):
            labels = s.coarse if level == "coarse" else s.fine
            for r, c, h, w, rl in s.blocks:
                if rl != TRAIN or min(h, w) <= 2 * pad:
                    continue
                inner = labels[r + pad : r + h - pad, c + pad : c + w - pad]
                rows, cols = np.nonzero(inner == index)
                found.append(
                    np.stack([np.full(rows.size, si), rows + r + pad, cols + c + pad], 1).astype(
                        np.int32
                    )
                )
        return np.concatenate(found)

    # ------------------------------------------------------------ generator state
    def get_state(self) -> str:
        """The generator state as JSON (stored in training checkpoints)."""
        return json.dumps(self.rng.bit_generator.state)

    def set_state(self, state: str) -> None:
        """Restore a state from :meth:`get_state`."""
        self.rng.bit_generator.state = json.loads(state)

    # -------------------------------------------------------------------- batches
    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n`` samples: inputs, coarse indices and fine indices.

        A sample is one patch, or with ``augment.mosaic: k`` a ``k`` x ``k`` mosaic of
        patches (:func:`mosaic`) of side ``side = k * size``. Inputs are
        ``(n, bands, side + 2 context, side + 2 context)``, labels ``(n, side, side)``.
        Parts of a patch beyond a (smaller, edge) block are zero input and unlabelled.
        """
        k = self.augment.mosaic
        x, yc, yf, shapes = self._patches(n * k * k)
        if k > 1:
            x, yc, yf = (mosaic(a, k) for a in (x, yc, yf))
            shapes = [x.shape[2:]] * n
        if self.context:
            x = with_context(x, shapes, self.context)
        return x, yc, yf

    def _patches(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[int, ...]]]:
        """``n`` augmented patches (no context) and the part of each that holds data."""
        size = self.patch
        bands = self.norm[0].shape[0]
        x = np.zeros((n, bands, size, size), dtype=np.float32)
        yc = np.full((n, size, size), -1, dtype=np.int64)
        yf = np.full((n, size, size), -1, dtype=np.int64)
        picks = self.rng.choice(len(self.choices), size=n, p=self.p)
        aug = self.augment
        mix = aug.class_mix > 0 and n > 1
        shapes: list[tuple[int, ...]] = []
        for i, k in enumerate(picks):
            si, r, c, h, w = self.choices[k]
            ph, pw = min(size, h), min(size, w)
            r0 = r + int(self.rng.integers(0, h - ph + 1))
            c0 = c + int(self.rng.integers(0, w - pw + 1))
            s = self.scenes[si]
            xi = self.norm[si][:, r0 : r0 + ph, c0 : c0 + pw]
            ci = s.coarse[r0 : r0 + ph, c0 : c0 + pw]
            fi = s.fine[r0 : r0 + ph, c0 : c0 + pw]
            if aug.dihedral:
                kr = int(self.rng.integers(0, 4))
                flip = bool(self.rng.integers(0, 2))
                xi, ci, fi = (dihedral(a, kr, flip) for a in (xi, ci, fi))
            x[i, :, : xi.shape[1], : xi.shape[2]] = xi
            yc[i, : ci.shape[0], : ci.shape[1]] = ci
            yf[i, : fi.shape[0], : fi.shape[1]] = fi
            shapes.append(xi.shape[1:])
            if self.paste_bank and self.rng.random() < aug.copy_paste:
                self._copy_paste(x[i], yc[i], yf[i], xi.shape[1:])
            if not mix:
                self._photometric(x[i, :, : xi.shape[1], : xi.shape[2]])
        if mix:
            x, yc, yf = self._class_mix(x, yc, yf, shapes)
            for i, (h, w) in enumerate(shapes):
                self._photometric(x[i, :, :h, :w])
        return x, yc, yf, shapes

    def _copy_paste(
        self, x: np.ndarray, yc: np.ndarray, yf: np.ndarray, shape: tuple[int, ...]
    ) -> None:
        """Paste 1 to ``copy_paste_blobs`` blobs of the paste classes onto one patch.

        Each blob is a disc with a ragged outline, of a random radius, around a random
        pixel of a class drawn uniformly from the paste classes; only that class's
        pixels of the disc are pasted, with their input and both levels' labels, in a
        random symmetry, at a random place inside the patch's ``shape`` area.
        """
        pad = self.paste_radius
        h, w = shape
        if min(h, w) <= 2 * pad:
            return
        lo, hi = self.augment.copy_paste_radius
        yy, xx = np.mgrid[-pad : pad + 1, -pad : pad + 1]
        dist2 = yy**2 + xx**2
        for _ in range(int(self.rng.integers(1, self.augment.copy_paste_blobs + 1))):
            (level, index), centres = self.paste_bank[int(self.rng.integers(len(self.paste_bank)))]
            si, r, c = centres[int(self.rng.integers(len(centres)))]
            s = self.scenes[si]
            src = (slice(r - pad, r + pad + 1), slice(c - pad, c + pad + 1))
            radius = self.rng.uniform(lo, hi)
            blob = dist2 <= radius**2 * self.rng.uniform(0.6, 1.4, size=dist2.shape)
            blob[pad, pad] = True
            blob &= (s.coarse if level == "coarse" else s.fine)[src] == index
            k, flip = int(self.rng.integers(0, 4)), bool(self.rng.integers(0, 2))
            blob, bx, bc, bf = (
                dihedral(a, k, flip)
                for a in (blob, self.norm[si][:, src[0], src[1]], s.coarse[src], s.fine[src])
            )
            r0 = int(self.rng.integers(0, h - 2 * pad))
            c0 = int(self.rng.integers(0, w - 2 * pad))
            dst = (slice(r0, r0 + 2 * pad + 1), slice(c0, c0 + 2 * pad + 1))
            x[:, dst[0], dst[1]][:, blob] = bx[:, blob]
            yc[dst][blob] = bc[blob]
            yf[dst][blob] = bf[blob]

    def _class_mix(
        self, x: np.ndarray, yc: np.ndarray, yf: np.ndarray, shapes: list[tuple[int, ...]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Paste some classes of another patch of the batch onto some patches.

        Each patch, with probability ``class_mix``, takes a source patch of the batch (as
        cut, before any mixing), picks ``ceil(k / 2)`` of the source's ``k`` labelled
        classes at random (or, with ``class_mix_classes: rare``, one class drawn with
        probability proportional to its rarity), and receives the source's input and
        labels at those classes' pixels inside its own ``shapes[i]`` area (a patch of a
        smaller edge block keeps its empty margin). Classes are the coarse label, or the
        fine label where only it is known.
        """
        n = x.shape[0]
        key = _mix_keys(yc, yf, self.n_coarse)
        out_x, out_c, out_f = x.copy(), yc.copy(), yf.copy()
        for i in range(n):
            if self.rng.random() >= self.augment.class_mix:
                continue
            j = int(self.rng.integers(0, n - 1))
            j += int(j >= i)
            classes = np.unique(key[j])
            classes = classes[classes >= 0]
            if classes.size == 0:
                continue
            if self.augment.class_mix_classes == "rare":
                rarity = self.key_rarity[classes]
                pick = self.rng.choice(classes, size=1, p=rarity / rarity.sum())
            else:
                pick = self.rng.choice(classes, size=(classes.size + 1) // 2, replace=False)
            mask = np.isin(key[j], pick)
            h, w = shapes[i]
            mask[h:, :] = False
            mask[:, w:] = False
            out_x[i][:, mask] = x[j][:, mask]
            out_c[i][mask] = yc[j][mask]
            out_f[i][mask] = yf[j][mask]
        return out_x, out_c, out_f

    def _photometric(self, xi: np.ndarray) -> None:
        aug = self.augment
        bands = xi.shape[0]
        if aug.contrast > 0 or aug.brightness > 0:
            gain = self.rng.uniform(1 - aug.contrast, 1 + aug.contrast, size=(bands, 1, 1))
            shift = self.rng.uniform(-aug.brightness, aug.brightness, size=(bands, 1, 1))
            xi *= gain.astype(np.float32)
            xi += shift.astype(np.float32)
        if aug.noise > 0:
            xi += self.rng.normal(0.0, aug.noise, size=xi.shape).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        """How many blocks the sampler draws from and the largest block probability."""
        return {"blocks": len(self.choices), "max_block_p": round(float(self.p.max()), 4)}


def mosaic(a: np.ndarray, k: int) -> np.ndarray:
    """Lay ``k * k`` consecutive patches out as one ``k`` x ``k`` mosaic, row by row.

    ``a`` is ``(n * k * k, ..., size, size)``; returns ``(n, ..., k * size, k * size)``
    where patch ``i * k + j`` of a group fills mosaic row ``i``, column ``j``.

    Examples
    --------
    >>> mosaic(np.arange(4).reshape(4, 1, 1), 2).tolist()
    [[[0, 1], [2, 3]]]
    """
    m, *mid, h, w = a.shape
    n, nd = m // (k * k), len(mid)
    grid = a.reshape(n, k, k, *mid, h, w)
    order = (0, *range(3, 3 + nd), 1, 3 + nd, 2, 4 + nd)
    return np.ascontiguousarray(grid.transpose(order)).reshape(n, *mid, k * h, k * w)


def with_context(x: np.ndarray, shapes: list[tuple[int, ...]], context: int) -> np.ndarray:
    """Mirror-pad each patch's ``shapes[i]`` area by ``context`` pixels on every side.

    Returns ``(n, bands, size + 2 context, size + 2 context)``: patch ``i``'s pixel
    ``(r, c)`` moves to ``(r + context, c + context)``; the margin around it is its own
    mirror image (reflected without repeating the edge row, as prediction pads a scene),
    and the area beyond a smaller edge patch stays zero.
    """
    n, bands, size, _ = x.shape
    out = np.zeros((n, bands, size + 2 * context, size + 2 * context), dtype=x.dtype)
    for i, (h, w) in enumerate(shapes):
        pad = (context, context)
        out[i, :, : h + 2 * context, : w + 2 * context] = mirror_pad(x[i, :, :h, :w], pad, pad)
    return out


def mirror_pad(a: np.ndarray, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """Pad ``(bands, h, w)`` with its mirror image, as prediction pads a scene.

    The edge pixel is not repeated; a side one pixel wide is repeated instead.
    """
    mode: Literal["reflect", "edge"] = "reflect" if min(a.shape[-2:]) > 1 else "edge"
    return np.pad(a, ((0, 0), rows, cols), mode=mode)


def _mix_keys(coarse: np.ndarray, fine: np.ndarray, n_coarse: int) -> np.ndarray:
    """ClassMix class of each pixel: the coarse index, else ``n_coarse + fine``, else -1."""
    return np.where(coarse >= 0, coarse, np.where(fine >= 0, n_coarse + fine, -1))


def dihedral(a: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """Rotate the last two axes by ``k`` quarter turns, then mirror them if ``flip``."""
    a = np.rot90(a, k, axes=(-2, -1))
    if flip:
        a = a[..., ::-1]
    return np.ascontiguousarray(a)
