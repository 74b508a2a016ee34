"""SWIM-IR pair tasks (cross-lingual and monolingual) and xQG seq2seq tasks.

Splits ``train`` and ``validation``: 5% of the pairs, chosen by a hash of the pair id
(``sources.is_heldout``, the held-out split of the pair-file tasks in ``tasks/pairs.py``).

- ``swim_ir_xling_{code}``: query in ``code``, English passage (dual encoder).
- ``swim_ir_mono_{code}``: query and passage in ``code``.
- ``xqg_{code}``: English passage -> question in ``code``; inputs
  ``Generate a {Language} question for this passage: {title} {text}``.
"""

from __future__ import annotations

import functools

import seqio

from tasks._util import add_task
from xtr_jax.data import languages, preprocessors, sources

XLING_CODES = languages.SWIM_IR_CROSS_LINGUAL + languages.EXTRA_CROSS_LINGUAL
SHUFFLE_BUFFER = 1_000  # per task: a mixture of 32 languages buffers 32k examples
SETTING_PREFIX = {"cross_lingual": "swim_ir_xling", "monolingual": "swim_ir_mono"}


def pair_task_name(setting: str, code: str) -> str:
  return f"{SETTING_PREFIX[setting]}_{code}"


def _source(setting: str, code: str) -> seqio.FunctionDataSource:
  return seqio.FunctionDataSource(
    functools.partial(sources.swim_ir_pairs, setting=setting, code=code),
    splits=sources.PAIR_SPLITS,
  )


def register() -> None:
  settings = {"cross_lingual": XLING_CODES, "monolingual": languages.SWIM_IR_MONOLINGUAL}
  for setting, codes in settings.items():
    for code in codes:
      add_task(
        pair_task_name(setting, code),
        source=_source(setting, code),
        preprocessors=[preprocessors.tokenize, seqio.CacheDatasetPlaceholder()],
        output_features=preprocessors.PAIR_FEATURES,
        shuffle_buffer_size=SHUFFLE_BUFFER,
      )
  for code in XLING_CODES:
    add_task(
      f"xqg_{code}",
      source=_source("cross_lingual", code),
      preprocessors=[
        functools.partial(preprocessors.to_xqg, language_code=code),
        preprocessors.tokenize_batched_keep_text,
        preprocessors.strip_store_pad,
        seqio.CacheDatasetPlaceholder(),
        seqio.preprocessors.append_eos_after_trim,
      ],
      output_features=preprocessors.SEQ2SEQ_FEATURES,
      shuffle_buffer_size=SHUFFLE_BUFFER,
    )
