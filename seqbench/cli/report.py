"""`seqbench`: commands that read run records (never the trainer).

seqbench runs PATH... [filters]    one line per run: status, task, model, chosen metrics, wall time
seqbench table PATH... [filters]   paper-style table (Markdown, LaTeX or CSV) of the runs
seqbench plot PATH... [filters]    learning curves (PNG and SVG): a panel per task, a line per model;
                                   --gradient-flow: ||dL/dh_t|| against t, a panel per task and cell
seqbench horizon PATH... [filters] [--threshold 0.1] [--out PREFIX]
                                   memory horizon of a sweep over task.length: metric / baseline
                                   per cell and length, the longest length each cell solves
                                   (Markdown; with --out also PREFIX.md, PREFIX.png, PREFIX.svg)
seqbench search-best SWEEP_DIR     the overrides a finished search chose on validation, one per line,
                                   then tuned_by=SWEEP_DIR (the final run records its search)
                                   (optimizer.lr=0.0021), from its optimization_results.yaml
seqbench eval RUN_DIR [--split NAME] [--params best|final] [--out FILE.json] [key=value ...]
                                   evaluate a run's kept parameters again, every seed (overrides
                                   such as task.length=400: other task settings)
seqbench export RUN_DIR --seed K --format npz|torch [--params best|final] --out PATH
                                   one seed's kept parameters as .npz or a PyTorch state_dict
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any, NoReturn

from seqbench.cli import fail as cli_fail
from seqbench.data.download import add_data_commands
from seqbench.evaluate import add_eval_commands
from seqbench.export import add_export_command
from seqbench.records import (
    FINISHED,
    REPORT_SPLIT,
    SELECT_SPLIT,
    STATUSES,
    RunRecord,
    find_records,
    flatten_config,
    load_record,
    metric_key,
    write_text_atomic,
)
from seqbench.report.table import (
    DEFAULT_STATISTICS,
    FORMATS,
    RENDERERS,
    STATISTICS,
    build_table,
    differing_keys,
    format_value,
    load_references,
    model_label,
    seed_stats,
    sort_models,
    task_label,
)
from seqbench.tasks.base import BASELINE_FRACTION

#: config keys already shown by a run's task and model labels
LABEL_KEYS = ("model.architecture", "model.cell", "task.length", "task._target_")


def fail(message: str) -> NoReturn:
    """One line `seqbench: error: ...` and exit status 2 (see `seqbench.cli.fail`)."""
    cli_fail("seqbench", message)


def _skip(error: ValueError) -> None:
    print(f"seqbench: warning: skipping {error}", file=sys.stderr)


def _records(paths: list[str], wandb_project: str | None = None) -> list[RunRecord]:
    if wandb_project:
        if paths:
            fail("give run folders or --wandb ENTITY/PROJECT, not both")
        from seqbench.tracking import records_from_wandb

        try:
            records = records_from_wandb(wandb_project, skip=_skip)
        except ValueError as error:
            fail(str(error))
        if not records:
            fail(f"no seqbench runs in wandb project {wandb_project}")
        return records
    if not paths:
        fail("give at least one run folder (or --wandb ENTITY/PROJECT)")
    records = []
    for path in paths:
        if not Path(path).exists():
            fail(f"no such file or directory: {path}")
        for found in find_records(Path(path)):
            try:
                records.append(load_record(found))
            except ValueError as error:
                _skip(error)
    if not records:
        fail(f"no run records (run.json) under {' '.join(paths)}")
    return records


def _config_value(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _matches(value: Any, wanted: str) -> bool:
    if isinstance(value, bool) or value is None:
        return str(value).lower() == wanted.lower()
    if isinstance(value, int | float):
        try:
            return float(value) == float(wanted)
        except ValueError:
            return False
    return str(value) == wanted


def select(records: list[RunRecord], args: argparse.Namespace) -> list[RunRecord]:
    """The records that pass every filter given on the command line."""
    keys = []
    for item in args.where or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--where expects KEY=VALUE (a config key such as task.length=600), got {item!r}")
        keys.append((key, value))
    chosen = []
    for r in records:
        if args.task and r.task.name not in args.task and task_label(r) not in args.task:
            continue
        if args.model and model_label(r) not in args.model:
            continue
        if args.status and r.status not in args.status:
            continue
        if args.tag and not set(args.tag) <= set(r.config.get("tags") or []):
            continue
        started = r.started or ""
        if args.since and started[: len(args.since)] < args.since:
            continue
        if args.until and started[: len(args.until)] > args.until:
            continue
        if any(not _matches(_config_value(r.config, k), v) for k, v in keys):
            continue
        chosen.append(r)
    return chosen


def _csv(text: str | None) -> list[str] | None:
    return [part for part in text.split(",") if part] if text else None


def _finished(records: list[RunRecord]) -> list[RunRecord]:
    """The completed and diverged records; stop with one line when none of them is."""
    finished = [r for r in records if r.status in FINISHED]
    if not finished:
        counts = Counter(r.status for r in records)
        order = sorted(counts, key=lambda s: STATUSES.index(s) if s in STATUSES else len(STATUSES))
        detail = ", ".join(f"{counts[s]} {s}" for s in order)
        fail(f"no finished run among the {len(records)} selected ({detail})")
    return finished


def _check_metrics(records: list[RunRecord], names: list[str], splits: tuple[str, ...]) -> None:
    """Stop with one line when a `--metrics` name (bare: its test value) is a metric of none of
    the records' tasks, or names a split other than `splits`."""
    known = sorted({m for r in records for m in r.task.metrics})
    for name in names:
        split, _, bare = metric_key(name).partition("/")
        if bare not in known:
            fail(
                f"--metrics: no metric {name!r} in the selected runs (they have {', '.join(known)})"
            )
        if split not in splits:
            fail(f"--metrics {name}: the split must be {' or '.join(splits)} (bare {bare}: test)")


def cmd_runs(args: argparse.Namespace) -> None:
    records = sorted(
        select(_records(args.paths, args.wandb), args),
        key=lambda r: (r.started or "", r.path or ""),
    )
    _check_metrics(records, _csv(args.metrics) or [], (SELECT_SPLIT, REPORT_SPLIT))
    # what tells the listed runs apart beyond their task and model labels
    flat = [flatten_config(r.config) for r in records]
    varying = differing_keys(flat, skip=LABEL_KEYS) if len(records) > 1 else []
    for r, config in zip(records, flat, strict=True):
        primary = r.task.primary_metric
        names = [
            metric_key(n)
            for n in _csv(args.metrics) or [metric_key(primary, SELECT_SPLIT), primary]
        ]
        names = list(dict.fromkeys(names))
        shown = []
        for name in names:
            stats = seed_stats(r, name, args.which)
            if stats.mean is None:
                shown.append(f"{name}=n/a")
            else:
                shown.append(f"{name}={format_value(stats.mean)}±{format_value(stats.std)}")
        seeds = len(r.seeds)
        wall = r.timing.wall_s if r.timing else None
        wall_text = f"{wall:.1f}s" if wall is not None else "?"
        differs = " ".join(f"{k}={config.get(k)}" for k in varying)
        print(
            f"{r.status:<9} {task_label(r):<24} {model_label(r):<12} seeds={seeds:<3} "
            f"{' '.join(shown):<52} {wall_text:>7}  {differs + '  ' if differs else ''}{r.path}"
        )
    if not records:
        print("seqbench: no run matches the filters", file=sys.stderr)


def cmd_table(args: argparse.Namespace) -> None:
    references = None
    if args.reference:
        try:
            references = load_references(args.reference)
        except ValueError as error:
            fail(str(error))
    records = select(_records(args.paths, args.wandb), args)
    if not records:
        fail("no run matches the filters")
    finished = _finished(records)
    _check_metrics(finished, _csv(args.metrics) or [], (REPORT_SPLIT,))
    found = sort_models({model_label(r) for r in finished})
    unknown = [m for m in _csv(args.models) or [] if m not in found]
    if unknown:
        fail(
            f"--models: no column {', '.join(map(repr, unknown))} (the runs have {', '.join(found)})"
        )
    statistics = _csv(args.stats) or []
    if args.stats == "all":
        statistics = list(STATISTICS)
    unknown = [s for s in statistics if s not in STATISTICS]
    if unknown:
        fail(f"--stats: unknown {', '.join(unknown)}; choose from {', '.join(STATISTICS)} or all")
    table = build_table(
        finished,
        which=args.which,
        models=_csv(args.models),
        metrics=_csv(args.metrics),
        references=references,
        statistics=tuple(statistics) if args.stats is not None else DEFAULT_STATISTICS,
        pool=tuple(_csv(args.pool) or ()),
    )
    text = RENDERERS[args.format](table)
    if args.out:
        out = Path(args.out)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(out, text + "\n")
        except OSError as error:
            fail(f"cannot write {out}: {error.strerror or error}")
        print(f"table written to {out}", file=sys.stderr)
    else:
        print(text)


def cmd_plot(args: argparse.Namespace) -> None:
    from seqbench.report.plot import DEFAULT_FORMATS, PLOT_FORMATS, plot_curves, plot_gradient_flow

    formats = tuple(_csv(args.format) or DEFAULT_FORMATS)
    unknown = [f for f in formats if f not in PLOT_FORMATS]
    if unknown:
        fail(f"--format: unknown {', '.join(unknown)}; choose from {', '.join(PLOT_FORMATS)}")
    records = select(_records(args.paths, args.wandb), args)
    if not records:
        fail("no run matches the filters")
    kinds = [
        flag for flag in ("gradient_flow", "generalisation", "state_size") if getattr(args, flag)
    ]
    if len(kinds) > 1:
        fail(f"--{kinds[0].replace('_', '-')} and --{kinds[1].replace('_', '-')}: pick one figure")
    if args.gradient_flow and args.metric:
        fail("--gradient-flow draws ||dL/dh_t||; it takes no --metric")
    records = _finished(records)
    try:
        if args.gradient_flow:
            written = plot_gradient_flow(records, args.out, layer=args.layer, formats=formats)
        elif args.generalisation:
            from seqbench.report.generalisation import plot_generalisation

            written = plot_generalisation(records, args.out, metric=args.metric, formats=formats)
        elif args.state_size:
            from seqbench.report.state_size import plot_state_size

            written = plot_state_size(records, args.out, metric=args.metric, formats=formats)
        else:
            written = plot_curves(
                records, args.out, metric=args.metric, formats=formats, log_y=args.log_y
            )
    except ValueError as error:
        fail(str(error))
    except OSError as error:
        fail(f"cannot write {args.out}: {error.strerror or error}")
    for path in written:
        print(path)


def cmd_horizon(args: argparse.Namespace) -> None:
    from seqbench.report.horizon import build_horizon, plot_horizon, render_markdown

    if not 0 < args.threshold <= 1:
        fail(f"--threshold must be in (0, 1], got {args.threshold:g}")
    metrics = _csv(args.metrics) or []
    if len(metrics) > 1:
        fail(f"--metrics: the horizon reads one metric, got {', '.join(metrics)}")
    records = select(_records(args.paths, args.wandb), args)
    if not records:
        fail("no run matches the filters")
    records = _finished(records)
    _check_metrics(records, metrics, (SELECT_SPLIT, REPORT_SPLIT))
    try:
        result = build_horizon(
            records,
            metric=metrics[0] if metrics else None,
            which=args.which,
            threshold=args.threshold,
        )
    except ValueError as error:
        fail(str(error))
    text = render_markdown(result)
    if args.out:
        out = Path(args.out)
        md = out.with_name(f"{out.name}.md")
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(md, text + "\n")
            written = [md, *plot_horizon(result, out)]
        except OSError as error:
            fail(f"cannot write {args.out}: {error.strerror or error}")
        print(f"horizon written to {', '.join(str(p) for p in written)}", file=sys.stderr)
    print(text)


def cmd_search_best(args: argparse.Namespace) -> None:
    from seqbench.search import best_config

    try:
        best = best_config(args.sweep_dir)
    except ValueError as error:
        fail(str(error))
    if best.failed:
        print(
            f"seqbench: warning: {best.path}: every trial failed (objective {best.value:g}); "
            "printing the first trial's values",
            file=sys.stderr,
        )
    for override in [*best.overrides(), best.provenance()]:
        print(override)


def _add_filters(
    parser: argparse.ArgumentParser,
    metrics_help: str = "comma-separated metric names, test split unless prefixed (val/mse); "
    "default: primary (runs), all (table)",
) -> None:
    parser.add_argument("paths", nargs="*", help="run folders, sweep folders or run.json files")
    parser.add_argument(
        "--wandb", metavar="ENTITY/PROJECT", help="read the runs from wandb instead (online)"
    )
    parser.add_argument("--task", action="append", help="task name or label (repeatable)")
    parser.add_argument("--model", action="append", help="model column label (repeatable)")
    parser.add_argument("--tag", action="append", help="keep runs carrying this tag (repeatable)")
    parser.add_argument(
        "--status",
        action="append",
        choices=STATUSES,
    )
    parser.add_argument("--since", help="started on or after this date (YYYY-MM-DD[Thh:mm])")
    parser.add_argument("--until", help="started on or before this date (YYYY-MM-DD[Thh:mm])")
    parser.add_argument(
        "--where", action="append", metavar="KEY=VALUE", help="config key, e.g. task.length=600"
    )
    parser.add_argument("--metrics", help=metrics_help)
    parser.add_argument(
        "--which",
        choices=("best", "final"),
        default="best",
        help="best: each seed's evaluation with the best validation primary metric (default); "
        "final: its last evaluation",
    )


def main(argv: list[str] | None = None) -> None:
    try:
        _main(argv)
    except BrokenPipeError:  # `seqbench table ... | head`
        sys.stderr.close()


def _main(argv: list[str] | None) -> None:
    parser = argparse.ArgumentParser(prog="seqbench", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    runs = commands.add_parser("runs", help="list and compare run records")
    _add_filters(runs)
    runs.set_defaults(func=cmd_runs)
    table = commands.add_parser("table", help="paper-style table of run records")
    _add_filters(table)
    table.add_argument("--models", help="comma-separated model columns, in this order")
    table.add_argument("--format", choices=FORMATS, default="md")
    table.add_argument("--reference", help="YAML file of published numbers (reference columns)")
    table.add_argument(
        "--stats",
        metavar="LIST",
        help="what each entry shows beside its mean over seeds, comma-separated: std (sample, "
        "ddof=1), ci (bootstrap 95%% CI of the mean, n/a below 3 seeds), median, range "
        "(min-max), solved (k/n seeds meeting the task's success rule), seeds (each seed's "
        f"value); 'all', or '' for the mean alone (default: {','.join(DEFAULT_STATISTICS)}). "
        "Numbers are rounded to the precision of the CI; the best of a row is bold only when "
        "Welch's t-test against the runner-up gives p < 0.05. CSV always has every statistic",
    )
    table.add_argument(
        "--pool",
        metavar="KEYS",
        help="comma-separated config keys whose runs count as seeds of one configuration, e.g. "
        "task.split_seed for experiment=uea_walker2024 (one data split per run, as its paper "
        "averages over splits)",
    )
    table.add_argument("--out", help="write the table to this file instead of printing it")
    table.set_defaults(func=cmd_table)
    plot = commands.add_parser("plot", help="learning curves of run records")
    _add_filters(plot)
    plot.add_argument(
        "--metric", help="metric to draw, test split unless prefixed val/ (default: primary)"
    )
    plot.add_argument("--out", default="curves", help="output path without suffix")
    plot.add_argument("--format", default="png,svg", help="comma-separated: png, svg, pdf")
    plot.add_argument("--log-y", choices=("auto", "on", "off"), default="auto")
    plot.add_argument(
        "--gradient-flow",
        action="store_true",
        help="draw the measured ||dL/dh_t|| against t (log scale), a panel per task and cell",
    )
    plot.add_argument(
        "--layer", type=int, default=0, help="recurrent layer for --gradient-flow (default 0)"
    )
    plot.add_argument(
        "--generalisation",
        action="store_true",
        help="draw the test metric (default: accuracy) against evaluation length, for runs "
        "trained with task.eval_lengths: a panel per task, a line per model",
    )
    plot.add_argument(
        "--state-size",
        action="store_true",
        help="draw the test metric (default: accuracy) against each model's recurrent state size "
        "(floats per example): a point per configuration, a panel per task",
    )
    plot.set_defaults(func=cmd_plot)
    horizon = commands.add_parser(
        "horizon", help="memory horizon: the longest task.length each cell solves"
    )
    _add_filters(
        horizon,
        metrics_help="the metric to divide by its trivial baseline, one to minimise, test split "
        "unless prefixed (val/mse); default: the task's primary metric",
    )
    horizon.add_argument(
        "--threshold",
        type=float,
        default=BASELINE_FRACTION,
        help="a cell solves T when its mean metric / baseline is below this, in (0, 1] "
        "(default 0.1)",
    )
    horizon.add_argument(
        "--out", metavar="PREFIX", help="also write PREFIX.md, PREFIX.png and PREFIX.svg"
    )
    horizon.set_defaults(func=cmd_horizon)
    best = commands.add_parser(
        "search-best",
        help="the overrides a finished hyper-parameter search chose on validation, one per line, "
        "and tuned_by=SWEEP_DIR",
    )
    best.add_argument(
        "sweep_dir", help="the search's sweep folder (holds optimization_results.yaml)"
    )
    best.set_defaults(func=cmd_search_best)
    add_data_commands(commands)
    add_eval_commands(commands)
    add_export_command(commands)
    args, extra = parser.parse_known_args(argv)
    if extra and isinstance(getattr(args, "overrides", None), list):  # `eval RUN --split x k=v`
        args.overrides += [arg for arg in extra if not arg.startswith("-")]
        extra = [arg for arg in extra if arg.startswith("-")]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.func(args)


if __name__ == "__main__":
    main()
