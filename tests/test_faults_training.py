"""Training faults: programs too large for the device's memory, losses that blow up but stay finite."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from seqbench.config import ModelConfig, TrainerConfig
from seqbench.models.build import build_model
from seqbench.records import load_record
from seqbench.tasks.synthetic import AddingConfig, AddingProblem
from seqbench.train import memory
from seqbench.train.driver import run_training
from seqbench.train.program import BLOWUP_FLOOR, NOT_DIVERGED, make_train

ERROR = "seqbench-train: error:"


def test_a_program_larger_than_the_machine_is_refused_before_compiling(monkeypatch):
    monkeypatch.setattr(memory, "machine_memory", lambda: 1000)
    monkeypatch.setattr(memory, "check_compiled", pytest.fail)  # never gets that far
    task = AddingProblem(AddingConfig(length=6, n_eval=16))
    built = build_model(ModelConfig(architecture="lstm", hidden_size=8), task.spec)
    program = make_train(built.model, task, optax.adam(1e-2), 8)
    with pytest.raises(memory.OutOfMemory) as refused:
        trainer = TrainerConfig(steps=2, eval_every=1, batch_size=8, progress=False)
        run_training(program, task, [0, 1], trainer)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("the initialisation program needs at least ")
    assert "more than the 1 kB this cpu has; reduce model.hidden_size" in message


def test_xla_memory_analysis_counts_temporaries():
    """A program whose inputs and outputs fit but whose (N, N) temporary does not is refused after
    compiling, with XLA's estimate broken down."""
    n = 512
    lowered = jax.jit(lambda x: jnp.sort(jnp.outer(x, x), axis=0)[0]).lower(jnp.ones(n))
    in_out = memory.tree_bytes(lowered.in_avals) + memory.tree_bytes(lowered.out_info)
    assert in_out == 2 * 4 * n
    room = memory.MemoryLimit(in_out * 10, "test limit allows")
    memory.check_lowered(lowered, "test", room)
    with pytest.raises(memory.OutOfMemory, match=r"needs about .*temporaries .*test limit allows"):
        memory.check_compiled(lowered.compile(), "test", room)


def test_cpu_temporaries_count_more_than_xla_says():
    """On a CPU the runtime peaks above XLA's figure for a forward pass's temporaries: one that
    fits by that figure but not by CPU_TEMPORARY_FACTOR times it is refused, and says why; a
    gradient program (measured within 2% of the figure) is not."""
    n = 512
    compiled = jax.jit(lambda x: jnp.sort(jnp.outer(x, x), axis=0)[0]).lower(jnp.ones(n)).compile()
    stats = compiled.memory_analysis()
    in_out = stats.argument_size_in_bytes + stats.output_size_in_bytes - stats.alias_size_in_bytes
    temporary = stats.temp_size_in_bytes + stats.generated_code_size_in_bytes
    between = int(in_out + 1.5 * temporary)  # fits XLA's figure, not 2.5 times it
    on_cpu = memory.available_memory(between / 1e9)
    assert on_cpu.temporary_factor == memory.CPU_TEMPORARY_FACTOR == 2.5
    memory.check_compiled(compiled, "test", memory.MemoryLimit(between, "elsewhere"), forward=True)
    memory.check_compiled(compiled, "test", on_cpu)
    with pytest.raises(memory.OutOfMemory, match=r"temporaries .* x 2\.5, as this device"):
        memory.check_compiled(compiled, "test", on_cpu, forward=True)


def test_run_time_out_of_memory_becomes_one_line(compose_config, tmp_path, monkeypatch):
    from seqbench.cli import train as app
    from seqbench.store import validate
    from seqbench.train import driver as runner

    def exhaust(*args, **kwargs):
        raise jax.errors.JaxRuntimeError(
            "INTERNAL: Error dispatching computation: Out of memory allocating 115200000000 bytes."
        )

    monkeypatch.setattr(runner, "run_training", exhaust)
    cfg = validate(compose_config(["experiment=smoke"]))
    with pytest.raises(SystemExit) as exited:
        app.train_from_config(cfg, {}, tmp_path)
    assert exited.value.code == 2
    record = load_record(tmp_path)
    assert record.status == "failed"
    assert record.error == (
        "ran out of memory while training (INTERNAL: Error dispatching computation: Out of memory "
        "allocating 115200000000 bytes.); reduce model.hidden_size, trainer.batch_size or "
        "task.length"
    )
    other = jax.errors.JaxRuntimeError("INTERNAL: something else")
    assert memory.out_of_memory_message(other) is None


def test_a_billion_hidden_units_are_refused_in_one_line(run_cli, tmp_path):
    """It used to abort inside XLA's compiler (exit 134) and leave the record `running`."""
    out = tmp_path / "run"
    done = run_cli("experiment=smoke", "model.hidden_size=1000000000", f"hydra.run.dir={out}")
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith(ERROR)]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "the initialisation program needs at least 96 EB of memory" in errors[0]
    record = load_record(out)
    assert record.status == "failed"
    assert errors[0] == f"{ERROR} {record.error}"


LR, BOOSTED, STEPS = 1e-2, 1e9, 4


@pytest.fixture(scope="module")
def blowup_runs():
    """Seeds 0 and 1 in one vmap, seed 1 with learning rate 1e9: per step, the states and losses
    with the blow-up rule (factor 1e4) and without it."""
    task = AddingProblem(AddingConfig(length=6, n_eval=16))
    built = build_model(ModelConfig(architecture="lstm", hidden_size=8), task.spec)
    optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=LR)
    data = jax.device_put(task.train_data())
    rule = make_train(built.model, task, optimizer, 16, blowup_factor=1e4)
    state = jax.jit(rule.batched_init)(jnp.asarray([0, 1], jnp.int32))
    rates = state.opt_state.hyperparams["learning_rate"]
    state.opt_state.hyperparams["learning_rate"] = rates.at[1].set(BOOSTED)
    runs = {}
    for name, factor in (("rule", 1e4), ("off", None)):
        program = make_train(built.model, task, optimizer, 16, blowup_factor=factor)
        chunk = jax.jit(program.batched_chunk, static_argnums=2)
        states, losses = [state], []
        for _ in range(STEPS):
            new, loss = chunk(states[-1], data, 1)
            states.append(new)
            losses.append(np.asarray(loss)[:, 0])
        runs[name] = states, np.stack(losses, axis=1)  # STEPS + 1 states, (S, STEPS) losses
    return runs


def seed_params(state, seed):
    return [np.asarray(leaf[seed]) for leaf in jax.tree_util.tree_leaves(state.params)]


def test_a_loss_that_blows_up_marks_its_seed_diverged_at_that_step(blowup_runs):
    off_states, off_losses = blowup_runs["off"]
    states, losses = blowup_runs["rule"]
    assert np.isfinite(off_losses).all()  # finite throughout: only the rule can catch it
    threshold = 1e4 * max(off_losses[1, 0], BLOWUP_FLOOR)
    at = int(np.argmax(off_losses[1] > threshold))
    assert at >= 1 and off_losses[1, at] > threshold
    assert list(np.asarray(states[-1].diverged_step)) == [NOT_DIVERGED, at]
    np.testing.assert_array_equal(losses[1, :at], off_losses[1, :at])
    assert np.isnan(losses[1, at:]).all()
    for frozen, before in zip(
        seed_params(states[-1], 1), seed_params(off_states[at], 1), strict=True
    ):
        np.testing.assert_array_equal(frozen, before)
    assert float(states[-1].initial_loss[1]) == off_losses[1, 0]


def test_the_healthy_seed_is_untouched_and_a_null_factor_turns_the_rule_off(blowup_runs):
    off_states, off_losses = blowup_runs["off"]
    states, losses = blowup_runs["rule"]
    np.testing.assert_array_equal(losses[0], off_losses[0])
    for a, b in zip(seed_params(states[-1], 0), seed_params(off_states[-1], 0), strict=True):
        np.testing.assert_array_equal(a, b)
    assert list(np.asarray(off_states[-1].diverged_step)) == [NOT_DIVERGED, NOT_DIVERGED]
