"""Generated tokens/s: our jitted cached decoding vs Hugging Face ``generate`` (PyTorch, CPU).

Same weights on both sides (ours exported with ``checkpoints.hf.params_to_hf_tensors``), same
prompts, greedy and beam search. The warm-started BERT2BERT generator (``b2b`` shapes) has no
Hugging Face twin with the same weights (its tied LM head has no MLM transform), so only our
side is timed for it. Tokens counted = every output token up to and including EOS
(both sides decode random weights, which rarely emit EOS, so both run to the length limit).
Our compile time is reported separately and excluded from tokens/s; each timing is the
median of ``--repeats`` runs. Also reports how many greedy outputs agree token for token.

  XLA_FLAGS=--xla_force_host_platform_device_count=1 .venv/bin/python benchmarks/generate.py
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402

from xtr_jax.checkpoints.hf import params_to_hf_tensors  # noqa: E402
from xtr_jax.models import decoding, t5  # noqa: E402
from xtr_jax.models.bert import bert_config  # noqa: E402
from xtr_jax.models.bert2bert import Bert2BertConfig  # noqa: E402
from xtr_jax.models.config import mt5_config, tiny_config  # noqa: E402


def _b2b(size: str, layers: int, vocab: int) -> Bert2BertConfig:
  enc = bert_config(size, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
  return Bert2BertConfig(encoder=enc, num_decoder_layers=layers, output_vocab=tuple(range(vocab)))


SHAPES = {
  "tiny": lambda: tiny_config(),
  "mt5-small/8k-vocab": lambda: mt5_config("small", vocab_size=8192, dropout_rate=0.0),
  "b2b-tiny": lambda: _b2b("tiny", 2, 256),
  "me5-small-b2b/6-layer-8k-vocab": lambda: _b2b("me5-small", 6, 8192),
}


def _hf_model(params, config):
  import torch  # noqa: PLC0415
  import transformers  # noqa: PLC0415

  tensors, hf_config = params_to_hf_tensors(params, config, "mt5", {})
  cfg = transformers.MT5Config(**{k: v for k, v in hf_config.items() if k != "architectures"})
  cfg.tie_word_embeddings = False  # transformers 5 does not keep the constructor argument
  model = transformers.MT5ForConditionalGeneration(cfg).eval()
  # With an untied head, transformers 5 does not tie the stacks' embed_tokens to `shared`.
  for stack in ("encoder", "decoder"):
    tensors[f"{stack}.embed_tokens.weight"] = tensors["shared.weight"]
  model.load_state_dict({k: torch.tensor(v) for k, v in tensors.items()}, strict=True)
  return model


def _count(tokens: np.ndarray, eos: int = 1) -> int:
  total = 0
  for row in tokens.reshape(-1, tokens.shape[-1]):
    hits = np.nonzero(row == eos)[0]
    total += int(hits[0]) + 1 if hits.size else row.shape[0]
  return total


def _median_time(fn, repeats: int) -> tuple[float, object]:
  times, out = [], None
  for _ in range(repeats):
    t0 = time.perf_counter()
    out = fn()
    times.append(time.perf_counter() - t0)
  return statistics.median(times), out


def run(shape: str, strategy: str, args) -> dict:
  import torch  # noqa: PLC0415

  config = SHAPES[shape]()
  b2b = isinstance(config, Bert2BertConfig)
  if b2b:
    from xtr_jax.checkpoints.bert2bert import init_params  # noqa: PLC0415

    params = init_params(config, jax.random.PRNGKey(0))
    vocab, eos = config.encoder.vocab_size, config.eos_token_id
  else:
    params = nn.meta.unbox(jax.jit(lambda r: t5.init_params(config, r))(jax.random.PRNGKey(0)))
    vocab, eos = config.vocab_size, 1
  rng = np.random.default_rng(0)
  ids = rng.integers(4, vocab, (args.batch_size, args.input_length)).astype(np.int32)
  ids[:, -1] = 2 if b2b else 1
  kw = dict(config=config, strategy=strategy, max_decode_length=args.decode_length)
  if strategy == "beam":
    kw.update(beam_size=args.beam_size, num_return=1, alpha=0.0)

  def ours():
    out = decoding.generate(params, ids, None, **kw)
    return np.asarray(jax.block_until_ready(out.tokens))

  t0 = time.perf_counter()
  ours()
  compile_s = time.perf_counter() - t0
  ours_s, ours_tokens = _median_time(ours, args.repeats)
  if b2b:
    return dict(
      shape=shape,
      strategy=strategy + (f"(k={args.beam_size})" if strategy == "beam" else ""),
      compile_s=compile_s,
      ours_tps=_count(ours_tokens[:, 0], eos) / ours_s,
      hf_tps=float("nan"),
      agree="",
    )

  torch.set_num_threads(args.torch_threads)
  model = _hf_model(params, config)
  tids = torch.tensor(ids, dtype=torch.long)
  gen_kw = dict(
    max_new_tokens=args.decode_length,
    do_sample=False,
    num_beams=args.beam_size if strategy == "beam" else 1,
  )

  def hf():
    with torch.no_grad():
      return model.generate(input_ids=tids, attention_mask=torch.ones_like(tids), **gen_kw).numpy()

  hf()  # warm-up
  hf_s, hf_tokens = _median_time(hf, args.repeats)
  hf_tokens = hf_tokens[:, 1:]
  n_ours, n_hf = _count(ours_tokens[:, 0]), _count(hf_tokens)
  agree = ""
  if strategy == "greedy":
    width = min(hf_tokens.shape[1], ours_tokens.shape[2])
    same = (ours_tokens[:, 0, :width] == hf_tokens[:, :width]).all(1)
    agree = f"{int(same.sum())}/{len(same)}"
  return dict(
    shape=shape,
    strategy=strategy + (f"(k={args.beam_size})" if strategy == "beam" else ""),
    compile_s=compile_s,
    ours_tps=n_ours / ours_s,
    hf_tps=n_hf / hf_s,
    agree=agree,
  )


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--shapes", default="tiny,mt5-small/8k-vocab")
  parser.add_argument("--strategies", default="greedy,beam")
  parser.add_argument("--batch_size", type=int, default=8)
  parser.add_argument("--input_length", type=int, default=64)
  parser.add_argument("--decode_length", type=int, default=32)
  parser.add_argument("--beam_size", type=int, default=4)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--torch_threads", type=int, default=2)
  args = parser.parse_args()
  print(
    f"# {platform.machine()} {os.cpu_count()} CPUs, jax {jax.__version__}, devices "
    f"{len(jax.devices())}; batch {args.batch_size}, input {args.input_length}, "
    f"decode {args.decode_length}"
  )
  header = (
    "| shape | strategy | ours tok/s | HF generate tok/s | ours / HF | compile s | greedy agree |"
  )
  print(header + "\n|---|---|---:|---:|---:|---:|---:|", flush=True)
  for shape in args.shapes.split(","):
    for strategy in args.strategies.split(","):
      r = run(shape, strategy, args)
      hf = r["hf_tps"] == r["hf_tps"]  # NaN: no Hugging Face twin (b2b shapes)
      hf_tps = f"{r['hf_tps']:.0f}" if hf else "-"
      ratio = f"{r['ours_tps'] / r['hf_tps']:.2f}x" if hf else "-"
      print(
        f"| {r['shape']} | {r['strategy']} | {r['ours_tps']:.0f} | {hf_tps} | {ratio} | "
        f"{r['compile_s']:.1f} | {r['agree']} |",
        flush=True,
      )


if __name__ == "__main__":
  main()
