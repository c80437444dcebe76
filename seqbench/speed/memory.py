"""How far XLA's memory estimate is from what a program really takes on this host.

`seqbench.train.memory.check_compiled` refuses a program whose estimate (XLA's
`memory_analysis`: arguments, outputs, temporaries) exceeds the device's memory. On a CPU the
runtime's real peak in a forward pass of the linear recurrences' parallel scans is larger than
the temporaries XLA's buffer assignment reports, so the check counts an evaluation's temporaries
`seqbench.train.memory.CPU_TEMPORARY_FACTOR` times (a gradient program's once). This measures
that ratio, one fresh process per program: the held-out forward pass (or its gradient) of a
5,000-parameter model over `n` sequences of length `T` for `seeds` seeds (vmapped or mapped, as
the trainer can run them), its estimate, and the growth of the process's peak resident memory
(`VmHWM`, reset just before the call) while it runs.

    python -m seqbench.speed.memory --out results/bench/cpu_memory

prints the table, the largest ratio of each pass and whether the check covers it, and writes
OUT.json (every measurement, the host) and OUT.md. Linux only (it reads /proc/self).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from seqbench.provenance import git_info
from seqbench.records import write_json_atomic, write_text_atomic
from seqbench.speed.run import environment
from seqbench.train.memory import CPU_TEMPORARY_FACTOR

#: (architecture, T, sequences, seeds, seeds over, pass): the parallel scans of each linear
#: recurrence, the TCN's convolutions and the LSTM's sequential scan, vmapped and mapped seeds; the
#: forward pass (evaluation) or the gradient of its sum (a training step's backward pass)
CASES = (
    ("lstm", 400, 1000, 3, "vmap", "forward"),
    ("mingru", 400, 1000, 3, "vmap", "forward"),
    ("minlstm", 400, 1000, 3, "vmap", "forward"),
    ("minlstm", 400, 1000, 3, "map", "forward"),
    ("minlstm", 800, 1000, 3, "vmap", "forward"),
    ("minlstm", 1600, 500, 3, "map", "forward"),
    ("lru", 400, 1000, 3, "vmap", "forward"),
    ("rglru", 400, 1000, 3, "vmap", "forward"),
    ("tcn", 400, 1000, 3, "vmap", "forward"),
    ("lstm", 400, 256, 3, "vmap", "gradient"),
    ("minlstm", 1600, 256, 3, "vmap", "gradient"),
    ("lru", 800, 256, 3, "vmap", "gradient"),
)

MEASURE = """
import json, sys
import jax, jax.numpy as jnp
from seqbench.config import ModelConfig
from seqbench.models.build import build_model
from seqbench.tasks.base import TaskSpec

arch, length, n, seeds, over, kind = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
model = build_model(ModelConfig(architecture=arch, param_budget=5000), TaskSpec("real", 2, 1, length, "last")).model
x = jnp.zeros((n, length, 2))
params = jax.vmap(lambda k: model.init(k, x[:1])["params"])(jax.random.split(jax.random.key(0), seeds))
one = lambda p: model.apply({"params": p}, x)
if kind == "gradient":
    one = jax.grad(lambda p: model.apply({"params": p}, x).sum())
forward = (lambda ps: jax.vmap(one)(ps)) if over == "vmap" else (lambda ps: jax.lax.map(one, ps))
compiled = jax.jit(forward).lower(params).compile()
stats = compiled.memory_analysis()

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

before = status("VmRSS")
open("/proc/self/clear_refs", "w").write("5")  # the peak (VmHWM) starts again from now
jax.block_until_ready(compiled(params))
print(json.dumps({
    "temporaries": stats.temp_size_in_bytes + stats.generated_code_size_in_bytes,
    "in_out": stats.argument_size_in_bytes + stats.output_size_in_bytes - stats.alias_size_in_bytes,
    "rss_before": before, "peak_growth": status("VmHWM") - before,
}))
"""


def measure(case: tuple) -> dict:
    """One case in a fresh process: XLA's estimate and the measured peak growth, in bytes."""
    arch, length, n, seeds, over, kind = case
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, arch, str(length), str(n), str(seeds), over, kind],
        capture_output=True,
        text=True,
        check=True,
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    estimate = found["in_out"] + found["temporaries"]
    return {
        "architecture": arch,
        "length": length,
        "sequences": n,
        "seeds": seeds,
        "seeds_over": over,
        "pass": kind,
        **found,
        "ratio": found["peak_growth"] / estimate,
    }


def row_line(row: dict) -> str:
    """One measurement as a row of the Markdown table (sizes in GB)."""
    name = (
        f"{row['architecture']} T={row['length']}, {row['sequences']} sequences, "
        f"{row['seeds']} seeds {row['seeds_over']}, {row['pass']}"
    )
    estimate = (row["in_out"] + row["temporaries"]) / 1e9
    return f"| {name} | {estimate:.2f} | {row['peak_growth'] / 1e9:.2f} | {row['ratio']:.2f} |"


def table(rows: list[dict]) -> str:
    """The Markdown table of `rows` and, per pass, the verdict on the check's factor."""
    lines = [
        "| program | XLA estimate (GB) | measured peak growth (GB) | ratio |",
        "|---|---|---|---|",
        *map(row_line, rows),
        "",
    ]
    for kind, counted in (("forward", CPU_TEMPORARY_FACTOR), ("gradient", 1.0)):
        ratios = [row["ratio"] for row in rows if row["pass"] == kind]
        if ratios:
            worst = max(ratios)
            verdict = (
                "which covers it"
                if worst <= counted
                else f"{100 * (worst / counted - 1):.0f}% short of it"
            )
            lines.append(
                f"{kind.capitalize()} passes: largest ratio {worst:.2f}; on a CPU the check counts "
                f"their temporaries x {counted:g}, {verdict}."
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m seqbench.speed.memory", description=__doc__)
    parser.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    args = parser.parse_args(argv)
    if not Path("/proc/self/clear_refs").exists():
        sys.exit("python -m seqbench.speed.memory: error: needs Linux's /proc/self/clear_refs")
    rows = []
    for case in CASES:
        rows.append(measure(case))
        print(row_line(rows[-1]), file=sys.stderr, flush=True)
    text = table(rows)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        host = {**environment(), "git": git_info()}
        command = f"python -m seqbench.speed.memory --out {args.out}"
        write_json_atomic(
            out.with_suffix(".json"), {"command": command, "host": host, "rows": rows}
        )
        header = (
            "# XLA's memory estimate against the measured peak on this CPU\n\n"
            f"`{command}` ({host['cpu_model']}, {host['cpu_count']} cores, "
            f"jax {host['versions'].get('jax')})\n\n"
        )
        write_text_atomic(out.with_suffix(".md"), header + text + "\n")


if __name__ == "__main__":
    main()
