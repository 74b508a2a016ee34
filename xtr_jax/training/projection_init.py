"""A projection initialised from the backbone's own token states (their principal axes).

XTR projects every token state to 128 dimensions. On a pretrained backbone whose raw
states already retrieve well (multilingual-E5: raw-state XTR beats its own single vector),
a random projection throws that away and fine-tuning must first climb back to where the
backbone started. The top principal axes of the (L2-normalised, uncentred) token states
keep the subspace that carries most of their dot products, so the 128-d model starts
close to the raw one. Uncentred, because XTR scores are dot products, not covariances.

``--method distill`` starts from those axes and fits the kernel to the backbone's own token
scores on cached states of training pairs (``projection_fit``): the frozen backbone is the
teacher, so a fine-tuned 384-d model can be compressed to 128-d without another fine-tune.

xtr-jax init-projection --checkpoint me5-small --pairs 'PAIRS/*.jsonl' --output CKPT \
    [--proj_dim 128] [--sample_texts 2000] [--method pca|distill [--fit_steps N ...]]
"""

from __future__ import annotations

import numpy as np

METHODS = ("pca", "distill")
# The trainer's held-out share (``pairs_batches.heldout_fraction`` in the run configs): the
# projection is fitted on the training split only and measured on the held-out one.
HELDOUT_FRACTION = 0.05


def principal_axes(states: np.ndarray, proj_dim: int) -> np.ndarray:
  """[d, proj_dim] top eigenvectors of ``states.T @ states`` (descending), float32.

  Each column's sign is fixed (largest-magnitude entry positive) so the result does not
  depend on the eigen-solver's sign convention.
  """
  states = np.asarray(states, np.float64)
  if states.ndim != 2 or proj_dim > states.shape[1]:
    raise ValueError(f"need [N, d] states with d >= proj_dim={proj_dim}, got {states.shape}")
  moment = states.T @ states / max(len(states), 1)
  values, vectors = np.linalg.eigh(moment)
  top = vectors[:, np.argsort(values)[::-1][:proj_dim]]
  signs = np.sign(top[np.abs(top).argmax(axis=0), np.arange(proj_dim)])
  return (top * np.where(signs == 0, 1.0, signs)).astype(np.float32)


def sample_texts(pairs: str, n: int, seed: int = 0) -> tuple[list[str], list[str]]:
  """Up to ``n`` queries and ``n`` distinct passages of the training split, seeded."""
  from xtr_jax.data.pairs import read_pairs, split_pairs  # noqa: PLC0415

  records = split_pairs(read_pairs(pairs), "train", HELDOUT_FRACTION, where=pairs)
  rng = np.random.default_rng(seed)
  queries = [records[i]["query"] for i in rng.permutation(len(records))[:n]]
  passages = sorted({r["passage"] for r in records})
  passages = [passages[i] for i in rng.permutation(len(passages))[:n]]
  return queries, passages


def sample_pairs(pairs: str, n: int, split: str, seed: int = 0) -> list[dict]:
  """Up to ``n`` seeded pairs of ``split`` whose passages are distinct (in-batch negatives)."""
  from xtr_jax.data.pairs import read_pairs, split_pairs  # noqa: PLC0415

  records = split_pairs(read_pairs(pairs), split, HELDOUT_FRACTION, where=pairs)
  rng = np.random.default_rng(seed)
  seen, out = set(), []
  for i in rng.permutation(len(records)):
    if records[i]["passage"] not in seen and len(out) < n:
      seen.add(records[i]["passage"])
      out.append(records[i])
  return out


def backbone_encoder(checkpoint: str):
  """(checkpoint, encode): ``encode(texts, length, role)`` -> per-text raw [len_i, d] states
  of a retrieval checkpoint without projection (proj_dim 0), the teacher of ``distill``."""
  from xtr_jax.checkpoints import orbax_io  # noqa: PLC0415
  from xtr_jax.checkpoints.tokenizers import tokenizer_for  # noqa: PLC0415
  from xtr_jax.index.encode import AUTO_TOKEN_BUDGET, TokenEncoder  # noqa: PLC0415

  ckpt = orbax_io.load_checkpoint(checkpoint)
  if ckpt.model_kind != "retrieval" or int(ckpt.extra.get("proj_dim", 128)) != 0:
    raise ValueError(f"{checkpoint}: need a retrieval checkpoint without projection (proj_dim 0)")
  tokenizer = tokenizer_for(checkpoint, ckpt.extra, ckpt.config)
  encoder = TokenEncoder(ckpt.params, ckpt.config, proj_dim=0, pooling="token")

  def encode(texts: list[str], length: int, role: str) -> list[np.ndarray]:
    ids = tokenizer.encode(texts, length, role=role)
    return encoder.encode_tokens(ids, 32, length, (length,), token_budget=AUTO_TOKEN_BUDGET)

  return ckpt, encode


def pair_states(encode, pairs: str, n: int, split: str, lengths: tuple[int, int], seed: int):
  """Raw per-text states (queries, passages) of up to ``n`` ``sample_pairs`` of ``split``."""
  rows = sample_pairs(pairs, n, split, seed)
  q = encode([r["query"] for r in rows], lengths[0], "query")
  d = encode([r["passage"] for r in rows], lengths[1], "passage")
  return q, d


def init_projection(
  checkpoint: str,
  pairs: str,
  output: str,
  proj_dim: int = 128,
  n_texts: int = 2000,
  passage_length: int = 128,
  query_length: int = 32,
  seed: int = 0,
  method: str = "pca",
  fit: dict | None = None,
) -> dict:
  """Writes ``output``: ``checkpoint``'s backbone + a PCA (or distilled) projection; returns
  a summary. ``fit``: keyword arguments of ``projection_fit.fit_projection``."""
  if method not in METHODS:
    raise ValueError(f"init-projection --method {method!r}: expected one of {', '.join(METHODS)}")
  from xtr_jax.checkpoints import orbax_io  # noqa: PLC0415
  from xtr_jax.checkpoints.embedded import resolve_checkpoint  # noqa: PLC0415
  from xtr_jax.checkpoints.tokenizers import carried_tokenizer  # noqa: PLC0415

  checkpoint = resolve_checkpoint(checkpoint)
  ckpt, encode = backbone_encoder(checkpoint)
  record = {"kind": method, "pairs": pairs, "texts": 2 * n_texts, "seed": seed}
  if method == "pca":
    queries, passages = sample_texts(pairs, n_texts, seed)
    states = encode(queries, query_length, "query") + encode(passages, passage_length, "passage")
    states = np.concatenate(states).astype(np.float32)
    kernel = principal_axes(states, proj_dim)
  else:
    kernel, states, fitted = _distilled_kernel(
      encode, pairs, n_texts, proj_dim, (query_length, passage_length), seed, fit or {}
    )
    record.update(fitted)
  kept = float(np.square(states @ kernel).sum() / np.square(states).sum())
  params = {**ckpt.params, "projection": {"kernel": kernel}}
  extra = {**ckpt.extra, "proj_dim": proj_dim, "pooling": "token"}
  extra["projection_init"] = record
  _, assets = carried_tokenizer(checkpoint)
  fingerprint = orbax_io.save_checkpoint(
    output, params, ckpt.config, model_kind="retrieval", extra=extra, assets=assets
  )
  return {"tokens": len(states), "energy_kept": kept, "fingerprint": fingerprint, **record}


def _distilled_kernel(encode, pairs, n_pairs, proj_dim, lengths, seed, fit):
  """(kernel, training token states, record): PCA of the states, then ``fit_projection``;
  the record has the fit's settings, its loss log and held-out retrieval of teacher, PCA
  start and fitted kernel."""
  from xtr_jax.training import projection_fit as pf  # noqa: PLC0415

  def states(split: str, n: int):
    q, d = pair_states(encode, pairs, n, split, lengths, seed)
    return (q, d), (pf.pad_states(q, lengths[0]), pf.pad_states(d, lengths[1]))

  (q, d), train = states("train", n_pairs)
  flat = np.concatenate(q + d).astype(np.float32)
  start = principal_axes(flat, proj_dim)
  kernel, history = pf.fit_projection(*train, start, seed=seed, **fit)
  _, held = states("validation", n_pairs)
  heldout = {
    name: pf.heldout_retrieval(*held, k)
    for name, k in (("teacher", None), ("pca", start), ("distill", kernel))
  }
  return kernel, flat, {"fit": fit, "pairs_used": len(q), "history": history, "heldout": heldout}


def main(argv: list[str] | None = None) -> int:
  from xtr_jax.cli import ArgumentParser, positive_float, positive_int  # noqa: PLC0415

  p = ArgumentParser(prog="xtr-jax init-projection", description=__doc__)
  p.add_argument("--checkpoint", required=True, help="Backbone checkpoint dir or me5-small.")
  p.add_argument("--pairs", required=True, help="SWIM-IR-layout JSONL glob(s) to sample.")
  p.add_argument("--output", required=True, help="Checkpoint dir to write.")
  p.add_argument("--proj_dim", type=positive_int, default=128, help="Projection width.")
  p.add_argument(
    "--sample_texts", type=positive_int, default=2000, help="Queries and passages sampled."
  )
  p.add_argument("--seed", type=int, default=0, help="Sampling seed.")
  p.add_argument(
    "--method", choices=METHODS, default="pca", help="pca, or distill: fit to the token scores."
  )
  p.add_argument("--fit_steps", type=positive_int, default=2000, help="distill: Adam steps.")
  p.add_argument("--fit_batch_size", type=positive_int, default=64, help="distill: pairs/step.")
  p.add_argument("--fit_learning_rate", type=positive_float, default=1e-3, help="distill: Adam lr.")
  p.add_argument(
    "--token_temperature",
    type=positive_float,
    default=0.02,
    help="distill: token softmax temperature.",
  )
  p.add_argument("--doc_weight", type=float, default=1.0, help="distill: XTR loss weight.")
  args = p.parse_args(argv)
  fit = {
    "steps": args.fit_steps,
    "batch_size": args.fit_batch_size,
    "learning_rate": args.fit_learning_rate,
    "token_temperature": args.token_temperature,
    "doc_weight": args.doc_weight,
  }
  out = init_projection(
    args.checkpoint,
    args.pairs,
    args.output,
    args.proj_dim,
    args.sample_texts,
    seed=args.seed,
    method=args.method,
    fit=fit if args.method == "distill" else None,
  )
  print(
    f"wrote {args.output}: {args.method} projection to {args.proj_dim} dims from "
    f"{out['tokens']} token states ({100 * out['energy_kept']:.1f}% of their energy kept), "
    f"fingerprint {out['fingerprint']}"
  )
  for name, m in out.get("heldout", {}).items():
    print(f"held-out XTR retrieval, {name}: MRR@10 {m['mrr@10']:.4f} R@1 {m['recall@1']:.4f}")
  return 0
