"""The compact index kind (inverted lists + PQ codes): search, layout, streaming build, errors."""

import json
import os

import numpy as np
import pytest

from xtr_jax.index import compact, store
from xtr_jax.index import sharded_index as si
from xtr_jax.index.brute_force import BruteForceSearcher
from xtr_jax.index.compact import CompactParams
from xtr_jax.index.retriever import Retriever, SearchParams
from xtr_jax.index.store import IndexFormatError, build_index, load_index

DIM = 32
PARAMS = CompactParams(
  num_lists=12, nprobe=12, num_subspaces=8, training_sample_size=3000, kmeans_iterations=4,
  chunk_tokens=1000,
)  # fmt: skip


def _data(n=4000, passages=200, seed=0):
  """Clustered unit vectors (like a trained model's tokens), passage-major rows."""
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(20, DIM))
  v = centres[rng.integers(0, 20, n)] + 0.4 * rng.normal(size=(n, DIM))
  v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float16)
  t2p = np.sort(rng.integers(0, passages, n)).astype(np.int32)
  t2p[:passages] = np.arange(passages)  # every passage has a token
  return v, np.sort(t2p), [f"p{i}" for i in range(passages)]


def _build(path, params=PARAMS, data=None, **kw):
  v, t2p, pids = data or _data()
  return build_index(str(path), v, t2p, pids, model_fingerprint="fp", backend="compact",
                     compact_params=params, **kw)  # fmt: skip


def _decoded(searcher):
  """Reconstructed vectors (centroid + decoded residual) of all stored tokens."""
  lists = np.repeat(np.arange(searcher.centroids.shape[0]), np.diff(searcher.list_offsets))
  return searcher.decode(0, searcher.size) + searcher.centroids[lists]


def _queries(n=30, seed=1):
  v, _, _ = _data(seed=seed)
  return np.asarray(v[:n], np.float32)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  out = tmp_path_factory.mktemp("compact") / "idx"
  _build(out)
  return str(out)


def test_all_lists_equals_brute_force_over_the_codes(built):
  idx = load_index(built)
  searcher = idx.searchers[0][1]
  assert isinstance(searcher, compact.CompactSearcher) and searcher.nprobe == 12
  q = _queries()
  ids, scores = idx.search_tokens(q, 50)
  ref_ids, ref_scores = BruteForceSearcher(_decoded(searcher)).search_batched(q, 50)
  np.testing.assert_array_equal(ids, ref_ids)
  np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-6)


def test_nprobe_searches_exactly_the_best_lists(built):
  idx = load_index(built, compact_nprobe=3)
  searcher = idx.searchers[0][1]
  q = _queries()
  ids, scores = idx.search_tokens(q, 40)
  dec = _decoded(searcher)
  lists = np.repeat(np.arange(12), np.diff(searcher.list_offsets))
  for i in range(len(q)):  # reference: brute force over the tokens of the 3 best lists
    best = np.argsort(-(searcher.centroids @ q[i]))[:3]
    cand = np.flatnonzero(np.isin(lists, best))
    s = dec[cand] @ q[i]
    order = np.lexsort((cand, -s.astype(np.float64)))[:40]
    np.testing.assert_array_equal(ids[i, : len(order)], cand[order])
    np.testing.assert_allclose(scores[i, : len(order)], s[order], rtol=1e-5, atol=1e-6)
    assert (ids[i, len(order) :] == -1).all()


def test_threads_do_not_change_results(built):
  idx = load_index(built, compact_nprobe=4)
  searcher, q = idx.searchers[0][1], _queries()
  searcher.num_threads = 1
  a = idx.search_tokens(q, 30)
  searcher.num_threads = 3
  b = idx.search_tokens(q, 30)
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])


def test_layout_order_and_bytes_per_token(built):
  v, t2p, _ = _data()
  m = store.read_manifest(built)
  order = np.load(os.path.join(built, "token_order.npy"))
  np.testing.assert_array_equal(np.sort(order), np.arange(len(v)))
  idx = load_index(built)
  np.testing.assert_array_equal(idx.token_to_passage, t2p[order])
  np.testing.assert_array_equal(np.asarray(idx.vectors), v[order])
  assert isinstance(idx.vectors, np.memmap)  # on disk, not resident
  searcher = idx.searchers[0][1]
  assert searcher.codes.shape == (len(v), 8) and searcher.codes.dtype == np.uint8
  seg = os.path.join(built, m["segments"][0]["dir"])
  files = sum(os.path.getsize(os.path.join(seg, f)) for f in os.listdir(seg))
  assert m["bytes_per_token"]["resident"] == round((files + 4 * len(v)) / len(v), 2)
  assert m["backend"] == "compact" and m["compact"]["num_lists"] == 12


def test_resident_bytes_at_128_dims_within_40(tmp_path):
  """At the issue's 128 dims and 32 one-byte codes: 32 + 4 + amortised tables <= 40."""
  rng = np.random.default_rng(0)
  n = 60_000
  v = rng.normal(size=(n, 128)).astype(np.float16)
  params = CompactParams(num_lists=64, training_sample_size=5000, kmeans_iterations=2)
  m = build_index(str(tmp_path / "i"), v, np.zeros(n, np.int32), ["p"], model_fingerprint="f",
                  backend="compact", compact_params=params)  # fmt: skip
  tables = 64 * 128 * 4 + 32 * 256 * 4 * 4 + 65 * 8  # centroids, codebooks, offsets
  assert m["bytes_per_token"]["resident"] == pytest.approx(36 + tables / n, abs=0.02)
  assert m["bytes_per_token"]["resident"] <= 40


def test_build_resumes_from_chunk_files(tmp_path, monkeypatch):
  out = tmp_path / "idx"
  calls = []
  real = compact.encode_chunk

  def failing(*a):
    if len(calls) == 2:
      raise KeyboardInterrupt
    calls.append(1)
    return real(*a)

  monkeypatch.setattr(compact, "encode_chunk", failing)
  with pytest.raises(KeyboardInterrupt):
    _build(out)
  assert not out.exists() and not list(tmp_path.glob(".idx.tmp-*"))  # atomic
  work = tmp_path / ".idx.compact-work" / "seg_00000"
  assert sorted(p.name for p in work.iterdir() if p.name.startswith("chunk")) == [
    "chunk_00000.npz",
    "chunk_00001.npz",
  ]
  assert not (work / compact.DONE).exists()
  calls.clear()
  monkeypatch.setattr(compact, "encode_chunk", lambda *a: (calls.append(1), real(*a))[1])
  _build(out)
  assert len(calls) == 2  # 4 chunks of 1000 tokens: the first two were reused
  assert not (tmp_path / ".idx.compact-work").exists()
  _build(tmp_path / "clean")
  for name in ("codes", "list_offsets", "centroids"):
    a = np.load(out / "compact" / "seg_00000" / f"{name}.npy")
    b = np.load(tmp_path / "clean" / "compact" / "seg_00000" / f"{name}.npy")
    np.testing.assert_array_equal(a, b)


def test_resume_with_other_inputs_starts_over(tmp_path, monkeypatch):
  out = tmp_path / "idx"
  monkeypatch.setattr(compact, "encode_chunk", lambda *a: (_ for _ in ()).throw(OSError("x")))
  with pytest.raises(OSError):
    _build(out)
  monkeypatch.undo()
  other = _data(seed=5)
  _build(out, data=other)  # different vectors: the old quantiser must not be reused
  _build(tmp_path / "ref", data=other)
  a = np.load(out / "compact" / "seg_00000" / "codes.npy")
  np.testing.assert_array_equal(
    a, np.load(tmp_path / "ref" / "compact" / "seg_00000" / "codes.npy")
  )


def test_segments_and_shards_merge(tmp_path):
  v, t2p, pids = _data()
  _build(tmp_path / "seg", segment_tokens=1500)
  idx = load_index(str(tmp_path / "seg"))
  assert [s for s, _ in idx.searchers] == [0, 1500, 3000]
  q = _queries()
  ids, scores = idx.search_tokens(q, 20)
  parts = [s.search_batched(q, 20) for _, s in idx.searchers]
  for i, _ in parts:  # local ids within each segment's range
    assert ((i >= -1) & (i < 1500)).all()
  merged = np.concatenate([np.where(i >= 0, i + off, -1) for (off, _), (i, _) in
                           zip(idx.searchers, parts)], 1)  # fmt: skip
  merged_s = np.concatenate([s for _, s in parts], 1)
  for r in range(len(q)):
    o = np.lexsort((merged[r], -merged_s[r].astype(np.float64)))[:20]
    np.testing.assert_array_equal(ids[r], merged[r, o])
  # Sharded: two compact shards searched as one index.
  half = int(np.searchsorted(t2p, 100))
  for i, (lo, hi, p0, p1) in enumerate([(0, half, 0, 100), (half, len(v), 100, 200)]):
    build_index(str(tmp_path / "sh" / si.shard_dir_name(i)), v[lo:hi], t2p[lo:hi] - p0,
                pids[p0:p1], model_fingerprint="fp", backend="compact",
                compact_params=PARAMS)  # fmt: skip
  si.write_sharded_manifest(str(tmp_path / "sh"), [si.shard_dir_name(i) for i in range(2)])
  sharded = load_index(str(tmp_path / "sh"), expected_fingerprint="fp")
  ids, _ = sharded.search_tokens(q, 20)
  assert sharded.num_passages == 200 and ids.max() < len(v)
  rows = sharded.tokens_to_passages(ids)
  assert ((rows >= 0) & (rows < 200)).all()


class _Enc:
  proj_dim = DIM


class _Tok:
  fingerprint = ""


class _NoReads:
  """Stands in for the float16 vectors: any read fails the test."""

  shape = (4000, DIM)
  ndim = 2

  def __getitem__(self, idx):
    raise AssertionError("the compact path read the float16 vectors")


def test_retriever_reads_no_vectors_unless_asked(built):
  idx = load_index(built, compact_nprobe=4)
  idx.vectors = _NoReads()
  rng = np.random.default_rng(3)
  qv = _queries(24).reshape(3, 8, DIM)
  mask = rng.random((3, 8)) < 0.8
  mask[:, 0] = True
  r = Retriever(idx, _Enc(), _Tok(), SearchParams(token_top_k=40))
  got = r.search_vectors(qv, mask, 10)
  assert len(got) == 3 and all(len(rows) == 10 for rows, _ in got)
  r = Retriever(idx, _Enc(), _Tok(), SearchParams(token_top_k=40, compact_rescore=True))
  with pytest.raises(AssertionError, match="read the float16 vectors"):
    r.search_vectors(qv, mask, 10)


def test_rescore_and_exact_on_compact(built):
  idx = load_index(built, compact_nprobe=12)
  qv = _queries(16).reshape(2, 8, DIM)
  mask = np.ones((2, 8), bool)
  exact = Retriever(load_index(built, backend="brute_force"), _Enc(), _Tok(),
                    SearchParams(token_top_k=40))  # fmt: skip
  r = Retriever(idx, _Enc(), _Tok(), SearchParams(token_top_k=40, compact_rescore=True,
                                                   rescore_candidates=4000))  # fmt: skip
  a, b = r.search_vectors(qv, mask, 10), exact.search_vectors(qv, mask, 10)
  for (ra, sa), (rb, sb) in zip(a, b):  # all tokens re-scored: exactly brute force
    np.testing.assert_array_equal(ra, rb)
    np.testing.assert_allclose(sa, sb, rtol=1e-5)
  e1, e2 = r.search_vectors(qv, mask, 5, exact=True), exact.search_vectors(qv, mask, 5, exact=True)
  for (ra, _), (rb, _) in zip(e1, e2):
    np.testing.assert_array_equal(ra, rb)


def test_without_vectors(tmp_path):
  _build(tmp_path / "nv", params=CompactParams(**{**PARAMS.__dict__, "keep_vectors": False}))
  assert not (tmp_path / "nv" / "vectors.npy").exists()
  m = store.read_manifest(str(tmp_path / "nv"))
  assert m["bytes_per_token"]["vectors_float16"] == 0
  idx = load_index(str(tmp_path / "nv"))
  assert idx.vectors is None
  qv, mask = _queries(8).reshape(1, 8, DIM), np.ones((1, 8), bool)
  r = Retriever(idx, _Enc(), _Tok(), SearchParams(token_top_k=20))
  assert len(r.search_vectors(qv, mask, 5)[0][0]) == 5
  with pytest.raises(ValueError, match=r"exact mode reads the float16 vectors, but .*nv was"):
    r.search_vectors(qv, mask, 5, exact=True)
  with pytest.raises(FileNotFoundError, match=r"nv/vectors.npy \(built without float16"):
    load_index(str(tmp_path / "nv"), backend="brute_force")


def _copy(src, dst):
  import shutil  # noqa: PLC0415

  shutil.copytree(src, dst)
  return str(dst)


def test_bad_inputs_name_the_file(built, tmp_path):
  with pytest.raises(IndexFormatError, match="built with model fingerprint 'fp' but the model"):
    load_index(built, expected_fingerprint="other")
  with pytest.raises(IndexFormatError, match=r"manifest.json: a 'compact' index, cannot be"):
    load_index(built, backend="scann")
  codes = os.path.join("compact", "seg_00000", "codes.npy")
  bad = _copy(built, tmp_path / "trunc")
  path = os.path.join(bad, codes)
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)
  with pytest.raises(IndexFormatError, match=rf"^{path}: unreadable .npy array"):
    load_index(bad)
  bad = _copy(built, tmp_path / "shape")
  np.save(os.path.join(bad, codes), np.zeros((3999, 8), np.uint8))
  with pytest.raises(IndexFormatError, match=r"codes.npy: shape uint8 \(3999, 8\), expected"):
    load_index(bad)
  bad = _copy(built, tmp_path / "dim")
  cpath = os.path.join(bad, "compact", "seg_00000", "centroids.npy")
  np.save(cpath, np.zeros((12, DIM + 1), np.float32))
  with pytest.raises(IndexFormatError, match=rf"^{cpath}: shape \(12, 33\), expected \[L, 32\]"):
    load_index(bad)
  bad = _copy(built, tmp_path / "gone")
  os.remove(os.path.join(bad, codes))
  with pytest.raises(FileNotFoundError, match=r"compact index file missing: .*codes.npy"):
    load_index(bad)

  class _Wide:
    proj_dim = DIM * 2

  with pytest.raises(ValueError, match="model proj_dim 64 != index proj_dim 32"):
    Retriever(load_index(built), _Wide(), _Tok())


def test_queries_of_another_dimension_fail(built):
  with pytest.raises(ValueError, match=r"queries shape \(2, 16\) does not match index dim 32"):
    load_index(built).search_tokens(np.zeros((2, 16), np.float32), 5)


def test_cli_builds_compact_by_gin(tmp_path):
  import gin  # noqa: PLC0415
  from xtr_jax.index import cli  # noqa: PLC0415
  from xtr_jax.index.testing import make_tiny_setup  # noqa: PLC0415

  setup = make_tiny_setup(str(tmp_path), num_passages=20)
  out = str(tmp_path / "idx")
  gin.clear_config()
  rc = cli.index_main([
    "--checkpoint", setup.checkpoint, "--corpus", setup.corpus, "--output", out,
    "--gin.index_settings.backend='compact'", "--gin.CompactParams.num_lists=4",
    "--gin.CompactParams.num_subspaces=16", "--gin.CompactParams.nprobe=2",
  ])  # fmt: skip
  gin.clear_config()
  assert rc == 0
  m = json.load(open(os.path.join(out, "manifest.json")))
  assert m["backend"] == "compact" and m["compact"]["num_lists"] == 4
  assert m["compact"]["nprobe"] == 2 and "resident" in m["bytes_per_token"]
  r = Retriever.load(out)
  assert r.compact and len(r.search(["river city"], k=3)[0]) == 3


def test_anisotropic_codes_lower_the_parallel_loss():
  """Coordinate descent from the nearest codes never raises the anisotropic loss, and with
  eta > 1 lowers the error along each token more than the plain L2 codes do."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(500, DIM)).astype(np.float32)
  centroids, codebooks = compact.train_quantizer(x, 4, PARAMS)
  lists, plain = compact.encode_chunk(x, centroids, codebooks, eta=0)
  _, aniso = compact.encode_chunk(x, centroids, codebooks, eta=4)

  def losses(codes):
    dec = codebooks[np.arange(8)[None, :], codes].reshape(len(x), DIM) + centroids[lists]
    e = x - dec
    par = np.einsum("nd,nd->n", e, x / np.linalg.norm(x, axis=1, keepdims=True))
    return (e**2).sum(1) + 3 * par**2, np.abs(par).mean()

  (l_plain, p_plain), (l_aniso, p_aniso) = losses(plain), losses(aniso)
  assert (l_aniso <= l_plain + 1e-5).all() and l_aniso.mean() < l_plain.mean()
  assert p_aniso < 0.9 * p_plain  # 0.82 measured
