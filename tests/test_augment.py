"""Passage augmentation with generated questions: maths vs numpy loops, streaming, end to end."""

import json
import zlib

import numpy as np
import pytest

from xtr_jax.data.readers import GeneratedQueries
from xtr_jax.index import augment

D = 8


def _vec(text: str) -> np.ndarray:
  rng = np.random.default_rng(zlib.crc32(text.encode()))
  v = rng.normal(size=D).astype(np.float32)
  return v / np.linalg.norm(v)


def fake_token_encoder(texts):
  """One unit vector per word: deterministic, so expected outputs can be built by hand."""
  return [np.stack([_vec(w) for w in t.split()]) for t in texts]


def fake_single_encoder(texts):
  return np.stack([_vec(t) for t in texts])


RECORDS = [
  GeneratedQueries("p0", {"ja": ["a b", "c"], "ko": ["d e f"]}),
  GeneratedQueries("p1", {"ko": ["g"], "ja": [" "]}),  # blank questions are skipped
  GeneratedQueries("p2", {}),
  GeneratedQueries("p3", {"th": ["h i"], "ja": ["j"]}),
  GeneratedQueries("p4", {"ja": ["k l m n"]}),
]


@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_single_vector_matches_loop(reduce):
  rng = np.random.default_rng(0)
  p, qs = rng.normal(size=D), rng.normal(size=(3, D))
  alpha = 0.3
  expected = np.zeros(D)
  for j in range(D):
    pooled = 0.0
    for q in qs:
      pooled += q[j]
    if reduce == "mean":
      pooled /= len(qs)
    expected[j] = (1 - alpha) * p[j] + alpha * pooled
  np.testing.assert_allclose(augment.augment_single_vector(p, qs, alpha, reduce), expected, 1e-5)
  np.testing.assert_allclose(augment.augment_single_vector(p, np.zeros((0, D))), p, 1e-6)
  with pytest.raises(ValueError, match="reduce='max'"):
    augment.augment_single_vector(p, qs, reduce="max")


def test_passage_matrix_uses_each_passages_own_questions():
  ids = ["p0", "p1", "p2", "p3", "p4", "p5"]
  mat = np.random.default_rng(1).normal(size=(6, D)).astype(np.float32)
  out = augment.augment_passage_matrix(mat, ids, RECORDS, fake_single_encoder, alpha=0.01)
  q0 = [_vec(t) for t in ["a b", "c", "d e f"]]
  np.testing.assert_allclose(out[0], 0.99 * mat[0] + 0.01 * np.sum(q0, 0), rtol=1e-5)
  np.testing.assert_allclose(out[1], 0.99 * mat[1] + 0.01 * _vec("g"), rtol=1e-5)
  np.testing.assert_array_equal(out[2], mat[2])  # no questions
  np.testing.assert_array_equal(out[5], mat[5])  # no record
  only_ja = augment.augment_passage_matrix(mat, ids, RECORDS, fake_single_encoder, languages=["ja"])
  np.testing.assert_allclose(only_ja[3], 0.99 * mat[3] + 0.01 * _vec("j"), rtol=1e-5)
  with pytest.raises(KeyError, match="'p3'"):
    augment.augment_passage_matrix(mat[:3], ids[:3], RECORDS, fake_single_encoder)


@pytest.mark.parametrize("chunk_size", [1, 2, 64])
def test_token_extra_vectors_stream(chunk_size):
  out = dict(
    augment.extra_vectors_from_generated(
      RECORDS, fake_token_encoder, weight=0.5, chunk_size=chunk_size
    )
  )
  assert list(out) == ["p0", "p1", "p3", "p4"]  # in input order, empty ones skipped
  # p0: languages sorted (ja then ko), questions in order, every word's vector, times 0.5.
  expected = np.stack([_vec(w) for w in "a b c d e f".split()]) * 0.5
  np.testing.assert_allclose(out["p0"], expected, rtol=1e-6)
  np.testing.assert_allclose(out["p1"], _vec("g")[None] * 0.5, rtol=1e-6)
  assert out["p4"].shape == (4, D)
  only_th = dict(
    augment.extra_vectors_from_generated(RECORDS, fake_token_encoder, languages=["th"])
  )
  assert list(only_th) == ["p3"] and only_th["p3"].shape == (2, D)


class WordTokenizer:
  """Word-level stand-in for index.encode.Tokenizer: a fixed id per word, then EOS (1)."""

  def __init__(self):
    self.ids: dict[str, int] = {}

  def encode(self, texts, max_length):
    return [
      [self.ids.setdefault(w, len(self.ids) + 2) for w in t.split()][: max_length - 1] + [1]
      for t in texts
    ]


class IdEncoder:
  """Stand-in for TokenEncoder.encode_tokens: one unit vector per token id."""

  def encode_tokens(self, token_ids, batch_size, max_length, buckets):
    return [np.stack([_vec(str(t)) for t in ids]).astype(np.float16) for ids in token_ids]


FREQUENT = [
  GeneratedQueries("q0", {"fi": ["mikä on x"], "ru": ["что y"]}),
  GeneratedQueries("q1", {"fi": ["mikä on z"]}),
  GeneratedQueries("q2", {"fi": ["mikä w"], "ru": ["что"]}),
  GeneratedQueries("q3", {}),  # no questions: not counted among the augmented passages
]


def test_frequent_piece_ids_by_passage_share():
  tok = WordTokenizer()
  # 3 augmented passages: EOS and "mikä" in 3, "on" and "что" in 2, x y z w in 1.
  ids = lambda words: {tok.encode([w], 8)[0][0] for w in words}  # noqa: E731
  assert augment.frequent_piece_ids(FREQUENT, tok, 0.5) == ids(["mikä", "on", "что"]) | {1}
  assert augment.frequent_piece_ids(FREQUENT, tok, 0.7) == ids(["mikä"]) | {1}
  assert augment.frequent_piece_ids(FREQUENT, tok, 1.0) == frozenset()
  # counted over the kept languages only: among fi questions "что" is absent.
  only_fi = augment.frequent_piece_ids(FREQUENT, tok, 0.5, languages=["fi"])
  assert only_fi == ids(["mikä", "on"]) | {1}
  with pytest.raises(ValueError, match="max_df=0"):
    augment.frequent_piece_ids(FREQUENT, tok, 0.0)


def test_dropped_pieces_leave_only_content_vectors():
  tok = WordTokenizer()
  drop = augment.frequent_piece_ids(FREQUENT, tok, 0.5)
  encode = augment.token_encode_fn(IdEncoder(), tok, max_length=16, drop_ids=drop)
  out = dict(augment.extra_vectors_from_generated(FREQUENT, encode, weight=0.5))
  # q2's ru question is all frequent pieces ("что" + EOS): only "w" remains for q2.
  assert list(out) == ["q0", "q1", "q2"]
  vec = lambda w: _vec(str(tok.ids[w])) * 0.5  # noqa: E731
  np.testing.assert_allclose(out["q0"], np.stack([vec("x"), vec("y")]), atol=1e-3)
  np.testing.assert_allclose(out["q2"], vec("w")[None], atol=1e-3)
  # a passage whose every question token is dropped gets no extra vectors at all
  everything = augment.frequent_piece_ids(FREQUENT, tok, 0.3)
  encode_all = augment.token_encode_fn(IdEncoder(), tok, max_length=16, drop_ids=everything)
  assert dict(augment.extra_vectors_from_generated(FREQUENT, encode_all)) == {}
  pooled = dict(augment.extra_vectors_from_generated(FREQUENT, encode, mode="pooled_per_language"))
  assert {k: v.shape[0] for k, v in pooled.items()} == {"q0": 2, "q1": 1, "q2": 1}


def test_pooled_vector_per_language():
  out = dict(
    augment.extra_vectors_from_generated(
      RECORDS, fake_token_encoder, mode="pooled_per_language", chunk_size=2
    )
  )
  ja = np.mean([_vec(w) for w in "a b c".split()], 0)
  ko = np.mean([_vec(w) for w in "d e f".split()], 0)
  np.testing.assert_allclose(
    out["p0"], np.stack([ja / np.linalg.norm(ja), ko / np.linalg.norm(ko)]), rtol=1e-5
  )
  np.testing.assert_allclose(np.linalg.norm(out["p3"], axis=1), [1.0, 1.0], rtol=1e-5)
  with pytest.raises(ValueError, match="mode='words'"):
    list(augment.extra_vectors_from_generated(RECORDS, fake_token_encoder, mode="words"))


def test_reads_the_generate_output_file_with_clear_errors(tmp_path):
  path = tmp_path / "generated.jsonl"
  path.write_text(
    json.dumps({"docid": "p0", "generated_queries": {"ja": ["a b"]}})
    + "\n"
    + json.dumps({"docid": "p1", "generated_queries": {"ja": "not a list"}})
    + "\n"
  )
  stream = augment.extra_vectors_from_generated(str(path), fake_token_encoder)
  with pytest.raises(ValueError, match="generated.jsonl:2"):
    list(stream)


def test_index_end_to_end_generated_question_finds_its_passage(tmp_path):
  """Tiny corpus + random XTR model: a query equal to a generated question of passage X
  retrieves X first only once X is augmented with that question's token vectors."""
  from xtr_jax.data.tokenizer import Tokenizer  # noqa: PLC0415
  from xtr_jax.index.build import build_from_corpus  # noqa: PLC0415
  from xtr_jax.index.encode import EncodeParams, TokenEncoder  # noqa: PLC0415
  from xtr_jax.index.retriever import Retriever, load_model  # noqa: PLC0415
  from xtr_jax.index.testing import make_tiny_setup  # noqa: PLC0415

  setup = make_tiny_setup(str(tmp_path / "tiny"), num_passages=20)
  params, config, proj_dim, fingerprint, extra = load_model(setup.checkpoint)
  tokenizer = Tokenizer(setup.vocabulary, config.vocab_size, config.eos_token_id)
  encoder = TokenEncoder(params, config, proj_dim)
  question = "island bridge temple song"
  target = setup.passage_ids[7]
  generated = tmp_path / "generated.jsonl"
  generated.write_text(json.dumps({"docid": target, "generated_queries": {"ja": [question]}}))
  encode = augment.token_encode_fn(encoder, tokenizer, max_length=16)
  n_question_tokens = len(tokenizer.encode([question], 16)[0])
  results = {}
  for name, extra_vectors in [
    ("plain", None),
    ("augmented", augment.extra_vectors_from_generated(str(generated), encode)),
  ]:
    out = str(tmp_path / name)
    manifest = build_from_corpus(
      setup.corpus,
      out,
      params,
      config,
      proj_dim=proj_dim,
      model_fingerprint=fingerprint,
      tokenizer=tokenizer,
      checkpoint=setup.checkpoint,
      encode_params=EncodeParams(max_length=64, batch_size=8),
      extra_vectors=extra_vectors,
      backend="brute_force",
      progress=False,
    )
    results[name] = (manifest, Retriever.load(out).search([question], k=3, exact=True)[0])
  plain, augmented = results["plain"], results["augmented"]
  assert augmented[0]["num_tokens"] == plain[0]["num_tokens"] + n_question_tokens
  top_pid, top_score = augmented[1][0]
  assert top_pid == target
  # Every query token finds itself (cosine 1, float16 storage) among the extra vectors.
  assert top_score == pytest.approx(1.0, abs=1e-2)  # MaxSim averaged over query tokens
  assert dict(plain[1]).get(target, -1e9) < top_score - 1e-3


def test_index_command_augment_with(tmp_path):
  import gin  # noqa: PLC0415
  from xtr_jax import cli  # noqa: PLC0415
  from xtr_jax.index.store import read_manifest  # noqa: PLC0415
  from xtr_jax.index.testing import make_tiny_setup  # noqa: PLC0415

  setup = make_tiny_setup(str(tmp_path / "tiny"), num_passages=6)
  generated = tmp_path / "generated.jsonl"
  generated.write_text(
    json.dumps({"docid": setup.passage_ids[1], "generated_queries": {"ja": ["river", "king"]}})
  )
  out = str(tmp_path / "index")
  argv = [
    "index",
    f"--checkpoint={setup.checkpoint}",
    f"--corpus={setup.corpus}",
    f"--output={out}",
    f"--augment_with={generated}",
    "--augment_mode=pooled_per_language",
    "--augment_weight=0.5",
    "--gin.index_settings.backend='brute_force'",
  ]
  try:
    assert cli.main(argv) == 0
  finally:
    gin.clear_config()
  manifest = read_manifest(out)
  assert manifest["num_extra_tokens"] == 1  # one pooled vector for one language
  assert manifest["extra_weight"] == 0.5


def test_index_command_augment_max_df(tmp_path, capsys):
  import gin  # noqa: PLC0415
  from xtr_jax import cli  # noqa: PLC0415
  from xtr_jax.index.store import read_manifest  # noqa: PLC0415
  from xtr_jax.index.testing import make_tiny_setup  # noqa: PLC0415

  setup = make_tiny_setup(str(tmp_path / "tiny"), num_passages=6)
  generated = tmp_path / "generated.jsonl"
  generated.write_text(
    "".join(
      json.dumps({"docid": setup.passage_ids[i], "generated_queries": {"ja": [q]}}) + "\n"
      for i, q in [(0, "river"), (1, "king"), (2, "river king")]
    )
  )
  base = [
    "index",
    f"--checkpoint={setup.checkpoint}",
    f"--corpus={setup.corpus}",
    f"--augment_with={generated}",
    "--gin.index_settings.backend='brute_force'",
  ]
  tokens = {}
  for name, extra in [("all", []), ("df", ["--augment_max_df=0.5"])]:
    out = str(tmp_path / name)
    try:
      assert cli.main([*base, f"--output={out}", *extra]) == 0
    finally:
      gin.clear_config()
    tokens[name] = read_manifest(out)["num_extra_tokens"]
  # Each piece that is in 2 of the 3 passages' questions (and EOS, in all 3) loses its vectors.
  from xtr_jax.data.tokenizer import Tokenizer  # noqa: PLC0415

  tok = Tokenizer(setup.vocabulary)
  ids = tok.encode(["river", "king", "river king"], 64)
  counts: dict[int, int] = {}
  for row in ids:
    for t in set(row):
      counts[t] = counts.get(t, 0) + 1
  kept = sum(1 for row in ids for t in row if counts[t] <= 1.5)
  assert tokens["all"] == sum(len(r) for r in ids)
  assert tokens["df"] == kept < tokens["all"]
  with pytest.raises(SystemExit):
    cli.main([*base, f"--output={tmp_path / 'bad'}", "--augment_max_df=0"])
  assert "--augment_max_df 0.0: expected a fraction in (0, 1]" in capsys.readouterr().err
  assert not (tmp_path / "bad").exists()
  no_file = [a for a in base if not a.startswith("--augment_with")]
  with pytest.raises(SystemExit):
    cli.main([*no_file, f"--output={tmp_path / 'bad'}", "--augment_max_df=0.5"])
  assert "--augment_max_df / --augment_weight need --augment_with" in capsys.readouterr().err
  assert not (tmp_path / "bad").exists()
