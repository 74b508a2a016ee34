"""Streaming readers for the on-disk formats (SWIM-IR, XOR-TyDi, corpus TSV, xQG output).

Pure Python (no TensorFlow) so the index and demo wings can use them cheaply. Every reader
streams line by line; a malformed record raises ``RecordError`` naming ``file:line``, or, with
``skip_bad_records=True``, is skipped and counted in the ``ReadStats`` passed by the caller.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import logging
import os
from collections.abc import Iterable, Iterator
from typing import Any

log = logging.getLogger(__name__)

SWIM_IR_KEYS = ("_id", "lang", "code", "query", "title", "text")
XOR_QUERY_KEYS = ("id", "question", "lang")
CORPUS_HEADER = ("id", "text", "title")


class RecordError(ValueError):
  """A malformed record; the message starts with ``path:line:``."""


@dataclasses.dataclass
class ReadStats:
  """What a reader saw: records yielded and bad records skipped (with the first messages)."""

  records: int = 0
  skipped: int = 0
  errors: list[str] = dataclasses.field(default_factory=list)

  def skip(self, message: str) -> None:
    self.skipped += 1
    if len(self.errors) < 20:
      self.errors.append(message)


@dataclasses.dataclass(frozen=True)
class SwimIrRecord:
  id: str
  lang: str
  code: str
  query: str
  title: str
  text: str
  extra: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)


@dataclasses.dataclass(frozen=True)
class XorQuery:
  id: str
  question: str
  lang: str
  answers: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class Passage:
  id: str
  text: str
  title: str


@dataclasses.dataclass(frozen=True)
class DprExample:
  """A DPR-style training example (XOR's ``xor_train_full.json``): question + positive contexts."""

  question: str
  lang: str
  answers: tuple[str, ...]
  positives: tuple[Passage, ...]
  hard_negatives: tuple[Passage, ...]


@dataclasses.dataclass(frozen=True)
class GeneratedQueries:
  docid: str
  generated_queries: dict[str, list[str]]


def open_text(path: str | os.PathLike) -> io.TextIOBase:
  """Opens a text file (``.gz`` transparently), with a clear error when it is missing."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"file not found: {path}")
  if path.endswith(".gz"):
    return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
  return open(path, encoding="utf-8")


def _lines(path: str) -> Iterator[tuple[int, str | None, str]]:
  """(line number, text or None, error) per line, decoded one line at a time.

  Decoding per line (not per buffer) lets invalid UTF-8 become a ``path:line`` error that
  ``skip_bad_records`` can skip, instead of a bare UnicodeDecodeError; a UTF-8 BOM is dropped.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f"file not found: {path}")
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rb") as f:
    for lineno, raw in enumerate(f, start=1):
      if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
      try:
        yield lineno, raw.decode("utf-8"), ""
      except UnicodeDecodeError as e:
        yield lineno, None, f"{path}:{lineno}: invalid UTF-8 at byte {e.start} of the line"


def _finish(path: str, stats: ReadStats) -> None:
  if stats.skipped:
    log.warning(
      "%s: skipped %d bad record(s) (kept %d); first: %s",
      path,
      stats.skipped,
      stats.records,
      stats.errors[0],
    )


def _json_lines(
  path: str | os.PathLike, skip_bad_records: bool, stats: ReadStats
) -> Iterator[tuple[int, dict[str, Any]]]:
  """Yields (line number, JSON object) for each non-empty line."""
  path = os.fspath(path)
  for lineno, line, bad in _lines(path):
    if line is None:
      if not skip_bad_records:
        raise RecordError(bad)
      stats.skip(bad)
      continue
    if not line.strip():
      continue
    try:
      obj = json.loads(line)
      if not isinstance(obj, dict):
        raise RecordError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
    except json.JSONDecodeError as e:
      msg = f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})"
      if not skip_bad_records:
        raise RecordError(msg) from None
      stats.skip(msg)
      continue
    except RecordError as e:
      if not skip_bad_records:
        raise
      stats.skip(str(e))
      continue
    yield lineno, obj


def _check_keys(obj: dict[str, Any], keys: Iterable[str], where: str, what: str) -> None:
  missing = [k for k in keys if k not in obj]
  if missing:
    raise RecordError(
      f"{where}: {what} record is missing key(s) {', '.join(missing)}; "
      f"expected keys {', '.join(keys)} (got {', '.join(obj) or 'none'})"
    )
  for k in keys:
    if not isinstance(obj[k], str):
      raise RecordError(
        f"{where}: {what} field {k!r} must be a string, got {type(obj[k]).__name__}"
      )


def _guarded(
  path: str | os.PathLike,
  parse,
  skip_bad_records: bool,
  stats: ReadStats | None,
):
  """Runs ``parse(lineno, obj)`` on each JSON line, applying the skip/raise policy."""
  stats = stats if stats is not None else ReadStats()
  path = os.fspath(path)
  for lineno, obj in _json_lines(path, skip_bad_records, stats):
    try:
      record = parse(f"{path}:{lineno}", obj)
    except RecordError as e:
      if not skip_bad_records:
        raise
      stats.skip(str(e))
      continue
    stats.records += 1
    yield record
  _finish(path, stats)


def _parse_swim_ir(where: str, obj: dict[str, Any]) -> SwimIrRecord:
  _check_keys(obj, SWIM_IR_KEYS, where, "SWIM-IR")
  extra = {k: v for k, v in obj.items() if k not in SWIM_IR_KEYS}
  return SwimIrRecord(
    obj["_id"], obj["lang"], obj["code"], obj["query"], obj["title"], obj["text"], extra
  )


def read_swim_ir(
  path: str | os.PathLike, *, skip_bad_records: bool = False, stats: ReadStats | None = None
) -> Iterator[SwimIrRecord]:
  """SWIM-IR JSONL (``_id, lang, code, query, title, text``; extra keys kept in ``extra``)."""
  return _guarded(path, _parse_swim_ir, skip_bad_records, stats)


def _parse_xor_query(where: str, obj: dict[str, Any]) -> XorQuery:
  _check_keys(obj, XOR_QUERY_KEYS, where, "XOR-TyDi query")
  answers = obj.get("answers")
  if answers is not None:
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
      raise RecordError(f"{where}: XOR-TyDi query field 'answers' must be a list of strings")
    answers = tuple(answers)
  return XorQuery(obj["id"], obj["question"], obj["lang"], answers)


def read_xor_queries(
  path: str | os.PathLike, *, skip_bad_records: bool = False, stats: ReadStats | None = None
) -> Iterator[XorQuery]:
  """XOR-Retrieve query JSONL (``id, question, lang[, answers]``; answers absent for test)."""
  return _guarded(path, _parse_xor_query, skip_bad_records, stats)


def _parse_generated(where: str, obj: dict[str, Any]) -> GeneratedQueries:
  if not isinstance(obj.get("docid"), str):
    raise RecordError(f"{where}: generated-query record needs a string 'docid'")
  gq = obj.get("generated_queries")
  if not isinstance(gq, dict) or not all(
    isinstance(k, str) and isinstance(v, list) and all(isinstance(q, str) for q in v)
    for k, v in gq.items()
  ):
    raise RecordError(
      f"{where}: generated-query field 'generated_queries' must map language -> list of strings"
    )
  return GeneratedQueries(obj["docid"], gq)


def read_generated_queries(
  path: str | os.PathLike, *, skip_bad_records: bool = False, stats: ReadStats | None = None
) -> Iterator[GeneratedQueries]:
  """xQG output JSONL (``{"docid": ..., "generated_queries": {lang: [question, ...]}}``)."""
  return _guarded(path, _parse_generated, skip_bad_records, stats)


def _unquote(field: str) -> str:
  # DPR's psgs_w100.tsv wraps some texts in CSV-style quotes ("" escapes a quote).
  if len(field) >= 2 and field[0] == '"' and field[-1] == '"':
    return field[1:-1].replace('""', '"')
  return field


def read_corpus(
  path: str | os.PathLike, *, skip_bad_records: bool = False, stats: ReadStats | None = None
) -> Iterator[Passage]:
  """Corpus TSV ``id\\ttext\\ttitle`` with a header row, streamed one passage at a time."""
  stats = stats if stats is not None else ReadStats()
  path = os.fspath(path)
  lines = _lines(path)
  _, first, bad = next(lines, (1, "", ""))
  if first is None:
    raise RecordError(bad)
  header = first.rstrip("\r\n").split("\t")
  if tuple(h.strip().lower() for h in header) != CORPUS_HEADER:
    got = "\t".join(header)
    raise RecordError(f"{path}:1: expected the header 'id\\ttext\\ttitle', got {got!r}")
  for lineno, line, bad in lines:
    if line is None:
      if not skip_bad_records:
        raise RecordError(bad)
      stats.skip(bad)
      continue
    line = line.rstrip("\r\n")
    if not line:
      continue
    fields = line.split("\t")
    if len(fields) != 3 or not fields[0]:
      msg = (
        f"{path}:{lineno}: expected 3 tab-separated fields id\\ttext\\ttitle, got {len(fields)}"
        if len(fields) != 3
        else f"{path}:{lineno}: empty passage id"
      )
      if not skip_bad_records:
        raise RecordError(msg)
      stats.skip(msg)
      continue
    stats.records += 1
    yield Passage(fields[0], _unquote(fields[1]), _unquote(fields[2]))
  _finish(path, stats)


def _ctx(where: str, ctx: Any, i: int, kind: str) -> Passage:
  if not isinstance(ctx, dict) or not isinstance(ctx.get("text"), str):
    raise RecordError(f"{where}: {kind}[{i}] must be an object with a string 'text'")
  pid = ctx.get("passage_id", ctx.get("id", ""))
  return Passage(str(pid), ctx["text"], str(ctx.get("title", "")))


def _parse_dpr(where: str, obj: dict[str, Any]) -> DprExample:
  if not isinstance(obj.get("question"), str):
    raise RecordError(f"{where}: DPR record needs a string 'question'")
  positives = obj.get("positive_ctxs")
  if not isinstance(positives, list):
    raise RecordError(f"{where}: DPR record needs a list 'positive_ctxs'")
  hard = obj.get("hard_negative_ctxs") or []
  return DprExample(
    question=obj["question"],
    lang=str(obj.get("lang", "")),
    answers=tuple(str(a) for a in obj.get("answers", [])),
    positives=tuple(_ctx(where, c, i, "positive_ctxs") for i, c in enumerate(positives)),
    hard_negatives=tuple(_ctx(where, c, i, "hard_negative_ctxs") for i, c in enumerate(hard)),
  )


def read_dpr(
  path: str | os.PathLike, *, skip_bad_records: bool = False, stats: ReadStats | None = None
) -> Iterator[DprExample]:
  """DPR-format training data: a JSON list (``.json``, e.g. ``xor_train_full.json``) or JSONL."""
  path = os.fspath(path)
  if path.endswith(".jsonl") or path.endswith(".jsonl.gz"):
    return _guarded(path, _parse_dpr, skip_bad_records, stats)
  return _read_dpr_list(path, skip_bad_records, stats if stats is not None else ReadStats())


def _read_dpr_list(path: str, skip_bad_records: bool, stats: ReadStats) -> Iterator[DprExample]:
  with open_text(path) as f:
    try:
      data = json.load(f)
    except json.JSONDecodeError as e:
      raise RecordError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
  if not isinstance(data, list):
    raise RecordError(f"{path}: expected a JSON list of DPR records, got {type(data).__name__}")
  for i, obj in enumerate(data):
    try:
      if not isinstance(obj, dict):
        raise RecordError(f"{path}: record {i}: expected a JSON object")
      record = _parse_dpr(f"{path}: record {i}", obj)
    except RecordError as e:
      if not skip_bad_records:
        raise
      stats.skip(str(e))
      continue
    stats.records += 1
    yield record
  _finish(path, stats)


def read_qrels(path: str | os.PathLike) -> dict[str, dict[str, int]]:
  """TREC qrels ``qid 0 pid rel`` -> {qid: {pid: rel}}."""
  path = os.fspath(path)
  qrels: dict[str, dict[str, int]] = {}
  for lineno, line, bad in _lines(path):
    if line is None:
      raise RecordError(bad)
    parts = line.split()
    if not parts:
      continue
    if len(parts) != 4:
      raise RecordError(f"{path}:{lineno}: expected 4 fields 'qid 0 pid rel', got {len(parts)}")
    try:
      qrels.setdefault(parts[0], {})[parts[2]] = int(parts[3])
    except ValueError:
      raise RecordError(f"{path}:{lineno}: relevance {parts[3]!r} is not an integer") from None
  return qrels


def passage_text(title: str, text: str) -> str:
  """The text a passage is encoded as: ``title text`` (title omitted when empty)."""
  return f"{title} {text}" if title else text
