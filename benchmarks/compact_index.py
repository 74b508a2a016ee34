"""The compact token index (``xtr_jax/index/compact.py``) against exact XTR, on XOR mini.

Stages (each caches its output in ``--work_dir``, so a rerun only redoes what is missing):

  queries  encode the 931 dev queries once with the index's model -> queries.npz
  exact    brute-force top-k' token lists of every query token (the exact XTR reference)
  build    a compact index over the same vectors (``store.build_index(kind='compact')``)
  search   compact search at each ``--nprobe``; TREC runs + queries/s + memory
  eval     ``xtr-jax evaluate`` of every TREC run (macro Recall@20, R@2kt, MRR@10)

  flock /tmp/xtr_jax_cpu.lock nice -n 5 .venv/bin/python benchmarks/compact_index.py \
    --index /tmp/me5run/index_me5_xtr_ft --work_dir /tmp/compact_bench queries exact build search eval
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

DEFAULT_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


def _peak_rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _log(msg: str) -> None:
  print(f"[{time.strftime('%H:%M:%S')}] {msg} (peak RSS {_peak_rss_mib():.0f} MiB)", flush=True)


def encode_queries(args) -> None:
  """queries.npz: flat real query token vectors [T, d], token counts per query, query ids."""
  out = os.path.join(args.work_dir, "queries.npz")
  if os.path.exists(out):
    return
  from xtr_jax.index.cli import read_queries  # noqa: PLC0415
  from xtr_jax.index.retriever import Retriever  # noqa: PLC0415

  retriever = Retriever.load(args.index, backend="brute_force")
  queries = read_queries(os.path.join(args.data, "xor_mini", "dev.jsonl"))
  t0 = time.time()
  flat, lens = [], []
  for s in range(0, len(queries), 64):
    vecs, mask = retriever.encode_queries([q for _, q in queries[s : s + 64]])
    flat.append(vecs[mask])
    lens.extend(mask.sum(1).tolist())
  np.savez(out, flat=np.concatenate(flat), lens=np.asarray(lens, np.int64),
           qids=np.asarray([q for q, _ in queries]))  # fmt: skip
  _log(f"encoded {len(queries)} queries ({sum(lens)} tokens) in {time.time() - t0:.1f} s")


def _load_queries(args):
  z = np.load(os.path.join(args.work_dir, "queries.npz"))
  return z["flat"], z["lens"], [str(q) for q in z["qids"]]


def exact_tokens(args) -> None:
  """exact_k{K}.npz: brute-force top-k' (ids, scores) over the index's float16 vectors."""
  out = os.path.join(args.work_dir, f"exact_k{args.token_top_k}.npz")
  if os.path.exists(out):
    return
  from xtr_jax.index.brute_force import BruteForceSearcher  # noqa: PLC0415

  flat, _, _ = _load_queries(args)
  vectors = np.load(os.path.join(args.index, "vectors.npy"), mmap_mode="r")
  searcher = BruteForceSearcher(vectors)
  t0 = time.time()
  ids, scores = [], []
  step = 2048
  for s in range(0, len(flat), step):
    i, sc = searcher.search_batched(flat[s : s + step], args.token_top_k)
    ids.append(i.astype(np.int32))
    scores.append(sc)
    _log(f"exact: {min(s + step, len(flat))}/{len(flat)} query tokens, {time.time() - t0:.0f} s")
  np.savez(out, ids=np.concatenate(ids), scores=np.concatenate(scores),
           seconds=time.time() - t0)  # fmt: skip


def _vm_rss_mib() -> float:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmRSS:"):
        return int(line.split()[1]) / 1024
  return 0.0


def _record(args, name: str, row: dict) -> None:
  row.update(stage=name, date=time.strftime("%Y-%m-%d %H:%M"), load=os.getloadavg())
  with open(os.path.join(args.work_dir, "results.jsonl"), "a") as f:
    f.write(json.dumps(row) + "\n")
  _log(f"{name}: {json.dumps(row)}")


def _compact_params(args):
  from xtr_jax.index.compact import CompactParams  # noqa: PLC0415

  return CompactParams(
    num_lists=args.num_lists or None, nprobe=args.nprobe[0],
    num_subspaces=args.num_subspaces, keep_vectors=True,
  )  # fmt: skip


def build(args) -> None:
  """A compact index over the source index's float16 vectors, read from disk (memory map)."""
  out = os.path.join(args.work_dir, "compact")
  if os.path.exists(os.path.join(out, "manifest.json")):
    return
  import logging  # noqa: PLC0415

  from xtr_jax.index import store  # noqa: PLC0415

  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
  src = store.read_manifest(args.index)
  vectors = np.load(os.path.join(args.index, "vectors.npy"), mmap_mode="r")
  t2p = np.load(os.path.join(args.index, "token_to_passage.npy"))
  with open(os.path.join(args.index, "passage_ids.json")) as f:
    pids = json.load(f)
  keep = ("checkpoint", "vocabulary", "pooling", "corpus", "encode")
  rss0, t0 = _vm_rss_mib(), time.time()
  manifest = store.build_index(
    out, vectors, t2p, pids, model_fingerprint=src["model_fingerprint"],
    vocabulary_fingerprint=src.get("vocabulary_fingerprint", ""), backend="compact",
    compact_params=_compact_params(args), metadata={k: src[k] for k in keep if k in src},
  )  # fmt: skip
  _record(args, "build", {
    "build_s": round(time.time() - t0, 1), "peak_rss_mib": round(_peak_rss_mib()),
    "rss_before_mib": round(rss0), "bytes_per_token": manifest["bytes_per_token"],
    "compact": manifest["compact"], "num_tokens": manifest["num_tokens"],
  })  # fmt: skip


def _write_trec(path: str, qids, results, pids) -> None:
  from xtr_jax.index.cli import format_trec  # noqa: PLC0415

  runs = [[(pids[r], float(s)) for r, s in zip(rows, scores)] for rows, scores in results]
  with open(path, "w") as f:
    f.write(format_trec(qids, runs, "compact_bench"))


def _xtr_all(t2p, ids, scores, lens, k: int, batch: int):
  from xtr_jax.index.xtr_search import xtr_search_batch  # noqa: PLC0415

  rows = np.where(ids >= 0, t2p[np.maximum(ids, 0)], -1)
  out, at = [], 0
  for s in range(0, len(lens), batch):
    n = int(lens[s : s + batch].sum())
    out += xtr_search_batch(rows[at : at + n], scores[at : at + n], lens[s : s + batch], k)
    at += n
  return out


def _token_recall(ids: np.ndarray, exact: np.ndarray) -> float:
  hit = [np.intersect1d(a[a >= 0], b[b >= 0]).size / max((b >= 0).sum(), 1)
         for a, b in zip(ids, exact)]  # fmt: skip
  return float(np.mean(hit))


def _top_rows(res, k: int = 100) -> np.ndarray:
  out = np.full((len(res), k), -1, np.int64)
  for i, (rows, _) in enumerate(res):
    out[i, : min(k, len(rows))] = rows[:k]
  return out


def _agreement(args, res) -> float:
  """Mean share of the exact-XTR top-100 passages that ``res`` also returns in its top 100."""
  exact = np.load(os.path.join(args.work_dir, "exact_top100.npy"))
  got = _top_rows(res)
  return float(np.mean([np.intersect1d(a[a >= 0], b[b >= 0]).size / max((b >= 0).sum(), 1)
                        for a, b in zip(got, exact)]))  # fmt: skip


def search(args) -> None:
  """Compact search of all queries at each nprobe: TREC runs, queries/s, resident memory."""
  from xtr_jax.index import store  # noqa: PLC0415

  flat, lens, qids = _load_queries(args)
  exact = np.load(os.path.join(args.work_dir, f"exact_k{args.token_top_k}.npz"))
  src_t2p = np.load(os.path.join(args.index, "token_to_passage.npy"))
  with open(os.path.join(args.index, "passage_ids.json")) as f:
    pids = json.load(f)
  trec = os.path.join(args.work_dir, "exact_xtr.trec")
  if not os.path.exists(os.path.join(args.work_dir, "exact_top100.npy")):
    t0 = time.time()
    res = _xtr_all(src_t2p, exact["ids"], exact["scores"], lens, 100, args.batch)
    np.save(os.path.join(args.work_dir, "exact_top100.npy"), _top_rows(res))
    _write_trec(trec, qids, res, pids)
    _record(args, "exact", {"system": "exact brute-force XTR", "trec": trec,
                            "token_search_s": float(exact["seconds"]),
                            "aggregate_s": round(time.time() - t0, 2)})  # fmt: skip
  rss0 = _vm_rss_mib()
  index = store.load_index(os.path.join(args.work_dir, "compact"))
  rss1 = _vm_rss_mib()
  searcher = index.searchers[0][1]
  order = np.load(os.path.join(args.work_dir, "compact", "token_order.npy"))
  n = index.manifest["num_tokens"]
  # Exact ids are source token ids; the compact index stores token order[i] at position i.
  exact_pos = np.full_like(exact["ids"], -1)
  inv = np.empty((n,), np.int64)
  inv[order] = np.arange(n)
  exact_pos = np.where(exact["ids"] >= 0, inv[np.maximum(exact["ids"], 0)], -1)
  from xtr_jax.index.brute_force import rescore_candidates  # noqa: PLC0415

  k = args.token_top_k
  for nprobe, rescore in [(p, r) for r in args.rescore for p in args.nprobe]:
    searcher.nprobe = nprobe
    t0 = time.time()
    ids, scores = [], []
    step = int(lens[: args.batch].sum()) or 1
    at = 0
    for s in range(0, len(lens), args.batch):  # the Retriever's batching: 32 queries
      m = int(lens[s : s + args.batch].sum())
      x = flat[at : at + m]
      if rescore:  # SearchParams.compact_rescore: exact scores from the on-disk vectors
        cand, _ = index.search_tokens(x, rescore)
        i, sc = rescore_candidates(x, cand, index.vectors, k)
      else:
        i, sc = index.search_tokens(x, k)
      ids.append(i)
      scores.append(sc)
      at += m
    t_tok = time.time() - t0
    ids, scores = np.concatenate(ids), np.concatenate(scores)
    res = _xtr_all(index.token_to_passage, ids, scores, lens, 100, args.batch)
    total = time.time() - t0
    tag = f"compact_nprobe{nprobe}" + (f"_rescore{rescore}" if rescore else "")
    trec = os.path.join(args.work_dir, f"{tag}.trec")
    _write_trec(trec, qids, res, index.passage_ids)
    _record(args, "search", {
      "system": "compact", "nprobe": nprobe, "rescore": rescore, "trec": trec, "token_search_s": round(t_tok, 2),
      "total_s": round(total, 2), "queries_per_s": round(len(lens) / total, 2),
      "token_recall": round(_token_recall(ids, exact_pos), 4), "queries": len(lens),
      "top100_vs_exact_xtr": round(_agreement(args, res), 4),
      "query_tokens": int(lens.sum()), "rss_index_mib": round(rss1 - rss0),
      "resident_bytes_searcher": searcher.resident_bytes,
      "resident_bytes_per_token": round((searcher.resident_bytes + index.token_to_passage.nbytes) / n, 2),
      "batch_tokens": step,
    })  # fmt: skip


def _timed_token_search(fn, flat, lens, batch: int):
  """(ids, scores, seconds) of ``fn(query token block)`` over batches of ``batch`` queries."""
  ids, scores, at = [], [], 0
  t0 = time.time()
  for s in range(0, len(lens), batch):
    m = int(lens[s : s + batch].sum())
    i, sc = fn(flat[at : at + m])
    ids.append(np.asarray(i))
    scores.append(np.asarray(sc, np.float32))
    at += m
  return np.concatenate(ids), np.concatenate(scores), time.time() - t0


def _peer_row(args, name, settings, ids, scores, t_tok, lens, qids, t2p, pids, extra):
  t0 = time.time()
  res = _xtr_all(t2p, ids, scores, lens, 100, args.batch)
  total = t_tok + time.time() - t0
  trec = os.path.join(args.work_dir, f"{name}.trec")
  _write_trec(trec, qids, res, pids)
  exact = np.load(os.path.join(args.work_dir, f"exact_k{args.token_top_k}.npz"))
  _record(args, "search", {
    "system": name, "settings": settings, "trec": trec, "token_search_s": round(t_tok, 2),
    "total_s": round(total, 2), "queries_per_s": round(len(lens) / total, 2),
    "token_recall": round(_token_recall(ids, exact["ids"]), 4),
    "top100_vs_exact_xtr": round(_agreement(args, res), 4), **extra,
  })  # fmt: skip


def faiss_peer(args) -> None:
  """faiss IVF-PQ (same lists, 32 one-byte codes, residual encoding) + the same XTR."""
  import faiss  # noqa: PLC0415

  faiss.omp_set_num_threads(2)
  flat, lens, qids = _load_queries(args)
  vectors = np.load(os.path.join(args.index, "vectors.npy"), mmap_mode="r")
  t2p = np.load(os.path.join(args.index, "token_to_passage.npy"))
  with open(os.path.join(args.index, "passage_ids.json")) as f:
    pids = json.load(f)
  n, d = vectors.shape
  lists = args.num_lists or round(np.sqrt(n))
  t0 = time.time()
  index = faiss.IndexIVFPQ(faiss.IndexFlatIP(d), d, lists, 32, 8, faiss.METRIC_INNER_PRODUCT)
  index.do_polysemous_training = False
  index.cp.niter = 10
  index.pq.cp.niter = 10
  rng = np.random.default_rng(0)
  sample = np.sort(rng.choice(n, size=min(250_000, n), replace=False))
  index.train(np.asarray(vectors[sample], np.float32))
  for s in range(0, n, 262_144):
    index.add(np.asarray(vectors[s : s + 262_144], np.float32))
  build = time.time() - t0
  size = faiss.serialize_index(index).nbytes
  for nprobe in args.nprobe:
    index.nprobe = nprobe
    ids, scores, t_tok = _timed_token_search(
      lambda x: index.search(x, args.token_top_k)[::-1], flat, lens, args.batch
    )
    _peer_row(args, f"faiss_nprobe{nprobe}", f"IVF{lists},PQ32x8, nprobe={nprobe}", ids, scores,
              t_tok, lens, qids, t2p, pids,
              {"build_s": round(build, 1), "bytes_per_token": round(size / n + 4, 2),
               "peak_rss_mib": round(_peak_rss_mib())})  # fmt: skip


def scann_default(args) -> None:
  """The project's default index on the same vectors: ScaNN AH + float16 re-scoring of 2000."""
  from xtr_jax.index import store  # noqa: PLC0415
  from xtr_jax.index.brute_force import rescore_candidates  # noqa: PLC0415

  flat, lens, qids = _load_queries(args)
  index = store.load_index(args.index)
  k = args.token_top_k
  m = index.manifest
  for rescore in (0, 2000):

    def fn(x, rescore=rescore):
      if not rescore:
        return index.search_tokens(x, k)
      cand, _ = index.search_tokens(x, rescore)
      return rescore_candidates(x, cand, index.vectors, k)

    ids, scores, t_tok = _timed_token_search(fn, flat, lens, args.batch)
    bpt = m["bytes_per_token"]["scann"] + 4 + (256 if rescore else 0)
    _peer_row(args, f"scann_rescore{rescore}", f"ScaNN {m['scann']['num_leaves']} leaves, "
              f"{m['scann']['num_leaves_to_search']} searched, rescore_candidates={rescore}",
              ids, scores, t_tok, lens, qids, index.token_to_passage, index.passage_ids,
              {"build_s": m["build_seconds"], "bytes_per_token": round(bpt, 2),
               "peak_rss_mib": round(_peak_rss_mib())})  # fmt: skip


def peers(args) -> None:
  """fast-plaid / xtr-warp-rs through benchmarks/search_peers.py in their own venv."""
  flat, lens, qids = _load_queries(args)
  data = os.path.join(args.work_dir, "peers_data")
  os.makedirs(os.path.join(data, "docs"), exist_ok=True)
  t2p = np.load(os.path.join(args.index, "token_to_passage.npy"))
  with open(os.path.join(args.index, "passage_ids.json")) as f:
    pids = json.load(f)
  db = os.path.join(data, "docs", "db.npy")
  if not os.path.exists(db):
    os.symlink(os.path.abspath(os.path.join(args.index, "vectors.npy")), db)
  np.save(os.path.join(data, "docs", "db.doclens.npy"), np.bincount(t2p, minlength=len(pids)))
  q = np.zeros((len(lens), int(lens.max()), flat.shape[1]), np.float32)
  at = 0
  for i, n in enumerate(lens):
    q[i, :n] = flat[at : at + n]
    at += n
  np.save(os.path.join(data, "queries.npy"), q)
  np.save(os.path.join(data, "qlens.npy"), lens)
  for engine in args.peers:
    out = os.path.join(args.work_dir, f"peer_{engine}.jsonl")
    if os.path.exists(out):
      os.remove(out)
    cmd = [args.peers_python, os.path.join(os.path.dirname(__file__), "search_peers.py"),
           "--engine", engine, "--data", data, "--out", out, "--threads", "2"]  # fmt: skip
    if engine == "xtr_warp":
      cmd += ["--num_partitions", str(args.num_lists or round(np.sqrt(len(t2p))))]
    if engine == "fast_plaid":  # its CPU search is slow: the first N queries (not evaluated)
      cmd += ["--num_queries", str(args.plaid_queries)]
    t0 = time.time()
    try:
      proc = subprocess.run(cmd, timeout=args.peer_timeout, capture_output=True, text=True)
      err = proc.stderr.strip().splitlines()[-1:] if proc.returncode else []
    except subprocess.TimeoutExpired:
      err = [f"did not finish within {args.peer_timeout} s"]
    if err or not os.path.exists(out):
      _record(args, "peer", {"system": engine, "error": err, "wall_s": round(time.time() - t0)})
      continue
    with open(out) as f:
      for j, line in enumerate(f):
        row = json.loads(line)
        name = f"peer_{engine}_{j}"
        runs = [[(pids[d], float(-r)) for r, d in enumerate(ids) if d >= 0] for ids in row["ids"]]
        from xtr_jax.index.cli import format_trec  # noqa: PLC0415

        suffix = ".trec" if len(runs) == len(qids) else ".partial"  # eval needs all queries
        with open(os.path.join(args.work_dir, name + suffix), "w") as g:
          g.write(format_trec(qids[: len(runs)], runs, engine))
        n = len(runs)
        agree = np.load(os.path.join(args.work_dir, "exact_top100.npy"))[:n]
        got = np.full((n, 100), -1, np.int64)
        for i, ids in enumerate(row["ids"]):
          got[i, : len(ids[:100])] = ids[:100]
        overlap = np.mean([np.intersect1d(a[a >= 0], b[b >= 0]).size / max((b >= 0).sum(), 1)
                           for a, b in zip(got, agree)])  # fmt: skip
        _record(args, "search", {
          "top100_vs_exact_xtr": round(float(overlap), 4),
          "system": name, "settings": row["settings"], "build_s": round(row["build_s"], 1),
          "bytes_per_token": round(row["index_bytes"] / len(t2p), 2),
          "queries_per_s": round(n / row["search_s"], 2), "queries": n,
          "versions": row.get("versions"),
        })  # fmt: skip


def synthetic(args) -> None:
  """A source "index" of N synthetic token vectors (benchmarks/search.py's generator: Zipfian
  token clusters in topical passages) and its queries, in ``--index`` / ``--work_dir``."""
  import importlib.util  # noqa: PLC0415

  if os.path.exists(os.path.join(args.index, "manifest.json")):
    return
  spec = importlib.util.spec_from_file_location(
    "search_bench", os.path.join(os.path.dirname(__file__), "search.py")
  )
  bench = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(bench)
  os.makedirs(args.index, exist_ok=True)
  n = args.num_vectors
  mm = np.lib.format.open_memmap(
    os.path.join(args.index, "vectors.npy"), "w+", np.float16, (n, 128)
  )
  doclens, centres, topics, weights = bench.synthetic_passages(n, 128, 1.2, mm)
  mm.flush()
  del mm
  np.save(os.path.join(args.index, "token_to_passage.npy"),
          np.repeat(np.arange(len(doclens), dtype=np.int32), doclens))  # fmt: skip
  with open(os.path.join(args.index, "passage_ids.json"), "w") as f:
    json.dump([f"s{i}" for i in range(len(doclens))], f)
  rng = np.random.default_rng(12345)  # queries as search.py's: 8-24 tokens about a passage
  qlens = rng.integers(8, 25, args.num_queries)
  flat = []
  for i in range(args.num_queries):
    p = rng.integers(len(doclens))
    c = np.where(rng.random(qlens[i]) < 0.7, topics[p, rng.integers(0, 8, qlens[i])],
                 rng.choice(len(centres), qlens[i], p=weights))  # fmt: skip
    x = centres[c] + rng.normal(scale=1.2 / np.sqrt(128), size=(qlens[i], 128))
    flat.append((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))
  np.savez(os.path.join(args.work_dir, "queries.npz"), flat=np.concatenate(flat), lens=qlens,
           qids=np.asarray([f"q{i}" for i in range(args.num_queries)]))  # fmt: skip
  manifest = {"format": "xtr_jax.token_index", "version": 1, "model_fingerprint": "synthetic",
              "num_tokens": n, "num_passages": len(doclens), "proj_dim": 128}  # fmt: skip
  with open(os.path.join(args.index, "manifest.json"), "w") as f:
    json.dump(manifest, f)


def evaluate(args) -> None:
  """``xtr-jax evaluate`` (as benchmarks/me5_xor_mini.sh calls it) of every TREC run here."""
  data = os.path.join(args.data, "xor_mini")
  punkt = args.punkt_params
  for name in sorted(os.listdir(args.work_dir)):
    if not name.endswith(".trec") or os.path.exists(
      os.path.join(args.work_dir, name[:-5] + "_eval.json")
    ):
      continue
    cmd = [os.path.join(os.path.dirname(sys.executable), "xtr-jax"), "evaluate",
           "--run", os.path.join(args.work_dir, name), "--queries", os.path.join(data, "dev.jsonl"),
           "--qrels", os.path.join(data, "dev.qrels"), "--corpus", os.path.join(data, "corpus.tsv"),
           "--punkt_params", punkt, "--output", os.path.join(args.work_dir, name[:-5] + "_eval")]  # fmt: skip
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
  rows = {}
  for name in sorted(os.listdir(args.work_dir)):
    if name.endswith("_eval.json"):
      with open(os.path.join(args.work_dir, name)) as f:
        m = json.load(f)["metrics"]
      rows[name[: -len("_eval.json")]] = {
        k: round(m[k]["macro"], 2) for k in ("Recall@20", "R@2kt", "MRR@10", "Recall@100")
      }
  _record(args, "eval", {"macro": rows})


def report(args) -> None:
  """Markdown table of this work dir's results.jsonl (the last row per system wins)."""
  rows, build_row, evals = {}, None, {}
  with open(os.path.join(args.work_dir, "results.jsonl")) as f:
    for line in f:
      r = json.loads(line)
      if r["stage"] == "build":
        build_row = r
      elif r["stage"] == "eval":
        evals = r["macro"]
      elif "system" in r:
        key = os.path.basename(r.get("trec", r["system"]))
        rows[key] = r
  b = build_row or {}
  print(
    "| system | settings | bytes/token | build s | peak RSS MiB | queries/s | token recall "
    "vs exact | top-100 vs exact XTR | Recall@20 | R@2kt | MRR@10 |"
  )
  print("|---|---|---|---|---|---|---|---|---|---|---|")
  for key, r in rows.items():
    trec = os.path.basename(r.get("trec", key + ".trec"))[: -len(".trec")]
    e = evals.get(trec, {})
    if r["system"] == "compact":
      settings = f"{b.get('compact', {}).get('num_lists')} lists, PQ32x8, nprobe={r['nprobe']}"
      if r.get("rescore"):
        settings += f", re-scored {r['rescore']} from disk (+256 B/token on disk)"
      bpt, build_s, rss = (
        b.get("bytes_per_token", {}).get("resident"),
        b.get("build_s"),
        b.get("peak_rss_mib"),
      )
    else:
      settings = r.get("settings", "")
      bpt, build_s, rss = r.get("bytes_per_token"), r.get("build_s"), r.get("peak_rss_mib")
    cells = [
      r["system"],
      settings,
      bpt,
      build_s,
      rss,
      r.get("queries_per_s"),
      r.get("token_recall"),
      r.get("top100_vs_exact_xtr"),
      e.get("Recall@20"),
      e.get("R@2kt"),
      e.get("MRR@10"),
    ]
    print("| " + " | ".join("" if c is None else str(c) for c in cells) + " |")


def _run_stage(args, stage: str) -> None:
  """Each stage in its own process, so its peak memory is its own."""
  argv = [sys.executable, __file__, "--only", stage] + [a for a in sys.argv[1:] if a not in STAGES]
  subprocess.run(argv, check=True)


STAGES = {"queries": encode_queries, "exact": exact_tokens, "build": build, "search": search,
          "faiss": faiss_peer, "scann": scann_default, "peers": peers, "eval": evaluate, "synthetic": synthetic,
          "report": report}  # fmt: skip


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("stages", nargs="*", help=f"Stages, in order: {' '.join(STAGES)}.")
  p.add_argument("--only", choices=list(STAGES), help=argparse.SUPPRESS)
  p.add_argument("--index", default="/tmp/me5run/index_me5_xtr_ft", help="Source token index.")
  p.add_argument("--work_dir", default="/tmp/compact_bench")
  p.add_argument("--data", default=DEFAULT_DATA)
  p.add_argument("--punkt_params", default="/tmp/me5run/punkt_xor_mini.json")
  p.add_argument("--token_top_k", type=int, default=1000)
  p.add_argument("--batch", type=int, default=32, help="Queries per search call.")
  p.add_argument("--nprobe", type=int, nargs="+", default=[64], help="Lists per query token.")
  p.add_argument("--num_lists", type=int, default=0, help="0: sqrt(num tokens).")
  p.add_argument("--rescore", type=int, nargs="+", default=[0], help="search: 0 or candidates "
                 "re-scored from the on-disk float16 vectors (0: codes only).")  # fmt: skip
  p.add_argument("--num_subspaces", type=int, default=32)
  p.add_argument("--peers", nargs="*", default=["xtr_warp", "fast_plaid"])
  p.add_argument("--peers_python", default="/tmp/peers/bin/python")
  p.add_argument("--peer_timeout", type=int, default=900)
  p.add_argument("--plaid_queries", type=int, default=50)
  p.add_argument("--num_vectors", type=int, default=10_000_000, help="synthetic: N tokens.")
  p.add_argument("--num_queries", type=int, default=100, help="synthetic: queries.")
  args = p.parse_args()
  os.makedirs(args.work_dir, exist_ok=True)
  unknown = [s for s in args.stages if s not in STAGES]
  if unknown:
    p.error(f"unknown stages {unknown}; expected some of {list(STAGES)}")
  if args.only:
    STAGES[args.only](args)
    _log(f"stage {args.only} done")
    return
  for stage in args.stages:
    _run_stage(args, stage)


if __name__ == "__main__":
  sys.exit(main())
