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


def xtr_search_batch(
  token_passages: np.ndarray,
  token_scores: np.ndarray,
  query_lengths: np.ndarray,
  k: int,
  max_cells: int = 1 << 24,
) -> list[tuple[np.ndarray, np.ndarray]]:
  """``xtr_search`` of many queries at once, with the same results bit for bit.

  Why: one call per query costs Python and small-array overhead per query (the token search is
  batched); here the (query token, passage) pairs of all queries are reduced with sorts and
  one dense [tokens, candidates] matrix per chunk of queries (at most ``max_cells`` cells).
  The float32 sum over each query's tokens runs in token order like ``xtr_scores``' mean.

  Args:
    token_passages: [T, k'] passage rows of the queries' real tokens, query after query
      (-1 = empty slot).
    token_scores: [T, k'] their scores.
    query_lengths: [B] number of rows of each query (sums to T).
    k: passages kept per query.

  Returns:
    Per query (passage rows int64 [<= k], scores float32), best first, ties to smaller rows.
  """
  tp = np.asarray(token_passages)
  ts = np.asarray(token_scores, np.float32)
  lengths = np.asarray(query_lengths, np.int64)
  if tp.shape != ts.shape or tp.ndim != 2 or lengths.sum() != tp.shape[0]:
    raise ValueError(
      f"token_passages {tp.shape}, token_scores {ts.shape} and query_lengths (sum "
      f"{lengths.sum()}) disagree"
    )
  qid = np.repeat(np.arange(lengths.size), lengths)
  valid = tp >= 0
  live = valid.any(axis=1)
  tp, ts, valid, qid = tp[live], ts[live], valid[live], qid[live]
  num_live = np.bincount(qid, minlength=lengths.size)
  imputed = np.where(valid, ts, np.inf).min(axis=1)
  rank = np.arange(qid.size) - np.repeat(np.cumsum(num_live) - num_live, num_live)
  out: list[tuple[np.ndarray, np.ndarray]] = []
  per_query = np.maximum(num_live * tp.shape[1], 1) * np.maximum(num_live, 1)
  start = 0
  while start < lengths.size:  # chunks of queries whose dense matrices fit max_cells
    end = start + max(1, int(np.searchsorted(np.cumsum(per_query[start:]), max_cells)))
    end = min(end, lengths.size)
    out += _xtr_chunk(tp, ts, valid, qid, rank, imputed, num_live, start, end, k)
    start = end
  return out


def _unique_inverse(keys: np.ndarray, key_range: int) -> tuple[np.ndarray, np.ndarray]:
  """``np.unique(keys, return_inverse=True)`` for keys in [0, key_range); by marking a
  boolean table when that range is small against the number of keys (no sort)."""
  if key_range > 8 * keys.size + 1024:
    return np.unique(keys, return_inverse=True)
  seen = np.zeros((key_range,), bool)
  seen[keys] = True
  slot = np.cumsum(seen) - 1
  return np.flatnonzero(seen), slot[keys]


def _xtr_chunk(tp, ts, valid, qid, rank, imputed, num_live, q0: int, q1: int, k: int):
  """``xtr_search_batch`` for queries [q0, q1) (token arrays already restricted to live)."""
  lo, hi = np.searchsorted(qid, [q0, q1])  # the chunk's live tokens are contiguous
  part = valid[lo:hi]
  if part.all():  # the usual case: every slot filled
    t_idx = np.repeat(np.arange(lo, hi), part.shape[1])
    slot = np.tile(np.arange(part.shape[1]), hi - lo)
  else:
    t_idx, slot = np.nonzero(part)
    t_idx = t_idx + lo
  if t_idx.size == 0:
    return [(np.zeros((0,), np.int64), np.zeros((0,), np.float32)) for _ in range(q0, q1)]
  passages = tp[t_idx, slot].astype(np.int64)
  q = qid[t_idx]
  width = int(passages.max()) + 1
  cand, j = _unique_inverse((q - q0) * width + passages, (q1 - q0) * width)
  cand += q0 * width
  cand_q, cand_p = cand // width, cand % width
  # Row r of every candidate's query: the retrieved max or the imputed score of the query's
  # r-th live token, 0.0 past its last one (adding 0.0 leaves the float32 sum unchanged).
  # Summed row by row, i.e. in token order, as ``xtr_scores``' mean over its dense matrix.
  rows = int(num_live[q0:q1].max())
  first = np.searchsorted(qid, np.arange(q0, q1))  # first live token of each query
  imp = np.zeros((q1 - q0, rows + 1), np.float32)
  tok = first[:, None] + np.arange(rows)[None, :]
  inside = np.arange(rows)[None, :] < num_live[q0:q1, None]
  imp[:, :rows][inside] = imputed[tok[inside]]
  pair_rank = rank[t_idx]
  by_rank = np.argsort(pair_rank, kind="stable")
  bounds = np.searchsorted(pair_rank[by_rank], np.arange(rows + 1))
  local_q = cand_q - q0
  sums = np.zeros((cand.size,), np.float32)
  for r in range(rows):
    v = imp[local_q, r]
    pr = by_rank[bounds[r] : bounds[r + 1]]
    np.maximum.at(v, j[pr], ts[t_idx[pr], slot[pr]])
    sums += v
  scores = (sums.astype(np.float64) / num_live[cand_q]).astype(np.float32)
  # Candidates come sorted by (query, passage); a stable sort keeps passage order in ties.
  order = np.lexsort((-scores.astype(np.float64), cand_q))
  cand_q, cand_p, scores = cand_q[order], cand_p[order], scores[order]
  bounds = np.searchsorted(cand_q, np.arange(q0, q1 + 1))
  return [
    (cand_p[bounds[i] : min(bounds[i + 1], bounds[i] + k)],
     scores[bounds[i] : min(bounds[i + 1], bounds[i] + k)])
    for i in range(q1 - q0)
  ]  # fmt: skip


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
