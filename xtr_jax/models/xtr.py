"""Retrieval encoders: XTR/ColBERT token vectors and single vectors, on mT5 or BERT.

XTR (Lee et al., 2023) and ColBERT share the network: one encoder for queries and
passages, a bias-free projection to ``proj_dim`` (128) and L2 normalisation per token; they
differ only in the training loss and the scoring at inference. The single-vector baseline
(xDR in the xQG paper; multilingual-E5 itself) mean-pools the encoder output over real
tokens before projection.

The backbone is chosen by the config's type: a ``T5Config`` gives the mT5 encoder
(``token_embedder`` + ``encoder``, names of ``T5EncoderModel``), a ``BertConfig`` the
BERT-family encoder (``bert``). ``proj_dim=0`` keeps the backbone's own states (no
projection): multilingual-E5's raw 384-d token states are already good XTR vectors
before any training, so that zero-shot path is a configuration of its own.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

import gin
from xtr_jax.models.bert import BertConfig, BertEncoder
from xtr_jax.models.config import T5Config
from xtr_jax.models.t5 import EMBED, KV, Dense, Encoder, _token_embedder

POOLINGS = ("token", "mean")

Array = jax.Array


def l2_normalize(x: Array, eps: float = 1e-6) -> Array:
  x32 = x.astype(jnp.float32)
  return x32 / jnp.maximum(jnp.linalg.norm(x32, axis=-1, keepdims=True), eps)


def masked_mean(x: Array, mask: Array) -> Array:
  """Mean over real tokens: [B, L, D], [B, L] -> [B, D]."""
  m = mask.astype(jnp.float32)[..., None]
  return (x.astype(jnp.float32) * m).sum(1) / jnp.maximum(m.sum(1), 1.0)


def output_dim(config: T5Config | BertConfig, proj_dim: int) -> int:
  """Width of the vectors a retrieval encoder emits (``proj_dim=0``: the backbone's own)."""
  return proj_dim if proj_dim > 0 else config.d_model


@gin.configurable
class RetrievalEncoder(nn.Module):
  """Backbone encoder + projection (``projection/kernel``, axes ('embed', 'kv')).

  ``pooling='token'`` returns normalised token vectors [B, L, dim] (XTR, ColBERT);
  ``pooling='mean'`` returns one normalised vector [B, dim] per text (single-vector).
  With a ``T5Config`` the parameter names match ``T5EncoderModel`` plus ``projection``, so
  an mT5 checkpoint's encoder loads directly; with a ``BertConfig`` the backbone lives
  under ``bert``. ``proj_dim=0``: no projection parameter at all.
  """

  config: T5Config | BertConfig
  proj_dim: int = 128
  pooling: str = "token"
  normalize: bool = True

  def setup(self):
    if self.pooling not in POOLINGS:
      raise ValueError(f"RetrievalEncoder.pooling={self.pooling!r}; expected one of {POOLINGS}")
    if isinstance(self.config, BertConfig):
      self.bert = BertEncoder(self.config)
    else:
      self.token_embedder = _token_embedder(self.config)
      self.encoder = Encoder(self.config, self.token_embedder)
    if self.proj_dim > 0:
      self.projection = Dense(
        self.proj_dim,
        (EMBED, KV),
        dtype=self.config.compute_dtype,
        param_dtype=self.config.params_dtype,
        name="projection",
      )

  def encode_states(self, input_ids: Array, attention_mask: Array, deterministic: bool) -> Array:
    """The backbone's token states [B, L, d_model], before pooling and projection."""
    if isinstance(self.config, BertConfig):
      return self.bert(input_ids, attention_mask, deterministic=deterministic)
    return self.encoder(input_ids, attention_mask, deterministic=deterministic)

  def __call__(
    self, input_ids: Array, attention_mask: Array | None = None, deterministic: bool = True
  ) -> Array:
    if attention_mask is None:
      attention_mask = (input_ids != self.config.pad_token_id).astype(jnp.int32)
    hidden = self.encode_states(input_ids, attention_mask, deterministic)
    if self.pooling == "mean":
      hidden = masked_mean(hidden, attention_mask)
    out = self.projection(hidden) if self.proj_dim > 0 else hidden
    out = out.astype(jnp.float32)
    return l2_normalize(out) if self.normalize else out
