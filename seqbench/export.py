"""Write one seed's kept parameters to a file: `seqbench export`.

    seqbench export RUN_DIR --seed K --format npz|torch [--params best|final] --out PATH

npz: every parameter of the model under its flattened path (`layer_0_fwd/w_ih`, `readout/kernel`,
...; `numpy.load(PATH)[name]`), one seed's arrays without the seed axis. torch: the PyTorch
`state_dict` of the recurrent layers (`torch.nn.RNN` / `LSTM` / `GRU` names and layouts, see
`seqbench.models.torch_compat`), saved with `torch.save`, for the architectures that have a PyTorch
counterpart; the encoder and readout have none there (the npz holds them). torch is optional (the
`bench` extra). The parameters are read as `seqbench eval` reads them (`seqbench.evaluate`); bad
input is one line, before anything is read or written.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from seqbench.evaluate import PARAMS, EvalError, RunParams, flat_params, load_params, load_run

FORMATS = ("npz", "torch")


def seed_params(run: RunParams, seed: int) -> Any:
    """One seed's parameters (host NumPy arrays, the seed axis dropped); EvalError for a seed the
    run does not have, or one without kept parameters."""
    import jax

    seeds = list(run.record.seeds)
    if seed not in seeds:
        raise EvalError(f"--seed: the run has no seed {seed} (its seeds: {seeds})")
    index = seeds.index(seed)
    if run.steps[index] < 0:
        why = "had no finite validation value" if run.which == "best" else "diverged"
        raise EvalError(f"seed {seed} {why}: it has no {run.which} parameters")
    return jax.tree_util.tree_map(lambda leaf: np.asarray(leaf[index]), run.params)


def write_npz(params: Any, out: Path) -> None:
    """`params` (one seed's nested dicts) as an .npz of flattened paths."""
    with out.open("wb") as file:
        np.savez(file, **{name: np.asarray(leaf) for name, leaf in flat_params(params).items()})


def torch_state_dict(params: Any, architecture: str) -> dict[str, Any]:
    """`params` (one seed's) as the state_dict of `architecture`'s torch.nn module: {name: tensor},
    e.g. weight_ih_l0 (G*H, F); EvalError when its layers do not map onto that module."""
    import torch

    from seqbench.models.torch_compat import to_torch_state_dict

    try:
        state = to_torch_state_dict(params, architecture=architecture)
    except ValueError as error:
        raise EvalError(f"--format torch: {error}") from None
    return {name: torch.from_numpy(np.ascontiguousarray(v)) for name, v in state.items()}


def check_torch(architecture: str) -> None:
    """EvalError (one line) when torch is missing or `architecture` has no PyTorch counterpart."""
    from seqbench.models.torch_compat import check_architecture

    try:
        check_architecture(architecture)
    except (ValueError, KeyError) as error:
        raise EvalError(f"--format torch: {error}") from None
    try:
        import torch  # noqa: F401
    except ImportError:
        raise EvalError(
            "--format torch needs PyTorch, which is not installed (pip install 'seqbench[bench]')"
        ) from None


def export_params(
    run_dir: str | Path, seed: int, fmt: str, out: str | Path, which: str = "best"
) -> tuple[Path, RunParams]:
    """Write seed `seed`'s kept parameters (`which`: best or final) of the run in `run_dir` to
    `out` in format `fmt`; (the file written, the run's parameters). EvalError (one line) for bad
    input, before anything is written."""
    if fmt not in FORMATS:
        raise EvalError(f"--format: {fmt!r}; choose from {', '.join(FORMATS)}")
    record = load_run(run_dir)
    architecture = record.model.architecture
    if fmt == "torch":
        check_torch(architecture)
    if seed not in record.seeds:
        raise EvalError(f"--seed: the run has no seed {seed} (its seeds: {list(record.seeds)})")
    template = None
    if which == "final":  # the whole state's layout, as the trainer saved it
        import jax
        import jax.numpy as jnp

        from seqbench.evaluate import check_checkpoints, run_config
        from seqbench.job import Job

        config = run_config(record)
        check_checkpoints(record)
        try:
            program = Job.build(config).program()
        except ValueError as error:
            raise EvalError(str(error)) from None
        template = jax.jit(program.batched_init)(jnp.asarray(record.seeds, dtype=jnp.int32))
    run = load_params(record, which, template)
    params = seed_params(run, seed)
    state_dict = torch_state_dict(params, architecture) if fmt == "torch" else None
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if state_dict is None:
            write_npz(params, out)
        else:
            import torch

            torch.save(state_dict, out)
    except OSError as error:
        raise EvalError(f"cannot write {out}: {error.strerror or error}") from None
    return out, run


def cmd_export(args: Any) -> None:
    """`seqbench export`: write the file, say what was written on stderr."""
    from seqbench.cli import fail

    try:
        out, run = export_params(args.run_dir, args.seed, args.format, args.out, args.params)
    except EvalError as error:
        fail("seqbench", str(error))
    step = run.steps[list(run.record.seeds).index(args.seed)]
    print(
        f"seed {args.seed}'s {run.which} parameters (step {step}) written to {out}",
        file=sys.stderr,
    )


def add_export_command(commands: Any) -> None:
    """Add `seqbench export` to the `seqbench` parser's subcommands."""
    export = commands.add_parser(
        "export", help="write one seed's kept parameters as .npz or a PyTorch state_dict"
    )
    export.add_argument("run_dir", help="the run folder (run.json, checkpoints/)")
    export.add_argument("--seed", type=int, required=True, help="the seed (one of the run's)")
    export.add_argument("--format", choices=FORMATS, default="npz")
    export.add_argument("--params", choices=PARAMS, default="best", help="as for seqbench eval")
    export.add_argument("--out", required=True, help="the file to write")
    export.set_defaults(func=cmd_export)
