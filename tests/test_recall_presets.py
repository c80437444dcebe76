"""The recall presets (issue 16's results) compose, validate and give every architecture the same
parameter budget (within 2%) on its task; the state-size preset sweeps widths, not budgets."""

import pytest
from omegaconf import OmegaConf

from seqbench.cli.train import CONF_DIR
from seqbench.models.architectures import ARCHITECTURES
from seqbench.models.build import build_model
from seqbench.store import validate
from seqbench.tasks.registry import build_task

BUDGETED = ("recall_selective_copy", "recall_mqar", "recall_induction_heads", "recall_parity")


def swept_models(preset):
    raw = OmegaConf.load(f"{CONF_DIR}/experiment/{preset}.yaml")
    return raw.hydra.sweeper.params.model.split(",")


@pytest.mark.parametrize("preset", BUDGETED)
def test_every_architecture_is_swept_at_one_budget(compose_config, preset):
    assert sorted(swept_models(preset)) == sorted(ARCHITECTURES)
    for model in swept_models(preset):
        cfg = validate(compose_config([f"experiment={preset}", f"model={model}"]))
        assert "recall" in cfg.tags and cfg.seeds == [0, 1, 2]
        assert cfg.model.param_budget == 20_000


@pytest.mark.slow
@pytest.mark.parametrize("preset", BUDGETED)
def test_every_architecture_meets_the_budget_within_2_percent(compose_config, preset):
    for model in swept_models(preset):
        cfg = validate(compose_config([f"experiment={preset}", f"model={model}"]))
        built = build_model(cfg.model, build_task(cfg.task).spec)
        assert built.param_count == pytest.approx(20_000, rel=0.02), model


def test_the_state_size_preset_sweeps_widths_of_the_recurrent_architectures(compose_config):
    models = swept_models("recall_mqar_state_size")
    assert sorted(models) == sorted(set(ARCHITECTURES) - {"tcn"})
    cfg = validate(compose_config(["experiment=recall_mqar_state_size", "model=lru"]))
    assert cfg.model.param_budget is None and cfg.task.num_kv_pairs == 4
