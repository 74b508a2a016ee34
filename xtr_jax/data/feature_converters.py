"""Feature converters: task features -> fixed-shape model features.

Dual encoder (XTR, baselines): ``query``/``passage``/``negatives`` token ids -> ``query_tokens``
[Lq], ``passage_tokens`` [Lp], ``negative_tokens`` [N, Lp]; int32, padded with the
vocabulary's pad id (0 for T5's, 1 for XLM-R's), EOS appended after truncation so a truncated
sequence still ends with EOS. All-pad rows of ``negative_tokens`` are padding negatives. String
ids pass through. ``dual_encoder_batches`` converts whole batches (one ragged op per feature
per batch) when there are no negatives.
Seq2seq (xQG): seqio's ``EncDecFeatureConverter`` (``encoder_input_tokens``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping

import seqio
import tensorflow as tf

PASSTHROUGH = ("query_id", "passage_id", "lang")
# Pads the dense rows of token features kept in memory (``preprocessors.tokenize_batched``)
# and of padded batches here; no token id is negative.
STORE_PAD = -1
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


def trim_append_eos(tokens: tf.Tensor, length: int, eos_id: int, pad_id: int = 0) -> tf.Tensor:
  """[T] ids -> [length]: keep ``length - 1`` tokens, append EOS, pad with ``pad_id``."""
  tokens = tf.cast(tokens[: length - 1], tf.int32)
  tokens = tf.concat([tokens, [eos_id]], axis=0)
  return tf.pad(tokens, [[0, length - tf.shape(tokens)[0]]], constant_values=pad_id)


def trim_append_eos_2d(
  ragged: tf.RaggedTensor, num: int, length: int, eos_id: int, pad_id: int = 0
) -> tf.Tensor:
  """[n, None] ragged ids -> [num, length]: first ``num`` rows, each EOS-terminated, padded."""
  if not isinstance(ragged, tf.RaggedTensor):
    ragged = tf.RaggedTensor.from_tensor(ragged)
  rows = tf.cast(ragged[:num, : length - 1], tf.int32)
  eos = tf.fill([rows.nrows(), 1], tf.constant(eos_id, tf.int32))
  rows = tf.concat([rows, tf.RaggedTensor.from_tensor(eos)], axis=1)
  return rows.to_tensor(default_value=pad_id, shape=[num, length])


def _check_dual_encoder(ds: tf.data.Dataset, feature_lengths: Mapping[str, int]) -> dict:
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
  return lengths


def dual_encoder_features(
  ds: tf.data.Dataset, feature_lengths: Mapping[str, int], eos_id: int = 1, pad_id: int = 0
) -> tf.data.Dataset:
  """Maps tokenized task examples to fixed-length dual-encoder model features."""
  lengths = _check_dual_encoder(ds, feature_lengths)

  def fn(ex):
    out = {k: ex[k] for k in PASSTHROUGH if k in ex}
    for name in ("query", "passage"):
      if name in lengths:
        out[f"{name}_tokens"] = trim_append_eos(ex[name], lengths[name], eos_id, pad_id)
    if "num_negatives" in lengths:
      out["negative_tokens"] = trim_append_eos_2d(
        ex["negatives"], lengths["num_negatives"], lengths["passage"], eos_id, pad_id
      )
    return out

  return ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE)


def trim_append_eos_batch(ragged: tf.RaggedTensor, length: int, eos_id: int, pad_id: int):
  """[B, None] ragged ids -> [B, length]: ``trim_append_eos`` on every row at once."""
  rows = tf.cast(ragged[:, : length - 1], tf.int32)
  eos = tf.fill([rows.nrows(), 1], tf.constant(eos_id, tf.int32))
  rows = tf.concat([rows, tf.RaggedTensor.from_tensor(eos)], axis=1)
  return rows.to_tensor(default_value=pad_id, shape=[None, length])


def dual_encoder_batches(
  ds: tf.data.Dataset,
  feature_lengths: Mapping[str, int],
  batch_size: int,
  eos_id: int = 1,
  pad_id: int = 0,
  drop_remainder: bool = True,
) -> tf.data.Dataset:
  """Batches of dual-encoder features; same values as
  ``dual_encoder_features`` then ``batch``, converted a batch at a time without negatives."""
  lengths = _check_dual_encoder(ds, feature_lengths)
  if "num_negatives" in lengths:
    ds = dual_encoder_features(ds, lengths, eos_id, pad_id)
    return ds.batch(batch_size, drop_remainder=drop_remainder)
  names = [n for n in ("query", "passage") if n in lengths]
  keep = [k for k in PASSTHROUGH if k in ds.element_spec] + names
  if set(ds.element_spec) - set(keep):  # only what the batch keeps is batched
    ds = ds.map(lambda ex: {k: ex[k] for k in keep})
  ragged = any(isinstance(ds.element_spec[n], tf.RaggedTensorSpec) for n in names)
  if ragged:
    ds = ds.ragged_batch(batch_size, drop_remainder=drop_remainder)
  else:  # dense rows (in-memory tasks): pad the batch with STORE_PAD, stripped below
    pads = {k: tf.constant(b"" if k in PASSTHROUGH else STORE_PAD, spec.dtype)
            for k, spec in ds.element_spec.items()}  # fmt: skip
    ds = ds.padded_batch(batch_size, padding_values=pads, drop_remainder=drop_remainder)

  def fn(batch):
    out = {k: batch[k] for k in PASSTHROUGH if k in batch}
    for name in names:
      ids = batch[name]
      if not isinstance(ids, tf.RaggedTensor):
        ids = tf.RaggedTensor.from_tensor(ids, padding=tf.cast(STORE_PAD, ids.dtype))
      out[f"{name}_tokens"] = trim_append_eos_batch(ids, lengths[name], eos_id, pad_id)
    return out

  return ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE)


def seq2seq_features(ds: tf.data.Dataset, feature_lengths: Mapping[str, int]) -> tf.data.Dataset:
  """seqio's encoder-decoder converter, unpacked (one example per row)."""
  bad = set(feature_lengths) - {"inputs", "targets"}
  if bad:
    raise ValueError(f"unknown seq2seq feature lengths {sorted(bad)}; valid keys: inputs, targets")
  return seqio.EncDecFeatureConverter(pack=False)(ds, dict(feature_lengths))
