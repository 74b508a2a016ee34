"""``xtr-jax generate``: xQG questions for every passage of a corpus, in many languages.

The command line over ``xqg/generate.py`` (prompts, decoding, resumable output: see there).
The checkpoint is an mT5 (``model_kind='mt5'``, SentencePiece vocabulary) or a BERT2BERT
generator warm-started from a pretrained encoder (``model_kind='bert2bert'``, which carries
its own tokenizer and output-vocabulary mapping).
"""

from __future__ import annotations

import argparse
import logging

import gin
from xtr_jax import io as xio
from xtr_jax.checkpoints.orbax_io import check_config_matches, load_checkpoint
from xtr_jax.checkpoints.tokenizers import tokenizer_for
from xtr_jax.cli import ArgumentParser
from xtr_jax.data.languages import language_name
from xtr_jax.gin_utils import bound_config_fields, parse_args_with_gin
from xtr_jax.models import decoding
from xtr_jax.models import xtr as _xtr  # noqa: F401 (gin: registered before flags lock it)
from xtr_jax.xqg.generate import (
  GENERATOR_KINDS,
  DecodeSettings,
  QuestionGenerator,
  generate_corpus,
  resolve_language_tags,
)


def main(argv: list[str]) -> int:
  parser = ArgumentParser(prog="xtr-jax generate", description=__doc__.split("\n")[0])
  parser.add_argument("--checkpoint", required=True, help="mT5 or bert2bert checkpoint directory.")
  parser.add_argument("--corpus", required=True, help="TSV corpus: id, text, title (header).")
  parser.add_argument("--output", required=True, help="Generated-questions JSONL to write.")
  parser.add_argument("--languages", required=True, help="Comma-separated codes, e.g. ja,ko.")
  parser.add_argument("--num_questions", type=int, default=1, help="Questions per language.")
  parser.add_argument(
    "--strategy", default="topk", choices=decoding.STRATEGIES, help="Decoding strategy."
  )
  parser.add_argument("--top_k", type=int, default=10, help="topk: sample among the k best.")
  parser.add_argument("--temperature", type=float, default=1.0, help="Sampling temperature.")
  parser.add_argument("--beam_size", type=int, default=4, help="beam: hypotheses kept.")
  parser.add_argument("--alpha", type=float, default=0.6, help="Beam length penalty.")
  parser.add_argument(
    "--language_tags",
    default="auto",
    choices=("auto", "yes", "no"),
    help="Start decoding from the language's tag (models trained with language_tags."
    "tagged_batches); auto: as the checkpoint's metadata records.",
  )
  parser.add_argument(
    "--allow_unk", action="store_true", help="Let decoding emit the unk piece (off by default)."
  )
  parser.add_argument("--seed", type=int, default=0, help="Sampling seed.")
  parser.add_argument("--batch_size", type=int, default=16, help="Passages per step.")
  parser.add_argument(
    "--max_input_length", type=int, default=256, help="Prompt + passage pieces kept."
  )
  parser.add_argument(
    "--max_decode_length", type=int, default=64, help="Most pieces a question may have."
  )
  parser.add_argument("--vocabulary", help="SentencePiece model (default: the checkpoint's).")
  parser.add_argument("--swim_ir_output", help="Also write SWIM-IR layout records here.")
  parser.add_argument("--max_batches", type=int, help="Stop after this many batches.")
  parser.add_argument("--no_progress", action="store_true", help="No progress bar.")
  args = parse_args_with_gin(parser, argv)
  try:
    return _run(parser, args)
  finally:
    gin.clear_config()  # leave no locked config behind for in-process callers (tests)


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
  languages = [c.strip() for c in args.languages.split(",") if c.strip()]
  if not languages:
    parser.error("--languages is empty")
  try:
    for c in languages:
      language_name(c)
    settings = DecodeSettings(
      strategy=args.strategy,
      num_questions=args.num_questions,
      top_k=args.top_k,
      temperature=args.temperature,
      beam_size=args.beam_size,
      alpha=args.alpha,
      max_input_length=args.max_input_length,
      max_decode_length=args.max_decode_length,
      language_tags=args.language_tags,
      suppress_unk=not args.allow_unk,
    )
    settings.check()
  except ValueError as e:
    parser.error(str(e))
  if not xio.isfile(args.corpus):
    parser.error(f"--corpus {args.corpus}: file not found")

  ckpt = load_checkpoint(args.checkpoint)
  if ckpt.model_kind not in GENERATOR_KINDS:
    parser.error(
      f"--checkpoint {args.checkpoint} has model_kind={ckpt.model_kind!r}; generation needs "
      f"an encoder-decoder checkpoint ({', '.join(GENERATOR_KINDS)})"
    )
  check_config_matches(ckpt.config, bound_config_fields, args.checkpoint)
  tokenizer = tokenizer_for(args.checkpoint, ckpt.extra, ckpt.config, args.vocabulary)
  settings = resolve_language_tags(settings, args.checkpoint)
  try:
    generator = QuestionGenerator(ckpt.params, ckpt.config, tokenizer, settings)
  except ValueError as e:
    parser.error(str(e))
  stats = generate_corpus(
    args.corpus,
    args.output,
    generator,
    languages,
    batch_size=args.batch_size,
    seed=args.seed,
    swim_ir_output=args.swim_ir_output,
    fingerprint=ckpt.fingerprint,
    progress=not args.no_progress,
    max_batches=args.max_batches,
  )
  print(
    f"generated {args.output}: {stats['passages']} passages ({stats['new_passages']} new, "
    f"{stats['seconds']:.1f}s)"
  )
  return 0
