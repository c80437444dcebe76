"""seqbench-speed: the FLOP count, the step of each implementation, and the harness end to end."""

import inspect
import json

import pytest

from seqbench.models.architectures import ARCHITECTURES, get
from seqbench.speed import recurrences
from seqbench.speed.configs import (
    CONFIGS,
    RECURRENCE_CONFIGS,
    RECURRENCE_LONG,
    RECURRENCE_TINY,
    TINY,
    BenchConfig,
    step_flops,
)
from seqbench.speed.implementations import flax_runner, missing_peer, seqbench_runner
from seqbench.speed.run import (
    main,
    projection_cell,
    projection_choice,
    seed_row_choice,
    seeds_target,
    worker_measure,
)
from seqbench.speed.worker import compare_seeds, measure


def test_step_flops_is_three_forward_passes_of_the_matmuls():
    cfg = BenchConfig("x", batch=2, length=3, input_size=4, hidden=5)
    forward = 2 * 2 * 3 * (4 + 5) * 4 * 5 + 2 * 2 * 1 * 5 * 10
    assert step_flops("lstm", cfg) == 3 * forward
    every = BenchConfig("y", 2, 3, 4, 5, "every_step")
    assert step_flops("simple_rnn", every) == 3 * (2 * 2 * 3 * 9 * 5 + 2 * 2 * 3 * 5 * 10)


def test_the_published_configurations():
    shapes = {n: (c.batch, c.length, c.input_size, c.hidden) for n, c in CONFIGS.items()}
    assert shapes == {
        "smnist": (64, 784, 1, 128),
        "adding": (32, 600, 2, 130),
        "copy": (32, 1020, 10, 50),
        "large": (32, 100, 512, 512),
    }


@pytest.mark.parametrize("make", [seqbench_runner, flax_runner], ids=["seqbench", "flax"])
@pytest.mark.parametrize("seeds", [1, 2])
def test_jax_runners_compile_and_step(make, seeds):
    runner = make("gru", TINY, seeds=seeds)
    assert runner.compile() > 0
    runner.run()
    runner.run()


def test_the_seqbench_runner_maps_seeds_as_trainer_seeds_over_says():
    runner = seqbench_runner("gru", TINY, seeds=2, seeds_over="map", input_projection="hoisted")
    assert runner.compile() > 0
    runner.run()


def test_seeds_are_compared_in_one_process_in_alternation():
    candidates = [("vmap", "in_step"), ("map", "hoisted")]
    result = compare_seeds("gru", "tiny", 2, candidates, "hoisted", None, min_seconds=0.0)
    assert result["one_ms"] > 0 and result["one_projection"] == "hoisted"
    assert set(result["candidates_ms"]) == {"vmap, in_step", "map, hoisted"}
    rounds = {len(times) for times in result["step_times_s"].values()}
    assert rounds == {3}  # every program timed once per round


def test_the_table_takes_the_input_projection_auto_would():
    def measured(projection, ms):
        return {"impl": "seqbench", "input_projection": projection, "step_s": ms / 1e3}

    for in_step, hoisted, expected in ((10.0, 9.0, "hoisted"), (10.0, 9.8, "in_step")):
        both = [measured("in_step", in_step), measured("hoisted", hoisted)]
        chosen, projection, ms = projection_choice(both)
        assert projection == expected and chosen["input_projection"] == expected
        assert ms == {"in_step": in_step, "hoisted": hoisted}
        row = {"input_projection": projection, "input_projection_ms": ms}
        assert projection_cell(row) == f"{expected} ({in_step:.1f} / {hoisted:.1f})"
    failed = [
        {"impl": "seqbench", "input_projection": "in_step", "error": "x"},
        measured("hoisted", 9),
    ]
    assert projection_choice(failed)[1] == "hoisted"
    assert projection_choice([{"impl": "seqbench", "step_s": 0.01}])[1] is None
    assert projection_cell({"input_projection": None}) == "–"


def test_the_seed_table_takes_what_auto_would():
    row = {"config": "adding", "cell": "gru", "seeds": 8, "one_ms": 10.0}
    cpu, gpu = {"platform": "cpu"}, {"platform": "gpu"}

    def chosen(env, **ms):
        candidates = {name.replace("_", ", ", 1): value for name, value in ms.items()}
        return seed_row_choice({**row, "candidates_ms": candidates}, env)

    both = dict(vmap_in_step=90.0, vmap_hoisted=85.0, map_in_step=80.0, map_hoisted=84.0)
    assert chosen(cpu, **both)["auto"] == "map, in_step"
    assert chosen(cpu, **both)["throughput_ratio"] == 1.0
    assert (chosen(cpu, **both)["vmap_ms"], chosen(cpu, **both)["map_ms"]) == (85.0, 80.0)
    assert chosen(gpu, **both)["auto"] == "vmap, hoisted"  # auto never maps there
    close = {**both, "vmap_hoisted": 90.0, "map_in_step": 88.0, "map_hoisted": 89.0}
    assert chosen(cpu, **close)["auto"] == "vmap, in_step"  # within strategy.MARGIN: the default
    assert chosen(cpu, vmap=90.0, map=80.0)["auto"] == "map"  # no projection to choose
    failed = chosen(cpu, vmap=None, map=None)
    assert failed["auto"] is None and failed["vmap_ratio"] is None
    assert (seeds_target(cpu), seeds_target(gpu)) == (1.0, 4.0)


@pytest.mark.slow  # runs real workers (about 10 s); `make test-all`
def test_harness_writes_a_table_and_json(tmp_path, capsys):
    out = tmp_path / "bench" / "cpu"
    main(
        ["--configs", "tiny", "--cells", "gru", "--impls", "seqbench", "--seeds", "2",
         "--seeds-config", "tiny", "--min-seconds", "0.05", "--long-cells", "", "--out", str(out)]
    )  # fmt: skip
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["matmul_peak_gflops"] > 0
    (row,) = report["rows"]
    assert row["config"] == "tiny" and row["cell"] == "gru" and row["step_ms"]["seqbench"] > 0
    assert row["compile_s"] > 0 and row["cached_compile_s"] is not None
    assert set(row["input_projection_ms"]) == {"in_step", "hoisted"}
    assert row["step_ms"]["seqbench"] == row["input_projection_ms"][row["input_projection"]]
    (seeds,) = report["multi_seed"]
    assert seeds["vmap_ratio"] > 0 and seeds["map_ratio"] > 0
    labels = {"vmap, in_step", "vmap, hoisted", "map, in_step", "map, hoisted"}
    assert set(seeds["candidates_ms"]) == labels
    assert seeds["throughput_ratio"] == 2 * seeds["one_ms"] / seeds["candidates_ms"][seeds["auto"]]
    table = out.with_suffix(".md").read_text()
    assert "| tiny | gru |" in table and table.strip() in capsys.readouterr().out


@pytest.mark.parametrize(
    "args",
    [
        ["--configs", "mnist"],
        ["--cells", "nope"],
        ["--impls", "jax"],
        ["--long-cells", "rnn"],
        ["--scans", "log"],  # --scans goes with --recurrences
        ["--recurrences", "--configs", "smnist"],
        ["--recurrences", "--impls", "flax"],
        ["--recurrences", "--cells", "lru", "--scans", "log"],
        ["--recurrences", "--long-config", "long"],
    ],
)
def test_unknown_choices_are_refused(args):
    with pytest.raises(SystemExit) as error:
        main(args)
    assert error.value.code == 2


def test_a_remat_runner_reports_its_compiled_memory():
    runner = seqbench_runner("lstm", TINY, remat=True)
    runner.compile()
    assert runner.memory_mb() > 0
    runner.run()


def test_every_architecture_has_a_flop_count():
    for name in ARCHITECTURES:
        assert step_flops(name, TINY) > 0, name


def test_the_flop_count_uses_the_options():
    cfg = BenchConfig("x", batch=2, length=3, input_size=8, hidden=8)
    spec = get("rglru")
    assert step_flops("rglru", cfg) == step_flops("rglru", cfg, spec.options())
    # block-diagonal gates: 2 H (H / n) multiply-adds per step
    fewer = step_flops("rglru", cfg, spec.options(num_heads=2))
    assert step_flops("rglru", cfg) - fewer == 3 * 2 * 2 * 3 * 2 * 8 * (8 - 4)


def test_the_recurrence_configurations():
    shapes = {n: (c.batch, c.length, c.input_size, c.hidden) for n, c in RECURRENCE_CONFIGS.items()}
    assert shapes == {"rec1024": (32, 1024, 128, 128), "rec4096": (32, 4096, 128, 128)}
    assert (RECURRENCE_LONG.length, RECURRENCE_LONG.hidden) == (16_384, 128)
    assert all(c.readout == "last" for c in RECURRENCE_CONFIGS.values())
    assert recurrences.baseline_cells() == ["gru", "lstm"]
    assert {"mingru", "minlstm", "lru", "rglru", "tcn"} <= set(recurrences.section_cells())
    assert recurrences.scans_of("tcn") == [None]
    assert recurrences.scans_of("mingru", {"log", "chunked"}) == ["log", "chunked"]


def in_process(impl, cell, config, *, scan=None, remat=False, timeout=None, **options):
    """The worker's measurement without the fresh process (fast; the harness test runs workers)."""
    options.pop("min_seconds")
    return measure(impl, cell, config, 1, None, False, 0.0, 3, remat, scan, **options)


@pytest.mark.skipif(missing_peer("torch", "mingru") is not None, reason="no minGRU-pytorch")
def test_recurrence_rows_end_to_end_with_two_scans_and_the_torch_peer():
    configs = {"rectiny": RECURRENCE_TINY["rectiny"]}
    scans = {"sequential", "associative"}  # the two quickest to compile
    section = recurrences.run_section(
        configs, ["mingru"], ["seqbench", "torch"], in_process, scans=scans
    )
    rows = {r["scan"]: r for r in section["rows"]}
    assert set(rows) == scans
    for row in rows.values():
        assert row["step_ms"]["seqbench"] > 0 and row["step_ms"]["torch"] > 0, row
        assert row["speedup_vs_reference"] > 0 and row["gflops"] > 0
        assert row["memory_mb"]["seqbench"] is not None and row["speedup_vs_gru"] is None
    assert [r["best_scan"] for r in rows.values()].count(True) == 1
    best = next(r for r in rows.values() if r["best_scan"])
    assert best["meets_reference_target"] == (best["speedup_vs_reference"] >= 1.0)
    assert best["meets_gru_target"] is None  # no GRU measured
    measured = [(m["impl"], m["scan"]) for m in section["measurements"]]
    assert sorted(measured, key=str) == sorted(
        [("seqbench", "sequential"), ("seqbench", "associative"), ("torch", None)], key=str
    )
    assert section["long_sequence"] == []


def fake_results() -> list[dict]:
    """seqbench and torch step times: gru 1.0 s at T=32 (0.25 at T=16), mingru's log scan 4x
    faster than the GRU but slower than its reference, its sequential scan slower."""
    results = []
    for config, scale in (("rectiny", 0.25), ("rectiny2", 1.0)):
        for impl, cell, scan, step in [
            ("seqbench", "gru", None, 1.0),
            ("torch", "gru", None, 2.0),
            ("seqbench", "mingru", "log", 0.25),
            ("seqbench", "mingru", "sequential", 0.5),
            ("torch", "mingru", None, 0.2),
            ("seqbench", "tcn", None, 0.1),
        ]:
            results.append(
                {"impl": impl, "cell": cell, "config": config, "scan": scan, "seeds": 1,
                 "remat": False, "step_s": scale * step, "rss_increase_mb": 10.0}
            )  # fmt: skip
    return results


def test_the_table_renders_the_targets():
    configs = {n: RECURRENCE_TINY[n] for n in ("rectiny", "rectiny2")}
    cells = ["gru", "mingru", "tcn"]
    rows = recurrences.summarise(fake_results(), configs, cells)
    by = {(r["config"], r["cell"], r["scan"]): r for r in rows}
    best = by["rectiny2", "mingru", "log"]
    assert best["best_scan"] and best["speedup_vs_gru"] == pytest.approx(4.0)
    assert best["meets_gru_target"] is True and best["meets_reference_target"] is False
    # the GRU target is checked at the longest configuration only, on the best scan only
    assert by["rectiny", "mingru", "log"]["meets_gru_target"] is None
    assert by["rectiny", "mingru", "log"]["meets_reference_target"] is False
    assert by["rectiny2", "mingru", "sequential"]["meets_gru_target"] is None
    assert by["rectiny2", "tcn", None]["meets_gru_target"] is None  # not a linear recurrence
    assert by["rectiny2", "tcn", None]["speedup_vs_gru"] == pytest.approx(10.0)

    asked = []

    def long_measure(
        impl, cell, config, *, scan, remat, min_seconds, steps, timeout, max_memory_mb, **chunk
    ):
        options = dict(scan=scan, remat=remat, min_seconds=min_seconds, steps=steps)
        asked.append(dict(options, timeout=timeout, max_memory_mb=max_memory_mb, **chunk))
        assert (impl, config, steps) == ("seqbench", "rectinylong", 1) and min_seconds == 0.0
        assert timeout == recurrences.LONG_TIMEOUT_S
        assert chunk == ({"remat_chunk": recurrences.REMAT_CHUNK} if chunk else {})
        if cell == "tcn" and not remat:
            return {"xla_memory_mb": 9000.0, "skipped": "XLA buffers 9000 MiB > 8000 MiB"}
        if chunk:
            return {"step_s": 4.0, "xla_memory_mb": 400.0, "rss_increase_mb": 600.0}
        return {"step_s": 3.0, "xla_memory_mb": 500.0, "rss_increase_mb": 2500.0 if remat else 900}

    best = recurrences.best_scans(rows, configs)
    long_cfg = RECURRENCE_TINY["rectinylong"]
    long = recurrences.long_rows(["mingru", "tcn"], long_cfg, best, long_measure, fake_results())
    chunk = recurrences.REMAT_CHUNK
    assert [(r["cell"], r["scan"], r["remat"], r["remat_chunk"]) for r in long] == [
        ("mingru", "log", False, None), ("mingru", "log", True, None),
        ("mingru", "log", True, chunk), ("tcn", None, False, None), ("tcn", None, True, None),
        ("tcn", None, True, chunk),
    ]  # fmt: skip
    assert [r["within_limit"] for r in long] == [True, False, True, False, False, True]
    for options in asked:  # the real worker takes everything the long check asks of it
        inspect.signature(worker_measure).bind("seqbench", "mingru", "rectinylong", **options)
    env = {"platform": "cpu", "processor": "x86_64", "cpu_count": 2}
    table = recurrences.markdown(rows, long, configs, RECURRENCE_TINY["rectinylong"], env)
    assert (
        "| rectiny2 | mingru | log * | 250.0 | 200.0 | 4.00× | 0.80× | 3× GRU ✓, ref ✗ |" in table
    )
    assert "| rectiny | mingru | log * | 62.5 | 50.0 | 4.00× | 0.80× | ref ✗ |" in table
    assert "| rectiny2 | mingru | sequential | 500.0 | 200.0 | 2.00× | 0.40× | – |" in table
    assert "| rectiny2 | tcn | – | 100.0 | – | 10.00× | – | – |" in table
    assert "| mingru | log | off | 3.00 | 500 | 900 | ✓ |" in table
    assert "| tcn | – | off | not run (XLA buffers 9000 MiB > 8000 MiB) | 9000 | – | ✗ |" in table
    assert f"| mingru | log | chunks of {chunk} | 4.00 | 400 | 600 | ✓ |" in table


@pytest.mark.slow  # runs real workers (about a minute); `make test-all`
def test_the_recurrences_section_writes_its_tables(tmp_path, capsys):
    out = tmp_path / "bench" / "recurrences"
    main(
        ["--recurrences", "--configs", "rectiny,rectiny2", "--cells", "gru,mingru",
         "--scans", "log,sequential", "--min-seconds", "0.05", "--long-config", "rectinylong",
         "--out", str(out)]
    )  # fmt: skip
    report = json.loads(out.with_suffix(".json").read_text())
    assert len(report["rows"]) == 6 and all("seqbench" in r["step_ms"] for r in report["rows"])
    assert [r["remat"] for r in report["long_sequence"]] == [False, True, True]
    table = out.with_suffix(".md").read_text()
    assert "3× GRU" in table and "within 2000 MB" in table
    assert table.strip() in capsys.readouterr().out


def test_a_measurement_expected_to_run_past_the_time_limit_is_not_run():
    configs = {n: RECURRENCE_TINY[n] for n in ("rectiny2", "rectiny")}  # measured shortest first
    calls = []

    def slow_tcn(impl, cell, config, *, scan, remat, min_seconds, steps, timeout, **options):
        calls.append((cell, config, remat))
        # 100 s a step at T=16: a warm-up and a timed call at T=32 would take ~400 s
        return {"impl": impl, "cell": cell, "config": config, "seeds": 1, "remat": remat,
                "step_s": 100.0 if cell == "tcn" else 0.01, "rss_increase_mb": 1.0}  # fmt: skip

    section = recurrences.run_section(
        configs, ["mingru", "tcn"], ["seqbench"], slow_tcn, scans={"sequential"},
        long_config=RECURRENCE_TINY["rectinylong"],
    )  # fmt: skip
    assert ("tcn", "rectiny", False) in calls and ("tcn", "rectiny2", False) not in calls
    assert ("mingru", "rectinylong", True) in calls and ("tcn", "rectinylong", False) not in calls
    (skipped,) = [
        m for m in section["measurements"] if m["config"] == "rectiny2" and "skipped" in m
    ]
    assert skipped["cell"] == "tcn" and "from rectiny (100000 ms)" in skipped["skipped"]
    long = {(r["cell"], r["remat"]): r for r in section["long_sequence"]}
    assert long["tcn", True]["skipped"] == "none at rectiny2" and long["mingru", True]["step_s"]
    env = {"platform": "cpu", "processor": "x86_64", "cpu_count": 2}
    table = recurrences.markdown(
        section["rows"], section["long_sequence"], configs, RECURRENCE_TINY["rectinylong"], env
    )
    assert "| rectiny2 | tcn | – | not run | – |" in table
    assert "| tcn | – | on | not run (none at rectiny2) |" in table
