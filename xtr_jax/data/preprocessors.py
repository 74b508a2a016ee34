"""SeqIO preprocessors, output features and vocabularies shared by the tasks.

Tokenisation runs on batches of strings (``tokenize_batched``: one tokenizer call per
``TOKENIZE_BATCH`` examples instead of one per example), and a dataset that fits in memory is
tokenised once, when the pipeline is built, rather than again every epoch. ``TokenizerVocabulary`` makes any project tokenizer
(``data/tokenizer.py``: SentencePiece or Hugging Face, with its query/passage prefix) a seqio
``Vocabulary``, so a BERT-family backbone's own vocabulary feeds the same tasks as mT5's.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import numpy as np
import seqio
import tensorflow as tf

from xtr_jax.data import languages, vocab
from xtr_jax.data.feature_converters import STORE_PAD
from xtr_jax.data.xqg_prompt import XQG_PROMPT  # the one spelling of the prompt (pure Python)

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

tokenize_keep_text = functools.partial(seqio.preprocessors.tokenize, copy_pretokenized=True)
# Per-example tokenisation, for features that are lists of strings (XOR-TyDi's negatives).
tokenize_per_example = functools.partial(seqio.preprocessors.tokenize, copy_pretokenized=False)

TOKENIZE_BATCH = 512
# Datasets of at most this many examples are tokenised up front and kept in memory.
MAX_CACHED_EXAMPLES = 2_000_000
MAX_STORED_BYTES = 512 << 20  # per token feature, as a dense matrix; ragged above


def tokenize_batched(
  dataset: tf.data.Dataset,
  output_features: Mapping[str, seqio.Feature],
  copy_pretokenized: bool = False,
  batch_size: int = TOKENIZE_BATCH,
) -> tf.data.Dataset:
  """seqio's ``tokenize`` on batches of scalar string features, same ids and order.

  A dataset of known size up to ``MAX_CACHED_EXAMPLES`` (the in-memory sources) is
  tokenised once, here, in parallel batches, and kept as tensors: the training loop then
  only shuffles, mixes and pads, and later epochs and shuffle refills cost no tokenizer call.
  """
  spec = dataset.element_spec
  names = [k for k in output_features if k in spec and spec[k].dtype == tf.string]
  bad = [k for k in names if spec[k].shape.rank != 0]
  if bad:
    raise ValueError(f"tokenize_batched needs scalar string features; {bad} are not")
  size = int(dataset.cardinality())

  def fn(batch):
    out = dict(batch)
    for k in names:
      if copy_pretokenized:
        out[f"{k}_pretokenized"] = batch[k]
      out[k] = output_features[k].vocabulary.encode_tf(batch[k])
    return out

  batches = dataset.batch(batch_size).map(fn, num_parallel_calls=tf.data.AUTOTUNE)
  if 0 < size <= MAX_CACHED_EXAMPLES and tf.executing_eagerly():
    return _in_memory(batches)
  return batches.unbatch()


def _in_memory(batches: tf.data.Dataset) -> tf.data.Dataset:
  """The examples of a batched dataset, computed now, as one ``from_tensor_slices``.

  Token rows are stored as dense rows padded with ``STORE_PAD`` (slicing dense rows is several
  times cheaper per example in tf.data than slicing ragged ones); ``strip_store_pad`` or the
  dual-encoder converter drops that padding.
  """
  parts: dict[str, list] = {}
  for batch in batches:
    for k, v in batch.items():
      parts.setdefault(k, []).append(v)
  columns = {}
  for k, v in parts.items():
    column = tf.concat(v, 0)
    if isinstance(column, tf.RaggedTensor):
      rows, width = int(column.nrows()), int(tf.reduce_max(column.row_lengths()))
      if rows * width * 4 <= MAX_STORED_BYTES:
        column = column.to_tensor(default_value=STORE_PAD)
    columns[k] = column
  return tf.data.Dataset.from_tensor_slices(columns)


def strip_store_pad(dataset: tf.data.Dataset) -> tf.data.Dataset:
  """Drops ``STORE_PAD`` from token features (for converters other than the dual encoder's)."""

  def fn(ex):
    out = dict(ex)
    for k, v in ex.items():
      if v.dtype == tf.int32 and not isinstance(v, tf.RaggedTensor) and v.shape.rank == 1:
        out[k] = tf.boolean_mask(v, v != STORE_PAD)
    return out

  return dataset.map(fn, num_parallel_calls=tf.data.AUTOTUNE)


tokenize = tokenize_batched
tokenize_batched_keep_text = functools.partial(tokenize_batched, copy_pretokenized=True)


class TokenizerVocabulary(seqio.Vocabulary):
  """A project tokenizer (``TextTokenizer``) as a seqio vocabulary for one role.

  ``encode`` gives the tokenizer's ids for ``prefix + text`` without the closing token
  (seqio's convention: the feature converter appends EOS after truncation), so the
  converted features equal ``tokenizer.encode(texts, length, role=role)`` padded with the
  tokenizer's ``pad_id``: XLM-R's ``<s> pieces </s>`` with pad 1, SentencePiece's
  ``pieces </s>`` with pad 0. TF encoding calls the tokenizer once per batch of strings.
  """

  def __init__(self, tokenizer, role: str = "passage"):
    super().__init__(extra_ids=0)
    if role not in ("query", "passage"):
      raise ValueError(f"TokenizerVocabulary role must be 'query' or 'passage', got {role!r}")
    self.tokenizer, self.role = tokenizer, role

  @property
  def eos_id(self) -> int:
    return int(self.tokenizer.eos_id)

  @property
  def pad_id(self) -> int:
    return int(self.tokenizer.pad_id)

  @property
  def bos_id(self) -> int | None:
    return getattr(self.tokenizer, "bos_id", None)

  @property
  def unk_id(self) -> int | None:
    return None

  @property
  def _base_vocab_size(self) -> int:
    return int(self.tokenizer.vocab_size)

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    ids = self.tokenizer.encode(list(texts), 1 << 30, role=self.role)
    return [x[:-1] for x in ids]  # drop the closing EOS: the converter appends it

  def _encode(self, s: str) -> list[int]:
    return self.encode_batch([s])[0]

  def _decode(self, ids) -> str:
    return self.tokenizer.decode([int(i) for i in ids if int(i) != self.pad_id])

  def _encode_np(self, texts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ids = self.encode_batch([t.decode("utf-8") for t in texts.reshape(-1)])
    lengths = np.array([len(x) for x in ids], np.int64)
    flat = np.fromiter((i for x in ids for i in x), np.int32, int(lengths.sum()))
    return flat, lengths

  def _encode_tf(self, s: tf.Tensor) -> tf.Tensor | tf.RaggedTensor:
    s = tf.convert_to_tensor(s, tf.string)
    flat, lengths = tf.numpy_function(self._encode_np, [s], (tf.int32, tf.int64), stateful=False)
    flat.set_shape([None])
    lengths.set_shape([None])
    ragged = tf.RaggedTensor.from_row_lengths(flat, lengths)
    return ragged[0] if s.shape.rank == 0 else ragged

  def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
    def decode(x: np.ndarray) -> np.ndarray:
      rows = x.reshape(-1, x.shape[-1]) if x.ndim else x.reshape(1, 1)
      out = [self._decode(r).encode("utf-8") for r in rows]
      return np.array(out, object).reshape(x.shape[:-1])

    return tf.numpy_function(decode, [ids], tf.string, stateful=False)

  def __eq__(self, other) -> bool:
    return (
      isinstance(other, TokenizerVocabulary)
      and other.role == self.role
      and other.tokenizer.fingerprint == self.tokenizer.fingerprint
      and other.tokenizer.query_prefix == self.tokenizer.query_prefix
      and other.tokenizer.passage_prefix == self.tokenizer.passage_prefix
    )

  def __hash__(self) -> int:
    return hash((self.tokenizer.fingerprint, self.role))


def pair_features(vocabulary: seqio.Vocabulary | None = None, tokenizer=None) -> dict:
  """Query/passage features of one seqio vocabulary, or of a project tokenizer by role."""
  if tokenizer is not None:
    return {
      name: seqio.Feature(TokenizerVocabulary(tokenizer, name), add_eos=False, required=True)
      for name in ("query", "passage")
    }
  vocabulary = vocabulary or _VOCAB
  return {
    name: seqio.Feature(vocabulary, add_eos=False, required=True) for name in ("query", "passage")
  }


def seq2seq_features(vocabulary: seqio.Vocabulary | None = None) -> dict:
  vocabulary = vocabulary or _VOCAB
  return {
    name: seqio.Feature(vocabulary, add_eos=True, required=True) for name in ("inputs", "targets")
  }


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
