"""Recurrent sequence models: cells, stacked sequence model, parameter budgets."""

from seqbench.models.budget import count_params, hidden_size_for_budget, model_param_count
from seqbench.models.cells import CELLS, GATES
from seqbench.models.sequence import SequenceModel

__all__ = [
    "CELLS",
    "GATES",
    "SequenceModel",
    "count_params",
    "hidden_size_for_budget",
    "model_param_count",
]
