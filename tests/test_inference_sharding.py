"""Inference places parameters by the training's logical axis rules (8 emulated devices).

The device count comes from conftest (``--xla_force_host_platform_device_count=8`` before
JAX is imported). An encoder split 8 ways holds under half its parameters on each device
and encodes exactly what the same module computes unsharded on one device.
"""

import flax.linen as nn
import jax
import numpy as np
import pytest

from xtr_jax import partitioning
from xtr_jax.index.encode import TokenEncoder
from xtr_jax.models import t5
from xtr_jax.models.bert import bert_config
from xtr_jax.models.config import tiny_config
from xtr_jax.models.xtr import RetrievalEncoder

BACKBONES = {
  "t5": lambda: tiny_config(num_encoder_layers=2, d_ff=256),
  "bert": lambda: bert_config("tiny", intermediate_size=256),
}


def _ids(config, rows=8, length=12, seed=0):
  rng = np.random.default_rng(seed)
  ids = rng.integers(3, 500, (rows, length)).astype(np.int32)
  for i in range(rows):  # ragged texts: padding after a few tokens
    ids[i, 4 + i % 7 :] = config.pad_token_id
  return ids


def _params(module, ids):
  return jax.device_get(nn.meta.unbox(module.init(jax.random.key(1), ids[:1])["params"]))


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_encoder_split_over_8_devices_equals_unsharded(backbone):
  assert jax.device_count() == 8
  config = BACKBONES[backbone]()
  ids = _ids(config)
  module = RetrievalEncoder(config, proj_dim=32)
  params = _params(module, ids)
  total = sum(x.nbytes for x in jax.tree.leaves(params))

  encoder = TokenEncoder(params, config, proj_dim=32, model_parallel=8)
  per_device = partitioning.param_bytes_per_device(encoder.params)
  assert len(per_device) == 8
  assert max(per_device.values()) < total / 2, (max(per_device.values()), total)
  if backbone == "bert":
    table = encoder.params["bert"]["embeddings"]["word_embeddings"]["embedding"]
  else:
    table = encoder.params["token_embedder"]["embedding"]
  assert table.addressable_shards[0].data.shape == (config.vocab_size // 8, table.shape[1])

  got = encoder(ids)
  one = jax.devices()[0]
  apply = jax.jit(lambda p, x: module.apply({"params": p}, x))
  want = apply(jax.device_put(params, one), jax.device_put(ids, one))
  want = np.asarray(want).astype(np.float16)
  assert got.shape == want.shape and got.dtype == np.float16
  np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), atol=2e-3)


def test_data_and_model_axes_together_and_token_lists():
  config = BACKBONES["t5"]()
  ids = _ids(config)
  params = _params(RetrievalEncoder(config, proj_dim=32), ids)
  full = TokenEncoder(params, config, proj_dim=32, model_parallel=1)
  split = TokenEncoder(params, config, proj_dim=32, model_parallel=4)  # 2 replicas x 4
  assert split.num_devices == 2 and split.round_batch(3) == 4 and full.round_batch(3) == 8
  texts = [[5, 6, 7, 1], [9, 1], [11, 12, 13, 14, 15, 1]]
  a = full.encode_tokens(texts, batch_size=8, max_length=8, buckets=(8,))
  b = split.encode_tokens(texts, batch_size=8, max_length=8, buckets=(8,))
  for x, y in zip(a, b):
    assert x.shape == y.shape
    np.testing.assert_allclose(x.astype(np.float32), y.astype(np.float32), atol=2e-3)


def test_generation_params_follow_the_rules_and_uneven_dims_replicate():
  config = tiny_config(vocab_size=510)  # 510 rows do not split 4 ways: the rows replicate
  ids = _ids(config)
  module = t5.Transformer(config)
  params = jax.device_get(nn.meta.unbox(module.init(jax.random.key(0), ids[:1], ids[:1])["params"]))
  mesh = partitioning.inference_mesh(4, jax.devices()[:4])
  placed = partitioning.shard_params_for_inference(
    params, module, mesh, example_inputs=(ids[:1], ids[:1])
  )
  specs = jax.tree.map(lambda a: tuple(a.sharding.spec), placed)
  layer = specs["encoder"]["layers_0"]
  assert layer["mlp"]["wi_0"]["kernel"] == (None, "model")  # (embed, mlp)
  assert layer["attention"]["out"]["kernel"] == ("model", None)  # (joined_kv, embed)
  assert specs["token_embedder"]["embedding"] == (None, None)  # vocab 510 % 4 != 0
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(placed)):
    np.testing.assert_array_equal(a, np.asarray(b))
  with pytest.raises(ValueError, match="model_parallel=3 does not divide 8 devices"):
    partitioning.inference_mesh(3)
