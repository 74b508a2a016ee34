"""Probe the distilled projection's settings on the training pairs' held-out split (issue #16).

``xtr-jax init-projection --method distill`` encodes its pairs every run; to choose
``--token_temperature`` and ``--doc_weight`` this script encodes the training and held-out
pairs once (cached in ``--cache``), fits one kernel per setting and records held-out XTR
retrieval (MRR@10, R@1, R@10) of teacher, PCA start and each fit in ``--output`` (JSON) and
its table beside it (``.md``). No benchmark query is touched.

python benchmarks/projection_fit_probe.py --checkpoint outputs/me5_xtr384_ft/final \
  --pairs '../shared/data/pairs_swim_ir_layout/cross_lingual/*.jsonl' --sample_texts 8000 \
  --temperatures 0.02 0.05 0.1 --doc_weights 1.0 --steps 500 --cache /tmp/states.npz \
  --output results/projection_fit/probe.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time

import numpy as np

from xtr_jax.cli import positive_float, positive_int
from xtr_jax.experiments.sweep import code_version
from xtr_jax.io import atomic_write_text
from xtr_jax.training import projection_fit as pf
from xtr_jax.training.projection_init import backbone_encoder, pair_states, principal_axes

LENGTHS = (32, 128)  # init-projection's query and passage lengths


def cached_states(args) -> dict[str, np.ndarray]:
  """Padded train/validation states and masks, encoded once per (checkpoint, pairs, n)."""
  if args.cache and os.path.exists(args.cache):
    return dict(np.load(args.cache))
  _, encode = backbone_encoder(args.checkpoint)
  out = {}
  for split in ("train", "validation"):
    q, d = pair_states(encode, args.pairs, args.sample_texts, split, LENGTHS, args.seed)
    (out[f"{split}_q"], out[f"{split}_qm"]) = pf.pad_states(q, LENGTHS[0])
    (out[f"{split}_d"], out[f"{split}_dm"]) = pf.pad_states(d, LENGTHS[1])
  if args.cache:
    tmp = args.cache + ".tmp.npz"
    np.savez(tmp, **out)
    os.replace(tmp, args.cache)
  return out


def markdown_table(record: dict) -> str:
  """The held-out table of a probe record (what results/projection_fit.md shows)."""
  lines = [
    "| kernel | token_temperature | doc_weight | MRR@10 | R@1 | R@10 | fit s |",
    "|---|---:|---:|---:|---:|---:|---:|",
  ]
  for r in record["rows"]:
    cells = [r.get("token_temperature", "-"), r.get("doc_weight", "-")]
    cells += [f"{r[m]:.4f}" for m in ("mrr@10", "recall@1", "recall@10")] + [r.get("fit_s", "-")]
    lines.append(f"| {r['kernel']} | " + " | ".join(map(str, cells)) + " |")
  return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--checkpoint", required=True)
  p.add_argument("--pairs", required=True)
  p.add_argument("--sample_texts", type=positive_int, default=8000)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--proj_dim", type=positive_int, default=128)
  p.add_argument("--temperatures", type=positive_float, nargs="+", default=[0.02, 0.05, 0.1])
  p.add_argument("--doc_weights", type=float, nargs="+", default=[1.0])
  p.add_argument("--steps", type=positive_int, default=500)
  p.add_argument("--batch_size", type=positive_int, default=64)
  p.add_argument("--learning_rate", type=positive_float, default=1e-3)
  p.add_argument("--cache", default="")
  p.add_argument("--output", required=True)
  args = p.parse_args(argv)

  t0 = time.time()
  s = cached_states(args)
  train = ((s["train_q"], s["train_qm"]), (s["train_d"], s["train_dm"]))
  held = ((s["validation_q"], s["validation_qm"]), (s["validation_d"], s["validation_dm"]))
  flat = np.concatenate([s["train_q"][s["train_qm"]], s["train_d"][s["train_dm"]]])
  start = principal_axes(flat.astype(np.float32), args.proj_dim)
  rows = [
    {"kernel": "teacher", **pf.heldout_retrieval(*held, None)},
    {"kernel": "pca", **pf.heldout_retrieval(*held, start)},
  ]
  print(f"states ready in {time.time() - t0:.0f} s; {rows[0]}; {rows[1]}", flush=True)
  for tau in args.temperatures:
    for w in args.doc_weights:
      t = time.time()
      kernel, history = pf.fit_projection(
        *train,
        start,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        token_temperature=tau,
        doc_weight=w,
        seed=args.seed,
      )
      row = {"kernel": "distill", "token_temperature": tau, "doc_weight": w}
      row.update(
        pf.heldout_retrieval(*held, kernel), fit_s=round(time.time() - t), last=history[-1]
      )
      rows.append(row)
      print(json.dumps(row), flush=True)
  record = {
    "command": shlex.join(
      ["python", "benchmarks/projection_fit_probe.py", *(sys.argv[1:] if argv is None else argv)]
    ),
    "commit": code_version(),
    "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    "train_pairs": int(len(s["train_q"])),
    "heldout_pairs": int(len(s["validation_q"])),
    "wall_s": round(time.time() - t0),
    "rows": rows,
  }
  atomic_write_text(args.output, json.dumps(record, indent=1))
  atomic_write_text(os.path.splitext(args.output)[0] + ".md", markdown_table(record))


if __name__ == "__main__":
  main()
