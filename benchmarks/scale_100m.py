"""Sharded token index at 100M-token scale on one machine, under a memory bound.

Stand-in corpus: clustered unit vectors (float16, streamed to disk shard by shard), ~150
tokens per passage. Each shard is generated and built (ScaNN tree + AH, no reorder) by a
worker process, then the stand-in shard file is deleted; search runs shard by shard (one
shard loaded at a time, as one machine per shard would) and merges per-shard top-k' exactly.

  nohup .venv/bin/python benchmarks/scale_100m.py --root /work/scale_tmp \
    --num_tokens 100000000 --shard_tokens 2000000 --workers 2 > results/scale_100m.log 2>&1 &

Resumable: finished shards (``shard_XXXXX/manifest.json``) are skipped on rerun.
"""

from __future__ import annotations

import argparse
import concurrent.futures
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


def peak_rss_gib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def build_shard(args) -> dict:
  """Generates shard ``i`` (streaming float16 to disk), builds its index, deletes the stand-in."""
  from xtr_jax.index import store  # noqa: PLC0415
  from xtr_jax.index.scann_index import ScannParams  # noqa: PLC0415
  from xtr_jax.scale.sharded_index import shard_dir_name  # noqa: PLC0415

  root, i, n, leaves, sample = args
  out = os.path.join(root, "index", shard_dir_name(i))
  stats_path = os.path.join(root, "stats", f"{i:05d}.json")
  if os.path.isfile(os.path.join(out, "manifest.json")) and os.path.isfile(stats_path):
    with open(stats_path) as f:
      return json.load(f)
  rng = np.random.default_rng(1000 + i)
  c = centers()
  t0 = time.time()
  standin = os.path.join(root, "standin", f"vectors_{i:05d}.npy")
  os.makedirs(os.path.dirname(standin), exist_ok=True)
  mm = np.lib.format.open_memmap(standin + ".tmp.npy", "w+", np.float16, (n, DIM))
  for s in range(0, n, CHUNK):
    mm[s : s + CHUNK] = clustered(rng, min(CHUNK, n - s), c).astype(np.float16)
  mm.flush()
  del mm
  os.replace(standin + ".tmp.npy", standin)
  lengths = rng.integers(100, 201, n // 100 + 1)  # ~150 tokens per passage
  ends = np.cumsum(lengths)
  num_p = int(np.searchsorted(ends, n, side="left")) + 1
  t2p = np.repeat(np.arange(num_p, dtype=np.int32), lengths[:num_p])[:n]
  pids = [f"s{i:05d}p{j:07d}" for j in range(num_p)]
  gen_s = time.time() - t0
  t1 = time.time()
  vectors = np.load(standin, mmap_mode="r")
  manifest = store.build_index(
    out,
    vectors,
    t2p,
    pids,
    model_fingerprint="synthetic",
    backend="scann",
    scann_params=ScannParams(max_leaves=leaves, training_sample_size=sample),
    overwrite=True,
  )
  build_s = time.time() - t1
  del vectors
  os.remove(standin)
  stats = {
    "shard": i,
    "tokens": n,
    "passages": num_p,
    "generate_s": round(gen_s, 1),
    "build_s": round(build_s, 1),
    "peak_rss_gib": round(peak_rss_gib(), 3),
    "scann_bytes_per_token": manifest["bytes_per_token"]["scann"],
    "num_leaves": manifest["scann"]["num_leaves"],
  }
  os.makedirs(os.path.dirname(stats_path), exist_ok=True)
  with open(stats_path, "w") as f:
    json.dump(stats, f)
  print(json.dumps(stats), flush=True)
  return stats


def merge_rows(a_ids, a_s, b_ids, b_s, k):
  """Vectorised exact top-k merge (score desc, then id asc), as ``brute_force.merge_top_k``."""
  ids = np.concatenate([a_ids, b_ids], 1)
  s = np.concatenate([a_s, b_s], 1)
  order = np.lexsort((ids, -s.astype(np.float64)), axis=1)[:, :k]
  return np.take_along_axis(ids, order, 1), np.take_along_axis(s, order, 1)


def search(root: str, num_queries: int, qlen: int, token_k: int, k: int) -> dict:
  from xtr_jax.index import store  # noqa: PLC0415
  from xtr_jax.index.brute_force import BruteForceSearcher  # noqa: PLC0415
  from xtr_jax.index.xtr_search import xtr_search  # noqa: PLC0415
  from xtr_jax.scale.sharded_index import write_sharded_manifest  # noqa: PLC0415

  index_root = os.path.join(root, "index")
  names = sorted(d for d in os.listdir(index_root) if d.startswith("shard_"))
  names = [d for d in names if os.path.isfile(os.path.join(index_root, d, "manifest.json"))]
  top = write_sharded_manifest(index_root, names)
  q = clustered(np.random.default_rng(7), num_queries * qlen, centers(), noise=0.8)
  ids = scores = None
  per_shard_s, t2p_parts, tok_off, pas_off, recall = [], [], 0, 0, None
  for n, s in enumerate(top["shards"]):
    t0 = time.time()
    idx = store.load_index(os.path.join(index_root, s["dir"]))
    load_s = time.time() - t0
    t0 = time.time()
    i, sc = idx.search_tokens(q, token_k)
    per_shard_s.append({"load_s": round(load_s, 2), "search_s": round(time.time() - t0, 2)})
    if n == 0:  # token recall of AH search against exact search, on one shard
      sub = slice(0, 320)
      ei, _ = BruteForceSearcher(idx.vectors).search_batched(q[sub], token_k)
      recall = float(np.mean([len(set(a) & set(b)) / token_k for a, b in zip(i[sub], ei)]))
    i = np.where(i >= 0, i + tok_off, -1)
    ids, scores = (i, sc) if ids is None else merge_rows(ids, scores, i, sc, token_k)
    t2p_parts.append(idx.token_to_passage.astype(np.int64) + pas_off)
    tok_off += s["num_tokens"]
    pas_off += s["num_passages"]
    del idx
  t0 = time.time()
  t2p = np.concatenate(t2p_parts)
  rows = np.where(ids >= 0, t2p[np.maximum(ids, 0)], -1).reshape(num_queries, qlen, -1)
  sc = scores.reshape(num_queries, qlen, -1)
  results = [xtr_search(rows[j], sc[j], np.ones(qlen, bool), k) for j in range(num_queries)]
  aggregate_s = time.time() - t0
  search_total = sum(p["search_s"] for p in per_shard_s)
  return {
    "shards": len(names),
    "tokens": top["num_tokens"],
    "passages": top["num_passages"],
    "queries": num_queries,
    "query_tokens": qlen,
    "token_k": token_k,
    "k": k,
    "search_s_total_one_machine": round(search_total, 1),
    "search_s_max_shard": max(p["search_s"] for p in per_shard_s),
    "merge_and_xtr_aggregate_s": round(aggregate_s, 1),
    "qps_one_machine_sequential_shards": round(num_queries / (search_total + aggregate_s), 2),
    "qps_one_machine_per_shard": round(
      num_queries / (max(p["search_s"] for p in per_shard_s) + aggregate_s), 2
    ),
    "token_recall_at_kprime_shard0_vs_exact": round(recall, 4),
    "top1_nonempty": sum(len(r[0]) > 0 for r in results),
    "search_peak_rss_gib": round(peak_rss_gib(), 3),
    "per_shard": per_shard_s,
  }


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument("--root", required=True)
  ap.add_argument("--num_tokens", type=int, default=100_000_000)
  ap.add_argument("--shard_tokens", type=int, default=2_000_000)
  ap.add_argument("--workers", type=int, default=2)
  ap.add_argument("--max_leaves", type=int, default=2000)
  ap.add_argument("--training_sample", type=int, default=250_000)
  ap.add_argument("--num_queries", type=int, default=300)
  ap.add_argument("--query_len", type=int, default=32)
  ap.add_argument("--token_k", type=int, default=1000)
  ap.add_argument("--skip_build", action="store_true")
  args = ap.parse_args()
  os.makedirs(args.root, exist_ok=True)
  jobs = [
    (
      args.root,
      i,
      min(args.shard_tokens, args.num_tokens - s),
      args.max_leaves,
      args.training_sample,
    )
    for i, s in enumerate(range(0, args.num_tokens, args.shard_tokens))
  ]
  t0 = time.time()
  stats = []
  if not args.skip_build:
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
      args.workers, mp_context=ctx, max_tasks_per_child=1
    ) as pool:
      stats = list(pool.map(build_shard, jobs))
  wall = time.time() - t0
  report = {"build_wall_s": round(wall, 1), "workers": args.workers, "build": stats}
  if stats:
    report["build_peak_rss_gib_max_worker"] = max(s["peak_rss_gib"] for s in stats)
  report["search"] = search(args.root, args.num_queries, args.query_len, args.token_k, 100)
  children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
  report["peak_rss_gib_any_child"] = round(children, 3)
  report["index_disk_bytes"] = sum(
    os.path.getsize(os.path.join(d, f))
    for d, _, fs in os.walk(os.path.join(args.root, "index"))
    for f in fs
  )
  out = os.path.join(args.root, "report.json")
  with open(out, "w") as f:
    json.dump(report, f, indent=1)
  print(json.dumps({k: v for k, v in report.items() if k != "build"}, indent=1), flush=True)


if __name__ == "__main__":
  main()
