"""Training-throughput benchmark: seqbench's trainer against PyTorch and plain Flax (issue: speed)."""
