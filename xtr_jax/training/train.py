"""``xtr-jax train --gin_file runs/train_xtr.gin --model_dir DIR``: gin-configured training."""

from __future__ import annotations

import argparse

import gin
from xtr_jax import io as xio
from xtr_jax.gin_utils import parse_args_with_gin


def main(argv: list[str] | None = None) -> int:
  from xtr_jax.cli import ArgumentParser  # noqa: PLC0415

  parser = ArgumentParser(
    prog="xtr-jax train",
    description="Train XTR / ColBERT / single-vector retrievers or the xQG generator. "
    "Resumes from the latest checkpoint in --model_dir.",
  )
  parser.add_argument(
    "--model_dir", required=True, help="Checkpoints, metrics, final model (created)."
  )
  parser.add_argument("--stop_at_step", type=int, default=None, help=argparse.SUPPRESS)
  args = parse_args_with_gin(parser, argv)
  if xio.isfile(args.model_dir):
    parser.error(f"--model_dir {args.model_dir}: is a file, expected a directory")
  # Logging is set up by xtr-jax (xtr_jax/cli.py): INFO, third-party chatter off.
  from xtr_jax import partitioning
  from xtr_jax.training import trainer

  partitioning.maybe_initialize_distributed()
  xio.makedirs(args.model_dir)  # local or gs://, like the checkpoints written there
  xio.atomic_write_text(xio.join(args.model_dir, "config.gin"), gin.config_str())
  trainer.train(args.model_dir, stop_at_step=args.stop_at_step)
  return 0
