"""A run's lifetime: one process per folder, SIGINT/SIGTERM stop at a chunk boundary and leave a
resumable record, and jobs of a killed parallel sweep stop with it."""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_resume import SLOW_RUN, checkpoint_steps, command, environment, results

QUICK = ["experiment=smoke", "trainer.steps=40", "trainer.eval_every=10"]


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def start(args, cwd, stderr=subprocess.PIPE):
    return subprocess.Popen(
        command(*args), cwd=cwd, env=environment(), stdout=subprocess.DEVNULL, stderr=stderr
    )


def wait_for(condition, process, seconds=240):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None and not condition():
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be signalled"
    assert condition(), "timed out"


def messages(stderr):
    """The `seqbench-train:` lines of a run's stderr (not its progress bars or start line)."""
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("seqbench-train:")]


def test_a_second_run_in_a_locked_folder_is_refused_with_one_line(run_cli, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "note.txt").write_text("the holder's files")
    with open(folder / "run.lock", "w") as lock:  # held by this process, as a running job would
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        before = snapshot(folder)
        done = run_cli(*QUICK, f"hydra.run.dir={folder}")
        assert done.returncode == 2, done.stderr[-2000:]
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith("seqbench-train: error:") and f"(pid {os.getpid()})" in line
        assert "in use" in line
        assert snapshot(folder) == before  # no record, no .hydra files, no log


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from seqbench.lifecycle import lock_folder; "
            "lock_folder(sys.argv[1]); print('held', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        env=environment(),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    assert (tmp_path / "run.lock").read_text().strip() == str(holder.pid)
    from seqbench.lifecycle import FolderBusy, FolderLock

    with pytest.raises(FolderBusy, match=f"pid {holder.pid}"):
        FolderLock(tmp_path).acquire()
    holder.kill()
    holder.wait()
    lock = FolderLock(tmp_path)
    lock.acquire()  # the OS dropped the dead holder's lock
    assert (tmp_path / "run.lock").read_text().strip() == str(os.getpid())
    lock.release()


def test_sigterm_stops_at_a_chunk_boundary_with_a_checkpoint_and_one_line(tmp_path):
    folder = tmp_path / "run"
    process = start([*SLOW_RUN, f"output_dir={folder}"], tmp_path)
    wait_for(lambda: checkpoint_steps(folder), process)
    process.send_signal(signal.SIGTERM)
    stderr = process.communicate(timeout=120)[1].decode()
    assert process.returncode == 143, stderr[-3000:]
    record = json.loads((folder / "run.json").read_text())
    step = record["interrupted"]["step"]
    assert record["status"] == "interrupted" and record["interrupted"]["by"] == "SIGTERM"
    assert 50 <= step < 300 and step % 25 == 0 and step in checkpoint_steps(folder)
    assert messages(stderr) == [
        f"seqbench-train: interrupted by SIGTERM at step {step} of 300; checkpoint saved; "
        "re-run the same command to continue"
    ]


@pytest.mark.slow
def test_sigint_stops_and_the_rerun_equals_an_uninterrupted_run(run_cli, tmp_path):
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    assert run_cli(*SLOW_RUN, f"output_dir={whole}").returncode == 0
    process = start([*SLOW_RUN, f"output_dir={stopped}"], tmp_path)
    wait_for(lambda: checkpoint_steps(stopped), process)
    process.send_signal(signal.SIGINT)
    stderr = process.communicate(timeout=120)[1].decode()
    assert process.returncode == 130, stderr[-3000:]
    (line,) = messages(stderr)
    step = json.loads((stopped / "run.json").read_text())["interrupted"]["step"]
    assert f"interrupted by SIGINT at step {step} of 300; checkpoint saved" in line
    done = run_cli(*SLOW_RUN, f"output_dir={stopped}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resuming from step {step}" in done.stderr
    record, numbers, curves = results(stopped)
    _, expected_numbers, expected_curves = results(whole)
    assert record["status"] == "completed" and "interrupted" not in record
    assert numbers == expected_numbers and curves == expected_curves


@pytest.mark.slow
def test_a_second_ctrl_c_ends_the_run_at_once_and_leaves_it_resumable(run_cli, tmp_path):
    folder = tmp_path / "run"
    process = start([*SLOW_RUN, f"output_dir={folder}"], tmp_path)
    wait_for(lambda: checkpoint_steps(folder), process)
    process.send_signal(signal.SIGINT)
    time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stderr = process.communicate(timeout=5)[1].decode()
    assert process.returncode == 130
    assert messages(stderr) == [
        "seqbench-train: second SIGINT: exiting at once; the last checkpoint stays usable"
    ]
    assert json.loads((folder / "run.json").read_text())["status"] in ("running", "interrupted")
    done = run_cli(*SLOW_RUN, f"output_dir={folder}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming from step" in done.stderr


@pytest.mark.slow
def test_a_signal_before_training_starts_stops_before_the_first_chunk(tmp_path):
    folder = tmp_path / "run"
    process = start([*SLOW_RUN, f"output_dir={folder}"], tmp_path)
    wait_for(lambda: (folder / "run.json").is_file(), process)  # compiling now
    process.send_signal(signal.SIGTERM)
    stderr = process.communicate(timeout=120)[1].decode()
    assert process.returncode == 143, stderr[-3000:]
    record = json.loads((folder / "run.json").read_text())
    assert record["status"] == "interrupted" and record["interrupted"]["step"] == 0
    assert messages(stderr) == [
        "seqbench-train: interrupted by SIGTERM at step 0 of 300; nothing trained yet; "
        "re-run the same command to start it"
    ]


def alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_workers_of_a_killed_parallel_sweep_stop_with_it(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    sweep = tmp_path / "sweep"
    longer = [a for a in SLOW_RUN if not a.startswith("trainer.steps=")]
    args = ["--multirun", "hydra/launcher=local_parallel", "model=lstm,gru", *longer]
    args += ["trainer.steps=3000", "trainer.progress=false"]
    parent = start([*args, f"hydra.sweep.dir={sweep}"], tmp_path, stderr=subprocess.DEVNULL)
    wait_for(lambda: all(checkpoint_steps(sweep / job) for job in "01"), parent)
    children = subprocess.run(
        ["pgrep", "-P", str(parent.pid)], capture_output=True, text=True
    ).stdout.split()
    workers = [p for p in children if "LokyProcess" in Path(f"/proc/{p}/cmdline").read_text()]
    assert len(workers) == 2, children
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(alive(p) for p in workers):
        time.sleep(0.1)
    assert not any(alive(p) for p in workers), "workers outlived their sweep"
    for job in "01":
        record = json.loads((sweep / job / "run.json").read_text())
        assert record["status"] == "interrupted", record["status"]
        assert record["interrupted"]["step"] in checkpoint_steps(sweep / job)
