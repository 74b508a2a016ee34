"""T5.1.1 / mT5 encoder-decoder in Flax linen.

Parameter names and logical axis names follow t5x (``token_embedder/embedding``,
``encoder/layers_0/attention/query/kernel`` with axes ``('embed', 'joined_kv')``, ...), so T5X
checkpoints map one to one and the trainer can shard any parameter by rules alone.

Numerics follow the published architecture (and the Hugging Face reference): RMS layer norm
without mean subtraction computed in float32, no biases, no 1/sqrt(d) on attention logits
(folded into the query initialisation), relative position buckets computed once per stack
and shared by its layers, gated-GELU (tanh) or ReLU feed-forward, untied LM head for mT5.

Decoding with a key/value cache: call ``decode(..., decode=True)`` with ``mutable=['cache']``.
The first call (see ``init_cache``) creates the cache and fills the cross-attention keys and
values from the encoder output; each later call consumes one target token per sequence.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from xtr_jax.models.config import T5Config

Array = jax.Array
NEG_INF = -1e10  # additive mask bias; large but finite so fully-masked rows stay finite

# Logical axis names used on parameters (t5x vocabulary).
EMBED, VOCAB, MLP, HEADS, KV, JOINED_KV, RELPOS = (
  "embed",
  "vocab",
  "mlp",
  "heads",
  "kv",
  "joined_kv",
  "relpos_buckets",
)


def _param_init(init: Callable, axes: tuple[str, ...]) -> Callable:
  return nn.with_logical_partitioning(init, axes)


def _query_init(d_kv: int) -> Callable:
  """Fan-in normal init divided by sqrt(d_kv): T5's substitute for scaled logits."""
  base = nn.initializers.variance_scaling(1.0, "fan_in", "normal")

  def init(key, shape, dtype=jnp.float32):
    return base(key, shape, dtype) / jnp.sqrt(jnp.asarray(d_kv, dtype))

  return init


class Dense(nn.Module):
  """Bias-free dense layer with logical axis names on its kernel."""

  features: int
  kernel_axes: tuple[str, str]
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32
  kernel_init: Callable = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel = self.param(
      "kernel",
      _param_init(self.kernel_init, self.kernel_axes),
      (x.shape[-1], self.features),
      self.param_dtype,
    )
    return jnp.dot(x.astype(self.dtype), jnp.asarray(kernel, self.dtype))


class RMSNorm(nn.Module):
  """T5 layer norm: scale * x / sqrt(mean(x^2) + eps), no mean subtraction, no bias."""

  epsilon: float = 1e-6
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    scale = self.param(
      "scale", _param_init(nn.initializers.ones, (EMBED,)), (x.shape[-1],), self.param_dtype
    )
    x32 = x.astype(jnp.float32)
    var = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
    y = x32 * jax.lax.rsqrt(var + self.epsilon)
    return (y * jnp.asarray(scale, jnp.float32)).astype(self.dtype)


def relative_position_bucket(
  relative_position: np.ndarray, bidirectional: bool, num_buckets: int, max_distance: int
) -> np.ndarray:
  """T5's log-spaced relative position buckets (relative_position = key_pos - query_pos).

  Computed in float32 exactly as the reference does so bucket edges agree.
  """
  relative_position = np.asarray(relative_position, np.int64)
  buckets = np.zeros_like(relative_position)
  if bidirectional:
    num_buckets //= 2
    buckets += (relative_position > 0).astype(np.int64) * num_buckets
    n = np.abs(relative_position)
  else:
    n = -np.minimum(relative_position, 0)
  max_exact = num_buckets // 2
  is_small = n < max_exact
  with np.errstate(divide="ignore"):
    scaled = (
      np.log(n.astype(np.float32) / np.float32(max_exact))
      / np.float32(math.log(max_distance / max_exact))
      * np.float32(num_buckets - max_exact)
    )
  large = max_exact + np.where(is_small, 0, scaled).astype(np.int64)
  large = np.minimum(large, num_buckets - 1)
  return buckets + np.where(is_small, n, large)


class RelativePositionBias(nn.Module):
  """Learned per-head bias over relative position buckets, shared by a stack's layers."""

  num_heads: int
  num_buckets: int
  max_distance: int
  bidirectional: bool
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, q_len: int, k_len: int) -> Array:
    """Returns the bias [1, heads, q_len, k_len] for query positions 0..q_len-1."""
    rel_embedding = self.param(
      "rel_embedding",
      _param_init(nn.initializers.variance_scaling(1.0, "fan_avg", "uniform"), (HEADS, RELPOS)),
      (self.num_heads, self.num_buckets),
      self.param_dtype,
    )
    context = np.arange(q_len)[:, None]
    memory = np.arange(k_len)[None, :]
    buckets = relative_position_bucket(
      memory - context, self.bidirectional, self.num_buckets, self.max_distance
    )
    bias = jnp.take(jnp.asarray(rel_embedding, self.dtype), jnp.asarray(buckets), axis=1)
    return bias[None]


class MultiHeadAttention(nn.Module):
  """Multi-head dot-product attention with t5x parameter names (query/key/value/out)."""

  num_heads: int
  d_kv: int
  dropout_rate: float = 0.0
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(
    self,
    inputs_q: Array,
    inputs_kv: Array | None,
    bias: Array | None,
    *,
    deterministic: bool = True,
    decode: bool = False,
    decode_position: Array | None = None,
    cross: bool = False,
  ) -> Array:
    inner = self.num_heads * self.d_kv
    dense = functools.partial(Dense, dtype=self.dtype, param_dtype=self.param_dtype)
    kv_init = nn.initializers.variance_scaling(1.0, "fan_in", "normal")
    q = dense(inner, (EMBED, JOINED_KV), kernel_init=_query_init(self.d_kv), name="query")(inputs_q)
    batch, q_len = inputs_q.shape[:2]
    q = q.reshape(batch, q_len, self.num_heads, self.d_kv)

    def project_kv(x):
      k = dense(inner, (EMBED, JOINED_KV), kernel_init=kv_init, name="key")(x)
      v = dense(inner, (EMBED, JOINED_KV), kernel_init=kv_init, name="value")(x)
      shape = (x.shape[0], x.shape[1], self.num_heads, self.d_kv)
      return k.reshape(shape), v.reshape(shape)

    if decode and cross:
      # Cross-attention keys/values are computed once, when the cache is created.
      filled = self.has_variable("cache", "cached_key")
      if filled:
        k = self.get_variable("cache", "cached_key")
        v = self.get_variable("cache", "cached_value")
      else:
        k, v = project_kv(inputs_kv)
        self.put_variable("cache", "cached_key", k)
        self.put_variable("cache", "cached_value", v)
    elif decode:
      k, v = project_kv(inputs_q)
      filled = self.has_variable("cache", "cached_key")
      cached_k = self.variable("cache", "cached_key", jnp.zeros, k.shape, k.dtype)
      cached_v = self.variable("cache", "cached_value", jnp.zeros, v.shape, v.dtype)
      if filled:
        start = (0, decode_position, 0, 0)
        cached_k.value = jax.lax.dynamic_update_slice(cached_k.value, k, start)
        cached_v.value = jax.lax.dynamic_update_slice(cached_v.value, v, start)
        k, v = cached_k.value, cached_v.value
    else:
      k, v = project_kv(inputs_kv)

    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
    if bias is not None:
      logits = logits + bias.astype(jnp.float32)
    weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
    if not deterministic and self.dropout_rate > 0:
      weights = nn.Dropout(self.dropout_rate)(weights, deterministic=False)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(batch, q_len, inner)
    return dense(
      inputs_q.shape[-1],
      (JOINED_KV, EMBED),
      kernel_init=nn.initializers.variance_scaling(1.0, "fan_in", "normal"),
      name="out",
    )(out)


class FeedForward(nn.Module):
  """Gated-GELU (T5.1.1, mT5: wi_0, wi_1, wo) or ReLU (T5 1.0: wi, wo) feed-forward."""

  d_ff: int
  kind: str = "gated-gelu"
  dropout_rate: float = 0.0
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, *, deterministic: bool = True) -> Array:
    dense = functools.partial(Dense, dtype=self.dtype, param_dtype=self.param_dtype)
    if self.kind == "gated-gelu":
      gate = jax.nn.gelu(dense(self.d_ff, (EMBED, MLP), name="wi_0")(x), approximate=True)
      h = gate * dense(self.d_ff, (EMBED, MLP), name="wi_1")(x)
    else:
      h = jax.nn.relu(dense(self.d_ff, (EMBED, MLP), name="wi")(x))
    h = nn.Dropout(self.dropout_rate)(h, deterministic=deterministic)
    return dense(x.shape[-1], (MLP, EMBED), name="wo")(h)


class EncoderLayer(nn.Module):
  config: T5Config

  @nn.compact
  def __call__(self, x: Array, bias: Array, *, deterministic: bool = True) -> Array:
    c = self.config
    norm = functools.partial(
      RMSNorm, epsilon=c.layer_norm_epsilon, dtype=c.compute_dtype, param_dtype=c.params_dtype
    )
    drop = nn.Dropout(c.dropout_rate)
    h = norm(name="pre_attention_layer_norm")(x)
    h = MultiHeadAttention(
      c.num_heads, c.d_kv, c.dropout_rate, c.compute_dtype, c.params_dtype, name="attention"
    )(h, h, bias, deterministic=deterministic)
    x = x + drop(h, deterministic=deterministic)
    h = norm(name="pre_mlp_layer_norm")(x)
    h = FeedForward(
      c.d_ff, c.feed_forward_proj, c.dropout_rate, c.compute_dtype, c.params_dtype, name="mlp"
    )(h, deterministic=deterministic)
    return x + drop(h, deterministic=deterministic)


class DecoderLayer(nn.Module):
  config: T5Config

  @nn.compact
  def __call__(
    self,
    y: Array,
    encoded: Array | None,
    self_bias: Array,
    cross_bias: Array | None,
    *,
    deterministic: bool = True,
    decode: bool = False,
    decode_position: Array | None = None,
  ) -> Array:
    c = self.config
    norm = functools.partial(
      RMSNorm, epsilon=c.layer_norm_epsilon, dtype=c.compute_dtype, param_dtype=c.params_dtype
    )
    attn = functools.partial(
      MultiHeadAttention, c.num_heads, c.d_kv, c.dropout_rate, c.compute_dtype, c.params_dtype
    )
    drop = nn.Dropout(c.dropout_rate)
    h = norm(name="pre_self_attention_layer_norm")(y)
    h = attn(name="self_attention")(
      h,
      h,
      self_bias,
      deterministic=deterministic,
      decode=decode,
      decode_position=decode_position,
    )
    y = y + drop(h, deterministic=deterministic)
    h = norm(name="pre_cross_attention_layer_norm")(y)
    h = attn(name="encoder_decoder_attention")(
      h, encoded, cross_bias, deterministic=deterministic, decode=decode, cross=True
    )
    y = y + drop(h, deterministic=deterministic)
    h = norm(name="pre_mlp_layer_norm")(y)
    h = FeedForward(
      c.d_ff, c.feed_forward_proj, c.dropout_rate, c.compute_dtype, c.params_dtype, name="mlp"
    )(h, deterministic=deterministic)
    return y + drop(h, deterministic=deterministic)


def padding_bias(q_mask: Array | None, k_mask: Array) -> Array:
  """Additive bias [B, 1, 1 or Q, K]: 0 where the key is real, NEG_INF on padding."""
  del q_mask  # padded queries still attend normally (as in the reference); outputs are ignored
  return jnp.where(k_mask[:, None, None, :] > 0, 0.0, NEG_INF).astype(jnp.float32)


class Encoder(nn.Module):
  config: T5Config
  shared_embedding: nn.Module

  @nn.compact
  def __call__(
    self, input_ids: Array, attention_mask: Array, *, deterministic: bool = True
  ) -> Array:
    c = self.config
    x = self.shared_embedding(input_ids.astype(jnp.int32)).astype(c.compute_dtype)
    x = nn.Dropout(c.dropout_rate)(x, deterministic=deterministic)
    length = input_ids.shape[1]
    bias = RelativePositionBias(
      c.num_heads,
      c.relative_attention_num_buckets,
      c.relative_attention_max_distance,
      bidirectional=True,
      dtype=c.compute_dtype,
      param_dtype=c.params_dtype,
      name="relpos_bias",
    )(length, length)
    bias = bias + padding_bias(None, attention_mask)
    for i in range(c.num_encoder_layers):
      x = EncoderLayer(c, name=f"layers_{i}")(x, bias, deterministic=deterministic)
    x = RMSNorm(c.layer_norm_epsilon, c.compute_dtype, c.params_dtype, name="encoder_norm")(x)
    return nn.Dropout(c.dropout_rate)(x, deterministic=deterministic)


class Decoder(nn.Module):
  config: T5Config
  shared_embedding: nn.Module

  @nn.compact
  def __call__(
    self,
    encoded: Array | None,
    encoder_mask: Array | None,
    decoder_input_ids: Array,
    decoder_mask: Array | None = None,
    *,
    deterministic: bool = True,
    decode: bool = False,
  ) -> Array:
    c = self.config
    y = self.shared_embedding(decoder_input_ids.astype(jnp.int32)).astype(c.compute_dtype)
    y = nn.Dropout(c.dropout_rate)(y, deterministic=deterministic)
    relpos = RelativePositionBias(
      c.num_heads,
      c.relative_attention_num_buckets,
      c.relative_attention_max_distance,
      bidirectional=False,
      dtype=c.compute_dtype,
      param_dtype=c.params_dtype,
      name="relpos_bias",
    )
    length = decoder_input_ids.shape[1]
    decode_position = None
    stepping = decode and self.has_variable("cache", "cache_index")
    if decode:
      index = self.variable("cache", "cache_index", lambda: jnp.zeros((), jnp.int32))
    if stepping:
      # One token per sequence at position `cache_index`; keys are the whole cache.
      decode_position = index.value
      max_len = self.get_variable("cache", "max_length_marker").shape[0]
      full = relpos(max_len, max_len)  # [1, H, max_len, max_len]
      row = jax.lax.dynamic_slice_in_dim(full, decode_position, 1, axis=2)
      visible = jnp.arange(max_len) <= decode_position
      self_bias = row + jnp.where(visible, 0.0, NEG_INF)[None, None, None, :]
      index.value = decode_position + 1
    else:
      self_bias = relpos(length, length)
      causal = np.tril(np.ones((length, length), bool))
      self_bias = self_bias + jnp.where(causal, 0.0, NEG_INF)[None, None]
      if decoder_mask is not None:
        self_bias = self_bias + padding_bias(None, decoder_mask)
      if decode:  # cache creation: remember the maximum decode length
        self.variable("cache", "max_length_marker", jnp.zeros, (length,), jnp.int8)
    cross_bias = None if encoder_mask is None else padding_bias(None, encoder_mask)
    for i in range(c.num_decoder_layers):
      y = DecoderLayer(c, name=f"layers_{i}")(
        y,
        encoded,
        self_bias,
        cross_bias,
        deterministic=deterministic,
        decode=decode,
        decode_position=decode_position,
      )
    y = RMSNorm(c.layer_norm_epsilon, c.compute_dtype, c.params_dtype, name="decoder_norm")(y)
    y = nn.Dropout(c.dropout_rate)(y, deterministic=deterministic)
    if c.tie_word_embeddings:
      logits = self.shared_embedding.attend(y) / jnp.sqrt(jnp.asarray(c.d_model, y.dtype))
    else:
      logits = Dense(
        c.vocab_size,
        (EMBED, VOCAB),
        dtype=c.compute_dtype,
        param_dtype=c.params_dtype,
        kernel_init=nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal"),
        name="logits_dense",
      )(y)
    return logits


def _token_embedder(c: T5Config) -> nn.Embed:
  return nn.Embed(
    num_embeddings=c.vocab_size,
    features=c.d_model,
    dtype=c.compute_dtype,
    param_dtype=c.params_dtype,
    embedding_init=_param_init(nn.initializers.normal(stddev=1.0), (VOCAB, EMBED)),
    name="token_embedder",
  )


class T5EncoderModel(nn.Module):
  """Encoder only (``token_embedder`` + ``encoder``): what retrieval models need."""

  config: T5Config

  def setup(self):
    self.token_embedder = _token_embedder(self.config)
    self.encoder = Encoder(self.config, self.token_embedder)

  def __call__(self, input_ids: Array, attention_mask: Array | None = None, deterministic=True):
    return self.encode(input_ids, attention_mask, deterministic=deterministic)

  def encode(self, input_ids: Array, attention_mask: Array | None = None, deterministic=True):
    if attention_mask is None:
      attention_mask = (input_ids != self.config.pad_token_id).astype(jnp.int32)
    return self.encoder(input_ids, attention_mask, deterministic=deterministic)


class Transformer(nn.Module):
  """The full mT5 encoder-decoder (``MT5ForConditionalGeneration``'s role)."""

  config: T5Config

  def setup(self):
    self.token_embedder = _token_embedder(self.config)
    self.encoder = Encoder(self.config, self.token_embedder)
    self.decoder = Decoder(self.config, self.token_embedder)

  def encode(self, input_ids: Array, attention_mask: Array | None = None, deterministic=True):
    if attention_mask is None:
      attention_mask = (input_ids != self.config.pad_token_id).astype(jnp.int32)
    return self.encoder(input_ids, attention_mask, deterministic=deterministic)

  def decode(
    self,
    encoded: Array | None,
    encoder_mask: Array | None,
    decoder_input_ids: Array,
    decoder_mask: Array | None = None,
    deterministic: bool = True,
    decode: bool = False,
  ) -> Array:
    return self.decoder(
      encoded,
      encoder_mask,
      decoder_input_ids,
      decoder_mask,
      deterministic=deterministic,
      decode=decode,
    )

  def __call__(
    self,
    input_ids: Array,
    decoder_input_ids: Array,
    attention_mask: Array | None = None,
    decoder_mask: Array | None = None,
    deterministic: bool = True,
  ) -> Array:
    """Teacher-forced logits [B, T, vocab]."""
    if attention_mask is None:
      attention_mask = (input_ids != self.config.pad_token_id).astype(jnp.int32)
    encoded = self.encode(input_ids, attention_mask, deterministic=deterministic)
    return self.decode(
      encoded, attention_mask, decoder_input_ids, decoder_mask, deterministic=deterministic
    )


def shift_right(labels: Array, start_token_id: int = 0) -> Array:
  """Decoder inputs from targets: prepend the start token, drop the last position."""
  start = jnp.full((labels.shape[0], 1), start_token_id, labels.dtype)
  return jnp.concatenate([start, labels[:, :-1]], axis=1)


def init_params(config: T5Config, rng: Array, model_cls=Transformer, seq_len: int = 8):
  """Boxed (``nn.LogicallyPartitioned``) parameters of ``model_cls`` from a seed."""
  ids = jnp.ones((1, seq_len), jnp.int32)
  model = model_cls(config)
  if model_cls is Transformer:
    return model.init(rng, ids, ids)["params"]
  return model.init(rng, ids)["params"]


def init_cache(
  model: Transformer,
  params,
  encoded: Array,
  encoder_mask: Array,
  max_decode_length: int,
  source_ids: Array | None = None,
):
  """Creates the decoding cache for a batch; cross-attention keys/values are filled here.

  ``source_ids``: the encoder's input ids, for a decoder that copies from them (bert2bert's
  ``copy_attention``); T5's decoder takes none."""
  dummy = jnp.zeros((encoded.shape[0], max_decode_length), jnp.int32)
  extra = {} if source_ids is None else {"source_ids": source_ids}
  _, variables = model.apply(
    {"params": params},
    encoded,
    encoder_mask,
    dummy,
    decode=True,
    method=type(model).decode,  # any encoder-decoder with this method (bert2bert)
    mutable=["cache"],
    **extra,
  )
  return variables["cache"]


def decode_step(model: Transformer, params, cache, encoder_mask: Array, token_ids: Array):
  """One cached decoder step: token_ids [B, 1] -> (logits [B, vocab], new cache)."""
  logits, variables = model.apply(
    {"params": params, "cache": cache},
    None,
    encoder_mask,
    token_ids,
    decode=True,
    method=type(model).decode,  # any encoder-decoder with this method (bert2bert)
    mutable=["cache"],
  )
  return logits[:, -1], variables["cache"]
