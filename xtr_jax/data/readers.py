"""The dataset readers the data wing's sources use, by their historical names.

The readers themselves live in ``xtr_jax.data.formats`` (one module per format for every
wing); this module keeps the names ``sources``, ``vocab`` and the TFDS builders import. ``RecordError`` is ``formats.FormatError``: one error class for bad files.
"""

from __future__ import annotations

from collections.abc import Iterator

from xtr_jax.data import formats
from xtr_jax.data.formats import (  # noqa: F401  (the names this module has always offered)
  CORPUS_HEADER,
  SWIM_IR_KEYS,
  DprExample,
  GeneratedQueries,
  Passage,
  ReadStats,
  SwimIrRecord,
  passage_text,
  read_corpus,
  read_dpr,
  read_generated_queries,
  read_qrels,
  read_swim_ir,
)
from xtr_jax.data.formats import FormatError as RecordError  # noqa: F401
from xtr_jax.data.formats import Query as XorQuery
from xtr_jax.data.formats import iter_queries as _iter_queries


def read_xor_queries(
  path: formats.PathLike, *, skip_bad_records: bool = False, stats: ReadStats | None = None
) -> Iterator[XorQuery]:
  """XOR-Retrieve query JSONL (``id, question, lang[, answers]``; answers empty for test)."""
  return _iter_queries(path, skip_bad_records=skip_bad_records, stats=stats)
