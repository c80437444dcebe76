"""Bad input that composes or parses but used to get through: each is refused with one line."""

import typing

import pytest

from seqbench import config as schemas
from seqbench.cli.train import CONF_DIR
from seqbench.config import ConfigError
from seqbench.models.architectures import ARCHITECTURES
from seqbench.preflight import preflight
from seqbench.store import validate
from seqbench.tasks.registry import TASKS


def float_fields():
    """(overrides selecting the schema, dotted key) of every float field of every group schema."""
    groups = {
        "model": schemas.ModelConfig,
        "optimizer": schemas.OptimizerConfig,
        "trainer": schemas.TrainerConfig,
        "logger": schemas.LoggerConfig,
        "paths": schemas.PathsConfig,
    }
    cases = [([], group, schema) for group, schema in groups.items()]
    for name, schema in TASKS.items():
        cases.append(([f"task={'smnist' if name == 'mnist' else name}"], "task", schema))
    for name, spec in ARCHITECTURES.items():  # conf/model/<name>.yaml selects each
        cases.append(([f"model={name}"], "model.cell", spec.options))
    found = []
    for option, group, schema in cases:
        for key, hint in typing.get_type_hints(schema).items():
            if hint is float or float in typing.get_args(hint):
                found.append((option, f"{group}.{key}"))
    return found


FLOAT_FIELDS = float_fields()


def refused(argv):
    """The one-line message preflight refuses `argv` with."""
    with pytest.raises(ConfigError) as error:
        preflight(["experiment=smoke", *argv], CONF_DIR)
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "++model.hiden_size=5",
            "model.hiden_size: not a key of model (did you mean hidden_size?)",
        ),
        (
            "+trainer.eval_evry=5",
            "trainer.eval_evry: not a key of trainer (did you mean eval_every?)",
        ),
        ("++task.lenght=5", "task.lenght: not a key of task (did you mean length?)"),
        ("+seedz=[1]", "seedz: not a key at the top level (did you mean seeds?)"),
        ("++paths.dat_dir=/tmp", "paths.dat_dir: not a key of paths (did you mean data_dir?)"),
        ("model.hiden_size=5", "model.hiden_size: not a key of model (did you mean hidden_size?)"),
    ],
)
def test_keys_no_schema_has_are_refused_with_or_without_a_prefix(override, message):
    assert refused([override]) == message


@pytest.mark.parametrize(
    "argv",
    [
        ["++hydra.job.chdir=false"],
        ["+hydra.job.env_set.FOO=bar"],
        ["++trainer.steps=3"],
        ['name="café"', 'tags=[a,"ü"]'],
        ["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
    ],
)
def test_legitimate_overrides_still_pass(argv):
    preflight(["experiment=smoke", *argv], CONF_DIR)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.lr=inf", "optimizer.lr: must be a finite number, got inf"),
        ("optimizer.lr=nan", "optimizer.lr: must be a finite number, got nan"),
        ("model.cell.forget_bias=nan", "model.cell.forget_bias: must be a finite number, got nan"),
        ("optimizer.grad_clip=nan", "optimizer.grad_clip: must be a finite number, got nan"),
        ("optimizer.grad_clip=-inf", "optimizer.grad_clip: must be a finite number, got -inf"),
        ("logger.init_timeout=inf", "logger.init_timeout: must be a finite number, got inf"),
        ("seeds=[0,2147483648]", "seeds: must be in [0, 2147483647] (int32), got 2147483648"),
        ("seeds=[-1]", "seeds: must be in [0, 2147483647] (int32), got -1"),
        ("task.eval_seed=4294967296", "task.eval_seed: must be in [0, 2147483647]"),
    ],
)
def test_non_finite_and_out_of_range_numbers_are_refused(override, message):
    assert refused([override]).startswith(message)


@pytest.mark.parametrize(
    ("task", "key"),
    [("pmnist", "permutation_seed"), ("uea", "split_seed"), ("forecast", "split_seed")],
)
def test_data_set_seeds_must_be_non_negative_int32(compose_config, task, key):
    for value in (-1, 2**31):
        with pytest.raises(ConfigError, match=rf"^task\.{key}: must be in \[0, 2147483647\]"):
            validate(compose_config([f"task={task}", f"task.{key}={value}"]))
    validate(compose_config([f"task={task}", f"task.{key}={2**31 - 1}"]))


def test_every_float_field_is_covered():
    keys = {key for _, key in FLOAT_FIELDS}
    assert {
        "optimizer.lr",
        "optimizer.grad_clip",
        "model.cell.forget_bias",
        "logger.init_timeout",
    } <= keys


@pytest.mark.parametrize("bad", ["inf", "-inf", "nan"])
@pytest.mark.parametrize(
    ("option", "key"), FLOAT_FIELDS, ids=[" ".join([*o, k]) for o, k in FLOAT_FIELDS]
)
def test_any_non_finite_float_in_any_schema_is_refused(compose_config, option, key, bad):
    with pytest.raises(ConfigError, match=rf"^{key}: must be a finite number, got {bad}$"):
        validate(compose_config([*option, f"{key}={bad}"]))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["name=café"],
            """cannot parse 'name=café': unquoted non-ASCII value; quote the value: 'name="café"'""",
        ),
        (["tags=[a,ü]"], """quote the value: 'tags=[a,"ü"]'"""),
        (["model.hidden_size=[1"], "cannot parse 'model.hidden_size=[1': no viable alternative"),
        (["x=a=b"], "cannot parse 'x=a=b': mismatched input '='"),
        (["a b=1"], "cannot parse 'a b=1': unexpected character ' ' at position 2"),
        (["hydra/launcher=foo"], "available: basic, joblib, local_parallel, slurm, submitit_local"),
        (["hydra.launcher.n_job=2"], "hydra.launcher.n_job: not a key of hydra.launcher"),
        (["hydra.run.dir=/proc/x/${now:%H}"], "output directory /proc/x/"),
        (
            ["hydra.run.dir=/proc/${model.architecture}"],
            "output directory /proc/lstm cannot be written",
        ),
        (["hydra.run.dir=out/${no_such_key}"], "hydra.run.dir: Interpolation key 'no_such_key'"),
        (["--multirun", "hydra.sweep.dir=/proc/${now:%Y}"], "output directory /proc/"),
        (
            ["output_dir=/proc/${model.architecture}"],
            "output directory /proc/lstm cannot be written",
        ),
    ],
)
def test_command_line_problems_are_one_line(argv, message):
    assert message in refused(argv)


def test_interpolated_run_dirs_that_can_be_written_pass(tmp_path):
    preflight(
        [
            "experiment=smoke",
            f"hydra.run.dir={tmp_path}/${{now:%Y-%m-%d}}/${{hydra:runtime.choices.model}}",
            "hydra.job.chdir=false",
        ],
        CONF_DIR,
    )
    preflight(
        ["--multirun", "hydra/launcher=local_parallel", f"hydra.sweep.dir={tmp_path}"], CONF_DIR
    )
    assert not list(tmp_path.iterdir()), "the check must leave nothing behind"


def test_cli_refuses_an_add_override_of_an_unknown_key_in_one_line(run_cli, tmp_path):
    done = run_cli("experiment=smoke", "++model.hiden_size=5")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "seqbench-train: error: model.hiden_size: not a key of model (did you mean hidden_size?)"
    ]
    assert not (tmp_path / "outputs").exists()


def test_cli_refuses_an_unknown_launcher_in_one_line(run_cli, tmp_path):
    done = run_cli("experiment=smoke", "hydra/launcher=foo")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seqbench-train: error: "), done.stderr
    assert "hydra/launcher/foo" in lines[0] and "submitit_slurm" in lines[0]
    assert not (tmp_path / "outputs").exists()
