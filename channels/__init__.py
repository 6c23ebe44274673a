"""Channel adapters: each turns its input into one `InboundEvent` and nothing else."""
