"""The jitted multi-seed trainer: learning, seed independence, determinism, divergence handling."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from seqbench.config import ModelConfig, OptimizerConfig, TrainerConfig
from seqbench.models.build import build_model
from seqbench.tasks.synthetic import AddingConfig, AddingProblem, CopyMemory, CopyMemoryConfig
from seqbench.train.driver import run_training
from seqbench.train.optim import build_optimizer, learning_rate_schedule
from seqbench.train.program import NOT_DIVERGED, all_finite, make_train


def program_for(task, cell="gru", hidden=8, lr=1e-2, batch=16, eval_batch=None, **opt):
    built = build_model(ModelConfig(architecture=cell, hidden_size=hidden), task.spec)
    optimizer = build_optimizer(OptimizerConfig(lr=lr, **opt), 100)
    return make_train(built.model, task, optimizer, batch, eval_batch)


def train(program, task, seeds, steps=6, eval_every=3, state=None):
    trainer = TrainerConfig(steps=steps, eval_every=eval_every, batch_size=16, progress=False)
    return run_training(program, task, seeds, trainer, state=state)


@pytest.fixture(scope="module")
def small_adding():
    task = AddingProblem(AddingConfig(length=6, n_eval=64))
    return task, program_for(task)


def test_loss_falls_on_a_short_adding_task():
    task = AddingProblem(AddingConfig(length=8, n_eval=256))
    program = program_for(task, cell="gru", hidden=16, lr=1e-2, batch=32)
    trainer = TrainerConfig(steps=300, eval_every=100, batch_size=32, progress=False)
    result = run_training(program, task, [0], trainer)
    mse = result.eval_metrics["test/mse"][:, 0]
    assert mse[-1] < 0.25 * task.baseline()["mse"], mse
    assert result.train_loss[-1, 0] < result.train_loss[0, 0]


def test_vmapped_seeds_match_each_seed_trained_alone(small_adding):
    task, program = small_adding
    together = train(program, task, [0, 1, 2])
    for i, seed in enumerate([0, 1, 2]):
        alone = train(program, task, [seed])
        jax.tree_util.tree_map(
            lambda a, b, i=i: np.testing.assert_allclose(a[i], b[0], rtol=2e-5, atol=2e-6),
            together.state.params,
            alone.state.params,
        )
        np.testing.assert_allclose(
            together.eval_metrics["test/mse"][:, i], alone.eval_metrics["test/mse"][:, 0], rtol=1e-4
        )


def test_seeds_differ_and_a_repeated_seed_is_identical(small_adding):
    task, program = small_adding
    first, second = train(program, task, [0, 1]), train(program, task, [0, 1])
    np.testing.assert_array_equal(first.eval_metrics["test/mse"], second.eval_metrics["test/mse"])
    np.testing.assert_array_equal(first.train_loss, second.train_loss)
    assert first.eval_metrics["test/mse"][-1, 0] != first.eval_metrics["test/mse"][-1, 1]


def test_a_nan_in_one_seed_leaves_the_others_untouched(small_adding):
    task, program = small_adding
    seeds = jnp.asarray([0, 1, 2], jnp.int32)
    clean_state = jax.jit(program.batched_init)(seeds)
    poisoned_params = jax.tree_util.tree_map(lambda p: p.at[1].set(jnp.nan), clean_state.params)
    poisoned = train(program, task, [0, 1, 2], state=clean_state._replace(params=poisoned_params))
    clean = train(program, task, [0, 1, 2], state=clean_state)
    assert list(poisoned.diverged_step) == [NOT_DIVERGED, 0, NOT_DIVERGED]
    assert np.isnan(poisoned.train_loss[:, 1]).all()
    assert np.isnan(poisoned.eval_metrics["test/mse"][1:, 1]).all()
    for i in (0, 2):
        np.testing.assert_array_equal(
            poisoned.eval_metrics["test/mse"][:, i], clean.eval_metrics["test/mse"][:, i]
        )
        jax.tree_util.tree_map(
            lambda a, b, i=i: np.testing.assert_array_equal(a[i], b[i]),
            poisoned.state.params,
            clean.state.params,
        )


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_all_finite_is_false_for_one_bad_element_in_any_leaf(bad):
    tree = {"a": jnp.ones((3,)), "b": (jnp.zeros((2, 2)), jnp.float32(3e38))}
    check = jax.jit(all_finite)
    assert bool(check(tree))
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    for i, leaf in enumerate(leaves):
        spoilt = [*leaves[:i], leaf.at[(0,) * leaf.ndim].set(bad), *leaves[i + 1 :]]
        assert not bool(check(jax.tree_util.tree_unflatten(treedef, spoilt))), i


def test_a_seed_that_blows_up_mid_run_is_frozen_at_its_last_finite_step():
    task = AddingProblem(AddingConfig(length=6, n_eval=32))
    program = program_for(task, cell="simple_rnn", lr=1e30, name="sgd", grad_clip=None)
    result = train(program, task, [0, 1], steps=20, eval_every=5)
    assert (result.diverged_step >= 0).all()
    state = result.state
    assert bool(
        jax.tree_util.tree_reduce(lambda a, p: a & bool(jnp.isfinite(p).all()), state.params, True)
    )


def test_chunked_evaluation_equals_whole_set_evaluation():
    task = CopyMemory(CopyMemoryConfig(length=4, n_eval=40))
    whole, chunked = program_for(task), program_for(task, eval_batch=8)
    params = jax.jit(whole.batched_init)(jnp.asarray([3], jnp.int32)).params
    a = jax.jit(whole.batched_evaluate)(params, task.eval_set("test"))
    b = jax.jit(chunked.batched_evaluate)(params, task.eval_set("test"))
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5)


def test_evaluation_metrics_are_computed_at_step_zero_and_every_chunk(small_adding):
    task, program = small_adding
    result = train(program, task, [0], steps=7, eval_every=3)
    assert list(result.eval_steps) == [0, 3, 6, 7]
    assert list(result.train_steps) == [3, 6, 7]
    assert result.timing["steps_per_s"] > 0 and result.timing["compile_s"] > 0


@pytest.mark.parametrize(
    "opt",
    [
        {"name": "adam"},
        {"name": "adamw", "weight_decay": 0.01},
        {"name": "rmsprop", "momentum": 0.5},
        {"name": "sgd", "momentum": 0.9, "nesterov": True},
        {"name": "adam", "grad_clip": None, "schedule": "warmup_cosine", "warmup_steps": 10},
    ],
)
def test_every_optimizer_takes_a_finite_step(opt):
    """Each optimizer setting moves parameters by finite amounts against the gradient (the
    training loop itself is exercised with Adam by the other tests)."""
    optimizer = build_optimizer(OptimizerConfig(lr=1e-3, **opt), 100)
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
    state = optimizer.init(params)
    moved = params
    for _ in range(3):
        updates, state = optimizer.update(grads, state, moved)
        moved = optax.apply_updates(moved, updates)
    for name in params:
        step = np.asarray(moved[name] - params[name])
        assert np.isfinite(step).all() and (step < 0).all()


@pytest.mark.parametrize(
    ("schedule", "start", "end"),
    [
        ("constant", 1.0, 1.0),
        ("linear", 1.0, 0.1),
        ("cosine", 1.0, 0.1),
        ("warmup_cosine", 0.0, 0.1),
    ],
)
def test_learning_rate_schedules(schedule, start, end):
    cfg = OptimizerConfig(lr=1.0, schedule=schedule, warmup_steps=10, final_lr_fraction=0.1)
    lr = learning_rate_schedule(cfg, 100)
    assert float(lr(0)) == pytest.approx(start)
    assert float(lr(100)) == pytest.approx(end, abs=1e-6)
    if schedule == "warmup_cosine":
        assert float(lr(10)) == pytest.approx(1.0)


def test_gradient_clipping_bounds_the_update():
    cfg = OptimizerConfig(name="sgd", lr=1.0, grad_clip=0.5)
    grads = {"w": jnp.full((4,), 10.0)}
    updates, _ = build_optimizer(cfg, 10).update(grads, build_optimizer(cfg, 10).init(grads))
    assert float(jnp.linalg.norm(updates["w"])) == pytest.approx(0.5, rel=1e-5)


INIT_MANY_TIMES = """
import jax, jax.numpy as jnp
from seqbench.config import ModelConfig, OptimizerConfig
from seqbench.models.build import build_model
from seqbench.tasks.synthetic import AddingConfig, AddingProblem
from seqbench.train.program import make_train
from seqbench.train.optim import build_optimizer
task = AddingProblem(AddingConfig(length=10, n_eval=8))
built = build_model(ModelConfig(architecture="gru", hidden_size=64, n_layers=2), task.spec)
program = make_train(built.model, task, build_optimizer(OptimizerConfig(), 10), 4)
init = jax.jit(program.batched_init)
for i in range(100):
    jax.block_until_ready(init(jnp.arange(8, dtype=jnp.int32) + i))
print("ok")
"""


def test_batched_init_completes_every_time():
    # With the seeds vmapped, the orthogonal initialisers' batched QR calls deadlocked XLA's CPU
    # thread pool in every such process within 100 calls (see TrainProgram.batched_init).
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", INIT_MANY_TIMES], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
