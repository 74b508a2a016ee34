"""XOR-Retrieve R@kt against a small independent implementation of the official algorithm."""

import logging
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xtr_jax.evaluation import tokenize, xor_retrieve
from xtr_jax.evaluation.io import XorPrediction


def split_tokenize(text):
  return text.split()


def reference_rkt(preds, gold, n_tokens, tok):
  """The official eval_xor_retrieve.py loop, written out plainly."""
  hits, counts = {}, {}
  for p in preds:
    if p.id not in gold:
      continue
    span = [a for a in gold[p.id] if a != "yes" and a != "no"]
    if len(span) == 0:
      continue
    counts[p.lang] = counts.get(p.lang, 0) + 1
    all_tokens = []
    for c in p.ctxs:
      all_tokens.extend(tok(c))
    s = " ".join(all_tokens[:n_tokens])
    if any(a in s for a in span):
      hits[p.lang] = hits.get(p.lang, 0) + 1
  per_lang = {lang: hits.get(lang, 0) / counts[lang] * 100 for lang in counts}
  return per_lang, (statistics.mean(per_lang.values()) if per_lang else None)


def filler(n, start=0):
  return " ".join(f"w{i}" for i in range(start, start + n))


def test_token_boundary_answer_needs_token_2001():
  ctx = filler(1999) + " Answer Here " + filler(10)
  preds = [XorPrediction("q", "ja", (ctx,))]
  res = xor_retrieve.evaluate_rkt(preds, {"q": ["Answer Here"]}, split_tokenize)
  assert res[2].per_query == {"q": 0.0}  # "Here" is token 2001
  assert res[5].per_query == {"q": 1.0}
  res = xor_retrieve.evaluate_rkt(preds, {"q": ["Answer"]}, split_tokenize)
  assert res[2].per_query == {"q": 1.0}  # token 2000 is in


def test_partial_token_match_and_answer_across_passages():
  # Substring of a token counts (the official check is a plain substring test) ...
  preds = [XorPrediction("q", "fi", ("Helsinkiläinen asuu", "x"))]
  assert xor_retrieve.evaluate_rkt(preds, {"q": ["Helsinki"]}, split_tokenize)[2].macro == 100
  # ... and an answer spanning the end of one passage and the start of the next matches too.
  preds = [XorPrediction("q", "fi", ("the city of New", "York is big"))]
  assert xor_retrieve.evaluate_rkt(preds, {"q": ["New York"]}, split_tokenize)[2].macro == 100


def test_treebank_tokenisation_splits_answers():
  tok, _ = tokenize.get_word_tokenizer("line")
  # Treebank splits "don't" into "do n't" and "5,000." into "5,000 .", so "don't" cannot match.
  preds = [XorPrediction("q", "ko", ("They don't pay 5,000 dollars.",))]
  res = xor_retrieve.evaluate_rkt(preds, {"q": ["don't"]}, tok)
  assert res[2].macro == 0
  res = xor_retrieve.evaluate_rkt(preds, {"q": ["5,000 dollars"]}, tok)
  assert res[2].macro == 100
  assert tok("They don't pay.") == ["They", "do", "n't", "pay", "."]


def test_yes_no_dropped_and_case_sensitive():
  preds = [
    XorPrediction("a", "ja", ("yes no maybe",)),
    XorPrediction("b", "ja", ("yes Paris",)),
    XorPrediction("c", "ja", ("Yes it is",)),
    XorPrediction("d", "ru", ("paris",)),
  ]
  gold = {"a": ["yes", "no"], "b": ["no", "Paris"], "c": ["Yes"], "d": ["Paris"]}
  res = xor_retrieve.evaluate_rkt(preds, gold, split_tokenize)
  # "a" is skipped entirely (only yes/no); "Yes" is not dropped (the check is case-sensitive).
  assert res[2].counts == {"ja": 2, "ru": 1}
  assert res[2].per_lang == {"ja": 100.0, "ru": 0.0}
  assert res[2].macro == 50.0
  assert set(res[2].per_query) == {"b", "c", "d"}


def test_missing_questions_not_counted_but_warned(caplog):
  preds = [XorPrediction("a", "ja", ("Tokyo",))]
  gold = {"a": ["Tokyo"], "b": ["Osaka"], "c": ["no"]}
  with caplog.at_level(logging.WARNING):
    res = xor_retrieve.evaluate_rkt(preds, gold, split_tokenize)
  assert res[2].counts == {"ja": 1} and res[2].macro == 100.0
  assert "1 of 2 gold questions" in caplog.text


def test_language_without_counted_questions_is_left_out_of_the_macro():
  preds = [XorPrediction("a", "ja", ("Tokyo",)), XorPrediction("zz", "te", ("x",))]
  res = xor_retrieve.evaluate_rkt(preds, {"a": ["Kyoto"]}, split_tokenize)
  assert res[5].per_lang == {"ja": 0.0}


words = st.sampled_from(["a", "b", "c", "dd", "e."])


@settings(max_examples=30, deadline=None)
@given(
  st.lists(
    st.tuples(
      st.sampled_from(["ja", "fi", "te"]),
      st.lists(st.integers(200, 1800), min_size=1, max_size=6),
      st.lists(st.lists(words, min_size=1, max_size=3), min_size=1, max_size=3),
      st.integers(0, 10_000),
    ),
    min_size=1,
    max_size=6,
  )
)
def test_matches_reference_on_random_runs(cases):
  preds, gold = [], {}
  for i, (lang, sizes, answer_words, seed) in enumerate(cases):
    vocab = ["a", "b", "c", "dd", "e.", "f"]
    ctxs = tuple(
      " ".join(vocab[(seed * 31 + j * 7 + t * t) % 6] for t in range(n))
      for j, n in enumerate(sizes)
    )
    preds.append(XorPrediction(f"q{i}", lang, ctxs))
    gold[f"q{i}"] = [" ".join(w) for w in answer_words] + (["yes"] if seed % 3 == 0 else [])
  res = xor_retrieve.evaluate_rkt(preds, gold, split_tokenize)
  for k in (2, 5):
    per_lang, macro = reference_rkt(preds, gold, k * 1000, split_tokenize)
    assert res[k].per_lang == pytest.approx(per_lang)
    assert res[k].macro == pytest.approx(macro)


def test_punkt_params_round_trip(tmp_path):
  text = "Dr. Smith met Mr. Jones in Jan. last year. " * 40 + "Prof. Lee left. " * 20
  params = tokenize.train_punkt([text])
  path = tmp_path / "punkt.json"
  tokenize.save_punkt_params(path, params)
  tok, desc = tokenize.get_word_tokenizer("punkt", punkt_params=path)
  trained, _ = tokenize.get_word_tokenizer("punkt", train_texts=[text])
  sample = "Dr. Smith left. Then Mr. Jones came."
  assert tok(sample) == trained(sample)
  assert "params" in desc
  with pytest.raises(FileNotFoundError, match="nope.json"):
    tokenize.get_word_tokenizer("punkt", punkt_params=tmp_path / "nope.json")
  with pytest.raises(ValueError, match="tokenizer mode"):
    tokenize.get_word_tokenizer("bogus")
