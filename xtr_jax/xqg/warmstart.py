"""The warm-started xQG generator's training recipe: output vocabulary, model, init, batches.

``gin/runs/train_xqg_me5_cpu.gin`` wires these into ``trainer.train``: a BERT2BERT model
(``models/bert2bert.py``) on the backbone's architecture, initialised from the backbone
(``checkpoints/bert2bert.py``) and trained on SWIM-IR-layout cross-lingual pairs, English
passage -> question in the pair's language, the language named in the xQG prompt
(``data/xqg_prompt.py``) exactly as ``xtr-jax generate`` asks.

The output vocabulary is every piece of the backbone's tokenizer that occurs in the training
split's questions and prompts (passages included, so names and numbers can be copied), plus
the tokenizer's special tokens, as sorted tokenizer ids: deterministic for the same pairs and
tokenizer, so the config, the init checkpoint and the batches agree without sharing state.
"""

from __future__ import annotations

import copy
import functools
import logging

import numpy as np

import gin
from xtr_jax import io as xio
from xtr_jax.checkpoints.embedded import resolve_checkpoint
from xtr_jax.checkpoints.orbax_io import load_checkpoint, load_metadata
from xtr_jax.checkpoints.tokenizers import tokenizer_for
from xtr_jax.data.pairs import is_heldout, read_pairs
from xtr_jax.data.xqg_prompt import xqg_input
from xtr_jax.models.bert import BertConfig
from xtr_jax.models.bert2bert import Bert2BertConfig, to_output_ids
from xtr_jax.training.inputs import BatchFactory, epoch_batches


def backbone_tokenizer(backbone: str):
  """The tokenizer a backbone checkpoint (directory or embedded name) carries."""
  directory = resolve_checkpoint(backbone)
  return tokenizer_for(directory, load_metadata(directory).get("extra", {}), None)


def _plain(tokenizer):
  """The tokenizer without E5's ``query: `` prefix, for decoder targets."""
  plain = copy.copy(tokenizer)
  plain.query_prefix = plain.passage_prefix = ""
  return plain


def special_ids(tokenizer) -> list[int]:
  """bos, pad, eos and unk ids of a BERT-family (Hugging Face) tokenizer."""
  unk = tokenizer.tokenizer.token_to_id("<unk>")
  return sorted(
    {i for i in (tokenizer.bos_id, tokenizer.pad_id, tokenizer.eos_id, unk) if i is not None}
  )


def xqg_sources_targets(
  records: list[dict], tokenizer, passage_length: int, query_length: int
) -> tuple[np.ndarray, np.ndarray]:
  """Encoder ids of the prompts [N, passage_length] (tokenizer pad) and target tokenizer
  ids [N, query_length] (question pieces + ``</s>``, no ``<s>``; -1 = padding)."""
  missing = [r["id"] for r in records if not r["code"]]
  if missing:
    raise ValueError(f"xQG pairs need a language 'code'; missing in {missing[:3]}")
  prompts = [xqg_input(r["code"], r["title"], r["text"]) for r in records]
  sources = np.full((len(records), passage_length), tokenizer.pad_id, np.int32)
  for i, ids in enumerate(tokenizer.encode(prompts, passage_length, role="passage")):
    sources[i, : len(ids)] = ids
  encoded = _plain(tokenizer).encode([r["query"] for r in records], query_length + 1)
  targets = np.full((len(records), query_length), -1, np.int64)
  for i, ids in enumerate(encoded):
    ids = ids[1:] if ids and ids[0] == tokenizer.bos_id else ids
    targets[i, : len(ids)] = ids
  return sources, targets


def split_pairs(pairs: str, heldout_fraction: float, split: str) -> list[dict]:
  """The ``split`` ('train' or 'heldout') of the pairs at ``pairs``, by a hash of each id."""
  heldout = split == "heldout"
  return [r for r in read_pairs(pairs) if is_heldout(r["id"], heldout_fraction) == heldout]


@functools.lru_cache(maxsize=4)
def output_vocabulary(
  backbone: str, pairs: str, heldout_fraction: float, passage_length: int, query_length: int
) -> tuple[int, ...]:
  """Sorted tokenizer ids occurring in the training split (questions and prompts) + specials."""
  tok = backbone_tokenizer(backbone)
  train = split_pairs(pairs, heldout_fraction, "train")
  sources, targets = xqg_sources_targets(train, tok, passage_length, query_length)
  ids = set(np.unique(sources).tolist()) | set(np.unique(targets[targets >= 0]).tolist())
  vocab = tuple(sorted(ids | set(special_ids(tok))))
  logging.info("xQG output vocabulary: %d of %d pieces (%s)", len(vocab), tok.vocab_size, pairs)
  return vocab


@gin.configurable
def warm_start_config(
  backbone: str = "me5-small",
  pairs: str = gin.REQUIRED,
  restrict_vocab: bool = True,
  num_decoder_layers: int = 0,
  tie_word_embeddings: bool = True,
  heldout_fraction: float = 0.05,
  passage_length: int = 128,
  query_length: int = 32,
  dropout: float | None = None,
  copy_attention: bool = False,
) -> Bert2BertConfig:
  """The generator config on ``backbone``'s architecture (``dropout`` overrides both rates;
  ``copy_attention`` adds the pointer-generator copy head, models/bert2bert.py)."""
  meta = load_metadata(resolve_checkpoint(backbone))
  encoder = BertConfig.from_dict(meta["config"])
  if dropout is not None:
    encoder = encoder.replace(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
  vocab = ()
  if restrict_vocab:
    vocab = output_vocabulary(backbone, pairs, heldout_fraction, passage_length, query_length)
  tok = backbone_tokenizer(backbone)
  return Bert2BertConfig(
    encoder=encoder,
    num_decoder_layers=num_decoder_layers,
    output_vocab=vocab,
    tie_word_embeddings=tie_word_embeddings,
    start_token=tok.bos_id,
    end_token=tok.eos_id,
    copy_attention=copy_attention,
  )


@gin.configurable
def warm_start_init(
  backbone: str = "me5-small",
  output: str = gin.REQUIRED,
  config: Bert2BertConfig = gin.REQUIRED,
  init_decoder: bool = True,
  cross_attention_init: str = "random",
  seed: int = 0,
) -> str:
  """The warm-started checkpoint for ``config`` at ``output``, written on first use.

  An existing one is reused only when it was written for ``config`` with the same
  ``init_decoder`` and ``cross_attention_init`` (else a one-line error).
  """
  from xtr_jax.checkpoints.bert2bert import warm_start_checkpoint  # noqa: PLC0415

  if xio.isdir(output):
    saved = load_checkpoint(output, verify=False)
    same = (saved.extra.get("init_decoder"), saved.extra.get("cross_attention_init", "random"))
    if saved.config != config or same != (init_decoder, cross_attention_init):
      raise ValueError(
        f"{output}: an init checkpoint for another generator config exists; delete it or "
        "set warm_start_init.output elsewhere"
      )
    return output
  logging.info("warm-starting %s from %s", output, backbone)
  return warm_start_checkpoint(
    resolve_checkpoint(backbone),
    output,
    config,
    init_decoder=init_decoder,
    cross_attention_init=cross_attention_init,
    seed=seed,
  )


@gin.configurable
def xqg_pairs_batches(
  backbone: str = "me5-small",
  pairs: str = gin.REQUIRED,
  config: Bert2BertConfig = gin.REQUIRED,
  batch_size: int = 16,
  passage_length: int = 128,
  query_length: int = 32,
  split: str = "train",
  heldout_fraction: float = 0.05,
  seed: int = 0,
) -> BatchFactory:
  """Resumable seq2seq batches (``inputs.epoch_batches``' stream) in the generator's ids.

  Encoder: the backbone tokenizer's ids of the xQG prompt; decoder targets: the question's
  output ids (pieces outside the output vocabulary -> unk) ending in ``</s>``, 0-padded;
  decoder inputs: ``<s>`` (output id 0) + targets shifted right.
  """
  if split not in ("train", "heldout"):
    raise ValueError(f"xqg_pairs_batches.split={split!r}; expected 'train' or 'heldout'")
  if config.decoder_start_token_id != 0:
    raise ValueError(
      f"xqg_pairs_batches: the decoder start token must be output id 0 (it pads the shifted "
      f"targets); got {config.decoder_start_token_id}"
    )
  tok = backbone_tokenizer(backbone)
  keep = split_pairs(pairs, heldout_fraction, split)
  if len(keep) < batch_size:
    raise ValueError(
      f"split {split!r} of {pairs!r} has {len(keep)} pairs < batch_size={batch_size}"
    )
  arrays = xqg_arrays(keep, tok, config, passage_length, query_length)
  logging.info("%s: %d %s xQG pairs (tokenizer of %s)", pairs, len(keep), split, backbone)
  return epoch_batches(arrays, batch_size, seed)


def xqg_arrays(
  records: list[dict],
  tokenizer,
  config: Bert2BertConfig,
  passage_length: int,
  query_length: int,
) -> dict[str, np.ndarray]:
  """The seq2seq feature arrays of ``records`` in the generator's ids: encoder prompts,
  decoder inputs (``<s>`` = output id 0, then the targets shifted right), targets and their
  loss weights (0 on padding)."""
  sources, targets = xqg_sources_targets(records, tokenizer, passage_length, query_length)
  unk = tokenizer.tokenizer.token_to_id("<unk>")
  out = to_output_ids(config, np.where(targets >= 0, targets, unk), unk)
  out = np.where(targets >= 0, out, 0).astype(np.int32)
  return {
    "encoder_input_tokens": sources,
    "decoder_input_tokens": np.concatenate([np.zeros_like(out[:, :1]), out[:, :-1]], axis=1),
    "decoder_target_tokens": out,
    "decoder_loss_weights": (targets >= 0).astype(np.int32),
  }
