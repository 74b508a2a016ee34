"""The ``xtr-jax`` console script: one entry, one subcommand per stage.

Each subcommand lives next to the code it drives and is imported only when used, so
``xtr-jax search`` does not pay for TensorFlow or the trainer.
"""

from __future__ import annotations

import importlib
import sys

# name -> ("module:function", one-line help). The function takes argv (list[str]) and
# returns an exit code.
COMMANDS: dict[str, tuple[str, str]] = {
  "convert": ("xtr_jax.checkpoints.convert:main", "Import HF / T5X checkpoints to orbax."),
  "train-vocab": ("xtr_jax.data.vocab:main", "Train a SentencePiece vocabulary."),
  "train": ("xtr_jax.training.train:main", "Train XTR / baselines / xQG (gin)."),
  "init-projection": (
    "xtr_jax.training.projection_init:main",
    "Add a PCA projection to a backbone checkpoint.",
  ),
  "generate": ("xtr_jax.models.generate_cli:main", "Generate xQG questions for a corpus."),
  "index": ("xtr_jax.index.cli:index_main", "Encode a corpus and build a token index."),
  "search": ("xtr_jax.index.cli:search_main", "Search an index, write a TREC run."),
  "serve": ("xtr_jax.index.service:main", "HTTP JSON search service."),
  "evaluate": ("xtr_jax.evaluation.cli:main", "XOR-Retrieve R@kt, Recall, nDCG, MRR."),
  "sweep": ("xtr_jax.experiments.sweep:main", "Run a gin sweep end to end."),
  "demo": ("xtr_jax.experiments.demo:main", "The whole pipeline on the shipped sample."),
}


def _usage() -> str:
  lines = ["usage: xtr-jax COMMAND [flags]", "", "commands:"]
  lines += [f"  {name:<12} {doc}" for name, (_, doc) in COMMANDS.items()]
  lines += ["", "Run `xtr-jax COMMAND --help` for a command's flags."]
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
  # Before any subcommand imports JAX: XLA:CPU frees and re-allocates its big temporaries
  # every call, and glibc's defaults return them to the kernel each time (sys time as high
  # as user time while encoding). See xtr_jax/host_malloc.py; XTR_JAX_TUNE_MALLOC=0 opts out.
  from xtr_jax.host_malloc import tune_malloc

  tune_malloc()
  argv = list(sys.argv[1:] if argv is None else argv)
  if not argv or argv[0] in ("-h", "--help", "help"):
    print(_usage())
    return 0
  name, rest = argv[0], argv[1:]
  if name not in COMMANDS:
    print(f"xtr-jax: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
    return 2
  target, _ = COMMANDS[name]
  module_name, func_name = target.split(":")
  # Each subcommand owns the whole gin state. Unlock and clear before importing it, so a
  # second command in one process (demo, sweeps, tests) can register its configurables.
  import gin

  gin.clear_config()
  func = getattr(importlib.import_module(module_name), func_name)
  return int(func(rest) or 0)


if __name__ == "__main__":
  sys.exit(main())
