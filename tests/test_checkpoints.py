"""Checkpoint IO: orbax round trips, atomic saves, HF export bit-exactness, T5X reader, CLI."""

import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xtr_jax import cli
from xtr_jax.checkpoints import hf, orbax_io, t5x
from xtr_jax.models import config as config_lib
from xtr_jax.models import t5

TINY = dict(vocab_size=64, d_model=16, num_heads=2, d_kv=8, d_ff=24)


def _params(cfg, model_cls=t5.Transformer, seed=0):
  return orbax_io.unbox(t5.init_params(cfg, jax.random.PRNGKey(seed), model_cls))


def _all_tensors(directory: pathlib.Path) -> dict[str, np.ndarray]:
  return hf.read_safetensors_dir(directory)[0]


# ----------------------------------------------------------------------------- orbax


def test_orbax_round_trip_and_fingerprint(tmp_path):
  cfg = config_lib.tiny_config(**TINY)
  params = _params(cfg)
  fp = orbax_io.save_checkpoint(
    tmp_path / "ck", params, cfg, model_kind="mt5", extra={"vocabulary": "spm.model"}
  )
  ck = orbax_io.load_checkpoint(tmp_path / "ck")
  assert ck.config == cfg and ck.model_kind == "mt5" and ck.extra == {"vocabulary": "spm.model"}
  assert ck.fingerprint == fp == orbax_io.params_fingerprint(params)
  flat_a, flat_b = orbax_io.flatten_params(params), orbax_io.flatten_params(ck.params)
  assert flat_a.keys() == flat_b.keys()
  for k in flat_a:
    np.testing.assert_array_equal(np.asarray(flat_a[k]), flat_b[k])
  # Fingerprint: independent of dict order and boxing, sensitive to one changed value.
  boxed = t5.init_params(cfg, jax.random.PRNGKey(0))
  assert orbax_io.params_fingerprint(boxed) == fp
  reordered = orbax_io.unflatten_params(dict(reversed(list(flat_b.items()))))
  assert orbax_io.params_fingerprint(reordered) == fp
  flat_b["encoder/encoder_norm/scale"] = flat_b["encoder/encoder_norm/scale"].copy()
  flat_b["encoder/encoder_norm/scale"][3] += 1e-7
  assert orbax_io.params_fingerprint(orbax_io.unflatten_params(flat_b)) != fp


def test_mismatch_names_parameter_and_both_shapes(tmp_path):
  cfg = config_lib.tiny_config(**TINY)
  params = _params(cfg)
  bad = orbax_io.flatten_params(params)
  bad["encoder/layers_0/attention/key/kernel"] = np.zeros((16, 8), np.float32)
  del bad["encoder/encoder_norm/scale"]
  bad["encoder/extra/kernel"] = np.zeros((2,), np.float32)
  with pytest.raises(ValueError) as err:
    orbax_io.check_params_match(orbax_io.unflatten_params(bad), params, "my.ckpt")
  msg = str(err.value)
  assert "'encoder/layers_0/attention/key/kernel' has shape (16, 8) in my.ckpt" in msg
  assert "expects (16, 16)" in msg
  assert "missing parameter 'encoder/encoder_norm/scale'" in msg
  assert "unexpected parameter 'encoder/extra/kernel'" in msg
  # A checkpoint whose arrays do not fit its recorded config is refused on load.
  orbax_io.save_checkpoint(tmp_path / "ck", params, cfg.replace(d_ff=32), model_kind="mt5")
  with pytest.raises(ValueError, match=r"mlp/wi_0/kernel' has shape \(16, 24\).*\(16, 32\)"):
    orbax_io.load_checkpoint(tmp_path / "ck")


def test_missing_checkpoint_names_path(tmp_path):
  with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope")):
    orbax_io.load_checkpoint(tmp_path / "nope")
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="xtr_jax_checkpoint.json"):
    orbax_io.load_checkpoint(tmp_path / "empty")
  with pytest.raises(FileNotFoundError, match=r"model.safetensors.*" + str(tmp_path / "empty")):
    hf.read_safetensors_dir(tmp_path / "empty")
  with pytest.raises(FileNotFoundError, match=str(tmp_path / "empty" / "checkpoint")):
    t5x.read_t5x_params(tmp_path / "empty")


def test_crash_mid_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
  cfg = config_lib.tiny_config(**TINY)
  old, new = _params(cfg, seed=0), _params(cfg, seed=1)
  fp_old = orbax_io.save_checkpoint(tmp_path / "ck", old, cfg, model_kind="mt5")

  real_write = pathlib.Path.write_text

  def crash(self, *a, **k):
    if self.name == orbax_io.METADATA_FILE:
      raise KeyboardInterrupt("simulated crash after arrays were written")
    return real_write(self, *a, **k)

  monkeypatch.setattr(pathlib.Path, "write_text", crash)
  with pytest.raises(KeyboardInterrupt):
    orbax_io.save_checkpoint(tmp_path / "ck", new, cfg, model_kind="mt5")
  with pytest.raises(KeyboardInterrupt):
    orbax_io.save_checkpoint(tmp_path / "fresh", new, cfg, model_kind="mt5")
  monkeypatch.undo()
  assert orbax_io.load_checkpoint(tmp_path / "ck").fingerprint == fp_old
  assert not (tmp_path / "fresh").exists()
  assert sorted(os.listdir(tmp_path)) == ["ck"]  # no temporary leftovers


# ----------------------------------------------------------------------------- HF export


def _hf_folder(
  tmp_path, arch: str, untied: bool, aliases: bool = False, dtype: str = "float32"
) -> pathlib.Path:
  """A HF folder written by our exporter from random weights (independent of torch)."""
  gated = arch.startswith("MT5")
  cfg = config_lib.tiny_config(
    **TINY, feed_forward_proj="gated-gelu" if gated else "relu", tie_word_embeddings=not untied
  )
  full = "Encoder" not in arch
  params = _params(cfg, t5.Transformer if full else t5.T5EncoderModel)
  if dtype != "float32":
    cfg = cfg.replace(param_dtype=dtype)
    params = jax.tree_util.tree_map(lambda x: np.asarray(x).astype(jnp.dtype(dtype)), params)
  out = tmp_path / f"src_{arch}"
  hf.save_hf(out, params, cfg, "mt5" if full else "mt5_encoder")
  if aliases:  # transformers 4.x files also store the tied embedding copies
    from safetensors.numpy import save_file

    tensors = _all_tensors(out)
    tensors["encoder.embed_tokens.weight"] = tensors["shared.weight"]
    if full:
      tensors["decoder.embed_tokens.weight"] = tensors["shared.weight"]
    save_file(tensors, str(out / "model.safetensors"))
  conf = json.loads((out / "config.json").read_text())
  conf["architectures"] = [arch]
  conf["model_type"] = "mt5" if gated else "t5"
  (out / "config.json").write_text(json.dumps(conf))
  return out


@pytest.mark.parametrize(
  "arch,untied,aliases,shard,dtype",
  [
    ("MT5ForConditionalGeneration", True, False, None, "float32"),
    ("MT5ForConditionalGeneration", True, True, 3000, "bfloat16"),
    ("T5ForConditionalGeneration", False, False, None, "float32"),
    ("MT5EncoderModel", False, True, 2500, "float32"),
  ],
)
def test_hf_round_trip_is_bit_exact(tmp_path, arch, untied, aliases, shard, dtype):
  src = _hf_folder(tmp_path, arch, untied, aliases, dtype)
  params, cfg, kind, extra = hf.load_hf(src)
  assert cfg.param_dtype == dtype
  assert cfg.tie_word_embeddings == (arch.startswith("T5For"))
  # Through our orbax format and back out to HF.
  orbax_io.save_checkpoint(tmp_path / "ours", params, cfg, model_kind=kind, extra=extra)
  ck = orbax_io.load_checkpoint(tmp_path / "ours")
  hf.save_hf(tmp_path / "out", ck.params, ck.config, ck.model_kind, ck.extra, shard)
  a, b = _all_tensors(src), _all_tensors(tmp_path / "out")
  assert sorted(a) == sorted(b)
  for k in a:
    assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
    assert a[k].tobytes() == b[k].tobytes(), k
  if shard:
    # The sharded folder imports to the same weights.
    again = hf.load_hf(tmp_path / "out")[0]
    assert orbax_io.params_fingerprint(again) == orbax_io.params_fingerprint(params)
    index = json.loads((tmp_path / "out" / hf.INDEX_FILE).read_text())
    assert len(set(index["weight_map"].values())) > 1
    assert not (tmp_path / "out" / hf.WEIGHTS_FILE).exists()
    assert index["metadata"]["total_size"] == sum(v.nbytes for v in b.values())
  conf_a = json.loads((src / "config.json").read_text())
  conf_b = json.loads((tmp_path / "out" / "config.json").read_text())
  assert conf_b["architectures"] == [arch]
  assert {k: conf_b[k] for k in conf_a} == conf_a


def test_hf_import_maps_kernels_transposed(tmp_path):
  src = _hf_folder(tmp_path, "MT5ForConditionalGeneration", True)
  tensors = _all_tensors(src)
  params, *_ = hf.load_hf(src)
  q = tensors["encoder.block.1.layer.0.SelfAttention.q.weight"]  # [out, in]
  np.testing.assert_array_equal(params["encoder"]["layers_1"]["attention"]["query"]["kernel"], q.T)
  rel = tensors["decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
  np.testing.assert_array_equal(params["decoder"]["relpos_bias"]["rel_embedding"], rel.T)
  np.testing.assert_array_equal(
    params["decoder"]["logits_dense"]["kernel"], tensors["lm_head.weight"].T
  )


def test_hf_errors_name_file_and_tensor(tmp_path):
  src = _hf_folder(tmp_path, "MT5ForConditionalGeneration", True)
  tensors = _all_tensors(src)
  from safetensors.numpy import save_file

  del tensors["decoder.block.1.layer.2.DenseReluDense.wo.weight"]
  save_file(tensors, str(src / "model.safetensors"))
  with pytest.raises(ValueError, match=r"decoder.block.1.layer.2.DenseReluDense.wo.weight"):
    hf.load_hf(src)
  conf = json.loads((src / "config.json").read_text())
  (src / "config.json").write_text(json.dumps({**conf, "feed_forward_proj": "gated-silu"}))
  with pytest.raises(ValueError, match=r"config.json: feed_forward_proj='gated-silu'"):
    hf.load_hf(src)
  (src / "config.json").write_text("{\n  bad")
  with pytest.raises(ValueError, match=r"config.json: invalid JSON at line 2"):
    hf.load_hf(src)


# ----------------------------------------------------------------------------- T5X


def _write_t5x(directory: pathlib.Path, params: dict, inline: set[str]) -> None:
  """A T5X-format checkpoint (format version 2, as t5x_retrieval's test data)."""
  import tensorstore as ts
  from flax import serialization

  directory.mkdir(parents=True)
  target = {}
  for name, value in orbax_io.flatten_params(params).items():
    value = np.asarray(value)
    if name in inline:
      target[name] = value
      continue
    rel = "target." + name.replace("/", ".")
    spec = {
      "driver": "zarr",
      "kvstore": {"driver": "file", "path": str(directory / rel)},
      "metadata": {
        "shape": list(value.shape),
        "chunks": list(value.shape),
        "dtype": "<f4",
        "compressor": {"id": "gzip", "level": 1},
      },
    }
    ts.open(spec, create=True).result().write(value).result()
    target[name] = {
      "driver": "zarr",
      "kvstore": {"driver": "gfile", "path": rel},
      "metadata": spec["metadata"],
    }
  tree = {
    "version": 2,
    "optimizer": {
      "target": orbax_io.unflatten_params(target),
      "state": {"step": np.asarray(7, np.int32), "param_states": {"x": np.zeros(3)}},
    },
  }
  (directory / "checkpoint").write_bytes(serialization.msgpack_serialize(tree))


def test_synthetic_t5x_checkpoint_round_trip(tmp_path):
  cfg = config_lib.tiny_config(**TINY, num_decoder_layers=3)
  params = _params(cfg)
  inline = {"encoder/encoder_norm/scale", "decoder/relpos_bias/rel_embedding"}
  _write_t5x(tmp_path / "t5x", params, inline)
  # A relative path with '..' (e.g. ../shared/data/...) works too.
  got, got_cfg, kind, _ = t5x.load_t5x(os.path.relpath(tmp_path / "t5x"))
  assert kind == "mt5"
  assert got_cfg == cfg.replace(dropout_rate=0.1)  # dropout is not in the weights
  a, b = orbax_io.flatten_params(params), orbax_io.flatten_params(got)
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(np.asarray(a[k]), b[k])
  # A given config that disagrees with the weights is refused with the parameter named.
  with pytest.raises(ValueError, match=r"token_embedder/embedding' has shape \(64, 16\)"):
    t5x.load_t5x(tmp_path / "t5x", cfg.replace(vocab_size=128))
  # A missing array folder is named.
  import shutil

  shutil.rmtree(tmp_path / "t5x" / "target.encoder.layers_1.mlp.wo.kernel")
  with pytest.raises(FileNotFoundError, match="target.encoder.layers_1.mlp.wo.kernel"):
    t5x.load_t5x(tmp_path / "t5x")


def test_real_t5x_fixture_runs_encoder(shared_data):
  path = shared_data / "t5x_checkpoint_fixture" / "test_de_t5_tiny.checkpoint_1000"
  params, cfg, kind, extra = t5x.load_t5x(path)
  assert (cfg.num_encoder_layers, cfg.num_heads, cfg.d_kv, cfg.d_model, cfg.d_ff) == (2, 2, 2, 4, 8)
  assert cfg.feed_forward_proj == "relu" and kind == "retrieval" and extra["proj_dim"] == 768
  # Every parameter in the checkpoint is consumed by the model and vice versa.
  model = orbax_io.build_model(cfg, kind, extra)
  ids = jnp.asarray([[37, 5, 912, 1, 0, 0], [8, 1, 0, 0, 0, 0]])
  expected = orbax_io.expected_param_shapes(cfg, kind, extra)
  assert orbax_io.flatten_params(expected).keys() == orbax_io.flatten_params(params).keys()
  vecs = model.apply({"params": params}, ids)
  assert vecs.shape == (2, 768) and bool(jnp.all(jnp.isfinite(vecs)))
  hidden = t5.T5EncoderModel(cfg).apply(
    {"params": {k: params[k] for k in ("token_embedder", "encoder")}}, ids
  )
  assert hidden.shape == (2, 6, 4) and bool(jnp.all(jnp.isfinite(hidden)))


# ----------------------------------------------------------------------------- CLI


def test_convert_cli_end_to_end(tmp_path, capsys):
  src = _hf_folder(tmp_path, "MT5ForConditionalGeneration", True)
  assert (
    cli.main(["convert", "--from", "hf", "--input", str(src), "--output", str(tmp_path / "ck")])
    == 0
  )
  out = capsys.readouterr().out
  assert "model_kind=mt5" in out and "params=" in out
  ck = orbax_io.load_checkpoint(tmp_path / "ck")
  assert ck.config.d_model == 16
  args = [
    "convert",
    "--to",
    "hf",
    "--input",
    str(tmp_path / "ck"),
    "--output",
    str(tmp_path / "hf"),
  ]
  assert cli.main([*args, "--max_shard_size", "4KB"]) == 0
  a, b = _all_tensors(src), _all_tensors(tmp_path / "hf")
  assert sorted(a) == sorted(b) and all(a[k].tobytes() == b[k].tobytes() for k in a)

  # T5X with the config from gin (max distance is not in the weights).
  cfg = config_lib.tiny_config(**TINY)
  _write_t5x(tmp_path / "t5x", _params(cfg, t5.T5EncoderModel), set())
  gin_file = tmp_path / "m.gin"
  gin_file.write_text(
    "from xtr_jax.models import config\n"
    + "".join(f"config.T5Config.{k} = {v}\n" for k, v in TINY.items())
    + "config.T5Config.num_encoder_layers = 2\nconfig.T5Config.num_decoder_layers = 2\n"
    + "config.T5Config.relative_attention_max_distance = 64\n"
  )
  argv = ["convert", "--from", "t5x", "--input", str(tmp_path / "t5x"), "--output"]
  assert cli.main([*argv, str(tmp_path / "ck2"), "--gin_file", str(gin_file)]) == 0
  ck2 = orbax_io.load_checkpoint(tmp_path / "ck2")
  assert ck2.model_kind == "mt5_encoder" and ck2.config.relative_attention_max_distance == 64

  # Errors are reported with the path, exit code 2.
  assert (
    cli.main([*argv[:3], "--input", str(tmp_path / "none"), "--output", str(tmp_path / "x")]) == 2
  )
  assert str(tmp_path / "none") in capsys.readouterr().err
