"""The architecture registry: a new architecture is one file's worth of code, one `register` call
and one YAML, and then trains from the CLI (budget matching included), gets a table column and runs
in the speed bench. The toy below is that file: a leaky tanh recurrence without recurrent weights,

    h' = decay * h + (1 - decay) * tanh(x W + b)      W (F, H), b (H,); carry h (B, H).

Also: the registry's errors, the pre-registry record mapping and the options checks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import flax.linen as nn
import jax.numpy as jnp
import pytest

from seqbench.config import ConfigError, require
from seqbench.models.architectures import (
    ARCHITECTURES,
    CellOptions,
    Spec,
    cell_options_of,
    check_options,
    get,
    register,
    unregister,
)
from seqbench.models.scan import masked_scan

# --- the toy architecture: options, layer, Spec -------------------------------------------------


@dataclass
class ToyOptions(CellOptions):
    """`model.cell` of the toy."""

    decay: float = 0.5  # share of h kept at each step, in [0, 1)

    def __post_init__(self) -> None:
        require(0.0 <= self.decay < 1.0, "model.cell.decay", f"must be in [0, 1), got {self.decay}")


class ToyLayer(nn.Module):
    """inputs (B, T, F) -> (outputs (B, T, H), h (B, H)); a SequenceLayer. Parameters: w_ih (F, H)
    and b_ih (H,)."""

    hidden_size: int
    decay: float = 0.5
    remat: bool = False  # nothing worth recomputing: the drive is computed before the scan

    @nn.compact
    def __call__(
        self,
        inputs,
        seq_lengths=None,
        reverse=False,
        initial_carry=None,
        hidden_offsets=None,
        deterministic=True,
    ):
        f, hidden = inputs.shape[-1], self.hidden_size
        w = self.param("w_ih", nn.initializers.lecun_normal(), (f, hidden), jnp.float32)
        b = self.param("b_ih", nn.initializers.zeros_init(), (hidden,), jnp.float32)
        drive = jnp.tanh(inputs @ w + b)  # (B, T, H)
        if hidden_offsets is not None:
            drive = jnp.concatenate([drive, hidden_offsets], axis=-1)
        h = jnp.zeros((inputs.shape[0], hidden)) if initial_carry is None else initial_carry

        def step(h, x_t):
            h = self.decay * h + (1.0 - self.decay) * x_t[:, :hidden]
            if hidden_offsets is not None:
                h = h + x_t[:, hidden:]
            return h, h

        final, outputs = masked_scan(step, h, drive, seq_lengths, reverse)
        return outputs, final


def toy_layer(options, hidden_size, *, remat=False, name=None):
    return ToyLayer(hidden_size, options.decay, remat, name=name)


TOY = Spec(
    name="toy_leaky",
    options=ToyOptions,
    layer=toy_layer,
    initial_carry=lambda options, batch, features, hidden: jnp.zeros((batch, hidden), jnp.float32),
    state_size=lambda options, features, hidden: hidden,
    step_flops=lambda options, batch, length, features, hidden: (
        2.0 * batch * length * features * hidden
    ),
    label=lambda options: "toy" if options.get("decay", 0.5) == 0.5 else "toy (slow)",
)

TOY_YAML = """\
defaults:
  - model_schema
  - cell: toy_leaky_schema  # group model/cell, package model.cell
  - _self_

architecture: toy_leaky
hidden_size: 8
cell:
  decay: 0.5  # share of h kept at each step
"""


def register_toy() -> None:
    """Register the toy and its options schema with Hydra (what a subprocess calls first)."""
    from seqbench.store import register_configs

    register(TOY)
    register_configs()


@pytest.fixture
def toy():
    register_toy()
    yield TOY
    unregister(TOY.name)  # the registry is process-wide


@pytest.fixture
def toy_conf(tmp_path):
    """A config folder with conf/model/toy_leaky.yaml, for hydra.searchpath."""
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "toy_leaky.yaml").write_text(TOY_YAML)
    return tmp_path / "conf"


# --- end to end ---------------------------------------------------------------------------------


def test_a_registered_toy_trains_from_the_cli_and_gets_a_table_column(
    toy, toy_conf, tmp_path, capsys, run_cli
):
    run_dir = tmp_path / "run"
    args = [
        "model=toy_leaky",
        "experiment=smoke",
        "model.param_budget=200",  # 4 H + 1 parameters on the adding task: H = 50
        "seeds=[0]",
        f"hydra.searchpath=[file://{toy_conf}]",
        f"hydra.run.dir={run_dir}",
    ]
    done = run_cli(*args, prelude="import test_architecture_registry as t; t.register_toy()")
    assert done.returncode == 0, done.stderr
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed"
    assert record["model"]["architecture"] == "toy_leaky"
    assert record["model"]["hidden_size"] == 50 and record["model"]["param_count"] == 201
    assert record["config"]["model"]["cell"] == {"decay": 0.5}

    from seqbench.cli.report import main as report

    report(["table", str(run_dir)])
    table = capsys.readouterr().out
    header = next(line for line in table.splitlines() if line.startswith("| task"))
    assert "| toy |" in header


def test_the_speed_bench_runs_the_toy_and_skips_the_peers_it_lacks(
    toy, tmp_path, monkeypatch, capsys
):
    from seqbench.speed import run
    from seqbench.speed.configs import TINY, step_flops
    from seqbench.speed.worker import measure

    def in_process(impl, cell, config, *, seeds=1, cache=None, compile_only=False, **options):
        # the worker's own measurement, in this process (a fresh one would not know the toy)
        min_seconds = options.get("min_seconds", 0.0)
        return measure(impl, cell, config, seeds, None, compile_only, min_seconds, 3)

    monkeypatch.setattr(run, "run_worker", in_process)
    out = tmp_path / "speed"
    run.main(
        ["--configs", "tiny", "--cells", "toy_leaky", "--impls", "seqbench,flax", "--seeds", "1",
         "--seeds-config", "", "--min-seconds", "0.01", "--long-cells", "", "--out", str(out)]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert "flax: architecture 'toy_leaky' has no plain-Flax peer" in captured.err
    (row,) = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert row["config"] == "tiny" and row["cell"] == "toy_leaky"
    assert row["step_ms"]["seqbench"] > 0 and set(row["step_ms"]) == {"seqbench"}
    forward = 2.0 * 4 * 8 * 2 * 8 + 2.0 * 4 * 1 * 8 * 10  # toy layer + Dense(10) readout
    assert step_flops("toy_leaky", TINY) == 3 * forward
    assert "| tiny | toy_leaky |" in out.with_suffix(".md").read_text()


# --- the registry's contract --------------------------------------------------------------------


def test_registration_order_is_the_column_order_and_the_toy_goes_last(toy):
    from seqbench.report.table import sort_models

    assert list(ARCHITECTURES)[:3] == ["simple_rnn", "lstm", "gru"]
    assert list(ARCHITECTURES)[-1] == "toy_leaky"
    assert sort_models(["toy", "gru", "bi-lstm", "simple_rnn (relu)", "toy_leaky"]) == [
        "simple_rnn (relu)",
        "bi-lstm",
        "gru",
        "toy_leaky",
        "toy",
    ]


def test_unknown_names_and_duplicates_are_refused():
    with pytest.raises(ValueError, match=r"unknown architecture 'nope'; known: simple_rnn, lstm"):
        get("nope")
    with pytest.raises(ValueError, match="'lstm' is already registered"):
        register(get("lstm"))
    with pytest.raises(TypeError, match="takes a Spec"):
        register("lstm")
    with pytest.raises(ValueError, match="letters, digits and _"):
        Spec("my-cell", ToyOptions, toy_layer, TOY.initial_carry, len, TOY.step_flops)
    assert "toy_leaky" not in ARCHITECTURES  # the fixture cleaned up after the other tests


def test_a_config_must_pair_the_architecture_with_its_options():
    assert check_options("gru", get("gru").options()) is get("gru")
    with pytest.raises(
        ConfigError, match=r"^model\.architecture: got 'transformer', expected one of"
    ):
        check_options("transformer", None)
    with pytest.raises(
        ConfigError,
        match=r"^model\.architecture: 'gru', but model\.cell holds the options of 'lstm'",
    ):
        check_options("gru", get("lstm").options())
    with pytest.raises(ConfigError, match=r"^model\.cell: .* '- cell: gru_schema'"):
        check_options("gru", {"forget_bias": 1.0})


@pytest.mark.parametrize(
    ("preset", "forget_bias"),
    [
        ("benchmark_copy_memory", 3.0),
        ("paper_adding_600", 1.0),
        ("paper_jsb", 10.0),
        ("paper_pmnist", 10.0),
        ("paper_smnist", 1.0),
    ],
)
def test_a_presets_options_for_one_architecture_apply_to_it_only(
    compose_config, preset, forget_bias
):
    """conf/experiment/for_model/<preset>_lstm.yaml: the published values; the others compose."""
    from seqbench.store import validate

    lstm = validate(compose_config([f"experiment={preset}", "model=lstm"]))
    assert lstm.model.cell == get("lstm").options(forget_bias=forget_bias)
    gru = validate(compose_config([f"experiment={preset}", "model=gru"]))
    assert gru.model.architecture == "gru" and gru.model.cell == get("gru").options()


def test_options_check_their_values_and_hash_by_value():
    with pytest.raises(ConfigError, match=r"^model\.cell\.activation: got 'gelu'"):
        get("simple_rnn").options(activation="gelu")
    with pytest.raises(ConfigError, match=r"^model\.cell\.decay: must be in \[0, 1\)"):
        ToyOptions(decay=1.0)
    lstm = get("lstm").options
    assert lstm(forget_bias=2.0) == lstm(forget_bias=2.0)
    assert hash(lstm(forget_bias=2.0)) == hash(lstm(forget_bias=2.0))
    assert len({lstm(), lstm(forget_bias=3.0), get("gru").options()}) == 3


def test_old_and_new_record_configs_map_to_an_architecture_and_its_options():
    old_irnn = {"cell": "simple_rnn", "activation": "relu", "recurrent_init": "identity",
                "forget_bias": 1.0, "n_layers": 1}  # fmt: skip
    old_lstm = {"cell": "lstm", "activation": "tanh", "recurrent_init": "orthogonal",
                "forget_bias": 3.0}  # fmt: skip
    assert cell_options_of(old_irnn) == (
        "simple_rnn",
        {"activation": "relu", "recurrent_init": "identity"},
    )
    assert cell_options_of(old_lstm) == ("lstm", {"forget_bias": 3.0})
    assert cell_options_of({"architecture": "gru", "cell": {}}) == ("gru", {})
    assert cell_options_of({"architecture": "lstm", "cell": {"forget_bias": 2.0}}) == (
        "lstm",
        {"forget_bias": 2.0},
    )
    assert cell_options_of({"n_layers": 2}) == (None, {})
    labels = {get("simple_rnn").label(cell_options_of(m)[1]) for m in (old_irnn,)}
    assert labels == {"irnn"}
    assert get("simple_rnn").label({"activation": "relu"}) == "simple_rnn (relu)"
    assert get("simple_rnn").label({"recurrent_init": "identity"}) == "simple_rnn (identity)"
    assert get("lstm").label({"forget_bias": 3.0}) == "lstm"


def test_the_state_dict_conversion_refuses_an_architecture_without_a_torch_module(toy):
    from seqbench.models.torch_compat import to_torch_state_dict

    with pytest.raises(ValueError, match="'toy_leaky' has no PyTorch counterpart"):
        to_torch_state_dict({}, architecture="toy_leaky")


def test_every_registered_spec_describes_its_layer():
    """initial_carry, state_size and the parameter layout agree with the layer itself."""
    import jax

    x = jnp.zeros((2, 3, 5))
    for spec in ARCHITECTURES.values():
        options = spec.options()
        layer = spec.layer(options, 4)
        carry = spec.initial_carry(options, 2, 5, 4)
        variables = jax.eval_shape(layer.init, jax.random.key(0), x)
        outputs, final = jax.eval_shape(layer.apply, variables, x, initial_carry=carry)
        assert outputs.shape == (2, 3, 4)
        assert jax.tree.structure(final) == jax.tree.structure(carry)
        assert sum(leaf.size for leaf in jax.tree.leaves(carry)) == 2 * spec.state_size(
            options, 5, 4
        )
        assert spec.step_flops(options, 2, 3, 5, 4) > 0
