"""Batch factories for the trainer: ``factory(start_step, shard_index, num_shards) -> Iterator``.

The trainer only needs such a factory; it recreates the iterator at the restored step when
it resumes. ``jsonl_pairs_batches`` is a dependency-light reader of SWIM-IR-layout pair files
(``query`` + ``title``/``text`` per line) tokenised with a SentencePiece model, so training
runs without the seqio pipeline; ``seqio_batches`` wraps ``xtr_jax.data.pipeline``.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator

import numpy as np

import gin
from xtr_jax.models.generate_cli import xqg_input

Batch = dict[str, np.ndarray]
BatchFactory = Callable[[int, int, int], Iterator[Batch]]
PAD, EOS = 0, 1


def iter_pair_rows(path: str) -> Iterator[tuple[int, dict]]:
  """(line number, raw record) of one SWIM-IR-layout JSONL file, with string query and text."""
  with open(path, encoding="utf-8") as f:
    for lineno, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
      if not isinstance(row, dict):
        raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
      missing = [k for k in ("query", "text") if not isinstance(row.get(k), str)]
      if missing:
        raise ValueError(f"{path}:{lineno}: record lacks string field(s) {missing}")
      yield lineno, row


def read_pairs(pattern: str) -> list[dict[str, str]]:
  """(id, query, passage) records from JSONL files; errors name the file and line.

  ``pattern`` is a glob or several comma-separated globs (e.g. the real pairs plus extra
  xQG pairs); each must match at least one file.
  """
  paths = []
  for part in (p.strip() for p in pattern.split(",")):
    matched = sorted(glob.glob(part))
    if not matched:
      raise FileNotFoundError(f"no pair files match {part!r}")
    paths += [m for m in matched if m not in paths]
  records = []
  for path in paths:
    for lineno, row in iter_pair_rows(path):
      title = row.get("title") or ""
      records.append(
        {
          "id": str(row.get("_id", f"{os.path.basename(path)}:{lineno}")),
          "query": row["query"],
          "passage": f"{title} {row['text']}".strip(),
          "title": title,
          "text": row["text"],
          "code": str(row.get("code") or ""),
        }
      )
  return records


def is_heldout(record_id: str, fraction: float) -> bool:
  """Stable split by a hash of the id, independent of file order."""
  h = int(hashlib.sha1(record_id.encode("utf-8")).hexdigest()[:8], 16)
  return h / 0xFFFFFFFF < fraction


def train_sentencepiece(texts: list[str], path: str, vocab_size: int) -> str:
  """Trains a SentencePiece model (pad 0, eos 1, unk 2, no bos) and writes it atomically."""
  import sentencepiece as spm

  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=directory) as tmp:
    corpus = os.path.join(tmp, "corpus.txt")
    with open(corpus, "w", encoding="utf-8") as f:
      for text in texts:
        f.write(text.replace("\n", " ") + "\n")
    spm.SentencePieceTrainer.train(
      input=corpus,
      model_prefix=os.path.join(tmp, "spm"),
      vocab_size=vocab_size,
      pad_id=PAD,
      eos_id=EOS,
      unk_id=2,
      bos_id=-1,
      character_coverage=0.9995,
      model_type="unigram",
      input_sentence_size=200_000,
      shuffle_input_sentence=True,
      hard_vocab_limit=False,
      minloglevel=2,
    )
    os.replace(os.path.join(tmp, "spm.model"), path)
  return path


def encode(processor, texts: list[str], length: int) -> np.ndarray:
  """Token ids with EOS appended, truncated/padded to ``length`` (0 = padding)."""
  out = np.zeros((len(texts), length), np.int32)
  for i, ids in enumerate(processor.encode(texts)):
    ids = list(ids)[: length - 1] + [EOS]
    out[i, : len(ids)] = ids
  return out


def encode_with(tokenizer, texts: list[str], length: int, role: str) -> np.ndarray:
  """Ids from a project tokenizer (specials, prefixes), padded with its pad id."""
  out = np.full((len(texts), length), tokenizer.pad_id, np.int32)
  for i, ids in enumerate(tokenizer.encode(texts, length, role=role)):
    out[i, : len(ids)] = ids
  return out


def _epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
  return np.random.default_rng([seed, epoch]).permutation(n)


@gin.configurable
def jsonl_pairs_batches(
  pattern: str = gin.REQUIRED,
  vocabulary: str = gin.REQUIRED,
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
  """Deterministic, resumable batches of (query, passage) pairs.

  Step s of the stream is rows [s*B, (s+1)*B) of an endless sequence of per-epoch
  permutations (seeded by (seed, epoch)); shard k of n takes its B/n contiguous rows. The
  held-out split (a hash of ``_id``) never enters training. ``converter='seq2seq'`` gives
  passage -> query batches with seqio's EncDecFeatureConverter names for xQG. When
  ``vocabulary`` does not exist and ``train_vocab_size`` is set, a SentencePiece model is
  trained on the training split's texts and written there first. ``lowercase`` lower-cases
  queries and passages before the vocabulary sees them (as the released XTR models'
  inference code does), so cased and uncased spellings share pieces; a vocabulary trained
  with it must be used with it. ``tokenizer_checkpoint`` (a checkpoint dir or an embedded
  name such as ``me5-small``) takes the tokenizer that checkpoint carries instead of
  ``vocabulary``, with its query/passage prefixes and pad id (XLM-R pads with 1).
  """
  if split not in ("train", "heldout"):
    raise ValueError(f"jsonl_pairs_batches.split={split!r}; expected 'train' or 'heldout'")
  if converter not in ("dual_encoder", "seq2seq"):
    raise ValueError(f"jsonl_pairs_batches.converter={converter!r}")
  records = read_pairs(pattern)
  if lowercase:
    fields = ("query", "passage", "title", "text")
    records = [{**r, **{k: r[k].lower() for k in fields}} for r in records]
  if tokenizer_checkpoint and converter != "dual_encoder":
    raise ValueError("jsonl_pairs_batches.tokenizer_checkpoint needs converter='dual_encoder'")
  if not tokenizer_checkpoint and not os.path.exists(vocabulary):
    if not train_vocab_size:
      raise FileNotFoundError(f"SentencePiece model {vocabulary!r} not found")
    train = [r for r in records if not is_heldout(r["id"], heldout_fraction)]
    texts = [r["query"] for r in train] + sorted({r["passage"] for r in train})
    if converter == "seq2seq":  # the xQG prompts' words must be in the vocabulary too
      texts += [xqg_input(c, "", "") for c in sorted({r["code"] for r in train if r["code"]})]
    logging.info("training a %d-piece SentencePiece model -> %s", train_vocab_size, vocabulary)
    train_sentencepiece(texts, vocabulary, train_vocab_size)
  keep = [r for r in records if is_heldout(r["id"], heldout_fraction) == (split == "heldout")]
  if len(keep) < batch_size:
    raise ValueError(
      f"split {split!r} of {pattern!r} has {len(keep)} pairs, fewer than batch_size={batch_size}"
    )
  if tokenizer_checkpoint:
    tok = _checkpoint_tokenizer(tokenizer_checkpoint)
    queries = encode_with(tok, [r["query"] for r in keep], query_length, "query")
    passages = encode_with(tok, [r["passage"] for r in keep], passage_length, "passage")
    logging.info(
      "%s: %d %s pairs (tokenizer of %s)", pattern, len(keep), split, tokenizer_checkpoint
    )
    return _pair_factory(queries, passages, batch_size, seed, converter)
  import sentencepiece as spm

  processor = spm.SentencePieceProcessor(model_file=vocabulary)
  queries = encode(processor, [r["query"] for r in keep], query_length)
  if converter == "seq2seq":
    # xQG: the encoder sees the prompt that names the target language, exactly as
    # `xtr-jax generate` builds it, so one model writes questions in any language.
    missing = [r["id"] for r in keep if not r["code"]]
    if missing:
      raise ValueError(f"{pattern}: seq2seq pairs need a language 'code'; missing in {missing[:3]}")
    sources = [xqg_input(r["code"], r["title"], r["text"]) for r in keep]
  else:
    sources = [r["passage"] for r in keep]
  passages = encode(processor, sources, passage_length)
  logging.info("%s: %d %s pairs", pattern, len(keep), split)
  return _pair_factory(queries, passages, batch_size, seed, converter)


def _checkpoint_tokenizer(checkpoint: str):
  from xtr_jax.checkpoints.embedded import resolve_checkpoint  # noqa: PLC0415
  from xtr_jax.checkpoints.orbax_io import load_metadata  # noqa: PLC0415
  from xtr_jax.checkpoints.tokenizers import tokenizer_for  # noqa: PLC0415

  checkpoint = resolve_checkpoint(checkpoint)
  meta = load_metadata(checkpoint)
  return tokenizer_for(checkpoint, meta.get("extra", {}), None)


def _pair_factory(
  queries: np.ndarray, passages: np.ndarray, batch_size: int, seed: int, converter: str
) -> BatchFactory:
  """The resumable stream over encoded pairs (see ``jsonl_pairs_batches``)."""
  n = len(queries)
  per_epoch = n // batch_size  # drop the ragged tail of each epoch

  def factory(start_step: int = 0, shard_index: int = 0, num_shards: int = 1) -> Iterator[Batch]:
    if batch_size % num_shards:
      raise ValueError(f"batch_size={batch_size} not divisible by num_shards={num_shards}")
    local = batch_size // num_shards
    step = start_step
    while True:
      epoch, offset = divmod(step, per_epoch)
      order = _epoch_order(n, seed, epoch)
      rows = order[offset * batch_size : (offset + 1) * batch_size]
      rows = rows[shard_index * local : (shard_index + 1) * local]
      q, p = queries[rows], passages[rows]
      if converter == "dual_encoder":
        yield {"query_tokens": q, "passage_tokens": p}
      else:
        targets = q
        inputs = np.concatenate([np.zeros_like(targets[:, :1]), targets[:, :-1]], axis=1)
        yield {
          "encoder_input_tokens": p,
          "decoder_input_tokens": inputs,
          "decoder_target_tokens": targets,
          "decoder_loss_weights": (targets != PAD).astype(np.int32),
        }
      step += 1

  factory.steps_per_epoch = per_epoch  # type: ignore[attr-defined]
  return factory


@gin.configurable
def seqio_batches(
  name: str = gin.REQUIRED,
  split: str = "train",
  feature_lengths: dict[str, int] | None = None,
  batch_size: int = 32,
  seed: int = 0,
  converter: str = "dual_encoder",
) -> BatchFactory:
  """``xtr_jax.data.pipeline.get_batches`` (seqio tasks/mixtures) as a batch factory."""

  def factory(start_step: int = 0, shard_index: int = 0, num_shards: int = 1):
    from xtr_jax.data import pipeline

    return pipeline.get_batches(
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

  return factory
