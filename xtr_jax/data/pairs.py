"""Pair files: SWIM-IR-layout JSONL (``query`` + ``title``/``text`` per line, ``_id`` and
``code`` optional) as records, and their deterministic train/validation split.

Pure Python (no TensorFlow): the vocabulary trainer, the projection initialiser and the sweep
read pairs through it too; ``sources.jsonl_pairs`` makes them a seqio source.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator

from xtr_jax import io as xio
from xtr_jax.data import languages
from xtr_jax.data.formats import passage_text

PAIR_SPLITS = ("train", "validation")


def iter_pair_rows(path: str) -> Iterator[tuple[int, dict]]:
  """(line number, raw record) of one SWIM-IR-layout JSONL file, with string query and text."""
  with xio.open_file(path) as f:
    for lineno, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
      if not isinstance(row, dict):
        raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
      missing = [k for k in ("query", "text") if not isinstance(row.get(k), str)]
      if missing:
        raise ValueError(f"{path}:{lineno}: record lacks string field(s) {missing}")
      yield lineno, row


def pair_files(pattern: str) -> list[str]:
  """The files of a glob or several comma-separated globs; each must match at least one."""
  paths: list[str] = []
  for part in (p.strip() for p in pattern.split(",")):
    matched = sorted(xio.glob(part))
    if not matched:
      raise FileNotFoundError(f"no pair files match {part!r}")
    paths += [m for m in matched if m not in paths]
  return paths


def read_pairs(pattern: str) -> list[dict[str, str]]:
  """(id, query, passage, title, text, code) records of pair files; errors name file and line.

  ``pattern`` is a glob or several comma-separated globs (e.g. the real pairs plus extra
  xQG pairs). An id defaults to ``file:line``.
  """
  records = []
  for path in pair_files(pattern):
    for lineno, row in iter_pair_rows(path):
      title = row.get("title") or ""
      records.append(
        {
          "id": str(row.get("_id", f"{os.path.basename(path)}:{lineno}")),
          "query": row["query"],
          "passage": f"{title} {row['text']}".strip(),
          "title": title,
          "text": row["text"],
          "code": str(row.get("code") or ""),
        }
      )
  return records


def is_heldout(record_id: str, fraction: float) -> bool:
  """Stable split by a hash of the id, independent of file order."""
  h = int(hashlib.sha1(record_id.encode("utf-8")).hexdigest()[:8], 16)
  return h / 0xFFFFFFFF < fraction


def split_pairs(
  records: list[dict[str, str]], split: str, heldout_fraction: float, where: str = "pair files"
) -> list[dict[str, str]]:
  """The ``train`` or ``validation`` records (``validation``: the hash-held-out fraction)."""
  if split not in PAIR_SPLITS:
    raise ValueError(f"{where} has no split {split!r}; valid splits: {', '.join(PAIR_SPLITS)}")
  return [r for r in records if is_heldout(r["id"], heldout_fraction) == (split == "validation")]


def lowercased(records: list[dict[str, str]]) -> list[dict[str, str]]:
  fields = ("query", "passage", "title", "text")
  return [{**r, **{k: r[k].lower() for k in fields}} for r in records]


def pair_rows(records: list[dict[str, str]], xqg_prompt: str | None = None) -> list[dict]:
  """Dual-encoder rows (``PAIR_SIGNATURE``), or with ``xqg_prompt`` (a template with
  ``{language}``) passage -> question rows (``SEQ2SEQ_SIGNATURE``) for xQG."""
  if xqg_prompt is None:
    return [
      {"query_id": r["id"], "query": r["query"], "passage_id": r["id"],
       "passage": r["passage"], "lang": r["code"]}
      for r in records
    ]  # fmt: skip
  missing = [r["id"] for r in records if not r["code"]]
  if missing:
    raise ValueError(f"seq2seq pairs need a language 'code'; missing in {missing[:3]}")
  return [
    {"inputs": xqg_prompt.format(language=languages.language_name(r["code"]))
     + passage_text(r["title"], r["text"]),
     "targets": r["query"], "passage_id": r["id"], "lang": r["code"]}
    for r in records
  ]  # fmt: skip
