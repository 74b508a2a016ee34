"""tf.data sources built on the streaming readers: pairs, queries and passages as string features.

Each function matches seqio's ``FunctionDataSource`` signature ``(split, shuffle_files, seed)``
(bind the other arguments with ``functools.partial``); file locations are resolved when called.
Every example keeps its ids (``query_id``, ``passage_id``) so encoding tasks can write runs.

Pair files (``jsonl_pairs``): any SWIM-IR-layout JSONL read by ``xtr_jax.data.pairs``, split
into ``train`` and ``validation`` by a hash of the id (``is_heldout``), so the held-out pairs
are the same whatever the file order or the seed; the SWIM-IR tasks split the same way.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator

import tensorflow as tf

from xtr_jax.data import languages, locations, readers
from xtr_jax.data.pairs import (  # noqa: F401  (re-exported: the pair-file source's helpers)
  PAIR_SPLITS,
  is_heldout,
  lowercased,
  pair_rows,
  read_pairs,
  split_pairs,
)

_STR = tf.TensorSpec([], tf.string)
PAIR_SIGNATURE = {
  "query_id": _STR,
  "query": _STR,
  "passage_id": _STR,
  "passage": _STR,
  "lang": _STR,
}
XOR_PAIR_SIGNATURE = {**PAIR_SIGNATURE, "negatives": tf.TensorSpec([None], tf.string)}
QUERY_SIGNATURE = {"query_id": _STR, "query": _STR, "lang": _STR}
PASSAGE_SIGNATURE = {"passage_id": _STR, "passage": _STR}

XOR_GOLD_SOURCE_PREFIX = "xor_tydi"


def _check_split(split: str, valid: tuple[str, ...], what: str) -> None:
  if split not in valid:
    raise ValueError(f"{what} has no split {split!r}; valid splits: {', '.join(valid)}")


# Sources read from files smaller than this are cached in memory after the first epoch, so
# repeating a small dataset (and filling a shuffle buffer with it) does not re-run Python.
MEMORY_CACHE_BYTES = 64 << 20


def _dataset(gen: Callable[[], Iterator[dict]], signature, files: tuple = ()) -> tf.data.Dataset:
  """Small files are read at once into tensors (no Python per example); large ones stream."""
  try:
    small = sum(os.path.getsize(f) for f in files if f is not None) < MEMORY_CACHE_BYTES
  except OSError:
    small = False
  if files and small and all(spec.shape.rank == 0 for spec in signature.values()):
    return from_rows(list(gen()), signature)
  ds = tf.data.Dataset.from_generator(gen, output_signature=signature)
  return ds.cache() if files and small else ds


def from_rows(rows: list[dict], signature) -> tf.data.Dataset:
  """Scalar string features of in-memory rows as one ``from_tensor_slices`` dataset."""
  columns = {k: tf.constant([r[k] for r in rows], tf.string, shape=[len(rows)]) for k in signature}
  return tf.data.Dataset.from_tensor_slices(columns)


# The held-out fraction of every pair source's ``validation`` split (the CPU recipes' 5%).
VALIDATION_FRACTION = 0.05


def swim_ir_examples(setting: str, code: str, split: str | None = None) -> Iterator[dict]:
  """SWIM-IR pairs of one (setting, language) as feature dicts; ``split`` keeps the ``train``
  or ``validation`` side of the id hash (``is_heldout``), None keeps all."""
  languages.check_setting(setting)
  path = locations.swim_ir_file(setting, code)
  for r in readers.read_swim_ir(path):
    if split is not None and is_heldout(r.id, VALIDATION_FRACTION) != (split == "validation"):
      continue
    yield {
      "query_id": r.id,
      "query": r.query,
      "passage_id": r.id,
      "passage": readers.passage_text(r.title, r.text),
      "lang": r.code,
    }


def swim_ir_pairs(
  split: str, shuffle_files: bool = False, seed: int | None = None, *, setting: str, code: str
) -> tf.data.Dataset:
  del shuffle_files, seed  # one file per language; examples are shuffled by the task
  _check_split(split, PAIR_SPLITS, f"SWIM-IR {setting}/{code}")
  path = locations.swim_ir_file(setting, code)
  return _dataset(lambda: swim_ir_examples(setting, code, split), PAIR_SIGNATURE, (path,))


def xor_train_examples(lang: str) -> Iterator[dict]:
  """XOR-TyDi train pairs: DPR positives (``xor_train_full.json``) when present, else the gold
  paragraph pairs in the SWIM-IR layout (records whose ``source`` starts with ``xor_tydi``)."""
  dpr = locations.find_xor_file("dpr_train", required=False)
  n = 0
  if dpr is not None:
    for i, ex in enumerate(readers.read_dpr(dpr)):
      if ex.lang != lang or not ex.positives:
        continue
      pos = ex.positives[0]
      n += 1
      yield {
        "query_id": f"{lang}-train-{i}",
        "query": ex.question,
        "passage_id": pos.id,
        "passage": readers.passage_text(pos.title, pos.text),
        "lang": lang,
        "negatives": [readers.passage_text(c.title, c.text) for c in ex.hard_negatives],
      }
    if n:
      return
  try:
    path = locations.swim_ir_file("cross_lingual", lang)
  except FileNotFoundError as e:
    raise FileNotFoundError(
      f"no XOR-TyDi train pairs for {lang!r}: no DPR file "
      f"({', '.join(locations.XOR_FILES['dpr_train'])}) and {e}"
    ) from None
  for r in readers.read_swim_ir(path):
    if str(r.extra.get("source", "")).startswith(XOR_GOLD_SOURCE_PREFIX):
      n += 1
      yield {
        "query_id": r.id,
        "query": r.query,
        "passage_id": r.id,
        "passage": readers.passage_text(r.title, r.text),
        "lang": lang,
        "negatives": [],
      }
  if n == 0:
    raise ValueError(f"{path}: no XOR-TyDi gold pairs (records with source 'xor_tydi*') for {lang}")


def xor_dev_examples(lang: str) -> Iterator[dict]:
  """XOR-TyDi dev pairs: each dev question with its first gold paragraph from the qrels."""
  queries = [q for q in readers.read_xor_queries(locations.find_xor_file("dev")) if q.lang == lang]
  qrels = readers.read_qrels(locations.find_xor_file("dev_qrels"))
  gold = {}
  for q in queries:
    rel = [pid for pid, r in qrels.get(q.id, {}).items() if r > 0]
    if rel:
      gold[q.id] = sorted(rel)[0]
  wanted = set(gold.values())
  passages = {
    p.id: readers.passage_text(p.title, p.text)
    for p in readers.read_corpus(locations.find_xor_file("corpus"))
    if p.id in wanted
  }
  for q in queries:
    pid = gold.get(q.id)
    if pid in passages:
      yield {
        "query_id": q.id,
        "query": q.question,
        "passage_id": pid,
        "passage": passages[pid],
        "lang": lang,
        "negatives": [],
      }


def few_shot(examples: Iterator[dict], k: int, seed: int) -> list[dict]:
  """k examples drawn without replacement under a fixed seed (all if fewer)."""
  pool = list(examples)
  rng = random.Random(seed)
  return rng.sample(pool, min(k, len(pool)))


def xor_pairs(
  split: str,
  shuffle_files: bool = False,
  seed: int | None = None,
  *,
  lang: str,
  k: int | None = None,
  few_shot_seed: int = 0,
) -> tf.data.Dataset:
  """XOR-TyDi (question, English gold passage) pairs; ``k`` keeps a seeded k-shot subset."""
  del shuffle_files, seed
  _check_split(split, ("train", "dev"), f"XOR-TyDi pairs ({lang})")
  make = xor_train_examples if split == "train" else xor_dev_examples
  if split == "train":
    files = (
      locations.find_xor_file("dpr_train", required=False),
      _swim_ir_file_or_none("cross_lingual", lang),
    )
  else:
    files = tuple(locations.find_xor_file(k) for k in ("dev", "dev_qrels", "corpus"))
  if k is None or split == "dev":  # few-shot limits training data only
    return _dataset(lambda: make(lang), XOR_PAIR_SIGNATURE, files)
  return _dataset(lambda: iter(few_shot(make(lang), k, few_shot_seed)), XOR_PAIR_SIGNATURE, files)


def _swim_ir_file_or_none(setting: str, code: str):
  try:
    return locations.swim_ir_file(setting, code)
  except FileNotFoundError:
    return None


def xor_queries(
  split: str, shuffle_files: bool = False, seed: int | None = None, *, lang: str | None
) -> tf.data.Dataset:
  """XOR-Retrieve queries of one language (or all with ``lang=None``), ids kept."""
  del shuffle_files, seed
  _check_split(split, ("train", "dev", "test"), "XOR-TyDi queries")

  def gen():
    for q in readers.read_xor_queries(locations.find_xor_file(split)):
      if lang is None or q.lang == lang:
        yield {"query_id": q.id, "query": q.question, "lang": q.lang}

  return _dataset(gen, QUERY_SIGNATURE, (locations.find_xor_file(split),))


def xor_corpus(split: str, shuffle_files: bool = False, seed: int | None = None) -> tf.data.Dataset:
  """The English passage corpus, streamed (``title text`` per passage, ids kept)."""
  del shuffle_files, seed
  _check_split(split, ("train",), "XOR-TyDi corpus")

  def gen():
    for p in readers.read_corpus(locations.find_xor_file("corpus")):
      yield {"passage_id": p.id, "passage": readers.passage_text(p.title, p.text)}

  return _dataset(gen, PASSAGE_SIGNATURE, (locations.find_xor_file("corpus"),))


# ----------------------------------------------------------------------------- pair files

SEQ2SEQ_SIGNATURE = {"inputs": _STR, "targets": _STR, "passage_id": _STR, "lang": _STR}


def jsonl_pairs(
  split: str,
  shuffle_files: bool = False,
  seed: int | None = None,
  *,
  pattern: str,
  heldout_fraction: float = 0.05,
  lowercase: bool = False,
  xqg_prompt: str | None = None,
) -> tf.data.Dataset:
  """Pair files as a seqio source: file order, the split's records, in memory."""
  del shuffle_files, seed  # the task (or the batch factory) orders the examples
  records = read_pairs(pattern)
  records = split_pairs(records, split, heldout_fraction, f"pair files {pattern!r}")
  if lowercase:
    records = lowercased(records)
  signature = PAIR_SIGNATURE if xqg_prompt is None else SEQ2SEQ_SIGNATURE
  try:
    rows = pair_rows(records, xqg_prompt)
  except ValueError as e:
    raise ValueError(f"{pattern}: {e}") from None
  return from_rows(rows, signature)
