"""End-to-end prediction throughput against the model's pure forward pass.

Runs ``geoseg predict --no-vector`` (``geoseg.workflow.run_predict``) at default
settings on a scene (timed from the first block to the finished COG, after the network
is built: ``model_load_s``), and in the same process times the bundle's network alone on the
same number of pixels: tiles of the default tile size with no halo (the strict
baseline: every halo pixel counts as overhead), in fp32 and in the default precision
and memory layout. Prints MPix/s, the ratios and the per-phase breakdown (read,
normalize, forward, decode, write; seconds summed over the block threads, plus ``wait``:
a thread waiting for the network while another thread's block is in it). The job is
then run ``--repeats`` more times in the same process (``end_to_end_warm_s``), each run
after a round of each bare forward, and each figure is the best of its rounds (all are
printed, ``rounds_s``): a first run also pays the network's one-time start-up, which a
batch of scenes pays once per worker process.

``--sweep`` also measures each speed option on the scene (precision, memory layout,
batch size, threads against Dask workers) with its label agreement against fp32.

    python benchmarks/throughput.py [--scene PATH | --size 3072] [--model models/zion-nlcd]
        [--sweep] [--device cpu] [--repeats 3]
"""

# ruff: noqa: E402 (the allocator is set up before numpy and torch start threads)
from __future__ import annotations

from geoseg.allocator import keep_freed_memory

keep_freed_memory()  # first, while this process has one thread, as the geoseg CLI does

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from synthetic import make_scene

from geoseg.calibrate import label_agreement
from geoseg.infer import InferOptions
from geoseg.predict import Predictor
from geoseg.workflow import run_predict

ROOT = Path(__file__).resolve().parents[1]
ZION = ROOT.parent / "shared" / "data" / "zion" / "landsat8_b2345.tif"


class PureForward:
    """Times the bare network on ``pixels`` pixels as ``side``² inputs, one round per call.

    Random input of the bundle's band count, ``inference_mode``, one warm-up pass when
    built; a round runs whole tiles, scaled to exactly ``pixels`` (a scene that is not a
    multiple of the tile is not charged for the part of a tile it does not have).
    """

    def __init__(
        self,
        model_dir: str,
        pixels: int,
        side: int,
        *,
        device: str,
        precision: str,
        channels_last: bool,
        batch: int = 1,
    ) -> None:
        self.pred = Predictor.from_bundle(
            model_dir,
            device=device,
            batch_size=batch,
            precision=precision,  # type: ignore[arg-type]
            channels_last=channels_last,
        )
        self.device = device
        self.passes = math.ceil(math.ceil(pixels / (side * side)) / batch)
        self.scale = pixels / (self.passes * batch * side * side)
        self.x = torch.randn(batch, self.pred.meta.band_count, side, side)
        with torch.inference_mode():
            self.pred.forward(self.x)  # warm-up

    def seconds(self) -> float:
        """One round: the seconds for ``pixels`` pixels."""
        with torch.inference_mode():
            t0 = time.perf_counter()
            for _ in range(self.passes):
                self.pred.forward(self.x)
            if self.device == "cuda":
                torch.cuda.synchronize()
            return (time.perf_counter() - t0) * self.scale


def predict_once(scene: str, model: str, out: Path, **kw: Any) -> tuple[dict[str, Any], Path]:
    """One ``run_predict`` without vectors; returns run.json and the labels path."""
    opts = kw.pop("options", InferOptions())
    run = run_predict(scene, model, out, vector=False, options=opts, overwrite=True, **kw)
    return run, out / "labels.tif"


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def sweep(scene: str, model: str, tmp: Path, device: str) -> list[dict[str, Any]]:
    """Every speed option on ``scene`` with its agreement against fp32 labels."""
    ref_run, ref_path = predict_once(
        scene,
        model,
        tmp / "fp32",
        options=InferOptions(precision="fp32", channels_last=False, device=device),
    )
    ref = _read(ref_path)
    valid = ref[0] != 255
    cores = os.cpu_count() or 1
    combos: list[tuple[str, dict[str, Any]]] = [
        ("fp32, NCHW", dict(options=InferOptions(precision="fp32", channels_last=False))),
        ("fp32, channels_last", dict(options=InferOptions(precision="fp32", channels_last=True))),
        ("bf16, NCHW", dict(options=InferOptions(precision="bf16", channels_last=False))),
        ("bf16, channels_last", dict(options=InferOptions(precision="bf16", channels_last=True))),
        ("bf16, CL, batch 1", dict(options=InferOptions(precision="bf16", batch_size=1))),
        ("bf16, CL, batch 8", dict(options=InferOptions(precision="bf16", batch_size=8))),
        (
            f"bf16, CL, 1 thread x {cores} torch threads",
            dict(workers=1, options=InferOptions(precision="bf16", torch_threads=cores)),
        ),
        (
            f"bf16, CL, local cluster {cores} x 1",
            dict(scheduler="local", workers=cores, options=InferOptions(precision="bf16")),
        ),
        ("bf16, CL, --tta (8 passes)", dict(options=InferOptions(precision="bf16", tta=True))),
    ]
    rows = []
    for i, (name, kw) in enumerate(combos):
        opts: InferOptions = kw["options"]
        kw["options"] = InferOptions(**{**opts.__dict__, "device": device})
        run, path = predict_once(scene, model, tmp / f"s{i}", **kw)
        secs = run["timings_s"]["blocks"] + run["timings_s"]["assemble"]
        rows.append(
            {
                "option": name,
                "mpix_s": round(run["input"]["width"] * run["input"]["height"] / 1e6 / secs, 3),
                "agreement_with_fp32": round(label_agreement(_read(path), ref, valid), 5),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    del ref_run
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scene", default=str(ZION))
    p.add_argument("--size", type=int, default=None, help="Use a synthetic scene of this size.")
    p.add_argument("--model", default=str(ROOT / "models" / "zion-nlcd"))
    p.add_argument("--scheduler", default="threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--sweep", action="store_true")
    p.add_argument(
        "--repeats", type=int, default=3, help="Rounds of bare forward and warm run (best kept)."
    )
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        scene = args.scene
        if args.size:
            scene = str(make_scene(tmp / f"synthetic{args.size}.tif", args.size))

        def job(k: int) -> dict[str, Any]:
            return predict_once(
                scene,
                args.model,
                tmp / f"out{k}",
                scheduler=args.scheduler,
                options=InferOptions(device=args.device),
            )[0]

        def e2e_s(r: dict[str, Any]) -> float:
            return r["timings_s"]["blocks"] + r["timings_s"]["assemble"]

        # The first run pays the network's one-time start-up (oneDNN builds its kernels
        # on the first pass, memory is first faulted in), which a batch of scenes pays
        # once per worker process. Then, ``--repeats`` times, the bare forward in fp32 and
        # in the default settings and a warm run, interleaved, each figure the best of its
        # rounds: on a shared machine noise only adds time, and interleaving spreads a
        # slow spell over all three instead of one.
        run = job(0)
        w, h = run["input"]["width"], run["input"]["height"]
        prm = run["parameters"]
        tile = prm["tile_size"]
        default_prec, default_cl = prm["precision"], prm["channels_last"]
        timers = {
            name: PureForward(
                args.model, w * h, tile, device=args.device, precision=prec, channels_last=cl
            )
            for name, prec, cl in (("fp32", "fp32", False), ("default", default_prec, default_cl))
        }
        rounds: dict[str, list[float]] = {"fp32": [], "default": [], "warm": []}
        warm = run
        for k in range(args.repeats):
            for name, timer in timers.items():
                rounds[name].append(timer.seconds())
            r = job(k + 1)
            rounds["warm"].append(e2e_s(r))
            if rounds["warm"][-1] == min(rounds["warm"]):
                warm = r
        e2e, e2e_warm = e2e_s(run), min(rounds["warm"])
        fwd32, fwd_default = min(rounds["fp32"]), min(rounds["default"])
        pred = timers["default"].pred
        mpix = w * h / 1e6
        result = {
            "scene": scene,
            "megapixels": round(mpix, 3),
            "tile_size": tile,
            "halo": prm["halo"],
            "precision": default_prec,
            "channels_last": default_cl,
            "model_load_s": run["timings_s"].get("load"),
            "end_to_end_s": round(e2e, 3),
            "end_to_end_mpix_s": round(mpix / e2e, 3),
            "pure_forward_fp32_s": round(fwd32, 3),
            "pure_forward_fp32_mpix_s": round(mpix / fwd32, 3),
            "ratio_end_to_end_over_fp32_forward": round(e2e / fwd32, 3),
            f"pure_forward_{default_prec}_s": round(fwd_default, 3),
            "fraction_of_default_forward_throughput": round(fwd_default / e2e, 3),
            "end_to_end_warm_s": round(e2e_warm, 3),
            "ratio_end_to_end_warm_over_fp32_forward": round(e2e_warm / fwd32, 3),
            "fraction_of_default_forward_throughput_warm": round(fwd_default / e2e_warm, 3),
            "phases_s": run["block_phases_s"],
            "phases_warm_s": warm["block_phases_s"],
            "rounds_s": {k: [round(v, 2) for v in vs] for k, vs in rounds.items()},
            "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "model": pred.meta.name,
        }
        print(json.dumps(result, indent=2), flush=True)
        if args.sweep:
            print(json.dumps({"sweep": sweep(scene, args.model, tmp, args.device)}, indent=2))


if __name__ == "__main__":
    main()
