"""Selective copying (Gu & Dao 2023, "Mamba", section 4.1; Feng et al. 2024, "Were RNNs All We
Needed?", Table 1): recall a few data tokens scattered at random positions among blanks.

Reference generators:
  - BorealisAI/minRNNs `data/selective_copy.py` (`SelectiveCopyTaskSampler`, Feng et al. 2024):
    followed here, layout and token ids included;
  - state-spaces/s4 `src/dataloaders/datasets/copying.py` (`torch_copying_data` with
    `variable=True`, the generator behind the Mamba paper's task): the same task up to the names.

Where the two references differ, and what seqbench does:
  - what "length" counts: minRNNs' `sequence_length` is the number of positions the M tokens are
    scattered over (so it holds `sequence_length - M` blanks); s4's `l_noise` counts the blanks only
    (the tokens are scattered over `l_noise + M` positions). seqbench's `length` is minRNNs'
    `sequence_length`: s4's `l_noise=N` is `length=N + n_tokens` here.
  - the special ids: minRNNs uses 0 for the marker (<PRED>) and V-1 for the blank (<EMPTY>); s4 the
    other way round (0 blank, A-1 marker). seqbench uses minRNNs' ids. Both draw the data tokens
    uniformly from 1..V-2, and both count the two special symbols in the vocabulary size.
  - both score the model's outputs at the last M steps against the M tokens with a cross-entropy
    over the whole vocabulary (s4: `d_output = n_tokens`; minRNNs: `d_out`, the vocabulary); so does
    seqbench (`spec.output_dim = vocab_size`). seqbench marks the unscored steps with target -1 in a
    (B, T) target array instead of returning (B, M) targets, so the readout is "every_step".
  - the references draw with torch's global generator (`randperm` per example); seqbench draws on
    device from a JAX key (M distinct positions = the top M of L uniform keys, then sorted), which
    gives the same distribution: every M-subset of the L positions equally likely.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from seqbench.config import require
from seqbench.tasks.base import Batch, SyntheticTaskConfig, TaskSpec
from seqbench.tasks.choice import UNSCORED, LabelsAtSteps

#: the marker id (minRNNs' <PRED>): the M steps after the scattered region, where the model answers
MARKER = 0


@dataclass
class SelectiveCopyConfig(SyntheticTaskConfig):
    """Options of selective copying (`task=selective_copy`)."""

    #: L, the positions the data tokens are scattered over (L - M of them blank); input L + M steps
    length: int = 64
    #: M, the data tokens to copy (16 in Gu & Dao 2023 and Feng et al. 2024)
    n_tokens: int = 4
    #: V, the vocabulary including the marker (id 0) and the blank (id V - 1): V - 2 data symbols
    vocab_size: int = 16

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.n_tokens > 0, "task.n_tokens", f"must be positive, got {self.n_tokens}")
        require(
            self.vocab_size >= 3,
            "task.vocab_size",
            f"must be at least 3 (marker, blank and one data symbol), got {self.vocab_size}",
        )
        require(
            self.length >= self.n_tokens,
            "task.length",
            f"must be at least task.n_tokens={self.n_tokens} (the positions the tokens are "
            f"scattered over), got {self.length}",
        )


#: the defaults the label leaves out (the CPU-scale variant)
_DEFAULT = SelectiveCopyConfig()


class SelectiveCopy(LabelsAtSteps):
    """Copy the M data tokens scattered among blanks, in order, at the M marker steps.

    With L = `length`, M = `n_tokens` and V = `vocab_size` (minRNNs' layout, see the module
    docstring): M data tokens drawn uniformly and independently from 1..V-2 are written at M distinct
    positions drawn uniformly among the first L steps (kept in their drawn order, at increasing
    positions); the other L - M of those steps are blank (id V - 1); then come M markers (id 0).
    Inputs (B, L + M) int32 tokens in [0, V). Targets (B, L + M) int32: -1 for the first L steps
    (unscored), then the M data tokens in order (classes in [1, V - 2], of V outputs).
    Readout "every_step", V outputs per step; only the last M steps are scored.
    Metrics (per example, over its M scored steps): accuracy (argmax) and cross-entropy; every
    example has M scored steps, so evaluation means are per step. Loss: the mean cross-entropy.

    The memoryless predictor (uniform over the V - 2 data symbols at every marker step) scores
    accuracy 1/(V - 2) and cross-entropy ln(V - 2).
    Held-out splits: `n_eval` examples each for "val" and "test", from keys derived from `eval_seed`.
    """

    name = "selective_copy"
    config: SelectiveCopyConfig

    def __init__(self, config: SelectiveCopyConfig):
        super().__init__(config)
        self.n_tokens = config.n_tokens
        self.vocab_size = config.vocab_size
        #: the blank id (minRNNs' <EMPTY>)
        self.blank = config.vocab_size - 1
        #: the data symbols 1..V-2, what the memoryless predictor guesses among
        self.n_choices = config.vocab_size - 2
        self.total_length = config.length + config.n_tokens
        self.spec = TaskSpec(
            "tokens", self.vocab_size, self.vocab_size, self.total_length, "every_step"
        )

    @property
    def variant_note(self) -> str:
        notes = []
        if self.n_tokens != _DEFAULT.n_tokens:
            notes.append(f"M={self.n_tokens}")
        if self.vocab_size != _DEFAULT.vocab_size:
            notes.append(f"V={self.vocab_size}")
        return ", ".join(notes)

    def token_positions(self, key: jax.Array, batch_size: int) -> jax.Array:
        """(B, M) int32 distinct positions in [0, L), increasing along each row."""
        scores = jax.random.uniform(key, (batch_size, self.length))
        _, positions = jax.lax.top_k(scores, self.n_tokens)  # a uniformly random M-subset
        return jnp.sort(positions, axis=1).astype(jnp.int32)

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        token_key, position_key = jax.random.split(key)
        M, L = self.n_tokens, self.length
        tokens = jax.random.randint(token_key, (batch_size, M), 1, self.vocab_size - 1, jnp.int32)
        positions = self.token_positions(position_key, batch_size)
        region = (
            jnp.full((batch_size, L), self.blank, jnp.int32)
            .at[jnp.arange(batch_size)[:, None], positions]
            .set(tokens)
        )
        markers = jnp.full((batch_size, M), MARKER, jnp.int32)
        inputs = jnp.concatenate([region, markers], axis=1)
        targets = jnp.concatenate([jnp.full((batch_size, L), UNSCORED, jnp.int32), tokens], axis=1)
        return Batch(inputs, targets)
