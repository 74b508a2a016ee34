"""Mixtures for the language-scaling study and few-shot XOR-TyDi.

``swim_ir_xling_{N}lang``: the first N languages of ``scaling_language_order()`` (N in 1, 2, 4,
8, 16, 32 up to the order's length), equal rates; ``swim_ir_xling_alllang``: every language of
the order whose file is present at registration (the whole order when none is).
``xqg_{N}lang`` / ``xqg_alllang`` likewise for xQG. ``xor_tydi_retrieve``: all XOR languages;
``xor_tydi_retrieve_{k}shot``: k pairs per language.
"""

from __future__ import annotations

import gin
from tasks import xor_tydi
from tasks._util import add_mixture
from xtr_jax.data import languages, locations

# The 13 languages of the real-data layout first, then the rest of SWIM-IR cross-lingual.
_FIRST = ("ja", "fi", "ru", "ar", "zh", "de", "es", "hi", "th", "vi", "tr", "el", "ro")
DEFAULT_ORDER = _FIRST + tuple(c for c in languages.SWIM_IR_CROSS_LINGUAL if c not in _FIRST)
SIZES = (1, 2, 4, 8, 16, 32)


@gin.configurable
def scaling_language_order(order: tuple[str, ...] = DEFAULT_ORDER) -> tuple[str, ...]:
  """Language order of the scaling study: mixture N takes the first N."""
  known = set(languages.SWIM_IR_CROSS_LINGUAL) | set(languages.EXTRA_CROSS_LINGUAL)
  bad = [c for c in order if c not in known]
  if bad:
    raise ValueError(
      f"scaling_language_order has unknown languages {bad}; valid: {', '.join(sorted(known))}"
    )
  return tuple(order)


def available(codes: tuple[str, ...]) -> tuple[str, ...]:
  out = []
  for code in codes:
    try:
      locations.swim_ir_file("cross_lingual", code)
      out.append(code)
    except FileNotFoundError:
      pass
  return tuple(out) or codes


def register() -> None:
  order = scaling_language_order()
  for prefix in ("swim_ir_xling", "xqg"):
    for n in SIZES:
      if n <= len(order):
        add_mixture(f"{prefix}_{n}lang", [f"{prefix}_{c}" for c in order[:n]])
    add_mixture(f"{prefix}_alllang", [f"{prefix}_{c}" for c in available(order)])
  add_mixture(
    "xor_tydi_retrieve", [f"xor_tydi_retrieve_{lang}" for lang in languages.XOR_LANGUAGES]
  )
  for k in xor_tydi.few_shot_ks():
    add_mixture(
      f"xor_tydi_retrieve_{k}shot",
      [f"xor_tydi_retrieve_{lang}_{k}shot" for lang in languages.XOR_LANGUAGES],
    )
