"""Pair-file tasks: SWIM-IR-layout JSONL files as a seqio task, tokenised by a given vocabulary.

The CPU, demo and sweep recipes train on pair files named by a glob (``PAIRS``) with a
vocabulary chosen at run time (a SentencePiece file, or the tokenizer a checkpoint carries),
so their task is registered when the batch factory is built rather than at import:
``pair_task(...)`` registers (replacing) a task whose name is a hash of its settings and
returns that name. Splits ``train`` / ``validation`` (``sources.is_heldout``).
"""

from __future__ import annotations

import functools
import hashlib
import json

import seqio

from tasks._util import add_task
from xtr_jax.data import preprocessors, sources

SHUFFLE_BUFFER = 10_000


def pair_task(
  pattern: str,
  tokenizer,
  *,
  heldout_fraction: float = 0.05,
  lowercase: bool = False,
  seq2seq: bool = False,
) -> str:
  """Registers the task of ``pattern`` read with ``tokenizer`` (a ``TextTokenizer``).

  Dual encoder: ``query``/``passage`` features, each with the tokenizer's prefix for its
  role. ``seq2seq``: xQG ``inputs`` (the prompt naming the record's ``code``) -> ``targets``.
  """
  settings = [pattern, tokenizer.fingerprint, tokenizer.query_prefix, tokenizer.passage_prefix]
  settings += [heldout_fraction, lowercase, seq2seq]
  name = "pairs_" + hashlib.sha1(json.dumps(settings).encode()).hexdigest()[:12]
  source = seqio.FunctionDataSource(
    functools.partial(
      sources.jsonl_pairs,
      pattern=pattern,
      heldout_fraction=heldout_fraction,
      lowercase=lowercase,
      xqg_prompt=preprocessors.XQG_PROMPT if seq2seq else None,
    ),
    splits=sources.PAIR_SPLITS,
  )
  if seq2seq:
    vocabulary = preprocessors.TokenizerVocabulary(tokenizer, "passage")
    steps = [
      preprocessors.tokenize_batched,
      preprocessors.strip_store_pad,
      seqio.CacheDatasetPlaceholder(),
      seqio.preprocessors.append_eos_after_trim,
    ]
    features = preprocessors.seq2seq_features(vocabulary)
  else:
    steps = [preprocessors.tokenize_batched, seqio.CacheDatasetPlaceholder()]
    features = preprocessors.pair_features(tokenizer=tokenizer)
  add_task(
    name,
    source=source,
    preprocessors=steps,
    output_features=features,
    shuffle_buffer_size=SHUFFLE_BUFFER,
  )
  return name
