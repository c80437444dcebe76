"""Structured-config schemas of the run's groups (model stack, optimizer, trainer, logger, paths,
root) and the checks every schema uses.

Each architecture's and task's own options live beside their code (`seqbench.models.architectures`,
`seqbench.tasks`); `seqbench.store` registers all of them with Hydra and validates a composed
config. Value checks (ranges, choices) live in `__post_init__`, written once per field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING


class ConfigError(ValueError):
    """A config value that composes but makes no sense (one line, names the key)."""


def require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {message}")


#: trainer.seeds_over: how the training chunk runs the seeds (see TrainerConfig)
SEED_BATCHING = ("auto", "vmap", "map")
#: trainer.input_projection: where simple_rnn / lstm / gru project their inputs (see TrainerConfig)
INPUT_PROJECTION = ("auto", "in_step", "hoisted")


def choice(value: str, key: str, choices: tuple[str, ...]) -> None:
    require(value in choices, key, f"got {value!r}, expected one of {', '.join(choices)}")


#: seeds reach JAX as int32 (the trainer's seed array, `jax.random.key`) or NumPy generators
SEED_MAX = 2**31 - 1


def check_seed(value: int, key: str) -> None:
    require(0 <= value <= SEED_MAX, key, f"must be in [0, {SEED_MAX}] (int32), got {value}")


#: dir: continue an unfinished run found in the output folder, skip a finished one; auto: also look
#: for the latest run of the same configuration under paths.outputs; never: refuse a used folder
RESUME_MODES = ("dir", "auto", "never")
#: the trackers `logger.backends` may name (seqbench.tracking)
LOGGERS = ("wandb", "tensorboard")
WANDB_MODES = ("online", "offline", "disabled")
ENCODERS = ("auto", "none", "linear", "embedding", "one_hot")
READOUTS = ("auto", "last", "every_step")
BLOCKS = ("plain", "residual")


@dataclass
class ModelConfig:
    """A stacked (bi)directional recurrent network of one architecture.

    `architecture` names a registered architecture (`seqbench.models.architectures.ARCHITECTURES`)
    and `cell` holds that architecture's options dataclass (its YAML lists `- cell:
    <name>_schema`); `seqbench.store.validate` checks the pair, so this module needs no registry.
    `param_budget`, when set, overrides `hidden_size`: the hidden size is chosen so that the whole
    model lands within 2% of that many parameters (the equal-budget protocol of Bai et al. 2018).
    `head_sizes`: Dense + ReLU layers between the recurrent output and the readout.
    `block`: how layers are stacked: "plain" (each layer reads the previous one's outputs, dropout
    between them) or "residual" (pre-norm, layer, skip, pre-norm, gated MLP of width
    `mlp_expansion` * hidden_size, skip: Griffin's residual block; with `param_budget` the MLP width
    moves off that multiple to land within 2%); "auto": the architecture's paper form
    (`Spec.block`).
    """

    architecture: str = MISSING  # a name in seqbench.models.architectures.ARCHITECTURES
    cell: Any = None  # that architecture's options (its Spec.options dataclass): model.cell.*
    block: str = "auto"
    mlp_expansion: int = 3  # residual blocks: the MLP's width in multiples of hidden_size
    hidden_size: int = 128
    param_budget: int | None = None
    n_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    encoder: str = "auto"
    embed_dim: int | None = None
    readout: str = "auto"
    head_sizes: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        require(
            all(size > 0 for size in self.head_sizes),
            "model.head_sizes",
            f"must be positive layer sizes, got {self.head_sizes}",
        )
        require(
            self.hidden_size > 0, "model.hidden_size", f"must be positive, got {self.hidden_size}"
        )
        if self.param_budget is not None:
            require(self.param_budget > 0, "model.param_budget", "must be positive")
        require(self.n_layers > 0, "model.n_layers", f"must be positive, got {self.n_layers}")
        require(
            0.0 <= self.dropout < 1.0, "model.dropout", f"must be in [0, 1), got {self.dropout}"
        )
        choice(self.encoder, "model.encoder", ENCODERS)
        choice(self.block, "model.block", ("auto", *BLOCKS))
        require(
            self.mlp_expansion > 0,
            "model.mlp_expansion",
            f"must be positive, got {self.mlp_expansion}",
        )
        if self.embed_dim is not None:
            require(self.embed_dim > 0, "model.embed_dim", "must be positive")
        choice(self.readout, "model.readout", READOUTS)


#: named optimizers, and "optax": any optax optimizer given by `optimizer.transform._target_`
OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd", "optax")
SCHEDULES = ("constant", "cosine", "warmup_cosine", "linear")


@dataclass
class OptimizerConfig:
    """An optax optimizer with global-norm clipping and a learning-rate schedule.

    `momentum` is used by sgd and rmsprop; `decay` is rmsprop's squared-gradient decay; b1/b2/eps by
    adam and adamw; `weight_decay` by adamw. `grad_clip` <= 0 or null turns clipping off.
    Schedules run over `trainer.steps`; `warmup_steps` applies to warmup_cosine.

    `name: optax` builds any optax optimizer from `transform` (`_target_` and keyword arguments,
    Hydra's instantiate form), called with `learning_rate` = the schedule of `lr`; `schedule_fn`
    (any optax schedule, `_target_` and all its arguments) replaces `schedule` for any optimizer.
    Both are checked against the target's signature when the composed config is validated
    (`seqbench.store.validate`), before anything is built (`seqbench.train.optim.check_targets`).
    """

    name: str = "adam"
    lr: float = 1e-3
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    momentum: float = 0.0
    nesterov: bool = False
    decay: float = 0.9
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    schedule: str = "constant"
    warmup_steps: int = 0
    final_lr_fraction: float = 0.0
    #: name=optax: {_target_: <optax optimizer>, <its keyword arguments>}; learning_rate is seqbench's.
    #: Typed Any (a dict or null, checked below): OmegaConf cannot merge a command line's dict into a
    #: null `dict | None` field
    transform: Any = None
    #: null: the learning rate follows `schedule`; else {_target_: <optax schedule>, <its arguments>}
    schedule_fn: Any = None

    def __post_init__(self) -> None:
        choice(self.name, "optimizer.name", OPTIMIZERS)
        require(self.lr > 0, "optimizer.lr", f"must be positive, got {self.lr}")
        require(0 <= self.b1 < 1 and 0 <= self.b2 < 1, "optimizer.b1/b2", "must be in [0, 1)")
        require(self.eps > 0, "optimizer.eps", "must be positive")
        require(0 <= self.momentum < 1, "optimizer.momentum", "must be in [0, 1)")
        require(0 <= self.decay < 1, "optimizer.decay", "must be in [0, 1)")
        require(self.weight_decay >= 0, "optimizer.weight_decay", "must be non-negative")
        choice(self.schedule, "optimizer.schedule", SCHEDULES)
        require(self.warmup_steps >= 0, "optimizer.warmup_steps", "must be non-negative")
        require(
            0 <= self.final_lr_fraction <= 1, "optimizer.final_lr_fraction", "must be in [0, 1]"
        )


@dataclass
class TrainerConfig:
    """The training loop: `steps` optimizer steps per seed, evaluated every `eval_every` steps.

    Steps between evaluations run as one jitted `lax.scan`; `eval_batch_size` splits each evaluation
    set into chunks of at most that many examples (null: the whole set at once) to bound memory. `remat` recomputes each
    recurrent step's gates in the backward pass instead of storing them (long sequences);
    `remat_chunk` (with `remat`) instead runs each layer over time in chunks of that many steps,
    each recomputed whole in the backward pass (`seqbench.models.time_chunks`; unidirectional
    models), so that only the layers' inputs and outputs are kept over all T steps.
    `checkpoint` saves the whole training state (orbax, `<run dir>/checkpoints/`) after every
    `checkpoint_every` steps (a multiple of `eval_every`; null: every evaluation) and at the end.
    `keep_best` keeps each seed's parameters at its best validation evaluation (the run record's
    "best") and saves them with every checkpoint, for `seqbench eval` and `seqbench export`.
    `deterministic` sets the XLA flags that make GPU runs reproducible bit for bit (CPU runs are
    without them); the run record lists the flags in force. `gradient_flow_steps` lists the
    steps (0, multiples of `eval_every`, or `steps`) at which ||dL/dh_t|| is measured for every
    time step on the first `gradient_flow_batch` validation examples (run record and logger).
    `blowup_factor`: a seed diverges (frozen at its parameters before that step, like a seed whose
    loss stops being finite) at the first step whose training loss exceeds `blowup_factor` times its
    first training loss, that loss taken as at least 0.001 (null: only non-finite losses diverge).
    `memory_limit_gb`: the memory (GB, 1e9 bytes) a compiled program may need; null: the device's
    (CPU: physical memory or cgroup limit; GPU/TPU: the allocator's limit). A program estimated to
    need more is refused, before it runs, with one line; on a CPU XLA's estimate of its
    temporaries counts 2.5 times for the evaluation (`seqbench.train.memory.CPU_TEMPORARY_FACTOR`).
    `seeds_over`: how the training chunk runs the seeds: `vmap` (one batched program: per-seed
    weights make every matmul a batched one), `map` (`lax.map`: the seeds one after another inside
    the program) or `auto` (`seqbench.train.strategy`: vmap on GPU/TPU; on CPU the faster of
    the two, measured once per program and host and cached). The same computation either way,
    rounded differently in the last bits: not part of the run's identity.
    `input_projection`: where the layers with an input projection (simple_rnn, lstm, gru) compute
    x_t W_ih + b_ih: `in_step` (inside the time loop, fused with the gates), `hoisted` (for the whole
    sequence before the loop, one large matmul, as cuDNN and PyTorch) or `auto`
    (`seqbench.train.strategy`: the faster for runs of 500 steps or more, measured together with
    `seeds_over` once per program and host and cached; in_step for shorter runs). Ignored by the
    other architectures and under `remat` / `remat_chunk` (which keep it in the step). The same
    function, rounded differently: not part of the run's identity.
    """

    steps: int = 2000
    batch_size: int = 64
    eval_every: int = 200
    eval_batch_size: int | None = 1000
    progress: bool = True
    compilation_cache_dir: str | None = None
    remat: bool = False
    remat_chunk: int | None = None
    checkpoint: bool = True
    checkpoint_every: int | None = None
    keep_best: bool = True  # keep (and checkpoint) each seed's parameters at its best evaluation
    deterministic: bool = False
    gradient_flow_steps: list[int] = field(default_factory=list)
    gradient_flow_batch: int = 64
    blowup_factor: float | None = 1e4
    memory_limit_gb: float | None = None
    seeds_over: str = "auto"
    input_projection: str = "auto"

    def __post_init__(self) -> None:
        require(self.steps > 0, "trainer.steps", f"must be positive, got {self.steps}")
        choice(self.seeds_over, "trainer.seeds_over", SEED_BATCHING)
        choice(self.input_projection, "trainer.input_projection", INPUT_PROJECTION)
        if self.blowup_factor is not None:
            require(
                self.blowup_factor > 1,
                "trainer.blowup_factor",
                f"must be > 1 (or null: off), got {self.blowup_factor}",
            )
        if self.memory_limit_gb is not None:
            require(
                self.memory_limit_gb > 0,
                "trainer.memory_limit_gb",
                f"must be positive (or null: the device's memory), got {self.memory_limit_gb}",
            )
        require(
            self.gradient_flow_batch > 0,
            "trainer.gradient_flow_batch",
            f"must be positive, got {self.gradient_flow_batch}",
        )
        for step in self.gradient_flow_steps:
            require(
                0 <= step <= self.steps and (step % self.eval_every == 0 or step == self.steps),
                "trainer.gradient_flow_steps",
                f"{step} is not an evaluation step (0, a multiple of trainer.eval_every="
                f"{self.eval_every} up to trainer.steps={self.steps}, or trainer.steps)",
            )
        if self.remat_chunk is not None:
            require(
                isinstance(self.remat_chunk, int) and self.remat_chunk >= 1,
                "trainer.remat_chunk",
                f"must be a positive number of steps (or null), got {self.remat_chunk!r}",
            )
            require(
                self.remat,
                "trainer.remat_chunk",
                "needs trainer.remat=true (the chunks are what is rematerialised)",
            )
        require(
            self.batch_size > 0, "trainer.batch_size", f"must be positive, got {self.batch_size}"
        )
        require(
            self.eval_every > 0, "trainer.eval_every", f"must be positive, got {self.eval_every}"
        )
        if self.eval_batch_size is not None:
            require(self.eval_batch_size > 0, "trainer.eval_batch_size", "must be positive")
        if self.checkpoint_every is not None:
            require(
                self.checkpoint_every > 0 and self.checkpoint_every % self.eval_every == 0,
                "trainer.checkpoint_every",
                f"must be a positive multiple of trainer.eval_every={self.eval_every}, "
                f"got {self.checkpoint_every}",
            )


@dataclass
class LoggerConfig:
    """Where metrics are mirrored besides the run record: `backends`, the trackers, each at most
    once, from LOGGERS ("wandb", "tensorboard"); [] (`logger=none`): the run record only.

    Presets: `logger=none`, `logger=wandb`, `logger=tensorboard`, `logger=wandb_tensorboard`
    (both); any preset takes a list, e.g. `logger=wandb 'logger.backends=[wandb,tensorboard]'`.
    The options of a tracker that is not named are ignored.

    For "wandb": one Weights & Biases run per (job, seed), grouped by configuration. `mode` None
    falls back to the WANDB_MODE environment variable, then to "offline" (no account, no network).
    `group` None derives one from the config without its seeds; `dir` None is the job's output
    directory; `init_timeout` bounds the time wandb may take to start a run (seconds). `artifact`:
    at the end, every run logs the job's run record (run.json) as a "run-record" artifact, with
    the learning-curve figure of a finished run when `artifact_figure` (drawing it takes matplotlib
    a few seconds).
    For "tensorboard": event files written without TensorFlow (the `tensorboard` extra,
    tensorboardX), one folder per seed under `tensorboard_dir`/<group> (None: the job's output
    directory's `tensorboard/`).
    """

    backends: list[str] = field(default_factory=list)  # trackers, from LOGGERS; []: none
    project: str = "seqbench"  # wandb project
    entity: str | None = None  # wandb user or team; None: the account's default
    mode: str | None = None  # wandb: online | offline | disabled; None: $WANDB_MODE, else offline
    group: str | None = None  # wandb group (and tensorboard_dir subfolder); None: from the config
    job_type: str = "train"  # wandb job type
    dir: str | None = None  # wandb's folder; None: the job's output directory
    init_timeout: float = 30.0  # seconds wandb may take to start a run
    artifact: bool = True  # wandb: log run.json as an artifact of every run at the end
    artifact_figure: bool = True  # wandb: add the learning-curve figure (PNG) to that artifact
    tensorboard_dir: str | None = None  # root of the event files; None: <output dir>/tensorboard

    def __post_init__(self) -> None:
        for backend in self.backends:
            choice(backend, "logger.backends", LOGGERS)
        require(
            len(set(self.backends)) == len(self.backends),
            "logger.backends",
            f"names a tracker twice: {list(self.backends)}",
        )
        if self.mode is not None:
            choice(self.mode, "logger.mode", WANDB_MODES)
        require(bool(self.project), "logger.project", "must not be empty")
        require(
            self.init_timeout > 0, "logger.init_timeout", f"must be > 0, got {self.init_timeout}"
        )


@dataclass
class PathsConfig:
    """Where data sets are read from and preprocessed arrays cached (tasks refer to these), and
    the folder `resume=auto` searches for earlier runs of the same configuration."""

    data_dir: str = "~/.cache/seqbench/data"
    cache_dir: str = "~/.cache/seqbench/cache"
    outputs: str = "outputs"


@dataclass
class Config:
    """The root config composed by `conf/config.yaml`."""

    model: ModelConfig = MISSING
    #: one task's options, a TaskConfig (each beside its task; see seqbench.tasks.registry)
    task: Any = MISSING
    optimizer: OptimizerConfig = MISSING
    trainer: TrainerConfig = MISSING
    logger: LoggerConfig = MISSING
    paths: PathsConfig = field(default_factory=PathsConfig)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    name: str | None = None
    tags: list[str] = field(default_factory=list)
    #: the search folder whose choice this run trains (`seqbench search-best` prints it)
    tuned_by: str | None = None
    output_dir: str | None = None
    resume: str = "dir"

    def __post_init__(self) -> None:
        choice(self.resume, "resume", RESUME_MODES)
        require(len(self.seeds) > 0, "seeds", "give at least one seed")
        require(len(set(self.seeds)) == len(self.seeds), "seeds", f"repeated seed in {self.seeds}")
        for seed in self.seeds:
            check_seed(seed, "seeds")
