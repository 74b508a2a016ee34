"""Is an xQG generator passage-specific? Per-language statistics of its questions.

Script share alone cannot tell a generator that writes "What is it?" in perfect Russian for
every passage from one that asks about the passage. This prints, per language:

- ``script``: share written in the language's script (``xtr_jax/xqg/script_share.py``);
- ``distinct``: distinct questions / questions, and ``top``: the share of the most frequent one
  (a content-free generator repeats a few strings);
- ``copy``: share of questions holding a word (>= 4 letters or digits, case-folded) of their
  own passage (names, numbers and years are copied across languages);
- ``unk``: share containing SentencePiece's unknown piece "⁇";
- with ``--self_run``, ``self R@k``: each sampled question used as a query against the corpus
  index; the share whose own passage is in the top k. Write the sampled queries with
  ``--self_queries`` (XOR-Retrieve layout), search them with ``xtr-jax search``, then pass
  the run back here.

  python benchmarks/xqg_quality.py --generated G.jsonl --corpus corpus.tsv \
    --self_queries self.jsonl --sample 200
  xtr-jax search --index INDEX --queries self.jsonl --output self.trec --k 100 ...
  python benchmarks/xqg_quality.py --generated G.jsonl --corpus corpus.tsv --self_run self.trec
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import re

from xtr_jax.data import readers
from xtr_jax.evaluation import io
from xtr_jax.xqg.script_share import in_script

WORD = re.compile(r"\w{4,}")
SEP = "|"  # query id = docid|lang|index


def words(text: str) -> set[str]:
  """Case-folded words of >= 4 word characters (names, numbers, years)."""
  return {w.casefold() for w in WORD.findall(text)}


def question_stats(questions: list[tuple[str, str, str]], passages: dict[str, str]) -> dict:
  """Per language: n, script, distinct, top, copy, unk shares of (docid, lang, question)."""
  by_lang: dict[str, list[tuple[str, str]]] = collections.defaultdict(list)
  for docid, lang, q in questions:
    by_lang[lang].append((docid, q))
  out = {}
  for lang, rows in sorted(by_lang.items()):
    n = len(rows)
    counts = collections.Counter(q for _, q in rows)
    passage_words = {d: words(passages.get(d, "")) for d in {d for d, _ in rows}}
    out[lang] = {
      "n": n,
      "script": sum(in_script(q, lang) for _, q in rows) / n,
      "distinct": len(counts) / n,
      "top": counts.most_common(1)[0][1] / n,
      "copy": sum(bool(words(q) & passage_words[d]) for d, q in rows) / n,
      "unk": sum("\u2047" in q for _, q in rows) / n,
    }
  return out


def self_recall(run: dict[str, list[str]], ks=(20, 100)) -> dict[str, dict[int, float]]:
  """Per language: share of generated-question queries whose own passage is in the top k."""
  hits: dict[str, dict[int, list[bool]]] = collections.defaultdict(lambda: {k: [] for k in ks})
  for qid, ranked in run.items():
    docid, lang, _ = qid.rsplit(SEP, 2)
    for k in ks:
      hits[lang][k].append(docid in ranked[:k])
  return {lang: {k: sum(v) / len(v) for k, v in per_k.items()} for lang, per_k in hits.items()}


def read_generated(path: str) -> list[tuple[str, str, str]]:
  return [
    (r.docid, lang, q)
    for r in readers.read_generated_queries(path)
    for lang, qs in sorted(r.generated_queries.items())
    for q in qs
  ]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--generated", required=True, help="xtr-jax generate output (JSONL).")
  parser.add_argument("--corpus", required=True, help="The passages they were generated for.")
  parser.add_argument("--self_queries", help="Write a sample of questions as XOR queries here.")
  parser.add_argument("--sample", type=int, default=200, help="Questions per language sampled.")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--self_run", help="TREC run of the --self_queries file.")
  args = parser.parse_args()
  passages = {p.id: readers.passage_text(p.title, p.text) for p in readers.read_corpus(args.corpus)}
  questions = read_generated(args.generated)
  missing = sorted({d for d, _, _ in questions} - passages.keys())
  if missing:
    raise SystemExit(f"{args.generated}: {len(missing)} docids not in {args.corpus}: {missing[:3]}")
  stats = question_stats(questions, passages)
  recall = (
    self_recall({q: [d for d, _ in r] for q, r in io.read_trec_run(args.self_run).items()})
    if args.self_run
    else {}
  )
  cols = ["n", "script", "distinct", "top", "copy", "unk"] + (
    ["self R@20", "self R@100"] * bool(recall)
  )
  print("| lang | " + " | ".join(cols) + " |")
  print("|---|" + "---:|" * len(cols))
  for lang, s in stats.items():
    cells = [str(s["n"])] + [f"{100 * s[c]:.1f}" for c in cols[1:6]]
    if recall:
      cells += [f"{100 * recall.get(lang, {}).get(k, 0.0):.1f}" for k in (20, 100)]
    print(f"| {lang} | " + " | ".join(cells) + " |")
  if args.self_queries:
    rng = random.Random(args.seed)
    by_lang: dict[str, list[tuple[str, str, str]]] = collections.defaultdict(list)
    for i, (d, lang, q) in enumerate(questions):
      by_lang[lang].append((f"{d}{SEP}{lang}{SEP}{i}", lang, q))
    rows = [
      r
      for lang in sorted(by_lang)
      for r in rng.sample(by_lang[lang], min(args.sample, len(by_lang[lang])))
    ]
    text = "".join(
      json.dumps({"id": i, "lang": lang, "question": q}, ensure_ascii=False) + "\n"
      for i, lang, q in rows
    )
    io.atomic_write_text(args.self_queries, text)
    print(f"wrote {len(rows)} self-retrieval queries to {args.self_queries}")


if __name__ == "__main__":
  main()
