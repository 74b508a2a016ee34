"""Feature converters: task features -> fixed-shape model features.

Dual encoder (XTR, baselines): ``query``/``passage``/``negatives`` token ids -> ``query_tokens``
[Lq], ``passage_tokens`` [Lp], ``negative_tokens`` [N, Lp]; int32, 0 = padding, EOS appended
after truncation so a truncated sequence still ends with EOS. All-zero rows of
``negative_tokens`` are padding negatives. String ids pass through.
Seq2seq (xQG): seqio's ``EncDecFeatureConverter`` (``encoder_input_tokens``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping

import seqio
import tensorflow as tf

PASSTHROUGH = ("query_id", "passage_id", "lang")
# Accepted spellings of the dual-encoder lengths.
_ALIASES = {"query_tokens": "query", "passage_tokens": "passage", "negatives": "num_negatives"}


def normalize_lengths(feature_lengths: Mapping[str, int]) -> dict[str, int]:
  out = {}
  for k, v in feature_lengths.items():
    k = _ALIASES.get(k, k)
    if k not in ("query", "passage", "num_negatives"):
      raise ValueError(
        f"unknown dual-encoder feature length {k!r}; valid keys: query, passage, num_negatives"
      )
    if int(v) < 1:
      raise ValueError(f"feature length {k!r} must be >= 1, got {v}")
    out[k] = int(v)
  if "num_negatives" in out and "passage" not in out:
    raise ValueError("num_negatives needs a passage length (negatives use the passage length)")
  return out


def trim_append_eos(tokens: tf.Tensor, length: int, eos_id: int) -> tf.Tensor:
  """[..., T] ids -> [..., length]: keep ``length - 1`` tokens, append EOS, pad with 0."""
  tokens = tf.cast(tokens[: length - 1], tf.int32)
  tokens = tf.concat([tokens, [eos_id]], axis=0)
  return tf.pad(tokens, [[0, length - tf.shape(tokens)[0]]])


def trim_append_eos_2d(ragged: tf.RaggedTensor, num: int, length: int, eos_id: int) -> tf.Tensor:
  """[n, None] ragged ids -> [num, length]: first ``num`` rows, each EOS-terminated, 0-padded."""
  if not isinstance(ragged, tf.RaggedTensor):
    ragged = tf.RaggedTensor.from_tensor(ragged)
  rows = tf.cast(ragged[:num, : length - 1], tf.int32)
  eos = tf.fill([rows.nrows(), 1], tf.constant(eos_id, tf.int32))
  rows = tf.concat([rows, tf.RaggedTensor.from_tensor(eos)], axis=1)
  return rows.to_tensor(default_value=0, shape=[num, length])


def dual_encoder_features(
  ds: tf.data.Dataset, feature_lengths: Mapping[str, int], eos_id: int = 1
) -> tf.data.Dataset:
  """Maps tokenized task examples to fixed-length dual-encoder model features."""
  lengths = normalize_lengths(feature_lengths)
  spec = ds.element_spec
  for name in ("query", "passage"):
    if name in lengths and name not in spec:
      raise ValueError(
        f"feature length given for {name!r} but the dataset has only {', '.join(spec)}"
      )
  if "num_negatives" in lengths and "negatives" not in spec:
    raise ValueError(
      f"num_negatives={lengths['num_negatives']} but the dataset has no 'negatives' "
      f"(features: {', '.join(spec)})"
    )
  if not any(k in lengths for k in ("query", "passage")):
    raise ValueError("give a length for query and/or passage")

  def fn(ex):
    out = {k: ex[k] for k in PASSTHROUGH if k in ex}
    if "query" in lengths:
      out["query_tokens"] = trim_append_eos(ex["query"], lengths["query"], eos_id)
    if "passage" in lengths:
      out["passage_tokens"] = trim_append_eos(ex["passage"], lengths["passage"], eos_id)
    if "num_negatives" in lengths:
      out["negative_tokens"] = trim_append_eos_2d(
        ex["negatives"], lengths["num_negatives"], lengths["passage"], eos_id
      )
    return out

  return ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE)


def seq2seq_features(ds: tf.data.Dataset, feature_lengths: Mapping[str, int]) -> tf.data.Dataset:
  """seqio's encoder-decoder converter, unpacked (one example per row)."""
  bad = set(feature_lengths) - {"inputs", "targets"}
  if bad:
    raise ValueError(f"unknown seq2seq feature lengths {sorted(bad)}; valid keys: inputs, targets")
  return seqio.EncDecFeatureConverter(pack=False)(ds, dict(feature_lengths))
