"""Exact maximum inner product search over token vectors, chunked to bound memory."""

from __future__ import annotations

import numpy as np


def merge_top_k(
  ids: list[np.ndarray], scores: list[np.ndarray], k: int
) -> tuple[np.ndarray, np.ndarray]:
  """Exact top-``k`` of several per-part top lists ([Q, k_i] each, global ids).

  Ties go to the smaller id, so merging per-shard results equals searching the union.
  """
  all_ids = np.concatenate([np.asarray(i, np.int64) for i in ids], axis=1)
  all_scores = np.concatenate([np.asarray(s, np.float32) for s in scores], axis=1)
  k = min(k, all_ids.shape[1])
  out_ids = np.empty((all_ids.shape[0], k), np.int64)
  out_scores = np.empty((all_ids.shape[0], k), np.float32)
  for q in range(all_ids.shape[0]):
    order = np.lexsort((all_ids[q], -all_scores[q].astype(np.float64)))[:k]
    out_ids[q], out_scores[q] = all_ids[q, order], all_scores[q, order]
  return out_ids, out_scores


class BruteForceSearcher:
  """Exact top-k by dot product; ``vectors`` may be float16 (converted chunk by chunk)."""

  def __init__(self, vectors: np.ndarray, chunk_size: int = 262_144):
    if vectors.ndim != 2:
      raise ValueError(f"vectors must be [num_tokens, dim], got shape {vectors.shape}")
    self.vectors = vectors
    self.chunk_size = chunk_size

  @property
  def size(self) -> int:
    return self.vectors.shape[0]

  def search_batched(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids [Q, k] int64, scores [Q, k] float32), best first; ties to the smaller id."""
    queries = np.asarray(queries, np.float32)
    if queries.ndim != 2 or queries.shape[1] != self.vectors.shape[1]:
      raise ValueError(
        f"queries shape {queries.shape} does not match index dim {self.vectors.shape[1]}"
      )
    k = min(k, self.size)
    # Bound the [queries, chunk] similarity block (~256 MiB) whatever the number of queries.
    step = max(1, (1 << 26) // self.chunk_size)
    if queries.shape[0] > step:
      parts = [self.search_batched(queries[i : i + step], k) for i in range(0, len(queries), step)]
      return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    best_ids, best_scores = [], []
    for start in range(0, self.size, self.chunk_size):
      chunk = np.asarray(self.vectors[start : start + self.chunk_size], np.float32)
      sims = queries @ chunk.T
      kk = min(k, chunk.shape[0])
      part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
      best_ids.append(part + start)
      best_scores.append(np.take_along_axis(sims, part, axis=1))
      # Keep memory flat: fold into one running top-k every few chunks.
      if len(best_ids) > 8:
        merged = merge_top_k(best_ids, best_scores, k)
        best_ids, best_scores = [merged[0]], [merged[1]]
    return merge_top_k(best_ids, best_scores, k)
