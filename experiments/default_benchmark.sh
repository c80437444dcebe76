#!/usr/bin/env bash
# The default benchmark (README quick start, `make bench`): SimpleRNN, LSTM and GRU at equal
# parameter budgets, 3 seeds each, on the adding problem and copy memory, at lengths where the
# plain RNN stays at its trivial baseline. Ends with the Markdown table (also written to
# <sweep dir>/table.md). Presets: conf/experiment/benchmark_{adding,copy_memory}.yaml (frozen).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${BIN:-.venv/bin}"
SWEEP_DIR="${SWEEP_DIR:-outputs/benchmark/$(date +%Y-%m-%d_%H-%M-%S)}"
start=$(date +%s)
"$BIN/seqbench-train" --multirun \
  experiment=benchmark_adding,benchmark_copy_memory \
  model=simple_rnn,lstm,gru \
  "hydra.sweep.dir=$SWEEP_DIR" "$@"
echo "default benchmark: $(( $(date +%s) - start )) s wall; run records in $SWEEP_DIR"
