"""How much of a fine-tune's gain on XOR mini dev comes from queries whose gold paragraph
was a training passage (for another, training question)?

XOR-TyDi's train and dev questions share one corpus, and the shared pair files hold the
XOR train questions with their gold paragraphs; some of those paragraphs are also gold for
a dev question. This splits the dev queries into those and the rest and reports mean
Recall@20 per system on each part, from the evaluation JSONs (per-query scores):

  python benchmarks/me5_overlap_check.py --pairs '../shared/data/pairs_swim_ir_layout/cross_lingual/*.jsonl' \\
    --data ../shared/data/xor_mini results/me5_xor_mini/*_eval.json
"""

from __future__ import annotations

import argparse
import json
import pathlib

from xtr_jax.data import formats
from xtr_jax.data.pairs import read_pairs


def overlapping_queries(pairs: str, data: str) -> tuple[set[str], int]:
  texts = {r["text"].strip() for r in read_pairs(pairs)}
  corpus = {p.id: p.text.strip() for p in formats.read_corpus(f"{data}/corpus.tsv")}
  qrels = formats.read_qrels(f"{data}/dev.qrels")
  hit = {q for q, golds in qrels.items() if any(corpus.get(g) in texts for g in golds)}
  return hit, len(qrels)


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--pairs", required=True)
  ap.add_argument("--data", required=True)
  ap.add_argument("evals", nargs="+")
  args = ap.parse_args()
  hit, total = overlapping_queries(args.pairs, args.data)
  print(f"{len(hit)} of {total} dev queries have a gold paragraph among the training passages\n")
  print("| system | Recall@20, those queries | Recall@20, the others |")
  print("|---|---:|---:|")
  for path in args.evals:
    per_query = json.loads(pathlib.Path(path).read_text())["metrics"]["Recall@20"]["per_query"]
    a = [v for q, v in per_query.items() if q in hit]
    b = [v for q, v in per_query.items() if q not in hit]
    name = pathlib.Path(path).name.removesuffix("_eval.json")
    print(f"| {name} | {100 * sum(a) / len(a):.1f} | {100 * sum(b) / len(b):.1f} |")


if __name__ == "__main__":
  main()
