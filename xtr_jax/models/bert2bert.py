"""BERT2BERT: an encoder-decoder whose both halves are BERT-family stacks (xQG generator).

Rothe, Narayan and Severyn (TACL 2020) warm-start sequence-to-sequence models from encoder
checkpoints: the encoder is the pretrained BERT as is, the decoder is the same architecture
with causal self-attention and a *new* cross-attention block in every layer, its embeddings
and layers optionally copied from the pretrained encoder (``checkpoints/bert2bert.py``). That
gives a multilingual question generator from a multilingual encoder alone (mE5, XLM-R).

Decoder layer (post-LN, as BERT's): ``x = LN(x + SelfAttn_causal(x))``; ``x = LN(x +
CrossAttn(x, encoded))``; ``x = LN(x + FFN(x))``. The self-attention and FFN parameter names
equal ``BertLayer``'s, so a backbone layer copies into a decoder layer name for name; the new
block is ``encoder_decoder_attention`` (``query``/``key``/``value``/``out``) with
``cross_attention_layer_norm``.

Output vocabulary. A multilingual tokenizer has 250k pieces, most of which never occur in a
task's questions; ``Bert2BertConfig.output_vocab`` (sorted tokenizer ids) restricts the
decoder to those. The decoder then works entirely in *output ids* (``i`` = the i-th entry):
its own word embeddings (``output_vocab`` rows of the backbone's), its LM head, its start and
end ids. The tokenizer-id <-> output-id mapping is part of the config, so it is saved with
every checkpoint; ``to_output_ids`` / ``to_token_ids`` convert at the edges (training targets,
detokenisation). An empty ``output_vocab`` means the whole encoder vocabulary, unmapped.

Copying (``Bert2BertConfig.copy_attention``; See, Liu and Manning, ACL 2017). A question
names what its passage is about, and a generator trained on a few thousand pairs rarely learns
to reproduce a name or number through its vocabulary softmax alone (results/xqg_warmstart.md:
0-0.5% of the questions copied one). With copying, one more attention head over the encoder's
states gives a distribution over the source positions, summed onto the output ids of the
source pieces, and a learned gate mixes it with the vocabulary distribution:
``p(w) = g p_vocab(w) + (1 - g) sum_{j: src_j = w} a_j``, ``g = sigmoid(w_g [y; context])``.
The decoder then returns *log-probabilities* (already normalised), which the loss and every
decoding strategy treat as logits unchanged (``log_softmax`` of a log-distribution is itself).
Source pieces outside the restricted output vocabulary cannot be copied (their attention
weight is dropped).

Decoding follows ``t5.py``'s cache conventions (``cache_index``, ``max_length_marker``,
``cached_key``/``cached_value``; cross-attention under ``encoder_decoder_attention``, filled
once), so ``decoding.py`` drives both generators with the same search code.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import gin
from xtr_jax.models import t5
from xtr_jax.models.bert import (
  BertConfig,
  BertEncoder,
  Dense,
  LayerNorm,
  _activation,
  _init,
  bert_config,
)
from xtr_jax.models.config import ConfigMethods
from xtr_jax.models.t5 import EMBED, JOINED_KV, MLP, NEG_INF, VOCAB

Array = jax.Array


@gin.configurable
@dataclasses.dataclass(frozen=True)
class Bert2BertConfig(ConfigMethods):
  """A BERT-family encoder config plus what the decoder adds.

  ``start_token`` / ``end_token`` are *tokenizer* ids (XLM-R's ``<s>`` 0 and ``</s>`` 2): the
  decoder starts from ``<s>`` and a question ends with ``</s>``, as the encoder's inputs do.
  """

  encoder: BertConfig = BertConfig()
  num_decoder_layers: int = 0  # 0: as many as the encoder
  output_vocab: tuple[int, ...] = ()  # sorted tokenizer ids the decoder can emit; (): all
  tie_word_embeddings: bool = True  # LM head = the decoder's word embeddings (+ a bias)
  start_token: int = 0
  end_token: int = 2
  copy_attention: bool = False  # pointer-generator copying from the source (module docstring)

  def __post_init__(self):
    vocab = self.output_vocab
    if not isinstance(self.encoder, BertConfig):
      raise ValueError(f"Bert2BertConfig.encoder must be a BertConfig, got {self.encoder!r}")
    if self.num_decoder_layers < 0:
      raise ValueError(f"Bert2BertConfig.num_decoder_layers={self.num_decoder_layers} < 0")
    if vocab and (
      any(b <= a for a, b in zip(vocab, vocab[1:]))
      or vocab[0] < 0
      or vocab[-1] >= self.encoder.vocab_size
    ):
      raise ValueError(
        "Bert2BertConfig.output_vocab must be strictly increasing tokenizer ids in "
        f"[0, {self.encoder.vocab_size}); got {len(vocab)} ids from {vocab[0]} to {vocab[-1]}"
      )
    for name in ("start_token", "end_token"):
      if self.output_id(getattr(self, name)) is None:
        raise ValueError(
          f"Bert2BertConfig.{name}={getattr(self, name)} is not in output_vocab "
          "(the special tokens must be part of the output vocabulary)"
        )

  # What decoding.py, the trainer and the checkpoint code read from any generator config.
  @property
  def dtype(self) -> str:  # type: ignore[override]
    return self.encoder.dtype

  @property
  def param_dtype(self) -> str:  # type: ignore[override]
    return self.encoder.param_dtype

  @property
  def d_model(self) -> int:
    return self.encoder.hidden_size

  @property
  def decoder_layers(self) -> int:
    return self.num_decoder_layers or self.encoder.num_hidden_layers

  @property
  def vocab_size(self) -> int:
    """Size of the decoder's (output) vocabulary."""
    return len(self.output_vocab) or self.encoder.vocab_size

  @property
  def pad_token_id(self) -> int:
    """The encoder's padding id (input masks); decoded positions after EOS use it too."""
    return self.encoder.pad_token_id

  @property
  def eos_token_id(self) -> int:
    return self.output_id(self.end_token)

  @property
  def decoder_start_token_id(self) -> int:
    return self.output_id(self.start_token)

  def output_id(self, token_id: int) -> int | None:
    """Output id of a tokenizer id; None when the restricted vocabulary lacks it."""
    if not self.output_vocab:
      return token_id if 0 <= token_id < self.encoder.vocab_size else None
    i = int(np.searchsorted(self.output_vocab, token_id))
    return i if i < len(self.output_vocab) and self.output_vocab[i] == token_id else None

  def to_dict(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    d["output_vocab"] = list(self.output_vocab)
    return d

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> Bert2BertConfig:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
      raise ValueError(f"unknown Bert2BertConfig fields {unknown}; known: {sorted(known)}")
    d = dict(d)
    if not isinstance(d.get("encoder"), dict):
      raise ValueError("Bert2BertConfig field 'encoder' must be a dict of BertConfig fields")
    d["encoder"] = BertConfig.from_dict(d["encoder"])
    for name in ("num_decoder_layers", "start_token", "end_token"):
      v = d.get(name, 0)
      if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 1 << 24:
        raise ValueError(f"Bert2BertConfig field {name!r} must be an int in [0, 2**24), got {v!r}")
    for name in ("tie_word_embeddings", "copy_attention"):
      if not isinstance(d.get(name, False), bool):
        raise ValueError(f"Bert2BertConfig field {name!r} must be a bool")
    vocab = d.get("output_vocab", [])
    if not isinstance(vocab, list | tuple) or not all(
      isinstance(i, int) and not isinstance(i, bool) for i in vocab
    ):
      raise ValueError("Bert2BertConfig field 'output_vocab' must be a list of ints")
    d["output_vocab"] = tuple(vocab)
    return cls(**d)


@gin.configurable
def bert2bert_config(
  size: str = "me5-small",
  output_vocab: tuple[int, ...] | list[int] = (),
  encoder: BertConfig | None = None,
  **overrides,
) -> Bert2BertConfig:
  """A generator config on the BERT size ``size`` (or ``encoder``), with ``overrides``."""
  encoder = encoder or bert_config(size)
  return Bert2BertConfig(encoder=encoder, output_vocab=tuple(output_vocab), **overrides)


def to_output_ids(config: Bert2BertConfig, token_ids: np.ndarray, unk_id: int) -> np.ndarray:
  """Tokenizer ids -> output ids; ids the restricted vocabulary lacks map to ``unk_id``'s."""
  token_ids = np.asarray(token_ids)
  if not config.output_vocab:
    return token_ids.astype(np.int32)
  vocab = np.asarray(config.output_vocab, np.int64)
  unk = config.output_id(unk_id)
  if unk is None:
    raise ValueError(f"the output vocabulary lacks the unk id {unk_id}")
  pos = np.clip(np.searchsorted(vocab, token_ids), 0, len(vocab) - 1)
  return np.where(vocab[pos] == token_ids, pos, unk).astype(np.int32)


def to_token_ids(config: Bert2BertConfig, output_ids: np.ndarray) -> np.ndarray:
  """Output ids -> tokenizer ids (the inverse of ``to_output_ids`` on the vocabulary)."""
  output_ids = np.asarray(output_ids)
  if not config.output_vocab:
    return output_ids.astype(np.int64)
  return np.asarray(config.output_vocab, np.int64)[output_ids]


def decoder_positions(config: BertConfig, positions: Array) -> Array:
  """Position-table rows of decoder steps ``0, 1, ...``: XLM-R counts from ``pad + 1``."""
  return positions + (config.pad_token_id + 1 if config.position_scheme == "roberta" else 0)


class DecoderEmbeddings(nn.Module):
  """Output-vocabulary word + position + token type 0, LayerNorm, dropout (BERT's names)."""

  config: Bert2BertConfig

  def setup(self):
    c, e = self.config, self.config.encoder
    embed = functools.partial(nn.Embed, features=e.hidden_size, param_dtype=e.params_dtype)
    self.word_embeddings = embed(
      c.vocab_size, embedding_init=_init((VOCAB, EMBED)), name="word_embeddings"
    )
    self.position_embeddings = embed(
      e.max_position_embeddings, embedding_init=_init((None, EMBED)), name="position_embeddings"
    )
    self.token_type_embeddings = embed(
      e.type_vocab_size, embedding_init=_init((None, EMBED)), name="token_type_embeddings"
    )
    self.layer_norm = LayerNorm(e.layer_norm_eps, e.compute_dtype, e.params_dtype)
    self.dropout = nn.Dropout(e.hidden_dropout_prob)

  def __call__(self, ids: Array, positions: Array, *, deterministic: bool = True) -> Array:
    e = self.config.encoder
    x = self.word_embeddings(ids) + self.position_embeddings(decoder_positions(e, positions))
    x = x + self.token_type_embeddings(jnp.zeros_like(ids))
    x = self.layer_norm(x)
    return self.dropout(x, deterministic=deterministic).astype(e.compute_dtype)

  def attend(self, y: Array) -> Array:
    return self.word_embeddings.attend(y)


def _attend(q: Array, k: Array, v: Array, bias: Array, dropout: nn.Module, det: bool) -> Array:
  """softmax(q k^T / sqrt(d) + bias) v over [B, L, H, D] tensors, in float32 logits."""
  q = q * jnp.asarray(1 / math.sqrt(q.shape[-1]), q.dtype)
  logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) + bias
  weights = dropout(jax.nn.softmax(logits, axis=-1).astype(v.dtype), deterministic=det)
  return jnp.einsum("bhqk,bkhd->bqhd", weights, v)


class CrossAttention(nn.Module):
  """The new block: decoder queries over the encoder's states (keys/values cached once)."""

  config: BertConfig

  @nn.compact
  def __call__(
    self, x: Array, encoded: Array | None, bias: Array, *, deterministic: bool, decode: bool
  ) -> Array:
    c = self.config
    dense = functools.partial(Dense, dtype=c.compute_dtype, param_dtype=c.params_dtype)
    heads = (c.num_attention_heads, c.head_dim)
    q = dense(c.hidden_size, (EMBED, JOINED_KV), name="query")(x)
    q = q.reshape(x.shape[:2] + heads)
    if decode and self.has_variable("cache", "cached_key"):
      k, v = self.get_variable("cache", "cached_key"), self.get_variable("cache", "cached_value")
    else:
      shape = encoded.shape[:2] + heads
      k = dense(c.hidden_size, (EMBED, JOINED_KV), name="key")(encoded).reshape(shape)
      v = dense(c.hidden_size, (EMBED, JOINED_KV), name="value")(encoded).reshape(shape)
      if decode:
        self.put_variable("cache", "cached_key", k)
        self.put_variable("cache", "cached_value", v)
    drop = nn.Dropout(c.attention_probs_dropout_prob)
    out = _attend(q, k, v, bias, drop, deterministic).reshape(x.shape[:2] + (c.hidden_size,))
    return dense(c.hidden_size, (JOINED_KV, EMBED), name="out")(out)


class BertDecoderLayer(nn.Module):
  """Causal self-attention (cached when decoding), new cross-attention, FFN; post-LN."""

  config: BertConfig

  @nn.compact
  def __call__(
    self,
    x: Array,
    encoded: Array | None,
    self_bias: Array,
    cross_bias: Array,
    *,
    deterministic: bool = True,
    decode: bool = False,
    decode_position: Array | None = None,
  ) -> Array:
    c = self.config
    dense = functools.partial(Dense, dtype=c.compute_dtype, param_dtype=c.params_dtype)
    norm = functools.partial(
      LayerNorm, epsilon=c.layer_norm_eps, dtype=c.compute_dtype, param_dtype=c.params_dtype
    )
    drop = nn.Dropout(c.hidden_dropout_prob)
    shape = x.shape[:2] + (c.num_attention_heads, c.head_dim)
    q = dense(c.hidden_size, (EMBED, JOINED_KV), name="query")(x).reshape(shape)
    k = dense(c.hidden_size, (EMBED, JOINED_KV), name="key")(x).reshape(shape)
    v = dense(c.hidden_size, (EMBED, JOINED_KV), name="value")(x).reshape(shape)
    if decode:
      filled = self.has_variable("cache", "cached_key")
      cached_k = self.variable("cache", "cached_key", jnp.zeros, k.shape, k.dtype)
      cached_v = self.variable("cache", "cached_value", jnp.zeros, v.shape, v.dtype)
      if filled:
        start = (0, decode_position, 0, 0)
        cached_k.value = jax.lax.dynamic_update_slice(cached_k.value, k, start)
        cached_v.value = jax.lax.dynamic_update_slice(cached_v.value, v, start)
        k, v = cached_k.value, cached_v.value
    attn = _attend(q, k, v, self_bias, nn.Dropout(c.attention_probs_dropout_prob), deterministic)
    attn = dense(c.hidden_size, (JOINED_KV, EMBED), name="attention_output")(
      attn.reshape(x.shape[:2] + (c.hidden_size,))
    )
    x = norm(name="attention_layer_norm")(x + drop(attn, deterministic=deterministic))
    h = CrossAttention(c, name="encoder_decoder_attention")(
      x, encoded, cross_bias, deterministic=deterministic, decode=decode
    )
    x = norm(name="cross_attention_layer_norm")(x + drop(h, deterministic=deterministic))
    h = _activation(c.hidden_act)(dense(c.intermediate_size, (EMBED, MLP), name="intermediate")(x))
    h = dense(c.hidden_size, (MLP, EMBED), name="output")(h)
    return norm(name="output_layer_norm")(x + drop(h, deterministic=deterministic))


def source_output_ids(config: Bert2BertConfig, source_ids: Array) -> tuple[Array, Array]:
  """Tokenizer ids [B, S] -> (output ids, whether the output vocabulary has the piece)."""
  if not config.output_vocab:
    return source_ids.astype(jnp.int32), jnp.ones(source_ids.shape, bool)
  vocab = jnp.asarray(config.output_vocab, jnp.int32)
  pos = jnp.clip(jnp.searchsorted(vocab, source_ids.astype(jnp.int32)), 0, len(vocab) - 1)
  return pos.astype(jnp.int32), vocab[pos] == source_ids


def _log_or_floor(p: Array) -> Array:
  """log p, and a large negative finite value (with zero gradient) where p is 0."""
  positive = p > 0
  return jnp.where(positive, jnp.log(jnp.where(positive, p, 1.0)), NEG_INF)


class CopyGenerator(nn.Module):
  """The copy head: log p(w) of the gated mixture of the vocabulary and copy distributions.

  At cache creation it stores the source's keys, states and output ids (shared by all beams
  of one example); each step then needs only the decoder state.
  """

  config: Bert2BertConfig

  @nn.compact
  def __call__(
    self,
    y: Array,
    logits: Array,
    encoded: Array | None,
    encoder_mask: Array,
    source_ids: Array | None,
    *,
    decode: bool,
  ) -> Array:
    c, e = self.config, self.config.encoder
    dense = functools.partial(Dense, dtype=jnp.float32, param_dtype=e.params_dtype)
    if decode and self.has_variable("cache", "cached_key"):
      key = self.get_variable("cache", "cached_key")
      states = self.get_variable("cache", "cached_states")
      out_ids = self.get_variable("cache", "source_output_ids")
      copyable = self.get_variable("cache", "copyable")
    else:
      if source_ids is None:
        raise ValueError("Bert2BertConfig.copy_attention needs the source ids (source_ids=)")
      states = encoded.astype(jnp.float32)
      key = dense(e.hidden_size, (EMBED, JOINED_KV), name="key")(states)
      out_ids, copyable = source_output_ids(c, source_ids)
      copyable = copyable & (encoder_mask > 0)
      if decode:
        for name, value in (
          ("cached_key", key), ("cached_states", states),
          ("source_output_ids", out_ids), ("copyable", copyable),
        ):  # fmt: skip
          self.put_variable("cache", name, value)
    y = y.astype(jnp.float32)
    query = dense(e.hidden_size, (EMBED, JOINED_KV), name="query")(y)
    scores = jnp.einsum("btd,bsd->bts", query, key) / math.sqrt(e.hidden_size)
    scores = jnp.where(copyable[:, None, :], scores, NEG_INF)
    attn = jax.nn.softmax(scores, axis=-1) * copyable[:, None, :]  # none copyable: all zero
    context = jnp.einsum("bts,bsd->btd", attn, states)
    gate_w = self.param(
      "gate_kernel",
      nn.with_logical_partitioning(nn.initializers.zeros, (None,)),
      (2 * e.hidden_size,),
      e.params_dtype,
    )
    # Starts at sigmoid(1) = 0.73 on the vocabulary: the warm-started LM is not drowned out.
    gate_b = self.param(
      "gate_bias", nn.with_logical_partitioning(nn.initializers.ones, ()), (), e.params_dtype
    )
    gate = jnp.concatenate([y, context], axis=-1) @ gate_w.astype(jnp.float32) + gate_b
    b, t = attn.shape[:2]
    copy = jnp.zeros((b, t, c.vocab_size), jnp.float32)
    copy = copy.at[
      jnp.arange(b)[:, None, None], jnp.arange(t)[None, :, None], out_ids[:, None, :]
    ].add(attn)
    vocab_logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    gen = jax.nn.log_sigmoid(gate)[..., None] + vocab_logp
    # No copyable piece: all the mass stays on the vocabulary distribution.
    any_copy = jnp.any(copyable, axis=-1)[:, None, None]
    copy_w = jnp.where(any_copy, jax.nn.log_sigmoid(-gate)[..., None], NEG_INF)
    mixed = jnp.logaddexp(gen, copy_w + _log_or_floor(copy))
    return jnp.where(any_copy, mixed, vocab_logp)


class BertDecoder(nn.Module):
  """Output-id logits [B, T, vocab_size] from decoder input ids [B, T] and encoder states."""

  config: Bert2BertConfig

  @nn.compact
  def __call__(
    self,
    encoded: Array | None,
    encoder_mask: Array,
    decoder_input_ids: Array,
    decoder_mask: Array | None = None,
    *,
    deterministic: bool = True,
    decode: bool = False,
    source_ids: Array | None = None,
  ) -> Array:
    c, e = self.config, self.config.encoder
    length = decoder_input_ids.shape[1]
    decode_position = None
    stepping = decode and self.has_variable("cache", "cache_index")
    if decode:
      index = self.variable("cache", "cache_index", lambda: jnp.zeros((), jnp.int32))
    if stepping:  # one token per sequence at `cache_index`; keys are the whole cache
      decode_position = index.value
      max_len = self.get_variable("cache", "max_length_marker").shape[0]
      positions = jnp.broadcast_to(decode_position, decoder_input_ids.shape)
      visible = jnp.arange(max_len) <= decode_position
      self_bias = jnp.where(visible, 0.0, NEG_INF)[None, None, None, :]
      index.value = decode_position + 1
    else:
      if length > e.max_position_embeddings - (decoder_positions(e, 0)):
        raise ValueError(
          f"decoder length {length} exceeds the {e.max_position_embeddings} positions of "
          "the backbone's position table"
        )
      positions = jnp.broadcast_to(jnp.arange(length)[None], decoder_input_ids.shape)
      causal = np.tril(np.ones((length, length), bool))
      self_bias = jnp.where(causal, 0.0, NEG_INF)[None, None]
      if decoder_mask is not None:
        self_bias = self_bias + t5.padding_bias(None, decoder_mask)
      if decode:  # cache creation: remember the maximum decode length
        self.variable("cache", "max_length_marker", jnp.zeros, (length,), jnp.int8)
    embeddings = DecoderEmbeddings(c, name="embeddings")
    y = embeddings(decoder_input_ids.astype(jnp.int32), positions, deterministic=deterministic)
    cross_bias = t5.padding_bias(None, encoder_mask)
    for i in range(c.decoder_layers):
      y = BertDecoderLayer(e, name=f"layers_{i}")(
        y,
        encoded,
        self_bias,
        cross_bias,
        deterministic=deterministic,
        decode=decode,
        decode_position=decode_position,
      )
    if c.tie_word_embeddings:
      logits = embeddings.attend(y.astype(e.params_dtype))
      bias = self.param(
        "lm_bias",
        nn.with_logical_partitioning(nn.initializers.zeros, (VOCAB,)),
        (c.vocab_size,),
        e.params_dtype,
      )
      logits = logits + bias
    else:
      head = Dense(c.vocab_size, (EMBED, VOCAB), e.compute_dtype, e.params_dtype, name="lm_head")
      logits = head(y)
    if not c.copy_attention:
      return logits
    return CopyGenerator(c, name="copy_attention")(
      y, logits, encoded, encoder_mask, source_ids, decode=decode
    )


class Bert2Bert(nn.Module):
  """The warm-startable generator, with ``t5.Transformer``'s call and method signatures."""

  config: Bert2BertConfig

  def setup(self):
    self.encoder = BertEncoder(self.config.encoder)
    self.decoder = BertDecoder(self.config)

  def encode(self, input_ids: Array, attention_mask: Array | None = None, deterministic=True):
    return self.encoder(input_ids, attention_mask, None, deterministic)

  def decode(
    self,
    encoded: Array | None,
    encoder_mask: Array | None,
    decoder_input_ids: Array,
    decoder_mask: Array | None = None,
    deterministic: bool = True,
    decode: bool = False,
    source_ids: Array | None = None,
  ) -> Array:
    """``source_ids``: the encoder's input ids, which ``copy_attention`` copies from (at cache
    creation when decoding; cached steps take them from the cache)."""
    return self.decoder(
      encoded,
      encoder_mask,
      decoder_input_ids,
      decoder_mask,
      deterministic=deterministic,
      decode=decode,
      source_ids=source_ids,
    )

  def __call__(
    self,
    input_ids: Array,
    decoder_input_ids: Array,
    attention_mask: Array | None = None,
    decoder_mask: Array | None = None,
    deterministic: bool = True,
  ) -> Array:
    """Teacher-forced output-id logits [B, T, vocab_size] (log-probabilities with copying)."""
    if attention_mask is None:
      attention_mask = (input_ids != self.config.pad_token_id).astype(jnp.int32)
    encoded = self.encode(input_ids, attention_mask, deterministic=deterministic)
    return self.decode(
      encoded,
      attention_mask,
      decoder_input_ids,
      decoder_mask,
      deterministic=deterministic,
      source_ids=input_ids,
    )


def seq2seq_model(config) -> nn.Module:
  """The encoder-decoder module a generator config describes (BERT2BERT or mT5)."""
  if isinstance(config, Bert2BertConfig):
    return Bert2Bert(config)
  return t5.Transformer(config)
