"""benchmarks/scale_100m.py helpers: deterministic stand-in, resumable shard build with the
float16 table dropped (sparse placeholder), exact top-k' and the merged search/recall report."""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("scale_100m", ROOT / "benchmarks" / "scale_100m.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

PARAMS = {"max_leaves": 20, "num_leaves_to_search": 20, "training_sample_size": 3000,
          "dimensions_per_block": 2, "anisotropic_quantization_threshold": 0.1}  # fmt: skip


def test_standin_is_deterministic_with_passage_rows():
  v, t2p, pids = bench.standin_shard(3, 5000)
  v2, t2p2, pids2 = bench.standin_shard(3, 5000)
  np.testing.assert_array_equal(v, v2)
  np.testing.assert_array_equal(t2p, t2p2)
  assert pids == pids2 and pids[0] == "s00003p0000000" and v.dtype == np.float16
  np.testing.assert_allclose(np.linalg.norm(v.astype(np.float32), axis=1), 1.0, atol=2e-3)
  lengths = np.bincount(t2p)
  assert lengths.size == len(pids) and (np.diff(t2p) >= 0).all()
  assert ((lengths[:-1] >= 100) & (lengths[:-1] <= 200)).all()  # last passage is cut
  assert not np.array_equal(bench.standin_shard(4, 5000)[0], v)


def test_exact_top_k_matches_full_sort():
  rng = np.random.default_rng(0)
  vecs = rng.standard_normal((3000, 8)).astype(np.float16)
  q = rng.standard_normal((5, 8)).astype(np.float32)
  ids, scores = bench.exact_top_k(q, vecs, 50, offset=100, block=700)  # 5 blocks merged
  full = q @ vecs.astype(np.float32).T
  np.testing.assert_array_equal(ids - 100, np.argsort(-full, axis=1, kind="stable")[:, :50])
  np.testing.assert_allclose(scores, -np.sort(-full, axis=1)[:, :50], rtol=1e-6)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("scale"))
  stats = [bench.build_shard((root, i, 4000, PARAMS, True)) for i in range(2)]
  return root, stats


def test_build_shard_drops_vectors_and_resumes(built):
  from xtr_jax.index import store

  root, stats = built
  out = os.path.join(root, "index", "shard_00000")
  vec_path = os.path.join(out, "vectors.npy")
  assert stats[0]["tokens"] == 4000 and stats[0]["build_cpu_s"] > 0
  assert os.stat(vec_path).st_blocks * 512 <= 8192  # header only: the table is a hole
  assert stats[0]["disk_bytes"] < 4000 * 256  # less than the float16 table alone
  idx = store.load_index(out)
  assert idx.vectors.shape == (4000, 128) and not idx.vectors[::97].any()
  ids, _ = idx.search_tokens(bench.standin_shard(0, 4000)[0][:3].astype(np.float32), 1)
  assert ids[:, 0].tolist() == [0, 1, 2]  # each stand-in vector finds itself
  mtime = os.stat(os.path.join(out, "manifest.json")).st_mtime_ns
  assert bench.build_shard((root, 0, 4000, PARAMS, True)) == stats[0]  # resumed: no rebuild
  assert os.stat(os.path.join(out, "manifest.json")).st_mtime_ns == mtime


def test_search_report_merges_shards_and_measures_recall(built):
  root, _ = built
  rep = bench.search(root, num_queries=4, qlen=8, token_k=50, k=10, recall_shards=2)
  assert (rep["shards"], rep["tokens"], rep["recall_tokens"]) == (2, 8000, 8000)
  # All leaves searched on a 4000-token shard: AH error only, so recall is high but < 1 is ok.
  assert 0.5 <= rep["token_recall_at_kprime_vs_exact"] <= 1.0
  assert 0.0 <= rep["passage_overlap_at_100_xtr_scann_vs_xtr_exact"] <= 1.0
  assert rep["top1_nonempty"] == 4 and len(rep["per_shard"]) == 2
  with open(os.path.join(root, "index", "manifest.json")) as f:
    assert json.load(f)["num_tokens"] == 8000
