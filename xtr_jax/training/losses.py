"""Training losses for the retrievers and the generator, as pure jnp functions.

Shapes: queries ``q`` [B, Lq, D] with ``q_mask`` [B, Lq]; candidates ``d`` [C, Ld, D] with
``d_mask`` [C, Ld] where C = B in-batch positives (passage i is query i's positive) followed
by any hard negatives (shared by every query, as in DPR/XTR). Vectors are L2-normalised, so
a token score is a dot product in [-1, 1]. Every loss returns (mean loss, logits [B, C]);
``candidate_mask`` [B, C] (False = not a candidate) removes e.g. duplicates of the positive.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array
NEG = -1e9  # finite "minus infinity" for logits and masked maxima


def token_scores(q: Array, d: Array) -> Array:
  """All query-token x candidate-token dot products: [B, Lq, C, Ld]."""
  return jnp.einsum("bqd,cld->bqcl", q.astype(jnp.float32), d.astype(jnp.float32))


def in_batch_cross_entropy(logits: Array, candidate_mask: Array | None = None) -> Array:
  """Softmax CE with query i's positive at column i; returns the mean over queries."""
  b = logits.shape[0]
  if candidate_mask is not None:
    logits = jnp.where(_keep(candidate_mask, b, logits.shape[1]), logits, NEG)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.mean(log_probs[jnp.arange(b), jnp.arange(b)])


def _keep(candidate_mask: Array | None, b: int, c: int) -> Array:
  """[B, C] candidates each query ranks: the mask (default all) plus its own positive."""
  if candidate_mask is None:
    return jnp.ones((b, c), bool)
  return candidate_mask.astype(bool) | jnp.eye(b, c, dtype=bool)


def _order_key(x: Array) -> Array:
  """float32 -> uint32 with the same order (so a bisection over ints is exact)."""
  u = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32)
  sign = jnp.uint32(0x80000000)
  return jnp.where(u & sign, ~u, u | sign)


def top_k_mask(x: Array, k: int) -> Array:
  """``x >= (k-th largest of x along the last axis)``, i.e. the top k plus any ties.

  Equal to comparing with ``jax.lax.top_k(x, k)[0][..., -1:]``, but computed by a 32-step
  bisection over the order-preserving integer keys of the floats: XLA's CPU top_k sorts
  each row and took ~2/3 of an XTR training step on CPU; this is a few vectorised passes.
  """
  key = _order_key(x)
  lo = jnp.zeros(x.shape[:-1], jnp.uint32)  # invariant: count(key >= lo) >= k
  hi = jnp.full(x.shape[:-1], 0xFFFFFFFF, jnp.uint32)  # the answer is <= hi

  def body(_, bounds):
    lo, hi = bounds
    gap = hi - lo
    mid = lo + (gap >> 1) + (gap & 1)  # upper middle, no uint32 overflow
    ok = jnp.sum(key >= mid[..., None], axis=-1, dtype=jnp.int32) >= k
    return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid - 1)

  lo, _ = jax.lax.fori_loop(0, 32, body, (lo, hi))
  return key >= lo[..., None]


def xtr_scores(
  q: Array,
  q_mask: Array,
  d: Array,
  d_mask: Array,
  k_train: int,
  candidate_mask: Array | None = None,
) -> Array:
  """XTR's in-batch token-retrieval scores (Lee et al., 2023, eq. 4): [B, C].

  Each real query token retrieves its top-``k_train`` tokens among all real tokens of all
  candidates in the batch. Candidate j's score for query i is the sum over query tokens of
  the best *retrieved* token score of j (0 when that query token retrieved none of j's
  tokens), divided by Z = the number of query tokens that retrieved at least one of j's
  tokens; Z = 0 gives score 0. Training on this makes the scores of the tokens that
  retrieval will actually find carry the ranking, which is what XTR's inference uses.
  Candidates masked out for query i (``candidate_mask[i, j]`` False, e.g. a copy of its
  positive) are also out of its token pool, so they take none of its ``k_train`` slots.
  """
  scores = token_scores(q, d)  # [B, Lq, C, Ld]
  b, lq, c, ld = scores.shape
  valid = jnp.broadcast_to(d_mask.astype(bool)[None, None], scores.shape)
  if candidate_mask is not None:
    valid = valid & _keep(candidate_mask, b, c)[:, None, :, None]
  masked = jnp.where(valid, scores, NEG).reshape(b, lq, c * ld)
  k = min(k_train, c * ld)
  top = top_k_mask(jax.lax.stop_gradient(masked), k)  # each query token's top k (+ ties)
  retrieved = top.reshape(scores.shape) & valid
  retrieved &= q_mask.astype(bool)[:, :, None, None]
  best = jnp.max(jnp.where(retrieved, scores, NEG), axis=-1)  # [B, Lq, C]
  hit = jnp.any(retrieved, axis=-1)  # [B, Lq, C]
  total = jnp.sum(jnp.where(hit, best, 0.0), axis=1)  # [B, C]
  z = jnp.sum(hit, axis=1).astype(jnp.float32)
  return total / jnp.maximum(z, 1.0)


def colbert_scores(q: Array, q_mask: Array, d: Array, d_mask: Array) -> Array:
  """ColBERT's sum over real query tokens of the max over real candidate tokens: [B, C]."""
  scores = token_scores(q, d)
  best = jnp.max(jnp.where(d_mask.astype(bool)[None, None], scores, NEG), axis=-1)
  return jnp.sum(jnp.where(q_mask.astype(bool)[:, :, None], best, 0.0), axis=1)


def single_vector_scores(q: Array, d: Array) -> Array:
  """Dot products of pooled vectors: q [B, D], d [C, D] -> [B, C]."""
  return q.astype(jnp.float32) @ d.astype(jnp.float32).T


def xtr_loss(
  q: Array,
  q_mask: Array,
  d: Array,
  d_mask: Array,
  *,
  k_train: int,
  temperature: float = 1.0,
  candidate_mask: Array | None = None,
) -> tuple[Array, Array]:
  logits = xtr_scores(q, q_mask, d, d_mask, k_train, candidate_mask) / temperature
  return in_batch_cross_entropy(logits, candidate_mask), logits


def colbert_loss(
  q: Array,
  q_mask: Array,
  d: Array,
  d_mask: Array,
  *,
  temperature: float = 1.0,
  candidate_mask: Array | None = None,
) -> tuple[Array, Array]:
  logits = colbert_scores(q, q_mask, d, d_mask) / temperature
  return in_batch_cross_entropy(logits, candidate_mask), logits


def single_vector_loss(
  q: Array, d: Array, *, temperature: float = 0.05, candidate_mask: Array | None = None
) -> tuple[Array, Array]:
  logits = single_vector_scores(q, d) / temperature
  return in_batch_cross_entropy(logits, candidate_mask), logits


def token_cross_entropy(
  logits: Array, targets: Array, weights: Array, z_loss: float = 0.0
) -> tuple[Array, Array, Array]:
  """Seq2seq loss: weighted token CE plus t5x's z-loss ``z_loss * log(Z)^2``.

  Returns (sum of weighted losses / sum of weights, weighted token accuracy, sum of weights).
  The z-loss keeps the softmax normaliser near 1, which stabilises bfloat16 training.
  """
  logits = logits.astype(jnp.float32)
  log_z = jax.nn.logsumexp(logits, axis=-1)
  target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  per_token = log_z - target_logit + z_loss * jnp.square(log_z)
  w = weights.astype(jnp.float32)
  denom = jnp.maximum(jnp.sum(w), 1.0)
  correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
  return jnp.sum(per_token * w) / denom, jnp.sum(correct * w) / denom, jnp.sum(w)


def in_batch_ranking_metrics(logits: Array, candidate_mask: Array | None = None) -> dict:
  """In-batch MRR and recall@1 of each query's positive (column i) among its candidates.

  Ties count as broken uniformly at random (the expectation is taken exactly), so a model
  whose scores tie -- XTR gives every unretrieved candidate 0 -- is not credited with an
  optimistic rank. ``chance_mrr`` / ``chance_recall@1`` are the same metrics for random
  scores over each query's n unmasked candidates: H_n / n and 1 / n.
  """
  b, c = logits.shape
  keep = _keep(candidate_mask, b, c)
  pos = logits[jnp.arange(b), jnp.arange(b)]
  others = keep & ~jnp.eye(b, c, dtype=bool)
  above = jnp.sum(others & (logits > pos[:, None]), axis=1)
  tied = jnp.sum(others & (logits == pos[:, None]), axis=1)
  harmonic = jnp.concatenate([jnp.zeros(1), jnp.cumsum(1.0 / jnp.arange(1, c + 1))])
  # E[1/rank] with the positive uniform over ranks above+1 .. above+tied+1.
  rr = (harmonic[above + tied + 1] - harmonic[above]) / (tied + 1)
  n = jnp.sum(keep, axis=1)
  return {
    "mrr": jnp.mean(rr),
    "recall@1": jnp.mean(jnp.where(above == 0, 1.0 / (tied + 1), 0.0)),
    "chance_mrr": jnp.mean(harmonic[n] / n),
    "chance_recall@1": jnp.mean(1.0 / n),
  }
