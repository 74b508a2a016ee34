"""``xtr-jax evaluate``: score a TREC run or an XOR prediction JSON, optionally against another.

R@2kt / R@5kt follow the official XOR-Retrieve script (needs the queries' answers, and for a TREC
run the corpus to turn passage ids into texts); Recall@k / MRR@10 / nDCG@10 need qrels. All
numbers are percentages, per language, macro (mean of languages) and micro (mean of queries).
"""

from __future__ import annotations

import argparse
import json
import logging
import pathlib
import re
import statistics
import sys

from xtr_jax.cli import ArgumentParser, UsageError
from xtr_jax.evaluation import io, metrics, significance, tokenize, xor_retrieve

DEFAULT_METRICS = "R@2kt,R@5kt,Recall@20,Recall@100,MRR@10,nDCG@10"
_RKT = re.compile(r"^R@(\d+)kt$")


def is_xor_json(path: io.PathLike) -> bool:
  """A prediction JSON starts with '['; a TREC run with a query id."""
  with open(path, encoding="utf-8") as f:
    head = f.read(256).lstrip()
  return head.startswith("[")


def split_metrics(names: list[str]) -> tuple[list[int], list[str]]:
  ks, others = [], []
  for name in names:
    m = _RKT.match(name)
    if m:
      ks.append(int(m.group(1)))
    else:
      metrics.to_ir_measure(name)  # fails early on a bad name
      others.append(name)
  return ks, others


class Evaluator:
  """Holds the shared inputs (queries, qrels, corpus, tokenizer) to score one or more runs."""

  def __init__(self, args: argparse.Namespace, metric_names: list[str]):
    self.args = args
    self.rkt_ks, self.qrels_metrics = split_metrics(metric_names)
    self.metric_names = metric_names
    self.queries = io.read_queries(args.queries)
    self.qrels = io.read_qrels(args.qrels) if args.qrels else None
    if self.qrels_metrics and self.qrels is None:
      raise ValueError(f"metrics {self.qrels_metrics} need --qrels")
    self.tokenizer, self.tokenizer_desc = None, None

  def _word_tokenizer(self):
    if self.tokenizer is None:
      a = self.args
      params = a.punkt_params
      if params and not pathlib.Path(params).is_file() and a.tokenizer in ("auto", "punkt"):
        if not a.corpus:
          raise ValueError(f"--punkt_params {params} does not exist and no --corpus to train on")
        logging.info("training Punkt on %s, saving to %s", a.corpus, params)
        tokenize.save_punkt_params(
          params, tokenize.train_punkt(tokenize.corpus_texts(a.corpus), a.punkt_train_chars)
        )
      train = None
      if params is None and a.corpus and a.tokenizer in ("auto", "punkt"):
        train = tokenize.corpus_texts(a.corpus)
      self.tokenizer, self.tokenizer_desc = tokenize.get_word_tokenizer(
        a.tokenizer, punkt_params=params, train_texts=train, train_chars=a.punkt_train_chars
      )
      logging.info("word tokenizer: %s", self.tokenizer_desc)
    return self.tokenizer

  def score(self, path: str) -> dict:
    """{metric: {"per_lang", "macro", "micro", "counts", "per_query"}} for one run file."""
    out: dict[str, dict] = {}
    if is_xor_json(path):
      if self.qrels_metrics:
        raise ValueError(
          f"{path} is an XOR prediction JSON (texts, no passage ids): metrics "
          f"{self.qrels_metrics} need a TREC run"
        )
      preds, run = io.read_xor_predictions(path), None
    else:
      run = io.read_trec_run(path)
      preds = None
      if self.rkt_ks:
        if not self.args.corpus:
          raise ValueError(f"R@kt of TREC run {path} needs --corpus to look up passage texts")
        preds = io.run_to_xor_predictions(run, self.queries, self.args.corpus)
    if self.rkt_ks:
      answers = {q.id: q.answers for q in self.queries.values()}
      rkt = xor_retrieve.evaluate_rkt(preds, answers, self._word_tokenizer(), self.rkt_ks)
      for k, r in rkt.items():
        out[f"R@{k}kt"] = {
          "per_lang": dict(sorted(r.per_lang.items())),
          "macro": r.macro,
          "micro": 100.0 * statistics.mean(r.per_query.values()) if r.per_query else None,
          "counts": dict(sorted(r.counts.items())),
          "per_query": r.per_query,
        }
    if self.qrels_metrics:
      res = metrics.evaluate_qrels_metrics(run, self.qrels, self.queries, self.qrels_metrics)
      for m in self.qrels_metrics:
        out[m] = {
          "per_lang": {lang: 100.0 * v[m] for lang, v in res["per_lang"].items()},
          "macro": 100.0 * res["macro"][m],
          "micro": 100.0 * res["micro"][m],
          "counts": res["counts"],
          "per_query": res["per_query"][m],
        }
    return {m: out[m] for m in self.metric_names}


def compare_runs(a: dict, b: dict, *, samples: int, confidence: float, seed: int) -> dict:
  """Per metric: paired t-test and bootstrap CI over the queries both runs were scored on."""
  out = {}
  for m in a:
    pa, pb = a[m]["per_query"], b[m]["per_query"]
    common = pa.keys() & pb.keys()
    if len(common) < len(pa) or len(common) < len(pb):
      logging.warning("%s: comparing on the %d queries both runs were scored on", m, len(common))
    c = significance.compare(
      {q: pa[q] for q in common},
      {q: pb[q] for q in common},
      num_samples=samples,
      confidence=confidence,
      seed=seed,
    )
    out[m] = {
      "n": c.n,
      "mean_a": 100 * c.mean_a,
      "mean_b": 100 * c.mean_b,
      "diff": 100 * c.diff,
      "t": c.t_statistic,
      "p_value": c.p_value,
      "ci_low": 100 * c.ci_low,
      "ci_high": 100 * c.ci_high,
      "confidence": c.confidence,
    }
  return out


def _fmt(x) -> str:
  return "-" if x is None else f"{x:.2f}"


def markdown_report(
  run: str, scores: dict, tokenizer: str | None, comparison: dict | None, other: str | None
) -> str:
  names = list(scores)
  langs = sorted({lang for s in scores.values() for lang in s["per_lang"]})
  lines = [f"## {run}", ""]
  lines.append("| lang | n | " + " | ".join(names) + " |")
  lines.append("|---|---:|" + "---:|" * len(names))
  for lang in langs:
    n = max(s["counts"].get(lang, 0) for s in scores.values())
    cells = [_fmt(s["per_lang"].get(lang)) for s in scores.values()]
    lines.append(f"| {lang} | {n} | " + " | ".join(cells) + " |")
  lines.append("| **macro** | | " + " | ".join(_fmt(s["macro"]) for s in scores.values()) + " |")
  lines.append("| **micro** | | " + " | ".join(_fmt(s["micro"]) for s in scores.values()) + " |")
  if tokenizer:
    lines += ["", f"R@kt word tokenizer: {tokenizer}."]
  if comparison:
    pct = int(round(100 * next(iter(comparison.values()))["confidence"]))
    lines += ["", f"Paired comparison: A = {run}, B = {other}", ""]
    lines.append(f"| metric | n | A | B | A-B | t | p (paired t-test) | {pct}% bootstrap CI |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---|")
    for m, c in comparison.items():
      lines.append(
        f"| {m} | {c['n']} | {c['mean_a']:.2f} | {c['mean_b']:.2f} | {c['diff']:+.2f} | "
        f"{c['t']:.3f} | {c['p_value']:.4g} | [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}] |"
      )
  return "\n".join(lines) + "\n"


def build_parser() -> ArgumentParser:
  p = ArgumentParser(prog="xtr-jax evaluate", description=__doc__)
  p.add_argument("--run", required=True, help="TREC run or XOR prediction JSON to score.")
  p.add_argument("--queries", required=True, help="Queries JSONL (id, lang, question, answers).")
  p.add_argument("--qrels", help="Qrels (qid 0 pid rel) for Recall/MRR/nDCG.")
  p.add_argument("--corpus", help="Corpus TSV; needed for R@kt of a TREC run.")
  p.add_argument(
    "--metrics",
    default=None,
    help=f"Comma-separated (default: those of {DEFAULT_METRICS} the inputs allow).",
  )
  p.add_argument("--compare", help="A second run (same format) for paired significance.")
  p.add_argument(
    "--output",
    help="Output prefix: writes PREFIX.md and PREFIX.json, creating the folder (default: the "
    "run path + '.eval').",
  )
  p.add_argument(
    "--tokenizer",
    default="auto",
    choices=tokenize.TOKENIZER_MODES,
    help="R@kt word tokenizer (see results/xor_tokenizer_deviation.md).",
  )
  p.add_argument("--punkt_params", help="Punkt params JSON; trained from --corpus if missing.")
  p.add_argument(
    "--punkt_train_chars", type=int, default=2_000_000, help="Corpus characters Punkt trains on."
  )
  p.add_argument(
    "--bootstrap_samples", type=int, default=10_000, help="Bootstrap resamples (--compare)."
  )
  p.add_argument("--confidence", type=float, default=0.95, help="Bootstrap CI level (--compare).")
  p.add_argument("--seed", type=int, default=0, help="Bootstrap seed (--compare).")
  return p


def check_inputs(args: argparse.Namespace) -> None:
  """Every file flag names an existing file (a one-line error naming the flag otherwise)."""
  for flag in ("run", "queries", "qrels", "corpus", "compare"):
    value = getattr(args, flag)
    if value and not pathlib.Path(value).is_file():
      found = "a directory" if pathlib.Path(value).is_dir() else "nothing"
      raise FileNotFoundError(f"--{flag} file not found: {value} ({found} there)")
  if not 0.0 < args.confidence < 1.0:
    raise UsageError(f"--confidence {args.confidence}: expected a level in (0, 1)")
  if args.bootstrap_samples < 1:
    raise UsageError(f"--bootstrap_samples {args.bootstrap_samples}: expected >= 1")


def main(argv: list[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  check_inputs(args)
  if args.metrics:
    names = [m.strip() for m in args.metrics.split(",") if m.strip()]
  else:  # the defaults that the given inputs can compute
    names = [
      m
      for m in DEFAULT_METRICS.split(",")
      if (_RKT.match(m) and (args.corpus or is_xor_json(args.run)))
      or (not _RKT.match(m) and args.qrels and not is_xor_json(args.run))
    ]
    if not names:
      raise UsageError("nothing to compute: give --qrels and/or --corpus (or an XOR JSON run)")
  evaluator = Evaluator(args, names)
  try:
    scores = evaluator.score(args.run)
    comparison = None
    if args.compare:
      other = evaluator.score(args.compare)
      comparison = compare_runs(
        scores, other, samples=args.bootstrap_samples, confidence=args.confidence, seed=args.seed
      )
  except KeyError as e:  # io.py's "ids of the run missing from the queries / the corpus"
    message = e.args[0] if e.args else None
    if not (isinstance(message, str) and " " in message):
      raise  # a bare key: a lookup bug, not an input error
    raise UsageError(message) from e
  report = markdown_report(args.run, scores, evaluator.tokenizer_desc, comparison, args.compare)
  print(report)
  prefix = args.output or f"{args.run}.eval"
  payload = {
    "run": args.run,
    "compare": args.compare,
    "tokenizer": evaluator.tokenizer_desc,
    "metrics": scores,
    "comparison": comparison,
  }
  io.atomic_write_text(f"{prefix}.md", report)
  io.atomic_write_text(f"{prefix}.json", json.dumps(payload, indent=1, ensure_ascii=False))
  logging.info("wrote %s.md and %s.json", prefix, prefix)
  return 0


if __name__ == "__main__":
  sys.exit(main())
