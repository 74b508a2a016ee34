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
  from xtr_jax.index.encode import Tokenizer, read_corpus  # noqa: PLC0415
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


def agreement(args) -> None:
  import dataclasses  # noqa: PLC0415

  from xtr_jax.index.cli import build_from_corpus  # noqa: PLC0415
  from xtr_jax.index.encode import EncodeParams, TokenEncoder  # noqa: PLC0415
  from xtr_jax.index.retriever import Retriever, SearchParams  # noqa: PLC0415
  from xtr_jax.index.scann_index import ScannSearcher  # noqa: PLC0415
  from xtr_jax.index.store import load_index  # noqa: PLC0415

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
  bf_idx = load_index(out, fp, backend="brute_force")
  sp = SearchParams(token_top_k=args.token_top_k)
  enc = TokenEncoder(params, config, proj_dim)
  r_scann = Retriever(scann_idx, enc, tok, sp)
  r_bf = Retriever(bf_idx, enc, tok, sp)
  t0 = time.time()
  vecs, mask = r_scann.encode_queries(queries)
  print(f"encoded {len(queries)} queries in {time.time() - t0:.1f} s", flush=True)
  step = args.query_batch

  def run(retriever, name):
    res, t0 = [], time.time()
    for s in range(0, len(queries), step):
      res.extend(retriever.search_vectors(vecs[s : s + step], mask[s : s + step], 100))
      print(f"  {name}: {len(res)}/{len(queries)} queries, {time.time() - t0:.0f} s", flush=True)
    return [set(r[0].tolist()) for r in res], time.time() - t0

  bf_sets, t_bf = run(r_bf, "brute force")
  m = scann_idx.manifest
  base = ScannSearcher  # search-time sweep over leaves_to_search (no rebuild)
  leaves = [m["scann"]["num_leaves_to_search"]] + [x for x in args.sweep_leaves if x]
  rows = [
    ("model", label),
    ("passages", m["num_passages"]),
    ("token vectors", m["num_tokens"]),
    ("dev queries", len(queries)),
    ("query tokens (real, incl. EOS)", int(mask.sum())),
    ("k' (tokens per query token)", args.token_top_k),
    ("ScaNN params (built)", json.dumps(m["scann"])),
    ("ScaNN bytes/token", m["bytes_per_token"]["scann"]),
    ("brute-force search seconds", f"{t_bf:.1f}"),
  ]
  sweep = []
  for n_leaves in dict.fromkeys(leaves):
    scann_idx.searchers = [
      (off, base(s.searcher, dataclasses.replace(s.params, num_leaves_to_search=n_leaves), s.size))
      for off, s in scann_idx.searchers
    ]
    sets, t = run(r_scann, f"ScaNN leaves_to_search={n_leaves}")
    agree = np.array([len(a & b) / max(len(b), 1) for a, b in zip(sets, bf_sets)])
    hist = np.histogram(agree, bins=[0, 0.8, 0.9, 0.95, 0.99, 1.0, 1.01])[0]
    sweep.append(
      (n_leaves, agree.mean(), agree.min(), np.percentile(agree, 10), np.median(agree),
       (agree >= 0.95).mean(), hist.tolist(), t)
    )  # fmt: skip
  print("| measure | value |\n|---|---|")
  for k, v in rows:
    print(f"| {k} | {v} |")
  print(
    "\n| leaves_to_search | mean | min | p10 | median | share >= 0.95 "
    "| histogram [0,.8) [.8,.9) [.9,.95) [.95,.99) [.99,1) [1] | ScaNN search s |"
  )
  print("|---|---|---|---|---|---|---|---|")
  for n_leaves, mean, mn, p10, med, share, hist, t in sweep:
    print(
      f"| {n_leaves} | {mean:.4f} | {mn:.3f} | {p10:.3f} | {med:.3f} | {share:.3f} "
      f"| {hist} | {t:.1f} |"
    )


def synthetic_vectors(
  n: int, dim: int, seed: int, noise: float, num_clusters: int | None = None, out=None
):
  """``n`` clustered unit vectors [n, dim] float16 shaped like contextual token embeddings.

  Token embeddings of a dual encoder are unit vectors that cluster by token (a token's
  occurrences in different contexts point roughly the same way), and token frequencies are
  Zipfian: cluster sizes follow 1/rank^0.8 over ``sqrt(n)`` clusters (``num_clusters``, from
  ``seed``). Each vector is its cluster centre plus Gaussian noise of norm about ``noise``
  (the ratio of context to token identity), normalised; ``noise=1.2`` puts a vector at
  cosine ~0.64 to its centre. Returns (vectors, rng) where ``rng`` continues the stream.
  """
  rng = np.random.default_rng(seed)
  num_clusters = num_clusters or max(16, int(math.sqrt(n)))
  centres = rng.normal(size=(num_clusters, dim)).astype(np.float32)
  centres /= np.linalg.norm(centres, axis=1, keepdims=True)
  weights = 1.0 / np.arange(1, num_clusters + 1) ** 0.8
  weights /= weights.sum()
  out = np.empty((n, dim), np.float16) if out is None else out
  step = 1 << 20
  for s in range(0, n, step):
    m = min(step, n - s)
    c = rng.choice(num_clusters, size=m, p=weights)
    x = centres[c] + rng.normal(scale=noise / math.sqrt(dim), size=(m, dim)).astype(np.float32)
    out[s : s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
  return out, (centres, weights)


def _ann_data(args):
  """(db [N, 128] float16, maybe memory-mapped; queries [Q, 128] float32; description)."""
  if args.vectors_from:
    full = np.load(os.path.join(args.vectors_from, "vectors.npy"), mmap_mode="r")
    full = np.asarray(full[: args.num_vectors or None])
    rng = np.random.default_rng(1)
    held = rng.choice(full.shape[0], args.num_query_tokens, replace=False)
    keep = np.ones(full.shape[0], bool)
    keep[held] = False
    # Held-out token vectors of the same corpus and model as queries (not in the database).
    return (
      full[keep],
      full[held].astype(np.float32),
      (
        f"{args.vectors_from}/vectors.npy: {int(keep.sum())} token vectors, "
        f"{args.num_query_tokens} held-out token vectors as queries"
      ),
    )
  n = args.num_vectors
  work = args.work_dir or tempfile.mkdtemp(prefix="xtr_ann_")
  os.makedirs(work, exist_ok=True)
  path = os.path.join(work, f"synthetic_{n}_noise{args.noise}.npy")
  if not os.path.exists(path):
    tmp = path + ".tmp.npy"
    mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(n, 128))
    synthetic_vectors(n, 128, 0, args.noise, out=mm)
    mm.flush()
    del mm
    os.rename(tmp, path)
  db = np.load(path, mmap_mode="r")
  # Queries: fresh vectors around the same centres (same seed and cluster count).
  _, (centres, weights) = synthetic_vectors(1, 128, 0, args.noise, int(max(16, math.sqrt(n))))
  rng = np.random.default_rng(12345)
  c = rng.choice(len(centres), size=args.num_query_tokens, p=weights)
  q = centres[c] + rng.normal(scale=args.noise / math.sqrt(128), size=(len(c), 128))
  q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
  return (
    db,
    q,
    (
      f"synthetic: {n} clustered unit vectors (Zipf 1/r^0.8 over {len(centres)} clusters, "
      f"noise {args.noise}), {len(q)} query tokens from the same clusters; file {path}"
    ),
  )


def recall(ids: np.ndarray, exact: np.ndarray) -> float:
  return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(ids, exact)]))


def _timed(fn, repeat: int = 1):
  best = None
  for _ in range(repeat):
    t0 = time.time()
    out = fn()
    t = time.time() - t0
    best = t if best is None else min(best, t)
  return out, best


def ann(args) -> None:
  from xtr_jax.index.brute_force import BruteForceSearcher  # noqa: PLC0415
  from xtr_jax.index.scann_index import ScannParams, ScannSearcher  # noqa: PLC0415

  db, queries, source = _ann_data(args)
  n, k, nq = db.shape[0], args.k, len(queries)
  print(f"vectors: {source}", flush=True)
  table = []  # (system, settings, build s, bytes/token, query tokens/s, recall)

  def add(*row):
    table.append(row)
    print("  " + " | ".join(str(x) for x in row), flush=True)

  (exact_ids, _), t = _timed(lambda: BruteForceSearcher(db).search_batched(queries, k))
  add("brute force (xtr_jax, numpy f16 -> f32 matmul)", "exact", 0.0, 2 * 128, nq / t, 1.0)

  # faiss first (streams the float16 database in chunks), ScaNN last (needs a float32 copy).
  try:
    import faiss  # noqa: PLC0415

    faiss.omp_set_num_threads(args.threads)
    nlist = ScannParams().leaves_for(n)
    sample = np.sort(np.random.default_rng(0).choice(n, min(n, 250_000), replace=False))
    train = np.asarray(db[sample], np.float32)
    for spec in args.faiss:
      t0 = time.time()
      index = faiss.index_factory(128, f"IVF{nlist},{spec}", faiss.METRIC_INNER_PRODUCT)
      index.train(train)
      for s in range(0, n, 1 << 20):
        index.add(np.asarray(db[s : s + (1 << 20)], np.float32))
      build = time.time() - t0
      bpt = len(faiss.serialize_index(index)) / n
      for nprobe in args.nprobe:
        faiss.extract_index_ivf(index).nprobe = nprobe
        (_, ids), t = _timed(lambda index=index: index.search(queries, k), args.repeat)
        add(f"faiss IVF{nlist},{spec}", f"nprobe={nprobe}", build, bpt, nq / t,
            recall(ids, exact_ids))  # fmt: skip
      del index
  except ImportError as e:
    add(f"faiss not run: {e}", "", 0, 0, 0, 0)

  params = ScannParams(num_threads=args.threads)
  t0 = time.time()
  sc = ScannSearcher.build(db, params)
  build = time.time() - t0
  with tempfile.TemporaryDirectory() as d:
    sc.serialize(d)
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
  name = f"xtr_jax ScaNN {sc.params.num_leaves} leaves, AH 4 bit/dim"
  (ids, _), t = _timed(lambda: sc.search_batched(queries, k), args.repeat)
  add(name, f"leaves_to_search={params.num_leaves_to_search} (default), 1 thread as the "
      "Retriever calls it", build, size / n, nq / t, recall(ids, exact_ids))  # fmt: skip
  for leaves in args.leaves:
    (res, _), t = _timed(
      lambda leaves=leaves: sc.searcher.search_batched_parallel(
        queries, final_num_neighbors=k, leaves_to_search=leaves
      ),
      args.repeat,
    )
    add(name, f"leaves_to_search={leaves}, {args.threads} threads", build, size / n, nq / t,
        recall(np.asarray(res), exact_ids))  # fmt: skip

  for name in ("fast_plaid", "xtr_warp"):
    try:
      __import__(name)
      add(f"{name}: importable but not wired (document-level engine)", "", 0, 0, 0, 0)
    except ImportError:
      add(f"{name}: not run here (needs its own torch 2.11 venv; see results/search.md)", "",
          0, 0, 0, 0)  # fmt: skip
  print(f"\nvectors: {source}; top-{k} recall against exact search; {args.threads} threads")
  print("| system | settings | build s | bytes/token | query tokens/s | recall@100 |")
  print("|---|---|---|---|---|---|")
  for name, settings, b, bpt, qps, r in table:
    if not qps:
      print(f"| {name} | | | | | |")
      continue
    print(f"| {name} | {settings} | {b:.1f} | {bpt:.1f} | {qps:.0f} | {r:.3f} |")


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
    "--sweep_leaves", type=int, nargs="*", default=[], help="--agreement: extra leaves_to_search"
  )
  p.add_argument("--num_vectors", type=int, default=10_000_000, help="ANN: synthetic N.")
  p.add_argument("--noise", type=float, default=1.2, help="ANN: synthetic context noise.")
  p.add_argument("--vectors_from", default="", help="ANN: an index dir (real token vectors).")
  p.add_argument("--num_query_tokens", type=int, default=2000, help="ANN: query vectors.")
  p.add_argument("--k", type=int, default=100, help="ANN: neighbours (recall@k).")
  p.add_argument("--threads", type=int, default=2, help="ANN: search threads.")
  p.add_argument("--repeat", type=int, default=2, help="ANN: timed searches (best kept).")
  p.add_argument("--leaves", type=int, nargs="*", default=[50, 100, 200], help="ANN: ScaNN.")
  p.add_argument("--nprobe", type=int, nargs="*", default=[50, 100, 200], help="ANN: faiss.")
  p.add_argument(
    "--faiss", nargs="*", default=["PQ64x8", "PQ128x4fs"], help="ANN: faiss codecs (after IVF)"
  )
  args = p.parse_args()
  agreement(args) if args.agreement else ann(args)


if __name__ == "__main__":
  main()
