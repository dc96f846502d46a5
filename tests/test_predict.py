import json
import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio

from geoseg.bundle import read_meta
from geoseg.infer import InferOptions
from geoseg.workflow import run_predict

from .conftest import ZION_BUNDLE, shared_file


def _check_outputs(scene: Path, out: Path, bundle: Path, *, min_polygons: int = 1) -> None:
    tax = read_meta(bundle).taxonomy
    with rasterio.open(scene) as src, rasterio.open(out / "labels.tif") as lab:
        assert lab.crs == src.crs
        assert lab.transform == src.transform
        assert (lab.width, lab.height, lab.count) == (src.width, src.height, 3)
        assert lab.profile["tiled"] and lab.profile.get("compress") == "deflate"
        assert lab.overviews(1) or max(lab.width, lab.height) <= 512
        assert lab.colormap(1)[tax.coarse[0].code][:3] == tax.coarse[0].rgb
        coarse, fine, conf = lab.read()
        src_valid = src.dataset_mask() > 0
        nodata = tax.nodata
    valid = coarse != nodata
    # nodata exactly where the input is nodata
    assert np.array_equal(valid, src_valid)
    assert (fine[~valid] == nodata).all() and (conf[~valid] == nodata).all()
    # the hierarchy holds at every pixel
    lut = tax.fine_to_coarse_code_lut(65536)
    assert np.array_equal(lut[fine[valid]], coarse[valid])
    assert conf[valid].min() >= 1 and conf[valid].max() <= 100
    # polygons: scene CRS, both levels, class areas equal raster class areas
    gdf = gpd.read_file(out / "landcover.gpkg", layer="landcover")
    coarse_layer = gpd.read_file(out / "landcover.gpkg", layer="coarse")
    # the coarse layer is the exact dissolve of the fine polygons
    assert coarse_layer.is_valid.all()
    for code in coarse_layer.coarse_code.unique():
        a = coarse_layer.loc[coarse_layer.coarse_code == code].union_all()
        b = gdf.loc[gdf.coarse_code == code].union_all()
        assert a.symmetric_difference(b).area == pytest.approx(0, abs=1e-6)
    import sqlite3

    with sqlite3.connect(out / "landcover.gpkg") as con:
        styled = {r[0] for r in con.execute("SELECT f_table_name FROM layer_styles")}
    assert styled == {"landcover", "coarse"}
    assert gdf.crs == gpd.GeoSeries(crs=rasterio.open(scene).crs).crs
    assert list(gdf.columns[:5]) == [
        "coarse_code",
        "coarse_name",
        "fine_code",
        "fine_name",
        "area_m2",
    ]
    assert len(gdf) >= min_polygons
    assert gdf.is_valid.all()
    px = abs(lab.transform.a * lab.transform.e)
    for code in np.unique(fine[valid]):
        assert gdf.loc[gdf.fine_code == code, "area_m2"].sum() == pytest.approx(
            (fine == code).sum() * px
        )
    for code in np.unique(coarse[valid]):
        assert gdf.loc[gdf.coarse_code == code, "area_m2"].sum() == pytest.approx(
            (coarse == code).sum() * px
        )
    run = json.loads((out / "run.json").read_text())
    assert run["input"]["path"] == str(scene)
    assert {"timings_s", "area_per_class", "parameters", "bundle"} <= run.keys()
    # every second of the run is in a phase (the start-up too: "prepare")
    t = run["timings_s"]
    assert t["prepare"] > 0
    phases = sum(v for k, v in t.items() if k != "total")
    # (what lies between phases, such as merging the blocks' results, is small)
    assert 0.95 * t["total"] - 0.2 <= phases <= t["total"] + 0.01, t
    total = sum(c["pixels"] for c in run["area_per_class"]["coarse"])
    assert total == int(valid.sum())
    assert (out / "quicklook.png").stat().st_size > 1000
    hidden = [p.name for p in out.glob(".*")]
    assert hidden == [".geoseg-output"], f"temporary files left in the output: {hidden}"


@pytest.mark.parametrize("scheduler", ["sync", "threads"])
def test_predict_tiny_end_to_end(tiny_scene, tiny_bundle, tmp_path, scheduler):
    out = tmp_path / "out"
    run = run_predict(
        tiny_scene,
        tiny_bundle,
        out,
        scheduler=scheduler,
        formats=("gpkg", "shp", "parquet"),
        options=InferOptions(block_size=64),
    )
    _check_outputs(tiny_scene, out, tiny_bundle)
    # 150 = 64 + 86 and 200 = 64 + 64 + 72 px: rests under half a tile widen the last blocks
    assert run["parameters"]["blocks"] == 2 * 3
    # what 'auto' resolved to, and the polygon settings, are in run.json
    import torch

    from geoseg.devices import resolve_precision

    want = resolve_precision(InferOptions().precision, torch.device("cpu"))
    assert run["parameters"]["ran_on"] == [f"cpu {want}"]
    assert run["parameters"]["vector"]["mmu"] == 0 and run["parameters"]["vector"]["connectivity"]
    assert run["input"]["mtime"] == pytest.approx(Path(tiny_scene).stat().st_mtime)
    shp = gpd.read_file(out / "landcover.shp")
    assert {"c_code", "c_name", "f_code", "f_name", "area_m2"} <= set(shp.columns)
    assert len(shp) == len(gpd.read_parquet(out / "landcover.parquet"))


def test_block_size_does_not_change_labels(tiny_scene, tiny_bundle, tmp_path):
    outs = []
    for bs in (64, 128, 4096):
        out = tmp_path / f"b{bs}"
        run_predict(
            tiny_scene,
            tiny_bundle,
            out,
            scheduler="sync",
            vector=False,
            options=InferOptions(block_size=bs),
        )
        with rasterio.open(out / "labels.tif") as src:
            outs.append(src.read())
    for other in outs[1:]:
        assert (outs[0] == other).all(axis=0).mean() >= 0.9999


def test_existing_output_is_kept(tiny_scene, tiny_bundle, tmp_path):
    from geoseg.errors import OutputExistsError

    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        run_predict(tiny_scene, tiny_bundle, out, vector=False)
    assert (out / "keep.txt").read_text() == "mine"
    # --overwrite replaces an output of geoseg, never a folder of other files
    with pytest.raises(OutputExistsError, match="geoseg did not write it"):
        run_predict(tiny_scene, tiny_bundle, out, vector=False, overwrite=True)
    assert (out / "keep.txt").read_text() == "mine"
    # nor a file the user added to an output folder (the marker lists geoseg's files)
    out2 = tmp_path / "out2"
    run_predict(tiny_scene, tiny_bundle, out2, vector=False)
    (out2 / "notes.txt").write_text("left by the user in an output folder")
    (out2 / "sub").mkdir()
    (out2 / "sub" / "truth.tif").write_text("the user's")
    (out2 / "quicklook.png.aux.xml").write_text("<PAMDataset/>")  # a GIS viewer's: goes too
    (out2 / "labels.aux").write_text("GDAL's")  # beside the stem
    (out2 / ".DS_Store").write_bytes(b"Finder's")
    with pytest.raises(OutputExistsError, match=r"did not write \(notes.txt, sub/truth.tif\)"):
        run_predict(tiny_scene, tiny_bundle, out2, vector=False, overwrite=True)
    assert (out2 / "notes.txt").exists() and (out2 / "sub" / "truth.tif").exists()
    (out2 / "notes.txt").unlink()
    shutil.rmtree(out2 / "sub")
    run_predict(tiny_scene, tiny_bundle, out2, vector=False, overwrite=True)
    assert (out2 / "labels.tif").exists() and not (out2 / "quicklook.png.aux.xml").exists()
    # an earlier version's output (its marker lists nothing) is replaced as it was
    (out2 / ".geoseg-output").write_text("")
    (out2 / "extra.txt").write_text("cannot be told from geoseg's own files")
    run_predict(tiny_scene, tiny_bundle, out2, vector=False, overwrite=True)
    assert not (out2 / "extra.txt").exists() and (out2 / "labels.tif").exists()


def test_predict_real_zion_with_committed_bundle(zion_prediction):
    scene = shared_file("zion/landsat8_b2345.tif")
    out = zion_prediction
    _check_outputs(scene, out, ZION_BUNDLE, min_polygons=101)
    with rasterio.open(out / "labels.tif") as lab:
        assert lab.crs.to_epsg() == 32612


def test_local_cluster_matches_threads(tiny_scene, tiny_bundle, tmp_path):
    outs = []
    for sched in ("threads", "local"):
        out = tmp_path / sched
        run_predict(
            tiny_scene,
            tiny_bundle,
            out,
            scheduler=sched,
            workers=2,
            vector=False,
            options=InferOptions(block_size=64),
        )
        with rasterio.open(out / "labels.tif") as src:
            outs.append(src.read())
    assert (outs[0] == outs[1]).all(axis=0).mean() >= 0.9999


def test_halo_calibration_picks_the_smallest_seamless_halo(tiny_scene, tiny_bundle):
    from geoseg.calibrate import calibrate_halo, label_agreement
    from geoseg.predict import Predictor, predict_array
    from geoseg.raster import read_window

    pred = Predictor.from_bundle(str(tiny_bundle), device="cpu")
    image, valid = read_window(str(tiny_scene), 0, 0, 150, 200)
    cal = calibrate_halo(pred, image, valid, tile_size=32, max_halo=64, target=0.999)
    stride = pred.meta.output_stride
    assert cal.halo % stride == 0 and cal.halo in cal.agreement
    assert cal.agreement[cal.halo] >= 0.999 or cal.halo == 64
    assert all(v < 0.999 for h, v in cal.agreement.items() if h < cal.halo)
    # re-measure the chosen halo independently
    whole = predict_array(pred, image, valid, tile_size=208, halo=64)
    tiled = predict_array(pred, image, valid, tile_size=32, halo=cal.halo)
    assert label_agreement(tiled, whole, valid) == pytest.approx(cal.agreement[cal.halo])


def test_resume_reuses_finished_blocks(tiny_scene, tiny_bundle, tmp_path, monkeypatch):
    import geoseg.infer as infer
    from geoseg.errors import OutputExistsError

    opts = InferOptions(block_size=64)
    ref = tmp_path / "ref"
    run_predict(tiny_scene, tiny_bundle, ref, scheduler="sync", vector=False, options=opts)
    real_write = infer.write_block
    calls = {"n": 0}

    def dies_after_five(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt("worker lost")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(infer, "write_block", dies_after_five)
    out = tmp_path / "out"
    # without --resume a failed run leaves nothing behind
    with pytest.raises(KeyboardInterrupt):
        run_predict(tiny_scene, tiny_bundle, out, scheduler="sync", vector=False, options=opts)
    assert not out.exists() and not list(tmp_path.glob(".out*"))
    calls["n"] = 0
    with pytest.raises(KeyboardInterrupt):
        run_predict(
            tiny_scene, tiny_bundle, out, scheduler="sync", vector=False, options=opts, resume=True
        )
    assert not out.exists() and len(list(tmp_path.glob(".out.partial-*/blocks/*.npy"))) == 5
    monkeypatch.setattr(infer, "write_block", real_write)
    # an interrupted run with other settings: superseded, removed with this run's work
    (tmp_path / ".out.partial-0123456789abcdef" / "blocks").mkdir(parents=True)
    run = run_predict(
        tiny_scene, tiny_bundle, out, scheduler="sync", vector=False, options=opts, resume=True
    )
    assert run["parameters"]["blocks_resumed"] == 5
    assert not list(tmp_path.glob(".out*"))
    with rasterio.open(ref / "labels.tif") as a, rasterio.open(out / "labels.tif") as b:
        assert np.array_equal(a.read(), b.read())
    # --resume on the finished output: kept as it is (as batch --resume keeps a scene)
    mtime = (out / "labels.tif").stat().st_mtime_ns
    again = run_predict(
        tiny_scene, tiny_bundle, out, scheduler="sync", vector=False, options=opts, resume=True
    )
    assert again == {**run, "kept": True} and (out / "labels.tif").stat().st_mtime_ns == mtime
    other_grid = InferOptions(block_size=64, halo=0)  # other labels: not that output any more
    with pytest.raises(OutputExistsError):
        run_predict(
            tiny_scene,
            tiny_bundle,
            out,
            scheduler="sync",
            vector=False,
            options=other_grid,
            resume=True,
        )
    with pytest.raises(OutputExistsError):  # other settings: not that output any more
        run_predict(tiny_scene, tiny_bundle, out, scheduler="sync", options=opts, resume=True)


def test_shared_predictor_is_thread_safe_and_strip_decoding_is_exact(
    tiny_scene, tiny_bundle, monkeypatch
):
    """Threads sharing one predictor (as the threaded scheduler does) get exactly the
    sequential labels; decoding in row strips equals decoding whole tile cores, also
    with strips that do not divide the tiles and tiles of several shapes."""
    from concurrent.futures import ThreadPoolExecutor

    import geoseg.predict as predict
    from geoseg.raster import open_scene, read_window
    from geoseg.tiles import TileGrid

    pred = predict.Predictor.from_bundle(str(tiny_bundle), device="cpu")
    s = open_scene(tiny_scene)
    stride = pred.meta.output_stride
    grid = TileGrid.create(
        s.height, s.width, tile_size=6 * stride, halo=2 * stride, block_size=12 * stride,
        stride=stride,
    )  # fmt: skip
    blocks = list(grid.blocks())
    assert len(blocks) > 2

    def run(block):
        w = grid.input_window(block)
        data, valid = read_window(s.path, w.row_off, w.col_off, w.height, w.width)
        return pred.predict_block(data, valid, grid, block)

    sequential = [run(b) for b in blocks]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(run, blocks))
    assert all(np.array_equal(a, b) for a, b in zip(sequential, threaded, strict=True))
    monkeypatch.setattr(predict, "DECODE_ROWS", 5)
    strips = [run(b) for b in blocks]
    monkeypatch.setattr(predict, "DECODE_ROWS", 100_000)
    whole = [run(b) for b in blocks]
    assert all(np.array_equal(a, b) for a, b in zip(strips, whole, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(sequential, whole, strict=True))


def test_dihedral_transforms_are_the_8_symmetries_and_invert():
    import torch

    from geoseg.predict import DIHEDRAL, dihedral, undo_dihedral

    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    seen = set()
    for k in range(len(DIHEDRAL)):
        y = dihedral(x, k)
        assert torch.equal(undo_dihedral(y, k), x)
        seen.add((tuple(y.shape), tuple(y[1, 2].flatten().tolist())))
    assert len(seen) == 8


def test_tta_makes_the_labels_independent_of_orientation(tiny_bundle, tmp_path):
    """With --tta, rotating or mirroring a tile rotates or mirrors its logits; without, not."""
    import torch

    from geoseg.predict import Predictor

    torch.manual_seed(0)
    x = torch.randn(1, 4, 64, 96)
    for tta in (False, True):
        pred = Predictor.from_bundle(str(tiny_bundle), device="cpu", precision="fp32", tta=tta)
        c, f = pred.forward(x)
        for turn in (
            lambda t: torch.rot90(t, 1, dims=(-2, -1)),
            lambda t: t.transpose(-2, -1),
            lambda t: t.flip(-1),
        ):
            ct, ft = pred.forward(turn(x))
            equivariant = torch.allclose(turn(c), ct, atol=1e-4) and torch.allclose(
                turn(f), ft, atol=1e-4
            )
            assert equivariant == tta


def test_trimmed_predictor_forward_is_the_core_with_and_without_tta(tiny_bundle):
    """``Predictor.forward(x, trim=halo)`` (what predict runs) gives the untrimmed
    logits' core, also when they are averaged over the 8 tile symmetries."""
    import torch

    from geoseg.model import crop
    from geoseg.predict import Predictor

    torch.manual_seed(0)
    for tta in (False, True):
        pred = Predictor.from_bundle(str(tiny_bundle), device="cpu", precision="fp32", tta=tta)
        s = pred.meta.output_stride
        x = torch.randn(2, 4, 4 * s, 6 * s)
        whole = pred.forward(x)
        part = pred.forward(x, trim=s)
        for a, b in zip(whole, part, strict=True):
            assert b.shape[-2:] == (2 * s, 4 * s)
            assert torch.allclose(crop(a, s), b, atol=1e-5)


def test_prediction_in_row_strips_gives_the_labels_of_whole_passes(
    tiny_scene, tiny_bundle, tmp_path, monkeypatch
):
    """On a CPU the full-resolution layers run in strips of rows (less memory): the
    labels are those of whole passes, for strips that do and do not divide a tile."""
    import torch

    from geoseg import predict
    from geoseg.predict import Predictor

    pred = Predictor.from_bundle(str(tiny_bundle), device="cpu", precision="fp32")
    s = pred.meta.output_stride
    x = torch.randn(2, 4, 6 * s, 5 * s)
    strips = list(pred.logit_strips(x, trim=s))
    assert len(strips) == -(-4 * s // predict.STRIP_ROWS)
    labels = {}
    real = Predictor.logit_strips
    for rows in (10_000, 7, 16):  # one strip per tile, then several
        monkeypatch.setattr(predict, "STRIP_ROWS", rows)
        monkeypatch.setattr(predict, "_CACHE", {})
        seen: list[tuple[int, int]] = []  # (tiles in the batch, strips)

        def counted(self, x, trim=0, seen=seen):
            n = 0
            for item in real(self, x, trim):
                n += 1
                yield item
            seen.append((x.shape[0], n))

        monkeypatch.setattr(Predictor, "logit_strips", counted)
        out = tmp_path / f"r{rows}"
        run_predict(
            tiny_scene, tiny_bundle, out, vector=False, scheduler="sync",
            options=InferOptions(tile_size=64, precision="fp32", batch_size=3, device="cpu"),
        )  # fmt: skip
        with rasterio.open(out / "labels.tif") as src:
            labels[rows] = src.read()
        if rows < 64:  # several tiles per batch, several strips per pass
            assert any(b > 1 and n > 1 for b, n in seen), seen
    assert np.array_equal(labels[7], labels[10_000])
    assert np.array_equal(labels[16], labels[10_000])


def test_predict_cli_tta_is_recorded_and_changes_labels(tiny_scene, tiny_bundle, tmp_path):
    from click.testing import CliRunner

    from geoseg.cli import cli

    outs = []
    for flag in ([], ["--tta"]):
        out = tmp_path / ("tta" if flag else "plain")
        r = CliRunner().invoke(
            cli,
            [
                *("predict", str(tiny_scene), "--model", str(tiny_bundle), "--out", str(out)),
                *("--no-vector", "--precision", "fp32", *flag),
            ],
        )
        assert r.exit_code == 0, r.output
        assert json.loads((out / "run.json").read_text())["parameters"]["tta"] is bool(flag)
        with rasterio.open(out / "labels.tif") as src:
            outs.append(src.read(2))
    valid = outs[0] != 255
    assert (outs[0][valid] != outs[1][valid]).any()


def test_class_areas_follow_the_latitude_in_geographic_coordinates(tmp_path, tiny_bundle):
    """run.json's area per class in EPSG:4326, 60°N to 50°N: each pixel at its own area."""
    from pyproj import Geod
    from rasterio.transform import from_origin

    from .conftest import write_raster

    rng = np.random.default_rng(0)
    h, w = 256, 64
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack(
        [np.sin(xx / 7 + b) + np.cos(yy / 11 - b) + yy / h * (b - 1.5) for b in range(4)]
    )
    data = (5000 + 1500 * base + rng.normal(0, 100, base.shape)).astype(np.uint16)
    scene = write_raster(
        tmp_path / "geo.tif",
        data,
        crs="EPSG:4326",
        nodata=65535,
        transform=from_origin(10.0, 60.0, 0.04, 0.04),
        names=("B2", "B3", "B4", "B5"),
    )
    run = run_predict(scene, tiny_bundle, tmp_path / "o", vector=False, scheduler="sync")
    with rasterio.open(tmp_path / "o" / "labels.tif") as src:
        coarse = src.read(1)
    geod = Geod(ellps="WGS84")
    exact: dict[int, float] = {}
    for r in range(h):
        top, bottom = 60 - 0.04 * r, 60 - 0.04 * (r + 1)
        ring = geod.polygon_area_perimeter([10, 10.04, 10.04, 10], [bottom, bottom, top, top])
        for code, n in zip(*np.unique(coarse[r], return_counts=True), strict=True):
            exact[int(code)] = exact.get(int(code), 0.0) + n * abs(ring[0])
    for entry in run["area_per_class"]["coarse"]:
        assert entry["area_m2"] == pytest.approx(exact[entry["code"]], rel=1e-5), entry


def test_in_process_run_builds_its_network_before_any_block(
    tiny_scene, tiny_bundle, tmp_path, monkeypatch
):
    """The predictor is built before the output's partial folder exists, and timed apart."""
    import geoseg.predict as predict

    real = predict.Predictor.from_bundle
    seen: list[list[Path]] = []

    def watched(*args, **kwargs):
        seen.append(list(tmp_path.glob(".*partial-*")))
        return real(*args, **kwargs)

    monkeypatch.setattr(predict.Predictor, "from_bundle", watched)
    monkeypatch.setattr(predict, "_CACHE", {})
    for scheduler in ("threads", "sync"):
        out = tmp_path / scheduler
        run = run_predict(tiny_scene, tiny_bundle, out, scheduler=scheduler, vector=False)
        assert run["timings_s"]["load"] >= 0
    # built once (the second run hits the cache), while no partial folder existed
    assert seen == [[]]


def test_a_bundle_that_does_not_load_fails_before_the_run_starts(tiny_scene, tiny_bundle, tmp_path):
    from geoseg.errors import GeosegError

    broken = tmp_path / "broken-bundle"
    shutil.copytree(tiny_bundle, broken)
    (broken / "weights.safetensors").write_bytes(b"not a safetensors file")
    out = tmp_path / "out"
    with pytest.raises(GeosegError, match="broken-bundle"):
        run_predict(tiny_scene, broken, out, scheduler="threads", vector=False)
    assert not out.exists() and not list(tmp_path.glob(".out*"))


@pytest.mark.parametrize("pixel_skip", [0, 4])
def test_channels_last_network_keeps_its_layout_into_every_convolution(pixel_skip):
    """With channels-last on (the CPU default), no convolution of the heads may be fed
    a contiguous (NCHW) tensor: softmax returns one whatever its input, and the fine
    head's input (features and coarse probabilities concatenated) then had neither
    layout, so its first convolution reordered it every pass (234 instead of 158 ms on
    a 1024² tile, 3.8 instead of 0.8 s on a 2048² one)."""
    import torch

    from geoseg.model import ModelConfig, build_segmenter
    from geoseg.taxonomy import load_taxonomy

    from .conftest import NLCD_YAML

    cfg = ModelConfig(
        architecture="Unet", encoder="resnet18", encoder_depth=3,
        decoder_channels=(32, 16, 8), features=8, pixel_skip=pixel_skip,
    )  # fmt: skip
    model = build_segmenter(cfg, in_channels=4, taxonomy=load_taxonomy(NLCD_YAML)).eval()
    model = model.to(memory_format=torch.channels_last)
    layouts: dict[str, bool] = {}
    for name in ("fine_head.0", "coarse_head.2", "fine_head.3"):
        model.get_submodule(name).register_forward_pre_hook(
            lambda _m, args, name=name: layouts.__setitem__(
                name, args[0].is_contiguous(memory_format=torch.channels_last)
            )
        )
    x = torch.randn(1, 4, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        model(x)
    assert layouts == {"fine_head.0": True, "coarse_head.2": True, "fine_head.3": True}


def test_in_memory_scenes_are_labelled_block_by_block_as_predict_does(tiny_scene, tiny_bundle):
    """predict_array (training's test score, halo calibration) works in blocks so that a
    big scene's network outputs are never whole in memory: the labels are those of one
    whole block, and of geoseg predict's reader, whatever the block size; the mirror
    padding is np.pad's "reflect", also beyond one reflection."""
    from geoseg.predict import Predictor, predict_array, predict_blocks
    from geoseg.raster import open_scene, read_window
    from geoseg.tiles import reflect_index

    for length in (1, 2, 5, 13):
        idx = np.arange(-3 * length - 2, 4 * length + 2)
        pad = (3 * length + 2, 3 * length + 2)
        expected = np.pad(np.arange(length), pad, mode="reflect")[: idx.size]
        np.testing.assert_array_equal(np.arange(length)[reflect_index(idx, length)], expected)
    pred = Predictor.from_bundle(str(tiny_bundle), device="cpu")
    s = open_scene(tiny_scene)
    image, valid = read_window(s.path, 0, 0, s.height, s.width)
    whole = predict_array(pred, image, valid, tile_size=64, halo=16, block_size=4096)
    for block_size in (64, 128):
        parts = list(predict_blocks(pred, image, valid, tile_size=64, halo=16,
                                    block_size=block_size))  # fmt: skip
        assert len(parts) >= 2
        got = predict_array(pred, image, valid, tile_size=64, halo=16, block_size=block_size)
        np.testing.assert_array_equal(got, whole)


def test_adjacent_tiles_as_one_virtual_mosaic_give_the_whole_scene_s_labels(
    zion_prediction, tmp_path
):
    """Scenes delivered as adjacent tiles, listed in one GDAL VRT (what gdalbuildvrt
    writes), are labelled as one scene: the same labels as the unsplit image."""
    from rasterio.windows import Window

    scene = shared_file("zion/landsat8_b2345.tif")
    with rasterio.open(scene) as src:
        profile, t, h, w = src.profile, src.transform, src.height, src.width
        parts = [(0, 700), (700, h - 700)]  # two tiles, rows 0-699 and 700-end
        for i, (r0, n) in enumerate(parts):
            win = Window(0, r0, w, n)
            p = {**profile, "height": n, "width": w, "transform": src.window_transform(win)}
            with rasterio.open(tmp_path / f"tile{i}.tif", "w", **p) as dst:
                dst.write(src.read(window=win))
                dst.descriptions = src.descriptions
        crs = src.crs.to_wkt()
    bands = "".join(
        f'<VRTRasterBand dataType="UInt16" band="{b}"><NoDataValue>65535</NoDataValue>'
        + "".join(
            f'<SimpleSource><SourceFilename relativeToVRT="1">tile{i}.tif</SourceFilename>'
            f'<SourceBand>{b}</SourceBand><SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{n}"/>'
            f'<DstRect xOff="0" yOff="{r0}" xSize="{w}" ySize="{n}"/></SimpleSource>'
            for i, (r0, n) in enumerate(parts)
        )
        + "</VRTRasterBand>"
        for b in range(1, 5)
    )
    vrt = tmp_path / "mosaic.vrt"
    vrt.write_text(
        f'<VRTDataset rasterXSize="{w}" rasterYSize="{h}"><SRS>{crs}</SRS>'
        f"<GeoTransform>{t.c},{t.a},{t.b},{t.f},{t.d},{t.e}</GeoTransform>{bands}</VRTDataset>"
    )
    run_predict(vrt, ZION_BUNDLE, tmp_path / "out", vector=False)
    with (
        rasterio.open(tmp_path / "out" / "labels.tif") as a,
        rasterio.open(zion_prediction / "labels.tif") as b,
    ):
        assert np.array_equal(a.read(), b.read())


def test_a_resumed_run_with_every_block_done_builds_no_network(
    tiny_scene, tiny_bundle, tmp_path, monkeypatch
):
    import geoseg.workflow as workflow

    opts = InferOptions(block_size=64)
    real_assemble = workflow.assemble_labels

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(workflow, "assemble_labels", interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):  # every block done, the output not assembled
        run_predict(tiny_scene, tiny_bundle, out, scheduler="sync", vector=False, options=opts,
                    resume=True)  # fmt: skip
    monkeypatch.setattr(workflow, "assemble_labels", real_assemble)

    def no_network(*args, **kwargs):
        raise AssertionError("the network was built")

    monkeypatch.setattr(workflow, "load_predictor", no_network)
    run = run_predict(
        tiny_scene, tiny_bundle, out, scheduler="sync", vector=False, options=opts, resume=True
    )
    assert run["parameters"]["blocks_resumed"] == run["parameters"]["blocks"] > 1
    assert "load" not in run["timings_s"]


@pytest.mark.parametrize("scheduler", ["threads", "local"])
def test_probabilities_are_those_the_labels_were_chosen_from(
    tiny_scene, tiny_bundle, tmp_path, scheduler
):
    from click.testing import CliRunner

    from geoseg.cli import cli
    from geoseg.write import PROBABILITY_NODATA

    tax = read_meta(tiny_bundle).taxonomy
    ref = tmp_path / "ref"
    run_predict(tiny_scene, tiny_bundle, ref, vector=False, options=InferOptions(block_size=64))
    out = tmp_path / "out"
    args = ["predict", str(tiny_scene), "-m", str(tiny_bundle), "-o", str(out), "--no-vector"]
    args += ["--block-size", "64", "--scheduler", scheduler, "--workers", "2", "--probabilities"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    run = json.loads((out / "run.json").read_text())
    assert run["parameters"]["probabilities"] is True
    assert "probabilities.tif" in run["outputs"]
    with rasterio.open(ref / "labels.tif") as a, rasterio.open(out / "labels.tif") as b:
        labels = b.read()
        assert np.array_equal(a.read(), labels)  # the same labels as without
        assert b.units == (None, None, "percent")  # GDAL's unit type, as QGIS shows it
        assert b.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
    # codes, not colours, for readers other than GDAL (the COG driver wrote RGB)
    assert _tiff_photometric(out / "labels.tif") == 1  # MinIsBlack
    with rasterio.open(out / "probabilities.tif") as src:
        assert (src.count, src.dtypes[0], src.nodata) == (tax.n_coarse + tax.n_fine, "uint8", 255)
        assert set(src.units) == {"percent"}
        assert src.crs == rasterio.open(tiny_scene).crs
        assert src.descriptions[0] == f"coarse {tax.coarse[0].code} {tax.coarse[0].name}"
        assert src.tags(tax.n_coarse + 1)["LEVEL"] == "fine"
        assert src.tags(tax.n_coarse + 1)["CODE"] == str(tax.fine[0].code)
        p = src.read().astype(int)
    valid = labels[0] != tax.nodata
    assert valid.any() and (~valid).any()
    assert (p[:, ~valid] == PROBABILITY_NODATA).all() and (p[:, valid] <= 100).all()
    pc, pf = p[: tax.n_coarse, valid], p[tax.n_coarse :, valid]
    # each band rounded to a percent: sums within half a percent per band
    assert (np.abs(pc.sum(0) - 100) <= tax.n_coarse / 2).all()
    parent = np.asarray(tax.fine_parent_index)
    for k in range(tax.n_coarse):
        kids = parent == k
        if kids.any():
            assert (np.abs(pf[kids].sum(0) - pc[k]) <= (kids.sum() + 1) / 2).all()
    # the chosen leaf is the most probable one, and its probability is the confidence
    childless = np.asarray(tax.childless_coarse_index, int)
    leaves = np.concatenate([pf, pc[childless]])  # in the order of tax.leaves
    index = {("fine", f.code): i for i, f in enumerate(tax.fine)}
    index.update({("coarse", tax.coarse[k].code): tax.n_fine + i for i, k in enumerate(childless)})
    leaf = [
        index[("fine", f)] if f != tax.nodata else index[("coarse", c)]
        for c, f in zip(labels[0][valid], labels[1][valid], strict=True)
    ]
    chosen = leaves[leaf, np.arange(leaves.shape[1])]
    assert (chosen >= leaves.max(0) - 1).all()
    # class probabilities are no class codes: tools that read codes refuse them
    from geoseg.errors import RasterFormatError
    from geoseg.vectorize import vectorize

    probabilities = out / "probabilities.tif"
    with pytest.raises(RasterFormatError, match=r"a geoseg probabilities\.tif"):
        vectorize(probabilities)
    for args in (
        ["sample", str(probabilities), "--out", str(tmp_path / "s.gpkg")],
        ["evaluate", str(probabilities), "--coarse", str(ref / "labels.tif"), "--out",
         str(tmp_path / "e")],
        ["merge", str(probabilities), str(ref / "labels.tif"), "--out", str(tmp_path / "m")],
        ["evaluate", str(ref / "labels.tif"), "--coarse", str(probabilities), "--out",
         str(tmp_path / "t")],
    ):  # fmt: skip
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == 1 and "a geoseg probabilities.tif" in r.output, r.output
    r = CliRunner().invoke(cli, ["info", str(probabilities)])
    assert "geoseg class probabilities (percent, nodata 255)" in r.output
    assert (np.abs(chosen - labels[2][valid].astype(int)) <= 1).all()


def _tiff_photometric(path):
    """TIFF tag 262 (PhotometricInterpretation) of a classic TIFF's first IFD."""
    import struct

    head = path.read_bytes()[:65536]
    order = "<" if head[:2] == b"II" else ">"
    assert struct.unpack(order + "H", head[2:4])[0] == 42  # not a BigTIFF
    ifd = struct.unpack(order + "I", head[4:8])[0]
    for i in range(struct.unpack(order + "H", head[ifd : ifd + 2])[0]):
        tag, _, _, value = struct.unpack(order + "HHII", head[ifd + 2 + 12 * i : ifd + 14 + 12 * i])
        if tag == 262:
            return value & 0xFFFF if order == "<" else value >> 16
    return None
