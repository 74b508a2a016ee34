"""Hugging Face BERT / XLM-R safetensors folders <-> our ``BertEncoder`` parameter trees.

Covers ``BertModel`` / ``XLMRobertaModel`` folders (mBERT, XLM-R, multilingual-E5), their
``*ForMaskedLM``-style variants (keys prefixed ``bert.`` / ``roberta.``; heads dropped) and
sentence-transformers folders (``modules.json`` + ``1_Pooling``). torch ``Linear`` kernels are
[out, in]; ours are [in, out]: the transpose is the only change, so HF -> ours -> HF is
bit-exact.

The pad id that matters is the *tokenizer's*: multilingual-E5-small is a ``BertModel`` whose
config.json says ``pad_token_id: 0`` while its XLM-R tokenizer pads with 1. So the pad id is
read from the folder's tokenizer files when present, and config.json is the fallback.

The tokenizer a converted checkpoint keeps is the folder's tokenizer.json (XLM-R/E5 unigram
or BERT WordPiece), else, for folders that have only BERT's ``vocab.txt`` (Google's releases,
older mBERT copies), the WordPiece tokenizer built from it with ``tokenizer_config.json``'s
``do_lower_case`` / ``strip_accents`` / ``tokenize_chinese_chars``.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import re
import shutil
import uuid
from collections.abc import Mapping
from typing import Any

import numpy as np

from xtr_jax.checkpoints.hf import (
  CONFIG_FILE,
  INDEX_FILE,
  WEIGHTS_FILE,
  _read_json,
  read_safetensors_dir,
  write_safetensors_dir,
)
from xtr_jax.checkpoints.orbax_io import (
  check_params_match,
  flatten_params,
  unbox,
  unflatten_params,
)
from xtr_jax.io import replace_dir
from xtr_jax.models.bert import BertConfig, BertEncoder

ARCHITECTURES = {"BertModel": "bert", "XLMRobertaModel": "xlm-roberta"}
MODEL_TYPES = {"bert": "bert", "xlm-roberta": "roberta", "roberta": "roberta"}  # -> scheme
DEFAULT_PAD = {"bert": 0, "xlm-roberta": 1, "roberta": 1}  # transformers' config defaults
# HF activation names -> the BertConfig.hidden_act that computes the same function.
HIDDEN_ACTS = {
  "gelu": "gelu",
  "gelu_python": "gelu",
  "gelu_new": "gelu_new",
  "gelu_pytorch_tanh": "gelu_new",
  "gelu_fast": "gelu_new",
  "relu": "relu",
}
PREFIXES = ("bert.", "roberta.")
HEAD_PREFIXES = ("pooler.", "cls.", "lm_head.", "classifier.", "qa_outputs.")
BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")  # old files saved these
REQUIRED = (
  "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
  "intermediate_size", "max_position_embeddings",
)  # fmt: skip
FLOATS = ("layer_norm_eps", "hidden_dropout_prob", "attention_probs_dropout_prob")
FLOAT_DTYPES = ("float32", "bfloat16", "float16")

MODULES_FILE = "modules.json"
POOLING_MODES = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}
TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
VOCAB_TXT = "vocab.txt"
# tokenizer_config.json key -> (HFTokenizer.from_wordpiece_vocab argument, None allowed?)
WORDPIECE_OPTIONS = {
  "do_lower_case": ("lowercase", False),
  "strip_accents": ("strip_accents", True),
  "tokenize_chinese_chars": ("chinese_chars", False),
}
SPECIAL_TOKENS = "special_tokens_map.json"

Row = tuple[str, str, bool, tuple[str, ...]]  # HF name, our path, transpose?, HF shape fields


# ----------------------------------------------------------------------------- config


def config_from_hf(
  d: Mapping[str, Any], source: str = CONFIG_FILE, pad_token_id: int | None = None
) -> BertConfig:
  """HF config.json dict -> BertConfig; ``pad_token_id`` (the tokenizer's) overrides the file's.

  Refuses what ``BertEncoder`` does not compute (relative positions, decoders, other
  activations) rather than silently computing something else.
  """
  model_type = d.get("model_type")
  if not isinstance(model_type, str) or model_type not in MODEL_TYPES:
    raise ValueError(
      f"{source}: model_type={model_type!r} is not supported; expected one of {sorted(MODEL_TYPES)}"
    )
  _check_supported(d, source)
  fields = _config_fields(d, source, model_type)
  if pad_token_id is not None:
    fields["pad_token_id"] = pad_token_id
  try:
    config = BertConfig.from_dict(fields)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{source}: {e}") from None
  _check_ranges(config, source)
  return config


def _check_supported(d: Mapping[str, Any], source: str) -> None:
  position = d.get("position_embedding_type", "absolute")
  if position != "absolute":
    raise ValueError(
      f"{source}: position_embedding_type={position!r} is not supported; only 'absolute'"
    )
  act = d.get("hidden_act", "gelu")
  if not isinstance(act, str) or act not in HIDDEN_ACTS:
    raise ValueError(
      f"{source}: hidden_act={act!r} is not supported; expected one of {sorted(HIDDEN_ACTS)}"
    )
  for flag in ("is_decoder", "add_cross_attention"):
    if d.get(flag):
      raise ValueError(f"{source}: {flag}={d[flag]!r} is not supported; only encoders are")


def _config_fields(d: Mapping[str, Any], source: str, model_type: str) -> dict[str, Any]:
  missing = [k for k in REQUIRED if k not in d]
  if missing:
    raise ValueError(f"{source}: required field {missing[0]!r} is missing")
  fields = {k: d[k] for k in REQUIRED}
  fields.update(
    type_vocab_size=d.get("type_vocab_size", 2),
    hidden_act=HIDDEN_ACTS[d.get("hidden_act", "gelu")],
    position_scheme=MODEL_TYPES[model_type],
    pad_token_id=_file_pad_id(d, model_type),
  )
  defaults = {"layer_norm_eps": 1e-12, "hidden_dropout_prob": 0.1}
  for key in FLOATS:
    value = d.get(key, defaults.get(key, 0.1))
    if isinstance(value, int) and not isinstance(value, bool):
      try:
        value = float(value)
      except OverflowError:
        raise ValueError(f"{source}: {key}={value} is out of range") from None
    fields[key] = value
  return fields


def _file_pad_id(d: Mapping[str, Any], model_type: str) -> Any:
  pad = d.get("pad_token_id")
  return DEFAULT_PAD[model_type] if pad is None else pad


def _check_ranges(config: BertConfig, source: str) -> None:
  if not (0.0 < config.layer_norm_eps < 1.0):
    raise ValueError(f"{source}: layer_norm_eps={config.layer_norm_eps} must be in (0, 1)")
  for key in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
    if not (0.0 <= getattr(config, key) < 1.0):
      raise ValueError(f"{source}: {key}={getattr(config, key)} must be in [0, 1)")
  if config.pad_token_id >= config.vocab_size:
    raise ValueError(
      f"{source}: pad_token_id={config.pad_token_id} is not below vocab_size={config.vocab_size}"
    )


def config_to_hf(
  config: BertConfig, architecture: str = "BertModel", base: Mapping[str, Any] | None = None
) -> dict[str, Any]:
  """BertConfig -> config.json dict for ``architecture`` (``base``'s other fields are kept)."""
  if architecture not in ARCHITECTURES:
    raise ValueError(f"architecture {architecture!r}; expected one of {sorted(ARCHITECTURES)}")
  model_type = ARCHITECTURES[architecture]
  if MODEL_TYPES[model_type] != config.position_scheme:
    raise ValueError(
      f"{architecture} numbers positions the {MODEL_TYPES[model_type]!r} way but the config's "
      f"position_scheme is {config.position_scheme!r}"
    )
  hf = dict(base or {})
  if HIDDEN_ACTS.get(hf.get("hidden_act")) != config.hidden_act:
    hf["hidden_act"] = config.hidden_act
  keep_pad = config.position_scheme == "bert" and "pad_token_id" in hf  # BertModel ignores it
  hf.update(
    {k: getattr(config, k) for k in (*REQUIRED, *FLOATS, "type_vocab_size")},
    architectures=[architecture],
    model_type=model_type,
    position_embedding_type="absolute",
  )
  if not keep_pad:
    hf["pad_token_id"] = config.pad_token_id
  if base is None:
    hf["dtype"] = config.param_dtype
  return hf


# ----------------------------------------------------------------------------- name map


def name_map(config: BertConfig) -> list[Row]:
  """(HF name, our path, transpose?, config fields giving the HF shape) for every tensor."""
  h, ff = "hidden_size", "intermediate_size"
  rows: list[Row] = [
    ("embeddings.word_embeddings.weight", "embeddings/word_embeddings/embedding", False,
     ("vocab_size", h)),
    ("embeddings.position_embeddings.weight", "embeddings/position_embeddings/embedding", False,
     ("max_position_embeddings", h)),
    ("embeddings.token_type_embeddings.weight", "embeddings/token_type_embeddings/embedding",
     False, ("type_vocab_size", h)),
    ("embeddings.LayerNorm.weight", "embeddings/layer_norm/scale", False, (h,)),
    ("embeddings.LayerNorm.bias", "embeddings/layer_norm/bias", False, (h,)),
  ]  # fmt: skip
  linears = (
    ("attention.self.query", "query", h, h),
    ("attention.self.key", "key", h, h),
    ("attention.self.value", "value", h, h),
    ("attention.output.dense", "attention_output", h, h),
    ("intermediate.dense", "intermediate", ff, h),
    ("output.dense", "output", h, ff),
  )
  norms = (
    ("attention.output.LayerNorm", "attention_layer_norm"),
    ("output.LayerNorm", "output_layer_norm"),
  )
  for i in range(config.num_hidden_layers):
    hf, us = f"encoder.layer.{i}", f"layers_{i}"
    for name, ours, out_dim, in_dim in linears:
      rows.append((f"{hf}.{name}.weight", f"{us}/{ours}/kernel", True, (out_dim, in_dim)))
      rows.append((f"{hf}.{name}.bias", f"{us}/{ours}/bias", False, (out_dim,)))
    for name, ours in norms:
      rows.append((f"{hf}.{name}.weight", f"{us}/{ours}/scale", False, (h,)))
      rows.append((f"{hf}.{name}.bias", f"{us}/{ours}/bias", False, (h,)))
  return rows


@functools.lru_cache(maxsize=16)
def expected_shapes(config: BertConfig) -> dict[str, Any]:
  """ShapeDtypeStruct tree of ``BertEncoder(config)``'s params (cached: eval_shape is slow)."""
  import jax
  import jax.numpy as jnp

  ids = jnp.ones((1, 4), jnp.int32)
  init = lambda rng: BertEncoder(config).init(rng, ids)["params"]
  return unbox(jax.eval_shape(init, jax.random.PRNGKey(0)))


# ----------------------------------------------------------------------------- import


def backbone_tensors(tensors: Mapping[str, Any], source: str) -> tuple[dict[str, Any], list[str]]:
  """Strips ``bert.``/``roberta.`` prefixes and drops heads, poolers and buffers.

  Returns (backbone tensors by BertModel name, sorted names of what was dropped).
  """
  out: dict[str, Any] = {}
  dropped = []
  for key, value in tensors.items():
    name = next((key[len(p) :] for p in PREFIXES if key.startswith(p)), key)
    if name.startswith(HEAD_PREFIXES) or key.startswith(HEAD_PREFIXES) or name in BUFFERS:
      dropped.append(key)
      continue
    if name in out:
      raise ValueError(f"{source}: tensor {name!r} is stored both with and without a prefix")
    out[name] = value
  return out, sorted(dropped)


def params_from_hf_tensors(
  tensors: Mapping[str, Any],
  config: BertConfig,
  source: str,
  *,
  config_source: str = CONFIG_FILE,
  tensor_files: Mapping[str, str] | None = None,
) -> dict[str, Any]:
  """HF state dict (numpy arrays) -> our params; ``source`` names where the tensors came from.

  Every shape is checked against ``config`` first, so a mismatch is reported as the config
  field and tensor that disagree, not as an error deep inside the model.
  """
  tensors, _ = backbone_tensors(tensors, source)
  where = lambda name: (tensor_files or {}).get(name, source)
  _check_layer_count(tensors, config, source, config_source)
  flat = {}
  for hf_name, ours, transpose, dims in name_map(config):
    if hf_name not in tensors:
      raise ValueError(f"{source}: tensor {hf_name!r} is missing")
    value = tensors.pop(hf_name)
    _check_tensor(value, hf_name, dims, config, where(hf_name), config_source)
    flat[ours] = value.T if transpose else value
  if tensors:
    raise ValueError(f"{source}: unexpected tensors not in BertModel: {sorted(tensors)[:5]}")
  params = unflatten_params(flat)
  check_params_match(params, expected_shapes(config), source)
  return params


def _check_layer_count(
  tensors: Mapping[str, Any], config: BertConfig, source: str, config_source: str
) -> None:
  layers = {int(m.group(1)) for k in tensors if (m := re.match(r"encoder\.layer\.(\d+)\.", k))}
  n = config.num_hidden_layers
  extra = sorted(i for i in layers if i >= n)
  absent = sorted(set(range(n)) - layers)
  if extra or absent:
    what = f"encoder.layer.{extra[0]}.* tensors" if extra else f"no encoder.layer.{absent[0]}.*"
    raise ValueError(f"{config_source} says num_hidden_layers={n} but {source} has {what}")


def _check_tensor(
  value: Any, name: str, dims: tuple[str, ...], config: BertConfig, file: str, config_source: str
) -> None:
  shape = tuple(int(s) for s in np.shape(value))
  want = tuple(getattr(config, d) for d in dims)
  if shape != want:
    got = f"[{', '.join(map(str, shape))}]"
    if len(shape) != len(want):
      expected = f"[{', '.join(map(str, want))}]"
      raise ValueError(f"{config_source} implies {name} is {expected} but in {file} it is {got}")
    field = next(d for d, s, w in zip(dims, shape, want, strict=True) if s != w)
    raise ValueError(
      f"{config_source} says {field}={getattr(config, field)} but {name} in {file} is {got}"
    )
  dtype = str(getattr(value, "dtype", ""))
  if dtype not in FLOAT_DTYPES:
    raise ValueError(f"{file}: tensor {name} has dtype {dtype}; expected one of {FLOAT_DTYPES}")


def load_hf_bert(path: str | os.PathLike) -> tuple[dict[str, Any], BertConfig, dict[str, Any]]:
  """Imports a BertModel/XLMRobertaModel (or sentence-transformers) folder.

  Returns (params, config, extra); ``extra`` records the HF config and architecture, the
  dropped head tensors, where the pad id came from, ``tokenizer_file`` (a tokenizer.json) or
  else ``tokenizer_vocab`` (a WordPiece vocab.txt) and, for sentence-transformers folders,
  ``pooling`` ('mean' or 'cls') and ``normalize``.
  """
  root = pathlib.Path(path)
  if not root.is_dir():
    raise FileNotFoundError(f"Hugging Face checkpoint folder not found: {root}")
  extra: dict[str, Any] = {}
  model_dir = root
  if (root / MODULES_FILE).is_file():
    model_dir, extra = _read_sentence_transformers(root)
  config_path = model_dir / CONFIG_FILE
  hf_config = _read_json(config_path, "Hugging Face config")
  tensors, shards = read_safetensors_dir(model_dir)
  pad, pad_source = _tokenizer_pad_id(model_dir, root)
  vocab = hf_config.get("vocab_size")
  if pad is not None and isinstance(vocab, int) and pad >= vocab:
    raise ValueError(f"{pad_source}: pad id {pad} is not below {config_path}'s vocab_size={vocab}")
  config = config_from_hf(hf_config, str(config_path), pad)
  _check_pad_agrees(hf_config, config, pad_source, str(config_path))
  backbone, dropped = backbone_tensors(tensors, str(model_dir))
  dtype = str(getattr(backbone.get("embeddings.word_embeddings.weight"), "dtype", "float32"))
  if dtype in FLOAT_DTYPES:
    config = config.replace(param_dtype=dtype)
  params = params_from_hf_tensors(
    backbone,
    config,
    str(model_dir),
    config_source=str(config_path),
    tensor_files=_tensor_files(model_dir, shards, backbone),
  )
  _check_pooling_dim(extra, config, root)
  archs = hf_config.get("architectures")
  extra.update(
    hf={"config": dict(hf_config), "architecture": archs[0] if _str_list(archs) else None},
    dropped_tensors=dropped,
    pad_token_source=pad_source or str(config_path),
  )
  for key, name in (("tokenizer_file", TOKENIZER_JSON), ("tokenizer_vocab", VOCAB_TXT)):
    found = next((d / name for d in (model_dir, root) if (d / name).is_file()), None)
    if found is not None:
      extra[key] = str(found)
      break
  return params, config, extra


def _str_list(x: Any) -> bool:
  return isinstance(x, list) and bool(x) and all(isinstance(a, str) for a in x)


def _tensor_files(directory: pathlib.Path, shards: list[str], names) -> dict[str, str]:
  """BertModel tensor name -> the file holding it, for messages (shards: from the index)."""
  if shards == [WEIGHTS_FILE]:
    return dict.fromkeys(names, str(directory / WEIGHTS_FILE))
  weight_map = _read_json(directory / INDEX_FILE, "safetensors index")["weight_map"]
  files = {}
  for key, shard in weight_map.items():
    name = next((key[len(p) :] for p in PREFIXES if key.startswith(p)), key)
    files[name] = str(directory / shard)
  return files


def _check_pad_agrees(
  hf_config: Mapping[str, Any], config: BertConfig, pad_source: str | None, config_path: str
) -> None:
  """XLM-R numbers positions from config.json's pad id: a tokenizer padding with another id
  would make HF's positions and ours differ, so that folder is refused."""
  if pad_source is None or config.position_scheme != "roberta":
    return
  file_pad = _file_pad_id(hf_config, hf_config["model_type"])
  if file_pad != config.pad_token_id:
    raise ValueError(
      f"{pad_source} pads with id {config.pad_token_id} but {config_path} says "
      f"pad_token_id={file_pad!r}; XLM-R position ids count from the pad id, so they must agree"
    )


# ----------------------------------------------------------------------------- tokenizer pad id


def _tokenizer_pad_id(model_dir: pathlib.Path, root: pathlib.Path) -> tuple[int | None, str | None]:
  """(pad id, file it came from) from the tokenizer files, or (None, None) when there are none."""
  for directory in dict.fromkeys((model_dir, root)):
    found = _pad_id_in(directory)
    if found[0] is not None:
      return found
  return None, None


def _pad_id_in(directory: pathlib.Path) -> tuple[int | None, str | None]:
  tok_json = _optional_json(directory / TOKENIZER_JSON)
  padding = tok_json.get("padding")
  if isinstance(padding, dict) and _is_id(padding.get("pad_id")):
    return padding["pad_id"], str(directory / TOKENIZER_JSON)
  token = None
  for name in (TOKENIZER_CONFIG, SPECIAL_TOKENS):
    token = token or _token_text(_optional_json(directory / name).get("pad_token"))
  if token is None:
    return None, None
  tok_config = _optional_json(directory / TOKENIZER_CONFIG)
  decoder = tok_config.get("added_tokens_decoder")
  for key, entry in decoder.items() if isinstance(decoder, dict) else ():
    if _token_text(entry) == token and re.fullmatch(r"[0-9]{1,8}", key):
      return int(key), str(directory / TOKENIZER_CONFIG)
  found = _id_in_tokenizer_json(tok_json, token)
  if found is not None:
    return found, str(directory / TOKENIZER_JSON)
  if not tok_json and (directory / VOCAB_TXT).is_file():
    from xtr_jax.data.tokenizer import read_wordpiece_vocab  # noqa: PLC0415

    found = read_wordpiece_vocab(str(directory / VOCAB_TXT)).get(token)
    if found is not None:
      return found, str(directory / VOCAB_TXT)
  return None, None


def _id_in_tokenizer_json(tok_json: Mapping[str, Any], token: str) -> int | None:
  added = tok_json.get("added_tokens")
  for entry in added if isinstance(added, list) else ():
    if isinstance(entry, dict) and entry.get("content") == token and _is_id(entry.get("id")):
      return entry["id"]
  model = tok_json.get("model")
  vocab = model.get("vocab") if isinstance(model, dict) else None
  if isinstance(vocab, dict) and _is_id(vocab.get(token)):
    return vocab[token]
  if isinstance(vocab, list):  # Unigram: [[piece, score], ...], the id is the position
    for i, entry in enumerate(vocab):
      if isinstance(entry, list) and entry and entry[0] == token:
        return i
  return None


def _is_id(x: Any) -> bool:
  return isinstance(x, int) and not isinstance(x, bool) and 0 <= x < (1 << 24)


def _token_text(x: Any) -> str | None:
  if isinstance(x, dict):
    x = x.get("content")
  return x if isinstance(x, str) and x else None


def _optional_json(path: pathlib.Path) -> dict[str, Any]:
  return _read_json(path, "tokenizer file") if path.is_file() else {}


# ----------------------------------------------------------------------------- sentence-transformers


def _read_sentence_transformers(root: pathlib.Path) -> tuple[pathlib.Path, dict[str, Any]]:
  """(folder with the transformer's weights, extra) from ``modules.json`` and its modules."""
  modules_path = root / MODULES_FILE
  modules = _read_json_list(modules_path)
  if not isinstance(modules, list) or not all(
    isinstance(m, dict) and isinstance(m.get("type"), str) and isinstance(m.get("path", ""), str)
    for m in modules
  ):
    raise ValueError(f"{modules_path}: expected a list of {{'type': ..., 'path': ...}} objects")
  model_dir, extra = root, {}
  for module in modules:
    kind, sub = module["type"], module.get("path", "")
    cls = kind.rsplit(".", 1)[-1] if kind.startswith("sentence_transformers.") else kind
    if cls == "Transformer":
      model_dir = _module_dir(root, sub, modules_path)
      if not (model_dir / CONFIG_FILE).is_file():
        model_dir = root
    elif cls == "Pooling":
      extra["pooling"], extra["pooling_dim"] = _pooling(_module_dir(root, sub, modules_path))
    elif cls == "Normalize":
      extra["normalize"] = True
    else:
      raise ValueError(f"{modules_path}: module type {kind!r} is not supported")
  return model_dir, extra


def _read_json_list(path: pathlib.Path) -> Any:
  """``modules.json`` is a JSON list, which ``_read_json`` (objects only) refuses."""
  try:
    return json.loads(path.read_bytes().decode("utf-8"))
  except UnicodeDecodeError as e:
    raise ValueError(f"{path}: invalid UTF-8 at byte {e.start}") from None
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from None


def _module_dir(root: pathlib.Path, sub: str, modules_path: pathlib.Path) -> pathlib.Path:
  try:
    inside = (root / sub).resolve().is_relative_to(root.resolve())
  except (OSError, ValueError):  # e.g. an embedded NUL byte
    inside = False
  if not inside:
    raise ValueError(f"{modules_path}: module path {sub!r} leaves the folder")
  return root / sub


def _pooling(directory: pathlib.Path) -> tuple[str, Any]:
  path = directory / CONFIG_FILE
  pooling = _read_json(path, "sentence-transformers pooling config")
  modes = [k for k, v in pooling.items() if k.startswith("pooling_mode") and v is True]
  if len(modes) != 1 or modes[0] not in POOLING_MODES:
    raise ValueError(
      f"{path}: pooling modes {modes} are not supported; expected exactly one of "
      f"{sorted(POOLING_MODES)}"
    )
  return POOLING_MODES[modes[0]], pooling.get("word_embedding_dimension")


def _check_pooling_dim(extra: dict[str, Any], config: BertConfig, root: pathlib.Path) -> None:
  dim = extra.pop("pooling_dim", None)
  if dim is not None and dim != config.hidden_size:
    raise ValueError(
      f"{root}: the pooling config's word_embedding_dimension={dim!r} is not the model's "
      f"hidden_size={config.hidden_size}"
    )


# ----------------------------------------------------------------------------- export


def params_to_hf_tensors(params: Mapping[str, Any], config: BertConfig) -> dict[str, np.ndarray]:
  """Our params -> BertModel state dict (no prefix, no pooler); inverse of the import."""
  flat = flatten_params(unbox(params))
  tensors = {}
  for hf_name, ours, transpose, _ in name_map(config):
    if ours not in flat:
      raise ValueError(f"parameter {ours!r} is missing")
    value = np.asarray(flat.pop(ours))
    tensors[hf_name] = np.ascontiguousarray(value.T if transpose else value)
  if flat:
    raise ValueError(f"parameters without a BertModel name: {sorted(flat)[:10]}")
  return tensors


def save_hf_bert(
  path: str | os.PathLike,
  params: Mapping[str, Any],
  config: BertConfig,
  architecture: str = "BertModel",
  max_shard_bytes: int | None = None,
  base_config: Mapping[str, Any] | None = None,
) -> None:
  """Writes config.json + model.safetensors (or shards + index) atomically.

  Everything goes into a temporary sibling folder renamed into place when complete, so a
  crash never leaves a half-written folder that ``load_hf_bert`` would accept.
  ``base_config`` (``extra['hf']['config']`` of an import) keeps that file's other fields.
  """
  tensors = params_to_hf_tensors(params, config)
  hf_config = config_to_hf(config, architecture, base_config)
  target = pathlib.Path(path).absolute()
  target.parent.mkdir(parents=True, exist_ok=True)
  tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
  try:
    write_safetensors_dir(tmp, tensors, max_shard_bytes)
    (tmp / CONFIG_FILE).write_text(json.dumps(hf_config, indent=2) + "\n")
    replace_dir(tmp, target)
  finally:
    if tmp.exists():
      shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------- our checkpoints


def convert_hf_bert(path: str | os.PathLike, output: str, pooling: str | None = None) -> str:
  """A BERT/XLM-R (or sentence-transformers) folder -> our retrieval checkpoint; fingerprint.

  The backbone's states are used as they are (``proj_dim=0``); ``pooling`` defaults to the
  folder's own (sentence-transformers' Pooling module; else mean, as E5 and most dense
  BERT retrievers pool). The folder's tokenizer (see ``folder_tokenizer``), when it has one,
  is saved inside as tokenizer.json.
  """
  from xtr_jax.checkpoints.orbax_io import save_checkpoint  # noqa: PLC0415
  from xtr_jax.checkpoints.tokenizers import TOKENIZER_KEY  # noqa: PLC0415

  params, config, extra = load_hf_bert(path)
  pooling = pooling or extra.get("pooling", "mean")
  if pooling not in ("mean", "token"):
    raise ValueError(f"{path}: pooling {pooling!r} is not supported here (mean or token)")
  out_extra = {"proj_dim": 0, "pooling": pooling, "source": f"hf_bert:{os.path.abspath(path)}"}
  assets = {}
  tokenizer = folder_tokenizer(extra, config.vocab_size)
  if tokenizer is not None:
    config = _pad_of_tokenizer(config, tokenizer, extra)
    out_extra[TOKENIZER_KEY] = tokenizer.to_dict()
    assets[out_extra[TOKENIZER_KEY]["file"]] = tokenizer.serialize()
  return save_checkpoint(
    output, {"bert": params}, config, model_kind="retrieval", extra=out_extra, assets=assets
  )


def folder_tokenizer(extra: Mapping[str, Any], vocab_size: int | None = None):
  """The tokenizer ``load_hf_bert`` found (its ``extra``) as an ``HFTokenizer``, or None.

  A tokenizer.json is read as it is; a lone vocab.txt becomes BERT's WordPiece tokenizer
  with the options of the tokenizer_config.json beside it (see ``WORDPIECE_OPTIONS``).
  """
  from xtr_jax.data.tokenizer import HFTokenizer  # noqa: PLC0415

  if extra.get("tokenizer_file"):
    return HFTokenizer.from_file(extra["tokenizer_file"], vocab_size=vocab_size)
  if extra.get("tokenizer_vocab"):
    vocab = pathlib.Path(extra["tokenizer_vocab"])
    options = _wordpiece_options(vocab.parent / TOKENIZER_CONFIG)
    return HFTokenizer.from_wordpiece_vocab(str(vocab), vocab_size=vocab_size, **options)
  return None


def _wordpiece_options(path: pathlib.Path) -> dict[str, Any]:
  """``from_wordpiece_vocab`` arguments from a tokenizer_config.json (none when absent).

  No ``do_lower_case`` leaves the casing to the vocabulary (mBERT cased: keep case and accents).
  """
  tok_config = _optional_json(path)
  options = {}
  for key, (arg, none_ok) in WORDPIECE_OPTIONS.items():
    value = tok_config.get(key)
    if value is None and not none_ok:
      continue
    if not (isinstance(value, bool) or value is None):
      raise ValueError(f"{path}: {key}={value!r} must be true or false")
    options[arg] = value
  return options


def _pad_of_tokenizer(config: BertConfig, tokenizer: Any, extra: Mapping[str, Any]) -> BertConfig:
  """``config`` with the pad id the saved tokenizer pads with, which is what masks padding.

  Our tokenizer pads with its ``<pad>`` (XLM-R) or ``[PAD]`` (BERT) piece. When no tokenizer
  file of the folder names a pad token, the config's pad id is config.json's (``BertConfig``'s
  default 0, which is ``<s>`` in XLM-R's vocabulary): the model would then mask the real
  ``<s>`` and attend to the padding. BertModel's forward never reads that id (the attention
  mask comes from the tokenizer), so the tokenizer's is taken. XLM-R counts positions from
  the pad id, and a pad token the folder names is the folder's own: a disagreement there is
  refused.
  """
  pad_id = tokenizer.pad_id
  if pad_id == config.pad_token_id:
    return config
  source = str(extra.get("pad_token_source", CONFIG_FILE))
  if config.position_scheme == "bert" and os.path.basename(source) == CONFIG_FILE:
    return config.replace(pad_token_id=pad_id)
  tok_source = extra.get("tokenizer_file") or extra.get("tokenizer_vocab")
  piece = tokenizer.tokenizer.id_to_token(pad_id)
  raise ValueError(
    f"{source} gives pad id {config.pad_token_id} but {tok_source} pads with its "
    f"{piece} piece, id {pad_id}; they must agree (the model masks the pad id, and XLM-R numbers "
    "positions from it)"
  )


def export_checkpoint(
  ckpt: Any, output: str, max_shard_bytes: int | None = None, checkpoint_dir: str | None = None
) -> None:
  """Our BERT checkpoint -> a Hugging Face BertModel/XLMRobertaModel folder (+ tokenizer).

  A projection, if the checkpoint has one, is written as sentence-transformers' Dense
  module would need it; here it is refused instead of silently dropped.
  """
  params = ckpt.params.get("bert", ckpt.params)
  if "projection" in ckpt.params:
    raise ValueError(
      "this checkpoint has a trained projection; a BertModel folder cannot hold it "
      "(export the backbone of a proj_dim=0 checkpoint)"
    )
  arch = "XLMRobertaModel" if ckpt.config.position_scheme == "roberta" else "BertModel"
  base = (ckpt.extra.get("hf") or {}).get("config")
  save_hf_bert(output, params, ckpt.config, arch, max_shard_bytes, base_config=base)
  spec = ckpt.extra.get("tokenizer")
  if checkpoint_dir and spec and spec.get("kind") == "hf":
    from xtr_jax.data.tokenizer import load_tokenizer  # noqa: PLC0415

    load_tokenizer(spec, base_dir=checkpoint_dir).save(output)  # fingerprint checked first
