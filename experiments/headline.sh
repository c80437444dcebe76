#!/usr/bin/env bash
# The headline comparison (issue 18; results/headline/): the eight architectures on ten tasks at
# one parameter budget per task, each architecture's learning rate tuned on validation with the
# same budget of trials, then five seeds at the chosen rate, reported on test.
#
# For each preset conf/experiment/headline_<task>.yaml and each architecture:
#   1. search: seqbench-train --multirun hparams_search=headline (4 trials of seed 0, the same
#      four rates for every architecture) into $SEARCH_DIR/<preset>/<model>/; skipped when that
#      folder already holds optimization_results.yaml (Optuna writes it after the last trial). An
#      interrupted search, run again, replays the same trials and skips the finished ones (each
#      trial folder's run.json; the sampler's seed gives the same rates in the same folders).
#   2. final: seqbench-train at the chosen rate (`seqbench search-best`: the rate, and tuned_by=
#      the search folder, which the final run's record keeps) with the preset's seeds
#      0..4 into $FINAL_DIR/<preset>/<model>/; a finished run there is skipped by seqbench-train.
# Then the table ($RESULTS/table.md: test at each seed's best validation step, mean ± sample std,
# bootstrap CI, k/n solved, bold only where significant), the learning curves ($RESULTS/curves)
# and parity's length generalisation ($RESULTS/generalisation) from the final runs.
#
# Layout:
#   $SEARCH_DIR/<preset>/<model>/{0..3}/run.json   the search trials (seed 0 each)
#   $SEARCH_DIR/<preset>/<model>/optimization_results.yaml   the chosen rate and its objective
#   $FINAL_DIR/<preset>/<model>/run.json            the final run (seeds 0..4)
#   $RESULTS/table.md, curves.{png,svg}, generalisation.{png,svg}
# Defaults: RESULTS=results/headline, SEARCH_DIR=$RESULTS/search (every trial's record, committed
# with the table: the evidence that each architecture got the same search), FINAL_DIR=$RESULTS/runs
# (the records the table is made from).
#
# Environment: PRESETS and MODELS (space-separated) pick a part of the table, e.g.
#   PRESETS="headline_adding_100 headline_mqar" MODELS="lstm gru" experiments/headline.sh
# so the table can be run in parts (the table step reads whatever final runs exist);
# DRY_RUN=1 prints the commands instead of running them (the final run's rate is read where its
# search has finished, shown as $(seqbench search-best ...) otherwise). Extra arguments go to
# every seqbench-train command (e.g. logger=wandb).
# Time: about 3.9 h for the whole table on the 2-core CPU, over an hour of it compiling and
# starting processes (experiments/README.md has the sizing); run it in parts with PRESETS / MODELS.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${BIN:-.venv/bin}"
RESULTS="${RESULTS:-results/headline}"
SEARCH_DIR="${SEARCH_DIR:-$RESULTS/search}"
FINAL_DIR="${FINAL_DIR:-$RESULTS/runs}"
ALL_PRESETS="headline_adding_100 headline_adding_600 headline_copy_memory
  headline_selective_copy headline_mqar headline_induction_heads headline_parity
  headline_smnist_row headline_japanese_vowels headline_bach_chorales"
ALL_MODELS="simple_rnn lstm gru mingru minlstm lru rglru tcn"
# word splitting on purpose: the lists are space-separated names
# shellcheck disable=SC2206
presets=(${PRESETS:-$ALL_PRESETS})
# shellcheck disable=SC2206
models=(${MODELS:-$ALL_MODELS})

# run (or, with DRY_RUN=1, print) one command
# shellcheck source=experiments/lib/run_or_print.sh
source experiments/lib/run_or_print.sh

for preset in "${presets[@]}"; do
  if [[ ! -f "conf/experiment/$preset.yaml" ]]; then
    echo "headline.sh: error: no preset conf/experiment/$preset.yaml (PRESETS=$preset)" >&2
    exit 2
  fi
done

start=$(date +%s)
for preset in "${presets[@]}"; do
  for model in "${models[@]}"; do
    search="$SEARCH_DIR/$preset/$model"
    final="$FINAL_DIR/$preset/$model"
    if [[ -f "$search/optimization_results.yaml" ]]; then
      echo "# $preset / $model: search finished in $search; skipping it" >&2
    else
      run "$BIN/seqbench-train" --multirun hparams_search=headline "experiment=$preset" \
        "model=$model" "hydra.sweep.dir=$search" "$@"
    fi
    if [[ "$DRY_RUN" == 1 && ! -f "$search/optimization_results.yaml" ]]; then
      chosen=("\$($BIN/seqbench search-best $search)")
    else
      best=$("$BIN/seqbench" search-best "$search")
      mapfile -t chosen <<< "$best"
    fi
    run "$BIN/seqbench-train" "experiment=$preset" "model=$model" "${chosen[@]}" \
      "hydra.run.dir=$final" "$@"
  done
done
[[ "$DRY_RUN" == 1 ]] || echo "headline runs: $(( $(date +%s) - start )) s wall" >&2

run "$BIN/seqbench" table "$FINAL_DIR" --tag headline --out "$RESULTS/table.md"
run "$BIN/seqbench" plot "$FINAL_DIR" --tag headline --out "$RESULTS/curves"
if [[ -d "$FINAL_DIR/headline_parity" || "$DRY_RUN" == 1 ]]; then
  run "$BIN/seqbench" plot "$FINAL_DIR/headline_parity" --generalisation \
    --out "$RESULTS/generalisation"
fi
