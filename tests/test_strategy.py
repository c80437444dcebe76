"""`trainer.seeds_over` and `trainer.input_projection`: how the training chunk runs, chosen by
measurement (`seqbench.train.strategy`)."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqbench.config import ModelConfig, OptimizerConfig, TrainerConfig
from seqbench.models.build import build_model
from seqbench.tasks.synthetic import AddingConfig, AddingProblem
from seqbench.train import strategy
from seqbench.train.checkpoint import Checkpointer
from seqbench.train.driver import run_training
from seqbench.train.optim import build_optimizer
from seqbench.train.program import make_train

SEEDS = [0, 1, 2]


@pytest.fixture(scope="module")
def setup():
    task = AddingProblem(AddingConfig(length=12, n_eval=16))
    built = build_model(ModelConfig(architecture="gru", hidden_size=8), task.spec)
    optimizer = build_optimizer(OptimizerConfig(lr=0.01), 20)
    programs = {
        how: make_train(built.model.clone(hoist_projection=how == "hoisted"), task, optimizer, 8)
        for how in strategy.PROJECTIONS
    }
    state = jax.jit(programs["in_step"].batched_init)(jnp.asarray(SEEDS, jnp.int32))
    return task, programs, state, jax.device_put(task.train_data())


def leaves(tree):
    return [np.asarray(leaf) for leaf in jax.tree.leaves(jax.device_get(tree))]


def test_every_candidate_computes_what_the_default_does(setup):
    """Mapped seeds and the hoisted projection train as vmapped seeds with the projection in the
    step do (5 steps; rounding apart)."""
    _, programs, state, data = setup
    runs = {
        (how, projection): jax.jit(strategy.chunk_of(programs[projection], how), static_argnums=2)(
            state, data, 5
        )
        for how in strategy.WAYS
        for projection in strategy.PROJECTIONS
    }
    default, default_losses = runs["vmap", "in_step"]
    for other, losses in runs.values():
        np.testing.assert_allclose(losses, default_losses, rtol=1e-5)
        for ours, theirs in zip(leaves(other.params), leaves(default.params), strict=True):
            np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(other.step, default.step)


def test_auto_measures_once_remembers_and_takes_the_defaults_where_measuring_does_not_pay(
    setup, tmp_path, monkeypatch
):
    _, programs, state, data = setup
    measured = []
    real = strategy.measure
    monkeypatch.setattr(strategy, "measure", lambda *args: measured.append(1) or real(*args))
    long = strategy.MEASURE_FROM_STEPS

    first = strategy.choose("auto", programs, state, data, long, tmp_path)
    assert (first.seeds_over_why, first.input_projection_why) == ("measured", "measured")
    assert first.seeds_over in strategy.WAYS and first.input_projection in strategy.PROJECTIONS
    labels = {"vmap, in_step", "vmap, hoisted", "map, in_step", "map, hoisted"}
    assert set(first.ms_per_step) == labels and min(first.ms_per_step.values()) > 0
    fastest = min(first.ms_per_step, key=first.ms_per_step.get)
    chosen = strategy.label(first.seeds_over, first.input_projection)
    assert chosen in (fastest, "vmap, in_step")  # the default stays unless beaten by the margin
    again = strategy.choose("auto", programs, state, data, long, tmp_path)
    assert again == dataclasses.replace(
        first, seeds_over_why="cached", input_projection_why="cached"
    )
    assert len(measured) == 1
    cache = tmp_path / strategy.CACHE_FILE
    assert list(json.loads(cache.read_text()).values()) == [
        {
            "seeds_over": first.seeds_over,
            "input_projection": first.input_projection,
            "ms_per_step": first.ms_per_step,
        }
    ]

    # the real measurement has run; the rest only count the candidates measured (no compiles)
    monkeypatch.setattr(
        strategy,
        "measure",
        lambda programs, candidates, *args: (
            measured.append(1) or {strategy.label(*c): 1.0 for c in candidates}
        ),
    )
    cache.write_text("{not json")  # a damaged cache is measured again, and rewritten
    assert strategy.choose("auto", programs, state, data, long, tmp_path).seeds_over_why == (
        "measured"
    )
    assert len(json.loads(cache.read_text())) == 1

    short = strategy.choose("auto", programs, state, data, long - 1, tmp_path)
    assert (short.seeds_over, short.input_projection) == ("vmap", "in_step")
    assert (short.seeds_over_why, short.input_projection_why) == ("short run", "short run")
    # one seed: nothing to batch, but the projection is still measured (two candidates)
    one = jax.tree.map(lambda leaf: leaf[:1], state)
    alone = strategy.choose("auto", programs, one, data, long, tmp_path)
    assert (alone.seeds_over, alone.seeds_over_why) == ("vmap", "one seed")
    assert set(alone.ms_per_step) == {"vmap, in_step", "vmap, hoisted"}
    assert len(measured) == 3
    for how in strategy.WAYS:  # configured both ways: nothing to measure
        for projection in strategy.PROJECTIONS:
            fixed = strategy.choose(
                how, {projection: programs[projection]}, state, data, long, None
            )
            assert (fixed.seeds_over, fixed.input_projection) == (how, projection)
            assert (fixed.seeds_over_why, fixed.input_projection_why) == ("configured",) * 2
    plain = strategy.choose("vmap", {None: programs["in_step"]}, state, data, long, None)
    assert plain.record() == {"seeds_over": "vmap", "seeds_over_why": "configured"}
    assert len(measured) == 3


def test_the_choice_is_faster_by_the_margin_or_the_default(setup, monkeypatch):
    _, programs, state, data = setup
    steps = strategy.MEASURE_FROM_STEPS
    slow = {
        "vmap, in_step": 10.0,
        "vmap, hoisted": 10.0,
        "map, in_step": 10.0,
        "map, hoisted": 10.0,
    }
    for faster, expected in (
        ({"map, in_step": 9.0}, ("map", "in_step")),
        ({"vmap, hoisted": 9.0, "map, hoisted": 9.5}, ("vmap", "hoisted")),
        ({"map, hoisted": 9.8}, ("vmap", "in_step")),  # within the margin: noise
        ({"vmap, in_step": 9.0, "map, in_step": 8.9}, ("vmap", "in_step")),
    ):
        ms = {**slow, **faster}
        monkeypatch.setattr(strategy, "measure", lambda *args, ms=ms: ms)
        chosen = strategy.choose("auto", programs, state, data, steps, None)
        assert (chosen.seeds_over, chosen.input_projection) == expected


def test_a_run_resumes_with_the_strategy_it_was_checkpointed_with(setup, tmp_path):
    task, programs, _, _ = setup
    trainer = dict(steps=8, eval_every=2, batch_size=8, progress=False, keep_best=False)
    hoisted = {"hoisted": programs["hoisted"]}
    whole = run_training(
        programs["hoisted"],
        task,
        SEEDS,
        TrainerConfig(**trainer, seeds_over="map"),
        programs=hoisted,
    )
    assert whole.strategy.record() == {
        "seeds_over": "map",
        "seeds_over_why": "configured",
        "input_projection": "hoisted",
        "input_projection_why": "configured",
    }

    folder = tmp_path / "checkpoints"
    halfway = TrainerConfig(**{**trainer, "steps": 4}, seeds_over="map")
    run_training(
        programs["hoisted"],
        task,
        SEEDS,
        halfway,
        checkpointer=Checkpointer(folder),
        programs=hoisted,
    )
    # asked for vmap and either projection now: the checkpoint's choice wins, and the numbers are
    # the uninterrupted run's
    resumed = run_training(
        programs["in_step"],
        task,
        SEEDS,
        TrainerConfig(**trainer, seeds_over="vmap"),
        checkpointer=Checkpointer(folder),
        programs=programs,
    )
    assert (resumed.strategy.seeds_over, resumed.strategy.input_projection) == ("map", "hoisted")
    assert resumed.strategy.seeds_over_why == "resumed"
    for ours, theirs in zip(leaves(resumed.state.params), leaves(whole.state.params), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    for split, values in whole.eval_metrics.items():
        np.testing.assert_array_equal(resumed.eval_metrics[split], values)


def test_a_checkpoint_from_before_the_choices_resumes_as_it_was_made(setup):
    _, programs, state, data = setup
    old = {"done": 4}  # a history without seeds_over or input_projection: vmap, in the step
    chosen = strategy.choose("auto", programs, state, data, 10_000, None, resumed=old)
    assert (chosen.seeds_over, chosen.input_projection) == ("vmap", "in_step")
    plain = strategy.choose("auto", {None: programs["in_step"]}, state, data, 10_000, None, old)
    assert plain.record() == {"seeds_over": "vmap", "seeds_over_why": "resumed"}


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ([], ["in_step", "hoisted"]),
        (["trainer.input_projection=hoisted"], ["hoisted"]),
        (["trainer.remat=true"], None),  # remat keeps the projection in the step
        (["model=mingru"], None),  # no input projection to hoist
    ],
)
def test_a_job_offers_the_projections_its_model_can_run(compose_config, overrides, expected):
    from seqbench.job import Job
    from seqbench.store import validate

    config = validate(compose_config(["model=lstm", "task=adding", *overrides]))
    offered = Job.build(config).projections()
    assert (None if offered is None else list(offered)) == expected
