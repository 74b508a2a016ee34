"""The SentencePiece vocabulary: load mT5's (or any) model, or train one offline from our data.

``xtr-jax train-vocab`` trains a unigram model with T5's special ids (pad=0, eos=1, unk=2, no
bos) so a model trained on CPU without the public mT5 vocabulary still matches the encoder's
conventions.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import random
import tempfile
from collections.abc import Iterable, Iterator

import seqio

import gin
from xtr_jax.data import locations, readers

log = logging.getLogger(__name__)

MT5_VOCABULARY = "gs://t5-data/vocabs/mc4.250000.100extra/sentencepiece.model"


@gin.configurable
def vocabulary_path(path: str | None = None) -> str:
  """The vocabulary used by tasks: gin ``vocabulary_path.path`` > env ``XTR_JAX_VOCAB`` > mT5's."""
  return path or os.environ.get("XTR_JAX_VOCAB") or MT5_VOCABULARY


def load_vocabulary(path: str | None = None) -> seqio.SentencePieceVocabulary:
  """A seqio SentencePiece vocabulary; local paths are checked up front for a clear error."""
  path = path or vocabulary_path()
  if "://" not in path and not os.path.isfile(path):
    raise FileNotFoundError(f"SentencePiece model not found: {path}")
  return seqio.SentencePieceVocabulary(path)


class ConfiguredVocabulary(seqio.SentencePieceVocabulary):
  """A vocabulary whose file is looked up (``vocabulary_path()``) each time it is loaded.

  Tasks are registered at import time, before gin files are parsed; this keeps the choice of
  vocabulary open until the data is read. A changed path reloads the model.
  """

  def __init__(self):
    self._loaded_path: str | None = None
    super().__init__(sentencepiece_model_file="")

  @property
  def _sentencepiece_model_file(self) -> str:
    return vocabulary_path()

  @_sentencepiece_model_file.setter
  def _sentencepiece_model_file(self, value: str) -> None:
    del value  # always resolved from configuration

  def _model_context(self):
    path = vocabulary_path()
    if path != self._loaded_path:
      if "://" not in path and not os.path.isfile(path):
        raise FileNotFoundError(
          f"SentencePiece model not found: {path} (set XTR_JAX_VOCAB or gin vocabulary_path.path)"
        )
      self._model = None
      self._loaded_path = path
    return super()._model_context()

  def __eq__(self, other) -> bool:
    return isinstance(other, ConfiguredVocabulary) or super().__eq__(other)

  def __hash__(self) -> int:
    return hash("ConfiguredVocabulary")


def train_sentencepiece(
  texts: Iterable[str],
  model_prefix: str,
  vocab_size: int,
  *,
  character_coverage: float = 0.9995,
  max_sentences: int | None = None,
  input_sentence_size: int = 0,
) -> str:
  """The project's one SentencePiece trainer: unigram, pad 0, eos 1, unk 2, no bos.

  Writes ``{prefix}.model``/``.vocab`` atomically and returns the ``.model`` path; a
  ``model_prefix`` ending in ``.model`` names the model file itself. ``max_sentences`` keeps
  the first N texts; ``input_sentence_size`` > 0 lets SentencePiece sample N of them
  (shuffled, what the training recipes use); 0 trains on all. The vocabulary size is a soft
  limit so tiny corpora still train.
  """
  import sentencepiece as spm

  if vocab_size < 8:
    raise ValueError(f"vocab_size must be >= 8, got {vocab_size}")
  model_prefix = model_prefix.removesuffix(".model")
  out_dir = os.path.dirname(os.path.abspath(model_prefix))
  os.makedirs(out_dir, exist_ok=True)
  sentences = (t.replace("\n", " ").strip() for t in texts)
  sentences = (t for t in sentences if t)
  if max_sentences:
    sentences = itertools.islice(sentences, max_sentences)
  sampling = {}
  if input_sentence_size:
    sampling = {"input_sentence_size": input_sentence_size, "shuffle_input_sentence": True}
  with tempfile.TemporaryDirectory(dir=out_dir, prefix=".spm-") as tmp:
    tmp_prefix = os.path.join(tmp, "model")
    spm.SentencePieceTrainer.train(
      sentence_iterator=_nonempty(sentences),
      model_prefix=tmp_prefix,
      vocab_size=vocab_size,
      model_type="unigram",
      character_coverage=character_coverage,
      pad_id=0,
      eos_id=1,
      unk_id=2,
      bos_id=-1,
      hard_vocab_limit=False,
      minloglevel=2,
      **sampling,
    )
    for ext in (".model", ".vocab"):
      os.replace(tmp_prefix + ext, model_prefix + ext)
  return model_prefix + ".model"


def _nonempty(sentences: Iterator[str]) -> Iterator[str]:
  first = next(sentences, None)
  if first is None:
    raise ValueError("no text to train the SentencePiece model on (all inputs empty)")
  yield first
  yield from sentences


def dataset_texts(
  swim_ir_dir: str | None = None,
  xor_dir: str | None = None,
  corpus: str | None = None,
) -> Iterator[str]:
  """Queries and passages of the project's datasets, all languages, for vocabulary training."""
  if swim_ir_dir:
    files = sorted(
      os.path.join(root, name)
      for root, _, names in os.walk(swim_ir_dir)
      for name in names
      if name.endswith((".jsonl", ".jsonl.gz"))
    )
    if not files:
      raise FileNotFoundError(f"no SWIM-IR *.jsonl files under {swim_ir_dir}")
    for path in files:
      for r in readers.read_swim_ir(path, skip_bad_records=True):
        yield r.query
        yield readers.passage_text(r.title, r.text)
  if xor_dir:
    found = False
    for kind in ("train", "dev", "test"):
      for name in locations.XOR_FILES[kind]:
        path = os.path.join(xor_dir, name)
        if os.path.isfile(path):
          found = True
          for q in readers.read_xor_queries(path, skip_bad_records=True):
            yield q.question
          break
    if not found:
      raise FileNotFoundError(f"no XOR-TyDi query files in {xor_dir}")
  if corpus:
    for p in readers.read_corpus(corpus, skip_bad_records=True):
      yield readers.passage_text(p.title, p.text)


def _interleave(texts: Iterator[str], seed: int, buffer: int = 10000) -> Iterator[str]:
  """Light shuffling so ``--max_sentences`` samples every language, not just the first files."""
  rng = random.Random(seed)
  buf: list[str] = []
  for t in texts:
    buf.append(t)
    if len(buf) >= buffer:
      i = rng.randrange(len(buf))
      buf[i], buf[-1] = buf[-1], buf[i]
      yield buf.pop()
  rng.shuffle(buf)
  yield from buf


def main(argv: list[str] | None = None) -> int:
  """``xtr-jax train-vocab``."""
  from xtr_jax.gin_utils import parse_args_with_gin

  parser = argparse.ArgumentParser(
    prog="xtr-jax train-vocab",
    description=__doc__,
    formatter_class=argparse.ArgumentDefaultsHelpFormatter,
  )
  parser.add_argument("--output", required=True, help="Model prefix; writes PREFIX.model/.vocab.")
  parser.add_argument("--vocab_size", type=int, default=32000, help="Pieces in the vocabulary.")
  parser.add_argument("--swim_ir_dir", help="SWIM-IR layout folder (all *.jsonl under it).")
  parser.add_argument("--xor_dir", help="Folder with XOR-TyDi query JSONL files.")
  parser.add_argument("--corpus", help="Corpus TSV (id, text, title).")
  parser.add_argument(
    "--max_sentences", type=int, default=None, help="Sentences sampled for training (all)."
  )
  parser.add_argument(
    "--character_coverage", type=float, default=0.9995, help="SentencePiece character coverage."
  )
  parser.add_argument("--seed", type=int, default=0, help="Sampling seed.")
  args = parse_args_with_gin(parser, argv)
  if not (args.swim_ir_dir or args.xor_dir or args.corpus):
    parser.error("give at least one of --swim_ir_dir, --xor_dir, --corpus")
  texts = _interleave(dataset_texts(args.swim_ir_dir, args.xor_dir, args.corpus), args.seed)
  path = train_sentencepiece(
    texts,
    args.output,
    args.vocab_size,
    character_coverage=args.character_coverage,
    max_sentences=args.max_sentences,
  )
  print(f"wrote {path} ({load_vocabulary(path).vocab_size} pieces)")
  return 0
