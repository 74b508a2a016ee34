"""SeqIO preprocessors and output features shared by the tasks."""

from __future__ import annotations

import functools

import seqio
import tensorflow as tf

from xtr_jax.data import languages, vocab

XQG_PROMPT = "Generate a {language} question for this passage: "

_VOCAB = vocab.ConfiguredVocabulary()


def output_features(*names: str, required: tuple[str, ...] = ()) -> dict[str, seqio.Feature]:
  """Token features without EOS: the feature converters append EOS after truncation."""
  feats = {}
  for name in names:
    feats[name] = seqio.Feature(
      _VOCAB,
      add_eos=False,
      required=name in required,
      rank=2 if name == "negatives" else 1,
    )
  return feats


PAIR_FEATURES = output_features("query", "passage", required=("query", "passage"))
XOR_PAIR_FEATURES = output_features("query", "passage", "negatives", required=("query", "passage"))
QUERY_FEATURES = output_features("query", required=("query",))
PASSAGE_FEATURES = output_features("passage", required=("passage",))
SEQ2SEQ_FEATURES = {
  "inputs": seqio.Feature(_VOCAB, add_eos=True, required=True),
  "targets": seqio.Feature(_VOCAB, add_eos=True, required=True),
}

tokenize = functools.partial(seqio.preprocessors.tokenize, copy_pretokenized=False)
tokenize_keep_text = functools.partial(seqio.preprocessors.tokenize, copy_pretokenized=True)


def xqg_prompt(language: str) -> str:
  return XQG_PROMPT.format(language=language)


def to_xqg(dataset: tf.data.Dataset, language_code: str) -> tf.data.Dataset:
  """English passage -> question in ``language_code``: ``inputs``/``targets`` text features."""
  prefix = xqg_prompt(languages.language_name(language_code))

  @seqio.map_over_dataset
  def fn(ex):
    return {
      "inputs": tf.strings.join([prefix, ex["passage"]]),
      "targets": ex["query"],
      "passage_id": ex["passage_id"],
      "lang": ex["lang"],
    }

  return fn(dataset)
