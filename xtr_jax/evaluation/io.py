"""The files evaluation consumes: runs, queries, qrels (from ``data.formats``) and XOR predictions.

Runs, qrels, queries and the corpus are read by ``xtr_jax.data.formats`` (one reader per
format for every wing), re-exported here under the names the evaluation wing uses; only the
official XOR-Retrieve prediction JSON is evaluation's own. Every reader raises
``FormatError`` naming the file and line; writers are atomic.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping

from xtr_jax.data.formats import (  # noqa: F401  (the evaluation wing's names for them)
  FormatError,
  PathLike,
  Qrels,
  Query,
  Run,
  check_file,
  format_trec_run,
  read_corpus,
  read_corpus_texts,
  read_qrels,
  read_queries,
  read_trec_run,
  write_trec_run,
)
from xtr_jax.data.formats import read_corpus as iter_corpus  # noqa: F401  ((id, text, title))
from xtr_jax.io import atomic_write_text, read_text  # noqa: F401


@dataclasses.dataclass(frozen=True)
class XorPrediction:
  """One record of the official XOR-Retrieve prediction JSON."""

  id: str
  lang: str
  ctxs: tuple[str, ...]


# ----------------------------------------------------------------------------- XOR predictions


def read_xor_predictions(path: PathLike) -> list[XorPrediction]:
  """Reads the official prediction JSON: a list of ``{"id", "lang", "ctxs": [text, ...]}``.

  ``ctxs`` entries may also be DPR-style objects with a ``text`` field.
  """
  path = check_file(path, "XOR prediction")
  try:
    data = json.loads(read_text(path))
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
