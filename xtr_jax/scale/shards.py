"""Corpus shards by byte range and atomic, resumable per-shard outputs (no Beam needed).

Why: a Beam (or any) worker must read only its part of an 18M-passage TSV and a rerun must
skip finished work. The driver scans the corpus once for the byte offset of every
``shard_size``-th row; each shard is then read with one seek. A shard is finished when its
``done`` marker exists; the marker is written (atomically) after all the shard's files.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

from xtr_jax import io as xio
from xtr_jax.data import formats
from xtr_jax.io import atomic_write_json


@dataclasses.dataclass(frozen=True)
class ShardSpec:
  """Rows ``[first_row, first_row + num_rows)`` of the corpus, at byte ``offset``."""

  index: int
  first_row: int
  num_rows: int
  offset: int


# A shard's rows are corpus passages, parsed by the one corpus reader's rules.
Row = formats.Passage


def plan_shards(corpus: str, shard_size: int) -> list[ShardSpec]:
  """One streaming pass over the TSV: a ShardSpec per ``shard_size`` rows."""
  specs, row, first, offset = [], 0, 0, 0
  with xio.open_file(corpus, "rb") as f:
    formats.corpus_columns(f.readline().decode("utf-8"), f"{corpus}:1")
    offset = f.tell()
    start = offset
    for line in iter(f.readline, b""):
      if not line.rstrip(b"\r\n"):  # blank: the corpus reader skips it too
        offset += len(line)
        continue
      if row - first == shard_size:
        specs.append(ShardSpec(len(specs), first, row - first, start))
        first, start = row, offset
      row += 1
      offset += len(line)
  if row > first:
    specs.append(ShardSpec(len(specs), first, row - first, start))
  return specs


def read_shard(corpus: str, spec: ShardSpec) -> list[Row]:
  """The shard's rows (one seek, ``num_rows`` non-empty lines)."""
  with xio.open_file(corpus, "rb") as f:
    columns = formats.corpus_columns(f.readline().decode("utf-8"), f"{corpus}:1")
    f.seek(spec.offset)
    rows: list[Row] = []
    while len(rows) < spec.num_rows:
      line = f.readline()
      if not line:
        raise ValueError(f"{corpus}: shard {spec.index} ends early; the corpus changed")
      text = line.decode("utf-8")
      if not text.rstrip("\r\n"):
        continue
      rows.append(columns.row(text, f"{corpus}: row {spec.first_row + len(rows)}"))
  return rows


def done_path(out_dir: str, index: int) -> str:
  return xio.join(out_dir, f"done_{index:05d}.json")


def is_done(out_dir: str, index: int) -> bool:
  return xio.isfile(done_path(out_dir, index))


def mark_done(out_dir: str, index: int, stats: dict) -> None:
  atomic_write_json(done_path(out_dir, index), stats)


def pending(out_dir: str, specs: list[ShardSpec]) -> Iterator[ShardSpec]:
  return (s for s in specs if not is_done(out_dir, s.index))


def finished_stats(out_dir: str, specs: list[ShardSpec]) -> list[dict]:
  out = []
  for s in specs:
    out.append(json.loads(xio.read_text(done_path(out_dir, s.index))))
  return out
