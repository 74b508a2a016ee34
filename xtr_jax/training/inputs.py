"""Batch factories for the trainer: ``factory(start_step, shard_index, num_shards) -> Iterator``.

The trainer only needs such a factory; it recreates the iterator at the restored step when it
resumes. Every factory reads seqio tasks (``xtr_jax.data.pipeline``), the one training-data
path:

- ``pairs_batches``: pair files (a ``PAIRS`` glob in the SWIM-IR layout) as the seqio task of
  ``tasks.pairs``, tokenised with a SentencePiece model (trained on the training split on first
  use) or the tokenizer a checkpoint carries (``tokenizer_checkpoint``, e.g. ``me5-small``).
  The split is tokenised once, in batches, and kept in memory; step s is rows
  [s*B, (s+1)*B) of per-epoch permutations seeded by (seed, epoch), so a resumed run sees
  exactly the batches an uninterrupted one does. ``jsonl_pairs_batches`` is its old name.
- ``seqio_batches``: any registered task or mixture, streamed (shuffle buffers, mixing).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import numpy as np

import gin
from xtr_jax import io as xio
from xtr_jax.data import vocab
from xtr_jax.data.pairs import is_heldout, iter_pair_rows, lowercased, read_pairs  # noqa: F401

Batch = dict[str, np.ndarray]
BatchFactory = Callable[[int, int, int], Iterator[Batch]]
PAD, EOS = 0, 1
CONVERTERS = ("dual_encoder", "seq2seq")
# ``heldout`` is the split's name in run configs written before it was ``validation``.
SPLITS = {"train": "train", "validation": "validation", "heldout": "validation"}
READ_BATCH = 1024  # rows per tf.data batch when a split is read into memory


def train_sentencepiece(texts: list[str], path: str, vocab_size: int) -> str:
  """The recipes' vocabulary: ``data.vocab``'s one trainer, sampling 200k sentences."""
  return vocab.train_sentencepiece(texts, path, vocab_size, input_sentence_size=200_000)


def _vocabulary_texts(records: list[dict], heldout_fraction: float, seq2seq: bool) -> list[str]:
  """The training split's queries and distinct passages (and the xQG prompts' words)."""
  train = [r for r in records if not is_heldout(r["id"], heldout_fraction)]
  texts = [r["query"] for r in train] + sorted({r["passage"] for r in train})
  if seq2seq:
    from xtr_jax.data.languages import language_name  # noqa: PLC0415
    from xtr_jax.data.preprocessors import XQG_PROMPT  # noqa: PLC0415

    codes = sorted({r["code"] for r in train if r["code"]})
    texts += [XQG_PROMPT.format(language=language_name(c)) for c in codes]
  return texts


def pair_tokenizer(
  pattern: str,
  vocabulary: str,
  *,
  tokenizer_checkpoint: str | None = None,
  train_vocab_size: int | None = None,
  heldout_fraction: float = 0.05,
  lowercase: bool = False,
  seq2seq: bool = False,
):
  """The tokenizer pairs are read with: a checkpoint's, or a SentencePiece file (trained on the
  training split's texts when absent and ``train_vocab_size`` is set)."""
  if tokenizer_checkpoint:
    return _checkpoint_tokenizer(tokenizer_checkpoint)
  from xtr_jax.data.tokenizer import SentencePieceTokenizer  # noqa: PLC0415

  if not xio.exists(vocabulary):
    if not train_vocab_size:
      raise FileNotFoundError(f"SentencePiece model {vocabulary!r} not found")
    records = read_pairs(pattern)
    if lowercase:
      records = lowercased(records)
    logging.info("training a %d-piece SentencePiece model -> %s", train_vocab_size, vocabulary)
    texts = _vocabulary_texts(records, heldout_fraction, seq2seq)
    train_sentencepiece(texts, vocabulary, train_vocab_size)
  return SentencePieceTokenizer(vocabulary)


def _checkpoint_tokenizer(checkpoint: str):
  from xtr_jax.checkpoints.embedded import resolve_checkpoint  # noqa: PLC0415
  from xtr_jax.checkpoints.orbax_io import load_metadata  # noqa: PLC0415
  from xtr_jax.checkpoints.tokenizers import tokenizer_for  # noqa: PLC0415

  checkpoint = resolve_checkpoint(checkpoint)
  meta = load_metadata(checkpoint)
  return tokenizer_for(checkpoint, meta.get("extra", {}), None)


def _import_tasks():
  """``import tasks`` (registers the tasks and mixtures) from a factory gin is calling.

  Factories run after the command has parsed and locked gin; the data modules they import
  declare configurables (data locations, the vocabulary path), which gin accepts only while
  unlocked.
  """
  with gin.unlock_config():
    import tasks  # noqa: PLC0415
    import tasks.pairs  # noqa: F401, PLC0415
  return tasks


def read_split(name: str, split: str, lengths: dict[str, int], converter: str) -> Batch:
  """A task split, converted to model features, as in-memory arrays (file order).

  String features (ids, language) are dropped: the trainer feeds every feature to the model.
  """
  from xtr_jax.data import pipeline  # noqa: PLC0415

  ds = pipeline.get_dataset(
    name, split, lengths, READ_BATCH, seed=0, converter=converter, shuffle=False,
    repeat=False, drop_remainder=False,
  )  # fmt: skip
  parts: dict[str, list[np.ndarray]] = {}
  for batch in ds.as_numpy_iterator():
    for k, v in batch.items():
      if v.dtype != object:
        parts.setdefault(k, []).append(v.astype(np.int32))
  if not parts:
    return {}
  return {k: np.concatenate(v) for k, v in parts.items()}


def _epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
  return np.random.default_rng([seed, epoch]).permutation(n)


def epoch_batches(arrays: Batch, batch_size: int, seed: int) -> BatchFactory:
  """The resumable stream over in-memory features: step s is rows [s*B, (s+1)*B) of the
  per-epoch permutations; the ragged tail of each epoch is dropped; shard k of n takes its
  B/n contiguous rows of the step."""
  n = len(next(iter(arrays.values())))
  per_epoch = n // batch_size

  def factory(start_step: int = 0, shard_index: int = 0, num_shards: int = 1) -> Iterator[Batch]:
    if batch_size % num_shards:
      raise ValueError(f"batch_size={batch_size} not divisible by num_shards={num_shards}")
    local = batch_size // num_shards
    step = start_step
    while True:
      epoch, offset = divmod(step, per_epoch)
      rows = _epoch_order(n, seed, epoch)[offset * batch_size : (offset + 1) * batch_size]
      rows = rows[shard_index * local : (shard_index + 1) * local]
      yield {k: v[rows] for k, v in arrays.items()}
      step += 1

  factory.steps_per_epoch = per_epoch  # type: ignore[attr-defined]
  return factory


@gin.configurable
def pairs_batches(
  pattern: str = gin.REQUIRED,
  vocabulary: str = "",
  batch_size: int = 32,
  query_length: int = 32,
  passage_length: int = 128,
  split: str = "train",
  heldout_fraction: float = 0.05,
  seed: int = 0,
  converter: str = "dual_encoder",
  train_vocab_size: int | None = None,
  lowercase: bool = False,
  tokenizer_checkpoint: str | None = None,
) -> BatchFactory:
  """Deterministic, resumable batches of the pair files' seqio task (module docstring).

  ``split``: ``train`` or ``validation`` (a hash of ``_id`` holds ``heldout_fraction`` out;
  it never enters training). ``converter='seq2seq'`` gives passage -> query batches with
  seqio's EncDecFeatureConverter names for xQG, the encoder reading the prompt that names
  the record's language, as ``xtr-jax generate`` builds it. ``lowercase`` lower-cases queries
  and passages before the vocabulary sees them (as the released XTR models' inference code
  does); a vocabulary trained with it must be used with it. ``tokenizer_checkpoint`` (a
  checkpoint dir or an embedded name such as ``me5-small``) takes the tokenizer that
  checkpoint carries instead of ``vocabulary``, with its query/passage prefixes and pad id.
  """
  pair_task = _import_tasks().pairs.pair_task
  if split not in SPLITS:
    raise ValueError(f"pairs_batches.split={split!r}; expected 'train' or 'validation'")
  if converter not in CONVERTERS:
    raise ValueError(f"pairs_batches.converter={converter!r}; expected one of {CONVERTERS}")
  if tokenizer_checkpoint and converter != "dual_encoder":
    raise ValueError("pairs_batches.tokenizer_checkpoint needs converter='dual_encoder'")
  seq2seq = converter == "seq2seq"
  tokenizer = pair_tokenizer(
    pattern, vocabulary, tokenizer_checkpoint=tokenizer_checkpoint,
    train_vocab_size=train_vocab_size, heldout_fraction=heldout_fraction,
    lowercase=lowercase, seq2seq=seq2seq,
  )  # fmt: skip
  name = pair_task(
    pattern, tokenizer, heldout_fraction=heldout_fraction, lowercase=lowercase, seq2seq=seq2seq
  )
  if seq2seq:
    lengths = {"inputs": passage_length, "targets": query_length}
  else:
    lengths = {"query": query_length, "passage": passage_length}
  arrays = read_split(name, SPLITS[split], lengths, converter)
  n = len(next(iter(arrays.values()))) if arrays else 0
  if n < batch_size:
    raise ValueError(
      f"split {split!r} of {pattern!r} has {n} pairs, fewer than batch_size={batch_size}"
    )
  logging.info("%s: %d %s pairs (seqio task %s)", pattern, n, split, name)
  return epoch_batches(arrays, batch_size, seed)


# The name the run configs used before the pairs became a seqio task; same arguments.
jsonl_pairs_batches = gin.external_configurable(
  pairs_batches.__wrapped__, "jsonl_pairs_batches", module="xtr_jax.training.inputs"
)


@gin.configurable
def seqio_batches(
  name: str = gin.REQUIRED,
  split: str = "train",
  feature_lengths: dict[str, int] | None = None,
  batch_size: int = 32,
  seed: int = 0,
  converter: str = "dual_encoder",
) -> BatchFactory:
  """``xtr_jax.data.pipeline.get_batches`` (seqio tasks/mixtures) as a batch factory.

  Registers the project's tasks (``import tasks``) first; string features (ids) are dropped,
  since the trainer feeds every feature to the model.
  """
  _import_tasks()

  def factory(start_step: int = 0, shard_index: int = 0, num_shards: int = 1):
    from xtr_jax.data import pipeline  # noqa: PLC0415

    batches = pipeline.get_batches(
      name,
      split,
      feature_lengths,
      batch_size,
      seed=seed,
      start_step=start_step,
      shard_index=shard_index,
      num_shards=num_shards,
      converter=converter,
    )
    for batch in batches:
      yield {k: v for k, v in batch.items() if v.dtype != object}

  return factory
