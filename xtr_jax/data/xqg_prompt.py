"""The xQG prompt: the one place that spells the encoder input of every question generator.

Training (``training/inputs.py``, the seqio task in ``data/preprocessors.py``), generation
(``xtr-jax generate``) and the language-tag prefixes all build their inputs from these, so a
trained generator is always asked in the words it was trained on. Pure Python: importing it
pulls in neither TensorFlow nor JAX.
"""

from __future__ import annotations

from xtr_jax.data.languages import language_name

XQG_PROMPT = "Generate a {language} question for this passage: "


def xqg_input(code: str, title: str, text: str) -> str:
  """``Generate a {Language} question for this passage: {title} {text}`` for ``code``."""
  passage = f"{title} {text}" if title else text
  return XQG_PROMPT.format(language=language_name(code)) + passage
