"""Outputs appear whole or not at all, also when Ctrl-C comes at the wrong moment."""

import os
import shutil
import signal
from pathlib import Path

import pytest

import geoseg.atomic as atomic


def test_a_second_ctrl_c_during_cleanup_does_not_leave_a_half_removed_folder(tmp_path, monkeypatch):
    """A Ctrl-C while a failed run's temporary folder is removed waits until it is gone."""
    real = shutil.rmtree

    def rmtree_interrupted(path, ignore_errors=False):
        next(p for p in Path(path).rglob("*") if p.is_file()).unlink()  # under way...
        os.kill(os.getpid(), signal.SIGINT)  # ...when the second Ctrl-C comes
        real(path, ignore_errors=ignore_errors)

    monkeypatch.setattr(atomic.shutil, "rmtree", rmtree_interrupted)
    with pytest.raises(KeyboardInterrupt), atomic.atomic_dir(tmp_path / "out") as tmp:
        for i in range(5):
            (tmp / f"f{i}").write_text("x")
        raise KeyboardInterrupt  # the first
    assert list(tmp_path.iterdir()) == []


def test_a_ctrl_c_between_the_renames_of_a_replacement_keeps_an_output(tmp_path, monkeypatch):
    """Replacing an output takes two renames (old aside, new in): a Ctrl-C between them
    is held until the new output is in place, then raised."""
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "old").write_text("old")
    new = tmp_path / "new"
    new.mkdir()
    (new / "labels").write_text("new")
    real = os.replace
    done = []

    def replace(src, dst):
        real(src, dst)
        done.append(dst)
        if len(done) == 1:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(atomic.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        atomic.replace_dir(new, dest)
    assert (dest / "labels").read_text() == "new" and len(done) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the old one removed


def test_interrupts_are_handled_as_before_outside_the_held_steps():
    """The handler in place before a held step is back after it."""
    before = signal.getsignal(signal.SIGINT)
    with atomic.interrupts_deferred():
        assert signal.getsignal(signal.SIGINT) is not before
    assert signal.getsignal(signal.SIGINT) is before


def test_a_sigterm_during_cleanup_is_delivered_after_it(tmp_path, monkeypatch):
    """``kill`` (SIGTERM, turned into Terminated by the CLI) is held the same way."""
    from geoseg.errors import Terminated, stop_on_sigterm

    before = signal.getsignal(signal.SIGTERM)
    stop_on_sigterm()
    try:
        real = shutil.rmtree

        def rmtree_interrupted(path, ignore_errors=False):
            os.kill(os.getpid(), signal.SIGTERM)
            real(path, ignore_errors=ignore_errors)

        monkeypatch.setattr(atomic.shutil, "rmtree", rmtree_interrupted)
        folder = tmp_path / "tmp"
        folder.mkdir()
        (folder / "f").write_text("x")
        with pytest.raises(Terminated):
            atomic.remove_tree(folder)
        assert not folder.exists()
    finally:
        signal.signal(signal.SIGTERM, before)


def test_without_overwrite_the_advice_is_what_overwrite_would_do(tmp_path):
    """A folder --overwrite would refuse is refused with that reason at once, not with
    advice to pass --overwrite; an output geoseg wrote is offered --overwrite."""
    from geoseg.atomic import atomic_dir, check_writable
    from geoseg.errors import OutputExistsError

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.docx").write_text("years of work")
    with pytest.raises(OutputExistsError, match="geoseg did not write it") as err:
        check_writable(foreign, overwrite=False)
    assert "pass --overwrite" not in str(err.value)
    plain = tmp_path / "file.txt"
    plain.write_text("x")
    with pytest.raises(OutputExistsError, match="is a file, not an output folder"):
        check_writable(plain, overwrite=False)
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "labels.tif").write_text("labels")
    with pytest.raises(OutputExistsError, match="pass --overwrite"):
        check_writable(tmp_path / "out", overwrite=False)
    check_writable(tmp_path / "out", overwrite=True)


def test_a_folder_that_takes_no_file_is_refused_before_the_work(tmp_path, monkeypatch):
    """A read-only output folder is one line naming the output, not a hidden temporary
    path after the work (root ignores permissions, so the folder's refusal is made)."""
    from geoseg.errors import OutputNotWritableError

    locked = tmp_path / "locked"
    locked.mkdir()
    real = atomic.tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if Path(dir) == locked:
            raise PermissionError(13, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(atomic.tempfile, "mkstemp", mkstemp)
    for dest in (locked / "out", locked / "new" / "deeper" / "out", locked / "p.gpkg"):
        with pytest.raises(OutputNotWritableError, match=r"cannot write in .*locked \(Permission"):
            atomic.check_writable(dest, overwrite=False)
    atomic.check_writable(tmp_path / "elsewhere", overwrite=False)
    assert not list(tmp_path.glob(".geoseg-probe-*"))  # the probe leaves nothing


def test_overwrite_replaces_only_an_output_of_the_same_kind(tmp_path, tiny_bundle, tiny_scene):
    from click.testing import CliRunner

    from geoseg.cli import cli

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    report = tmp_path / "report"
    with atomic.atomic_dir(report, output="report") as tmp:
        (tmp / "metrics.json").write_text("{}")
    for dest, output, what in [
        (bundle, "map", r"is a model bundle \(bundle.json\), and this run writes a label map"),
        (report, "bundle", r"is an evaluation report \(metrics.json\), and this run writes a"),
    ]:
        for overwrite in (False, True):  # said at once, not after "pass --overwrite"
            with pytest.raises(atomic.OutputExistsError, match=what):
                atomic.check_writable(dest, overwrite=overwrite, output=output)
    atomic.check_writable(report, overwrite=True, output="report")  # the same kind: fine
    # a merge sent to a bundle's folder by mistake keeps the bundle
    from geoseg.workflow import run_predict

    run_predict(tiny_scene, tiny_bundle, tmp_path / "map0", vector=False)
    shutil.copytree(tmp_path / "map0", tmp_path / "map1")
    maps = [str(tmp_path / f"map{i}" / "labels.tif") for i in range(2)]
    res = CliRunner().invoke(cli, ["merge", *maps, "--out", str(bundle), "--overwrite"])
    assert res.exit_code == 1 and "is a model bundle" in res.output
    assert (bundle / "weights.safetensors").exists() and (bundle / "bundle.json").exists()


def test_a_killed_run_s_temporary_folder_is_removed_by_the_next_run(tmp_path):
    import socket
    import subprocess
    import sys

    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                           capture_output=True, text=True)  # fmt: skip
    dead = int(child.stdout)
    host = socket.gethostname()
    debris = tmp_path / f".out.tmp-{host}-{dead}-abc_1234"
    live = tmp_path / f".out.tmp-{host}-{os.getppid()}-xyz98765"  # a run still going
    elsewhere = tmp_path / f".out.tmp-other-host-{dead}-qqq11111"  # another machine's
    other = tmp_path / f".outer.tmp-{host}-{dead}-abc_1234"  # another output's
    for d in (debris, live, elsewhere, other):
        (d / "labels.tif").parent.mkdir()
        (d / "labels.tif").write_bytes(b"half")
    with atomic.atomic_dir(tmp_path / "out") as tmp:
        assert tmp.name.startswith(f".out.tmp-{host}-{os.getpid()}-")
        (tmp / "run.json").write_text("{}")
    assert not debris.exists()
    assert live.exists() and elsewhere.exists() and other.exists()
    assert (tmp_path / "out" / "run.json").exists()


# --- one run per output at a time ------------------------------------------------------

HOLD = (
    "import sys, time\n"
    "from geoseg.atomic import output_lock\n"
    "with output_lock(sys.argv[1]):\n"
    "    print('held', flush=True)\n"
    "    time.sleep(60)\n"
)


def _hold_in_another_process(dest: Path):
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(dest)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def _stop(proc) -> None:
    proc.kill()
    proc.wait()
    proc.stdout.close()


def test_an_output_another_process_writes_is_refused_until_it_dies(tmp_path):
    from geoseg.errors import OutputBusyError

    dest = tmp_path / "out"
    proc = _hold_in_another_process(dest)
    try:
        busy = rf"another geoseg run \(PID {proc.pid} on "
        with pytest.raises(OutputBusyError, match=busy), atomic.output_lock(dest):
            pass
        assert (tmp_path / ".out.geoseg-lock").exists()
    finally:
        _stop(proc)  # SIGKILL: no clean-up; the system releases the lock
    with atomic.output_lock(dest):  # the dead run's lock file is taken over
        assert (tmp_path / ".out.geoseg-lock").read_text().startswith(f"PID {os.getpid()} ")
    assert not (tmp_path / ".out.geoseg-lock").exists()


def test_an_output_another_thread_writes_is_refused_and_the_same_thread_nests(tmp_path):
    import threading

    from geoseg.errors import OutputBusyError

    dest = tmp_path / "out"
    errors: list[Exception] = []

    def other() -> None:
        try:
            with atomic.output_lock(dest):
                pass
        except OutputBusyError as exc:
            errors.append(exc)

    with atomic.output_lock(dest):
        with atomic.output_lock(dest):  # a job inside a job
            pass
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert len(errors) == 1 and "another run in this process" in str(errors[0])
    other()  # free again
    assert len(errors) == 1


def test_folders_made_for_a_lock_go_when_the_run_fails(tmp_path):
    dest = tmp_path / "a" / "b" / "out"
    with pytest.raises(RuntimeError), atomic.output_lock(dest):
        assert (tmp_path / "a" / "b" / ".out.geoseg-lock").exists()
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []
    with atomic.output_lock(dest):
        dest.mkdir()
    assert [p.name for p in (tmp_path / "a" / "b").iterdir()] == ["out"]


def test_jobs_refuse_an_output_another_run_writes(tiny_scene, tiny_bundle, tmp_path):
    from click.testing import CliRunner

    from geoseg import api
    from geoseg.cli import cli
    from geoseg.errors import OutputBusyError

    out = tmp_path / "maps" / "run"
    proc = _hold_in_another_process(out)
    try:
        result = CliRunner().invoke(
            cli, ["predict", str(tiny_scene), "--model", str(tiny_bundle), "--out", str(out)]
        )
        assert result.exit_code == 1, result.output
        lines = [ln for ln in result.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and "another geoseg run (PID" in lines[0]
        with pytest.raises(OutputBusyError, match="wait for it to end"):
            api.predict(tiny_scene, tiny_bundle, out, vector=False)
        with pytest.raises(OutputBusyError):
            api.train({"data": {}}, out)  # refused before the config is even read
    finally:
        _stop(proc)
    assert not out.exists()
    api.predict(tiny_scene, tiny_bundle, out, vector=False)
    assert (out / "labels.tif").exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["run"]  # no lock file left


def test_a_file_system_without_locks_runs_unlocked(tmp_path, monkeypatch):
    """Lustre without flock, NFS without its lock daemon: ENOLCK is not 'busy'."""
    import errno
    import fcntl

    def no_locks(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with atomic.output_lock(tmp_path / "out"):
        (tmp_path / "out").mkdir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_lock_whose_note_cannot_be_written_still_works(tmp_path, monkeypatch):
    """A full disk: the holder's line is for messages only."""

    def full(*args: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "pwrite", full)
    with atomic.output_lock(tmp_path / "out"):
        assert (tmp_path / ".out.geoseg-lock").exists()
    assert not (tmp_path / ".out.geoseg-lock").exists()
    with atomic.output_lock(tmp_path / "out"):  # released: taken again
        pass
