"""Sharded token index: per-shard top-k' merged == one index over the same tokens."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xtr_jax.index import sharded_index as si
from xtr_jax.index import store
from xtr_jax.index.scann_index import ScannParams

DIM = 16
SIZES = (700, 1100, 900)  # tokens per shard (unequal on purpose)


def _unit(rng, n):
  x = rng.standard_normal((n, DIM)).astype(np.float32)
  return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)


def _write_shards(tmp, rng):
  """Per-shard files (global rows, as encode writes them) and the concatenated corpus."""
  inputs, vecs, t2ps, pids, row = [], [], [], [], 0
  for i, n in enumerate(SIZES):
    v = _unit(rng, n)
    num_p = n // 10
    local = np.sort(rng.integers(0, num_p, n)).astype(np.int32)
    local[:num_p] = np.arange(num_p)  # every passage has a token
    local = np.sort(local)
    ids = [f"s{i}p{j}" for j in range(num_p)]
    np.save(tmp / f"v{i}.npy", v)
    np.save(tmp / f"t{i}.npy", local + row)
    inputs.append(
      si.ShardInput((str(tmp / f"v{i}.npy"),), (str(tmp / f"t{i}.npy"),), tuple(ids), row)
    )
    vecs.append(v)
    t2ps.append(local + row)
    pids += ids
    row += num_p
  return inputs, np.concatenate(vecs), np.concatenate(t2ps), pids


def test_brute_force_sharded_equals_single(tmp_path):
  rng = np.random.default_rng(0)
  inputs, vecs, t2p, pids = _write_shards(tmp_path, rng)
  kw = dict(model_fingerprint="m", backend="brute_force")
  manifest = si.build_sharded_index(str(tmp_path / "sharded"), inputs, num_workers=2, **kw)
  assert manifest["num_shards"] == 3 and manifest["num_tokens"] == sum(SIZES)
  store.build_index(str(tmp_path / "single"), vecs, t2p, pids, **kw)
  sharded = store.load_index(str(tmp_path / "sharded"), expected_fingerprint="m")
  single = store.load_index(str(tmp_path / "single"))
  assert sharded.passage_ids == single.passage_ids
  np.testing.assert_array_equal(sharded.token_to_passage, single.token_to_passage)
  q = _unit(rng, 40).astype(np.float32)
  for k in (1, 10, 500):
    i1, s1 = sharded.search_tokens(q, k)
    i2, s2 = single.search_tokens(q, k)
    np.testing.assert_allclose(s1, s2, atol=1e-6)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(sharded.tokens_to_passages(i1), single.tokens_to_passages(i2))
  rows = np.array([0, 5, 699, 700, 2699])
  np.testing.assert_array_equal(sharded.vectors[rows], single.vectors[rows])
  # Resumable: a rerun with finished shards rebuilds nothing and gives the same manifest.
  before = (tmp_path / "sharded" / "shard_00001" / "manifest.json").stat().st_mtime_ns
  again = si.build_sharded_index(str(tmp_path / "sharded"), inputs, **kw)
  assert again["shards"] == manifest["shards"]
  assert (tmp_path / "sharded" / "shard_00001" / "manifest.json").stat().st_mtime_ns == before


def test_retriever_search_vectors_on_sharded(tmp_path):
  """Retriever's XTR and exact MaxSim paths (ConcatVectors) agree with one index."""
  from xtr_jax.index.retriever import Retriever, SearchParams

  rng = np.random.default_rng(1)
  inputs, vecs, t2p, pids = _write_shards(tmp_path, rng)
  kw = dict(model_fingerprint="m", backend="brute_force")
  si.build_sharded_index(str(tmp_path / "sharded"), inputs, **kw)
  store.build_index(str(tmp_path / "single"), vecs, t2p, pids, **kw)

  class _Enc:
    proj_dim = DIM

  class _Tok:
    fingerprint = ""

  qv = _unit(rng, 3 * 8).astype(np.float32).reshape(3, 8, DIM)
  mask = np.ones((3, 8), bool)
  mask[1, 5:] = False
  params = SearchParams(token_top_k=50)
  out = []
  for name in ("sharded", "single"):
    r = Retriever(store.load_index(str(tmp_path / name)), _Enc(), _Tok(), params)
    out.append([r.search_vectors(qv, mask, 10, exact=e) for e in (False, True)])
  for a, b in zip(out[0], out[1]):
    for (ra, sa), (rb, sb) in zip(a, b):
      np.testing.assert_array_equal(ra, rb)
      np.testing.assert_allclose(sa, sb, atol=1e-6)


def test_scann_sharded_equals_single_with_same_partitioning(tmp_path):
  """ScaNN: merged per-shard search == one index whose segments are the same token ranges."""
  pytest.importorskip("scann")
  rng = np.random.default_rng(2)
  inputs, vecs, t2p, pids = _write_shards(tmp_path, rng)
  params = ScannParams(num_leaves=8, num_leaves_to_search=3, training_sample_size=2000)
  kw = dict(model_fingerprint="m", backend="scann", scann_params=params)
  si.build_sharded_index(str(tmp_path / "sharded"), inputs, **kw)
  sharded = store.load_index(str(tmp_path / "sharded"))
  q = _unit(rng, 30).astype(np.float32)
  i1, s1 = sharded.search_tokens(q, 20)
  from xtr_jax.index.brute_force import merge_top_k
  from xtr_jax.index.scann_index import ScannSearcher

  ids, scores, off = [], [], 0
  for n in SIZES:  # the "single index with the same partitioning", built in memory
    searcher = ScannSearcher.build(vecs[off : off + n], params)
    i, s = searcher.search_batched(q, 20)
    ids.append(np.where(i >= 0, i + off, -1))
    scores.append(s)
    off += n
  i2, s2 = merge_top_k(ids, scores, 20)
  np.testing.assert_array_equal(i1, i2)
  np.testing.assert_allclose(s1, s2, atol=1e-6)
  # and with equal shard sizes, build_index(segment_tokens=...) is literally that index
  store.build_index(
    str(tmp_path / "seg"), vecs[:2100], t2p[:2100] * 0, ["p"], segment_tokens=700, **kw
  )
  eq = [
    si.ShardInput((str(tmp_path / f"e{j}.npy"),), (str(tmp_path / f"et{j}.npy"),), ("p",), 0)
    for j in range(3)
  ]
  for j in range(3):
    np.save(tmp_path / f"e{j}.npy", vecs[700 * j : 700 * (j + 1)])
    np.save(tmp_path / f"et{j}.npy", np.zeros(700, np.int32))
  si.build_sharded_index(str(tmp_path / "eq"), eq, **kw)
  a = store.load_index(str(tmp_path / "seg")).search_tokens(q, 20)
  b = store.load_index(str(tmp_path / "eq")).search_tokens(q, 20)
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_allclose(a[1], b[1], atol=1e-6)


def test_manifest_rejects_mismatched_shards(tmp_path):
  rng = np.random.default_rng(3)
  for i, fp in enumerate(("m1", "m2")):
    store.build_index(str(tmp_path / f"shard_{i:05d}"), _unit(rng, 50), np.zeros(50, np.int32),
                      ["p"], model_fingerprint=fp, backend="brute_force")  # fmt: skip
  with pytest.raises(store.IndexFormatError, match="model_fingerprint"):
    si.write_sharded_manifest(str(tmp_path), ["shard_00000", "shard_00001"])
  si.write_sharded_manifest(str(tmp_path), ["shard_00000"])
  assert json.load(open(tmp_path / "manifest.json"))["format"] == si.FORMAT
  assert si.is_sharded(str(tmp_path))
  with pytest.raises(store.IndexFormatError, match="fingerprint"):
    store.load_index(str(tmp_path), expected_fingerprint="other")
