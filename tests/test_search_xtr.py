"""XTR aggregation and exact MaxSim against independent loop implementations."""

import numpy as np
import pytest

from xtr_jax.index.brute_force import BruteForceSearcher, merge_top_k, rescore_candidates
from xtr_jax.index.xtr_search import (
  maxsim_search,
  passage_token_groups,
  xtr_scores,
  xtr_search,
  xtr_search_batch,
)


def reference_xtr(token_passages, token_scores, query_mask, k):
  """Plain loops over the definition (Lee et al. 2023, sec. 4)."""
  per_token = []  # (best score per passage dict, imputed value)
  for t in range(len(query_mask)):
    if not query_mask[t]:
      continue
    best, retrieved = {}, []
    for p, s in zip(token_passages[t], token_scores[t]):
      if p < 0:
        continue
      retrieved.append(s)
      best[int(p)] = max(best.get(int(p), -1e30), float(s))
    if retrieved:
      per_token.append((best, min(retrieved)))
  passages = sorted({p for best, _ in per_token for p in best})
  scored = []
  for p in passages:
    total = sum(best.get(p, imputed) for best, imputed in per_token)
    scored.append((p, total / len(per_token)))
  scored.sort(key=lambda x: (-x[1], x[0]))
  return scored[:k]


def random_case(rng, num_tokens=7, k_prime=6, num_passages=12, quantize=False):
  tp = rng.integers(0, num_passages, size=(num_tokens, k_prime))
  ts = -np.sort(-rng.normal(size=(num_tokens, k_prime)).astype(np.float32), axis=1)
  if quantize:  # many exact ties
    ts = -np.sort(-np.round(rng.normal(size=(num_tokens, k_prime)), 0), axis=1).astype(np.float32)
  tp[rng.random(tp.shape) < 0.1] = -1  # empty slots (ScaNN NaN padding)
  mask = rng.random(num_tokens) < 0.8
  mask[0] = True
  return tp, ts, mask


@pytest.mark.parametrize("seed", range(30))
def test_xtr_matches_reference_loops(seed):
  rng = np.random.default_rng(seed)
  tp, ts, mask = random_case(rng, quantize=seed % 3 == 0)
  rows, scores = xtr_search(tp, ts, mask, k=5)
  ref = reference_xtr(tp, ts, mask, 5)
  assert rows.tolist() == [p for p, _ in ref]
  np.testing.assert_allclose(scores, [s for _, s in ref], rtol=1e-5, atol=1e-6)


def test_imputation_uses_lowest_retrieved_score_and_ignores_padding():
  # Query token 0 retrieved passages 0 (0.9) and 1 (0.5); token 1 retrieved only passage 1
  # (0.8, 0.7 -> best 0.8, lowest 0.7). Token 2 is padding with a huge score for passage 0.
  tp = np.array([[0, 1], [1, 1], [0, 0]])
  ts = np.array([[0.9, 0.5], [0.8, 0.7], [9.0, 9.0]], np.float32)
  rows, scores = xtr_scores(tp, ts, np.array([True, True, False]))
  got = dict(zip(rows.tolist(), scores.tolist()))
  assert got[0] == pytest.approx((0.9 + 0.7) / 2)  # imputed 0.7 for token 1
  assert got[1] == pytest.approx((0.5 + 0.8) / 2)


def test_shape_errors_are_named():
  with pytest.raises(ValueError, match="token_passages"):
    xtr_scores(np.zeros((2, 3), int), np.zeros((2, 4)), np.ones(2, bool))
  with pytest.raises(ValueError, match="query_mask"):
    xtr_scores(np.zeros((2, 3), int), np.zeros((2, 3)), np.ones(3, bool))


def reference_maxsim(q, qmask, vectors, t2p, candidates):
  out = {}
  for p in candidates:
    toks = [vectors[i].astype(np.float64) for i in range(len(t2p)) if t2p[i] == p]
    total = 0.0
    for t in range(len(q)):
      if qmask[t]:
        total += max(float(np.dot(q[t], v)) for v in toks)
    out[int(p)] = total / qmask.sum()
  return out


@pytest.mark.parametrize("seed", range(5))
def test_maxsim_matches_reference(seed):
  rng = np.random.default_rng(seed)
  num_passages = 9
  t2p = rng.permutation(np.repeat(np.arange(num_passages), rng.integers(1, 5, num_passages)))
  vectors = rng.normal(size=(len(t2p), 8)).astype(np.float16)
  q = rng.normal(size=(5, 8)).astype(np.float32)
  qmask = np.array([1, 1, 1, 0, 1], bool)
  order, starts = passage_token_groups(t2p.astype(np.int32), num_passages)
  cands = np.array([7, 2, 0, 5])
  rows, scores = maxsim_search(q, qmask, vectors, order, starts, cands, k=3)
  ref = reference_maxsim(q, qmask, vectors, t2p, cands)
  expect = sorted(ref.items(), key=lambda x: (-x[1], x[0]))[:3]
  assert rows.tolist() == [p for p, _ in expect]
  np.testing.assert_allclose(scores, [s for _, s in expect], rtol=1e-4)


def test_brute_force_and_sharded_merge_equal_full_sort():
  rng = np.random.default_rng(0)
  db = rng.normal(size=(1000, 16)).astype(np.float16)
  q = rng.normal(size=(4, 16)).astype(np.float32)
  ids, scores = BruteForceSearcher(db, chunk_size=97).search_batched(q, 10)
  full = q @ db.astype(np.float32).T
  expect = np.argsort(-full, axis=1, kind="stable")[:, :10]
  np.testing.assert_array_equal(ids, expect)
  # Per-shard top-k merged exactly == search over the union.
  parts = [(0, 300), (300, 1000)]
  res = [BruteForceSearcher(db[a:b]).search_batched(q, 10) for a, b in parts]
  mids, mscores = merge_top_k([r[0] + a for r, (a, _) in zip(res, parts)], [r[1] for r in res], 10)
  np.testing.assert_array_equal(mids, expect)
  np.testing.assert_allclose(mscores, scores)


@pytest.mark.parametrize("chunk_size", [7, 97, 5000])
def test_brute_force_threshold_folding_with_ties_equals_full_sort(chunk_size):
  # Quantized vectors give many exact score ties; ties must go to the smaller id.
  rng = np.random.default_rng(1)
  db = np.round(rng.normal(size=(2000, 8)) * 2).astype(np.float16)
  q = np.round(rng.normal(size=(300, 8)) * 2).astype(np.float32)
  ids, scores = BruteForceSearcher(db, chunk_size=chunk_size).search_batched(q, 25)
  full = q @ db.astype(np.float32).T
  expect = np.argsort(-full, axis=1, kind="stable")[:, :25]
  np.testing.assert_array_equal(scores, np.take_along_axis(full, expect, axis=1))
  np.testing.assert_array_equal(ids, expect)


def test_rescore_candidates_is_exact_top_k_of_the_candidates():
  rng = np.random.default_rng(2)
  db = rng.normal(size=(500, 16)).astype(np.float16)
  q = rng.normal(size=(70, 16)).astype(np.float32)
  cand = np.stack([rng.choice(500, 40, replace=False) for _ in range(70)])
  cand[:, -3:] = -1  # empty ANN slots
  ids, scores = rescore_candidates(q, cand, db, 10, chunk=16)
  for i in range(70):
    c = cand[i][cand[i] >= 0]
    exact = [float(np.dot(q[i], db[j].astype(np.float32))) for j in c]
    order = sorted(range(len(c)), key=lambda t: (-exact[t], c[t]))[:10]
    assert ids[i].tolist() == [int(c[t]) for t in order]
    np.testing.assert_allclose(scores[i], [exact[t] for t in order], rtol=1e-5, atol=1e-5)
  # All tokens as candidates (shuffled): equals brute force exactly, empties stay last.
  perm = np.stack([rng.permutation(500) for _ in range(70)])
  ids, scores = rescore_candidates(q, perm, db, 30)
  bf_ids, bf_scores = BruteForceSearcher(db).search_batched(q, 30)
  np.testing.assert_array_equal(ids, bf_ids)
  np.testing.assert_allclose(scores, bf_scores, rtol=1e-5, atol=1e-5)

  class RowView:  # only __getitem__, like the sharded index's ConcatVectors
    def __getitem__(self, idx):
      return db[idx]

  ids2, scores2 = rescore_candidates(q, perm, RowView(), 30)
  np.testing.assert_array_equal(ids2, bf_ids)
  few = np.full((2, 5), -1)
  few[:, 0] = [3, 4]
  ids, scores = rescore_candidates(q[:2], few, db, 3)
  assert ids[:, 1:].tolist() == [[-1, -1], [-1, -1]] and np.isneginf(scores[:, 1:]).all()
  with pytest.raises(ValueError, match="candidate_ids"):
    rescore_candidates(q, cand[:5], db, 3)


@pytest.mark.parametrize("seed", range(6))
def test_xtr_search_batch_equals_per_query_reference(seed):
  """The batched aggregation returns xtr_search's rows and float32 scores bit for bit."""
  rng = np.random.default_rng(seed)
  for _ in range(30):
    lengths = rng.integers(0, 9, size=int(rng.integers(1, 7)))
    kp, n_passages = int(rng.integers(1, 15)), int(rng.integers(1, 40))
    tp = rng.integers(-1, n_passages, size=(int(lengths.sum()), kp))
    tp[rng.random(tp.shape[0]) < 0.2] = -1  # query tokens that retrieved nothing
    ts = rng.normal(size=tp.shape).astype(np.float32)
    if seed % 2:  # many exact ties
      ts = (np.round(ts * 4) / 4).astype(np.float32)
    k = int(rng.integers(1, 25))
    got = xtr_search_batch(tp, ts, lengths, k, max_cells=int(rng.choice([1, 64, 1 << 24])))
    at = 0
    for q, n in enumerate(lengths):
      rows, scores = xtr_search(tp[at : at + n], ts[at : at + n], np.ones(n, bool), k)
      at += n
      np.testing.assert_array_equal(got[q][0], rows)
      np.testing.assert_array_equal(got[q][1], scores)
      assert got[q][1].dtype == np.float32


def test_xtr_search_batch_rejects_mismatched_lengths():
  with pytest.raises(ValueError, match=r"query_lengths \(sum 3\) disagree"):
    xtr_search_batch(np.zeros((2, 4), int), np.zeros((2, 4), np.float32), [1, 2], 5)
