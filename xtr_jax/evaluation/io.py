"""Readers and writers for the files evaluation consumes: runs, XOR predictions, queries, qrels.

Every reader checks each line and raises ``FormatError`` naming the file and line number, so a
malformed run fails loudly instead of silently scoring zero. Writers are atomic (temp + rename).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence

PathLike = str | os.PathLike

# qid -> [(pid, score)] best first.
Run = dict[str, list[tuple[str, float]]]
# qid -> {pid: relevance}.
Qrels = dict[str, dict[str, int]]


class FormatError(ValueError):
  """A malformed input file; the message names the file and the line."""


@dataclasses.dataclass(frozen=True)
class Query:
  id: str
  lang: str
  question: str
  answers: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class XorPrediction:
  """One record of the official XOR-Retrieve prediction JSON."""

  id: str
  lang: str
  ctxs: tuple[str, ...]


def _check_file(path: PathLike, what: str) -> pathlib.Path:
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"{what} file not found: {path}")
  return path


def atomic_write_text(path: PathLike, text: str) -> None:
  """Writes ``text`` to ``path`` via a temp file in the same folder and ``os.replace``."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      f.write(text)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def _lines(path: pathlib.Path) -> Iterator[tuple[int, str]]:
  """(line number, text) per line; invalid UTF-8 is a ``FormatError`` naming the line.

  Decoded one line at a time so the error has a line number; a leading UTF-8 BOM is dropped.
  """
  with open(path, "rb") as f:
    for lineno, raw in enumerate(f, 1):
      if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
      try:
        yield lineno, raw.decode("utf-8")
      except UnicodeDecodeError as e:
        raise FormatError(f"{path}:{lineno}: invalid UTF-8 at byte {e.start} of the line") from None


# ----------------------------------------------------------------------------- TREC runs


def read_trec_run(path: PathLike) -> Run:
  """Reads ``qid Q0 pid rank score tag``; each query's list is sorted by score, then rank.

  Score order is what trec_eval (and so ir-measures) uses; the rank column breaks ties.
  """
  path = _check_file(path, "run")
  rows: dict[str, list[tuple[float, int, str]]] = {}
  seen: dict[str, set[str]] = {}
  for lineno, line in _lines(path):
    if not line.strip():
      continue
    parts = line.split()
    if len(parts) != 6:
      raise FormatError(
        f"{path}:{lineno}: expected 6 fields 'qid Q0 pid rank score tag', got {len(parts)}: "
        f"{line.rstrip()!r}"
      )
    qid, _, pid, rank, score, _ = parts
    try:
      rank_i, score_f = int(rank), float(score)
    except ValueError:
      raise FormatError(
        f"{path}:{lineno}: rank must be an int and score a float, got rank={rank!r} score={score!r}"
      ) from None
    if score_f != score_f:  # NaN has no order: sorting with it would scramble the ranking
      raise FormatError(f"{path}:{lineno}: score is NaN")
    if pid in seen.setdefault(qid, set()):
      raise FormatError(f"{path}:{lineno}: passage {pid!r} appears twice for query {qid!r}")
    seen[qid].add(pid)
    rows.setdefault(qid, []).append((-score_f, rank_i, pid))
  return {qid: [(pid, -neg) for neg, _, pid in sorted(r)] for qid, r in rows.items()}


def format_trec_run(run: Mapping[str, Sequence[tuple[str, float]]], tag: str = "xtr_jax") -> str:
  lines = []
  for qid, ranked in run.items():
    for rank, (pid, score) in enumerate(ranked, 1):
      lines.append(f"{qid} Q0 {pid} {rank} {score:.6f} {tag}")
  return "\n".join(lines) + ("\n" if lines else "")


def write_trec_run(
  path: PathLike, run: Mapping[str, Sequence[tuple[str, float]]], tag: str = "xtr_jax"
) -> None:
  """Writes a TREC run atomically; ``run[qid]`` must already be best first."""
  atomic_write_text(path, format_trec_run(run, tag))


# ----------------------------------------------------------------------------- qrels


def read_qrels(path: PathLike) -> Qrels:
  """Reads ``qid 0 pid rel`` lines."""
  path = _check_file(path, "qrels")
  qrels: Qrels = {}
  for lineno, line in _lines(path):
    if not line.strip():
      continue
    parts = line.split()
    if len(parts) != 4:
      raise FormatError(
        f"{path}:{lineno}: expected 4 fields 'qid 0 pid rel', got {len(parts)}: {line.rstrip()!r}"
      )
    qid, _, pid, rel = parts
    try:
      qrels.setdefault(qid, {})[pid] = int(rel)
    except ValueError:
      raise FormatError(f"{path}:{lineno}: relevance must be an int, got {rel!r}") from None
  return qrels


# ----------------------------------------------------------------------------- queries


def read_queries(path: PathLike) -> dict[str, Query]:
  """Reads XOR-layout JSONL queries (``id, lang, question[, answers]``), keyed by id."""
  path = _check_file(path, "queries")
  queries: dict[str, Query] = {}
  for lineno, line in _lines(path):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      raise FormatError(f"{path}:{lineno}: not valid JSON: {e}") from None
    if not isinstance(record, dict):
      raise FormatError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
    missing = [k for k in ("id", "lang", "question") if k not in record]
    if missing:
      raise FormatError(f"{path}:{lineno}: query record lacks field(s) {missing}")
    answers = record.get("answers", [])
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
      raise FormatError(f"{path}:{lineno}: 'answers' must be a list of strings, got {answers!r}")
    qid = str(record["id"])
    if qid in queries:
      raise FormatError(f"{path}:{lineno}: duplicate query id {qid!r}")
    queries[qid] = Query(qid, str(record["lang"]), str(record["question"]), tuple(answers))
  return queries


# ----------------------------------------------------------------------------- XOR predictions


def read_xor_predictions(path: PathLike) -> list[XorPrediction]:
  """Reads the official prediction JSON: a list of ``{"id", "lang", "ctxs": [text, ...]}``.

  ``ctxs`` entries may also be DPR-style objects with a ``text`` field.
  """
  path = _check_file(path, "XOR prediction")
  try:
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
  except json.JSONDecodeError as e:
    raise FormatError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from None
  if not isinstance(data, list):
    raise FormatError(f"{path}: expected a JSON list of predictions, got {type(data).__name__}")
  preds = []
  for i, item in enumerate(data):
    where = f"{path}: prediction #{i}"
    if not isinstance(item, dict) or any(k not in item for k in ("id", "lang", "ctxs")):
      raise FormatError(f"{where}: needs 'id', 'lang' and 'ctxs', got {str(item)[:200]!r}")
    ctxs = []
    for j, ctx in enumerate(item["ctxs"]):
      if isinstance(ctx, dict) and isinstance(ctx.get("text"), str):
        ctx = ctx["text"]
      if not isinstance(ctx, str):
        raise FormatError(f"{where} (id {item['id']!r}): ctxs[{j}] is not a passage text")
      ctxs.append(ctx)
    preds.append(XorPrediction(str(item["id"]), str(item["lang"]), tuple(ctxs)))
  return preds


def write_xor_predictions(path: PathLike, preds: Iterable[XorPrediction]) -> None:
  records = [{"id": p.id, "lang": p.lang, "ctxs": list(p.ctxs)} for p in preds]
  atomic_write_text(path, json.dumps(records, ensure_ascii=False))


# ----------------------------------------------------------------------------- corpus


def iter_corpus(path: PathLike) -> Iterator[tuple[str, str, str]]:
  """Streams (id, text, title) from a ``id\ttext\ttitle`` TSV with a header row."""
  path = _check_file(path, "corpus")
  lines = _lines(path)
  header = next(lines, (1, ""))[1].rstrip("\r\n").split("\t")
  if "id" not in header or "text" not in header:
    raise FormatError(f"{path}:1: header must name columns 'id' and 'text', got {header}")
  id_col, text_col = header.index("id"), header.index("text")
  title_col = header.index("title") if "title" in header else None
  for lineno, line in lines:
    line = line.rstrip("\r\n")
    if not line:
      continue
    parts = line.split("\t")
    if len(parts) != len(header):
      raise FormatError(
        f"{path}:{lineno}: expected {len(header)} tab-separated fields {header}, got {len(parts)}"
      )
    yield parts[id_col], parts[text_col], "" if title_col is None else parts[title_col]


def read_corpus_texts(path: PathLike, ids: Iterable[str] | None = None) -> dict[str, str]:
  """Streams a corpus TSV keeping only the passages in ``ids`` (all with ``ids=None``).

  Raises if an id that was asked for is not in the corpus.
  """
  wanted = None if ids is None else set(ids)
  texts = {pid: text for pid, text, _ in iter_corpus(path) if wanted is None or pid in wanted}
  if wanted is not None:
    missing = wanted - texts.keys()
    if missing:
      raise KeyError(
        f"{len(missing)} passage id(s) of the run are not in corpus {path}, "
        f"e.g. {sorted(missing)[:5]}"
      )
  return texts


def run_to_xor_predictions(
  run: Run, queries: Mapping[str, Query], corpus_path: PathLike, depth: int | None = None
) -> list[XorPrediction]:
  """Turns a TREC run into official-format predictions, looking texts up in the corpus.

  The language comes from the queries file; run queries absent from it are an error.
  """
  unknown = [qid for qid in run if qid not in queries]
  if unknown:
    raise KeyError(
      f"{len(unknown)} run query id(s) are not in the queries file, e.g. {unknown[:5]}"
    )
  ranked = {qid: [pid for pid, _ in r[:depth]] for qid, r in run.items()}
  texts = read_corpus_texts(corpus_path, {pid for r in ranked.values() for pid in r})
  return [
    XorPrediction(qid, queries[qid].lang, tuple(texts[pid] for pid in pids))
    for qid, pids in ranked.items()
  ]
