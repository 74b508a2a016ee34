"""Corpus shards by byte range and atomic, resumable per-shard outputs (no Beam needed).

Why: a Beam (or any) worker must read only its part of an 18M-passage TSV and a rerun must
skip finished work. The driver scans the corpus once for the byte offset of every
``shard_size``-th row; each shard is then read with one seek. A shard is finished when its
``done`` marker exists; the marker is written (atomically) after all the shard's files.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator

from xtr_jax.index.encode import atomic_write_json


@dataclasses.dataclass(frozen=True)
class ShardSpec:
  """Rows ``[first_row, first_row + num_rows)`` of the corpus, at byte ``offset``."""

  index: int
  first_row: int
  num_rows: int
  offset: int


@dataclasses.dataclass(frozen=True)
class Row:
  pid: str
  text: str
  title: str


def _columns(header: str) -> tuple[int, int, int | None, int]:
  cols = [c.strip().lower() for c in header.rstrip("\r\n").split("\t")]
  if "id" not in cols or "text" not in cols:
    raise ValueError(f"corpus header {cols!r} lacks 'id' and 'text' columns")
  return (
    cols.index("id"),
    cols.index("text"),
    cols.index("title") if "title" in cols else None,
    len(cols),
  )


def plan_shards(corpus: str, shard_size: int) -> list[ShardSpec]:
  """One streaming pass over the TSV: a ShardSpec per ``shard_size`` rows."""
  specs, row, first, offset = [], 0, 0, 0
  with open(corpus, "rb") as f:
    f.readline()
    offset = f.tell()
    start = offset
    for line in iter(f.readline, b""):
      if not line.strip():
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
  with open(corpus, "rb") as f:
    i_id, i_text, i_title, n = _columns(f.readline().decode("utf-8"))
    f.seek(spec.offset)
    rows: list[Row] = []
    while len(rows) < spec.num_rows:
      line = f.readline()
      if not line:
        raise ValueError(f"{corpus}: shard {spec.index} ends early; the corpus changed")
      fields = line.decode("utf-8").rstrip("\r\n").split("\t")
      if fields == [""]:
        continue
      if len(fields) != n:
        raise ValueError(f"{corpus}: row {spec.first_row + len(rows)} has {len(fields)} fields")
      title = fields[i_title] if i_title is not None else ""
      rows.append(Row(fields[i_id], fields[i_text], title))
  return rows


def done_path(out_dir: str, index: int) -> str:
  return os.path.join(out_dir, f"done_{index:05d}.json")


def is_done(out_dir: str, index: int) -> bool:
  return os.path.isfile(done_path(out_dir, index))


def mark_done(out_dir: str, index: int, stats: dict) -> None:
  atomic_write_json(done_path(out_dir, index), stats)


def pending(out_dir: str, specs: list[ShardSpec]) -> Iterator[ShardSpec]:
  return (s for s in specs if not is_done(out_dir, s.index))


def finished_stats(out_dir: str, specs: list[ShardSpec]) -> list[dict]:
  out = []
  for s in specs:
    with open(done_path(out_dir, s.index)) as f:
      out.append(json.load(f))
  return out
