"""One block in, labels out: normalise, run the network on batched tiles, decode, crop.

:class:`Predictor` holds a loaded bundle on a device and turns a block's input array
(core plus halo, already padded at scene edges) into the three output bands of the
label raster: coarse code, fine code and confidence (0-100), with the taxonomy's
nodata value where the input is invalid.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from geoseg.bundle import BundleMeta, load_bundle
from geoseg.devices import resolve_device
from geoseg.hierarchy import HierarchyIndex, decode
from geoseg.model import HierarchicalSegmenter
from geoseg.tiles import TileGrid, Window

log = logging.getLogger(__name__)


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
        Tiles per forward pass.
    """

    def __init__(
        self,
        meta: BundleMeta,
        model: HierarchicalSegmenter,
        *,
        device: torch.device,
        batch_size: int = 4,
    ) -> None:
        self.meta = meta
        self.model = model.to(device).eval()
        self.device = device
        self.batch_size = batch_size
        self.index = HierarchyIndex.from_taxonomy(meta.taxonomy).to(device)
        tax = meta.taxonomy
        self.coarse_codes = torch.as_tensor(tax.coarse_codes, device=device)
        self.fine_codes = torch.as_tensor(np.append(tax.fine_codes, tax.nodata), device=device)
        self.dtype = np.dtype(tax.dtype)
        self.timings = Timings()

    @classmethod
    def from_bundle(cls, path: str, *, device: str = "auto", batch_size: int = 4) -> Predictor:
        """Load a bundle from disk."""
        dev = resolve_device(device)
        meta, model = load_bundle(path, device=str(dev))
        return cls(meta, model, device=dev, batch_size=batch_size)

    @torch.inference_mode()
    def predict_block(
        self, data: np.ndarray, valid: np.ndarray, grid: TileGrid, block: Window
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

        Returns
        -------
        numpy.ndarray
            ``(3, block.height, block.width)``: coarse code, fine code, confidence 1-100;
            the taxonomy's nodata value in every band where the input is invalid.
        """
        h = grid.halo
        core_valid = valid[h : h + block.height, h : h + block.width]
        out = np.empty((3, block.height, block.width), dtype=self.dtype)
        if not core_valid.any():
            out[:] = self.meta.taxonomy.nodata
            return out
        with self.timings.phase("normalize"):
            x = self.meta.normalization.apply(data, valid)
        ph, pw = grid.padded_core(block)
        coarse = torch.empty((ph, pw), dtype=torch.long, device=self.device)
        fine = torch.empty((ph, pw), dtype=torch.long, device=self.device)
        conf = torch.empty((ph, pw), dtype=torch.float32, device=self.device)
        tiles = grid.tiles(block)
        for start in range(0, len(tiles), self.batch_size):
            batch = tiles[start : start + self.batch_size]
            inputs = np.stack(
                [x[:, i.row_off : i.row_end, i.col_off : i.col_end] for i, _ in batch]
            )
            with self.timings.phase("forward"):
                xt = torch.from_numpy(inputs).to(self.device, non_blocking=True)
                c_logits, f_logits = self.model(xt)
            with self.timings.phase("decode"):
                c_idx, f_idx, p = decode(c_logits, f_logits, self.index)
                for k, (_, core) in enumerate(batch):
                    rows, cols = core.slices()
                    sl = (slice(h, h + core.height), slice(h, h + core.width))
                    coarse[rows, cols] = c_idx[k][sl]
                    fine[rows, cols] = f_idx[k][sl]
                    conf[rows, cols] = p[k][sl]
        with self.timings.phase("decode"):
            coarse_code = self.coarse_codes[coarse[: block.height, : block.width]]
            fine_code = self.fine_codes[fine[: block.height, : block.width]]  # -1 -> nodata
            conf100 = (conf[: block.height, : block.width] * 100).round().clamp(1, 100)
            out[0] = coarse_code.cpu().numpy()
            out[1] = fine_code.cpu().numpy()
            out[2] = conf100.to(torch.uint8).cpu().numpy()
            out[:, ~core_valid] = self.meta.taxonomy.nodata
        return out


_CACHE: dict[tuple[str, int, int, str, int], Predictor] = {}


def cached_predictor(path: str, *, device: str, batch_size: int) -> Predictor:
    """One :class:`Predictor` per process, keyed by bundle content hash and device.

    Workers call this inside their tasks, so the model is loaded once per worker
    process and never travels inside the task graph.
    """
    stat = (Path(path) / "weights.safetensors").stat()
    key = (path, stat.st_mtime_ns, stat.st_size, device, batch_size)
    pred = _CACHE.get(key)
    if pred is None:
        pred = Predictor.from_bundle(path, device=device, batch_size=batch_size)
        _CACHE[key] = pred
    return pred
