"""The Bai et al. 2018 presets compose, validate and give each cell the paper's parameter budget."""

import pytest

from seqbench.models.build import build_model
from seqbench.store import validate
from seqbench.tasks.base import TaskSpec
from seqbench.tasks.synthetic import AddingConfig, AddingProblem, CopyMemory, CopyMemoryConfig

SPECS = {  # the task's shape, without loading data files
    "paper_adding_600": AddingProblem(AddingConfig(length=600)).spec,
    "paper_copy_1000": CopyMemory(CopyMemoryConfig(length=1000)).spec,
    "paper_smnist": TaskSpec("real", 1, 10, 784, "last"),
    "paper_pmnist": TaskSpec("real", 1, 10, 784, "last"),
    "paper_jsb": TaskSpec("real", 88, 88, 160, "every_step"),
    "paper_char_ptb": TaskSpec("tokens", 51, 51, 100, "every_step"),
}


#: the TCN in the presets whose rows are reproduced (adding, copy memory); the others with -m slow
TCN_FAST = ("paper_adding_600", "paper_copy_1000")


@pytest.mark.parametrize(
    ("preset", "cell"),
    [
        pytest.param(
            preset,
            cell,
            marks=[pytest.mark.slow] if cell == "tcn" and preset not in TCN_FAST else [],
        )
        for preset in sorted(SPECS)
        for cell in ("simple_rnn", "lstm", "gru", "tcn")
    ],
)
def test_preset_composes_and_meets_its_parameter_budget(compose_config, preset, cell):
    cfg = validate(compose_config([f"experiment={preset}", f"model={cell}"]))
    assert "paper" in cfg.tags and cfg.seeds == [0, 1, 2]
    built = build_model(cfg.model, SPECS[preset], remat=cfg.trainer.remat)
    assert built.param_count == pytest.approx(cfg.model.param_budget, rel=0.02)


def test_adding_lstm_matches_the_papers_130_units(compose_config):
    cfg = validate(compose_config(["experiment=paper_adding_600", "model=lstm"]))
    assert build_model(cfg.model, SPECS["paper_adding_600"]).hidden_size == 130


def test_tcn_presets_take_the_tcn_scripts_settings_and_leave_the_other_models_alone(
    compose_config,
):
    """conf/experiment/for_model/paper_adding_600_tcn.yaml: locuslab/TCN add_test.py's kernel,
    depth and optimiser, with the TCN only."""
    tcn = validate(compose_config(["experiment=paper_adding_600", "model=tcn"]))
    assert (tcn.model.cell.kernel_size, tcn.model.cell.levels, tcn.model.cell.dropout) == (7, 8, 0)
    assert (tcn.optimizer.name, tcn.optimizer.lr, tcn.optimizer.grad_clip) == ("adam", 4e-3, None)
    lstm = validate(compose_config(["experiment=paper_adding_600", "model=lstm"]))
    assert (lstm.optimizer.lr, lstm.optimizer.grad_clip) == (2e-3, 5.0)
    ptb = validate(compose_config(["experiment=paper_char_ptb", "model=tcn"]))
    assert (ptb.optimizer.name, ptb.optimizer.momentum, ptb.optimizer.lr) == ("sgd", 0.0, 4.0)
