"""Passage augmentation with xQG generated questions (Zhuang et al., 2023) for the index.

Two families:

* single-vector (what the xQG code does for dense retrievers): a passage embedding becomes
  ``(1 - alpha) * p + alpha * reduce(q_1..q_n)`` over the embeddings of all its generated
  questions, ``reduce`` = sum (the paper's choice) or mean, alpha 0.01 by default.
* token level (new, for XTR): the generated questions' token vectors join the passage's token
  vectors in the index, mapped to the passage id (optionally scaled by a weight, so a match
  on a generated question counts less than one on the passage text), or one pooled vector per
  language (mean of that language's question tokens, renormalised) to keep the index small.

The token-level functions produce the ``(passage id, [n, d] vectors)`` pairs that
``xtr_jax.index.store.build_index(extra_vectors=...)`` (and ``index.build.build_from_corpus``)
append after the corpus tokens.
"""

from __future__ import annotations

import collections
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from xtr_jax.data.readers import GeneratedQueries, read_generated_queries

# texts -> per text, its token vectors [len_i, d] (padding dropped).
TokenEncodeFn = Callable[[list[str]], list[np.ndarray]]
MODES = ("tokens", "pooled_per_language")
REDUCTIONS = ("sum", "mean")


def _unit(x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
  x = np.asarray(x, np.float32)
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


# ------------------------------------------------------------------------- single vector


def augment_single_vector(
  passage: np.ndarray, questions: np.ndarray, alpha: float = 0.01, reduce: str = "sum"
) -> np.ndarray:
  """``(1 - alpha) * passage + alpha * reduce(questions)``; passage [d], questions [n, d].

  With no questions (n = 0) the passage vector is returned unchanged (not shrunk).
  """
  if reduce not in REDUCTIONS:
    raise ValueError(f"reduce={reduce!r}; expected one of {REDUCTIONS}")
  passage = np.asarray(passage, np.float32)
  questions = np.asarray(questions, np.float32).reshape(-1, passage.shape[-1])
  if questions.shape[0] == 0:
    return passage
  pooled = questions.sum(0) if reduce == "sum" else questions.mean(0)
  return (1.0 - alpha) * passage + alpha * pooled


def augment_passage_matrix(
  passage_vectors: np.ndarray,
  passage_ids: list[str],
  generated: Iterable[GeneratedQueries],
  encode_questions: Callable[[list[str]], np.ndarray],
  *,
  alpha: float = 0.01,
  reduce: str = "sum",
  languages: Iterable[str] | None = None,
) -> np.ndarray:
  """Single-vector augmentation of a whole corpus matrix [N, d] (rows follow passage_ids).

  ``encode_questions``: texts -> [n, d] single vectors (a mean-pooled retrieval encoder).
  Passages without generated questions keep their vector.
  """
  passage_vectors = np.asarray(passage_vectors, np.float32)
  if passage_vectors.shape[0] != len(passage_ids):
    raise ValueError(
      f"passage_vectors has {passage_vectors.shape[0]} rows but passage_ids has {len(passage_ids)}"
    )
  row_of = {p: i for i, p in enumerate(passage_ids)}
  out = passage_vectors.copy()
  keep = None if languages is None else set(languages)
  for record in generated:
    if record.docid not in row_of:
      raise KeyError(f"generated questions for passage {record.docid!r}, not in the corpus")
    texts = _questions(record, keep)
    if texts:
      row = row_of[record.docid]
      q = np.asarray(encode_questions(texts), np.float32)
      if q.shape != (len(texts), out.shape[1]):
        raise ValueError(
          f"encode_questions returned {q.shape}, expected ({len(texts)}, {out.shape[1]})"
        )
      out[row] = augment_single_vector(passage_vectors[row], q, alpha, reduce)
  return out


# ----------------------------------------------------------------------------- token level


def _questions(record: GeneratedQueries, keep: set[str] | None) -> list[str]:
  return [
    q
    for lang, qs in sorted(record.generated_queries.items())
    if keep is None or lang in keep
    for q in qs
    if q.strip()
  ]


def token_extra_vectors(question_tokens: list[np.ndarray], weight: float = 1.0) -> np.ndarray:
  """All generated-question token vectors of one passage, stacked and scaled: [sum L_i, d]."""
  return np.concatenate([np.asarray(t, np.float32) for t in question_tokens]) * weight


def pooled_language_vectors(
  tokens_by_language: dict[str, list[np.ndarray]], weight: float = 1.0
) -> np.ndarray:
  """One vector per language: mean of its questions' token vectors, renormalised: [n_lang, d].

  Languages are taken in sorted order so the output does not depend on dict order.
  """
  rows = []
  for lang in sorted(tokens_by_language):
    stacked = np.concatenate([np.asarray(t, np.float32) for t in tokens_by_language[lang]])
    rows.append(_unit(stacked.mean(0)))
  return np.stack(rows) * weight


def extra_vectors_from_generated(
  generated: str | Iterable[GeneratedQueries],
  encode_tokens: TokenEncodeFn,
  *,
  mode: str = "tokens",
  weight: float = 1.0,
  languages: Iterable[str] | None = None,
  chunk_size: int = 64,
) -> Iterator[tuple[str, np.ndarray]]:
  """Streams ``(passage id, [n, d] extra vectors)`` for ``build_index(extra_vectors=...)``.

  ``generated`` is a generated-questions JSONL path (``xtr-jax generate`` output) or records.
  Questions are encoded ``chunk_size`` passages at a time. ``mode='tokens'`` adds every
  question token vector; ``'pooled_per_language'`` adds one vector per language.
  """
  if mode not in MODES:
    raise ValueError(f"mode={mode!r}; expected one of {MODES}")
  records = read_generated_queries(generated) if isinstance(generated, str) else iter(generated)
  keep = None if languages is None else set(languages)
  total_passages = total_vectors = 0
  while True:
    chunk = list(itertools.islice(records, chunk_size))
    if not chunk:
      break
    texts, owners = [], []
    for n, record in enumerate(chunk):
      for lang, qs in sorted(record.generated_queries.items()):
        if keep is not None and lang not in keep:
          continue
        for q in qs:
          if q.strip():
            texts.append(q)
            owners.append((n, lang))
    vectors = encode_tokens(texts) if texts else []
    if len(vectors) != len(texts):
      raise ValueError(f"encode_tokens returned {len(vectors)} outputs for {len(texts)} texts")
    per_record: list[dict[str, list[np.ndarray]]] = [{} for _ in chunk]
    for (n, lang), v in zip(owners, vectors, strict=True):
      per_record[n].setdefault(lang, []).append(v)
    for record, by_lang in zip(chunk, per_record, strict=True):
      if not by_lang:
        continue
      # questions whose every token was dropped (token_encode_fn's drop_ids) add nothing
      by_lang = {lang: kept for lang, vs in by_lang.items() if (kept := [v for v in vs if len(v)])}
      if not by_lang:
        continue
      if mode == "tokens":
        vecs = token_extra_vectors([v for lang in sorted(by_lang) for v in by_lang[lang]], weight)
      else:
        vecs = pooled_language_vectors(by_lang, weight)
      total_passages += 1
      total_vectors += vecs.shape[0]
      yield record.docid, vecs
  logging.info("augmentation: %d extra vectors for %d passages", total_vectors, total_passages)


def frequent_piece_ids(
  generated: str | Iterable[GeneratedQueries],
  tokenizer,
  max_df: float,
  *,
  max_length: int = 64,
  languages: Iterable[str] | None = None,
) -> frozenset[int]:
  """Token ids found in the questions of more than ``max_df`` of the augmented passages.

  Why: a generator writes the same question words, punctuation and EOS for every passage;
  their vectors are near-identical across passages, so at weight 1 they fill a query token's
  top-k' with arbitrary passages and push real matches out (measured in
  results/xqg_augmentation_full.md). Dropping them keeps the content pieces, like an IDF
  cut-off or ColBERT's punctuation skiplist. ``max_df`` is a fraction in (0, 1].
  """
  if not 0.0 < max_df <= 1.0:
    raise ValueError(f"max_df={max_df}: expected a fraction in (0, 1]")
  records = read_generated_queries(generated) if isinstance(generated, str) else iter(generated)
  keep = None if languages is None else set(languages)
  counts: collections.Counter[int] = collections.Counter()
  passages = 0
  for record in records:
    texts = _questions(record, keep)
    if texts:
      passages += 1
      counts.update({t for ids in tokenizer.encode(texts, max_length) for t in ids})
  frequent = frozenset(t for t, n in counts.items() if n > max_df * passages)
  logging.info(
    "augmentation: %d of %d question pieces occur in > %.3g of %d passages; their vectors dropped",
    len(frequent),
    len(counts),
    max_df,
    passages,
  )
  return frequent


def token_encode_fn(
  encoder,
  tokenizer,
  max_length: int = 64,
  batch_size: int = 32,
  drop_ids: Iterable[int] = (),
) -> TokenEncodeFn:
  """Binds an ``index.encode.TokenEncoder`` and ``Tokenizer`` into a ``TokenEncodeFn``.

  Vectors at positions whose token id is in ``drop_ids`` (see ``frequent_piece_ids``) are
  left out; a question can so yield no vectors at all.
  """
  buckets = tuple(b for b in (16, 32, 64, 128, 256) if b < max_length) + (max_length,)
  drop = frozenset(drop_ids)

  def encode(texts: list[str]) -> list[np.ndarray]:
    ids = tokenizer.encode(texts, max_length)
    vectors = encoder.encode_tokens(ids, batch_size, max_length, buckets)
    if drop:
      vectors = [v[[t not in drop for t in row]] for v, row in zip(vectors, ids, strict=True)]
    return [v.astype(np.float32) for v in vectors]

  return encode


def extra_vectors_for_index(
  generated: str,
  encoder,
  tokenizer,
  *,
  mode: str = "tokens",
  max_df: float | None = None,
  max_length: int = 64,
) -> Iterator[tuple[str, np.ndarray]]:
  """The index builders' xQG hook (``xtr-jax index --augment_with``, the sweep index stage).

  Encodes a generated-questions file with the index's own ``TokenEncoder`` and
  ``Tokenizer``; with ``max_df`` the frequent pieces are counted first (one pass over the
  file) and their vectors dropped. Weighting is the index builder's ``extra_weight``.
  """
  drop_ids: frozenset[int] = frozenset()
  if max_df is not None:
    drop_ids = frequent_piece_ids(generated, tokenizer, max_df, max_length=max_length)
  encode_fn = token_encode_fn(encoder, tokenizer, max_length, drop_ids=drop_ids)
  return extra_vectors_from_generated(generated, encode_fn, mode=mode)
