"""Paper-style tables of run records: one row per task and metric, one column per model.

An entry is the test metric over a run's seeds, with the number of seeds behind it: by default
each seed's value at its best validation evaluation ("best"), or at its last one ("final"). Which
statistics an entry shows is chosen from STATISTICS (`seqbench.report.stats` computes them): the
mean always, by default ± the sample std (ddof = 1), the bootstrap 95% confidence interval of the
mean and, in the row of the metric the task's success rule reads (`Task.success`), how many seeds
solve the task; on request also the median, the range (min–max) and each seed's value. An entry's
numbers are rounded to the precision its interval supports (`seqbench.report.stats`). When the records hold several configurations of one (task, model) cell, as a sweep over
learning rates does, the configuration with the best mean validation value of the task's primary
metric is chosen and its test numbers shown; re-runs of one configuration count once (the latest).
Seeds that diverged are counted and shown, never dropped silently. The best entry of each row
(respecting the metric's direction) is marked only when it differs significantly from the
runner-up (`Row.comparison`: Welch's t-test on the seeds, p < 0.05). Optional reference columns carry published numbers from
a YAML file. Rendered as Markdown, LaTeX (booktabs) or CSV, in a stable order: tasks by family and
then by length as a number (T=100 before T=1600), metrics sorted, models in the architectures'
registration order (`seqbench.models.architectures`), then the rest.

A cell chosen among configurations of different sizes (different parameter budgets, or parameter
counts further apart than the budget tolerance, ±2%) compares sizes as well as architectures: such
cells are warned about on stderr (one line each) and marked with a dagger (†) and a note.
"""

from __future__ import annotations

import csv
import dataclasses
import inspect
import io
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqbench.models.architectures import ARCHITECTURES, cell_options_of
from seqbench.models.budget import hidden_size_for_budget
from seqbench.records import (
    FINISHED,
    NON_IDENTITY_KEYS,
    REPORT_SPLIT,
    SELECT_SPLIT,
    RunRecord,
    config_identity,
    flatten_config,
    metric_key,
)
from seqbench.report.stats import (
    ALPHA,
    CONFIDENCE,
    MIN_SEEDS_FOR_CI,
    N_RESAMPLES,
    SeedStatistics,
    format_rounded,
    one_sample_p,
    seed_statistics,
    uncertainty_decimals,
    welch_p,
)
from seqbench.tasks.base import SuccessRule

ARROWS = {"min": "↓", "max": "↑"}
# Relative parameter-count gap within which runs count as one size: the tolerance a model is sized
# to its budget with (`hidden_size_for_budget`'s default, ±2%).
SIZE_TOLERANCE: float = inspect.signature(hidden_size_for_budget).parameters["tolerance"].default
DAGGER = "†"
FORMATS = ("md", "latex", "csv")
CSV_COLUMNS = [
    "task", "metric", "direction", "baseline", "column", "kind",
    "mean", "std", "median", "min", "max", "ci_low", "ci_high", "n", "n_seeds", "diverged",
    "solved", "best", "p_vs_runner_up", "param_count", "values",
]  # fmt: skip
#: what an entry can show beside its mean (`--stats`): the sample std, the bootstrap CI of the
#: mean, the median, the range min–max, the seeds that solve the task, each seed's value
STATISTICS = ("std", "ci", "median", "range", "solved", "seeds")
#: the statistics shown unless asked otherwise: `mean ± std [CI] (n=3, 2/3 solved)`
DEFAULT_STATISTICS = ("std", "ci", "solved")


def model_label(record: RunRecord) -> str:
    """The column a record goes in: its cell, marked when it is not the cell's default form."""
    model = record.config.get("model") or {}
    name, options = cell_options_of(model)  # records old and new
    name = name or record.model.architecture
    spec = ARCHITECTURES.get(name)
    label = spec.label(options) if spec is not None and spec.label else name
    if model.get("n_layers", 1) > 1:
        label += f" ×{model['n_layers']}"
    if model.get("bidirectional"):
        label = "bi-" + label
    return label


def display_model(label: str) -> str:
    """How figures write a model column label: its architecture's display name in place of the
    name (`lstm` -> `LSTM`, `bi-gru ×2` -> `bi-GRU ×2`, `minlstm (unnormalised)` -> `minLSTM
    (unnormalised)`); a label of no registered architecture is kept."""
    prefix = "bi-" if label.startswith("bi-") else ""
    rest = label.removeprefix("bi-")
    for spec in ARCHITECTURES.values():
        if spec.display_name and (rest == spec.name or rest.startswith(f"{spec.name} ")):
            return prefix + spec.display_name + rest[len(spec.name) :]
    return label


def task_label(record: RunRecord) -> str:
    """The task's own label (`adding (T=600)`, `seq_mnist (pixel)`; records from before labels
    were recorded get one on reading, see `seqbench.records.upgrade_record`)."""
    return record.task.label


def task_order(records) -> dict[str, tuple[str, int, str]]:
    """Task label -> its sort key (`TaskInfo.sort_key`: family, then length as a number), for the
    tasks of `records`."""
    return {task_label(r): r.task.sort_key() for r in records}


def format_value(value: float | None) -> str:
    """A number without a known uncertainty: 4 decimals, or 3 significant digits in scientific
    notation below 1e-3 and from 1e4 on; "n/a" for None."""
    if value is None:
        return "n/a"
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e4):
        return f"{value:.2e}"
    return f"{value:.4f}"


@dataclass(frozen=True)
class Entry:
    """One table cell: statistics over the seeds of one run (`seqbench.report.stats`).

    `mean`, `std` (sample, ddof 1; None below 2 seeds), `median`, `minimum`, `maximum` and `ci`
    (the bootstrap interval of the mean; None below 3 seeds) are over the `n` seeds with a finite
    value, `values` (n,) in seed order; `n_seeds` counts every seed, `diverged` those that
    diverged; `solved`: the seeds that meet the task's success rule (None: the rule reads another
    metric, or the task has none).
    """

    mean: float | None
    std: float | None
    n: int  # seeds with a finite value
    n_seeds: int
    diverged: int
    median: float | None = None
    minimum: float | None = None
    maximum: float | None = None
    ci: tuple[float, float] | None = None
    values: tuple[float, ...] = ()
    solved: int | None = None

    @classmethod
    def of(
        cls, stats: SeedStatistics, n_seeds: int, diverged: int, solved: int | None = None
    ) -> Entry:
        return cls(
            stats.mean, stats.std, stats.n, n_seeds, diverged, stats.median, stats.minimum,
            stats.maximum, stats.ci, stats.values, solved,
        )  # fmt: skip

    def statistics(self) -> SeedStatistics:
        return SeedStatistics(
            self.values, self.mean, self.std, self.median, self.minimum, self.maximum, self.ci
        )

    def decimals(self) -> int | None:
        """The decimal place the entry's numbers are rounded to (None: no uncertainty known)."""
        return uncertainty_decimals(self.statistics().uncertainty())

    def number(self, value: float | None) -> str:
        """`value` at the entry's precision (`format_value` when it has none)."""
        decimals = self.decimals()
        if value is None or decimals is None:
            return format_value(value)
        return format_rounded(value, decimals)

    def seeds_note(self, show_solved: bool = True) -> str:
        """`n=3`, `n=2/3, 1 diverged`, `n=3, 2/3 solved`."""
        note = f"n={self.n}" if self.n == self.n_seeds else f"n={self.n}/{self.n_seeds}"
        note += f", {self.diverged} diverged" if self.diverged else ""
        if show_solved and self.solved is not None:
            note += f", {self.solved}/{self.n_seeds} solved"
        return note

    def parts(self, statistics: tuple[str, ...]) -> tuple[str, list[str]]:
        """(`mean ± std`, the further statistics asked for, each as text) at the entry's
        precision; `statistics` from STATISTICS ("solved" belongs to `seeds_note`)."""
        head = self.number(self.mean)
        if "std" in statistics:
            head += f" ± {self.number(self.std)}"
        rest = []
        if "ci" in statistics:
            low_high = "n/a" if self.ci is None else ", ".join(map(self.number, self.ci))
            rest.append(f"[{low_high}]")
        if "median" in statistics:
            rest.append(f"median {self.number(self.median)}")
        if "range" in statistics:
            rest.append(f"range {self.number(self.minimum)}–{self.number(self.maximum)}")
        if "seeds" in statistics:
            rest.append("seeds " + ", ".join(map(self.number, self.values)))
        return head, rest


@dataclass(frozen=True)
class Comparison:
    """A row's best column against its runner-up: the test that compared them, its p-value (None:
    no test possible, e.g. a single seed) and whether the difference is significant at `ALPHA`."""

    best: str
    runner_up: str
    test: str
    p: float | None

    @property
    def significant(self) -> bool:
        return self.p is not None and self.p < ALPHA


@dataclass
class Row:
    task: str
    metric: str
    direction: str
    baseline: float | None
    entries: dict[str, Entry] = field(default_factory=dict)
    references: dict[str, float] = field(default_factory=dict)

    def comparison(self) -> Comparison | None:
        """The best column of the row by mean (models and references, in the metric's direction)
        against the runner-up: Welch's two-sided t-test between two models' seeds, a one-sample
        t-test of a model's seeds against a reference's published number, no test between two
        references. None for a row with fewer than two columns holding a value."""
        values = {c: e.mean for c, e in self.entries.items() if e.mean is not None}
        values.update(self.references)
        if len(values) < 2:
            return None
        ranked = sorted(values, key=values.__getitem__, reverse=self.direction == "max")
        best, runner_up = ranked[:2]
        seeds = {c: e.values for c, e in self.entries.items()}
        if best in seeds and runner_up in seeds:
            return Comparison(best, runner_up, "welch", welch_p(seeds[best], seeds[runner_up]))
        if best in seeds or runner_up in seeds:
            model, reference = (best, runner_up) if best in seeds else (runner_up, best)
            p = one_sample_p(seeds[model], self.references[reference])
            return Comparison(best, runner_up, "one-sample", p)
        return Comparison(best, runner_up, "none", None)

    def best(self) -> set[str]:
        """The column marked best: the best mean of the row when it differs significantly from
        the runner-up (`comparison`), else none (a row with one column: none)."""
        comparison = self.comparison()
        return {comparison.best} if comparison and comparison.significant else set()


@dataclass
class Table:
    models: list[str]
    references: list[str]
    rows: list[Row]
    params: dict[str, dict[str, int]]  # task -> model -> parameter count, tasks in row order
    source: str | None = None
    which: str = "best"
    selections: list[Selection] = field(default_factory=list)
    #: what each entry shows beside its mean (from STATISTICS)
    statistics: tuple[str, ...] = DEFAULT_STATISTICS
    #: task label -> its success rule, for the tasks that have one
    rules: dict[str, SuccessRule] = field(default_factory=dict)

    def mixed_sizes(self) -> list[Selection]:
        """The shown cells chosen among configurations of different sizes (`Selection.mixes_sizes`)."""
        return [s for s in self.selections if s.mixes_sizes()]

    def _entries_note(self, at: str) -> str:
        shown = ["mean"]
        shown += ["± sample std (ddof = 1)"] if "std" in self.statistics else []
        if "ci" in self.statistics:
            shown.append(
                f"[{CONFIDENCE:.0%} bootstrap CI of the mean: percentile, {N_RESAMPLES:,} "
                f"resamples, fixed seed; n/a below {MIN_SEEDS_FOR_CI} seeds]"
            )
        shown += ["median"] if "median" in self.statistics else []
        shown += ["range min–max"] if "range" in self.statistics else []
        shown += ["each seed's value"] if "seeds" in self.statistics else []
        solved = ", k/n solved" if "solved" in self.statistics and self.rules else ""
        return (
            f"Entries: test metric {at}, over the seeds with a finite value: {' '.join(shown)} "
            f"(n = seeds{solved})."
        )

    @staticmethod
    def _rounding_note() -> str:
        return (
            "Each entry's numbers are rounded to the second significant digit of its CI's "
            "half-width (of its std without a CI; 4 decimals with neither)."
        )

    @staticmethod
    def _bold_note() -> str:
        return (
            f"Bold: a row's best mean, only where it differs from the runner-up at p < {ALPHA:g} "
            "(two-sided Welch's t-test on the seeds; against a published number, a one-sample "
            "t-test); otherwise nothing is marked."
        )

    def is_mixed(self, task: str, model: str) -> bool:
        return any(s.task == task and s.model == model for s in self.mixed_sizes())

    def notes(self) -> list[str]:
        """What the entries are, how configurations were chosen, where references come from."""
        at = (
            "at each seed's best validation evaluation"
            if self.which == "best"
            else "at the last evaluation"
        )
        lines = [self._entries_note(at), self._rounding_note(), self._bold_note()]
        if "solved" in self.statistics and self.rules:
            by_rule: dict[str, list[str]] = {}
            for task, rule in self.rules.items():
                by_rule.setdefault(f"test {rule.describe()}", []).append(task)
            rules = "; ".join(f"{', '.join(tasks)}: {rule}" for rule, tasks in by_rule.items())
            lines.append(f"Solved (each task's success rule, per seed; diverged: not): {rules}.")
        lines += [f"Chosen on validation: {s.describe()}." for s in self.selections]
        lines += [
            f"{DAGGER} Chosen among runs of different sizes, so the entry compares sizes as well "
            f"as architectures: {s.task} / {s.model}, {s.sizes()}."
            for s in self.mixed_sizes()
        ]
        if self.source:
            lines.append(f"Reference columns: {self.source}.")
        return lines


def registered_task(name: str) -> type | None:
    """The registered task class named `name` (None: none; a data-set task names itself per
    instance, so its class has no name to find)."""
    from seqbench.tasks.registry import TASK_CLASSES

    return next((t for t in TASK_CLASSES.values() if getattr(t, "name", None) == name), None)


def success_rule(record: RunRecord) -> SuccessRule | None:
    """The success rule of the record's task (`Task.success` of the registered task of its name;
    None for a task without one, such as a data set, or one not registered)."""
    task = registered_task(record.task.name)
    return getattr(task, "success", None)


def seed_values(record: RunRecord, metric: str, which: str = "best") -> list[float | None]:
    """(S,) each seed's `which` ("best" or "final") value of `metric` ("<split>/<name>", or a bare
    name for its test value), None where the seed has none."""
    key = metric_key(metric)
    return [(getattr(seed, which) or {}).get(key) for seed in record.per_seed or []]


def seed_stats(record: RunRecord, metric: str, which: str = "best") -> Entry:
    """Statistics (`seqbench.report.stats.seed_statistics`: mean, sample std with ddof 1, median,
    range, bootstrap CI) of one metric over a record's seeds with a finite value, with seed and
    divergence counts and, for the test metric its task's success rule reads, the seeds solving
    the task.

    `metric`: "<split>/<name>", or a bare name for its test value.
    """
    values = seed_values(record, metric, which)
    diverged = sum(1 for s in record.per_seed or [] if s.status == "diverged")
    split, _, name = metric_key(metric).partition("/")
    rule = success_rule(record)
    solved = None
    if rule is not None and rule.metric == name and split == REPORT_SPLIT:
        baseline = record.task.baseline.get(name)
        solved = sum(rule.solves(v, baseline) for v in values)
    return Entry.of(seed_statistics(values), len(record.seeds), diverged, solved)


def sort_models(labels) -> list[str]:
    """Model column labels in table order: the architectures' registration order (plain forms
    first), then the rest."""
    order = {name: rank for rank, name in enumerate(ARCHITECTURES)}
    return sorted(set(labels), key=lambda c: (order.get(c.split(" ")[0].removeprefix("bi-"), 9), c))


@dataclass(frozen=True)
class Selection:
    """How one (task, model) cell's record was chosen among `n_configs` configurations.

    `differs`: the config keys whose values differ between the candidates, with the chosen values.
    `score`: the chosen configuration's mean validation value of `metric` (None: no validation).
    `param_counts`, `param_budgets`: the candidates' distinct parameter counts and the distinct
    budgets they were sized to (None: not sized to a budget), ascending.
    """

    task: str
    model: str
    n_configs: int
    differs: dict[str, Any]
    metric: str
    score: float | None
    param_counts: tuple[int, ...] = ()
    param_budgets: tuple[int | None, ...] = ()

    def mixes_sizes(self, tolerance: float = SIZE_TOLERANCE) -> bool:
        """Whether the candidates differ in size: two different parameter budgets, or parameter
        counts whose largest exceeds the smallest by more than `tolerance` (relative)."""
        budgets = [b for b in self.param_budgets if b is not None]
        if len(budgets) > 1:
            return True
        return bool(self.param_counts) and max(self.param_counts) > min(self.param_counts) * (
            1 + tolerance
        )

    def sizes(self) -> str:
        """`parameter counts 16,140, 70,210 (budgets 16,000, 70,000)`."""
        counts = ", ".join(f"{c:,}" for c in self.param_counts)
        budgets = ", ".join("none" if b is None else f"{b:,}" for b in self.param_budgets)
        return f"parameter counts {counts} (budgets {budgets})"

    def describe(self) -> str:
        chosen = ", ".join(f"{k}={v}" for k, v in self.differs.items()) or "identical configs"
        how = (
            f"best mean {self.metric} {format_value(self.score)}"
            if self.score is not None
            else "latest (no validation value)"
        )
        return f"{self.task} / {self.model}: {chosen} ({how}, of {self.n_configs} configurations)"


def _validation_score(record: RunRecord, which: str) -> float | None:
    primary = metric_key(record.task.primary_metric, SELECT_SPLIT)
    stats = record.aggregate(which).get(primary)
    return stats.mean if stats else None


def pooled_record(records: list[RunRecord]) -> RunRecord:
    """One record standing for runs that differ only in pooled config keys (e.g. the data split):
    the first's description with every run's seeds and per-seed results, in order."""
    if len(records) == 1:
        return records[0]
    first = records[0]
    return dataclasses.replace(
        first,
        seeds=[seed for r in records for seed in r.seeds],
        per_seed=[seed for r in records for seed in r.per_seed or []],
        summary=None,
        path=", ".join(r.path or "?" for r in records),
    )


def choose_per_cell(
    records: list[RunRecord], which: str = "best", pool: tuple[str, ...] = ()
) -> tuple[dict[tuple[str, str], RunRecord], list[Selection]]:
    """One record per (task label, model label), and how it was chosen where there was a choice.

    Records of the same configuration (equal `config_identity`) are re-runs: the latest finished
    one stands for them. With `pool` (dotted config keys, e.g. ("task.split_seed",)), the
    configurations that differ only in those keys are one: their records' seeds are pooled into
    one record (`pooled_record`), as for a protocol whose seeds are data splits. Between configurations, the one with the best mean over seeds of the
    validation primary metric (at `which`: "best" or "final" evaluation) wins; configurations
    whose every seed diverged rank last; without validation values, the latest wins. The cells
    come in table order: tasks by family and length (`task_order`), then model labels.
    """
    runs: dict[tuple[str, str], dict[str, dict[str, RunRecord]]] = {}
    for record in sorted(records, key=lambda r: (r.finished or "", r.path or "")):
        key = (task_label(record), model_label(record))
        group = config_identity(record.config, ignore=pool) if pool else ""
        runs.setdefault(key, {}).setdefault(group, {})[config_identity(record.config)] = record
    by_cell: dict[tuple[str, str], dict[str, RunRecord]] = {
        key: {group: pooled_record(list(members.values())) for group, members in groups.items()}
        if pool
        else next(iter(groups.values()))
        for key, groups in runs.items()
    }
    order = task_order(records)
    chosen: dict[tuple[str, str], RunRecord] = {}
    selections: list[Selection] = []
    for key in sorted(by_cell, key=lambda k: (order[k[0]], k[1])):
        candidates = list(by_cell[key].values())  # oldest first
        scores = [_validation_score(r, which) for r in candidates]
        latest = candidates[-1].task
        direction = latest.metrics[latest.primary_metric]
        index = len(candidates) - 1
        scored = [i for i, v in enumerate(scores) if v is not None and math.isfinite(v)]
        if scored:
            pick = min if direction == "min" else max
            best = pick(scores[i] for i in scored)
            index = max(i for i in scored if scores[i] == best)
        chosen[key] = candidates[index]
        if len(candidates) > 1:
            flat = [flatten_config(r.config) for r in candidates]
            keys = [k for k in differing_keys(flat) if k not in pool]
            metric = metric_key(candidates[index].task.primary_metric, SELECT_SPLIT)
            counts = tuple(sorted({r.model.param_count for r in candidates}))
            budgets = tuple(
                sorted({r.model.param_budget for r in candidates}, key=lambda b: (b is not None, b))
            )
            selections.append(
                Selection(*key, len(candidates), {k: flat[index].get(k) for k in keys},
                          metric, scores[index] if scored else None, counts, budgets)
            )  # fmt: skip
    return chosen, selections


def differing_keys(flat_configs: list[dict[str, Any]], skip: tuple[str, ...] = ()) -> list[str]:
    """The dotted config keys whose values differ between flattened configs (sorted), leaving
    out those that do not change what is computed (NON_IDENTITY_KEYS) and `skip`."""
    ignored = (*NON_IDENTITY_KEYS, *skip)
    return sorted(
        k
        for k in set().union(*flat_configs)
        if len({repr(f.get(k)) for f in flat_configs}) > 1
        and not any(k == i or k.startswith(i + ".") for i in ignored)
    )


def report_selections(selections: list[Selection]) -> None:
    for selection in selections:
        print(f"seqbench: chose {selection.describe()}", file=sys.stderr)


def warn_mixed_sizes(table: Table) -> None:
    """One stderr line per cell chosen among runs of different sizes (row, column and counts)."""
    for selection in table.mixed_sizes():
        print(
            f"seqbench: warning: row {selection.task!r}, column {selection.model!r} pools runs of "
            f"different sizes, {selection.sizes()}; its entry is the configuration chosen on "
            "validation",
            file=sys.stderr,
        )


def build_table(
    records: list[RunRecord],
    *,
    which: str = "best",
    models: list[str] | None = None,
    metrics: list[str] | None = None,
    references: dict[str, Any] | None = None,
    statistics: tuple[str, ...] = DEFAULT_STATISTICS,
    pool: tuple[str, ...] = (),
) -> Table:
    """The table of the completed or diverged records (failed and running ones are left out).

    `which`: "best" (each seed's test value at its best validation evaluation) or "final" (at
    its last evaluation); the configuration of each cell is chosen on validation at the same
    point (see `choose_per_cell`). `models`: the model columns to show, in this order (default:
    all). `metrics`: metric names to show, bare or `test/<name>` (default: all).
    `references`: parsed reference YAML (see `load_references`). `statistics`: what each entry
    shows beside its mean, from STATISTICS. `pool`: config keys whose runs count as seeds of one
    configuration (`choose_per_cell`), e.g. ("task.split_seed",) for a protocol of one split per
    seed. Cells chosen among runs of different sizes are warned about on stderr, once each
    (`warn_mixed_sizes`).
    """
    unknown = [s for s in statistics if s not in STATISTICS]
    if unknown:
        raise ValueError(
            f"unknown statistic {', '.join(unknown)}; choose from {', '.join(STATISTICS)}"
        )
    usable = [r for r in records if r.status in FINISHED]
    chosen, selections = choose_per_cell(usable, which, pool)
    order = task_order(chosen.values())
    if metrics:
        metrics = [m.removeprefix(f"{REPORT_SPLIT}/") for m in metrics]
    found = sort_models(m for _, m in chosen)
    columns = [m for m in models if m in found] if models else found
    rows: dict[tuple[str, str], Row] = {}
    params: dict[str, dict[str, int]] = {}
    rules: dict[str, SuccessRule] = {}
    for (task, model), record in chosen.items():
        if model not in columns:
            continue
        rule = success_rule(record)
        if rule is not None and (not metrics or rule.metric in metrics):
            rules[task] = rule
        for metric, direction in record.task.metrics.items():
            if metrics and metric not in metrics:
                continue
            row = rows.setdefault(
                (task, metric),
                Row(task, metric, direction, record.task.baseline.get(metric)),
            )
            row.entries[model] = seed_stats(record, metric, which)
        params.setdefault(task, {})[model] = record.model.param_count
    reference_columns = list((references or {}).get("columns", {}))
    for name in reference_columns:
        for task, values in references["columns"][name].items():
            for metric, value in values.items():
                if (task, metric) in rows:
                    rows[(task, metric)].references[name] = float(value)
    reference_columns = [
        c for c in reference_columns if any(c in r.references for r in rows.values())
    ]
    ordered = [rows[k] for k in sorted(rows, key=lambda k: (order[k[0]], k[1]))]
    params = {task: params[task] for task in sorted(params, key=order.__getitem__)}
    source = (references or {}).get("source")
    shown = [s for s in selections if s.model in columns]
    rules = {task: rules[task] for task in sorted(rules, key=order.__getitem__)}
    table = Table(
        columns, reference_columns, ordered, params, source, which, shown, tuple(statistics), rules
    )
    warn_mixed_sizes(table)
    return table


def load_references(path: str | Path) -> dict[str, Any]:
    """Published numbers: `{source: str, columns: {column: {task label: {metric: value}}}}`."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as error:
        raise ValueError(f"cannot read reference file {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ValueError(f"reference file {path} is not valid YAML: {error}") from None
    columns = data.get("columns") if isinstance(data, dict) else None
    if not isinstance(columns, dict) or not all(
        isinstance(tasks, dict) and all(isinstance(m, dict) for m in tasks.values())
        for tasks in columns.values()
    ):
        raise ValueError(
            f"reference file {path}: expected 'columns: {{column: {{task: {{metric: value}}}}}}'"
        )
    return data


def _entry_text(entry: Entry | None, statistics: tuple[str, ...], bold: bool = False) -> str:
    """A Markdown cell: `mean ± std [CI] (n=3, 2/3 solved)`, as `statistics` asks; `bold`: the
    mean ± std in bold."""
    if entry is None:
        return "–"
    note = entry.seeds_note("solved" in statistics)
    if entry.mean is None:
        return f"diverged ({note})"
    head, rest = entry.parts(statistics)
    head = f"**{head}**" if bold else head
    return " ".join([head, *rest, f"({note})"])


def render_markdown(table: Table) -> str:
    header = ["task", "metric", "baseline", *table.models, *table.references]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table.rows:
        best = row.best()
        cells = []
        for model in table.models:
            text = _entry_text(row.entries.get(model), table.statistics, model in best)
            cells.append(f"{text} {DAGGER}" if table.is_mixed(row.task, model) else text)
        for name in table.references:
            value = row.references.get(name)
            text = "–" if value is None else format_value(value)
            cells.append(f"**{text}**" if name in best and value is not None else text)
        metric = f"{row.metric} {ARROWS[row.direction]}"
        lines.append(
            "| " + " | ".join([row.task, metric, format_value(row.baseline), *cells]) + " |"
        )
    for task in table.params:
        counts = [table.params[task].get(m) for m in table.models]
        cells = ["–" if c is None else f"{c:,}" for c in counts] + [""] * len(table.references)
        lines.append("| " + " | ".join([task, "parameters", "", *cells]) + " |")
    lines.append("")
    lines += [f"{note}  " for note in table.notes()]
    return "\n".join(lines).rstrip()


def _latex_escape(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("&", r"\&"), ("%", r"\%")):
        text = text.replace(char, escaped)
    return text.replace("×", r"$\times$")


def _latex_number(value: float | str) -> str:
    """A number (or a number's text) in LaTeX math: 1.5e-05 -> 1.5\\times 10^{-5}."""
    text = format_value(value) if isinstance(value, float) else value
    if "e" in text:
        mantissa, exponent = text.split("e")
        return rf"{mantissa}\times 10^{{{int(exponent)}}}"
    return text


def render_latex(table: Table) -> str:
    """A booktabs tabular: mean ± std with each entry's seed count, best entries in bold, then each
    task's parameter counts (as the Markdown table); needs \\usepackage{booktabs}."""
    header = ["Task", "Metric", "Baseline", *table.models, *table.references]
    spec = "ll" + "r" * (len(header) - 2)
    lines = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]
    lines.append(" & ".join(_latex_escape(h) for h in header) + r" \\")
    lines.append(r"\midrule")
    for row in table.rows:
        best = row.best()
        cells = []
        for model in table.models:
            entry = row.entries.get(model)
            mark = r"$^\dagger$" if table.is_mixed(row.task, model) else ""
            if entry is None:
                cells.append("--")
            elif entry.mean is None:
                note = entry.seeds_note("solved" in table.statistics)
                cells.append(f"diverged ({_latex_escape(note)}){mark}")
            else:
                head, rest = entry.parts(table.statistics)
                body = " ".join(_latex_number(part) for part in head.split(" ± "))
                body = body.replace(" ", r" \pm ")
                body = rf"\mathbf{{{body}}}" if model in best else body
                seeds = _latex_escape(entry.seeds_note("solved" in table.statistics))
                small = " ".join([*(_latex_escape(r) for r in rest), f"({seeds})"])
                cells.append(f"${body}$ {{\\footnotesize {small}}}{mark}")
        for name in table.references:
            value = row.references.get(name)
            if value is None:
                cells.append("--")
            else:
                body = _latex_number(value)
                cells.append(f"$\\mathbf{{{body}}}$" if name in best else f"${body}$")
        arrow = r"$\downarrow$" if row.direction == "min" else r"$\uparrow$"
        baseline = "--" if row.baseline is None else f"${_latex_number(row.baseline)}$"
        first = [_latex_escape(row.task), f"{_latex_escape(row.metric)} {arrow}", baseline]
        lines.append(" & ".join(first + cells) + r" \\")
    if table.params:
        lines.append(r"\midrule")
    for task in table.params:
        counts = [table.params[task].get(m) for m in table.models]
        cells = ["--" if c is None else f"{c:,}" for c in counts] + [""] * len(table.references)
        lines.append(" & ".join([_latex_escape(task), "parameters", "", *cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [f"% {note}" for note in table.notes()]  # the dagger's note among them
    return "\n".join(lines)


def _p_on_best(comparison: Comparison | None, column: str) -> float | str:
    """The best-versus-runner-up p-value on the best column's CSV line (blank elsewhere)."""
    if comparison is None or comparison.best != column or comparison.p is None:
        return ""
    return comparison.p


def render_csv(table: Table) -> str:
    """Tidy CSV: one line per (task, metric, column), models and references alike, with every
    statistic (whatever the table's `statistics`), unrounded, and each seed's value
    (`values`, `;`-separated); `solved` blank where no success rule reads the metric."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in table.rows:
        best = row.best()
        comparison = row.comparison()
        head = [row.task, row.metric, row.direction, row.baseline]
        for model in table.models:
            entry = row.entries.get(model)
            if entry is None:
                continue
            low, high = entry.ci or ("", "")
            stats = [
                entry.mean, entry.std, entry.median, entry.minimum, entry.maximum, low, high,
                entry.n, entry.n_seeds, entry.diverged, "" if entry.solved is None else entry.solved,
            ]  # fmt: skip
            count = table.params.get(row.task, {}).get(model)
            values = ";".join(repr(v) for v in entry.values)
            marks = [int(model in best), _p_on_best(comparison, model)]
            writer.writerow([*head, model, "model", *stats, *marks, count, values])
        for name in table.references:
            if name in row.references:
                blanks = [""] * 10
                value = row.references[name]
                marks = [int(name in best), _p_on_best(comparison, name)]
                writer.writerow([*head, name, "reference", value, *blanks, *marks, "", ""])
    return out.getvalue().rstrip("\n")


RENDERERS = {"md": render_markdown, "latex": render_latex, "csv": render_csv}


def markdown_table(records: list[RunRecord]) -> str:
    """The default table (test at the best validation step, every model and metric) as Markdown."""
    return render_markdown(build_table(records))
