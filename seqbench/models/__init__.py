"""Recurrent sequence models: the architecture registry, the stacked sequence model, parameter
budgets."""

from seqbench.models.architectures import ARCHITECTURES, get
from seqbench.models.budget import count_params, hidden_size_for_budget, model_param_count
from seqbench.models.sequence import SequenceModel

__all__ = [
    "ARCHITECTURES",
    "SequenceModel",
    "count_params",
    "get",
    "hidden_size_for_budget",
    "model_param_count",
]
