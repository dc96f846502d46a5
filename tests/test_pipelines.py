"""The SLURM batch job, with a stand-in for dask-jobqueue (no SLURM cluster here).

The stand-in's "jobs" are ``dask worker`` processes started two seconds after ``scale``
was called, as SLURM jobs start when the queue runs them: what the script must wait
for. Everything else (the scheduler, the workers, the batch, the outputs) is real.
"""

from __future__ import annotations

import importlib.util
import shutil
import textwrap

import pytest

from .conftest import ROOT

FAKE_JOBQUEUE = """
import subprocess
import sys
import threading
from pathlib import Path

from distributed import LocalCluster


class SLURMCluster(LocalCluster):
    def __init__(self, **settings):
        assert settings["processes"] == 1  # the preset reached the cluster
        self.jobs = []  # before the cluster starts: a start that fails is closed at exit
        super().__init__(n_workers=0, dashboard_address=":0")

    def scale(self, n=None, jobs=0, **kwargs):  # the jobs start a while later
        dask = str(Path(sys.executable).parent / "dask")
        cmd = [dask, "worker", self.scheduler_address, "--nthreads", "1", "--no-dashboard"]
        start = lambda: self.jobs.extend(subprocess.Popen(cmd) for _ in range(jobs))
        threading.Timer(2.0, start).start()

    def close(self, *args, **kwargs):
        for job in self.jobs:
            job.terminate()
            job.wait()
        return super().close(*args, **kwargs)
"""


@pytest.fixture
def slurm_batch(tmp_path, monkeypatch):
    import signal

    before = signal.getsignal(signal.SIGTERM)  # the job installs its own: not for pytest
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "dask_jobqueue.py").write_text(textwrap.dedent(FAKE_JOBQUEUE))
    monkeypatch.syspath_prepend(str(fake))
    spec = importlib.util.spec_from_file_location(
        "slurm_batch", ROOT / "pipelines" / "slurm_batch.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    yield mod.main
    signal.signal(signal.SIGTERM, before)


def test_slurm_batch_waits_for_its_jobs_and_resumes(
    slurm_batch, tmp_path, tiny_scene, tiny_bundle, capsys
):
    d = tmp_path / "scenes"
    d.mkdir()
    for n in ("a", "b"):
        shutil.copy(tiny_scene, d / f"{n}.tif")
    out = tmp_path / "maps"
    args = [str(d / "*.tif"), "--model", str(tiny_bundle), "--out", str(out), "--jobs", "1"]
    assert slurm_batch([*args, "--no-vector", "--wait", "60"]) == 0, capsys.readouterr().err
    assert (out / "a" / "labels.tif").exists() and (out / "b" / "labels.tif").exists()
    assert slurm_batch([*args, "--no-vector"]) == 1  # the same batch again: refused
    assert "--resume" in capsys.readouterr().err
    assert slurm_batch([*args, "--no-vector", "--resume"]) == 0
    assert capsys.readouterr().out.count("kept") == 2


@pytest.mark.parametrize(
    ("preset", "message"),
    [
        (None, "preset file not found"),
        ("jobqueue: [unclosed", "not valid YAML"),
        ("jobqueue:\n  pbs: {cores: 2}\n", "no 'jobqueue: slurm:' settings"),
    ],
)
def test_slurm_batch_bad_preset_is_one_line(
    slurm_batch, tmp_path, tiny_scene, tiny_bundle, capsys, preset, message
):
    cfg = tmp_path / "preset.yaml"
    if preset is not None:
        cfg.write_text(preset)
    args = [str(tiny_scene), "--model", str(tiny_bundle), "--out", str(tmp_path / "o")]
    assert slurm_batch([*args, "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
