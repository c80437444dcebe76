"""Regenerate every number the top-level README quotes from run records made by the current code.

    python experiments/readme_numbers.py --rerun    # train again (about 10 min on 2 cores), then write
    python experiments/readme_numbers.py            # rewrite the README blocks from the records
    python experiments/readme_numbers.py --check    # exit 1 if the README differs from the records

`--rerun` runs, each in a fresh folder, the default benchmark (`experiments/default_benchmark.sh`),
the README's demo sweep and the short LSTM on every offline data set
(`experiments/datasets_short_lstm.sh`), and replaces the committed records in
`results/default_benchmark/`, `results/readme_demo/` and `results/datasets/` (run.json files only)
and `results/readme_numbers.json` (wall times, commit, CPU). The README's generated blocks, between
`<!-- readme_numbers:NAME -->` and `<!-- /readme_numbers:NAME -->`, are then rendered from those
records alone, with the same `seqbench` commands a reader would type. The memory-horizon, gradient-
flow and paper rows are quoted from their own committed records (see results/README.md), which this
script reads but does not retrain (hours of CPU or a GPU).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
RESULTS = REPO / "results"
META = RESULTS / "readme_numbers.json"
BENCH_DIR = RESULTS / "default_benchmark"
DEMO_DIR = RESULTS / "readme_demo"
DATASETS_DIR = RESULTS / "datasets"
#: where the README's demo sweep writes; the demo records are shown as if read from there
DEMO_SWEEP = "outputs/sweeps/demo"
DEMO_ARGS = [
    "--multirun",
    "experiment=benchmark_adding",
    "model=simple_rnn,lstm,gru",
    "optimizer.lr=1e-3,1e-2",
    "task.length=50",
    "trainer.steps=900",
    "seeds=[0,1]",
    "logger=wandb",
    f"hydra.sweep.dir={DEMO_SWEEP}",
]
BLOCK = re.compile(
    r"(<!-- readme_numbers:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /readme_numbers:(?P=name) -->)",
    re.S,
)


def bin_path(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def run_timed(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    """Run `command`, stream its output, stop on failure; the wall time in seconds."""
    print(f"$ {' '.join(command)}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, env={**os.environ, **(env or {})}, check=True)
    return time.perf_counter() - start


def replace_records(source: Path, target: Path, keep: tuple[str, ...] = ()) -> None:
    """Put the run.json files under `source` into `target` at the same relative paths, after
    removing the old ones (other files in `target` listed in `keep` stay)."""
    if target.exists():
        for entry in target.iterdir():
            if entry.name not in keep:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    target.mkdir(parents=True, exist_ok=True)
    for record in sorted(source.rglob("run.json")):
        destination = target / record.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(record, destination)


def rerun() -> dict:
    """Train the default benchmark, the demo sweep and the data-set runs again; replace records."""
    from seqbench.provenance import cpu_model, git_info

    meta: dict = {"git": git_info(REPO), "cpu_model": cpu_model(), "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="seqbench-readme-") as tmp:
        work = Path(tmp)
        env = {"BIN": str(Path(sys.executable).parent)}
        sweep = work / "benchmark"
        meta["default_benchmark_s"] = run_timed(
            ["experiments/default_benchmark.sh", "trainer.progress=false"],
            REPO,
            {**env, "SWEEP_DIR": str(sweep)},
        )
        replace_records(sweep, BENCH_DIR)
        meta["demo_s"] = run_timed(
            [bin_path("seqbench-train"), *DEMO_ARGS, "trainer.progress=false"],
            work,
            {"WANDB_MODE": "offline"},
        )
        replace_records(work / DEMO_SWEEP, DEMO_DIR)
        datasets = work / "datasets"
        meta["datasets_s"] = run_timed(
            ["experiments/datasets_short_lstm.sh"], REPO, {**env, "SWEEP_DIR": str(datasets)}
        )
        replace_records(datasets, DATASETS_DIR)
        shutil.copy2(datasets / "datasets.md", DATASETS_DIR / "datasets.md")
    META.write_text(json.dumps(meta, indent=1) + "\n")
    seqbench(["table", str(BENCH_DIR), "--out", str(BENCH_DIR / "table.md")])
    seqbench(["plot", str(BENCH_DIR), "--out", str(BENCH_DIR / "curves")])
    return meta


def seqbench(argv: list[str]) -> tuple[str, str]:
    """Run a `seqbench` command in this process; (stdout, stderr)."""
    from seqbench.cli.report import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        main(argv)
    return out.getvalue(), err.getvalue()


def relative(path: Path) -> str:
    return str(path.relative_to(REPO))


def render_default_benchmark(meta: dict) -> str:
    table, _ = seqbench(["table", relative(BENCH_DIR)])
    commit = (meta["git"]["commit"] or "unknown")[:7]
    return (
        f"At commit {commit} the sweep took {meta['default_benchmark_s']:.0f} s on a "
        f"{meta['cpu_count']}-core CPU ({meta['cpu_model']});\nrecords in "
        "`results/default_benchmark/`, table as `seqbench table results/default_benchmark` "
        "prints it:\n\n" + table
    )


def render_demo(meta: dict) -> str:
    shown = relative(DEMO_DIR)

    def as_demo(text: str) -> str:
        return text.replace(shown, DEMO_SWEEP)

    runs, _ = seqbench(["runs", shown])
    table, _ = seqbench(["table", shown])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "curves"
        written, chose = seqbench(["plot", shown, "--out", str(out)])
    written = "".join(f"{DEMO_SWEEP}/curves{Path(line).suffix}\n" for line in written.splitlines())
    sweep_command = " ".join(DEMO_ARGS[:4]) + " \\\n    " + " ".join(DEMO_ARGS[4:])
    return (
        f"Real output (the sweep took {meta['demo_s']:.0f} s on the {meta['cpu_count']}-core CPU; "
        f"records in `results/readme_demo/`):\n\n"
        "```console\n"
        f"$ seqbench-train {sweep_command}\n...\n"
        f"$ seqbench runs {DEMO_SWEEP}\n{as_demo(runs)}"
        f"$ seqbench table {DEMO_SWEEP}\n{as_demo(table)}\n"
        f"$ seqbench table {DEMO_SWEEP} --format latex --out table.tex\n"
        f"$ seqbench plot {DEMO_SWEEP} --out {DEMO_SWEEP}/curves\n{as_demo(chose)}{written}"
        f"$ wandb sync {DEMO_SWEEP}/*/wandb/offline-run-*     # when online, to see them in wandb's UI\n"
        "```\n"
    )


def render_datasets(meta: dict) -> str:
    sys.path.insert(0, str(REPO / "experiments"))
    from datasets_table import table_lines

    from seqbench.records import find_records, load_record

    records = [load_record(path) for path in find_records(DATASETS_DIR)]
    return "\n".join(table_lines(records)) + "\n"


RENDERERS = {
    "default-benchmark": render_default_benchmark,
    "demo": render_demo,
    "datasets": render_datasets,
}


def render_readme(text: str, meta: dict) -> str:
    names = [m.group("name") for m in BLOCK.finditer(text)]
    missing = sorted(set(RENDERERS) - set(names))
    if missing:
        raise SystemExit(f"readme_numbers: README.md lacks the block(s) {', '.join(missing)}")

    def replace(match: re.Match) -> str:
        name = match.group("name")
        if name not in RENDERERS:
            raise SystemExit(f"readme_numbers: README.md has an unknown block {name}")
        return match.group(1) + RENDERERS[name](meta) + match.group(4)

    return BLOCK.sub(replace, text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--rerun", action="store_true", help="train again, then rewrite the README")
    mode.add_argument("--check", action="store_true", help="exit 1 if the README is out of date")
    args = parser.parse_args()
    os.chdir(REPO)  # the records are shown by their paths relative to the checkout
    meta = rerun() if args.rerun else json.loads(META.read_text())
    text = README.read_text()
    rendered = render_readme(text, meta)
    if args.check:
        if rendered != text:
            print("README.md differs from the committed records: run experiments/readme_numbers.py")
            raise SystemExit(1)
        return
    README.write_text(rendered)
    print(f"README.md: {len(RENDERERS)} blocks rendered from the records", file=sys.stderr)


if __name__ == "__main__":
    main()
