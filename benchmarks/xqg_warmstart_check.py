"""Real-scale check of the warm-started xQG generator on multilingual-E5-small, no training.

Prints the restricted output vocabulary the CPU recipe (``gin/runs/train_xqg_me5_cpu.gin``)
derives from the cross-lingual pairs, whether the warm-started encoder's token states equal
mE5-small's own (they must, exactly), and one greedy decode through ``QuestionGenerator``
(untrained: noise, but it exercises the output-id mapping end to end). With ``--corpus``,
also the share of a corpus's source pieces (the first ``--coverage_passages`` passages, as
the generator reads them) that the output vocabulary holds: only those can be copied by the
copy head (``copy_attention``).

  XTR_JAX_CACHE_DIR=/tmp/xcache .venv/bin/python benchmarks/xqg_warmstart_check.py \
    --pairs '../shared/data/pairs_swim_ir_layout/cross_lingual/*.jsonl'
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from xtr_jax.checkpoints import bert2bert as glue
from xtr_jax.checkpoints import orbax_io
from xtr_jax.checkpoints.embedded import resolve_checkpoint
from xtr_jax.data import readers
from xtr_jax.data.xqg_prompt import xqg_input
from xtr_jax.models import bert
from xtr_jax.models.bert2bert import Bert2Bert
from xtr_jax.xqg import warmstart
from xtr_jax.xqg.generate import DecodeSettings, QuestionGenerator

TEXTS = [
  ("ja", "Mount Fuji", "Mount Fuji is the highest mountain in Japan, 3,776 m."),
  ("ru", "Tea", "Tea is grown on the hills of Darjeeling."),
]


def coverage(config, tok, corpus: str, n: int) -> str:
  """How many of the first ``n`` passages' source pieces the output vocabulary holds."""
  rows = []
  for passage in readers.read_corpus(corpus):
    if len(rows) == n:
      break
    rows.append(
      {"id": passage.id, "title": passage.title, "text": passage.text, "code": "ja", "query": ""}
    )
  sources, _ = warmstart.xqg_sources_targets(rows, tok, 128, 32)
  pieces = sources[sources != tok.pad_id]
  inside = np.isin(pieces, np.asarray(config.output_vocab)).mean()
  return (
    f"{corpus}: {100 * inside:.1f}% of the {pieces.size} source pieces of its first "
    f"{len(rows)} passages are in the output vocabulary"
  )


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--pairs", required=True)
  ap.add_argument("--backbone", default="me5-small")
  ap.add_argument("--decoder_layers", type=int, default=6)
  ap.add_argument("--corpus", help="A corpus TSV (id, text, title) to measure coverage on.")
  ap.add_argument("--coverage_passages", type=int, default=1000)
  args = ap.parse_args()
  t0 = time.time()
  config = warmstart.warm_start_config(
    args.backbone, args.pairs, num_decoder_layers=args.decoder_layers
  )
  tok = warmstart.backbone_tokenizer(args.backbone)
  print(
    f"output vocabulary: {config.vocab_size} of {config.encoder.vocab_size} pieces "
    f"({time.time() - t0:.0f}s)"
  )
  if args.corpus:
    print(coverage(config, tok, args.corpus, args.coverage_passages))
  back = orbax_io.load_checkpoint(resolve_checkpoint(args.backbone))
  params = glue.warm_start_params(config, back.params["bert"], jax.random.PRNGKey(0))
  prompts = [xqg_input(c, t, x) for c, t, x in TEXTS]
  ids = np.full((len(prompts), 40), tok.pad_id, np.int32)
  for i, row in enumerate(tok.encode(prompts, 40, role="passage")):
    ids[i, : len(row)] = row
  mask = (ids != tok.pad_id).astype(np.int32)
  got = np.asarray(Bert2Bert(config).apply({"params": params}, ids, mask, method=Bert2Bert.encode))
  want = np.asarray(bert.BertEncoder(back.config).apply({"params": back.params["bert"]}, ids, mask))
  print(
    f"encoder states identical to {args.backbone}'s: {np.array_equal(got, want)} "
    f"(max abs diff {float(np.abs(got - want).max())})"
  )
  settings = DecodeSettings(
    strategy="greedy", language_tags="no", max_input_length=40, max_decode_length=8
  )
  gen = QuestionGenerator(params, config, tok, settings)
  out = gen(prompts, jax.random.PRNGKey(0), len(prompts), [c for c, _, _ in TEXTS])
  print(f"untrained greedy output (noise expected): {out}")


if __name__ == "__main__":
  main()
