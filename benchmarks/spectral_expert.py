"""Spectral expert: does a per-pixel classifier pooled with the network help on validation?

The network labels the test blocks' farm ponds by their surroundings, which a per-pixel
classifier (the reference random forest) does not. This trains a small per-pixel MLP
(the bundle's normalised bands, 2 x 64 hidden units, a coarse and a flat fine head,
the recipe's inverse-sqrt class weights, Adam 1e-3, 3,000 steps of 8,192 training
pixels, seed 0) on the training blocks only, and pools it with the bundle's network
as a product of experts: ``logits + w * log_softmax(mlp)`` at each level, ``w`` in
{0, 0.25, 0.5, 1, 2}. The rule, written before the first run: over 12 seeded halvings
of the validation blocks (block-isolated logits, as the trainer scores them), choose
``w`` and tune the decision offsets on one half, score the other (mean of both levels'
mIoU), against ``w = 0`` with offsets tuned the same way; pool in the product only if
the mean gain exceeds 0.010. No test pixel is read.

    python benchmarks/spectral_expert.py [--model models/zion-nlcd]
        [--config configs/zion_nlcd.yaml]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional

from geoseg.calibrate import tune_decode_bias
from geoseg.config import load_train_config
from geoseg.hierarchy import HierarchyIndex, decode
from geoseg.labelled import TRAIN, config_scenes
from geoseg.metrics import confusion_matrix, fine_confusion_matrix, scores
from geoseg.predict import Predictor
from geoseg.sampling import class_weights
from geoseg.taxonomy import Taxonomy, load_taxonomy
from geoseg.train import _val_block_logits

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0)
HALVINGS = 12
ADOPT = 0.010


class PixelMLP(torch.nn.Module):
    """Two hidden layers on one pixel's bands; coarse and fine logits."""

    def __init__(self, bands: int, n_coarse: int, n_fine: int) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Linear(bands, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU()
        )
        self.coarse = torch.nn.Linear(64, n_coarse)
        self.fine = torch.nn.Linear(64, n_fine)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.coarse(h), self.fine(h)


def train_mlp(x: torch.Tensor, yc: torch.Tensor, yf: torch.Tensor, tax: Taxonomy) -> PixelMLP:
    """The expert, on training pixels ``x`` (N, bands) with class indices (-1: none)."""
    torch.manual_seed(0)
    cw = class_weights(np.bincount(yc.numpy(), minlength=tax.n_coarse), "inverse_sqrt")
    fw = class_weights(np.bincount(yf[yf >= 0].numpy(), minlength=tax.n_fine), "inverse_sqrt")
    cw_t, fw_t = torch.as_tensor(cw).float(), torch.as_tensor(fw).float()
    mlp = PixelMLP(x.shape[1], tax.n_coarse, tax.n_fine)
    opt = torch.optim.Adam(mlp.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3000):
        i = torch.randint(0, len(x), (8192,), generator=gen)
        c, f = mlp(x[i])
        loss = functional.cross_entropy(c, yc[i], weight=cw_t)
        loss = loss + functional.cross_entropy(f, yf[i], weight=fw_t, ignore_index=-1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return mlp.eval()


def pooled(blocks: list[dict[str, torch.Tensor]], w: float) -> tuple[torch.Tensor, ...]:
    """Pooled logits and targets of ``blocks``, concatenated."""
    return (
        torch.cat([b["cl"] + w * b["mc"] for b in blocks]),
        torch.cat([b["fl"] + w * b["mf"] for b in blocks]),
        torch.cat([b["yc"] for b in blocks]),
        torch.cat([b["yf"] for b in blocks]),
    )


def score(
    parts: tuple[torch.Tensor, ...], bias: Any, index: HierarchyIndex, tax: Taxonomy
) -> float:
    """Mean of both levels' mIoU, with the decision offsets ``bias`` (or none)."""
    cl, fl, yc, yf = parts
    if bias is not None:
        cl, fl = cl + torch.tensor(bias.coarse), fl + torch.tensor(bias.fine)
    c, f, _ = decode(cl[:, :, None, None], fl[:, :, None, None], index)
    c_np, f_np = c.flatten().numpy(), f.flatten().numpy()
    coarse = scores(confusion_matrix(yc.numpy(), c_np, tax.n_coarse))["miou"]
    cm = fine_confusion_matrix(
        yf.numpy(), f_np, c_np, tax.n_fine, leaf_column=bool(index.childless.numel())
    )
    return float(np.nanmean([coarse, scores(cm, scored=tax.n_fine)["miou"]]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "models" / "zion-nlcd"))
    p.add_argument("--config", default=str(ROOT / "configs" / "zion_nlcd.yaml"))
    args = p.parse_args()
    cfg = load_train_config(args.config)
    tax = load_taxonomy(cfg.taxonomy)
    index = HierarchyIndex.from_taxonomy(tax)
    pred = Predictor.from_bundle(args.model, device="cpu", precision="fp32", channels_last=False)
    scenes = config_scenes(cfg, tax)
    norm = [pred.meta.normalization.apply(s.image, s.valid) for s in scenes]
    train_x, train_c, train_f = [], [], []
    for s, x in zip(scenes, norm, strict=True):
        sel = (s.role == TRAIN) & (s.coarse >= 0) & s.valid
        train_x.append(torch.from_numpy(np.ascontiguousarray(x[:, sel].T)).float())
        train_c.append(torch.from_numpy(s.coarse[sel]).long())
        train_f.append(torch.from_numpy(s.fine[sel]).long())
    mlp = train_mlp(torch.cat(train_x), torch.cat(train_c), torch.cat(train_f), tax)
    blocks = []
    stride = pred.meta.output_stride
    val = _val_block_logits(pred.model, scenes, norm, torch.device("cpu"), stride)
    with torch.no_grad():
        for s, (r, c, h, w), cl, fl in val:
            x = norm[scenes.index(s)][:, r : r + h, c : c + w]
            yc = torch.from_numpy(s.coarse[r : r + h, c : c + w]).flatten().long()
            keep = yc >= 0
            px = torch.from_numpy(np.ascontiguousarray(x.reshape(x.shape[0], -1).T))[keep]
            mc, mf = mlp(px.float())
            blocks.append(
                {
                    "cl": cl[0].flatten(1).T[keep].float(),
                    "fl": fl[0].flatten(1).T[keep].float(),
                    "yc": yc[keep],
                    "yf": torch.from_numpy(s.fine[r : r + h, c : c + w]).flatten().long()[keep],
                    "mc": mc.log_softmax(1),
                    "mf": mf.log_softmax(1),
                }
            )
    result: dict[str, Any] = {
        "validation_blocks": len(blocks),
        "no_offsets_all_validation": {
            str(w): round(score(pooled(blocks, w), None, index, tax), 4) for w in WEIGHTS
        },
    }
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(HALVINGS):
        perm = rng.permutation(len(blocks))
        half_a = [blocks[i] for i in perm[: len(blocks) // 2]]
        half_b = [blocks[i] for i in perm[len(blocks) // 2 :]]
        cals = {w: tune_decode_bias(*pooled(half_a, w), index) for w in WEIGHTS}
        w_best = max(WEIGHTS, key=lambda w: (cals[w].score_after, -w))
        base = score(pooled(half_b, 0.0), cals[0.0], index, tax)
        pool = score(pooled(half_b, w_best), cals[w_best], index, tax)
        rows.append({"w": w_best, "baseline": round(base, 4), "pooled": round(pool, 4)})
    gain = float(np.mean([r["pooled"] - r["baseline"] for r in rows]))
    result |= {"halvings": rows, "mean_gain": round(gain, 4), "adopt": gain > ADOPT}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
