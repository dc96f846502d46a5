"""Training the hierarchical model on labelled rasters and exporting a bundle.

The data of a run (images plus coarse and/or fine labels on the same grid) is held in
memory; the split is spatial (:class:`geoseg.config.SplitConfig`): training patches
are cut *inside* single training blocks, so with a checkerboard split no test pixel
(image or label) is ever seen before the final test, which runs the same tiled
inference as ``geoseg predict`` on the whole scene and scores the test blocks only.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from tqdm.auto import tqdm

from geoseg.bundle import BundleMeta, save_bundle
from geoseg.config import TrainConfig
from geoseg.errors import ConfigError, RasterFormatError, UnknownCodeWarning
from geoseg.hierarchy import HierarchyIndex, decode, hierarchical_loss
from geoseg.metrics import confusion_matrix, scores
from geoseg.model import HierarchicalSegmenter
from geoseg.normalize import RunningStats
from geoseg.predict import Predictor, resolve_device
from geoseg.raster import open_scene, read_window, valid_mask
from geoseg.taxonomy import Taxonomy, load_taxonomy
from geoseg.tiles import TileGrid

log = logging.getLogger(__name__)

TRAIN, VAL, TEST = 0, 1, 2


@dataclass
class LabelledScene:
    """One training scene in memory.

    ``coarse``/``fine`` hold class *indices* (``-1`` = unlabelled at that level) and
    ``role`` the split role of every pixel (TRAIN / VAL / TEST).
    """

    path: str
    image: np.ndarray
    valid: np.ndarray
    coarse: np.ndarray
    fine: np.ndarray
    role: np.ndarray
    blocks: list[tuple[int, int, int, int, int]]  # (row, col, height, width, role)


def _read_labels(path: Path, shape: tuple[int, int], scene_path: str) -> np.ndarray:
    with rasterio.open(path) as src:
        if (src.height, src.width) != shape:
            raise RasterFormatError(
                f"{path}: label raster is {src.height}x{src.width} but the image {scene_path} is "
                f"{shape[0]}x{shape[1]}: labels must be on the image grid"
            )
        data = src.read(1)
        nodata = src.nodata
    out = data.astype(np.int64)
    if nodata is not None:
        out[data == nodata] = -1
    return out


def _to_index(codes: np.ndarray, lut: np.ndarray, path: Path | None) -> np.ndarray:
    valid = codes >= 0
    idx = np.full(codes.shape, -1, dtype=np.int64)
    idx[valid] = lut[codes[valid]]
    unknown = np.unique(codes[valid & (idx < 0)])
    if unknown.size:
        warnings.warn(
            f"{path}: codes {unknown.tolist()[:10]} are not in the taxonomy and are ignored",
            UnknownCodeWarning,
            stacklevel=3,
        )
    return idx


def load_scene(
    image: Path,
    coarse: Path | None,
    fine: Path | None,
    taxonomy: Taxonomy,
    *,
    block: int,
    checkerboard: bool,
    val_every: int,
    bands: tuple[str, ...] | None = None,
) -> LabelledScene:
    """Read an image and its labels, map codes to indices and assign split roles."""
    scene = open_scene(image, require_crs=False)
    band_idx = select_bands(scene.band_names, bands, str(image))
    data, _ = read_window(scene.path, 0, 0, scene.height, scene.width, bands=band_idx)
    valid = valid_mask(data, tuple(scene.nodata[i - 1] for i in band_idx))
    shape = scene.shape
    c_idx = np.full(shape, -1, dtype=np.int64)
    f_idx = np.full(shape, -1, dtype=np.int64)
    if fine is not None:
        f_idx = _to_index(
            _read_labels(fine, shape, str(image)), taxonomy.code_to_index_lut("fine"), fine
        )
    if coarse is not None:
        c_idx = _to_index(
            _read_labels(coarse, shape, str(image)), taxonomy.code_to_index_lut("coarse"), coarse
        )
    # A fine label implies its coarse parent; fill coarse where only fine is known.
    derived = (c_idx < 0) & (f_idx >= 0)
    c_idx[derived] = taxonomy.fine_parent_index[f_idx[derived]]
    c_idx[~valid] = -1
    f_idx[~valid] = -1
    role = np.empty(shape, dtype=np.int8)
    blocks = []
    k = 0
    for r in range(0, shape[0], block):
        for c in range(0, shape[1], block):
            h, w = min(block, shape[0] - r), min(block, shape[1] - c)
            if checkerboard and (r // block + c // block) % 2 == 1:
                rl = TEST
            else:
                rl = VAL if k % val_every == val_every - 1 else TRAIN
                k += 1
            role[r : r + h, c : c + w] = rl
            blocks.append((r, c, h, w, rl))
    return LabelledScene(str(image), data, valid, c_idx, f_idx, role, blocks)


def select_bands(
    names: tuple[str, ...], wanted: tuple[str, ...] | None, path: str
) -> tuple[int, ...]:
    """1-based band indexes for ``wanted`` names (all bands when ``None``)."""
    if wanted is None:
        return tuple(range(1, len(names) + 1))
    missing = [b for b in wanted if b not in names]
    if missing:
        raise RasterFormatError(
            f"{path}: bands {missing} not found (the file has {list(names)}): "
            "fix 'bands' in the config or set band descriptions in the file"
        )
    return tuple(names.index(b) + 1 for b in wanted)


def class_weights(counts: np.ndarray, mode: str) -> np.ndarray:
    """Per-class loss weights: 1, or inverse square root of frequency (mean 1, max 10)."""
    w = np.ones(counts.size)
    if mode == "inverse_sqrt":
        present = counts > 0
        w[present] = 1.0 / np.sqrt(counts[present] / counts[present].sum())
        w[present] /= w[present].mean()
        w = np.clip(w, 0.0, 10.0)
    return w


class PatchSampler:
    """Random training patches cut inside single training blocks, with dihedral augmentation."""

    def __init__(self, scenes: list[LabelledScene], norm: list[np.ndarray], patch: int, seed: int):
        self.scenes = scenes
        self.norm = norm
        self.patch = patch
        self.rng = np.random.default_rng(seed)
        self.choices: list[tuple[int, int, int, int, int]] = []
        weights = []
        for si, s in enumerate(scenes):
            for r, c, h, w, rl in s.blocks:
                n = int((s.coarse[r : r + h, c : c + w] >= 0).sum())
                if rl == TRAIN and n > 0:
                    self.choices.append((si, r, c, h, w))
                    weights.append(n)
        if not self.choices:
            raise ConfigError("no labelled training pixels: check the label rasters and the split")
        p = np.asarray(weights, dtype=np.float64)
        self.p = p / p.sum()

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n`` patches: inputs ``(n, bands, size, size)``, coarse and fine indices."""
        size = self.patch
        bands = self.norm[0].shape[0]
        x = np.zeros((n, bands, size, size), dtype=np.float32)
        yc = np.full((n, size, size), -1, dtype=np.int64)
        yf = np.full((n, size, size), -1, dtype=np.int64)
        picks = self.rng.choice(len(self.choices), size=n, p=self.p)
        for i, k in enumerate(picks):
            si, r, c, h, w = self.choices[k]
            ph, pw = min(size, h), min(size, w)
            r0 = r + int(self.rng.integers(0, h - ph + 1))
            c0 = c + int(self.rng.integers(0, w - pw + 1))
            s = self.scenes[si]
            xi = self.norm[si][:, r0 : r0 + ph, c0 : c0 + pw]
            ci = s.coarse[r0 : r0 + ph, c0 : c0 + pw]
            fi = s.fine[r0 : r0 + ph, c0 : c0 + pw]
            kr = int(self.rng.integers(0, 4))
            flip = bool(self.rng.integers(0, 2))
            xi, ci, fi = (_dihedral(a, kr, flip) for a in (xi, ci, fi))
            x[i, :, : xi.shape[1], : xi.shape[2]] = xi
            yc[i, : ci.shape[0], : ci.shape[1]] = ci
            yf[i, : fi.shape[0], : fi.shape[1]] = fi
        return x, yc, yf


def _dihedral(a: np.ndarray, k: int, flip: bool) -> np.ndarray:
    a = np.rot90(a, k, axes=(-2, -1))
    if flip:
        a = a[..., ::-1]
    return np.ascontiguousarray(a)


def _evaluate_blocks(
    model: HierarchicalSegmenter,
    scenes: list[LabelledScene],
    norm: list[np.ndarray],
    index: HierarchyIndex,
    taxonomy: Taxonomy,
    device: torch.device,
    stride: int,
) -> dict[str, Any]:
    """Score validation blocks, each predicted from its own pixels only."""
    cm_c = np.zeros((taxonomy.n_coarse,) * 2, dtype=np.int64)
    cm_f = np.zeros((taxonomy.n_fine,) * 2, dtype=np.int64)
    model.eval()
    with torch.inference_mode():
        for si, s in enumerate(scenes):
            for r, c, h, w, rl in s.blocks:
                if rl != VAL:
                    continue
                ph, pw = math.ceil(h / stride) * stride, math.ceil(w / stride) * stride
                x = norm[si][:, r : r + h, c : c + w]
                x = np.pad(x, ((0, 0), (0, ph - h), (0, pw - w)), mode="reflect")
                cl, fl = model(torch.from_numpy(np.ascontiguousarray(x))[None].to(device))
                c_t, f_t, _ = decode(cl, fl, index)
                ci, fi = c_t[0, :h, :w].cpu().numpy(), f_t[0, :h, :w].cpu().numpy()
                cm_c += confusion_matrix(s.coarse[r : r + h, c : c + w], ci, taxonomy.n_coarse)
                cm_f += confusion_matrix(s.fine[r : r + h, c : c + w], fi, taxonomy.n_fine)
    model.train()
    return _level_scores(cm_c, cm_f, taxonomy)


def _level_scores(cm_c: np.ndarray, cm_f: np.ndarray, taxonomy: Taxonomy) -> dict[str, Any]:
    return {
        "coarse": scores(cm_c, [f"{c.code} {c.name}" for c in taxonomy.coarse]),
        "fine": scores(cm_f, [f"{c.code} {c.name}" for c in taxonomy.fine]),
    }


def _summary(s: dict[str, Any]) -> dict[str, float]:
    return {
        f"{lvl}_{k}": round(s[lvl][k], 4)
        for lvl in ("coarse", "fine")
        for k in ("miou", "overall_accuracy")
        if not math.isnan(s[lvl][k])
    }


def _selection_score(s: dict[str, Any], taxonomy: Taxonomy) -> float:
    vals = [s["coarse"]["miou"]]
    if taxonomy.n_fine:
        vals.append(s["fine"]["miou"])
    vals = [v for v in vals if not math.isnan(v)]
    return float(np.mean(vals)) if vals else 0.0


def test_scores(
    predictor: Predictor, scenes: list[LabelledScene], taxonomy: Taxonomy, tile_size: int, halo: int
) -> dict[str, Any]:
    """Predict each scene whole with tiled inference and score its TEST pixels."""
    cm_c = np.zeros((taxonomy.n_coarse,) * 2, dtype=np.int64)
    cm_f = np.zeros((taxonomy.n_fine,) * 2, dtype=np.int64)
    c_lut = taxonomy.code_to_index_lut("coarse")
    f_lut = taxonomy.code_to_index_lut("fine")
    for s in scenes:
        test = s.role == TEST
        if not test.any():
            continue
        height, width = s.valid.shape
        stride = predictor.meta.output_stride
        big = math.ceil(max(height, width) / tile_size) * tile_size
        grid = TileGrid.create(
            height, width, tile_size=tile_size, halo=halo, block_size=big, stride=stride
        )
        (block,) = grid.blocks()
        win = grid.input_window(block)
        pads = ((0, 0), (-win.row_off, win.row_end - height), (-win.col_off, win.col_end - width))
        data = np.pad(s.image, pads, mode="reflect")
        valid = np.pad(s.valid, pads[1:], mode="constant", constant_values=False)
        out = predictor.predict_block(data, valid, grid, block)
        nodata = taxonomy.nodata
        pc = np.where(out[0] == nodata, -1, c_lut[out[0].astype(np.int64)])
        pf = np.where(out[1] == nodata, -1, f_lut[out[1].astype(np.int64)])
        cm_c += confusion_matrix(np.where(test, s.coarse, -1), pc, taxonomy.n_coarse)
        cm_f += confusion_matrix(np.where(test, s.fine, -1), pf, taxonomy.n_fine)
    return _level_scores(cm_c, cm_f, taxonomy)


def train(
    cfg: TrainConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    progress: bool = True,
    max_steps: int | None = None,
) -> Path:
    """Train a hierarchical model and save the best checkpoint as a bundle.

    Parameters
    ----------
    cfg : TrainConfig
        The validated configuration.
    out : str or Path
        Bundle directory to write.
    overwrite : bool
        Replace an existing bundle.
    progress : bool
        Show a progress bar on stderr.
    max_steps : int, optional
        Stop after this many optimisation steps in total (smoke tests).

    Returns
    -------
    Path
        The bundle directory.
    """
    from geoseg.errors import OutputExistsError

    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out}: bundle exists: pass --overwrite to replace it")
    t_start = time.time()
    p = cfg.train
    torch.manual_seed(p.seed)
    rng_seed = p.seed
    device = resolve_device(p.device)
    taxonomy = load_taxonomy(cfg.taxonomy)
    sources = _sources(cfg)
    scenes = [
        load_scene(
            s["image"],
            s.get("coarse"),
            s.get("fine"),
            taxonomy,
            block=cfg.split.block_size,
            checkerboard=cfg.split.checkerboard is not None,
            val_every=cfg.split.val_every,
            bands=cfg.bands,
        )
        for s in sources
    ]
    band_names = cfg.bands or open_scene(scenes[0].path, require_crs=False).band_names
    counts = {len(band_names)} | {s.image.shape[0] for s in scenes}
    if len(counts) != 1:
        raise RasterFormatError(f"training images have different band counts {sorted(counts)}")

    stats = RunningStats(len(band_names))
    for s in scenes:
        sel = s.valid & (s.role == TRAIN)
        stats.update(s.image[:, sel])
    norm = stats.result()
    normed = [norm.apply(s.image, s.valid) for s in scenes]

    c_counts = sum(
        np.bincount(s.coarse[(s.role == TRAIN) & (s.coarse >= 0)], minlength=taxonomy.n_coarse)
        for s in scenes
    )
    f_counts = sum(
        np.bincount(s.fine[(s.role == TRAIN) & (s.fine >= 0)], minlength=max(taxonomy.n_fine, 1))
        for s in scenes
    )
    cw = torch.as_tensor(
        class_weights(np.asarray(c_counts), p.class_weighting), dtype=torch.float32, device=device
    )
    fw = torch.as_tensor(
        class_weights(np.asarray(f_counts), p.class_weighting), dtype=torch.float32, device=device
    )

    model = HierarchicalSegmenter(
        cfg.model, in_channels=len(band_names), n_coarse=taxonomy.n_coarse, n_fine=taxonomy.n_fine
    ).to(device)
    index = HierarchyIndex.from_taxonomy(taxonomy).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    total_steps = p.epochs * p.steps_per_epoch
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=p.lr, total_steps=max(total_steps, 1), pct_start=0.1
    )
    patch = min(p.patch_size, cfg.split.block_size)
    patch -= patch % cfg.model.output_stride
    if patch < cfg.model.output_stride:
        raise ConfigError(
            f"patch size {p.patch_size} is smaller than the output stride {cfg.model.output_stride}"
        )
    sampler = PatchSampler(scenes, normed, patch, rng_seed)
    has_val = any(rl == VAL for s in scenes for *_, rl in s.blocks)

    best_score, best_state, best_epoch, best_val = -1.0, None, -1, {}
    history = []
    bad_epochs = 0
    step = 0
    bar = tqdm(total=total_steps, disable=not progress, desc=f"train {cfg.name}", unit="step")
    model.train()
    for epoch in range(p.epochs):
        losses = []
        for _ in range(p.steps_per_epoch):
            if step >= total_steps:
                break
            x, yc, yf = sampler.batch(p.batch_size)
            xt = torch.from_numpy(x).to(device)
            yct = torch.from_numpy(yc).to(device)
            yft = torch.from_numpy(yf).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                cl, fl = model(xt)
            lc, lf = hierarchical_loss(cl, fl, yct, yft, index, coarse_weight=cw, fine_weight=fw)
            loss = lc + p.fine_loss_weight * lf
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{np.mean(losses[-20:]):.3f}")
        val = (
            _evaluate_blocks(
                model, scenes, normed, index, taxonomy, device, cfg.model.output_stride
            )
            if has_val
            else {}
        )
        score = _selection_score(val, taxonomy) if val else -float(np.mean(losses))
        history.append(
            {
                "epoch": epoch + 1,
                "loss": round(float(np.mean(losses)), 5),
                **(_summary(val) if val else {}),
            }
        )
        log.info("epoch %d: %s", epoch + 1, history[-1])
        bar.write(
            f"epoch {epoch + 1}: "
            + ", ".join(f"{k}={v}" for k, v in history[-1].items() if k != "epoch")
        )
        if score > best_score:
            best_score, best_epoch, best_val = score, epoch + 1, val
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            bad_epochs = 0
        else:
            bad_epochs += 1
        if bad_epochs >= p.patience or step >= total_steps:
            break
    bar.close()
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()

    stride = cfg.model.output_stride
    halo = p.halo if p.halo is not None else 2 * stride
    tile = p.tile_size
    meta = BundleMeta(
        name=cfg.name,
        architecture=cfg.model.architecture,
        encoder=cfg.model.encoder,
        model=cfg.model,
        bands=tuple(band_names),
        normalization=norm,
        taxonomy=taxonomy,
        output_stride=stride,
        tile_size=tile,
        halo=halo,
    )
    predictor = Predictor(meta, model, device=device, batch_size=4)
    metrics: dict[str, Any] = {"validation": _trim(best_val), "selected_epoch": best_epoch}
    if cfg.split.checkerboard:
        test = test_scores(predictor, scenes, taxonomy, tile, halo)
        metrics["test"] = {
            "split": f"checkerboard {cfg.split.checkerboard}: blocks with odd (row//N + col//N)",
            **_trim(test),
        }
    training = {
        "config": cfg.model_dump(mode="json"),
        "data": [{k: str(v) for k, v in s.items()} for s in sources],
        "steps": step,
        "epochs_run": len(history),
        "history": history,
        "seconds": round(time.time() - t_start, 1),
        "device": str(device),
        "torch": torch.__version__,
    }
    meta = meta.model_copy(update={"training": training, "metrics": metrics})
    return save_bundle(out, meta, model, overwrite=overwrite)


def _trim(s: dict[str, Any]) -> dict[str, Any]:
    if not s:
        return {}
    return {
        lvl: {
            "miou": round(s[lvl]["miou"], 4) if not math.isnan(s[lvl]["miou"]) else None,
            "overall_accuracy": round(s[lvl]["overall_accuracy"], 4)
            if not math.isnan(s[lvl]["overall_accuracy"])
            else None,
            "pixels": s[lvl]["pixels"],
            "per_class_iou": {k: v["iou"] for k, v in s[lvl]["per_class"].items()},
        }
        for lvl in ("coarse", "fine")
    }


def _sources(cfg: TrainConfig) -> list[dict[str, Path]]:
    if cfg.data.dataset:
        from geoseg.datasets import fetch

        files = fetch(cfg.data.dataset)
        return [{k: v for k, v in files.items() if k in ("image", "coarse", "fine")}]
    out = []
    for s in cfg.data.sources:
        d: dict[str, Path] = {"image": s.image}
        if s.coarse is not None:
            d["coarse"] = s.coarse
        if s.fine is not None:
            d["fine"] = s.fine
        out.append(d)
    return out
