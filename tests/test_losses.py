"""The losses against straightforward numpy loops (padding, hard negatives, Z = 0 cases)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xtr_jax.training import losses


def _normalised(rng, *shape):
  x = rng.normal(size=shape).astype(np.float32)
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _batch(seed=0, b=4, n_neg=1, lq=5, ld=6, dim=8):
  rng = np.random.default_rng(seed)
  q = _normalised(rng, b, lq, dim)
  d = _normalised(rng, b + b * n_neg, ld, dim)
  q_mask = np.ones((b, lq), bool)
  d_mask = np.ones((b + b * n_neg, ld), bool)
  for i in range(b):  # ragged lengths, at least one real token each
    q_mask[i, rng.integers(1, lq + 1) :] = False
  for j in range(len(d)):
    d_mask[j, rng.integers(1, ld + 1) :] = False
  return q, q_mask, d, d_mask


def _ce(logits, keep=None):
  """Mean over queries of -log softmax at column i, over the kept candidates only."""
  out = 0.0
  for i, row in enumerate(logits):
    row = [x for j, x in enumerate(row) if keep is None or keep[i][j] or j == i]
    pos = logits[i][i]
    m = max(row)
    out += -(pos - m - math.log(sum(math.exp(x - m) for x in row)))
  return out / len(logits)


def _xtr_reference(q, q_mask, d, d_mask, k, keep=None):
  b, c = len(q), len(d)
  logits = np.zeros((b, c))
  ok = lambda i, j: keep is None or keep[i][j] or i == j
  for i in range(b):
    for t in range(q.shape[1]):
      if not q_mask[i, t]:
        continue
      pool = [(float(q[i, t] @ d[j, s]), j, s) for j in range(c) for s in range(d.shape[1])]
      pool = [p for p in pool if d_mask[p[1], p[2]] and ok(i, p[1])]
      pool.sort(reverse=True)
      top = pool[:k]
      for j in range(c):
        got = [score for score, jj, _ in top if jj == j]
        if got:
          logits[i, j] += max(got)
    for j in range(c):
      z = 0
      for t in range(q.shape[1]):
        if not q_mask[i, t]:
          continue
        pool = sorted(
          (
            (float(q[i, t] @ d[jj, s]), jj)
            for jj in range(c)
            for s in range(d.shape[1])
            if d_mask[jj, s] and ok(i, jj)
          ),
          reverse=True,
        )[:k]
        z += any(jj == j for _, jj in pool)
      logits[i, j] = logits[i, j] / z if z else 0.0
  return logits


def _colbert_reference(q, q_mask, d, d_mask):
  logits = np.zeros((len(q), len(d)))
  for i in range(len(q)):
    for j in range(len(d)):
      for t in range(q.shape[1]):
        if q_mask[i, t]:
          logits[i, j] += max(float(q[i, t] @ d[j, s]) for s in range(d.shape[1]) if d_mask[j, s])
  return logits


@pytest.mark.parametrize("k_train,temperature", [(3, 1.0), (7, 0.1), (1000, 0.5)])
def test_xtr_loss_matches_loops(k_train, temperature):
  q, q_mask, d, d_mask = _batch(seed=k_train)
  ref = _xtr_reference(q, q_mask, d, d_mask, k_train)
  if k_train == 3:  # small k: some passages were retrieved by no token of some query
    assert (ref == 0).any()
  loss, logits = losses.xtr_loss(
    jnp.asarray(q),
    jnp.asarray(q_mask),
    jnp.asarray(d),
    jnp.asarray(d_mask),
    k_train=k_train,
    temperature=temperature,
  )
  np.testing.assert_allclose(np.asarray(logits) * temperature, ref, atol=1e-5)
  np.testing.assert_allclose(float(loss), _ce(ref / temperature), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k", [1, 7, 64, 300])
def test_top_k_mask_equals_lax_top_k(k):
  rng = np.random.default_rng(k)
  x = rng.normal(size=(3, 5, 300)).astype(np.float32)
  x[0] = np.round(x[0], 1)  # ties at the k-th value are all in
  x[1, :, 40:] = losses.NEG  # masked entries; k beyond the real ones takes them too
  x[2, 0, :] = 0.0
  x[2, 1, :3] = [-0.0, np.inf, -np.inf]
  want = x >= np.asarray(jax.lax.top_k(jnp.asarray(x), k)[0])[..., -1:]
  np.testing.assert_array_equal(np.asarray(losses.top_k_mask(jnp.asarray(x), k)), want)


def test_xtr_with_large_k_is_colbert_over_z():
  # With k above the token count every query token retrieves every candidate, so Z = |q|.
  q, q_mask, d, d_mask = _batch(seed=3)
  xtr = losses.xtr_scores(q, q_mask, d, d_mask, k_train=10_000)
  col = losses.colbert_scores(q, q_mask, d, d_mask)
  np.testing.assert_allclose(np.asarray(xtr) * q_mask.sum(1)[:, None], col, atol=1e-5)


def test_colbert_loss_matches_loops():
  q, q_mask, d, d_mask = _batch(seed=11, n_neg=2)
  ref = _colbert_reference(q, q_mask, d, d_mask)
  loss, logits = losses.colbert_loss(q, q_mask, d, d_mask, temperature=0.5)
  np.testing.assert_allclose(np.asarray(logits), ref / 0.5, atol=1e-4)
  np.testing.assert_allclose(float(loss), _ce(ref / 0.5), rtol=1e-5)


def test_single_vector_loss_matches_loops():
  rng = np.random.default_rng(5)
  q, d = _normalised(rng, 4, 8), _normalised(rng, 8, 8)
  ref = np.array([[sum(q[i, k] * d[j, k] for k in range(8)) for j in range(8)] for i in range(4)])
  loss, logits = losses.single_vector_loss(q, d, temperature=0.05)
  np.testing.assert_allclose(np.asarray(logits), ref / 0.05, atol=1e-4)
  np.testing.assert_allclose(float(loss), _ce(ref / 0.05), rtol=1e-5)


def _with_duplicates(seed=21, b=5, n_neg=1):
  """A batch where passage 3 is a copy of passage 0 and a hard negative copies passage 1."""
  q, q_mask, d, d_mask = _batch(seed=seed, b=b, n_neg=n_neg)
  d[3], d_mask[3] = d[0], d_mask[0]
  d[b + 2], d_mask[b + 2] = d[1], d_mask[1]
  same = np.array([[np.array_equal(d[i], d[j]) for j in range(len(d))] for i in range(b)])
  keep = ~same  # what the trainer builds from the token rows
  assert (~keep).sum() == b + 3  # the diagonal, 0<->3 both ways, 1 -> its negative copy
  return q, q_mask, d, d_mask, keep


def _rr_reference(logits, keep):
  """Exact expected reciprocal rank / recall@1 with ties broken uniformly at random."""
  rrs, r1s = [], []
  for i, row in enumerate(logits):
    others = [x for j, x in enumerate(row) if j != i and keep[i][j]]
    above = sum(x > row[i] for x in others)
    tied = sum(x == row[i] for x in others)
    rrs.append(np.mean([1.0 / (above + 1 + p) for p in range(tied + 1)]))
    r1s.append(1.0 / (tied + 1) if above == 0 else 0.0)
  return float(np.mean(rrs)), float(np.mean(r1s))


@pytest.mark.parametrize("k_train", [4, 9, 1000])
def test_xtr_loss_masks_duplicates_of_the_positive(k_train):
  q, q_mask, d, d_mask, keep = _with_duplicates()
  ref = _xtr_reference(q, q_mask, d, d_mask, k_train, keep)
  loss, logits = losses.xtr_loss(
    q, q_mask, d, d_mask, k_train=k_train, temperature=0.1, candidate_mask=jnp.asarray(keep)
  )
  kept = np.where(keep | np.eye(*keep.shape, dtype=bool))
  np.testing.assert_allclose((np.asarray(logits) * 0.1)[kept], ref[kept], atol=1e-5)
  np.testing.assert_allclose(float(loss), _ce(ref / 0.1, keep), rtol=1e-5, atol=1e-5)
  if k_train == 4:  # the copy no longer takes token slots: query 0's own pool changed
    assert not np.allclose(ref, _xtr_reference(q, q_mask, d, d_mask, k_train))
  unmasked, _ = losses.xtr_loss(q, q_mask, d, d_mask, k_train=k_train, temperature=0.1)
  assert float(unmasked) > float(loss)  # the copy, scored like the positive, was a negative


def test_colbert_and_single_vector_losses_mask_duplicates():
  q, q_mask, d, d_mask, keep = _with_duplicates(seed=4)
  ref = _colbert_reference(q, q_mask, d, d_mask)
  loss, logits = losses.colbert_loss(
    q, q_mask, d, d_mask, temperature=0.5, candidate_mask=jnp.asarray(keep)
  )
  np.testing.assert_allclose(np.asarray(logits), ref / 0.5, atol=1e-4)
  np.testing.assert_allclose(float(loss), _ce(ref / 0.5, keep), rtol=1e-5)
  qv, dv = q[:, 0], d[:, 0]
  ref = np.array([[float(qv[i] @ dv[j]) for j in range(len(dv))] for i in range(len(qv))])
  loss, logits = losses.single_vector_loss(
    qv, dv, temperature=0.05, candidate_mask=jnp.asarray(keep)
  )
  np.testing.assert_allclose(float(loss), _ce(ref / 0.05, keep), rtol=1e-5)


def test_candidate_mask_removes_duplicates_of_the_positive():
  logits = np.array([[2.0, 5.0, 1.0], [0.0, 1.0, 3.0]], np.float32)
  mask = np.array([[True, False, True], [True, True, True]])
  loss = losses.in_batch_cross_entropy(jnp.asarray(logits), jnp.asarray(mask))
  expected = (_ce(np.array([[2.0, -1e9, 1.0]])[:, :]) + _ce(np.array([[1.0, 0.0, 3.0]]))) / 2
  np.testing.assert_allclose(float(loss), expected, rtol=1e-6)
  metrics = losses.in_batch_ranking_metrics(jnp.asarray(logits), jnp.asarray(mask))
  # query 0 ranks first once the duplicate is gone; query 1's positive (1.0) ranks 2nd of 3.
  np.testing.assert_allclose(float(metrics["mrr"]), (1 + 1 / 2) / 2)
  np.testing.assert_allclose(float(metrics["recall@1"]), 0.5)
  # chance over 2 and 3 candidates: H_2/2 = 0.75, H_3/3 = 11/18.
  np.testing.assert_allclose(float(metrics["chance_mrr"]), (0.75 + 11 / 18) / 2, rtol=1e-6)
  np.testing.assert_allclose(float(metrics["chance_recall@1"]), (1 / 2 + 1 / 3) / 2, rtol=1e-6)


def test_ranking_metrics_break_ties_at_random_and_match_loops():
  # XTR scores every unretrieved candidate 0: all-zero logits are chance, not rank 1.
  zeros = np.zeros((4, 6), np.float32)
  m = losses.in_batch_ranking_metrics(jnp.asarray(zeros))
  np.testing.assert_allclose(float(m["mrr"]), sum(1 / k for k in range(1, 7)) / 6, rtol=1e-6)
  np.testing.assert_allclose(float(m["mrr"]), float(m["chance_mrr"]), rtol=1e-6)
  np.testing.assert_allclose(float(m["recall@1"]), 1 / 6, rtol=1e-6)
  rng = np.random.default_rng(0)
  logits = rng.integers(0, 3, size=(6, 9)).astype(np.float32)  # many ties
  keep = rng.random((6, 9)) > 0.3
  m = losses.in_batch_ranking_metrics(jnp.asarray(logits), jnp.asarray(keep))
  mrr, r1 = _rr_reference(logits, keep)
  np.testing.assert_allclose(float(m["mrr"]), mrr, rtol=1e-6)
  np.testing.assert_allclose(float(m["recall@1"]), r1, rtol=1e-6)
  n = (keep | np.eye(6, 9, dtype=bool)).sum(1)
  chance = np.mean([sum(1 / k for k in range(1, c + 1)) / c for c in n])
  np.testing.assert_allclose(float(m["chance_mrr"]), chance, rtol=1e-6)


def test_token_cross_entropy_with_z_loss():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 3, 5)).astype(np.float32)
  targets = rng.integers(0, 5, size=(2, 3))
  weights = np.array([[1, 1, 0], [1, 0, 0]], np.float32)
  total, acc = 0.0, 0.0
  for b in range(2):
    for t in range(3):
      if weights[b, t]:
        lz = math.log(sum(math.exp(x) for x in logits[b, t]))
        total += lz - logits[b, t, targets[b, t]] + 1e-4 * lz * lz
        acc += float(np.argmax(logits[b, t]) == targets[b, t])
  loss, accuracy, denom = losses.token_cross_entropy(logits, targets, weights, z_loss=1e-4)
  np.testing.assert_allclose(float(loss), total / 3, rtol=1e-5)
  np.testing.assert_allclose(float(accuracy), acc / 3, rtol=1e-6)
  assert float(denom) == 3.0
