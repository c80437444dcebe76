"""Gradient flow ||dL/dh_t||: against finite differences of a float64 NumPy step loop, end to end."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import random_variables, torch_step

from seqbench.config import ConfigError
from seqbench.models.architectures import get
from seqbench.models.sequence import SequenceModel
from seqbench.store import validate
from seqbench.tasks.base import Batch
from seqbench.train.gradient_flow import make_gradient_flow


class SquaredErrorTask:
    """Just enough of a task: the mean squared error of a (B, 1) output against (B,) targets."""

    stateful = False

    def loss(self, outputs, batch):
        return jnp.mean((outputs[:, 0] - batch.targets) ** 2)


def reference_loss(cell, params, x, lengths, targets, offsets):
    """sum_b (y_b - target_b)^2 in float64, the offsets (L, B, T, H) added to every h_t."""
    n_layers = offsets.shape[0]
    total = 0.0
    for b in range(x.shape[0]):
        sequence = list(x[b, : lengths[b]])
        for k in range(n_layers):
            layer = {n: np.asarray(v, np.float64) for n, v in params[f"layer_{k}_fwd"].items()}
            weights = (layer["w_ih"].T, layer["w_hh"].T, layer["b_ih"], layer["b_hh"])
            hidden = layer["w_hh"].shape[0]
            h, c = np.zeros(hidden), np.zeros(hidden)
            outputs = []
            for t, x_t in enumerate(sequence):
                h, c = torch_step(cell, x_t, h, c, *weights)
                h = h + offsets[k, b, t]
                outputs.append(h)
            sequence = outputs
        readout = params["readout"]
        y = sequence[-1] @ np.asarray(readout["kernel"], np.float64) + float(readout["bias"][0])
        total += (y[0] - targets[b]) ** 2
    return total


def finite_difference_flow(cell, params, x, lengths, targets, n_layers, hidden, eps=1e-5):
    """(L, T): mean over examples of the L2 norm over units of d(sum of losses)/dh_t."""
    batch, time = x.shape[:2]
    offsets = np.zeros((n_layers, batch, time, hidden))
    grads = np.zeros_like(offsets)
    for index in np.ndindex(offsets.shape):
        if index[2] >= lengths[index[1]]:
            continue  # padded step: the loss does not see it
        for sign in (1.0, -1.0):
            offsets[index] = sign * eps
            grads[index] += sign * reference_loss(cell, params, x, lengths, targets, offsets)
        offsets[index] = 0.0
    grads /= 2 * eps
    return np.linalg.norm(grads, axis=-1).mean(axis=1)


@pytest.mark.parametrize(
    ("cell", "n_layers", "remat"),
    [("simple_rnn", 1, False), ("lstm", 1, True), ("gru", 2, False)],
)
def test_flow_matches_finite_differences_of_a_numpy_step_loop(cell, n_layers, remat):
    batch, time, features, hidden = 3, 6, 2, 4
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, time, features))
    lengths = np.array([6, 4, 1])
    targets = rng.standard_normal(batch)
    model = SequenceModel(
        architecture=get(cell), hidden_size=hidden, output_dim=1, n_layers=n_layers, remat=remat
    )
    variables = random_variables(model, jnp.asarray(x, jnp.float32))
    flow = make_gradient_flow(model, SquaredErrorTask())
    measured = flow(
        variables["params"],
        Batch(jnp.asarray(x, jnp.float32), jnp.asarray(targets, jnp.float32), jnp.asarray(lengths)),
    )
    params = jax.tree.map(np.asarray, variables["params"])
    expected = finite_difference_flow(cell, params, x, lengths, targets, n_layers, hidden)
    assert measured.shape == (n_layers, time)
    np.testing.assert_allclose(np.asarray(measured), expected, rtol=2e-3, atol=1e-6)


@pytest.mark.parametrize(("cell", "remat"), [("simple_rnn", False), ("lstm", True), ("gru", False)])
def test_zero_offsets_leave_the_outputs_unchanged(cell, remat):
    x = jax.random.normal(jax.random.key(1), (2, 5, 3))
    model = SequenceModel(
        architecture=get(cell), hidden_size=4, output_dim=2, readout="every_step", remat=remat
    )
    variables = model.init(jax.random.key(0), x)
    zeros = (jnp.zeros((2, 5, 4)),)
    plain = model.apply(variables, x, jnp.array([5, 3]))
    offset = model.apply(variables, x, jnp.array([5, 3]), hidden_offsets=zeros)
    np.testing.assert_allclose(offset, plain, rtol=1e-6, atol=1e-6)


def test_a_plain_rnn_gradient_vanishes_with_distance_from_the_loss():
    """Small recurrent weights: ||dL/dh_t|| shrinks geometrically going back from the last step."""
    x = jax.random.normal(jax.random.key(2), (8, 40, 2))
    model = SequenceModel(architecture=get("simple_rnn"), hidden_size=16, output_dim=1)
    params = model.init(jax.random.key(0), x)["params"]
    params["layer_0_fwd"]["w_hh"] = params["layer_0_fwd"]["w_hh"] * 0.5
    norms = make_gradient_flow(model, SquaredErrorTask())(params, Batch(x, jnp.ones(8)))[0]
    assert np.all(np.diff(np.asarray(norms)) > 0)  # grows towards the end
    assert norms[0] < 1e-6 * norms[-1]


def test_gradient_flow_steps_must_be_evaluation_steps(compose_config):
    with pytest.raises(ConfigError, match=r"trainer\.gradient_flow_steps: 3 is not an evaluation"):
        validate(compose_config(["experiment=smoke", "trainer.gradient_flow_steps=[0,3]"]))
    with pytest.raises(ConfigError, match=r"trainer\.gradient_flow_batch: must be positive"):
        validate(compose_config(["experiment=smoke", "trainer.gradient_flow_batch=0"]))


def flow_record(cell, slope, steps=(0, 100), seeds=2, time=30):
    """A record whose gradient flow decays by `slope` per step back in time."""
    from test_report import record

    base = record(cell, [0.1] * seeds, config={"trainer": {"steps": steps[-1]}})
    norms = [
        [[[(slope**k) * (1.0 + 0.1 * s) for k in range(time)][::-1]] for s in range(seeds)]
        for _ in steps
    ]
    return {
        **base,
        "gradient_flow": {"split": "val", "batch_size": 8, "steps": list(steps), "norm": norms},
    }


def test_plot_gradient_flow_draws_a_panel_per_cell_from_the_records(tmp_path, capsys):
    from seqbench.cli.report import main as cli_main
    from seqbench.records import RunRecord
    from seqbench.report.plot import flow_curves

    rnn = flow_record("simple_rnn", 0.5)
    steps_curves = flow_curves(RunRecord.from_json(rnn))
    assert [step for step, _, _ in steps_curves] == [0, 100]
    mean = steps_curves[0][1]
    np.testing.assert_allclose(mean[-1] / mean[-2], 2.0)  # the geometric mean keeps the slope
    for i, r in enumerate([rnn, flow_record("lstm", 0.95), flow_record("gru", 0.9)]):
        (tmp_path / "runs" / str(i)).mkdir(parents=True)
        (tmp_path / "runs" / str(i) / "run.json").write_text(json.dumps(r))
    prefix = tmp_path / "fig" / "flow"
    cli_main(["plot", str(tmp_path / "runs"), "--gradient-flow", "--out", str(prefix)])
    assert capsys.readouterr().out.split() == [f"{prefix}.png", f"{prefix}.svg"]
    svg = (tmp_path / "fig" / "flow.svg").read_text()
    assert "adding (T=100) · LSTM" in svg and "step 100" in svg
    with pytest.raises(SystemExit, match="has 1 layer"):
        cli_main(["plot", str(tmp_path / "runs"), "--gradient-flow", "--layer", "1"])


def test_plot_gradient_flow_without_measurements_is_one_line(tmp_path):
    from test_report import record

    from seqbench.cli.report import main as cli_main

    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "run.json").write_text(json.dumps(record("gru", [0.1])))
    with pytest.raises(SystemExit, match="no finished run measured its gradient flow"):
        cli_main(["plot", str(tmp_path), "--gradient-flow"])


@pytest.mark.slow  # about 10 s of compilation; the wandb offline test checks a recorded flow
def test_the_runner_measures_at_the_steps_asked_for_and_checkpoints_keep_them(tmp_path):
    from seqbench.config import ModelConfig, OptimizerConfig, TrainerConfig
    from seqbench.models.build import build_model
    from seqbench.tasks.synthetic import AddingConfig, AddingProblem
    from seqbench.train.checkpoint import Checkpointer
    from seqbench.train.driver import GradientFlow, Hooks, run_training
    from seqbench.train.gradient_flow import flow_batch
    from seqbench.train.optim import build_optimizer
    from seqbench.train.program import make_train

    task = AddingProblem(AddingConfig(length=7, n_eval=16))
    built = build_model(ModelConfig(architecture="lstm", hidden_size=5), task.spec)
    program = make_train(built.model, task, build_optimizer(OptimizerConfig(), 6), 8)
    flow, examples = make_gradient_flow(built.model, task), flow_batch(task, 4)
    seen = []

    trainer = TrainerConfig(steps=6, eval_every=3, batch_size=8, progress=False, checkpoint_every=6)
    probe = GradientFlow(flow, examples, (0, 6))
    hooks = Hooks(on_flow=lambda step, norms: seen.append((step, norms.shape)))

    def run(checkpointer):
        return run_training(
            program, task, [0, 1], trainer,
            hooks=hooks, checkpointer=checkpointer, gradient_flow=probe,
        )  # fmt: skip

    checkpointer = Checkpointer(tmp_path / "checkpoints")
    first = run(checkpointer)
    checkpointer.close()
    assert sorted(first.gradient_flow) == [0, 6] and seen == [(0, (2, 1, 7)), (6, (2, 1, 7))]
    direct = jax.jit(flow)
    trained = direct(jax.tree.map(lambda x: x[1], first.state.params), examples)
    np.testing.assert_allclose(first.gradient_flow[6][1], trained, rtol=1e-5)
    initial = direct(program.init(jnp.int32(1)).params, examples)
    np.testing.assert_allclose(first.gradient_flow[0][1], initial, rtol=1e-5)
    assert not np.allclose(first.gradient_flow[0], first.gradient_flow[6])
    again = Checkpointer(tmp_path / "checkpoints")  # what a resumed run starts from
    _, history = again.restore(first.state)
    again.close()
    assert sorted(history["gradient_flow"]) == ["0", "6"]
    for step in (0, 6):
        np.testing.assert_array_equal(
            history["gradient_flow"][str(step)], first.gradient_flow[step]
        )
