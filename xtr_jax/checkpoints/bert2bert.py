"""Warm-starting a BERT2BERT generator from a pretrained BERT-family checkpoint.

Rothe et al. (TACL 2020): the encoder is the backbone as is; with ``init_decoder`` every
decoder layer ``i`` takes the backbone's layer ``i`` (self-attention, FFN, their LayerNorms;
the causal mask is the only change) and the decoder embeddings take the backbone's position,
token-type and LayerNorm tables and the word rows of the output vocabulary
(``Bert2BertConfig.output_vocab``), which also initialise a separate LM head when the head is
not tied. Cross-attention, its LayerNorm and the LM bias are new, unless
``cross_attention_init='self_attention'`` starts each layer's cross-attention (query, key,
value, output, LayerNorm) as a copy of its self-attention: random cross-attention attends
uniformly at first and, measured on 2 CPU cores (results/xqg_warmstart.md), a 1,200-step run
learned a decoder that ignores the passage; a copy attends by the backbone's own similarity
from the first step. Decoder layers beyond the backbone's depth stay freshly initialised.

The result is an ordinary checkpoint (``model_kind='bert2bert'``) that carries the backbone's
tokenizer, so ``xtr-jax generate`` and the trainer's ``init_checkpoint`` take it directly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xtr_jax.checkpoints import orbax_io
from xtr_jax.models.bert import BertConfig
from xtr_jax.models.bert2bert import Bert2Bert, Bert2BertConfig

# Per-layer parameters a decoder layer shares with the backbone's (BertLayer's names).
SHARED_LAYER_PARTS = (
  "query", "key", "value", "attention_output", "attention_layer_norm", "intermediate",
  "output", "output_layer_norm",
)  # fmt: skip
# cross_attention_init='self_attention': the cross-attention part <- the self-attention part.
CROSS_FROM_SELF = {
  "query": "query", "key": "key", "value": "value", "out": "attention_output",
}  # fmt: skip
CROSS_ATTENTION_INITS = ("random", "self_attention")


def backbone_params(params: Mapping[str, Any], source: str) -> dict[str, Any]:
  """The BertEncoder tree of a ``bert_encoder`` or BERT ``retrieval`` checkpoint's params."""
  if "embeddings" in params:
    return dict(params)
  if isinstance(params.get("bert"), Mapping):
    return dict(params["bert"])
  raise ValueError(f"{source}: no BERT encoder parameters (top-level keys {sorted(params)})")


def init_params(config: Bert2BertConfig, rng: jax.Array) -> dict[str, Any]:
  """Freshly initialised (unboxed, host) parameters of ``Bert2Bert(config)``."""
  ids = jnp.ones((1, 4), jnp.int32)
  boxed = Bert2Bert(config).init(rng, ids, ids)["params"]
  return jax.tree_util.tree_map(np.asarray, orbax_io.unbox(boxed))


def warm_start_params(
  config: Bert2BertConfig,
  backbone: Mapping[str, Any],
  rng: jax.Array,
  *,
  init_decoder: bool = True,
  cross_attention_init: str = "random",
  source: str = "backbone",
) -> dict[str, Any]:
  """Bert2Bert parameters: encoder = ``backbone``; decoder copied from it (``init_decoder``),
  its cross-attention fresh or copied from the layer's self-attention (``cross_attention_init``)."""
  if cross_attention_init not in CROSS_ATTENTION_INITS:
    raise ValueError(
      f"cross_attention_init={cross_attention_init!r}; expected one of {CROSS_ATTENTION_INITS}"
    )
  params = init_params(config, rng)
  backbone = jax.tree_util.tree_map(np.asarray, orbax_io.unbox(backbone))
  orbax_io.check_params_match(backbone, params["encoder"], source)
  params["encoder"] = backbone
  if not init_decoder:
    return params
  decoder = params["decoder"]
  rows = np.asarray(config.output_vocab or np.arange(config.encoder.vocab_size), np.int64)
  word = backbone["embeddings"]["word_embeddings"]["embedding"][rows]
  emb = dict(backbone["embeddings"], word_embeddings={"embedding": word})
  decoder["embeddings"] = emb
  layers = min(config.decoder_layers, config.encoder.num_hidden_layers)
  for i in range(layers):
    layer = dict(decoder[f"layers_{i}"])
    source_layer = backbone[f"layers_{i}"]
    layer.update({k: source_layer[k] for k in SHARED_LAYER_PARTS})
    if cross_attention_init == "self_attention":
      layer["encoder_decoder_attention"] = {k: source_layer[v] for k, v in CROSS_FROM_SELF.items()}
      layer["cross_attention_layer_norm"] = source_layer["attention_layer_norm"]
    decoder[f"layers_{i}"] = layer
  if not config.tie_word_embeddings:
    decoder["lm_head"] = {"kernel": word.T.copy(), "bias": np.zeros(len(rows), word.dtype)}
  return params


def warm_start_checkpoint(
  backbone_dir: str,
  output: str,
  config: Bert2BertConfig,
  *,
  init_decoder: bool = True,
  cross_attention_init: str = "random",
  seed: int = 0,
) -> str:
  """Writes the warm-started generator of ``backbone_dir`` to ``output``; returns ``output``.

  ``config.encoder`` must be the backbone's architecture (dropout may differ); the
  backbone's own tokenizer is carried along.
  """
  from xtr_jax.checkpoints.tokenizers import carried_tokenizer  # noqa: PLC0415

  ckpt = orbax_io.load_checkpoint(backbone_dir)
  if not isinstance(ckpt.config, BertConfig):
    raise ValueError(
      f"{backbone_dir}: backbone is a {type(ckpt.config).__name__}, warm-starting needs a "
      "BERT-family checkpoint"
    )
  diffs = [
    f"{f}={getattr(config.encoder, f)!r} vs the backbone's {getattr(ckpt.config, f)!r}"
    for f in (*orbax_io.BERT_ARCHITECTURE_FIELDS, "pad_token_id")
    if getattr(config.encoder, f) != getattr(ckpt.config, f)
  ]
  if diffs:
    raise ValueError(f"{backbone_dir}: generator encoder differs: {'; '.join(diffs)}")
  backbone = backbone_params(ckpt.params, backbone_dir)
  params = warm_start_params(
    config,
    backbone,
    jax.random.PRNGKey(seed),
    init_decoder=init_decoder,
    cross_attention_init=cross_attention_init,
    source=backbone_dir,
  )
  extra, assets = carried_tokenizer(backbone_dir)
  extra.update(
    warm_start=os.path.abspath(backbone_dir),
    warm_start_fingerprint=ckpt.fingerprint,
    init_decoder=init_decoder,
    cross_attention_init=cross_attention_init,
    language_tags=False,
  )
  orbax_io.save_checkpoint(
    output, params, config, model_kind="bert2bert", extra=extra, assets=assets
  )
  return output
