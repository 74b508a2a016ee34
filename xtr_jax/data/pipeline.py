"""``get_batches``: numpy batches of a SeqIO task or mixture, deterministic and resumable.

The stream is a pure function of (name, split, lengths, batch size, seed, shard): with
``start_step=n`` it yields exactly the batches an uninterrupted run yields from step n on (the
first n batches are recomputed and dropped, so resuming costs reading them once).
``batch_size`` is per host; host ``shard_index`` of ``num_shards`` sees a disjoint slice.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import seqio
import tensorflow as tf

from xtr_jax.data import feature_converters

CONVERTERS = ("dual_encoder", "seq2seq")


def get_dataset(
  name: str,
  split: str,
  feature_lengths: Mapping[str, int],
  batch_size: int,
  *,
  seed: int,
  start_step: int = 0,
  shard_index: int = 0,
  num_shards: int = 1,
  converter: str = "dual_encoder",
  shuffle: bool = True,
  repeat: bool = True,
  drop_remainder: bool = True,
) -> tf.data.Dataset:
  """The batched tf.data pipeline behind ``get_batches`` (``drop_remainder=False``: a last,
  smaller batch, for reading a split once)."""
  if converter not in CONVERTERS:
    raise ValueError(f"unknown converter {converter!r}; valid: {', '.join(CONVERTERS)}")
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if not 0 <= shard_index < num_shards:
    raise ValueError(f"shard_index={shard_index} not in [0, num_shards={num_shards})")
  if start_step < 0:
    raise ValueError(f"start_step must be >= 0, got {start_step}")
  try:
    provider = seqio.get_mixture_or_task(name)
  except ValueError:
    raise ValueError(
      f"no SeqIO task or mixture named {name!r} (did you `import tasks`?); "
      f"{len(seqio.TaskRegistry.names())} tasks and "
      f"{len(seqio.MixtureRegistry.names())} mixtures are registered"
    ) from None
  shard_info = seqio.ShardInfo(index=shard_index, num_shards=num_shards)
  kwargs = dict(
    split=split,
    shuffle=shuffle,
    seed=seed,
    shard_info=shard_info if num_shards > 1 else None,
    num_epochs=None if repeat else 1,
    use_cached=False,
  )
  if converter == "seq2seq":
    lengths = dict(feature_lengths)
    ds = provider.get_dataset(sequence_length=lengths, **kwargs)
    ds = feature_converters.seq2seq_features(ds, lengths)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
  else:
    vocabulary = _vocabulary(provider)
    if isinstance(provider, seqio.Mixture):  # mixtures drop non-output features unless told
      kwargs["passthrough_features"] = feature_converters.PASSTHROUGH
    ds = provider.get_dataset(sequence_length=None, trim_output_features=False, **kwargs)
    ds = feature_converters.dual_encoder_batches(
      ds,
      feature_lengths,
      batch_size,
      int(vocabulary.eos_id),
      int(vocabulary.pad_id),
      drop_remainder=drop_remainder,
    )
  if start_step:
    ds = ds.skip(start_step)
  options = tf.data.Options()
  options.deterministic = True
  return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def _vocabulary(provider) -> seqio.Vocabulary:
  return next(iter(provider.output_features.values())).vocabulary


def _to_numpy(batch: dict) -> dict[str, np.ndarray]:
  out = {}
  for k, v in batch.items():
    if v.dtype == object:  # string ids: bytes -> str
      v = np.array([s.decode("utf-8") for s in v.reshape(-1)], dtype=object).reshape(v.shape)
    out[k] = v
  return out


def get_batches(
  name: str,
  split: str,
  feature_lengths: Mapping[str, int],
  batch_size: int,
  *,
  seed: int,
  start_step: int = 0,
  shard_index: int = 0,
  num_shards: int = 1,
  converter: str = "dual_encoder",
  shuffle: bool = True,
  repeat: bool = True,
) -> Iterator[dict[str, np.ndarray]]:
  """Fixed-shape numpy batches (drop remainder) of a registered task or mixture.

  Dual encoder lengths: ``{"query": Lq, "passage": Lp[, "num_negatives": N]}`` ->
  ``query_tokens`` [B, Lq], ``passage_tokens`` [B, Lp], ``negative_tokens`` [B, N, Lp] (int32)
  plus string ids for tasks that have them. Seq2seq lengths: ``{"inputs": Li, "targets": Lt}``.
  """
  ds = get_dataset(
    name,
    split,
    feature_lengths,
    batch_size,
    seed=seed,
    start_step=start_step,
    shard_index=shard_index,
    num_shards=num_shards,
    converter=converter,
    shuffle=shuffle,
    repeat=repeat,
  )
  for batch in ds.as_numpy_iterator():
    yield _to_numpy(batch)
