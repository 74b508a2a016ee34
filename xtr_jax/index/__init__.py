"""xtr_jax.index."""
