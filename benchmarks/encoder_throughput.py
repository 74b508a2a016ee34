"""Encoder throughput: jitted Flax T5EncoderModel vs transformers' torch MT5EncoderModel (CPU).

Both sides run the same random mT5-small-shaped weights (torch model -> save_pretrained ->
``xtr_jax.checkpoints.hf`` import), on the same padded batch, after warm-up. Threads: torch
gets ``--threads`` intra-op threads (default 2 = all cores of the reference machine), XLA's CPU
client uses all cores. Timings are interleaved (jax, torch, jax, ...) so a noisy shared
machine slows both sides alike; the median of the repeats is reported.

  .venv/bin/python benchmarks/encoder_throughput.py --batch 16 --length 256 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time


def _parse(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--length", type=int, default=256)
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--vocab", type=int, default=32000, help="Reduced vocab (mT5 has 250112).")
  p.add_argument("--layers", type=int, default=8, help="Encoder layers (mT5-small: 8).")
  p.add_argument("--threads", type=int, default=2)
  p.add_argument("--check_tol", type=float, default=1e-3)
  return p.parse_args(argv)


def main(argv=None) -> int:
  args = _parse(argv)
  # XLA's CPU client uses one Eigen pool over all cores (2 on the reference machine) and has
  # no per-process thread-count flag; torch is pinned to --threads (default: the same 2).
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  import jax
  import jax.numpy as jnp
  import numpy as np
  import torch
  import transformers

  from xtr_jax.checkpoints import hf
  from xtr_jax.models import t5

  torch.set_num_threads(args.threads)
  hf_cfg = transformers.MT5Config(
    vocab_size=args.vocab,
    d_model=512,
    d_kv=64,
    d_ff=1024,
    num_heads=6,
    num_layers=args.layers,
    dropout_rate=0.0,
  )
  torch.manual_seed(0)
  ref = transformers.MT5EncoderModel(hf_cfg).eval()
  with tempfile.TemporaryDirectory() as tmp:
    ref.save_pretrained(tmp, safe_serialization=True)
    params, config, _, _ = hf.load_hf(tmp)
  params = jax.device_put(params)

  rng = np.random.default_rng(0)
  ids = rng.integers(2, args.vocab, size=(args.batch, args.length))
  lengths = rng.integers(args.length // 2, args.length + 1, size=args.batch)
  lengths[0] = args.length
  mask = (np.arange(args.length)[None] < lengths[:, None]).astype(np.int64)
  ids = ids * mask
  real_tokens = int(mask.sum())

  model = t5.T5EncoderModel(config)
  encode = jax.jit(lambda p, i, m: model.apply({"params": p}, i, m))
  j_ids, j_mask = jnp.asarray(ids, jnp.int32), jnp.asarray(mask, jnp.int32)
  t_ids, t_mask = torch.tensor(ids), torch.tensor(mask)

  def run_jax():
    return encode(params, j_ids, j_mask).block_until_ready()

  def run_torch():
    with torch.inference_mode():
      return ref(input_ids=t_ids, attention_mask=t_mask).last_hidden_state

  out_j, out_t = np.asarray(run_jax()), run_torch().numpy()
  diff = float(np.max(np.abs(out_j - out_t) * mask[..., None]))
  if diff > args.check_tol:
    print(f"outputs differ: max abs diff {diff:.2e} > {args.check_tol}", file=sys.stderr)
    return 1

  runners = {"flax (jit)": run_jax, "torch": run_torch}
  for _ in range(args.warmup):
    for fn in runners.values():
      fn()
  times = {name: [] for name in runners}
  for _ in range(args.repeats):
    for name, fn in runners.items():
      start = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - start)
  results = {name: float(np.median(t)) for name, t in times.items()}

  print(
    f"mT5-small-shaped encoder ({args.layers} layers, vocab {args.vocab}), batch "
    f"{args.batch} x {args.length}, {real_tokens} real tokens, threads={args.threads}, "
    f"max |diff| {diff:.1e}; jax {jax.__version__}, torch {torch.__version__}"
  )
  print(f"{'impl':<12} {'median s':>9} {'tokens/s':>10} {'vs torch':>9}")
  base = results["torch"]
  for name, sec in results.items():
    print(f"{name:<12} {sec:9.3f} {real_tokens / sec:10.0f} {base / sec:8.2f}x")
  return 0


if __name__ == "__main__":
  sys.exit(main())
