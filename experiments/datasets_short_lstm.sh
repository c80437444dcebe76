#!/usr/bin/env bash
# One short LSTM run on each real data set's offline default (seqbench[data]): its size, the time of
# one epoch on this machine, and the test metric after 600 steps. Results: <sweep dir>/datasets.md
# (committed as results/datasets/). IMDB has no offline copy and is left out (task=imdb needs the
# aclImdb folder in <data_dir>).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${BIN:-.venv/bin}"
SWEEP_DIR="${SWEEP_DIR:-outputs/datasets/$(date +%Y-%m-%d_%H-%M-%S)}"
"$BIN/seqbench-train" --multirun \
  task=smnist,pmnist,uea,music,text,forecast \
  model=lstm model.hidden_size=64 \
  optimizer.lr=3e-3 \
  trainer.steps=600 trainer.eval_every=200 trainer.batch_size=32 trainer.progress=false \
  seeds=[0] tags=[datasets_short_lstm] \
  "hydra.sweep.dir=$SWEEP_DIR" "$@"
"$BIN/seqbench-train" task=smnist task.mode=row \
  model=lstm model.hidden_size=64 \
  optimizer.lr=3e-3 \
  trainer.steps=600 trainer.eval_every=200 trainer.batch_size=32 trainer.progress=false \
  seeds=[0] tags=[datasets_short_lstm] \
  "hydra.run.dir=$SWEEP_DIR/smnist_row" "$@"
"$BIN/python" experiments/datasets_table.py "$SWEEP_DIR" | tee "$SWEEP_DIR/datasets.md"
