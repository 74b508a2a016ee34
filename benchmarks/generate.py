"""Generated tokens/s: our jitted cached decoding vs Hugging Face ``generate`` (PyTorch, CPU).

Same weights on both sides (ours exported with ``checkpoints.hf.params_to_hf_tensors``), same
prompts, greedy, top-k sampling (k 10) and beam search. The warm-started BERT2BERT generator (``b2b`` shapes) has no
Hugging Face twin with the same weights (its tied LM head has no MLM transform), so only our
side is timed for it. Tokens counted = every output token up to and including EOS
(both sides decode random weights, which rarely emit EOS, so both run to the length limit).
Our compile time is reported separately and excluded from tokens/s; each timing is the
median of ``--repeats`` runs. Also reports how many greedy outputs agree token for token.

Where the time goes, so a ratio can be read against what the machine allows: our encoder
share (encoder + cross-attention cache, timed alone), the floating-point work of one call
(XLA's own count of the compiled encoder and of one decode step, times the steps taken; HF
does the same work up to its smaller self-attention span), the GFLOP/s each side reached, and
the float32 matmul rate this machine reaches at the encoder's shapes (measured at start-up).
"ceiling" is the largest ours / HF ratio any implementation could show at that rate:
HF's time over the time the work takes at the measured matmul rate.

glibc malloc is tuned for XLA:CPU as the ``xtr-jax`` CLI tunes it (``xtr_jax/host_malloc.py``)
before JAX starts; ``XTR_JAX_TUNE_MALLOC=0`` leaves it alone.

  XLA_FLAGS=--xla_force_host_platform_device_count=1 .venv/bin/python benchmarks/generate.py
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from xtr_jax.host_malloc import tune_malloc  # noqa: E402

MALLOC_TUNED = tune_malloc()  # as the CLI does, before JAX starts its threads

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from xtr_jax.checkpoints.hf import params_to_hf_tensors  # noqa: E402
from xtr_jax.models import decoding, t5  # noqa: E402
from xtr_jax.models.bert import bert_config  # noqa: E402
from xtr_jax.models.bert2bert import Bert2BertConfig, seq2seq_model  # noqa: E402
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


def _flops(compiled) -> float:
  return float(compiled.cost_analysis().get("flops", float("nan")))


def _encode_and_step(params, ids, config, rows: int, decode_length: int):
  """Our encoder + cross-attention cache (jitted, timed alone) and the FLOPs of it and of one
  decode step over ``len(ids) * rows`` rows, as XLA counts them in the compiled programs."""
  model = seq2seq_model(config)

  def step(params, cache, mask, token_ids):
    return t5.decode_step(model, params, cache, mask, token_ids)

  encode = functools.partial(
    decoding.encode_to_cache, config=config, rows=rows, max_length=decode_length
  )
  encode_c = jax.jit(encode).lower(params, ids).compile()
  cache, mask = encode_c(params, ids)
  tok = jnp.zeros((ids.shape[0] * rows, 1), jnp.int32)
  step_c = jax.jit(step).lower(params, cache, mask, tok).compile()
  return encode_c, _flops(encode_c), _flops(step_c)


def matmul_rate(m: int, k: int, n: int, repeats: int = 10) -> dict[str, float]:
  """Float32 GFLOP/s of one [m, k] x [k, n] matmul, XLA and torch (median of ``repeats``)."""
  import torch  # noqa: PLC0415

  a, b = jnp.ones((m, k), jnp.float32), jnp.ones((k, n), jnp.float32)
  dot = jax.jit(jnp.dot)
  dot(a, b).block_until_ready()
  xla_s, _ = _median_time(lambda: dot(a, b).block_until_ready(), repeats)
  ta, tb = torch.ones(m, k), torch.ones(k, n)
  torch.mm(ta, tb)
  torch_s, _ = _median_time(lambda: torch.mm(ta, tb), repeats)
  work = 2.0 * m * k * n / 1e9
  return {"xla": work / xla_s, "torch": work / torch_s}


def _setup(shape: str, args):
  """(config, params, input ids, vocabulary size, EOS id) of a benchmark shape."""
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
  return config, params, ids, vocab, eos


def count(shape: str, strategy: str, args) -> str:
  """``--count_only``: XLA's FLOPs of one call (encoder + cache, ``decode_length`` steps)."""
  config, params, ids, _, _ = _setup(shape, args)
  rows = args.beam_size if strategy == "beam" else 1
  _, encode_flops, step_flops = _encode_and_step(params, ids, config, rows, args.decode_length)
  call = encode_flops + args.decode_length * step_flops
  return (
    f"| {shape} | {strategy} | {rows} | {encode_flops / 1e9:.1f} | {step_flops / 1e9:.2f} | "
    f"{call / 1e9:.1f} |"
  )


def run(shape: str, strategy: str, args) -> dict:
  import torch  # noqa: PLC0415

  config, params, ids, vocab, eos = _setup(shape, args)
  b2b = isinstance(config, Bert2BertConfig)
  kw = dict(config=config, strategy=strategy, max_decode_length=args.decode_length)
  if strategy == "beam":
    kw.update(beam_size=args.beam_size, num_return=1, alpha=0.0)

  def ours():
    out = decoding.generate(params, ids, jax.random.PRNGKey(0), **kw)
    return np.asarray(jax.block_until_ready(out.tokens))

  t0 = time.perf_counter()
  ours()
  compile_s = time.perf_counter() - t0
  ours_s, ours_tokens = _median_time(ours, args.repeats)
  rows = args.beam_size if strategy == "beam" else 1
  encode_c, encode_flops, step_flops = _encode_and_step(
    params, ids, config, rows, args.decode_length
  )
  encode_s, _ = _median_time(lambda: jax.block_until_ready(encode_c(params, ids)), args.repeats)
  # Steps taken: at least the longest output (random weights rarely stop early).
  steps = max(_count(row, eos) for row in ours_tokens.reshape(-1, 1, ours_tokens.shape[-1]))
  work = dict(
    encode_share=encode_s / ours_s,
    gflop=(encode_flops + steps * step_flops) / 1e9,
    ours_s=ours_s,
  )
  if b2b:
    return dict(
      shape=shape,
      strategy=strategy + (f"(k={args.beam_size})" if strategy == "beam" else ""),
      compile_s=compile_s,
      ours_tps=_count(ours_tokens[:, 0], eos) / ours_s,
      hf_tps=float("nan"),
      hf_s=float("nan"),
      agree="",
      **work,
    )

  torch.set_num_threads(args.torch_threads)
  model = _hf_model(params, config)
  tids = torch.tensor(ids, dtype=torch.long)
  gen_kw = dict(
    max_new_tokens=args.decode_length,
    do_sample=strategy == "topk",
    num_beams=args.beam_size if strategy == "beam" else 1,
  )
  if strategy == "topk":  # our default: top_k 10, temperature 1
    gen_kw.update(top_k=10, temperature=1.0)

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
    hf_s=hf_s,
    agree=agree,
    **work,
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
  parser.add_argument(
    "--count_only",
    action="store_true",
    help="Only print XLA's FLOP count of one call per shape and strategy (no timing, no HF).",
  )
  args = parser.parse_args()
  if args.count_only:
    print("| shape | strategy | rows per input | encoder + cache GFLOP | step GFLOP | call GFLOP |")
    print("|---|---|---:|---:|---:|---:|")
    for shape in args.shapes.split(","):
      for strategy in args.strategies.split(","):
        print(count(shape, strategy, args), flush=True)
    return
  import torch  # noqa: PLC0415

  torch.set_num_threads(args.torch_threads)
  load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
  print(
    f"# {platform.machine()} {os.cpu_count()} CPUs, jax {jax.__version__}, devices "
    f"{len(jax.devices())}, torch {torch.__version__} ({args.torch_threads} threads); batch "
    f"{args.batch_size}, input {args.input_length}, decode {args.decode_length}; malloc "
    f"tuned: {MALLOC_TUNED}; load average at start {load:.2f}"
  )
  # The encoder's feed-forward shape at mT5-small width, and a large square one.
  rates = [
    matmul_rate(args.batch_size * args.input_length, 512, 1024),
    matmul_rate(2048, 2048, 2048),
  ]
  peak = max(max(r.values()) for r in rates)
  print(
    "# float32 matmul GFLOP/s (XLA, torch): "
    + ", ".join(f"{r['xla']:.0f}, {r['torch']:.0f}" for r in rates)
    + f"; best {peak:.0f}",
    flush=True,
  )
  header = (
    "| shape | strategy | ours tok/s | HF generate tok/s | ours / HF | ceiling | "
    "GFLOP/call | ours GFLOP/s | HF GFLOP/s | ours encoder share | compile s | greedy agree |"
  )
  print(header + "\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
  for shape in args.shapes.split(","):
    for strategy in args.strategies.split(","):
      r = run(shape, strategy, args)
      hf = r["hf_tps"] == r["hf_tps"]  # NaN: no Hugging Face twin (b2b shapes)
      hf_tps = f"{r['hf_tps']:.0f}" if hf else "-"
      ratio = f"{r['ours_tps'] / r['hf_tps']:.2f}x" if hf else "-"
      ceiling = f"{r['hf_s'] / (r['gflop'] / peak):.2f}x" if hf else "-"
      hf_rate = f"{r['gflop'] / r['hf_s']:.0f}" if hf else "-"
      print(
        f"| {r['shape']} | {r['strategy']} | {r['ours_tps']:.0f} | {hf_tps} | {ratio} | "
        f"{ceiling} | {r['gflop']:.1f} | {r['gflop'] / r['ours_s']:.0f} | {hf_rate} | "
        f"{r['encode_share']:.0%} | {r['compile_s']:.1f} | {r['agree']} |",
        flush=True,
      )


if __name__ == "__main__":
  main()
