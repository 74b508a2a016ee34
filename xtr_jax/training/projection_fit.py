"""A projection fitted to a frozen backbone's own token scores (distillation into fewer dims).

XTR stores one vector per token, so its width is the index's size. The principal axes
(``projection_init.principal_axes``) keep most of the token states' energy, but retrieval
lives in the few highest similarities of each query token, and those are what a 3x cut of
the width blurs: on multilingual-E5 the PCA projection alone costs raw-state XTR about 8
Recall@20 points (results/me5_xor_mini.md). Here the backbone is the teacher and stays
frozen; only the [d, proj_dim] kernel is trained, on cached token states, so thousands of
large batches cost minutes on a CPU instead of one fine-tuning run each.

The loss, per batch of B (query, positive passage) pairs:

- **token KL**: for each real query token, the KL divergence from the teacher's softmax over
  all real passage tokens of the batch (similarities / ``token_temperature``) to the
  student's. A sharp temperature weights the top neighbours, the ones XTR retrieves.
- **XTR cross-entropy** (times ``doc_weight``): the student's in-batch XTR scores
  (``losses.xtr_scores``, top-``k_train`` token retrieval) against the gold passage, as the
  XTR fine-tune trains them.

``heldout_retrieval`` measures the result without touching any benchmark: each held-out
query retrieves among all held-out passages with XTR inference (top-k' tokens, imputation).
"""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax

from xtr_jax.models.xtr import l2_normalize
from xtr_jax.training import losses

Array = jax.Array


def pad_states(states: list[np.ndarray], length: int) -> tuple[np.ndarray, np.ndarray]:
  """Per-text [len_i, d] vectors -> ([N, length, d] float16, [N, length] bool mask)."""
  d = states[0].shape[1]
  out = np.zeros((len(states), length, d), np.float16)
  mask = np.zeros((len(states), length), bool)
  for i, s in enumerate(states):
    n = min(len(s), length)
    out[i, :n], mask[i, :n] = s[:n], True
  return out, mask


def project(x: Array, kernel: Array) -> Array:
  """Projected, L2-normalised token vectors (what ``RetrievalEncoder`` emits).

  Normalised through ``rsqrt(max(|y|^2, eps))``, whose gradient is finite at the zero vectors
  of padding (the norm's is not)."""
  y = x.astype(jnp.float32) @ kernel
  return y * jax.lax.rsqrt(jnp.maximum(jnp.sum(y * y, axis=-1, keepdims=True), 1e-12))


def token_kl(teacher: Array, student: Array, q_mask: Array, d_mask: Array, tau: float) -> Array:
  """Mean over real query tokens of KL(teacher || student) over the real passage tokens.

  ``teacher``/``student``: [Tq, Td] similarities of the batch's flattened tokens.
  """
  neg = jnp.float32(-1e9)
  t = jnp.where(d_mask[None], teacher / tau, neg)
  s = jnp.where(d_mask[None], student / tau, neg)
  log_pt = jax.nn.log_softmax(t, axis=-1)
  log_ps = jax.nn.log_softmax(s, axis=-1)
  kl = jnp.sum(jnp.where(d_mask[None], jnp.exp(log_pt) * (log_pt - log_ps), 0.0), axis=-1)
  return jnp.sum(jnp.where(q_mask, kl, 0.0)) / jnp.maximum(jnp.sum(q_mask), 1)


def distill_loss(
  kernel: Array,
  q: Array,
  q_mask: Array,
  d: Array,
  d_mask: Array,
  *,
  token_temperature: float,
  doc_weight: float,
  k_train: int,
  doc_temperature: float = 0.05,
) -> tuple[Array, dict]:
  """Token KL + ``doc_weight`` x XTR in-batch cross-entropy; q [B, Lq, d], d [B, Ld, d]."""
  b, lq, dim = q.shape
  ld = d.shape[1]
  qt = l2_normalize(q.reshape(b * lq, dim))  # the teacher: no gradient flows here
  dt = l2_normalize(d.reshape(b * ld, dim))
  qs, ds = project(qt, kernel), project(dt, kernel)
  kl = token_kl(qt @ dt.T, qs @ ds.T, q_mask.reshape(-1), d_mask.reshape(-1), token_temperature)
  logits = losses.xtr_scores(qs.reshape(b, lq, -1), q_mask, ds.reshape(b, ld, -1), d_mask, k_train)
  ce = losses.in_batch_cross_entropy(logits / doc_temperature)
  return kl + doc_weight * ce, {"token_kl": kl, "xtr_ce": ce}


def fit_projection(
  queries: tuple[np.ndarray, np.ndarray],
  passages: tuple[np.ndarray, np.ndarray],
  init_kernel: np.ndarray,
  *,
  steps: int = 2000,
  batch_size: int = 64,
  learning_rate: float = 1e-3,
  token_temperature: float = 0.02,
  doc_weight: float = 1.0,
  k_train: int = 256,
  seed: int = 0,
  log_every: int = 100,
) -> tuple[np.ndarray, list[dict]]:
  """Adam on the kernel alone from ``init_kernel``; returns (kernel, logged losses).

  ``queries``/``passages``: ([N, L, d] states, [N, L] mask) of N aligned pairs whose
  passages are distinct (row i is query i's positive and a negative for the others).
  """
  (q, qm), (d, dm) = queries, passages
  if len(q) != len(d) or len(q) < batch_size:
    raise ValueError(f"need >= batch_size={batch_size} aligned pairs, got {len(q)} and {len(d)}")
  opt = optax.adam(learning_rate)
  kernel = jnp.asarray(init_kernel, jnp.float32)
  state = opt.init(kernel)
  loss_fn = lambda k, *batch: distill_loss(
    k, *batch, token_temperature=token_temperature, doc_weight=doc_weight, k_train=k_train
  )

  @jax.jit
  def step(kernel, state, qb, qmb, db, dmb):
    (loss, parts), grad = jax.value_and_grad(loss_fn, has_aux=True)(kernel, qb, qmb, db, dmb)
    updates, state = opt.update(grad, state, kernel)
    return optax.apply_updates(kernel, updates), state, {"loss": loss, **parts}

  rng = np.random.default_rng(seed)
  order, history = rng.permutation(len(q)), []
  for s in range(steps):
    start = (s * batch_size) % (len(q) - len(q) % batch_size)
    if start == 0 and s:
      order = rng.permutation(len(q))
    idx = np.sort(order[start : start + batch_size])
    kernel, state, metrics = step(kernel, state, q[idx], qm[idx], d[idx], dm[idx])
    if (s + 1) % log_every == 0 or s + 1 == steps:
      row = {"step": s + 1, **{k: float(v) for k, v in metrics.items()}}
      history.append(row)
      logging.info("projection fit %s", " ".join(f"{k} {v:.4g}" for k, v in row.items()))
  return np.asarray(kernel, np.float32), history


def heldout_retrieval(
  queries: tuple[np.ndarray, np.ndarray],
  passages: tuple[np.ndarray, np.ndarray],
  kernel: np.ndarray | None,
  k_prime: int = 64,
  chunk: int = 64,
) -> dict[str, float]:
  """MRR@10 and Recall@1/10 of query i's passage i among all N passages, XTR inference.

  Each real query token retrieves its top-``k_prime`` passage tokens (exact), missing
  scores are imputed with the k'-th (``index.xtr_search``); ``kernel=None`` scores the
  states as they are (the teacher).
  """
  from xtr_jax.index.xtr_search import xtr_search_batch  # noqa: PLC0415

  (q, qm), (d, dm) = queries, passages

  def encode(x: np.ndarray) -> Array:
    x = l2_normalize(jnp.asarray(x))
    return x if kernel is None else project(x, kernel)

  owner = np.repeat(np.arange(len(d)), dm.sum(axis=1))
  table = encode(d[dm])
  ranks = []
  for start in range(0, len(q), chunk):
    qc, mc = q[start : start + chunk], qm[start : start + chunk]
    scores, rows = jax.lax.top_k(encode(qc[mc]) @ table.T, min(k_prime, table.shape[0]))
    results = xtr_search_batch(owner[np.asarray(rows)], np.asarray(scores), mc.sum(axis=1), 10)
    for i, (found, _) in enumerate(results):
      hit = np.nonzero(found == start + i)[0]
      ranks.append(int(hit[0]) + 1 if hit.size else 0)
  ranks = np.asarray(ranks)
  return {
    "mrr@10": float(np.mean(np.where(ranks > 0, 1.0 / np.maximum(ranks, 1), 0.0))),
    "recall@1": float(np.mean(ranks == 1)),
    "recall@10": float(np.mean(ranks > 0)),
    "queries": int(len(ranks)),
  }
