"""xtr_jax.training."""
