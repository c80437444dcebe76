#!/usr/bin/env bash
# Memory horizon, tuned (issue 18, part 4): the memory-horizon sweep (conf/experiment/
# memory_horizon.yaml, frozen: adding at T = 10 ... 1600, 5,000 parameters, 3,000 steps of 32,
# seeds 0, 1, 2) with the learning rate tuned on validation for every (architecture, length), in
# place of the preset's one rate (3e-3) for all.
#
# For each architecture and length:
#   1. search: seqbench-train --multirun hparams_search=headline (4 trials of seed 0, the same four
#      rates for every architecture and length) into $SEARCH_DIR/<model>/T<length>/; skipped when
#      that folder holds optimization_results.yaml; an interrupted search, run again, replays its
#      trials and skips the finished ones;
#   2. final: seqbench-train at the chosen rate (`seqbench search-best`: the rate, and tuned_by=
#      the search folder, which the final run's record keeps) with the preset's seeds
#      0, 1, 2 into $FINAL_DIR/<model>/T<length>/ (a finished run there is skipped).
# Then `seqbench horizon` over the final runs: $RESULTS/horizon.{md,png,svg} (the longest T each
# architecture solves, test MSE under 10% of the trivial 1/6).
#
# Layout:
#   $SEARCH_DIR/<model>/T<length>/{0..3}/run.json, optimization_results.yaml   the searches
#   $FINAL_DIR/<model>/T<length>/run.json                                       the final runs
#   $RESULTS/horizon.{md,png,svg}
# Defaults: SEARCH_DIR=outputs/horizon_tuned/search (scratch), RESULTS=results/memory_horizon_tuned,
# FINAL_DIR=$RESULTS/runs. MODELS (default: the preset's three cells, simple_rnn lstm gru) and
# LENGTHS (default: 10 25 50 100 200 400 800 1600) pick a part, so the sweep can run in parts;
# DRY_RUN=1 prints the commands; extra arguments go to every seqbench-train command.
# Time on the 2-core CPU: about 3 h for the three cells (the untuned sweep's 4,522 s of jobs times
# about 2.3: four one-seed trials and one three-seed run per point in place of one three-seed run);
# the linear recurrences and the TCN cost several times more per point at T >= 400 (minGRU and
# minLSTM took 30-40 min for one three-seed run at T=400), a day or more for all eight to T=1600.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${BIN:-.venv/bin}"
RESULTS="${RESULTS:-results/memory_horizon_tuned}"
SEARCH_DIR="${SEARCH_DIR:-outputs/horizon_tuned/search}"
FINAL_DIR="${FINAL_DIR:-$RESULTS/runs}"
# word splitting on purpose: the lists are space-separated
# shellcheck disable=SC2206
models=(${MODELS:-simple_rnn lstm gru})
# shellcheck disable=SC2206
lengths=(${LENGTHS:-10 25 50 100 200 400 800 1600})

# run (or, with DRY_RUN=1, print) one command
# shellcheck source=experiments/lib/run_or_print.sh
source experiments/lib/run_or_print.sh

for length in "${lengths[@]}"; do
  if ! [[ "$length" =~ ^[0-9]+$ ]] || (( length < 2 )); then
    echo "horizon_tuned.sh: error: LENGTHS: $length is not a length of at least 2" >&2
    exit 2
  fi
done

start=$(date +%s)
for model in "${models[@]}"; do
  for length in "${lengths[@]}"; do
    search="$SEARCH_DIR/$model/T$length"
    final="$FINAL_DIR/$model/T$length"
    point=("experiment=memory_horizon" "model=$model" "task.length=$length")
    if [[ -f "$search/optimization_results.yaml" ]]; then
      echo "# $model / T=$length: search finished in $search; skipping it" >&2
    else
      run "$BIN/seqbench-train" --multirun hparams_search=headline "${point[@]}" \
        trainer.progress=false "hydra.sweep.dir=$search" "$@"
    fi
    if [[ "$DRY_RUN" == 1 && ! -f "$search/optimization_results.yaml" ]]; then
      chosen=("\$($BIN/seqbench search-best $search)")
    else
      best=$("$BIN/seqbench" search-best "$search")
      mapfile -t chosen <<< "$best"
    fi
    run "$BIN/seqbench-train" "${point[@]}" "${chosen[@]}" trainer.progress=false \
      "hydra.run.dir=$final" "$@"
  done
done
[[ "$DRY_RUN" == 1 ]] || echo "tuned horizon runs: $(( $(date +%s) - start )) s wall" >&2

run "$BIN/seqbench" horizon "$FINAL_DIR" --out "$RESULTS/horizon"
