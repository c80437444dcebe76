"""Every config option composes and validates; bad values fail with one clear line."""

import dataclasses
import sys
from pathlib import Path

import pytest
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from seqbench.cli.train import CONF_DIR
from seqbench.config import Config, ConfigError
from seqbench.models.build import build_model
from seqbench.store import validate
from seqbench.tasks.registry import TASK_CLASSES, TASKS, build_task
from seqbench.tasks.synthetic import AddingConfig, CopyMemoryConfig


def options(group):
    return sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))


@pytest.mark.parametrize("group", ["model", "task", "optimizer", "trainer", "logger", "experiment"])
def test_every_option_of_every_group_composes_and_validates(compose_config, group):
    assert options(group), f"conf/{group} is empty"
    for option in options(group):
        cfg = validate(compose_config([f"{group}={option}"]))
        assert isinstance(cfg, Config)


#: YAML values that deliberately differ from their schema's default: (option, field)
INTENDED_DIFFERENCES = {("pmnist", "permute")}


@pytest.mark.parametrize("option", options("task"))
def test_every_task_option_lists_its_schemas_fields_at_their_defaults(compose_config, option):
    """Each conf/task YAML names a registered schema, lists every field of it (a comment each),
    and gives each the dataclass default unless the difference is intended (paths interpolate)."""
    raw = OmegaConf.load(Path(CONF_DIR) / "task" / f"{option}.yaml")
    (schema_name,) = [d.removesuffix("_schema") for d in raw.defaults if d != "_self_"]
    schema = TASKS[schema_name]
    task = validate(compose_config([f"task={option}"])).task
    assert type(task) is schema and schema in TASK_CLASSES
    fields = {f.name: f for f in dataclasses.fields(schema)}
    listed = {key for key in raw if key != "defaults"}
    assert listed == set(fields), f"{option}.yaml lists {sorted(listed)}, not {sorted(fields)}"
    text = (Path(CONF_DIR) / "task" / f"{option}.yaml").read_text()
    for name, spec in fields.items():
        line = next(line for line in text.splitlines() if line.startswith(f"{name}:"))
        assert "#" in line, f"{option}.yaml: {name} has no comment"
        value = OmegaConf.to_container(raw, resolve=False)[name]
        if isinstance(value, str) and value.startswith("${paths."):
            continue
        default = spec.default
        if default is dataclasses.MISSING:  # a list or dict field: default_factory
            default = spec.default_factory()
        if (option, name) in INTENDED_DIFFERENCES:
            assert value != default
        else:
            assert value == default, f"{option}.yaml: {name}={value!r}, default {default!r}"


def test_synthetic_tasks_draw_held_out_sets_from_one_eval_seed():
    assert AddingConfig().eval_seed == CopyMemoryConfig().eval_seed == 12345


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
@pytest.mark.parametrize("task", ["adding", "copy_memory"])
def test_every_model_builds_for_every_task(compose_config, cell, task):
    cfg = validate(compose_config([f"model={cell}", f"task={task}", "task.length=5"]))
    built = build_model(cfg.model, build_task(cfg.task).spec)
    assert built.param_count > 0 and built.hidden_size == cfg.model.hidden_size


def test_task_config_becomes_its_schema(compose_config):
    assert isinstance(validate(compose_config(["task=adding"])).task, AddingConfig)
    copy = validate(compose_config(["task=copy_memory", "task.length=7"])).task
    assert isinstance(copy, CopyMemoryConfig) and copy.length == 7


def test_param_budget_sets_the_hidden_size(compose_config):
    cfg = validate(compose_config(["model=gru", "model.param_budget=5000"]))
    built = build_model(cfg.model, build_task(cfg.task).spec)
    assert abs(built.param_count - 5000) <= 0.02 * 5000


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["task.length=0"], "task.length"),
        (["task.length=-5"], "task.length"),
        (["model.hidden_size=0"], "model.hidden_size"),
        (["model.n_layers=0"], "model.n_layers"),
        (["model.dropout=1.5"], "model.dropout"),
        (["model.architecture=transformer"], "model.architecture"),
        (["model=lstm", "model.architecture=gru"], "model.architecture"),
        (["model=simple_rnn", "model.cell.recurrent_init=glorot"], "model.cell.recurrent_init"),
        (["model=simple_rnn", "model.cell.activation=gelu"], "model.cell.activation"),
        (["trainer.steps=0"], "trainer.steps"),
        (["trainer.batch_size=-1"], "trainer.batch_size"),
        (["trainer.eval_every=0"], "trainer.eval_every"),
        (["trainer.eval_batch_size=0"], "trainer.eval_batch_size"),
        (["optimizer.lr=-1"], "optimizer.lr"),
        (["optimizer.name=lbfgs"], "optimizer.name"),
        (["optimizer.schedule=step"], "optimizer.schedule"),
        (["task.variant=halves"], "task.variant"),
        (["task=copy_memory", "task.n_memorize=0"], "task.n_memorize"),
        (["seeds=[]"], "seeds"),
        (["seeds=[1,1]"], "seeds"),
    ],
)
def test_bad_values_raise_a_config_error_naming_the_key(compose_config, overrides, message):
    with pytest.raises(ConfigError, match=message) as error:
        validate(compose_config(overrides))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "overrides",
    [
        ["task.no_such_key=1"],
        ["task.length=abc"],
        ["model=transformer"],
        ["trainer.steps=1.5"],
        ["model=lstm", "model.cell.recurrent_init=identity"],  # not an option of the LSTM
        ["model=gru", "model.cell.forget_bias=2.0"],
    ],
)
def test_unknown_keys_and_wrong_types_fail_while_composing(compose_config, overrides):
    with pytest.raises((HydraException, OmegaConfBaseException)):
        validate(compose_config(overrides))


def test_encoder_must_fit_the_input_kind(compose_config):
    cfg = validate(compose_config(["task=copy_memory", "model.encoder=linear"]))
    with pytest.raises(ValueError, match=r"model\.encoder"):
        build_model(cfg.model, build_task(cfg.task).spec)


def test_help_lists_each_groups_options_not_the_schemas_and_the_composed_config(
    monkeypatch, capsys
):
    from seqbench.cli import train

    monkeypatch.setattr(sys, "argv", ["seqbench-train", "task=parity", "--help"])
    train.main()
    text = capsys.readouterr().out
    assert "  task: adding, copy_memory, " in text and "_schema" not in text
    assert "  model: gru, lru, lstm, mingru, minlstm, rglru, simple_rnn, tcn" in text
    assert "for_model" not in text and "min_length: 3" in text
    monkeypatch.setattr(sys, "argv", ["seqbench-train", "task=nosuch", "-h"])
    with pytest.raises(SystemExit) as ended:
        train.main()
    assert ended.value.code == 2 and "task/nosuch" in capsys.readouterr().err


@pytest.mark.parametrize("task", options("task"))
def test_the_smoke_preset_composes_with_every_task(compose_config, task):
    cfg = validate(compose_config(["experiment=smoke", f"task={task}"]))
    assert cfg.trainer.steps == 4 and cfg.model.hidden_size == 8
    if hasattr(cfg.task, "length"):  # the synthetic tasks, each at a short length
        assert cfg.task.length <= 20 and cfg.task.n_eval == 16


def test_every_preset_overlay_names_a_preset_and_an_option():
    """conf/experiment/for_model/<preset>_<model>.yaml and for_task/<preset>_<task>.yaml apply
    only when their name is an experiment and an option of their group: a typo would be ignored."""
    for folder, group in (("for_model", "model"), ("for_task", "task")):
        for name in options(f"experiment/{folder}"):
            assert any(
                name == f"{preset}_{option}"
                for preset in options("experiment")
                for option in options(group)
            ), f"conf/experiment/{folder}/{name}.yaml matches no experiment and {group}"
