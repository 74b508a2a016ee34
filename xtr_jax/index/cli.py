"""``xtr-jax index`` (encode a corpus, build the token index) and ``xtr-jax search``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import time

import gin
from xtr_jax.checkpoints.embedded import resolve_checkpoint
from xtr_jax.checkpoints.tokenizers import tokenizer_for
from xtr_jax.gin_utils import parse_args_with_gin
from xtr_jax.index.encode import (
  EncodeParams,
  TokenEncoder,
  Tokenizer,
  atomic_write_bytes,
  encode_corpus,
  load_shards,
)
from xtr_jax.index.retriever import Retriever, load_model
from xtr_jax.index.scann_index import ScannParams
from xtr_jax.index.store import ExtraVectors, build_index


@gin.configurable
def index_settings(backend: str = "scann", segment_tokens: int = 0, extra_weight: float = 1.0):
  """Index-level gin knobs (the rest live in ``EncodeParams`` and ``ScannParams``)."""
  return dict(backend=backend, segment_tokens=segment_tokens, extra_weight=extra_weight)


def build_from_corpus(
  corpus: str,
  output: str,
  params,
  config,
  *,
  proj_dim: int,
  model_fingerprint: str,
  tokenizer: Tokenizer,
  checkpoint: str | None = None,
  pooling: str = "token",
  encode_params: EncodeParams | None = None,
  scann_params: ScannParams | None = None,
  extra_vectors: ExtraVectors | None = None,
  overwrite: bool = False,
  progress: bool = True,
  **settings,
) -> dict:
  """Encode ``corpus`` (resumable, in ``.NAME.encode`` beside ``output``) and build the index."""
  encode_params = encode_params or EncodeParams()
  settings = {**index_settings(), **settings}
  output = os.path.abspath(output.rstrip("/"))
  if os.path.exists(output) and not overwrite:
    raise FileExistsError(f"index directory already exists: {output} (use --overwrite)")
  parent, name = os.path.split(output)
  work = os.path.join(parent, f".{name}.encode")
  encoder = TokenEncoder(params, config, proj_dim, pooling=pooling)
  t0 = time.time()
  record = encode_corpus(
    corpus,
    work,
    encoder,
    tokenizer,
    encode_params,
    settings={"model_fingerprint": model_fingerprint},
    progress=progress,
  )
  encode_seconds = time.time() - t0
  vectors, t2p, pids = load_shards(work, record)
  logging.info("encoded %d passages into %d token vectors", len(pids), len(t2p))
  manifest = build_index(
    output,
    vectors,
    t2p,
    pids,
    model_fingerprint=model_fingerprint,
    vocabulary_fingerprint=tokenizer.fingerprint,
    backend=settings["backend"],
    scann_params=scann_params or ScannParams(),
    segment_tokens=settings["segment_tokens"],
    extra_vectors=extra_vectors,
    extra_weight=settings["extra_weight"],
    metadata={
      "checkpoint": os.path.abspath(checkpoint) if checkpoint else None,
      "vocabulary": os.path.abspath(tokenizer.path),
      "pooling": pooling,
      "corpus": os.path.abspath(corpus),
      "encode": json.loads(json.dumps(dataclasses.asdict(encode_params))),
      "encode_seconds": round(encode_seconds, 3),
    },
    overwrite=overwrite,
  )
  shutil.rmtree(work, ignore_errors=True)
  return manifest


def index_main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(prog="xtr-jax index", description=__doc__)
  parser.add_argument(
    "--checkpoint",
    required=True,
    help="Retrieval model checkpoint dir, or an embedded model's name (me5-small).",
  )
  parser.add_argument("--corpus", required=True, help="TSV corpus: id, text, title (header).")
  parser.add_argument("--output", required=True, help="Index directory to create.")
  parser.add_argument("--vocabulary", help="SentencePiece model (default: the checkpoint's).")
  parser.add_argument(
    "--pooling",
    choices=("token", "mean"),
    help="token: one vector per token (XTR/ColBERT); mean: one mean-pooled vector per "
    "passage (single-vector). Default: the checkpoint's own.",
  )
  parser.add_argument("--overwrite", action="store_true", help="Replace an existing index.")
  parser.add_argument("--augment_with", help="xQG generated-questions JSONL (xtr-jax generate).")
  parser.add_argument("--augment_mode", default="tokens", choices=("tokens", "pooled_per_language"))
  parser.add_argument("--augment_weight", type=float, help="Scale of the added vectors.")
  parser.add_argument(
    "--augment_max_df",
    type=float,
    help="Drop question tokens whose piece occurs in more than this fraction of the augmented "
    "passages' questions (question words, punctuation, EOS); e.g. 0.05.",
  )
  args = parse_args_with_gin(parser, argv)
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
  if args.augment_with and not os.path.isfile(args.augment_with):
    parser.error(f"--augment_with {args.augment_with}: file not found")
  if args.augment_max_df is not None and not 0.0 < args.augment_max_df <= 1.0:
    parser.error(f"--augment_max_df {args.augment_max_df}: expected a fraction in (0, 1]")
  if not args.augment_with and (args.augment_max_df is not None or args.augment_weight is not None):
    parser.error("--augment_max_df / --augment_weight need --augment_with")
  checkpoint = resolve_checkpoint(args.checkpoint)
  params, config, proj_dim, fingerprint, extra = load_model(checkpoint)
  pooling = args.pooling or extra.get("pooling", "token")
  if pooling == "mean" and args.augment_with and args.augment_mode == "tokens":
    parser.error("--augment_mode tokens needs --pooling token (use pooled_per_language)")
  tokenizer = tokenizer_for(checkpoint, extra, config, args.vocabulary)
  augmentation = {}
  if args.augment_with:  # xQG passage augmentation (xtr_jax/index/augment.py)
    from xtr_jax.index import augment  # noqa: PLC0415

    augmentation["extra_vectors"] = augment.extra_vectors_for_index(
      args.augment_with,
      TokenEncoder(params, config, proj_dim, pooling=pooling),
      tokenizer,
      mode=args.augment_mode,
      max_df=args.augment_max_df,
    )
  if args.augment_weight is not None:
    augmentation["extra_weight"] = args.augment_weight
  manifest = build_from_corpus(
    args.corpus,
    args.output,
    params,
    config,
    proj_dim=proj_dim,
    model_fingerprint=fingerprint,
    tokenizer=tokenizer,
    checkpoint=checkpoint,
    pooling=pooling,
    overwrite=args.overwrite,
    **augmentation,
  )
  print(
    f"index {args.output}: {manifest['num_passages']} passages, {manifest['num_tokens']} "
    f"tokens ({pooling} pooling), {manifest['bytes_per_token']} bytes/token"
  )
  return 0


def read_queries(path: str) -> list[tuple[str, str]]:
  """(id, question) of each line of a JSONL query file (XOR layout)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"queries file not found: {path}")
  out = []
  with open(path, encoding="utf-8") as f:
    for line_no, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        rec = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{line_no}: not JSON: {e.msg}") from e
      if not isinstance(rec, dict) or "id" not in rec or "question" not in rec:
        raise ValueError(f"{path}:{line_no}: expected an object with 'id' and 'question'")
      if not isinstance(rec["question"], str):
        raise ValueError(f"{path}:{line_no}: 'question' must be a string")
      out.append((str(rec["id"]), rec["question"]))
  return out


def format_trec(qids: list[str], results, tag: str) -> str:
  lines = []
  for qid, ranking in zip(qids, results):
    for rank, (pid, score) in enumerate(ranking, 1):
      lines.append(f"{qid} Q0 {pid} {rank} {score:.6f} {tag}")
  return "\n".join(lines) + ("\n" if lines else "")


def search_main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(prog="xtr-jax search", description=__doc__)
  parser.add_argument("--index", required=True, help="Index directory.")
  parser.add_argument("--queries", required=True, help="JSONL with id and question.")
  parser.add_argument("--output", required=True, help="TREC run file to write.")
  parser.add_argument("--k", type=int, default=100, help="Passages per query.")
  parser.add_argument(
    "--checkpoint", help="Model checkpoint dir or embedded name (default: the manifest's)."
  )
  parser.add_argument("--vocabulary", help="SentencePiece model (default: the manifest's).")
  parser.add_argument("--exact", action="store_true", help="Exact MaxSim re-scoring.")
  parser.add_argument("--backend", choices=["scann", "brute_force"], help="Token search.")
  parser.add_argument("--tag", default="xtr_jax", help="Run tag (last TREC column).")
  args = parse_args_with_gin(parser, argv)
  if args.k < 1:
    parser.error(f"--k must be >= 1, got {args.k}")
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
  retriever = Retriever.load(args.index, args.checkpoint, args.vocabulary, backend=args.backend)
  queries = read_queries(args.queries)
  from tqdm import tqdm  # noqa: PLC0415

  results = []
  step = retriever.params.batch_size
  for start in tqdm(range(0, len(queries), step), desc="search", unit="batch"):
    batch = [q for _, q in queries[start : start + step]]
    results.extend(retriever.search(batch, args.k, exact=args.exact))
  text = format_trec([qid for qid, _ in queries], results, args.tag)
  os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
  atomic_write_bytes(args.output, text.encode("utf-8"))
  print(f"wrote {args.output}: {len(queries)} queries, k={args.k}")
  return 0
