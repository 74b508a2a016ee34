"""Numerical parity of our Flax BertEncoder with transformers' BertModel / XLMRobertaModel.

The reference folders are written by transformers itself (save_pretrained, safetensors), so
the importer is tested against real HF files, not against our own exporter.
"""

import json
import pathlib
import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.core import meta

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from safetensors.numpy import load_file, save_file  # noqa: E402

from xtr_jax import partitioning  # noqa: E402
from xtr_jax.checkpoints import hf, hf_bert  # noqa: E402
from xtr_jax.checkpoints.orbax_io import params_fingerprint  # noqa: E402
from xtr_jax.models.bert import BertEncoder, bert_config  # noqa: E402

TOL = 1e-4
LENGTHS = (24, 17, 5)
TINY = dict(
  vocab_size=100,
  hidden_size=32,
  num_hidden_layers=2,
  num_attention_heads=4,
  intermediate_size=48,
  max_position_embeddings=64,
)
MODELS = {
  "bert": (transformers.BertModel, transformers.BertConfig),
  "xlmr": (transformers.XLMRobertaModel, transformers.XLMRobertaConfig),
}


def _save(model, path: pathlib.Path, **kwargs) -> pathlib.Path:
  """Spread weights (default init is tiny) so mistakes show up; LayerNorm scales around 1:
  around 0 they squash the token states to almost the same vector for every token."""
  torch.manual_seed(0)
  with torch.no_grad():
    for name, p in model.named_parameters():
      p.normal_(0.0, 0.3)
      if "LayerNorm.weight" in name:
        p.add_(1.0)
  model.save_pretrained(str(path), safe_serialization=True, **kwargs)
  return path


@pytest.fixture(scope="module", params=sorted(MODELS))
def hf_folder(request, tmp_path_factory):
  """(kind, folder saved by transformers, the reloaded torch model in eval mode)."""
  model_cls, cfg_cls = MODELS[request.param]
  path = _save(model_cls(cfg_cls(**TINY)), tmp_path_factory.mktemp(request.param) / "hf")
  return request.param, path, model_cls.from_pretrained(str(path)).eval()


def _batch(pad_id: int, vocab: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """3 rows of different lengths, padded with ``pad_id``; real ids avoid the special ids."""
  rng = np.random.default_rng(seed)
  length = max(LENGTHS)
  mask = (np.arange(length)[None] < np.array(LENGTHS)[:, None]).astype(np.int64)
  ids = rng.integers(3, vocab, size=mask.shape)
  return np.where(mask > 0, ids, pad_id), mask


def _torch_states(model, ids, mask) -> np.ndarray:
  with torch.no_grad():
    out = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))
  return out.last_hidden_state.numpy()


def _masked_max_diff(a, b, mask) -> float:
  diff = np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32))
  return float(np.max(diff * np.asarray(mask)[..., None]))


def test_matches_transformers_float32(hf_folder):
  kind, path, ref = hf_folder
  params, config, extra = hf_bert.load_hf_bert(path)
  assert config.position_scheme == ("roberta" if kind == "xlmr" else "bert")
  assert config.pad_token_id == ref.config.pad_token_id
  assert extra["dropped_tensors"] == ["pooler.dense.bias", "pooler.dense.weight"]
  ids, mask = _batch(config.pad_token_id, config.vocab_size)
  want = _torch_states(ref, ids, mask)
  encode = jax.jit(lambda p, i, m: BertEncoder(config).apply({"params": p}, i, m))
  got = encode(params, jnp.asarray(ids), jnp.asarray(mask))
  assert got.shape == (*ids.shape, config.hidden_size) and got.dtype == jnp.float32
  diff = _masked_max_diff(got, want, mask)
  print(f"{kind}: float32 max abs diff {diff:.2e}")
  assert diff < TOL
  # Without a mask, the mask is derived from the pad id: same states.
  no_mask = BertEncoder(config).apply({"params": params}, jnp.asarray(ids))
  assert _masked_max_diff(no_mask, got, mask) < 1e-5  # jit vs eager rounding only


def test_bfloat16_compute_is_close(hf_folder):
  _, path, ref = hf_folder
  params, config, _ = hf_bert.load_hf_bert(path)
  ids, mask = _batch(config.pad_token_id, config.vocab_size)
  want = _torch_states(ref, ids, mask)
  got = BertEncoder(config.replace(dtype="bfloat16")).apply({"params": params}, ids, mask)
  assert got.dtype == jnp.bfloat16
  assert np.all(np.isfinite(np.asarray(got, np.float32)))
  assert _masked_max_diff(got, want, mask) < 0.1 * float(np.max(np.abs(want)))


def test_dropout_is_active_and_reproducible(hf_folder):
  _, path, _ = hf_folder
  params, config, _ = hf_bert.load_hf_bert(path)
  assert config.hidden_dropout_prob == 0.1  # transformers' default, kept from config.json
  ids, mask = _batch(config.pad_token_id, config.vocab_size)
  model = BertEncoder(config)
  run = lambda seed: model.apply(
    {"params": params}, ids, mask, deterministic=False, rngs={"dropout": jax.random.key(seed)}
  )
  clean = model.apply({"params": params}, ids, mask)
  a, b, c = run(0), run(0), run(1)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert _masked_max_diff(a, clean, mask) > 1e-2
  assert _masked_max_diff(a, c, mask) > 1e-2


def test_sharded_folder_imports_the_same(hf_folder, tmp_path):
  kind, path, ref = hf_folder
  sharded = tmp_path / "sharded"
  ref.save_pretrained(str(sharded), safe_serialization=True, max_shard_size="20KB")
  assert (sharded / hf.INDEX_FILE).is_file() and not (sharded / hf.WEIGHTS_FILE).exists()
  params, config, _ = hf_bert.load_hf_bert(sharded)
  want_params, want_config, _ = hf_bert.load_hf_bert(path)
  assert config == want_config
  assert params_fingerprint(params) == params_fingerprint(want_params)


def test_round_trip_is_bit_exact(hf_folder, tmp_path):
  kind, path, ref = hf_folder
  params, config, extra = hf_bert.load_hf_bert(path)
  arch = ref.__class__.__name__
  original = load_file(str(path / hf.WEIGHTS_FILE))
  for shard_bytes in (None, 30_000):
    out = tmp_path / f"out_{shard_bytes}"
    hf_bert.save_hf_bert(out, params, config, arch, shard_bytes, extra["hf"]["config"])
    tensors, shards = hf.read_safetensors_dir(out)
    assert (len(shards) > 1) == (shard_bytes is not None)
    assert sorted(tensors) == sorted(k for k in original if not k.startswith("pooler."))
    for name, value in tensors.items():
      assert value.dtype == original[name].dtype, name
      assert value.tobytes() == original[name].tobytes(), name
  # Our export (no pooler) loads in transformers and computes the same token states.
  reloaded = ref.__class__.from_pretrained(str(tmp_path / "out_None")).eval()
  ids, mask = _batch(config.pad_token_id, config.vocab_size)
  assert (
    _masked_max_diff(_torch_states(reloaded, ids, mask), _torch_states(ref, ids, mask), mask) == 0
  )
  # The config survives too, with or without the imported config.json as the base.
  hf_config = json.loads((tmp_path / "out_None" / "config.json").read_text())
  assert hf_bert.config_from_hf(hf_config) == config.replace(param_dtype="float32")
  assert hf_bert.config_from_hf(hf_bert.config_to_hf(config, arch)) == config


def test_save_replaces_an_existing_folder_atomically(hf_folder, tmp_path):
  _, path, ref = hf_folder
  params, config, _ = hf_bert.load_hf_bert(path)
  out = tmp_path / "out"
  out.mkdir()
  (out / "stale.txt").write_text("old")
  hf_bert.save_hf_bert(out, params, config, ref.__class__.__name__)
  assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
  assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folders left behind


def test_masked_lm_prefix_and_head_are_handled(tmp_path):
  model = transformers.BertForMaskedLM(transformers.BertConfig(**TINY))
  path = _save(model, tmp_path / "mlm")
  params, config, extra = hf_bert.load_hf_bert(path)
  assert extra["dropped_tensors"] and all(n.startswith("cls.") for n in extra["dropped_tensors"])
  want = {f"bert.{k}": v for k, v in hf_bert.params_to_hf_tensors(params, config).items()}
  state = load_file(str(path / hf.WEIGHTS_FILE))
  for name, value in want.items():
    np.testing.assert_array_equal(value, state[name])


def _sentence_transformers(root: pathlib.Path, weights_dir: str, pooling: dict) -> None:
  modules = [
    {
      "idx": 0,
      "name": "0",
      "path": weights_dir,
      "type": "sentence_transformers.models.Transformer",
    },
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {
      "idx": 2,
      "name": "2",
      "path": "2_Normalize",
      "type": "sentence_transformers.models.Normalize",
    },
  ]
  (root / "modules.json").write_text(json.dumps(modules))
  (root / "1_Pooling").mkdir()
  (root / "1_Pooling" / "config.json").write_text(json.dumps(pooling))


def _pooling(**modes) -> dict:
  base = {"word_embedding_dimension": TINY["hidden_size"], "pooling_mode_cls_token": False}
  return {**base, "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": False, **modes}


@pytest.mark.parametrize("weights_dir", ["", "0_Transformer"])
def test_sentence_transformers_folder(hf_folder, tmp_path, weights_dir):
  _, path, _ = hf_folder
  root = tmp_path / "st"
  shutil.copytree(path, root / weights_dir, dirs_exist_ok=True)
  _sentence_transformers(root, weights_dir, _pooling(pooling_mode_mean_tokens=True))
  params, config, extra = hf_bert.load_hf_bert(root)
  assert extra["pooling"] == "mean" and extra["normalize"] is True
  want_params, want_config, _ = hf_bert.load_hf_bert(path)
  assert config == want_config and params_fingerprint(params) == params_fingerprint(want_params)
  (root / "1_Pooling" / "config.json").write_text(json.dumps(_pooling(pooling_mode_cls_token=True)))
  assert hf_bert.load_hf_bert(root)[2]["pooling"] == "cls"


def test_pad_id_comes_from_the_tokenizer(tmp_path):
  """multilingual-E5-small: a BertModel whose config.json says pad 0, tokenizer pads with 1."""
  path = _save(transformers.BertModel(transformers.BertConfig(**TINY)), tmp_path / "me5")
  assert json.loads((path / "config.json").read_text())["pad_token_id"] == 0
  added = {"0": {"content": "<s>"}, "1": {"content": "<pad>"}, "2": {"content": "</s>"}}
  tok_config = {"pad_token": "<pad>", "added_tokens_decoder": added}
  (path / "tokenizer_config.json").write_text(json.dumps(tok_config))
  _, config, extra = hf_bert.load_hf_bert(path)
  assert config.pad_token_id == 1 and extra["pad_token_source"].endswith("tokenizer_config.json")
  assert "tokenizer_file" not in extra
  (path / "tokenizer_config.json").unlink()
  (path / "special_tokens_map.json").write_text(json.dumps({"pad_token": {"content": "<pad>"}}))
  tokens = [{"id": 0, "content": "<s>"}, {"id": 1, "content": "<pad>"}]
  (path / "tokenizer.json").write_text(json.dumps({"added_tokens": tokens, "padding": None}))
  _, config, extra = hf_bert.load_hf_bert(path)
  assert config.pad_token_id == 1 and extra["tokenizer_file"] == str(path / "tokenizer.json")


def _one_line_error(path, match: str) -> str:
  with pytest.raises(ValueError, match=match) as info:
    hf_bert.load_hf_bert(path)
  message = str(info.value)
  assert "\n" not in message, message
  return message


def _edit_config(path: pathlib.Path, **changes) -> None:
  cfg = json.loads((path / "config.json").read_text())
  (path / "config.json").write_text(json.dumps({**cfg, **changes}))


@pytest.fixture()
def bert_copy(tmp_path_factory):
  path = tmp_path_factory.mktemp("bad") / "hf"
  return _save(transformers.BertModel(transformers.BertConfig(**TINY)), path)


@pytest.mark.parametrize(
  "change,match",
  [
    (
      dict(intermediate_size=64),
      r"config.json says intermediate_size=64 but encoder.layer.0.intermediate.dense.weight "
      r"in \S+model.safetensors is \[48, 32\]",
    ),
    (
      dict(hidden_size=48, num_attention_heads=4),
      r"config.json says hidden_size=48 but embeddings.word_embeddings.weight in \S+ is \[100, 32\]",
    ),
    (
      dict(num_hidden_layers=3),
      r"config.json says num_hidden_layers=3 but \S+ has no encoder.layer.2",
    ),
    (
      dict(num_hidden_layers=1),
      r"config.json says num_hidden_layers=1 but \S+ has encoder.layer.1",
    ),
    (dict(position_embedding_type="relative_key"), r"config.json: position_embedding_type="),
    (dict(hidden_act="silu"), r"config.json: hidden_act='silu' is not supported"),
    (dict(model_type="t5"), r"config.json: model_type='t5' is not supported"),
    (dict(layer_norm_eps=-1.0), r"config.json: layer_norm_eps=-1.0 must be"),
    (dict(hidden_size="32"), r"config.json: .*'hidden_size' must be int"),
  ],
)
def test_config_errors_name_file_and_field(bert_copy, change, match):
  _edit_config(bert_copy, **change)
  assert str(bert_copy) in _one_line_error(bert_copy, match)


def test_missing_tensor_is_named(bert_copy):
  tensors = load_file(str(bert_copy / hf.WEIGHTS_FILE))
  del tensors["encoder.layer.1.output.dense.bias"]
  save_file(tensors, str(bert_copy / hf.WEIGHTS_FILE), metadata={"format": "pt"})
  message = _one_line_error(bert_copy, r"tensor 'encoder.layer.1.output.dense.bias' is missing")
  assert str(bert_copy) in message


def test_sharded_mismatch_names_the_shard(bert_copy):
  model = transformers.BertModel.from_pretrained(str(bert_copy))
  model.save_pretrained(str(bert_copy), safe_serialization=True, max_shard_size="20KB")
  (bert_copy / hf.WEIGHTS_FILE).unlink()
  _edit_config(bert_copy, intermediate_size=64)
  _one_line_error(bert_copy, r"intermediate.dense.weight in \S+model-\d+-of-\d+.safetensors is")


def test_unsupported_pooling_is_refused(bert_copy):
  _sentence_transformers(bert_copy, "", _pooling(pooling_mode_max_tokens=True))
  _one_line_error(bert_copy, r"1_Pooling/config.json: pooling modes \['pooling_mode_max_tokens'\]")


def test_xlmr_pad_disagreement_is_refused(tmp_path):
  path = _save(transformers.XLMRobertaModel(transformers.XLMRobertaConfig(**TINY)), tmp_path / "x")
  (path / "tokenizer_config.json").write_text(
    json.dumps({"pad_token": "[PAD]", "added_tokens_decoder": {"0": {"content": "[PAD]"}}})
  )
  _one_line_error(
    path, r"tokenizer_config.json pads with id 0 but \S+config.json says pad_token_id=1"
  )


def _boxed_leaves(tree) -> list:
  return jax.tree_util.tree_leaves(tree, is_leaf=lambda x: isinstance(x, meta.AxisMetadata))


def test_every_parameter_has_logical_axes_and_shards():
  config = bert_config("tiny", vocab_size=128)
  model = BertEncoder(config)
  ids = jnp.ones((8, 16), jnp.int32)
  boxed = model.init(jax.random.key(0), ids)["params"]
  leaves = _boxed_leaves(boxed)
  assert leaves and all(isinstance(x, nn.LogicallyPartitioned) for x in leaves)
  assert all(len(x.names) == x.value.ndim for x in leaves)
  specs = jax.tree_util.tree_leaves(
    nn.get_partition_spec(boxed), is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec)
  )
  assert len(specs) == len(leaves)
  mesh = partitioning.create_mesh((2, 4))
  rules = partitioning.logical_axis_rules()
  shardings = partitioning.param_shardings(boxed, mesh, rules)
  params = jax.device_put(meta.unbox(boxed), shardings)
  kernel = params["layers_0"]["intermediate"]["kernel"]
  assert kernel.sharding.spec == jax.sharding.PartitionSpec(None, "model")
  assert len(kernel.addressable_shards) == 8 and kernel.addressable_shards[0].data.shape == (64, 32)
  ids_sharded = jax.device_put(ids, partitioning.batch_sharding(mesh))
  encode = jax.jit(lambda p, i: model.apply({"params": p}, i))
  np.testing.assert_allclose(
    np.asarray(encode(params, ids_sharded)), np.asarray(encode(meta.unbox(boxed), ids)), atol=1e-5
  )


def test_jax_devices_are_emulated():
  assert jax.device_count() == 8


@pytest.mark.parametrize("scheme,pad,limit", [("bert", 0, 16), ("roberta", 1, 14)])
def test_too_long_inputs_are_refused(scheme, pad, limit):
  """Positions past the table would be looked up as NaN by jnp.take: refused at trace time."""
  config = bert_config("tiny", position_scheme=scheme, pad_token_id=pad, max_position_embeddings=16)
  model = BertEncoder(config)
  params = model.init(jax.random.key(0), jnp.full((1, limit), 5))
  assert np.all(np.isfinite(np.asarray(model.apply(params, jnp.full((1, limit), 5)))))
  with pytest.raises(ValueError, match=f"input length {limit + 1} exceeds the {limit} positions"):
    model.apply(params, jnp.full((1, limit + 1), 5))
