"""Hugging Face mT5/T5 safetensors checkpoints <-> our (t5x-named) parameter trees.

HF stores torch ``Linear`` kernels as [out, in] and the relative position bias as
[buckets, heads] on block 0 only; t5x (and we) store kernels [in, out] and one
``relpos_bias/rel_embedding`` [heads, buckets] per stack. The mapping below is the whole
difference. What HF writes for the tied embeddings depends on the transformers version, so
the importer records which alias keys the file held and the exporter writes the same ones,
which makes HF -> ours -> HF bit-exact.

LM head semantics (transformers 5.x, the reference installed here):
- ``lm_head.weight`` in the file and different from ``shared.weight``: untied head (mT5).
- otherwise the head is ``shared.weight``; T5 (model_type 't5') rescales the decoder
  output by d_model**-0.5 unless config.json says ``tie_word_embeddings: false``; MT5 never
  rescales. The rescaled case is our ``tie_word_embeddings=True``; the other becomes an
  untied ``logits_dense`` holding a copy of the embedding.

The public XTR release (sentence-transformers folder, e.g. google/xtr-base-multilingual) is
assumed to be: root ``config.json`` + ``model.safetensors`` of a T5EncoderModel, and
``2_Dense/config.json`` (``in_features``, ``out_features``, ``bias: false``) with
``2_Dense/model.safetensors`` holding ``linear.weight`` [out_features, d_model].
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from xtr_jax.checkpoints.orbax_io import (
  check_params_match,
  check_relative_attention,
  expected_param_shapes,
  flatten_params,
  unbox,
  unflatten_params,
)
from xtr_jax.io import atomic_write_bytes as _atomic_write_bytes
from xtr_jax.models.config import T5Config

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
DENSE_DIR = "2_Dense"

FULL_ARCHS = ("MT5ForConditionalGeneration", "T5ForConditionalGeneration")
ENCODER_ARCHS = ("MT5EncoderModel", "T5EncoderModel")
EMBED_ALIASES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")

# HF activation names that compute what our 'gated-gelu' (tanh GELU) / 'relu' compute.
_FF_KINDS = {
  "gated-gelu": "gated-gelu",
  "gated-gelu_new": "gated-gelu",
  "gated-gelu_pytorch_tanh": "gated-gelu",
  "gated-gelu_fast": "gated-gelu",
  "relu": "relu",
}


# ----------------------------------------------------------------------------- config


def _read_json(path: pathlib.Path, what: str) -> dict[str, Any]:
  if not path.is_file():
    raise FileNotFoundError(f"{what} not found: {path}")
  try:
    data = json.loads(path.read_bytes().decode("utf-8"))
  except UnicodeDecodeError as e:
    raise ValueError(f"{path}: invalid UTF-8 at byte {e.start}") from None
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from e
  if not isinstance(data, dict):
    raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
  return data


def config_from_hf(hf: Mapping[str, Any], source: str = "config.json") -> T5Config:
  """HF T5/MT5 config.json dict -> T5Config (LM-head tying is decided from the weights)."""
  ff = hf.get("feed_forward_proj", "relu")
  if not isinstance(ff, str) or ff not in _FF_KINDS:
    raise ValueError(
      f"{source}: feed_forward_proj={ff!r} is not supported; expected one of {sorted(_FF_KINDS)}"
    )
  for key in ("d_model", "d_kv", "d_ff", "num_heads", "num_layers", "vocab_size"):
    if key not in hf:
      raise ValueError(f"{source}: required field {key!r} is missing")
  try:
    config = T5Config.from_dict(_config_fields_from_hf(hf, ff))
  except (TypeError, ValueError, OverflowError) as e:
    raise ValueError(f"{source}: {e}") from None
  check_relative_attention(config, source)
  return config


def _config_fields_from_hf(hf: Mapping[str, Any], ff: str) -> dict[str, Any]:
  num_layers = int(hf["num_layers"])
  return dict(
    vocab_size=int(hf["vocab_size"]),
    d_model=int(hf["d_model"]),
    num_heads=int(hf["num_heads"]),
    d_kv=int(hf["d_kv"]),
    d_ff=int(hf["d_ff"]),
    num_encoder_layers=num_layers,
    num_decoder_layers=int(hf.get("num_decoder_layers") or num_layers),
    dropout_rate=float(hf.get("dropout_rate", 0.1)),
    layer_norm_epsilon=float(hf.get("layer_norm_epsilon", 1e-6)),
    relative_attention_num_buckets=int(hf.get("relative_attention_num_buckets", 32)),
    relative_attention_max_distance=int(hf.get("relative_attention_max_distance", 128)),
    feed_forward_proj=_FF_KINDS[ff],
    tie_word_embeddings=False,
    dtype="float32",
    param_dtype="float32",
    pad_token_id=int(hf.get("pad_token_id") or 0),
    eos_token_id=int(hf.get("eos_token_id") if hf.get("eos_token_id") is not None else 1),
    decoder_start_token_id=int(hf.get("decoder_start_token_id") or 0),
  )


def config_to_hf(config: T5Config, architecture: str, base: Mapping[str, Any] | None = None):
  """T5Config -> HF config.json dict (``base``, the imported file, keeps its other fields)."""
  hf = dict(base or {})
  mt5 = architecture.startswith("MT5")
  hf.update(
    architectures=[architecture],
    model_type=hf.get("model_type", "mt5" if mt5 else "t5"),
    vocab_size=config.vocab_size,
    d_model=config.d_model,
    d_kv=config.d_kv,
    d_ff=config.d_ff,
    num_heads=config.num_heads,
    num_layers=config.num_encoder_layers,
    num_decoder_layers=config.num_decoder_layers,
    relative_attention_num_buckets=config.relative_attention_num_buckets,
    relative_attention_max_distance=config.relative_attention_max_distance,
    layer_norm_epsilon=config.layer_norm_epsilon,
    dropout_rate=config.dropout_rate,
    pad_token_id=config.pad_token_id,
    eos_token_id=config.eos_token_id,
    decoder_start_token_id=config.decoder_start_token_id,
    is_encoder_decoder=architecture in FULL_ARCHS,
  )
  if base is None or _FF_KINDS.get(hf.get("feed_forward_proj")) != config.feed_forward_proj:
    hf["feed_forward_proj"] = config.feed_forward_proj
  if base is None:
    hf["tie_word_embeddings"] = config.tie_word_embeddings
    hf["dtype"] = config.param_dtype
  return hf


# ----------------------------------------------------------------------------- name map


def _attention_map(hf_prefix: str, ours: str) -> list[tuple[str, str, bool]]:
  return [
    (f"{hf_prefix}.{a}.weight", f"{ours}/{b}/kernel", True)
    for a, b in (("q", "query"), ("k", "key"), ("v", "value"), ("o", "out"))
  ]


def _mlp_map(hf_prefix: str, ours: str, kind: str) -> list[tuple[str, str, bool]]:
  names = ("wi_0", "wi_1", "wo") if kind == "gated-gelu" else ("wi", "wo")
  return [(f"{hf_prefix}.{n}.weight", f"{ours}/{n}/kernel", True) for n in names]


def name_map(config: T5Config, with_decoder: bool) -> list[tuple[str, str, bool]]:
  """(HF name, our path, transpose?) for every parameter except the LM head."""
  ff = config.feed_forward_proj
  rows = [("shared.weight", "token_embedder/embedding", False)]
  rows.append(
    (
      "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
      "encoder/relpos_bias/rel_embedding",
      True,
    )
  )
  for i in range(config.num_encoder_layers):
    hf, us = f"encoder.block.{i}", f"encoder/layers_{i}"
    rows += _attention_map(f"{hf}.layer.0.SelfAttention", f"{us}/attention")
    rows.append((f"{hf}.layer.0.layer_norm.weight", f"{us}/pre_attention_layer_norm/scale", False))
    rows += _mlp_map(f"{hf}.layer.1.DenseReluDense", f"{us}/mlp", ff)
    rows.append((f"{hf}.layer.1.layer_norm.weight", f"{us}/pre_mlp_layer_norm/scale", False))
  rows.append(("encoder.final_layer_norm.weight", "encoder/encoder_norm/scale", False))
  if not with_decoder:
    return rows
  rows.append(
    (
      "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
      "decoder/relpos_bias/rel_embedding",
      True,
    )
  )
  for i in range(config.num_decoder_layers):
    hf, us = f"decoder.block.{i}", f"decoder/layers_{i}"
    rows += _attention_map(f"{hf}.layer.0.SelfAttention", f"{us}/self_attention")
    rows.append(
      (f"{hf}.layer.0.layer_norm.weight", f"{us}/pre_self_attention_layer_norm/scale", False)
    )
    rows += _attention_map(f"{hf}.layer.1.EncDecAttention", f"{us}/encoder_decoder_attention")
    rows.append(
      (f"{hf}.layer.1.layer_norm.weight", f"{us}/pre_cross_attention_layer_norm/scale", False)
    )
    rows += _mlp_map(f"{hf}.layer.2.DenseReluDense", f"{us}/mlp", ff)
    rows.append((f"{hf}.layer.2.layer_norm.weight", f"{us}/pre_mlp_layer_norm/scale", False))
  rows.append(("decoder.final_layer_norm.weight", "decoder/decoder_norm/scale", False))
  return rows


# ----------------------------------------------------------------------------- safetensors io


def read_safetensors_dir(directory: pathlib.Path) -> tuple[dict[str, np.ndarray], list[str]]:
  """All tensors of ``model.safetensors`` or of the shards listed by the index file."""
  from safetensors.numpy import load_file as _load_file

  single, index = directory / WEIGHTS_FILE, directory / INDEX_FILE

  def load_file(path):  # safetensors raises its own error types, without the path
    try:
      return _load_file(path)
    except Exception as e:
      raise ValueError(f"{path}: not a readable safetensors file: {e}") from None

  if single.is_file():
    return load_file(str(single)), [WEIGHTS_FILE]
  if index.is_file():
    weight_map = _read_json(index, "safetensors index").get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
      raise ValueError(f"{index}: no 'weight_map' object of tensor name -> shard file")
    tensors: dict[str, np.ndarray] = {}
    shards = sorted(set(weight_map.values()))
    for shard in shards:
      shard_path = directory / shard
      if not shard_path.is_file():
        raise FileNotFoundError(f"shard {shard_path} listed in {index} not found")
      tensors.update(load_file(str(shard_path)))
    missing = sorted(set(weight_map) - set(tensors))
    if missing:
      raise ValueError(f"{index}: tensors {missing[:5]} are listed but absent from the shards")
    return tensors, shards
  raise FileNotFoundError(f"no {WEIGHTS_FILE} or {INDEX_FILE} in {directory}")


def _shard_name(i: int, n: int) -> str:
  return f"model-{i:05d}-of-{n:05d}.safetensors"


def write_safetensors_dir(
  directory: pathlib.Path, tensors: Mapping[str, np.ndarray], max_shard_bytes: int | None = None
) -> None:
  """Writes ``model.safetensors`` or, when larger than ``max_shard_bytes``, HF-style shards."""
  from safetensors.numpy import save

  directory.mkdir(parents=True, exist_ok=True)
  tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
  total = sum(v.nbytes for v in tensors.values())
  if max_shard_bytes is None or total <= max_shard_bytes:
    _atomic_write_bytes(directory / WEIGHTS_FILE, save(tensors, metadata={"format": "pt"}))
    return
  shards: list[dict[str, np.ndarray]] = [{}]
  size = 0
  for name, value in tensors.items():
    if shards[-1] and size + value.nbytes > max_shard_bytes:
      shards.append({})
      size = 0
    shards[-1][name] = value
    size += value.nbytes
  weight_map = {}
  for i, shard in enumerate(shards, 1):
    fname = _shard_name(i, len(shards))
    _atomic_write_bytes(directory / fname, save(shard, metadata={"format": "pt"}))
    weight_map.update({name: fname for name in shard})
  index = {"metadata": {"total_size": total}, "weight_map": weight_map}
  _atomic_write_bytes(directory / INDEX_FILE, json.dumps(index, indent=2).encode())


# ----------------------------------------------------------------------------- import


def _take(tensors: dict[str, np.ndarray], name: str, where: str) -> np.ndarray:
  if name not in tensors:
    raise ValueError(f"{where}: tensor {name!r} is missing")
  return tensors.pop(name)


def params_from_hf_tensors(
  tensors: Mapping[str, np.ndarray], hf_config: Mapping[str, Any], source: str
) -> tuple[dict[str, Any], T5Config, str, dict[str, Any]]:
  """HF state dict -> (params, config, model_kind, extra). ``source`` names the folder."""
  tensors = dict(tensors)
  archs = hf_config.get("architectures") or ["MT5ForConditionalGeneration"]
  if not isinstance(archs, list) or not isinstance(archs[0], str):
    raise ValueError(
      f"{source}/config.json: 'architectures' must be a list of class names, got {archs!r}"
    )
  arch = archs[0]
  if arch not in FULL_ARCHS + ENCODER_ARCHS:
    raise ValueError(
      f"{source}/config.json: architecture {arch!r} not supported; "
      f"expected one of {FULL_ARCHS + ENCODER_ARCHS}"
    )
  with_decoder = arch in FULL_ARCHS
  config = config_from_hf(hf_config, f"{source}/config.json")
  if "shared.weight" not in tensors and "encoder.embed_tokens.weight" in tensors:
    tensors["shared.weight"] = tensors["encoder.embed_tokens.weight"]
    aliases_present = [
      a for a in EMBED_ALIASES if a in tensors and a != "encoder.embed_tokens.weight"
    ]
    shared_missing = True
  else:
    aliases_present = [a for a in EMBED_ALIASES if a in tensors]
    shared_missing = False
  for alias in EMBED_ALIASES:
    tensors.pop(alias, None)
  embedding = tensors["shared.weight"] if "shared.weight" in tensors else None
  param_dtype = str(embedding.dtype) if embedding is not None else "float32"
  if param_dtype not in ("float32", "bfloat16", "float16"):
    raise ValueError(f"{source}: shared.weight has unsupported dtype {param_dtype}")
  flat: dict[str, Any] = {}
  for hf_name, ours, transpose in name_map(config, with_decoder):
    value = _take(tensors, hf_name, source)
    flat[ours] = value.T if transpose else value
  lm_head_in_file = "lm_head.weight" in tensors
  if with_decoder:
    lm_head = tensors.pop("lm_head.weight", None)
    rescale = (
      hf_config.get("model_type") == "t5" and hf_config.get("tie_word_embeddings") is not False
    )
    if lm_head is not None and not np.array_equal(lm_head, flat["token_embedder/embedding"]):
      config = config.replace(tie_word_embeddings=False)
      flat["decoder/logits_dense/kernel"] = lm_head.T
    elif rescale:
      config = config.replace(tie_word_embeddings=True)
    else:
      config = config.replace(tie_word_embeddings=False)
      flat["decoder/logits_dense/kernel"] = flat["token_embedder/embedding"].T.copy()
  else:
    tensors.pop("lm_head.weight", None)
  leftover = sorted(
    k for k in tensors if not k.endswith("EncDecAttention.relative_attention_bias.weight")
  )
  if leftover:
    raise ValueError(f"{source}: unexpected tensors not used by {arch}: {leftover[:10]}")
  config = config.replace(param_dtype=param_dtype)
  model_kind = "mt5" if with_decoder else "mt5_encoder"
  params = unflatten_params(flat)
  check_params_match(params, expected_param_shapes(config, model_kind), source)
  extra = {
    "hf": {
      "config": dict(hf_config),
      "architecture": arch,
      "embed_aliases": aliases_present,
      "shared_in_file": not shared_missing,
      "lm_head_in_file": lm_head_in_file,
    }
  }
  return params, config, model_kind, extra


def load_hf(path: str | os.PathLike) -> tuple[dict[str, Any], T5Config, str, dict[str, Any]]:
  """Imports a HF MT5/T5 folder: (params, config, model_kind, extra)."""
  directory = pathlib.Path(path)
  if not directory.is_dir():
    raise FileNotFoundError(f"Hugging Face checkpoint folder not found: {directory}")
  hf_config = _read_json(directory / CONFIG_FILE, "Hugging Face config")
  tensors, _ = read_safetensors_dir(directory)
  return params_from_hf_tensors(tensors, hf_config, str(directory))


def load_xtr_hf(path: str | os.PathLike) -> tuple[dict[str, Any], T5Config, str, dict[str, Any]]:
  """Imports an XTR sentence-transformers folder -> RetrievalEncoder params."""
  directory = pathlib.Path(path)
  if not directory.is_dir():
    raise FileNotFoundError(f"XTR checkpoint folder not found: {directory}")
  hf_config = _read_json(directory / CONFIG_FILE, "Hugging Face config")
  hf_config = {**hf_config, "architectures": ["T5EncoderModel"]}
  tensors, _ = read_safetensors_dir(directory)
  # Some exports keep the decoder or lm_head; an encoder needs none of it.
  tensors = {k: v for k, v in tensors.items() if not k.startswith(("decoder.", "lm_head."))}
  params, config, _, extra = params_from_hf_tensors(tensors, hf_config, str(directory))
  dense_dir = directory / DENSE_DIR
  dense_config = _read_json(dense_dir / CONFIG_FILE, "XTR projection config (2_Dense)")
  if dense_config.get("bias", False):
    raise ValueError(f"{dense_dir / CONFIG_FILE}: bias=true; the XTR projection has no bias")
  dense, _ = read_safetensors_dir(dense_dir)
  weight = _take(dict(dense), "linear.weight", str(dense_dir))
  out_features = int(dense_config.get("out_features", weight.shape[0]))
  in_features = int(dense_config.get("in_features", weight.shape[1]))
  if weight.shape != (out_features, in_features) or in_features != config.d_model:
    raise ValueError(
      f"{dense_dir}: linear.weight has shape {tuple(weight.shape)}; expected "
      f"(out_features={out_features}, in_features={in_features}) with in_features == "
      f"d_model={config.d_model}"
    )
  params["projection"] = {"kernel": weight.T}
  extra = {**extra, "proj_dim": out_features, "pooling": "token"}
  check_params_match(params, expected_param_shapes(config, "retrieval", extra), str(directory))
  return params, config, "retrieval", extra


# ----------------------------------------------------------------------------- export


def params_to_hf_tensors(
  params: Mapping[str, Any], config: T5Config, model_kind: str, extra: Mapping[str, Any]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """Our params -> (HF state dict, config.json dict); inverse of ``params_from_hf_tensors``."""
  if model_kind not in ("mt5", "mt5_encoder"):
    raise ValueError(f"HF export supports model_kind 'mt5' or 'mt5_encoder', got {model_kind!r}")
  with_decoder = model_kind == "mt5"
  info = dict(extra.get("hf", {}))
  flat = flatten_params(unbox(params))
  tensors: dict[str, np.ndarray] = {}
  for hf_name, ours, transpose in name_map(config, with_decoder):
    value = np.asarray(flat.pop(ours))
    tensors[hf_name] = np.ascontiguousarray(value.T if transpose else value)
  embedding = tensors["shared.weight"]
  for alias in info.get("embed_aliases", []):
    if alias.startswith("encoder.") or with_decoder:
      tensors[alias] = embedding
  if not info.get("shared_in_file", True):
    tensors["encoder.embed_tokens.weight"] = tensors.pop("shared.weight")
  if with_decoder and not config.tie_word_embeddings:
    kernel = np.asarray(flat.pop("decoder/logits_dense/kernel"))
    head = np.ascontiguousarray(kernel.T)
    tied_copy = info and not info.get("lm_head_in_file", False)
    if not (tied_copy and np.array_equal(head, embedding)):
      tensors["lm_head.weight"] = head
  elif with_decoder and info.get("lm_head_in_file"):
    tensors["lm_head.weight"] = embedding
  if flat:
    raise ValueError(f"parameters without a HF name: {sorted(flat)[:10]}")
  default_arch = "MT5ForConditionalGeneration" if with_decoder else "MT5EncoderModel"
  if config.tie_word_embeddings and with_decoder:
    default_arch = "T5ForConditionalGeneration"  # only T5 rescales a tied head
  arch = info.get("architecture", default_arch)
  hf_config = config_to_hf(config, arch, info.get("config"))
  return tensors, hf_config


def save_hf(
  directory: str | os.PathLike,
  params: Mapping[str, Any],
  config: T5Config,
  model_kind: str,
  extra: Mapping[str, Any] | None = None,
  max_shard_bytes: int | None = None,
) -> None:
  """Writes ``config.json`` + ``model.safetensors`` (or shards + index) under ``directory``."""
  tensors, hf_config = params_to_hf_tensors(params, config, model_kind, dict(extra or {}))
  out = pathlib.Path(directory)
  write_safetensors_dir(out, tensors, max_shard_bytes)
  _atomic_write_bytes(out / CONFIG_FILE, (json.dumps(hf_config, indent=2) + "\n").encode())
