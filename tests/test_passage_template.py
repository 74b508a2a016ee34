"""One rule for a passage's text (``formats.passage_text``): training and indexing see the same
``title text``; an index built with another template records it, and its explanations
re-tokenise with it."""

import os

import pytest
import sentencepiece as spm

from xtr_jax.data import formats
from xtr_jax.index.corpus_text import CorpusTexts
from xtr_jax.index.encode import EncodeParams, text_to_encode
from xtr_jax.index.explain import Explainer
from xtr_jax.index.retriever import Retriever
from xtr_jax.index.testing import build_tiny_index, make_tiny_setup


def test_default_rule_is_title_space_text_without_empty_title():
  assert formats.passage_text("Paris", "is a city.") == "Paris is a city."
  assert formats.passage_text("", "no title") == "no title"
  assert formats.passage_text("T", "x", "{id}|{title}: {text} ", id="p7") == "p7|T: x"
  p = formats.Passage("p1", "body", "Head")
  assert text_to_encode(p, EncodeParams()) == formats.passage_text("Head", "body")
  assert text_to_encode(p, EncodeParams(passage_template="{text} ({title})")) == "body (Head)"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  return make_tiny_setup(str(tmp_path_factory.mktemp("tpl")), num_passages=12)


@pytest.mark.parametrize("template", [None, "{text} -- {title}"])
def test_index_records_its_template_and_explanations_reuse_it(tiny, tmp_path, template):
  index_dir = build_tiny_index(tiny, os.path.join(tmp_path, "idx"), passage_template=template)
  retriever = Retriever.load(index_dir)
  assert retriever.index.manifest["encode"]["passage_template"] == template
  explainer = Explainer(retriever, CorpusTexts(tiny.corpus, retriever.index.passage_ids))
  sp = spm.SentencePieceProcessor(model_file=tiny.vocabulary)
  lengths = []
  for row, passage in enumerate(formats.read_corpus(tiny.corpus)):
    text = formats.passage_text(passage.title, passage.text, template, passage.id)
    pieces = [sp.id_to_piece(i) for i in sp.encode(text)] + ["</s>"]
    assert explainer.passage_pieces(row) == pieces
    lengths.append(len(pieces))
  assert sum(lengths) == len(
    retriever.index.token_to_passage
  )  # the index encoded exactly those texts
