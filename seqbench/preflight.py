"""Check a whole `seqbench-train` command line before Hydra starts any job.

Every override is parsed first (grammar errors, unquoted non-ASCII values). Every job a command
would launch (each combination of a `--multirun` sweep) is composed with the Compose API (with the
command's `hydra.searchpath`, so options in added config folders are found), validated
against the schemas and built (task and model, shapes only). The first job is composed once more
with Hydra's own node and the command's `hydra…` overrides (launcher, sweeper and the like), and
the run (or sweep) folder it resolves to, interpolations included, is checked for write access, as
is `output_dir`. The first problem becomes one line; nothing has run yet.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import shlex
import tempfile
from collections.abc import Iterator
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    InterpolationToMissingValueError,
    MissingMandatoryValue,
    OmegaConfBaseException,
)

from seqbench.config import ConfigError
from seqbench.provenance import use_deterministic_flags
from seqbench.store import unknown_key, validate

#: flags after which preflight steps aside and lets Hydra answer (help, config printing, another
#: primary config, ...)
HYDRA_INFO_FLAGS = (
    "--help",
    "-h",
    "--hydra-help",
    "--cfg",
    "-c",
    "--info",
    "--shell-completion",
    "-cp",
    "-cn",
    "-cd",
    "--experimental-rerun",
)
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
    if isinstance(cause, ConfigAttributeError | ConfigKeyError):
        key, schema = getattr(cause, "key", None), getattr(cause, "object_type", None)
        full_key = getattr(cause, "full_key", None)
        if isinstance(key, str) and full_key and dataclasses.is_dataclass(schema):
            if key not in {f.name for f in dataclasses.fields(schema)}:
                return unknown_key(full_key, key, schema)
    if cause is not None and isinstance(cause, OmegaConfBaseException):
        full_key = getattr(cause, "full_key", None)
        first = str(cause).splitlines()[0]
        return f"{full_key}: {first}" if full_key else first
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return ": ".join(lines[:2]) if lines else type(error).__name__


LEXER_ERROR = "LexerNoViableAltException: "


def _quoted(value: str) -> str:
    """`value` with its non-ASCII words in double quotes (each element of a list or dict)."""
    if value.startswith(("[", "{")):
        word = r"[^\s,\[\]{}:'\"]*[^\x00-\x7f][^\s,\[\]{}:'\"]*"
        return re.sub(word, lambda match: f'"{match.group()}"', value)
    return f'"{value}"'


def check_grammar(override: str) -> None:
    """Raise ConfigError (one line) if Hydra's override grammar rejects `override`; an unquoted
    non-ASCII value gets the quoted form to type instead."""
    try:
        OverridesParser.create().parse_overrides([override])
    except OverrideParseException as error:
        message = str(error)
        lines = [line for line in message.splitlines() if line.strip()]
        if lines and lines[0] == f"Error parsing override '{override}'":
            lines = lines[1:]
        detail = lines[0] if lines else type(error).__name__
        if detail.startswith(LEXER_ERROR) and len(lines) > 1 and "^" in lines[1]:
            at = lines[1].index("^") - len(LEXER_ERROR)
            char = override[at] if 0 <= at < len(override) else ""
            key, _, value = override.partition("=")
            if char and not char.isascii() and at > len(key):
                hint = shlex.quote(f"{key}={_quoted(value)}")
                raise ConfigError(
                    f"cannot parse {override!r}: unquoted non-ASCII value; quote the value: {hint}"
                ) from None
            detail = f"unexpected character {char!r} at position {at + 1}"
        url = re.search(r"https://\S+", message)
        see = f" (see {url.group()})" if url else ""
        raise ConfigError(f"cannot parse {override!r}: {detail}{see}") from None


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


def hydra_output_dir(cfg: DictConfig, multirun: bool) -> Path | None:
    """The run (or, for `multirun`, sweep) folder Hydra will create for `cfg`, composed with its
    `hydra` node, resolved as Hydra resolves it (`${now:…}`, `${hydra:…}`, keys of the config).
    None when it names a value Hydra sets only once a job starts, such as `${hydra.job.id}`."""
    key = f"hydra.{'sweep' if multirun else 'run'}.dir"
    hydra_config = HydraConfig.instance()
    saved = hydra_config.cfg
    try:
        hydra_config.set_config(cfg)  # what `${hydra:…}` reads
        return Path(str(cfg.hydra.sweep.dir if multirun else cfg.hydra.run.dir))
    except (MissingMandatoryValue, InterpolationToMissingValueError):
        return None
    except OmegaConfBaseException as error:
        raise ConfigError(f"{key}: {str(error).splitlines()[0]}") from None
    finally:
        hydra_config.cfg = saved


def check_writable(target: Path) -> None:
    """Raise ConfigError unless a folder can be created at `target` (its nearest existing parent
    takes a new folder)."""
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


def is_hydra_override(override: str) -> bool:
    """Whether `override` sets Hydra's own config (`hydra.…`, `hydra/<group>=…`)."""
    return override.lstrip("+~").startswith(("hydra.", "hydra/"))


def preflight(argv: list[str], conf_dir: Path) -> None:
    """Raise ConfigError (one line) for the first job of `argv` that would fail to start."""
    if any(arg in HYDRA_INFO_FLAGS or arg.startswith("--config") for arg in argv):
        return
    multirun = any(arg in MULTIRUN_FLAGS for arg in argv)
    overrides = [arg for arg in argv if not arg.startswith("-")]
    for override in overrides:
        check_grammar(override)
    hydra_overrides = [o for o in overrides if is_hydra_override(o)]
    user_overrides = [o for o in overrides if not is_hydra_override(o)]
    # config folders added with hydra.searchpath=[...] hold options the jobs may select
    searchpath = [o for o in hydra_overrides if o.lstrip("+~").startswith("hydra.searchpath")]
    try:
        jobs = list(expand_jobs(user_overrides, multirun))
    except HydraException as error:
        raise ConfigError(one_line(error)) from None
    from seqbench.job import Job

    def where(job: list[str]) -> str:
        return f" (in job {' '.join(job)})" if multirun and len(jobs) > 1 else ""

    configs = []
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        for job in jobs:
            try:
                configs.append(validate(compose("config", overrides=[*searchpath, *job])))
            except ConfigError as error:
                raise ConfigError(f"{error}{where(job)}") from None
            except (HydraException, OmegaConfBaseException) as error:
                raise ConfigError(f"{one_line(error)}{where(job)}") from None
        first = jobs[0] if jobs else []
        try:
            with_hydra = compose("config", [*first, *hydra_overrides], return_hydra_config=True)
        except (HydraException, OmegaConfBaseException) as error:
            raise ConfigError(one_line(error)) from None
        targets = [hydra_output_dir(with_hydra, multirun)]
    targets += [Path(cfg.output_dir) for cfg in configs if cfg.output_dir]
    for target in dict.fromkeys(t for t in targets if t is not None):
        check_writable(target)
    if any(cfg.trainer.deterministic for cfg in configs):
        use_deterministic_flags()  # before the first JAX computation below starts a backend
    for job, cfg in zip(jobs, configs, strict=True):
        try:
            Job.build(cfg)
        except ValueError as error:  # ConfigError and data errors alike
            raise ConfigError(f"{error}{where(job)}") from None
