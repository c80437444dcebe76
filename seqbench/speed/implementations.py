"""One full training step (forward, backward, Adam update) per implementation, on fixed data.

Each builder returns a `Runner`: `run()` performs `steps_per_call` training steps and waits for them;
`compile()` does whatever the first call would compile and returns the seconds it took.

- seqbench: `SequenceModel` under the trainer's scheme: `steps_per_call` steps inside one jitted
  `lax.scan` (seeds > 1: the seeds vmapped inside it).
- flax: plain Flax linen `nn.RNN(<the architecture's Spec.flax_peer cell>)`, one jitted step per
  call.
- torch: the PyTorch module named by the architecture's `Spec.torch_module` (batch_first), or the
  packaged PyTorch reference in `TORCH_REFERENCES` (run in its parallel training form), eager, one
  step per call, on the GPU when PyTorch sees one and on the CPU otherwise.

An architecture without a peer (`flax_peer` None; `torch_module` None and no packaged reference,
or its package not installed) is skipped for that implementation (`missing_peer` says why; the
builders raise `NoPeer`). `scan` (seqbench only) picks one of the architecture's `Spec.scans`.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import util

import numpy as np

from seqbench.models.architectures import get
from seqbench.speed.configs import N_CLASSES, BenchConfig


@dataclass
class Runner:
    run: Callable[[], None]
    compile: Callable[[], float]
    steps_per_call: int
    #: XLA's buffer sizes of the compiled program, MiB (JAX implementations, after compile())
    memory_mb: Callable[[], float | None] = lambda: None
    #: peak memory in use on the accelerator so far, MiB (None on the CPU)
    device_peak_mb: Callable[[], float | None] = lambda: None


#: packaged PyTorch references of architectures with no torch.nn module: architecture ->
#: (pip requirement, module, class); the class is built as `cls(dim=I, expansion_factor=H / I)`
#: (maps I -> H, no output projection) and called on (B, T, I) batch-first inputs, T > 1 (its
#: parallel, log-space form)
TORCH_REFERENCES: dict[str, tuple[str, str, str]] = {
    "mingru": ("mingru-pytorch==0.2.1", "minGRU_pytorch.minGRU", "minGRU"),
    "minlstm": ("mingru-pytorch==0.2.1", "minGRU_pytorch.minLSTM", "minLSTM"),
}


def _data(cfg: BenchConfig, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    inputs = rng.standard_normal((cfg.batch, cfg.length, cfg.input_size), dtype=np.float32)
    label_shape = (cfg.batch, cfg.length) if cfg.readout == "every_step" else (cfg.batch,)
    return inputs, rng.integers(0, N_CLASSES, label_shape).astype(np.int32)


def _jax_runner(
    model, cfg: BenchConfig, steps: int, seeds: int, scan: bool, seeds_over: str = "vmap"
) -> Runner:
    """Adam on the cross-entropy of linen `model` (inputs (B, T, I) -> logits); `steps` steps per
    call under lax.scan, or one jitted step per call; several seeds vmapped or, with `seeds_over`
    "map", one after another in the program (trainer.seeds_over)."""
    import jax
    import optax

    example = jax.numpy.zeros((1, 1, cfg.input_size))

    def init_params(key):
        return model.init(key, example)["params"]

    def loss_fn(params, x, y):
        logits = model.apply({"params": params}, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    optimizer = optax.adam(1e-3)
    # arguments of the program, not constants closed over: XLA would copy a constant into the
    # program (about three times its size in resident memory at T=16,384), which the trainer
    # never does (it passes its data in as arguments too)
    data = jax.device_put(_data(cfg))

    def step(state, x, y):
        params, opt_state = state
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    def init(key):
        params = init_params(key)
        return params, optimizer.init(params)

    keys = jax.random.split(jax.random.key(0), seeds)
    # lax.map, not vmap: see TrainProgram.batched_init (batched QR can deadlock XLA's CPU pool)
    state = jax.jit(lambda k: jax.lax.map(init, k))(keys) if seeds > 1 else jax.jit(init)(keys[0])

    def chunk(state, data):
        if scan:
            return jax.lax.scan(lambda s, _: step(s, *data), state, None, length=steps)
        return step(state, *data)

    if seeds == 1:
        program = chunk
    elif seeds_over == "map":
        program = lambda state, data: jax.lax.map(lambda s: chunk(s, data), state)  # noqa: E731
    else:
        program = jax.vmap(chunk, in_axes=(0, None))
    jitted = jax.jit(program, donate_argnums=0)
    holder: dict = {"state": state}

    def compile_() -> float:
        start = time.perf_counter()
        holder["fn"] = jitted.lower(holder["state"], data).compile()
        return time.perf_counter() - start

    def memory_mb() -> float | None:
        analysis = holder["fn"].memory_analysis()
        if analysis is None:
            return None
        total = (
            analysis.temp_size_in_bytes
            + analysis.argument_size_in_bytes
            + analysis.output_size_in_bytes
            - analysis.alias_size_in_bytes
        )
        return total / 2**20

    def device_peak_mb() -> float | None:
        stats = jax.devices()[0].memory_stats()  # None on the CPU
        peak = (stats or {}).get("peak_bytes_in_use")
        return None if peak is None else peak / 2**20

    def run() -> None:
        holder["state"], loss = holder["fn"](holder["state"], data)
        jax.block_until_ready(loss)

    return Runner(run, compile_, steps if scan else 1, memory_mb, device_peak_mb)


class NoPeer(ValueError):
    """The architecture has no peer in this implementation (one line: which, and why)."""


def missing_peer(impl: str, architecture: str) -> str | None:
    """Why `impl` cannot run `architecture` (no such peer), or None when it can."""
    spec = get(architecture)
    if impl == "flax" and spec.flax_peer is None:
        return f"architecture {architecture!r} has no plain-Flax peer (its Spec.flax_peer is None)"
    if impl == "torch" and spec.torch_module is None:
        if architecture not in TORCH_REFERENCES:
            return (
                f"architecture {architecture!r} has no PyTorch peer (its Spec.torch_module is "
                "None and there is no packaged reference in TORCH_REFERENCES)"
            )
        requirement, module, _ = TORCH_REFERENCES[architecture]
        package = module.split(".")[0]
        if util.find_spec(package) is None:
            return (
                f"the PyTorch reference of {architecture!r} is not installed "
                f"(pip install {requirement})"
            )
    return None


def scan_options(cell: str, scan: str | None):
    """The options of `cell` with `scan` (one of its `Spec.scans`), or None (the defaults) when
    `scan` is None; ValueError for a scan the architecture does not have."""
    spec = get(cell)
    if scan is None:
        return None
    if scan not in spec.scans:
        have = ", ".join(spec.scans) or "none (one way to run)"
        raise ValueError(f"architecture {cell!r} has no scan {scan!r}; its scans: {have}")
    return spec.options(scan=scan)


def seqbench_runner(
    cell: str,
    cfg: BenchConfig,
    steps: int = 4,
    seeds: int = 1,
    remat: bool = False,
    scan: str | None = None,
    remat_chunk: int | None = None,
    seeds_over: str = "vmap",
    input_projection: str = "in_step",
) -> Runner:
    """`cell`: a registered architecture's name, with its default options but `scan` (None: the
    default scan). One layer, plain block, inputs fed unchanged (as the peers). `remat`,
    `remat_chunk`, `seeds_over`, `input_projection`: trainer.remat, trainer.remat_chunk,
    trainer.seeds_over ("vmap" or "map") and trainer.input_projection ("in_step" or "hoisted")."""
    from seqbench.models.sequence import SequenceModel

    model = SequenceModel(
        architecture=get(cell),
        cell=scan_options(cell, scan),
        hidden_size=cfg.hidden,
        output_dim=N_CLASSES,
        readout=cfg.readout,
        remat=remat,
        remat_chunk=remat_chunk,
        hoist_projection=input_projection == "hoisted",
    )
    return _jax_runner(model, cfg, steps, seeds, scan=True, seeds_over=seeds_over)


def flax_runner(cell: str, cfg: BenchConfig, steps: int = 1, seeds: int = 1) -> Runner:
    import flax.linen as nn

    reason = missing_peer("flax", cell)
    if reason is not None:
        raise NoPeer(f"flax: {reason}")
    peer = get(cell).flax_peer
    assert peer is not None

    class PlainFlax(nn.Module):
        @nn.compact
        def __call__(self, x):
            outputs = nn.RNN(peer(cfg.hidden))(x)
            if cfg.readout == "last":
                outputs = outputs[:, -1]
            return nn.Dense(N_CLASSES)(outputs)

    return _jax_runner(PlainFlax(), cfg, steps, seeds, scan=False)


def _torch_layer(cell: str, cfg: BenchConfig):
    """(module, returns_tuple): the torch.nn module of `Spec.torch_module` (returns (outputs, h))
    or the packaged reference of `TORCH_REFERENCES` (returns the outputs), batch first, I -> H."""
    import torch

    name = get(cell).torch_module
    if name is not None:
        return getattr(torch.nn, name)(cfg.input_size, cfg.hidden, batch_first=True), True
    _, module, cls = TORCH_REFERENCES[cell]
    if cfg.length < 2:
        raise ValueError(f"the PyTorch reference of {cell!r} runs in parallel only for T > 1")
    expansion = cfg.hidden / cfg.input_size
    if int(cfg.input_size * expansion) != cfg.hidden:  # the class's inner width, rounded down
        raise ValueError(f"{cls}(dim={cfg.input_size}) cannot map to H={cfg.hidden}")
    layer = getattr(importlib.import_module(module), cls)
    return layer(cfg.input_size, expansion_factor=expansion, proj_out=False), False


def torch_runner(cell: str, cfg: BenchConfig, steps: int = 1, seeds: int = 1) -> Runner:
    import torch

    reason = missing_peer("torch", cell)
    if reason is not None:
        raise NoPeer(f"torch: {reason}")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    rnn, returns_tuple = _torch_layer(cell, cfg)
    rnn = rnn.to(device)
    head = torch.nn.Linear(cfg.hidden, N_CLASSES).to(device)
    parameters = [*rnn.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=1e-3)
    x_np, y_np = _data(cfg)
    x, y = torch.from_numpy(x_np).to(device), torch.from_numpy(y_np).long().to(device)

    def run() -> None:
        optimizer.zero_grad(set_to_none=True)
        outputs = rnn(x)
        if returns_tuple:
            outputs = outputs[0]
        if cfg.readout == "last":
            logits = head(outputs[:, -1])
            loss = torch.nn.functional.cross_entropy(logits, y)
        else:
            logits = head(outputs)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, N_CLASSES), y.reshape(-1))
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def device_peak_mb() -> float | None:
        if device.type != "cuda":
            return None
        return torch.cuda.max_memory_allocated(device) / 2**20

    return Runner(run, lambda: 0.0, 1, device_peak_mb=device_peak_mb)


IMPLEMENTATIONS: dict[str, Callable[..., Runner]] = {
    "seqbench": seqbench_runner,
    "flax": flax_runner,
    "torch": torch_runner,
}
