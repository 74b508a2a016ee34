"""Input-pipeline throughput: the 13-language SWIM-IR-layout mixture, tokenised and batched.

Compares ``pipeline.get_batches`` (SeqIO mixture -> tf.data -> dual-encoder converter) with a
plain-Python peer doing the same work (readers -> uniform language sampling -> SentencePiece
encode -> numpy padding). Prints examples/s after warm-up, the ratio, and the set-up times
(the seqio tasks tokenise their small files once, in batches, while the pipeline is built; the
peer tokenises every example it draws).

  .venv/bin/python benchmarks/input_pipeline.py [--data_dir ../shared/data] [--vocab M.model]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import random
import tempfile
import time

import numpy as np


def python_peer(files, sp, lq, lp, batch_size, steps, seed=0):
  """Uniform language sampling + SentencePiece + numpy padding, no tf.data."""
  from xtr_jax.data import readers

  t_read = time.perf_counter()
  pools = [list(readers.read_swim_ir(f)) for f in files]
  python_peer.read_seconds = time.perf_counter() - t_read
  rng = random.Random(seed)

  def pad(ids, n):
    ids = ids[: n - 1] + [1]
    return ids + [0] * (n - len(ids))

  t0 = time.perf_counter()
  for _ in range(steps):
    recs = [rng.choice(pools[rng.randrange(len(pools))]) for _ in range(batch_size)]
    q = np.array([pad(sp.encode(r.query), lq) for r in recs], np.int32)
    p = np.array(
      [pad(sp.encode(readers.passage_text(r.title, r.text)), lp) for r in recs], np.int32
    )
    assert q.shape == (batch_size, lq) and p.shape == (batch_size, lp)
  return steps * batch_size / (time.perf_counter() - t0)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  repo = pathlib.Path(__file__).resolve().parent.parent
  parser.add_argument("--data_dir", default=str(repo.parent / "shared" / "data"))
  parser.add_argument("--vocab", default=None, help="SentencePiece model (trained if absent).")
  parser.add_argument("--vocab_size", type=int, default=8000)
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--steps", type=int, default=100)
  parser.add_argument("--warmup", type=int, default=5)
  parser.add_argument("--query_len", type=int, default=32)
  parser.add_argument("--passage_len", type=int, default=128)
  args = parser.parse_args()

  swim_dir = pathlib.Path(args.data_dir) / "pairs_swim_ir_layout"
  files = sorted((swim_dir / "cross_lingual").glob("*.jsonl"))
  if not files:
    raise SystemExit(f"no SWIM-IR-layout files under {swim_dir}/cross_lingual")
  if args.vocab is None or not os.path.exists(args.vocab):
    from xtr_jax.data import vocab

    prefix = args.vocab or os.path.join(tempfile.mkdtemp(prefix="xtr_bench_"), "spm.model")
    t = time.perf_counter()
    args.vocab = vocab.train_sentencepiece(
      vocab._interleave(vocab.dataset_texts(str(swim_dir)), 0),
      prefix.removesuffix(".model"),
      args.vocab_size,
      max_sentences=30000,
    )
    print(f"trained {args.vocab} in {time.perf_counter() - t:.1f}s")
  os.environ["XTR_JAX_SWIM_IR_DIR"] = str(swim_dir)
  os.environ["XTR_JAX_VOCAB"] = args.vocab

  import seqio

  import tasks
  from xtr_jax.data import pipeline, vocab

  tasks.register_all()
  mix = seqio.get_mixture_or_task("swim_ir_xling_alllang")
  lengths = {"query": args.query_len, "passage": args.passage_len}
  it = pipeline.get_batches("swim_ir_xling_alllang", "train", lengths, args.batch_size, seed=0)
  t = time.perf_counter()
  for _ in range(args.warmup):
    next(it)
  warm = time.perf_counter() - t
  t = time.perf_counter()
  for _ in range(args.steps):
    b = next(it)
  tf_rate = args.steps * args.batch_size / (time.perf_counter() - t)
  assert b["query_tokens"].shape == (args.batch_size, args.query_len)

  sp = vocab.load_vocabulary(args.vocab).tokenizer
  py_rate = python_peer(
    files, sp, args.query_len, args.passage_len, args.batch_size, min(args.steps, 50)
  )
  print(f"\nmixture: {len(mix.tasks)} languages; batch {args.batch_size}; lengths {lengths}")
  print(
    f"warm-up ({args.warmup} batches: reads and tokenises the 13 files once, fills the "
    f"1k-per-language shuffle buffers): {warm:.1f}s; the python peer reads the files in "
    f"{python_peer.read_seconds:.1f}s and tokenises inside its timed loop\n"
  )
  print("| pipeline | examples/s | ratio vs python peer |")
  print("|---|---:|---:|")
  print(f"| get_batches (seqio mixture + tf.data) | {tf_rate:,.0f} | {tf_rate / py_rate:.2f} |")
  print(f"| python peer (readers + spm + numpy) | {py_rate:,.0f} | 1.00 |")


if __name__ == "__main__":
  main()
