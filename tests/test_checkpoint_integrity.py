"""Every restored checkpoint is verified: a damaged one is set aside, the previous one restored."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqbench.train.checkpoint import Checkpointer, CheckpointError, check_history
from seqbench.train.program import TrainState

# orbax leaves its other reads of a damaged checkpoint unawaited when one fails
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

SEEDS = 2
EVERY = 10


def state_at(step):
    """A batched TrainState after `step` steps; its (2, 4096) random parameter is stored raw (noise
    does not compress), so one flipped byte of the data file reads back as a different number."""
    keys = jax.vmap(jax.random.key)(jnp.arange(SEEDS))
    given = dict(
        params={"w": jax.random.normal(jax.random.key(step), (SEEDS, 4096)), "b": jnp.ones((2, 3))},
        opt_state=(jnp.full((SEEDS, 5), step, jnp.float32),),
        data_key=keys,
        dropout_key=jax.random.split(keys[0], SEEDS),
        step=jnp.full((SEEDS,), step, jnp.int32),
        diverged_step=jnp.full((SEEDS,), -1, jnp.int32),
    )
    others = set(TrainState._fields) - set(TrainState._field_defaults) - set(given)
    return TrainState(**given, **{name: jnp.full((SEEDS,), 0.5) for name in others})


def history_at(step):
    chunk_ends = list(range(EVERY, step + 1, EVERY))
    return {
        "done": step,
        "eval_steps": [0, *chunk_ends],
        "eval_history": [{"val/mse": [1 / (s + 1), np.nan]} for s in [0, *chunk_ends]],
        "train_steps": chunk_ends,
        "train_loss": [[1.0 / s, 2.0] for s in chunk_ends],
        "train_s": 0.5,
        "gradient_flow": {"0": [[[0.5, 0.25]]] * SEEDS},
    }


CHUNK_ENDS = list(range(EVERY, 101, EVERY))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved") / "checkpoints"
    checkpointer = Checkpointer(folder, keep=3)
    for step in (10, 20, 30):
        checkpointer.save(step, state_at(step), history_at(step))
    checkpointer.close()
    return folder


@pytest.fixture
def run_dir(saved, tmp_path):
    shutil.copytree(saved, tmp_path / "checkpoints")
    return tmp_path


def restore(folder):
    """(the restored (state, history), the steps left in orbax's folder)."""
    checkpointer = Checkpointer(folder / "checkpoints", keep=3)
    try:
        return checkpointer.restore(state_at(0), CHUNK_ENDS), checkpointer.manager.all_steps()
    finally:
        checkpointer.close()


def largest_data_file(folder, step):
    data = folder / "checkpoints" / str(step) / "state" / "ocdbt.process_0" / "d"
    return max(data.iterdir(), key=lambda path: path.stat().st_size)


def flip_byte(path, at):
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def assert_state_equal(state, expected):
    same = jax.tree.map(
        lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)),
        state._replace(data_key=None, dropout_key=None),
        expected._replace(data_key=None, dropout_key=None),
    )
    assert all(jax.tree.leaves(same))
    for name in ("data_key", "dropout_key"):
        np.testing.assert_array_equal(
            jax.random.key_data(getattr(state, name)), jax.random.key_data(getattr(expected, name))
        )


def one_warning(capsys):
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("seqbench: warning: checkpoint ")
    return line


def test_an_intact_checkpoint_is_restored_without_a_word(run_dir, capsys):
    (state, history), _ = restore(run_dir)
    assert_state_equal(state, state_at(30))
    assert history == json.loads(json.dumps(history_at(30)))
    assert capsys.readouterr().err == ""


def test_a_flipped_data_byte_that_reads_back_silently_falls_back_to_the_previous_step(
    run_dir, capsys
):
    import orbax.checkpoint as ocp

    data = largest_data_file(run_dir, 30)
    flip_byte(data, data.stat().st_size // 2)
    plain = ocp.CheckpointManager(run_dir / "checkpoints")  # what orbax alone reads: no error
    read = plain.restore(30, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    plain.close()
    assert not np.array_equal(read["state"]["params"]["w"], state_at(30).params["w"])

    (state, history), steps = restore(run_dir)
    assert_state_equal(state, state_at(20))
    assert history["done"] == 20
    kept = run_dir / "checkpoints.corrupt" / "30"
    assert one_warning(capsys) == (
        f"seqbench: warning: checkpoint {run_dir / 'checkpoints' / '30'} is corrupt (its arrays "
        f"or history differ from what was saved); kept at {kept}; resuming from step 20"
    )
    assert list(steps) == [10, 20]
    assert (kept / "state").is_dir() and not (run_dir / "checkpoints" / "30").exists()

    again = Checkpointer(run_dir / "checkpoints", keep=2)  # the resumed run saves on
    for step in (30, 40, 50):
        again.save(step, state_at(step), history_at(step))
    again.close()
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["40", "50"]
    assert sorted(p.name for p in kept.parent.iterdir()) == ["30"]


def test_an_unreadable_checkpoint_falls_back_to_the_previous_step(run_dir, capsys):
    flip_byte(largest_data_file(run_dir, 30), 0)  # the compressed block's magic number
    (state, _), _ = restore(run_dir)
    assert_state_equal(state, state_at(20))
    assert "/30 is corrupt (cannot be read: " in one_warning(capsys)


def test_an_edited_history_falls_back_to_the_previous_step(run_dir, capsys):
    path = run_dir / "checkpoints" / "30" / "history" / "metadata"
    history = json.loads(path.read_text())
    history["train_loss"][-1][0] = 0.01  # a nicer curve
    path.write_text(json.dumps(history))
    (_, history), _ = restore(run_dir)
    assert history["done"] == 20
    assert "(its arrays or history differ from what was saved)" in one_warning(capsys)


def test_when_no_checkpoint_is_good_it_stops_with_one_line_and_moves_nothing(run_dir, capsys):
    for step in (10, 20, 30):
        flip_byte(largest_data_file(run_dir, step), 0)
    with pytest.raises(CheckpointError) as raised:
        restore(run_dir)
    message = str(raised.value)
    assert "\n" not in message and message.startswith(
        f"no checkpoint in {run_dir / 'checkpoints'} can be restored (step 30: cannot be read"
    )
    assert "step 20: " in message and "step 10: " in message
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoints"]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["10", "20", "30"]
    assert capsys.readouterr().err == ""


def test_a_checkpoint_from_before_digests_is_restored_with_one_warning(run_dir, capsys):
    shutil.rmtree(run_dir / "checkpoints" / "30" / "digest")
    (state, _), _ = restore(run_dir)
    assert_state_equal(state, state_at(30))
    assert "/30 has no digest" in one_warning(capsys)


def test_a_checkpoint_from_before_the_blowup_reference_is_restored_with_it_unset(tmp_path, capsys):
    import orbax.checkpoint as ocp

    from seqbench.train.checkpoint import _to_saveable

    older = {k: v for k, v in _to_saveable(state_at(30)).items() if k != "initial_loss"}
    with ocp.CheckpointManager(tmp_path / "checkpoints") as manager:  # as seqbench wrote them
        manager.save(
            30,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(older), history=ocp.args.JsonSave(history_at(30))
            ),
        )
        manager.wait_until_finished()
    (state, _), _ = restore(tmp_path)
    assert np.isnan(np.asarray(state.initial_loss)).all() and state.initial_loss.shape == (SEEDS,)
    assert_state_equal(state._replace(initial_loss=None), state_at(30)._replace(initial_loss=None))
    assert "/30 has no digest" in one_warning(capsys)


def edited(change):
    history = json.loads(json.dumps(history_at(30)))
    change(history)
    return history


@pytest.mark.parametrize(
    ("history", "problem"),
    [
        (edited(lambda h: h.update(done=20)), "history is at step 20, not 30"),
        (edited(lambda h: h["train_loss"].pop()), "for 3 chunks"),
        (edited(lambda h: h["eval_history"].pop()), "for 3 chunks"),
        (edited(lambda h: h["train_steps"].pop()), "chunk ends"),
        (edited(lambda h: h["eval_steps"].pop(0)), "evaluation steps"),
        (edited(lambda h: h["train_loss"][0].pop()), "one per seed"),
        (edited(lambda h: h["eval_history"][1].update(x=[0, 0])), "same metrics"),
        (edited(lambda h: h["gradient_flow"].update({"5": [0, 0]})), "never evaluated"),
        (edited(lambda h: h.pop("train_s")), "malformed"),
    ],
)
def test_a_history_inconsistent_with_its_step_is_refused(history, problem):
    assert problem in check_history(history, 30, SEEDS, CHUNK_ENDS)


def test_a_consistent_history_passes_and_other_chunk_ends_do_not():
    assert check_history(history_at(30), 30, SEEDS, CHUNK_ENDS) is None
    assert "not this run's" in check_history(history_at(30), 30, SEEDS, [15, 30, 45])


@pytest.mark.slow
def test_a_run_resumed_past_an_edited_checkpoint_ends_with_the_uninterrupted_numbers(
    run_cli, tmp_path
):
    quick_run = ["experiment=smoke", "trainer.steps=40", "trainer.eval_every=10"]
    folder = tmp_path / "run"
    assert run_cli(*quick_run, f"output_dir={folder}").returncode == 0
    record = json.loads((folder / "run.json").read_text())
    (folder / "run.json").write_text(json.dumps({**record, "status": "running"}))
    path = folder / "checkpoints" / "40" / "history" / "metadata"
    history = json.loads(path.read_text())
    history["train_loss"][0][0] /= 2
    path.write_text(json.dumps(history))

    done = run_cli(*quick_run, f"output_dir={folder}")
    assert done.returncode == 0, done.stderr
    (warning,) = [line for line in done.stderr.splitlines() if "warning" in line]
    assert warning.endswith(
        f"kept at {folder / 'checkpoints.corrupt' / '40'}; resuming from step 30"
    )
    resumed = json.loads((folder / "run.json").read_text())
    assert resumed["timing"]["resumed_from_step"] == 30
    assert (resumed["per_seed"], resumed["curves"]) == (record["per_seed"], record["curves"])
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["30", "40"]
    assert json.loads((folder / "checkpoints.corrupt" / "40" / "history" / "metadata").read_text())
