"""Tiny, self-made fixtures for index tests and demos: corpus, vocabulary, model checkpoint.

Nothing is downloaded: the corpus is random words, the SentencePiece model is trained on it,
and the model is a randomly initialised ``tiny_config()`` RetrievalEncoder.
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import numpy as np

WORDS = (
  "river city mountain king queen war peace music film book school river bank money "
  "island ocean desert forest bird fish horse language science history computer game "
  "football player team song album church temple bridge train airport village capital"
).split()


@dataclasses.dataclass(frozen=True)
class TinySetup:
  corpus: str
  queries: str
  vocabulary: str
  checkpoint: str
  passage_ids: list[str]


def write_corpus(path: str, num_passages: int, seed: int = 0) -> list[str]:
  rng = np.random.default_rng(seed)
  pids = [f"doc{i:04d}" for i in range(num_passages)]
  with open(path, "w", encoding="utf-8") as f:
    f.write("id\ttext\ttitle\n")
    for pid in pids:
      n = int(rng.integers(3, 40))
      text = " ".join(rng.choice(WORDS, n))
      f.write(f"{pid}\t{text}\t{rng.choice(WORDS).title()}\n")
  return pids


def train_vocabulary(
  texts: list[str], prefix: str, vocab_size: int = 120, character_coverage: float = 1.0
) -> str:
  import sentencepiece as spm  # noqa: PLC0415

  spm.SentencePieceTrainer.train(
    sentence_iterator=iter(texts),
    model_prefix=prefix,
    vocab_size=vocab_size,
    pad_id=0,
    eos_id=1,
    unk_id=2,
    bos_id=-1,
    model_type="unigram",
    character_coverage=character_coverage,
    hard_vocab_limit=False,
    minloglevel=2,
  )
  return prefix + ".model"


def make_tiny_setup(directory: str, num_passages: int = 80, seed: int = 0) -> TinySetup:
  from xtr_jax.checkpoints.orbax_io import save_checkpoint  # noqa: PLC0415
  from xtr_jax.models.config import tiny_config  # noqa: PLC0415
  from xtr_jax.models.t5 import init_params  # noqa: PLC0415
  from xtr_jax.models.xtr import RetrievalEncoder  # noqa: PLC0415

  os.makedirs(directory, exist_ok=True)
  corpus = os.path.join(directory, "corpus.tsv")
  pids = write_corpus(corpus, num_passages, seed)
  rng = np.random.default_rng(seed + 1)
  texts = [" ".join(rng.choice(WORDS, 12)) for _ in range(400)]
  vocabulary = train_vocabulary(texts, os.path.join(directory, "spm"))
  queries = os.path.join(directory, "queries.jsonl")
  with open(queries, "w", encoding="utf-8") as f:
    for i in range(6):
      f.write(json.dumps({"id": f"q{i}", "question": " ".join(rng.choice(WORDS, 4))}) + "\n")
  config = tiny_config()
  params = init_params(config, jax.random.PRNGKey(seed), RetrievalEncoder)
  checkpoint = os.path.join(directory, "ckpt")
  save_checkpoint(
    checkpoint,
    params,
    config,
    model_kind="retrieval",
    extra={"proj_dim": 128, "pooling": "token", "vocabulary": vocabulary},
  )
  return TinySetup(corpus, queries, vocabulary, checkpoint, pids)


def build_tiny_index(setup: TinySetup, output_dir: str, passage_template: str | None = None) -> str:
  """A brute-force token index of ``setup``'s corpus with its checkpoint (tests, benchmarks)."""
  from xtr_jax.data.tokenizer import Tokenizer  # noqa: PLC0415
  from xtr_jax.index.build import build_from_corpus  # noqa: PLC0415
  from xtr_jax.index.encode import EncodeParams  # noqa: PLC0415
  from xtr_jax.index.retriever import load_model  # noqa: PLC0415

  params, config, proj_dim, fp, _ = load_model(setup.checkpoint)
  build_from_corpus(
    setup.corpus, output_dir, params, config, proj_dim=proj_dim, model_fingerprint=fp,
    tokenizer=Tokenizer(setup.vocabulary), checkpoint=setup.checkpoint,
    encode_params=EncodeParams(buckets=(64,), passage_template=passage_template), backend="brute_force", progress=False,
  )  # fmt: skip
  return output_dir
