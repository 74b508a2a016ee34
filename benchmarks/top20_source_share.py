"""How often the passages of a training source fill the top 20 of a run (a hubness check).

The language-scaling sweep trains phase 1 on XQuAD questions, whose 240 English paragraphs
are also distractors in the XOR mini corpus. A model that learned to pull those paragraphs
towards every question would place them in many top-20 lists; this counts it:

  python benchmarks/top20_source_share.py \
    --pairs ../shared/data/pairs_swim_ir_layout/cross_lingual/ar.jsonl \
    --corpus ../shared/data/xor_mini/corpus.tsv \
    outputs/sweep_languages_scaling_me5_cpu/*/run.trec
"""

from __future__ import annotations

import argparse
import json

from xtr_jax.data.formats import read_corpus


def _key(text: str) -> str:
  return " ".join(text.split())


def source_ids(pairs: str, corpus: str) -> set[str]:
  """Corpus ids whose text is the passage of some pair in ``pairs``."""
  with open(pairs, encoding="utf-8") as f:
    texts = {_key(json.loads(line)["text"]) for line in f if line.strip()}
  return {p.id for p in read_corpus(corpus) if _key(p.text) in texts}


def share(run: str, ids: set[str], k: int = 20) -> tuple[float, int, int]:
  """(% of top-k slots that are ``ids``, queries with one in their top k, queries)."""
  hits = slots = 0
  queries, touched = set(), set()
  with open(run, encoding="utf-8") as f:
    for line in f:
      qid, _, pid, rank, *_ = line.split()
      queries.add(qid)
      if int(rank) <= k:
        slots += 1
        if pid in ids:
          hits += 1
          touched.add(qid)
  return 100.0 * hits / max(slots, 1), len(touched), len(queries)


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--pairs", required=True)
  ap.add_argument("--corpus", required=True)
  ap.add_argument("--k", type=int, default=20)
  ap.add_argument("runs", nargs="+")
  args = ap.parse_args()
  ids = source_ids(args.pairs, args.corpus)
  print(f"{len(ids)} corpus passages are passages of {args.pairs}")
  print(f"| run | % of top-{args.k} slots | queries with one in the top {args.k} |")
  print("|---|---:|---:|")
  for run in args.runs:
    pct, touched, n = share(run, ids, args.k)
    print(f"| {run} | {pct:.2f} | {touched} of {n} |")


if __name__ == "__main__":
  main()
