import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from geoseg.hierarchy import (
    HierarchyIndex,
    decode,
    decode_with_probabilities,
    hierarchical_loss,
    leaf_log_probs,
)
from geoseg.taxonomy import Taxonomy, load_taxonomy

from .conftest import NLCD_YAML


@st.composite
def taxonomies(draw):
    n_coarse = draw(st.integers(1, 5))
    coarse = [{"code": i + 1, "name": f"c{i}"} for i in range(n_coarse)]
    parents = draw(st.lists(st.integers(1, n_coarse), min_size=0, max_size=8))
    fine = [{"code": 100 + j, "name": f"f{j}", "parent": p} for j, p in enumerate(parents)]
    return Taxonomy.from_dict({"name": "h", "coarse": coarse, "fine": fine})


def _random_logits(tax, seed, scale):
    """Seeded coarse and fine logits of a batch of 2 images of 5 x 7, and the index."""
    g = torch.Generator().manual_seed(seed)
    cl = torch.randn(2, tax.n_coarse, 5, 7, generator=g) * scale
    fl = torch.randn(2, max(tax.n_fine, 1), 5, 7, generator=g)[:, : tax.n_fine] * scale
    return cl, fl, HierarchyIndex.from_taxonomy(tax)


@settings(max_examples=60, deadline=None)
@given(tax=taxonomies(), seed=st.integers(0, 2**31 - 1), scale=st.floats(0.1, 20.0))
def test_decoded_fine_is_always_a_child_of_decoded_coarse(tax, seed, scale):
    cl, fl, index = _random_logits(tax, seed, scale)
    c, f, p = decode(cl, fl, index)
    parent = torch.as_tensor(tax.fine_parent_index)
    has_fine = f >= 0
    if tax.n_fine:
        assert torch.equal(parent[f[has_fine]], c[has_fine])
    childless = set(tax.childless_coarse_index.tolist())
    # fine is missing exactly where a childless coarse class won
    assert all((int(ci) in childless) for ci in c[~has_fine].flatten())
    assert all((int(ci) not in childless) for ci in c[has_fine].flatten())
    assert bool(((p > 0) & (p <= 1 + 1e-6)).all())
    # joint leaf probabilities form a distribution
    total = leaf_log_probs(cl, fl, index).exp().sum(1)
    assert torch.allclose(total, torch.ones_like(total), atol=1e-4)


@settings(max_examples=40, deadline=None)
@given(tax=taxonomies(), seed=st.integers(0, 2**31 - 1), scale=st.floats(0.1, 20.0))
def test_class_probabilities_are_those_the_decoder_chose_from(tax, seed, scale):
    cl, fl, index = _random_logits(tax, seed, scale)
    c, f, p, probs = decode_with_probabilities(cl, fl, index)
    for got, want in zip((c, f, p), decode(cl, fl, index), strict=True):
        assert torch.equal(got, want)
    assert probs.shape == (2, tax.n_coarse + tax.n_fine, 5, 7)
    pc, pf = probs[:, : tax.n_coarse], probs[:, tax.n_coarse :]
    assert torch.allclose(pc, torch.softmax(cl, 1), atol=1e-6)
    for k, group in enumerate(index.groups):  # children add up to their parent
        if group.numel():
            assert torch.allclose(pf[:, group].sum(1), pc[:, k], atol=1e-5)
    # in the order of the leaves: the chosen one is the most probable, its value the confidence
    leaves = leaf_log_probs(cl, fl, index).exp()
    assert torch.allclose(torch.cat([pf, pc[:, index.childless]], 1), leaves, atol=1e-5)
    leaf = torch.where(f >= 0, f, tax.n_fine + torch.searchsorted(index.childless, c))
    chosen = leaves.gather(1, leaf.unsqueeze(1)).squeeze(1)
    assert torch.allclose(chosen, leaves.max(1).values) and torch.allclose(chosen, p, atol=1e-5)


def test_decode_matches_bruteforce_on_nlcd():
    tax = load_taxonomy(NLCD_YAML)
    index = HierarchyIndex.from_taxonomy(tax)
    torch.manual_seed(3)
    cl, fl = torch.randn(1, 8, 4, 4), torch.randn(1, 16, 4, 4)
    _, f, p = decode(cl, fl, index)
    pc = cl.softmax(1)[0]
    for y in range(4):
        for x in range(4):
            best, arg = -1.0, None
            for j, fc in enumerate(tax.fine):
                sib = [k for k, s in enumerate(tax.fine) if s.parent == fc.parent]
                cond = fl[0, sib, y, x].softmax(0)[sib.index(j)]
                joint = float(pc[tax.fine_parent_index[j], y, x] * cond)
                if joint > best:
                    best, arg = joint, j
            assert int(f[0, y, x]) == arg
            assert np.isclose(float(p[0, y, x]), best, atol=1e-5)


def test_loss_uses_each_level_only_where_labelled():
    tax = load_taxonomy(NLCD_YAML)
    index = HierarchyIndex.from_taxonomy(tax)
    cl = torch.randn(1, 8, 3, 3, requires_grad=True)
    fl = torch.randn(1, 16, 3, 3, requires_grad=True)
    coarse_t = torch.full((1, 3, 3), 3)  # Forest everywhere
    fine_t = torch.full((1, 3, 3), -1)  # no fine labels
    lc, lf = hierarchical_loss(cl, fl, coarse_t, fine_t, index)
    (lc + lf).backward()
    assert lf.item() == 0.0
    assert fl.grad is None or float(fl.grad.abs().sum()) == 0.0
    assert float(cl.grad.abs().sum()) > 0
    # fine labels only: the conditional loss moves fine logits of the siblings only
    cl2 = torch.randn(1, 8, 3, 3, requires_grad=True)
    fl2 = torch.randn(1, 16, 3, 3, requires_grad=True)
    lc2, lf2 = hierarchical_loss(
        cl2, fl2, torch.full((1, 3, 3), -1), torch.full((1, 3, 3), 8), index
    )
    (lc2 + lf2).backward()
    assert lc2.item() == 0.0
    siblings = [j for j, f in enumerate(tax.fine) if f.parent == 4]
    others = [j for j in range(16) if j not in siblings]
    assert float(fl2.grad[0, siblings].abs().sum()) > 0
    assert float(fl2.grad[0, others].abs().sum()) == 0.0


@settings(max_examples=20, deadline=None)
@given(tax=taxonomies(), seed=st.integers(0, 2**31 - 1))
def test_flat_head_decodes_as_one_softmax_over_leaves(tax, seed):
    """The ablation's flat head: coarse = parent(argmax leaf), p(coarse) = sum of its leaves."""
    from geoseg.model import ModelConfig, build_segmenter

    torch.manual_seed(seed % 1000)
    cfg = ModelConfig(
        encoder="resnet18", encoder_depth=3, decoder_channels=(8, 8, 8), features=4, head="flat"
    )
    model = build_segmenter(cfg, in_channels=3, taxonomy=tax).eval()
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        cl, fl = model(x)
        leaves = model.leaf_head(model.backbone(x)).float()
    index = HierarchyIndex.from_taxonomy(tax)
    lp = leaf_log_probs(cl, fl, index)
    assert torch.allclose(lp, leaves.log_softmax(1), atol=1e-4)
    c, _, _ = decode(cl, fl, index)
    best = leaves.argmax(1)
    assert torch.equal(c, index.leaf_coarse[best])
    pc = cl.softmax(1)
    for k, members in enumerate(model._groups):
        assert torch.allclose(pc[:, k], leaves.softmax(1)[:, members].sum(1), atol=1e-5)


def test_soft_jaccard_is_zero_for_perfect_and_ignores_unlabelled():
    from geoseg.hierarchy import soft_jaccard_loss

    t = torch.tensor([[[0, 1], [2, -1]]])
    perfect = torch.nn.functional.one_hot(t.clamp(min=0), 3).permute(0, 3, 1, 2).float()
    assert float(soft_jaccard_loss(perfect, t, eps=0.0)) == 0.0
    uniform = torch.full((1, 3, 2, 2), 1 / 3)
    # each present class: I = 1/3, U = 1/3 * 3 + 1 - 1/3 = 5/3 -> IoU 0.2
    assert float(soft_jaccard_loss(uniform, t, eps=0.0)) == pytest.approx(0.8)


def test_unused_encoder_stages_are_pruned_without_changing_the_output():
    from geoseg.config import ModelConfig
    from geoseg.model import HierarchicalSegmenter, prune_unused

    tax = load_taxonomy(NLCD_YAML)
    cfg = ModelConfig(encoder="resnet18", encoder_depth=3, decoder_channels=(16, 8, 8), features=8)
    torch.manual_seed(0)
    full = HierarchicalSegmenter(cfg, in_channels=4, n_coarse=tax.n_coarse, n_fine=tax.n_fine)
    full.eval()
    x = torch.randn(1, 4, 32, 32)
    with torch.no_grad():
        before = full(x)
    n_before = sum(p.numel() for p in full.parameters())
    removed = prune_unused(full, in_channels=4, side=16)
    assert any(r.startswith("backbone.encoder.layer4") for r in removed)
    assert sum(p.numel() for p in full.parameters()) < n_before / 2
    with torch.no_grad():
        after = full(x)
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))


def _tiny_model_config(**over):
    """A small ResNet-18 Unet (output stride 8) for wiring tests."""
    from geoseg.config import ModelConfig

    base = {"encoder": "resnet18", "encoder_depth": 3, "decoder_channels": (16, 8, 8)}
    return ModelConfig(**{**base, "features": 8, **over})


def test_pixel_skip_path_reaches_the_heads_and_survives_folding():
    """``pixel_skip``: a full-resolution path on the input bands, fused before the heads.

    Zeroing its first convolution changes the logits (it is wired into the output),
    its parameters get gradients, and batch-norm folding for inference keeps the output.
    """
    from geoseg.model import build_segmenter
    from geoseg.predict import fold_batchnorm

    tax = load_taxonomy(NLCD_YAML)
    cfg = _tiny_model_config(pixel_skip=4)
    torch.manual_seed(0)
    model = build_segmenter(cfg, in_channels=4, taxonomy=tax)
    x = torch.randn(2, 4, 32, 32)
    cl, fl = model(x)
    (cl.logsumexp(1).mean() + fl.logsumexp(1).mean()).backward()
    assert model.pixel_stem is not None
    assert float(model.pixel_stem[0].weight.grad.abs().sum()) > 0
    model.eval()
    with torch.no_grad():
        before = model(x)
        folded = fold_batchnorm(model)
        after = folded(x)
        for a, b in zip(before, after, strict=True):
            assert torch.allclose(a, b, atol=1e-4)
        model.pixel_stem[0].weight.zero_()
        cut = model(x)
    assert not torch.allclose(before[0], cut[0], atol=1e-3)
    # the default (pixel_skip 0) builds no such path: old bundles load unchanged
    plain = build_segmenter(cfg.model_copy(update={"pixel_skip": 0}), in_channels=4, taxonomy=tax)
    assert plain.pixel_stem is None
    assert not any(k.startswith(("pixel_stem", "fuse")) for k in plain.state_dict())


@pytest.mark.parametrize("head", ["hierarchical", "flat"])
def test_pixel_head_logits_are_added_and_trained_on_their_own(head):
    """``pixel_head``: a per-pixel classifier whose logits are added to the heads'.

    Its logits come back from ``forward_parts``; the output is the contextual logits
    plus them (so a large pixel logit for a class wins that pixel); a loss on the pixel
    logits alone trains only the pixel head; folding keeps the output.
    """
    from geoseg.model import build_segmenter
    from geoseg.predict import fold_batchnorm

    tax = load_taxonomy(NLCD_YAML)
    cfg = _tiny_model_config(pixel_head=8, head=head)
    torch.manual_seed(0)
    model = build_segmenter(cfg, in_channels=4, taxonomy=tax)
    x = torch.randn(2, 4, 32, 32)
    cl, fl, pixel = model.forward_parts(x)
    assert pixel is not None
    pc, pf = pixel
    assert pc.shape == cl.shape and pf.shape == fl.shape
    index = HierarchyIndex.from_taxonomy(tax)
    yf = torch.zeros(2, 32, 32, dtype=torch.long)  # fine class 0, under its parent
    yc = torch.full((2, 32, 32), int(index.parent[0]))
    sum(hierarchical_loss(pc, pf, yc, yf, index)).backward()
    assert model.pixel_head is not None
    assert float(model.pixel_head[0].weight.grad.abs().sum()) > 0
    assert all(
        p.grad is None or float(p.grad.abs().sum()) == 0
        for n, p in model.named_parameters()
        if not n.startswith("pixel_head")
    )
    model.eval()
    with torch.no_grad():
        before = model(x)
        for a, b in zip(before, fold_batchnorm(model)(x), strict=True):
            assert torch.allclose(a, b, atol=1e-4)
        # a pixel head that is sure of coarse class 0 everywhere decides every pixel
        last = model.pixel_head[-1]
        last.weight.zero_()
        last.bias.zero_()
        if head == "flat":
            leaf = int(torch.nonzero(model.leaf_coarse == 0)[0])
            last.bias[leaf] = 100.0
        else:
            last.bias[0] = 100.0
        sure = model(x)
    assert (sure[0].argmax(1) == 0).all()
    assert not torch.allclose(before[0], sure[0], atol=1e-3)
    plain = build_segmenter(cfg.model_copy(update={"pixel_head": 0}), in_channels=4, taxonomy=tax)
    assert plain.pixel_head is None and plain.forward_parts(x)[2] is None


def test_dropout_acts_in_training_only():
    from geoseg.model import build_segmenter

    tax = load_taxonomy(NLCD_YAML)
    cfg = _tiny_model_config(dropout=0.5)
    torch.manual_seed(0)
    model = build_segmenter(cfg, in_channels=4, taxonomy=tax)
    x = torch.randn(1, 4, 32, 32)
    model.train()
    with torch.no_grad():
        a, b = model(x)[0], model(x)[0]
    assert not torch.allclose(a, b)  # channels dropped at random
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x)[0], model(x)[0])
    plain = build_segmenter(cfg.model_copy(update={"dropout": 0.0}), in_channels=4, taxonomy=tax)
    assert plain.dropout is None


def _randomise_batch_norms(model: torch.nn.Module) -> None:
    """Give every batch norm non-trivial statistics, so that folding them is visible."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)


def _seeded_model(**over):
    """A tiny network (seed 0, batch norms randomised, eval mode) and its output stride."""
    from geoseg.model import build_segmenter

    cfg = _tiny_model_config(**over)
    torch.manual_seed(0)
    model = build_segmenter(cfg, in_channels=4, taxonomy=load_taxonomy(NLCD_YAML)).eval()
    _randomise_batch_norms(model)
    return model, cfg.output_stride


#: Heads and architectures the trimmed forward and its strips are checked on
TAIL_VARIANTS = [
    {"pixel_skip": 4},
    {"pixel_skip": 4, "encoder_depth": 5, "decoder_channels": (16, 16, 8, 8, 8)},
    {"head": "flat"},
    {"pixel_head": 8},
    {"encoder": "mobilenet_v2"},
    # no trimmed decoder: run whole, cut before the heads (and one strip)
    {"architecture": "FPN", "encoder_depth": 5, "decoder_channels": None},
]


@pytest.mark.parametrize("over", TAIL_VARIANTS)
def test_trimmed_forward_is_the_core_of_the_whole_forward(over):
    """``forward(x, trim=h)``: the logits of the core only, equal to the untrimmed ones there.

    The decoder, pixel path and heads skip the halo; if any stage kept too small a
    margin, the core's logits would differ (a margin of 1 instead of
    :data:`geoseg.model.TAIL_MARGIN` changes them by ~0.3).
    """
    from geoseg.model import crop

    model, s = _seeded_model(**over)
    x = torch.randn(2, 4, 3 * s + 2 * 2 * s, 5 * s + 2 * 2 * s)
    with torch.no_grad():
        whole = model(x)
        for trim in (s, 2 * s):
            part = model(x, trim)
            for a, b in zip(whole, part, strict=True):
                assert b.shape[-2:] == (x.shape[-2] - 2 * trim, x.shape[-1] - 2 * trim)
                assert torch.allclose(crop(a, trim), b, atol=1e-5)


@pytest.mark.parametrize("over", TAIL_VARIANTS)
def test_strips_of_rows_are_the_trimmed_forward(over):
    """``forward_strips``: the trimmed logits, row strip by row strip, the same values.

    Strips of 5 rows (not a divisor of the core, nor even), 1 row and more rows than
    the core; each strip starts where the last ended and they cover the core.
    """
    model, s = _seeded_model(**over)
    x = torch.randn(2, 4, 3 * s + 2 * 2 * s, 5 * s + 2 * 2 * s)
    trim = 2 * s
    with torch.no_grad():
        whole = model(x, trim)
        for rows in (5, 1, 1000):
            strips = list(model.forward_strips(x, trim, rows))
            assert [r for r, _, _ in strips] == list(range(0, 3 * s, rows))[: len(strips)]
            for level in (0, 1):
                joined = torch.cat([st[1 + level] for st in strips], dim=2)
                assert joined.shape == whole[level].shape
                assert torch.allclose(joined, whole[level], atol=1e-5)
        if over.get("architecture") == "FPN":
            assert len(strips) == 1


def test_strips_need_their_margins(monkeypatch):
    """The test above can fail: with 1 row of overlap the strips' edges change."""
    import geoseg.model

    model, s = _seeded_model(pixel_skip=4)
    x = torch.randn(1, 4, 7 * s, 7 * s)
    with torch.no_grad():
        whole = model(x, 2 * s)[0]
        monkeypatch.setattr(geoseg.model, "TAIL_MARGIN", 1)
        joined = torch.cat([c for _, c, _ in model.forward_strips(x, 2 * s, 4)], dim=2)
    assert not torch.allclose(joined, whole, atol=1e-4)


def test_strips_without_the_trimmed_decoder_run_the_encoder_once(monkeypatch):
    """Where the trimmed decoder does not apply, one strip of the whole decoder: the
    trimmed forward's logits, and the encoder not run a second time."""
    import geoseg.model

    model, s = _seeded_model(pixel_skip=4)
    x = torch.randn(1, 4, 7 * s, 5 * s)
    with torch.no_grad():
        want = model(x, 2 * s)
        monkeypatch.setattr(geoseg.model, "_trimmed_unet_decoder", lambda *a, **k: None)
        calls = []
        model.backbone.encoder.register_forward_hook(lambda *a: calls.append(1))
        strips = list(model.forward_strips(x, 2 * s, 4))
    assert len(strips) == 1 and len(calls) == 1
    assert torch.allclose(strips[0][1], want[0], atol=1e-5)
    assert torch.allclose(strips[0][2], want[1], atol=1e-5)


def test_trimmed_forward_needs_its_margins(monkeypatch):
    """The test above can fail: with a 1-pixel tail margin the core's logits change."""
    import geoseg.model
    from geoseg.model import crop

    monkeypatch.setattr(geoseg.model, "TAIL_MARGIN", 1)
    model, s = _seeded_model(pixel_skip=4)
    x = torch.randn(1, 4, 7 * s, 7 * s)
    with torch.no_grad():
        assert not torch.allclose(crop(model(x)[0], 2 * s), model(x, 2 * s)[0], atol=1e-3)


def test_batchnorm_folding_copies_and_serves_the_trimmed_forward():
    """Folding returns a copy (the trained model keeps its batch norms, so a bundle saved
    after a prediction still loads) whose batch norms are gone from both the whole and
    the trimmed forward, with the same logits."""
    from geoseg.model import build_segmenter
    from geoseg.predict import fold_batchnorm

    tax = load_taxonomy(NLCD_YAML)
    cfg = _tiny_model_config(pixel_skip=4)
    torch.manual_seed(0)
    model = build_segmenter(cfg, in_channels=4, taxonomy=tax).eval()
    _randomise_batch_norms(model)

    def norms(m: torch.nn.Module) -> int:
        return sum(isinstance(k, torch.nn.BatchNorm2d) for k in m.modules())

    before = norms(model)
    folded = fold_batchnorm(model)
    assert norms(model) == before
    assert norms(folded) <= before // 3  # all but the few not right after a convolution
    s = cfg.output_stride
    x = torch.randn(1, 4, 6 * s, 6 * s)
    with torch.no_grad():
        for trim in (0, s):
            for a, b in zip(model(x, trim), folded(x, trim), strict=True):
                assert torch.allclose(a, b, atol=1e-4)
