"""Each seed's best parameters: chosen as the run record chooses "best", checkpointed, resumed."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqbench.config import ModelConfig, OptimizerConfig, TrainerConfig
from seqbench.lifecycle import TrainingStopped
from seqbench.models.build import build_model
from seqbench.records import config_identity, seed_summaries
from seqbench.tasks.synthetic import AddingConfig, AddingProblem
from seqbench.train.checkpoint import Checkpointer, CheckpointError
from seqbench.train.driver import BestTracker, Hooks, run_training
from seqbench.train.optim import build_optimizer
from seqbench.train.program import NOT_DIVERGED, make_train

SEEDS = [0, 1]


class FakeTask:
    """What `BestTracker.start` reads of a task."""

    def __init__(self, direction):
        self.primary_metric = "mse"
        self.metric_directions = {"mse": direction}


def tracked(curves, diverged_step, direction, splits=("val", "test")):
    """Feed (E, S) curves {"<split>/mse"} to a tracker whose params at evaluation e are e: the kept
    (steps, params) per seed."""
    steps = np.arange(len(next(iter(curves.values())))) * 10
    seeds = diverged_step.shape[0]
    tracker = BestTracker.start(
        FakeTask(direction), list(splits), {"w": jnp.full((seeds, 2), -1.0)}
    )
    for e, step in enumerate(steps):
        params = {"w": jnp.full((seeds, 2), float(step))}
        tracker.update(int(step), {k: v[e] for k, v in curves.items()}, params, diverged_step)
    return tracker.kept, steps


@pytest.mark.parametrize("direction", ["min", "max"])
def test_the_tracker_keeps_the_evaluation_the_record_calls_best(direction):
    rng = np.random.default_rng(0)
    E, S = 12, 6
    val = rng.integers(0, 4, size=(E, S)).astype(float)  # small integers: many ties
    val[rng.random((E, S)) < 0.2] = np.nan
    val[:, 4] = np.nan  # a seed with no finite value at all
    val[3, 5] = np.inf  # infinite is not finite
    curves = {"val/mse": val, "test/mse": rng.random((E, S))}
    diverged = np.array([NOT_DIVERGED, 25, NOT_DIVERGED, 0, NOT_DIVERGED, 75])
    kept, steps = tracked(curves, diverged, direction)

    # what the record computes: the driver NaNs each curve after the seed's divergence
    recorded = {k: v.copy() for k, v in curves.items()}
    for s, at in enumerate(diverged):
        if at != NOT_DIVERGED:
            for values in recorded.values():
                values[steps > at, s] = np.nan
    summaries = seed_summaries(np.arange(S), steps, recorded, {"mse": direction}, "mse", diverged)
    for s, summary in enumerate(summaries):
        expected = summary["best_step"]
        assert kept.steps[s] == (-1 if expected is None else expected), s
        if expected is not None:
            assert kept.values[s] == summary["best"]["val/mse"]
            np.testing.assert_array_equal(kept.params["w"][s], float(expected))
        else:
            assert np.isnan(kept.values[s])
    assert kept.metric == "val/mse" and kept.direction == direction and kept.complete


def test_without_a_validation_split_the_tracker_selects_on_test():
    test = np.array([[3.0], [1.0], [2.0]])
    kept, _ = tracked({"test/mse": test}, np.array([NOT_DIVERGED]), "min", splits=("test",))
    assert kept.metric == "test/mse" and kept.steps.tolist() == [10]


def test_keep_best_leaves_a_configs_identity_unchanged():
    config = {"trainer": {"steps": 10}}
    assert config_identity({"trainer": {"steps": 10, "keep_best": True}}) == config_identity(config)
    assert config_identity({"trainer": {"steps": 10, "keep_best": False}}) == config_identity(
        config
    )


@pytest.fixture(scope="module")
def setup():
    task = AddingProblem(AddingConfig(length=6, n_eval=32))
    built = build_model(ModelConfig(architecture="gru", hidden_size=6), task.spec)
    # a large learning rate: the validation loss goes up and down (here the best is at step 8 of 12)
    program = make_train(built.model, task, build_optimizer(OptimizerConfig(lr=0.1), 12), 8)
    return task, program


def trainer(**options):
    return TrainerConfig(
        steps=12, eval_every=2, batch_size=8, progress=False, checkpoint_every=4, **options
    )


def assert_same_best(best, expected):
    np.testing.assert_array_equal(best.steps, expected.steps)
    np.testing.assert_array_equal(best.values, expected.values)
    jax.tree.map(
        lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
        best.params,
        expected.params,
    )


def test_a_run_keeps_its_best_parameters_and_a_resumed_run_ends_with_the_same(setup, tmp_path):
    task, program = setup
    whole = run_training(program, task, SEEDS, trainer())
    summaries = seed_summaries(
        whole.seeds,
        whole.eval_steps,
        whole.eval_metrics,
        task.metric_directions,
        task.primary_metric,
        whole.diverged_step,
    )
    assert whole.best.steps.tolist() == [s["best_step"] for s in summaries]
    assert (whole.best.steps > 4).all() and (whole.best.steps < 12).any()  # after the resume below
    # the kept parameters score what the record calls each seed's best, on every split
    evaluate = jax.jit(program.batched_evaluate)
    for split, batch in task.eval_sets().items():
        scored = jax.device_get(evaluate(whole.best.params, batch))
        for name, values in scored.items():
            expected = [s["best"][f"{split}/{name}"] for s in summaries]
            np.testing.assert_allclose(values, expected, rtol=1e-6)

    # stopped after the checkpoint at step 4, then resumed in a new process's way
    asked = iter([False, False, False, True])
    checkpointer = Checkpointer(tmp_path / "checkpoints")
    with pytest.raises(TrainingStopped):
        run_training(
            program, task, SEEDS, trainer(), checkpointer=checkpointer,
            hooks=Hooks(should_stop=lambda: next(asked)),
        )  # fmt: skip
    checkpointer.close()
    checkpointer = Checkpointer(tmp_path / "checkpoints")
    resumed = run_training(program, task, SEEDS, trainer(), checkpointer=checkpointer)
    checkpointer.close()
    assert resumed.timing["resumed_from_step"] == 4
    assert resumed.best.complete
    assert_same_best(resumed.best, whole.best)

    # what the checkpoint folder keeps: the same, read back without knowing the model
    step, read = Checkpointer(tmp_path / "checkpoints", read_only=True).read_best()
    assert step == 12
    assert_same_best(read, whole.best)
    assert read.metric == "val/mse" and read.direction == "min"


def test_a_run_resumed_from_a_checkpoint_without_best_parameters_marks_them_incomplete(
    setup, tmp_path
):
    task, program = setup
    asked = iter([False, False, False, True])
    checkpointer = Checkpointer(tmp_path / "checkpoints")
    with pytest.raises(TrainingStopped):
        run_training(
            program, task, SEEDS, trainer(keep_best=False), checkpointer=checkpointer,
            hooks=Hooks(should_stop=lambda: next(asked)),
        )  # fmt: skip
    checkpointer.close()
    with pytest.raises(CheckpointError, match="keeps no best parameters"):
        Checkpointer(tmp_path / "checkpoints", read_only=True).read_best()
    checkpointer = Checkpointer(tmp_path / "checkpoints")
    resumed = run_training(program, task, SEEDS, trainer(), checkpointer=checkpointer)
    checkpointer.close()
    assert not resumed.best.complete
    assert (resumed.best.steps >= 4).all()  # a best among the evaluations after the resume
    _, read = Checkpointer(tmp_path / "checkpoints", read_only=True).read_best()
    assert not read.complete


def test_damaged_best_parameters_are_refused_in_one_line(setup, tmp_path):
    task, program = setup
    checkpointer = Checkpointer(tmp_path / "checkpoints")
    run_training(program, task, SEEDS, trainer(), checkpointer=checkpointer)
    checkpointer.close()
    meta = tmp_path / "checkpoints" / "12" / "best" / "metadata"
    kept = json.loads(meta.read_text())
    kept["steps"][0] = 2 if kept["steps"][0] != 2 else 4
    meta.write_text(json.dumps(kept))
    with pytest.raises(CheckpointError, match="best parameters differ from what was saved"):
        Checkpointer(tmp_path / "checkpoints", read_only=True).read_best()
