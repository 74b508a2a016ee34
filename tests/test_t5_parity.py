"""Numerical parity of our Flax mT5 with Hugging Face transformers (torch, CPU, offline).

Random tiny HF models are written with save_pretrained(safetensors) and imported through
``xtr_jax.checkpoints.hf``, so the checkpoint mapping is tested together with the maths.
"""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from safetensors.numpy import load_file, save_file  # noqa: E402

from xtr_jax.checkpoints import hf  # noqa: E402
from xtr_jax.models import t5, xtr  # noqa: E402

TOL = 1e-4
SEQ = 80  # > 64 so relative distances reach the log-spaced buckets (and the max_distance cap)


def _tiny_kwargs(**overrides):
  base = dict(
    vocab_size=128,
    d_model=32,
    d_kv=8,
    d_ff=48,
    num_layers=2,
    num_decoder_layers=3,
    num_heads=4,
    dropout_rate=0.0,
    relative_attention_num_buckets=32,
    relative_attention_max_distance=64,
  )
  base.update(overrides)
  return base


def _batch(vocab, batch=3, length=SEQ, seed=0):
  rng = np.random.default_rng(seed)
  ids = rng.integers(2, vocab, size=(batch, length)).astype(np.int64)
  lengths = [length, length - 17, 9][:batch]
  mask = np.zeros((batch, length), np.int64)
  for i, n in enumerate(lengths):
    mask[i, :n] = 1
  ids = ids * mask
  return ids, mask


def _save(model, path: pathlib.Path) -> pathlib.Path:
  torch.manual_seed(0)
  with torch.no_grad():  # spread the weights so mistakes show up (default init is tiny)
    for p in model.parameters():
      p.normal_(0.0, 0.3)
  model.save_pretrained(str(path), safe_serialization=True)
  return path


def _untie_lm_head(path: pathlib.Path, vocab: int, d_model: int):
  """Makes an mT5-like untied head (as google/mt5-* files have) and reloads it in torch."""
  tensors = load_file(str(path / "model.safetensors"))
  tensors["lm_head.weight"] = (
    np.random.default_rng(1).normal(0, 0.3, (vocab, d_model)).astype(np.float32)
  )
  save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})


def _masked_max_diff(a, b, mask):
  return float(np.max(np.abs(np.asarray(a) - np.asarray(b)) * np.asarray(mask)[..., None]))


def _full_model_parity(tmp_path, hf_cls, cfg_cls, untie=False, **cfg):
  hf_cfg = cfg_cls(**_tiny_kwargs(**cfg))
  path = _save(hf_cls(hf_cfg), tmp_path / "hf")
  if untie:
    _untie_lm_head(path, hf_cfg.vocab_size, hf_cfg.d_model)
  ref = hf_cls.from_pretrained(str(path)).eval()
  params, config, kind, _ = hf.load_hf(path)
  assert kind == "mt5"
  ids, mask = _batch(config.vocab_size)
  dec_ids = _batch(config.vocab_size, length=12, seed=3)[0]
  dec_ids[:, 0] = config.decoder_start_token_id
  with torch.no_grad():
    out = ref(
      input_ids=torch.tensor(ids),
      attention_mask=torch.tensor(mask),
      decoder_input_ids=torch.tensor(dec_ids),
    )
  model = t5.Transformer(config)
  encode = jax.jit(lambda p, i, m: model.apply({"params": p}, i, m, method="encode"))
  encoded = encode(params, jnp.asarray(ids), jnp.asarray(mask))
  assert _masked_max_diff(encoded, out.encoder_last_hidden_state.numpy(), mask) < TOL
  logits = jax.jit(lambda p, i, d, m: model.apply({"params": p}, i, d, m))(
    params, jnp.asarray(ids), jnp.asarray(dec_ids), jnp.asarray(mask)
  )
  np.testing.assert_allclose(np.asarray(logits), out.logits.numpy(), atol=TOL, rtol=0)
  return model, params, config, ids, mask, dec_ids, np.asarray(logits), encoded


def test_mt5_untied_head_matches_hf(tmp_path):
  model, params, config, ids, mask, dec_ids, logits, _ = _full_model_parity(
    tmp_path,
    transformers.MT5ForConditionalGeneration,
    transformers.MT5Config,
    untie=True,
    feed_forward_proj="gated-gelu",
  )
  assert config.feed_forward_proj == "gated-gelu" and not config.tie_word_embeddings
  # Our export (sharded, no HF metadata kept) loads in transformers and computes the same.
  hf.save_hf(tmp_path / "export", params, config, "mt5", extra=None, max_shard_bytes=40_000)
  assert (tmp_path / "export" / hf.INDEX_FILE).is_file()
  reloaded = transformers.MT5ForConditionalGeneration.from_pretrained(
    str(tmp_path / "export")
  ).eval()
  with torch.no_grad():
    again = reloaded(
      input_ids=torch.tensor(ids),
      attention_mask=torch.tensor(mask),
      decoder_input_ids=torch.tensor(dec_ids),
    ).logits.numpy()
  np.testing.assert_allclose(again, logits, atol=TOL, rtol=0)


def test_mt5_shared_head_matches_hf_and_cached_decoding(tmp_path):
  model, params, config, ids, mask, dec_ids, logits, encoded = _full_model_parity(
    tmp_path, transformers.MT5ForConditionalGeneration, transformers.MT5Config
  )
  # Step-wise cached decoding reproduces the teacher-forced pass position by position.
  make_cache = jax.jit(lambda p, e, m: t5.init_cache(model, p, e, m, dec_ids.shape[1]))
  cache = make_cache(params, encoded, jnp.asarray(mask))
  step_fn = jax.jit(lambda p, c, m, tok: t5.decode_step(model, p, c, m, tok))
  for step in range(dec_ids.shape[1]):
    step_logits, cache = step_fn(
      params, cache, jnp.asarray(mask), jnp.asarray(dec_ids[:, step : step + 1])
    )
    np.testing.assert_allclose(np.asarray(step_logits), logits[:, step], atol=TOL, rtol=0)


def test_t5_v1_relu_tied_matches_hf(tmp_path):
  _, _, config, *_ = _full_model_parity(
    tmp_path,
    transformers.T5ForConditionalGeneration,
    transformers.T5Config,
    feed_forward_proj="relu",
    tie_word_embeddings=True,
  )
  assert config.feed_forward_proj == "relu" and config.tie_word_embeddings


def test_mt5_encoder_model_matches_hf(tmp_path):
  hf_cfg = transformers.MT5Config(**_tiny_kwargs())
  path = _save(transformers.MT5EncoderModel(hf_cfg), tmp_path / "enc")
  ref = transformers.MT5EncoderModel.from_pretrained(str(path)).eval()
  params, config, kind, _ = hf.load_hf(path)
  assert kind == "mt5_encoder" and "decoder" not in params
  ids, mask = _batch(config.vocab_size)
  with torch.no_grad():
    want = ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state
  got = t5.T5EncoderModel(config).apply({"params": params}, jnp.asarray(ids), jnp.asarray(mask))
  assert _masked_max_diff(got, want.numpy(), mask) < TOL

  # bfloat16 compute with the same float32 weights: runs and stays close.
  got16 = t5.T5EncoderModel(config.replace(dtype="bfloat16")).apply(
    {"params": params}, jnp.asarray(ids), jnp.asarray(mask)
  )
  assert got16.dtype == jnp.bfloat16
  diff = np.abs(np.asarray(got16, np.float32) - want.numpy()) * mask[..., None]
  scale = float(np.max(np.abs(want.numpy())))
  assert np.all(np.isfinite(np.asarray(got16, np.float32)))
  assert float(diff.max()) < 0.1 * scale


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("num_buckets,max_distance", [(32, 128), (32, 64), (4, 128)])
def test_relative_position_bucket_matches_hf(bidirectional, num_buckets, max_distance):
  from transformers.models.t5.modeling_t5 import T5Attention

  rel = np.arange(-300, 301)
  want = T5Attention._relative_position_bucket(
    torch.tensor(rel),
    bidirectional=bidirectional,
    num_buckets=num_buckets,
    max_distance=max_distance,
  ).numpy()
  got = t5.relative_position_bucket(rel, bidirectional, num_buckets, max_distance)
  np.testing.assert_array_equal(got, want)
  # Every bucket is reached (bidirectional: all but "+0", which cannot occur).
  assert len(np.unique(got)) == (num_buckets - 1 if bidirectional else num_buckets)


def test_xtr_release_layout_matches_torch(tmp_path):
  """T5EncoderModel + bias-free Linear(d_model, 128) + L2 normalisation, as XTR ships it."""
  hf_cfg = transformers.T5Config(**_tiny_kwargs(feed_forward_proj="gated-gelu"))
  root = _save(transformers.T5EncoderModel(hf_cfg), tmp_path / "xtr")
  dense = torch.nn.Linear(hf_cfg.d_model, 128, bias=False)
  with torch.no_grad():
    dense.weight.normal_(0, 0.3)
  (root / "2_Dense").mkdir()
  (root / "2_Dense" / "config.json").write_text(
    json.dumps({"in_features": hf_cfg.d_model, "out_features": 128, "bias": False})
  )
  save_file(
    {"linear.weight": dense.weight.detach().numpy()}, str(root / "2_Dense/model.safetensors")
  )
  encoder = transformers.T5EncoderModel.from_pretrained(str(root)).eval()

  ids, mask = _batch(hf_cfg.vocab_size)
  with torch.no_grad():
    hidden = encoder(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))[0]
    want = torch.nn.functional.normalize(dense(hidden), dim=-1).numpy()

  params, config, kind, extra = hf.load_xtr_hf(root)
  assert kind == "retrieval" and extra["proj_dim"] == 128
  model = xtr.RetrievalEncoder(config, proj_dim=extra["proj_dim"], pooling="token")
  got = model.apply({"params": params}, jnp.asarray(ids), jnp.asarray(mask))
  assert got.shape == (*ids.shape, 128)
  assert _masked_max_diff(got, want, mask) < TOL


def test_xtr_projection_shape_mismatch_is_named(tmp_path):
  hf_cfg = transformers.T5Config(**_tiny_kwargs())
  root = _save(transformers.T5EncoderModel(hf_cfg), tmp_path / "xtr")
  (root / "2_Dense").mkdir()
  (root / "2_Dense" / "config.json").write_text(
    json.dumps({"in_features": 16, "out_features": 128, "bias": False})
  )
  save_file(
    {"linear.weight": np.zeros((128, 16), np.float32)}, str(root / "2_Dense/model.safetensors")
  )
  with pytest.raises(ValueError, match=r"linear.weight has shape \(128, 16\).*d_model=32"):
    hf.load_xtr_hf(root)


def test_jax_devices_are_emulated():
  assert jax.device_count() == 8
