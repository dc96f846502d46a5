import csv
import json
import shutil
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from geoseg.batch import parse_manifest, run_batch
from geoseg.cli import cli
from geoseg.errors import ConfigError

from .conftest import shared_file


def test_manifest_formats(tmp_path, tiny_scene):
    d = tmp_path / "m"
    d.mkdir()
    a, b = d / "a.tif", d / "b.tif"
    shutil.copy(tiny_scene, a)
    shutil.copy(tiny_scene, b)
    (d / "list.txt").write_text("# scenes\na.tif\n\nb.tif\n")
    items = parse_manifest(d / "list.txt")
    assert [(i.scene, i.name) for i in items] == [(str(a), "a"), (str(b), "b")]
    (d / "list.csv").write_text("scene,out\na.tif,first\nb.tif,\n")
    assert [i.name for i in parse_manifest(d / "list.csv")] == ["first", "b"]
    (d / "list.yaml").write_text("- a.tif\n- {scene: b.tif, out: second}\n")
    assert [i.name for i in parse_manifest(d / "list.yaml")] == ["a", "second"]
    assert [i.name for i in parse_manifest(str(d / "*.tif"))] == ["a", "b"]
    (d / "dup.txt").write_text("a.tif\nsub/a.tif\n")
    with pytest.raises(ConfigError, match="distinct 'out'"):
        parse_manifest(d / "dup.txt")
    with pytest.raises(ConfigError, match="matches no file"):
        parse_manifest(str(d / "*.jp2"))
    (d / "bad.csv").write_text("file\na.tif\n")
    with pytest.raises(ConfigError, match="'scene' or 'path' column"):
        parse_manifest(d / "bad.csv")
    (d / "ragged.csv").write_text("scene,out\na.tif,first,extra\n")
    with pytest.raises(ConfigError, match=r"line 2 has more fields than the header's 2"):
        parse_manifest(d / "ragged.csv")
    (d / "broken.yaml").write_text("scenes: [a.tif, b.tif\n  - foo: [\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: not valid YAML at line 2, column 8"):
        parse_manifest(d / "broken.yaml")
    (d / "mapping.yaml").write_text("scenes: [a.tif]\n")
    with pytest.raises(ConfigError, match=r"a YAML manifest is a list, one item per scene"):
        parse_manifest(d / "mapping.yaml")
    with pytest.raises(ConfigError, match=r"a folder, not a manifest: .* glob pattern in quotes"):
        parse_manifest(d)


def test_a_failing_scene_does_not_stop_the_batch(tmp_path, tiny_scene, tiny_bundle):
    corrupt = shared_file("awkward/corrupt.tif")
    manifest = tmp_path / "scenes.txt"
    manifest.write_text(f"{tiny_scene}\n{corrupt}\n{tmp_path / 'missing.tif'}\n")
    out = tmp_path / "out"
    r = CliRunner().invoke(
        cli,
        ["batch", str(manifest), "--model", str(tiny_bundle), "--out", str(out), "-q"],
    )
    assert r.exit_code == 1
    assert "2 of 3 scenes failed" in r.output and len(r.output.strip().splitlines()) == 1
    assert r.output.count(str(corrupt)) == 1  # the first failure names its scene once
    with (out / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [x["status"] for x in rows] == ["done", "failed", "failed"]
    assert "corrupt" in rows[1]["error"] and "not found" in rows[2]["error"]
    assert float(rows[0]["seconds"]) > 0
    assert any(k.startswith("area_m2 ") and rows[0][k] for k in rows[0])
    # fine classes too: every NLCD coarse class has fine ones, so the levels sum alike
    coarse_sum, fine_sum = (
        sum(float(v) for k, v in rows[0].items() if k.startswith(prefix) and v)
        for prefix in ("area_m2 ", "fine_area_m2 ")
    )
    assert fine_sum == pytest.approx(coarse_sum) and coarse_sum > 0
    assert (out / "tiny" / "labels.tif").exists()
    assert not (out / "corrupt").exists() and not (out / "missing").exists()
    assert json.loads((out / "summary.json").read_text())[0]["status"] == "done"
    # --resume keeps the finished scene
    res = run_batch(parse_manifest(manifest), tiny_bundle, out, resume=True, scheduler="sync")
    assert [x.status for x in res] == ["kept", "failed", "failed"]
    # ... with its figures in the summary, as when it was done
    assert res[0].polygons == int(rows[0]["polygons"]) and res[0].area_m2


def test_resume_redoes_a_scene_whose_input_or_outputs_changed(tmp_path, tiny_scene, tiny_bundle):
    import os

    scenes = tmp_path / "in"
    scenes.mkdir()
    a = shutil.copy(tiny_scene, scenes / "a.tif")
    shutil.copy(tiny_scene, scenes / "b.tif")
    items = parse_manifest(str(scenes / "*.tif"))
    out = tmp_path / "out"
    res = run_batch(items, tiny_bundle, out, scheduler="sync", vector=False)
    assert [r.status for r in res] == ["done", "done"]
    res = run_batch(items, tiny_bundle, out, scheduler="sync", vector=False, resume=True)
    assert [r.status for r in res] == ["kept", "kept"]
    st = os.stat(a)
    os.utime(a, (st.st_atime, st.st_mtime + 10))  # scene a was replaced
    res = run_batch(items, tiny_bundle, out, scheduler="sync", vector=False, resume=True)
    assert [r.status for r in res] == ["done", "kept"]
    # polygons asked for now, not made before: both are done again
    res = run_batch(items, tiny_bundle, out, scheduler="sync", resume=True)
    assert [r.status for r in res] == ["done", "done"]
    assert (out / "b" / "landcover.gpkg").exists()
    # class probabilities asked for now, not made before: done again, then kept
    from click.testing import CliRunner

    from geoseg.cli import cli

    args = ["batch", str(scenes / "*.tif"), "--model", str(tiny_bundle), "--out", str(out)]
    args += ["--scheduler", "sync", "--resume", "--probabilities"]
    for status in ("done", "kept"):
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == 0, r.output
        assert r.output.count(status) == 2, r.output
    assert (out / "a" / "probabilities.tif").exists() and (out / "b" / "landcover.gpkg").exists()


def test_batch_on_a_local_cluster(tmp_path, tiny_scene, tiny_bundle):
    d = tmp_path / "s"
    d.mkdir()
    for n in ("x", "y", "z"):
        shutil.copy(tiny_scene, d / f"{n}.tif")
    res = run_batch(
        parse_manifest(str(d / "*.tif")),
        tiny_bundle,
        tmp_path / "out",
        scheduler="local",
        workers=2,
        vector=False,
        concurrency=3,
    )
    assert [r.status for r in res] == ["done"] * 3
    assert all((tmp_path / "out" / n / "labels.tif").exists() for n in "xyz")


def test_the_summary_says_when_bands_were_matched_by_position(tmp_path, tiny_scene, tiny_bundle):
    import rasterio

    plain = shutil.copy(tiny_scene, tmp_path / "plain.tif")
    with rasterio.open(plain, "r+") as dst:
        for i in range(1, dst.count + 1):
            dst.set_band_description(i, "")
    named = shutil.copy(tiny_scene, tmp_path / "named.tif")
    renamed = shutil.copy(tiny_scene, tmp_path / "renamed.tif")
    with rasterio.open(renamed, "r+") as dst:
        dst.descriptions = ("x1", "x2", "x3", "x4")
    items = parse_manifest(str(tmp_path / "*.tif"))
    res = run_batch(items, tiny_bundle, tmp_path / "out", scheduler="sync", vector=False)
    by_name = {r.scene: r for r in res}
    assert "matched to the bundle's by position" in by_name[str(plain)].warning
    assert "position" not in by_name[str(named)].warning
    # other names: the run's own warning says it, once (it was said twice)
    assert by_name[str(renamed)].warning.count("by position") == 1


def test_resume_keeps_outputs_of_earlier_versions_without_a_recorded_mtime(tmp_path, tiny_scene):
    from geoseg.workflow import up_to_date

    out = tmp_path / "a"
    out.mkdir()
    run = {
        "input": {"path": str(Path(tiny_scene).resolve())},
        "parameters": {"formats": ["gpkg"]},
        "bundle": {"sha256": "abc"},
        "outputs": ["labels.tif", "landcover.gpkg"],
    }
    (out / "run.json").write_text(json.dumps(run))
    for f in run["outputs"]:
        (out / f).touch()
    wanted = {
        "formats": ["gpkg"],
        "vector": {},
        "tta": False,
        "precision": "auto",
        "labels_token": "t1",  # not recorded by earlier versions: not compared
    }
    assert up_to_date(out, str(tiny_scene), "abc", wanted) is not None
    assert up_to_date(out, str(tiny_scene), "other bundle", wanted) is None
    assert up_to_date(out, str(tiny_scene), "abc", {**wanted, "formats": ["shp"]}) is None
    (out / "landcover.gpkg").unlink()  # an output deleted since: redone
    assert up_to_date(out, str(tiny_scene), "abc", wanted) is None
    (out / "landcover.gpkg").touch()
    run["parameters"]["labels_token"] = "t2"  # recorded and different (halo...): redone
    (out / "run.json").write_text(json.dumps(run))
    assert up_to_date(out, str(tiny_scene), "abc", wanted) is None
    run["parameters"]["labels_token"] = "t1"
    run["parameters"]["tta"] = True  # recorded and different: redone
    (out / "run.json").write_text(json.dumps(run))
    assert up_to_date(out, str(tiny_scene), "abc", wanted) is None


def test_ctrl_c_stops_the_batch_at_the_next_block(tmp_path, tiny_scene, tiny_bundle):
    import _thread

    from geoseg.infer import InferOptions

    d = tmp_path / "s"
    d.mkdir()
    for n in ("a", "b", "c"):
        shutil.copy(tiny_scene, d / f"{n}.tif")
    out = tmp_path / "out"

    def interrupt_after_the_first(res):  # runs in the scene's thread, as Ctrl-C would not
        if res.scene.endswith("a.tif"):
            _thread.interrupt_main()

    with pytest.raises(KeyboardInterrupt):
        run_batch(
            parse_manifest(str(d / "*.tif")),
            tiny_bundle,
            out,
            options=InferOptions(tile_size=32, block_size=64),
            scheduler="sync",
            vector=False,
            on_scene=interrupt_after_the_first,
        )
    # the finished scene is kept; the next one stopped between blocks and left nothing;
    # the last one never started (it used to run to the end before the batch stopped)
    assert (out / "a" / "labels.tif").exists()
    assert not (out / "b").exists() and not (out / "c").exists()
    assert not list(out.glob(".*partial*"))
    # the summary lists every scene: what was finished, stopped, never started
    statuses = [r["status"] for r in json.loads((out / "summary.json").read_text())]
    assert statuses[0] == "done" and statuses[2] == "not started", statuses
    assert statuses[1] in ("interrupted", "not started"), statuses
    md = (out / "summary.md").read_text()
    assert md.startswith("# Batch summary: 1 of 3 scenes done, interrupted: --resume continues")


def test_a_set_cancel_event_stops_a_compute_between_tasks():
    import threading

    import dask

    from geoseg.cluster import run_tasks

    cancel, ran = threading.Event(), []

    def task(i):
        ran.append(i)
        if len(ran) == 2:
            cancel.set()
        return i

    tasks = [dask.delayed(task)(i, dask_key_name=f"geoseg-block-{i}") for i in range(5)]
    with pytest.raises(KeyboardInterrupt):
        run_tasks(tasks, "sync", cancel=cancel)
    assert len(ran) == 2  # no task started after the event was set
    assert run_tasks(tasks[:2], "sync", cancel=threading.Event()) == [0, 1]


def test_an_interrupted_threaded_compute_returns_after_its_tasks_in_flight():
    """The caller removes the blocks' folder once the compute is interrupted: a block
    thread still running would write into it afterwards (a half-cleaned output), so the
    threaded scheduler returns only when its tasks in flight are done, and starts no
    queued task."""
    import time

    import dask

    from geoseg.cluster import run_tasks

    cancel, started, finished = threading.Event(), [], []

    def task(i):
        started.append(i)
        if len(started) == 1:
            time.sleep(0.2)  # the other thread's task is in flight now
            cancel.set()
            return i
        time.sleep(0.8)
        finished.append(i)
        return i

    tasks = [dask.delayed(task)(i, dask_key_name=f"geoseg-block-{i}") for i in range(8)]
    with pytest.raises(KeyboardInterrupt):
        run_tasks(tasks, "threads", workers=2, cancel=cancel)
    n = len(started)
    assert n < 8 and len(finished) == n - 1  # every task in flight was waited for
    time.sleep(1.0)
    assert len(started) == n  # nothing queued ran later


def test_threaded_computes_in_parallel_threads_keep_their_own_pool_and_progress():
    """A batch runs scenes in threads, each a threaded compute: one scene's pool and
    progress must not leak into another's (a pool set in dask's process-wide config
    was shut down under the other scene), nor stay in the config afterwards."""
    import time

    import dask

    from geoseg.cluster import run_tasks

    def slow(i: int, d: float) -> int:
        time.sleep(d)
        return i

    out: dict[str, object] = {}
    seen: dict[str, list[tuple[int, int]]] = {"A": [], "B": []}

    def scene(name: str, n: int, d: float) -> None:
        tasks = [
            dask.delayed(slow)(i, d, dask_key_name=f"geoseg-block-{name}{i}") for i in range(n)
        ]
        try:
            r = run_tasks(
                tasks, "threads", workers=2, progress=lambda k, m: seen[name].append((k, m))
            )
            out[name] = len(r)
        except BaseException as exc:
            out[name] = repr(exc)

    for _ in range(3):
        out.clear()
        seen["A"].clear(), seen["B"].clear()
        threads = [
            threading.Thread(target=scene, args=("A", 400, 0.002)),
            threading.Thread(target=scene, args=("B", 4, 0.01)),
        ]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert out == {"A": 400, "B": 4}
        assert seen["A"][-1] == (400, 400) and seen["B"][-1] == (4, 4)
        assert max(k for k, _ in seen["B"]) == 4  # B counted none of A's blocks
        assert dask.config.get("pool", None) is None
    assert dask.compute(dask.delayed(slow)(1, 0.0), scheduler="threads") == (1,)


_RAN: list[int] = []
_CANCEL = threading.Event()
_GATE = threading.Event()


def _first_task_cancels(i: int) -> int:  # module level: pickled by reference
    _RAN.append(i)
    if len(_RAN) == 1:
        _CANCEL.set()  # as the batch does on Ctrl-C, while this first task runs
        _GATE.wait(60)  # held until the test has seen the run stop
    return i


def test_a_set_cancel_event_stops_a_distributed_compute():
    import dask
    from distributed import Client

    from geoseg.cluster import run_tasks

    tasks = [
        dask.delayed(_first_task_cancels)(i, dask_key_name=f"geoseg-block-{i}") for i in range(6)
    ]
    # no dashboard: with port 8787 taken (another cluster on the machine), distributed
    # leaves a socket unclosed, a ResourceWarning (seen in a suite run, 2026-12-07)
    with Client(
        processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None
    ) as client:
        with pytest.raises(KeyboardInterrupt):
            run_tasks(tasks, "tcp://unused", client=client, cancel=_CANCEL)
        time.sleep(1.0)  # the cancellation reaches the scheduler
        _GATE.set()  # the first task ends: uncancelled, the other five would run at once
        time.sleep(2.0)
        assert len(_RAN) <= 2  # the first, maybe one more started: the rest were cancelled


def test_batch_folder_summary_files_are_never_replaced_without_leave(
    tmp_path, tiny_scene, tiny_bundle
):
    d = tmp_path / "s"
    d.mkdir()
    for n in ("a", "b"):
        shutil.copy(tiny_scene, d / f"{n}.tif")
    mine = tmp_path / "myproject"  # a user's folder with a summary of their own
    mine.mkdir()
    (mine / "summary.csv").write_text("my,own,summary\n")
    args = ["--model", str(tiny_bundle), "--no-vector", "-q"]
    r = CliRunner().invoke(cli, ["batch", str(d / "a.tif"), *args, "--out", str(mine)])
    assert r.exit_code == 1 and "geoseg did not write" in r.output, r.output
    assert (mine / "summary.csv").read_text() == "my,own,summary\n"
    assert not (mine / "a").exists()
    # a batch into a folder of the user's without summaries: the folder is not made
    # replaceable by it (predict --overwrite used to delete it whole afterwards)
    (mine / "summary.csv").unlink()
    (mine / "thesis.docx").write_text("precious")
    r = CliRunner().invoke(cli, ["batch", str(d / "a.tif"), *args, "--out", str(mine)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(
        cli, ["predict", str(d / "a.tif"), *args[:-1], "--out", str(mine), "--overwrite"]
    )
    assert r.exit_code == 1 and (mine / "thesis.docx").read_text() == "precious"

    out = tmp_path / "maps"
    r = CliRunner().invoke(cli, ["batch", str(d / "*.tif"), *args, "--out", str(out)])
    assert r.exit_code == 0, r.output
    before = (out / "summary.csv").read_text()
    # the same batch again without --resume or --overwrite: refused, summary kept
    r = CliRunner().invoke(cli, ["batch", str(d / "*.tif"), *args, "--out", str(out)])
    assert r.exit_code == 1 and "--resume" in r.output and len(r.output.splitlines()) == 1
    assert (out / "summary.csv").read_text() == before
    # a batch of one of the scenes, resumed: the other scene stays in the summary
    r = CliRunner().invoke(cli, ["batch", str(d / "b.tif"), *args, "--out", str(out), "--resume"])
    assert r.exit_code == 0, r.output
    with (out / "summary.csv").open() as f:
        rows = {Path(x["out"]).name: x["status"] for x in csv.DictReader(f)}
    assert rows == {"b": "kept", "a": "done"}
    # a failed scene's row stays too, through a later batch of other scenes
    (d / "list.txt").write_text("missing.tif\n")
    r = CliRunner().invoke(
        cli, ["batch", str(d / "list.txt"), *args, "--out", str(out), "--resume"]
    )
    assert r.exit_code == 1
    r = CliRunner().invoke(cli, ["batch", str(d / "a.tif"), *args, "--out", str(out), "--resume"])
    with (out / "summary.csv").open() as f:
        rows = {Path(x["out"]).name: x["status"] for x in csv.DictReader(f)}
    assert rows == {"a": "kept", "b": "kept", "missing": "failed"}
    # a batch folder may hold other files: predict --overwrite never replaces it
    (out / "notes.txt").write_text("mine")
    r = CliRunner().invoke(
        cli, ["predict", str(d / "a.tif"), *args[:-1], "--out", str(out), "--overwrite"]
    )
    assert r.exit_code == 1 and "batch" in r.output, r.output
    assert (out / "notes.txt").read_text() == "mine" and (out / "summary.csv").exists()


def test_spreadsheet_csv_with_a_byte_order_mark(tmp_path, tiny_scene):
    shutil.copy(tiny_scene, tmp_path / "x.tif")
    (tmp_path / "excel.csv").write_bytes(b"\xef\xbb\xbfscene,out\r\nx.tif,first\r\n")
    (item,) = parse_manifest(tmp_path / "excel.csv")
    assert item.name == "first" and item.scene == str(tmp_path / "x.tif")
    (tmp_path / "two.txt").write_text("x.tif\nsub/x.tif\n")
    with pytest.raises(ConfigError, match="CSV"):  # a plain list cannot name outputs
        parse_manifest(tmp_path / "two.txt")
    (one,) = parse_manifest(tmp_path / "x.tif")  # a scene itself is a batch of one
    assert one.scene == str(tmp_path / "x.tif") and one.name == "x"
    (tmp_path / "list.bin").write_bytes(b"\x00\xff\xfe binary")
    with pytest.raises(ConfigError, match="not a text, CSV or YAML manifest"):
        parse_manifest(tmp_path / "list.bin")


def test_an_all_nodata_scene_is_flagged_in_the_summary(tmp_path, empty_scene, tiny_bundle):
    items = parse_manifest(empty_scene)
    (res,) = run_batch(items, tiny_bundle, tmp_path / "out", vector=False)
    assert res.status == "done" and "every pixel is nodata" in res.warning


def test_a_scene_without_crs_has_no_areas_in_m2_in_the_summary(tmp_path, tiny_scene, tiny_bundle):
    """Found by a blind user test: its summary cells read 0.0 m² for every class."""
    import rasterio

    from .conftest import write_raster

    with rasterio.open(tiny_scene) as src:
        data, names = src.read(), src.descriptions
    chip = write_raster(tmp_path / "chip.tif", data, crs=None, nodata=65535, names=names)
    (res,) = run_batch(parse_manifest(chip), tiny_bundle, tmp_path / "out", vector=False)
    assert res.status == "done" and res.area_m2 == {}
    rows = list(csv.DictReader((tmp_path / "out" / "summary.csv").read_text().splitlines()))
    assert not any(k.startswith("area_m2") and v for k, v in rows[0].items())


def test_a_cancel_after_the_blocks_stops_before_the_polygons(
    tmp_path, tiny_scene, tiny_bundle, monkeypatch
):
    import geoseg.workflow as wf

    cancel = threading.Event()
    real = wf.assemble_labels

    def assemble_then_interrupt(*args, **kwargs):  # Ctrl-C while labels.tif is assembled
        out = real(*args, **kwargs)
        cancel.set()
        return out

    monkeypatch.setattr(wf, "assemble_labels", assemble_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        wf.run_predict(tiny_scene, tiny_bundle, tmp_path / "o", scheduler="sync", cancel=cancel)
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o*"))


@pytest.mark.parametrize("scheduler", ["sync", "threads"])
def test_one_block_thread_is_the_calling_thread(scheduler):
    """``threads`` with one worker runs its tasks in the calling thread, as ``sync``
    does: torch's OpenMP runtime stops spin-waiting once its teams hold more threads
    than there are cores, so a separate block thread beside a caller that built the
    network (and keeps its team) decoded at half speed. More workers are a pool."""
    import dask

    from geoseg.cluster import run_tasks

    def ident(i: int) -> int:
        return threading.get_ident()

    tasks = [dask.delayed(ident)(i, dask_key_name=f"geoseg-block-{i}") for i in range(3)]
    seen: list[tuple[int, int]] = []
    ran = run_tasks(tasks, scheduler, workers=1, progress=lambda k, n: seen.append((k, n)))
    assert set(ran) == {threading.get_ident()}
    assert seen[-1] == (3, 3)
    if scheduler == "threads":
        assert threading.get_ident() not in run_tasks(tasks, scheduler, workers=2)


def test_the_summary_is_written_as_each_scene_starts_and_ends(
    tmp_path, tiny_scene, tiny_bundle, monkeypatch
):
    """A batch killed outright (SIGKILL, a node lost) still leaves a summary of the
    scenes it finished, the one it was running, and those it had not started."""
    import geoseg.workflow

    d = tmp_path / "s"
    d.mkdir()
    for n in ("a", "b", "c"):
        shutil.copy(tiny_scene, d / f"{n}.tif")
    out = tmp_path / "out"
    seen = []
    real = geoseg.workflow.run_predict

    def look(*args, **kwargs):  # the summary on disk as each scene starts
        seen.append([r["status"] for r in json.loads((out / "summary.json").read_text())])
        return real(*args, **kwargs)

    monkeypatch.setattr(geoseg.workflow, "run_predict", look)
    run_batch(parse_manifest(str(d / "*.tif")), tiny_bundle, out, scheduler="sync", vector=False)
    assert seen == [
        ["running", "not started", "not started"],
        ["done", "running", "not started"],
        ["done", "done", "running"],
    ]
    assert [r["status"] for r in json.loads((out / "summary.json").read_text())] == ["done"] * 3


def test_a_scene_stopped_by_ctrl_c_is_interrupted_in_the_summary(
    tmp_path, tiny_scene, tiny_bundle, monkeypatch
):
    """Ctrl-C inside a scene: that scene is 'interrupted', the next 'not started', the
    heading says how to go on; a later batch reads a killed run's 'running' row as
    'interrupted'."""
    import geoseg.workflow

    d = tmp_path / "s"
    d.mkdir()
    for n in ("a", "b", "c"):
        shutil.copy(tiny_scene, d / f"{n}.tif")
    out = tmp_path / "out"
    real = geoseg.workflow.run_predict

    def stop_at_b(scene, *args, **kwargs):
        if str(scene).endswith("b.tif"):
            raise KeyboardInterrupt
        return real(scene, *args, **kwargs)

    monkeypatch.setattr(geoseg.workflow, "run_predict", stop_at_b)
    with pytest.raises(KeyboardInterrupt):
        run_batch(
            parse_manifest(str(d / "*.tif")), tiny_bundle, out, scheduler="sync", vector=False
        )
    rows = json.loads((out / "summary.json").read_text())
    # c may have started in the pool's thread before the batch saw b's interrupt
    assert [r["status"] for r in rows][:2] == ["done", "interrupted"]
    assert rows[2]["status"] in ("not started", "interrupted")
    assert (
        (out / "summary.md")
        .read_text()
        .startswith(
            "# Batch summary: 1 of 3 scenes done, interrupted: --resume continues the batch"
        )
    )
    # as a killed batch leaves it: b running; a later batch of a alone keeps b's row
    rows[1]["status"] = "running"
    (out / "summary.json").write_text(json.dumps(rows))
    monkeypatch.setattr(geoseg.workflow, "run_predict", real)
    run_batch(
        parse_manifest(str(d / "a.tif")),
        tiny_bundle,
        out,
        scheduler="sync",
        vector=False,
        resume=True,
    )
    statuses = {
        Path(r["out"]).name: r["status"] for r in json.loads((out / "summary.json").read_text())
    }
    assert statuses == {"a": "kept", "b": "interrupted", "c": rows[2]["status"]}


def test_scenes_of_nested_out_names_each_have_their_row(tmp_path, tiny_scene, tiny_bundle):
    d = tmp_path / "s"
    d.mkdir()
    for n in ("a", "b"):
        shutil.copy(tiny_scene, d / f"{n}.tif")
    (d / "list.csv").write_text("scene,out\na.tif,r1/x,\nb.tif,r2/x,\n")  # trailing commas
    out = tmp_path / "out"
    res = run_batch(
        parse_manifest(d / "list.csv"), tiny_bundle, out, scheduler="sync", vector=False
    )
    assert [r.status for r in res] == ["done", "done"]
    rows = json.loads((out / "summary.json").read_text())
    assert [(Path(r["out"]).relative_to(out).as_posix(), r["status"]) for r in rows] == [
        ("r1/x", "done"),
        ("r2/x", "done"),
    ]


def test_batch_takes_predict_s_tiling_precision_and_polygon_options(
    tmp_path, tiny_scene, tiny_bundle
):
    """A mixed cluster needs a fixed precision; cartographic polygons need --mmu and
    --simplify: batch passes them to every scene as predict does."""
    d = tmp_path / "s"
    d.mkdir()
    shutil.copy(tiny_scene, d / "a.tif")
    out = tmp_path / "out"
    args = ["batch", str(d / "*.tif"), "--model", str(tiny_bundle), "--out", str(out), "-q"]
    args += ["--precision", "fp32", "--tile-size", "32", "--block-size", "64", "--halo", "16"]
    args += ["--mmu", "1800", "--simplify", "30", "--no-channels-last"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    run = json.loads((out / "a" / "run.json").read_text())
    p = run["parameters"]
    assert (p["tile_size"], p["block_size"], p["halo"]) == (32, 64, 16)
    assert p["precision"] == "fp32" and p["channels_last"] is False
    assert (p["vector"]["mmu"], p["vector"]["simplify"]) == (1800.0, 30.0)


def test_a_batch_that_cannot_start_leaves_no_folder(tmp_path, tiny_scene, tiny_bundle):
    """No cluster at the address: nothing ran, so nothing is left (it left a folder
    holding only its marker)."""
    import socket

    from geoseg.cluster import ClusterError

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "new" / "deeper" / "out"
    with pytest.raises(ClusterError):
        run_batch(
            parse_manifest(str(tiny_scene)),
            tiny_bundle,
            out,
            scheduler=f"tcp://127.0.0.1:{port}",
            vector=False,
        )
    assert not (tmp_path / "new").exists()
