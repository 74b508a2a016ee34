"""Mesh, logical-axis shardings, and one sharded train step against a single device."""

import jax
import numpy as np
import pytest

from xtr_jax import partitioning
from xtr_jax.models.config import tiny_config
from xtr_jax.training import optimizers, trainer


def _batch(kind, seed=0, b=8):
  rng = np.random.default_rng(seed)
  if kind == "xqg":
    enc = rng.integers(3, 512, (b, 10)).astype(np.int32)
    enc[:, 7:] = 0
    tgt = rng.integers(3, 512, (b, 6)).astype(np.int32)
    tgt[:, 4:] = 0
    dec = np.concatenate([np.zeros((b, 1), np.int32), tgt[:, :-1]], 1)
    return {
      "encoder_input_tokens": enc,
      "decoder_input_tokens": dec,
      "decoder_target_tokens": tgt,
      "decoder_loss_weights": (tgt != 0).astype(np.int32),
    }
  q = rng.integers(3, 512, (b, 6)).astype(np.int32)
  q[:, 4:] = 0
  p = rng.integers(3, 512, (b, 12)).astype(np.int32)
  p[:, 9:] = 0
  neg = rng.integers(3, 512, (b, 1, 12)).astype(np.int32)
  neg[..., 10:] = 0
  return {"query_tokens": q, "passage_tokens": p, "negative_tokens": neg}


def _trainer(kind, mesh_shape, microbatches=1, dropout=0.0):
  config = tiny_config(dropout_rate=dropout, num_encoder_layers=1, num_decoder_layers=1)
  task = trainer.ModelTask(config, kind=kind, k_train=16)
  schedule = optimizers.learning_rate_schedule(1e-2, "constant", warmup_steps=0)
  tx = optimizers.make_optimizer(schedule, name="adafactor")
  devices = jax.devices()[: int(np.prod(mesh_shape))]
  mesh = partitioning.create_mesh(mesh_shape, devices=devices)
  return trainer.Trainer(task, tx, mesh, seed=0, microbatches=microbatches)


def test_param_shardings_follow_the_rules():
  t = _trainer("xtr", (4, 2))
  specs = jax.tree.map(lambda s: tuple(s.spec), t.param_shardings)
  layer = specs["encoder"]["layers_0"]
  assert layer["attention"]["query"]["kernel"] == (None, "model")  # (embed, joined_kv)
  assert layer["attention"]["out"]["kernel"] == ("model", None)  # (joined_kv, embed)
  assert layer["mlp"]["wi_0"]["kernel"] == (None, "model")  # (embed, mlp)
  assert specs["token_embedder"]["embedding"] == ("model", None)  # (vocab, embed)
  assert specs["projection"]["kernel"] == (None, None)  # (embed, kv)
  state = t.init_state()
  emb = state["params"]["token_embedder"]["embedding"]
  assert emb.addressable_shards[0].data.shape == (256, 64)  # vocab split over 2 model devices


@pytest.mark.parametrize("kind", ["xtr", "xqg"])
def test_sharded_step_equals_single_device(kind):
  batch = _batch(kind)
  results = []
  for shape in [(1, 1), (4, 2)]:
    t = _trainer(kind, shape, dropout=0.1)  # dropout keys must not depend on the mesh
    state = t.init_state()
    for _ in range(2):
      state, metrics = t.train_step(state, batch)
    results.append((jax.device_get(state["params"]), float(metrics["loss"])))
  (p1, l1), (p8, l8) = results
  assert np.isfinite(l1)
  np.testing.assert_allclose(l8, l1, rtol=1e-5, atol=1e-5)
  for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8)):
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_microbatches_average_the_microbatch_gradients():
  batch = _batch("xqg")
  t1 = _trainer("xqg", (2, 1))
  t2 = _trainer("xqg", (2, 1), microbatches=2)
  params = jax.device_get(t1.init_state()["params"])
  rng = jax.random.key(0)
  halves = [{k: v[:4] for k, v in batch.items()}, {k: v[4:] for k, v in batch.items()}]
  grads = jax.jit(t1._grads)
  manual = [grads(params, h, jax.random.fold_in(rng, i))[2] for i, h in enumerate(halves)]
  expected = jax.tree.map(lambda a, b: (a + b) / 2, *manual)
  got = jax.jit(t2._grads)(params, batch, rng)[2]
  for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(got)):
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_mesh_and_batch_errors():
  with pytest.raises(ValueError, match="does not divide"):
    partitioning.create_mesh((3, -1))
  with pytest.raises(ValueError, match="needs 16 devices"):
    partitioning.create_mesh((8, 2))
  mesh = partitioning.create_mesh((4, 2))
  assert dict(mesh.shape) == {"data": 4, "model": 2}
  with pytest.raises(ValueError, match="'query_tokens' has 6 rows.*'data' axis of size 4"):
    partitioning.global_batch({"query_tokens": np.zeros((6, 3), np.int32)}, mesh)
