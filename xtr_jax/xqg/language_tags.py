"""Language tags for the xQG generator: the decoder starts from a token that names the language.

A small generator trained from scratch (the CPU recipes) reads the target language only from
the prompt words (``Generate a Japanese question ...``), which a 1k-8k SentencePiece vocabulary
splits into several pieces among a hundred passage tokens; it learns the passage faster than
the language and often answers in the wrong script. Following mBART / M2M-100, the decoder
instead starts from a per-language token (its BOS), so every decoding step sees the language
directly through self-attention.

The tags live *past* the SentencePiece vocabulary: tag ``i`` is id ``sp_size + i`` (``i`` = the
code's position in ``TAG_CODES``), so the model config needs ``vocab_size >= sp_size +
len(TAG_CODES)`` (``MODEL_VOCAB_SIZE`` in ``gin/runs/train_xqg_cpu.gin``); public mT5 (12 spare
ids) has no room, so its fine-tuning recipe (``train_xqg.gin``) does not use tags. The batch
factory ``tagged_batches`` returns says so (``factory.language_tags``); the trainer records it
in the exported checkpoint's metadata (``extra['language_tags']``), and ``xtr-jax generate
--language_tags auto`` decodes with tags when that says so.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator

import numpy as np

import gin
from xtr_jax import io as xio
from xtr_jax.data.xqg_prompt import xqg_input

# Frozen order (never reorder: a trained model's tag ids depend on it; append new codes).
TAG_CODES: tuple[str, ...] = (
  "ar", "as", "bho", "bn", "de", "el", "en", "es", "fa", "fi", "fr", "gom", "gu", "hi", "id",
  "ja", "kn", "ko", "mai", "ml", "mni", "mr", "or", "pa", "ps", "ro", "ru", "sa", "sw", "ta",
  "te", "th", "tr", "ur", "vi", "yo", "zh",
)  # fmt: skip
NUM_TAGS = len(TAG_CODES)
METADATA_KEY = "language_tags"  # checkpoint extra: True when trained on tagged_batches

BatchFactory = Callable[..., Iterator[dict[str, np.ndarray]]]


def tag_id(code: str, sp_size: int) -> int:
  """The decoder start id for ``code`` with a SentencePiece model of ``sp_size`` pieces."""
  if code not in TAG_CODES:
    raise ValueError(f"language {code!r} has no xQG language tag; known: {', '.join(TAG_CODES)}")
  return sp_size + TAG_CODES.index(code)


def has_room(model_vocab_size: int, sp_size: int) -> bool:
  """Whether a model of ``model_vocab_size`` ids can hold the tags past ``sp_size`` pieces."""
  return model_vocab_size >= sp_size + NUM_TAGS


def trained_with_language_tags(checkpoint_dir: str) -> bool:
  """Whether the model in ``checkpoint_dir`` was trained on ``tagged_batches``.

  Read from the checkpoint's metadata (``extra['language_tags']``, written by the trainer's
  export). Checkpoints exported before that key existed fall back to the old evidence, the
  training run's ``config.gin`` next to ``DIR/final`` naming ``tagged_batches``; one with
  neither (imported, converted) is taken as untagged.
  """
  from xtr_jax.checkpoints.orbax_io import load_metadata  # noqa: PLC0415 (checkpoints wing)

  extra = load_metadata(checkpoint_dir).get("extra", {})
  if METADATA_KEY in extra:
    return bool(extra[METADATA_KEY])
  run_dir = os.path.dirname(xio.abspath(checkpoint_dir).rstrip(os.sep))
  path = xio.join(run_dir, "config.gin")
  if not xio.isfile(path):
    return False
  tagged = "tagged_batches" in xio.read_text(path)
  logging.info("%s records no %r; %s says %s", checkpoint_dir, METADATA_KEY, path, tagged)
  return tagged


def prompt_prefixes(sp, codes=TAG_CODES) -> dict[str, list[int]]:
  """Token ids of each language's prompt (``Generate a {Language} question ...:``).

  SentencePiece splits on whitespace first, so these ids are exactly the first ids of every
  tokenised ``xqg_input(code, title, text)`` (checked by a test).
  """
  return {c: sp.encode(xqg_input(c, "", "").rstrip()) for c in codes}


def languages_of(encoder_tokens: np.ndarray, prefixes: dict[str, list[int]]) -> list[str]:
  """The language of each row of a prompt batch [B, L], by its prompt prefix."""
  out = []
  for n, row in enumerate(np.asarray(encoder_tokens)):
    hits = [c for c, p in prefixes.items() if len(p) <= len(row) and list(row[: len(p)]) == p]
    if not hits:
      raise ValueError(
        f"language tags: row {n} of the batch does not start with an xQG prompt "
        f"('Generate a <Language> question for this passage: ...'); got ids {list(row[:12])}"
      )
    out.append(max(hits, key=lambda c: len(prefixes[c])))
  return out


@gin.configurable
def tagged_batches(
  batches: BatchFactory = gin.REQUIRED,
  vocabulary: str = gin.REQUIRED,
  model_vocab_size: int = gin.REQUIRED,
) -> BatchFactory:
  """Wraps a seq2seq xQG batch factory: ``decoder_input_tokens[:, 0]`` = the row's language tag.

  Targets and loss weights are unchanged (the tag is an input, never predicted).
  """
  import sentencepiece as spm  # noqa: PLC0415 (light, but keep module import cheap)

  sp = spm.SentencePieceProcessor(model_file=vocabulary)
  size = sp.get_piece_size()
  if not has_room(model_vocab_size, size):
    raise ValueError(
      f"language tags need model vocab_size >= {size} + {NUM_TAGS} = {size + NUM_TAGS} for "
      f"{vocabulary}; got {model_vocab_size} (set MODEL_VOCAB_SIZE)"
    )
  prefixes = prompt_prefixes(sp)

  def factory(start_step: int = 0, shard_index: int = 0, num_shards: int = 1):
    for batch in batches(start_step, shard_index, num_shards):
      batch = dict(batch)
      tags = [tag_id(c, size) for c in languages_of(batch["encoder_input_tokens"], prefixes)]
      dec = np.array(batch["decoder_input_tokens"], copy=True)
      dec[:, 0] = np.asarray(tags, dec.dtype)
      batch["decoder_input_tokens"] = dec
      yield batch

  factory.language_tags = True  # type: ignore[attr-defined] (recorded by the trainer's export)
  return factory
