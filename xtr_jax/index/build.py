"""Corpus -> token index in one call: resumable encoding, then the index build.

The library entry that ``xtr-jax index``, the sweep stages, the tests and the benchmarks all
use; it lives below the CLI so that none of them imports a CLI module.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time

import numpy as np

from xtr_jax.data.tokenizer import TextTokenizer
from xtr_jax.index.brute_force import first_nonfinite_row
from xtr_jax.index.compact import CompactParams
from xtr_jax.index.encode import EncodeParams, TokenEncoder, encode_corpus, load_shards
from xtr_jax.index.scann_index import ScannParams
from xtr_jax.index.store import ExtraVectors, IndexFormatError, build_index, stored_corpus_vectors


def check_encoded_vectors(vectors: np.ndarray, work_dir: str, record: dict) -> None:
  """Refuses NaN/Inf in the encoder's output, naming its shard file and row there.

  Why before ``build_index`` (which checks too): a diverged checkpoint gives NaN vectors, and
  the shard file (kept, since the build fails) is where to look, not the concatenated row.
  """
  row = first_nonfinite_row(vectors, np.float16)
  if row is None:
    return
  first = 0
  for s in record["shards"]:
    if row < first + s["tokens"]:
      path = os.path.join(work_dir, f"vectors_{s['index']:05d}.npy")
      raise IndexFormatError(f"encoded shard {path}: row {row - first} has non-finite values")
    first += s["tokens"]
  raise IndexFormatError(f"encoded vectors in {work_dir}: row {row} has non-finite values")


def build_from_corpus(
  corpus: str,
  output: str,
  params,
  config,
  *,
  proj_dim: int,
  model_fingerprint: str,
  tokenizer: TextTokenizer,
  checkpoint: str | None = None,
  pooling: str = "token",
  encode_params: EncodeParams | None = None,
  scann_params: ScannParams | None = None,
  compact_params: CompactParams | None = None,
  backend: str = "scann",
  segment_tokens: int = 0,
  extra_vectors: ExtraVectors | None = None,
  extra_weight: float = 1.0,
  overwrite: bool = False,
  progress: bool = True,
) -> dict:
  """Encode ``corpus`` (resumable, in ``.NAME.encode`` beside ``output``) and build the index.

  Every setting is an argument: the CLI and the sweep stages read gin (``index_settings``,
  ``ScannParams``, ``CompactParams``) and pass what it binds.
  """
  encode_params = encode_params or EncodeParams()
  output = os.path.abspath(output.rstrip("/"))
  if os.path.exists(output) and not overwrite:
    raise FileExistsError(f"index directory already exists: {output} (use --overwrite)")
  parent, name = os.path.split(output)
  work = os.path.join(parent, f".{name}.encode")
  encoder = TokenEncoder(params, config, proj_dim, pooling=pooling)
  t0 = time.time()
  record = encode_corpus(
    corpus,
    work,
    encoder,
    tokenizer,
    encode_params,
    settings={"model_fingerprint": model_fingerprint},
    progress=progress,
  )
  encode_seconds = time.time() - t0
  vectors, t2p, pids = load_shards(work, record)
  check_encoded_vectors(vectors, work, record)
  logging.info("encoded %d passages into %d token vectors", len(pids), len(t2p))
  manifest = build_index(
    output,
    vectors,
    t2p,
    pids,
    model_fingerprint=model_fingerprint,
    vocabulary_fingerprint=tokenizer.fingerprint,
    backend=backend,
    scann_params=scann_params or ScannParams(),
    compact_params=compact_params or CompactParams(),
    segment_tokens=segment_tokens,
    extra_vectors=extra_vectors,
    extra_weight=extra_weight,
    metadata={
      "checkpoint": os.path.abspath(checkpoint) if checkpoint else None,
      "vocabulary": os.path.abspath(tokenizer.path),
      "pooling": pooling,
      "corpus": os.path.abspath(corpus),
      "encode": json.loads(json.dumps(dataclasses.asdict(encode_params))),
      "encode_seconds": round(encode_seconds, 3),
    },
    overwrite=overwrite,
  )
  shutil.rmtree(work, ignore_errors=True)
  return manifest


# What an index built from another one's vectors keeps of that index's manifest: how the
# vectors were made, so search and evaluation read the same corpus and encoder settings.
REUSED_METADATA = ("checkpoint", "vocabulary", "pooling", "corpus", "encode", "encode_seconds")


def build_from_index(
  source: str,
  output: str,
  *,
  model_fingerprint: str,
  tokenizer: TextTokenizer,
  corpus: str | None = None,
  scann_params: ScannParams | None = None,
  compact_params: CompactParams | None = None,
  backend: str = "scann",
  segment_tokens: int = 0,
  extra_vectors: ExtraVectors | None = None,
  extra_weight: float = 1.0,
  overwrite: bool = False,
) -> dict:
  """A new index over the corpus vectors stored in ``source``: no encoding.

  For another backend or ScaNN setting, or another xQG augmentation (``extra_vectors``, which
  replace the source's own), of vectors already encoded by the same model; ``source`` is
  only read; ``corpus`` (the same passages, checked by the CLI) replaces the recorded path.
  The vectors are the source's float16 ones, so the result equals a build from
  the corpus whenever the encoder is deterministic (``tests/test_index_reuse.py``).
  """
  source, output = os.path.abspath(source.rstrip("/")), os.path.abspath(output.rstrip("/"))
  if os.path.realpath(source) == os.path.realpath(output):
    raise ValueError(f"{output}: the output is the index whose vectors are read; name a new one")
  stored = stored_corpus_vectors(source, expected_fingerprint=model_fingerprint)
  have = stored.manifest.get("vocabulary_fingerprint")
  if have and have != tokenizer.fingerprint:
    raise IndexFormatError(
      f"{source}/manifest.json: vocabulary_fingerprint {have!r} but the tokenizer loaded has "
      f"{tokenizer.fingerprint!r}; the added questions would be tokenized differently"
    )
  metadata = {k: stored.manifest[k] for k in REUSED_METADATA if k in stored.manifest}
  if corpus:
    metadata["corpus"] = os.path.abspath(corpus)
  logging.info("reusing %d corpus vectors of %s", stored.vectors.shape[0], source)
  return build_index(
    output,
    stored.vectors,
    stored.token_to_passage,
    stored.passage_ids,
    model_fingerprint=model_fingerprint,
    vocabulary_fingerprint=tokenizer.fingerprint,
    backend=backend,
    scann_params=scann_params or ScannParams(),
    compact_params=compact_params or CompactParams(),
    segment_tokens=segment_tokens,
    extra_vectors=extra_vectors,
    extra_weight=extra_weight,
    metadata={**metadata, "vectors_from": source},
    overwrite=overwrite,
  )
