#!/usr/bin/env bash
# Bai et al. 2018 Table 1, adding T=600 and copy memory T=1000: SimpleRNN, LSTM and GRU at the paper's
# sizes (conf/experiment/paper_{adding_600,copy_1000}.yaml), 3 seeds each, STEPS steps (default 7,500:
# half the adding preset's 15,000 and three quarters of copy's 10,000, what fitted the GPU time at
# hand), the gradient flow measured at steps 0, 500 and STEPS. The six jobs run at once on one GPU,
# one process each; start NVIDIA MPS first (`nvidia-cuda-mps-control -d`) so that their small
# kernels share the GPU instead of taking turns. Ends with the table beside the paper's numbers and
# the learning-curve and gradient-flow plots in <sweep dir>. Committed as results/paper_bai2018/.
# CELLS (default "simple_rnn lstm gru") picks the architectures: CELLS=tcn adds the paper's TCN
# column (each preset's conf/experiment/for_model/<preset>_tcn.yaml: the TCN scripts' settings),
# and runs on a CPU too (two jobs at once on two cores).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${BIN:-.venv/bin}"
STEPS="${STEPS:-7500}"
CELLS="${CELLS:-simple_rnn lstm gru}"
SWEEP_DIR="${SWEEP_DIR:-outputs/paper_gpu/$(date +%Y-%m-%d_%H-%M-%S)}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # six processes share the GPU's memory
mkdir -p "$SWEEP_DIR"
start=$(date +%s)
pids=()
for exp in paper_adding_600 paper_copy_1000; do
  for cell in $CELLS; do
    "$BIN/seqbench-train" "experiment=$exp" "model=$cell" "trainer.steps=$STEPS" \
      "trainer.gradient_flow_steps=[0,500,$STEPS]" trainer.progress=false \
      "hydra.run.dir=$SWEEP_DIR/$exp/$cell" "$@" > "$SWEEP_DIR/$exp-$cell.log" 2>&1 &
    pids+=($!)
  done
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
tail -q -n 1 "$SWEEP_DIR"/*.log
echo "paper rows on one GPU: $(( $(date +%s) - start )) s wall; run records in $SWEEP_DIR"
"$BIN/seqbench" table "$SWEEP_DIR" --reference experiments/references/bai2018_table1.yaml \
  --out "$SWEEP_DIR/table.md"
"$BIN/seqbench" plot "$SWEEP_DIR" --out "$SWEEP_DIR/curves"
"$BIN/seqbench" plot "$SWEEP_DIR" --gradient-flow --out "$SWEEP_DIR/gradient_flow"
exit "$status"
