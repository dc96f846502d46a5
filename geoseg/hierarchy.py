"""Coarse/fine decoding and the hierarchical loss (torch).

Decoding follows DESIGN.md: ``p(fine f) = p(coarse parent(f)) * softmax_siblings(f)``.
The decoder takes the argmax over the taxonomy's *leaves* (every fine class, plus
every coarse class without children, whose probability is its coarse probability),
so the chosen fine class is a child of the chosen coarse class at every pixel by
construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812

from geoseg.taxonomy import Taxonomy


@dataclass(frozen=True)
class HierarchyIndex:
    """Index tensors derived from a taxonomy, used by decoding and the loss.

    Attributes
    ----------
    parent : torch.Tensor
        ``(n_fine,)`` coarse index of each fine class.
    groups : tuple of torch.Tensor
        For each coarse index, the fine indices of its children (may be empty).
    childless : torch.Tensor
        Coarse indices without fine children.
    leaf_coarse : torch.Tensor
        For each leaf, its coarse index.
    leaf_fine : torch.Tensor
        For each leaf, its fine index, or ``-1`` for childless coarse leaves.
    """

    parent: torch.Tensor
    groups: tuple[torch.Tensor, ...]
    childless: torch.Tensor
    leaf_coarse: torch.Tensor
    leaf_fine: torch.Tensor

    @classmethod
    def from_taxonomy(cls, taxonomy: Taxonomy) -> HierarchyIndex:
        """Build the index tensors for ``taxonomy``."""
        parent = torch.as_tensor(taxonomy.fine_parent_index, dtype=torch.long)
        groups = tuple(
            torch.nonzero(parent == c, as_tuple=False).flatten() for c in range(taxonomy.n_coarse)
        )
        childless = torch.as_tensor(taxonomy.childless_coarse_index, dtype=torch.long)
        leaf_coarse = torch.cat([parent, childless])
        leaf_fine = torch.cat(
            [torch.arange(taxonomy.n_fine), torch.full((childless.numel(),), -1)]
        ).long()
        return cls(parent, groups, childless, leaf_coarse, leaf_fine)

    def to(self, device: torch.device | str) -> HierarchyIndex:
        """Return a copy with every tensor on ``device``."""
        return HierarchyIndex(
            self.parent.to(device),
            tuple(g.to(device) for g in self.groups),
            self.childless.to(device),
            self.leaf_coarse.to(device),
            self.leaf_fine.to(device),
        )


def conditional_fine_log_probs(fine_logits: torch.Tensor, index: HierarchyIndex) -> torch.Tensor:
    """Log-probability of each fine class given its parent: log-softmax over siblings.

    Parameters
    ----------
    fine_logits : torch.Tensor
        ``(B, n_fine, H, W)`` fine-head logits.
    index : HierarchyIndex
        Index tensors of the taxonomy.

    Returns
    -------
    torch.Tensor
        ``(B, n_fine, H, W)`` with ``log p(f | parent(f))``.
    """
    fine_logits = fine_logits.float()
    lse = torch.empty_like(fine_logits)
    for group in index.groups:
        if group.numel():
            g = fine_logits.index_select(1, group)
            lse[:, group] = torch.logsumexp(g, dim=1, keepdim=True).expand_as(g)
    return fine_logits - lse


def leaf_log_probs(
    coarse_logits: torch.Tensor, fine_logits: torch.Tensor, index: HierarchyIndex
) -> torch.Tensor:
    """Joint log-probability of every leaf: ``(B, n_leaves, H, W)``."""
    log_pc = F.log_softmax(coarse_logits.float(), dim=1)
    parts = []
    if index.parent.numel():
        log_cond = conditional_fine_log_probs(fine_logits, index)
        parts.append(log_pc.index_select(1, index.parent) + log_cond)
    if index.childless.numel():
        parts.append(log_pc.index_select(1, index.childless))
    return torch.cat(parts, dim=1)


def decode(
    coarse_logits: torch.Tensor, fine_logits: torch.Tensor, index: HierarchyIndex
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decode logits into consistent coarse and fine indices and a confidence.

    Parameters
    ----------
    coarse_logits : torch.Tensor
        ``(B, n_coarse, H, W)``.
    fine_logits : torch.Tensor
        ``(B, n_fine, H, W)``.
    index : HierarchyIndex
        Index tensors of the taxonomy.

    Returns
    -------
    coarse_idx : torch.Tensor
        ``(B, H, W)`` long, coarse class index.
    fine_idx : torch.Tensor
        ``(B, H, W)`` long, fine class index, ``-1`` where a childless coarse class won.
    confidence : torch.Tensor
        ``(B, H, W)`` float in [0, 1]: the joint probability of the chosen leaf.
    """
    _, scores, lse_c = _leaf_scores(coarse_logits, fine_logits, index)
    best, leaf = scores.max(dim=1)
    return index.leaf_coarse[leaf], index.leaf_fine[leaf], (best - lse_c).exp().clamp(max=1.0)


def decode_with_probabilities(
    coarse_logits: torch.Tensor, fine_logits: torch.Tensor, index: HierarchyIndex
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`decode`, and the probability of every class it chose among.

    The fourth result is ``(B, n_coarse + n_fine, H, W)``: each coarse class's
    probability, then each fine class's joint with its parent (``p(parent) * p(f |
    parent)``, so a coarse class's children sum to its probability). The chosen leaf
    has the highest among the fine classes and the childless coarse classes, and its
    probability is the confidence.
    """
    c, scores, lse_c = _leaf_scores(coarse_logits, fine_logits, index)
    best, leaf = scores.max(dim=1)
    conf = (best - lse_c).exp().clamp(max=1.0)
    parts = [c, scores[:, : index.parent.numel()]] if index.parent.numel() else [c]
    probs = torch.cat(parts, dim=1).sub_(lse_c.unsqueeze(1)).exp_()
    return index.leaf_coarse[leaf], index.leaf_fine[leaf], conf, probs


def _leaf_scores(
    coarse_logits: torch.Tensor, fine_logits: torch.Tensor, index: HierarchyIndex
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(coarse logits, leaf scores, logsumexp of the coarse logits)`` as float32.

    A leaf's score less the logsumexp is its joint log-probability.
    """
    c = coarse_logits.float().contiguous()
    lse_c = torch.logsumexp(c, dim=1)
    parts = []
    if index.parent.numel():
        f = fine_logits.float().contiguous()
        if f.data_ptr() == fine_logits.data_ptr():
            f = f.clone()  # never modify the caller's tensor
        # c_k - logsumexp(fine children of k), per coarse class k: the score of a fine
        # leaf is its logit plus that of its parent, so argmax over leaves needs no
        # normalised probabilities at all
        adj = c.clone()
        for k, group in enumerate(index.groups):
            n = group.numel()
            if n == 1:
                adj[:, k] -= f[:, int(group[0])]
            elif n:
                first = int(group[0])
                contiguous = int(group[-1]) - first == n - 1
                members = f.narrow(1, first, n) if contiguous else f.index_select(1, group)
                adj[:, k] -= torch.logsumexp(members, dim=1)
        f += adj.index_select(1, index.parent)
        parts.append(f)
    if index.childless.numel():
        parts.append(c.index_select(1, index.childless))
    scores = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
    return c, scores, lse_c


def hierarchical_loss(
    coarse_logits: torch.Tensor,
    fine_logits: torch.Tensor,
    coarse_target: torch.Tensor,
    fine_target: torch.Tensor,
    index: HierarchyIndex,
    *,
    coarse_weight: torch.Tensor | None = None,
    fine_weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy on the coarse head plus conditional cross-entropy on the fine head.

    Targets hold class indices with ``-1`` for "not labelled at this level", so pixels
    labelled only at the coarse level still teach the coarse head and vice versa.

    Returns
    -------
    coarse_loss, fine_loss : torch.Tensor
        Scalar (weighted) mean losses; zero (with a graph) where no pixel is labelled.
    """
    coarse_loss = _weighted_nll(
        F.log_softmax(coarse_logits.float(), 1), coarse_target, coarse_weight
    )
    if index.parent.numel():
        log_cond = conditional_fine_log_probs(fine_logits, index)
        fine_loss = _weighted_nll(log_cond, fine_target, fine_weight)
    else:
        fine_loss = fine_logits.sum() * 0.0
    return coarse_loss, fine_loss


def _weighted_nll(
    log_probs: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None
) -> torch.Tensor:
    valid = target >= 0
    if not bool(valid.any()):
        return log_probs.sum() * 0.0
    safe = target.clamp(min=0)
    nll = -log_probs.gather(1, safe.unsqueeze(1)).squeeze(1)
    w = valid.float() if weight is None else weight[safe] * valid.float()
    return (nll * w).sum() / w.sum().clamp(min=1e-8)


def soft_jaccard_loss(probs: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """``1 - mean soft IoU`` over the classes present in ``target`` (ignoring ``-1``).

    A differentiable surrogate of mIoU: every class present counts equally however
    rare, which counters the imbalance that cross-entropy is dominated by.

    Parameters
    ----------
    probs : torch.Tensor
        ``(B, C, H, W)`` class probabilities.
    target : torch.Tensor
        ``(B, H, W)`` class indices, ``-1`` where unlabelled.
    eps : float
        Smoothing added to intersection and union.
    """
    n = probs.shape[1]
    valid = target >= 0
    if n == 0 or not bool(valid.any()):
        return probs.sum() * 0.0
    p = probs.float().permute(0, 2, 3, 1)[valid]  # (N, C)
    t = F.one_hot(target[valid], n).float()
    inter = (p * t).sum(0)
    union = (p + t - p * t).sum(0)
    present = t.sum(0) > 0
    iou = (inter + eps) / (union + eps)
    return 1.0 - iou[present].mean()


def hierarchical_jaccard_loss(
    coarse_logits: torch.Tensor,
    fine_logits: torch.Tensor,
    coarse_target: torch.Tensor,
    fine_target: torch.Tensor,
    index: HierarchyIndex,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-Jaccard losses of both levels.

    The coarse level uses the coarse probabilities; the fine level the joint
    probabilities ``p(coarse) * p(fine | coarse)`` of the fine classes.
    """
    pc = F.softmax(coarse_logits.float(), dim=1)
    lc = soft_jaccard_loss(pc, coarse_target)
    if index.parent.numel():
        n_fine = index.parent.numel()
        pf = leaf_log_probs(coarse_logits, fine_logits, index)[:, :n_fine].exp()
        lf = soft_jaccard_loss(pf, fine_target)
    else:
        lf = fine_logits.sum() * 0.0
    return lc, lf
