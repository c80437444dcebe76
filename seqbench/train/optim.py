"""optax optimizer chains built from an `OptimizerConfig`."""

from __future__ import annotations

import optax

from seqbench.config import OptimizerConfig


def learning_rate_schedule(cfg: OptimizerConfig, total_steps: int) -> optax.Schedule:
    """The learning rate as a function of the step, over `total_steps` steps."""
    final = cfg.lr * cfg.final_lr_fraction
    if cfg.schedule == "constant":
        return optax.constant_schedule(cfg.lr)
    if cfg.schedule == "linear":
        return optax.linear_schedule(cfg.lr, final, total_steps)
    if cfg.schedule == "cosine":
        return optax.cosine_decay_schedule(cfg.lr, total_steps, alpha=cfg.final_lr_fraction)
    if cfg.schedule == "warmup_cosine":
        warmup = min(cfg.warmup_steps, max(total_steps - 1, 0))
        return optax.warmup_cosine_decay_schedule(0.0, cfg.lr, warmup, total_steps, end_value=final)
    raise ValueError(f"optimizer.schedule: unknown schedule {cfg.schedule!r}")


def build_optimizer(cfg: OptimizerConfig, total_steps: int) -> optax.GradientTransformation:
    """Global-norm clipping (when `grad_clip` > 0) followed by the configured optimizer."""
    lr = learning_rate_schedule(cfg, total_steps)
    if cfg.name == "adam":
        opt = optax.adam(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
    elif cfg.name == "adamw":
        opt = optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay)
    elif cfg.name == "rmsprop":
        opt = optax.rmsprop(lr, decay=cfg.decay, eps=cfg.eps, momentum=cfg.momentum or None)
    elif cfg.name == "sgd":
        opt = optax.sgd(lr, momentum=cfg.momentum or None, nesterov=cfg.nesterov)
    else:
        raise ValueError(f"optimizer.name: unknown optimizer {cfg.name!r}")
    if cfg.grad_clip is not None and cfg.grad_clip > 0:
        return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), opt)
    return opt
