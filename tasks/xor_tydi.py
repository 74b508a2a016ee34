"""XOR-TyDi (XOR-Retrieve) tasks.

- ``xor_tydi_retrieve_{lang}``: (question, English gold passage) pairs; ``train`` from DPR
  positives (``xor_train_full.json``, with hard negatives) or the gold-paragraph pairs in the
  SWIM-IR layout; ``dev`` from dev queries + qrels + corpus.
- ``xor_tydi_retrieve_{lang}_{k}shot``: k train pairs per language under a fixed seed.
- ``xor_tydi_queries`` / ``xor_tydi_queries_{lang}``: queries to encode (train/dev/test), ids kept.
- ``xor_tydi_corpus``: the English passages to encode (split ``train``), ids kept.
"""

from __future__ import annotations

import functools

import seqio

import gin
from tasks._util import add_task
from xtr_jax.data import languages, preprocessors, sources

FEW_SHOT_SEED = 1234


@gin.configurable
def few_shot_ks(ks: tuple[int, ...] = (4, 16, 64, 256)) -> tuple[int, ...]:
  """The k values for which few-shot XOR-TyDi tasks and mixtures are registered."""
  return tuple(ks)


def register() -> None:
  for lang in languages.XOR_LANGUAGES:
    add_task(
      f"xor_tydi_retrieve_{lang}",
      source=seqio.FunctionDataSource(
        functools.partial(sources.xor_pairs, lang=lang), splits=("train", "dev")
      ),
      preprocessors=[preprocessors.tokenize_per_example],
      output_features=preprocessors.XOR_PAIR_FEATURES,
    )
    for k in few_shot_ks():
      add_task(
        f"xor_tydi_retrieve_{lang}_{k}shot",
        source=seqio.FunctionDataSource(
          functools.partial(sources.xor_pairs, lang=lang, k=k, few_shot_seed=FEW_SHOT_SEED),
          splits=("train", "dev"),
        ),
        preprocessors=[preprocessors.tokenize_per_example],
        output_features=preprocessors.XOR_PAIR_FEATURES,
      )
  for lang in (None, *languages.XOR_LANGUAGES):
    add_task(
      "xor_tydi_queries" + (f"_{lang}" if lang else ""),
      source=seqio.FunctionDataSource(
        functools.partial(sources.xor_queries, lang=lang), splits=("train", "dev", "test")
      ),
      preprocessors=[preprocessors.tokenize, seqio.CacheDatasetPlaceholder()],
      output_features=preprocessors.QUERY_FEATURES,
    )
  add_task(
    "xor_tydi_corpus",
    source=seqio.FunctionDataSource(sources.xor_corpus, splits=("train",)),
    preprocessors=[preprocessors.tokenize, seqio.CacheDatasetPlaceholder()],
    output_features=preprocessors.PASSAGE_FEATURES,
  )
