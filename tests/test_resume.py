"""Checkpoint and resume: kill -9 and re-run, interrupted checkpoint writes, skipped finished jobs."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# long enough (a few seconds: ~150 steps/s) to be killed between two checkpoints
SLOW_RUN = [
    "experiment=smoke",
    "task.length=30",
    "model.hidden_size=16",
    "trainer.batch_size=16",
    "trainer.steps=300",
    "trainer.eval_every=25",
    "trainer.checkpoint_every=50",
    "seeds=[0,1]",
]
QUICK_RUN = ["experiment=smoke", "trainer.steps=40", "trainer.eval_every=10"]


def command(*args):
    return [sys.executable, "-m", "seqbench.cli.train", *args]


def environment():
    repo = Path(__file__).resolve().parent.parent
    return {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(repo)}


def results(folder):
    record = json.loads((folder / "run.json").read_text())
    return record, {k: record[k] for k in ("per_seed", "summary")}, record["curves"]


def checkpoint_steps(folder):
    found = folder / "checkpoints"
    return (
        sorted(int(p.name) for p in found.iterdir() if p.name.isdigit()) if found.is_dir() else []
    )


def test_a_run_killed_mid_training_resumes_to_the_same_numbers(run_cli, tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert run_cli(*SLOW_RUN, f"output_dir={whole}").returncode == 0
    process = subprocess.Popen(
        command(*SLOW_RUN, f"output_dir={killed}"),
        cwd=tmp_path,
        env=environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240  # killed between two checkpoints, well before the end
    while time.monotonic() < deadline and process.poll() is None:
        steps = checkpoint_steps(killed)
        if steps and 50 <= steps[-1] <= 200:
            break
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert json.loads((killed / "run.json").read_text())["status"] == "running"
    stopped_at = checkpoint_steps(killed)[-1]

    done = run_cli(*SLOW_RUN, f"output_dir={killed}")
    assert done.returncode == 0, done.stderr
    assert f"resuming from step {stopped_at}" in done.stderr
    record, numbers, curves = results(killed)
    _, expected_numbers, expected_curves = results(whole)
    assert record["status"] == "completed" and len(record["resumed"]) == 1
    assert record["timing"]["resumed_from_step"] == stopped_at
    assert numbers == expected_numbers  # exactly: same floats, bit for bit
    assert curves == expected_curves


def test_an_interrupted_checkpoint_write_leaves_the_previous_one_usable(run_cli, tmp_path):
    folder = tmp_path / "run"
    assert run_cli(*QUICK_RUN, f"output_dir={folder}").returncode == 0
    _, expected, _ = results(folder)
    assert checkpoint_steps(folder) == [30, 40]
    record = json.loads((folder / "run.json").read_text())
    record["status"] = "running"  # as if killed while writing the final checkpoint
    (folder / "run.json").write_text(json.dumps(record))
    shutil.rmtree(folder / "checkpoints" / "40")
    partial = folder / "checkpoints" / "40.orbax-checkpoint-tmp-1234567"
    (partial / "state").mkdir(parents=True)
    (partial / "state" / "half-written").write_bytes(b"\0" * 100)
    done = run_cli(*QUICK_RUN, f"output_dir={folder}")
    assert done.returncode == 0, done.stderr
    assert "resuming from step 30" in done.stderr
    assert results(folder)[1] == expected


@pytest.mark.slow
def test_a_corrupt_checkpoint_is_one_line_and_keeps_the_record(run_cli, tmp_path):
    folder = tmp_path / "run"
    assert run_cli(*QUICK_RUN, f"output_dir={folder}").returncode == 0
    record = json.loads((folder / "run.json").read_text())
    record["status"] = "running"
    (folder / "run.json").write_text(json.dumps(record))
    for path in (folder / "checkpoints").rglob("*"):  # every one: a bad one alone is set aside
        if path.is_file() and path.stat().st_size > 0:
            path.write_bytes(b"garbage")
    done = run_cli(*QUICK_RUN, f"output_dir={folder}")
    assert done.returncode == 2
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("seqbench-train: error:")]
    assert "checkpoint" in line and "cannot be read" in line
    kept = json.loads((folder / "run.json").read_text())
    assert kept["per_seed"] == record["per_seed"] and kept["status"] == "failed"


@pytest.mark.slow
def test_resume_auto_finds_the_unfinished_run_of_the_same_job(run_cli, tmp_path):
    outputs = tmp_path / "outputs"
    first = outputs / "first"
    common = [*QUICK_RUN, f"paths.outputs={outputs}"]
    assert run_cli(*common, f"output_dir={first}").returncode == 0
    _, expected, _ = results(first)
    record = json.loads((first / "run.json").read_text())
    record["status"] = "running"
    (first / "run.json").write_text(json.dumps(record))
    shutil.rmtree(first / "checkpoints" / "40")
    done = run_cli(*common, "resume=auto", f"hydra.run.dir={outputs / 'second'}")
    assert done.returncode == 0, done.stderr
    assert f"-> {first} (resuming from step 30)" in done.stderr
    assert results(first)[1] == expected
    other = run_cli(*common, "resume=auto", "seeds=[5]", f"hydra.run.dir={outputs / 'third'}")
    assert other.returncode == 0 and (outputs / "third" / "run.json").is_file()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["model=gru"], "holds a run of another configuration"),
        (["resume=never"], "already holds a run"),
    ],
)
def test_a_used_output_directory_is_refused_without_changing_it(run_cli, tmp_path, extra, message):
    folder = tmp_path / "run"
    assert run_cli(*QUICK_RUN, f"output_dir={folder}").returncode == 0
    before = (folder / "run.json").read_text()
    done = run_cli(*QUICK_RUN, *extra, f"output_dir={folder}")
    assert done.returncode == 2 and message in done.stderr
    assert (folder / "run.json").read_text() == before
