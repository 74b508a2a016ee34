"""Autoregressive decoding for the xQG generators: greedy, top-k sampling, beam search.

Every strategy is written against a *step function* ``step_fn(cache, token_ids[B, 1]) ->
(logits[B, V], cache)`` so the search logic is independent of the network (tests drive it with
hand-built logit tables) and runs under one ``jax.jit`` with a ``lax.while_loop`` that stops as
soon as every sequence has ended. ``generate`` binds the step function to the cached decoder of
either generator, mT5 (``t5.Transformer``) or BERT2BERT (``bert2bert.Bert2Bert``, which works
in its output ids), through their common ``encode``/``decode`` methods.

Conventions (those of T5/t5x and Hugging Face): decoding starts from ``start_id`` (0), a
sequence ends with ``eos_id`` (1) which is kept in the output, and every position after it is
``pad_id`` (0). Scores are sums of the model's log-probabilities (untempered, full vocabulary);
beam scores are divided by t5x's brevity penalty ``((5 + length) / 6) ** alpha``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from xtr_jax.models import t5
from xtr_jax.models.bert2bert import Bert2BertConfig, seq2seq_model
from xtr_jax.models.config import T5Config

Array = jax.Array
StepFn = Callable[[Any, Array], tuple[Array, Any]]
NEG_INF = -1.0e9  # finite: sums of it stay ordered and never become NaN
STRATEGIES = ("greedy", "topk", "beam")

# Cache leaves that are shared by the whole batch and must not be repeated or gathered.
_SHARED_CACHE_LEAVES = ("cache_index", "max_length_marker")
# Cache modules that hold only the source's side (the same for every beam of one example).
_SOURCE_CACHE_MODULES = ("encoder_decoder_attention", "copy_attention")


class DecodeOutput(NamedTuple):
  tokens: Array  # [B, n, T] int32, EOS kept, pad after it
  scores: Array  # [B, n] float32: log-probability (greedy, top-k) or penalised beam score


# ----------------------------------------------------------------------------- cache helpers


def _path_names(path) -> list[str]:
  return [str(getattr(k, "key", getattr(k, "name", k))) for k in path]


def _is_per_sequence(path, x: Array) -> bool:
  names = _path_names(path)
  return x.ndim > 0 and not (names and names[-1] in _SHARED_CACHE_LEAVES)


def repeat_batch(tree: Any, n: int) -> Any:
  """Repeats every per-sequence leaf n times along axis 0 ([B, ...] -> [B*n, ...], b-major)."""

  def rep(path, x):
    return jnp.repeat(x, n, axis=0) if _is_per_sequence(path, x) else x

  return jax.tree_util.tree_map_with_path(rep, tree)


def gather_beams(tree: Any, beam_indices: Array, batch_size: int, beam_size: int) -> Any:
  """Reorders per-beam leaves [B*K, ...] by ``beam_indices`` [B, K'] -> [B*K', ...].

  Cross-attention keys/values (and the copy head's source cache) are identical across the
  beams of one example, so they are left as they are (when K' == K) instead of being copied
  every step.
  """
  new_k = beam_indices.shape[1]

  def gather(path, x):
    if not _is_per_sequence(path, x):
      return x
    if new_k == beam_size and set(_SOURCE_CACHE_MODULES) & set(_path_names(path)):
      return x
    x = x.reshape((batch_size, beam_size) + x.shape[1:])
    x = jnp.take_along_axis(x, beam_indices.reshape(beam_indices.shape + (1,) * (x.ndim - 2)), 1)
    return x.reshape((batch_size * new_k,) + x.shape[2:])

  return jax.tree_util.tree_map_with_path(gather, tree)


def brevity_penalty(length: Array, alpha: float) -> Array:
  """t5x / GNMT length normalisation ((5 + length) / 6) ** alpha (1 when alpha = 0)."""
  return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def limit_vocab(
  logits: Array, vocab_limit: int | None, suppress_ids: tuple[int, ...] = ()
) -> Array:
  """Logits with ids >= ``vocab_limit`` (tags, padded vocabulary) and ``suppress_ids`` (e.g.
  SentencePiece's unk, which detokenises to a literal "⁇") set to NEG_INF."""
  vocab = logits.shape[-1]
  if (vocab_limit is None or vocab_limit >= vocab) and not suppress_ids:
    return logits
  ids = jnp.arange(vocab)
  allowed = ids < (vocab if vocab_limit is None else vocab_limit)
  for i in suppress_ids:
    allowed = allowed & (ids != i)
  return jnp.where(allowed, logits, NEG_INF)


# ----------------------------------------------------------------------- greedy and sampling


def temperature_sample(
  step_fn: StepFn,
  cache: Any,
  batch_size: int,
  max_decode_length: int,
  rng: Array | None = None,
  *,
  top_k: int = 0,
  temperature: float = 1.0,
  eos_id: int = 1,
  start_id: int | Array = 0,
  pad_id: int = 0,
  vocab_limit: int | None = None,
  suppress_ids: tuple[int, ...] = (),
) -> tuple[Array, Array]:
  """Greedy (``rng=None`` or ``temperature=0``) or (top-k) sampling; returns tokens, log-probs.

  The key is split once per step, so a seed fixes the whole output. ``top_k=0`` samples from
  the full distribution. Returns tokens [B, T] and the summed log-probability [B].
  ``start_id`` may be one id per row [B] (language tags); ids >= ``vocab_limit`` are never
  produced, nor are ``suppress_ids``.
  """
  greedy = rng is None or temperature == 0.0
  rng = jax.random.PRNGKey(0) if rng is None else rng
  tokens = jnp.full((batch_size, max_decode_length + 1), pad_id, jnp.int32)
  tokens = tokens.at[:, 0].set(jnp.broadcast_to(jnp.asarray(start_id, jnp.int32), (batch_size,)))
  state = (
    jnp.zeros((), jnp.int32),
    tokens,
    cache,
    jnp.zeros((batch_size,), bool),
    jnp.zeros((batch_size,), jnp.float32),
    rng,
  )

  def cond(state):
    i, _, _, ended, _, _ = state
    return (i < max_decode_length) & ~jnp.all(ended)

  def body(state):
    i, tokens, cache, ended, logp, rng = state
    current = lax.dynamic_slice_in_dim(tokens, i, 1, axis=1)
    logits, cache = step_fn(cache, current)
    logits = limit_vocab(logits.astype(jnp.float32), vocab_limit, suppress_ids)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    rng, key = jax.random.split(rng)
    if greedy:
      nxt = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    elif top_k > 0:
      top_vals, top_idx = lax.top_k(logits, top_k)
      choice = jax.random.categorical(key, top_vals / temperature, axis=-1)
      nxt = jnp.take_along_axis(top_idx, choice[:, None], axis=1)[:, 0].astype(jnp.int32)
    else:
      nxt = jax.random.categorical(key, logits / temperature, axis=-1).astype(jnp.int32)
    step_logp = jnp.take_along_axis(log_probs, nxt[:, None], axis=1)[:, 0]
    logp = logp + jnp.where(ended, 0.0, step_logp)
    nxt = jnp.where(ended, pad_id, nxt)
    tokens = lax.dynamic_update_slice_in_dim(tokens, nxt[:, None], i + 1, axis=1)
    ended = ended | (nxt == eos_id)
    return i + 1, tokens, cache, ended, logp, rng

  _, tokens, _, _, logp, _ = lax.while_loop(cond, body, state)
  return tokens[:, 1:], logp


# ------------------------------------------------------------------------------ beam search


def beam_search(
  step_fn: StepFn,
  cache: Any,
  batch_size: int,
  beam_size: int,
  max_decode_length: int,
  *,
  alpha: float = 0.6,
  eos_id: int = 1,
  start_id: int | Array = 0,
  pad_id: int = 0,
  num_return: int | None = None,
  vocab_limit: int | None = None,
  suppress_ids: tuple[int, ...] = (),
) -> tuple[Array, Array]:
  """Beam search over a cache already repeated to ``batch_size * beam_size`` rows (b-major).

  Keeps K live and K finished hypotheses per example; each step ranks the top 2K extensions
  (at most K of them end in EOS, so K live ones always remain). Stops once, for every example,
  K hypotheses are finished and none of the live ones can still beat the worst of them.
  Hypotheses that reach ``max_decode_length`` without EOS compete with the finished ones.
  Returns tokens [B, n, T] and scores [B, n] (best first), n = ``num_return`` or K.
  ``start_id`` may be one id per example [B]; ids >= ``vocab_limit`` and ``suppress_ids`` are
  never produced.
  """
  b, k, length = batch_size, beam_size, max_decode_length
  num_return = k if num_return is None else num_return
  if not 1 <= num_return <= k:
    raise ValueError(f"num_return={num_return} must be in [1, beam_size={k}]")
  start = jnp.broadcast_to(jnp.asarray(start_id, jnp.int32), (b,))
  seqs = jnp.full((b, k, length + 1), pad_id, jnp.int32).at[:, :, 0].set(start[:, None])
  live_logp = jnp.tile(jnp.array([0.0] + [NEG_INF] * (k - 1), jnp.float32), (b, 1))
  state = (
    jnp.zeros((), jnp.int32),
    seqs,
    live_logp,
    seqs,  # finished sequences
    jnp.full((b, k), NEG_INF, jnp.float32),  # finished scores
    jnp.zeros((b, k), bool),  # finished flags
    cache,
  )
  best_penalty = brevity_penalty(length, alpha) if alpha >= 0 else brevity_penalty(1, alpha)

  def cond(state):
    i, _, live_logp, _, fin_scores, fin_flags, _ = state
    best_live = jnp.max(live_logp, axis=1) / best_penalty
    worst_fin = jnp.min(jnp.where(fin_flags, fin_scores, NEG_INF), axis=1)
    done = jnp.all(fin_flags, axis=1) & (worst_fin >= best_live)
    return (i < length) & ~jnp.all(done)

  def body(state):
    i, live_seqs, live_logp, fin_seqs, fin_scores, fin_flags, cache = state
    current = lax.dynamic_slice_in_dim(live_seqs, i, 1, axis=2).reshape(b * k, 1)
    logits, cache = step_fn(cache, current)
    log_probs = jax.nn.log_softmax(
      limit_vocab(logits.astype(jnp.float32), vocab_limit, suppress_ids), axis=-1
    )
    vocab = log_probs.shape[-1]
    cand = (live_logp[:, :, None] + log_probs.reshape(b, k, vocab)).reshape(b, k * vocab)
    cand_logp, flat = lax.top_k(cand, 2 * k)
    cand_beam = flat // vocab
    cand_tok = (flat % vocab).astype(jnp.int32)
    cand_seqs = jnp.take_along_axis(live_seqs, cand_beam[:, :, None], axis=1)
    cand_seqs = lax.dynamic_update_slice_in_dim(cand_seqs, cand_tok[:, :, None], i + 1, axis=2)
    is_eos = (cand_tok == eos_id) & (cand_logp > NEG_INF / 2)  # not from an empty beam
    # Finished pool: old finished + candidates ending in EOS now; keep the best K.
    new_scores = jnp.where(is_eos, cand_logp / brevity_penalty(i + 1, alpha), NEG_INF)
    pool_scores = jnp.concatenate([fin_scores, new_scores], axis=1)
    pool_flags = jnp.concatenate([fin_flags, is_eos], axis=1)
    pool_seqs = jnp.concatenate([fin_seqs, cand_seqs], axis=1)
    fin_scores, top = lax.top_k(jnp.where(pool_flags, pool_scores, 2 * NEG_INF), k)
    fin_flags = jnp.take_along_axis(pool_flags, top, axis=1)
    fin_scores = jnp.where(fin_flags, fin_scores, NEG_INF)
    fin_seqs = jnp.take_along_axis(pool_seqs, top[:, :, None], axis=1)
    # Live pool: the best K candidates that did not end.
    live_logp, top = lax.top_k(jnp.where(is_eos, 2 * NEG_INF, cand_logp), k)
    live_seqs = jnp.take_along_axis(cand_seqs, top[:, :, None], axis=1)
    cache = gather_beams(cache, jnp.take_along_axis(cand_beam, top, axis=1), b, k)
    return i + 1, live_seqs, live_logp, fin_seqs, fin_scores, fin_flags, cache

  i, live_seqs, live_logp, fin_seqs, fin_scores, fin_flags, _ = lax.while_loop(cond, body, state)
  # Live hypotheses (cut at max length) compete too; after an early stop none can win.
  live_scores = jnp.where(live_logp > NEG_INF / 2, live_logp / brevity_penalty(i, alpha), NEG_INF)
  scores = jnp.concatenate([jnp.where(fin_flags, fin_scores, 2 * NEG_INF), live_scores], axis=1)
  seqs = jnp.concatenate([fin_seqs, live_seqs], axis=1)
  scores, top = lax.top_k(scores, num_return)
  return jnp.take_along_axis(seqs, top[:, :, None], axis=1)[:, :, 1:], scores


# ----------------------------------------------------------------------- model entry point


def encode_to_cache(
  params: Any, input_ids: Array, config: T5Config | Bert2BertConfig, rows: int, max_length: int
) -> tuple[Any, Array]:
  """Encodes ``input_ids`` [B, L] and builds the decoding cache for ``rows`` outputs each
  ([B*rows] rows, b-major; cross-attention keys/values filled): the part of ``generate``
  before the first step, also timed on its own by ``benchmarks/generate.py``.

  The cache is built for the B inputs and then repeated, so the cross-attention keys/values
  (identical for the rows of one input) are projected once per input, not once per beam or
  sample: for 4 beams of mT5-small at 128 source tokens that is 39 of 244 GFLOP a call."""
  model = seq2seq_model(config)
  mask = (input_ids != config.pad_token_id).astype(jnp.int32)
  encoded = model.apply({"params": params}, input_ids, mask, method=type(model).encode)
  source = input_ids if getattr(config, "copy_attention", False) else None
  cache = t5.init_cache(model, params, encoded, mask, max_length, source)
  return repeat_batch((cache, mask), rows)


@functools.partial(
  jax.jit,
  static_argnames=(
    "config",
    "strategy",
    "max_decode_length",
    "num_return",
    "top_k",
    "temperature",
    "beam_size",
    "alpha",
    "vocab_limit",
    "suppress_ids",
  ),
)
def generate(
  params: Any,
  input_ids: Array,
  rng: Array,
  *,
  config: T5Config | Bert2BertConfig,
  strategy: str = "greedy",
  max_decode_length: int = 64,
  num_return: int = 1,
  top_k: int = 10,
  temperature: float = 1.0,
  beam_size: int = 4,
  alpha: float = 0.6,
  start_ids: Array | None = None,
  vocab_limit: int | None = None,
  suppress_ids: tuple[int, ...] = (),
) -> DecodeOutput:
  """Encodes ``input_ids`` [B, L] (``config.pad_token_id`` = padding) and decodes
  ``num_return`` outputs each (in the model's output ids: a BERT2BERT generator with a
  restricted vocabulary maps them back with ``bert2bert.to_token_ids``).

  ``start_ids`` [B]: per-input decoder start ids (language tags, ``language_tags.py``) instead
  of ``config.decoder_start_token_id``; ids at or past ``vocab_limit`` and ``suppress_ids``
  are never produced.

  ``greedy`` needs ``num_return=1``; ``topk`` draws ``num_return`` independent samples per
  input (``top_k=0``: full distribution); ``beam`` returns the ``num_return`` best of
  ``beam_size`` beams. Shard ``input_ids`` on the batch axis to decode data-parallel.
  """
  if strategy not in STRATEGIES:
    raise ValueError(f"strategy={strategy!r}; expected one of {STRATEGIES}")
  if strategy == "greedy" and num_return != 1:
    raise ValueError(f"greedy decoding gives one output per input; got num_return={num_return}")
  model = seq2seq_model(config)
  batch = input_ids.shape[0]
  rows = beam_size if strategy == "beam" else num_return
  cache, mask = encode_to_cache(params, input_ids, config, rows, max_decode_length)

  def step_fn(cache, token_ids):
    return t5.decode_step(model, params, cache, mask, token_ids)

  start = config.decoder_start_token_id if start_ids is None else start_ids
  ids = dict(
    eos_id=config.eos_token_id,
    pad_id=config.pad_token_id,
    vocab_limit=vocab_limit,
    suppress_ids=suppress_ids,
  )
  if strategy == "beam":
    tokens, scores = beam_search(
      step_fn,
      cache,
      batch,
      beam_size,
      max_decode_length,
      alpha=alpha,
      num_return=num_return,
      start_id=start,
      **ids,
    )
    return DecodeOutput(tokens, scores)
  tokens, logp = temperature_sample(
    step_fn,
    cache,
    batch * rows,
    max_decode_length,
    None if strategy == "greedy" else rng,
    top_k=top_k if strategy == "topk" else 0,
    temperature=temperature,
    start_id=start if start_ids is None else jnp.repeat(jnp.asarray(start_ids), rows),
    **ids,
  )
  return DecodeOutput(tokens.reshape(batch, rows, -1), logp.reshape(batch, rows))


def trim_at_eos(tokens, eos_id: int = 1) -> list[int]:
  """Token ids up to (not including) the first EOS, as a Python list."""
  out = []
  for t in list(tokens):
    if int(t) == eos_id:
      break
    out.append(int(t))
  return out
