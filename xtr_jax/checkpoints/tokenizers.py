"""The tokenizer a checkpoint was trained with: its own (saved inside it) or a vocabulary file.

Checkpoints converted from BERT-family models carry their tokenizer (``tokenizer.json``
in the checkpoint directory, described by ``extra['tokenizer']`` with its fingerprint), so
the pairing cannot go wrong. mT5-family checkpoints name a SentencePiece model
(``extra['vocabulary']``) that the user may override with ``--vocabulary``; its
fingerprint, when recorded, is checked.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from xtr_jax.checkpoints.orbax_io import check_vocabulary

TOKENIZER_KEY = "tokenizer"  # extra: the tokenizer's to_dict() (kind, file, fingerprint, prefixes)


def tokenizer_for(
  checkpoint_dir: str, extra: Mapping[str, Any], config: Any, vocabulary: str | None = None
):
  """The tokenizer to use with ``checkpoint_dir``; ``vocabulary`` overrides a recorded path.

  A checkpoint with its own tokenizer refuses a different ``vocabulary`` (one-line
  ValueError naming both), since its embedding rows are indexed by that tokenizer's ids.
  """
  from xtr_jax.data import tokenizer as tok  # noqa: PLC0415

  spec = (extra or {}).get(TOKENIZER_KEY)
  if spec:
    own = tok.load_tokenizer(spec, base_dir=checkpoint_dir)
    if vocabulary and os.path.abspath(vocabulary) != os.path.abspath(own.path):
      # Another copy of the same tokenizer is fine; anything else fails on the fingerprint.
      return tok.load_tokenizer({**spec, "file": os.path.abspath(vocabulary)}, base_dir=None)
    return own
  vocabulary = vocabulary or (extra or {}).get("vocabulary")
  if not vocabulary:
    raise ValueError(
      f"checkpoint {checkpoint_dir} records no tokenizer or vocabulary; pass --vocabulary"
    )
  check_vocabulary(extra, vocabulary, checkpoint_dir)
  return tok.SentencePieceTokenizer(vocabulary, config.vocab_size, config.eos_token_id)


def carried_tokenizer(checkpoint_dir: str) -> tuple[dict[str, Any], dict[str, bytes]]:
  """(extra entries, assets) that pass ``checkpoint_dir``'s own tokenizer on to a checkpoint
  trained from it; both empty when it has none (it names a vocabulary file instead)."""
  from xtr_jax.checkpoints.orbax_io import load_metadata  # noqa: PLC0415

  spec = load_metadata(checkpoint_dir).get("extra", {}).get(TOKENIZER_KEY)
  if not spec:
    return {}, {}
  path = os.path.join(checkpoint_dir, spec["file"])
  if not os.path.isfile(path):
    raise FileNotFoundError(f"checkpoint {checkpoint_dir}: its tokenizer file {path} is missing")
  with open(path, "rb") as f:
    return {TOKENIZER_KEY: spec}, {spec["file"]: f.read()}
