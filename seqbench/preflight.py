"""Check a whole `seqbench-train` command line before Hydra starts any job.

Every job a command would launch (each combination of a `--multirun` sweep) is composed with the
Compose API, validated against the schemas and built (task and model, shapes only), and the output
folder is checked for write access. The first problem becomes one line; nothing has run yet.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterator
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException
from omegaconf.errors import OmegaConfBaseException

from seqbench.config import ConfigError, validate
from seqbench.records import use_deterministic_flags

#: flags after which preflight steps aside and lets Hydra answer (help, config printing, ...)
HYDRA_INFO_FLAGS = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "--shell-completion")
MULTIRUN_FLAGS = ("--multirun", "-m")


def one_line(error: BaseException) -> str:
    """A Hydra or OmegaConf error as one line that names the key or option at fault."""
    if isinstance(error, MissingConfigException):
        lines = str(error).splitlines()
        options = []
        if "Available options" in str(error):
            after = str(error).split("Available options", 1)[1].splitlines()[1:]
            for line in after:
                if not line.startswith("\t"):
                    break
                if not line.strip().endswith("_schema"):
                    options.append(line.strip())
        suffix = f"; available: {', '.join(options)}" if options else ""
        return f"{lines[0]}{suffix}"
    cause = error.__cause__
    if cause is not None and isinstance(cause, OmegaConfBaseException):
        full_key = getattr(cause, "full_key", None)
        first = str(cause).splitlines()[0]
        return f"{full_key}: {first}" if full_key else first
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return ": ".join(lines[:2]) if lines else type(error).__name__


def expand_jobs(overrides: list[str], multirun: bool) -> Iterator[list[str]]:
    """The override list of each job, as Hydra's basic sweeper would launch them."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    if not multirun:
        yield overrides
        return
    choices: list[list[str]] = []
    for override in parsed:
        key = override.get_key_element()
        if override.is_sweep_override():
            if override.is_interval_sweep():  # for optimisation sweepers: not enumerable
                return
            choices.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        else:
            choices.append([override.input_line])
    for combination in itertools.product(*choices):
        yield list(combination)


def nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(overrides: list[str], multirun: bool) -> None:
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    target = Path("outputs")
    for override in overrides:
        for prefix in (f"{key}=", "output_dir="):
            if override.startswith(prefix) and "${" not in override:
                target = Path(override[len(prefix) :])
    existing = nearest_existing(target)
    try:
        if not existing.is_dir():
            raise NotADirectoryError(f"{existing} is not a directory")
        with tempfile.TemporaryDirectory(dir=existing, prefix=".seqbench-write-test-"):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        raise ConfigError(
            f"output directory {target} cannot be written ({existing}: {reason})"
        ) from None


def preflight(argv: list[str], conf_dir: Path) -> None:
    """Raise ConfigError (one line) for the first job of `argv` that would fail to start."""
    if any(arg in HYDRA_INFO_FLAGS or arg.startswith("--config") for arg in argv):
        return
    multirun = any(arg in MULTIRUN_FLAGS for arg in argv)
    overrides = [arg for arg in argv if not arg.startswith("-")]
    user_overrides = [o for o in overrides if not o.lstrip("+~").startswith(("hydra.", "hydra/"))]
    try:
        jobs = list(expand_jobs(user_overrides, multirun))
    except HydraException as error:
        raise ConfigError(one_line(error)) from None
    from seqbench.models.build import build_model
    from seqbench.tasks.build import build_task, check_batch_size

    def where(job: list[str]) -> str:
        return f" (in job {' '.join(job)})" if multirun and len(jobs) > 1 else ""

    configs = []
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        for job in jobs:
            try:
                configs.append(validate(compose("config", overrides=job)))
            except ConfigError as error:
                raise ConfigError(f"{error}{where(job)}") from None
            except (HydraException, OmegaConfBaseException) as error:
                raise ConfigError(f"{one_line(error)}{where(job)}") from None
    if any(cfg.trainer.deterministic for cfg in configs):
        use_deterministic_flags()  # before the first JAX computation below starts a backend
    for job, cfg in zip(jobs, configs, strict=True):
        try:
            task = build_task(cfg.task)
            check_batch_size(task, cfg.trainer.batch_size)
            build_model(cfg.model, task.spec)
        except ValueError as error:  # ConfigError and data errors alike
            raise ConfigError(f"{error}{where(job)}") from None
    check_writable(overrides, multirun)
