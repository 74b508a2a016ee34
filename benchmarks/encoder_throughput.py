"""Encoder throughput: our jitted Flax encoders vs transformers' torch models (CPU).

``--backbone mt5`` (default): Flax T5EncoderModel vs torch MT5EncoderModel, random
mT5-small-shaped weights (torch model -> save_pretrained -> ``xtr_jax.checkpoints.hf``).
``--backbone bert``: Flax BertEncoder vs torch BertModel at multilingual-E5-small size
(``bert_config('me5-small')``), the torch state dict exported into our params through
``hf_bert.params_from_hf_tensors``, so both sides hold the same random weights.

Workloads (``--workload``): ``fixed`` is one padded batch x length; ``corpus`` (bert only) is
``--texts`` synthetic token lengths (seeded log-normal, clipped to [8, --max_length]),
length-sorted into batches of ``--corpus_batch``: torch pads each batch to its own max. Ours,
with ``--batching batches`` (default), runs the same batches padded to the next of
``--buckets`` (so a handful of jit compiles serve every batch); with ``--batching project``
it batches the texts as ``xtr-jax index`` does (``encode.plan_batches`` with
``EncodeParams``' buckets and ``--token_budget``, default auto: the CPU policy). Both report
REAL (non-padding) tokens/s. Threads: torch gets ``--threads`` intra-op threads (default 2 =
all cores of the reference machine); XLA's CPU client uses all cores, and ``--xla_flags``
(e.g. ``--xla_cpu_multi_thread_eigen=false``) is added to XLA_FLAGS before JAX starts.
glibc malloc is tuned for XLA:CPU as the ``xtr-jax`` CLI tunes it (``xtr_jax/host_malloc.py``;
``--no_tune_malloc`` leaves it alone), for both sides. Timings are interleaved (jax, torch,
jax, ...) so a noisy shared machine slows both sides alike; the median of the repeats is
reported.

  .venv/bin/python benchmarks/encoder_throughput.py --batch 16 --length 256 --repeats 5
  .venv/bin/python benchmarks/encoder_throughput.py --backbone bert --workload both \\
      --batch 32 --length 128 --texts 2000 --corpus_batch 32 --repeats 3
  .venv/bin/python benchmarks/encoder_throughput.py --backbone bert --workload corpus \
      --batching project --texts 2000 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time


def _parse(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--backbone", choices=("mt5", "bert"), default="mt5")
  p.add_argument("--workload", choices=("fixed", "corpus", "both"), default="fixed")
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--length", type=int, default=256)
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--vocab", type=int, help="Vocab size (mt5: 32000 reduced; bert: 250037).")
  p.add_argument("--layers", type=int, help="Encoder layers (mT5-small: 8, mE5-small: 12).")
  p.add_argument("--threads", type=int, default=2)
  p.add_argument("--check_tol", type=float, default=1e-3)
  p.add_argument("--texts", type=int, default=2000, help="corpus: number of texts.")
  p.add_argument("--corpus_batch", type=int, default=32, help="corpus: texts per batch.")
  p.add_argument("--median_length", type=float, default=60, help="corpus: median tokens/text.")
  p.add_argument("--sigma", type=float, default=0.8, help="corpus: log-normal sigma.")
  p.add_argument("--max_length", type=int, default=512, help="corpus: longest text (tokens).")
  # EncodeParams.buckets (not imported: that would start JAX before --xla_flags), plus 16.
  p.add_argument(
    "--buckets",
    default="16,32,64,96,128,160,192,256,320,384,448,512",
    help="corpus, --batching batches: our pad lengths.",
  )
  p.add_argument(
    "--batching",
    choices=("batches", "project"),
    default="batches",
    help="corpus: ours runs torch's batches (padded to --buckets) or the index's own plan.",
  )
  p.add_argument(
    "--token_budget", type=int, default=-1, help="corpus, --batching project: -1 = auto."
  )
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--torch_attention", default="sdpa", help="bert: sdpa or eager attention.")
  p.add_argument("--xla_flags", default="", help="Appended to XLA_FLAGS before JAX starts.")
  p.add_argument(
    "--no_tune_malloc",
    action="store_true",
    help="Leave glibc malloc at its defaults (the xtr-jax CLI tunes it: xtr_jax/host_malloc.py).",
  )
  args = p.parse_args(argv)
  if args.workload != "fixed" and args.backbone != "bert":
    p.error("--workload corpus/both is implemented for --backbone bert only")
  args.vocab = args.vocab or (32000 if args.backbone == "mt5" else 250037)
  args.layers = args.layers or (8 if args.backbone == "mt5" else 12)
  return args


def _time_interleaved(runners: dict, warmup: int, repeats: int) -> dict[str, float]:
  """Median seconds per runner; runs alternate so machine noise hits all of them alike."""
  import numpy as np

  for _ in range(warmup):
    for fn in runners.values():
      fn()
  times = {name: [] for name in runners}
  for _ in range(repeats):
    for name, fn in runners.items():
      start = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - start)
  return {name: float(np.median(t)) for name, t in times.items()}


def _print_table(results: dict[str, float], real_tokens: int) -> None:
  print(f"{'impl':<12} {'median s':>9} {'tokens/s':>10} {'vs torch':>9}")
  base = results["torch"]
  for name, sec in results.items():
    print(f"{name:<12} {sec:9.3f} {real_tokens / sec:10.0f} {base / sec:8.2f}x")


def _fixed_batch(args, vocab: int, low_id: int, pad_id: int):
  """One batch x length batch, row lengths in [length/2, length], padded with ``pad_id``."""
  import numpy as np

  rng = np.random.default_rng(args.seed)
  ids = rng.integers(low_id, vocab, size=(args.batch, args.length))
  lengths = rng.integers(args.length // 2, args.length + 1, size=args.batch)
  lengths[0] = args.length
  mask = (np.arange(args.length)[None] < lengths[:, None]).astype(np.int64)
  return np.where(mask > 0, ids, pad_id), mask


# ----------------------------------------------------------------------------- mT5


def run_mt5(args) -> int:
  import jax
  import jax.numpy as jnp
  import numpy as np
  import torch
  import transformers

  from xtr_jax.checkpoints import hf
  from xtr_jax.models import t5

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

  ids, mask = _fixed_batch(args, args.vocab, 2, 0)
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
  results = _time_interleaved(
    {"flax (jit)": run_jax, "torch": run_torch}, args.warmup, args.repeats
  )
  print(
    f"mT5-small-shaped encoder ({args.layers} layers, vocab {args.vocab}), batch "
    f"{args.batch} x {args.length}, {real_tokens} real tokens, threads={args.threads}, "
    f"max |diff| {diff:.1e}; jax {jax.__version__}, torch {torch.__version__}"
  )
  _print_table(results, real_tokens)
  return 0


# ----------------------------------------------------------------------------- BERT / mE5


def _bert_pair(args):
  """(torch BertModel, our config, our params) holding the same random weights."""
  import jax
  import torch
  import transformers

  from xtr_jax.checkpoints import hf_bert
  from xtr_jax.models.bert import bert_config

  config = bert_config(
    "me5-small",
    vocab_size=args.vocab,
    num_hidden_layers=args.layers,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
  )
  torch.manual_seed(0)
  hf_cfg = transformers.BertConfig(
    **hf_bert.config_to_hf(config, "BertModel"), attn_implementation=args.torch_attention
  )
  ref = transformers.BertModel(hf_cfg, add_pooling_layer=False).eval()
  state = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
  params = hf_bert.params_from_hf_tensors(state, config, "torch BertModel state dict")
  return ref, config, jax.device_put(params)


def _corpus_lengths(args):
  """Seeded log-normal token counts, clipped to [8, max_length], sorted (longest last)."""
  import numpy as np

  rng = np.random.default_rng(args.seed)
  raw = rng.lognormal(np.log(args.median_length), args.sigma, size=args.texts)
  return np.sort(np.clip(np.rint(raw), 8, args.max_length).astype(np.int64))


def _corpus_batches(args, lengths, vocab: int, pad_id: int):
  """[(ids, mask, bucket)]: each batch padded to its own max; ``bucket`` is our pad length."""
  import numpy as np

  buckets = sorted(int(b) for b in args.buckets.split(","))
  if buckets[-1] < lengths.max():
    raise SystemExit(f"--buckets max {buckets[-1]} is below the longest text {lengths.max()}")
  rng = np.random.default_rng(args.seed + 1)
  batches = []
  for start in range(0, len(lengths), args.corpus_batch):
    rows = lengths[start : start + args.corpus_batch]
    width = int(rows.max())
    mask = (np.arange(width)[None] < rows[:, None]).astype(np.int64)
    ids = np.where(mask > 0, rng.integers(5, vocab, size=mask.shape), pad_id)
    batches.append((ids, mask, next(b for b in buckets if b >= width)))
  return batches


def _pad_to(x, rows: int, width: int, value: int):
  import numpy as np

  out = np.full((rows, width), value, x.dtype)
  out[: x.shape[0], : x.shape[1]] = x
  return out


def _project_batches(args, batches, pad: int):
  """Our calls when the texts of ``batches`` are batched as ``xtr-jax index`` batches them."""
  import jax.numpy as jnp
  import numpy as np

  from xtr_jax.index.encode import EncodeParams, batch_policy, plan_batches

  texts = [row[: int(m.sum())] for ids, mask, _ in batches for row, m in zip(ids, mask)]
  texts.sort(key=len, reverse=True)  # encode_tokens' order: longest first
  enc = EncodeParams(max_length=args.max_length)
  budget, min_rows = batch_policy("cpu", enc.batch_size, args.token_budget)
  lengths = [len(t) for t in texts]
  ours = []
  for start, rows, length in plan_batches(lengths, enc.max_length, enc.buckets, budget, min_rows):
    ids = np.full((rows, length), pad, np.int64)
    for r, t in enumerate(texts[start : start + rows]):
      ids[r, : len(t)] = t
    ours.append((jnp.asarray(ids, jnp.int32), jnp.asarray(ids != pad, jnp.int32)))
  desc = f"index plan: token budget {budget}, min rows {min_rows}, buckets {enc.buckets}"
  return ours, desc


def run_bert(args) -> int:
  import jax
  import torch

  from xtr_jax.models.bert import BertEncoder

  ref, config, params = _bert_pair(args)
  model = BertEncoder(config)
  encode = jax.jit(lambda p, i, m: model.apply({"params": p}, i, m))
  pad = config.pad_token_id

  def torch_states(ids, mask):
    with torch.inference_mode():
      return ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state

  print(
    f"mE5-small-shaped BertModel ({args.layers} layers, hidden {config.hidden_size}, vocab "
    f"{args.vocab}), threads={args.threads}, torch attention {ref.config._attn_implementation}, "
    f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; jax {jax.__version__}, torch "
    f"{torch.__version__}"
  )
  status = 0
  if args.workload in ("fixed", "both"):
    status |= _bert_fixed(args, encode, params, torch_states, config)
  if args.workload in ("corpus", "both"):
    status |= _bert_corpus(args, encode, params, torch_states, config, pad)
  return status


def _check(out_jax, out_torch, mask, tol: float) -> float | None:
  """Max abs diff over real tokens, or None (after a message) when above ``tol``."""
  import numpy as np

  w = mask.shape[1]
  diff = float(
    np.max(np.abs(np.asarray(out_jax)[: mask.shape[0], :w] - out_torch) * mask[..., None])
  )
  if diff > tol:
    print(f"outputs differ: max abs diff {diff:.2e} > {tol}", file=sys.stderr)
    return None
  return diff


def _bert_fixed(args, encode, params, torch_states, config) -> int:
  import jax.numpy as jnp

  ids, mask = _fixed_batch(args, config.vocab_size, 5, config.pad_token_id)
  j_ids, j_mask = jnp.asarray(ids, jnp.int32), jnp.asarray(mask, jnp.int32)
  run_jax = lambda: encode(params, j_ids, j_mask).block_until_ready()
  run_torch = lambda: torch_states(ids, mask)
  diff = _check(run_jax(), run_torch().numpy(), mask, args.check_tol)
  if diff is None:
    return 1
  results = _time_interleaved(
    {"flax (jit)": run_jax, "torch": run_torch}, args.warmup, args.repeats
  )
  print(
    f"\nfixed: batch {args.batch} x {args.length}, {int(mask.sum())} real tokens, max |diff| {diff:.1e}"
  )
  _print_table(results, int(mask.sum()))
  return 0


def _bert_corpus(args, encode, params, torch_states, config, pad: int) -> int:
  import jax.numpy as jnp
  import numpy as np

  lengths = _corpus_lengths(args)
  batches = _corpus_batches(args, lengths, config.vocab_size, pad)
  if args.batching == "project":
    ours, plan_desc = _project_batches(args, batches, pad)
  else:
    rows = args.corpus_batch  # ours: every batch padded to full rows too (one compile a bucket)
    ours = [
      (
        jnp.asarray(_pad_to(i, rows, b, pad), jnp.int32),
        jnp.asarray(_pad_to(m, rows, b, 0), jnp.int32),
      )
      for i, m, b in batches
    ]
    plan_desc = f"buckets {args.buckets}"
  real = int(lengths.sum())
  compile_start = time.perf_counter()
  for shape in sorted({i.shape for i, _ in ours}):  # compile every shape once, not timed
    encode(params, *next(x for x in ours if x[0].shape == shape)).block_until_ready()
  compile_s = time.perf_counter() - compile_start
  last = [jnp.asarray(_pad_to(x, args.corpus_batch, batches[-1][2], v), jnp.int32)
          for x, v in ((batches[-1][0], pad), (batches[-1][1], 0))]  # fmt: skip
  diff = _check(
    encode(params, *last),
    torch_states(*batches[-1][:2]).numpy(),
    batches[-1][1],
    args.check_tol,
  )
  if diff is None:
    return 1

  def run_jax():
    for i, m in ours:
      out = encode(params, i, m)
    out.block_until_ready()

  def run_torch():
    for i, m, _ in batches:
      torch_states(i, m)

  results = _time_interleaved({"flax (jit)": run_jax, "torch": run_torch}, 1, args.repeats)
  torch_padded = sum(m.size for _, m, _ in batches)
  ours_padded = sum(i.size for i, _ in ours)
  print(
    f"\ncorpus: {args.texts} texts, lengths 8..{args.max_length} (median {np.median(lengths):.0f}, "
    f"mean {lengths.mean():.0f}), {len(batches)} batches of {args.corpus_batch}, {real} real "
    f"tokens; padded: torch {torch_padded}, ours {ours_padded} in {len(ours)} calls "
    f"({plan_desc}); "
    f"compiles {compile_s:.1f} s (not timed); max |diff| {diff:.1e}"
  )
  _print_table(results, real)
  return 0


def main(argv=None) -> int:
  args = _parse(argv)
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  if args.xla_flags:
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {args.xla_flags}".strip()
  # As the xtr-jax CLI does, before JAX or torch start threads; both sides share it.
  from xtr_jax.host_malloc import tune_malloc

  tuned = False if args.no_tune_malloc else tune_malloc()
  print(f"malloc tuned for XLA:CPU: {tuned} (xtr_jax/host_malloc.py)")
  import torch

  torch.set_num_threads(args.threads)
  return run_mt5(args) if args.backbone == "mt5" else run_bert(args)


if __name__ == "__main__":
  sys.exit(main())
