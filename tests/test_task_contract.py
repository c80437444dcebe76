"""What every synthetic task promises the trainer, checked on each registered one: a batch is a pure
function of its key (the same under jit), the held-out splits are fixed and share no example, and
each evaluation length adds a `test@L` split drawn as the task at length L draws its test set.
Each task's own file checks its definition (targets recomputed from the inputs, its baseline)."""

import dataclasses

import jax
import numpy as np
import pytest

from seqbench.tasks.registry import TASK_CLASSES
from seqbench.tasks.synthetic import SyntheticTask

#: task class name -> small options (the eval_lengths are longer than the training length), with
#: enough distinct examples that 200 validation and 200 test examples meet by chance at odds < 1e-3
SMALL = {
    "AddingProblem": {"length": 12, "eval_lengths": [20]},
    "CopyMemory": {"length": 12, "eval_lengths": [20]},
    "SelectiveCopy": {"length": 20, "n_tokens": 4, "eval_lengths": [30]},
    "MultiQueryAssociativeRecall": {"length": 16, "num_kv_pairs": 2, "eval_lengths": [24]},
    "InductionHeads": {"length": 12, "eval_lengths": [20]},
    "TemporalOrder": {"length": 20, "eval_lengths": [40]},
    "Parity": {"length": 40, "min_length": 30, "eval_lengths": [60]},
}
SYNTHETIC = {
    task_class.__name__: (config_class, task_class)
    for config_class, task_class in TASK_CLASSES.items()
    if issubclass(task_class, SyntheticTask)
}


def small_task(name, **options):
    config_class, task_class = SYNTHETIC[name]
    return task_class(config_class(**{**SMALL[name], "n_eval": 200, **options}))


def test_every_synthetic_task_is_checked_here():
    assert set(SMALL) == set(SYNTHETIC)


def leaves(batch):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(batch)]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_a_batch_is_a_function_of_its_key_and_the_same_under_jit(name):
    task = small_task(name)
    first, again = task.sample(jax.random.key(7), 8), task.sample(jax.random.key(7), 8)
    jitted = jax.jit(task.sample, static_argnums=1)(jax.random.key(7), 8)
    for a, b, c in zip(leaves(first), leaves(again), leaves(jitted), strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    assert not np.array_equal(first.inputs, task.sample(jax.random.key(8), 8).inputs)
    assert first.inputs.shape[:2] == (8, task.spec.seq_len)
    assert first.targets.shape[0] == 8


@pytest.mark.parametrize("name", sorted(SMALL))
def test_held_out_splits_are_fixed_disjoint_and_one_per_evaluation_length(name):
    task = small_task(name)
    sets = task.eval_sets()
    (length,) = task.config.eval_lengths
    assert list(sets) == ["val", "test", f"test@{length}"]
    np.testing.assert_array_equal(sets["val"].inputs, task.eval_set("val").inputs)
    rows = {s: {r.tobytes() for r in np.asarray(sets[s].inputs).reshape(200, -1)} for s in sets}
    assert not rows["val"] & rows["test"]
    longer = task.at_length(length)
    assert longer.config == dataclasses.replace(longer.config, eval_lengths=[])
    for a, b in zip(leaves(sets[f"test@{length}"]), leaves(longer.eval_set("test")), strict=True):
        np.testing.assert_array_equal(a, b)
    assert sets[f"test@{length}"].inputs.shape[1] == longer.spec.seq_len > task.spec.seq_len
    assert task.describe()["eval_baselines"] == {str(length): longer.baseline()}
    with pytest.raises(ValueError, match="unknown split"):
        task.eval_set("train")
