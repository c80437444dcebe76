"""Measure one (implementation, cell, configuration) in a fresh process; print one JSON line.

Run as `python -m seqbench.speed.worker IMPL CELL CONFIG [--seeds S] [--cache DIR] [--compile-only]
[--remat] [--scan SCAN] [--steps N] [--max-memory-mb M] [--budget-seconds S]`. CELL is the name of
an architecture registered on importing seqbench (`seqbench.models.architectures.ARCHITECTURES`);
CONFIG one of `seqbench.speed.configs.ALL_CONFIGS`; SCAN (seqbench only) one of the architecture's
`Spec.scans`; N training steps per call (JAX implementations; default: the implementation's); a
program whose XLA buffers exceed M MiB is compiled but not run (its result says "skipped"); after S
seconds of warm-up and timed calls no further call is timed (at least one is). A fresh process
makes the compile time cold (or warm from the persistent cache in DIR) and the peak resident memory
its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time


def rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(
    impl: str,
    cell: str,
    config: str,
    seeds: int,
    cache_dir: str | None,
    compile_only: bool,
    min_seconds: float,
    max_calls: int,
    remat: bool = False,
    scan: str | None = None,
    steps: int | None = None,
    max_memory_mb: float | None = None,
    budget_seconds: float | None = None,
    remat_chunk: int | None = None,
    seeds_over: str | None = None,
    input_projection: str | None = None,
) -> dict:
    from seqbench.speed.configs import ALL_CONFIGS
    from seqbench.speed.implementations import IMPLEMENTATIONS

    cfg = ALL_CONFIGS[config]
    if impl == "torch":
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
    else:
        from seqbench.train.driver import enable_compilation_cache

        enable_compilation_cache(cache_dir)
    baseline_rss = rss_mb()
    options: dict = {"remat": True} if remat else {}
    if remat_chunk is not None:
        options["remat_chunk"] = remat_chunk
    if scan is not None:
        options["scan"] = scan
    if steps is not None and impl != "torch":
        options["steps"] = steps
    if seeds_over is not None:
        options["seeds_over"] = seeds_over
    if input_projection is not None:
        options["input_projection"] = input_projection
    runner = IMPLEMENTATIONS[impl](cell, cfg, seeds=seeds, **options)
    compile_s = runner.compile()
    result = {
        "impl": impl,
        "cell": cell,
        "config": config,
        "seeds": seeds,
        "remat": remat,
        "remat_chunk": remat_chunk,
        "scan": scan,
        **({"seeds_over": seeds_over} if seeds_over is not None else {}),
        **({"input_projection": input_projection} if input_projection is not None else {}),
        "compile_s": compile_s,
        "xla_memory_mb": runner.memory_mb(),
    }
    if compile_only:
        return result
    planned = result["xla_memory_mb"]
    if max_memory_mb is not None and planned is not None and planned > max_memory_mb:
        result["skipped"] = f"XLA buffers {planned:.0f} MiB > {max_memory_mb:.0f} MiB"
        return result
    begin = time.perf_counter()
    runner.run()  # warm-up
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_calls and (len(times) < 3 or time.perf_counter() - start < min_seconds):
        if times and budget_seconds is not None and time.perf_counter() - begin >= budget_seconds:
            break
        t0 = time.perf_counter()
        runner.run()
        times.append((time.perf_counter() - t0) / runner.steps_per_call)
    result.update(
        step_s=statistics.median(times),
        step_times_s=times,
        peak_rss_mb=rss_mb(),
        rss_increase_mb=rss_mb() - baseline_rss,
        device_peak_mb=runner.device_peak_mb(),
    )
    return result


def compare_seeds(
    cell: str,
    config: str,
    seeds: int,
    candidates: list[tuple[str, str | None]],
    one_projection: str | None,
    cache_dir: str | None,
    min_seconds: float,
    max_rounds: int = 30,
) -> dict:
    """`seeds` seeds in one program under each (seeds_over, input_projection) candidate against one
    seed (with `one_projection`), all compiled in this process and timed in alternation, one call
    of each per round, so that a drifting host slows every program alike. Returns the median ms
    per training step of one seed (`one_ms`) and of each candidate (`candidates_ms`, keyed by
    `seqbench.train.strategy.label`), and every call's time."""
    from seqbench.speed.configs import ALL_CONFIGS
    from seqbench.speed.implementations import seqbench_runner
    from seqbench.train.driver import enable_compilation_cache
    from seqbench.train.strategy import label

    enable_compilation_cache(cache_dir)
    cfg = ALL_CONFIGS[config]

    def runner(count: int, how: str, projection: str | None):
        return seqbench_runner(
            cell, cfg, seeds=count, seeds_over=how, input_projection=projection or "in_step"
        )

    runners = {"one": runner(1, "vmap", one_projection)}
    runners.update({label(how, p): runner(seeds, how, p) for how, p in candidates})
    for run in runners.values():
        run.compile()
        run.run()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runners}
    start = time.perf_counter()
    while len(times["one"]) < max_rounds and (
        len(times["one"]) < 3 or time.perf_counter() - start < min_seconds * len(runners)
    ):
        for name, run in runners.items():
            t0 = time.perf_counter()
            run.run()
            times[name].append((time.perf_counter() - t0) / run.steps_per_call)
    ms = {name: 1e3 * statistics.median(values) for name, values in times.items()}
    return {
        "impl": "seqbench",
        "cell": cell,
        "config": config,
        "seeds": seeds,
        "mode": "seed comparison",
        "one_projection": one_projection,
        "one_ms": ms.pop("one"),
        "candidates_ms": ms,
        "step_times_s": times,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="seqbench.speed.worker")
    parser.add_argument("impl")
    parser.add_argument("cell", help="a registered architecture's name")
    parser.add_argument("config")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--cache", default=None)
    parser.add_argument("--compile-only", action="store_true")
    parser.add_argument("--min-seconds", type=float, default=2.0)
    parser.add_argument("--max-calls", type=int, default=10)
    parser.add_argument("--remat", action="store_true", help="seqbench only: trainer.remat")
    parser.add_argument(
        "--remat-chunk", type=int, default=None, help="seqbench only: trainer.remat_chunk"
    )
    parser.add_argument("--scan", default=None, help="seqbench only: one of the Spec.scans")
    parser.add_argument("--steps", type=int, default=None, help="JAX: training steps per call")
    parser.add_argument(
        "--max-memory-mb", type=float, default=None, help="compile only above these XLA buffers"
    )
    parser.add_argument(
        "--budget-seconds", type=float, default=None, help="time no call after these seconds"
    )
    parser.add_argument(
        "--seeds-over",
        choices=("vmap", "map"),
        default=None,
        help="seqbench only: seeds vmapped or mapped",
    )
    parser.add_argument(
        "--input-projection",
        choices=("in_step", "hoisted"),
        default=None,
        help="seqbench only: trainer.input_projection of simple_rnn / lstm / gru",
    )
    parser.add_argument(
        "--compare-seeds",
        default=None,
        help="seqbench only: 'how/projection,...' candidates to time against one seed in this "
        "process, in alternation (projection '-' for none); --seeds of them",
    )
    parser.add_argument(
        "--one-projection", default=None, help="--compare-seeds: the one seed's input projection"
    )
    args = parser.parse_args(argv)
    if args.compare_seeds is not None:
        candidates = [
            (how, None if projection == "-" else projection)
            for how, projection in (item.split("/") for item in args.compare_seeds.split(","))
        ]
        result = compare_seeds(
            args.cell, args.config, args.seeds, candidates, args.one_projection, args.cache,
            args.min_seconds,
        )  # fmt: skip
        print(json.dumps(result), file=sys.stdout, flush=True)
        os._exit(0)
    result = measure(
        args.impl,
        args.cell,
        args.config,
        args.seeds,
        args.cache,
        args.compile_only,
        args.min_seconds,
        args.max_calls,
        args.remat,
        args.scan,
        args.steps,
        args.max_memory_mb,
        args.budget_seconds,
        args.remat_chunk,
        args.seeds_over,
        args.input_projection,
    )
    print(json.dumps(result), file=sys.stdout, flush=True)
    # The result is out: skip interpreter shutdown, where XLA's CPU runtime has been seen to hang.
    os._exit(0)


if __name__ == "__main__":
    main()
