"""`seqbench eval` and `seqbench export` on a tiny trained run: the recorded numbers again, other
task settings, one line for bad input, parameters out as .npz or a PyTorch state_dict."""

import json
import shutil

import numpy as np
import pytest

from seqbench.cli.report import main
from seqbench.evaluate import EvalError, evaluate_run, flat_params, load_params, load_run
from seqbench.export import check_torch

LENGTH = 6  # experiment=smoke's adding task (conf/experiment/for_task/smoke_adding.yaml)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished tiny run, trained here as seqbench-train would: adding, LSTM, 2 seeds, 8 steps
    evaluated every 2; the large learning rate puts each seed's best evaluation at step 6."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from seqbench.cli.train import CONF_DIR, train_from_config
    from seqbench.store import validate

    folder = tmp_path_factory.mktemp("eval") / "run"
    overrides = ["experiment=smoke", "trainer.steps=8", "optimizer.lr=0.3", f"output_dir={folder}"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    folder.mkdir()
    record = train_from_config(validate(cfg), OmegaConf.to_container(cfg, resolve=True), folder)
    assert record.status == "completed"
    assert [seed.best_step for seed in record.per_seed] == [6, 6]  # not the final parameters
    return folder


def error_line(capsys, *argv):
    """Run `seqbench *argv`, expecting bad input: exit 2 and one line on stderr."""
    with pytest.raises(SystemExit) as stopped:
        main(list(argv))
    assert stopped.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("seqbench: error: ")
    return lines[0]


def test_eval_gives_the_recorded_best_test_metrics_again(run_dir, capsys, tmp_path):
    record = load_run(run_dir)
    out = tmp_path / "eval.json"
    main(["eval", str(run_dir), "--split", "test", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "best parameters" in printed and "mean ± sample std" in printed
    result = json.loads(out.read_text())
    assert result["splits"] == ["test"] and result["params"] == "best"
    for measured, recorded in zip(result["per_seed"], record.per_seed, strict=True):
        assert measured["seed"] == recorded.seed and measured["step"] == recorded.best_step
        assert set(measured["metrics"]) == {f"test/{m}" for m in record.task.metrics}
        for name, value in measured["metrics"].items():
            assert value == pytest.approx(recorded.best[name], rel=1e-6, abs=1e-9), name
    for name, stats in result["summary"].items():
        assert stats["mean"] == pytest.approx(record.summary.best[name].mean, rel=1e-6)


def test_eval_of_the_final_parameters_gives_the_recorded_final_metrics(run_dir):
    record = load_run(run_dir)
    evaluation = evaluate_run(run_dir, "val", "final")
    assert evaluation.run.checkpoint_step == 8
    for measured, recorded in zip(evaluation.per_seed, record.per_seed, strict=True):
        for name, value in measured["metrics"].items():
            assert value == pytest.approx(recorded.final[name], rel=1e-6, abs=1e-9), name


def test_eval_at_a_longer_length_matches_the_runs_own_length_generalisation_split(run_dir):
    longer = 4 * LENGTH
    at_length = evaluate_run(run_dir, "test", overrides=[f"task.length={longer}"])
    generalised = evaluate_run(
        run_dir, f"test@{longer}", overrides=[f"task.eval_lengths=[{longer}]"]
    )
    record = load_run(run_dir)
    for a, b, recorded in zip(
        at_length.per_seed, generalised.per_seed, record.per_seed, strict=True
    ):
        value = a["metrics"]["test/mse"]
        assert value == pytest.approx(b["metrics"][f"test@{longer}/mse"], rel=1e-5)
        assert value != pytest.approx(recorded.best["test/mse"], rel=1e-3)  # another length


def test_bad_input_is_one_line_before_anything_is_computed(run_dir, capsys, tmp_path):
    missing = tmp_path / "missing"
    assert "no such run folder" in error_line(capsys, "eval", str(missing))
    assert "holds no run record" in error_line(capsys, "eval", str(tmp_path))
    line = error_line(capsys, "eval", str(run_dir), "--split", "nope")
    assert "no split 'nope'" in line and "val, test" in line
    assert "did you mean length" in error_line(capsys, "eval", str(run_dir), "task.lenght=9")
    assert "task.length" in error_line(capsys, "eval", str(run_dir), "task.length=abc")
    assert "must be positive" in error_line(capsys, "eval", str(run_dir), "task.length=-1")
    assert "cannot parse" in error_line(capsys, "eval", str(run_dir), "task.length=[1")
    assert "config group" in error_line(capsys, "eval", str(run_dir), "model=gru")
    line = error_line(capsys, "eval", str(run_dir), "model.hidden_size=16")
    assert "do not fit the model" in line

    # a run from before best parameters were kept: its checkpoints lack them
    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    for step in (old / "checkpoints").iterdir():
        shutil.rmtree(step / "best_params", ignore_errors=True)
        shutil.rmtree(step / "best", ignore_errors=True)
    record = json.loads((old / "run.json").read_text())
    record["path"] = record["output_dir"] = str(old)
    (old / "run.json").write_text(json.dumps(record))
    assert "keeps no best parameters" in error_line(capsys, "eval", str(old))
    assert "keeps no best parameters" in error_line(
        capsys, "export", str(old), "--seed", "0", "--out", str(tmp_path / "x.npz")
    )
    assert not (tmp_path / "x.npz").exists()
    shutil.rmtree(old / "checkpoints")
    assert "no checkpoint in" in error_line(capsys, "eval", str(old))


def test_export_npz_round_trip(run_dir, tmp_path, capsys):
    out = tmp_path / "seed1.npz"
    main(["export", str(run_dir), "--seed", "1", "--format", "npz", "--out", str(out)])
    assert f"written to {out}" in capsys.readouterr().err
    kept = flat_params(load_params(load_run(run_dir), "best").params)
    with np.load(out) as saved:
        assert sorted(saved.files) == sorted(kept)
        assert "layer_0_fwd/w_ih" in saved.files and "readout/kernel" in saved.files
        for name, values in kept.items():
            np.testing.assert_array_equal(saved[name], np.asarray(values)[1])
    line = error_line(capsys, "export", str(run_dir), "--seed", "7", "--out", str(out))
    assert "no seed 7" in line


def test_export_torch_state_dict(run_dir, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    out = tmp_path / "seed0.pt"
    main(["export", str(run_dir), "--seed", "0", "--format", "torch", "--out", str(out)])
    state = torch.load(out)
    kept = flat_params(load_params(load_run(run_dir), "best").params)
    assert list(state) == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    np.testing.assert_array_equal(
        state["weight_ih_l0"].numpy(), np.asarray(kept["layer_0_fwd/w_ih"])[0].T
    )
    lstm = torch.nn.LSTM(input_size=2, hidden_size=8, batch_first=True)
    lstm.load_state_dict(state)  # PyTorch's own module takes it as it is
    with pytest.raises(EvalError, match="no PyTorch counterpart"):
        check_torch("mingru")
