import json
import os
import shutil
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from geoseg.cli import cli

from .conftest import shared_file, write_raster


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _assert_user_error(result, *needles):
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("geoseg: error: ")
    for n in needles:
        assert str(n) in lines[0]
    assert "Traceback" not in result.output


def test_not_a_raster(tiny_bundle, tmp_path):
    bad = tmp_path / "notes.tif"
    bad.write_text("this is not a GeoTIFF")
    out = tmp_path / "out"
    _assert_user_error(_run("predict", bad, "--model", tiny_bundle, "--out", out), bad, "GeoTIFF")
    assert not out.exists()


def test_missing_file(tiny_bundle, tmp_path):
    out = tmp_path / "out"
    _assert_user_error(
        _run("predict", tmp_path / "nope.tif", "--model", tiny_bundle, "--out", out),
        "nope.tif",
        "not found",
    )
    assert not out.exists()


def test_corrupt_geotiff(tiny_bundle, tmp_path):
    corrupt = shared_file("awkward/corrupt.tif")
    out = tmp_path / "out"
    _assert_user_error(
        _run("predict", corrupt, "--model", tiny_bundle, "--out", out), corrupt, "corrupt"
    )
    assert not out.exists()


def test_band_count_mismatch(tiny_bundle, tmp_path):
    scene = shared_file("awkward/RGB.byte.tif")
    out = tmp_path / "out"
    _assert_user_error(
        _run("predict", scene, "--model", tiny_bundle, "--out", out), scene, "3 bands", "expects 4"
    )
    assert not out.exists()


def test_an_image_without_crs_is_labelled_on_its_pixel_grid(tiny_bundle, tmp_path, caplog):
    """Chips as ML datasets ship them (no CRS, no geotransform) train, so they predict
    too: labels.tif on the image's pixel grid, polygons in pixel coordinates with a
    warning that says so (also in run.json); --dst-crs cannot reproject them."""
    import geopandas as gpd
    import numpy as np
    import rasterio
    from affine import Affine

    data = np.ones((4, 40, 40), np.uint16)
    data[:, :, 20:] = 900
    with warnings.catch_warnings():  # as ML chips come: no CRS, no geotransform
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        scene = write_raster(tmp_path / "nocrs.tif", data, crs=None, transform=Affine.identity())
    out = tmp_path / "out"
    r = _run("predict", scene, "--model", tiny_bundle, "--out", out)
    assert r.exit_code == 0, r.output
    with rasterio.open(out / "labels.tif") as src:
        assert src.crs is None and src.shape == (40, 40)
    polygons = gpd.read_file(out / "landcover.gpkg", layer="landcover")
    assert polygons.crs is None and polygons.total_bounds.tolist() == [0, 0, 40, 40]
    assert "in pixel coordinates (column, row)" in caplog.text
    run = json.loads((out / "run.json").read_text())
    assert any("pixel coordinates" in w for w in run["warnings"])
    out2 = tmp_path / "out2"
    _assert_user_error(
        _run("vectorize", out / "labels.tif", "--out", out2 / "p.gpkg", "--dst-crs", "EPSG:4326"),
        "has no CRS, so its polygons cannot be reprojected to EPSG:4326",
    )
    assert not out2.exists()


def test_output_exists(tiny_scene, tiny_bundle, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("x")
    _assert_user_error(
        _run("predict", tiny_scene, "--model", tiny_bundle, "--out", out), out, "--overwrite"
    )
    assert (out / "precious.txt").exists()


def test_bundle_without_json(tiny_scene, tmp_path):
    bundle = tmp_path / "empty-bundle"
    bundle.mkdir()
    out = tmp_path / "out"
    _assert_user_error(
        _run("predict", tiny_scene, "--model", bundle, "--out", out), bundle, "bundle.json"
    )
    assert not out.exists()


def test_bad_option_is_usage_error(tiny_scene, tiny_bundle, tmp_path):
    r = _run(
        "predict", tiny_scene, "--model", tiny_bundle, "--out", tmp_path / "o", "--device", "tpu"
    )
    assert r.exit_code == 2


def test_predict_cli_quiet_and_info(tiny_scene, tiny_bundle, tmp_path):
    out = tmp_path / "out"
    r = _run(
        "predict",
        tiny_scene,
        "--model",
        tiny_bundle,
        "--out",
        out,
        "--format",
        "gpkg,parquet",
        "-q",
        "--scheduler",
        "sync",
    )
    assert r.exit_code == 0, r.output
    assert r.output == ""
    assert (out / "landcover.parquet").exists()
    r = _run("info", tiny_bundle, "--json")
    assert json.loads(r.output)["bands"] == ["B2", "B3", "B4", "B5"]
    r = _run("info", tiny_scene)
    assert "EPSG:32612" in r.output


def test_vectorize_cli_on_labels(tiny_scene, tiny_bundle, tmp_path):
    out = tmp_path / "out"
    assert (
        _run(
            "predict", tiny_scene, "--model", tiny_bundle, "--out", out, "--no-vector", "-q"
        ).exit_code
        == 0
    )
    assert not (out / "landcover.gpkg").exists()
    r = _run("vectorize", out / "labels.tif", "--out", tmp_path / "poly.fgb", "-q")
    assert r.exit_code == 0, r.output
    r = _run("vectorize", out / "labels.tif", "--out", tmp_path / "poly.fgb")
    _assert_user_error(r, "poly.fgb", "--overwrite")
    r = _run("vectorize", out / "labels.tif", "--out", tmp_path / "poly.xyz")
    _assert_user_error(r, "poly.xyz", "unknown vector format")


def test_data_list():
    r = _run("data", "list")
    assert r.exit_code == 0 and r.output.startswith("zion\t")
    _assert_user_error(_run("data", "fetch", "atlantis"), "atlantis", "zion")


def test_unknown_scheduler(tiny_scene, tiny_bundle, tmp_path):
    r = _run(
        "predict", tiny_scene, "--model", tiny_bundle, "--out", tmp_path / "o", "--scheduler", "mpi"
    )
    _assert_user_error(r, "mpi", "tcp://")
    assert "processes" not in r.output
    # vectorize also runs its chunks in processes: its message says so
    r = _run("vectorize", tiny_scene, "--out", tmp_path / "p.gpkg", "--scheduler", "mpi")
    _assert_user_error(r, "use one of processes, sync, threads, local or tcp://")


def test_error_path_is_named(tmp_path: Path):
    r = _run("info", tmp_path / "missing.tif")
    _assert_user_error(r, "missing.tif")


def test_info_describes_label_maps_vector_files_and_what_predict_cannot_take(
    tmp_path, tiny_bundle, zion_prediction
):
    """Found by a blind user test: a label map said nothing of its classes, a rotated
    raster and a vector file were refused, a file of a bundle said 'pass a GeoTIFF'."""
    import geopandas as gpd
    import shapely

    r = _run("info", zion_prediction / "labels.tif")
    assert r.exit_code == 0, r.output
    assert "geoseg label map: taxonomy 'nlcd'" in r.output
    assert "  fine 41: Deciduous Forest (in Forest)" in r.output
    d = json.loads(_run("info", zion_prediction / "labels.tif", "--json").output)
    assert d["geoseg_labels"]["coarse"]["4"] == "Forest" and d["overviews"] >= 1
    rotated = shared_file("awkward/rotated.tif")
    r = _run("info", rotated)
    assert r.exit_code == 0, r.output
    assert "a rotated grid" in r.output and "gdalwarp -r near" in r.output
    assert f"rio warp {rotated} NORTH_UP.tif" in r.output  # what a pip install can run
    assert "no band has a name" in r.output
    _assert_user_error(_run("info", tiny_bundle / "bundle.json"), "bundle.json", "pass the bundle")
    gpkg = tmp_path / "aoi.gpkg"
    gpd.GeoDataFrame({"id": [1, 2]}, geometry=[shapely.box(0, 0, 1, 1)] * 2, crs=4326).to_file(
        gpkg, layer="aoi"
    )
    r = _run("info", gpkg)
    assert r.exit_code == 0, r.output
    assert "layer 'aoi': 2 Polygon features, CRS EPSG:4326, fields id" in r.output
    # GeoJSON of both polygons and multipolygons declares no type: the features name theirs
    mixed = [shapely.box(0, 0, 1, 1), shapely.MultiPolygon([shapely.box(2, 2, 3, 3)] * 1)]
    gpd.GeoDataFrame({"id": [1, 2]}, geometry=mixed, crs=4326).to_file(tmp_path / "m.geojson")
    r = _run("info", tmp_path / "m.geojson")
    assert "2 MultiPolygon/Polygon features" in r.output, r.output
    # GeoParquet is described from its own metadata: this GDAL has no Parquet driver
    gpd.read_file(gpkg).to_parquet(tmp_path / "aoi.parquet")
    r = _run("info", tmp_path / "aoi.parquet")
    assert r.exit_code == 0, r.output
    assert "layer 'aoi': 2 Polygon features, CRS EPSG:4326, fields id" in r.output
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bundle, broken)
    (broken / "bundle.json").write_text((broken / "bundle.json").read_text()[:-40])
    _assert_user_error(_run("info", broken), "bundle.json", "train the bundle again")
    # a bundle's normalisation, label nodata and weights; truncated weights are an error
    d = json.loads(_run("info", tiny_bundle, "--json").output)
    assert len(d["band_mean"]) == len(d["band_std"]) == 4 and d["label_nodata"] == 255
    assert d["weights"].endswith(" MB") and " tensors, " in d["weights"]
    cut = tmp_path / "cut"
    shutil.copytree(tiny_bundle, cut)
    data = (cut / "weights.safetensors").read_bytes()
    (cut / "weights.safetensors").write_bytes(data[: len(data) // 2])
    _assert_user_error(_run("info", cut), "weights.safetensors: not a readable safetensors")


def test_pipeline_predict_scene(tiny_scene, tiny_bundle, tmp_path, capsys):
    import importlib.util

    from .conftest import ROOT

    spec = importlib.util.spec_from_file_location(
        "predict_scene", ROOT / "pipelines" / "predict_scene.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert (
        mod.main(
            [
                str(tiny_scene),
                "--model",
                str(tiny_bundle),
                "--out",
                str(tmp_path / "o"),
                "--scheduler",
                "sync",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["outputs"][0] == "labels.tif"
    assert (
        mod.main([str(tiny_scene), "--model", str(tiny_bundle), "--out", str(tmp_path / "o")]) == 1
    )


def test_scheduler_from_environment_and_dashboard_link(tiny_scene, tiny_bundle, tmp_path):
    runner = CliRunner()
    out = tmp_path / "env"
    args = ["predict", str(tiny_scene), "--model", str(tiny_bundle), "--no-vector"]
    res = runner.invoke(cli, [*args, "--out", str(out)], env={"GEOSEG_SCHEDULER": "sync"})
    assert res.exit_code == 0, res.output
    assert json.loads((out / "run.json").read_text())["parameters"]["scheduler"] == "sync"
    assert "dask dashboard" not in res.output  # no cluster, no dashboard
    out = tmp_path / "local"
    res = runner.invoke(cli, [*args, "--out", str(out), "--scheduler", "local", "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "dask dashboard: http" in res.output
    assert json.loads((out / "run.json").read_text())["parameters"]["scheduler"] == "local"


def test_run_json_records_absolute_paths(tiny_scene, tiny_bundle, tmp_path, monkeypatch):
    monkeypatch.chdir(tiny_bundle.parent)
    out = tmp_path / "abs"
    args = ["predict", os.path.relpath(tiny_scene), "--model", tiny_bundle.name, "--no-vector"]
    res = CliRunner().invoke(cli, [*args, "--out", str(out), "--scheduler", "sync"])
    assert res.exit_code == 0, res.output
    run = json.loads((out / "run.json").read_text())
    assert run["bundle"]["path"] == str(tiny_bundle.resolve())
    assert run["input"]["path"] == str(Path(tiny_scene).resolve())


def test_bundle_with_inconsistent_normalisation(tiny_scene, tiny_bundle, tmp_path):
    """A bundle.json whose statistics do not match its bands and differences is refused
    before any weights are loaded, with a one-line error naming the file."""
    import json
    import shutil

    bundle = tmp_path / "bad-bundle"
    shutil.copytree(tiny_bundle, bundle)
    meta = json.loads((bundle / "bundle.json").read_text())
    meta["normalization"]["differences"] = [[0, 1]]  # one more channel than the statistics
    (bundle / "bundle.json").write_text(json.dumps(meta))
    out = tmp_path / "out"
    r = _run("predict", tiny_scene, "--model", bundle, "--out", out)
    _assert_user_error(r, bundle / "bundle.json", "differences")
    assert not out.exists()


def test_tta_reaches_batch_and_evaluate(tiny_scene, tiny_bundle, tmp_path, monkeypatch):
    manifest = tmp_path / "scenes.txt"
    manifest.write_text(f"{tiny_scene}\n")
    r = _run(
        "batch", manifest, "--model", tiny_bundle, "--out", tmp_path / "b", "--no-vector", "--tta"
    )
    assert r.exit_code == 0, r.output
    (run_json,) = (tmp_path / "b").glob("*/run.json")
    assert json.loads(run_json.read_text())["parameters"]["tta"] is True

    import geoseg.workflow

    seen = {}

    def fake_evaluate(bundle, config, out_dir, *, options, **kwargs):
        seen["tta"] = options.tta
        return {}

    monkeypatch.setattr(geoseg.workflow, "run_evaluate_bundle", fake_evaluate)
    r = _run(
        "evaluate", "--model", tiny_bundle, "--config", tmp_path / "c.yaml",
        "--out", tmp_path / "e", "--tta",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert seen == {"tta": True}


def test_overwrite_never_replaces_inputs_or_folders_geoseg_did_not_write(
    tiny_scene, tiny_bundle, tmp_path
):
    """--overwrite replaces an earlier output only: not a folder holding the scene or the
    bundle, not the scene file itself, not a folder of the user's own files."""
    import shutil

    project = tmp_path / "project"
    project.mkdir()
    scene = Path(shutil.copy(tiny_scene, project / "scene.tif"))
    (project / "notes.txt").write_text("mine")
    r = _run("predict", scene, "--model", tiny_bundle, "--out", project, "--overwrite")
    _assert_user_error(r, project, "holds the input", "scene.tif")
    r = _run("predict", scene, "--model", tiny_bundle, "--out", scene, "--overwrite")
    _assert_user_error(r, "is the input")
    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "mymodel"))
    r = _run("predict", scene, "--model", bundle, "--out", bundle, "--overwrite")
    _assert_user_error(r, "is the input")
    assert (bundle / "bundle.json").exists() and scene.is_file()
    assert (project / "notes.txt").read_text() == "mine"
    own = tmp_path / "own"
    own.mkdir()
    (own / "thesis.docx").write_text("x")
    r = _run("predict", scene, "--model", bundle, "--out", own, "--overwrite")
    _assert_user_error(r, own, "geoseg did not write it")
    afile = tmp_path / "afile"
    afile.write_text("x")
    _assert_user_error(
        _run("predict", scene, "--model", bundle, "--out", afile, "--overwrite"), "is a file"
    )
    _assert_user_error(
        _run("predict", scene, "--model", bundle, "--out", afile / "x"), f"{afile} is a file"
    )
    assert afile.read_text() == "x"
    # an earlier output is replaced, and nothing is left beside it
    out = tmp_path / "out"
    assert _run("predict", scene, "--model", bundle, "--out", out, "--no-vector").exit_code == 0
    assert (out / ".geoseg-output").exists()
    r = _run("predict", scene, "--model", bundle, "--out", out, "--no-vector", "--overwrite")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_vector_output_errors_come_before_the_work(tiny_scene, tiny_bundle, tmp_path):
    out = tmp_path / "out"
    assert _run("predict", tiny_scene, "--model", tiny_bundle, "--out", out, "-q").exit_code == 0
    labels = out / "labels.tif"
    _assert_user_error(
        _run("vectorize", labels, "--out", tmp_path / "p.gpkg", "--dst-crs", "EPSG:999999"),
        "--dst-crs EPSG:999999",
    )
    folder = tmp_path / "adir.gpkg"
    folder.mkdir()
    _assert_user_error(
        _run("vectorize", labels, "--out", folder, "--overwrite"), "is a folder, not an output file"
    )
    assert not (tmp_path / "p.gpkg").exists() and folder.is_dir()
    for opt in ("--workers", "--tile-size", "--block-size"):
        r = _run("predict", tiny_scene, "--model", tiny_bundle, "--out", tmp_path / "o", opt, 0)
        assert r.exit_code == 2 and "0 is not in the range" in r.output, (opt, r.output)


def test_a_file_given_as_bundle_is_named_as_such(tiny_scene, tmp_path):
    _assert_user_error(
        _run("predict", tiny_scene, "--model", tiny_scene, "--out", tmp_path / "o"),
        "is a file, not a model bundle",
    )


def test_file_system_errors_are_one_line(monkeypatch, tiny_scene, tiny_bundle, tmp_path):
    import geoseg.workflow as wf

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "out"))

    monkeypatch.setattr(wf, "run_predict", full_disk)
    r = _run("predict", tiny_scene, "--model", tiny_bundle, "--out", tmp_path / "out")
    _assert_user_error(r, "No space left on device", "free space")


def test_an_all_nodata_scene_is_reported(tiny_bundle, tmp_path, caplog):
    import numpy as np

    from geoseg.workflow import run_predict

    scene = write_raster(
        tmp_path / "empty.tif", np.full((4, 40, 50), 65535, dtype=np.uint16), nodata=65535
    )
    with caplog.at_level("WARNING", logger="geoseg"):
        run_predict(scene, tiny_bundle, tmp_path / "o", scheduler="sync", vector=False)
    assert "every pixel is nodata" in caplog.text


def test_errors_that_are_not_the_file_system_keep_their_traceback(
    monkeypatch, tiny_scene, tiny_bundle, tmp_path
):
    import geoseg.workflow as wf

    def lost(*args, **kwargs):
        raise ConnectionResetError(104, "Connection reset by peer")

    monkeypatch.setattr(wf, "run_predict", lost)
    r = _run("predict", tiny_scene, "--model", tiny_bundle, "--out", tmp_path / "out")
    assert isinstance(r.exception, ConnectionResetError)
    assert "check the paths" not in r.output


def test_sigterm_cleans_up_like_ctrl_c(tmp_path, tiny_bundle):
    import signal
    import subprocess
    import sys
    import time

    import numpy as np

    rng = np.random.default_rng(3)
    data = rng.integers(3000, 9000, (4, 768, 768), dtype=np.uint16)
    scene = write_raster(tmp_path / "s.tif", data, nodata=65535, names=("B2", "B3", "B4", "B5"))
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "geoseg.cli", "predict", str(scene), "--model", str(tiny_bundle)]
    cmd += ["--out", str(out), "--no-vector", "--tile-size", "64", "--block-size", "64"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".o.partial-*/blocks/*.npy")):  # wait for the first block
        assert proc.poll() is None and time.monotonic() < deadline, "finished too soon"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # what timeout, SLURM and Kubernetes send
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "geoseg: terminated: nothing half-written was left; run it again (with --resume" in err
    assert not out.exists() and not list(tmp_path.glob(".o*"))  # nothing left behind


def test_a_bad_dst_crs_is_one_line_on_the_real_stderr(tmp_path):
    # GDAL and PROJ print their own errors straight to the process's stderr
    import subprocess
    import sys

    labels = shared_file("zion/nlcd2011_level1.tif")
    cmd = [sys.executable, "-m", "geoseg.cli", "vectorize", str(labels)]
    cmd += ["--out", str(tmp_path / "p.gpkg"), "--dst-crs", "EPSG:999999"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "geoseg: error: --dst-crs EPSG:999999: not a CRS that PROJ knows: use e.g. EPSG:4326"
    ]


def test_ctrl_c_on_a_local_cluster_is_one_message_not_worker_tracebacks(tmp_path, tiny_bundle):
    import signal
    import subprocess
    import sys
    import time

    import numpy as np

    rng = np.random.default_rng(4)
    data = rng.integers(3000, 9000, (4, 768, 768), dtype=np.uint16)
    scene = write_raster(tmp_path / "s.tif", data, nodata=65535, names=("B2", "B3", "B4", "B5"))
    cmd = [sys.executable, "-m", "geoseg.cli", "predict", str(scene), "--model", str(tiny_bundle)]
    cmd += ["--out", str(tmp_path / "o"), "--no-vector", "--tile-size", "64", "--block-size", "64"]
    cmd += ["--scheduler", "local", "--workers", "2"]
    # its own process group, as a terminal's foreground job: Ctrl-C reaches every process
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 180
    while not list(tmp_path.glob(".o.partial-*/blocks/*.npy")):
        assert proc.poll() is None and time.monotonic() < deadline, "finished too soon"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "geoseg: interrupted" in err
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o*"))


def test_the_progress_bar_ends_with_the_blocks_and_says_what_follows(capsys):
    """The bar closes at its last block (its rate is the blocks'), then says the polygons
    are being made; it is not redrawn by the final close."""
    from geoseg.cli import _Bar

    bar = _Bar("predict", True, then="blocks done, making polygons")
    for done in (1, 2, 3):
        bar(done, 3)
    bar(3, 3)  # a late repeat changes nothing
    bar.close()
    err = capsys.readouterr().err
    assert err.count("blocks done, making polygons") == 1
    assert err.rstrip().endswith("predict: blocks done, making polygons")
    assert err.count("3/3") == 1
    quiet = _Bar("predict", False, then="x")
    quiet(1, 1)
    quiet.close()
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("command", ["predict", "batch", "merge"])
def test_an_output_folder_named_like_a_file_is_refused(tmp_path, command):
    """`--out labels.tif` would make a folder named labels.tif: a slip, said at once."""
    out = tmp_path / "labels.tif"
    args = {
        "predict": ["predict", "scene.tif", "--model", "m"],
        "batch": ["batch", "scenes.txt", "--model", "m"],
        "merge": ["merge", "a.tif", "b.tif"],
    }[command]
    res = CliRunner().invoke(cli, [*args, "--out", str(out)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert f"{out} names a folder" in res.output and f"e.g. {tmp_path / 'labels'}" in res.output
    assert not out.exists()


def test_out_of_range_option_values_are_usage_errors_before_any_work(tmp_path):
    """Exit code 2 and click's message, whatever the command, with no input read."""
    x, out = tmp_path / "x.tif", tmp_path / "o"
    cases = [
        ("predict", x, "--model", x, "--out", out, "--halo", -16),
        ("predict", x, "--model", x, "--out", out, "--batch-size", -1),
        ("predict", x, "--model", x, "--out", out, "--mmu", -5),
        ("predict", x, "--model", x, "--out", out, "--simplify", -1),
        ("predict", x, "--model", x, "--out", out, "--format", "gpkg,bogus"),
        ("batch", x, "--model", x, "--out", out, "--format", "kml"),
        ("train", x, "--out", out, "--max-steps", 0),
        ("evaluate", x, "--coarse", x, "--out", out, "--checkerboard", -5),
        ("sample", x, "--out", tmp_path / "p.gpkg", "--seed", -1),
        ("vectorize", x, "--out", tmp_path / "p.gpkg", "--band", 0),
        ("vectorize", x, "--out", tmp_path / "p.gpkg", "--chunk-size", 0),
        ("vectorize", x, "--out", tmp_path / "p.gpkg", "--mmu", -1),
    ]
    for args in cases:
        r = _run(*args)
        assert r.exit_code == 2, (args, r.output)
        assert "Invalid value for" in r.output and "Traceback" not in r.output, r.output
    assert "unknown formats ['bogus']" in _run(*cases[4]).output
    assert not out.exists()


def test_a_geographic_crs_on_projected_coordinates_is_refused_at_once(
    tiny_scene, tiny_bundle, tmp_path
):
    """A wrong ``-a_srs`` (degrees on metres) is one line naming the fix, before the
    network runs, for a scene and for a map of every command; info notes it."""
    import rasterio

    bad = tmp_path / "bad.tif"
    shutil.copy(tiny_scene, bad)
    with rasterio.open(bad, "r+") as dst:
        dst.crs = "EPSG:4326"
    out = tmp_path / "sub" / "out"
    _assert_user_error(
        _run("predict", bad, "--model", tiny_bundle, "--out", out),
        bad,
        "EPSG:4326 is in degrees",
        f"geoseg edit {bad} --crs EPSG:NNNN",
        "gdal_edit.py -a_srs",
    )
    assert not out.exists() and not out.parent.exists()
    good = tmp_path / "good"
    assert _run("predict", tiny_scene, "--model", tiny_bundle, "--out", good, "-q").exit_code == 0
    labels = tmp_path / "labels.tif"
    shutil.copy(good / "labels.tif", labels)
    with rasterio.open(labels, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as dst:
        dst.crs = "EPSG:4326"
    for args in (
        ("vectorize", labels, "--out", tmp_path / "p.gpkg"),
        ("evaluate", good / "labels.tif", "--coarse", labels, "--out", tmp_path / "e"),
        ("evaluate", labels, "--coarse", good / "labels.tif", "--out", tmp_path / "e"),
        ("sample", labels, "--out", tmp_path / "s.gpkg"),
        ("merge", labels, good / "labels.tif", "--out", tmp_path / "m"),
    ):
        _assert_user_error(_run(*args), "are not longitudes and latitudes")
    info = _run("info", bad)
    assert info.exit_code == 0 and "note: its CRS EPSG:4326 is in degrees" in info.output


def test_an_alpha_band_is_a_mask_never_a_model_input(tiny_scene, tiny_bundle, tmp_path):
    """Alpha is validity, as in training: 4 data bands + alpha predict as the 4 bands
    with alpha's transparent pixels nodata; 3 data bands + alpha are refused, not read
    as a fourth spectral band."""
    import numpy as np
    import rasterio
    from rasterio.enums import ColorInterp

    with rasterio.open(tiny_scene) as src:
        data, profile = src.read(), src.profile
    alpha = np.full(data.shape[1:], 255, np.uint16)
    alpha[100:, 150:] = 0
    rgba = tmp_path / "with_alpha.tif"
    profile.update(count=5, nodata=None)
    data = np.where(data == 65535, 0, data).astype(np.uint16)
    data[:, 100:, 150:] = 0  # transparent pixels hold 0: fill, not ground
    alpha[data[0] == 0] = 0
    with rasterio.open(rgba, "w", **profile) as dst:
        dst.write(np.concatenate([data, alpha[None]]))
        dst.descriptions = ("B2", "B3", "B4", "B5", None)
    with rasterio.open(rgba, "r+") as dst:  # GDAL keeps the band's colour when set here
        dst.colorinterp = [ColorInterp.gray] * 4 + [ColorInterp.alpha]
    out = tmp_path / "a"
    assert _run("predict", rgba, "--model", tiny_bundle, "--out", out, "-q").exit_code == 0
    plain = tmp_path / "p"
    assert _run("predict", tiny_scene, "--model", tiny_bundle, "--out", plain, "-q").exit_code == 0
    with rasterio.open(out / "labels.tif") as a, rasterio.open(plain / "labels.tif") as p:
        la, lp = a.read(1), p.read(1)
    assert (la[alpha == 0] == 255).all() and (la[100:, 150:] == 255).all()
    # the input check leaves them out too: no warning of pixels 0 in every band
    run = json.loads((out / "run.json").read_text())
    assert run["input_check"]["zero_share"] == 0.0, run["input_check"]
    assert not any("0 in every band" in w for w in run["warnings"]), run["warnings"]
    # away from the transparent corner (beyond the network's reach) nothing changed
    assert (la[:60, :100][alpha[:60, :100] > 0] == lp[:60, :100][alpha[:60, :100] > 0]).all()
    three = tmp_path / "rgba3.tif"
    profile.update(count=4)
    with rasterio.open(three, "w", photometric="RGB", alpha="YES", **profile) as dst:
        dst.write(np.concatenate([data[:3], alpha[None]]))
    _assert_user_error(
        _run("predict", three, "--model", tiny_bundle, "--out", tmp_path / "t"),
        "scene has 3 data bands",
        "alpha band 4 (a mask of valid pixels, not data)",
        "expects 4",
    )


def test_a_geoseg_map_given_as_the_image_is_named_as_such(tiny_scene, tiny_bundle, tmp_path):
    out = tmp_path / "out"
    cmd = ("predict", tiny_scene, "--model", tiny_bundle, "--out", out, "-q", "--probabilities")
    assert _run(*cmd).exit_code == 0
    for name, what in (("labels.tif", "label map"), ("probabilities.tif", "probabilities.tif")):
        _assert_user_error(
            _run("predict", out / name, "--model", tiny_bundle, "--out", tmp_path / "x"),
            f"a geoseg {what}",
            "not an image: pass the satellite scene",
        )


def test_a_folder_given_as_the_config_is_named_as_such(tmp_path):
    _assert_user_error(
        _run("train", tmp_path, "--out", tmp_path / "b"), "a folder, not a config file"
    )


def test_an_interrupted_training_says_whether_a_checkpoint_was_kept(tmp_path):
    from geoseg.cli import _train_interrupted

    out = tmp_path / "bundle"
    assert "before its first checkpoint" in _train_interrupted(out)
    (tmp_path / "bundle.selection.checkpoint").mkdir()
    (tmp_path / "bundle.selection.checkpoint" / "last.pt").write_bytes(b"x")
    said = _train_interrupted(out)
    assert said == f"its checkpoint {out}.selection.checkpoint is kept: --resume continues the run"


def test_info_tells_another_tool_s_class_map_by_its_colour_table(tmp_path):
    """A blind test: info on a land-cover map geoseg did not write listed nothing of its
    classes; its colour table (a header) names the coloured codes, and the note says
    which commands read its classes by --taxonomy."""
    landcover = shared_file("labels/landcover_1m_epsg3857.tif")
    r = _run("info", landcover)
    assert r.exit_code == 0, r.output
    assert "colour table: 1 #00c5ff, 2 #00a884," in r.output
    assert "a class map; geoseg vectorize, zonal, evaluate, sample and change" in r.output
    assert "no band has a name" not in r.output  # not a model's input
    d = json.loads(_run("info", landcover, "--json").output)
    assert sorted(map(int, d["colour_table"])) == [1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13]
    # an image has none
    assert "colour_table" not in json.loads(_run("info", shared_file("awkward/RGB.byte.tif"),
                                                 "--json").output)  # fmt: skip
    # an output folder is not a bundle: its files are named (it said "not a model bundle")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "labels.tif").write_bytes(b"")
    _assert_user_error(_run("info", tmp_path / "out"), "a folder, not a model bundle",
                       "pass one of its files (labels.tif)")  # fmt: skip
