"""The benchmark configurations and the analytic FLOP count of one training step."""

from __future__ import annotations

from dataclasses import dataclass

from seqbench.models.architectures import get

N_CLASSES = 10


@dataclass(frozen=True)
class BenchConfig:
    """One training-step shape: batch B, length T, input width I, hidden size H.

    readout "last": Dense(10) on the last step's output (classification of the sequence);
    "every_step": Dense(10) at every step (copy memory). Loss: softmax cross-entropy; Adam.
    """

    name: str
    batch: int
    length: int
    input_size: int
    hidden: int
    readout: str = "last"

    @property
    def tokens(self) -> int:
        """Time steps of input processed per training step (B * T)."""
        return self.batch * self.length


CONFIGS: dict[str, BenchConfig] = {
    c.name: c
    for c in (
        BenchConfig("smnist", 64, 784, 1, 128),
        BenchConfig("adding", 32, 600, 2, 130),
        BenchConfig("copy", 32, 1020, 10, 50, "every_step"),
        BenchConfig("large", 32, 100, 512, 512),
    )
}
#: the long-sequence memory check: trains within 2 GB only with trainer.remat
LONG = BenchConfig("long", 32, 10_000, 1, 128)
#: a seconds-long configuration for checking the harness itself (not part of the default set)
TINY = BenchConfig("tiny", 4, 8, 2, 8)

#: the recurrences section (`seqbench-speed --recurrences`): the linear recurrences and the
#: convolution beside the fused GRU and LSTM, I = H = 128 (the residual stack's width), readout
#: "last"; the speed-up targets are checked at the longest
RECURRENCE_CONFIGS: dict[str, BenchConfig] = {
    c.name: c
    for c in (
        BenchConfig("rec1024", 32, 1024, 128, 128),
        BenchConfig("rec4096", 32, 4096, 128, 128),
    )
}
#: the recurrences section's long-sequence memory check (best scan, remat off and on)
RECURRENCE_LONG = BenchConfig("rec16384", 32, 16_384, 128, 128)
#: seconds-long stand-ins of the recurrences section, for checking the harness
RECURRENCE_TINY: dict[str, BenchConfig] = {
    c.name: c
    for c in (
        BenchConfig("rectiny", 4, 16, 8, 8),
        BenchConfig("rectiny2", 4, 32, 8, 8),
        BenchConfig("rectinylong", 4, 64, 8, 8),
    )
}

#: every configuration by name (what the worker accepts)
ALL_CONFIGS: dict[str, BenchConfig] = {
    **CONFIGS,
    LONG.name: LONG,
    TINY.name: TINY,
    **RECURRENCE_CONFIGS,
    RECURRENCE_LONG.name: RECURRENCE_LONG,
    **RECURRENCE_TINY,
}


def step_flops(architecture: str, cfg: BenchConfig, options: object = None) -> float:
    """Matmul FLOPs of one training step: 3x the forward (backward costs two forward passes).

    Forward: the recurrent layer's `Spec.step_flops` at `options` (None: the architecture's
    defaults; for the projected cells the gate matmuls 2 B T (I + H) G H) plus the readout
    2 B T' H 10 (T' = T or 1). Element-wise gate arithmetic is left out, as usual for such counts.
    """
    spec = get(architecture)
    if options is None:
        options = spec.options()
    recurrent = spec.step_flops(options, cfg.batch, cfg.length, cfg.input_size, cfg.hidden)
    readout_steps = cfg.length if cfg.readout == "every_step" else 1
    readout = 2.0 * cfg.batch * readout_steps * cfg.hidden * N_CLASSES
    return 3.0 * (recurrent + readout)
