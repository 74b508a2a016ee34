"""xtr_jax.models."""
