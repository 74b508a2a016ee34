"""BM25 baseline (bm25s): queries JSONL x corpus TSV -> TREC run.

Multilingual questions against an English corpus share few surface tokens (names, numbers,
Latin-script words), so this is the floor a cross-lingual retriever must clear.

  xtr-jax bm25 --queries Q.jsonl --corpus corpus.tsv --output runs/bm25.trec
"""

from __future__ import annotations

import logging
import sys
import time
import zlib

import bm25s
import numpy as np

from xtr_jax.evaluation import io

# bm25s sets its logger to DEBUG on import ("Building index from tokens" in every log);
# give the level back to the application's logging configuration.
logging.getLogger("bm25s").setLevel(logging.NOTSET)


def bm25_run(
  queries: dict[str, io.Query],
  corpus: dict[str, tuple[str, str]],
  k: int = 100,
  k1: float = 1.5,
  b: float = 0.75,
  stopwords: str | None = "en",
  seed: int = 0,
) -> io.Run:
  """Ranks ``corpus`` ({pid: (title, text)}) for each query; every query gets ``k`` results.

  Passages with a positive BM25 score come first; the rest are seeded random score-0 filler.
  """
  pids = list(corpus)
  docs = [f"{title} {text}".strip() for title, text in corpus.values()]
  tok = dict(return_ids=False, show_progress=False, stopwords=stopwords)
  retriever = bm25s.BM25(k1=k1, b=b)
  retriever.index(bm25s.tokenize(docs, **tok), show_progress=False)
  qids = list(queries)
  q_tokens = bm25s.tokenize([queries[q].question for q in qids], **tok)
  k = min(k, len(pids))
  docs_idx, scores = retriever.retrieve(q_tokens, k=k, show_progress=False)
  run = {}
  for n, qid in enumerate(qids):
    ranked = [
      (pids[int(i)], float(s)) for i, s in zip(docs_idx[n], scores[n], strict=True) if s > 0
    ]
    run[qid] = ranked + _random_fill(qid, pids, {p for p, _ in ranked}, k - len(ranked), seed)
  return run


def _random_fill(qid: str, pids: list[str], taken: set[str], n: int, seed: int):
  """Score-0 filler in a seeded random order, so every query keeps ``k`` results.

  Passages that match no query term all tie at 0; bm25s would return them in corpus order,
  which leaks the corpus layout (xor_mini lists the gold paragraphs first) into the metrics.
  """
  if n <= 0:
    return []
  rng = np.random.default_rng([seed, zlib.crc32(qid.encode("utf-8"))])
  out = []
  for i in rng.permutation(len(pids)):
    if pids[i] not in taken:
      out.append((pids[i], 0.0))
      if len(out) == n:
        break
  return out


def read_corpus_with_titles(path: io.PathLike) -> dict[str, tuple[str, str]]:
  """{pid: (title, text)} of a ``id\ttext\ttitle`` TSV."""
  return {pid: (title, text) for pid, text, title in io.iter_corpus(path)}


def main(argv: list[str] | None = None) -> int:
  from xtr_jax.cli import ArgumentParser, positive_int  # noqa: PLC0415

  parser = ArgumentParser(prog="xtr-jax bm25", description=__doc__)
  parser.add_argument("--queries", required=True, help="XOR-layout queries JSONL.")
  parser.add_argument("--corpus", required=True, help="Corpus TSV (id, text, title; header).")
  parser.add_argument(
    "--output", required=True, help="TREC run to write (atomic; its folder is created)."
  )
  parser.add_argument("--k", type=positive_int, default=100, help="Passages per query.")
  parser.add_argument("--k1", type=float, default=1.5, help="BM25 term-frequency saturation.")
  parser.add_argument("--b", type=float, default=0.75, help="BM25 length normalisation.")
  parser.add_argument("--tag", default="bm25", help="Run tag (last TREC column).")
  args = parser.parse_args(argv)
  start = time.time()
  queries = io.read_queries(io.check_file(args.queries, "--queries"))
  corpus = read_corpus_with_titles(io.check_file(args.corpus, "--corpus"))
  run = bm25_run(queries, corpus, k=args.k, k1=args.k1, b=args.b)
  io.write_trec_run(args.output, run, tag=args.tag)
  logging.info(
    "BM25: wrote %s: %d queries x %d passages, k=%d, in %.1fs",
    args.output,
    len(queries),
    len(corpus),
    min(args.k, len(corpus)),
    time.time() - start,
  )
  return 0


if __name__ == "__main__":  # same as `xtr-jax bm25`
  from xtr_jax.cli import main as cli_main

  sys.exit(cli_main(["bm25", *sys.argv[1:]], owns_process=True))
