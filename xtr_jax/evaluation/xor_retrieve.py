"""XOR-Retrieve R@kt with the official ``eval_xor_retrieve.py`` semantics.

For every prediction (in file order; questions absent from the predictions are not counted):
drop gold answers equal to "yes"/"no", skip the question if none remain; word-tokenise each
ranked passage separately and concatenate the tokens until ``k`` thousand are reached; join the
first ``k*1000`` with spaces; a hit is a case-sensitive substring match of any answer. Scores are
per-language percentages (language taken from the prediction) and their macro average over the
languages that counted at least one question.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
from collections.abc import Mapping, Sequence

from xtr_jax.evaluation.io import XorPrediction
from xtr_jax.evaluation.tokenize import WordTokenizer

YES_NO = ("yes", "no")


def first_n_tokens(ctxs: Sequence[str], n: int, tokenize: WordTokenizer) -> list[str]:
  """Tokens of the passages in rank order, each passage tokenised on its own, cut at ``n``."""
  tokens: list[str] = []
  for text in ctxs:
    tokens += tokenize(text)
    if len(tokens) >= n:
      break
  return tokens[:n]


def memoize(tokenize: WordTokenizer) -> WordTokenizer:
  """Caches tokens per passage text: ranked lists of different questions share passages."""
  cache: dict[str, list[str]] = {}

  def cached(text: str) -> list[str]:
    if text not in cache:
      cache[text] = tokenize(text)
    return cache[text]

  return cached


def is_hit(answers: Sequence[str], tokens: Sequence[str]) -> bool:
  text = " ".join(tokens)
  return any(answer in text for answer in answers)


@dataclasses.dataclass
class RktResult:
  k: int  # thousands of tokens
  per_lang: dict[str, float]  # percentage
  counts: dict[str, int]
  macro: float
  per_query: dict[str, float]  # 1.0 / 0.0 per counted question


def evaluate_rkt(
  predictions: Sequence[XorPrediction],
  answers: Mapping[str, Sequence[str]],
  tokenize: WordTokenizer,
  ks: Sequence[int] = (2, 5),
) -> dict[int, RktResult]:
  """R@{k}kt for each k in ``ks`` (2 and 5 are the official ones)."""
  pred_ids = [p.id for p in predictions]
  duplicates = len(pred_ids) - len(set(pred_ids))
  if duplicates:
    logging.warning("%d duplicate question id(s) in the predictions; each is counted", duplicates)
  with_span = {q for q, a in answers.items() if any(x not in YES_NO for x in a)}
  missing = with_span - set(pred_ids)
  if missing:
    logging.warning(
      "%d of %d gold questions with span answers are missing from the predictions and are not "
      "counted (as in the official script), e.g. %s",
      len(missing),
      len(with_span),
      sorted(missing)[:3],
    )
  max_n = max(ks) * 1000
  tokenize = memoize(tokenize)
  hits = {k: {} for k in ks}
  counts: dict[str, int] = {}
  per_query: dict[int, dict[str, float]] = {k: {} for k in ks}
  for pred in predictions:
    if pred.id not in answers:
      continue
    span = [a for a in answers[pred.id] if a not in YES_NO]
    if not span:
      continue
    counts[pred.lang] = counts.get(pred.lang, 0) + 1
    tokens = first_n_tokens(pred.ctxs, max_n, tokenize)
    for k in ks:
      hit = is_hit(span, tokens[: k * 1000])
      hits[k][pred.lang] = hits[k].get(pred.lang, 0) + int(hit)
      per_query[k][pred.id] = float(hit)
  results = {}
  for k in ks:
    per_lang = {lang: 100.0 * hits[k].get(lang, 0) / n for lang, n in counts.items()}
    macro = statistics.mean(per_lang.values()) if per_lang else float("nan")
    results[k] = RktResult(k, per_lang, dict(counts), macro, per_query[k])
  return results
