"""T5X checkpoints: a msgpack ``checkpoint`` file plus tensorstore (zarr) arrays.

The msgpack tree holds small arrays inline and, for large ones, a tensorstore spec
(``{'driver': 'zarr', 'kvstore': {'driver': 'gfile'|'file', 'path': 'target.a.b'}, ...}``)
whose path is relative to the checkpoint folder. Older T5X (format version 2, e.g. the
t5x_retrieval test data) nests the parameters under ``optimizer/target``; newer ones under
``target``. Optimizer state is dropped. T5X parameter names are ours except
t5x_retrieval's ``projection_layer``, which becomes ``projection``.
"""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from xtr_jax.checkpoints.orbax_io import (
  check_params_match,
  check_relative_attention,
  expected_param_shapes,
  flatten_params,
  unflatten_params,
)
from xtr_jax.models.config import T5Config

CHECKPOINT_FILE = "checkpoint"
RENAMES = {"projection_layer": "projection"}


def _is_tensorstore_spec(node: Any) -> bool:
  return isinstance(node, Mapping) and "driver" in node and "kvstore" in node


def _read_tensorstore(spec: Mapping[str, Any], directory: pathlib.Path, name: str) -> np.ndarray:
  import tensorstore as ts

  spec = {k: v for k, v in spec.items()}
  kvstore = dict(spec["kvstore"])
  rel = kvstore.get("path", "")
  base = kvstore.pop("base_path", None)
  full = pathlib.Path(rel) if os.path.isabs(rel) else directory / (base or "") / rel
  if not full.exists():
    raise FileNotFoundError(f"array for T5X parameter {name!r} not found: {full}")
  spec["kvstore"] = {"driver": "file", "path": str(full)}
  spec.pop("metadata", None)  # the .zarray on disk is authoritative
  try:
    return np.asarray(ts.open(spec, open=True, read=True).result().read().result())
  except Exception as e:  # tensorstore raises ValueError/RuntimeError variants
    raise ValueError(f"cannot read T5X array {name!r} from {full}: {e}") from e


def _params_root(tree: Mapping[str, Any], path: pathlib.Path) -> Mapping[str, Any]:
  if "target" in tree:
    return tree["target"]
  if "optimizer" in tree and "target" in tree["optimizer"]:
    return tree["optimizer"]["target"]
  raise ValueError(f"{path}: no 'target' or 'optimizer/target' tree; top keys: {sorted(tree)}")


def _materialise(node: Any, directory: pathlib.Path, name: str) -> Any:
  if _is_tensorstore_spec(node):
    return _read_tensorstore(node, directory, name)
  if isinstance(node, Mapping):
    return {
      RENAMES.get(k, k): _materialise(v, directory, f"{name}/{k}" if name else k)
      for k, v in node.items()
    }
  if isinstance(node, np.ndarray | np.generic | int | float):
    return np.asarray(node)
  raise ValueError(f"T5X parameter {name!r}: unsupported leaf of type {type(node).__name__}")


def read_t5x_params(path: str | os.PathLike) -> dict[str, Any]:
  """The ``target`` parameter tree of a T5X checkpoint folder, arrays materialised."""
  from flax import serialization

  directory = pathlib.Path(path).resolve()  # tensorstore refuses paths with '..'
  ckpt = directory / CHECKPOINT_FILE
  if not ckpt.is_file():
    raise FileNotFoundError(f"T5X checkpoint file not found: {ckpt}")
  try:
    tree = serialization.msgpack_restore(ckpt.read_bytes())
  except Exception as e:
    raise ValueError(f"{ckpt}: not a msgpack T5X checkpoint: {e}") from e
  return _materialise(_params_root(tree, ckpt), directory, "")


def _count_layers(flat: Mapping[str, Any], stack: str) -> int:
  pattern = re.compile(rf"^{stack}/layers_(\d+)/")
  found = {int(m.group(1)) for k in flat if (m := pattern.match(k))}
  return max(found) + 1 if found else 0


def infer_config(params: Mapping[str, Any], **overrides) -> T5Config:
  """A T5Config from parameter shapes. ``relative_attention_max_distance`` (and
  layer_norm_epsilon, dropout) cannot be seen in the weights: pass them in ``overrides``."""
  flat = flatten_params(params)
  for name in ("token_embedder/embedding", "encoder/relpos_bias/rel_embedding",
               "encoder/layers_0/attention/query/kernel"):  # fmt: skip
    if name not in flat:
      raise ValueError(f"parameter {name!r} is missing; cannot infer the model config")
  for name in (*flat,):
    if np.ndim(flat[name]) < 1:
      raise ValueError(f"parameter {name!r} is a scalar; T5X parameters are arrays")
  vocab, d_model = flat["token_embedder/embedding"].shape
  heads, buckets = flat["encoder/relpos_bias/rel_embedding"].shape
  inner = flat["encoder/layers_0/attention/query/kernel"].shape[1]
  gated = "encoder/layers_0/mlp/wi_0/kernel" in flat
  wi = f"encoder/layers_0/mlp/{'wi_0' if gated else 'wi'}/kernel"
  if wi not in flat:
    raise ValueError(f"parameter {wi!r} is missing; cannot infer the model config")
  d_ff = flat[wi].shape[1]
  n_dec = _count_layers(flat, "decoder")
  base = dict(
    vocab_size=int(vocab),
    d_model=int(d_model),
    num_heads=int(heads),
    d_kv=int(inner) // int(heads),
    d_ff=int(d_ff),
    num_encoder_layers=_count_layers(flat, "encoder"),
    num_decoder_layers=n_dec or _count_layers(flat, "encoder"),
    relative_attention_num_buckets=int(buckets),
    feed_forward_proj="gated-gelu" if gated else "relu",
    tie_word_embeddings=bool(n_dec) and "decoder/logits_dense/kernel" not in flat,
    param_dtype=str(flat["token_embedder/embedding"].dtype),
  )
  return T5Config(**{**base, **overrides})


def model_kind_of(params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
  """('mt5' | 'mt5_encoder' | 'retrieval', extra) from which subtrees exist."""
  if "projection" in params:
    return "retrieval", {
      "proj_dim": int(params["projection"]["kernel"].shape[1]),
      "pooling": "mean",
    }
  if "decoder" in params:
    return "mt5", {}
  return "mt5_encoder", {}


def load_t5x(
  path: str | os.PathLike, config: T5Config | None = None, **config_overrides
) -> tuple[dict[str, Any], T5Config, str, dict[str, Any]]:
  """Imports a T5X checkpoint: (params, config, model_kind, extra).

  With ``config`` given it is checked against the weights; otherwise one is inferred.
  A dual encoder with ``projection_layer`` becomes a mean-pooled RetrievalEncoder (the
  t5x_retrieval default); set ``extra['pooling']`` otherwise.
  """
  params = read_t5x_params(path)
  flat = flatten_params(params)
  params = unflatten_params(flat)
  if config is None:
    try:
      config = infer_config(params, **config_overrides)
    except (ValueError, TypeError, IndexError, ZeroDivisionError) as e:
      # A corrupt tree: a missing kernel, an array of the wrong rank, sizes T5Config refuses.
      raise ValueError(f"T5X checkpoint {path}: cannot infer the model config: {e}") from None
  check_relative_attention(config, f"T5X checkpoint {path}")
  model_kind, extra = model_kind_of(params)
  check_params_match(params, expected_param_shapes(config, model_kind, extra), str(path))
  return params, config, model_kind, extra
