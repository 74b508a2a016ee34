"""xtr_jax: XTR token retrieval and xQG query generation on mT5, in JAX/Flax."""

__version__ = "0.1.0"
