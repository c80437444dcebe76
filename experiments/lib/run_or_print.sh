# Sourced by the experiment scripts: run(CMD...) runs one command, or with DRY_RUN=1 prints it,
# quoted as the shell would need (a "$(...)" placeholder argument printed as it is).
DRY_RUN="${DRY_RUN:-0}"

run() {
  if [[ "$DRY_RUN" == 1 ]]; then
    local arg words=()
    for arg in "$@"; do
      if [[ "$arg" == '$('* ]]; then words+=("$arg"); else words+=("$(printf '%q' "$arg")"); fi
    done
    echo "${words[*]}"
  else
    "$@"
  fi
}
