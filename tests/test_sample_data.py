"""The shipped sample: deterministic, well-formed, every answer in its gold passage, and hard
enough that word matching (BM25) is clearly below 100 while staying above chance."""

import collections
import csv
import json

from xtr_jax.evaluation import io
from xtr_jax.experiments import bm25, sample_data


def _read(path):
  with open(path, encoding="utf-8") as f:
    return f.read()


def _jsonl(path):
  return [json.loads(line) for line in _read(path).splitlines()]


def test_sample_is_deterministic_and_consistent(tmp_path):
  a = sample_data.write_sample(tmp_path / "a", num_towns=20)
  b = sample_data.write_sample(tmp_path / "b", num_towns=20)
  for key in ("corpus", "dev", "qrels", "xor_train"):
    assert _read(a[key]) == _read(b[key])

  with open(a["corpus"], encoding="utf-8") as f:
    rows = list(csv.reader(f, delimiter="\t"))
  assert rows[0] == ["id", "text", "title"]
  passages = {r[0]: r[1] for r in rows[1:]}
  assert len(passages) == 20 * sample_data.PASSAGES_PER_TOWN

  dev = _jsonl(a["dev"])
  qrels = {}
  for line in _read(a["qrels"]).splitlines():
    qid, _, pid, rel = line.split()
    assert rel == "1"
    qrels[qid] = pid
  assert {q["id"] for q in dev} == set(qrels) and len(dev) == len(qrels)
  assert {q["lang"] for q in dev} <= set(sample_data.LANGUAGES)
  for q in dev:
    # The XOR R@kt metric needs the answer string inside the gold passage.
    assert q["answers"][0] in passages[qrels[q["id"]]]
    assert not qrels[q["id"]].endswith("_2")  # the transport passage answers nothing

  # Every training question names its town, in Latin letters or in its language's script
  # (less the last letter, which Russian declension may change), or gives the fact of its
  # passage that describes it.
  towns = {t["title"]: t for t in sample_data.make_world(20)}
  for code in sample_data.LANGUAGES:
    recs = _jsonl(f"{a['swim_ir_dir']}/{code}.jsonl")
    assert recs and all(set(r) == {"_id", "lang", "code", "query", "title", "text"} for r in recs)
    for r in recs:
      town = towns[r["title"]]
      forms = {town["name"], sample_data.name_in_script(town, code)}
      named = any(f[:-1] in r["query"] for f in forms)
      assert r["code"] == code and (named or _describes(town, r["_id"].split("-")[-2], r["query"]))


def _describes(town: dict, attribute: str, question: str) -> bool:
  """Does ``question`` pick ``town`` out by the fact DESCRIBED_BY gives for ``attribute``?"""
  fact = sample_data.DESCRIBED_BY.get(attribute)
  if fact is None:
    return False
  forms = {town[fact]}
  if fact == "mayor":
    forms |= {sample_data.mayor_in_script(town, c) for c in sample_data.LANGUAGES}
  return any(f in question for f in forms)


def test_described_questions_name_no_town_and_give_a_fact_of_one_passage(tmp_path):
  """At described_share 1 every question about founded, population, river and known_for
  whose describing fact is one town's alone leaves the name out and gives that fact, which
  stands in the gold passage; mayor questions and questions whose fact is shared still name
  the town; share 0 writes the named questions of the sample before the knob."""
  towns = sample_data.make_world(60)
  by_key = {t["key"]: t for t in towns}
  paths = sample_data.write_sample(tmp_path / "all", num_towns=60, described_share=1.0)
  passages = {
    r[0]: r[1] for r in csv.reader(open(paths["corpus"], encoding="utf-8"), delimiter="\t")
  }
  gold = {line.split()[0]: line.split()[2] for line in _read(paths["qrels"]).splitlines()}
  described = 0
  for q in _jsonl(paths["dev"]):
    key, attr = q["id"].split("-", 2)[2].rsplit("-", 1)
    town = by_key[key]
    names = {town["name"], sample_data.name_in_script(town, q["lang"])}
    named = any(n[:-1] in q["question"] for n in names)
    fact = sample_data.DESCRIBED_BY.get(attr)
    if fact and sum(t[fact] == town[fact] for t in towns) == 1:
      assert not named and _describes(town, attr, q["question"]), q
      assert town[fact] in passages[gold[q["id"]]]  # the fact is in the gold passage
      described += 1
    else:
      assert named, q
  assert described > 100
  q = sample_data.described_question(by_key[towns[0]["key"]], "known_for", "ru", native=True)
  assert q == f"Чем известен город, мэр которого {sample_data.mayor_in_script(towns[0], 'ru')}?"
  assert all(c in "абвгдежзийклмнопрстуфхцчшщъыьэюяАБВГДЕЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯ ,?" for c in q)
  none = sample_data.write_sample(tmp_path / "none", num_towns=60, described_share=0.0)
  for q in _jsonl(none["dev"]):
    town = by_key[q["id"].split("-", 2)[2].rsplit("-", 1)[0]]
    names = {town["name"], sample_data.name_in_script(town, q["lang"])}
    assert any(n[:-1] in q["question"] for n in names), q
  try:
    sample_data.write_sample(tmp_path / "bad", num_towns=4, described_share=-0.1)
  except ValueError as e:
    assert str(e) == "described_share: -0.1 is not between 0 and 1"
  else:
    raise AssertionError("a negative share was accepted")
  assert not (tmp_path / "bad").exists()


def test_names_are_transliterated_and_inflected_regularly():
  lanor = {"name": "Lanor", "parts": ((("l", "a"), ("n", "o")), "r"), "namesakes": False}
  scripts = {c: sample_data.name_in_script(lanor, c) for c in sample_data.LANGUAGES}
  assert scripts == {
    "ar": "لانور",
    "bn": "লানোর",
    "fi": "Lanor",
    "ja": "ラノル",
    "ko": "라노르",
    "ru": "Ланор",
    "te": "లానోర్",
  }
  ask = sample_data.question
  assert ask(lanor, "population", "fi") == "Mikä on Lanorin väkiluku?"
  assert ask(lanor, "population", "ru", native=True) == "Каково население Ланора?"
  assert ask(lanor, "population", "ru") == "Каково население Lanor?"  # Latin: not declined
  assert ask(lanor, "founded", "ko", native=True) == "라노르는 언제 설립되었습니까?"
  assert ask(lanor, "founded", "ko") == "Lanor은 언제 설립되었습니까?"
  # A name shared by two towns: the question says which region, in its own language.
  namesake = {**lanor, "namesakes": True, "region": "Highlands"}
  assert ask(namesake, "mayor", "ru", native=True) == "Кто мэр Ланора (Нагорье)?"
  assert ask(namesake, "founded", "ja", native=True) == "ラノル（高地地方）はいつ設立されましたか？"
  # Hangul syllables compose with a final consonant (ㄴ) where the coda allows it.
  kesan = {"name": "Kesan", "parts": ((("k", "e"), ("s", "a")), "n"), "namesakes": False}
  assert sample_data.name_in_script(kesan, "ko") == "케산"
  assert ask(kesan, "river", "ko", native=True) == "케산은 어느 강에 위치해 있습니까?"


def test_world_has_namesakes_shared_rivers_and_native_script_questions(tmp_path):
  towns = sample_data.make_world(120)
  assert len({t["key"] for t in towns}) == len({t["title"] for t in towns}) == 120
  names = collections.Counter(t["name"] for t in towns)
  assert 0 < sum(n for n in names.values() if n > 1) < 60 and max(names.values()) == 2
  for name, n in names.items():
    if n > 1:  # namesakes live in different regions
      assert len({t["region"] for t in towns if t["name"] == name}) == n
  rivers = collections.Counter((t["region"], t["river"]) for t in towns)
  assert max(rivers.values()) > 1
  for town in towns:
    transport = sample_data.passages_of(town)[2]
    assert transport.count(town["name"]) == 2 and all(n in transport for n in town["neighbours"])

  paths = sample_data.write_sample(tmp_path, num_towns=120, described_share=0.0)
  dev = _jsonl(paths["dev"])
  by_key = {t["key"]: t for t in towns}
  native = collections.Counter()
  for q in dev:
    town = by_key[q["id"].split("-", 2)[2].rsplit("-", 1)[0]]
    if town["namesakes"]:
      assert sample_data.REGIONS[town["region"]][q["lang"]] in q["question"]
    if q["lang"] in sample_data.SCRIPT_OF:
      native[sample_data.name_in_script(town, q["lang"])[:-1] in q["question"]] += 1
    else:
      assert town["name"] in q["question"]  # Finnish keeps the Latin name
  share = native[True] / sum(native.values())
  assert abs(share - sample_data.NATIVE_NAME_SHARE) < 0.1


def test_bm25_is_above_chance_and_clearly_below_perfect(tmp_path):
  """Word matching finds the gold passage when the question writes the name as the passage
  does (and the tokenizer splits it off), and is near chance otherwise."""
  paths = sample_data.write_sample(tmp_path, num_towns=40)
  queries = io.read_queries(paths["dev"])
  corpus = bm25.read_corpus_with_titles(paths["corpus"])
  gold = {line.split()[0]: line.split()[2] for line in _read(paths["qrels"]).splitlines()}
  run = bm25.bm25_run(queries, corpus, k=20)
  hits = collections.defaultdict(list)
  for qid, query in queries.items():
    hits[query.lang].append(gold[qid] in {pid for pid, _ in run[qid]})
  recall = 100 * sum(sum(h) / len(h) for h in hits.values()) / len(hits)  # macro, as reported
  chance = 100 * 20 / len(corpus)
  assert len(corpus) == 120 and len(hits) == len(sample_data.LANGUAGES)
  assert chance + 20 < recall < 90, (chance, recall)


def _native_share(dev: list[dict]) -> float:
  """Share of the questions in a script-writing language that name their town in it."""
  towns = {t["key"]: t for t in sample_data.make_world(60)}
  scripted = [q for q in dev if q["lang"] in sample_data.SCRIPT_OF]
  key = lambda q: q["id"].split("-", 2)[2].rsplit("-", 1)[0]  # noqa: E731
  named = [
    q
    for q in scripted
    if sample_data.name_in_script(towns[key(q)], q["lang"])[:-1] in q["question"]
  ]
  return len(named) / len(scripted)


def test_difficulty_knobs_change_names_and_scripts(tmp_path):
  """native_name_share 0 and 1 write every name in Latin and in script; a larger family_size
  gives fewer name stems (more alike names); the defaults are the shipped sample."""
  latin = sample_data.write_sample(
    tmp_path / "latin", num_towns=60, native_name_share=0.0, described_share=0.0
  )
  script = sample_data.write_sample(
    tmp_path / "script", num_towns=60, native_name_share=1.0, described_share=0.0
  )
  assert _native_share(_jsonl(latin["dev"])) == 0.0
  assert _native_share(_jsonl(script["dev"])) == 1.0
  default = sample_data.write_sample(tmp_path / "default", num_towns=60, described_share=0.0)
  assert 0.1 < _native_share(_jsonl(default["dev"])) < 0.5  # NATIVE_NAME_SHARE is 0.3

  def stems(family_size: int) -> int:
    world = sample_data.make_world(60, family_size=family_size)
    return len({t["parts"][0][:-1] for t in world})

  assert stems(30) < stems(5) and stems(30) <= 2
  same = sample_data.write_sample(
    tmp_path / "same", num_towns=60, native_name_share=0.3, described_share=0.0
  )
  assert _read(same["dev"]) == _read(default["dev"])
  try:
    sample_data.write_sample(tmp_path / "bad", num_towns=4, native_name_share=1.5)
  except ValueError as e:
    assert "native_name_share" in str(e)
  else:
    raise AssertionError("a share above 1 was accepted")
  assert not (tmp_path / "bad").exists()  # refused before anything is written
