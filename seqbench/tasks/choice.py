"""Synthetic tasks scored as choices among classes: accuracy and cross-entropy.

`LabelAtEnd`: one label per sequence, read at its last valid step (parity, temporal order,
induction heads). `LabelsAtSteps`: labels at some steps of each sequence, the other steps marked
`UNSCORED` (selective copying, multi-query associative recall). Both report per example its
"accuracy" (the share of its scored steps whose argmax is the label) and "cross_entropy" (the mean
softmax cross-entropy over them); accuracy is the primary metric. The memoryless baseline is the
uniform guess among the `n_choices` answers a predictor without memory cannot tell apart.
"""

from __future__ import annotations

import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import optax

from seqbench.tasks.base import SOLVED_ACCURACY, Batch, Direction, SuccessRule
from seqbench.tasks.synthetic import SyntheticTask

#: the target of a step that is not scored
UNSCORED = -1


class ChoiceTask(SyntheticTask):
    """A synthetic task whose answers are classes; subclasses set `n_choices`."""

    metric_directions: ClassVar[dict[str, Direction]] = {
        "accuracy": "max",
        "cross_entropy": "min",
    }
    primary_metric = "accuracy"
    #: solved: at least 99% of the scored answers right (accuracy is a mean over scored steps)
    success = SuccessRule("accuracy", at_least=SOLVED_ACCURACY)
    #: how many answers the memoryless predictor guesses among, uniformly
    n_choices: int

    def baseline(self) -> dict[str, float]:
        """Uniform over `n_choices`: accuracy 1 / n_choices, cross-entropy ln n_choices."""
        return {"accuracy": 1.0 / self.n_choices, "cross_entropy": math.log(self.n_choices)}


class LabelAtEnd(ChoiceTask):
    """One label per sequence: outputs (B, C) logits (readout "last"), targets (B,) int32."""

    def loss(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(outputs, batch.targets))

    def metrics(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
        ce = optax.softmax_cross_entropy_with_integer_labels(outputs, batch.targets)
        correct = jnp.argmax(outputs, axis=-1) == batch.targets
        return {"accuracy": correct.astype(jnp.float32), "cross_entropy": ce}


class LabelsAtSteps(ChoiceTask):
    """Labels at some steps: outputs (B, T, C) logits (readout "every_step"), targets (B, T) int32,
    `UNSCORED` at the steps that are not scored (each example has at least one scored step).
    Evaluation means weigh each example by its scored steps (`example_weights`), so they are means
    over scored steps, as the loss is."""

    def _scored(self, outputs: jax.Array, batch: Batch) -> tuple[jax.Array, ...]:
        """(scored (B, T) bool, cross-entropy (B, T), correct (B, T) bool)."""
        scored = batch.targets != UNSCORED
        labels = jnp.where(scored, batch.targets, 0)
        ce = optax.softmax_cross_entropy_with_integer_labels(outputs, labels)
        correct = (jnp.argmax(outputs, axis=-1) == labels) & scored
        return scored, jnp.where(scored, ce, 0.0), correct

    def loss(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        scored, ce, _ = self._scored(outputs, batch)
        return jnp.sum(ce) / jnp.maximum(jnp.sum(scored), 1)

    def metrics(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
        scored, ce, correct = self._scored(outputs, batch)
        count = jnp.maximum(jnp.sum(scored, axis=1), 1)
        return {
            "accuracy": jnp.sum(correct, axis=1) / count,
            "cross_entropy": jnp.sum(ce, axis=1) / count,
        }

    def example_weights(self, batch: Batch) -> jax.Array:
        return jnp.sum(batch.targets != UNSCORED, axis=1).astype(jnp.float32)
