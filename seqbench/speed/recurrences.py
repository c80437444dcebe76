"""`seqbench-speed --recurrences`: the linear recurrences and the convolutions at long sequences,
beside the fused GRU and LSTM and the PyTorch references.

The architectures: those with `Spec.scans` (linear recurrences: one row per scan) or a
`Spec.receptive_field` (convolutions: one row), and the fused cells whose `Spec.torch_module` is
GRU or LSTM; the PyTorch reference where there is one (`missing_peer("torch", ...)`: torch.nn.GRU /
LSTM, the packaged minGRU / minLSTM of `TORCH_REFERENCES`). Configurations rec1024 and rec4096
(B 32, I = H = 128, readout "last", Adam on the softmax cross-entropy), every measurement in a fresh
worker process: median training step, peak memory.

Targets, for the best scan of each linear recurrence: at least `GRU_TARGET` times faster per
training step than the fused GRU at the longest configuration (T = 4096), and at least as fast as
its PyTorch reference at every configuration. Then the long check (rec16384): each linear
recurrence at its best scan (at the longest configuration) and each convolution, without
trainer.remat, with it, and with it in chunks of `REMAT_CHUNK` steps (trainer.remat_chunk), step
time and memory (target: within `LIMIT_MB`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from seqbench.models.architectures import ARCHITECTURES, get
from seqbench.speed.configs import BenchConfig, step_flops
from seqbench.speed.implementations import missing_peer, scan_options

#: the fused cells beside the rows, by `Spec.torch_module`; the first is the speed-up reference
BASELINE_MODULES = ("GRU", "LSTM")
#: the best scan of a linear recurrence against the fused GRU at the longest configuration
GRU_TARGET = 3.0
#: the best scan of a linear recurrence against its PyTorch reference, at every configuration
REFERENCE_TARGET = 1.0
#: the long check's memory limit, MB (10^6 bytes)
LIMIT_MB = 2000
#: the implementations of this section
IMPLS = ("seqbench", "torch")
#: training steps per jitted call (the default bench runs 4, the trainer's scheme): steps of 0.1 s
#: and more leave no dispatch to amortise, and one step per call, as the PyTorch reference, keeps
#: the section's time down (a warm-up call and at least 3 timed calls, or `min_seconds`)
STEPS_PER_CALL = 1
#: the long check compiles but does not run a program whose XLA buffers exceed this share of the
#: host's available memory (it is reported over the limit instead of driving the host into swap or
#: the OOM killer)
HOST_MEMORY_SHARE = 0.75

#: a worker's time limit (one attempt), s, and the long check's; a measurement expected to take
#: more than `TIME_SHARE` of it (a warm-up and one timed call, from its step at a shorter
#: configuration) is not run: a convolution run through a slow XLA path can take minutes a step
TIMEOUT_S, LONG_TIMEOUT_S, TIME_SHARE = 300.0, 600.0, 0.6
#: remat's cost over the plain step, for that estimate (one more forward pass)
REMAT_COST = 1.5
#: the long check's third form: trainer.remat with trainer.remat_chunk of this many steps
REMAT_CHUNK = 1024
#: the long check's forms, (trainer.remat, trainer.remat_chunk)
REMAT_FORMS = ((False, None), (True, None), (True, REMAT_CHUNK))

#: measure(impl, cell, config, *, scan, remat, min_seconds, steps, timeout, max_memory_mb=None,
#: remat_chunk=None) ->
#: the worker's result (a dict with "step_s" and the memory fields, "skipped", or "error")
Measure = Callable[..., dict]


def baseline_cells() -> list[str]:
    """The registered architectures whose `Spec.torch_module` is in `BASELINE_MODULES`, in its
    order."""
    by_module = {spec.torch_module: name for name, spec in ARCHITECTURES.items()}
    return [by_module[module] for module in BASELINE_MODULES if module in by_module]


def section_cells() -> list[str]:
    """The architectures the section is about: linear recurrences (`Spec.scans`) and convolutions
    (`Spec.receptive_field`), in registration order."""
    return [
        name
        for name, spec in ARCHITECTURES.items()
        if spec.scans or spec.receptive_field is not None
    ]


def default_cells() -> list[str]:
    return [*baseline_cells(), *section_cells()]


def scans_of(cell: str, only: set[str] | None = None) -> list[str | None]:
    """The scans a cell is measured with: its `Spec.scans` (those in `only`, when given), or
    [None] for an architecture with one way to run."""
    spec = get(cell)
    if not spec.scans:
        return [None]
    return [scan for scan in spec.scans if only is None or scan in only]


def fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def memory_mb(result: dict) -> float | None:
    """Peak device memory on an accelerator, else the resident memory above the imports, MiB."""
    device = result.get("device_peak_mb")
    return device if device is not None else result.get("rss_increase_mb")


def available_memory_mb() -> float | None:
    """The host's available memory (MemAvailable), MiB; None where /proc/meminfo is not."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _gflops(cell: str, cfg: BenchConfig, scan: str | None, step_s: float | None) -> float | None:
    if not step_s:
        return None
    return step_flops(cell, cfg, scan_options(cell, scan)) / step_s / 1e9


def target_config(configs: dict[str, BenchConfig]) -> str:
    """The configuration the GRU target is checked at: the longest."""
    return max(configs.values(), key=lambda cfg: cfg.length).name


def expected_seconds(step_s: float, length: int, at_length: int, factor: float = 1.0) -> float:
    """Seconds a worker is expected to spend on the warm-up and one timed call at `at_length`, from
    a step of `step_s` at `length` (the step grows linearly in T), times `factor`."""
    return 2.0 * step_s * at_length / length * factor


def too_slow(
    earlier: tuple[str, float | None] | None, configs: dict[str, BenchConfig], cfg: BenchConfig,
    timeout: float, factor: float = 1.0,
) -> str | None:  # fmt: skip
    """Why not to run a measurement at `cfg`, given the step time at a shorter configuration
    (name, step_s or None when it gave none); None: run it."""
    if earlier is None:
        return None
    name, step_s = earlier
    if step_s is None:
        return f"none at {name}"
    expected = expected_seconds(step_s, configs[name].length, cfg.length, factor)
    if expected > TIME_SHARE * timeout:
        return (
            f"~{expected / 2:.0f} s per step expected from {name} ({1e3 * step_s:.0f} ms), "
            f"past the {timeout:.0f} s limit"
        )
    return None


def shown(result: dict) -> str:
    if "step_s" in result:
        return f"{1e3 * result['step_s']:.1f} ms"
    if "skipped" in result:
        return f"not run: {result['skipped']}"
    return f"error: {result.get('error')}"


def measure_all(
    configs: dict[str, BenchConfig],
    cells: list[str],
    impls: list[str],
    measure: Measure,
    *,
    scans: set[str] | None = None,
    min_seconds: float = 2.0,
) -> list[dict]:
    """Every (configuration, cell, scan) of seqbench and every PyTorch reference, one measurement
    each (in a fresh process when `measure` is the worker), shortest configuration first. One
    expected to run past `TIMEOUT_S` (from its step at a shorter configuration), or following one
    that gave no step, is not run (its result says "skipped")."""
    results = []
    earlier: dict[tuple[str, str, str | None], tuple[str, float | None]] = {}
    ordered = sorted(configs, key=lambda name: configs[name].length)
    for name in ordered:
        for cell in cells:
            runs: list[tuple[str, str | None]] = []
            if "seqbench" in impls:
                chosen = scans_of(cell, scans)
                if not chosen:
                    print(f"seqbench-speed: {cell}: none of --scans: skipping it", file=sys.stderr)
                runs += [("seqbench", scan) for scan in chosen]
            if "torch" in impls:
                reason = missing_peer("torch", cell)
                if reason is None:
                    runs.append(("torch", None))
                elif name == ordered[0]:
                    print(f"seqbench-speed: torch: {reason}: no reference", file=sys.stderr)
            for impl, scan in runs:
                key = (impl, cell, scan)
                skip = too_slow(earlier.get(key), configs, configs[name], TIMEOUT_S)
                if skip is not None:
                    result = {"impl": impl, "cell": cell, "config": name, "seeds": 1}
                    result.update(remat=False, scan=scan, skipped=skip)
                else:
                    result = measure(
                        impl,
                        cell,
                        name,
                        scan=scan,
                        remat=False,
                        min_seconds=min_seconds,
                        steps=STEPS_PER_CALL,
                        timeout=TIMEOUT_S,
                    )
                    result.setdefault("scan", scan)
                earlier[key] = (name, result.get("step_s"))
                results.append(result)
                print(
                    f"  {name:<8} {cell:<10} {scan or '–':<11} {impl:<8} {shown(result)}",
                    file=sys.stderr,
                    flush=True,
                )
    return results


def summarise(results: list[dict], configs: dict[str, BenchConfig], cells: list[str]) -> list[dict]:
    """One row per (configuration, cell, scan) measured with seqbench: its step time, the PyTorch
    reference's, the speed-ups and the target checks."""
    baselines = baseline_cells()
    gru = baselines[0] if baselines else None
    target = target_config(configs)
    rows = []
    for name, cfg in configs.items():
        ours: dict[tuple[str, str | None], dict] = {}
        references: dict[str, dict] = {}
        for r in results:
            if r["config"] != name or r.get("remat") or r.get("seeds", 1) != 1:
                continue
            if r["impl"] == "seqbench":
                ours[(r["cell"], r.get("scan"))] = r
            elif r["impl"] == "torch":
                references[r["cell"]] = r
        gru_s = ours.get((gru, None), {}).get("step_s") if gru else None
        for cell in cells:
            linear = bool(get(cell).scans)
            measured = [(scan, r) for (c, scan), r in ours.items() if c == cell]
            steps = {scan: r["step_s"] for scan, r in measured if "step_s" in r}
            best = min(steps, key=lambda s: steps[s]) if linear and steps else None
            reference = references.get(cell, {})
            ref_s = reference.get("step_s")
            for scan, r in measured:
                step = r.get("step_s")
                is_best = linear and scan == best
                vs_gru = gru_s / step if step and gru_s and cell != gru else None
                vs_ref = ref_s / step if step and ref_s else None
                errors = {}
                for impl, result in (("seqbench", r), ("torch", reference)):
                    if "error" in result:
                        errors[impl] = result["error"]
                    elif "skipped" in result:
                        errors[impl] = f"not run: {result['skipped']}"
                rows.append(
                    {
                        "config": name,
                        "length": cfg.length,
                        "cell": cell,
                        "scan": scan,
                        "linear_recurrence": linear,
                        "best_scan": is_best,
                        "step_ms": {
                            impl: 1e3 * s
                            for impl, s in (("seqbench", step), ("torch", ref_s))
                            if s is not None
                        },
                        "errors": errors,
                        "speedup_vs_gru": vs_gru,
                        "speedup_vs_reference": vs_ref,
                        "meets_gru_target": (vs_gru >= GRU_TARGET)
                        if is_best and name == target and vs_gru
                        else None,
                        "meets_reference_target": (vs_ref >= REFERENCE_TARGET)
                        if is_best and vs_ref
                        else None,
                        "gflops": _gflops(cell, cfg, scan, step),
                        "compile_s": r.get("compile_s"),
                        "memory_mb": {
                            "seqbench": memory_mb(r),
                            "torch": memory_mb(reference) if reference else None,
                        },
                    }
                )
    return rows


def best_scans(rows: list[dict], configs: dict[str, BenchConfig]) -> dict[str, str | None]:
    """Each measured linear recurrence's best scan at the longest configuration."""
    target = target_config(configs)
    return {r["cell"]: r["scan"] for r in rows if r["config"] == target and r["best_scan"]}


def long_rows(
    cells: list[str],
    long_config: BenchConfig,
    best: dict[str, str | None],
    measure: Measure,
    results: list[dict],
    configs: dict[str, BenchConfig] | None = None,
) -> list[dict]:
    """`long_config` in each of `REMAT_FORMS`, each in a fresh process: a linear recurrence at its
    best scan (its default scan when it has none measured), a convolution as it is. With the
    section's `configs`, a cell expected to run past `LONG_TIMEOUT_S` (from its step at the longest
    of them, in `results`), or that gave none there, is not run."""
    rows = []
    available = available_memory_mb()
    cap = None if available is None else HOST_MEMORY_SHARE * available
    target = target_config(configs) if configs else None
    steps = {
        (r["cell"], r.get("scan")): r.get("step_s")
        for r in results
        if r["impl"] == "seqbench" and r["config"] == target and not r.get("remat")
    }
    for cell in cells:
        spec = get(cell)
        scan = best.get(cell) or (spec.scans[0] if spec.scans else None)
        for remat, remat_chunk in REMAT_FORMS:
            earlier = (target, steps[cell, scan]) if target and (cell, scan) in steps else None
            factor = REMAT_COST if remat else 1.0
            skip = too_slow(earlier, configs or {}, long_config, LONG_TIMEOUT_S, factor)
            if skip is not None:
                result = {"impl": "seqbench", "cell": cell, "config": long_config.name}
                result.update(seeds=1, remat=remat, remat_chunk=remat_chunk, scan=scan)
                result["skipped"] = skip
            else:
                result = measure(
                    "seqbench",
                    cell,
                    long_config.name,
                    scan=scan,
                    remat=remat,
                    min_seconds=0.0,
                    steps=STEPS_PER_CALL,
                    timeout=LONG_TIMEOUT_S,
                    max_memory_mb=cap,
                    **({} if remat_chunk is None else {"remat_chunk": remat_chunk}),
                )
                result.setdefault("scan", scan)
            results.append(result)
            memory = memory_mb(result)
            worst = max(filter(None, (result.get("xla_memory_mb"), memory)), default=None)
            rows.append(
                {
                    "config": long_config.name,
                    "cell": cell,
                    "scan": scan,
                    "remat": remat,
                    "remat_chunk": remat_chunk,
                    "step_s": result.get("step_s"),
                    "xla_memory_mb": result.get("xla_memory_mb"),
                    "memory_mb": memory,
                    "within_limit": None if worst is None else worst * 2**20 <= LIMIT_MB * 1e6,
                    "skipped": result.get("skipped"),
                    "error": result.get("error"),
                }
            )
            print(
                f"  {long_config.name} {cell:<10} {scan or '–':<11} {_remat(remat, remat_chunk)} "
                f"{shown(result)}, {fmt(worst, 0)} MB",
                file=sys.stderr,
                flush=True,
            )
    return rows


def _ms(row: dict, impl: str) -> str:
    """A row's step time of `impl` in ms, or why there is none."""
    error = row["errors"].get(impl)
    if error is None:
        return fmt(row["step_ms"].get(impl))
    return "not run" if error.startswith("not run") else "error"


def _remat(remat: bool, chunk: int | None) -> str:
    """How a long-check row rematerialises: off, on (per step), or in chunks of `chunk` steps."""
    if not remat:
        return "off"
    return "on" if chunk is None else f"chunks of {chunk}"


def _mark(ok: bool | None) -> str:
    return "✓" if ok else "✗"


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def markdown(
    rows: list[dict],
    long: list[dict],
    configs: dict[str, BenchConfig],
    long_cfg: BenchConfig | None,
    env: dict[str, Any],
) -> str:
    first = next(iter(configs.values()))
    target = configs[target_config(configs)]
    device = env["platform"]
    if device != "cpu":
        device += f" ({env.get('device_kind')})"
    lengths = ", ".join(f"{name} T={cfg.length}" for name, cfg in configs.items())
    lines = [
        f"Device: {device}; host {env['processor']}, {env['cpu_count']} cores. Recurrences: "
        f"B{first.batch} I{first.input_size} H{first.hidden}, readout {first.readout}, Adam, "
        f"{lengths}. Median training step (forward, backward, Adam; {STEPS_PER_CALL} per call) in "
        "ms, each in a fresh process; one layer, plain block. torch ref = the PyTorch reference (torch.nn.GRU / LSTM; "
        "the minGRU-pytorch package's minGRU / minLSTM, its log-space parallel form), on the same "
        "device. vs fused GRU = seqbench's fused GRU ms ÷ ms; vs torch ref = torch ref ms ÷ "
        f"seqbench ms. Targets, for the best scan (*) of each linear recurrence: ≥ "
        f"{GRU_TARGET:g}× the fused GRU at T={target.length}, ≥ {REFERENCE_TARGET:g}× the "
        "PyTorch reference. Memory = peak resident memory above the process's footprint after "
        "imports (on a GPU: peak device memory in use).",
        "",
        "| config | architecture | scan | seqbench ms | torch ref ms | vs fused GRU | vs torch ref "
        "| targets | memory MB (seqbench / torch) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        scan = (r["scan"] or "–") + (" *" if r["best_scan"] else "")
        targets = []
        if r["meets_gru_target"] is not None:
            targets.append(f"{GRU_TARGET:g}× GRU {_mark(r['meets_gru_target'])}")
        if r["meets_reference_target"] is not None:
            targets.append(f"ref {_mark(r['meets_reference_target'])}")
        memory = r["memory_mb"]
        seqbench_ms, torch_ms = (_ms(r, impl) for impl in ("seqbench", "torch"))
        lines.append(
            f"| {r['config']} | {r['cell']} | {scan} | {seqbench_ms} | {torch_ms} "
            f"| {_ratio(r['speedup_vs_gru'])} | {_ratio(r['speedup_vs_reference'])} "
            f"| {', '.join(targets) or '–'} "
            f"| {fmt(memory['seqbench'], 0)} / {fmt(memory['torch'], 0)} |"
        )
    errors = [
        f"- {r['config']} {r['cell']}"
        + (f" {r['scan']}" if impl == "seqbench" and r["scan"] else "")
        + f" {impl}: {message}"
        for r in rows
        for impl, message in r["errors"].items()
    ]
    if errors:
        lines += ["", "Errors:", "", *dict.fromkeys(errors)]
    if long and long_cfg is not None:
        lines += [
            "",
            f"Long sequences: {long_cfg.name}, B{long_cfg.batch} T{long_cfg.length} "
            f"I{long_cfg.input_size} H{long_cfg.hidden}: each linear recurrence at its best scan "
            f"(at T={target.length}) and each convolution, seqbench training step without "
            "trainer.remat, with it, and with it in rematerialised chunks of trainer.remat_chunk "
            f"steps (target: within {LIMIT_MB} MB, the larger of the XLA buffers and the "
            "memory).",
            "",
            f"| architecture | scan | remat | step s | XLA buffers MB | memory MB "
            f"| within {LIMIT_MB} MB |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in long:
            ok = "–" if r["within_limit"] is None else _mark(r["within_limit"])
            step = fmt(r["step_s"], 2)
            if r["error"]:
                step = f"error: {r['error']}"
            elif r["skipped"]:
                step = f"not run ({r['skipped']})"
            lines.append(
                f"| {r['cell']} | {r['scan'] or '–'} "
                f"| {_remat(r['remat'], r.get('remat_chunk'))} | {step} "
                f"| {fmt(r['xla_memory_mb'], 0)} | {fmt(r['memory_mb'], 0)} | {ok} |"
            )
    return "\n".join(lines)


def run_section(
    configs: dict[str, BenchConfig],
    cells: list[str],
    impls: list[str],
    measure: Measure,
    *,
    scans: set[str] | None = None,
    long_config: BenchConfig | None = None,
    long_cells: list[str] | None = None,
    min_seconds: float = 2.0,
) -> dict:
    """Measure the section; returns {"rows", "long_sequence", "measurements"}."""
    results = measure_all(configs, cells, impls, measure, scans=scans, min_seconds=min_seconds)
    rows = summarise(results, configs, cells)
    long = []
    if long_config is not None and "seqbench" in impls:
        chosen = (
            long_cells if long_cells is not None else [c for c in cells if c in section_cells()]
        )
        best = best_scans(rows, configs)
        long = long_rows(chosen, long_config, best, measure, results, configs)
    return {"rows": rows, "long_sequence": long, "measurements": results}
