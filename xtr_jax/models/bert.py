"""BERT-family encoders in Flax linen: BERT, mBERT, XLM-R and multilingual-E5.

The xQG paper's dense backbones (mBERT, XLM-R) and multilingual-E5 (a BERT with XLM-R's
vocabulary, retrieval-trained) share one architecture: learned absolute position and
token-type embeddings, post-LayerNorm blocks, biased projections, exact (erf) GELU.
The two published variants differ only in position ids: BERT counts ``0..L-1``; XLM-R
(``position_scheme='roberta'``) counts real tokens from ``pad_token_id + 1`` and gives
padding the pad position, as ``XLMRobertaModel`` does.

Parameter names mirror ``transformers``' ``BertModel`` (``embeddings/word_embeddings``,
``layers_3/query``, ``layers_3/output_layer_norm``) so the checkpoint mapping is
one line per tensor. Every kernel carries logical axis names from the T5 code's vocabulary
(``embed``, ``joined_kv``, ``mlp``, ``vocab``), so the trainer's partitioning rules shard
both backbones without a rule of their own.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

import gin
from xtr_jax.models.config import ConfigMethods
from xtr_jax.models.t5 import EMBED, JOINED_KV, MLP, NEG_INF, VOCAB

Array = jax.Array
POSITION_SCHEMES = ("bert", "roberta")
ACTIVATIONS = ("gelu", "gelu_new", "relu")
_MAX_SIZE = 1 << 24


@gin.configurable
@dataclasses.dataclass(frozen=True)
class BertConfig(ConfigMethods):
  """BERT-family hyper-parameters, named as in ``transformers.BertConfig``.

  Defaults are multilingual-E5-small. ``pad_token_id`` is the id the *tokenizer* pads with
  (XLM-R's ``<pad>`` is 1): the attention mask is derived from it when none is given.
  """

  vocab_size: int = 250037
  hidden_size: int = 384
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 1536
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  hidden_dropout_prob: float = 0.1
  attention_probs_dropout_prob: float = 0.1
  hidden_act: str = "gelu"
  position_scheme: str = "bert"
  pad_token_id: int = 1
  dtype: str = "float32"
  param_dtype: str = "float32"

  def __post_init__(self):
    if self.position_scheme not in POSITION_SCHEMES:
      raise ValueError(
        f"BertConfig.position_scheme={self.position_scheme!r}; expected one of {POSITION_SCHEMES}"
      )
    if self.hidden_act not in ACTIVATIONS:
      raise ValueError(f"BertConfig.hidden_act={self.hidden_act!r}; expected one of {ACTIVATIONS}")
    if self.hidden_size % self.num_attention_heads:
      raise ValueError(
        f"BertConfig.hidden_size={self.hidden_size} is not a multiple of "
        f"num_attention_heads={self.num_attention_heads}"
      )
    for name in ("dtype", "param_dtype"):
      if getattr(self, name) not in ("float32", "bfloat16", "float16"):
        raise ValueError(
          f"BertConfig.{name}={getattr(self, name)!r}; expected float32, bfloat16 or float16"
        )

  # Names the rest of the project reads from any backbone config.
  @property
  def d_model(self) -> int:
    return self.hidden_size

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_attention_heads

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> BertConfig:
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(known))
    if unknown:
      raise ValueError(f"unknown BertConfig fields {unknown}; known: {sorted(known)}")
    types = {"int": int, "float": (int, float), "str": str}
    for name, v in d.items():
      want = types[str(known[name].type)]
      if isinstance(v, bool) or not isinstance(v, want):
        raise ValueError(f"BertConfig field {name!r} must be {known[name].type}, got {v!r}")
      low = 0 if name in ("pad_token_id",) else 1
      if want is int and not low <= v <= _MAX_SIZE:
        raise ValueError(f"BertConfig field {name!r}={v} is outside [{low}, {_MAX_SIZE}]")
    return cls(**d)


# Published sizes (the config.json files of the Hugging Face releases).
_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
_LARGE = dict(
  hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096
)
_XLMR = dict(vocab_size=250002, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5)
BERT_SIZES: dict[str, dict[str, Any]] = {
  "me5-small": dict(
    vocab_size=250037, hidden_size=384, num_hidden_layers=12, num_attention_heads=12,
    intermediate_size=1536, pad_token_id=1,
  ),
  "me5-base": dict(**_BASE, **_XLMR, position_scheme="roberta", pad_token_id=1),
  "me5-large": dict(
    **_LARGE, **_XLMR, position_scheme="roberta", pad_token_id=1
  ),
  "mbert-base": dict(vocab_size=119547, **_BASE, pad_token_id=0),
  "xlmr-base": dict(**_BASE, **_XLMR, position_scheme="roberta", pad_token_id=1),
  "xlmr-large": dict(**_LARGE, **_XLMR, position_scheme="roberta", pad_token_id=1),
  "tiny": dict(
    vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
    intermediate_size=128, max_position_embeddings=128, hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
  ),
}  # fmt: skip


@gin.configurable
def bert_config(size: str = "me5-small", **overrides) -> BertConfig:
  """The published configuration of ``size`` (see ``BERT_SIZES``), with ``overrides``."""
  if size not in BERT_SIZES:
    raise ValueError(f"unknown BERT size {size!r}; expected one of {sorted(BERT_SIZES)}")
  return BertConfig(**{**BERT_SIZES[size], **overrides})


def position_ids(input_ids: Array, config: BertConfig) -> Array:
  """BERT: ``0..L-1``. XLM-R: ``pad+1, pad+2, ...`` over real tokens, ``pad`` on padding."""
  if config.position_scheme == "bert":
    return jnp.broadcast_to(jnp.arange(input_ids.shape[1])[None], input_ids.shape)
  real = (input_ids != config.pad_token_id).astype(jnp.int32)
  return jnp.cumsum(real, axis=1) * real + config.pad_token_id


def max_input_length(config: BertConfig) -> int:
  """Longest input the position table covers: XLM-R's ids start at ``pad_token_id + 1``."""
  if config.position_scheme == "bert":
    return config.max_position_embeddings
  return config.max_position_embeddings - config.pad_token_id - 1


def _init(axes: tuple[str | None, ...], stddev: float = 0.02):
  return nn.with_logical_partitioning(nn.initializers.normal(stddev), axes)


class Dense(nn.Module):
  """Dense layer with bias; kernel ``[in, out]`` (transposed from torch) with logical axes."""

  features: int
  kernel_axes: tuple[str, str]
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel = self.param(
      "kernel", _init(self.kernel_axes), (x.shape[-1], self.features), self.param_dtype
    )
    bias = self.param(
      "bias",
      nn.with_logical_partitioning(nn.initializers.zeros, (self.kernel_axes[1],)),
      (self.features,),
      self.param_dtype,
    )
    y = jnp.dot(x.astype(self.dtype), jnp.asarray(kernel, self.dtype))
    return y + jnp.asarray(bias, self.dtype)


class LayerNorm(nn.Module):
  """LayerNorm with mean subtraction, computed in float32 (``scale``, ``bias`` on 'embed')."""

  epsilon: float
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    d = x.shape[-1]
    scale = self.param(
      "scale", nn.with_logical_partitioning(nn.initializers.ones, (EMBED,)), (d,), self.param_dtype
    )
    bias = self.param(
      "bias", nn.with_logical_partitioning(nn.initializers.zeros, (EMBED,)), (d,), self.param_dtype
    )
    x32 = x.astype(jnp.float32)
    mean = x32.mean(-1, keepdims=True)
    var = jnp.square(x32 - mean).mean(-1, keepdims=True)
    y = (x32 - mean) * jax.lax.rsqrt(var + self.epsilon)
    return (y * scale.astype(jnp.float32) + bias.astype(jnp.float32)).astype(self.dtype)


def _erf_gelu(x: Array) -> Array:
  """Exact GELU as torch computes it, ``x/2 * (1 + erf(x/sqrt(2)))``. ``jax.nn.gelu``'s
  erfc form (two polynomial branches and a select under XLA:CPU) made a layer ~5% slower."""
  return x * 0.5 * (1.0 + jax.lax.erf(x * (1 / math.sqrt(2))))


def _activation(name: str):
  if name == "gelu":
    return _erf_gelu
  if name == "gelu_new":
    return functools.partial(jax.nn.gelu, approximate=True)
  return jax.nn.relu


class BertLayer(nn.Module):
  """Post-LN block: x = LN(x + Attn(x)); x = LN(x + FFN(x))."""

  config: BertConfig

  @nn.compact
  def __call__(self, x: Array, mask_bias: Array, *, deterministic: bool = True) -> Array:
    c = self.config
    dense = functools.partial(Dense, dtype=c.compute_dtype, param_dtype=c.params_dtype)
    norm = functools.partial(
      LayerNorm, epsilon=c.layer_norm_eps, dtype=c.compute_dtype, param_dtype=c.params_dtype
    )
    batch, length, _ = x.shape
    shape = (batch, length, c.num_attention_heads, c.head_dim)
    q = dense(c.hidden_size, (EMBED, JOINED_KV), name="query")(x).reshape(shape)
    k = dense(c.hidden_size, (EMBED, JOINED_KV), name="key")(x).reshape(shape)
    v = dense(c.hidden_size, (EMBED, JOINED_KV), name="value")(x).reshape(shape)
    # The [B, H, L, L] tensors dominate attention's cost on CPU, so work on them is moved to
    # the L-times smaller ones: 1/sqrt(d) scales q instead of the logits, and the softmax
    # is normalised after the value product (dividing the [B, L, H, D] output by the row
    # sums equals dividing the weights; dropout commutes with that per-row scale). Same
    # result as softmax(q k^T / sqrt(d)) v. With _erf_gelu, a layer took 10-13% less CPU
    # time than with jax.nn.softmax and jax.nn.gelu (XLA:CPU, mE5-small, 4x512 to 64x32).
    q = q * jnp.asarray(1 / math.sqrt(c.head_dim), q.dtype)
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) + mask_bias
    weights = jnp.exp(logits - jax.lax.stop_gradient(logits.max(-1, keepdims=True)))
    row_sums = weights.sum(-1)  # [B, H, L]
    weights = weights.astype(c.compute_dtype)
    weights = nn.Dropout(c.attention_probs_dropout_prob)(weights, deterministic=deterministic)
    attn = jnp.einsum("bhqk,bkhd->bqhd", weights, v, preferred_element_type=jnp.float32)
    attn = attn / jnp.transpose(row_sums, (0, 2, 1))[..., None]
    attn = attn.astype(c.compute_dtype).reshape(batch, length, c.hidden_size)
    attn = dense(c.hidden_size, (JOINED_KV, EMBED), name="attention_output")(attn)
    drop = nn.Dropout(c.hidden_dropout_prob)
    x = norm(name="attention_layer_norm")(x + drop(attn, deterministic=deterministic))
    h = _activation(c.hidden_act)(dense(c.intermediate_size, (EMBED, MLP), name="intermediate")(x))
    h = dense(c.hidden_size, (MLP, EMBED), name="output")(h)
    return norm(name="output_layer_norm")(x + drop(h, deterministic=deterministic))


class BertEmbeddings(nn.Module):
  """word + position + token type (all type 0), then LayerNorm and dropout."""

  config: BertConfig

  @nn.compact
  def __call__(
    self, input_ids: Array, token_type_ids: Array | None, *, deterministic: bool = True
  ) -> Array:
    c = self.config
    embed = functools.partial(nn.Embed, features=c.hidden_size, param_dtype=c.params_dtype)
    word = embed(c.vocab_size, embedding_init=_init((VOCAB, EMBED)), name="word_embeddings")
    pos = embed(
      c.max_position_embeddings, embedding_init=_init((None, EMBED)), name="position_embeddings"
    )
    types = embed(
      c.type_vocab_size, embedding_init=_init((None, EMBED)), name="token_type_embeddings"
    )
    if token_type_ids is None:
      token_type_ids = jnp.zeros_like(input_ids)
    x = word(input_ids) + pos(position_ids(input_ids, c)) + types(token_type_ids)
    x = LayerNorm(c.layer_norm_eps, c.compute_dtype, c.params_dtype, name="layer_norm")(x)
    return nn.Dropout(c.hidden_dropout_prob)(x, deterministic=deterministic).astype(c.compute_dtype)


class BertEncoder(nn.Module):
  """Token states [B, L, hidden] of a BERT-family model (``BertModel.last_hidden_state``).

  No pooler: retrieval here pools token states itself (mean for E5, none for XTR).
  """

  config: BertConfig

  @nn.compact
  def __call__(
    self,
    input_ids: Array,
    attention_mask: Array | None = None,
    token_type_ids: Array | None = None,
    deterministic: bool = True,
  ) -> Array:
    c = self.config
    if input_ids.shape[1] > max_input_length(c):  # the lookup would give NaN, not an error
      raise ValueError(
        f"input length {input_ids.shape[1]} exceeds the {max_input_length(c)} positions this "
        f"model has (max_position_embeddings={c.max_position_embeddings}, "
        f"position_scheme={c.position_scheme!r}); truncate the inputs"
      )
    if attention_mask is None:
      attention_mask = (input_ids != c.pad_token_id).astype(jnp.int32)
    x = BertEmbeddings(c, name="embeddings")(input_ids, token_type_ids, deterministic=deterministic)
    mask_bias = jnp.where(attention_mask[:, None, None, :] > 0, 0.0, NEG_INF).astype(jnp.float32)
    for i in range(c.num_hidden_layers):
      x = BertLayer(c, name=f"layers_{i}")(x, mask_bias, deterministic=deterministic)
    return x
