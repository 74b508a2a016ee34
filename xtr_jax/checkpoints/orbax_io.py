"""Our checkpoint format: orbax arrays + one JSON file naming the model they belong to.

A checkpoint directory holds ``params/`` (orbax PyTree) and ``xtr_jax_checkpoint.json``
(config, model_kind, extra, fingerprint). Saves are atomic: everything is written into a
temporary sibling directory which is renamed into place only when complete, so a crash
never leaves a directory that ``load_checkpoint`` accepts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import uuid
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from flax.core import meta

from xtr_jax.models.config import T5Config

METADATA_FILE = "xtr_jax_checkpoint.json"
PARAMS_DIR = "params"
MODEL_KINDS = ("mt5", "mt5_encoder", "retrieval")
FORMAT_VERSION = 1


@dataclasses.dataclass
class Checkpoint:
  params: dict[str, Any]
  config: T5Config
  model_kind: str
  extra: dict[str, Any]
  fingerprint: str


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """Nested dict -> {'a/b/c': leaf}."""
  flat = {}
  for key, value in params.items():
    path = f"{prefix}/{key}" if prefix else str(key)
    if isinstance(value, Mapping):
      flat.update(flatten_params(value, path))
    else:
      flat[path] = value
  return flat


def unflatten_params(flat: Mapping[str, Any]) -> dict[str, Any]:
  """{'a/b/c': leaf} -> nested dict."""
  tree: dict[str, Any] = {}
  for path, value in flat.items():
    node = tree
    *parents, last = path.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[last] = value
  return tree


def unbox(params: Any) -> dict[str, Any]:
  """Strips flax ``LogicallyPartitioned`` boxes and FrozenDicts: a plain nested dict."""
  params = meta.unbox(params)
  return unflatten_params(flatten_params(params))


def params_fingerprint(params: Mapping[str, Any]) -> str:
  """sha256 over sorted (name, shape, dtype, bytes): equal iff the weights are identical."""
  h = hashlib.sha256()
  for path, leaf in sorted(flatten_params(unbox(params)).items()):
    arr = np.ascontiguousarray(np.asarray(leaf))
    h.update(f"{path}|{arr.shape}|{arr.dtype.str}|".encode())
    h.update(arr.tobytes())
  return h.hexdigest()[:16]


def _shape_of(leaf: Any) -> tuple[int, ...]:
  return tuple(int(d) for d in getattr(leaf, "shape", np.shape(leaf)))


def check_params_match(params: Mapping[str, Any], expected: Mapping[str, Any], source: str) -> None:
  """Raises ValueError naming every missing, unexpected or mis-shaped parameter.

  ``expected`` is any tree with ``.shape`` leaves (arrays, ShapeDtypeStruct, boxed params).
  ``source`` names where ``params`` came from (a file, a checkpoint) for the message.
  """
  got = {k: _shape_of(v) for k, v in flatten_params(unbox(params)).items()}
  want = {k: _shape_of(v) for k, v in flatten_params(unbox(expected)).items()}
  problems = []
  for name in sorted(set(want) - set(got)):
    problems.append(f"missing parameter {name!r} (expected shape {want[name]})")
  for name in sorted(set(got) - set(want)):
    problems.append(f"unexpected parameter {name!r} with shape {got[name]}")
  for name in sorted(set(got) & set(want)):
    if got[name] != want[name]:
      problems.append(
        f"parameter {name!r} has shape {got[name]} in {source} but the model expects {want[name]}"
      )
  if problems:
    shown = "\n  ".join(problems[:20])
    more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
    raise ValueError(f"parameters from {source} do not match the model:\n  {shown}{more}")


def build_model(config: T5Config, model_kind: str, extra: Mapping[str, Any] | None = None):
  """The flax module a checkpoint of ``model_kind`` belongs to."""
  from xtr_jax.models import t5, xtr

  extra = dict(extra or {})
  if model_kind == "mt5":
    return t5.Transformer(config)
  if model_kind == "mt5_encoder":
    return t5.T5EncoderModel(config)
  if model_kind == "retrieval":
    return xtr.RetrievalEncoder(
      config, proj_dim=int(extra.get("proj_dim", 128)), pooling=extra.get("pooling", "token")
    )
  raise ValueError(f"model_kind={model_kind!r}; expected one of {MODEL_KINDS}")


def expected_param_shapes(
  config: T5Config, model_kind: str, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
  """Parameter shapes of the model (ShapeDtypeStruct tree), without allocating weights."""
  import jax.numpy as jnp

  model = build_model(config, model_kind, extra)
  ids = jnp.ones((1, 4), jnp.int32)
  args = (ids, ids) if model_kind == "mt5" else (ids,)
  shapes = jax.eval_shape(lambda rng: model.init(rng, *args)["params"], jax.random.PRNGKey(0))
  return unbox(shapes)


def _to_host(params: Mapping[str, Any]) -> dict[str, Any]:
  return jax.tree_util.tree_map(np.asarray, unbox(params))


def save_checkpoint(
  directory: str | os.PathLike,
  params: Mapping[str, Any],
  config: T5Config,
  *,
  model_kind: str,
  extra: Mapping[str, Any] | None = None,
) -> str:
  """Writes params + metadata to ``directory`` atomically; returns the fingerprint."""
  import orbax.checkpoint as ocp

  if model_kind not in MODEL_KINDS:
    raise ValueError(f"model_kind={model_kind!r}; expected one of {MODEL_KINDS}")
  target = pathlib.Path(directory).absolute()
  target.parent.mkdir(parents=True, exist_ok=True)
  host = _to_host(params)
  fingerprint = params_fingerprint(host)
  tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
  try:
    tmp.mkdir()
    ocp.PyTreeCheckpointer().save(tmp / PARAMS_DIR, host)
    metadata = {
      "format_version": FORMAT_VERSION,
      "model_kind": model_kind,
      "config": config.to_dict(),
      "extra": dict(extra or {}),
      "fingerprint": fingerprint,
    }
    # The metadata file is the commit marker of the temporary directory: written last.
    (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True))
    if target.exists():
      old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
      os.rename(target, old)
      os.rename(tmp, target)
      shutil.rmtree(old, ignore_errors=True)
    else:
      os.rename(tmp, target)
  finally:
    if tmp.exists():
      shutil.rmtree(tmp, ignore_errors=True)
  return fingerprint


def load_metadata(directory: str | os.PathLike) -> dict[str, Any]:
  path = pathlib.Path(directory)
  meta_path = path / METADATA_FILE
  if not path.is_dir():
    raise FileNotFoundError(f"checkpoint directory not found: {path}")
  if not meta_path.is_file():
    raise FileNotFoundError(
      f"not an xtr_jax checkpoint: {meta_path} is missing (incomplete save or wrong directory)"
    )
  try:
    metadata = json.loads(meta_path.read_bytes().decode("utf-8"))
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ValueError(f"corrupt checkpoint metadata {meta_path}: {e}") from e
  problems = [
    f"{key!r} must be {kind.__name__}"
    for key, kind in (("config", dict), ("model_kind", str), ("fingerprint", str))
    if not isinstance(metadata, dict) or not isinstance(metadata.get(key), kind)
  ]
  if isinstance(metadata, dict) and not isinstance(metadata.get("extra", {}), dict):
    problems.append("'extra' must be dict")
  if problems:
    raise ValueError(f"corrupt checkpoint metadata {meta_path}: {'; '.join(problems)}")
  return metadata


def load_checkpoint(directory: str | os.PathLike, *, verify: bool = True) -> Checkpoint:
  """Reads a checkpoint written by ``save_checkpoint``; checks shapes and fingerprint."""
  import orbax.checkpoint as ocp

  path = pathlib.Path(directory).absolute()
  metadata = load_metadata(path)
  params_path = path / PARAMS_DIR
  if not params_path.is_dir():
    raise FileNotFoundError(f"checkpoint arrays not found: {params_path}")
  meta_path = path / METADATA_FILE
  try:
    config = T5Config.from_dict(metadata["config"])
  except (TypeError, ValueError) as e:
    raise ValueError(f"corrupt checkpoint metadata {meta_path}: {e}") from None
  model_kind = metadata["model_kind"]
  extra = metadata.get("extra", {})
  if model_kind not in MODEL_KINDS:
    raise ValueError(f"{meta_path}: model_kind={model_kind!r}; expected one of {MODEL_KINDS}")
  try:
    restored = ocp.PyTreeCheckpointer().restore(params_path)
    params = jax.tree_util.tree_map(np.asarray, unbox(restored))
  except Exception as e:  # orbax/tensorstore raise many types, none naming the checkpoint
    raise ValueError(f"checkpoint {path}: cannot read the arrays in {params_path}: {e}") from e
  if verify:
    try:
      expected = expected_param_shapes(config, model_kind, extra)
    except (TypeError, ValueError) as e:
      raise ValueError(f"{meta_path}: extra {extra!r} does not describe a model: {e}") from None
    check_params_match(params, expected, str(params_path))
    fingerprint = params_fingerprint(params)
    if fingerprint != metadata["fingerprint"]:
      raise ValueError(
        f"checkpoint {path}: arrays fingerprint {fingerprint} != recorded "
        f"{metadata['fingerprint']} in {METADATA_FILE} (files modified or corrupt)"
      )
  return Checkpoint(params, config, model_kind, extra, metadata["fingerprint"])
