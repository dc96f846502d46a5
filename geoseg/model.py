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

``forward(x, trim=h)`` returns the logits of the tile's core only, without the ``h``
pixels of halo on each side that tiled inference discards. The halo is there for the
encoder's receptive field, so the encoder still runs on the whole tile, but a Unet's
decoder stages, the pixel path and the heads run on the core plus the few pixels their
own convolutions reach (:data:`TAIL_MARGIN` at full resolution): the same logits at
the core, at a fraction of the full-resolution work (the decoder and heads are about
two thirds of a ResNet-18 Unet's operations). Other architectures run whole and are
cut before the heads.

``head: flat`` is the ablation baseline: one softmax over the taxonomy's leaves, no
coarse head. It returns the same ``(coarse, fine)`` logits, so decoding and the loss
are shared: the coarse logits are the log-sum-exp of each coarse class's leaves (so
``p(coarse)`` is the sum of its leaves' probabilities) and the fine logits are the leaf
logits (so ``p(fine | coarse)`` is the leaf's share of its parent).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import segmentation_models_pytorch as smp
import torch
import torch.fx
from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoder
from torch import nn

from geoseg.config import ModelConfig
from geoseg.errors import ConfigError
from geoseg.taxonomy import Taxonomy

#: Full-resolution pixels kept around the core for the layers after the decoder when
#: :meth:`HierarchicalSegmenter.forward` trims the halo: the smp segmentation head, the
#: pixel path (two 3x3 convolutions), the fusion and the fine head each reach one or two
#: pixels, at most 4 together; 8 leaves room for a deeper tail. The strips of
#: :meth:`HierarchicalSegmenter.forward_strips` overlap by as many rows, which also
#: cover the last decoder stage's two 3x3 convolutions (5 rows with a 4-px tail).
TAIL_MARGIN = 8


def same_layout(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``t`` in ``like``'s memory layout (channels-last or not), copied only if it differs.

    Some operations return a contiguous tensor whatever their input's layout (softmax
    does); a concatenation of the two then has neither layout, and the convolution that
    reads it reorders it first: on a 2048² tile, 3.8 s instead of 0.8 s for the fine
    head's first convolution.
    """
    if like.dim() == 4 and like.is_contiguous(memory_format=torch.channels_last):
        return t.contiguous(memory_format=torch.channels_last)
    return t.contiguous()


# a leaf of torch.fx traces (its branch on the layout cannot be traced), so that batch
# norm folding (geoseg.predict.fold_batchnorm) still traces the network
torch.fx.wrap("same_layout")


def crop(t: torch.Tensor, margin: int) -> torch.Tensor:
    """Remove ``margin`` pixels from each side of the last two axes of ``t``."""
    if margin <= 0:
        return t
    return t[..., margin : t.shape[-2] - margin, margin : t.shape[-1] - margin]


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

    def forward(self, x: torch.Tensor, trim: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(coarse_logits, fine_logits)``.

        Parameters
        ----------
        x : torch.Tensor
            ``(B, bands, H, W)`` normalised input, ``H`` and ``W`` multiples of the
            output stride.
        trim : int
            Halo width that the caller discards, a multiple of the output stride: the
            logits cover ``x``'s ``(H - 2 trim, W - 2 trim)`` core only, computed as
            they would be at those pixels of the untrimmed output.
        """
        coarse, fine, _ = self.forward_parts(x, trim)
        return coarse, fine

    def _features(
        self, x: torch.Tensor, trim: int, encoded: Sequence[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """The backbone's full-resolution features, ``x`` on the same window, and its margin.

        Without ``trim`` the window is the whole input; with it, the core plus a margin
        (returned) that the layers after the backbone need. ``encoded``: the Unet
        encoder's outputs on ``x``, when already computed.
        """
        if trim <= 0:
            return self.backbone(x), x, 0
        margin = min(TAIL_MARGIN, trim)
        decoder = getattr(self.backbone, "decoder", None)
        if isinstance(decoder, UnetDecoder):
            features = self.backbone.encoder(x) if encoded is None else encoded
            trimmed = _trimmed_unet_decoder(decoder, features, trim=trim, margin=margin)
            if trimmed is None:
                out = crop(decoder(features), trim - margin)
            else:
                out, margin = trimmed
            return self.backbone.segmentation_head(out), crop(x, trim - margin), margin
        return crop(self.backbone(x), trim - margin), crop(x, trim - margin), margin

    def forward_parts(
        self, x: torch.Tensor, trim: int = 0, encoded: Sequence[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """Like :meth:`forward`, plus the pixel head's own logits.

        The third item is the pixel head's ``(coarse, fine)`` logits, which training
        scores on their own, or ``None`` without a pixel head. ``encoded``: the Unet
        encoder's outputs on ``x``, when already computed.
        """
        feats, x, margin = self._features(x, trim, encoded)
        coarse, fine, pixel = self._heads(feats, x)
        if margin:
            coarse, fine = crop(coarse, margin), crop(fine, margin)
            pixel = None if pixel is None else (crop(pixel[0], margin), crop(pixel[1], margin))
        return coarse, fine, pixel

    def forward_strips(
        self, x: torch.Tensor, trim: int, rows: int
    ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """:meth:`forward` ``(x, trim)`` in strips of ``rows`` core rows, for less memory.

        Yields ``(row, coarse_logits, fine_logits)``: the logits of core rows
        ``row .. row + rows`` (fewer for the last strip), equal to those rows of
        ``forward(x, trim)``. The encoder and the decoder stages down to stride 2 run
        once on the tile; the full-resolution stage, the pixel path and the heads, whose
        activations are most of a pass's memory, run strip by strip on its rows plus
        :data:`TAIL_MARGIN` on each side. Where the trimmed decoder does not apply (not a
        Unet, or no ``trim``) it is one strip of :meth:`forward`.
        """
        decoder = getattr(self.backbone, "decoder", None)
        if not (isinstance(decoder, UnetDecoder) and trim > 0 and len(decoder.blocks) > 1):
            yield (0, *self.forward(x, trim))
            return
        features = self.backbone.encoder(x)
        n = len(decoder.blocks)
        head = _trimmed_unet_decoder(decoder, features, trim=trim, margin=TAIL_MARGIN, blocks=n - 1)
        if head is None:  # the decoder runs whole, as in forward (encoder not run twice)
            coarse, fine, _ = self.forward_parts(x, trim, features)
            yield 0, coarse, fine
            return
        y, m = head  # stride 2: the core plus m pixels on each side
        last = decoder.blocks[-1]
        skips = features[1:-1][::-1]  # the block i gets skips[i], as in the whole decoder
        full_m = 2 * m
        skip = crop(skips[n - 1], trim - full_m) if n - 1 < len(skips) else None
        del features, skips  # the whole pass frees them before its heads too
        xin = crop(x, trim - full_m)
        core_h, core_w = x.shape[-2] - 2 * trim, x.shape[-1] - 2 * trim
        for r0 in range(0, core_h, rows):
            r1 = min(core_h, r0 + rows)
            # window rows, full resolution, from an even row (the stage upsamples by 2)
            a = max(0, r0 + full_m - TAIL_MARGIN) // 2
            b = (min(core_h + 2 * full_m, r1 + full_m + TAIL_MARGIN) + 1) // 2
            ys = y[:, :, a:b]
            sk = None if skip is None else skip[:, :, 2 * a : 2 * b]
            z = self.backbone.segmentation_head(
                last(ys, 2 * ys.shape[-2], 2 * ys.shape[-1], skip_connection=sk)
            )
            coarse, fine, _ = self._heads(z, xin[:, :, 2 * a : 2 * b])
            top = r0 + full_m - 2 * a
            rows_, cols = slice(top, top + r1 - r0), slice(full_m, full_m + core_w)
            yield r0, coarse[:, :, rows_, cols], fine[:, :, rows_, cols]

    def _heads(
        self, feats: torch.Tensor, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """The layers after the backbone: pixel path, dropout, heads."""
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
        probs = coarse.softmax(dim=1).to(feats.dtype)
        fine = self.fine_head(torch.cat([feats, same_layout(probs, feats)], dim=1))
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


def _trimmed_unet_decoder(
    decoder: UnetDecoder,
    features: Sequence[torch.Tensor],
    *,
    trim: int,
    margin: int,
    blocks: int | None = None,
) -> tuple[torch.Tensor, int] | None:
    """Run smp's Unet decoder on the core of a tile plus about ``margin`` pixels.

    ``features`` are the encoder's outputs on the whole tile (core plus ``trim`` pixels
    of halo on each side), stride 1 first, each stage halving the resolution. Working
    back from the output, each decoder block (an upsampling, then two 3x3 convolutions)
    needs two more of its own pixels around what the next block needs, so each stage
    keeps just that margin of its input, and the output equals the untrimmed decoder's
    on the core plus the margin returned (``margin``, or the whole halo if smaller).

    With ``blocks``, only the first ``blocks`` decoder blocks run, each keeping what
    the rest would need for ``margin`` pixels at the output, and the result is at
    that stage's stride (its margin in its own pixels).

    Returns ``None`` (the caller runs the decoder whole) when the encoder's strides are
    not the powers of two this assumes.
    """
    width = features[0].shape[-1]
    if any(f.shape[-1] << i != width for i, f in enumerate(features)):
        return None
    n = len(decoder.blocks)
    need = [0] * n  # pixels, at its own stride, around the core that block i's output needs
    need[-1] = margin
    for i in range(n - 1, 0, -1):
        need[i - 1] = math.ceil((need[i] + 2) / 2)
    stride = 1 << (len(features) - 1)
    m = math.ceil((need[0] + 2) / 2) + sum(
        c.kernel_size[0] // 2 for c in decoder.center.modules() if isinstance(c, nn.Conv2d)
    )
    m = min(m, trim // stride)
    x = decoder.center(crop(features[-1], trim // stride - m))
    skips = features[1:-1][::-1]
    for i, block in enumerate(decoder.blocks[:blocks]):
        stride //= 2
        m *= 2  # the upsampled input's margin
        skip = crop(skips[i], trim // stride - m) if i < len(skips) else None
        x = block(x, 2 * x.shape[-2], 2 * x.shape[-1], skip_connection=skip)
        keep = min(need[i], m)
        x, m = crop(x, m - keep), keep
    return x, m


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
