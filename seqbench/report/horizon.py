"""Memory horizon of run records: the longest sequence length each cell learns within a budget.

A memory-horizon sweep trains every cell on one synthetic task at several lengths T
(`task.length`) with the same parameter and step budget. For each task family (the record's
`task.family`, the task without its length: `adding`, `adding (arjovsky)`, `copy_memory (n=5)`),
length (`task.length`) and cell, the record is
chosen as tables choose it (`choose_per_cell`: best mean validation value of the primary metric;
the latest re-run of one identical configuration), and each seed's test metric ("best": at its best
validation evaluation; "final": at its last) is divided by the task's trivial baseline at that
length (the value in the table's baseline column). A cell solves T when the mean of that ratio over
its seeds with a finite value is below a threshold (default `BASELINE_FRACTION`, 0.1: a loss ten
times smaller than the trivial predictor's), the test of `SuccessRule(below_baseline_fraction=...)`,
the success rule the regression tasks define per seed (`Task.success`, which the tables count);
its horizon is the longest T it solves. Only metrics to minimise that
have a baseline (MSE, cross-entropy, NLL) can be read this way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqbench.records import FINISHED, RunRecord, flatten_config, metric_key
from seqbench.report.plot import DEFAULT_FORMATS, save_figure
from seqbench.report.table import (
    Entry,
    Selection,
    choose_per_cell,
    display_model,
    model_label,
    seed_stats,
    sort_models,
    task_label,
)
from seqbench.tasks.base import BASELINE_FRACTION, SuccessRule

#: the default threshold on the mean ratio: the regression tasks' success rule's fraction
DEFAULT_THRESHOLD = BASELINE_FRACTION
#: config keys that describe the budget; named under the table when every record shares them
BUDGET_KEYS = ("model.param_budget", "trainer.steps", "trainer.batch_size")


def task_length(record: RunRecord) -> int:
    """The record's `task.length` (ValueError for a task without one, such as a data set)."""
    if record.task.length is None:
        raise ValueError(
            f"{record.task.label} ({record.path or '?'}) has no integer task.length: "
            "the horizon report reads synthetic tasks swept over task.length"
        )
    return record.task.length


def _sig3(value: float) -> str:
    """Three significant digits: 0.998, 1.00, 0.0123, 1.50e-05, 123."""
    return f"{value:#.3g}".rstrip(".")


@dataclass(frozen=True)
class Point:
    """One cell at one length: the chosen record's metric over the task's baseline.

    `entry`: `seed_stats` of `metric` (mean, std, n = seeds with a finite value, n_seeds,
    diverged). `ratios`: (n,) each such seed's metric / `baseline`, in seed order.
    """

    family: str
    length: int
    model: str
    metric: str  # "<split>/<name>"
    baseline: float
    entry: Entry
    ratios: tuple[float, ...]
    path: str

    @property
    def ratio(self) -> float | None:
        """Mean ratio over the seeds with a finite value (None: none has one)."""
        return None if self.entry.mean is None else self.entry.mean / self.baseline

    def solved(self, threshold: float) -> bool:
        """Whether the mean over the seeds meets the baseline-fraction rule at `threshold`."""
        rule = SuccessRule(self.metric.partition("/")[2], below_baseline_fraction=threshold)
        return rule.solves(self.entry.mean, self.baseline)


@dataclass(frozen=True)
class CellHorizon:
    """One cell's horizon in one family: the longest length solved (None: none), the shorter
    lengths it fails at all the same (`fails_below`, empty when monotone), and the lengths of the
    family that it has no run at (`missing`)."""

    model: str
    horizon: int | None
    fails_below: tuple[int, ...]
    missing: tuple[int, ...]

    @property
    def monotone(self) -> bool:
        return not self.fails_below


@dataclass
class FamilyHorizon:
    """One task family: `lengths` (sorted) × `models` (table order) points and each model's
    horizon."""

    family: str
    metric: str
    lengths: list[int]
    models: list[str]
    points: dict[tuple[str, int], Point]  # (model, length) -> point
    horizons: dict[str, CellHorizon]

    def baselines(self) -> dict[int, float]:
        """length -> the trivial baseline of the metric."""
        return {p.length: p.baseline for p in self.points.values()}


@dataclass
class HorizonResult:
    """Every family's horizons, how they were computed, and how the records were chosen.

    `budget`: the BUDGET_KEYS whose value every chosen record shares (others left out).
    """

    families: list[FamilyHorizon]
    threshold: float
    which: str
    selections: list[Selection] = field(default_factory=list)
    budget: dict[str, Any] = field(default_factory=dict)

    def notes(self) -> list[str]:
        """What the entries are, the budget, the baselines, and whatever needs a caveat."""
        metrics = sorted({f.metric for f in self.families})
        shown = ", ".join(f"{m.partition('/')[0]} {m.partition('/')[2]}" for m in metrics)
        at = (
            "at each seed's best validation evaluation (which=best)"
            if self.which == "best"
            else "at each seed's last evaluation (which=final)"
        )
        lines = [
            f"Entries: {shown} / trivial baseline {at}, mean over the seeds with a finite value "
            f"(seed count shown where seeds diverged); bold: solved (ratio < {self.threshold:g})."
        ]
        budget = []
        if self.budget.get("model.param_budget") is not None:
            budget.append(f"{self.budget['model.param_budget']:,}-parameter budget")
        steps, batch = self.budget.get("trainer.steps"), self.budget.get("trainer.batch_size")
        if steps is not None:
            budget.append(f"{steps:,} steps" + (f" of batch {batch}" if batch is not None else ""))
        elif batch is not None:
            budget.append(f"batch {batch}")
        if budget:
            lines.append(f"Every run: {', '.join(budget)}.")
        for family in self.families:
            name = family.metric.partition("/")[2]
            values = family.baselines()
            if len({round(v, 12) for v in values.values()}) == 1:
                text = f"{next(iter(values.values())):.4g} at every T"
            else:
                text = ", ".join(f"T={t}: {values[t]:.4g}" for t in sorted(values))
            lines.append(f"{family.family}: baseline {name} {text}.")
            for model in family.models:
                cell = family.horizons[model]
                if cell.fails_below:
                    fails = ", ".join(f"T={t}" for t in cell.fails_below)
                    lines.append(
                        f"{family.family} / {model}: not monotone: fails at {fails} "
                        f"but solves T={cell.horizon}."
                    )
                if cell.missing:
                    missing = ", ".join(f"T={t}" for t in cell.missing)
                    lines.append(f"{family.family} / {model}: no run at {missing}.")
                longest = max(t for t in family.lengths if t not in cell.missing)
                if cell.horizon is not None and cell.horizon == longest:
                    lines.append(
                        f"{family.family} / {model} solves T={cell.horizon}, the longest "
                        "length it was run at: its horizon may lie beyond."
                    )
        lines += [f"Chosen on validation: {s.describe()}." for s in self.selections]
        return lines


def _seed_ratios(record: RunRecord, metric: str, which: str, baseline: float) -> tuple[float, ...]:
    """(n,) metric / baseline of each seed with a finite value (as `aggregate` counts them)."""
    values = []
    for seed in record.per_seed or []:
        value = (getattr(seed, which) or {}).get(metric)
        if value is not None and math.isfinite(value):
            values.append(value / baseline)
    return tuple(values)


def _metric_and_baseline(record: RunRecord, metric: str | None) -> tuple[str, float]:
    """The "<split>/<name>" to read and its baseline; ValueError unless the metric is one to
    minimise with a positive finite baseline."""
    key = metric_key(metric or record.task.primary_metric)
    name = key.partition("/")[2]
    where = f"{task_label(record)} / {model_label(record)}"
    directions = record.task.metrics
    if name not in directions:
        raise ValueError(
            f"{where} has no metric {name!r} (it has {', '.join(sorted(directions)) or 'none'})"
        )
    if directions[name] != "min":
        raise ValueError(
            f"{name} is a metric to maximise: the horizon divides a loss to minimise by its "
            "trivial baseline (e.g. mse, cross_entropy, nll); choose one with --metrics"
        )
    baseline = record.task.baseline.get(name)
    if baseline is None or not math.isfinite(baseline) or baseline <= 0:
        raise ValueError(
            f"{where}: metric {name} has no positive trivial baseline in its record "
            f"(baseline {baseline}); the horizon is the metric / baseline"
        )
    return key, float(baseline)


def _horizon(
    model: str, lengths: list[int], points: dict[tuple[str, int], Point], threshold: float
) -> CellHorizon:
    run = [t for t in lengths if (model, t) in points]
    solved = [t for t in run if points[(model, t)].solved(threshold)]
    horizon = max(solved) if solved else None
    fails = tuple(t for t in run if horizon is not None and t < horizon and t not in solved)
    missing = tuple(t for t in lengths if t not in run)
    return CellHorizon(model, horizon, fails, missing)


def build_horizon(
    records: list[RunRecord],
    *,
    metric: str | None = None,
    which: str = "best",
    threshold: float = DEFAULT_THRESHOLD,
) -> HorizonResult:
    """The horizon of every (task family, cell) in the completed or diverged records.

    `metric`: "<split>/<name>" or a bare name for its test value (default: each task's primary
    metric); it must be minimised and have a baseline. `which`: "best" or "final" (the seed's
    evaluation read, and the one configurations are chosen at). `threshold`: in (0, 1]; a cell
    solves T when its mean ratio is below it. ValueError for records that cannot make a horizon:
    none finished, a task without `task.length`, a family run at a single length, a metric to
    maximise or without a baseline.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"the threshold must be in (0, 1], got {threshold:g}")
    if which not in ("best", "final"):
        raise ValueError(f"which must be 'best' or 'final', got {which!r}")
    usable = [r for r in records if r.status in FINISHED]
    if not usable:
        raise ValueError("no completed or diverged run among the records")
    for record in usable:
        task_length(record)
    chosen, selections = choose_per_cell(usable, which)
    points: dict[str, dict[tuple[str, int], Point]] = {}
    metrics: dict[str, str] = {}
    for (_, model), record in chosen.items():  # in table order
        family, length = record.task.family, task_length(record)
        key, baseline = _metric_and_baseline(record, metric)
        metrics.setdefault(family, key)
        entry = seed_stats(record, key, which)
        ratios = _seed_ratios(record, key, which, baseline)
        points.setdefault(family, {})[(model, length)] = Point(
            family, length, model, key, baseline, entry, ratios, record.path or ""
        )
    families = []
    for family in sorted(points):
        lengths = sorted({t for _, t in points[family]})
        if len(lengths) < 2:
            raise ValueError(
                f"{family}: runs at one length only (T={lengths[0]}); the horizon needs "
                "several task.length values (e.g. experiment=memory_horizon)"
            )
        models = sort_models(m for m, _ in points[family])
        horizons = {m: _horizon(m, lengths, points[family], threshold) for m in models}
        families.append(
            FamilyHorizon(family, metrics[family], lengths, models, points[family], horizons)
        )
    flat = [flatten_config(r.config) for r in chosen.values()]
    budget = {}
    for key in BUDGET_KEYS:
        values = {repr(f.get(key)) for f in flat}
        if len(values) == 1 and flat[0].get(key) is not None:
            budget[key] = flat[0][key]
    return HorizonResult(families, threshold, which, selections, budget)


def _point_text(point: Point | None, threshold: float) -> str:
    if point is None:
        return "–"
    entry = point.entry
    seeds = (
        f" ({entry.seeds_note(show_solved=False)})"
        if entry.diverged or entry.n < entry.n_seeds
        else ""
    )
    if point.ratio is None:
        return f"diverged{seeds}"
    text = _sig3(point.ratio)
    return (f"**{text}**" if point.solved(threshold) else text) + seeds


def render_markdown(result: HorizonResult) -> str:
    """One Markdown table per task family (a row per cell, a column per length, then the
    longest length solved), then the notes."""
    lines = []
    for family in result.families:
        header = [
            family.family,
            *(f"T={t}" for t in family.lengths),
            f"longest T solved (ratio < {result.threshold:g})",
        ]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for model in family.models:
            cells = [
                _point_text(family.points.get((model, t)), result.threshold) for t in family.lengths
            ]
            cell = family.horizons[model]
            horizon = "none" if cell.horizon is None else str(cell.horizon)
            if not cell.monotone:
                horizon += " (not monotone)"
            lines.append("| " + " | ".join([model, *cells, horizon]) + " |")
        lines.append("")
    lines += [f"{note}  " for note in result.notes()]
    return "\n".join(lines).rstrip()


def plot_horizon(
    result: HorizonResult, out_prefix: str | Path, *, formats: tuple[str, ...] = DEFAULT_FORMATS
) -> list[Path]:
    """Draw metric / baseline against T, one panel per family; return the files written.

    x: T on a log2 axis, ticked at the lengths run; y: the ratio on a log axis; a line per cell
    through its mean ratios, each seed a small marker, the threshold dashed, the trivial baseline
    (ratio 1) dotted. `out_prefix`: the path without suffix; its folder is created; each file is
    written to a temporary name and renamed.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator

    n = len(result.families)
    fig, axes = plt.subplots(1, n, figsize=(5.5 * n, 4.0), squeeze=False, constrained_layout=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    order = sort_models(m for f in result.families for m in f.models)
    for ax, family in zip(axes[0], result.families, strict=True):
        for model in family.models:
            color = colors[order.index(model) % len(colors)]
            points = [
                family.points[(model, t)] for t in family.lengths if (model, t) in family.points
            ]
            xs = [p.length for p in points if p.ratio is not None and p.ratio > 0]
            ys = [p.ratio for p in points if p.ratio is not None and p.ratio > 0]
            horizon = family.horizons[model].horizon
            label = (
                f"{display_model(model)} (none solved)"
                if horizon is None
                else f"{display_model(model)} (longest solved: T={horizon})"
            )
            ax.plot(xs, ys, color=color, marker="o", markersize=4, label=label)
            seed_x = [p.length for p in points for r in p.ratios if r > 0]
            seed_y = [r for p in points for r in p.ratios if r > 0]
            ax.scatter(seed_x, seed_y, color=color, s=9, alpha=0.5, linewidths=0)
        ax.axhline(
            result.threshold,
            color="black",
            linestyle="--",
            linewidth=1,
            label=f"threshold {result.threshold:g} (solved below)",
        )
        ax.axhline(1.0, color="grey", linestyle=":", linewidth=1, label="trivial baseline")
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(FixedLocator(family.lengths))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([str(t) for t in family.lengths])
        ax.set_yscale("log")
        split, _, name = family.metric.partition("/")
        ax.set_title(family.family)
        ax.set_xlabel("sequence length T")
        ax.set_ylabel(f"{split} {name} / baseline ({result.which})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return save_figure(fig, out_prefix, formats)
