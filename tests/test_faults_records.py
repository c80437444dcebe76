"""Faults in run records and what reads them: records of the wrong shape, runs without a finite
value, sweeps with failed jobs, report options that match nothing (issue 13, cases 6, 7 and 10)."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from seqbench import records
from seqbench.cli.report import main as cli_main

REPO = Path(__file__).resolve().parent.parent
COMMITTED = REPO / "results" / "default_benchmark"


def committed(index=0):
    """A committed run record (0-2: adding with simple_rnn, lstm, gru; 3-5: copy_memory)."""
    return json.loads((COMMITTED / str(index) / "run.json").read_text())


def write(folder, record):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.json").write_text(json.dumps(record))
    return folder / "run.json"


def unfinished(status, index=0):
    """A committed record as it stands when its run is still going or failed: no results."""
    record = committed(index)
    for key in ("per_seed", "summary", "curves"):
        record.pop(key)
    record.update(status=status, finished=None)
    if status == "failed":
        record["error"] = "RuntimeError: device lost"
    return record


def without(record, *keys):
    return {k: v for k, v in record.items() if k not in keys}


def all_non_finite(index=0):
    """A committed record rebuilt as the trainer writes a run whose every seed is non-finite from
    its first evaluation: per-seed summaries and aggregates computed by seqbench itself."""
    record = committed(index)
    steps = np.asarray(record["curves"]["eval_steps"])
    nan = np.full((len(steps), len(record["seeds"])), np.nan)
    evals = {key: nan for key in record["curves"]["eval"]}
    per_seed = records.seed_summaries(
        np.asarray(record["seeds"]),
        steps,
        evals,
        record["task"]["metrics"],
        record["task"]["primary_metric"],
        np.zeros(len(record["seeds"]), dtype=int),
    )
    summary = {
        "final": records.aggregate(per_seed, "final"),
        "best": records.aggregate(per_seed, "best"),
    }
    record.update(
        status="diverged",
        per_seed=json.loads(json.dumps(records.json_ready(per_seed))),
        summary=json.loads(json.dumps(records.json_ready(summary))),
        curves={**record["curves"], "eval": {k: nan.tolist() for k in evals}},
    )
    return json.loads(json.dumps(records.json_ready(record)))


# --- case 6: records of the wrong shape -------------------------------------------------------

ISSUE_SHAPES = {  # the three records of the issue, and the field the warning names
    "empty": ({}, "not a run record"),
    "config null": ({**committed(), "config": None}, "'config' is null, expected an object"),
    "no task": (without(committed(), "task"), "'task' is missing"),
}


@pytest.mark.parametrize(
    ("shape", "command"),
    [(shape, command) for shape in ISSUE_SHAPES for command in ("runs", "table")]
    + [("config null", "plot")],  # matplotlib is slow to start: one plot
)
def test_a_record_of_the_wrong_shape_is_skipped_with_one_warning(tmp_path, capsys, command, shape):
    bad, field = ISSUE_SHAPES[shape]
    for i in (0, 1):
        write(tmp_path / "sweep" / str(i), committed(i))
    bad_path = write(tmp_path / "sweep" / "bad", bad)
    extra = ["--out", str(tmp_path / "curves")] if command == "plot" else []
    cli_main([command, str(tmp_path / "sweep"), *extra])
    captured = capsys.readouterr()
    warning = f"seqbench: warning: skipping malformed run record {bad_path}: {field}"
    assert captured.err.startswith(warning) and captured.err.count("\n") == 1, captured.err
    if command == "runs":
        assert len(captured.out.splitlines()) == 2 and "lstm" in captured.out
    elif command == "table":
        assert "| adding (T=100) | mse ↓ | 0.1667 |" in captured.out and "lstm" in captured.out
    else:
        assert (tmp_path / "curves.png").is_file()


def mutate(path, value):
    """A committed record with the dotted `path` set to `value` (deleted when value is DELETE)."""
    record = committed()
    *parents, last = path.split(".")
    node = record
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        last = int(last)
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return record


DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("name", DELETE, "'name' is missing (expected a string)"),
        ("status", "done", "'status' is 'done', expected one of running, completed, diverged"),
        ("config.model", [], "'config.model' is a list, expected an object"),
        ("config.tags", "paper", "'config.tags' is 'paper', expected a list of strings or null"),
        ("seeds", [0, "1"], "'seeds' is a list, expected a list of integers"),
        ("task.name", None, "'task.name' is null, expected a string"),
        ("task.metrics", {}, "'task.metrics' is an object, expected an object {metric: \"min\""),
        ("task.metrics", {"mse": "down"}, "'task.metrics' is an object"),
        ("task.primary_metric", "acc", "'task.primary_metric' is 'acc', expected one of mse"),
        ("task.primary_metric", ["mse"], "'task.primary_metric' is a list"),
        ("task.baseline", {"mse": "low"}, "'task.baseline' is an object, expected an object"),
        ("model", None, "'model' is null, expected an object"),
        ("model.architecture", DELETE, "'model.architecture' is missing"),
        ("model.param_count", "5k", "'model.param_count' is '5k', expected an integer"),
        ("per_seed", DELETE, "'per_seed' is missing (expected a list of objects)"),
        ("per_seed", None, "'per_seed' is null"),
        ("per_seed.1", 0.5, "'per_seed' is a list, expected a list of objects"),
        ("per_seed.0.seed", None, "'per_seed[0].seed' is null, expected an integer"),
        ("per_seed.0.best", [0.1], "'per_seed[0].best' is a list"),
        ("summary.best", [], "'summary.best' is a list"),
        ("summary.best.test/mse.mean", "0.1", "'summary.best.test/mse.mean' is '0.1'"),
        ("curves.eval_steps", 3, "'curves.eval_steps' is a number, expected a list of numbers"),
        ("curves.eval.test/mse", [[0.1, 0.2, 0.3]], "'curves.eval.test/mse' has shape (1, 3)"),
        ("curves.eval.test/mse", [["x"]], "'curves.eval.test/mse' is not an array of numbers"),
        ("timing", [], "'timing' is a list"),
        ("timing.wall_s", "25s", "'timing.wall_s' is '25s', expected a number or null"),
        ("started", 20261128, "'started' is a number, expected a string or null"),
    ],
)
def test_load_record_names_the_first_bad_field_on_one_line(tmp_path, path, value, message):
    record_path = write(tmp_path, mutate(path, value))
    with pytest.raises(ValueError) as raised:
        records.load_record(tmp_path)
    text = str(raised.value)
    assert text.startswith(f"malformed run record {record_path}: ") and "\n" not in text
    assert message in text, text


def test_a_format_1_record_of_the_wrong_shape_is_malformed_not_a_crash(tmp_path):
    record = {**committed(), "schema_version": 1, "per_seed": ["seed 0"], "summary": [1]}
    write(tmp_path, record)
    with pytest.raises(ValueError, match=r"'per_seed' is a list, expected a list of objects"):
        records.load_record(tmp_path)


def test_unfinished_records_need_no_results_and_every_committed_record_is_valid(tmp_path):
    for status in ("running", "failed"):
        write(tmp_path / status, unfinished(status))
        assert records.load_record(tmp_path / status).status == status
    for path in sorted(COMMITTED.glob("*/run.json")):
        records.check_record(json.loads(path.read_text()), path)
    write(tmp_path / "flow", {**committed(), "gradient_flow": {"steps": [0], "norm": [[[1.0]]]}})
    with pytest.raises(ValueError, match=r"'gradient_flow.norm\[0\]' has shape \(1, 1\)"):
        records.load_record(tmp_path / "flow")


def test_resuming_over_a_malformed_record_of_its_own_folder_is_one_line(tmp_path):
    from seqbench.resume import ResumeError, previous_run

    record = committed()
    write(tmp_path, {**record, "config": None})
    with pytest.raises(ResumeError) as raised:
        previous_run(tmp_path, record["config"], record["seeds"], "dir", tmp_path / "outputs")
    text = str(raised.value)
    assert text.startswith(f"malformed run record {tmp_path / 'run.json'}: 'config' is null")
    assert text.endswith("move it away or choose another output directory") and "\n" not in text


def test_records_rebuilt_from_wandb_are_checked_too(monkeypatch, capsys):
    from seqbench import tracking

    good = {**committed(), "path": "wandb:me/proj/a"}
    bad = {**without(committed(), "task"), "path": "wandb:me/proj/b"}
    monkeypatch.setattr(tracking, "records_json_from_wandb", lambda *args: [good, bad])
    cli_main(["runs", "--wandb", "me/proj"])
    captured = capsys.readouterr()
    assert captured.err == (
        "seqbench: warning: skipping malformed run record wandb:me/proj/b: "
        "'task' is missing (expected an object)\n"
    )
    assert captured.out.startswith("completed") and "wandb:me/proj/a" in captured.out


# --- case 7: every seed non-finite from the first evaluation ----------------------------------


def test_a_run_without_a_finite_value_has_a_summary_line_and_returns_the_worst_value(
    compose_config, tmp_path, monkeypatch, capsys
):
    from seqbench import search
    from seqbench.cli import train as app

    record = all_non_finite()
    assert record["summary"]["best"] == {}  # what made `hydra_main` raise KeyError: 'val/mse'
    # the Hydra entry point itself, training replaced by the record
    typed = records.RunRecord.from_json(record)
    monkeypatch.setattr(app, "train_from_config", lambda *args, **kwargs: typed)
    cfg = compose_config(["experiment=smoke", f"output_dir={tmp_path}"])
    returned = app.hydra_main.__wrapped__(cfg)
    assert returned == search.WORST  # finite: a sweeper carries on past it (NaN stopped Optuna)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == app.summary_line(typed)
    assert line.startswith("[seqbench] benchmark-adding diverged: test/mse n/a | compile ")
    best = committed()["summary"]["best"]
    assert app.sweeper_value(records.RunRecord.from_json(committed())) == best["val/mse"]["mean"]
    # the record reads back, and the reports show it as diverged, not as a crash
    write(tmp_path / "sweep" / "0", record)
    cli_main(["table", str(tmp_path / "sweep")])
    assert "diverged (n=0/3, 3 diverged, 0/3 solved)" in capsys.readouterr().out


def test_the_summary_line_of_a_record_without_a_baseline_or_timing(tmp_path):
    from seqbench.cli import train as app

    record = records.RunRecord.from_json(committed())
    record.task.baseline = {"mse": None}
    record.timing = None
    line = app.summary_line(record)
    assert "(baseline n/a)" in line and line.endswith("compile n/as, n/a steps/s, wall n/as")


# --- case 7: the sweep's table --------------------------------------------------------------


def sweep_config(sweep_dir, mode="MULTIRUN"):
    return OmegaConf.create({"hydra": {"mode": mode, "sweep": {"dir": str(sweep_dir)}}})


def faulty_sweep(sweep_dir):
    """A sweep folder: a completed job, a failed one, one whose every seed was non-finite, and
    one record of the wrong shape."""
    write(sweep_dir / "0", committed(0))
    write(sweep_dir / "1", unfinished("failed", 1))
    write(sweep_dir / "2", all_non_finite(2))
    return write(sweep_dir / "3", {**committed(3), "config": None})


def test_a_failed_job_writes_the_sweep_table_at_once(tmp_path, capsys):
    from seqbench.report.sweep import SweepTable

    bad = faulty_sweep(tmp_path)
    callback = SweepTable()
    failed = JobReturn(status=JobStatus.FAILED, _return_value=RuntimeError("device lost"))
    callback.on_job_end(sweep_config(tmp_path, mode="RUN"), job_return=failed)
    assert not (tmp_path / "table.md").exists()  # a single run is no sweep
    callback.on_job_end(sweep_config(tmp_path), job_return=failed)
    table = (tmp_path / "table.md").read_text()
    assert "| adding (T=100) | mse ↓ | 0.1667 |" in table and "simple_rnn" in table
    assert "diverged (n=0/3, 3 diverged, 0/3 solved)" in table  # the gru job, all non-finite
    warning = f"seqbench: warning: skipping malformed run record {bad}: 'config' is null"
    captured = capsys.readouterr()
    assert captured.err.startswith(warning) and captured.err.count("\n") == 1
    assert captured.out == ""
    # a later job of the same sweep rewrites it; the warning is not repeated
    write(tmp_path / "4", committed(1))
    done = JobReturn(status=JobStatus.COMPLETED, _return_value=0.1)
    callback.on_job_end(sweep_config(tmp_path), job_return=done)
    assert "lstm" in (tmp_path / "table.md").read_text()
    assert capsys.readouterr().err == ""


def test_the_multirun_end_prints_the_table_of_a_faulty_sweep_and_never_raises(tmp_path, capsys):
    from seqbench.report.sweep import SweepTable

    bad = faulty_sweep(tmp_path / "sweep")
    SweepTable().on_multirun_end(sweep_config(tmp_path / "sweep"))
    captured = capsys.readouterr()
    assert "| adding (T=100) | mse ↓ | 0.1667 |" in captured.out
    assert f"(table written to {tmp_path / 'sweep' / 'table.md'})" in captured.out
    assert captured.err.startswith(f"seqbench: warning: skipping malformed run record {bad}")
    # only failed jobs: no table, one line
    write(tmp_path / "failed" / "0", unfinished("failed"))
    SweepTable().on_multirun_end(sweep_config(tmp_path / "failed"))
    assert capsys.readouterr().err == (
        f"seqbench: warning: no finished run in {tmp_path / 'failed'}: no table.md written\n"
    )
    assert not (tmp_path / "failed" / "table.md").exists()
    # a table that cannot be written: one line, no exception
    (tmp_path / "sweep" / "table.md").unlink()
    (tmp_path / "sweep" / "table.md").mkdir()
    SweepTable().on_multirun_end(sweep_config(tmp_path / "sweep"))
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("seqbench: warning: could not write the sweep table: ")


# --- case 10: report options that match nothing ---------------------------------------------


def copy_committed(folder):
    shutil.copytree(COMMITTED, folder, ignore=shutil.ignore_patterns("*.png", "*.svg", "*.md"))
    return folder


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["table", "--metrics", "typo"], "--metrics: no metric 'typo' in the selected runs "
         "(they have cross_entropy, mse, recall_accuracy)"),
        (["table", "--metrics", "val/mse"], "--metrics val/mse: the split must be test"),
        (["table", "--models", "lstm,grux"], "--models: no column 'grux' (the runs have "
         "simple_rnn, lstm, gru)"),
        (["runs", "--metrics", "mse,typo"], "--metrics: no metric 'typo' in the selected runs"),
        (["runs", "--metrics", "train/mse"], "--metrics train/mse: the split must be val or test"),
        (["horizon", "--metrics", "typo"], "--metrics: no metric 'typo' in the selected runs"),
    ],
)  # fmt: skip
def test_a_metric_or_model_that_no_run_has_is_one_line_and_exit_status_2(
    tmp_path, capsys, args, message
):
    root = copy_committed(tmp_path / "runs")
    with pytest.raises(SystemExit) as raised:
        cli_main([args[0], str(root), *args[1:]])
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"seqbench: error: {message}") and err.count("\n") == 1


def test_known_metrics_still_work_bare_or_with_their_split(tmp_path, capsys):
    root = copy_committed(tmp_path / "runs")
    cli_main(["table", str(root), "--metrics", "test/mse", "--models", "gru"])
    out = capsys.readouterr().out
    assert re.search(r"\| adding \(T=100\) \| mse ↓ \| 0\.1667 \| 0\.000\d+ ± ", out)
    assert "cross_entropy" not in out
    cli_main(["runs", str(root), "--metrics", "val/mse", "--task", "adding"])
    assert capsys.readouterr().out.count("val/mse=") == 3


@pytest.mark.parametrize("command", ["table", "plot", "horizon"])
def test_a_report_over_no_finished_run_says_so(tmp_path, capsys, command):
    for i, status in enumerate(["failed", "running", "failed"]):
        write(tmp_path / "runs" / str(i), unfinished(status, i))
    with pytest.raises(SystemExit) as raised:
        cli_main([command, str(tmp_path / "runs"), "--out", str(tmp_path / "out")])
    assert raised.value.code == 2
    assert capsys.readouterr().err == (
        "seqbench: error: no finished run among the 3 selected (1 running, 2 failed)\n"
    )
