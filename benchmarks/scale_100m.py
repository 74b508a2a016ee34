"""Sharded token index at 100M-token scale on one machine, under a memory bound.

Stand-in corpus: clustered unit vectors (4096 random centres + Gaussian noise, renormalised,
float16), ~150 tokens per passage, generated per shard from a fixed seed (``1000 + shard``) so
any shard can be regenerated exactly later (for exact-search recall) without keeping it on disk.
Each shard is generated and built with ``store.build_index`` (ScaNN tree + AH, no reorder) in
its own spawned worker process (one task per process, so memory is returned and the worker's
``getrusage`` is the shard's CPU time). Shards run one after another (``--workers 1``), meant
to be started with ``nice -n 19`` so it only soaks idle CPU on a shared machine.

``--drop_vectors``: after a shard is built its ``vectors.npy`` (float16, 256 B/token) is
replaced by a sparse all-zero placeholder of the same shape (no disk blocks), because the
100M-token float16 table (25.6 GB) does not fit the disk bound. Such an index still loads and
searches with ScaNN; exact MaxSim / brute force over it would be meaningless. Recall is
measured against exact search over regenerated stand-in vectors instead.

Search: one shard loaded at a time (as one machine per shard would), ``--num_queries`` x
``--query_len`` query tokens, top-k' per shard, exact merge across shards, XTR scoring.
Recall: for the first ``--recall_shards`` shards, the merged ScaNN top-k' over those shards
vs exact top-k' over the same shards (regenerated vectors, float32 dot products).

  nohup nice -n 19 .venv/bin/python benchmarks/scale_100m.py --root /work/scale_tmp/run \
    --num_tokens 100000000 --shard_tokens 2000000 --drop_vectors > results/scale_100m.log 2>&1 &

Resumable: finished shards (``stats/XXXXX.json`` written after the index) are skipped on rerun.
``--deadline HH:MM`` (UTC) stops launching shards that would not finish in time (clean stop).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import multiprocessing
import os
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DIM = 128
NUM_CENTERS = 4096
CHUNK = 262_144


def centers() -> np.ndarray:
  c = np.random.default_rng(12345).standard_normal((NUM_CENTERS, DIM)).astype(np.float32)
  return c / np.linalg.norm(c, axis=1, keepdims=True)


def clustered(rng: np.random.Generator, n: int, c: np.ndarray, noise: float = 0.6):
  x = c[rng.integers(0, NUM_CENTERS, n)] + noise / np.sqrt(DIM) * rng.standard_normal(
    (n, DIM), dtype=np.float32
  )
  return x / np.linalg.norm(x, axis=1, keepdims=True)


NOISE_BANK = 131_072


def noise_bank() -> np.ndarray:
  """Gaussian noise vectors shared by all shards (sampling fresh noise per token costs ~7 us
  of CPU per token, more than the index build we measure; 4096 centres x 131k noise vectors
  give 537M distinct tokens)."""
  rng = np.random.default_rng(54321)
  return 0.6 / np.sqrt(DIM) * rng.standard_normal((NOISE_BANK, DIM), dtype=np.float32)


def standin_shard(i: int, n: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
  """Shard ``i``'s stand-in: float16 unit vectors [n, 128], token->passage rows, passage ids.

  Token = normalise(centre[a] + noise[b]) with random (a, b). Deterministic in (i, n): the
  same call later regenerates exactly the indexed vectors.
  """
  rng = np.random.default_rng(1000 + i)
  c, bank = centers(), noise_bank()
  vectors = np.empty((n, DIM), np.float16)
  for s in range(0, n, CHUNK):
    m = min(CHUNK, n - s)
    x = c[rng.integers(0, NUM_CENTERS, m)] + bank[rng.integers(0, NOISE_BANK, m)]
    vectors[s : s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
  lengths = rng.integers(100, 201, n // 100 + 1)  # ~150 tokens per passage
  ends = np.cumsum(lengths)
  num_p = int(np.searchsorted(ends, n, side="left")) + 1
  t2p = np.repeat(np.arange(num_p, dtype=np.int32), lengths[:num_p])[:n]
  pids = [f"s{i:05d}p{j:07d}" for j in range(num_p)]
  return vectors, t2p, pids


def peak_rss_gib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def cpu_s() -> float:
  r = resource.getrusage(resource.RUSAGE_SELF)
  return r.ru_utime + r.ru_stime


def disk_bytes(path: str) -> int:
  """Allocated bytes (st_blocks), so sparse placeholders count as what they occupy."""
  return sum(os.stat(os.path.join(d, f)).st_blocks * 512 for d, _, fs in os.walk(path) for f in fs)


def sparse_placeholder(path: str, shape: tuple[int, int]) -> None:
  """Replaces the .npy at ``path`` by an all-zero array of ``shape`` with no data blocks."""
  tmp = path + ".placeholder.npy"
  mm = np.lib.format.open_memmap(tmp, "w+", np.float16, shape)  # truncate-extends: a hole
  del mm
  os.replace(tmp, path)


def build_shard(args) -> dict:
  """Generates shard ``i`` in memory, builds its index; returns wall/CPU/memory stats."""
  from xtr_jax.index import store  # noqa: PLC0415
  from xtr_jax.index.scann_index import ScannParams  # noqa: PLC0415
  from xtr_jax.index.sharded_index import shard_dir_name  # noqa: PLC0415

  root, i, n, params, drop_vectors = args
  out = os.path.join(root, "index", shard_dir_name(i))
  stats_path = os.path.join(root, "stats", f"{i:05d}.json")
  if os.path.isfile(os.path.join(out, "manifest.json")) and os.path.isfile(stats_path):
    with open(stats_path) as f:
      return json.load(f)
  load0 = os.getloadavg()[0]
  t0, c0 = time.time(), cpu_s()
  vectors, t2p, pids = standin_shard(i, n)
  t1, c1 = time.time(), cpu_s()
  manifest = store.build_index(
    out,
    vectors,
    t2p,
    pids,
    model_fingerprint="synthetic",
    backend="scann",
    scann_params=ScannParams(**params),
    overwrite=True,
  )
  t2, c2 = time.time(), cpu_s()
  if drop_vectors:
    sparse_placeholder(os.path.join(out, "vectors.npy"), (n, DIM))
  stats = {
    "shard": i,
    "tokens": n,
    "passages": len(pids),
    "generate_wall_s": round(t1 - t0, 1),
    "generate_cpu_s": round(c1 - c0, 1),
    "build_wall_s": round(t2 - t1, 1),
    "build_cpu_s": round(c2 - c1, 1),
    "peak_rss_gib": round(peak_rss_gib(), 3),
    "scann_bytes_per_token": manifest["bytes_per_token"]["scann"],
    "disk_bytes": disk_bytes(out),
    "num_leaves": manifest["scann"]["num_leaves"],
    "loadavg_start_end": [round(load0, 1), round(os.getloadavg()[0], 1)],
    "finished_utc": datetime.datetime.now(datetime.UTC).strftime("%H:%M:%S"),
  }
  os.makedirs(os.path.dirname(stats_path), exist_ok=True)
  with open(stats_path + ".tmp", "w") as f:
    json.dump(stats, f)
  os.replace(stats_path + ".tmp", stats_path)
  return stats


def merge_rows(a_ids, a_s, b_ids, b_s, k):
  """Vectorised exact top-k merge (score desc, then id asc), as ``brute_force.merge_top_k``."""
  ids = np.concatenate([a_ids, b_ids], 1)
  s = np.concatenate([a_s, b_s], 1)
  order = np.lexsort((ids, -s.astype(np.float64)), axis=1)[:, :k]
  return np.take_along_axis(ids, order, 1), np.take_along_axis(s, order, 1)


def exact_top_k(q: np.ndarray, vectors: np.ndarray, k: int, offset: int, block: int = 65_536):
  """Exact float32 top-``k`` token ids (global: + ``offset``) and scores over ``vectors``.

  Blocks of ``block`` rows keep the score matrix small (Q x block float32)."""
  ids = scores = None
  for s in range(0, vectors.shape[0], block):
    sc = q @ vectors[s : s + block].astype(np.float32).T
    kk = min(k, sc.shape[1])
    part = np.argpartition(sc, sc.shape[1] - kk, axis=1)[:, -kk:]
    ps = np.take_along_axis(sc, part, 1)
    pi = part.astype(np.int64) + offset + s
    ids, scores = (pi, ps) if ids is None else merge_rows(ids, scores, pi, ps, k)
  return ids, scores


def passages(ids, scores, t2p, num_queries, qlen, k):
  from xtr_jax.index.xtr_search import xtr_search  # noqa: PLC0415

  rows = np.where(ids >= 0, t2p[np.maximum(ids, 0)], -1).reshape(num_queries, qlen, -1)
  sc = scores.reshape(num_queries, qlen, -1)
  return [xtr_search(rows[j], sc[j], np.ones(qlen, bool), k)[0] for j in range(num_queries)]


def overlap(a, b, k):
  return float(np.mean([len(set(x[:k].tolist()) & set(y[:k].tolist())) / k for x, y in zip(a, b)]))


def search(root: str, num_queries: int, qlen: int, token_k: int, k: int, recall_shards: int):
  from xtr_jax.index import store  # noqa: PLC0415
  from xtr_jax.index.sharded_index import write_sharded_manifest  # noqa: PLC0415

  index_root = os.path.join(root, "index")
  names = sorted(d for d in os.listdir(index_root) if d.startswith("shard_"))
  names = [d for d in names if os.path.isfile(os.path.join(index_root, d, "manifest.json"))]
  top = write_sharded_manifest(index_root, names)
  q = clustered(np.random.default_rng(7), num_queries * qlen, centers(), noise=0.8)
  ids = scores = sub = ex = None
  per_shard, t2p_parts, tok_off, pas_off = [], [], 0, 0
  for n, s in enumerate(top["shards"]):
    t0 = time.time()
    idx = store.load_index(os.path.join(index_root, s["dir"]))
    load_s = time.time() - t0
    t0, c0 = time.time(), cpu_s()
    i, sc = idx.search_tokens(q, token_k)
    per_shard.append(
      {
        "load_s": round(load_s, 2),
        "search_s": round(time.time() - t0, 2),
        "search_cpu_s": round(cpu_s() - c0, 2),
      }  # fmt: skip
    )
    i = np.where(i >= 0, i + tok_off, -1)
    ids, scores = (i, sc) if ids is None else merge_rows(ids, scores, i, sc, token_k)
    if n < recall_shards:  # the same merge restricted to the first shards, and exact search
      sub = (i, sc) if sub is None else merge_rows(*sub, i, sc, token_k)
      vecs, _, _ = standin_shard(int(s["dir"].split("_")[1]), s["num_tokens"])
      e = exact_top_k(q, vecs, token_k, tok_off)
      ex = e if ex is None else merge_rows(*ex, *e, token_k)
      del vecs
    t2p_parts.append(idx.token_to_passage.astype(np.int64) + pas_off)
    tok_off += s["num_tokens"]
    pas_off += s["num_passages"]
    print(json.dumps({"search_shard": n, **per_shard[-1]}), flush=True)
    del idx
  t2p = np.concatenate(t2p_parts)
  t0 = time.time()
  top_passages = passages(ids, scores, t2p, num_queries, qlen, k)
  aggregate_s = time.time() - t0
  search_total = sum(p["search_s"] for p in per_shard)
  r = min(recall_shards, len(names))
  rec = {}
  if r:
    rec = {
      "recall_shards": r,
      "recall_tokens": int(sum(s["num_tokens"] for s in top["shards"][:r])),
      "token_recall_at_kprime_vs_exact": round(overlap(sub[0], ex[0], token_k), 4),
      "token_recall_at_100_vs_exact": round(overlap(sub[0], ex[0], 100), 4),
      "passage_overlap_at_100_xtr_scann_vs_xtr_exact": round(
        overlap(
          passages(*sub, t2p, num_queries, qlen, k), passages(*ex, t2p, num_queries, qlen, k), k
        ),
        4,
      ),
    }
  return {
    "shards": len(names),
    "tokens": top["num_tokens"],
    "passages": top["num_passages"],
    "queries": num_queries,
    "query_tokens": qlen,
    "token_k": token_k,
    "k": k,
    "search_s_total_one_machine": round(search_total, 1),
    "search_cpu_s_total": round(sum(p["search_cpu_s"] for p in per_shard), 1),
    "search_s_max_shard": max(p["search_s"] for p in per_shard),
    "load_s_total": round(sum(p["load_s"] for p in per_shard), 1),
    "merge_and_xtr_aggregate_s": round(aggregate_s, 1),
    "qps_one_machine_sequential_shards": round(num_queries / (search_total + aggregate_s), 2),
    "qps_one_machine_per_shard": round(
      num_queries / (max(p["search_s"] for p in per_shard) + aggregate_s), 2
    ),
    **rec,
    "top1_nonempty": sum(len(x) > 0 for x in top_passages),
    "search_peak_rss_gib": round(peak_rss_gib(), 3),
    "per_shard": per_shard,
  }


def profile(n: int, configs: list[dict]) -> list[dict]:
  """Build cost and recall of ScaNN settings on ``n`` stand-in tokens (``builder.build`` only).

  A config: ``leaves`` (searched: leaves // 10), ``sample`` (tree training sample, 50k),
  ``ah`` (dims per AH block; None = no AH, brute force inside the searched leaves), ``thr``
  (anisotropic threshold, 0.1; "nan" = off), ``ah_sample`` (AH training sample, 100k),
  ``threads`` (ScaNN training threads). Recall: 320 query tokens vs exact float32 search.
  """
  from scann.scann_ops.py import scann_ops_pybind as ops  # noqa: PLC0415

  rng, c = np.random.default_rng(1000), centers()
  db = np.concatenate([clustered(rng, min(CHUNK, n - s), c) for s in range(0, n, CHUNK)])
  db = db.astype(np.float16).astype(np.float32)
  q = clustered(np.random.default_rng(7), 320, c, noise=0.8)
  scores = q @ db.T
  top = np.argpartition(-scores, 1000, axis=1)[:, :1000]
  top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), axis=1), 1)
  del scores
  rows = []
  for cfg in configs:
    leaves = cfg["leaves"]
    b = ops.builder(db, 10, "dot_product").tree(
      num_leaves=leaves,
      num_leaves_to_search=max(1, leaves // 10),
      training_sample_size=cfg.get("sample", 50_000),
    )
    if cfg.get("ah") is None:
      b = b.score_brute_force()
    else:
      b = b.score_ah(
        cfg["ah"],
        anisotropic_quantization_threshold=float(cfg.get("thr", 0.1)),
        training_sample_size=cfg.get("ah_sample", 100_000),
      )
    if cfg.get("threads"):
      b.set_n_training_threads(cfg["threads"])
    w0, c0 = time.time(), cpu_s()
    searcher = b.build()
    out = {"cfg": cfg, "build_wall_s": round(time.time() - w0, 1)}
    out["build_cpu_s"] = round(cpu_s() - c0, 1)
    for k in (100, 1000):
      ids, _ = searcher.search_batched(q, final_num_neighbors=k, leaves_to_search=leaves // 10)
      out[f"recall@{k}"] = round(overlap(np.asarray(ids), top[:, :k], k), 4)
    print(json.dumps(out), flush=True)
    rows.append(out)
    del searcher, b
  return rows


def _deadline(hhmm: str | None) -> float | None:
  if not hhmm:
    return None
  now = datetime.datetime.now(datetime.UTC)
  h, m = map(int, hhmm.split(":"))
  return now.replace(hour=h, minute=m, second=0, microsecond=0).timestamp()


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument("--root", required=True)
  ap.add_argument("--num_tokens", type=int, default=100_000_000)
  ap.add_argument("--shard_tokens", type=int, default=2_000_000)
  ap.add_argument("--workers", type=int, default=1)
  ap.add_argument("--max_leaves", type=int, default=1000)
  ap.add_argument("--leaves_to_search", type=int, default=100)
  ap.add_argument("--training_sample", type=int, default=50_000)
  ap.add_argument("--dims_per_block", type=int, default=2)
  ap.add_argument("--aniso_threshold", type=float, default=0.1)
  ap.add_argument("--num_threads", type=int, default=0)
  ap.add_argument("--drop_vectors", action="store_true")
  ap.add_argument("--deadline", default=None, help="HH:MM UTC: start no shard after it")
  ap.add_argument("--num_queries", type=int, default=100)
  ap.add_argument("--query_len", type=int, default=32)
  ap.add_argument("--token_k", type=int, default=1000)
  ap.add_argument("--recall_shards", type=int, default=2)
  ap.add_argument("--skip_build", action="store_true")
  ap.add_argument("--skip_search", action="store_true")
  ap.add_argument("--profile", default=None, help="JSON list of ScaNN configs (see profile)")
  ap.add_argument("--profile_tokens", type=int, default=1_000_000)
  args = ap.parse_args()
  os.makedirs(args.root, exist_ok=True)
  if args.profile:
    rows = profile(args.profile_tokens, json.loads(args.profile))
    with open(os.path.join(args.root, "profile.json"), "w") as f:
      json.dump(rows, f, indent=1)
    return
  params = {
    "max_leaves": args.max_leaves,
    "num_leaves_to_search": args.leaves_to_search,
    "training_sample_size": args.training_sample,
    "dimensions_per_block": args.dims_per_block,
    "anisotropic_quantization_threshold": args.aniso_threshold,
    "num_threads": args.num_threads,
  }
  jobs = [
    (args.root, i, min(args.shard_tokens, args.num_tokens - s), params, args.drop_vectors)
    for i, s in enumerate(range(0, args.num_tokens, args.shard_tokens))
  ]
  deadline = _deadline(args.deadline)
  t0 = time.time()
  stats, stopped = [], False
  if not args.skip_build:
    ctx = multiprocessing.get_context("spawn")  # no forked TF/ScaNN thread state
    with concurrent.futures.ProcessPoolExecutor(
      args.workers, mp_context=ctx, max_tasks_per_child=1
    ) as pool:
      pending: list = []
      for job in jobs:
        done_before = os.path.isfile(os.path.join(args.root, "stats", f"{job[1]:05d}.json"))
        fresh = [s for s in stats if not s.get("resumed")]
        est = max((s["generate_wall_s"] + s["build_wall_s"] for s in fresh), default=0)
        if not done_before and deadline and time.time() + est > deadline:
          stopped = True
          print(json.dumps({"stopped_at_shard": job[1], "reason": "deadline"}), flush=True)
          break
        pending.append(pool.submit(build_shard, job))
        if len(pending) >= args.workers:
          s = pending.pop(0).result()
          stats.append(dict(s, resumed=done_before) if args.workers == 1 else s)
          print(json.dumps(stats[-1]), flush=True)
      for f in pending:
        stats.append(f.result())
        print(json.dumps(stats[-1]), flush=True)
  wall = time.time() - t0
  if args.skip_build:  # the settings the shards were built with, not this run's flags
    with open(os.path.join(args.root, "index", "shard_00000", "manifest.json")) as f:
      params = json.load(f)["scann"]
  report = {"build_wall_s_this_run": round(wall, 1), "workers": args.workers, "params": params}
  report["stopped_by_deadline"] = stopped
  if stats:
    keys = ("tokens", "generate_wall_s", "generate_cpu_s", "build_wall_s", "build_cpu_s")
    report["build_totals"] = {k: round(sum(s[k] for s in stats), 1) for k in keys}
    report["build_totals"]["shards"] = len(stats)
    report["build_peak_rss_gib_max_worker"] = max(s["peak_rss_gib"] for s in stats)
  report["index_disk_bytes"] = disk_bytes(os.path.join(args.root, "index"))
  if not args.skip_search:
    report["search"] = search(
      args.root, args.num_queries, args.query_len, args.token_k, 100, args.recall_shards
    )
  out = os.path.join(args.root, "report.json")
  with open(out, "w") as f:
    json.dump({**report, "build": stats}, f, indent=1)
  print(json.dumps(report, indent=1), flush=True)


if __name__ == "__main__":
  main()
