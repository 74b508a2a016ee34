"""Our checkpoint format: orbax arrays + one JSON file naming the model they belong to.

A checkpoint directory holds ``params/`` (orbax PyTree) and ``xtr_jax_checkpoint.json``
(backbone, config, model_kind, extra, fingerprint), plus any assets saved with the weights
(a ``tokenizer.json``: a checkpoint that brings its own tokenizer cannot be paired with the
wrong one). ``backbone`` names the config class: ``t5`` (``T5Config``, the default of
checkpoints written before BERT existed), ``bert`` (``BertConfig``) or ``bert2bert``
(``Bert2BertConfig``, the warm-started generator, model_kind ``bert2bert``). Saves are atomic: everything is written into a
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
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from flax.core import meta

from xtr_jax import io as xio
from xtr_jax.io import file_fingerprint
from xtr_jax.models.bert import BertConfig
from xtr_jax.models.bert2bert import Bert2BertConfig
from xtr_jax.models.config import T5Config

ModelConfig = T5Config | BertConfig | Bert2BertConfig
BACKBONES: dict[str, type] = {"t5": T5Config, "bert": BertConfig, "bert2bert": Bert2BertConfig}
METADATA_FILE = "xtr_jax_checkpoint.json"
PARAMS_DIR = "params"
MODEL_KINDS = ("mt5", "mt5_encoder", "retrieval", "bert_encoder", "bert2bert")
FORMAT_VERSION = 1
VOCAB_KEY = "vocabulary"  # extra: path of the SentencePiece model the weights were trained with
VOCAB_FP_KEY = "vocabulary_fingerprint"  # extra: its content hash, added by save_checkpoint


def backbone_of(config: ModelConfig) -> str:
  """The metadata name of ``config``'s class (``t5`` or ``bert``)."""
  for name, cls in BACKBONES.items():
    if isinstance(config, cls):
      return name
  raise TypeError(f"not a model config: {type(config).__name__}")


def config_from_metadata(metadata: Mapping[str, Any], source: str) -> ModelConfig:
  """The config object recorded in checkpoint metadata; one-line errors name ``source``."""
  backbone = metadata.get("backbone", "t5")
  if backbone not in BACKBONES:
    raise ValueError(f"{source}: backbone={backbone!r}; expected one of {sorted(BACKBONES)}")
  try:
    config = BACKBONES[backbone].from_dict(metadata["config"])
  except (TypeError, ValueError) as e:
    raise ValueError(f"corrupt checkpoint metadata {source}: {e}") from None
  if isinstance(config, T5Config):
    check_relative_attention(config, source)
  return config


@dataclasses.dataclass
class Checkpoint:
  params: dict[str, Any]
  config: ModelConfig
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


def check_relative_attention(config: T5Config, source: str) -> None:
  """Refuses relative-position settings T5's log buckets cannot compute.

  The encoder's bidirectional buckets need ``num_buckets >= 4`` (one exact bucket each way)
  and the log-spaced range needs ``max_distance`` beyond the exact ones
  (``> num_buckets // 2``); otherwise bucketing divides by zero deep inside the model.
  """
  nb, md = config.relative_attention_num_buckets, config.relative_attention_max_distance
  if nb < 4 or md <= nb // 2:
    raise ValueError(
      f"{source}: relative_attention_num_buckets={nb} with relative_attention_max_distance="
      f"{md} is not computable; need num_buckets >= 4 and max_distance > num_buckets // 2 "
      "(T5/mT5 use 32 and 128)"
    )


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


def build_model(config: ModelConfig, model_kind: str, extra: Mapping[str, Any] | None = None):
  """The flax module a checkpoint of ``model_kind`` belongs to."""
  from xtr_jax.models import bert, t5, xtr

  extra = dict(extra or {})
  if (model_kind == "bert2bert") != isinstance(config, Bert2BertConfig):
    raise ValueError(f"model_kind={model_kind!r} does not go with a {type(config).__name__}")
  if model_kind == "bert2bert":
    from xtr_jax.models import bert2bert  # noqa: PLC0415

    return bert2bert.Bert2Bert(config)
  bert_kinds = ("bert_encoder", "retrieval") if isinstance(config, BertConfig) else None
  if bert_kinds and model_kind not in bert_kinds or not bert_kinds and model_kind == "bert_encoder":
    raise ValueError(f"model_kind={model_kind!r} does not go with a {type(config).__name__}")
  if model_kind == "bert_encoder":
    return bert.BertEncoder(config)
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
  config: ModelConfig, model_kind: str, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
  """Parameter shapes of the model (ShapeDtypeStruct tree), without allocating weights."""
  import jax.numpy as jnp

  model = build_model(config, model_kind, extra)
  ids = jnp.ones((1, 4), jnp.int32)
  args = (ids, ids) if model_kind in ("mt5", "bert2bert") else (ids,)
  shapes = jax.eval_shape(lambda rng: model.init(rng, *args)["params"], jax.random.PRNGKey(0))
  return unbox(shapes)


def vocabulary_fingerprint(path: str | os.PathLike) -> str:
  """Content hash of a SentencePiece model file (the same value index manifests record)."""
  return file_fingerprint(str(path))


def with_vocabulary_fingerprint(extra: Mapping[str, Any] | None) -> dict[str, Any]:
  """``extra`` plus the fingerprint of ``extra['vocabulary']`` when that file exists.

  A fingerprint already present is kept: it describes the vocabulary the weights were
  trained with, even when the file at the recorded path has changed since.
  """
  extra = dict(extra or {})
  path = extra.get(VOCAB_KEY)
  if isinstance(path, str) and VOCAB_FP_KEY not in extra and os.path.isfile(path):
    extra[VOCAB_FP_KEY] = vocabulary_fingerprint(path)
  return extra


def check_vocabulary(extra: Mapping[str, Any], vocabulary: str, checkpoint: str) -> None:
  """Refuses a vocabulary other than the one ``checkpoint`` was trained with.

  Checkpoints without a recorded fingerprint (older ones, imports) are not checked.
  """
  want = (extra or {}).get(VOCAB_FP_KEY)
  if not want:
    return
  if not os.path.isfile(vocabulary):
    raise FileNotFoundError(f"SentencePiece model not found: {vocabulary}")
  got = vocabulary_fingerprint(vocabulary)
  if got != want:
    trained = (extra or {}).get(VOCAB_KEY, "?")
    raise ValueError(
      f"vocabulary mismatch: {vocabulary} has fingerprint {got} but checkpoint {checkpoint} "
      f"was trained with {trained} (fingerprint {want}); pass that vocabulary"
    )


# Fields that decide the computation; dropout/dtypes may differ between training and use.
ARCHITECTURE_FIELDS = (
  "vocab_size", "d_model", "num_heads", "d_kv", "d_ff", "num_encoder_layers",
  "num_decoder_layers", "relative_attention_num_buckets", "relative_attention_max_distance",
  "feed_forward_proj", "tie_word_embeddings", "layer_norm_epsilon",
)  # fmt: skip


BERT_ARCHITECTURE_FIELDS = (
  "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
  "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "hidden_act",
  "position_scheme",
)  # fmt: skip


def architecture_fields(config: ModelConfig) -> tuple[ModelConfig, str, tuple[str, ...]]:
  """(the config compared, its configurable's name, the fields that decide the computation).

  A bert2bert model is compared by its encoder: the decoder's shape is the checkpoint's own.
  """
  if isinstance(config, Bert2BertConfig):
    config = config.encoder
  if isinstance(config, BertConfig):
    return config, "xtr_jax.models.bert.BertConfig", BERT_ARCHITECTURE_FIELDS
  return config, "xtr_jax.models.config.T5Config", ARCHITECTURE_FIELDS


def check_config_matches(
  config: ModelConfig,
  expected: Mapping[str, Any] | Callable[[str, tuple[str, ...]], Mapping[str, Any]],
  checkpoint: str,
  source: str = "gin",
) -> None:
  """Refuses a checkpoint whose architecture differs from ``expected`` (field -> value).

  Only the architecture fields present in ``expected`` are compared; the checkpoint side is
  its recorded config. ``expected`` may be a function of (configurable name, fields): the
  commands pass ``gin_utils.bound_config_fields``, what their gin configuration binds, so
  the loader itself never reads gin.
  """
  config, selector, fields = architecture_fields(config)
  if callable(expected):
    expected = expected(selector, fields)
  diffs = [
    f"{name}={expected[name]!r} in {source} but {getattr(config, name)!r} in the checkpoint"
    for name in fields
    if name in expected and expected[name] != getattr(config, name)
  ]
  if diffs:
    raise ValueError(
      f"checkpoint {checkpoint} does not match the {source} model config: {'; '.join(diffs)} "
      f"(drop the model {source} file/bindings or pass the matching checkpoint)"
    )


def _to_host(params: Mapping[str, Any]) -> dict[str, Any]:
  return jax.tree_util.tree_map(np.asarray, unbox(params))


def save_checkpoint(
  directory: str | os.PathLike,
  params: Mapping[str, Any],
  config: ModelConfig,
  *,
  model_kind: str,
  extra: Mapping[str, Any] | None = None,
  assets: Mapping[str, bytes] | None = None,
) -> str:
  """Writes params + metadata (+ ``assets``: file name -> bytes) atomically; returns the
  fingerprint. Assets land in the same temporary directory, so they commit together."""
  import orbax.checkpoint as ocp

  if model_kind not in MODEL_KINDS:
    raise ValueError(f"model_kind={model_kind!r}; expected one of {MODEL_KINDS}")
  target = pathlib.Path(directory).absolute()
  target.parent.mkdir(parents=True, exist_ok=True)
  host = _to_host(params)
  fingerprint = params_fingerprint(host)
  extra = with_vocabulary_fingerprint(extra)
  tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
  try:
    tmp.mkdir()
    ocp.PyTreeCheckpointer().save(tmp / PARAMS_DIR, host)
    for name, data in (assets or {}).items():
      if os.path.basename(name) != name or name in (PARAMS_DIR, METADATA_FILE):
        raise ValueError(f"checkpoint asset name {name!r} must be a plain file name")
      (tmp / name).write_bytes(data)
    metadata = {
      "format_version": FORMAT_VERSION,
      "backbone": backbone_of(config),
      "model_kind": model_kind,
      "config": config.to_dict(),
      "extra": extra,
      "fingerprint": fingerprint,
    }
    # The metadata file is the commit marker of the temporary directory: written last.
    (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True))
    xio.replace_dir(tmp, target)
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
  config = config_from_metadata(metadata, str(meta_path))
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
