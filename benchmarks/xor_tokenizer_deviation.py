"""How much does the stand-in for NLTK's Punkt model change XOR-Retrieve R@kt decisions?

Tokenisers compared (see xtr_jax/evaluation/tokenize.py): Punkt trained on the whole corpus
(the reference: the same unsupervised algorithm NLTK's English model comes from, fit to this
text), Punkt trained on a 1 MB sample, untrained Punkt, and preserve_line (no sentence split).
Runs: BM25 on the native questions, and two runs that put the gold passage at a seeded random
rank in the BM25 list (1-30 and 1-60), so that many answers sit near the 2k/5k token boundary.

  .venv/bin/python benchmarks/xor_tokenizer_deviation.py --data ../shared/data/xor_mini
"""

from __future__ import annotations

import argparse
import pathlib
import random
import time

from xtr_jax.evaluation import io, tokenize, xor_retrieve
from xtr_jax.experiments import bm25


def inject_gold(run: io.Run, qrels: io.Qrels, max_rank: int, seed: int) -> io.Run:
  rng = random.Random(seed)
  out = {}
  for qid, ranked in run.items():
    gold = [p for p in qrels.get(qid, {}) if qrels[qid][p] > 0]
    rest = [(p, s) for p, s in ranked if p not in gold]
    for g in gold[:1]:
      rest.insert(rng.randrange(max_rank), (g, 0.0))
    out[qid] = rest
  return out


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--data", default="../shared/data/xor_mini")
  args = parser.parse_args()
  data = pathlib.Path(args.data)
  queries = io.read_queries(data / "dev.jsonl")
  qrels = io.read_qrels(data / "dev.qrels")
  corpus = data / "corpus.tsv"
  texts = list(io.read_corpus_texts(corpus).values())

  t = time.time()
  full = tokenize.train_punkt(texts, max_chars=10**9)
  t_full = time.time() - t
  t = time.time()
  sample = tokenize.train_punkt(texts, max_chars=1_000_000)
  t_sample = time.time() - t
  from nltk.tokenize.punkt import PunktSentenceTokenizer

  tokenizers = {  # memoised across runs: the runs share passages
    "punkt_corpus": xor_retrieve.memoize(
      tokenize.make_word_tokenizer(PunktSentenceTokenizer(full).tokenize)
    ),
    "punkt_1MB": xor_retrieve.memoize(
      tokenize.make_word_tokenizer(PunktSentenceTokenizer(sample).tokenize)
    ),
    "punkt_untrained": xor_retrieve.memoize(
      tokenize.make_word_tokenizer(PunktSentenceTokenizer().tokenize)
    ),
    "line": xor_retrieve.memoize(tokenize.make_word_tokenizer(None)),
  }
  print(f"Punkt training: whole corpus {t_full:.1f}s, 1 MB sample {t_sample:.1f}s")

  base = bm25.bm25_run(queries, bm25.read_corpus_with_titles(corpus), k=100)
  runs = {
    "bm25": base,
    "gold@1-30": inject_gold(base, qrels, 30, seed=0),
    "gold@1-60": inject_gold(base, qrels, 60, seed=1),
  }
  answers = {q.id: q.answers for q in queries.values()}
  print(
    "| run | tokenizer | R@2kt | R@5kt | token seqs differ | R@2kt decisions differ |"
    " R@5kt decisions differ | time (s) |"
  )
  print("|---|---|---|---|---|---|---|---|")
  for run_name, run in runs.items():
    preds = io.run_to_xor_predictions(run, queries, corpus)
    ref_tokens = {
      p.id: xor_retrieve.first_n_tokens(p.ctxs, 5000, tokenizers["punkt_corpus"]) for p in preds
    }
    ref = xor_retrieve.evaluate_rkt(preds, answers, tokenizers["punkt_corpus"])
    for name, tok in tokenizers.items():
      t = time.time()
      res = xor_retrieve.evaluate_rkt(preds, answers, tok)
      elapsed = time.time() - t
      seq_diff = sum(
        xor_retrieve.first_n_tokens(p.ctxs, 5000, tok) != ref_tokens[p.id] for p in preds
      )
      d2 = sum(res[2].per_query[q] != ref[2].per_query[q] for q in ref[2].per_query)
      d5 = sum(res[5].per_query[q] != ref[5].per_query[q] for q in ref[5].per_query)
      n = len(ref[2].per_query)
      print(
        f"| {run_name} | {name} | {res[2].macro:.2f} | {res[5].macro:.2f} | "
        f"{seq_diff}/{len(preds)} | {d2}/{n} | {d5}/{n} | {elapsed:.1f} |"
      )


if __name__ == "__main__":
  main()
