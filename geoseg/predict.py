"""One block in, labels out: normalise, run the network on batched tiles, decode, crop.

:class:`Predictor` holds a loaded bundle on a device and turns a block's input array
(core plus halo, already padded at scene edges) into the three output bands of the
label raster: coarse code, fine code and confidence (0-100), with the taxonomy's
nodata value where the input is invalid.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from geoseg.allocator import after_network_pass
from geoseg.bundle import BundleMeta, bundle_hash, load_bundle
from geoseg.devices import Precision, autocast, resolve_device, resolve_precision
from geoseg.errors import BundleError
from geoseg.hierarchy import HierarchyIndex, decode, decode_with_probabilities
from geoseg.model import HierarchicalSegmenter
from geoseg.normalize import Normalization, fill_nearest
from geoseg.tiles import TileGrid, Window, reflect_index
from geoseg.write import PROBABILITY_NODATA

log = logging.getLogger(__name__)

DECODE_ROWS = 64  # rows of a tile core decoded at once (measured: README, Speed)
#: Rows of a tile core whose full-resolution layers run at once on a CPU
#: (:meth:`HierarchicalSegmenter.forward_strips`): a 1248² tile's pass peaks 340-440 MB
#: lower than whole (1.29 GB resident against 1.63-1.73), at the same speed (3072²,
#: interleaved: best 18.86 against 18.84 s); 128 rows saved little more and were 4-8 %
#: slower (README, Speed and memory).
STRIP_ROWS = 256


@dataclass
class Timings:
    """Seconds spent per phase (summed over calls)."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    @contextlib.contextmanager
    def phase(self, name: str):  # type: ignore[no-untyped-def]
        """Time a ``with`` block under ``name``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - t0


def fold_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` with every batch norm folded into the convolution before it.

    In eval mode a batch norm is an affine map, so it can be absorbed into the
    preceding convolution's weights: about 10 % less time, same labels (outputs differ
    by ~1e-6). ``torch.fx`` traces the network (with ``trim=0``) to find the pairs, a
    convolution whose only use is a batch norm; the folding is done on the copy's
    modules themselves, so every path of the network's forward (a trimmed one too) uses
    it. Returns ``model`` itself when it cannot be traced.
    """
    from torch.fx import symbolic_trace
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    try:
        takes_trim = "trim" in inspect.signature(model.forward).parameters
        graph = symbolic_trace(model, concrete_args={"trim": 0} if takes_trim else None).graph
    except Exception as exc:  # tracing is best-effort; the plain model is always right
        log.debug("batch-norm folding skipped (%s: %s)", exc.__class__.__name__, exc)
        return model
    model = copy.deepcopy(model)
    modules = dict(model.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[str(node.target)] = calls.get(str(node.target), 0) + 1
    for node in graph.nodes:
        prev = node.args[0] if node.args else None
        if not (node.op == "call_module" and isinstance(prev, torch.fx.Node)):
            continue
        if prev.op != "call_module" or len(prev.users) != 1:
            continue
        bn_name, conv_name = str(node.target), str(prev.target)
        conv, bn = modules[conv_name], modules[bn_name]
        if not (
            isinstance(bn, torch.nn.BatchNorm2d)
            and isinstance(conv, torch.nn.Conv2d)
            and calls[bn_name] == calls[conv_name] == 1
        ):
            continue
        _set_submodule(model, conv_name, fuse_conv_bn_eval(conv.eval(), bn.eval()))
        _set_submodule(model, bn_name, torch.nn.Identity())
    return model.eval()


def _set_submodule(model: torch.nn.Module, name: str, module: torch.nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, module)


#: The 8 symmetries of the square: (transpose first?, quarter turns).
DIHEDRAL: tuple[tuple[bool, int], ...] = tuple((tr, q) for tr in (False, True) for q in range(4))


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """Apply symmetry ``k`` of :data:`DIHEDRAL` to the last two axes of ``x``."""
    transpose, quarters = DIHEDRAL[k]
    if transpose:
        x = x.transpose(-2, -1)
    return torch.rot90(x, quarters, dims=(-2, -1)) if quarters else x


def undo_dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """Invert :func:`dihedral`: ``undo_dihedral(dihedral(x, k), k)`` is ``x``."""
    transpose, quarters = DIHEDRAL[k]
    if quarters:
        x = torch.rot90(x, -quarters, dims=(-2, -1))
    return x.transpose(-2, -1) if transpose else x


class Predictor:
    """A bundle's network, ready to label blocks.

    Parameters
    ----------
    meta : BundleMeta
        Bundle metadata.
    model : HierarchicalSegmenter
        The network, in eval mode.
    device : torch.device
        Where to run it.
    batch_size : int
        Tiles per forward pass; 0 = automatic (on CUDA the largest power of two that
        fits in about half the free device memory, at most 32; 1 on CPU).
    precision : {"auto", "fp32", "bf16"}
        Numeric precision of the forward pass (``auto``: see
        :func:`geoseg.devices.resolve_precision`).
    channels_last : bool, optional
        NHWC memory layout (faster convolutions on CPU and tensor cores); default on.
    tta : bool
        Test-time augmentation: average each tile's logits over the 8 rotations and
        reflections of the tile (8 network passes per tile). The labels no longer depend
        on the scene's orientation; see the README for what it gains.
    nodata_fill : {"mirror", "nearest", "zero"}
        What the network sees at nodata pixels: the valid image mirrored at the border
        of valid data (default; see :func:`geoseg.normalize.fill_nearest`), the
        nearest valid pixel repeated, or zeros (the band means).
    """

    def __init__(
        self,
        meta: BundleMeta,
        model: HierarchicalSegmenter,
        *,
        device: torch.device,
        batch_size: int = 4,
        precision: Precision = "fp32",
        channels_last: bool | None = None,
        tta: bool = False,
        nodata_fill: Literal["mirror", "nearest", "zero"] = "mirror",
    ) -> None:
        self.meta = meta
        self.device = device
        self.precision = resolve_precision(precision, device)
        self.channels_last = True if channels_last is None else channels_last
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        self.model = fold_batchnorm(model.to(device).eval()).to(memory_format=self.memory_format)
        self.batch_size = batch_size
        self.tta = tta
        self._auto_batch: dict[tuple[int, int], int] = {}
        self.nodata_fill = nodata_fill
        self.index = HierarchyIndex.from_taxonomy(meta.taxonomy).to(device)
        tax = meta.taxonomy
        self.coarse_codes = torch.as_tensor(tax.coarse_codes, device=device)
        self.fine_codes = torch.as_tensor(np.append(tax.fine_codes, tax.nodata), device=device)
        self.dtype = np.dtype(tax.dtype)
        self.timings = Timings()
        # One network pass at a time per predictor (so per process): a pass already
        # uses every torch thread, and two at once only contend for the cores and add
        # a second tile's activations to the peak memory. Threads that share the
        # predictor read, normalise and write their blocks meanwhile.
        self._compute = threading.Lock()
        self.set_decode_bias(meta)

    def set_decode_bias(self, meta: BundleMeta) -> None:
        """Use ``meta``'s per-class logit offsets (none: zeros)."""
        self.meta = meta
        tax = meta.taxonomy
        b = meta.decode_bias
        bc = b.coarse if b is not None else (0.0,) * tax.n_coarse
        bf = b.fine if b is not None else (0.0,) * tax.n_fine
        if len(bc) != tax.n_coarse or len(bf) != tax.n_fine:
            raise BundleError(
                f"bundle {meta.name}: decode_bias has {len(bc)}+{len(bf)} entries but the "
                f"taxonomy has {tax.n_coarse}+{tax.n_fine} classes: re-export the bundle"
            )
        self.coarse_bias = torch.tensor(bc, dtype=torch.float32, device=self.device)[:, None, None]
        self.fine_bias = torch.tensor(bf, dtype=torch.float32, device=self.device)[:, None, None]

    @classmethod
    def from_bundle(
        cls,
        path: str,
        *,
        device: str = "auto",
        batch_size: int = 4,
        precision: Precision = "fp32",
        channels_last: bool | None = None,
        tta: bool = False,
    ) -> Predictor:
        """Load a bundle from disk."""
        dev = resolve_device(device)
        meta, model = load_bundle(path, device=str(dev))
        return cls(
            meta,
            model,
            device=dev,
            batch_size=batch_size,
            precision=precision,
            channels_last=channels_last,
            tta=tta,
        )

    def forward(self, x: torch.Tensor, trim: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the network on a batch of normalised tiles with this predictor's settings.

        With ``trim`` (the halo), the logits cover each tile's core only and the network
        skips most of the halo's work (see :class:`geoseg.model.HierarchicalSegmenter`).
        On CUDA the batch is copied from pinned host memory without blocking.
        """
        if self.device.type == "cuda" and not x.is_cuda:
            x = x.pin_memory()
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        if not self.tta:
            with autocast(self.device, self.precision):
                return self.model(x, trim)
        with autocast(self.device, self.precision):
            c_sum, f_sum = (t.float() for t in self.model(x, trim))  # symmetry 0: the identity
        for k in range(1, len(DIHEDRAL)):
            xk = dihedral(x, k).contiguous(memory_format=self.memory_format)
            with autocast(self.device, self.precision):
                c, f = self.model(xk, trim)
            c_sum.add_(undo_dihedral(c.float(), k))
            f_sum.add_(undo_dihedral(f.float(), k))
            del c, f
        return c_sum.div_(len(DIHEDRAL)), f_sum.div_(len(DIHEDRAL))

    def logit_strips(
        self, x: torch.Tensor, trim: int = 0
    ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """:meth:`forward`, in strips of core rows on a CPU: yields ``(row, coarse, fine)``.

        On a CPU without test-time augmentation, the network's full-resolution layers
        run :data:`STRIP_ROWS` rows at a time (same logits, less memory); elsewhere the
        whole batch is one strip.
        """
        model = self.model
        # (not a HierarchicalSegmenter: a traced copy, whole passes)
        if self.tta or self.device.type != "cpu" or not isinstance(model, HierarchicalSegmenter):
            yield (0, *self.forward(x, trim))
            return
        x = x.contiguous(memory_format=self.memory_format)
        strips = model.forward_strips(x, trim, STRIP_ROWS)
        while True:
            with autocast(self.device, self.precision):  # not around the caller's code
                item = next(strips, None)
            if item is None:
                return
            yield item

    def tiles_per_batch(self, side: int, trim: int = 0) -> int:
        """The batch size for tiles of ``side`` x ``side`` input pixels, ``trim`` of them halo."""
        if self.batch_size > 0:
            return self.batch_size
        key = (side, trim)
        if key not in self._auto_batch:
            with self._compute:  # alone on the device, or the peak-memory probe is wrong
                if key not in self._auto_batch:
                    self._auto_batch[key] = self._probe_batch(side, trim)
        return self._auto_batch[key]

    def _probe_batch(self, side: int, trim: int) -> int:
        if self.device.type != "cuda":
            return 1  # on CPU one tile at a time is fastest (measured: README)
        bands = self.meta.in_channels
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        base = torch.cuda.memory_allocated(self.device)
        with torch.inference_mode():
            self.forward(torch.zeros(1, bands, side, side), trim=trim)
        torch.cuda.synchronize(self.device)
        per_tile = max(1, torch.cuda.max_memory_allocated(self.device) - base)
        free, _total = torch.cuda.mem_get_info(self.device)
        fit = int(0.5 * free // per_tile)
        batch = 1
        while batch * 2 <= min(fit, 32):
            batch *= 2
        log.info("automatic batch size %d for %dx%d tiles on %s", batch, side, side, self.device)
        return batch

    @torch.inference_mode()
    def predict_block(
        self,
        data: np.ndarray,
        valid: np.ndarray,
        grid: TileGrid,
        block: Window,
        *,
        timings: Timings | None = None,
        probabilities: np.ndarray | None = None,
        normalization: Normalization | None = None,
    ) -> np.ndarray:
        """Label one block.

        Parameters
        ----------
        data : numpy.ndarray
            ``(bands, H, W)`` raw values of ``grid.input_window(block)``.
        valid : numpy.ndarray
            ``(H, W)`` validity of the same window.
        grid : TileGrid
            The tile grid.
        block : Window
            The block's core window (clipped to the scene).
        timings : Timings, optional
            Where to add the seconds per phase (default: this predictor's totals; pass
            one per call when several threads share the predictor).
        probabilities : numpy.ndarray, optional
            ``(n_coarse + n_fine, block.height, block.width)`` uint8, filled with each
            class's probability in percent (:func:`geoseg.hierarchy.decode_with_probabilities`,
            decision offsets included, as the labels are chosen) and
            :data:`PROBABILITY_NODATA` where the input is invalid.
        normalization : Normalization, optional
            Band statistics to standardise ``data`` with instead of the bundle's (a
            scene's own: :func:`geoseg.normalize.scene_normalization`).

        Returns
        -------
        numpy.ndarray
            ``(3, block.height, block.width)``: coarse code, fine code, confidence 1-100;
            the taxonomy's nodata value in every band where the input is invalid.
        """
        tm = self.timings if timings is None else timings
        h = grid.halo
        core_valid = valid[h : h + block.height, h : h + block.width]
        out = np.empty((3, block.height, block.width), dtype=self.dtype)
        nodata = self.meta.taxonomy.nodata
        if probabilities is not None:
            n_classes = self.meta.taxonomy.n_coarse + self.meta.taxonomy.n_fine
            if probabilities.shape != (n_classes, block.height, block.width):
                raise ValueError(f"probabilities must be {(n_classes, block.height, block.width)}")
            probabilities[:] = PROBABILITY_NODATA
        if not core_valid.any():
            out[:] = nodata
            return out
        with tm.phase("normalize"):
            x = (normalization or self.meta.normalization).apply(data, valid)
            if self.nodata_fill != "zero" and not valid.all():
                fill_nearest(x, valid, mirror=self.nodata_fill == "mirror")
        ph, pw = grid.padded_core(block)
        coarse = torch.zeros((ph, pw), dtype=torch.long, device=self.device)
        fine = torch.zeros((ph, pw), dtype=torch.long, device=self.device)
        conf = torch.zeros((ph, pw), dtype=torch.float32, device=self.device)
        probs = (
            None
            if probabilities is None
            else torch.zeros((len(probabilities), ph, pw), dtype=torch.uint8, device=self.device)
        )
        padded_valid = np.zeros((ph, pw), dtype=bool)
        padded_valid[: block.height, : block.width] = core_valid
        tiles = [
            (i, c)
            for i, c in grid.tiles(block)
            if padded_valid[c.row_off : c.row_end, c.col_off : c.col_end].any()
        ]
        batches = []
        by_shape: dict[tuple[int, int], list[tuple[Window, Window]]] = {}
        for tile in tiles:  # only tiles of one shape share a forward pass
            by_shape.setdefault((tile[1].height, tile[1].width), []).append(tile)
        for (th, tw), same in by_shape.items():
            # sized for the shape's longer side: a scene's last tile may be widened
            per_batch = self.tiles_per_batch(max(th, tw, grid.tile_size) + 2 * h, h)
            batches += [same[k : k + per_batch] for k in range(0, len(same), per_batch)]
        for batch in batches:
            inputs = np.stack(
                [x[:, i.row_off : i.row_end, i.col_off : i.col_end] for i, _ in batch]
            )
            with tm.phase("wait"):
                self._compute.acquire()
            try:
                tw = batch[0][1].width
                strips = self.logit_strips(torch.from_numpy(inputs), trim=h)
                while True:
                    with tm.phase("forward"):
                        item = next(strips, None)
                    if item is None:
                        break
                    s0, c_logits, f_logits = item
                    with tm.phase("decode"):
                        # in strips of rows that stay in the CPU cache: 2.5x faster than
                        # decoding the whole core at once, and the same result
                        n_rows = c_logits.shape[-2]  # of this strip
                        for r0 in range(0, n_rows, DECODE_ROWS):
                            r1 = min(n_rows, r0 + DECODE_ROWS)
                            sl = (slice(None), slice(None), slice(r0, r1), slice(0, tw))
                            cl = c_logits[sl].float() + self.coarse_bias
                            fl = f_logits[sl].float() + self.fine_bias
                            pct = None
                            if probs is None:
                                c_idx, f_idx, p = decode(cl, fl, self.index)
                            else:
                                c_idx, f_idx, p, pr = decode_with_probabilities(cl, fl, self.index)
                                pct = pr.mul_(100).round_().to(torch.uint8)
                            for k, (_, cw) in enumerate(batch):
                                rows = slice(cw.row_off + s0 + r0, cw.row_off + s0 + r1)
                                cols = slice(cw.col_off, cw.col_end)
                                coarse[rows, cols] = c_idx[k]
                                fine[rows, cols] = f_idx[k]
                                conf[rows, cols] = p[k]
                                if probs is not None and pct is not None:
                                    probs[:, rows, cols] = pct[k]
                    del c_logits, f_logits, item
            finally:
                self._compute.release()
            after_network_pass()
        with tm.phase("decode"):
            coarse_code = self.coarse_codes[coarse[: block.height, : block.width]]
            fine_code = self.fine_codes[fine[: block.height, : block.width]]  # -1 -> nodata
            conf100 = (conf[: block.height, : block.width] * 100).round().clamp(1, 100)
            out[0] = coarse_code.cpu().numpy()
            out[1] = fine_code.cpu().numpy()
            out[2] = conf100.to(torch.uint8).cpu().numpy()
            out[:, ~core_valid] = nodata
            if probabilities is not None and probs is not None:
                probabilities[:] = probs[:, : block.height, : block.width].cpu().numpy()
                probabilities[:, ~core_valid] = PROBABILITY_NODATA
        return out


#: Block side (rounded up to whole tiles) in which :func:`predict_blocks` labels an
#: in-memory scene: the normalised input and the network's outputs are a block's, not
#: the scene's (a 6000² scene scored whole at the end of training needed 2.7 GB more).
ARRAY_BLOCK = 2048


def predict_blocks(
    predictor: Predictor,
    image: np.ndarray,
    valid: np.ndarray,
    *,
    tile_size: int,
    halo: int,
    block_size: int = ARRAY_BLOCK,
    probabilities: np.ndarray | None = None,
    normalization: Normalization | None = None,
) -> Iterator[tuple[Window, np.ndarray]]:
    """Label an in-memory scene block by block, exactly as ``geoseg predict`` would.

    The tiles are those of ``geoseg predict`` whatever ``block_size`` (see
    :class:`geoseg.tiles.TileGrid`), and a block's padding beyond the scene is the
    scene's mirror image, as in :func:`geoseg.raster.read_window`, so the labels do not
    depend on the block size.

    Parameters
    ----------
    predictor : Predictor
        The loaded model.
    image : numpy.ndarray
        ``(bands, H, W)`` raw band values.
    valid : numpy.ndarray
        ``(H, W)`` valid pixels.
    tile_size, halo : int
        Tiling (multiples of the model's output stride).
    block_size : int
        Block side in pixels (rounded up to whole tiles).
    probabilities : numpy.ndarray, optional
        ``(n_coarse + n_fine, H, W)`` uint8, filled block by block with each class's
        probability in percent (see :meth:`Predictor.predict_block`).
    normalization : Normalization, optional
        Band statistics instead of the bundle's (see :meth:`Predictor.predict_block`).

    Yields
    ------
    (Window, numpy.ndarray)
        Each block's core window and its ``(3, h, w)`` coarse code, fine code and
        confidence (see :meth:`Predictor.predict_block`).
    """
    height, width = valid.shape
    grid = TileGrid.create(
        height,
        width,
        tile_size=tile_size,
        halo=halo,
        block_size=block_size,
        stride=predictor.meta.output_stride,
    )
    for block in grid.blocks():
        win = grid.input_window(block)
        rows = reflect_index(np.arange(win.row_off, win.row_end), height)
        cols = reflect_index(np.arange(win.col_off, win.col_end), width)
        data = image[:, rows[:, None], cols[None, :]]
        probs = None if probabilities is None else probabilities[(slice(None), *block.slices())]
        yield (
            block,
            predictor.predict_block(
                data,
                valid[rows[:, None], cols[None, :]],
                grid,
                block,
                probabilities=probs,
                normalization=normalization,
            ),
        )


def predict_array(
    predictor: Predictor,
    image: np.ndarray,
    valid: np.ndarray,
    *,
    tile_size: int,
    halo: int,
    block_size: int = ARRAY_BLOCK,
    probabilities: np.ndarray | None = None,
    normalization: Normalization | None = None,
) -> np.ndarray:
    """Label an in-memory scene with tiled inference, exactly as ``geoseg predict`` would.

    See :func:`predict_blocks` (the same arguments); the blocks' labels are put together.

    Returns
    -------
    numpy.ndarray
        ``(3, H, W)`` coarse code, fine code, confidence.
    """
    out: np.ndarray | None = None
    for block, labels in predict_blocks(
        predictor,
        image,
        valid,
        tile_size=tile_size,
        halo=halo,
        block_size=block_size,
        probabilities=probabilities,
        normalization=normalization,
    ):
        if out is None:
            out = np.empty((3, *valid.shape), dtype=labels.dtype)
        out[(slice(None), *block.slices())] = labels
    assert out is not None  # a scene has at least one block
    return out


_CACHE: dict[tuple[object, ...], Predictor] = {}


def _check_bundle_id(path: str, bundle_id: str) -> None:
    """Raise where the bundle at ``path`` is no longer the one whose hash is ``bundle_id``."""
    try:
        now = bundle_hash(path)
    except OSError:
        return  # missing or unreadable: Predictor.from_bundle says so in its words
    if now != bundle_id:
        raise BundleError(
            f"{path}: the bundle changed after it was loaded (SHA-256 {bundle_id[:12]}..., "
            f"now {now[:12]}...): load it again (api.load_model) or rerun, so that every "
            "process uses the same model"
        )


_CACHE_LOCK = threading.Lock()


def cached_predictor(
    path: str,
    *,
    device: str,
    batch_size: int,
    precision: Precision = "fp32",
    channels_last: bool | None = None,
    tta: bool = False,
    bundle_id: str | None = None,
    verified: bool = False,
) -> Predictor:
    """One :class:`Predictor` per process, keyed by the bundle's hash and the settings.

    Workers call this inside their tasks, so the model is loaded once per worker
    process and never travels inside the task graph. ``bundle_id`` is the bundle's
    SHA-256 computed once by the client (:func:`geoseg.bundle.bundle_hash`); without
    it the weights file's size and mtime identify the bundle. Where a process loads the
    bundle under a ``bundle_id`` it did not compute (``verified`` false), the files are
    hashed first: a bundle replaced since (``geoseg train --overwrite``) is an error,
    not other labels under the same name.

    Raises
    ------
    BundleError
        The bundle is missing or broken, or is not the one ``bundle_id`` names.
    """
    if bundle_id is None:
        stat = (Path(path) / "weights.safetensors").stat()
        bundle_id = f"{path}:{stat.st_mtime_ns}:{stat.st_size}"
        verified = True
    key = (bundle_id, device, batch_size, precision, channels_last, tta)
    with _CACHE_LOCK:
        pred = _CACHE.get(key)
        if pred is None:
            if not verified:
                _check_bundle_id(path, bundle_id)
            pred = Predictor.from_bundle(
                path,
                device=device,
                batch_size=batch_size,
                precision=precision,
                channels_last=channels_last,
                tta=tta,
            )
            _CACHE[key] = pred
    return pred
