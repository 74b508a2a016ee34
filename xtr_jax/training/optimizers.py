"""Learning-rate schedules and optimizers (t5x defaults: Adafactor with rsqrt decay)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import optax

import gin

SCHEDULES = ("constant", "rsqrt", "linear", "cosine")


@gin.configurable
def learning_rate_schedule(
  base_learning_rate: float = 1e-3,
  kind: str = "rsqrt",
  warmup_steps: int = 1000,
  total_steps: int = 100_000,
  end_factor: float = 0.0,
) -> optax.Schedule:
  """Linear warm-up to ``base_learning_rate``, then ``kind`` decay.

  ``rsqrt`` is t5x's ``base * 1/sqrt(max(step, warmup))`` normalised so the peak is ``base``;
  ``linear``/``cosine`` decay to ``end_factor * base`` at ``total_steps``.
  """
  if kind not in SCHEDULES:
    raise ValueError(f"learning_rate_schedule.kind={kind!r}; expected one of {SCHEDULES}")
  warmup_steps = max(int(warmup_steps), 0)

  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    warm = jnp.minimum(1.0, (step + 1.0) / max(warmup_steps, 1)) if warmup_steps else 1.0
    if kind == "constant":
      decay = 1.0
    elif kind == "rsqrt":
      decay = jnp.sqrt(max(warmup_steps, 1) / jnp.maximum(step, max(warmup_steps, 1)))
    else:
      span = max(total_steps - warmup_steps, 1)
      frac = jnp.clip((step - warmup_steps) / span, 0.0, 1.0)
      shape = 1.0 - frac if kind == "linear" else 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
      decay = end_factor + (1.0 - end_factor) * shape
    return base_learning_rate * warm * decay

  return schedule


@gin.configurable
def make_optimizer(
  schedule: optax.Schedule,
  name: str = "adafactor",
  weight_decay: float = 0.0,
  clip_grad_norm: float | None = None,
  decay_rate: float = 0.8,
  b1: float = 0.9,
  b2: float = 0.999,
  freeze: Sequence[str] = (),
) -> optax.GradientTransformation:
  """t5x's Adafactor (factored second moments, decay_rate 0.8, no momentum) or AdamW.

  ``freeze``: regular expressions over '/'-joined parameter paths (e.g.
  ``'bert/embeddings/word_embeddings'``); matching parameters get no update and no
  optimizer state. Fine-tuning multilingual-E5 freezes its 250k-row embedding this way:
  96M of its 118M parameters, whose (dead) gradient XLA then never computes.
  """
  if name == "adafactor":
    tx = optax.adafactor(
      learning_rate=schedule,
      decay_rate=decay_rate,
      momentum=None,
      factored=True,
      multiply_by_parameter_scale=True,
      clipping_threshold=1.0,
      weight_decay_rate=weight_decay or None,
    )
  elif name == "adamw":
    tx = optax.adamw(schedule, b1=b1, b2=b2, weight_decay=weight_decay)
  else:
    raise ValueError(f"make_optimizer.name={name!r}; expected 'adafactor' or 'adamw'")
  if clip_grad_norm:
    tx = optax.chain(optax.clip_by_global_norm(clip_grad_norm), tx)
  if freeze:
    tx = optax.multi_transform(
      {"train": tx, "frozen": optax.set_to_zero()}, lambda params: freeze_labels(params, freeze)
    )
  return tx


def _path_name(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def freeze_labels(params, patterns: Sequence[str]):
  """'frozen' for each parameter whose path matches one of ``patterns``, else 'train'."""
  compiled = [re.compile(p) for p in patterns]
  return jax.tree_util.tree_map_with_path(
    lambda path, _: "frozen" if any(c.search(_path_name(path)) for c in compiled) else "train",
    params,
  )
