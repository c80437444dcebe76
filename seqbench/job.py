"""The one place a run is assembled: a validated config becomes a `Job` (task, model, optimizer,
training program, gradient-flow probe). The command-line check before Hydra starts (preflight) and
the training job build the same `Job`, so what the check accepts is what trains.

Building touches no device program: the task's data are loaded (once per process and config) and
the model's parameters are counted from shapes only. `Job.program()` and `Job.gradient_flow()`
make the pure functions the driver compiles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from seqbench.config import Config
from seqbench.models.build import BuiltModel, build_model
from seqbench.tasks.base import Task
from seqbench.tasks.registry import build_task, check_batch_size
from seqbench.train.driver import GradientFlow
from seqbench.train.program import TrainProgram
from seqbench.train.strategy import PROJECTIONS


@dataclass(frozen=True)
class Job:
    """A validated config with its task and model built.

    config: the checked config (`seqbench.store.validate`).
    task: the task (data loaded, held-out sets fixed).
    built: the model, its hidden size (chosen by `model.param_budget` when set) and its exact
        parameter count.
    """

    config: Config
    task: Task
    built: BuiltModel

    @classmethod
    def build(cls, config: Config) -> Job:
        """Build the task and the model of `config`; ValueError (a ConfigError or a data error,
        one line) when they cannot be built or do not fit together."""
        task = build_task(config.task)
        check_batch_size(task, config.trainer.batch_size)
        built = build_model(
            config.model,
            task.spec,
            remat=config.trainer.remat,
            remat_chunk=config.trainer.remat_chunk,
            hoist_projection=config.trainer.input_projection == "hoisted",
        )
        return cls(config, task, built)

    @property
    def name(self) -> str:
        """The run's name: `config.name`, or `<task>-<architecture>`."""
        return self.config.name or f"{self.task.name}-{self.config.model.architecture}"

    def model_info(self) -> dict[str, Any]:
        """The run record's `model` section."""
        return {
            "architecture": self.config.model.architecture,
            "hidden_size": self.built.hidden_size,
            "param_count": self.built.param_count,
            "param_budget": self.config.model.param_budget,
            "state_size": self.built.model.state_size(self.task.spec.input_dim),
            "receptive_field": self.built.model.receptive_field(),
            "block": self.built.model.block,
            **({"mlp_width": self.built.model.mlp_width} if self.built.model.mlp_width else {}),
        }

    def program(self, input_projection: str | None = None) -> TrainProgram:
        """The pure training program: optimizer over `trainer.steps`, batch sizes, blow-up rule;
        with `input_projection` ("in_step" or "hoisted"), the model's layers project their inputs
        that way (None: as `trainer.input_projection` says, in the step for auto)."""
        from seqbench.train.optim import build_optimizer
        from seqbench.train.program import make_train

        trainer = self.config.trainer
        model = self.built.model
        if input_projection is not None:
            model = model.clone(hoist_projection=input_projection == "hoisted")
        return make_train(
            model,
            self.task,
            build_optimizer(self.config.optimizer, trainer.steps),
            trainer.batch_size,
            trainer.eval_batch_size,
            blowup_factor=trainer.blowup_factor,
        )

    def projections(self) -> dict[str, TrainProgram] | None:
        """The training program under each input projection for `run_training` to choose from
        (`trainer.input_projection=auto` with an architecture that has one, outside remat, which
        keeps it in the step); None: `program()` alone."""
        trainer = self.config.trainer
        hoistable = self.built.model.architecture.hoistable
        if trainer.remat or trainer.remat_chunk is not None or not hoistable:
            return None
        if trainer.input_projection == "auto":
            return {how: self.program(how) for how in PROJECTIONS}
        return {trainer.input_projection: self.program()}

    def gradient_flow(self) -> GradientFlow | None:
        """The gradient-flow probe at `trainer.gradient_flow_steps` (None when none is asked)."""
        from seqbench.train.gradient_flow import flow_batch, make_gradient_flow

        trainer = self.config.trainer
        steps = tuple(sorted(set(trainer.gradient_flow_steps)))
        if not steps:
            return None
        return GradientFlow(
            measure=make_gradient_flow(self.built.model, self.task),
            batch=flow_batch(self.task, trainer.gradient_flow_batch),
            steps=steps,
        )
