"""Does a BERT2BERT xQG generator read its passage? Held-out loss with true vs shuffled sources.

A generator whose decoder ignores the encoder writes one question for every passage (and, when
the language is named only in the prompt, in one language for every request), yet its
training loss falls like a working one's: it has become a language model of questions. The
cheapest test, before any generation or index build: the teacher-forced loss on held-out
pairs with each pair's own prompt, and with the prompts rotated by one (every question paired
with another pair's passage and language). A generator that uses its source loses clearly
more on the rotated prompts; the collapsed one in results/xqg_warmstart.md lost 0.0000 nats.

  .venv/bin/python benchmarks/xqg_conditioning.py --checkpoint outputs/xqg_me5_cpu/final \
    --pairs '../shared/data/pairs_swim_ir_layout/cross_lingual/*.jsonl'
  # a training checkpoint (orbax step folder) of the same run, config from its init checkpoint:
  .venv/bin/python benchmarks/xqg_conditioning.py --train_state outputs/RUN/checkpoints/400 \
    --checkpoint outputs/xqg_me5_init --pairs ...
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np

from xtr_jax.checkpoints import orbax_io
from xtr_jax.models import bert2bert
from xtr_jax.training import losses
from xtr_jax.xqg import warmstart


def _params(args) -> tuple[dict, bert2bert.Bert2BertConfig]:
  ckpt = orbax_io.load_checkpoint(args.checkpoint)
  if not args.train_state:
    return ckpt.params, ckpt.config
  import orbax.checkpoint as ocp  # noqa: PLC0415

  state = ocp.StandardCheckpointer().restore(
    os.path.abspath(os.path.join(args.train_state, "state"))
  )
  return state["params"], ckpt.config


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument(
    "--checkpoint", required=True, help="Exported generator (or its init, with --train_state)."
  )
  ap.add_argument("--train_state", help="A training checkpoint step folder (…/checkpoints/N).")
  ap.add_argument("--pairs", required=True, help="The recipe's pairs (its held-out split is used).")
  ap.add_argument("--backbone", default="me5-small")
  ap.add_argument("--heldout_fraction", type=float, default=0.05)
  ap.add_argument("--num_pairs", type=int, default=256)
  ap.add_argument("--batch_size", type=int, default=32)
  ap.add_argument("--passage_length", type=int, default=128)
  ap.add_argument("--query_length", type=int, default=32)
  args = ap.parse_args()

  params, config = _params(args)
  tok = warmstart.backbone_tokenizer(args.backbone)
  records = warmstart.split_pairs(args.pairs, args.heldout_fraction, "heldout")[: args.num_pairs]
  arrays = warmstart.xqg_arrays(records, tok, config, args.passage_length, args.query_length)
  src, dec_in = arrays["encoder_input_tokens"], arrays["decoder_input_tokens"]
  out, weights = arrays["decoder_target_tokens"], arrays["decoder_loss_weights"]
  model = bert2bert.Bert2Bert(config)

  @jax.jit
  def token_loss(src, dec_in, out, weights):
    mask = (src != config.pad_token_id).astype(jnp.int32)
    logits = model.apply({"params": params}, src, dec_in, mask, None)
    loss, _, _ = losses.token_cross_entropy(logits, out, weights, 0.0)
    return loss * weights.sum(), weights.sum()

  rotated = src[np.roll(np.arange(len(src)), 1)]
  totals = {"own prompts": [0.0, 0], "rotated prompts": [0.0, 0]}
  for start in range(0, len(src) - args.batch_size + 1, args.batch_size):
    s = slice(start, start + args.batch_size)
    for name, sources in (("own prompts", src), ("rotated prompts", rotated)):
      loss, n = token_loss(sources[s], dec_in[s], out[s], weights[s])
      totals[name][0] += float(loss)
      totals[name][1] += int(n)
  own, rot = (totals[k][0] / totals[k][1] for k in ("own prompts", "rotated prompts"))
  print(f"held-out pairs: {len(src) // args.batch_size * args.batch_size}")
  print(f"loss with own prompts:     {own:.4f}")
  print(f"loss with rotated prompts: {rot:.4f}")
  print(f"gap (rotated - own):       {rot - own:.4f} nats per target token")


if __name__ == "__main__":
  main()
