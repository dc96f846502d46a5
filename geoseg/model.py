"""The hierarchical segmentation network.

``HierarchicalSegmenter`` wraps any segmentation-models-pytorch encoder-decoder. The
smp model's own segmentation head is asked for ``features`` channels at full
resolution; on top of them sit a coarse head (``n_coarse`` logits) and a fine head
that sees the features concatenated with the coarse probabilities (``n_fine``
logits). Construction is pure: encoder weights are never downloaded.

``pixel_skip: k`` adds a full-resolution path: two 3x3 convolutions (``k`` channels) on
the input bands, concatenated with the decoder's features and fused by a 3x3
convolution back to ``features`` channels before the heads. smp decoders end with an
upsampling from stride 2 that has no skip connection, so without this path a one-pixel
road or stream reaches the heads only through the encoder's strided stem.

``pixel_head: h`` adds a per-pixel classifier: a small MLP (1x1 convolutions, ``h``
hidden channels) on each pixel's own bands, whose logits are added to the heads'
logits (a product of experts: the spectral expert and the contextual one), and which
training also scores on its own (an auxiliary loss). Context is what makes the network
beat a per-pixel classifier, but it can also overrule a pixel whose spectrum is
unambiguous: a pond among fields when the only water in the training blocks was a
reservoir among hills. The spectral expert keeps that evidence in the sum.

``head: flat`` is the ablation baseline: one softmax over the taxonomy's leaves, no
coarse head. It returns the same ``(coarse, fine)`` logits, so decoding and the loss
are shared: the coarse logits are the log-sum-exp of each coarse class's leaves (so
``p(coarse)`` is the sum of its leaves' probabilities) and the fine logits are the leaf
logits (so ``p(fine | coarse)`` is the leaf's share of its parent).
"""

from __future__ import annotations

from collections.abc import Sequence

import segmentation_models_pytorch as smp
import torch
from torch import nn

from geoseg.config import ModelConfig
from geoseg.errors import ConfigError
from geoseg.taxonomy import Taxonomy


class HierarchicalSegmenter(nn.Module):
    """smp encoder-decoder with a coarse head and a coarse-conditioned fine head.

    Parameters
    ----------
    config : ModelConfig
        Architecture, encoder, head type and sizes.
    in_channels : int
        Number of input bands.
    n_coarse, n_fine : int
        Number of coarse and fine classes.
    fine_parent : sequence of int, optional
        Coarse index of each fine class; required by ``head: flat``.
    """

    def __init__(
        self,
        config: ModelConfig,
        *,
        in_channels: int,
        n_coarse: int,
        n_fine: int,
        fine_parent: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        try:
            self.backbone = smp.create_model(
                config.architecture,
                encoder_name=config.encoder,
                encoder_weights=None,
                in_channels=in_channels,
                classes=config.features,
                **config.smp_kwargs(),
            )
        except (KeyError, ValueError) as exc:
            raise ConfigError(
                f"cannot build {config.architecture} with encoder {config.encoder!r}: {exc}"
            ) from None
        f = config.features
        k = config.pixel_skip
        self.pixel_stem: nn.Module | None = None
        if k > 0:
            self.pixel_stem = nn.Sequential(
                nn.Conv2d(in_channels, k, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(k),
                nn.ReLU(inplace=True),
                nn.Conv2d(k, k, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(k),
                nn.ReLU(inplace=True),
            )
            self.fuse = nn.Sequential(
                nn.Conv2d(f + k, f, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(f)
            )
            self.decoder_act = nn.Sequential(nn.BatchNorm2d(f), nn.ReLU(inplace=True))
        self.n_fine = n_fine
        self.n_coarse = n_coarse
        self.flat = config.head == "flat"
        self.dropout: nn.Module | None = (
            nn.Dropout2d(config.dropout) if config.dropout > 0 else None
        )
        if self.flat:
            if fine_parent is None or len(fine_parent) != n_fine:
                raise ConfigError("head 'flat' needs the parent of every fine class")
            parents = [int(p) for p in fine_parent]
            childless = [c for c in range(n_coarse) if c not in set(parents)]
            # leaves: the fine classes, then the childless coarse classes
            leaf_coarse = parents + childless
            self.register_buffer("leaf_coarse", torch.tensor(leaf_coarse), persistent=False)
            self.leaf_head = nn.Sequential(
                nn.BatchNorm2d(f), nn.ReLU(inplace=True), nn.Conv2d(f, len(leaf_coarse), 1)
            )
            self._groups = [
                [i for i, c in enumerate(leaf_coarse) if c == k] for k in range(n_coarse)
            ]
        else:
            self.coarse_head = nn.Sequential(
                nn.BatchNorm2d(f), nn.ReLU(inplace=True), nn.Conv2d(f, n_coarse, kernel_size=1)
            )
            self.fine_head = nn.Sequential(
                nn.Conv2d(f + n_coarse, f, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(f),
                nn.ReLU(inplace=True),
                nn.Conv2d(f, max(n_fine, 1), kernel_size=1),
            )
        self.pixel_head: nn.Module | None = None
        if config.pixel_head > 0:
            hid = config.pixel_head
            n_out = len(leaf_coarse) if self.flat else n_coarse + max(n_fine, 1)
            self.pixel_head = nn.Sequential(
                nn.Conv2d(in_channels, hid, kernel_size=1, bias=False),
                nn.BatchNorm2d(hid),
                nn.ReLU(inplace=True),
                nn.Conv2d(hid, hid, kernel_size=1, bias=False),
                nn.BatchNorm2d(hid),
                nn.ReLU(inplace=True),
                nn.Conv2d(hid, n_out, kernel_size=1),
            )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(coarse_logits, fine_logits)`` at the input resolution."""
        coarse, fine, _ = self.forward_parts(x)
        return coarse, fine

    def forward_parts(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """Like :meth:`forward`, plus the pixel head's own logits.

        The third item is the pixel head's ``(coarse, fine)`` logits, which training
        scores on their own, or ``None`` without a pixel head.
        """
        feats = self.backbone(x)
        if self.pixel_stem is not None:
            feats = self.fuse(torch.cat([self.decoder_act(feats), self.pixel_stem(x)], dim=1))
        if self.dropout is not None:
            feats = self.dropout(feats)
        px = self.pixel_head(x).float() if self.pixel_head is not None else None
        if self.flat:
            leaves = self.leaf_head(feats).float()
            if px is not None:
                leaves = leaves + px
            return (*self._from_leaves(leaves), None if px is None else self._from_leaves(px))
        coarse = self.coarse_head(feats)
        pixel = None
        if px is not None:
            coarse = coarse.float() + px[:, : self.n_coarse]
        fine = self.fine_head(torch.cat([feats, coarse.softmax(dim=1).to(feats.dtype)], dim=1))
        if px is not None:
            fine = fine.float() + px[:, self.n_coarse :]
            pixel = (px[:, : self.n_coarse], px[:, self.n_coarse :][:, : self.n_fine])
        return coarse, fine[:, : self.n_fine], pixel

    def _from_leaves(self, leaves: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Coarse logits (log-sum-exp of each class's leaves) and fine logits of leaves."""
        coarse = torch.cat(
            [torch.logsumexp(leaves[:, g], dim=1, keepdim=True) for g in self._groups], dim=1
        )
        return coarse, leaves[:, : self.n_fine]


def build_segmenter(
    config: ModelConfig, *, in_channels: int, taxonomy: Taxonomy
) -> HierarchicalSegmenter:
    """Build the network for ``taxonomy`` (untrained; weights never downloaded).

    Encoder stages that a shallow ``encoder_depth`` never runs (smp keeps them) are
    removed, so bundles hold only weights the network uses.
    """
    model = HierarchicalSegmenter(
        config,
        in_channels=in_channels,
        n_coarse=taxonomy.n_coarse,
        n_fine=taxonomy.n_fine,
        fine_parent=taxonomy.fine_parent_index.tolist(),
    )
    prune_unused(model, in_channels=in_channels, side=2 * config.output_stride)
    return model


def prune_unused(model: nn.Module, *, in_channels: int, side: int) -> list[str]:
    """Replace the weighted modules that a forward pass never calls by ``nn.Identity``.

    Returns the names of the modules removed. Deterministic for a given architecture,
    so a bundle's weights load into a network built the same way.
    """
    called: set[str] = set()
    hooks = [
        mod.register_forward_hook(lambda _m, _i, _o, name=name: called.add(name))
        for name, mod in model.named_modules()
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, in_channels, side, side))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    unused = [
        name
        for name, mod in model.named_modules()
        if name
        and name not in called
        and not any(True for _ in mod.children())
        and any(True for _ in mod.parameters(recurse=False))
    ]
    for name in unused:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, nn.Identity())
    return unused


__all__ = ["HierarchicalSegmenter", "ModelConfig", "build_segmenter"]
