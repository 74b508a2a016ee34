"""Vocabulary, SeqIO tasks/mixtures, feature converters and get_batches on written fixtures.

Expected token ids come from the Python SentencePiece processor plus numpy padding, an
independent path from the tf.data converter under test.
"""

import collections
import json

import numpy as np
import pytest

LANGS = ("ja", "fi", "de")
N_PER_LANG = 40


def _texts():
  words = "alpha beta gamma delta river tunnel mountain city station bridge".split()
  for i in range(200):
    yield " ".join(words[(i * j) % len(words)] for j in range(1, 2 + i % 9))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  """A tiny SWIM-IR + XOR layout and a tiny vocabulary, wired in through env vars."""
  root = tmp_path_factory.mktemp("data")
  xl = root / "swim" / "cross_lingual"
  xl.mkdir(parents=True)
  for code in LANGS:
    rows = [
      {
        "_id": f"{code}-{i}",
        "lang": code,
        "code": code,
        "query": f"{code} question {i} about river {i % 7}",
        "title": f"Title {i}",
        "text": "passage " + " ".join(["mountain"] * (i % 30)) + f" number {i}",
        "source": "xor_tydi_train_gold_paragraph" if i % 2 == 0 else "xquad",
      }
      for i in range(N_PER_LANG)
    ]
    (xl / f"{code}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  xor = root / "xor"
  xor.mkdir()
  (xor / "corpus.tsv").write_text(
    "id\ttext\ttitle\n" + "".join(f"d{i}\tcorpus text {i}\tCT{i}\n" for i in range(10))
  )
  (xor / "dev.jsonl").write_text(
    "".join(
      json.dumps({"id": f"q{i}", "question": f"dev question {i}", "lang": "ja", "answers": ["x"]})
      + "\n"
      for i in range(6)
    )
  )
  (xor / "dev.qrels").write_text("".join(f"q{i} 0 d{i} 1\n" for i in range(6)))
  dpr = [
    {
      "question": f"dpr question {i}",
      "lang": "fi",
      "answers": [],
      "positive_ctxs": [{"title": "P", "text": f"positive {i}", "passage_id": f"p{i}"}],
      "hard_negative_ctxs": [{"title": "N", "text": f"negative {i} {j}"} for j in range(i % 3)],
    }
    for i in range(8)
  ]
  (xor / "xor_train_full.json").write_text(json.dumps(dpr))

  from xtr_jax.data import vocab

  model = vocab.train_sentencepiece(_texts(), str(root / "spm" / "tiny"), 120)
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("XTR_JAX_SWIM_IR_DIR", str(root / "swim"))
    mp.setenv("XTR_JAX_XOR_DIRS", str(xor))
    mp.setenv("XTR_JAX_VOCAB", model)
    import tasks

    tasks.register_all()
    yield {"root": root, "vocab": vocab.load_vocabulary(model), "xor": xor}


def _ref(ids, length, eos=1):
  ids = list(ids)[: length - 1] + [eos]
  return np.array(ids + [0] * (length - len(ids)), np.int32)


def _records(data, code, split=None):
  """The fixture's records of a language; ``split`` keeps one side of the 5% id hash."""
  from xtr_jax.data.pairs import is_heldout

  path = data["root"] / "swim" / "cross_lingual" / f"{code}.jsonl"
  rows = [json.loads(line) for line in path.read_text().splitlines()]
  if split is None:
    return rows
  return [r for r in rows if is_heldout(r["_id"], 0.05) == (split == "validation")]


def test_vocabulary_has_t5_special_ids(data, tmp_path):
  from xtr_jax.data import vocab

  v = data["vocab"]
  sp = v.tokenizer
  assert (sp.pad_id(), sp.eos_id(), sp.unk_id(), sp.bos_id()) == (0, 1, 2, -1)
  assert v.decode(v.encode("river tunnel")) == "river tunnel"
  with pytest.raises(FileNotFoundError, match="missing.model"):
    vocab.load_vocabulary(str(tmp_path / "missing.model"))
  # train-vocab CLI: atomic output (no temp dirs left), from the project's dataset layout.
  rc = vocab.main(
    [
      "--output",
      str(tmp_path / "cli" / "v"),
      "--vocab_size",
      "60",
      "--swim_ir_dir",
      str(data["root"] / "swim"),
      "--xor_dir",
      str(data["xor"]),
      "--corpus",
      str(data["xor"] / "corpus.tsv"),
    ]
  )
  assert rc == 0
  assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == ["v.model", "v.vocab"]
  assert vocab.load_vocabulary(str(tmp_path / "cli" / "v.model")).tokenizer.eos_id() == 1


def test_dual_encoder_batches_match_reference_and_keep_ids(data):
  from xtr_jax.data import pipeline, readers

  sp = data["vocab"].tokenizer
  lengths = {"query": 8, "passage": 12}
  it = pipeline.get_batches(
    "swim_ir_xling_ja", "train", lengths, 5, seed=0, shuffle=False, repeat=False
  )
  batches = list(it)
  recs = _records(data, "ja", "train")
  assert len(batches) == len(recs) // 5 and len(recs) < N_PER_LANG
  for b, batch in enumerate(batches):
    assert batch["query_tokens"].shape == (5, 8) and batch["query_tokens"].dtype == np.int32
    assert batch["passage_tokens"].shape == (5, 12) and batch["passage_tokens"].dtype == np.int32
    for j in range(5):
      r = recs[b * 5 + j]
      assert batch["query_id"][j] == r["_id"] and batch["passage_id"][j] == r["_id"]
      np.testing.assert_array_equal(batch["query_tokens"][j], _ref(sp.encode(r["query"]), 8))
      passage = readers.passage_text(r["title"], r["text"])
      np.testing.assert_array_equal(batch["passage_tokens"][j], _ref(sp.encode(passage), 12))
  # Long passages are truncated and still end with EOS.
  assert (batches[-1]["passage_tokens"][:, -1] == 1).any()


def test_drop_remainder_fixed_shapes(data):
  from xtr_jax.data import pipeline

  batches = list(
    pipeline.get_batches(
      "swim_ir_xling_ja", "train", {"query": 4}, 7, seed=0, shuffle=False, repeat=False
    )
  )
  assert len(batches) == len(_records(data, "ja", "train")) // 7
  assert {b["query_tokens"].shape for b in batches} == {(7, 4)}


def test_same_seed_same_stream_and_resume(data):
  from xtr_jax.data import pipeline

  lengths = {"query": 6, "passage": 6}

  def ids(seed, start_step=0, n=6):
    it = pipeline.get_batches(
      "swim_ir_xling_2lang", "train", lengths, 4, seed=seed, start_step=start_step
    )
    return [next(it)["query_id"].tolist() for _ in range(n)]

  full = ids(7, n=8)
  assert ids(7, n=8) == full
  assert ids(8, n=8) != full
  assert ids(7, start_step=3, n=5) == full[3:]


def test_host_sharding_is_disjoint_and_complete(data):
  from xtr_jax.data import pipeline

  seen = []
  for shard in range(2):
    it = pipeline.get_batches(
      "swim_ir_xling_fi",
      "train",
      {"query": 4},
      1,
      seed=0,
      shard_index=shard,
      num_shards=2,
      shuffle=False,
      repeat=False,
    )
    seen.append({b["query_id"][0] for b in it})
  assert not seen[0] & seen[1]
  assert seen[0] | seen[1] == {r["_id"] for r in _records(data, "fi", "train")}


def test_validation_split_is_the_held_out_hash_fraction(data):
  from xtr_jax.data import pipeline

  def ids(split):
    it = pipeline.get_batches("swim_ir_xling_fi", split, {"query": 4}, 1, seed=0, shuffle=False,
                              repeat=False)  # fmt: skip
    return [b["query_id"][0] for b in it]

  train, validation = ids("train"), ids("validation")
  assert validation == [r["_id"] for r in _records(data, "fi", "validation")] and validation
  assert not set(train) & set(validation)
  assert set(train) | set(validation) == {f"fi-{i}" for i in range(N_PER_LANG)}
  with pytest.raises(ValueError, match="has no split 'dev'; valid splits: train, validation"):
    next(pipeline.get_batches("swim_ir_xling_fi", "dev", {"query": 4}, 1, seed=0))


def test_mixture_rates_within_tolerance(data):
  from xtr_jax.data import pipeline

  # Default order starts ja, fi: the 2-language mixture samples them at equal rates.
  it = pipeline.get_batches("swim_ir_xling_2lang", "train", {"query": 4}, 50, seed=3)
  langs = collections.Counter(str(x) for _ in range(8) for x in next(it)["lang"].tolist())
  assert set(langs) == {"ja", "fi"}
  assert abs(langs["ja"] / 400 - 0.5) < 0.08


def test_seq2seq_xqg_batches(data):
  from xtr_jax.data import pipeline, readers

  sp = data["vocab"].tokenizer
  lengths = {"inputs": 24, "targets": 10}
  b = next(
    pipeline.get_batches("xqg_de", "train", lengths, 3, seed=0, converter="seq2seq", shuffle=False)
  )
  assert b["encoder_input_tokens"].shape == (3, 24) and b["decoder_target_tokens"].shape == (3, 10)
  r = _records(data, "de", "train")[0]
  prompt = "Generate a German question for this passage: " + readers.passage_text(
    r["title"], r["text"]
  )
  np.testing.assert_array_equal(b["encoder_input_tokens"][0], _ref(sp.encode(prompt), 24))
  target = _ref(sp.encode(r["query"]), 10)
  np.testing.assert_array_equal(b["decoder_target_tokens"][0], target)
  np.testing.assert_array_equal(b["decoder_input_tokens"][0], np.r_[0, target[:-1]])
  np.testing.assert_array_equal(b["decoder_loss_weights"][0], (target > 0).astype(np.int32))


def test_xor_tasks_negatives_dev_pairs_queries_corpus(data):
  from xtr_jax.data import pipeline

  sp = data["vocab"].tokenizer
  lengths = {"query": 6, "passage": 5, "num_negatives": 2}
  batches = list(
    pipeline.get_batches(
      "xor_tydi_retrieve_fi", "train", lengths, 4, seed=0, shuffle=False, repeat=False
    )
  )
  neg = np.concatenate([b["negative_tokens"] for b in batches])
  assert neg.shape == (8, 2, 5) and neg.dtype == np.int32
  for i in range(8):
    for j in range(2):
      want = _ref(sp.encode(f"N negative {i} {j}"), 5) if j < i % 3 else np.zeros(5, np.int32)
      np.testing.assert_array_equal(neg[i, j], want)
  assert batches[0]["passage_id"].tolist() == ["p0", "p1", "p2", "p3"]

  # SWIM-IR-layout gold pairs (source xor_tydi*) when no DPR file has the language.
  ja = list(pipeline.get_batches("xor_tydi_retrieve_ja", "train", {"query": 4}, 1, seed=0,
                                 shuffle=False, repeat=False))  # fmt: skip
  assert [b["query_id"][0] for b in ja] == [f"ja-{i}" for i in range(0, N_PER_LANG, 2)]

  dev = list(pipeline.get_batches("xor_tydi_retrieve_ja", "dev", {"query": 4, "passage": 8}, 2,
                                  seed=0, shuffle=False, repeat=False))  # fmt: skip
  pairs = [(q, p) for b in dev for q, p in zip(b["query_id"], b["passage_id"])]
  assert pairs == [(f"q{i}", f"d{i}") for i in range(6)]
  np.testing.assert_array_equal(
    dev[0]["passage_tokens"][0], _ref(sp.encode("CT0 corpus text 0"), 8)
  )

  corpus = list(pipeline.get_batches("xor_tydi_corpus", "train", {"passage": 8}, 5, seed=0,
                                     shuffle=False, repeat=False))  # fmt: skip
  assert [p for b in corpus for p in b["passage_id"]] == [f"d{i}" for i in range(10)]
  assert set(corpus[0]) == {"passage_id", "passage_tokens"}

  q = next(pipeline.get_batches("xor_tydi_queries_ja", "dev", {"query": 8}, 6, seed=0,
                                shuffle=False, repeat=False))  # fmt: skip
  assert q["query_id"].tolist() == [f"q{i}" for i in range(6)]


def test_few_shot_is_seeded_subset(data):
  from xtr_jax.data import pipeline

  def ids():
    it = pipeline.get_batches("xor_tydi_retrieve_ja_4shot", "train", {"query": 4}, 1, seed=0,
                              shuffle=False, repeat=False)  # fmt: skip
    return [b["query_id"][0] for b in it]

  first = ids()
  assert len(first) == len(set(first)) == 4 and first == ids()
  assert set(first) <= {f"ja-{i}" for i in range(0, N_PER_LANG, 2)}


def test_clear_errors(data):
  from xtr_jax.data import pipeline

  with pytest.raises(ValueError, match="no SeqIO task or mixture named 'nope'"):
    next(pipeline.get_batches("nope", "train", {"query": 4}, 2, seed=0))
  with pytest.raises(ValueError, match="valid: dual_encoder, seq2seq"):
    next(pipeline.get_batches("swim_ir_xling_ja", "train", {"query": 4}, 2, seed=0, converter="x"))
  with pytest.raises(ValueError, match="no 'negatives'"):
    next(pipeline.get_batches("swim_ir_xling_ja", "train", {"passage": 4, "num_negatives": 2}, 2,
                              seed=0))  # fmt: skip
  with pytest.raises(ValueError, match="valid keys: query, passage, num_negatives"):
    next(pipeline.get_batches("swim_ir_xling_ja", "train", {"inputs": 4}, 2, seed=0))
  with pytest.raises(Exception, match="no SWIM-IR cross_lingual file for language 'ko'"):
    next(pipeline.get_batches("swim_ir_xling_ko", "train", {"query": 4}, 2, seed=0))


def test_shared_data_13_language_mixture(shared_data, data, monkeypatch):
  import tasks
  from xtr_jax.data import pipeline

  monkeypatch.setenv("XTR_JAX_SWIM_IR_DIR", str(shared_data / "pairs_swim_ir_layout"))
  tasks.register_all()
  try:
    import seqio

    mix = seqio.get_mixture_or_task("swim_ir_xling_alllang")
    assert len(mix.tasks) == 13
    it = pipeline.get_batches("swim_ir_xling_alllang", "train", {"query": 16, "passage": 32}, 64,
                              seed=0, shuffle=False)  # fmt: skip
    b = next(it)
    assert b["query_tokens"].shape == (64, 16) and b["passage_tokens"].shape == (64, 32)
    assert (b["query_tokens"][:, 0] != 0).all()
    assert len(set(b["lang"].tolist())) >= 8
  finally:
    monkeypatch.undo()
    tasks.register_all()
