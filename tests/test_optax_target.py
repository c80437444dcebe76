"""Optimizers and schedules through `_target_` (`optimizer=optax`, `optimizer.schedule_fn`): checked
before anything is built, numerically the named optimizers when they name the same optax function,
trainable end to end, and invisible to the identity of every committed run record."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from seqbench import records
from seqbench.cli.train import CONF_DIR
from seqbench.config import ConfigError, OptimizerConfig
from seqbench.job import Job
from seqbench.store import validate
from seqbench.train.driver import run_training
from seqbench.train.optim import build_optimizer, check_targets, learning_rate_schedule

REPO = Path(__file__).resolve().parent.parent
LION = {"_target_": "optax.lion", "b1": 0.9, "b2": 0.99, "weight_decay": 1e-3}


def composed(*overrides):
    """The validated config of `overrides` (one Hydra context per call)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return validate(compose("config", overrides=list(overrides)))


def refused(**fields):
    """The one-line ConfigError an OptimizerConfig with `fields` is refused with (by its own
    checks or by `check_targets`, as `seqbench.store.validate` runs both)."""
    with pytest.raises(ConfigError) as error:
        check_targets(OptimizerConfig(**fields))
    message = str(error.value)
    assert "\n" not in message
    return message


def steps_of(optimizer, n=5):
    """Parameters of a quadratic 0.5 * ||A p - b||² after each of `n` steps of `optimizer`."""
    a = jnp.array([[2.0, 0.5], [0.1, 1.0], [1.0, -1.0]])
    b = jnp.array([1.0, -2.0, 0.5])
    params = {"w": jnp.array([0.3, -0.7]), "c": jnp.array(0.2)}

    def loss(p):
        return 0.5 * jnp.sum((a @ p["w"] + p["c"] - b) ** 2)

    state = optimizer.init(params)
    trail = []
    for _ in range(n):
        updates, state = optimizer.update(jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, updates)
        trail.append(jax.tree.map(np.asarray, params))
    return trail


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"transform": {**LION, "_target_": "optax.lionn"}},
            "optimizer.transform._target_: optax.lionn is not an optax optimizer "
            "(did you mean optax.lion?)",
        ),
        (
            {"transform": {"_target_": "optax.nonexistent"}},
            "optimizer.transform._target_: optax.nonexistent is not an optax optimizer",
        ),
        (
            {"transform": {"_target_": "no_such_package.opt"}},
            "optimizer.transform._target_: no_such_package.opt is not an optax optimizer",
        ),
        (
            {"transform": {**LION, "b3": 0.5}},
            "optimizer.transform.b3: not a parameter of optax.lion (parameters: learning_rate, b1,",
        ),
        (
            {"transform": {**LION, "weight_decai": 0.5}},
            "optimizer.transform.weight_decai: not a parameter of optax.lion "
            "(did you mean weight_decay?)",
        ),
        (
            {"transform": {"_target_": "optax.clip_by_global_norm", "max_norm": 1.0}},
            "optimizer.transform._target_: optax.clip_by_global_norm takes no learning_rate: "
            "not an optax optimizer",
        ),
        (
            {"transform": {**LION, "learning_rate": 0.1}},
            "optimizer.transform.learning_rate: set by seqbench",
        ),
        (
            {"transform": {"_target_": "optax.inject_hyperparams", "learning_rate": 1}},
            "optimizer.transform.learning_rate: set by seqbench",
        ),
        ({"transform": {"b1": 0.9}}, "optimizer.transform._target_: missing"),
        (
            {"transform": {"_target_": "optax.adamw", "mask": {"_target_": "optax.nonexistent"}}},
            "optimizer.transform.mask._target_: optax.nonexistent is not a callable",
        ),
        ({"transform": "optax.lion"}, "optimizer.transform: expected {_target_:"),
        ({"transform": {**LION, "_args_": [1]}}, "optimizer.transform._args_: not supported"),
        ({"transform": None}, "optimizer.transform: optimizer.name=optax needs {_target_:"),
        (
            {"transform": LION, "weight_decay": 0.1},
            "optimizer.weight_decay: not read with optimizer.name=optax; give it to the optax "
            "optimizer as optimizer.transform.weight_decay",
        ),
    ],
)
def test_a_bad_optax_optimizer_is_refused_with_one_line_naming_the_key(fields, message):
    assert refused(name="optax", **fields).startswith(message)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"name": "adam", "transform": LION},
            "optimizer.transform: only read with optimizer.name=optax (got 'adam')",
        ),
        (
            {"schedule_fn": {"_target_": "optax.exponential_decay", "init_value": 0.1}},
            "optimizer.schedule_fn: optax.exponential_decay: missing a required argument: "
            "'transition_steps'",
        ),
        (
            {"schedule_fn": {"_target_": "optax.exponentail_decay"}},
            "optimizer.schedule_fn._target_: optax.exponentail_decay is not an optax schedule "
            "(did you mean optax.exponential_decay?)",
        ),
        (
            {"schedule_fn": {"_target_": "optax.adam", "learning_rate": 0.1}},
            "optimizer.schedule_fn._target_: optax.adam returns GradientTransformationExtraArgs, "
            "not a schedule",
        ),
        (
            {
                "schedule": "cosine",
                "schedule_fn": {"_target_": "optax.constant_schedule", "value": 0.1},
            },
            "optimizer.schedule: replaced by optimizer.schedule_fn; leave it at 'constant'",
        ),
        (
            {"schedule_fn": {"_target_": "optax.constant_schedule", "value": 1, "_partial_": True}},
            "optimizer.schedule_fn._partial_: not supported",
        ),
    ],
)
def test_a_bad_schedule_fn_or_a_stray_transform_is_refused(fields, message):
    assert refused(**fields).startswith(message)


def test_the_optax_option_composes_validates_and_builds_lion():
    cfg = composed("optimizer=optax")
    assert cfg.optimizer.name == "optax" and cfg.optimizer.transform == LION
    ours = steps_of(build_optimizer(cfg.optimizer, 10))
    lr = cfg.optimizer.lr
    theirs = steps_of(optax.chain(optax.clip_by_global_norm(1.0), optax.lion(lr, 0.9, 0.99)))
    for got, want in zip(ours, theirs, strict=True):
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-6)


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["optimizer.grad_clip=null", "optimizer.eps=1e-6", "optimizer.b2=0.99"],
        ["optimizer.schedule=warmup_cosine", "optimizer.warmup_steps=2", "optimizer.grad_clip=0.1"],
    ],
)
def test_optax_adam_by_target_steps_exactly_as_the_named_adam(overrides):
    named = composed("optimizer=adam", *overrides).optimizer
    generic = OptimizerConfig(
        name="optax",
        lr=named.lr,
        grad_clip=named.grad_clip,
        schedule=named.schedule,
        warmup_steps=named.warmup_steps,
        final_lr_fraction=named.final_lr_fraction,
        transform={"_target_": "optax.adam", "b1": named.b1, "b2": named.b2, "eps": named.eps},
    )
    ours, theirs = steps_of(build_optimizer(generic, 8)), steps_of(build_optimizer(named, 8))
    moved = ours[-1]["w"] - np.array([0.3, -0.7])
    assert np.abs(moved).min() > 1e-4  # the steps did something
    for got, want in zip(ours, theirs, strict=True):
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-7, atol=1e-9)


def test_optax_adam_by_target_from_the_command_line_matches_the_named_adam():
    generic = composed(
        "optimizer=optax",
        "optimizer.lr=1e-2",
        "optimizer.transform=null",
        "optimizer.transform={_target_: optax.adam, b1: 0.8, b2: 0.99, eps: 1.0e-6}",
    ).optimizer
    named = composed(
        "optimizer=adam",
        "optimizer.lr=1e-2",
        "optimizer.b1=0.8",
        "optimizer.b2=0.99",
        "optimizer.eps=1e-6",
    ).optimizer
    ours, theirs = steps_of(build_optimizer(generic, 5)), steps_of(build_optimizer(named, 5))
    for got, want in zip(ours, theirs, strict=True):
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-7, atol=1e-9)


def test_schedule_fn_by_target_sets_the_learning_rate_with_interpolations():
    cfg = composed(
        "optimizer=adam",
        "optimizer.lr=0.5",
        "trainer.steps=40",
        "optimizer.schedule_fn={_target_: optax.exponential_decay, init_value: '${optimizer.lr}', "
        "transition_steps: '${trainer.steps}', decay_rate: 0.1}",
    )
    assert cfg.optimizer.schedule_fn["init_value"] == 0.5
    assert cfg.optimizer.schedule_fn["transition_steps"] == 40
    lr = learning_rate_schedule(cfg.optimizer, cfg.trainer.steps)
    assert float(lr(0)) == pytest.approx(0.5)
    assert float(lr(40)) == pytest.approx(0.05)
    assert float(lr(20)) == pytest.approx(0.5 * 0.1**0.5, rel=1e-5)
    # and the optimizer takes it: sgd's first step is -lr * gradient
    sgd = OptimizerConfig(
        name="sgd", momentum=0.0, grad_clip=None, schedule_fn=cfg.optimizer.schedule_fn
    )
    updates, _ = build_optimizer(sgd, 40).update(
        {"w": jnp.ones(2)}, build_optimizer(sgd, 40).init({"w": jnp.ones(2)})
    )
    np.testing.assert_allclose(updates["w"], [-0.5, -0.5], rtol=1e-6)


def not_an_optimizer(learning_rate, scale=1.0):
    """A user's function without a return annotation that returns no GradientTransformation."""
    return {"learning_rate": learning_rate, "scale": scale}


def test_a_target_returning_something_else_is_refused_when_built():
    # unannotated, it passes the signature check; what it returns is checked when built
    cfg = OptimizerConfig(
        name="optax", transform={"_target_": f"{__name__}.not_an_optimizer", "scale": 2.0}
    )
    with pytest.raises(ConfigError) as error:
        build_optimizer(cfg, 10)
    assert str(error.value) == (
        f"optimizer.transform._target_: {__name__}.not_an_optimizer returned a dict, not an "
        "optax.GradientTransformation: not an optax optimizer"
    )


def test_lion_trains_a_tiny_run_end_to_end():
    cfg = composed(
        "experiment=smoke",
        "model=gru",
        "task=adding",
        "task.length=6",
        "optimizer=optax",
        "optimizer.lr=1e-2",
        "trainer.steps=30",
        "trainer.eval_every=15",
        "seeds=[0]",
    )
    job = Job.build(cfg)
    result = run_training(job.program(), job.task, list(cfg.seeds), cfg.trainer)
    mse = result.eval_metrics["test/mse"][:, 0]
    assert np.isfinite(mse).all() and mse[-1] < mse[0], mse


def test_a_bad_target_stops_the_command_line_with_one_line(run_cli, tmp_path):
    done = run_cli(
        "experiment=smoke", "optimizer=optax", "optimizer.transform._target_=optax.nonexistent"
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0] == (
        "seqbench-train: error: optimizer.transform._target_: optax.nonexistent is not an optax "
        "optimizer"
    )
    assert not (tmp_path / "outputs").exists()


def optimizer_relevant(overrides):
    """The overrides of a committed run that can reach its optimizer section: the experiment, the
    model when the experiment has a file for it (conf/experiment/for_model/), optimizer keys."""
    keys = {o.lstrip("+~").split("=", 1)[0]: o.split("=", 1)[-1] for o in overrides}
    relevant = [o for o in overrides if o.lstrip("+~").startswith(("experiment=", "optimizer"))]
    for group in ("model", "task"):
        name = f"{keys.get('experiment')}_{keys.get(group)}.yaml"
        if (CONF_DIR / "experiment" / f"for_{group}" / name).exists():
            relevant.append(f"{group}={keys[group]}")
    return tuple(relevant)


def test_the_new_options_at_their_neutral_values_leave_every_committed_identity_unchanged():
    """Every committed run record (one per command that can set a different optimizer section):
    today's optimizer section of the same overrides, in place of the stored one, hashes as the
    stored config did (so those runs are still resumed, skipped and grouped), and the stored
    sections are the named optimizers'."""
    runs = {}
    for path in sorted(REPO.glob("results/**/.hydra/overrides.yaml")):
        stored = json.loads((path.parent.parent / records.RECORD_NAME).read_text())["config"]
        overrides = yaml.safe_load(path.read_text())
        key = (optimizer_relevant(overrides), json.dumps(stored["optimizer"], sort_keys=True))
        runs.setdefault(key, (path, overrides, stored))
    assert len(runs) >= 5, sorted(runs)  # adam at several lr and clips, rmsprop
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for path, overrides, stored in runs.values():
            now = compose("config", overrides=overrides)
            section = OmegaConf.to_container(now, resolve=True)["optimizer"]
            assert section["transform"] is None and section["schedule_fn"] is None
            # records made before the options existed lack them; later ones hold them at null
            assert stored["optimizer"].get("transform") is None, path
            assert stored["optimizer"].get("schedule_fn") is None, path
            today = {**stored, "optimizer": section}
            assert records.config_identity(today) == records.config_identity(stored), path
            other = {**stored, "optimizer": {**section, "name": "optax", "transform": LION}}
            assert records.config_identity(other) != records.config_identity(stored)
