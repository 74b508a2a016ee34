"""Exact maximum inner product search over token vectors, chunked to bound memory."""

from __future__ import annotations

import mmap
from collections.abc import Iterator

import jax
import jax.numpy as jnp
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


def select_top_k(ids: np.ndarray, scores: np.ndarray, k: int):
  """Exact top-``k`` per row by (score descending, id ascending), unsorted; [Q, >= k] in.

  ``argpartition`` alone picks arbitrarily among ties at the k-th score; the rare rows with
  more candidates at or above that score than slots are redone with a lexsort.
  """
  part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
  top_ids = np.take_along_axis(ids, part, axis=1)
  top_scores = np.take_along_axis(scores, part, axis=1)
  thr = top_scores.min(axis=1, keepdims=True)
  for r in np.nonzero((scores >= thr).sum(axis=1) > k)[0]:
    cand = np.nonzero(scores[r] >= thr[r, 0])[0]
    order = cand[np.lexsort((ids[r][cand], -scores[r][cand].astype(np.float64)))[:k]]
    top_ids[r], top_scores[r] = ids[r][order], scores[r][order]
  return top_ids, top_scores


def _fold_top_k(top_ids, top_scores, sims: np.ndarray, start: int, k: int):
  """Running top-``k`` (unsorted) of the rows of ``sims`` (ids offset by ``start``).

  Why: a full ``argpartition`` of every [queries, chunk] block dominated brute force (2x the
  matmul). Once ``k`` candidates are held, only scores strictly above the row's current
  k-th score can enter (a later, larger id never wins a tie), usually a tiny fraction.
  """
  if top_ids is None or top_ids.shape[1] < k:
    ids = np.broadcast_to(np.arange(start, start + sims.shape[1]), sims.shape)
    if top_ids is not None:
      ids, sims = np.concatenate([top_ids, ids], 1), np.concatenate([top_scores, sims], 1)
    return select_top_k(ids, sims, min(k, sims.shape[1]))
  rows, cols = np.nonzero(sims > top_scores.min(axis=1, keepdims=True))
  if rows.size == 0:
    return top_ids, top_scores
  counts = np.bincount(rows, minlength=sims.shape[0])
  pos = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
  new_ids = np.full((sims.shape[0], counts.max()), -1, np.int64)
  new_scores = np.full(new_ids.shape, -np.inf, np.float32)
  new_ids[rows, pos] = cols + start
  new_scores[rows, pos] = sims[rows, cols]
  ids = np.concatenate([top_ids, new_ids], 1)
  scores = np.concatenate([top_scores, new_scores], 1)
  return select_top_k(ids, scores, k)


CHECK_CHUNK_BYTES = 1 << 24  # bytes read per step of the non-finite scan


def _row_chunks(array, step: int) -> Iterator[tuple[int, np.ndarray]]:
  """(first row, rows) blocks of ``array``; a whole memory-mapped .npy is read from its
  file instead, so the scan does not leave every page of it mapped in this process."""
  n = array.shape[0]
  mapped = isinstance(array, np.memmap) and isinstance(array.base, mmap.mmap)
  if not (mapped and array.flags.c_contiguous and array.filename):
    for s in range(0, n, step):
      yield s, np.asarray(array[s : s + step])
    return
  row_bytes = array.dtype.itemsize * int(np.prod(array.shape[1:], dtype=np.int64))
  with open(array.filename, "rb") as f:
    for s in range(0, n, step):
      rows = min(step, n - s)
      f.seek(array.offset + s * row_bytes)
      buf = f.read(rows * row_bytes)
      yield s, np.frombuffer(buf, array.dtype).reshape((-1, *array.shape[1:]))


def _nonfinite_rows(block: np.ndarray) -> np.ndarray:
  """bool [rows]: rows holding a NaN or Inf. float16 is tested on its exponent bits (all
  ones = Inf/NaN), 4x faster than ``np.isfinite``, which converts each value first."""
  if block.dtype.itemsize == 2:
    bits = np.ascontiguousarray(block).view(block.dtype.str.replace("f", "u"))
    mask = np.uint16(0x7C00)
    return ((bits & mask) == mask).any(axis=1)
  return ~np.isfinite(block).all(axis=1)


def first_nonfinite_row(array, dtype=None, chunk_bytes: int = CHECK_CHUNK_BYTES) -> int | None:
  """First-axis index of the first row of ``array`` with a NaN or Inf, None if there is none.

  Why chunked: stored token vectors may be a memory map far larger than RAM, so the scan
  holds ``chunk_bytes`` at a time. ``dtype``: test the values as they will be stored (a
  float32 1e5 is finite, its float16 is Inf). Integer arrays have nothing to check.
  """
  arr = array if np.ndim(array) else np.reshape(array, (1,))
  dtype = np.dtype(dtype or arr.dtype)
  if dtype.kind != "f" or arr.dtype.kind not in "fiu":
    return None
  width = int(np.prod(arr.shape[1:], dtype=np.int64))
  if arr.shape[0] == 0 or width == 0:
    return None
  step = max(1, chunk_bytes // (width * max(arr.dtype.itemsize, dtype.itemsize)))
  for start, block in _row_chunks(arr, step):
    with np.errstate(over="ignore"):  # an overflow to Inf is what is being looked for
      block = np.asarray(block, dtype).reshape(block.shape[0], width)
    bad = _nonfinite_rows(block)
    if bad.any():
      return start + int(np.argmax(bad))
  return None


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
    top_ids = top_scores = None
    for start in range(0, self.size, self.chunk_size):
      chunk = np.asarray(self.vectors[start : start + self.chunk_size], np.float32)
      top_ids, top_scores = _fold_top_k(top_ids, top_scores, queries @ chunk.T, start, k)
    return merge_top_k([top_ids], [top_scores], k)


@jax.jit
def _dot_rows(queries: jax.Array, rows: jax.Array) -> jax.Array:
  """[Q, d] . [Q, K, d] -> [Q, K] in float32; XLA fuses the float16 -> float32 conversion
  (numpy's astype of the gathered rows cost 3x the dot products)."""
  return jnp.einsum("qd,qkd->qk", queries, rows.astype(jnp.float32))


def rescore_candidates(
  queries: np.ndarray, candidate_ids: np.ndarray, vectors: np.ndarray, k: int, chunk: int = 64
) -> tuple[np.ndarray, np.ndarray]:
  """Exact top-``k`` of each query's ANN candidates, re-scored with the stored vectors.

  Why: ScaNN's 4-bit asymmetric-hashing scores reshuffle the XTR top-k' (and its imputed
  k'-th score); recomputing the dot products of a few thousand candidates from the float16
  vectors we keep anyway makes both exact whenever the true top-k' is among the candidates,
  without the float32 copy ScaNN's own ``reorder`` would store.

  Args:
    queries: [Q, d] query vectors.
    candidate_ids: [Q, K] token ids (-1 = empty slot), in any order.
    vectors: [N, d] token vectors (float16 memmap is fine: only candidate rows are read).
    k: number kept per query (<= K).
    chunk: queries per block; bounds the gathered [chunk, K, d] float32 block.

  Returns:
    (ids [Q, k] int64, scores [Q, k] float32): by exact score descending, ties to the smaller
    id (as ``BruteForceSearcher``); empty slots are -1 with score -inf, last.
  """
  queries = np.asarray(queries, np.float32)
  candidate_ids = np.asarray(candidate_ids, np.int64)
  if candidate_ids.ndim != 2 or candidate_ids.shape[0] != queries.shape[0]:
    raise ValueError(
      f"candidate_ids {candidate_ids.shape} must be [num_queries={queries.shape[0]}, K]"
    )
  k = min(k, candidate_ids.shape[1])
  out_ids = np.empty((queries.shape[0], k), np.int64)
  out_scores = np.empty((queries.shape[0], k), np.float32)
  big = np.iinfo(np.int64).max
  for s in range(0, queries.shape[0], chunk):
    # Sorting ids first makes the stable score sort below break ties by id.
    ids = np.sort(np.where(candidate_ids[s : s + chunk] < 0, big, candidate_ids[s : s + chunk]))
    empty = ids == big
    safe = np.where(empty, 0, ids)
    # np.take reads a memmap's rows ~5x faster than fancy indexing; other row views (the
    # sharded index's ConcatVectors) only offer __getitem__.
    flat = safe.reshape(-1)
    rows = np.take(vectors, flat, axis=0) if isinstance(vectors, np.ndarray) else vectors[flat]
    gathered = np.asarray(rows).reshape(*safe.shape, -1)
    scores = np.array(_dot_rows(queries[s : s + chunk], gathered))
    scores[empty] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(ids, order, axis=1)
    out_ids[s : s + chunk] = np.where(top == big, -1, top)
    out_scores[s : s + chunk] = np.take_along_axis(scores, order, axis=1)
  return out_ids, out_scores
