"""Peer multi-vector engines (fast-plaid, xtr-warp-rs) for ``benchmarks/search.py``.

Runs with the interpreter of a separate venv (both pin torch 2.11; the project venv has
torch 2.13), so it imports nothing from xtr_jax. Inputs come as .npy files written by
``search.py``; the output is one JSON line per setting. Both engines index per-passage token
matrices and return passages, so they are compared at the passage level.

  DATA/docs/db.npy          float16 [num_tokens, d] token vectors, passage-major
  DATA/docs/db.doclens.npy  int64 [num_passages] tokens per passage (sums to num_tokens)
  DATA/queries.npy          float32 [num_queries, max_len, d], zero padded
  DATA/qlens.npy            int64 [num_queries] real query tokens

  /tmp/peers/bin/python benchmarks/search_peers.py --engine xtr_warp --data DATA --out OUT.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time

import numpy as np


def _dir_bytes(path: str) -> int:
  total = 0
  for root, _, files in os.walk(path):
    total += sum(os.path.getsize(os.path.join(root, f)) for f in files if not f.endswith(".lock"))
  return total


def _queries(data: str, num_queries: int = 0):
  import torch  # noqa: PLC0415

  q = np.load(os.path.join(data, "queries.npy"))
  lens = np.load(os.path.join(data, "qlens.npy"))
  n = min(len(q), num_queries or len(q))
  return [torch.from_numpy(np.ascontiguousarray(q[i, : lens[i]])) for i in range(n)]


def _ids(results, k: int) -> list[list[int]]:
  return [[int(d) for d, _ in r[:k]] + [-1] * (k - len(r[:k])) for r in results]


def run_fast_plaid(args, emit) -> None:
  import torch  # noqa: PLC0415
  from fast_plaid.search import FastPlaid  # noqa: PLC0415

  db = np.load(os.path.join(args.data, "docs", "db.npy"), mmap_mode="r")
  lens = np.load(os.path.join(args.data, "docs", "db.doclens.npy"))
  starts = np.concatenate([[0], np.cumsum(lens)])
  t0 = time.time()
  docs = [
    torch.from_numpy(np.asarray(db[starts[i] : starts[i + 1]], np.float32))
    for i in range(len(lens))
  ]
  index = FastPlaid(index=args.index, device="cpu")
  index.create(documents_embeddings=docs, nbits=4, seed=0)
  build = time.time() - t0
  del docs
  size = _dir_bytes(args.index)
  queries = _queries(args.data, args.num_queries)
  for probe, full in args.plaid_settings:
    t0 = time.time()
    res = index.search(queries, top_k=args.k, n_ivf_probe=probe, n_full_scores=full,
                       show_progress=False, n_processes=1)  # fmt: skip
    t = time.time() - t0
    emit(settings=f"nbits=4, n_ivf_probe={probe}, n_full_scores={full}", build_s=build,
         index_bytes=size, search_s=t, ids=_ids(res, args.k))  # fmt: skip


def run_xtr_warp(args, emit) -> None:
  from xtr_warp import XTRWarp  # noqa: PLC0415

  t0 = time.time()
  index = XTRWarp(index=args.index)
  # num_partitions None: xtr-warp's corpus-size heuristic (tens of thousands of centroids for
  # millions of tokens: hours of k-means on 2 cores); N: as many as our ScaNN leaves.
  index.create(embeddings_source=os.path.join(args.data, "docs"), device="cpu", nbits=4, seed=0,
               show_progress=False, num_partitions=args.num_partitions or None)  # fmt: skip
  build = time.time() - t0
  size = _dir_bytes(args.index)
  index.load(device="cpu")
  queries = _queries(args.data)
  for nprobe in (None, 64):
    t0 = time.time()
    res = index.search(queries, top_k=args.k, num_threads=args.threads, nprobe=nprobe,
                       show_progress=False)  # fmt: skip
    t = time.time() - t0
    parts = f", num_partitions={args.num_partitions}" if args.num_partitions else ""
    emit(settings=f"nbits=4{parts}, nprobe={nprobe or 'default'}", build_s=build, index_bytes=size,
         search_s=t, ids=_ids(res, args.k))  # fmt: skip


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("--engine", choices=["fast_plaid", "xtr_warp"], required=True)
  p.add_argument("--data", required=True)
  p.add_argument("--out", required=True)
  p.add_argument("--index", default="", help="Index directory (default DATA/index_ENGINE).")
  p.add_argument("--k", type=int, default=100)
  p.add_argument("--threads", type=int, default=2)
  p.add_argument("--num_queries", type=int, default=0, help="Search only the first N (0: all).")
  p.add_argument("--num_partitions", type=int, default=0, help="xtr-warp centroids (0: its own).")
  p.add_argument(
    "--plaid_settings", default="8:1024", help="fast-plaid n_ivf_probe:n_full_scores, comma list"
  )
  args = p.parse_args()
  args.plaid_settings = [tuple(map(int, s.split(":"))) for s in args.plaid_settings.split(",")]
  import torch  # noqa: PLC0415

  torch.set_num_threads(args.threads)
  args.index = args.index or os.path.join(args.data, f"index_{args.engine}")
  shutil.rmtree(args.index, ignore_errors=True)
  versions = {}
  for mod in ("fast_plaid", "xtr_warp_rs", "torch"):
    try:
      from importlib.metadata import version  # noqa: PLC0415

      versions[mod] = version(mod.replace("_", "-") if mod != "fast_plaid" else "fast-plaid")
    except Exception:  # noqa: BLE001
      pass

  def emit(**row):
    row.update(engine=args.engine, versions=versions, threads=args.threads)
    with open(args.out, "a") as f:
      f.write(json.dumps(row) + "\n")
    print(f"{args.engine} {row['settings']}: build {row['build_s']:.1f} s, "
          f"search {row['search_s']:.2f} s", flush=True)  # fmt: skip

  {"fast_plaid": run_fast_plaid, "xtr_warp": run_xtr_warp}[args.engine](args, emit)


if __name__ == "__main__":
  main()
