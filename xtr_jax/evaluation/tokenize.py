"""NLTK's ``word_tokenize`` without the downloadable Punkt model.

The official XOR-Retrieve script counts tokens with ``nltk.word_tokenize``, which is
``[tok for sent in sent_tokenize(text) for tok in treebank(sent)]`` and needs NLTK's pretrained
English Punkt model (``punkt_tab`` data, not shipped by any package). Punkt is unsupervised, so
the same algorithm trained on the evaluation corpus is a faithful stand-in; this module offers:

- ``nltk``: the real ``word_tokenize`` (only when the Punkt data is installed): exact.
- ``punkt``: Punkt trained on a corpus sample (or loaded from a params JSON made by it).
- ``punkt_untrained``: Punkt with empty parameters (no abbreviation knowledge).
- ``line``: ``word_tokenize(preserve_line=True)``: no sentence split at all.

results/xor_tokenizer_deviation.md measures how often each changes an R@kt decision.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
from collections.abc import Callable, Iterable

from nltk.tokenize import NLTKWordTokenizer
from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer, PunktTrainer

from xtr_jax.evaluation import io

TOKENIZER_MODES = ("auto", "nltk", "punkt", "punkt_untrained", "line")
WordTokenizer = Callable[[str], list[str]]

_TREEBANK = NLTKWordTokenizer()


def nltk_punkt_available() -> bool:
  """Whether NLTK's own English Punkt model is installed (then ``nltk`` mode is exact)."""
  try:
    from nltk.tokenize import punkt_model_available

    return bool(punkt_model_available("english"))
  except Exception:  # older NLTK or broken data path
    try:
      from nltk.tokenize import sent_tokenize

      sent_tokenize("A b. C d.")
      return True
    except LookupError:
      return False


def treebank_tokenize(sentences: Iterable[str]) -> list[str]:
  return [tok for sent in sentences for tok in _TREEBANK.tokenize(sent)]


def make_word_tokenizer(sentence_splitter: Callable[[str], list[str]] | None) -> WordTokenizer:
  """``word_tokenize`` built from a sentence splitter (None: preserve_line=True)."""
  if sentence_splitter is None:
    return lambda text: _TREEBANK.tokenize(text)
  return lambda text: treebank_tokenize(sentence_splitter(text))


# ----------------------------------------------------------------------------- Punkt params


def train_punkt(texts: Iterable[str], max_chars: int = 2_000_000) -> PunktParameters:
  """Trains Punkt (Kiss & Strunk, 2006) on up to ``max_chars`` characters of ``texts``."""
  trainer = PunktTrainer()
  budget, chunk, size = max_chars, [], 0
  for text in texts:
    if budget <= 0:
      break
    text = text[:budget]
    budget -= len(text)
    chunk.append(text)
    size += len(text)
    if size > 200_000:
      trainer.train("\n\n".join(chunk), finalize=False)
      chunk, size = [], 0
  if chunk:
    trainer.train("\n\n".join(chunk), finalize=False)
  trainer.finalize_training()
  return trainer.get_params()


def params_to_json(params: PunktParameters) -> dict:
  return {
    "abbrev_types": sorted(params.abbrev_types),
    "collocations": sorted([list(c) for c in params.collocations]),
    "sent_starters": sorted(params.sent_starters),
    "ortho_context": dict(sorted(params.ortho_context.items())),
  }


def params_from_json(data: dict, where: str = "<params>") -> PunktParameters:
  keys = ("abbrev_types", "collocations", "sent_starters", "ortho_context")
  missing = [k for k in keys if k not in data]
  if missing:
    raise ValueError(f"{where}: Punkt params JSON lacks {missing}")
  params = PunktParameters()
  params.abbrev_types = set(data["abbrev_types"])
  params.collocations = {tuple(c) for c in data["collocations"]}
  params.sent_starters = set(data["sent_starters"])
  for word, flags in data["ortho_context"].items():
    params.ortho_context[word] = int(flags)
  return params


def save_punkt_params(path: io.PathLike, params: PunktParameters) -> None:
  io.atomic_write_text(path, json.dumps(params_to_json(params), ensure_ascii=False))


def load_punkt_params(path: io.PathLike) -> PunktParameters:
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"Punkt params file not found: {path}")
  with open(path, encoding="utf-8") as f:
    return params_from_json(json.load(f), str(path))


def corpus_texts(corpus_path: io.PathLike) -> Iterable[str]:
  """Streams passage texts of a corpus TSV (in file order) for Punkt training."""
  for _, text, _ in io.iter_corpus(corpus_path):
    yield text


# ----------------------------------------------------------------------------- selection


def get_word_tokenizer(
  mode: str = "auto",
  *,
  punkt_params: io.PathLike | None = None,
  train_texts: Iterable[str] | None = None,
  train_chars: int = 2_000_000,
) -> tuple[WordTokenizer, str]:
  """Returns (tokenizer, description of what was used).

  ``auto``: real NLTK if its Punkt data is installed; else ``punkt`` when params or training
  text are given; else ``punkt_untrained``.
  """
  if mode not in TOKENIZER_MODES:
    raise ValueError(f"tokenizer mode must be one of {TOKENIZER_MODES}, got {mode!r}")
  if mode == "auto":
    if nltk_punkt_available():
      mode = "nltk"
    elif punkt_params is not None or train_texts is not None:
      mode = "punkt"
    else:  # closer to trained Punkt than no split (results/xor_tokenizer_deviation.md)
      mode = "punkt_untrained"
  if mode == "nltk":
    from nltk.tokenize import word_tokenize

    if not nltk_punkt_available():
      raise LookupError("tokenizer 'nltk' needs NLTK's English Punkt data, which is not installed")
    return word_tokenize, "nltk.word_tokenize (official Punkt model)"
  if mode == "line":
    return make_word_tokenizer(None), "word_tokenize(preserve_line=True): no sentence split"
  if mode == "punkt_untrained":
    return make_word_tokenizer(PunktSentenceTokenizer().tokenize), "untrained Punkt + treebank"
  if punkt_params is not None:
    params, source = load_punkt_params(punkt_params), f"params {os.fspath(punkt_params)}"
  elif train_texts is not None:
    params = train_punkt(train_texts, train_chars)
    source = f"trained on the first {train_chars} characters of the corpus"
  else:
    raise ValueError("tokenizer 'punkt' needs punkt_params or training texts (a corpus)")
  logging.info("Punkt %s: %d abbreviations", source, len(params.abbrev_types))
  return make_word_tokenizer(
    PunktSentenceTokenizer(params).tokenize
  ), f"Punkt ({source}) + treebank"
