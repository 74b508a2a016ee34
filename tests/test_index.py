"""Corpus encoding, index build/persistence, Retriever and the index/search commands."""

import json
import os
import shutil

import numpy as np
import pytest

import gin
from xtr_jax.data.formats import read_corpus
from xtr_jax.data.tokenizer import Tokenizer
from xtr_jax.index import cli, store
from xtr_jax.index.encode import (
  ACCELERATOR_TOKEN_BUDGET,
  AUTO_TOKEN_BUDGET,
  CPU_TOKEN_BUDGET,
  EncodeParams,
  TokenEncoder,
  batch_policy,
  encode_corpus,
  load_shards,
  plan_batches,
)
from xtr_jax.index.retriever import Retriever, SearchParams
from xtr_jax.index.scann_index import ScannParams
from xtr_jax.index.store import IndexFormatError, build_index, load_index
from xtr_jax.index.testing import make_tiny_setup


def run_cli(fn, argv):
  gin.clear_config()  # each main parses (and locks) gin once per process otherwise
  return fn(argv)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("index"))
  setup = make_tiny_setup(root, num_passages=80)
  out = os.path.join(root, "idx")
  rc = run_cli(
    cli.index_main,
    [
      "--checkpoint", setup.checkpoint, "--corpus", setup.corpus, "--output", out,
      "--gin.EncodeParams.shard_size=30", "--gin.EncodeParams.buckets=(32, 64)",
    ],
  )  # fmt: skip
  assert rc == 0
  return setup, out


@pytest.fixture(scope="module")
def retriever(built):
  _, out = built
  return Retriever.load(out, backend="brute_force")


def test_manifest_and_no_leftovers(built):
  setup, out = built
  manifest = json.load(open(os.path.join(out, "manifest.json")))
  assert manifest["num_passages"] == 80
  assert manifest["format"] == "xtr_jax.token_index" and manifest["version"] == 1
  assert manifest["bytes_per_token"]["vectors_float16"] == 256
  assert os.path.isdir(os.path.join(out, manifest["segments"][0]["dir"]))
  # The resumable encode work dir and the build tmp dir are gone after success.
  assert not [n for n in os.listdir(os.path.dirname(out)) if n.startswith(".idx")]


def test_stored_vectors_are_the_models_tokens_with_eos_and_no_padding(built, retriever):
  setup, out = built
  index = retriever.index
  tok = Tokenizer(setup.vocabulary)
  passages = list(read_corpus(setup.corpus))
  enc = retriever.encoder
  for row in (0, 17, 79):
    p = passages[row]
    ids = tok.sp.encode(f"{p.title} {p.text}") + [1]
    stored = index.vectors[index.token_to_passage == row]
    assert stored.shape[0] == len(ids)  # every real token + EOS, no padding
    direct = enc.model.apply({"params": enc.params}, np.array([ids], np.int32))[0]
    np.testing.assert_allclose(stored.astype(np.float32), np.asarray(direct), atol=2e-3)


def reference_scores_all(query_vecs, query_mask, vectors, t2p, num_passages):
  q = query_vecs[query_mask]
  out = np.zeros(num_passages)
  for p in range(num_passages):
    sims = q @ vectors[t2p == p].astype(np.float32).T
    out[p] = sims.max(axis=1).mean()
  return out


def test_exact_search_over_all_passages_matches_numpy(built, retriever):
  setup, _ = built
  idx = retriever.index
  exact = Retriever(
    idx, retriever.encoder, retriever.tokenizer, SearchParams(exact_candidates="all")
  )
  queries = ["river king music", "football team airport village"]
  results = exact.search(queries, k=5, exact=True)
  vecs, mask = exact.encode_queries(queries)
  for qi, ranking in enumerate(results):
    ref = reference_scores_all(vecs[qi], mask[qi], idx.vectors, idx.token_to_passage, 80)
    top = np.argsort(-ref, kind="stable")[:5]
    assert [pid for pid, _ in ranking] == [setup.passage_ids[r] for r in top]
    np.testing.assert_allclose([s for _, s in ranking], ref[top], rtol=1e-4)


def test_xtr_with_all_tokens_retrieved_equals_maxsim(built, retriever):
  # With k' = all tokens no imputation happens, so XTR == exact MaxSim over all passages.
  idx = retriever.index
  full = Retriever(
    idx, retriever.encoder, retriever.tokenizer, SearchParams(token_top_k=idx.vectors.shape[0])
  )
  queries = ["ocean desert bird", "church temple bridge train"]
  approx = full.search(queries, k=10)
  exact = Retriever(
    idx, retriever.encoder, retriever.tokenizer, SearchParams(exact_candidates="all")
  ).search(queries, k=10, exact=True)
  for a, e in zip(approx, exact):
    assert [p for p, _ in a] == [p for p, _ in e]
    np.testing.assert_allclose([s for _, s in a], [s for _, s in e], rtol=1e-3, atol=1e-3)


def test_scann_agrees_with_brute_force(built, retriever):
  _, out = built
  scann = Retriever.load(out)
  queries = ["river city mountain", "book school bank money", "horse language science"]
  a = scann.search(queries, k=20)
  b = retriever.search(queries, k=20)
  overlap = np.mean([len({p for p, _ in x} & {p for p, _ in y}) / 20 for x, y in zip(a, b)])
  assert overlap >= 0.8


def test_rescored_scann_tokens_equal_brute_force_when_all_are_candidates(built, retriever):
  # rescore_candidates >= num_tokens: every token is re-scored exactly from vectors.npy, so the
  # ScaNN path returns brute force's token lists and passages (scores within float rounding).
  _, out = built
  n = retriever.index.manifest["num_tokens"]
  scann = Retriever.load(out, params=SearchParams(token_top_k=50, rescore_candidates=n))
  bf = Retriever(retriever.index, retriever.encoder, retriever.tokenizer,
                 SearchParams(token_top_k=50))  # fmt: skip
  assert not scann.exact_tokens and bf.exact_tokens
  vecs, mask = bf.encode_queries(["river city mountain", "book school bank money"])
  flat = vecs[mask]
  a_ids, a_scores = scann.search_tokens(flat)
  b_ids, b_scores = bf.search_tokens(flat)
  np.testing.assert_array_equal(a_ids, b_ids)
  np.testing.assert_allclose(a_scores, b_scores, rtol=1e-5, atol=1e-5)
  for x, y in zip(scann.search_vectors(vecs, mask, 10), bf.search_vectors(vecs, mask, 10)):
    assert x[0].tolist() == y[0].tolist()


def test_search_cli_writes_trec(built, tmp_path):
  setup, out = built
  run = str(tmp_path / "run.trec")
  argv = ["--index", out, "--queries", setup.queries, "--output", run, "--k", "7"]
  assert run_cli(cli.search_main, argv) == 0
  lines = [line.split() for line in open(run)]
  assert len(lines) == 6 * 7
  by_q = {}
  for qid, q0, pid, rank, score, tag in lines:
    assert q0 == "Q0" and tag == "xtr_jax" and pid in setup.passage_ids
    by_q.setdefault(qid, []).append((int(rank), float(score)))
  for ranks in by_q.values():
    assert [r for r, _ in ranks] == list(range(1, 8))
    assert all(a[1] >= b[1] for a, b in zip(ranks, ranks[1:]))


def test_fingerprint_version_and_missing_file_errors(built, tmp_path):
  _, out = built
  fp = json.load(open(os.path.join(out, "manifest.json")))["model_fingerprint"]
  with pytest.raises(IndexFormatError, match=f"{fp}.*deadbeef"):
    load_index(out, expected_fingerprint="deadbeef")
  copy = str(tmp_path / "copy")
  shutil.copytree(out, copy)
  m = json.load(open(os.path.join(copy, "manifest.json")))
  m["version"] = 99
  json.dump(m, open(os.path.join(copy, "manifest.json"), "w"))
  with pytest.raises(IndexFormatError, match="version 99"):
    load_index(copy)
  m["version"] = 1
  json.dump(m, open(os.path.join(copy, "manifest.json"), "w"))
  os.remove(os.path.join(copy, "token_to_passage.npy"))
  with pytest.raises(FileNotFoundError, match="token_to_passage.npy"):
    load_index(copy)
  with pytest.raises(FileNotFoundError, match="manifest.json"):
    load_index(str(tmp_path))


def test_failed_build_leaves_nothing_and_leftovers_are_cleaned(tmp_path, monkeypatch):
  rng = np.random.default_rng(0)
  v = rng.normal(size=(50, 8)).astype(np.float16)
  t2p = np.repeat(np.arange(10), 5).astype(np.int32)
  pids = [f"p{i}" for i in range(10)]
  out = str(tmp_path / "idx")
  os.makedirs(str(tmp_path / ".idx.tmp-12345"))  # a crashed earlier build
  with pytest.raises(IndexFormatError, match=r"extra_vectors\[0\]: shape"):
    build_index(
      out, v, t2p, pids, model_fingerprint="m", backend="brute_force",
      extra_vectors=[(3, np.ones((2, 7)))],
    )  # fmt: skip
  assert os.listdir(tmp_path) == [".idx.tmp-12345"]  # validation failed before writing

  def crash(*args, **kwargs):
    raise RuntimeError("killed mid-build")

  monkeypatch.setattr(store.ScannSearcher, "build", crash)
  with pytest.raises(RuntimeError, match="killed mid-build"):
    build_index(out, v, t2p, pids, model_fingerprint="m")
  assert os.listdir(tmp_path) == []  # leftover cleaned, own tmp removed, no index
  with pytest.raises(FileNotFoundError):
    load_index(out)
  build_index(out, v, t2p, pids, model_fingerprint="m", backend="brute_force")
  assert os.listdir(tmp_path) == ["idx"]
  with pytest.raises(FileExistsError, match="already exists"):
    build_index(out, v, t2p, pids, model_fingerprint="m", backend="brute_force")


def test_extra_vectors_hook_maps_to_passage(tmp_path):
  rng = np.random.default_rng(1)
  v = rng.normal(size=(40, 8))
  v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float16)
  t2p = np.repeat(np.arange(8), 5).astype(np.int32)
  pids = [f"p{i}" for i in range(8)]
  q = rng.normal(size=(3, 8)).astype(np.float32)
  q /= np.linalg.norm(q, axis=1, keepdims=True)
  out = str(tmp_path / "idx")
  m = build_index(
    out, v, t2p, pids, model_fingerprint="m", backend="brute_force",
    extra_vectors=[("p6", q), (2, q[:1])], extra_weight=2.0,
  )  # fmt: skip
  assert m["num_extra_tokens"] == 4 and m["num_corpus_tokens"] == 40
  idx = load_index(out)
  ids, scores = idx.search_tokens(q, 1)
  # Each query's own extra vector scores 2.0 (> any corpus unit vector): it wins, in p6
  # (q0 ties with p2's copy of q0 and goes to the smaller token id, p6's).
  assert ids[:, 0].tolist() == [40, 41, 42]
  assert idx.tokens_to_passages(ids)[:, 0].tolist() == [6, 6, 6]
  np.testing.assert_allclose(scores[:, 0], 2.0, atol=1e-2)
  np.testing.assert_allclose(idx.vectors[40:43].astype(np.float32), 2.0 * q, atol=1e-2)
  assert idx.token_to_passage[40:].tolist() == [6, 6, 6, 2]
  with pytest.raises(IndexFormatError, match="'nope' is not in the corpus"):
    build_index(
      str(tmp_path / "x"), v, t2p, pids, model_fingerprint="m", backend="brute_force",
      extra_vectors=[("nope", q)],
    )  # fmt: skip


def test_segmented_index_merges_exactly(tmp_path):
  rng = np.random.default_rng(2)
  v = rng.normal(size=(300, 8)).astype(np.float16)
  t2p = np.sort(rng.integers(0, 30, 300)).astype(np.int32)
  pids = [f"p{i}" for i in range(30)]
  one = build_index(str(tmp_path / "a"), v, t2p, pids, model_fingerprint="m", backend="brute_force")
  seg = build_index(
    str(tmp_path / "b"), v, t2p, pids, model_fingerprint="m", backend="brute_force",
    segment_tokens=70,
  )  # fmt: skip
  assert len(one["segments"]) == 1 and len(seg["segments"]) == 5
  q = rng.normal(size=(4, 8)).astype(np.float32)
  a = load_index(str(tmp_path / "a")).search_tokens(q, 25)
  b = load_index(str(tmp_path / "b")).search_tokens(q, 25)
  np.testing.assert_array_equal(a[0], b[0])
  # And the ScaNN backend over segments returns valid global token ids.
  build_index(
    str(tmp_path / "c"), v, t2p, pids, model_fingerprint="m", segment_tokens=150,
    scann_params=ScannParams(num_leaves_to_search=100),
  )  # fmt: skip
  ids, _ = load_index(str(tmp_path / "c")).search_tokens(q, 25)
  overlap = np.mean([len(set(x) & set(y)) / 25 for x, y in zip(ids, a[0])])
  assert overlap > 0.7 and ids.max() < 300


class CrashAfter:
  """An encoder wrapper that fails on its n-th batch (a simulated crash)."""

  def __init__(self, enc, n):
    self.enc, self.n, self.calls = enc, n, 0
    self.proj_dim, self.pooling = enc.proj_dim, enc.pooling

  def encode_tokens(self, *args, **kwargs):
    self.calls += 1
    if self.calls == self.n:
      raise RuntimeError("simulated crash")
    return self.enc.encode_tokens(*args, **kwargs)


def test_encoding_resumes_after_a_crash(built, retriever, tmp_path):
  setup, _ = built
  params = EncodeParams(shard_size=25, buckets=(32, 64))
  tok = retriever.tokenizer
  enc: TokenEncoder = retriever.encoder
  crashing = CrashAfter(enc, 3)  # shards 0, 1 done; crash in shard 2 of 4
  work = str(tmp_path / "work")
  with pytest.raises(RuntimeError, match="simulated crash"):
    encode_corpus(setup.corpus, work, crashing, tok, params, progress=False)
  done = json.load(open(os.path.join(work, "progress.json")))
  assert [s["index"] for s in done["shards"]] == [0, 1] and not done["complete"]
  counting = CrashAfter(enc, 0)
  record = encode_corpus(setup.corpus, work, counting, tok, params, progress=False)
  assert counting.calls == 2 and record["complete"] and record["num_passages"] == 80
  fresh = encode_corpus(setup.corpus, str(tmp_path / "w2"), enc, tok, params, progress=False)
  for s in fresh["shards"]:
    i = s["index"]
    a = np.load(os.path.join(work, f"vectors_{i:05d}.npy"))
    b = np.load(os.path.join(str(tmp_path / "w2"), f"vectors_{i:05d}.npy"))
    np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match="different settings"):
    encode_corpus(
      setup.corpus, work, enc, tok, EncodeParams(shard_size=10), settings={"x": 1}, progress=False
    )


def test_encoding_to_a_remote_work_dir_resumes_and_loads_like_a_local_one(
  built, retriever, tmp_path, memory_gcs
):
  """``encode_corpus`` / ``load_shards`` on gs:// (the in-memory bucket of conftest): a crash
  and resume there give the shards a local run writes."""
  setup, _ = built
  params = EncodeParams(shard_size=25, buckets=(32, 64))
  tok, enc = retriever.tokenizer, retriever.encoder
  remote = "gs://bucket/encode"
  with pytest.raises(RuntimeError, match="simulated crash"):
    encode_corpus(setup.corpus, remote, CrashAfter(enc, 3), tok, params, progress=False)
  assert not os.path.exists("gs:") and sorted(memory_gcs)  # nothing local, objects remote
  resumed = CrashAfter(enc, 0)
  record = encode_corpus(setup.corpus, remote, resumed, tok, params, progress=False)
  assert resumed.calls == 2 and record["complete"]
  local = encode_corpus(setup.corpus, str(tmp_path / "w"), enc, tok, params, progress=False)
  got, want = load_shards(remote, record), load_shards(str(tmp_path / "w"), local)
  np.testing.assert_array_equal(got[0], want[0])
  np.testing.assert_array_equal(got[1], want[1])
  assert got[2] == want[2] and len(want[2]) == 80


def test_corpus_errors_name_file_and_line(tmp_path):
  bad = tmp_path / "c.tsv"
  bad.write_text("id\ttext\ttitle\na\thello\tT\nb\tonly two\n")
  with pytest.raises(ValueError, match=r"c.tsv:3: expected 3 tab-separated fields"):
    list(read_corpus(str(bad)))
  with pytest.raises(FileNotFoundError, match="corpus file not found"):
    list(read_corpus(str(tmp_path / "none.tsv")))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "int8"])
def test_scann_reorder_dtypes_rescore_with_near_exact_scores(dtype):
  # With reordering over every token, ScaNN's top-k is the exact top-k up to the reorder
  # dtype's rounding: float32 exact, bfloat16 ~3 digits, int8 fixed point ~2 digits.
  from xtr_jax.index.scann_index import ScannSearcher

  rng = np.random.default_rng(0)
  db = rng.standard_normal((3000, 16)).astype(np.float32)
  db /= np.linalg.norm(db, axis=1, keepdims=True)
  q = db[:8] + 0.1 * rng.standard_normal((8, 16)).astype(np.float32)
  params = ScannParams(num_leaves=10, num_leaves_to_search=10, reorder=3000, reorder_dtype=dtype)
  ids, scores = ScannSearcher.build(db, params).search_batched(q, 20)
  exact = q @ db.T
  np.testing.assert_allclose(scores, np.take_along_axis(exact, ids, axis=1), atol=0.03)
  want = np.sort(exact, axis=1)[:, ::-1][:, :20]
  np.testing.assert_allclose(scores, want, atol=0.03)
  overlap = np.mean([len(set(a) & set(b)) / 20 for a, b in zip(ids, np.argsort(-exact)[:, :20])])
  assert overlap >= (1.0 if dtype == "float32" else 0.9)


def test_scann_reorder_dtype_is_checked():
  from xtr_jax.index.scann_index import ScannSearcher

  db = np.eye(8, dtype=np.float32)
  with pytest.raises(ValueError, match="reorder_dtype='fp8'"):
    ScannSearcher.build(db, ScannParams(num_leaves=2, reorder=8, reorder_dtype="fp8"))


def test_index_built_with_scann_reordering_skips_our_rescoring(
  built, retriever, tmp_path, monkeypatch
):
  # ScaNN re-scores (float32, every token a candidate, every leaf searched): the Retriever must
  # take ScaNN's exact lists as they are, not fetch and re-score candidates again.
  from xtr_jax.index import retriever as retriever_module

  idx = retriever.index
  n = idx.manifest["num_tokens"]
  out = str(tmp_path / "reordered")
  build_index(
    out, np.asarray(idx.vectors), idx.token_to_passage, idx.passage_ids,
    model_fingerprint=idx.manifest["model_fingerprint"],
    scann_params=ScannParams(num_leaves=4, num_leaves_to_search=4, reorder=n),
  )  # fmt: skip
  params = SearchParams(token_top_k=50, rescore_candidates=2000)
  r = Retriever(load_index(out), retriever.encoder, retriever.tokenizer, params)
  bf = Retriever(idx, retriever.encoder, retriever.tokenizer, SearchParams(token_top_k=50))
  assert r.scann_reorders and not bf.scann_reorders

  def fail(*args, **kwargs):
    raise AssertionError("re-scored an index that ScaNN already reorders")

  monkeypatch.setattr(retriever_module, "rescore_candidates", fail)
  vecs, mask = bf.encode_queries(["river city mountain", "book school bank money"])
  a_ids, a_scores = r.search_tokens(vecs[mask])
  b_ids, b_scores = bf.search_tokens(vecs[mask])
  np.testing.assert_array_equal(a_ids, b_ids)
  np.testing.assert_allclose(a_scores, b_scores, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("gin_file", ["runs/index_default.gin", "runs/index_fast.gin"])
def test_shipped_index_gin_files_build_what_they_say(built, retriever, tmp_path, gin_file):
  setup, _ = built
  out = str(tmp_path / "idx")
  rc = run_cli(
    cli.index_main,
    ["--checkpoint", setup.checkpoint, "--corpus", setup.corpus, "--output", out,
     "--gin_file", gin_file],
  )  # fmt: skip
  assert rc == 0
  scann = json.load(open(os.path.join(out, "manifest.json")))["scann"]
  fast = gin_file.endswith("fast.gin")
  assert scann["reorder"] == (2000 if fast else 0)
  assert scann["reorder_dtype"] == ("int8" if fast else "float32")
  assert scann["num_leaves_to_search"] == (200 if fast else 100)
  r = Retriever.load(out)
  assert r.scann_reorders == fast
  queries = ["river city mountain", "book school bank money"]
  got = r.search(queries, k=10)
  want = retriever.search(queries, k=10)  # brute force
  overlap = np.mean([len({p for p, _ in a} & {p for p, _ in b}) / 10 for a, b in zip(got, want)])
  assert overlap >= 0.9


def test_batch_plan_covers_every_text_once_in_order():
  lengths = [300, 200, 70, 65, 64, 40, 33, 9, 5]  # longest first, as encode_tokens sorts
  buckets = (32, 64, 128, 256, 512)
  for budget, min_rows in ((256, 1), (256, 4), (0, 3), (1, 1)):
    plan = plan_batches(lengths, 512, buckets, budget, min_rows)
    assert plan[0][0] == 0 and sum(rows for _, rows, _ in plan[:-1]) < len(lengths)
    for (start, rows, length), nxt in zip(plan, plan[1:] + [(None,)]):
      assert nxt[0] in (start + rows, None)  # contiguous: no text skipped or repeated
      assert all(n <= length for n in lengths[start : start + rows])
      assert rows == max(min_rows, budget // length, 1)
    assert plan[-1][0] + plan[-1][1] >= len(lengths)
  assert plan_batches(lengths, 128, buckets, 0, 8)[0][2] == 128  # capped at max_length


def test_auto_token_budget_is_chosen_per_platform():
  assert batch_policy("cpu", 32, AUTO_TOKEN_BUDGET) == (CPU_TOKEN_BUDGET, 1)
  assert batch_policy("tpu", 32, AUTO_TOKEN_BUDGET) == (ACCELERATOR_TOKEN_BUDGET, 32)
  assert batch_policy("cpu", 32, 8192) == (8192, 32)  # explicit budgets keep the row floor
  assert batch_policy("gpu", 16, 0) == (0, 16)
  with pytest.raises(ValueError, match="token_budget"):
    batch_policy("cpu", 32, -2)


def test_vectors_do_not_depend_on_the_batch_shapes(built, retriever):
  setup, _ = built
  enc: TokenEncoder = retriever.encoder
  tok = retriever.tokenizer
  texts = [f"{p.title} {p.text}" for p in list(read_corpus(setup.corpus))[:20]]
  ids = tok.encode(texts, 64, role="passage")
  auto = enc.encode_tokens(ids, 8, 64, (32, 64), AUTO_TOKEN_BUDGET)
  fixed = enc.encode_tokens(ids, 8, 64, (64,), 0)
  for a, b, x in zip(auto, fixed, ids):
    assert a.shape == b.shape == (len(x), enc.proj_dim)
    np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float32), atol=2e-3)
