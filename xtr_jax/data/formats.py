"""One reader (and writer) per on-disk format, shared by every wing.

Formats: the corpus TSV, queries (XOR JSONL or ``id\\tquestion`` TSV), TREC qrels, TREC runs,
pair JSONL (the SWIM-IR record layout), xQG's generated-questions JSONL and DPR training JSON.
Before this module the index, evaluation, scale and experiment wings each read the corpus
their own way and disagreed on quoting; now there is one rule per format, written down here.

Every reader names ``file:line`` in its error (``FormatError``, a ``ValueError``); the
streaming ones take ``skip_bad_records=True`` to skip and count bad records in a ``ReadStats``
instead. Files open through ``xtr_jax.io`` (local or ``gs://``; ``.gz`` transparently); a
UTF-8 BOM is dropped; invalid UTF-8 is an error naming the line. Writers are atomic.

ir-measures' ``read_trec_run`` / ``read_trec_qrels`` parse the same TREC files but give no
line numbers and accept a NaN score or a passage listed twice for a query, so runs and qrels
are read here; tests/test_formats.py checks both readers agree on well-formed files.

Corpus TSV (the XOR-TyDi / DPR ``psgs_w100.tsv`` layout), the settled rules:
  * a header row names the columns; ``id`` and ``text`` are required, ``title`` is optional,
    any order, case-insensitive; other columns are ignored;
  * one passage per line (``\\n`` or ``\\r\\n``); blank lines are skipped; every row has the
    header's number of tab-separated fields; an empty id is an error;
  * quoting: a field is unquoted only when it is a well-formed CSV quoted field: it starts
    and ends with ``"`` and every ``"`` inside comes as a doubled ``""`` (DPR's writer
    quotes that way: ``"Aaron ( or ; ""Ahärôn"") is..."`` -> ``Aaron ( or ; "Ahärôn") is...``).
    Any other field is taken literally, so a text that merely starts and ends with a quote
    (``"Newsweek" named ... 2008."`` in XOR-TyDi) keeps its quotes. A quoted field cannot
    hold a tab or a line break (none of the released corpora has one).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from xtr_jax import io as xio

log = logging.getLogger(__name__)

PathLike = xio.PathLike

SWIM_IR_KEYS = ("_id", "lang", "code", "query", "title", "text")
CORPUS_HEADER = ("id", "text", "title")

# qid -> [(pid, score)] best first.
Run = dict[str, list[tuple[str, float]]]
# qid -> {pid: relevance}.
Qrels = dict[str, dict[str, int]]


class FormatError(ValueError):
  """A malformed input file; the message starts with ``path:line:``."""


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


class Passage(NamedTuple):
  """A corpus passage; a tuple too, so ``for pid, text, title in read_corpus(p)`` works."""

  id: str
  text: str
  title: str


@dataclasses.dataclass(frozen=True)
class Query:
  """A query; ``lang`` is "" and ``answers`` empty where the file does not give them."""

  id: str
  lang: str
  question: str
  answers: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class SwimIrRecord:
  """One pair JSONL record: a query and the passage it was written for."""

  id: str
  lang: str
  code: str
  query: str
  title: str
  text: str
  extra: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)


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


def passage_text(title: str, text: str, template: str | None = None, id: str = "") -> str:
  """The text a passage is trained on and encoded as: ``title text`` (title omitted when
  empty), the one rule every wing uses so that an index sees what training saw. An index may
  record another ``template`` (``EncodeParams.passage_template``, with ``{title}``, ``{text}``
  and ``{id}``; the result stripped)."""
  if template is None:
    return f"{title} {text}" if title else text
  return template.format(title=title, text=text, id=id).strip()


# ----------------------------------------------------------------------------- lines


def check_file(path: PathLike, what: str) -> str:
  """``path`` as a string; a missing file is a FileNotFoundError naming ``what``."""
  path = os.fspath(path)
  if not xio.isfile(path):
    raise FileNotFoundError(f"{what} file not found: {path}")
  return path


def _lines(path: str) -> Iterator[tuple[int, str | None, str]]:
  """(line number, text or None, error) per line, decoded one line at a time.

  Decoding per line (not per buffer) lets invalid UTF-8 become a ``path:line`` error that
  ``skip_bad_records`` can skip, instead of a bare UnicodeDecodeError.
  """
  with xio.open_file(path, "rb") as raw_file:
    f = gzip.GzipFile(fileobj=raw_file) if path.endswith(".gz") else raw_file
    for lineno, raw in enumerate(f, start=1):
      if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
      try:
        yield lineno, raw.decode("utf-8"), ""
      except UnicodeDecodeError as e:
        yield lineno, None, f"{path}:{lineno}: invalid UTF-8 at byte {e.start} of the line"


def _strict_lines(path: str) -> Iterator[tuple[int, str]]:
  for lineno, line, bad in _lines(path):
    if line is None:
      raise FormatError(bad)
    yield lineno, line


def _finish(path: str, stats: ReadStats) -> None:
  if stats.skipped:
    log.warning(
      "%s: skipped %d bad record(s) (kept %d); first: %s",
      path,
      stats.skipped,
      stats.records,
      stats.errors[0],
    )


def _skip_or_raise(message: str, skip_bad_records: bool, stats: ReadStats) -> None:
  if not skip_bad_records:
    raise FormatError(message)
  stats.skip(message)


# ----------------------------------------------------------------------------- JSON lines


def _json_lines(
  path: str, skip_bad_records: bool, stats: ReadStats
) -> Iterator[tuple[int, dict[str, Any]]]:
  """Yields (line number, JSON object) for each non-empty line."""
  for lineno, line, bad in _lines(path):
    if line is None:
      _skip_or_raise(bad, skip_bad_records, stats)
      continue
    if not line.strip():
      continue
    try:
      obj = json.loads(line)
    except json.JSONDecodeError as e:
      msg = f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})"
      _skip_or_raise(msg, skip_bad_records, stats)
      continue
    if not isinstance(obj, dict):
      msg = f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}"
      _skip_or_raise(msg, skip_bad_records, stats)
      continue
    yield lineno, obj


def _parsed(path: str, items, parse, skip_bad_records: bool, stats: ReadStats):
  """``parse(where, obj)`` of each ``(where, obj)``, applying the skip/raise policy."""
  for where, obj in items:
    try:
      record = parse(where, obj)
    except FormatError as e:
      _skip_or_raise(str(e), skip_bad_records, stats)
      continue
    stats.records += 1
    yield record
  _finish(path, stats)


def _guarded(path: PathLike, what: str, parse, skip_bad_records: bool, stats: ReadStats | None):
  """Runs ``parse(where, obj)`` on each JSON line, applying the skip/raise policy."""
  stats = stats if stats is not None else ReadStats()
  path = check_file(path, what)
  lines = _json_lines(path, skip_bad_records, stats)
  items = ((f"{path}:{lineno}", obj) for lineno, obj in lines)
  return _parsed(path, items, parse, skip_bad_records, stats)


def _check_keys(obj: dict[str, Any], keys: Iterable[str], where: str, what: str) -> None:
  missing = [k for k in keys if k not in obj]
  if missing:
    raise FormatError(
      f"{where}: {what} record is missing key(s) {', '.join(missing)}; "
      f"expected keys {', '.join(keys)} (got {', '.join(obj) or 'none'})"
    )
  for k in keys:
    if not isinstance(obj[k], str):
      raise FormatError(
        f"{where}: {what} field {k!r} must be a string, got {type(obj[k]).__name__}"
      )


def write_jsonl(path: PathLike, records: Iterable[Mapping[str, Any]]) -> None:
  """One JSON object per line (UTF-8, not ASCII-escaped), written atomically."""
  xio.atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


# ----------------------------------------------------------------------------- pair JSONL


def _parse_swim_ir(where: str, obj: dict[str, Any]) -> SwimIrRecord:
  _check_keys(obj, SWIM_IR_KEYS, where, "SWIM-IR")
  extra = {k: v for k, v in obj.items() if k not in SWIM_IR_KEYS}
  return SwimIrRecord(
    obj["_id"], obj["lang"], obj["code"], obj["query"], obj["title"], obj["text"], extra
  )


def read_swim_ir(
  path: PathLike, *, skip_bad_records: bool = False, stats: ReadStats | None = None
) -> Iterator[SwimIrRecord]:
  """Pair JSONL in the SWIM-IR layout (``_id, lang, code, query, title, text``; extra keys
  such as ``source`` kept in ``extra``)."""
  return _guarded(path, "pairs", _parse_swim_ir, skip_bad_records, stats)


# ----------------------------------------------------------------------------- generated questions


def _parse_generated(where: str, obj: dict[str, Any]) -> GeneratedQueries:
  if not isinstance(obj.get("docid"), str):
    raise FormatError(f"{where}: generated-query record needs a string 'docid'")
  gq = obj.get("generated_queries")
  if not isinstance(gq, dict) or not all(
    isinstance(k, str) and isinstance(v, list) and all(isinstance(q, str) for q in v)
    for k, v in gq.items()
  ):
    raise FormatError(
      f"{where}: generated-query field 'generated_queries' must map language -> list of strings"
    )
  return GeneratedQueries(obj["docid"], gq)


def read_generated_queries(
  path: PathLike, *, skip_bad_records: bool = False, stats: ReadStats | None = None
) -> Iterator[GeneratedQueries]:
  """xQG output JSONL (``{"docid": ..., "generated_queries": {lang: [question, ...]}}``)."""
  return _guarded(path, "generated-queries", _parse_generated, skip_bad_records, stats)


def generated_queries_line(docid: str, generated: Mapping[str, Sequence[str]]) -> str:
  """One line of the generated-questions JSONL (what ``read_generated_queries`` reads)."""
  record = {"docid": docid, "generated_queries": {k: list(v) for k, v in generated.items()}}
  return json.dumps(record, ensure_ascii=False) + "\n"


# ----------------------------------------------------------------------------- queries


def _parse_query(where: str, obj: dict[str, Any], require_lang: bool) -> Query:
  needed = ("id", "lang", "question") if require_lang else ("id", "question")
  missing = [k for k in needed if k not in obj]
  if missing:
    raise FormatError(f"{where}: query record lacks field(s) {missing}")
  if not isinstance(obj["question"], str):
    raise FormatError(f"{where}: query field 'question' must be a string")
  lang = obj.get("lang", "")
  if not isinstance(lang, str):
    raise FormatError(f"{where}: query field 'lang' must be a string")
  answers = obj.get("answers", [])
  if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
    raise FormatError(f"{where}: query field 'answers' must be a list of strings, got {answers!r}")
  return Query(str(obj["id"]), lang, obj["question"], tuple(answers))


def _tsv_query(where: str, line: str) -> Query:
  fields = line.rstrip("\r\n").split("\t")
  if len(fields) != 2 or not fields[0]:
    raise FormatError(
      f"{where}: expected 2 tab-separated fields 'id\\tquestion', got {len(fields)}"
    )
  return Query(fields[0], "", fields[1])


def _tsv_queries(path: str, skip_bad_records: bool, stats: ReadStats) -> Iterator[Query]:
  rows = _data_lines(path, _lines(path), skip_bad_records, stats)
  return _parsed(path, rows, _tsv_query, skip_bad_records, stats)


def iter_queries(
  path: PathLike,
  *,
  require_lang: bool = True,
  skip_bad_records: bool = False,
  stats: ReadStats | None = None,
) -> Iterator[Query]:
  """Queries in file order: XOR JSONL (``id, lang, question[, answers]``) or, for ``.tsv``,
  ``id\\tquestion`` lines without a header (no language; ``require_lang`` does not apply)."""
  path = os.fspath(path)
  if path.endswith(".tsv"):
    return _tsv_queries(check_file(path, "queries"), skip_bad_records, stats or ReadStats())
  return _guarded(
    path,
    "queries",
    lambda where, obj: _parse_query(where, obj, require_lang),
    skip_bad_records,
    stats,
  )


def read_queries(path: PathLike, *, require_lang: bool = True) -> dict[str, Query]:
  """All queries keyed by id, in file order; a repeated id is an error naming its line."""
  path = check_file(path, "queries")
  queries: dict[str, Query] = {}
  for q in iter_queries(path, require_lang=require_lang):
    if q.id in queries:
      raise FormatError(f"{path}:{_line_of_id(path, q.id)}: duplicate query id {q.id!r}")
    queries[q.id] = q
  return queries


def _line_of_id(path: str, qid: str) -> int:
  """The line where ``qid`` appears the second time (only on the error path)."""
  seen = 0
  for lineno, line in _strict_lines(path):
    if not line.strip():
      continue
    rid = line.split("\t", 1)[0] if path.endswith(".tsv") else str(json.loads(line).get("id"))
    if rid == qid:
      seen += 1
      if seen == 2:
        return lineno
  return 0


# ----------------------------------------------------------------------------- qrels


def read_qrels(path: PathLike) -> Qrels:
  """TREC qrels ``qid 0 pid rel`` -> {qid: {pid: rel}}."""
  path = check_file(path, "qrels")
  qrels: Qrels = {}
  for lineno, line in _strict_lines(path):
    parts = line.split()
    if not parts:
      continue
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


# ----------------------------------------------------------------------------- TREC runs


def read_trec_run(path: PathLike) -> Run:
  """Reads ``qid Q0 pid rank score tag``; each query's list is sorted by score, then rank.

  Score order is what trec_eval (and so ir-measures) uses; the rank column breaks ties.
  """
  path = check_file(path, "run")
  rows: dict[str, list[tuple[float, int, str]]] = {}
  seen: dict[str, set[str]] = {}
  for lineno, line in _strict_lines(path):
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
  """``qid Q0 pid rank score tag`` lines; ``run[qid]`` must already be best first."""
  lines = []
  for qid, ranked in run.items():
    for rank, (pid, score) in enumerate(ranked, 1):
      lines.append(f"{qid} Q0 {pid} {rank} {score:.6f} {tag}")
  return "\n".join(lines) + ("\n" if lines else "")


def write_trec_run(
  path: PathLike, run: Mapping[str, Sequence[tuple[str, float]]], tag: str = "xtr_jax"
) -> None:
  """Writes a TREC run atomically (the folder is created); ``run[qid]`` best first."""
  xio.atomic_write_text(path, format_trec_run(run, tag))


# ----------------------------------------------------------------------------- corpus TSV


@dataclasses.dataclass(frozen=True)
class CorpusColumns:
  """Where ``id``, ``text`` and ``title`` stand in a corpus header, and how many fields."""

  names: tuple[str, ...]
  id: int
  text: int
  title: int | None

  def row(self, line: str, where: str) -> Passage:
    """Parses one (non-blank) data line; ``where`` is ``path:line`` for the error."""
    fields = line.rstrip("\r\n").split("\t")
    if len(fields) != len(self.names):
      shown = "\\t".join(self.names)
      raise FormatError(
        f"{where}: expected {len(self.names)} tab-separated fields {shown}, got {len(fields)}"
      )
    if not fields[self.id]:
      raise FormatError(f"{where}: empty passage id")
    title = "" if self.title is None else unquote_field(fields[self.title])
    return Passage(fields[self.id], unquote_field(fields[self.text]), title)


def corpus_columns(header: str, where: str) -> CorpusColumns:
  """The columns a corpus header names (``id`` and ``text`` required, ``title`` optional)."""
  names = tuple(h.strip().lower() for h in header.rstrip("\r\n").split("\t"))
  if "id" not in names or "text" not in names:
    shown = "\t".join(names)
    raise FormatError(
      f"{where}: header must name columns 'id' and 'text' (e.g. 'id\\ttext\\ttitle'), got {shown!r}"
    )
  title = names.index("title") if "title" in names else None
  return CorpusColumns(names, names.index("id"), names.index("text"), title)


def unquote_field(field: str) -> str:
  """Undoes DPR's CSV quoting of one field; any other field is returned as it is."""
  if len(field) >= 2 and field[0] == '"' and field[-1] == '"':
    inner = field[1:-1]
    if '"' not in inner.replace('""', ""):
      return inner.replace('""', '"')
  return field


def read_corpus(
  path: PathLike, *, skip_bad_records: bool = False, stats: ReadStats | None = None
) -> Iterator[Passage]:
  """Streams the corpus TSV one ``Passage`` at a time (rules in the module docstring)."""
  stats = stats if stats is not None else ReadStats()
  path = check_file(path, "corpus")
  lines = _lines(path)
  _, first, bad = next(lines, (1, "", ""))
  if first is None:
    raise FormatError(bad)
  if not first.strip():
    raise FormatError(f"{path}:1: empty corpus file (expected the header 'id\\ttext\\ttitle')")
  columns = corpus_columns(first, f"{path}:1")
  rows = _data_lines(path, lines, skip_bad_records, stats)
  yield from _parsed(
    path, rows, lambda where, line: columns.row(line, where), skip_bad_records, stats
  )


def _data_lines(path: str, lines, skip_bad_records: bool, stats: ReadStats):
  """(``path:line``, text) of the non-blank lines; undecodable ones skipped or raised."""
  for lineno, line, bad in lines:
    if line is None:
      _skip_or_raise(bad, skip_bad_records, stats)
    elif line.rstrip("\r\n"):
      yield f"{path}:{lineno}", line


def read_corpus_texts(path: PathLike, ids: Iterable[str] | None = None) -> dict[str, str]:
  """{pid: text} of the passages in ``ids`` (all with ``ids=None``), streamed.

  Raises if an id that was asked for is not in the corpus.
  """
  wanted = None if ids is None else set(ids)
  texts = {p.id: p.text for p in read_corpus(path) if wanted is None or p.id in wanted}
  if wanted is not None:
    missing = wanted - texts.keys()
    if missing:
      raise KeyError(
        f"{len(missing)} passage id(s) of the run are not in corpus {path}, "
        f"e.g. {sorted(missing)[:5]}"
      )
  return texts


def corpus_tsv(passages: Iterable[Passage]) -> str:
  """A corpus TSV (header + rows) that ``read_corpus`` reads back as ``passages``.

  A field that ``unquote_field`` would change is written quoted, so the text survives.
  """

  def field(value: str) -> str:
    if "\t" in value or "\n" in value or "\r" in value:
      raise ValueError(f"a corpus field cannot hold a tab or a line break: {value[:60]!r}")
    quoted = '"' + value.replace('"', '""') + '"'
    return quoted if unquote_field(value) != value else value

  rows = ["\t".join(CORPUS_HEADER)]
  rows += ["\t".join((p.id, field(p.text), field(p.title))) for p in passages]
  return "\n".join(rows) + "\n"


def write_corpus(path: PathLike, passages: Iterable[Passage]) -> None:
  """Writes a corpus TSV atomically (see ``corpus_tsv``)."""
  xio.atomic_write_text(path, corpus_tsv(passages))


# ----------------------------------------------------------------------------- DPR JSON


def _ctx(where: str, ctx: Any, i: int, kind: str) -> Passage:
  if not isinstance(ctx, dict) or not isinstance(ctx.get("text"), str):
    raise FormatError(f"{where}: {kind}[{i}] must be an object with a string 'text'")
  pid = ctx.get("passage_id", ctx.get("id", ""))
  return Passage(str(pid), ctx["text"], str(ctx.get("title", "")))


def _parse_dpr(where: str, obj: dict[str, Any]) -> DprExample:
  if not isinstance(obj.get("question"), str):
    raise FormatError(f"{where}: DPR record needs a string 'question'")
  positives = obj.get("positive_ctxs")
  if not isinstance(positives, list):
    raise FormatError(f"{where}: DPR record needs a list 'positive_ctxs'")
  hard = obj.get("hard_negative_ctxs") or []
  return DprExample(
    question=obj["question"],
    lang=str(obj.get("lang", "")),
    answers=tuple(str(a) for a in obj.get("answers", [])),
    positives=tuple(_ctx(where, c, i, "positive_ctxs") for i, c in enumerate(positives)),
    hard_negatives=tuple(_ctx(where, c, i, "hard_negative_ctxs") for i, c in enumerate(hard)),
  )


def read_dpr(
  path: PathLike, *, skip_bad_records: bool = False, stats: ReadStats | None = None
) -> Iterator[DprExample]:
  """DPR-format training data: a JSON list (``.json``, e.g. ``xor_train_full.json``) or JSONL."""
  path = os.fspath(path)
  if path.endswith(".jsonl") or path.endswith(".jsonl.gz"):
    return _guarded(path, "DPR", _parse_dpr, skip_bad_records, stats)
  return _read_dpr_list(path, skip_bad_records, stats if stats is not None else ReadStats())


def _read_dpr_list(path: str, skip_bad_records: bool, stats: ReadStats) -> Iterator[DprExample]:
  check_file(path, "DPR")
  raw = xio.read_bytes(path)
  if path.endswith(".gz"):
    raw = gzip.decompress(raw)
  try:
    data = json.loads(raw.decode("utf-8"))
  except json.JSONDecodeError as e:
    raise FormatError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
  if not isinstance(data, list):
    raise FormatError(f"{path}: expected a JSON list of DPR records, got {type(data).__name__}")
  items = ((f"{path}: record {i}", obj) for i, obj in enumerate(data))
  yield from _parsed(path, items, _parse_dpr_object, skip_bad_records, stats)


def _parse_dpr_object(where: str, obj: Any) -> DprExample:
  if not isinstance(obj, dict):
    raise FormatError(f"{where}: expected a JSON object")
  return _parse_dpr(where, obj)
