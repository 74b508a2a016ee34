"""xtr_jax.checkpoints."""
