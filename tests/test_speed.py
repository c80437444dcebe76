"""seqbench-speed: the FLOP count, the step of each implementation, and the harness end to end."""

import json

import pytest

from seqbench.speed.configs import CONFIGS, TINY, BenchConfig, step_flops
from seqbench.speed.implementations import flax_runner, seqbench_runner
from seqbench.speed.run import main


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
    (seeds,) = report["multi_seed"]
    assert seeds["throughput_ratio"] > 0
    table = out.with_suffix(".md").read_text()
    assert "| tiny | gru |" in table and table.strip() in capsys.readouterr().out


@pytest.mark.parametrize(
    "args",
    [["--configs", "mnist"], ["--cells", "transformer"], ["--impls", "jax"], ["--long-cells", "rnn"]],
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
