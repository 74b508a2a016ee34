"""xtr_jax.data."""
