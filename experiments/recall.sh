#!/usr/bin/env bash
# Recall, selectivity and length generalisation at CPU scale (issue 16; results/recall/): the eight
# architectures at one 20,000-parameter budget, 3 seeds each, on selective copying, multi-query
# associative recall, induction heads (tested also at 128..1,024 tokens) and parity (trained on
# 3..40 bits, tested at 64, 128 and 256), then MQAR at widths 8..64 for the state-size picture.
# Presets: conf/experiment/recall_*.yaml (frozen). A re-run skips the jobs already finished in
# SWEEP_DIR, so the sweeps can run in parts. Ends with the table, the learning curves, the
# length-generalisation and state-size figures in SWEEP_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${BIN:-.venv/bin}"
SWEEP_DIR="${SWEEP_DIR:-outputs/recall}"
start=$(date +%s)
for preset in recall_selective_copy recall_mqar recall_induction_heads recall_parity \
  recall_mqar_state_size; do
  "$BIN/seqbench-train" --multirun "experiment=$preset" trainer.progress=false \
    "hydra.sweep.dir=$SWEEP_DIR/$preset" "$@"
done
echo "recall sweeps: $(( $(date +%s) - start )) s wall; run records in $SWEEP_DIR"
"$BIN/seqbench" table "$SWEEP_DIR"/recall_{selective_copy,mqar,induction_heads,parity} \
  --out "$SWEEP_DIR/table.md"
"$BIN/seqbench" plot "$SWEEP_DIR"/recall_{selective_copy,mqar,induction_heads,parity} \
  --out "$SWEEP_DIR/curves"
"$BIN/seqbench" plot "$SWEEP_DIR"/recall_{induction_heads,parity} --generalisation \
  --out "$SWEEP_DIR/generalisation"
"$BIN/seqbench" plot "$SWEEP_DIR"/recall_mqar_state_size --state-size --out "$SWEEP_DIR/state_size"
