"""Retrieval encoders on the mT5 encoder: XTR/ColBERT token vectors and single vectors.

XTR (Lee et al., 2023) and ColBERT share the network: one mT5 encoder for queries and
passages, a bias-free projection to ``proj_dim`` (128) and L2 normalisation per token; they
differ only in the training loss and the scoring at inference. The single-vector baseline
(xDR in the xQG paper) mean-pools the encoder output over real tokens before projection.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

import gin
from xtr_jax.models.config import T5Config
from xtr_jax.models.t5 import EMBED, KV, Dense, Encoder, _token_embedder

Array = jax.Array


def l2_normalize(x: Array, eps: float = 1e-6) -> Array:
  x32 = x.astype(jnp.float32)
  return x32 / jnp.maximum(jnp.linalg.norm(x32, axis=-1, keepdims=True), eps)


def masked_mean(x: Array, mask: Array) -> Array:
  """Mean over real tokens: [B, L, D], [B, L] -> [B, D]."""
  m = mask.astype(jnp.float32)[..., None]
  return (x.astype(jnp.float32) * m).sum(1) / jnp.maximum(m.sum(1), 1.0)


@gin.configurable
class RetrievalEncoder(nn.Module):
  """mT5 encoder + projection (``projection/kernel``, axes ('embed', 'kv')).

  ``pooling='token'`` returns normalised token vectors [B, L, proj_dim] (XTR, ColBERT);
  ``pooling='mean'`` returns one normalised vector [B, proj_dim] per text (single-vector).
  Parameter names match ``T5EncoderModel`` plus ``projection``, so an mT5 checkpoint's
  encoder loads directly.
  """

  config: T5Config
  proj_dim: int = 128
  pooling: str = "token"
  normalize: bool = True

  def setup(self):
    if self.pooling not in ("token", "mean"):
      raise ValueError(f"RetrievalEncoder.pooling={self.pooling!r}; expected 'token' or 'mean'")
    self.token_embedder = _token_embedder(self.config)
    self.encoder = Encoder(self.config, self.token_embedder)
    self.projection = Dense(
      self.proj_dim,
      (EMBED, KV),
      dtype=self.config.compute_dtype,
      param_dtype=self.config.params_dtype,
      name="projection",
    )

  def __call__(
    self, input_ids: Array, attention_mask: Array | None = None, deterministic: bool = True
  ) -> Array:
    if attention_mask is None:
      attention_mask = (input_ids != self.config.pad_token_id).astype(jnp.int32)
    hidden = self.encoder(input_ids, attention_mask, deterministic=deterministic)
    if self.pooling == "mean":
      hidden = masked_mean(hidden, attention_mask)
    out = self.projection(hidden).astype(jnp.float32)
    return l2_normalize(out) if self.normalize else out
