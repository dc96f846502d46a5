"""Training the hierarchical model on labelled rasters and exporting a bundle.

The data of a run (images plus coarse and/or fine labels on the same grid) is held in
memory; the split is spatial (:class:`geoseg.config.SplitConfig`): training patches
are cut *inside* single training blocks, so with a checkerboard split no test pixel
(image or label) is ever seen before the final test, which runs the same tiled
inference as ``geoseg predict`` on the whole scene and scores the test blocks only.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from geoseg.atomic import check_not_input, locks_output
from geoseg.bundle import BundleMeta, DecodeBias, read_meta, save_bundle
from geoseg.calibrate import (
    MIN_CLASS_PIXELS,
    calibrate_halo,
    calibration_window,
    tune_decode_bias,
)
from geoseg.checkpoint import CHECKPOINT_FILE, checkpoint_dir, load_checkpoint, save_checkpoint
from geoseg.config import TrainConfig
from geoseg.devices import autocast, resolve_device, resolve_precision
from geoseg.errors import ConfigError, OutputExistsError, RasterFormatError
from geoseg.hierarchy import (
    HierarchyIndex,
    decode,
    hierarchical_jaccard_loss,
    hierarchical_loss,
)
from geoseg.labelled import (
    TEST,
    TRAIN,
    VAL,
    LabelledScene,
    check_held_out,
    config_scenes,
    select_bands,
    spill_folder,
    training_sources,
)
from geoseg.metrics import NO_FINE, confusion_matrix, fine_confusion_matrix, scores
from geoseg.model import HierarchicalSegmenter, build_segmenter
from geoseg.normalize import (
    FILL_SHARE,
    Normalization,
    NormalizedScene,
    RunningStats,
    add_differences,
    check_input_range,
    robust_statistics,
    untagged_fill_warning,
    zero_in_every_band,
)
from geoseg.predict import Predictor, predict_blocks
from geoseg.pretrained import (
    channel_names,
    load_bundle_weights,
    load_encoder_weights,
    read_state_dict,
)
from geoseg.raster import open_scene
from geoseg.sampling import PatchSampler, class_weights, mirror_pad, paste_classes
from geoseg.taxonomy import Taxonomy, format_share, load_taxonomy, lookup_codes

log = logging.getLogger(__name__)


def _val_block_logits(
    model: HierarchicalSegmenter,
    scenes: list[LabelledScene],
    norm: Sequence[np.ndarray | NormalizedScene],
    device: torch.device,
    stride: int,
    context: int = 0,
) -> Iterator[tuple[LabelledScene, tuple[int, int, int, int], torch.Tensor, torch.Tensor]]:
    """Each validation block, predicted from its own pixels only.

    Yields ``(scene, (r, c, h, w), coarse logits, fine logits)`` with logits of shape
    ``(1, C, h, w)``; the model's train/eval mode is restored afterwards. With
    ``context``, the block is mirror-padded by that many pixels first, as the training
    patches are (``train.context_pad``).
    """
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for si, s in enumerate(scenes):
                for r, c, h, w, rl in s.blocks:
                    if rl != VAL:
                        continue
                    ph, pw = math.ceil(h / stride) * stride, math.ceil(w / stride) * stride
                    x = norm[si][:, r : r + h, c : c + w]
                    k = context
                    x = mirror_pad(x, (k, k + ph - h), (k, k + pw - w))
                    xt = torch.from_numpy(np.ascontiguousarray(x))[None].to(device)
                    cl, fl = model(xt, trim=k)
                    yield s, (r, c, h, w), cl[:, :, :h, :w], fl[:, :, :h, :w]
    finally:
        model.train(was_training)


def _evaluate_blocks(
    model: HierarchicalSegmenter,
    scenes: list[LabelledScene],
    norm: Sequence[np.ndarray | NormalizedScene],
    index: HierarchyIndex,
    taxonomy: Taxonomy,
    device: torch.device,
    stride: int,
    context: int = 0,
) -> dict[str, Any]:
    """Score validation blocks, each predicted from its own pixels only."""
    cm_c = np.zeros((taxonomy.n_coarse,) * 2, dtype=np.int64)
    cm_f = np.zeros((taxonomy.n_fine + taxonomy.fine_leaf_column,) * 2, dtype=np.int64)
    blocks = _val_block_logits(model, scenes, norm, device, stride, context)
    for s, (r, c, h, w), cl, fl in blocks:
        c_t, f_t, _ = decode(cl, fl, index)
        ci, fi = c_t[0].cpu().numpy(), f_t[0].cpu().numpy()
        cm_c += confusion_matrix(s.coarse[r : r + h, c : c + w], ci, taxonomy.n_coarse)
        cm_f += fine_confusion_matrix(
            s.fine[r : r + h, c : c + w], fi, ci, taxonomy.n_fine,
            leaf_column=taxonomy.fine_leaf_column,
        )  # fmt: skip
    return _level_scores(cm_c, cm_f, taxonomy)


#: Labelled validation pixels whose logits tune the decision offsets; above this, one in
#: every k of them (see :func:`sample_ranks`) is kept, so that the memory (112 bytes a
#: pixel with the NLCD taxonomy) and the time of the tuning stay bounded whatever the
#: validation area.
TUNE_PIXELS = 1 << 22


def sample_ranks(n: int, step: int, seed: int) -> np.ndarray:
    """One rank at random in each run of ``step`` consecutive ranks of ``0 .. n - 1``.

    A regular sample (every part of every block keeps its share) without the aliasing
    of every ``step``-th rank, which keeps the same columns of every row of a block whose
    width is a multiple of ``step``, and can miss a thin north-south road.

    Examples
    --------
    >>> sample_ranks(10, 4, seed=0).tolist()
    [2, 5, 8]
    >>> sample_ranks(5, 1, seed=0).tolist()
    [0, 1, 2, 3, 4]
    """
    groups = -(-n // step)
    sizes = np.full(groups, step, dtype=np.int64)
    sizes[-1] = n - (groups - 1) * step
    offsets = (np.random.default_rng(seed).random(groups) * sizes).astype(np.int64)
    return np.arange(groups, dtype=np.int64) * step + offsets


def _val_logits(
    model: HierarchicalSegmenter,
    scenes: list[LabelledScene],
    norm: Sequence[np.ndarray | NormalizedScene],
    device: torch.device,
    stride: int,
    context: int = 0,
    *,
    max_pixels: int | None = None,
    seed: int = 0,
) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], int, int] | None:
    """Logits and targets of the labelled validation pixels (as in :func:`_evaluate_blocks`).

    Written into tensors sized up front (from the labels), not concatenated from
    per-block parts, which held them twice. With more than ``max_pixels`` labelled
    validation pixels, one in each ``step`` of them (in block order) is kept:
    :func:`sample_ranks` with ``seed``.

    Returns
    -------
    ((coarse logits, fine logits, coarse targets, fine targets), step, labelled) or None
        None where no validation pixel is labelled.
    """
    n = sum(
        int((s.coarse[r : r + h, c : c + w] >= 0).sum())
        for s in scenes
        for r, c, h, w, rl in s.blocks
        if rl == VAL
    )
    if not n:
        return None
    step = 1 if max_pixels is None else max(1, -(-n // max_pixels))
    picked = sample_ranks(n, step, seed) if step > 1 else None
    kept = n if picked is None else picked.size
    out: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    seen = at = 0
    blocks = _val_block_logits(model, scenes, norm, device, stride, context)
    for s, (r, c, h, w), cl, fl in blocks:
        yc = torch.from_numpy(s.coarse[r : r + h, c : c + w]).flatten().long()
        yf = torch.from_numpy(s.fine[r : r + h, c : c + w]).flatten().long()
        keep = torch.nonzero(yc >= 0).flatten()
        if picked is not None:  # the block's labelled pixels whose ranks were picked
            m = keep.numel()
            lo, hi = np.searchsorted(picked, (seen, seen + m))
            keep = keep[torch.from_numpy(picked[lo:hi] - seen)]
            seen += m
        k = keep.numel()
        if out is None:
            out = (
                torch.empty(kept, cl.shape[1]),
                torch.empty(kept, fl.shape[1]),
                torch.empty(kept, dtype=torch.long),
                torch.empty(kept, dtype=torch.long),
            )
        out[0][at : at + k] = cl[0].float().cpu().flatten(1).T[keep]
        out[1][at : at + k] = fl[0].float().cpu().flatten(1).T[keep]
        out[2][at : at + k] = yc[keep]
        out[3][at : at + k] = yf[keep]
        at += k
    assert out is not None and at == kept
    return out, step, n


def _level_scores(cm_c: np.ndarray, cm_f: np.ndarray, taxonomy: Taxonomy) -> dict[str, Any]:
    return {
        "coarse": scores(cm_c, [f"{c.code} {c.name}" for c in taxonomy.coarse]),
        "fine": scores(
            cm_f,
            [f"{c.code} {c.name}" for c in taxonomy.fine] + [NO_FINE] * taxonomy.fine_leaf_column,
            scored=taxonomy.n_fine,
        ),
    }


def _summary(s: dict[str, Any]) -> dict[str, float]:
    if not s:
        return {}
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


def tiled_scores(
    predictor: Predictor,
    scenes: list[LabelledScene],
    taxonomy: Taxonomy,
    tile_size: int,
    halo: int,
    *,
    role: int = TEST,
) -> dict[str, Any]:
    """Predict each scene whole with tiled inference and score its pixels of ``role``.

    The scenes are predicted as ``geoseg predict`` does (whole, with their surroundings
    as context), so this is the test score a user gets; with ``role=VAL`` it scores the
    validation blocks the same way (``benchmarks/tta.py``).
    """
    cm_c = np.zeros((taxonomy.n_coarse,) * 2, dtype=np.int64)
    cm_f = np.zeros((taxonomy.n_fine + taxonomy.fine_leaf_column,) * 2, dtype=np.int64)
    c_lut = taxonomy.code_to_index_lut("coarse")
    f_lut = taxonomy.code_to_index_lut("fine")
    nodata = taxonomy.nodata
    for s in scenes:
        if not (s.role == role).any():
            continue
        # block by block: the scene's logits and int64 look-ups are never whole in memory
        for block, out in predict_blocks(
            predictor, s.image, s.valid, tile_size=tile_size, halo=halo
        ):
            win = block.slices()
            scored = s.role[win] == role
            if not scored.any():
                continue
            pc = lookup_codes(np.where(out[0] == nodata, -1, out[0]), c_lut)
            pf = lookup_codes(np.where(out[1] == nodata, -1, out[1]), f_lut)
            cm_c += confusion_matrix(np.where(scored, s.coarse[win], -1), pc, taxonomy.n_coarse)
            cm_f += fine_confusion_matrix(
                np.where(scored, s.fine[win], -1), pf, pc, taxonomy.n_fine,
                leaf_column=taxonomy.fine_leaf_column,
            )  # fmt: skip
    return _level_scores(cm_c, cm_f, taxonomy)


def fingerprint(cfg: TrainConfig, max_steps: int | None) -> str:
    """Identifies a training run: the settings that differ from the defaults, and the step limit.

    Fields left at their defaults are not hashed, so a checkpoint written before a
    later version added an option (at its default) can still be resumed.
    """
    text = cfg.model_dump_json(exclude_defaults=True) + f"|max_steps={max_steps}"
    return hashlib.sha256(text.encode()).hexdigest()


def _indexed_band_names(bands: Sequence[str], image: str | Path) -> dict[str, list[str]]:
    """``{"band_descriptions": [...]}``: the names of bands given by index in the first image.

    A config may give bands by index (``bands: [4, 3, 2]``, named ``band4`` ...); where
    the image names its bands, prediction compares a scene's names at those indexes with
    these, to catch a scene whose bands lie in another order. Empty otherwise.
    """
    from geoseg.raster import band_index, unnamed_bands

    if not all(re.fullmatch(r"band\d+", b) for b in bands):
        return {}
    names = open_scene(image).band_names
    if unnamed_bands(names):
        return {}
    idx = [band_index(names, b) for b in bands]
    return {"band_descriptions": [names[i - 1] for i in idx if i is not None]}


def run_settings(cfg: TrainConfig, max_steps: int | None, refit: int | None = None) -> str:
    """What :func:`fingerprint` identifies a run by, as JSON.

    Kept in its checkpoints, so that a resume with other settings can say which differ.
    """
    config = json.loads(cfg.model_dump_json(exclude_defaults=True))
    return json.dumps({"config": config, "max_steps": max_steps, "refit": refit}, sort_keys=True)


def _difference_positions(cfg: TrainConfig, band_names: Sequence[str]) -> list[tuple[int, int]]:
    """0-based band positions of the config's normalised differences."""
    pos = {name: i for i, name in enumerate(band_names)}
    out = []
    for a, b in cfg.normalized_differences:
        missing = [n for n in (a, b) if n not in pos]
        if missing:
            raise ConfigError(
                f"{cfg.name}: normalized_differences names band {missing[0]!r}, which is not "
                f"one of the training bands {', '.join(band_names)}: use those names"
            )
        out.append((pos[a], pos[b]))
    return out


def _scheduler(
    opt: torch.optim.Optimizer, kind: str, lr: float, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    if kind == "onecycle":
        if total_steps < 3:  # too short for a warm-up and an annealing phase
            return torch.optim.lr_scheduler.LambdaLR(opt, lambda _step: 1.0)
        # warm up over 10 % of the steps, but at least two (torch divides by the
        # warm-up length minus one)
        pct = max(0.1, 2.0 / total_steps)
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=lr, total_steps=total_steps, pct_start=pct
        )
    if kind == "cosine":
        warm = max(1, total_steps // 20)

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            t = min(1.0, (step - warm) / max(1, total_steps - warm))
            return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t))

        return torch.optim.lr_scheduler.LambdaLR(opt, factor)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _step: 1.0)


def _check_labelled(
    scenes: list[LabelledScene], sources: list[dict[str, Path]], taxonomy: Taxonomy
) -> None:
    """Refuse, before anything else is said about them, labels that train nothing.

    Raises
    ------
    ConfigError
        No training pixel is labelled: naming the label rasters, and whether any pixel
        outside the training blocks is.
    """
    labelled = [(s.coarse >= 0) | (s.fine >= 0) for s in scenes]
    if any((lab & (s.role == TRAIN)).any() for lab, s in zip(labelled, scenes, strict=True)):
        return
    files = ", ".join(str(p) for src in sources for k in ("coarse", "fine") if (p := src.get(k)))
    if not any((s.role == TRAIN).any() for s in scenes):
        raise ConfigError(
            f"{files}: no scene trains: every source has role: validation or test; give the "
            "training scenes role: train (or the default, role: blocks)"
        )
    if any(lab.any() for lab in labelled):
        training = ", ".join(
            str(p)
            for src, s in zip(sources, scenes, strict=True)
            if (s.role == TRAIN).any()
            for k in ("coarse", "fine")
            if (p := src.get(k))
        )
        raise ConfigError(
            f"{training}: no pixel where the model trains (training blocks, role: train "
            "scenes) holds a class of the taxonomy, only validation or test pixels do: check "
            "that these rasters use the taxonomy's codes under the right key (see the "
            "warnings above), label more of them, or change the split (a smaller "
            "split.checkerboard, a larger split.val_every)"
        )
    raise ConfigError(
        f"{files}: no pixel is labelled where the image is valid: every label pixel is "
        f"the taxonomy's nodata value ({taxonomy.nodata}), a code the taxonomy does not "
        "list, or over the image's nodata: check the label rasters and the taxonomy"
    )


def _trained_levels(taxonomy: Taxonomy, scenes: list[LabelledScene]) -> Taxonomy:
    """The taxonomy without its fine level when no training pixel has a fine label.

    A fine head that never saw a label would still name a fine class everywhere; with
    the fine level dropped, the bundle predicts the coarse level only and its fine band
    is nodata. The scenes' fine labels (in validation or test blocks) are then dropped
    too, in place.
    """
    if not taxonomy.n_fine or any(((s.role == TRAIN) & (s.fine >= 0)).any() for s in scenes):
        return taxonomy
    for s in scenes:
        s.fine[:] = -1
    log.warning(
        "no training pixel has a fine label: the bundle predicts the coarse level only "
        "(its fine band is nodata)"
    )
    return Taxonomy.model_validate({**taxonomy.model_dump(), "fine": []})


def _warn_about_split(cfg: TrainConfig, scenes: list[LabelledScene]) -> None:
    """Say how the scenes were split, and when that leaves no validation or no test pixels."""
    counts = {
        name: sum(int(((s.role == rl) & ((s.coarse >= 0) | (s.fine >= 0))).sum()) for s in scenes)
        for name, rl in (("training", TRAIN), ("validation", VAL), ("test", TEST))
    }
    log.info(
        "%s: %d scene%s; labelled pixels: %s",
        cfg.name, len(scenes), "s" if len(scenes) != 1 else "",
        ", ".join(f"{n:,} {name}" for name, n in counts.items()),
    )  # fmt: skip
    roles = {rl for s in scenes for *_, rl in s.blocks}
    if VAL in roles or counts["validation"]:
        _warn_about_validation(cfg, scenes, counts)
    if VAL not in roles and not cfg.train.refit:
        split_sources = "blocks" in cfg.source_roles()
        log.warning(
            "%s: the split has no validation blocks: the last epoch is kept and no decision "
            "offsets are tuned; %s", cfg.name,
            "lower split.val_every or use more labelled data"
            if split_sources
            else "give a source role: validation, or role: blocks to cut validation blocks "
            "out of a scene (role: train scenes are trained on whole)",
        )  # fmt: skip
    if TEST in roles:
        return
    if not cfg.split.checkerboard:
        log.warning(
            "%s: the split has no checkerboard and no source has role: test, so there are "
            "no test pixels: the bundle gets no test score; set split.checkerboard to hold "
            "out test blocks, or role: test on scenes set aside for testing", cfg.name
        )  # fmt: skip
    else:
        log.warning(
            "%s: the split has no test blocks (every image is within one %d px checkerboard "
            "block): lower split.checkerboard to get a test score", cfg.name,
            cfg.split.checkerboard,
        )  # fmt: skip


#: Validation holding less than this share of what its rotation promises is warned about.
THIN_VALIDATION = 0.25


def _warn_about_validation(
    cfg: TrainConfig, scenes: list[LabelledScene], counts: dict[str, int]
) -> None:
    """Warn where validation cannot choose the epoch: too few pixels, or too few classes.

    On a small image, the blocks the split cuts at its edges are thin strips that still
    count as blocks in the ``val_every`` rotation, and validation can be two strips of
    one class: its score then rises to 1 at once and the epoch kept is chance.
    """
    if cfg.split.validation == "stratified" or set(cfg.source_roles()) != {"blocks"}:
        return
    own = counts["training"] + counts["validation"]
    expected = own / cfg.split.val_every
    coarse: dict[str, set[int]] = {}
    for name, rl in (("training", TRAIN), ("validation", VAL)):
        found = (np.unique(s.coarse[(s.role == rl) & (s.coarse >= 0)]) for s in scenes)
        coarse[name] = {int(c) for codes in found for c in codes}
    few_pixels = counts["validation"] < THIN_VALIDATION * expected
    few_classes = len(coarse["validation"]) < len(coarse["training"]) / 2
    if not (few_pixels or few_classes):
        return
    log.warning(
        "%s: the validation blocks hold %s labelled pixels (%s of the non-test ones; one "
        "block in %d promises about %s) of %d of the %d coarse classes trained on: their "
        "score cannot choose the epoch or tune the decision offsets (on a small image, the "
        "blocks cut at its edges are thin strips that count in the rotation): set "
        "split.validation: stratified, or a split.block that divides the image",
        cfg.name, f"{counts['validation']:,}", format_share(counts["validation"], own),
        cfg.split.val_every, format_share(round(expected), own), len(coarse["validation"]),
        len(coarse["training"]),
    )  # fmt: skip


def _warn_untrained_classes(
    cfg: TrainConfig, taxonomy: Taxonomy, scenes: list[LabelledScene], counts: dict[str, Any]
) -> None:
    """Name the classes labelled nowhere, or somewhere but in no training block."""
    left_out = untrained_classes(taxonomy, scenes)  # the bundle never labels these
    for level, classes in (("coarse", taxonomy.coarse), ("fine", taxonomy.fine)):
        total = np.zeros(len(classes), dtype=np.int64)
        for s in scenes:
            a = getattr(s, level)
            total += np.bincount(a[a >= 0], minlength=len(classes))[: len(classes)]
        missing = [
            f"{c.code} {c.name} ({int(total[i]):,} px)"
            for i, c in enumerate(classes)
            if total[i] > 0 and counts[level][i] == 0
        ]
        nowhere = [f"{c.code} {c.name}" for i, c in enumerate(classes) if total[i] == 0]
        # a fine class of a parent whose fine classes are all unlabelled stays a guess
        guessed = [
            f"{c.code} {c.name}"
            for i, c in enumerate(classes)
            if total[i] == 0 and i not in left_out[level]
        ]
        if nowhere:
            them = "them" if len(nowhere) > 1 else "it"
            log.warning(
                "%s: %s class%s no labelled pixel in any source, so the model cannot learn "
                "%s and its labels leave %s out: %s; label some, or use a taxonomy "
                "without %s%s",
                cfg.name, level, "es have" if len(nowhere) > 1 else " has", them, them,
                ", ".join(nowhere), them,
                f" (its labels still give {', '.join(guessed)}, untrained guesses, as no fine "
                "class of their parent has a labelled pixel)" if guessed else "",
            )  # fmt: skip
        if missing:
            log.warning(
                "%s: %s class%s labelled only outside the training blocks and scenes, so "
                "the model cannot learn %s: %s; label more of %s where it trains%s",
                cfg.name, level, "es are" if len(missing) > 1 else " is",
                "them" if len(missing) > 1 else "it", ", ".join(missing),
                "them" if len(missing) > 1 else "it",
                " (or use a smaller split.checkerboard)" if cfg.split.checkerboard else "",
            )  # fmt: skip


_POOLED_UNITS_FIX = (
    "the training images likely differ in units or scaling (e.g. DN vs reflectance, "
    "uint8 vs uint16): bring them to the same units, or train them apart"
)


def _normalization(
    scenes: list[LabelledScene], differences: list[tuple[int, int]], band_names: Sequence[str]
) -> Normalization:
    """Band statistics of the training pixels, pooled over every scene.

    Unlabelled pixels that are 0 in every band are left out: they are the fill of an image
    without a nodata value (reported by :func:`_untagged_fill`), not data. With several
    scenes, each scene's training pixels are compared with those of the other scenes
    pooled, as a prediction's input is with the training statistics
    (:func:`geoseg.normalize.check_input_range`): scenes in other units pool into
    statistics that fit none of them, and are reported.

    Parameters
    ----------
    scenes : list of LabelledScene
        The training scenes.
    differences : list of (int, int)
        0-based band pairs of the normalised-difference channels.
    band_names : sequence of str
        The model's bands, in order.

    Returns
    -------
    Normalization
        The statistics the bundle records.
    """
    per_scene, selected = [], []
    for s in scenes:
        sel = s.valid & (s.role == TRAIN) & ~_untagged_fill(s)
        stats = RunningStats(len(band_names) + len(differences))
        _add_training_pixels(stats, s.image, sel, differences)
        per_scene.append(stats)
        selected.append(sel)
    pooled = RunningStats(len(band_names) + len(differences))
    for stats in per_scene:
        pooled.merge(stats)
    norm = pooled.result(differences)
    for i, (s, sel) in enumerate(zip(scenes, selected, strict=True)):
        others = RunningStats(len(band_names) + len(differences))
        for j, stats in enumerate(per_scene):
            if j != i:
                others.merge(stats)
        if not others.n or not sel.any():
            continue
        _warn_other_units(s, sel, others.result(differences), band_names)
    return norm


#: Training pixels a scene adds to the statistics at once; a scene with more adds them
#: in bands of rows of about this many pixels (its float64 copy is 8 bytes a pixel and
#: channel). A scene that fits gives the statistics of one pass, to the last digit.
STATS_CHUNK = 1 << 22


def _add_training_pixels(
    stats: RunningStats, image: np.ndarray, sel: np.ndarray, differences: list[tuple[int, int]]
) -> None:
    """Feed ``image``'s pixels where ``sel`` to ``stats``, a bounded number at a time."""
    if int(sel.sum()) <= STATS_CHUNK:
        stats.update(add_differences(image[:, sel], differences))
        return
    rows = max(1, STATS_CHUNK // sel.shape[1])
    for r in range(0, sel.shape[0], rows):
        part = sel[r : r + rows]
        stats.update(add_differences(image[:, r : r + rows][:, part], differences))


def _warn_other_units(
    scene: LabelledScene, sel: np.ndarray, others: Normalization, band_names: Sequence[str]
) -> None:
    """Warn when a scene's training pixels ``sel`` lie outside the other scenes' statistics."""
    where = np.flatnonzero(sel)
    pixels = scene.image.reshape(scene.image.shape[0], -1)
    sample = pixels[:, where[:: max(1, where.size // 200_000)]].astype(np.float64)
    names = open_scene(scene.path).band_names
    check = check_input_range(
        *robust_statistics(sample),
        others,
        band_names,
        scene_bands=select_bands(names, tuple(band_names), scene.path),
        path=scene.path,
        reference="the training pixels of the other images have",
        fix=_POOLED_UNITS_FIX,
    )
    if check.warning:
        log.warning(check.warning)


def _untagged_fill(scene: LabelledScene) -> np.ndarray:
    """Unlabelled valid pixels that are 0 in every band, warning when they are many.

    Where at least :data:`geoseg.normalize.FILL_SHARE` of the valid pixels are 0 in every
    band, the image most likely holds fill that its file does not tag as nodata (see
    :func:`geoseg.normalize.untagged_fill_warning`).

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` bool: the unlabelled pixels among them (kept out of the statistics).
    """
    zero = scene.valid & zero_in_every_band(scene.image)
    n_zero = int(zero.sum())
    fill = zero & (scene.coarse < 0) & (scene.fine < 0)
    share = n_zero / int(scene.valid.sum()) if n_zero else 0.0
    if share >= FILL_SHARE:
        nodata = [nd for nd in open_scene(scene.path).nodata if nd is not None]
        note = untagged_fill_warning(
            scene.path,
            share,
            nodata=nodata[0] if nodata else None,
            unlabelled=int(fill.sum()) / n_zero,
        )
        log.warning(note)
    return fill


def _validation_trains(scenes: list[LabelledScene]) -> None:
    """Make every validation block of ``scenes`` a training block (a refit's split)."""
    for s in scenes:
        s.role[s.role == VAL] = TRAIN
        s.blocks = [(r, c, h, w, TRAIN if rl == VAL else rl) for r, c, h, w, rl in s.blocks]


def _check_output(out: Path, *, overwrite: bool, resume: bool) -> None:
    """Refuse to replace a bundle, or to drop an interrupted run, without --overwrite."""
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out}: bundle exists: pass --overwrite to replace it")
    if (checkpoint_dir(out) / CHECKPOINT_FILE).exists() and not resume and not overwrite:
        raise OutputExistsError(
            f"{checkpoint_dir(out)}: an interrupted run left a checkpoint here: pass --resume "
            "to continue it, or --overwrite to start over"
        )


def train(
    cfg: TrainConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    progress: bool = True,
    max_steps: int | None = None,
    resume: bool = False,
) -> Path:
    """Train a hierarchical model and save the best checkpoint as a bundle.

    With ``train.refit`` the run is done twice: once to choose the epoch on the
    validation blocks (its bundle is written to ``<out>.selection``), then from scratch
    on the training and validation blocks, stopped at that epoch (see
    :class:`geoseg.config.TrainParams`). Arguments as for :func:`_train_run`.
    """
    check_not_input(Path(out), cfg.input_files())  # --overwrite would delete them
    run = functools.partial(
        _train_run, cfg, overwrite=overwrite, progress=progress, max_steps=max_steps
    )
    if not cfg.train.refit:
        return run(out, resume=resume)
    out = Path(out)
    _check_output(out, overwrite=overwrite, resume=resume)
    selection_out = out.with_name(out.name + ".selection")
    selected = resume and (selection_out / "bundle.json").exists()
    checkpoints = [checkpoint_dir(d) / CHECKPOINT_FILE for d in (out, selection_out)]
    if resume and not selected and not any(c.exists() for c in checkpoints):
        raise ConfigError(
            f"{checkpoints[1]}: no checkpoint to resume: run without --resume to start training"
        )
    if not selected:
        run(selection_out, resume=resume and checkpoint_dir(selection_out).exists())
    selection = read_meta(selection_out)
    if selection.training.get("fingerprint") != fingerprint(cfg, max_steps):
        raise ConfigError(
            f"{selection_out}: the selection run was trained with a different configuration: "
            "resume with the same config and options, or pass --overwrite to start over"
        )
    return run(out, resume=resume and checkpoint_dir(out).exists(), refit_of=selection)


def _train_run(
    cfg: TrainConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    progress: bool = True,
    max_steps: int | None = None,
    resume: bool = False,
    refit_of: BundleMeta | None = None,
) -> Path:
    """Train a hierarchical model and save the best checkpoint as a bundle.

    After every epoch the full training state is saved to ``<out>.checkpoint/``; with
    ``resume`` an interrupted run continues from there and ends exactly as an
    uninterrupted run would. The checkpoint is removed once the bundle is written.

    Parameters
    ----------
    cfg : TrainConfig
        The validated configuration.
    out : str or Path
        Bundle directory to write.
    overwrite : bool
        Replace an existing bundle, and discard a checkpoint left by an interrupted run.
    progress : bool
        Show a progress bar on stderr.
    max_steps : int, optional
        Stop after this many optimisation steps in total (smoke tests).
    resume : bool
        Continue the interrupted run whose checkpoint is in ``<out>.checkpoint/``.
    refit_of : BundleMeta, optional
        The selection run of a refit: train on the training and validation blocks, stop
        at its selected epoch, keep those weights and its decision offsets.

    Returns
    -------
    Path
        The bundle directory.
    """
    out = Path(out)
    ckpt_dir = checkpoint_dir(out)
    _check_output(out, overwrite=overwrite, resume=resume)
    if (ckpt_dir / CHECKPOINT_FILE).exists() and not resume:
        shutil.rmtree(ckpt_dir)  # --overwrite
    t_start = time.time()
    p = cfg.train
    refit_epochs = int(refit_of.metrics["selected_epoch"]) if refit_of is not None else None
    run_id = fingerprint(cfg, max_steps) + (f"|refit={refit_epochs}" if refit_epochs else "")
    accepted: tuple[str, ...] = ()
    if not refit_epochs:  # how checkpoints were identified before defaults were left out
        legacy = cfg.model_dump_json() + f"|max_steps={max_steps}"
        accepted = (hashlib.sha256(legacy.encode()).hexdigest(),)
    settings = run_settings(cfg, max_steps, refit_epochs)
    state = (
        load_checkpoint(ckpt_dir, fingerprint=run_id, also_accept=accepted, settings=settings)
        if resume
        else None
    )
    torch.manual_seed(p.seed)
    device = resolve_device(p.device)
    precision = resolve_precision(p.precision, device)
    taxonomy = load_taxonomy(cfg.taxonomy)
    # the starting weights are read before any data: a bad file fails at once
    start_tensors = read_state_dict(p.encoder_weights) if p.encoder_weights is not None else None
    start_meta = read_meta(p.init_from) if p.init_from is not None else None
    paste = paste_classes(taxonomy, p.augment.copy_paste_classes, cfg.name)
    sources = training_sources(cfg)
    trained_on = (
        [d["image"] for d in start_meta.training.get("data") or () if "image" in d]
        if start_meta is not None
        else []
    )
    check_held_out(
        sources,
        cfg.source_roles(),
        trained_on=trained_on,
        blocks_tested=cfg.split.checkerboard is not None,
    )
    scenes = config_scenes(cfg, taxonomy, sources, spill=spill_folder(out))
    if refit_of is not None:  # the validation blocks train too
        _validation_trains(scenes)
    band_names = cfg.bands or open_scene(scenes[0].path).data_band_names
    for s in scenes:
        if s.image.shape[0] != len(band_names):
            raise RasterFormatError(
                f"{s.path}: {s.image.shape[0]} bands, but {scenes[0].path} has "
                f"{len(band_names)}: every training image needs the same bands (name them in "
                "'bands' to pick the same ones from each file)"
            )
    _check_labelled(scenes, sources, taxonomy)
    full_taxonomy, taxonomy = taxonomy, _trained_levels(taxonomy, scenes)
    if not taxonomy.n_fine and (dropped := [c for c in paste if c[0] == "fine"]):
        log.warning(
            "%s: copy_paste classes %s are fine classes, and no training pixel has a fine "
            "label: they are not pasted",
            cfg.name, ", ".join(full_taxonomy.fine[i].name for _, i in dropped),
        )  # fmt: skip
        paste = [c for c in paste if c[0] == "coarse"]
    _warn_about_split(cfg, scenes)

    differences = _difference_positions(cfg, band_names)
    norm = _normalization(scenes, differences, band_names)
    # normalised where a patch or validation block is cut: not a second copy of each scene
    normed = [NormalizedScene(norm, s.image, s.valid) for s in scenes]

    c_counts, f_counts = training_counts(taxonomy, scenes)
    _warn_untrained_classes(cfg, taxonomy, scenes, {"coarse": c_counts, "fine": f_counts})
    cw_np = class_weights(np.asarray(c_counts), p.class_weighting)
    fw_np = class_weights(np.asarray(f_counts), p.class_weighting)
    cw = torch.as_tensor(cw_np, dtype=torch.float32, device=device)
    fw = torch.as_tensor(fw_np, dtype=torch.float32, device=device)

    model = build_segmenter(cfg.model, in_channels=norm.channels, taxonomy=taxonomy)
    encoder_weights = (
        load_encoder_weights(
            model.backbone.encoder,
            p.encoder_weights,
            in_channels=norm.channels,
            tensors=start_tensors,
        )
        if p.encoder_weights is not None
        else None
    )
    started = (
        load_bundle_weights(
            model,
            p.init_from,
            in_channels=norm.channels,
            channels=channel_names(band_names, differences),
        )
        if p.init_from is not None
        else None
    )
    model = model.to(device)
    memory_format = torch.channels_last if p.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    index = HierarchyIndex.from_taxonomy(taxonomy).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    total_steps = p.epochs * p.steps_per_epoch
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)
    sched = _scheduler(opt, p.schedule, p.lr, total_steps)
    ema = (
        AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(p.ema), use_buffers=True)
        if p.ema is not None
        else None
    )
    # the weights that are validated, selected and saved
    scored = cast(HierarchicalSegmenter, ema.module) if ema is not None else model
    stride = cfg.model.output_stride
    largest = max(
        (max(h, w) for s in scenes for _, _, h, w, rl in s.blocks if rl == TRAIN), default=0
    )
    patch = min(p.patch_size, max(cfg.split.block_size, largest))
    patch -= patch % stride
    if patch < stride:
        raise ConfigError(
            f"{cfg.name}: train.patch_size {p.patch_size} is smaller than the model's output "
            f"stride {stride}: use at least {stride}"
        )
    if patch != p.patch_size:
        # under a checkerboard its N is the block (split.block is not used)
        key = "checkerboard" if cfg.split.checkerboard else "block"
        log.warning(
            "%s: training patches are %d px, not train.patch_size %d: patches are cut inside "
            "single split blocks of %d px, in multiples of the output stride %d (larger "
            "blocks: split: {%s: %d}; whole training scenes: role: train)",
            cfg.name, patch, p.patch_size, cfg.split.block_size, cfg.model.output_stride,
            key, p.patch_size,
        )  # fmt: skip
    sampler = PatchSampler(
        scenes,
        normed,
        patch,
        p.seed,
        n_fine=taxonomy.n_fine,
        n_coarse=taxonomy.n_coarse,
        sampling=p.sampling,
        balance_power=p.balance_power,
        augment=p.augment,
        context=p.context_pad,
        paste=paste,
    )
    for level, missing in sampler.paste_missing:
        log.warning(
            "%s: copy_paste class %s has no %s pixel %d px inside a training block: none "
            "of it is pasted",
            cfg.name, getattr(taxonomy, level)[missing].name, level, sampler.paste_radius,
        )  # fmt: skip
    has_val = any(rl == VAL for s in scenes for *_, rl in s.blocks)
    if p.refit and refit_of is None and not has_val:
        raise ConfigError(
            f"{cfg.name}: train.refit needs validation blocks to choose the epoch, and this "
            "split has none: lower split.val_every or set refit: false"
        )

    best_score, best_state, best_epoch, best_val = -math.inf, None, -1, {}
    history: list[dict[str, Any]] = []
    bad_epochs, step, start_epoch = 0, 0, 0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        sampler.set_state(state["sampler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        best_score, best_epoch = state["best_score"], state["best_epoch"]
        best_state, best_val = state["best_model"], json.loads(state["best_val"])
        history = json.loads(state["history"])
        bad_epochs, step, start_epoch = state["bad_epochs"], state["step"], state["epoch"]
        log.info("resuming %s at epoch %d, step %d", cfg.name, start_epoch + 1, step)
    done = state is not None and state["finished"]

    last_epoch = refit_epochs or p.epochs
    bar = tqdm(
        total=min(total_steps, last_epoch * p.steps_per_epoch),
        initial=step,
        disable=not progress,
        desc=f"train {cfg.name}",
        unit="step",
    )
    model.train()
    for epoch in range(start_epoch, last_epoch):
        if done:
            break
        losses = []
        for _ in range(p.steps_per_epoch):
            if step >= total_steps:
                break
            x, yc, yf = sampler.batch(p.batch_size)
            xt = torch.from_numpy(x).to(device).contiguous(memory_format=memory_format)
            yct = torch.from_numpy(yc).to(device)
            yft = torch.from_numpy(yf).to(device)
            with autocast(device, precision):
                cl, fl, pixel = model.forward_parts(xt, trim=p.context_pad)
            lc, lf = hierarchical_loss(cl, fl, yct, yft, index, coarse_weight=cw, fine_weight=fw)
            if pixel is not None and p.pixel_head_loss > 0:
                pc, pf = hierarchical_loss(
                    *pixel, yct, yft, index, coarse_weight=cw, fine_weight=fw
                )
                lc = lc + p.pixel_head_loss * pc
                lf = lf + p.pixel_head_loss * pf
            if p.jaccard_weight > 0:
                jc, jf = hierarchical_jaccard_loss(cl, fl, yct, yft, index)
                lc = lc + p.jaccard_weight * jc
                lf = lf + p.jaccard_weight * jf
            loss = lc + p.fine_loss_weight * lf
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if ema is not None:
                ema.update_parameters(model)
            step += 1
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{np.mean(losses[-20:]):.3f}")
        val = (
            _evaluate_blocks(scored, scenes, normed, index, taxonomy, device, stride, p.context_pad)
            if has_val
            else {}
        )
        mean_loss = float(np.mean(losses)) if losses else float("nan")
        score = _selection_score(val, taxonomy) if val else -mean_loss
        history.append({"epoch": epoch + 1, "loss": round(mean_loss, 5), **_summary(val)})
        summary = ", ".join(f"{k}={v}" for k, v in history[-1].items() if k != "epoch")
        log.info("epoch %d: %s", epoch + 1, summary)
        if progress:
            bar.write(f"epoch {epoch + 1}: {summary}", file=sys.stderr)
        if score > best_score or refit_epochs:  # a refit keeps its last epoch
            best_score, best_epoch, best_val = score, epoch + 1, val
            best_state = {k: v.detach().cpu().clone() for k, v in scored.state_dict().items()}
            bad_epochs = 0
        else:
            bad_epochs += 1
        done = bad_epochs >= p.patience or step >= total_steps
        save_checkpoint(
            ckpt_dir,
            {
                "fingerprint": run_id,
                "settings": settings,
                "epoch": epoch + 1,
                "step": step,
                "finished": done,
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "sampler": sampler.get_state(),
                **({"ema": ema.state_dict()} if ema is not None else {}),
                "torch_rng": torch.get_rng_state(),
                **({"cuda_rng": torch.cuda.get_rng_state_all()} if device.type == "cuda" else {}),
                "best_score": best_score,
                "best_epoch": best_epoch,
                "best_model": best_state,
                "best_val": json.dumps(best_val),
                "history": json.dumps(history),
                "bad_epochs": bad_epochs,
            },
        )
    bar.close()
    if best_state is None:
        raise ConfigError(f"{cfg.name}: training ran no epoch: raise 'epochs' or --max-steps")
    if bad_epochs >= p.patience and step < total_steps:
        note = (
            f"stopped early after epoch {len(history)}: no higher validation score in "
            f"{p.patience} epoch{'s' * (p.patience != 1)} (train.patience); keeping epoch "
            f"{best_epoch}"
        )
        log.info(note)
        if progress:
            print(note, file=sys.stderr)
    model.load_state_dict(best_state)
    model.eval()

    meta = BundleMeta(
        name=cfg.name,
        architecture=cfg.model.architecture,
        encoder=cfg.model.encoder,
        model=cfg.model,
        bands=tuple(band_names),
        normalization=norm,
        taxonomy=taxonomy,
        output_stride=cfg.model.output_stride,
        tile_size=p.tile_size,
        halo=p.halo if p.halo is not None else 2 * cfg.model.output_stride,
        pixel_size=training_pixel_size([s["image"] for s in sources]),
    )
    training = {
        "config": cfg.model_dump(mode="json"),
        "fingerprint": run_id,
        "data": [{k: str(v) for k, v in s.items()} for s in sources],
        **_indexed_band_names(band_names, scenes[0].path),
        "steps": step,
        "epochs_run": len(history),
        "history": history,
        "precision": precision,
        **({"encoder_weights": encoder_weights.to_dict()} if encoder_weights else {}),
        **({"init_from": started.to_dict()} if started else {}),
        "sampler": sampler.describe(),
        "class_weights": {
            "coarse": [round(float(w), 4) for w in cw_np],
            "fine": [round(float(w), 4) for w in fw_np],
        },
        "seconds": round(time.time() - t_start, 1),
        "device": str(device),
        "torch": torch.__version__,
        "resumed": resume,
    }
    metrics: dict[str, Any] = {"validation": _trim(best_val), "selected_epoch": best_epoch}
    if refit_of is not None:
        metrics = {k: refit_of.metrics[k] for k in ("validation", "selected_epoch")}
        training["refit"] = {
            "epochs": refit_epochs,
            "selection_training": {
                k: refit_of.training.get(k) for k in ("history", "steps", "seconds")
            },
        }
        meta = meta.model_copy(update={"decode_bias": refit_of.decode_bias})
    meta = meta.model_copy(update={"training": training, "metrics": metrics})
    say = (lambda m: print(m, file=sys.stderr)) if progress else None
    meta = finalize_meta(meta, model, cfg, scenes, normed, device, say=say)
    # "seconds" is the training loop; this adds halo, offsets and test scoring
    total = {**meta.training, "total_seconds": round(time.time() - t_start, 1)}
    meta = meta.model_copy(update={"training": total})
    path = save_bundle(out, meta, model, overwrite=overwrite)
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    return path


def training_pixel_size(images: Sequence[str | Path]) -> float | None:
    """The median pixel size (m) of the training ``images``; ``None`` if one has no CRS."""
    from geoseg.area import ground_sample_distance
    from geoseg.raster import open_scene

    sizes = []
    for image in images:
        scene = open_scene(image)
        size = ground_sample_distance(scene.crs, scene.affine, scene.shape)
        if size is None:
            return None
        sizes.append(size)
    return round(float(np.median(sizes)), 3) if sizes else None


#: The decision offset of a class no training pixel has: it is never chosen.
UNTRAINED_BIAS = -1.0e4


def training_counts(
    taxonomy: Taxonomy, scenes: list[LabelledScene]
) -> tuple[np.ndarray, np.ndarray]:
    """Training pixels of each coarse class and of each fine class (at least one entry)."""

    def counts(level: str, n: int) -> np.ndarray:
        total = np.zeros(n, np.int64)
        for s in scenes:
            a = getattr(s, level)
            total += np.bincount(a[(s.role == TRAIN) & (a >= 0)], minlength=n)[:n]
        return total

    return counts("coarse", taxonomy.n_coarse), counts("fine", max(taxonomy.n_fine, 1))


def untrained_classes(taxonomy: Taxonomy, scenes: list[LabelledScene]) -> dict[str, set[int]]:
    """Class indices per level that no training pixel has, to be left out of the labels.

    A network never shown a class still scores it: its labels of that class are guesses
    (on the Slovenia example, a taxonomy class without a labelled pixel was mapped on
    13 to 269 pixels, each of them wrong). A coarse class with training pixels keeps
    its fine classes when none of them has any (labels of the coarse level only), so
    that it can still be chosen.
    """
    coarse, fine = training_counts(taxonomy, scenes)
    fine = fine[: taxonomy.n_fine]
    parent = np.asarray(taxonomy.fine_parent_index, np.int64)
    out = {"coarse": {int(i) for i in np.flatnonzero(coarse == 0)}, "fine": set()}
    for j in np.flatnonzero(fine == 0).tolist():
        siblings = parent == parent[j]
        if coarse[parent[j]] == 0 or fine[siblings].any():
            out["fine"].add(int(j))
    return out


def masked(
    bias: DecodeBias | None, untrained: dict[str, set[int]], taxonomy: Taxonomy
) -> DecodeBias | None:
    """``bias`` (zeros where ``None``) with :data:`UNTRAINED_BIAS` for the untrained classes.

    A class masked in ``bias`` that has training pixels now (a refit trains on the
    selection run's validation blocks too, and reuses its offsets) is unmasked: 0.

    Examples
    --------
    >>> t = Taxonomy.from_dict({"name": "t", "coarse": [{"code": 1, "name": "A"},
    ...     {"code": 2, "name": "B"}]})
    >>> masked(None, {"coarse": {1}, "fine": set()}, t).coarse
    (0.0, -10000.0)
    >>> masked(DecodeBias(coarse=(0.5, -1e4), fine=()), {"coarse": set(), "fine": set()}, t)
    DecodeBias(coarse=(0.5, 0.0), fine=())
    """
    if bias is None and not untrained["coarse"] and not untrained["fine"]:
        return None
    levels = {}
    for lv, n in (("coarse", taxonomy.n_coarse), ("fine", taxonomy.n_fine)):
        values = list(getattr(bias, lv)) if bias is not None else [0.0] * n
        levels[lv] = tuple(
            UNTRAINED_BIAS if i in untrained[lv] else 0.0 if v == UNTRAINED_BIAS else v
            for i, v in enumerate(values)
        )
    return DecodeBias(coarse=levels["coarse"], fine=levels["fine"])


def finalize_meta(
    meta: BundleMeta,
    model: HierarchicalSegmenter,
    cfg: TrainConfig,
    scenes: list[LabelledScene],
    normed: Sequence[NormalizedScene],
    device: torch.device,
    say: Callable[[str], None] | None = None,
) -> BundleMeta:
    """The steps after model selection: halo, decision offsets, then the test, once.

    1. ``train.halo: null``: measure the halo (:func:`geoseg.calibrate.calibrate_halo`) on
       the largest scene, or on a window of it that fits
       (:func:`geoseg.calibrate.calibration_window`).
    2. ``train.tune_decode_bias``: tune per-class logit offsets on the validation blocks
       (:func:`geoseg.calibrate.tune_decode_bias`); kept only if they raise the
       validation score.
    3. With a checkerboard split, score the test blocks with the same tiled inference
       as ``geoseg predict``. Nothing above looks at a test pixel's label.

    ``say``: told each step as it starts (they take minutes on a CPU).
    """
    tell = say or (lambda _: None)
    from geoseg.infer import DEFAULT_PRECISION

    p = cfg.train
    stride = meta.output_stride
    model.eval()
    # the settings 'geoseg predict' uses by default, so that the halo is measured and
    # the test is scored exactly as a user's prediction will be made
    untrained = untrained_classes(meta.taxonomy, scenes)
    if untrained["coarse"] or untrained["fine"]:  # before the halo: labels as predicted
        meta = meta.model_copy(
            update={"decode_bias": masked(meta.decode_bias, untrained, meta.taxonomy)}
        )
    predictor = Predictor(meta, model, device=device, batch_size=1, precision=DEFAULT_PRECISION)
    training = dict(meta.training)
    training["untrained_classes"] = {
        lv: [c.code for i, c in enumerate(getattr(meta.taxonomy, lv)) if i in untrained[lv]]
        for lv in ("coarse", "fine")
    }
    if p.halo is None:
        tell("measuring the halo that makes tiles seamless")
        big = max(scenes, key=lambda sc: sc.valid.size)
        rows, cols = calibration_window(big.valid)
        calibration = calibrate_halo(
            predictor, big.image[:, rows, cols], big.valid[rows, cols],
            tile_size=min(meta.tile_size, 256), max_halo=p.max_halo,
        )  # fmt: skip
        if not calibration.reached:
            log.warning(
                "%s: tiled labels agree with whole-image labels on only %.4f of the pixels at "
                "the largest halo tried (train.max_halo %d, target %.4f): raise max_halo for "
                "seamless tiles", meta.name, calibration.agreement[calibration.halo],
                p.max_halo, calibration.target,
            )  # fmt: skip
        meta = meta.model_copy(update={"halo": calibration.halo})
        predictor.set_decode_bias(meta)
        training["halo_calibration"] = {
            **calibration.to_dict(),
            "precision": predictor.precision,
            "scene": big.path,
            "window": [rows.start, cols.start, rows.stop - rows.start, cols.stop - cols.start],
        }
        log.info("halo %d: %s", calibration.halo, calibration.agreement)
    if p.tune_decode_bias:
        tell("tuning the decision offsets on the validation blocks")
        val_px = _val_logits(
            model, scenes, normed, device, stride, p.context_pad,
            max_pixels=TUNE_PIXELS, seed=p.seed,
        )  # fmt: skip
        if val_px is not None:
            (v_cl, v_fl, v_yc, v_yf), step, labelled = val_px
            index = HierarchyIndex.from_taxonomy(meta.taxonomy)
            # a class's validation pixels for an offset are counted before sampling
            least = -(-MIN_CLASS_PIXELS // step)
            bias = tune_decode_bias(v_cl, v_fl, v_yc, v_yf, index, min_pixels=least)
            keep = bias.score_after > bias.score_before
            decode_bias = DecodeBias(coarse=bias.coarse, fine=bias.fine) if keep else None
            decode_bias = masked(decode_bias, untrained, meta.taxonomy)
            meta = meta.model_copy(update={"decode_bias": decode_bias})
            predictor.set_decode_bias(meta)
            training["decode_bias_tuning"] = bias.to_dict()
            if step > 1:
                training["decode_bias_tuning"]["pixels"] = {
                    "labelled": labelled, "used": int(v_cl.shape[0]), "one_in": step,
                    "seed": p.seed,
                }  # fmt: skip
            log.info("decode offsets: %s", bias.to_dict())
    metrics = dict(meta.metrics)
    if any((s.role == TEST).any() for s in scenes):
        tell("scoring the test pixels")
        test = tiled_scores(predictor, scenes, meta.taxonomy, meta.tile_size, meta.halo)
        metrics["test"] = {"split": _test_description(cfg), **_trim(test)}
    else:
        metrics.pop("test", None)  # recalibrated on a config without test pixels
    return meta.model_copy(update={"training": training, "metrics": metrics})


def _test_description(cfg: TrainConfig) -> str:
    """Which pixels the test score covers (``bundle.json`` metrics.test.split)."""
    parts = []
    if cfg.split.checkerboard and "blocks" in cfg.source_roles():
        parts.append(f"checkerboard {cfg.split.checkerboard}: blocks with odd (row//N + col//N)")
    n = sum(s.role == "test" for s in cfg.data.sources)
    if n:
        parts.append(f"{n} scene{'s' if n > 1 else ''} with role: test")
    return "; ".join(parts)


@locks_output("out")
def recalibrate(
    cfg: TrainConfig,
    bundle: str | Path,
    out: str | Path,
    *,
    overwrite: bool = False,
    say: Callable[[str], None] | None = None,
) -> Path:
    """Re-run :func:`finalize_meta` on a trained bundle with its config; write a new bundle.

    The weights and the training record are kept; the name and the recommended tile
    size come from the config, and the halo, the decision offsets, the validation and
    the test scores are derived again on its scenes (another area or date, or after a
    change of these procedures). A refit bundle, trained on its validation blocks too,
    keeps its decision offsets and validation score. ``bundle.json`` records the config
    used, the bundle it came from and the training run's validation score under
    ``training.recalibrated``. ``say``: told each step as it starts.

    Raises
    ------
    ConfigError
        The config's taxonomy gives codes other meanings than the bundle's, its
        ``bands`` are not the bundle's, or its test pixels are not unseen by the bundle.
    """
    from geoseg.bundle import load_bundle, read_meta
    from geoseg.evaluate import check_bundle_split
    from geoseg.map_reading import check_bundle_taxonomy

    check_not_input(Path(out), (bundle, *cfg.input_files()))
    trained = read_meta(bundle)
    # first, as a config of other classes is one for another model (as evaluate does)
    check_bundle_taxonomy(trained.taxonomy, cfg.taxonomy, bundle)
    if cfg.bands is not None and tuple(cfg.bands) != tuple(trained.bands):
        raise ConfigError(
            f"config {cfg.name}: bands {list(cfg.bands)} are not the bands {bundle} was "
            f"trained on ({list(trained.bands)}, in that order): set bands: "
            f"{list(trained.bands)} in the config, or drop bands to take the bundle's"
        )
    check_bundle_split(bundle, cfg, region_all=False)  # the test pixels must be unseen ones
    meta, model = load_bundle(bundle)
    device = resolve_device(cfg.train.device)
    model = model.to(device)
    if say is not None:
        say(f"reading the scenes of config {cfg.name}")
    # the bands the bundle was trained on (a config without 'bands' took every band but
    # alpha; bundles of earlier versions may have taken the alpha band too)
    scenes = config_scenes(
        cfg.model_copy(update={"bands": cfg.bands or meta.bands}),
        meta.taxonomy,
        spill=spill_folder(Path(out)),
    )
    if meta.training.get("refit"):  # trained on its validation blocks: keep its offsets
        _validation_trains(scenes)
    normed = [NormalizedScene(meta.normalization, s.image, s.valid) for s in scenes]
    meta = meta.model_copy(update={"tile_size": cfg.train.tile_size, "name": cfg.name})
    meta = finalize_meta(meta, model, cfg, scenes, normed, device, say=say)
    recalibrated: dict[str, Any] = {
        "config": cfg.model_dump(mode="json"),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "from_bundle": {"path": str(Path(bundle).resolve()), "name": trained.name},
    }
    metrics = dict(meta.metrics)
    if any(block[4] == VAL for s in scenes for block in s.blocks):
        # the validation score of the config's blocks, as training scores its own (each
        # block alone, before the decision offsets); the training run's is kept aside
        recalibrated["training_validation"] = metrics.get("validation")
        index = HierarchyIndex.from_taxonomy(meta.taxonomy)
        val = _evaluate_blocks(
            model, scenes, normed, index, meta.taxonomy, device, meta.output_stride,
            cfg.train.context_pad,
        )  # fmt: skip
        metrics["validation"] = _trim(val)
    training = {**meta.training, "recalibrated": recalibrated}
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
