"""Decoding: cached == uncached, sampling semantics, beam search exactness, HF parity."""

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from xtr_jax.models import decoding, t5
from xtr_jax.models.config import tiny_config

CONFIG = tiny_config(vocab_size=96, d_model=32, d_kv=8, num_heads=4, d_ff=64)
T = 6


@pytest.fixture(scope="module")
def params():
  return nn.meta.unbox(jax.jit(lambda r: t5.init_params(CONFIG, r))(jax.random.PRNGKey(0)))


@pytest.fixture(scope="module")
def input_ids():
  ids = np.array(jax.random.randint(jax.random.PRNGKey(1), (8, 10), 2, CONFIG.vocab_size))
  ids[1, 6:] = 0  # padded inputs
  ids[5, 3:] = 0
  return jnp.asarray(ids, jnp.int32)


@pytest.fixture(scope="module")
def forward(params):
  """Uncached teacher-forced logits [B, T, V] for decoder inputs [B, T]."""
  model = t5.Transformer(CONFIG)
  return jax.jit(lambda ids, dec: model.apply({"params": params}, ids, dec))


def _decoder_inputs(tokens: np.ndarray) -> np.ndarray:
  return np.concatenate([np.zeros((tokens.shape[0], 1), np.int32), tokens[:, :-1]], axis=1)


def test_cached_greedy_equals_uncached_argmax(params, input_ids, forward):
  out = decoding.generate(
    params, input_ids, jax.random.PRNGKey(0), config=CONFIG, strategy="greedy", max_decode_length=T
  )
  tokens = np.asarray(out.tokens[:, 0])
  # Uncached reference: grow the prefix one token at a time with full forward passes.
  prefix = np.zeros((input_ids.shape[0], T), np.int32)
  logp = np.zeros(input_ids.shape[0])
  for i in range(T):
    logits = np.asarray(forward(input_ids, _decoder_inputs(prefix)))[:, i]
    prefix[:, i] = logits.argmax(-1)
    logp += np.asarray(jax.nn.log_softmax(logits))[np.arange(len(logp)), prefix[:, i]]
  np.testing.assert_array_equal(tokens, prefix)
  np.testing.assert_allclose(np.asarray(out.scores[:, 0]), logp, rtol=1e-4, atol=1e-4)


def _sample(params, input_ids, seed, top_k=3, temperature=2.0):
  return decoding.generate(
    params,
    input_ids,
    jax.random.PRNGKey(seed),
    config=CONFIG,
    strategy="topk",
    max_decode_length=T,
    num_return=2,
    top_k=top_k,
    temperature=temperature,
  )


def test_sampling_reproducible_and_seed_dependent(params, input_ids):
  a, b, c = (_sample(params, input_ids, s) for s in (7, 7, 8))
  np.testing.assert_array_equal(a.tokens, b.tokens)
  assert not np.array_equal(np.asarray(a.tokens), np.asarray(c.tokens))
  # The n samples of one input differ from each other (independent draws).
  assert not np.array_equal(np.asarray(a.tokens[:, 0]), np.asarray(a.tokens[:, 1]))


def test_topk_emits_only_top_k_tokens(params, input_ids, forward):
  k = 3
  out = _sample(params, input_ids, 3, top_k=k)  # temperature 2: not always the argmax
  tokens = np.asarray(out.tokens).reshape(-1, T)
  inputs = np.repeat(np.asarray(input_ids), 2, axis=0)
  logits = np.asarray(forward(inputs, _decoder_inputs(tokens)))
  ranks = (logits > np.take_along_axis(logits, tokens[..., None], -1)).sum(-1)
  ended = np.cumsum(tokens == CONFIG.eos_token_id, axis=1) - (tokens == CONFIG.eos_token_id)
  assert ranks[ended == 0].max() < k
  # With a high temperature not every pick is the argmax (it really samples).
  assert (ranks[ended == 0] > 0).any()
  # Scores are the model's log-probabilities of the sampled tokens.
  logp = np.asarray(jax.nn.log_softmax(logits))
  picked = np.take_along_axis(logp, tokens[..., None], -1)[..., 0]
  np.testing.assert_allclose(
    np.asarray(out.scores).reshape(-1), (picked * (ended == 0)).sum(1), rtol=1e-4, atol=1e-4
  )


def _table_step_fn(table: dict[tuple[int, ...], dict[int, float]], vocab: int):
  """A hand-built "model": next-token probabilities looked up from the generated prefix.

  The cache holds the generated tokens per row (so beam search must gather it correctly) and
  a step counter (shared by all rows, like t5's cache_index). Unknown prefixes end (EOS).
  """
  keys = list(table)
  width = max(1, max(len(k) for k in keys))
  probs = np.full((len(keys) + 1, vocab), 1e-6)
  probs[-1, 1] = 1.0
  for r, key in enumerate(keys):
    for tok, p in table[key].items():
      probs[r, tok] = p
  logits_table = jnp.asarray(np.log(probs / probs.sum(1, keepdims=True)), jnp.float32)
  key_arr = np.full((len(keys), width), -1)
  for r, key in enumerate(keys):
    key_arr[r, : len(key)] = key
  key_arr, key_len = jnp.asarray(key_arr), jnp.asarray([len(k) for k in keys])

  def step_fn(cache, token_ids):
    i = cache["cache_index"]
    gen = cache["generated"]
    gen = jnp.where(i > 0, gen.at[:, jnp.maximum(i - 1, 0)].set(token_ids[:, 0]), gen)
    match = (key_len[None] == i) & jnp.all(key_arr[None] == gen[:, None, :width], axis=-1)
    row = jnp.where(match.any(1), jnp.argmax(match, 1), len(keys))
    return logits_table[row], {"generated": gen, "cache_index": i + 1}

  def init_cache(rows, length=16):
    gen = jnp.full((rows, max(length, width)), -1, jnp.int32)
    return {"generated": gen, "cache_index": jnp.array(0, jnp.int32)}

  return step_fn, init_cache


def test_beam_finds_better_sequence_than_greedy():
  # Greedy takes 2 (p=.6) and then faces a flat distribution; 3 (p=.4) then EOS (p=.9) wins.
  vocab = 8
  table = {
    (): {2: 0.6, 3: 0.4},
    (2,): {t: 1.0 / 6 for t in range(2, 8)},
    (3,): {1: 0.9, 4: 0.1},
  }
  step_fn, init_cache = _table_step_fn(table, vocab)
  greedy, greedy_logp = decoding.temperature_sample(step_fn, init_cache(1), 1, 3)
  assert greedy[0, 0] == 2
  tokens, scores = jax.jit(
    lambda c: decoding.beam_search(step_fn, c, 1, 2, 3, alpha=0.0), static_argnums=()
  )(init_cache(2))
  np.testing.assert_array_equal(tokens[0, 0], [3, 1, 0])
  np.testing.assert_allclose(scores[0, 0], np.log(0.4 * 0.9), rtol=1e-4)
  assert scores[0, 0] > greedy_logp[0]


def test_early_stop_when_all_sequences_end():
  calls = []
  table = {(): {2: 1.0}, (2,): {1: 1.0}}
  step_fn, init_cache = _table_step_fn(table, 4)

  def counting(cache, tok):
    jax.debug.callback(lambda: calls.append(1))
    return step_fn(cache, tok)

  tokens, _ = decoding.temperature_sample(counting, init_cache(3), 3, 10)
  jax.effects_barrier()
  np.testing.assert_array_equal(np.asarray(tokens)[0], [2, 1] + [0] * 8)
  assert len(calls) == 2
  calls.clear()
  tokens, _ = decoding.beam_search(counting, init_cache(6), 3, 2, 10, alpha=0.6)
  jax.effects_barrier()
  np.testing.assert_array_equal(np.asarray(tokens)[1, 0], [2, 1] + [0] * 8)
  assert len(calls) < 10


def test_wide_beam_matches_brute_force_enumeration(alpha=0.8):
  """Random tiny model, vocab 5, length 3: beam width 25 is exhaustive, so it is exact."""
  config = tiny_config(vocab_size=5, d_model=16, d_kv=4, num_heads=2, d_ff=32)
  params = nn.meta.unbox(t5.init_params(config, jax.random.PRNGKey(3)))
  # Sharpen the output distribution so scores are well separated.
  params["decoder"]["logits_dense"]["kernel"] *= 8.0
  ids = jnp.array([[3, 4, 2, 2, 1], [2, 3, 0, 0, 0]], jnp.int32)
  length, beam = 3, 25
  out = decoding.generate(
    params,
    ids,
    jax.random.PRNGKey(0),
    config=config,
    strategy="beam",
    max_decode_length=length,
    num_return=5,
    beam_size=beam,
    alpha=alpha,
  )
  # Enumerate every hypothesis: ends at the first EOS (1) or runs to the full length.
  seqs = list(itertools.product(range(5), repeat=length))
  model = t5.Transformer(config)
  dec = np.array([(0,) + s[:-1] for s in seqs], np.int32)
  forward = jax.jit(lambda i, d: model.apply({"params": params}, i, d))
  for b in range(2):
    logits = forward(jnp.repeat(ids[b : b + 1], len(seqs), 0), dec)
    logp = np.asarray(jax.nn.log_softmax(logits))
    scored = {}
    for s, lp in zip(seqs, logp, strict=True):
      n = s.index(1) + 1 if 1 in s else length
      total = sum(lp[j, s[j]] for j in range(n))
      key = s[:n] + (0,) * (length - n)
      scored[key] = total / ((5 + n) / 6) ** alpha
    best = sorted(scored.items(), key=lambda kv: -kv[1])[:5]
    np.testing.assert_allclose(np.asarray(out.scores[b]), [v for _, v in best], rtol=1e-4)
    assert tuple(np.asarray(out.tokens[b, 0]).tolist()) == best[0][0]


def test_sharded_batch_gives_same_output(params, input_ids):
  mesh = Mesh(np.array(jax.devices()[:8]), ("data",))
  sharded = jax.device_put(input_ids, NamedSharding(mesh, PartitionSpec("data")))
  kw = dict(config=CONFIG, strategy="beam", max_decode_length=T, num_return=2, beam_size=3)
  a = decoding.generate(params, input_ids, jax.random.PRNGKey(0), **kw)
  b = decoding.generate(params, sharded, jax.random.PRNGKey(0), **kw)
  np.testing.assert_array_equal(a.tokens, b.tokens)
  np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5)
  assert a.scores.shape == (8, 2)
  assert np.all(np.diff(np.asarray(a.scores), axis=1) <= 0)  # best first


def test_bad_arguments_are_named(params, input_ids):
  with pytest.raises(ValueError, match="strategy='nucleus'"):
    decoding.generate(params, input_ids, None, config=CONFIG, strategy="nucleus")
  with pytest.raises(ValueError, match="num_return=2"):
    decoding.generate(params, input_ids, None, config=CONFIG, strategy="greedy", num_return=2)


def _to_hf_state_dict(params, config):
  """Local Flax(t5x names) -> HF MT5 state dict mapping, for the parity test only."""
  import torch

  def tt(x, transpose=True):
    x = np.asarray(x)
    return torch.tensor(x.T if transpose else x)

  sd = {"shared.weight": tt(params["token_embedder"]["embedding"], False)}
  sd["encoder.embed_tokens.weight"] = sd["decoder.embed_tokens.weight"] = sd["shared.weight"]
  names = {"query": "q", "key": "k", "value": "v", "out": "o"}
  for stack, n_layers in (("encoder", 2), ("decoder", 2)):
    p = params[stack]
    sd[f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = tt(
      p["relpos_bias"]["rel_embedding"]
    )
    sd[f"{stack}.final_layer_norm.weight"] = tt(p[f"{stack}_norm"]["scale"], False)
    for i in range(n_layers):
      layer, pre = p[f"layers_{i}"], f"{stack}.block.{i}.layer"
      if stack == "encoder":
        blocks = [("attention", "SelfAttention", "pre_attention_layer_norm")]
      else:
        blocks = [
          ("self_attention", "SelfAttention", "pre_self_attention_layer_norm"),
          ("encoder_decoder_attention", "EncDecAttention", "pre_cross_attention_layer_norm"),
        ]
      for j, (ours, theirs, norm) in enumerate(blocks):
        for a, b in names.items():
          sd[f"{pre}.{j}.{theirs}.{b}.weight"] = tt(layer[ours][a]["kernel"])
        sd[f"{pre}.{j}.layer_norm.weight"] = tt(layer[norm]["scale"], False)
      j = len(blocks)
      for w in ("wi_0", "wi_1", "wo"):
        sd[f"{pre}.{j}.DenseReluDense.{w}.weight"] = tt(layer["mlp"][w]["kernel"])
      sd[f"{pre}.{j}.layer_norm.weight"] = tt(layer["pre_mlp_layer_norm"]["scale"], False)
  sd["lm_head.weight"] = tt(params["decoder"]["logits_dense"]["kernel"])
  return sd


def test_greedy_matches_transformers_generate(params, input_ids):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  hf_config = transformers.MT5Config(
    vocab_size=CONFIG.vocab_size,
    d_model=CONFIG.d_model,
    d_kv=CONFIG.d_kv,
    num_heads=CONFIG.num_heads,
    d_ff=CONFIG.d_ff,
    num_layers=CONFIG.num_encoder_layers,
    num_decoder_layers=CONFIG.num_decoder_layers,
    dropout_rate=0.0,
    feed_forward_proj="gated-gelu",
    tie_word_embeddings=False,
    decoder_start_token_id=0,
    eos_token_id=1,
    pad_token_id=0,
  )
  hf_config.tie_word_embeddings = False  # the constructor argument is not kept (transformers 5)
  hf = transformers.MT5ForConditionalGeneration(hf_config).eval()
  hf.load_state_dict(_to_hf_state_dict(params, CONFIG), strict=True)
  ids = torch.tensor(np.asarray(input_ids), dtype=torch.long)
  with torch.no_grad():
    ref = hf.generate(
      input_ids=ids,
      attention_mask=(ids != 0).long(),
      max_new_tokens=T,
      min_new_tokens=0,
      do_sample=False,
      num_beams=1,
    ).numpy()[:, 1:]  # drop the start token
  out = decoding.generate(
    params, input_ids, None, config=CONFIG, strategy="greedy", max_decode_length=T
  )
  ours = np.asarray(out.tokens[:, 0])
  np.testing.assert_array_equal(ours[:, : ref.shape[1]], ref)
