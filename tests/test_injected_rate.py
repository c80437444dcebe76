"""The learning rate and clipping threshold are optimizer state, not constants of the program.

Runs that differ only in them (a learning-rate search's trials) lower to the same training program,
so the persistent compilation cache serves all but the first; the arithmetic is bit-identical to the
constants' for the optimizers the committed results used (Adam and RMSprop, with clipping or
without), within float32 rounding for SGD with Nesterov momentum; and a checkpoint written before
the injection still resumes, ending within float32 rounding of a run made after it. These claims
are about the compiler a user's run gets, so they are checked in a child process without the
suite's cheaper code generation (`conftest.run_under_default_compiler`).
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import run_under_default_compiler

from seqbench.config import ModelConfig, OptimizerConfig, TrainerConfig
from seqbench.models.build import build_model
from seqbench.tasks.synthetic import AddingConfig, AddingProblem
from seqbench.train.checkpoint import Checkpointer
from seqbench.train.driver import run_training
from seqbench.train.optim import build_optimizer
from seqbench.train.program import make_train

SEEDS = [0, 1]


def with_constants(cfg: OptimizerConfig) -> optax.GradientTransformation:
    """The optimizer as seqbench built it before the injection: the rate and threshold constants."""
    lr = optax.constant_schedule(cfg.lr)
    if cfg.name == "adam":
        opt = optax.adam(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
    elif cfg.name == "adamw":
        opt = optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay)
    elif cfg.name == "rmsprop":
        opt = optax.rmsprop(lr, decay=cfg.decay, eps=cfg.eps, momentum=cfg.momentum or None)
    else:
        opt = optax.sgd(lr, momentum=cfg.momentum or None, nesterov=cfg.nesterov)
    if cfg.grad_clip:
        return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), opt)
    return opt


def trained(optimizer: optax.GradientTransformation, steps: int = 12) -> dict:
    """Parameters after `steps` jitted updates with large random gradients (clipping engages)."""
    params = {"w": jnp.linspace(-1.0, 1.0, 60).reshape(12, 5), "b": jnp.ones(7)}
    state = optimizer.init(params)

    @jax.jit
    def update(params, state, key):
        grads = jax.tree.map(lambda x: 3.0 * jax.random.normal(key, x.shape), params)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    for i in range(steps):
        params, state = update(params, state, jax.random.key(i))
    return jax.device_get(params)


#: the optimizers whose injected rate and threshold compute bit for bit what the constants did:
#: those of the committed results (Adam, RMSprop) and AdamW
BIT_IDENTICAL = [
    dict(name="adam", lr=3e-3, grad_clip=1.0),
    dict(name="adam", lr=2e-3, grad_clip=5.0),
    dict(name="rmsprop", lr=5e-4, grad_clip=None),
    dict(name="rmsprop", lr=1e-3, momentum=0.9, grad_clip=1.0),
    dict(name="adamw", lr=1e-3, weight_decay=0.01),
]
#: SGD with Nesterov momentum: the default compiler folds the constant rate into the momentum
#: arithmetic, and 12 updates end up to one float32 rounding (1.2e-7) apart
WITHIN_ROUNDING = [dict(name="sgd", lr=0.1, momentum=0.9, nesterov=True)]


def check_injected_equals_constants() -> None:
    """The optimizers above, injected, end where their constants did (raises otherwise)."""
    for options in BIT_IDENTICAL + WITHIN_ROUNDING:
        cfg = OptimizerConfig(**options)
        ours, theirs = trained(build_optimizer(cfg, 10)), trained(with_constants(cfg))
        for name in ours:
            if options in BIT_IDENTICAL:
                np.testing.assert_array_equal(ours[name], theirs[name], err_msg=f"{options}")
            else:
                np.testing.assert_allclose(
                    ours[name], theirs[name], rtol=1e-6, err_msg=f"{options}"
                )


def test_injected_rate_and_threshold_compute_what_the_constants_did():
    run_under_default_compiler("test_injected_rate", "check_injected_equals_constants")


@pytest.mark.parametrize("schedule", ["linear", "cosine", "warmup_cosine"])
def test_a_scheduled_rate_follows_its_schedule_with_the_peak_injected(schedule):
    cfg = OptimizerConfig(name="sgd", lr=0.5, grad_clip=None, schedule=schedule, warmup_steps=3)
    reference = optax.sgd(
        {
            "linear": optax.linear_schedule(0.5, 0.0, 10),
            "cosine": optax.cosine_decay_schedule(0.5, 10),
            "warmup_cosine": optax.warmup_cosine_decay_schedule(0.0, 0.5, 3, 10),
        }[schedule]
    )
    ours, theirs = trained(build_optimizer(cfg, 10), 8), trained(reference, 8)
    for name in ours:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-6)


@pytest.fixture(scope="module")
def task_and_model():
    task = AddingProblem(AddingConfig(length=6, n_eval=16))
    return task, build_model(ModelConfig(architecture="gru", hidden_size=6), task.spec).model


def chunk_program(task, model, cfg: OptimizerConfig) -> str:
    """The lowered training chunk (2 steps, 2 seeds) of `model` on `task` with optimizer `cfg`."""
    program = make_train(model, task, build_optimizer(cfg, 100), 8)
    seeds = jnp.asarray(SEEDS, jnp.int32)
    state = jax.jit(program.batched_init)(seeds)
    data = jax.device_put(task.train_data())
    return jax.jit(program.batched_chunk, static_argnums=2).lower(state, data, 2).as_text()


def test_runs_that_differ_only_in_rate_and_threshold_lower_to_one_program(task_and_model):
    task, model = task_and_model
    programs = {
        chunk_program(task, model, OptimizerConfig(lr=lr, grad_clip=clip))
        for lr, clip in ((1e-3, 1.0), (3.7e-2, 1.0), (2e-4, 0.25))
    }
    assert len(programs) == 1
    # what does change the program still does
    other = chunk_program(task, model, OptimizerConfig(lr=1e-3, grad_clip=1.0, b1=0.8))
    assert other not in programs


def check_resume_across_the_injection(folder: str) -> None:
    """A run checkpointed at step 4 of 8 with the constants' optimizer resumes with the injected
    one and ends where a run of 8 steps with the injected one does (raises otherwise);
    checkpoints go to `folder`. Within float32 rounding, not bit for bit: inside the whole
    training program the default compiler fuses the constant rate into the update differently
    from the injected one (the first 4 steps end up to 4.5e-8 apart)."""
    task = AddingProblem(AddingConfig(length=6, n_eval=16))
    model = build_model(ModelConfig(architecture="gru", hidden_size=6), task.spec).model
    cfg = OptimizerConfig(lr=0.05, grad_clip=1.0)
    before = make_train(model, task, with_constants(cfg), 8)
    now = make_train(model, task, build_optimizer(cfg, 8), 8)
    trainer = TrainerConfig(steps=8, eval_every=2, batch_size=8, progress=False, keep_best=False)
    checkpoints = Path(folder)

    # the old layout, checkpointed at step 4 (a run of 4 of the 8 steps)
    halfway = TrainerConfig(steps=4, eval_every=2, batch_size=8, progress=False, keep_best=False)
    run_training(before, task, SEEDS, halfway, checkpointer=Checkpointer(checkpoints))
    resumed = run_training(now, task, SEEDS, trainer, checkpointer=Checkpointer(checkpoints))
    whole = run_training(now, task, SEEDS, trainer)
    assert resumed.timing["resumed_from_step"] == 4

    assert jax.tree.structure(resumed.state) == jax.tree.structure(whole.state)
    for ours, theirs in zip(
        jax.tree.leaves(jax.device_get(resumed.state.params)),
        jax.tree.leaves(jax.device_get(whole.state.params)),
        strict=True,
    ):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)
    for split, values in whole.eval_metrics.items():
        np.testing.assert_allclose(resumed.eval_metrics[split], values, rtol=1e-5)
    injected = resumed.state.opt_state[1]  # chain(clip, adam): the adam injection
    np.testing.assert_array_equal(injected.count, whole.state.opt_state[1].count)
    np.testing.assert_array_equal(injected.hyperparams["learning_rate"], np.float32(0.05))


def test_a_checkpoint_written_before_the_injection_resumes(tmp_path):
    checkpoints = str(tmp_path / "checkpoints")
    run_under_default_compiler(
        "test_injected_rate", "check_resume_across_the_injection", checkpoints
    )
