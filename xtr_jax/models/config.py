"""Model configuration: one frozen dataclass shared by mT5, XTR and xQG."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import jax.numpy as jnp

import gin

FEED_FORWARD_KINDS = ("gated-gelu", "relu")


class ConfigMethods:
  """What every model config offers the wings above (shared by T5Config and BertConfig)."""

  dtype: str
  param_dtype: str

  @property
  def compute_dtype(self) -> Any:
    return jnp.dtype(self.dtype)

  @property
  def params_dtype(self) -> Any:
    return jnp.dtype(self.param_dtype)

  def replace(self, **kwargs):
    return dataclasses.replace(self, **kwargs)

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)


@gin.configurable
@dataclasses.dataclass(frozen=True)
class T5Config(ConfigMethods):
  """T5.1.1 / mT5 hyper-parameters (defaults: mT5-small).

  ``feed_forward_proj='relu'`` with ``tie_word_embeddings=True`` gives the T5 1.0 variant
  (ungated ReLU MLP, LM head tied to the embedding with the d_model**-0.5 rescale).
  """

  vocab_size: int = 250112
  d_model: int = 512
  num_heads: int = 6
  d_kv: int = 64
  d_ff: int = 1024
  num_encoder_layers: int = 8
  num_decoder_layers: int = 8
  dropout_rate: float = 0.1
  layer_norm_epsilon: float = 1e-6
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  feed_forward_proj: str = "gated-gelu"
  tie_word_embeddings: bool = False
  dtype: str = "float32"  # compute dtype: float32 or bfloat16
  param_dtype: str = "float32"
  pad_token_id: int = 0
  eos_token_id: int = 1
  decoder_start_token_id: int = 0

  def __post_init__(self):
    if self.feed_forward_proj not in FEED_FORWARD_KINDS:
      raise ValueError(
        f"T5Config.feed_forward_proj={self.feed_forward_proj!r}; expected one of {FEED_FORWARD_KINDS}"
      )
    for name in ("dtype", "param_dtype"):
      if getattr(self, name) not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"T5Config.{name}={getattr(self, name)!r}; expected float32 or bfloat16")

  @property
  def inner_dim(self) -> int:
    return self.num_heads * self.d_kv

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> T5Config:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
      raise ValueError(f"unknown T5Config fields {unknown}; known: {sorted(known)}")
    check_config_values(d)
    return cls(**d)


# Sizes beyond this are corrupt files, not models (mT5-XXL's largest, d_ff, is 10240).
_MAX_SIZE = 1 << 24
_POSITIVE = ("vocab_size", "d_model", "num_heads", "d_kv", "d_ff", "relative_attention_num_buckets")


def check_config_values(d: dict[str, Any]) -> None:
  """Raises ValueError for a field of the wrong type or an impossible size.

  Without it a corrupt config (a size of 2**70, a list for num_heads) fails deep inside
  model building with a bare TypeError, or hangs building billions of layers.
  """
  types = {"int": int, "float": (int, float), "str": str, "bool": bool}
  for f in dataclasses.fields(T5Config):
    if f.name not in d:
      continue
    v, want = d[f.name], types[str(f.type)]
    if isinstance(v, bool) != (want is bool) or not isinstance(v, want):
      raise ValueError(f"T5Config field {f.name!r} must be {f.type}, got {v!r}")
    low = 1 if f.name in _POSITIVE else 0
    if want is int and not low <= v <= _MAX_SIZE:
      raise ValueError(f"T5Config field {f.name!r}={v} is outside [{low}, {_MAX_SIZE}]")


# The published mT5 sizes (Xue et al. 2021; the google/mt5-* config.json files).
MT5_SIZES: dict[str, dict[str, int]] = {
  "small": dict(
    d_model=512, d_ff=1024, num_heads=6, d_kv=64, num_encoder_layers=8, num_decoder_layers=8
  ),
  "base": dict(
    d_model=768, d_ff=2048, num_heads=12, d_kv=64, num_encoder_layers=12, num_decoder_layers=12
  ),
  "large": dict(
    d_model=1024, d_ff=2816, num_heads=16, d_kv=64, num_encoder_layers=24, num_decoder_layers=24
  ),
  "xl": dict(
    d_model=2048, d_ff=5120, num_heads=32, d_kv=64, num_encoder_layers=24, num_decoder_layers=24
  ),
  "xxl": dict(
    d_model=4096, d_ff=10240, num_heads=64, d_kv=64, num_encoder_layers=24, num_decoder_layers=24
  ),
}


def mt5_config(size: str, **overrides) -> T5Config:
  """The published mT5 configuration of ``size`` (small, base, large, xl, xxl)."""
  if size not in MT5_SIZES:
    raise ValueError(f"unknown mT5 size {size!r}; expected one of {sorted(MT5_SIZES)}")
  return T5Config(**{**MT5_SIZES[size], **overrides})


def tiny_config(**overrides) -> T5Config:
  """A tiny mT5-shaped config for CPU tests and demos."""
  base = dict(
    vocab_size=512,
    d_model=64,
    num_heads=4,
    d_kv=16,
    d_ff=128,
    num_encoder_layers=2,
    num_decoder_layers=2,
    dropout_rate=0.0,
  )
  return T5Config(**{**base, **overrides})
