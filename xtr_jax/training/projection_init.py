"""A projection initialised from the backbone's own token states (their principal axes).

XTR projects every token state to 128 dimensions. On a pretrained backbone whose raw
states already retrieve well (multilingual-E5: raw-state XTR beats its own single vector),
a random projection throws that away and fine-tuning must first climb back to where the
backbone started. The top principal axes of the (L2-normalised, uncentred) token states
keep the subspace that carries most of their dot products, so the 128-d model starts
close to the raw one. Uncentred, because XTR scores are dot products, not covariances.

xtr-jax init-projection --checkpoint me5-small --pairs 'PAIRS/*.jsonl' --output CKPT \
    [--proj_dim 128] [--sample_texts 2000]
"""

from __future__ import annotations

import numpy as np


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
  from xtr_jax.training.inputs import is_heldout, read_pairs  # noqa: PLC0415

  records = [r for r in read_pairs(pairs) if not is_heldout(r["id"], 0.05)]
  rng = np.random.default_rng(seed)
  queries = [records[i]["query"] for i in rng.permutation(len(records))[:n]]
  passages = sorted({r["passage"] for r in records})
  passages = [passages[i] for i in rng.permutation(len(passages))[:n]]
  return queries, passages


def init_projection(
  checkpoint: str,
  pairs: str,
  output: str,
  proj_dim: int = 128,
  n_texts: int = 2000,
  passage_length: int = 128,
  query_length: int = 32,
  seed: int = 0,
) -> dict:
  """Writes ``output``: ``checkpoint``'s backbone + a PCA projection; returns a summary."""
  from xtr_jax.checkpoints import orbax_io  # noqa: PLC0415
  from xtr_jax.checkpoints.embedded import resolve_checkpoint  # noqa: PLC0415
  from xtr_jax.checkpoints.tokenizers import carried_tokenizer, tokenizer_for  # noqa: PLC0415
  from xtr_jax.index.encode import AUTO_TOKEN_BUDGET, TokenEncoder  # noqa: PLC0415

  checkpoint = resolve_checkpoint(checkpoint)
  ckpt = orbax_io.load_checkpoint(checkpoint)
  if ckpt.model_kind != "retrieval" or int(ckpt.extra.get("proj_dim", 128)) != 0:
    raise ValueError(f"{checkpoint}: need a retrieval checkpoint without projection (proj_dim 0)")
  tokenizer = tokenizer_for(checkpoint, ckpt.extra, ckpt.config)
  encoder = TokenEncoder(ckpt.params, ckpt.config, proj_dim=0, pooling="token")
  queries, passages = sample_texts(pairs, n_texts, seed)
  states = []
  for texts, length, role in (
    (queries, query_length, "query"),
    (passages, passage_length, "passage"),
  ):
    ids = tokenizer.encode(texts, length, role=role)
    states += encoder.encode_tokens(ids, 32, length, (length,), token_budget=AUTO_TOKEN_BUDGET)
  states = np.concatenate(states).astype(np.float32)
  kernel = principal_axes(states, proj_dim)
  kept = float(np.square(states @ kernel).sum() / np.square(states).sum())
  params = {**ckpt.params, "projection": {"kernel": kernel}}
  extra = {**ckpt.extra, "proj_dim": proj_dim, "pooling": "token"}
  extra["projection_init"] = {"kind": "pca", "pairs": pairs, "texts": 2 * n_texts, "seed": seed}
  _, assets = carried_tokenizer(checkpoint)
  fingerprint = orbax_io.save_checkpoint(
    output, params, ckpt.config, model_kind="retrieval", extra=extra, assets=assets
  )
  return {"tokens": len(states), "energy_kept": kept, "fingerprint": fingerprint}


def main(argv: list[str] | None = None) -> int:
  from xtr_jax.cli import ArgumentParser, positive_int  # noqa: PLC0415

  p = ArgumentParser(prog="xtr-jax init-projection", description=__doc__)
  p.add_argument("--checkpoint", required=True, help="Backbone checkpoint dir or me5-small.")
  p.add_argument("--pairs", required=True, help="SWIM-IR-layout JSONL glob(s) to sample.")
  p.add_argument("--output", required=True, help="Checkpoint dir to write.")
  p.add_argument("--proj_dim", type=positive_int, default=128, help="Projection width.")
  p.add_argument(
    "--sample_texts", type=positive_int, default=2000, help="Queries and passages sampled."
  )
  p.add_argument("--seed", type=int, default=0, help="Sampling seed.")
  args = p.parse_args(argv)
  out = init_projection(
    args.checkpoint, args.pairs, args.output, args.proj_dim, args.sample_texts, seed=args.seed
  )
  print(
    f"wrote {args.output}: PCA projection to {args.proj_dim} dims from {out['tokens']} token "
    f"states ({100 * out['energy_kept']:.1f}% of their energy kept), fingerprint "
    f"{out['fingerprint']}"
  )
  return 0
