"""Where the data lives: gin-configurable, with environment-variable overrides.

Resolved when a dataset is read (not when tasks are registered), so a gin file or an env var
set after ``import tasks`` still takes effect. Precedence: gin binding > env var > default.

- ``XTR_JAX_DATA_DIR``: root holding the real-data layout (default ``../shared/data`` beside the
  repository).
- ``XTR_JAX_SWIM_IR_DIR``: SWIM-IR layout root with ``cross_lingual/{code}.jsonl`` and
  ``monolingual/{code}.jsonl`` (default: ``$DATA_DIR/swim_ir`` if present, else
  ``$DATA_DIR/pairs_swim_ir_layout``).
- ``XTR_JAX_XOR_DIRS``: ``os.pathsep``-separated folders searched, in order, for XOR-TyDi files
  (default ``$DATA_DIR/xor_tydi`` then ``$DATA_DIR/xor_mini``).
"""

from __future__ import annotations

import os
import pathlib

import gin

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"

# Official XOR-Retrieve file names first, then short names; the first that exists wins.
XOR_FILES: dict[str, tuple[str, ...]] = {
  "train": ("xor_train_retrieve_eng_span.jsonl", "train.jsonl"),
  "dev": (
    "xor_dev_retrieve_eng_span_v1_1.jsonl",
    "xor_dev_retrieve_eng_span.jsonl",
    "dev.jsonl",
  ),
  "test": (
    "xor_test_retrieve_eng_span_q_only_v1_1.jsonl",
    "xor_test_retrieve_eng_span_q_only.jsonl",
    "test.jsonl",
  ),
  "corpus": ("corpus.tsv", "enwiki_20190201_w100.tsv", "psgs_w100.tsv", "psgs_w100.tsv.gz"),
  "dev_qrels": ("dev.qrels", "xor_dev.qrels"),
  "dpr_train": ("xor_train_full.json", "xor_dpr_train_full.json", "xor_train_dpr.jsonl"),
}


@gin.configurable
def data_dir(path: str | None = None) -> pathlib.Path:
  """Root of the real-data layout."""
  return pathlib.Path(path or os.environ.get("XTR_JAX_DATA_DIR") or DEFAULT_DATA_DIR)


@gin.configurable
def swim_ir_dir(path: str | None = None) -> pathlib.Path:
  """Folder with ``{setting}/{code}.jsonl`` in the SWIM-IR record layout."""
  path = path or os.environ.get("XTR_JAX_SWIM_IR_DIR")
  if path:
    return pathlib.Path(path)
  root = data_dir()
  return root / "swim_ir" if (root / "swim_ir").is_dir() else root / "pairs_swim_ir_layout"


@gin.configurable
def xor_dirs(paths: tuple[str, ...] | None = None) -> list[pathlib.Path]:
  """Folders searched, in order, for XOR-TyDi files."""
  if paths:
    return [pathlib.Path(p) for p in paths]
  env = os.environ.get("XTR_JAX_XOR_DIRS")
  if env:
    return [pathlib.Path(p) for p in env.split(os.pathsep) if p]
  root = data_dir()
  return [root / "xor_tydi", root / "xor_mini"]


def swim_ir_file(setting: str, code: str) -> pathlib.Path:
  """The JSONL file for one SWIM-IR (setting, language); error lists what was looked for."""
  root = swim_ir_dir()
  candidates = [
    root / setting / f"{code}.jsonl",
    root / setting / f"{code}.jsonl.gz",
    root / setting / code / "train.jsonl",
    root / setting.replace("_", "-") / f"{code}.jsonl",
  ]
  for c in candidates:
    if c.is_file():
      return c
  raise FileNotFoundError(
    f"no SWIM-IR {setting} file for language {code!r}; looked for: "
    + ", ".join(str(c) for c in candidates)
    + " (set XTR_JAX_SWIM_IR_DIR or gin swim_ir_dir.path)"
  )


def find_xor_file(kind: str, required: bool = True) -> pathlib.Path | None:
  """First existing XOR-TyDi file of a kind (train/dev/test/corpus/dev_qrels/dpr_train)."""
  if kind not in XOR_FILES:
    raise ValueError(f"unknown XOR-TyDi file kind {kind!r}; valid: {', '.join(XOR_FILES)}")
  dirs = xor_dirs()
  for d in dirs:
    for name in XOR_FILES[kind]:
      if (d / name).is_file():
        return d / name
  if not required:
    return None
  raise FileNotFoundError(
    f"no XOR-TyDi {kind} file; expected one of {', '.join(XOR_FILES[kind])} in "
    + ", ".join(str(d) for d in dirs)
    + " (set XTR_JAX_XOR_DIRS or gin xor_dirs.paths)"
  )
