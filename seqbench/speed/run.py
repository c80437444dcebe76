"""`seqbench-speed`: training-step throughput of seqbench, plain Flax and PyTorch, side by side.

    seqbench-speed                                  # every configuration, cell and implementation
    seqbench-speed --configs tiny,large --cells <architecture>   # a subset
    seqbench-speed --out results/bench/cpu          # writes cpu.json and cpu.md
    seqbench-speed --recurrences --out results/bench/cpu_recurrences   # the recurrences section

`--recurrences` runs the recurrences section alone instead (`seqbench.speed.recurrences`: the
linear recurrences, each scan, and the convolutions at T = 1024 and 4096 beside the fused GRU and
LSTM and the PyTorch references, then T = 16,384 with and without trainer.remat); `--configs`,
`--cells`, `--impls` (seqbench, torch), `--scans`, `--long-config` and `--long-cells` choose within
it.

Each measurement runs in a fresh process (`seqbench.speed.worker`): cold compile time with an empty
persistent cache, then compile time again from that cache in another fresh process, the median step
time after a warm-up, and the process's peak resident memory. The machine's matmul peak (a 2048^2
float32 matmul under XLA) is measured in the same run, so "% of peak" compares like with like.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from importlib import util
from pathlib import Path

from seqbench.models.architectures import ARCHITECTURES, get
from seqbench.provenance import device_info, package_versions
from seqbench.records import write_json_atomic
from seqbench.speed import recurrences
from seqbench.speed.configs import (
    CONFIGS,
    LONG,
    RECURRENCE_CONFIGS,
    RECURRENCE_LONG,
    RECURRENCE_TINY,
    TINY,
    BenchConfig,
    step_flops,
)
from seqbench.speed.implementations import missing_peer
from seqbench.train.strategy import PROJECTIONS, WAYS, fastest

IMPLS = ("seqbench", "flax", "torch")
SPEEDUP_TARGET, PEAK_TARGET, LONG_LIMIT_MB = 1.5, 0.85, 2000
#: several seeds in one program against as many single-seed runs: on a GPU or TPU (which one seed
#: leaves mostly idle) and on a CPU (never slower)
SEEDS_TARGET = {"accelerator": 4.0, "cpu": 1.0}


def seeds_target(env: dict) -> float:
    """The multi-seed throughput target on the platform `env` describes."""
    return SEEDS_TARGET["cpu" if env.get("platform") == "cpu" else "accelerator"]


def seed_row_choice(row: dict, env: dict) -> dict:
    """`row` with what `trainer.seeds_over=auto` and `trainer.input_projection=auto` take on the
    platform of `env`, by `seqbench.train.strategy.fastest` over the measured candidates
    (`row["candidates_ms"]`, {strategy.label: ms}, vmap in the step first; vmap only on GPU and
    TPU). Adds `auto` (the label), its throughput (`throughput_ratio`), and per way the best ms
    and ratio over the projections (`vmap_ms`, `vmap_ratio`, `map_ms`, `map_ratio`)."""
    ms = {name: value for name, value in row.get("candidates_ms", {}).items() if value is not None}
    one, seeds = row.get("one_ms"), row["seeds"]
    out = dict(row)
    for how in WAYS:
        times = [value for name, value in ms.items() if name.split(",")[0] == how]
        out[f"{how}_ms"] = min(times) if times else None
        out[f"{how}_ratio"] = seeds * one / min(times) if one and times else None
    if env.get("platform") != "cpu":
        ms = {name: value for name, value in ms.items() if name.split(",")[0] == "vmap"}
    if not ms:
        return {**out, "auto": None, "throughput_ratio": None}
    chosen = fastest(ms)
    return {**out, "auto": chosen, "throughput_ratio": seeds * one / ms[chosen] if one else None}


def matmul_peak_gflops(size: int = 2048, calls: int = 10) -> float:
    """Best float32 matmul throughput of XLA on this device, GFLOP/s."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    matmul = jax.jit(lambda x, y: x @ y)
    jax.block_until_ready(matmul(a, a))
    best = float("inf")
    for _ in range(calls):
        start = time.perf_counter()
        jax.block_until_ready(matmul(a, a))
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best / 1e9


def run_worker(
    impl: str,
    cell: str,
    config: str,
    *,
    seeds: int = 1,
    cache: str | None = None,
    compile_only: bool = False,
    min_seconds: float = 2.0,
    timeout: float = 300.0,
    remat: bool = False,
    scan: str | None = None,
    steps: int | None = None,
    max_memory_mb: float | None = None,
    budget_seconds: float | None = None,
    attempts: int = 2,
    remat_chunk: int | None = None,
    seeds_over: str | None = None,
    input_projection: str | None = None,
    extra: tuple[str, ...] = (),
) -> dict:
    """One measurement in a fresh process (`extra`: more worker arguments). A worker that gives
    no result within `timeout` is run again, up to `attempts` times in all (a safety net: vmapped
    initialisation used to deadlock XLA's CPU thread pool, see TrainProgram.batched_init)."""
    command = [
        sys.executable,
        "-m",
        "seqbench.speed.worker",
        impl,
        cell,
        config,
        "--seeds",
        str(seeds),
        "--min-seconds",
        str(min_seconds),
    ]
    if cache:
        command += ["--cache", cache]
    if compile_only:
        command.append("--compile-only")
    if remat:
        command.append("--remat")
    if remat_chunk is not None:
        command += ["--remat-chunk", str(remat_chunk)]
    if scan is not None:
        command += ["--scan", scan]
    if steps is not None:
        command += ["--steps", str(steps)]
    if max_memory_mb is not None:
        command += ["--max-memory-mb", f"{max_memory_mb:.0f}"]
    if budget_seconds is not None:
        command += ["--budget-seconds", f"{budget_seconds:g}"]
    if seeds_over is not None:
        command += ["--seeds-over", seeds_over]
    if input_projection is not None:
        command += ["--input-projection", input_projection]
    command += list(extra)
    failed = {"impl": impl, "cell": cell, "config": config, "seeds": seeds, "remat": remat}
    if scan is not None:
        failed["scan"] = scan
    for attempt in range(1, attempts + 1):
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
            break
        except subprocess.TimeoutExpired:
            print(
                f"  {config:7s} {cell:10s} {scan or ''} {impl}: no result in {timeout:.0f} s "
                f"(attempt {attempt})",
                file=sys.stderr,
                flush=True,
            )
    else:
        times = "once" if attempts == 1 else "twice" if attempts == 2 else f"{attempts} times"
        return {**failed, "error": f"no result within {timeout:.0f} s, {times}"}
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
        return {**failed, "error": tail[0]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_one(
    impl: str,
    cell: str,
    config: str,
    seeds: int,
    min_seconds: float,
    seeds_over: str | None = None,
    input_projection: str | None = None,
) -> dict:
    """A cold measurement, plus (JAX implementations) the compile time from the persistent cache.
    `seeds_over` ("vmap" or "map") and `input_projection` ("in_step" or "hoisted"), seqbench only:
    how several seeds run and where simple_rnn / lstm / gru project their inputs."""
    ways = {"seeds_over": seeds_over, "input_projection": input_projection}
    with tempfile.TemporaryDirectory(prefix="seqbench-speed-cache-") as cache:
        result = run_worker(
            impl, cell, config, seeds=seeds, cache=cache, min_seconds=min_seconds, **ways
        )  # fmt: skip
        if impl != "torch" and "error" not in result:
            cached = run_worker(
                impl, cell, config, seeds=seeds, cache=cache, compile_only=True, **ways
            )  # fmt: skip
            result["cached_compile_s"] = cached.get("compile_s")
    return result


def environment() -> dict:
    """The device and package versions, as in a run record, and when the measurement started."""
    from seqbench.records import now_iso

    return {**device_info(), "versions": package_versions(), "measured": now_iso()}


def fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def projection_choice(measured: list[dict]) -> tuple[dict, str | None, dict[str, float]]:
    """Of one cell's single-seed seqbench measurements (one per input projection, or one
    without), the one `trainer.input_projection=auto` trains with (`strategy.fastest`: in_step
    unless hoisted is faster by `strategy.MARGIN`), its projection, and the ms per step of each
    projection measured."""
    by_projection = {r.get("input_projection"): r for r in measured}
    ms = {p: 1e3 * r["step_s"] for p, r in by_projection.items() if p and "step_s" in r}
    if set(ms) == set(PROJECTIONS):
        projection = fastest({p: ms[p] for p in PROJECTIONS})
    else:  # one measured (or none ran): that one
        projection = next(iter(ms), next(iter(by_projection)))
    return by_projection[projection], projection, ms


def summarise(results: list[dict], configs: dict[str, BenchConfig], peak: float) -> list[dict]:
    """One row per (config, cell): step times per implementation (seqbench's with the input
    projection auto takes), ratios and target checks."""
    rows = []
    for name, cfg in configs.items():
        for cell in ARCHITECTURES:
            single = [
                r for r in results if r["config"] == name and r["cell"] == cell and r["seeds"] == 1
            ]
            by_impl = {r["impl"]: r for r in single if r["impl"] != "seqbench"}
            ours_measured = [r for r in single if r["impl"] == "seqbench"]
            if not ours_measured:
                continue
            ours, projection, projection_ms = projection_choice(ours_measured)
            by_impl = {"seqbench": ours, **by_impl}
            peers = [
                by_impl[i]["step_s"]
                for i in ("flax", "torch")
                if i in by_impl and "step_s" in by_impl[i]
            ]
            step = ours.get("step_s")
            gflops = step_flops(cell, cfg) / step / 1e9 if step else None
            speedup = min(peers) / step if step and peers else None
            # 1.5x the best peer, unless that would pass 85% of the matmul peak
            required = (
                max(min(peers) / SPEEDUP_TARGET, step_flops(cell, cfg) / (PEAK_TARGET * peak * 1e9))
                if peers
                else None
            )
            target = min(peers) / required if required else None
            fraction = gflops / peak if gflops else None
            rows.append(
                {
                    "config": name,
                    "cell": cell,
                    "step_ms": {i: 1e3 * r["step_s"] for i, r in by_impl.items() if "step_s" in r},
                    "errors": {i: r["error"] for i, r in by_impl.items() if "error" in r},
                    "speedup_vs_best_peer": speedup,
                    "target_speedup": target,
                    "meets_speed_target": (step <= required) if step and required else None,
                    "gflops": gflops,
                    "fraction_of_peak": fraction,
                    "tokens_per_s": cfg.tokens / step if step else None,
                    "compile_s": ours.get("compile_s"),
                    "cached_compile_s": ours.get("cached_compile_s"),
                    "peak_rss_mb": {i: r.get("peak_rss_mb") for i, r in by_impl.items()},
                    "rss_increase_mb": {i: r.get("rss_increase_mb") for i, r in by_impl.items()},
                    "input_projection": projection,
                    "input_projection_ms": projection_ms,
                }
            )
    return rows


def markdown(
    rows: list[dict], seed_rows: list[dict], long_rows: list[dict], peak: float, env: dict
) -> str:
    lines = [
        f"Measured {str(env.get('measured', '?'))[:10]} on {env['platform']} "
        f"({env.get('cpu_model') or env['processor']}, {env['cpu_count']} cores, "
        f"{env.get('threads') or '?'} threads); "
        f"matmul peak {peak:.0f} GFLOP/s (2048² float32, XLA). Median training step (forward, "
        "backward, Adam) in ms; speed-up = best peer ÷ seqbench (target: 1.5×, or 85% of peak where that "
        "is less); GFLOP/s from the analytic matmul count; memory = peak resident memory above the "
        "process's footprint after imports.",
        "",
        "| config | cell | seqbench ms | flax ms | torch ms | speed-up (target) | GFLOP/s | % peak "
        "| tokens/s | compile s cold / cached | memory MB (seqbench / flax / torch) "
        "| input projection (in step / hoisted ms) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ms = r["step_ms"]
        rss = r["rss_increase_mb"]
        speed = (
            f"{r['speedup_vs_best_peer']:.2f}× ({r['target_speedup']:.2f}×)"
            f"{' ✓' if r['meets_speed_target'] else ' ✗'}"
            if r["speedup_vs_best_peer"]
            else "–"
        )
        lines.append(
            f"| {r['config']} | {r['cell']} | {fmt(ms.get('seqbench'))} | {fmt(ms.get('flax'))} "
            f"| {fmt(ms.get('torch'))} | {speed} | {fmt(r['gflops'])} "
            f"| {fmt(100 * r['fraction_of_peak'] if r['fraction_of_peak'] else None)} "
            f"| {fmt(r['tokens_per_s'], 0)} | {fmt(r['compile_s'], 2)} / {fmt(r['cached_compile_s'], 2)} "
            f"| {' / '.join(fmt(rss.get(i), 0) for i in IMPLS)} | {projection_cell(r)} |"
        )
    if seed_rows:
        target = seeds_target(env)
        lines += [
            "",
            f"{seed_rows[0]['seeds']} seeds in one program against {seed_rows[0]['seeds']} "
            "single-seed runs (one seed as auto runs it), all compiled in one process and timed in "
            "alternation: vmapped, and mapped (`lax.map`, one after another), each the faster of "
            "its input projections; auto (`trainer.seeds_over`, `trainer.input_projection`) trains "
            "with the fastest candidate (vmap only on GPU and TPU).",
            "",
            "| config | cell | 1 seed ms | vmapped ms | mapped ms | throughput vmapped / mapped "
            f"| auto's (target ≥ {target:g}×) |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in seed_rows:
            ratio = r["throughput_ratio"]
            mark = "" if ratio is None else (" ✓" if ratio >= target else " ✗")
            lines.append(
                f"| {r['config']} | {r['cell']} | {fmt(r['one_ms'])} | {fmt(r['vmap_ms'])} "
                f"| {fmt(r['map_ms'])} | {fmt(r['vmap_ratio'], 2)}× / {fmt(r['map_ratio'], 2)}× "
                f"| {r['auto'] or '–'} {fmt(ratio, 2)}×{mark} |"
            )
    if long_rows:
        lines += [
            "",
            f"Long sequences: B{LONG.batch} T{LONG.length} I{LONG.input_size} H{LONG.hidden}, "
            f"seqbench training step with and without trainer.remat (target: within {LONG_LIMIT_MB} MB).",
            "",
            "| cell | remat | step s | XLA buffers MB | resident MB above imports | within limit |",
            "|---|---|---|---|---|---|",
        ]
        for r in long_rows:
            memory = max(filter(None, (r["xla_memory_mb"], r["rss_increase_mb"])), default=None)
            ok = "–" if memory is None else ("✓" if memory * 2**20 <= LONG_LIMIT_MB * 1e6 else "✗")
            lines.append(
                f"| {r['cell']} | {'on' if r['remat'] else 'off'} | {fmt(r['step_s'], 2)} "
                f"| {fmt(r['xla_memory_mb'], 0)} | {fmt(r['rss_increase_mb'], 0)} | {ok} |"
            )
    return "\n".join(lines)


def projection_cell(row: dict) -> str:
    """The table's input-projection entry: auto's choice, and both projections' ms."""
    ms = row.get("input_projection_ms") or {}
    if not row.get("input_projection"):
        return "–"
    if set(ms) != set(PROJECTIONS):
        return row["input_projection"]
    return f"{row['input_projection']} ({fmt(ms['in_step'])} / {fmt(ms['hoisted'])})"


def long_sequence_rows(cells: list[str], results: list[dict]) -> list[dict]:
    """The long configuration with remat off and on: step time and memory (each in a fresh process)."""
    rows = []
    for cell in cells:
        for remat in (False, True):
            result = run_worker("seqbench", cell, "long", remat=remat, min_seconds=0.0)
            results.append(result)
            rows.append(
                {
                    "cell": cell,
                    "remat": remat,
                    "step_s": result.get("step_s"),
                    "xla_memory_mb": result.get("xla_memory_mb"),
                    "rss_increase_mb": result.get("rss_increase_mb"),
                    "error": result.get("error"),
                }
            )
            print(f"  long {cell:<10} remat={remat} {result.get('xla_memory_mb')}", file=sys.stderr)
    return rows


def worker_measure(
    impl: str,
    cell: str,
    config: str,
    *,
    scan: str | None = None,
    remat: bool = False,
    min_seconds: float = 2.0,
    steps: int | None = None,
    max_memory_mb: float | None = None,
    timeout: float = 300.0,
    remat_chunk: int | None = None,
) -> dict:
    """One measurement of the recurrences section in a fresh worker process (cold compile), tried
    once: a step that runs past the timeout would again (seeds = 1: no vmapped initialisation)."""
    return run_worker(
        impl,
        cell,
        config,
        scan=scan,
        remat=remat,
        remat_chunk=remat_chunk,
        min_seconds=min_seconds,
        steps=steps,
        max_memory_mb=max_memory_mb,
        budget_seconds=timeout / 4,
        timeout=timeout,
        attempts=1,
    )


def _choose(parser: argparse.ArgumentParser, value: str, known: dict, what: str) -> list[str]:
    """The comma-separated names in `value`, each one of `known` (a usage error otherwise)."""
    names = [name for name in value.split(",") if name]
    for name in names:
        if name not in known:
            parser.error(f"unknown {what} {name!r}; choose from {', '.join(known)}")
    return names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="seqbench-speed", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--recurrences",
        action="store_true",
        help="run the recurrences section alone (linear recurrences and convolutions at long T)",
    )
    parser.add_argument(
        "--configs",
        default=None,
        help=f"comma-separated, from {', '.join(CONFIGS)} (and 'tiny' for a check); with "
        f"--recurrences from {', '.join(RECURRENCE_CONFIGS)} (and {', '.join(RECURRENCE_TINY)})",
    )
    parser.add_argument(
        "--cells",
        default=None,
        help=f"comma-separated architectures, from {', '.join(ARCHITECTURES)} (default: those with a plain-Flax or PyTorch peer; "
        "with --recurrences the linear recurrences, the convolutions and the fused GRU and LSTM)",
    )
    parser.add_argument(
        "--impls", default=None, help=f"from {', '.join(IMPLS)} (--recurrences: seqbench, torch)"
    )
    parser.add_argument(
        "--scans",
        default=None,
        help="--recurrences: comma-separated scans to measure (default: every one of Spec.scans)",
    )
    parser.add_argument("--seeds", type=int, default=8, help="seeds for the multi-seed comparison")
    parser.add_argument("--seeds-config", default="adding", help="configuration for it ('' skips)")
    parser.add_argument(
        "--min-seconds", type=float, default=2.0, help="timed seconds per measurement"
    )
    # the main matrix compares against plain Flax and PyTorch: the architectures that have peers
    # (the linear recurrences and convolutions have their own section, --recurrences)
    with_peers = [
        name
        for name, spec in ARCHITECTURES.items()
        if spec.torch_module is not None or spec.flax_peer is not None
    ]
    largest_carry = max(
        with_peers, key=lambda name: get(name).state_size(get(name).options(), 1, 1)
    )
    parser.add_argument(
        "--long-cells",
        default=None,
        help="architectures for the long-sequence memory check ('' skips; default: the one with "
        f"the largest carry, {largest_carry}; with --recurrences the section's linear recurrences "
        "and convolutions)",
    )
    parser.add_argument(
        "--long-config",
        default=None,
        help=f"--recurrences: the long check's configuration ('' skips; default "
        f"{RECURRENCE_LONG.name}; {', '.join(RECURRENCE_TINY)} for a check)",
    )
    parser.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    args = parser.parse_args(argv)

    if args.recurrences:
        known = {**RECURRENCE_CONFIGS, **RECURRENCE_TINY}
        default_configs, default_cells = RECURRENCE_CONFIGS, recurrences.default_cells()
        allowed_impls: tuple[str, ...] = recurrences.IMPLS
    else:
        known = {**CONFIGS, "tiny": TINY}
        default_configs, default_cells, allowed_impls = CONFIGS, with_peers, IMPLS
        for option in ("scans", "long_config"):
            if getattr(args, option) is not None:
                parser.error(f"--{option.replace('_', '-')} goes with --recurrences")
    chosen = ",".join(default_configs) if args.configs is None else args.configs
    configs = {name: known[name] for name in _choose(parser, chosen, known, "configuration")}
    if args.recurrences and not configs:
        parser.error("--recurrences needs at least one configuration")
    cells = (
        default_cells if args.cells is None else _choose(parser, args.cells, ARCHITECTURES, "cell")
    )
    chosen = ",".join(allowed_impls) if args.impls is None else args.impls
    impls = _choose(parser, chosen, dict.fromkeys(allowed_impls), "implementation")
    if args.long_cells is None:
        long_cells = None if args.recurrences else [largest_carry]
    else:
        long_cells = _choose(parser, args.long_cells, ARCHITECTURES, "--long-cells cell")
    if not args.recurrences and args.seeds_config and args.seeds_config not in known:
        parser.error(f"unknown --seeds-config {args.seeds_config!r}")
    scans = None
    if args.scans is not None:
        every = {scan for cell in cells for scan in ARCHITECTURES[cell].scans}
        scans = set(_choose(parser, args.scans, dict.fromkeys(sorted(every)), "scan"))
    long_config = None
    if args.recurrences:
        long_name = RECURRENCE_LONG.name if args.long_config is None else args.long_config
        long_known = {RECURRENCE_LONG.name: RECURRENCE_LONG, **RECURRENCE_TINY}
        if long_name:
            long_config = long_known[_choose(parser, long_name, long_known, "--long-config")[0]]
    if "torch" in impls and util.find_spec("torch") is None:
        print(
            "seqbench-speed: torch is not installed (pip install torch==2.13.0): skipping it",
            file=sys.stderr,
        )
        impls.remove("torch")
    out = Path(args.out) if args.out else None
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(out.parent, os.W_OK):
            parser.error(f"cannot write to {out.parent}")
    command = " ".join(["seqbench-speed", *(argv if argv is not None else sys.argv[1:])])

    env = environment()
    if args.recurrences:
        section = recurrences.run_section(
            configs,
            cells,
            impls,
            worker_measure,
            scans=scans,
            long_config=long_config,
            long_cells=long_cells,
            min_seconds=args.min_seconds,
        )
        table = recurrences.markdown(
            section["rows"], section["long_sequence"], configs, long_config, env
        )
        report = {"environment": env, **section, "command": command}
    else:
        table, report = _default_matrix(args, configs, cells, impls, long_cells or [], env)
        report["command"] = command
    print(table)
    if out is not None:
        write_json_atomic(out.with_suffix(".json"), report)
        out.with_suffix(".md").write_text(table + "\n")


def _default_matrix(
    args: argparse.Namespace,
    configs: dict[str, BenchConfig],
    cells: list[str],
    impls: list[str],
    long_cells: list[str],
    env: dict,
) -> tuple[str, dict]:
    """The default matrix (every configuration, cell and implementation), the multi-seed
    comparison and the long check: (markdown, report)."""
    peak = matmul_peak_gflops()
    print(f"matmul peak: {peak:.0f} GFLOP/s", file=sys.stderr)
    results = []
    for name in configs:
        for cell in cells:
            for impl in impls:
                reason = missing_peer(impl, cell)
                if reason is not None:
                    print(f"seqbench-speed: {impl}: {reason}: skipping it", file=sys.stderr)
                    continue
                hoistable = impl == "seqbench" and ARCHITECTURES[cell].hoistable
                for projection in PROJECTIONS if hoistable else (None,):
                    result = measure_one(
                        impl, cell, name, 1, args.min_seconds, input_projection=projection
                    )
                    results.append(result)
                    shown = (
                        f"{1e3 * result['step_s']:.1f} ms"
                        if "step_s" in result
                        else f"error: {result.get('error')}"
                    )
                    which = impl if projection is None else f"{impl} {projection}"
                    print(f"  {name:<7} {cell:<10} {which:<8} {shown}", file=sys.stderr, flush=True)
    seed_rows = []
    if args.seeds_config and args.seeds > 1 and "seqbench" in impls:
        name = args.seeds_config
        for cell in cells:
            ours = [
                r
                for r in results
                if (r["impl"], r["cell"], r["config"], r["seeds"]) == ("seqbench", cell, name, 1)
            ]
            if not ours:
                ours = [measure_one("seqbench", cell, name, 1, args.min_seconds)]
                results.extend(ours)
            # every (seeds_over, input_projection) candidate against one seed as auto runs it,
            # timed in alternation in one process (the host drifts between processes)
            _, one_projection, _ = projection_choice(ours)
            projections = PROJECTIONS if ARCHITECTURES[cell].hoistable else (None,)
            candidates = list(itertools.product(WAYS, projections))
            compared = run_worker(
                "seqbench", cell, name, seeds=args.seeds, min_seconds=args.min_seconds,
                timeout=600.0, extra=(
                    "--compare-seeds", ",".join(f"{how}/{p or '-'}" for how, p in candidates),
                    *(("--one-projection", one_projection) if one_projection else ()),
                ),
            )  # fmt: skip
            results.append(compared)
            row = {
                "config": name,
                "cell": cell,
                "seeds": args.seeds,
                "one_ms": compared.get("one_ms"),
                "candidates_ms": compared.get("candidates_ms", {}),
            }
            row = seed_row_choice(row, env)
            seed_rows.append(row)
            print(
                f"  {args.seeds} seeds {cell:<10} vmap {fmt(row['vmap_ratio'], 2)}, "
                f"map {fmt(row['map_ratio'], 2)}, auto {row['auto']}",
                file=sys.stderr,
            )
    long_rows = long_sequence_rows(long_cells, results) if "seqbench" in impls else []
    rows = summarise(results, configs, peak)
    table = markdown(rows, seed_rows, long_rows, peak, env)
    report = {
        "environment": env,
        "matmul_peak_gflops": peak,
        "rows": rows,
        "multi_seed": seed_rows,
        "long_sequence": long_rows,
        "measurements": results,
    }
    return table, report


if __name__ == "__main__":
    main()
