"""xtr_jax.experiments."""
