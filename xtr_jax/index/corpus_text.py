"""Titles and texts of an index's passages, read on demand from the corpus it was built from.

An index keeps vectors and passage ids, not text; its manifest records the corpus TSV
(``corpus``). ``CorpusTexts`` scans that file once for the byte offset of every passage row
(8 bytes a passage) and reads a row when asked, so serving titles for a large corpus does not
hold the corpus in memory. Rows are parsed and counted as ``data.formats.read_corpus`` does (header
skipped, blank lines ignored), and every read checks the row's id against the index's, so a
corpus edited after the build gives no text rather than another passage's.
"""

from __future__ import annotations

import logging
import os
import threading

import numpy as np

from xtr_jax.data import formats
from xtr_jax.data.formats import Passage


class CorpusTexts:
  """Row -> ``Passage`` (id, text, title) of a TSV corpus ``id\\ttext\\ttitle``."""

  def __init__(self, path: str, passage_ids: list[str]):
    self.path = path
    self.passage_ids = passage_ids
    self._file = open(path, "rb")  # noqa: SIM115  (kept open for the service's lifetime)
    self._lock = threading.Lock()
    header = self._file.readline().decode("utf-8")
    self._columns = formats.corpus_columns(header, f"{path}:1")
    offsets, at = [], self._file.tell()
    for line in self._file:
      if line.strip(b"\r\n"):
        offsets.append(at)
      at += len(line)
    self.offsets = np.asarray(offsets, np.int64)
    if len(offsets) != len(passage_ids):
      logging.warning(
        "%s has %d passages but the index %d; titles and texts are not shown",
        path, len(offsets), len(passage_ids),
      )  # fmt: skip
      self.offsets = np.zeros((0,), np.int64)

  @classmethod
  def for_index(cls, index) -> CorpusTexts | None:
    """The texts of ``index`` (a ``TokenIndex``), or None when its corpus is not at hand."""
    path = index.manifest.get("corpus")
    if not path or not os.path.isfile(path):
      logging.warning("index %s: corpus %r not found; results carry no text", index.directory, path)
      return None
    return cls(path, index.passage_ids)

  def get(self, row: int) -> Passage | None:
    """The passage at ``row``, or None when unknown (row out of range, id mismatch)."""
    if not 0 <= row < self.offsets.shape[0]:
      return None
    with self._lock:
      self._file.seek(int(self.offsets[row]))
      line = self._file.readline().decode("utf-8", errors="replace")
    try:
      p = self._columns.row(line, f"{self.path}: row {row}")
    except formats.FormatError:
      return None
    return p if p.id == self.passage_ids[row] else None

  def close(self) -> None:
    self._file.close()
