"""`trainer.seeds_over`: the seeds vmapped or mapped in the training chunk, chosen by measurement."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqbench.config import ModelConfig, OptimizerConfig, TrainerConfig
from seqbench.models.build import build_model
from seqbench.tasks.synthetic import AddingConfig, AddingProblem
from seqbench.train import seed_batching
from seqbench.train.checkpoint import Checkpointer
from seqbench.train.driver import run_training
from seqbench.train.optim import build_optimizer
from seqbench.train.program import make_train

SEEDS = [0, 1, 2]


@pytest.fixture(scope="module")
def setup():
    task = AddingProblem(AddingConfig(length=12, n_eval=16))
    built = build_model(ModelConfig(architecture="gru", hidden_size=8), task.spec)
    program = make_train(built.model, task, build_optimizer(OptimizerConfig(lr=0.01), 20), 8)
    state = jax.jit(program.batched_init)(jnp.asarray(SEEDS, jnp.int32))
    return task, program, state, jax.device_put(task.train_data())


def leaves(tree):
    return [np.asarray(leaf) for leaf in jax.tree.leaves(jax.device_get(tree))]


def test_mapped_seeds_compute_what_vmapped_seeds_do(setup):
    _, program, state, data = setup
    chunk = {
        how: jax.jit(seed_batching.chunk_of(program, how), static_argnums=2)
        for how in ("vmap", "map")
    }
    (vmapped, vmapped_losses), (mapped, mapped_losses) = (
        chunk[how](state, data, 5) for how in ("vmap", "map")
    )
    np.testing.assert_allclose(mapped_losses, vmapped_losses, rtol=1e-5)
    for ours, theirs in zip(leaves(mapped.params), leaves(vmapped.params), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(mapped.step, vmapped.step)


def test_auto_measures_once_remembers_and_takes_vmap_where_measuring_does_not_pay(
    setup, tmp_path, monkeypatch
):
    _, program, state, data = setup
    measured = []
    real = seed_batching.measure
    monkeypatch.setattr(seed_batching, "measure", lambda *args: measured.append(1) or real(*args))
    long = seed_batching.MEASURE_FROM_STEPS

    first = seed_batching.choose("auto", program, state, data, long, tmp_path)
    assert first.why == "measured" and first.how in ("vmap", "map")
    assert set(first.ms_per_step) == {"vmap", "map"} and min(first.ms_per_step.values()) > 0
    again = seed_batching.choose("auto", program, state, data, long, tmp_path)
    assert (again.how, again.why, again.ms_per_step) == (first.how, "cached", first.ms_per_step)
    assert len(measured) == 1
    cache = tmp_path / seed_batching.CACHE_FILE
    assert list(json.loads(cache.read_text()).values()) == [
        {"how": first.how, "ms_per_step": first.ms_per_step}
    ]

    cache.write_text("{not json")  # a damaged cache is measured again, and rewritten
    assert seed_batching.choose("auto", program, state, data, long, tmp_path).why == "measured"
    assert len(json.loads(cache.read_text())) == 1

    assert seed_batching.choose("auto", program, state, data, long - 1, tmp_path).why == (
        "short run"
    )
    one = jax.tree.map(lambda leaf: leaf[:1], state)
    assert seed_batching.choose("auto", program, one, data, long, tmp_path).how == "vmap"
    for how in ("vmap", "map"):
        assert seed_batching.choose(how, program, state, data, long, tmp_path).how == how
        assert seed_batching.choose("auto", program, state, data, long, None, resumed=how).how == (
            how
        )
    assert len(measured) == 2


def test_the_choice_is_faster_by_the_margin_or_vmap(setup, tmp_path, monkeypatch):
    _, program, state, data = setup
    steps = seed_batching.MEASURE_FROM_STEPS
    for ms, expected in (
        ({"vmap": 10.0, "map": 9.0}, "map"),
        ({"vmap": 10.0, "map": 9.8}, "vmap"),  # within the margin: noise
        ({"vmap": 9.0, "map": 10.0}, "vmap"),
    ):
        monkeypatch.setattr(seed_batching, "measure", lambda *args, ms=ms: ms)
        assert seed_batching.choose("auto", program, state, data, steps, None).how == expected


def test_a_run_resumes_with_the_batching_it_was_checkpointed_with(setup, tmp_path):
    task, program, _, _ = setup
    trainer = dict(steps=8, eval_every=2, batch_size=8, progress=False, keep_best=False)
    whole = run_training(program, task, SEEDS, TrainerConfig(**trainer, seeds_over="map"))
    assert (whole.seed_batching.how, whole.seed_batching.why) == ("map", "configured")

    folder = tmp_path / "checkpoints"
    halfway = TrainerConfig(**{**trainer, "steps": 4}, seeds_over="map")
    run_training(program, task, SEEDS, halfway, checkpointer=Checkpointer(folder))
    # asked for vmap now: the checkpoint's map wins, and the numbers are the uninterrupted run's
    resumed = run_training(
        program,
        task,
        SEEDS,
        TrainerConfig(**trainer, seeds_over="vmap"),
        checkpointer=Checkpointer(folder),
    )
    assert (resumed.seed_batching.how, resumed.seed_batching.why) == ("map", "resumed")
    for ours, theirs in zip(leaves(resumed.state.params), leaves(whole.state.params), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    for split, values in whole.eval_metrics.items():
        np.testing.assert_array_equal(resumed.eval_metrics[split], values)
