"""`seqbench`: commands that read run records (never the trainer).

seqbench table PATH...   Markdown table of the runs found under each PATH
seqbench runs PATH...    one line per run: status, task, model, primary metric, wall time
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seqbench.records import find_records, load_record
from seqbench.report.table import markdown_table, model_label, task_label


def _records(paths: list[str]) -> list[dict]:
    records = []
    for path in paths:
        if not Path(path).exists():
            raise SystemExit(f"seqbench: error: no such file or directory: {path}")
        for found in find_records(Path(path)):
            try:
                records.append(load_record(found))
            except ValueError as error:
                print(f"seqbench: warning: skipping {error}", file=sys.stderr)
    if not records:
        raise SystemExit(f"seqbench: error: no run records (run.json) under {' '.join(paths)}")
    return records


def cmd_table(args: argparse.Namespace) -> None:
    print(markdown_table(_records(args.paths)))


def cmd_runs(args: argparse.Namespace) -> None:
    for r in _records(args.paths):
        primary = r["task"]["primary_metric"]
        stats = (r.get("summary") or {}).get("final", {}).get(primary) or {}
        mean = stats.get("mean")
        value = f"{primary}={mean:.4g}" if mean is not None else f"{primary}=n/a"
        wall = (r.get("timing") or {}).get("wall_s")
        wall_text = f"{wall:.1f}s" if wall is not None else "?"
        print(
            f"{r['status']:<9} {task_label(r):<28} {model_label(r):<12} {value:<22} {wall_text:>8}  {r['path']}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="seqbench", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    table = commands.add_parser("table", help="Markdown table of run records")
    table.add_argument("paths", nargs="+")
    table.set_defaults(func=cmd_table)
    runs = commands.add_parser("runs", help="list run records")
    runs.add_argument("paths", nargs="+")
    runs.set_defaults(func=cmd_runs)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
