"""xtr_jax.xqg: question generation over a corpus (prompts, generator, language tags, checks)."""
