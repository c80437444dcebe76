"""optax optimizer chains built from an `OptimizerConfig`.

Two forms. A named optimizer (`name`: adam, adamw, rmsprop, sgd) reads its fields of the schema.
`name: optax` reads `transform`, Hydra's instantiate form of any optax optimizer:

    transform: {_target_: optax.lion, b1: 0.9, b2: 0.99, weight_decay: 1.0e-3}

is called as `optax.lion(learning_rate=<schedule>, b1=0.9, b2=0.99, weight_decay=1e-3)`. Either way
the learning rate is seqbench's: `lr` under `schedule` (`learning_rate_schedule`), or any optax
schedule given as `schedule_fn: {_target_: optax.exponential_decay, init_value: ..., ...}`; and
`grad_clip` > 0 clips the gradients' global norm before the optimizer sees them.

`check_targets` (called by `seqbench.store.validate` while a composed config is validated, before
any data is loaded or program compiled, and again by `build_optimizer` for configs made in code)
resolves each `_target_` and binds its keyword arguments to the target's signature: an unknown
target, an unknown or missing argument, an optimizer without a `learning_rate` parameter or a
target that returns something else each give one ConfigError line naming the key. Nothing is
called there (no JAX backend starts); `build_optimizer` also checks the object it builds.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import importlib
import inspect
import typing
from collections.abc import Callable
from typing import Any

import jax
import optax

from seqbench.config import ConfigError, OptimizerConfig, require

#: fields only the named optimizers read: with name=optax they must stay at their defaults (give
#: such settings to the optax optimizer in `transform`)
NAMED_ONLY_FIELDS = ("b1", "b2", "eps", "momentum", "nesterov", "decay", "weight_decay")
#: fields of the built-in schedules: with `schedule_fn` they must stay at their defaults
SCHEDULE_FIELDS = ("schedule", "warmup_steps", "final_lr_fraction")
#: the keyword seqbench passes to the optax optimizer of name=optax
LEARNING_RATE = "learning_rate"
#: Hydra's instantiate keys that a `_target_` node may hold here (`_partial_` only where meaningful)
TARGET, PARTIAL = "_target_", "_partial_"
#: a `_target_` to suggest when one is missing, by what the node calls
EXAMPLES = {"an optax optimizer": "optax.lion", "an optax schedule": "optax.exponential_decay"}


def learning_rate_schedule(
    cfg: OptimizerConfig, total_steps: int, peak: float | jax.Array | None = None
) -> optax.Schedule:
    """The learning rate as a function of the step, over `total_steps` steps: `schedule_fn` when
    given, else `schedule` with peak rate `peak` (None: `lr`; a traced scalar inside the optimizer
    `build_optimizer` makes)."""
    if cfg.schedule_fn is not None:
        schedule = _instantiate(cfg.schedule_fn)
        require(
            callable(schedule),
            f"optimizer.schedule_fn.{TARGET}",
            f"{cfg.schedule_fn[TARGET]} returned a {type(schedule).__name__}, not a schedule "
            "(a function of the step)",
        )
        return schedule
    lr = cfg.lr if peak is None else peak
    final = lr * cfg.final_lr_fraction
    if cfg.schedule == "constant":
        return optax.constant_schedule(lr)
    if cfg.schedule == "linear":
        return optax.linear_schedule(lr, final, total_steps)
    if cfg.schedule == "cosine":
        return optax.cosine_decay_schedule(lr, total_steps, alpha=cfg.final_lr_fraction)
    if cfg.schedule == "warmup_cosine":
        # optax.warmup_cosine_decay_schedule(0, lr, warmup, total_steps, end_value=final), built
        # from its two parts: it compares its peak with 0 in Python, which a traced rate cannot do
        warmup = min(cfg.warmup_steps, max(total_steps - 1, 0))
        return optax.join_schedules(
            [
                optax.linear_schedule(0.0, lr, warmup),
                optax.cosine_decay_schedule(lr, total_steps - warmup, alpha=cfg.final_lr_fraction),
            ],
            [warmup],
        )
    raise ValueError(f"optimizer.schedule: unknown schedule {cfg.schedule!r}")


def build_optimizer(cfg: OptimizerConfig, total_steps: int) -> optax.GradientTransformation:
    """Global-norm clipping (when `grad_clip` > 0) followed by the configured optimizer.

    The learning rate (`lr`, the peak of its schedule) and the clipping threshold are state of the
    optimizer (`optax.inject_hyperparams`: float32 scalars in the optimizer state), not constants of
    the compiled training program, so runs that differ only in them, such as the trials of a
    learning-rate search, compile the same program and the persistent compilation cache
    (`trainer.compilation_cache_dir`) serves every run after the first. The rate is rounded to
    float32 either way; Adam's and RMSprop's updates equal the constants' bit for bit, while inside
    a whole training program the compiler may fuse a constant differently, a last-bit difference
    (tests/test_injected_rate.py). (`schedule_fn` schedules keep their constants: their arguments
    are the user's.)
    """
    check_targets(cfg)
    make = _optimizer_maker(cfg)
    opt = make(learning_rate_schedule(cfg, total_steps))  # built once here: name=optax is checked
    if cfg.schedule_fn is None:
        opt = optax.inject_hyperparams(
            lambda learning_rate: make(learning_rate_schedule(cfg, total_steps, peak=learning_rate))
        )(learning_rate=cfg.lr)
    if cfg.grad_clip is not None and cfg.grad_clip > 0:
        clip = optax.inject_hyperparams(optax.clip_by_global_norm)(max_norm=cfg.grad_clip)
        return optax.chain(clip, opt)
    return opt


def _optimizer_maker(
    cfg: OptimizerConfig,
) -> Callable[[optax.Schedule], optax.GradientTransformation]:
    """A function from a learning-rate schedule to the optimizer of `cfg` (without clipping); an
    optax `transform` is instantiated once, here, not on every call."""
    if cfg.name == "adam":
        return lambda lr: optax.adam(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
    if cfg.name == "adamw":
        return lambda lr: optax.adamw(
            lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay
        )
    if cfg.name == "rmsprop":
        return lambda lr: optax.rmsprop(
            lr, decay=cfg.decay, eps=cfg.eps, momentum=cfg.momentum or None
        )
    if cfg.name == "sgd":
        return lambda lr: optax.sgd(lr, momentum=cfg.momentum or None, nesterov=cfg.nesterov)
    if cfg.name == "optax":
        assert cfg.transform is not None  # OptimizerConfig's check
        factory = _instantiate({**cfg.transform, PARTIAL: True})

        def make(lr: optax.Schedule) -> optax.GradientTransformation:
            opt = factory(**{LEARNING_RATE: lr})
            require(
                isinstance(opt, optax.GradientTransformation),
                f"optimizer.transform.{TARGET}",
                f"{cfg.transform[TARGET]} returned a {type(opt).__name__}, not an "
                "optax.GradientTransformation: not an optax optimizer",
            )
            return opt

        return make
    raise ValueError(f"optimizer.name: unknown optimizer {cfg.name!r}")


def _instantiate(node: dict[str, Any]) -> Any:
    """Hydra's instantiate of a checked `_target_` node, containers passed as plain dicts/lists."""
    from hydra.utils import instantiate

    return instantiate(node, _convert_="all")


def check_targets(cfg: OptimizerConfig) -> None:
    """Raise ConfigError (one line, naming the key) unless `transform` (with name=optax) and
    `schedule_fn` name callables whose signatures take the given arguments, and the fields they
    replace are left at their defaults."""
    defaults = {f.name: f.default for f in dataclasses.fields(OptimizerConfig)}
    if cfg.name == "optax":
        require(
            cfg.transform is not None,
            "optimizer.transform",
            "optimizer.name=optax needs {_target_: <an optax optimizer>, <its arguments>} "
            "(see conf/optimizer/optax.yaml)",
        )
        for name in NAMED_ONLY_FIELDS:
            require(
                getattr(cfg, name) == defaults[name],
                f"optimizer.{name}",
                f"not read with optimizer.name=optax; give it to the optax optimizer as "
                f"optimizer.transform.{name}",
            )
        _check_optimizer(cfg.transform, "optimizer.transform")
    elif cfg.transform is not None:
        raise ConfigError(
            f"optimizer.transform: only read with optimizer.name=optax (got {cfg.name!r})"
        )
    if cfg.schedule_fn is not None:
        for name in SCHEDULE_FIELDS:
            require(
                getattr(cfg, name) == defaults[name],
                f"optimizer.{name}",
                f"replaced by optimizer.schedule_fn; leave it at {defaults[name]!r}",
            )
        _check_schedule(cfg.schedule_fn, "optimizer.schedule_fn")


def _check_optimizer(node: Any, key: str) -> None:
    """`node` calls an optax optimizer: a target with a `learning_rate` parameter (given by
    seqbench, not by `node`) that returns an optax.GradientTransformation."""
    target, signature = _check_call(node, key, "an optax optimizer", given=(LEARNING_RATE,))
    if signature is None:
        return
    returns = signature.return_annotation
    if returns is inspect.Signature.empty:
        return  # unannotated: build_optimizer checks what it returns
    if isinstance(returns, str):
        fits = "GradientTransformation" in returns
    else:
        fits = isinstance(returns, type) and issubclass(returns, optax.GradientTransformation)
    require(
        fits,
        f"{key}.{TARGET}",
        f"{target} returns {_type_name(returns)}, not an optax.GradientTransformation: "
        "not an optax optimizer",
    )


def _check_schedule(node: Any, key: str) -> None:
    """`node` calls an optax schedule (every argument given in `node`) that returns a function of
    the step."""
    target, signature = _check_call(node, key, "an optax schedule", partial_allowed=False)
    if signature is None or signature.return_annotation is inspect.Signature.empty:
        return
    returns = signature.return_annotation
    if isinstance(returns, str):
        fits = "Schedule" in returns or "Callable" in returns
    else:
        fits = typing.get_origin(returns) is collections.abc.Callable or returns in (
            collections.abc.Callable,
            typing.Callable,
        )
    require(
        fits,
        f"{key}.{TARGET}",
        f"{target} returns {_type_name(returns)}, not a schedule (a function of the step): "
        "not an optax schedule",
    )


def _check_call(
    node: Any,
    key: str,
    what: str,
    given: tuple[str, ...] = (),
    partial_allowed: bool = True,
) -> tuple[str, inspect.Signature | None]:
    """Check a `_target_` node at `key`: the target resolves to a callable and the node's keyword
    arguments (with `given`, which seqbench passes) bind to its signature; nested `_target_` nodes
    are checked too. Returns the target's path and signature (None: the callable has none)."""
    require(
        isinstance(node, dict),
        key,
        f"expected {{{TARGET}: <dotted path>, <keyword arguments>}}, got {node!r}",
    )
    target = node.get(TARGET)
    example = EXAMPLES.get(what)
    require(
        isinstance(target, str) and bool(target),
        f"{key}.{TARGET}",
        f"missing: give the dotted path of {what}" + (f", e.g. {example}" if example else ""),
    )
    for name, value in node.items():
        if name == PARTIAL and partial_allowed:
            require(
                isinstance(value, bool), f"{key}.{PARTIAL}", f"must be true or false, got {value!r}"
            )
        elif name != TARGET and name.startswith("_") and name.endswith("_"):
            raise ConfigError(f"{key}.{name}: not supported here (give keyword arguments)")
    found, parent = _locate(target)
    if found is None or not callable(found):
        raise ConfigError(f"{key}.{TARGET}: {target} is not {what}{_did_you_mean(target, parent)}")
    try:
        signature = inspect.signature(found)
    except (TypeError, ValueError):  # some builtins have none: leave the call to build time
        return target, None
    arguments = {k: v for k, v in node.items() if k not in (TARGET, PARTIAL)}
    for name in given:
        require(
            name not in arguments,
            f"{key}.{name}",
            "set by seqbench (optimizer.lr and optimizer.schedule, or optimizer.schedule_fn); "
            "leave it out",
        )
    parameters = signature.parameters
    keywords = [
        p.name
        for p in parameters.values()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    for name in given:
        require(name in keywords, f"{key}.{TARGET}", f"{target} takes no {name}: not {what}")
    for name in arguments:
        if name not in keywords and not open_ended:
            close = difflib.get_close_matches(name, keywords, n=1)
            hint = f"did you mean {close[0]}?" if close else f"parameters: {', '.join(keywords)}"
            raise ConfigError(f"{key}.{name}: not a parameter of {target} ({hint})")
    bind = signature.bind_partial if node.get(PARTIAL) else signature.bind
    try:
        bind(**dict.fromkeys(given), **arguments)
    except TypeError as error:  # a required argument left out
        raise ConfigError(f"{key}: {target}: {error}") from None
    for name, value in arguments.items():
        if isinstance(value, dict) and TARGET in value:
            _check_call(value, f"{key}.{name}", "a callable")
    return target, signature


def _locate(path: str) -> tuple[Any | None, Any | None]:
    """(the object at dotted `path`, or None; the deepest object found on the way, or None),
    importing the longest module prefix of `path` (unlike Hydra's locate, it logs nothing)."""
    parts = path.split(".")
    if not all(part.isidentifier() for part in parts):
        return None, None
    for cut in range(len(parts), 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            attribute = getattr(found, part, None)
            if attribute is None:
                return None, found
            found = attribute
        return found, None
    return None, None


def _did_you_mean(target: str, parent: Any | None) -> str:
    """' (did you mean <module>.<name>?)' for the public callable of `parent` nearest to the last
    part of `target`, or ''."""
    if parent is None:
        return ""
    head, _, name = target.rpartition(".")
    names = [n for n in dir(parent) if not n.startswith("_") and callable(getattr(parent, n, None))]
    close = difflib.get_close_matches(name, names, n=1)
    return f" (did you mean {head}.{close[0]}?)" if close else ""


def _type_name(annotation: Any) -> str:
    """A return annotation as a short name: a class's name, else its text."""
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")
