"""Qrels metrics against hand-computed values; significance against scipy / numpy."""

import math

import numpy as np
import pytest
from scipy import stats

from xtr_jax.evaluation import io, metrics, significance

QUERIES = {
  "a": io.Query("a", "ja", "?"),
  "b": io.Query("b", "ja", "?"),
  "c": io.Query("c", "fi", "?"),
  "d": io.Query("d", "fi", "?"),  # judged, absent from the run: scores 0
  "e": io.Query("e", "fi", "?"),  # no qrels: not evaluated
}
QRELS = {"a": {"g1": 1, "g2": 1}, "b": {"g": 1}, "c": {"g": 1}, "d": {"g": 1}}
RUN = {
  # a: golds at ranks 2 and 4.
  "a": [("x", 9.0), ("g1", 8.0), ("y", 7.0), ("g2", 6.0)],
  # b: gold at rank 1, but tied in score with the non-gold "z" listed first? No: listed second
  # with a smaller rank -> our order keeps it first.
  "b": [("g", 1.0), ("z", 1.0)],
  # c: gold at rank 12 (beyond @10).
  "c": [(f"n{i}", 20.0 - i) for i in range(11)] + [("g", 1.0)],
  "e": [("q", 1.0)],
}


def hand_ndcg(gold_ranks, n_rel, k=10):
  dcg = sum(1 / math.log2(r + 1) for r in gold_ranks if r <= k)
  idcg = sum(1 / math.log2(r + 1) for r in range(1, min(n_rel, k) + 1))
  return dcg / idcg


def test_metrics_match_hand_computation(caplog):
  names = ["Recall@2", "Recall@20", "MRR@10", "nDCG@10"]
  res = metrics.evaluate_qrels_metrics(RUN, QRELS, QUERIES, names)
  pq = res["per_query"]
  assert pq["Recall@2"] == {"a": 0.5, "b": 1.0, "c": 0.0, "d": 0.0}
  assert pq["Recall@20"] == {"a": 1.0, "b": 1.0, "c": 1.0, "d": 0.0}
  assert pq["MRR@10"] == pytest.approx({"a": 0.5, "b": 1.0, "c": 0.0, "d": 0.0})
  assert pq["nDCG@10"]["a"] == pytest.approx(hand_ndcg([2, 4], 2))
  assert pq["nDCG@10"]["b"] == pytest.approx(1.0)
  assert res["counts"] == {"fi": 2, "ja": 2}
  assert res["per_lang"]["ja"]["Recall@2"] == 0.75
  assert res["per_lang"]["fi"]["Recall@20"] == 0.5
  assert res["macro"]["Recall@20"] == pytest.approx((1.0 + 0.5) / 2)
  assert res["micro"]["Recall@2"] == pytest.approx(1.5 / 4)
  assert "1 of 4 judged queries are missing" in caplog.text


def test_metric_names():
  assert str(metrics.to_ir_measure("Recall@20")) == "R@20"
  assert str(metrics.to_ir_measure("MRR@10")) == "RR@10"
  assert str(metrics.to_ir_measure("nDCG@10")) == "nDCG@10"
  with pytest.raises(ValueError, match="unknown metric 'Bogus@3'"):
    metrics.to_ir_measure("Bogus@3")


def test_no_overlap_is_an_error():
  with pytest.raises(ValueError, match="no query of the queries file has qrels"):
    metrics.evaluate_qrels_metrics(RUN, {"zzz": {"g": 1}}, QUERIES, ["Recall@2"])


def test_paired_t_test_matches_scipy():
  rng = np.random.default_rng(3)
  a = rng.uniform(size=50)
  b = a - 0.05 + rng.normal(scale=0.1, size=50)
  t, p = significance.paired_t_test(a, b)
  ref = stats.ttest_rel(a, b)
  assert t == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)
  # Hand formula for t: mean(d) / (sd(d) / sqrt(n)).
  d = a - b
  assert t == pytest.approx(d.mean() / (d.std(ddof=1) / math.sqrt(d.size)))
  assert significance.paired_t_test(a, a) == (0.0, 1.0)


def test_bootstrap_ci():
  rng = np.random.default_rng(0)
  a = rng.normal(0.6, 0.2, size=400)
  b = a - rng.normal(0.05, 0.1, size=400)
  lo, hi = significance.paired_bootstrap_ci(a, b, num_samples=4000, seed=1)
  d = a - b
  half = 1.96 * d.std(ddof=1) / math.sqrt(d.size)  # normal approximation
  assert lo < d.mean() < hi
  assert hi - lo == pytest.approx(2 * half, rel=0.1)
  assert (lo, hi) == significance.paired_bootstrap_ci(a, b, num_samples=4000, seed=1)
  assert significance.paired_bootstrap_ci(a, a - 0.25, num_samples=100) == pytest.approx(
    (0.25, 0.25)
  )


def test_compare_alignment():
  c = significance.compare({"x": 1.0, "y": 0.0, "z": 1.0}, {"x": 0.0, "y": 0.0, "z": 0.0})
  assert c.n == 3 and c.diff == pytest.approx(2 / 3)
  with pytest.raises(ValueError, match="1 only in the first"):
    significance.compare({"x": 1.0, "y": 0.0}, {"x": 0.0})
