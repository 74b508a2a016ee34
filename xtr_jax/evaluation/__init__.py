"""xtr_jax.evaluation."""
