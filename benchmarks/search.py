"""Token index benchmarks.

``--agreement``: on the shared XOR mini corpus, encode with a randomly initialised tiny
RetrievalEncoder (vocabulary trained on the corpus), build the index at default settings and
measure how many of brute force's top-100 passages the ScaNN path returns per dev query.
A random model measures the index, not retrieval quality.

default: token-level ANN on N synthetic clustered unit vectors (or ``--vectors_from INDEX``):
build time, bytes/token, query tokens/s on this machine, recall@100 against exact search, for
this index (ScaNN, default and a leaves_to_search sweep), brute force and faiss IVF-PQ
(codecs x nprobe sweep) side by side. fast-plaid and xtr-warp-rs pin torch 2.11, which this
venv cannot take (torch 2.13.0+cpu is pinned); they are reported as not run when they cannot
be imported (see results/search.md).

Examples:
  search.py --agreement --work_dir /tmp/agree --sweep_leaves 200 400
  search.py --num_vectors 1000000 --work_dir /tmp/ann          # synthetic, 1M
  search.py --vectors_from /tmp/agree/index --work_dir /tmp/ann  # the encoded mini corpus
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

DEFAULT_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


def _model(args, work: str):
  """(params, config, proj_dim, fingerprint, tokenizer, label) of the model to encode with."""
  from xtr_jax.checkpoints.orbax_io import params_fingerprint  # noqa: PLC0415
  from xtr_jax.data.formats import read_corpus  # noqa: PLC0415
  from xtr_jax.data.tokenizer import Tokenizer  # noqa: PLC0415
  from xtr_jax.index.retriever import load_model  # noqa: PLC0415
  from xtr_jax.index.testing import train_vocabulary  # noqa: PLC0415

  if args.checkpoint:
    params, config, proj_dim, fp, extra = load_model(args.checkpoint)
    vocab = args.vocabulary or extra.get("vocabulary")
    if not vocab:
      raise SystemExit("--vocabulary is required: the checkpoint records none")
    tok = Tokenizer(vocab, config.vocab_size, config.eos_token_id)
    return params, config, proj_dim, fp, tok, f"checkpoint {args.checkpoint}"
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415

  from xtr_jax.models.config import tiny_config  # noqa: PLC0415
  from xtr_jax.models.xtr import RetrievalEncoder  # noqa: PLC0415

  spm = os.path.join(work, "spm.model")
  if not os.path.exists(spm):
    corpus = os.path.join(args.data, "xor_mini", "corpus.tsv")
    texts = [f"{p.title} {p.text}" for p in read_corpus(corpus)]
    train_vocabulary(texts, os.path.join(work, "spm"), vocab_size=500, character_coverage=0.9995)
  config = tiny_config()
  params = jax.jit(RetrievalEncoder(config).init)(
    jax.random.PRNGKey(0), jnp.ones((1, 8), jnp.int32)
  )["params"]
  label = "random tiny RetrievalEncoder (seed 0), 500-piece SentencePiece trained on the corpus"
  return params, config, 128, params_fingerprint(params), Tokenizer(spm, config.vocab_size), label


def _parse_reorder(spec: str) -> tuple[str, int, int | None]:
  """DTYPE:N[:LEAVES] -> (dtype, reorder candidates, leaves_to_search or None = as built)."""
  parts = spec.split(":")
  if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts[1:]):
    raise SystemExit(f"--scann_reorder {spec!r}: expected DTYPE:N[:LEAVES], e.g. int8:2000:200")
  return parts[0], int(parts[1]), int(parts[2]) if len(parts) == 3 else None


def _reorder_searchers(vectors, segments, spec: str):
  """ScaNN searchers like ``segments`` [(offset, searcher)], rebuilt with ScaNN's own
  reordering (``spec`` = DTYPE:N); (searchers, build seconds, serialized bytes)."""
  import dataclasses  # noqa: PLC0415

  from xtr_jax.index.scann_index import ScannSearcher  # noqa: PLC0415

  dtype, n, leaves = _parse_reorder(spec)
  t0, out, size = time.time(), [], 0
  for off, sc in segments:
    params = dataclasses.replace(sc.params, reorder=n, reorder_dtype=dtype)
    if leaves:
      params = dataclasses.replace(params, num_leaves_to_search=leaves)
    new = ScannSearcher.build(vectors[off : off + sc.size], params)
    with tempfile.TemporaryDirectory() as d:
      new.serialize(d)
      size += sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    out.append((off, new))
    print(f"  ScaNN reorder {spec} segment at {off}: built, {time.time() - t0:.0f} s", flush=True)
  return out, time.time() - t0, size


def _agreement_stats(sets, bf_sets) -> dict:
  agree = np.array([len(a & b) / max(len(b), 1) for a, b in zip(sets, bf_sets)])
  hist = np.histogram(agree, bins=[0, 0.8, 0.9, 0.95, 0.99, 1.0, 1.01])[0]
  return dict(mean=agree.mean(), min=agree.min(), p10=np.percentile(agree, 10),
              median=np.median(agree), share=(agree >= 0.95).mean(), hist=hist.tolist())  # fmt: skip


def agreement(args) -> None:
  """Top-100 passages of the Retriever's ScaNN path vs brute force, per dev query."""
  import dataclasses  # noqa: PLC0415

  from xtr_jax.index.brute_force import BruteForceSearcher  # noqa: PLC0415
  from xtr_jax.index.build import build_from_corpus  # noqa: PLC0415
  from xtr_jax.index.encode import EncodeParams, TokenEncoder  # noqa: PLC0415
  from xtr_jax.index.retriever import Retriever, SearchParams  # noqa: PLC0415
  from xtr_jax.index.scann_index import ScannSearcher  # noqa: PLC0415
  from xtr_jax.index.store import load_index  # noqa: PLC0415
  from xtr_jax.index.xtr_search import xtr_search  # noqa: PLC0415

  corpus = os.path.join(args.data, "xor_mini", "corpus.tsv")
  dev = os.path.join(args.data, "xor_mini", "dev.jsonl")
  work = args.work_dir or tempfile.mkdtemp(prefix="xtr_agree_")
  os.makedirs(work, exist_ok=True)
  queries = [json.loads(line)["question"] for line in open(dev, encoding="utf-8")]
  queries = queries[: args.num_queries]
  params, config, proj_dim, fp, tok, label = _model(args, work)
  out = os.path.join(work, "index")  # reused by later runs with the same model
  t0 = time.time()
  if not os.path.exists(out):
    build_from_corpus(
      corpus, out, params, config, proj_dim=proj_dim, model_fingerprint=fp, tokenizer=tok,
      encode_params=EncodeParams(max_length=args.max_length),
    )  # fmt: skip
    print(f"encoded + built {out} in {time.time() - t0:.1f} s", flush=True)
  scann_idx = load_index(out, fp)
  m = scann_idx.manifest
  k_tok = args.token_top_k
  enc = TokenEncoder(params, config, proj_dim)
  r = Retriever(scann_idx, enc, tok, SearchParams(token_top_k=k_tok))
  t0 = time.time()
  vecs, mask = r.encode_queries(queries)
  t_enc = time.time() - t0
  print(f"encoded {len(queries)} queries in {t_enc:.1f} s", flush=True)
  flat = vecs[mask]  # [T, d] real query tokens, query-major
  lengths = mask.sum(axis=1)
  bounds = np.concatenate([[0], np.cumsum(lengths)])

  def passage_sets(tok_ids, tok_scores):
    rows = scann_idx.tokens_to_passages(tok_ids)
    sets = []
    for q in range(len(queries)):
      a, b = bounds[q], bounds[q + 1]
      sets.append(set(xtr_search(rows[a:b], tok_scores[a:b], np.ones(b - a, bool), 100)[0]))
    return sets

  # Brute-force token lists are cached on disk: they cost minutes, the ScaNN variants seconds.
  cache = os.path.join(work, f"bf_tokens_{fp}_k{k_tok}_q{len(queries)}.npz")
  if os.path.exists(cache):
    z = np.load(cache)
    if not np.array_equal(z["query_tokens"], flat):
      raise SystemExit(f"{cache}: cached query vectors differ from this run's; delete it")
    bf_ids, bf_scores, t_bf = z["ids"].astype(np.int64), z["scores"], float(z["seconds"])
    print(f"brute force from cache {cache} ({t_bf:.0f} s when computed)", flush=True)
  else:
    db = np.asarray(scann_idx.vectors, np.float32)  # exact f16 values, converted once
    bf = BruteForceSearcher(db)
    t0, parts = time.time(), []
    for s in range(0, len(flat), 1024):
      parts.append(bf.search_batched(flat[s : s + 1024], k_tok))
      print(f"  brute force: {s + len(parts[-1][0])}/{len(flat)} query tokens, "
            f"{time.time() - t0:.0f} s", flush=True)  # fmt: skip
    bf_ids = np.concatenate([p[0] for p in parts])
    bf_scores = np.concatenate([p[1] for p in parts])
    t_bf = time.time() - t0
    del db, bf
    tmp = cache + ".tmp.npz"
    np.savez(tmp, ids=bf_ids.astype(np.int32), scores=bf_scores, query_tokens=flat,
             seconds=t_bf)  # fmt: skip
    os.replace(tmp, cache)
  bf_sets = passage_sets(bf_ids, bf_scores)

  rows = [
    ("model", label),
    ("passages", m["num_passages"]),
    ("token vectors", m["num_tokens"]),
    ("dev queries", len(queries)),
    ("query tokens (real, incl. EOS)", len(flat)),
    ("k' (tokens per query token)", k_tok),
    ("ScaNN params (built)", json.dumps(m["scann"])),
    ("bytes/token", json.dumps(m["bytes_per_token"])),
    ("query encoding seconds", f"{t_enc:.1f}"),
    ("brute-force token search seconds (float32 copy in RAM, 2 cores)", f"{t_bf:.1f}"),
  ]
  sweep = []

  def measure(label) -> None:
    """Token search of all query tokens through the Retriever; one row of the sweep table."""
    t0, parts = time.time(), []
    for s in range(0, len(flat), 2048):
      parts.append(r.search_tokens(flat[s : s + 2048]))
    t = time.time() - t0
    ids = np.concatenate([p[0] for p in parts])
    sets = passage_sets(ids, np.concatenate([p[1] for p in parts]))
    tok_recall = np.mean([len(np.intersect1d(a, b)) / k_tok for a, b in zip(ids, bf_ids)])
    st = _agreement_stats(sets, bf_sets)
    leaves = scann_idx.searchers[0][1].params.num_leaves_to_search
    sweep.append((leaves, label, st, tok_recall, t))
    print(f"  leaves {leaves} {label}: agreement {st['mean']:.4f}, token recall "
          f"{tok_recall:.4f}, token search {t:.1f} s", flush=True)  # fmt: skip

  for n_leaves in args.sweep_leaves or [m["scann"]["num_leaves_to_search"]]:
    scann_idx.searchers = [
      (off, ScannSearcher(s.searcher, dataclasses.replace(s.params, num_leaves_to_search=n_leaves),
                          s.size))
      for off, s in scann_idx.searchers
    ]  # fmt: skip
    for rescore in args.rescore:
      r.params = dataclasses.replace(r.params, rescore_candidates=rescore)
      measure(rescore)
  base = scann_idx.searchers
  r.params = dataclasses.replace(r.params, rescore_candidates=0)
  for spec in args.scann_reorder:
    scann_idx.searchers, t_build, size = _reorder_searchers(scann_idx.vectors, base, spec)
    measure(f"ScaNN reorder {spec} (built {t_build:.0f} s, {size / m['num_tokens']:.1f} B/token)")
  scann_idx.searchers = base
  print("| measure | value |\n|---|---|")
  for k, v in rows:
    print(f"| {k} | {v} |")
  print(
    "\n| leaves_to_search | rescore_candidates | mean | min | p10 | median | share >= 0.95 "
    "| histogram [0,.8) [.8,.9) [.9,.95) [.95,.99) [.99,1) [1] | token recall@k' "
    "| token search s | ms / query |"
  )
  print("|---|---|---|---|---|---|---|---|---|---|---|")
  for n_leaves, rescore, st, tr, t in sweep:
    print(
      f"| {n_leaves} | {rescore} | {st['mean']:.4f} | {st['min']:.3f} | {st['p10']:.3f} "
      f"| {st['median']:.3f} | {st['share']:.3f} | {st['hist']} | {tr:.4f} | {t:.1f} "
      f"| {1000 * t / len(queries):.1f} |"
    )


def synthetic_passages(n: int, dim: int, noise: float, out: np.ndarray, seed: int = 0):
  """``n`` token vectors [n, dim] (written into ``out``) grouped into topical passages.

  Shaped like contextual token embeddings of a dual encoder: unit vectors clustered by token
  (occurrences of a token in different contexts point roughly the same way), with Zipfian
  token frequencies (cluster sizes 1/rank^0.8 over ``sqrt(n)`` clusters) and passages of
  30-250 tokens that reuse a few topic tokens (half of a passage's tokens come from its 8
  topic clusters). A vector is its cluster centre plus Gaussian noise of norm ~``noise``,
  normalised (``noise=1.2``: cosine ~0.64 to the centre).

  Returns (doclens [P] int64, centres [C, dim], topics [P, 8], weights [C]).
  """
  rng = np.random.default_rng(seed)
  num_clusters = max(16, int(math.sqrt(n)))
  centres = rng.normal(size=(num_clusters, dim)).astype(np.float32)
  centres /= np.linalg.norm(centres, axis=1, keepdims=True)
  weights = 1.0 / np.arange(1, num_clusters + 1) ** 0.8
  weights /= weights.sum()
  lens = rng.integers(30, 251, size=n // 30 + 2)
  cut = int(np.searchsorted(np.cumsum(lens), n))
  doclens = lens[: cut + 1].astype(np.int64)
  doclens[-1] = n - doclens[:-1].sum()
  topics = rng.choice(num_clusters, size=(len(doclens), 8), p=weights)
  passage = np.repeat(np.arange(len(doclens)), doclens)
  step = 1 << 20
  for s in range(0, n, step):
    m = min(step, n - s)
    own = rng.random(m) < 0.5
    c = np.where(
      own, topics[passage[s : s + m], rng.integers(0, 8, m)], rng.choice(num_clusters, m, p=weights)
    )
    x = centres[c] + rng.normal(scale=noise / math.sqrt(dim), size=(m, dim)).astype(np.float32)
    out[s : s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
  return doclens, centres, topics, weights


def _synthetic_data(args):
  """(db f16 memmap [N, d], doclens [P], queries [Q, L, d] f32, qlens [Q], description)."""
  n = args.num_vectors
  work = args.work_dir or tempfile.mkdtemp(prefix="xtr_ann_")
  os.makedirs(work, exist_ok=True)
  path = os.path.join(work, f"synthetic_passages_{n}_noise{args.noise}.npy")
  lens_path = path.replace(".npy", ".doclens.npy")
  meta_path = path.replace(".npy", ".meta.npz")
  if not os.path.exists(path):
    tmp = path + ".tmp.npy"
    mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(n, 128))
    doclens, centres, topics, weights = synthetic_passages(n, 128, args.noise, mm)
    mm.flush()
    del mm
    np.save(lens_path, doclens)
    np.savez(meta_path, centres=centres, topics=topics, weights=weights)
    os.rename(tmp, path)
  db = np.load(path, mmap_mode="r")
  doclens = np.load(lens_path)
  meta = np.load(meta_path)
  centres, topics, weights = meta["centres"], meta["topics"], meta["weights"]
  num_clusters = len(centres)
  # Queries: 8-24 tokens, 70% about one random passage's topics, the rest global tokens.
  rng = np.random.default_rng(12345)
  nq, max_len = args.num_queries_ann, 24
  qlens = rng.integers(8, max_len + 1, nq)
  queries = np.zeros((nq, max_len, 128), np.float32)
  for i in range(nq):
    p = rng.integers(len(doclens))
    c = np.where(rng.random(qlens[i]) < 0.7, topics[p, rng.integers(0, 8, qlens[i])],
                 rng.choice(num_clusters, qlens[i], p=weights))  # fmt: skip
    x = centres[c] + rng.normal(scale=args.noise / math.sqrt(128), size=(qlens[i], 128))
    queries[i, : qlens[i]] = x / np.linalg.norm(x, axis=1, keepdims=True)
  desc = (
    f"synthetic: {n:,} unit token vectors in {len(doclens):,} topical passages (Zipf 1/r^0.8 "
    f"over {num_clusters} token clusters, noise {args.noise}); {nq} queries of 8-24 tokens "
    f"about a random passage's topics; file {path}"
  )
  return db, doclens, queries, qlens, desc


def _real_data(args):
  """The encoded shared corpus (``--vectors_from`` = an ``--agreement`` work dir) and the
  first ``--num_queries_ann`` dev queries encoded with the same model."""
  from xtr_jax.index.encode import TokenEncoder  # noqa: PLC0415
  from xtr_jax.index.retriever import Retriever  # noqa: PLC0415
  from xtr_jax.index.store import load_index  # noqa: PLC0415

  work = args.vectors_from
  params, config, proj_dim, fp, tok, label = _model(args, work)
  index = load_index(os.path.join(work, "index"), fp, backend="brute_force")
  t2p = index.token_to_passage
  if np.any(np.diff(t2p) < 0):
    raise SystemExit(f"{work}/index: tokens are not passage-major; cannot form passages")
  doclens = np.bincount(t2p, minlength=index.num_passages).astype(np.int64)
  dev = os.path.join(args.data, "xor_mini", "dev.jsonl")
  texts = [json.loads(line)["question"] for line in open(dev, encoding="utf-8")]
  r = Retriever(index, TokenEncoder(params, config, proj_dim), tok)
  queries, mask = r.encode_queries(texts[: args.num_queries_ann])
  desc = (
    f"XOR mini corpus encoded by the {label}: {index.manifest['num_tokens']:,} token vectors "
    f"in {index.num_passages:,} passages ({work}/index); first {len(queries)} dev queries"
  )
  return index.vectors, doclens, queries, mask.sum(axis=1), desc


def exact_ground_truth(db, doclens, flat, qlens, k_tok: int, k: int, chunk: int = 1 << 18):
  """One streaming pass over ``db``: exact token top-``k_tok`` of every query token, and the
  exact passage top-``k`` by MaxSim and by XTR (k' = ``k_tok``, brute-force token lists).

  Chunks hold whole passages, so a per-passage max is one ``np.maximum.reduceat``.
  """
  from xtr_jax.index.brute_force import _fold_top_k, merge_top_k  # noqa: PLC0415
  from xtr_jax.index.xtr_search import top_k_by_score, xtr_search  # noqa: PLC0415

  starts = np.concatenate([[0], np.cumsum(doclens)])
  best = np.empty((flat.shape[0], len(doclens)), np.float32)  # [T, P] max per passage
  top_ids = top_scores = None
  p0 = 0
  while p0 < len(doclens):
    p1 = max(p0 + 1, int(np.searchsorted(starts, starts[p0] + chunk, side="right")) - 1)
    a, b = starts[p0], starts[p1]
    sims = flat @ np.asarray(db[a:b], np.float32).T
    best[:, p0:p1] = np.maximum.reduceat(sims, starts[p0:p1] - a, axis=1)
    top_ids, top_scores = _fold_top_k(top_ids, top_scores, sims, int(a), k_tok)
    p0 = p1
  tok_ids, tok_scores = merge_top_k([top_ids], [top_scores], k_tok)
  t2p = np.repeat(np.arange(len(doclens)), doclens)
  bounds = np.concatenate([[0], np.cumsum(qlens)])
  maxsim, xtr = [], []
  for q in range(len(qlens)):
    x, y = bounds[q], bounds[q + 1]
    maxsim.append(top_k_by_score(np.arange(len(doclens)), best[x:y].mean(axis=0), k)[0])
    xtr.append(xtr_search(t2p[tok_ids[x:y]], tok_scores[x:y], np.ones(y - x, bool), k)[0])
  return tok_ids, tok_scores, np.array(maxsim), np.array(xtr)


def recall(ids: np.ndarray, exact: np.ndarray) -> float:
  return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(ids, exact)]))


def _passage_recall(got, exact) -> float:
  return float(np.mean([len(set(g) & set(e)) / len(e) for g, e in zip(got, exact)]))


def _xtr_passages(tok_ids, tok_scores, t2p, qlens, k):
  from xtr_jax.index.xtr_search import xtr_search  # noqa: PLC0415

  rows = np.where(tok_ids >= 0, t2p[np.maximum(tok_ids, 0)], -1)
  bounds = np.concatenate([[0], np.cumsum(qlens)])
  return [
    xtr_search(rows[bounds[q] : bounds[q + 1]], tok_scores[bounds[q] : bounds[q + 1]],
               np.ones(qlens[q], bool), k)[0]
    for q in range(len(qlens))
  ]  # fmt: skip


def _run_peer(args, engine, data_dir, n):
  """Rows of one peer engine, run in its own venv (see benchmarks/search_peers.py)."""
  import subprocess  # noqa: PLC0415

  out = os.path.join(data_dir, f"{engine}.jsonl")
  if os.path.exists(out):
    os.remove(out)
  harness = os.path.join(os.path.dirname(os.path.abspath(__file__)), "search_peers.py")
  cmd = [args.peers_python, harness, "--engine", engine, "--data", data_dir, "--out", out,
         "--threads", str(args.threads)]  # fmt: skip
  if engine == "fast_plaid" and args.plaid_queries:
    cmd += ["--num_queries", str(args.plaid_queries)]
  if engine == "xtr_warp" and args.warp_partitions:
    cmd += ["--num_partitions", str(args.warp_partitions)]
  if not os.path.exists(args.peers_python):
    return [], f"not run: no interpreter {args.peers_python} (see results/search.md)"
  try:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.peer_timeout)
    err = "" if proc.returncode == 0 else f"exit {proc.returncode}: {proc.stderr[-400:]}"
  except subprocess.TimeoutExpired:
    err = f"not finished within --peer_timeout {args.peer_timeout} s"
  rows = [json.loads(line) for line in open(out)] if os.path.exists(out) else []
  return rows, err


def ann(args) -> None:
  """Token ANN and passage-level comparison on one set of token vectors."""
  import dataclasses  # noqa: PLC0415

  from xtr_jax.index.brute_force import merge_top_k, rescore_candidates  # noqa: PLC0415
  from xtr_jax.index.scann_index import ScannParams, ScannSearcher  # noqa: PLC0415

  work = args.work_dir or tempfile.mkdtemp(prefix="xtr_ann_")
  os.makedirs(work, exist_ok=True)
  db, doclens, queries, qlens, source = (_real_data if args.vectors_from else _synthetic_data)(args)
  n, k, k_tok, nq = db.shape[0], args.k, args.token_top_k, len(queries)
  flat = np.concatenate([queries[i, : qlens[i]] for i in range(nq)]).astype(np.float32)
  t2p = np.repeat(np.arange(len(doclens)), doclens).astype(np.int32)
  print(f"vectors: {source}; {len(flat)} query tokens", flush=True)
  tok_rows, pas_rows = [], []  # token-level and passage-level table rows

  def tok_row(*row):
    tok_rows.append(row)
    print("  token | " + " | ".join(str(x) for x in row), flush=True)

  def pas_row(*row):
    pas_rows.append(row)
    print("  passage | " + " | ".join(str(x) for x in row), flush=True)

  t0 = time.time()
  gt_tok_ids, _, gt_maxsim, gt_xtr = exact_ground_truth(db, doclens, flat, qlens, k_tok, k)
  t_gt = time.time() - t0
  gt_tok = gt_tok_ids[:, :k]
  tok_row("brute force (xtr_jax numpy, f16 vectors streamed)", "exact, one pass also scoring "
          "MaxSim", 0.0, 256.0, len(flat) / t_gt, 1.0)  # fmt: skip
  pas_row("brute force exact MaxSim (reference)", "", 0.0, 256.0, nq / t_gt, 1.0, "-")

  def passage_eval(name, settings, build, bpt, search_fn):
    """search_fn(flat) -> token (ids, scores) [T, k']; XTR aggregation on top."""
    t0 = time.time()
    ids, scores = search_fn(flat)
    got = _xtr_passages(ids, scores, t2p, qlens, k)
    t = time.time() - t0
    pas_row(name, settings, build, bpt, nq / t, _passage_recall(got, gt_maxsim),
            f"{_passage_recall(got, gt_xtr):.3f}")  # fmt: skip

  # faiss IVF-PQ (streams the float16 database), then ScaNN (float32 copies per segment).
  try:
    import faiss  # noqa: PLC0415

    faiss.omp_set_num_threads(args.threads)
    nlist = args.nlist or ScannParams().leaves_for(n)
    sample = np.sort(np.random.default_rng(0).choice(n, min(n, args.train_sample), replace=False))
    train = np.asarray(db[sample], np.float32)
    for spec in args.faiss:
      t0 = time.time()
      index = faiss.index_factory(128, f"IVF{nlist},{spec}", faiss.METRIC_INNER_PRODUCT)
      ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
      # index_factory turns on polysemous training for IVF-PQ (simulated annealing: the
      # "hang" of the earlier runs); PQ k-means iterations are slow on this loaded VM.
      if hasattr(ivf, "do_polysemous_training"):
        ivf.do_polysemous_training = False
      if hasattr(ivf, "pq"):
        ivf.pq.cp.niter = args.faiss_niter
      ivf.cp.niter = args.faiss_niter
      index.train(train)
      for s in range(0, n, 1 << 20):
        index.add(np.asarray(db[s : s + (1 << 20)], np.float32))
      build = time.time() - t0
      bpt = len(faiss.serialize_index(index)) / n
      print(f"  faiss {spec}: built in {build:.0f} s", flush=True)
      for nprobe in args.nprobe:
        faiss.extract_index_ivf(index).nprobe = nprobe
        t0 = time.time()
        _, ids = index.search(flat, k)
        t = time.time() - t0
        tok_row(f"faiss IVF{nlist},{spec}", f"nprobe={nprobe}", build, bpt, len(flat) / t,
                recall(ids, gt_tok))  # fmt: skip

        def fsearch(x, index=index):
          s, i = index.search(x, k_tok)
          return i.astype(np.int64), s

        passage_eval(f"faiss IVF{nlist},{spec} + XTR (k'={k_tok})", f"nprobe={nprobe}", build,
                     bpt, fsearch)  # fmt: skip
      del index
  except ImportError as e:
    tok_row(f"faiss not run: {e}", "", 0, 0, 0, 0)

  seg = args.segment_tokens or n
  params = ScannParams()
  t0, searchers, size = time.time(), [], 0
  if args.vectors_from:  # the index --agreement built (defaults): reuse it, its build time
    from xtr_jax.index.store import load_index  # noqa: PLC0415

    idx = load_index(os.path.join(args.vectors_from, "index"))
    searchers = idx.searchers
    size = idx.manifest["bytes_per_token"]["scann"] * n
    print(f"  ScaNN: loaded {args.vectors_from}/index (built in {idx.manifest['build_seconds']}"
          " s)", flush=True)  # fmt: skip
  for start in range(0, n, seg) if not searchers else []:
    sc = ScannSearcher.build(db[start : start + seg], params)
    with tempfile.TemporaryDirectory() as d:
      sc.serialize(d)
      size += sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    searchers.append((start, sc))
    print(f"  ScaNN segment at {start}: built, {time.time() - t0:.0f} s", flush=True)
  build = idx.manifest["build_seconds"] if args.vectors_from else time.time() - t0
  nseg = len(searchers)
  name = (f"xtr_jax ScaNN ({nseg} x {searchers[0][1].params.num_leaves} leaves, AH 4 bit/dim)"
          if nseg > 1 else f"xtr_jax ScaNN ({searchers[0][1].params.num_leaves} leaves, AH 4 "
          "bit/dim)")  # fmt: skip

  def ssearch(x, kk, leaves=None, segments=None):
    """Token top-``kk`` over ``segments`` (default: the built ones), merged exactly."""
    ids, scores = [], []
    for off, sc in searchers if segments is None else segments:
      if leaves:
        sc = ScannSearcher(sc.searcher, dataclasses.replace(sc.params, num_leaves_to_search=leaves),
                           sc.size)  # fmt: skip
      i, s = sc.search_batched(x, kk)
      ids.append(np.where(i >= 0, i + off, -1))
      scores.append(s)
    return (ids[0], scores[0]) if len(ids) == 1 else merge_top_k(ids, scores, kk)

  for leaves in args.leaves:
    t0 = time.time()
    ids, _ = ssearch(flat, k, leaves)
    t = time.time() - t0
    tok_row(name, f"leaves_to_search={leaves}, {args.threads} threads", build, size / n,
            len(flat) / t, recall(ids, gt_tok))  # fmt: skip

  def rsearch(x, rescore):
    """The Retriever's token search: ScaNN, then exact re-scoring of ``rescore`` candidates."""
    if not rescore:
      return ssearch(x, k_tok)
    cand, _ = ssearch(x, max(rescore, k_tok))
    return rescore_candidates(x, cand, db, k_tok)

  for rescore in args.rescore:
    extra = 256 if rescore else 0
    passage_eval(f"{name} + XTR (k'={k_tok}), the Retriever path",
                 f"rescore_candidates={rescore}" + (" (default)" if rescore == 2000 else ""),
                 build, size / n + extra, lambda x, rescore=rescore: rsearch(x, rescore))  # fmt: skip
  if args.exact_rerank:
    # The Retriever's --exact mode: the default path's retrieved passages (union over query
    # tokens) re-ranked by full MaxSim over their stored float16 tokens.
    from xtr_jax.index.xtr_search import maxsim_search  # noqa: PLC0415

    order = np.arange(n)
    starts = np.concatenate([[0], np.cumsum(doclens)])
    bounds = np.concatenate([[0], np.cumsum(qlens)])
    t0 = time.time()
    ids, _ = rsearch(flat, 2000)
    got = []
    for q in range(nq):
      rows = ids[bounds[q] : bounds[q + 1]]
      passages = np.unique(t2p[rows[rows >= 0]])
      got.append(maxsim_search(queries[q, : qlens[q]], np.ones(qlens[q], bool), db, order,
                               starts, passages, k)[0])  # fmt: skip
    t = time.time() - t0
    pas_row(f"{name} + exact MaxSim over the retrieved passages (--exact)",
            "rescore_candidates=2000, k'=1000", build, size / n + 256, nq / t,
            _passage_recall(got, gt_maxsim), f"{_passage_recall(got, gt_xtr):.3f}")  # fmt: skip
  for spec in args.scann_reorder:
    reordered, t_build, rsize = _reorder_searchers(db, searchers, spec)

    def osearch(x, reordered=reordered):
      return ssearch(x, k_tok, segments=reordered)

    passage_eval(f"{name} + XTR (k'={k_tok}), ScaNN's own reordering",
                 f"reorder {spec}, rescore_candidates=0", t_build, rsize / n,
                 osearch)  # fmt: skip
    del reordered
  searchers.clear()  # frees the ScaNN memory before the peers run

  if args.peers:
    data_dir = os.path.join(work, "peers_data")
    os.makedirs(os.path.join(data_dir, "docs"), exist_ok=True)
    link = os.path.join(data_dir, "docs", "db.npy")
    if os.path.lexists(link):
      os.remove(link)
    src = getattr(db, "filename", None)
    if src and not args.vectors_from:
      os.symlink(os.path.abspath(src), link)
    else:
      np.save(link, np.asarray(db, np.float16))
    np.save(os.path.join(data_dir, "docs", "db.doclens.npy"), doclens.astype(np.int64))
    np.save(os.path.join(data_dir, "queries.npy"), queries.astype(np.float32))
    np.save(os.path.join(data_dir, "qlens.npy"), np.asarray(qlens, np.int64))
    for engine in args.peers:
      rows, err = _run_peer(args, engine, data_dir, n)
      for r in rows:
        got = np.array(r["ids"])
        m = len(got)  # a slow peer may have searched only the first m queries
        ver = r["versions"]
        pas_row(f"{engine} {ver.get({'xtr_warp': 'xtr_warp_rs'}.get(engine, engine), '')}".strip()
                + f" (own venv, torch {ver.get('torch', '?')})",
                r["settings"] + (f", first {m} queries" if m < nq else ""),
                r["build_s"], r["index_bytes"] / n, m / r["search_s"],
                _passage_recall(got, gt_maxsim[:m]), f"{_passage_recall(got, gt_xtr[:m]):.3f}")  # fmt: skip
      if err:
        pas_row(f"{engine}: {err}", "", 0, 0, 0, 0, "")

  print(f"\nvectors: {source}; {len(flat)} query tokens; {args.threads} threads")
  print(f"\nToken level: top-{k} recall against exact search")
  print("| system | settings | build s | bytes/token | query tokens/s | recall@100 |")
  print("|---|---|---|---|---|---|")
  for name, settings, b, bpt, qps, r in tok_rows:
    print(f"| {name} | {settings} | {b:.1f} | {bpt:.1f} | {qps:.0f} | {r:.3f} |"
          if qps else f"| {name} | | | | | |")  # fmt: skip
  print(f"\nPassage level: top-{k} passages vs exact MaxSim top-{k} (and vs exact XTR top-{k}, "
        f"k'={k_tok} from brute force)")  # fmt: skip
  print("| system | settings | build s | bytes/token | queries/s | recall@100 vs MaxSim "
        "| vs exact XTR |")  # fmt: skip
  print("|---|---|---|---|---|---|---|")
  for name, settings, b, bpt, qps, r, rx in pas_rows:
    print(f"| {name} | {settings} | {b:.1f} | {bpt:.1f} | {qps:.2f} | {r:.3f} | {rx} |"
          if qps else f"| {name} | | | | | | |")  # fmt: skip


def main() -> None:
  p = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument("--agreement", action="store_true", help="Run the agreement mode (see above).")
  p.add_argument("--data", default=DEFAULT_DATA, help="Shared data root (xor_mini/ inside).")
  p.add_argument("--work_dir", default="", help="Cache: vocabulary, index, synthetic vectors.")
  p.add_argument("--num_queries", type=int, default=931, help="--agreement: dev queries used.")
  p.add_argument("--max_length", type=int, default=256, help="--agreement: passage tokens.")
  p.add_argument("--token_top_k", type=int, default=1000, help="--agreement: k' per query token")
  p.add_argument("--checkpoint", default="", help="--agreement: trained model (else random tiny)")
  p.add_argument("--vocabulary", default="", help="--agreement: SentencePiece of --checkpoint")
  p.add_argument("--query_batch", type=int, default=64, help="--agreement: queries per search")
  p.add_argument(
    "--sweep_leaves", type=int, nargs="*", default=[], help="--agreement: leaves_to_search values"
  )
  p.add_argument(
    "--rescore", type=int, nargs="*", default=[0, 2000, 4000], help="rescore_candidates values"
  )
  p.add_argument(
    "--scann_reorder", nargs="*", default=[],
    help="Extra ScaNN builds with ScaNN's own reordering, DTYPE:N[:LEAVES_TO_SEARCH] "
    "(int8:2000, int8:2000:200 = gin/runs/index_fast.gin).",
  )  # fmt: skip
  p.add_argument(
    "--warp_partitions", type=int, default=0,
    help="xtr-warp num_partitions (0: its corpus-size heuristic; e.g. our ScaNN leaf count).",
  )  # fmt: skip
  p.add_argument(
    "--exact_rerank", action="store_true",
    help="ANN: add the --exact row (retrieved passages re-ranked by full MaxSim).",
  )  # fmt: skip
  p.add_argument("--num_vectors", type=int, default=10_000_000, help="ANN: synthetic N.")
  p.add_argument("--noise", type=float, default=1.2, help="ANN: synthetic context noise.")
  p.add_argument(
    "--vectors_from", default="", help="ANN: an --agreement work dir (encoded shared corpus)."
  )
  p.add_argument("--num_queries_ann", type=int, default=100, help="ANN: multi-vector queries.")
  p.add_argument("--k", type=int, default=100, help="ANN: neighbours / passages (recall@k).")
  p.add_argument("--threads", type=int, default=2, help="ANN: search threads.")
  p.add_argument("--leaves", type=int, nargs="*", default=[100], help="ANN: ScaNN leaves.")
  p.add_argument("--segment_tokens", type=int, default=2_000_000, help="ANN: ScaNN segment.")
  p.add_argument("--nprobe", type=int, nargs="*", default=[32, 128], help="ANN: faiss nprobe.")
  p.add_argument("--nlist", type=int, default=0, help="ANN: faiss lists (0: as ScaNN leaves).")
  p.add_argument("--train_sample", type=int, default=200_000, help="ANN: faiss training set.")
  p.add_argument("--faiss", nargs="*", default=["PQ32x8"], help="ANN: faiss codecs (after IVF)")
  p.add_argument("--faiss_niter", type=int, default=10, help="ANN: faiss k-means iterations.")
  p.add_argument("--peers", nargs="*", default=["xtr_warp", "fast_plaid"], help="ANN: peers.")
  p.add_argument("--peers_python", default="/tmp/peers/bin/python", help="ANN: peers' venv.")
  p.add_argument("--peer_timeout", type=int, default=1200, help="ANN: seconds per peer.")
  p.add_argument(
    "--plaid_queries", type=int, default=0, help="ANN: fast-plaid searches only the first N"
  )
  args = p.parse_args()
  agreement(args) if args.agreement else ann(args)


if __name__ == "__main__":
  main()
