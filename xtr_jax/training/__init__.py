"""Losses, partitioning and the t5x-style trainer (``xtr-jax train``)."""
