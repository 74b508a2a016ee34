"""Qrels-based metrics (Recall@k, MRR@10, nDCG@k) through ir-measures, per language.

ir-measures (pytrec_eval underneath) does the maths. Two choices made here, on purpose:
- the run's own order is what counts: scores handed to ir-measures are ``n - position``, so ties
  in the original scores cannot be reordered by trec_eval's docno tie-breaking;
- a query with qrels but absent from the run scores 0 (trec_eval ``-c``), with a warning.
Averages: per language, ``macro`` (mean of the languages) and ``micro`` (mean of all queries).
"""

from __future__ import annotations

import logging
import re
import statistics
from collections.abc import Mapping, Sequence

import ir_measures

from xtr_jax.evaluation import io

_ALIASES = (
  (re.compile(r"^(?:Recall|R)@(\d+)$"), "R@{}"),
  (re.compile(r"^(?:MRR|RR)@(\d+)$"), "RR@{}"),
  (re.compile(r"^nDCG@(\d+)$"), "nDCG@{}"),
  (re.compile(r"^(?:P|Precision)@(\d+)$"), "P@{}"),
)


def to_ir_measure(name: str):
  """'Recall@20' / 'MRR@10' / 'nDCG@10' (or any ir-measures name) -> an ir-measures measure."""
  for pattern, template in _ALIASES:
    m = pattern.match(name)
    if m:
      return ir_measures.parse_measure(template.format(m.group(1)))
  try:
    return ir_measures.parse_measure(name)
  except Exception as e:  # ir-measures raises assorted types on bad names
    raise ValueError(f"unknown metric {name!r}: {e}") from None


def per_query_scores(
  run: io.Run, qrels: io.Qrels, metrics: Sequence[str], qids: Sequence[str]
) -> dict[str, dict[str, float]]:
  """{metric name: {qid: value}} over ``qids`` (each must have qrels)."""
  measures = {name: to_ir_measure(name) for name in metrics}
  by_measure = {str(m): name for name, m in measures.items()}
  ordered_run = {
    qid: {pid: float(len(run[qid]) - i) for i, (pid, _) in enumerate(run[qid])}
    for qid in qids
    if qid in run and run[qid]
  }
  sub_qrels = {qid: qrels[qid] for qid in qids}
  out: dict[str, dict[str, float]] = {name: dict.fromkeys(qids, 0.0) for name in metrics}
  for m in ir_measures.iter_calc(list(measures.values()), sub_qrels, ordered_run):
    out[by_measure[str(m.measure)]][m.query_id] = float(m.value)
  return out


def evaluate_qrels_metrics(
  run: io.Run,
  qrels: io.Qrels,
  queries: Mapping[str, io.Query],
  metrics: Sequence[str] = ("Recall@20", "Recall@100", "MRR@10", "nDCG@10"),
) -> dict:
  """Per-language, macro and micro averages, plus the per-query scores (for significance).

  The evaluated queries are those in the queries file that have qrels.
  """
  qids = [qid for qid in queries if qid in qrels]
  if not qids:
    raise ValueError("no query of the queries file has qrels: check that the ids match")
  missing = [qid for qid in qids if not run.get(qid)]
  if missing:
    logging.warning(
      "%d of %d judged queries are missing from the run and score 0, e.g. %s",
      len(missing),
      len(qids),
      missing[:3],
    )
  scores = per_query_scores(run, qrels, metrics, qids)
  langs = sorted({queries[q].lang for q in qids})
  result = {"per_lang": {}, "macro": {}, "micro": {}, "counts": {}, "per_query": scores}
  for lang in langs:
    lq = [q for q in qids if queries[q].lang == lang]
    result["counts"][lang] = len(lq)
    result["per_lang"][lang] = {m: statistics.mean(scores[m][q] for q in lq) for m in metrics}
  for m in metrics:
    result["macro"][m] = statistics.mean(result["per_lang"][lang][m] for lang in langs)
    result["micro"][m] = statistics.mean(scores[m][q] for q in qids)
  return result
