"""XTR scoring from token retrieval, and exact MaxSim for comparison (pure numpy).

XTR (Lee et al., 2023, "Rethinking the Role of Token Retrieval in Multi-Vector Retrieval")
scores a passage only from the token vectors the index returned: for every query token the
top-k' document tokens are retrieved; a passage's score is the mean, over the real query
tokens, of its best retrieved score for that token. A query token that retrieved none of the
passage's tokens contributes an imputed score, the lowest score that query token retrieved
(its k'-th score), an upper bound on what it could have seen. No stored vectors are read.

Ties are broken by passage row (smaller first) everywhere, so results are deterministic.
"""

from __future__ import annotations

import numpy as np


def top_k_by_score(rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
  """The ``k`` best (rows, scores): by score descending, then row ascending."""
  order = np.lexsort((rows, -scores.astype(np.float64)))[:k]
  return rows[order], scores[order]


def xtr_scores(
  token_passages: np.ndarray, token_scores: np.ndarray, query_mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
  """All candidate passages of one query and their XTR scores.

  Args:
    token_passages: [T, k'] passage row of each retrieved token; -1 marks an empty slot.
    token_scores: [T, k'] the retrieved tokens' scores (query token . document token).
    query_mask: [T] true for real query tokens; padding rows are ignored.

  Returns:
    (passage rows [C], scores [C]) for the union of passages any real query token retrieved.
  """
  token_passages = np.asarray(token_passages)
  token_scores = np.asarray(token_scores, np.float32)
  query_mask = np.asarray(query_mask, bool)
  if token_passages.shape != token_scores.shape or token_passages.ndim != 2:
    raise ValueError(
      f"token_passages {token_passages.shape} and token_scores {token_scores.shape} "
      "must both be [num_query_tokens, k']"
    )
  if query_mask.shape != token_passages.shape[:1]:
    raise ValueError(f"query_mask {query_mask.shape} must be [{token_passages.shape[0]}]")
  valid = (token_passages >= 0) & query_mask[:, None]
  live = valid.any(axis=1)  # real query tokens that retrieved anything
  if not live.any():
    return np.zeros((0,), np.int64), np.zeros((0,), np.float32)
  tp, ts, valid = token_passages[live], token_scores[live], valid[live]
  imputed = np.where(valid, ts, np.inf).min(axis=1)  # the k'-th (lowest) retrieved score
  t_idx, slot = np.nonzero(valid)
  candidates, c_idx = np.unique(tp[t_idx, slot], return_inverse=True)
  best = np.full((tp.shape[0], candidates.shape[0]), -np.inf, np.float32)
  np.maximum.at(best, (t_idx, c_idx), ts[t_idx, slot])
  best = np.where(np.isneginf(best), imputed[:, None], best)
  # Query tokens that retrieved nothing (all slots empty) cannot score anything; they are
  # dropped from the mean like padding.
  return candidates.astype(np.int64), best.mean(axis=0).astype(np.float32)


def xtr_search(
  token_passages: np.ndarray, token_scores: np.ndarray, query_mask: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
  """Top-``k`` passages of one query by XTR score; see ``xtr_scores``."""
  rows, scores = xtr_scores(token_passages, token_scores, query_mask)
  return top_k_by_score(rows, scores, k)


def passage_token_groups(token_to_passage: np.ndarray, num_passages: int):
  """(order, starts): tokens of passage p are ``order[starts[p]:starts[p+1]]``."""
  order = np.argsort(token_to_passage, kind="stable")
  starts = np.searchsorted(token_to_passage[order], np.arange(num_passages + 1), side="left")
  return order, starts


def maxsim_scores(
  query_vectors: np.ndarray,
  query_mask: np.ndarray,
  token_vectors: np.ndarray,
  order: np.ndarray,
  starts: np.ndarray,
  candidates: np.ndarray,
) -> np.ndarray:
  """Exact ColBERT MaxSim of each candidate passage: mean over real query tokens of the
  max similarity over all the passage's tokens (mean = sum / |q|, the same ranking)."""
  q = np.asarray(query_vectors, np.float32)[np.asarray(query_mask, bool)]
  candidates = np.asarray(candidates, np.int64)
  if candidates.size == 0 or q.shape[0] == 0:
    return np.zeros((candidates.shape[0],), np.float32)
  lengths = starts[candidates + 1] - starts[candidates]
  if (lengths == 0).any():
    bad = candidates[lengths == 0][:5].tolist()
    raise ValueError(f"passages {bad} have no token vectors in the index")
  token_idx = np.concatenate([order[starts[c] : starts[c + 1]] for c in candidates])
  sims = q @ np.asarray(token_vectors[token_idx], np.float32).T  # [Tq, n]
  seg = np.concatenate([[0], np.cumsum(lengths)[:-1]])
  best = np.maximum.reduceat(sims, seg, axis=1)  # [Tq, C]
  return best.mean(axis=0).astype(np.float32)


def maxsim_search(
  query_vectors: np.ndarray,
  query_mask: np.ndarray,
  token_vectors: np.ndarray,
  order: np.ndarray,
  starts: np.ndarray,
  candidates: np.ndarray,
  k: int,
) -> tuple[np.ndarray, np.ndarray]:
  """Top-``k`` of ``candidates`` by exact MaxSim."""
  candidates = np.asarray(candidates, np.int64)
  scores = maxsim_scores(query_vectors, query_mask, token_vectors, order, starts, candidates)
  return top_k_by_score(candidates, scores, k)
