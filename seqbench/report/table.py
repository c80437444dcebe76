"""Paper-style tables of run records: one row per task and metric, one column per model.

An entry is the test metric, mean ± std over a run's seeds, with the number of seeds behind it:
by default each seed's value at its best validation evaluation ("best"), or at its last one
("final"). When the records hold several configurations of one (task, model) cell, as a sweep over
learning rates does, the configuration with the best mean validation value of the task's primary
metric is chosen and its test numbers shown; re-runs of one configuration count once (the latest).
Seeds that diverged are counted and shown, never dropped silently. The best entry of each row is
marked, respecting the metric's direction. Optional reference columns carry published numbers from
a YAML file. Rendered as Markdown, LaTeX (booktabs) or CSV, in a stable order: tasks by family and
then by length as a number (T=100 before T=1600), metrics sorted, models in the architectures'
registration order (`seqbench.models.architectures`), then the rest.

A cell chosen among configurations of different sizes (different parameter budgets, or parameter
counts further apart than the budget tolerance, ±2%) compares sizes as well as architectures: such
cells are warned about on stderr (one line each) and marked with a dagger (†) and a note.
"""

from __future__ import annotations

import csv
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

ARROWS = {"min": "↓", "max": "↑"}
# Relative parameter-count gap within which runs count as one size: the tolerance a model is sized
# to its budget with (`hidden_size_for_budget`'s default, ±2%).
SIZE_TOLERANCE: float = inspect.signature(hidden_size_for_budget).parameters["tolerance"].default
DAGGER = "†"
FORMATS = ("md", "latex", "csv")
CSV_COLUMNS = [
    "task", "metric", "direction", "baseline", "column", "kind",
    "mean", "std", "n", "n_seeds", "diverged", "best", "param_count",
]  # fmt: skip


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
    if value is None:
        return "n/a"
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e4):
        return f"{value:.2e}"
    return f"{value:.4f}"


@dataclass(frozen=True)
class Entry:
    """One table cell: statistics over the seeds of one run."""

    mean: float | None
    std: float | None
    n: int  # seeds with a finite value
    n_seeds: int
    diverged: int

    def seeds_note(self) -> str:
        note = f"n={self.n}" if self.n == self.n_seeds else f"n={self.n}/{self.n_seeds}"
        return note + (f", {self.diverged} diverged" if self.diverged else "")


@dataclass
class Row:
    task: str
    metric: str
    direction: str
    baseline: float | None
    entries: dict[str, Entry] = field(default_factory=dict)
    references: dict[str, float] = field(default_factory=dict)

    def best(self) -> set[str]:
        """Columns (models and references) holding the best mean of the row."""
        values = {c: e.mean for c, e in self.entries.items() if e.mean is not None}
        values.update(self.references)
        if not values:
            return set()
        pick = min if self.direction == "min" else max
        target = pick(values.values())
        return {c for c, v in values.items() if math.isclose(v, target, rel_tol=1e-12)}


@dataclass
class Table:
    models: list[str]
    references: list[str]
    rows: list[Row]
    params: dict[str, dict[str, int]]  # task -> model -> parameter count, tasks in row order
    source: str | None = None
    which: str = "best"
    selections: list[Selection] = field(default_factory=list)

    def mixed_sizes(self) -> list[Selection]:
        """The shown cells chosen among configurations of different sizes (`Selection.mixes_sizes`)."""
        return [s for s in self.selections if s.mixes_sizes()]

    def is_mixed(self, task: str, model: str) -> bool:
        return any(s.task == task and s.model == model for s in self.mixed_sizes())

    def notes(self) -> list[str]:
        """What the entries are, how configurations were chosen, where references come from."""
        at = (
            "at each seed's best validation evaluation"
            if self.which == "best"
            else "at the last evaluation"
        )
        lines = [f"Entries: test metric {at}, mean ± std over seeds (n = seeds)."]
        lines += [f"Chosen on validation: {s.describe()}." for s in self.selections]
        lines += [
            f"{DAGGER} Chosen among runs of different sizes, so the entry compares sizes as well "
            f"as architectures: {s.task} / {s.model}, {s.sizes()}."
            for s in self.mixed_sizes()
        ]
        if self.source:
            lines.append(f"Reference columns: {self.source}.")
        return lines


def seed_stats(record: RunRecord, metric: str, which: str = "best") -> Entry:
    """Mean ± std (ddof 0) of one metric over a record's seeds, with seed and divergence counts.

    `metric`: "<split>/<name>", or a bare name for its test value.
    """
    stats = record.aggregate(which).get(metric_key(metric))
    diverged = sum(1 for s in record.per_seed or [] if s.status == "diverged")
    if stats is None:
        return Entry(None, None, 0, len(record.seeds), diverged)
    return Entry(stats.mean, stats.std, stats.n, len(record.seeds), diverged)


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


def choose_per_cell(
    records: list[RunRecord], which: str = "best"
) -> tuple[dict[tuple[str, str], RunRecord], list[Selection]]:
    """One record per (task label, model label), and how it was chosen where there was a choice.

    Records of the same configuration (equal `config_identity`) are re-runs: the latest finished
    one stands for them. Between configurations, the one with the best mean over seeds of the
    validation primary metric (at `which`: "best" or "final" evaluation) wins; configurations
    whose every seed diverged rank last; without validation values, the latest wins. The cells
    come in table order: tasks by family and length (`task_order`), then model labels.
    """
    by_cell: dict[tuple[str, str], dict[str, RunRecord]] = {}
    for record in sorted(records, key=lambda r: (r.finished or "", r.path or "")):
        key = (task_label(record), model_label(record))
        by_cell.setdefault(key, {})[config_identity(record.config)] = record
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
            keys = differing_keys(flat)
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
) -> Table:
    """The table of the completed or diverged records (failed and running ones are left out).

    `which`: "best" (each seed's test value at its best validation evaluation) or "final" (at
    its last evaluation); the configuration of each cell is chosen on validation at the same
    point (see `choose_per_cell`). `models`: the model columns to show, in this order (default:
    all). `metrics`: metric names to show, bare or `test/<name>` (default: all).
    `references`: parsed reference YAML (see `load_references`). Cells chosen among runs of
    different sizes are warned about on stderr, once each (`warn_mixed_sizes`).
    """
    usable = [r for r in records if r.status in FINISHED]
    chosen, selections = choose_per_cell(usable, which)
    order = task_order(chosen.values())
    if metrics:
        metrics = [m.removeprefix(f"{REPORT_SPLIT}/") for m in metrics]
    found = sort_models(m for _, m in chosen)
    columns = [m for m in models if m in found] if models else found
    rows: dict[tuple[str, str], Row] = {}
    params: dict[str, dict[str, int]] = {}
    for (task, model), record in chosen.items():
        if model not in columns:
            continue
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
    table = Table(columns, reference_columns, ordered, params, source, which, shown)
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


def _entry_text(entry: Entry | None) -> str:
    if entry is None:
        return "–"
    if entry.mean is None:
        return f"diverged ({entry.seeds_note()})"
    return f"{format_value(entry.mean)} ± {format_value(entry.std)} ({entry.seeds_note()})"


def render_markdown(table: Table) -> str:
    header = ["task", "metric", "baseline", *table.models, *table.references]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table.rows:
        best = row.best()
        cells = []
        for model in table.models:
            text = _entry_text(row.entries.get(model))
            text = f"**{text}**" if model in best else text
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


def _latex_number(value: float) -> str:
    text = format_value(value)
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
                cells.append(f"diverged ({_latex_escape(entry.seeds_note())}){mark}")
            else:
                body = rf"{_latex_number(entry.mean)} \pm {_latex_number(entry.std)}"
                body = rf"\mathbf{{{body}}}" if model in best else body
                seeds = _latex_escape(entry.seeds_note())
                cells.append(f"${body}$ {{\\footnotesize ({seeds})}}{mark}")
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


def render_csv(table: Table) -> str:
    """Tidy CSV: one line per (task, metric, column), models and references alike."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in table.rows:
        best = row.best()
        head = [row.task, row.metric, row.direction, row.baseline]
        for model in table.models:
            entry = row.entries.get(model)
            if entry is None:
                continue
            stats = [entry.mean, entry.std, entry.n, entry.n_seeds, entry.diverged]
            count = table.params.get(row.task, {}).get(model)
            writer.writerow([*head, model, "model", *stats, int(model in best), count])
        for name in table.references:
            if name in row.references:
                blanks = ["", "", "", ""]
                value = row.references[name]
                writer.writerow([*head, name, "reference", value, *blanks, int(name in best), ""])
    return out.getvalue().rstrip("\n")


RENDERERS = {"md": render_markdown, "latex": render_latex, "csv": render_csv}


def markdown_table(records: list[RunRecord]) -> str:
    """The default table (test at the best validation step, every model and metric) as Markdown."""
    return render_markdown(build_table(records))
