"""Token index benchmarks.

``--agreement``: on the shared XOR mini corpus, encode with a randomly initialised tiny
RetrievalEncoder (vocabulary trained on the corpus), build the index at default settings and
measure how many of brute force's top-100 passages the ScaNN path returns per dev query.
A random model measures the index, not retrieval quality.

default: token-level ANN on N synthetic clustered unit vectors (or ``--vectors_from INDEX``):
build time, bytes/token, query tokens/s on this machine, recall@100 against exact search, for
this index (ScaNN), brute force and faiss IVF-PQ side by side. fast-plaid and xtr-warp-rs
are reported as not run when they cannot be imported (see results/search.md for why).
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


def agreement(args) -> None:
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415

  from xtr_jax.checkpoints.orbax_io import params_fingerprint  # noqa: PLC0415
  from xtr_jax.index.cli import build_from_corpus  # noqa: PLC0415
  from xtr_jax.index.encode import EncodeParams, Tokenizer, read_corpus  # noqa: PLC0415
  from xtr_jax.index.retriever import Retriever, SearchParams  # noqa: PLC0415
  from xtr_jax.index.store import load_index  # noqa: PLC0415
  from xtr_jax.index.testing import train_vocabulary  # noqa: PLC0415
  from xtr_jax.models.config import tiny_config  # noqa: PLC0415
  from xtr_jax.models.xtr import RetrievalEncoder  # noqa: PLC0415

  corpus = os.path.join(args.data, "xor_mini", "corpus.tsv")
  dev = os.path.join(args.data, "xor_mini", "dev.jsonl")
  work = args.work_dir or tempfile.mkdtemp(prefix="xtr_agree_")
  texts = [f"{p.title} {p.text}" for p in read_corpus(corpus)]
  queries = [json.loads(line)["question"] for line in open(dev, encoding="utf-8")]
  queries = queries[: args.num_queries]
  spm = os.path.join(work, "spm.model")
  if not os.path.exists(spm):
    train_vocabulary(texts, os.path.join(work, "spm"), vocab_size=500, character_coverage=0.9995)
  config = tiny_config()
  params = jax.jit(RetrievalEncoder(config).init)(
    jax.random.PRNGKey(0), jnp.ones((1, 8), jnp.int32)
  )["params"]
  fp = params_fingerprint(params)
  tok = Tokenizer(spm, config.vocab_size)
  out = os.path.join(work, "index")
  t0 = time.time()
  if not os.path.exists(out):
    build_from_corpus(
      corpus, out, params, config, proj_dim=128, model_fingerprint=fp, tokenizer=tok,
      encode_params=EncodeParams(max_length=args.max_length),
    )  # fmt: skip
  build_s = time.time() - t0
  scann_idx = load_index(out, fp)
  bf_idx = load_index(out, fp, backend="brute_force")
  sp = SearchParams(token_top_k=args.token_top_k)
  from xtr_jax.index.encode import TokenEncoder  # noqa: PLC0415

  enc = TokenEncoder(params, config, 128)
  r_scann = Retriever(scann_idx, enc, tok, sp)
  r_bf = Retriever(bf_idx, enc, tok, sp)
  vecs, mask = r_scann.encode_queries(queries)
  t0 = time.time()
  a = r_scann.search_vectors(vecs, mask, 100)
  t_scann = time.time() - t0
  t0 = time.time()
  b = r_bf.search_vectors(vecs, mask, 100)
  t_bf = time.time() - t0
  agree = np.array([len(set(x[0]) & set(y[0])) / max(len(y[0]), 1) for x, y in zip(a, b)])
  m = scann_idx.manifest
  rows = [
    ("passages", m["num_passages"]),
    ("token vectors", m["num_tokens"]),
    ("dev queries", len(queries)),
    ("query tokens (real, incl. EOS)", int(mask.sum())),
    ("k' (tokens per query token)", args.token_top_k),
    ("ScaNN params", json.dumps(m["scann"])),
    ("ScaNN bytes/token", m["bytes_per_token"]["scann"]),
    ("encode + build seconds", round(build_s, 1)),
    ("top-100 agreement mean", round(float(agree.mean()), 4)),
    ("top-100 agreement min / p10", f"{agree.min():.3f} / {np.percentile(agree, 10):.3f}"),
    ("search seconds ScaNN / brute force", f"{t_scann:.1f} / {t_bf:.1f}"),
  ]
  print("| measure | value |\n|---|---|")
  for k, v in rows:
    print(f"| {k} | {v} |")


def synthetic_vectors(n: int, dim: int, seed: int, num_clusters: int | None = None):
  """Clustered unit vectors with Zipf-like cluster sizes (token frequencies are Zipfian)."""
  rng = np.random.default_rng(seed)
  num_clusters = num_clusters or max(16, int(math.sqrt(n)))
  centres = rng.normal(size=(num_clusters, dim)).astype(np.float32)
  centres /= np.linalg.norm(centres, axis=1, keepdims=True)
  weights = 1.0 / np.arange(1, num_clusters + 1) ** 0.8
  weights /= weights.sum()
  out = np.empty((n, dim), np.float16)
  step = 1 << 20
  for s in range(0, n, step):
    m = min(step, n - s)
    c = rng.choice(num_clusters, size=m, p=weights)
    x = centres[c] + rng.normal(scale=0.6 / math.sqrt(dim) * 4, size=(m, dim)).astype(np.float32)
    out[s : s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
  return out, centres


def recall(ids: np.ndarray, exact: np.ndarray) -> float:
  return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(ids, exact)]))


def ann(args) -> None:
  from xtr_jax.index.brute_force import BruteForceSearcher  # noqa: PLC0415
  from xtr_jax.index.scann_index import ScannParams, ScannSearcher  # noqa: PLC0415

  if args.vectors_from:
    db = np.load(os.path.join(args.vectors_from, "vectors.npy"), mmap_mode="r")
    db = np.asarray(db[: args.num_vectors])
    rng = np.random.default_rng(1)
    queries = db[rng.choice(db.shape[0], args.num_query_tokens, replace=False)].astype(np.float32)
    queries += rng.normal(scale=0.05, size=queries.shape).astype(np.float32)
    source = f"{args.vectors_from} ({db.shape[0]} vectors)"
  else:
    db, _ = synthetic_vectors(args.num_vectors, 128, 0)
    queries, _ = synthetic_vectors(args.num_query_tokens, 128, 0)  # same clusters (seed)
    queries = queries.astype(np.float32)
    source = f"synthetic clustered, N={args.num_vectors}"
  n, k = db.shape[0], args.k
  table = []
  t0 = time.time()
  bf = BruteForceSearcher(db)
  exact_ids, _ = bf.search_batched(queries, k)
  t_bf = time.time() - t0
  table.append(("brute force (numpy f16->f32)", 0.0, 2 * 128, len(queries) / t_bf, 1.0))

  t0 = time.time()
  sc = ScannSearcher.build(db, ScannParams())
  build = time.time() - t0
  with tempfile.TemporaryDirectory() as d:
    sc.serialize(d)
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
  t0 = time.time()
  ids, _ = sc.search_batched(queries, k)
  t = time.time() - t0
  table.append((f"xtr_jax ScaNN {sc.params.num_leaves} leaves", build, size / n, len(queries) / t,
                recall(ids, exact_ids)))  # fmt: skip
  try:
    import faiss  # noqa: PLC0415

    faiss.omp_set_num_threads(2)
    nlist = sc.params.num_leaves
    t0 = time.time()
    quant = faiss.IndexFlatIP(128)
    index = faiss.IndexIVFPQ(quant, 128, nlist, 64, 4, faiss.METRIC_INNER_PRODUCT)
    train = np.asarray(db[np.random.default_rng(0).choice(n, min(n, 250_000), replace=False)],
                       np.float32)  # fmt: skip
    index.train(train)
    for s in range(0, n, 1 << 20):
      index.add(np.asarray(db[s : s + (1 << 20)], np.float32))
    build = time.time() - t0
    index.nprobe = min(nlist, 100)
    t0 = time.time()
    _, ids = index.search(queries, k)
    t = time.time() - t0
    bpt = len(faiss.serialize_index(index)) / n
    table.append((f"faiss IVF{nlist},PQ64x4 nprobe=100", build, bpt, len(queries) / t,
                  recall(ids, exact_ids)))  # fmt: skip
  except ImportError as e:
    table.append((f"faiss not run: {e}", 0, 0, 0, 0))
  for name in ("fast_plaid", "xtr_warp"):
    try:
      __import__(name)
      table.append((f"{name}: importable but not wired (document-level engine)", 0, 0, 0, 0))
    except ImportError:
      table.append((f"{name}: not installed (needs torch 2.11; see results/search.md)", 0, 0, 0, 0))
  print(f"vectors: {source}; query tokens: {len(queries)}; top-{k} recall vs exact")
  print("| system | build s | bytes/token | query tokens/s | recall@100 | qps ratio vs ScaNN |")
  print("|---|---|---|---|---|---|")
  ref = table[1][3]
  for name, b, bpt, qps, r in table:
    ratio = f"{qps / ref:.2f}" if qps else "-"
    print(f"| {name} | {b:.1f} | {bpt:.1f} | {qps:.0f} | {r:.3f} | {ratio} |")


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("--agreement", action="store_true")
  p.add_argument("--data", default=DEFAULT_DATA)
  p.add_argument("--work_dir", default="")
  p.add_argument("--num_queries", type=int, default=931)
  p.add_argument("--max_length", type=int, default=256)
  p.add_argument("--token_top_k", type=int, default=1000)
  p.add_argument("--num_vectors", type=int, default=10_000_000)
  p.add_argument("--num_query_tokens", type=int, default=2000)
  p.add_argument("--vectors_from", default="")
  p.add_argument("--k", type=int, default=100)
  args = p.parse_args()
  agreement(args) if args.agreement else ann(args)


if __name__ == "__main__":
  main()
