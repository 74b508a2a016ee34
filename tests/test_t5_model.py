"""Model-level properties of the Flax mT5 that the parity tests do not cover."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xtr_jax.models import t5, xtr
from xtr_jax.models.config import T5Config, mt5_config, tiny_config

KNOWN_AXES = {"vocab", "embed", "mlp", "heads", "kv", "joined_kv", "relpos_buckets"}


@pytest.mark.parametrize(
  "model_cls", [t5.Transformer, t5.T5EncoderModel, xtr.RetrievalEncoder], ids=lambda c: c.__name__
)
def test_every_parameter_has_logical_axes(model_cls):
  params = t5.init_params(tiny_config(), jax.random.PRNGKey(0), model_cls)
  leaves = jax.tree_util.tree_leaves_with_path(
    params, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned)
  )
  assert leaves
  for path, leaf in leaves:
    assert isinstance(leaf, nn.LogicallyPartitioned), jax.tree_util.keystr(path)
    assert len(leaf.names) == leaf.value.ndim
    assert set(leaf.names) <= KNOWN_AXES, (jax.tree_util.keystr(path), leaf.names)


def test_relpos_is_one_table_per_stack_and_mt5_head_untied():
  params = nn.unbox(t5.init_params(tiny_config(), jax.random.PRNGKey(0)))
  assert params["encoder"]["relpos_bias"]["rel_embedding"].shape == (4, 32)
  assert "relpos_bias" not in params["encoder"]["layers_0"]
  assert params["decoder"]["logits_dense"]["kernel"].shape == (64, 512)
  tied = nn.unbox(
    t5.init_params(
      tiny_config(tie_word_embeddings=True, feed_forward_proj="relu"), jax.random.PRNGKey(0)
    )
  )
  assert "logits_dense" not in tied["decoder"]
  assert set(tied["encoder"]["layers_0"]["mlp"]) == {"wi", "wo"}


def test_bucket_function_known_values():
  # Hand-checked values of T5's scheme: exact buckets below max_exact, log-spaced above,
  # future positions in the upper half when bidirectional, clipped at the last bucket.
  rel = np.array([0, 1, 7, 8, 12, 16, 127, 500, -1, -8, -500])
  bi = t5.relative_position_bucket(rel, True, 32, 128)
  assert bi.tolist() == [0, 17, 23, 24, 25, 26, 31, 31, 1, 8, 15]
  causal = t5.relative_position_bucket(-np.array([0, 1, 15, 16, 32, 200]), False, 32, 128)
  assert causal.tolist() == [0, 1, 15, 16, 21, 31]  # 16 + int(log(2)/log(8) * 16) = 21


def test_padding_does_not_change_real_positions():
  cfg = tiny_config()
  model = t5.Transformer(cfg)
  params = nn.unbox(t5.init_params(cfg, jax.random.PRNGKey(1)))
  ids = jnp.array([[5, 6, 7, 1]])
  padded = jnp.array([[5, 6, 7, 1, 0, 0, 0]])
  a = model.apply({"params": params}, ids, method=t5.Transformer.encode)
  b = model.apply({"params": params}, padded, method=t5.Transformer.encode)
  np.testing.assert_allclose(np.asarray(a)[0], np.asarray(b)[0, :4], atol=1e-5)


def test_bfloat16_compute_runs_close_to_float32():
  cfg = tiny_config()
  params = nn.unbox(t5.init_params(cfg, jax.random.PRNGKey(2)))
  ids = jnp.array([[5, 6, 7, 8, 1]])
  f32 = t5.Transformer(cfg).apply({"params": params}, ids, ids)
  bf16 = t5.Transformer(cfg.replace(dtype="bfloat16")).apply({"params": params}, ids, ids)
  assert bf16.dtype == jnp.bfloat16
  assert np.abs(np.asarray(bf16, np.float32) - np.asarray(f32)).max() < 0.1 * np.abs(f32).max()


def test_retrieval_encoder_outputs_unit_vectors():
  cfg = tiny_config()
  for pooling, shape in (("token", (2, 5, 128)), ("mean", (2, 128))):
    model = xtr.RetrievalEncoder(cfg, pooling=pooling)
    ids = jnp.array([[5, 6, 7, 1, 0], [9, 9, 1, 0, 0]])
    variables = model.init(jax.random.PRNGKey(0), ids)
    out = model.apply(variables, ids)
    assert out.shape == shape
    np.testing.assert_allclose(np.linalg.norm(np.asarray(out), axis=-1), 1.0, atol=1e-5)


def test_config_validation_and_sizes():
  with pytest.raises(ValueError, match="feed_forward_proj"):
    T5Config(feed_forward_proj="swish")
  with pytest.raises(ValueError, match="unknown mT5 size"):
    mt5_config("huge")
  assert mt5_config("xxl").d_ff == 10240
  assert T5Config.from_dict(tiny_config().to_dict()) == tiny_config()
